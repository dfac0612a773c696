"""``churnml validate --data DIR [--rejects FILE]``: check a book of business against the contract.

Prints, per table, rows read / accepted / rejected (they always add up), where the rejected
rows went and any warnings. Exit code 0 when the book is usable (with a warning line when rows
were set aside), 2 with a message naming table, column, count and examples when it is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from churnml.commands.sources import source as parse_source


def validate(
    data: Annotated[Path, typer.Option("--data", parser=parse_source, help="Folder with <table>.parquet|.csv files. Or a database URL (postgresql://..., duckdb:///...)")],
    rejects: Annotated[
        Optional[Path],
        typer.Option("--rejects", help="Where to write rejected rows (CSV). "
                                       "Default: <data>/_rejects.csv."),
    ] = None,
) -> None:
    """Validate a book of business: typed schemas, rows set aside, counts per table."""
    from churnml.console import console, literal, progress
    from churnml.data.io import default_rejects_path, load_book

    rejects_path = rejects if rejects is not None else default_rejects_path(data)
    if rejects_path.is_dir():
        from churnml.errors import UsageError

        raise UsageError(f"--rejects {rejects_path}: is a folder; give a file "
                         "path (CSV) for the rejected rows")
    with progress(f"validating {data}"):
        _, report = load_book(data, rejects_path=rejects_path)
    console.print(report)
    if report.total_rejected:
        console.print(
            f"[yellow]warning:[/yellow] {report.total_rejected:,} of {report.total_read:,} rows "
            f"were set aside; see {literal(report.rejects_path)}", highlight=False, soft_wrap=True)
    else:
        console.print(f"[green]ok:[/green] all {report.total_read:,} rows accepted",
                      highlight=False)
