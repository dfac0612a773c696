"""One place for paths and settings.

Settings come from the environment only (secrets never live in files in the repo):

- ``CHURNML_HOME``: data home for the embedded MLflow store and artifacts (default ``.churnml``
  in the working directory).
- ``MLFLOW_TRACKING_URI``: overrides the embedded store (a team server).
- ``CHURNML_API_KEY``: when set, the HTTP service requires ``Authorization: Bearer <key>``.
- ``CHURNML_LOG_REPORT_TO_MLFLOW``: whether ``churnml score`` logs ``report.html`` (account
  ids and MRR) to the tracking store; default on for the embedded store, off for a remote
  server (see :func:`log_report_to_mlflow`).
- ``CHURNML_CONFIG_DIR``: a folder with ``features/`` and ``models/`` to use instead of the
  default configuration (see :func:`config_root`).

``disable_telemetry()`` must run before MLflow or BentoML are imported: this product runs on
machines without internet and must never try to call out.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

# The declarative configuration (features/*.yaml, models/*.yaml) has one source: the project's
# top-level folders. A source checkout (and an editable install) reads them there; a built
# package (wheel, `pip install .`) carries a copy under churnml/_defaults/, made by the build
# (setup.py). See config_root().
_PKG_DIR = Path(__file__).resolve().parent
#: The source checkout's top level (``src/churnml/../..``); meaningless in an installed package.
PROJECT_ROOT = _PKG_DIR.parent.parent
#: Where a built package keeps its copy of ``features/`` and ``models/`` (absent in a checkout).
PACKAGED_CONFIG_DIR = _PKG_DIR / "_defaults"

TELEMETRY_ENV = {
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def disable_telemetry() -> None:
    """Turn off the libraries' usage telemetry (idempotent; respects explicit settings)."""
    for key, value in TELEMETRY_ENV.items():
        os.environ.setdefault(key, value)


