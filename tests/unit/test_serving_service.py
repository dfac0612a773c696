"""The BentoML service in-process (ASGI TestClient) over small fake models: every endpoint,
every bad-input case, auth on and off, start-up without a champion."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

from test_serving_fakes import account, asgi_app, fake_model_map

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PATH = ROOT / "serving" / "service.py"

warnings.filterwarnings("ignore", message=".*httpx.*")
pytest.importorskip("bentoml")


def _import_service(monkeypatch, name: str):
    """Import serving/service.py as a fresh module whose champion loader returns fakes."""
    from churnml.api import predictor as predictor_module

    def fake_load():
        return predictor_module.Predictor(fake_model_map())

    monkeypatch.setattr(predictor_module, "load_predictor", fake_load)
    spec = importlib.util.spec_from_file_location(name, SERVICE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def service_module():
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    module = _import_service(monkeypatch, "churnml_service_under_test")
    yield module
    monkeypatch.undo()


def _client(service_module):
    from starlette.testclient import TestClient

    return TestClient(asgi_app(service_module.ChurnService))


@pytest.fixture(scope="module")
def client(service_module):
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("CHURNML_API_KEY", raising=False)
    with _client(service_module) as c:
        yield c
    monkeypatch.undo()


# --- /predict --------------------------------------------------------------------------------

def test_predict_returns_one_row_per_account_with_the_batch_numbers(client, service_module):
    accounts = [account(i) for i in range(3)]
    response = client.post("/predict", json={"accounts": accounts})
    assert response.status_code == 200, response.text
    rows = response.json()
    assert [r["account_id"] for r in rows] == ["A-0000", "A-0001", "A-0002"]
    predictor = service_module.PREDICTOR
    expected = predictor.score(predictor.frame_from_records(
        [predictor.record_model.model_validate(a) for a in accounts]))
    for row, (_, want) in zip(rows, expected.iterrows()):
        assert row["as_of"] == "2026-11-16"
        assert row["churn_probability"] == pytest.approx(want["churn_probability"], abs=1e-12)
        assert row["expansion_probability"] == pytest.approx(want["expansion_probability"],
                                                             abs=1e-12)
        assert row["health_score"] == pytest.approx(want["health_score"], abs=1e-12)
        assert row["health_tier"] == want["health_tier"]
        assert 1 <= len(row["churn_reasons"]) <= 3
        assert {"feature", "value", "contribution", "text"} <= set(row["churn_reasons"][0])
        assert row["next_best_action"]["playbook"]
        assert row["churn_model_version"] == "4" and row["expansion_model_version"] == "2"
        assert any(k.startswith("health_") and k not in ("health_score", "health_tier")
                   for k in row)


def test_predict_allows_missing_features(client):
    response = client.post("/predict", json={"accounts": [
        {"account_id": "bare", "as_of": "2026-11-16"},
        {"account_id": "partial", "as_of": "2026-11-16", "nps_latest": None, "logins_30d": 3},
    ]})
    assert response.status_code == 200, response.text
    rows = response.json()
    assert [r["account_id"] for r in rows] == ["bare", "partial"]
    assert all(0 <= r["churn_probability"] <= 1 for r in rows)


def test_an_account_scores_the_same_alone_and_in_a_batch(client):
    accounts = [account(i) for i in range(5)]
    together = client.post("/predict", json={"accounts": accounts}).json()
    alone = client.post("/predict", json={"accounts": [accounts[3]]}).json()
    assert alone[0]["churn_probability"] == together[3]["churn_probability"]
    assert alone[0]["expansion_probability"] == together[3]["expansion_probability"]


def test_integer_account_ids_are_read_as_strings(client):
    response = client.post("/predict", json={"accounts": [account(1, account_id=1234)]})
    assert response.status_code == 200, response.text
    assert response.json()[0]["account_id"] == "1234"


def _errors(response):
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    return body["detail"]


@pytest.mark.parametrize(
    ("overrides", "field", "phrase"),
    [
        ({"nps_latest": 11}, "nps_latest", "less than or equal to 10"),
        ({"nps_latest": -1}, "nps_latest", "greater than or equal to 0"),
        ({"logins_30d": -3}, "logins_30d", "greater than or equal to 0"),
        ({"cancellation_inquiries_90d": -1}, "cancellation_inquiries_90d", "greater than"),
        ({"logins_30d": "twelve"}, "logins_30d", "valid number"),
        ({"logins_30d": "12"}, "logins_30d", "valid number"),
        ({"logins_30d": True}, "logins_30d", "valid number"),
        ({"logins_30d": [1]}, "logins_30d", "valid number"),
        ({"plan": {"a": 1}}, "plan", "valid string"),
        ({"as_of": "last tuesday"}, "as_of", "date"),
        ({"favourite_colour": "blue"}, "favourite_colour", "unknown field"),
    ],
)
def test_bad_fields_are_400_naming_field_and_account(client, overrides, field, phrase):
    accounts = [account(0), account(7, **overrides)]
    errors = _errors(client.post("/predict", json={"accounts": accounts}))
    assert len(errors) == 1
    error = errors[0]
    assert error["loc"][-3:] == ["accounts", 1, field] or error["loc"][-2:] == [1, field]
    assert "accounts[1]" in error["msg"] and "'A-0007'" in error["msg"]
    assert field in error["msg"] and phrase in error["msg"]


def test_missing_account_id_is_named_by_position(client):
    bad = account(2)
    del bad["account_id"]
    errors = _errors(client.post("/predict", json={"accounts": [account(0), bad]}))
    assert "accounts[1] (no account_id)" in errors[0]["msg"]
    assert "account_id" in errors[0]["msg"]


def test_every_bad_account_is_reported_at_once(client):
    accounts = [account(0, nps_latest=12), account(1), account(2, logins_30d=-1)]
    errors = _errors(client.post("/predict", json={"accounts": accounts}))
    assert sorted(e["loc"][-2] for e in errors) == [0, 2]


def test_empty_and_oversized_lists_are_400(client, service_module):
    errors = _errors(client.post("/predict", json={"accounts": []}))
    assert "empty" in errors[0]["msg"]
    too_many = [{"account_id": f"x{i}", "as_of": "2026-11-16"} for i in range(1001)]
    errors = _errors(client.post("/predict", json={"accounts": too_many}))
    assert "at most 1000 accounts" in errors[0]["msg"]


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"accounts": "A-1"}', b"{}",
                                  b'{"accounts": [1]}', b'{"accounts": [null]}',
                                  b'{"accounts": [{"account_id": "a", "as_of": "2026-11-16", '
                                  b'"nps_latest": NaN}]}'])
def test_malformed_bodies_are_4xx_never_5xx(client, body):
    response = client.post("/predict", content=body,
                           headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text


# --- /predict_history ------------------------------------------------------------------------

def test_predict_history_refuses_unknown_tables_and_bad_as_of(client):
    errors = _errors(client.post("/predict_history", json={
        "as_of": "2026-11-16", "tables": {"accounts": [{"account_id": "a"}],
                                          "mrr_changes": [{"account_id": "a"}],
                                          "gossip": []}}))
    assert any(e["loc"][-1] == "gossip" for e in errors)
    errors = _errors(client.post("/predict_history", json={
        "as_of": "soon", "tables": {"accounts": [], "mrr_changes": []}}))
    assert any(e["loc"][-1] == "as_of" for e in errors)


def test_predict_history_needs_the_required_tables(client):
    errors = _errors(client.post("/predict_history", json={
        "as_of": "2026-11-16", "tables": {"accounts": [{"account_id": "a",
                                                        "created_at": "2025-01-01"}]}}))
    assert any("mrr_changes" in str(e["loc"]) for e in errors)


# --- /metadata, probes, OpenAPI --------------------------------------------------------------

def test_metadata_describes_models_features_and_health(client):
    response = client.get("/metadata")
    assert response.status_code == 200, response.text
    meta = response.json()
    churn = meta["models"]["churn"]
    assert churn["name"] == "churnml-churn" and churn["version"] == "4"
    assert churn["trained_at"].startswith("2026-11-01")
    assert churn["test_metrics"]["test_roc_auc"] == 0.81
    assert churn["train_end"] == "2026-08-17"  # the last as_of date the model was fitted on
    assert meta["models"]["expansion"]["name"] == "churnml-expansion"
    assert meta["health"]["weights_version"]
    names = [f["name"] for f in meta["features"]]
    assert "nps_latest" in names and "plan" in names
    nps = next(f for f in meta["features"] if f["name"] == "nps_latest")
    assert (nps["minimum"], nps["maximum"]) == (0, 10)


def test_probes_and_openapi(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    spec = client.get("/docs.json").json()
    assert {"/predict", "/predict_history", "/metadata"} <= set(spec["paths"])


# --- auth ------------------------------------------------------------------------------------

def test_api_key_guards_every_endpoint_but_the_probes(client, monkeypatch):
    monkeypatch.setenv("CHURNML_API_KEY", "s3cret-key")
    c = client
    payload = {"accounts": [account(1)]}
    assert c.post("/predict", json=payload).status_code == 401
    assert c.post("/predict", json=payload,
                  headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/predict", json=payload,
                  headers={"Authorization": "Basic s3cret-key"}).status_code == 401
    denied = c.get("/metadata")
    assert denied.status_code == 401 and "s3cret-key" not in denied.text
    assert c.post("/predict_history", json={}).status_code == 401
    assert c.get("/docs.json").status_code == 401
    assert c.get("/livez").status_code == 200
    assert c.get("/readyz").status_code == 200
    ok = {"Authorization": "Bearer s3cret-key"}
    assert c.post("/predict", json=payload, headers=ok).status_code == 200
    assert c.get("/metadata", headers=ok).status_code == 200


def test_bearer_comparison():
    from churnml.api.auth import bearer_matches, configured_api_key

    assert bearer_matches(b"Bearer k1", "k1")
    assert bearer_matches("bearer k1", "k1")
    assert not bearer_matches(b"Bearer k12", "k1")
    assert not bearer_matches(None, "k1")
    assert not bearer_matches(b"k1", "k1")
    assert configured_api_key({"CHURNML_API_KEY": ""}) is None
    assert configured_api_key({"CHURNML_API_KEY": "x"}) == "x"


# --- start-up without a champion -------------------------------------------------------------

def test_service_without_champion_exits_2_with_the_message(monkeypatch, capsys):
    from churnml.api import predictor as predictor_module
    from churnml.errors import ModelNotFoundError

    def no_champion():
        raise ModelNotFoundError(
            "no champion model for churnml-churn: run `churnml train` first")

    monkeypatch.setattr(predictor_module, "load_predictor", no_champion)
    spec = importlib.util.spec_from_file_location("churnml_service_no_champion", SERVICE_PATH)
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(SystemExit) as exit_info:
        spec.loader.exec_module(module)
    assert exit_info.value.code == 2
    assert "no champion model for churnml-churn: run `churnml train` first" in \
        capsys.readouterr().err


def test_signed_features_accept_negatives_and_bounded_ones_do_not(client):
    ok = account(3, usage_trend_8w=-0.4, days_to_renewal=-12.0, mrr_change_90d=-0.5,
                 nps_change=-4.0)
    assert client.post("/predict", json={"accounts": [ok]}).status_code == 200
    for field, value in (("mrr_change_90d", -1.5), ("nps_change", -11.0), ("rfm_recency", 6.0),
                         ("meeting_attendance_rate_90d", 1.5), ("days_since_last_login", -1.0)):
        errors = _errors(client.post("/predict", json={"accounts": [account(3, **{field: value})]}))
        assert errors[0]["loc"][-1] == field, (field, errors)


def test_frame_from_records_has_the_build_features_dtypes(service_module):
    predictor = service_module.PREDICTOR
    records = [predictor.record_model.model_validate(account(i)) for i in range(2)]
    frame = predictor.frame_from_records(records)
    assert list(frame.columns[:2]) == ["account_id", "as_of"]
    assert str(frame["as_of"].dtype) == "datetime64[ns]"
    assert frame["logins_30d"].dtype == "float64" and frame["nps_change"].isna().all()
    assert frame["plan"].tolist() == ["starter", "enterprise"]
    assert str(frame["plan"].dtype) == "str"
    assert set(frame.columns) == {"account_id", "as_of"} | {f.name for f in predictor.fields}



def test_the_service_frame_path_equals_the_plain_frame_and_scores_the_same(service_module,
                                                                         monkeypatch):
    """The service builds its request frame with text as objects in one step
    (DataFrame._from_arrays, falling back to the dict constructor): the same values, column
    order aside, as frame_from_records, and the same scores either way."""
    import pandas as pd

    from churnml.api import predictor as predictor_module

    predictor = service_module.PREDICTOR
    records = [predictor.record_model.model_validate(account(i)) for i in range(3)]
    plain = predictor.frame_from_records(records)
    fast, columns = predictor._frame_and_columns(records, text_dtype="object")
    assert str(fast["as_of"].dtype) == "datetime64[ns]"
    assert set(fast.columns) == set(plain.columns)
    for name in plain.columns:
        assert fast[name].astype(object).where(fast[name].notna(), None).tolist() == \
            plain[name].astype(object).where(plain[name].notna(), None).tolist(), name
    assert columns.block is not None and columns.block_names == tuple(predictor.numeric_fields)
    expected = predictor.predict_records(records)
    # without pandas' _from_arrays the dict constructor gives the same frame and answers
    monkeypatch.delattr(pd.DataFrame, "_from_arrays")
    fallback, _ = predictor._frame_and_columns(records, text_dtype="object")
    pd.testing.assert_frame_equal(fallback, fast)
    assert predictor.predict_records(records) == expected
    assert predictor_module.json_safe(predictor.score(plain, output="records")) == expected


# --- concurrent /predict callers share model calls (churnml.api.batching) --------------------

def test_concurrent_predict_requests_share_model_calls_and_get_their_own_rows(
        client, service_module, monkeypatch):
    import asyncio

    import bentoml
    import httpx

    # the instance the client's lifespan created (BentoML keeps the current one)
    service = bentoml.get_current_service()
    assert service.predictor is service_module.PREDICTOR
    batcher = service.batcher
    model_calls: list[int] = []
    score = batcher.score

    def counting_score(items):
        model_calls.append(len(items))
        return score(items)

    monkeypatch.setattr(batcher, "score", counting_score)
    payloads = [[account(i), account(100 + i)] if i % 4 == 0 else [account(i)]
                for i in range(12)]

    async def send_together():
        # same app, on the loop its lifespan started on (the TestClient's portal), but with
        # the 12 requests in flight at once, as an HTTP server would hand them over
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await asyncio.gather(*(c.post("/predict", json={"accounts": accounts})
                                          for accounts in payloads))

    batches_before = batcher.stats.batches
    responses = client.portal.call(send_together)
    together_calls = list(model_calls)
    assert [r.status_code for r in responses] == [200] * 12, [r.text for r in responses]
    assert sum(together_calls) == sum(len(accounts) for accounts in payloads)
    assert len(together_calls) < len(payloads)  # shared: fewer model calls than requests
    assert batcher.stats.batches - batches_before == len(together_calls)
    assert max(together_calls) > 2  # at least one model call took several requests' accounts

    for accounts, response in zip(payloads, responses):
        rows = response.json()
        assert [row["account_id"] for row in rows] == [a["account_id"] for a in accounts]
        alone = [client.post("/predict", json={"accounts": [a]}).json()[0] for a in accounts]
        assert rows == alone


def test_predictor_takes_models_by_outcome_and_names_the_missing_ones():
    from churnml.api.predictor import Predictor
    from churnml.errors import ModelNotFoundError, UsageError
    from churnml.health.score import HealthScore

    models = fake_model_map()
    predictor = Predictor(models, health=HealthScore())
    assert predictor.models == models
    meta = predictor.metadata()
    assert meta["outcomes_without_model"] == ["contraction"]
    assert meta["models"]["churn"]["model_card"] is None  # no card known for a fake model
    card = "file:///store/1/abc/artifacts/model_card.md"
    with_card = Predictor(models, health=HealthScore(), model_info={"churn": {"model_card": card}})
    assert with_card.metadata()["models"]["churn"]["model_card"] == card
    assert set(meta["models"]) == {"churn", "expansion"}
    assert meta["models"]["churn"]["name"] == "churnml-churn"
    only_churn = Predictor({"churn": models["churn"]}, health=HealthScore())
    assert only_churn.metadata()["outcomes_without_model"] == ["expansion", "contraction"]
    records = [only_churn.record_model.model_validate(account(i)) for i in range(3)]
    rows = only_churn.predict_records(records)
    # JSON null, not NaN, for an outcome without a model
    assert all(r["expansion_probability"] is None and r["mrr_at_risk_of_contraction"] is None
               for r in rows)
    assert all(r["contraction_model_version"] is None and r["contraction_reasons"] == []
               for r in rows)
    assert all(0 <= r["churn_probability"] <= 1 and r["next_best_action"]["reason"] for r in rows)
    with pytest.raises(ModelNotFoundError):
        Predictor({}, health=HealthScore())
    with pytest.raises(UsageError, match="upsell"):
        Predictor({"upsell": models["churn"]}, health=HealthScore())


# --- the answer's bytes ---------------------------------------------------------------------

def test_the_answer_is_the_rows_as_the_response_model_serializes_them(client, service_module):
    """/predict sends checked JSON bytes with a length (not BentoML's chunked stream): the same
    JSON as the response model's own serialization of the scored rows."""
    from pydantic import TypeAdapter

    accounts = [account(i) for i in range(4)]
    response = client.post("/predict", json={"accounts": accounts})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert "transfer-encoding" not in response.headers
    predictor = service_module.PREDICTOR
    rows = predictor.predict_records([predictor.record_model.model_validate(a)
                                      for a in accounts])
    adapter = TypeAdapter(service_module.Predictions)
    assert response.content == adapter.dump_json(adapter.validate_python(rows))


def test_a_row_that_breaks_the_output_schema_is_never_sent(service_module):
    from churnml.api.schema import PredictionsJSON, ResponseError

    encode = PredictionsJSON(service_module.AccountPrediction)
    predictor = service_module.PREDICTOR
    rows = predictor.predict_records([predictor.record_model.model_validate(account(0))])
    assert encode(rows)  # the real rows pass
    with pytest.raises(ResponseError, match="does not match the output schema"):
        encode([{**rows[0], "not_a_column": 1.0}])
    broken = {**rows[0], "next_best_action": {**rows[0]["next_best_action"], "reason": ""}}
    with pytest.raises(ResponseError, match="next_best_action"):
        encode([broken])


def test_a_schema_break_is_a_500_not_the_callers_fault(service_module, monkeypatch):
    from starlette.testclient import TestClient

    def broken(rows):
        return [{**row, "not_a_column": 1.0} for row in rows]

    original = service_module.PREDICTOR.predict_records
    monkeypatch.setattr(service_module.PREDICTOR, "predict_records",
                        lambda records: broken(original(records)))
    with TestClient(asgi_app(service_module.ChurnService), raise_server_exceptions=False) as c:
        response = c.post("/predict", json={"accounts": [account(0)]})
    assert response.status_code == 500
    assert "not_a_column" not in response.text
