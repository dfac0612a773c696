"""The weekly report: self-contained, sections present, queues in the promised order."""

from __future__ import annotations

import html
import re

import pandas as pd

from churnml.health.score import HealthScore
from churnml.jobs.report import build_report
from churnml.jobs.weekly import score_book, write_report
from jobs_fakes import FEATURE_DIMENSIONS, models, simple_features, tiny_book


def _scored(tmp_path, as_of):
    return score_book(tiny_book(), as_of, tmp_path, models(), HealthScore(),
                      build_features=simple_features, feature_dimensions=FEATURE_DIMENSIONS)


def test_report_is_self_contained_and_complete(tmp_path):
    _scored(tmp_path, "2026-02-23")
    result = _scored(tmp_path, "2026-03-02")
    path, summary = write_report(result, tiny_book(), tmp_path)
    page = path.read_text()
    assert path == tmp_path / "as_of=2026-03-02" / "report.html"
    for heading in ("Retention and expansion", "Portfolio health", "Alert queue", "Top risks",
                    "Ready for an expansion conversation"):
        assert heading in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4
    assert not re.search(r'(src|href)="(http|//)', page) and "<script" not in page
    assert "Compared with last week" in page
    scores = pd.read_parquet(result.scores_path)
    assert summary["accounts_scored"] == len(scores)
    assert summary["mrr_at_risk"] == scores["mrr_at_risk"].sum()


def test_alert_queue_sorted_by_mrr_at_risk(tmp_path):
    result = _scored(tmp_path, "2026-03-02")
    page, _ = build_report(result.scores_path, tiny_book().mrr_changes)
    scores = pd.read_parquet(result.scores_path)
    queue = page.split("<h2>Alert queue</h2>")[1].split("<h2>")[0]
    shown = re.findall(r"<tr><td>(C\d{4})</td>", queue)
    with_alerts = scores[scores["alerts"].map(len) > 0]
    expected = with_alerts.sort_values(["mrr_at_risk", "account_id"],
                                       ascending=[False, True])["account_id"].head(25)
    assert shown == expected.tolist() and shown


def test_report_is_reproducible(tmp_path):
    result = _scored(tmp_path, "2026-03-02")
    a, _ = build_report(result.scores_path, tiny_book().mrr_changes)
    b, _ = build_report(result.scores_path, tiny_book().mrr_changes)
    assert a == b


def test_report_shows_this_weeks_queue_per_owner(tmp_path):
    from churnml.scoring.actions import load_playbooks

    result = _scored(tmp_path, "2026-03-02")
    page, summary = build_report(result.scores_path, tiny_book().mrr_changes)
    scores = pd.read_parquet(result.scores_path)
    section = page.split("<h2>This week's queue</h2>")[1].split("<h2>")[0]
    owners = pd.DataFrame.from_records(scores["next_best_action"].tolist())["owner"]
    held = scores["holdout"].fillna(False).astype(bool)
    worked = (scores["queue_status"] == "queued") & ~held
    capacity = load_playbooks().capacity
    for owner, count in worked.groupby(owners).sum().items():
        if count:
            assert f"<td>{owner}</td><td class='n'>{count:,} / {capacity[owner]:,}</td>" \
                in section
            assert f"<h3>{owner}: top " in section
    assert "expected to" in section
    # each shown row says why in words (the action's reason) before the queue's arithmetic
    reasons = pd.DataFrame.from_records(scores["next_best_action"].tolist())["reason"]
    shown = [html.unescape(m) for m in re.findall(
        r"<td>([^<]+)<br><span class='note'>[^<]*</span></td></tr>", section)]
    assert shown and set(shown) <= set(reasons[worked])
    assert summary["actions_queued"] == worked.sum()
    assert summary["actions_held_out"] == held.sum()


def test_report_shows_each_models_training_span(tmp_path):
    from jobs_fakes import models as fake_models

    from churnml.jobs.weekly import train_ends

    result = _scored(tmp_path, "2026-03-02")
    spans = train_ends(fake_models())  # models without a recorded train_end: None
    assert set(spans) == set(fake_models()) and not any(spans.values())
    page, _ = build_report(result.scores_path, tiny_book().mrr_changes,
                           train_ends={"churn": "2025-11-24"})
    header = page.split('<div class="sub">')[1].split("</div>")[0]
    assert "(trained on as_of dates up to 2025-11-24)" in header
    assert header.count("trained on as_of dates") == 1  # unknown spans say nothing
