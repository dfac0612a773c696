"""Playbooks, expansion gating and readiness (features/playbooks.yaml, DOMAIN.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.errors import ConfigError
from churnml.scoring.actions import (
    expansion_gates,
    expansion_readiness,
    load_playbooks,
    next_best_actions,
    parse_playbooks,
    readiness_points,
)


@pytest.fixture(scope="module")
def pb():
    return load_playbooks()


def _healthy(**overrides):
    row = {"health_score": 85.0, "nps_latest": 9.0, "tenure_days": 400.0,
           "overdue_invoices": 0.0, "escalations_90d": 0.0, "value_tier": "core"}
    row.update(overrides)
    return row


@pytest.mark.parametrize(
    "overrides, gate",
    [
        ({"health_score": 74.9}, "health_below_expansion_bar"),
        ({"nps_latest": 6.0}, "nps_not_promoter"),
        ({"tenure_days": 59.0}, "still_onboarding"),
        ({"overdue_invoices": 1.0}, "overdue_invoices"),
        ({"escalations_90d": 1.0}, "open_escalation"),
    ],
)
def test_each_gating_rule_blocks_expansion(pb, overrides, gate):
    frame = pd.DataFrame([_healthy(), _healthy(**overrides)])
    gates = expansion_gates(frame, pb)
    assert not gates.iloc[0].any()
    assert gates.iloc[1].tolist() == [name == gate for name in gates.columns]
    readiness = expansion_readiness([0.9, 0.9], gates.any(axis=1), pb)
    assert readiness.tolist() == ["ready_now", "needs_nurture"]


def test_gate_boundaries(pb):
    frame = pd.DataFrame([_healthy(health_score=75.0, nps_latest=7.0, tenure_days=60.0)])
    assert not expansion_gates(frame, pb).iloc[0].any()


def test_missing_data_does_not_gate(pb):
    frame = pd.DataFrame([_healthy(nps_latest=np.nan)]).drop(columns=["escalations_90d"])
    gates = expansion_gates(frame, pb)
    assert not gates.iloc[0].any()


def test_readiness_bands(pb):
    p = np.array([0.0, 0.05, 0.08, 0.12, 0.15, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(readiness_points(p, pb)[[0, 2, 4, 5, 7]], [0, 40, 60, 80, 100])
    assert expansion_readiness(p, np.zeros(len(p), bool), pb).tolist() == [
        "not_ready", "not_ready", "needs_nurture", "needs_nurture", "ready_soon", "ready_now",
        "ready_now", "ready_now"]
    # a gated account that would not be ready stays not_ready
    assert expansion_readiness([0.01], [True], pb).tolist() == ["not_ready"]


def _act(pb, rows, p, reasons, readiness=None, week_before=None, contraction_p=None):
    frame = pd.DataFrame(rows)
    frame.insert(0, "account_id", [f"A{i}" for i in range(len(frame))])
    gates = expansion_gates(frame, pb)
    readiness = readiness if readiness is not None else ["not_ready"] * len(frame)
    dims = {"logins_30d_vs_baseline": "usage", "goals_achieved_180d": "outcome"}
    probability = {"churn": np.asarray(p, dtype=float)}
    if contraction_p is not None:
        probability["contraction"] = np.asarray(contraction_p, dtype=float)
    actions = next_best_actions(frame, probability, {"churn": reasons},
                                np.array(readiness, dtype=object), gates, pb, dims,
                                week_before=week_before)
    assert all(a["reason"] for a in actions)  # every action says why, whatever the branch
    return actions


def test_main_reason_picks_playbook_through_dimension(pb):
    reasons = [[{"feature": "logins_30d_vs_baseline", "value": 0.3, "contribution": 0.8,
                 "text": "logins are 30% of usual"}]]
    # the reason's feature is known for the account (a reason on a missing one is never used)
    (action,) = _act(pb, [_healthy(health_score=60.0, logins_30d_vs_baseline=0.3)], [0.35],
                     reasons)
    assert action["playbook"] == "low_usage"
    assert action["severity"] == "high"
    assert action["respond_within"] == pb.response_times["high"]
    assert action["reason_feature"] == "logins_30d_vs_baseline"
    assert action["expansion_blocked_by"] == ["health_below_expansion_bar"]


def test_signal_mapping_beats_dimension_and_negative_reasons_are_skipped(pb):
    reasons = [[{"feature": "goals_achieved_180d", "value": 3, "contribution": -0.5, "text": ""},
                {"feature": "competitor_mentions_90d", "value": 2, "contribution": 0.4,
                 "text": "competitor mentioned twice"},
                {"feature": "logins_30d_vs_baseline", "value": 0.3, "contribution": 0.2,
                 "text": ""}]]
    row = _healthy(goals_achieved_180d=3.0, competitor_mentions_90d=2.0,
                   logins_30d_vs_baseline=0.3)
    (action,) = _act(pb, [row], [0.2], reasons)
    assert action["playbook"] == "competitor" and action["severity"] == "medium"
    assert action["reason"] == "competitor mentioned twice"


def test_critical_signal_overrides_model_reason(pb):
    reasons = [[{"feature": "logins_30d_vs_baseline", "value": 0.3, "contribution": 0.8,
                 "text": ""}]]
    (action,) = _act(pb, [_healthy(champion_left_180d=1.0)], [0.05], reasons)
    assert action["playbook"] == "champion_left"
    assert action["severity"] == "critical"
    assert action["respond_within"] == "within 48 hours"


def test_critical_signal_counts_in_the_week_it_appears(pb):
    reasons = [[{"feature": "logins_30d_vs_baseline", "value": 0.3, "contribution": 0.8,
                 "text": ""}]] * 3
    rows = [_healthy(cancellation_inquiries_90d=1.0, logins_30d_vs_baseline=0.3)] * 3
    # A0: same count a week before (old news); A1: rose from 0; A2: not in the book then
    before = pd.DataFrame({"account_id": ["A0", "A1"], "cancellation_inquiries_90d": [1.0, 0.0]})
    old, new, unknown = _act(pb, rows, [0.35] * 3, reasons, week_before=before)
    assert old["severity"] == "high" and old["playbook"] == "low_usage"
    assert new["severity"] == "critical" and new["playbook"] == "save_call"
    assert unknown["severity"] == "critical"


def test_large_account_payment_recovery_goes_to_account_manager(pb):
    reasons = [[{"feature": "overdue_invoices", "value": 2, "contribution": 0.9, "text": ""}]]
    small, large = _act(pb, [_healthy(overdue_invoices=2.0), _healthy(overdue_invoices=2.0,
                                                                         value_tier="vip")],
                        [0.4, 0.4], reasons * 2)
    assert small["playbook"] == large["playbook"] == "payment_recovery"
    assert small["owner"] == "Billing" and large["owner"] == "Account manager"


def test_low_risk_accounts_get_expansion_or_keep_warm(pb):
    reasons = [[], []]
    ready, other = _act(pb, [_healthy(), _healthy()], [0.02, 0.02], reasons,
                        readiness=["ready_now", "needs_nurture"])
    assert ready["playbook"] == "expansion_conversation" and ready["severity"] == "low"
    assert other["playbook"] == "keep_warm"


def test_bad_config_names_every_problem(pb):
    raw = dict(pb.raw)
    raw["signals"] = {"nps_latest": "no_such_playbook"}
    raw["typical_share"] = {"expansion": "a lot", "upsell": 0.1}
    raw["low_risk_playbooks"] = {"expansion_ready": "expansion_conversation"}
    with pytest.raises(ConfigError) as err:
        parse_playbooks(raw)
    text = str(err.value)
    assert "no_such_playbook" in text and "typical_share.expansion" in text and "upsell" in text
    assert "low_risk_playbooks" in text


def test_playbooks_declare_gates_low_risk_plays_and_shares(pb):
    assert [g.name for g in pb.gates] == ["health_below_expansion_bar", "nps_not_promoter",
                                          "still_onboarding", "overdue_invoices",
                                          "open_escalation"]
    assert pb.low_risk_playbooks == {"expansion_ready": "expansion_conversation",
                                     "contraction_risk": "right_size", "otherwise": "keep_warm"}
    assert pb.typical_share == {"expansion": 0.2, "contraction": 0.25}


def test_low_risk_account_likely_to_contract_gets_the_right_size_play(pb):
    bar = pb.risk["high_contraction_probability"]
    likely, unlikely, unknown = _act(pb, [_healthy()] * 3, [0.02] * 3, [[], [], []],
                                     contraction_p=[bar, bar - 0.01, np.nan])
    assert likely["playbook"] == "right_size" and likely["severity"] == "low"
    assert "contraction probability" in likely["reason"]
    assert unlikely["playbook"] == unknown["playbook"] == "keep_warm"


def test_a_reason_on_a_missing_feature_never_picks_the_playbook(pb):
    """The strongest churn reason names a feature the account has no value for: it is not
    used; the next known reason is."""
    reasons = [[{"feature": "competitor_mentions_90d", "value": None, "contribution": 0.9,
                 "text": "competitor mentions: no data"},
                {"feature": "logins_30d_vs_baseline", "value": 0.3, "contribution": 0.5,
                 "text": "logins are 30% of usual"}]]
    # null for the account, then the column absent altogether
    for row in (_healthy(competitor_mentions_90d=np.nan, logins_30d_vs_baseline=0.3),
                _healthy(logins_30d_vs_baseline=0.3)):
        (action,) = _act(pb, [row], [0.35], reasons)
        assert action["playbook"] == "low_usage"
        assert action["reason_feature"] == "logins_30d_vs_baseline"
        assert action["reason"] == "logins are 30% of usual"


def test_no_critical_action_on_an_absent_or_null_signal(pb):
    """A critical signal whose feature is absent (or null) for the account fires nothing, and
    the risk play falls back to a sentence about the account's own numbers."""
    reasons = [[{"feature": "champion_left_180d", "value": None, "contribution": 0.8,
                 "text": "champion left: no data"}]]
    for row in (_healthy(health_score=60.0, champion_left_180d=np.nan),
                _healthy(health_score=60.0)):
        (action,) = _act(pb, [row], [0.35], reasons)
        assert action["severity"] == "high"  # from the probability, not a critical signal
        assert action["playbook"] == pb.default_risk and action["reason_feature"] == ""
        assert action["reason"].startswith("high risk: churn probability 35%")
    # no model reasons at all, no health score: still a reason
    (action,) = _act(pb, [{"tenure_days": 400.0}], [0.5], [[]])
    assert action["reason"]
