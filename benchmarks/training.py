"""Benchmark of model training and of reasons, each next to raw LightGBM in the same run.

On a simulated book (default 5,000 accounts over 24 months, cached under ``--cache``):

a. **features and labels**: ``build_features`` and ``observation_grid`` on every labeled weekly
   as_of date, then ``assemble`` (join, windows, feature selection): what ``churnml train``
   does before any model is fitted, reported apart;
b. **model fit**: the pipeline's fit step (``churnml.models.train.fit_model``: feature matrix,
   monotone checks, LightGBM with early stopping on the calibration window, trimming,
   calibration chosen by cross-validation) against raw ``lightgbm.train`` on the same matrix
   with the same parameters (monotone constraints and categorical features included) and the
   same number of boosting rounds; and against raw ``lightgbm.train`` with the same early
   stopping. The goal: pipeline overhead under 30%. Also timed: the rest of the training step
   (evaluation with the baselines, the rolling-origin backtest), **the refit** of the champion
   on every labeled date (``train.refit_on_all``: one fit on all rows plus the cross-fitted
   calibrator's fold boosters; its extra seconds reported apart, next to the fit) and, unless
   ``--no-mlflow``, ``registry.log_training`` into a throw-away CHURNML_HOME;
c. **reasons throughput**: ``TargetModel.predict_with_reasons`` (calibrated probability plus
   top-3 reasons with their sentences, from a feature frame) against raw
   ``booster.predict(X, pred_contrib=True)`` on the prebuilt matrix, and probabilities alone.

``--sample-accounts N`` trains on a stratified sample of N accounts
(``churnml.models.sampling``, as ``churnml train --sample-accounts N``) and prints the sample
and the test ROC AUC interval's width on it and estimated without sampling.

Memory is the peak RSS of the whole process tree (this process and its children, summed,
sampled every 0.1 s; the JSON line also has a once-a-second timeline to align with the
``[seconds]`` of the stderr log); time ``training`` is what ``churnml train`` spends (loading
to registration, without the raw LightGBM comparison fits and without (c)).

Usage::

    python benchmarks/training.py                      # 5,000 accounts, 24 months, churn
    python benchmarks/training.py --accounts 1000 --months 18 --target expansion
    python benchmarks/training.py --accounts 50000 --sample-accounts 20000

Prints a markdown table (for benchmarks/README.md) and a JSON line with every figure
(``--json FILE`` also writes it). Timings on a shared machine are noisy: the load average is
printed with them, and the raw and pipeline runs are interleaved so both see the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import cached_book  # benchmarks/ is on sys.path when run as a script

os.environ.update({"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                   "DO_NOT_TRACK": "1", "MPLBACKEND": "Agg"})

import numpy as np  # noqa: E402


_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


class TreeMemory:
    """Peak RSS of the whole process tree (this process and every descendant, summed), sampled
    every 0.1 s in a thread: ``start()``, then ``stop()`` returns the peak in bytes."""

    def start(self) -> "TreeMemory":
        import threading

        import psutil

        self.peak, self._root = 0, psutil.Process()
        self.timeline: list[tuple[float, float]] = []  # (seconds since start, GB), once a second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> int:
        import psutil

        total = 0
        for proc in [self._root] + self._root.children(recursive=True):
            try:
                total += proc.memory_info().rss
            except psutil.Error:  # a child that ended between listing and reading
                pass
        return total

    def _run(self) -> None:
        last = 0.0
        while not self._stop.wait(0.1):
            rss = self._sample()
            self.peak = max(self.peak, rss)
            now = time.perf_counter() - _START
            if now - last >= 1.0:
                self.timeline.append((round(now, 1), round(rss / 1024 ** 3, 2)))
                last = now

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())
        return self.peak


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds`` (wall) and ``t.cpu`` (CPU seconds of this
    process, every thread: on the shared machine the wall time grows with the load, the CPU
    time much less)."""

    def __enter__(self):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.cpu_start


