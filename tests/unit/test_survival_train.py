"""End to end: the time-to-event model trained on a small simulated book, registered by the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sksurv")

from churnml.models import survival as S  # noqa: E402
from churnml.models import survival_train as T  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fast_config(tmp_path_factory):
    text = (ROOT / "models" / "time_to_event.yaml").read_text()
    for old, new in (("num_boost_round: 400", "num_boost_round: 40"),
                     ("early_stopping_rounds: 30", "early_stopping_rounds: 10"),
                     ("bootstrap_resamples: 200", "bootstrap_resamples: 10")):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path_factory.mktemp("tte") / "fast.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def trained(sim_dir, fast_config):
    return T.train_time_to_event(sim_dir, fast_config)


def test_a_small_book_trains_and_evaluates(trained):
    m = trained.metrics
    assert m["test_max_sum_error"] < 1e-9
    for name in S.CLASSES[1:]:
        assert 0.5 < m[f"test_td_auc_{name}_90d"] <= 1.0
        assert np.isfinite(m[f"test_ibs_{name}"]) and np.isfinite(m[f"null_test_ibs_{name}"])
        assert len(trained.calibration[name]) == 10
    assert 0.5 < m["test_roc_auc_churn_90d"] <= 1 and 0.5 < m["binary_test_roc_auc_churn_90d"] <= 1
    assert "oracle_test_roc_auc_churn_90d" in m  # the book is simulated: the oracle scores too
    preds = trained.predictions
    churn = [S.incidence_column("churn", d) for d in S.REPORT_DAYS]
    assert (np.diff(preds[churn].to_numpy(), axis=1) >= -1e-12).all()
    assert ((preds[S.EXPECTED_DAYS_COLUMN] > 0) & (preds[S.EXPECTED_DAYS_COLUMN] <= 360)).all()
    # the training cut: the protocol saw no period ending after the first test landmark
    assert trained.split["train_cutoff"] == trained.split["test_start"]
    assert pd.Timestamp(trained.model.info["train_end"]) >= pd.Timestamp(trained.split["test_end"])


def test_the_saved_model_scores_the_same(trained, tmp_path):
    folder = trained.model.save(tmp_path / "m")
    again = S.SurvivalModel.load(folder, version="3")
    features = trained.test_features.head(50)
    pd.testing.assert_frame_equal(trained.model.predict(features), again.predict(features))
    assert again.info["version"] == "3"


def test_cli_registers_churnml_time_to_event_with_a_gate(sim_dir, fast_config, tmp_path):
    env = {**os.environ, "CHURNML_HOME": str(tmp_path / "home"),
           "BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "churnml.cli", "train", "--data", str(sim_dir), "--target",
               "time_to_event", "--config", str(fast_config)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    out = " ".join(first.stdout.split())
    assert "registered churnml-time-to-event version 1: champion (first version" in out
    assert "binary LightGBM" in out
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    out = " ".join(second.stdout.split())
    # the champion (refitted up to the data's end) has no later landmark to be compared on
    assert "version 2: challenger" in out and "champion v1 stays" in out
    bad = subprocess.run(command + ["--horizon-days", "30"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and "--horizon-days does not apply" in " ".join(bad.stderr.split())
