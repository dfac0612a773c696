"""A small golden file of the weekly output: a fixed simulated book, fixed models trained on it
with a fixed configuration, scored for two consecutive weeks. Any change to a number, a
reason, an alert or an action shows up as a diff of ``tests/data/golden_scores.json``.

A deliberate change regenerates the file (and the diff is reviewed in the commit)::

    CHURNML_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_golden_scores.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_scores.json"
WEEKS = ("2026-11-09", "2026-11-16")
KEPT_ACCOUNTS = 80  # the file keeps the first accounts of each week (by id): small, reviewable
SIMPLE = ("account_id", "health_tier", "alerts", "schema_version", "value_tier",
          "expansion_readiness", "queue_status", "queue_rank", "queue_reason", "holdout",
          "policy_version")
FLOATS = ("churn_probability", "expansion_probability", "contraction_probability",
          "health_score", "mrr", "mrr_at_risk", "expected_expansion_mrr",
          "mrr_at_risk_of_contraction", "expected_value")


def _config(target: str):
    from churnml.models.config import load_config

    config = load_config(target)
    return config.with_overrides(
        num_boost_round=40, backtest_folds=1, bootstrap_resamples=0,
        lgb_params={**config.lgb_params, "num_threads": 1, "deterministic": True})


@pytest.fixture(scope="module")
def golden_rows(tmp_path_factory):
    from churnml.data.simulator import simulate
    from churnml.data.tables import Book
    from churnml.health.score import HealthScore
    from churnml.jobs.weekly import score_book
    from churnml.models.train import train_target

    sim = simulate(n_accounts=400, months=18, seed=5)
    book = Book(tables=dict(sim.tables))
    models = {}
    for target in ("churn", "expansion"):
        models[target] = train_target(book, target, _config(target)).model
        models[target].version = "1"
    out = tmp_path_factory.mktemp("golden")
    rows = []
    for week in WEEKS:
        result = score_book(book, week, out, models, HealthScore())
        frame = pd.read_parquet(result.scores_path)
        rows.extend(_record(r) for r in frame.head(KEPT_ACCOUNTS).to_dict("records"))
    return rows


def _plain(value):
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _record(row: dict) -> dict:
    action = _plain(row["next_best_action"])
    out = {"as_of": pd.Timestamp(row["as_of"]).strftime("%Y-%m-%d")}
    out.update({k: _plain(row[k]) for k in SIMPLE})
    out.update({k: _plain(row[k]) for k in FLOATS})
    for outcome in ("churn", "expansion", "contraction"):
        out[f"{outcome}_reasons"] = [(r["feature"], r["text"]) for r in
                                     _plain(row[f"{outcome}_reasons"])]
    out["action"] = [action[k] for k in ("playbook", "severity", "owner", "reason_feature",
                                         "reason")] + [action["expansion_blocked_by"]]
    return out


def test_weekly_output_equals_the_golden_file(golden_rows):
    rows = json.loads(json.dumps(golden_rows))  # tuples -> lists, as in the file
    if os.environ.get("CHURNML_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        # one account-week per line: a change reads as a diff of the rows it touched
        GOLDEN.write_text("[\n" + ",\n".join(json.dumps(r, sort_keys=True) for r in rows)
                          + "\n]\n")
    expected = json.loads(GOLDEN.read_text())
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected):
        key = (want["as_of"], want["account_id"])
        for name in FLOATS:
            if want[name] is None:
                assert got[name] is None, (key, name)
            else:
                assert got[name] == pytest.approx(want[name], abs=1e-9), (key, name)
        rest = {k: v for k, v in got.items() if k not in FLOATS}
        assert rest == {k: v for k, v in want.items() if k not in FLOATS}, key


def test_golden_book_exercises_the_output(golden_rows):
    """The golden rows are not trivial: risks, alerts, several playbooks, null contraction."""
    playbooks = {r["action"][0] for r in golden_rows}
    assert len(playbooks) >= 4
    assert any(r["alerts"] for r in golden_rows)
    assert all(r["contraction_probability"] is None for r in golden_rows)
    assert all(r["action"][4] for r in golden_rows)
