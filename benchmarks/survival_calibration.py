"""Post-hoc calibration of the time-to-event hazard, compared on the test landmarks (issue 14).

For each seed: simulate a book (cached, as ``survival_library.py``), fit the protocol model of
``churnml train --target time_to_event`` (``survival_train.fit_protocol``, default config but
without the hazard scaling) and score the same test landmarks with these calibrations, each
fitted on rows that end by the first test landmark (no test row):

- **none**: the protocol model's hazards as they are (``calibration.select_rounds`` rounds);
- **scaling, window**: ``survival.fit_hazard_scaling`` (a scale and an offset per outcome on
  its "outcome vs none" logit, multinomial log loss) on the calibration window's person-period
  rows (``survival_train.calibration_rows``): what ``calibration.hazard_scaling: true`` does;
- **scaling, window, not churn**: the same with churn's scale and offset held at the identity
  (``fit_hazard_scaling(fixed=...)``), expansion and contraction fitted;
- **scaling + period, window**: the same with a slope in the period index per outcome;
- **scaling, validation**: the scaling on every validation row (periods ending in the last
  ``validation_days`` before the test, of every earlier landmark: the early-stopping rows);
- **scaling, early stopping**: the scaling on the window, on the booster cut at early
  stopping's rounds (no round selection);
- **scaling, cross-fitted** (``--crossfit K``): the scaling fitted on out-of-fold raw scores of
  the *training* landmarks' person-period rows (K folds of accounts; each fold scored by a
  booster with the protocol's parameters and chosen rounds trained on the other folds' rows),
  so about ten times the window's rows, every one scored by a booster that never saw its
  account; ``early`` = only the rows of periods 0-2 (the window's shape), ``all`` = every period,
  ``recent`` = periods 0-2 of the landmarks of the last three ``validation_days`` (the window
  and the two before it: about three times the window's events, still recent);
- **knot, cross-fitted**: the same rows, a monotone map with a knot per outcome
  (``z = a min(l, q) + c max(l - q, 0) + b``, ``q`` the 90th percentile of ``l`` on the rows,
  ``a, c > 0``): a different scale below and above the top decile, since the linear scale
  that lifts the low deciles pushes churn's top decile over its interval;
- **oracle 90d** (``--oracle-paths N``): the simulator's own probability of each outcome
  within 90 days (``oracle_probability``, N paths) on the same rows, the same deciles and
  intervals: a calibrated predictor by construction (up to its Monte Carlo noise and one
  difference of definition: the oracle counts an outcome within 90 days, the incidence counts
  it only as the *first* event), so its count of deciles inside is what the criterion allows;
- **isotonic 90d**: per outcome an isotonic map of the 90-day incidence fitted on the window
  landmark whose 90 days are all observed (scikit-learn; 90 days only: it breaks the sum to 1
  and the rise with time, so it is a reference, not a candidate).
- **bag K, none** and **bag K + scaling, window** (``--bag K``; several sizes, e.g.
  ``--bag 5 10``, fit the largest bag once and report each nested one): K hazard boosters fitted
  exactly as the protocol model (``survival_train.fit_protocol``: the same rows, early stopping
  on the same validation rows, the rounds chosen on the same window), member ``i`` with the
  LightGBM ``seed`` of the config plus ``i`` (member 0 is the protocol model itself; the seed
  draws the bagging and feature-fraction samples, both 0.8), their per-period class
  probabilities averaged on the probability scale. "none" turns the averaged hazards into
  incidences as they are; "+ scaling" fits the shipped scaling (``survival.fit_hazard_scaling``)
  on the window's person-period rows scored by the bag, with the log of the averaged
  probabilities as the raw scores (so ``raw_k - raw_none`` is the bag's log odds of outcome
  ``k`` against none; with K = 1 it is exactly "scaling, window"), and applies it to the bag's
  averaged test hazards the same way. An experiment on the model's seed-to-seed noise in the
  probability spread, not product code.

**by stratum** (``--by-stratum``): no incidence, a diagnostic: the per-period hazard of each
outcome, the model's mean against the observed share (predicted/observed), without and with
the shipped scaling, on periods 0-2 of the test landmarks and of the training rows, by
contract type and renewal bin (:data:`STRATUM_BINS`): where a hazard concentrated in time
(at or before a renewal) is smeared over the periods around it.

Two experiments change the protocol model itself (every variant above then starts from it):
``--forced-renewal-splits`` forces every tree's two top splits on the renewal state
(:func:`forced_renewal_splits`), ``--projected-renewal`` counts the days to renewal to the next
term once the one in force has passed (:func:`use_projected_renewal`). Both were worse
(docs/models.md, session 14).

Per variant and outcome: deciles of the incidence inside their account-bootstrap interval at
30, 90 and 180 days (``survival_metrics.calibration_by_decile``), the td-AUC at 30/90/180
days, the integrated Brier score against the Aalen-Johansen null, and ECE (the rows-weighted
mean |mean prediction - Aalen-Johansen| over the 10 deciles) at 90 days.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/survival_calibration.py --seeds 31 32 --cache DIR
    PYTHONPATH=src .venv/bin/python benchmarks/survival_calibration.py --seeds 31 32 --cache DIR --bag 5 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cached_book, log  # noqa: E402
from survival_library import prepare  # noqa: E402

DAYS = (30, 90, 180)
KNOT_QUANTILE = 0.9


def crossfit_raw(rows: pd.DataFrame, train_mask: np.ndarray, names, categorical, config, rounds: int,
                 folds: int, seed: int) -> np.ndarray:
    """Out-of-fold raw scores (rows, classes) of every row of ``rows``: accounts split into
    ``folds`` folds (seeded); fold f's rows scored by a booster with the protocol's parameters
    and ``rounds`` rounds, trained on the other folds' rows that ``train_mask`` allows."""
    from churnml.models import survival as S

    accounts = np.sort(rows["account_id"].astype(str).unique())
    fold_of = dict(zip(accounts, np.random.default_rng(seed).permutation(len(accounts)) % folds))
    fold = rows["account_id"].astype(str).map(fold_of).to_numpy()
    raw = np.full((len(rows), len(S.CLASSES)), np.nan)
    for f in range(folds):
        model = S.fit_hazard(rows[(fold != f) & train_mask], None, names, categorical, config.lgb_params,
                             config.num_boost_round, config.early_stopping_rounds, rounds=rounds,
                             baseline_by=config.baseline_by, baseline_prior_rows=config.baseline_prior_rows)
        held = fold == f
        raw[held] = model.raw_scores(model.encoder.matrix(rows[held]))
    return raw


