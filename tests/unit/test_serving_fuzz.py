"""Fuzz the service with schemathesis against its own OpenAPI document: whatever it is sent,
valid or not, it never answers 5xx (bounded number of examples, in-process, fake models)."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from test_serving_fakes import asgi_app, fake_model_map  # noqa: E402

warnings.filterwarnings("ignore", message=".*httpx.*")
SERVICE_PATH = Path(__file__).resolve().parents[2] / "serving" / "service.py"
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def service_app():
    from churnml.api import predictor as predictor_module

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    monkeypatch.delenv("CHURNML_API_KEY", raising=False)
    monkeypatch.setattr(predictor_module, "load_predictor",
                        lambda: predictor_module.Predictor(fake_model_map()))
    name = "churnml_service_fuzzed"
    spec = importlib.util.spec_from_file_location(name, SERVICE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    app = asgi_app(module.ChurnService)
    yield app
    monkeypatch.undo()


@pytest.fixture(scope="module")
def openapi_schema(service_app):
    from starlette.testclient import TestClient

    with TestClient(service_app) as client:  # runs the app's start-up (service instance)
        document = client.get("/docs.json").json()
        # The probes and metrics are BentoML's own; fuzz churnml's endpoints.
        document["paths"] = {p: v for p, v in document["paths"].items()
                             if p in ("/predict", "/predict_history", "/metadata")}
        schema = schemathesis.openapi.from_dict(document)
        schema.app = service_app
        yield schema, client


def test_openapi_lists_churnml_endpoints(openapi_schema):
    schema, _ = openapi_schema
    assert {"/predict", "/predict_history", "/metadata"} <= set(schema.raw_schema["paths"])


def _send(client, case):
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    allowed = {"method", "url", "headers", "params", "json", "data", "content", "cookies"}
    return client.request(**{k: v for k, v in kwargs.items() if k in allowed})


@pytest.mark.slow
def test_fuzzed_requests_never_get_5xx(openapi_schema):
    from hypothesis import given

    schema, client = openapi_schema
    failures: list[str] = []
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    for operation in schema.get_all_operations():
        op = operation.ok()
        for mode in modes if op.method.upper() == "POST" else modes[:1]:
            @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                      derandomize=True, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case):
                response = _send(client, case)
                if response.status_code >= 500:
                    failures.append(f"{mode.value} {case.method} {case.formatted_path}: "
                                    f"{response.status_code} {response.text[:300]}")

            check()
    assert not failures, "\n".join(failures[:5])
