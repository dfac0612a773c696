"""Issue 14: the time-to-event hazard's baseline per renewal stratum (``survival.HazardBaseline``):
its rates against a plain count, its use in training and every prediction, its Shapley split
against a brute-force reference, saving, and the config keys."""

from __future__ import annotations

from itertools import permutations
from math import factorial

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.errors import ConfigError
from churnml.models import survival as S
from churnml.models import survival_explain as E
from churnml.models import survival_train as ST

NAMES = ["usage", "contract_type", "plan", *S.TIME_FEATURES]
CATEGORIES = {"contract_type": ["annual", "monthly"], "plan": ["basic", "pro", "team"]}


def _matrix(rng: np.random.Generator, n: int) -> np.ndarray:
    """Encoded rows as ``FeatureEncoder`` makes them: category codes, NaN for missing."""
    X = np.full((n, len(NAMES)), np.nan)
    X[:, 0] = rng.normal(size=n)
    X[:, 1] = np.where(rng.uniform(size=n) < 0.1, np.nan, rng.integers(0, 2, n))
    X[:, 2] = np.where(rng.uniform(size=n) < 0.1, np.nan, rng.integers(0, 3, n))
    X[:, NAMES.index(S.PERIOD_FEATURE)] = rng.integers(0, 12, n)
    X[:, NAMES.index(S.TENURE_FEATURE)] = rng.integers(0, 900, n)
    X[:, NAMES.index(S.RENEWAL_FEATURE)] = np.where(rng.uniform(size=n) < 0.1, np.nan,
                                                    rng.integers(-200, 400, n).astype(float))
    return X


def _reference_state(ttr: float) -> str:
    if np.isnan(ttr):
        return "unknown"
    return "passed" if ttr < 0 else "due" if ttr < S.PERIOD_DAYS else "later"


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 400), prior=st.sampled_from([0.0, 5.0, 20.0]))
def test_rates_are_the_strata_shares_shrunk_towards_the_overall_ones(seed, n, prior):
    rng = np.random.default_rng(seed)
    X = _matrix(rng, n)
    label = rng.integers(0, len(S.CLASSES), n)
    base = S.fit_hazard_baseline(X, label, NAMES, CATEGORIES, ["contract_type", "plan", "not_a_feature"], prior)
    assert base.by == ("contract_type", "plan")  # a feature the model lacks is left out
    overall = np.array([(label == k).mean() for k in range(len(S.CLASSES))])
    offsets = base.offsets(X, NAMES)
    def key(j: int) -> tuple:
        return (_reference_state(X[j, NAMES.index(S.RENEWAL_FEATURE)]),
                *("missing" if np.isnan(X[j, c]) else X[j, c] for c in (1, 2)))

    for i in range(min(n, 40)):  # plain reference: count the row's stratum one row at a time
        same = [j for j in range(n) if key(j) == key(i)]
        counts = np.array([sum(label[j] == k for j in same) for k in range(len(S.CLASSES))])
        expected = (counts + prior * overall) / (len(same) + prior)
        np.testing.assert_allclose(np.exp(offsets[i]), np.clip(expected, 1e-12, None), rtol=1e-12, atol=0)


def test_an_unseen_or_missing_category_and_an_unknown_renewal_have_their_own_stratum():
    rng = np.random.default_rng(0)
    X = _matrix(rng, 300)
    base = S.fit_hazard_baseline(X, rng.integers(0, 4, 300), NAMES, CATEGORIES, ["contract_type"])
    assert base.levels == (("annual", "monthly", S.MISSING_LEVEL),)
    row = X[:2].copy()
    row[:, 1] = [np.nan, 7.0]  # missing; a code beyond the categories is clipped to missing too
    coords = base.coordinates(row, NAMES)
    assert coords[1].tolist() == [2, 2]
    row[:, NAMES.index(S.RENEWAL_FEATURE)] = [np.nan, 29.0]
    assert [S.RENEWAL_STATES[i] for i in base.coordinates(row, NAMES)[0]] == ["unknown", "due"]
    # a stratum no training row was in, even without a prior: the overall shares
    b0 = S.fit_hazard_baseline(X[:5], np.array([0, 1, 2, 3, 0]), NAMES, CATEGORIES, ["contract_type", "plan"], 0.0)
    assert np.isfinite(b0.log_rates).all()
    empty = np.ones(b0.log_rates.shape[:-1], bool)
    empty[tuple(b0.coordinates(X[:5], NAMES))] = False
    np.testing.assert_allclose(np.exp(b0.log_rates[empty]), np.broadcast_to([0.4, 0.2, 0.2, 0.2], (int(empty.sum()), 4)))
    # a model without the renewal feature: every row "unknown"
    names = [n for n in NAMES if n != S.RENEWAL_FEATURE]
    X2 = np.delete(X, NAMES.index(S.RENEWAL_FEATURE), axis=1)
    b2 = S.fit_hazard_baseline(X2, rng.integers(0, 4, 300), names, CATEGORIES, ["contract_type"])
    assert set(b2.coordinates(X2, names)[0].tolist()) == {0}


