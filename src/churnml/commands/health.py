"""``churnml health --data DIR --as-of DATE --out FILE.parquet``: the rule-based health score.

Loads and validates the book, builds the point-in-time features at ``as_of`` for every active
account, scores them (``churnml.health.HealthScore``) and writes ``account_id, as_of,
health_score, health_tier, health_<dimension>..., health_dimensions_used`` (plus
``health_overrides`` and ``health_weights_version``) to a parquet file (written to a temporary
name and renamed). Prints the tier distribution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from churnml.commands.sources import source as parse_source


def health(
    data: Annotated[Path, typer.Option("--data", parser=parse_source, help="Folder with <table>.parquet|.csv files. Or a database URL (postgresql://..., duckdb:///...)")],
    as_of: Annotated[str, typer.Option("--as-of", help="Scoring date, ISO (2026-11-16).")],
    out: Annotated[Path, typer.Option("--out", help="Output parquet file.")],
    config: Annotated[
        Optional[Path],
        typer.Option("--config", help="Health score YAML (default features/health_score.yaml)."),
    ] = None,
) -> None:
    """Score every active account's health (0-100) and tier at AS_OF."""
    from churnml.console import console, literal, progress
    from churnml.data.io import default_rejects_path, load_book
    from churnml.errors import UsageError
    from churnml.features.build import build_features
    from churnml.features.windows import to_as_of
    from churnml.health.score import HealthScore

    try:
        when = to_as_of(as_of)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--as-of must be an ISO date like 2026-11-16. Got {as_of!r}.") from exc
    if out.suffix != ".parquet":
        raise UsageError(f"--out must be a .parquet file. Got {str(out)!r}.")

    scorer = HealthScore(config=config)
    scorer.base_config  # validate the configuration before the slow steps
    with progress(f"health score at {when.date()}") as step:
        step.note(f"loading {data}")
        book, report = load_book(data, rejects_path=default_rejects_path(data))
        step.note("building features")
        features = build_features(book, [when])
        step.note("scoring")
        scores = scorer.score(features)
    if report.total_rejected:
        console.print(f"[yellow]warning:[/yellow] {report.total_rejected:,} input rows were set "
                      f"aside; see {literal(report.rejects_path)}", highlight=False, soft_wrap=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    from churnml.fsutil import atomic_write

    with atomic_write(out) as handle:
        scores.to_parquet(handle, index=False)

    from rich.table import Table

    counts = scores["health_tier"].value_counts()
    table = Table(title=f"health tiers at {when.date()} (weights {literal(scorer.version)})")
    table.add_column("tier")
    table.add_column("accounts", justify="right")
    table.add_column("share", justify="right")
    total = max(len(scores), 1)
    for tier in scorer.active_config.tiers:
        k = int(counts.get(tier.name, 0))
        table.add_row(f"{literal(tier.name)} ({tier.min:g}+)", f"{k:,}", f"{k / total:.1%}")
    console.print(table)
    if len(scores):
        no_data = int((scores["health_dimensions_used"] == "").sum())
        console.print(f"mean score {scores['health_score'].mean():.1f}; "
                      f"{no_data:,} accounts without any dimension data (neutral score)",
                      highlight=False)
    console.print(f"wrote {len(scores):,} rows to {literal(out)}", highlight=False)
