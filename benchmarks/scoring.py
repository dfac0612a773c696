"""Benchmark of the weekly job (``churnml score``), stage by stage, with the reasons stage next
to raw LightGBM ``predict(pred_contrib=True)`` in the same run.

On a simulated book (default 50,000 accounts over 24 months, cached under ``--cache`` and
shared with the other benchmarks), scoring the data's last week with champions trained on a
smaller book of the same simulator (``--train-accounts``, trained once and kept in
``--home``; training is not part of the weekly job and is not timed here):

a. **the job** as ``churnml score`` runs it (``run_job`` minus MLflow logging: loading the
   book, features per account chunk, both models with reasons, health, alerts against last
   week, actions, the atomic parquet write, the report), on a second week so that alerts have a
   previous partition; per stage: wall seconds (summed over chunks) and the peak process RSS
   while that stage ran (sampled every 20 ms). Goals: under 2 minutes and 6 GB at 50,000
   accounts.
b. **reasons vs raw TreeSHAP**: on the same feature rows (the whole book in one frame), both
   models' ``predict_with_reasons`` (the job's reasons stage: matrix, TreeSHAP, calibration,
   top-3, sentences) against ``booster.predict(X, pred_contrib=True)`` on the prepared matrix,
   interleaved ``--repeat`` times, best of each. Goal: within 1.2x.

Usage::

    python benchmarks/scoring.py                      # 50,000 accounts
    python benchmarks/scoring.py --accounts 5000 --repeat 3

Prints a markdown table for benchmarks/README.md and a JSON line with every figure, with the
load average (the machine is shared: timings are noisy).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import cached_book  # benchmarks/ is on sys.path when run as a script


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StageClock:
    """``with clock("stage"):`` accumulates wall seconds per stage; a sampler thread keeps the
    peak process RSS seen while each stage was running (and overall)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.seconds: dict[str, float] = {}
        self.peak: dict[str, int] = {}
        self.overall_peak = self._proc.memory_info().rss
        self.current: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss
            self.overall_peak = max(self.overall_peak, rss)
            stage = self.current
            if stage is not None:
                self.peak[stage] = max(self.peak.get(stage, 0), rss)
            self._stop.wait(0.02)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        outer, self.current = self.current, stage
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0
            rss = self._proc.memory_info().rss
            self.peak[stage] = max(self.peak.get(stage, 0), rss)
            self.current = outer

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def ensure_champions(home: Path, cache: Path, accounts: int, months: int, seed: int) -> None:
    """Train and register both targets once into ``home`` (skipped when champions exist)."""
    os.environ["CHURNML_HOME"] = str(home)
    from churnml.errors import ModelNotFoundError
    from churnml.models import registry

    try:
        registry.load_champion("churn")
        registry.load_champion("expansion")
        return
    except ModelNotFoundError:
        pass
    from churnml.models.train import train_target

    book = cached_book(cache, accounts, months, seed + 1)
    for target in ("churn", "expansion"):
        log(f"training the {target} champion on {accounts:,} accounts (once, kept in {home})")
        t0 = time.perf_counter()
        registry.log_training(train_target(book, target), plots=False)
        log(f"  trained in {time.perf_counter() - t0:.1f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train-accounts", type=int, default=3_000)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "churnml-bench")
    parser.add_argument("--home", type=Path, default=None,
                        help="CHURNML_HOME holding the champions (default: <cache>/home-scoring)")
    args = parser.parse_args(argv)

    home = args.home or args.cache / "home-scoring"
    ensure_champions(home, args.cache, args.train_accounts, args.months, args.seed)
    folder = cached_book(args.cache, args.accounts, args.months, args.seed)

    import numpy as np
    import pandas as pd

    from churnml.data.io import load_book
    from churnml.features.build import build_features
    from churnml.features.labels import latest_scoring_date
    from churnml.jobs.calibrate_health import load_adopted_health
    from churnml.jobs.weekly import score_book, write_report
    from churnml.models import registry

    churn, expansion = registry.load_champion("churn"), registry.load_champion("expansion")
    health = load_adopted_health()
    out = Path(tempfile.mkdtemp(prefix="churnml-score-bench-"))
    figures: dict = {"accounts": args.accounts, "months": args.months,
                     "chunk_size": args.chunk_size, "load_average": os.getloadavg(),
                     "churn_trees": churn.booster.num_trees(),
                     "expansion_trees": expansion.booster.num_trees()}
    try:
        # -- (a) the job, on the second of two weeks ---------------------------------------------
        clock = StageClock()
        t_job = time.perf_counter()
        with clock("load"):
            book, _ = load_book(folder)
        as_of = latest_scoring_date(book)
        log(f"week 1 ({(as_of - pd.Timedelta(days=7)).date()}): previous partition")
        score_book(book, as_of - pd.Timedelta(days=7), out, churn, expansion, health,
                   chunk_size=args.chunk_size)
        del book  # week 2 loads the book again, as a new `churnml score` process would
        import gc

        gc.collect()
        clock.seconds.clear()
        clock.peak.clear()
        clock.overall_peak = 0
        log(f"week 2 ({as_of.date()}): timed")
        t_job = time.perf_counter()
        with clock("load"):
            book, _ = load_book(folder)
        with clock("score_total"):
            result = score_book(book, as_of, out, churn, expansion, health,
                                chunk_size=args.chunk_size, timer=clock)
        with clock("report"):
            report_path, summary = write_report(result, book, out)
        job_seconds = time.perf_counter() - t_job
        clock.close()
        inner = sum(v for k, v in clock.seconds.items()
                    if k not in ("load", "score_total", "report"))
        stages = {k: round(v, 2) for k, v in clock.seconds.items()}
        stages["write_and_glue"] = round(clock.seconds["score_total"] - inner, 2)
        figures["job"] = {
            "rows": result.rows, "seconds": round(job_seconds, 2), "stages": stages,
            "peak_rss_gb": {k: round(v / 2**30, 2) for k, v in clock.peak.items()},
            "overall_peak_rss_gb": round(clock.overall_peak / 2**30, 2),
            "report_mb": round(report_path.stat().st_size / 2**20, 2),
        }
        log(json.dumps(figures["job"]))

        # -- (b) reasons vs raw pred_contrib on the same rows -------------------------------------
        features = build_features(book, [as_of])
        del book
        mats = {m.target: m.matrix(features) for m in (churn, expansion)}
        reasons_s, raw_s, proba_s = [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for m in (churn, expansion):
                m.predict_with_reasons(features, top_k=3)
            reasons_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for m in (churn, expansion):
                m.booster.predict(mats[m.target], pred_contrib=True)
            raw_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for m in (churn, expansion):
                m.predict_proba(features)
            proba_s.append(time.perf_counter() - t0)
        figures["reasons"] = {
            "rows": len(features), "reasons_s": round(min(reasons_s), 2),
            "raw_pred_contrib_s": round(min(raw_s), 2),
            "ratio": round(min(reasons_s) / min(raw_s), 3),
            "probabilities_only_s": round(min(proba_s), 3),
        }
        log(json.dumps(figures["reasons"]))
    finally:
        shutil.rmtree(out, ignore_errors=True)

    # -- projections ------------------------------------------------------------------------------
    per_account = figures["job"]["seconds"] / max(args.accounts, 1)
    figures["projection_1m_accounts_min_this_machine"] = round(per_account * 1_000_000 / 60, 1)

    j, r = figures["job"], figures["reasons"]
    lines = [
        f"| stage ({args.accounts:,} accounts, {j['rows']:,} active, chunks of "
        f"{args.chunk_size:,}) | wall s | peak RSS GB |",
        "|---|---:|---:|",
    ]
    order = ["load", "features", "models_and_reasons", "health", "alerts", "actions",
             "write_and_glue", "report"]
    for k in order:
        if k in j["stages"]:
            lines.append(f"| {k} | {j['stages'][k]:.1f} | {j['peak_rss_gb'].get(k, float('nan')):.2f} |")
    lines.append(f"| **job total** (goal < 120 s, < 6 GB) | **{j['seconds']:.1f}** | "
                 f"**{j['overall_peak_rss_gb']:.2f}** |")
    lines.append("")
    lines.append(f"| reasons stage vs raw LightGBM ({r['rows']:,} rows, both models) | s |")
    lines.append("|---|---:|")
    lines.append(f"| `predict_with_reasons` (matrix, TreeSHAP, calibration, top-3, sentences) | {r['reasons_s']:.2f} |")
    lines.append(f"| raw `booster.predict(X, pred_contrib=True)` | {r['raw_pred_contrib_s']:.2f} |")
    lines.append(f"| ratio (goal <= 1.2) | {r['ratio']:.2f} |")
    lines.append(f"| probabilities only (`predict_proba`) | {r['probabilities_only_s']:.3f} |")
    print("\n".join(lines))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
