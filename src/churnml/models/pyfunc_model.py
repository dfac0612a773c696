"""The MLflow pyfunc of a churnml model, logged as "models from code".

MLflow loads this file (not a pickle) and the saved :class:`~churnml.models.model.TargetModel`
directory passed as the artifact ``target_model``. ``predict`` takes a feature frame (as
``churnml features`` writes it; missing feature columns are allowed) and returns one row per
input row with ``probability`` (calibrated, float) and ``reasons`` (up to ``top_k`` records
``{feature, value, contribution, text}``, as a JSON string by default so that the Spark UDF and
any other consumer get a plain column; ``params={"reasons_format": "records"}`` returns Python
lists instead).
"""

from __future__ import annotations

import json

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

TARGET_MODEL_ARTIFACT = "target_model"


class ChurnmlPyfunc(PythonModel):
    """Probabilities and reasons from a saved ``TargetModel``."""

    def load_context(self, context) -> None:
        from churnml.models.model import TargetModel

        self.model = TargetModel.load(context.artifacts[TARGET_MODEL_ARTIFACT])

    def predict(self, context, model_input, params=None):
        params = params or {}
        top_k = int(params.get("top_k", 3))
        fmt = params.get("reasons_format", "json")
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        proba, reasons = self.model.predict_with_reasons(frame, top_k=top_k)
        if fmt == "json":
            reasons = [json.dumps(r, allow_nan=False) for r in reasons]
        return pd.DataFrame({"probability": proba, "reasons": reasons}, index=frame.index)


mlflow.models.set_model(ChurnmlPyfunc())
