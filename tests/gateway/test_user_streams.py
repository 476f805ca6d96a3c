"""A generation holds one of its user's streams per choice (`n`), from its parse to
its end, and gives every one back exactly once: done, failed, cancelled,
superseded. In process, with the embedded store and a dialect that only waits.

Also: UserLimits counts the refusals of the rate limit and of the input bounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.asgi import ClientGone, Message, Scope, Send
from gateway.auth import Principal
from gateway.completion import Completed
from gateway.dialects.ollama.request import FieldOutOfBounds
from gateway.errors import RateLimited, UpstreamError
from gateway.generation import Generation, GenerationEndpoint, Plan
from gateway.middleware import UserLimits
from gateway.pool import UpstreamResponse
from gateway.routing import MATCH_KEY, Match, Route
from gateway.services import PRINCIPAL_KEY, Services
from gateway.settings import GatewaySettings, Limits
from gateway.store.embedded import EmbeddedStore
from gateway.trace import Trace

pytestmark = pytest.mark.anyio

USER = "alice"


class Waiting:
    """A dialect whose plan waits for `release` (or fails with `error`)."""

    completion_route = True

    def __init__(self) -> None:
        self.planning = asyncio.Event()
        self.release = asyncio.Event()
        self.error: Exception | None = None
        self.superseded = 0

    def parse(self, scope: Scope, raw: bytes) -> Generation[int]:
        n = int(raw or b"1")
        return Generation(n, "m:latest", True, choices=n)

    async def plan(self, generation: Generation[int], trace: Trace) -> Plan:
        self.planning.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return Plan([])

    async def send_recalled(self, plan: Plan, completed: Completed, send: Send) -> None:
        raise AssertionError("no memory here")

    async def relay(
        self, plan: Plan, responses: list[UpstreamResponse], trace: Trace, send: Send
    ) -> Completed | None:
        return None

    async def send_superseded(self, generation: Generation[int], trace: Trace, send: Send) -> None:
        self.superseded += 1


def services(user_streams: int = 3) -> Services:
    return Services.build(GatewaySettings(limits=Limits(user_streams=user_streams)))


def held(services: Services) -> int:
    store = services.shared.store
    assert isinstance(store, EmbeddedStore)
    return store.streams.count(USER)


def request_scope(group: str | None = None) -> Scope:
    headers = [(b"x-ghostgate-group", group.encode())] if group else []
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/completions",
        "headers": headers,
        PRINCIPAL_KEY: Principal(USER, frozenset({"completions"}), "t", time.time() + 60, "k"),
    }


def client(n: int) -> tuple[Callable[[], Awaitable[Message]], asyncio.Event]:
    """`receive` for a body asking `n` choices; set the event and the client leaves."""
    gone = asyncio.Event()
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": str(n).encode(), "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    return receive, gone


async def discard(message: Message) -> None:
    pass


async def start(
    endpoint: GenerationEndpoint[Any, Any], dialect: Waiting, n: int, group: str | None = None
) -> tuple[asyncio.Task[None], asyncio.Event]:
    receive, gone = client(n)
    task = asyncio.create_task(endpoint(request_scope(group), receive, discard))
    await asyncio.wait_for(dialect.planning.wait(), 2)
    dialect.planning.clear()
    return task, gone


async def test_n_choices_hold_n_streams_until_the_end() -> None:
    region, dialect = services(), Waiting()
    endpoint = GenerationEndpoint(region, dialect)
    task, _ = await start(endpoint, dialect, 3)  # at the limit: accepted
    assert held(region) == 3
    receive, _ = client(1)
    with pytest.raises(RateLimited) as info:  # none free
        await endpoint(request_scope(), receive, discard)
    assert info.value.status == 429 and info.value.retry_after == 1
    dialect.release.set()
    await asyncio.wait_for(task, 2)
    assert held(region) == 0


async def test_four_choices_against_three_streams_is_429() -> None:
    region, dialect = services(user_streams=3), Waiting()
    receive, _ = client(4)
    with pytest.raises(RateLimited, match="needs 4"):
        await GenerationEndpoint(region, dialect)(request_scope(), receive, discard)
    assert held(region) == 0 and not dialect.planning.is_set()
    refusals = region.metrics.registry.get_sample_value(
        "ghostgate_user_limit_refusals_total", {"limit": "streams"}
    )
    assert refusals == 1


async def test_a_cancelled_request_gives_its_streams_back() -> None:
    region, dialect = services(), Waiting()
    task, gone = await start(GenerationEndpoint(region, dialect), dialect, 2)
    assert held(region) == 2
    gone.set()  # the client resets the stream
    with pytest.raises(ClientGone):
        await asyncio.wait_for(task, 2)
    assert held(region) == 0


async def test_a_cancelled_task_gives_its_streams_back() -> None:
    region, dialect = services(), Waiting()
    task, _ = await start(GenerationEndpoint(region, dialect), dialect, 2)
    task.cancel()  # shutdown: the release is shielded
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert held(region) == 0


async def test_a_failed_request_gives_its_streams_back() -> None:
    region, dialect = services(), Waiting()
    task, _ = await start(GenerationEndpoint(region, dialect), dialect, 2)
    dialect.error = UpstreamError("backend error")
    dialect.release.set()
    with pytest.raises(UpstreamError):
        await asyncio.wait_for(task, 2)
    assert held(region) == 0


async def test_a_superseded_request_gives_its_streams_back_once() -> None:
    region, dialect = services(user_streams=4), Waiting()
    endpoint = GenerationEndpoint(region, dialect)
    first, _ = await start(endpoint, dialect, 2, group="editor")
    second, _ = await start(endpoint, dialect, 1, group="editor")  # supersedes the first
    await asyncio.wait_for(first, 2)
    assert dialect.superseded == 1 and held(region) == 1
    dialect.release.set()
    await asyncio.wait_for(second, 2)
    assert held(region) == 0


async def test_no_principal_or_no_limit_counts_nothing() -> None:
    region, dialect = services(user_streams=0), Waiting()
    dialect.release.set()
    receive, _ = client(4)
    await GenerationEndpoint(region, dialect)(request_scope(), receive, discard)
    assert held(region) == 0


# UserLimits: the rate limit stays before the body; refusals are counted.


def generation_scope() -> Scope:
    scope = request_scope()
    route: Route[Any] = Route("/v1/completions", ("POST",), lambda s: s, generates=True)
    scope[MATCH_KEY] = Match(route, {})
    return scope


async def test_user_limits_count_rate_and_input_refusals() -> None:
    region = Services.build(GatewaySettings(limits=Limits(user_requests_per_minute=1)))

    async def refuses(scope: Scope, receive: Any, send: Any) -> None:
        raise FieldOutOfBounds("stop has more than 32 sequences", bound="stop_sequences")

    limits = UserLimits(refuses, region)
    receive, _ = client(1)
    with pytest.raises(FieldOutOfBounds):
        await limits(generation_scope(), receive, discard)
    with pytest.raises(RateLimited):
        await limits(generation_scope(), receive, discard)
    sample = region.metrics.registry.get_sample_value
    assert sample("ghostgate_input_refusals_total", {"bound": "stop_sequences"}) == 1
    assert sample("ghostgate_user_limit_refusals_total", {"limit": "requests_per_minute"}) == 1
