"""The route table: each route declared once, everything else derived from it."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import API_ROUTES
from gateway.asgi import Message, Receive, Scope, Send
from gateway.errors import Dialect, MethodNotAllowed, NotFound, render_error
from gateway.routing import Dispatch, Route, RouteTable
from router.app import FORWARDED_PREFIXES


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    body = f"{scope['method']} {scope.get('path_params', {})}".encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def table(*routes: Route[Any]) -> RouteTable:
    return RouteTable(route.bind(ok) for route in routes)


def test_exact_templated_and_prefix_routes() -> None:
    t = table(
        Route("/a", ("GET",)),
        Route("/v1/engines/{engine}/completions", ("POST",), generates=True),
        Route("/v1/", (), prefix=True),
    )
    assert t.match("/a") is not None and t.match("/a").params == {}  # type: ignore[union-attr]
    copilot = t.match("/v1/engines/codex/completions")
    assert copilot is not None and copilot.params == {"engine": "codex"}
    assert t.label("/v1/engines/codex/completions") == "/v1/engines/{engine}/completions"
    # An empty or nested engine is not the templated route; the prefix takes it.
    assert t.match("/v1/engines//completions").route.prefix  # type: ignore[union-attr]
    assert t.match("/v1/engines/a/b/completions").route.prefix  # type: ignore[union-attr]
    assert t.label("/v1/anything") == "other" and t.label("/nope") == "other"
    assert t.match("/nope") is None


def test_labels_open_paths_and_generation_routes_come_from_the_table() -> None:
    t = RouteTable(route.bind(ok) for route in API_ROUTES)
    assert t.open_paths == {"/"}
    assert t.generation_labels == {
        "/api/generate",
        "/api/chat",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/engines/{engine}/completions",
    }
    assert t.dialect("/api/tags") is Dialect.OLLAMA
    assert t.dialect("/v1/models") is Dialect.OPENAI


def test_a_route_is_declared_once() -> None:
    with pytest.raises(ValueError, match="twice"):
        table(Route("/a", ("GET",)), Route("/a", ("POST",)))
    with pytest.raises(ValueError, match="no endpoint"):
        RouteTable([Route("/a", ("GET",))])


def test_router_forwards_every_region_api_path() -> None:
    prefixes = tuple(route.path for route in FORWARDED_PREFIXES)
    for route in API_ROUTES:
        assert route.path == "/" or route.path.startswith(prefixes)


async def call(dispatch: Dispatch, method: str, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await dispatch({"type": "http", "method": method, "path": path}, receive, send)
    return sent


@pytest.mark.anyio
async def test_head_is_get_without_the_body() -> None:
    dispatch = Dispatch(table(Route("/a", ("GET",))), ok)
    get = await call(dispatch, "GET", "/a")
    head = await call(dispatch, "HEAD", "/a")
    assert head[0] == get[0]  # same status and headers, Content-Length included
    assert get[1]["body"] == b"GET {}" and head[1]["body"] == b""


@pytest.mark.anyio
async def test_405_lists_the_allowed_methods() -> None:
    dispatch = Dispatch(table(Route("/a", ("GET",)), Route("/b", ("POST",))), ok)
    with pytest.raises(MethodNotAllowed) as info:
        await call(dispatch, "POST", "/a")
    _, headers, _ = render_error(info.value, Dialect.OLLAMA)
    assert (b"allow", b"GET, HEAD") in headers
    with pytest.raises(MethodNotAllowed) as info:
        await call(dispatch, "GET", "/b")
    assert info.value.allow == ("POST",)
    with pytest.raises(NotFound):
        await call(dispatch, "GET", "/c")
