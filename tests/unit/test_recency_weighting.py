"""Recency-weighted training (``training.recency_half_life_days``, churnml.models.recency).

The weight formula against a plain loop; off = no weight reaches LightGBM and the boosters are
the ones the code before the weighting gave, byte for byte; on = every booster's training rows
carry the weights from the latest as_of of that fit, while early stopping's validation rows and
the calibrators stay unweighted; the configuration's checks.

A small synthetic dataset (60 accounts x 30 weekly dates, two features whose meaning swaps
half-way), fitted with a fast configuration: the file runs in a few seconds.
"""

from __future__ import annotations

import dataclasses

import hashlib

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.errors import ConfigError
from churnml.models import recency
from churnml.models import refit as R
from churnml.models.calibration import choose_calibrator, sigmoid
from churnml.models.config import load_config, parse_config
from churnml.models.dataset import Dataset, time_split
from churnml.models.train import fit_model, fit_model_crossfit, refit_on_all

FAST_LGB = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 7, "max_depth": 3,
            "min_child_samples": 10, "seed": 3, "deterministic": True, "num_threads": 1,
            "verbose": -1}
HALF_LIFE = 60.0


# ---- the formula -------------------------------------------------------------------------------
def _plain_weights(days: list[int], half_life: float) -> list[float]:
    latest = max(days)
    return [0.5 ** ((latest - d) / half_life) for d in days]


@settings(max_examples=60, deadline=None)
@given(days=st.lists(st.integers(0, 3000), min_size=1, max_size=60),
       half_life=st.floats(1.0, 1000.0))
def test_the_weight_is_half_per_half_life_from_the_latest_as_of(days, half_life):
    as_of = pd.Timestamp("2020-01-06") + pd.to_timedelta(days, unit="D")
    got = recency.recency_weights(pd.Series(as_of), half_life)
    assert got is not None and got.dtype == np.float64
    np.testing.assert_allclose(got, _plain_weights(days, half_life), rtol=1e-12)
    assert got[int(np.argmax(days))] == 1.0  # the latest date weighs 1
    assert ((got >= 0) & (got <= 1)).all()
    ages = (max(days) - np.asarray(days)) / half_life
    assert (got[ages < 1000] > 0).all()  # zero only past float64's range (2 ** -1074)
    order = np.argsort(days, kind="stable")
    assert (np.diff(got[order]) >= 0).all()  # older rows never weigh more
    one_half_life = pd.Timestamp("2020-01-06") - pd.Timedelta(days=half_life)
    pair = recency.recency_weights(np.array([one_half_life, pd.Timestamp("2020-01-06")],
                                            dtype="datetime64[ns]"), half_life)
    np.testing.assert_allclose(pair, [0.5, 1.0], rtol=1e-9)


def test_off_means_no_weights():
    dates = pd.Series(pd.date_range("2025-01-06", periods=5, freq="7D"))
    assert recency.recency_weights(dates, None) is None
    assert "none" in recency.describe(None)
    assert "90 days" in recency.describe(90.0)


# ---- the configuration -------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-3, 0, 0.0, float("nan"), float("inf"), True, "90", [90]])
def test_a_half_life_that_is_not_a_positive_number_is_a_config_error(bad):
    with pytest.raises(ConfigError, match=r"The 'recency_half_life_days' parameter must be a "
                                          r"positive number of days or null \(off\)\. Got "):
        load_config("churn", recency_half_life_days=bad)


def test_the_shipped_configs_are_off_and_the_yaml_key_is_read():
    for target in ("churn", "expansion", "contraction"):
        assert load_config(target).recency_half_life_days is None
    # after a recommended retrain: churn at 90 days (docs/models.md, "Recency weighting");
    # expansion and contraction never, until a drift of theirs is measured with the weight
    assert load_config("churn").recency_after_retrain_days == 90
    for target in ("expansion", "contraction"):
        assert load_config(target).recency_after_retrain_days is None
    with pytest.raises(ConfigError, match="recency_after_retrain_days"):
        load_config("churn", recency_after_retrain_days=-5)
    config = parse_config({"target": "churn", "training": {"recency_half_life_days": 90}})
    assert config.recency_half_life_days == 90
    assert config.flat_params()["recency_half_life_days"] == 90  # the MLflow param
    assert load_config("churn", recency_half_life_days=45.5).recency_half_life_days == 45.5
    with pytest.raises(ConfigError, match="unknown keys"):
        parse_config({"target": "churn", "training": {"half_life": 90}})


