"""The logistic regression baseline: the seeded, label-stratified row cap of its fit and its
chunked scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.models.baselines import LogisticBaseline, stratified_row_sample


def frame(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    counts = rng.poisson(3, n).astype(float)
    counts[rng.random(n) < 0.1] = np.nan
    plan = rng.choice(["a", "b", None], n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * x - 2)))).astype(float)
    return pd.DataFrame({"x": x, "counts": counts, "plan": plan}), y


def test_row_sample_is_seeded_stratified_and_capped():
    y = np.r_[np.ones(300), np.zeros(2700)]
    rows = stratified_row_sample(y, 1000, seed=4)
    assert rows is not None and len(rows) == 1000 and len(np.unique(rows)) == 1000
    assert np.all(np.diff(rows) > 0)
    assert y[rows].sum() == 100  # the label's share kept exactly: 10%
    assert np.array_equal(rows, stratified_row_sample(y, 1000, seed=4))
    assert not np.array_equal(rows, stratified_row_sample(y, 1000, seed=5))
    assert stratified_row_sample(y, 3000, seed=4) is None
    assert stratified_row_sample(y, None, seed=4) is None


def test_capped_fit_uses_the_sample_and_scores_every_row_in_chunks():
    X, y = frame(6000)
    full = LogisticBaseline(["x", "counts"], ["plan"]).fit(X, y)
    capped = LogisticBaseline(["x", "counts"], ["plan"], max_rows=2000, seed=1, chunk_rows=700).fit(X, y)
    assert full.fit_rows_ == 6000 and capped.fit_rows_ == 2000
    # the capped fit is the plain fit on the sampled rows
    rows = stratified_row_sample(y, 2000, seed=1)
    plain = LogisticBaseline(["x", "counts"], ["plan"]).fit(X.iloc[rows], y[rows])
    test, _ = frame(2500, seed=9)
    p_capped = capped.predict_proba(test)
    assert len(p_capped) == 2500
    np.testing.assert_allclose(p_capped, plain.predict_proba(test), rtol=0, atol=1e-12)
    # chunked scoring equals scoring the whole frame at once
    one_chunk = LogisticBaseline(["x", "counts"], ["plan"], max_rows=2000, seed=1, chunk_rows=10**6).fit(X, y)
    np.testing.assert_allclose(p_capped, one_chunk.predict_proba(test), rtol=0, atol=1e-12)
    # and 2,000 rows are enough for these few coefficients: the same ranking as the full fit
    assert np.corrcoef(p_capped, full.predict_proba(test))[0, 1] > 0.98
    assert X["plan"].isna().any()  # the caller's frame is not modified


def test_the_row_cap_is_read_from_the_config_and_checked():
    from churnml.errors import ConfigError
    from churnml.models.config import load_config

    config = load_config("churn")
    assert config.logreg_max_rows == 200_000
    raw = {"target": "churn", "evaluation": {"logreg_max_rows": None}}
    from churnml.models.config import parse_config

    assert parse_config(raw).logreg_max_rows is None  # null: every training row
    with pytest.raises(ConfigError, match="logreg_max_rows"):
        config.with_overrides(logreg_max_rows=10)
