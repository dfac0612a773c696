"""``churnml demo [--out DIR]``: the whole product on a simulated book, with no arguments.

Simulate a book, validate it, build the latest week's features and health scores, train a
model per outcome and the time-to-event model (MLflow under ``CHURNML_HOME``, default
``./.churnml``), score the latest week with the champions (alerts, next best actions, the
revenue forecast and renewals at risk, report) and print where everything is. Each step is the
same function the corresponding command runs, so the demo exercises the real paths.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated

import typer


def churnml_command() -> str:
    """How to run churnml again from a shell: ``churnml`` when that is what ``PATH`` finds, else
    the absolute path of the script this process runs as (``make demo`` runs
    ``.venv/bin/churnml`` without activating the environment, so ``churnml`` alone is not found).
    """
    found = shutil.which("churnml")
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.name != "churnml" or not script.is_file():
        script = Path(sys.executable).with_name("churnml")  # e.g. run in-process by a test
        if not script.is_file():
            return "churnml"
    if found and Path(found).resolve() == script.resolve():
        return "churnml"
    return shlex.quote(str(script.absolute()))


def serve_command(port: int = 3000) -> str:
    """The ``churnml serve`` command line that serves the champions this process registered,
    from any folder: the store settings that are set (``CHURNML_HOME``, ``MLFLOW_TRACKING_URI``,
    ``CHURNML_CONFIG_DIR``) are given in front, absolute. The default data home is ``./.churnml``,
    the working directory's, so then the command is meant for this folder (``make demo``: the
    repository's top level) and is printed without settings."""
    from churnml.config import child_process_env

    settings = {key: value for key, value in child_process_env().items()
                if os.environ.get(key, "").strip()}
    prefix = "".join(f"{key}={shlex.quote(value)} " for key, value in settings.items())
    return f"{prefix}{churnml_command()} serve --port {port}"


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's book and outputs.")] = Path("demo"),
    accounts: Annotated[int, typer.Option("--accounts", min=50, help="Accounts to simulate.")] = 2000,
    months: Annotated[int, typer.Option("--months", min=6, help="Months of history to simulate.")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the simulation.")] = 42,
) -> None:
    """Run the whole product on a simulated book: simulate, validate, features, health, train, score."""
    from rich.panel import Panel
    from rich.table import Table

    from churnml import config
    from churnml.commands.features import features
    from churnml.commands.health import health
    from churnml.commands.score import score
    from churnml.commands.simulate import simulate
    from churnml.commands.train import Target, train
    from churnml.commands.validate import validate
    from churnml.console import console, literal
    from churnml.data.io import load_book
    from churnml.features.labels import latest_scoring_date
    from churnml.outcomes import OUTCOMES, TIME_TO_EVENT

    out = out.resolve()
    book_dir = out / "book"
    started = time.perf_counter()
    timings: list[tuple[str, float]] = []

    def step(title: str, func, **kwargs) -> None:
        console.rule(f"[bold]{title}")
        t0 = time.perf_counter()
        func(**kwargs)
        timings.append((title, time.perf_counter() - t0))

    n_steps = 6 + len(OUTCOMES)
    step(f"1/{n_steps} simulate a book of business", simulate, out=book_dir, accounts=accounts,
         months=months, seed=seed)
    step(f"2/{n_steps} validate it against the data contract", validate, data=book_dir,
         rejects=out / "rejects.csv")
    book, _ = load_book(book_dir)
    as_of = latest_scoring_date(book).strftime("%Y-%m-%d")
    del book
    step(f"3/{n_steps} point-in-time features at {as_of}", features, data=book_dir, as_of=as_of,
         out=out / "features.parquet")
    step(f"4/{n_steps} rule-based health score at {as_of}", health, data=book_dir, as_of=as_of,
         out=out / "health.parquet")
    for k, outcome in enumerate(OUTCOMES, start=5):  # every outcome of the registry
        step(f"{k}/{n_steps} train the {outcome.name} model", train, data=book_dir,
             target=Target(outcome.name))
    # when, not only whether: the report's revenue forecast and "renewing into risk" need it
    step(f"{n_steps - 1}/{n_steps} train the time-to-event model", train, data=book_dir,
         target=Target(TIME_TO_EVENT))
    step(f"{n_steps}/{n_steps} weekly job: score the book at {as_of}", score, data=book_dir,
         as_of=as_of, out=out / "scores")

    scores_dir = out / "scores" / f"as_of={as_of}"
    places = [
        ("book (data contract)", book_dir),
        ("hidden truth", book_dir / "_truth"),
        ("rejects", out / "rejects.csv"),
        ("features", out / "features.parquet"),
        ("health scores", out / "health.parquet"),
        ("weekly scores", scores_dir / "scores.parquet"),
        ("report", scores_dir / "report.html"),
        ("MLflow store", config.tracking_uri()),
    ]
    console.rule("[bold]churnml demo: where everything is")
    # plain lines, never truncated: these paths are meant to be copied
    for label, place in places:
        console.print(f"{label + ':':<22} {literal(place)}", soft_wrap=True, highlight=False)
    console.print(f"{'serve the champions:':<22} {literal(serve_command(3000))}", soft_wrap=True,
                  highlight=False)
    if not any(os.environ.get(key, "").strip() for key in ("CHURNML_HOME", "MLFLOW_TRACKING_URI")):
        # the default store is ./.churnml: the command finds it from this folder only
        console.print(f"{'':<22} (in {literal(Path.cwd())}, where the store .churnml is)",
                      soft_wrap=True, highlight=False)
    timing = Table(show_header=False, box=None)
    for title, seconds in timings:
        timing.add_row(title.split(" ", 1)[1], f"{seconds:.1f} s")
    timing.add_row("total", f"{time.perf_counter() - started:.1f} s")
    console.print(Panel(timing, title="time per step", expand=False))
