"""The queue uses the learned uplift (issue 11): a play whose randomized holdout data meets the
``uplift:`` rules of ``playbooks.yaml`` gets an X-learner; the weekly job's queue then ranks
that play's candidates by MRR x typical share x the account's estimated effect instead of the
prior, says so (``effect_source``, the reason) and never queues an account the model expects
not to help; every other play keeps the prior. Checked against plain computations."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pickle

import numpy as np
import pandas as pd
import pytest

from churnml.jobs import effects as E
from churnml.models.uplift import UpliftSet, fit_uplift_set, play_qualifies
from churnml.errors import ConfigError, UsageError
from churnml.scoring.actions import load_playbooks, parse_playbooks, policy_version
from churnml.scoring.queue import PRIOR, QUEUED, UPLIFT, WATCH, assign_queue, uplift_values
from churnml.scoring.schema import output_columns, uplift_feature_columns

RULES = {"min_holdout": 150, "min_recommended": 300, "min_events": 15}


@pytest.fixture(scope="module")
def pb():
    return load_playbooks()


def randomized_units(n: int, seed: int, play: str = "re_engage", holdout: float = 0.3):
    """Units of one play: working an account lowers its churn by 0.4 x (1 - health / 100)
    (a big effect on unhealthy accounts, none on healthy ones); 30% held out."""
    rng = np.random.default_rng(seed)
    health = rng.uniform(0, 100, n)
    treated = rng.random(n) >= holdout
    base = 0.15 + 0.35 * (1 - health / 100)
    effect = 0.4 * (1 - health / 100)
    label = (rng.random(n) < base - treated * effect).astype(float)
    return pd.DataFrame({
        "account_id": [f"A{i:05d}" for i in range(n)], "playbook": play, "outcome": "churn",
        "treated": treated, "label": label, "horizon_days": 90,
        "as_of": pd.Timestamp("2026-01-05") + pd.to_timedelta(rng.integers(0, 20, n) * 7, "D"),
        "health_score": health, "mrr": rng.integers(100, 5000, n).astype(float),
        "churn_probability": base}), effect


@pytest.fixture(scope="module")
def fitted():
    units, _ = randomized_units(3000, 1)
    small, _ = randomized_units(200, 2, play="low_usage")
    return fit_uplift_set(pd.concat([units, small], ignore_index=True),
                          ["churn_probability", "health_score", "mrr"], RULES, seed=0)


def test_rule_counts_each_arm_and_its_events():
    y = np.r_[np.ones(20), np.zeros(130), np.ones(40), np.zeros(260)]
    t = np.r_[np.zeros(150, bool), np.ones(300, bool)]
    assert play_qualifies(t, y, RULES)
    assert not play_qualifies(t[1:], y[1:], RULES)  # 149 held out
    assert not play_qualifies(t, np.r_[np.ones(14), np.zeros(136), y[150:]], RULES)  # 14 events
    assert not play_qualifies(t, np.r_[y[:150], np.ones(290), np.zeros(10)], RULES)  # 10 non


def test_only_plays_meeting_the_rules_are_fitted_and_the_effect_is_learned(fitted):
    assert list(fitted.plays) == ["re_engage"]  # low_usage: 200 units, too few held out
    p = fitted.plays["re_engage"]
    assert p.is_risk and p.n_holdout + p.n_recommended == 3000
    test, truth = randomized_units(2000, 3)
    benefit = fitted.benefit(test, test["playbook"].to_numpy())
    assert np.corrcoef(benefit, truth)[0, 1] > 0.6  # fewer churns where the truth says so
    assert np.isnan(fitted.benefit(test, np.full(len(test), "low_usage", object))).all()
    # point in time: the last unit's week + its horizon
    assert fitted.outcomes_known_on == str(
        (pd.Timestamp("2026-01-05") + pd.Timedelta(days=19 * 7 + 90)).date())
    assert not fitted.usable_on("2026-06-01") and fitted.usable_on(fitted.outcomes_known_on)


def test_queue_values_use_the_uplift_where_fitted_and_the_prior_elsewhere(fitted, pb):
    test, _ = randomized_units(40, 4)
    play = np.array(["re_engage"] * 20 + ["low_usage"] * 10 + ["right_size"] * 5
                    + [pb.no_action_playbook] * 5, dtype=object)
    prior = np.r_[np.full(35, 12.5), np.full(5, np.nan)]
    text = np.array(["prior sentence"] * 35 + [None] * 5, dtype=object)
    ev, source, sentence = uplift_values(test, play, prior, text, fitted, pb)
    benefit = fitted.benefit(test, play)
    for i in range(40):  # plain, row by row
        if play[i] == "re_engage":
            assert ev[i] == pytest.approx(test["mrr"][i] * benefit[i])
            assert source[i] == UPLIFT and "uplift model on" in sentence[i]
            assert f"MRR ${test['mrr'][i]:,.0f}" in sentence[i]
        elif i < 35:
            assert ev[i] == 12.5 and source[i] == PRIOR and sentence[i] == "prior sentence"
        else:
            assert np.isnan(ev[i]) and source[i] is None and sentence[i] is None
    # no model: every value unchanged
    same = uplift_values(test, play, prior, text, None, pb)
    assert np.array_equal(same[0], prior, equal_nan=True) and list(same[2]) == list(text)


def test_accounts_the_model_expects_not_to_help_are_never_queued(pb):
    n = 30
    inputs = pd.DataFrame({
        "account_id": [f"A{i:03d}" for i in range(n)], "playbook": "re_engage",
        "owner": "CSM", "severity": "high", "reason_feature": "",
        "expected_value": np.linspace(-50, 100, n), "churn_probability": 0.3,
        "queue_reason": "x", "effect_source": UPLIFT})
    inputs.loc[0, ["severity", "reason_feature", "playbook"]] = [
        "critical", pb.critical_signals[0].feature, "save_call"]
    q = assign_queue(inputs, dataclasses.replace(pb, holdout_share=0.0))
    hurts = (inputs["expected_value"] <= 0).to_numpy()
    assert (q.loc[hurts, "queue_status"] == WATCH).sum() == hurts.sum() - 1
    assert q.loc[0, "queue_status"] == QUEUED  # a new critical signal still jumps
    assert q.loc[hurts[1:].nonzero()[0][1:] + 1, "queue_reason"].str.contains(
        "expects working it not to help").all()
    assert (q.loc[~hurts, "queue_status"] == QUEUED).all()  # capacity 60 > 30 rows
    # the same values from the prior are queued: only the model's verdict keeps them out
    prior = assign_queue(inputs.assign(effect_source=PRIOR),
                         dataclasses.replace(pb, holdout_share=0.0))
    assert (prior.loc[inputs["expected_value"] == 0, "queue_status"] == QUEUED).all()


def test_effect_source_is_declared_once_and_the_rules_are_not_policy(pb):
    names = output_columns(["usage"])
    assert names[names.index("expected_value") + 1] == "effect_source"
    assert uplift_feature_columns(["usage"]) == [
        "churn_probability", "expansion_probability", "contraction_probability",
        "health_score", "health_usage", "mrr"]
    assert pb.uplift_rules == {"min_holdout": 200, "min_recommended": 400, "min_events": 20}
    raw = dict(pb.raw)
    assert policy_version({**raw, "uplift": {"min_holdout": 5}}) == pb.policy_version
    with pytest.raises(ConfigError, match="uplift.min_events"):
        parse_playbooks({**raw, "uplift": {"min_events": 0}})
    with pytest.raises(ConfigError, match="not a known rule"):
        parse_playbooks({**raw, "uplift": {"min_people": 3}})


def test_saved_set_round_trips_and_is_used_only_point_in_time(tmp_path, fitted):
    result = E.EffectsResult(table=pd.DataFrame(columns=E.EFFECT_COLUMNS),
                             units=pd.DataFrame(columns=E.UNIT_COLUMNS), weeks_read=0,
                             weeks_skipped=[], has_actions=False, uplift=fitted)
    E.write_effects(result, tmp_path)
    saved = tmp_path / "effects" / "uplift.json"
    assert sorted(p.name for p in saved.parent.iterdir()) == [
        "effects.csv", "effects.parquet", "units.parquet", "uplift.json"]  # no temporaries
    back = E.load_uplift(tmp_path)
    test, _ = randomized_units(50, 5)
    assert np.array_equal(back.benefit(test, test["playbook"].to_numpy()),
                          fitted.benefit(test, test["playbook"].to_numpy()))
    assert back.to_dict() == json.loads(saved.read_text())  # every field read back
    assert E.usable_uplift("saved", tmp_path, "2026-01-05") is None  # outcomes after as_of
    assert E.usable_uplift("saved", tmp_path, "2027-01-04") is not None
    assert E.usable_uplift(None, tmp_path, "2027-01-04") is None
    # an empty set (no play qualifies) is written too: the next week uses the priors
    E.write_effects(dataclasses.replace(result, uplift=UpliftSet([], {})), tmp_path)
    assert E.load_uplift(tmp_path) is None
    assert json.loads(saved.read_text())["plays"] == {}


def _random_rows(features, n, seed):
    """Rows over the features' whole range and beyond, with NaN (unknown) cells."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n, len(features))) * np.array([0.3, 60, 3000]) + [0.3, 50, 2000]
    X[rng.random(X.shape) < 0.1] = np.nan
    return pd.DataFrame(X, columns=features)


