"""``churnml convert snapshot``: a one-row-per-customer table -> a book of business;
``churnml convert to-sql --data DIR --url URL``: a book folder into a database (PostgreSQL, DuckDB).

``churnml convert snapshot --input FILE --out DIR --id-column C --churn-column C
--tenure-column C --charge-column C (--snapshot-date DATE | --snapshot-date-column C)
[--churn-values yes,1,true] [--stay-values no,0,false]``

Reads a CSV or parquet table (one row per customer), converts it
(:func:`churnml.data.convert.convert_snapshot`), checks the result with the data contract's own
validation (every customer must be accepted, or nothing is written) and writes
``accounts.parquet`` and ``mrr_changes.parquet`` to ``--out`` (a new or empty folder), which
``churnml validate`` accepts. Bad input: exit code 2 with a message naming the column, the
count and examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="convert",
    help="Convert other shapes of customer data into a book of business.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _convert() -> None:
    """Convert other shapes of customer data into a book of business."""


def _col(flag: str, what: str):
    return typer.Option(flag, help=f"Column with {what}.")


@app.command("snapshot")
def snapshot(
    input_file: Annotated[Path, typer.Option("--input", help="One row per customer: .csv or .parquet.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the book to (new or empty).")],
    id_column: Annotated[str, _col("--id-column", "the customer id")],
    churn_column: Annotated[str, _col("--churn-column", "the churn flag")],
    tenure_column: Annotated[str, _col("--tenure-column", "the tenure in months")],
    charge_column: Annotated[str, _col("--charge-column", "the monthly charge (becomes MRR)")],
    snapshot_date: Annotated[Optional[str], typer.Option(
        "--snapshot-date", help="The date the table was taken (ISO), for every row.")] = None,
    snapshot_date_column: Annotated[Optional[str], typer.Option(
        "--snapshot-date-column", help="Column with each row's snapshot date.")] = None,
    churn_values: Annotated[Optional[str], typer.Option(
        "--churn-values", help="Flag values meaning churned, comma-separated, any case "
                               "(default yes,1,true).")] = None,
    stay_values: Annotated[Optional[str], typer.Option(
        "--stay-values", help="Flag values meaning still a customer (default no,0,false).")] = None,
) -> None:
    """A flat customer table (id, churn flag, tenure, monthly charge, attributes) -> accounts
    and mrr_changes of the data contract."""
    from churnml.console import console, literal, progress
    from churnml.data.convert import (
        DEFAULT_CHURN_VALUES, DEFAULT_STAY_VALUES, SnapshotSpec, convert_snapshot,
        parse_flag_values,
    )
    from churnml.data.io import read_table, validate_frames
    from churnml.errors import SchemaError, UsageError
    from churnml.fsutil import atomic_write

    if input_file.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"--input {input_file}: must be a .csv or .parquet file")
    if not input_file.is_file():
        raise UsageError(f"--input {input_file}: no such file")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: must be a new or empty folder")
    spec = SnapshotSpec(
        id_column=id_column, churn_column=churn_column, tenure_column=tenure_column,
        charge_column=charge_column, snapshot_date=snapshot_date,
        snapshot_date_column=snapshot_date_column,
        churn_values=parse_flag_values(churn_values, DEFAULT_CHURN_VALUES, "--churn-values"),
        stay_values=parse_flag_values(stay_values, DEFAULT_STAY_VALUES, "--stay-values"))
    with progress(f"converting {input_file}"):
        frame = read_table(input_file)
        book = convert_snapshot(frame, spec)
        # rows in = rows out: the contract's own validation must accept every row
        _, report = validate_frames(book.frames, source=str(input_file))
    if report.total_rejected:
        from collections import Counter

        reasons = Counter(zip(report.rejects["table"].astype(str),
                              report.rejects["reason"].astype(str)))
        raise SchemaError(
            f"the converted book would lose rows: {report.total_rejected:,} of "
            f"{report.total_read:,} rows were set aside ("
            + ", ".join(f"{t}: {n:,} {r}" for (t, r), n in sorted(reasons.items()))
            + f"), e.g. {report.rejects['value'].head(5).tolist()}; nothing was written")
    out.mkdir(parents=True, exist_ok=True)
    for name, table in book.frames.items():
        with atomic_write(out / f"{name}.parquet") as handle:
            table.to_parquet(handle, index=False)
    numbers = sum(kind == "number" for kind in book.attributes.values())
    console.print(
        f"[green]ok:[/green] {book.customers:,} customers -> {len(book.accounts):,} accounts "
        f"({book.churned:,} churned), {len(book.mrr_changes):,} mrr_changes rows, "
        f"{len(book.attributes)} attributes ({numbers} numbers, "
        f"{len(book.attributes) - numbers} text) in {literal(out)}",
        highlight=False, soft_wrap=True)
    for warning in book.warnings + report.warnings:
        console.print(f"[yellow]warning:[/yellow] {literal(warning)}", highlight=False,
                      soft_wrap=True)


@app.command("to-sql")
def to_sql(
    data: Annotated[Path, typer.Option("--data", help="Book folder (<table>.parquet|.csv files).")],
    url: Annotated[str, typer.Option("--url", help="postgresql://user@host:port/db (password from PGPASSWORD) or duckdb:///path/book.duckdb.")],
) -> None:
    """Load a book folder into a database (one table per file, replaced; one transaction)."""
    from churnml.console import console
    from churnml.data.sql import parse_source
    from churnml.data.sql_write import write_book_folder
    from churnml.errors import UsageError

    target = parse_source(url)
    if isinstance(target, Path):
        raise UsageError(f"--url must be a database URL (postgresql://... or duckdb:///...). "
                         f"Got {url!r}.")
    rows = write_book_folder(data, target)
    console.print(f"loaded {sum(rows.values()):,} rows into {target}: "
                  + ", ".join(f"{t} {n:,}" for t, n in rows.items()),
                  highlight=False, soft_wrap=True, markup=False)
