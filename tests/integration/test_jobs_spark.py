"""The Spark engine (local mode) gives the local engine's numbers on a small simulated book.

One Spark session for the module (local[2], 2 shuffle partitions) and one MLflow store in a
temporary CHURNML_HOME holding two small real models (registered as `churnml train`
registers them), so the Spark engine loads them from the registry exactly as in production.
The Spark run goes through the command line (`churnml score --engine spark`).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def churnml_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("churnml_home_spark")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURNML_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for key, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
                           "BENTOML_DO_NOT_TRACK": "true"}.items():
            mp.setenv(key, value)
        yield home


def _training_result(target: str, seed: int):
    """A small LightGBM model over features the simulated book has (numbers with gaps and a
    text category), trained on synthetic rows: what matters here is the scoring path."""
    from churnml.features.catalog import load_catalog
    from churnml.models.config import ModelConfig
    from churnml.models.dataset import assemble, time_split
    from churnml.models.train import train_on_dataset

    rng = np.random.default_rng(seed)
    dates = pd.date_range("2025-01-06", periods=40, freq="7D")
    ids = [f"train-{i:04d}" for i in range(120)]
    grid = pd.MultiIndex.from_product([ids, dates], names=["account_id", "as_of"]).to_frame(index=False)
    n = len(grid)
    latent = np.repeat(rng.normal(size=len(ids)), len(dates))
    logins = np.exp(0.4 * rng.normal(size=n) - 0.5 * latent)
    logins[rng.random(n) < 0.1] = np.nan
    features = grid.assign(
        logins_30d_vs_baseline=logins,
        nps_latest=rng.integers(0, 11, n).astype(float),
        days_since_last_contact=rng.gamma(2.0, 10.0, n),
        plan=pd.Series(rng.choice(["starter", "growth", "business"], n), dtype="str"),
        mrr=rng.gamma(2, 500, n),
    )
    logit = (-2.0 + latent - 0.15 * (features["nps_latest"] - 5)
             + 0.02 * features["days_since_last_contact"]
             + 0.5 * (features["plan"] == "starter"))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    labels = grid.assign(mrr=features["mrr"], churn=label, expansion=1 - label, labeled=True)
    config = ModelConfig(target=target, horizon_days=28, num_boost_round=30, backtest_folds=1,
                         bootstrap_resamples=10, calibration_method="sigmoid",
                         lgb_params={"objective": "binary", "learning_rate": 0.1,
                                     "num_leaves": 15, "max_depth": 5, "min_child_samples": 30,
                                     "seed": seed, "deterministic": True, "num_threads": 1,
                                     "verbose": -1})
    split = time_split(sorted(dates), config)
    dataset = assemble(features, labels, config, split)
    return train_on_dataset(dataset, config, catalog=load_catalog())


@pytest.fixture(scope="module")
def champions(churnml_home):
    """Both targets registered (version 1, champion) in the module's MLflow store."""
    from churnml.models import registry

    for seed, target in enumerate(("churn", "expansion")):
        registration = registry.log_training(_training_result(target, seed), plots=False)
        assert registration.became_champion
    return registry.load_champion("churn"), registry.load_champion("expansion")


@pytest.fixture(scope="module")
def spark(churnml_home):
    from churnml.jobs.spark import spark_session

    session = spark_session("local[2]")
    session.conf.set("spark.sql.shuffle.partitions", "2")
    yield session
    session.stop()


