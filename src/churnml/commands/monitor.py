"""``churnml monitor --scores DIR --data DIR``: realized performance of every matured week.

Recomputes ``DIR/monitoring/realized.parquet`` from every complete partition of the scores
folder and the book's revenue history (a backfill: the same table whatever was there before;
the weekly job adds the newly matured weeks itself). See ``churnml.jobs.monitoring``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from churnml.commands.sources import source as parse_source


def monitor(
    scores: Annotated[Path, typer.Option("--scores", help="Output folder of churnml score (as_of=... partitions).")],
    data: Annotated[Path, typer.Option("--data", parser=parse_source, help="Folder with <table>.parquet|.csv files (the book whose revenue history gives the outcomes). Or a database URL (postgresql://..., duckdb:///...)")],
) -> None:
    """Check every scored week whose outcomes are now known: model vs health score."""
    from churnml.console import console, literal, progress
    from churnml.data.io import load_book
    from churnml.errors import UsageError
    from churnml.jobs import monitoring

    if not scores.is_dir():
        raise UsageError(f"--scores must be the output folder of churnml score. Got {str(scores)!r}.")
    if isinstance(data, Path) and not data.is_dir():
        raise UsageError(f"--data must be a folder of table files. Got {str(data)!r}.")
    with progress("monitor") as step:
        step.note("loading the book")
        book, _ = load_book(data)
        step.note("measuring the matured weeks")
        table = monitoring.update_realized(scores, book, spans=monitoring.registry_spans,
                                           recompute=True)
    counted = monitoring.out_of_sample(table)
    # plain aligned text: every value whole at any terminal width
    header = (f"{'outcome':<12} {'week':<10} {'accounts':>8} {'events':>6} {'AUC':>6} "
              f"{'health':>6} {'ECE':>6} {'weeks':>5} {'in sample':>9}")
    lines = ["realized performance, latest matured week out of sample", header,
             "-" * len(header)]
    for outcome in sorted(table["outcome"].unique()) if len(table) else []:
        rows = counted[counted["outcome"] == outcome]
        every = table[table["outcome"] == outcome]
        in_sample = every.loc[every["scorer"] == "model", "as_of"].nunique() - \
            rows.loc[rows["scorer"] == "model", "as_of"].nunique()
        if not len(rows):
            lines.append(f"{outcome:<12} {'-':<10} {'-':>8} {'-':>6} {'-':>6} {'-':>6} {'-':>6} "
                         f"{0:>5} {in_sample:>9}")
            continue
        last = rows[rows["as_of"] == rows["as_of"].max()].set_index("scorer")
        model = last.loc["model"] if "model" in last.index else None
        health = last.loc["health_score"]
        lines.append(
            f"{outcome:<12} {rows['as_of'].max():%Y-%m-%d} {int(health['n']):>8,} "
            f"{int(health['positives']):>6,} "
            f"{(format(model['roc_auc'], '.3f') if model is not None else '-'):>6} "
            f"{health['roc_auc']:>6.3f} "
            f"{(format(model['ece'], '.3f') if model is not None else '-'):>6} "
            f"{rows['as_of'].nunique():>5} {in_sample:>9}")
    if len(lines) == 3:
        lines.append("no scored week has matured yet (outcomes are known one horizon later)")
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
    console.print("AUC and ECE: the model's; health: the health score's AUC. weeks: matured weeks "
                  "out of sample (counted); in sample: matured weeks inside the scoring model's "
                  "training span (not counted)", highlight=False, soft_wrap=True)
    console.print(f"wrote {literal(monitoring.realized_path(scores))} ({len(table):,} rows)",
                  highlight=False, soft_wrap=True)
