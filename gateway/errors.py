"""The gateway's exceptions, and how they become responses in each API's dialect.

    GatewayError                    status  meaning
    ├── ClientError
    │   ├── BadRequest                400   malformed body
    │   ├── Unauthorized              401   missing, bad, expired or revoked token
    │   ├── Forbidden                 403   good token without the route's scope
    │   ├── NotFound                  404   unknown route
    │   │   └── ModelNotFound         404   no backend serves the model
    │   ├── MethodNotAllowed          405   known route, other method
    │   ├── RequestTimeout            408   body not received in time
    │   ├── PayloadTooLarge           413   body over the limit
    │   ├── HeadersTooLarge           431   too many request headers
    │   ├── Unprocessable             422   wrong field types
    │   ├── RateLimited               429   (Retry-After)
    │   └── UpstreamRejected          4xx   a backend refused the request: its status
    │                                       and message
    └── ServerError
        ├── NoCapacity                503   no healthy backend, queue full (Retry-After)
        ├── UpstreamError             502   a backend failed before answering
        └── UpstreamTimeout           504   a backend did not answer in time

Foreign exceptions (aiohttp, jwt, redis) are mapped to these at the module that
meets them; everything above that boundary speaks only this tree. Rendering
happens in one place, `render_error`, so every endpoint answers in its own
dialect: Ollama's `{"error": "..."}` or OpenAI's `{"error": {...}}`.
"""

from __future__ import annotations

import json
from enum import Enum


class Dialect(Enum):
    """The wire format an endpoint speaks, which decides its error shape."""

    OLLAMA = "ollama"
    OPENAI = "openai"


class GatewayError(Exception):
    """Base of every error the gateway turns into a response.

    A subclass names its status, kind and code as class keywords:
    `class BadRequest(ClientError, status=400, code="bad_request")`."""

    status = 500
    kind = "server_error"
    code = "internal_error"

    def __init_subclass__(
        cls, *, status: int | None = None, kind: str | None = None, code: str | None = None
    ) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if kind is not None:
            cls.kind = kind
        if code is not None:
            cls.code = code

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ClientError(GatewayError, kind="invalid_request_error"):
    """The request is at fault; retrying it unchanged will not help."""


class BadRequest(ClientError, status=400, code="bad_request"):
    """The body is not what the endpoint accepts (e.g. not JSON)."""


class Unauthorized(ClientError, status=401, kind="authentication_error", code="invalid_token"):
    """No usable token. `reason` feeds the auth-failure metric, never the log of a secret."""

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class Forbidden(ClientError, status=403, kind="permission_error", code="insufficient_scope"):
    """A valid token whose scopes do not include the route's (RFC 6750 insufficient_scope)."""


class NotFound(ClientError, status=404, code="not_found"):
    """The route does not exist."""


class ModelNotFound(NotFound, code="model_not_found"):
    """No backend of this region serves the model."""


class MethodNotAllowed(ClientError, status=405, code="method_not_allowed"):
    """The route exists but not for this method; `allow` lists the ones it takes."""

    def __init__(self, message: str, *, allow: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allow = allow


class RequestTimeout(ClientError, status=408, code="request_timeout"):
    """The request (its body) did not arrive in time."""


class HeadersTooLarge(ClientError, status=431, code="headers_too_large"):
    """More request headers than the configured bound."""


class PayloadTooLarge(ClientError, status=413, code="payload_too_large"):
    """The request body is over the configured limit."""


class Unprocessable(ClientError, status=422, code="invalid_field"):
    """The body is JSON but a field has the wrong type or value."""


class RateLimited(ClientError, status=429, kind="rate_limit_error", code="rate_limited"):
    """The user is over a rate limit; Retry-After says when to come back."""


class UpstreamRejected(ClientError, code="upstream_error"):
    """A backend answered the request with a 4xx; the client gets its status and message."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ServerError(GatewayError):
    """The gateway or its backends could not serve a well-formed request."""


class NoCapacity(ServerError, status=503, kind="server_error", code="no_capacity"):
    """No healthy backend, or no free slot within the queue's bounds."""


class UpstreamError(ServerError, status=502, code="upstream_error"):
    """A backend failed before its response started."""


class UpstreamTimeout(ServerError, status=504, code="upstream_timeout"):
    """A backend did not answer within the configured timeout."""


def error_body(dialect: Dialect, message: str, kind: str, code: str) -> bytes:
    """The JSON body of an error in `dialect`."""
    if dialect is Dialect.OLLAMA:
        return json.dumps({"error": message}).encode()
    return json.dumps({"error": {"message": message, "type": kind, "code": code}}).encode()


def render_error(
    exc: GatewayError, dialect: Dialect
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body for `exc` in `dialect`: the one place errors become HTTP."""
    body = error_body(dialect, exc.message, exc.kind, exc.code)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if exc.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="ghostgate"'))
    if isinstance(exc, MethodNotAllowed) and exc.allow:
        headers.append((b"allow", ", ".join(exc.allow).encode()))
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
    return exc.status, headers, body


def dialect_for_path(path: str) -> Dialect:
    """OpenAI and Copilot routes live under /v1; everything else speaks Ollama."""
    return Dialect.OPENAI if path.startswith("/v1/") else Dialect.OLLAMA
