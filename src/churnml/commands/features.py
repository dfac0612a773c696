"""``churnml features --data DIR --as-of DATE[,DATE...] --out FILE.parquet``.

Builds the catalog's point-in-time features for every account active at each as_of date and
writes one row per observation (``account_id, as_of``, then features) to a parquet file.
Prints the rows and columns written. Bad dates or a bad output path: exit code 2 with a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from churnml.commands.sources import source as parse_source


def parse_as_of_list(text: str):
    """``"2026-11-16,2026-11-09"`` -> sorted unique as_of Timestamps; ``UsageError`` if bad."""
    import pandas as pd

    from churnml.errors import UsageError, format_examples
    from churnml.features.windows import as_of_dates

    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise UsageError("--as-of needs at least one date (YYYY-MM-DD, comma-separated)")
    bad = []
    for part in parts:
        try:
            ts = pd.Timestamp(part)
            if pd.isna(ts) or ts != ts.normalize():
                bad.append(part)
        except (ValueError, TypeError):
            bad.append(part)
    if bad:
        raise UsageError(
            f"--as-of: {len(bad)} value(s) are not ISO dates (YYYY-MM-DD), e.g. {format_examples(bad)}"
        )
    return as_of_dates(parts)


def features(
    data: Annotated[Path, typer.Option("--data", parser=parse_source, help="Folder with <table>.parquet|.csv files. Or a database URL (postgresql://..., duckdb:///...)")],
    as_of: Annotated[
        str, typer.Option("--as-of", help="As-of date(s), ISO, comma-separated: 2026-11-16,2026-11-09.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output parquet file.")],
) -> None:
    """Build point-in-time features (one row per active account and as_of date)."""
    from churnml.console import console, literal, progress
    from churnml.data.io import load_book
    from churnml.errors import UsageError
    from churnml.features.build import build_features
    from churnml.features.catalog import load_catalog

    dates = parse_as_of_list(as_of)
    if out.suffix.lower() != ".parquet":
        raise UsageError(f"--out must be a .parquet file, got {str(out)!r}")
    catalog = load_catalog()
    with progress(f"loading {data}") as step:
        book, report = load_book(data)
        step.note(f"building features for {len(dates)} as_of date(s)")
        frame = build_features(book, dates, catalog)
    if getattr(report, "total_rejected", 0):
        console.print(
            f"[yellow]warning:[/yellow] {report.total_rejected:,} rows were set aside while "
            f"loading (run `churnml validate --data {literal(data)}` for details)",
            highlight=False, soft_wrap=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    from churnml.fsutil import atomic_write

    with atomic_write(out) as handle:  # never leave half a file behind
        frame.to_parquet(handle, index=False)
    n_features = frame.shape[1] - 2
    console.print(
        f"wrote {len(frame):,} rows x {frame.shape[1]} columns ({n_features} features) to {literal(out)}",
        highlight=False, soft_wrap=True)
    if len(frame) == 0:
        console.print("[yellow]warning:[/yellow] no account is active at the given date(s)",
                      highlight=False)
