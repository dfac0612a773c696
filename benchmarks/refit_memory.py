"""Peak memory of the refit step alone (issue 10): ``churnml.models.train.refit_on_all`` on a
cached simulated book, after the protocol's fit, with the RSS of this process sampled every
0.05 s.

Prints one JSON line: the RSS just before the refit, the peak during it, the refit's wall
seconds and a SHA-256 of the champion's model text and calibrator (equal hashes = the same
model). Run it twice, once with ``PYTHONPATH`` at the code before a change (the reference)
and once after, in the same minutes::

    PYTHONPATH=<old>/src python benchmarks/refit_memory.py --accounts 10000 &
    PYTHONPATH=<new>/src python benchmarks/refit_memory.py --accounts 10000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import cached_book  # benchmarks/ is on sys.path when run as a script


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import psutil

    from churnml.data.io import load_book
    from churnml.features.catalog import load_catalog
    from churnml.models.config import load_config
    from churnml.models.dataset import build_dataset
    from churnml.models.train import fit_for_policy, refit_on_all

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--target", default="churn")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "churnml-bench")
    args = parser.parse_args(argv)

    folder = cached_book(args.cache, args.accounts, args.months, args.seed)
    book, _ = load_book(folder)
    config = load_config(args.target)
    catalog = load_catalog()
    dataset = build_dataset(book, config, catalog=catalog)
    del book
    protocol, _ = fit_for_policy(dataset, config, catalog, None)
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], proc.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    load = os.getloadavg()[0]
    clock = time.perf_counter()
    thread.start()
    model, details = refit_on_all(dataset, config, protocol)
    stop.set()
    thread.join()
    seconds = time.perf_counter() - clock
    digest = hashlib.sha256(model.booster.model_to_string().encode())
    digest.update(np.asarray(model.calibrator.transform(np.linspace(0.001, 0.999, 999))).tobytes())
    digest.update(json.dumps(model.info["feature_medians"], sort_keys=True).encode())
    print(json.dumps({"accounts": args.accounts, "rows": details["rows"],
                      "features": len(model.feature_names), "load_at_refit": load,
                      "rss_before_refit_gb": round(before / 1024 ** 3, 3),
                      "rss_peak_in_refit_gb": round(peak[0] / 1024 ** 3, 3),
                      "refit_extra_gb": round((peak[0] - before) / 1024 ** 3, 3),
                      "refit_s": round(seconds, 1), "model_sha256": digest.hexdigest()[:16]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
