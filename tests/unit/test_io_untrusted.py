"""Trust nothing that comes in: future-dated rows, open-ended dates, ids, reserved names.

Each test reproduces a finding of the issue "Trust nothing that comes in" (see
``docs/data_contract.md`` for the rules they pin down).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnml.data import validation as V
from churnml.data.io import load_book, validate_frames
from churnml.data.tables import Book
from churnml.errors import SchemaError

from test_io import assert_counts_add_up, good_frames, rejects_of, write_book


def _sim_frames(sim_tables) -> dict[str, pd.DataFrame]:
    return {name: df.copy() for name, df in sim_tables.tables.items()}


# --------------------------------------------------------------------------- 1. future-dated rows
def test_future_dated_nps_row_is_rejected_and_does_not_move_data_end(sim_tables):
    frames = _sim_frames(sim_tables)
    clean, _ = validate_frames(frames)
    nps = frames["nps_responses"]
    late = nps.iloc[[0]].copy()
    late["ts"] = pd.Timestamp("2099-06-01")
    frames["nps_responses"] = pd.concat([nps, late], ignore_index=True)
    book, report = validate_frames(frames)
    assert_counts_add_up(report)
    rej = rejects_of(report, "nps_responses")
    assert rej["reason"].tolist() == [V.FUTURE_DATED]
    assert rej["column"].tolist() == ["ts"] and rej["row"].tolist() == [len(nps)]
    assert "2099-06-01" in rej["value"].iloc[0]
    assert book.data_end == clean.data_end
    assert book.data_end < pd.Timestamp("2027-01-01")


def test_future_dated_rows_are_rejected_on_the_csv_path_too(sim_tables, tmp_path):
    frames = _sim_frames(sim_tables)
    usage = frames["usage_events"]
    late = usage.iloc[[3, 4]].copy()
    late["ts"] = ["2031-01-01T10:00:00Z", "9999-12-31"]
    frames["usage_events"] = pd.concat([usage, late], ignore_index=True)
    write_book(frames, tmp_path, fmt={"usage_events": "csv"})
    book, report = load_book(tmp_path)
    assert_counts_add_up(report)
    rej = rejects_of(report, "usage_events")
    assert len(rej) == 2
    assert set(rej["reason"]) <= {V.FUTURE_DATED, V.BAD_TIMESTAMP}
    assert rej.loc[rej["value"].str.startswith("2031"), "reason"].tolist() == [V.FUTURE_DATED]
    assert book.data_end < pd.Timestamp("2027-01-01")


def test_data_end_is_the_bulk_of_the_revenue_and_usage_history_not_any_maximum(sim_tables):
    """A Book built directly (no validation) with a stray date in any table keeps its end."""
    frames = {name: df.copy() for name, df in validate_frames(_sim_frames(sim_tables))[0]
              .tables.items()}
    before = Book(dict(frames)).data_end
    for table, column in (("nps_responses", "ts"), ("touchpoints", "ts"),
                          ("invoices", "paid_at"), ("usage_events", "ts"),
                          ("mrr_changes", "effective_date"), ("accounts", "created_at")):
        stray = {k: v.copy() for k, v in frames.items()}
        stray[table].loc[stray[table].index[0], column] = pd.Timestamp("2099-01-01")
        assert Book(stray).data_end == before, table


def test_a_late_row_within_the_margin_is_kept_and_the_margin_is_configurable(sim_tables):
    frames = _sim_frames(sim_tables)
    end = validate_frames(frames)[0].data_end
    nps = frames["nps_responses"]
    late = nps.iloc[[0, 1]].copy()
    late["ts"] = [end + pd.Timedelta(days=3), end + pd.Timedelta(days=20)]
    frames["nps_responses"] = pd.concat([nps, late], ignore_index=True)
    _, report = validate_frames(frames)
    assert rejects_of(report, "nps_responses")["row"].tolist() == [len(nps) + 1]
    _, wide = validate_frames(frames, future_margin_days=30)
    assert rejects_of(wide, "nps_responses").empty
    assert V.DEFAULT_FUTURE_MARGIN_DAYS == 7


def test_a_small_book_is_never_cut_by_its_own_latest_rows():
    """Tiny inputs (one account on /predict_history) have no bulk to judge: nothing is cut."""
    frames = good_frames()
    frames["mrr_changes"].loc[3, "effective_date"] = "2025-06-01"  # a year after the rest
    book, report = validate_frames(frames)
    assert report.total_rejected == 0
    assert book.data_end == pd.Timestamp("2025-06-01")


def test_score_warns_when_as_of_is_more_than_a_week_after_the_data_end(sim_tables):
    from churnml.data.dates import as_of_warning

    book, _ = validate_frames(_sim_frames(sim_tables))
    end = book.data_end
    assert as_of_warning(book, end) is None
    assert as_of_warning(book, end + pd.Timedelta(days=7)) is None
    message = as_of_warning(book, end + pd.Timedelta(days=30))
    assert message is not None and str(end.date()) in message and "30 days" in message


def test_score_command_prints_the_stale_as_of_warning(sim_dir, tmp_path, monkeypatch, capsys):
    from churnml import cli
    from churnml.jobs import weekly

    def fake_run_job(*args, **kwargs):
        raise SystemExit(0)  # the warning is printed before the job starts

    monkeypatch.setattr(weekly, "run_job", fake_run_job)
    cli.main(["score", "--data", str(sim_dir), "--as-of", "2030-01-01", "--out",
              str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert "2030-01-01" in captured.out + captured.err
    assert "after the data's end" in (captured.out + captured.err).replace("\n", " ")


# --------------------------------------------------------------------------- 2. open-ended dates
@pytest.mark.parametrize("fmt", ["csv", "parquet-text", "parquet-date32", "parquet-us",
                                 "parquet-us-utc"])
def test_open_ended_term_end_means_no_end(tmp_path, fmt):
    frames = good_frames()
    mrr = frames["mrr_changes"]
    if fmt in ("csv", "parquet-text"):
        mrr.loc[0, "term_end"] = "9999-12-31"
        write_book(frames, tmp_path, fmt="csv" if fmt == "csv" else "parquet")
    else:
        write_book(frames, tmp_path, fmt={"mrr_changes": "csv"})
        (tmp_path / "mrr_changes.csv").unlink()
        ends = [dt.date(9999, 12, 31), dt.date(2025, 2, 1), None, dt.date(2025, 6, 1)]
        if fmt == "parquet-date32":
            column = pa.array(ends, pa.date32())
        else:
            tz = "UTC" if fmt.endswith("utc") else None
            column = pa.array([None if d is None else dt.datetime(d.year, d.month, d.day)
                               for d in ends], pa.timestamp("us", tz=tz))
        table = pa.Table.from_pandas(mrr.drop(columns="term_end"), preserve_index=False)
        pq.write_table(table.append_column("term_end", column), tmp_path / "mrr_changes.parquet")
    book, report = load_book(tmp_path)
    assert report.total_rejected == 0
    term_end = book.mrr_changes.set_index(["account_id", "effective_date"])["term_end"]
    assert term_end.dtype == "datetime64[ns]"
    assert pd.isna(term_end.loc[("a1", pd.Timestamp("2024-01-01"))])
    assert term_end.loc[("a1", pd.Timestamp("2024-06-01"))] == pd.Timestamp("2025-06-01")


def test_open_ended_date_in_an_event_column_is_still_rejected():
    frames = good_frames()
    frames["usage_events"].loc[0, "ts"] = "9999-12-31"
    _, report = validate_frames(frames)
    assert rejects_of(report, "usage_events")["reason"].tolist() == [V.BAD_TIMESTAMP]


def test_an_account_whose_revenue_rows_are_all_rejected_is_reported():
    frames = good_frames()
    frames["mrr_changes"].loc[2, "effective_date"] = "yesterday"  # a3's only row
    book, report = validate_frames(frames)
    assert "a3" in set(book.accounts["account_id"])
    assert "a3" not in set(book.mrr_changes["account_id"])
    lost = [w for w in report.warnings if "not be scored" in w]
    assert len(lost) == 1 and "1 account" in lost[0] and "'a3'" in lost[0]


# --------------------------------------------------------------------------- 3. ids
def test_normalise_ids_one_rule_for_every_dtype():
    norm = V.normalise_ids
    assert norm(pd.Series([" 17 ", "17.0", "17", "007", "007.0", "A-1 ", "", None],
                          dtype="str")).tolist()[:6] == ["17", "17", "17", "007", "007", "A-1"]
    assert norm(pd.Series(["", " "], dtype="str")).isna().all()
    assert norm(pd.Series([17, 2**63 - 1], dtype="int64")).tolist() == ["17", str(2**63 - 1)]
    assert norm(pd.Series([17.0, 1e20, 17.5, np.nan])).tolist()[:3] == [
        "17", "100000000000000000000", "17.5"]
    assert norm(pd.Series([17, 17.0, " 17 ", 2**64 + 1, None], dtype=object)).tolist()[:4] == [
        "17", "17", "17", str(2**64 + 1)]
    assert str(norm(pd.Series([1.0])).dtype) == "str"


def test_small_object_inputs_take_the_same_rule_value_by_value():
    raw = [" 17 ", 17, 17.0, "17.0", "007", "007.0", 1e20, 17.5, 2**64 + 1, None, "", " ",
           np.nan, "A-1 ", True, np.float64(3.0), np.int64(4)]
    small = V.normalise_ids(pd.Series(raw, dtype=object))
    large = V.normalise_ids(pd.Series(raw * 40, dtype=object)).iloc[:len(raw)]
    assert len(raw) * 40 > V._SMALL
    assert small.tolist() == large.tolist()
    assert str(small.dtype) == str(large.dtype) == "str"


def test_float_ids_beyond_int64_do_not_become_duplicates():
    frames = good_frames()
    big = [1e19, 1e19 + 4096, 3e19]  # distinct floats, all beyond int64
    frames["accounts"]["account_id"] = big
    frames["mrr_changes"]["account_id"] = [big[0], big[1], big[2], big[0]]
    for name in ("usage_events", "invoices", "nps_responses", "touchpoints", "cs_actions"):
        frames.pop(name)
    book, report = validate_frames(frames)
    assert report.total_rejected == 0
    assert sorted(book.accounts["account_id"]) == sorted(str(int(v)) for v in big)


@pytest.mark.parametrize("raw,expected", [(" 17 ", "17"), ("17.0", "17"), ("007", "007"),
                                          ("12345678901234567890", "12345678901234567890")])
def test_the_same_raw_id_is_the_same_account_on_every_path(tmp_path, raw, expected):
    from churnml.api.predictor import Predictor

    frames = good_frames()
    for name in ("usage_events", "invoices", "nps_responses", "touchpoints", "cs_actions"):
        frames.pop(name)
    frames["accounts"]["account_id"] = [raw, "a2", "a3"]
    frames["mrr_changes"]["account_id"] = [raw, "a2", "a3", raw]
    seen = {}
    write_book(frames, tmp_path / "csv", fmt="csv")
    seen["csv"] = load_book(tmp_path / "csv")[0]
    write_book(frames, tmp_path / "parquet", fmt="parquet")
    seen["parquet"] = load_book(tmp_path / "parquet")[0]
    seen["memory"] = validate_frames(frames)[0]
    for path, book in seen.items():
        assert book.accounts["account_id"].iloc[0] == expected, path
        assert (book.mrr_changes["account_id"] == expected).sum() == 2, path
    predictor = Predictor.__new__(Predictor)
    predictor.numeric_fields, predictor.categorical_fields = [], []
    frame = predictor.frame_from_records([{"account_id": raw, "as_of": dt.date(2024, 7, 1)}])
    assert frame["account_id"].tolist() == [expected]


def test_integral_text_and_numbers_are_one_account_across_tables():
    frames = good_frames()
    frames["accounts"]["account_id"] = pd.Series([17, 18, 19], dtype="int64")
    frames["mrr_changes"]["account_id"] = ["17.0", " 18", "19", 17.0]
    for name in ("usage_events", "invoices", "nps_responses", "touchpoints", "cs_actions"):
        frames.pop(name)
    book, report = validate_frames(frames)
    assert report.total_rejected == 0
    assert sorted(book.mrr_changes["account_id"]) == ["17", "17", "18", "19"]


# --------------------------------------------------------------------------- 4. reserved names
@pytest.mark.parametrize("column", ["as_of", "churn_probability", "health_score", "churn_reasons",
                                    "schema_version", "label", "health_usage"])
def test_accounts_columns_named_like_output_columns_are_refused(column):
    frames = good_frames()
    frames["accounts"][column] = "x"
    with pytest.raises(SchemaError, match=f"accounts: column '{column}'"):
        validate_frames(frames)


def test_reserved_names_cover_the_weekly_output_columns():
    from churnml.outcomes import OUTCOMES
    from churnml.scoring.schema import output_columns

    for column in output_columns(["usage", "payment", "static"], OUTCOMES):
        if column == "account_id":
            continue
        assert V.is_reserved_column(column), column
    for outcome in OUTCOMES:
        assert V.is_reserved_column(outcome.name)
    for fine in ("plan", "segment", "industry", "employees", "healthcare_vertical"):
        assert not V.is_reserved_column(fine)
