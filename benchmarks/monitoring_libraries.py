"""Drift and label-free performance estimation: churnml's own code against Evidently and NannyML.

The same synthetic week is measured by each implementation, one process each (the libraries
live in scratch virtual environments, never in the project's: see docs/monitoring.md for why):
``--n`` accounts (default 50,000) with ``--numeric`` numeric features (5% missing) and
``--categorical`` categorical ones, reference and current drawn from the same generator and
seed layout with known shifts on the first five numeric features (0, 0.05, 0.2, 0.5 and 1
standard deviation) and on the first categorical one; a calibrated probability per account and
labels drawn from it.

Each run prints one JSON line: seconds to fit the reference (profile) and to measure the
current week, the drift statistic per shifted feature, the features flagged as drifted, and
the estimated ROC AUC (CBPE) beside the realized AUC of the drawn labels.

Usage::

    python benchmarks/monitoring_libraries.py own
    /tmp/venv-evidently/bin/python benchmarks/monitoring_libraries.py evidently
    /tmp/venv-nannyml/bin/python benchmarks/monitoring_libraries.py nannyml
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

SHIFTS = [0.0, 0.05, 0.2, 0.5, 1.0]


def make_week(n: int, numeric: int, categorical: int, seed: int, shifted: bool):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, numeric))
    if shifted:
        X[:, :len(SHIFTS)] += np.array(SHIFTS)
    X[:, len(SHIFTS):len(SHIFTS) + 10] = np.exp(X[:, len(SHIFTS):len(SHIFTS) + 10])  # skewed
    X[rng.uniform(size=X.shape) < 0.05] = np.nan
    levels = [f"c{k}" for k in range(8)]
    weights = np.linspace(1, 2, len(levels))
    weights /= weights.sum()
    cats = []
    for j in range(categorical):
        w = weights[::-1] if (shifted and j == 0) else weights
        cats.append(rng.choice(levels, size=n, p=w))
    z = -2.0 + np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 1]) - 0.5 * np.nan_to_num(X[:, 2])
    p = 1 / (1 + np.exp(-z))
    y = (rng.uniform(size=n) < p).astype(int)
    return X, cats, p, y


def frame(X, cats, p, y):
    import pandas as pd

    data = {f"num_{j}": X[:, j] for j in range(X.shape[1])}
    data.update({f"cat_{j}": c for j, c in enumerate(cats)})
    data["probability"] = p
    data["prediction"] = (p >= 0.5).astype(int)
    data["label"] = y
    return pd.DataFrame(data)


def run_own(ref, cur, numeric, categorical):
    from churnml.jobs.drift import expected_roc_auc
    from churnml.models.profile import psi, reference_histogram

    names = [f"num_{j}" for j in range(numeric)] + [f"cat_{j}" for j in range(categorical)]
    t0 = time.perf_counter()
    hists = {c: reference_histogram(ref[c].to_numpy(), "categorical" if c.startswith("cat")
                                    else "numeric", 10) for c in names + ["probability"]}
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    values = {c: psi(h.shares, h.counts(cur[c].to_numpy())) for c, h in hists.items()}
    estimate = expected_roc_auc(cur["probability"].to_numpy())
    measure_s = time.perf_counter() - t0
    return fit_s, measure_s, values, {c: v > 0.25 for c, v in values.items()}, estimate


def run_evidently(ref, cur, numeric, categorical):
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = [f"num_{j}" for j in range(numeric)] + [f"cat_{j}" for j in range(categorical)]
    definition = DataDefinition(numerical_columns=[c for c in names if c.startswith("num")]
                                + ["probability"],
                                categorical_columns=[c for c in names if c.startswith("cat")])
    t0 = time.perf_counter()
    r = Dataset.from_pandas(ref[names + ["probability"]], data_definition=definition)
    c = Dataset.from_pandas(cur[names + ["probability"]], data_definition=definition)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    snapshot = Report([DataDriftPreset(method="psi", threshold=0.25)]).run(
        current_data=c, reference_data=r)
    measure_s = time.perf_counter() - t0
    values, flags = {}, {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config") or {}
        if str(config.get("type", "")).endswith(":ValueDrift"):
            column = str(config["column"])
            values[column] = float(metric["value"])
            flags[column] = values[column] >= 0.25
    return fit_s, measure_s, values, flags, float("nan")


def run_nannyml(ref, cur, numeric, categorical):
    import nannyml as nml

    names = [f"num_{j}" for j in range(numeric)] + [f"cat_{j}" for j in range(categorical)]
    t0 = time.perf_counter()
    drift = nml.UnivariateDriftCalculator(
        column_names=names + ["probability"], continuous_methods=["jensen_shannon"],
        categorical_methods=["jensen_shannon"], chunk_number=1).fit(ref)
    cbpe = nml.CBPE(y_pred_proba="probability", y_pred="prediction", y_true="label",
                    metrics=["roc_auc"], problem_type="classification_binary",
                    chunk_number=1).fit(ref)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = drift.calculate(cur.drop(columns=["label"])).filter(period="analysis").to_df()
    estimate = cbpe.estimate(cur.drop(columns=["label"])).filter(period="analysis").to_df()
    measure_s = time.perf_counter() - t0
    values, flags = {}, {}
    for column in names + ["probability"]:
        values[column] = float(result[(column, "jensen_shannon", "value")].iloc[0])
        flags[column] = bool(result[(column, "jensen_shannon", "alert")].iloc[0])
    auc = float(estimate[("roc_auc", "value")].iloc[0])
    return fit_s, measure_s, values, flags, auc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("implementation", choices=["own", "evidently", "nannyml"])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--numeric", type=int, default=90)
    parser.add_argument("--categorical", type=int, default=6)
    args = parser.parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")  # both libraries send usage telemetry otherwise
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
    from sklearn.metrics import roc_auc_score

    load = os.getloadavg()
    ref = frame(*make_week(args.n, args.numeric, args.categorical, 1, shifted=False))
    cur = frame(*make_week(args.n, args.numeric, args.categorical, 2, shifted=True))
    run = {"own": run_own, "evidently": run_evidently, "nannyml": run_nannyml}[args.implementation]
    t0 = time.perf_counter()
    fit_s, measure_s, values, flags, estimate = run(ref, cur, args.numeric, args.categorical)
    total_s = time.perf_counter() - t0
    shown = [f"num_{j}" for j in range(len(SHIFTS))] + ["num_9", "cat_0", "cat_1", "probability"]
    print(json.dumps({
        "implementation": args.implementation, "accounts": args.n,
        "features": args.numeric + args.categorical, "fit_s": round(fit_s, 3),
        "measure_s": round(measure_s, 3), "total_s": round(total_s, 3),
        "statistic": {c: round(values.get(c, float("nan")), 4) for c in shown},
        "flagged": sorted(c for c, f in flags.items() if f),
        "estimated_roc_auc": round(estimate, 4),
        "realized_roc_auc": round(float(roc_auc_score(cur["label"], cur["probability"])), 4),
        "load_average": [round(x, 2) for x in load]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
