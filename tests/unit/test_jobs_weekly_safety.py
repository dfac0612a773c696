"""The weekly job's crash safety and privacy: completion markers, fsync-ed atomic writes, a
full disk, unique temporary files, what is logged to MLflow (docs/operations.md)."""

from __future__ import annotations

import errno
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from churnml.cli import main
from churnml.health.score import HealthScore
from churnml.jobs import weekly
from churnml.jobs.weekly import list_partitions, load_earlier_weeks, partition_dir, score_book
from jobs_fakes import FEATURE_DIMENSIONS, models, simple_features, tiny_book

TESTS = str(Path(__file__).parent)
WEEK1, WEEK2 = "2026-02-23", "2026-03-02"


def features(book, dates, catalog=None):
    """The fakes' features (the job also asks for a catalog subset a week before)."""
    return simple_features(book, dates)


def run(out, as_of=WEEK2, **kwargs):
    return score_book(tiny_book(), as_of, out, models(), HealthScore(), chunk_size=8,
                      build_features=features, feature_dimensions=FEATURE_DIMENSIONS, **kwargs)


class _Report:
    total_rejected = 0


def patch_job(monkeypatch, logged: list):
    """run_job on the fakes: tiny book, linear models, no MLflow (log_job_run captured)."""
    from churnml.models import registry

    monkeypatch.setattr("churnml.data.io.load_book", lambda data: (tiny_book(), _Report()))
    monkeypatch.setattr(weekly, "champion_models", lambda versions_only=False: (models(), []))
    monkeypatch.setattr(weekly, "champion_time_to_event", lambda version_only=False: None)
    monkeypatch.setattr(weekly, "load_adopted_health", HealthScore)
    monkeypatch.setattr(weekly, "score_book", functools.partial(
        weekly.score_book, build_features=features, feature_dimensions=FEATURE_DIMENSIONS))

    def log_job_run(experiment, **kwargs):
        logged.append(kwargs)
        return "run-1"

    monkeypatch.setattr(registry, "log_job_run", log_job_run)


# -- finding 11: a week is complete only with its marker, written last -------------------------

_KILLED_BEFORE_REPORT = textwrap.dedent("""
    import functools, os, signal, sys
    sys.path.insert(0, {tests!r})
    from churnml.health.score import HealthScore
    from churnml.jobs import weekly
    from jobs_fakes import FEATURE_DIMENSIONS, models, simple_features, tiny_book

    class Report:
        total_rejected = 0

    import churnml.data.io
    churnml.data.io.load_book = lambda data: (tiny_book(), Report())
    weekly.champion_models = lambda versions_only=False: (models(), [])
    weekly.champion_time_to_event = lambda version_only=False: None
    weekly.load_adopted_health = HealthScore
    def features(book, dates, catalog=None):
        return simple_features(book, dates)
    weekly.score_book = functools.partial(weekly.score_book, build_features=features,
                                          feature_dimensions=FEATURE_DIMENSIONS)
    def killed(*args, **kwargs):  # scores.parquet is on disk
        os.kill(os.getpid(), signal.SIGKILL)
    weekly.write_report = killed
    weekly.run_job("unused", {as_of!r}, {out!r}, log_to_mlflow=False)
""")


