"""``churnml ui`` in a real browser: headless Debian ``chromium`` driven by Playwright
(``executable_path``: no browser download; ``tests/support/chromium.py`` installs the package
when missing, or fails naming it). The server is a real ``churnml ui`` process over three weeks
scored by the weekly job and a book with account names.

Each test checks what the pages show against a plain pandas computation from the parquet
files, and fails on any script error, any Content-Security-Policy violation, and any request to
anything but the local server (every request of the browser goes through a route that lets
only ``http://127.0.0.1:PORT/`` through).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from support.ui_server import ui_server  # noqa: E402
from support.ui_site import WEEKS, Watched, headless_chromium, scored_site  # noqa: E402

TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``(base URL, latest week's scores.parquet as a frame)``."""
    from churnml.jobs.partitions import list_partitions

    out, data, _book = scored_site(tmp_path_factory.mktemp("ui_browser"), WEEKS)
    latest = pd.read_parquet(list_partitions(out)[-1][1] / "scores.parquet")
    with ui_server(out, data) as base:
        yield base, latest


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as b:
        yield b


@pytest.fixture
def watched(browser, site):
    w = Watched(browser, site[0], TIMEOUT_MS, accept_downloads=True,
                viewport={"width": 1280, "height": 900})
    try:
        yield w
    finally:
        w.close()


def listed(page) -> list[str]:
    return page.locator("#accounts a.acct").all_inner_texts()


def ordered(frame: pd.DataFrame, column: str, descending: bool) -> list[str]:
    """``frame``'s account ids sorted as the accounts page sorts: by ``column`` (NaN last),
    ties by account id."""
    f = frame.sort_values("account_id", kind="stable")
    f = f.sort_values(column, ascending=not descending, kind="stable", na_position="last")
    return f["account_id"].tolist()


def test_filter_sort_and_export_the_accounts(watched, site):
    from churnml.outcomes import get_outcome

    _base, scores = site
    page = watched.page
    watched.goto("/accounts")
    at_risk = get_outcome("churn").value_column
    assert listed(page) == ordered(scores, at_risk, True)[:50]  # default: MRR at risk

    # filter on the owner with the fewest accounts: htmx swaps the table and pushes the URL
    owners = scores["next_best_action"].map(lambda a: a["owner"])
    owner = owners.value_counts().index[-1]
    page.select_option("select[name=action_owner]", owner)
    page.wait_for_url("**action_owner=**")
    page.wait_for_load_state("networkidle")
    mine = scores[owners == owner]
    assert 0 < len(mine) < len(scores)
    assert listed(page) == ordered(mine, at_risk, True)
    assert page.locator("#results .count strong").inner_text() == str(len(mine))

    # sort by health, lowest first (the sort's own default order)
    page.select_option("select[name=sort]", "health_score")
    page.wait_for_url("**sort=health_score**")
    page.wait_for_load_state("networkidle")
    assert listed(page) == ordered(mine, "health_score", False)
    page.select_option("select[name=order]", "desc")
    page.wait_for_url("**order=desc**")
    page.wait_for_load_state("networkidle")
    assert listed(page) == ordered(mine, "health_score", True)

    # text search on the name (from the book's accounts table)
    one = mine["account_id"].iloc[0]
    page.fill("input[name=q]", f"company {one.lower()}")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**q=company**")
    page.wait_for_load_state("networkidle")
    assert listed(page) == [one]

    # the CSV export is the current view
    page.fill("input[name=q]", "")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(lambda url: "q=company" not in url)
    page.wait_for_load_state("networkidle")
    with page.expect_download() as download:
        page.click("text=Export this view as CSV")
    csv = pd.read_csv(download.value.path(), dtype={"account_id": str})
    assert csv["account_id"].tolist() == ordered(mine, "health_score", True)
    assert set(csv["action_owner"]) == {owner}
    watched.check()


