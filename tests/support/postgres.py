"""A throw-away PostgreSQL cluster for tests: ``with postgres_server() as pg: pg.url``.

Self-contained (standard library only, no Python database driver needed): it finds the server
binaries (``initdb``, ``pg_ctl``, ``psql``) on ``PATH`` or under ``/usr/lib/postgresql/<v>/bin``,
creates a cluster in a temporary folder, starts it on 127.0.0.1 on a free port with its own
socket folder (so it never meets another cluster on the machine), yields a
:class:`PostgresServer` with a ``postgresql://`` URL, and stops the server and removes the
folder at the end, also when the body raises or the test is interrupted.

Connections over TCP need the password (``scram-sha-256``), so a wrong password is refused as
on a real server; the socket in the private folder is ``trust`` for the fixture's own psql calls.

``initdb`` refuses to run as root. Run as root, the cluster is created and run as the
``postgres`` system user (which the Debian ``postgresql`` package creates) or the user named in
``CHURNML_TEST_PG_USER``; the temporary folder is handed to that user.

A machine without the binaries gets a :class:`PostgresUnavailable` error that names the package
to install (``apt-get install postgresql``): the tests fail, never skip silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, psql) not found on PATH or under "
    "/usr/lib/postgresql/<version>/bin: install the Debian package `postgresql` "
    "(sudo apt-get install -y postgresql) or put its bin folder on PATH"
)


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are missing or the throw-away cluster could not start."""


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    socket_dir: Path
    data_dir: Path
    bin_dir: Path

    @property
    def url(self) -> str:
        """``postgresql://user:password@127.0.0.1:port/dbname`` (the default database)."""
        return self.url_for(self.dbname)

    def url_for(self, dbname: str, *, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return (f"postgresql://{quote(self.user, safe='')}:{quote(pw, safe='')}"
                f"@{self.host}:{self.port}/{quote(dbname, safe='')}")

    def psql(self, sql: str, dbname: str | None = None) -> str:
        """Run SQL through psql on the private socket; returns stdout, raises on error."""
        proc = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user,
             "-d", dbname or self.dbname, "-c", sql],
            capture_output=True, text=True, timeout=60, env=_clean_env(),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str) -> str:
        """A fresh empty database; returns its URL."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}"')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)


def find_bin_dir() -> Path:
    """The folder holding initdb, pg_ctl and psql; raises :class:`PostgresUnavailable`."""
    needed = ("initdb", "pg_ctl", "psql")
    explicit = os.environ.get("CHURNML_TEST_PG_BIN")
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    which = shutil.which("initdb")
    if which:
        candidates.append(Path(os.path.realpath(which)).parent)
        candidates.append(Path(which).parent)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: _version_key(Path(p).parent.name), reverse=True)
    candidates.extend(Path(p) for p in versions)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in needed):
            return folder
    raise PostgresUnavailable(INSTALL_HINT)


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _run_as() -> pwd.struct_passwd | None:
    """None when not root; else the unprivileged user to own and run the cluster."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("CHURNML_TEST_PG_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        raise PostgresUnavailable(
            f"running as root, and initdb refuses root: no system user {name!r} to run the "
            "throw-away PostgreSQL cluster as (the Debian package `postgresql` creates "
            "`postgres`; or set CHURNML_TEST_PG_USER to an existing unprivileged user)"
        ) from exc


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    os.chown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)


@contextlib.contextmanager
def postgres_server(*, dbname: str = "postgres", start_timeout: float = 60.0) -> Iterator[PostgresServer]:
    """Start a throw-away PostgreSQL cluster; stop and delete it when the block ends."""
    bin_dir = find_bin_dir()
    user = _run_as()
    base = Path(tempfile.mkdtemp(prefix="churnml-pg-"))
    data_dir, socket_dir, log = base / "data", base / "sock", base / "server.log"
    password = secrets.token_urlsafe(16)
    started = False

    def run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=_clean_env(), cwd=str(base), **kwargs)  # type: ignore[call-overload]

    try:
        socket_dir.mkdir()
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        if user is not None:
            _chown_tree(base, user)
        proc = run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
                    "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                    "-E", "UTF8", "--no-locale", "--no-sync"], timeout=120)
        pwfile.unlink()
        if proc.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {proc.stderr.strip() or proc.stdout.strip()}")
        for attempt in range(5):
            port = _free_port()
            opts = (f"-h 127.0.0.1 -p {port} -k {socket_dir} -F "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            proc = run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-o", opts,
                        "-w", "-t", str(int(start_timeout)), "start"], timeout=start_timeout + 30)
            if proc.returncode == 0:
                started = True
                break
            if attempt == 4:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise PostgresUnavailable(f"pg_ctl start failed: {proc.stderr.strip()}\n{tail}")
            time.sleep(0.2)
        yield PostgresServer(host="127.0.0.1", port=port, user="postgres", password=password,
                             dbname=dbname, socket_dir=socket_dir, data_dir=data_dir,
                             bin_dir=bin_dir)
    finally:
        if started:
            run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "-t",
                 "30", "stop"], timeout=60)
        shutil.rmtree(base, ignore_errors=True)
