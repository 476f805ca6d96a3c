"""Small plain-ASGI helpers for the hot path: reading a bounded body, sending
responses, and running work until the client goes away.

Hypercorn does not cancel an app when its client leaves: it queues an
`http.disconnect` message (on HTTP/2 RST_STREAM or an HTTP/1.1 close) and keeps
going. `until_disconnect` is how the gateway notices at once, and it is what
makes a cancel reach the backend in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from gateway.errors import PayloadTooLarge, RequestTimeout

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected; there is nobody left to answer."""


class Superseded(Exception):
    """A newer request of the same group replaced this one."""


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower-case bytes), decoded as latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


# An over-limit body smaller than this is read to its end (and dropped) before
# the 413: closing on unread data makes the kernel reset the connection, and the
# client would lose the answer. Larger ones are refused at once.
DRAIN_LIMIT = 16 * 1024 * 1024


async def read_body(scope: Scope, receive: Receive, limit: int, within: float) -> bytes:
    """The whole request body, refusing more than `limit` bytes, or one that has
    not arrived `within` seconds (`RequestTimeout`, 408)."""
    declared = header(scope, b"content-length")
    size_known = declared is not None and declared.isdigit()
    if size_known and int(declared or 0) > max(limit, DRAIN_LIMIT):
        raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
    # One timer that cancels this task, as asyncio.timeout does, without its
    # two coroutines per request: this runs for every request with a body.
    task = asyncio.current_task()
    assert task is not None
    expired: list[bool] = []
    timer = asyncio.get_running_loop().call_later(within, _expire, task, expired)
    try:
        return await _read_all(receive, limit)
    except asyncio.CancelledError:
        if expired and task.uncancel() == 0:
            raise RequestTimeout(f"request body not received within {within:g} s") from None
        raise
    finally:
        timer.cancel()


def _expire(task: asyncio.Task[object], expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()


async def _read_all(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _drain(receive, size)
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _drain(receive: Receive, size: int) -> None:
    """Read (and drop) the rest of a body whose last message is still to come."""
    while size <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def send_bytes(
    send: Send, status: int, body: bytes, content_type: bytes, headers: Headers | None = None
) -> None:
    """A complete response in one go."""
    response_headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
    ]
    if headers:
        response_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, payload: object, headers: Headers | None = None
) -> None:
    await send_bytes(send, status, json.dumps(payload).encode(), b"application/json", headers)


async def until_disconnect(
    receive: Receive, work: Awaitable[T], cancelled: asyncio.Event | None = None
) -> T:
    """Run `work` to completion, or cancel it the moment the client disconnects
    (`ClientGone`) or `cancelled` is set (`Superseded`: a newer request replaced it).

    Call only after the request body has been read: from then on the only
    message `receive` can yield is `http.disconnect`.
    """
    task: asyncio.Future[T] = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    waiters: tuple[asyncio.Future[Any], ...] = (task, watcher)
    if cancelled is not None:
        waiters += (asyncio.ensure_future(cancelled.wait()),)
    try:
        # Step 1: whichever finishes first decides. The normal case is the
        # work finishing; a disconnect or a supersede means it must stop now.
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        # Step 2: cancel the work and wait for its cleanup (closing the
        # upstream response is what tells the backend to stop).
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if watcher.done():
            raise ClientGone
        raise Superseded
    finally:
        # Step 3: on every exit, including our own cancellation (shutdown),
        # leave no task behind.
        for pending in waiters:
            if not pending.done():
                pending.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
