"""What the service accepts and how much (churnml.api.limits, docs/api.md "Limits"): body size
(413 before parsing), JSON only (415), rows and keys of /predict_history (400), a bounded
number of /predict_history calls at once (503 + Retry-After), work that stops when the request
times out, one WARNING line per bad request (no payload, no traceback), echoed strings cut."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from test_serving_fakes import account, asgi_app, fake_models

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PATH = ROOT / "serving" / "service.py"

warnings.filterwarnings("ignore", message=".*httpx.*")
pytest.importorskip("bentoml")

LIMITS = {
    "CHURNML_SERVE_MAX_BODY_BYTES": "60000",
    "CHURNML_SERVE_MAX_ROW_KEYS": "8",
    "CHURNML_SERVE_MAX_HISTORY_ROWS": "20",
    "CHURNML_SERVE_HISTORY_CONCURRENCY": "1",
    "CHURNML_SERVE_HISTORY_WAIT_S": "0.3",
    "CHURNML_SERVE_TIMEOUT_S": "2",
}
TINY_HISTORY = {"as_of": "2026-11-16", "tables": {
    "accounts": [{"account_id": "a", "created_at": "2024-01-01"}],
    "mrr_changes": [{"account_id": "a", "effective_date": "2024-01-01", "mrr": 100.0,
                     "reason": "new"}]}}


@pytest.fixture(scope="module")
def service_module():
    from churnml.api import predictor as predictor_module

    patch = pytest.MonkeyPatch()
    patch.setenv("BENTOML_DO_NOT_TRACK", "true")
    patch.delenv("CHURNML_API_KEY", raising=False)
    for key, value in LIMITS.items():
        patch.setenv(key, value)

    def fake_load():
        churn, expansion = fake_models()
        return predictor_module.Predictor({"churn": churn, "expansion": expansion})

    patch.setattr(predictor_module, "load_predictor", fake_load)
    name = "churnml_service_limits_under_test"
    spec = importlib.util.spec_from_file_location(name, SERVICE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    patch.undo()


@pytest.fixture(scope="module")
def client(service_module):
    from starlette.testclient import TestClient

    patch = pytest.MonkeyPatch()
    for key, value in LIMITS.items():  # the middlewares read them when the app starts
        patch.setenv(key, value)
    with TestClient(asgi_app(service_module.ChurnService)) as c:
        yield c
    patch.undo()


def _service():
    import bentoml

    return bentoml.get_current_service()


# --- 413 / 415 -------------------------------------------------------------------------------

def test_a_body_over_the_limit_is_413_before_parsing(client):
    big = b'{"accounts": [' + b" " * 70_000 + b"{not even json"
    response = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert "at most 60000 bytes" in response.json()["error"]
    assert "CHURNML_SERVE_MAX_BODY_BYTES" in response.json()["error"]
    # under the limit the body is parsed as usual (here: validated and found empty)
    parsed = client.post("/predict", json={"accounts": []})
    assert parsed.status_code == 400 and "empty" in parsed.text, parsed.text


def test_a_streamed_body_without_content_length_is_counted(client):
    def chunks():
        for _ in range(40):
            yield b" " * 4096

    response = client.post("/predict", content=chunks(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text


def test_body_limit_stops_reading_once_over_and_never_calls_the_app():
    from churnml.api.limits import BodyLimitMiddleware

    called, sent, received = [], [], []

    async def app(scope, receive, send):  # pragma: no cover - must not run
        called.append(True)

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict",
             "headers": [(b"content-type", b"application/json")]}
    asyncio.run(BodyLimitMiddleware(app, max_bytes=5000)(scope, receive, send))
    assert not called and sent[0]["status"] == 413
    assert len(received) == 6  # stopped at the first chunk past the limit, not at the end
    # a declared Content-Length over the limit is answered without reading anything
    received.clear()
    sent.clear()
    scope["headers"].append((b"content-length", b"999999"))
    asyncio.run(BodyLimitMiddleware(app, max_bytes=5000)(scope, receive, send))
    assert not received and sent[0]["status"] == 413


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x",
                                          "application/vnd.bentoml+pickle"])
def test_post_bodies_other_than_json_are_415(client, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    for path in ("/predict", "/predict_history"):
        response = client.post(path, content=b'{"accounts": []}', headers=headers)
        assert response.status_code == 415, (path, content_type, response.text)
        assert "application/json" in response.json()["error"]


def test_json_with_a_charset_is_accepted(client):
    import json

    response = client.post("/predict", content=json.dumps({"accounts": []}),
                           headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 400 and "empty" in response.text, response.text


# --- /predict_history: rows and keys ---------------------------------------------------------

def test_history_rows_per_table_and_keys_per_row_are_limited(client):
    wide = {f"k{i}": i for i in range(12)}
    body = {"as_of": "2026-11-16", "tables": {
        "accounts": [{"account_id": "a", **wide}],
        "mrr_changes": [{"account_id": "a"}],
        "usage_events": [{"account_id": "a", "ts": "2026-01-01", "event": "x"}] * 25}}
    response = client.post("/predict_history", json=body)
    assert response.status_code == 400, response.text
    messages = " | ".join(e["msg"] for e in response.json()["detail"])
    assert "accounts[0]: 13 keys; at most 8 per row (CHURNML_SERVE_MAX_ROW_KEYS)" in messages
    assert ("tables.usage_events: 25 rows; at most 20 per table per call "
            "(CHURNML_SERVE_MAX_HISTORY_ROWS)") in messages


def test_limit_settings_are_checked():
    from churnml.api import limits
    from churnml.errors import ConfigError

    assert limits.max_body_bytes({}) == 10 * 1024 * 1024
    assert limits.max_history_rows({"CHURNML_SERVE_MAX_HISTORY_ROWS": "10000000"}) == 200_000
    with pytest.raises(ConfigError, match="CHURNML_SERVE_MAX_BODY_BYTES"):
        limits.max_body_bytes({"CHURNML_SERVE_MAX_BODY_BYTES": "lots"})
    with pytest.raises(ConfigError, match=">= 1"):
        limits.history_concurrency({"CHURNML_SERVE_HISTORY_CONCURRENCY": "0"})


# --- heavy calls: a slot each, 503 beyond, stopped when the request times out ------------------

def test_history_calls_beyond_the_slots_wait_then_get_503_with_retry_after(client, monkeypatch):
    import httpx

    from churnml.deadline import checkpoint

    predictor = _service().predictor
    started, release = threading.Event(), threading.Event()

    def slow(tables, as_of):
        started.set()
        while not release.wait(0.02):
            checkpoint()
        return []

    monkeypatch.setattr(predictor, "predict_history", slow)

    async def scenario():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            first = asyncio.ensure_future(c.post("/predict_history", json=TINY_HISTORY))
            while not started.is_set():
                await asyncio.sleep(0.01)
            began = time.monotonic()
            second = await c.post("/predict_history", json=TINY_HISTORY)
            waited = time.monotonic() - began
            release.set()
            return await first, second, waited

    first, second, waited = client.portal.call(scenario)
    assert first.status_code == 200, first.text
    assert second.status_code == 503, second.text
    assert second.headers["retry-after"] == "1"
    assert "busy" in second.json()["error"]
    assert 0.25 <= waited < 2  # waited CHURNML_SERVE_HISTORY_WAIT_S for a slot, no longer


def test_a_timed_out_history_call_stops_computing(client, monkeypatch):
    from churnml.deadline import DeadlineExceeded, checkpoint

    gate = _service().history_gate
    predictor = _service().predictor
    progress = {"steps": 0, "stopped": False, "done": threading.Event()}

    def endless(tables, as_of):  # 10 s of work in 50 ms steps, a checkpoint per step
        try:
            for _ in range(200):
                checkpoint()
                progress["steps"] += 1
                time.sleep(0.05)
            return []
        except DeadlineExceeded:
            progress["stopped"] = True
            raise
        finally:
            progress["done"].set()

    monkeypatch.setattr(predictor, "predict_history", endless)
    stopped_before = gate.stopped
    began = time.monotonic()
    response = client.post("/predict_history", json=TINY_HISTORY)
    assert response.status_code == 504, response.text  # BentoML's timeout: 2 s here
    assert time.monotonic() - began < 5
    assert progress["done"].wait(2), "the work went on after the 504"
    assert progress["stopped"] and progress["steps"] < 100
    assert gate.stopped == stopped_before + 1
    # the slot is free again: the next call runs
    monkeypatch.setattr(predictor, "predict_history", lambda tables, as_of: [])
    assert client.post("/predict_history", json=TINY_HISTORY).status_code == 200


def test_build_features_stops_at_a_cancelled_deadline():
    import pandas as pd

    from churnml.data.tables import Book
    from churnml.deadline import Deadline, DeadlineExceeded, active
    from churnml.features.build import build_features

    accounts = pd.DataFrame({"account_id": pd.array(["a"], dtype="str"),
                             "created_at": pd.to_datetime(["2024-01-01"]).astype("datetime64[ns]")})
    mrr = pd.DataFrame({"account_id": pd.array(["a"], dtype="str"),
                        "effective_date": pd.to_datetime(["2024-01-01"]).astype("datetime64[ns]"),
                        "mrr": [100.0], "reason": pd.array(["new"], dtype="str")})
    book = Book(tables={"accounts": accounts, "mrr_changes": mrr})
    as_of = pd.Timestamp("2025-01-06")
    assert len(build_features(book, [as_of])) == 1  # no deadline: as before
    deadline = Deadline(30)
    deadline.cancel("the request timed out")
    with active(deadline), pytest.raises(DeadlineExceeded, match="the request timed out"):
        build_features(book, [as_of])
    with active(Deadline(0)), pytest.raises(DeadlineExceeded):
        build_features(book, [as_of])


# --- what a bad request leaves in the log --------------------------------------------------------

def test_a_bad_request_logs_one_warning_line_without_payload_or_traceback(client, caplog):
    secret = "SECRET-VALUE-0123456789"
    caplog.set_level(logging.INFO)
    response = client.post("/predict", json={"accounts": [account(1, nps_latest=secret)]})
    assert response.status_code == 400
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1, [r.getMessage() for r in records]
    record = records[0]
    assert record.levelno == logging.WARNING and record.name == "churnml.serving"
    assert record.exc_info is None and not record.exc_text
    line = record.getMessage()
    assert line.startswith("400 POST /predict: 1 problem(s) at accounts[0].nps_latest"), line
    assert secret not in line and "\n" not in line


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/predict", b"{not json", 400),
    ("/predict", b'{"accounts": [1]}', 400),
    ("/predict_history", b"[]", 400),
])
def test_other_client_errors_log_one_line_too(client, caplog, path, body, status):
    caplog.set_level(logging.INFO)
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1 and records[0].exc_info is None, \
        [(r.name, r.getMessage()) for r in records]


def test_refused_requests_are_logged_too(client, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    client.post("/predict", content=b"x", headers={"content-type": "text/plain"})
    monkeypatch.setenv("CHURNML_API_KEY", "k-123456")
    client.get("/metadata")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [line.split(":")[0] for line in lines] == ["415 POST /predict", "401 GET /metadata"]
    assert all("k-123456" not in line for line in lines)


def test_echoed_strings_are_cut(client):
    long_name = "x" * 5000
    long_id = "A" * 5000
    response = client.post("/predict", json={"accounts": [
        {"account_id": long_id, "as_of": "2026-11-16", long_name: 1.0,
         "nps_latest": "y" * 5000}]})
    assert response.status_code == 400
    assert len(response.text) < 3000, len(response.text)
    for error in response.json()["detail"]:
        assert all(len(str(part)) <= 80 for part in error["loc"])
        assert len(error["msg"]) <= 500
    # many problems: the count, then the first 50
    many = {"account_id": "a", "as_of": "2026-11-16", **{f"f{i}": 1 for i in range(300)}}
    response = client.post("/predict", json={"accounts": [many]})
    body = response.json()
    assert response.status_code == 400 and len(body["detail"]) == 50
    assert body["error"].startswith("300 validation errors")


# --- churnml serve on an address other machines can reach -----------------------------------

def test_open_bind_without_api_key_warns(monkeypatch):
    from churnml.api.auth import is_loopback, open_bind_warning

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("::")
    assert open_bind_warning("127.0.0.1", {}) is None
    assert open_bind_warning("0.0.0.0", {"CHURNML_API_KEY": "k"}) is None
    warning = open_bind_warning("0.0.0.0", {})
    assert warning.startswith("WARNING: serving on 0.0.0.0 without an API key")
    assert "CHURNML_API_KEY" in warning


@pytest.mark.parametrize(("host", "key", "warned"), [("0.0.0.0", None, True),
                                                     ("127.0.0.1", None, False),
                                                     ("0.0.0.0", "k-1", False)])
def test_churnml_serve_warns_on_stderr_without_api_key_on_an_open_address(
        monkeypatch, capsys, host, key, warned):
    import subprocess

    from churnml.cli import main
    from churnml.models import registry

    class Child:
        def poll(self):
            return 0

        def wait(self):
            return 0

    monkeypatch.setattr(registry, "champion_version", lambda target: "1")
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: Child())
    if key is None:
        monkeypatch.delenv("CHURNML_API_KEY", raising=False)
    else:
        monkeypatch.setenv("CHURNML_API_KEY", key)
    assert main(["serve", "--host", host, "--port", "3999"]) == 0
    err = capsys.readouterr().err
    assert ("without an API key" in err) is warned
