"""One route table per process, region and router alike: each route declared once.

A `Route` says everything the request path needs to know about an endpoint:
its path (with at most one `{name}` segment, as Copilot's engine route has),
its methods, its metrics label, the dialect its errors speak, whether it needs
a token and which scope, and whether it runs a generation (per-user limits, superseding). The
metric labels, the open paths and the generation routes are derived from the
table, never listed again.

The outermost middleware matches a request once (`RouteTable.match`) and
leaves the `Match` in the scope; the token check and the limits read it there,
and `Dispatch` calls its endpoint. `GET` routes answer `HEAD` too (RFC 9110
9.3.2: the same headers, no body); a known path with another method gets 405
with an `Allow` header (RFC 9110 15.5.6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from gateway.asgi import ASGIApp, Message, Receive, Scope, Send
from gateway.auth import KNOWN_SCOPES
from gateway.errors import Dialect, MethodNotAllowed, NotFound, dialect_for_path

C = TypeVar("C")
MATCH_KEY = "ghostgate.route"
OTHER = "other"  # the metrics label of every path that is not a route


@dataclass(frozen=True, slots=True)
class Route(Generic[C]):
    """One endpoint. `make` builds it from the process's context (its services);
    `bind` gives a route an endpoint directly (the router forwards a region's
    routes this way). `methods=()` means any method (a forwarded prefix)."""

    path: str
    methods: tuple[str, ...]
    make: Callable[[C], ASGIApp] | None = None
    dialect: Dialect | None = None  # None: by path (/v1/... OpenAI, else Ollama)
    auth: bool = True
    scope: str | None = None  # the token scope it needs; None: any valid token
    generates: bool = False
    label: str | None = None  # None: the path itself
    prefix: bool = False  # matches every path that starts with `path`
    endpoint: ASGIApp | None = None

    @property
    def metric_label(self) -> str:
        return self.label or self.path

    @property
    def error_dialect(self) -> Dialect:
        return self.dialect or dialect_for_path(self.path)

    @property
    def allowed(self) -> tuple[str, ...]:
        """The methods to answer, HEAD included wherever GET is."""
        if "GET" in self.methods and "HEAD" not in self.methods:
            return (*self.methods, "HEAD")
        return self.methods

    def bind(self, endpoint: ASGIApp) -> Route[C]:
        return replace(self, endpoint=endpoint, make=None)

    def built(self, context: C) -> Route[C]:
        if self.endpoint is not None:
            return self
        if self.make is None:
            raise ValueError(f"route {self.path} has no endpoint")
        return self.bind(self.make(context))


@dataclass(slots=True)
class Match:
    """A request's route and its path parameters, found once per request."""

    route: Route[Any]
    params: dict[str, str]


class RouteTable:
    """Routes by exact path in a dict; templated and prefix routes after, in order."""

    def __init__(self, routes: Iterable[Route[Any]]) -> None:
        self.routes = tuple(routes)
        self._exact: dict[str, Route[Any]] = {}
        self._templated: list[tuple[str, str, str, Route[Any]]] = []
        self._prefixes: list[Route[Any]] = []
        for route in self.routes:
            if route.endpoint is None:
                raise ValueError(f"route {route.path} has no endpoint: build or bind it first")
            self._add(route)

    @classmethod
    def build(cls, routes: Iterable[Route[C]], context: C) -> RouteTable:
        """Every route's endpoint made from `context` (a process's services)."""
        return cls(route.built(context) for route in routes)

    def match(self, path: str) -> Match | None:
        route = self._exact.get(path)
        if route is not None:
            return Match(route, {})
        for head, tail, name, templated in self._templated:
            if path.startswith(head) and path.endswith(tail):
                value = path[len(head) : len(path) - len(tail)]
                if value and "/" not in value:
                    return Match(templated, {name: value})
        for prefixed in self._prefixes:
            if path.startswith(prefixed.path):
                return Match(prefixed, {})
        return None

    def label(self, path: str) -> str:
        """A bounded metrics label: the route's, or `other`."""
        match = self.match(path)
        return OTHER if match is None or match.route.prefix else match.route.metric_label

    def dialect(self, path: str) -> Dialect:
        match = self.match(path)
        return match.route.error_dialect if match is not None else dialect_for_path(path)

    @property
    def open_paths(self) -> frozenset[str]:
        return frozenset(r.path for r in self.routes if not r.auth)

    @property
    def generation_labels(self) -> frozenset[str]:
        return frozenset(r.metric_label for r in self.routes if r.generates)

    def _add(self, route: Route[Any]) -> None:
        if route.scope is not None and route.scope not in KNOWN_SCOPES:
            raise ValueError(f"route {route.path}: unknown scope {route.scope!r}")
        if route.prefix:
            self._prefixes.append(route)
            return
        if "{" not in route.path:
            if route.path in self._exact:
                raise ValueError(f"route {route.path} declared twice")
            self._exact[route.path] = route
            return
        head, _, rest = route.path.partition("{")
        name, _, tail = rest.partition("}")
        if not name or "{" in tail:
            raise ValueError(f"route {route.path}: one {{name}} segment at most")
        self._templated.append((head, tail, name, route))

    def __repr__(self) -> str:
        return f"<RouteTable routes={len(self.routes)} open={sorted(self.open_paths)}>"


def match_of(scope: Scope) -> Match | None:
    """The match the outermost middleware left in the scope (None: no route)."""
    match = scope.get(MATCH_KEY)
    return match if isinstance(match, Match) else None


class Dispatch:
    """Calls the matched route's endpoint: 404 for no route, 405 (with `Allow`)
    for a method the route does not take, HEAD as GET without the body."""

    def __init__(self, table: RouteTable, lifespan: ASGIApp) -> None:
        self.table = table
        self.lifespan = lifespan  # non-HTTP scopes (the lifespan) go here

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.lifespan(scope, receive, send)
            return
        match = match_of(scope) or self.table.match(scope["path"])
        if match is None:
            raise NotFound(f"no route {scope['path']}")
        route, method = match.route, scope["method"]
        endpoint = route.endpoint
        assert endpoint is not None
        if route.methods and method not in route.allowed:
            raise MethodNotAllowed(
                f"{method} is not allowed on {scope['path']}", allow=route.allowed
            )
        if match.params:
            scope["path_params"] = match.params
        if method == "HEAD" and "HEAD" not in route.methods:
            await endpoint({**scope, "method": "GET"}, receive, _without_body(send))
            return
        await endpoint(scope, receive, send)


def _without_body(send: Send) -> Send:
    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_head