def test_after_a_recommended_retrain_the_run_takes_the_after_retrain_weight():
    churn = load_config("churn")
    weighted, note = recency.after_retrain(churn, recommended_for_champion=True)
    assert weighted.recency_half_life_days == 90 and "recency_after_retrain_days" in note
    assert weighted.flat_params()["recency_half_life_days"] == 90  # what MLflow records
    # no recommendation of this champion: unchanged, no note
    assert recency.after_retrain(churn, False) == (churn, None)
    # an always-on weight wins over the after-retrain one
    always = churn.with_overrides(recency_half_life_days=180)
    assert recency.after_retrain(always, True) == (always, None)
    # an outcome without an after-retrain weight: unchanged
    expansion = load_config("expansion")
    assert recency.after_retrain(expansion, True) == (expansion, None)


def test_churnml_train_scores_weighs_only_a_retrain_of_the_recommended_champion(tmp_path, monkeypatch):
    """The CLI wiring: the weight reaches training (and the run's notes) only when the latest
    monitored week recommends retraining the version that is champion now."""
    from types import SimpleNamespace

    from churnml.cli import main
    from churnml.commands import train as T
    from churnml.jobs.drift import RETRAIN_NAME
    from churnml.jobs.monitoring import MONITORING_DIR
    from churnml.models import registry
    import churnml.data.io as io
    import churnml.models.train as train_module

    seen = {}

    def fake_train(book, target, config, **kw):
        seen["half_life"] = config.recency_half_life_days
        return SimpleNamespace(notes=[], config=config)

    monkeypatch.setattr(io, "load_book", lambda data: (None, SimpleNamespace(total_rejected=0)))
    monkeypatch.setattr(train_module, "train_target", fake_train)
    monkeypatch.setattr(registry, "log_training", lambda result, **kw: seen.setdefault("notes", result.notes))
    monkeypatch.setattr(T, "print_summary", lambda result, registration: None)
    (tmp_path / MONITORING_DIR).mkdir()
    pd.DataFrame({"as_of": pd.to_datetime(["2026-06-08"]), "outcome": ["churn"], "model_version": ["4"],
                  "retrain_recommended": [True], "retrain_reason": ["calibration slope 0.5 outside [0.8, 1.25]"]}
                 ).to_parquet(tmp_path / MONITORING_DIR / RETRAIN_NAME)
    args = ["train", "--data", str(tmp_path), "--target", "churn", "--no-plots", "--scores", str(tmp_path)]
    monkeypatch.setattr(registry, "champion_version", lambda target: "4")
    assert main(args) == 0
    assert seen["half_life"] == 90 and any("recency_after_retrain_days" in n for n in seen["notes"])
    seen.clear()
    monkeypatch.setattr(registry, "champion_version", lambda target: "5")  # promoted since
    assert main(args) == 0
    assert seen["half_life"] is None and seen["notes"] == []