def kill_before_report(out, as_of):
    script = _KILLED_BEFORE_REPORT.format(tests=TESTS, as_of=as_of, out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_run_killed_before_the_report_is_not_a_complete_week(tmp_path):
    kill_before_report(tmp_path, WEEK1)
    part = partition_dir(tmp_path, WEEK1)
    assert (part / "scores.parquet").is_file() and not (part / "report.html").exists()
    assert list_partitions(tmp_path) == []  # before markers: taken as last week
    assert load_earlier_weeks(tmp_path, WEEK2) == (None, None)
    later = run(tmp_path, WEEK2)
    assert later.previous_as_of is None
    assert later.skipped_partitions == [f"as_of={WEEK1} (no _SUCCESS marker (the run that "
                                        "wrote it did not finish))"]


def test_rerun_replaces_an_incomplete_partition(tmp_path):
    kill_before_report(tmp_path, WEEK1)
    rerun = run(tmp_path, WEEK1)
    assert rerun.replaced_incomplete and "no _SUCCESS marker" in rerun.replaced_incomplete
    assert [d for d, _ in list_partitions(tmp_path)] == [pd.Timestamp(WEEK1)]
    assert run(tmp_path, WEEK2).previous_as_of == pd.Timestamp(WEEK1)
    clean = run(tmp_path / "clean", WEEK1)
    assert rerun.scores_path.read_bytes() == clean.scores_path.read_bytes()


def test_marker_lists_files_sizes_and_checksums_and_is_written_last(tmp_path, monkeypatch):
    logged: list = []
    patch_job(monkeypatch, logged)
    result = weekly.run_job("unused", WEEK2, tmp_path, log_to_mlflow=False)
    part = result.weekly.partition
    marker = json.loads((part / "_SUCCESS").read_text())
    from churnml.scoring.schema import SCHEMA_VERSION

    assert marker["rows"] == result.weekly.rows and marker["schema_version"] == SCHEMA_VERSION
    assert marker["as_of"] == WEEK2 and marker["marker_version"] == 1
    assert sorted(marker["files"]) == ["report.html", "scores.parquet"]
    import hashlib

    for name, meta in marker["files"].items():
        data = (part / name).read_bytes()
        assert meta == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    mtimes = {p.name: p.stat().st_mtime_ns for p in part.iterdir()}
    assert mtimes["_SUCCESS"] >= max(mtimes.values())


def test_partition_with_a_damaged_file_is_skipped(tmp_path):
    from churnml.jobs.completion import partition_problem

    first = run(tmp_path, WEEK1)
    with open(first.scores_path, "ab") as handle:  # a file changed after the run
        handle.write(b"x")
    assert "size" in partition_problem(first.partition)
    assert list_partitions(tmp_path) == []
    (first.partition / "_SUCCESS").write_text("{not json")
    assert "unreadable" in partition_problem(first.partition)
    assert run(tmp_path, WEEK2).previous_as_of is None


def test_legacy_partitions_are_adopted_once(tmp_path, monkeypatch):
    """Partitions written before markers: `python -m churnml.jobs.completion OUT` marks those
    the old write order shows complete (report newest) and leaves the others alone."""
    from churnml.jobs.completion import main as completion_main

    logged: list = []
    patch_job(monkeypatch, logged)
    done = weekly.run_job("unused", WEEK1, tmp_path, log_to_mlflow=False).weekly.partition
    (done / "_SUCCESS").unlink()
    half = run(tmp_path, WEEK2).partition
    (half / "_SUCCESS").unlink()
    assert completion_main([str(tmp_path)]) == 0
    assert [p for _, p in list_partitions(tmp_path)] == [done]


# -- crash safety: fsync, unique temporary files, a full disk -------------------------------

def test_files_and_folder_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    import churnml.fsutil as fsutil

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(fsutil.os, "fsync", lambda fd: (events.append(
        "fsync-dir" if Path(f"/proc/self/fd/{fd}").resolve().is_dir() else "fsync-file"),
        real_fsync(fd))[1])
    monkeypatch.setattr(fsutil.os, "replace", lambda a, b: (events.append("rename"),
                                                            real_replace(a, b))[1])
    run(tmp_path)
    # scores.parquet, _SUCCESS: each fsync'd, renamed, folder fsync'd
    assert events == ["fsync-file", "rename", "fsync-dir"] * 2


def test_temporary_files_are_unique_and_never_followed_through_a_symlink(tmp_path):
    from churnml.fsutil import atomic_write

    victim = tmp_path / "victim"
    victim.write_text("keep")
    target = tmp_path / "out.bin"
    names = []
    for _ in range(2):
        with atomic_write(target) as handle:
            names += [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
            handle.write(b"data")
    assert names[0] != names[1] and all(".tmp-" in n for n in names)
    # a symlink planted at a temporary name is refused (O_EXCL), never written through
    os.symlink(victim, tmp_path / names[0])
    import tempfile

    real = tempfile._RandomNameSequence.__next__
    seq = iter([names[0][len("out.bin.tmp-"):], "fresh123"])
    tempfile._RandomNameSequence.__next__ = lambda self: next(seq)
    try:
        with atomic_write(target) as handle:
            handle.write(b"new")
    finally:
        tempfile._RandomNameSequence.__next__ = real
    assert victim.read_text() == "keep" and target.read_bytes() == b"new"


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_is_a_clear_error_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    from churnml.errors import DiskFullError

    monkeypatch.setattr(pq.ParquetWriter, "write_table", _disk_full)
    with pytest.raises(DiskFullError, match="disk full writing .*scores.parquet"):
        run(tmp_path)
    part = partition_dir(tmp_path, WEEK2)
    assert [p.name for p in part.iterdir()] == []


def test_score_command_on_a_full_disk_exits_1_with_the_path(tmp_path, monkeypatch, capsys):
    logged: list = []
    patch_job(monkeypatch, logged)
    monkeypatch.setattr(pq.ParquetWriter, "write_table", _disk_full)
    (tmp_path / "book").mkdir()
    out = tmp_path / "scores"
    code = main(["score", "--data", str(tmp_path / "book"), "--as-of", WEEK2, "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert f"error: disk full writing {partition_dir(out, WEEK2) / 'scores.parquet'}" in err
    assert "Traceback" not in err
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


# -- finding 12: the report goes to a remote MLflow server only when asked --------------------

@pytest.mark.parametrize("uri,setting,sent", [
    (None, None, True),                               # embedded store
    ("sqlite:////srv/mlflow.db", None, True),
    ("file:///srv/mlruns", None, True),
    ("/srv/mlruns", None, True),
    ("http://mlflow:5000", None, False),              # a team server: off by default
    ("https://mlflow.example.com", None, False),
    ("databricks", None, False),
    ("http://mlflow:5000", "1", True),
    (None, "0", False),
])
def test_report_goes_to_mlflow_only_when_allowed(tmp_path, monkeypatch, uri, setting, sent):
    logged: list = []
    patch_job(monkeypatch, logged)
    for name, value in (("MLFLOW_TRACKING_URI", uri), ("CHURNML_LOG_REPORT_TO_MLFLOW", setting)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    result = weekly.run_job("unused", WEEK2, tmp_path)
    assert bool(logged[0]["artifacts"]) is sent
    assert logged[0]["tags"]["churnml.report_logged"] == str(sent).lower()
    assert result.report_logged is sent
    assert result.report_path.is_file()  # the report is written locally either way


def test_bad_report_setting_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHURNML_LOG_REPORT_TO_MLFLOW", "maybe")
    logged: list = []
    patch_job(monkeypatch, logged)
    (tmp_path / "book").mkdir()
    code = main(["score", "--data", str(tmp_path / "book"), "--as-of", WEEK2, "--out",
                 str(tmp_path / "o")])
    assert code == 2
    assert "CHURNML_LOG_REPORT_TO_MLFLOW must be 1 or 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