def fit_knotted(raw: np.ndarray, label: np.ndarray, quantile: float = KNOT_QUANTILE) -> dict:
    """Per outcome ``z = a min(l, q) + c max(l - q, 0) + b`` on ``l = raw_k - raw_none``, ``q``
    the ``quantile`` of ``l``, ``a, c >= 0.01``: minimises the multinomial log loss (L-BFGS-B,
    exact gradient, from the identity). Monotone in ``l``; a probability over the classes."""
    from scipy.optimize import minimize

    base = raw[:, 1:] - raw[:, :1]
    outcomes = base.shape[1]
    knot = np.quantile(base, quantile, axis=0)
    lower, upper = np.minimum(base, knot), np.maximum(base - knot, 0.0)
    onehot = np.eye(raw.shape[1])[label][:, 1:]

    def loss(theta):
        a, c, b = theta[:outcomes], theta[outcomes:2 * outcomes], theta[2 * outcomes:]
        z = lower * a + upper * c + b
        top = np.maximum(z.max(axis=1), 0.0)
        log_norm = top + np.log(np.exp(-top) + np.exp(z - top[:, None]).sum(axis=1))
        resid = (np.exp(z - log_norm[:, None]) - onehot) / len(z)
        return (float((log_norm - (onehot * z).sum(axis=1)).mean()),
                np.concatenate([(resid * lower).sum(0), (resid * upper).sum(0), resid.sum(0)]))

    start = np.concatenate([np.ones(2 * outcomes), np.zeros(outcomes)])
    bounds = [(0.01, None)] * (2 * outcomes) + [(None, None)] * outcomes
    x = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds,
                 options={"ftol": 1e-13, "gtol": 1e-9}).x
    return {"knot": knot.tolist(), "below": x[:outcomes].tolist(), "above": x[outcomes:2 * outcomes].tolist(),
            "offset": x[2 * outcomes:].tolist()}


