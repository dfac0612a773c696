"""``FrameColumns``: a feature frame's float64 columns as numpy arrays, extracted once.

Scoring one account reads about a hundred columns of the same frame (models, health score,
alerts, gating, next best action). Taking each as a pandas Series costs tens of microseconds
(``frame[name]`` builds a new Series every time), which made one account cost as much as
hundreds. :class:`FrameColumns` takes every float64 column in one operation
(``select_dtypes`` then one ``to_numpy``) and hands out plain arrays; the modules that read it
fall back to their own pandas conversion for any other dtype, so the numbers are identical
whichever path a column takes (a float64 column's values are already what
``pd.to_numeric(col).to_numpy("float64")`` gives).

Extra arrays (the health score's outputs) can be added with :meth:`FrameColumns.add`, so the
later steps read features and health together without concatenating frames.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd


class FrameColumns:
    """Read-only numeric view of ``frame`` (one array per float64 column, aligned by row).

    ``float64(name)`` gives the column as a float64 array when the frame (or :meth:`add`) has
    it as float64, else None; ``name in columns`` says whether the column exists at all (any
    dtype); ``frame`` is the original frame for every other read. Arrays handed out must not
    be written to (they may be views of the frame's data).
    """

    __slots__ = ("frame", "n", "_names", "_float", "_extra", "_objects", "_dtypes", "block",
                 "block_names")

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.n = len(frame)
        self._names = set(frame.columns.tolist())  # tolist: one C call for an Arrow index
        self._extra: dict[str, Any] = {}
        self._objects: dict[str, list] = {}
        self._dtypes: dict[str, Any] | None = None
        floats = frame.select_dtypes(include=["float64"])
        names = list(floats.columns)
        self._float: dict[str, np.ndarray] = {}
        self.block: np.ndarray | None = None
        self.block_names: tuple[str, ...] = ()
        if names and len(set(names)) == len(names):
            block = floats.to_numpy(dtype="float64")
            for j, name in enumerate(names):
                self._float[name] = block[:, j]
            self.block, self.block_names = block, tuple(names)

    @classmethod
    def from_parts(cls, frame: pd.DataFrame, floats: dict[str, np.ndarray],
                   objects: dict[str, list] | None = None,
                   block: np.ndarray | None = None) -> "FrameColumns":
        """A view of ``frame`` from the arrays it was just built from (no extraction): the
        caller guarantees ``floats[name]`` holds the values of the float64 column ``name``
        and ``objects[name]`` what ``frame[name].tolist()`` gives; ``block``, when given, is
        the (n_rows, len(floats)) array whose columns are ``floats`` in order. Columns not
        given are read from the frame on demand."""
        view = cls.__new__(cls)
        view.block, view.block_names = None, ()
        if block is not None:
            if block.shape != (len(frame), len(floats)):
                raise ValueError(f"block of shape {block.shape} for {len(frame)} rows and "
                                 f"{len(floats)} float columns")
            view.block, view.block_names = block, tuple(floats)
        view.frame = frame
        view.n = len(frame)
        view._names = set(frame.columns.tolist())
        view._extra = {}
        view._objects = dict(objects or {})
        view._dtypes = None
        view._float = dict(floats)
        return view

    def with_frame(self, frame: pd.DataFrame) -> "FrameColumns":
        """This view over ``frame``, a frame with the same rows and columns (e.g. the same
        frame with a fresh index)."""
        if frame.shape != (self.n, len(self._names)):
            raise ValueError("with_frame needs a frame with the same rows and columns")
        view = FrameColumns.__new__(FrameColumns)
        view.frame, view.n, view._names = frame, self.n, self._names
        view._float, view._objects = self._float, self._objects
        view._extra, view._dtypes = dict(self._extra), self._dtypes
        view.block, view.block_names = self.block, self.block_names
        return view

    @classmethod
    def of(cls, frame: pd.DataFrame, columns: "FrameColumns | None") -> "FrameColumns":
        """``columns`` when it views ``frame``, else a new view of ``frame``."""
        if columns is not None and columns.frame is frame:
            return columns
        return cls(frame)

    def __contains__(self, name: object) -> bool:
        return name in self._extra or name in self._names

    def in_frame(self, name: object) -> bool:
        """Whether the frame itself has the column (added arrays do not count)."""
        return name in self._names

    def float64(self, name: str, frame_only: bool = False) -> np.ndarray | None:
        """The column as float64 when it is stored as float64 (or was added as a float64
        array, unless ``frame_only``), else None."""
        if not frame_only:
            value = self._extra.get(name)
            if value is not None:
                return value if isinstance(value, np.ndarray) and value.dtype == np.float64 else None
        return self._float.get(name)

    def dtype(self, name: str):
        """The frame column's dtype (None when absent)."""
        if self._dtypes is None:
            self._dtypes = dict(zip(self.frame.columns.tolist(), self.frame.dtypes.tolist()))
        return self._dtypes.get(name)

    def objects(self, names: Iterable[str]) -> dict[str, list]:
        """Frame columns as Python lists (``Series.tolist()``: str values stay str, missing
        text is NaN or None), cached."""
        names = list(dict.fromkeys(names))
        for name in names:  # one Series each: cheaper than a multi-column take of text
            if name not in self._objects and name in self._names:
                self._objects[name] = self.frame[name].tolist()
        return {name: self._objects[name] for name in names if name in self._objects}

    def get(self, name: str) -> Any:
        """An added array, else the frame's column (a Series), else None."""
        if name in self._extra:
            return self._extra[name]
        if name in self._names:
            return self.frame[name]
        return None

    def add(self, name: str, values: Any) -> None:
        """Make ``values`` (aligned with the frame's rows) readable as column ``name``; it
        shadows a frame column of the same name."""
        self._extra[name] = values

    def add_all(self, items: Iterable[tuple[str, Any]]) -> None:
        for name, values in items:
            self.add(name, values)


def numeric_column(columns: FrameColumns | None, frame: pd.DataFrame, name: str) -> np.ndarray | None:
    """``frame[name]`` as float64 with non-numbers as NaN (``pd.to_numeric(errors="coerce")``);
    None when absent. Reads ``columns`` first (same values, no Series)."""
    if columns is not None:
        fast = columns.float64(name)
        if fast is not None:
            return fast
        if name not in columns:
            return None
        col = columns.get(name)
    else:
        if name not in frame.columns:
            return None
        col = frame[name]
    if isinstance(col, np.ndarray):
        col = pd.Series(col)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
