"""MLflow tracking and registry: champion gate, rollback, pyfunc round trip, CLI.

One SQLite store per test session (a fresh store takes seconds to migrate), in a temporary
CHURNML_HOME; MLFLOW_TRACKING_URI is unset so the embedded store is used.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from churnml.errors import ModelNotFoundError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def mlflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("churnml_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURNML_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for key, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
                           "BENTOML_DO_NOT_TRACK": "true"}.items():
            mp.setenv(key, value)
        yield home


def synthetic_dataset(seed: int = 0):
    from churnml.models.config import ModelConfig
    from churnml.models.dataset import assemble, time_split

    rng = np.random.default_rng(seed)
    dates = pd.date_range("2025-01-06", periods=60, freq="7D")
    ids = [f"acct-{i:04d}" for i in range(150)]
    grid = pd.MultiIndex.from_product([ids, dates], names=["account_id", "as_of"]).to_frame(index=False)
    n = len(grid)
    latent = np.repeat(rng.normal(size=len(ids)), len(dates))
    features = grid.assign(
        logins_30d_vs_baseline=np.exp(0.4 * rng.normal(size=n) - 0.5 * latent),
        nps_latest=rng.integers(0, 11, n).astype(float),
        plan=pd.Series(rng.choice(["basic", "pro"], n), dtype="str"),
        mrr=rng.gamma(2, 500, n),
    )
    logit = -2.2 + latent - 0.15 * (features["nps_latest"] - 5)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    labels = grid.assign(mrr=features["mrr"], churn=label, expansion=1 - label, labeled=True)
    config = ModelConfig(target="churn", horizon_days=28, num_boost_round=80, backtest_folds=1,
                         bootstrap_resamples=20,
                         lgb_params={"objective": "binary", "learning_rate": 0.1, "num_leaves": 15,
                                     "max_depth": 5, "min_child_samples": 30, "seed": 1,
                                     "deterministic": True, "num_threads": 1, "verbose": -1})
    split = time_split(sorted(dates), config)
    return assemble(features, labels, config, split), config


@pytest.fixture(scope="session")
def results():
    """A good model and a deliberately weak one (a single two-leaf tree) on the same rows."""
    from churnml.features.catalog import load_catalog
    from churnml.models.train import train_on_dataset

    dataset, config = synthetic_dataset()
    # train-window models (no refit): each one's test weeks lie after the others' training
    # span, so the gate compares them on the whole test window
    config = config.with_overrides(refit=False)
    good = train_on_dataset(dataset, config, catalog=load_catalog())
    weak_config = config.with_overrides(num_boost_round=1, monotone_from_catalog=False,
                                        lgb_params={**config.lgb_params, "num_leaves": 2})
    weak = train_on_dataset(dataset, weak_config, catalog=load_catalog())
    assert weak.metrics["test_roc_auc"] < good.metrics["test_roc_auc"] - 0.02
    return good, weak


def test_no_champion_yet_is_a_clear_error(mlflow_home):
    from churnml.models import registry

    with pytest.raises(ModelNotFoundError, match=r"no champion model for churnml-expansion: run `churnml train` first"):
        registry.load_champion("expansion")
    assert registry.list_versions("expansion") == []


def test_champion_gate_rollback_and_pyfunc_round_trip(mlflow_home, results, capsys):
    import mlflow

    from churnml.cli import main
    from churnml.models import registry

    good, weak = results
    # 1. the first version becomes champion at once, even if weak
    first = registry.log_training(weak, plots=False)
    assert first.became_champion and first.previous_champion is None and first.version == "1"
    # 2. a better model beats the champion re-scored on the new test rows
    second = registry.log_training(good, plots=True)
    assert second.became_champion and second.previous_champion == "1"
    assert second.champion_score == pytest.approx(weak.metrics["test_roc_auc"])
    # 3. a worse one only becomes challenger
    third = registry.log_training(weak, plots=False)
    assert not third.became_champion and third.champion_score == pytest.approx(good.metrics["test_roc_auc"])
    versions = {v["version"]: v["aliases"] for v in registry.list_versions("churn")}
    assert versions == {"3": ["challenger"], "2": ["champion"], "1": []}
    assert registry.champion_version("churn") == "2"

    # the run carries config, fingerprint, metrics, plots and child runs per backtest fold
    client = mlflow.MlflowClient(tracking_uri=registry.tracking_uri())
    run = client.get_run(second.run_id)
    assert run.data.metrics["test_roc_auc"] == pytest.approx(good.metrics["test_roc_auc"])
    for name in ("test_ece", "health_test_roc_auc", "logreg_test_roc_auc", "backtest_roc_auc_mean",
                 "test_mrr_capture_top_decile", "test_roc_auc_ci_low"):
        assert name in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(second.run_id)}
    assert {"config.json", "data_fingerprint.json", "roc_pr.png", "calibration.png", "gain_lift.png",
            "shap_summary.png", "backtest.png", "reliability_raw.csv", "model_card.md"} <= artifacts
    assert run.data.params["split_policy"] == "time" and run.data.tags["churnml.split_policy"] == "time"

    # the model card: logged with the version, found by the registry, linked from /metadata
    card_uri = registry.model_card_uri("churn", "2")
    assert card_uri == f"{run.info.artifact_uri}/model_card.md"
    card = mlflow.artifacts.download_artifacts(artifact_uri=card_uri)
    text = open(card, encoding="utf-8").read()
    assert text.startswith("# Model card: churnml-churn version 2")
    assert f"MLflow run `{second.run_id}`" in text and "Split policy: `time`" in text
    assert f"| model (LightGBM, calibrated) | {good.metrics['test_roc_auc']:.3f} |" in text
    from churnml.api.predictor import load_predictor

    meta = load_predictor().metadata()["models"]["churn"]
    assert meta["version"] == "2" and meta["model_card"] == card_uri
    assert meta["split_policy"] == "time"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "churnml-churn" and str(mlflow_home) in experiment.artifact_location
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{second.run_id}'")
    assert len(children) == len(good.backtest) >= 1

    # pyfunc from the registry == TargetModel, probabilities and reasons
    champion = registry.load_champion("churn")
    assert champion.version == "2"
    test = good.dataset.part("test").head(25)
    pyfunc = mlflow.pyfunc.load_model(registry.model_uri("churn"))
    out = pyfunc.predict(test)
    proba, reasons = champion.predict_with_reasons(test)
    np.testing.assert_allclose(out["probability"].to_numpy(), proba, rtol=1e-12)
    assert [json.loads(r) for r in out["reasons"]] == reasons
    records = pyfunc.predict(test, params={"reasons_format": "records", "top_k": 2})
    assert [len(r) for r in records["reasons"]] <= [2] * len(test)
    # the logged input example carries no real account id
    example = pd.read_json(pyfunc.metadata.get_model_info().saved_input_example_info and
                           mlflow.artifacts.download_artifacts(f"{registry.model_uri('churn')}/input_example.json"),
                           orient="split")
    assert example["account_id"].str.startswith("example-").all()
    assert not set(example["account_id"]) & set(good.dataset.frame["account_id"])

    # rollback by hand: churnml promote prints old -> new
    assert main(["promote", "--target", "churn", "--version", "1"]) == 0
    assert "champion: v2 -> v1" in capsys.readouterr().out
    assert registry.champion_version("churn") == "1"
    assert {v["version"]: v["aliases"] for v in registry.list_versions("churn")}["2"] == ["challenger"]
    assert registry.load_champion("churn").version == "1"
    # an unknown version is bad input (exit 2) and changes nothing
    assert main(["promote", "--target", "churn", "--version", "99"]) == 2
    assert registry.champion_version("churn") == "1"


def test_after_a_recommended_retrain_the_gate_promotes_a_non_inferior_version(mlflow_home, results,
                                                                            tmp_path, capsys):
    """churnml train --scores OUT: the weekly monitoring's verdict reaches the gate through
    MLflow's alias flow; without a recommendation the same challenger stays challenger."""
    import dataclasses

    import mlflow

    from churnml.cli import main
    from churnml.jobs.drift import RETRAIN_NAME, latest_recommendation
    from churnml.jobs.monitoring import MONITORING_DIR
    from churnml.models import registry

    good, weak = results
    # the module's registry may already hold versions: make the good model champion first
    champion = registry.log_training(good, plots=False)
    if not champion.became_champion:
        registry.promote("churn", champion.version)
    # a worse challenger; a margin wide enough to accept its shortfall after a recommendation
    wide = dataclasses.replace(weak, config=weak.config.with_overrides(promotion_after_retrain_margin=0.5))
    refused = registry.log_training(wide, plots=False)  # no recommendation: the usual rule
    assert not refused.became_champion and registry.champion_version("churn") == champion.version
    (tmp_path / MONITORING_DIR).mkdir()
    pd.DataFrame({"as_of": pd.to_datetime(["2026-06-08"]), "outcome": ["churn"],
                  "model_version": [champion.version], "retrain_recommended": [True],
                  "retrain_reason": ["realized AUC 0.601 on the week of 2026-03-09 is 0.090 below "
                                     "the training evaluation 0.691 (allowed 0.05)"]}
                 ).to_parquet(tmp_path / MONITORING_DIR / RETRAIN_NAME)
    third = registry.log_training(wide, plots=False, retrain=latest_recommendation(tmp_path, "churn"))
    assert third.became_champion and third.previous_champion == champion.version
    assert f"recommended retraining v{champion.version}" in third.reason
    run = mlflow.MlflowClient(tracking_uri=registry.tracking_uri()).get_run(third.run_id)
    assert run.data.tags["churnml.gate_rule"] == "non_inferiority"
    assert "after_retrain_margin" in run.data.tags["churnml.gate"]
    aliases = {v["version"]: v["aliases"] for v in registry.list_versions("churn")}
    assert aliases[third.version] == ["champion"] and aliases[champion.version] == ["challenger"]
    assert aliases[refused.version] == []
    # the CLI reads the table before training: a folder without it is bad input (exit 2)
    assert main(["train", "--data", str(tmp_path), "--target", "churn", "--scores",
                 str(tmp_path / "nothing")]) == 2
    assert "churnml monitor --scores" in capsys.readouterr().err


