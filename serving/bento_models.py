"""The champion models inside a Bento, so a built Bento serves without the MLflow store.

- :func:`import_champions` (run by ``make bento`` before ``bentoml build``) copies the
  ``champion`` of ``churnml-churn`` and ``churnml-expansion`` from the MLflow registry into
  BentoML's model store with ``bentoml.mlflow.import_model``, labelled with their registry
  version and training date; ``bentofile.yaml`` lists them, so the Bento carries them.
- :func:`load_bento_predictor` (used by ``service.py`` when it runs from a built Bento) loads
  them back from the Bento's own model store.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bentoml

TARGETS = ("churn", "expansion")
MLFLOW_MODEL_DIR = "mlflow_model"  # where bentoml.mlflow keeps the copied MLflow model
TARGET_MODEL_ARTIFACT = Path("artifacts") / "target_model"  # churnml's saved TargetModel


def bento_model_name(target: str) -> str:
    return f"churnml-{target}"


def import_champions() -> list[str]:
    """Copy both champions into the BentoML model store; returns the new model tags."""
    from churnml.config import disable_telemetry, tracking_uri
    from churnml.models import registry

    disable_telemetry()
    # bentoml.mlflow resolves models:/ URIs through MLflow's tracking URI.
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri())
    tags = []
    for target in TARGETS:
        version = registry.champion_version(target)
        if version is None:
            from churnml.errors import ModelNotFoundError

            raise ModelNotFoundError(f"no champion model for {registry.registered_name(target)}: "
                                     "run `churnml train` first")
        created = next((v.get("created") for v in registry.list_versions(target)
                        if str(v.get("version")) == str(version)), None)
        model = bentoml.mlflow.import_model(
            bento_model_name(target), registry.model_uri(target),
            labels={"target": target, "registry_version": str(version)},
            metadata={"registered_model": registry.registered_name(target),
                      "version": str(version), "trained_at": created},
        )
        tags.append(str(model.tag))
    return tags


def load_bento_predictor():
    """A ``Predictor`` over the models stored in the Bento (``churnml-<target>:latest``)."""
    from churnml.api.predictor import Predictor
    from churnml.errors import ModelNotFoundError
    from churnml.models.model import TargetModel

    models, info = {}, {}
    for target in TARGETS:
        try:
            stored = bentoml.models.get(f"{bento_model_name(target)}:latest")
        except bentoml.exceptions.NotFound:
            raise ModelNotFoundError(
                f"no champion model for churnml-{target} in this Bento: build it with "
                "`make bento` after `churnml train`") from None
        meta = dict(stored.info.metadata or {})
        directory = Path(stored.path) / MLFLOW_MODEL_DIR / TARGET_MODEL_ARTIFACT
        models[target] = TargetModel.load(directory, version=meta.get("version"))
        info[target] = {"trained_at": meta.get("trained_at")}
    return Predictor(models["churn"], models["expansion"], model_info=info)


if __name__ == "__main__":
    from churnml.errors import ChurnMLError

    try:
        for tag in import_champions():
            print(f"imported {tag}")
    except ChurnMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
