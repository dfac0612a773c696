"""``churnml monitor --scores DIR --data DIR``: realized performance of every matured week.

Recomputes ``DIR/monitoring/realized.parquet`` from every complete partition of the scores
folder and the book's revenue history (a backfill: the same table whatever was there before;
the weekly job adds the newly matured weeks itself). See ``churnml.jobs.monitoring``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def monitor(
    scores: Annotated[Path, typer.Option("--scores", help="Output folder of churnml score (as_of=... partitions).")],
    data: Annotated[Path, typer.Option("--data", help="Folder with <table>.parquet|.csv files (the book whose revenue history gives the outcomes).")],
) -> None:
    """Check every scored week whose outcomes are now known: model vs health score."""
    from churnml.console import console, literal, progress
    from churnml.data.io import load_book
    from churnml.errors import UsageError
    from churnml.jobs import monitoring

    if not scores.is_dir():
        raise UsageError(f"--scores must be the output folder of churnml score. Got {str(scores)!r}.")
    if not data.is_dir():
        raise UsageError(f"--data must be a folder of table files. Got {str(data)!r}.")
    with progress("monitor") as step:
        step.note("loading the book")
        book, _ = load_book(data)
        step.note("measuring the matured weeks")
        table = monitoring.update_realized(scores, book, spans=monitoring.registry_spans,
                                           recompute=True)
    from rich.table import Table

    counted = monitoring.out_of_sample(table)
    view = Table(title="realized performance, latest matured week out of sample")
    for column in ("outcome", "week scored", "accounts", "events", "model AUC", "health AUC",
                   "model ECE", "weeks counted", "weeks in sample"):
        view.add_column(column, justify="left" if column == "outcome" else "right")
    for outcome in sorted(table["outcome"].unique()) if len(table) else []:
        rows = counted[counted["outcome"] == outcome]
        every = table[table["outcome"] == outcome]
        in_sample = every.loc[every["scorer"] == "model", "as_of"].nunique() - \
            rows.loc[rows["scorer"] == "model", "as_of"].nunique()
        if not len(rows):
            view.add_row(outcome, "-", "-", "-", "-", "-", "-", "0", str(in_sample))
            continue
        last = rows[rows["as_of"] == rows["as_of"].max()].set_index("scorer")
        model = last.loc["model"] if "model" in last.index else None
        health = last.loc["health_score"]
        view.add_row(outcome, f"{rows['as_of'].max():%Y-%m-%d}", f"{int(health['n']):,}",
                     f"{int(health['positives']):,}",
                     f"{model['roc_auc']:.3f}" if model is not None else "-",
                     f"{health['roc_auc']:.3f}",
                     f"{model['ece']:.3f}" if model is not None else "-",
                     str(rows["as_of"].nunique()), str(in_sample))
    console.print(view)
    console.print(f"wrote {literal(monitoring.realized_path(scores))} ({len(table):,} rows)",
                  highlight=False, soft_wrap=True)
