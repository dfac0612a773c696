"""Training and honest evaluation of one target's model (no MLflow here: see ``registry``).

``train_target(book, "churn")`` does the whole job: features and labels on weekly as_of dates,
the time split (``dataset``), LightGBM on the training window with early stopping on the
calibration window, calibration chosen on that window, evaluation on the untouched test
window against the baselines (health score, logistic regression, oracle when the book is
simulated), and a rolling-origin backtest. It returns a :class:`TrainingResult` that
``registry.log_training`` records and registers.

Books too short for that get another split policy (``dataset.choose_split``): ``short`` fits
with :func:`fit_model_crossfit` (rounds and calibrator cross-fitted inside the training
window) and is evaluated on its test window; ``cross_sectional`` is evaluated by K-fold
cross-validation across accounts (:func:`evaluate_cross_sectional`) and the registered model
is fitted on every row.

Example::

    from churnml.models.train import train_target
    result = train_target("data/book", "churn")
    result.metrics["test_roc_auc"], result.model.explain(result.dataset.part("test").head())
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from churnml.errors import InsufficientDataError
from churnml.models import leakage
from churnml.models import metrics as M
from churnml.models.baselines import LogisticBaseline, find_truth, health_baseline, oracle_baseline
from churnml.models.calibration import choose_calibrator, sigmoid
from churnml.models.config import ModelConfig, load_config
from churnml.models.dataset import Dataset, backtest_splits, build_dataset
from churnml.features.catalog import stored_directions
from churnml.models.model import FeatureEncoder, TargetModel, spec_record
from churnml.models.recency import recency_weights
from churnml.models.refit import blockwise_matrix


@dataclass
class TrainingResult:
    """Everything a training run produced.

    ``predictions``: one row per test observation with ``account_id, as_of, label, event_mrr,
    value_tier, probability, raw_probability`` and the baselines' scores
    (``health_score_risk``, ``logreg_probability``, ``oracle_probability``); cross-sectional:
    one out-of-fold row per observation, with its ``fold``.
    ``reliability``: equal-count reliability tables of the test window before (``raw``) and
    after (``calibrated``) calibration. ``backtest``: one row per rolling-origin fold (per
    cross-validation fold when cross-sectional).

    ``model`` is the model to register: with ``refit`` (default) and a time or short split, the
    champion refitted on every labeled date (``churnml.models.refit``); a cross-sectional run's
    model is already fitted on every row. ``protocol_model`` is the model that ``metrics``,
    ``predictions`` and ``backtest`` fold 1 describe (the train-window model of a split).
    """

    model: TargetModel
    config: ModelConfig
    dataset: Dataset
    metrics: dict[str, float]
    predictions: pd.DataFrame
    reliability: dict[str, pd.DataFrame]
    backtest: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    fit_details: dict[str, Any] = field(default_factory=dict)
    #: the train-window model the metrics describe (``model`` itself when there is no refit)
    protocol_model: TargetModel | None = None

    @property
    def split(self):
        return self.dataset.split

    @property
    def train_end(self) -> str | None:
        """Last as_of date the registered model was fitted on (ISO): the last labeled date
        with the refit, else the end of the calibration window."""
        return self.model.info.get("train_end")

    def comparison(self) -> pd.DataFrame:
        """Model vs baselines on the test window: one row per scorer (NaN = not meaningful)."""
        m = self.metrics
        rows = [
            ("model (LightGBM, calibrated)", m.get("test_roc_auc"), m.get("test_pr_auc"),
             m.get("test_lift_top_decile"), m.get("test_brier"), m.get("test_ece")),
            ("health score", m.get("health_test_roc_auc"), m.get("health_test_pr_auc"),
             m.get("health_test_lift_top_decile"), np.nan, np.nan),
            ("logistic regression", m.get("logreg_test_roc_auc"), m.get("logreg_test_pr_auc"),
             m.get("logreg_test_lift_top_decile"), m.get("logreg_test_brier"), m.get("logreg_test_ece")),
        ]
        if "oracle_test_roc_auc" in m:
            rows.append(("oracle (simulator truth)", m.get("oracle_test_roc_auc"), m.get("oracle_test_pr_auc"),
                         m.get("oracle_test_lift_top_decile"), m.get("oracle_test_brier"),
                         m.get("oracle_test_ece")))
        return pd.DataFrame(rows, columns=["scorer", "roc_auc", "pr_auc", "lift_top_decile", "brier", "ece"])


def spearman_with_label(x, label) -> float:
    """Spearman correlation of ``x`` and ``label`` over the rows where ``x`` is not missing
    (average ranks for ties); 0.0 when fewer than 3 such rows, or ``x`` or the label takes one
    value there.

    A binary 0/1 label (every outcome's) takes the fast path: the Pearson correlation of the
    ranks of ``x`` with the label itself (a correlation does not change when the label's two
    values are replaced by their ranks), from one ``np.sort`` of ``x``: tie groups give the
    ranks' spread, a binary search gives the positives' ranks. ``pandas.Series.rank`` of
    every feature cost about 0.5 s a million rows, called for each feature of each fit (the
    protocol, two backtest folds, the refit). Any other label: ``pandas.Series.rank`` and
    ``np.corrcoef``. The two agree to rounding (``tests/unit/test_train.py``)."""
    x = pd.to_numeric(pd.Series(x), errors="coerce").to_numpy(dtype="float64")
    y = np.asarray(label, dtype="float64")
    ok = ~np.isnan(x)
    binary = bool(np.isin(y, (0.0, 1.0)).all())
    if not binary:  # the plain path
        xs, label_rank = pd.Series(x), pd.Series(y).rank()
        if ok.sum() > 2 and xs[ok].nunique() > 1 and label_rank[ok].nunique() > 1:
            return float(np.corrcoef(xs[ok].rank(), label_rank[ok])[0, 1])
        return 0.0
    xo, positive = x[ok], y[ok] == 1.0
    n, n1 = len(xo), int(positive.sum())
    if n <= 2 or n1 == 0 or n1 == n:
        return 0.0
    ordered = np.sort(xo)
    if ordered[0] == ordered[-1]:
        return 0.0
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, n])
    centre = (n + 1) / 2.0
    # 1-based average rank of a tie group starting at (0-based) s with c members: s + (c + 1) / 2
    spread = float(np.sum(counts * (starts + (counts + 1) / 2.0 - centre) ** 2))
    values = xo[positive]
    ranks = (np.searchsorted(ordered, values, "left") + np.searchsorted(ordered, values, "right")
             + 1) / 2.0
    cross = float(np.sum(ranks - centre))
    label_spread = n1 - n1 * n1 / n
    return cross / np.sqrt(spread * label_spread)


def monotone_directions(train: pd.DataFrame, names: list[str], categorical: list[str], specs: dict[str, dict],
                        target: str, tolerance: float) -> tuple[list[int], dict[str, str]]:
    """Monotone constraint per feature from the catalog's expected direction for ``target``,
    kept only where the training data does not contradict it: the Spearman correlation of
    feature and label (non-missing rows, :func:`spearman_with_label`) must not have the
    opposite sign beyond ``tolerance``. Returns the constraint list and a note per dropped
    direction."""
    constraints, dropped = [], {}
    label = train["label"].to_numpy(dtype="float64")
    for name in names:
        direction = stored_directions(specs.get(name, {})).get(target, 0)
        if direction == 0 or name in categorical:
            constraints.append(0)
            continue
        corr = spearman_with_label(train[name], label)
        if np.isfinite(corr) and corr * direction < -tolerance:
            dropped[name] = f"catalog direction {direction:+d} contradicted (Spearman {corr:+.3f})"
            constraints.append(0)
        else:
            constraints.append(direction)
    return constraints, dropped


def _specs_for(names: list[str], categorical: list[str], catalog) -> dict[str, dict]:
    from churnml.features.catalog import static_attribute_spec

    out = {}
    for name in names:
        kind = "categorical" if name in categorical else "numeric"
        spec = catalog.get(name) if catalog is not None else None
        out[name] = spec_record(spec if spec is not None else static_attribute_spec(name, kind))
    return out


def _setup(dataset: Dataset, config: ModelConfig, catalog, train: pd.DataFrame) -> dict[str, Any]:
    """What every fit needs from the training rows: categories, feature specs, LightGBM
    parameters with the monotone constraints the data does not contradict, the encoder."""
    names, categorical = dataset.feature_names, dataset.categorical
    categories = {
        c: sorted(str(v) for v in train[c].dropna().unique()) for c in categorical
    }
    specs = _specs_for(names, categorical, catalog)
    params = dict(config.lgb_params)
    params.setdefault("objective", "binary")
    params.setdefault("verbose", -1)
    monotone: list[int]
    monotone_dropped: dict[str, str]
    monotone, monotone_dropped = ([0] * len(names), {})
    if config.monotone_from_catalog:
        monotone, monotone_dropped = monotone_directions(
            train, names, categorical, specs, config.target, config.monotone_tolerance)
    if any(monotone):
        params["monotone_constraints"] = monotone
    return {"names": names, "categorical": categorical, "categories": categories, "specs": specs,
            "params": params, "monotone": monotone, "monotone_dropped": monotone_dropped,
            "cat_idx": [names.index(c) for c in categorical],
            "encoder": FeatureEncoder(names, categories, label=config.target)}  # the scorer's


def _info(setup: dict, best: int, dataset: Dataset, calibrator, cv_scores: dict,
          train: pd.DataFrame, X_train: np.ndarray) -> dict[str, Any]:
    import lightgbm as lgb

    names, categories, categorical = setup["names"], setup["categories"], setup["categorical"]
    return {
        "best_iteration": int(best),
        "lightgbm_version": lgb.__version__,
        "split": dataset.split.describe(),
        "monotone_constraints": {n: d for n, d in zip(names, setup["monotone"]) if d},
        "monotone_dropped": setup["monotone_dropped"],
        "calibration": calibrator.method,
        "calibration_cv": cv_scores,
        "dropped_features": dataset.dropped_features,
        # for the synthetic input example logged with the model (no real row is ever logged)
        "feature_medians": {n: float(np.nanmedian(X_train[:, j])) if np.isfinite(X_train[:, j]).any() else 0.0
                            for j, n in enumerate(names) if n not in categories},
        "category_modes": {c: str(train[c].mode(dropna=True).iloc[0]) for c in categorical
                           if train[c].notna().any()},
    }


def _encoded(encoder: FeatureEncoder, rows: pd.DataFrame, n_features: int) -> np.ndarray:
    """``encoder.matrix(rows)``, built in blocks of rows (the same values)."""
    def matrix_of(block: slice) -> np.ndarray:
        return encoder.matrix(rows.iloc[block])

    return blockwise_matrix(matrix_of, len(rows), n_features)


def fit_model(dataset: Dataset, config: ModelConfig, catalog=None, health_config: dict | None = None) -> tuple[TargetModel, dict]:
    """Fit LightGBM on the training window (early stopping on the calibration window) and the
    calibrator on the calibration window. Returns the model and fit details (best iteration,
    monotone constraints used and dropped, calibration choice)."""
    import lightgbm as lgb

    train, cal = dataset.part("train"), dataset.part("calibration")
    setup = _setup(dataset, config, catalog, train)
    names, params, cat_idx, encoder = setup["names"], setup["params"], setup["cat_idx"], setup["encoder"]
    # in blocks of rows: the encoder's float copy of a whole window (0.7 GB of training rows at
    # 50,000 accounts) would sit beside the matrix at the run's memory peak (same values)
    X_train, X_cal = (_encoded(encoder, part, len(names)) for part in (train, cal))
    y_train, y_cal = train["label"].to_numpy(), cal["label"].to_numpy()
    # recency weights (None when off: the Dataset is built as before, the same booster)
    weight = recency_weights(train["as_of"], config.recency_half_life_days)
    d_train = lgb.Dataset(X_train, y_train, weight=weight, feature_name=names,
                          categorical_feature=cat_idx, free_raw_data=True)
    # early stopping judges the calibration window's rows as they are: unweighted, like the
    # calibrator fitted on them below and every metric
    d_cal = lgb.Dataset(X_cal, y_cal, reference=d_train, categorical_feature=cat_idx)
    booster = lgb.train(
        params, d_train, num_boost_round=config.num_boost_round, valid_sets=[d_cal], valid_names=["calibration"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    # Keep only the trees up to the early-stopping point: smaller, faster TreeSHAP.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    # cast: lightgbm annotates predict for every mode (sparse contributions are a list of
    # matrices); the raw scores of a dense matrix are an ndarray
    raw_cal = sigmoid(cast(np.ndarray, booster.predict(X_cal, raw_score=True)))
    calibrator, cv_scores = choose_calibrator(
        raw_cal, y_cal, cal["account_id"].to_numpy(), config.calibration_method,
        config.calibration_cv_folds, config.seed)
    info = _info(setup, best, dataset, calibrator, cv_scores, train, X_train)
    model = TargetModel(booster, names, setup["categories"], calibrator, setup["specs"], config.to_dict(),
                        health_config, info)
    return model, info


def fit_model_crossfit(dataset: Dataset, config: ModelConfig, catalog=None,
                       health_config: dict | None = None) -> tuple[TargetModel, dict]:
    """Fit on the training window alone (short and cross-sectional policies: no calibration
    window): rounds and calibrator by account-grouped cross-fitting inside it
    (:mod:`churnml.models.crossfit`). Same return as :func:`fit_model`; the details add
    ``crossfit`` (folds, each fold's best iteration, the rounds kept)."""
    from churnml.models.crossfit import crossfit_booster

    train = dataset.part("train")
    setup = _setup(dataset, config, catalog, train)
    X_train = setup["encoder"].matrix(train)
    y = train["label"].to_numpy(dtype="float64")
    groups = train["account_id"].to_numpy()
    booster, oof, details = crossfit_booster(setup["params"], X_train, y, groups, setup["names"],
                                             setup["cat_idx"], config,
                                             as_of=train["as_of"].to_numpy())
    calibrator, cv_scores = choose_calibrator(sigmoid(oof), y, groups, config.calibration_method,
                                              config.calibration_cv_folds, config.seed)
    info = _info(setup, details["rounds"], dataset, calibrator, cv_scores, train, X_train)
    info["crossfit"] = details
    info["calibration_fitted_on"] = (f"out-of-fold predictions of {details['folds']} account-grouped "
                                     f"folds of the training rows")
    model = TargetModel(booster, setup["names"], setup["categories"], calibrator, setup["specs"],
                        config.to_dict(), health_config, info)
    return model, info


def fit_for_policy(dataset: Dataset, config: ModelConfig, catalog=None,
                   health_config: dict | None = None) -> tuple[TargetModel, dict]:
    """:func:`fit_model` under the time policy, :func:`fit_model_crossfit` otherwise."""
    if dataset.split.policy == "time":
        return fit_model(dataset, config, catalog, health_config)
    return fit_model_crossfit(dataset, config, catalog, health_config)


def _baseline_health(health):
    if health is None:
        from churnml.health.score import HealthScore

        health = HealthScore()
    return health


def evaluate(model: TargetModel, dataset: Dataset, config: ModelConfig, *, health=None, truth=None,
             logreg: bool = True, bootstrap: bool = True) -> tuple[dict[str, float], pd.DataFrame, dict]:
    """Metrics of ``model`` and the baselines on the test window of ``dataset``'s split.

    Returns ``(metrics, predictions, reliability)`` (see :class:`TrainingResult`).
    """
    test = dataset.part("test").reset_index(drop=True)
    y = test["label"].to_numpy(dtype="float64")
    event_mrr = test["event_mrr"].to_numpy(dtype="float64")
    raw = sigmoid(model.raw_log_odds(test))
    proba = model.calibrator.transform(raw)
    metrics: dict[str, float] = {f"test_{k}": v for k, v in M.probability_metrics(y, proba, event_mrr).items()}
    for k, v in M.probability_metrics(y, raw).items():
        if k in ("brier", "log_loss", "ece"):
            metrics[f"test_{k}_uncalibrated"] = v
    if bootstrap:
        low, high = M.bootstrap_auc_interval(y, proba, test["account_id"], config.bootstrap_resamples, config.seed)
        metrics["test_roc_auc_ci_low"], metrics["test_roc_auc_ci_high"] = low, high
    predictions = test[["account_id", "as_of", "label", "event_mrr"]].copy()
    predictions["value_tier"] = test["value_tier"].astype("object") if "value_tier" in test.columns else None
    predictions["probability"], predictions["raw_probability"] = proba, raw
    if "value_tier" in test.columns:
        for tier, auc in M.auc_by_group(y, proba, test["value_tier"]).items():
            metrics[f"test_roc_auc_value_tier_{tier}"] = auc
    health = _baseline_health(health)
    hs = health_baseline(test, config.target, health)
    predictions["health_score_risk"] = hs
    metrics.update({f"health_test_{k}": v for k, v in M.ranking_metrics(y, hs, event_mrr).items()})
    if logreg:
        train = dataset.part("train")
        numeric = [c for c in dataset.feature_names if c not in dataset.categorical]
        lr = LogisticBaseline(numeric, dataset.categorical, max_rows=config.logreg_max_rows,
                                seed=config.seed).fit(train, train["label"])
        lp = lr.predict_proba(test)
        predictions["logreg_probability"] = lp
        metrics.update({f"logreg_test_{k}": v for k, v in M.probability_metrics(y, lp, event_mrr).items()})
        metrics["logreg_fit_rows"] = float(lr.fit_rows_)  # below the training rows: a sample
    if truth is not None:
        op = oracle_baseline(truth, test, config.horizon_days, config.target)
        predictions["oracle_probability"] = op
        # The oracle is undefined (NaN) where the simulator has no state the day before as_of.
        ok = np.isfinite(op)
        metrics["oracle_test_coverage"] = float(ok.mean())
        metrics.update({f"oracle_test_{k}": v
                        for k, v in M.probability_metrics(y[ok], op[ok], event_mrr[ok]).items()})
    reliability = {"raw": M.reliability_table(y, raw), "calibrated": M.reliability_table(y, proba)}
    return metrics, predictions, reliability


def run_backtest(dataset: Dataset, config: ModelConfig, main_model: TargetModel, main_metrics: dict,
                 catalog=None, health=None, progress=None) -> tuple[pd.DataFrame, list[str]]:
    """Rolling-origin backtest: fold 1 is the main split; each further fold moves all windows
    back by one test span and refits. One row per fold."""
    dates = pd.DatetimeIndex(sorted(dataset.frame["as_of"].unique()))
    if dataset.split.policy == "time":
        splits, notes = backtest_splits(dates, config, dataset.split)
    else:  # the short policy: the book has no room for earlier test windows
        splits, notes = [dataset.split], [
            f"backtest: one fold (the main split) under the {dataset.split.policy} policy"]
    rows = []
    for k, split in enumerate(splits, start=1):
        if k == 1:
            fold_metrics, model = main_metrics, main_model
        else:
            if progress is not None:
                progress.note(f"backtest fold {k} of {len(splits)}")
            try:
                fold = dataset.refold(split, config)
            except InsufficientDataError as exc:
                notes.append(f"backtest: fold {k} left out: {exc}")
                break
            model, _ = fit_for_policy(fold, config, catalog, main_model.health_config)
            fold_metrics, _, _ = evaluate(model, fold, config, health=health, logreg=False, bootstrap=False)
        part = split.describe()
        rows.append({
            "fold": k, **{f: part[f] for f in ("train_start", "train_end", "calibration_start",
                                              "calibration_end", "test_start", "test_end")},
            "best_iteration": model.info.get("best_iteration"),
            "calibration": model.calibrator.method,
            "roc_auc": fold_metrics["test_roc_auc"], "pr_auc": fold_metrics["test_pr_auc"],
            "ece": fold_metrics["test_ece"], "brier": fold_metrics["test_brier"],
            "health_roc_auc": fold_metrics["health_test_roc_auc"],
        })
        if progress is not None:
            progress.advance()
    return pd.DataFrame(rows), notes


def evaluate_cross_sectional(dataset: Dataset, config: ModelConfig, *, catalog=None, health=None,
                             truth=None, health_config: dict | None = None, progress=None
                             ) -> tuple[dict[str, float], pd.DataFrame, dict, pd.DataFrame]:
    """Cross-sectional policy: stratified, account-grouped K-fold cross-validation at the one
    date (``dataset.frame["fold"]``). Each fold's model (:func:`fit_model_crossfit`) and the
    logistic regression are fitted on the other folds and scored with the health score (and
    the oracle) on the fold. Metrics are the fold means under the names of a time split
    (``test_roc_auc``, ``logreg_test_roc_auc``, ...) plus their spread (``<name>_std``); the
    ROC AUC interval is bootstrapped (by account) on the pooled out-of-fold predictions.
    Returns ``(metrics, out-of-fold predictions, reliability, one row per fold)``."""
    frame = dataset.frame
    folds = frame["fold"].to_numpy()
    per_fold, predictions, rows = [], [], []
    n_folds = int(folds.max()) + 1
    for k in range(n_folds):
        if progress is not None:
            progress.note(f"{config.target}: cross-validation fold {k + 1} of {n_folds}")
        fold_frame = frame.copy()
        fold_frame["window"] = np.where(folds == k, "test", "train")
        fold = Dataset(fold_frame, dataset.feature_names, dataset.categorical, dataset.split,
                       dataset.target, dataset.dropped_features)
        model, _ = fit_model_crossfit(fold, config, catalog, health_config)
        fold_metrics, fold_predictions, _ = evaluate(model, fold, config, health=health, truth=truth,
                                                     bootstrap=False)
        per_fold.append(fold_metrics)
        predictions.append(fold_predictions.assign(fold=k + 1))
        date = dataset.split.train[0].date().isoformat()
        rows.append({"fold": k + 1, "train_start": date, "train_end": date, "calibration_start": "",
                     "calibration_end": "", "test_start": date, "test_end": date,
                     "best_iteration": model.info.get("best_iteration"),
                     "calibration": model.calibrator.method,
                     "roc_auc": fold_metrics["test_roc_auc"], "pr_auc": fold_metrics["test_pr_auc"],
                     "ece": fold_metrics["test_ece"], "brier": fold_metrics["test_brier"],
                     "health_roc_auc": fold_metrics["health_test_roc_auc"],
                     "logreg_roc_auc": fold_metrics.get("logreg_test_roc_auc", np.nan),
                     "logreg_brier": fold_metrics.get("logreg_test_brier", np.nan)})
    table = pd.DataFrame(per_fold)
    metrics = {k: float(table[k].mean()) for k in table.columns}
    metrics.update({f"{k}_std": float(table[k].std(ddof=0)) for k in table.columns})
    pooled = pd.concat(predictions, ignore_index=True)
    y = pooled["label"].to_numpy(dtype="float64")
    proba = pooled["probability"].to_numpy(dtype="float64")
    if config.bootstrap_resamples:
        low, high = M.bootstrap_auc_interval(y, proba, pooled["account_id"], config.bootstrap_resamples,
                                             config.seed)
        metrics["test_roc_auc_ci_low"], metrics["test_roc_auc_ci_high"] = low, high
    metrics["cv_folds"] = float(n_folds)
    reliability = {"raw": M.reliability_table(y, pooled["raw_probability"].to_numpy(dtype="float64")),
                   "calibrated": M.reliability_table(y, proba)}
    return metrics, pooled, reliability, pd.DataFrame(rows)


def train_on_dataset(dataset: Dataset, config: ModelConfig, *, catalog=None, health=None, truth=None,
                     progress=None) -> TrainingResult:
    """Fit, evaluate against the baselines and backtest on an already assembled dataset.

    The split policy (``dataset.split.policy``) decides how: ``time`` as always; ``short`` with
    rounds and calibrator cross-fitted inside the training window; ``cross_sectional`` by
    K-fold cross-validation across accounts (:func:`evaluate_cross_sectional`; ``backtest``
    then has one row per fold) and a final model fitted on every row."""
    health = _baseline_health(health)
    health_config = health.active_config.to_dict() if hasattr(health, "active_config") else None
    policy = dataset.split.policy
    notes: list[str] = []
    timings: dict[str, float] = {}
    if policy == "cross_sectional":
        clock = time.perf_counter()
        metrics, predictions, reliability, backtest = evaluate_cross_sectional(
            dataset, config, catalog=catalog, health=health, truth=truth, health_config=health_config,
            progress=progress)
        timings["evaluate_seconds"] = time.perf_counter() - clock
        if progress is not None:
            progress.advance()
            progress.note(f"{config.target}: fitting LightGBM on every row")
        clock = time.perf_counter()
        model, details = fit_model_crossfit(dataset, config, catalog, health_config)
        timings["fit_seconds"] = time.perf_counter() - clock
        if progress is not None:
            progress.advance()
    else:
        if progress is not None:
            progress.note(f"{config.target}: fitting LightGBM")
        clock = time.perf_counter()
        model, details = fit_for_policy(dataset, config, catalog, health_config)
        timings["fit_seconds"] = time.perf_counter() - clock
        if progress is not None:
            progress.advance()
            progress.note(f"{config.target}: evaluating on the test window")
        clock = time.perf_counter()
        metrics, predictions, reliability = evaluate(model, dataset, config, health=health, truth=truth)
        timings["evaluate_seconds"] = time.perf_counter() - clock
        if progress is not None:
            progress.advance()
        clock = time.perf_counter()
        backtest, notes = run_backtest(dataset, config, model, metrics, catalog, health, progress)
        timings["backtest_seconds"] = time.perf_counter() - clock
    details["timings"] = {**dataset.timings, **timings}
    metrics["backtest_roc_auc_mean"] = float(backtest["roc_auc"].mean())
    metrics["backtest_roc_auc_std"] = float(backtest["roc_auc"].std(ddof=0))
    metrics["backtest_folds"] = float(len(backtest))
    metrics.update({k: v for k, v in details.get("calibration_cv", {}).items()})
    model.info["metrics"] = {k: v for k, v in metrics.items() if np.isfinite(v)}
    model.info["fingerprint"] = dataset.fingerprint()
    policy_note = [f"split policy: {policy} ({dataset.split.policy_reason})"] if dataset.split.policy_reason else []
    split = dataset.split.describe()
    protocol = model
    if policy == "cross_sectional":
        # fitted on every row already (one labeled date): that date is its whole span
        model.info["train_end"] = str(split["train_end"])
    else:
        # the train-window model has seen labels up to the end of its calibration window (a
        # short split has none: rounds and calibrator come from inside the training window)
        model.info["train_end"] = str(split["calibration_end"] or split["train_end"])
        if config.refit:
            if progress is not None:
                progress.note(f"{config.target}: refitting on every labeled date")
            model, refit_details = refit_on_all(dataset, config, protocol)
            details["refit"] = refit_details
            # the refit's extra cost, apart from the protocol's fit
            details["timings"].update({
                "refit_fit_seconds": refit_details["fit_seconds"],
                "refit_crossfit_seconds": refit_details["crossfit_seconds"],
                "refit_seconds": refit_details["fit_seconds"] + refit_details["crossfit_seconds"]})
            notes.append(
                f"registered model refitted on all {refit_details['rows']:,} labeled observations "
                f"({refit_details['train_start']} to {refit_details['train_end']}) with "
                f"{refit_details['rounds']} rounds (protocol {refit_details['protocol_best_iteration']}, "
                f"rule {refit_details['rounds_rule']}) and a {refit_details['calibration']} calibrator "
                f"cross-fitted over {refit_details['calibration_folds']} account folds; the test "
                f"metrics are the train-window model's.")
    details["train_end"] = model.info["train_end"]
    return TrainingResult(model, config, dataset, metrics, predictions, reliability, backtest,
                          policy_note + list(dataset.split.notes) + notes, details,
                          protocol_model=protocol)

def refit_on_all(dataset: Dataset, config: ModelConfig, protocol: TargetModel) -> tuple[TargetModel, dict]:
    """The champion refitted on every labeled row of ``dataset`` with the protocol's choices
    (``churnml.models.refit``); the catalog's monotone directions are checked against all
    those rows with the protocol's rule."""
    from churnml.models.refit import refit_model

    names = list(protocol.feature_names)
    categorical = [c for c in names if c in protocol.categories]
    monotone: list[int] = [0] * len(names)
    dropped: dict[str, str] = {}
    if config.monotone_from_catalog:
        monotone, dropped = monotone_directions(dataset.frame, names, categorical, protocol.specs,
                                                config.target, config.monotone_tolerance)
    model, details = refit_model(dataset, config, protocol, monotone, dropped)
    model.info["metrics"] = dict(protocol.info.get("metrics", {}))
    return model, details


def train_target(book, target: str = "churn", config: ModelConfig | str | Path | None = None, *,
                 horizon_days: int | None = None, catalog=None, health=None, truth=None,
                 progress=None, sample_accounts: int | None = None) -> TrainingResult:
    """Train and evaluate the ``target`` model on ``book`` (a ``Book`` or a data folder).

    ``config``: a :class:`ModelConfig`, a YAML path, or None for ``models/<target>.yaml``;
    ``horizon_days`` overrides its horizon. ``truth``: the simulator's ``_truth`` (folder or
    tables) for the oracle baseline; found automatically beside a data folder.
    ``sample_accounts``: train on a stratified sample of at most this many accounts
    (``churnml.models.sampling``; default: the config's ``sample.max_accounts``, None = all).
    """
    from churnml.features.catalog import load_catalog

    if isinstance(book, (str, Path)):
        from churnml.data.io import load_book

        source = Path(book)
        book, _ = load_book(source)
        truth = truth if truth is not None else find_truth(source)
    elif truth is None and getattr(book, "source", None):
        truth = find_truth(book.source)
    if not isinstance(config, ModelConfig):
        config = load_config(target, path=config)
    if config.target != target:
        config = config.with_overrides(target=target)
    if horizon_days is not None:
        config = config.with_overrides(horizon_days=horizon_days)
    catalog = catalog if catalog is not None else load_catalog()
    limit = sample_accounts if sample_accounts is not None else config.sample_max_accounts
    sample = None
    if limit is not None:
        from churnml.models.sampling import draw_sample

        if progress is not None:
            progress.note(f"{config.target}: drawing a stratified sample of {limit:,} accounts")
        sample = draw_sample(book, config, int(limit))
        if sample is not None:
            book = sample.book
    dataset = build_dataset(book, config, catalog=catalog, progress=progress)
    leakage.guard_training(dataset, config, book=book, truth=truth)  # a leak stops training
    if progress is not None:
        progress.advance()
    result = train_on_dataset(dataset, config, catalog=catalog, health=health, truth=truth, progress=progress)
    if sample is not None:
        from churnml.models.sampling import record_sample

        record_sample(result, sample)
    return result
