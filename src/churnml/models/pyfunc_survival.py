"""The MLflow pyfunc of the time-to-event model (``churnml-time-to-event``), logged from code.

MLflow loads this file and the saved :class:`~churnml.models.survival.SurvivalModel` folder
passed as the artifact ``survival_model``. ``predict`` takes a feature frame (as ``churnml
features`` writes it) and returns ``SurvivalModel.predict``: per row the incidence of every
outcome by 30, 60, 90 and 180 days, survival at those days and the expected days to churn
within a year; and ``{outcome}_timing_reasons``, the model's reasons for each outcome's hazard
in the current period as JSON text (``churnml.models.survival_explain.pyfunc_output``, which
this file calls in the installed churnml: a registered copy of this file keeps working).
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

SURVIVAL_MODEL_ARTIFACT = "survival_model"


class SurvivalPyfunc(PythonModel):
    """Cumulative incidences and timing reasons from a saved ``SurvivalModel``."""

    def load_context(self, context) -> None:
        from churnml.models.survival import SurvivalModel

        self.model = SurvivalModel.load(context.artifacts[SURVIVAL_MODEL_ARTIFACT])

    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        from churnml.models.survival_explain import pyfunc_output

        out = pyfunc_output(self.model, frame.reset_index(drop=True))
        out.index = frame.index
        return out


mlflow.models.set_model(SurvivalPyfunc())
