"""The service with real champion models: trained once per session on the shared simulated book
into a temporary CHURNML_HOME (SQLite MLflow store).

- parity: for the same accounts and as_of, ``/predict``, ``/predict_history`` and the batch
  scores (``score_frame`` on ``build_features`` output) agree to 1e-9, the time-to-event
  champion's columns included (also from a built Bento);
- a real ``churnml serve`` (-> ``bentoml serve``) on 127.0.0.1, called with
  ``bentoml.SyncHTTPClient`` and with plain HTTP, API key on;
- ``churnml serve`` without a champion exits 2 with the message, no traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.champions import quick_champions_home  # tests/ is on sys.path (conftest.py)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
warnings.filterwarnings("ignore", message=".*httpx.*")

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PATH = ROOT / "serving" / "service.py"
CHURNML = str(Path(sys.executable).with_name("churnml"))
TOLERANCE = 1e-9
NO_TELEMETRY = {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "1"}


@pytest.fixture(scope="session")
def sim_book(sim_tables):
    from churnml.data.io import validate_frames

    book, _ = validate_frames(sim_tables.tables)
    return book


@pytest.fixture(scope="session")
def champion_home(sim_tables, tmp_path_factory):
    """A CHURNML_HOME whose registry has a champion for both targets and the time-to-event
    model."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CHURNML_API_KEY", raising=False)
        with quick_champions_home(tmp_path_factory.mktemp("serving_home"), sim_tables.tables,
                                  num_boost_round=60, env=NO_TELEMETRY,
                                  targets=("churn", "expansion", "time_to_event")) as home:
            yield home


