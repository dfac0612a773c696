"""load_book's fast path (Arrow-backed text, typed parquet columns) gives the same Book as the
text path (CSV, Python objects): properties over messy books."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.data.io import load_book, validate_frames

ACCOUNT_IDS = ["a1", "a2", " a2", "a3 ", "ghost", "", "  ", None, "A1", "a10"]
TIMES = [pd.Timestamp("2024-05-01 10:00:00"), pd.Timestamp("2024-05-01 10:00:00"),
         pd.Timestamp("2024-05-02 00:00:00"), pd.Timestamp("2024-04-30 23:59:59"), None]
EVENTS = ["login", " login", "api_call", "", None, "dashboard_view"]
USERS = ["u1", "u2 ", None, "u1", ""]
QUANTITIES = [1.0, 2.5, 0.0, -0.0, -1.0, None]
KINDS = ["qbr_held", "webinar_attended", " qbr_held", None]
MRR = [100.0, 0.0, -5.0, 50.0]

_usage_row = st.fixed_dictionaries({
    "account_id": st.sampled_from(ACCOUNT_IDS), "ts": st.sampled_from(TIMES),
    "event": st.sampled_from(EVENTS), "user_id": st.sampled_from(USERS),
    "quantity": st.sampled_from(QUANTITIES),
})
_touch_row = st.fixed_dictionaries({
    "account_id": st.sampled_from(ACCOUNT_IDS), "ts": st.sampled_from(TIMES),
    "kind": st.sampled_from(KINDS), "value": st.sampled_from(QUANTITIES),
})
_mrr_row = st.fixed_dictionaries({
    "account_id": st.sampled_from(ACCOUNT_IDS), "effective_date": st.sampled_from(TIMES),
    "mrr": st.sampled_from(MRR),
})
_account_row = st.fixed_dictionaries({
    "account_id": st.sampled_from(["a1", "a2", "a3", " a1", "A1", "a10"]),
    "created_at": st.sampled_from([pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")]),
})


def _typed_frames(accounts, mrr, usage, touch) -> dict[str, pd.DataFrame]:
    """Frames as a typed parquet export holds them: text as ``str``, times as datetime64,
    numbers as float64."""
    def frame(rows, columns, times, numbers):
        df = pd.DataFrame(rows, columns=columns)
        for c in columns:
            if c in times:
                df[c] = pd.to_datetime(df[c])
            elif c in numbers:
                df[c] = df[c].astype("float64")
            else:
                df[c] = df[c].astype("str")
        return df

    return {
        "accounts": frame(accounts, ["account_id", "created_at"], {"created_at"}, set()),
        "mrr_changes": frame(mrr, ["account_id", "effective_date", "mrr"], {"effective_date"},
                             {"mrr"}),
        "usage_events": frame(usage, ["account_id", "ts", "event", "user_id", "quantity"],
                              {"ts"}, {"quantity"}),
        "touchpoints": frame(touch, ["account_id", "ts", "kind", "value"], {"ts"}, {"value"}),
    }


def _outcome(run):
    """(tables, counts, rejects without their value text, warnings), or the error message."""
    try:
        book, report = run()
    except Exception as exc:  # noqa: BLE001 - both paths must fail the same way
        return type(exc).__name__, str(exc)
    rejects = report.rejects[["table", "row", "column", "reason"]]
    return book.tables, report.counts, rejects, report.warnings


def _assert_same(a, b, compare_warnings: bool = True) -> None:
    if isinstance(a[0], str) or isinstance(b[0], str):
        assert a == b
        return
    tables_a, counts_a, rejects_a, warnings_a = a
    tables_b, counts_b, rejects_b, warnings_b = b
    assert counts_a == counts_b
    pd.testing.assert_frame_equal(rejects_a, rejects_b)
    assert set(tables_a) == set(tables_b)
    for name in tables_a:
        pd.testing.assert_frame_equal(tables_a[name], tables_b[name], check_exact=True)
    if compare_warnings:
        assert warnings_a == warnings_b


books = dict(
    accounts=st.lists(_account_row, min_size=1, max_size=6),
    mrr=st.lists(_mrr_row, min_size=1, max_size=12),
    usage=st.lists(_usage_row, max_size=40),
    touch=st.lists(_touch_row, max_size=15),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**books)
def test_property_arrow_text_and_python_objects_give_the_same_book(accounts, mrr, usage, touch):
    typed = _typed_frames(accounts, mrr, usage, touch)
    # the same values as Python objects: the row-by-row parsing path
    objects = {name: df.astype({c: object for c in df.columns if df[c].dtype == "str"})
               for name, df in typed.items()}
    fast = _outcome(lambda: validate_frames({k: v.copy() for k, v in typed.items()}))
    slow = _outcome(lambda: validate_frames({k: v.copy() for k, v in objects.items()}))
    _assert_same(fast, slow)
    if not isinstance(fast[0], str):
        usage_rej = fast[2][fast[2]["table"] == "usage_events"]
        assert fast[1]["usage_events"]["read"] == len(usage)
        assert usage_rej["row"].is_unique


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**books)
def test_property_typed_parquet_and_csv_give_the_same_book(accounts, mrr, usage, touch):
    typed = _typed_frames(accounts, mrr, usage, touch)
    with tempfile.TemporaryDirectory() as tmp:
        as_parquet, as_csv = Path(tmp) / "parquet", Path(tmp) / "csv"
        as_parquet.mkdir()
        as_csv.mkdir()
        for name, df in typed.items():
            df.to_parquet(as_parquet / f"{name}.parquet", index=False)
            df.to_csv(as_csv / f"{name}.csv", index=False)
        _assert_same(_outcome(lambda: load_book(as_parquet)), _outcome(lambda: load_book(as_csv)))


def test_duplicates_of_unsorted_rows_keep_the_first_and_sort_by_account_and_time():
    frames = {
        "accounts": pd.DataFrame({"account_id": ["b", "a"], "created_at": ["2024-01-01"] * 2}),
        "mrr_changes": pd.DataFrame({"account_id": ["b", "a"],
                                     "effective_date": ["2024-01-01"] * 2, "mrr": [1.0, 2.0]}),
        "usage_events": pd.DataFrame({
            "account_id": ["b", "a", "b ", "a", "a", "b"],
            "ts": ["2024-05-03", "2024-05-02", "2024-05-03", "2024-05-01", "2024-05-02",
                   "2024-05-01"],
            "event": ["login", "login", "login", "api_call", "login", "login"],
        }, dtype="str"),
    }
    book, report = validate_frames(frames)
    rejects = report.rejects[report.rejects["table"] == "usage_events"]
    assert rejects[["row", "value", "reason"]].to_dict("records") == [
        {"row": 2, "value": "same as row 0", "reason": "duplicate row"},
        {"row": 4, "value": "same as row 1", "reason": "duplicate row"}]
    usage = book["usage_events"]
    assert list(usage["account_id"]) == ["a", "a", "b", "b"]
    assert list(usage["ts"].dt.day) == [1, 2, 1, 3]
    assert usage["account_id"].dtype == "str" and usage["quantity"].tolist() == [1.0] * 4

