"""churnml: churn and expansion prediction for customer-success teams.

The data scientist's entry points are re-exported here, loaded on first use (PEP 562), so
``import churnml`` stays light and the command line starts fast::

    import churnml
    sim = churnml.simulate(n_accounts=500, months=18, seed=7)
    churnml.write_book(sim, "book")
    book, report = churnml.load_book("book")             # validated, with rejects counted
    features = churnml.build_features(book, ["2026-06-01"])
    result = churnml.train(book, "churn")                # features, split, fit, calibrate, evaluate
    registration = churnml.log_training(result)          # MLflow run + registry + champion gate
    model = churnml.load_champion("churn")
    model.explain(features)                              # top-3 reasons per account

Each name is the package function itself (``churnml.train`` is
``churnml.models.train.train_target``): see that function's docstring for what it promises.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# OpenMP threads (LightGBM's, scikit-learn's) sleep when idle instead of spinning. Must be set
# before an OpenMP runtime loads, hence here, before anything imports lightgbm or sklearn. On a
# machine with more runnable threads than cores, spinning threads burn the cores their siblings
# wait for: measured on the shared 2-core machine at load ~18, 60 rounds of LightGBM on 400,000
# rows x 60 features at num_threads 2 took 139-146 s spinning and 19-25 s passive (one thread:
# 25-33 s) (benchmarks/README.md, "Training"). A value set by the user is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The version of the output contract; declared once in churnml.scoring.schema (light: no pandas).
from churnml.scoring.schema import SCHEMA_VERSION  # noqa: E402  (the one definition)

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    # data
    "simulate": ("churnml.data.simulator", "simulate"),
    "write_book": ("churnml.data.simulator", "write_book"),
    "load_book": ("churnml.data.io", "load_book"),
    "validate_frames": ("churnml.data.io", "validate_frames"),
    # features and labels
    "load_catalog": ("churnml.features.catalog", "load_catalog"),
    "build_features": ("churnml.features.build", "build_features"),
    "observation_grid": ("churnml.features.labels", "observation_grid"),
    # health score (the rule-based baseline)
    "HealthScore": ("churnml.health.score", "HealthScore"),
    # models: configuration, training, the trained model
    "load_config": ("churnml.models.config", "load_config"),
    "train": ("churnml.models.train", "train_target"),
    "TrainingResult": ("churnml.models.train", "TrainingResult"),
    "TargetModel": ("churnml.models.model", "TargetModel"),
    # registry (MLflow): log, compare, promote, roll back
    "log_training": ("churnml.models.registry", "log_training"),
    "load_champion": ("churnml.models.registry", "load_champion"),
    "load_version": ("churnml.models.registry", "load_version"),
    "list_versions": ("churnml.models.registry", "list_versions"),
    "promote": ("churnml.models.registry", "promote"),
    # outcomes: what churnml predicts, declared once
    "OUTCOMES": ("churnml.outcomes", "OUTCOMES"),
    "get_outcome": ("churnml.outcomes", "get_outcome"),
}

__all__ = ["__version__", "SCHEMA_VERSION", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the module behind ``name`` on first access and cache the attribute."""
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'churnml' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # static analysers and IDEs see the real objects
    from churnml.data.io import load_book, validate_frames
    from churnml.data.simulator import simulate, write_book
    from churnml.features.build import build_features
    from churnml.features.catalog import load_catalog
    from churnml.features.labels import observation_grid
    from churnml.health.score import HealthScore
    from churnml.models.config import load_config
    from churnml.models.model import TargetModel
    from churnml.models.registry import list_versions, load_champion, load_version, log_training, promote
    from churnml.models.train import TrainingResult
    from churnml.models.train import train_target as train
