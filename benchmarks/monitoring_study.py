"""The monitoring study of issue 12 ("Done means"): a stationary and a drifting simulated book,
each scored for consecutive weeks by a champion trained once, then read back from
``OUT/monitoring/{realized,drift,estimated,retrain}.parquet``.

Per book (``--books stationary,drifting,input_drift,migration``), in its own ``CHURNML_HOME`` under
``--work``:

1. ``churnml simulate --accounts N --months M --seed S`` (the drifting book adds
   ``--drift price_change,product_change --drift-start D``, the input_drift book
   ``--drift new_channel,usage_drop --drift-start D`` (``--input-drift``), the migration book
   ``--drift billing_migration --drift-start D`` (``--migration-drift``), ``D`` =
   ``--drift-after`` weeks after the first scored week, so after the champion's training span);
2. the book cut at the first scored week ``C`` (every table's rows dated before ``C``; an invoice
   paid later is unpaid), and ``churnml train --target T --data CUT`` on it: the champion
   (``--target``, churn by default; the other outcomes' columns stay null, their monitoring is
   the same code);
3. ``churnml score --data BOOK --as-of W --out OUT`` for ``--weeks`` consecutive weeks from ``C``
   (in-process, ``churnml.jobs.weekly.run_job``, the function the command calls, so the 30 runs
   share one interpreter): every run adds the realized performance of the weeks matured by then,
   this week's drift against the champion's reference profile, the label-free estimate and the
   retrain rules, as the weekly job does;
4. books with a drift only, **the retrain**: the same champion also scores ``--after-weeks`` more weeks
   (what happens without a retrain); then ``churnml train --scores`` (the monitoring as known
   on the retrain day, so the gate applies its rule after a recommended retrain) on the book cut after the last of the
   ``--weeks`` weeks (data up to the latest week), the gate's verdict recorded (if the gate keeps
   the old champion, the new version is promoted by hand with ``churnml promote`` and the study
   says so), and the new version scores the same ``--after-weeks`` weeks into a second folder:
   realized AUC of both versions on the same matured cohorts.

The book's end is set so that every scored week has matured by the data's end (``--months`` is
derived): realized performance is known for all of them, while the retrain rules of each weekly
run only read the cohorts matured by that run's ``as_of`` (the label delay is respected).

Beside each matured cohort, the simulator's oracle AUC on the same accounts and labels
(``--oracle-paths``; 0 skips it). Prints the figures (per book: training evaluation, per week the
realized AUC of model and health score, the oracle, the CBPE estimate, score and largest
feature PSI, the retrain verdict; the first recommendation and its reason; the gate and the
before/after AUC), a JSON line per book, one PNG plot per book (``--plots DIR``), the timings
and the load average. A rerun with the same ``--work`` reuses every step already done.

For a book with a drift it also prints when each signal came after the change: the first week
the score's PSI passed 0.1 and 0.25, the first feature above 0.25, the first cohort whose AUC
interval lies below the training evaluation (and the day its outcome was known), and the first
week each retrain rule fired (the AUC-drop rule's baseline named: ``auc_drop(own)`` or
``auc_drop(training)``).

Usage (the study of docs/monitoring.md, "The 30-week study"):
``python benchmarks/monitoring_study.py --work /tmp/study --accounts 2000 --seed 32 --plots docs/images``
``python benchmarks/monitoring_study.py --work /tmp/study --accounts 2000 --seed 32 --books stationary,input_drift --plots docs/images``
``python benchmarks/monitoring_study.py --work /tmp/study --accounts 2000 --seed 32 --books migration --plots docs/images``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _common import log  # benchmarks/ is on sys.path when run as a script

END = pd.Timestamp("2026-11-16")  # the simulator's default end (day after the last day)
# the books with a drift (``--books``): "drifting" takes ``--drift`` (by default the concept
# drifts, price_change and product_change), "input_drift" takes ``--input-drift`` (by default
# the input drifts, new_channel and usage_drop), "migration" takes ``--migration-drift`` (by
# default billing_migration, inputs and concept at once); all are retrained after the ``--weeks``
DRIFT_KINDS = ("drifting", "input_drift", "migration")
SRC = str(Path(__file__).resolve().parents[1] / "src")
TARGET = "churn"  # the outcome studied (--target)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def cli(*args: str, home: Path) -> str:
    env = dict(os.environ, CHURNML_HOME=str(home), PYTHONPATH=SRC)
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "churnml.cli", *args]
    log("$ churnml " + " ".join(args))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"churnml {' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def cut_book(book: Path, cut: Path, day: pd.Timestamp) -> None:
    """The book as known on ``day``: rows dated strictly before it, per the data contract's time
    column of each table (accounts: ``created_at``); a payment after ``day`` is not known yet."""
    from churnml.data.tables import TABLES

    cut.mkdir(parents=True, exist_ok=True)
    for path in sorted(book.glob("*.parquet")):
        name = path.stem
        frame = pd.read_parquet(path)
        column = "created_at" if name == "accounts" else getattr(TABLES.get(name), "time_column", None)
        if column and column in frame.columns:
            frame = frame[pd.to_datetime(frame[column]) < day]
        if name == "invoices" and "paid_at" in frame.columns:
            frame = frame.assign(paid_at=frame["paid_at"].where(pd.to_datetime(frame["paid_at"]) < day))
        frame.to_parquet(cut / path.name, index=False)


def weeks_from(first: pd.Timestamp, n: int) -> list[pd.Timestamp]:
    return [first + pd.Timedelta(weeks=i) for i in range(n)]


def score_weeks(book: Path, out: Path, weeks: list[pd.Timestamp], home: Path) -> list[float]:
    """``churnml score`` for each week in one worker process (env: this book's CHURNML_HOME)."""
    code = (
        "import sys, time, json\n"
        "import pandas as pd\n"
        "from churnml.jobs.weekly import run_job\n"
        "times = []\n"
        "for w in sys.argv[3:]:\n"
        "    t = time.perf_counter()\n"
        "    run_job(sys.argv[1], pd.Timestamp(w), sys.argv[2])\n"
        "    times.append(time.perf_counter() - t)\n"
        "    print(w, round(times[-1], 1), file=sys.stderr, flush=True)\n"
        "print(json.dumps(times))\n")
    env = dict(os.environ, CHURNML_HOME=str(home), PYTHONPATH=SRC)
    env.pop("MLFLOW_TRACKING_URI", None)
    log(f"$ churnml score --data {book} --out {out} --as-of W, {len(weeks)} weeks "
        f"{weeks[0].date()} .. {weeks[-1].date()}")
    done = subprocess.run([sys.executable, "-c", code, str(book), str(out),
                           *[str(w.date()) for w in weeks]], env=env, capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"scoring failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def versions(home: Path) -> list[dict]:
    code = ("import json\nfrom churnml.models import registry\n"
            "import mlflow\n"
            "out = []\n"
            f"for v in registry.list_versions({TARGET!r}):\n"
            "    run = mlflow.MlflowClient().get_run(v['run_id'])\n"
            "    m = run.data.metrics\n"
            "    v.update({k: m.get(k) for k in ('test_roc_auc', 'test_roc_auc_ci_low', "
            "'test_roc_auc_ci_high')})\n"
            "    out.append(v)\n"
            "print(json.dumps(out))\n")
    env = dict(os.environ, CHURNML_HOME=str(home), PYTHONPATH=SRC)
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"reading the registry failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tables(out: Path) -> dict[str, pd.DataFrame]:
    folder = out / "monitoring"
    return {name: pd.read_parquet(folder / f"{name}.parquet")
            for name in ("realized", "drift", "estimated", "retrain")
            if (folder / f"{name}.parquet").exists()}


def _timing(folder: Path, new: dict) -> dict:
    """The steps' timings, kept across reruns (a rerun skips the steps already done)."""
    path = folder / "timing.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(new)
    path.write_text(json.dumps(old))
    return old


def study_dates(weeks: int, after_weeks: int, history_months: int,
                drift_after: int) -> tuple[pd.Timestamp, int, pd.Timestamp]:
    """The first scored week (the champion's cut), the book's length in months and the day
    the drift starts: every one of the ``weeks + after_weeks`` weeks matures by the book's end
    and ``history_months`` of history come before the first."""
    first = END - pd.Timedelta(days=91) - pd.Timedelta(weeks=weeks + after_weeks - 1)
    first = first.normalize()
    months = history_months + int(np.ceil((END - first).days / 30.44))
    return first, months, first + pd.Timedelta(weeks=drift_after)


def simulate_book(book: Path, accounts: int, months: int, seed: int, home: Path,
                  drift: str | None = None, drift_start: pd.Timestamp | None = None) -> None:
    """``churnml simulate`` into ``book``; ``drift``: the scenarios of ``--drift``, from
    ``drift_start``."""
    sim = ["simulate", "--out", str(book), "--accounts", str(accounts), "--months", str(months),
           "--seed", str(seed)]
    if drift:
        assert drift_start is not None
        sim += ["--drift", drift, "--drift-start", str(drift_start.date())]
    cli(*sim, home=home)


def run_book(kind: str, args, work: Path) -> dict:
    home, book, cut, out = (work / kind / p for p in ("home", "book", "cut", "out"))
    first, months, drift_start = study_dates(args.weeks, args.after_weeks, args.history_months,
                                             args.drift_after)
    timing: dict[str, Any] = {}
    if not (book / "accounts.parquet").exists():
        spec = {"drifting": args.drift, "input_drift": args.input_drift,
                "migration": args.migration_drift}.get(kind)
        t = time.perf_counter()
        simulate_book(book, args.accounts, months, args.seed, home, spec, drift_start)
        timing["simulate_s"] = time.perf_counter() - t
    if not (cut / "accounts.parquet").exists():
        cut_book(book, cut, first)
    if not versions(home):
        t = time.perf_counter()
        cli("train", "--data", str(cut), "--target", TARGET, "--no-plots", home=home)
        timing["train_s"] = time.perf_counter() - t
        timing["train_load"] = os.getloadavg()[0]
    champion = versions(home)[-1]
    weeks = weeks_from(first, args.weeks)
    after = weeks_from(first + pd.Timedelta(weeks=args.weeks), args.after_weeks) \
        if kind in DRIFT_KINDS else []
    todo = [w for w in weeks + after
            if not (out / f"as_of={w.date()}" / "_SUCCESS").exists()]
    if todo:
        timing["score_s"] = score_weeks(book, out, todo, home)
        timing["score_load"] = os.getloadavg()[0]
    timing = _timing(work / kind, timing)
    result = {"kind": kind, "seed": args.seed, "accounts": args.accounts, "months": months,
              "first_week": str(first.date()), "last_week": str(weeks[-1].date()),
              "drift_start": str(drift_start.date()) if kind in DRIFT_KINDS else None,
              "champion": champion, "timing": timing, "out": str(out)}
    if kind in DRIFT_KINDS and args.after_weeks:
        retrain_cut = work / kind / "cut_retrain"
        day = after[0]  # data up to (and including) the latest of the --weeks weeks
        if not (retrain_cut / "accounts.parquet").exists():
            cut_book(book, retrain_cut, day)
        if len(versions(home)) < 2:
            # the retrain as the product runs it once the rules fire: `--scores` hands the gate
            # the monitoring as known on the retrain day (weeks before it only; the champion
            # has scored the --after-weeks too, for the no-retrain reference)
            known = work / kind / "monitoring_at_retrain"
            (known / "monitoring").mkdir(parents=True, exist_ok=True)
            verdicts = pd.read_parquet(out / "monitoring" / "retrain.parquet")
            verdicts[pd.to_datetime(verdicts["as_of"]) < day].to_parquet(
                known / "monitoring" / "retrain.parquet", index=False)
            t = time.perf_counter()
            text = cli("train", "--data", str(retrain_cut), "--target", TARGET, "--no-plots",
                       "--scores", str(known), home=home)
            timing["retrain_s"] = time.perf_counter() - t
            (work / kind / "retrain_stdout.txt").write_text(text)
        text = (work / kind / "retrain_stdout.txt").read_text()
        gate = [line for line in text.splitlines() if line.startswith("registered churnml-")]
        new = versions(home)[0]
        # the gate's verdict is the registration line's ("version N: champion|challenger")
        promoted_by_hand = any(f"version {new['version']}: challenger" in line for line in gate)
        if "champion" not in new["aliases"]:
            cli("promote", "--target", TARGET, "--version", new["version"], home=home)
        out_new = work / kind / "out_retrained"
        todo = [w for w in after if not (out_new / f"as_of={w.date()}" / "_SUCCESS").exists()]
        if todo:
            timing["score_retrained_s"] = score_weeks(book, out_new, todo, home)
            timing = _timing(work / kind, timing)
            result["timing"] = timing
        result.update(retrained=new, gate_lines=gate, after_weeks=[str(w.date()) for w in after],
                      promoted_by_hand=promoted_by_hand,
                      out_retrained=str(out_new), retrain_cut=str(day.date()))
    return result


def oracle_auc(book_dir: Path, weeks: list[pd.Timestamp], seed: int, n_paths: int) -> pd.Series:
    """The simulator's oracle (its true probability of the outcome, ``oracle_probability``) scored on each
    week's active accounts against the same labels: the ceiling any model could reach that week,
    so a week that is hard for everyone is told apart from a model that got worse."""
    from sklearn.metrics import roc_auc_score

    from churnml.data.io import load_book
    from churnml.data.simulator import oracle_probability
    from churnml.features.labels import observation_grid
    from churnml.models.config import load_config

    book, _ = load_book(book_dir)
    grid = observation_grid(book, pd.DatetimeIndex(weeks), load_config(TARGET).horizon_days)
    grid = grid[grid["labeled"]].reset_index(drop=True)
    grid["oracle"] = oracle_probability(book_dir, grid[["account_id", "as_of"]],
                                        horizon_days=load_config(TARGET).horizon_days,
                                        n_paths=n_paths, seed=seed, target=TARGET)
    grid = grid[np.isfinite(grid["oracle"])]
    return grid.groupby("as_of").apply(
        lambda d: roc_auc_score(d[TARGET], d["oracle"]) if d[TARGET].nunique() == 2
        else np.nan).rename("oracle_auc")


def summarise(res: dict, args) -> dict:
    """The study's checks, from the monitoring tables."""
    t = tables(Path(res["out"]))
    first, last = pd.Timestamp(res["first_week"]), pd.Timestamp(res["last_week"])
    champ = res["champion"]
    train_auc, lo, hi = champ["test_roc_auc"], champ["test_roc_auc_ci_low"], champ["test_roc_auc_ci_high"]
    r = t["realized"]
    r = r[(r["outcome"] == TARGET) & (r["as_of"] >= first) & (r["as_of"] <= last)]
    model = r[(r["scorer"] == "model") & (r["in_sample"] == False)].sort_values("as_of")  # noqa: E712
    health = r[r["scorer"] == "health_score"].sort_values("as_of")
    d = t["drift"]
    d = d[(d["outcome"] == TARGET) & (d["as_of"] >= first) & (d["as_of"] <= last)]
    score_psi = d[d["kind"] == "score"].set_index("as_of")["psi"].sort_index()
    feat = d[d["kind"] == "feature"]
    feat_max = feat.groupby("as_of")["psi"].max().sort_index()
    feat_shifted = feat.assign(s=feat["status"] == "shifted").groupby("as_of")["s"].sum()
    rt = t["retrain"]
    rt = rt[(rt["outcome"] == TARGET) & (rt["as_of"] >= first)].sort_values("as_of")
    # the first recommendation of the old champion: in the study's weeks or the weeks after
    fired_all = rt[rt["retrain_recommended"].astype(bool)]
    rt = rt[rt["as_of"] <= last]
    fired = rt[rt["retrain_recommended"].astype(bool)]
    est = t["estimated"]
    est = est[(est["outcome"] == TARGET) & (est["as_of"] >= first) & (est["as_of"] <= last)]
    s = {
        "kind": res["kind"], "seed": res["seed"],
        "training_auc": train_auc, "training_ci": [lo, hi],
        "matured_cohorts": int(len(model)),
        "realized_auc_mean": float(model["roc_auc"].mean()),
        "realized_auc_min": float(model["roc_auc"].min()),
        "realized_auc_max": float(model["roc_auc"].max()),
        "cohort_interval_holds_training_auc": int(((model["roc_auc_ci_low"] <= train_auc)
                                                   & (train_auc <= model["roc_auc_ci_high"])).sum()),
        "cohort_auc_in_training_interval": int(model["roc_auc"].between(lo, hi).sum()),
        "health_auc_mean": float(health["roc_auc"].mean()),
        "cohort_rows_mean": float(model["n"].mean()),
        "cohort_events_mean": float(model["positives"].mean()),
        "ece_mean": float(model["ece"].mean()),
        "slope_range": [float(model["calibration_slope"].min()), float(model["calibration_slope"].max())],
        "score_psi_max": float(score_psi.max()),
        "score_psi_weeks_above_alert": int((score_psi > 0.25).sum()),
        "feature_psi_max": float(feat_max.max()),
        "estimated_auc_range": [float(est["estimated_roc_auc"].min()), float(est["estimated_roc_auc"].max())],
        "retrain_weeks": int(len(fired)),
        "first_retrain_week": str(fired_all["as_of"].min().date()) if len(fired_all) else None,
        "first_retrain_reason": str(fired_all["retrain_reason"].iloc[0]) if len(fired_all) else None,
        "retrain_rows": fired_all[["as_of", "retrain_reason"]].reset_index(drop=True),
        "per_week": pd.DataFrame({
            "score_psi": score_psi, "max_feature_psi": feat_max, "features_shifted": feat_shifted,
            "estimated_auc": est.set_index("as_of")["estimated_roc_auc"],
            "retrain": rt.set_index("as_of")["retrain_recommended"].astype(bool),
            "rules": rt.set_index("as_of")["retrain_reason"].map(_rules),
            "baseline": rt.set_index("as_of")["baseline_roc_auc"]
            if "baseline_roc_auc" in rt.columns else np.nan,
        }).join(model.set_index("as_of")[["roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "n",
                                          "positives", "calibration_slope"]])
          .join(health.set_index("as_of")[["roc_auc"]].rename(columns={"roc_auc": "health_auc"})),
    }
    if args.oracle_paths:
        book_dir = Path(res["out"]).parent / "book"
        weeks = sorted(set(model["as_of"]) | (set(pd.to_datetime(res["after_weeks"]))
                                              if res.get("after_weeks") else set()))
        oracle = oracle_auc(book_dir, weeks, args.seed, args.oracle_paths)
        s["per_week"] = s["per_week"].join(oracle)
        s["oracle"] = oracle
        s["oracle_auc_mean"] = float(oracle[oracle.index <= last].mean())
        s["realized_minus_oracle_mean"] = float((s["per_week"]["roc_auc"]
                                                 - s["per_week"]["oracle_auc"]).mean())
    if res["kind"] in DRIFT_KINDS:
        start = pd.Timestamp(res["drift_start"])
        pw = s["per_week"]
        # the order of events after the change: score PSI moving (> 0.1) and shifted (> 0.25),
        # the first feature shifted, the first cohort whose AUC interval lies wholly below the
        # training evaluation (known a label delay later), the first recommendation and why
        shifted = pw[(pw.index >= start) & (pw["score_psi"] > 0.25)]
        s["first_week_score_psi_shifted"] = str(shifted.index.min().date()) if len(shifted) else None
        fell = pw[(pw.index >= start) & (pw["roc_auc_ci_high"] < train_auc)]
        s["first_cohort_auc_fell"] = str(fell.index.min().date()) if len(fell) else None
        s["first_cohort_auc_fell_known_on"] = (str((fell.index.min() + pd.Timedelta(days=91)).date())
                                               if len(fell) else None)
        s["trigger_rules_first_week"] = {
            rule: str(fired_all[fired_all["retrain_reason"].map(_rules).str.contains(rule)]
                      ["as_of"].min().date())
            for rule in ("auc_drop", "slope", "score_drift")
            if fired_all["retrain_reason"].map(_rules).str.contains(rule).any()}
        moved = pw[(pw.index >= start) & (pw["score_psi"] > 0.1)]
        s["drift_start"] = res["drift_start"]
        s["first_week_score_psi_moving"] = str(moved.index.min().date()) if len(moved) else None
        fmoved = pw[(pw.index >= start) & (pw["max_feature_psi"] > 0.25)]
        s["first_week_feature_shifted"] = str(fmoved.index.min().date()) if len(fmoved) else None
        pre = pw[pw.index < start - pd.Timedelta(days=91)]["roc_auc"]
        post = pw[pw.index >= start]["roc_auc"]
        s["realized_auc_pre_drift_mean"] = float(pre.mean()) if len(pre) else None
        s["realized_auc_post_drift_mean"] = float(post.mean()) if len(post) else None
        if len(fired_all):
            s["weeks_drift_to_trigger"] = int((fired_all["as_of"].min() - start).days // 7)
    if res.get("retrained"):
        after_first = pd.Timestamp(res["retrain_cut"])
        s["retrained"] = res["retrained"]
        s["gate_lines"] = res["gate_lines"]
        s["promoted_by_hand"] = res["promoted_by_hand"]
        both = {}
        for label, folder in (("old", res["out"]), ("new", res["out_retrained"])):
            rr = tables(Path(folder))["realized"]
            rr = rr[(rr["outcome"] == TARGET) & (rr["scorer"] == "model")
                    & (rr["as_of"] >= after_first)]
            both[label] = rr.set_index("as_of")[["roc_auc", "roc_auc_ci_low", "roc_auc_ci_high",
                                                 "in_sample", "model_version"]]
        cmp_ = both["old"].add_suffix("_old").join(both["new"].add_suffix("_new"), how="inner")
        if "oracle" in s:
            cmp_ = cmp_.join(s["oracle"])
        s["after"] = cmp_
        s["after_auc_old_mean"] = float(cmp_["roc_auc_old"].mean())
        s["after_auc_new_mean"] = float(cmp_["roc_auc_new"].mean())
        s["after_cohorts_new_better"] = int((cmp_["roc_auc_new"] > cmp_["roc_auc_old"]).sum())
        s["after_cohorts"] = int(len(cmp_))
    return s


def _rules(reason) -> str:
    """The retrain rules a reason names, short: auc_drop(own|training), slope, score_drift."""
    if not isinstance(reason, str) or not reason:
        return ""
    out = []
    if "realized AUC" in reason:
        out.append("auc_drop(own)" if "below its own baseline" in reason else "auc_drop(training)")
    if "calibration slope" in reason:
        out.append("slope")
    if "score PSI" in reason:
        out.append("score_drift")
    return "+".join(out)


def plot(summaries: list[dict], results: list[dict], path: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for s, res in zip(summaries, results):
        pw = s["per_week"]
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, dpi=90)
        a1.fill_between(pw.index, pw["roc_auc_ci_low"], pw["roc_auc_ci_high"], alpha=0.2,
                        color="C0", lw=0)
        a1.plot(pw.index, pw["roc_auc"], "o-", ms=3, color="C0", label="model (realized)")
        a1.plot(pw.index, pw["health_auc"], "s-", ms=3, color="C1", label="health score (realized)")
        a1.plot(pw.index, pw["estimated_auc"], ":", color="C0", label="model (CBPE estimate)")
        if "oracle_auc" in pw:
            oracle = s["oracle"]
            a1.plot(oracle.index, oracle.to_numpy(), "-", color="k", lw=0.8, alpha=0.6,
                    label="simulator's oracle")
        lo, hi = s["training_ci"]
        a1.axhspan(lo, hi, color="grey", alpha=0.15, lw=0)
        a1.axhline(s["training_auc"], color="grey", ls="--", lw=1, label="training evaluation")
        if s.get("after") is not None:
            a = s["after"]
            a1.plot(a.index, a["roc_auc_old"], "o-", ms=3, color="C0", alpha=0.45)
            a1.plot(a.index, a["roc_auc_new"], "^-", ms=4, color="C2", label="retrained model")
        a1.set_ylabel(f"{TARGET} ROC AUC\n(cohort scored that week)")
        a1.legend(fontsize=6, loc="lower left", ncol=3, framealpha=0.6)
        a2.plot(pw.index, pw["score_psi"], "o-", ms=3, color="C3", label="score PSI")
        a2.plot(pw.index, pw["max_feature_psi"], "-", color="C4", alpha=0.6, label="largest feature PSI")
        a2.axhline(0.1, color="grey", ls=":", lw=1)
        a2.axhline(0.25, color="grey", ls="--", lw=1, label="alert 0.25")
        a2.set_ylim(0, max(0.3, float(np.nanmax(pw[["score_psi", "max_feature_psi"]].to_numpy())) * 1.1))
        a2.set_ylabel("PSI vs reference")
        for ax in (a1, a2):
            if s.get("drift_start"):
                ax.axvline(pd.Timestamp(s["drift_start"]), color="k", lw=1, ls="-.")
            if s["first_retrain_week"]:
                ax.axvline(pd.Timestamp(s["first_retrain_week"]), color="C3", lw=1.5)
            if res.get("retrain_cut"):
                ax.axvline(pd.Timestamp(res["retrain_cut"]), color="C2", lw=1.5, ls="--")
        a2.legend(fontsize=6, loc="center left", framealpha=0.6)
        title = (f"{s['kind']} book (seed {s['seed']}): "
                 + ("drift start -.-, " if s.get("drift_start") else "")
                 + (f"retrain first recommended {s['first_retrain_week']} (red)"
                    if s["first_retrain_week"] else "no retrain recommended")
                 + (", retrained (green --)" if res.get("retrain_cut") else ""))
        a1.set_title(title, fontsize=8)
        fig.autofmt_xdate()
        fig.tight_layout()
        target = path / f"monitoring_study_{TARGET}_{s['kind']}_seed{s['seed']}.png"
        fig.savefig(target)
        plt.close(fig)
        written.append(target)
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/churnml-monitoring-study"))
    p.add_argument("--books", default="stationary,drifting")
    p.add_argument("--accounts", type=int, default=1200)
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--weeks", type=int, default=30)
    p.add_argument("--after-weeks", type=int, default=10,
                   help="books with a drift: weeks scored by the old and the retrained version")
    p.add_argument("--history-months", type=int, default=20,
                   help="months of history before the first scored week")
    p.add_argument("--drift", default="price_change,product_change")
    p.add_argument("--input-drift", default="new_channel,usage_drop",
                   help="the input_drift book's scenarios (docs/simulator.md, Drift)")
    p.add_argument("--migration-drift", default="billing_migration",
                   help="the migration book's scenarios (docs/simulator.md, Drift)")
    p.add_argument("--drift-after", type=int, default=6,
                   help="drift starts this many weeks after the first scored week")
    p.add_argument("--plots", type=Path, default=None)
    p.add_argument("--oracle-paths", type=int, default=16,
                   help="Monte Carlo paths of the simulator's oracle per account (0: no oracle)")
    p.add_argument("--target", default="churn", choices=("churn", "expansion", "contraction"))
    args = p.parse_args()
    global TARGET
    TARGET = args.target
    work = args.work / f"seed{args.seed}"
    results, summaries = [], []
    started = time.perf_counter()
    log(f"load average at start: {load()}")
    for kind in args.books.split(","):
        res = run_book(kind, args, work)
        results.append(res)
        summaries.append(summarise(res, args))
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    for s, res in zip(summaries, results):
        print(f"\n## {TARGET}, {s['kind']} book, seed {s['seed']}, {res['accounts']:,} accounts x "
              f"{res['months']} months; weeks {res['first_week']} .. {res['last_week']}"
              + (f"; drift from {res['drift_start']}" if res["drift_start"] else ""))
        print(f"champion v{res['champion']['version']} (train_end {res['champion']['train_end']}): "
              f"test AUC {s['training_auc']:.3f} ({s['training_ci'][0]:.3f}-{s['training_ci'][1]:.3f})")
        print(f"timing: {json.dumps({k: (round(v, 1) if isinstance(v, float) else [round(x, 1) for x in v]) for k, v in res['timing'].items()})}")
        print(s["per_week"].round(3).to_string())
        print("\nruns of the first champion that recommend a retrain (all its weeks):")
        with pd.option_context("display.max_colwidth", 400):
            print(s["retrain_rows"].to_string() if len(s["retrain_rows"]) else "none")
        if s.get("after") is not None:
            print("\nafter the retrain (same cohorts, old vs retrained version):")
            print(s["after"].round(3).to_string())
            print("gate: " + " | ".join(s["gate_lines"]) + (" (promoted by hand for the comparison)"
                                                              if s["promoted_by_hand"] else ""))
        print(json.dumps({k: v for k, v in s.items()
                          if k not in ("per_week", "after", "retrained", "gate_lines", "oracle",
                                       "retrain_rows")}))
    if args.plots:
        args.plots.mkdir(parents=True, exist_ok=True)
        for path in plot(summaries, results, args.plots):
            print(f"plot: {path}")
    print(f"\nwall {time.perf_counter() - started:.0f} s; load average at end: {load()} "
          f"({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
