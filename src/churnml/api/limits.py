"""What the HTTP service accepts, how much of it, and what it logs about a bad request.

Everything here is plain ASGI or asyncio, so it is tested without a server
(``tests/unit/test_serving_limits.py``). ``docs/api.md`` ("Limits") and ``docs/security.md``
describe the behaviour for callers and operators. Settings (environment, read when the service
starts; a bad value stops it with a message):

- ``CHURNML_SERVE_MAX_BODY_BYTES`` (default 10 MiB): a request body over it is answered 413
  before anything parses it: at once when ``Content-Length`` says so, else as soon as the bytes
  received pass it (:class:`BodyLimitMiddleware`);
- POST, PUT and PATCH bodies must be ``Content-Type: application/json`` (415 otherwise);
- ``CHURNML_SERVE_MAX_HISTORY_ROWS`` (default and ceiling 200,000) rows per table and
  ``CHURNML_SERVE_MAX_ROW_KEYS`` (default 64) keys per row in ``/predict_history`` (400 naming
  the table and row, :func:`check_history_tables`);
- ``CHURNML_SERVE_HISTORY_CONCURRENCY`` (default 1) ``/predict_history`` calls build features at
  once per worker; a further call waits up to ``CHURNML_SERVE_HISTORY_WAIT_S`` (default 5 s)
  for a slot, then gets 503 with ``Retry-After`` (:class:`HeavyGate`);
- ``CHURNML_SERVE_TIMEOUT_S`` (default 30): BentoML's request timeout (504). Heavy work runs
  against a :class:`churnml.deadline.Deadline`: when the request times out (or the client
  leaves) the work stops at its next checkpoint (per feature built) instead of computing on.

A 4xx answer is logged as one WARNING line (status, method, path, the error or the places of
the problems), never the body and never a traceback (:class:`ClientErrorLogMiddleware`,
:func:`install_log_filter`); strings the answer echoes are cut to :data:`ECHO_LIMIT`
characters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Sequence

from churnml.deadline import Deadline, DeadlineExceeded, active, checkpoint
from churnml.errors import ConfigError

logger = logging.getLogger("churnml.serving")

MAX_BODY_BYTES_ENV = "CHURNML_SERVE_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_ROW_KEYS_ENV = "CHURNML_SERVE_MAX_ROW_KEYS"
DEFAULT_MAX_ROW_KEYS = 64
MAX_HISTORY_ROWS_ENV = "CHURNML_SERVE_MAX_HISTORY_ROWS"
HISTORY_CONCURRENCY_ENV = "CHURNML_SERVE_HISTORY_CONCURRENCY"
DEFAULT_HISTORY_CONCURRENCY = 1
HISTORY_WAIT_ENV = "CHURNML_SERVE_HISTORY_WAIT_S"
DEFAULT_HISTORY_WAIT_S = 5.0
TIMEOUT_ENV = "CHURNML_SERVE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 30.0

#: characters of a caller's string (a field name, a Content-Type) echoed in an answer or a log
ECHO_LIMIT = 80
#: problems listed in one 400 answer (the count says how many there were)
MAX_REPORTED_ERRORS = 50
#: characters of one problem's message in a 400 answer
MAX_MESSAGE_CHARS = 500
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_MEDIA_TYPE = "application/json"
HISTORY_ROWS_CEILING = 200_000  # churnml.api.schema.MAX_HISTORY_ROWS: the payload model's cap


# --- settings ---------------------------------------------------------------------------------

def _number(name: str, default: float, environ: Mapping[str, str] | None, *, integer: bool,
            minimum: float) -> float:
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name}={clip(raw)!s} is not a{'n integer' if integer else ' number'}"
                          ) from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}={raw} must be >= {minimum:g}")
    return value


def max_body_bytes(environ: Mapping[str, str] | None = None) -> int:
    """``CHURNML_SERVE_MAX_BODY_BYTES``, default 10 MiB."""
    return int(_number(MAX_BODY_BYTES_ENV, DEFAULT_MAX_BODY_BYTES, environ, integer=True,
                       minimum=1))


def max_row_keys(environ: Mapping[str, str] | None = None) -> int:
    """``CHURNML_SERVE_MAX_ROW_KEYS``: keys per row of a ``/predict_history`` table (64)."""
    return int(_number(MAX_ROW_KEYS_ENV, DEFAULT_MAX_ROW_KEYS, environ, integer=True,
                       minimum=1))


def max_history_rows(environ: Mapping[str, str] | None = None) -> int:
    """``CHURNML_SERVE_MAX_HISTORY_ROWS``: rows per table of a ``/predict_history`` call
    (default and ceiling :data:`HISTORY_ROWS_CEILING`: the payload model refuses more)."""
    value = int(_number(MAX_HISTORY_ROWS_ENV, HISTORY_ROWS_CEILING, environ, integer=True,
                        minimum=1))
    return min(value, HISTORY_ROWS_CEILING)


def history_concurrency(environ: Mapping[str, str] | None = None) -> int:
    """``CHURNML_SERVE_HISTORY_CONCURRENCY``: ``/predict_history`` calls at once per worker."""
    return int(_number(HISTORY_CONCURRENCY_ENV, DEFAULT_HISTORY_CONCURRENCY, environ,
                       integer=True, minimum=1))


def history_wait_s(environ: Mapping[str, str] | None = None) -> float:
    """``CHURNML_SERVE_HISTORY_WAIT_S``: how long a call waits for a slot before a 503."""
    return _number(HISTORY_WAIT_ENV, DEFAULT_HISTORY_WAIT_S, environ, integer=False, minimum=0)


def request_timeout_s(environ: Mapping[str, str] | None = None) -> float:
    """``CHURNML_SERVE_TIMEOUT_S``: BentoML's request timeout (504), default 30 s (a whole
    number of seconds comes back as an ``int``, as BentoML's message shows it)."""
    value = _number(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, environ, integer=False, minimum=1)
    return int(value) if float(value).is_integer() else value


