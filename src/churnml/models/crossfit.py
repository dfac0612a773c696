"""Cross-fitting inside one training span: the short and cross-sectional split policies.

Without a separate calibration window (``dataset.choose_split``: a short book, or one date
split across accounts), the number of boosting rounds and the calibrator are chosen inside the
training rows by K-fold cross-fitting, stratified by label and grouped by account (an
account's rows are always on one side):

- each fold's booster is trained on the other folds with early stopping on the fold; its
  raw scores on the fold are that fold's **out-of-fold** predictions;
- the final booster is trained on every training row for the median of the folds' best
  iterations;
- the calibrator is fitted on the out-of-fold predictions, so no row is calibrated by a model
  that saw it (the same idea as scikit-learn's ``CalibratedClassifierCV(ensemble=False)``).

Small training sets (fewer than :data:`SINGLE_THREAD_ROWS`) are fitted on one thread.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from churnml.models.config import ModelConfig
from churnml.models.recency import recency_weights

#: below this many training rows the cross-fitting runs LightGBM on one thread: its fits are
#: small (a snapshot of a few thousand customers) and many (folds + 1, per outer fold), and
#: thread synchronisation costs more than it saves. Measured on the 3,000-customer table of
#: docs/data_contract.md on the shared 2-core machine (load ~5): 33 s on one thread, 226 s on
#: the configured two.
SINGLE_THREAD_ROWS = 20_000


def grouped_folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number of each row: stratified by ``y``, grouped by ``groups`` (sklearn's
    ``StratifiedGroupKFold``, shuffled with ``seed``). Fewer folds when a class has fewer rows
    than ``n_folds`` (at least 2)."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(y) > 0
    k = int(max(2, min(n_folds, y.sum(), (~y).sum(), len(np.unique(groups)))))
    folds = np.full(len(y), -1, dtype=int)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        folds[held] = fold
    return folds


def crossfit_booster(params: dict, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                     names: list[str], cat_idx: list[int], config: ModelConfig,
                     as_of: np.ndarray | None = None) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """The final booster (all rows, the median of the folds' best iterations), the
    out-of-fold raw log-odds of every row, and details (folds, best iterations, rounds).

    ``as_of``: each row's as_of; with ``config.recency_half_life_days`` set, every booster's
    training rows are recency-weighted from the latest as_of among them
    (:mod:`churnml.models.recency`); the held-out rows of early stopping are not."""
    import lightgbm as lgb

    half_life = config.recency_half_life_days
    if half_life is not None and as_of is None:
        raise ValueError("recency weights need each row's as_of")

    def weight_of(rows: np.ndarray) -> np.ndarray | None:
        return None if as_of is None else recency_weights(as_of[rows], half_life)

    if len(y) < SINGLE_THREAD_ROWS:
        params = {**params, "num_threads": 1}
    folds = grouped_folds(y, groups, config.calibration_cv_folds, config.seed)
    oof = np.empty(len(y), dtype="float64")
    best: list[int] = []
    for k in range(int(folds.max()) + 1):
        held = folds == k
        d_fit = lgb.Dataset(X[~held], y[~held], weight=weight_of(~held), feature_name=names,
                            categorical_feature=cat_idx, free_raw_data=True)
        # early stopping judges the held-out rows as they are: unweighted
        d_held = lgb.Dataset(X[held], y[held], reference=d_fit, categorical_feature=cat_idx)
        booster = lgb.train(params, d_fit, num_boost_round=config.num_boost_round,
                            valid_sets=[d_held], valid_names=["held_out"],
                            callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)])
        iteration = int(booster.best_iteration or booster.current_iteration())
        best.append(iteration)
        oof[held] = cast(np.ndarray, booster.predict(X[held], num_iteration=iteration, raw_score=True))
    rounds = max(1, int(np.median(best)))
    d_all = lgb.Dataset(X, y, weight=weight_of(np.ones(len(y), dtype=bool)), feature_name=names,
                        categorical_feature=cat_idx, free_raw_data=True)
    final = lgb.train(params, d_all, num_boost_round=rounds)
    details = {"folds": int(folds.max()) + 1, "fold_best_iterations": best, "rounds": rounds,
               "grouped_by": "account_id", "stratified": True}
    return final, oof, details