def test_json_round_trip_predicts_what_the_fitted_set_predicts(tmp_path, fitted):
    back = UpliftSet.from_dict(json.loads(json.dumps(fitted.to_dict(), allow_nan=False)))
    rows = _random_rows(fitted.features, 5000, 11)
    play = np.random.default_rng(12).choice(["re_engage", "low_usage"], len(rows))
    a, b = fitted.benefit(rows, play), back.benefit(rows, play)
    assert np.isfinite(a[play == "re_engage"]).all()
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12, equal_nan=True)
    assert back.features == fitted.features
    assert (back.fitted_through, back.outcomes_known_on) == (fitted.fitted_through,
                                                            fitted.outcomes_known_on)
    p, q = fitted.plays["re_engage"], back.plays["re_engage"]
    assert dataclasses.replace(q, model=None) == dataclasses.replace(p, model=None)
    assert (q.model.seed, q.model.params, q.model.binary, q.model._share) == (
        p.model.seed, p.model.params, p.model.binary, p.model._share)


def _write(tmp_path, data) -> None:
    folder = tmp_path / "effects"
    folder.mkdir(exist_ok=True)
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    (folder / "uplift.json").write_bytes(raw)


def test_a_damaged_or_newer_set_is_a_clear_error_naming_the_file(tmp_path, fitted):
    good = fitted.to_dict()
    text = json.dumps(good).encode()
    booster = good["plays"]["re_engage"]["model"]["boosters"]["tau0"]
    damaged = json.loads(text)
    damaged["plays"]["re_engage"]["model"]["boosters"]["tau0"] = booster[: len(booster) // 2]
    no_field = json.loads(text)
    del no_field["plays"]["re_engage"]["model"]["share_treated"]
    not_a_model = json.loads(text)
    not_a_model["plays"]["re_engage"]["model"]["boosters"]["tau1"] = "hello"
    sums = not_a_model["plays"]["re_engage"]["model"]["boosters_sha256"]
    sums["tau1"] = hashlib.sha256(b"hello").hexdigest()
    wrong_width = json.loads(text)
    wrong_width["features"] = wrong_width["features"][:2]
    cases = {text[: len(text) // 2]: "cannot be read",  # a half-written file
             b"\x80\x05 not json": "cannot be read",
             json.dumps([1, 2]).encode(): "not a churnml uplift set",
             json.dumps({**good, "format": 99}).encode(): "format 99, this churnml reads",
             json.dumps(damaged).encode(): "booster 'tau0' does not match its SHA-256",
             json.dumps(not_a_model).encode(): "booster 'tau1' is not a LightGBM text model",
             json.dumps(no_field).encode(): "missing field 'share_treated'",
             json.dumps(wrong_width).encode(): "booster 'tau1' reads 3 features, the set names 2"}
    for raw, message in cases.items():
        _write(tmp_path, raw)
        with pytest.raises(UsageError, match=message) as err:
            E.load_uplift(tmp_path)
        assert str(tmp_path / "effects" / "uplift.json") in str(err.value)
        assert "churnml effects" in str(err.value) and err.value.exit_code == 2
        with pytest.raises(UsageError):  # the weekly job's path says so too
            E.usable_uplift("saved", tmp_path, "2027-01-04")


def test_an_older_format_or_the_old_pickle_falls_back_to_the_priors_with_a_warning(
        tmp_path, fitted, caplog):
    _write(tmp_path, {**fitted.to_dict(), "format": 1})
    with caplog.at_level(logging.WARNING, logger="churnml.jobs.effects"):
        assert E.load_uplift(tmp_path) is None
    assert "uplift format 1 (this churnml reads 2) and is ignored" in caplog.text
    assert str(tmp_path / "effects" / "uplift.json") in caplog.text
    (tmp_path / "effects" / "uplift.json").unlink()
    caplog.clear()

    class Boom:  # a pickle that would run code if it were ever loaded
        def __reduce__(self):
            return (pytest.fail, ("the old pickle was loaded",))

    old = tmp_path / "effects" / "uplift.pkl"
    old.write_bytes(pickle.dumps(Boom()))
    with caplog.at_level(logging.WARNING, logger="churnml.jobs.effects"):
        assert E.load_uplift(tmp_path) is None
    assert "old pickle format" in caplog.text and str(old) in caplog.text
    result = E.EffectsResult(table=pd.DataFrame(columns=E.EFFECT_COLUMNS),
                             units=pd.DataFrame(columns=E.UNIT_COLUMNS), weeks_read=0,
                             weeks_skipped=[], has_actions=False, uplift=fitted)
    E.write_effects(result, tmp_path)  # the JSON set replaces the pickle
    assert not old.exists() and E.load_uplift(tmp_path) is not None


def test_measure_fits_a_play_from_the_record_with_the_week_output_columns(tmp_path, pb):
    """End to end through ``churnml.jobs.effects.measure``: the units' features are the
    output columns of their first queued week; with rules the data meets, the play is fitted;
    with the default rules (more data than this) it is not."""
    import test_effects as TE

    book, truth = TE.make_case(7, n=1400, holdout=0.3)
    out = tmp_path / "scores"
    TE.write_record(out, truth)
    # add an output column to each week: the account's MRR (the fixture's mrr0)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from churnml.jobs.layout import SCORES_NAME
    from churnml.jobs.partitions import mark_complete

    mrr0 = dict(zip(truth["account_id"], truth["mrr0"]))
    for path in sorted(out.glob(f"*/{SCORES_NAME}")):
        table = pq.read_table(path)
        ids = table.column("account_id").to_pylist()
        week = path.parent.name
        table = table.append_column("mrr", pa.array(
            [mrr0[a] + (1000 if week.endswith("03-10") else 0) for a in ids], pa.float64()))
        pq.write_table(table, path)
        mark_complete(path.parent, pd.Timestamp(week.split("=")[1]), table.num_rows,
                      [SCORES_NAME])
    loose = dataclasses.replace(pb, uplift_rules={"min_holdout": 50, "min_recommended": 100,
                                                  "min_events": 5})
    result = E.measure(out, book, playbooks=loose, horizons=TE.HORIZONS, seed=0)
    assert list(result.uplift.plays) == [TE.PLAY] and result.uplift.features == ["mrr"]
    rows = E.uplift_units(E.first_recommendations(E.read_recommendations(out)[0]),
                          result.units)
    first_week = rows["as_of"] == pd.Timestamp("2025-03-10")
    expected = rows["account_id"].map(mrr0) + np.where(first_week, 1000, 0)
    assert np.allclose(rows["mrr"], expected)
    p = result.uplift.plays[TE.PLAY]
    matured = result.units["matured"] & result.units["labeled"]
    assert p.n_holdout == int((matured & result.units["holdout"]).sum())
    strict = E.measure(out, book, playbooks=dataclasses.replace(
        pb, uplift_rules={**pb.uplift_rules, "min_holdout": p.n_holdout + 1}),
        horizons=TE.HORIZONS, seed=0)
    assert strict.uplift.plays == {}
