"""The interfaces ``score_frame`` relies on, declared as ``Protocol``s.

Production code passes :class:`churnml.models.model.TargetModel` and
:class:`churnml.health.score.HealthScore`; the Spark engine passes its precomputed model; tests
pass small fakes that satisfy the same protocols (``tests/unit/jobs_fakes.py``). Nothing in
production carries a hook that only tests use.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from churnml.health.score import HealthArrays


@runtime_checkable
class OutcomeModel(Protocol):
    """A model of one outcome: calibrated probabilities with their top reasons."""

    version: Any

    def predict_with_reasons(self, features: pd.DataFrame, top_k: int = 3,
                             ) -> tuple[np.ndarray, Sequence[Sequence[dict]]]:
        """``(probabilities, reasons)``: one probability in [0, 1] per row and per row a list
        of up to ``top_k`` ``{feature, value, contribution, text}`` records."""
        ...


@runtime_checkable
class TimeToEventModel(Protocol):
    """The competing-risk model (``churnml.models.survival.SurvivalModel``): per row of a
    feature frame, the columns of ``churnml.scoring.schema.time_to_event_columns`` but the
    version (cumulative incidences, expected days to churn)."""

    @property
    def version(self) -> Any:
        """The registered version (the ``time_to_event_model_version`` column)."""
        ...

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        ...

    def timing_reasons(self, features: pd.DataFrame, top_k: int = 3, *, catalog: Any = None,
                       columns: Any = None) -> Mapping[str, Sequence[Sequence[dict]]]:
        """Per outcome name, per row, up to ``top_k`` ``{feature, value, contribution, text}``
        records behind the outcome's hazard in the current period (the
        ``{outcome}_timing_reasons`` columns); ``catalog``: the feature catalog whose sentences
        word them (the default one when None); ``columns``: ``score_frame``'s column view of
        ``features``."""
        ...


@runtime_checkable
class HealthScorer(Protocol):
    """A health score that gives its numbers as arrays (``HealthScore.score_arrays``)."""

    @property
    def dimension_names(self) -> list[str]:
        ...

    def score_arrays(self, features: pd.DataFrame, columns: Any = None) -> HealthArrays:
        ...
