"""Refit the champion on all labeled history, after the protocol has measured and chosen.

``churnml.models.train.train_on_dataset`` first runs the honest protocol (fit on the training
window, early stopping and the calibration method chosen on the calibration window, evaluation
on the test window, backtest). That protocol *measures* and *chooses*: the number of boosting
rounds (the early-stopping point) and the calibration method. With ``refit: enabled`` (the
default) the model that is registered is then fitted again here, on every labeled observation
of the dataset (as_of up to ``data_end - horizon``, the gap rows included):

- the booster with the chosen number of rounds (:func:`refit_rounds`, rule ``refit.rounds``:
  by default the protocol's early-stopping point as it is);
- the calibrator of the chosen method, fitted by **cross-fitting grouped by account**: accounts
  are dealt into K folds (:func:`account_folds`); for each fold a booster with the same
  parameters and rounds is fitted on the other K-1 folds and predicts the raw probabilities of
  the held-out fold; the calibrator is fitted on these out-of-fold scores. No row is calibrated
  by a booster that saw it (nor any other row of its account).

The refit has no held-out test of its own: the protocol's metrics are its evidence
(``docs/models.md``, "Refit on the latest history").
"""

from __future__ import annotations

import time
from typing import Any, Callable, cast

import numpy as np
import pandas as pd

from churnml.models.calibration import Calibrator, sigmoid
from churnml.models.config import REFIT_ROUND_RULES
from churnml.models.model import FeatureEncoder, TargetModel
from churnml.models.recency import recency_weights

#: how the protocol's early-stopping point becomes the refit's number of rounds
ROUND_RULES = REFIT_ROUND_RULES


def refit_rounds(best_iteration: int, protocol_rows: int, all_rows: int, rule: str = "same",
                 cap: int | None = None) -> int:
    """Rounds for the refit: the protocol's ``best_iteration`` times ``growth ** p`` where
    ``growth = all_rows / protocol_rows`` (never below 1) and p = 0 (``same``), 0.5 (``sqrt``)
    or 1 (``linear``); at most ``cap`` (the config's ``num_boost_round``) and at least 1.

    With a fixed learning rate and leaf-size limit, more rows make each tree's leaves less
    noisy, so the early-stopping point could move later with the data (linear is the common
    "rounds x (1 + 1/(K-1))" rule of a K-fold refit, sqrt a cautious middle). Measured on
    eight forward tests (``docs/models.md``) neither beat ``same``, the default.
    """
    if rule not in ROUND_RULES:
        raise ValueError(f"rule must be one of {list(ROUND_RULES)}, got {rule!r}")
    growth = max(1.0, all_rows / max(protocol_rows, 1))
    power = {"same": 0.0, "sqrt": 0.5, "linear": 1.0}[rule]
    rounds = int(round(best_iteration * growth ** power))
    if cap is not None:
        rounds = min(rounds, int(cap))
    return max(1, rounds)


