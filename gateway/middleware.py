"""Plain-ASGI middleware on the hot path: request context, the error boundary,
the access log and metrics (`RequestContext`, on `RequestBoundary`, which the
router's context shares), the token check (`Authenticate`) and the per-user
limits (`UserLimits`).

`RequestBoundary` is the one place exceptions become responses: before the
response has started, in the endpoint's dialect with the right status; after it
has started, by ending the stream with a last error line or event, so the
client never sees a broken connection for a gateway-side failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from gateway.asgi import ASGIApp, ClientGone, Headers, Message, Receive, Scope, Send, header
from gateway.auth import Principal, bearer_token
from gateway.errors import (
    Dialect,
    GatewayError,
    RateLimited,
    Unauthorized,
    UpstreamTimeout,
    dialect_for_path,
    error_body,
    render_error,
)
from gateway.services import PRINCIPAL_KEY, Services
from gateway.trace import TRACE_KEY, Trace, access_fields

access_log = logging.getLogger("ghostgate.access")
log = logging.getLogger("ghostgate.gateway")

_ROUTES = (
    "/api/generate",
    "/api/chat",
    "/api/tags",
    "/api/show",
    "/api/ps",
    "/api/version",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/models",
    "/healthz",
    "/readyz",
    "/metrics",
    "/",
)
CANCEL_REASONS = frozenset({"client_disconnect", "superseded", "timeout", "shutdown"})
_OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics"})


def route_label(path: str) -> str:
    """A bounded label for metrics: known routes by name, everything else `other`."""
    if path in _ROUTES:
        return path
    if path.startswith("/v1/engines/") and path.endswith("/completions"):
        return "/v1/engines/{engine}/completions"
    return "other"


def request_id(scope: Scope) -> str:
    """The client's X-Request-Id if it is sane, else a fresh one."""
    given = header(scope, b"x-request-id")
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return os.urandom(12).hex()


class RequestBoundary:
    """The outermost middleware of every Ghostgate process, region and router: a
    `Trace` per request, the context headers on the response, the error
    boundary, and a record of the request when it ends.

    Subclasses say which headers (`_context_headers`), which error dialect a
    path speaks (`_dialect`), what a failed stream counts (`_stream_failed`)
    and what is recorded (`_record`).
    """

    errors_log = log  # where an unhandled exception is logged

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace = Trace(request_id(scope), self._route_label(scope["path"]), time.perf_counter())
        scope[TRACE_KEY] = trace

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                trace.status = message["status"]
                trace.response_started = True
                message["headers"] = self._context_headers(message.get("headers", []), trace)
            elif not trace.client_first_byte and message.get("body"):
                trace.client_first_byte = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except ClientGone:
            trace.outcome = "client_disconnect"
        except GatewayError as exc:
            await self._fail(exc, trace, scope, send_with_context)
        except asyncio.CancelledError:
            trace.outcome = "shutdown"
            raise
        except Exception as exc:
            self.errors_log.exception("unhandled error", extra={"request_id": trace.request_id})
            error = GatewayError(f"internal error ({type(exc).__name__})")
            await self._fail(error, trace, scope, send_with_context)
        finally:
            self._record(trace, scope)

    async def _fail(self, exc: GatewayError, trace: Trace, scope: Scope, send: Send) -> None:
        trace.outcome = self._failure_outcome(exc)
        trace.error = exc.message
        dialect = self._dialect(scope["path"])
        try:
            if not trace.response_started:
                status, headers, body = render_error(exc, dialect)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            # The status is gone; end the stream the way the dialect ends one
            # in error, so the client's parser sees a reason, not a cut.
            self._stream_failed(trace)
            body = error_body(dialect, exc.status, exc.message, exc.kind, exc.code)
            tail = body + b"\n" if dialect is Dialect.OLLAMA else b"data: " + body + b"\n\n"
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except OSError:
            pass  # the client is gone too; nothing left to tell

    def _route_label(self, path: str) -> str:
        return route_label(path)

    def _context_headers(self, headers: Headers, trace: Trace) -> Headers:
        raise NotImplementedError

    def _dialect(self, path: str) -> Dialect:
        return dialect_for_path(path)

    def _failure_outcome(self, exc: GatewayError) -> str:
        return "timeout" if isinstance(exc, UpstreamTimeout) else "error"

    def _stream_failed(self, trace: Trace) -> None:
        """A stream already under way ended in error."""

    def _record(self, trace: Trace, scope: Scope) -> None:
        raise NotImplementedError


