"""The simulator's hidden model: per-account state, weekly hazards and the weekly transition.

Everything here works on "lanes": one lane is one account in the main simulation, or one
(observation, Monte-Carlo path) pair in the oracle. The same two functions drive both, so the
oracle is the simulator's own hazard model and never a second guess of it:

- :func:`hazards` turns the state in force during a week into that week's event probabilities
  (churn at renewal, churn in term, expansion, contraction) and the additive logit terms behind
  them (the "true drivers" written to ``_truth/events.parquet``);
- :func:`advance` draws the week's shocks and moves the state to the next week.

Days are integers (days since 1970-01-01); a week is ``[week_day, week_day + 7)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

SEGMENTS = ("SMB", "mid-market", "enterprise")
PLANS = ("starter", "growth", "business", "enterprise")
PRICE_PER_SEAT = np.array([25.0, 45.0, 70.0, 110.0])  # monthly list price per seat by plan
DOWNSIZE_NOTICE_WEEKS = 6  # a downsize decision is carried out from this many weeks on
NEVER = 10_000  # "weeks since" value meaning the shock never happened (effects long decayed)
# Drift scenarios (docs/simulator.md, "Drift") in force from ``SimParams.drift_day`` on. Off by
# default; the order here is the canonical spec order. ``price_change`` and ``product_change``
# change what drives churn and expansion (concept drift); ``new_channel`` (who signs up) and
# ``usage_drop`` (what the product logs) change the inputs (covariate shift), the first through
# the accounts' hidden state (``simulator._new_channel``), the second in the usage observables
# only (``_sim_observe.emit_usage``). ``billing_migration`` changes both: the inputs (many more
# failed payments) and what drives churn (failed payments stop mattering, low value starts to).
DRIFT_SCENARIOS = ("price_change", "product_change", "new_channel", "usage_drop",
                   "billing_migration")
# billing_migration: the new provider's own (technical) payment failure per invoice, card and
# other payment methods; the share of its failures its automatic retries recover; what is left
# of the payment-failure churn driver; the logit moved from the renewal decision to
# cancellations between renewals (customers cancel online at any time, not at the renewal);
# the weight of a shrinking company on churn (the new per-seat price list), on
# clip(-growth rate, 0, 1) (a constant of the account, so the churn oracle needs no new state)
MIGRATION_FAIL = (0.25, 0.08)
MIGRATION_RECOVERED = 0.9
MIGRATION_PAYMENT_WEIGHT = 0.15
MIGRATION_RENEWAL_SHIFT = 1.5
MIGRATION_SHRINKING = 2.5


@dataclass(frozen=True)
class SimParams:
    """Knobs of the hazard model (logit offsets are per week). Defaults are tuned so that the
    default book lands near real SaaS figures: monthly logo churn about 2%, about 2% of active
    accounts expanding per month (docs/simulator.md)."""

    churn_base: float = -4.1
    renew_offset_annual: float = 1.0  # churn decision at an annual renewal
    renew_offset_monthly: float = -1.35  # churn decision at each monthly renewal
    in_term_offset: float = -4.6  # cancellations between renewals (rare)
    expansion_base: float = -7.0
    buy_intent_base: float = -5.8
    contraction_base: float = -5.5
    downsize_intent_base: float = -5.8
    reactivation_weekly: float = 0.0008
    health_pull: float = 0.08  # weekly mean reversion of health toward the account's own level
    health_noise: float = 0.11
    drift: tuple[str, ...] = ()  # drift scenarios in force from drift_day (DRIFT_SCENARIOS)
    drift_day: float = float("inf")  # first day of the drifted world (days since 1970-01-01)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.logaddexp(0.0, x)


# Dynamic state columns (float64 in memory, written to _truth/state_weekly.parquet).
STATE_COLUMNS = (
    "active", "health", "adoption", "churn_intent", "buy_intent", "downsize_intent",
    "downsize_weeks", "weeks_since_champion_left",
    "weeks_since_budget_cut", "weeks_since_competitor", "weeks_since_goal", "users_needed",
    "seats", "plan", "addon_share", "mrr", "term_end_day", "next_invoice_day",
    "unresolved_until_day", "failed_payments_recent", "champion_gen", "churned_day",
)
# Static per-account latent attributes (written to _truth/accounts_latent.parquet).
STATIC_COLUMNS = (
    "segment_code", "annual_contract", "annual_billing", "n_contacts", "health_level",
    "adoption_target", "growth_rate", "card_payment", "created_day", "anchor_dom",
)


@dataclass
class Lanes:
    """Arrays of equal length, one entry per lane (static and dynamic state)."""

    segment_code: np.ndarray
    annual_contract: np.ndarray
    annual_billing: np.ndarray
    n_contacts: np.ndarray
    health_level: np.ndarray
    adoption_target: np.ndarray
    growth_rate: np.ndarray
    card_payment: np.ndarray
    created_day: np.ndarray
    anchor_dom: np.ndarray
    active: np.ndarray
    health: np.ndarray
    adoption: np.ndarray
    churn_intent: np.ndarray
    buy_intent: np.ndarray
    downsize_intent: np.ndarray
    downsize_weeks: np.ndarray  # weeks the downsize intent has been held (0 without it)
    weeks_since_champion_left: np.ndarray
    weeks_since_budget_cut: np.ndarray
    weeks_since_competitor: np.ndarray
    weeks_since_goal: np.ndarray
    users_needed: np.ndarray
    seats: np.ndarray
    plan: np.ndarray
    addon_share: np.ndarray
    mrr: np.ndarray
    term_end_day: np.ndarray
    next_invoice_day: np.ndarray
    unresolved_until_day: np.ndarray
    failed_payments_recent: np.ndarray
    champion_gen: np.ndarray
    churned_day: np.ndarray

    def take(self, index: np.ndarray) -> "Lanes":
        return Lanes(**{f.name: np.array(getattr(self, f.name)[index]) for f in fields(self)})

    @classmethod
    def from_columns(cls, columns) -> "Lanes":
        return cls(**{f.name: np.asarray(columns[f.name], dtype=np.float64).copy()
                      for f in fields(cls)})


def add_months(day: np.ndarray, months, anchor_dom: np.ndarray) -> np.ndarray:
    """``day`` moved by ``months`` calendar months, landing on ``anchor_dom`` (1-28)."""
    month = np.asarray(day, dtype=np.int64).astype("datetime64[D]").astype("datetime64[M]")
    target = month + np.asarray(months, dtype=np.int64)
    return (target.astype("datetime64[D]").astype(np.int64)
            + np.asarray(anchor_dom, dtype=np.int64) - 1)


def add_months_where(mask: np.ndarray, day: np.ndarray, months, anchor_dom: np.ndarray) -> np.ndarray:
    """``np.where(mask, add_months(day, months, anchor_dom), day)`` as float64, with the
    calendar arithmetic done on the masked lanes only (the same values: each lane is moved on
    its own; a week renews or invoices a few percent of the lanes)."""
    out = np.array(day, dtype=np.float64, copy=True)
    idx = np.flatnonzero(mask)
    if len(idx):
        months = np.asarray(months)
        out[idx] = add_months(out[idx], months[idx] if months.ndim else months,
                              np.asarray(anchor_dom)[idx])
    return out


def compute_mrr(lanes: Lanes) -> np.ndarray:
    return np.round(lanes.seats * PRICE_PER_SEAT[lanes.plan.astype(int)]
                    * (1.0 + lanes.addon_share), 2)


#: a probability :func:`hazards` did not compute (``churn_only``): an empty array, so any use
#: of it beside the lanes fails loudly instead of reading a wrong value
NOT_COMPUTED = np.zeros(0)


@dataclass
class WeekHazards:
    churn_renewal: np.ndarray  # probability of not renewing at a term end inside this week
    churn_in_term: np.ndarray  # probability of cancelling on some day of this week
    expansion: np.ndarray
    contraction: np.ndarray
    renewal_in_week: np.ndarray  # bool: term_end falls inside this week
    churn_drivers: dict  # additive logit terms
    expansion_drivers: dict
    contraction_drivers: dict
    # price_change drift: renewals in this week that carry the new list price (None: no drift)
    drift_price: np.ndarray | None = None
    # the logits behind the probabilities (what a CS action shifts, see apply_cs_effects):
    # churn_term, churn_renew (the renewal decision whatever the week), expansion, contraction
    # (at a renewal; between renewals 4.5 lower)
    logits: dict | None = None
    # billing_migration drift: each lane's technical payment failure per invoice this week (0
    # before the change; None: no such drift)
    tech_fail: np.ndarray | None = None

    @property
    def churn_week(self) -> np.ndarray:
        return 1.0 - (1.0 - self.churn_renewal) * (1.0 - self.churn_in_term)


def hazards(s: Lanes, week_day: int, p: SimParams, churn_only: bool = False) -> WeekHazards:
    """Event probabilities for the week starting at ``week_day`` from the state in force.

    ``churn_only`` (the churn oracle, which needs nothing else): only ``churn_renewal``,
    ``churn_in_term``, ``renewal_in_week`` and the churn drivers are computed, with the same
    values; the other probabilities are empty arrays (:data:`NOT_COMPUTED`)."""
    tenure = week_day - s.created_day
    early = (tenure < 90).astype(float)
    single = (s.n_contacts <= 1).astype(float)
    unresolved = (s.unresolved_until_day > week_day).astype(float)
    seg_offset = np.array([0.25, 0.0, -0.5])[s.segment_code.astype(int)]

    drift = p.drift
    # 1.0 for weeks from the drift's change date on (week_day is an array in the oracle)
    post = (np.asarray(week_day) >= p.drift_day).astype(float) if drift else 0.0
    cd = {
        "low_health": 1.5 * _softplus(-s.health - 0.3),
        # low adoption is what kills accounts in their first 90 days; later it barely matters
        "early_low_adoption": early * 3.5 * (1.0 - s.adoption) ** 2,
        "low_adoption": 0.3 * (1.0 - s.adoption),
        "churn_intent": 2.3 * s.churn_intent,
        # a champion leaving hurts single-threaded accounts far more than multi-threaded ones
        "champion_left": np.exp(-s.weeks_since_champion_left / 16.0) * (2.4 * single + 0.3 * (1 - single)),
        "budget_cut": 0.9 * np.exp(-s.weeks_since_budget_cut / 12.0),
        # a competitor only bites when the account is already unhappy
        "competitor": 1.4 * np.exp(-s.weeks_since_competitor / 10.0) * _sig(-3.0 * s.health),
        "payment_failure": 1.0 * unresolved + 0.9 * (s.failed_payments_recent > 1.5),
        "relationship_breadth": -0.3 * np.log(np.maximum(s.n_contacts, 1.0)),
        "segment": seg_offset,
    }
    in_term_unresolved = 1.2 * unresolved
    if "price_change" in drift:
        # after a price increase, payment problems (a failed payment still unpaid, repeated
        # failures) are the moment customers re-evaluate: they weigh 1.9x on churn
        cd["payment_failure"] = cd["payment_failure"] * (1.0 + 0.9 * post)
        in_term_unresolved = in_term_unresolved * (1.0 + 0.8 * post)
    tech_fail = None
    in_term_extra: np.ndarray | float = 0.0
    if "billing_migration" in drift:
        # a new billing provider: its stricter card checks fail many more payments, for reasons
        # that say nothing about the customer, and its retries recover most of them, so a failed
        # payment stops signalling an unhappy customer; its self-serve portal lets customers
        # cancel online any time, so churn no longer waits for the renewal; its new per-seat
        # price list makes a shrinking company (fewer people to pay seats for) leave
        cd["payment_failure"] = cd["payment_failure"] * (1.0 - (1.0 - MIGRATION_PAYMENT_WEIGHT) * post)
        in_term_unresolved = in_term_unresolved * (1.0 - (1.0 - MIGRATION_PAYMENT_WEIGHT) * post)
        cd["shrinking"] = post * MIGRATION_SHRINKING * np.clip(-s.growth_rate, 0.0, 1.0)
        in_term_extra = MIGRATION_RENEWAL_SHIFT * post
        tech_fail = post * np.where(s.card_payment > 0, MIGRATION_FAIL[0], MIGRATION_FAIL[1])
    base = p.churn_base + sum(cd.values())
    term_end = s.term_end_day
    renewal_in_week = (term_end >= week_day) & (term_end < week_day + 7)
    renew_offset = np.where(s.annual_contract > 0, p.renew_offset_annual, p.renew_offset_monthly)
    if "billing_migration" in drift:
        renew_offset = renew_offset - in_term_extra
    churn_renewal = np.where(renewal_in_week, _sig(base + renew_offset), 0.0)
    churn_in_term = _sig(base + p.in_term_offset + in_term_unresolved + in_term_extra)
    if churn_only:
        return WeekHazards(churn_renewal, churn_in_term, NOT_COMPUTED, NOT_COMPUTED, renewal_in_week,
                           cd, {}, {}, tech_fail=tech_fail)
    drift_price = None
    if "price_change" in drift:
        # the new list price applies at each contract's first renewal on or after the change
        # (the previous term's start, computed on the renewing lanes: the others are False)
        months = np.where(s.annual_contract > 0, 12, 1)
        prev_start = add_months_where(renewal_in_week, term_end, -months, s.anchor_dom)
        drift_price = renewal_in_week & (term_end >= p.drift_day) & (prev_start < p.drift_day)

    seat_use = s.users_needed / np.maximum(s.seats, 1.0)
    days_to_renewal = term_end - week_day
    ed = {
        "buy_intent": 3.0 * s.buy_intent,
        "seats_near_limit": 2.5 * np.clip(seat_use - 0.9, 0.0, 0.6),
        "health": 0.7 * np.clip(s.health, 0.0, 2.0),
        # expansion is negotiated 30-90 days before an annual renewal
        "renewal_window": 0.6 * ((days_to_renewal > 30) & (days_to_renewal <= 90)
                                  & (s.annual_contract > 0)),
        "early_life": -4.0 * (tenure < 60),
        "churn_intent": -1.5 * s.churn_intent,
    }
    if "product_change" in drift:
        # a repackaged product sells expansion to growing companies: how broadly and happily
        # the product is used (health) stops mattering; headcount growth takes over
        ed["health"] = ed["health"] * (1.0 - post)
        ed["headcount_growth"] = post * 1.5 * np.clip(s.growth_rate, 0.0, 1.0)
    expansion = _sig(p.expansion_base + sum(ed.values()))

    xd = {
        # a decision to spend less, taken after a budget cut, after a champion left, with seats
        # left unused or when unhappy (see advance), carried out at a renewal once the internal
        # review is done (held for DOWNSIZE_NOTICE_WEEKS)
        "downsize_intent": 5.9 * s.downsize_intent * (s.downsize_weeks >= DOWNSIZE_NOTICE_WEEKS),
        "budget_cut": 0.6 * np.exp(-s.weeks_since_budget_cut / 12.0),
        "low_seat_use": 0.5 * np.clip(0.7 - seat_use, 0.0, 0.7),
        "low_health": 0.2 * _softplus(-s.health - 0.5),
    }
    # downsells are negotiated at renewal; between renewals they are rare
    c_logit = p.contraction_base + sum(xd.values()) - 4.5 * (~renewal_in_week)
    contraction = _sig(c_logit) * (s.seats > 1)
    logits = {"churn_term": base + p.in_term_offset + in_term_unresolved + in_term_extra,
              "churn_renew": base + renew_offset,
              "expansion": p.expansion_base + sum(ed.values()),
              "contraction": p.contraction_base + sum(xd.values()),
              "contraction_possible": (s.seats > 1).astype(float)}
    return WeekHazards(churn_renewal, churn_in_term, expansion, contraction, renewal_in_week,
                       cd, ed, xd, drift_price, logits, tech_fail)


@dataclass
class WeekEvents:
    churn: np.ndarray  # bool
    churn_day: np.ndarray
    expansion: np.ndarray
    expansion_day: np.ndarray
    expansion_kind: np.ndarray  # 0 seats, 1 upsell, 2 cross_sell
    contraction: np.ndarray
    contraction_day: np.ndarray
    renewed: np.ndarray
    price_increase: np.ndarray
    invoice_due: np.ndarray
    invoice_day: np.ndarray
    invoice_amount: np.ndarray
    invoice_outcome: np.ndarray  # 0 on time, 1 late, 2 failed
    invoice_paid_day: np.ndarray  # NaN = never paid
    second_failure: np.ndarray
    shocks: dict  # name -> (bool, day)
    drift_price: np.ndarray | None = None  # price increases that are the drift's new list price


@dataclass
class EventDraws:
    """Every random number :func:`draw_events` takes in a week, drawn in the simulator's order
    (:func:`event_draws`). The draws do not depend on the state, only on the number of lanes,
    so a caller that needs only part of a week's events still draws all of them and the
    stream stays the same for the weeks and lanes after it."""

    u: np.ndarray  # (6, n) uniforms: churn at renewal, in term, its day, expansion, contraction, kind
    day_draw: np.ndarray  # (2, n) day of the week of an expansion, a contraction
    price: np.ndarray  # (n,) uniform: price increase at an annual renewal
    v: np.ndarray  # (4, n) uniforms: invoice failed, late, days early, recovered
    late_normal: np.ndarray  # (n,) standard normal: days late
    recover_weeks: np.ndarray  # (n,) geometric: weeks until a failed payment is recovered
    w: np.ndarray  # (4, n) uniforms: the four shocks
    shock_day: np.ndarray  # (4, n) day of the week of each shock


def event_draws(n: int, rng: np.random.Generator) -> EventDraws:
    u = rng.random((6, n))
    day_draw = rng.integers(0, 7, size=(2, n))
    price = rng.random(n)
    v = rng.random((4, n))
    late_normal = rng.standard_normal(n)
    recover_weeks = rng.geometric(0.35, size=n)
    w = rng.random((4, n))
    shock_day = rng.integers(0, 7, size=(4, n))
    return EventDraws(u, day_draw, price, v, late_normal, recover_weeks, w, shock_day)


def draw_events(s: Lanes, hz: WeekHazards, week_day: int, rng: np.random.Generator | None,
                suppress: str | None = None, draws: EventDraws | None = None) -> WeekEvents:
    """Draw this week's revenue events and invoices for active lanes.

    ``suppress`` ("churn" | "expansion" | "contraction") removes that event (the oracle's "not
    yet happened" world, see :func:`oracle_survival`). Churn takes precedence over expansion and contraction
    in the same week; expansion over contraction. ``draws``: the week's random numbers, drawn
    beforehand from ``rng`` by :func:`event_draws` (the oracle draws them in another thread).
    """
    n = len(s.active)
    d = _given_or_drawn(draws, n, rng)
    act = s.active > 0
    u = d.u
    renew_churn = act & (u[0] < hz.churn_renewal)
    term_churn = act & ~renew_churn & (u[1] < hz.churn_in_term)
    churn = renew_churn | term_churn
    churn_day = np.where(renew_churn, s.term_end_day,
                         week_day + np.floor(u[2] * 7)).astype(float)
    if suppress == "churn":
        churn = np.zeros(n, bool)
    expansion = act & ~churn & (u[3] < hz.expansion)
    if suppress == "expansion":
        expansion = np.zeros(n, bool)
    contraction = act & ~churn & ~expansion & (u[4] < hz.contraction)
    if suppress == "contraction":
        contraction = np.zeros(n, bool)
    day_draw = d.day_draw
    seat_use = s.users_needed / np.maximum(s.seats, 1.0)
    kind = np.where(seat_use > 0.9, 0, np.where((s.plan < 3) & (u[5] < 0.55), 1, 2))
    renewed = act & ~churn & hz.renewal_in_week
    price_increase = renewed & (s.annual_contract > 0) & (d.price < 0.06)

    # invoices: due once per billing period, outcome driven by health and payment method
    inv_due = act & (s.next_invoice_day < week_day + 7)
    inv_due &= ~churn | (s.next_invoice_day < churn_day)
    v = d.v
    fail_p = _payment_fail(s, hz)
    late_p = _sig(-2.3 - 1.0 * s.health + 0.8 * (1 - s.card_payment))
    outcome = np.where(v[0] < fail_p, 2, np.where(v[1] < late_p, 1, 0))
    late_days = np.ceil(np.exp(np.log(10.0) + 0.7 * d.late_normal))
    early_days = np.floor(v[2] * 6)
    recover_weeks = d.recover_weeks
    recovered = v[3] < _recovered_share(hz)
    paid = np.where(outcome == 0, s.next_invoice_day - early_days,
                    np.where(outcome == 1, s.next_invoice_day + late_days,
                             np.where(recovered, s.next_invoice_day + 7 * recover_weeks, np.nan)))
    second_failure = (outcome == 2) & (~recovered | (recover_weeks > 1))
    periods = np.where(s.annual_billing > 0, 12.0, 1.0)
    amount = np.round(s.mrr * periods, 2)

    # shocks of the week (applied by advance, observed by the touchpoint writer)
    shocks = _shocks(s, act, d.w)
    shock_days = d.shock_day + week_day
    shocks_days = {k: (v_, shock_days[i]) for i, (k, v_) in enumerate(shocks.items())}
    # a change in a renewal week is negotiated at the renewal: it takes effect on term_end
    renewal_day = np.where(hz.renewal_in_week, s.term_end_day, np.nan)
    exp_day = np.where(hz.renewal_in_week, renewal_day, week_day + day_draw[0])
    con_day = np.where(hz.renewal_in_week, renewal_day, week_day + day_draw[1])
    drift_price = None
    if hz.drift_price is not None:
        drift_price = renewed & hz.drift_price & ~expansion & ~contraction
        price_increase = price_increase | drift_price
    price_increase &= ~expansion & ~contraction
    return WeekEvents(churn, churn_day, expansion, exp_day, kind,
                      contraction, con_day, renewed, price_increase,
                      inv_due, s.next_invoice_day.copy(), amount, outcome, paid,
                      second_failure, shocks_days, drift_price)


def _payment_fail(s: Lanes, hz: WeekHazards):
    """Probability that an invoice's payment fails: the customer's (health, payment method,
    intent to leave) and, with the billing_migration drift, the provider's own on top."""
    fail_p = _sig(-4.6 - 0.9 * s.health + 0.9 * s.card_payment + 1.0 * s.churn_intent)
    if hz.tech_fail is not None:
        fail_p = 1.0 - (1.0 - fail_p) * (1.0 - hz.tech_fail)
    return fail_p


def _recovered_share(hz: WeekHazards):
    """Share of failed payments recovered later: 0.7, the migrated provider's retries more."""
    if hz.tech_fail is None:
        return 0.7
    return np.where(hz.tech_fail > 0, MIGRATION_RECOVERED, 0.7)


def _shocks(s: Lanes, act: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "champion_left": act & (w[0] < 0.0045),
        "budget_cut": act & (w[1] < 0.0022 + 0.0025 * _sig(-2.0 * s.health)),
        "competitor": act & (w[2] < 0.0025 + 0.005 * _sig(-2.0 * s.health)),
        "rollout_success": act & (w[3] < 0.012 * _sig(s.health) * s.adoption),
    }


def _given_or_drawn(draws: EventDraws | None, n: int, rng: np.random.Generator | None) -> EventDraws:
    if draws is not None:
        if draws.price.shape != (n,):
            raise ValueError(f"draws for {draws.price.shape} lanes, not {n}")
        return draws
    if rng is None:
        raise ValueError("draw_events needs rng or draws")
    return event_draws(n, rng)


def draw_events_churn_oracle(s: Lanes, hz: WeekHazards, week_day, draws: EventDraws) -> WeekEvents:
    """:func:`draw_events` with ``suppress="churn"``, computing only what
    :func:`advance` with ``churn_only`` reads (renewals, invoices due and failed, their
    recovery, the shocks); the same draws, the same values for those. The other fields are
    empty arrays (:data:`NOT_COMPUTED`)."""
    n = len(s.active)
    d = _given_or_drawn(draws, n, None)
    act = s.active > 0
    none = np.zeros(n, bool)
    renewed = act & hz.renewal_in_week
    inv_due = act & (s.next_invoice_day < week_day + 7)
    fail_p = _payment_fail(s, hz)
    failed = d.v[0] < fail_p  # outcome 2; late (1) and on time (0) change nothing churn reads
    recovered = d.v[3] < _recovered_share(hz)
    # paid day of a failed invoice (what advance reads of ev.invoice_paid_day)
    paid = np.where(recovered, s.next_invoice_day + 7 * d.recover_weeks, np.nan)
    second_failure = failed & (~recovered | (d.recover_weeks > 1))
    outcome = np.where(failed, 2, 0)
    shocks = {k: (v_, NOT_COMPUTED) for k, v_ in _shocks(s, act, d.w).items()}
    return WeekEvents(none, NOT_COMPUTED, none, NOT_COMPUTED, NOT_COMPUTED, none, NOT_COMPUTED,
                      renewed, none, inv_due, NOT_COMPUTED, NOT_COMPUTED, outcome, paid,
                      second_failure, shocks, None)


def advance_draws(n: int, rng: np.random.Generator, rng_x: np.random.Generator | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every random number :func:`advance` takes in a week, in its order: normals (4, n),
    uniforms (6, n), and the downsize intent's uniforms (n,) from ``rng_x`` (``rng`` when not
    given). Like :func:`event_draws`, they do not depend on the state."""
    z = rng.standard_normal((4, n))
    u = rng.random((6, n))
    ux = (rng if rng_x is None else rng_x).random(n)
    return z, u, ux


def advance(s: Lanes, ev: WeekEvents, week_day: int, p: SimParams,
            rng: np.random.Generator | None, rng_x: np.random.Generator | None = None,
            churn_only: bool = False,
            draws: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
    """Move every lane's state (in place) from this week to the next.

    ``rng_x`` is the separate stream of the contraction mechanism (downsize intent), so that
    adding it did not shift the draws of the rest (``rng`` when not given).

    ``churn_only`` (the churn oracle, whose lanes never churn and which reads only the churn
    hazards): only the state those hazards read next week is moved (health, adoption, the
    shock timers, churn intent, term end, invoices and failed payments), with the same values
    and the same draws; the rest (seats, plan, mrr, buy and downsize intent, users needed)
    keeps its values from as_of. ``draws``: the week's random numbers, drawn beforehand from
    ``rng`` and ``rng_x`` by :func:`advance_draws`."""
    n = len(s.active)
    act = s.active > 0
    single = s.n_contacts <= 1
    if draws is None:
        if rng is None:
            raise ValueError("advance needs rng or draws")
        draws = advance_draws(n, rng, rng_x)
    z, u, ux = draws
    if ux.shape != (n,):
        raise ValueError(f"draws for {ux.shape} lanes, not {n}")

    # health: mean-reverting toward the account's own level, plus shocks
    champ, budget, comp, rollout = (ev.shocks[k][0] for k in
                                    ("champion_left", "budget_cut", "competitor", "rollout_success"))
    h = s.health + p.health_pull * (s.health_level + 0.4 * (s.adoption - 0.7) - s.health)
    h += p.health_noise * z[0]
    h -= np.where(champ, np.where(single, 0.9, 0.25), 0.0)
    h -= 0.35 * budget + 0.25 * comp
    h += 0.5 * rollout
    s.health = np.where(act, h, s.health)
    s.adoption = np.where(act, np.clip(s.adoption + 0.07 * (s.adoption_target - s.adoption)
                                       + 0.02 * z[1], 0.0, 1.0), s.adoption)
    timers = (("weeks_since_champion_left", champ), ("weeks_since_budget_cut", budget),
              ("weeks_since_competitor", comp), ("weeks_since_goal", rollout))
    for name, hit in timers[:3] if churn_only else timers:
        setattr(s, name, np.where(hit, 0.0, np.minimum(getattr(s, name) + act, NEVER)))
    if not churn_only:
        s.champion_gen = s.champion_gen + champ

    # intents: latent decisions that precede churn and expansion and show in touchpoints
    on = _sig(-4.9 - 1.3 * s.health + 2.0 * np.exp(-s.weeks_since_champion_left / 8.0) * single
              + 1.0 * np.exp(-s.weeks_since_budget_cut / 8.0)
              + 0.8 * np.exp(-s.weeks_since_competitor / 8.0))
    off = 0.05 + 0.1 * _sig(3.0 * (s.health - 0.5))
    ci = np.where(s.churn_intent > 0, u[0] >= off, u[0] < on)
    s.churn_intent = np.where(act, ci, s.churn_intent).astype(float)
    if churn_only:
        _advance_contract_and_invoices(s, ev)
        return
    seat_use = s.users_needed / np.maximum(s.seats, 1.0)
    tenure = week_day - s.created_day
    if "product_change" in p.drift and np.any(np.asarray(week_day) >= p.drift_day):
        # product_change: buying is driven by headcount growth, no longer by health or by
        # goals reached with the product (its breadth of use)
        post = (np.asarray(week_day) >= p.drift_day).astype(float)
        b_on = _sig(p.buy_intent_base + 3.0 * np.clip(seat_use - 0.85, 0.0, 0.5)
                    + (1.0 - post) * (0.9 * np.clip(s.health - 0.3, 0.0, 2.0)
                                      + 1.2 * np.exp(-s.weeks_since_goal / 8.0))
                    + (1.0 + 1.5 * post) * s.growth_rate
                    - 3.0 * (tenure < 60) - 2.0 * s.churn_intent
                    - 1.5 * np.exp(-s.weeks_since_budget_cut / 12.0))
    else:
        b_on = _sig(p.buy_intent_base + 3.0 * np.clip(seat_use - 0.85, 0.0, 0.5)
                    + 0.9 * np.clip(s.health - 0.3, 0.0, 2.0)
                    + 1.2 * np.exp(-s.weeks_since_goal / 8.0) + 1.0 * s.growth_rate
                    - 3.0 * (tenure < 60) - 2.0 * s.churn_intent
                    - 1.5 * np.exp(-s.weeks_since_budget_cut / 12.0))
    bi = np.where(s.buy_intent > 0, u[1] >= 0.07, u[1] < b_on)
    s.buy_intent = np.where(act, bi, s.buy_intent).astype(float)
    # downsize intent: the decision to cut seats or the plan at the next renewal; it lasts
    # (a few % a week let it go) until the renewal carries it out
    d_on = _sig(p.downsize_intent_base + 3.6 * np.exp(-s.weeks_since_budget_cut / 10.0)
                + 1.0 * np.clip(0.75 - seat_use, 0.0, 0.5)
                + 2.0 * np.exp(-s.weeks_since_champion_left / 10.0)
                + 0.4 * _softplus(-s.health - 0.3))
    di = np.where(s.downsize_intent > 0, ux >= 0.02, ux < d_on)
    s.downsize_intent = np.where(act, di, s.downsize_intent).astype(float)
    s.downsize_weeks = np.where(act, np.where(di, s.downsize_weeks + 1, 0.0), s.downsize_weeks)

    # company growth: the number of people who need the product drifts with its growth rate
    s.users_needed = np.where(act, s.users_needed * np.exp(s.growth_rate / 52.0 + 0.015 * z[2]),
                              s.users_needed)

    # revenue events
    exp = ev.expansion
    kind = ev.expansion_kind
    s.seats = np.where(exp & (kind == 0),
                       np.ceil(np.maximum(s.users_needed * 1.15, s.seats * 1.2)), s.seats)
    s.plan = np.where(exp & (kind == 1), np.minimum(s.plan + 1, 3), s.plan)
    s.addon_share = np.where(exp & (kind == 2), s.addon_share + 0.2, s.addon_share)
    s.buy_intent = np.where(exp, 0.0, s.buy_intent)
    con = ev.contraction
    # seats unused: cut down to what is used (at most by half); else 10-40% fewer seats
    unused = seat_use < 0.8
    cut = np.where(unused, np.ceil(s.users_needed * (1.15 + 0.2 * u[2])),
                   np.floor(s.seats * (0.6 + 0.3 * u[2])))
    cut = np.maximum(1.0, np.minimum(np.maximum(cut, np.floor(s.seats * 0.5)), s.seats - 1))
    s.seats = np.where(con, cut, s.seats)
    s.addon_share = np.where(con & (s.addon_share > 0), s.addon_share * 0.5, s.addon_share)
    s.downsize_intent = np.where(con, 0.0, s.downsize_intent)
    s.downsize_weeks = np.where(con, 0.0, s.downsize_weeks)
    price = np.where(ev.price_increase, 1.0 + 0.05 + 0.05 * u[3], 1.0)
    if ev.drift_price is not None:  # price_change drift: the new list price, 12-18% more
        price = np.where(ev.drift_price, 1.12 + 0.06 * u[3], price)
    new_mrr = compute_mrr(s)
    s.mrr = np.where(exp | con, new_mrr, np.round(s.mrr * price, 2))
    # an upsell or seat change keeps mrr consistent with seats; a price increase only scales it
    _advance_contract_and_invoices(s, ev)

    # churn ends the lane's activity; a churned account may rarely come back
    s.active = np.where(ev.churn, 0.0, s.active)
    s.churned_day = np.where(ev.churn, ev.churn_day, s.churned_day)


def _advance_contract_and_invoices(s: Lanes, ev: WeekEvents) -> None:
    """Renewed terms and due invoices move to their next date; failed payments are recorded."""
    months = np.where(s.annual_contract > 0, 12, 1)
    s.term_end_day = add_months_where(ev.renewed, s.term_end_day, months, s.anchor_dom)
    bill = np.where(s.annual_billing > 0, 12, 1)
    s.next_invoice_day = add_months_where(ev.invoice_due, s.next_invoice_day, bill, s.anchor_dom)
    failed = ev.invoice_due & (ev.invoice_outcome == 2)
    until = np.where(np.isnan(ev.invoice_paid_day), 1e9, ev.invoice_paid_day)
    s.unresolved_until_day = np.where(failed, np.maximum(s.unresolved_until_day, until),
                                      s.unresolved_until_day)
    s.failed_payments_recent = (s.failed_payments_recent * 0.93
                                + failed + ev.second_failure * failed)


def reactivate(s: Lanes, week_day: int, p: SimParams, rng: np.random.Generator) -> np.ndarray:
    """Rare win-backs of churned lanes (main simulation only); returns the boolean mask."""
    n = len(s.active)
    gone = (s.active == 0) & ~np.isnan(s.churned_day) & (s.churned_day < week_day)
    back = gone & (rng.random(n) < p.reactivation_weekly)
    z = rng.standard_normal(n)
    s.active = np.where(back, 1.0, s.active)
    s.health = np.where(back, s.health_level + 0.3 * z, s.health)
    s.churn_intent = np.where(back, 0.0, s.churn_intent)
    s.buy_intent = np.where(back, 0.0, s.buy_intent)
    s.downsize_intent = np.where(back, 0.0, s.downsize_intent)
    s.downsize_weeks = np.where(back, 0.0, s.downsize_weeks)
    s.seats = np.where(back, np.maximum(1.0, np.floor(s.seats * 0.8)), s.seats)
    s.mrr = np.where(back, compute_mrr(s), s.mrr)
    month_start = np.datetime64(int(week_day), "D").astype("datetime64[M]").astype("datetime64[D]")
    dom = min(int(week_day - month_start.astype(np.int64)) + 1, 28)
    s.anchor_dom = np.where(back, float(dom), s.anchor_dom)
    start = np.full(n, float(week_day))
    months = np.where(s.annual_contract > 0, 12, 1)
    s.term_end_day = np.where(back, add_months(start, months, s.anchor_dom), s.term_end_day)
    s.next_invoice_day = np.where(back, add_months(start, np.where(s.annual_billing > 0, 12, 1),
                                                   s.anchor_dom), s.next_invoice_day)
    s.unresolved_until_day = np.where(back, 0.0, s.unresolved_until_day)
    s.failed_payments_recent = np.where(back, 0.0, s.failed_payments_recent)
    s.churned_day = np.where(back, np.nan, s.churned_day)
    return back


# --------------------------------------------------------------------------------------------
# the CS team's plays (``simulate(cs_team=...)``, docs/simulator.md "CS team")
# --------------------------------------------------------------------------------------------

#: The plays the effect model knows (the playbooks of features/playbooks.yaml); a play not
#: listed has no effect (code -1).
CS_PLAYS = ("low_usage", "value_review", "champion_left", "payment_recovery", "budget",
            "competitor", "detractor_call", "re_engage", "multi_thread", "save_call",
            "expansion_conversation", "right_size", "keep_warm")
#: Plays that are not a contact a customer could resent (a billing retry, the regular cadence).
CS_NO_CONTACT = ("payment_recovery", "keep_warm")


@dataclass(frozen=True)
class CsEffectParams:
    """True effects of the plays: shifts of the weekly logits (negative on churn = fewer
    churns) that depend on the account's hidden state when the play is worked. Defaults are
    documented in docs/simulator.md ("CS team"); every term is a parameter."""

    weeks: int = 13  # an action acts on the 13 weeks after the week it is taken in
    save_call_intent: float = -1.4  # x churn intent x (1 - budget cut recency)
    engagement: float = -0.8  # re_engage / low_usage / detractor_call: x unhappiness x (1 - budget)
    value_review_by_segment: tuple[float, float, float] = (-0.1, -0.4, -0.9)  # EBR: large accounts
    value_review_expansion_by_segment: tuple[float, float, float] = (0.0, 0.2, 0.5)
    champion_left: float = -1.5  # x champion-loss recency
    payment_unresolved: float = -1.2  # x an unresolved failed payment
    payment_base: float = -0.1
    budget_churn: float = -0.9  # x budget cut recency
    budget_contraction: float = 0.8  # a pause or downgrade offer: more contraction
    competitor: float = -0.9  # x competitor recency x unhappiness
    multi_thread: float = -0.35  # single-threaded accounts only
    expansion_intent: float = 1.3  # expansion_conversation: x buy intent
    expansion_base: float = 0.15
    right_size_contraction: float = -1.0  # x downsize intent
    right_size_churn: float = -0.15
    reacts_badly_share: float = 0.06  # accounts that react badly to any contact
    reacts_badly_churn: float = 0.8  # their churn logit rises with any contact
    reacts_badly_expansion: float = -0.5


def cs_play_codes(names) -> np.ndarray:
    """Codes into :data:`CS_PLAYS` (-1 for a play the effect model does not know)."""
    import pandas as pd

    return np.asarray(pd.Categorical(np.asarray(names, dtype=object), categories=CS_PLAYS).codes,
                      dtype=np.int64)


def cs_effects(s: Lanes, lanes: np.ndarray, play: np.ndarray, week_day: int,
               reacts_badly: np.ndarray, q: CsEffectParams) -> tuple[np.ndarray, ...]:
    """``(churn, expansion, contraction)`` logit shifts of working play ``play`` (codes of
    :data:`CS_PLAYS`) on ``lanes`` given their hidden state in the week of ``week_day``."""
    h = s.health[lanes]
    unhappy = _sig(-2.0 * h)  # an engagement problem: low health
    budget = np.exp(-s.weeks_since_budget_cut[lanes] / 12.0)
    champ = np.exp(-s.weeks_since_champion_left[lanes] / 16.0)
    comp = np.exp(-s.weeks_since_competitor[lanes] / 10.0)
    single = (s.n_contacts[lanes] <= 1).astype(float)
    seg = s.segment_code[lanes].astype(int)
    unresolved = (s.unresolved_until_day[lanes] > week_day).astype(float)
    code = {name: i for i, name in enumerate(CS_PLAYS)}
    zero = np.zeros(len(lanes))
    churn = np.select(
        [play == code["save_call"],
         np.isin(play, [code["re_engage"], code["low_usage"], code["detractor_call"]]),
         play == code["value_review"], play == code["champion_left"],
         play == code["payment_recovery"], play == code["budget"],
         play == code["competitor"], play == code["multi_thread"], play == code["right_size"]],
        [q.save_call_intent * s.churn_intent[lanes] * (1.0 - budget),
         q.engagement * unhappy * (1.0 - budget),
         np.array(q.value_review_by_segment)[seg] * (0.5 + 0.5 * unhappy),
         q.champion_left * champ,
         q.payment_base + q.payment_unresolved * unresolved,
         q.budget_churn * budget,
         q.competitor * comp * unhappy,
         q.multi_thread * single,
         np.full(len(lanes), q.right_size_churn)],
        default=zero)
    expansion = np.select(
        [play == code["expansion_conversation"], play == code["value_review"]],
        [q.expansion_base + q.expansion_intent * s.buy_intent[lanes],
         np.array(q.value_review_expansion_by_segment)[seg]], default=zero)
    contraction = np.select(
        [play == code["right_size"], play == code["budget"]],
        [q.right_size_contraction * s.downsize_intent[lanes],
         q.budget_contraction * budget], default=zero)
    contact = (play >= 0) & ~np.isin(play, [code[x] for x in CS_NO_CONTACT])
    bad = contact & np.asarray(reacts_badly, dtype=bool)
    churn = churn + bad * q.reacts_badly_churn
    expansion = expansion + bad * q.reacts_badly_expansion
    return churn, expansion, contraction


def apply_cs_effects(hz: WeekHazards, churn: np.ndarray, expansion: np.ndarray,
                     contraction: np.ndarray) -> None:
    """Shift this week's hazards (in place) by the logit shifts of the actions in force; the
    shift also shows as the ``cs_action`` driver of churn, expansion and contraction."""
    lg = hz.logits
    assert lg is not None
    hz.churn_renewal = np.where(hz.renewal_in_week, _sig(lg["churn_renew"] + churn), 0.0)
    hz.churn_in_term = _sig(lg["churn_term"] + churn)
    hz.expansion = _sig(lg["expansion"] + expansion)
    hz.contraction = (_sig(lg["contraction"] + contraction - 4.5 * (~hz.renewal_in_week))
                      * lg["contraction_possible"])
    hz.churn_drivers["cs_action"] = churn
    hz.expansion_drivers["cs_action"] = expansion
    hz.contraction_drivers["cs_action"] = contraction


def frozen_outcome_probabilities(s: Lanes, hz: WeekHazards, lanes: np.ndarray, week_day: int,
                                 shift: tuple[np.ndarray, ...], effect_weeks: int = 13,
                                 horizon_weeks: int = 13) -> tuple[np.ndarray, ...]:
    """``(churn, expansion, contraction)`` probabilities in the ``horizon_weeks`` weeks from
    ``week_day`` with the hidden state frozen at this week's (``hz``) and the logit ``shift``
    acting from the next week on for ``effect_weeks`` weeks (the first week unshifted, as an
    action taken this week acts from the next). Renewals in the window come from the contract
    (annual: its term end; monthly: every 30.44 days); events treated as independent (no
    competing risks). The truth of a play's effect: this with the play's shift minus this with
    none (docs/simulator.md, "CS team")."""
    lg = hz.logits
    assert lg is not None
    sc, se, sx = shift
    end = week_day + 7 * horizon_weeks
    te = s.term_end_day[lanes]
    monthly = s.annual_contract[lanes] <= 0
    j = np.arange(4)[None, :]
    dates = np.where(monthly[:, None], te[:, None] + 30.44 * j, np.where(j == 0, te[:, None], np.inf))
    in_window = (dates >= week_day) & (dates < end)
    first = (in_window & (dates < week_day + 7)).sum(axis=1)
    later_all = (in_window & (dates >= week_day + 7)).sum(axis=1)
    shifted_weeks = min(effect_weeks, horizon_weeks - 1)
    later_on = np.minimum(later_all, shifted_weeks)
    later_off = later_all - later_on
    plain_weeks = horizon_weeks - 1 - shifted_weeks

    ct, cr = lg["churn_term"][lanes], lg["churn_renew"][lanes]
    survive = ((1 - _sig(ct)) ** (1 + plain_weeks) * (1 - _sig(ct + sc)) ** shifted_weeks
               * (1 - _sig(cr)) ** (first + later_off) * (1 - _sig(cr + sc)) ** later_on)
    churn = 1.0 - survive
    ex = lg["expansion"][lanes]
    expansion = 1.0 - (1 - _sig(ex)) ** (1 + plain_weeks) * (1 - _sig(ex + se)) ** shifted_weeks
    cx, possible = lg["contraction"][lanes], lg["contraction_possible"][lanes]
    none = ((1 - _sig(cx)) ** (first + later_off) * (1 - _sig(cx + sx)) ** later_on
            * (1 - _sig(cx - 4.5)) ** np.maximum(1 + plain_weeks - first - later_off, 0)
            * (1 - _sig(cx + sx - 4.5)) ** np.maximum(shifted_weeks - later_on, 0))
    contraction = (1.0 - none) * possible
    return churn, expansion, contraction
