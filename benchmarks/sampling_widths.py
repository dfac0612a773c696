"""The test ROC AUC interval with and without a stratified sample of accounts, on one book.

Trains churn on the whole cached simulated book, then on stratified samples of half the
accounts (sample seeds 7 and 8) and of a quarter (seed 7), with ``refit: false`` and one
backtest fold (neither changes the test metrics), and prints one JSON line per run: test ROC AUC
and its 95% interval (bootstrap by account), the interval's width, the width estimated for the
full book from the sample (``churnml.models.sampling.full_book_width``), ECE and seconds, with
the load average. Figures: ``docs/models.md``, "Training at scale".

Usage::

    python benchmarks/sampling_widths.py 4000      # accounts of the simulated book (24 months, seed 42)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import cached_book  # benchmarks/ is on sys.path when run as a script


def main(accounts: int) -> None:
    import churnml  # noqa: F401  (sets the OpenMP wait policy before lightgbm loads)
    from churnml.data.io import load_book
    from churnml.models.baselines import find_truth
    from churnml.models.config import load_config
    from churnml.models.train import train_target

    folder = cached_book(Path(tempfile.gettempdir()) / "churnml-bench", accounts, 24, 42)
    book, _ = load_book(folder)
    config = load_config("churn").with_overrides(refit=False, backtest_folds=1)
    for n, seed in [(None, 7), (accounts // 2, 7), (accounts // 2, 8), (accounts // 4, 7)]:
        clock = time.perf_counter()
        r = train_target(book, "churn", config.with_overrides(seed=seed), truth=find_truth(folder),
                         sample_accounts=n)
        m = r.metrics
        print(json.dumps({
            "sample_accounts": n, "seed": seed, "test_roc_auc": m["test_roc_auc"],
            "low": m["test_roc_auc_ci_low"], "high": m["test_roc_auc_ci_high"],
            "width": m["test_roc_auc_ci_high"] - m["test_roc_auc_ci_low"],
            "estimate_full": m.get("test_roc_auc_ci_width_full_book_estimate"), "rate": m.get("sample_rate"),
            "oracle": m.get("oracle_test_roc_auc"), "test_ece": m["test_ece"],
            "test_accounts": int(r.dataset.part("test")["account_id"].nunique()),
            "seconds": time.perf_counter() - clock, "load": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000)
