"""The region's plain-ASGI middleware on the hot path, inside out:

    RequestContext  the request boundary (gateway/boundary.py) with the region's
                    headers, metrics and access log
    Authenticate    the bearer token, on every route that needs one
    UserLimits      per-user requests per minute (generations at once: generation.py)

Each reads what the route table says of the request's route (gateway/routing.py),
matched once by the boundary: whether it needs a token, whether it generates.
"""

from __future__ import annotations

import logging
import time

from gateway.asgi import ASGIApp, Headers, Receive, Scope, Send, header
from gateway.auth import Principal, bearer_token, require_scope
from gateway.boundary import CANCEL_REASONS, RequestBoundary
from gateway.errors import BadRequest, Forbidden, RateLimited, Unauthorized, Unprocessable
from gateway.routing import RouteTable, match_of
from gateway.services import PRINCIPAL_KEY, Services
from gateway.trace import TRACE_KEY, Trace, access_fields

access_log = logging.getLogger("ghostgate.access")


class RequestContext(RequestBoundary):
    """Ids, region header, error boundary, access log and metrics for every request."""

    def __init__(self, app: ASGIApp, table: RouteTable, services: Services) -> None:
        settings = services.settings
        server = settings.server
        super().__init__(
            app, table, settings.limits.send_timeout, server.max_headers, server.max_header_bytes
        )
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
    fields = access_fields(trace, scope, now)  # user, model and error, cut to their bounds
    if trace.backend:
        fields["backend"] = trace.backend
    if trace.done_reason:
        fields["done_reason"] = trace.done_reason[:64]  # the backend's word, not ours
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
        match = match_of(scope)
        if match is not None and match.route.auth:
            try:
                token = bearer_token(header(scope, b"authorization"))
                principal = self.services.verifier.verify(token)
                if match.route.scope is not None:
                    require_scope(principal, match.route.scope)
            except Forbidden:
                self.services.metrics.auth_failures.labels("insufficient_scope").inc()
                raise
            except Unauthorized as exc:
                self.services.metrics.auth_failures.labels(exc.reason).inc()
                raise
            scope[PRINCIPAL_KEY] = principal
            trace = scope.get(TRACE_KEY)
            if isinstance(trace, Trace):
                trace.user = principal.subject
        await self.app(scope, receive, send)


class UserLimits:
    """Per-user requests per minute (429 past it), on generation routes.

    Counted in the shared store, so the limit holds across every region and
    instance that shares one Redis. Only generation routes count: listing
    models or asking for readiness costs no GPU time. Generations at once are
    counted after the body is parsed, since a request with `n` choices holds
    `n` (GenerationEndpoint, gateway/generation.py). This layer also counts the
    bodies those routes refuse by an input bound, in `ghostgate_input_refusals_total`.
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get(PRINCIPAL_KEY)
        match = match_of(scope)
        if (
            match is None
            or not match.route.generates
            or scope["method"] != "POST"
            or not isinstance(principal, Principal)
        ):
            await self.app(scope, receive, send)
            return
        limits, metrics = self.services.settings.limits, self.services.metrics
        try:
            await self.services.shared.check_rate(
                principal.subject, limits.user_requests_per_minute
            )
        except RateLimited:
            metrics.user_limit_refusals.labels("requests_per_minute").inc()
            raise
        try:
            await self.app(scope, receive, send)
        except (BadRequest, Unprocessable) as exc:
            # An input bound's refusal names its bound (gateway/dialects/ollama/request.py).
            bound = getattr(exc, "bound", None)
            if isinstance(bound, str):
                metrics.input_refusals.labels(bound).inc()
            raise
