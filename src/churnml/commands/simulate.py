"""``churnml simulate --out DIR [--accounts N] [--months M] [--seed S] [--drift SPEC]
[--cs-team [--cs-compliance P] [--cs-capacity OWNER=N,...]]``.

Writes the data-contract tables (``<table>.parquet``) and the hidden truth (``_truth/``) to
``--out``, shows a progress bar over the simulated weeks and prints the row count per table.
The same arguments give the same files. ``--drift SPEC`` (off by default) changes the book
from ``--drift-start`` (default: the middle of the period) on: ``price_change`` and
``product_change`` what drives churn and expansion, ``new_channel`` who signs up and
``usage_drop`` what the product logs, ``billing_migration`` both the payments logged and what
drives churn; docs/simulator.md, "Drift". ``--cs-team`` (off by default) adds a CS team
that works a weekly queue and logs ``cs_actions``; docs/simulator.md, "CS team".
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
    drift: Annotated[Optional[str], typer.Option(
        "--drift", help="Drift scenarios, comma-separated (off by default): price_change "
        "(payment problems weigh much more on churn; renewals carry a 12-18% price increase), "
        "product_change (headcount growth, not health or breadth of use, drives expansion), "
        "new_channel (sign-ups come through a self-serve channel: smaller, SMB, starter plan, "
        "monthly, less healthy), usage_drop (a redesign halves the logged logins and feature "
        "use of every account; the accounts are unchanged), billing_migration (a new billing "
        "provider: many more failed payments that no longer signal churn; customers cancel any "
        "time, not at renewal; shrinking companies leave).")] = None,
    drift_start: Annotated[Optional[str], typer.Option(
        "--drift-start", help="Change date of --drift (ISO date inside the period; "
        "default: its middle).")] = None,
    cs_team: Annotated[bool, typer.Option(
        "--cs-team", help="Simulate a CS team that works a weekly queue built from the health "
        "score and features/playbooks.yaml (holdout left alone), logs cs_actions, and whose "
        "plays have true effects (each candidate's in _truth/cs_queue). Off by default.")] = False,
    cs_compliance: Annotated[float, typer.Option(
        "--cs-compliance", min=0.0, max=1.0,
        help="With --cs-team: chance a queued (not held-out) action is worked that week.")] = 0.8,
    cs_capacity: Annotated[Optional[str], typer.Option(
        "--cs-capacity", help="With --cs-team: actions per owner and week, e.g. 'CSM=60,CS "
        "manager=20' (owners not named: the playbook file's capacity scaled by accounts / "
        "2,000).")] = None,
) -> None:
    """Simulate a book of business with a known hidden truth (for demos, tests, benchmarks).

    With --drift, the book changes at --drift-start (what drives churn and expansion, who
    signs up or what the product logs); the book's _truth/meta records the drift and the
    oracle follows it. With --cs-team, a simulated CS
    team works a weekly queue and logs cs_actions; the plays' true effects are in _truth/.
    """
    from rich.table import Table

    from churnml.console import console, literal, progress
    from churnml.data.simulator import DEFAULT_END, parse_drift, simulate as run, weeks_for, write_book
    from churnml.errors import UsageError

    parse_drift(drift)  # a bad scenario name fails before the progress bar
    team = None
    if cs_team:
        from churnml.data.simulator import CsTeam
        from churnml.scoring.cs_team import CsTeamPolicy, parse_capacity

        team = CsTeam(CsTeamPolicy(capacity=parse_capacity(cs_capacity), scale=accounts / 2000),
                      compliance=cs_compliance)
    elif cs_capacity is not None:
        raise UsageError("--cs-capacity needs --cs-team.")

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

        sim = run(n_accounts=accounts, months=months, seed=seed, end=end_date, on_week=on_week,
                  drift=drift, drift_start=drift_start, cs_team=team)
        step.note("writing parquet files")
        counts = write_book(sim, out)
    drifted = (f", drift {sim.meta['drift']} from {sim.meta['drift_start']}"
               if sim.meta.get("drift") else "")
    table = Table(title=f"simulated book in {literal(out)} ({sim.meta['start']} to "
                        f"{sim.meta['end']}{drifted})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    table.add_row("_truth/", ", ".join(sorted(sim.truth)))
    console.print(table)
