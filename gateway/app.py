"""The region proxy's ASGI application.

    RequestContext (ids, region header, errors, access log, metrics)
      └── Authenticate (bearer token on API routes)
            └── Routes: API endpoints, plain ASGI, looked up in a dict
                  └── FastAPI: /healthz, /readyz, /metrics, and 404s in dialect
                      (gateway/operations.py, shared with the router)

The API endpoints are plain ASGI callables found by one dict lookup: the hot
path never goes through FastAPI's per-request machinery. FastAPI serves the
operational endpoints and owns the lifespan, which opens and closes every
async resource.
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.asgi import ASGIApp, Receive, Scope, Send
from gateway.auth import RevocationCheck
from gateway.dialects.ollama.request import parse_chat, parse_generate
from gateway.dialects.ollama.routes import GenerationEndpoint, ShowEndpoint, listing, root, version
from gateway.dialects.openai.routes import (
    ChatCompletionsEndpoint,
    CompletionsEndpoint,
    models_listing,
)
from gateway.errors import MethodNotAllowed, dialect_for_path
from gateway.middleware import Authenticate, RequestContext, UserLimits
from gateway.operations import operations_app
from gateway.pool import Priority
from gateway.services import Services
from gateway.settings import GatewaySettings

RouteTable = dict[str, dict[str, ASGIApp]]


ENGINE_PREFIX, ENGINE_SUFFIX = "/v1/engines/", "/completions"


class Routes:
    """Dispatch by exact path, then method; everything else goes to `fallback`.

    Copilot's `/v1/engines/{engine}/completions` is the one route with a
    parameter; it is matched by prefix and suffix, and the engine put in
    `path_params` as Starlette would.
    """

    def __init__(self, table: RouteTable, fallback: ASGIApp) -> None:
        self.table = table
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        methods = self.table.get(path)
        if methods is None and path.startswith(ENGINE_PREFIX) and path.endswith(ENGINE_SUFFIX):
            engine = path[len(ENGINE_PREFIX) : -len(ENGINE_SUFFIX)]
            if engine and "/" not in engine:
                scope["path_params"] = {"engine": engine}
                methods = self.table.get(ENGINE_PREFIX + "{engine}" + ENGINE_SUFFIX)
        if methods is None:
            await self.fallback(scope, receive, send)
            return
        endpoint = methods.get(scope["method"])
        if endpoint is None:
            raise MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}")
        await endpoint(scope, receive, send)


def ollama_routes(services: Services) -> RouteTable:
    generate = GenerationEndpoint(services, "/api/generate", parse_generate, Priority.COMPLETION)
    chat = GenerationEndpoint(services, "/api/chat", parse_chat, Priority.CHAT)
    return {
        "/api/generate": {"POST": generate},
        "/api/chat": {"POST": chat},
        "/api/show": {"POST": ShowEndpoint(services)},
        "/api/tags": {"GET": listing(services, "tags")},
        "/api/ps": {"GET": listing(services, "ps")},
        "/api/version": {"GET": version(services)},
        "/": {"GET": root, "HEAD": root},
    }


def openai_routes(services: Services) -> RouteTable:
    return {
        "/v1/completions": {"POST": CompletionsEndpoint(services)},
        "/v1/chat/completions": {"POST": ChatCompletionsEndpoint(services)},
        "/v1/models": {"GET": models_listing(services)},
        ENGINE_PREFIX + "{engine}" + ENGINE_SUFFIX: {
            "POST": CompletionsEndpoint(services, copilot=True)
        },
    }


def region_operations(services: Services) -> FastAPI:
    return operations_app(
        "Ghostgate region",
        running=services.running,
        readiness=services.readiness,
        metrics=services.metrics,
        alive={"status": "alive", "region": services.settings.region},
        dialect=dialect_for_path,
    )


def create_app(
    settings: GatewaySettings, revocations: RevocationCheck | None = None
) -> tuple[ASGIApp, Services]:
    """The region's ASGI app and the services behind it."""
    services = Services.build(settings, revocations)
    table = {**ollama_routes(services), **openai_routes(services)}
    inner = Routes(table, region_operations(services))
    limited = UserLimits(inner, services)
    return RequestContext(Authenticate(limited, services), services), services
