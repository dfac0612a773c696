"""The post-hoc calibration of the time-to-event hazard (survival.HazardScaling, issue 14)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from churnml.models import survival as S

K = len(S.CLASSES) - 1


@settings(max_examples=80, deadline=None)
@given(raw=arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, S.N_PERIODS), st.just(K + 1)),
                  elements=st.floats(-8.0, 8.0)),
       scale=arrays(np.float64, K, elements=st.floats(0.2, 3.0)),
       offset=arrays(np.float64, K, elements=st.floats(-3.0, 3.0)),
       slope=arrays(np.float64, K, elements=st.floats(-0.5, 0.5)))
def test_calibrated_incidences_and_survival_sum_to_one_and_rise_with_time(raw, scale, offset, slope):
    n, periods, _ = raw.shape
    scaling = S.HazardScaling(tuple(scale), tuple(offset), tuple(slope))
    period = np.tile(np.arange(periods), n)
    hazards = scaling.apply(raw.reshape(n * periods, K + 1), period).reshape(n, periods, K + 1)
    np.testing.assert_allclose(hazards.sum(axis=2), 1.0, atol=1e-12)
    assert (hazards >= 0).all()
    survival, incidence = S.curves_from_hazards(hazards)
    np.testing.assert_allclose(survival + incidence.sum(axis=1), 1.0, atol=1e-12)
    assert (np.diff(incidence, axis=2) >= -1e-15).all()
    assert (np.diff(survival, axis=1) <= 1e-15).all()
    # plain reference of one row: log odds against none, scaled, shifted, then normalised
    r = raw[0, -1]
    z = [0.0] + [scale[k] * (r[k + 1] - r[0]) + offset[k] + slope[k] * (periods - 1) for k in range(K)]
    e = np.exp(np.array(z) - max(z))
    np.testing.assert_allclose(hazards[0, -1], e / e.sum(), rtol=1e-9, atol=1e-15)


def test_identity_scaling_changes_nothing():
    rng = np.random.default_rng(2)
    raw = rng.normal(size=(50, K + 1))
    np.testing.assert_allclose(S.HazardScaling.identity().apply(raw, np.arange(50) % 12), S.softmax(raw),
                               rtol=1e-12)


def _draw(rng, raw_true):
    p = S.softmax(raw_true)
    return (rng.uniform(size=len(p))[:, None] > p.cumsum(axis=1)).sum(axis=1)


def test_fit_recovers_a_known_scaling_and_is_deterministic():
    """Labels drawn from ``softmax(0, a_k l_k + b_k + c_k period)`` of shrunk logits ``l``: the
    fit finds a, b and c, and twice gives the same numbers."""
    rng = np.random.default_rng(5)
    n = 30_000
    x = rng.normal(size=n)
    period = rng.integers(0, 3, n).astype(float)
    shrunk = np.c_[np.zeros(n), 0.6 * x - 2.0, -0.4 * x - 2.5, 0.5 * x - 2.2]
    a, b, c = np.array([1.6, 1.3, 0.8]), np.array([-0.5, -1.0, 0.2]), np.array([0.1, -0.2, 0.0])
    truth = np.c_[np.zeros(n), shrunk[:, 1:] * a + b + period[:, None] * c]
    label = _draw(rng, truth)
    fitted = S.fit_hazard_scaling(shrunk, label, period)
    np.testing.assert_allclose(fitted.scale, a, atol=0.2)
    np.testing.assert_allclose(fitted.offset, b, atol=0.4)
    np.testing.assert_allclose(fitted.period_slope, c, atol=0.12)
    assert S.fit_hazard_scaling(shrunk, label, period) == fitted
    # the fit is the log-loss minimum: any nudge of a parameter raises the loss
    def loss(s):
        p = s.apply(shrunk, period)
        return -np.log(p[np.arange(n), label]).mean()
    base = loss(fitted)
    for field in ("scale", "offset", "period_slope"):
        for k in range(K):
            for step in (-0.05, 0.05):
                values = list(getattr(fitted, field))
                values[k] += step
                nudged = S.HazardScaling(**{**fitted.__dict__, field: tuple(values)})
                assert loss(nudged) > base
    # without the period term: the slopes stay 0; on no row: the identity
    assert S.fit_hazard_scaling(shrunk, label).period_slope == (0.0,) * K
    assert S.fit_hazard_scaling(shrunk[:0], label[:0]) == S.HazardScaling.identity()


def test_an_outcome_held_fixed_stays_at_the_identity_while_the_others_are_fitted():
    rng = np.random.default_rng(6)
    n = 30_000
    x = rng.normal(size=n)
    shrunk = np.c_[np.zeros(n), 0.6 * x - 2.0, -0.4 * x - 2.5, 0.5 * x - 2.2]
    a, b = np.array([1.6, 1.3, 0.8]), np.array([-0.5, -1.0, 0.2])
    label = _draw(rng, np.c_[np.zeros(n), shrunk[:, 1:] * a + b])
    free = S.fit_hazard_scaling(shrunk, label)
    held = S.fit_hazard_scaling(shrunk, label, fixed=[0])
    assert held.scale[0] == 1.0 and held.offset[0] == 0.0 and held.period_slope[0] == 0.0
    np.testing.assert_allclose(held.scale[1:], a[1:], atol=0.2)
    np.testing.assert_allclose(held.offset[1:], b[1:], atol=0.4)
    assert free.scale[0] != 1.0
    # the others are the log-loss minimum given the held one
    def loss(s):
        p = s.apply(shrunk, None)
        return -np.log(p[np.arange(n), label]).mean()
    for k in (1, 2):
        for step in (-0.05, 0.05):
            values = list(held.scale)
            values[k] += step
            assert loss(S.HazardScaling(tuple(values), held.offset, held.period_slope)) > loss(held)


def _small_rows(seed: int, n: int = 500):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"account_id": [f"A{i}" for i in range(n)], "as_of": pd.Timestamp("2026-01-05"),
                          "x": rng.normal(size=n), "tenure_days": rng.integers(0, 900, n).astype(float),
                          "days_to_renewal": rng.integers(-30, 400, n).astype(float)})
    events = pd.DataFrame({"account_id": frame["account_id"], "as_of": frame["as_of"],
                           "event": rng.integers(0, len(S.CLASSES), n),
                           "event_period": rng.integers(0, 4, n), "observed_periods": 6})
    events.loc[events["event"] == 0, "event_period"] = -1
    return frame, S.person_period_rows(events, frame)


def test_the_model_applies_its_scaling_everywhere_and_keeps_it_when_saved(tmp_path):
    """``hazards`` (hence ``curves``, ``predict``, the pyfunc, Spark and a Bento, which all load
    and call the same model) apply the scaling; save / load keeps it; the fit uses the raw
    scores, not the scaled ones."""
    frame, rows = _small_rows(3)
    names = ["x", *S.TIME_FEATURES]
    model = S.fit_hazard(rows, None, names, [], {"num_leaves": 4, "verbose": -1, "num_threads": 1,
                                                 "min_child_samples": 5}, 5, 2, rounds=5)
    plain = model.hazards(frame)
    scaling = S.HazardScaling((1.5, 0.7, 1.2), (-0.3, 0.4, 0.1), (0.05, 0.0, -0.02))
    model.hazard_scaling = scaling.to_dict()
    got = model.hazards(frame)
    raw = model.booster.predict(np.repeat(model.encoder.matrix(frame), S.N_PERIODS, axis=0), raw_score=True)
    # time features differ per period: rebuild the rows as the reference does
    index = np.repeat(np.arange(len(frame)), S.N_PERIODS)
    period = np.tile(np.arange(S.N_PERIODS), len(frame))
    repeated = frame.iloc[index].reset_index(drop=True)
    for name, values in S.period_time_features(repeated, period).items():
        repeated[name] = values
    raw = model.booster.predict(model.encoder.matrix(repeated), raw_score=True)
    np.testing.assert_allclose(got.reshape(-1, K + 1), scaling.apply(raw, period), rtol=1e-12)
    assert not np.allclose(got, plain)
    again = S.SurvivalModel.load(model.save(tmp_path / "m"))
    assert again.hazard_scaling == model.hazard_scaling
    pd.testing.assert_frame_equal(again.predict(frame), model.predict(frame))
    # refitting the scaling starts from the raw scores: the same rows give the same fit
    first = model.fit_scaling(rows)
    assert model.fit_scaling(rows) == first


def test_scaling_is_fitted_only_on_calibration_window_rows(monkeypatch):
    """``fit_protocol`` fits the scaling on the calibration window's person-period rows and on
    nothing else: every row it sees ends by the cutoff, is a row of a window landmark, and no
    test row (a landmark at or after the cutoff) nor a later period reaches it; a row ending
    after the cutoff is refused."""
    from churnml.errors import LeakageError
    from churnml.models import survival_train as T

    rng = np.random.default_rng(8)
    dates = pd.date_range("2025-01-01", periods=12, freq="30D")
    n = 200
    frames, events = [], []
    for as_of in dates:
        frames.append(pd.DataFrame({"account_id": [f"A{i}" for i in range(n)], "as_of": as_of,
                                    "x": rng.normal(size=n), "tenure_days": rng.integers(0, 900, n).astype(float),
                                    "days_to_renewal": rng.integers(-30, 400, n).astype(float)}))
        period = rng.integers(0, S.N_PERIODS, n)
        event = np.where(rng.uniform(size=n) < 0.5, rng.integers(1, len(S.CLASSES), n), 0)
        events.append(pd.DataFrame({"account_id": frames[-1]["account_id"], "as_of": as_of, "event": event,
                                    "event_period": np.where(event > 0, period, -1),
                                    "observed_periods": S.N_PERIODS}))
    features, events = pd.concat(frames, ignore_index=True), pd.concat(events, ignore_index=True)
    events["censor_days"] = S.PERIOD_DAYS * events["observed_periods"]
    events["time_days"] = np.where(events["event"] > 0, S.PERIOD_DAYS * events["event_period"] + 15,
                                   events["censor_days"])
    cutoff = dates[9]
    config = T.SurvivalConfig(lgb_params={"num_leaves": 4, "verbose": -1, "num_threads": 1,
                                          "min_child_samples": 5}, num_boost_round=5,
                              early_stopping_rounds=2, select_rounds=False, validation_days=90)
    past = events[events["as_of"] < cutoff]
    rows = S.person_period_rows(past, features, cutoff=cutoff)
    window_rows = T.calibration_rows(past, features, cutoff, config)
    seen = []
    original = S.SurvivalModel.fit_scaling

    def spy(self, rows_, period_term=False):
        seen.append(rows_.copy())
        return original(self, rows_, period_term)

    monkeypatch.setattr(S.SurvivalModel, "fit_scaling", spy)
    model = T.fit_protocol(rows, ["x", *S.TIME_FEATURES], [], cutoff, config, None, window_rows)
    (used,) = seen
    assert len(used) and (used["period_end"] <= cutoff).all()
    start = cutoff - pd.Timedelta(days=config.validation_days)
    assert ((used["as_of"] >= start) & (used["as_of"] < cutoff)).all()
    assert set(used["as_of"]) == {d for d in dates if start <= d < cutoff}
    # the rows of the window landmarks in the training rows are exactly these (none trained on)
    training = rows[rows["period_end"] <= cutoff - pd.Timedelta(days=config.validation_days)]
    assert not training.merge(used[["account_id", "as_of", "period"]]).shape[0]
    assert model.hazard_scaling is not None and model.info["hazard_scaling_rows"] == len(used)
    late = window_rows.copy()
    late.loc[late.index[0], "period_end"] = cutoff + pd.Timedelta(days=1)
    with pytest.raises(LeakageError, match="must end by the cutoff"):
        T.fit_protocol(rows, ["x", *S.TIME_FEATURES], [], cutoff, config, None, late)
    # off in the config: no scaling
    off = T.fit_protocol(rows, ["x", *S.TIME_FEATURES], [], cutoff,
                         T.SurvivalConfig(**{**config.to_dict(), "hazard_scaling": False}), None, window_rows)
    assert off.hazard_scaling is None
