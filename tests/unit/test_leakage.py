"""The leakage guard (churnml.models.leakage): attributes that give the label away stop training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from churnml.errors import ConfigError, LeakageError
from churnml.models import leakage
from churnml.models.leakage import AttributeConfig, find_leaks, guard_training, load_attribute_config

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- a small fake dataset
def fake_dataset(n_accounts: int = 400, weeks: int = 20, seed: int = 0, churn_rate: float = 0.25):
    """Accounts observed weekly; a churner's label is 1 on its last 4 weeks. Columns: ``noise``
    (numeric), ``plan`` (categorical, unrelated), and the account table's attributes."""
    rng = np.random.default_rng(seed)
    ids = [f"a{i:04d}" for i in range(n_accounts)]
    churner = rng.random(n_accounts) < churn_rate
    rows = []
    for i, a in enumerate(ids):
        for w in range(weeks):
            rows.append((a, pd.Timestamp("2025-01-06") + pd.Timedelta(weeks=w),
                         float(churner[i] and w >= weeks - 4)))
    frame = pd.DataFrame(rows, columns=["account_id", "as_of", "label"])
    frame["window"] = "train"
    frame["noise"] = rng.normal(size=len(frame))
    accounts = pd.DataFrame({
        "account_id": ids, "created_at": pd.Timestamp("2024-01-01"),
        "plan": rng.choice(["basic", "pro", "enterprise"], n_accounts),
        "crm_status": np.where(churner, "cancelled", "active"),
    })
    frame = frame.merge(accounts[["account_id", "plan", "crm_status"]], on="account_id")

    dataset = SimpleNamespace(frame=frame, feature_names=["noise", "plan", "crm_status"],
                              categorical=["plan", "crm_status"],
                              split=SimpleNamespace(notes=[]))
    dataset.part = lambda window: dataset.frame[dataset.frame["window"] == window]
    book = SimpleNamespace(accounts=accounts)
    config = SimpleNamespace(target="churn", horizon_days=90, seed=7)
    return dataset, book, config


DECLARED = AttributeConfig(static=("plan",))


def test_an_attribute_that_is_the_outcome_stops_training_naming_it_and_the_evidence():
    dataset, book, config = fake_dataset()
    with pytest.raises(LeakageError) as info:
        guard_training(dataset, config, book=book, attributes=DECLARED)
    message = str(info.value)
    assert "'crm_status'" in message and "AUC" in message and "against each account's outcome" in message
    assert "noise" not in message and "'plan'" not in message
    assert LeakageError("x").exit_code == 2


def test_allow_leaky_turns_the_error_into_a_warning():
    dataset, book, config = fake_dataset()
    attributes = AttributeConfig(static=("plan",), allow_leaky=("crm_status",))
    warnings = guard_training(dataset, config, book=book, attributes=attributes)
    assert any("allow_leaky" in w and "crm_status" in w for w in warnings)
    assert dataset.split.notes == warnings


def test_undeclared_attributes_are_named_in_a_warning():
    dataset, book, config = fake_dataset()
    dataset.feature_names = ["noise", "plan"]
    warnings = guard_training(dataset, config, book=book, attributes=DECLARED)
    assert len(warnings) == 1 and "crm_status" in warnings[0] and "not declared" in warnings[0]
    attributes = AttributeConfig(static=("plan", "crm_status"))
    assert guard_training(dataset, config, book=book, attributes=attributes) == []


def test_a_value_held_only_by_accounts_with_the_event_is_a_leak():
    dataset, book, config = fake_dataset(seed=3)
    # 'pending_cancel' on 15 churners only, 'active' on everyone else (churners included):
    # the attribute's AUC is modest, but one value changes exactly at the label
    accounts = book.accounts
    churners = dataset.frame.groupby("account_id")["label"].max()
    marked = churners[churners > 0].index[:15]
    accounts["crm_flag"] = np.where(accounts["account_id"].isin(marked), "pending_cancel", "active")
    dataset.frame = dataset.frame.merge(accounts[["account_id", "crm_flag"]], on="account_id")
    dataset.feature_names, dataset.categorical = ["noise", "plan", "crm_flag"], ["plan", "crm_flag"]
    findings, _ = find_leaks(dataset, config, book=book, attributes=DECLARED)
    assert [f.column for f in findings] == ["crm_flag"]
    assert findings[0].exclusive_values == [("pending_cancel", 15)]
    assert findings[0].account_auc < 0.95


