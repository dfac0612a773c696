"""Model quality on simulated books against the oracle (issue 10's goal: averaged over three
seeds no configuration was tuned on, at least 90% of the way from 0.5 to the oracle, ECE under
0.02). Not a timing benchmark: results go into docs/models.md ("Measured ...").

For one book (a folder written by ``churnml simulate``, with its ``_truth``) and one outcome,
prints one JSON line with the protocol's test metrics of ``train_target(book, target)``: the
model's AUC and its 95% interval, the health score's, the logistic regression's and the
oracle's AUC, the share of the way from 0.5 to the oracle, and the ECE. It follows
``train_target``'s path (``build_dataset``, the leakage guard, ``fit_model``, ``evaluate``) and
skips the backtest and the refit, which do not change these figures::

    churnml simulate --out /tmp/q/b71 --accounts 5000 --months 24 --seed 71
    python benchmarks/quality_seeds.py /tmp/q/b71 churn [--catalog CATALOG.yaml] [--config MODEL.yaml]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    from churnml.data.io import load_book
    from churnml.features.catalog import load_catalog
    from churnml.models import leakage
    from churnml.models.baselines import find_truth
    from churnml.models.config import load_config
    from churnml.models.dataset import build_dataset
    from churnml.models.train import evaluate, fit_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("book", type=Path, help="a simulated data folder (with _truth)")
    parser.add_argument("target", help="the outcome (churn, expansion, contraction)")
    parser.add_argument("--catalog", default=None, help="feature catalog (default: the project's)")
    parser.add_argument("--config", default=None, help="model config (default: models/<target>.yaml)")
    args = parser.parse_args(argv)

    clock = time.perf_counter()
    book, _ = load_book(args.book)
    truth = find_truth(args.book)
    if truth is None:
        raise SystemExit(f"{args.book}: no _truth folder, so no oracle (use a simulated book)")
    config = load_config(args.target, path=args.config)
    catalog = load_catalog(args.catalog)
    dataset = build_dataset(book, config, catalog=catalog)
    leakage.guard_training(dataset, config, book=book, truth=truth)
    if dataset.split.policy != "time":
        raise SystemExit(f"split policy {dataset.split.policy}: this script reports the time split only")
    model, info = fit_model(dataset, config, catalog)
    m, _, _ = evaluate(model, dataset, config, truth=truth)
    auc, oracle = m["test_roc_auc"], m["oracle_test_roc_auc"]
    out = {"book": str(args.book), "target": args.target, "catalog": args.catalog, "config": args.config,
           "auc": auc, "ci_low": m["test_roc_auc_ci_low"], "ci_high": m["test_roc_auc_ci_high"],
           "health": m["health_test_roc_auc"], "logreg": m["logreg_test_roc_auc"], "oracle": oracle,
           "oracle_coverage": m["oracle_test_coverage"], "way": (auc - 0.5) / (oracle - 0.5),
           "ece": m["test_ece"], "best_iteration": info.get("best_iteration"),
           "split": {k: str(v) for k, v in dataset.split.describe().items()},
           "seconds": round(time.perf_counter() - clock)}
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