class MonotoneClock:
    """Seconds spent in ``churnml.models.train.monotone_directions`` (the Spearman check of
    each catalog direction) per step, wall and CPU: the function is wrapped for the run, and
    each step's seconds stay included in that step's figure too."""

    def __init__(self):
        self.step = "other"
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        # --monotone-reference: the plain checks (pandas rank, as before session 8) run on the
        # same rows right after, must give the same constraints, and are timed apart; their
        # seconds are taken out of the step's and the training's figures
        self.reference = False
        self.ref_seconds: dict[str, float] = {}
        self.ref_cpu: dict[str, float] = {}

    def install(self) -> "MonotoneClock":
        from churnml.models import train

        inner = train.monotone_directions

        def timed(*args, **kwargs):
            with Timer() as t:
                out = inner(*args, **kwargs)
            self.seconds[self.step] = self.seconds.get(self.step, 0.0) + t.seconds
            self.cpu[self.step] = self.cpu.get(self.step, 0.0) + t.cpu
            if self.reference:
                with Timer() as t:
                    plain = plain_monotone_directions(*args, **kwargs)
                if plain != out:
                    raise AssertionError(f"monotone checks differ from the plain ones: {out} != {plain}")
                self.ref_seconds[self.step] = self.ref_seconds.get(self.step, 0.0) + t.seconds
                self.ref_cpu[self.step] = self.ref_cpu.get(self.step, 0.0) + t.cpu
            return out

        train.monotone_directions = timed
        return self


MONOTONE = MonotoneClock()


def plain_monotone_directions(train, names, categorical, specs, target, tolerance):
    """``monotone_directions`` as it was before the fast Spearman (the reference)."""
    import pandas as pd

    from churnml.features.catalog import stored_directions

    constraints, dropped = [], {}
    label_rank = train["label"].rank()
    for name in names:
        direction = stored_directions(specs.get(name, {})).get(target, 0)
        if direction == 0 or name in categorical:
            constraints.append(0)
            continue
        x = pd.to_numeric(train[name], errors="coerce")
        ok = x.notna()
        corr = 0.0
        if ok.sum() > 2 and x[ok].nunique() > 1 and label_rank[ok].nunique() > 1:
            corr = float(np.corrcoef(x[ok].rank(), label_rank[ok])[0, 1])
        if np.isfinite(corr) and corr * direction < -tolerance:
            dropped[name] = f"catalog direction {direction:+d} contradicted (Spearman {corr:+.3f})"
            constraints.append(0)
        else:
            constraints.append(direction)
    return constraints, dropped


def model_digest(model) -> str:
    """sha256 of the booster's model string and the calibrator's state: the same digest is the
    same model (the trees' every split and leaf value, the calibration map)."""
    import hashlib
    import pickle

    h = hashlib.sha256(model.booster.model_to_string().encode())
    h.update(pickle.dumps(model.calibrator.__dict__, protocol=4))
    return h.hexdigest()[:16]


def build(book, config, catalog) -> tuple[object, dict]:
    """Step (a): features, labels and the assembled dataset, each timed."""
    from churnml.features.build import build_features
    from churnml.features.labels import observation_grid
    from churnml.models.dataset import assemble, labeled_as_of_dates, time_split

    dates = labeled_as_of_dates(book, config)
    split = time_split(dates, config)
    with Timer() as t_features:
        features = build_features(book, dates, catalog=catalog)
    with Timer() as t_labels:
        grid = observation_grid(book, dates, config.horizon_days,
                                expansion_min_share=config.expansion_min_share)
    with Timer() as t_assemble:
        dataset = assemble(features, grid, config, split, mrr_changes=book.mrr_changes)
    return dataset, {
        "as_of_dates": len(dates), "observations": len(features), "labeled_rows": len(dataset.frame),
        "features": len(dataset.feature_names), "train_rows": int((dataset.frame["window"] == "train").sum()),
        "features_s": t_features.seconds, "labels_s": t_labels.seconds, "assemble_s": t_assemble.seconds,
        "features_cpu_s": t_features.cpu + t_labels.cpu + t_assemble.cpu,
    }