def _brute_force_shapley(base: S.HazardBaseline, coords: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values by averaging over every order of the axes, each coalition's value the
    mean of ``d`` over the product of the other axes' shares, summed cell by cell."""
    d = base.log_rates[..., 1:] - base.log_rates[..., :1]
    axes = d.ndim - 1
    shape = d.shape[:-1]

    def value(subset: frozenset) -> np.ndarray:
        total = np.zeros(d.shape[-1])
        for cell in np.ndindex(*shape):
            if any(cell[a] != coords[a] for a in subset):
                continue
            w = 1.0
            for a in range(axes):
                if a not in subset:
                    w *= base.shares[a][cell[a]]
            total += w * d[cell]
        return total

    phi = np.zeros((d.shape[-1], axes))
    for order in permutations(range(axes)):
        seen: frozenset = frozenset()
        for a in order:
            phi[:, a] += value(seen | {a}) - value(seen)
            seen = seen | {a}
    return phi / factorial(axes), value(frozenset())


def test_shapley_split_matches_a_brute_force_reference_and_adds_up():
    rng = np.random.default_rng(3)
    X = _matrix(rng, 500)
    label = np.where(X[:, NAMES.index(S.RENEWAL_FEATURE)] < 30, rng.integers(0, 4, 500), rng.integers(0, 2, 500))
    base = S.fit_hazard_baseline(X, label, NAMES, CATEGORIES, ["contract_type", "plan"], 5.0)
    phi, reference = base.contributions(X[:25], NAMES)
    assert phi.shape == (25, len(S.CLASSES) - 1, 3)
    coords = base.coordinates(X[:25], NAMES)
    offsets = base.offsets(X[:25], NAMES)
    np.testing.assert_allclose(phi.sum(axis=2) + reference, offsets[:, 1:] - offsets[:, :1], atol=1e-12)
    for i in range(25):
        expected, ref = _brute_force_shapley(base, tuple(int(c[i]) for c in coords))
        np.testing.assert_allclose(phi[i], expected, atol=1e-12)
        np.testing.assert_allclose(reference, ref, atol=1e-12)


def _events_and_features(n: int, seed: int):
    """Landmark features and first events where churn happens mostly in the renewal period of
    an annual contract (as in the simulator), so the baseline's strata matter."""
    rng = np.random.default_rng(seed)
    annual = rng.uniform(size=n) < 0.5
    dtr = np.where(annual, rng.integers(0, 365, n), rng.integers(0, 30, n)).astype(float)
    frame = pd.DataFrame({"account_id": [f"A{i:05d}" for i in range(n)], "as_of": pd.Timestamp("2026-01-05"),
                          "usage": rng.normal(size=n), "contract_type": np.where(annual, "annual", "monthly"),
                          "tenure_days": rng.integers(30, 900, n).astype(float), "days_to_renewal": dtr})
    renewal_period = np.where(annual, (dtr // S.PERIOD_DAYS).astype(int), 0)
    churn_at_renewal = annual & (rng.uniform(size=n) < 0.3) & (renewal_period < 6)
    event = np.where(churn_at_renewal, 1, 0)
    period = np.where(churn_at_renewal, renewal_period, -1)
    other = (event == 0) & (rng.uniform(size=n) < 0.1)
    event = np.where(other, rng.integers(1, len(S.CLASSES), n), event)
    period = np.where(other, rng.integers(0, 6, n), period)
    events = pd.DataFrame({"account_id": frame["account_id"], "as_of": frame["as_of"], "event": event,
                           "event_period": period, "observed_periods": 6})
    return events, frame


PARAMS = {"num_leaves": 6, "verbose": -1, "num_threads": 1, "min_child_samples": 20, "seed": 3}


@pytest.fixture(scope="module")
def fitted():
    events, frame = _events_and_features(1500, 5)
    rows = S.person_period_rows(events, frame)
    names = ["usage", "contract_type", *S.TIME_FEATURES]
    # a nearly inert booster: what the model predicts is its starting point
    inert = {**PARAMS, "learning_rate": 1e-9}
    with_base = S.fit_hazard(rows, None, names, ["contract_type"], inert, 3, 1, rounds=3,
                             baseline_by=["contract_type"])
    without = S.fit_hazard(rows, None, names, ["contract_type"], inert, 3, 1, rounds=3)
    return rows, frame, with_base, without


def test_the_booster_starts_from_the_baseline_in_training_and_in_every_prediction(fitted):
    rows, frame, with_base, without = fitted
    assert with_base.info["baseline_by"] == ["contract_type"] and "baseline_by" not in without.info
    X = with_base.encoder.matrix(rows)
    hazards = with_base.period_hazards(X, rows["period"].to_numpy())
    base = with_base.hazard_baseline
    np.testing.assert_allclose(hazards, np.exp(base.offsets(X, with_base.feature_names)), atol=1e-6)
    # the renewal period of an annual contract: its churn share, not the overall one
    annual_due = ((rows["contract_type"] == "annual") & (rows[S.RENEWAL_FEATURE] >= 0)
                  & (rows[S.RENEWAL_FEATURE] < S.PERIOD_DAYS)).to_numpy()
    observed = (rows["label"].to_numpy()[annual_due] == 1).mean()
    assert abs(hazards[annual_due, 1].mean() - observed) < 0.02
    flat = without.period_hazards(without.encoder.matrix(rows), rows["period"].to_numpy())
    assert abs(flat[annual_due, 1].mean() - (rows["label"] == 1).mean()) < 0.01  # one rate for all
    assert observed > 3 * (rows["label"] == 1).mean()
    # the incidences still sum with survival to 1 and rise with time
    survival, incidence = with_base.curves(frame)
    np.testing.assert_allclose(survival + incidence.sum(axis=1), 1.0, atol=1e-12)
    assert (np.diff(incidence, axis=2) >= -1e-15).all()


def test_a_saved_model_keeps_its_baseline_and_its_predictions(fitted, tmp_path):
    rows, frame, with_base, _ = fitted
    loaded = S.SurvivalModel.load(with_base.save(tmp_path / "m"))
    assert loaded.baseline == with_base.baseline
    pd.testing.assert_frame_equal(loaded.predict(frame), with_base.predict(frame))
    X = E.current_period_matrix(loaded, frame)
    np.testing.assert_array_equal(E.timing_contributions(loaded, X), E.timing_contributions(with_base, X))


def test_a_model_saved_before_the_baseline_loads_without_one(fitted, tmp_path):
    import json

    _, frame, _, without = fitted
    folder = without.save(tmp_path / "old")
    meta = json.loads((folder / "survival_model.json").read_text())
    meta.pop("baseline")
    (folder / "survival_model.json").write_text(json.dumps(meta))
    loaded = S.SurvivalModel.load(folder)
    assert loaded.baseline is None
    pd.testing.assert_frame_equal(loaded.predict(frame), without.predict(frame))


def test_the_renewal_stratum_is_a_timing_reason(fitted):
    """An annual account whose renewal is due gets its churn reason from the renewal date,
    although the inert booster itself never split on it."""
    _, frame, with_base, _ = fitted
    due = frame[(frame["contract_type"] == "annual") & (frame["days_to_renewal"] < S.PERIOD_DAYS)].head(5)
    reasons = with_base.timing_reasons(due)["churn"]
    assert all(r[0]["feature"] == "days_to_renewal" and r[0]["contribution"] > 0 for r in reasons)


def _config(tmp_path, text: str):
    """The shipped config with its ``baseline`` section replaced by ``text``."""
    import yaml

    from churnml.config import models_dir

    raw = yaml.safe_load((models_dir() / "time_to_event.yaml").read_text())
    raw["baseline"] = yaml.safe_load(text)["baseline"]
    path = tmp_path / "time_to_event.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_config_keys(tmp_path):
    shipped = ST.load_survival_config()  # off: it failed its pre-registered tests (docs/models.md)
    assert shipped.baseline_by is None and shipped.baseline_prior_rows == 20.0
    assert ST.SurvivalConfig().baseline_by is None
    on = ST.load_survival_config(_config(tmp_path, "baseline:\n  enabled: true\n"))
    assert on.baseline_by == ST.DEFAULT_BASELINE_BY == ("contract_type",)
    two = ST.load_survival_config(_config(tmp_path, "baseline:\n  enabled: true\n  by: [contract_type, plan]\n"
                                                    "  prior_rows: 5\n"))
    assert two.baseline_by == ("contract_type", "plan") and two.baseline_prior_rows == 5.0
    with pytest.raises(ConfigError, match="baseline.by"):
        ST.load_survival_config(_config(tmp_path, "baseline:\n  by: contract_type\n"))
    with pytest.raises(ConfigError, match="baseline.prior_rows"):
        ST.load_survival_config(_config(tmp_path, "baseline:\n  prior_rows: -1\n"))
