"""`churnml validate --data DIR [--rejects FILE]` through `churnml.cli.main`."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from churnml.cli import main

ACCOUNTS = "account_id,created_at,plan\n1,2024-01-01,pro\n2,2024-01-02,basic\n3,2024-01-03,pro\n"
MRR = "account_id,effective_date,mrr\n1,2024-01-01,100\n2,2024-01-02,50\n3,2024-01-03,80\n"


def make_book(folder, **tables: str):
    folder.mkdir(parents=True, exist_ok=True)
    files = {"accounts": ACCOUNTS, "mrr_changes": MRR, **tables}
    for name, text in files.items():
        if text is not None:
            (folder / f"{name}.csv").write_text(text)
    return folder


def run(capsys, *args) -> tuple[int, str]:
    code = main(["validate", *map(str, args)])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())  # undo Rich's line wrapping


def count_row(text: str, table: str) -> tuple[int, int, int]:
    match = re.search(rf"{table}\s*│\s*([\d,]+)\s*│\s*([\d,]+)\s*│\s*([\d,]+)", text)
    assert match, text
    return tuple(int(g.replace(",", "")) for g in match.groups())


def test_clean_book_exits_0_and_prints_counts(tmp_path, capsys):
    book = make_book(tmp_path / "b")
    code, out = run(capsys, "--data", book)
    assert code == 0
    assert count_row(out, "accounts") == (3, 3, 0)
    assert count_row(out, "mrr_changes") == (3, 3, 0)
    assert count_row(out, "total") == (6, 6, 0)
    assert "all 6 rows accepted" in out
    assert (book / "_rejects.csv").read_text().strip() == "table,row,column,value,reason"


def test_rows_set_aside_exit_0_with_warning_and_rejects_file(tmp_path, capsys):
    book = make_book(
        tmp_path / "b",
        mrr_changes=MRR + "9,2024-01-01,10\n1,2024-02-01,-5\n",
        nps_responses="account_id,ts,score\n1,2024-03-01,9\n2,2024-03-01,11\n3,yesterday,5\n",
        invoices=("account_id,invoice_id,due_date,amount,paid_at\n1,i1,2024-02-01,100,\n"
                  "2,i1,2024-02-01,50,\n3,i3,2024-02-01,80,2024-02-02\n3,i3,2024-02-01,80,"
                  "2024-02-02\n"),
    )
    rejects = tmp_path / "out" / "rejects.csv"
    code, out = run(capsys, "--data", book, "--rejects", rejects)
    assert code == 0
    assert count_row(out, "mrr_changes") == (5, 3, 2)
    assert count_row(out, "nps_responses") == (3, 1, 2)
    assert count_row(out, "invoices") == (4, 2, 2)
    assert count_row(out, "total") == (15, 9, 6)
    assert "warning: 6 of 15 rows were set aside" in out
    assert str(rejects) in out
    written = pd.read_csv(rejects, dtype=str, keep_default_na=False)
    assert written.to_dict("records") == [
        {"table": "mrr_changes", "row": "3", "column": "account_id", "value": "9",
         "reason": "unknown account"},
        {"table": "mrr_changes", "row": "4", "column": "mrr", "value": "-5",
         "reason": "negative value"},
        {"table": "invoices", "row": "1", "column": "invoice_id", "value": "i1",
         "reason": "duplicate invoice_id"},
        {"table": "invoices", "row": "3", "column": "invoice_id", "value": "i3",
         "reason": "duplicate invoice_id"},
        {"table": "nps_responses", "row": "1", "column": "score", "value": "11",
         "reason": "score outside 0-10"},
        {"table": "nps_responses", "row": "2", "column": "ts", "value": "yesterday",
         "reason": "unparseable timestamp"},
    ]
    assert not (book / "_rejects.csv").exists()  # --rejects chose another place


def test_default_rejects_file_in_data_folder(tmp_path, capsys):
    book = make_book(tmp_path / "b", usage_events="account_id,ts,event\n1,2024-01-05,login\n"
                                                  "7,2024-01-05,login\n")
    code, out = run(capsys, "--data", book)
    assert code == 0
    assert len(pd.read_csv(book / "_rejects.csv")) == 1
    code, out = run(capsys, "--data", book)  # the rejects file is never read as a table
    assert code == 0 and "ignored" not in out


@pytest.mark.parametrize("tables,expected", [
    ({"mrr_changes": None}, "error: mrr_changes: required table is missing"),
    ({"usage_events": "account_id,ts\n1,2024-01-01\n"},
     "error: usage_events: missing required column 'event'"),
    ({"usage_events": "account_id,ts,event,quantity\n" + "1,2024-01-01,login,1\n" * 6
      + "1,2024-01-01,login,n/a\n1,2024-01-01,login,\"12,5\"\n1,2024-01-01,login,some\n"},
     "error: usage_events: column 'quantity' must be numeric; 3 bad values of 9, "
     "e.g. ['n/a', '12,5', 'some']"),
    ({"mrr_changes": "account_id,effective_date,mrr\n8,2024-01-01,100\n9,2024-01-01,5\n"},
     "error: mrr_changes: no usable rows: all 2 rows were set aside (2 unknown account)"),
    ({"accounts": "account_id,created_at\n"}, "error: accounts: the table has no rows"),
])
def test_unusable_input_exits_2_with_a_message(tmp_path, capsys, tables, expected):
    book = make_book(tmp_path / "b", **tables)  # a table given as None is not written
    code, out = run(capsys, "--data", book)
    assert code == 2
    assert expected in out
    assert "Traceback" not in out


def test_both_formats_for_a_table_exits_2(tmp_path, capsys):
    book = make_book(tmp_path / "b")
    pd.read_csv(book / "accounts.csv").to_parquet(book / "accounts.parquet")
    code, out = run(capsys, "--data", book)
    assert code == 2 and "accounts: found both accounts.csv and accounts.parquet" in out


def test_missing_folder_exits_2(tmp_path, capsys):
    code, out = run(capsys, "--data", tmp_path / "nope")
    assert code == 2 and "does not exist" in out
