"""A CHURNML_HOME with small real champions, for the integration tests that need one.

The tests under ``tests/integration`` that run ``churnml score``, ``churnml serve`` or the Spark
engine need a registry with a champion per outcome; what they test is the job, the service or
the engine, not model quality, so the models are small (few boosting rounds, one backtest fold,
few bootstrap resamples). One helper makes them, so every test trains the same way.
``"time_to_event"`` among the targets adds a quick ``churnml-time-to-event`` champion
(:data:`QUICK_TIME_TO_EVENT`; 4 s more on the shared 300-account book, load average 6).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

#: Small, fast models: ``num_boost_round`` is set per caller.
QUICK_TRAINING: dict[str, Any] = dict(bootstrap_resamples=10, backtest_folds=1, min_positives=2,
                                      cadence_days=14)
#: The time-to-event model's quick settings (``models/time_to_event.yaml`` otherwise).
QUICK_TIME_TO_EVENT: dict[str, Any] = dict(num_boost_round=30, early_stopping_rounds=10,
                                           bootstrap_resamples=0)


@contextlib.contextmanager
def quick_champions_home(home: Path, tables: Mapping[str, Any], *, num_boost_round: int = 40,
                         targets: Sequence[str] = ("churn", "expansion"),
                         env: Mapping[str, str] | None = None) -> Iterator[Path]:
    """``home`` as CHURNML_HOME (MLFLOW_TRACKING_URI unset, ``env`` set) for the duration, with
    a champion per target trained on ``tables`` (the simulator's frames, validated here;
    ``"time_to_event"`` trains the competing-risk model, with :data:`QUICK_TIME_TO_EVENT`).
    Fails the test if a model does not become champion."""
    from churnml.data.io import validate_frames
    from churnml.models.config import load_config
    from churnml.models.registry import log_time_to_event, log_training
    from churnml.models.survival_train import load_survival_config, train_time_to_event
    from churnml.models.train import train_target
    from churnml.outcomes import TIME_TO_EVENT

    with pytest.MonkeyPatch.context() as patch:
        for key, value in (env or {}).items():
            patch.setenv(key, value)
        patch.setenv("CHURNML_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        book, _ = validate_frames(tables)
        for target in targets:
            if target == TIME_TO_EVENT:
                survival = load_survival_config()
                for key, value in QUICK_TIME_TO_EVENT.items():
                    setattr(survival, key, value)
                registration = log_time_to_event(train_time_to_event(book, survival))
                assert registration.became_champion, f"{target}: the quick model is not champion"
                continue
            config = load_config(target).with_overrides(num_boost_round=num_boost_round,
                                                        **QUICK_TRAINING)
            registration = log_training(train_target(book, target, config), plots=False)
            assert registration.became_champion, f"{target}: the quick model is not champion"
        yield home
