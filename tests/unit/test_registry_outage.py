"""A registry that cannot be reached is an error saying so (RegistryUnavailableError, exit code
1) after a short timeout, never "no champion model" (exit code 2)."""

from __future__ import annotations

import time

import pytest

from churnml.errors import ModelNotFoundError, RegistryUnavailableError

NOWHERE = "http://127.0.0.1:9"  # the discard port: connection refused at once


@pytest.fixture
def unreachable(monkeypatch, tmp_path):
    monkeypatch.setenv("CHURNML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", NOWHERE)
    monkeypatch.setenv("CHURNML_REGISTRY_TIMEOUT_S", "2")
    for key in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
                       "BENTOML_DO_NOT_TRACK": "true"}.items():
        monkeypatch.setenv(key, value)
    yield
    # registry._mlflow() exported MLflow's HTTP settings; monkeypatch removes them above only
    # if they existed before, so drop what this test left
    import os

    for key in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"):
        os.environ.pop(key, None)


def test_an_unreachable_registry_is_not_no_champion(unreachable):
    from churnml.models import registry

    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as info:
        registry.champion_version("churn")
    assert time.monotonic() - started < 20
    message = str(info.value)
    assert "the model registry at http://127.0.0.1:9 cannot be reached" in message
    assert "CHURNML_REGISTRY_TIMEOUT_S=2" in message
    assert info.value.exit_code == 1
    with pytest.raises(RegistryUnavailableError):
        registry.load_champion("expansion")
    with pytest.raises(RegistryUnavailableError):
        registry.list_versions("churn")
    assert not isinstance(info.value, ModelNotFoundError)


def test_the_registry_timeout_setting_is_checked(monkeypatch):
    from churnml.errors import ConfigError
    from churnml.models import registry

    monkeypatch.setenv("CHURNML_REGISTRY_TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match="CHURNML_REGISTRY_TIMEOUT_S"):
        registry.registry_timeout_s()
    monkeypatch.setenv("CHURNML_REGISTRY_TIMEOUT_S", "0")
    with pytest.raises(ConfigError):
        registry.registry_timeout_s()


def test_churnml_serve_with_an_unreachable_registry_exits_1_with_the_message(unreachable,
                                                                            capsys):
    from churnml.cli import main

    assert main(["serve", "--port", "3999"]) == 1
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "cannot be reached" in output and "no champion" not in output
    assert "Traceback" not in output


def test_churnml_score_with_an_unreachable_registry_exits_1_with_the_message(
        unreachable, sim_tables, sim_dir, tmp_path, capsys):
    import pandas as pd

    from churnml.cli import main

    as_of = pd.Timestamp(sim_tables.tables["mrr_changes"]["effective_date"].max()).normalize()
    code = main(["score", "--data", str(sim_dir), "--as-of", f"{as_of:%Y-%m-%d}",
                 "--out", str(tmp_path / "scores")])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 1, output[-2000:]
    assert "cannot be reached" in output and "no champion" not in output
    assert "Traceback" not in output


def test_the_service_with_an_unreachable_registry_exits_1(unreachable, capsys):
    import importlib.util
    from pathlib import Path

    pytest.importorskip("bentoml")
    path = Path(__file__).resolve().parents[2] / "serving" / "service.py"
    spec = importlib.util.spec_from_file_location("churnml_service_no_registry", path)
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(SystemExit) as exit_info:
        spec.loader.exec_module(module)
    assert exit_info.value.code == 1
    assert "cannot be reached" in capsys.readouterr().err
