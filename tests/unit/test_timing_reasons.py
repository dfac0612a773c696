"""Issue 14: per-outcome timing reasons of the time-to-event model
(``churnml.models.survival_explain``): TreeSHAP of class k minus "none" at the current period,
against LightGBM's raw scores, worded by the catalog, and filled by ``score_frame``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.features.catalog import load_catalog, render_reason
from churnml.models import survival as S
from churnml.models import survival_explain as E
from churnml.models.model import FeatureEncoder
from churnml.outcomes import OUTCOMES
from churnml.scoring.frame import score_frame
from churnml.scoring.schema import output_columns, time_to_event_reason_columns
from jobs_fakes import FEATURE_DIMENSIONS, FixedHealth, feature_frame, models

NAMES = ["usage_drop_50pct", "days_since_last_contact", "tenure_days", "days_to_renewal",
         "value_tier", *S.TIME_FEATURES]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "account_id": [f"A{i:04d}" for i in range(n)], "as_of": pd.Timestamp("2026-01-05"),
        "usage_drop_50pct": rng.integers(0, 2, n).astype(float),
        "days_since_last_contact": np.where(rng.uniform(size=n) < 0.1, np.nan,
                                            rng.integers(0, 120, n).astype(float)),
        "tenure_days": rng.integers(0, 900, n).astype(float),
        "days_to_renewal": np.where(rng.uniform(size=n) < 0.1, np.nan,
                                    rng.integers(-30, 400, n).astype(float)),
        "value_tier": rng.choice(["foundation", "core", "vip"], n),
        "mrr": rng.uniform(100, 5000, n),
    })


@pytest.fixture(scope="module", params=[None, ("value_tier",)], ids=["booster", "baseline"])
def model(request):
    """The hazard as a booster alone, and started from a baseline per renewal state x value
    tier (``survival.HazardBaseline``), whose part the contributions must explain too."""
    frame = _frame(400, 1)
    rng = np.random.default_rng(2)
    n = len(frame)
    # events that depend on the features, so the trees split on them
    churny = frame["usage_drop_50pct"].to_numpy() + (frame["tenure_days"].to_numpy() < 200)
    event = np.where(rng.uniform(size=n) < 0.15 + 0.3 * churny, 1,
                     rng.integers(0, len(S.CLASSES), n))
    events = pd.DataFrame({"account_id": frame["account_id"], "as_of": frame["as_of"],
                           "event": event, "event_period": rng.integers(0, 5, n),
                           "observed_periods": 6})
    events.loc[events["event"] == 0, "event_period"] = -1
    rows = S.person_period_rows(events, frame)
    return S.fit_hazard(rows, None, NAMES, ["value_tier"],
                        {"num_leaves": 6, "verbose": -1, "num_threads": 1,
                         "min_child_samples": 5, "seed": 3}, 12, 2, rounds=12,
                        baseline_by=request.param)


def _reference_matrix(model, frame):
    """Period 0 as a plain reference builds it (``SurvivalModel.hazards``' first period)."""
    first = frame.copy()
    for name, values in S.period_time_features(first, np.zeros(len(first), dtype=np.int64)).items():
        first[name] = values
    return FeatureEncoder(model.feature_names, model.categories, label="t").matrix(first)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 90), seed=st.integers(0, 10_000))
def test_contributions_plus_base_equal_the_class_minus_none_raw_score(model, n, seed):
    frame = _frame(n, seed)
    X = E.current_period_matrix(model, frame)
    np.testing.assert_array_equal(X, _reference_matrix(model, frame))
    raw = model.raw_scores(X)
    if model.baseline is None:  # the booster's own raw scores
        np.testing.assert_array_equal(raw, np.asarray(model.booster.predict(X, raw_score=True)))
    contrib = E.timing_contributions(model, X)
    assert contrib.shape == (n, len(S.CLASSES) - 1, len(model.feature_names) + 1)
    np.testing.assert_allclose(contrib.sum(axis=2), raw[:, 1:] - raw[:, :1], rtol=0, atol=1e-9)
    # the grouped reason features plus period_index plus the base value: the same sum
    explainer = E.TimingExplainer(model, load_catalog())
    period = contrib[:, :, model.feature_names.index(S.PERIOD_FEATURE)]
    np.testing.assert_allclose(explainer.grouped(contrib).sum(axis=2) + period + contrib[:, :, -1],
                               raw[:, 1:] - raw[:, :1], rtol=0, atol=1e-9)
    # the raw difference is the hazard's log-odds against "none" in the first period (no
    # class shift on this model)
    hazard = model.hazards(frame)[:, 0, :]
    np.testing.assert_allclose(np.log(hazard[:, 1:] / hazard[:, :1]), raw[:, 1:] - raw[:, :1],
                               rtol=0, atol=1e-9)


def test_reasons_are_the_strongest_grouped_contributions_in_catalog_words(model):
    frame = _frame(120, 7)
    catalog = load_catalog()
    reasons = model.timing_reasons(frame, catalog=catalog)
    assert list(reasons) == [o for o in S.CLASSES[1:]]
    explainer = E.TimingExplainer(model, catalog)
    grouped = explainer.grouped(E.timing_contributions(model, E.current_period_matrix(model, frame)))
    assert S.PERIOD_FEATURE not in explainer.groups
    assert not set(S.TIME_FEATURES) & set(explainer.groups)  # worded as catalog features
    named = 0
    for k, outcome in enumerate(S.CLASSES[1:]):
        assert len(reasons[outcome]) == len(frame)
        for i, row in enumerate(reasons[outcome]):
            assert 1 <= len(row) <= 3
            # plain reference: raising ones first, strongest first, then lowering ones
            c = grouped[i, k]
            order = sorted([g for g in range(len(c)) if c[g] > 0], key=lambda g: -c[g]) + \
                sorted([g for g in range(len(c)) if c[g] < 0], key=lambda g: c[g])
            assert [r["feature"] for r in row] == [explainer.groups[g] for g in order[:3]]
            for r in row:
                g = explainer.groups.index(r["feature"])
                assert r["contribution"] == pytest.approx(c[g], abs=1e-12)
                spec = catalog[r["feature"]]  # a real catalog feature
                raw = frame.loc[i, r["feature"]]
                value = None if pd.isna(raw) else raw
                assert r["text"] == render_reason(spec, value)
                assert "_" not in r["text"] or r["feature"] not in r["text"]
                named += 1
    assert named > len(frame)


