"""Small stand-ins that satisfy the protocols of ``churnml.scoring.protocols`` (``OutcomeModel``
and ``HealthScorer``, as TargetModel and HealthScore do), for testing the weekly job's own
logic without training models."""

from __future__ import annotations

import numpy as np
import pandas as pd


class LinearModel:
    """A logistic model over a few features with exact additive contributions (like TreeSHAP)."""

    def __init__(self, target, weights, bias=-2.0, version="3"):
        self.target, self.weights, self.bias, self.version = target, dict(weights), bias, version
        self.feature_names = list(self.weights)
        self.config = {"horizon_days": 90}

    def contributions(self, features):
        return pd.DataFrame(
            {f: w * pd.to_numeric(features[f], errors="coerce").fillna(0.0).to_numpy()
             for f, w in self.weights.items()}
        )

    def predict_proba(self, features):
        z = self.bias + self.contributions(features).sum(axis=1).to_numpy()
        return 1.0 / (1.0 + np.exp(-z))

    def explain(self, features, top_k=3):
        contrib = self.contributions(features)
        out = []
        for i in range(len(features)):
            row = contrib.iloc[i]
            pos = sorted(((f, c) for f, c in row.items() if c > 0), key=lambda t: -t[1])
            neg = sorted(((f, c) for f, c in row.items() if c <= 0), key=lambda t: t[1])
            out.append([
                {"feature": f, "value": float(features[f].iloc[i]), "contribution": float(c),
                 "text": f"{f} is {features[f].iloc[i]}"}
                for f, c in (pos + neg)[:top_k]
            ])
        return out

    def predict_with_reasons(self, features, top_k=3):
        """The ``OutcomeModel`` protocol: probabilities and top reasons in one call."""
        return self.predict_proba(features), self.explain(features, top_k=top_k)


def health_config(dimensions, version):
    """The default health configuration (tiers, alerts, overrides) with only ``dimensions``
    (name -> signal feature, equal weights), under ``version``: a real HealthConfig, so that
    alerts and tiers read what they read in production."""
    from churnml.health.config import load_health_config, parse_health_config

    raw = load_health_config().to_dict()
    raw["version"] = version
    raw["dimensions"] = {
        name: {"weight": 1, "signals": [{"feature": feature, "weight": 1, "bands": [
            {"from": None, "score": 100}, {"from": 1, "score": 50}]}]}
        for name, feature in dimensions.items()
    }
    raw.pop("presets", None)
    return parse_health_config(raw)


def health_arrays(config, score, subscores):
    """A ``HealthArrays`` of given scores (every dimension known, no override applied), tiers
    from ``config``."""
    from churnml.health.rubric import tier_codes
    from churnml.health.score import HealthArrays

    score = np.asarray(score, dtype=float)
    n, k = len(score), len(config.dimension_names)
    return HealthArrays(config=config, score=score, tier_codes=tier_codes(score, config),
                        subscores=np.asarray(subscores, dtype=float).reshape(n, k),
                        used=np.ones((n, k), dtype=bool), overrides=np.zeros((n, 2), dtype=bool))


class FixedHealth:
    """A ``HealthScorer``: health = mean of usage (100 - 20 * usage_drop_50pct) and engagement
    (100 - 2 * days_since_last_contact), both clipped to 0-100 (missing counts as 0 problems);
    tiers from the default configuration (DOMAIN.md); version ``v7``."""

    def __init__(self):
        self.config = health_config({"usage": "usage_drop_50pct",
                                     "engagement": "days_since_last_contact"}, "v7")

    @property
    def version(self):
        return self.config.version

    @property
    def dimension_names(self):
        return list(self.config.dimension_names)

    def score_arrays(self, features, columns=None):
        def numbers(name):
            return pd.to_numeric(features[name], errors="coerce").fillna(0).to_numpy(dtype=float)

        usage = np.clip(100 - 20 * numbers("usage_drop_50pct"), 0, 100)
        engagement = np.clip(100 - 2 * numbers("days_since_last_contact"), 0, 100)
        return health_arrays(self.config, 0.5 * usage + 0.5 * engagement,
                             np.column_stack([usage, engagement]))


FEATURE_DIMENSIONS = {
    "usage_drop_50pct": "usage", "logins_30d_vs_baseline": "usage",
    "days_since_last_contact": "engagement", "nps_latest": "satisfaction",
    "overdue_invoices": "payment", "champion_left_180d": "engagement",
}


def feature_frame(n=6, as_of="2026-03-02"):
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "account_id": [f"A{i:03d}" for i in range(n)],
        "as_of": pd.Timestamp(as_of),
        "mrr": rng.integers(100, 2000, n).astype(float),
        "usage_drop_50pct": (np.arange(n) % 2).astype(float),
        "days_since_last_contact": np.linspace(1, 40, n),
        "nps_latest": np.where(np.arange(n) % 3 == 0, 4.0, 9.0),
        "overdue_invoices": np.zeros(n),
        "champion_left_180d": np.zeros(n),
        "tenure_days": np.full(n, 400.0),
        "escalations_90d": np.zeros(n),
        "value_tier": ["core"] * n,
        "lifecycle_phase": ["advocacy"] * n,
        "rfm_segment": ["loyal"] * n,
    })


