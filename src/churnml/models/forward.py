"""Forward test of the refit: does refitting on the latest history help on later weeks?

:func:`forward_test` holds back the last horizon of labeled as_of dates of a dataset (the
*forward* window), trains on what a book cut at the first forward date would have labeled
(as_of up to one horizon before it, so no label window reaches the forward window), and scores
the forward rows with both the train-window (protocol) model and the refitted champion.
ROC AUC with bootstrap intervals (resampling accounts), the paired difference, calibration,
and what each rounds rule (``refit.rounds``) would have given in ranking.

Example (``benchmarks/refit_forward.py`` is the script behind ``docs/models.md``)::

    from churnml.models.forward import forward_test
    report = forward_test(dataset, config, catalog=catalog, truth=truth)
    report["refit"]["roc_auc"], report["protocol"]["roc_auc"], report["difference"]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churnml.models import metrics as M
from churnml.models.config import ModelConfig
from churnml.models.dataset import Dataset, check_windows, select_features, time_split


def truncated(dataset: Dataset, last_as_of, config: ModelConfig) -> Dataset:
    """The observations with as_of up to ``last_as_of``, split afresh (:func:`time_split`)
    and with the features re-selected on the new training window, as ``build_dataset`` does
    on a book whose latest labeled date is ``last_as_of``."""
    frame = dataset.frame[dataset.frame["as_of"] <= pd.Timestamp(last_as_of)].copy()
    split = time_split(sorted(frame["as_of"].unique()), config)
    frame["window"] = split.window_of(frame["as_of"]).to_numpy()
    check_windows(frame, config)
    names, categorical, dropped = select_features(frame, dataset.feature_names,
                                                  frame["window"] == "train")
    frame = frame.reset_index(drop=True)
    return Dataset(frame, names, categorical, split, dataset.target,
                   {**dataset.dropped_features, **dropped})


def paired_auc_difference(y, a, b, accounts, resamples: int = 200, seed: int = 0,
                          level: float = 0.95) -> tuple[float, float, float]:
    """AUC(a) - AUC(b) on the same rows and its percentile interval, resampling accounts
    (both scores share every resample, so the interval is the difference's own)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype="float64")
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    point = float(roc_auc_score(y, a) - roc_auc_score(y, b))
    uniques, inverse = np.unique(np.asarray(accounts).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        weight = np.bincount(rng.integers(0, len(uniques), len(uniques)),
                             minlength=len(uniques))[inverse].astype("float64")
        keep = weight > 0
        if y[keep].min() == y[keep].max():
            continue
        values.append(roc_auc_score(y[keep], a[keep], sample_weight=weight[keep])
                      - roc_auc_score(y[keep], b[keep], sample_weight=weight[keep]))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail]) if values else (np.nan, np.nan)
    return point, float(low), float(high)


def _scores(y, p, accounts, config: ModelConfig) -> dict[str, float]:
    low, high = M.bootstrap_auc_interval(y, p, accounts, config.bootstrap_resamples, config.seed)
    m = M.probability_metrics(y, p)
    return {"roc_auc": m["roc_auc"], "roc_auc_ci_low": low, "roc_auc_ci_high": high,
            "ece": m["ece"], "brier": m["brier"], "log_loss": m["log_loss"]}


def forward_test(dataset: Dataset, config: ModelConfig, *, catalog=None, health=None,
                 truth=None, rules: tuple[str, ...] = ("same", "sqrt", "linear")) -> dict[str, Any]:
    """Protocol model vs refitted champion on the last horizon of labeled dates (module
    docstring). Both are trained by ``train_on_dataset`` on the truncated dataset (backtest
    off, refit on with ``config``'s rule); ``rules``: the rounds rules compared in ranking on
    the forward rows (one extra booster with the largest count, read at each rule's count).
    Returns a dict of plain numbers and dates."""
    from churnml.models.recency import recency_weights
    from churnml.models.refit import fit_booster, refit_rounds
    from churnml.models.train import train_on_dataset

    dates = pd.DatetimeIndex(sorted(dataset.frame["as_of"].unique()))
    horizon = pd.Timedelta(days=config.horizon_days)
    forward_dates = dates[dates > dates[-1] - horizon]
    cut = forward_dates[0] - horizon  # a book ending at the first forward date labels up to here
    dev = truncated(dataset, dates[dates <= cut][-1], config)
    run = config.with_overrides(refit=True, backtest_folds=1)
    result = train_on_dataset(dev, run, catalog=catalog, health=health)
    forward = dataset.frame[dataset.frame["as_of"].isin(forward_dates)].reset_index(drop=True)
    y = forward["label"].to_numpy(dtype="float64")
    accounts = forward["account_id"].to_numpy()
    protocol, refit = result.protocol_model, result.model
    assert protocol is not None
    p_protocol, p_refit = protocol.predict_proba(forward), refit.predict_proba(forward)
    diff = paired_auc_difference(y, p_refit, p_protocol, accounts, config.bootstrap_resamples,
                                 config.seed)
    details = result.fit_details["refit"]
    out: dict[str, Any] = {
        "forward_start": forward_dates[0].date().isoformat(),
        "forward_end": forward_dates[-1].date().isoformat(),
        "forward_dates": len(forward_dates), "forward_rows": len(forward),
        "forward_positives": int(y.sum()),
        "split": dev.split.describe(),
        "refit_train_end": details["train_end"], "refit_rows": details["rows"],
        "protocol_train_rows": details["protocol_rows"],
        "protocol_best_iteration": details["protocol_best_iteration"],
        "refit_rounds": details["rounds"], "rounds_rule": details["rounds_rule"],
        "calibration": details["calibration"],
        "protocol_test_roc_auc": result.metrics["test_roc_auc"],
        "protocol": _scores(y, p_protocol, accounts, config),
        "refit": _scores(y, p_refit, accounts, config),
        "difference": {"roc_auc": diff[0], "ci_low": diff[1], "ci_high": diff[2]},
        "timings": {k: v for k, v in result.fit_details["timings"].items()},
    }
    if truth is not None:
        from churnml.models.baselines import oracle_baseline

        op = oracle_baseline(truth, forward, config.horizon_days, config.target)
        ok = np.isfinite(op)
        out["oracle_roc_auc"] = M.roc_auc(y[ok], op[ok])
        out["oracle_coverage"] = float(ok.mean())
    if rules:
        # ranking by rounds rule: one booster with the most rounds, read at each rule's count
        counts = {r: refit_rounds(details["protocol_best_iteration"], details["protocol_rows"],
                                  details["rows"], r, cap=config.num_boost_round) for r in rules}
        names = list(refit.feature_names)
        cat_idx = [names.index(c) for c in names if c in refit.categories]
        params = {**config.lgb_params, "objective": "binary", "verbose": -1}
        if refit.info.get("monotone_constraints"):
            params["monotone_constraints"] = [refit.info["monotone_constraints"].get(n, 0)
                                              for n in names]
        X = refit.matrix(dev.frame)
        booster = fit_booster(X, dev.frame["label"].to_numpy(dtype="float64"), names, cat_idx,
                              params, max(counts.values()),
                              weight=recency_weights(dev.frame["as_of"], config.recency_half_life_days))
        Xf = refit.matrix(forward)
        out["rounds_rules"] = {
            r: {"rounds": n, "roc_auc": M.roc_auc(y, np.asarray(booster.predict(Xf, num_iteration=n)))}
            for r, n in counts.items()}
    return out
