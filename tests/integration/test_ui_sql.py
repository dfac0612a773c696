"""``churnml ui --scores postgresql://...``: the pages from the ``churnml_scores`` table of a real
PostgreSQL server (the session's throw-away cluster, ``tests/support/postgres.py``).

Three weeks scored by the real weekly job (the small book of ``jobs_fakes``) are written into
the table by ``churnml score``'s own publisher (``churnml.jobs.sql_scores.publish_partition``:
reasons, alerts and the next best action as ``jsonb``). Then:

- every page served from the table renders as from the folder (the footer aside), the list
  frames are equal and one account's full row, its ``jsonb`` decoded, equals the parquet row;
- ``churnml ui`` as a real process over a URL with a password: every page answers, and the
  password is in no page and no line the process printed;
- in headless Chromium: the accounts of one owner, then an account with its charts drawn, and
  nothing requested outside the local server;
- a database without the table: a clear 404 page.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from support.ui_server import get, ui_server  # noqa: E402
from support.ui_site import WEEKS, Watched, headless_chromium, scored_site  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory, postgres):
    """``(scores folder, book folder, PostgreSQL URL with its password, home)``."""
    import pyarrow.parquet as pq

    from churnml.data.sql import parse_source
    from churnml.jobs.partitions import list_partitions
    from churnml.jobs.sql_scores import publish_partition
    from churnml.ui.store import dimension_columns

    root = tmp_path_factory.mktemp("ui_sql")
    out, data, _book = scored_site(root, WEEKS)
    home = root / "home"
    home.mkdir()
    url = postgres.create_database("ui_scores")
    target = parse_source(url)
    for as_of, part in list_partitions(out):
        names = pq.read_schema(part / "scores.parquet").names
        publish_partition(target, part / "scores.parquet", as_of,
                          [c[len("health_"):] for c in dimension_columns(names)])
    return out, data, url, home


def NO_REGISTRY():
    from churnml.ui.evaluation import Evaluations

    return Evaluations(message="No model registry in this test.")


def main_of(html: str) -> str:
    return re.sub(r"<footer>.*?</footer>", "", html, flags=re.S)


def latest(out: Path) -> pd.DataFrame:
    from churnml.jobs.partitions import list_partitions

    return pd.read_parquet(list_partitions(out)[-1][1] / "scores.parquet")


def test_postgres_table_renders_the_same_pages_as_the_folder(site, postgres):
    from starlette.testclient import TestClient

    from churnml.data.sql import parse_source
    from churnml.ui.app import create_app
    from churnml.ui.store import ScoreStore

    out, data, url, _home = site
    target = parse_source(url)
    folder = TestClient(create_app(out, data, api_key="", registry=NO_REGISTRY))
    table = TestClient(create_app(target, data, api_key="", registry=NO_REGISTRY))
    frame = latest(out)
    ids = sorted(frame["account_id"])
    owner = frame["next_best_action"].dropna().iloc[0]["owner"]
    for page in ["/", "/accounts", "/accounts?sort=health_change", "/accounts?alert=any",
                 f"/accounts?as_of={WEEKS[0]}&sort=health_score", "/accounts.csv",
                 f"/accounts/{ids[0]}", f"/accounts/{ids[7]}?as_of={WEEKS[1]}", "/queue",
                 f"/queue?owner={owner}", "/queue.csv", "/trust", "/accounts/NOPE",
                 "/accounts/x'%20OR%20'1'='1", "/accounts/a%00b"]:
        a, b = folder.get(page), table.get(page)
        assert a.status_code == b.status_code, page
        assert main_of(a.text) == main_of(b.text), page
    # the store's frames and rows: jsonb decoded into the parquet file's lists and dicts
    fs, ts = ScoreStore(out), ScoreStore(target)
    for a, b in zip(fs.weeks(), ts.weeks(), strict=True):
        pd.testing.assert_frame_equal(fs.frame(a), ts.frame(b))
    row = ts.account_row(ts.weeks()[-1], ids[0])
    assert row == fs.account_row(fs.weeks()[-1], ids[0])
    assert isinstance(row["next_best_action"], dict) and isinstance(row["alerts"], list)

    # a database without the table: a clear 404 page naming it, the password hidden
    empty = TestClient(create_app(parse_source(postgres.create_database("ui_empty")), None,
                                  api_key="", registry=NO_REGISTRY))
    r = empty.get("/accounts")
    assert r.status_code == 404 and "no table churnml_scores" in r.text
    assert postgres.password not in r.text


def test_churnml_ui_process_over_postgres_never_shows_the_password(site, postgres):
    out, _data, url, home = site
    assert postgres.password in url
    printed: list[str] = []
    account = sorted(latest(out)["account_id"])[0]
    with ui_server(url, home=home, output=printed) as base:
        for page, text in [("/", "Health tiers this week"), ("/accounts", "accounts"),
                           (f"/accounts/{account}", "Next best action"),
                           ("/queue", "This week's queue"), ("/trust", "Models and versions"),
                           ("/accounts/NOPE", "not scored"), ("/?as_of=1999-01-01", "not scored")]:
            status, body, _headers = get(base + page)
            assert status < 500, (page, status, body[:300])
            assert text in body, page
            assert postgres.password not in body, page
            assert ":***@" in body, page  # the footer names the database, password hidden
    assert printed and any(":***@" in line for line in printed), printed
    assert not any(postgres.password in line for line in printed)


def test_browser_filters_and_opens_an_account_from_postgres(site):
    out, _data, url, home = site
    scores = latest(out)
    owners = scores["next_best_action"].map(lambda a: a["owner"])
    owner = owners.value_counts().index[-1]
    with ui_server(url, home=home) as base, headless_chromium() as browser, \
            Watched(browser, base) as w:
        page = w.page
        page.goto(base + "/accounts", wait_until="networkidle")
        page.select_option("select[name=action_owner]", owner)
        page.wait_for_url("**action_owner=**")
        page.wait_for_load_state("networkidle")
        shown = page.locator("#accounts a.acct").all_inner_texts()
        assert sorted(shown) == sorted(scores.loc[owners == owner, "account_id"])
        page.click(f"#accounts a.acct >> text={shown[0]}")
        page.wait_for_url(f"**/accounts/{shown[0]}**")
        page.wait_for_load_state("networkidle")
        page.locator("#health-chart canvas").wait_for()
        assert page.get_attribute("#health-chart", "data-drawn") == "1"
        weeks = page.evaluate(
            "JSON.parse(document.getElementById('account-data').textContent).x")
        assert len(weeks) == len(WEEKS)
        w.check()
