"""Recency-weighted retraining after a concept drift (issue 12, "retraining restores performance").

docs/monitoring.md ("The billing-migration book") found that a retrain on the whole history
after ``churnml simulate --drift billing_migration`` mostly relearns the old world. This script
measures the recency weight (``training.recency_half_life_days``, churnml.models.recency) on
the same books, with the plain retrain as the reference in the same run:

1. per drift seed (``--seeds``, default 32 and 35; 2,000 accounts): the billing-migration book,
   its dates, the champion's cut and the retrain cut as ``benchmarks/monitoring_study.py``
   builds them (its ``study_dates``, ``simulate_book`` and ``cut_book``: the same book, the
   same days); the old champion trained on the book cut at the first scored week, and three
   retrains on the book cut after the 30th week: plain (off), half-life 90 and 180 days;
2. each model scores the 10 weeks after the retrain from the whole book (``build_features``
   at each week, the features the weekly job computes), and the realized AUC per matured
   cohort against ``observation_grid``'s labels (the rows ``realized.parquet`` would hold);
   with the mean difference to the plain retrain and its 95% interval (accounts resampled, the
   same resample for every cohort), each cohort's ECE and the champion gate's verdict (``registry.gate_decision``, the
   comparison ``churnml train`` makes against the old champion, without MLflow);
2b. with ``--twin`` (the reference that says what "restores" means): the same seed's book
   simulated *without* the drift (the same accounts and history until the change), retrained
   plain at the same cut and scored on the same weeks. Per model, its **gap to the oracle**
   (mean over cohorts of the oracle's AUC minus the model's, on the same rows; 95% interval,
   accounts resampled); the twin's gap is what a retrain achieves when nothing changed, so a
   retrain after the change *restores performance* when its gap is no larger than the twin's
   (the difference of the two gaps and its interval, one account resample shared by both
   books): "yes" when the interval's upper end is below ``--restore-margin`` (0.03 AUC: a
   non-inferiority margin), "no" when its lower end is above 0, else "undecided" (the books
   are too small to tell). Needs ``--oracle-paths`` > 0;
2c. with ``--new-world-twin`` (what a retrain can reach in the world after the change): the
   same accounts simulated with the migration in force from the book's second day, so every
   week of the retrain's history is post-change; retrained plain at the same cut and judged
   like the stationary twin. The stationary twin says how a retrain does when nothing changed;
   this one how it does when the new world is all there ever was (a new world can be harder to
   predict from the observed data than the old, which the oracle, knowing the hidden state,
   does not feel), so "restored" against it means: as good as a retrain can be after this change;
3. a stationary book (``--stationary-seed`` 71, ``--stationary-accounts`` 5,000, 24 months):
   the product's training of each of ``--stationary-targets`` (default churn) with the weight
   off and at each of ``--stationary-half-lives`` (default 180 days), test AUC (95% interval),
   ECE and the backtest's mean AUC: what the weight costs when nothing changed.

The training runs in-process with the shipped ``models/churn.yaml``; the drift retrains set
``split.backtest_folds`` to 1 (the backtest adds metrics, not trees: the registered model and
the gate are the same). The dataset of each cut is built once and shared by its variants.
Models are saved under ``--work`` and reused by a rerun. Prints the tables, a JSON line and the
load average at start and end.

Usage::

    nice -n 10 python benchmarks/recency_retrain.py --work /tmp/recency12/study
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import cached_book, log  # benchmarks/ is on sys.path when run as a script
import monitoring_study as MS

sys.path.insert(0, MS.SRC)  # this checkout's churnml, as the study's subprocesses use

TARGET = "churn"
HALF_LIVES = (90.0, 180.0)  # the default --half-lives; the plain retrain (None) is always the reference


def load() -> str:
    return MS.load()


def _name(half_life: float | None) -> str:
    return "plain" if half_life is None else f"half_life_{half_life:g}"


def unweighted(config):
    """``config`` with the recency weight off: the plain retrain, whatever the shipped default
    (``with_overrides`` ignores None, so ``dataclasses.replace``)."""
    from dataclasses import replace

    return replace(config, recency_half_life_days=None)


def dataset_of(book_dir: Path, config):
    from churnml.data.io import load_book
    from churnml.features.catalog import load_catalog
    from churnml.models.dataset import build_dataset

    book, _ = load_book(book_dir)
    return build_dataset(book, config, catalog=load_catalog())


def trained(folder: Path, dataset, config) -> tuple[object, dict]:
    """The registered model (the refit) and the run's figures; saved in ``folder`` and read
    back by a rerun. ``figures`` holds the test metrics and, when the run is a retrain, the
    gate (filled in by the caller)."""
    from churnml.features.catalog import load_catalog
    from churnml.models.model import TargetModel
    from churnml.models.train import train_on_dataset

    if (folder / "figures.json").exists():
        return TargetModel.load(folder / "model"), json.loads((folder / "figures.json").read_text())
    log(f"training {folder.name} (half-life {config.recency_half_life_days}), load {load()}")
    t = time.perf_counter()
    result = train_on_dataset(dataset, config, catalog=load_catalog())
    seconds = time.perf_counter() - t
    m = result.metrics
    figures = {k: float(m[k]) for k in ("test_roc_auc", "test_roc_auc_ci_low", "test_roc_auc_ci_high",
                                        "test_ece", "test_brier", "backtest_roc_auc_mean",
                                        "backtest_folds") if k in m}
    figures.update(seconds=seconds, load=os.getloadavg()[0],
                   half_life=config.recency_half_life_days,
                   train_end=result.model.info.get("train_end"))
    folder.mkdir(parents=True, exist_ok=True)
    result.model.save(folder / "model")
    figures["_result"] = result  # for the gate, this run only
    return result.model, figures


def variants(root: Path, half_lives, base, book_dir: Path):
    """Per half-life (None first: the plain retrain of ``base``, unweighted): its name, folder
    under ``root``, model and figures, trained or read back; the dataset of ``book_dir`` is built
    once, and only if some variant has to be trained."""
    dataset = None
    for half_life in (None, *half_lives):
        folder = root / _name(half_life)
        config = base if half_life is None else base.with_overrides(recency_half_life_days=half_life)
        if not (folder / "figures.json").exists() and dataset is None:
            dataset = dataset_of(book_dir, base)
        model, f = trained(folder, dataset, config)
        yield _name(half_life), folder, model, f


def cohorts(book_dir: Path, weeks: list[pd.Timestamp]) -> pd.DataFrame:
    """Features of every account active at each week and its label (matured rows only)."""
    from churnml.data.io import load_book
    from churnml.features.build import build_features
    from churnml.features.catalog import load_catalog
    from churnml.features.labels import observation_grid
    from churnml.models.config import load_config

    book, _ = load_book(book_dir)
    features = build_features(book, pd.DatetimeIndex(weeks), load_catalog())
    grid = observation_grid(book, pd.DatetimeIndex(weeks), load_config(TARGET).horizon_days)
    grid = grid.loc[grid["labeled"], ["account_id", "as_of", TARGET]]
    features["account_id"] = features["account_id"].astype(str)
    grid["account_id"] = grid["account_id"].astype(str)
    return features.merge(grid, on=["account_id", "as_of"], how="inner")


def realized(rows: pd.DataFrame, scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """ROC AUC and ECE per cohort (as_of) and model."""
    from churnml.models import metrics as M

    y = rows[TARGET].to_numpy(dtype="float64")
    out = []
    for name, p in scores.items():
        for as_of, idx in rows.groupby("as_of").indices.items():
            figures = M.probability_metrics(y[idx], p[idx])
            out.append({"as_of": as_of, "model": name, "roc_auc": figures["roc_auc"],
                        "ece": figures["ece"], "n": len(idx), "positives": int(y[idx].sum())})
    return pd.DataFrame(out)


def mean_auc_difference(y: np.ndarray, groups: list[np.ndarray], a: np.ndarray, b: np.ndarray,
                        weight: np.ndarray | None = None) -> float:
    """Mean over the cohorts (``groups``: row indices per cohort) of AUC(a) - AUC(b), rows
    weighted by ``weight`` (a bootstrap's counts; None: every row once); cohorts with one class
    left out."""
    from sklearn.metrics import roc_auc_score

    diffs = []
    for idx in groups:
        w = None if weight is None else weight[idx]
        if w is not None:
            idx, w = idx[w > 0], w[w > 0]
        if y[idx].min() == y[idx].max():
            continue
        diffs.append(roc_auc_score(y[idx], a[idx], sample_weight=w)
                     - roc_auc_score(y[idx], b[idx], sample_weight=w))
    return float(np.mean(diffs))


def paired_difference(rows: pd.DataFrame, a: np.ndarray, b: np.ndarray, resamples: int = 200,
                      seed: int = 0) -> tuple[float, float, float]:
    """Mean over cohorts of AUC(a) - AUC(b) and its 95% percentile interval, resampling
    accounts (one resample shared by every cohort and both scores: the cohorts share most of
    their accounts, so they are not independent)."""
    y = rows[TARGET].to_numpy(dtype="float64")
    groups = list(rows.groupby("as_of").indices.values())
    uniques, inverse = np.unique(rows["account_id"].to_numpy().astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    values = [mean_auc_difference(y, groups, a, b, np.bincount(rng.integers(0, len(uniques), len(uniques)),
                                                                minlength=len(uniques))[inverse].astype("float64"))
              for _ in range(resamples)]
    low, high = np.percentile(values, [2.5, 97.5])
    return mean_auc_difference(y, groups, a, b), float(low), float(high)


def oracle_scores(book_dir: Path, rows: pd.DataFrame, seed: int, n_paths: int) -> np.ndarray:
    """The simulator's true probability of churn within the horizon for each row (NaN where it
    has none), ``rows`` in ``cohorts``' order."""
    from churnml.data.simulator import oracle_probability
    from churnml.models.config import load_config

    return np.asarray(oracle_probability(book_dir, rows[["account_id", "as_of"]],
                                         horizon_days=load_config(TARGET).horizon_days,
                                         n_paths=n_paths, seed=seed, target=TARGET), dtype="float64")


