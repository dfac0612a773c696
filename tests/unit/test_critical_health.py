"""A health score below ``risk.critical_health`` is critical only in the week the account
enters that tier (issue 11): decided from the book a week before as_of (the compared features
include the health score's inputs), so an unchanged state never repeats a critical action and a
first run is no flood."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.health.score import INSUFFICIENT_DATA_TIER, HealthScore
from churnml.scoring.actions import entered_critical_health, load_playbooks, parse_playbooks
from churnml.scoring.compare import compared_features, health_features, health_week_before
from churnml.scoring.frame import score_frame
from churnml.errors import ConfigError


@pytest.fixture(scope="module")
def pb():
    return load_playbooks()


HEALTH = HealthScore()
#: values from healthy to alarming for every kind of feature the health score reads
VALUES = st.sampled_from([np.nan, 0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 30.0, 200.0, -50.0, 9.0])


def _states(n: int):
    """``n`` accounts' values of every compared feature (health inputs and signals)."""
    names = compared_features(load_playbooks())
    return st.lists(st.lists(VALUES, min_size=len(names), max_size=len(names)),
                    min_size=n, max_size=n).map(
        lambda rows: pd.DataFrame(rows, columns=list(names)))


def _frame(state: pd.DataFrame, as_of: str) -> pd.DataFrame:
    frame = state.copy()
    frame.insert(0, "account_id", [f"A{i}" for i in range(len(frame))])
    frame.insert(1, "as_of", pd.Timestamp(as_of))
    return frame


def _severity(scored: pd.DataFrame) -> np.ndarray:
    return np.array([a["severity"] for a in scored["next_best_action"]], dtype=object)


def _reference_health(frame: pd.DataFrame) -> np.ndarray:
    """The plain reference: ``HealthScore.score`` row by row's frame, NaN when too little
    data to judge."""
    scored = HEALTH.score(frame)
    h = scored["health_score"].to_numpy(dtype=float)
    return np.where(scored["health_tier"].to_numpy(dtype=object) == INSUFFICIENT_DATA_TIER,
                    np.nan, h)


def test_the_health_inputs_are_compared_features(pb):
    assert set(health_features()) == set(HEALTH.active_config.features)
    assert set(health_features()) <= set(compared_features(pb))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=_states(12))
def test_an_unchanged_state_gives_no_critical_action_the_second_week(state):
    """Two consecutive weeks with the same state: the second week's week-before frame is the
    first week's state, and nothing is critical, however bad the state is."""
    pb = load_playbooks()
    first = _frame(state, "2026-03-02")
    second = _frame(state, "2026-03-09")
    week_before = first[["account_id", *compared_features(pb)]]
    scored = score_frame(second, {}, HEALTH, week_before=week_before, playbooks=pb)
    assert not (_severity(scored) == "critical").any()
    # a health score that stays below the critical bar is high, not dropped
    h = _reference_health(second)
    with np.errstate(invalid="ignore"):
        low = h < pb.risk["critical_health"]
    assert (_severity(scored)[low] == "high").all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_states(10), now=_states(10), absent=st.lists(st.booleans(), min_size=10,
                                                             max_size=10))
def test_health_critical_only_when_the_account_enters_the_tier(before, now, absent):
    """Against a plain reference: critical from health iff the score now is below the bar and
    a week before it was not (at or above it, too little data, or the account was not in the
    book then). The week's critical signals are held unchanged so only health decides."""
    pb = load_playbooks()
    signals = [s.feature for s in pb.critical_signals]
    now = now.copy()
    now[signals] = before[signals].to_numpy()
    then = _frame(before, "2026-03-02")
    week_before = then.loc[~np.array(absent), ["account_id", *compared_features(pb)]]
    frame = _frame(now, "2026-03-09")
    scored = score_frame(frame, {}, HEALTH, week_before=week_before, playbooks=pb)
    bar = pb.risk["critical_health"]
    h_now, h_then = _reference_health(frame), _reference_health(then)
    h_then[np.array(absent)] = np.nan
    with np.errstate(invalid="ignore"):
        expected = (h_now < bar) & ~(h_then < bar)
        # an account the book did not have a week before: its signals are new too
        for sig in pb.critical_signals:
            expected |= np.array(absent) & (now[sig.feature].to_numpy() >= sig.min_value)
    np.testing.assert_array_equal(_severity(scored) == "critical", expected)


def test_without_a_week_before_every_low_score_counts(pb):
    """A lone request (no week before known) keeps the old rule: every low score is new."""
    h = np.array([10.0, 29.9, 30.0, np.nan])
    np.testing.assert_array_equal(entered_critical_health(h, None, pb),
                                  [True, True, False, False])
    np.testing.assert_array_equal(
        entered_critical_health(h, np.array([np.nan, 50.0, 10.0, 10.0]), pb),
        [True, True, False, False])
    np.testing.assert_array_equal(
        entered_critical_health(h, np.array([20.0, 29.0, 20.0, 20.0]), pb),
        [False, False, False, False])
    assert health_week_before(HEALTH, ["A"], None) is None


def test_health_week_before_aligns_by_account_and_marks_the_unknown(pb):
    names = list(compared_features(pb))
    before = pd.DataFrame({"account_id": ["B", "A", "A"], **{n: [np.nan] * 3 for n in names}})
    before.loc[:, "logins_30d_vs_baseline"] = [0.1, 2.0, 2.0]
    h = health_week_before(HEALTH, np.array(["A", "C", "B"], dtype=object), before)
    ref = _reference_health(before.assign(as_of=pd.Timestamp("2026-01-01")))
    np.testing.assert_array_equal(np.isnan(h), [np.isnan(ref[1]), True, np.isnan(ref[0])])
    np.testing.assert_allclose(h[[0, 2]], ref[[1, 0]])


def test_the_risk_bars_must_be_ordered(pb):
    raw = dict(pb.raw)
    raw["risk"] = {**raw["risk"], "critical_health": 60}
    with pytest.raises(ConfigError, match="critical_health <= high_health"):
        parse_playbooks(raw)