def config_root() -> Path:
    """Folder that holds ``features/`` and ``models/`` (the declarative configuration).

    An explicit path given to a loader or command (``--config``, ``path=``) always wins; this
    is where the defaults come from otherwise, first match:

    1. ``CHURNML_CONFIG_DIR`` (made absolute against the working directory);
    2. the copy inside an installed package (``churnml/_defaults``, written by the build);
    3. the source checkout's top level (``features/``, ``models/``), for a clone or an
       editable install, which read the project's files directly.
    """
    env = os.environ.get("CHURNML_CONFIG_DIR", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    if PACKAGED_CONFIG_DIR.is_dir():
        return PACKAGED_CONFIG_DIR
    return PROJECT_ROOT


def features_dir() -> Path:
    """``<config root>/features``: catalog.yaml, health_score.yaml, playbooks.yaml."""
    return config_root() / "features"


def models_dir() -> Path:
    """``<config root>/models``: one ``<target>.yaml`` per model."""
    return config_root() / "models"


def home() -> Path:
    """The data home (``CHURNML_HOME``, default ``./.churnml``); created on first use."""
    path = home_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def home_path() -> Path:
    """Where the data home is, without creating it (for readers such as ``churnml ui``)."""
    return Path(os.environ.get("CHURNML_HOME", ".churnml")).resolve()


def tracking_uri() -> str:
    """MLflow tracking URI: ``MLFLOW_TRACKING_URI`` if set, else SQLite under the data home."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{home() / 'mlflow.db'}"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def tracking_store_is_local(uri: str | None = None) -> bool:
    """True for the embedded store or a local one: no ``MLFLOW_TRACKING_URI``, a ``sqlite:`` or
    ``file:`` URI, or a path (with a ``/``, or starting with ``.`` or ``~``). Anything else
    (``http(s)://``, ``databricks``, a database server) counts as a remote server that other
    people can read."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") if uri is None else uri
    if not uri:
        return True
    if ":" not in uri:  # a path is a local file store; a bare word ("databricks") is a server
        return "/" in uri or uri.startswith((".", "~"))
    scheme = uri.split(":", 1)[0].lower()
    return scheme in ("sqlite", "file")


def log_report_to_mlflow() -> bool:
    """Whether the weekly job logs ``report.html`` to MLflow (``CHURNML_LOG_REPORT_TO_MLFLOW``).

    ``1``/``true``/``yes``/``on`` logs it, ``0``/``false``/``no``/``off`` does not; unset, it is
    logged only to a local store (:func:`tracking_store_is_local`): the report names accounts
    and their MRR, and a team server is readable by everyone with access to it. Any other value
    is a :class:`~churnml.errors.ConfigError` (exit code 2)."""
    value = os.environ.get("CHURNML_LOG_REPORT_TO_MLFLOW", "").strip().lower()
    if not value:
        return tracking_store_is_local()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    from churnml.errors import ConfigError

    raise ConfigError("CHURNML_LOG_REPORT_TO_MLFLOW must be 1 or 0 (also true/false, yes/no, "
                      f"on/off). Got {os.environ['CHURNML_LOG_REPORT_TO_MLFLOW']!r}.")


def absolute_tracking_uri(uri: str | None = None) -> str:
    """``uri`` (default :func:`tracking_uri`) with a path relative to the working directory made
    absolute (``sqlite:///mlflow.db``, ``file:./mlruns``, ``./mlruns``), so another process in
    another folder reaches the same store; server URIs (``http://...``, ``databricks``) are
    returned as given."""
    uri = tracking_uri() if uri is None else uri
    if uri.startswith("sqlite:///"):
        path, sep, query = uri[len("sqlite:///"):].partition("?")
        if path and not path.startswith("/") and path != ":memory:":
            return f"sqlite:///{Path(path).resolve()}{sep}{query}"
        return uri
    if uri.startswith("file:"):
        path = uri[len("file:"):]
        if not path.startswith("/"):  # file:./mlruns, file:mlruns (file:///abs is absolute)
            return Path(path).resolve().as_uri()
        return uri
    if ":" not in uri and ("/" in uri or uri.startswith((".", "~"))):
        # a path is a local file store; a bare word ("databricks") is a server (as in
        # tracking_store_is_local)
        return str(Path(uri).expanduser().resolve())
    return uri


def child_process_env() -> dict[str, str]:
    """Settings for a process started in another working directory (``churnml serve``'s
    BentoML workers run in ``serving/``): the data home and, when set, the tracking URI and the
    configuration folder, each absolute, so the child uses the same store and configuration
    as this process. ``MLFLOW_TRACKING_URI`` is not added when unset: the child then uses the
    embedded store under the (absolute) data home, as this process does, and still counts it
    as the embedded one. Overwrites what it sets; add it to a copy of ``os.environ``."""
    env = {"CHURNML_HOME": str(home())}
    if os.environ.get("MLFLOW_TRACKING_URI", "").strip():
        env["MLFLOW_TRACKING_URI"] = absolute_tracking_uri()
    if os.environ.get("CHURNML_CONFIG_DIR", "").strip():
        env["CHURNML_CONFIG_DIR"] = str(config_root())
    return env


def artifact_root() -> str:
    """Default artifact location for experiments created in the embedded store."""
    return (home() / "mlartifacts").as_uri()


#: Most service workers started by default (each loads the models: about 370 MB).
MAX_DEFAULT_WORKERS = 8


def serve_workers() -> int:
    """Worker processes for ``churnml serve`` when ``--workers`` is not given:
    ``CHURNML_SERVE_WORKERS`` when set, else one per CPU this process may use, at most
    :data:`MAX_DEFAULT_WORKERS`. One worker is one Python process and so uses one core at most
    (the GIL): on 2 cores, 2 workers answered 1,400 accounts/s at 16 clients against 1,000
    for one (benchmarks/README.md)."""
    value = os.environ.get("CHURNML_SERVE_WORKERS", "").strip()
    if value:
        try:
            workers = int(value)
        except ValueError:
            from churnml.errors import ConfigError

            raise ConfigError(f"CHURNML_SERVE_WORKERS must be a whole number of worker "
                              f"processes, got {value!r}") from None
        if workers < 1:
            from churnml.errors import ConfigError

            raise ConfigError(f"CHURNML_SERVE_WORKERS must be at least 1, got {workers}")
        return workers
    return max(1, min(usable_cpus(), MAX_DEFAULT_WORKERS))


def usable_cpus(cgroup_root: str | Path = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: the CPUs it may run on (affinity), lowered to a container's
    CPU quota when there is one (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``), rounded up. A container limited to 2 CPUs on a 64-core node
    counts 2, so a service does not start a worker per node core."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(Path(cgroup_root))
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def _cgroup_cpu_quota(root: Path) -> float | None:
    """The CPU quota in CPUs from cgroup files under ``root``, or None (no limit, unreadable)."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():  # "max 100000" or "<quota> <period>"
            quota, _, period = v2.read_text().strip().partition(" ")
            if quota != "max" and float(period or 100000) > 0:
                return float(quota) / float(period or 100000)
            return None
        v1 = root / "cpu" / "cpu.cfs_quota_us"
        if v1.is_file():
            cfs_quota = float(v1.read_text().strip())
            cfs_period = float((root / "cpu" / "cpu.cfs_period_us").read_text().strip())
            if cfs_quota > 0 and cfs_period > 0:
                return cfs_quota / cfs_period
    except (OSError, ValueError):
        return None
    return None
