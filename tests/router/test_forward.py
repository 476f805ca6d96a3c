"""Forward mode's decisions, with fake regions: which headers go, when to move on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import NoCapacity, UpstreamError
from gateway.http2 import ConnectError, StreamReset
from gateway.trace import Trace
from router.app import create_app
from router.forward import Forwarder, UpstreamRequest, upstream_request
from router.nearest import Alternative
from router.services import Caller
from router.settings import RouterSettings


def test_the_region_gets_the_routers_token_and_no_hop_by_hop_headers() -> None:
    scope = {
        "method": "POST",
        "path": "/api/generate",
        "raw_path": b"/api/generate",
        "query_string": b"x=1",
        "client": ("10.0.0.9", 5555),
        "headers": [
            (b"host", b"router"),
            (b"authorization", b"Bearer gg_secret"),
            (b"connection", b"keep-alive"),
            (b"content-length", b"12"),
            (b"content-type", b"application/json"),
            (b"x-request-id", b"client-id"),
            (b"user-agent", b"editor/1"),
        ],
    }
    trace = Trace("rid-1", "/api/generate", 0.0)
    request = upstream_request(scope, Caller("alice", "JWT"), trace, b'{"a": 1}')
    assert request.target == "/api/generate?x=1" and request.body == b'{"a": 1}'
    assert sorted(request.headers) == sorted(
        [
            ("content-type", "application/json"),
            ("user-agent", "editor/1"),
            ("authorization", "Bearer JWT"),
            ("x-request-id", "rid-1"),
            ("x-forwarded-for", "10.0.0.9"),
        ]
    )


class FakeStream:
    def __init__(self, status: int, chunks: list[bytes | Exception]) -> None:
        self.status = status
        self.headers = [("content-type", "application/x-ndjson"), ("date", "x")]
        self.chunks = chunks
        self.closed = False

    async def read_chunk(self) -> bytes:
        item = self.chunks.pop(0) if self.chunks else b""
        if isinstance(item, Exception):
            raise item
        return item

    async def aclose(self) -> None:
        self.closed = True


class FakeClient:
    def __init__(self, outcome: FakeStream | Exception) -> None:
        self.outcome = outcome
        self.requests = 0

    async def request(self, *args: Any) -> FakeStream:
        self.requests += 1
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.fixture
def forwarder(tmp_path: Path) -> Iterator[Forwarder]:
    _, services = create_app(RouterSettings(state_dir=tmp_path))
    yield Forwarder(services)


def alternatives(*names: str) -> tuple[Alternative, ...]:
    return tuple(Alternative(n, f"http://{n}", "ready", 0.0, 10.0, 10.0, 0.0) for n in names)


async def run(forwarder: Forwarder, clients: dict[str, FakeClient]) -> list[dict[str, Any]]:
    forwarder.services.clients._clients = clients  # type: ignore[assignment]
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    request = UpstreamRequest("POST", "/api/generate", [], b"{}")
    trace = Trace("rid", "/api/generate", 0.0)
    await forwarder._forward(request, alternatives(*clients), send, trace)  # type: ignore[arg-type]
    return sent


@pytest.mark.anyio
async def test_moves_on_before_the_first_byte_and_not_after(forwarder: Forwarder) -> None:
    refused = FakeStream(503, [b'{"error": "busy"}'])
    reset = FakeStream(200, [StreamReset(1, 2)])
    good = FakeStream(200, [b"a\n", b"b\n"])
    clients = {
        "us-west": FakeClient(ConnectError("refused")),
        "us-east": FakeClient(refused),
        "eu-west": FakeClient(reset),
        "ap-east": FakeClient(good),
    }
    sent = await run(forwarder, clients)
    assert [m.get("body") for m in sent[1:]] == [b"a\n", b"b\n", b""]
    assert sent[0]["status"] == 200 and (b"date", b"x") not in sent[0]["headers"]
    assert refused.closed and reset.closed and good.closed
    views = forwarder.services.prober.views  # the dead region is ejected, the busy one not
    assert views["us-west"].last_error == "refused" and views["us-east"].last_error == ""


@pytest.mark.anyio
async def test_the_last_regions_503_reaches_the_client(forwarder: Forwarder) -> None:
    busy = FakeStream(503, [b'{"error": "busy"}'])
    sent = await run(forwarder, {"us-west": FakeClient(busy)})
    assert sent[0]["status"] == 503 and sent[1]["body"] == b'{"error": "busy"}'


@pytest.mark.anyio
async def test_no_region_reachable_is_503(forwarder: Forwarder) -> None:
    with pytest.raises(NoCapacity):
        await run(
            forwarder,
            {"us-west": FakeClient(ConnectError("x")), "eu-west": FakeClient(ConnectError("y"))},
        )


@pytest.mark.anyio
async def test_a_failure_after_the_first_byte_ends_the_stream(forwarder: Forwarder) -> None:
    broken = FakeStream(200, [b"a\n", StreamReset(1, 2)])
    spare = FakeClient(FakeStream(200, [b"never"]))
    with pytest.raises(UpstreamError):
        await run(forwarder, {"us-west": FakeClient(broken), "eu-west": spare})
    assert spare.requests == 0 and broken.closed