def test_time_features_count_with_their_catalog_feature(model):
    frame = _frame(50, 9)
    explainer = E.TimingExplainer(model, load_catalog())
    contrib = E.timing_contributions(model, E.current_period_matrix(model, frame))
    grouped = explainer.grouped(contrib)
    names = model.feature_names
    for time_feature, source in S.TIME_FEATURE_SOURCES.items():
        want = contrib[:, :, names.index(time_feature)] + contrib[:, :, names.index(source)]
        np.testing.assert_allclose(grouped[:, :, explainer.groups.index(source)], want, atol=1e-12)


def test_one_account_alone_gets_the_reasons_it_gets_in_a_batch(model):
    frame = _frame(70, 11)
    batch = model.timing_reasons(frame)
    for i in (0, 33, 69):
        alone = model.timing_reasons(frame.iloc[[i]].reset_index(drop=True))
        for outcome in batch:
            one, many = alone[outcome][0], batch[outcome][i]
            assert [(r["feature"], r["value"], r["text"]) for r in one] == \
                [(r["feature"], r["value"], r["text"]) for r in many]
            np.testing.assert_allclose([r["contribution"] for r in one],
                                       [r["contribution"] for r in many], rtol=0, atol=1e-9)


def test_score_frame_fills_a_timing_reasons_column_per_outcome(model):
    frame = _frame(30, 5)
    for name, values in feature_frame(30).items():
        if name not in frame:
            frame[name] = values
    model.info["version"] = "4"
    columns = time_to_event_reason_columns()
    assert columns == [f"{o.name}_timing_reasons" for o in OUTCOMES]
    assert set(columns) <= set(output_columns(["usage"]))
    with_model = score_frame(frame, models(), FixedHealth(), feature_dimensions=FEATURE_DIMENSIONS,
                             time_to_event=model)
    without = score_frame(frame, models(), FixedHealth(), feature_dimensions=FEATURE_DIMENSIONS)
    want = model.timing_reasons(frame)
    for o in OUTCOMES:
        got = with_model[f"{o.name}_timing_reasons"].tolist()
        assert got == [[{**r, "value": None if r["value"] is None else float(r["value"])}
                        if not isinstance(r["value"], str) else {**r, "value": None}
                        for r in row] for row in want[o.name]]
        assert all(row == [] for row in without[f"{o.name}_timing_reasons"])
    records = score_frame(frame, models(), FixedHealth(), feature_dimensions=FEATURE_DIMENSIONS,
                          time_to_event=model, output="records")
    assert [r["churn_timing_reasons"] for r in records] == with_model["churn_timing_reasons"].tolist()
    json.dumps(records[0]["churn_timing_reasons"], allow_nan=False)


def _full_frame(n: int, seed: int) -> pd.DataFrame:
    frame = _frame(n, seed)
    for name, values in feature_frame(n).items():
        if name not in frame:
            frame[name] = values
    return frame


def test_predict_gives_the_local_engines_timing_reasons(model):
    """/predict's path (``Predictor.predict_records``: a JSON-ready request frame, one account
    or many) against the weekly job's (``score_frame`` on the feature frame)."""
    from churnml.api.predictor import Predictor
    from churnml.health.score import HealthScore
    from churnml.scoring.schema import response_model

    model.info["version"] = "6"
    health = HealthScore()
    frame = _full_frame(12, 3).drop(columns=["lifecycle_phase", "rfm_segment"])
    predictor = Predictor(models(), health=health, time_to_event=model)
    local = score_frame(frame, models(), health, feature_dimensions=predictor.feature_dimensions,
                        catalog=predictor.catalog, time_to_event=model)
    records = frame.to_dict("records")
    for r in records:
        r["as_of"] = r["as_of"].date()
    rows = predictor.predict_records(records)
    alone = [predictor.predict_records([r])[0] for r in records[:3]]
    row_model = response_model(list(health.dimension_names))
    for o in OUTCOMES:
        want = local[o.timing_reasons_column].tolist()
        assert any(want)
        for got_rows in (rows, alone):
            for got, expected in zip(got_rows, want):
                got_reasons = got[o.timing_reasons_column]
                assert [(r["feature"], r["value"], r["text"]) for r in got_reasons] == \
                    [(r["feature"], r["value"], r["text"]) for r in expected]
                np.testing.assert_allclose([r["contribution"] for r in got_reasons],
                                           [r["contribution"] for r in expected], rtol=0, atol=1e-9)
    row_model(**rows[0])  # the response model (from the one schema) accepts the row


def test_pyfunc_output_carries_the_reasons_as_json(model):
    frame = _frame(15, 4)
    out = E.pyfunc_output(model, frame)
    want = model.timing_reasons(frame)
    pd.testing.assert_frame_equal(out[[c for c in out.columns if not c.endswith("_timing_reasons")]],
                                  model.predict(frame))
    for o in OUTCOMES:
        assert [json.loads(v) for v in out[o.timing_reasons_column]] == want[o.name]
