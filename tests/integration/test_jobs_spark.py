"""The Spark engine (local mode) gives the local engine's numbers on a small simulated book."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import jobs_fakes  # noqa: E402

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]


def test_spark_engine_matches_local_engine(sim_dir, tmp_path):
    from pyspark import cloudpickle

    from churnml.data.io import load_book
    from churnml.features.labels import latest_scoring_date
    from churnml.health.score import HealthScore
    from churnml.jobs.spark import score_book_spark, spark_session
    from churnml.jobs.weekly import partition_dir, score_book

    cloudpickle.register_pickle_by_value(jobs_fakes)  # the workers cannot import tests/
    book, _ = load_book(sim_dir)
    as_of = latest_scoring_date(book)
    earlier = as_of - pd.Timedelta(days=7)
    churn, expansion = jobs_fakes.models()
    health = HealthScore()
    dims = jobs_fakes.FEATURE_DIMENSIONS

    local_out, spark_out = tmp_path / "local", tmp_path / "spark"
    for when in (earlier, as_of):  # two weeks, so week-over-week alerts are exercised too
        local = score_book(book, when, local_out, churn, expansion, health, chunk_size=70,
                           feature_dimensions=dims)
    # last week's partition as the local engine wrote it: Spark reads it for the alerts
    shutil.copytree(partition_dir(local_out, earlier), partition_dir(spark_out, earlier))
    spark = spark_session("local[2]")
    try:
        remote = score_book_spark(sim_dir, as_of, spark_out, churn, expansion, health,
                                  shards=2, spark=spark, feature_dimensions=dims)
    finally:
        spark.stop()
    assert remote.previous_as_of == earlier

    a, b = pd.read_parquet(local.scores_path), pd.read_parquet(remote.scores_path)
    assert len(a) == len(b) > 100
    assert a["account_id"].tolist() == b["account_id"].tolist()
    for column in ("churn_probability", "expansion_probability", "health_score", "mrr_at_risk"):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-9)
    for column in ("health_tier", "expansion_readiness", "churn_model_version"):
        assert a[column].tolist() == b[column].tolist()
    assert [list(x) for x in a["alerts"]] == [list(x) for x in b["alerts"]]
    assert [x["playbook"] for x in a["next_best_action"]] == \
        [x["playbook"] for x in b["next_best_action"]]
    # same writer, same schema: every value of every column is identical (row groups differ)
    import pyarrow.parquet as pq

    assert pq.read_table(local.scores_path).equals(pq.read_table(remote.scores_path))
