"""Backends on loopback sockets for the pool's I/O tests: one that answers like a
(tiny) Ollama or misbehaves on purpose, and one that never accepts a connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

MODEL = "m:latest"

# A reply writes to the client; `closing` is set when the server shuts down.
Reply = Callable[[asyncio.StreamWriter, asyncio.Event], Awaitable[None]]


def head(status: int, content_type: str, length: int) -> bytes:
    # Connection: close keeps aiohttp from pooling the connection, so no test
    # can race a server-side close against the reuse of a kept-alive socket.
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


async def generate(writer: asyncio.StreamWriter, closing: asyncio.Event) -> None:
    lines = [
        {"model": MODEL, "response": "x", "done": False},
        {"model": MODEL, "response": "", "done": True, "eval_count": 1},
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    writer.write(head(200, "application/x-ndjson", len(body)) + body)


async def tags(writer: asyncio.StreamWriter, closing: asyncio.Event) -> None:
    body = json.dumps({"models": [{"name": MODEL}]}).encode()
    writer.write(head(200, "application/json", len(body)) + body)


async def not_json(writer: asyncio.StreamWriter, closing: asyncio.Event) -> None:
    writer.write(head(200, "application/json", 4) + b"nope")


async def broken(writer: asyncio.StreamWriter, closing: asyncio.Event) -> None:
    writer.write(head(500, "application/json", 2) + b"{}")


async def cut(writer: asyncio.StreamWriter, closing: asyncio.Event) -> None:
    """A backend killed mid-body: 10 of the 100 promised bytes, then the socket closes."""
    writer.write(head(200, "application/x-ndjson", 100) + b"0123456789")


async def stall(writer: asyncio.StreamWriter, closing: asyncio.Event) -> None:
    """A backend that stops sending mid-body and keeps the connection open."""
    writer.write(head(200, "application/x-ndjson", 100) + b"0123456789")
    await writer.drain()
    await closing.wait()


REPLIES: dict[bytes, Reply] = {
    b"/api/generate": generate,
    b"/api/tags": tags,
    b"/not-json": not_json,
    b"/broken": broken,
    b"/cut": cut,
    b"/stall": stall,
}


@contextlib.asynccontextmanager
async def backend() -> AsyncIterator[str]:
    """An HTTP/1.1 server on 127.0.0.1 answering REPLIES by path; yields its URL."""
    closing = asyncio.Event()
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1]
            for line in request.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":", 1)[1]))
            await REPLIES[path](writer, closing)
            await writer.drain()
        except ConnectionError:
            pass  # the client went first (a test closed its response): nothing to answer
        finally:
            handlers.discard(task)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # Ended, not cancelled: asyncio logs a cancelled connection handler as an error.
        closing.set()
        if handlers:
            _, stuck = await asyncio.wait(set(handlers), timeout=5)
            assert not stuck, f"{len(stuck)} connection handlers did not end"
        server.close()
        await server.wait_closed()


@contextlib.contextmanager
def never_accepting() -> Iterator[str]:
    """The URL of a listener that neither accepts nor refuses: a connect hangs.

    `listen(0)` with nothing calling `accept`: once its accept queue holds the
    one connection it allows, the kernel drops every further SYN, so a client's
    connect waits for its own timeout, as with a host that is up but stuck.
    """
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(16):  # fill the queue until a connect no longer completes
            filler = stack.enter_context(socket.socket())
            filler.settimeout(0.1)
            try:
                filler.connect(address)
            except TimeoutError:
                break
        else:
            raise RuntimeError("the listener kept accepting: cannot simulate a connect timeout")
        yield f"http://127.0.0.1:{address[1]}"