def raw_lightgbm(model, dataset, config, rounds: int, early_stopping: bool) -> tuple[float, int]:
    """Raw ``lightgbm.train`` on the pipeline's training matrix with the pipeline's parameters.

    ``early_stopping``: also pass the calibration window as a validation set with the same
    early stopping (the pipeline's exact LightGBM call); otherwise exactly ``rounds`` rounds
    and no validation. Returns (seconds, rounds run). The matrices are built before timing.
    """
    import lightgbm as lgb

    names = model.feature_names
    params = dict(config.lgb_params)
    params.setdefault("objective", "binary")
    params.setdefault("verbose", -1)
    constraints = model.info.get("monotone_constraints", {})
    if constraints:
        params["monotone_constraints"] = [int(constraints.get(n, 0)) for n in names]
    cat_idx = [names.index(c) for c in model.categories]
    train, cal = dataset.part("train"), dataset.part("calibration")
    X, y = model.matrix(train), train["label"].to_numpy()
    with Timer() as t:
        d_train = lgb.Dataset(X, y, feature_name=names, categorical_feature=cat_idx, free_raw_data=True)
        if early_stopping:
            d_cal = lgb.Dataset(model.matrix(cal), cal["label"].to_numpy(), reference=d_train,
                                categorical_feature=cat_idx)
            booster = lgb.train(params, d_train, num_boost_round=config.num_boost_round, valid_sets=[d_cal],
                                callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)])
        else:
            booster = lgb.train(params, d_train, num_boost_round=rounds)
    return t.seconds, booster.current_iteration()


def fit_step(dataset, config, catalog, repeat: int, raw: bool = True) -> tuple[object, dict]:
    """Step (b): the pipeline's fit against raw LightGBM, interleaved, best of ``repeat``
    (``raw=False``: the pipeline's fit alone, the raw figures NaN)."""
    from churnml.models.train import fit_model

    pipeline, raw_rounds, raw_early, cpu = [], [], [], []
    model = None
    for k in range(repeat):
        log(f"  fit {k + 1}/{repeat}: pipeline")
        with Timer() as t:
            model, info = fit_model(dataset, config, catalog)
        pipeline.append(t.seconds)
        cpu.append(t.cpu)
        best = int(info["best_iteration"])
        # early stopping ends `early_stopping_rounds` after the best iteration (or at the cap)
        rounds = min(best + config.early_stopping_rounds, config.num_boost_round)
        if not raw:
            raw_rounds.append(float("nan"))
            raw_early.append(float("nan"))
            ran = best_early = -1
            continue
        log(f"  fit {k + 1}/{repeat}: raw lightgbm.train, {rounds} rounds")
        seconds, ran = raw_lightgbm(model, dataset, config, rounds, early_stopping=False)
        raw_rounds.append(seconds)
        log(f"  fit {k + 1}/{repeat}: raw lightgbm.train with early stopping")
        seconds, best_early = raw_lightgbm(model, dataset, config, rounds, early_stopping=True)
        raw_early.append(seconds)
    return model, {
        "best_iteration": best, "rounds": rounds, "raw_rounds_run": ran, "raw_early_stopping_best_iteration": best_early,
        "pipeline_fit_s": min(pipeline), "raw_train_s": min(raw_rounds), "raw_train_early_stopping_s": min(raw_early),
        "fit_overhead": min(pipeline) / min(raw_rounds) - 1.0,
        "fit_overhead_vs_early_stopping": min(pipeline) / min(raw_early) - 1.0,
        "pipeline_fit_cpu_s": min(cpu),
        "calibration": model.calibrator.method, "threads": config.lgb_params.get("num_threads"),
    }


