"""The declared layers, no import circles and a clean type check, enforced in `make test`.

- import-linter contracts in pyproject.toml ([tool.importlinter]): data -> features -> health ->
  models -> scoring -> jobs | api -> commands, nothing imports the command line, jobs and api
  independent;
- no import circle between churnml's own modules, counting imports inside functions and under
  TYPE_CHECKING (grimp's graph, which import-linter builds on, sees both);
- mypy clean on src/ (configuration in pyproject.toml [tool.mypy]).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[dev]'` installs it")
    return found


def test_import_contracts_hold():
    result = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and " 0 broken" in result.stdout


def test_no_import_circle_between_own_modules():
    import grimp

    graph = grimp.build_graph("churnml", include_external_packages=False)
    circles = []
    modules = sorted(graph.modules)
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module):
            # a circle: the imported module reaches back to the importer
            if imported != module and graph.chain_exists(imported=module, importer=imported):
                circles.append(tuple(sorted((module, imported))))
    # a package's __init__ importing its own submodules is not a circle of modules
    circles = sorted({c for c in circles
                      if not (c[1].startswith(c[0] + ".") or c[0].startswith(c[1] + "."))})
    assert not circles, f"import circles: {circles}"


@pytest.mark.slow
def test_type_check_is_clean():
    result = subprocess.run([_tool("mypy"), "src/churnml"], cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:]
