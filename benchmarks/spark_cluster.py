"""Benchmark of ``churnml score --engine spark`` on this machine's Spark standalone cluster
(a master and one worker as separate JVMs on 127.0.0.1, started from the pyspark package by
``tests/support/spark_cluster.py``; not local mode), next to the local engine on the same book
in the same run.

On a simulated book (``--accounts``, cached under ``--cache`` and shared with the other
benchmarks), scoring the data's last week after a first week was scored by the local engine
(so the executors also read last week's partition for the alerts), with champions trained once
on a smaller book of the same simulator (``--train-accounts``, kept in ``--home``; training is
not timed):

a. **reference, local engine**: ``load_book`` + ``score_book`` (chunks of ``--chunk-size``),
   wall seconds and peak RSS of this process, before the cluster starts;
b. **Spark standalone**: the cluster's start, then ``score_book_spark`` (the engine of
   ``churnml score --engine spark``; MLflow logging and the HTML report left out, as in
   ``benchmarks/scoring.py``) with the driver in this process. Per Spark stage (from the
   driver's REST API: ``/api/v1/applications/<id>/stages``): wall seconds, executor run time,
   shuffle read/write, the peak RSS of the driver (this Python + the driver JVM) and of the
   cluster (master, worker, executor JVM, its Python workers) while the stage ran, sampled
   every 200 ms; the driver-side work after the last Spark stage (the whole book's queue and
   the parquet write) as its own line;
c. parity: largest difference of the probabilities between the two engines' files.

Memory is shared with other engineers: keep ``--worker-memory`` + ``--driver-memory`` + the
Python workers (one per worker core, each holding one shard's tables, features and output rows;
measured in benchmarks/README.md) under about 7 GB. The local engine's reference runs in a child process, so its memory is given back
before the cluster starts.

Usage::

    python benchmarks/spark_cluster.py --accounts 10000
    python benchmarks/spark_cluster.py --accounts 50000 --shards 16
    python benchmarks/chunked_book.py --accounts 100000 --out /tmp/book-100k   # then:
    python benchmarks/spark_cluster.py --accounts 100000 --book /tmp/book-100k --skip-local
    # a book too large for the local engine (no earlier week), with the product's models:
    # three outcome champions and the time-to-event champion of the weekly benchmark's home
    python benchmarks/spark_cluster.py --accounts 1000000 --book /tmp/book-1m \
        --no-previous-week --home H --outcomes churn,expansion,contraction --time-to-event

Prints a markdown table for benchmarks/README.md and a JSON line with every figure, with the
load average (the machine is shared: timings are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

# benchmarks/ is on sys.path when run as a script
from _common import book_arguments, cached_book, ensure_champions, load_average, log, print_results
from _common import simulator_fingerprint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.spark_cluster import free_port, standalone_cluster  # noqa: E402

QUICK_EVALUATION = dict(bootstrap_resamples=20, backtest_folds=1)  # the models stay full-size


class TreeSampler:
    """RSS of two process trees (roots and all their descendants), every ``interval`` s."""

    def __init__(self, interval: float = 0.2) -> None:
        self.roots: dict[str, list[int]] = {"driver": [os.getpid()], "cluster": []}
        self.samples: list[tuple[float, int, int]] = []  # (epoch s, driver, cluster) bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    @staticmethod
    def _tree_rss(pids: list[int]) -> int:
        import psutil

        total = 0
        for pid in pids:
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        return total

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            # the cluster's daemons are children of this process too: the driver's share is
            # the whole tree minus the cluster's
            cluster = self._tree_rss(self.roots["cluster"])
            everything = self._tree_rss(self.roots["driver"])
            self.samples.append((time.time(), max(0, everything - cluster), cluster))

    def peak(self, start: float, end: float) -> tuple[int, int]:
        inside = [s for s in self.samples if start <= s[0] <= end] or \
            [min(self.samples, key=lambda s: abs(s[0] - start))]
        return max(s[1] for s in inside), max(s[2] for s in inside)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _epoch(text: str) -> float:
    """Spark REST time (``2026-12-03T15:10:01.123GMT``) to epoch seconds."""
    from datetime import datetime, timezone

    return datetime.strptime(text.replace("GMT", ""), "%Y-%m-%dT%H:%M:%S.%f") \
        .replace(tzinfo=timezone.utc).timestamp()


def spark_stages(ui: str, app_id: str) -> list[dict]:
    with urllib.request.urlopen(f"{ui}/api/v1/applications/{app_id}/stages?status=complete",
                                timeout=30) as response:
        stages = json.loads(response.read())
    return sorted(stages, key=lambda s: (s["submissionTime"], s["stageId"]))


class Progress:
    """Logs the running stages' finished / total tasks every ``interval`` s from the driver's
    REST API, so a long run shows its pace (and can be projected if it must be stopped)."""

    def __init__(self, ui: str, app_id: str, interval: float = 60.0) -> None:
        self.url = f"{ui}/api/v1/applications/{app_id}/stages?status=active"
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    active = json.loads(response.read())
            except Exception as exc:  # the UI may be busy or gone: progress is best effort
                log(f"progress: {type(exc).__name__}")
                continue
            parts = [f"stage {s['stageId']} {s['name'].split(' at ')[0]}: "
                     f"{s['numCompleteTasks']}/{s['numTasks']} tasks" for s in active]
            log(f"progress at {time.perf_counter() - self._t0:.0f} s, load "
                f"{os.getloadavg()[0]:.1f}: " + ("; ".join(parts) or "driver work"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _local_engine(folder: Path, local_out: Path, chunk_size: int, skip: bool):
    """Last week's partition by the local engine, then (unless ``skip``) the timed week:
    ``(as_of, figures or None)``."""
    import pandas as pd

    from churnml.data.io import load_book
    from churnml.features.labels import latest_scoring_date
    from churnml.health.adopted import load_adopted_health
    from churnml.jobs.weekly import champion_models, score_book

    from _common import Measure

    models, _ = champion_models()
    health = load_adopted_health()
    book, _ = load_book(folder)
    as_of = latest_scoring_date(book)
    score_book(book, as_of - pd.Timedelta(days=7), local_out, models, health,
               chunk_size=chunk_size)
    del book
    if skip:
        return as_of, None
    with Measure() as m:
        book, _ = load_book(folder)
        local = score_book(book, as_of, local_out, models, health, chunk_size=chunk_size)
        del book
    return as_of, {"rows": local.rows, "seconds": round(m.seconds, 1),
                   "peak_rss_gb": round(m.peak / 2**30, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    book_arguments(parser, accounts=10_000)
    parser.add_argument("--shards", type=int, default=8,
                        help="the least number of shards (the engine adds more for a big book)")
    parser.add_argument("--shard-accounts", type=int, default=None,
                        help="at most this many accounts per shard (default: the engine's)")
    parser.add_argument("--book", type=Path, default=None,
                        help="a book folder to score instead of the cached simulated book "
                             "(e.g. one from benchmarks/chunked_book.py); --accounts must match")
    parser.add_argument("--worker-cores", type=int, default=2)
    parser.add_argument("--worker-memory", default="3g", help="executor heap (the worker's)")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--home", type=Path, default=None,
                        help="CHURNML_HOME with the champions (default: <cache>/home-spark-sim<v>)")
    parser.add_argument("--outcomes", default="churn,expansion",
                        help="outcomes to train champions for (the job scores those that have one)")
    parser.add_argument("--skip-local", action="store_true", help="no local-engine reference")
    parser.add_argument("--time-to-event", action="store_true",
                        help="also score with the home's churnml-time-to-event champion (as "
                             "`churnml score` does when it has one; train it first with `churnml "
                             "train --target time_to_event`)")
    parser.add_argument("--no-previous-week", action="store_true",
                        help="score the week without an earlier partition, so the local engine "
                             "never loads the book (a book too large for one machine's memory; "
                             "the alerts that compare with last week's tier are not raised); "
                             "as_of is then the revenue history's end, as `churnml score "
                             "--engine spark` users would pass it. Implies --skip-local")
    args = parser.parse_args(argv)
    if args.no_previous_week:
        args.skip_local = True

    home = args.home or args.cache / f"home-spark-sim{simulator_fingerprint()}"
    ensure_champions(home, args.cache, args.train_accounts, args.months, args.seed,
                     args.outcomes.split(","), **QUICK_EVALUATION)
    folder = args.book or cached_book(args.cache, args.accounts, args.months, args.seed)

    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from churnml.health.adopted import load_adopted_health
    from churnml.jobs.weekly import champion_models, champion_time_to_event, partition_dir

    from _common import Measure

    models, missing = champion_models()
    versions = {name: str(m.version) for name, m in models.items()}
    time_to_event = champion_time_to_event() if args.time_to_event else None
    if args.time_to_event and time_to_event is None:
        parser.error(f"--time-to-event: {home} has no churnml-time-to-event champion")
    health = load_adopted_health()
    work = Path(tempfile.mkdtemp(prefix="churnml-spark-bench-"))
    local_out, spark_out = work / "local", work / "spark"
    figures: dict = {"accounts": args.accounts, "months": args.months, "shards": args.shards,
                     "worker_cores": args.worker_cores, "worker_memory": args.worker_memory,
                     "driver_memory": args.driver_memory, "outcomes": list(models),
                     "time_to_event": None if time_to_event is None
                     else str(getattr(time_to_event, "version", "?")),
                     "load_average": load_average()}
    log(f"load average at start (1/5/15 min): {figures['load_average']}")
    try:
        # -- (a) the local engine: last week's partition, then the timed week, in a child
        # process (a large book's memory is given back before the cluster starts) -------------
        import multiprocessing

        if args.no_previous_week:
            from churnml.data.io import folder_data_end
            from churnml.features.windows import to_as_of

            as_of = to_as_of(folder_data_end(folder))
            figures["previous_week"] = "none (--no-previous-week)"
        else:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                as_of, local_figures = pool.apply(
                    _local_engine, (folder, local_out, args.chunk_size, args.skip_local))
            if local_figures is not None:
                figures["local"] = local_figures
                log(json.dumps({"local": figures["local"]}))
            earlier = as_of - pd.Timedelta(days=7)
            shutil.copytree(partition_dir(local_out, earlier), partition_dir(spark_out, earlier))
        figures["as_of"] = f"{as_of:%Y-%m-%d}"

        # -- (b) the standalone cluster ---------------------------------------------------------
        src = str(Path(__file__).resolve().parents[1] / "src")
        pythonpath = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
        os.environ["PYTHONPATH"] = pythonpath
        sampler = TreeSampler()
        t0 = time.perf_counter()
        with standalone_cluster(work / "cluster", cores=args.worker_cores,
                                memory=args.worker_memory, daemon_memory="256m",
                                env={"PYTHONPATH": pythonpath}, timeout=180) as cluster:
            figures["cluster_start_s"] = round(time.perf_counter() - t0, 1)
            sampler.roots["cluster"] = cluster.pids()
            os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            from pyspark.sql import SparkSession

            ui_port = free_port()
            t_session = time.perf_counter()
            spark = (SparkSession.builder.appName("churnml-score-benchmark")
                     .master(cluster.master_url)
                     .config("spark.driver.memory", args.driver_memory)
                     .config("spark.executor.memory", args.worker_memory)
                     .config("spark.executor.cores", str(args.worker_cores))
                     .config("spark.cores.max", str(args.worker_cores))
                     .config("spark.ui.enabled", "true").config("spark.ui.port", str(ui_port))
                     .config("spark.ui.showConsoleProgress", "false")
                     # the same settings as churnml.jobs.spark.spark_session
                     .config("spark.sql.session.timeZone", "UTC")
                     .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                     .config("spark.sql.legacy.parquet.nanosAsLong", "true")
                     .getOrCreate())
            figures["session_start_s"] = round(time.perf_counter() - t_session, 1)
            from churnml.jobs.spark import SHARD_ACCOUNTS, score_book_spark, shard_count

            per_shard = args.shard_accounts or SHARD_ACCOUNTS
            figures["shards_used"] = shard_count(args.accounts, args.shards, per_shard)
            t_run = time.time()
            progress = Progress(f"http://127.0.0.1:{ui_port}", spark.sparkContext.applicationId)
            try:
                with Measure() as m:
                    result = score_book_spark(folder, as_of, spark_out, versions, health,
                                              shards=args.shards, shard_accounts=per_shard,
                                              spark=spark, time_to_event=time_to_event)
            finally:
                progress.close()
            t_end = time.time()
            app_id = spark.sparkContext.applicationId
            stages = spark_stages(f"http://127.0.0.1:{ui_port}", app_id)
            spark.stop()
        sampler.close()
        figures["cluster_stopped"] = all(p.poll() is not None for p in cluster.processes)
        rows = []
        for s in stages:
            start, end = _epoch(s["submissionTime"]), _epoch(s["completionTime"])
            driver_peak, cluster_peak = sampler.peak(start, end)
            rows.append({"stage": s["stageId"], "name": s["name"].split(" at ")[0],
                         "tasks": s["numTasks"], "wall_s": round(end - start, 1),
                         "executor_run_s": round(s["executorRunTime"] / 1000, 1),
                         "shuffle_read_mb": round(s["shuffleReadBytes"] / 2**20, 1),
                         "shuffle_write_mb": round(s["shuffleWriteBytes"] / 2**20, 1),
                         "input_mb": round(s["inputBytes"] / 2**20, 1),
                         "driver_peak_gb": round(driver_peak / 2**30, 2),
                         "cluster_peak_gb": round(cluster_peak / 2**30, 2),
                         "start": start, "end": end})
        last_end = max((r["end"] for r in rows), default=t_run)
        driver_peak, cluster_peak = sampler.peak(last_end, t_end)
        figures["spark"] = {
            "rows": result.rows, "seconds": round(m.seconds, 1),
            "driver_after_last_stage_s": round(t_end - last_end, 1),
            "driver_after_last_stage_peak_gb": round(driver_peak / 2**30, 2),
            "first_stage_after_s": round(min((r["start"] for r in rows), default=t_run) - t_run, 1),
            "overall_driver_peak_gb": round(max(s[1] for s in sampler.samples) / 2**30, 2),
            "overall_cluster_peak_gb": round(max(s[2] for s in sampler.samples) / 2**30, 2),
            "stages": [{k: v for k, v in r.items() if k not in ("start", "end")} for r in rows],
            # the engine's own clock: the driver's steps and, as shard:<stage>, the seconds the
            # Python workers spent per stage of the shards (summed over shards)
            "engine_seconds": {k: round(v, 1) for k, v in result.stage_seconds.items()},
        }
        # -- (c) parity ---------------------------------------------------------------------------
        a = pd.read_parquet(partition_dir(local_out, as_of) / "scores.parquet") \
            if "local" in figures else None
        b = pd.read_parquet(result.scores_path)
        figures["parity"] = "not checked (--skip-local)" if a is None else {
            "same_accounts": a["account_id"].tolist() == b["account_id"].tolist(),
            "max_abs_diff": {c: float(np.nanmax(np.abs(a[c] - b[c]))) for c in
                             (f"{o}_probability" for o in models)},
            "identical_table": pq.read_table(partition_dir(local_out, as_of) / "scores.parquet")
            .equals(pq.read_table(result.scores_path)),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures["load_average_end"] = load_average()
    log(f"load average at end (1/5/15 min): {figures['load_average_end']}")

    sp = figures["spark"]
    per_account = sp["seconds"] / args.accounts
    figures["projection_1m_min_one_worker"] = round(per_account * 1_000_000 / 60, 1)
    lines = [f"| Spark stage ({args.accounts:,} accounts, {sp['rows']:,} active, "
             f"{figures['shards_used']} "
             f"shards, 1 worker x {args.worker_cores} cores) | tasks | wall s | executor s | "
             "shuffle read / write MB | driver peak GB | cluster peak GB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines.append(f"| driver: session start, read the schema, learn the feature columns, load "
                 f"the models (before the first stage) | | {sp['first_stage_after_s']:.1f} | | | | |")
    for r in sp["stages"]:
        lines.append(f"| {r['stage']}: {r['name']} | {r['tasks']} | {r['wall_s']:.1f} | "
                     f"{r['executor_run_s']:.1f} | {r['shuffle_read_mb']:.0f} / "
                     f"{r['shuffle_write_mb']:.0f} | {r['driver_peak_gb']:.2f} | "
                     f"{r['cluster_peak_gb']:.2f} |")
    lines.append(f"| driver: this week's queue over the book, parquet write | | "
                 f"{sp['driver_after_last_stage_s']:.1f} | | | "
                 f"{sp['driver_after_last_stage_peak_gb']:.2f} | |")
    lines.append(f"| **Spark engine total** (cluster start {figures['cluster_start_s']:.0f} s, "
                 f"session {figures['session_start_s']:.0f} s, not included) | | "
                 f"**{sp['seconds']:.1f}** | | | **{sp['overall_driver_peak_gb']:.2f}** | "
                 f"**{sp['overall_cluster_peak_gb']:.2f}** |")
    if "local" in figures:
        lines.append(f"| reference: local engine, same book and week (load + score) | | "
                     f"{figures['local']['seconds']:.1f} | | | "
                     f"{figures['local']['peak_rss_gb']:.2f} | |")
    lines.append("")
    engine = sp["engine_seconds"]
    lines.append("| the engine's own clock | seconds |")
    lines.append("|---|---:|")
    for key, value in engine.items():
        lines.append(f"| {key} | {value:.1f} |")
    lines.append("")
    lines.append(f"parity: {figures['parity']}; projection to 1,000,000 accounts on this one "
                 f"worker: {figures['projection_1m_min_one_worker']} min")
    print_results(lines, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