def test_a_champion_that_cannot_be_read_is_never_replaced(mlflow_home, results, monkeypatch):
    """Reading the champion fails (registry unreachable for a moment): the new version, however
    good, is only challenger; "unknown" is never taken for "no champion"."""
    from churnml.errors import RegistryUnavailableError
    from churnml.models import registry

    good, _ = results
    before = registry.champion_version("churn")
    assert before is not None  # set by the test above

    def unreadable(target):
        raise RegistryUnavailableError("the model registry at http://127.0.0.1:9 cannot be "
                                       "reached")

    monkeypatch.setattr(registry, "champion_version", unreadable)
    registration = registry.log_training(good, plots=False)
    monkeypatch.undo()
    assert not registration.became_champion
    assert "could not be read" in registration.reason and "not promoted" in registration.reason
    assert registry.champion_version("churn") == before
    aliases = {v["version"]: v["aliases"] for v in registry.list_versions("churn")}
    assert aliases[registration.version] == ["challenger"]


def test_a_refitted_champion_records_its_span_and_the_gate_waits_for_later_weeks(mlflow_home):
    import mlflow

    from churnml.features.catalog import load_catalog
    from churnml.models import registry
    from churnml.models.train import train_on_dataset

    dataset, config = synthetic_dataset()
    config = config.with_overrides(target="contraction")  # a registered model of its own
    result = train_on_dataset(dataset, config, catalog=load_catalog())
    last = dataset.frame["as_of"].max().date().isoformat()
    assert result.train_end == last
    first = registry.log_training(result, plots=False)
    assert first.became_champion
    client = mlflow.MlflowClient(tracking_uri=registry.tracking_uri())
    params = client.get_run(first.run_id).data.params
    assert params["train_end"] == last and params["refit"] == "True"
    assert int(params["refit_rounds_used"]) == result.model.booster.num_trees()
    metrics = client.get_run(first.run_id).data.metrics
    assert metrics["test_roc_auc"] == pytest.approx(result.metrics["test_roc_auc"])
    assert metrics["time_refit_seconds"] > 0
    assert registry.list_versions("contraction")[0]["train_end"] == last
    champion = registry.load_champion("contraction")
    assert champion.info["train_end"] == last and champion.booster.num_trees() == \
        result.model.booster.num_trees()
    # the same book again: every test week lies inside the champion's span
    second = registry.log_training(result, plots=False)
    assert not second.became_champion and second.champion_score is None
    assert f"no test week of the new version lies after champion v{first.version}'s " \
           f"training span (ending {last}, train_end;" in second.reason
    assert registry.champion_version("contraction") == first.version


