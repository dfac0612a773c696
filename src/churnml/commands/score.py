"""``churnml score --data DIR|URL --as-of DATE --out DIR|URL [--engine {local,spark}]``: the weekly job.

Scores every active account with both champion models and the adopted health weights into
``OUT/as_of=DATE/scores.parquet`` (atomic, reproducible, refused while another run holds the
output folder's lock), writes ``report.html`` beside it (``--out`` a database URL: the week's
rows also go to its ``churnml_scores`` table, ``churnml.jobs.sql_scores``), logs the run to MLflow (experiment
``churnml-weekly``) and prints where everything is. See ``churnml.jobs.weekly``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from churnml.commands.sources import source as parse_source


def score(
    data: Annotated[Path, typer.Option("--data", parser=parse_source, help="Folder with <table>.parquet|.csv files, or a database URL (postgresql://..., duckdb:///...).")],
    as_of: Annotated[str, typer.Option("--as-of", help="Scoring date, ISO (2026-11-16).")],
    out: Annotated[Path, typer.Option("--out", parser=parse_source, help="Output folder (one as_of=DATE partition per week), or a database URL (table churnml_scores).")],
    engine: Annotated[str, typer.Option("--engine", help="local (default) or spark.")] = "local",
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Accounts per chunk (bounds memory).")] = 10_000,
    shards: Annotated[int, typer.Option("--shards", help=(
        "Account shards for --engine spark (the least number: a big book gets more, at most "
        "2,500 accounts each)."))] = 8,
) -> None:
    """Score the whole book for AS_OF: probabilities, health, reasons, alerts, next best actions."""
    from churnml.console import console, literal, progress
    from churnml.errors import UsageError
    from churnml.features.windows import to_as_of
    from churnml.jobs.weekly import run_job

    try:
        when = to_as_of(as_of)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--as-of must be an ISO date like 2026-11-16. Got {as_of!r}.") from exc
    if engine not in ("local", "spark"):
        raise UsageError(f"--engine must be 'local' or 'spark'. Got {engine!r}.")
    if isinstance(data, Path) and not data.is_dir():
        raise UsageError(f"--data must be a folder of table files. Got {str(data)!r}.")
    if chunk_size < 1 or shards < 1:
        raise UsageError(f"--chunk-size and --shards must be positive integers. Got "
                         f"{chunk_size} and {shards}.")

    from churnml.data.dates import as_of_warning
    from churnml.data.io import folder_data_end

    stale = as_of_warning(folder_data_end(data), when)
    if stale:
        console.print(f"[yellow]warning:[/yellow] {stale}", highlight=False, soft_wrap=True)
    with progress(f"churnml score {when.date()}", total=None) as step:
        state: dict[str, int | None] = {"total": None}

        def on_chunk(done: int, total: int) -> None:
            if state["total"] is None:
                step._bar.update(step._task, total=total)
                state["total"] = total
            step._bar.update(step._task, completed=done)

        result = run_job(data, when, out, engine=engine, chunk_size=chunk_size,
                         on_stage=step.note, on_chunk=on_chunk, shards=shards)
    from churnml.outcomes import OUTCOMES

    s = result.summary
    money = ", ".join(f"{o.value_column.replace('_', ' ').replace('mrr', 'MRR')} ${s[o.value_column]:,.0f}"
                      for o in OUTCOMES if o.value_column in s)
    console.print(
        f"scored {result.weekly.rows:,} accounts at {when.date()} "
        f"({money}, {int(s['accounts_with_alerts']):,} with alerts; "
        f"health weights {literal(result.health_version)})", highlight=False, soft_wrap=True)
    console.print("models: " + ", ".join(f"{k} v{v}" for k, v in result.model_versions.items())
                  + (f"; no champion for {', '.join(result.missing_outcomes)} (columns left "
                     "null: run `churnml train --target ...`)" if result.missing_outcomes
                     else "")
                  + (f"; time to event v{result.time_to_event_version}"
                     if result.time_to_event_version is not None else
                     "; no time-to-event champion (its columns, the forecast and the renewals at "
                     "risk left out: `churnml train --target time_to_event`)"),
                  highlight=False, soft_wrap=True)
    from churnml.jobs.report import queue_counts

    queue = queue_counts(result.weekly.scores_path)
    if len(queue):
        console.print("this week's queue (queued / capacity per owner; held out to measure; "
                      "watch list): " + "; ".join(
                          f"{r['owner']} {int(r['worked']):,}/{int(r['capacity']):,}"
                          + (f" ({int(r['critical']):,} new critical)" if r["critical"] else "")
                          + f", {int(r['held_out']):,} held out, {int(r['watch']):,} watch"
                          for r in queue.to_dict("records")),
                      highlight=False, soft_wrap=True, markup=False)
    console.print(f"scores: {literal(result.weekly.scores_path)}", highlight=False, soft_wrap=True)
    if result.database:
        console.print(f"database: {result.weekly.rows:,} rows of {when.date()} in churnml_scores "
                      f"(view churnml_queue) of {result.database}", highlight=False,
                      soft_wrap=True, markup=False)
    console.print(f"report: {literal(result.report_path)}", highlight=False, soft_wrap=True)
    if result.run_id:
        console.print(f"MLflow run: {result.run_id} (experiment churnml-weekly)", highlight=False)
        if not result.report_logged:
            console.print("note: report.html was not logged to MLflow (a remote tracking server; "
                          "set CHURNML_LOG_REPORT_TO_MLFLOW=1 to log it)", highlight=False,
                          soft_wrap=True, markup=False)
    if result.weekly.replaced_incomplete:
        console.print(f"note: replaced the incomplete partition {result.weekly.partition.name} "
                      f"({result.weekly.replaced_incomplete})", highlight=False, soft_wrap=True,
                      markup=False)
    if result.weekly.skipped_partitions:
        console.print("warning: skipped incomplete earlier partition(s), not used as last week "
                      "or history; rerun those weeks: " + "; ".join(result.weekly.skipped_partitions),
                      highlight=False, soft_wrap=True, markup=False)