def test_a_numeric_feature_near_the_label_is_a_leak_unless_the_oracle_does_as_well(monkeypatch):
    dataset, book, config = fake_dataset()
    frame = dataset.frame
    frame["days_until_cancel"] = np.where(frame["label"] > 0, 10.0, 200.0) + frame["noise"]
    dataset.feature_names = ["noise", "plan", "days_until_cancel"]
    findings, _ = find_leaks(dataset, config, book=book, attributes=DECLARED)
    assert [f.column for f in findings] == ["days_until_cancel"] and findings[0].row_auc > 0.99

    def perfect_oracle(truth, train, config, rows):
        return 1.0, len(train), train
    monkeypatch.setattr(leakage, "_oracle_auc", perfect_oracle)
    findings, warnings = find_leaks(dataset, config, book=book, truth="truth", attributes=DECLARED)
    assert findings == [] and any("oracle does as well" in w for w in warnings)

    def weak_oracle(truth, train, config, rows):
        return 0.8, len(train), train
    monkeypatch.setattr(leakage, "_oracle_auc", weak_oracle)
    findings, _ = find_leaks(dataset, config, book=book, truth="truth", attributes=DECLARED)
    assert findings[0].oracle_auc == 0.8 and "oracle 0.800" in findings[0].evidence(0.95)


def test_the_threshold_is_configurable(tmp_path):
    path = tmp_path / "attributes.yaml"
    path.write_text("static: [plan]\nallow_leaky: []\nguard:\n  max_single_auc: 0.999\n"
                    "  min_accounts_per_value: 1000\n")
    attributes = load_attribute_config(path)
    assert attributes.max_single_auc == 0.999 and attributes.static == ("plan",)
    dataset, book, config = fake_dataset(n_accounts=200, churn_rate=0.3)
    book.accounts.loc[book.accounts.index[:3], "crm_status"] = "active"  # not quite perfect
    dataset.frame = dataset.frame.drop(columns="crm_status").merge(
        book.accounts[["account_id", "crm_status"]], on="account_id")
    assert find_leaks(dataset, config, book=book, attributes=attributes)[0] == []
    assert [f.column for f in find_leaks(dataset, config, book=book, attributes=DECLARED)[0]] \
        == ["crm_status"]


@pytest.mark.parametrize("text,problem", [
    ("guard:\n  max_single_auc: 2\n", "max_single_auc"),
    ("static: plan\n", "'static' must be a list"),
    ("statics: [plan]\n", "unknown keys"),
    ("reasons: [employees]\n", "'reasons' must map"),
    ("reasons:\n  employees: 3\n", "'employees': a template is a string"),
    ("reasons:\n  employees: '{count} employees'\n", "'employees': template .* does not format"),
])
def test_bad_attribute_configs_are_config_errors(tmp_path, text, problem):
    path = tmp_path / "attributes.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_attribute_config(path)


def test_a_declared_reason_template_words_the_attribute(tmp_path):
    from churnml.features.catalog import attribute_reasons, render_reason, static_attribute_spec

    path = tmp_path / "attributes.yaml"
    path.write_text("static: [seats_at_signup, tier]\nreasons:\n"
                    "  seats_at_signup: 'signed up with {value:,.0f} [seat|seats]'\n"
                    "  tier: {gold: 'a gold-tier customer', other: 'tier {value}'}\n")
    load_attribute_config(path)  # accepted
    reasons = attribute_reasons(path)
    seats = static_attribute_spec("seats_at_signup", "numeric", reason=reasons["seats_at_signup"])
    tier = static_attribute_spec("tier", reason=reasons["tier"])
    assert render_reason(seats, 1.0) == "signed up with 1 seat"
    assert render_reason(seats, 1200.0) == "signed up with 1,200 seats"
    assert render_reason(tier, "gold") == "a gold-tier customer"
    assert render_reason(tier, "silver") == "tier silver"
    assert render_reason(seats, None) == "seats at signup is not recorded"


