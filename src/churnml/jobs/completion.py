"""Completion markers of the weekly job's partitions (``OUT/as_of=YYYY-MM-DD/_SUCCESS``).

A partition counts as complete only when its ``_SUCCESS`` marker exists, parses, and every
file it lists is there with the size it records. The marker is written last (atomically,
fsync-ed) by the run that wrote the partition, and removed first by any run that rewrites it,
so a run killed at any point -- after ``scores.parquet`` but before the report, say -- leaves a
partition without a marker: readers (:func:`churnml.jobs.weekly.list_partitions`, the Spark
engine, the report's "last week") skip it and say so, and the next run of that week replaces it.

The marker is JSON (sorted keys, no wall-clock time, so a rerun writes the same bytes)::

    {"as_of": "2026-11-16", "files": {"report.html": {"bytes": 402311, "sha256": "..."},
     "scores.parquet": {"bytes": 7340112, "sha256": "..."}}, "marker_version": 1,
     "rows": 48211, "schema_version": 3}

Readers check presence and sizes (cheap); :func:`partition_problem` with
``verify_checksums=True`` also recomputes the sha256 of every file (an audit).

Partitions written before markers existed have none, so they are skipped too. To adopt them
once after upgrading, ``python -m churnml.jobs.completion OUT`` writes a marker for every
partition that the old write order shows complete (``scores.parquet`` and ``report.html``
present, the report -- written last -- no older than ``scores.parquet`` and, where schema
version 1 left one, ``alert_inputs.parquet``) and lists the ones it leaves alone (rerun those
weeks). Partitions of schema version 2 have no ``alert_inputs.parquet``; requiring it would
leave every one of them unadopted.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from churnml.fsutil import fsync_dir, remove_temporaries, write_bytes_atomic
from churnml.jobs.layout import (
    _PARTITION,
    LEGACY_ALERT_INPUTS_NAME,
    REPORT_NAME,
    SCORES_NAME,
    OutputLock,
)

MARKER_NAME = "_SUCCESS"
MARKER_VERSION = 1


def file_digest(path: Path) -> dict:
    """``{"bytes": size, "sha256": hex}`` of a file."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return {"bytes": path.stat().st_size, "sha256": sha.hexdigest()}


def write_marker(partition: Path, files: list[str], *, as_of: str, rows: int,
                 schema_version: int) -> Path:
    """Write ``partition/_SUCCESS`` listing ``files`` (names in the partition) with their sizes
    and sha256; call after every listed file is in place."""
    marker = {
        "as_of": as_of, "marker_version": MARKER_VERSION, "rows": int(rows),
        "schema_version": int(schema_version),
        "files": {name: file_digest(partition / name) for name in sorted(files)},
    }
    path = partition / MARKER_NAME
    write_bytes_atomic(path, (json.dumps(marker, sort_keys=True, indent=1) + "\n").encode())
    return path


def read_marker(partition: Path) -> dict:
    """The parsed marker; ``ValueError`` naming what is wrong when it is missing or invalid."""
    path = partition / MARKER_NAME
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"no {MARKER_NAME} marker (the run that wrote it did not finish)")
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable {MARKER_NAME} marker ({exc})") from None
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict) \
            or not marker["files"]:
        raise ValueError(f"invalid {MARKER_NAME} marker (no file list)")
    return marker


def partition_problem(partition: Path, required: tuple[str, ...] = (),
                      verify_checksums: bool = False) -> str | None:
    """None when ``partition`` is complete, else why not (for a warning)."""
    try:
        marker = read_marker(partition)
    except ValueError as exc:
        return str(exc)
    files = marker["files"]
    for name in required:
        if name not in files:
            return f"{MARKER_NAME} does not list {name}"
    for name, meta in files.items():
        path = partition / Path(str(name)).name
        if not path.is_file():
            return f"{name} listed in {MARKER_NAME} is missing"
        if not isinstance(meta, dict) or path.stat().st_size != meta.get("bytes"):
            return f"{name} does not have the size {MARKER_NAME} records"
        if verify_checksums and file_digest(path)["sha256"] != meta.get("sha256"):
            return f"{name} does not have the sha256 {MARKER_NAME} records"
    return None


def begin_partition(partition: Path, stale: tuple[str, ...] = ()) -> str | None:
    """Start (re)writing ``partition`` (call under the output lock): remove its marker first
    (fsync-ed: from now on it is incomplete), then temporary files of killed runs and the
    ``stale`` files this run will not rewrite itself. Returns why the partition was
    incomplete before (None when it was new or complete)."""
    partition.mkdir(parents=True, exist_ok=True)
    existed = any(partition.iterdir())
    problem = partition_problem(partition) if existed else None
    marker = partition / MARKER_NAME
    if marker.is_symlink() or marker.exists():
        marker.unlink()
        fsync_dir(partition)
    remove_temporaries(partition)
    for name in stale:
        path = partition / name
        if path.is_symlink() or path.is_file():
            path.unlink()
    return problem


def mark_legacy_partitions(out_dir: str | Path) -> tuple[list[Path], list[Path]]:
    """Write markers for partitions written before markers existed that the old write order
    shows complete; returns ``(marked, left_alone)``. Run once, with no job running."""
    import pyarrow.parquet as pq

    marked, left = [], []
    with OutputLock(out_dir):
        for child in sorted(Path(out_dir).iterdir()):
            m = _PARTITION.match(child.name)
            if not m or not child.is_dir() or (child / MARKER_NAME).exists():
                continue
            scores, report = child / SCORES_NAME, child / REPORT_NAME
            legacy = child / LEGACY_ALERT_INPUTS_NAME  # schema version 1 only
            written_before = [scores] + ([legacy] if legacy.is_file() else [])
            if not all(p.is_file() and not p.is_symlink() for p in (scores, report)) or \
                    report.stat().st_mtime_ns < max(p.stat().st_mtime_ns for p in written_before):
                left.append(child)
                continue
            meta = pq.ParquetFile(scores).metadata
            version = (meta.metadata or {}).get(b"churnml_schema_version", b"1").decode()
            write_marker(child, [p.name for p in written_before + [report]], as_of=m.group(1),
                         rows=meta.num_rows, schema_version=int(version))
            marked.append(child)
    return marked, left


def main(argv: list[str] | None = None) -> int:
    """``python -m churnml.jobs.completion OUT``: adopt partitions written before markers."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m churnml.jobs.completion OUT_FOLDER", file=sys.stderr)
        return 2
    marked, left = mark_legacy_partitions(argv[0])
    for path in marked:
        print(f"marked complete: {path}")
    for path in left:
        print(f"left incomplete (rerun this week): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
