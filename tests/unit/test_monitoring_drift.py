"""Drift against the reference profile, the label-free estimate (CBPE), the retrain rules, the
challenger gate's margin and the drift tables' backfill (churnml.jobs.drift,
churnml.models.profile)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.jobs import drift as D
from churnml.jobs.layout import SCORES_NAME
from churnml.jobs.partitions import mark_complete, partition_dir
from churnml.models import profile as P
from churnml.outcomes import OUTCOMES

THRESHOLDS = D.Thresholds(psi_warn=0.1, psi_alert=0.25, auc_drop=0.05, slope_low=0.8,
                          slope_high=1.25, drift_weeks=3, baseline_cohorts=4)


# ---- plain references ----------------------------------------------------------------------
def plain_numeric_bin(x: float, edges: list[float]) -> int:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return len(edges) + 1
    k = 0
    for edge in edges:  # the number of edges at or below x
        if x >= edge:
            k += 1
    return k


def plain_psi(ref_values, cur_values, bins):
    """PSI written out: quantile edges by sorting, every row binned by comparisons."""
    finite = sorted(v for v in ref_values if not math.isnan(v))
    edges = []
    if finite:
        qs = [float(np.quantile(finite, i / bins)) for i in range(1, bins)]  # the definition
        for q in qs:
            if q not in edges:
                edges.append(q)
            if qs.count(q) > 1 and math.nextafter(q, math.inf) not in edges:
                edges.append(math.nextafter(q, math.inf))  # a point mass: a bin of its own
        edges.sort()
    k = len(edges) + 2
    ref = [0.0] * k
    cur = [0.0] * k
    for v in ref_values:
        ref[plain_numeric_bin(v, edges)] += 1
    for v in cur_values:
        cur[plain_numeric_bin(v, edges)] += 1
    total_r, total_c = sum(ref), sum(cur)
    out = 0.0
    js_p, js_q = [], []
    for r, c in zip(ref, cur):
        rs, cs = r / total_r, c / total_c
        js_p.append(rs)
        js_q.append(cs)
        rs, cs = max(rs, P.SHARE_FLOOR), max(cs, P.SHARE_FLOOR)
        out += (cs - rs) * math.log(cs / rs)
    div = 0.0
    for a, b in zip(js_p, js_q):
        m = (a + b) / 2
        if a > 0:
            div += 0.5 * a * math.log2(a / m)
        if b > 0:
            div += 0.5 * b * math.log2(b / m)
    return out, math.sqrt(max(div, 0.0))


values = st.lists(st.one_of(st.floats(-50, 50, allow_nan=False), st.just(float("nan")),
                            st.sampled_from([0.0, 1.0, 2.0])), min_size=1, max_size=80)


@settings(max_examples=60, deadline=None)
@given(ref=values, cur=values, bins=st.integers(2, 12))
def test_psi_and_js_equal_a_plain_recomputation(ref, cur, bins):
    hist = P.reference_histogram(np.array(ref), "numeric", bins)
    assert sum(hist.shares) == pytest.approx(1.0)
    counts = hist.counts(np.array(cur))
    expected_psi, expected_js = plain_psi(ref, cur, bins)
    assert P.psi(hist.shares, counts) == pytest.approx(expected_psi, rel=1e-9, abs=1e-12)
    assert P.js_distance(hist.shares, counts) == pytest.approx(expected_js, rel=1e-9, abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(ref=st.lists(st.one_of(st.sampled_from(list("abcdefg")), st.none()), min_size=1,
                    max_size=60),
       cur=st.lists(st.one_of(st.sampled_from(list("abcdefghxyz")), st.none()), min_size=1,
                    max_size=60))
def test_categorical_drift_equals_a_plain_recomputation(ref, cur):
    hist = P.reference_histogram(np.array(ref, dtype=object), "categorical", 10)
    seen = sorted({v for v in ref if v is not None},
                  key=lambda v: (-sum(1 for r in ref if r == v), v))[:P.MAX_CATEGORIES]
    assert hist.categories == seen
    plain = [0.0] * (len(seen) + 2)
    for v in cur:
        plain[len(seen) + 1 if v is None else seen.index(v) if v in seen else len(seen)] += 1
    np.testing.assert_array_equal(hist.counts(np.array(cur, dtype=object)), plain)


def test_psi_is_zero_on_the_reference_itself_and_grows_with_a_shift():
    rng = np.random.default_rng(3)
    x = rng.normal(size=20_000)
    hist = P.reference_histogram(x, "numeric", 10)
    assert P.psi(hist.shares, hist.counts(x)) == pytest.approx(0.0, abs=1e-12)
    small, large = (P.psi(hist.shares, hist.counts(x + s)) for s in (0.1, 1.0))
    assert 0 < small < 0.1 < 0.25 < large


# ---- CBPE ----------------------------------------------------------------------------------
def direct_expected_auc(p):
    """Every (positive, negative) pair of accounts, weighted by p_i (1 - p_j): the AUC's
    numerator and denominator in expectation, pair by pair."""
    num = den = 0.0
    for i in range(len(p)):
        for j in range(len(p)):
            w = p[i] * (1 - p[j])
            den += w
            num += w * (1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0)
    return num / den


@settings(max_examples=40, deadline=None)
@given(p=st.lists(st.one_of(st.floats(0.001, 0.999), st.sampled_from([0.1, 0.5])),
                  min_size=2, max_size=40))
def test_cbpe_equals_the_direct_pairwise_expectation(p):
    assert D.expected_roc_auc(np.array(p)) == pytest.approx(direct_expected_auc(p), rel=1e-9)


def test_cbpe_matches_the_realized_auc_when_outcomes_follow_the_probabilities():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(11)
    p = rng.beta(0.6, 6, size=60_000)
    y = rng.uniform(size=len(p)) < p
    assert D.expected_roc_auc(p) == pytest.approx(roc_auc_score(y, p), abs=0.01)


# ---- the retrain rules ---------------------------------------------------------------------
def realized_row(as_of, auc, low, high, slope, version="3", outcome="churn"):
    as_of = pd.Timestamp(as_of)
    return {"as_of": as_of, "outcome": outcome, "scorer": "model", "model_version": version,
            "matured_on": as_of + pd.Timedelta(days=90), "in_sample": False, "roc_auc": auc,
            "roc_auc_ci_low": low, "roc_auc_ci_high": high, "calibration_slope": slope}


def drift_rows(psis, version="3", start="2026-06-07"):
    weeks = pd.date_range(start, periods=len(psis), freq="7D")
    return pd.DataFrame({"as_of": weeks, "outcome": "churn", "model_version": version,
                         "kind": "score", "name": "churn_probability", "psi": psis})


def decide(realized, drift, as_of="2026-09-20", training=0.80, version="3"):
    frame = pd.DataFrame(realized) if realized else None
    if frame is not None:
        frame["in_sample"] = frame["in_sample"].astype("boolean")
    return D.retrain_decision(pd.Timestamp(as_of), "churn", version, THRESHOLDS, frame,
                              drift if drift is not None else pd.DataFrame(), training)


def test_no_rule_fires_on_a_healthy_week():
    row = decide([realized_row("2026-06-14", 0.79, 0.76, 0.82, 1.02)], drift_rows([0.02] * 5))
    assert not row["retrain_recommended"] and row["retrain_reason"] == ""
    assert row["realized_roc_auc"] == 0.79 and row["score_drift_weeks"] == 0


def test_a_realized_auc_drop_fires_only_beyond_the_allowed_drop_and_outside_the_interval():
    fired = decide([realized_row("2026-06-14", 0.70, 0.66, 0.74, 1.0)], None)
    assert fired["retrain_recommended"] and "realized AUC 0.700" in fired["retrain_reason"]
    within = decide([realized_row("2026-06-14", 0.76, 0.72, 0.79, 1.0)], None)  # drop 0.04
    assert not within["retrain_recommended"]
    noisy = decide([realized_row("2026-06-14", 0.70, 0.55, 0.85, 1.0)], None)  # interval wide
    assert not noisy["retrain_recommended"]


def test_only_cohorts_matured_by_the_run_and_scored_by_this_version_count():
    late = realized_row("2026-07-05", 0.60, 0.55, 0.65, 1.0)  # matures 2026-10-03
    assert not decide([late], None, as_of="2026-09-20")["retrain_recommended"]
    assert decide([late], None, as_of="2026-10-04")["retrain_recommended"]
    old_version = realized_row("2026-06-14", 0.60, 0.55, 0.65, 1.0, version="2")
    assert not decide([old_version], None)["retrain_recommended"]  # a new champion starts clean


def weekly(start, aucs, half_width=0.03, version="3"):
    """Consecutive weekly cohorts with these AUCs and intervals of +-``half_width``."""
    weeks = pd.date_range(start, periods=len(aucs), freq="7D")
    return [realized_row(w, a, a - half_width, a + half_width, 1.0, version=version)
            for w, a in zip(weeks, aucs)]


def test_the_auc_drop_baseline_is_the_training_evaluation_until_enough_cohorts_mature():
    # a weak champion: training evaluation 0.80, but it delivers 0.72 from its first cohort
    cohorts = weekly("2026-03-01", [0.72, 0.73, 0.71, 0.72, 0.72, 0.71])
    matured = [c["matured_on"] for c in cohorts]
    for k in range(1, 4):  # 1-3 cohorts known: the training evaluation, and it fires
        row = decide(cohorts, None, as_of=str(matured[k - 1].date()))
        assert row["baseline"] == D.BASELINE_TRAINING and row["baseline_roc_auc"] == 0.80
        assert row["retrain_recommended"]
        assert f"below the training evaluation 0.800 (its own baseline needs 4 matured " \
               f"cohorts; {k} so far)" in row["retrain_reason"]
    for k in range(4, 7):  # from 4 on: the mean of its first 4, and a steady champion is quiet
        row = decide(cohorts, None, as_of=str(matured[k - 1].date()))
        assert row["baseline"] == D.BASELINE_OWN
        assert row["baseline_roc_auc"] == pytest.approx(np.mean([0.72, 0.73, 0.71, 0.72]))
        assert not row["retrain_recommended"] and row["retrain_reason"] == ""


def test_the_own_baseline_fires_on_a_fall_from_what_the_champion_delivered():
    cohorts = weekly("2026-03-01", [0.72, 0.73, 0.71, 0.72, 0.70, 0.655])
    as_of = str(cohorts[-1]["matured_on"].date())
    row = decide(cohorts, None, as_of=as_of, training=0.80)
    assert row["retrain_recommended"] and row["baseline"] == D.BASELINE_OWN
    assert "realized AUC 0.655 on the week of 2026-04-05 is 0.065 below its own baseline " \
           "0.720 (mean realized AUC of its first 4 matured cohorts, 2026-03-01 to " \
           "2026-03-22)" in row["retrain_reason"]
    # the same fall within the allowed drop, or an interval reaching the baseline: quiet
    assert not decide(cohorts[:5] + weekly("2026-04-05", [0.68]), None, as_of=as_of,
                      training=0.80)["retrain_recommended"]
    assert not decide(cohorts[:5] + weekly("2026-04-05", [0.655], half_width=0.07), None,
                      as_of=as_of, training=0.80)["retrain_recommended"]
    # a plain recomputation: mean of the first N finite cohorts of this version, in time order
    shuffled = [cohorts[i] for i in (5, 2, 0, 4, 1, 3)]
    shuffled[1] = dict(shuffled[1], roc_auc=float("nan"))  # 2026-03-15: one class only
    other = weekly("2026-02-01", [0.95] * 4, version="2")  # another version's cohorts
    row = decide(shuffled + other, None, as_of=as_of, training=0.80)
    assert row["baseline_roc_auc"] == pytest.approx(np.mean([0.72, 0.73, 0.72, 0.70]))


def test_a_calibration_slope_outside_the_band_fires():
    for slope, fires in ((0.75, True), (0.85, False), (1.2, False), (1.4, True)):
        row = decide([realized_row("2026-06-14", 0.80, 0.77, 0.83, slope)], None)
        assert row["retrain_recommended"] is fires
        assert ("calibration slope" in row["retrain_reason"]) is fires


def test_score_drift_fires_after_the_configured_number_of_weeks_running():
    assert not decide([], drift_rows([0.3, 0.3, 0.05, 0.3, 0.3]))["retrain_recommended"]
    row = decide([], drift_rows([0.05, 0.3, 0.3, 0.3]))
    assert row["retrain_recommended"] and row["score_drift_weeks"] == 3
    assert "3 weeks running" in row["retrain_reason"]
    # weeks after the run are not known to it
    assert not decide([], drift_rows([0.3, 0.3, 0.3]), as_of="2026-06-15")["retrain_recommended"]


def test_the_thresholds_come_from_the_model_configuration():
    from churnml.errors import ConfigError
    from churnml.models.config import load_config

    config = load_config("churn")
    t = D.Thresholds.of("churn")
    assert (t.psi_alert, t.drift_weeks, t.slope_low) == (config.drift_psi_alert,
                                                         config.retrain_drift_weeks,
                                                         config.retrain_slope_low)
    with pytest.raises(ConfigError, match="must contain 1"):
        config.with_overrides(retrain_slope_low=1.1)
    with pytest.raises(ConfigError, match="drift_psi_warn"):
        config.with_overrides(drift_psi_warn=0.5, drift_psi_alert=0.3)


# ---- the challenger gate's margin ------------------------------------------------------------
def gate_result(margin: float, seed=5):
    """A challenger's result whose test rows lie after the champion's span: its own
    probabilities rank the labels well (AUC about 0.85)."""
    from churnml.models.config import load_config

    rng = np.random.default_rng(seed)
    n = 4000
    weeks = pd.date_range("2026-05-03", periods=8, freq="7D")
    signal = rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(2 * signal - 2)))).astype(float)
    test = pd.DataFrame({"account_id": [f"a{i}" for i in range(n)],
                         "as_of": weeks[np.arange(n) % len(weeks)], "label": y,
                         "signal": signal})
    probability = 1 / (1 + np.exp(-(2 * signal - 2)))
    from sklearn.metrics import roc_auc_score

    config = load_config("churn").with_overrides(promotion_min_improvement=margin)
    dataset = SimpleNamespace(evaluation_rows=lambda: test)
    return SimpleNamespace(config=config, dataset=dataset,
                           predictions=test.assign(probability=probability),
                           metrics={"test_roc_auc": roc_auc_score(y, probability)})


class Champion:
    def __init__(self, noise, seed=1):
        self.info = {"train_end": "2026-04-01"}
        self.noise, self.seed = noise, seed

    def predict_proba(self, frame):
        rng = np.random.default_rng(self.seed)
        return 1 / (1 + np.exp(-(frame["signal"].to_numpy()
                                 + self.noise * rng.normal(size=len(frame)))))


def test_the_gate_accepts_a_better_challenger_and_refuses_a_worse_one():
    from churnml.models.registry import gate_decision

    result = gate_result(margin=0.0)
    worse_champion = Champion(noise=1.5)
    better = gate_decision(worse_champion, "3", result)
    assert better.became_champion and better.new_score > better.champion_score
    perfect_champion = SimpleNamespace(info={"train_end": "2026-04-01"},
                                       predict_proba=lambda f: f["label"].to_numpy() * 0.9)
    worse = gate_decision(perfect_champion, "3", result)
    assert not worse.became_champion and worse.new_score < worse.champion_score


def test_the_gate_requires_the_configured_margin():
    from churnml.models.registry import gate_decision

    champion = Champion(noise=0.5)
    delta = (gate_decision(champion, "3", gate_result(0.0)).new_score
             - gate_decision(champion, "3", gate_result(0.0)).champion_score)
    assert delta > 0
    assert gate_decision(champion, "3", gate_result(delta / 2)).became_champion
    assert not gate_decision(champion, "3", gate_result(delta * 2)).became_champion


def recommendation(version="3", recommended=True):
    from churnml.models.registry import RetrainRecommendation

    return RetrainRecommendation("churn", pd.Timestamp("2026-06-08"), version, recommended,
                                 "realized AUC 0.640 on the week of 2026-03-09 is 0.080 below "
                                 "its own first 4 cohorts 0.720 (allowed 0.05)" if recommended else "")


def test_after_a_recommended_retrain_the_gate_accepts_a_non_inferior_challenger():
    from churnml.models.registry import gate_decision

    result = gate_result(margin=0.0)
    # a champion that ranks a little better than the challenger on the gate's rows
    champion = SimpleNamespace(info={"train_end": "2026-04-01"},
                               predict_proba=lambda f: f["signal"].to_numpy())
    usual = gate_decision(champion, "3", result)
    delta = usual.new_score - usual.champion_score
    assert not usual.became_champion and usual.rule == "improvement"
    # within the margin: the rule turns to non-inferiority and the challenger is promoted
    margin = result.config.promotion_after_retrain_margin
    assert -margin < delta <= 0, delta  # the fixture exercises the case the rule is for
    after = gate_decision(champion, "3", result, recommendation("3"))
    assert after.became_champion and after.rule == "non_inferiority"
    assert "recommended retraining v3" in after.reason and "after_retrain_margin" in after.reason
    # the same challenger, a tighter margin than its shortfall: refused
    tight = SimpleNamespace(**{**vars(result), "config": result.config.with_overrides(
        promotion_after_retrain_margin=-delta / 2)})
    assert not gate_decision(champion, "3", tight, recommendation("3")).became_champion
    # a recommendation about another version, or none: the usual rule, said in the reason
    other = gate_decision(champion, "3", result, recommendation("2"))
    assert not other.became_champion and other.rule == "improvement"
    assert "not of champion v3" in other.reason
    quiet = gate_decision(champion, "3", result, recommendation("3", recommended=False))
    assert not quiet.became_champion and "did not recommend" in quiet.reason


def test_after_a_recommended_retrain_a_clearly_worse_challenger_is_still_refused():
    from churnml.models.registry import gate_decision

    perfect_champion = SimpleNamespace(info={"train_end": "2026-04-01"},
                                       predict_proba=lambda f: f["label"].to_numpy() * 0.9)
    decision = gate_decision(perfect_champion, "3", gate_result(0.0), recommendation("3"))
    assert decision.rule == "non_inferiority"
    assert decision.champion_score - decision.new_score > 0.1
    assert not decision.became_champion


def test_latest_recommendation_reads_the_last_monitored_week_of_the_outcome(tmp_path):
    from churnml.errors import UsageError
    from churnml.jobs.drift import RETRAIN_NAME, latest_recommendation
    from churnml.jobs.monitoring import MONITORING_DIR

    with pytest.raises(UsageError, match="churnml monitor --scores"):
        latest_recommendation(tmp_path, "churn")
    (tmp_path / MONITORING_DIR).mkdir()
    weeks = pd.to_datetime(["2026-06-15", "2026-06-01", "2026-06-08", "2026-06-22"])
    pd.DataFrame({"as_of": weeks, "outcome": ["churn", "churn", "churn", "expansion"],
                  "model_version": ["4", "3", "3", "2"],
                  "retrain_recommended": [True, False, True, False],
                  "retrain_reason": ["calibration slope 0.41 on the week of 2026-03-16 outside [0.6, 1.4]",
                                     "", "x", None]}).to_parquet(tmp_path / MONITORING_DIR / RETRAIN_NAME)
    churn = latest_recommendation(tmp_path, "churn")
    assert (churn.as_of, churn.model_version, churn.recommended) == (weeks[0], "4", True)
    assert "calibration slope 0.41" in churn.describe() and "2026-06-15" in churn.describe()
    expansion = latest_recommendation(tmp_path, "expansion")
    assert not expansion.recommended and expansion.reason == ""
    with pytest.raises(UsageError, match="no week monitors outcome 'contraction'"):
        latest_recommendation(tmp_path, "contraction")


def test_the_report_and_monitor_name_the_retrain_command_only_when_a_retrain_is_due():
    from churnml.commands.monitor import _status_lines
    from churnml.jobs.report_realized import status_table

    def status(recommended: bool):
        week = pd.Timestamp("2026-06-08")
        retrain = pd.DataFrame({"as_of": [week] * 2, "outcome": ["churn", "expansion"],
                                "model_version": ["3", "1"],
                                "retrain_recommended": [recommended, False],
                                "retrain_reason": ["calibration slope 0.41 outside [0.6, 1.4]" if recommended else "", ""]})
        estimated = pd.DataFrame({"as_of": [week] * 2, "outcome": ["churn", "expansion"],
                                  "estimated_roc_auc": [0.7, 0.8], "training_roc_auc": [0.72, 0.81]})
        return D.WeekStatus(pd.DataFrame(columns=D.DRIFT_COLUMNS), estimated, retrain)

    due = status(True)
    html = status_table(due)
    assert "churnml train --data DIR --target churn --scores OUT" in html
    assert "--target expansion" not in html and "after_retrain_margin" in html
    lines = "\n".join(_status_lines(due, "/srv/out", "/srv/book"))
    assert "churnml train --data /srv/book --target churn --scores /srv/out" in lines
    assert "--target expansion" not in lines
    quiet = status(False)
    assert "churnml train" not in status_table(quiet)
    assert "churnml train" not in "\n".join(_status_lines(quiet, "/srv/out", "/srv/book"))


# ---- the tables: weekly update and backfill --------------------------------------------------
class LinearScorer:
    feature_names = ["usage", "seats", "plan"]
    categories = {"plan": ["basic", "pro"]}

    def predict_proba(self, frame):
        return 1 / (1 + np.exp(-(0.5 * frame["usage"].fillna(0).to_numpy() - 1)))


def features_of(ids, as_of, shift=0.0):
    rng = np.random.default_rng(int(pd.Timestamp(as_of).strftime("%Y%m%d")))
    n = len(ids)
    usage = rng.normal(shift, 1, n)
    usage[rng.uniform(size=n) < 0.05] = np.nan
    return pd.DataFrame({"account_id": ids, "as_of": pd.Timestamp(as_of), "usage": usage,
                         "seats": rng.poisson(5, n).astype(float),
                         "plan": rng.choice(["basic", "pro", "enterprise"], n)})


class FakeFacts:
    def __init__(self):
        ids = [f"a{i:04d}" for i in range(3000)]
        train = pd.concat([features_of(ids, d) for d in pd.date_range("2026-01-04", periods=4,
                                                                      freq="7D")])
        self.reference = P.build_profile(LinearScorer(), train, outcome="churn", bins=10,
                                         reference_weeks=13)
        self.calls = 0

    def profile(self, outcome, version):
        self.calls += 1
        return self.reference if outcome == "churn" else None

    def training_auc(self, outcome, version):
        return 0.8


@pytest.fixture()
def weeks_folder(tmp_path):
    ids = np.array([f"a{i:04d}" for i in range(1200)])
    weeks = pd.date_range("2026-06-07", periods=5, freq="7D")
    shifts = dict(zip(weeks, [0.0, 0.0, 1.0, 1.5, 2.0]))

    def build(book, dates):
        return pd.concat([features_of(ids, d, shifts[pd.Timestamp(d)]) for d in dates])

    churn = next(o for o in OUTCOMES if o.name == "churn")
    for week in weeks:
        feats = build(None, [week])
        frame = pd.DataFrame({"account_id": ids, "as_of": week,
                              churn.probability_column: LinearScorer().predict_proba(feats),
                              churn.version_column: "3"})
        part = partition_dir(tmp_path, week)
        part.mkdir(parents=True)
        frame.to_parquet(part / SCORES_NAME, index=False)
        mark_complete(part, week, len(frame), [SCORES_NAME])
    return tmp_path, weeks, build


def test_the_weekly_update_equals_the_backfill_and_the_backfill_is_idempotent(weeks_folder):
    out, weeks, build = weeks_folder
    facts = FakeFacts()
    thresholds = {o.name: THRESHOLDS for o in OUTCOMES}
    for week in weeks:  # the weekly job: features seen chunk by chunk
        seen = D.FeatureDrift({"churn": facts.reference})
        feats = build(None, [week])
        for start in range(0, len(feats), 500):
            seen.add(feats.iloc[start:start + 500])
        D.update_week(out, week, facts=facts, realized=None, feature_counts=seen.counts,
                      thresholds=thresholds)
    weekly = {n: D.read_table(out, n, []) for n in (D.DRIFT_NAME, D.ESTIMATED_NAME,
                                                      D.RETRAIN_NAME)}
    first = D.backfill(out, None, facts=facts, realized=None, build_features=build,
                       thresholds=thresholds)
    once = {n: D.read_table(out, n, []) for n in weekly}
    D.backfill(out, None, facts=facts, realized=None, build_features=build,
               thresholds=thresholds)
    twice = {n: D.read_table(out, n, []) for n in weekly}
    for name in weekly:
        pd.testing.assert_frame_equal(weekly[name], once[name])
        pd.testing.assert_frame_equal(once[name], twice[name])
    drift = once[D.DRIFT_NAME]
    assert len(drift) == len(weeks) * (1 + 3)  # the score and three features a week
    usage = drift[drift["name"] == "usage"].set_index("as_of")["psi"]
    assert usage.iloc[0] < 0.1 and usage.iloc[-1] > 0.25  # the shift shows
    seats = drift[drift["name"] == "seats"]["psi"]
    assert (seats < 0.1).all()
    retrain = once[D.RETRAIN_NAME].set_index("as_of")
    # the score shifted from the third week on: three weeks running by the fifth
    assert list(retrain["retrain_recommended"]) == [False, False, False, False, True]
    assert list(first.retrain["as_of"]) == [weeks[-1]]
    estimated = once[D.ESTIMATED_NAME]
    assert (estimated["assumption"] == D.CBPE_ASSUMPTION).all()
    assert set(estimated["outcome"]) == {"churn"}


def test_the_profile_round_trips_through_json():
    import json

    profile = FakeFacts().reference
    again = P.ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again.to_dict() == profile.to_dict()
    assert again.features["plan"].categories == ["basic", "enterprise", "pro"] or \
        set(again.features["plan"].categories) == {"basic", "enterprise", "pro"}


def test_the_status_panel_shows_drift_estimate_and_retrain(weeks_folder):
    from churnml.jobs.report_realized import trust_panel

    out, weeks, build = weeks_folder
    status = D.backfill(out, None, facts=FakeFacts(), realized=None, build_features=build,
                        thresholds={o.name: THRESHOLDS for o in OUTCOMES})
    page = trust_panel(None, weeks[-1], status)
    assert "score drift (PSI)" in page and "<b>yes</b>: score PSI above 0.25" in page
    assert "usage" in page and "no champion scored this outcome" in page
    metrics, tags = D.mlflow_figures(status)
    assert metrics["retrain_recommended_churn"] == 1.0
    assert metrics["drift_churn_score_psi"] > 0.25
    assert tags["churnml.retrain_churn"].startswith("score PSI above")


def test_the_weekly_job_asks_the_registry_only_about_registered_champions():
    asked = []

    class Registry:
        def profile(self, outcome, version):
            asked.append((outcome, version))
            return FakeFacts().reference

        def training_auc(self, outcome, version):
            asked.append((outcome, version))
            return 0.7

    stand_in = LinearScorer()
    loaded = SimpleNamespace(info={"metrics": {"test_roc_auc": 0.81}})
    facts = D.JobFacts({"churn": loaded, "expansion": "4", "contraction": stand_in}, Registry())
    assert facts.training_auc("churn", "2") == 0.81 and asked == []
    assert facts.profile("contraction", "1") is None and facts.training_auc("contraction", "1") is None
    assert facts.profile("churn", "2") is not None and facts.training_auc("expansion", "4") == 0.7
    assert asked == [("churn", "2"), ("expansion", "4")]


def test_a_count_that_is_mostly_zero_can_drift():
    # the reference quantiles of a count that is 0 for 95% of rows are all 0: without a bin of
    # its own for the point mass, 0 and every higher count shared one bin and PSI stayed 0
    from churnml.models.profile import numeric_edges, psi, reference_histogram

    rng = np.random.default_rng(0)
    ref = np.where(rng.random(5000) < 0.95, 0.0, rng.integers(1, 4, 5000).astype(float))
    cur = np.where(rng.random(2000) < 0.6, 0.0, rng.integers(1, 4, 2000).astype(float))
    assert numeric_edges(ref, 10) == [0.0, float(np.nextafter(0.0, np.inf))]
    hist = reference_histogram(ref, "numeric", 10)
    assert psi(hist.shares, hist.counts(cur)) > 0.25
    same = np.where(rng.random(2000) < 0.95, 0.0, 1.0)
    assert psi(hist.shares, hist.counts(same)) < 0.05
