"""Health score configuration: the shipped YAML, presets and validation messages."""

from __future__ import annotations

import pytest
import yaml

from churnml.errors import ConfigError
from churnml.health import HealthScore, load_health_config
from churnml.health.config import default_config_path


def raw_default() -> dict:
    return yaml.safe_load(default_config_path().read_text())


def test_default_config_matches_the_domain_rubric():
    cfg = load_health_config()
    assert cfg.weights == {"usage": 30, "engagement": 25, "outcome": 20, "satisfaction": 15, "payment": 10}
    assert [(t.name, t.min) for t in cfg.tiers] == [
        ("thriving", 90), ("healthy", 70), ("needs_attention", 50), ("at_risk", 30), ("critical", 0)]
    assert cfg.overrides["nps_detractor_cap"]["cap"] < 70
    assert cfg.overrides["no_contact_penalty"]["min_days"] == 21
    assert cfg.overrides["no_contact_penalty"]["penalty"] == 10
    assert cfg.version
    assert cfg.neutral_score == 50


def test_every_signal_names_a_binding_feature():
    # docs/architecture.md, "Feature names (binding)": the names the score may read.
    binding = {
        "logins_30d_vs_baseline", "active_days_30d_vs_baseline", "feature_breadth_30d",
        "advanced_feature_events_30d", "meeting_attendance_rate_90d", "median_reply_hours_90d",
        "email_reply_rate_90d", "expansion_requests_90d", "goals_achieved_180d", "qbrs_held_180d",
        "nps_latest", "nps_change", "nps_detractor", "late_invoices_180d", "overdue_invoices",
        "failed_payments_90d", "billing_page_visits_30d", "mrr_change_90d", "days_since_last_contact",
    }
    assert set(load_health_config().features) <= binding


@pytest.mark.parametrize(("preset", "weights", "top_tier"), [
    ("seed_001", {"usage": 30, "engagement": 25, "payment": 20, "satisfaction": 15, "outcome": 10}, ("healthy", 75)),
    ("seed_003", {"usage": 10, "engagement": 30, "satisfaction": 30, "outcome": 20, "payment": 10}, ("healthy", 80)),
])
def test_presets_of_the_seeds(preset, weights, top_tier):
    cfg = load_health_config(preset=preset)
    assert cfg.weights == weights
    assert (cfg.tiers[0].name, cfg.tiers[0].min) == top_tier
    assert cfg.version.endswith(preset)
    assert HealthScore(preset=preset).version == cfg.version


def test_negative_dimension_weight_message():
    raw = raw_default()
    raw["dimensions"]["usage"]["weight"] = -3
    with pytest.raises(ConfigError, match=r"The 'weight' of dimension 'usage' must be >= 0\. Got -3\."):
        load_health_config(raw)


def test_all_problems_are_reported_at_once():
    raw = raw_default()
    raw["dimensions"]["usage"]["weight"] = -3
    raw["dimensions"]["payment"]["signals"][0]["bands"][2]["from"] = 0.5  # not increasing
    raw["tiers"][1]["min"] = 95
    raw["tiers"][-1]["min"] = 10
    raw["dimensions"]["outcome"]["signals"][0]["bands"][0]["score"] = 120
    with pytest.raises(ConfigError) as err:
        load_health_config(raw)
    text = str(err.value)
    assert "'weight' of dimension 'usage'" in text
    assert "'from' values of the bands of signal 'late_invoices_180d' of dimension 'payment' must increase" in text
    assert "strictly decreasing 'min'" in text
    assert "last tier must start at 0" in text
    assert "'score' of band 1 of signal 'goals_achieved_180d'" in text


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r.pop("version"), "'version' field"),
    (lambda r: r["dimensions"]["usage"]["signals"][0]["bands"][0].update({"from": 0}), "first band"),
    (lambda r: r["dimensions"]["usage"].update({"signals": []}), "at least one signal"),
    (lambda r: r.update({"neutral_score": 150}), "'neutral_score'"),
    (lambda r: r["overrides"]["nps_detractor_cap"].update({"cap": "high"}), "'cap' of override"),
    (lambda r: r["fitting"].update({"shrinkage": 2}), "'shrinkage' parameter must be a number in [0, 1]. Got 2."),
    (lambda r: r["fitting"].update({"min_churn_events": 0}), "'min_churn_events' parameter must be a positive integer"),
    (lambda r: r["alerts"].update({"weekly_drop_points": -1}), "'weekly_drop_points'"),
    (lambda r: r["tiers"].append({"name": "thriving", "min": -1}), "unique"),
    (lambda r: r["dimensions"]["usage"].update({"wieght": 3}), "Unknown key(s) ['wieght'] in dimension 'usage'"),
    (lambda r: r["dimensions"]["usage"]["signals"][0].update({"band": []}),
     "Unknown key(s) ['band'] in signal 'logins_30d_vs_baseline'"),
])
def test_invalid_configs_name_the_problem(mutate, message):
    raw = raw_default()
    mutate(raw)
    with pytest.raises(ConfigError) as err:
        load_health_config(raw)
    assert message in str(err.value)


def test_unknown_preset_and_bad_source():
    with pytest.raises(ConfigError, match="'preset' parameter must be one of"):
        load_health_config(preset="nope")
    with pytest.raises(ConfigError, match="'config' parameter"):
        load_health_config(42)
    with pytest.raises(ConfigError, match="not found"):
        load_health_config("/nonexistent/health.yaml")


def test_constructor_only_stores_and_validation_happens_on_use():
    h = HealthScore(config={"version": "x"})  # invalid, but nothing is checked yet
    assert h.get_params() == {"config": {"version": "x"}, "preset": None}
    with pytest.raises(ConfigError):
        h.base_config
    h.set_params(config=None)
    assert h.version == load_health_config().version


def test_yaml_file_round_trip(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(load_health_config().to_dict()))
    again = load_health_config(path)
    assert again.weights == load_health_config().weights
    assert again.to_dict() == load_health_config().to_dict()