@pytest.fixture(scope="session")
def service_module(champion_home):
    name = "churnml_service_integration"
    spec = importlib.util.spec_from_file_location(name, SERVICE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def client(service_module):
    from starlette.testclient import TestClient

    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from test_serving_fakes import asgi_app

    with TestClient(asgi_app(service_module.ChurnService)) as c:
        yield c


@pytest.fixture(scope="session")
def batch_scores(sim_book, service_module):
    """The weekly job's numbers: build_features on the whole book, then score_frame."""
    from churnml.features.build import build_features
    from churnml.scoring.frame import score_frame

    predictor = service_module.PREDICTOR
    as_of = (sim_book.data_end - pd.Timedelta(days=14)).normalize()
    features = build_features(sim_book, [as_of])
    scores = score_frame(features, predictor.models, predictor.health,
                         time_to_event=predictor.time_to_event)
    return as_of, features, scores


@pytest.fixture(scope="session")
def weekly_batch_scores(sim_book, service_module, batch_scores):
    """The weekly job's numbers with the compared features a week before as_of read from the
    book (what /predict_history has too: the account's history); /predict, a lone request,
    has no week before and counts every signal as new, like ``batch_scores``."""
    from churnml.scoring.compare import week_before
    from churnml.scoring.frame import score_frame

    predictor = service_module.PREDICTOR
    as_of, features, _ = batch_scores
    before = week_before(sim_book, as_of, predictor.playbooks, catalog=predictor.catalog)
    return score_frame(features, predictor.models, predictor.health, week_before=before,
                       time_to_event=predictor.time_to_event)


def _json_value(value):
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as a caller would send them: JSON types (floats exact), dates ISO, missing null."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return json.loads(json.dumps([{k: _json_value(v) for k, v in r.items()} for r in rows]))


def _feature_records(features: pd.DataFrame) -> list[dict]:
    records = _json_records(features)
    for r in records:
        r["as_of"] = r["as_of"][:10]
    return records


def _history_tables(book, account_ids) -> dict[str, list[dict]]:
    tables = {}
    for name, frame in book.tables.items():
        rows = frame[frame["account_id"].isin(account_ids)]
        tables[name] = _json_records(rows)
    return tables


def _time_to_event_floats() -> list[str]:
    from churnml.scoring.schema import time_to_event_floats

    return time_to_event_floats()


def _assert_same_reasons(got_reasons: list[dict], want_reasons: list[dict], label: str) -> None:
    assert [r["feature"] for r in got_reasons] == [r["feature"] for r in want_reasons], label
    for g, w in zip(got_reasons, want_reasons):
        assert abs(g["contribution"] - w["contribution"]) <= TOLERANCE, label
        assert g["text"] == w["text"], label


def _assert_same_scores(got: list[dict], want: pd.DataFrame, label: str) -> None:
    """``got`` (a service's rows) equal ``want`` (the batch job's): the time-to-event
    champion's columns filled on both sides (``champion_home`` has one)."""
    want = want.set_index("account_id")
    assert len(got) == len(want.index.intersection([g["account_id"] for g in got]))
    for row in got:
        ref = want.loc[row["account_id"]]
        for column in ("churn_probability", "expansion_probability", "health_score",
                       "mrr_at_risk"):
            assert abs(row[column] - float(ref[column])) <= TOLERANCE, (label, column, row)
        for column in [c for c in want.columns if c.startswith("health_")
                       and c not in ("health_score", "health_tier", "health_dimensions_used",
                                     "health_weights_version")]:
            expected = float(ref[column])
            if np.isnan(expected):
                assert row[column] is None, (label, column)
            else:
                assert abs(row[column] - expected) <= TOLERANCE, (label, column)
        for column in _time_to_event_floats():
            assert row[column] is not None and np.isfinite(float(ref[column])), (label, column)
            assert abs(row[column] - float(ref[column])) <= TOLERANCE, (label, column, row)
        assert row["time_to_event_model_version"] == ref["time_to_event_model_version"] == "1"
        assert row["health_tier"] == ref["health_tier"]
        assert row["next_best_action"]["playbook"] == ref["next_best_action"]["playbook"]
        for target in ("churn", "expansion"):
            _assert_same_reasons(row[f"{target}_reasons"], list(ref[f"{target}_reasons"]), label)
        # the time-to-event champion's timing reasons, per outcome (schema version 5)
        from churnml.outcomes import OUTCOMES

        for outcome in OUTCOMES:
            column = outcome.timing_reasons_column
            want_reasons = list(ref[column])
            assert want_reasons, (label, column)  # the champion gives every account reasons
            _assert_same_reasons(row[column], want_reasons, f"{label} {column}")


def test_predict_and_predict_history_agree_with_the_batch_job(client, sim_book, batch_scores,
                                                              weekly_batch_scores):
    as_of, features, scores = batch_scores
    chosen = features["account_id"].iloc[:: max(1, len(features) // 8)].head(8).tolist()
    selected = features[features["account_id"].isin(chosen)]

    response = client.post("/predict", json={"accounts": _feature_records(selected)})
    assert response.status_code == 200, response.text[:500]
    _assert_same_scores(response.json(), scores, "/predict")

    response = client.post("/predict_history", json={
        "as_of": f"{as_of:%Y-%m-%d}", "tables": _history_tables(sim_book, chosen)})
    assert response.status_code == 200, response.text[:500]
    rows = response.json()
    assert sorted(r["account_id"] for r in rows) == sorted(chosen)
    _assert_same_scores(rows, weekly_batch_scores, "/predict_history")


def test_predict_history_names_rejected_rows_and_inactive_accounts(client, sim_book,
                                                                   batch_scores):
    as_of, features, _ = batch_scores
    account_id = features["account_id"].iloc[0]
    tables = _history_tables(sim_book, [account_id])
    if tables.get("nps_responses"):
        tables["nps_responses"][0]["score"] = 11
        response = client.post("/predict_history", json={"as_of": f"{as_of:%Y-%m-%d}",
                                                          "tables": tables})
        assert response.status_code == 400
        assert "nps_responses" in response.text and "score" in response.text
    early = (pd.Timestamp(sim_book.accounts["created_at"].min()) - pd.Timedelta(days=30))
    response = client.post("/predict_history", json={
        "as_of": f"{early:%Y-%m-%d}", "tables": _history_tables(sim_book, [account_id])})
    assert response.status_code == 400
    assert "not active" in response.text and account_id in response.text


def test_metadata_with_real_models(client):
    meta = client.get("/metadata").json()
    for target in ("churn", "expansion"):
        model = meta["models"][target]
        assert model["name"] == f"churnml-{target}" and model["version"] == "1"
        assert model["trained_at"] and "test_roc_auc" in model["test_metrics"]
        assert model["features"]
    assert meta["health"]["weights_version"]
    assert meta["time_to_event"]["version"] == "1" and meta["time_to_event"]["features"]
    assert any(f["static"] for f in meta["features"])
    assert meta["outcomes_without_model"] == [o for o in ("churn", "expansion", "contraction")
                                              if o not in meta["models"]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body=None, key: str | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            is_json = response.headers.get_content_type() == "application/json"
            return response.status, json.loads(raw) if is_json else raw.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_real_server_with_sync_client_and_plain_http(champion_home, batch_scores):
    import bentoml

    as_of, features, scores = batch_scores
    records = _feature_records(features.head(3))
    port, key = _free_port(), "integration-key-123"
    # a data home relative to the working directory, as `make demo` leaves it (./.churnml):
    # the workers run in serving/ and must still find it (churnml serve passes it absolute)
    env = {**os.environ, **NO_TELEMETRY, "CHURNML_HOME": champion_home.name,
           "CHURNML_API_KEY": key}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen([CHURNML, "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=champion_home.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        with bentoml.SyncHTTPClient(url, server_ready_timeout=90, token=key) as c:
            rows = c.predict(accounts=records)
        rows = [r if isinstance(r, dict) else r.model_dump() for r in rows]
        _assert_same_scores(rows, scores, "SyncHTTPClient")

        status, body = _http("POST", f"{url}/predict", {"accounts": records}, key)
        assert status == 200
        _assert_same_scores(body, scores, "plain HTTP")
        status, body = _http("POST", f"{url}/predict", {"accounts": records})
        assert status == 401 and key not in str(body)
        status, body = _http("POST", f"{url}/predict",
                             {"accounts": [{**records[0], "nps_latest": 42}]}, key)
        assert status == 400 and "nps_latest" in body and records[0]["account_id"] in body
        request = urllib.request.Request(f"{url}/predict", data=b"accounts=1", method="POST",
                                         headers={"Content-Type": "text/plain",
                                                  "Authorization": f"Bearer {key}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 415
        status, body = _http("GET", f"{url}/metadata", key=key)
        assert status == 200 and body["models"]["churn"]["name"] == "churnml-churn"
        assert _http("GET", f"{url}/livez")[0] == 200
        assert _http("GET", f"{url}/readyz")[0] == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the process group this test started
        try:
            output = server.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            output = server.communicate()[0].decode(errors="replace")
    assert key not in output  # the API key is never logged
    # a bad request is one WARNING line without the values sent, and no traceback
    assert "400 POST /predict: 1 problem(s) at accounts[0].nps_latest" in output, output[-3000:]
    assert "415 POST /predict" in output
    assert "Traceback" not in output and "42" not in output.split("400 POST /predict")[1][:80]


def test_churnml_serve_without_champion_exits_2(tmp_path):
    env = {**os.environ, **NO_TELEMETRY, "CHURNML_HOME": str(tmp_path / "empty_home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    result = subprocess.run([CHURNML, "serve", "--port", str(_free_port())], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "no champion model for any outcome" in output and "run `churnml train`" in output
    assert "Traceback" not in output
    assert time.monotonic() - started < 90  # a fresh SQLite store migrates first


def test_built_bento_serves_without_the_mlflow_store(champion_home, batch_scores, tmp_path):
    """`make bento` (serving/build_bento.py) then `bentoml serve <tag>` with no MLflow store."""
    as_of, features, scores = batch_scores
    bento_home = tmp_path / "bentoml_home"
    env = {**os.environ, **NO_TELEMETRY, "CHURNML_HOME": str(champion_home),
           "BENTOML_HOME": str(bento_home)}
    env.pop("CHURNML_API_KEY", None)
    built = subprocess.run([sys.executable, str(ROOT / "serving" / "build_bento.py")], env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    tag = built.stdout.strip().splitlines()[-1]
    assert tag.startswith("churnml:")

    nowhere = tmp_path / "no_mlflow_here"
    port = _free_port()
    serve_env = {**env, "CHURNML_HOME": str(nowhere), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", tag, "--host",
                               "127.0.0.1", "--port", str(port)], env=serve_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if _http("GET", f"{url}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        status, body = _http("POST", f"{url}/predict",
                             {"accounts": _feature_records(features.head(2))})
        assert status == 200, body
        _assert_same_scores(body, scores, "Bento")
        status, meta = _http("GET", f"{url}/metadata")
        assert status == 200 and meta["models"]["churn"]["version"] == "1"
        # the time-to-event champion travelled inside the Bento
        assert meta["time_to_event"]["version"] == "1"
        assert meta["time_to_event"]["name"] == "churnml-time-to-event"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the process group this test started
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.communicate()
    assert not nowhere.exists()  # the MLflow store was never touched
