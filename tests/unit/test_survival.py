"""The discrete-time competing-risk model (churnml.models.survival): curves, events, rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from churnml.models import survival as S
from churnml.outcomes import OUTCOMES


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 13), st.just(len(S.CLASSES))),
              elements=st.floats(0.0, 1.0)))
def test_incidences_and_survival_sum_to_one_and_rise_with_time(raw):
    raw = raw + 1e-9  # a row of zeros has no distribution
    hazards = raw / raw.sum(axis=2, keepdims=True)
    survival, incidence = S.curves_from_hazards(hazards)
    np.testing.assert_allclose(survival + incidence.sum(axis=1), 1.0, atol=1e-12)
    assert (np.diff(survival, axis=1) <= 1e-12).all()
    assert (np.diff(incidence, axis=2) >= -1e-12).all()
    assert ((incidence >= -1e-12) & (incidence <= 1 + 1e-12)).all()
    # plain reference: walk the periods one by one
    n, periods, k = hazards.shape
    for i in range(n):
        alive, cif = 1.0, np.zeros(k - 1)
        for j in range(periods):
            cif = cif + alive * hazards[i, j, 1:]
            alive = alive * hazards[i, j, 0]
            np.testing.assert_allclose(incidence[i, :, j + 1], cif, atol=1e-12)
            assert survival[i, j + 1] == pytest.approx(alive, abs=1e-12)


def test_expected_days_against_a_plain_sum():
    rng = np.random.default_rng(3)
    free = np.sort(rng.uniform(0, 1, (4, S.N_PERIODS)), axis=1)[:, ::-1]
    free = np.c_[np.ones(4), free]
    got = S.expected_days_to_event(free)
    for i in range(4):
        want = sum((free[i, j] - free[i, j + 1]) * (30 * j + 15) for j in range(S.N_PERIODS))
        want += free[i, -1] * 360
        assert got[i] == pytest.approx(want)
    assert S.expected_days_to_event(np.ones((1, S.N_PERIODS + 1)))[0] == 360


def test_classes_and_ties_come_from_the_outcome_registry():
    assert S.CLASSES == ("none",) + tuple(o.name for o in OUTCOMES)
    assert set(S.TIE_ORDER) == {o.name for o in OUTCOMES}
    assert S.TIE_ORDER[0] == next(o.name for o in OUTCOMES if o.label_rule == "mrr_reaches_zero")


@pytest.fixture(scope="module")
def book_events(sim_tables):
    from churnml.data.tables import Book
    from churnml.features.windows import to_as_of

    book = Book(dict(sim_tables.tables))
    end = to_as_of(book.data_end)
    landmarks = pd.DatetimeIndex([end - pd.Timedelta(days=30 * k) for k in range(14, 0, -1)])
    return book, landmarks, S.first_events(book, landmarks)


def test_first_events_agree_with_the_labels(book_events):
    from churnml.features.labels import observation_grid

    book, landmarks, events = book_events
    assert set(events["event"].unique()) >= {1, 2, 3}
    grid = observation_grid(book, landmarks, 90)
    merged = events.merge(grid, on=["account_id", "as_of"], validate="one_to_one")
    labeled = merged["labeled"].to_numpy()
    early = (merged["event_period"] >= 0) & (merged["event_period"] < 3)
    for code, name in enumerate(S.CLASSES[1:], start=1):
        first = early & (merged["event"] == code)
        # a first event of outcome k within 3 periods is a 90-day label of k
        assert (merged.loc[first & labeled, name] == 1).all()
    # no label within 90 days at all means no first event within 3 periods
    none = labeled & (merged[list(S.CLASSES[1:])].sum(axis=1) == 0)
    assert not early[none].any()
    # an event is only seen in an observed period; censoring is at the data's end
    has = merged["event_period"] >= 0
    assert (merged.loc[has, "event_period"] < merged.loc[has, "observed_periods"]).all()
    end = pd.Timestamp(book.data_end)
    follow = merged["as_of"] + pd.to_timedelta(merged["censor_days"], unit="D")
    assert (follow <= end).all()
    assert ((follow + pd.Timedelta(days=S.PERIOD_DAYS) > end)
            | (merged["observed_periods"] == S.N_PERIODS)).all()


def test_no_person_period_row_after_an_event_or_at_or_after_censoring(book_events):
    book, landmarks, events = book_events
    features = events[["account_id", "as_of"]].assign(tenure_days=100.0, days_to_renewal=40.0)
    cutoff = landmarks[-6]
    for cut in (None, cutoff):
        rows = S.person_period_rows(events, features, cutoff=cut)
        limit = pd.Timestamp(book.data_end) if cut is None else pd.Timestamp(cut)
        # every trained period ends by the censoring date: none reaches at or after it
        assert (rows["period_end"] <= limit).all()
        # nothing after the event's period; the event is the last row of its observation
        last = rows.groupby(["account_id", "as_of"])["period"].transform("max")
        assert (rows.loc[rows["label"] > 0, "period"] == last[rows["label"] > 0]).all()
        assert ((rows["event_period"] < 0) | (rows["period"] <= rows["event_period"])).all()
        assert (rows.groupby(["account_id", "as_of"])["label"].apply(lambda s: (s > 0).sum()) <= 1).all()
        # plain reference: the rows of every observation, one at a time
        want = []
        for r in events.itertuples():
            periods = r.observed_periods
            if cut is not None:
                periods = min(periods, max(0, (pd.Timestamp(cut) - r.as_of).days // S.PERIOD_DAYS))
            for j in range(periods):
                hit = j == r.event_period
                want.append((r.account_id, r.as_of, j, r.event if hit else 0))
                if hit:
                    break
        got = list(rows[["account_id", "as_of", "period", "label"]].itertuples(index=False, name=None))
        assert sorted(got) == sorted(want)
        # time features move with the period
        assert (rows[S.TENURE_FEATURE] == 100.0 + 30 * rows["period"]).all()
        assert (rows[S.RENEWAL_FEATURE] == 40.0 - 30 * rows["period"]).all()


def test_class_bias_moves_base_rates_to_the_observed_ones():
    rng = np.random.default_rng(5)
    label = rng.choice(4, size=4000, p=[0.85, 0.06, 0.05, 0.04])
    # constant raw scores: the best shift makes the softmax the class frequencies
    bias = S.fit_class_bias(np.zeros((len(label), 4)), label)
    freq = np.bincount(label, minlength=4) / len(label)
    np.testing.assert_allclose(bias, np.log(freq / freq[0]), atol=1e-4)
    # informative raw scores shifted by a constant: the fit takes the shift back out
    raw = rng.normal(0, 1, (len(label), 4))
    raw[np.arange(len(label)), label] += 1.5
    shift = np.array([0.0, 0.7, -0.4, 0.2])
    back = S.fit_class_bias(raw + shift, label)
    plain = S.fit_class_bias(raw, label)
    np.testing.assert_allclose(np.array(back), np.array(plain) - shift, atol=1e-3)
    p = S.softmax(raw, plain)
    np.testing.assert_allclose(p.mean(axis=0), freq, atol=1e-4)  # the score equations


def test_revenue_forecast_against_a_plain_loop():
    rng = np.random.default_rng(9)
    raw = rng.uniform(0, 1, (30, S.N_PERIODS, len(S.CLASSES)))
    raw[:, :, 0] += 8  # mostly no event
    _, incidence = S.curves_from_hazards(raw / raw.sum(axis=2, keepdims=True))
    mrr = rng.uniform(100, 2000, 30)
    shares = {"expansion": 0.3}
    table = S.revenue_forecast(incidence, mrr, shares, periods=6)
    assert len(table) == 6 * (len(S.CLASSES) - 1)
    for row in table.itertuples():
        k = S.class_code(row.outcome) - 1
        moved = [m * shares.get(row.outcome, 1.0) for m in mrr]
        p = [incidence[i, k, row.period + 1] - incidence[i, k, row.period] for i in range(30)]
        want = sum(a * b for a, b in zip(moved, p))
        sd = sum(a * a * b * (1 - b) for a, b in zip(moved, p)) ** 0.5
        assert row.expected_mrr == pytest.approx(want)
        assert row.low <= want <= row.high and row.high - row.low <= 2 * 2.6 * sd + 1e-9
        c = [incidence[i, k, row.period + 1] for i in range(30)]
        assert row.cumulative_expected_mrr == pytest.approx(sum(a * b for a, b in zip(moved, c)))
    # cumulative forecasts rise with time
    for _, part in table.groupby("outcome"):
        assert (np.diff(part["cumulative_expected_mrr"]) >= 0).all()
    with pytest.raises(Exception, match="incidence must be"):
        S.revenue_forecast(incidence[:, :, :3], mrr)


def _plain_band(amount, p, level, draws=20000, seed=123):
    """A plain simulation of every account: the central ``level`` interval of the total."""
    rng = np.random.default_rng(seed)
    totals = (rng.random((draws, len(p))) < p) @ amount
    return np.quantile(totals, [(1 - level) / 2, (1 + level) / 2])


def test_sum_band_against_a_plain_simulation_on_a_heavy_tailed_book():
    """One account carries most of the variance (as on the demo book): the band's lower end is
    well above 0, where ``mean - z sd`` is below it; it agrees with a plain simulation."""
    rng = np.random.default_rng(21)
    n = 1500
    amount = np.round(rng.lognormal(7.5, 1.2, n), 0)
    amount[0] = 340_000.0
    p = rng.uniform(0.0, 0.05, (n, 2))
    p[0] = [0.05, 0.2]
    low, high = S.sum_band(amount, p, 0.90, seed=4)
    for j in range(2):
        ref_low, ref_high = _plain_band(amount, p[:, j], 0.90)
        spread = ref_high - ref_low
        assert abs(low[j] - ref_low) < 0.05 * spread and abs(high[j] - ref_high) < 0.05 * spread
    mean, sd = amount @ p[:, 0], np.sqrt((amount ** 2) @ (p[:, 0] * (1 - p[:, 0])))
    assert mean - 1.645 * sd < 0.5 * low[0]  # the normal approximation is far too low here
    # seeded: the same input gives the same band
    again = S.sum_band(amount, p, 0.90, seed=4)
    assert np.array_equal(low, again[0]) and np.array_equal(high, again[1])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 10_000), exact=st.integers(1, 80))
def test_sum_band_is_possible_and_nested(n, seed, exact):
    """Any band lies between 0 and the sum of every amount, low <= high, and (the same draws)
    a wider level's band holds a narrower one's."""
    rng = np.random.default_rng(seed)
    amount = rng.uniform(0, 5000, n)
    p = rng.uniform(0, 1, (n, 3)) * rng.uniform(0, 1)
    narrow = S.sum_band(amount, p, 0.8, seed=seed, exact=exact, draws=2000)
    wide = S.sum_band(amount, p, 0.95, seed=seed, exact=exact, draws=2000)
    for low, high in (narrow, wide):
        assert (low >= 0).all() and (low <= high).all()
    if exact >= n:  # every account drawn: no normal part, so no total above the sum of all
        assert (wide[1] <= amount.sum() + 1e-9).all()
    assert (wide[0] <= narrow[0] + 1e-9).all() and (wide[1] >= narrow[1] - 1e-9).all()


def test_hazards_equal_the_repeated_rows_reference():
    """``SurvivalModel.hazards`` encodes each landmark row once; a plain reference repeats the
    frame's rows per period, sets the time features and encodes them all: the same numbers."""
    from churnml.models.model import FeatureEncoder

    rng = np.random.default_rng(4)
    n = 300
    frame = pd.DataFrame({"account_id": [f"A{i}" for i in range(n)],
                          "as_of": pd.Timestamp("2026-01-05"),
                          "x": rng.normal(size=n), "tenure_days": rng.integers(0, 900, n).astype(float),
                          "days_to_renewal": np.where(rng.uniform(size=n) < 0.1, np.nan,
                                                      rng.integers(-30, 400, n).astype(float)),
                          "plan": rng.choice(["a", "b", "c"], n)})
    events = pd.DataFrame({"account_id": frame["account_id"], "as_of": frame["as_of"],
                           "event": rng.integers(0, len(S.CLASSES), n),
                           "event_period": rng.integers(0, 4, n), "observed_periods": 6})
    events.loc[events["event"] == 0, "event_period"] = -1
    rows = S.person_period_rows(events, frame)
    names = ["x", "plan", *S.TIME_FEATURES]
    model = S.fit_hazard(rows, None, names, ["plan"], {"num_leaves": 4, "verbose": -1,
                                                       "num_threads": 1, "min_child_samples": 5},
                         5, 2, rounds=5)
    got = model.hazards(frame)
    index = np.repeat(np.arange(n), S.N_PERIODS)
    period = np.tile(np.arange(S.N_PERIODS), n)
    repeated = frame.iloc[index].reset_index(drop=True)
    for name, values in S.period_time_features(repeated, period).items():
        repeated[name] = values
    want = model.booster.predict(FeatureEncoder(names, model.categories, label="t").matrix(repeated))
    np.testing.assert_array_equal(got, np.asarray(want).reshape(n, S.N_PERIODS, len(S.CLASSES)))


