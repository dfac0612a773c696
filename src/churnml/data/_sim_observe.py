"""What the outside world sees of the hidden state each week: usage, touchpoints, NPS, invoices.

Every observable is drawn from the state in force during the week (``_sim_model.Lanes``) with
noise; nothing here feeds back into the state. Rows are appended to :class:`Buffers` as
compact numpy arrays (lane index, day / nanosecond timestamps, small integer codes) and turned
into the data-contract tables once at the end.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from churnml.data._sim_model import Lanes, WeekEvents, WeekHazards, _sig

USAGE_EVENTS = (
    "login", "dashboard_view", "report_create", "data_import", "share", "comment",
    "integration_sync", "api_call", "automation_run", "custom_report", "admin_config",
    "user_invited", "seat_limit_reached",
)
INVITED, SEAT_LIMIT = USAGE_EVENTS.index("user_invited"), USAGE_EVENTS.index("seat_limit_reached")
TOUCH_KINDS = (
    "meeting_held", "meeting_missed", "qbr_held", "email_sent", "email_replied",
    "support_ticket", "escalation", "champion_left", "billing_page_visit",
    "cancellation_inquiry", "data_export_request", "competitor_mentioned", "budget_cut",
    "payment_failed", "expansion_request", "goal_achieved", "referral_given",
    "downgrade_inquiry",
)
KIND = {k: i for i, k in enumerate(TOUCH_KINDS)}
NS_DAY = 86_400 * 10**9
# share of a week's product activity by weekday, Monday first (weekends are quiet)
WEEKDAY_SHARE = np.array([0.195, 0.195, 0.19, 0.185, 0.155, 0.045, 0.035])
COMMENTS = {
    "detractor": ("too expensive for what we use", "support is slow", "missing features we need",
                  "hard to get the team to adopt it"),
    "passive": ("works fine", "reporting could be better", "ok overall"),
    "promoter": ("great product", "the team loves it", "saves us hours every week"),
}
USER_CAP = 40  # tracked users per account (large accounts: a sample of their users)
# observables of the downsize intent (the contraction mechanism, docs/simulator.md)
DOWNSIZE_USER_DROP = 0.5  # share of the active users who stop using the product
# usage_drop drift (docs/simulator.md, "Drift"): from the change date a redesigned workflow
# needs fewer actions, so each login or feature-use row is logged with this probability
USAGE_DROP_KEEP = 0.5
DOWNSIZE_BILLING_VISITS = 0.9  # extra billing page visits a week (seat and plan prices)
DOWNSIZE_NPS = -1.0  # NPS points
# weekly chance that the customer asks the CSM about fewer seats or a cheaper plan: with the
# intent, and rarely without it (a question that leads nowhere)
DOWNSIZE_INQUIRY = 0.10
DOWNSIZE_INQUIRY_BASE = 0.002


class Buffers:
    """Column chunks per output table, concatenated at the end."""

    def __init__(self, created_day: np.ndarray) -> None:
        self.chunks: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        self.created_day = created_day
        self.cut_day = np.full(len(created_day), np.inf)  # churn day of the current week

    def add(self, table: str, **cols) -> None:
        for name, values in cols.items():
            self.chunks[table][name].append(values)

    def columns(self, table: str) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.chunks[table].items()}


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., c-1 for each group of a ``np.repeat(x, counts)`` (a vectorised cumcount)."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total) - starts


def _contact_code(s: Lanes, lanes: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """Contact id code lane*1000 + k: the champion (slot 0) gets a new id when replaced."""
    k = np.where(slot == 0, 100 + s.champion_gen[lanes], slot)
    return lanes.astype(np.int64) * 1000 + k.astype(np.int64)


def emit_usage(s: Lanes, act: np.ndarray, week_day: int, rng, buf: Buffers,
               usage_rate: float, rng_x=None, usage_drop: tuple | None = None) -> None:
    """The week's usage rows. ``usage_drop`` = ``(change_day, rng)``: the ``usage_drop`` drift,
    rows (logins and features, not the seat admin events) dated from ``change_day`` on are kept
    with probability ``USAGE_DROP_KEEP``, drawn from that stream (the main one is untouched)."""
    lanes = np.flatnonzero(act)
    h, a = s.health[lanes], s.adoption[lanes]
    cap = np.clip(np.floor(np.minimum(s.users_needed[lanes], s.seats[lanes])), 1, USER_CAP)
    p_active = _sig(0.4 + 1.1 * h - 1.2 * s.churn_intent[lanes]) * (0.25 + 0.75 * a)
    users = rng.binomial(cap.astype(np.int64), np.clip(p_active, 0, 1))
    # an account about to downsize has teams that stopped using the product (a project wound
    # down, the seats to be cut): part of its users are gone from the usage data
    drop = DOWNSIZE_USER_DROP * s.downsize_intent[lanes]
    users = users - (rng if rng_x is None else rng_x).binomial(users, drop)
    rate = users * usage_rate * np.exp(0.45 * h) * (0.4 + a)
    n = rng.poisson(rate)
    lane = np.repeat(lanes, n)
    m = len(lane)
    if m == 0:
        return
    users_r = np.repeat(users, n)
    user = np.floor(rng.random(m) * users_r).astype(np.int16)
    weekday = rng.choice(7, size=m, p=WEEKDAY_SHARE)
    second = rng.integers(7 * 3600, 20 * 3600, size=m)
    ts = (week_day + weekday).astype(np.int64) * NS_DAY + second.astype(np.int64) * 10**9
    # which event: logins, core features up to the account's breadth, advanced features
    a_r, h_r = np.repeat(a, n), np.repeat(h, n)
    breadth = np.clip(1 + np.floor(5.0 * a_r * _sig(1.5 * h_r + 0.5) + rng.random(m)), 1, 6)
    core = 1 + np.floor(rng.random(m) * breadth)
    advanced_ok = np.repeat(s.plan[lanes] >= 1, n)
    u = rng.random(m)
    # a team that wants more tries the advanced features of its plan (usage toward its limits)
    p_adv = advanced_ok * (0.28 * a_r ** 2 * _sig(h_r) + 0.12 * np.repeat(s.buy_intent[lanes], n))
    event = np.where(u < 0.36, 0, np.where(u < 0.36 + p_adv, 7 + np.floor(rng.random(m) * 4), core))
    qty = np.where(event == 0, 1.0, 1.0 + rng.poisson(1.5, size=m))
    if usage_drop is not None:
        change_day, rng_d = usage_drop
        keep = (ts < int(change_day) * NS_DAY) | (rng_d.random(m) < USAGE_DROP_KEEP)
        lane, ts, event, user, qty = lane[keep], ts[keep], event[keep], user[keep], qty[keep]
    _add_usage(s, buf, lane, ts, event, user, qty)
    emit_seat_admin(s, lanes, week_day, rng, buf)


def _add_usage(s: Lanes, buf: Buffers, lane, ts, event, user, qty) -> None:
    """Append usage rows, dropping those before signup or from the churn day on."""
    keep = (ts >= s.created_day[lane].astype(np.int64) * NS_DAY)
    churned = s.churned_day[lane]
    keep &= ts < np.minimum(np.where(np.isnan(churned), np.inf, churned),
                            buf.cut_day[lane]) * NS_DAY
    buf.add("usage", lane=lane[keep].astype(np.int32), ts=ts[keep], event=event[keep].astype(np.int8),
            user=user[keep], quantity=qty[keep].astype(np.float32))


def emit_seat_admin(s: Lanes, lanes: np.ndarray, week_day: int, rng, buf: Buffers) -> None:
    """The admin side of seats, as a product logs it: ``user_invited`` when someone is added to
    the account (the company hires, people come and go) while a seat is free, and
    ``seat_limit_reached`` when an invitation is blocked because every purchased seat is taken
    (people who need the product without a seat keep asking, about once a month each)."""
    need, seats = s.users_needed[lanes], np.maximum(s.seats[lanes], 1.0)
    joiners = need * (np.maximum(s.growth_rate[lanes], 0.0) / 52.0 + 0.004)
    room = np.clip(seats - need, 0.0, None)
    invited = rng.poisson(np.minimum(joiners, room + 0.05))
    # blocked invitations grow with the share of people left without a seat (like usage, large
    # accounts are seen through a sample of their users, so the share matters, not the headcount)
    blocked = rng.poisson(4.0 * np.clip(need / seats - 0.95, 0.0, 0.65)
                          + np.minimum(joiners, 0.3) * (room < 1.0))
    counts = invited + blocked
    lane = np.repeat(lanes, counts)
    if len(lane) == 0:
        return
    event = np.where(_ranks(counts) < np.repeat(invited, counts), INVITED, SEAT_LIMIT)
    day = week_day + rng.choice(7, size=len(lane), p=WEEKDAY_SHARE)
    ts = day.astype(np.int64) * NS_DAY + rng.integers(8 * 3600, 19 * 3600, size=len(lane)) * 10**9
    admin = np.zeros(len(lane), np.int16)  # the account's first user administers the seats
    _add_usage(s, buf, lane, ts, event, admin, np.ones(len(lane)))


def _touch(buf, kind, lanes, day, value=None, user=None) -> None:
    """Append touchpoint rows; rows before the account exists or after it churned are dropped."""
    m = len(lanes)
    if m == 0:
        return
    day = np.asarray(day, dtype=np.float64)
    keep = (day >= buf.created_day[lanes]) & (day < buf.cut_day[lanes])
    if not keep.all():
        lanes, day = lanes[keep], day[keep]
        value = None if value is None else np.asarray(value)[keep]
        user = None if user is None else np.asarray(user)[keep]
        m = len(lanes)
    buf.add("touch", lane=lanes.astype(np.int32), day=np.asarray(day, dtype=np.float64),
            kind=np.full(m, KIND[kind], np.int8),
            value=np.full(m, np.nan) if value is None else np.asarray(value, np.float64),
            user=np.full(m, -1, np.int64) if user is None else np.asarray(user, np.int64))


def _repeat_counts(lanes, counts, week_day, rng, weekday_weighted=True):
    lane = np.repeat(lanes, counts)
    if weekday_weighted:
        day = week_day + rng.choice(7, size=len(lane), p=WEEKDAY_SHARE)
    else:
        day = week_day + rng.integers(0, 7, size=len(lane))
    hour = (8.0 + 10.0 * rng.random(len(lane))) / 24.0  # business hours
    return lane, day.astype(np.float64) + hour


def emit_touchpoints(s: Lanes, ev: WeekEvents, act: np.ndarray, week_day: int, rng,
                     buf: Buffers, rng_x=None) -> None:
    lanes = np.flatnonzero(act)
    h = s.health[lanes]
    ci = s.churn_intent[lanes]
    bi = s.buy_intent[lanes]
    seg = s.segment_code[lanes].astype(int)
    nc = s.n_contacts[lanes].astype(np.int64)
    tenure = week_day - s.created_day[lanes]
    champ_recent = np.exp(-s.weeks_since_champion_left[lanes] / 6.0)

    def contacts(lane_idx):
        slot = np.floor(rng.random(len(lane_idx)) * s.n_contacts[lane_idx]).astype(np.int64)
        return _contact_code(s, lane_idx, slot)

    # emails from the CSM and the customer's replies (value = hours to reply)
    sent = rng.poisson(np.array([0.45, 0.8, 1.2])[seg] + 0.4 * ci)
    lane, day = _repeat_counts(lanes, sent, week_day, rng)
    who = contacts(lane)
    _touch(buf, "email_sent", lane, day, user=who)
    pos = np.searchsorted(lanes, lane)
    p_reply = _sig(0.9 + 1.3 * h[pos] - 1.8 * ci[pos] - 0.8 * champ_recent[pos])
    replied = rng.random(len(lane)) < p_reply
    hours = np.exp(np.log(5.0) - 0.5 * h[pos] + 0.9 * ci[pos] + 0.9 * rng.standard_normal(len(lane)))
    hours = np.round(np.clip(hours, 0.1, 24 * 14), 1)
    _touch(buf, "email_replied", lane[replied], day[replied] + hours[replied] / 24.0,
           value=hours[replied], user=who[replied])

    # meetings: held or missed; QBRs for larger accounts
    meet = rng.random(len(lanes)) < np.array([0.16, 0.3, 0.45])[seg]
    missed = rng.random(len(lanes)) < _sig(-2.0 - 1.3 * h + 1.8 * ci + 1.2 * champ_recent)
    ml = lanes[meet]
    md = week_day + rng.integers(0, 5, size=len(ml)) + (9.0 + 8.0 * rng.random(len(ml))) / 24.0
    _touch(buf, "meeting_held", ml[~missed[meet]], md[~missed[meet]], user=contacts(ml[~missed[meet]]))
    _touch(buf, "meeting_missed", ml[missed[meet]], md[missed[meet]], user=contacts(ml[missed[meet]]))
    # a purchase in the making brings new stakeholders (a budget owner, another team's lead)
    # to the table: meetings with contacts the CSM had not met
    stake = rng.random(len(lanes)) < 0.3 * bi
    sl = lanes[stake]
    sd = week_day + rng.integers(0, 5, size=len(sl)) + (9.0 + 8.0 * rng.random(len(sl))) / 24.0
    _touch(buf, "meeting_held", sl, sd,
           user=sl.astype(np.int64) * 1000 + 500 + rng.integers(0, 4, size=len(sl)))
    qbr = (seg > 0) & (rng.random(len(lanes)) < (1 / 13) * _sig(1.0 + 1.5 * h - 2.0 * ci))
    _touch(buf, "qbr_held", lanes[qbr], week_day + rng.integers(0, 5, size=int(qbr.sum())),
           user=contacts(lanes[qbr]))

    # support: more tickets when things go wrong, then silence once the account gives up
    t_rate = (np.array([0.12, 0.3, 0.6])[seg] * (0.5 + 1.5 * _sig(-1.5 * h))
              * (1.0 + 1.0 * (tenure < 90)) * (1.0 - 0.75 * ci))
    tickets = rng.poisson(t_rate)
    lane, day = _repeat_counts(lanes, tickets, week_day, rng)
    _touch(buf, "support_ticket", lane, day, user=contacts(lane))
    pos = np.searchsorted(lanes, lane)
    esc = rng.random(len(lane)) < _sig(-2.6 - 1.0 * h[pos])
    _touch(buf, "escalation", lane[esc], day[esc], user=contacts(lane[esc]))

    # shocks: mostly noticed by the CSM, some never recorded
    for shock, kind, p_seen in (("champion_left", "champion_left", 0.85),
                                ("budget_cut", "budget_cut", 0.6),
                                ("competitor", "competitor_mentioned", 0.5),
                                ("rollout_success", "goal_achieved", 0.9)):
        hit, sday = ev.shocks[shock]
        seen = hit & act & (rng.random(len(hit)) < p_seen)
        idx = np.flatnonzero(seen)
        user = None
        if shock == "champion_left":  # the departing champion (slot 0 before replacement)
            user = _contact_code(s, idx, np.zeros(len(idx), np.int64))
        _touch(buf, kind, idx, sday[idx], user=user if user is not None else contacts(idx))

    # signals of a decision in the making (critical churn signals) and of buying interest
    for kind, prob in (
        ("billing_page_visit", None),
        ("cancellation_inquiry", 0.001 + 0.14 * ci),
        ("data_export_request", 0.001 + 0.07 * ci),
        ("competitor_mentioned", 0.0015 + 0.05 * ci),
        ("expansion_request", 0.003 + 0.6 * bi),
        # milestones the CSM logs besides rollouts: the more the account thrives, the more
        ("goal_achieved", (0.004 + 0.02 * np.clip(h, 0, 2)) * s.adoption[lanes]),
        ("referral_given", 0.003 + 0.06 * np.clip(h - 0.3, 0, 2) * (1 - ci)),
    ):
        if prob is None:
            unresolved = s.unresolved_until_day[lanes] > week_day
            counts = rng.poisson(0.03 + 0.6 * ci + 0.3 * unresolved + 0.08 * _sig(-2 * h))
        else:
            counts = (rng.random(len(lanes)) < prob).astype(np.int64)
        lane, day = _repeat_counts(lanes, counts, week_day, rng)
        _touch(buf, kind, lane, day, user=contacts(lane))
    # an account preparing to downsize checks seat and plan prices on the billing page
    rx = rng if rng_x is None else rng_x
    counts = rx.poisson(DOWNSIZE_BILLING_VISITS * s.downsize_intent[lanes])
    lane, day = _repeat_counts(lanes, counts, week_day, rx)
    slot = np.floor(rx.random(len(lane)) * s.n_contacts[lane]).astype(np.int64)
    _touch(buf, "billing_page_visit", lane, day, user=_contact_code(s, lane, slot))
    # ... and some ask their CSM about fewer seats or a cheaper plan
    asked = rx.random(len(lanes)) < (DOWNSIZE_INQUIRY_BASE
                                     + DOWNSIZE_INQUIRY * s.downsize_intent[lanes])
    lane, day = _repeat_counts(lanes, asked.astype(np.int64), week_day, rx)
    slot = np.floor(rx.random(len(lane)) * s.n_contacts[lane]).astype(np.int64)
    _touch(buf, "downgrade_inquiry", lane, day, user=_contact_code(s, lane, slot))
    del nc


def emit_invoices(s: Lanes, ev: WeekEvents, week_day: int, rng, buf: Buffers) -> None:
    lanes = np.flatnonzero(ev.invoice_due)
    if len(lanes) == 0:
        return
    due = ev.invoice_day[lanes]
    keep = due >= s.created_day[lanes]
    lanes, due = lanes[keep], due[keep]
    buf.add("invoice", lane=lanes.astype(np.int32), due=due, amount=ev.invoice_amount[lanes],
            paid=ev.invoice_paid_day[lanes])
    failed = ev.invoice_outcome[lanes] == 2
    _touch(buf, "payment_failed", lanes[failed], due[failed])
    second = failed & ev.second_failure[lanes]
    _touch(buf, "payment_failed", lanes[second], due[second] + 7)


def emit_nps(s: Lanes, act: np.ndarray, week_index: int, week_day: int, nps_phase: np.ndarray,
             rng, buf: Buffers) -> None:
    due = act & ((week_index - nps_phase) % 13 == 0)
    lanes = np.flatnonzero(due)
    if len(lanes) == 0:
        return
    invited = np.minimum(s.n_contacts[lanes] + 2, 8).astype(np.int64)
    h = s.health[lanes]
    responses = rng.binomial(invited, np.clip(0.25 + 0.15 * _sig(h), 0, 1))
    lane = np.repeat(lanes, responses)
    m = len(lane)
    if m == 0:
        return
    resp = _ranks(responses)
    pos = np.searchsorted(lanes, lane)
    score = np.clip(np.round(7.0 + 1.5 * h[pos] - 1.4 * s.churn_intent[lane]
                             + 1.0 * s.buy_intent[lane] + DOWNSIZE_NPS * s.downsize_intent[lane]
                             + 1.0 * rng.standard_normal(m)), 0, 10)
    day = week_day + rng.integers(0, 7, size=m)
    ns = day.astype(np.int64) * NS_DAY + rng.integers(8 * 3600, 19 * 3600, size=m) * 10**9
    with_comment = rng.random(m) < 0.3
    band = np.where(score <= 6, 0, np.where(score <= 8, 1, 2))
    pick = rng.integers(0, 4, size=m)
    buf.add("nps", lane=lane.astype(np.int32), ts=ns, score=score.astype(np.int64),
            respondent=lane.astype(np.int64) * 100 + resp, band=np.where(with_comment, band, -1),
            pick=pick)


# --------------------------------------------------------------------------------------------
# what a CS team sees of the book, week by week (``simulate(cs_team=...)``)
# --------------------------------------------------------------------------------------------

RING = 27  # weeks kept: 26 (the longest window, 180 days) plus one for "a week before"
_CORE = (1, 6)  # usage event codes of the core features (dashboard_view .. comment)
_ADVANCED = (7, 10)  # integration_sync .. custom_report


class Observed:
    """Weekly counts of what the book shows, per account, for the CS team's queue.

    Rows are taken from :class:`Buffers` after each simulated week and counted into a ring of
    the last :data:`RING` weeks; a row dated on or after the cut-off (a reply that comes in the
    next week) waits for the week it belongs to, so :meth:`features` at a week's start reads
    only rows dated before it (point in time). Every count is a ``bincount``: no per-account
    Python."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.weeks_done = 0
        self.touch = np.zeros((len(TOUCH_KINDS), RING, n), np.float32)
        self.logins = np.zeros((RING, n), np.float32)
        self.core = np.zeros((RING, n), np.int16)  # bit per core feature used that week
        self.advanced = np.zeros((RING, n), np.float32)
        self.mrr = np.zeros((RING, n))  # MRR at each week's start
        self.nps_latest = np.full(n, np.nan)
        self.nps_prev = np.full(n, np.nan)
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] = (
            np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.int8))
        self._marks: dict[str, int] = {}

    def mark(self, buf: Buffers) -> None:
        """Remember where this week's rows start in ``buf``."""
        self._marks = {t: len(buf.chunks[t]["lane"]) for t in ("usage", "touch", "nps")}

    def _new(self, buf: Buffers, table: str, column: str) -> np.ndarray:
        chunks = buf.chunks[table][column][self._marks.get(table, 0):]
        return np.concatenate(chunks) if chunks else np.zeros(0)

    def take_week(self, buf: Buffers, mrr: np.ndarray, week_day: int, cutoff_day: int) -> None:
        """Count the week's rows (those dated before ``cutoff_day``) into a new ring slot;
        ``mrr``: the MRR in force during the week (the week's start)."""
        slot = self.weeks_done % RING
        n = self.n
        for arr in (self.touch[:, slot], self.logins[slot], self.core[slot],
                    self.advanced[slot]):
            arr[...] = 0
        self.mrr[slot] = mrr
        lane = np.concatenate([self._pending[0], self._new(buf, "touch", "lane").astype(np.int32)])
        day = np.concatenate([self._pending[1], self._new(buf, "touch", "day")])
        kind = np.concatenate([self._pending[2], self._new(buf, "touch", "kind").astype(np.int8)])
        now = day < cutoff_day
        self._pending = (lane[~now], day[~now], kind[~now])
        key = kind[now].astype(np.int64) * n + lane[now]
        self.touch[:, slot] = np.bincount(key, minlength=len(TOUCH_KINDS) * n).reshape(
            len(TOUCH_KINDS), n)
        u_lane = self._new(buf, "usage", "lane").astype(np.int64)
        u_event = self._new(buf, "usage", "event").astype(np.int64)
        self.logins[slot] = np.bincount(u_lane[u_event == 0], minlength=n)
        adv = (u_event >= _ADVANCED[0]) & (u_event <= _ADVANCED[1])
        self.advanced[slot] = np.bincount(u_lane[adv], minlength=n)
        core = (u_event >= _CORE[0]) & (u_event <= _CORE[1])
        pairs = np.unique(u_lane[core] * 16 + u_event[core])
        np.bitwise_or.at(self.core[slot], pairs // 16, (1 << (pairs % 16 - 1)).astype(np.int16))
        n_lane = self._new(buf, "nps", "lane").astype(np.int64)
        if len(n_lane):
            score = self._new(buf, "nps", "score").astype(float)
            total = np.bincount(n_lane, weights=score, minlength=n)
            count = np.bincount(n_lane, minlength=n)
            got = count > 0
            self.nps_prev = np.where(got, self.nps_latest, self.nps_prev)
            self.nps_latest = np.where(got, np.round(total / np.maximum(count, 1)),
                                       self.nps_latest)
        self.weeks_done += 1

    def _sum(self, ring: np.ndarray, lanes: np.ndarray, weeks: int, lag: int) -> np.ndarray:
        """Sum over the ``weeks`` weeks that end ``lag`` weeks before the latest."""
        last = self.weeks_done - 1 - lag
        first = max(last - weeks + 1, 0)
        if last < 0:
            return np.zeros(len(lanes))
        slots = np.arange(first, last + 1) % RING
        return ring[slots][:, lanes].sum(axis=0).astype(float)

    def features(self, lanes: np.ndarray, lag: int = 0) -> dict[str, np.ndarray]:
        """Approximate catalog features of ``lanes`` from the weeks seen (``lag`` = 1: as a
        week earlier). Features not approximated are left out (the health score leaves an
        absent signal out and re-weights the rest)."""
        t = {k: self.touch[KIND[k]] for k in TOUCH_KINDS}

        def c(kind: str, weeks: int) -> np.ndarray:
            return self._sum(t[kind], lanes, weeks, lag)

        def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)

        seen = self.weeks_done - lag
        recent = self._sum(self.logins, lanes, 4, lag)
        before = self._sum(self.logins, lanes, 22, lag + 4)
        baseline = before / max(min(seen - 4, 22), 1) * 4
        logins = np.where(seen >= 8, ratio(recent, baseline), np.nan)
        last = self.weeks_done - 1 - lag
        mask = np.zeros(len(lanes), np.int16)
        for w in range(max(last - 3, 0), last + 1):
            mask |= self.core[w % RING][lanes]
        breadth = np.zeros(len(lanes))
        for bit in range(_CORE[1] - _CORE[0] + 1):
            breadth += (mask >> bit) & 1
        mrr_now = self.mrr[last % RING][lanes] if last >= 0 else np.full(len(lanes), np.nan)
        then = last - 13
        mrr_then = self.mrr[then % RING][lanes] if then >= 0 else np.full(len(lanes), np.nan)
        held, missed = c("meeting_held", 13), c("meeting_missed", 13)
        latest, prev = self.nps_latest[lanes], self.nps_prev[lanes]
        return {
            "logins_30d_vs_baseline": logins,
            "feature_breadth_30d": breadth,
            "advanced_feature_events_30d": self._sum(self.advanced, lanes, 4, lag),
            "meeting_attendance_rate_90d": ratio(held, held + missed),
            "email_reply_rate_90d": ratio(c("email_replied", 13), c("email_sent", 13)),
            "expansion_requests_90d": c("expansion_request", 13),
            "goals_achieved_180d": c("goal_achieved", 26),
            "qbrs_held_180d": c("qbr_held", 26),
            "nps_latest": latest,
            "nps_detractor": np.where(np.isnan(latest), np.nan, (latest <= 6).astype(float)),
            "nps_change": latest - prev,
            "failed_payments_90d": c("payment_failed", 13),
            "billing_page_visits_30d": c("billing_page_visit", 4),
            "mrr_change_90d": ratio(mrr_now - mrr_then, mrr_then),
            "data_export_requests_90d": c("data_export_request", 13),
            "cancellation_inquiries_90d": c("cancellation_inquiry", 13),
            "champion_left_180d": c("champion_left", 26),
            "budget_cuts_180d": c("budget_cut", 26),
            "competitor_mentions_90d": c("competitor_mentioned", 13),
            "downgrade_inquiries_90d": c("downgrade_inquiry", 13),
            "meetings_missed_90d": missed,
            "mrr": mrr_now,
        }
