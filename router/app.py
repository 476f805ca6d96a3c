"""The router's ASGI application.

    RouterContext (ids, errors in dialect, access log, metrics)
      └── Dispatch
            ├── the router's own endpoints, plain ASGI, by one dict lookup
            ├── Forwarder: every other /api/* and /v1/* path (forward mode)
            └── FastAPI: /healthz, /readyz, /metrics, 404s in dialect, and the lifespan

The forward hot path never goes through FastAPI's per-request machinery.
FastAPI owns the lifespan, which opens and closes every async resource.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.asgi import ASGIApp, Receive, Scope, Send
from gateway.errors import MethodNotAllowed, NotFound, render_error
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


def operations_app(services: RouterServices) -> FastAPI:
    """FastAPI for health, readiness and metrics; owns the lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with services.running():
            yield

    app = FastAPI(
        title="Ghostgate router", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "alive", "role": "router"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready, report = services.readiness()
        return JSONResponse(report, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(
            services.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        error = (
            NotFound(f"no route {request.url.path}")
            if exc.status_code == 404
            else MethodNotAllowed(str(exc.detail))
        )
        status, headers, body = render_error(error, dialect_of(request.url.path))
        return Response(
            body,
            status_code=status,
            headers={k.decode(): v.decode() for k, v in headers if k != b"content-length"},
        )

    return app


def create_app(settings: RouterSettings) -> tuple[ASGIApp, RouterServices]:
    """The router's ASGI app and the services behind it."""
    services = RouterServices.build(settings)
    inner = Dispatch(router_routes(services), Forwarder(services), operations_app(services))
    return RouterContext(inner, services.metrics), services