def test_select_rounds_keeps_the_chosen_rounds_and_records_early_stopping():
    """``fit_hazard(select_rounds=...)`` is asked to choose between early stopping's rounds and the
    last trained, with a model holding them all; the kept booster has the chosen rounds, and
    ``hazards(num_iteration=)`` of the whole model equals the kept one's."""
    rng = np.random.default_rng(11)
    n = 600
    frame = pd.DataFrame({"account_id": [f"A{i}" for i in range(n)], "as_of": pd.Timestamp("2026-01-05"),
                          "x": rng.normal(size=n), "tenure_days": rng.integers(0, 900, n).astype(float),
                          "days_to_renewal": rng.integers(-30, 400, n).astype(float)})
    events = pd.DataFrame({"account_id": frame["account_id"], "as_of": frame["as_of"],
                           "event": rng.integers(0, len(S.CLASSES), n),
                           "event_period": rng.integers(0, 4, n), "observed_periods": 6})
    events.loc[events["event"] == 0, "event_period"] = -1
    rows = S.person_period_rows(events, frame)
    valid = rows["account_id"].isin(frame["account_id"][:150])
    names = ["x", *S.TIME_FEATURES]
    params = {"num_leaves": 4, "verbose": -1, "num_threads": 1, "min_child_samples": 5,
              "learning_rate": 0.3, "seed": 1, "deterministic": True}
    calls = []

    def choose(model, best, last):
        calls.append((best, last))
        whole = model.hazards(frame, num_iteration=last)
        assert whole.shape == (n, S.N_PERIODS, len(S.CLASSES))
        return last

    model = S.fit_hazard(rows[~valid], rows[valid], names, [], params, 60, 3, select_rounds=choose)
    (best, last), = calls
    assert best <= last
    assert model.info["early_stopping_iteration"] == best
    assert model.info["best_iteration"] == last == model.booster.current_iteration()
    plain = S.fit_hazard(rows[~valid], rows[valid], names, [], params, 60, 3)
    assert plain.info["best_iteration"] == plain.info["early_stopping_iteration"] == best
    np.testing.assert_allclose(model.hazards(frame, num_iteration=best), plain.hazards(frame), rtol=1e-12)
