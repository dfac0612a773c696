"""Evaluate, then refit: the champion fitted on every labeled date, its cross-fitted
calibrator, its training span (train_end) and the champion gate restricted to later weeks.

The end-to-end tests train once per module on the session's small simulated book (300
accounts, 18 months, seed 7) with a fast config (one thread, few rounds).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.models import refit as R
from churnml.models.config import load_config

FAST_LGB = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 15, "max_depth": 5,
            "min_child_samples": 30, "seed": 3, "deterministic": True, "num_threads": 1,
            "verbose": -1}


# ---- the rounds rule ------------------------------------------------------------------------
def test_refit_rounds_rule():
    assert R.refit_rounds(100, 1000, 4000, "same") == 100
    assert R.refit_rounds(100, 1000, 4000, "sqrt") == 200
    assert R.refit_rounds(100, 1000, 4000, "linear") == 400
    assert R.refit_rounds(100, 1000, 4000, "linear", cap=300) == 300
    assert R.refit_rounds(100, 1000, 500, "sqrt") == 100  # never fewer than the protocol's
    assert R.refit_rounds(0, 10, 10, "sqrt") == 1
    with pytest.raises(ValueError):
        R.refit_rounds(10, 1, 1, "cubic")


def test_the_project_configs_refit_by_default_and_can_switch_it_off(tmp_path):
    for target in ("churn", "expansion", "contraction"):
        config = load_config(target)
        assert config.refit is True and config.refit_rounds == "same"
        assert config.refit_calibration_folds >= 2
    assert not load_config("churn", refit=False).refit


# ---- account folds and cross-fitting --------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(accounts=st.lists(st.integers(0, 30), min_size=8, max_size=200), k=st.integers(2, 5),
       seed=st.integers(0, 3))
def test_account_folds_keep_each_account_in_one_fold(accounts, k, seed):
    ids = np.array([f"a{i}" for i in accounts])
    if len(set(accounts)) < k:
        with pytest.raises(ValueError):
            R.account_folds(ids, k, seed)
        return
    folds = R.account_folds(ids, k, seed)
    assert folds.shape == ids.shape and set(folds) <= set(range(k))
    per_account = pd.Series(folds).groupby(ids).nunique()
    assert (per_account == 1).all()  # the folds are disjoint sets of accounts
    sizes = pd.Series(folds).groupby(ids).first().value_counts()
    assert len(sizes) == k and sizes.max() - sizes.min() <= 1  # dealt round-robin


def test_out_of_fold_scores_come_from_boosters_that_never_saw_the_account(monkeypatch):
    rng = np.random.default_rng(0)
    n_accounts, weeks = 60, 10
    account = np.repeat(np.arange(n_accounts), weeks)
    X = np.column_stack([np.arange(len(account), dtype="float64"),  # row id, to trace rows
                         rng.normal(size=len(account)) + 0.2 * account])
    y = (rng.random(len(account)) < 0.3).astype("float64")
    folds = R.account_folds(account, 3, seed=1)
    trained_on: list[set[int]] = []
    predicted_by: dict[int, int] = {}
    real_fit = R.fit_on_rows

    class Spy:
        def __init__(self, booster, index):
            self.booster, self.index = booster, index

        def predict(self, Xp, **kwargs):
            for row in Xp[:, 0].astype(int):
                assert row not in predicted_by, "a row was predicted twice"
                predicted_by[row] = self.index
            return self.booster.predict(Xp, **kwargs)

    def spy_fit(data, rows, *args, **kwargs):
        # the fold's rows are positions in the one binned copy of X (shared bins)
        assert rows is not None and data.num_data() == len(y)
        trained_on.append(set(X[rows, 0].astype(int)))
        booster = real_fit(data, rows, *args, **kwargs)
        assert booster.num_trees() == 5
        return Spy(booster, len(trained_on) - 1)

    monkeypatch.setattr(R, "fit_on_rows", spy_fit)
    raw = R.crossfit_raw(X, y, folds, ["row", "x"], [], FAST_LGB, 5)
    assert np.isfinite(raw).all() and len(trained_on) == 3
    assert set(predicted_by) == set(range(len(y)))  # every row scored exactly once
    for row, booster in predicted_by.items():
        same_account = set(np.flatnonzero(account == account[row]))
        assert not same_account & trained_on[booster]


def test_a_memorising_booster_is_not_calibrated_on_its_own_rows():
    """Labels are pure noise per account and a feature names the account: in-sample scores
    memorise it (AUC near 1), out-of-fold scores cannot (no better than chance), so the calibrator
    learns that the scores mean little."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    n_accounts, weeks = 300, 6
    account = np.repeat(np.arange(n_accounts), weeks)
    y = np.repeat((rng.random(n_accounts) < 0.3).astype("float64"), weeks)
    X = np.column_stack([account.astype("float64"), rng.normal(size=len(y))])
    params = {**FAST_LGB, "min_child_samples": 5, "num_leaves": 63, "max_depth": -1}
    insample = R.fit_booster(X, y, ["account", "x"], [], params, 80).predict(X)
    oof = R.crossfit_raw(X, y, R.account_folds(account, 3, 0), ["account", "x"], [], params, 80)
    assert roc_auc_score(y, insample) > 0.95
    assert roc_auc_score(y, oof) < 0.6  # nothing memorised reaches an out-of-fold score


