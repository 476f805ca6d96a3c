"""The router's request context: ids, the error boundary, the access log, metrics.

The one place in the router where exceptions become responses. Before the
response has started: in the endpoint's dialect with the right status (the
router's own endpoints speak OpenAI's shape, forwarded paths their own).
After it has started (a region failing mid-stream): the stream is ended with a
last error line or event, as the regions do, never with a broken connection.

Forwarded responses keep the region's `X-Request-Id` (the router passed its
own id on, so they match) and `X-Ghostgate-Region`; the router's own responses
get both from here, with `X-Ghostgate-Region: router`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.asgi import ASGIApp, ClientGone, Message, Receive, Scope, Send
from gateway.errors import Dialect, GatewayError, dialect_for_path, error_body, render_error
from gateway.middleware import request_id
from gateway.middleware import route_label as region_route_label
from gateway.trace import TRACE_KEY, Trace, access_fields
from router.metrics import RouterMetrics

access_log = logging.getLogger("ghostgate.access")
log = logging.getLogger("ghostgate.router")

ROUTER_ROUTES = frozenset(
    {
        "/v1/token",
        "/copilot_internal/v2/token",
        "/v1/route",
        "/v1/status",
        "/.well-known/jwks.json",
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
    }
)


def route_label(path: str) -> str:
    """A bounded metrics label: the router's routes, then the regions' API routes."""
    return path if path in ROUTER_ROUTES else region_route_label(path)


def dialect_of(path: str) -> Dialect:
    """OpenAI's error shape for the router's own endpoints, the path's dialect otherwise."""
    return Dialect.OPENAI if path in ROUTER_ROUTES else dialect_for_path(path)


class RouterContext:
    """Ids, error boundary, access log and metrics for every request to the router."""

    def __init__(self, app: ASGIApp, metrics: RouterMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace = Trace(request_id(scope), route_label(scope["path"]), time.perf_counter())
        scope[TRACE_KEY] = trace

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                trace.status = message["status"]
                trace.response_started = True
                message["headers"] = _with_context(message.get("headers", []), trace)
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
            log.exception("unhandled error", extra={"request_id": trace.request_id})
            error = GatewayError(f"internal error ({type(exc).__name__})")
            await self._fail(error, trace, scope, send_with_context)
        finally:
            self._record(trace, scope)

    async def _fail(self, exc: GatewayError, trace: Trace, scope: Scope, send: Send) -> None:
        trace.outcome = "error"
        trace.error = exc.message
        dialect = dialect_of(scope["path"])
        try:
            if not trace.response_started:
                status, headers, body = render_error(exc, dialect)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            body = error_body(dialect, exc.status, exc.message, exc.kind, exc.code)
            tail = body + b"\n" if dialect is Dialect.OLLAMA else b"data: " + body + b"\n\n"
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except OSError:
            pass  # the client is gone too; nothing left to tell

    def _record(self, trace: Trace, scope: Scope) -> None:
        now = time.perf_counter()
        m = self.metrics
        if trace.outcome == "client_disconnect":
            m.cancellations.labels(trace.outcome, trace.stage.value).inc()
        status = str(trace.status or 499)
        m.requests.labels(trace.backend or "router", trace.route, "", status).inc()
        m.duration.labels(trace.route).observe(now - trace.started)
        if trace.client_first_byte:
            m.ttft.labels(trace.route).observe(trace.client_first_byte - trace.started)
        overhead = trace.overhead()
        if overhead is not None:
            m.overhead.observe(overhead)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("request", extra=_access_fields(trace, scope, now))


def _with_context(headers: list[tuple[bytes, bytes]], trace: Trace) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    extra = []
    if b"x-request-id" not in present:
        extra.append((b"x-request-id", trace.request_id.encode()))
    if b"x-ghostgate-region" not in present:
        extra.append((b"x-ghostgate-region", b"router"))
    return [*headers, *extra]


def _access_fields(trace: Trace, scope: Scope, now: float) -> dict[str, object]:
    fields = access_fields(trace, scope, now)
    if trace.backend:
        fields.update(region=trace.backend, attempts=trace.attempts, stage=trace.stage.value)
    for name in ("user", "error"):
        value = getattr(trace, name)
        if value:
            fields[name] = value
    return fields
