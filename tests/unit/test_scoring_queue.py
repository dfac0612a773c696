"""This week's queue and the holdout (churnml.scoring.queue, features/playbooks.yaml)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from churnml.errors import ConfigError
from churnml.scoring.actions import load_playbooks, parse_playbooks, policy_version
from churnml.scoring.queue import (
    DECILES,
    QUEUED,
    WATCH,
    assign_queue,
    expected_values,
    risk_deciles,
)


@pytest.fixture(scope="module")
def pb():
    return load_playbooks()


def _inputs(n: int, seed: int = 0, playbook="re_engage", owner="CSM") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "account_id": [f"A{i:05d}" for i in range(n)],
        "playbook": playbook, "owner": owner, "severity": "high", "reason_feature": "",
        "expected_value": rng.gamma(2.0, 50.0, n),
        "churn_probability": rng.uniform(0, 1, n),
        "queue_reason": "expected to save something",
    })


def _with(pb, **changes):
    return dataclasses.replace(pb, **changes)


def test_playbooks_declare_capacity_priors_and_holdout(pb):
    assert pb.capacity == {"CSM": 60, "CS manager": 20, "Billing": 30, "Account manager": 20}
    assert pb.holdout_share == 0.10
    assert all(0 <= b.prior_effect <= 1 for b in pb.playbooks.values())
    assert pb.playbooks["keep_warm"].prior_effect == 0
    assert pb.playbooks["expansion_conversation"].addresses == "expansion"
    assert pb.playbooks["right_size"].addresses == "contraction"
    never = {n for n, b in pb.playbooks.items() if b.never_hold_out}
    assert never == {"save_call", "champion_left", "payment_recovery"}
    assert pb.policy_version.startswith("p") and len(pb.policy_version) == 13


def test_policy_version_ignores_capacity_but_not_policy(pb):
    raw = dict(pb.raw)
    assert policy_version({**raw, "capacity": {"CSM": 1}}) == pb.policy_version
    assert policy_version({**raw, "holdout_share": 0.2}) != pb.policy_version


def test_bad_queue_config_names_the_key(pb):
    raw = dict(pb.raw)
    raw["capacity"] = {"CSM": -1, "CS manager": 2.5}
    raw["holdout_share"] = 1.5
    books = dict(raw["playbooks"])
    books["budget"] = {**books["budget"], "prior_effect": "big", "addresses": "upsell"}
    raw["playbooks"] = books
    with pytest.raises(ConfigError) as err:
        parse_playbooks(raw)
    text = str(err.value)
    for needle in ("capacity.CSM", "capacity.CS manager", "misses the owners", "holdout_share",
                   "'budget' needs a 'prior_effect'", "upsell"):
        assert needle in text, needle


def test_expected_value_is_mrr_x_probability_x_prior(pb):
    plays = ["re_engage", "expansion_conversation", "right_size", "keep_warm", "re_engage"]
    mrr = np.array([1000.0, 2000.0, 400.0, 500.0, 300.0])
    prob = {"churn": np.array([0.3, 0.1, 0.1, 0.2, np.nan]),
            "expansion": np.array([0.1, 0.4, 0.1, 0.1, 0.1]),
            "contraction": np.array([0.1, 0.1, 0.5, 0.1, 0.1])}
    ev, text = expected_values(plays, mrr, prob, pb)
    assert ev[0] == pytest.approx(1000 * 0.3 * pb.playbooks["re_engage"].prior_effect)
    assert ev[1] == pytest.approx(2000 * 0.4 * pb.typical_share["expansion"]
                                  * pb.playbooks["expansion_conversation"].prior_effect)
    assert ev[2] == pytest.approx(400 * 0.5 * pb.typical_share["contraction"]
                                  * pb.playbooks["right_size"].prior_effect)
    assert np.isnan(ev[3]) and text[3] is None  # the regular cadence: no action
    assert np.isnan(ev[4]) and "no churn model" in text[4]
    assert text[0].startswith("expected to save $30 of MRR: churn probability 30%")
    assert text[1].startswith("expected to win $")


def test_queue_respects_capacity_orders_by_value_and_breaks_ties_by_id(pb):
    pb = _with(pb, capacity={**pb.capacity, "CSM": 10}, holdout_share=0.0)
    inputs = _inputs(40)
    inputs.loc[[3, 7], "expected_value"] = 1e6  # a tie at the top: account_id decides
    q = assign_queue(inputs, pb)
    assert (q["queue_status"] == QUEUED).sum() == 10
    assert (q["queue_status"] == WATCH).sum() == 30
    assert q.loc[3, "queue_rank"] == 1 and q.loc[7, "queue_rank"] == 2
    top = inputs["expected_value"].rank(ascending=False, method="first")
    queued = q["queue_status"] == QUEUED
    assert set(inputs.index[queued]) == set(inputs.index[top <= 10])
    assert q.loc[queued, "queue_reason"].str.contains(r"of 10 in CSM's queue").all()
    assert q.loc[~queued, "queue_reason"].str.startswith("watch: CSM's queue of 10 is full").all()
    assert q["queue_rank"].notna().all() and not q["holdout"].any()


def test_no_action_rows_have_no_queue_columns(pb):
    inputs = _inputs(5)
    inputs.loc[[0, 1], "playbook"] = "keep_warm"
    inputs.loc[[0, 1], ["expected_value", "queue_reason"]] = [np.nan, None]
    q = assign_queue(inputs, pb)
    assert q.loc[[0, 1], "queue_status"].isna().all()
    assert q.loc[[0, 1], ["queue_rank", "holdout", "queue_reason"]].isna().all().all()
    assert q.loc[2:, "queue_status"].notna().all()


def test_new_critical_signals_jump_the_queue_within_capacity(pb):
    pb = _with(pb, capacity={**pb.capacity, "CS manager": 3}, holdout_share=0.0)
    inputs = _inputs(8, playbook="save_call", owner="CS manager")
    # two new critical signals with the lowest values, one critical by health only
    inputs.loc[[5, 6], ["severity", "reason_feature"]] = ["critical", "data_export_requests_90d"]
    inputs.loc[[5, 6], "expected_value"] = 0.5
    inputs.loc[7, ["severity", "reason_feature"]] = ["critical", "logins_30d_vs_baseline"]
    inputs.loc[7, "expected_value"] = 0.1
    q = assign_queue(inputs, pb)
    assert q.loc[[5, 6], "queue_rank"].tolist() == [1, 2]
    assert q.loc[[5, 6], "queue_status"].eq(QUEUED).all()
    assert q.loc[5, "queue_reason"].startswith("new critical signal this week")
    assert q.loc[7, "queue_status"] == WATCH  # not a new signal: ranked by its value
    assert (q["queue_status"] == QUEUED).sum() == 3


def test_holdout_uses_no_capacity_and_is_marked(pb):
    pb = _with(pb, capacity={**pb.capacity, "CSM": 50}, holdout_share=0.10)
    inputs = _inputs(300)
    q = assign_queue(inputs, pb)
    worked = (q["queue_status"] == QUEUED) & ~q["holdout"].astype(bool)
    assert worked.sum() == 50
    assert q["holdout"].sum() == 30
    held_queued = (q["queue_status"] == QUEUED) & q["holdout"].astype(bool)
    assert held_queued.sum() >= 1
    assert q.loc[q["holdout"].astype(bool), "queue_reason"].str.startswith("held out").all()
    # held-out rows interleave with worked ones in the order: the last queued is at
    # rank 50 + the holdouts before it
    assert q.loc[worked, "queue_rank"].max() == 50 + held_queued.sum()


def test_holdout_is_stable_balanced_per_decile_and_off_at_zero(pb):
    inputs = _inputs(1000, seed=3)
    inputs["playbook"] = np.where(np.arange(1000) % 2, "re_engage", "low_usage")
    a = assign_queue(inputs, pb)
    shuffled = inputs.sample(frac=1.0, random_state=1)
    b = assign_queue(shuffled, pb).loc[inputs.index]
    pd.testing.assert_series_equal(a["holdout"], b["holdout"])  # input order does not matter
    pd.testing.assert_frame_equal(a, assign_queue(inputs, pb))  # reruns
    decile = risk_deciles(inputs["churn_probability"].to_numpy(),
                          inputs["account_id"].to_numpy(), np.arange(1000))
    per = pd.Series(a["holdout"].astype(bool).to_numpy()).groupby(decile).sum()
    assert per.tolist() == [10] * DECILES
    # another policy version draws again
    other = assign_queue(inputs, _with(pb, policy_version="pother"))
    assert other["holdout"].sum() == 100 and (other["holdout"] != a["holdout"]).any()
    none = assign_queue(inputs, _with(pb, holdout_share=0.0))
    assert not none["holdout"].any()


def test_small_strata_still_hold_out_the_rounded_share(pb):
    inputs = _inputs(35, seed=2)
    q = assign_queue(inputs, pb)
    assert q["holdout"].sum() == 4  # round(0.10 x 35): floor or ceiling per decile
    decile = risk_deciles(inputs["churn_probability"].to_numpy(),
                          inputs["account_id"].to_numpy(), np.arange(35))
    per = pd.Series(q["holdout"].astype(bool).to_numpy()).groupby(decile).sum()
    assert per.max() <= 1


def test_never_hold_out_plays_are_never_withheld(pb):
    inputs = _inputs(400, playbook="save_call", owner="CS manager")
    q = assign_queue(inputs, pb)
    assert not q["holdout"].any()
    mixed = _inputs(400)
    mixed.loc[::2, ["playbook", "owner"]] = ["payment_recovery", "Billing"]
    q = assign_queue(mixed, pb)
    assert not q.loc[::2, "holdout"].any()
    assert q.loc[1::2, "holdout"].sum() == 20  # 10% of the eligible 200


def test_unknown_value_is_watched_not_queued(pb):
    inputs = _inputs(5)
    inputs.loc[2, "expected_value"] = np.nan
    q = assign_queue(inputs, _with(pb, holdout_share=0.0))
    assert q.loc[2, "queue_status"] == WATCH and q.loc[2, "queue_rank"] == 5


# ---- the weekly job on the small simulated book, two consecutive weeks ----------------------
def _config(target: str):
    from churnml.models.config import load_config

    config = load_config(target)
    return config.with_overrides(
        num_boost_round=40, backtest_folds=1, bootstrap_resamples=0,
        lgb_params={**config.lgb_params, "num_threads": 1, "deterministic": True})


@pytest.fixture(scope="module")
def two_weeks(sim_tables, tmp_path_factory):
    from churnml.data.tables import Book
    from churnml.health.score import HealthScore
    from churnml.jobs.weekly import score_book
    from churnml.models.train import train_target

    book = Book(tables=dict(sim_tables.tables))
    models = {}
    for target in ("churn", "expansion"):
        models[target] = train_target(book, target, _config(target)).model
        models[target].version = "1"
    out = tmp_path_factory.mktemp("queue_weeks")
    weeks = []
    for as_of in (book.data_end - pd.Timedelta(days=7), book.data_end):
        result = score_book(book, as_of, out, models, HealthScore(), chunk_size=100)
        weeks.append(pd.read_parquet(result.scores_path))
    return weeks


def _actions(scores: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame.from_records(scores["next_best_action"].tolist(), index=scores.index)


def test_weekly_queue_fits_capacity_with_reasons_and_values(two_weeks, pb):
    for scores in two_weeks:
        actions = _actions(scores)
        queued = scores["queue_status"] == QUEUED
        worked = queued & ~scores["holdout"].fillna(False).astype(bool)
        per_owner = worked.groupby(actions["owner"]).sum()
        for owner, count in per_owner.items():
            assert count <= pb.capacity[owner], owner
        assert per_owner.get("CSM", 0) > 0
        assert scores.loc[queued, "queue_reason"].str.len().gt(0).all()
        assert scores.loc[queued, "expected_value"].notna().all()
        assert scores.loc[queued, "expected_value"].ge(0).all()
        none = actions["playbook"] == pb.no_action_playbook
        assert scores.loc[none, "queue_status"].isna().all()
        assert scores.loc[~none, "queue_status"].isin([QUEUED, WATCH]).all()
        assert scores["holdout"].fillna(False).astype(bool).sum() > 0
        assert scores["policy_version"].eq(pb.policy_version).all()


def test_critical_actions_stay_rare_and_do_not_repeat_on_unchanged_signals(two_weeks, pb):
    critical_features = {s.feature for s in pb.critical_signals}
    jumped = []
    for scores in two_weeks:  # the first week is the folder's first run: no flood either
        actions = _actions(scores)
        critical = actions["severity"] == "critical"
        assert critical.mean() <= 0.05, critical.mean()
        jump = scores["queue_reason"].fillna("").str.startswith("new critical signal")
        assert (jump <= (critical & actions["reason_feature"].isin(critical_features))).all()
        jumped.append(set(zip(scores.loc[jump, "account_id"],
                              actions.loc[jump, "reason_feature"])))
    assert jumped[0], "the book should have a new critical signal in the first week"
    # a signal that jumped the queue last week and did not rise again is not critical now
    assert not (jumped[0] & jumped[1])


def test_low_health_is_critical_only_in_the_week_it_gets_there(two_weeks, pb, sim_tables):
    """The second week's rule, decided from the book a week before, agrees with the first
    week's output (the same book's health score at that date): an account below
    ``critical_health`` in both weeks is critical the second week only on a new critical
    signal, and a critical row without a signal entered the tier this week."""
    from churnml.data.tables import Book
    from churnml.health.score import HealthScore
    from churnml.scoring.compare import health_week_before, week_before

    first, second = two_weeks
    bar = pb.risk["critical_health"]
    # the health score of the book's compared features a week before = the first week's
    book = Book(tables=dict(sim_tables.tables))
    before = week_before(book, second["as_of"].iloc[0], pb)
    ids = first["account_id"].to_numpy(dtype=object)
    h_before = health_week_before(HealthScore(), ids, before)
    h_first = first["health_score"].where(first["health_tier"] != "insufficient_data")
    np.testing.assert_allclose(h_before, h_first.to_numpy(dtype=float), rtol=1e-9)

    def known(scores):
        return scores["health_score"].where(scores["health_tier"] != "insufficient_data")

    h_then = known(first).set_axis(first["account_id"]).reindex(second["account_id"]).to_numpy()
    h_now = known(second).to_numpy()
    actions = _actions(second)
    critical = (actions["severity"] == "critical").to_numpy()
    signal = actions["reason_feature"].isin({s.feature for s in pb.critical_signals}).to_numpy()
    with np.errstate(invalid="ignore"):
        stayed = (h_now < bar) & (h_then < bar)
        entered = (h_now < bar) & ~(h_then < bar)
    assert not (critical & stayed & ~signal).any()
    assert (actions.loc[stayed & ~signal, "severity"] == "high").all()
    np.testing.assert_array_equal(critical & ~signal, entered & ~signal)


def test_weekly_queue_with_a_learned_uplift_book_wide(two_weeks, pb):
    """A week's output rows re-queued with an uplift model for one play (fitted here on the
    week's own rows with a made-up effect): that play's rows carry ``effect_source`` uplift
    and MRR x estimated effect; the other plays keep the prior; capacity still holds; the
    Arrow path (the weekly job's and Spark's) equals the frame path."""
    import pyarrow as pa

    from churnml.jobs.partitions import to_arrow
    from churnml.models.uplift import fit_uplift_set
    from churnml.scoring.queue import PRIOR, UPLIFT, queue_frame, queue_tables
    from churnml.scoring.schema import arrow_schema, uplift_feature_columns

    scores = two_weeks[1]
    actions = _actions(scores)
    dims = [c[len("health_"):] for c in scores.columns if c.startswith("health_")
            and c not in ("health_score", "health_tier", "health_dimensions_used",
                          "health_weights_version")]
    features = [c for c in uplift_feature_columns(dims) if c in scores]
    rng = np.random.default_rng(0)
    n = 2000
    units = scores.sample(n, replace=True, random_state=0).reset_index(drop=True)
    treated = rng.random(n) < 0.7
    p = units["churn_probability"].to_numpy() * np.where(treated, 0.5, 1.0)
    units = units.assign(playbook="re_engage", outcome="churn", treated=treated,
                         label=(rng.random(n) < p).astype(float), horizon_days=90)
    fitted = fit_uplift_set(units, features, {"min_holdout": 100, "min_recommended": 100,
                                              "min_events": 5})
    assert list(fitted.plays) == ["re_engage"]
    out = queue_frame(scores, pb, uplift=fitted)
    play = actions["playbook"]
    uses = play == "re_engage"
    assert uses.any()
    assert out.loc[uses, "effect_source"].eq(UPLIFT).all()
    benefit = fitted.benefit(scores, play.to_numpy(dtype=object))
    assert np.allclose(out.loc[uses, "expected_value"], scores.loc[uses, "mrr"] * benefit[uses])
    other = ~uses & scores["expected_value"].notna()
    assert out.loc[other, "effect_source"].eq(PRIOR).all()
    assert np.allclose(out.loc[other, "expected_value"], scores.loc[other, "expected_value"])
    worked = (out["queue_status"] == QUEUED) & ~out["holdout"].fillna(False).astype(bool)
    for owner, count in worked.groupby(actions["owner"]).sum().items():
        assert count <= pb.capacity[owner], owner
    assert out.loc[(out["queue_status"] == QUEUED) & uses, "queue_reason"].str.contains(
        "uplift model on").all()
    schema = arrow_schema(dims)
    table = to_arrow(scores, schema)
    half = table.num_rows // 2
    tables = queue_tables([table.slice(0, half), table.slice(half)], pb, uplift=fitted)
    back = pa.concat_tables(tables).to_pandas()
    for column in ("expected_value", "effect_source", "queue_status", "queue_rank",
                   "queue_reason", "holdout"):
        a, b = back[column].astype(object), out[column].astype(object)
        assert ((a == b) | (a.isna() & b.isna())).all(), column
