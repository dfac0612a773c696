"""An event-level book of business with a known hidden truth (``churnml simulate``).

``simulate`` runs a weekly model over every account at once (lanes, see ``_sim_model``): an
unobserved health state per account drifts and takes shocks; product usage, touchpoints, NPS
surveys and invoices are drawn from it with noise (``_sim_observe``); churn, expansion and
contraction follow hazards with interactions a weighted sum misses. The tables follow the data
contract of docs/design.md; the truth (latent state per account per week, the true drivers of
each revenue event) is kept beside them so models can be measured against what is knowable.

``oracle_probability`` re-runs the same hazard model forward from the hidden state just before
``as_of`` (vectorised Monte Carlo over the state, exact over the event given each path): the
best probability any model could give, never the realised future. Mechanisms and measured
rates: docs/simulator.md.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnml.data import _sim_model as m
from churnml.data import _sim_observe as o
from churnml.errors import UsageError

DEFAULT_END = "2026-11-16"
TABLE_NAMES = ("accounts", "mrr_changes", "usage_events", "invoices", "nps_responses",
               "touchpoints")
INDUSTRIES = ("software", "retail", "healthcare", "finance", "manufacturing", "education",
              "media", "professional_services")
REGIONS = ("north_america", "europe", "apac", "latam")
EXPANSION_REASONS = ("seats", "upsell", "cross_sell")
ORACLE_TARGETS = ("churn", "expansion", "contraction")


@dataclass
class SimulatedBook:
    """``tables``: the data-contract tables; ``truth``: the hidden truth (``_truth/``)."""

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    meta: dict = field(default_factory=dict)


@dataclass
class CsTeam:
    """The simulated CS team (``simulate(cs_team=...)``, docs/simulator.md "CS team").

    ``policy(account_id, features, features_a_week_before) -> DataFrame`` decides each week's
    queue (``churnml.scoring.cs_team.CsTeamPolicy``: the data layer cannot import the scoring
    layer, so the command line builds it): one row per account with ``playbook, owner,
    severity, jump, expected_value, churn_probability, health_score, queue_status, holdout,
    respond_days``. ``compliance``: the chance a queued, not held-out action is worked that
    week; ``start_week``: the first simulated week the team works (earlier weeks fill the
    90-day windows the queue reads); ``effects``: the true effects of the plays."""

    policy: Callable[..., pd.DataFrame]
    compliance: float = 0.8
    start_week: int = 13
    effects: m.CsEffectParams = field(default_factory=m.CsEffectParams)

    def __post_init__(self) -> None:
        c = self.compliance
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 <= c <= 1.0:
            raise UsageError(f"The 'compliance' parameter must be a number from 0 to 1. Got {c!r}.")
        _check_positive("start_week", self.start_week, minimum=0)


#: Channel of each play's action (``cs_actions.channel``); plays not listed: "email".
CS_CHANNELS = {"save_call": "call", "champion_left": "meeting", "payment_recovery": "email",
               "budget": "call", "competitor": "meeting", "detractor_call": "call",
               "re_engage": "email", "low_usage": "meeting", "value_review": "meeting",
               "multi_thread": "meeting", "expansion_conversation": "meeting",
               "right_size": "call"}
#: Outcome notes (``cs_actions.outcome_note``), drawn at random; the last one only for
#: accounts that react badly to contact (half of their contacts).
CS_NOTES = ("reached the customer, next step agreed", "left a message, no reply yet",
            "customer engaged, follow-up booked", "customer heard us out, no commitment",
            "customer annoyed by the outreach")


def _day(ts) -> int:
    return int(pd.Timestamp(ts).normalize().value // o.NS_DAY)


def _check_positive(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UsageError(f"The '{name}' parameter must be an integer >= {minimum}. Got {value!r}.")
    return int(value)


def _strings(codes: np.ndarray, namer: Callable[[np.ndarray], list[str]]) -> pa.Array:
    """A string column from integer codes: names are built once per distinct code."""
    codes = np.asarray(codes, dtype=np.int64)
    uniq, inv = np.unique(codes, return_inverse=True)
    dictionary = pa.array(namer(uniq), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(inv.astype(np.int32)), dictionary).cast(pa.string())


def _ts(days_or_ns: np.ndarray, unit: str = "D") -> pa.Array:
    values = np.asarray(days_or_ns, dtype=np.float64 if unit == "D" else np.int64)
    if unit == "D":
        mask = np.isnan(values)
        ns = np.where(mask, 0, np.round(values * o.NS_DAY)).astype(np.int64)
        return pa.array(ns, type=pa.timestamp("ns"), mask=mask)
    return pa.array(values, type=pa.timestamp("ns"))


# --------------------------------------------------------------------------------------------
# initial book
# --------------------------------------------------------------------------------------------

def _new_channel(channel: tuple[int, np.random.Generator], mask: np.ndarray, seg, plan, seats,
                 annual, annual_billing, card, n_contacts, level, a_target) -> tuple:
    """The ``new_channel`` drift: accounts signing up from the change date (``mask``) come
    through a self-serve channel: SMB (90%, else mid-market), starter plan (70%, else growth),
    seats log-normal around 3, monthly contracts (10% annual), card payment (95%), mostly one
    contact (70%), a lower health level (-0.35) and adoption target (-0.2). Drawn for every
    lane from the channel's own stream (``channel[1]``), so the main stream is untouched; the
    hazards and observables then follow this hidden state as for any account."""
    rd = channel[1]
    n = len(mask)
    u = rd.random((7, n))
    z = rd.standard_normal(n)
    new_seg = np.where(u[0] < 0.9, 0, 1)
    new_plan = np.where(u[1] < 0.7, 0, 1)
    new_seats = np.maximum(1.0, np.round(np.exp(np.log(3.0) + 0.5 * z)))
    new_annual = u[2] < 0.1
    single = u[4] < 0.7
    new_contacts = np.where(single, 1, 2 + rd.poisson(0.7, size=n))
    return (np.where(mask, new_seg, seg), np.where(mask, new_plan, plan),
            np.where(mask, new_seats, seats), np.where(mask, new_annual, annual),
            np.where(mask, new_annual & (u[3] < 0.4), annual_billing),
            np.where(mask, u[5] < 0.95, card), np.where(mask, new_contacts, n_contacts),
            np.where(mask, level - 0.35, level),
            np.where(mask, np.clip(a_target - 0.2, 0.05, 1.0), a_target))


def _initial_lanes(n: int, start_day: int, n_weeks: int, rng,
                   new_channel: tuple[int, np.random.Generator] | None = None
                   ) -> tuple[m.Lanes, np.ndarray, dict]:
    """Static attributes and starting state; ``arrive_week`` is 0 for the book at the start.
    ``new_channel`` = ``(change_day, rng)``: the ``new_channel`` drift (:func:`_new_channel`)."""
    n_initial = max(1, int(round(n * 0.64)))
    arrive_week = np.zeros(n, np.int64)
    arrive_week[n_initial:] = np.sort(rng.integers(1, max(n_weeks, 2), size=n - n_initial))
    seg = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    plan_p = np.array([[0.55, 0.35, 0.1, 0.0], [0.1, 0.4, 0.4, 0.1], [0.0, 0.1, 0.4, 0.5]])
    u = rng.random(n)
    plan = (u[:, None] > np.cumsum(plan_p[seg], axis=1)).sum(axis=1).clip(0, 3)
    seats = np.maximum(1, np.round(np.exp(np.log(np.array([6.0, 30.0, 150.0])[seg])
                                          + 0.6 * rng.standard_normal(n))))
    tenure = np.minimum(rng.exponential(600.0, size=n) + 1, 3650).astype(np.int64)
    created = np.where(arrive_week == 0, start_day - tenure,
                       start_day + 7 * arrive_week + rng.integers(0, 7, size=n))
    month_start = (created.astype("datetime64[D]").astype("datetime64[M]")
                   .astype("datetime64[D]").astype(np.int64))
    anchor = np.minimum(created - month_start + 1, 28)  # contracts renew on this day of month
    annual = rng.random(n) < np.array([0.35, 0.75, 0.95])[seg]
    annual_billing = annual & (rng.random(n) < 0.4)
    card = rng.random(n) < np.array([0.85, 0.5, 0.2])[seg]
    single = rng.random(n) < np.array([0.5, 0.25, 0.1])[seg]
    n_contacts = np.where(single, 1, 2 + rng.poisson(np.array([1.0, 2.0, 3.5])[seg]))
    level = 0.25 + 0.65 * rng.standard_normal(n)
    a_target = np.clip(rng.beta(6, 2, size=n) + 0.1 * level, 0.05, 1.0)
    growth = 0.12 + 0.3 * rng.standard_normal(n)
    addon = np.where(rng.random(n) < 0.2, 0.2, 0.0)

    if new_channel is not None:  # only with the new_channel drift, so a plain book is unchanged
        seg, plan, seats, annual, annual_billing, card, n_contacts, level, a_target = _new_channel(
            new_channel, (arrive_week > 0) & (created >= new_channel[0]), seg, plan, seats,
            annual, annual_billing, card, n_contacts, level, a_target)

    term = np.where(annual, 12, 1)
    bill = np.where(annual_billing, 12, 1)

    def first_after(period):
        """First anniversary (created + k*period months) on or after start_day."""
        months = ((start_day - created) // 30).clip(0) // period * period
        day = m.add_months(created, months, anchor).astype(np.int64)
        for _ in range(3):
            behind = day < start_day
            months = np.where(behind, months + period, months)
            day = m.add_months(created, months, anchor).astype(np.int64)
        back = np.maximum(months - period, 0)
        prev = m.add_months(created, back, anchor).astype(np.int64)
        return np.where(arrive_week == 0, day, m.add_months(created, period, anchor)), \
            np.where(arrive_week == 0, np.where(months >= period * 2, prev, -1), -1)

    term_end, last_renewal = first_after(term)
    first_bill, _ = first_after(bill)
    next_invoice = np.where(arrive_week == 0, first_bill, created)
    ramp = np.clip((start_day - created) / 120.0, 0.0, 1.0)
    a0 = rng.beta(2, 5, size=n)
    adoption = np.where(arrive_week == 0, a0 + (a_target - a0) * ramp, a0)
    lanes = m.Lanes(
        segment_code=seg.astype(float), annual_contract=annual.astype(float),
        annual_billing=annual_billing.astype(float), n_contacts=n_contacts.astype(float),
        health_level=level, adoption_target=a_target, growth_rate=growth,
        card_payment=card.astype(float), created_day=created.astype(float),
        anchor_dom=anchor.astype(float),
        active=np.zeros(n), health=level + 0.3 * rng.standard_normal(n), adoption=adoption,
        churn_intent=np.zeros(n), buy_intent=np.zeros(n), downsize_intent=np.zeros(n),
        downsize_weeks=np.zeros(n),
        weeks_since_champion_left=np.full(n, float(m.NEVER)),
        weeks_since_budget_cut=np.full(n, float(m.NEVER)),
        weeks_since_competitor=np.full(n, float(m.NEVER)),
        weeks_since_goal=np.full(n, float(m.NEVER)),
        users_needed=seats * rng.uniform(0.55, 1.0, size=n), seats=seats.astype(float),
        plan=plan.astype(float), addon_share=addon, mrr=np.zeros(n),
        term_end_day=term_end.astype(float), next_invoice_day=next_invoice.astype(float),
        unresolved_until_day=np.zeros(n), failed_payments_recent=np.zeros(n),
        champion_gen=np.zeros(n), churned_day=np.full(n, np.nan),
    )
    lanes.mrr = m.compute_mrr(lanes)
    extra = {
        "industry": rng.choice(len(INDUSTRIES), size=n),
        "region": rng.choice(len(REGIONS), size=n, p=[0.45, 0.3, 0.15, 0.1]),
        # firmographic enrichment at signup: the company's yearly headcount growth, a noisy
        # reading of the (constant) growth that later fills its seats
        "headcount_growth": np.round(growth + 0.1 * rng.standard_normal(n), 2),
        "last_renewal": last_renewal,
        "nps_phase": rng.integers(0, 13, size=n),
        "plan0": plan.astype(float),
    }
    return lanes, arrive_week, extra


# --------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------

def parse_drift(spec) -> tuple[str, ...]:
    """Drift scenarios from a spec: ``"price_change,product_change"``, a list of names, or
    None / ``""`` / ``"none"`` (no drift). Returned in canonical order without repeats; an
    unknown name is a ``UsageError`` naming the known scenarios."""
    if spec is None:
        return ()
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    if not all(isinstance(x, str) for x in names):
        raise UsageError(f"The 'drift' parameter must be a comma-separated list of scenario "
                         f"names. Got {spec!r}.")
    names = [x.strip() for x in names if x.strip() and x.strip().lower() != "none"]
    unknown = [x for x in names if x not in m.DRIFT_SCENARIOS]
    if unknown:
        raise UsageError(f"Unknown drift scenario {unknown[0]!r}; known scenarios: "
                         f"{', '.join(m.DRIFT_SCENARIOS)} (comma-separated to combine).")
    return tuple(x for x in m.DRIFT_SCENARIOS if x in names)


def _drift_day(drift_start, start_day: int, end_day: int, n_weeks: int) -> int:
    """The change date: ``drift_start`` (inside the simulated period) or its middle week."""
    if drift_start is None:
        return start_day + 7 * (n_weeks // 2)
    try:
        day = _day(drift_start)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"The 'drift_start' parameter must be an ISO date like 2026-01-05. "
                         f"Got {drift_start!r}.") from exc
    if not start_day < day < end_day:
        raise UsageError(f"The 'drift_start' parameter must lie inside the simulated period "
                         f"({_date(start_day)} to {_date(end_day)}). Got {_date(day)}.")
    return day


def simulate(n_accounts: int = 2000, months: int = 24, seed: int = 42, end=DEFAULT_END,
             params: m.SimParams | None = None, usage_rate: float = 0.55,
             on_week: Callable[[int, int], None] | None = None, drift=None,
             drift_start=None, cs_team: CsTeam | None = None) -> SimulatedBook:
    """Simulate ``n_accounts`` accounts over the ``months`` before ``end`` (exclusive).

    About 64% of the accounts are customers at the start (tenure up to ten years); the rest
    arrive week by week. Same arguments, same tables, byte for byte. ``on_week(done, total)``
    is called after each simulated week (progress bars). ``usage_rate`` scales usage rows per
    active user and week (about 20M usage events at 50,000 accounts over 24 months).

    ``drift``: drift scenarios (comma-separated to combine; default none) in force from
    ``drift_start`` (an ISO date inside the period; default its middle week) on:
    ``"price_change"`` and ``"product_change"`` change what drives churn and expansion,
    ``"new_channel"`` who signs up, ``"usage_drop"`` what the product logs,
    ``"billing_migration"`` both (more failed payments that no longer signal churn; churn
    no longer waits for the renewal; shrinking companies leave). Written to
    ``_truth/meta`` (``drift``, ``drift_start``); the oracle follows them. Without drift the
    book is the same as before drift existed.

    ``cs_team``: a :class:`CsTeam` that works a queue each week (logged to a ``cs_actions``
    table), with true effects on the hazards and each candidate's true effect in
    ``_truth/cs_queue``; its draws come from their own random stream. Without it (default)
    the book is the same as before the CS team existed.
    """
    n = _check_positive("n_accounts", n_accounts)
    months = _check_positive("months", months)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise UsageError(f"The 'seed' parameter must be an integer. Got {seed!r}.")
    scenarios = parse_drift(drift)
    p = params or m.SimParams()
    rng = np.random.default_rng(int(seed))
    rng_x = _contraction_rng(seed)
    end_day = _day(end)
    n_weeks = weeks_for(months)
    start_day = end_day - 7 * n_weeks
    change_day = None
    if scenarios:
        change_day = _drift_day(drift_start, start_day, end_day, n_weeks)
        p = replace(p, drift=scenarios, drift_day=float(change_day))
    elif drift_start is not None:
        raise UsageError("The 'drift_start' parameter needs a drift scenario ('drift').")
    # the input drifts draw from streams of their own, so the main stream (and the world
    # before the change date) stays the plain book's
    channel: tuple[int, np.random.Generator] | None = None
    usage_drop: tuple[int, np.random.Generator] | None = None
    if change_day is not None and "new_channel" in scenarios:
        channel = (change_day, np.random.default_rng([int(seed), 0xD21F7]))
    if change_day is not None and "usage_drop" in scenarios:
        usage_drop = (change_day, np.random.default_rng([int(seed), 0xD20B]))
    s, arrive_week, extra = _initial_lanes(n, start_day, n_weeks, rng, channel)
    _burn_in(s, arrive_week, start_day, p, rng, rng_x)
    buf = o.Buffers(s.created_day)
    state_cols = [c for c in m.STATE_COLUMNS if c != "active"]
    truth_state: dict[str, list] = {c: [] for c in ("lane", "week_start", *state_cols)}
    for c in ("churn_week_prob", "churn_renewal_prob", "churn_in_term_prob", "expansion_prob",
              "contraction_prob"):
        truth_state[c] = []
    rev: dict[str, list] = {c: [] for c in ("lane", "day", "mrr", "reason", "term_end")}
    ev_rows: dict[str, list] = {c: [] for c in ("lane", "day", "event", "reason", "mrr_before",
                                                 "mrr_after", "probability", "top_driver",
                                                 "drivers")}

    # the revenue history up to the start: the first contract and the last renewal before it
    all_lanes = np.arange(n)
    first_term = m.add_months(s.created_day, np.where(s.annual_contract > 0, 12, 1), s.anchor_dom)
    renewed_before = extra["last_renewal"] >= 0
    rev["lane"].append(all_lanes)
    rev["day"].append(s.created_day.copy())
    rev["mrr"].append(s.mrr.copy())
    rev["reason"].append(np.zeros(n, np.int8))  # 0 = new
    rev["term_end"].append(np.where(renewed_before, first_term, s.term_end_day).astype(float))
    rl = np.flatnonzero(renewed_before)
    rev["lane"].append(rl)
    rev["day"].append(extra["last_renewal"][rl].astype(float))
    rev["mrr"].append(s.mrr[rl])
    rev["reason"].append(np.full(len(rl), 1, np.int8))
    rev["term_end"].append(s.term_end_day[rl])

    team = _CsRun(cs_team, n, seed) if cs_team is not None else None

    reasons = ("new", "renewal", "upsell", "cross_sell", "seats", "price_increase", "downsell",
               "churn", "reactivation")
    rcode = {r: i for i, r in enumerate(reasons)}
    exp_reason = np.array([rcode["seats"], rcode["upsell"], rcode["cross_sell"]], np.int8)

    for k in range(n_weeks):
        day = start_day + 7 * k
        s.active = np.where(arrive_week == k, 1.0, s.active)
        if k > 0:
            back = m.reactivate(s, day, p, rng)
            bl = np.flatnonzero(back)
            if len(bl):
                for c, v in (("lane", bl), ("day", np.full(len(bl), float(day))),
                             ("mrr", s.mrr[bl]), ("reason", np.full(len(bl), rcode["reactivation"], np.int8)),
                             ("term_end", s.term_end_day[bl])):
                    rev[c].append(v)
                _event_rows(ev_rows, bl, np.full(len(bl), float(day)), "reactivation",
                            np.zeros(len(bl)), s.mrr[bl], np.full(len(bl), p.reactivation_weekly),
                            None)
        hz = m.hazards(s, day, p)
        if team is not None:
            team.decide_and_apply(s, hz, k, day)
        act = s.active > 0
        al = np.flatnonzero(act)
        truth_state["lane"].append(al.astype(np.int32))
        truth_state["week_start"].append(np.full(len(al), day, np.int64))
        for c in state_cols:
            dtype = np.float64 if c in ("mrr",) else np.float32
            truth_state[c].append(getattr(s, c)[al].astype(dtype))
        for c, v in (("churn_week_prob", hz.churn_week), ("churn_renewal_prob", hz.churn_renewal),
                     ("churn_in_term_prob", hz.churn_in_term), ("expansion_prob", hz.expansion),
                     ("contraction_prob", hz.contraction)):
            truth_state[c].append(v[al].astype(np.float32))

        ev = m.draw_events(s, hz, day, rng)
        buf.cut_day = np.where(ev.churn, ev.churn_day, np.inf)
        if team is not None:
            team.log_week(ev, k)
            team.observed.mark(buf)
        o.emit_usage(s, act, day, rng, buf, usage_rate, rng_x,
                     usage_drop if usage_drop is not None and day + 7 > usage_drop[0] else None)
        o.emit_touchpoints(s, ev, act, day, rng, buf, rng_x)
        o.emit_invoices(s, ev, day, rng, buf)
        o.emit_nps(s, act, k, day, extra["nps_phase"], rng, buf)
        if team is not None:
            team.observed.take_week(buf, s.mrr, day, day + 7)

        mrr_before = s.mrr.copy()
        term_before = s.term_end_day.copy()
        m.advance(s, ev, day, p, rng, rng_x)
        # revenue rows of the week
        cl = np.flatnonzero(ev.churn)
        _rev(rev, cl, ev.churn_day[cl], np.zeros(len(cl)), rcode["churn"], np.full(len(cl), np.nan))
        _event_rows(ev_rows, cl, ev.churn_day[cl], "churn", mrr_before[cl], np.zeros(len(cl)),
                    hz.churn_week[cl], {k_: v[cl] for k_, v in hz.churn_drivers.items()},
                    reason=np.where(ev.churn_day[cl] == term_before[cl], "non_renewal", "cancellation"))
        xl = np.flatnonzero(ev.expansion)
        kinds = ev.expansion_kind[xl]
        _rev(rev, xl, ev.expansion_day[xl], s.mrr[xl], exp_reason[kinds], s.term_end_day[xl])
        _event_rows(ev_rows, xl, ev.expansion_day[xl], "expansion", mrr_before[xl], s.mrr[xl],
                    hz.expansion[xl], {k_: v[xl] for k_, v in hz.expansion_drivers.items()},
                    reason=np.array(EXPANSION_REASONS)[kinds])
        dl = np.flatnonzero(ev.contraction)
        _rev(rev, dl, ev.contraction_day[dl], s.mrr[dl], rcode["downsell"], s.term_end_day[dl])
        _event_rows(ev_rows, dl, ev.contraction_day[dl], "contraction", mrr_before[dl], s.mrr[dl],
                    hz.contraction[dl], {k_: v[dl] for k_, v in hz.contraction_drivers.items()},
                    reason=np.full(len(dl), "downsell"))
        nl = np.flatnonzero(ev.renewed & ~ev.expansion & ~ev.contraction)
        _rev(rev, nl, term_before[nl], s.mrr[nl],
             np.where(ev.price_increase[nl], rcode["price_increase"], rcode["renewal"]),
             s.term_end_day[nl])
        if on_week is not None:
            on_week(k + 1, n_weeks)

    tables = _assemble_tables(s, buf, rev, extra, reasons, end_day)
    truth = _assemble_truth(s, truth_state, ev_rows, extra, start_day, n_weeks)
    meta = {"n_accounts": n, "months": months, "seed": int(seed), "start": _date(start_day),
            "end": _date(end_day), "weeks": n_weeks}
    if change_day is not None:  # only with drift, so a book without it is unchanged
        meta.update(drift=",".join(scenarios), drift_start=_date(change_day))
    if team is not None:  # only with a CS team, so a book without it is unchanged
        tables["cs_actions"] = team.actions_table()
        truth["cs_queue"] = team.queue_truth()
        meta.update(team.meta())
    truth["meta"] = pd.DataFrame({"key": list(meta), "value": [str(v) for v in meta.values()]})
    return SimulatedBook(tables=tables, truth=truth, meta=meta)


class _CsRun:
    """One simulation's CS team: what it sees (``Observed``), the week's queue and actions,
    the effects in force per account, and the records (``cs_actions``, ``_truth/cs_queue``).
    Its draws (who reacts badly to contact, compliance, action days, notes) come from their
    own stream, so the main stream draws the same numbers with or without the team."""

    def __init__(self, team: CsTeam, n: int, seed: int) -> None:
        self.team = team
        self.n = n
        self.rng = np.random.default_rng([int(seed), 0xC5_7EA])
        q = team.effects
        self.reacts_badly = self.rng.random(n) < q.reacts_badly_share
        self.observed = o.Observed(n)
        self.ids = np.array(_account_namer(np.arange(n)), dtype=object)  # once, not weekly
        self.shift = np.zeros((3, n))  # churn, expansion, contraction logit shifts in force
        self.shift_from = np.zeros(n, np.int64)
        self.shift_to = np.zeros(n, np.int64)  # in force for weeks [from, to)
        self.rows: dict[str, list] = defaultdict(list)  # _truth/cs_queue
        self.acts: dict[str, list] = defaultdict(list)  # cs_actions
        self.week_rows: dict[str, np.ndarray] | None = None

    def decide_and_apply(self, s: m.Lanes, hz: m.WeekHazards, k: int, day: int) -> None:
        """At the week's start: decide the queue from what was seen before ``day``, then
        shift this week's hazards by the actions in force (taken in earlier weeks)."""
        self.week_rows = None
        if k >= self.team.start_week:
            self._decide(s, hz, k, day)
        on = (self.shift_from <= k) & (k < self.shift_to)
        m.apply_cs_effects(hz, *(self.shift * on))

    def _decide(self, s: m.Lanes, hz: m.WeekHazards, k: int, day: int) -> None:
        lanes = np.flatnonzero(s.active > 0)
        if len(lanes) == 0:
            return
        q = self.team.effects
        d = self.team.policy(self.ids[lanes], self.observed.features(lanes), self.observed.features(lanes, lag=1))
        status = d["queue_status"].to_numpy(dtype=object)
        cand = np.flatnonzero(pd.notna(status))
        if len(cand) == 0:
            return
        lane = lanes[cand]
        play = d["playbook"].to_numpy(dtype=object)[cand]
        holdout = d["holdout"].to_numpy(dtype=bool)[cand]
        queued = status[cand] == "queued"
        worked = queued & ~holdout & (self.rng.random(len(cand)) < self.team.compliance)
        respond = d["respond_days"].to_numpy(dtype=np.int64)[cand]
        offset = np.floor(self.rng.random(len(cand)) * (np.minimum(respond, 4) + 1))
        when = day + offset + (9.0 + 8.0 * self.rng.random(len(cand))) / 24.0
        code = m.cs_play_codes(play)
        shift = m.cs_effects(s, lane, code, day, self.reacts_badly[lane], q)
        zero = tuple(np.zeros(len(lane)) for _ in range(3))
        without = m.frozen_outcome_probabilities(s, hz, lane, day, zero, q.weeks)
        with_ = m.frozen_outcome_probabilities(s, hz, lane, day, shift, q.weeks)
        self.week_rows = {
            "lane": lane, "week": np.full(len(lane), k), "day": np.full(len(lane), float(day)),
            "playbook": play, "owner": d["owner"].to_numpy(dtype=object)[cand],
            "severity": d["severity"].to_numpy(dtype=object)[cand],
            "queue_status": status[cand], "holdout": holdout,
            "jump": d["jump"].to_numpy(dtype=bool)[cand], "worked": worked,
            "action_day": np.where(worked, when, np.nan),
            "health_score": d["health_score"].to_numpy(dtype=float)[cand],
            "expected_value": d["expected_value"].to_numpy(dtype=float)[cand],
            "mrr": s.mrr[lane].copy(), "reacts_badly": self.reacts_badly[lane],
            "churn_logit_shift": shift[0], "expansion_logit_shift": shift[1],
            "contraction_logit_shift": shift[2],
            "churn_90d_without": without[0], "churn_90d_with": with_[0],
            "expansion_90d_without": without[1], "expansion_90d_with": with_[1],
            "contraction_90d_without": without[2], "contraction_90d_with": with_[2],
        }
        # the truth of every play the account could get, not only the recommended one
        # (13 vectorised passes over the week's candidates): the oracle may choose the play
        for i, name in enumerate(m.CS_PLAYS):  # a loop over plays, not accounts
            alt = m.cs_effects(s, lane, np.full(len(lane), i), day, self.reacts_badly[lane], q)
            p_alt = m.frozen_outcome_probabilities(s, hz, lane, day, alt, q.weeks)
            for j, outcome in enumerate(("churn", "expansion", "contraction")):
                self.week_rows[f"{outcome}_90d_effect_{name}"] = p_alt[j] - without[j]
        for name in d.columns:  # the health sub-scores the team saw (uplift features)
            if name.startswith("health_") and name != "health_score":
                self.week_rows[name] = d[name].to_numpy(dtype=float)[cand]

    def log_week(self, ev: m.WeekEvents, k: int) -> None:
        """After the week's events are drawn: an action dated on or after the account's churn
        day is not taken (no action after a customer left); the rest are logged and their
        effects put in force from the next week on."""
        r = self.week_rows
        if r is None:
            return
        lane = r["lane"]
        gone = ev.churn[lane] & (r["action_day"] >= ev.churn_day[lane])
        r["worked"] = r["worked"] & ~gone
        r["action_day"] = np.where(r["worked"], r["action_day"], np.nan)
        for key, value in r.items():
            self.rows[key].append(value)
        w = r["worked"]
        wl = lane[w]
        self.shift[:, wl] = np.vstack([r["churn_logit_shift"][w], r["expansion_logit_shift"][w],
                                       r["contraction_logit_shift"][w]])
        self.shift_from[wl] = k + 1
        self.shift_to[wl] = k + 1 + self.team.effects.weeks
        if len(wl):
            note = np.floor(self.rng.random(len(wl)) * (len(CS_NOTES) - 1)).astype(np.int64)
            annoyed = self.reacts_badly[wl] & (self.rng.random(len(wl)) < 0.5)
            self.acts["lane"].append(wl)
            self.acts["day"].append(r["action_day"][w])
            self.acts["playbook"].append(r["playbook"][w])
            self.acts["owner"].append(r["owner"][w])
            self.acts["note"].append(np.where(annoyed, len(CS_NOTES) - 1, note))
        self.week_rows = None

    def actions_table(self) -> pd.DataFrame:
        """The ``cs_actions`` table of the data contract, sorted by account and date."""
        cols = {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.acts.items()}
        if not cols:
            cols = {"lane": np.zeros(0, np.int64), "day": np.zeros(0),
                    "playbook": np.zeros(0, object), "owner": np.zeros(0, object),
                    "note": np.zeros(0, np.int64)}
        ns = np.round(cols["day"].astype(float) * o.NS_DAY).astype(np.int64)
        order = np.lexsort((ns, cols["lane"]))
        play = pd.Series(cols["playbook"][order], dtype=object)
        return pd.DataFrame({
            "account_id": pd.Series(self.ids[cols["lane"][order].astype(np.int64)], dtype=object),
            "date": pd.to_datetime(ns[order], unit="ns"),
            "playbook": play,
            "owner": pd.Series(cols["owner"][order], dtype=object),
            "channel": play.map(CS_CHANNELS).fillna("email"),
            "outcome_note": pd.Series(np.array(CS_NOTES, dtype=object)[
                cols["note"][order].astype(np.int64)], dtype=object),
        })

    def queue_truth(self) -> pd.DataFrame:
        """``_truth/cs_queue``: every candidate of every week with its true effects."""
        if not self.rows:
            return pd.DataFrame({"account_id": pd.Series([], dtype=object)})
        cols = {k: np.concatenate(v) for k, v in self.rows.items()}
        lane = cols.pop("lane")
        out = {"account_id": self.ids[lane],
               "week_start": pd.to_datetime(cols.pop("day"), unit="D"),
               "action_date": pd.to_datetime(np.round(cols.pop("action_day") * o.NS_DAY),
                                             unit="ns")}
        out.update(cols)
        frame = pd.DataFrame(out)
        for name in ("churn", "expansion", "contraction"):
            frame[f"{name}_90d_effect"] = frame[f"{name}_90d_with"] - frame[f"{name}_90d_without"]
        return frame.sort_values(["account_id", "week_start"], kind="stable").reset_index(drop=True)

    def meta(self) -> dict:
        policy = self.team.policy
        capacity = getattr(policy, "capacity", {})
        return {"cs_team": "1", "cs_compliance": self.team.compliance,
                "cs_start_week": self.team.start_week,
                "cs_capacity": ",".join(f"{k}={v}" for k, v in sorted(capacity.items())),
                "cs_policy_version": getattr(policy, "policy_version", ""),
                "cs_effects": ",".join(f"{f.name}={getattr(self.team.effects, f.name)}"
                                       for f in fields(self.team.effects))}


