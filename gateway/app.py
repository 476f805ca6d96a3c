"""The region proxy's ASGI application and its route table.

    RequestContext (route matched once; ids, region header, errors, access log, metrics)
      └── Authenticate (bearer token, where the route needs one)
            └── UserLimits (per-user rate and streams, where the route generates)
                  └── Dispatch: the route's endpoint, plain ASGI
                        └── FastAPI for /healthz, /readyz, /metrics, and the lifespan
                            (gateway/operations.py, shared with the router)

`API_ROUTES` is every API route a region serves, each declared once; the router
forwards the same table (router/app.py). The API endpoints are plain ASGI
callables: the hot path never goes through FastAPI's per-request machinery.
FastAPI owns the lifespan, which opens and closes every async resource.
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.asgi import ASGIApp
from gateway.auth import RevocationCheck
from gateway.dialects import (
    ChatGeneration,
    CompletionsGeneration,
    CopilotGeneration,
    OllamaGeneration,
    ShowEndpoint,
    listing,
    models_listing,
    parse_chat,
    parse_generate,
    root,
    version,
)
from gateway.errors import Dialect
from gateway.generation import GenerationEndpoint
from gateway.middleware import Authenticate, RequestContext, UserLimits
from gateway.operations import operations_app, operations_routes
from gateway.pool import Priority
from gateway.routing import Dispatch, Route, RouteTable
from gateway.services import Services
from gateway.settings import GatewaySettings

GET, POST = ("GET",), ("POST",)
COMPLETIONS, CHAT = "completions", "chat"  # token scopes (gateway/auth/tokens.py)
OLLAMA, OPENAI = Dialect.OLLAMA, Dialect.OPENAI


def _generate(services: Services) -> ASGIApp:
    dialect = OllamaGeneration(services, "/api/generate", parse_generate, Priority.COMPLETION)
    return GenerationEndpoint(services, dialect)


def _chat(services: Services) -> ASGIApp:
    dialect = OllamaGeneration(services, "/api/chat", parse_chat, Priority.CHAT)
    return GenerationEndpoint(services, dialect)


def _completions(services: Services) -> ASGIApp:
    return GenerationEndpoint(services, CompletionsGeneration(services))


def _chat_completions(services: Services) -> ASGIApp:
    return GenerationEndpoint(services, ChatGeneration(services))


def _copilot(services: Services) -> ASGIApp:
    return GenerationEndpoint(services, CopilotGeneration(services))


def _root(services: Services) -> ASGIApp:
    return root


API_ROUTES: tuple[Route[Services], ...] = (
    # Ollama
    Route("/api/generate", POST, _generate, OLLAMA, scope=COMPLETIONS, generates=True),
    Route("/api/chat", POST, _chat, OLLAMA, scope=CHAT, generates=True),
    Route("/api/show", POST, ShowEndpoint, OLLAMA),
    Route("/api/tags", GET, lambda services: listing(services, "tags"), OLLAMA),
    Route("/api/ps", GET, lambda services: listing(services, "ps"), OLLAMA),
    Route("/api/version", GET, version, OLLAMA),
    Route("/", ("GET", "HEAD"), _root, OLLAMA, auth=False),  # "is Ollama up?" probes
    # OpenAI
    Route("/v1/completions", POST, _completions, OPENAI, scope=COMPLETIONS, generates=True),
    Route("/v1/chat/completions", POST, _chat_completions, OPENAI, scope=CHAT, generates=True),
    Route("/v1/models", GET, models_listing, OPENAI),
    # Copilot
    Route(
        "/v1/engines/{engine}/completions",
        POST,
        _copilot,
        OPENAI,
        scope=COMPLETIONS,
        generates=True,
    ),
)


def region_operations(services: Services) -> FastAPI:
    return operations_app(
        "Ghostgate region",
        running=services.running,
        readiness=services.readiness,
        metrics=services.metrics,
        alive={"status": "alive", "region": services.settings.region},
    )


def create_app(
    settings: GatewaySettings, revocations: RevocationCheck | None = None
) -> tuple[ASGIApp, Services]:
    """The region's ASGI app and the services behind it."""
    services = Services.build(settings, revocations)
    operations = region_operations(services)
    table = RouteTable(
        [
            *(route.built(services) for route in API_ROUTES),
            *operations_routes(operations, OLLAMA),
        ]
    )
    inner = UserLimits(Dispatch(table, operations), services)
    return RequestContext(Authenticate(inner, services), table, services), services
