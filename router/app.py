"""The router's ASGI application and its route table.

    RouterContext (route matched once; ids, errors in dialect, access log, metrics)
      └── Dispatch
            ├── the router's own endpoints, plain ASGI
            ├── Forwarder: the regions' API routes (gateway.app.API_ROUTES), and
            │   any other /api/* and /v1/* path (forward mode)
            └── FastAPI: /healthz, /readyz, /metrics and the lifespan
                (gateway/operations.py, shared with the regions)

The router's own endpoints answer errors in OpenAI's shape; forwarded paths
in their region dialect. The forward hot path never goes through FastAPI's
per-request machinery. FastAPI owns the lifespan, which opens and closes every
async resource.
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.app import API_ROUTES
from gateway.asgi import ASGIApp
from gateway.errors import Dialect
from gateway.operations import operations_app, operations_routes
from gateway.routing import Dispatch, Route, RouteTable
from gateway.settings import ServerSettings
from router.endpoints import JwksEndpoint, RouteEndpoint, StatusEndpoint, TokenEndpoint, page
from router.forward import Forwarder
from router.middleware import RouterContext
from router.services import RouterServices
from router.settings import RouterSettings

OPENAI = Dialect.OPENAI


def _page(services: RouterServices) -> ASGIApp:
    return page


ROUTER_ROUTES: tuple[Route[RouterServices], ...] = (
    Route("/v1/token", ("POST",), TokenEndpoint, OPENAI, auth=False),
    Route("/copilot_internal/v2/token", ("GET",), TokenEndpoint, OPENAI, auth=False),
    Route("/v1/route", ("GET",), RouteEndpoint, OPENAI, auth=False),
    Route("/v1/status", ("GET",), StatusEndpoint, OPENAI, auth=False),
    Route("/.well-known/jwks.json", ("GET",), JwksEndpoint, OPENAI, auth=False),
    Route("/", ("GET", "HEAD"), _page, OPENAI, auth=False),  # the status page
)
# What the router does not serve itself goes to a region, which checks it.
FORWARDED_PREFIXES: tuple[Route[RouterServices], ...] = (
    Route("/api/", (), dialect=Dialect.OLLAMA, label="other", prefix=True),
    Route("/v1/", (), dialect=Dialect.OPENAI, label="other", prefix=True),
)


def router_operations(services: RouterServices) -> FastAPI:
    return operations_app(
        "Ghostgate router",
        running=services.running,
        readiness=services.readiness,
        metrics=services.metrics,
        alive={"status": "alive", "role": "router"},
    )


def router_table(services: RouterServices, forward: ASGIApp, operations: FastAPI) -> RouteTable:
    own = [route.built(services) for route in ROUTER_ROUTES]
    served = {route.path for route in own}
    forwarded = [route.bind(forward) for route in API_ROUTES if route.path not in served]
    prefixes = [route.bind(forward) for route in FORWARDED_PREFIXES]
    return RouteTable([*own, *operations_routes(operations, OPENAI), *forwarded, *prefixes])


def create_app(settings: RouterSettings) -> tuple[ASGIApp, RouterServices]:
    """The router's ASGI app and the services behind it."""
    services = RouterServices.build(settings)
    operations = router_operations(services)
    table = router_table(services, Forwarder(services), operations)
    send_timeout = settings.forward.send_timeout
    server = ServerSettings()  # the router serves with the defaults (router/__main__.py)
    context = RouterContext(
        Dispatch(table, operations), table, services.metrics, send_timeout, server
    )
    return context, services