def clip(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``value`` as text, cut to ``limit`` characters (``...`` marks the cut)."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


# --- ASGI helpers -----------------------------------------------------------------------------

def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


async def send_json(send, status: int, body: Mapping[str, Any],
                    headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer ``status`` with a JSON ``body`` (a complete ASGI response)."""
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        *headers]})
    await send({"type": "http.response.body", "body": data})


class BodyLimitMiddleware:
    """415 for a body that is not JSON, 413 for a body over the size limit, before parsing.

    For POST/PUT/PATCH: the media type of ``Content-Type`` must be ``application/json``
    (parameters such as ``charset`` are fine); a ``Content-Length`` over the limit is answered
    at once, without reading the body; otherwise the body is read here, counting the bytes as
    they arrive, and answered 413 as soon as they pass the limit (a chunked upload cannot get
    round it). The body read is then handed on unchanged.
    """

    def __init__(self, app, max_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_body_bytes() if max_bytes is None else int(max_bytes)

    def _too_large(self) -> dict[str, str]:
        return {"error": f"request body too large: at most {self.max_bytes} bytes "
                         f"({MAX_BODY_BYTES_ENV}); send fewer accounts or rows per call"}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = _header(scope, b"content-type")
        media_type = (content_type or b"").split(b";")[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE.encode():
            shown = "none" if content_type is None else repr(
                clip(content_type.decode("latin-1")))
            await send_json(send, 415, {"error": f"unsupported Content-Type {shown}: send the "
                                                 f"body as JSON with 'Content-Type: "
                                                 f"{JSON_MEDIA_TYPE}'"})
            return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_json(send, 400, {"error": "invalid Content-Length header"})
                return
            if declared > self.max_bytes:
                await send_json(send, 413, self._too_large())
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_json(send, 413, self._too_large())
                return
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# --- bad requests in the log ------------------------------------------------------------------

def _loc_text(loc: Any) -> str:
    if not isinstance(loc, (list, tuple)):
        return clip(loc, 40)
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + clip(part, 40)
    return out


def sanitize_error_body(body: bytes) -> tuple[bytes, str]:
    """A 4xx answer's JSON body with echoed strings bounded, and a one-line summary for the log.

    ``detail`` keeps its first :data:`MAX_REPORTED_ERRORS` problems (``error`` says how many
    there were), each ``loc`` part cut to :data:`ECHO_LIMIT` characters and each ``msg`` to
    :data:`MAX_MESSAGE_CHARS`. The summary holds no value from the request: the error for a
    plain error, else the number of problems and where the first five are.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return body, "non-JSON body"
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # BentoML answers its own 4xx errors as a one-element list
    if not isinstance(data, dict):
        return body, "error"
    changed = False
    detail = data.get("detail")
    summary = clip(data.get("error", "error"), ECHO_LIMIT)
    if isinstance(detail, list):
        total = len(detail)
        if total > MAX_REPORTED_ERRORS:
            detail = detail[:MAX_REPORTED_ERRORS]
            data["error"] = (f"{total} validation errors; the first {MAX_REPORTED_ERRORS} are "
                             f"listed")
            changed = True
        for item in detail:
            if not isinstance(item, dict):
                continue
            loc = item.get("loc")
            if isinstance(loc, list):
                cut = [clip(p) if isinstance(p, str) and len(p) > ECHO_LIMIT else p for p in loc]
                if cut != loc:
                    item["loc"] = cut
                    changed = True
            msg = item.get("msg")
            if isinstance(msg, str) and len(msg) > MAX_MESSAGE_CHARS:
                item["msg"] = clip(msg, MAX_MESSAGE_CHARS)
                changed = True
        data["detail"] = detail
        places = ", ".join(_loc_text(item.get("loc")) for item in detail[:5]
                           if isinstance(item, dict))
        summary = f"{total} problem(s) at {places}" + (", ..." if total > 5 else "")
    return (json.dumps(data).encode() if changed else body), summary


class ClientErrorLogMiddleware:
    """Logs each 4xx answer as one WARNING line, without the request's body, and bounds what
    the answer echoes (:func:`sanitize_error_body`). Outermost of churnml's middlewares, so a
    401 or 413 is logged too. 5xx answers are left to BentoML (an error with its traceback)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message) -> None:
            kind = message["type"]
            if kind == "http.response.start" and 400 <= message["status"] < 500:
                held["start"] = message
                return
            if kind == "http.response.body" and "start" in held:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start = held.pop("start")
                body, summary = sanitize_error_body(b"".join(chunks))
                logger.warning("%d %s %s: %s", start["status"], scope.get("method", ""),
                               clip(scope.get("path", ""), ECHO_LIMIT), summary)
                headers = [(k, v) for k, v in start.get("headers", ())
                           if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, capture)


class _NoClientErrorTracebacks(logging.Filter):
    """Drops BentoML's "Exception on <path>" record (a traceback) when the exception is the
    caller's fault: a pydantic ``ValidationError`` (400) or a BentoML error below 500."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or not str(record.msg).startswith("Exception on"):
            return True
        exc = record.exc_info[1]
        try:
            from pydantic import ValidationError

            if isinstance(exc, ValidationError):
                return False
        except ImportError:  # pragma: no cover
            pass
        code = getattr(getattr(exc, "error_code", None), "value", None)
        return not (isinstance(code, int) and 400 <= code < 500)


_FILTER = _NoClientErrorTracebacks()
BENTOML_ERROR_LOGGER = "bentoml._internal.server.http_app"


def install_log_filter() -> None:
    """Attach the filter to the logger BentoML reports request exceptions with (idempotent)."""
    target = logging.getLogger(BENTOML_ERROR_LOGGER)
    if _FILTER not in target.filters:
        target.addFilter(_FILTER)


# --- /predict_history: size of the tables, heavy work ------------------------------------------

def check_history_tables(tables: Mapping[str, Sequence[Mapping] | None],
                         max_rows: int | None = None, max_keys: int | None = None) -> None:
    """Raise a pydantic ``ValidationError`` (400) when a table has more than ``max_rows`` rows
    or a row more than ``max_keys`` keys (the first five rows over are named)."""
    from churnml.api.schema import validation_error

    max_rows = max_history_rows() if max_rows is None else max_rows
    max_keys = max_row_keys() if max_keys is None else max_keys
    problems: list[tuple[tuple, str]] = []
    for name, rows in tables.items():
        if rows is None:
            continue
        if len(rows) > max_rows:
            problems.append((("tables", name), (
                f"tables.{name}: {len(rows)} rows; at most {max_rows} per table per call "
                f"({MAX_HISTORY_ROWS_ENV})")))
            continue
        wide = 0
        for i, row in enumerate(rows):
            if len(row) > max_keys:
                wide += 1
                if wide <= 5:
                    problems.append((("tables", name, i), (
                        f"{name}[{i}]: {len(row)} keys; at most {max_keys} per row "
                        f"({MAX_ROW_KEYS_ENV})")))
        if wide > 5:
            problems.append((("tables", name), f"tables.{name}: {wide} rows with more than "
                                               f"{max_keys} keys in all"))
    if problems:
        raise validation_error("tables", problems)


class Busy(Exception):
    """Every slot of a :class:`HeavyGate` stayed taken for its whole wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HeavyGate:
    """At most ``slots`` heavy calls at once, each in its own thread, each against a deadline.

    :meth:`run` waits up to ``wait_s`` for a slot (then :class:`Busy`), runs ``func`` in one of
    ``slots`` threads under a :class:`~churnml.deadline.Deadline` of ``timeout_s`` seconds,
    and when the awaiting request is cancelled (BentoML's timeout answered 504, or the client
    left) cancels the deadline, so the thread stops at its next
    :func:`~churnml.deadline.checkpoint`. A slot is freed when its thread ends, not when the
    request does: a stopped call never overlaps the next one.
    """

    def __init__(self, name: str, slots: int, wait_s: float, timeout_s: float | None) -> None:
        self.name = name
        self.slots = int(slots)
        self.wait_s = float(wait_s)
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(max_workers=self.slots,
                                            thread_name_prefix=f"churnml-{name}")
        self._semaphore: asyncio.Semaphore | None = None
        self.running = 0
        self.stopped = 0  # calls stopped by their deadline or a cancellation
        self.refused = 0

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.wait_s))

    def _slots(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.slots)
        return self._semaphore

    async def _acquire(self) -> None:
        semaphore = self._slots()
        if not semaphore.locked():
            await semaphore.acquire()
            return
        try:
            if self.wait_s <= 0:
                raise asyncio.TimeoutError
            await asyncio.wait_for(semaphore.acquire(), self.wait_s)
        except asyncio.TimeoutError:
            self.refused += 1
            raise Busy(f"busy: {self.slots} {self.name} call(s) already running in this "
                       f"worker; retry in {self.retry_after} s", self.retry_after) from None

    async def run(self, func: Callable[..., Any], *args: Any) -> Any:
        await self._acquire()
        semaphore = self._slots()
        loop = asyncio.get_running_loop()
        deadline = Deadline(self.timeout_s)

        def work():
            self.running += 1
            try:
                with active(deadline):
                    checkpoint()
                    return func(*args)
            except DeadlineExceeded:
                self.stopped += 1
                logger.warning("%s: stopped the work (%s)", self.name,
                               deadline.reason or "deadline passed")
                raise
            finally:
                self.running -= 1
                try:
                    loop.call_soon_threadsafe(semaphore.release)
                except RuntimeError:  # the event loop closed meanwhile (shutdown)
                    pass

        try:
            future = loop.run_in_executor(self._executor, work)
        except BaseException:
            semaphore.release()
            raise
        # retrieve the outcome even when nobody awaits it any more (no "never retrieved" log)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            deadline.cancel("the request was cancelled: it timed out or the client left")
            raise

    async def respond(self, func: Callable[..., Any], *args: Any) -> Any:
        """:meth:`run`, with :class:`Busy` answered 503 (``Retry-After``) and a passed
        deadline 504, as starlette responses (BentoML sends a returned response as is)."""
        from starlette.responses import JSONResponse

        try:
            return await self.run(func, *args)
        except Busy as exc:
            logger.warning("503 %s: %s", self.name, exc)
            return JSONResponse({"error": str(exc)}, status_code=503,
                                headers={"Retry-After": str(exc.retry_after)})
        except DeadlineExceeded:
            return JSONResponse({"error": f"not able to process the request in "
                                          f"{self.timeout_s:g} seconds"}, status_code=504)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