# ---- end to end on the small simulated book -------------------------------------------------
@pytest.fixture(scope="module")
def refitted(sim_tables):
    from churnml.data.tables import Book
    from churnml.features.catalog import load_catalog
    from churnml.models.dataset import build_dataset
    from churnml.models.train import train_on_dataset

    book = Book(tables=dict(sim_tables.tables))
    config = load_config("churn").with_overrides(
        horizon_days=60, num_boost_round=60, early_stopping_rounds=10, backtest_folds=1,
        bootstrap_resamples=20, lgb_params=FAST_LGB, min_positives=3)
    catalog = load_catalog()
    dataset = build_dataset(book, config, catalog=catalog)
    captured: dict = {}
    real_bin = R.binned_dataset

    def capture(X, y, *args, **kwargs):
        captured.setdefault("X", X)  # binned once for the refit: the champion's rows, all of them
        return real_bin(X, y, *args, **kwargs)

    R.binned_dataset = capture
    try:
        result = train_on_dataset(dataset, config, catalog=catalog)
    finally:
        R.binned_dataset = real_bin
    plain = train_on_dataset(dataset, config.with_overrides(refit=False), catalog=catalog)
    return SimpleNamespace(book=book, config=config, catalog=catalog, dataset=dataset,
                           result=result, plain=plain, X=captured["X"])


def test_the_champion_is_refitted_on_every_labeled_date(refitted):
    r, dataset, config = refitted.result, refitted.dataset, refitted.config
    last = pd.Timestamp(dataset.frame["as_of"].max())
    assert r.train_end == r.model.info["train_end"] == last.date().isoformat()
    latest_labeled = r.dataset.split.test[-1]
    target = refitted.book.data_end - pd.Timedelta(days=config.horizon_days)
    assert last == latest_labeled and pd.Timedelta(0) <= target - last < pd.Timedelta(days=7)
    assert last + pd.Timedelta(days=config.horizon_days) <= refitted.book.data_end  # labels complete
    details = r.fit_details["refit"]
    assert details["rows"] == len(dataset.frame) == len(refitted.X)
    assert details["protocol_rows"] == len(dataset.part("train")) < details["rows"]
    assert r.model is not r.protocol_model
    assert r.model.booster.num_trees() == details["rounds"] >= r.protocol_model.info["best_iteration"]
    assert r.model.calibrator.method == r.protocol_model.calibrator.method
    assert r.fit_details["timings"]["refit_seconds"] > 0
    # the protocol's measurements are the same whether or not the champion is refitted
    for name in ("test_roc_auc", "test_ece", "health_test_roc_auc", "logreg_test_roc_auc",
                 "backtest_roc_auc_mean"):
        assert r.metrics[name] == refitted.plain.metrics[name]
    assert refitted.plain.model.info["train_end"] == r.split.describe()["calibration_end"]
    assert refitted.plain.protocol_model is refitted.plain.model
    p = r.model.predict_proba(dataset.part("test"))
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()


def _before(book, as_of):
    """The book as it was known at the start of ``as_of``: rows strictly before it, and an
    invoice paid at or after it still unpaid."""
    from churnml.data.tables import TABLES, Book

    tables = {}
    for name, frame in book.tables.items():
        column = TABLES[name].time_column if name in TABLES else None
        frame = frame[frame[column] < as_of].copy() if column else frame.copy()
        if name == "invoices" and "paid_at" in frame:
            frame.loc[frame["paid_at"] >= as_of, "paid_at"] = pd.NaT
        tables[name] = frame
    return Book(tables=tables)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(pick=st.floats(0, 1))
