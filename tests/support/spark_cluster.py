"""A throw-away Spark standalone cluster on 127.0.0.1: one master and one worker, each its own
JVM process started from the ``pyspark`` package's launcher (``bin/spark-class``), as
``sbin/start-master.sh`` / ``start-worker.sh`` would start them (the pip package ships the
classes but not those two scripts). Used by ``tests/integration/test_spark_cluster.py`` and
``benchmarks/spark_cluster.py``.

    with standalone_cluster(tmp_path, cores=1, memory="1g") as cluster:
        env = {**os.environ, "CHURNML_SPARK_MASTER": cluster.master_url}

Both processes stop when the block ends, also on failure (SIGTERM to the process group each
was started in, then SIGKILL after a grace period). Their logs and the worker's work folder
(one ``app-*`` folder per application the worker ran executors for) stay under ``folder``.

Needs Java 17 (``java`` on PATH or ``JAVA_HOME``) and pyspark; a missing one raises
:class:`ClusterStartError` naming the package to install (docs/operations.md, "Installing on
a server"), never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


class ClusterStartError(RuntimeError):
    """The cluster could not start (no Java, no pyspark, a process that died or timed out)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_home() -> Path:
    try:
        import pyspark
    except ImportError as exc:
        raise ClusterStartError("pyspark is not installed: pip install 'pyspark>=4.1,<5' "
                                "(churnml's dev extra)") from exc
    return Path(pyspark.__file__).resolve().parent


def java_binary() -> str:
    """The ``java`` the launcher will use: ``JAVA_HOME/bin/java``, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise ClusterStartError(
            "Spark needs Java 17 and no `java` was found (JAVA_HOME or PATH): install the "
            "openjdk-17-jre-headless package (Debian/Ubuntu: sudo apt-get install -y "
            "openjdk-17-jre-headless; see docs/operations.md)")
    return java


@dataclass
class Cluster:
    master_url: str
    master_ui: str
    folder: Path
    work_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def state(self) -> dict:
        """The master's JSON status page (workers, running and completed applications)."""
        with urllib.request.urlopen(f"{self.master_ui}/json/", timeout=5) as response:
            return json.loads(response.read())

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]


def _wait(what: str, check, processes, logs, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p, log in zip(processes, logs):
            if p.poll() is not None:
                raise ClusterStartError(f"{what}: a Spark process exited with code "
                                        f"{p.returncode}; log {log}:\n{_tail(log)}")
        try:
            if check():
                return
        except (OSError, ValueError):  # not listening yet, or not the JSON page yet
            pass
        time.sleep(0.3)
    raise ClusterStartError(f"{what}: not ready after {timeout:.0f} s; logs: "
                            + "; ".join(f"{log}:\n{_tail(log)}" for log in logs))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(processes: list[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM each process group these processes lead, then SIGKILL what is left."""
    for p in reversed(processes):
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in reversed(processes):
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


@contextlib.contextmanager
def standalone_cluster(folder: Path, *, cores: int = 1, memory: str = "1g",
                       daemon_memory: str = "256m", env: dict[str, str] | None = None,
                       timeout: float = 60.0) -> Iterator[Cluster]:
    """A master and one worker (``cores`` cores, ``memory`` for executors) on 127.0.0.1.

    ``daemon_memory``: heap of each of the two daemons themselves (SPARK_DAEMON_MEMORY).
    ``env``: extra environment for both (the executors inherit the worker's: e.g.
    ``PYTHONPATH`` so that the executors' Python imports the same churnml as the driver)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    home = spark_home()
    java = java_binary()
    processes: list[subprocess.Popen] = []
    cluster = None
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                cluster = _start(folder, attempt, home, java, cores, memory, daemon_memory,
                                 env or {}, timeout, processes)
                break
            except ClusterStartError:
                # a port picked as free was taken before the JVM bound it (the daemons never
                # move to another port: spark.port.maxRetries=0): new ports, new daemons
                _stop(processes)
                processes.clear()
                if attempt == ATTEMPTS:
                    raise
        assert cluster is not None
        yield cluster
    finally:
        _stop(processes)


#: tries with fresh ports before giving up
ATTEMPTS = 3


def _start(folder: Path, attempt: int, home: Path, java: str, cores: int, memory: str,
           daemon_memory: str, env: dict[str, str], timeout: float,
           processes: list[subprocess.Popen]) -> Cluster:
    port, ui, worker_ui = free_port(), free_port(), free_port()
    work_dir = folder / "worker-work"
    base = {**os.environ, **env, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": daemon_memory, "SPARK_LOG_DIR": str(folder),
            "SPARK_CONF_DIR": str(folder / "conf"),
            # each daemon binds exactly the port it is given or exits (by default Spark tries
            # the next ports, and could end up on another cluster's, or this one's, next port)
            "SPARK_DAEMON_JAVA_OPTS": "-Dspark.port.maxRetries=0",
            # no REST submission server: it would take the fixed port 6066
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}
    if "JAVA_HOME" not in base:
        base["JAVA_HOME"] = str(Path(os.path.realpath(java)).parent.parent)
    (folder / "conf").mkdir(exist_ok=True)
    launcher = str(home / "bin" / "spark-class")
    master_url = f"spark://127.0.0.1:{port}"
    commands = {
        "master": [launcher, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                   "--port", str(port), "--webui-port", str(ui)],
        "worker": [launcher, "org.apache.spark.deploy.worker.Worker", master_url,
                   "--host", "127.0.0.1", "--webui-port", str(worker_ui), "--cores", str(cores),
                   "--memory", memory, "--work-dir", str(work_dir)],
    }
    logs: list[Path] = []
    cluster = Cluster(master_url=master_url, master_ui=f"http://127.0.0.1:{ui}", folder=folder,
                      work_dir=work_dir, processes=processes)
    for name, command in commands.items():
        log = folder / f"{name}-{attempt}.log"
        with open(log, "wb") as out:
            processes.append(subprocess.Popen(command, env=base, stdout=out,
                                              stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL,
                                              start_new_session=True))
        logs.append(log)
    # both start at once (the worker retries until the master listens): about 10 s saved
    _wait("the Spark worker registering with the master",
          lambda: any(w.get("state") == "ALIVE" for w in cluster.state().get("workers", [])),
          processes, logs, timeout)
    return cluster
