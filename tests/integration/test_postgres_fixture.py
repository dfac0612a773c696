"""The throw-away PostgreSQL cluster (tests/support/postgres.py): TCP needs the password, and the
cluster is stopped and its folder deleted even when the body raises."""

from __future__ import annotations

import os
import subprocess

import pytest

from support.postgres import postgres_server

pytestmark = [pytest.mark.integration]


def _tcp_select(pg, password: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = password
    return subprocess.run(
        [str(pg.bin_dir / "psql"), "-X", "-A", "-t", "-h", pg.host, "-p", str(pg.port),
         "-U", pg.user, "-d", pg.dbname, "-c", "select 41 + 1"],
        capture_output=True, text=True, timeout=30, env=env)


def test_tcp_needs_the_password(postgres):
    ok = _tcp_select(postgres, postgres.password)
    assert ok.returncode == 0 and ok.stdout.strip() == "42"
    bad = _tcp_select(postgres, "not-the-password")
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr


def test_stopped_and_removed_when_the_body_raises():
    with pytest.raises(ZeroDivisionError):
        with postgres_server() as pg:
            data_dir, port = pg.data_dir, pg.port
            assert pg.psql("select 1").strip() == "1"
            1 / 0
    assert not data_dir.exists()
    import socket
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "server still listening after the block"
