"""The browser tests' Chromium finder (``tests/support/chromium.py``): the install path.

On this machine chromium is already installed, so the browser tests never reach the
``apt-get`` branch. These tests drive it with a fake ``apt-get`` on an otherwise empty PATH:
as root, a missing chromium is installed (``apt-get update`` then ``apt-get install -y
--no-install-recommends chromium``, in that order) and then found; a failed install, or a
non-root user, raises ``ChromiumUnavailable`` naming the package, never a skip.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from support import chromium  # tests/ is on sys.path (conftest.py)


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """A PATH holding only ``sh`` and what the test puts there; no CHURNML_TEST_CHROMIUM."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink("/bin/sh", bin_dir / "sh")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("CHURNML_TEST_CHROMIUM", raising=False)
    return bin_dir


def _fake_apt(bin_dir: Path, log: Path, *, install_fails: bool = False) -> None:
    """An ``apt-get`` that records its arguments; ``install`` drops a chromium on PATH."""
    chromium_body = "#!/bin/sh\\necho chromium\\n"
    install = ("echo 'E: Unable to locate package chromium' >&2; exit 100" if install_fails
               else f"printf '{chromium_body}' > {bin_dir}/chromium; "
                    f"/bin/chmod +x {bin_dir}/chromium")
    _script(bin_dir / "apt-get",
            f'echo "$@" >> {log}\n'
            f'case "$1" in update) exit 0;; install) {install};; esac\n')


def test_root_installs_a_missing_chromium_with_apt_get(bare_path, tmp_path, monkeypatch):
    log = tmp_path / "apt.log"
    _fake_apt(bare_path, log)
    monkeypatch.setattr(chromium.os, "geteuid", lambda: 0)
    assert chromium._find() is None
    found = chromium.chromium_executable()
    assert found == str(bare_path / "chromium")
    assert log.read_text().splitlines() == [
        "update", "install -y --no-install-recommends chromium"]
    # the next call finds it without installing again
    assert chromium.chromium_executable() == found
    assert len(log.read_text().splitlines()) == 2


def test_a_failed_install_names_the_package_and_the_apt_error(bare_path, tmp_path, monkeypatch):
    log = tmp_path / "apt.log"
    _fake_apt(bare_path, log, install_fails=True)
    monkeypatch.setattr(chromium.os, "geteuid", lambda: 0)
    with pytest.raises(chromium.ChromiumUnavailable) as err:
        chromium.chromium_executable()
    message = str(err.value)
    assert "apt-get install -y chromium" in message  # the hint names the package
    assert "-> 100" in message and "Unable to locate package chromium" in message


def test_without_root_nothing_is_installed(bare_path, tmp_path, monkeypatch):
    log = tmp_path / "apt.log"
    _fake_apt(bare_path, log)
    monkeypatch.setattr(chromium.os, "geteuid", lambda: 1000)
    with pytest.raises(chromium.ChromiumUnavailable, match="Debian package `chromium`"):
        chromium.chromium_executable()
    assert not log.exists()


def test_an_explicit_executable_wins_and_is_never_installed(bare_path, tmp_path, monkeypatch):
    log = tmp_path / "apt.log"
    _fake_apt(bare_path, log)
    given = tmp_path / "my-chromium"
    _script(given, "exit 0\n")
    monkeypatch.setenv("CHURNML_TEST_CHROMIUM", str(given))
    monkeypatch.setattr(chromium.os, "geteuid", lambda: 0)
    assert chromium.chromium_executable() == str(given)
    monkeypatch.setenv("CHURNML_TEST_CHROMIUM", str(tmp_path / "missing"))
    with pytest.raises(chromium.ChromiumUnavailable):
        chromium.chromium_executable()
    assert not log.exists()
