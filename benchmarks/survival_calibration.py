"""Post-hoc calibration of the time-to-event hazard, compared on the test landmarks (issue 14).

For each seed: simulate a book (cached, as ``survival_library.py``), fit the protocol model of
``churnml train --target time_to_event`` (``survival_train.fit_protocol``, default config but
without the hazard scaling) and score the same test landmarks with these calibrations, each
fitted on rows that end by the first test landmark (no test row):

- **none**: the protocol model's hazards as they are (``calibration.select_rounds`` rounds);
- **scaling, window**: ``survival.fit_hazard_scaling`` (a scale and an offset per outcome on
  its "outcome vs none" logit, multinomial log loss) on the calibration window's person-period
  rows (``survival_train.calibration_rows``): what ``calibration.hazard_scaling: true`` does;
- **scaling + period, window**: the same with a slope in the period index per outcome;
- **scaling, validation**: the scaling on every validation row (periods ending in the last
  ``validation_days`` before the test, of every earlier landmark: the early-stopping rows);
- **scaling, early stopping**: the scaling on the window, on the booster cut at early
  stopping's rounds (no round selection);
- **isotonic 90d**: per outcome an isotonic map of the 90-day incidence fitted on the window
  landmark whose 90 days are all observed (scikit-learn; 90 days only: it breaks the sum to 1
  and the rise with time, so it is a reference, not a candidate).

Per variant and outcome: deciles of the incidence inside their account-bootstrap interval at
30, 90 and 180 days (``survival_metrics.calibration_by_decile``), the td-AUC at 30/90/180
days, the integrated Brier score against the Aalen-Johansen null, and ECE (the rows-weighted
mean |mean prediction - Aalen-Johansen| over the 10 deciles) at 90 days.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/survival_calibration.py --seeds 31 32 --cache DIR
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


def run_seed(prepared: dict) -> list[dict]:
    from sklearn.isotonic import IsotonicRegression

    import lightgbm as lgb

    from churnml.models import survival as S
    from churnml.models import survival_metrics as SM
    from churnml.models import survival_train as ST

    config = replace(ST.load_survival_config(), hazard_scaling=False)
    events, features, cutoff = prepared["events"], prepared["features"], prepared["cutoff"]
    past = events[events["as_of"] < cutoff]
    train_events = ST.truncate_events(past, cutoff)
    rows = S.person_period_rows(past, features, cutoff=cutoff)
    names, categorical, _ = ST._feature_columns(features, rows)
    test_events = events[(events["as_of"] >= cutoff) & (events["observed_periods"] > 0)]
    frame = S.join_features(test_events, features)
    t0 = time.perf_counter()
    protocol = ST.fit_protocol(rows, names, categorical, cutoff, config,
                               ST.calibration_window(past, features, cutoff, config))
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
                               model.class_bias)
        t1 = time.perf_counter()
        scaling = copy.fit_scaling(rows_, period_term)
        return copy, scaling, time.perf_counter() - t1

    early_model = S.SurvivalModel(lgb.Booster(model_str=protocol.booster.model_to_string(num_iteration=early)),
                                  protocol.feature_names, protocol.categories, dict(protocol.info))
    variants: dict[str, tuple[np.ndarray, dict]] = {}
    variants["none"] = (protocol.curves(frame)[1], {})
    for label, model, rows_, term in (("scaling, window", protocol, window_rows, False),
                                      ("scaling + period, window", protocol, window_rows, True),
                                      ("scaling, validation", protocol, valid_rows, False),
                                      ("scaling, early stopping", early_model, window_rows, False)):
        copy, scaling, seconds = scaled(model, rows_, term)
        variants[label] = (copy.curves(frame)[1], {"scaling": scaling.to_dict(), "fit_seconds": seconds})
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
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/churnml-bench"))
    parser.add_argument("--json", type=Path, default=None, help="write every row here")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    log(f"load average at start: {os.getloadavg()}")
    rows = []
    for seed in args.seeds:
        log(f"seed {seed}")
        prepared = prepare(cached_book(args.cache, args.accounts, args.months, seed), args.cache)
        for row in run_seed(prepared):
            rows.append({"seed": seed, **row})
            log(f"  {row['variant']:<26} {row['outcome']:<12} dec 30/90/180 "
                f"{row.get('within_30d', '-')}/{row['within_90d']}/{row.get('within_180d', '-')} "
                f"AUC90 {row['td_auc_90d']:.4f} ECE90 {row['ece_90d']:.4f} "
                f"IBS {row.get('ibs', float('nan')):.4f} (null {row.get('ibs_null', float('nan')):.4f})")
    log(f"load average at end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
