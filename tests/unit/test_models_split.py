"""Time split, backtest folds and model configuration (DESIGN.md "Observations, labels, leakage")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.data.tables import Book
from churnml.errors import ConfigError, InsufficientDataError
from churnml.models.config import ModelConfig, load_config
from churnml.models.dataset import (
    assemble,
    backtest_splits,
    expansion_mrr_gained,
    labeled_as_of_dates,
    observed_start,
    time_split,
)


def weekly(n: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="7D")


@pytest.mark.parametrize("horizon", [30, 60, 90])
def test_no_test_as_of_within_a_horizon_of_a_training_or_calibration_as_of(horizon):
    config = ModelConfig(target="churn", horizon_days=horizon)
    split = time_split(weekly(110), config)
    for earlier, later in ((split.train, split.calibration), (split.calibration, split.test),
                           (split.train, split.test)):
        gaps = (later.values[:, None] - earlier.values[None, :]) / np.timedelta64(1, "D")
        # every label window [as_of, as_of + horizon) of the earlier part ends before the later part starts
        assert gaps.min() >= horizon
    assert len(split.test) == 13 and len(split.calibration) == 13
    # test = the latest dates; calibration = the latest dates allowed before the gap
    assert split.test[-1] == weekly(110)[-1]
    assert split.calibration[-1] == max(d for d in weekly(110) if (split.test[0] - d).days >= horizon)
    assert split.train[-1] == max(d for d in weekly(110) if (split.calibration[0] - d).days >= horizon)
    assert not split.notes


def test_window_of_labels_each_date_and_leaves_gaps_empty():
    config = ModelConfig(target="churn", horizon_days=30)
    dates = weekly(60)
    split = time_split(dates, config)
    window = split.window_of(pd.Series(dates))
    assert len(split.test) == len(split.calibration) == 12  # a fifth of 60 dates
    assert window.value_counts().to_dict() == {
        "train": len(split.train), "calibration": 12, "test": 12}
    assert window.isna().sum() == 60 - len(split.train) - 24 > 0


def test_short_book_shrinks_windows_in_proportion_and_says_so():
    config = ModelConfig(target="churn", horizon_days=30)
    split = time_split(weekly(20), config)  # ~5 months of weekly dates
    assert len(split.test) == 4 and len(split.calibration) == 4  # a fifth of 20
    assert len(split.train) >= config.min_dates_per_window
    assert split.notes and "short book" in split.notes[0]


def test_too_little_history_stops_with_a_clear_message():
    config = ModelConfig(target="churn", horizon_days=90)
    with pytest.raises(InsufficientDataError, match=r"too little history .* 20 labeled as_of dates"):
        time_split(weekly(20), config)


def test_backtest_folds_move_the_windows_back_one_test_span():
    config = ModelConfig(target="churn", horizon_days=30, backtest_folds=3)
    dates = weekly(100)
    main = time_split(dates, config)
    folds, notes = backtest_splits(dates, config, main)
    assert len(folds) == 3 and not notes
    assert folds[0] is main
    for k, fold in enumerate(folds):
        assert fold.test[-1] == dates[-1 - 13 * k]
        assert len(fold.test) == 13 and len(fold.calibration) == 13
    # fewer folds than asked when history runs out: named in the notes
    config5 = ModelConfig(target="churn", horizon_days=30, backtest_folds=8)
    folds, notes = backtest_splits(dates, config5, time_split(dates, config5))
    assert len(folds) < 8 and "folds fit in the history" in notes[0]


def _book(first_usage: str = "2024-06-01") -> Book:
    accounts = pd.DataFrame({"account_id": ["a", "b"], "created_at": pd.to_datetime(["2020-01-01"] * 2)})
    mrr = pd.DataFrame({
        "account_id": ["a", "b", "a", "a"],
        "effective_date": pd.to_datetime(["2020-01-01", "2021-01-01", "2024-09-01", "2025-01-01"]),
        "mrr": [100.0, 50.0, 150.0, 0.0],
        "reason": ["new", "new", "upsell", "churn"],
    })
    usage = pd.DataFrame({"account_id": ["a", "b"], "ts": pd.to_datetime([first_usage, "2025-06-30"]),
                          "event": ["login", "login"]})
    return Book({"accounts": accounts, "mrr_changes": mrr, "usage_events": usage})


def test_as_of_dates_start_when_every_table_records_and_end_a_horizon_before_the_data():
    book = _book()
    config = ModelConfig(target="churn", horizon_days=90, min_history_days=7)
    assert observed_start(book) == pd.Timestamp("2024-06-01")  # usage starts long after revenue
    dates = labeled_as_of_dates(book, config)
    assert dates[0] >= pd.Timestamp("2024-06-08")
    assert dates[-1] == pd.Timestamp("2025-06-30") - pd.Timedelta(days=90)
    assert (np.diff(dates.values) == np.timedelta64(7, "D")).all()


def test_expansion_mrr_gained_counts_rises_inside_the_label_window_only():
    book = _book()
    obs = pd.DataFrame({"account_id": ["a", "a", "b"],
                        "as_of": pd.to_datetime(["2024-08-01", "2024-09-02", "2024-08-01"])})
    gained = expansion_mrr_gained(book.mrr_changes, obs, 90)
    # a: 100 -> 150 on 2024-09-01 is inside [08-01, 10-30) but not inside [09-02, ...)
    assert gained.tolist() == [50.0, 0.0, 0.0]


def test_assemble_keeps_labeled_rows_and_checks_positives():
    dates = weekly(60)
    ids = [f"acc{i}" for i in range(40)]
    idx = pd.MultiIndex.from_product([ids, dates], names=["account_id", "as_of"]).to_frame(index=False)
    rng = np.random.default_rng(0)
    features = idx.assign(logins_30d=rng.poisson(5, len(idx)).astype(float),
                          customer_name=[f"name {i}" for i in range(len(idx))])  # an identifier
    grid = idx.assign(mrr=100.0, churn=(rng.random(len(idx)) < 0.2).astype(float),
                      expansion=0.0, labeled=True)
    grid.loc[grid["as_of"] == dates[-1], "churn"] = np.nan  # unlabeled
    config = ModelConfig(target="churn", horizon_days=30)
    split = time_split(dates[:-1], config)
    ds = assemble(features, grid, config, split)
    assert ds.frame["label"].notna().all() and len(ds.frame) == 40 * 59
    assert ds.feature_names == ["logins_30d"] and "customer_name" in ds.dropped_features
    assert (ds.part("test")["event_mrr"] == 100.0 * ds.part("test")["label"]).all()
    grid["churn"] = 0.0
    with pytest.raises(InsufficientDataError, match="0 positive labels"):
        assemble(features, grid, config, split)


def test_config_files_load_and_bad_values_are_named():
    for target in ("churn", "expansion"):
        config = load_config(target)
        assert config.target == target and config.horizon_days == 90 and config.gap == 90
        assert config.registered_name == f"churnml-{target}"
    assert load_config("churn", horizon_days=30).gap == 30
    with pytest.raises(ConfigError, match=r"The 'horizon_days' parameter must be a positive integer. Got -3."):
        load_config("churn", horizon_days=-3)
    with pytest.raises(ConfigError, match="gap_days"):
        ModelConfig(target="churn", horizon_days=90, gap_days=30)
    with pytest.raises(ConfigError, match="'target'"):
        ModelConfig(target="upsell")


# ---- split policies (docs/models.md, "Split policies") ---------------------------------------
@pytest.mark.parametrize("n_dates, horizon, policy", [
    (1, 30, "cross_sectional"),   # a snapshot
    (3, 30, "cross_sectional"),   # no room for a test window after a 30-day gap
    (17, 30, "short"),            # the 5-month book with a 30-day horizon
    (90, 90, "time"),             # the simulator's default book (24 months, 90 days)
])
def test_split_policy_chosen_from_the_number_of_labeled_dates(n_dates, horizon, policy):
    from churnml.models.dataset import choose_split

    config = ModelConfig(target="churn", horizon_days=horizon)
    dates = weekly(n_dates)
    split = choose_split(dates, config)
    assert split.policy == policy
    assert split.policy_reason and f"{n_dates} labeled as_of date" in split.policy_reason
    assert split.describe()["policy"] == policy
    if policy == "time":  # exactly today's split: the default book's results do not move
        today = time_split(dates, config)
        for name in ("train", "calibration", "test"):
            assert getattr(split, name).equals(getattr(today, name))
        assert len(split.train) >= config.time_min_train_dates
    elif policy == "short":
        assert len(split.calibration) == 0
        assert len(split.train) >= n_dates / 2  # at least half of the labeled dates train
        # one gap, between training and test, of at least a horizon
        assert (split.test[0] - split.train[-1]).days >= horizon
        assert "cross-fitted" in split.policy_reason
        assert split.describe()["calibration_start"] == ""
    else:
        assert list(split.train) == list(split.test) == [dates[-1]]
        assert "cross-sectional" in split.policy_reason
        assert split.window_of(pd.Series(dates)).dropna().tolist() == ["train"]
    if n_dates == 1:
        assert "snapshot" in split.policy_reason


def test_short_policy_keeps_half_the_dates_for_training_at_any_length():
    from churnml.models.dataset import short_split

    config = ModelConfig(target="churn", horizon_days=30)
    # 2 test dates + 4 dates inside a 30-day gap + half the dates: 12 weekly dates at least
    assert short_split(weekly(11), config) is None
    for n in range(12, 60):
        split = short_split(weekly(n), config)
        assert split is not None, n
        assert len(split.train) >= n / 2 and (split.test[0] - split.train[-1]).days >= 30
        assert split.test[-1] == weekly(n)[-1]


def test_a_forced_policy_wins_and_an_impossible_one_is_refused():
    from churnml.models.dataset import choose_split

    dates = weekly(90)
    config = ModelConfig(target="churn", horizon_days=30, split_policy="short")
    assert choose_split(dates, config).policy == "short"
    config = ModelConfig(target="churn", horizon_days=30, split_policy="cross_sectional")
    assert choose_split(dates, config).policy == "cross_sectional"
    with pytest.raises(InsufficientDataError, match="split.policy short"):
        choose_split(weekly(3), ModelConfig(target="churn", horizon_days=30, split_policy="short"))
    with pytest.raises(ConfigError, match="split_policy"):
        ModelConfig(target="churn", split_policy="random")


def test_events_all_in_the_last_horizon_make_the_book_cross_sectional():
    from churnml.models.dataset import choose_split, events_policy

    config = ModelConfig(target="churn", horizon_days=90)
    dates = weekly(300)
    split = choose_split(dates, config)
    assert split.policy == "time"
    snapshot = pd.Series(0.0, index=dates)
    snapshot.iloc[-1] = 514.0  # every churn in the last horizon: a converted customer table
    cross = events_policy(split, snapshot, config)
    assert cross.policy == "cross_sectional" and list(cross.train) == [dates[-1]]
    assert "514 positive labels" in cross.policy_reason and "last horizon" in cross.policy_reason
    spread = pd.Series(3.0, index=dates)  # events all along the book: the time split stays
    assert events_policy(split, spread, config) is split


def test_cross_sectional_folds_are_stratified_grouped_and_refuse_too_few_events():
    from churnml.models.dataset import cross_sectional_folds

    rng = np.random.default_rng(3)
    n = 1000
    frame = pd.DataFrame({"account_id": [f"a{i}" for i in range(n)],
                          "as_of": pd.Timestamp("2026-08-18"),
                          "label": (rng.random(n) < 0.2).astype(float)})
    config = ModelConfig(target="churn", cv_folds=5, min_positives=5)
    folds = cross_sectional_folds(frame, config)
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    rates = frame.groupby(folds)["label"].mean()
    assert rates.max() - rates.min() < 0.03  # stratified
    few = frame.assign(label=0.0)
    few.loc[:20, "label"] = 1.0  # 21 positives: fewer than 6 per fold x 5 folds
    with pytest.raises(InsufficientDataError,
                       match=r"21 positive .* at least 30 of each are needed \(6 per fold x 5 folds"):
        cross_sectional_folds(few, ModelConfig(target="churn", cv_folds=5, min_positives=6))


def test_a_backtest_fold_leaves_the_main_dataset_as_it_was():
    """``Dataset.refold`` shares the feature columns (no copy of the frame) and still never
    changes the main split's windows."""
    dates = weekly(100)
    ids = [f"acc{i}" for i in range(30)]
    idx = pd.MultiIndex.from_product([ids, dates], names=["account_id", "as_of"]).to_frame(index=False)
    rng = np.random.default_rng(1)
    features = idx.assign(logins_30d=rng.poisson(5, len(idx)).astype(float))
    grid = idx.assign(mrr=100.0, churn=(rng.random(len(idx)) < 0.2).astype(float),
                      expansion=0.0, labeled=True)
    config = ModelConfig(target="churn", horizon_days=30, backtest_folds=2, min_positives=1)
    main = time_split(dates, config)
    ds = assemble(features, grid, config, main)
    before = ds.frame.copy()
    folds, _ = backtest_splits(dates, config, main)
    fold = ds.refold(folds[1], config)
    pd.testing.assert_frame_equal(ds.frame, before)
    assert not fold.frame["window"].equals(ds.frame["window"])
    expected = pd.Series(folds[1].window_of(fold.frame["as_of"]).to_numpy(), index=fold.frame.index)
    pd.testing.assert_series_equal(fold.frame["window"].astype(str), expected.astype(str), check_names=False)
    pd.testing.assert_frame_equal(fold.frame.drop(columns="window"), before.drop(columns="window"))