def knotted_curves(model, frame: pd.DataFrame, fitted: dict) -> np.ndarray:
    """Incidence (n, outcomes, periods + 1) of ``frame`` with the knotted map on ``model``'s raw scores."""
    from churnml.models import survival as S

    n, periods = len(frame), S.N_PERIODS
    period = np.tile(np.arange(periods, dtype=np.int64), n)
    index = np.repeat(np.arange(n), periods)
    X = np.repeat(model.encoder.matrix(frame), periods, axis=0)
    sources = frame[[c for c in (S._TENURE_SOURCE, S._RENEWAL_SOURCE) if c in frame.columns]]
    for name, values in S.period_time_features(sources.iloc[index], period).items():
        if name in model.feature_names:
            X[:, model.feature_names.index(name)] = values
    raw = model.raw_scores(X)
    base = raw[:, 1:] - raw[:, :1]
    knot = np.asarray(fitted["knot"])
    z = (np.minimum(base, knot) * np.asarray(fitted["below"]) + np.maximum(base - knot, 0.0)
         * np.asarray(fitted["above"]) + np.asarray(fitted["offset"]))
    hazards = S.softmax(np.concatenate([np.zeros((len(z), 1)), z], axis=1))
    return S.curves_from_hazards(hazards.reshape(n, periods, len(S.CLASSES)))[1]


def fit_bag(rows: pd.DataFrame, names, categorical, cutoff, config, window: pd.DataFrame, protocol,
            size: int) -> list:
    """``size`` hazard models fitted as ``protocol`` was (``survival_train.fit_protocol`` with the
    same rows, window and config), member ``i`` with LightGBM ``seed`` = the config's + ``i``;
    member 0 is ``protocol`` itself (already fitted with the config's seed)."""
    from churnml.models import survival_train as ST

    base_seed = int(config.lgb_params.get("seed", 0))
    members = [protocol]
    for i in range(1, size):
        member_config = replace(config, lgb_params={**config.lgb_params, "seed": base_seed + i})
        t1 = time.perf_counter()
        members.append(ST.fit_protocol(rows, names, categorical, cutoff, member_config, window))
        log(f"  bag member {i} (seed {base_seed + i}): {time.perf_counter() - t1:.0f} s, rounds early "
            f"{members[-1].info['early_stopping_iteration']}, chosen {members[-1].info['best_iteration']}")
    return members


def bag_log_raw(probabilities: np.ndarray) -> np.ndarray:
    """The raw scores the scaling reads from averaged class probabilities: their logs (a softmax
    of them gives the probabilities back; ``raw_k - raw_none`` is the log odds against none)."""
    return np.log(np.clip(probabilities, 1e-300, None))


def decile_figures(incidence_k: np.ndarray, t, e, cause: int, groups, config) -> dict:
    from churnml.models import survival as S
    from churnml.models import survival_metrics as SM

    out = {}
    for days in DAYS:
        table = SM.calibration_by_decile(t, e, cause, len(S.CLASSES) - 1, incidence_k[:, S.report_period(days)],
                                         float(days), groups=groups, resamples=config.bootstrap_resamples,
                                         seed=config.seed)
        out[f"within_{days}d"] = int(table["within"].sum())
        out[f"ece_{days}d"] = float((table["rows"] * (table["predicted"] - table["observed"]).abs()).sum()
                                    / table["rows"].sum())
        if days == 90:
            out["deciles_90d"] = [(round(r.predicted, 4), round(r.observed, 4), round(r.low, 4), round(r.high, 4))
                                  for r in table.itertuples()]
    return out


#: finer renewal bins than the baseline's states, for the diagnostic (days to the renewal in
#: force at the landmark, at the period's start)
STRATUM_BINS: tuple[tuple[str, float, float], ...] = (
    ("passed", -np.inf, 0), ("due in the period", 0, 30), ("due in 30-90 days", 30, 90),
    ("due in 90-180 days", 90, 180), ("due later", 180, np.inf))


