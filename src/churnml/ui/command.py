"""``churnml ui``: the read-only web workspace over the weekly partitions (``docs/ui.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def parse_source(value):  # -> Path | churnml.data.sql.DatabaseSource
    """``--scores``: a folder, or a database URL (imported when called: ``--help`` stays fast;
    a bad URL is a usage error naming the forms understood, the password hidden)."""
    from churnml.data.sql import parse_source as parse

    return value if isinstance(value, Path) else parse(value)


def ui(
    scores: Annotated[Path, typer.Option("--scores", parser=parse_source, help="The output folder of churnml score (as_of=YYYY-MM-DD/ partitions), or the database URL given to churnml score --out (its churnml_scores table; postgresql://... or duckdb:///path/file.duckdb).")],
    data: Optional[Path] = typer.Option(None, "--data", help="The book (accounts, mrr_changes): names, segments, revenue history, NRR and GRR."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (127.0.0.1: this machine only)."),
    port: int = typer.Option(8050, "--port", min=1, max=65535, help="TCP port."),
    force: bool = typer.Option(False, "--force", help="Serve on an address other machines can reach without CHURNML_API_KEY."),
) -> None:
    """Open a read-only web workspace: portfolio, accounts, account history, this week's
    queue and whether the scores can be trusted."""
    from churnml.api.auth import configured_api_key, is_loopback
    from churnml.console import console
    from churnml.errors import UsageError
    from churnml.ui.store import check_scores_dir

    check_scores_dir(scores)
    if data is not None and not data.is_dir():
        raise UsageError(f"--data: {data} is not a folder (expected the book: accounts and "
                         "mrr_changes as parquet or CSV)")
    if not is_loopback(host) and configured_api_key() is None:
        message = (f"serving on {host} without an API key: anyone who can reach this address "
                   "sees every account. Set CHURNML_API_KEY (the pages then ask for it) or bind "
                   "to 127.0.0.1")
        if not force:
            raise UsageError(message + "; --force serves anyway.")
        console.print(f"WARNING: {message}.", highlight=False, markup=False)
    import uvicorn

    from churnml.ui.app import create_app

    app = create_app(scores, data)  # a DatabaseSource prints without its password
    console.print(f"churnml ui: http://{host}:{port}/ (scores {scores}; Ctrl-C stops)",
                  highlight=False, markup=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
