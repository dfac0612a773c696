"""Debian's ``chromium`` for the browser tests (``tests/integration/test_ui_browser.py``).

Playwright drives it through ``executable_path``: no browser is downloaded (``playwright
install`` is never run). :func:`chromium_executable` finds ``chromium`` on ``PATH`` (or
``CHURNML_TEST_CHROMIUM``). When it is missing and the tests run as root on a machine with
``apt-get`` (CI, a fresh container), it installs the Debian package ``chromium`` once, as
``make system-packages`` would; otherwise, or when that fails, it raises
:class:`ChromiumUnavailable` naming the package: the tests fail, never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess

PACKAGE = "chromium"
INSTALL_HINT = (
    "Debian's chromium is needed by the browser tests and was not found on PATH: install the "
    "Debian package `chromium` (sudo apt-get install -y chromium, or make system-packages), "
    "or set CHURNML_TEST_CHROMIUM to a Chromium executable")
#: seconds allowed for apt-get update + install
INSTALL_TIMEOUT = 900


class ChromiumUnavailable(RuntimeError):
    """No Chromium executable, and it could not be installed."""


def _find() -> str | None:
    given = os.environ.get("CHURNML_TEST_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _install() -> str:
    """``apt-get update`` then ``apt-get install -y chromium`` (root only); the log's tail."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends",
                                        PACKAGE]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=INSTALL_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(cmd)}: {exc}"
        log.append(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr.strip()[-400:]}")
        if proc.returncode != 0:
            break
    return "\n".join(log)


def chromium_executable() -> str:
    """The path of a Chromium executable (installing Debian's package when missing and
    possible); raises :class:`ChromiumUnavailable` with the package name otherwise."""
    found = _find()
    if found:
        return found
    detail = ""
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") \
            and not os.environ.get("CHURNML_TEST_CHROMIUM"):
        detail = _install()
        found = _find()
        if found:
            return found
    raise ChromiumUnavailable(INSTALL_HINT + (f"\n(tried to install it:\n{detail})"
                                              if detail else ""))