#: contract term in days per ``contract_type`` (the simulator's attribute; the data contract has
#: no term length), for the --projected-renewal experiment
TERM_DAYS = {"annual": 365.0, "monthly": 365.0 / 12}


def use_projected_renewal() -> None:
    """Experiment (``--projected-renewal``): the period's :data:`survival.RENEWAL_FEATURE` is the
    days to the *next* renewal, the renewal in force projected forward by whole contract terms
    (``contract_type``: :data:`TERM_DAYS`), instead of a negative number once the renewal in
    force has passed. Patches ``survival.period_time_features`` in this process (training and
    scoring both go through it)."""
    from churnml.models import survival as S

    plain = S.period_time_features

    def projected(frame: pd.DataFrame, period: np.ndarray) -> dict[str, np.ndarray]:
        out = plain(frame, period)
        if "contract_type" not in frame.columns:
            return out
        term = frame["contract_type"].astype("string").map(TERM_DAYS).astype("float64").to_numpy()
        ttr = out[S.RENEWAL_FEATURE]
        passed = np.isfinite(term) & (ttr < 0)
        ahead = np.where(passed, np.ceil(-ttr / np.where(np.isfinite(term), term, 1.0)), 0.0)
        out[S.RENEWAL_FEATURE] = np.where(passed, ttr + ahead * np.where(np.isfinite(term), term, 0.0), ttr)
        return out

    S.period_time_features = projected


def forced_renewal_splits(names: list[str]) -> Path:
    """A LightGBM forced-splits file (``forcedsplits_filename``) whose two top splits separate
    the renewal states of :data:`survival.RENEWAL_STATES` on :data:`survival.RENEWAL_FEATURE`:
    passed (< 0) | due in the period (0-29) | later, so every tree learns the features' effects
    within a renewal state (the hazard at a renewal and between renewals differ 20-40 times)."""
    import tempfile

    from churnml.models import survival as S

    index = names.index(S.RENEWAL_FEATURE)
    spec = {"feature": index, "threshold": -0.5,
            "right": {"feature": index, "threshold": S.PERIOD_DAYS - 0.5}}
    path = Path(tempfile.mkdtemp(prefix="churnml-forced-")) / "forced_splits.json"
    path.write_text(json.dumps(spec))
    return path


def stratum_table(model, rows: pd.DataFrame, periods: int = 3) -> list[dict]:
    """Per-period hazard of each outcome, the model's mean against the observed share, on
    person-period ``rows`` of periods ``0..periods-1``, by ``contract_type`` and the renewal
    bin (:data:`STRATUM_BINS`; "unknown" when the renewal date is not known): where a model's
    hazard is smeared over time (session 13), this shows it."""
    from churnml.models import survival as S

    rows = rows[rows["period"] < periods]
    hz = model.period_hazards(model.encoder.matrix(rows), rows["period"].to_numpy())
    ttr = rows[S.RENEWAL_FEATURE].to_numpy(dtype="float64")
    bins = np.full(len(rows), "unknown", dtype=object)
    for name, lo, hi in STRATUM_BINS:
        bins[(ttr >= lo) & (ttr < hi)] = name
    contract = (rows["contract_type"].astype("string").fillna("(missing)").to_numpy()
                if "contract_type" in rows.columns else np.full(len(rows), "(all)", dtype=object))
    label = rows["label"].to_numpy(dtype=np.int64)
    frame = pd.DataFrame({"contract": contract, "renewal": bins})
    out = []
    for (c, b), index in frame.groupby(["contract", "renewal"], sort=True).indices.items():
        row = {"contract": c, "renewal": b, "rows": int(len(index))}
        for k, outcome in enumerate(S.CLASSES[1:], start=1):
            row[f"{outcome}_predicted"] = float(hz[index, k].mean())
            row[f"{outcome}_observed"] = float((label[index] == k).mean())
        out.append(row)
    return out


