"""The MLflow pyfunc of the time-to-event model (``churnml-time-to-event``), logged from code.

MLflow loads this file and the saved :class:`~churnml.models.survival.SurvivalModel` folder
passed as the artifact ``survival_model``. ``predict`` takes a feature frame (as ``churnml
features`` writes it) and returns ``SurvivalModel.predict``: per row the incidence of every
outcome by 30, 60, 90 and 180 days, survival at those days and the expected days to churn
within a year.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

SURVIVAL_MODEL_ARTIFACT = "survival_model"


class SurvivalPyfunc(PythonModel):
    """Cumulative incidences from a saved ``SurvivalModel``."""

    def load_context(self, context) -> None:
        from churnml.models.survival import SurvivalModel

        self.model = SurvivalModel.load(context.artifacts[SURVIVAL_MODEL_ARTIFACT])

    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        out = self.model.predict(frame.reset_index(drop=True))
        out.index = frame.index
        return out


mlflow.models.set_model(SurvivalPyfunc())
