"""``churnml ui`` as a real process: started on a free port of 127.0.0.1 over partitions written
by the weekly job, every page fetched over HTTP, then stopped."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


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
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p))
    env.pop("CHURNML_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "churnml.cli", "ui", "--scores", str(out),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, _ = get(base + "/static/ui.css")
                if status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "churnml ui did not start within 60 s"
            time.sleep(0.3)
        yield base, book
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_headless_chromium_draws_the_charts(ui_server, tmp_path):
    """The real browser runs the pages' scripts: the account's two charts and the portfolio's
    trend are drawn by the vendored uPlot (the DOM after the scripts ran has uPlot's canvas)."""
    base, book = ui_server
    account = sorted(book["accounts"]["account_id"])[0]
    for path, charts in [(f"/accounts/{account}", ("health-chart", "prob-chart")),
                         ("/", ("trend-chart",))]:
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
             "--dump-dom", base + path],
            capture_output=True, text=True, timeout=120).stdout
        for chart in charts:
            match = re.search(rf'<div id="{chart}" class="chart"[^>]*data-drawn="1"[^>]*>', dom)
            assert match, (path, chart, dom[:2000])
        assert "<canvas" in dom and 'class="uplot' in dom, path
