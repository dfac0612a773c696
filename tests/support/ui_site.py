"""What the tests of ``churnml ui`` share: the scored site they serve, and a headless Chromium
whose every request and error is watched.

- :func:`scored_site`: three weeks (or ``weeks``) scored by the real weekly job
  (``score_book`` on the small book of ``tests/unit/jobs_fakes.py``) into ``root/scores``, and
  the book with account names in ``root/book`` (accounts and MRR changes: what the pages read).
- :func:`headless_chromium`: Debian's ``chromium`` through Playwright (``executable_path``, no
  download; ``tests/support/chromium.py`` installs or names the package).
- :class:`Watched`: a browser context in which every request is routed (the local server's
  pass, anything else is aborted and recorded) and console and page errors are recorded.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parents[1]
for _folder in (_TESTS, _TESTS / "unit"):  # support.* and jobs_fakes
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from support.chromium import chromium_executable  # noqa: E402

WEEKS = ["2026-02-16", "2026-02-23", "2026-03-02"]
#: Chromium's flags for a container (no sandbox, no GPU, no /dev/shm).
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def scored_site(root: Path, weeks: Sequence[str] = WEEKS, *,
                names: Mapping[int, str] | None = None, **score_args: Any) -> tuple[Path, Path, Any]:
    """``(scores folder, book folder, book)`` under ``root``: ``weeks`` scored by the weekly
    job (``score_args`` passed on, e.g. ``chunk_size``), and the book's accounts (named
    ``"Company <id>"``, the rows of ``names`` renamed) and MRR changes as parquet files."""
    from jobs_fakes import FEATURE_DIMENSIONS, models, simple_features, tiny_book

    from churnml.health.score import HealthScore
    from churnml.jobs.weekly import score_book

    out, data = root / "scores", root / "book"
    book = tiny_book()
    for as_of in weeks:
        score_book(book, as_of, out, models(), HealthScore(), build_features=simple_features,
                   feature_dimensions=FEATURE_DIMENSIONS, **score_args)
    data.mkdir()
    accounts = book["accounts"].copy()
    accounts["name"] = "Company " + accounts["account_id"]
    for row, name in (names or {}).items():
        accounts.loc[row, "name"] = name
    accounts.to_parquet(data / "accounts.parquet")
    book["mrr_changes"].to_parquet(data / "mrr_changes.parquet")
    return out, data, book


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """A Playwright ``Browser``: Debian's chromium, headless, closed at the end."""
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A browser context whose every request is routed: the local server's (``base``) pass,
    anything else is aborted and recorded in ``outside``; console errors and page errors are
    recorded in ``errors``. ``context_args`` go to ``browser.new_context``."""

    def __init__(self, browser, base: str, timeout_ms: int = 20_000, **context_args) -> None:
        self.base = base
        self.local: list[str] = []
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(**context_args)
        self.context.set_default_timeout(timeout_ms)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _route(self, route) -> None:
        url = route.request.url
        if url == self.base or url.startswith(self.base + "/"):
            self.local.append(url)
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base + path, wait_until="networkidle")
        assert response is not None and response.status == 200, (path, response and
                                                                  response.status)

    def check(self) -> None:
        assert self.outside == [], f"requests outside the local server: {self.outside}"
        assert self.errors == [], self.errors

    def close(self) -> None:
        self.context.close()

    def __enter__(self) -> Watched:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