def account_folds(account_ids, k: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..k-1) of every row, the same for all rows of an account: accounts are
    shuffled (seeded) and dealt round-robin, so folds differ by at most one account."""
    uniques, inverse = np.unique(np.asarray(account_ids).astype(str), return_inverse=True)
    if len(uniques) < k:
        raise ValueError(f"cross-fitting needs at least {k} accounts, got {len(uniques)}")
    rng = np.random.default_rng(seed)
    fold_of_account = rng.permutation(len(uniques)) % k
    return fold_of_account[inverse]


def fit_booster(X: np.ndarray, y: np.ndarray, names: list[str], cat_idx: list[int],
                params: dict, rounds: int, weight: np.ndarray | None = None):
    """LightGBM with a fixed number of rounds (no validation set: the refit chooses nothing);
    ``weight``: one per row of ``X`` (recency weights), None = unweighted."""
    return fit_on_rows(binned_dataset(X, y, names, cat_idx, params), None, params, rounds,
                       weight=weight)


def binned_dataset(X: np.ndarray, y: np.ndarray, names: list[str], cat_idx: list[int], params: dict):
    """``X`` binned once by LightGBM (constructed now), for :func:`fit_on_rows`: the refit's
    booster and every fold booster of :func:`crossfit_raw` train on this one binned copy
    instead of re-binning their rows (``Dataset.subset`` shares the bin boundaries; they are
    computed from the feature values alone, never from a label, so no fold learns anything
    about its held-out rows from them). The raw matrix is not kept by LightGBM."""
    import lightgbm as lgb

    return lgb.Dataset(X, y, feature_name=names, categorical_feature=cat_idx, params=dict(params),
                       free_raw_data=True).construct()


def fit_on_rows(data, rows: np.ndarray | None, params: dict, rounds: int,
                weight: np.ndarray | None = None):
    """LightGBM with a fixed number of rounds on the rows ``rows`` (positions, ``None`` for
    all) of the binned ``data`` (:func:`binned_dataset`).

    ``weight``: one per fitted row, in the order of the sorted ``rows`` (recency weights,
    :mod:`churnml.models.recency`); None = unweighted. With ``rows=None`` it is set on
    ``data`` itself, so the subsets taken later inherit it until they are given their own."""
    import lightgbm as lgb

    if rows is None:
        train = data
        if weight is not None:
            train.set_weight(weight)
    else:
        # a sorted list of Python ints: Dataset.subset sorts what it gets, and sorting numpy
        # scalars one by one costs seconds on millions of rows
        train = data.subset(np.sort(np.asarray(rows)).tolist())
        if weight is not None:
            # a subset takes its parent's weights when it is constructed and ignores a weight
            # given before (LightGBM 4.7), so it is constructed first; set_field, not
            # set_weight: set_weight drops weights that are all 1, which would leave the
            # parent's in place
            train.construct().set_field("weight", np.asarray(weight, dtype=np.float32))
    booster = lgb.train(params, train, num_boost_round=rounds, keep_training_booster=False)
    if rows is not None:
        train._free_handle()  # the fold's binned copy; the parent stays
    return booster


#: rows per block when the cross-fitted calibrator's held-out rows are encoded and scored
#: (:func:`crossfit_raw` with ``matrix_of``): the full float64 matrix is not kept for them
PREDICT_CHUNK_ROWS = 250_000


def blockwise_matrix(matrix_of: Callable[[Any], np.ndarray], n_rows: int, n_features: int,
                     block_rows: int | None = None) -> np.ndarray:
    """The (n_rows, n_features) float64 matrix filled in blocks of ``block_rows`` rows
    (default :data:`PREDICT_CHUNK_ROWS`) by ``matrix_of(slice)``: the encoder's transient
    copies (the frame's float block, the rows' columns) are one block's, not the whole
    book's beside the result (the values are the same: each row is encoded on its own)."""
    step = max(1, int(block_rows or PREDICT_CHUNK_ROWS))
    X = np.empty((n_rows, n_features), dtype="float64")
    for start in range(0, n_rows, step):
        X[start:start + step] = matrix_of(slice(start, start + step))
    return X


def crossfit_raw(X: np.ndarray | None, y: np.ndarray, folds: np.ndarray, names: list[str],
                 cat_idx: list[int], params: dict, rounds: int, data=None,
                 matrix_of: Callable[[slice], np.ndarray] | None = None,
                 as_of: np.ndarray | None = None,
                 half_life_days: float | None = None) -> np.ndarray:
    """Out-of-fold raw probabilities: row i is predicted by the booster fitted on every fold
    but ``folds[i]`` (:func:`account_folds` keeps an account in one fold). ``data``: ``X``
    and ``y`` already binned (:func:`binned_dataset`), else they are binned here once.

    ``matrix_of``: instead of ``X``, a function giving the matrix of the rows of a slice
    (``X[rows]``); the rows are then encoded and scored in contiguous blocks of
    :data:`PREDICT_CHUNK_ROWS`, each row by its fold's booster, so the full matrix need not
    stay alive beside the binned copy (a booster scores each row on its own, so the scores
    are the same).

    ``as_of`` and ``half_life_days``: each fold's booster weighs its rows by recency from the
    latest as_of among them (:mod:`churnml.models.recency`); ``half_life_days=None``: unweighted.
    The calibrator fitted on these scores is not weighted (it judges the rows as they are)."""
    if half_life_days is not None and as_of is None:
        raise ValueError("recency weights need each row's as_of")
    if matrix_of is None:
        if X is None:
            raise ValueError("crossfit_raw needs X or matrix_of")
        full = X

        def matrix_of(rows: slice) -> np.ndarray:
            return full[rows]
        chunk = max(len(y), 1)
    else:
        chunk = PREDICT_CHUNK_ROWS
    if data is None:
        if X is None:
            raise ValueError("crossfit_raw needs X or an already binned data")
        data = binned_dataset(X, y, names, cat_idx, params)
    # every fold's booster first (a few hundred trees each: small), then the rows encoded once,
    # in contiguous blocks, each row scored by its own fold's booster. Encoding each fold's
    # held-out rows apart took the same rows from all over the frame (a pandas take per
    # block, 3x the time of contiguous slices on the 20,000-account book: benchmarks/README.md,
    # "Session 9"); a booster scores each row on its own, so the scores are the same.
    keys = np.unique(folds)
    fold_rows = [np.flatnonzero(folds != k) for k in keys]  # sorted, as fit_on_rows wants
    boosters = [fit_on_rows(data, rows, params, rounds,
                            weight=None if as_of is None else recency_weights(as_of[rows],
                                                                              half_life_days))
                for rows in fold_rows]
    raw = np.full(len(y), np.nan)
    for start in range(0, len(y), chunk):
        block = slice(start, min(start + chunk, len(y)))
        X_block = matrix_of(block)
        fold_of = folds[block]
        for k, booster in zip(keys, boosters):
            mine = fold_of == k
            if mine.any():
                raw[start + np.flatnonzero(mine)] = sigmoid(cast(np.ndarray, booster.predict(
                    X_block[mine], raw_score=True)))
        del X_block
    return raw


