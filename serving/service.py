"""churnml's prediction service (BentoML 1.4). Thin: the logic lives in ``churnml.api``.

Endpoints (``docs/api.md``):

- ``POST /predict``: ``{"accounts": [{"account_id", "as_of", <features>...}]}`` -> one scored
  row per account (probabilities, health, reasons, next best action, model versions).
  Batchable: concurrent callers share model calls.
- ``POST /predict_history``: ``{"as_of": "YYYY-MM-DD", "tables": {<table>: [rows]}}`` -> the same
  rows, features built with the batch builders.
- ``GET /metadata``: model names, versions, training dates, test metrics, features, health
  weights version.
- ``GET /livez``, ``GET /readyz``: liveness and readiness (BentoML's; never need the API key).

The champion models are loaded once per worker process when this module is imported, because
the payload model (the known feature fields) depends on the static attributes they were
trained with. With no champion the process prints the message and exits with code 2.
"""

from __future__ import annotations

import os

# One OpenMP thread per worker, set before LightGBM loads: for the few rows of a request the
# thread start-up costs 30-70x the prediction itself (9 ms vs 0.13 ms per row measured on a
# busy 2-core machine); more throughput comes from batching and workers instead.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402

# In a built Bento (``<bento>/src/service.py`` beside ``<bento>/bento.yaml``) the models, the
# configuration and the churnml package travel inside the Bento (serving/build_bento.py).
HERE = Path(__file__).resolve().parent
IN_BENTO = (HERE.parent / "bento.yaml").exists()
if IN_BENTO:
    os.environ.setdefault("CHURNML_CONFIG_DIR", str(HERE))

import bentoml  # noqa: E402

with bentoml.importing():
    from fastapi import FastAPI

    from churnml.api import limits
    from churnml.api import predictor as predictor_module
    from churnml.api.auth import ApiKeyMiddleware
    from churnml.api.batching import MicroBatcher, prometheus_batch_observer
    from churnml.api.schema import (
        AsOf,
        HistoryTables,
        PredictionsJSON,
        accounts_annotation,
        prediction_model,
    )
    from churnml.config import disable_telemetry, serve_workers
    from churnml.errors import ChurnMLError, ModelNotFoundError

from bentoml.validators import ContentType  # noqa: E402
from starlette.responses import Response  # noqa: E402

disable_telemetry()
logger = logging.getLogger("churnml.serving")


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


WORKERS = serve_workers()  # CHURNML_SERVE_WORKERS, else one per CPU (churnml.config)
# Per-request costs that are optional, measured on a 2-core machine (benchmarks/README.md):
# - BentoML's access log (one formatted line per request, 2.4 ms of a 10 ms request): off unless
#   asked for; errors are logged either way;
# - OpenTelemetry spans: BentoML samples none by default (tracing.sample_rate 0) yet its ASGI
#   middleware still made a span per request (a quarter of the server's CPU at 16 clients), so
#   every URL is excluded from tracing unless CHURNML_SERVE_TRACING=1 (then BentoML's tracing
#   configuration applies: exporter, sample rate);
# - Prometheus metrics (/metrics): on, CHURNML_SERVE_METRICS=0 turns them off (about 10% more
#   throughput at 16 clients).
ACCESS_LOG = _flag("CHURNML_SERVE_ACCESS_LOG", False)
TRACING = _flag("CHURNML_SERVE_TRACING", False)
METRICS = _flag("CHURNML_SERVE_METRICS", True)
# Limits (churnml.api.limits, docs/api.md "Limits"), read once: a bad value stops the service.
try:
    TIMEOUT_S = limits.request_timeout_s()
    HISTORY_SLOTS = limits.history_concurrency()
    HISTORY_WAIT_S = limits.history_wait_s()
    for check in (limits.max_body_bytes, limits.max_history_rows, limits.max_row_keys):
        check()