def gaps(books: dict[str, tuple[pd.DataFrame, np.ndarray, dict[str, np.ndarray]]], resamples: int = 200,
         seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Per book and model: the gap to the oracle, the mean over cohorts of AUC(oracle) -
    AUC(model) on the same rows (rows without an oracle value left out), as ``[point, low,
    high]``; and per book and model the bootstrap draws, for differences between books. One
    account resample is shared by every book (the books of one seed share their account ids)."""
    ids = np.unique(np.concatenate([r["account_id"].to_numpy().astype(str) for r, _, _ in books.values()]))
    prepared = {}
    for name, (rows, oracle, scores) in books.items():
        keep = np.isfinite(oracle)
        r = rows.loc[keep].reset_index(drop=True)
        prepared[name] = (r[TARGET].to_numpy(dtype="float64"), list(r.groupby("as_of").indices.values()),
                          np.searchsorted(ids, r["account_id"].to_numpy().astype(str)), oracle[keep],
                          {m: p[keep] for m, p in scores.items()})

    rng = np.random.default_rng(seed)
    draws = [np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids)).astype("float64")
             for _ in range(resamples)]
    out: dict = {"point": {}, "draws": {}}
    for name, (y, groups, account, o, scores) in prepared.items():
        for model, p in scores.items():
            key = f"{name}: {model}"
            out["point"][key] = mean_auc_difference(y, groups, o, p)
            out["draws"][key] = np.array([mean_auc_difference(y, groups, o, p, d[account]) for d in draws])
    return out


TWINS = {"twin": "the stationary twin", "new world": "the new-world twin"}


def twin_book(seed: int, args, kind: str, months: int, after) -> tuple[Path, Path]:
    """A twin of the seed's drifting book (the same accounts, simulated again) and its cut at
    the retrain week: ``"twin"`` without the drift, ``"new world"`` with the billing migration
    in force from the book's second day (every week of its history is post-change)."""
    folder = {"twin": "twin", "new world": "new_world"}[kind]
    work = args.work / f"migration_seed{seed}" / folder
    home, book, cut = (work / p for p in ("home", "book", "cut_retrain"))
    if not (book / "accounts.parquet").exists():
        if kind == "twin":
            MS.simulate_book(book, args.accounts, months, seed, home)
        else:
            from churnml.data.simulator import weeks_for

            start = MS.END - pd.Timedelta(weeks=weeks_for(months))
            MS.simulate_book(book, args.accounts, months, seed, home, "billing_migration",
                             start + pd.Timedelta(days=1))
    if not (cut / "accounts.parquet").exists():
        MS.cut_book(book, cut, after[0])
    return work, book


def twin_reference(seed: int, args, first, months, after, drift_rows, drift_models) -> dict:
    """The drifting book's models against the twins' plain retrains: gaps to the oracle on the
    same weeks (see the module docstring, 2b and 2c)."""
    from churnml.models.config import load_config

    kinds = [k for k, on in (("twin", args.twin), ("new world", args.new_world_twin)) if on]
    # the plain retrain is the unweighted one, whatever the shipped config's default
    base = unweighted(load_config(TARGET)).with_overrides(backtest_folds=1)
    drift_book = args.work / f"migration_seed{seed}" / "book"
    drift_oracle = oracle_scores(drift_book, drift_rows, seed, args.oracle_paths)
    books = {"drift": (drift_rows, drift_oracle, {m: mod.predict_proba(drift_rows) for m, mod in drift_models.items()})}
    realized_auc, test_auc = {}, {}
    for kind in kinds:
        work, book = twin_book(seed, args, kind, months, after)
        folder = work / "plain"
        model, f = trained(folder, None if (folder / "figures.json").exists() else dataset_of(work / "cut_retrain", base), base)
        f.pop("_result", None)
        (folder / "figures.json").write_text(json.dumps(f))
        log(f"seed {seed}: {TWINS[kind]}'s cohorts and oracle ({args.oracle_paths} paths), load {load()}")
        rows = cohorts(book, after)
        scores = {"plain": model.predict_proba(rows)}
        books[kind] = (rows, oracle_scores(book, rows, seed, args.oracle_paths), scores)
        realized_auc[kind] = float(realized(rows, scores)["roc_auc"].mean())
        test_auc[kind] = f.get("test_roc_auc")
    g = gaps(books)
    table = {}
    for key, point in g["point"].items():
        draws = g["draws"][key]
        row = {"gap": point, "gap_ci": np.percentile(draws, [2.5, 97.5]).tolist()}
        if key.startswith("drift"):
            for kind in kinds:
                reference = f"{kind}: plain"
                diff = draws - g["draws"][reference]
                low, high = np.percentile(diff, [2.5, 97.5]).tolist()
                # non-inferiority: restored when the gap is surely at most the reference's +
                # the margin; not restored when it is surely larger than the reference's;
                # otherwise the books are too small to tell
                row[f"minus {kind}"] = {
                    "point": point - g["point"][reference], "ci": [low, high],
                    "restored": "yes" if high < args.restore_margin else "no" if low > 0 else "undecided"}
        table[key] = row
    return {"realized_auc_mean": realized_auc, "test_auc": test_auc, "gaps": table, "kinds": kinds}


def pooled(seeds: list[dict], margin: float) -> dict:
    """Over the seeds (each a replicate book): per drift model and twin, the mean of the
    seeds' gap differences, its 95% t-interval over seeds and the same verdict rule. The
    seeds, not the accounts, are the unit: the spread between books (how each one's change
    lands) is part of what "restores" has to hold against."""
    from scipy import stats

    out: dict = {}
    twins = [s["twin"] for s in seeds if s.get("twin")]
    if len(twins) < 3:
        return out
    for kind in twins[0]["kinds"]:
        for key in twins[0]["gaps"]:
            values = [t["gaps"].get(key, {}).get(f"minus {kind}", {}).get("point") for t in twins]
            if not key.startswith("drift") or any(v is None for v in values):
                continue
            v = np.asarray(values, dtype="float64")
            half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
            low, high = float(v.mean() - half), float(v.mean() + half)
            out[f"{key} minus {kind}"] = {
                "mean": float(v.mean()), "ci": [low, high], "seeds": len(v), "values": v.tolist(),
                "restored": "yes" if high < margin else "no" if low > 0 else "undecided"}
    return out


def drift_seed(seed: int, args) -> dict:
    from churnml.models.config import load_config
    from churnml.models.registry import RetrainRecommendation, gate_decision

    work = args.work / f"migration_seed{seed}"
    home, book, cut, retrain_cut = (work / p for p in ("home", "book", "cut", "cut_retrain"))
    first, months, drift_start = MS.study_dates(args.weeks, args.after_weeks, args.history_months,
                                                args.drift_after)
    after = MS.weeks_from(first + pd.Timedelta(weeks=args.weeks), args.after_weeks)
    if not (book / "accounts.parquet").exists():
        MS.simulate_book(book, args.accounts, months, seed, home, "billing_migration", drift_start)
    if not (cut / "accounts.parquet").exists():
        MS.cut_book(book, cut, first)
    if not (retrain_cut / "accounts.parquet").exists():
        MS.cut_book(book, retrain_cut, after[0])
    # the plain retrain is the unweighted one, whatever the shipped config's default
    base = unweighted(load_config(TARGET)).with_overrides(backtest_folds=1)
    old_folder = work / "champion"
    old_dataset = None if (old_folder / "figures.json").exists() else dataset_of(cut, base)
    champion, champion_figures = trained(old_folder, old_dataset, base)
    champion_figures.pop("_result", None)
    models, figures = {"old champion": champion}, {"old champion": champion_figures}
    for name, folder, model, f in variants(work, args.half_lives, base, retrain_cut):
        result = f.pop("_result", None)
        if result is not None:
            gate = gate_decision(champion, "1", result)
            # the same gate after the monitoring recommended retraining v1 (the studies' trigger
            # fires on every run from the seventh week after the change): non-inferiority
            noninferior = gate_decision(champion, "1", result, RetrainRecommendation(
                TARGET, after[0] - pd.Timedelta(weeks=1), "1", True, "the study's trigger"))
            f.update(gate_promotes=gate.became_champion, gate_reason=gate.reason,
                     gate_after_retrain_promotes=noninferior.became_champion)
            (folder / "figures.json").write_text(json.dumps(f))
        models[name], figures[name] = model, f
    (old_folder / "figures.json").write_text(json.dumps(champion_figures))
    log(f"seed {seed}: scoring the {len(after)} weeks after the retrain, load {load()}")
    rows = cohorts(book, after)
    scores = {name: model.predict_proba(rows) for name, model in models.items()}
    table = realized(rows, scores)
    auc = table.pivot(index="as_of", columns="model", values="roc_auc")[list(models)]
    ece = table.pivot(index="as_of", columns="model", values="ece")[list(models)]
    oracle = None
    if args.oracle_paths:  # the ceiling on the same cohorts: what "restored" can mean here
        log(f"seed {seed}: the oracle on the same cohorts ({args.oracle_paths} paths), load {load()}")
        oracle = MS.oracle_auc(book, after, seed, args.oracle_paths)
    summary = {}
    for name in models:
        summary[name] = {
            "realized_auc_mean": float(auc[name].mean()),
            "realized_ece_mean": float(ece[name].mean()),
            "cohorts_above_plain": (int((auc[name] > auc["plain"]).sum()) if name != "plain" else None),
            "auc_minus_plain": (paired_difference(rows, scores[name], scores["plain"])
                                if name != "plain" else None),
            **{k: v for k, v in figures[name].items() if k != "_result"},
        }
    twin = (twin_reference(seed, args, first, months, after, rows, models)
            if args.twin or args.new_world_twin else None)
    return {"seed": seed, "first_week": str(first.date()), "drift_start": str(drift_start.date()), "twin": twin,
            "retrain_cut": str(after[0].date()), "cohorts": int(len(auc)),
            "cohort_rows_mean": float(table.groupby("as_of")["n"].first().mean()),
            "cohort_events_mean": float(table.groupby("as_of")["positives"].first().mean()),
            "auc": auc if oracle is None else auc.join(oracle),
            "oracle_auc_mean": None if oracle is None else float(oracle.mean()),
            "summary": summary}


def stationary(args) -> dict:
    """Per target of ``--stationary-targets``: the product's training on the stationary book with
    the weight off and at each of ``--stationary-half-lives``."""
    from churnml.models.config import load_config

    book = cached_book(args.work / "cache", args.stationary_accounts, args.stationary_months,
                       args.stationary_seed)
    out: dict = {}
    for target in args.stationary_targets:
        # churn's folder keeps its earlier name, so the saved runs of earlier sessions are reused
        root = args.work / (f"stationary_seed{args.stationary_seed}" if target == "churn"
                            else f"stationary_seed{args.stationary_seed}_{target}")
        for name, folder, _, f in variants(root, args.stationary_half_lives,
                                           unweighted(load_config(target)), book):
            f.pop("_result", None)
            (folder / "figures.json").write_text(json.dumps(f))
            out[f"{target}: {name}"] = f
    return out


def markdown_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a ``## title`` and a markdown table."""
    print(f"\n## {title}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/churnml-recency-study"))
    p.add_argument("--seeds", default="32,35")
    p.add_argument("--accounts", type=int, default=2000)
    p.add_argument("--weeks", type=int, default=30)
    p.add_argument("--after-weeks", type=int, default=10)
    p.add_argument("--history-months", type=int, default=20)
    p.add_argument("--drift-after", type=int, default=6)
    p.add_argument("--stationary-seed", type=int, default=71)
    p.add_argument("--stationary-accounts", type=int, default=5000)
    p.add_argument("--stationary-months", type=int, default=24)
    p.add_argument("--no-stationary", action="store_true")
    p.add_argument("--stationary-targets", default="churn",
                   help="the outcomes trained on the stationary book (comma-separated)")
    p.add_argument("--stationary-half-lives", default="180",
                   help="the stationary book's weighted trainings' half-lives in days, beside off")
    p.add_argument("--half-lives", default=",".join(f"{h:g}" for h in HALF_LIVES),
                   help="the weighted retrains' half-lives in days, beside the plain one")
    p.add_argument("--twin", action="store_true",
                   help="also the stationary twin's plain retrain and every model's gap to the oracle "
                        "(what 'restores performance' is judged against)")
    p.add_argument("--new-world-twin", action="store_true",
                   help="also the new-world twin: the same accounts with the migration in force from the "
                        "book's start, retrained plainly at the same cut (what a retrain can reach when "
                        "its whole history is post-change)")
    p.add_argument("--restore-margin", type=float, default=0.03,
                   help="--twin: a retrain restores performance when its gap to the oracle is, with "
                        "95%% confidence, less than the twin's gap plus this margin (AUC)")
    p.add_argument("--oracle-paths", type=int, default=16,
                   help="the simulator's oracle AUC per cohort with this many paths (0: none)")
    args = p.parse_args()
    args.half_lives = [float(h) for h in args.half_lives.split(",") if h]
    args.stationary_targets = [t for t in args.stationary_targets.split(",") if t]
    args.stationary_half_lives = [float(h) for h in args.stationary_half_lives.split(",") if h]
    started = time.perf_counter()
    start_load = load()
    log(f"load average at start: {start_load}")
    seeds = [drift_seed(int(s), args) for s in args.seeds.split(",") if s]
    still = None if args.no_stationary else stationary(args)
    pd.set_option("display.width", 200)
    for s in seeds:
        print(f"\n## billing_migration, seed {s['seed']}, {args.accounts:,} accounts: change "
              f"{s['drift_start']}, champion cut {s['first_week']}, retrain cut {s['retrain_cut']}; "
              f"{s['cohorts']} matured cohorts after it ({s['cohort_rows_mean']:.0f} rows, "
              f"{s['cohort_events_mean']:.0f} events each)")
        print(s["auc"].round(3).to_string())
        if s["oracle_auc_mean"] is not None:
            print(f"oracle AUC on these cohorts, mean: {s['oracle_auc_mean']:.3f}")
        print("\n| model | realized AUC mean | minus plain (95% CI, accounts resampled) | cohorts above plain | realized ECE mean | test AUC (95% CI) | gate vs old champion (usual rule; non-inferiority) |")
        print("|---|---|---|---|---|---|---|")
        for name, f in s["summary"].items():
            gate = ("-" if "gate_promotes" not in f else
                    ("promotes" if f["gate_promotes"] else "keeps v1") + f" ({f['gate_reason'].split(' on the same')[0]})")
            if "gate_after_retrain_promotes" in f:
                gate += "; after a recommended retrain: " + ("promotes" if f["gate_after_retrain_promotes"] else "keeps v1")
            above = "-" if f["cohorts_above_plain"] is None else f"{f['cohorts_above_plain']} of {s['cohorts']}"
            diff = ("-" if f["auc_minus_plain"] is None else
                    "{:+.3f} ({:+.3f} to {:+.3f})".format(*f["auc_minus_plain"]))
            print(f"| {name} | {f['realized_auc_mean']:.3f} | {diff} | {above} | {f['realized_ece_mean']:.3f} | "
                  f"{f['test_roc_auc']:.3f} ({f['test_roc_auc_ci_low']:.3f}-{f['test_roc_auc_ci_high']:.3f}) | {gate} |")
    for s in seeds:
        if not s.get("twin"):
            continue
        tw = s["twin"]
        kinds = tw["kinds"]
        realized_text = "; ".join(f"{TWINS[k]}'s plain retrain realized {tw['realized_auc_mean'][k]:.3f}" for k in kinds)
        print(f"\n## seed {s['seed']}: gap to the oracle on the same weeks (oracle AUC - model AUC, mean of "
              f"cohorts; 95% CI, accounts resampled); {realized_text}")
        print("| book: model | gap to oracle (95% CI) | " + " | ".join(f"minus {TWINS[k]}'s gap (95% CI) | restored" for k in kinds) + " |")
        print("|---|---|" + "---|---|" * len(kinds))
        for key, r in tw["gaps"].items():
            cells = []
            for k in kinds:
                d = r.get(f"minus {k}")
                cells.append("- | -" if d is None else
                             "{:+.3f} ({:+.3f} to {:+.3f}) | {}".format(d["point"], *d["ci"], d["restored"]))
            print(f"| {key} | {r['gap']:.3f} ({r['gap_ci'][0]:.3f} to {r['gap_ci'][1]:.3f}) | " + " | ".join(cells) + " |")
    pool = pooled(seeds, args.restore_margin)
    if pool:
        markdown_table(
            f"over the {len(seeds)} seeds (each seed's gap difference a replicate; mean and 95% "
            f"t-interval over seeds; restored when the upper end is below {args.restore_margin:g})",
            ["drift model minus reference", "mean (95% CI over seeds)", "per seed", "restored"],
            [[key, f"{r['mean']:+.3f} ({r['ci'][0]:+.3f} to {r['ci'][1]:+.3f})",
              " / ".join(f"{x:+.3f}" for x in r["values"]), r["restored"]] for key, r in pool.items()])
    if still:
        markdown_table(
            f"stationary, seed {args.stationary_seed}, {args.stationary_accounts:,} accounts x "
            f"{args.stationary_months} months (no drift)",
            ["outcome: weighting", "test AUC (95% CI)", "test ECE", "test Brier",
             "backtest AUC mean (folds)", "train s (load)"],
            [[name, f"{f['test_roc_auc']:.3f} ({f['test_roc_auc_ci_low']:.3f}-{f['test_roc_auc_ci_high']:.3f})",
              f"{f['test_ece']:.4f}", f"{f['test_brier']:.4f}",
              f"{f['backtest_roc_auc_mean']:.3f} ({f['backtest_folds']:.0f})",
              f"{f['seconds']:.0f} ({f['load']:.1f})"] for name, f in still.items()])
    print(json.dumps({"seeds": [{k: v for k, v in s.items() if k != "auc"} for s in seeds],
                      "pooled": pool, "stationary": still}, default=str))
    print(f"\nwall {time.perf_counter() - started:.0f} s; load average at start {start_load}, "
          f"at end {load()} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
