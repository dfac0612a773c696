"""User text reaches the terminal and the rejects file literally: Rich markup in a folder
name, an --as-of value or a CSV cell is printed as is (exit 2 with the message, no traceback),
spreadsheet formulas in the rejects file are neutralised, and files are written atomically
through unique temporary files (a full disk is exit 1 naming the file)."""

from __future__ import annotations

import errno
import os

import pandas as pd
import pytest

from churnml.cli import main

ACCOUNTS = "account_id,created_at,plan\n1,2024-01-01,pro\n2,2024-01-02,basic\n3,2024-01-03,pro\n"
MRR = "account_id,effective_date,mrr\n1,2024-01-01,100\n2,2024-01-02,50\n3,2024-01-03,80\n"


def make_book(folder, **tables):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {"accounts": ACCOUNTS, "mrr_changes": MRR, **tables}.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


def run(capsys, *args) -> tuple[int, str]:
    code = main([*map(str, args)])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


# -- finding 10: Rich markup in user text ----------------------------------------------------

def test_markup_in_a_missing_data_folder_is_printed_literally(tmp_path, capsys):
    code, out = run(capsys, "validate", "--data", tmp_path / "[/x]")
    assert code == 2
    assert f"error: data folder {tmp_path / '[/x]'} does not exist" in out
    assert "Traceback" not in out and "MarkupError" not in out


def test_markup_in_an_existing_data_folder_is_printed_literally(tmp_path, capsys):
    book = make_book(tmp_path / "[/x] [bold]b", usage_events="account_id,ts,event\n7,2024-01-05,login\n")
    code, out = run(capsys, "validate", "--data", book)  # progress line, table title, warning
    assert code == 0, out
    assert f"see {book / '_rejects.csv'}" in out
    assert "Book of business: /" in out  # the title (folder name) rendered, maybe shortened


def test_markup_in_as_of_is_printed_literally(tmp_path, capsys):
    code, out = run(capsys, "score", "--data", tmp_path, "--as-of", "[/x]", "--out", tmp_path / "o")
    assert code == 2
    assert "--as-of must be an ISO date like 2026-11-16. Got '[/x]'." in out
    assert "Traceback" not in out


def test_markup_in_a_csv_cell_is_printed_literally(tmp_path, capsys):
    book = make_book(tmp_path / "b", usage_events="account_id,ts,event,quantity\n"
                     + "1,2024-01-01,login,1\n" * 2 + "1,2024-01-01,login,[/bold]\n" * 3)
    code, out = run(capsys, "validate", "--data", book)
    assert code == 2
    assert "column 'quantity' must be numeric; 3 bad values of 5, e.g. ['[/bold]']" in out
    assert "Traceback" not in out


def test_markup_in_the_output_path_is_printed_literally(tmp_path, capsys):
    book = make_book(tmp_path / "b")
    out_file = tmp_path / "[/x]" / "f.parquet"
    code, out = run(capsys, "features", "--data", book, "--as-of", "2024-06-01", "--out", out_file)
    assert code == 0, out
    assert f"to {out_file}" in out


# -- finding 10: spreadsheet formulas in the rejects file ------------------------------------

@pytest.mark.parametrize("cell,written", [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
    ("+1+1", "'+1+1"), ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("-5", "-5"), ("+3.5", "+3.5"), ("-1e-3", "-1e-3"),  # plain numbers stay readable
    ("-", "'-"), ("abc", "abc"), ("", ""), ("a=b", "a=b"),
])
def test_neutralise_cell(cell, written):
    from churnml.data.csv_safety import neutralise_cell

    assert neutralise_cell(cell) == written


def test_rejects_file_neutralises_formulas(tmp_path, capsys):
    book = make_book(
        tmp_path / "b",
        mrr_changes=MRR + "=1+2,2024-01-01,10\n@cmd,2024-01-01,10\n1,2024-02-01,-5\n",
        touchpoints="account_id,ts,kind,value\n1,=NOW(),call,1\n",
    )
    code, out = run(capsys, "validate", "--data", book)
    assert code == 0, out
    rejects = pd.read_csv(book / "_rejects.csv", dtype=str, keep_default_na=False)
    assert sorted(rejects["value"]) == sorted(["'=1+2", "'@cmd", "-5", "'=NOW()"])
    text = (book / "_rejects.csv").read_text()
    assert not any(line.split(",")[3].startswith(("=", "+", "@")) for line in text.splitlines()[1:])


# -- temporary files: unique, never through a symlink, removed on failure --------------------

def test_rejects_are_not_written_through_a_symlinked_temporary_file(tmp_path, capsys):
    book = make_book(tmp_path / "b", usage_events="account_id,ts,event\n7,2024-01-05,login\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, book / "_rejects.csv.tmp")  # the temporary name used to be fixed
    code, out = run(capsys, "validate", "--data", book)
    assert code == 0, out
    assert victim.read_text() == "precious"
    assert "unknown account" in (book / "_rejects.csv").read_text()
    assert not (book / "_rejects.csv").is_symlink()


def test_features_output_not_written_through_a_symlinked_temporary_file(tmp_path, capsys):
    book = make_book(tmp_path / "b")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out_file = tmp_path / "f.parquet"
    os.symlink(victim, tmp_path / "f.parquet.tmp")
    code, out = run(capsys, "features", "--data", book, "--as-of", "2024-06-01", "--out", out_file)
    assert code == 0, out
    assert victim.read_text() == "precious"
    assert len(pd.read_parquet(out_file)) == 3


def test_disk_full_writing_rejects_exits_1_and_leaves_no_temporary_file(tmp_path, capsys,
                                                                        monkeypatch):
    book = make_book(tmp_path / "b", usage_events="account_id,ts,event\n7,2024-01-05,login\n")

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    code, out = run(capsys, "validate", "--data", book)
    assert code == 1
    assert f"error: disk full writing {book / '_rejects.csv'}" in out
    assert "Traceback" not in out
    assert sorted(p.name for p in book.iterdir()) == ["accounts.csv", "mrr_changes.csv",
                                                      "usage_events.csv"]


def test_weights_and_adopted_pointer_not_written_through_symlinked_temporary_files(tmp_path):
    from churnml.health.score import HealthScore
    from churnml.jobs.calibrate_health import ADOPTED_POINTER, adopt

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, tmp_path / "weights-v1.yaml.tmp")  # the old fixed temporary names
    os.symlink(victim, tmp_path / f"{ADOPTED_POINTER}.tmp-{os.getpid()}")
    HealthScore().save(tmp_path / "weights-v1.yaml")
    adopt("1", folder=tmp_path)
    assert victim.read_text() == "precious"
    assert (tmp_path / ADOPTED_POINTER).read_text() == "weights-v1.yaml\n"
