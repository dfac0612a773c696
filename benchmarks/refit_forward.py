"""Forward test of the refit (``churnml.models.forward.forward_test``) on a book folder.

The last horizon of labeled as_of dates is held back from both models; the train-window
(protocol) model and the champion refitted on every date a book cut at the first forward date
labels are scored on it. Used for ``docs/models.md``, "Refit on the latest history"::

    churnml simulate --out /tmp/drift --accounts 3000 --seed 7 --drift price_change,product_change
    python benchmarks/refit_forward.py --data /tmp/drift --target churn
    churnml simulate --out /tmp/plain --accounts 3000 --seed 7
    python benchmarks/refit_forward.py --data /tmp/plain --target churn

Prints one markdown row and a JSON line (``--json FILE`` also writes it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.update({"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                   "DO_NOT_TRACK": "1", "MPLBACKEND": "Agg"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--target", default="churn")
    parser.add_argument("--threads", type=int, default=None, help="LightGBM num_threads")
    parser.add_argument("--rounds", default=None, help="refit rounds rule (default: config)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from churnml.data.io import load_book
    from churnml.features.catalog import load_catalog
    from churnml.models.baselines import find_truth
    from churnml.models.config import load_config
    from churnml.models.dataset import build_dataset
    from churnml.models.forward import forward_test

    t0 = time.perf_counter()
    book, _ = load_book(args.data)
    config = load_config(args.target)
    if args.threads is not None:
        config = config.with_overrides(lgb_params={**config.lgb_params, "num_threads": args.threads})
    if args.rounds is not None:
        config = config.with_overrides(refit_rounds=args.rounds)
    catalog = load_catalog()
    dataset = build_dataset(book, config, catalog=catalog)
    built = time.perf_counter()
    print(f"dataset: {len(dataset.frame):,} rows in {built - t0:.0f} s", file=sys.stderr, flush=True)
    out = forward_test(dataset, config, catalog=catalog, truth=find_truth(args.data))
    out.update({"data": str(args.data), "target": args.target,
                "seconds": time.perf_counter() - t0, "load_average": os.getloadavg()})
    p, r, d = out["protocol"], out["refit"], out["difference"]
    rules = ", ".join(f"{k} {v['rounds']}: {v['roc_auc']:.3f}" for k, v in out.get("rounds_rules", {}).items())
    print("| book | target | forward window (rows, events) | train-window model AUC (95% CI) | "
          "refit AUC (95% CI) | refit - train-window (95% CI) | oracle AUC | ECE train-window / refit | "
          "rounds protocol -> refit | rounds rules (AUC) |")
    print(f"| {args.data.name} | {args.target} | {out['forward_start']}..{out['forward_end']} "
          f"({out['forward_rows']:,}, {out['forward_positives']:,}) | "
          f"{p['roc_auc']:.3f} ({p['roc_auc_ci_low']:.3f}-{p['roc_auc_ci_high']:.3f}) | "
          f"{r['roc_auc']:.3f} ({r['roc_auc_ci_low']:.3f}-{r['roc_auc_ci_high']:.3f}) | "
          f"{d['roc_auc']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f}) | "
          f"{out.get('oracle_roc_auc', float('nan')):.3f} | {p['ece']:.3f} / {r['ece']:.3f} | "
          f"{out['protocol_best_iteration']} -> {out['refit_rounds']} | {rules} |")
    line = json.dumps(out, default=str)
    print(line)
    if args.json:
        args.json.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