def test_open_an_account_and_see_its_charts_drawn(watched, site):
    _base, scores = site
    page = watched.page
    watched.goto("/accounts?sort=health_score")
    first = listed(page)[0]
    page.click(f"#accounts a.acct >> text={first}")
    page.wait_for_url(f"**/accounts/{first}**")
    page.wait_for_load_state("networkidle")
    assert first in page.locator("h1#account-title").inner_text()
    row = scores.set_index("account_id").loc[first]
    assert f"health {row['health_score']:,.0f}" in page.locator(".facts").inner_text()
    for chart in ("health-chart", "prob-chart"):
        canvas = page.locator(f"#{chart} canvas")
        canvas.wait_for()
        assert page.get_attribute(f"#{chart}", "data-drawn") == "1"
        box = canvas.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100, (chart, box)
        # uPlot drew on the canvas: some pixels are not blank
        painted = page.evaluate(
            """id => { const c = document.querySelector('#' + id + ' canvas');
                       const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                       let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                       return n; }""", chart)
        assert painted > 500, (chart, painted)
    # one point per scored week in the legend's series: three weeks on the x axis
    weeks = page.evaluate("JSON.parse(document.getElementById('account-data').textContent).x")
    assert len(weeks) == len(WEEKS)
    assert "health score" in page.locator("#health-chart .u-legend").inner_text()
    watched.check()


def test_work_the_queue_and_export_it(watched, site):
    _base, scores = site
    page = watched.page
    watched.goto("/")
    page.click("nav >> text=This week's queue")
    page.wait_for_url("**/queue**")
    page.wait_for_load_state("networkidle")
    queue = scores[scores["queue_status"].notna()].copy()
    queue["owner"] = queue["next_best_action"].map(lambda a: a["owner"])
    assert len(queue) > 0
    expected = queue.sort_values(["owner", "queue_rank", "account_id"])
    with page.expect_download() as download:
        page.click("text=Export as CSV")
    assert download.value.suggested_filename == f"queue_{WEEKS[-1]}.csv"
    csv = pd.read_csv(download.value.path(), dtype={"account_id": str})
    assert csv["account_id"].tolist() == expected["account_id"].tolist()
    assert csv["queue_rank"].tolist() == expected["queue_rank"].tolist()
    assert np.array_equal(csv["holdout"].astype(bool), expected["holdout"].astype(bool))

    # one owner: the select submits by itself; the page and its export show only theirs
    owner = expected["owner"].value_counts().index[-1]
    page.select_option("select[name=owner]", owner)
    page.wait_for_url("**owner=**")
    page.wait_for_load_state("networkidle")
    theirs = expected[expected["owner"] == owner]
    shown = page.locator("section.owner table.queue a").all_inner_texts()
    assert set(shown) <= set(theirs["account_id"]) and len(shown) > 0
    with page.expect_download() as download:
        page.click("text=Export as CSV")
    csv = pd.read_csv(download.value.path(), dtype={"account_id": str})
    assert csv["account_id"].tolist() == theirs["account_id"].tolist()
    watched.check()


def test_no_page_requests_anything_outside_the_local_server(browser, site):
    """Every page, with the Content-Security-Policy bypassed (so that a reference to another
    host would be requested rather than blocked by the browser): no request leaves the local
    server. The route is shown to catch an outside request first."""
    base, scores = site
    w = Watched(browser, base, TIMEOUT_MS, accept_downloads=True, bypass_csp=True)
    try:
        w.goto("/")
        w.page.evaluate("fetch('http://example.invalid/x').catch(() => null)")
        w.page.wait_for_timeout(200)
        assert w.outside == ["http://example.invalid/x"], w.outside
        w.outside.clear()
        w.errors.clear()
        account = scores["account_id"].iloc[0]
        for path in ("/", "/accounts", "/accounts?sort=health_score&page=1",
                     f"/accounts/{account}", "/queue", "/trust", "/login"):
            w.goto(path)
        assert any(u.endswith("/static/uPlot.iife.min.js") for u in w.local)
        assert any(u.endswith("/static/htmx.min.js") for u in w.local)
        w.check()
    finally:
        w.close()


def test_screenshots_of_every_page_for_the_docs(browser, site, tmp_path):
    """``tests/support/ui_screenshots.py`` (which made docs/ui/*.png from the demo book)
    photographs every page: PNG files of the set width, none blank."""
    from support.ui_screenshots import WIDTH, take

    shots = take(browser, site[0], tmp_path, max_height=1000)
    assert sorted(shots) == ["account", "accounts", "portfolio", "queue", "trust"]
    for name, path in shots.items():
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width == WIDTH and 300 < height <= 1000, (name, width, height)
        assert len(data) > 10_000, (name, len(data))  # a blank page compresses to far less
