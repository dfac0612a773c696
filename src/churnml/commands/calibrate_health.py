"""``churnml calibrate-health --data DIR [--as-of DATE]``: re-fit the health score's weights.

Fits candidate dimension weights on matured outcomes, compares them with the adopted weights on
a later held-out window (ROC AUC, logged to the MLflow experiment ``churnml-health``), writes
the next ``weights-v<N>.yaml`` under the data home and adopts it only when it does better.
``--adopt V`` instead points the weekly job at an existing version (rollback).
See ``churnml.jobs.calibrate_health``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def calibrate_health(
    data: Annotated[Optional[Path], typer.Option("--data", help="Folder with <table>.parquet|.csv files.")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Use only outcomes known by this date (default: the data's end).")] = None,
    shrinkage: Annotated[Optional[float], typer.Option("--shrinkage", help="0 = fitted weights, 1 = keep the current ones (default from health_score.yaml).")] = None,
    horizon_days: Annotated[int, typer.Option("--horizon-days", help="Churn horizon of the labels.")] = 90,
    test_weeks: Annotated[int, typer.Option("--test-weeks", help="Weeks in the held-out later window.")] = 13,
    refit_tiers: Annotated[bool, typer.Option("--refit-tiers/--keep-tiers", help="Also re-place the tier cut points.")] = False,
    adopt_version: Annotated[Optional[str], typer.Option("--adopt", help="Adopt an existing weights version (e.g. 3) instead of fitting: rollback.")] = None,
    scores: Annotated[Optional[Path], typer.Option("--scores", help="Output folder of churnml score: also report which health dimension's alerts led to saves (recommended vs held out, docs/actions.md).")] = None,
) -> None:
    """Re-fit the health score's dimension weights from observed churn; adopt them if better."""
    from churnml.console import console, literal, progress
    from churnml.errors import UsageError
    from churnml.jobs import calibrate_health as cal

    if adopt_version is not None:
        path = cal.adopt(adopt_version)
        console.print(f"adopted health weights {literal(path.name)}", highlight=False)
        return
    if data is None or not data.is_dir():
        raise UsageError(f"--data must be a folder of table files. Got {str(data)!r}.")
    if shrinkage is not None and not 0.0 <= shrinkage <= 1.0:
        raise UsageError(f"--shrinkage must be between 0 and 1. Got {shrinkage}.")
    if horizon_days < 1 or test_weeks < 1:
        raise UsageError("--horizon-days and --test-weeks must be positive integers.")
    if scores is not None and not scores.is_dir():
        raise UsageError(f"--scores must be the output folder of churnml score. Got {str(scores)!r}.")
    with progress("calibrate-health") as step:
        result = cal.calibrate_health(data, as_of, horizon_days=horizon_days, test_weeks=test_weeks,
                                      shrinkage=shrinkage, refit_tiers=refit_tiers or None,
                                      on_stage=step.note)
    from rich.table import Table

    table = Table(title="health weights")
    table.add_column("dimension")
    table.add_column(f"current ({result.current_version})", justify="right")
    table.add_column(f"candidate ({result.candidate_version})", justify="right")
    for name, before in result.weights_before.items():
        table.add_row(name, f"{before:g}", f"{result.weights_after.get(name, float('nan')):g}")
    console.print(table)
    console.print(
        f"held-out ROC AUC ({result.test_dates[0].date()} to {result.test_dates[-1].date()}): "
        f"current {result.current_auc:.4f}, candidate {result.candidate_auc:.4f}", highlight=False)
    verdict = ("adopted: churnml score uses it from now on" if result.adopted
               else "not adopted: the current weights stay in use")
    console.print(f"wrote {literal(result.weights_path)} ({verdict})", highlight=False, soft_wrap=True)
    if scores is not None:
        print_dimension_saves(data, scores)


def print_dimension_saves(data: Path, scores: Path) -> None:
    """Which health dimension's alerts led to saves: the churn plays' recommended vs held-out
    accounts grouped by the dimension of the reason behind each recommendation (descriptive;
    ``churnml.jobs.effects.dimension_effects``), as plain aligned text."""
    from churnml.console import console, progress
    from churnml.data.io import load_book
    from churnml.jobs import effects as E

    with progress("saves by health dimension") as step:
        step.note("loading the book")
        book, _ = load_book(data)
        step.note("measuring the plays")
        result = E.measure(scores, book)
    dims = result.dimensions if result.dimensions is not None else E.dimension_effects(
        result.units, E.dimension_of_features())
    header = (f"{'dimension':<14} {'rec':>6} {'hold':>5} {'worked':>6} {'rate rec':>8} "
              f"{'rate hold':>9} {'ITT pts':>7} {'interval':>15} {'PP pts':>7}  verdict")
    lines = ["which health dimension's alerts led to saves (churn plays, recommended vs held out)",
             header, "-" * len(header)]

    def pts(x: float) -> str:
        return "-" if x != x else f"{x * 100:+.1f}"

    for _, r in dims.iterrows():  # one row per health dimension
        ci = ("-" if r["effect_ci_low"] != r["effect_ci_low"] else
              f"[{r['effect_ci_low'] * 100:+.1f}, {r['effect_ci_high'] * 100:+.1f}]")
        rate_rec = "-" if r["rate_recommended"] != r["rate_recommended"] else f"{r['rate_recommended']:.1%}"
        rate_hold = "-" if r["rate_holdout"] != r["rate_holdout"] else f"{r['rate_holdout']:.1%}"
        lines.append(f"{r['dimension']:<14} {int(r['n_recommended']):>6,} {int(r['n_holdout']):>5,} "
                     f"{int(r['n_worked']):>6,} {rate_rec:>8} {rate_hold:>9} "
                     f"{pts(r['effect']):>7} {ci:>15} {pts(r['effect_pp']):>7}  {r['verdict']}")
    if not len(dims):
        lines.append("no churn play has been recommended in the scored weeks yet")
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
