"""``churnml score --data postgresql://... --out postgresql://...`` end to end: real champions
(trained quickly into a temporary CHURNML_HOME), the command line in a subprocess, a real
PostgreSQL cluster.

- the week's rows land in ``churnml_scores`` equal to the week's ``scores.parquet`` (nested
  columns as jsonb), ``churnml_queue`` lists the queued actions per owner;
- a run killed mid-transaction (held at the view refresh, after its DELETE and INSERT, by a lock
  this test holds on the view; then SIGKILL) leaves the previous state: the earlier week intact
  and nothing of the killed week; the rerun equals an uninterrupted run into another database;
- the password of the URL is in no output line and no MLflow parameter or tag;
- the same week written to a DuckDB file keeps the nested types.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from support.champions import quick_champions_home  # tests/ is on sys.path

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def home(sim_tables, tmp_path_factory):
    with quick_champions_home(tmp_path_factory.mktemp("sql_home"), sim_tables.tables) as home:
        yield home


@pytest.fixture(scope="module")
def book_url(sim_dir, postgres):
    from churnml.data.sql import parse_source
    from churnml.data.sql_write import write_book_folder

    url = postgres.create_database("scores_book")
    write_book_folder(sim_dir, parse_source(url))
    return url


@pytest.fixture(scope="module")
def weeks(sim_dir):
    from churnml.data.io import load_book
    from churnml.features.labels import latest_scoring_date

    as_of = latest_scoring_date(load_book(sim_dir)[0])
    return [f"{as_of - pd.Timedelta(days=7):%Y-%m-%d}", f"{as_of:%Y-%m-%d}"]


def _score(home: Path, cwd: Path, data: str, out: str, as_of: str, popen: bool = False):
    env = {**os.environ, "CHURNML_HOME": str(home), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "churnml.cli", "score", "--data", data, "--as-of", as_of,
           "--out", out]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=cwd)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def _table(url: str) -> pd.DataFrame:
    from churnml.data.sql import parse_source
    from churnml.jobs.sql_scores import read_scores

    return read_scores(parse_source(url)).to_pandas()


def test_score_into_postgres_killed_midway_then_rerun(home, book_url, weeks, postgres, tmp_path):
    import adbc_driver_postgresql.dbapi as pg

    from churnml.data.sql import parse_source
    from churnml.jobs.sql_scores import work_dir

    whole = postgres.create_database("scores_whole")
    killed = postgres.create_database("scores_killed")
    outputs = []
    for week in weeks:  # the uninterrupted run
        proc = _score(home, tmp_path, book_url, whole, week)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    assert "rows of" in outputs[-1] and "churnml_scores" in outputs[-1]
    proc = _score(home, tmp_path, book_url, killed, weeks[0])
    assert proc.returncode == 0, proc.stderr
    outputs.append(proc.stdout + proc.stderr)
    before = _table(killed)
    assert set(before["as_of"].dt.strftime("%Y-%m-%d")) == {weeks[0]}

    # hold the view: the second week's run blocks at its view refresh, inside its transaction
    # (after DELETE and INSERT), and is killed there
    holder = pg.connect(killed)
    cur = holder.cursor()
    cur.execute("SELECT count(*) FROM churnml_queue")
    cur.fetchall()
    run = _score(home, tmp_path, book_url, killed, weeks[1], popen=True)
    try:
        deadline = time.monotonic() + 300
        waiting = 0
        while time.monotonic() < deadline and run.poll() is None:
            waiting = int(postgres.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'scores_killed' "
                "AND wait_event_type = 'Lock'").strip())
            if waiting:
                break
            time.sleep(0.5)
        assert waiting == 1, f"the run never reached its transaction: {run.poll()}"
        inside = _count_rows_in_flight(postgres)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
        holder.rollback()
        cur.close()
        holder.close()
    assert inside > 0  # the killed transaction had deleted and inserted rows
    stdout, stderr = run.communicate()
    outputs.append(stdout + stderr)
    after_kill = _table(killed)
    pd.testing.assert_frame_equal(after_kill, before)  # the previous state, nothing of week 2

    proc = _score(home, tmp_path, book_url, killed, weeks[1])  # the rerun
    assert proc.returncode == 0, proc.stderr
    outputs.append(proc.stdout + proc.stderr)
    pd.testing.assert_frame_equal(_table(killed), _table(whole))

    # the rows equal the week's scores.parquet; the queue view lists the queued actions
    target = parse_source(whole)
    parquet = pd.read_parquet(work_dir(target) / f"as_of={weeks[1]}" / "scores.parquet")
    rows = _table(whole)
    rows = rows[rows["as_of"] == pd.Timestamp(weeks[1])].reset_index(drop=True)
    assert len(rows) == len(parquet) > 100
    nested = ["churn_reasons", "alerts", "next_best_action"]
    scalar = [c for c in parquet.columns if not c.endswith("_reasons")
              and c not in ("alerts", "next_best_action")]
    pd.testing.assert_frame_equal(rows[scalar], parquet[scalar], check_dtype=False)
    import pyarrow.parquet as pq

    stored = pq.read_table(work_dir(target) / f"as_of={weeks[1]}" / "scores.parquet")
    for column in nested:
        got = [json.loads(v) for v in rows[column]]
        assert got == stored.column(column).to_pylist(), column
    queue = pd.DataFrame(pg_rows(whole, "SELECT owner, position, account_id FROM churnml_queue "
                                        "ORDER BY owner, position"),
                         columns=["owner", "position", "account_id"])
    owners = parquet["next_best_action"].map(lambda a: a["owner"] if a else None)
    held = parquet["holdout"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    worked = parquet[(parquet["queue_status"] == "queued").to_numpy(dtype=bool) & ~held]
    assert len(queue) == len(worked) > 0
    assert queue.groupby("owner").size().to_dict() == owners[worked.index].value_counts().to_dict()
    assert (queue.groupby("owner")["position"].max() == queue.groupby("owner").size()).all()

    # the password: no output line, no MLflow parameter or tag
    assert not any(postgres.password in text for text in outputs)
    import mlflow

    from churnml.config import tracking_uri  # CHURNML_HOME of the `home` fixture

    client = mlflow.MlflowClient(tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name("churnml-weekly").experiment_id])
    assert len(runs) == 4  # the killed run died before logging
    for r in runs:
        values = list(r.data.params.values()) + list(r.data.tags.values())
        assert not any(postgres.password in str(v) for v in values)
        assert r.data.params["data"].startswith("postgresql://postgres:***@")
        assert r.data.params["out"].startswith("postgresql://postgres:***@")


def _count_rows_in_flight(postgres) -> int:
    """The killed run's transaction, seen from outside: it holds row locks (its DELETE) and a
    temporary staging table; a count > 0 of its locks on churnml_scores proves it was inside."""
    return int(postgres.psql(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname = 'churnml_scores' AND l.mode = 'RowExclusiveLock'",
        "scores_killed").strip())


def pg_rows(url: str, sql: str) -> list[tuple]:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_score_into_duckdb_keeps_nested_types(home, sim_dir, weeks, tmp_path):
    import duckdb

    from churnml.data.sql import parse_source
    from churnml.jobs.sql_scores import publish_partition, work_dir

    url = f"duckdb://{tmp_path / 'scores.duckdb'}"
    proc = _score(home, tmp_path, str(sim_dir), url, weeks[1])
    assert proc.returncode == 0, proc.stderr
    # a rerun of the week's write replaces its rows (the CLI run above is the first write)
    target = parse_source(url)
    partition = work_dir(target) / f"as_of={weeks[1]}" / "scores.parquet"
    from churnml.scoring.schema import output_columns

    fixed = set(output_columns([]))  # the health dimensions are the other columns
    dims = [c[len("health_"):] for c in pd.read_parquet(partition).columns if c not in fixed]
    assert publish_partition(target, partition, weeks[1], dims) == len(pd.read_parquet(partition))
    con = duckdb.connect(str(tmp_path / "scores.duckdb"), read_only=True)
    n, weeks_seen = con.sql("SELECT count(*), count(DISTINCT as_of) FROM churnml_scores").fetchall()[0]
    kinds = dict(con.sql("SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_name = 'churnml_scores'").fetchall())
    comment = con.sql("SELECT comment FROM duckdb_tables() WHERE table_name = 'churnml_scores'").fetchall()[0][0]
    queued = con.sql("SELECT count(*) FROM churnml_queue").fetchall()[0][0]
    con.close()
    from churnml.scoring.schema import SCHEMA_VERSION

    assert n > 100 and weeks_seen == 1
    assert kinds["next_best_action"].startswith("STRUCT") and kinds["alerts"].endswith("[]")
    assert comment == f"churnml output schema version {SCHEMA_VERSION}"
    assert queued > 0
