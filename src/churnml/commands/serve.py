"""``churnml serve``: start the prediction service (``serving/service.py``) with ``bentoml serve``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from churnml.config import PROJECT_ROOT, child_process_env, disable_telemetry, serve_workers


#: Where a built package keeps its copy of ``serving/service.py`` (setup.py; absent in a checkout).
PACKAGED_SERVING_DIR = Path(__file__).resolve().parent.parent / "_serving"


def serving_dir() -> Path:
    """Folder of the BentoML service: ``CHURNML_SERVING_DIR`` when set, else the copy inside an
    installed package, else the checkout's ``serving/``."""
    env = os.environ.get("CHURNML_SERVING_DIR")
    if env:
        return Path(env).resolve()
    return PACKAGED_SERVING_DIR if PACKAGED_SERVING_DIR.is_dir() else PROJECT_ROOT / "serving"


def bentoml_serve_command(host: str, port: int) -> list[str]:
    """The ``bentoml serve`` command line that runs churnml's service."""
    return [sys.executable, "-m", "bentoml", "serve", "service:ChurnService",
            "--host", host, "--port", str(port), "--working-dir", str(serving_dir())]


def serve_environment(workers: int | None = None,
                      base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment ``bentoml serve`` runs with: ``base`` (default this process's) plus
    the data home, tracking URI and configuration folder as absolute values (the workers'
    working directory is ``serving/``, where ``./.churnml`` would be another, empty store),
    the worker count, one OpenMP thread per worker and this churnml on ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    env.update(child_process_env())
    env["CHURNML_SERVE_WORKERS"] = str(workers if workers is not None else serve_workers())
    env.setdefault("OMP_NUM_THREADS", "1")  # see serving/service.py
    # the workers import the churnml this command runs (a checkout's src/ or site-packages)
    package_parent = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    return env


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (127.0.0.1: this "
                             "machine only; 0.0.0.0 to accept other machines)."),
    port: int = typer.Option(3000, "--port", min=1, max=65535, help="TCP port."),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=1, max=64,
        help="Worker processes, each loading the models (default: CHURNML_SERVE_WORKERS, "
             "else one per CPU, at most 8)."),
) -> None:
    """Serve the champion models over HTTP: POST /predict, POST /predict_history,
    GET /metadata, GET /livez, GET /readyz (docs/api.md).

    Set CHURNML_API_KEY to require 'Authorization: Bearer <key>' on every endpoint but the
    probes. Stops with exit code 2 and a message when no champion model is registered.
    """
    disable_telemetry()
    from churnml.errors import ModelNotFoundError
    from churnml.models import registry

    from churnml.outcomes import OUTCOMES

    # Fail fast, before spawning a server (the service checks again when it loads them), and
    # say which outcomes will be served.
    versions = {o.name: registry.champion_version(o.name) for o in OUTCOMES}
    served = {k: v for k, v in versions.items() if v is not None}
    if not served:
        raise ModelNotFoundError(
            "no champion model for any outcome "
            f"({', '.join(o.model_name for o in OUTCOMES)}): run `churnml train` first")
    missing = [k for k, v in versions.items() if v is None]
    print("serving " + ", ".join(f"{k} v{v}" for k, v in served.items())
          + (f"; no champion for {', '.join(missing)} (its columns are null)" if missing else ""),
          file=sys.stderr, flush=True)
    from churnml.api.auth import open_bind_warning

    warning = open_bind_warning(host)
    if warning:  # loud, on stderr, before the server starts (docs/security.md)
        print(warning, file=sys.stderr, flush=True)
    child = subprocess.Popen(bentoml_serve_command(host, port), env=serve_environment(workers))

    def stop(signum, _frame):  # pass SIGTERM / SIGINT on, so no server is left behind
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        returncode = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if returncode not in (0, -signal.SIGTERM, -signal.SIGINT, 130, 143):
        raise typer.Exit(returncode if returncode > 0 else 1)
