"""Fixtures for the real-server tests.

``postgres`` is one throw-away PostgreSQL cluster for the whole session (tests/support/postgres.py:
started on 127.0.0.1 on a free port in a temporary folder, stopped and deleted at the end). A
machine without the PostgreSQL binaries fails these tests with a message naming the package to
install (`postgresql`); they are never skipped silently. Each test that needs a database of
its own asks ``postgres.create_database(name)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from support.postgres import PostgresServer, postgres_server  # noqa: E402


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:  # type: ignore[misc]
    with postgres_server() as server:
        yield server