def test_no_row_at_or_after_as_of_reaches_a_feature_of_the_refit(refitted, pick):
    """The rows the champion is fitted on, as_of by as_of, equal the features of the book cut
    at that as_of: nothing at or after it (including the last labeled dates the protocol
    never trained on) reaches the refit's matrix."""
    from churnml.features.build import build_features

    frame, model = refitted.dataset.frame, refitted.result.model
    dates = sorted(frame["as_of"].unique())
    as_of = pd.Timestamp(dates[min(int(pick * len(dates)), len(dates) - 1)])
    rows = np.flatnonzero((frame["as_of"] == as_of).to_numpy())
    cut = build_features(_before(refitted.book, as_of), [as_of], catalog=refitted.catalog)
    cut = cut.set_index("account_id").loc[frame["account_id"].to_numpy()[rows]]
    expected = model.matrix(cut.reset_index())
    np.testing.assert_array_equal(np.isnan(refitted.X[rows]), np.isnan(expected))
    np.testing.assert_allclose(refitted.X[rows], expected, rtol=1e-12, equal_nan=True)


# ---- the champion gate on later weeks only --------------------------------------------------
class ChampionStub:
    def __init__(self, info, scores=None):
        self.info = info
        self.scores = scores

    def predict_proba(self, frame):
        return self.scores(frame)


def test_the_gate_compares_on_test_weeks_after_the_champions_training_span(refitted):
    from churnml.models.registry import gate_decision

    result = refitted.plain  # a train-window challenger: its test weeks are after the champion's
    test = result.dataset.part("test")
    weeks = sorted(test["as_of"].unique())
    since = pd.Timestamp(weeks[5])
    seen = []

    def scores(frame):
        seen.append(frame["as_of"])
        return np.full(len(frame), 0.5) + 1e-6 * np.arange(len(frame))

    decision = gate_decision(ChampionStub({"train_end": since.date().isoformat()}, scores), "3", result)
    assert (pd.concat(seen) > since).all()
    later = test[test["as_of"] > since]
    assert decision.rows == len(later) and decision.weeks == len(weeks) - 6
    assert f"the {len(weeks) - 6} of {len(weeks)} test weeks after champion v3's training span" \
           f" (ending {since.date()}, train_end)" in decision.reason
    assert decision.became_champion  # a constant-ish champion loses
    # the challenger's score is its own on the same later rows, not its whole test window
    from sklearn.metrics import roc_auc_score

    keep = (result.predictions["as_of"] > since).to_numpy()
    assert decision.new_score == pytest.approx(
        roc_auc_score(result.predictions["label"][keep], result.predictions["probability"][keep]))


def test_the_gate_keeps_the_champion_when_no_test_week_is_later(refitted):
    from churnml.models.registry import gate_decision

    result = refitted.result
    champion = ChampionStub({"train_end": result.train_end},
                            lambda f: pytest.fail("nothing to score"))
    decision = gate_decision(champion, "2", result)
    assert not decision.became_champion and decision.champion_score is None
    assert "no test week of the new version lies after champion v2's training span" in decision.reason
    assert "the champion stays" in decision.reason


def test_the_gate_falls_back_to_the_split_of_an_older_version_or_says_unknown(refitted):
    from churnml.models.registry import champion_span_end, gate_decision

    result = refitted.plain
    test_start = result.split.test[0]
    older = ChampionStub({"split": {"test_end": str(test_start.date())}},
                         lambda f: np.linspace(0, 1, len(f)))
    assert champion_span_end(older) == (test_start, "its split's test_end (no train_end recorded)")
    decision = gate_decision(older, "1", result)
    assert decision.weeks == len(result.split.test) - 1 and "its split's test_end" in decision.reason
    unknown = ChampionStub({}, lambda f: np.linspace(0, 1, len(f)))
    decision = gate_decision(unknown, "1", result)
    assert decision.rows == len(result.dataset.part("test")) and "unknown" in decision.reason
    assert decision.new_score == result.metrics["test_roc_auc"]


