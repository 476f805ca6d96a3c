"""The operational side every Ghostgate process serves the same way, region and
router alike: FastAPI for `/healthz`, `/readyz` and `/metrics`, and the lifespan
that opens and closes every async resource. The hot paths never go through it;
the route table sends only these three paths (and the lifespan) here.

What a caller learns depends on the port it asks on (`Listener`) and its token:

    listener     the port                             /readyz                   /metrics
    COMBINED     the only one (no operations port)    minimal; full for admin   served
    PUBLIC       the API port, beside an operations   minimal, whatever token   404
    OPERATIONS   [gateway.server] operations_port     full                      served

The minimal report is what the router's probes read (ready, draining, the load,
a region's savings: counts only). The full one names backends, their URLs,
errors and models, the store and the process's internals: the topology a probe
of a public address must not learn. A missing or bad token on /readyz gets the
minimal report, not a 401, because the router and Kubernetes probe it without
one; a bad one is counted in `ghostgate_auth_failures_total{reason}`.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gateway.asgi import ASGIApp, Receive, Scope, Send
from gateway.auth import TokenVerifier, allows, bearer_token
from gateway.errors import Dialect, NotFound, Unauthorized, dialect_for_path, render_error
from gateway.metrics import RequestMetrics
from gateway.routing import Route

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPERATIONS_PATHS = ("/healthz", "/readyz", "/metrics")
ADMIN = "admin"  # the token scope that reads the full report
LISTENER_KEY = "ghostgate.listener"


class Listener(enum.Enum):
    """The port a request came in on, as far as what it may learn goes."""

    COMBINED = "combined"
    PUBLIC = "public"
    OPERATIONS = "operations"


def listener_of(scope: Scope) -> Listener:
    """The request's listener (`listening` sets it); without one, the only port."""
    listener = scope.get(LISTENER_KEY)
    return listener if isinstance(listener, Listener) else Listener.COMBINED


def listener_for(server: object, operations_port: int) -> Listener:
    """The listener of a connection whose local address is `server` (the scope's
    `server`, from the socket: no client chooses it, unlike a Host header)."""
    if not operations_port:
        return Listener.COMBINED
    if isinstance(server, tuple | list) and len(server) >= 2 and server[1] == operations_port:
        return Listener.OPERATIONS
    return Listener.PUBLIC


def tells_all(listener: Listener, scopes: frozenset[str]) -> bool:
    """Whether /readyz gives the full report: always on the operations port; on a
    process's only port, to a token with the admin scope; never on the public port
    beside an operations port, whose operator chose to keep internals off it."""
    if listener is Listener.OPERATIONS:
        return True
    return listener is Listener.COMBINED and allows(scopes, ADMIN)


def serves(listener: Listener, path: str) -> bool:
    """Whether `path` is served on `listener`: the operations port has the operations
    paths only, and the public port beside it has no /metrics."""
    if listener is Listener.OPERATIONS:
        return path in OPERATIONS_PATHS
    return not (listener is Listener.PUBLIC and path == "/metrics")


def token_scopes(
    verifier: TokenVerifier, authorization: str | None, refused: Callable[[str], None]
) -> frozenset[str]:
    """The scopes of the bearer token in `authorization`; none without a valid one.
    A bad token is `refused` by its reason; no token at all is not, since the
    probes send none, every second."""
    if not authorization:
        return frozenset()
    try:
        return verifier.verify(bearer_token(authorization)).scopes
    except Unauthorized as exc:
        refused(exc.reason)
        return frozenset()


@dataclass(frozen=True, slots=True)
class Asker:
    """Who asks for /readyz: the listener it came in on and its Authorization header."""

    listener: Listener = Listener.COMBINED
    authorization: str | None = None

    def told_all(self, verifier: TokenVerifier, refused: Callable[[str], None]) -> bool:
        """`tells_all` for this asker; its token is verified only where it can matter."""
        if self.listener is not Listener.COMBINED:
            return tells_all(self.listener, frozenset())
        return tells_all(self.listener, token_scopes(verifier, self.authorization, refused))


ANYONE = Asker()  # a probe: the minimal report
OPERATOR = Asker(Listener.OPERATIONS)  # the full report
Readiness = Callable[[Asker], tuple[bool, dict[str, object]]]


def operations_app(
    title: str,
    *,
    running: Callable[[], AbstractAsyncContextManager[Any]],
    readiness: Readiness,
    metrics: RequestMetrics,
    alive: dict[str, object],
) -> FastAPI:
    """FastAPI for health, readiness and metrics; owns the lifespan (`running`).
    `readiness` decides how much it tells each `Asker`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running():
            yield

    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return alive

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        asker = Asker(listener_of(request.scope), request.headers.get("authorization"))
        ready, report = readiness(asker)
        return JSONResponse(report, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def exposition() -> Response:
        return Response(metrics.exposition(), media_type=PROMETHEUS_TEXT)

    return app


def operations_routes(app: FastAPI, dialect: Dialect) -> list[Route[Any]]:
    """The route table's entries for what `app` serves: open, never generating; a
    path the request's listener does not serve (`serves`) is a 404, as if unknown."""
    return [
        Route(path, ("GET",), dialect=dialect, auth=False).bind(_where_served(app))
        for path in OPERATIONS_PATHS
    ]


def _where_served(app: ASGIApp) -> ASGIApp:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        if not serves(listener_of(scope), scope["path"]):
            raise NotFound(f"no route {scope['path']}")
        await app(scope, receive, send)

    return endpoint


def listening(app: ASGIApp, operations_port: int) -> ASGIApp:
    """`app` served on a public port and on `operations_port` by one server (one
    lifespan, one drain): each request's scope says which listener it came in on.
    The operations port answers the operations paths only; any other is a 404
    there, before the app, so no API route is reachable on it."""
    if not operations_port:
        return app

    async def listened(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            listener = listener_for(scope.get("server"), operations_port)
            scope[LISTENER_KEY] = listener
            if listener is Listener.OPERATIONS and not serves(listener, scope["path"]):
                status, headers, body = render_error(
                    NotFound(f"no route {scope['path']}"), dialect_for_path(scope["path"])
                )
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return listened
