"""Baselines scored on the same test rows as the model.

- **health**: the rule-based health score at the same as_of: churn risk = 100 - health_score,
  expansion readiness = health_score (a ranking, not a probability); the direction is the
  outcome's ``health_direction`` (``churnml.outcomes``).
- **logistic regression** on the same features: median imputation with missing-value
  indicators and scaling for numbers, one-hot for categories (unseen -> all zeros), fitted on
  the same training rows; above ``max_rows`` training rows (``evaluation.logreg_max_rows``), on
  a seeded sample of them stratified by the label (about 100 coefficients do not need millions
  of rows; on a 50,000-account book the full fit cost minutes and gigabytes). Scored on every
  test row, in chunks.
- **oracle** (simulated books only): the simulator's true probability of the event given its
  hidden state just before as_of (``churnml.data.simulator.oracle_probability``), never the
  realised future.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from churnml.outcomes import get_outcome


def health_baseline(features: pd.DataFrame, target: str, health) -> np.ndarray:
    """Health-score ranking for ``target`` on ``features`` rows (0-100, higher = more likely)."""
    scored = health.score(features)
    score = pd.to_numeric(scored["health_score"], errors="coerce").to_numpy(dtype="float64")
    # the outcome's declared direction: risk outcomes rank by 100 - health, expansion by health
    return score if get_outcome(target).health_direction > 0 else 100.0 - score


def _categorical_frame(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """``frame`` (a reindexed copy the caller owns) with its categories as strings, in place."""
    for c in categorical:
        col = frame[c].astype("object")
        frame[c] = col.where(col.notna(), "missing").astype(str).to_numpy(dtype=object)
    return frame


def stratified_row_sample(y, max_rows: int | None, seed: int) -> np.ndarray | None:
    """Positions of at most ``max_rows`` rows, drawn without replacement per label value in
    proportion to its count (seeded; sorted); ``None`` when every row fits."""
    y = np.asarray(y)
    if max_rows is None or len(y) <= max_rows:
        return None
    rng = np.random.default_rng(seed)
    rate = max_rows / len(y)
    keep = []
    for value in np.unique(y):
        where = np.flatnonzero(y == value)
        keep.append(rng.choice(where, size=max(1, int(round(len(where) * rate))), replace=False))
    return np.sort(np.concatenate(keep))


class LogisticBaseline:
    """Logistic regression on the model's features (see module docstring)."""

    def __init__(self, numeric: list[str], categorical: list[str], C: float = 1.0,
                 max_rows: int | None = None, seed: int = 0, chunk_rows: int = 200_000) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.C = C
        self.max_rows = max_rows
        self.seed = seed
        self.chunk_rows = chunk_rows

    def _pipeline(self):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        parts = []
        if self.numeric:
            parts.append(("numeric", make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                StandardScaler()), self.numeric))
        if self.categorical:
            parts.append(("categorical", OneHotEncoder(handle_unknown="ignore"), self.categorical))
        return Pipeline([("prepare", ColumnTransformer(parts)),
                         ("model", LogisticRegression(C=self.C, max_iter=2000))])

    def _frame(self, features: pd.DataFrame) -> pd.DataFrame:
        frame = features.reindex(columns=self.numeric + self.categorical)
        for c in self.numeric:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
        # Winsorise heavy tails so a few extreme counts do not dominate the scaled inputs.
        return _categorical_frame(frame, self.categorical)

    def fit(self, features: pd.DataFrame, y) -> "LogisticBaseline":
        y = np.asarray(y, dtype="float64")
        rows = stratified_row_sample(y, self.max_rows, self.seed)
        self.fit_rows_ = len(y) if rows is None else len(rows)
        if rows is not None:
            features, y = features.iloc[rows], y[rows]
        frame = self._frame(features)
        self.clip_ = {c: (frame[c].quantile(0.005), frame[c].quantile(0.995)) for c in self.numeric}
        for c, (lo, hi) in self.clip_.items():
            # pandas-stubs: quantile returns np.floating, which clip's overloads do not take
            frame[c] = frame[c].clip(lo, hi)  # type: ignore[call-overload]
        self.pipeline_ = self._pipeline().fit(frame, y)
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        # in chunks: the prepared matrix of a whole test window is several copies of the frame
        out = np.empty(len(features))
        for start in range(0, len(features), self.chunk_rows):
            frame = self._frame(features.iloc[start:start + self.chunk_rows])
            for c, (lo, hi) in self.clip_.items():
                frame[c] = frame[c].clip(lo, hi)  # type: ignore[call-overload]  # as in fit
            out[start:start + len(frame)] = self.pipeline_.predict_proba(frame)[:, 1]
        return out


def find_truth(source) -> Path | None:
    """The simulator's ``_truth`` folder beside a book folder, when there is one."""
    if source is None:
        return None
    path = Path(source) / "_truth"
    return path if path.is_dir() else None


def oracle_baseline(truth, observations: pd.DataFrame, horizon_days: int, target: str) -> np.ndarray:
    """The simulator's true event probability for each (account_id, as_of) row."""
    from churnml.data.simulator import oracle_probability

    result = oracle_probability(truth, observations[["account_id", "as_of"]].reset_index(drop=True),
                                horizon_days, target)
    if isinstance(result, pd.DataFrame):
        column = next((c for c in ("oracle_probability", "probability", target) if c in result.columns),
                      result.select_dtypes("number").columns[-1])
        result = result[column]
    values = np.asarray(result, dtype="float64").reshape(-1)
    if len(values) != len(observations):
        raise ValueError(f"oracle_probability returned {len(values)} values for {len(observations)} rows")
    return values