# ---- the forward test -----------------------------------------------------------------------
def test_forward_test_holds_the_last_horizon_back_from_both_models():
    from test_models_model import synthetic_book

    from churnml.features.catalog import load_catalog
    from churnml.models.config import ModelConfig
    from churnml.models.dataset import assemble, time_split
    from churnml.models.forward import forward_test, paired_auc_difference, truncated

    features, grid = synthetic_book(n_accounts=200, n_weeks=60)
    config = ModelConfig(target="churn", horizon_days=28, num_boost_round=40, backtest_folds=1,
                         bootstrap_resamples=20, lgb_params=FAST_LGB)
    dataset = assemble(features, grid, config, time_split(sorted(features["as_of"].unique()), config))
    dates = sorted(dataset.frame["as_of"].unique())
    out = forward_test(dataset, config, catalog=load_catalog())
    start, end = pd.Timestamp(out["forward_start"]), pd.Timestamp(out["forward_end"])
    assert end == dates[-1] and end - start < pd.Timedelta(days=28) and out["forward_dates"] == 4
    # neither model saw a label window reaching the forward window
    assert pd.Timestamp(out["refit_train_end"]) + pd.Timedelta(days=28) <= start
    assert pd.Timestamp(out["split"]["test_end"]) == pd.Timestamp(out["refit_train_end"])
    assert out["refit_rows"] > out["protocol_train_rows"]
    assert set(out["rounds_rules"]) == {"same", "sqrt", "linear"}
    assert out["rounds_rules"][config.refit_rounds]["rounds"] == out["refit_rounds"]
    for model in ("protocol", "refit"):
        assert out[model]["roc_auc_ci_low"] <= out[model]["roc_auc"] <= out[model]["roc_auc_ci_high"]
    assert out["difference"]["roc_auc"] == pytest.approx(out["refit"]["roc_auc"] - out["protocol"]["roc_auc"])
    cut = truncated(dataset, dates[40], config)
    assert cut.frame["as_of"].max() == dates[40] and cut.split.test[-1] == dates[40]
    y = np.array([0, 1, 0, 1, 1, 0.0])
    point, low, high = paired_auc_difference(y, y, 1 - y, list("aabbcc"), 50)
    assert point == 2.0 - 1.0 and low <= point <= high


