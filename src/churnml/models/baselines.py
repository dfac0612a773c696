"""Baselines scored on the same test rows as the model.

- **health**: the rule-based health score at the same as_of: churn risk = 100 - health_score,
  expansion readiness = health_score (a ranking, not a probability); the direction is the
  outcome's ``health_direction`` (``churnml.outcomes``).
- **logistic regression** on the same features: median imputation with missing-value
  indicators and scaling for numbers, one-hot for categories (unseen -> all zeros), fitted on
  the same training rows.
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
    out = frame.copy()
    for c in categorical:
        col = frame[c].astype("object")
        out[c] = col.where(col.notna(), "missing").astype(str).to_numpy(dtype=object)
    return out


class LogisticBaseline:
    """Logistic regression on the model's features (see module docstring)."""

    def __init__(self, numeric: list[str], categorical: list[str], C: float = 1.0) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.C = C

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
        frame = self._frame(features)
        self.clip_ = {c: (frame[c].quantile(0.005), frame[c].quantile(0.995)) for c in self.numeric}
        for c, (lo, hi) in self.clip_.items():
            # pandas-stubs: quantile returns np.floating, which clip's overloads do not take
            frame[c] = frame[c].clip(lo, hi)  # type: ignore[call-overload]
        self.pipeline_ = self._pipeline().fit(frame, np.asarray(y, dtype="float64"))
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        frame = self._frame(features)
        for c, (lo, hi) in self.clip_.items():
            frame[c] = frame[c].clip(lo, hi)  # type: ignore[call-overload]  # as in fit
        return self.pipeline_.predict_proba(frame)[:, 1]


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
