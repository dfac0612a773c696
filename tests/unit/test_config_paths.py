"""Where the configuration comes from (churnml.config)."""

from __future__ import annotations

import pytest

from churnml import config


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("CHURNML_CONFIG_DIR", "CHURNML_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_checkout_reads_the_top_level_folders(clean_env):
    assert not config.PACKAGED_CONFIG_DIR.exists(), "a checkout has no packaged copy"
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
