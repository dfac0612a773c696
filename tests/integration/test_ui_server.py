"""``churnml ui`` as a real process: started on a free port of 127.0.0.1 over partitions written
by the weekly job, every page fetched over HTTP, then stopped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from support.ui_server import get, ui_server as running_ui  # noqa: E402


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """``(base URL, book)`` of a ``churnml ui`` process over two weeks scored by the weekly
    job; stopped after the module's tests."""
    from jobs_fakes import FEATURE_DIMENSIONS, models, simple_features, tiny_book

    from churnml.health.score import HealthScore
    from churnml.jobs.weekly import score_book

    out = tmp_path_factory.mktemp("ui_server") / "scores"
    book = tiny_book()
    for as_of in ("2026-02-23", "2026-03-02"):
        score_book(book, as_of, out, models(), HealthScore(), build_features=simple_features,
                   feature_dimensions=FEATURE_DIMENSIONS)
    with running_ui(out) as base:
        yield base, book


def test_churnml_ui_serves_every_page(ui_server):
    base, book = ui_server
    account = sorted(book["accounts"]["account_id"])[0]
    for path, text in [("/", "Health tiers this week"), ("/accounts", "accounts"),
                       (f"/accounts/{account}", "Next best action"),
                       ("/queue", "This week's queue"), ("/trust", "Models and versions"),
                       ("/static/uPlot.iife.min.js", "uPlot"),
                       ("/static/htmx.min.js", "htmx")]:
        status, body, headers = get(base + path)
        assert status == 200, (path, body[:500])
        assert text in body, path
        if not path.startswith("/static/"):
            assert "default-src 'self'" in headers.get("content-security-policy", "")
    status, body, headers = get(base + "/accounts.csv?sort=health_score")
    assert status == 200 and body.startswith("account_id,")
    status, body, _ = get(base + "/accounts/NOPE")
    assert status == 404
