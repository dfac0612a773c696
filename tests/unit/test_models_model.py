"""TargetModel: calibrated probabilities, exact TreeSHAP, reasons, input checks, save/load.

A small model is trained once per module on a synthetic book of stacked weekly observations
whose churn risk depends on logins vs baseline, NPS and plan (a few seconds).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.errors import SchemaError
from churnml.features.catalog import load_catalog
from churnml.models.config import ModelConfig
from churnml.models.dataset import assemble, time_split
from churnml.models.explain import top_k_indices
from churnml.models.model import TargetModel
from churnml.models.train import fit_model


def synthetic_book(n_accounts: int = 200, n_weeks: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2025-01-06", periods=n_weeks, freq="7D")
    ids = np.array([f"acct-{i:04d}" for i in range(n_accounts)])
    grid = pd.MultiIndex.from_product([ids, dates], names=["account_id", "as_of"]).to_frame(index=False)
    n = len(grid)
    latent = np.repeat(rng.normal(size=n_accounts), n_weeks)
    f = grid.copy()
    f["logins_30d_vs_baseline"] = np.exp(0.4 * rng.normal(size=n) - 0.4 * latent)
    f.loc[rng.random(n) < 0.1, "logins_30d_vs_baseline"] = np.nan
    f["support_tickets_30d"] = rng.poisson(1 + np.exp(latent)).astype(float)
    f["nps_latest"] = rng.integers(0, 11, n).astype(float)
    f["plan"] = pd.Series(rng.choice(["basic", "pro", "enterprise"], n), dtype="str")
    f["mrr"] = rng.gamma(2, 500, n)
    logit = (-2.5 + 0.8 * latent - np.log(f["logins_30d_vs_baseline"].fillna(1.0))
             - 0.15 * (f["nps_latest"] - 5) + 0.6 * (f["plan"] == "basic"))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    labels = grid.assign(mrr=f["mrr"], churn=label, expansion=1 - label, labeled=True)
    return f, labels


@pytest.fixture(scope="module")
def trained():
    features, grid = synthetic_book()
    config = ModelConfig(target="churn", horizon_days=28, num_boost_round=60, backtest_folds=1,
                         lgb_params={"objective": "binary", "learning_rate": 0.1, "num_leaves": 15,
                                     "max_depth": 5, "min_child_samples": 30, "seed": 3,
                                     "deterministic": True, "num_threads": 1, "verbose": -1})
    split = time_split(sorted(features["as_of"].unique()), config)
    dataset = assemble(features, grid, config, split)
    model, info = fit_model(dataset, config, load_catalog())
    return model, dataset


def test_probabilities_are_calibrated_and_agree_with_the_reasons_pass(trained):
    model, dataset = trained
    test = dataset.part("test")
    p = model.predict_proba(test)
    assert p.shape == (len(test),) and ((p > 0) & (p < 1)).all()
    p2, reasons = model.predict_with_reasons(test)
    np.testing.assert_allclose(p, p2, rtol=1e-9)
    assert len(reasons) == len(test)
    # calibration: mean predicted close to the observed rate on later, unseen data
    assert abs(p.mean() - test["label"].mean()) < 0.03


def test_contributions_are_exact_treeshap_and_equal_shap(trained):
    shap = pytest.importorskip("shap")  # optional: the `explain` extra (pyproject.toml)

    model, dataset = trained
    sample = dataset.part("test").head(200)
    contrib = model.contributions(sample, with_base=True)
    # they add up to the raw log-odds
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), model.raw_log_odds(sample), rtol=1e-9, atol=1e-9)
    explainer = shap.TreeExplainer(model.booster)
    values = explainer.shap_values(model.matrix(sample))
    values = values[1] if isinstance(values, list) else values
    np.testing.assert_allclose(contrib[model.feature_names].to_numpy(), values, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(contrib["base_value"].to_numpy(), np.ravel(explainer.expected_value)[-1], atol=1e-8)


def test_dimension_contributions_sum_the_feature_contributions(trained):
    model, dataset = trained
    sample = dataset.part("test").head(50)
    dims = model.dimension_contributions(sample)
    assert list(dims.columns)[:2] == ["usage", "engagement"]
    assert "static" in dims.columns  # plan is an attribute, not a health dimension
    np.testing.assert_allclose(dims.sum(axis=1), model.contributions(sample).sum(axis=1), atol=1e-12)
    np.testing.assert_allclose(dims["usage"], model.contributions(sample)["logins_30d_vs_baseline"])


def plain_top_k(row: np.ndarray, k: int) -> list[int]:
    """Reference ordering, deliberately plain: raising reasons by size, then lowering ones."""
    up = sorted((j for j in range(len(row)) if row[j] > 0), key=lambda j: -row[j])
    down = sorted((j for j in range(len(row)) if row[j] < 0), key=lambda j: row[j])
    return (up + down)[:k]


def test_top_k_matches_a_plain_reference_on_random_contributions():
    rng = np.random.default_rng(1)
    contrib = rng.normal(size=(500, 12)) * (rng.random((500, 12)) < 0.7)  # many exact zeros
    contrib[0] = 0.0  # a row with no reason at all
    contrib[1] = -np.abs(contrib[1]) - 0.1  # only lowering reasons
    idx, valid = top_k_indices(contrib, 3)
    for i in range(len(contrib)):
        assert idx[i][valid[i]].tolist() == plain_top_k(contrib[i], 3)
    assert not valid[0].any() and valid[1].all()


def test_reasons_are_ordered_and_rendered_from_the_catalog(trained):
    model, dataset = trained
    test = dataset.part("test").head(300)
    reasons = model.explain(test, top_k=3)
    contrib = model.contributions(test)
    for i, records in enumerate(reasons):
        assert 1 <= len(records) <= 3
        c = [r["contribution"] for r in records]
        assert c == [contrib.iloc[i][r["feature"]] for r in records]
        raising = [x for x in c if x > 0]
        assert c[: len(raising)] == sorted(raising, reverse=True)  # raising first, strongest first
        assert c[len(raising):] == sorted(c[len(raising):])  # then lowering, most negative first
        for r in records:
            assert set(r) == {"feature", "value", "contribution", "text"} and r["text"]
    by_feature = {r["feature"]: r for records in reasons for r in records}
    login = by_feature["logins_30d_vs_baseline"]
    if login["value"] is not None:
        assert login["text"] == (f"logins in the last 30 days are {login['value']:.0%} "
                                 f"of this account's usual level")
    plan = by_feature["plan"]
    assert plan["value"] in {"basic", "pro", "enterprise"} and plan["value"] in plan["text"]


def test_same_numbers_alone_and_in_a_batch(trained):
    model, dataset = trained
    batch = dataset.part("test").head(40)
    p_batch, r_batch = model.predict_with_reasons(batch)
    for i in (0, 17, 39):
        alone = batch.iloc[[i]]
        p_alone, r_alone = model.predict_with_reasons(alone)
        assert p_alone[0] == p_batch[i]
        assert r_alone[0] == r_batch[i]
    shuffled = batch.sample(frac=1.0, random_state=0)
    np.testing.assert_array_equal(model.predict_proba(shuffled), model.predict_proba(batch)[
        [batch.index.get_loc(j) for j in shuffled.index]])


def test_scoring_checks_columns_against_training_time(trained):
    model, dataset = trained
    rows = dataset.part("test").head(5)
    # a missing feature scores as missing values, with no error
    no_nps = rows.drop(columns=["nps_latest"])
    assert model.missing_features(no_nps) == ["nps_latest"]
    expected = model.predict_proba(rows.assign(nps_latest=np.nan))
    np.testing.assert_array_equal(model.predict_proba(no_nps), expected)
    # an unseen category is missing; the reason still shows what was sent
    unseen = rows.assign(plan="platinum")
    np.testing.assert_array_equal(model.predict_proba(unseen), model.predict_proba(rows.assign(plan=None)))
    # numbers sent as text are accepted when they parse
    as_text = rows.assign(nps_latest=rows["nps_latest"].map(lambda v: f"{v:.0f}"))
    np.testing.assert_array_equal(model.predict_proba(as_text), model.predict_proba(rows))
    # wrong types are named, with count and examples, all at once
    bad = rows.assign(nps_latest=["n/a", "7", "", "ten", "8"], plan=[1, 2, 3, 1, 2])
    with pytest.raises(SchemaError) as exc:
        model.predict_proba(bad)
    message = str(exc.value)
    assert "column 'nps_latest' must be numeric; 2 bad value(s)" in message and "'ten'" in message
    assert "column 'plan' must be text" in message
    with pytest.raises(SchemaError, match="must be a pandas DataFrame"):
        model.predict_proba(rows.to_numpy())


def test_save_and_load_round_trip_without_pickle(trained, tmp_path):
    model, dataset = trained
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["booster.txt", "model.json"]
    loaded = TargetModel.load(tmp_path / "m", version="7")
    sample = dataset.part("test").head(100)
    np.testing.assert_array_equal(loaded.predict_proba(sample), model.predict_proba(sample))
    assert loaded.explain(sample) == model.explain(sample)
    assert loaded.version == "7" and loaded.target == "churn" and loaded.horizon_days == 28
    assert loaded.feature_names == model.feature_names and loaded.categories == model.categories
    with pytest.raises(Exception, match="not a saved churnml model"):
        TargetModel.load(tmp_path)


def test_matrix_from_a_float_block_equals_the_column_by_column_matrix(trained):
    """The fast path (numeric features copied from a FrameColumns float64 block, in whatever
    order the block holds them) gives the matrix the plain per-column path gives."""
    from churnml.columns import FrameColumns

    model, dataset = trained
    test = dataset.part("test").reset_index(drop=True).head(40)
    plain = model.matrix(test)
    numeric = [c for c in test.columns if test[c].dtype == "float64"]
    # a block in reversed column order, with an extra column the model does not know
    order = list(reversed(numeric)) + ["not_a_feature"]
    block = np.column_stack([test[c].to_numpy() for c in reversed(numeric)]
                            + [np.arange(len(test), dtype="float64")])
    frame = pd.concat([test, pd.DataFrame({"not_a_feature": block[:, -1]})], axis=1)
    floats = {name: block[:, j] for j, name in enumerate(order)}
    view = FrameColumns.from_parts(frame, floats, block=block)
    assert view.block_names == tuple(order)
    fast = model.matrix(frame, view)
    np.testing.assert_array_equal(fast, plain)
    # the plan is cached per block layout and reused
    assert model.matrix(frame, view).tobytes() == plain.tobytes()
    # FrameColumns made from a frame carries its own block too: same matrix
    np.testing.assert_array_equal(model.matrix(frame, FrameColumns(frame)), plain)


def test_from_parts_refuses_a_block_that_does_not_match_the_columns(trained):
    from churnml.columns import FrameColumns

    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    floats = {"a": frame["a"].to_numpy(), "b": frame["b"].to_numpy()}
    with pytest.raises(ValueError, match="block of shape"):
        FrameColumns.from_parts(frame, floats, block=np.zeros((2, 3)))


def _reference_reasons(contrib, values, feature_names, render, k):
    """Plain reference for build_reasons: row by row, reason by reason."""
    idx, valid = top_k_indices(contrib, k)
    out = []
    for i in range(contrib.shape[0]):
        records = []
        for j, ok in zip(idx[i].tolist(), valid[i].tolist()):
            if not ok:
                break
            raw = values[j][i]
            value = None if raw is None or (isinstance(raw, float) and raw != raw) else raw
            records.append({"feature": feature_names[j], "value": value,
                            "contribution": float(contrib[i, j]), "text": render[j](value)})
        out.append(records)
    return out


@settings(max_examples=80, deadline=None)
@given(n_rows=st.integers(0, 12), n_features=st.integers(0, 6), k=st.integers(1, 5),
       seed=st.integers(0, 2**16), zero_share=st.floats(0, 1))
def test_build_reasons_matches_a_plain_reference(n_rows, n_features, k, seed, zero_share):
    """The column-wise build_reasons gives exactly the row-by-row reference: same reasons,
    order, values (NaN and None shown as None, categories as given), contributions, texts."""
    from churnml.models.explain import build_reasons

    rng = np.random.default_rng(seed)
    contrib = rng.normal(size=(n_rows, n_features))
    contrib[rng.random(contrib.shape) < zero_share] = 0.0  # exact zeros are never reasons
    values = []
    for j in range(n_features):
        if j % 3 == 2:  # a categorical feature: text or missing
            values.append([None if rng.random() < 0.3 else f"cat{rng.integers(3)}"
                           for _ in range(n_rows)])
        else:
            column = rng.integers(0, 4, size=n_rows).astype(float)
            column[rng.random(n_rows) < 0.3] = np.nan
            values.append(column.tolist())
    names = [f"f{j}" for j in range(n_features)]
    render = [(lambda v, j=j: f"feature {j} is {v}") for j in range(n_features)]
    assert build_reasons(contrib, values, names, render, k) == \
        _reference_reasons(contrib, values, names, render, k)


def test_one_row_takes_lightgbms_single_row_path_with_the_same_numbers(trained):
    """A one-account call goes through LightGBM's single-row C API (set up once per model),
    with pred_contrib's numbers bit for bit: missing values, out-of-range and infinite
    values, every category code and an unseen (missing) one."""
    import copy

    from churnml.models.single_row import SingleRowContrib

    model, dataset = trained
    model = copy.copy(model)
    model._single_row = None
    X = model.matrix(dataset.part("test").head(50))
    rng = np.random.default_rng(5)
    wild = X.copy()
    wild[rng.random(wild.shape) < 0.3] = np.nan
    wild[::7, 0] = np.inf
    wild[1::7, 0] = -1e12
    for name, cats in model.categories.items():  # every code, and NaN for unseen
        j = model.feature_names.index(name)
        wild[:, j] = rng.choice([*range(len(cats)), np.nan], len(wild))
    for row in np.vstack([X, wild]):
        expected = model.booster.predict(row[None, :], pred_contrib=True, num_threads=1)
        np.testing.assert_array_equal(model._contrib(row[None, :]), expected)
    fast = model._single_row
    assert isinstance(fast, SingleRowContrib) and fast.available, (
        "LightGBM's single-row fast path is unavailable: /predict lost its fast path "
        "(lightgbm.basic._LIB or Booster._handle changed?)")
    assert fast.serves(model.booster)
    with pytest.raises(ValueError, match="feature values"):
        fast(X[0, :-1])
    # a replaced booster gets its own set-up
    model.booster = type(model.booster)(model_str=model.booster.model_to_string())
    model._contrib(X[:1])
    assert model._single_row is not fast and model._single_row.serves(model.booster)


def test_score_frame_builds_one_matrix_for_models_with_the_same_encoding(trained, monkeypatch):
    import copy

    from churnml.health.score import HealthScore
    from churnml.scoring.frame import score_frame

    model, dataset = trained
    twin = copy.copy(model)
    assert twin.encoding_key == model.encoding_key
    calls = []
    original = TargetModel.matrix

    def counting(self, features, columns=None):
        calls.append(self)
        return original(self, features, columns)

    monkeypatch.setattr(TargetModel, "matrix", counting)
    test = dataset.part("test")
    test = test[test["as_of"] == test["as_of"].max()].head(5).reset_index(drop=True)
    shared = score_frame(test, {"churn": model, "expansion": twin}, HealthScore())
    assert len(calls) == 1
    alone = score_frame(test, {"churn": model}, HealthScore())
    np.testing.assert_array_equal(shared["churn_probability"], alone["churn_probability"])
    assert shared["churn_reasons"].tolist() == alone["churn_reasons"].tolist()


@settings(max_examples=60, deadline=None)
@given(n_rows=st.integers(2, 10), n_features=st.integers(1, 12), k=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_top_k_and_reasons_of_one_row_equal_that_row_in_a_batch(n_rows, n_features, k, seed):
    """The one-account shortcuts of top_k_indices and build_reasons give what the batch path
    gives for the same row, ties included (small integer contributions tie often)."""
    from churnml.models.explain import build_reasons

    rng = np.random.default_rng(seed)
    contrib = rng.integers(-2, 3, size=(n_rows, n_features)).astype(float)
    values = [rng.integers(0, 3, size=n_rows).astype(float).tolist() for _ in range(n_features)]
    names = [f"f{j}" for j in range(n_features)]
    render = [(lambda v, j=j: f"feature {j} is {v}") for j in range(n_features)]
    idx, valid = top_k_indices(contrib, k)
    batch = build_reasons(contrib, values, names, render, k)
    for i in range(n_rows):
        one_idx, one_valid = top_k_indices(contrib[i:i + 1], k)
        np.testing.assert_array_equal(one_valid[0], valid[i])
        np.testing.assert_array_equal(one_idx[0][one_valid[0]], idx[i][valid[i]])
        row_values = [[column[i]] for column in values]
        assert build_reasons(contrib[i:i + 1], row_values, names, render, k) == [batch[i]]