def test_the_champion_on_the_shared_binned_copy_is_plain_lightgbm():
    """Binning once (for the champion and the folds) changes nothing for the champion: the same
    trees as ``lightgbm.train`` on its own Dataset of the same rows."""
    import lightgbm as lgb

    rng = np.random.default_rng(5)
    X = rng.normal(size=(2000, 3))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (rng.random(2000) < 1 / (1 + np.exp(-X[:, 0] * 2))).astype("float64")
    params = {**FAST_LGB, "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8}
    shared = R.fit_on_rows(R.binned_dataset(X, y, ["a", "b", "c"], [], params), None, params, 20)
    plain = lgb.train(params, lgb.Dataset(X, y, feature_name=["a", "b", "c"]), num_boost_round=20)
    np.testing.assert_array_equal(shared.predict(X, raw_score=True), plain.predict(X, raw_score=True))


# ---- the refit's memory: the full matrix is dropped once binned ------------------------------
def test_crossfit_in_blocks_from_matrix_of_equals_the_full_matrix(monkeypatch):
    rng = np.random.default_rng(11)
    account = np.repeat(np.arange(120), 5)
    X = np.column_stack([rng.normal(size=len(account)), rng.integers(0, 4, len(account)).astype("float64")])
    X[rng.random(len(account)) < 0.1, 0] = np.nan
    y = (rng.random(len(account)) < 0.3).astype("float64")
    folds = R.account_folds(account, 3, 1)
    whole = R.crossfit_raw(X, y, folds, ["x", "c"], [1], FAST_LGB, 7)
    asked: list[int] = []

    def matrix_of(rows):
        assert isinstance(rows, slice)  # contiguous blocks: no take from all over the frame
        asked.append((rows.start, rows.stop))
        return X[rows]

    monkeypatch.setattr(R, "PREDICT_CHUNK_ROWS", 37)
    data = R.binned_dataset(X, y, ["x", "c"], [1], FAST_LGB)
    blocks = R.crossfit_raw(None, y, folds, ["x", "c"], [1], FAST_LGB, 7, data=data, matrix_of=matrix_of)
    np.testing.assert_array_equal(blocks, whole)  # bit for bit
    # every row encoded once, in blocks of at most 37 rows that tile the rows in order
    assert asked == [(s, min(s + 37, len(y))) for s in range(0, len(y), 37)]


def test_crossfit_scores_equal_a_plain_fold_by_fold_reference():
    """Each row's out-of-fold score is the one a booster fitted on a fresh Dataset of the other
    folds' rows gives it (the plain loop: fit a fold, encode and score its held-out rows):
    the shared bins of ``Dataset.subset`` and the blockwise scoring change nothing."""
    import lightgbm as lgb

    from churnml.models.calibration import sigmoid

    rng = np.random.default_rng(5)
    account = np.repeat(np.arange(150), 4)
    X = np.column_stack([rng.normal(size=len(account)), rng.integers(0, 5, len(account)).astype("float64")])
    X[rng.random(len(account)) < 0.1, 0] = np.nan
    y = (rng.random(len(account)) < 1 / (1 + np.exp(-X[:, 1] + 2))).astype("float64")
    folds = R.account_folds(account, 3, 2)
    got = R.crossfit_raw(X, y, folds, ["x", "c"], [1], FAST_LGB, 9)
    plain = np.full(len(y), np.nan)
    # bins from all rows (as the refit's one binned copy), labels only from the fitted folds
    full = lgb.Dataset(X, y, feature_name=["x", "c"], categorical_feature=[1], params=dict(FAST_LGB),
                       free_raw_data=False).construct()
    for k in range(3):
        held = folds == k
        booster = lgb.train(FAST_LGB, full.subset(np.flatnonzero(~held).tolist()), num_boost_round=9)
        plain[held] = sigmoid(booster.predict(X[held], raw_score=True))
    np.testing.assert_array_equal(got, plain)
    with pytest.raises(ValueError):
        R.crossfit_raw(None, y, folds, ["x", "c"], [1], FAST_LGB, 7)


def test_the_refit_drops_the_full_matrix_before_fitting_and_keeps_its_model(refitted, monkeypatch):
    import weakref

    from churnml.models.train import refit_on_all

    refs: list = []
    alive_at_fit: list[bool] = []
    real_bin, real_fit = R.binned_dataset, R.fit_on_rows

    def spy_bin(X, *args, **kwargs):
        refs.append(weakref.ref(X))
        return real_bin(X, *args, **kwargs)

    def spy_fit(*args, **kwargs):
        alive_at_fit.append(refs[0]() is not None)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(R, "binned_dataset", spy_bin)
    monkeypatch.setattr(R, "fit_on_rows", spy_fit)
    r = refitted.result
    model, details = refit_on_all(refitted.dataset, refitted.config, r.protocol_model)
    assert len(refs) == 1 and alive_at_fit and not any(alive_at_fit)
    # the same champion, calibrator and medians as the run that kept the matrix
    assert model.booster.model_to_string() == r.model.booster.model_to_string()
    assert model.info["feature_medians"] == r.model.info["feature_medians"]
    probe = np.linspace(0.01, 0.99, 25)
    np.testing.assert_array_equal(model.calibrator.transform(probe), r.model.calibrator.transform(probe))


def test_the_blockwise_matrix_equals_the_one_shot_encoding(refitted):
    from churnml.models.model import FeatureEncoder

    frame, model = refitted.dataset.frame, refitted.result.model
    names = list(model.feature_names)
    encoder = FeatureEncoder(names, model.categories, label=refitted.config.target)
    cols = [frame.columns.get_loc(c) for c in names if c in frame.columns]
    one_shot = encoder.matrix(frame)
    for block in (97, 1000, len(frame), 10 * len(frame)):
        blocks = R.blockwise_matrix(lambda rows: encoder.matrix(frame.iloc[rows, cols]),
                                    len(frame), len(names), block)
        np.testing.assert_array_equal(blocks, one_shot)
    np.testing.assert_array_equal(one_shot, refitted.X)  # what the refit binned


def test_the_fingerprint_counts_each_window_as_its_rows_do(refitted):
    """``Dataset.fingerprint`` counts rows and positives from the window and label columns
    (no copy of a window's rows): the same figures as the plain count over ``part``, a
    missing label skipped as pandas' sum skips it."""
    from churnml.models.dataset import WINDOWS, Dataset

    dataset = refitted.dataset
    frame = dataset.frame.copy()
    frame.loc[frame.index[frame["window"] == "test"][:3], "label"] = np.nan
    for d in (dataset, Dataset(frame, dataset.feature_names, dataset.categorical, dataset.split,
                               dataset.target, dataset.dropped_features)):
        got = d.fingerprint()
        for name in WINDOWS:
            part = d.part(name)
            assert got[f"{name}_rows"] == len(part)
            assert got[f"{name}_positives"] == int(part["label"].sum())
        assert got["rows"] == len(d.frame) and got["train_rows"] > 0 and got["test_positives"] > 0
