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
# Drift scenarios (docs/simulator.md, "Drift"): what drives churn and expansion changes from
# ``SimParams.drift_day`` on. Off by default; the order here is the canonical spec order.
DRIFT_SCENARIOS = ("price_change", "product_change")


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


def compute_mrr(lanes: Lanes) -> np.ndarray:
    return np.round(lanes.seats * PRICE_PER_SEAT[lanes.plan.astype(int)]
                    * (1.0 + lanes.addon_share), 2)


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

    @property
    def churn_week(self) -> np.ndarray:
        return 1.0 - (1.0 - self.churn_renewal) * (1.0 - self.churn_in_term)


def hazards(s: Lanes, week_day: int, p: SimParams) -> WeekHazards:
    """Event probabilities for the week starting at ``week_day`` from the state in force."""
    tenure = week_day - s.created_day
    early = (tenure < 90).astype(float)
    single = (s.n_contacts <= 1).astype(float)
    seat_use = s.users_needed / np.maximum(s.seats, 1.0)
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
    base = p.churn_base + sum(cd.values())
    term_end = s.term_end_day
    renewal_in_week = (term_end >= week_day) & (term_end < week_day + 7)
    renew_offset = np.where(s.annual_contract > 0, p.renew_offset_annual, p.renew_offset_monthly)
    churn_renewal = np.where(renewal_in_week, _sig(base + renew_offset), 0.0)
    churn_in_term = _sig(base + p.in_term_offset + in_term_unresolved)
    drift_price = None
    if "price_change" in drift:
        # the new list price applies at each contract's first renewal on or after the change
        months = np.where(s.annual_contract > 0, 12, 1)
        prev_start = add_months(term_end, -months, s.anchor_dom)
        drift_price = renewal_in_week & (term_end >= p.drift_day) & (prev_start < p.drift_day)

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
    return WeekHazards(churn_renewal, churn_in_term, expansion, contraction, renewal_in_week,
                       cd, ed, xd, drift_price)


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


def draw_events(s: Lanes, hz: WeekHazards, week_day: int, rng: np.random.Generator,
                suppress: str | None = None) -> WeekEvents:
    """Draw this week's revenue events and invoices for active lanes.

    ``suppress`` ("churn" | "expansion" | "contraction") removes that event (the oracle's "not
    yet happened" world, see :func:`oracle_survival`). Churn takes precedence over expansion and contraction
    in the same week; expansion over contraction.
    """
    n = len(s.active)
    act = s.active > 0
    u = rng.random((6, n))
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
    day_draw = rng.integers(0, 7, size=(2, n))
    seat_use = s.users_needed / np.maximum(s.seats, 1.0)
    kind = np.where(seat_use > 0.9, 0, np.where((s.plan < 3) & (u[5] < 0.55), 1, 2))
    renewed = act & ~churn & hz.renewal_in_week
    price_increase = renewed & (s.annual_contract > 0) & (rng.random(n) < 0.06)

    # invoices: due once per billing period, outcome driven by health and payment method
    inv_due = act & (s.next_invoice_day < week_day + 7)
    inv_due &= ~churn | (s.next_invoice_day < churn_day)
    v = rng.random((4, n))
    fail_p = _sig(-4.6 - 0.9 * s.health + 0.9 * s.card_payment + 1.0 * s.churn_intent)
    late_p = _sig(-2.3 - 1.0 * s.health + 0.8 * (1 - s.card_payment))
    outcome = np.where(v[0] < fail_p, 2, np.where(v[1] < late_p, 1, 0))
    late_days = np.ceil(np.exp(np.log(10.0) + 0.7 * rng.standard_normal(n)))
    early_days = np.floor(v[2] * 6)
    recover_weeks = rng.geometric(0.35, size=n)
    recovered = v[3] < 0.7
    paid = np.where(outcome == 0, s.next_invoice_day - early_days,
                    np.where(outcome == 1, s.next_invoice_day + late_days,
                             np.where(recovered, s.next_invoice_day + 7 * recover_weeks, np.nan)))
    second_failure = (outcome == 2) & (~recovered | (recover_weeks > 1))
    periods = np.where(s.annual_billing > 0, 12.0, 1.0)
    amount = np.round(s.mrr * periods, 2)

    # shocks of the week (applied by advance, observed by the touchpoint writer)
    w = rng.random((4, n))
    shocks = {
        "champion_left": act & (w[0] < 0.0045),
        "budget_cut": act & (w[1] < 0.0022 + 0.0025 * _sig(-2.0 * s.health)),
        "competitor": act & (w[2] < 0.0025 + 0.005 * _sig(-2.0 * s.health)),
        "rollout_success": act & (w[3] < 0.012 * _sig(s.health) * s.adoption),
    }
    shock_days = rng.integers(0, 7, size=(4, n)) + week_day
    shocks = {k: (v_, shock_days[i]) for i, (k, v_) in enumerate(shocks.items())}
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
                      second_failure, shocks, drift_price)


def advance(s: Lanes, ev: WeekEvents, week_day: int, p: SimParams,
            rng: np.random.Generator, rng_x: np.random.Generator | None = None) -> None:
    """Move every lane's state (in place) from this week to the next.

    ``rng_x`` is the separate stream of the contraction mechanism (downsize intent), so that
    adding it did not shift the draws of the rest (``rng`` when not given)."""
    n = len(s.active)
    act = s.active > 0
    single = s.n_contacts <= 1
    z = rng.standard_normal((4, n))
    u = rng.random((6, n))

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
    for name, hit in (("weeks_since_champion_left", champ), ("weeks_since_budget_cut", budget),
                      ("weeks_since_competitor", comp), ("weeks_since_goal", rollout)):
        setattr(s, name, np.where(hit, 0.0, np.minimum(getattr(s, name) + act, NEVER)))
    s.champion_gen = s.champion_gen + champ

    # intents: latent decisions that precede churn and expansion and show in touchpoints
    on = _sig(-4.9 - 1.3 * s.health + 2.0 * np.exp(-s.weeks_since_champion_left / 8.0) * single
              + 1.0 * np.exp(-s.weeks_since_budget_cut / 8.0)
              + 0.8 * np.exp(-s.weeks_since_competitor / 8.0))
    off = 0.05 + 0.1 * _sig(3.0 * (s.health - 0.5))
    ci = np.where(s.churn_intent > 0, u[0] >= off, u[0] < on)
    s.churn_intent = np.where(act, ci, s.churn_intent).astype(float)
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
    ux = (rng if rng_x is None else rng_x).random(n)
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
    months = np.where(s.annual_contract > 0, 12, 1)
    s.term_end_day = np.where(ev.renewed, add_months(s.term_end_day, months, s.anchor_dom),
                              s.term_end_day)
    bill = np.where(s.annual_billing > 0, 12, 1)
    s.next_invoice_day = np.where(ev.invoice_due,
                                  add_months(s.next_invoice_day, bill, s.anchor_dom),
                                  s.next_invoice_day)
    failed = ev.invoice_due & (ev.invoice_outcome == 2)
    until = np.where(np.isnan(ev.invoice_paid_day), 1e9, ev.invoice_paid_day)
    s.unresolved_until_day = np.where(failed, np.maximum(s.unresolved_until_day, until),
                                      s.unresolved_until_day)
    s.failed_payments_recent = (s.failed_payments_recent * 0.93
                                + failed + ev.second_failure * failed)

    # churn ends the lane's activity; a churned account may rarely come back
    s.active = np.where(ev.churn, 0.0, s.active)
    s.churned_day = np.where(ev.churn, ev.churn_day, s.churned_day)


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