def models():
    """Outcome name -> model (no contraction model: the fakes predict churn and expansion)."""
    churn = LinearModel("churn", {"usage_drop_50pct": 1.5, "days_since_last_contact": 0.05,
                                  "nps_latest": -0.2}, bias=-1.0, version="4")
    expansion = LinearModel("expansion", {"nps_latest": 0.3, "usage_drop_50pct": -1.0},
                            bias=-3.0, version="2")
    return {"churn": churn, "expansion": expansion}


def tiny_book(n=40, seed=1):
    """A small book: accounts, mrr_changes (some churned before 2026-03-02), touchpoints."""
    from churnml.data.tables import Book

    rng = np.random.default_rng(seed)
    ids = [f"C{i:04d}" for i in range(n)]
    accounts = pd.DataFrame({"account_id": ids,
                             "created_at": pd.Timestamp("2025-01-01")})
    rows = []
    for i, acc in enumerate(ids):
        rows.append((acc, pd.Timestamp("2025-01-01"), float(rng.integers(100, 3000)), "new"))
        if i % 7 == 3:
            rows.append((acc, pd.Timestamp("2026-01-15"), 0.0, "churn"))
    mrr = pd.DataFrame(rows, columns=["account_id", "effective_date", "mrr", "reason"])
    k = 6 * n
    touch = pd.DataFrame({
        "account_id": rng.choice(ids, k),
        "ts": pd.Timestamp("2025-12-01") + pd.to_timedelta(rng.integers(0, 120, k), unit="D"),
        "kind": "meeting_held", "value": np.nan,
    }).sort_values(["account_id", "ts"], ignore_index=True)
    return Book(tables={"accounts": accounts, "mrr_changes": mrr, "touchpoints": touch})


def simple_features(book, as_of_dates, catalog=None):
    """Point-in-time features of the tiny book (mrr, days since contact), active accounts only.
    ``catalog`` (as ``build_features`` takes it) is accepted and ignored: every column is built."""
    frames = []
    for as_of in pd.to_datetime(list(as_of_dates)):
        mrr = book["mrr_changes"]
        latest = mrr[mrr["effective_date"] < as_of].groupby("account_id")["mrr"].last()
        latest = latest[latest > 0]
        tp = book["touchpoints"]
        last = tp[tp["ts"] < as_of].groupby("account_id")["ts"].max()
        since = (as_of - last.reindex(latest.index)).dt.days.astype(float)
        frames.append(pd.DataFrame({
            "account_id": latest.index.astype(str), "as_of": as_of, "mrr": latest.to_numpy(),
            "days_since_last_contact": since.to_numpy(),
            "usage_drop_50pct": (since.fillna(99).to_numpy() > 10).astype(float),
            "nps_latest": 8.0, "tenure_days": (as_of - pd.Timestamp("2025-01-01")).days,
            "overdue_invoices": 0.0, "escalations_90d": 0.0, "champion_left_180d": 0.0,
            "value_tier": "core", "lifecycle_phase": "advocacy", "rfm_segment": "loyal",
        }))
    return pd.concat(frames, ignore_index=True)


def hazard_model(version="3"):
    """A time-to-event model (``SurvivalModel``) whose hazards are a fixed function of two
    features; everything after the hazards (curves, incidences, columns) is the real code."""
    from churnml.models import survival as S

    class FixedHazards(S.SurvivalModel):
        def hazards(self, features, periods=S.N_PERIODS):
            n = len(features)
            drop = pd.to_numeric(features.get("usage_drop_50pct", pd.Series(0.0, index=features.index)),
                                 errors="coerce").fillna(0.0).to_numpy()
            since = pd.to_numeric(features.get("days_since_last_contact",
                                               pd.Series(0.0, index=features.index)),
                                  errors="coerce").fillna(0.0).to_numpy()
            h = np.zeros((n, periods, len(S.CLASSES)))
            period = np.arange(periods)[None, :]
            h[:, :, S.class_code("churn")] = 0.01 + 0.03 * drop[:, None] + 0.002 * period
            h[:, :, S.class_code("contraction")] = 0.01 + 0.0005 * since[:, None]
            h[:, :, S.class_code("expansion")] = 0.02 * (1 - drop[:, None])
            h[:, :, 0] = 1.0 - h[:, :, 1:].sum(axis=2)
            return h

        def timing_reasons(self, features, top_k=3, *, catalog=None, columns=None):
            """One reason per outcome whose first-period log-odds against "none" the logins
            drop moves: its shift from the same account without the drop."""
            from churnml.features.catalog import load_catalog, render_reason

            spec = (catalog or load_catalog())["usage_drop_50pct"]
            drop = pd.to_numeric(features.get("usage_drop_50pct", pd.Series(0.0, index=features.index)),
                                 errors="coerce").fillna(0.0).to_numpy()
            h = self.hazards(features)[:, 0, :]
            base = self.hazards(features.assign(usage_drop_50pct=0.0))[:, 0, :]
            out = {}
            for k, name in enumerate(S.CLASSES[1:], start=1):
                tiny = 1e-12  # the expansion hazard is 0 with the drop
                shift = (np.log(np.maximum(h[:, k], tiny) / h[:, 0])
                         - np.log(np.maximum(base[:, k], tiny) / base[:, 0]))
                out[name] = [[{"feature": "usage_drop_50pct", "value": float(d),
                               "contribution": float(c), "text": render_reason(spec, float(d))}]
                             if c != 0 and top_k > 0 else [] for d, c in zip(drop, shift)]
            return out

    return FixedHazards(booster=None, feature_names=["usage_drop_50pct"], categories={},
                        info={"version": version})
