"""Training on a stratified sample of accounts (``churnml.models.sampling``): proportional
allocation, stratum proportions, determinism, the sampled book keeping the full book's dates,
and the run, MLflow metrics and model card stating the sample and its effect on the evaluation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.models import sampling as S
from churnml.models.config import load_config

FAST_LGB = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 15, "max_depth": 5,
            "min_child_samples": 30, "seed": 3, "deterministic": True, "num_threads": 1,
            "verbose": -1}


def synthetic_strata(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mrr = rng.gamma(2.0, 400.0, n)
    frame = pd.DataFrame({"account_id": [f"a{i:06d}" for i in range(n)],
                          "event": rng.random(n) < 0.1 + 0.2 * (mrr < 500), "peak_mrr": mrr})
    rank = frame["peak_mrr"].rank(method="first").to_numpy() - 1
    frame["size_band"] = (rank * 4 // n).astype(int)
    return frame


# ---- allocation -----------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(counts=st.lists(st.integers(1, 500), min_size=1, max_size=10), share=st.floats(0.0, 1.0))
def test_allocation_is_proportional_and_exact(counts, share):
    counts = np.array(counts)
    n = int(round(share * counts.sum()))
    take = S.allocate(counts, n)
    assert take.sum() == n and (take >= 0).all() and (take <= counts).all()
    exact = counts * n / counts.sum()  # the plain reference: n x each stratum's share
    if n >= len(counts):
        assert (take >= 1).all()  # every stratum is represented
        # within one account of the reference, plus one per stratum lifted to its one account
        # (each lift is taken from the largest allocation)
        lifted = int((exact < 1).sum())
        assert np.abs(take - exact).max() < 1 + lifted + 1e-9
    else:
        assert np.abs(take - exact).max() < 1


# ---- the draw -------------------------------------------------------------------------------
def test_the_sample_keeps_every_stratum_share():
    strata = synthetic_strata(20_000)
    chosen, table = S.draw_accounts(strata, 5_000, seed=7)
    assert len(chosen) == len(set(chosen)) == 5_000 == table["sampled"].sum()
    picked = strata[strata["account_id"].isin(chosen)]
    observed = picked.groupby(["event", "size_band"]).size()
    expected = strata.groupby(["event", "size_band"]).size() * 5_000 / 20_000
    assert (observed - expected).abs().max() <= 1  # proportional up to one account per stratum
    assert np.allclose(table["rate"], 0.25, atol=1 / table["accounts"].min())
    # the event rate and the size mix of the sample are the book's
    assert abs(picked["event"].mean() - strata["event"].mean()) < 1e-3
    assert len(table) == 8 and set(table["size_band"]) == {0, 1, 2, 3}


def test_the_draw_is_deterministic_and_the_seed_matters():
    strata = synthetic_strata(3_000, seed=1)
    a, table_a = S.draw_accounts(strata, 600, seed=11)
    b, table_b = S.draw_accounts(strata, 600, seed=11)
    c, table_c = S.draw_accounts(strata, 600, seed=12)
    assert list(a) == list(b) and table_a.equals(table_b)
    assert set(a) != set(c) and table_a["sampled"].equals(table_c["sampled"])


# ---- on the simulated book ------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_config():
    return load_config("churn").with_overrides(
        horizon_days=60, num_boost_round=40, early_stopping_rounds=10, backtest_folds=1,
        bootstrap_resamples=20, lgb_params=FAST_LGB, min_positives=3)


def test_the_sampled_book_keeps_whole_accounts_and_the_full_books_dates(sim_tables, small_config):
    from churnml.data.tables import Book
    from churnml.models.dataset import labeled_as_of_dates, observed_start

    book = Book(tables=dict(sim_tables.tables))
    strata = S.account_strata(book, small_config, 4)
    assert strata["event"].any() and not strata["event"].all()
    sample = S.draw_sample(book, small_config, len(strata) // 2)
    assert sample is not None and sample.accounts_sampled == len(strata) // 2
    kept = set(sample.account_ids)
    for name, frame in sample.book.tables.items():
        if "account_id" in frame.columns:
            assert set(frame["account_id"].astype(str)) <= kept, name
            full = book.tables[name]
            # every row of a kept account is there
            assert len(frame) == int(full["account_id"].astype(str).isin(kept).sum()), name
    assert sample.book.data_end == book.data_end
    assert observed_start(sample.book) == observed_start(book)
    assert list(labeled_as_of_dates(sample.book, small_config)) == list(labeled_as_of_dates(book, small_config))
    # the events are those of the strata: a sampled account that had the event still has it
    again = S.account_strata(sample.book, small_config, 4).set_index("account_id")
    assert (again["event"] == strata.set_index("account_id").loc[again.index, "event"]).all()
    assert S.draw_sample(book, small_config, len(strata)) is None  # nothing to sample


def test_a_sampled_run_states_its_sample_in_the_run_and_the_card(sim_tables, small_config):
    from churnml.data.tables import Book
    from churnml.models.card import model_card
    from churnml.models.train import train_target

    book = Book(tables=dict(sim_tables.tables))
    n = len(S.account_strata(book, small_config, 4)) * 2 // 3
    result = train_target(book, "churn", small_config, sample_accounts=n)
    m = result.metrics
    assert m["sample_accounts"] == n and 0.6 < m["sample_rate"] < 0.7
    assert result.dataset.frame["account_id"].nunique() <= n
    assert m["test_roc_auc_ci_width"] == pytest.approx(m["test_roc_auc_ci_high"] - m["test_roc_auc_ci_low"])
    assert m["test_roc_auc_ci_width_full_book_estimate"] == pytest.approx(
        m["test_roc_auc_ci_width"] * np.sqrt(m["sample_rate"]))
    rates = [v for k, v in m.items() if k.startswith("sample_rate_")]
    assert len(rates) >= 2 and all(abs(r - m["sample_rate"]) < 0.2 for r in rates)
    assert any("stratified sample" in note for note in result.notes)
    assert result.fit_details["sampling"]["strata"]
    card = model_card(result)
    assert "**Sampled training**" in card and f"{n:,}" in card and "without sampling" in card
    assert card.count("stratified sample of") == 1
    # the config's budget does the same as the option
    same = train_target(book, "churn", small_config.with_overrides(sample_max_accounts=n))
    assert same.metrics["sample_accounts"] == n
    assert same.metrics["test_roc_auc"] == m["test_roc_auc"]
