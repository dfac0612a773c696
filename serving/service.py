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

    from churnml.api import predictor as predictor_module
    from churnml.api.auth import ApiKeyMiddleware
    from churnml.api.schema import (
        MAX_ACCOUNTS,
        AccountPrediction,
        AsOf,
        HistoryTables,
        accounts_annotation,
    )
    from churnml.config import disable_telemetry
    from churnml.errors import ModelNotFoundError

from bentoml.validators import ContentType  # noqa: E402

disable_telemetry()
logger = logging.getLogger("churnml.serving")

# Batching: a request may wait this long (queue + model call) before BentoML sheds it with a
# 503. 20 ms answered 503 under load (STACK.md); 1000 still shed 4 of 898 requests at 16 clients
# on a saturated 2-core machine, 5000 shed none (benchmarks/README.md). Idle, the batcher
# dispatches at once, so this costs nothing when the service keeps up.
MAX_LATENCY_MS = int(os.environ.get("CHURNML_SERVE_MAX_LATENCY_MS", "5000"))
WORKERS = int(os.environ.get("CHURNML_SERVE_WORKERS", "1"))
# BentoML's access log (one formatted line per request) cost 2.4 ms of a 10 ms request on a
# busy 2-core machine (benchmarks/README.md), so it is off unless asked for; errors are
# logged either way. Prometheus metrics (/metrics) stay on (about 1 ms): CHURNML_SERVE_METRICS=0
# turns them off.
ACCESS_LOG = os.environ.get("CHURNML_SERVE_ACCESS_LOG", "0").lower() in ("1", "true", "yes")
METRICS = os.environ.get("CHURNML_SERVE_METRICS", "1").lower() in ("1", "true", "yes")


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


PREDICTOR = _load_predictor()
Accounts = accounts_annotation(PREDICTOR.record_model)
# The response type with its media type stated: without it BentoML works the media type of a
# list-typed response out from the model's JSON schema, generated afresh on every response
# (about 2-4 ms per request on a busy 2-core machine, more than scoring one account).
Predictions = Annotated[list[AccountPrediction], ContentType("application/json")]

metadata_app = FastAPI(title="churnml metadata", docs_url=None, redoc_url=None,
                       openapi_url=None)


@bentoml.asgi_app(metadata_app, path="/")
@bentoml.service(
    name="churnml",
    workers=WORKERS,
    threads=1,
    traffic={"timeout": 30},
    logging={"access": {"enabled": ACCESS_LOG}},
    metrics={"enabled": METRICS},
)
class ChurnService:
    """Churn and expansion predictions with reasons, health score and next best action."""

    def __init__(self) -> None:
        self.predictor = PREDICTOR

    @bentoml.api(batchable=True, max_batch_size=MAX_ACCOUNTS, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, accounts: Accounts) -> Predictions:
        """Score 1 to 1,000 accounts from their features (as `churnml features` writes them)."""
        return self.predictor.predict_records(accounts)

    @bentoml.api(route="/predict_history")
    def predict_history(
        self,
        as_of: AsOf,
        tables: HistoryTables,
    ) -> Predictions:
        """Score accounts from their raw recent history (rows of the data contract's tables)."""
        rows = {name: getattr(tables, name) for name in type(tables).model_fields
                if getattr(tables, name) is not None}
        return self.predictor.predict_history(rows, as_of)

    @metadata_app.get("/metadata")
    def metadata(self) -> dict[str, Any]:
        """Model names, versions, training dates, test metrics, feature list, health weights."""
        return self.predictor.metadata()


ChurnService.add_asgi_middleware(ApiKeyMiddleware)
