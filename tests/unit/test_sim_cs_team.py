"""``simulate(cs_team=...)`` / ``churnml simulate --cs-team``: a simulated CS team works a
weekly queue, leaves the holdout alone, logs ``cs_actions`` and its plays have true effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.data import _sim_model as m
from churnml.data import _sim_observe as o
from churnml.data.simulator import CsTeam, simulate
from churnml.errors import UsageError
from churnml.scoring.cs_team import CsTeamPolicy, parse_capacity

N, MONTHS, SEED, START = 300, 8, 21, 10


def _team(**kwargs) -> CsTeam:
    return CsTeam(CsTeamPolicy(scale=N / 2000), start_week=START, **kwargs)


@pytest.fixture(scope="module")
def book():
    return simulate(n_accounts=N, months=MONTHS, seed=SEED, cs_team=_team())


@pytest.fixture(scope="module")
def plain():
    return simulate(n_accounts=N, months=MONTHS, seed=SEED)


def test_same_seed_same_team_same_actions_and_truth(book):
    again = simulate(n_accounts=N, months=MONTHS, seed=SEED, cs_team=_team())
    pd.testing.assert_frame_equal(book.tables["cs_actions"], again.tables["cs_actions"])
    pd.testing.assert_frame_equal(book.truth["cs_queue"], again.truth["cs_queue"])
    for name in book.tables:
        pd.testing.assert_frame_equal(book.tables[name], again.tables[name])
    other = simulate(n_accounts=N, months=MONTHS, seed=SEED + 1, cs_team=_team())
    assert not other.tables["cs_actions"].equals(book.tables["cs_actions"])


def test_the_team_acts_on_the_hazards_only_from_its_first_week(book, plain):
    """Its own random stream: before the first worked week the world is the same as without
    the team (same state, same draws); afterwards the effects change it."""
    st, sp = book.truth["state_weekly"], plain.truth["state_weekly"]
    first = pd.Timestamp(book.truth["cs_queue"]["week_start"].min())
    assert first == pd.Timestamp(book.meta["start"]) + pd.Timedelta(weeks=START)
    before_t = st[st["week_start"] <= first].reset_index(drop=True)
    before_p = sp[sp["week_start"] <= first].reset_index(drop=True)
    pd.testing.assert_frame_equal(before_t, before_p)
    assert not st[st["week_start"] > first].reset_index(drop=True).equals(
        sp[sp["week_start"] > first].reset_index(drop=True))
    assert "cs_actions" not in plain.tables and "cs_queue" not in plain.truth
    assert "cs_team" not in plain.meta and book.meta["cs_team"] == "1"


def test_actions_are_queued_worked_rows_never_holdout(book):
    q = book.truth["cs_queue"]
    a = book.tables["cs_actions"]
    assert len(a) > 50 and q["holdout"].sum() > 10
    assert not (q["worked"] & q["holdout"]).any()
    assert (q.loc[q["worked"], "queue_status"] == "queued").all()
    # every logged action is a worked queue row (same account, week and play) ...
    a_week = a["date"].dt.normalize() - pd.to_timedelta(
        (a["date"].dt.normalize() - pd.Timestamp(book.meta["start"])).dt.days % 7, unit="D")
    keys = pd.DataFrame({"account_id": a["account_id"], "week_start": a_week,
                         "playbook": a["playbook"]})
    joined = keys.merge(q, on=["account_id", "week_start", "playbook"], how="left",
                        validate="one_to_one")
    assert joined["worked"].fillna(False).all()
    assert not joined["holdout"].any()
    # ... and a held-out (account, week, play) never has an action logged
    held = q.loc[q["holdout"], ["account_id", "week_start", "playbook"]]
    assert held.merge(keys, how="inner").empty
    assert len(a) == int(q["worked"].sum())


def test_no_action_before_it_is_decided(book):
    q = book.truth["cs_queue"]
    worked = q[q["worked"]]
    assert (worked["action_date"] >= worked["week_start"]).all()
    assert (worked["action_date"] < worked["week_start"] + pd.Timedelta(days=5)).all()
    assert q.loc[~q["worked"], "action_date"].isna().all()
    # an action is never dated on or after the account's churn
    churn = book.truth["events"].query("event == 'churn'").groupby("account_id")["date"].max()
    a = book.tables["cs_actions"].join(churn.rename("churned"), on="account_id")
    late = a["churned"].notna() & (a["date"] >= a["churned"]) & (
        a["date"] - a["churned"] < pd.Timedelta(days=7))
    assert not late.any()


def test_what_the_team_sees_is_point_in_time():
    """A touchpoint dated on or after the cut-off (a reply arriving next week) is counted in
    the week it belongs to, never earlier."""
    created = np.zeros(3)
    buf = o.Buffers(created)
    seen = o.Observed(3)
    seen.mark(buf)
    o._touch(buf, "cancellation_inquiry", np.array([0, 1]), np.array([5.0, 7.5]))
    seen.take_week(buf, np.ones(3), 0, 7)
    f = seen.features(np.arange(3))
    assert f["cancellation_inquiries_90d"].tolist() == [1.0, 0.0, 0.0]
    seen.mark(buf)
    seen.take_week(buf, np.ones(3), 7, 14)
    f, before = seen.features(np.arange(3)), seen.features(np.arange(3), lag=1)
    assert f["cancellation_inquiries_90d"].tolist() == [1.0, 1.0, 0.0]
    assert before["cancellation_inquiries_90d"].tolist() == [1.0, 0.0, 0.0]


def test_queued_actions_per_owner_and_week_stay_within_capacity(book):
    q = book.truth["cs_queue"]
    capacity = dict(p.split("=") for p in book.meta["cs_capacity"].split(","))
    worked_slots = q[(q["queue_status"] == "queued") & ~q["holdout"]]
    per = worked_slots.groupby(["week_start", "owner"]).size()
    assert (per <= per.index.get_level_values("owner").map(lambda x: int(capacity[x]))).all()
    a = book.tables["cs_actions"]
    assert a.groupby([a["date"].dt.isocalendar().week, "owner"]).size().max() <= max(
        int(v) for v in capacity.values())
    # the watch list exists: capacity is what limits the queue
    assert (q["queue_status"] == "watch").sum() > (q["queue_status"] == "queued").sum()


def test_true_effects_are_recorded_and_follow_the_effect_model(book):
    q = book.truth["cs_queue"]
    for name in ("churn", "expansion", "contraction"):
        effect = q[f"{name}_90d_effect"]
        assert effect.notna().all() and effect.between(-1, 1).all()
        assert np.allclose(effect, q[f"{name}_90d_with"] - q[f"{name}_90d_without"])
    kind = q.set_index("playbook")
    calm = ~q["reacts_badly"].to_numpy()
    save = (q["playbook"] == "save_call").to_numpy()
    assert (q.loc[save & calm, "churn_logit_shift"] <= 0).all()
    bad = q["reacts_badly"] & ~q["playbook"].isin(m.CS_NO_CONTACT)
    assert (q.loc[bad & (q["playbook"] == "multi_thread"), "churn_logit_shift"] > 0).all()
    if "budget" in kind.index:
        assert (kind.loc[["budget"], "contraction_logit_shift"] >= 0).all()
    # churn effects: a shift below zero lowers the 90-day churn probability, and vice versa
    s = q["churn_logit_shift"].to_numpy()
    e = q["churn_90d_effect"].to_numpy()
    assert (e[s < -1e-9] < 0).all() and (e[s > 1e-9] > 0).all()


def test_every_play_has_its_true_effect_and_the_recommended_one_matches(book):
    """``<outcome>_90d_effect_<play>`` for every play the effect model knows: the recommended
    play's equals the row's own effect; the regular cadence has none; a save call on a calm
    account never raises churn (the oracle may choose the play, not only rank it)."""
    q = book.truth["cs_queue"]
    for name in ("churn", "expansion", "contraction"):
        columns = [f"{name}_90d_effect_{p}" for p in m.CS_PLAYS]
        assert set(columns) <= set(q.columns)
        grid = q[columns].to_numpy()
        own = grid[np.arange(len(q)), m.cs_play_codes(q["playbook"])]
        assert np.allclose(own, q[f"{name}_90d_effect"])
        assert np.allclose(q[f"{name}_90d_effect_keep_warm"], 0.0)
    calm = ~q["reacts_badly"].to_numpy()
    assert (q.loc[calm, "churn_90d_effect_save_call"] <= 1e-12).all()


def _reference_frozen(ct, cr, ex, cx, possible, renewals, shift, weeks=13):
    """Week-by-week product of the frozen hazards (plain loop, one lane)."""
    sc, se, sx = shift
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    s_churn = s_exp = s_con = 1.0
    for w in range(weeks):
        on = w >= 1
        ren = w in renewals
        s_churn *= 1 - sig(ct + sc * on)
        if ren:
            s_churn *= 1 - sig(cr + sc * on)
        s_exp *= 1 - sig(ex + se * on)
        s_con *= 1 - sig(cx + sx * on - (0.0 if ren else 4.5))
    return 1 - s_churn, 1 - s_exp, (1 - s_con) * possible


def test_frozen_probabilities_match_a_week_by_week_reference():
    rng = np.random.default_rng(3)
    n = 40
    day = 20_000
    s = m.Lanes.from_columns({f: np.zeros(n) for f in m.Lanes.__dataclass_fields__})
    s.annual_contract = (rng.random(n) < 0.5).astype(float)
    # renewals on week starts so both codes count them in the same week
    s.term_end_day = day + 7.0 * rng.integers(0, 20, size=n)
    s.annual_contract[:] = 1.0
    logits = {"churn_term": rng.normal(-6, 1, n), "churn_renew": rng.normal(-2, 1, n),
              "expansion": rng.normal(-5, 1, n), "contraction": rng.normal(-3, 1, n),
              "contraction_possible": (rng.random(n) < 0.8).astype(float)}
    hz = m.WeekHazards(*(np.zeros(n),) * 4, np.zeros(n, bool), {}, {}, {}, None, logits)
    shift = tuple(rng.normal(0, 1, n) for _ in range(3))
    got = m.frozen_outcome_probabilities(s, hz, np.arange(n), day, shift)
    for i in range(n):
        week = int((s.term_end_day[i] - day) // 7)
        want = _reference_frozen(logits["churn_term"][i], logits["churn_renew"][i],
                                 logits["expansion"][i], logits["contraction"][i],
                                 logits["contraction_possible"][i],
                                 {week} if week < 13 else set(), [x[i] for x in shift])
        assert np.allclose([g[i] for g in got], want, rtol=1e-10), i


def test_a_cs_team_book_validates_with_zero_rejects(book):
    from churnml.data.validation import validate_frames

    validated, report = validate_frames(dict(book.tables))
    assert report.total_rejected == 0
    assert report.counts["cs_actions"]["accepted"] == len(book.tables["cs_actions"])
    assert validated.has("cs_actions")


def test_cs_actions_do_not_change_the_features(book):
    from churnml.data.validation import validate_frames
    from churnml.features.build import build_features

    with_, _ = validate_frames(dict(book.tables))
    without, _ = validate_frames({k: v for k, v in book.tables.items() if k != "cs_actions"})
    as_of = [with_.data_end - pd.Timedelta(days=7), with_.data_end]
    pd.testing.assert_frame_equal(build_features(with_, as_of), build_features(without, as_of))


def test_compliance_zero_logs_nothing_and_changes_nothing():
    none = simulate(n_accounts=120, months=6, seed=4,
                    cs_team=CsTeam(CsTeamPolicy(scale=0.06), start_week=8, compliance=0.0))
    plain = simulate(n_accounts=120, months=6, seed=4)
    assert none.tables["cs_actions"].empty and len(none.truth["cs_queue"]) > 0
    for name in plain.tables:
        pd.testing.assert_frame_equal(none.tables[name], plain.tables[name])


@pytest.mark.parametrize("kwargs", [{"compliance": 1.5}, {"compliance": "x"},
                                    {"start_week": -1}])
def test_bad_team_parameters_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        CsTeam(CsTeamPolicy(), **kwargs)


def test_capacity_spec_and_unknown_owner():
    assert parse_capacity("CSM=6, CS manager=2") == {"CSM": 6, "CS manager": 2}
    assert CsTeamPolicy(capacity={"CSM": 7}, scale=2.0).capacity["CSM"] == 7
    assert CsTeamPolicy(scale=2.0).capacity["CS manager"] == 40
    for bad in ("CSM", "CSM=-1", "=3", "CSM=x"):
        with pytest.raises(UsageError):
            parse_capacity(bad)
    with pytest.raises(UsageError, match="owner"):
        CsTeamPolicy(capacity={"Janitor": 3})


def test_the_holdout_is_the_weekly_jobs_policy(book):
    from churnml.scoring.actions import load_playbooks

    assert book.meta["cs_policy_version"] == load_playbooks().policy_version


def test_cli_cs_team_writes_actions_and_truth(tmp_path, capsys):
    from churnml import cli

    out = tmp_path / "book"
    assert cli.main(["simulate", "--out", str(out), "--accounts", "80", "--months", "5",
                     "--cs-team", "--cs-capacity", "CSM=3", "--seed", "2"]) == 0
    assert (out / "cs_actions.parquet").exists() and (out / "_truth" / "cs_queue.parquet").exists()
    meta = pd.read_parquet(out / "_truth" / "meta.parquet").set_index("key")["value"]
    assert "CSM=3" in meta["cs_capacity"]
    capsys.readouterr()
    assert cli.main(["simulate", "--out", str(tmp_path / "b2"), "--cs-capacity", "CSM=3"]) == 2
    assert cli.main(["simulate", "--out", str(tmp_path / "b3"), "--cs-team",
                     "--cs-capacity", "Janitor=3"]) == 2
    err = capsys.readouterr().err
    assert "--cs-team" in err and "Janitor" in err and "Traceback" not in err
