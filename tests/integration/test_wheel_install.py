"""The built wheel works on its own: build it, install it into a fresh virtual environment
outside the repository, and run ``churnml simulate``, ``features``, ``train`` (churn) and
``score`` there from a folder outside the repository (the configuration must come from inside
the package, ``churnml/_defaults``, copied there by setup.py), then load the service that
``churnml serve`` runs (``churnml/_serving``).

Installing the dependencies afresh would take minutes and a gigabyte, so the new environment
gets only the wheel (``--no-deps``) and a ``.pth`` file that appends this environment's
site-packages for the dependencies. Directories named in a ``.pth`` file are added to
``sys.path`` without their own ``.pth`` files being run, so the editable churnml of this
environment (an ``__editable__`` ``.pth`` pointing at ``src/``) is not importable there: the test
checks that ``churnml`` is imported from the new environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Generated or large things a clone does not have (or the build does not need).
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".hypothesis", ".churnml", "mlruns", "mlartifacts", "*.db", "demo", "_data", "*.parquet",
    ".ipynb_checkpoints", "spark-warehouse", "notebooks", "benchmarks")
# A small, quickly trained model is enough: this checks the installation, not the model.
QUICK = {"num_boost_round": 30, "bootstrap_resamples": 10, "backtest_folds": 1,
         "cadence_days": 14}


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (so the build writes nothing into the
    repository), with this environment's setuptools and no network (no build isolation)."""
    import setuptools

    major = int(setuptools.__version__.split(".")[0])
    assert major >= 77, (f"setuptools {setuptools.__version__} cannot build churnml (needs >= 77, "
                         "a dev dependency: make install)")
    clone = tmp_path_factory.mktemp("clone") / "churnml"
    shutil.copytree(REPO, clone, ignore=NOT_IN_A_CLONE)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--no-index", "-w", str(dist), str(clone)], cwd=dist)
    wheels = list(dist.glob("churnml-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_carries_every_configuration_file(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("features", "models"):
        for path in REPO.joinpath(folder).glob("*.yaml"):
            if path.name == "serving_health.yaml":  # a Bento's, never a default (setup.py)
                continue
            assert f"churnml/_defaults/{folder}/{path.name}" in names
    # churnml ui's templates and vendored scripts (package data, pyproject.toml)
    ui = REPO / "src" / "churnml" / "ui"
    for path in [*ui.joinpath("templates").glob("*.html"), *ui.joinpath("static").iterdir()]:
        assert f"churnml/ui/{path.parent.name}/{path.name}" in names, path.name


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed and this environment's packages
    (not its churnml) importable for the dependencies."""
    root = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          "--no-deps", "--no-index", str(wheel)], cwd=root.parent)
    purelib = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    deps = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (purelib / "zz_churnml_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    return root


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The environment of the commands: nothing that points at the checkout or its store."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "CHURNML_CONFIG_DIR", "MLFLOW_TRACKING_URI",
                        "CHURNML_SERVING_DIR", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(CHURNML_HOME=str(tmp_path / "home"), COLUMNS="200", BENTOML_DO_NOT_TRACK="true",
               MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    return env


def test_installed_wheel_simulates_trains_and_scores_outside_the_repository(venv, env, tmp_path):
    work = tmp_path / "work"  # outside the repository
    work.mkdir()
    assert REPO not in work.parents
    python, churnml = str(venv / "bin" / "python"), str(venv / "bin" / "churnml")

    # the churnml imported is the wheel's, and it finds its configuration inside the package
    where = _run([python, "-c", "import churnml, churnml.config as c, sys; "
                  "print(churnml.__file__); print(c.config_root()); "
                  "print([p for p in sys.path if __import__('os').path.isfile("
                  "__import__('os').path.join(p, 'churnml', '__init__.py'))])"],
                 cwd=work, env=env).stdout.splitlines()
    package = Path(where[0]).parent
    assert venv in package.parents, f"churnml imported from {package}, not the new environment"
    assert Path(where[1]) == package / "_defaults"
    assert len(eval(where[2])) == 1, f"more than one churnml on sys.path: {where[2]}"

    book = work / "book"
    _run([churnml, "simulate", "--out", str(book), "--accounts", "300", "--months", "14",
          "--seed", "3"], cwd=work, env=env)
    as_of = _run([python, "-c", "from churnml.data.io import load_book; "
                  "from churnml.features.labels import latest_scoring_date; "
                  f"print(latest_scoring_date(load_book({str(book)!r})[0]).date())"],
                 cwd=work, env=env).stdout.strip()
    _run([churnml, "features", "--data", str(book), "--as-of", as_of,
          "--out", str(work / "features.parquet")], cwd=work, env=env)
    assert (work / "features.parquet").is_file()

    # a churn champion is enough for the weekly job and the service (the other outcomes'
    # columns stay null); a quick config given with --config, made from the packaged default
    for target in ("churn",):
        raw = yaml.safe_load((package / "_defaults" / "models" / f"{target}.yaml").read_text())
        raw["lightgbm"]["num_boost_round"] = QUICK["num_boost_round"]
        raw["evaluation"]["bootstrap_resamples"] = QUICK["bootstrap_resamples"]
        raw["split"]["backtest_folds"] = QUICK["backtest_folds"]
        raw["observations"]["cadence_days"] = QUICK["cadence_days"]
        quick = work / f"{target}-quick.yaml"
        quick.write_text(yaml.safe_dump(raw, sort_keys=False))
        _run([churnml, "train", "--data", str(book), "--target", target, "--config", str(quick),
              "--no-plots"], cwd=work, env=env)

    out = work / "scores"
    _run([churnml, "score", "--data", str(book), "--as-of", as_of, "--out", str(out)],
         cwd=work, env=env)
    import pandas as pd

    scores = pd.read_parquet(out / f"as_of={as_of}" / "scores.parquet")
    assert len(scores) > 0
    assert scores["churn_probability"].between(0, 1).all()
    assert scores["churn_model_version"].eq("1").all()
    assert (Path(env["CHURNML_HOME"]) / "mlflow.db").is_file()

    # `churnml serve` runs the service copied into the package; importing it loads both
    # champions as each server worker does (no server is started here)
    loaded = _run([python, "-c", "import sys; from churnml.commands.serve import serving_dir; "
                   "d = serving_dir(); sys.path.insert(0, str(d)); import service; "
                   "print(d); print(service.PREDICTOR.metadata()['models']['churn']['version'])"],
                  cwd=work, env=env).stdout.splitlines()
    assert Path(loaded[-2]) == package / "_serving"
    assert loaded[-1] == "1"
