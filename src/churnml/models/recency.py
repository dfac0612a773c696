"""Recency weights of training rows (``training.recency_half_life_days`` in ``models/<outcome>.yaml``).

A row observed at ``as_of`` weighs ``0.5 ** (age / half_life)``, where ``age`` is the number of
days from its ``as_of`` to the latest ``as_of`` among the rows of the same fit: the newest week
weighs 1, a row one half-life older 0.5, two half-lives 0.25. After a change in how accounts
behave (docs/monitoring.md, "The billing-migration book") a booster fitted on the whole history
mostly relearns the old world; the weight lets the latest weeks count more without dropping the
older ones. ``None`` (the default) = off: no weights reach LightGBM, so the models are the ones
an unweighted run gives, byte for byte.

Only the LightGBM boosters of the outcome models are weighted (``train.fit_model``, the
cross-fitted boosters of ``crossfit``, the refit and its calibration folds in ``refit``, and so
the backtest folds, which call the same fits). The calibrators, early stopping's validation rows
and every metric stay unweighted: they judge the rows as they are.

After a drift the monitoring detected (``training.recency_after_retrain_days``,
:func:`after_retrain`): ``churnml train --scores OUT`` retrains with that half-life when the
weekly monitoring recommends retraining the current champion and the always-on
``recency_half_life_days`` is off, so the weight is the response to a detected change and
costs nothing while nothing changes (docs/models.md, "Recency weighting").

Example::

    recency_weights(frame["as_of"], 90.0)   # float64 array, 1.0 at the latest as_of
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["recency_weights", "describe", "after_retrain"]

_DAY = np.timedelta64(1, "D")


def recency_weights(as_of, half_life_days: float | None) -> np.ndarray | None:
    """The weight of each row, ``0.5 ** ((latest as_of - as_of) in days / half_life_days)``,
    the latest taken over ``as_of`` itself (the rows of one fit); float64 in (0, 1], 1 at the
    latest date. ``None`` when ``half_life_days`` is None (off) or there are no rows.

    ``as_of``: anything ``pandas.to_datetime`` reads (a Series, an array of datetime64); no
    missing values (every observation has one). A row more than about 125 half-lives old
    weighs 0 once LightGBM stores the weights as float32 (0.5 ** 126 is float32's smallest
    normal number): it no longer counts."""
    if half_life_days is None:
        return None
    dates = pd.to_datetime(np.asarray(as_of)).to_numpy(dtype="datetime64[ns]")
    if len(dates) == 0:
        return None
    age_days = (dates.max() - dates) / _DAY
    return np.power(0.5, age_days / float(half_life_days))


def describe(half_life_days: float | None) -> str:
    """The weighting in words, for the model card and notes."""
    if half_life_days is None:
        return "none (every training row weighs the same)"
    return (f"recency weight with a half-life of {half_life_days:g} days (a row weighs "
            f"0.5 ** (days before the latest as_of of its fit / {half_life_days:g}); the "
            f"calibrator and early stopping unweighted)")


def after_retrain(config, recommended_for_champion: bool):
    """The configuration to train with and the note that says why: ``config`` with
    ``recency_half_life_days`` set to ``recency_after_retrain_days`` when the weekly monitoring
    recommends retraining the current champion (``recommended_for_champion``), the always-on
    weight is off and the after-retrain one is configured; else ``config`` unchanged and None.

    ``config``: a ``ModelConfig``."""
    from dataclasses import replace

    half_life = config.recency_after_retrain_days
    if not recommended_for_champion or half_life is None or config.recency_half_life_days is not None:
        return config, None
    return (replace(config, recency_half_life_days=half_life),
            f"recency weight: half-life {half_life:g} days (training.recency_after_retrain_days), "
            f"because the weekly monitoring recommends retraining the champion; rows weigh "
            f"0.5 ** (age / {half_life:g} days) in every booster of this run")
