"""Crash-safe file writes: a unique temporary file in the target folder, fsync, atomic rename.

Every file churnml writes for someone else to read (weekly partitions, the report, the
rejects CSV, features and health outputs) goes through :func:`atomic_write`:

1. the temporary file is created with :func:`tempfile.mkstemp` in the target's own folder
   (``<name>.tmp-<random>``): ``O_CREAT | O_EXCL``, so it never opens an existing file and never
   follows a symlink planted at that name (``O_EXCL`` refuses symlinks, dangling or not), and
   two writers never share a temporary file; it is written through that descriptor only,
   never reopened by name;
2. the data is flushed and ``fsync``-ed before the rename, so a crash after the rename cannot
   leave a renamed file whose blocks never reached the disk;
3. ``os.replace`` renames it over the target (a symlink at the target is replaced, not
   followed) and the folder is ``fsync``-ed, so the rename itself survives a power cut;
4. on any failure the temporary file is removed; a full disk (``ENOSPC``/``EDQUOT``) becomes
   :class:`~churnml.errors.DiskFullError` ("disk full writing <path>", exit code 1).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from churnml.errors import DiskFullError

TEMP_MARK = ".tmp-"
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(exc: BaseException) -> bool:
    """True for ``OSError(ENOSPC)`` / ``OSError(EDQUOT)``, also when wrapped by pyarrow (which
    raises ``OSError`` with the C library's message and no ``errno``)."""
    if not isinstance(exc, OSError):
        return False
    return exc.errno in _DISK_FULL or "No space left on device" in str(exc) \
        or "Disk quota exceeded" in str(exc)


def fsync_dir(folder: str | Path) -> None:
    """``fsync`` a folder so a rename or removal in it is durable (no-op where unsupported)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (and Windows) refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def is_temporary(path: Path) -> bool:
    """A temporary file of :func:`atomic_write` (``<name>.tmp-<random>``)."""
    return TEMP_MARK in path.name


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """Open a unique temporary file next to ``path``; on a clean exit fsync it, rename it to
    ``path`` and fsync the folder; on any error remove it (see the module docstring).

    ``mode`` is ``"wb"`` or ``"w"`` (text; ``open_kwargs`` such as ``encoding``, ``newline``
    go to :func:`os.fdopen`)."""
    path = Path(path)
    if mode not in ("wb", "w"):
        raise ValueError(f"The 'mode' parameter must be 'wb' or 'w'. Got {mode!r}.")
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    folder = path.parent
    try:
        fd, name = tempfile.mkstemp(prefix=f"{path.name}{TEMP_MARK}", dir=str(folder))
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(f"disk full writing {path}") from exc
        raise
    tmp = Path(name)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(f"disk full writing {path}") from exc
        raise
    fsync_dir(folder)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with :func:`atomic_write`."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files (``*.tmp-*``) a killed writer left in ``folder`` (symlinks are
    removed, never followed). Call only while holding the folder's lock."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for child in folder.iterdir():
            if is_temporary(child) and (child.is_symlink() or child.is_file()):
                child.unlink()
                removed.append(child)
    return removed
