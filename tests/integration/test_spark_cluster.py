"""`churnml score --engine spark` on a real Spark standalone cluster (no local mode).

A master and one worker start as separate JVM processes on 127.0.0.1 from the pyspark
package (``tests/support/spark_cluster.py``; 1 core, 1 GB for executors, 256 MB per daemon);
``churnml score --engine spark`` runs in its own process as the driver, connected through
``CHURNML_SPARK_MASTER`` with its executor sizes in ``spark-defaults.conf``
(``SPARK_CONF_DIR``), and must write what the local engine writes: probabilities to 1e-9,
every other column identical, the time-to-event champion's columns included (its registered
pyfunc through its own Spark UDF). The master's record of the application and the worker's
executor folder prove the work ran on the cluster's executor, not in local mode. Both
processes are stopped at the end, also when the test fails.

Needs Java 17: a missing ``java`` fails with the package to install, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]

from support.champions import quick_champions_home  # tests/ is on sys.path (conftest.py)
from support.spark_cluster import standalone_cluster

SRC = Path(__file__).resolve().parents[2] / "src"
# the driver's and executor's sizes: small, the machine is shared
SPARK_DEFAULTS = """\
spark.driver.memory 512m
spark.executor.memory 768m
spark.executor.cores 1
spark.cores.max 1
spark.sql.shuffle.partitions 2
"""


@pytest.fixture(scope="module")
def home(sim_tables, tmp_path_factory):
    """A CHURNML_HOME with a champion for churn, expansion and the time-to-event model (small
    real models)."""
    with quick_champions_home(tmp_path_factory.mktemp("spark_cluster_home"), sim_tables.tables,
                              num_boost_round=30,
                              targets=("churn", "expansion", "time_to_event")) as home:
        yield home


def _run_driver(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 480):
    """``churnml`` in its own process group, killed with everything it started on timeout."""
    proc = subprocess.Popen([sys.executable, "-m", "churnml.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0]
        pytest.fail(f"churnml score --engine spark did not finish in {timeout:.0f} s:\n"
                    f"{output[-4000:]}")
    return proc.returncode, output


def test_standalone_cluster_matches_local_engine(home, sim_dir, tmp_path):
    import pyarrow.parquet as pq

    from churnml.data.io import load_book
    from churnml.features.labels import latest_scoring_date
    from churnml.health.adopted import load_adopted_health
    from churnml.jobs.weekly import (
        champion_models,
        champion_time_to_event,
        partition_dir,
        score_book,
    )
    from churnml.scoring.schema import (
        TIME_TO_EVENT_VERSION_COLUMN,
        time_to_event_floats,
        time_to_event_reason_columns,
    )

    book, _ = load_book(sim_dir)
    as_of = latest_scoring_date(book)
    earlier = as_of - pd.Timedelta(days=7)
    models, missing = champion_models()
    assert sorted(models) == ["churn", "expansion"], missing
    time_to_event = champion_time_to_event()
    assert time_to_event is not None and time_to_event.version == "1"
    health = load_adopted_health()
    local_out, spark_out = tmp_path / "local", tmp_path / "spark"
    for when in (earlier, as_of):  # two weeks: the executors read last week's partition too
        local = score_book(book, when, local_out, models, health, chunk_size=100,
                           time_to_event=time_to_event)
    shutil.copytree(partition_dir(local_out, earlier), partition_dir(spark_out, earlier))

    conf = tmp_path / "spark-conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
    pythonpath = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    started = time.monotonic()
    with standalone_cluster(tmp_path / "cluster", cores=1, memory="1g",
                            env={"PYTHONPATH": pythonpath}) as cluster:
        env = {**os.environ, "CHURNML_HOME": str(home), "CHURNML_SPARK_MASTER":
               cluster.master_url, "SPARK_CONF_DIR": str(conf), "SPARK_LOCAL_IP": "127.0.0.1",
               "PYTHONPATH": pythonpath, "COLUMNS": "200"}
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("PYSPARK_GATEWAY_PORT", None)
        code, output = _run_driver(
            ["score", "--data", str(sim_dir), "--as-of", f"{as_of:%Y-%m-%d}", "--out",
             str(spark_out), "--engine", "spark", "--shards", "2"], env, cwd=tmp_path)
        assert code == 0, output[-4000:]
        state = cluster.state()
        daemons = cluster.processes
        assert all(p.poll() is None for p in daemons)  # both still up for the whole run
    assert all(p.poll() is not None for p in daemons)  # and both stopped at the end
    elapsed = time.monotonic() - started

    # it ran on the cluster: the master completed one churnml application, whose executor
    # ran in the worker's work folder (its log names the tasks of the feature and scoring steps)
    apps = state["completedapps"] + state["activeapps"]
    assert [a["name"] for a in apps] == ["churnml-score"], apps
    executor_logs = list((cluster.work_dir / apps[0]["id"]).glob("*/stderr"))
    assert executor_logs, sorted(cluster.work_dir.rglob("*"))
    assert "Finished task" in executor_logs[0].read_text(errors="replace")
    assert "local[" not in output

    a = pd.read_parquet(local.scores_path)
    b = pd.read_parquet(partition_dir(spark_out, as_of) / "scores.parquet")
    assert len(a) == len(b) > 100
    assert a["account_id"].tolist() == b["account_id"].tolist()
    assert a["churn_probability"].std() > 0.01 and a["churn_reasons"].map(len).min() >= 1
    for column in ("churn_probability", "expansion_probability", "health_score", "mrr_at_risk",
                   "expected_expansion_mrr"):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-9, err_msg=column)
    # the time-to-event columns: filled (not null on both sides) and equal to 1e-9
    floats = time_to_event_floats()
    assert b[floats].notna().all().all() and b["churn_probability_180d"].std() > 0.001
    # the timing reasons came from the shard's score_frame (the table equality below checks them)
    for column in time_to_event_reason_columns():
        assert b[column].map(len).gt(0).all(), column
    assert set(b[TIME_TO_EVENT_VERSION_COLUMN]) == {"1"}
    for column in floats:
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-9, err_msg=column)
    assert sum(len(x) for x in b["alerts"]) > 0  # last week's partition reached the executor
    # same writer, same schema: every value of every column is identical
    assert pq.read_table(local.scores_path).equals(
        pq.read_table(partition_dir(spark_out, as_of) / "scores.parquet"))
    print(f"cluster start, Spark run and stop: {elapsed:.0f} s")
