"""Screenshots of ``churnml ui``'s pages for ``docs/ui.md`` (and a browser test that they can
be taken): a real ``churnml ui`` process over a scores folder, headless Debian ``chromium``
through Playwright, every request outside the local server refused.

    PYTHONPATH=src python tests/support/ui_screenshots.py --scores demo/scores --data demo/book \\
        --out docs/ui

writes ``portfolio.png``, ``queue.png``, ``accounts.png``, ``account.png`` and ``trust.png``
(PNG, 1280 px wide, each page cut at ``--max-height`` pixels and reduced to ``--colors``
colours with Pillow to stay small).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from support.ui_server import ui_server  # noqa: E402
from support.ui_site import Watched, headless_chromium  # noqa: E402

WIDTH = 1280


def first_queued_account(page) -> str | None:
    """The account at the top of the queue page (the first owner's first row)."""
    link = page.locator("section.owner table.queue a").first
    return link.inner_text() if link.count() else None


def take(browser, base: str, out: Path, max_height: int = 1400) -> dict[str, Path]:
    """``name -> PNG`` of every page, taken in ``browser`` from the server at ``base``; raises
    when a page requests anything outside it or logs an error."""
    out.mkdir(parents=True, exist_ok=True)
    watched = Watched(browser, base, timeout_ms=30_000,
                      viewport={"width": WIDTH, "height": 900}, device_scale_factor=1)
    page = watched.page
    shots: dict[str, Path] = {}

    def shoot(name: str, path: str) -> None:
        response = page.goto(base + path, wait_until="networkidle")
        if response is None or response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response and response.status}")
        height = min(max_height, page.evaluate("document.documentElement.scrollHeight"))
        target = out / f"{name}.png"
        page.screenshot(path=str(target), full_page=True,
                        clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
        shots[name] = target

    try:
        shoot("portfolio", "/")
        shoot("queue", "/queue")
        account = first_queued_account(page)
        shoot("accounts", "/accounts")
        if account is None:
            account = page.locator("#accounts a.acct").first.inner_text()
        shoot("account", f"/accounts/{account}")
        shoot("trust", "/trust")
    finally:
        watched.close()
    if watched.outside or watched.errors:
        raise RuntimeError(f"outside requests {watched.outside}, errors {watched.errors}")
    return shots


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scores", type=Path, required=True)
    p.add_argument("--data", type=Path)
    p.add_argument("--home", type=Path, help="CHURNML_HOME whose registry the Trust page reads")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-height", type=int, default=1400)
    p.add_argument("--colors", type=int, default=128,
                   help="reduce each PNG to this many colours (0: keep as taken), to keep "
                        "the docs small")
    args = p.parse_args(argv)
    with ui_server(args.scores, args.data, home=args.home) as base, headless_chromium() as browser:
        for name, path in take(browser, base, args.out, args.max_height).items():
            if args.colors:
                from PIL import Image

                with Image.open(path) as image:
                    small = image.convert("RGB").quantize(colors=args.colors)
                small.save(path, optimize=True)
            print(f"{name}: {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
