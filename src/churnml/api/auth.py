"""Optional API key for the HTTP service.

When ``CHURNML_API_KEY`` is set (and not empty), every request except liveness and readiness
(``/livez``, ``/healthz``, ``/readyz``) must carry ``Authorization: Bearer <key>``; anything else
gets 401. The comparison is constant-time (``hmac.compare_digest``) and the key is never logged
or echoed.
"""

from __future__ import annotations

import hmac
import json
import os

API_KEY_ENV = "CHURNML_API_KEY"
OPEN_PATHS = frozenset({"/livez", "/healthz", "/readyz"})


def configured_api_key(environ=None) -> str | None:
    """The API key from the environment, or ``None`` when auth is off (unset or empty)."""
    value = (environ if environ is not None else os.environ).get(API_KEY_ENV, "")
    return value or None


def bearer_matches(authorization: bytes | str | None, api_key: str) -> bool:
    """True when ``authorization`` is exactly ``Bearer <api_key>`` (constant-time compare)."""
    if authorization is None:
        return False
    if isinstance(authorization, str):
        authorization = authorization.encode("latin-1", "replace")
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(token.strip(), api_key.encode("utf-8"))


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1,
    ``localhost``); ``0.0.0.0``, ``::`` and any other address or name are reachable from
    elsewhere."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def open_bind_warning(host: str, environ=None) -> str | None:
    """The warning for serving without an API key on an address other machines can reach,
    or ``None`` when a key is set or ``host`` is a loopback address."""
    if configured_api_key(environ) is not None or is_loopback(host):
        return None
    return (f"WARNING: serving on {host} without an API key: anyone who can reach this address "
            f"can call every endpoint. Set {API_KEY_ENV} (callers then send "
            f"'Authorization: Bearer <key>'), bind to 127.0.0.1, or put the service behind a "
            f"gateway that authenticates (docs/security.md).")


_UNAUTHORIZED = json.dumps({
    "error": "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
}).encode()


class ApiKeyMiddleware:
    """Pure ASGI middleware enforcing the API key (a no-op when no key is configured).

    ``api_key=None`` reads ``CHURNML_API_KEY`` on each request (a dictionary lookup), so the
    setting of the running process is what counts.
    """

    def __init__(self, app, api_key: str | None = None, open_paths=OPEN_PATHS) -> None:
        self.app = app
        self.api_key = api_key
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope, receive, send) -> None:
        api_key = self.api_key if self.api_key is not None else configured_api_key()
        if (api_key is None or scope["type"] != "http"
                or scope.get("path", "") in self.open_paths):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        if bearer_matches(header, api_key):
            await self.app(scope, receive, send)
            return
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_UNAUTHORIZED)).encode()),
                (b"www-authenticate", b'Bearer realm="churnml"'),
            ],
        })
        await send({"type": "http.response.body", "body": _UNAUTHORIZED})
