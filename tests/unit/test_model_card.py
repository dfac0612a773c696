"""The model card (``churnml.models.card``) and the split policies end to end on synthetic
observations: a time split, a short book (cross-fitted calibration) and a cross-sectional
snapshot (K-fold cross-validation grouped by account), each through ``train_on_dataset``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

LGB = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 15, "max_depth": 5,
       "min_child_samples": 30, "seed": 1, "deterministic": True, "num_threads": 1, "verbose": -1}


def observations(n_accounts: int, dates, seed: int = 0):
    """Features and labels with a known driver (``logins_30d_vs_baseline`` low, ``nps`` low)."""
    rng = np.random.default_rng(seed)
    ids = [f"acct-{i:05d}" for i in range(n_accounts)]
    grid = pd.MultiIndex.from_product([ids, dates], names=["account_id", "as_of"]).to_frame(index=False)
    n = len(grid)
    latent = np.repeat(rng.normal(size=n_accounts), len(dates))
    features = grid.assign(
        logins_30d_vs_baseline=np.exp(0.4 * rng.normal(size=n) - 0.5 * latent),
        nps_latest=rng.integers(0, 11, n).astype(float),
        plan=pd.Series(rng.choice(["basic", "pro"], n), dtype="str"),
        mrr=rng.gamma(2, 500, n),
    )
    logit = -2.0 + latent - 0.15 * (features["nps_latest"] - 5)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    labels = grid.assign(mrr=features["mrr"], churn=label, expansion=0.0, contraction=0.0,
                         labeled=True)
    return features, labels


def train(split_of, n_accounts: int, n_dates: int, horizon: int = 28, **overrides):
    from churnml.features.catalog import load_catalog
    from churnml.models.config import ModelConfig
    from churnml.models.dataset import assemble
    from churnml.models.train import train_on_dataset

    config = ModelConfig(target="churn", horizon_days=horizon, num_boost_round=60, backtest_folds=1,
                         bootstrap_resamples=20, lgb_params=LGB, **overrides)
    dates = pd.date_range("2025-01-06", periods=n_dates, freq="7D")
    features, labels = observations(n_accounts, dates)
    dataset = assemble(features, labels, config, split_of(dates, config))
    return train_on_dataset(dataset, config, catalog=load_catalog())


@pytest.fixture(scope="module")
def time_result():
    from churnml.models.dataset import choose_split

    return train(choose_split, 150, 60)


@pytest.fixture(scope="module")
def short_result():
    from churnml.models.dataset import choose_split

    return train(choose_split, 300, 17)


@pytest.fixture(scope="module")
def cross_result():
    from churnml.models.dataset import choose_split

    return train(choose_split, 2000, 1)


def test_the_policies_are_chosen_and_recorded(time_result, short_result, cross_result):
    assert time_result.split.policy == "time"
    assert short_result.split.policy == "short"
    assert cross_result.split.policy == "cross_sectional"
    for result in (time_result, short_result, cross_result):
        assert result.model.info["split"]["policy"] == result.split.policy
        assert result.notes[0].startswith(f"split policy: {result.split.policy} (")


def test_short_policy_cross_fits_and_trains_on_half_the_dates(short_result):
    split = short_result.split
    assert len(split.calibration) == 0 and len(split.train) >= 17 / 2
    crossfit = short_result.model.info["crossfit"]
    assert crossfit["folds"] == 5 and crossfit["rounds"] >= 1
    assert "out-of-fold" in short_result.model.info["calibration_fitted_on"]
    m = short_result.metrics
    assert m["test_roc_auc_ci_low"] <= m["test_roc_auc"] <= m["test_roc_auc_ci_high"]
    assert m["test_roc_auc"] > 0.65


def test_cross_sectional_metrics_are_fold_means_under_the_time_split_names(cross_result):
    m = cross_result.metrics
    for name in ("test_roc_auc", "test_brier", "test_ece", "logreg_test_roc_auc", "health_test_roc_auc"):
        assert np.isfinite(m[name]) and np.isfinite(m[f"{name}_std"]), name
    folds = cross_result.backtest
    assert len(folds) == 5 and m["cv_folds"] == 5
    assert np.isclose(m["test_roc_auc"], folds["roc_auc"].mean())
    assert np.isclose(m["test_roc_auc_std"], folds["roc_auc"].std(ddof=0))
    assert m["test_roc_auc"] > 0.65
    # out-of-fold predictions: every account once, each fold's accounts disjoint
    predictions = cross_result.predictions
    assert predictions["account_id"].is_unique and len(predictions) == 2000
    assert predictions.groupby("account_id")["fold"].nunique().max() == 1
    # the registered model: fitted on every row, calibrated on out-of-fold predictions
    assert cross_result.dataset.part("train").shape[0] == 2000
    assert cross_result.model.info["crossfit"]["folds"] == 5
    assert len(cross_result.dataset.evaluation_rows()) == 2000


def test_model_card_of_a_time_split(time_result):
    from churnml.models.card import model_card

    text = model_card(time_result, version="7", run_id="abc123", trained_at="2026-12-03 12:00 UTC")
    assert text.startswith("# Model card: churnml-churn version 7")
    for section in ("## Outcome and label rule", "## Data and split policy", "## Features",
                    "## Evaluation against the baselines", "## Calibration", "## Known limits"):
        assert section in text, section
    assert "the account's MRR reaches 0 in `[as_of, as_of + 28 days)`" in text
    assert "Split policy: `time`" in text and "| calibration |" in text
    m = time_result.metrics
    assert f"| model (LightGBM, calibrated) | {m['test_roc_auc']:.3f} |" in text
    assert f"| logistic regression | {m['logreg_test_roc_auc']:.3f} |" in text
    assert f"ROC AUC 95% interval {m['test_roc_auc_ci_low']:.3f} to {m['test_roc_auc_ci_high']:.3f}" in text
    assert f"ECE {m['test_ece']:.3f} after calibration" in text
    assert f"{len(time_result.model.feature_names)} features" in text
    assert "**Drift**" in text and "Cross-sectional" not in text
    assert "Training weights: none (every training row weighs the same)." in text
    weighted = dataclasses.replace(time_result,
                                   config=time_result.config.with_overrides(recency_half_life_days=90))
    assert "Training weights: recency weight with a half-life of 90 days" in model_card(
        weighted, trained_at="2026-12-03 12:00 UTC")
    refit = time_result.fit_details.get("refit")
    if refit:  # the registered model's span, as the training recorded it
        assert f"`train_end` = {time_result.model.info['train_end']}" in text
        assert "refitted on every labeled as_of date" in text
    else:
        assert f"`train_end` = {time_result.model.info['train_end']}" in text


def test_model_card_of_a_cross_sectional_run_says_so(cross_result):
    from churnml.models.card import model_card

    cross_result.model.info["train_end"] = "2025-01-06"  # what the refit adds
    try:
        text = model_card(cross_result)
    finally:
        cross_result.model.info.pop("train_end")
    assert "Split policy: `cross_sectional`" in text
    assert "5-fold cross-validation grouped by account" in text
    assert "**Cross-sectional**" in text and "mean over folds" in text
    assert f"model ROC AUC {cross_result.metrics['test_roc_auc_std']:.3f}" in text
    assert "`train_end` = 2025-01-06" in text


def test_model_card_of_a_short_book(short_result):
    from churnml.models.card import model_card

    text = model_card(short_result)
    assert "Split policy: `short`" in text and "**Short book**" in text
    assert "no calibration window" in text and "out-of-fold" in text
    assert "| calibration |" not in text