def _contraction_rng(seed: int) -> np.random.Generator:
    """The contraction mechanism's own random stream (downsize intent and its observables),
    separate from the main one so that it does not shift the draws of everything else."""
    return np.random.default_rng([int(seed), 0x0C0417A])


def _burn_in(s: m.Lanes, arrive_week, start_day: int, p: m.SimParams, rng, rng_x,
             weeks: int = 26):
    """Let the latent state of the starting book (health, intents, shock timers) settle before
    the observed period, so the first weeks look like any other. No events are recorded and
    revenue does not change during the burn-in."""
    initial = arrive_week == 0
    s.active = initial.astype(float)
    saved = {c: getattr(s, c).copy() for c in ("seats", "plan", "addon_share", "mrr",
                                                "term_end_day", "next_invoice_day",
                                                "unresolved_until_day", "failed_payments_recent",
                                                "churned_day", "champion_gen", "users_needed")}
    for j in range(weeks):
        day = start_day - 7 * (weeks - j)
        hz = m.hazards(s, day, p)
        ev = m.draw_events(s, hz, day, rng)
        none = np.zeros(len(s.active), bool)
        for name in ("churn", "expansion", "contraction", "renewed", "price_increase",
                     "invoice_due"):
            setattr(ev, name, none)
        m.advance(s, ev, day, p, rng, rng_x)
    for c, v in saved.items():
        setattr(s, c, v)
    s.active = np.zeros(len(s.active))