# ---- the fits -----------------------------------------------------------------------------------
def _config(half_life=None):
    # replace, not with_overrides (which ignores None): half_life None is the weight off,
    # whatever the shipped default
    return dataclasses.replace(load_config("churn").with_overrides(
        horizon_days=14, test_dates=5, calibration_dates=5, min_positives=2,
        num_boost_round=25, early_stopping_rounds=5, lgb_params=FAST_LGB,
        monotone_from_catalog=False, calibration_cv_folds=3, refit_calibration_folds=3),
        recency_half_life_days=half_life)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    """60 accounts x 30 weeks; churn follows x1 in the first half and x2 in the second."""
    rng = np.random.default_rng(0)
    dates = pd.date_range("2025-01-06", periods=30, freq="7D")
    n = 60
    frame = pd.DataFrame({
        "account_id": np.tile([f"a{i:02d}" for i in range(n)], len(dates)),
        "as_of": np.repeat(dates, n),
        "x1": rng.normal(size=n * len(dates)), "x2": rng.normal(size=n * len(dates)),
    })
    late = (frame["as_of"] >= dates[15]).to_numpy()
    logit = np.where(late, 2.0 * frame["x2"], 2.0 * frame["x1"]) - 1.0
    frame["label"] = (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype("float64")
    frame["event_mrr"] = frame["label"] * 100.0
    split = time_split(dates, _config())
    frame["window"] = split.window_of(frame["as_of"]).to_numpy()
    return Dataset(frame, ["x1", "x2"], [], split, "churn")


@pytest.fixture
def fits(monkeypatch):
    """Every lgb.train call: its training rows' weights and its validation sets' weights."""
    calls: list[dict] = []
    real = lgb.train

    def spy(params, train_set, *args, **kwargs):
        booster = real(params, train_set, *args, **kwargs)  # constructs the sets as it always does
        calls.append({"rows": train_set.num_data(), "weight": train_set.get_weight(),
                      "valid": [v.get_weight() for v in kwargs.get("valid_sets") or []]})
        return booster

    monkeypatch.setattr(lgb, "train", spy)
    return calls


def _fit_all(dataset: Dataset, config):
    protocol, _ = fit_model(dataset, config)
    crossfit, _ = fit_model_crossfit(dataset, config)
    champion, _ = refit_on_all(dataset, config, protocol)
    return protocol, crossfit, champion


def _digest(model) -> str:
    return hashlib.sha256(model.booster.model_to_string().encode()).hexdigest()[:16]


#: model_to_string digests of the three fits on the fixture, computed with the code before the
#: weighting existed (main at 28c1e11, LightGBM 4.7.0)
BEFORE = {"protocol": "a42f475b80a32c9b", "crossfit": "6487a427fa22ffff", "champion": "c9a66e4a569100f8"}


def test_off_gives_no_weight_to_any_fit_and_the_boosters_of_before(dataset, fits):
    protocol, crossfit, champion = _fit_all(dataset, _config(None))
    # protocol (train + early stopping), crossfit (3 folds + final), refit (champion + 3 folds)
    assert len(fits) == 1 + 4 + 4
    assert all(call["weight"] is None for call in fits)
    assert all(w is None for call in fits for w in call["valid"])
    if lgb.__version__ == "4.7.0":  # the digests are LightGBM 4.7.0's text models
        got = {"protocol": _digest(protocol), "crossfit": _digest(crossfit),
               "champion": _digest(champion)}
        assert got == BEFORE


def test_on_every_booster_is_weighted_from_its_own_latest_as_of(dataset, fits):
    config = _config(HALF_LIFE)
    protocol, crossfit, champion = _fit_all(dataset, config)
    assert len(fits) == 9
    for call in fits:
        w = call["weight"]
        assert w is not None and len(w) == call["rows"]
        assert float(np.max(w)) == 1.0  # from the latest as_of among that fit's rows
        # every weight is a whole number of weeks from that date
        weeks = np.log2(1 / w.astype("float64")) * HALF_LIFE / 7
        np.testing.assert_allclose(weeks, np.round(weeks), atol=1e-4)
        assert all(v is None for v in call["valid"])  # early stopping: unweighted
    train = dataset.part("train")
    np.testing.assert_allclose(fits[0]["weight"], recency.recency_weights(train["as_of"], HALF_LIFE),
                               rtol=1e-6)
    assert len(fits[0]["valid"]) == 1  # the protocol's early stopping on the calibration window
    refit_champion = fits[5]
    np.testing.assert_allclose(refit_champion["weight"],
                               recency.recency_weights(dataset.frame["as_of"], HALF_LIFE), rtol=1e-6)
    # the weights change the trees
    off_protocol, _, off_champion = _fit_all(dataset, _config(None))
    assert _digest(protocol) != _digest(off_protocol)
    assert _digest(champion) != _digest(off_champion)
    assert champion.info["refit"]["recency_half_life_days"] == HALF_LIFE


def test_the_calibrator_is_fitted_on_the_calibration_rows_unweighted(dataset):
    config = _config(HALF_LIFE)
    model, _ = fit_model(dataset, config)
    cal = dataset.part("calibration")
    raw = sigmoid(model.raw_log_odds(cal))
    expected, _ = choose_calibrator(raw, cal["label"].to_numpy(), cal["account_id"].to_numpy(),
                                    config.calibration_method, config.calibration_cv_folds,
                                    config.seed)
    assert model.calibrator.to_dict() == expected.to_dict()


def test_a_subset_fit_uses_its_own_weights_not_its_parents(fits):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 2))
    y = (rng.random(400) < 0.3).astype("float64")
    data = R.binned_dataset(X, y, ["a", "b"], [], FAST_LGB)
    R.fit_on_rows(data, None, FAST_LGB, 3, weight=np.linspace(0.1, 1.0, 400))
    rows = np.arange(0, 400, 2)
    R.fit_on_rows(data, rows, FAST_LGB, 3, weight=np.full(len(rows), 0.5))
    R.fit_on_rows(data, rows, FAST_LGB, 3, weight=np.ones(len(rows)))  # all 1: not the parent's
    np.testing.assert_allclose(fits[0]["weight"], np.linspace(0.1, 1.0, 400), rtol=1e-6)
    np.testing.assert_allclose(fits[1]["weight"], 0.5)
    np.testing.assert_allclose(fits[2]["weight"], 1.0)
