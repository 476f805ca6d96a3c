"""/api/show and /api/version: a backend's 200 JSON answer reused for the TTL, with
a fake upstream counting what reaches the backends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.dialects.ollama.routes import BackendAnswers, ShowEndpoint, version
from gateway.errors import ModelNotFound, UpstreamError
from gateway.pool import Backend
from gateway.services import Services
from gateway.settings import BackendSpec, GatewaySettings, WasteSettings

MODEL = "starcoder2:3b"
SHOW = {"template": "<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        self.content_type = b"application/json; charset=utf-8"
        self.closed = False

    async def read(self) -> bytes:
        return self.body

    def close(self) -> None:
        self.closed = True


class FakeUpstream:
    """Counts calls per backend; answers what the test sets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.status = 200
        self.body = json.dumps(SHOW).encode()
        self.version: object = {"version": "0.12.3"}

    async def post(self, backend: Backend, path: str, body: bytes) -> FakeResponse:
        self.calls.append((backend.url, path))
        return FakeResponse(self.status, self.body)

    async def get_json(self, backend: Backend, path: str, within: float) -> object:
        self.calls.append((backend.url, path))
        if isinstance(self.version, Exception):
            raise self.version
        return self.version


def region(ttl: float = 60.0) -> tuple[Services, FakeUpstream]:
    settings = GatewaySettings(
        backends=(BackendSpec("http://b1"), BackendSpec("http://b2")),
        waste=WasteSettings(backend_answer_ttl=ttl),
    )
    services = Services.build(settings)
    for backend in services.scheduler.backends:
        backend.healthy = True
        backend.models = frozenset({MODEL})
    upstream = FakeUpstream()
    services.upstream = upstream  # type: ignore[assignment]
    return services, upstream


async def call(endpoint: Any, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    scope = {"type": "http", "method": "POST", "path": "/api/show", "headers": []}
    raw = json.dumps(body).encode() if body is not None else b""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await endpoint(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def hits(services: Services, route: str) -> float:
    value = services.metrics.registry.get_sample_value(
        "ghostgate_backend_answer_cache_hits_total", {"route": route}
    )
    return value or 0.0


pytestmark = pytest.mark.anyio


async def test_ten_shows_cost_one_backend_call_within_the_ttl() -> None:
    services, upstream = region()
    clock = Clock()
    show = ShowEndpoint(services, clock=clock)
    answers = [await call(show, {"model": MODEL}) for _ in range(10)]
    assert answers == [(200, upstream.body)] * 10
    assert len(upstream.calls) == 1 and hits(services, "/api/show") == 9
    await call(show, {"name": "starcoder2:3b"})  # the legacy field, the same model
    assert len(upstream.calls) == 1
    clock.now += 60.0  # the TTL is over
    await call(show, {"model": MODEL})
    assert len(upstream.calls) == 2


async def test_an_unknown_model_is_a_404_without_a_backend_call() -> None:
    services, upstream = region()
    show = ShowEndpoint(services, clock=Clock())
    for _ in range(3):
        with pytest.raises(ModelNotFound):
            await call(show, {"model": "never-pulled:7b"})
    assert upstream.calls == []


async def test_error_and_non_json_answers_are_not_kept() -> None:
    services, upstream = region()
    show = ShowEndpoint(services, clock=Clock())
    upstream.status, upstream.body = 500, b'{"error": "boom"}'
    assert await call(show, {"model": MODEL}) == (500, b'{"error": "boom"}')
    await call(show, {"model": MODEL})
    upstream.status, upstream.body = 200, b"<html>a proxy's page</html>"
    await call(show, {"model": MODEL})
    await call(show, {"model": MODEL})
    assert len(upstream.calls) == 4 and hits(services, "/api/show") == 0


async def test_what_shapes_the_answer_is_part_of_its_key() -> None:
    services, upstream = region()
    show = ShowEndpoint(services, clock=Clock())
    await call(show, {"model": MODEL})
    await call(show, {"model": MODEL, "verbose": True})
    await call(show, {"model": MODEL, "verbose": True})
    assert len(upstream.calls) == 2
    for _ in range(2):  # a body asking for more is passed on every time
        await call(show, {"model": MODEL, "system": "You are terse."})
    assert len(upstream.calls) == 4


async def test_an_answer_is_reused_only_while_its_backend_serves_the_model() -> None:
    services, upstream = region()
    show = ShowEndpoint(services, clock=Clock())
    await call(show, {"model": MODEL})
    first = upstream.calls[0][0]
    other = next(b for b in services.scheduler.backends if b.url != first)
    asked = next(b for b in services.scheduler.backends if b.url == first)
    asked.healthy = False
    await call(show, {"model": MODEL})
    assert upstream.calls[1][0] == other.url
    asked.healthy, asked.models = True, frozenset()  # back, without the model
    await call(show, {"model": MODEL})
    assert len(upstream.calls) == 2  # the other backend's answer


async def test_ttl_zero_turns_the_cache_off() -> None:
    services, upstream = region(ttl=0.0)
    show = ShowEndpoint(services, clock=Clock())
    for _ in range(3):
        await call(show, {"model": MODEL})
    assert len(upstream.calls) == 3


async def test_ten_versions_cost_one_backend_call_and_errors_are_not_kept() -> None:
    services, upstream = region()
    clock = Clock()
    endpoint = version(services, clock=clock)
    upstream.version = UpstreamError("/api/version answered 500")
    with pytest.raises(UpstreamError):
        await call(endpoint)
    upstream.version = {"version": "0.12.3"}
    answers = [await call(endpoint) for _ in range(10)]
    assert answers == [(200, b'{"version": "0.12.3"}')] * 10
    assert len(upstream.calls) == 2 and hits(services, "/api/version") == 9
    clock.now += 60.0
    await call(endpoint)
    assert len(upstream.calls) == 3


def test_the_answers_are_bounded_in_bytes() -> None:
    clock = Clock()
    counted: list[None] = []
    answers = BackendAnswers(60.0, lambda: counted.append(None), max_bytes=1000, clock=clock)
    backends = [Backend(url=f"http://b{i}", slots=1) for i in range(10)]
    for backend in backends:
        answers.keep(backend, "m", b'"' + b"x" * 300 + b'"')
    assert len(answers) == 2 and answers.size <= 1000
    assert answers.find(backends[:8], "m") is None
    assert answers.find(backends[8:], "m") is not None and len(counted) == 1
    answers.keep(backends[0], "m", b'"' + b"x" * 2000 + b'"')  # larger than the bound
    assert len(answers) == 2