except ChurnMLError as exc:
    print(f"error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(exc.exit_code) from None
limits.install_log_filter()  # no traceback in the log for a caller's mistake (4xx)


def _load_predictor():
    try:
        if IN_BENTO:
            from bento_models import load_bento_predictor

            return load_bento_predictor()
        return predictor_module.load_predictor()
    except ModelNotFoundError as exc:
        # A clear message and exit code 2, never a traceback (churnml serve checks first too).
        logger.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except ChurnMLError as exc:  # e.g. the registry cannot be reached: exit code 1
        logger.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(exc.exit_code) from None


PREDICTOR = _load_predictor()
Accounts = accounts_annotation(PREDICTOR.record_model)
# The response type with its media type stated: without it BentoML works the media type of a
# list-typed response out from the model's JSON schema, generated afresh on every response
# (about 2-4 ms per request on a busy 2-core machine, more than scoring one account).
# The row type is the one output schema (churnml.scoring.schema) for the health score in force.
AccountPrediction = prediction_model(PREDICTOR.health.dimension_names)
Predictions = Annotated[list[AccountPrediction], ContentType("application/json")]
# ... which documents the answer (OpenAPI); the answer itself is sent as checked JSON bytes
# (churnml.api.schema.PredictionsJSON: the same rows, a fifth of BentoML's serialization time).
PREDICTIONS_JSON = PredictionsJSON(AccountPrediction)


def _answer(rows: list[dict[str, Any]] | Response) -> Any:
    """The rows as a JSON response with its length (BentoML passes a Response through); a
    response already made (503 busy, 504 deadline: churnml.api.limits) goes as it is."""
    if isinstance(rows, Response):
        return rows
    return Response(PREDICTIONS_JSON(rows), media_type="application/json")

metadata_app = FastAPI(title="churnml metadata", docs_url=None, redoc_url=None,
                       openapi_url=None)


@bentoml.asgi_app(metadata_app, path="/")
@bentoml.service(
    name="churnml",
    workers=WORKERS,
    threads=1,
    traffic={"timeout": TIMEOUT_S},
    logging={"access": {"enabled": ACCESS_LOG}},
    metrics={"enabled": METRICS},
    tracing={} if TRACING else {"excluded_urls": ".*"},
)
class ChurnService:
    """Each outcome's probability (churn, expansion, contraction: those with a champion) with
    reasons, health score, alerts and next best action."""

    def __init__(self) -> None:
        self.predictor = PREDICTOR
        # concurrent /predict calls share model calls (churnml.api.batching explains why this
        # and not BentoML's batchable=True)
        self.batcher = MicroBatcher(self.predictor.predict_records,
                                    on_batch=prometheus_batch_observer() if METRICS else None)
        # /predict_history builds features: a few at once, stopped when the request times out
        self.history_gate = limits.HeavyGate("/predict_history", HISTORY_SLOTS, HISTORY_WAIT_S,
                                             TIMEOUT_S)
        limits.install_log_filter()  # again, after BentoML configured the worker's logging

    @bentoml.api
    async def predict(self, accounts: Accounts) -> Predictions:
        """Score 1 to 1,000 accounts from their features (as `churnml features` writes them)."""
        return _answer(await self.batcher(accounts))

    @bentoml.api(route="/predict_history")
    async def predict_history(
        self,
        as_of: AsOf,
        tables: HistoryTables,
    ) -> Predictions:
        """Score accounts from their raw recent history (rows of the data contract's tables)."""
        rows = {name: getattr(tables, name) for name in type(tables).model_fields
                if getattr(tables, name) is not None}
        limits.check_history_tables(rows)  # rows per table, keys per row: 400
        return _answer(await self.history_gate.respond(self.predictor.predict_history, rows,
                                                       as_of))

    @metadata_app.get("/metadata")
    def metadata(self) -> dict[str, Any]:
        """Model names, versions, training dates, test metrics, feature list, health weights."""
        return self.predictor.metadata()


# outermost first: one log line per 4xx, then the API key, then body type and size
ChurnService.add_asgi_middleware(limits.ClientErrorLogMiddleware)
ChurnService.add_asgi_middleware(ApiKeyMiddleware)
ChurnService.add_asgi_middleware(limits.BodyLimitMiddleware)
