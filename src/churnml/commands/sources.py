"""``--data`` / ``--out`` values: a folder, or a database URL (``churnml.data.sql``).

A Typer ``parser`` that imports the SQL module only when called, so ``--help`` stays fast.
A bad URL raises ``UsageError`` (a ``ValueError``): Click reports it as an invalid value of the
option, exit code 2, with the password hidden."""

from __future__ import annotations

from pathlib import Path


def source(value: str):  # -> Path | churnml.data.sql.DatabaseSource
    from churnml.data.sql import parse_source

    if isinstance(value, Path):
        return value
    return parse_source(value)
