"""The Trust page's evidence beyond the weekly partitions:

- **model versions' evaluation**: per outcome of the registry (:mod:`churnml.outcomes`), every
  registered version with its aliases, training span end and the figures of its model card
  (the training run's held-out test metrics and the backtest's mean), read from the MLflow
  registry the other commands use (``CHURNML_HOME`` or ``MLFLOW_TRACKING_URI``). An embedded
  store that does not exist yet is not created (the UI writes nothing): the page says so.
- **measured effect of each play**: ``OUT/effects/effects.parquet`` and ``dimensions.parquet``
  written by ``churnml effects`` (:mod:`churnml.jobs.effects`).

A registry that cannot be read gives a message on the page, never an error page.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from churnml.outcomes import OUTCOMES

#: (metric logged by the training run, column label, digits) shown per version, in order
EVALUATION_METRICS = (
    ("test_roc_auc", "ROC AUC (test)", 3),
    ("test_pr_auc", "PR AUC (test)", 3),
    ("test_lift_top_decile", "Lift, top 10% (test)", 2),
    ("test_ece", "Calibration error (test)", 3),
    ("test_brier", "Brier (test)", 3),
    ("backtest_roc_auc_mean", "ROC AUC (backtest mean)", 3),
)
#: seconds an answer of the registry is reused by the Trust page
REGISTRY_CACHE_S = 60.0


@dataclass
class Evaluations:
    """Per registered version: ``outcome, version, aliases, created, train_end``, the
    :data:`EVALUATION_METRICS` and ``test_roc_auc_ci_low/high`` (NaN when not logged)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None  # why there are no rows (no store, registry unreachable)


def _embedded_store() -> Path | None:
    """The embedded store's database (``CHURNML_HOME``/mlflow.db, as
    :func:`churnml.config.tracking_uri` names it), None when a tracking server is set."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return Path(os.environ.get("CHURNML_HOME", ".churnml")).resolve() / "mlflow.db"


def read_registry() -> Evaluations:
    """Every registered version of every outcome with its evaluation figures."""
    store = _embedded_store()
    if store is not None and not store.is_file():
        return Evaluations(message=f"No model registry at {store} (set CHURNML_HOME or "
                                   "MLFLOW_TRACKING_URI as for churnml train): the versions' "
                                   "evaluation is not shown.")
    from churnml.models import registry

    rows = []
    try:
        for outcome in OUTCOMES:
            for v in registry.list_versions(outcome.name):
                metrics = registry.run_metrics(v["run_id"]) if v.get("run_id") else {}
                row = {"outcome": outcome.name, "title": outcome.title,
                       "version": v["version"], "aliases": ", ".join(v["aliases"]),
                       "created": v["created"][:10], "train_end": v.get("train_end") or ""}
                for name in [m for m, _l, _d in EVALUATION_METRICS] + [
                        "test_roc_auc_ci_low", "test_roc_auc_ci_high"]:
                    row[name] = metrics.get(name, np.nan)
                rows.append(row)
    except Exception as exc:  # noqa: BLE001 - the page says what failed; it never fails itself
        return Evaluations(message=f"The model registry could not be read "
                                   f"({type(exc).__name__}: {str(exc)[:300]}).")
    if not rows:
        return Evaluations(message="No model is registered yet (churnml train registers "
                                   "one per outcome).")
    return Evaluations(rows=rows)


class CachedRegistry:
    """:func:`read_registry` (or ``reader``) answered at most every :data:`REGISTRY_CACHE_S`
    seconds; thread-safe."""

    def __init__(self, reader: Callable[[], Evaluations] = read_registry,
                 ttl: float = REGISTRY_CACHE_S) -> None:
        self.reader, self.ttl = reader, ttl
        self._lock = threading.Lock()
        self._hit: tuple[float, Evaluations] | None = None

    def __call__(self) -> Evaluations:
        with self._lock:
            if self._hit is not None and time.monotonic() - self._hit[0] < self.ttl:
                return self._hit[1]
        answer = self.reader()
        with self._lock:
            self._hit = (time.monotonic(), answer)
        return answer


def effects_summary(table: pd.DataFrame) -> dict[str, Any]:
    """The headline over ``effects.parquet``: plays, measured plays (a finite ITT effect),
    plays shown to help (the interval's low end above zero), MRR saved to date over the
    measured plays, and the confidence level of the intervals."""
    saved = pd.to_numeric(table.get("mrr_saved_to_date", pd.Series(dtype=float)),
                          errors="coerce").to_numpy(dtype="float64")
    effect = pd.to_numeric(table.get("effect", pd.Series(dtype=float)),
                           errors="coerce").to_numpy(dtype="float64")
    confidence = float(table["confidence"].iloc[0]) if "confidence" in table and len(table) \
        else float("nan")
    low = pd.to_numeric(table.get("effect_ci_low", pd.Series(dtype=float)),
                        errors="coerce").to_numpy(dtype="float64")
    return {"plays": len(table), "measured": int(np.isfinite(effect).sum()),
            "shown_to_help": int((np.nan_to_num(low, nan=-np.inf) > 0).sum()),
            "mrr_saved": float(np.nansum(saved)) if np.isfinite(saved).any() else float("nan"),
            "confidence": confidence}


__all__ = ["CachedRegistry", "EVALUATION_METRICS", "Evaluations", "effects_summary",
           "read_registry"]
