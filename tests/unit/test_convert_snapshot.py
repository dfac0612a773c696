"""`churnml convert snapshot`: a one-row-per-customer table (telco-like) -> a book of business
that `churnml validate` accepts in full; the mapping checked by hand; bad input is exit 2 with
a message naming the column, the count and examples."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnml.cli import main
from churnml.data.io import load_book

SNAPSHOT = "2026-11-16"
N = 3000


def run_cli(*args) -> tuple[int, str]:
    """``churnml ARGS`` through ``churnml.cli.main`` (the Typer app plus the mapping of
    churnml's errors to exit codes) with output captured by CliRunner, on one line."""
    runner = CliRunner()
    with runner.isolation() as streams:
        code = main([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        out = b"".join(s.getvalue() for s in streams if s is not None).decode(errors="replace")
    return code, " ".join(out.split())


def telco_table(n: int = N, seed: int = 7) -> pd.DataFrame:
    """A telco-like export: contract type drives churn (month-to-month churns most), short
    tenure and high charges add to it; 30 attributes of services and demographics; the
    classic quirk: TotalCharges blank for customers who joined this month."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.55, 0.21, 0.24])
    tenure = rng.integers(0, 73, n)
    internet = rng.choice(["DSL", "Fiber optic", "No"], n, p=[0.34, 0.44, 0.22])
    monthly = np.round(np.where(internet == "No", rng.uniform(18, 26, n),
                                rng.uniform(45, 118, n)), 2)
    logit = (-1.0 + np.select([contract == "Month-to-month", contract == "One year"],
                              [1.3, -0.8], -2.0)
             - 0.035 * tenure + 0.012 * (monthly - 65))
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    yes_no = lambda p: rng.choice(["Yes", "No"], n, p=[p, 1 - p])  # noqa: E731
    services = {}
    for name in ["OnlineSecurity", "OnlineBackup", "DeviceProtection", "TechSupport",
                 "StreamingTV", "StreamingMovies"]:
        services[name] = np.where(internet == "No", "No internet service", yes_no(0.4))
    frame = pd.DataFrame({
        "customerID": [f"{i:04d}-{'ABCDE'[i % 5]}X" for i in range(n)],
        "gender": rng.choice(["Female", "Male"], n),
        "SeniorCitizen": rng.choice([0, 1], n, p=[0.84, 0.16]),
        "Partner": yes_no(0.48), "Dependents": yes_no(0.3),
        "tenure": tenure,
        "PhoneService": yes_no(0.9), "MultipleLines": yes_no(0.42),
        "InternetService": internet, **services,
        "Contract": contract, "PaperlessBilling": yes_no(0.59),
        "PaymentMethod": rng.choice(["Electronic check", "Mailed check",
                                     "Bank transfer (automatic)", "Credit card (automatic)"], n),
        "MonthlyCharges": monthly,
        "TotalCharges": np.where(tenure == 0, " ", np.round(monthly * tenure, 2).astype(str)),
        "Churn": np.where(churn, "Yes", "No"),
    })
    for i in range(12):  # more account attributes: numbers and text
        frame[f"attr_num_{i}"] = np.round(rng.normal(100 * i, 10, n), 3)
    for i in range(6):
        frame[f"attr_cat_{i}"] = rng.choice(["a", "b", "c", "d"], n)
    frame.loc[0, ["tenure", "Churn"]] = [0, "No"]
    frame.loc[0, "TotalCharges"] = " "
    frame.loc[1, ["tenure", "Churn"]] = [5, "Yes"]
    frame.loc[2, ["tenure", "Churn"]] = [72, "No"]
    frame.loc[3, ["tenure", "Churn"]] = [0, "Yes"]  # joined on the snapshot date and left
    return frame


ARGS = ["--id-column", "customerID", "--churn-column", "Churn", "--tenure-column", "tenure",
        "--charge-column", "MonthlyCharges"]


def convert(tmp_path: Path, frame: pd.DataFrame, *extra, fmt: str = "csv",
            out: str = "book") -> tuple[int, str, Path]:
    source = tmp_path / f"telco.{fmt}"
    if fmt == "csv":
        frame.to_csv(source, index=False)
    else:
        frame.to_parquet(source, index=False)
    book = tmp_path / out
    default = [] if any(str(e).startswith("--snapshot-date") for e in extra) else [
        "--snapshot-date", SNAPSHOT]
    code, text = run_cli("convert", "snapshot", "--input", source, "--out", book, *ARGS,
                         *default, *extra)
    return code, text, book


@pytest.fixture(scope="module")
def telco() -> pd.DataFrame:
    return telco_table()


@pytest.fixture(scope="module")
def converted(telco, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("telco")
    code, text, book = convert(tmp, telco)
    assert code == 0, text
    return text, book


def test_the_churn_flag_has_a_known_driver(telco):
    rates = telco.groupby("Contract")["Churn"].apply(lambda s: (s == "Yes").mean())
    assert rates["Month-to-month"] > 2 * rates["One year"] > 0
    assert 0.15 < (telco["Churn"] == "Yes").mean() < 0.45


def test_converted_book_is_accepted_in_full_by_validate(converted, telco):
    text, book = converted
    churned = int((telco["Churn"] == "Yes").sum())
    assert f"{N:,} customers -> {N:,} accounts ({churned:,} churned)" in text
    assert sorted(p.name for p in book.iterdir()) == ["accounts.parquet", "mrr_changes.parquet"]
    code, out = run_cli("validate", "--data", book, "--rejects", book.parent / "rejects.csv")
    assert code == 0, out
    stayed = int(((telco["Churn"] == "No") & (telco["tenure"] > 0)).sum())
    total = N + N + churned + stayed  # accounts, new rows, churn rows, renewal rows
    assert f"all {total:,} rows accepted" in out
    loaded, report = load_book(book)
    assert report.total_rejected == 0
    assert len(loaded.accounts) == N


def test_mapping_by_hand(converted, telco):
    _, book = converted
    accounts = pd.read_parquet(book / "accounts.parquet").set_index("account_id")
    mrr = pd.read_parquet(book / "mrr_changes.parquet")
    snap = pd.Timestamp(SNAPSHOT)

    # tenure 0, stayed: created on the snapshot date, one `new` row
    row = telco.iloc[0]
    assert accounts.loc[row.customerID, "created_at"] == snap
    rows = mrr[mrr.account_id == row.customerID]
    assert rows[["effective_date", "mrr", "reason"]].values.tolist() == [
        [snap, row.MonthlyCharges, "new"]]
    # tenure 5, churned: created 5 calendar months before; churn the day before the snapshot
    row = telco.iloc[1]
    assert accounts.loc[row.customerID, "created_at"] == pd.Timestamp("2026-06-16")
    rows = mrr[mrr.account_id == row.customerID]
    assert rows[["effective_date", "mrr", "reason"]].values.tolist() == [
        [pd.Timestamp("2026-06-16"), row.MonthlyCharges, "new"],
        [pd.Timestamp("2026-11-15"), 0.0, "churn"]]
    # tenure 72, stayed: a renewal row at the same charge on the snapshot date
    row = telco.iloc[2]
    assert accounts.loc[row.customerID, "created_at"] == pd.Timestamp("2020-11-16")
    rows = mrr[mrr.account_id == row.customerID]
    assert rows[["effective_date", "mrr", "reason"]].values.tolist() == [
        [pd.Timestamp("2020-11-16"), row.MonthlyCharges, "new"],
        [snap, row.MonthlyCharges, "renewal"]]
    # tenure 0, churned: the churn falls on created_at (the same day), after the `new` row
    row = telco.iloc[3]
    rows = mrr[mrr.account_id == row.customerID]
    assert rows[["effective_date", "mrr", "reason"]].values.tolist() == [
        [snap, row.MonthlyCharges, "new"], [snap, 0.0, "churn"]]

    # attributes: every other column, numbers as numbers, text as text
    consumed = {"customerID", "tenure", "MonthlyCharges", "Churn"}
    assert set(accounts.columns) == {"created_at"} | (set(telco.columns) - consumed)
    assert accounts["SeniorCitizen"].dtype == "float64"
    assert accounts["attr_num_3"].dtype == "float64"
    assert accounts["TotalCharges"].dtype == "float64"  # blanks are nulls, the rest numbers
    assert accounts["TotalCharges"].isna().sum() == (telco["TotalCharges"] == " ").sum()
    assert pd.api.types.is_string_dtype(accounts["Contract"])
    assert accounts.loc[telco.customerID[1], "Contract"] == telco.Contract[1]
    # every churned customer has exactly one churn row, every customer one new row
    assert (mrr.reason == "new").sum() == N
    assert set(mrr.account_id[mrr.reason == "churn"]) == set(
        telco.customerID[telco.Churn == "Yes"])


def test_parquet_input_and_a_snapshot_date_column(tmp_path):
    frame = telco_table(200, seed=3)
    frame["exported"] = np.where(np.arange(200) % 2, "2026-11-16", "2026-11-09")
    frame["Churn"] = np.where(frame["Churn"] == "Yes", 1, 0)  # numeric flag
    code, text, book = convert(tmp_path, frame, "--snapshot-date-column", "exported",
                               fmt="parquet")
    assert code == 0, text
    accounts = pd.read_parquet(book / "accounts.parquet")
    assert "exported" not in accounts.columns
    assert accounts["SeniorCitizen"].dtype == "float64"
    mrr = pd.read_parquet(book / "mrr_changes.parquet")
    churn = mrr[mrr.reason == "churn"].merge(frame, left_on="account_id", right_on="customerID")
    exported = pd.to_datetime(churn.exported).astype("datetime64[ns]")
    expected = (exported - pd.Timedelta(days=1)).where(churn.tenure > 0, exported)
    assert (churn.effective_date == expected).all()
    assert set(exported) == {pd.Timestamp("2026-11-16"), pd.Timestamp("2026-11-09")}
    assert run_cli("validate", "--data", book)[0] == 0


def test_custom_churn_values(tmp_path):
    frame = telco_table(100, seed=5)
    frame["Churn"] = np.where(frame["Churn"] == "Yes", "Churned", "Stayed")
    code, text, _ = convert(tmp_path, frame, "--churn-values", "churned",
                            "--stay-values", "Stayed")
    assert code == 0, text


# ------------------------------------------------------------------------------ bad input


def bad(tmp_path, frame, *extra) -> str:
    code, text, book = convert(tmp_path, frame, *extra)
    assert code == 2, text
    assert "Traceback" not in text
    assert not book.exists() or not any(book.iterdir())  # nothing written
    return text


def test_missing_named_column(tmp_path):
    text = bad(tmp_path, telco_table(50).drop(columns="tenure"))
    assert "--tenure-column 'tenure': no such column" in text


def test_churn_flag_outside_the_values(tmp_path):
    frame = telco_table(50)
    frame.loc[[4, 9, 11], "Churn"] = ["maybe", "", "Y"]
    text = bad(tmp_path, frame)
    assert "column 'Churn' has values that are neither churn" in text
    assert "3 of 50 rows" in text and "'maybe'" in text and "'Y'" in text


@pytest.mark.parametrize("column", ["tenure", "MonthlyCharges"])
def test_negative_or_non_numeric_tenure_and_charge(tmp_path, column):
    frame = telco_table(50).astype({column: "object"})
    frame.loc[[5, 6], column] = ["-3", "n/a"]
    frame.loc[7, column] = "12,5"
    text = bad(tmp_path, frame)
    assert f"column '{column}' must be numeric: 2 of 50 rows, e.g. ['n/a', '12,5']" in text
    assert f"column '{column}' must be >= 0: 1 of 50 rows, e.g. ['-3']" in text


def test_missing_tenure(tmp_path):
    frame = telco_table(50).astype({"tenure": "object"})
    frame.loc[8, "tenure"] = None
    assert "column 'tenure' has missing values: 1 of 50 rows, e.g. ['row 8']" in bad(
        tmp_path, frame)


def test_duplicate_ids(tmp_path):
    frame = telco_table(50)
    frame.loc[[10, 20, 30], "customerID"] = frame.customerID[1]
    frame.loc[40, "customerID"] = frame.customerID[2] + ".0"  # not the same id: text kept
    text = bad(tmp_path, frame)
    assert re.search(r"column 'customerID' has repeated ids \(one row per customer\): "
                     r"4 of 50 rows, e\.g\. \['0001-BX'\]", text), text


@pytest.mark.parametrize("name", ["mrr", "as_of", "created_at", "label", "churn_probability",
                                  "health_score", "account_id"])
def test_attribute_named_like_an_output_column(tmp_path, name):
    frame = telco_table(50)
    frame[name] = 1
    text = bad(tmp_path, frame)
    assert "attribute column(s) are named like churnml's output" in text and f"'{name}'" in text


def test_usage_errors(tmp_path):
    frame = telco_table(20)
    assert "exactly one of --snapshot-date" in bad(
        tmp_path, frame, "--snapshot-date", SNAPSHOT, "--snapshot-date-column", "tenure")
    assert "--snapshot-date must be an ISO date" in bad(tmp_path, frame, "--snapshot-date",
                                                        "16/11/2026")
    code, text, book = convert(tmp_path, frame)
    assert code == 0
    code, text, _ = convert(tmp_path, frame)  # the same --out again: not empty
    assert code == 2 and "must be a new or empty folder" in text


def test_a_row_the_contract_would_set_aside_stops_the_command(tmp_path):
    """Rows in = rows out: one customer's snapshot date years after everyone else's makes its
    `new` row "dated after the export"; the command stops rather than lose that customer."""
    frame = telco_table(1500, seed=11)
    frame["exported"] = SNAPSHOT
    frame.loc[7, ["exported", "tenure", "Churn"]] = ["2030-01-01", 0, "No"]
    text = bad(tmp_path, frame, "--snapshot-date-column", "exported")
    assert "the converted book would lose rows: 1 of" in text
    assert "mrr_changes: 1 dated after the export" in text and "nothing was written" in text


def test_a_tenure_of_centuries_is_refused(tmp_path):
    frame = telco_table(30).astype({"tenure": "float64"})
    frame.loc[3, "tenure"] = 1e9
    assert "column 'tenure' reaches back before the year 1677: 1 of 30 rows" in bad(tmp_path, frame)


def test_fractional_tenure_counts_days_of_an_average_month(tmp_path):
    frame = telco_table(30).astype({"tenure": "float64"})
    frame.loc[1, "tenure"] = 2.5  # 2 calendar months and round(15.2) = 15 days
    code, text, book = convert(tmp_path, frame)
    assert code == 0, text
    accounts = pd.read_parquet(book / "accounts.parquet").set_index("account_id")
    assert accounts.loc[frame.customerID[1], "created_at"] == pd.Timestamp("2026-09-01")


def test_churn_is_labeled_without_a_customer_who_joined_on_the_snapshot_date(telco, tmp_path):
    """The renewal rows of the customers who stayed put the book's data end on the snapshot
    date, so the churns of the day before are labeled at the last labeled as_of (without
    them the data end was the churn day and no churn was ever labeled)."""
    from churnml.features.labels import latest_labeled_as_of, observation_grid

    frame = telco[telco["tenure"] > 0].reset_index(drop=True)
    code, text, book = convert(tmp_path, frame)
    assert code == 0, text
    loaded, _ = load_book(book)
    assert loaded.data_end == pd.Timestamp(SNAPSHOT)
    as_of = latest_labeled_as_of(loaded, 30)
    grid = observation_grid(loaded, pd.DatetimeIndex([as_of]), 30)
    assert grid["labeled"].all()
    assert grid["churn"].sum() == (frame["Churn"] == "Yes").sum()
    assert grid["expansion"].sum() == 0 and grid["contraction"].sum() == 0
