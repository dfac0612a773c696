"""``churnml score`` and ``churnml calibrate-health`` end to end: real champions (trained
quickly into a temporary CHURNML_HOME), the command line in a subprocess, MLflow runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support.champions import quick_champions_home  # tests/ is on sys.path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHURNML = str(Path(sys.executable).with_name("churnml"))


@pytest.fixture(scope="module")
def home(sim_tables, tmp_path_factory):
    with quick_champions_home(tmp_path_factory.mktemp("jobs_home"), sim_tables.tables) as home:
        yield home


def churnml(*args, home: Path, cwd: Path):
    env = {**os.environ, "CHURNML_HOME": str(home), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([CHURNML, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)


def test_score_two_weeks_then_rerun(home, sim_dir, tmp_path):
    from churnml.data.io import load_book
    from churnml.features.labels import latest_scoring_date

    as_of = latest_scoring_date(load_book(sim_dir)[0])
    weeks = [as_of - pd.Timedelta(days=7), as_of]
    out = tmp_path / "scores"
    for week in weeks:
        proc = churnml("score", "--data", str(sim_dir), "--as-of", f"{week:%Y-%m-%d}",
                       "--out", str(out), home=home, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    part = out / f"as_of={as_of:%Y-%m-%d}"
    assert f"report: {part / 'report.html'}" in proc.stderr.replace("\n", "")
    # no time-to-event champion in this home: the summary says what is left out and how to fix it
    assert "no time-to-event champion" in proc.stderr.replace("\n", "")
    scores = pd.read_parquet(part / "scores.parquet")
    assert scores["churn_model_version"].eq("1").all()
    assert scores["health_weights_version"].nunique() == 1
    assert scores["churn_reasons"].map(len).gt(0).all()
    from churnml.scoring.schema import SCHEMA_VERSION

    assert scores["schema_version"].eq(SCHEMA_VERSION).all() and SCHEMA_VERSION == 5
    assert scores["next_best_action"].map(lambda a: bool(a["reason"])).all()
    first = (part / "scores.parquet").read_bytes()
    proc = churnml("score", "--data", str(sim_dir), "--as-of", f"{as_of:%Y-%m-%d}", "--out",
                   str(out), home=home, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (part / "scores.parquet").read_bytes() == first

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["churnml-weekly"])
    assert len(runs) == 3
    latest = runs.sort_values("start_time").iloc[-1]
    assert latest["params.as_of"] == f"{as_of:%Y-%m-%d}"
    assert latest["metrics.accounts_scored"] == len(scores)
    assert latest["metrics.mrr_at_risk"] == pytest.approx(scores["mrr_at_risk"].sum())

    # drift against the profiles stored with the champions, the estimate, the retrain rules
    from churnml.models import registry

    profile = registry.load_reference_profile("churn", "1")
    model = registry.load_version("churn", "1")
    assert profile is not None and set(profile.features) == set(model.feature_names)
    drift = pd.read_parquet(out / "monitoring" / "drift.parquet")
    week = drift[(drift["as_of"] == as_of) & (drift["outcome"] == "churn")]
    assert set(week["kind"]) == {"score", "feature"}
    assert len(week[week["kind"] == "feature"]) == len(profile.features)
    assert week["psi"].notna().all() and set(drift["as_of"]) == set(weeks)
    retrain = pd.read_parquet(out / "monitoring" / "retrain.parquet")
    assert set(retrain["outcome"]) == {"churn", "expansion"} and len(retrain) == 4
    estimated = pd.read_parquet(out / "monitoring" / "estimated.parquet")
    assert estimated["estimated_roc_auc"].between(0.5, 1).all()
    assert latest["metrics.drift_churn_score_psi"] == pytest.approx(
        week.loc[week["kind"] == "score", "psi"].iloc[0])
    assert "metrics.retrain_recommended_churn" in runs.columns
    assert "Can we trust this week" in (part / "report.html").read_text()
    assert "score drift (PSI)" in (part / "report.html").read_text()


def test_score_refused_while_locked(home, sim_dir, tmp_path):
    from churnml.jobs.weekly import OutputLock

    out = tmp_path / "locked"
    with OutputLock(out):
        proc = churnml("score", "--data", str(sim_dir), "--as-of", "2026-01-05", "--out",
                       str(out), home=home, cwd=tmp_path)
    assert proc.returncode == 2
    assert "another churnml score run" in proc.stderr
    assert not any(out.glob("as_of=*"))


def test_score_without_champion_exits_2(sim_dir, tmp_path):
    proc = churnml("score", "--data", str(sim_dir), "--as-of", "2026-01-05", "--out",
                   str(tmp_path / "o"), home=tmp_path / "empty_home", cwd=tmp_path)
    assert proc.returncode == 2
    assert "churnml train" in proc.stderr


def test_calibrate_health_refuses_short_history(home, sim_dir, tmp_path):
    from churnml.data.io import load_book

    book, _ = load_book(sim_dir)
    early = book.mrr_changes["effective_date"].min() + pd.Timedelta(days=200)
    proc = churnml("calibrate-health", "--data", str(sim_dir), "--as-of", f"{early:%Y-%m-%d}",
                   home=home, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (home / "health" / "adopted").exists()


def test_calibrate_health_logs_both_aucs(home, sim_dir, tmp_path):
    proc = churnml("calibrate-health", "--data", str(sim_dir), "--test-weeks", "8",
                   home=home, cwd=tmp_path)
    if proc.returncode == 2:  # a small book may have too few churn events: a clear refusal
        assert "churn events" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["churnml-health"])
    assert {"metrics.current_health_test_roc_auc",
            "metrics.candidate_health_test_roc_auc"} <= set(runs.columns)
    assert (home / "health" / "weights-v1.yaml").exists()


@pytest.fixture(scope="module")
def tte_home(home, sim_tables):
    """``home`` plus a ``churnml-time-to-event`` champion (quick configuration), registered
    after the tests above have scored without one."""
    pytest.importorskip("sksurv")
    from churnml.data.io import validate_frames
    from churnml.models.registry import log_time_to_event
    from churnml.models.survival_train import load_survival_config, train_time_to_event

    book, _ = validate_frames(sim_tables.tables)
    config = load_survival_config()
    config.num_boost_round, config.early_stopping_rounds, config.bootstrap_resamples = 30, 10, 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHURNML_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        log_time_to_event(train_time_to_event(book, config))
    return home


def test_score_and_predictor_fill_the_time_to_event_columns(tte_home, sim_dir, tmp_path,
                                                           monkeypatch):
    """Issue 14: with a time-to-event champion, ``churnml score`` writes its columns and the
    report's forecast, and the service's predictor gives the same numbers (both through
    ``score_frame``)."""
    import numpy as np

    from churnml.data.io import load_book
    from churnml.features.build import build_features
    from churnml.features.labels import latest_scoring_date
    from churnml.models.survival import TIME_FEATURES
    from churnml.scoring.schema import (
        TIME_TO_EVENT_VERSION_COLUMN,
        time_to_event_floats,
        time_to_event_reason_columns,
    )

    book = load_book(sim_dir)[0]
    as_of = latest_scoring_date(book)
    proc = churnml("score", "--data", str(sim_dir), "--as-of", f"{as_of:%Y-%m-%d}",
                   "--out", str(tmp_path / "scores"), home=tte_home, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "; time to event v1" in proc.stderr.replace("\n", "")  # the summary names the champion
    part = tmp_path / "scores" / f"as_of={as_of:%Y-%m-%d}"
    scores = pd.read_parquet(part / "scores.parquet")
    floats = time_to_event_floats()
    assert scores[floats].notna().all().all()
    # the timing reasons (schema version 5): every account has some, in catalog words
    for column in time_to_event_reason_columns():
        assert scores[column].map(len).gt(0).all(), column
        assert all(r["text"] and r["feature"] not in TIME_FEATURES
                   for rows in scores[column] for r in rows), column
    assert scores[TIME_TO_EVENT_VERSION_COLUMN].eq("1").all()
    assert (scores["churn_probability_180d"] >= scores["churn_probability_30d"]).all()
    page = (part / "report.html").read_text()
    assert "Revenue forecast: the next six months" in page and "Renewing into risk" in page

    monkeypatch.setenv("CHURNML_HOME", str(tte_home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from churnml.api.predictor import load_predictor

    predictor = load_predictor()
    assert predictor.metadata()["time_to_event"]["version"] == "1"
    ids = scores["account_id"].head(5).tolist()
    features = build_features(book, pd.DatetimeIndex([as_of]))
    features = features[features["account_id"].isin(ids)].sort_values("account_id")
    served = predictor.score(features.reset_index(drop=True))
    batch = scores.set_index("account_id").loc[served["account_id"]]
    np.testing.assert_allclose(served[floats].to_numpy(dtype="float64"),
                               batch[floats].to_numpy(dtype="float64"), rtol=0, atol=1e-12)
    for column in time_to_event_reason_columns():
        for got, want in zip(served[column], batch[column]):
            assert [(r["feature"], r["text"]) for r in got] == [(r["feature"], r["text"]) for r in want]
            np.testing.assert_allclose([r["contribution"] for r in got],
                                       [r["contribution"] for r in want], rtol=0, atol=1e-12)
