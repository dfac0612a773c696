"""The weekly job's engine: partitions, atomic write, identical reruns, lock, chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.errors import LockedError, UsageError
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
from churnml.scoring.schema import SCHEMA_VERSION
from jobs_fakes import (
    FEATURE_DIMENSIONS,
    health_arrays,
    health_config,
    models,
    simple_features,
    tiny_book,
)

AS_OF = "2026-03-02"


def run(out, as_of=AS_OF, chunk_size=8, book=None, build_features=simple_features):
    return score_book(book or tiny_book(), as_of, out, models(), HealthScore(),
                      chunk_size=chunk_size, build_features=build_features,
                      feature_dimensions=FEATURE_DIMENSIONS)


def test_partition_layout_and_rows(tmp_path):
    result = run(tmp_path)
    assert result.scores_path == tmp_path / "as_of=2026-03-02" / "scores.parquet"
    scores = pd.read_parquet(result.scores_path)
    book = tiny_book()
    expected = simple_features(book, [pd.Timestamp(AS_OF)])
    assert scores["account_id"].tolist() == sorted(expected["account_id"])
    assert result.rows == len(scores) == len(expected)
    assert scores["schema_version"].eq(SCHEMA_VERSION).all() and SCHEMA_VERSION == 5
    # no contraction model: its columns are there, null
    assert scores["contraction_probability"].isna().all()
    assert scores["contraction_model_version"].isna().all()
    assert (scores["contraction_reasons"].map(len) == 0).all()
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
    assert list(previous.columns) == ["account_id", "as_of", "health_score", "health_tier"]
    assert sorted(history["as_of"].unique()) == [pd.Timestamp("2026-02-16"),
                                                 pd.Timestamp("2026-02-23")]
    assert [d.strftime("%Y-%m-%d") for d, _ in list_partitions(tmp_path)] == [
        "2026-02-16", "2026-02-23", "2026-03-09"]


def test_alerts_need_history(tmp_path):
    first = pd.read_parquet(run(tmp_path, as_of="2026-02-23").scores_path)
    # first week: only alerts that need no history
    allowed = {"no_recent_contact", "nps_detractor_received", "champion_left"}
    assert all(set(a) <= allowed for a in first["alerts"])


def test_a_chunk_of_only_inactive_accounts_is_scored(tmp_path):
    """chunk_size=1 on the tiny book: account C0003 churned in January, so its chunk has no
    active account and no features row; the job writes the other accounts."""
    book = tiny_book(n=8)
    result = run(tmp_path, book=book, chunk_size=1)
    assert result.rows == len(simple_features(book, [pd.Timestamp(AS_OF)])) == 7


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
    score_book(tiny_book(), {as_of!r}, {out!r}, models(), HealthScore(), chunk_size=8,
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


_IDS = st.text(alphabet="abAB09-_éß", min_size=0, max_size=4)


@settings(max_examples=150, deadline=None)
@given(ids=st.lists(_IDS, min_size=0, max_size=40), cuts=st.lists(_IDS, max_size=6),
       dtype=st.sampled_from(["str_pyarrow", "object", "str_python"]), shuffle=st.booleans())
def test_sorted_bounds_against_a_plain_reference(ids, cuts, dtype, shuffle):
    """The chunk cuts of a table: None when its ids are not sorted, else for each first id the
    first row at or after it, whatever the string storage (Arrow bisection or numpy)."""
    from churnml.jobs.weekly import sorted_bounds

    values = list(ids) if shuffle else sorted(ids)
    column = pd.Series(values, dtype={"str_pyarrow": pd.StringDtype("pyarrow"), "object": object,
                                      "str_python": pd.StringDtype("python")}[dtype])
    first_ids = np.array(sorted(cuts), dtype=object)
    bounds = sorted_bounds(column, first_ids)
    if any(a > b for a, b in zip(values, values[1:])):
        assert bounds is None
        return
    expected = [0] + [next((i for i, v in enumerate(values) if v >= f), len(values))
                      for f in first_ids] + [len(values)]
    assert bounds is not None and bounds.tolist() == expected


def test_account_chunks_of_an_arrow_table_equal_the_plain_split():
    """A book loaded with Arrow strings is cut where a row-by-row grouping puts each account."""
    from churnml.jobs.weekly import account_chunks

    book = tiny_book(n=23)
    for name, table in book.tables.items():
        if "account_id" in table.columns:
            table["account_id"] = table["account_id"].astype(pd.StringDtype("pyarrow"))
    ids = sorted(book.accounts["account_id"].astype(str))
    chunk_of = {a: i // 5 for i, a in enumerate(ids)}
    for k, part in enumerate(account_chunks(book, 5)):
        for name in ("mrr_changes", "touchpoints"):
            table = book[name]
            expected = table[table["account_id"].map(chunk_of) == k].reset_index(drop=True)
            pd.testing.assert_frame_equal(part[name], expected)


class TableHealth:
    """A ``HealthScorer`` read from a table (account -> score): crafted histories."""

    def __init__(self, scores):
        self.scores = scores
        self.config = health_config({"usage": "usage_drop_50pct"}, "crafted")

    @property
    def dimension_names(self):
        return list(self.config.dimension_names)

    def score_arrays(self, features, columns=None):
        s = features["account_id"].map(self.scores).astype(float).to_numpy()
        return health_arrays(self.config, s, s)

    def tiers(self, scores):
        return self.score_arrays(pd.DataFrame({"account_id": list(scores)})).tier_names()


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
                                          ).tiers(rows["account_id"])
        rows.to_parquet(part / "scores.parquet")
        mark_complete(part, week, len(rows), ["scores.parquet"])  # a finished week
    current = {a: 75.0 for a in ids}
    current.update({stable: 72.0, noisy: 72.0, sliding: 65.0, steady: 75.0})
    result = score_book(book, AS_OF, tmp_path, models(), TableHealth(current),
                        build_features=simple_features, feature_dimensions=FEATURE_DIMENSIONS)
    assert result.previous_as_of == weeks[-1]
    alerts = pd.read_parquet(result.scores_path).set_index("account_id")["alerts"].map(list)
    assert "unusual_drop" in alerts[stable]
    assert "unusual_drop" not in alerts[noisy]
    assert "monthly_drop" in alerts[sliding]
    assert "monthly_drop" not in alerts[stable]
    assert not {"unusual_drop", "weekly_drop", "monthly_drop"} & set(alerts[steady])


def _inquiry_book():
    """The tiny book plus cancellation inquiries: recent ones (in the week before 2026-03-02)
    for some accounts, old ones (January) for others."""
    book = tiny_book()
    ids = sorted(simple_features(book, [pd.Timestamp(AS_OF)])["account_id"])
    recent, old = ids[:3], ids[3:6]
    extra = pd.DataFrame({
        "account_id": recent + old,
        "ts": [pd.Timestamp("2026-02-26")] * 3 + [pd.Timestamp("2026-01-10")] * 3,
        "kind": "cancellation_inquiry", "value": float("nan")})
    book.tables["touchpoints"] = pd.concat([book["touchpoints"], extra]).sort_values(
        ["account_id", "ts"], ignore_index=True)
    return book, recent, old


def features_with_inquiries(book, as_of_dates, catalog=None):
    """simple_features plus ``cancellation_inquiries_90d`` (point in time: rows before as_of)."""
    frame = simple_features(book, as_of_dates)
    tp = book["touchpoints"]
    tp = tp[tp["kind"] == "cancellation_inquiry"]
    counts = []
    for acc, as_of in zip(frame["account_id"], frame["as_of"]):
        mine = tp[(tp["account_id"] == acc) & (tp["ts"] < as_of)
                  & (tp["ts"] >= as_of - pd.Timedelta(days=90))]
        counts.append(float(len(mine)))
    return frame.assign(cancellation_inquiries_90d=counts)


def test_first_run_and_weekly_run_give_the_same_actions(tmp_path):
    """Whether a signal is new reads the book a week before as_of, not whether an earlier
    partition exists: a first run and the run after last week's give the same actions."""
    book, recent, old = _inquiry_book()
    first = run(tmp_path / "first", book=book, build_features=features_with_inquiries)
    run(tmp_path / "weekly", as_of="2026-02-23", book=book,
        build_features=features_with_inquiries)
    weekly = run(tmp_path / "weekly", book=book, build_features=features_with_inquiries)
    assert first.previous_as_of is None and weekly.previous_as_of == pd.Timestamp("2026-02-23")
    a = pd.read_parquet(first.scores_path).set_index("account_id")["next_best_action"]
    b = pd.read_parquet(weekly.scores_path).set_index("account_id")["next_best_action"]
    assert a.index.tolist() == b.index.tolist()
    for acc in a.index:
        assert dict(a[acc], expansion_blocked_by=list(a[acc]["expansion_blocked_by"])) == \
            dict(b[acc], expansion_blocked_by=list(b[acc]["expansion_blocked_by"])), acc
    critical = {acc for acc in a.index if a[acc]["severity"] == "critical"}
    # the inquiry of the last week is critical news; January's is not (it was there a week ago)
    assert set(recent) <= critical and not set(old) & critical
    for acc in recent:
        assert a[acc]["playbook"] == "save_call"
        assert a[acc]["reason_feature"] == "cancellation_inquiries_90d" and a[acc]["reason"]
