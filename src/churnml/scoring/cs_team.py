"""The simulated CS team's weekly queue (``churnml simulate --cs-team``).

The simulator (``churnml.data.simulator``) cannot import the scoring layer, so the command line
builds a :class:`CsTeamPolicy` and hands it to ``simulate(cs_team=...)``. Each simulated week
the simulator passes the features a CS team could compute from the book so far (approximated
from its weekly counts, ``churnml.data._sim_observe.Observed``: point in time, no trained model)
and the policy answers with this week's queue, using the project's own code wherever it applies:

- the health score: :class:`churnml.health.HealthScore` on those features (the rubric of
  ``features/health_score.yaml``; signals the simulator does not approximate are left out and
  the rest re-weighted, as for any book without them);
- severity and new critical signals: ``risk_severity`` and the critical signals of
  ``features/playbooks.yaml`` compared with the week before (``_active_values``), and the
  health score compared with the one of the week before (critical only in the week it falls
  below ``critical_health``), as in the weekly job;
- the play: the first new critical signal's play; for an account at risk the first specific
  signal the playbook file maps (budget cut, competitor, downgrade inquiry, failed payment,
  missed meetings, NPS detractor), else the play of the weakest health dimension
  (``dimensions``), else ``default_risk``; for a low-risk account the expansion play when it
  asked for more in 90 days and no gating rule blocks it, the contraction play after a
  downgrade inquiry, else the regular cadence. This replaces the model's SHAP reasons (there
  is no model) and is vectorised (the weekly job's ``next_best_actions`` decides row by row);
- the queue and the holdout: :func:`churnml.scoring.queue.assign_queue` itself, so the holdout
  is the weekly job's stable hash, stratified by risk decile, with the same policy version.

Probabilities: without a model, the churn probability is the health-implied
``0.02 + 0.5 x ((100 - health) / 100)^2`` (health 70: 6.5%, 50: 14.5%, 30: 26.5%); expansion
``min(0.1 + 0.1 x expansion requests in 90 days, 0.5)``; contraction 0.25 after a downgrade
inquiry in 90 days, else 0.10. They rank the queue (expected value) and stratify the holdout.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import numpy as np
import pandas as pd

from churnml.health.score import INSUFFICIENT_DATA_TIER, HealthScore
from churnml.scoring.actions import (
    Gates,
    Playbooks,
    _active_values,
    known_health,
    load_playbooks,
    risk_severity,
)
from churnml.scoring.alerts import rose_since
from churnml.scoring.queue import QUEUED, assign_queue

#: Signals that name a specific play for an account at risk, in priority order (the play is
#: the playbook file's ``signals`` entry; the signal is active from ``min`` on).
SPECIFIC_SIGNALS = (("budget_cuts_180d", 1), ("competitor_mentions_90d", 1),
                    ("downgrade_inquiries_90d", 1), ("failed_payments_90d", 1),
                    ("meetings_missed_90d", 2), ("nps_detractor", 1))
#: Days after the decision an action is taken, by its response time (at most this many).
RESPONSE_DAYS = {"same day": 0, "within 24 hours": 0, "within 48 hours": 1,
                 "within 3 days": 2, "at the next touchpoint": 4}
#: Share of accounts (by MRR, among the week's active accounts) that count as large
#: (``large_value_tiers``: the account manager takes their payment recovery).
LARGE_SHARE = 0.05


def health_churn_probability(health: np.ndarray) -> np.ndarray:
    """The health-implied 90-day churn probability used without a model."""
    return 0.02 + 0.5 * ((100.0 - np.asarray(health, dtype=float)) / 100.0) ** 2


def parse_capacity(spec: str | None) -> dict[str, int]:
    """``"CSM=60,CS manager=20"`` -> ``{"CSM": 60, "CS manager": 20}`` (UsageError if bad)."""
    from churnml.errors import UsageError

    out: dict[str, int] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            number = int(value.strip())
        except ValueError:
            number = -1
        if not sep or not name.strip() or number < 0:
            raise UsageError(f"--cs-capacity must be OWNER=N pairs separated by commas, N >= 0 "
                             f"(e.g. 'CSM=60,CS manager=20'). Got {part.strip()!r}.")
        out[name.strip()] = number
    return out


class CsTeamPolicy:
    """This week's queue from approximated features (see the module's docstring).

    ``capacity``: actions per owner and week; default the playbook file's, scaled by
    ``scale`` (the simulator passes accounts / 2,000: the file is sized for the demo book of
    2,000 accounts) and rounded; owners given in ``capacity`` keep the given number."""

    def __init__(self, playbooks: Playbooks | None = None, health: HealthScore | None = None,
                 capacity: Mapping[str, int] | None = None, scale: float = 1.0) -> None:
        from churnml.errors import UsageError

        self.base = playbooks if playbooks is not None else load_playbooks()
        self.health = health if health is not None else HealthScore()
        cap = {k: int(round(v * scale)) if v > 0 else 0 for k, v in self.base.capacity.items()}
        unknown = sorted(set(capacity or {}) - set(cap))
        if unknown:
            raise UsageError(f"--cs-capacity names an owner no playbook has: {unknown[0]!r}; "
                             f"owners: {', '.join(sorted(cap))}.")
        cap.update({k: int(v) for k, v in (capacity or {}).items()})
        # the capacity is staffing, not policy: the policy version (holdout) is unchanged
        self.playbooks = replace(self.base, capacity=cap)

    @property
    def policy_version(self) -> str:
        return self.playbooks.policy_version

    @property
    def capacity(self) -> dict[str, int]:
        return dict(self.playbooks.capacity)

    def __call__(self, account_id: np.ndarray, features: Mapping[str, np.ndarray],
                 before: Mapping[str, np.ndarray]) -> pd.DataFrame:
        """The week's decisions, one row per account (order of ``account_id``): ``playbook,
        owner, severity, reason_feature, jump, expected_value, churn_probability,
        queue_status, holdout, respond_days`` and one ``health_{dimension}`` sub-score per
        health dimension."""
        pb = self.playbooks
        n = len(account_id)
        frame = pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in features.items()})
        # object columns, not pandas' Arrow strings: cheaper to build and read back each week
        ids = pd.Series(np.asarray(account_id, dtype=object), dtype=object)
        frame.insert(0, "account_id", ids)
        frame["as_of"] = pd.Timestamp(0)

        parts = self.health.score_arrays(frame)
        cfg = parts.config
        tiers = np.array([*(t.name for t in cfg.tiers), INSUFFICIENT_DATA_TIER],
                         dtype=object)[parts.tier_codes]
        health = np.asarray(parts.score, dtype=float)
        frame["health_score"] = health
        # the weekly job's rule (_active_values with the week before): known, over the minimum
        # and risen since a week before; the rows of ``before`` are the same accounts, so the
        # rise is compared row by row instead of joined by account_id
        critical = _active_values(frame, pb.critical_signals)
        for sig in pb.critical_signals:
            if sig.feature in before:
                critical[sig.feature] = critical[sig.feature] & rose_since(
                    frame[sig.feature].to_numpy(dtype=float),
                    np.asarray(before[sig.feature], dtype=float))
        # the health score a week before, on the same features then: a score below
        # critical_health is critical only in the week it gets there (as in the weekly job)
        prior = pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in before.items()})
        prior.insert(0, "account_id", ids)
        prior["as_of"] = pd.Timestamp(0)
        health_before = known_health(self.health.score_arrays(prior))
        severity = risk_severity(frame, np.full(n, np.nan), pb, health_tier=tiers,
                                 critical=critical, health_before=health_before)

        play = np.full(n, None, dtype=object)
        reason = np.full(n, "", dtype=object)
        crit_names = list(critical)
        crit = (np.column_stack([critical[k] for k in crit_names]) if crit_names
                else np.zeros((n, 0), bool))
        has_crit = (severity == "critical") & crit.any(axis=1)
        if crit_names:
            first = np.argmax(crit, axis=1)
            crit_play = np.array([s.playbook for s in pb.critical_signals], dtype=object)
            play[has_crit] = crit_play[first[has_crit]]
            reason[has_crit] = np.array(crit_names, dtype=object)[first[has_crit]]
        at_risk = (severity != "low") & ~has_crit
        for feature, minimum in SPECIFIC_SIGNALS:  # a loop over signals, not accounts
            name = pb.signals.get(feature)
            if name is None or feature not in frame:
                continue
            with np.errstate(invalid="ignore"):
                hit = at_risk & (play == None) & (frame[feature].to_numpy() >= minimum)  # noqa: E711
            play[hit] = name
            reason[hit] = feature
        sub = np.where(np.isnan(parts.subscores), np.inf, parts.subscores)
        weakest = np.argmin(sub, axis=1)
        dim_play = np.array([pb.dimensions.get(d) for d in cfg.dimension_names], dtype=object)
        dim_names = np.array(cfg.dimension_names, dtype=object)
        open_ = at_risk & (play == None) & np.isfinite(sub.min(axis=1))  # noqa: E711
        open_ &= dim_play[weakest] != None  # noqa: E711
        play[open_] = dim_play[weakest[open_]]
        reason[open_] = "health_" + dim_names[weakest[open_]].astype(str)
        play[at_risk & (play == None)] = pb.default_risk  # noqa: E711
        low = severity == "low"
        blocked = Gates.of(frame, pb).blocked()
        requests = np.nan_to_num(frame["expansion_requests_90d"].to_numpy())
        downgrade = np.nan_to_num(frame["downgrade_inquiries_90d"].to_numpy())
        ready = low & (requests >= 1) & ~blocked
        play[ready] = pb.low_risk_playbooks["expansion_ready"]
        reason[ready] = "expansion_requests_90d"
        shrink = low & ~ready & (downgrade >= 1)
        play[shrink] = pb.low_risk_playbooks["contraction_risk"]
        reason[shrink] = "downgrade_inquiries_90d"
        play[play == None] = pb.low_risk_playbooks["otherwise"]  # noqa: E711

        mrr = np.nan_to_num(frame["mrr"].to_numpy())
        large = mrr >= np.quantile(mrr, 1.0 - LARGE_SHARE) if n else np.zeros(0, bool)
        names = list(pb.playbooks)
        code = pd.Categorical(play, categories=names).codes  # every play is a known name

        def per_play(attribute: str) -> np.ndarray:  # one value per play, indexed by code
            return np.array([getattr(pb.playbooks[k], attribute) for k in names],
                            dtype=object)[code]

        large_owner = per_play("large_account_owner")
        owner = np.where(large & pd.notna(large_owner), large_owner,
                         per_play("owner")).astype(object)
        p = {"churn": health_churn_probability(health),
             "expansion": np.minimum(0.1 + 0.1 * requests, 0.5),
             "contraction": np.where(downgrade >= 1, 0.25, 0.10)}
        addresses = per_play("addresses")
        effect = per_play("prior_effect").astype(float)
        prob = np.select([addresses == k for k in p], list(p.values()), default=np.nan)
        share = pd.Series(addresses).map(pb.typical_share).fillna(1.0).to_numpy(dtype=float)
        ev = mrr * prob * share * effect
        ev[play == pb.low_risk_playbooks["otherwise"]] = np.nan

        inputs = pd.DataFrame({
            "account_id": ids, "playbook": pd.Series(play, dtype=object),
            "owner": pd.Series(owner, dtype=object), "severity": pd.Series(severity, dtype=object),
            "reason_feature": pd.Series(reason, dtype=object), "expected_value": ev,
            "churn_probability": p["churn"],
            "queue_reason": pd.Series(np.full(n, "", dtype=object), dtype=object)})
        queue = assign_queue(inputs, pb)
        respond = per_play("respond_within")
        respond = np.where(pd.isna(respond), pd.Series(severity).map(pb.response_times)
                           .to_numpy(dtype=object), respond)
        days = pd.Series(respond).map(RESPONSE_DAYS).fillna(4).to_numpy(dtype=np.int64)
        jump = has_crit & (queue["queue_status"].to_numpy() == QUEUED)
        return pd.DataFrame({
            "playbook": play, "owner": owner, "severity": severity,
            "reason_feature": reason, "jump": jump, "expected_value": ev,
            "churn_probability": p["churn"], "health_score": health,
            "queue_status": queue["queue_status"].to_numpy(),
            "holdout": queue["holdout"].fillna(False).to_numpy(dtype=bool),
            "respond_days": days,
            # the sub-scores, as the weekly job writes them (``health_{dimension}``): what an
            # uplift model of the queue can learn from (docs/actions.md)
            **{f"health_{d}": parts.subscores[:, j]
               for j, d in enumerate(cfg.dimension_names)}})


__all__ = ["CsTeamPolicy", "RESPONSE_DAYS", "SPECIFIC_SIGNALS", "health_churn_probability",
           "parse_capacity"]
