"""The weekly job's engine: partitions, atomic write, identical reruns, lock, chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from churnml.errors import LockedError
from churnml.health.score import HealthScore
from churnml.jobs.weekly import (
    LOCK_NAME,
    OutputLock,
    list_partitions,
    load_earlier_weeks,
    mark_complete,
    partition_dir,
    score_book,
)
from jobs_fakes import FEATURE_DIMENSIONS, models, simple_features, tiny_book

AS_OF = "2026-03-02"


def run(out, as_of=AS_OF, chunk_size=8, book=None):
    churn, expansion = models()
    return score_book(book or tiny_book(), as_of, out, churn, expansion, HealthScore(),
                      chunk_size=chunk_size, build_features=simple_features,
                      feature_dimensions=FEATURE_DIMENSIONS)


def test_partition_layout_and_rows(tmp_path):
    result = run(tmp_path)
    assert result.scores_path == tmp_path / "as_of=2026-03-02" / "scores.parquet"
    scores = pd.read_parquet(result.scores_path)
    book = tiny_book()
    expected = simple_features(book, [pd.Timestamp(AS_OF)])
    assert scores["account_id"].tolist() == sorted(expected["account_id"])
    assert result.rows == len(scores) == len(expected)
    assert scores["schema_version"].eq(1).all()
    assert [p.name for p in tmp_path.joinpath("as_of=2026-03-02").iterdir()
            if ".tmp-" in p.name] == []


def test_chunking_does_not_change_results(tmp_path):
    a = run(tmp_path / "a", chunk_size=5)
    b = run(tmp_path / "b", chunk_size=1000)
    pd.testing.assert_frame_equal(pd.read_parquet(a.scores_path), pd.read_parquet(b.scores_path))


def test_rerun_is_byte_identical_and_earlier_weeks_untouched(tmp_path):
    first = run(tmp_path, as_of="2026-02-23")
    before = first.scores_path.read_bytes()
    mtime = first.scores_path.stat().st_mtime_ns
    second = run(tmp_path)
    again = run(tmp_path)
    assert second.scores_path.read_bytes() == again.scores_path.read_bytes()
    assert first.scores_path.read_bytes() == before
    assert first.scores_path.stat().st_mtime_ns == mtime
    assert second.previous_as_of == pd.Timestamp("2026-02-23")


def test_previous_week_is_the_latest_earlier_partition(tmp_path):
    run(tmp_path, as_of="2026-02-16")
    run(tmp_path, as_of="2026-02-23")
    run(tmp_path, as_of="2026-03-09")  # a later week exists: never "previous" for 03-02
    previous, history = load_earlier_weeks(tmp_path, AS_OF)
    assert previous["as_of"].unique().tolist() == [pd.Timestamp("2026-02-23")]
    assert "days_since_last_contact" in previous.columns  # alert inputs joined
    assert sorted(history["as_of"].unique()) == [pd.Timestamp("2026-02-16"),
                                                 pd.Timestamp("2026-02-23")]
    assert [d.strftime("%Y-%m-%d") for d, _ in list_partitions(tmp_path)] == [
        "2026-02-16", "2026-02-23", "2026-03-09"]


def test_alerts_need_history(tmp_path):
    first = pd.read_parquet(run(tmp_path, as_of="2026-02-23").scores_path)
    # first week: only alerts that need no history
    allowed = {"no_contact_21_days", "nps_detractor_received"}
    assert all(set(a) <= allowed for a in first["alerts"])


def test_lock_refuses_a_second_run(tmp_path):
    with OutputLock(tmp_path):
        with pytest.raises(LockedError, match="another churnml score run"):
            run(tmp_path)
    assert (tmp_path / LOCK_NAME).exists()
    run(tmp_path)  # released: a later run proceeds


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import pyarrow.parquet as pq
    from churnml.health.score import HealthScore
    from churnml.jobs.weekly import score_book
    from jobs_fakes import FEATURE_DIMENSIONS, models, simple_features, tiny_book

    original = pq.ParquetWriter.write_table
    calls = []
    def write_then_die(self, table, *args, **kwargs):
        original(self, table, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # two row groups on disk, more to come: killed midway
            os.kill(os.getpid(), signal.SIGKILL)
    pq.ParquetWriter.write_table = write_then_die
    churn, expansion = models()
    score_book(tiny_book(), {as_of!r}, {out!r}, churn, expansion, HealthScore(), chunk_size=8,
               build_features=simple_features, feature_dimensions=FEATURE_DIMENSIONS)
""")


