"""The bad-input corpus of the issue "Trust nothing that comes in": hostile or broken input
through every door, one table-driven case each.

(a) **tables** through ``churnml validate`` (in-process, the project's Typer app under
``typer.testing.CliRunner``): either an error (exit 2, a message naming the table and column)
or rows set aside (exit 0, the rejects file names table, column, value and reason, and read =
accepted + rejected for every table), or, where the data contract says a value is normalised
(an open-ended ``9999-12-31``, ids like ``" 17 "``), accepted with every row counted;
(b) **CLI arguments**: exit 2 with a message naming the option or value (README: 0 ok, 2 bad
input or usage, 1 unexpected failure), a few through a real ``churnml`` process;
(c) **HTTP bodies** to the in-process service over fake models (``test_serving_fakes``):
always 4xx, never 5xx, naming the field.

No case may print a Python traceback. A case that shows a bug is ``xfail(strict=True)`` with
the file, the input and what it got against what the contract says (never a weaker test).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churnml.cli import main

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PATH = ROOT / "serving" / "service.py"

ACCOUNTS = "account_id,created_at,plan\n1,2024-01-01,pro\n2,2024-01-02,basic\n3,2024-01-03,pro\n"
MRR = "account_id,effective_date,mrr\n1,2024-01-01,100\n2,2024-01-02,50\n3,2024-01-03,80\n"
# 25 accounts: enough reference rows (>= 20 accounts) for the "dated after the export" check
ACCOUNTS_25 = "account_id,created_at\n" + "".join(f"{i},2024-01-01\n" for i in range(25))
MRR_25 = "account_id,effective_date,mrr\n" + "".join(f"{i},2024-01-0{1 + i % 9},10\n"
                                                     for i in range(25))
TS3 = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"])
NO_TRACEBACK = ("Traceback", "MarkupError", 'File "')

xfail = pytest.mark.xfail


# ============================================================================ helpers


def run_cli(*args) -> tuple[int, str]:
    """``churnml ARGS`` in-process: ``churnml.cli.main`` (the Typer app plus the mapping of
    churnml's errors to exit codes) with output captured by Click's CliRunner; output is
    returned on one line (Rich's wrapping undone)."""
    runner = CliRunner()
    with runner.isolation() as streams:
        code = main([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        out = b"".join(s.getvalue() for s in streams if s is not None).decode(errors="replace")
    return code, " ".join(out.split())


def write_book(folder: Path, files: dict) -> Path:
    """The tiny default book (3 accounts, 3 MRR rows, CSV) with ``files`` added or replaced:
    a name without a suffix is ``<name>.csv``; text or bytes are written as they are, a
    DataFrame as parquet, a ``pyarrow.Table`` as parquet as it is, ``None`` leaves it out."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in {"accounts": ACCOUNTS, "mrr_changes": MRR, **files}.items():
        if content is None:
            continue
        if isinstance(content, (pd.DataFrame, pa.Table)):
            path = folder / (name if name.endswith(".parquet") else f"{name}.parquet")
            if isinstance(content, pd.DataFrame):
                content.to_parquet(path)
            else:
                pq.write_table(content, path)
        else:
            path = folder / (name if "." in name else f"{name}.csv")
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
    return folder


def pq_book(mrr: pd.DataFrame, accounts: pd.DataFrame | None = None) -> dict:
    """Both required tables as parquet (the CSV defaults left out)."""
    if accounts is None:
        accounts = pd.DataFrame({"account_id": ["1", "2", "3"], "created_at": TS3})
    return {"accounts": None, "mrr_changes": None,
            "_pq_accounts": accounts, "_pq_mrr_changes": mrr}


def materialise(files: dict) -> dict:
    """Turn ``pq_book``'s ``_pq_<table>`` keys into parquet entries for :func:`write_book`."""
    out = {}
    for name, content in files.items():
        if name.startswith("_pq_"):
            out[name[4:]] = content
        else:
            out[name] = content
    return out


COUNT_ROW = re.compile(r"│\s*([a-z_]+)\s*│\s*([\d,]+)\s*│\s*([\d,]+)\s*│\s*([\d,]+)\s*│")


def count_rows(out: str) -> dict[str, tuple[int, int, int]]:
    """table -> (read, accepted, rejected) from the printed table of ``churnml validate``."""
    return {m.group(1): tuple(int(g.replace(",", "")) for g in m.groups()[1:])
            for m in COUNT_ROW.finditer(out)}


# ============================================================================ (a) tables

#: (files, expected): expected is
#:   ("error", [substrings of the message])                       -> exit 2
#:   ("reject", [(table, column, value, reason), ...])            -> exit 0, exactly these rejects
#:   ("accept", {table: (read, accepted, rejected)})              -> exit 0, nothing set aside
TABLE_CASES = [
    pytest.param({"mrr_changes": None},
                 ("error", ["mrr_changes: required table is missing",
                            "mrr_changes.parquet or mrr_changes.csv"]),
                 id="table-missing-required-table-mrr_changes"),
    pytest.param({"mrr_changes": "account_id,mrr\n1,100\n"},
                 ("error", ["mrr_changes: missing required column 'effective_date'"]),
                 id="table-missing-required-column-effective_date"),
    pytest.param({"mrr_changes": MRR + "1,2024-02-01,lots\n"},
                 ("error", ["mrr_changes: column 'mrr' must be numeric", "['lots']"]),
                 id="table-csv-wrong-type-text-in-mrr"),
    pytest.param(materialise(pq_book(pd.DataFrame({"account_id": ["1", "2", "3"],
                                                   "effective_date": TS3,
                                                   "mrr": ["100", "50", "lots"]}))),
                 ("error", ["mrr_changes: column 'mrr' must be numeric", "['lots']"]),
                 id="table-parquet-wrong-type-string-column-mrr"),
    pytest.param(materialise(pq_book(pd.DataFrame({"account_id": ["1", "2", "3"],
                                                   "effective_date": [1704067200] * 3,
                                                   "mrr": [1.0, 2.0, 3.0]}))),
                 ("error", ["mrr_changes: column 'effective_date' must hold timestamps",
                            "not numbers"]),
                 id="table-parquet-epoch-numbers-in-timestamp-column"),
    pytest.param({"mrr_changes": MRR + "1,2024-13-45,100\n"},
                 ("reject", [("mrr_changes", "effective_date", "2024-13-45",
                              "unparseable timestamp")]),
                 id="table-unparseable-timestamp-2024-13-45"),
    pytest.param({"nps_responses": "account_id,ts,score\n1,2024-02-01,9\n2,yesterday,5\n"},
                 ("reject", [("nps_responses", "ts", "yesterday", "unparseable timestamp")]),
                 id="table-unparseable-timestamp-yesterday"),
    pytest.param({"mrr_changes": MRR + "1,2024-02-01,NaN\n"},
                 ("error", ["mrr_changes: column 'mrr' must be numeric", "['NaN']"]),
                 id="table-csv-nan-mrr"),
    pytest.param({"mrr_changes": MRR + "1,2024-02-01,inf\n"},
                 ("error", ["mrr_changes: column 'mrr' must be numeric", "['inf']"]),
                 id="table-csv-inf-mrr"),
    pytest.param(materialise(pq_book(pd.DataFrame({
        "account_id": ["1", "2", "3", "1"], "effective_date": list(TS3) + [TS3[0] + pd.Timedelta(days=30)],
        "mrr": [100.0, 50.0, 80.0, np.nan]}))),
                 ("reject", [("mrr_changes", "mrr", "", "missing required value")]),
                 id="table-parquet-nan-mrr-is-a-missing-value"),
    pytest.param(materialise(pq_book(pd.DataFrame({
        "account_id": ["1", "2", "3", "1"], "effective_date": list(TS3) + [TS3[0] + pd.Timedelta(days=30)],
        "mrr": [100.0, 50.0, 80.0, np.inf]}))),
                 ("error", ["mrr_changes: column 'mrr' must be numeric", "['inf']"]),
                 id="table-parquet-inf-mrr"),
    pytest.param({"mrr_changes": MRR + "1,2024-02-01,-5\n"},
                 ("reject", [("mrr_changes", "mrr", "-5", "negative value")]),
                 id="table-negative-mrr"),
    pytest.param({"invoices": "account_id,invoice_id,due_date,amount\n1,i1,2024-02-01,-1e3\n"
                              "2,i2,2024-02-01,10\n"},
                 ("reject", [("invoices", "amount", "-1e3", "negative value")]),  # as read
                 id="table-negative-invoice-amount"),
    pytest.param({"mrr_changes": MRR + "1,2024-01-01,100\n"},
                 ("reject", [("mrr_changes", "", "same as row 0", "duplicate row")]),
                 id="table-duplicate-row"),
    pytest.param({"accounts": ACCOUNTS + "1,2024-05-01,basic\n"},
                 ("reject", [("accounts", "account_id", "1", "duplicate account_id")]),
                 id="table-duplicate-account_id"),
    pytest.param({"mrr_changes": MRR + "99,2024-01-01,100\n"},
                 ("reject", [("mrr_changes", "account_id", "99", "unknown account")]),
                 id="table-unknown-account-id"),
    pytest.param({"nps_responses": "account_id,ts,score\n1,2024-02-01,12\n2,2024-02-01,7\n"},
                 ("reject", [("nps_responses", "score", "12", "score outside 0-10")]),
                 id="table-nps-12-out-of-range"),
    pytest.param({"nps_responses": "account_id,ts,score\n1,2024-02-01,7.5\n2,2024-02-01,7\n"},
                 ("reject", [("nps_responses", "score", "7.5", "score not an integer")]),
                 id="table-nps-7.5-not-an-integer"),
    pytest.param({"accounts": ACCOUNTS_25, "mrr_changes": MRR_25,
                  "nps_responses": "account_id,ts,score\n1,2024-01-05,9\n2,2099-01-05,9\n"},
                 ("reject", [("nps_responses", "ts", "2099-01-05", "dated after the export")]),
                 id="table-future-dated-nps-2099"),
    pytest.param({"mrr_changes": "account_id,effective_date,mrr,term_end\n"
                                 "1,2024-01-01,100,9999-12-31\n2,2024-01-02,50,2025-01-01\n"
                                 "3,2024-01-03,80,\n"},
                 ("accept", {"accounts": (3, 3, 0), "mrr_changes": (3, 3, 0)}),
                 id="table-9999-12-31-in-term_end-means-no-end"),
    pytest.param({"accounts": ACCOUNTS + "4,9999-12-31,pro\n"},
                 ("reject", [("accounts", "created_at", "9999-12-31", "unparseable timestamp")]),
                 id="table-9999-12-31-in-created_at-is-unparseable"),
    pytest.param({"mrr_changes": None, "mrr_changes.parquet": pa.table({
        "account_id": ["1", "2", "3"],
        "effective_date": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2),
                                    dt.date(9999, 12, 31)], pa.date32()),
        "mrr": [1.0, 2.0, 3.0]})},
                 ("reject", [("mrr_changes", "effective_date", "9999-12-31",
                              "unparseable timestamp")]),
                 id="table-parquet-date32-9999-12-31-in-effective_date"),
    pytest.param({"accounts": "account_id,created_at\n17,2024-01-01\n2,2024-01-01\n",
                  "mrr_changes": "account_id,effective_date,mrr\n 17 ,2024-01-01,100\n"
                                 "17.0,2024-02-01,120\n2,2024-01-01,5\n"},
                 ("accept", {"accounts": (2, 2, 0), "mrr_changes": (3, 3, 0)}),
                 id="table-ids-space-17-space-and-17.0-are-account-17"),
    pytest.param({"accounts": None, "mrr_changes": None,
                  "_pq_accounts": pd.DataFrame({"account_id": [1, 2, 10**19],
                                                "created_at": TS3}),
                  "_pq_mrr_changes": pd.DataFrame({"account_id": [1.0, 2.0, 1e19],
                                                   "effective_date": TS3,
                                                   "mrr": [1.0, 2.0, 3.0]})},
                 ("accept", {"accounts": (3, 3, 0), "mrr_changes": (3, 3, 0)}),
                 id="table-parquet-id-1e19-float-matches-integer-id"),
    pytest.param({"mrr_changes": MRR + "=cmd|' /C calc'!A0,2024-01-01,10\n"},
                 ("reject", [("mrr_changes", "account_id", "'=cmd|' /C calc'!A0",
                              "unknown account")]),
                 id="table-formula-cell-neutralised-in-rejects"),
    pytest.param({"mrr_changes": MRR + "[/bold],2024-01-01,10\n"},
                 ("reject", [("mrr_changes", "account_id", "[/bold]", "unknown account")]),
                 id="table-rich-markup-cell-printed-and-rejected-literally"),
    pytest.param({"usage_events": "account_id,ts,event,quantity\n1,2024-01-01,login,1\n"
                                  "1,2024-01-01,login,[/bold]\n"},
                 ("error", ["usage_events: column 'quantity' must be numeric", "['[/bold]']"]),
                 id="table-rich-markup-in-numeric-cell-error"),
    pytest.param({"accounts": "account_id,created_at,as_of\n1,2024-01-01,x\n2,2024-01-01,x\n"
                              "3,2024-01-01,x\n"},
                 ("error", ["accounts: column 'as_of' is named like one of churnml's output"]),
                 id="table-accounts-column-named-as_of"),
    pytest.param({"accounts": "account_id,created_at,churn_probability\n1,2024-01-01,1\n"
                              "2,2024-01-01,1\n3,2024-01-01,1\n"},
                 ("error", ["accounts: column 'churn_probability' is named like one of "
                            "churnml's output"]),
                 id="table-accounts-column-named-churn_probability"),
    pytest.param({"usage_events": ""},
                 ("error", ["usage_events: usage_events.csv is empty"]),
                 id="table-empty-csv-file-no-header"),
    pytest.param({"accounts": "account_id,created_at\n"},
                 ("error", ["accounts: the table has no rows"]),
                 id="table-accounts-header-only"),
    pytest.param({"usage_events.parquet": b"PAR1 not a parquet file"},
                 ("error", ["usage_events: cannot read usage_events.parquet"]),
                 id="table-corrupt-parquet-file"),
    pytest.param({"accounts": "\ufeff" + ACCOUNTS},
                 ("accept", {"accounts": (3, 3, 0), "mrr_changes": (3, 3, 0)}),
                 id="table-csv-with-utf8-bom"),
    pytest.param({"accounts": ACCOUNTS.replace(",", ";")},
                 ("error", ["accounts: missing required column 'account_id'",
                            "account_id;created_at;plan"]),
                 id="table-csv-semicolon-delimiter"),
    pytest.param({"mrr_changes": MRR + "1,2024-02-01," + "x" * 200_000 + "\n"},
                 ("error", ["mrr_changes: column 'mrr' must be numeric", "xxxx..."]),
                 id="table-extremely-long-string-in-numeric-column-is-cut"),
    pytest.param({"accounts": ACCOUNTS + "4,2024-01-01," + "p" * 200_000 + "\n"},
                 ("accept", {"accounts": (4, 4, 0), "mrr_changes": (3, 3, 0)}),
                 id="table-extremely-long-string-in-text-column"),
    pytest.param({"mrr_changes": MRR + ",2024-02-01,5\n"},
                 ("reject", [("mrr_changes", "account_id", "", "missing required value")]),
                 id="table-blank-account-id"),
    pytest.param({"accounts.parquet": pd.DataFrame({"account_id": ["1"],
                                                    "created_at": TS3[:1]})},
                 ("error", ["accounts: found both accounts.csv and accounts.parquet"]),
                 id="table-both-csv-and-parquet"),
    pytest.param({"mrr_changes": "account_id,effective_date,mrr,mrr\n1,2024-01-01,100,-7\n"
                                 "2,2024-01-02,50,x\n3,2024-01-03,80,9\n"},
                 ("error", ["mrr_changes: column names appear more than once", "mrr"]),
                 id="table-csv-duplicate-column-name"),
]


@pytest.mark.parametrize(("files", "expected"), TABLE_CASES)
def test_table_corpus(tmp_path, files, expected):
    book = write_book(tmp_path / "book", materialise(files))
    code, out = run_cli("validate", "--data", book)
    assert not any(marker in out for marker in NO_TRACEBACK), out
    kind, detail = expected
    if kind == "error":
        assert code == 2, out
        assert "error:" in out
        for phrase in detail:
            assert phrase in out, (phrase, out)
        return
    assert code == 0, out
    counts = count_rows(out)
    assert counts, out
    tables = {t: c for t, c in counts.items() if t != "total"}
    for table, (read, accepted, rejected) in counts.items():
        assert read == accepted + rejected, (table, counts)  # nothing lost
    assert counts["total"] == tuple(sum(c[i] for c in tables.values()) for i in range(3))
    rejects = pd.read_csv(book / "_rejects.csv", dtype=str, keep_default_na=False)
    assert list(rejects.columns) == ["table", "row", "column", "value", "reason"]
    per_table = rejects["table"].value_counts().to_dict()
    for table, (_, _, rejected) in tables.items():
        assert per_table.get(table, 0) == rejected, (table, per_table, counts)
    if kind == "accept":
        for table, want in detail.items():
            assert counts[table] == want, (table, counts)
        assert rejects.empty and "ok: all" in out
        return
    got = [tuple(r) for r in rejects[["table", "column", "value", "reason"]].itertuples(
        index=False)]
    assert got == detail
    assert f"warning: {len(detail)} of" in out and "_rejects.csv" in out
    for table, _, _, reason in detail:
        assert f"{table}: 1 {reason}" in out or reason in out


# ============================================================================ (b) CLI arguments

#: (args with {book}, {file}, {missing}, {out} placeholders, phrases of the message)
CLI_CASES = [
    pytest.param(["score", "--data", "{book}", "--as-of", "[/x]", "--out", "{out}"],
                 ["--as-of must be an ISO date like 2026-11-16. Got '[/x]'."],
                 id="cli-as-of-rich-markup"),
    pytest.param(["score", "--data", "{book}", "--as-of", "2026-13-45", "--out", "{out}"],
                 ["--as-of must be an ISO date", "'2026-13-45'"],
                 id="cli-score-as-of-impossible-date"),
    pytest.param(["features", "--data", "{book}", "--as-of", "2026-13-45", "--out",
                  "{out}/f.parquet"],
                 ["--as-of: 1 value(s) are not ISO dates", "['2026-13-45']"],
                 id="cli-features-as-of-impossible-date"),
    pytest.param(["features", "--data", "{book}", "--as-of", "2024-06-01,,x", "--out",
                  "{out}/f.parquet"],
                 ["--as-of: 1 value(s) are not ISO dates", "['x']"],
                 id="cli-features-as-of-list-with-garbage"),
    pytest.param(["health", "--data", "{book}", "--as-of", "2026-13-45", "--out",
                  "{out}/h.parquet"],
                 ["--as-of must be an ISO date", "'2026-13-45'"],
                 id="cli-health-as-of-impossible-date"),
    pytest.param(["validate", "--data", "{missing}"],
                 ["error: data folder", "does not exist"],
                 id="cli-data-folder-does-not-exist"),
    pytest.param(["validate", "--data", "{missing}/[/x]"],
                 ["error: data folder", "[/x] does not exist"],
                 id="cli-data-folder-with-markup-does-not-exist"),
    pytest.param(["validate", "--data", "{file}"],
                 ["error: data folder", "accounts.csv is not a folder"],
                 id="cli-data-is-a-file-not-a-folder"),
    pytest.param(["features", "--data", "{file}", "--as-of", "2024-06-01", "--out",
                  "{out}/f.parquet"],
                 ["error: data folder", "is not a folder"],
                 id="cli-features-data-is-a-file"),
    pytest.param(["simulate", "--out", "{out}", "--accounts", "-5"],
                 ["Invalid value for '--accounts'", "greater than or equal to 1"],
                 id="cli-simulate-accounts-negative"),
    pytest.param(["simulate", "--out", "{out}", "--accounts", "many"],
                 ["Invalid value for '--accounts'", "valid integer"],
                 id="cli-simulate-accounts-not-a-number"),
    pytest.param(["simulate", "--out", "{out}", "--months", "0"],
                 ["Invalid value for '--months'"],
                 id="cli-simulate-months-zero"),
    pytest.param(["train", "--data", "{book}", "--target", "bogus"],
                 ["Invalid value for '--target'", "'bogus' is not one of"],
                 id="cli-train-target-bogus"),
    pytest.param(["promote", "--target", "bogus", "--version", "1"],
                 ["Invalid value for '--target'", "'bogus' is not one of"],
                 id="cli-promote-target-bogus"),
    pytest.param(["score", "--data", "{book}", "--as-of", "2024-06-01", "--out", "{out}",
                  "--chunk-size", "0"],
                 ["--chunk-size and --shards must be positive integers", "Got 0"],
                 id="cli-score-chunk-size-zero"),
    pytest.param(["score", "--data", "{book}", "--as-of", "2024-06-01", "--out", "{out}",
                  "--engine", "bogus"],
                 ["--engine must be 'local' or 'spark'", "'bogus'"],
                 id="cli-score-engine-bogus"),
    pytest.param(["validate", "--data", "{book}", "--frobnicate"],
                 ["No such option: --frobnicate"],
                 id="cli-unknown-option"),
    pytest.param(["frobnicate"],
                 ["No such command 'frobnicate'"],
                 id="cli-unknown-command"),
    pytest.param(["validate"],
                 ["Missing option '--data'"],
                 id="cli-validate-without-data"),
    pytest.param(["validate", "--data", "{book}", "--rejects", "{book}"],
                 ["--rejects", "is a folder"],
                 id="cli-rejects-path-is-a-folder"),
]


def _fill(args: list[str], tmp_path: Path) -> list[str]:
    book = write_book(tmp_path / "book", {})
    places = {"{book}": str(book), "{file}": str(book / "accounts.csv"),
              "{missing}": str(tmp_path / "nope"), "{out}": str(tmp_path / "out")}
    filled = []
    for arg in args:
        for key, value in places.items():
            arg = arg.replace(key, value)
        filled.append(arg)
    return filled


@pytest.mark.parametrize(("args", "phrases"), CLI_CASES)
def test_cli_argument_corpus(tmp_path, monkeypatch, args, phrases):
    monkeypatch.setenv("CHURNML_HOME", str(tmp_path / "home"))  # never the developer's store
    code, out = run_cli(*_fill(args, tmp_path))
    assert code == 2, out
    for phrase in phrases:
        assert phrase in out, (phrase, out)
    assert not any(marker in out for marker in NO_TRACEBACK), out
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


#: the same contract through a real ``churnml`` process (the console script): exit code and
#: streams as a shell sees them
SUBPROCESS_CASES = [
    pytest.param(["validate", "--data", "{book}", "--frobnicate"],
                 ["No such option: --frobnicate"], id="process-unknown-option"),
    pytest.param(["score", "--data", "{book}", "--as-of", "[/x]", "--out", "{out}"],
                 ["Got '[/x]'"], id="process-as-of-rich-markup"),
    pytest.param(["validate", "--data", "{file}"], ["is not a folder"],
                 id="process-data-is-a-file"),
    pytest.param(["validate", "--data", "{book}", "--rejects", "{book}"],
                 ["--rejects", "is a folder"], id="process-rejects-path-is-a-folder"),
]


@pytest.mark.parametrize(("args", "phrases"), SUBPROCESS_CASES)
def test_cli_corpus_in_a_real_process(tmp_path, args, phrases):
    exe = Path(sys.executable).with_name("churnml")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "churnml.cli"]
    env = {**os.environ, "CHURNML_HOME": str(tmp_path / "home"), "BENTOML_DO_NOT_TRACK": "true",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "COLUMNS": "200"}
    done = subprocess.run(command + _fill(args, tmp_path), capture_output=True, text=True,
                          env=env, timeout=60)
    out = " ".join((done.stdout + done.stderr).split())
    assert not any(marker in out for marker in NO_TRACEBACK), out
    assert done.returncode == 2, out
    for phrase in phrases:
        assert phrase in out, (phrase, out)