def rest_of_training(model, dataset, config, catalog, truth) -> tuple[object, dict]:
    """Evaluation with the baselines and the backtest: the rest of ``train_on_dataset``."""
    from churnml.models.train import TrainingResult, evaluate, run_backtest

    with Timer() as t_eval:
        metrics, predictions, reliability = evaluate(model, dataset, config, truth=truth)
    with Timer() as t_backtest:
        backtest, notes = run_backtest(dataset, config, model, metrics, catalog)
    metrics["backtest_roc_auc_mean"] = float(backtest["roc_auc"].mean())
    metrics["backtest_roc_auc_std"] = float(backtest["roc_auc"].std(ddof=0))
    model.info["metrics"] = {k: v for k, v in metrics.items() if np.isfinite(v)}
    result = TrainingResult(model, config, dataset, metrics, predictions, reliability, backtest,
                            list(dataset.split.notes) + notes, dict(model.info))
    return result, {"evaluate_s": t_eval.seconds, "backtest_s": t_backtest.seconds,
                    "evaluate_cpu_s": t_eval.cpu, "backtest_cpu_s": t_backtest.cpu,
                    "backtest_folds": len(backtest), "test_roc_auc": metrics["test_roc_auc"],
                    "health_test_roc_auc": metrics.get("health_test_roc_auc"),
                    "oracle_test_roc_auc": metrics.get("oracle_test_roc_auc"), "test_ece": metrics["test_ece"]}


def refit_step(result, dataset, config) -> tuple[object, dict]:
    """The refit of ``train_on_dataset``: the champion on every labeled row with the
    protocol's rounds (scaled) and calibration method, calibrator cross-fitted by account."""
    from churnml.models.train import refit_on_all

    protocol = result.model
    protocol.info["train_end"] = str(dataset.split.describe()["calibration_end"])
    with Timer() as t:
        model, details = refit_on_all(dataset, config, protocol)
    result.protocol_model, result.model = protocol, model
    result.fit_details["refit"] = details
    return result, {"refit_s": t.seconds, "refit_cpu_s": t.cpu, "refit_fit_s": details["fit_seconds"],
                    "refit_crossfit_s": details["crossfit_seconds"], "rows": details["rows"],
                    "protocol_rows": details["protocol_rows"], "rounds": details["rounds"],
                    "protocol_best_iteration": details["protocol_best_iteration"],
                    "folds": details["calibration_folds"], "rule": details["rounds_rule"],
                    "train_end": details["train_end"]}


def mlflow_step(result) -> dict:
    """``registry.log_training`` (run, artifacts, plots, registration) into a throw-away home."""
    from churnml.models.registry import log_training

    with tempfile.TemporaryDirectory(prefix="churnml-bench-home-") as home:
        previous = os.environ.get("CHURNML_HOME")
        os.environ["CHURNML_HOME"] = home
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        try:
            with Timer() as t:
                log_training(result, plots=True)
        finally:
            if previous is None:
                os.environ.pop("CHURNML_HOME", None)
            else:
                os.environ["CHURNML_HOME"] = previous
    return {"log_training_s": t.seconds}


def reasons_step(model, dataset, rows: int, repeat: int) -> dict:
    """Step (c): accounts per second for probabilities plus top-3 reasons, against raw
    TreeSHAP and raw probabilities on the prebuilt matrix (best of ``repeat``, interleaved)."""
    test = dataset.part("test")
    frame = test.sample(min(rows, len(test)), random_state=0) if rows < len(test) else test
    X = model.matrix(frame)
    booster = model.booster
    pipeline, contrib, proba = [], [], []
    for _ in range(repeat):
        with Timer() as t:
            p, reasons = model.predict_with_reasons(frame, top_k=3)
        pipeline.append(t.seconds)
        with Timer() as t:
            booster.predict(X, pred_contrib=True)
        contrib.append(t.seconds)
        with Timer() as t:
            booster.predict(X)
        proba.append(t.seconds)
    assert len(reasons) == len(frame) and all(1 <= len(r) <= 3 for r in reasons)
    n = len(frame)
    return {"reasons_rows": n, "trees": booster.num_trees(),
            "pipeline_reasons_per_s": n / min(pipeline), "raw_contrib_per_s": n / min(contrib),
            "raw_proba_per_s": n / min(proba),
            "reasons_overhead": min(pipeline) / min(contrib) - 1.0}