def weeks_for(months: int) -> int:
    """Number of simulated weeks for ``months`` months (the progress bar's total)."""
    return max(1, int(round(months * 52.1775 / 12)))


def _date(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


def _rev(rev, lanes, day, mrr, reason, term_end) -> None:
    if len(lanes) == 0:
        return
    rev["lane"].append(lanes)
    rev["day"].append(np.asarray(day, float))
    rev["mrr"].append(np.asarray(mrr, float))
    rev["reason"].append(np.broadcast_to(np.asarray(reason, np.int8), (len(lanes),)).copy())
    rev["term_end"].append(np.asarray(term_end, float))


def _event_rows(ev_rows, lanes, day, event, mrr_before, mrr_after, prob, drivers,
                reason=None) -> None:
    """Truth rows: one per revenue event with its probability and its true drivers."""
    if len(lanes) == 0:
        return
    ev_rows["lane"].append(lanes)
    ev_rows["day"].append(np.asarray(day, float))
    ev_rows["event"].append(np.full(len(lanes), event, dtype=object))
    ev_rows["reason"].append(np.full(len(lanes), event, dtype=object) if reason is None
                             else np.asarray(reason, dtype=object))
    ev_rows["mrr_before"].append(np.asarray(mrr_before, float))
    ev_rows["mrr_after"].append(np.asarray(mrr_after, float))
    ev_rows["probability"].append(np.asarray(prob, float))
    if drivers:
        names = [k for k in drivers if k not in ("segment", "relationship_breadth")]
        values = np.vstack([drivers[k] for k in names])
        top = np.array(names, dtype=object)[values.argmax(axis=0)]
        ev_rows["top_driver"].append(top)
        ev_rows["drivers"].append({k: np.asarray(v, float) for k, v in drivers.items()})
    else:
        ev_rows["top_driver"].append(np.full(len(lanes), None, dtype=object))
        ev_rows["drivers"].append({})


def _account_namer(codes: np.ndarray) -> list[str]:
    return [f"A{c:06d}" for c in codes]


def _assemble_tables(s: m.Lanes, buf: o.Buffers, rev, extra, reasons, end_day) -> dict:
    n = len(s.active)
    tables: dict[str, pd.DataFrame] = {}
    seg_names = np.array(m.SEGMENTS, dtype=object)
    plan_names = np.array(m.PLANS, dtype=object)
    # accounts: the plan and attributes at signing (later upsells show in mrr_changes)
    plan0 = extra.get("plan0", s.plan)
    tables["accounts"] = pa.table({
        "account_id": _strings(np.arange(n), _account_namer),
        "created_at": _ts(s.created_day),
        "plan": pa.array(plan_names[plan0.astype(int)].tolist(), pa.string()),
        "segment": pa.array(seg_names[s.segment_code.astype(int)].tolist(), pa.string()),
        "industry": pa.array(np.array(INDUSTRIES, object)[extra["industry"]].tolist(), pa.string()),
        "region": pa.array(np.array(REGIONS, object)[extra["region"]].tolist(), pa.string()),
        "headcount_growth": pa.array(extra["headcount_growth"]),
        "contract_type": pa.array(np.where(s.annual_contract > 0, "annual", "monthly").tolist(), pa.string()),
        "billing_period": pa.array(np.where(s.annual_billing > 0, "annual", "monthly").tolist(), pa.string()),
        "payment_method": pa.array(np.where(s.card_payment > 0, "card", "invoice").tolist(), pa.string()),
    }).to_pandas()

    cols = {k: np.concatenate(v) for k, v in rev.items()}
    order = np.lexsort((cols["day"], cols["lane"]))
    cols = {k: v[order] for k, v in cols.items()}
    keep = cols["day"] < end_day
    cols = {k: v[keep] for k, v in cols.items()}
    tables["mrr_changes"] = pa.table({
        "account_id": _strings(cols["lane"], _account_namer),
        "effective_date": _ts(cols["day"]),
        "mrr": pa.array(np.round(cols["mrr"], 2)),
        "reason": pa.array(np.array(reasons, object)[cols["reason"]].tolist(), pa.string()),
        "term_end": _ts(cols["term_end"]),
    }).to_pandas()

    u = buf.columns("usage")
    order = np.lexsort((u["ts"], u["lane"]))
    keep = u["ts"][order] < end_day * o.NS_DAY
    order = order[keep]
    # Exact repeats (same account, second, event, user and quantity: the clock has whole
    # seconds, so about one event in a million) are dropped: the data contract sets such rows
    # aside as duplicates, and a simulated book should validate clean.
    keys = [u[k][order] for k in ("quantity", "user", "event", "ts", "lane")]
    by_key = np.lexsort(keys)
    same = np.ones(max(len(by_key) - 1, 0), dtype=bool)
    for column in keys:
        same &= column[by_key[1:]] == column[by_key[:-1]]
    repeat = np.zeros(len(order), dtype=bool)
    repeat[by_key[1:][same]] = True
    order = order[~repeat]
    lane = u["lane"][order]
    tables["usage_events"] = pa.table({
        "account_id": _strings(lane, _account_namer),
        "ts": _ts(u["ts"][order], unit="ns"),
        "event": pa.DictionaryArray.from_arrays(
            pa.array(u["event"][order].astype(np.int32)),
            pa.array(o.USAGE_EVENTS)).cast(pa.string()),
        "user_id": _strings(lane.astype(np.int64) * 100 + u["user"][order],
                            lambda c: [f"A{x // 100:06d}-u{x % 100:02d}" for x in c]),
        "quantity": pa.array(u["quantity"][order].astype(np.float64)),
    }).to_pandas()
    del u

    inv = buf.columns("invoice")
    order = np.lexsort((inv["due"], inv["lane"]))
    inv = {k: v[order] for k, v in inv.items()}
    keep = inv["due"] < end_day
    inv = {k: v[keep] for k, v in inv.items()}
    paid = np.where(inv["paid"] < end_day, inv["paid"], np.nan)  # not yet paid at the data end
    tables["invoices"] = pa.table({
        "account_id": _strings(inv["lane"], _account_namer),
        "invoice_id": pa.array([f"INV{i:08d}" for i in range(len(order[keep]))], pa.string()),
        "due_date": _ts(inv["due"]),
        "amount": pa.array(inv["amount"]),
        "paid_at": _ts(paid),
    }).to_pandas()

    t = buf.columns("touch")
    ns = np.round(t["day"] * o.NS_DAY).astype(np.int64)
    order = np.lexsort((t["kind"], ns, t["lane"]))
    keep = ns[order] < end_day * o.NS_DAY
    order = order[keep]
    user = t["user"][order]
    has_user = user >= 0
    user_arr = _strings(np.where(has_user, user, 0),
                        lambda c: [f"A{x // 1000:06d}-c{x % 1000}" for x in c])
    user_arr = pc.if_else(pa.array(has_user), user_arr, pa.scalar(None, pa.string()))
    tables["touchpoints"] = pa.table({
        "account_id": _strings(t["lane"][order], _account_namer),
        "ts": _ts(ns[order], unit="ns"),
        "kind": pa.DictionaryArray.from_arrays(pa.array(t["kind"][order].astype(np.int32)),
                                               pa.array(o.TOUCH_KINDS)).cast(pa.string()),
        "value": pa.array(t["value"][order], mask=np.isnan(t["value"][order])),
        "user_id": user_arr,
    }).to_pandas()

    nps = buf.columns("nps")
    order = np.lexsort((nps["respondent"], nps["ts"], nps["lane"]))
    keep = nps["ts"][order] < end_day * o.NS_DAY
    order = order[keep]
    band, pick = nps["band"][order], nps["pick"][order]
    comment = np.full(len(order), None, dtype=object)
    for b, name in enumerate(("detractor", "passive", "promoter")):
        options = np.array(o.COMMENTS[name], dtype=object)
        sel = band == b
        comment[sel] = options[pick[sel] % len(options)]
    tables["nps_responses"] = pa.table({
        "account_id": _strings(nps["lane"][order], _account_namer),
        "ts": _ts(nps["ts"][order], unit="ns"),
        "score": pa.array(nps["score"][order].astype(np.int64)),
        "respondent_id": _strings(nps["respondent"][order],
                                  lambda c: [f"A{x // 100:06d}-r{x % 100}" for x in c]),
        "comment": pa.array(comment.tolist(), pa.string()),
    }).to_pandas()
    return {name: tables[name] for name in TABLE_NAMES}


def _assemble_truth(s: m.Lanes, truth_state, ev_rows, extra, start_day, n_weeks) -> dict:
    n = len(s.active)
    ids = _strings(np.arange(n), _account_namer)
    latent = {"account_id": ids}
    for c in m.STATIC_COLUMNS:
        latent[c] = pa.array(getattr(s, c))
    latent["nps_phase"] = pa.array(extra["nps_phase"])
    truth = {"accounts_latent": pa.table(latent).to_pandas()}

    st = {k: np.concatenate(v) for k, v in truth_state.items()}
    lane = st.pop("lane")
    week_start = st.pop("week_start")
    order = np.lexsort((week_start, lane))
    table = {"account_id": _strings(lane[order], _account_namer),
             "week_start": _ts(week_start[order].astype(float))}
    for k, v in st.items():
        table[k] = pa.array(v[order])
    truth["state_weekly"] = pa.table(table).to_pandas()

    if ev_rows["lane"]:
        lanes = np.concatenate(ev_rows["lane"])
        names = sorted({k for d in ev_rows["drivers"] for k in d})
        driver_cols = {}
        for name in names:
            driver_cols["driver_" + name] = np.concatenate(
                [d.get(name, np.full(len(lane_), np.nan))
                 for d, lane_ in zip(ev_rows["drivers"], ev_rows["lane"])])
        frame = {
            "account_id": _strings(lanes, _account_namer),
            "date": _ts(np.concatenate(ev_rows["day"])),
            "event": pa.array(np.concatenate(ev_rows["event"]).tolist(), pa.string()),
            "reason": pa.array(np.concatenate(ev_rows["reason"]).tolist(), pa.string()),
            "mrr_before": pa.array(np.concatenate(ev_rows["mrr_before"])),
            "mrr_after": pa.array(np.concatenate(ev_rows["mrr_after"])),
            "weekly_probability": pa.array(np.concatenate(ev_rows["probability"])),
            "top_driver": pa.array(np.concatenate(ev_rows["top_driver"]).tolist(), pa.string()),
        }
        frame.update({k: pa.array(v) for k, v in driver_cols.items()})
        events = pa.table(frame).to_pandas()
        events = events.sort_values(["account_id", "date", "event"], kind="stable")
        truth["events"] = events.reset_index(drop=True)
    else:
        truth["events"] = pd.DataFrame({"account_id": pd.Series([], dtype="str"),
                                        "date": pd.Series([], dtype="datetime64[ns]"),
                                        "event": pd.Series([], dtype="str")})
    return truth


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

def write_book(sim: SimulatedBook, out_dir) -> dict[str, int]:
    """Write ``<table>.parquet`` for each table and ``_truth/<name>.parquet``; returns the row
    count per table. Files are written under a temporary name and renamed into place."""
    out = Path(out_dir)
    (out / "_truth").mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, df in sim.tables.items():
        _write_parquet(df, out / f"{name}.parquet")
        counts[name] = len(df)
    for name, df in sim.truth.items():
        _write_parquet(df, out / "_truth" / f"{name}.parquet")
    return counts


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    from churnml.fsutil import atomic_write

    table = pa.Table.from_pandas(df, preserve_index=False)
    with atomic_write(path) as handle:
        pq.write_table(table, handle, compression="zstd")


# --------------------------------------------------------------------------------------------
# oracle
# --------------------------------------------------------------------------------------------

def _load_truth(truth) -> dict[str, pd.DataFrame]:
    if isinstance(truth, SimulatedBook):
        return truth.truth
    if isinstance(truth, dict):
        return truth
    path = Path(truth)
    if (path / "_truth").is_dir():
        path = path / "_truth"
    if not (path / "state_weekly.parquet").exists():
        raise UsageError(f"no simulator truth in {truth}: expected _truth/state_weekly.parquet")
    return {name: pd.read_parquet(path / f"{name}.parquet")
            for name in ("state_weekly", "accounts_latent", "events", "meta")}


def oracle_probability(truth, observations: pd.DataFrame, horizon_days: int = 90,
                       target: str = "churn", n_paths: int = 64, seed: int = 0,
                       params: m.SimParams | None = None, chunk_lanes: int = 400_000,
                       drift: str | None = "book") -> np.ndarray:
    """The simulator's true probability of ``target`` in ``[as_of, as_of + horizon_days)``.

    ``truth``: a ``SimulatedBook``, its ``.truth`` dict, or the path of a book (or its
    ``_truth``) folder. ``observations``: ``account_id, as_of``. Starting from the hidden state
    in force the day before as_of (``_truth/state_weekly``), ``n_paths`` futures of the state are
    drawn with the simulator's own dynamics (shocks, intents, growth, invoices, competing
    events); along each path the event's probability is computed exactly from the weekly
    hazards, conditioned on the event not having happened between the week's start and as_of;
    the result is the mean over paths. Only the past is read from the truth (the state and,
    for expansion, whether one already happened earlier in as_of's week). Returns a float array
    aligned with ``observations``; NaN where the account was not active the day before as_of or
    as_of lies outside the simulated period.

    ``drift="book"`` (default): the paths use the drift the book was made with (``_truth/meta``),
    so weeks from its change date on follow the drifted hazards; ``drift=None``: as if no drift
    had happened (to measure what a model that missed the change loses).
    """
    if target not in ORACLE_TARGETS:
        raise UsageError(f"The 'target' parameter must be one of {', '.join(map(repr, ORACLE_TARGETS))}. "
                         f"Got {target!r}.")
    horizon = _check_positive("horizon_days", horizon_days)
    _check_positive("n_paths", n_paths)
    p = params or m.SimParams()
    t = _load_truth(truth)
    if drift == "book":
        meta = t.get("meta")
        info = {} if meta is None else dict(zip(meta["key"].astype(str), meta["value"].astype(str)))
        if info.get("drift"):
            p = replace(p, drift=parse_drift(info["drift"]),
                        drift_day=float(_day(info["drift_start"])))
    elif drift is None:
        p = replace(p, drift=(), drift_day=float("inf"))
    else:
        raise UsageError(f"The 'drift' parameter must be 'book' or None. Got {drift!r}.")
    state = t["state_weekly"]
    latent = t["accounts_latent"]
    obs = observations[["account_id", "as_of"]].copy()
    obs["account_id"] = obs["account_id"].astype(str)
    # np.asarray: a datetime Series' .values is an ndarray (pandas-stubs: ndarray | ExtensionArray)
    as_of_day = (np.asarray(pd.to_datetime(obs["as_of"]).dt.normalize().values)
                 .astype("datetime64[D]").astype(np.int64))
    week_start_day = np.asarray(state["week_start"].values).astype("datetime64[D]").astype(np.int64)
    start_day = int(week_start_day.min())
    week = np.floor((as_of_day - 1 - start_day) / 7).astype(np.int64)
    obs_week_day = start_day + 7 * week

    # locate the state row (account, week) of each observation
    acc_codes = pd.Index(latent["account_id"].astype(str))
    st_lane = acc_codes.get_indexer(pd.Index(state["account_id"].astype(str)))
    key_state = st_lane.astype(np.int64) * 100_000 + week_start_day
    ob_lane = acc_codes.get_indexer(pd.Index(obs["account_id"]))
    key_obs = ob_lane.astype(np.int64) * 100_000 + obs_week_day
    order = np.argsort(key_state, kind="stable")
    pos = np.searchsorted(key_state[order], key_obs)
    pos = np.clip(pos, 0, len(order) - 1)
    found = (ob_lane >= 0) & (key_state[order][pos] == key_obs) & (week >= 0)
    row = order[pos]
    result = np.full(len(obs), np.nan)
    idx = np.flatnonzero(found)
    if len(idx) == 0:
        return result

    # past events of as_of's week (read, never the future): churned before as_of -> not an
    # observation; expanded before as_of -> no further expansion that week
    events = t["events"]
    ev_lane = acc_codes.get_indexer(pd.Index(events["account_id"].astype(str)))
    ev_day = np.asarray(events["date"].values).astype("datetime64[D]").astype(np.int64)

    def happened_before(kind):
        sel = (events["event"] == kind).to_numpy()
        keys = np.sort(ev_lane[sel].astype(np.int64) * 100_000 + ev_day[sel])
        lo = np.searchsorted(keys, ob_lane[idx] * 100_000 + obs_week_day[idx])
        hi = np.searchsorted(keys, ob_lane[idx] * 100_000 + as_of_day[idx])
        return hi > lo

    churned_early = happened_before("churn")
    # an event of the target kind earlier in as_of's week, or (contraction) an expansion, which
    # the simulator does not combine with a contraction in the same week: none in the rest of it
    done_early = happened_before(target) if target != "churn" else np.zeros(len(idx), bool)
    if target == "contraction":
        done_early |= happened_before("expansion")
    idx_ok = idx[~churned_early]
    done_early = done_early[~churned_early]

    columns = {}
    for c in m.STATIC_COLUMNS:
        columns[c] = latent[c].to_numpy(dtype=float)[ob_lane[idx_ok]]
    srows = row[idx_ok]
    for c in m.STATE_COLUMNS:
        columns[c] = (np.ones(len(idx_ok)) if c == "active"
                      else state[c].to_numpy(dtype=float)[srows])
    base = m.Lanes.from_columns(columns)
    rng = np.random.default_rng(seed)
    rng_x = _contraction_rng(seed)
    per_chunk = max(1, chunk_lanes // n_paths)
    probs = np.empty(len(idx_ok))
    for a in range(0, len(idx_ok), per_chunk):
        sl = slice(a, min(a + per_chunk, len(idx_ok)))
        sub = np.repeat(np.arange(sl.start, sl.stop), n_paths)
        lanes = base.take(sub)
        survival = _oracle_paths(lanes, obs_week_day[idx_ok][sub], as_of_day[idx_ok][sub],
                                 horizon, target, done_early[sub], p, rng, rng_x)
        probs[sl] = 1.0 - survival.reshape(-1, n_paths).mean(axis=1)
    result[idx_ok] = probs
    result[idx[churned_early]] = np.nan
    return result


def _oracle_paths(s: m.Lanes, week_day, as_of, horizon, target, done_early, p, rng, rng_x):
    """Probability of no ``target`` event in [as_of, as_of + horizon) along one path per lane.

    ``done_early``: lanes where no ``target`` event can happen in the rest of as_of's week.

    Two shortcuts leave every value and the random stream as they were (a unit test compares
    them with the plain loop, ``tests/unit/test_simulator.py``):
    - the last of the ``n_weeks`` weeks starts at or after ``as_of + horizon`` (as_of's week
      starts at most 7 days before it), so its factor is exactly 1: only its random numbers
      are drawn, to keep the stream of the lanes after it;
    - for churn the lanes never churn (it is suppressed) and only the churn hazards are read,
      so the hazards, events and state move with ``churn_only`` (the state the churn
      hazards read, nothing else).
    The random numbers are drawn by a second thread (:class:`_PrefetchedDraws`), one week
    ahead of the arithmetic, in the same order.
    """
    end = as_of + horizon
    survival = np.ones(len(s.active))
    first = True
    day = week_day.astype(np.float64)
    n_weeks = int(np.ceil((horizon + 7) / 7)) + 1
    churn_only = target == "churn"
    n = len(s.active)
    # every week's random numbers, drawn in order by another thread while this one computes
    # (numpy releases the GIL in both): the same numbers as drawing them here
    with _PrefetchedDraws(n, n_weeks, rng, rng_x) as draws:
        for week in range(n_weeks):
            event_draws, advance_draws = draws.next()
            if week == n_weeks - 1 and week > 0 and np.all(day >= end):
                break  # past the horizon: its draws were taken, nothing else is needed
            survival = _oracle_week(s, day, as_of, end, first, target, done_early, p, churn_only,
                                    survival, event_draws, advance_draws)
            day = day + 7
            first = False
    return survival


def _oracle_week(s, day, as_of, end, first, target, done_early, p, churn_only, survival,
                 event_draws, advance_draws):
    """One week of :func:`_oracle_paths`: the survival times this week's factor; ``s`` moves
    to the next week."""
    hz = m.hazards(s, day, p, churn_only=churn_only)
    live = s.active > 0
    frac = np.clip((np.minimum(day + 7, end) - np.maximum(day, as_of)) / 7.0, 0.0, 1.0)
    frac_before = np.clip((as_of - day) / 7.0, 0.0, 1.0) if first else np.zeros_like(day)
    te = s.term_end_day
    renew_in = hz.renewal_in_week
    te_in = renew_in & (te >= as_of) & (te < end)
    te_before = renew_in & (te < as_of) if first else np.zeros(len(te), bool)
    if target == "churn":
        c_in = 1.0 - (1.0 - hz.churn_renewal * te_in) * (1.0 - hz.churn_in_term * frac)
        c_before = 1.0 - (1.0 - hz.churn_renewal * te_before) * (1.0 - hz.churn_in_term * frac_before)
        contrib = c_in / np.maximum(1.0 - c_before, 1e-9)
    else:
        h = hz.expansion if target == "expansion" else hz.contraction
        m_in = np.where(renew_in, te_in, frac)
        m_before = np.where(renew_in, te_before, frac_before)
        contrib = h * m_in / np.maximum(1.0 - h * m_before, 1e-9)
        if first:
            contrib = np.where(done_early, 0.0, contrib)
            # the account is known to be active at as_of: no churn earlier in the week
            hz.churn_renewal = np.where(te_before, 0.0, hz.churn_renewal)
            hz.churn_in_term = hz.churn_in_term * (1.0 - frac_before)
    if churn_only:
        ev = m.draw_events_churn_oracle(s, hz, day, event_draws)
    else:
        ev = m.draw_events(s, hz, day, None, suppress=target, draws=event_draws)
    if target == "expansion":
        contrib = contrib * ~ev.churn  # the simulator allows no expansion in a churn week
    elif target == "contraction":
        # nor a contraction in a week with a churn or an expansion
        contrib = contrib * ~(ev.churn | ev.expansion)
    survival = survival * (1.0 - np.clip(contrib * live, 0.0, 1.0))
    m.advance(s, ev, day, p, None, churn_only=churn_only, draws=advance_draws)
    return survival


class _PrefetchedDraws:
    """The random numbers of ``n_weeks`` weeks of ``n`` lanes (:func:`m.event_draws` then
    :func:`m.advance_draws`, week after week, the order of the plain loop), drawn by a
    background thread at most one week ahead; :meth:`next` hands them over in order. On exit
    every week has been drawn, so ``rng`` and ``rng_x`` stand where the plain loop leaves
    them, and the thread has stopped."""

    def __init__(self, n: int, n_weeks: int, rng, rng_x):
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, args=(n, n_weeks, rng, rng_x),
                                        name="oracle-draws", daemon=True)
        self._taken, self._n_weeks = 0, n_weeks

    def _run(self, n, n_weeks, rng, rng_x) -> None:
        try:
            for _ in range(n_weeks):
                self._queue.put((m.event_draws(n, rng), m.advance_draws(n, rng, rng_x)))
        except BaseException as exc:  # handed to the consumer, raised there
            self._queue.put(exc)

    def __enter__(self) -> "_PrefetchedDraws":
        self._thread.start()
        return self

    def next(self):
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        self._taken += 1
        return item

    def __exit__(self, *exc) -> None:
        # take (and drop) what is left: the thread ends after its last week
        while self._taken < self._n_weeks and self._thread.is_alive():
            item = self._queue.get()
            self._taken += 1
            if isinstance(item, BaseException):
                break
        self._thread.join()


# --------------------------------------------------------------------------------------------
# portfolio rates (how the tests and docs check the calibration)
# --------------------------------------------------------------------------------------------

def monthly_rates(mrr_changes: pd.DataFrame, start=None, window_days: int = 30,
                  skip_days: int = 0) -> pd.DataFrame:
    """Logo churn, expansion and contraction rates per consecutive ``window_days`` window.

    Computed from ``mrr_changes`` alone, the way labels are: accounts active at the window's
    start (latest change before it has mrr > 0); churned = mrr reaches 0 inside
    ``[start, start + window)``; expanded = mrr rises while above 0 (``price_increase``
    excluded); contracted = falls but stays above 0. Windows begin at ``start`` (default: the
    first churn in the table) plus ``skip_days`` and run back to back until the data's end.
    Columns: ``start, active, churn_rate, expansion_rate, contraction_rate``.
    """
    mc = mrr_changes.sort_values(["account_id", "effective_date"], kind="stable")
    prev = mc.groupby("account_id")["mrr"].shift(1)
    rose = (prev > 0) & (mc["mrr"] > prev) & (mc["reason"] != "price_increase")
    fell = (prev > 0) & (mc["mrr"] < prev) & (mc["mrr"] > 0)
    died = (prev > 0) & (mc["mrr"] == 0)
    data_end = mc["effective_date"].max()
    if start is None:
        start = mc.loc[died, "effective_date"].min()
    start = pd.Timestamp(start) + pd.Timedelta(days=skip_days)
    rows = []
    while start + pd.Timedelta(days=window_days) <= data_end:
        stop = start + pd.Timedelta(days=window_days)
        before = mc[mc["effective_date"] < start]
        last = before.groupby("account_id")["mrr"].last()
        active = last.index[last > 0]
        inside = mc["effective_date"].between(start, stop, inclusive="left")
        in_active = mc["account_id"].isin(active)
        rows.append({
            "start": start, "active": len(active),
            "churn_rate": mc.loc[inside & died & in_active, "account_id"].nunique() / len(active),
            "expansion_rate": mc.loc[inside & rose & in_active, "account_id"].nunique() / len(active),
            "contraction_rate": mc.loc[inside & fell & in_active, "account_id"].nunique() / len(active),
        })
        start = stop
    return pd.DataFrame(rows)