def test_run_killed_midway_leaves_no_partial_file(tmp_path):
    out = tmp_path / "killed"
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), as_of=AS_OF, out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    part = partition_dir(out, AS_OF)
    names = sorted(p.name for p in part.iterdir())
    assert "scores.parquet" not in names
    assert any(n.startswith("scores.parquet.tmp-") for n in names)  # the half-written file
    assert list_partitions(out) == []  # not taken as a finished week
    rerun = run(out)
    clean = run(tmp_path / "clean")
    assert rerun.scores_path.read_bytes() == clean.scores_path.read_bytes()
    assert not any(".tmp-" in p.name for p in part.iterdir())


def test_account_chunks_sorted_and_unsorted_tables_agree():
    from churnml.jobs.weekly import account_chunks

    book = tiny_book(n=23)
    shuffled = tiny_book(n=23)
    shuffled.tables["touchpoints"] = shuffled["touchpoints"].sample(frac=1, random_state=0)
    for a, b in zip(account_chunks(book, 5), account_chunks(shuffled, 5), strict=True):
        assert a.accounts["account_id"].tolist() == b.accounts["account_id"].tolist()
        ids = set(a.accounts["account_id"])
        for name in ("mrr_changes", "touchpoints"):
            assert set(a[name]["account_id"]) <= ids
            pd.testing.assert_frame_equal(
                a[name].sort_values(["account_id", "ts" if name == "touchpoints"
                                     else "effective_date"]).reset_index(drop=True),
                b[name].sort_values(["account_id", "ts" if name == "touchpoints"
                                     else "effective_date"]).reset_index(drop=True))
    total = sum(len(c["touchpoints"]) for c in account_chunks(book, 5))
    assert total == len(book["touchpoints"])


class TableHealth:
    """A health score read from a table (account -> score): crafted histories."""

    dimension_names = ["usage"]
    version = "crafted"

    def __init__(self, scores):
        self.scores = scores

    def score(self, features):
        s = features["account_id"].map(self.scores).astype(float).to_numpy()
        tier = pd.cut(s, [-1, 30, 50, 70, 90, 101], right=False,
                      labels=["critical", "at_risk", "needs_attention", "healthy", "thriving"])
        return pd.DataFrame({"account_id": features["account_id"].to_numpy(),
                             "as_of": features["as_of"].to_numpy(), "health_score": s,
                             "health_tier": tier.astype(str), "health_usage": s,
                             "health_dimensions_used": "usage", "health_weights_version": "crafted"})


def test_alerts_from_crafted_partition_history(tmp_path):
    """Earlier partitions as the job left them drive the week-over-week, 30-day and noise-aware
    alerts (compute_alerts is the health module's; this checks the job feeds it right)."""
    weeks = pd.date_range("2026-01-26", periods=5, freq="7D")  # the 5 weeks before 03-02
    book = tiny_book()
    ids = sorted(simple_features(book, [pd.Timestamp(AS_OF)])["account_id"])
    stable, noisy, sliding, steady = ids[:4]
    history = {
        stable: [80, 81, 80, 81, 80],    # barely moves: an 8-point drop is unusual
        noisy: [80, 68, 84, 70, 80],     # swings 12+ points a week: an 8-point drop is not
        sliding: [90, 86, 82, 78, 74],   # 4 a week: 86 -> 65 is 21 in the 30 days to 03-02
        steady: [75, 75, 75, 75, 75],
    }
    for k, week in enumerate(weeks):
        part = tmp_path / f"as_of={week:%Y-%m-%d}"
        part.mkdir()
        rows = pd.DataFrame({"account_id": list(history), "as_of": week,
                             "health_score": [float(v[k]) for v in history.values()]})
        rows["health_tier"] = TableHealth(dict(zip(rows["account_id"], rows["health_score"]))
                                          ).score(rows)["health_tier"]
        rows.to_parquet(part / "scores.parquet")
        mark_complete(part, week, len(rows), ["scores.parquet"])  # a finished week
    current = {a: 75.0 for a in ids}
    current.update({stable: 72.0, noisy: 72.0, sliding: 65.0, steady: 75.0})
    churn, expansion = models()
    result = score_book(book, AS_OF, tmp_path, churn, expansion, TableHealth(current),
                        build_features=simple_features, feature_dimensions=FEATURE_DIMENSIONS)
    assert result.previous_as_of == weeks[-1]
    alerts = pd.read_parquet(result.scores_path).set_index("account_id")["alerts"].map(list)
    assert "unusual_drop" in alerts[stable]
    assert "unusual_drop" not in alerts[noisy]
    assert "dropped_20_in_30_days" in alerts[sliding]
    assert "dropped_20_in_30_days" not in alerts[stable]
    assert not {"unusual_drop", "dropped_15_in_week", "dropped_20_in_30_days"} & set(alerts[steady])