# ============================================================================ (c) HTTP bodies

warnings.filterwarnings("ignore", message=".*httpx.*")

LIMITS = {  # small limits so the oversized cases stay small and fast
    "CHURNML_SERVE_MAX_BODY_BYTES": "60000",
    "CHURNML_SERVE_MAX_ROW_KEYS": "8",
    "CHURNML_SERVE_MAX_HISTORY_ROWS": "20",
}
JSON = {"content-type": "application/json"}
HISTORY = {"as_of": "2026-11-16", "tables": {
    "accounts": [{"account_id": "a", "created_at": "2024-01-01"}],
    "mrr_changes": [{"account_id": "a", "effective_date": "2024-01-01", "mrr": 100.0,
                     "reason": "new"}]}}


def _predict(*accounts) -> bytes:
    return json.dumps({"accounts": list(accounts)}).encode()


def _account(**overrides) -> dict:
    from test_serving_fakes import account

    return account(0, **overrides)


def _history(as_of: str = "2026-11-16", **tables) -> bytes:
    body = json.loads(json.dumps(HISTORY))
    body["as_of"] = as_of
    body["tables"].update(tables)
    return json.dumps(body).encode()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("bentoml")
    from starlette.testclient import TestClient

    from churnml.api import predictor as predictor_module
    from test_serving_fakes import asgi_app, fake_model_map

    patch = pytest.MonkeyPatch()
    patch.setenv("BENTOML_DO_NOT_TRACK", "true")
    patch.delenv("CHURNML_API_KEY", raising=False)
    for key, value in LIMITS.items():
        patch.setenv(key, value)
    patch.setattr(predictor_module, "load_predictor",
                  lambda: predictor_module.Predictor(fake_model_map()))
    name = "churnml_service_bad_input_corpus"
    spec = importlib.util.spec_from_file_location(name, SERVICE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    with TestClient(asgi_app(module.ChurnService)) as c:
        yield c
    patch.undo()


#: (path, body, content type, expected status, phrases the answer must contain)
HTTP_CASES = [
    # --- /predict
    pytest.param("/predict", b"{not json", JSON, 400, ["Invalid JSON"],
                 id="predict-not-json"),
    pytest.param("/predict", _predict({"account_id": "a", "as_of": "2026-11-16"}),
                 {"content-type": "text/plain"}, 415, ["text/plain", "application/json"],
                 id="predict-wrong-content-type"),
    pytest.param("/predict", _predict({"account_id": "a", "as_of": "2026-11-16"}), {}, 415,
                 ["application/json"], id="predict-no-content-type"),
    pytest.param("/predict", _predict(), JSON, 400, ["accounts", "empty"],
                 id="predict-empty-list"),
    pytest.param("/predict", _predict(*({"account_id": f"x{i}", "as_of": "2026-11-16"}
                                        for i in range(1001))), JSON, 400,
                 ["accounts", "at most 1000 accounts"], id="predict-1001-accounts"),
    pytest.param("/predict", b"[1, 2]", JSON, 400, ["object"], id="predict-top-level-list"),
    pytest.param("/predict", b'{"accounts": [null]}', JSON, 400, ["accounts"],
                 id="predict-null-account"),
    pytest.param("/predict", "UNKNOWN", JSON, 400, ["favourite_colour", "unknown field"],
                 id="predict-unknown-field"),
    pytest.param("/predict", "STRING_NUMBER", JSON, 400, ["logins_30d", "valid number"],
                 id="predict-string-for-a-number"),
    pytest.param("/predict", "BOOL_NUMBER", JSON, 400, ["logins_30d", "valid number"],
                 id="predict-boolean-for-a-number"),
    pytest.param("/predict", b'{"accounts": [{"account_id": "a", "as_of": "2026-11-16", '
                             b'"nps_latest": NaN}]}', JSON, 400, ["nps_latest", "finite"],
                 id="predict-nan"),
    pytest.param("/predict", b'{"accounts": [{"account_id": "a", "as_of": "2026-11-16", '
                             b'"mrr": Infinity}]}', JSON, 400, ["mrr", "finite"],
                 id="predict-infinity"),
    pytest.param("/predict", b'{"accounts": [{"account_id": "a", "as_of": "2026-11-16", '
                             b'"mrr": 1e999}]}', JSON, 400, ["mrr", "finite"],
                 id="predict-1e999-overflows-to-inf"),
    pytest.param("/predict", "NPS12", JSON, 400, ["nps_latest", "less than or equal to 10"],
                 id="predict-nps-12"),
    pytest.param("/predict", "NEGATIVE_COUNT", JSON, 400,
                 ["logins_30d", "greater than or equal to 0"], id="predict-negative-count"),
    pytest.param("/predict", _predict({"as_of": "2026-11-16"}), JSON, 400,
                 ["accounts[0] (no account_id)", "account_id", "Field required"],
                 id="predict-missing-account_id"),
    pytest.param("/predict", _predict({"account_id": {"a": 1}, "as_of": "2026-11-16"}), JSON,
                 400, ["account_id", "valid string"], id="predict-account_id-is-an-object"),
    pytest.param("/predict", _predict({"account_id": "A" * 5000, "as_of": "2026-11-16"}),
                 JSON, 400, ["account_id"], id="predict-account_id-5000-chars"),
    pytest.param("/predict", _predict({"account_id": "   ", "as_of": "2026-11-16"}), JSON, 400,
                 ["accounts[0]", "account_id"], id="predict-blank-account_id"),
    pytest.param("/predict", _predict({"account_id": "a", "as_of": "[/x]"}), JSON, 400,
                 ["as_of", "[/x]"], id="predict-as-of-rich-markup"),
    pytest.param("/predict", _predict({"account_id": "a", "as_of": "9999-12-31"}), JSON, 400,
                 ["as_of", "2261-12-31"], id="predict-as-of-9999-12-31"),
    pytest.param("/predict", b'{"accounts": [' + _nested(5000) + b"]}", JSON, 400,
                 ["recursion limit"], id="predict-deeply-nested-json"),
    pytest.param("/predict", b'{"accounts": [{"account_id": "a", "as_of": "2026-11-16", '
                             b'"plan": ' + _nested(3000) + b"}]}", JSON, 400,
                 ["recursion limit"], id="predict-deeply-nested-json-in-a-field"),
    pytest.param("/predict", b'{"accounts": [' + b" " * 70_000 + b"]}", JSON, 413,
                 ["request body too large", "CHURNML_SERVE_MAX_BODY_BYTES"],
                 id="predict-body-over-the-limit"),
    # --- /predict_history
    pytest.param("/predict_history", _history(accounts=[
        {"account_id": "a", "created_at": "2024-01-01", "as_of": "x"}]), JSON, 400,
                 ["accounts: column 'as_of' is named like one of churnml's output"],
                 id="history-accounts-column-named-as_of"),
    pytest.param("/predict_history", _history(accounts=[
        {"account_id": "a", "created_at": "2024-01-01", "churn_probability": 0.5}]), JSON, 400,
                 ["accounts: column 'churn_probability'"],
                 id="history-accounts-column-named-churn_probability"),
    pytest.param("/predict_history", _history(mrr_changes=[
        {"account_id": "a", "effective_date": "2024-01-01", "mrr": 100.0, "note": [1, 2]}]),
                 JSON, 400, ["mrr_changes", "note"],
                 id="history-unknown-column-with-a-list-value"),
    pytest.param("/predict_history", _history(gossip=[{"account_id": "a"}]), JSON, 400,
                 ["gossip"], id="history-unknown-table"),
    pytest.param("/predict_history", _history(accounts=[
        {"account_id": "a", "created_at": "2024-01-01", **{f"k{i}": i for i in range(12)}}]),
                 JSON, 400, ["accounts[0]: 14 keys; at most 8 per row",
                             "CHURNML_SERVE_MAX_ROW_KEYS"], id="history-too-many-keys"),
    pytest.param("/predict_history", _history(usage_events=[
        {"account_id": "a", "ts": "2025-01-01", "event": "login"}] * 25), JSON, 400,
                 ["tables.usage_events: 25 rows; at most 20", "CHURNML_SERVE_MAX_HISTORY_ROWS"],
                 id="history-too-many-rows"),
    pytest.param("/predict_history", json.dumps({"as_of": "2026-11-16", "tables": {
        "accounts": [{"account_id": f"a{i}", "created_at": "2024-01-01"} for i in range(1001)],
        "mrr_changes": [{"account_id": "a0", "effective_date": "2024-01-01", "mrr": 1.0}]}}
    ).encode(), JSON, 400, ["accounts", "at most 1000"], id="history-1001-accounts"),
    pytest.param("/predict_history", _history(mrr_changes=[
        {"account_id": "a", "effective_date": "2024-01-01", "mrr": 100.0},
        {"account_id": "a", "effective_date": "2024-06-01", "mrr": 0.0, "reason": "churn"}]),
                 JSON, 400, ["not active at as_of 2026-11-16", "['a']"],
                 id="history-inactive-account"),
    pytest.param("/predict_history", _history(nps_responses=[
        {"account_id": "a", "ts": "2025-01-01", "score": 11}]), JSON, 400,
                 ["nps_responses[0]: column 'score': score outside 0-10"],
                 id="history-nps-11"),
    pytest.param("/predict_history", _history(usage_events=[
        {"account_id": "zz", "ts": "2025-01-01", "event": "login"}]), JSON, 400,
                 ["usage_events[0]: column 'account_id': unknown account"],
                 id="history-unknown-account"),
    pytest.param("/predict_history", _history(usage_events=[
        {"account_id": "=cmd|' /C calc'!A0", "ts": "2025-01-01", "event": "login"}]), JSON,
                 400, ["usage_events[0]: column 'account_id': unknown account", "=cmd|"],
                 id="history-formula-account-id"),
    pytest.param("/predict_history", _history(usage_events=[
        {"account_id": "a", "ts": "yesterday", "event": "login"}]), JSON, 400,
                 ["usage_events[0]: column 'ts': unparseable timestamp"],
                 id="history-unparseable-timestamp"),
    pytest.param("/predict_history", _history(mrr_changes=[
        {"account_id": "a", "effective_date": "2024-01-01", "mrr": -5}]), JSON, 400,
                 ["mrr_changes", "negative value", "mrr=-5"], id="history-negative-mrr"),
    pytest.param("/predict_history", _history(mrr_changes=[
        {"account_id": "a", "effective_date": "2024-01-01", "mrr": "lots"}]), JSON, 400,
                 ["mrr_changes: column 'mrr' must be numeric"], id="history-string-mrr"),
    pytest.param("/predict_history", b'{"as_of": "2026-11-16", "tables": {"accounts": '
                                     b'[{"account_id": "a", "created_at": "2024-01-01"}], '
                                     b'"mrr_changes": [{"account_id": "a", "effective_date": '
                                     b'"2024-01-01", "mrr": NaN}]}}', JSON, 400,
                 ["mrr_changes", "missing required value"], id="history-nan-mrr"),
    pytest.param("/predict_history", _history(mrr_changes=[{"account_id": "a", "mrr": 100.0}]),
                 JSON, 400, ["mrr_changes: missing required column 'effective_date'"],
                 id="history-missing-required-column"),
    pytest.param("/predict_history", _history(accounts=[
        {"account_id": "a", "created_at": "2024-01-01"},
        {"account_id": "a", "created_at": "2024-02-01"}]), JSON, 400,
                 ["accounts[1]: column 'account_id': duplicate account_id"],
                 id="history-duplicate-account"),
    pytest.param("/predict_history", _history(accounts=[
        {"account_id": "a", "created_at": "9999-12-31"}]), JSON, 400,
                 ["accounts", "created_at=9999-12-31"], id="history-created_at-9999-12-31"),
    pytest.param("/predict_history", _history(as_of="[/x]"), JSON, 400, ["as_of"],
                 id="history-as-of-rich-markup"),
    pytest.param("/predict_history", b'{"as_of": "2026-11-16", "tables": []}', JSON, 400,
                 ["tables", "object"], id="history-tables-is-a-list"),
    pytest.param("/predict_history", b"[]", JSON, 400, ["object"],
                 id="history-top-level-list"),
    pytest.param("/predict_history", b"x", {"content-type": "application/xml"}, 415,
                 ["application/json"], id="history-wrong-content-type"),
]

_NAMED_BODIES = {
    "UNKNOWN": lambda: _predict(_account(favourite_colour="blue")),
    "STRING_NUMBER": lambda: _predict(_account(logins_30d="12")),
    "BOOL_NUMBER": lambda: _predict(_account(logins_30d=True)),
    "NPS12": lambda: _predict(_account(nps_latest=12)),
    "NEGATIVE_COUNT": lambda: _predict(_account(logins_30d=-3)),
}


@pytest.mark.parametrize(("path", "body", "headers", "status", "phrases"), HTTP_CASES)
def test_http_corpus(client, path, body, headers, status, phrases):
    if isinstance(body, str):
        body = _NAMED_BODIES[body]()
    response = client.post(path, content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert response.status_code == status, response.text[:500]
    text = response.text
    assert "Traceback" not in text and "An unexpected error" not in text
    assert len(text) < 10_000  # the answer quotes the caller's input cut, never whole
    parsed = response.json()
    assert isinstance(parsed, dict) and parsed.get("error"), text[:500]
    for phrase in phrases:
        assert phrase in text, (phrase, text[:800])


@pytest.mark.parametrize(("body", "ids"), [
    pytest.param(b'{"accounts": [{"account_id": 17.0, "as_of": "2026-11-16"}, '
                 b'{"account_id": " 17 ", "as_of": "2026-11-16"}, '
                 b'{"account_id": 10000000000000000000, "as_of": "2026-11-16"}]}',
                 ["17", "17", "10000000000000000000"], id="predict-ids-17.0-space-17-int-1e19"),
    pytest.param(b'{"accounts": [{"account_id": 1e19, "as_of": "2026-11-16"}]}',
                 ["10000000000000000000"], id="predict-id-1e19-json-float"),
])
def test_http_ids_follow_the_one_id_rule(client, body, ids):
    response = client.post("/predict", content=body, headers=JSON)
    assert response.status_code == 200, response.text[:500]
    assert [row["account_id"] for row in response.json()] == ids


def test_http_history_ids_and_open_ended_dates_follow_the_contract(client):
    """The same normalisation on /predict_history: a float 1e19 id matches the text id, a
    '9999-12-31' term_end means no end, and an extra scalar column is kept (data contract,
    "Extra columns are kept"): answered, not refused."""
    body = (b'{"as_of": "2026-11-16", "tables": {"accounts": [{"account_id": 1e19, '
            b'"created_at": "2024-01-01"}], "mrr_changes": [{"account_id": " 10000000000000000000 ",'
            b' "effective_date": "2024-01-01", "mrr": 100, "term_end": "9999-12-31", '
            b'"note": "hello"}]}}')
    response = client.post("/predict_history", content=body, headers=JSON)
    assert response.status_code == 200, response.text[:500]
    assert [row["account_id"] for row in response.json()] == ["10000000000000000000"]


def test_corpus_size():
    """The issue's "Done means": at least 30 hostile inputs across the three doors."""
    sizes = {"tables": len(TABLE_CASES), "cli": len(CLI_CASES) + len(SUBPROCESS_CASES),
             "http": len(HTTP_CASES) + 2}
    assert sum(sizes.values()) >= 30 and min(sizes.values()) >= 8, sizes
