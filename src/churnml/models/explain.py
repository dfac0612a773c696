"""Reasons from exact TreeSHAP contributions: vectorised top-k and plain-words text.

Contributions are LightGBM's ``pred_contrib`` values: exact TreeSHAP in log-odds units of the
*uncalibrated* model (they add up, with the base value, to the raw log-odds). The calibrator is
monotone, so a contribution that raises the log-odds raises the calibrated probability too.

Ordering of an account's reasons: those raising the probability first, strongest first; then
those lowering it, strongest (most negative) first; exact zeros are never reasons. So every
account with any non-zero contribution gets ``top_k`` reasons.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def top_k_indices(contrib: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column indices of the ``k`` strongest reasons in order, and a validity mask.

    ``contrib``: (n_rows, n_features) contributions (no base-value column). Returns
    ``(idx, valid)`` of shape (n_rows, k'), ``k' = min(k, n_features)``; ``valid`` is False
    where a row has fewer than k' non-zero contributions. Vectorised: one ``argpartition`` and
    one small sort, no Python loop over rows.
    """
    n_rows, n_features = contrib.shape
    k = min(k, n_features)
    if k <= 0 or n_rows == 0:
        return np.zeros((n_rows, 0), dtype=np.int64), np.zeros((n_rows, 0), dtype=bool)
    magnitude = np.abs(contrib)
    offset = 2.0 * (float(magnitude.max()) if magnitude.size else 0.0) + 1.0
    # Sort key: raising reasons in (-offset/2, 0), lowering ones in (offset/2, offset), zeros last.
    key = np.where(contrib > 0, -contrib, np.where(contrib < 0, offset + contrib, np.inf))
    if n_rows == 1:  # one account: the same steps on the row itself (no take_along_axis)
        row = key[0]
        first = (np.argpartition(row, k - 1)[:k] if k < n_features
                 else np.arange(n_features))
        top = first[np.argsort(row[first], kind="stable")]
        return top[None, :], np.isfinite(row[top])[None, :]
    if k < n_features:
        part = np.argpartition(key, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n_features), (n_rows, n_features)).copy()
    part_keys = np.take_along_axis(key, part, axis=1)
    order = np.argsort(part_keys, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    valid = np.isfinite(np.take_along_axis(key, idx, axis=1))
    return idx, valid


def build_reasons(
    contrib: np.ndarray,
    values: Sequence[Sequence[object] | None],
    feature_names: list[str],
    render: list[Callable[[object], str]],
    k: int = 3,
    top: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[list[dict]]:
    """Per row, up to ``k`` records ``{feature, value, contribution, text}`` (module docstring).

    ``values[j]`` is feature j's display values (floats, or category strings / None) aligned
    with the rows; ``render[j](value)`` its sentence. Text is rendered once per distinct
    (feature, value) pair, since many accounts share values (0 tickets, "core" tier...).
    ``top``: ``top_k_indices(contrib, k)`` when the caller has it already.
    """
    idx, valid = top if top is not None else top_k_indices(contrib, k)
    n_rows, width = idx.shape
    if n_rows == 1:  # one account: its reasons directly, the same records
        reasons = []
        for p in range(width):
            if not valid[0, p]:
                break
            j = int(idx[0, p])
            column = values[j]
            assert column is not None  # the caller gives values for every picked feature
            raw = column[0]
            value = None if raw is None or (isinstance(raw, float) and raw != raw) else raw
            reasons.append({"feature": feature_names[j], "value": value,
                            "contribution": float(contrib[0, j]), "text": render[j](value)})
        return [reasons]
    picked = np.take_along_axis(contrib, idx, axis=1)
    # Column by column (position 1..k), feature by feature: each (feature, value) sentence is
    # rendered once, and the per-row work is list indexing; then one dict per reason.
    cache: dict[tuple[int, object], str] = {}
    names: list[list] = []
    shown: list[list] = []
    texts: list[list] = []
    for p in range(width):
        js, ok = idx[:, p], valid[:, p]
        name_p: list = [None] * n_rows
        value_p: list = [None] * n_rows
        text_p: list = [None] * n_rows
        for j in np.unique(js[ok]).tolist():
            rows = np.flatnonzero(ok & (js == j)).tolist()
            column, name, render_j = values[j], feature_names[j], render[j]
            assert column is not None  # the caller gives values for every picked feature
            for i in rows:
                raw = column[i]
                value = None if raw is None or (isinstance(raw, float) and raw != raw) else raw
                text = cache.get((j, value))
                if text is None:
                    text = cache[(j, value)] = render_j(value)
                name_p[i], value_p[i], text_p[i] = name, value, text
        names.append(name_p)
        shown.append(value_p)
        texts.append(text_p)
    contributions = picked.T.tolist()
    # reasons stop at a row's first invalid position (valid is True, then False)
    counts = np.where(valid.all(axis=1), width, valid.argmin(axis=1)).tolist() if width else [0] * n_rows
    return [[{"feature": names[p][i], "value": shown[p][i], "contribution": contributions[p][i],
              "text": texts[p][i]} for p in range(counts[i])] for i in range(n_rows)]
