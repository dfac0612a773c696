"""Data contract: loading, dtype normalisation, rejects and errors (churnml.data.io)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.data.io import (
    REJECTS_COLUMNS,
    ValidationReport,
    default_rejects_path,
    load_book,
    validate_frames,
)
from churnml.data.tables import TABLES, Book
from churnml.errors import SchemaError


# --------------------------------------------------------------------------- a small good book
def good_frames() -> dict[str, pd.DataFrame]:
    accounts = pd.DataFrame({
        "account_id": ["a1", "a2", "a3"],
        "created_at": ["2024-01-01", "2024-02-01", "2024-03-01"],
        "plan": ["pro", "basic", "pro"],
        "segment": ["smb", "mid_market", "smb"],
    })
    mrr = pd.DataFrame({
        "account_id": ["a1", "a2", "a3", "a1"],
        "effective_date": ["2024-01-01", "2024-02-01", "2024-03-01", "2024-06-01"],
        "mrr": [100.0, 50.0, 80.0, 150.0],
        "reason": ["new", "new", "new", "upsell"],
        "term_end": ["2025-01-01", "2025-02-01", None, "2025-06-01"],
    })
    usage = pd.DataFrame({
        "account_id": ["a1", "a1", "a2", "a3"],
        "ts": ["2024-05-01T10:00:00", "2024-05-02T11:00:00", "2024-05-01T09:00:00",
               "2024-05-03T08:00:00"],
        "event": ["login", "api_call", "login", "dashboard_view"],
        "user_id": ["u1", "u1", "u2", "u3"],
        "quantity": [1.0, 3.0, 1.0, 2.0],
    })
    invoices = pd.DataFrame({
        "account_id": ["a1", "a2", "a3"],
        "invoice_id": ["i1", "i2", "i3"],
        "due_date": ["2024-02-01", "2024-03-01", "2024-04-01"],
        "amount": [100.0, 50.0, 80.0],
        "paid_at": ["2024-02-03", None, "2024-04-01"],
    })
    nps = pd.DataFrame({
        "account_id": ["a1", "a2"],
        "ts": ["2024-04-01", "2024-04-02"],
        "score": [9, 3],
        "respondent_id": ["r1", "r2"],
        "comment": ["great", "slow support"],
    })
    touch = pd.DataFrame({
        "account_id": ["a1", "a2"],
        "ts": ["2024-04-05", "2024-04-06"],
        "kind": ["meeting_held", "support_ticket"],
        "value": [None, None],
        "user_id": ["u1", "u2"],
    })
    actions = pd.DataFrame({
        "account_id": ["a2"],
        "date": ["2024-04-07"],
        "playbook": ["detractor_call"],
        "owner": ["CSM"],
        "channel": ["call"],
        "outcome_note": ["agreed a fix for the support backlog"],
    })
    return {"accounts": accounts, "mrr_changes": mrr, "usage_events": usage,
            "invoices": invoices, "nps_responses": nps, "touchpoints": touch,
            "cs_actions": actions}


def write_book(frames: dict[str, pd.DataFrame], folder, fmt: str | dict = "csv") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in frames.items():
        f = fmt if isinstance(fmt, str) else fmt.get(name, "csv")
        if f == "csv":
            df.to_csv(folder / f"{name}.csv", index=False)
        else:
            df.to_parquet(folder / f"{name}.parquet", index=False)


def assert_counts_add_up(report: ValidationReport) -> None:
    for table, c in report.counts.items():
        assert c["read"] == c["accepted"] + c["rejected"], table
        assert c["rejected"] == int((report.rejects["table"] == table).sum()), table
    assert list(report.rejects.columns) == REJECTS_COLUMNS


def rejects_of(report: ValidationReport, table: str) -> pd.DataFrame:
    return report.rejects[report.rejects["table"] == table].reset_index(drop=True)


# --------------------------------------------------------------------------- loading and dtypes
@pytest.mark.parametrize("fmt", ["csv", "parquet", {"accounts": "parquet", "usage_events":
                                                    "parquet", "invoices": "csv"}])
def test_good_book_loads_with_normalised_dtypes(tmp_path, fmt):
    frames = good_frames()
    write_book(frames, tmp_path / "book", fmt)
    book, report = load_book(tmp_path / "book")
    assert isinstance(book, Book)
    assert set(book.tables) == set(TABLES)
    assert report.total_rejected == 0 and report.rejects.empty
    for name, df in book.tables.items():
        assert len(df) == len(frames[name])
        assert report.counts[name] == {"read": len(df), "accepted": len(df), "rejected": 0}
        assert pd.api.types.is_string_dtype(df["account_id"].dtype)
        for col in TABLES[name].columns:
            if col.name not in df.columns:
                continue
            if col.kind == "timestamp":
                assert df[col.name].dtype == np.dtype("datetime64[ns]"), (name, col.name)
            elif col.kind == "number":
                assert df[col.name].dtype == np.dtype("float64"), (name, col.name)
    assert book["nps_responses"]["score"].dtype == np.dtype("int64")
    assert book["invoices"]["paid_at"].isna().sum() == 1
    assert book.data_end == pd.Timestamp("2024-06-01")


def test_rows_sorted_by_account_and_time():
    frames = good_frames()
    frames["usage_events"] = frames["usage_events"].iloc[::-1].reset_index(drop=True)
    book, _ = validate_frames(frames)
    usage = book["usage_events"]
    assert list(usage["account_id"]) == ["a1", "a1", "a2", "a3"]
    a1 = usage[usage["account_id"] == "a1"]["ts"]
    assert a1.is_monotonic_increasing
    assert list(book["mrr_changes"]["account_id"]) == ["a1", "a1", "a2", "a3"]


def test_integer_ids_are_strings_and_match_text_ids(tmp_path):
    frames = good_frames()
    frames["accounts"]["account_id"] = [17, 18, 19]  # parquet keeps them as integers
    frames["mrr_changes"]["account_id"] = ["17", " 18 ", "19", "17"]
    frames["usage_events"]["account_id"] = [17.0, 17.0, 18.0, 19.0]
    for name in ("invoices", "nps_responses", "touchpoints", "cs_actions"):
        del frames[name]
    write_book(frames, tmp_path / "b", {"accounts": "parquet", "mrr_changes": "csv",
                                        "usage_events": "parquet"})
    book, report = load_book(tmp_path / "b")
    assert report.total_rejected == 0
    assert list(book.accounts["account_id"]) == ["17", "18", "19"]
    assert set(book["usage_events"]["account_id"]) == {"17", "18", "19"}
    assert set(book.mrr_changes["account_id"]) == {"17", "18", "19"}


def test_csv_keeps_leading_zeros_in_ids(tmp_path):
    frames = good_frames()
    frames["accounts"]["account_id"] = ["007", "008", "009"]
    frames["mrr_changes"]["account_id"] = ["007", "008", "009", "007"]
    write_book({k: frames[k] for k in ("accounts", "mrr_changes")}, tmp_path / "b")
    book, report = load_book(tmp_path / "b")
    assert list(book.accounts["account_id"]) == ["007", "008", "009"]
    assert report.total_rejected == 0


def test_timezone_aware_and_naive_timestamps_become_naive_utc(tmp_path):
    frames = good_frames()
    # aware timestamps stored as such in parquet: 02:00 in Paris (UTC+1 in winter) = 01:00 UTC
    frames["accounts"]["created_at"] = pd.to_datetime(
        ["2024-01-01 02:00", "2024-02-01 00:00", "2024-03-01 00:00"]).tz_localize("Europe/Paris")
    # ISO text with offsets, Z, naive, and a date alone (midnight)
    frames["usage_events"]["ts"] = ["2024-05-01T10:00:00+02:00", "2024-05-02T11:00:00Z",
                                    "2024-05-01 09:00:00", "2024-05-03"]
    write_book(frames, tmp_path / "b", {"accounts": "parquet"})
    book, report = load_book(tmp_path / "b")
    assert report.total_rejected == 0
    created = book.accounts.set_index("account_id")["created_at"]
    assert created["a1"] == pd.Timestamp("2024-01-01 01:00")
    assert created["a2"] == pd.Timestamp("2024-01-31 23:00")
    ts = book["usage_events"].set_index(["account_id", "event"])["ts"]
    assert ts[("a1", "login")] == pd.Timestamp("2024-05-01 08:00")
    assert ts[("a1", "api_call")] == pd.Timestamp("2024-05-02 11:00")
    assert ts[("a2", "login")] == pd.Timestamp("2024-05-01 09:00")
    assert ts[("a3", "dashboard_view")] == pd.Timestamp("2024-05-03 00:00")
    assert book["usage_events"]["ts"].dt.tz is None


def test_optional_tables_may_be_absent(tmp_path):
    frames = good_frames()
    write_book({k: frames[k] for k in ("accounts", "mrr_changes")}, tmp_path / "b", "parquet")
    book, report = load_book(tmp_path / "b")
    assert set(book.tables) == {"accounts", "mrr_changes"}
    assert not book.has("usage_events")
    assert report.absent == ["usage_events", "invoices", "nps_responses", "touchpoints",
                             "cs_actions"]
    assert set(report.counts) == {"accounts", "mrr_changes"}


def test_optional_columns_may_be_absent_and_quantity_defaults_to_one():
    frames = good_frames()
    frames["usage_events"] = frames["usage_events"].drop(columns=["quantity", "user_id"])
    frames["invoices"] = frames["invoices"].drop(columns=["paid_at"])
    book, report = validate_frames(frames)
    assert (book["usage_events"]["quantity"] == 1.0).all()
    assert "paid_at" not in book["invoices"].columns  # unknown, never faked as "unpaid"
    frames = good_frames()
    frames["usage_events"]["quantity"] = ["2", "", None, "1.5"]
    book, report = validate_frames(frames)
    assert report.total_rejected == 0
    assert sorted(book["usage_events"]["quantity"]) == [1.0, 1.0, 1.5, 2.0]


def test_extra_account_columns_kept_as_static_features(tmp_path):
    frames = good_frames()
    frames["accounts"]["employees"] = ["10", "250", ""]
    frames["accounts"]["industry"] = ["retail", "saas", "retail"]
    write_book(frames, tmp_path / "b")
    book, _ = load_book(tmp_path / "b")
    assert book.accounts["employees"].dtype == np.dtype("float64")
    assert book.accounts["employees"].isna().sum() == 1
    assert list(book.accounts["industry"]) == ["retail", "saas", "retail"]


def test_underscore_files_are_not_tables_and_unknown_files_warn(tmp_path):
    frames = good_frames()
    write_book(frames, tmp_path / "b", "parquet")
    (tmp_path / "b" / "_truth").mkdir()
    (tmp_path / "b" / "_rejects.csv").write_text("garbage")
    (tmp_path / "b" / "notes.txt").write_text("hello")
    (tmp_path / "b" / "payments.csv").write_text("a,b\n1,2\n")
    _, report = load_book(tmp_path / "b")
    assert len(report.warnings) == 1
    assert "notes.txt" in report.warnings[0] and "payments.csv" in report.warnings[0]
    assert "_truth" not in report.warnings[0] and "_rejects" not in report.warnings[0]


# --------------------------------------------------------------------------- errors (exit 2)
def test_missing_required_table_is_an_error(tmp_path):
    frames = good_frames()
    write_book({"accounts": frames["accounts"]}, tmp_path / "b")
    with pytest.raises(SchemaError, match=r"mrr_changes: required table is missing"):
        load_book(tmp_path / "b")


def test_missing_required_column_is_an_error_naming_table_and_column():
    frames = good_frames()
    frames["usage_events"] = frames["usage_events"].drop(columns=["event"])
    frames["nps_responses"] = frames["nps_responses"].drop(columns=["score"])
    with pytest.raises(SchemaError) as err:
        validate_frames(frames)
    message = str(err.value)
    assert "usage_events: missing required column 'event'" in message
    assert "nps_responses: missing required column 'score'" in message  # all problems at once


def test_text_in_numeric_column_is_an_error_with_count_and_examples(tmp_path):
    n = 120
    usage = pd.DataFrame({
        "account_id": ["a1"] * n,
        "ts": ["2024-05-01"] * n,
        "event": ["login"] * n,
        "quantity": ["1"] * n,
    })
    usage.loc[[5, 17, 60], "quantity"] = ["n/a", "12,5", "lots"]
    usage.loc[[70, 71], "quantity"] = ["", "  "]  # empty means null, not bad
    frames = good_frames()
    frames["usage_events"] = usage
    write_book(frames, tmp_path / "b")
    with pytest.raises(SchemaError) as err:
        load_book(tmp_path / "b")
    assert str(err.value) == ("usage_events: column 'quantity' must be numeric; 3 bad values of "
                              "120, e.g. ['n/a', '12,5', 'lots']")


def test_error_lists_at_most_five_examples():
    frames = good_frames()
    frames["mrr_changes"] = pd.DataFrame({
        "account_id": ["a1"] * 8, "effective_date": ["2024-01-01"] * 8,
        "mrr": ["x1", "x2", "x3", "x4", "x5", "x6", "x7", "8"],
    })
    with pytest.raises(SchemaError, match=r"mrr_changes: column 'mrr' must be numeric; 7 bad "
                                          r"values of 8, e.g. \['x1', 'x2', 'x3', 'x4', 'x5'\]$"):
        validate_frames(frames)


def test_numbers_in_timestamp_column_are_an_error():
    frames = good_frames()
    frames["usage_events"]["ts"] = [1714550400, 1714550401, 1714550402, 1714550403]
    with pytest.raises(SchemaError, match=r"usage_events: column 'ts' must hold timestamps"):
        validate_frames(frames)


def test_both_formats_for_one_table_is_an_error(tmp_path):
    frames = good_frames()
    write_book(frames, tmp_path / "b", "csv")
    frames["accounts"].to_parquet(tmp_path / "b" / "accounts.parquet")
    with pytest.raises(SchemaError, match=r"accounts: found both accounts.csv and "
                                          r"accounts.parquet"):
        load_book(tmp_path / "b")


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(SchemaError, match="does not exist"):
        load_book(tmp_path / "nope")


def test_every_row_of_a_required_table_rejected_is_an_error():
    frames = good_frames()
    frames["mrr_changes"]["account_id"] = ["zz1", "zz2", "zz3", "zz1"]
    with pytest.raises(SchemaError, match=r"mrr_changes: no usable rows: all 4 rows were set "
                                          r"aside \(4 unknown account\)"):
        validate_frames(frames)


def test_empty_accounts_is_an_error():
    frames = good_frames()
    frames["accounts"] = frames["accounts"].iloc[:0]
    with pytest.raises(SchemaError, match=r"accounts: the table has no rows"):
        validate_frames(frames)


# --------------------------------------------------------------------------- rejects (exit 0)
def test_unknown_account_is_rejected_in_every_table_but_accounts():
    frames = good_frames()
    for name in ("mrr_changes", "usage_events", "invoices", "nps_responses", "touchpoints"):
        df = frames[name]
        extra = df.iloc[[0]].assign(account_id="ghost")
        if name == "invoices":
            extra = extra.assign(invoice_id="i-ghost")
        frames[name] = pd.concat([df, extra], ignore_index=True)
    book, report = validate_frames(frames)
    assert_counts_add_up(report)
    for name in ("mrr_changes", "usage_events", "invoices", "nps_responses", "touchpoints"):
        rej = rejects_of(report, name)
        assert rej.to_dict("records") == [{
            "table": name, "row": len(frames[name]) - 1, "column": "account_id",
            "value": "ghost", "reason": "unknown account"}]
        assert "ghost" not in set(book[name]["account_id"])


def test_nps_outside_range_or_not_integer_is_rejected():
    frames = good_frames()
    frames["nps_responses"] = pd.DataFrame({
        "account_id": ["a1"] * 5, "ts": ["2024-04-01"] * 5, "score": ["11", "-1", "7.5", "10", "0"],
    })
    book, report = validate_frames(frames)
    assert_counts_add_up(report)
    rej = rejects_of(report, "nps_responses")
    assert list(rej["row"]) == [0, 1, 2]
    assert list(rej["value"]) == ["11", "-1", "7.5"]
    assert list(rej["reason"]) == ["score outside 0-10", "score outside 0-10",
                                   "score not an integer"]
    assert sorted(book["nps_responses"]["score"]) == [0, 10]
    assert report.counts["nps_responses"] == {"read": 5, "accepted": 2, "rejected": 3}


@pytest.mark.parametrize("table,column", [("mrr_changes", "mrr"), ("invoices", "amount"),
                                          ("usage_events", "quantity")])
def test_negative_amounts_are_rejected(table, column):
    frames = good_frames()
    frames[table] = frames[table].copy()
    frames[table].loc[1, column] = -5.0
    book, report = validate_frames(frames)
    assert_counts_add_up(report)
    rej = rejects_of(report, table)
    assert rej.to_dict("records") == [{"table": table, "row": 1, "column": column,
                                       "value": "-5.0", "reason": "negative value"}]
    assert (book[table][column] >= 0).all()


def test_touchpoint_value_may_be_negative():
    frames = good_frames()
    frames["touchpoints"]["value"] = [-3.0, 2.0]
    _, report = validate_frames(frames)
    assert report.total_rejected == 0


@pytest.mark.parametrize("table,column", [("usage_events", "ts"), ("invoices", "paid_at"),
                                          ("accounts", "created_at"),
                                          ("mrr_changes", "term_end")])
def test_unparseable_timestamp_rejects_the_row(table, column, tmp_path):
    frames = good_frames()
    frames[table] = frames[table].copy()
    frames[table].loc[0, column] = "yesterday"
    write_book(frames, tmp_path / "b")
    book, report = load_book(tmp_path / "b", rejects_path=tmp_path / "rej.csv")
    assert_counts_add_up(report)
    rej = rejects_of(report, table)
    assert rej.iloc[0].to_dict() == {"table": table, "row": 0, "column": column,
                                     "value": "yesterday", "reason": "unparseable timestamp"}
    assert report.counts[table]["rejected"] == 1
    written = pd.read_csv(tmp_path / "rej.csv", dtype={"value": str}, keep_default_na=False)
    assert len(written) == report.total_rejected


def test_null_in_required_column_is_rejected():
    frames = good_frames()
    frames["usage_events"]["event"] = ["login", None, " ", "login"]
    frames["invoices"]["due_date"] = ["2024-02-01", "", "2024-04-01"]
    book, report = validate_frames(frames)
    assert_counts_add_up(report)
    usage = rejects_of(report, "usage_events")
    assert list(usage["row"]) == [1, 2]
    assert set(usage["reason"]) == {"missing required value"}
    assert set(usage["column"]) == {"event"}
    inv = rejects_of(report, "invoices")
    assert inv.to_dict("records") == [{"table": "invoices", "row": 1, "column": "due_date",
                                       "value": "", "reason": "missing required value"}]


def test_duplicate_invoice_id_keeps_the_first():
    frames = good_frames()
    frames["invoices"] = pd.DataFrame({
        "account_id": ["a1", "a2", "a1", "a3"], "invoice_id": ["i1", "i2", "i1", "i2"],
        "due_date": ["2024-02-01", "2024-03-01", "2024-05-01", "2024-03-01"],
        "amount": [100.0, 50.0, 70.0, 50.0],
    })
    book, report = validate_frames(frames)
    assert_counts_add_up(report)
    rej = rejects_of(report, "invoices")
    assert list(rej["row"]) == [2, 3]
    assert set(rej["reason"]) == {"duplicate invoice_id"}
    kept = book["invoices"].set_index("invoice_id")
    assert kept.loc["i1", "amount"] == 100.0 and kept.loc["i2", "account_id"] == "a2"


def test_duplicate_invoice_id_keeps_the_first_valid_row():
    # the first copy is bad for another reason, so the second copy is the one kept
    frames = good_frames()
    frames["invoices"] = pd.DataFrame({
        "account_id": ["a1", "a1"], "invoice_id": ["i1", "i1"],
        "due_date": ["2024-02-01", "2024-02-01"], "amount": [-1.0, 100.0],
    })
    book, report = validate_frames(frames)
    assert list(rejects_of(report, "invoices")["reason"]) == ["negative value"]
    assert list(book["invoices"]["amount"]) == [100.0]


def test_exact_duplicate_rows_keep_the_first_and_name_it():
    frames = good_frames()
    usage = frames["usage_events"]
    frames["usage_events"] = pd.concat([usage, usage.iloc[[1, 1]]], ignore_index=True)
    book, report = validate_frames(frames)
    assert_counts_add_up(report)
    rej = rejects_of(report, "usage_events")
    assert rej.to_dict("records") == [
        {"table": "usage_events", "row": 4, "column": "", "value": "same as row 1",
         "reason": "duplicate row"},
        {"table": "usage_events", "row": 5, "column": "", "value": "same as row 1",
         "reason": "duplicate row"},
    ]
    assert len(book["usage_events"]) == 4


def test_duplicates_compare_normalised_values():
    frames = good_frames()
    frames["usage_events"] = pd.DataFrame({
        "account_id": ["a1", " a1"], "ts": ["2024-05-01T10:00:00Z", "2024-05-01 12:00:00+02:00"],
        "event": ["login", "login"],
    })
    _, report = validate_frames(frames)
    assert list(rejects_of(report, "usage_events")["reason"]) == ["duplicate row"]


def test_duplicate_account_id_keeps_the_first():
    frames = good_frames()
    frames["accounts"] = pd.concat(
        [frames["accounts"], frames["accounts"].iloc[[0]].assign(plan="other")],
        ignore_index=True)
    book, report = validate_frames(frames)
    assert_counts_add_up(report)
    assert rejects_of(report, "accounts").to_dict("records") == [
        {"table": "accounts", "row": 3, "column": "account_id", "value": "a1",
         "reason": "duplicate account_id"}]
    assert book.accounts.set_index("account_id").loc["a1", "plan"] == "pro"


def test_a_row_with_several_problems_is_rejected_once():
    frames = good_frames()
    frames["invoices"] = pd.DataFrame({
        "account_id": ["ghost"], "invoice_id": ["i9"], "due_date": ["never"], "amount": [-4.0],
    })
    book, report = validate_frames(frames)  # an optional table may end up empty
    rej = rejects_of(report, "invoices")
    assert len(rej) == 1 and rej.loc[0, "reason"] == "unparseable timestamp"
    assert report.counts["invoices"] == {"read": 1, "accepted": 0, "rejected": 1}
    assert len(book["invoices"]) == 0


def test_unknown_vocabulary_is_kept_with_a_warning():
    frames = good_frames()
    frames["touchpoints"]["kind"] = ["webinar_attended", "webinar_attended"]
    frames["mrr_changes"]["reason"] = ["new", "new", "migration", "upsell"]
    book, report = validate_frames(frames)
    assert len(book["touchpoints"]) == 2 and report.total_rejected == 0
    assert any("touchpoints: 2 rows with kinds outside" in w and "'webinar_attended': 2" in w
               for w in report.warnings)
    assert any("mrr_changes: 1 rows with reasons outside" in w for w in report.warnings)


def test_rejected_accounts_make_their_rows_unknown():
    frames = good_frames()
    frames["accounts"].loc[2, "created_at"] = "not a date"
    book, report = validate_frames(frames)
    assert_counts_add_up(report)
    assert "a3" not in set(book.accounts["account_id"])
    assert (rejects_of(report, "mrr_changes")["reason"] == "unknown account").sum() == 1
    assert not (book["usage_events"]["account_id"] == "a3").any()


def test_write_rejects_round_trips(tmp_path):
    frames = good_frames()
    frames["nps_responses"].loc[0, "score"] = 12
    _, report = validate_frames(frames)
    path = report.write_rejects(tmp_path / "out" / "rejects.csv")
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(back.columns) == REJECTS_COLUMNS
    assert back.to_dict("records") == [{"table": "nps_responses", "row": "0", "column": "score",
                                        "value": "12", "reason": "score outside 0-10"}]


def test_default_rejects_path_is_not_read_back_as_a_table(tmp_path):
    frames = good_frames()
    frames["usage_events"].loc[0, "account_id"] = "ghost"
    write_book(frames, tmp_path / "b")
    rejects = default_rejects_path(tmp_path / "b")
    _, first = load_book(tmp_path / "b", rejects_path=rejects)
    _, second = load_book(tmp_path / "b", rejects_path=rejects)
    assert rejects.exists() and first.counts == second.counts
    assert second.warnings == []


def test_rich_rendering_shows_counts_and_totals():
    from rich.console import Console

    frames = good_frames()
    frames["usage_events"].loc[0, "account_id"] = "ghost"
    _, report = validate_frames(frames)
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(report)
    text = console.export_text()
    assert "usage_events" in text and "unknown account" in text
    assert report.total_read == report.total_accepted + report.total_rejected == 19


# --------------------------------------------------------------------------- property
_good_usage = st.fixed_dictionaries({
    "account_id": st.sampled_from(["a1", "a2", "a3", " a2 "]),
    "ts": st.sampled_from(["2024-05-01", "2024-05-01T10:00:00+02:00", "2024-05-02T11:00:00Z"]),
    "event": st.sampled_from(["login", "api_call"]),
    "quantity": st.sampled_from(["1", "2.5", "", "0"]),
})
_bad_usage = st.fixed_dictionaries({
    "account_id": st.sampled_from(["a1", "ghost", "", "a2"]),
    "ts": st.sampled_from(["2024-05-01", "yesterday", "", "2024-13-45"]),
    "event": st.sampled_from(["login", "", "report_create"]),
    "quantity": st.sampled_from(["1", "-1", "-0.5", ""]),
})
_nps = st.fixed_dictionaries({
    "account_id": st.sampled_from(["a1", "a2", "ghost", ""]),
    "ts": st.sampled_from(["2024-04-01", "bad", "2024-04-02T00:00:00-05:00"]),
    "score": st.sampled_from(["0", "5", "10", "11", "-1", "7.5", "", "9.0"]),
})
_invoices = st.fixed_dictionaries({
    "account_id": st.sampled_from(["a1", "a2", "ghost"]),
    "invoice_id": st.sampled_from(["i1", "i2", "i3", ""]),
    "due_date": st.sampled_from(["2024-02-01", "nope"]),
    "amount": st.sampled_from(["10", "-3", "0", ""]),
    "paid_at": st.sampled_from(["", "2024-02-05", "tomorrow"]),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(usage=st.lists(st.one_of(_good_usage, _bad_usage), max_size=30),
       nps=st.lists(_nps, max_size=15), invoices=st.lists(_invoices, max_size=15))
def test_property_counts_add_up_and_accepted_rows_pass_the_rules(usage, nps, invoices):
    frames = good_frames()
    frames["usage_events"] = pd.DataFrame(usage, columns=["account_id", "ts", "event", "quantity"],
                                          dtype="str")
    frames["nps_responses"] = pd.DataFrame(nps, columns=["account_id", "ts", "score"], dtype="str")
    frames["invoices"] = pd.DataFrame(invoices, columns=["account_id", "invoice_id", "due_date",
                                                         "amount", "paid_at"], dtype="str")
    book, report = validate_frames(frames)
    assert_counts_add_up(report)
    for name, raw in (("usage_events", usage), ("nps_responses", nps), ("invoices", invoices)):
        assert report.counts[name]["read"] == len(raw)
        assert len(book[name]) == report.counts[name]["accepted"]
        rej = rejects_of(report, name)
        assert rej["row"].is_unique and rej["row"].between(0, max(len(raw) - 1, 0)).all()
    known = set(book.accounts["account_id"])
    u = book["usage_events"]
    assert u["account_id"].isin(known).all() and u["ts"].notna().all()
    assert u["event"].notna().all() and (u["quantity"] >= 0).all()
    assert not u.duplicated().any()
    n = book["nps_responses"]
    assert n["score"].dtype == np.dtype("int64") and n["score"].between(0, 10).all()
    assert n["account_id"].isin(known).all() and n["ts"].notna().all()
    i = book["invoices"]
    assert i["invoice_id"].is_unique and (i["amount"] >= 0).all()
    assert i["account_id"].isin(known).all() and i["due_date"].notna().all()
    # every raw row that breaks a rule is among the rejects (none slips through)
    rejected = {name: set(rejects_of(report, name)["row"]) for name in report.counts}
    for r, row in enumerate(usage):
        if (row["account_id"].strip() not in known or row["ts"] in ("yesterday", "", "2024-13-45")
                or row["event"] == "" or row["quantity"].startswith("-")):
            assert r in rejected["usage_events"], row
    for r, row in enumerate(nps):
        if row["account_id"] not in known or row["ts"] == "bad" or \
                row["score"] in ("11", "-1", "7.5", ""):
            assert r in rejected["nps_responses"], row
    for r, row in enumerate(invoices):
        if row["account_id"] not in known or "" in (row["invoice_id"], row["amount"]) or \
                row["due_date"] == "nope" or row["paid_at"] == "tomorrow" or row["amount"] == "-3":
            assert r in rejected["invoices"], row


def test_examples_in_the_data_contract_doc_are_valid(tmp_path):
    """Each table's example in docs/data_contract.md loads with no rejects."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "data_contract.md").read_text()
    folder = tmp_path / "doc_book"
    folder.mkdir()
    for name in TABLES:
        section = doc.split(f"### {name} ")[1]
        example = re.search(r"```\n(.*?)```", section, re.S).group(1)
        (folder / f"{name}.csv").write_text(example)
    book, report = load_book(folder)
    assert report.total_rejected == 0 and report.warnings == []
    assert set(book.tables) == set(TABLES)
    assert book["usage_events"].set_index("event").loc["api_call", "ts"] == \
        pd.Timestamp("2024-08-01 12:00")
