"""Where the configuration, the data home and the tracking URI come from (churnml.config), and
the environment ``churnml serve`` gives its BentoML workers (which run in ``serving/``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from churnml import config


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("CHURNML_CONFIG_DIR", "CHURNML_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_checkout_reads_the_top_level_folders(clean_env):
    if config.PACKAGED_CONFIG_DIR.exists():
        pytest.skip("testing an installed package, not a checkout")
    assert config.config_root() == config.PROJECT_ROOT
    assert (config.features_dir() / "catalog.yaml").is_file()
    assert (config.models_dir() / "churn.yaml").is_file()


def test_an_installed_package_reads_its_copy(clean_env, tmp_path):
    packaged = tmp_path / "_defaults"
    (packaged / "features").mkdir(parents=True)
    clean_env.setattr(config, "PACKAGED_CONFIG_DIR", packaged)
    assert config.config_root() == packaged
    assert config.features_dir() == packaged / "features"


def test_churnml_config_dir_wins_over_the_defaults_and_is_made_absolute(clean_env, tmp_path):
    packaged = tmp_path / "_defaults"
    packaged.mkdir()
    clean_env.setattr(config, "PACKAGED_CONFIG_DIR", packaged)
    (tmp_path / "mine").mkdir()
    clean_env.chdir(tmp_path)
    clean_env.setenv("CHURNML_CONFIG_DIR", "mine")
    assert config.config_root() == tmp_path / "mine"
    assert config.models_dir() == tmp_path / "mine" / "models"


def test_an_explicit_path_wins_over_churnml_config_dir(clean_env, tmp_path):
    from churnml.errors import ConfigError
    from churnml.models.config import load_config

    clean_env.setenv("CHURNML_CONFIG_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="nowhere"):
        load_config("churn")
    explicit = load_config("churn", path=config.PROJECT_ROOT / "models" / "churn.yaml")
    assert explicit.target == "churn"


@pytest.mark.parametrize("uri, expected", [
    ("sqlite:///mlflow.db", "sqlite:///{cwd}/mlflow.db"),
    ("sqlite:///sub/m.db?timeout=5", "sqlite:///{cwd}/sub/m.db?timeout=5"),
    ("sqlite:////abs/m.db", "sqlite:////abs/m.db"),
    ("file:./mlruns", "file://{cwd}/mlruns"),
    ("file:///abs/mlruns", "file:///abs/mlruns"),
    ("./mlruns", "{cwd}/mlruns"),
    ("sub/mlruns", "{cwd}/sub/mlruns"),
    ("/abs/mlruns", "/abs/mlruns"),
    ("http://mlflow.internal:5000", "http://mlflow.internal:5000"),
    ("databricks", "databricks"),  # a profile, not a folder
])
def test_absolute_tracking_uri(clean_env, tmp_path, uri, expected):
    clean_env.chdir(tmp_path)
    cwd = str(tmp_path.resolve())
    assert config.absolute_tracking_uri(uri) == expected.format(cwd=cwd)


def test_child_process_env_is_absolute(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    env = config.child_process_env()
    assert env == {"CHURNML_HOME": str(tmp_path.resolve() / ".churnml")}  # embedded store
    clean_env.setenv("CHURNML_HOME", "store")
    clean_env.setenv("CHURNML_CONFIG_DIR", "conf")
    clean_env.setenv("MLFLOW_TRACKING_URI", "sqlite:///team.db")
    env = config.child_process_env()
    assert env["CHURNML_HOME"] == str(tmp_path.resolve() / "store")
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path.resolve()}/team.db"
    assert env["CHURNML_CONFIG_DIR"] == str(tmp_path.resolve() / "conf")


def test_serve_passes_the_store_to_workers_in_another_folder(clean_env, tmp_path):
    """`make demo` writes ./.churnml in the repository; the workers run in serving/ and must
    use that store, not create an empty one there."""
    from churnml.commands.serve import bentoml_serve_command, serve_environment

    clean_env.chdir(tmp_path)
    env = serve_environment(workers=3, base={"PYTHONPATH": "/elsewhere", "PATH": "/bin"})
    assert env["CHURNML_HOME"] == str(tmp_path.resolve() / ".churnml")
    assert "MLFLOW_TRACKING_URI" not in env  # the embedded store under that home
    assert env["CHURNML_SERVE_WORKERS"] == "3"
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["PATH"] == "/bin"
    # the workers import the churnml this command runs, before anything else on the path
    first = env["PYTHONPATH"].split(os.pathsep)
    assert Path(first[0], "churnml", "__init__.py").resolve() == \
        Path(config.__file__).with_name("__init__.py").resolve()
    assert first[1:] == ["/elsewhere"]
    command = bentoml_serve_command("127.0.0.1", 3000)
    assert command[command.index("--working-dir") + 1] != str(tmp_path)

    # a team server is passed on as given; a relative sqlite URI becomes absolute
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert serve_environment(1, base={})["MLFLOW_TRACKING_URI"] == "http://mlflow.internal:5000"
    clean_env.setenv("MLFLOW_TRACKING_URI", "sqlite:///team.db")
    assert serve_environment(1, base={})["MLFLOW_TRACKING_URI"] == \
        f"sqlite:///{tmp_path.resolve()}/team.db"


def test_demo_prints_a_serve_command_that_finds_the_store(clean_env, tmp_path):
    import shlex
    import sys

    from churnml.commands import demo

    fake = tmp_path / "venv" / "bin" / "churnml"  # not on PATH, as after `make demo`
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    clean_env.setattr(sys, "argv", [str(fake), "demo"])
    clean_env.setenv("PATH", str(tmp_path / "empty"))
    clean_env.chdir(tmp_path)
    assert demo.serve_command(3000) == f"{fake} serve --port 3000"
    clean_env.setenv("PATH", str(fake.parent))  # an activated environment
    assert demo.serve_command(3000) == "churnml serve --port 3000"

    clean_env.setenv("CHURNML_HOME", "store")  # a relative data home travels absolute
    words = shlex.split(demo.serve_command(3000))
    assert words[0] == f"CHURNML_HOME={tmp_path.resolve() / 'store'}"
    assert words[1:] == ["churnml", "serve", "--port", "3000"]  # the URI follows from the home