def markdown(r: dict) -> str:
    f = r["fit"]
    lines = [
        f"| step | seconds / throughput | raw LightGBM | pipeline overhead |",
        f"|---|---:|---:|---:|",
        f"| (a) features ({r['data']['as_of_dates']} weekly as_of dates, {r['data']['observations']:,} "
        f"observations, {r['data']['features']} features kept) | {r['data']['features_s']:.1f} s | | |",
        f"| (a) labels (observation grid) | {r['data']['labels_s']:.1f} s | | |",
        f"| (a) assemble (join, windows, feature selection) | {r['data']['assemble_s']:.1f} s | | |",
        f"| (b) model fit: `fit_model` ({r['data']['train_rows']:,} training rows, {f['rounds']} rounds, "
        f"best {f['best_iteration']}, {f['calibration']} calibration) | {f['pipeline_fit_s']:.2f} s | "
        f"{f['raw_train_s']:.2f} s ({f['rounds']} rounds) | **{f['fit_overhead']:+.0%}** |",
        f"| (b) same, against raw with the same early stopping | | {f['raw_train_early_stopping_s']:.2f} s | "
        f"{f['fit_overhead_vs_early_stopping']:+.0%} |",
        f"| (b) evaluate: metrics, bootstrap, health score, logistic regression, oracle | "
        f"{r['rest']['evaluate_s']:.1f} s | | |",
        f"| (b) rolling-origin backtest ({r['rest']['backtest_folds']} folds, refits) | "
        f"{r['rest']['backtest_s']:.1f} s | | |",
    ]
    if "refit" in r:
        x = r["refit"]
        lines += [
            f"| (b) **refit (extra)**: champion on all {x['rows']:,} labeled rows, {x['rounds']} rounds "
            f"(protocol {x['protocol_best_iteration']} on {x['protocol_rows']:,} rows, rule {x['rule']}) | "
            f"{x['refit_fit_s']:.1f} s | | |",
            f"| (b) **refit (extra)**: cross-fitted calibrator, {x['folds']} account folds | "
            f"{x['refit_crossfit_s']:.1f} s | | |",
            f"| (b) refit (extra): the rest (monotone checks on all rows, ...) | "
            f"{x['refit_s'] - x['refit_fit_s'] - x['refit_crossfit_s']:.1f} s | | |",
        ]
    if r.get("monotone_s"):
        m = r["monotone_s"]
        lines.append("| (b) of which monotone checks (Spearman per catalog direction), in fit / "
                     "backtest / refit | " + " / ".join(f"{m.get(k, 0.0):.1f}" for k in
                                                         ("fit", "backtest", "refit")) + " s | "
                     + (" / ".join(f"{r['monotone_reference_s'].get(k, 0.0):.1f}" for k in
                                   ("fit", "backtest", "refit")) + " s (plain pandas rank, same "
                        "constraints; out of every figure above)" if r.get("monotone_reference_s")
                        else "") + " | |")
    if "mlflow" in r:
        lines.append(f"| MLflow: `log_training` (run, plots, model, registration) | "
                     f"{r['mlflow']['log_training_s']:.1f} s | | |")
    c = r["reasons"]
    lines += [
        f"| (c) probability + top-3 reasons (`predict_with_reasons`, {c['reasons_rows']:,} rows, "
        f"{c['trees']} trees) | {c['pipeline_reasons_per_s']:,.0f} accounts/s | "
        f"{c['raw_contrib_per_s']:,.0f} rows/s (`pred_contrib`) | **{c['reasons_overhead']:+.0%}** |",
        f"| (c) probabilities only, raw `predict` | | {c['raw_proba_per_s']:,.0f} rows/s | |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    from churnml.outcomes import OUTCOME_NAMES

    parser.add_argument("--target", choices=OUTCOME_NAMES, default="churn",
                        help="the outcome to train (churnml.outcomes.OUTCOMES)")
    parser.add_argument("--threads", type=int, default=None,
                        help="LightGBM num_threads (default: the target's config)")
    parser.add_argument("--repeat", type=int, default=1, help="fits per side (best is kept)")
    parser.add_argument("--reasons-rows", type=int, default=20000)
    parser.add_argument("--reasons-repeat", type=int, default=3)
    parser.add_argument("--no-mlflow", action="store_true", help="skip timing log_training")
    parser.add_argument("--no-raw", action="store_true",
                        help="skip the two raw lightgbm.train comparison fits of (b)")
    parser.add_argument("--sample-accounts", type=int, default=None,
                        help="train on a stratified sample of this many accounts "
                             "(churnml.models.sampling, as `churnml train --sample-accounts`)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "churnml-bench")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--monotone-reference", action="store_true",
                        help="also run the plain monotone checks (pandas rank) on the same rows, "
                             "check the constraints are the same, time them apart and take them "
                             "out of the figures (with --repeat 1: the fit step's figure is the best of the repeats)")
    args = parser.parse_args(argv)

    import lightgbm

    from churnml.data.io import load_book
    from churnml.features.catalog import load_catalog
    from churnml.models.baselines import find_truth
    from churnml.models.config import load_config

    folder = cached_book(args.cache, args.accounts, args.months, args.seed)
    memory = TreeMemory().start()
    clock, cpu_clock = time.perf_counter(), time.process_time()
    load_before = os.getloadavg()
    with Timer() as t_load:
        book, _ = load_book(folder)
    config = load_config(args.target)
    if args.threads is not None:
        config = config.with_overrides(lgb_params={**config.lgb_params, "num_threads": args.threads})
    catalog = load_catalog()

    results: dict = {"accounts": args.accounts, "months": args.months, "seed": args.seed,
                     "target": args.target, "lightgbm": lightgbm.__version__, "cpus": os.cpu_count(),
                     "load_book_s": t_load.seconds}
    sample = None
    if args.sample_accounts:
        from churnml.models.sampling import draw_sample

        log(f"stratified sample of {args.sample_accounts:,} accounts")
        with Timer() as t_sample:
            sample = draw_sample(book, config, args.sample_accounts)
        if sample is not None:
            book = sample.book
            results["sample"] = {**sample.describe(), "sample_s": t_sample.seconds}
    log("(a) features and labels")
    dataset, results["data"] = build(book, config, catalog)
    MONOTONE.install().reference = args.monotone_reference
    log("(b) model fit: pipeline vs raw lightgbm.train")
    MONOTONE.step = "fit"
    model, results["fit"] = fit_step(dataset, config, catalog, args.repeat, raw=not args.no_raw)
    log("(b) evaluation and backtest")
    MONOTONE.step = "backtest"  # the evaluation runs none
    results["protocol_model_sha256"] = model_digest(model)
    result, results["rest"] = rest_of_training(model, dataset, config, catalog, find_truth(folder))
    if config.refit:
        log("(b) refit of the champion on every labeled date")
        MONOTONE.step = "refit"
        result, results["refit"] = refit_step(result, dataset, config)
        results["champion_model_sha256"] = model_digest(result.model)
    MONOTONE.step = "other"
    results["monotone_s"], results["monotone_cpu_s"] = dict(MONOTONE.seconds), dict(MONOTONE.cpu)
    results["monotone_reference_s"] = dict(MONOTONE.ref_seconds)
    results["monotone_reference_cpu_s"] = dict(MONOTONE.ref_cpu)
    for key, step in (("pipeline_fit_s", "fit"), ("pipeline_fit_cpu_s", "fit")):
        results["fit"][key] -= (MONOTONE.ref_cpu if "cpu" in key else MONOTONE.ref_seconds).get(step, 0.0)
    for key, step in (("backtest_s", "backtest"), ("backtest_cpu_s", "backtest")):
        results["rest"][key] -= (MONOTONE.ref_cpu if "cpu" in key else MONOTONE.ref_seconds).get(step, 0.0)
    if "refit" in results:
        results["refit"]["refit_s"] -= MONOTONE.ref_seconds.get("refit", 0.0)
        results["refit"]["refit_cpu_s"] -= MONOTONE.ref_cpu.get("refit", 0.0)
    if not args.no_mlflow:
        log("MLflow logging")
        results["mlflow"] = mlflow_step(result)
    if sample is not None:
        from churnml.models.sampling import record_sample

        record_sample(result, sample)
        results["sample"].update({k: result.metrics[k] for k in (
            "test_roc_auc_ci_width", "test_roc_auc_ci_width_full_book_estimate") if k in result.metrics})
    # what `churnml train` spends: load to refit (and MLflow), without the two raw LightGBM
    # comparison fits of (b) and without (c)
    raw_s = 0.0 if args.no_raw else results["fit"]["raw_train_s"] + results["fit"]["raw_train_early_stopping_s"]
    results["training_s"] = (time.perf_counter() - clock - raw_s
                             - sum(MONOTONE.ref_seconds.values()))  # the reference checks out
    results["cpu_s_to_registration"] = (time.process_time() - cpu_clock  # raw fits included
                                        - sum(MONOTONE.ref_cpu.values()))
    log("(c) reasons throughput")
    # the registered model's reasons: the refitted champion when there is one
    results["reasons"] = reasons_step(result.model, dataset, args.reasons_rows, args.reasons_repeat)
    results["load_average"] = [round(x, 1) for x in load_before + os.getloadavg()]
    import resource

    results["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB on Linux
    results["peak_rss_children_gb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    results["peak_tree_rss_gb"] = memory.stop() / 1024 ** 3
    results["rss_timeline_gb"] = memory.timeline  # with the [seconds] of the stderr log: which step peaks

    print(f"\n{args.target}, {args.accounts:,} accounts x {args.months} months (seed {args.seed}); "
          f"LightGBM {lightgbm.__version__}, num_threads {results['fit']['threads']}, {os.cpu_count()} CPUs; "
          f"load average before {results['load_average'][0]}, after {results['load_average'][3]}; "
          f"peak RSS {results['peak_rss_gb']:.2f} GB (process tree, sampled every 0.1 s: "
          f"{results['peak_tree_rss_gb']:.2f} GB); training as `churnml train` (load to registration, without the raw comparison fits and (c)) "
          f"{results['training_s']:.0f} s\n")
    if "sample" in results:
        x = results["sample"]
        print(f"sample: {x['sample_accounts']:,} of {x['sample_accounts_total']:,} accounts "
              f"({x['sample_rate']:.1%}, drawn in {x['sample_s']:.1f} s); test ROC AUC interval width "
              f"{x.get('test_roc_auc_ci_width', float('nan')):.4f} on the sample, "
              f"{x.get('test_roc_auc_ci_width_full_book_estimate', float('nan')):.4f} estimated "
              f"without sampling\n")
    print(markdown(results))
    print(f"\ntest_roc_auc {results['rest']['test_roc_auc']:.3f} (health score "
          f"{results['rest']['health_test_roc_auc']:.3f}, oracle {results['rest']['oracle_test_roc_auc'] or float('nan'):.3f}),"
          f" test_ece {results['rest']['test_ece']:.4f}; model sha256: protocol "
          f"{results['protocol_model_sha256']}, champion {results.get('champion_model_sha256', '-')}")
    line = json.dumps(results, default=float)
    print(line)
    if args.json:
        args.json.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