def test_the_shap_summary_plot_needs_no_shap_package(results, tmp_path, monkeypatch):
    import sys

    from churnml.models import plots

    monkeypatch.setitem(sys.modules, "shap", None)  # `import shap` raises ImportError
    path = plots.shap_summary(results[0], tmp_path / "shap_summary.png")
    assert path.stat().st_size > 5000


def test_log_job_run_records_params_metrics_and_artifacts(mlflow_home, tmp_path):
    import mlflow

    from churnml.models import registry

    report = tmp_path / "report.html"
    report.write_text("<html>weekly</html>")
    run_id = registry.log_job_run("churnml-weekly", params={"as_of": "2026-11-16"},
                                  metrics={"accounts_scored": 300, "bad": float("nan")},
                                  artifacts={"reports": report}, tags={"kind": "weekly"})
    client = mlflow.MlflowClient(tracking_uri=registry.tracking_uri())
    run = client.get_run(run_id)
    assert run.data.params == {"as_of": "2026-11-16"} and run.data.metrics == {"accounts_scored": 300.0}
    assert [a.path for a in client.list_artifacts(run_id, "reports")] == ["reports/report.html"]


@pytest.mark.slow
def test_churnml_train_on_the_simulated_book(mlflow_home, sim_dir, capsys):
    from churnml.cli import main

    assert main(["train", "--data", str(sim_dir), "--target", "expansion", "--no-plots"]) == 0
    out = capsys.readouterr().out
    for text in ("health score", "logistic regression", "oracle", "registered churnml-expansion version 1",
                 "champion", "backtest ROC AUC: fold 1", "refitted on all", "refit_crossfit ",
                 "registered model: refitted on every labeled as_of date"):
        assert text in out
    assert main(["train", "--data", str(sim_dir / "missing"), "--target", "churn"]) == 2