class RequestContext(RequestBoundary):
    """Ids, region header, error boundary, access log and metrics for every request."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        super().__init__(app)
        self.services = services
        self.region = services.settings.region.encode()

    def _context_headers(self, headers: Headers, trace: Trace) -> Headers:
        return [
            *headers,
            (b"x-request-id", trace.request_id.encode()),
            (b"x-ghostgate-region", self.region),
        ]

    def _stream_failed(self, trace: Trace) -> None:
        self.services.metrics.stream_errors.labels(trace.route).inc()

    def _record(self, trace: Trace, scope: Scope) -> None:
        metrics = self.services.metrics
        now = time.perf_counter()
        if trace.outcome in CANCEL_REASONS and trace.model:
            metrics.cancellations.labels(trace.outcome, trace.stage.value).inc()
            waste = metrics.waste
            waste.cancelled[trace.outcome] = waste.cancelled.get(trace.outcome, 0) + 1
            saved = self._saved_tokens(trace)
            if saved:
                metrics.tokens.labels("saved").inc(saved)
                waste.saved_tokens += saved
        elif trace.outcome in ("cache_hit", "typing_through"):
            metrics.waste.from_memory += 1
        model = trace.model if self._served(trace.model) else ("" if not trace.model else "other")
        metrics.observe_request(trace, metrics.region, model, now)
        if trace.prompt_tokens:
            metrics.tokens.labels("prompt").inc(trace.prompt_tokens)
        if trace.generated_tokens:
            metrics.tokens.labels("generated").inc(trace.generated_tokens)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("request", extra=_access_fields(trace, scope, now))

    def _saved_tokens(self, trace: Trace) -> int:
        """Tokens a cancel spared the backend: the request's limit (or the typical
        length when it set none) less what had been generated."""
        expected = trace.requested_tokens
        if expected <= 0:
            expected = self.services.settings.waste.expected_tokens
        return max(0, expected - trace.streamed_tokens)

    def _served(self, model: str) -> bool:
        return bool(model) and any(b.serves(model) for b in self.services.scheduler.backends)


def _access_fields(trace: Trace, scope: Scope, now: float) -> dict[str, object]:
    fields = access_fields(trace, scope, now)
    for name in ("user", "model", "backend", "error", "done_reason"):
        value = getattr(trace, name)
        if value:
            fields[name] = value
    if trace.model:
        fields.update(
            stage=trace.stage.value,
            attempts=trace.attempts,
            queue_ms=round(trace.queue_wait * 1000, 2),
            prompt_tokens=trace.prompt_tokens,
            generated_tokens=trace.generated_tokens,
        )
    return fields


class Authenticate:
    """Checks the bearer token on every API route; puts the principal in the scope."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _OPEN_PATHS:
            try:
                token = bearer_token(header(scope, b"authorization"))
                principal = self.services.verifier.verify(token)
            except Unauthorized as exc:
                self.services.metrics.auth_failures.labels(exc.reason).inc()
                raise
            scope[PRINCIPAL_KEY] = principal
            trace = scope.get(TRACE_KEY)
            if isinstance(trace, Trace):
                trace.user = principal.subject
        await self.app(scope, receive, send)


_GENERATION_ROUTES = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/engines/{engine}/completions",
    }
)


class UserLimits:
    """Per-user requests per minute and concurrent generations (429 past either).

    Counted in the shared store, so the limits hold across every region and
    instance that shares one Redis. Only generation routes count: listing
    models or asking for readiness costs no GPU time.
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get(PRINCIPAL_KEY)
        trace = scope.get(TRACE_KEY)
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not isinstance(trace, Trace)
            or trace.route not in _GENERATION_ROUTES
            or not isinstance(principal, Principal)
        ):
            await self.app(scope, receive, send)
            return
        limits, shared = self.services.settings.limits, self.services.shared
        user = principal.subject
        await shared.check_rate(user, limits.user_requests_per_minute)
        if not await shared.acquire_stream(user, limits.user_streams):
            raise RateLimited(
                f"more than {limits.user_streams} generations at once for this user",
                retry_after=1,
            )
        try:
            await self.app(scope, receive, send)
        finally:
            # Shielded: the count must come back even when this task is cancelled.
            await asyncio.shield(shared.release_stream(user, limits.user_streams))