def test_the_project_config_words_the_simulator_numbers_with_their_unit():
    from churnml.features.catalog import render_reason, static_attribute_spec

    growth = static_attribute_spec("headcount_growth", "numeric")  # features/attributes.yaml
    assert render_reason(growth, 0.52) == "the company's headcount growth is +52% a year"
    assert render_reason(growth, -0.05) == "the company's headcount growth is -5% a year"
    assert render_reason(static_attribute_spec("region"), "emea") == "region is emea"  # not declared
    assert render_reason(static_attribute_spec("seats_bought", "numeric"), 12.0) == "seats bought is 12"


def test_the_project_config_declares_the_simulator_attributes():
    from churnml.data.simulator import simulate

    attributes = load_attribute_config()
    accounts = simulate(n_accounts=30, months=3, seed=1).tables["accounts"]
    extra = [c for c in accounts.columns if c not in leakage.KEY_COLUMNS]
    assert [c for c in extra if not attributes.is_declared(c)] == []
    assert attributes.is_declared("signup_channel")


# --------------------------------------------------------------------------- end to end (CLI)
@pytest.fixture(scope="module")
def books(tmp_path_factory):
    """The issue's book (1,500 accounts, 18 months, seed 1) with and without a CRM status
    derived from the future churn, and a fast model config."""
    import shutil

    from churnml.data.simulator import simulate, write_book

    root = tmp_path_factory.mktemp("leak")
    sim = simulate(n_accounts=1500, months=18, seed=1)
    write_book(sim, root / "clean")
    shutil.rmtree(root / "clean" / "_truth")  # no oracle baseline: the clean run stays fast
    accounts = sim.tables["accounts"].copy()
    mrr = sim.tables["mrr_changes"].sort_values(["account_id", "effective_date"], kind="stable")
    churned = mrr.groupby("account_id")["mrr"].last().eq(0)
    accounts["crm_status"] = np.where(accounts["account_id"].map(churned).fillna(False),
                                      "cancelled", "active")
    sim.tables["accounts"] = accounts
    write_book(sim, root / "leaky")
    text = (ROOT / "models" / "churn.yaml").read_text()
    for old, new in (("num_boost_round: 300", "num_boost_round: 30"),
                     ("early_stopping_rounds: 30", "early_stopping_rounds: 10"),
                     ("backtest_folds: 3 ", "backtest_folds: 1 "),
                     ("bootstrap_resamples: 200", "bootstrap_resamples: 10")):
        assert old in text
        text = text.replace(old, new)
    (root / "fast.yaml").write_text(text)
    return root


def _train(books, name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHURNML_HOME": str(books / f"home-{name}"),
           "BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "churnml.cli", "train", "--data", str(books / name), "--target",
         "churn", "--config", str(books / "fast.yaml"), "--no-plots"],
        capture_output=True, text=True, env=env, timeout=600)


def test_train_refuses_a_crm_status_derived_from_the_future_churn(books):
    run = _train(books, "leaky")
    assert run.returncode == 2, run.stdout + run.stderr
    err = " ".join(run.stderr.split())
    assert "'crm_status'" in err and "gives the label away" in err
    assert "not declared static" in err
    assert "oracle" in err and "AUC" in err and "Traceback" not in err


def test_the_same_book_without_it_trains(books):
    run = _train(books, "clean")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "registered churnml-churn version 1" in " ".join(run.stdout.split())
