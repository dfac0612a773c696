"""The data scientists' notebooks run from top to bottom, so they never rot.

Each notebook is executed with nbclient on a small simulated book in a temporary folder, with a
temporary ``CHURNML_HOME`` (its own MLflow store), in a kernel that runs this interpreter (the
project's .venv): the test writes that kernelspec into a temporary ``JUPYTER_PATH``. The
notebooks read their parameters from ``CHURNML_NOTEBOOK_*`` environment variables.

The notebooks are committed without outputs; a fast test checks that.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("01-quickstart.ipynb", "02-retrain-on-your-data.ipynb")
KERNEL = "churnml-notebook-test"
ACCOUNTS = 400  # small enough for about a minute per notebook, big enough for an honest split


def test_notebooks_are_committed_clean_and_parameterised():
    for name in NAMES:
        nb = json.loads((NOTEBOOKS / name).read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code, name
        for cell in code:
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{name}: commit notebooks without outputs (the test suite executes them)")
        first = code[0]
        assert "parameters" in first["metadata"].get("tags", []), f"{name}: first code cell is the parameters"
        source = "".join(first["source"])
        assert "CHURNML_NOTEBOOK_DIR" in source and "CHURNML_HOME" in source, name
        text = "".join("".join(c["source"]) for c in code)
        assert "import churnml" in text, f"{name}: notebooks use the package, not copied logic"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec for this interpreter in a temporary JUPYTER_PATH."""
    from ipykernel.kernelspec import write_kernel_spec

    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL
    write_kernel_spec(spec_dir, overrides={"display_name": "churnml test kernel"})
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    return root


def _execute(name: str, work: Path, kernel_root: Path, monkeypatch, extra_env: dict | None = None):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PATH", str(kernel_root))
    monkeypatch.setenv("CHURNML_NOTEBOOK_DIR", str(work))
    monkeypatch.setenv("CHURNML_NOTEBOOK_ACCOUNTS", str(ACCOUNTS))
    monkeypatch.setenv("CHURNML_NOTEBOOK_MONTHS", "18")
    monkeypatch.setenv("CHURNML_NOTEBOOK_THREADS", "1")
    monkeypatch.setenv("CHURNML_HOME", str(work / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CHURNML_NOTEBOOK_DATA", raising=False)
    for key, value in (extra_env or {}).items():
        monkeypatch.setenv(key, value)
    for key, value in (("BENTOML_DO_NOT_TRACK", "true"), ("MLFLOW_DISABLE_TELEMETRY", "true"),
                       ("DO_NOT_TRACK", "1"), ("MPLBACKEND", "Agg")):
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name=KERNEL, resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    return nb


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            for mime in ("text/plain", "text/html"):
                if mime in out.get("data", {}):
                    parts.append(out["data"][mime])
    return "\n".join(parts)


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


@pytest.mark.integration
@pytest.mark.slow
def test_quickstart_runs_end_to_end(tmp_path, kernel_env, monkeypatch):
    nb = _execute("01-quickstart.ipynb", tmp_path, kernel_env, monkeypatch)
    text = _outputs_text(nb)
    # the reasons table, the comparison with the baselines and the oracle, the registration
    assert "reason_1" in text and "churn_probability" in text
    assert "health score" in text and "oracle (simulator truth)" in text
    assert "version 1: champion=True" in text
    assert _images(nb) == 3  # ROC/PR, reliability, SHAP summary
    # the notebook wrote where it was told to, not into the repository
    assert (tmp_path / "book" / "accounts.parquet").exists()
    assert (tmp_path / "home" / "mlflow.db").exists()
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"roc_pr.png", "calibration.png",
                                                               "shap_summary.png"}


@pytest.mark.integration
@pytest.mark.slow
def test_retrain_on_your_data_runs_on_a_given_folder(tmp_path, kernel_env, monkeypatch, sim_dir):
    nb = _execute("02-retrain-on-your-data.ipynb", tmp_path, kernel_env, monkeypatch,
                  extra_env={"CHURNML_NOTEBOOK_DATA": str(sim_dir)})
    text = _outputs_text(nb)
    assert "no data folder given" not in text  # it used the folder it was given
    assert "fresh registry: version 1" in text
    assert "promoted: champion v" in text and "rolled back: champion v" in text
    assert (tmp_path / "rejects.csv").exists()

    from churnml.models import registry

    versions = registry.list_versions("churn")
    assert [v["version"] for v in versions] == ["2", "1"]
    champions = [v["version"] for v in versions if "champion" in v["aliases"]]
    challengers = [v["version"] for v in versions if "challenger" in v["aliases"]]
    assert len(champions) == 1 and len(challengers) == 1 and champions != challengers
