"""Realized performance per matured cohort (``churnml.jobs.monitoring``): immature weeks left
out, every figure equal to a plain recomputation from the partitions and the revenue
history, in-sample weeks marked and not counted, the weekly update equal to a backfill."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from churnml.data.tables import Book
from churnml.jobs.layout import SCORES_NAME
from churnml.jobs.monitoring import (
    Spans,
    latest_figures,
    out_of_sample,
    read_realized,
    realized_rows,
    update_realized,
)
from churnml.jobs.partitions import mark_complete, partition_dir

HORIZON = 28
HORIZONS = {"churn": HORIZON, "expansion": HORIZON, "contraction": HORIZON}
START = pd.Timestamp("2025-01-01")
END = pd.Timestamp("2025-12-31")


def make_book(n=300, seed=4) -> tuple[Book, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [f"A{i:04d}" for i in range(n)]
    mrr0 = rng.integers(100, 3000, n).astype(float)
    rows = [(a, START, m, "new") for a, m in zip(ids, mrr0)]
    churn_day = {}
    for a, m in zip(ids, mrr0):
        if rng.random() < 0.35:
            day = pd.Timestamp("2025-07-01") + pd.Timedelta(days=int(rng.integers(0, 180)))
            churn_day[a] = day
            rows.append((a, day, 0.0, "churn"))
        elif rng.random() < 0.2:
            rows.append((a, pd.Timestamp("2025-08-01") + pd.Timedelta(days=int(rng.integers(0, 140))),
                         m * 1.5, "upgrade"))
    mrr = pd.DataFrame(rows, columns=["account_id", "effective_date", "mrr", "reason"])
    days = pd.date_range(START, END, freq="D")
    usage = pd.DataFrame({"account_id": np.repeat(ids[:5], len(days)),
                          "ts": np.tile(days, 5), "event": "login", "quantity": 1.0})
    accounts = pd.DataFrame({"account_id": ids, "created_at": START})
    book = Book(tables={"accounts": accounts, "mrr_changes": mrr, "usage_events": usage})
    return book, mrr


def write_week(out, as_of: pd.Timestamp, mrr: pd.DataFrame, rng, version="3") -> pd.DataFrame:
    """A scored partition: the accounts active before as_of, a probability that knows a little
    about the future (so AUC is above 0.5), a random health score."""
    before = mrr[mrr["effective_date"] < as_of].sort_values("effective_date")
    latest = before.groupby("account_id")["mrr"].last()
    active = latest[latest > 0]
    soon = mrr[(mrr["mrr"] == 0) & (mrr["effective_date"] >= as_of)
               & (mrr["effective_date"] < as_of + pd.Timedelta(days=HORIZON))]["account_id"]
    signal = active.index.isin(soon).astype(float)
    n = len(active)
    frame = pd.DataFrame({
        "account_id": active.index.astype(str), "as_of": as_of,
        "churn_probability": np.clip(0.1 + 0.3 * signal + rng.normal(0, 0.15, n), 0.001, 0.999),
        "churn_model_version": version,
        "expansion_probability": rng.uniform(0, 0.3, n), "expansion_model_version": version,
        "health_score": np.clip(70 - 15 * signal + rng.normal(0, 15, n), 0, 100),
        "mrr": active.to_numpy(),
    })
    part = partition_dir(out, as_of)
    part.mkdir(parents=True)
    frame.to_parquet(part / SCORES_NAME, index=False)
    mark_complete(part, as_of, len(frame), [SCORES_NAME])
    return frame


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    out = tmp_path_factory.mktemp("scores")
    book, mrr = make_book()
    rng = np.random.default_rng(0)
    weeks = pd.date_range("2025-09-01", END, freq="7D")
    frames = {w: write_week(out, w, mrr, rng) for w in weeks}
    return out, book, mrr, frames


def plain_labels(mrr: pd.DataFrame, ids, as_of) -> np.ndarray:
    end = as_of + pd.Timedelta(days=HORIZON)
    churned = set(mrr.loc[(mrr["mrr"] == 0) & (mrr["effective_date"] >= as_of)
                          & (mrr["effective_date"] < end), "account_id"])
    return np.array([a in churned for a in ids], dtype=float)


def test_immature_weeks_are_left_out_and_matured_ones_equal_a_plain_recomputation(scored):
    out, book, mrr, frames = scored
    spans = Spans({"churn": {"3": pd.Timestamp("2025-09-08")}})
    table = realized_rows(out, book, spans=spans, horizons=HORIZONS)
    churn = table[(table["outcome"] == "churn")]
    last_matured = book.data_end - pd.Timedelta(days=HORIZON)
    assert set(churn["as_of"]) == {w for w in frames if w <= last_matured}
    assert len(churn["as_of"].unique()) < len(frames)  # the last four weeks are immature
    for as_of, group in churn.groupby("as_of"):
        frame = frames[as_of]
        y = plain_labels(mrr, frame["account_id"], as_of)
        model = group.set_index("scorer").loc["model"]
        health = group.set_index("scorer").loc["health_score"]
        assert model["n"] == len(frame) and model["positives"] == y.sum()
        assert model["roc_auc"] == pytest.approx(roc_auc_score(y, frame["churn_probability"]))
        assert health["roc_auc"] == pytest.approx(roc_auc_score(y, 100 - frame["health_score"]))
        top = np.argsort(-frame["churn_probability"].to_numpy(), kind="stable")[:int(np.ceil(len(y) * 0.1))]
        assert model["lift_top_decile"] == pytest.approx(y[top].mean() / y.mean(), rel=0.2)
        assert np.isnan(health["ece"]) and np.isfinite(model["ece"])
        assert model["in_sample"] == (as_of <= pd.Timestamp("2025-09-08"))
        assert not health["in_sample"]
    # the model "knows a little": realized AUC above chance on every counted cohort
    counted = out_of_sample(churn)
    assert (counted.loc[counted["scorer"] == "model", "roc_auc"] > 0.6).all()
    assert pd.Timestamp("2025-09-01") not in set(counted.loc[counted["scorer"] == "model", "as_of"])


def test_unknown_training_span_is_not_counted(scored):
    out, book, _, _ = scored
    table = realized_rows(out, book, spans=Spans({}), horizons=HORIZONS)
    model = table[table["scorer"] == "model"]
    assert model["in_sample"].isna().all()
    assert not (out_of_sample(table)["scorer"] == "model").any()
    assert (out_of_sample(table)["scorer"] == "health_score").any()


def test_weekly_update_equals_the_backfill_and_is_idempotent(scored, tmp_path):
    out, book, _, _ = scored
    spans = Spans({"churn": {"3": pd.Timestamp("2025-09-08")},
                   "expansion": {"3": pd.Timestamp("2025-09-08")}})
    # a first update on a shorter book (fewer weeks matured), then the full book
    short = Book(tables={k: (v[v[v.columns[1]] < pd.Timestamp("2025-11-15")]
                             if k != "accounts" else v) for k, v in book.tables.items()})
    update_realized(out, short, spans=spans, horizons=HORIZONS, recompute=True)
    first = read_realized(out)
    incremental = update_realized(out, book, spans=spans, horizons=HORIZONS)
    assert len(incremental) > len(first)
    backfill = update_realized(out, book, spans=spans, horizons=HORIZONS, recompute=True)
    pd.testing.assert_frame_equal(incremental.reset_index(drop=True),
                                  backfill.reset_index(drop=True))
    again = update_realized(out, book, spans=spans, horizons=HORIZONS)
    pd.testing.assert_frame_equal(again, backfill)
    figures = latest_figures(backfill)
    assert "realized_churn_model_roc_auc" in figures
    assert "realized_churn_health_score_roc_auc" in figures


def test_a_week_is_labeled_with_the_horizon_its_scoring_version_was_trained_with(scored,
                                                                                monkeypatch):
    """The configuration's horizon changed (28 -> 56 days) after champion v3 was trained with
    28: v3's weeks keep the 28-day label window and mature on v3's clock, as if the
    configuration had not moved; a version that recorded no horizon takes the configuration's
    and the table says so."""
    from churnml.jobs import monitoring
    from churnml.models import registry

    out, book, mrr, frames = scored
    ends = {"churn": {"3": pd.Timestamp("2025-09-08")}}
    edited = {**HORIZONS, "churn": 2 * HORIZON}
    trained = realized_rows(out, book, spans=Spans(ends, {"churn": {"3": HORIZON}}),
                            horizons=edited)
    before = realized_rows(out, book, spans=Spans(ends), horizons=HORIZONS)
    churn = trained[trained["outcome"] == "churn"].reset_index(drop=True)
    assert (churn["horizon_days"] == HORIZON).all()
    assert (churn["horizon_source"] == monitoring.HORIZON_FROM_MODEL).all()
    pd.testing.assert_frame_equal(
        churn.drop(columns="horizon_source"),
        before[before["outcome"] == "churn"].reset_index(drop=True).drop(columns="horizon_source"))
    for as_of, group in churn.groupby("as_of"):
        y = plain_labels(mrr, frames[as_of]["account_id"], as_of)  # the 28-day rule
        assert group.set_index("scorer").loc["model", "positives"] == y.sum()
    # no recorded horizon: the (edited) configuration's, said in horizon_source
    fallback = realized_rows(out, book, spans=Spans(ends), horizons=edited)
    churn = fallback[fallback["outcome"] == "churn"]
    assert (churn["horizon_days"] == 2 * HORIZON).all()
    assert (churn["horizon_source"] == monitoring.HORIZON_FROM_CONFIG).all()
    assert churn["as_of"].max() <= book.data_end - pd.Timedelta(days=2 * HORIZON)
    assert churn["as_of"].nunique() < trained.loc[trained["outcome"] == "churn", "as_of"].nunique()
    # the registry's version tag is where the recorded horizon comes from
    monkeypatch.setattr(registry, "list_versions", lambda target: [
        {"version": "3", "train_end": "2025-09-08", "horizon_days": HORIZON if target == "churn"
         else None}])
    spans = monitoring.registry_spans()
    assert spans.horizon("churn", "3") == HORIZON and spans.horizon("expansion", "3") is None
    assert spans.end("churn", "3") == pd.Timestamp("2025-09-08")


def test_bootstrap_auc_resample_equals_sklearn_on_the_replicated_rows():
    """One resample of the count-weighted Mann-Whitney AUC is sklearn's AUC of the rows
    repeated by their counts (ties included)."""
    from churnml.jobs import monitoring

    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.2).astype(float)
    score = np.round(rng.normal(y, 1.0), 1)  # rounded: many ties
    seed, n = 7, len(y)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=1)[0]
    expected = roc_auc_score(np.repeat(y, counts), np.repeat(score, counts))
    low, high = monitoring.bootstrap_auc(y, score, resamples=1, seed=seed)
    assert low == pytest.approx(expected) and high == pytest.approx(expected)
    low, high = monitoring.bootstrap_auc(y, score, resamples=300, seed=0)
    assert low < roc_auc_score(y, score) < high


def test_calibration_slope_is_one_for_calibrated_probabilities_and_below_for_extreme_ones():
    from churnml.jobs.monitoring import calibration_slope

    rng = np.random.default_rng(2)
    p = rng.uniform(0.02, 0.6, 20000)
    y = (rng.random(len(p)) < p).astype(float)
    assert calibration_slope(y, p) == pytest.approx(1.0, abs=0.08)
    logit = np.log(p / (1 - p))
    extreme = 1 / (1 + np.exp(-2 * logit))  # twice as confident as the truth
    assert calibration_slope(y, extreme) == pytest.approx(0.5, abs=0.05)
    assert np.isnan(calibration_slope(np.zeros(10), p[:10]))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), signal=st.sampled_from([0.0, 0.3, 1.0, 2.5]),
       rate=st.sampled_from([0.03, 0.1, 0.4]))
def test_calibration_slope_equals_an_unpenalised_logistic_regression(seed, signal, rate):
    """Against scikit-learn's unpenalised fit, including probabilities with no signal at all
    (plain Newton from slope 1 diverged there and returned NaN: the slope rule never saw the
    worst case) and probabilities more or less extreme than the truth."""
    from sklearn.linear_model import LogisticRegression

    from churnml.jobs.monitoring import calibration_slope
    rng = np.random.default_rng(seed)
    n = 4000
    p = rng.uniform(0.0, 1.0, n)
    logit = np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))
    base = np.log(rate / (1 - rate))
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(base + signal * logit)))).astype(float)
    assume(0 < y.sum() < n)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(
        logit[:, None], y).coef_[0, 0]
    assert calibration_slope(y, p) == pytest.approx(reference, abs=1e-4)


def test_calibration_slope_is_nan_on_separable_data():
    from churnml.jobs.monitoring import calibration_slope
    p = np.linspace(0.01, 0.99, 200)
    assert np.isnan(calibration_slope((p > 0.5).astype(float), p))
