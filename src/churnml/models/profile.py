"""The reference profile of a model's training data, and drift against it.

At training time (``registry.log_training``) a compact profile of the registered model's
training rows is stored as the artifact ``reference_profile.json`` of its run: per feature the
reference's quantile bins (numeric) or category frequencies (categorical), each with a missing
bin; for the outcome's score the same bins of the calibrated probability. The weekly job
(``churnml.jobs.drift``) bins each week's features and scores into those same bins and measures
the population stability index (PSI) and the Jensen-Shannon distance against the reference.

The profile covers the last ``reference_weeks`` weekly as_of dates of the training rows (the
most recent book the model learned from; ``monitoring.reference_weeks`` in the outcome's
model configuration): a two-year span would mix book compositions that a week of scores is
never expected to match.

Binning (deterministic, no per-row Python):

- numeric: interior edges = the distinct reference quantiles at 1/B, ..., (B-1)/B, plus, for a
  quantile value repeated (a point mass, such as a count that is 0 for most rows), the next
  float above it, so the point mass is a bin of its own; a value goes to
  ``searchsorted(edges, x, side="right")`` (bin ``0..len(edges)``), NaN to the last bin;
- categorical: the (at most :data:`MAX_CATEGORIES`) most frequent reference categories, then
  "other", then missing.

PSI = sum over bins of ``(c - r) * ln(c / r)`` with the shares floored at :data:`SHARE_FLOOR`
(an empty bin on either side would be infinite); JS distance = sqrt of the Jensen-Shannon
divergence in bits (0 identical, 1 disjoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

PROFILE_FORMAT = 1
PROFILE_FILE = "reference_profile.json"
#: the score profiled per outcome (the calibrated probability)
SCORE_NAME = "probability"
MAX_CATEGORIES = 20
SHARE_FLOOR = 1e-4
#: most reference rows whose scores are computed for the profile (a seeded sample beyond)
MAX_SCORED_ROWS = 200_000


def numeric_edges(values: np.ndarray, bins: int) -> list[float]:
    """Distinct interior quantile edges of the finite ``values`` (empty: one bin)."""
    x = np.asarray(values, dtype="float64")
    x = x[np.isfinite(x)]
    if not len(x) or bins < 2:
        return []
    qs = np.quantile(x, np.arange(1, bins) / bins)
    edges, repeats = np.unique(qs, return_counts=True)
    # a value that fills more than one quantile (a point mass: a count that is 0 for most
    # accounts) gets a bin of its own, so a shift off it shows: without the edge just above it,
    # 0 and every higher count would share one bin and PSI could never move
    above = np.nextafter(edges[repeats > 1], np.inf)
    return [float(v) for v in np.unique(np.concatenate([edges, above]))]


def numeric_bins(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Bin index per value: ``0..len(edges)`` by the edges, ``len(edges) + 1`` for NaN."""
    x = np.asarray(values, dtype="float64")
    out = np.searchsorted(np.asarray(edges, dtype="float64"), x, side="right")
    out[~np.isfinite(x)] = len(edges) + 1
    return out


def categorical_bins(values, categories: list[str]) -> np.ndarray:
    """Bin index per value: position in ``categories``, then other, then missing."""
    series = pd.Series(values, dtype="object")
    missing = series.isna().to_numpy()
    codes = pd.Index(categories, dtype=object).get_indexer(
        pd.Index(series.astype(str).to_numpy(dtype=object), dtype=object)).astype("int64")
    codes[codes < 0] = len(categories)
    codes[missing] = len(categories) + 1
    return codes


@dataclass
class Histogram:
    """How one feature or score is binned, and the reference's share per bin."""

    kind: str  # "numeric" | "categorical"
    shares: list[float]
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    @property
    def n_bins(self) -> int:
        return len(self.shares)

    def bin(self, values) -> np.ndarray:
        if self.kind == "categorical":
            return categorical_bins(values, self.categories)
        return numeric_bins(np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"),
                                       dtype="float64"), self.edges)

    def counts(self, values) -> np.ndarray:
        return np.bincount(self.bin(values), minlength=self.n_bins).astype("float64")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "shares": self.shares}
        if self.kind == "categorical":
            out["categories"] = self.categories
        else:
            out["edges"] = self.edges
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Histogram":
        return cls(kind=str(data["kind"]), shares=[float(s) for s in data["shares"]],
                   edges=[float(e) for e in data.get("edges", [])],
                   categories=[str(c) for c in data.get("categories", [])])


