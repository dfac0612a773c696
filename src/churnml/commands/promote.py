"""``churnml promote --target {churn,expansion,contraction} --version V``: move the champion alias (rollback).

Prints ``champion: vOLD -> vNEW``; the previous champion becomes the challenger, one command
away. Exit 2 when the version does not exist.
"""

from __future__ import annotations

from typing import Annotated

import typer

from churnml.commands.train import Target


def promote(
    target: Annotated[Target, typer.Option("--target", help="Which model.")],
    version: Annotated[str, typer.Option("--version", help="Registered version number to make champion.")],
) -> None:
    """Make a registered version the champion (e.g. roll back to the previous one)."""
    from rich.console import Console

    from churnml.models import registry

    target_name: str = Target(target).value  # the outcome name
    old, new = registry.promote(target_name, version)
    Console().print(f"{registry.registered_name(target_name)} champion: "
                    f"{'v' + old if old else 'none'} -> v{new}", highlight=False, markup=False)
