"""The health weights in force: the adopted ``weights-v<N>.yaml`` under ``CHURNML_HOME/health``
(written by ``churnml calibrate-health``), else the defaults of ``features/health_score.yaml``.

The weekly job, the Spark engine and the HTTP service all score with :func:`load_adopted_health`
so that they agree; ``churnml.jobs.calibrate_health`` writes and adopts new versions.
"""

from __future__ import annotations

from pathlib import Path

from churnml.config import home
from churnml.errors import ConfigError, UsageError
from churnml.fsutil import write_bytes_atomic
from churnml.health.score import HealthScore

ADOPTED_POINTER = "adopted"


def health_dir() -> Path:
    path = home() / "health"
    path.mkdir(parents=True, exist_ok=True)
    return path


def weights_files(folder: Path | None = None) -> list[tuple[int, Path]]:
    """``(N, path)`` of every ``weights-v<N>.yaml``, by N."""
    folder = folder or health_dir()
    out = []
    for p in folder.glob("weights-v*.yaml"):
        stem = p.name[len("weights-v"):-len(".yaml")]
        if stem.isdigit():
            out.append((int(stem), p))
    return sorted(out)


def adopted_path(folder: Path | None = None) -> Path | None:
    """The adopted weights file, or None when the configured defaults are in use."""
    folder = folder or health_dir()
    pointer = folder / ADOPTED_POINTER
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    path = folder / name
    if not path.is_file():
        raise ConfigError(f"{pointer} names {name!r}, which does not exist in {folder}; point it "
                          f"at one of {[p.name for _, p in weights_files(folder)]} or delete it "
                          "to use the default weights")
    return path


def load_adopted_health():
    """The HealthScore the weekly job uses: the adopted weights file, else the defaults
    (``features/health_score.yaml``). Its ``version`` is recorded in every scored row."""
    path = adopted_path()
    return HealthScore.load(path) if path is not None else HealthScore()


def adopt(name_or_version: str, folder: Path | None = None) -> Path:
    """Point ``adopted`` at ``weights-v<N>.yaml`` (accepts "3", "v3" or the file name);
    the rollback of a weights version. Returns the adopted file."""
    folder = folder or health_dir()
    name = str(name_or_version)
    if not name.endswith(".yaml"):
        name = f"weights-v{name.lstrip('v')}.yaml"
    if not (folder / name).is_file():
        raise UsageError(f"no weights file {name} in {folder}; have "
                         f"{[p.name for _, p in weights_files(folder)]}")
    write_bytes_atomic(folder / ADOPTED_POINTER, (name + "\n").encode())
    return folder / name
