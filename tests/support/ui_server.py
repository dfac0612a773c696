"""``churnml ui`` as a real process for the tests: started on a free port of 127.0.0.1, waited
for, and stopped when the ``with`` block ends (also when the body raises)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str, dict]:
    """``(status, body, headers)`` of a GET (4xx and 5xx answers included)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


@contextlib.contextmanager
def ui_server(scores: Path | str, data: Path | None = None, *, home: Path | None = None,
              start_timeout: float = 60, output: list[str] | None = None) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT``) of ``churnml ui --scores scores [--data data]``
    running without an API key, with ``CHURNML_HOME=home`` (default: ``home`` beside
    ``scores``, so that the developer's own model registry is never read; ``scores`` a
    database URL needs ``home``). ``output``: the process's printed lines are appended to it
    once it has stopped."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p))
    env.pop("CHURNML_API_KEY", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    if home is None and not isinstance(scores, Path):
        raise ValueError("a database URL as --scores needs home=")
    env["CHURNML_HOME"] = str(home if home is not None else Path(scores).parent / "home")
    cmd = [sys.executable, "-m", "churnml.cli", "ui", "--scores", str(scores), "--port", str(port)]
    if data is not None:
        cmd += ["--data", str(data)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                status, _, _ = get(base + "/static/ui.css")
                if status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("churnml ui stopped: "
                                   + (proc.stdout.read() if proc.stdout else ""))
            if time.monotonic() > deadline:
                raise RuntimeError(f"churnml ui did not start within {start_timeout:.0f} s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if output is not None and proc.stdout is not None:
            output.extend(proc.stdout.read().splitlines())