def test_the_ui_trust_page_shows_each_versions_evaluation_from_the_registry(mlflow_home, results,
                                                                            tmp_path):
    """``churnml ui``'s Trust page reads the real registry: every registered version of churn
    with its alias and the test figures its training run logged (``registry.run_metrics``)."""
    from starlette.testclient import TestClient

    from churnml.models import registry
    from churnml.ui.app import create_app
    from churnml.ui.evaluation import read_registry

    good, _weak = results
    if not registry.list_versions("churn"):  # this test alone: register one version
        registry.log_training(good, plots=False)
    versions = registry.list_versions("churn")
    answer = read_registry()
    assert answer.message is None
    rows = [r for r in answer.rows if r["outcome"] == "churn"]
    assert [r["version"] for r in rows] == [v["version"] for v in versions]
    for row, v in zip(rows, versions):
        logged = registry.run_metrics(v["run_id"])
        assert row["aliases"] == ", ".join(v["aliases"])
        assert row["test_roc_auc"] == pytest.approx(logged["test_roc_auc"])
        assert row["test_lift_top_decile"] == pytest.approx(logged["test_lift_top_decile"])
    assert any(r["test_roc_auc"] == pytest.approx(good.metrics["test_roc_auc"]) for r in rows)
    (tmp_path / "scores").mkdir()
    html = TestClient(create_app(tmp_path / "scores", None, api_key="")).get("/trust").text
    table = html.split('id="evaluation"')[1].split("</table>")[0]
    assert "champion" in table and f"{good.metrics['test_roc_auc']:,.3f}" in table
