"""calibrate-health: recovers known weights, versions files, adopts only when better, refuses
on too little data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.data.tables import Book
from churnml.errors import InsufficientDataError
from churnml.jobs import calibrate_health as cal

START, END = pd.Timestamp("2024-01-01"), pd.Timestamp("2025-12-29")
TRUE_WEIGHTS = {"usage": 0.7, "outcome": 0.3}  # engagement and satisfaction carry no signal

LOGINS = np.array([0.3, 0.6, 0.8, 1.0])      # usage band scores 10 / 40 / 70 / 100
REPLY = np.array([0.1, 0.3, 0.6, 0.9])       # engagement 10 / 40 / 70 / 100
GOALS = np.array([0.0, 1.0, 2.0])            # outcome 30 / 70 / 100
NPS = np.array([3.0, 8.0, 10.0])


def weighted_sum_book(n: int, seed: int = 0):
    """A book whose weekly churn hazard depends only on 0.7 * usage + 0.3 * outcome sub-scores
    (fixed per account); the hidden per-account signal levels are returned with it."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"W{i:05d}" for i in range(n)])
    u, e, o, s = (rng.integers(0, len(a), n) for a in (LOGINS, REPLY, GOALS, NPS))
    usage_score = np.array([10, 40, 70, 100])[u]
    outcome_score = np.array([30, 70, 100])[o]
    truth = TRUE_WEIGHTS["usage"] * usage_score + TRUE_WEIGHTS["outcome"] * outcome_score
    hazard = 0.02 * np.exp(-0.045 * (truth - 50))
    start = START + pd.to_timedelta(rng.integers(0, 364, n), unit="D")
    churn = start + pd.to_timedelta(7 * rng.geometric(np.clip(hazard, 1e-4, 0.9)), unit="D")
    rows = [pd.DataFrame({"account_id": ids, "effective_date": start, "mrr": 100.0,
                          "reason": "new"})]
    gone = churn < END
    rows.append(pd.DataFrame({"account_id": ids[gone], "effective_date": churn[gone], "mrr": 0.0,
                              "reason": "churn"}))
    rows.append(pd.DataFrame({"account_id": ids[~gone], "effective_date": END, "mrr": 100.0,
                              "reason": "renewal"}))
    mrr = pd.concat(rows).sort_values(["account_id", "effective_date"], ignore_index=True)
    accounts = pd.DataFrame({"account_id": ids, "created_at": start})
    levels = pd.DataFrame({"account_id": ids, "logins_30d_vs_baseline": LOGINS[u],
                           "email_reply_rate_90d": REPLY[e], "goals_achieved_180d": GOALS[o],
                           "nps_latest": NPS[s]})
    return Book(tables={"accounts": accounts, "mrr_changes": mrr}), levels


def level_features(levels):
    """A feature builder for the book above: the account's fixed levels at every as_of where it
    is active (its latest MRR change before as_of is > 0)."""
    def build(book, as_of_dates):
        mrr = book["mrr_changes"]
        start = mrr.groupby("account_id")["effective_date"].min()
        ends = mrr[mrr["mrr"] == 0].groupby("account_id")["effective_date"].min()
        span = pd.DataFrame({"start": start, "end": ends.reindex(start.index)})
        grid = span.reset_index().merge(
            pd.DataFrame({"as_of": pd.to_datetime(list(as_of_dates))}), how="cross")
        active = (grid["start"] < grid["as_of"]) & ~(grid["end"] < grid["as_of"])
        grid = grid.loc[active, ["account_id", "as_of"]]
        return grid.merge(levels, on="account_id").sort_values(
            ["as_of", "account_id"], ignore_index=True)
    return build


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURNML_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.slow
def test_recovers_known_weights_and_adopts(home):
    book, levels = weighted_sum_book(800)
    result = cal.calibrate_health(book, shrinkage=0.0, log_to_mlflow=False,
                                  build_features=level_features(levels))
    w = result.weights_after
    assert sum(w.values()) == pytest.approx(100.0)
    assert min(w.values()) >= 0
    # payment has no data here and keeps its current share; the rest is shared as fitted
    assert w["payment"] == pytest.approx(result.weights_before["payment"], abs=1)
    seen = w["usage"] + w["outcome"] + w["engagement"] + w["satisfaction"]
    assert w["usage"] / seen == pytest.approx(0.7, abs=0.1)
    assert w["outcome"] / seen == pytest.approx(0.3, abs=0.1)
    assert w["engagement"] / seen < 0.08 and w["satisfaction"] / seen < 0.08
    assert result.candidate_auc > result.current_auc and result.adopted
    assert result.weights_path == home / "health" / "weights-v1.yaml"
    assert (home / "health" / "adopted").read_text().strip() == "weights-v1.yaml"
    assert cal.load_adopted_health().version == "v1"
    assert result.test_dates[0] - result.fit_dates[1] >= pd.Timedelta(days=90)


@pytest.mark.slow
def test_versions_are_never_overwritten_and_rollback(home):
    book, levels = weighted_sum_book(800)
    build = level_features(levels)
    first = cal.calibrate_health(book, shrinkage=0.0, log_to_mlflow=False, build_features=build)
    v1 = first.weights_path.read_bytes()
    second = cal.calibrate_health(book, shrinkage=0.5, log_to_mlflow=False, build_features=build)
    assert second.weights_path.name == "weights-v2.yaml"
    assert first.weights_path.read_bytes() == v1
    assert second.current_version == "v1"  # compared against the adopted version
    # adopted only when better than v1 on the same held-out window
    assert second.adopted == (second.candidate_auc > second.current_auc)
    cal.adopt("1")
    assert cal.load_adopted_health().version == "v1"


def test_refuses_on_too_few_churn_events(home):
    book, levels = weighted_sum_book(3, seed=2)
    with pytest.raises(InsufficientDataError, match="churn events"):
        cal.calibrate_health(book, log_to_mlflow=False, build_features=level_features(levels))
    assert cal.weights_files() == []
    assert cal.adopted_path() is None


def test_refuses_on_too_short_history(home):
    dates = pd.date_range("2025-01-06", periods=10, freq="7D")
    with pytest.raises(InsufficientDataError, match="more than 13 weekly"):
        cal.split_dates(dates, 90, 13)
