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

import logging
import time

from gateway.asgi import ASGIApp, Headers, Scope
from gateway.boundary import RequestBoundary
from gateway.errors import GatewayError
from gateway.routing import RouteTable
from gateway.settings import ServerSettings
from gateway.trace import Trace, access_fields
from router.metrics import RouterMetrics

access_log = logging.getLogger("ghostgate.access")


class RouterContext(RequestBoundary):
    """Ids, error boundary, access log and metrics for every request to the router."""

    errors_log = logging.getLogger("ghostgate.router")

    def __init__(
        self,
        app: ASGIApp,
        table: RouteTable,
        metrics: RouterMetrics,
        send_timeout: float,
        server: ServerSettings,
    ) -> None:
        super().__init__(app, table, send_timeout, server.max_headers, server.max_header_bytes)
        self.metrics = metrics

    def _context_headers(self, headers: Headers, trace: Trace) -> Headers:
        """The region's id and name stay on what it served; the router's own
        responses get the router's."""
        present = {name.lower() for name, _ in headers}
        extra = []
        if b"x-request-id" not in present:
            extra.append((b"x-request-id", trace.request_id.encode()))
        if b"x-ghostgate-region" not in present:
            extra.append((b"x-ghostgate-region", b"router"))
        return [*headers, *extra]

    def _failure_outcome(self, exc: GatewayError) -> str:
        return "error"  # a region's timeout is the region's to log as one

    def _record(self, trace: Trace, scope: Scope) -> None:
        now = time.perf_counter()
        m = self.metrics
        if trace.outcome in ("client_disconnect", "slow_reader"):
            m.cancellations.labels(trace.outcome, trace.stage.value).inc()
        m.observe_request(trace, trace.backend or "router", "", now)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("request", extra=_access_fields(trace, scope, now))


def _access_fields(trace: Trace, scope: Scope, now: float) -> dict[str, object]:
    fields = access_fields(trace, scope, now)
    if trace.backend:  # user and error come from access_fields, cut to their bounds
        fields.update(region=trace.backend, attempts=trace.attempts, stage=trace.stage.value)
    return fields
