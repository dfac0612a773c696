"""The optional cs_actions table: validated like the others, with rejects; never a feature."""

from __future__ import annotations

import pandas as pd
import pytest

from churnml.data.tables import ACTION_TABLES, TABLES, playbook_names
from churnml.data.validation import (
    FUTURE_DATED,
    MISSING,
    UNKNOWN_ACCOUNT,
    UNKNOWN_PLAYBOOK,
    validate_frames,
)


def _actions(accounts: list[str], end: pd.Timestamp) -> pd.DataFrame:
    day = (end - pd.Timedelta(days=10)).strftime("%Y-%m-%d")
    return pd.DataFrame([
        {"account_id": accounts[0], "date": day, "playbook": "re_engage", "owner": "CSM",
         "channel": "email", "outcome_note": "booked a check-in"},
        {"account_id": accounts[1], "date": day, "playbook": "save_call", "owner": "CS manager",
         "channel": "call", "outcome_note": None},
        {"account_id": "NO-SUCH-ACCOUNT", "date": day, "playbook": "re_engage", "owner": "CSM",
         "channel": "call", "outcome_note": ""},
        {"account_id": accounts[2], "date": "2099-01-01", "playbook": "re_engage",
         "owner": "CSM", "channel": "call", "outcome_note": ""},
        {"account_id": accounts[3], "date": day, "playbook": "free_lunch", "owner": "CSM",
         "channel": "call", "outcome_note": ""},
        {"account_id": accounts[4], "date": None, "playbook": "low_usage", "owner": "CSM",
         "channel": "call", "outcome_note": ""},
    ])


@pytest.fixture(scope="module")
def with_actions(sim_tables):
    frames = dict(sim_tables.tables)
    accounts = frames["accounts"]["account_id"].astype(str).tolist()
    end = pd.to_datetime(frames["mrr_changes"]["effective_date"]).max()
    frames["cs_actions"] = _actions(accounts, end)
    return frames


def test_cs_actions_is_an_optional_table_of_the_contract():
    spec = TABLES["cs_actions"]
    assert not spec.required and spec.time_column == "date"
    assert spec.required_columns == ["account_id", "date", "playbook"]
    assert [c.name for c in spec.columns] == ["account_id", "date", "playbook", "owner",
                                              "channel", "outcome_note"]
    assert ACTION_TABLES == ("cs_actions",)
    assert {"save_call", "re_engage", "keep_warm"} <= playbook_names()


def test_bad_cs_actions_rows_go_to_rejects_with_the_reason(with_actions):
    book, report = validate_frames(with_actions)
    counts = report.counts["cs_actions"]
    assert counts == {"read": 6, "accepted": 2, "rejected": 4}
    rejects = report.rejects[report.rejects["table"] == "cs_actions"].set_index("row")
    assert rejects.loc[2, "reason"] == UNKNOWN_ACCOUNT
    assert rejects.loc[3, "reason"] == FUTURE_DATED and rejects.loc[3, "column"] == "date"
    assert rejects.loc[4, "reason"] == UNKNOWN_PLAYBOOK
    assert rejects.loc[4, ["column", "value"]].tolist() == ["playbook", "free_lunch"]
    assert rejects.loc[5, "reason"] == MISSING
    kept = book["cs_actions"]
    assert sorted(kept["playbook"]) == ["re_engage", "save_call"]
    assert str(kept["date"].dtype) == "datetime64[ns]"


def test_known_playbooks_can_be_given(with_actions):
    _, report = validate_frames(with_actions, known_playbooks={"re_engage", "free_lunch"})
    reasons = report.rejects[report.rejects["table"] == "cs_actions"]["reason"].tolist()
    assert reasons.count(UNKNOWN_PLAYBOOK) == 1  # save_call is not among the given ones


def test_cs_actions_never_leak_into_features(sim_tables, with_actions):
    from churnml.features.build import build_features

    without, _ = validate_frames(dict(sim_tables.tables))
    with_, _ = validate_frames(with_actions)
    assert with_.has("cs_actions") and not without.has("cs_actions")
    as_of = [without.data_end]
    pd.testing.assert_frame_equal(build_features(with_, as_of), build_features(without, as_of))


def test_a_folder_with_cs_actions_loads(sim_dir, tmp_path):
    import shutil

    from churnml.data.io import load_book

    book_dir = tmp_path / "book"
    shutil.copytree(sim_dir, book_dir)
    accounts = pd.read_parquet(book_dir / "accounts.parquet")["account_id"].astype(str).tolist()
    end = pd.to_datetime(pd.read_parquet(book_dir / "mrr_changes.parquet")["effective_date"]).max()
    _actions(accounts, end).to_csv(book_dir / "cs_actions.csv", index=False)
    book, report = load_book(book_dir)
    assert report.counts["cs_actions"]["read"] == 6
    assert len(book["cs_actions"]) == 2 and report.total_rejected >= 4
