"""Cross-fitting inside the training span (churnml.models.crossfit): folds grouped by account
and stratified, and no row's out-of-fold score comes from a booster that saw its account."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from churnml.models.config import ModelConfig
from churnml.models.crossfit import crossfit_booster, grouped_folds


def test_grouped_folds_keep_an_account_together_and_stratify():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(400), 5)  # 400 accounts x 5 weekly rows
    y = np.repeat(rng.random(400) < 0.2, 5).astype(float)
    folds = grouped_folds(y, groups, 5, seed=1)
    assert set(folds) == {0, 1, 2, 3, 4}
    assert (np.bincount(groups, weights=folds) / 5 == folds[::5]).all()  # one fold per account
    rates = [y[folds == k].mean() for k in range(5)]
    assert max(rates) - min(rates) < 0.05
    assert set(grouped_folds(y[:40], groups[:40], 5, seed=1)) <= set(range(5))  # few accounts


def test_out_of_fold_scores_never_come_from_a_booster_that_saw_the_account():
    # labels are pure noise per account; a deep booster memorises the accounts it trains on
    rng = np.random.default_rng(3)
    accounts = 600
    groups = np.repeat(np.arange(accounts), 4)
    account_code = rng.normal(size=accounts)
    X = np.column_stack([np.repeat(account_code, 4), rng.normal(size=len(groups))])
    y = np.repeat(rng.random(accounts) < 0.3, 4).astype(float)
    params = {"objective": "binary", "num_leaves": 63, "min_child_samples": 2, "learning_rate": 0.3,
              "num_threads": 1, "verbose": -1, "seed": 1, "deterministic": True}
    config = ModelConfig(target="churn", num_boost_round=60, early_stopping_rounds=60)
    booster, oof, details = crossfit_booster(params, X, y, groups, ["code", "noise"], [], config)
    in_sample = roc_auc_score(y, booster.predict(X, raw_score=True))
    out_of_fold = roc_auc_score(y, oof)
    assert in_sample > 0.7  # the final booster saw every account and memorised them (some)
    assert abs(out_of_fold - 0.5) < 0.08, out_of_fold  # out-of-fold: nothing to memorise
    assert details["folds"] == 5 and len(details["fold_best_iterations"]) == 5
    assert details["rounds"] == int(np.median(details["fold_best_iterations"]))
