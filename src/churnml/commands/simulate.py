"""``churnml simulate --out DIR [--accounts N] [--months M] [--seed S]``: a simulated book.

Writes the data-contract tables (``<table>.parquet``) and the hidden truth (``_truth/``) to
``--out``, shows a progress bar over the simulated weeks and prints the row count per table.
The same arguments give the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the book to.")],
    accounts: Annotated[int, typer.Option("--accounts", min=1, help="Accounts in the book.")] = 2000,
    months: Annotated[int, typer.Option("--months", min=1, help="Months of history.")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    end: Annotated[Optional[str], typer.Option(
        "--end", help="Day after the last simulated day (ISO date, default 2026-11-16).")] = None,
) -> None:
    """Simulate a book of business with a known hidden truth (for demos, tests, benchmarks)."""
    from rich.table import Table

    from churnml.console import console, literal, progress
    from churnml.data.simulator import DEFAULT_END, simulate as run, weeks_for, write_book
    from churnml.errors import UsageError

    end_date = end or DEFAULT_END
    try:
        import pandas as pd

        pd.Timestamp(end_date)
    except ValueError as exc:
        raise UsageError(f"--end must be an ISO date like 2026-11-16. Got {end_date!r}.") from exc
    with progress(f"simulating {accounts:,} accounts over {months} months",
                  total=weeks_for(months)) as step:

        def on_week(done: int, total: int) -> None:
            step.advance(1)

        sim = run(n_accounts=accounts, months=months, seed=seed, end=end_date, on_week=on_week)
        step.note("writing parquet files")
        counts = write_book(sim, out)
    table = Table(title=f"simulated book in {literal(out)} ({sim.meta['start']} to {sim.meta['end']})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    table.add_row("_truth/", ", ".join(sorted(sim.truth)))
    console.print(table)
