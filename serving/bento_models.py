"""The champion models inside a Bento, so a built Bento serves without the MLflow store.

- :func:`import_champions` (run by ``make bento`` before ``bentoml build``) copies the
  ``champion`` of every outcome (``churnml-churn``, ``churnml-expansion``, ...) from the MLflow registry into
  BentoML's model store with ``bentoml.mlflow.import_model``, labelled with their registry
  version and training date; ``bentofile.yaml`` lists them, so the Bento carries them. The
  ``churnml-time-to-event`` champion, when there is one, is copied the same way.
- :func:`load_bento_predictor` (used by ``service.py`` when it runs from a built Bento) loads
  them back from the Bento's own model store (the time-to-event model as a ``SurvivalModel``,
  so its columns are filled as by ``churnml serve``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bentoml

from churnml.outcomes import OUTCOMES, TIME_TO_EVENT, model_name_of

MLFLOW_MODEL_DIR = "mlflow_model"  # where bentoml.mlflow keeps the copied MLflow model
TARGET_MODEL_ARTIFACT = Path("artifacts") / "target_model"  # churnml's saved TargetModel
#: the saved ``SurvivalModel`` inside the time-to-event pyfunc (``registry.log_time_to_event``)
SURVIVAL_MODEL_ARTIFACT = Path("artifacts") / "survival_model"


def bento_model_name(target: str) -> str:
    """The registered model's name (``churnml-churn``, ``churnml-time-to-event``)."""
    return model_name_of(target)


def import_champions() -> list[str]:
    """Copy the champion of every outcome that has one, and of the time-to-event model, into
    the BentoML model store; returns the new model tags (ModelNotFoundError when no outcome has
    a champion)."""
    from churnml.config import disable_telemetry, tracking_uri
    from churnml.models import registry

    disable_telemetry()
    # bentoml.mlflow resolves models:/ URIs through MLflow's tracking URI.
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri())
    tags = []
    for target in [o.name for o in OUTCOMES] + [TIME_TO_EVENT]:
        version = registry.champion_version(target)
        if version is None:
            continue
        created = next((v.get("created") for v in registry.list_versions(target)
                        if str(v.get("version")) == str(version)), None)
        model = bentoml.mlflow.import_model(
            bento_model_name(target), registry.model_uri(target),
            labels={"target": target, "registry_version": str(version)},
            metadata={"registered_model": registry.registered_name(target),
                      "version": str(version), "trained_at": created,
                      "model_card": registry.model_card_uri(target, str(version))},
        )
        tags.append(str(model.tag))
    if not any(t.split(":")[0] != bento_model_name(TIME_TO_EVENT) for t in tags):
        from churnml.errors import ModelNotFoundError

        raise ModelNotFoundError("no champion model for any outcome: run `churnml train` first")
    return tags


def load_bento_predictor():
    """A ``Predictor`` over the models stored in the Bento (``churnml-<target>:latest``)."""
    from churnml.api.predictor import Predictor
    from churnml.errors import ModelNotFoundError
    from churnml.models.model import TargetModel
    from churnml.models.survival import SurvivalModel

    models, info = {}, {}
    for outcome in OUTCOMES:
        target = outcome.name
        try:
            stored = bentoml.models.get(f"{bento_model_name(target)}:latest")
        except bentoml.exceptions.NotFound:
            continue  # this outcome had no champion when the Bento was built
        meta = dict(stored.info.metadata or {})
        directory = Path(stored.path) / MLFLOW_MODEL_DIR / TARGET_MODEL_ARTIFACT
        models[target] = TargetModel.load(directory, version=meta.get("version"))
        info[target] = {"trained_at": meta.get("trained_at"), "model_card": meta.get("model_card")}
    if not models:
        raise ModelNotFoundError("no churnml model in this Bento: build it with `make bento` "
                                 "after `churnml train`")
    time_to_event = None
    try:
        stored = bentoml.models.get(f"{bento_model_name(TIME_TO_EVENT)}:latest")
    except bentoml.exceptions.NotFound:
        stored = None  # no time-to-event champion when the Bento was built: its columns are null
    if stored is not None:
        meta = dict(stored.info.metadata or {})
        time_to_event = SurvivalModel.load(Path(stored.path) / MLFLOW_MODEL_DIR
                                           / SURVIVAL_MODEL_ARTIFACT, version=meta.get("version"))
        info[TIME_TO_EVENT] = {"trained_at": meta.get("trained_at"),
                               "model_card": meta.get("model_card")}
    return Predictor(models, model_info=info, time_to_event=time_to_event)


if __name__ == "__main__":
    from churnml.errors import ChurnMLError

    try:
        for tag in import_champions():
            print(f"imported {tag}")
    except ChurnMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
