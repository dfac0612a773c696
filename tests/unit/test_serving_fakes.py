"""Small models with the TargetModel interface (docs/architecture.md) for the service's unit
tests, and checks that they keep the interface's promises (so the service tests mean
something). Imported by the other ``test_serving_*`` files."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

CHURN_WEIGHTS = {"days_since_last_contact": 0.04, "cancellation_inquiries_90d": 1.5,
                 "logins_30d": -0.05, "nps_latest": -0.2}
EXPANSION_WEIGHTS = {"expansion_requests_90d": 1.2, "nps_latest": 0.25, "logins_30d": 0.02}


class FakeTargetModel:
    """A logistic model over a few catalog features plus static attributes, with exact
    additive contributions (as TreeSHAP gives) and reasons ordered as the interface says."""

    def __init__(self, target: str, weights: dict[str, float], bias: float = -1.5,
                 version: str = "4", static=("plan", "segment")) -> None:
        self.target, self.weights, self.bias, self.version = target, dict(weights), bias, version
        self.feature_names = list(self.weights) + list(static)
        self.config = SimpleNamespace(horizon_days=90)
        self.health_config = None
        self.trained_at = "2026-11-01T10:00:00"
        self.info = {"metrics": {"test_roc_auc": 0.81, "test_brier": 0.07}, "train_end": "2026-08-17"}
        self.categories = {"plan": ["enterprise", "starter"], "segment": ["mid-market"]}
        self.calls = 0

    def contributions(self, features: pd.DataFrame) -> pd.DataFrame:
        cols = {}
        for name, w in self.weights.items():
            values = (pd.to_numeric(features[name], errors="coerce") if name in features
                      else pd.Series(np.nan, index=features.index))
            cols[name] = w * values.fillna(0.0).to_numpy(dtype="float64")
        # an enterprise plan lowers churn a little: a categorical static attribute matters
        plan = features["plan"] if "plan" in features else pd.Series(None, index=features.index)
        cols["plan"] = np.where(plan.astype(object).to_numpy() == "enterprise", -0.3, 0.0)
        return pd.DataFrame(cols, index=features.index)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        z = self.bias + self.contributions(features).sum(axis=1).to_numpy()
        return 1.0 / (1.0 + np.exp(-z))

    def explain(self, features: pd.DataFrame, top_k: int = 3) -> list[list[dict]]:
        contrib = self.contributions(features)
        out = []
        for i in range(len(features)):  # a fake: a few features, no events
            row = contrib.iloc[i]
            pos = sorted(((f, c) for f, c in row.items() if c > 0), key=lambda t: -t[1])
            neg = sorted(((f, c) for f, c in row.items() if c <= 0), key=lambda t: t[1])
            reasons = []
            for f, c in (pos + neg)[:top_k]:
                value = features[f].iloc[i] if f in features else None
                reasons.append({"feature": f, "value": value, "contribution": float(c),
                                "text": f"{f.replace('_', ' ')} is {value}"})
            out.append(reasons)
        return out

    def predict_with_reasons(self, features: pd.DataFrame, top_k: int = 3):
        """The ``OutcomeModel`` protocol (churnml.scoring.protocols): both in one call."""
        return self.predict_proba(features), self.explain(features, top_k=top_k)


def fake_models():
    """(churn, expansion) fakes; :func:`fake_model_map` gives them by outcome name."""
    return (FakeTargetModel("churn", CHURN_WEIGHTS, version="4"),
            FakeTargetModel("expansion", EXPANSION_WEIGHTS, bias=-2.0, version="2"))


def fake_model_map():
    """Outcome name -> fake model, as ``Predictor`` and ``score_frame`` take them (no
    contraction model: its columns are null)."""
    churn, expansion = fake_models()
    return {"churn": churn, "expansion": expansion}


def account(i: int = 0, **overrides) -> dict:
    """A valid account record as `churnml features` would write it (JSON types)."""
    record = {
        "account_id": f"A-{i:04d}",
        "as_of": "2026-11-16",
        "logins_30d": 10.0 + i,
        "logins_30d_vs_baseline": 0.8,
        "days_since_last_contact": 12.0 + 3 * i,
        "cancellation_inquiries_90d": float(i % 2),
        "nps_latest": float(3 + i % 8),
        "nps_detractor": 1.0 if 3 + i % 8 <= 6 else 0.0,
        "expansion_requests_90d": float(i % 3),
        "mrr": 1200.0 + 10 * i,
        "tenure_days": 400.0,
        "value_tier": "core",
        "lifecycle_phase": "advocacy",
        "plan": "enterprise" if i % 2 else "starter",
        "segment": "mid-market",
    }
    record.update(overrides)
    return record


def test_fake_reasons_follow_the_interface_order():
    churn, _ = fake_models()
    frame = pd.DataFrame([account(1), account(2)])
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    reasons = churn.explain(frame, top_k=3)
    assert len(reasons) == 2
    for account_reasons in reasons:
        assert len(account_reasons) == 3
        signs = [r["contribution"] > 0 for r in account_reasons]
        assert signs == sorted(signs, reverse=True)  # raising before lowering
    p = churn.predict_proba(frame)
    assert np.all((p > 0) & (p < 1))
    from churnml.scoring.protocols import OutcomeModel

    assert isinstance(churn, OutcomeModel)
    both_p, both_reasons = churn.predict_with_reasons(frame)
    np.testing.assert_array_equal(both_p, churn.predict_proba(frame))
    assert both_reasons == churn.explain(frame)


def test_fake_account_records_are_distinct_and_dated():
    a, b = account(1), account(2)
    assert a["account_id"] != b["account_id"]
    assert dt.date.fromisoformat(a["as_of"]) == dt.date(2026, 11, 16)
    with pytest.raises(KeyError):
        account(1)["unknown_field"]


def asgi_app(service):
    """The service's ASGI app for in-process tests, without Prometheus metrics: BentoML
    registers its metrics once per process, so a second app (another test file, the
    integration tests) would collide. The real-server tests keep metrics on."""
    from _bentoml_impl.server.app import ServiceAppFactory

    service.inject_config()
    return ServiceAppFactory(service, is_main=True, enable_metrics=False)()
