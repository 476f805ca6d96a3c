"""The router's ASGI application.

    RouterContext (ids, errors in dialect, access log, metrics)
      └── Dispatch
            ├── the router's own endpoints, plain ASGI, by one dict lookup
            ├── Forwarder: every other /api/* and /v1/* path (forward mode)
            └── FastAPI: /healthz, /readyz, /metrics, 404s in dialect, and the lifespan
                (gateway/operations.py, shared with the regions)

The forward hot path never goes through FastAPI's per-request machinery.
FastAPI owns the lifespan, which opens and closes every async resource.
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.asgi import ASGIApp, Receive, Scope, Send
from gateway.errors import MethodNotAllowed
from gateway.operations import operations_app
from router.endpoints import JwksEndpoint, RouteEndpoint, StatusEndpoint, TokenEndpoint, page
from router.forward import Forwarder
from router.middleware import RouterContext, dialect_of
from router.services import RouterServices
from router.settings import RouterSettings

RouteTable = dict[str, dict[str, ASGIApp]]
FORWARDED_PREFIXES = ("/api/", "/v1/")


class Dispatch:
    """The router's own paths first; then forward mode for API paths; then FastAPI."""

    def __init__(self, table: RouteTable, forward: ASGIApp, fallback: ASGIApp) -> None:
        self.table = table
        self.forward = forward
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        path = scope["path"]
        methods = self.table.get(path)
        if methods is not None:
            endpoint = methods.get(scope["method"])
            if endpoint is None:
                raise MethodNotAllowed(f"{scope['method']} is not allowed on {path}")
            await endpoint(scope, receive, send)
        elif path.startswith(FORWARDED_PREFIXES):
            await self.forward(scope, receive, send)
        else:
            await self.fallback(scope, receive, send)


def router_routes(services: RouterServices) -> RouteTable:
    token = TokenEndpoint(services)
    return {
        "/v1/token": {"POST": token},
        "/copilot_internal/v2/token": {"GET": token},
        "/v1/route": {"GET": RouteEndpoint(services)},
        "/v1/status": {"GET": StatusEndpoint(services)},
        "/.well-known/jwks.json": {"GET": JwksEndpoint(services)},
        "/": {"GET": page, "HEAD": page},
    }


def router_operations(services: RouterServices) -> FastAPI:
    return operations_app(
        "Ghostgate router",
        running=services.running,
        readiness=services.readiness,
        metrics=services.metrics,
        alive={"status": "alive", "role": "router"},
        dialect=dialect_of,
    )


def create_app(settings: RouterSettings) -> tuple[ASGIApp, RouterServices]:
    """The router's ASGI app and the services behind it."""
    services = RouterServices.build(settings)
    inner = Dispatch(router_routes(services), Forwarder(services), router_operations(services))
    return RouterContext(inner, services.metrics), services
