"""``churnml effects --data DIR --scores DIR [--out DIR]``: what each play has been measured to
do, recommended vs held out, once the outcomes are known.

What was recommended and held out comes from the weekly partitions of ``--scores`` (the
record). Recomputing it from the book alone is not offered: the queue's order and the
holdout's strata depend on each week's churn probabilities, which only the champion model
that scored that week gives, so ``--scores`` is required (``docs/actions.md``). Writes
``OUT/effects/effects.parquet`` (and ``effects.csv``, ``units.parquet``; ``OUT`` defaults to
the scores folder), prints the table and logs an MLflow run (experiment ``churnml-effects``).
See ``churnml.jobs.effects``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def _pts(x: float) -> str:
    return "-" if x != x else f"{x * 100:+.1f}"


def _ci(low: float, high: float) -> str:
    return "-" if low != low else f"[{low * 100:+.1f}, {high * 100:+.1f}]"


def _num(x: float, fmt: str = ",.0f") -> str:
    if x != x:
        return "-"
    return "never" if x == float("inf") else format(x, fmt)


def _money(x: float) -> str:
    return "-" if x != x else (f"-${-x:,.0f}" if x < 0 else f"${x:,.0f}")


def render(table) -> list[str]:
    """The console table: plain aligned text, every value whole at any width (as
    ``churnml monitor``)."""
    header = (f"{'playbook':<22} {'outcome':<11} {'rec':>5} {'hold':>5} {'worked':>6} "
              f"{'rate rec':>8} {'rate hold':>9} {'ITT pts':>7} {'interval':>15} "
              f"{'PP pts':>7} {'NNT':>6} {'MRR/action':>10} {'MRR saved':>10} {'more':>6} "
              f"{'immature':>8}  verdict")
    lines = [header, "-" * len(header)]
    for _, r in table.iterrows():  # one row per play
        lines.append(
            f"{r['playbook']:<22} {r['outcome']:<11} {int(r['n_recommended']):>5,} "
            f"{int(r['n_holdout']):>5,} {int(r['n_worked']):>6,} "
            f"{_num(r['rate_recommended'], '.1%'):>8} {_num(r['rate_holdout'], '.1%'):>9} "
            f"{_pts(r['effect']):>7} {_ci(r['effect_ci_low'], r['effect_ci_high']):>15} "
            f"{_pts(r['effect_pp']):>7} {_num(r['nnt'], ',.1f'):>6} "
            f"{_money(r['mrr_saved_per_action']):>10} {_money(r['mrr_saved_to_date']):>10} "
            f"{_num(r['more_cases_to_exclude_zero']):>6} {int(r['n_immature']):>8,}  "
            f"{r['verdict']}")
    if not len(table):
        lines.append("no queued recommendation in the scored weeks yet")
    return lines


def effects(
    data: Annotated[Path, typer.Option("--data", help="Folder with <table>.parquet|.csv files (the book: revenue history for the outcomes, cs_actions for what was worked).")],
    scores: Annotated[Optional[Path], typer.Option("--scores", help="Output folder of churnml score (as_of=... partitions): the record of what was recommended and held out. Required.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where effects/ is written (default: the --scores folder).")] = None,
    worked_within_days: Annotated[int, typer.Option("--worked-within-days", help="A cs_actions row this many days after the recommendation counts as working it.")] = 14,
    confidence: Annotated[float, typer.Option("--confidence", help="Confidence of the intervals.")] = 0.95,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the MRR bootstrap.")] = 0,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the figures as an MLflow run (experiment churnml-effects).")] = True,
) -> None:
    """Measure what each play did: recommended vs held out, once outcomes are known."""
    from churnml.console import console, literal, progress
    from churnml.data.io import load_book
    from churnml.errors import UsageError
    from churnml.jobs import effects as E

    if scores is None:
        raise UsageError(
            "--scores is required: what was recommended and held out is read from the weekly "
            "partitions of churnml score. Recomputing it from the book alone would need each "
            "week's churn probabilities from the champion model that scored that week (the "
            "queue's order and the holdout's risk strata depend on them); see docs/actions.md.")
    if not data.is_dir():
        raise UsageError(f"--data must be a folder of table files. Got {str(data)!r}.")
    if not scores.is_dir():
        raise UsageError(f"--scores must be the output folder of churnml score. Got {str(scores)!r}.")
    if worked_within_days < 1:
        raise UsageError(f"--worked-within-days must be a positive integer. Got {worked_within_days}.")
    if not 0.5 <= confidence < 1.0:
        raise UsageError(f"--confidence must be in [0.5, 1). Got {confidence}.")
    out = out or scores
    with progress("effects") as step:
        step.note("loading the book")
        book, report = load_book(data)
        step.note("measuring the plays")
        result = E.measure(scores, book, worked_within_days=worked_within_days,
                           confidence=confidence, seed=seed)
        path = E.write_effects(result, out)
        run_id = None
        if mlflow:
            step.note("logging the run to MLflow")
            run_id = E.log_run(result, out, {
                "data": str(data), "scores": str(scores), "worked_within_days": worked_within_days,
                "confidence": confidence, "seed": seed, "weeks_read": result.weeks_read,
                "has_cs_actions": result.has_actions})
    title = (f"measured effect of every play, {confidence:.0%} intervals; ITT = recommended vs "
             f"held out, PP = worked vs held out (per protocol)")
    console.print("\n".join([title, *render(result.table)]), highlight=False, markup=False,
                  soft_wrap=True)
    console.print("pts: percentage points of the play's outcome, positive = the play helps "
                  "(fewer churns or contractions, more expansions). NNT: recommendations per "
                  "outcome changed. MRR/action: ITT MRR effect over the share worked. more: "
                  "matured cases before the interval is expected to exclude zero at the current "
                  "effect. immature: recommendations whose outcome is not known yet (one "
                  "horizon after; never counted)", highlight=False, soft_wrap=True)
    plays = getattr(result.uplift, "plays", None) or {}
    console.print(
        ("uplift models (the next weekly queue ranks these plays by the learned effect): "
         + ", ".join(f"{k} ({p.n_holdout:,} held out, {p.n_recommended:,} recommended)"
                     for k, p in plays.items())) if plays else
        "uplift models: none (no play meets the uplift rules of features/playbooks.yaml yet): "
        "the queue ranks by the playbook's priors", highlight=False, soft_wrap=True)
    if not result.has_actions:
        console.print("no cs_actions table in the book: nothing counts as worked (ITT only)",
                      highlight=False, soft_wrap=True)
    if result.weeks_skipped:
        console.print(f"{len(result.weeks_skipped)} week(s) written before the queue existed "
                      "were skipped", highlight=False, soft_wrap=True)
    console.print(f"wrote {literal(path)} ({len(result.table):,} plays, "
                  f"{len(result.units):,} recommendations)"
                  + (f"; MLflow run {run_id}" if run_id else ""), highlight=False,
                  soft_wrap=True)