def refit_model(dataset, config, protocol: TargetModel, monotone: list[int],
                monotone_dropped: dict[str, str] | None = None) -> tuple[TargetModel, dict[str, Any]]:
    """The champion: ``protocol``'s features, parameters, chosen rounds (scaled) and
    calibration method, fitted on every row of ``dataset.frame`` (module docstring).

    ``monotone``: the constraint per feature for the refit's rows (the caller checks the
    catalog directions against all rows, as the protocol did on its training window).
    Returns the model and the refit details (also stored in ``model.info["refit"]``).
    """
    frame = dataset.frame
    names, categorical = list(protocol.feature_names), [c for c in protocol.feature_names
                                                         if c in protocol.categories]
    clock = time.perf_counter()
    categories = {c: sorted(str(v) for v in frame[c].dropna().unique()) for c in categorical}
    encoder = FeatureEncoder(names, categories, label=config.target)
    feature_columns = [frame.columns.get_loc(c) for c in names if c in frame.columns]

    def matrix_of(rows) -> np.ndarray:
        return encoder.matrix(frame.iloc[rows, feature_columns])

    X = blockwise_matrix(matrix_of, len(frame), len(names))
    y = frame["label"].to_numpy(dtype="float64")
    cat_idx = [names.index(c) for c in categorical]
    params = dict(config.lgb_params)
    params.setdefault("objective", "binary")
    params.setdefault("verbose", -1)
    params.pop("monotone_constraints", None)
    if any(monotone):
        params["monotone_constraints"] = list(monotone)
    best = int(protocol.info.get("best_iteration") or protocol.booster.current_iteration())
    protocol_rows = int((frame["window"] == "train").sum())
    rounds = refit_rounds(best, protocol_rows, len(frame), config.refit_rounds,
                          cap=config.num_boost_round)
    # what the model keeps of the matrix, taken before the matrix is dropped
    feature_medians = {n: float(np.nanmedian(X[:, j])) if np.isfinite(X[:, j]).any() else 0.0
                       for j, n in enumerate(names) if n not in categories}
    data = binned_dataset(X, y, names, cat_idx, params)  # once, for the champion and the folds
    # the float64 matrix of every labeled row is not needed beside LightGBM's binned copy (the
    # cross-fitted calibrator's held-out rows are encoded again in blocks): the refit's peak
    # memory was the two side by side (docs/models.md, "Session 6, refit memory")
    del X
    # recency weights from the latest labeled as_of (None when off: unweighted, as before)
    as_of = frame["as_of"].to_numpy()
    half_life = config.recency_half_life_days
    booster = fit_on_rows(data, None, params, rounds, weight=recency_weights(as_of, half_life))
    fit_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    folds = account_folds(frame["account_id"].to_numpy(), config.refit_calibration_folds, config.seed)
    oof = crossfit_raw(None, y, folds, names, cat_idx, params, rounds, data=data, matrix_of=matrix_of,
                       as_of=as_of, half_life_days=half_life)
    del data
    # unweighted, whatever the recency weights: the calibrator maps scores to the rate at which
    # they come true and judges the rows as they are (weights only steer what the trees learn)
    calibrator = Calibrator(protocol.calibrator.method).fit(oof, y)
    crossfit_seconds = time.perf_counter() - clock
    train_end = pd.Timestamp(frame["as_of"].max()).date().isoformat()
    details = {
        "train_start": pd.Timestamp(frame["as_of"].min()).date().isoformat(),
        "train_end": train_end,
        "rows": int(len(frame)),
        "positives": int(y.sum()),
        "accounts": int(frame["account_id"].nunique()),
        "protocol_rows": protocol_rows,
        "protocol_best_iteration": best,
        "rounds": int(rounds),
        "rounds_rule": config.refit_rounds,
        "calibration": calibrator.method,
        "calibration_folds": int(config.refit_calibration_folds),
        "recency_half_life_days": half_life,
        "fit_seconds": fit_seconds,
        "crossfit_seconds": crossfit_seconds,
    }
    info = dict(protocol.info)
    info.update({
        "refit": details,
        "train_end": train_end,
        "monotone_constraints": {n: d for n, d in zip(names, monotone) if d},
        "monotone_dropped": dict(monotone_dropped or {}),
        "feature_medians": feature_medians,
        "category_modes": {c: str(frame[c].mode(dropna=True).iloc[0]) for c in categorical
                           if frame[c].notna().any()},
    })
    model = TargetModel(booster, names, categories, calibrator, protocol.specs, protocol.config,
                        protocol.health_config, info)
    return model, details
