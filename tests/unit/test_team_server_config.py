"""A team MLflow server: an explicit ``MLFLOW_TRACKING_URI`` wins over ``CHURNML_HOME``
(whose embedded store is then never created), reaches child processes unchanged, and its
password never appears in churnml's messages (docs/operations.md, "A team MLflow server")."""

from __future__ import annotations

import pytest

from churnml import config
from churnml.models import registry

TEAM = "http://analyst:s3cret-pw@mlflow.internal:5000"


@pytest.fixture
def team_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CHURNML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", TEAM)
    return tmp_path / "home"


def test_explicit_tracking_uri_wins_over_the_data_home(team_env):
    assert config.tracking_uri() == TEAM
    assert not config.tracking_store_is_local()
    assert config.child_process_env()["MLFLOW_TRACKING_URI"] == TEAM
    assert registry._artifact_location("churnml-churn") is None  # the server decides
    assert not (team_env / "mlflow.db").exists()


def test_without_it_the_embedded_store_under_the_home_is_used(team_env, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert config.tracking_uri() == f"sqlite:///{team_env.resolve() / 'mlflow.db'}"


def test_messages_name_the_server_without_its_password(team_env, monkeypatch):
    import importlib

    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    from churnml.errors import ModelNotFoundError

    assert registry._where() == "http://analyst:***@mlflow.internal:5000"

    def refuse(*args, **kwargs):
        raise MlflowException("no such version", error_code=RESOURCE_DOES_NOT_EXIST)

    # the module itself (``mlflow.artifacts`` as an attribute may be a lazy proxy)
    monkeypatch.setattr(importlib.import_module("mlflow.artifacts"), "download_artifacts", refuse)
    with pytest.raises(ModelNotFoundError) as error:
        registry.load_version("churn", 9)
    assert "s3cret-pw" not in str(error.value)
    assert "analyst:***@mlflow.internal:5000" in str(error.value)
    error = registry._unavailable(ConnectionError("refused"), "reading the champion")
    assert "s3cret-pw" not in str(error) and "***" in str(error)
