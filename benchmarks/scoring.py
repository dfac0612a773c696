"""Benchmark of the weekly job (``churnml score``), stage by stage, with the reasons stage next
to raw LightGBM ``predict(pred_contrib=True)`` in the same run.

On a simulated book (default 50,000 accounts over 24 months, cached under ``--cache`` and
shared with the other benchmarks), scoring the data's last week with champions trained on a
smaller book of the same simulator (``--train-accounts``, trained once and kept in
``--home``; training is not part of the weekly job and is not timed here):

a. **the job** as ``churnml score`` runs it (``run_job`` minus MLflow logging: loading the
   book, features and the week-before features per account chunk, every outcome's model with
   reasons, health, alerts against last week, actions, the atomic parquet write, the report),
   on a second week so that alerts have a previous partition; per stage: wall seconds (summed
   over chunks) and the peak process RSS while that stage ran (sampled every 20 ms); the
   week-before features (``churnml.scoring.compare.week_before``) are part of the features
   stage and also reported on their own. Goals: under 60 s and 6 GB at 50,000 accounts.
b. **reasons vs raw TreeSHAP**: on the same feature rows (the whole book in one frame), every
   outcome's model's ``predict_with_reasons`` (the job's reasons stage: matrix, TreeSHAP, calibration,
   top-3, sentences) against ``booster.predict(X, pred_contrib=True)`` on the prepared matrix,
   interleaved ``--repeat`` times, best of each. Goal: within 1.2x.
c. **timing reasons vs raw TreeSHAP** (when the home has a ``churnml-time-to-event``
   champion): on the same rows, ``SurvivalModel.timing_reasons`` (the job's ``timing_reasons``
   stage: current-period matrix, multiclass TreeSHAP, class minus "none", grouping, top-3 per
   outcome, sentences) against ``booster.predict(X, pred_contrib=True)`` on the prepared
   current-period matrix, and the model's ``predict`` (the incidences, the ``time_to_event``
   stage) for scale; interleaved ``--repeat`` times, best of each.

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
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

# benchmarks/ is on sys.path when run as a script
from _common import book_arguments, cached_book, ensure_champions, load_average, log, print_results


class StageClock:
    """``with clock("stage"):`` accumulates wall seconds per stage; a sampler thread keeps the
    peak process RSS seen while each stage was running (and overall). Stages nest: a sample
    counts for every stage open at the time."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.seconds: dict[str, float] = {}
        self.peak: dict[str, int] = {}
        self.overall_peak = self._proc.memory_info().rss
        self.active: tuple[str, ...] = ()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss
            self.overall_peak = max(self.overall_peak, rss)
            for stage in self.active:
                self.peak[stage] = max(self.peak.get(stage, 0), rss)
            self._stop.wait(0.02)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        outer = self.active
        self.active = outer + (stage,)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0
            rss = self._proc.memory_info().rss
            self.peak[stage] = max(self.peak.get(stage, 0), rss)
            self.active = outer

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    book_arguments(parser, accounts=50_000)
    parser.add_argument("--repeat", type=int, default=2)
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
    from churnml.health.adopted import load_adopted_health
    from churnml.jobs import weekly
    from churnml.jobs.weekly import champion_models, score_book, write_report

    models, missing = champion_models()  # every outcome with a champion, as `churnml score`
    if missing:
        raise SystemExit(f"no champion for {missing} in {home}")
    health = load_adopted_health()
    # the time-to-event champion, when the home has one, as `churnml score` loads it
    time_to_event = weekly.champion_time_to_event()
    out = Path(tempfile.mkdtemp(prefix="churnml-score-bench-"))
    load_start = load_average()
    log(f"load average at start (1/5/15 min): {load_start}")
    figures: dict = {"accounts": args.accounts, "months": args.months,
                     "chunk_size": args.chunk_size, "load_average": load_start,
                     "outcomes": list(models),
                     "trees": {name: m.booster.num_trees() for name, m in models.items()},
                     "model_versions": {name: str(m.version) for name, m in models.items()},
                     "time_to_event_version": (None if time_to_event is None
                                               else str(time_to_event.version)),
                     "time_to_event_trees": (None if time_to_event is None
                                             else time_to_event.booster.num_trees())}

    # the week-before features are timed inside score_book's "features" stage; a wrapper
    # times them on their own too (a nested stage of the clock, not counted twice)
    book_week_before = weekly.book_week_before
    timer_ref: dict = {}

    def timed_week_before(*a, **kw):
        clock_ = timer_ref.get("clock")
        if clock_ is None:
            return book_week_before(*a, **kw)
        with clock_("week_before"):
            return book_week_before(*a, **kw)

    weekly.book_week_before = timed_week_before
    try:
        # -- (a) the job, on the second of two weeks ---------------------------------------------
        clock = StageClock()
        t_job = time.perf_counter()
        with clock("load"):
            book, _ = load_book(folder)
        as_of = latest_scoring_date(book)
        log(f"week 1 ({(as_of - pd.Timedelta(days=7)).date()}): previous partition")
        score_book(book, as_of - pd.Timedelta(days=7), out, models, health,
                   chunk_size=args.chunk_size, time_to_event=time_to_event)
        del book  # week 2 loads the book again, as a new `churnml score` process would
        import gc

        gc.collect()
        clock.seconds.clear()
        clock.peak.clear()
        clock.overall_peak = 0
        timer_ref["clock"] = clock
        log(f"week 2 ({as_of.date()}): timed")
        t_job = time.perf_counter()
        with clock("load"):
            book, _ = load_book(folder)
        with clock("score_total"):
            result = score_book(book, as_of, out, models, health,
                                chunk_size=args.chunk_size, timer=clock,
                                time_to_event=time_to_event)
        with clock("report"):
            report_path, summary = write_report(result, book, out)
        job_seconds = time.perf_counter() - t_job
        timer_ref.clear()
        clock.close()
        inner = sum(v for k, v in clock.seconds.items()
                    if k not in ("load", "score_total", "report", "week_before"))
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
        mats = {name: m.matrix(features) for name, m in models.items()}
        reasons_s, raw_s, proba_s = [], [], []
        per_model: dict = {name: {"reasons": [], "raw": []} for name in models}
        for _ in range(args.repeat):
            total_reasons = total_raw = total_proba = 0.0
            for name, m in models.items():
                t0 = time.perf_counter()
                m.predict_with_reasons(features, top_k=3)
                dt = time.perf_counter() - t0
                per_model[name]["reasons"].append(dt)
                total_reasons += dt
                t0 = time.perf_counter()
                m.booster.predict(mats[name], pred_contrib=True)
                dt = time.perf_counter() - t0
                per_model[name]["raw"].append(dt)
                total_raw += dt
                t0 = time.perf_counter()
                m.predict_proba(features)
                total_proba += time.perf_counter() - t0
            reasons_s.append(total_reasons)
            raw_s.append(total_raw)
            proba_s.append(total_proba)
        figures["reasons"] = {
            "rows": len(features), "models": list(models),
            "reasons_s": round(min(reasons_s), 2),
            "raw_pred_contrib_s": round(min(raw_s), 2),
            "ratio": round(min(reasons_s) / min(raw_s), 3),
            "probabilities_only_s": round(min(proba_s), 3),
            "per_model": {name: {"reasons_s": round(min(v["reasons"]), 2),
                                 "raw_pred_contrib_s": round(min(v["raw"]), 2),
                                 "ratio": round(min(v["reasons"]) / min(v["raw"]), 3)}
                          for name, v in per_model.items()},
        }
        log(json.dumps(figures["reasons"]))

        # -- (c) timing reasons vs raw multiclass pred_contrib on the same rows ------------------
        if time_to_event is not None:
            X0 = time_to_event.current_period_matrix(features)
            timing_s, timing_raw_s, incidences_s = [], [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                time_to_event.timing_reasons(features, 3)
                timing_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                time_to_event.booster.predict(X0, pred_contrib=True)
                timing_raw_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                time_to_event.predict(features)
                incidences_s.append(time.perf_counter() - t0)
            figures["timing_reasons"] = {
                "rows": len(features), "trees": time_to_event.booster.num_trees(),
                "timing_reasons_s": round(min(timing_s), 2),
                "raw_pred_contrib_s": round(min(timing_raw_s), 2),
                "ratio": round(min(timing_s) / min(timing_raw_s), 3),
                "incidences_s": round(min(incidences_s), 2),
            }
            log(json.dumps(figures["timing_reasons"]))
    finally:
        weekly.book_week_before = book_week_before
        shutil.rmtree(out, ignore_errors=True)
    figures["load_average_end"] = load_average()
    log(f"load average at end (1/5/15 min): {figures['load_average_end']}")

    # -- projections ------------------------------------------------------------------------------
    per_account = figures["job"]["seconds"] / max(args.accounts, 1)
    figures["projection_1m_accounts_min_this_machine"] = round(per_account * 1_000_000 / 60, 1)

    j, r = figures["job"], figures["reasons"]
    lines = [
        f"| stage ({args.accounts:,} accounts, {j['rows']:,} active, chunks of "
        f"{args.chunk_size:,}) | wall s | peak RSS GB |",
        "|---|---:|---:|",
    ]
    order = ["load", "features", "week_before", "models_and_reasons", "time_to_event",
             "timing_reasons", "health", "alerts", "actions", "assemble", "write_and_glue",
             "report"]
    for k in order:
        if k in j["stages"]:
            label = "(of which week_before)" if k == "week_before" else k
            lines.append(f"| {label} | {j['stages'][k]:.1f} | "
                         f"{j['peak_rss_gb'].get(k, float('nan')):.2f} |")
    for k in sorted(set(j["stages"]) - set(order) - {"score_total"}):
        lines.append(f"| {k} | {j['stages'][k]:.1f} | {j['peak_rss_gb'].get(k, float('nan')):.2f} |")
    lines.append(f"| **job total** (goal < 60 s, < 6 GB) | **{j['seconds']:.1f}** | "
                 f"**{j['overall_peak_rss_gb']:.2f}** |")
    lines.append("")
    lines.append(f"| reasons stage vs raw LightGBM ({r['rows']:,} rows, "
                 f"{len(r['models'])} models: {', '.join(r['models'])}) | s |")
    lines.append("|---|---:|")
    lines.append(f"| `predict_with_reasons` (matrix, TreeSHAP, calibration, top-3, sentences) | {r['reasons_s']:.2f} |")
    lines.append(f"| raw `booster.predict(X, pred_contrib=True)` | {r['raw_pred_contrib_s']:.2f} |")
    lines.append(f"| ratio (goal <= 1.2) | {r['ratio']:.2f} |")
    lines.append(f"| probabilities only (`predict_proba`) | {r['probabilities_only_s']:.3f} |")
    for name, v in r["per_model"].items():
        lines.append(f"| {name} ({figures['trees'][name]} trees): reasons / raw | "
                     f"{v['reasons_s']:.2f} / {v['raw_pred_contrib_s']:.2f} ({v['ratio']:.2f}x) |")
    t = figures.get("timing_reasons")
    if t is not None:
        lines.append("")
        lines.append(f"| timing reasons vs raw LightGBM ({t['rows']:,} rows, time-to-event "
                     f"v{figures['time_to_event_version']}, {t['trees']} trees: 4 classes) | s |")
        lines.append("|---|---:|")
        lines.append(f"| `timing_reasons` (current-period matrix, TreeSHAP, class - none, "
                     f"top-3 x 3 outcomes, sentences) | {t['timing_reasons_s']:.2f} |")
        lines.append(f"| raw `booster.predict(X0, pred_contrib=True)` | {t['raw_pred_contrib_s']:.2f} |")
        lines.append(f"| ratio | {t['ratio']:.2f} |")
        lines.append(f"| incidences (`predict`, 12 periods) | {t['incidences_s']:.2f} |")
    lines.append("")
    print_results(lines, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
