"""score_frame: the per-account output contract of DESIGN.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.errors import UsageError
from churnml.scoring.actions import load_playbooks
from churnml.scoring.frame import SCHEMA_VERSION, output_columns, score_frame
from jobs_fakes import FEATURE_DIMENSIONS, FixedHealth, feature_frame, models


@pytest.fixture(scope="module")
def playbooks():
    return load_playbooks()


def _score(features, playbooks, previous=None, model_map=None):
    return score_frame(features, models() if model_map is None else model_map, FixedHealth(),
                       previous=previous, playbooks=playbooks,
                       feature_dimensions=FEATURE_DIMENSIONS)


def test_columns_order_and_types(playbooks):
    features = feature_frame()
    out = _score(features, playbooks)
    assert list(out.columns) == output_columns(["usage", "engagement"])
    assert len(out) == len(features)
    assert out["account_id"].tolist() == features["account_id"].tolist()
    assert (out["schema_version"] == SCHEMA_VERSION).all()
    assert out["churn_model_version"].eq("4").all() and out["expansion_model_version"].eq("2").all()
    assert out["contraction_model_version"].isna().all()  # no contraction model given
    assert out["health_weights_version"].eq("v7").all()
    assert out["churn_probability"].between(0, 1).all()
    for reasons in out["churn_reasons"]:
        assert 1 <= len(reasons) <= 3
        assert set(reasons[0]) == {"feature", "value", "contribution", "text"}
    assert all(isinstance(a, list) for a in out["alerts"])
    assert set(out["expansion_readiness"]) <= {"ready_now", "ready_soon", "needs_nurture",
                                               "not_ready"}


def test_revenue_columns(playbooks):
    out = _score(feature_frame(), playbooks)
    np.testing.assert_allclose(out["mrr_at_risk"], out["churn_probability"] * out["mrr"])
    np.testing.assert_allclose(
        out["expected_expansion_mrr"],
        out["expansion_probability"] * out["mrr"] * playbooks.typical_share["expansion"],
    )
    # no contraction model: unknown probability, unknown revenue at risk of contraction
    assert out["contraction_probability"].isna().all()
    assert out["mrr_at_risk_of_contraction"].isna().all()


def test_same_account_scores_the_same_alone_or_in_a_batch(playbooks):
    features = feature_frame(8)
    batch = _score(features, playbooks)
    for i in (0, 5):
        alone = _score(features.iloc[[i]], playbooks)
        pd.testing.assert_frame_equal(alone.reset_index(drop=True),
                                      batch.iloc[[i]].reset_index(drop=True))


def test_probabilities_and_reasons_come_from_the_models(playbooks):
    features = feature_frame()
    churn = models()["churn"]
    out = _score(features, playbooks)
    np.testing.assert_array_equal(out["churn_probability"], churn.predict_proba(features))
    first = churn.explain(features)[1][0]
    assert out["churn_reasons"][1][0]["feature"] == first["feature"]
    assert out["churn_reasons"][1][0]["contribution"] == pytest.approx(first["contribution"])


def test_alerts_use_previous_week(playbooks):
    """The real alerts, on the health configuration the health scorer gives (its points)."""
    features = feature_frame()
    previous = pd.DataFrame({"account_id": features["account_id"],
                             "as_of": features["as_of"] - pd.Timedelta(days=7),
                             "health_score": 100.0, "health_tier": "thriving"})
    out = _score(features, playbooks, previous=previous)
    points = FixedHealth().config.alerts["weekly_drop_points"]
    dropped = (100 - out["health_score"]) >= points
    assert dropped.any() and not dropped.all()
    assert [("weekly_drop" in a) for a in out["alerts"]] == dropped.tolist()
    first_week = _score(features, playbooks)
    assert not any("weekly_drop" in a for a in first_week["alerts"])


def test_missing_optional_columns_give_nulls_not_errors(playbooks):
    features = feature_frame().drop(columns=["value_tier", "rfm_segment", "mrr"])
    out = _score(features, playbooks)
    assert out["value_tier"].isna().all() and out["rfm_segment"].isna().all()
    assert (out["mrr_at_risk"] == 0).all()


def test_empty_frame(playbooks):
    out = _score(feature_frame().iloc[:0], playbooks)
    assert len(out) == 0
    assert "churn_probability" in out.columns


def test_with_the_real_health_score_and_alerts(playbooks):
    from churnml.health.score import HealthScore

    features = feature_frame()
    health = HealthScore()
    out = score_frame(features, models(), health, playbooks=playbooks,
                      feature_dimensions=FEATURE_DIMENSIONS)
    assert list(out.columns) == output_columns(health.dimension_names)
    assert out["health_score"].between(0, 100).all()
    assert out["health_weights_version"].eq(health.version).all()
    # silent accounts (days_since_last_contact >= 21) get the state alert in week one
    silent = features["days_since_last_contact"] >= 21
    assert [("no_recent_contact" in a) for a in out["alerts"]] == silent.tolist()
    # a week later, with this week as "previous", a 20-point fall raises the weekly drop alert
    later = features.assign(as_of=pd.Timestamp("2026-03-09"))
    previous = out[["account_id", "as_of", "health_score", "health_tier"]].copy()
    previous["health_score"] = out["health_score"] + 20
    previous["health_tier"] = "thriving"
    again = score_frame(later, models(), health, previous=previous,
                        playbooks=playbooks, feature_dimensions=FEATURE_DIMENSIONS)
    assert all("weekly_drop" in a for a in again["alerts"])


@pytest.fixture(scope="module")
def real_model():
    """A small real TargetModel (LightGBM, a categorical feature, missing values)."""
    from test_models_model import synthetic_book

    from churnml.features.catalog import load_catalog
    from churnml.models.config import ModelConfig
    from churnml.models.dataset import assemble, time_split
    from churnml.models.train import fit_model

    features, grid = synthetic_book(n_accounts=120, n_weeks=40)
    config = ModelConfig(target="churn", horizon_days=28, num_boost_round=30, backtest_folds=1,
                         lgb_params={"objective": "binary", "learning_rate": 0.1,
                                     "num_leaves": 15, "max_depth": 5, "min_child_samples": 20,
                                     "seed": 3, "deterministic": True, "num_threads": 1,
                                     "verbose": -1})
    split = time_split(sorted(features["as_of"].unique()), config)
    model, _ = fit_model(assemble(features, grid, config, split), config, load_catalog())
    model.version = "7"
    return model, features


def _assert_rows_equal(alone: pd.DataFrame, row: pd.DataFrame) -> None:
    alone, row = alone.reset_index(drop=True), row.reset_index(drop=True)
    assert list(alone.columns) == list(row.columns)
    for column in alone.columns:
        a, b = alone[column], row[column]
        if pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=1e-12,
                                       err_msg=column)
        else:  # a missing text is None alone and NaN in a str column of a batch: both null
            def norm(values):
                return [None if not isinstance(v, (list, dict, str)) and pd.isna(v) else v
                        for v in values]
            assert norm(a.tolist()) == norm(b.tolist()), column


def test_one_account_alone_equals_its_row_of_a_batch_with_real_models(playbooks, real_model):
    """The small-frame path (dict look-ups, one thread, no per-column Series) gives the
    numbers of the large-frame path to 1e-12, reasons, alerts and actions included."""
    from churnml.health.score import HealthScore

    model, features = real_model
    dates = sorted(features["as_of"].unique())
    week = features[features["as_of"] == dates[-1]].reset_index(drop=True)
    week["value_tier"] = pd.Series(np.where(np.arange(len(week)) % 3 == 0, "strategic", "core"),
                                   dtype="str")
    week.loc[5, "value_tier"] = np.nan
    week.loc[2, "plan"] = "not-a-plan"  # unseen category: missing to the model, shown as sent
    week["days_since_last_contact"] = np.arange(len(week), dtype=float) % 40
    assert len(week) > 64  # the batch takes the large-frame path
    health = HealthScore()
    both = {"churn": model, "expansion": model}
    batch = score_frame(week, both, health, playbooks=playbooks)
    prior = batch[["account_id", "as_of", "health_score", "health_tier"]].assign(
        as_of=dates[-2], health_score=batch["health_score"] + 16)
    batch_prev = score_frame(week, both, health, previous=prior, history=prior,
                             playbooks=playbooks)
    assert any("weekly_drop" in a for a in batch_prev["alerts"])
    for i in (0, 2, 5, len(week) - 1):
        _assert_rows_equal(score_frame(week.iloc[[i]], both, health,
                                       playbooks=playbooks), batch.iloc[[i]])
        _assert_rows_equal(score_frame(week.iloc[[i]], both, health, previous=prior,
                                       history=prior, playbooks=playbooks),
                           batch_prev.iloc[[i]])
    # the unseen plan is shown as sent when it is a reason
    shown = [r["text"] for r in batch["churn_reasons"][2] if r["feature"] == "plan"]
    assert all("not-a-plan" in t for t in shown)


def test_only_a_churn_model_leaves_the_other_outcomes_null(playbooks):
    """An outcome without a model: NaN probability and revenue, [] reasons, None version; the
    rest (churn, health, alerts, actions with a reason, schema) as with every model."""
    from churnml.scoring.schema import arrow_schema

    features = feature_frame()
    out = _score(features, playbooks, model_map={"churn": models()["churn"]})
    full = _score(features, playbooks)
    assert list(out.columns) == list(full.columns)
    arrow_schema(["usage", "engagement"], columns=list(out.columns))  # all declared
    for name in ("expansion", "contraction"):
        assert out[f"{name}_probability"].isna().all()
        assert out[f"{name}_model_version"].isna().all()
        assert out[f"{name}_reasons"].map(len).eq(0).all()
    assert out["expected_expansion_mrr"].isna().all()
    assert out["mrr_at_risk_of_contraction"].isna().all()
    pd.testing.assert_series_equal(out["churn_probability"], full["churn_probability"])
    pd.testing.assert_series_equal(out["mrr_at_risk"], full["mrr_at_risk"])
    assert out["churn_model_version"].eq("4").all()
    assert set(out["expansion_readiness"]) == {"not_ready"}  # unknown is never ready
    assert all(a["reason"] for a in out["next_best_action"])
    assert [a["severity"] for a in out["next_best_action"]] == \
        [a["severity"] for a in full["next_best_action"]]


def test_no_model_at_all_and_unknown_outcome(playbooks):
    out = _score(feature_frame(), playbooks, model_map={})
    assert out["churn_probability"].isna().all()
    assert all(a["reason"] for a in out["next_best_action"])
    with pytest.raises(UsageError, match="upsell"):
        _score(feature_frame(), playbooks, model_map={"upsell": models()["churn"]})


class _ReasonsOnMissingFeatures:
    """An OutcomeModel whose strongest reasons name a feature absent from the frame and one
    that is null for some accounts, then a known one."""

    version = "9"

    def predict_with_reasons(self, features, top_k=3):
        n = len(features)
        reasons = [[
            {"feature": "competitor_mentions_90d", "value": None, "contribution": 0.9,
             "text": "competitor mentions: no data"},
            {"feature": "nps_latest", "value": features["nps_latest"].iloc[i],
             "contribution": 0.7, "text": "nps"},
            {"feature": "days_since_last_contact",
             "value": features["days_since_last_contact"].iloc[i], "contribution": 0.5,
             "text": "days since contact"},
        ] for i in range(n)]
        return np.full(n, 0.4), reasons


def test_every_action_has_a_reason_and_none_comes_from_an_absent_feature(playbooks):
    """A churn reason on a feature absent from the frame (competitor mentions) or null for the
    account (nps) never picks the playbook; every action has a non-empty reason."""
    features = feature_frame(12)
    assert "competitor_mentions_90d" not in features.columns
    features.loc[::2, "nps_latest"] = np.nan
    out = _score(features, playbooks, model_map={"churn": _ReasonsOnMissingFeatures()})
    for i, action in enumerate(out["next_best_action"]):
        assert action["reason"]
        assert action["severity"] == "high"  # churn probability 40%, no critical signal
        want = "days_since_last_contact" if i % 2 == 0 else "nps_latest"
        assert action["reason_feature"] == want, (i, action)
        assert action["playbook"] == playbooks.signals[want]


def test_one_row_gets_its_expected_value_but_no_place_in_a_queue(playbooks):
    """score_frame (a chunk, a shard, a /predict request) fills what one row gives; the queue,
    book-wide, is the weekly job's (churnml.scoring.queue.assign_queue)."""
    features = feature_frame(12)
    out = _score(features, playbooks)
    records = score_frame(features, models(), FixedHealth(), playbooks=playbooks,
                          feature_dimensions=FEATURE_DIMENSIONS, output="records")
    plays = [a["playbook"] for a in out["next_best_action"]]
    action = np.array([p != playbooks.no_action_playbook for p in plays])
    assert action.any()
    assert out.loc[action, "expected_value"].notna().all()
    assert out.loc[action, "queue_reason"].str.startswith("expected to").all()
    assert out.loc[~action, ["expected_value", "queue_reason"]].isna().all().all()
    for column in ("queue_status", "queue_rank", "holdout"):
        assert out[column].isna().all() and all(r[column] is None for r in records)
    assert out["policy_version"].eq(playbooks.policy_version).all()
    assert [r["queue_reason"] for r in records] == \
        [None if pd.isna(v) else v for v in out["queue_reason"]]