def test_spark_engine_matches_local_engine(sim_dir, tmp_path, champions, spark):
    """`churnml score --engine spark` (the local pipeline per shard, the queue in one task,
    the output in account order) writes what the local engine writes: probabilities to 1e-9, every other column equal."""
    import pyarrow.parquet as pq

    from churnml.cli import main
    from churnml.data.io import load_book
    from churnml.features.labels import latest_scoring_date
    from churnml.health.adopted import load_adopted_health
    from churnml.jobs.weekly import partition_dir, score_book

    churn, expansion = champions
    assert (churn.version, expansion.version) == ("1", "1")
    book, _ = load_book(sim_dir)
    as_of = latest_scoring_date(book)
    earlier = as_of - pd.Timedelta(days=7)
    health = load_adopted_health()

    local_out, spark_out = tmp_path / "local", tmp_path / "spark"
    for when in (earlier, as_of):  # two weeks, so week-over-week alerts are exercised too
        local = score_book(book, when, local_out, {"churn": churn, "expansion": expansion},
                           health, chunk_size=70)
    # last week's partition as the local engine wrote it: Spark reads it for the alerts
    shutil.copytree(partition_dir(local_out, earlier), partition_dir(spark_out, earlier))

    code = main(["score", "--data", str(sim_dir), "--as-of", f"{as_of:%Y-%m-%d}",
                 "--out", str(spark_out), "--engine", "spark", "--shards", "2"])
    assert code == 0
    remote = partition_dir(spark_out, as_of)
    assert "MRR at risk" in (remote / "report.html").read_text()

    a, b = pd.read_parquet(local.scores_path), pd.read_parquet(remote / "scores.parquet")
    assert len(a) == len(b) > 100
    assert a["account_id"].tolist() == b["account_id"].tolist()
    # a real model: probabilities spread out, reasons present, versions from the registry
    assert a["churn_probability"].std() > 0.01 and a["churn_reasons"].map(len).min() >= 1
    for column in ("churn_probability", "expansion_probability", "health_score", "mrr_at_risk",
                   "expected_expansion_mrr"):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-9)
    for column in ("health_tier", "expansion_readiness", "churn_model_version",
                   "expansion_model_version"):
        assert a[column].tolist() == b[column].tolist()
    assert set(b["churn_model_version"]) == {"1"}
    for column in ("churn_reasons", "expansion_reasons"):  # same records, same order
        assert [[dict(r) for r in x] for x in a[column]] == [[dict(r) for r in x] for x in b[column]]
    assert [list(x) for x in a["alerts"]] == [list(x) for x in b["alerts"]]
    assert sum(len(x) for x in a["alerts"]) > 0
    assert [x["playbook"] for x in a["next_best_action"]] == \
        [x["playbook"] for x in b["next_best_action"]]
    # same writer, same schema: every value of every column is identical (row groups differ)
    assert pq.read_table(local.scores_path).equals(pq.read_table(remote / "scores.parquet"))
    # no contraction champion in this registry: null columns on both engines
    assert a["contraction_probability"].isna().all() and b["contraction_probability"].isna().all()
    # this week's queue is ranked over the whole book on both engines (Spark: in one task,
    # on every shard's queue inputs), so the same accounts are queued, watched and held out
    assert (b["queue_status"] == "queued").any() and b["holdout"].fillna(False).any()
    for column in ("queue_status", "queue_rank", "holdout", "queue_reason"):
        assert a[column].astype(object).where(a[column].notna(), None).tolist() == \
            b[column].astype(object).where(b[column].notna(), None).tolist(), column


def test_spark_failures_are_clear_errors(spark, churnml_home):
    """A churnml error raised in an executor comes back as itself (exit code 2 for bad
    input); any other failure names the step; an unknown model version names the model."""
    from churnml.errors import ModelNotFoundError, SchemaError
    from churnml.jobs.spark import SparkEngineError, load_models, spark_errors

    def bad_input(batches):
        for _ in batches:
            raise SchemaError("mrr_changes: column 'mrr' has 3 values that are not numbers")
        yield from ()

    def bug(batches):
        for _ in batches:
            raise ZeroDivisionError("division by zero")
        yield from ()

    frame = spark.range(2)
    with pytest.raises(SchemaError, match=r"^mrr_changes: column 'mrr' has 3 values that are "
                                          r"not numbers \(Spark engine, scoring\)$"):
        with spark_errors("scoring"):
            frame.mapInPandas(bad_input, schema="id long").collect()
    with pytest.raises(SparkEngineError, match=r"the Spark job failed while scoring: "
                                               r"ZeroDivisionError: division by zero"):
        with spark_errors("scoring"):
            frame.mapInPandas(bug, schema="id long").collect()
    with pytest.raises(ModelNotFoundError, match=r"churnml-churn"):
        load_models({"churn": "99"}, None)