def parse_lgb(pairs: list[str]) -> dict:
    """``["lambda_l2=0", "min_child_samples=50"]`` -> LightGBM parameter overrides (numbers
    parsed as int, then float; anything else kept as text)."""
    out: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        for cast in (int, float, str):
            try:
                out[key.strip()] = cast(value)
                break
            except ValueError:
                continue
    return out


def run_seed(prepared: dict, crossfit: int = 0, seed: int = 0, oracle_paths: int = 0,
             bag: tuple[int, ...] = (), lgb_overrides: dict | None = None,
             max_train_period: int | None = None, baseline: bool | None = None,
             by_stratum: bool = False, forced_renewal: bool = False) -> list[dict]:
    from sklearn.isotonic import IsotonicRegression

    import lightgbm as lgb

    from churnml.models import survival as S
    from churnml.models import survival_metrics as SM
    from churnml.models import survival_train as ST

    config = replace(ST.load_survival_config(), hazard_scaling=False)
    if lgb_overrides:
        config = replace(config, lgb_params={**config.lgb_params, **lgb_overrides})
    if baseline is not None:  # else as models/time_to_event.yaml says
        config = replace(config, baseline_by=(config.baseline_by or ST.DEFAULT_BASELINE_BY) if baseline else None)
    events, features, cutoff = prepared["events"], prepared["features"], prepared["cutoff"]
    past = events[events["as_of"] < cutoff]
    train_events = ST.truncate_events(past, cutoff)
    rows = S.person_period_rows(past, features, cutoff=cutoff)
    if max_train_period is not None:  # experiment: train (and early-stop) on the first periods only
        rows = rows[rows["period"] <= max_train_period].reset_index(drop=True)
    names, categorical, _ = ST._feature_columns(features, rows)
    if forced_renewal:  # experiment: every tree's top splits separate the renewal states
        config = replace(config, lgb_params={**config.lgb_params,
                                             "forcedsplits_filename": str(forced_renewal_splits(names))})
    test_events = events[(events["as_of"] >= cutoff) & (events["observed_periods"] > 0)]
    frame = S.join_features(test_events, features)
    t0 = time.perf_counter()
    window = ST.calibration_window(past, features, cutoff, config)
    protocol = ST.fit_protocol(rows, names, categorical, cutoff, config, window)
    fit_seconds = time.perf_counter() - t0
    early, chosen = protocol.info["early_stopping_iteration"], protocol.info["best_iteration"]
    window_rows = ST.calibration_rows(past, features, cutoff, config)
    in_valid = (rows["period_end"] > cutoff - pd.Timedelta(days=config.validation_days)).to_numpy()
    valid_rows = rows[in_valid]
    log(f"  fit {fit_seconds:.0f} s; rounds early stopping {early}, chosen {chosen}; window rows "
        f"{len(window_rows):,} (events {np.bincount(window_rows['label'], minlength=4).tolist()}), "
        f"validation rows {len(valid_rows):,}")

    def scaled(model, rows_, period_term=False):
        copy = S.SurvivalModel(model.booster, model.feature_names, model.categories, dict(model.info),
                               model.class_bias, baseline=model.baseline)
        t1 = time.perf_counter()
        scaling = copy.fit_scaling(rows_, period_term)
        return copy, scaling, time.perf_counter() - t1

    early_model = S.SurvivalModel(lgb.Booster(model_str=protocol.booster.model_to_string(num_iteration=early)),
                                  protocol.feature_names, protocol.categories, dict(protocol.info),
                                  baseline=protocol.baseline)
    variants: dict[str, tuple[np.ndarray, dict]] = {}
    variants["none"] = (protocol.curves(frame)[1], {})
    for label, model, rows_, term in (("scaling, window", protocol, window_rows, False),
                                      ("scaling + period, window", protocol, window_rows, True),
                                      ("scaling, validation", protocol, valid_rows, False),
                                      ("scaling, early stopping", early_model, window_rows, False)):
        copy, scaling, seconds = scaled(model, rows_, term)
        variants[label] = (copy.curves(frame)[1], {"scaling": scaling.to_dict(), "fit_seconds": seconds})
    # the shipped scaling with churn held at the identity (expansion and contraction fitted)
    churn_code = S.CLASSES.index("churn") - 1
    window_raw = protocol.raw_scores(protocol.encoder.matrix(window_rows))
    partial = S.fit_hazard_scaling(window_raw, window_rows["label"].to_numpy(dtype=np.int64), fixed=[churn_code])
    copy = S.SurvivalModel(protocol.booster, protocol.feature_names, protocol.categories, dict(protocol.info),
                           protocol.class_bias, partial.to_dict(), baseline=protocol.baseline)
    variants["scaling, window, not churn"] = (copy.curves(frame)[1], {"scaling": partial.to_dict()})
    if bag:
        t1 = time.perf_counter()
        members = fit_bag(rows, names, categorical, cutoff, config, window, protocol, max(bag))
        bag_seconds = time.perf_counter() - t1
        test_hazards = [m.hazards(frame) for m in members]           # (n, periods, classes) each
        window_probs = [m.period_hazards(m.encoder.matrix(window_rows), None) for m in members]
        window_label = window_rows["label"].to_numpy(dtype=np.int64)
        # check: on the protocol alone, log-probabilities as raw scores give the shipped scaling
        check = S.fit_hazard_scaling(bag_log_raw(window_probs[0]), window_label).to_dict()
        shipped = variants["scaling, window"][1]["scaling"]
        log(f"  bag of {len(members)} fitted in {bag_seconds:.0f} s (members 1..); scaling of log p of member 0 "
            f"vs shipped: max |diff| {max(abs(a - b) for key in ('scale', 'offset') for a, b in zip(check[key], shipped[key])):.2e}")
        for size in sorted(bag):
            hazards = np.mean(test_hazards[:size], axis=0)
            n, periods, classes = hazards.shape
            variants[f"bag {size}, none"] = (S.curves_from_hazards(hazards)[1], {"bag_seconds": bag_seconds})
            scaling = S.fit_hazard_scaling(bag_log_raw(np.mean(window_probs[:size], axis=0)), window_label)
            scaled_hazards = scaling.apply(bag_log_raw(hazards.reshape(n * periods, classes)), None)
            variants[f"bag {size} + scaling, window"] = (
                S.curves_from_hazards(scaled_hazards.reshape(n, periods, classes))[1],
                {"scaling": scaling.to_dict(), "bag_seconds": bag_seconds,
                 "bag_rounds": [m.info["best_iteration"] for m in members[:size]]})
    if crossfit:
        t1 = time.perf_counter()
        oof = crossfit_raw(rows, ~in_valid, names, categorical, config, chosen, crossfit, seed)
        cf_seconds = time.perf_counter() - t1
        labels = rows["label"].to_numpy(dtype=np.int64)
        early_rows = (rows["period"] <= 2).to_numpy()
        log(f"  cross-fitted {crossfit} folds in {cf_seconds:.0f} s: {len(rows):,} rows "
            f"({int(early_rows.sum()):,} in periods 0-2)")
        recent = early_rows & (rows["as_of"] >= cutoff - pd.Timedelta(days=3 * config.validation_days)).to_numpy()
        for label, keep in (("scaling, cross-fitted early", early_rows), ("scaling, cross-fitted all", None),
                            ("scaling, cross-fitted recent", recent)):
            r, y = (oof, labels) if keep is None else (oof[keep], labels[keep])
            scaling = S.fit_hazard_scaling(r, y)
            copy = S.SurvivalModel(protocol.booster, protocol.feature_names, protocol.categories,
                                   dict(protocol.info), protocol.class_bias, baseline=protocol.baseline)
            copy.hazard_scaling = scaling.to_dict()
            variants[label] = (copy.curves(frame)[1], {"scaling": scaling.to_dict(), "fit_seconds": cf_seconds})
        for label, keep in (("knot, cross-fitted early", early_rows), ("knot, window", None)):
            if keep is None:  # the same map on the window's rows (what session 9 tried, lost)
                r = protocol.raw_scores(protocol.encoder.matrix(window_rows))
                y = window_rows["label"].to_numpy(dtype=np.int64)
            else:
                r, y = oof[keep], labels[keep]
            fitted = fit_knotted(r, y)
            variants[label] = (knotted_curves(protocol, frame, fitted), {"knotted": fitted})
    strata: list[dict] = []
    if by_stratum:  # the protocol model's and the shipped scaling's per-period hazards by stratum
        test_rows = S.person_period_rows(test_events, features)
        shipped_model = S.SurvivalModel(protocol.booster, protocol.feature_names, protocol.categories,
                                        dict(protocol.info), protocol.class_bias,
                                        variants["scaling, window"][1]["scaling"], baseline=protocol.baseline)
        for label, model in (("none", protocol), ("scaling, window", shipped_model)):
            for part, part_rows in (("test", test_rows), ("training", rows)):
                for row in stratum_table(model, part_rows):
                    strata.append({"variant": label, "rows_of": part, **row})
    # isotonic on the 90-day incidence, fitted on the window landmark with all 90 days observed
    j90 = S.report_period(90)
    first = cutoff - pd.Timedelta(days=config.validation_days)
    iso_land = ST.truncate_events(past[past["as_of"] == first], cutoff)
    iso_frame = S.join_features(iso_land, features)
    iso_cif = protocol.curves(iso_frame)[1][:, :, j90]
    base = variants["none"][0].copy()
    iso = np.full_like(base, np.nan)
    for k in range(len(S.CLASSES) - 1):
        y = ((iso_frame["event"].to_numpy() == k + 1)
             & (iso_frame["event_period"].to_numpy() < j90)).astype("float64")
        fitted = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(iso_cif[:, k], y)
        iso[:, k, j90] = fitted.predict(base[:, k, j90])
    t, e = frame["time_days"].to_numpy(dtype="float64"), frame["event"].to_numpy(dtype=np.int64)
    c = frame["censor_days"].to_numpy(dtype="float64")
    groups = frame["account_id"].to_numpy()
    out = []
    for name, (incidence, extra) in variants.items():
        metrics = ST.incidence_metrics(incidence, t, e, c, groups, train_events, 0, 0)[0]
        for k, outcome in enumerate(S.CLASSES[1:]):
            row = {"variant": name, "outcome": outcome, "early": early, "chosen": chosen,
                   **{f"td_auc_{d}d": metrics[f"test_td_auc_{outcome}_{d}d"] for d in DAYS},
                   "ibs": metrics[f"test_ibs_{outcome}"], "ibs_null": metrics[f"null_test_ibs_{outcome}"],
                   **decile_figures(incidence[:, k, :], t, e, k + 1, groups, config), **extra}
            out.append(row)
    for k, outcome in enumerate(S.CLASSES[1:]):
        table = SM.calibration_by_decile(t, e, k + 1, len(S.CLASSES) - 1, iso[:, k, j90], 90.0, groups=groups,
                                         resamples=config.bootstrap_resamples, seed=config.seed)
        out.append({"variant": "isotonic 90d", "outcome": outcome,
                    "td_auc_90d": SM.td_auc(t, e, c, k + 1, iso[:, k, j90], 90.0),
                    "within_90d": int(table["within"].sum()),
                    "ece_90d": float((table["rows"] * (table["predicted"] - table["observed"]).abs()).sum()
                                     / table["rows"].sum())})
    if oracle_paths and prepared.get("truth"):
        from churnml.data.simulator import oracle_probability

        for k, outcome in enumerate(S.CLASSES[1:]):
            truth = np.asarray(oracle_probability(prepared["book_dir"], frame[["account_id", "as_of"]],
                                                  horizon_days=90, target=outcome, n_paths=oracle_paths,
                                                  seed=seed), dtype="float64")
            keep = np.isfinite(truth)
            table = SM.calibration_by_decile(t[keep], e[keep], k + 1, len(S.CLASSES) - 1, truth[keep], 90.0,
                                             groups=groups[keep], resamples=config.bootstrap_resamples,
                                             seed=config.seed)
            out.append({"variant": "oracle 90d", "outcome": outcome,
                        "td_auc_90d": SM.td_auc(t[keep], e[keep], c[keep], k + 1, truth[keep], 90.0),
                        "within_90d": int(table["within"].sum()), "rows_with_oracle": int(keep.sum()),
                        "ece_90d": float((table["rows"] * (table["predicted"] - table["observed"]).abs()).sum()
                                         / table["rows"].sum()),
                        "deciles_90d": [(round(r.predicted, 4), round(r.observed, 4), round(r.low, 4),
                                         round(r.high, 4)) for r in table.itertuples()]})
    if strata:
        out.append({"variant": "by stratum", "outcome": "-", "td_auc_90d": float("nan"),
                    "within_90d": "-", "ece_90d": float("nan"), "strata": strata})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/churnml-bench"))
    parser.add_argument("--json", type=Path, default=None, help="write every row here")
    parser.add_argument("--oracle-paths", type=int, default=0,
                        help="also the simulator's oracle per decile, with this many paths (0: not)")
    parser.add_argument("--crossfit", type=int, default=0,
                        help="also the cross-fitted variants with this many folds (0: not)")
    parser.add_argument("--bag", type=int, nargs="+", default=[0],
                        help="also a bag of this many hazard boosters (seeds differ), with and without the "
                             "scaling; several sizes report nested bags of one fit (0: not)")
    parser.add_argument("--lgb", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override the hazard booster's LightGBM parameters of models/time_to_event.yaml "
                             "(e.g. lambda_l2=0)")
    parser.add_argument("--max-train-period", type=int, default=None,
                        help="train and early-stop on person-period rows of periods 0..P only (an "
                             "experiment: the later periods' stale landmark features)")
    parser.add_argument("--baseline", choices=("on", "off"), default=None,
                        help="the hazard with or without a baseline per renewal stratum (baseline.enabled; "
                             "default: as models/time_to_event.yaml)")
    parser.add_argument("--by-stratum", action="store_true",
                        help="also the per-period hazard of each outcome, predicted against observed, by contract "
                             "type and renewal bin (periods 0-2 of the test landmarks and of the training rows)")
    parser.add_argument("--forced-renewal-splits", action="store_true",
                        help="experiment: force every tree's top splits on the renewal state "
                             "(LightGBM forcedsplits_filename)")
    parser.add_argument("--projected-renewal", action="store_true",
                        help="experiment: the period's days to renewal projected to the next renewal by "
                             "contract terms (contract_type) instead of negative once passed")
    args = parser.parse_args()
    if args.projected_renewal:
        use_projected_renewal()
    overrides = parse_lgb(args.lgb)
    if overrides:
        log(f"LightGBM overrides: {overrides}")
    args.cache.mkdir(parents=True, exist_ok=True)
    log(f"load average at start: {os.getloadavg()}")
    rows = []
    for seed in args.seeds:
        log(f"seed {seed}")
        prepared = prepare(cached_book(args.cache, args.accounts, args.months, seed), args.cache)
        t_seed = time.perf_counter()
        for row in run_seed(prepared, args.crossfit, seed, args.oracle_paths,
                            tuple(k for k in args.bag if k > 0), overrides,
                            args.max_train_period, None if args.baseline is None else args.baseline == "on",
                            args.by_stratum, args.forced_renewal_splits):
            rows.append({"seed": seed, **row})
            if "strata" in row:
                for st in row["strata"]:
                    log(f"    {st['variant']:<16} {st['rows_of']:<8} {st['contract']:<8} {st['renewal']:<19} "
                        f"{st['rows']:>8,} " + "  ".join(
                            f"{k} {st[k + '_predicted']:.4f}/{st[k + '_observed']:.4f}"
                            for k in ("churn", "expansion", "contraction")))
                continue
            log(f"  {row['variant']:<26} {row['outcome']:<12} dec 30/90/180 "
                f"{row.get('within_30d', '-')}/{row['within_90d']}/{row.get('within_180d', '-')} "
                f"AUC90 {row['td_auc_90d']:.4f} ECE90 {row['ece_90d']:.4f} "
                f"IBS {row.get('ibs', float('nan')):.4f} (null {row.get('ibs_null', float('nan')):.4f})")
        log(f"  seed {seed}: {time.perf_counter() - t_seed:.0f} s wall, load average {os.getloadavg()}")
    log(f"load average at end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