def reference_histogram(values, kind: str, bins: int) -> Histogram:
    """The histogram of the reference ``values`` (``kind`` numeric or categorical)."""
    if kind == "categorical":
        series = pd.Series(values, dtype="object").dropna().astype(str)
        counts = series.value_counts(sort=True)
        # ties in frequency ordered by name: the same profile from the same rows
        order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        categories = [str(k) for k, _ in order[:MAX_CATEGORIES]]
        hist = Histogram("categorical", [], categories=categories)
    else:
        numbers = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype="float64")
        hist = Histogram("numeric", [], edges=numeric_edges(numbers, bins))
        values = numbers
    n_bins = (len(hist.categories) + 2) if kind == "categorical" else (len(hist.edges) + 2)
    hist.shares = [0.0] * n_bins
    binned = hist.counts(values)
    total = binned.sum()
    hist.shares = [float(c / total) if total else 0.0 for c in binned]
    return hist


def psi(reference_shares, counts) -> float:
    """Population stability index of ``counts`` against the reference shares (NaN when no
    row was counted)."""
    c = np.asarray(counts, dtype="float64")
    total = c.sum()
    if total <= 0:
        return float("nan")
    r = np.maximum(np.asarray(reference_shares, dtype="float64"), SHARE_FLOOR)
    q = np.maximum(c / total, SHARE_FLOOR)
    return float(np.sum((q - r) * np.log(q / r)))


def js_distance(reference_shares, counts) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of ``counts`` against the reference."""
    c = np.asarray(counts, dtype="float64")
    total = c.sum()
    r = np.asarray(reference_shares, dtype="float64")
    if total <= 0 or r.sum() <= 0:
        return float("nan")
    p, q = r / r.sum(), c / total
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        ok = a > 0
        return float(np.sum(a[ok] * np.log2(a[ok] / m[ok])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


@dataclass
class ReferenceProfile:
    """Per feature and for the score, the reference histogram of a registered version."""

    outcome: str
    rows: int
    as_of_start: str | None
    as_of_end: str | None
    features: dict[str, Histogram]
    scores: dict[str, Histogram]
    score_means: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "outcome": self.outcome, "rows": self.rows,
                "as_of_start": self.as_of_start, "as_of_end": self.as_of_end,
                "features": {k: h.to_dict() for k, h in self.features.items()},
                "scores": {k: h.to_dict() for k, h in self.scores.items()},
                "score_means": self.score_means}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ReferenceProfile":
        return cls(outcome=str(data["outcome"]), rows=int(data["rows"]),
                   as_of_start=data.get("as_of_start"), as_of_end=data.get("as_of_end"),
                   features={k: Histogram.from_dict(v) for k, v in data["features"].items()},
                   scores={k: Histogram.from_dict(v) for k, v in data["scores"].items()},
                   score_means={k: float(v) for k, v in (data.get("score_means") or {}).items()})


def build_profile(model, frame: pd.DataFrame, *, outcome: str, bins: int,
                  reference_weeks: int, seed: int = 0) -> ReferenceProfile:
    """The profile of ``model``'s training rows ``frame`` (its features, ``as_of``): the last
    ``reference_weeks`` as_of dates; the score is ``model.predict_proba`` on those rows (a
    seeded sample of at most :data:`MAX_SCORED_ROWS`)."""
    dates = np.sort(pd.to_datetime(frame["as_of"]).unique())
    keep = dates[-reference_weeks:] if reference_weeks > 0 else dates
    rows = frame[pd.to_datetime(frame["as_of"]).isin(keep)].reset_index(drop=True)
    categories = set(getattr(model, "categories", {}) or {})
    features = {name: reference_histogram(rows[name] if name in rows.columns
                                          else np.full(len(rows), np.nan),
                                          "categorical" if name in categories else "numeric",
                                          bins)
                for name in model.feature_names}
    scored = rows
    if len(rows) > MAX_SCORED_ROWS:
        scored = rows.sample(MAX_SCORED_ROWS, random_state=seed)
    probability = np.asarray(model.predict_proba(scored), dtype="float64")
    return ReferenceProfile(
        outcome=outcome, rows=int(len(rows)),
        as_of_start=f"{pd.Timestamp(keep[0]):%Y-%m-%d}" if len(keep) else None,
        as_of_end=f"{pd.Timestamp(keep[-1]):%Y-%m-%d}" if len(keep) else None,
        features=features,
        scores={SCORE_NAME: reference_histogram(probability, "numeric", bins)},
        score_means={SCORE_NAME: float(np.mean(probability)) if len(probability) else float("nan")})


class DriftCounts:
    """Bin counts of this week's rows against a profile, added chunk by chunk (the weekly job
    scores the book in account chunks and never holds all features at once)."""

    def __init__(self, profile: ReferenceProfile):
        self.profile = profile
        self.features = {k: np.zeros(h.n_bins) for k, h in profile.features.items()}
        self.rows = 0

    def add(self, features: pd.DataFrame) -> None:
        n = len(features)
        for name, hist in self.profile.features.items():
            values = features[name] if name in features.columns else np.full(n, np.nan)
            self.features[name] += hist.counts(values)
        self.rows += n
