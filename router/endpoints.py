"""The router's own endpoints, as plain ASGI callables:

    POST /v1/token                  API key -> token, region, endpoints
    GET  /copilot_internal/v2/token the same, for clients of Copilot's token API
    GET  /v1/route?location=LOC     the routing decision and why
    GET  /v1/status?location=LOC    regions, health, load, RTT (the status page's feed)
    GET  /.well-known/jwks.json     every public key a token may be signed with
    GET  /                          the status page

The token answer has the fields Copilot's token fetch reads (`token`,
`expires_at`, `refresh_in`, `endpoints.api`, `endpoints.proxy`), plus the
`region` chosen for the caller. Telemetry is declared disabled and no
telemetry endpoint is given, so a Copilot client keeps telemetry away from us.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Mapping
from importlib import resources

from gateway.asgi import Receive, Scope, Send, header, send_bytes, send_json
from gateway.auth import bearer_token
from gateway.errors import Unauthorized
from router.nearest import RouteDecision
from router.services import RouterServices, peer_address

NO_STORE = [(b"cache-control", b"no-store")]


class TokenEndpoint:
    """An API key buys a token for the region nearest the caller."""

    def __init__(self, services: RouterServices) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self.services
        try:
            credential = bearer_token(header(scope, b"authorization"))
            grant = await services.issuer.issue(credential, peer_address(scope))
        except Unauthorized as exc:
            services.metrics.auth_failures.labels(exc.reason).inc()
            raise
        services.metrics.tokens_issued.inc()
        decision = services.decide(services.locate(scope))
        chosen = decision.chosen
        if chosen is not None:
            services.metrics.route_decisions.labels(chosen.name).inc()
        router_url = services.settings.url
        answer = {
            "token": grant.token,
            "expires_at": int(grant.expires_at),
            "refresh_in": grant.refresh_in(time.time()),
            # No region ready: the token still works through the router, which
            # forwards to whichever region comes back first.
            "region": None if chosen is None else chosen.name,
            "user": grant.user,
            "endpoints": {"api": router_url, "proxy": router_url if chosen is None else chosen.url},
            "telemetry": "disabled",
            "chat_enabled": True,
        }
        await send_json(send, 200, answer, NO_STORE)


class RouteEndpoint:
    """`GET /v1/route`: the decision for a location, with every alternative."""

    def __init__(self, services: RouterServices) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        decision = self.services.decide(self.services.locate(scope))
        await send_json(send, 200, decision.to_dict(), NO_STORE)


class StatusEndpoint:
    """`GET /v1/status`: what the status page shows, refreshed by its script."""

    def __init__(self, services: RouterServices) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self.services
        decision = services.decide(services.locate(scope))
        await send_json(send, 200, status_report(services, decision), NO_STORE)


def status_report(services: RouterServices, decision: RouteDecision) -> dict[str, object]:
    rtts = {alt.name: alt.rtt_ms for alt in decision.alternatives}
    regions = []
    for name, view in services.prober.views.items():
        regions.append({**view.to_dict(), "rtt_ms": round(rtts.get(name, 0.0), 2)})
    return {
        "router": services.settings.url,
        "time": round(time.time(), 3),
        "wan_latency": services.settings.forward.wan_latency,
        "signing_kid": services.keyring.signer_kid,
        "regions": regions,
        "savings": sum_savings(view.waste for view in services.prober.views.values()),
        "decision": decision.to_dict(),
    }


def sum_savings(reports: Iterable[Mapping[str, object]]) -> dict[str, object]:
    """Every region's savings added up: cancellations by reason, tokens, memory answers."""
    cancelled: dict[str, int] = {}
    saved = from_memory = 0
    for report in reports:
        by_reason = report.get("cancelled")
        if isinstance(by_reason, dict):
            for reason, count in by_reason.items():
                if isinstance(count, int):
                    cancelled[str(reason)] = cancelled.get(str(reason), 0) + count
        saved += _int(report.get("saved_tokens"))
        from_memory += _int(report.get("from_memory"))
    return {"cancelled": cancelled, "saved_tokens": saved, "from_memory": from_memory}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class JwksEndpoint:
    """The public keys; regions refresh them every minute, so a minute of caching is fine."""

    def __init__(self, services: RouterServices) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = json.dumps(self.services.keyring.jwks()).encode()
        cache = [(b"cache-control", b"public, max-age=60")]
        await send_bytes(send, 200, body, b"application/jwk-set+json", cache)


@functools.cache
def status_page() -> bytes:
    """The status page: one HTML file with inline CSS and script, no external assets."""
    return resources.files("router.data").joinpath("status.html").read_bytes()


async def page(scope: Scope, receive: Receive, send: Send) -> None:
    body = status_page()
    if scope["method"] == "HEAD":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send_bytes(send, 200, body, b"text/html; charset=utf-8", NO_STORE)
