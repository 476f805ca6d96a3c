"""The hot path's ASGI helpers."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from gateway.asgi import read_body
from gateway.errors import PayloadTooLarge, RequestTimeout


def receiver(queue: list[dict[str, Any]]) -> Any:
    """`receive` over `queue`, consuming it."""

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await anyio.sleep(3600)  # a client that sent everything waits for the answer
        raise AssertionError("unreachable")

    return receive


@pytest.mark.anyio
async def test_an_over_limit_body_in_its_last_message_is_refused_at_once() -> None:
    """The 413 must not wait for a message that will never come."""
    scope: dict[str, Any] = {"headers": []}
    receive = receiver([{"type": "http.request", "body": b"x" * 11, "more_body": False}])
    with anyio.fail_after(2), pytest.raises(PayloadTooLarge):
        await read_body(scope, receive, limit=10, within=5)


@pytest.mark.anyio
async def test_an_over_limit_body_is_read_to_its_end_before_the_413() -> None:
    scope: dict[str, Any] = {"headers": []}
    messages = [
        {"type": "http.request", "body": b"x" * 8, "more_body": True},
        {"type": "http.request", "body": b"x" * 8, "more_body": True},
        {"type": "http.request", "body": b"x" * 8, "more_body": False},
    ]
    with anyio.fail_after(2), pytest.raises(PayloadTooLarge):
        await read_body(scope, receiver(messages), limit=10, within=5)
    assert messages == []  # read to its end: the client will get the 413


@pytest.mark.anyio
async def test_a_body_that_stalls_is_a_408() -> None:
    scope: dict[str, Any] = {"headers": []}
    messages = [{"type": "http.request", "body": b"x", "more_body": True}]  # then nothing
    with anyio.fail_after(2), pytest.raises(RequestTimeout):
        await read_body(scope, receiver(messages), limit=10, within=0.1)
