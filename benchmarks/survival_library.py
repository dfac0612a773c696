"""The time-to-event model against a library survival model and the binary models (issue 14).

For each seed: simulate a book (cached), place the landmarks and first events of the
time-to-event protocol (``churnml.models.survival_train``, default ``models/time_to_event.yaml``)
and score the same test landmarks with

- **lightgbm-hazard**: the protocol model (LightGBM multiclass hazard on person-period rows,
  as ``churnml train --target time_to_event`` evaluates it), with the rounds chosen on the
  calibration window (``calibration.select_rounds``) and, as "early stopping", the same booster
  cut at early stopping's rounds (the model before that choice);
- **cox** and **rsf**: scikit-survival cause-specific models on the *landmark* rows of the
  same training landmarks (follow-up censored at the same cutoff; the other outcomes censored
  at their event time): ``CoxPHSurvivalAnalysis`` (ridge ``alpha``, median-imputed,
  standardised features, categories one-hot) and ``RandomSurvivalForest`` (on a seeded
  subsample of the rows: its log-rank splits are slow). Each model gives a cumulative
  cause-specific hazard per outcome at the period ends; they combine into cumulative
  incidence in discrete time (:func:`combine_cause_specific`);
- **binary**: a binary LightGBM per outcome at 90 days on the same landmark features (the
  protocol's stand-in, ``survival_train._binary_model``), scored as a ranking;
- **null**: the Aalen-Johansen incidence of the training landmarks (the same for every row);
- **oracle** (90-day churn, the simulator's).

Metrics: those of ``survival_train.evaluate_survival`` (scikit-survival's IPCW time-dependent
AUC, Uno's concordance, integrated Brier score over 30..180 days, per-decile calibration at 90
days against Aalen-Johansen with account-bootstrap intervals), and the plain 90-day ROC AUC on
the rows whose 90 days are observed.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/survival_library.py --accounts 3000 --seeds 71 72 73 \\
        --cache /tmp/survival-bench

Prints one line per (seed, model, outcome) and a markdown table; results in
``docs/models.md`` ("A library survival model on the same rows"); states ``uptime``'s load.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cached_book, log  # noqa: E402

HORIZON_DAYS = 90


def combine_cause_specific(cum_hazard: np.ndarray) -> np.ndarray:
    """Cumulative incidence (n, causes, periods + 1) from cause-specific cumulative hazards at
    the period ends (n, causes, periods + 1; column 0 = 0), in discrete time: in period ``j``
    the chance of any event given none before is ``1 - exp(-dH)`` (``dH`` the sum over causes of
    the period's hazard increments), shared between the causes in proportion to their
    increments. Survival plus the incidences is 1 and every incidence rises."""
    from churnml.models.survival import curves_from_hazards

    increments = np.clip(np.diff(cum_hazard, axis=2), 0.0, None)           # (n, causes, periods)
    total = increments.sum(axis=1)                                          # (n, periods)
    any_event = 1.0 - np.exp(-total)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total[:, None, :] > 0, increments / total[:, None, :], 0.0)
    hazards = np.concatenate([(1.0 - any_event)[:, :, None],
                              np.moveaxis(share * any_event[:, None, :], 1, 2)], axis=2)
    return curves_from_hazards(hazards)[1]


def design(train: pd.DataFrame, test: pd.DataFrame, names: list[str], categorical: list[str]):
    """Numeric matrices for scikit-survival: medians of the training rows fill gaps, the
    numeric columns are standardised on them, categories one-hot (those of the training rows)."""
    numeric = [n for n in names if n not in categorical]
    num_train = train[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
    num_test = test[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
    median = num_train.median().fillna(0.0)
    num_train, num_test = num_train.fillna(median), num_test.fillna(median)
    mean, sd = num_train.mean(), num_train.std().replace(0.0, 1.0).fillna(1.0)
    parts_train, parts_test = [((num_train - mean) / sd).to_numpy()], [((num_test - mean) / sd).to_numpy()]
    for c in categorical:
        levels = sorted(str(v) for v in train[c].dropna().unique())[1:]
        for frame, parts in ((train, parts_train), (test, parts_test)):
            values = frame[c].astype("string").to_numpy()
            parts.append(np.stack([(values == lv) for lv in levels], axis=1).astype("float64")
                         if levels else np.zeros((len(frame), 0)))
    return np.hstack(parts_train), np.hstack(parts_test)


def cause_specific_incidence(make_model, X_train: np.ndarray, train_events: pd.DataFrame,
                             X_test: np.ndarray, n_causes: int, periods: int, period_days: int,
                             rows: np.ndarray | None = None) -> np.ndarray:
    """Fit ``make_model()`` once per cause (the other causes censored at their event time) and
    combine the cumulative hazards at the period ends into incidence (n_test, causes, periods + 1)."""
    from sksurv.util import Surv

    time_ = train_events["time_days"].to_numpy(dtype="float64")
    event = train_events["event"].to_numpy(dtype=np.int64)
    keep = np.arange(len(time_)) if rows is None else rows
    grid = period_days * np.arange(periods + 1, dtype="float64")
    cum = np.zeros((len(X_test), n_causes, periods + 1))
    for k in range(n_causes):
        model = make_model()
        model.fit(X_train[keep], Surv.from_arrays(event[keep] == k + 1, time_[keep]))
        chf = model.predict_cumulative_hazard_function(X_test, return_array=True)
        times = np.asarray(model.unique_times_, dtype="float64")
        pos = np.searchsorted(times, grid, side="right") - 1
        cum[:, k, :] = np.where(pos >= 0, chf[:, np.maximum(pos, 0)], 0.0)
    return combine_cause_specific(cum)


def prepare(book_dir: Path, cache: Path):
    """Landmarks, first events, features (pickled next to the book) and the oracle."""
    from churnml.data.io import load_book
    from churnml.features.build import build_features
    from churnml.features.catalog import load_catalog
    from churnml.features.windows import to_as_of
    from churnml.models import survival as S
    from churnml.models import survival_train as ST
    from churnml.models.baselines import find_truth

    path = cache / f"{book_dir.name}-landmarks.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    book, _ = load_book(book_dir)
    config = ST.load_survival_config()
    landmarks = ST.landmark_dates(book, config)
    test_start = to_as_of(book.data_end) - pd.Timedelta(days=config.test_span_days)
    cutoff = pd.Timestamp(landmarks[landmarks >= test_start][0])
    events = S.first_events(book, landmarks, config.expansion_min_share)
    features = build_features(book, landmarks, catalog=load_catalog())
    prepared = {"landmarks": landmarks, "cutoff": cutoff, "events": events, "features": features,
                "book_dir": str(book_dir), "truth": find_truth(book_dir) is not None}
    path.write_bytes(pickle.dumps(prepared))
    return prepared


def run_seed(prepared: dict, args) -> list[dict]:
    from sksurv.ensemble import RandomSurvivalForest
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from churnml.data.io import load_book
    from churnml.features.labels import observation_grid
    from churnml.models import metrics as M
    from churnml.models import survival as S
    from churnml.models import survival_train as ST
    from churnml.models.baselines import find_truth, oracle_baseline

    config = ST.load_survival_config()
    events, features, cutoff = prepared["events"], prepared["features"], prepared["cutoff"]
    landmarks = prepared["landmarks"]
    past = events[events["as_of"] < cutoff]
    train_events = ST.truncate_events(past, cutoff)
    rows = S.person_period_rows(past, features, cutoff=cutoff)
    names, categorical, _ = ST._feature_columns(features, rows)
    test_events = events[(events["as_of"] >= cutoff) & (events["observed_periods"] > 0)]
    frame = S.join_features(test_events, features)
    n_causes, periods = len(S.CLASSES) - 1, S.N_PERIODS
    incidences: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    protocol = ST.fit_protocol(rows, names, categorical, cutoff, config,
                               ST.calibration_window(past, features, cutoff, config))
    early, chosen = protocol.info["early_stopping_iteration"], protocol.info["best_iteration"]
    incidences[f"lightgbm-hazard, early stopping ({early} rounds)"] = S.curves_from_hazards(
        protocol.hazards(frame, num_iteration=early))[1]
    incidences[f"lightgbm-hazard ({chosen} rounds)"] = protocol.curves(frame)[1]
    seconds["lightgbm-hazard"] = time.perf_counter() - t0
    log(f"  lightgbm-hazard {seconds['lightgbm-hazard']:.0f} s ({len(rows):,} person-period rows; "
        f"rounds: early stopping {early}, calibration window {chosen})")

    # the library models see the landmark rows (no period rows): the landmark's features only
    plain = [n for n in names if n not in S.TIME_FEATURES]
    train_frame = S.join_features(train_events[train_events["observed_periods"] > 0], features)
    cats = [c for c in categorical if c in plain]
    X_train, X_test = design(train_frame, frame, plain, cats)
    t0 = time.perf_counter()
    incidences["cox"] = cause_specific_incidence(
        lambda: CoxPHSurvivalAnalysis(alpha=args.cox_alpha), X_train, train_frame, X_test,
        n_causes, periods, S.PERIOD_DAYS)
    seconds["cox"] = time.perf_counter() - t0
    log(f"  cox {seconds['cox']:.0f} s ({len(train_frame):,} landmark rows, {X_train.shape[1]} columns)")
    if args.rsf_trees > 0:
        rng = np.random.default_rng(args.seed)
        subsample = np.sort(rng.choice(len(train_frame), size=min(args.rsf_rows, len(train_frame)),
                                       replace=False))
        t0 = time.perf_counter()
        incidences["rsf"] = cause_specific_incidence(
            lambda: RandomSurvivalForest(n_estimators=args.rsf_trees, min_samples_leaf=args.rsf_leaf,
                                         max_features="sqrt", n_jobs=1, random_state=args.seed),
            X_train, train_frame, X_test, n_causes, periods, S.PERIOD_DAYS, rows=subsample)
        seconds["rsf"] = time.perf_counter() - t0
        log(f"  rsf {seconds['rsf']:.0f} s ({len(subsample):,} landmark rows)")

    book_dir = Path(prepared["book_dir"])
    book, _ = load_book(book_dir)
    truth = find_truth(book_dir)
    test_dates = landmarks[landmarks >= cutoff]
    keys = frame[["account_id", "as_of"]].reset_index(drop=True)
    test_features = keys.merge(features, on=["account_id", "as_of"])
    out = []
    t, e = frame["time_days"].to_numpy(dtype="float64"), frame["event"].to_numpy(dtype=np.int64)
    c = frame["censor_days"].to_numpy(dtype="float64")
    groups = frame["account_id"].to_numpy()
    j90 = S.report_period(HORIZON_DAYS)
    for model_name, incidence in incidences.items():
        metrics = ST.incidence_metrics(incidence, t, e, c, groups, train_events,
                                       config.bootstrap_resamples, config.seed)[0]
        for k, outcome in enumerate(S.CLASSES[1:]):
            out.append({"model": model_name, "outcome": outcome, **_pick(metrics, outcome),
                        "score": incidence[:, k, j90]})
    for k, outcome in enumerate(S.CLASSES[1:]):
        t0 = time.perf_counter()
        score = ST._binary_model(features, book, landmarks, cutoff, test_features, names, categorical,
                                 config, outcome)
        seconds[f"binary-{outcome}"] = time.perf_counter() - t0
        row = {"model": "binary", "outcome": outcome,
               f"td_auc_{HORIZON_DAYS}d": ST.SM.td_auc(t, e, c, k + 1, score, float(HORIZON_DAYS)),
               "score": score}
        out.append(row)
    # the plain 90-day question on the rows whose 90 days are observed
    grid = observation_grid(book, test_dates, HORIZON_DAYS, config.expansion_min_share)
    labels = keys.merge(grid[["account_id", "as_of", *S.CLASSES[1:]]], on=["account_id", "as_of"],
                        how="left")
    oracle = (oracle_baseline(truth, keys, HORIZON_DAYS, S.TIE_ORDER[0]) if truth is not None
              else np.full(len(keys), np.nan))
    for row in out:
        y = labels[row["outcome"]].to_numpy(dtype="float64")
        ok = np.isfinite(y)
        row["roc_auc_90d"] = M.roc_auc(y[ok], row["score"][ok])
        low, high = M.bootstrap_auc_interval(y[ok], row["score"][ok], labels.loc[ok, "account_id"],
                                             config.bootstrap_resamples, config.seed)
        row["roc_auc_90d_ci"] = (low, high)
        row["seconds"] = seconds.get(row["model"].split(" ")[0].rstrip(","),
                                     seconds.get(f"binary-{row['outcome']}", np.nan))
        del row["score"]
    y = labels[S.TIE_ORDER[0]].to_numpy(dtype="float64")
    ok = np.isfinite(y) & np.isfinite(oracle)
    if ok.any():
        out.append({"model": "oracle", "outcome": S.TIE_ORDER[0],
                    "roc_auc_90d": M.roc_auc(y[ok], oracle[ok])})
    return out


def _pick(metrics: dict, outcome: str) -> dict:
    return {"td_auc_30d": metrics[f"test_td_auc_{outcome}_30d"],
            f"td_auc_{HORIZON_DAYS}d": metrics[f"test_td_auc_{outcome}_{HORIZON_DAYS}d"],
            "td_auc_180d": metrics[f"test_td_auc_{outcome}_180d"],
            "cindex": metrics[f"test_cindex_{outcome}"], "ibs": metrics[f"test_ibs_{outcome}"],
            "ibs_null": metrics[f"null_test_ibs_{outcome}"],
            "deciles_within": metrics[f"test_calibration_within_{outcome}_90d"] * 10}


def _f(value, digits: int = 3) -> str:
    if isinstance(value, tuple):
        return "-" if not all(np.isfinite(value)) else f"{value[0]:.{digits}f}-{value[1]:.{digits}f}"
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[71, 72, 73])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/churnml-bench"))
    parser.add_argument("--cox-alpha", type=float, default=1.0, help="ridge penalty of the Cox models")
    parser.add_argument("--rsf-trees", type=int, default=100, help="0: no random survival forest")
    parser.add_argument("--rsf-rows", type=int, default=8000, help="landmark rows the forest trains on")
    parser.add_argument("--rsf-leaf", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        load_before = os.getloadavg()[0]
        book_dir = cached_book(args.cache, args.accounts, args.months, seed)
        log(f"seed {seed}: labels and features")
        prepared = prepare(book_dir, args.cache)
        for row in run_seed(prepared, args):
            row.update(seed=seed, load=f"{load_before:.0f}-{os.getloadavg()[0]:.0f}")
            results.append(row)
            log(f"  {seed} {row['model']:>15} {row['outcome']:<11} "
                + " ".join(f"{k}={_f(v)}" for k, v in row.items()
                           if k not in ("seed", "model", "outcome", "load")))
    columns = ["seed", "outcome", "model", "td_auc_30d", "td_auc_90d", "td_auc_180d", "cindex", "ibs",
               "ibs_null", "deciles_within", "roc_auc_90d", "roc_auc_90d_ci", "seconds", "load"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in results:
        print("| " + " | ".join(str(row.get(k, "-")) if k in ("seed", "outcome", "model", "load")
                                else _f(row.get(k, np.nan), 1 if k in ("seconds", "deciles_within") else 4)
                                for k in columns) + " |")


if __name__ == "__main__":
    main()
