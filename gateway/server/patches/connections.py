"""Hypercorn 0.18.0's connections, bounded: a deadline for the request head, a
bound on the process's connections, and no lingering after the peer closed.

1. A request head must be complete within `head_timeout` of the connection
   opening (HTTP/2: its first request) or, on HTTP/1.1 keep-alive, of the
   first byte of the next request. Hypercorn has no such timer: with
   `keep_alive_timeout` raised to hours for editors (and no `read_timeout`),
   a silent or half-sent request held its socket and three tasks for hours,
   and a thousand of them exhausted the file descriptors. Idle connections
   that have served requests still stay for `keep_alive_timeout`.
2. At most `max_connections` per process (gateway/server/connections.py
   decides): at the bound the longest-idle connection is closed for the new
   one, and a new one is refused when every held one is serving a request.
3. When a client closes an idle keep-alive connection (editor plugins do, some
   after every completion), Hypercorn reads EOF but its idle timer keeps the
   connection's task group open until `keep_alive_timeout`: three tasks per
   closed connection for hours (found by the cancel-storm test). Once the peer
   has closed, the idle timer stops, and a later "idle again" (a response
   finishing after a half-close) ends the connection.

`configure()` sets the bounds (gateway/server/serve.py calls it before
serving); `TABLE` is what /metrics reads (closed by reason: head_timeout,
shed, refused).
"""

from __future__ import annotations

import asyncio
from ssl import SSLError
from typing import Any

from hypercorn.asyncio.tcp_server import MAX_RECV, TCPServer
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol.h11 import H11Protocol

from gateway.server.connections import ConnectionTable
from gateway.server.patches.base import Patch

PATCH = Patch(
    "connections",
    why="no request-head deadline, no connection bound, closed idle connections linger",
    requires={"hypercorn": "0.18.0"},
)

TABLE = ConnectionTable(limit=10_000)
_head_timeout = 10.0


def configure(max_connections: int, head_timeout: float) -> ConnectionTable:
    """Set this process's bounds; returns the table the metrics read."""
    global _head_timeout
    TABLE.limit = max_connections
    _head_timeout = head_timeout
    return TABLE


class _Connection:
    """What the table tracks of one Hypercorn connection."""

    __slots__ = ("busy", "head_timer", "peer_closed", "served", "server")

    def __init__(self, server: Any) -> None:
        self.server = server
        self.busy = False
        self.served = False
        self.peer_closed = False
        self.head_timer: asyncio.TimerHandle | None = None

    def await_head(self) -> None:
        if self.head_timer is None:
            loop = asyncio.get_running_loop()
            self.head_timer = loop.call_later(_head_timeout, self._head_expired)

    def head_received(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def close(self) -> None:
        self.head_received()
        self.server.writer.close()  # its reader sees EOF; its own `run` cleans up

    def _head_expired(self) -> None:
        self.head_timer = None
        TABLE.count("head_timeout")
        self.close()


async def _run(self: Any) -> None:
    connection = self._ghostgate = _Connection(self)
    admission = TABLE.admit(connection)
    if admission.shed is not None:
        admission.shed.close()  # type: ignore[attr-defined]
    if not admission.admitted:
        self.writer.close()
        return
    connection.await_head()
    try:
        await _original_run(self)
    finally:
        connection.head_received()
        TABLE.remove(connection)


async def _read_data(self: Any) -> None:
    # Hypercorn 0.18.0's loop, with each read counted as activity and, on an
    # idle HTTP/1.1 connection, the head deadline armed by the first byte.
    connection: _Connection = self._ghostgate
    try:
        while not self.reader.at_eof():
            try:
                data = await asyncio.wait_for(self.reader.read(MAX_RECV), self.config.read_timeout)
            except (ConnectionError, OSError, TimeoutError, SSLError):
                break
            TABLE.touch(connection)
            if not connection.busy and connection.served and _speaks_h11(self):
                connection.await_head()
            await self.protocol.handle(RawData(data))
        await self.protocol.handle(Closed())
    finally:
        connection.peer_closed = True
        await self.idle_task.stop()


async def _protocol_send(self: Any, event: Any) -> None:
    if isinstance(event, Updated):
        connection: _Connection = self._ghostgate
        connection.busy = not event.idle
        TABLE.touch(connection)
        if not event.idle:
            connection.served = True
            connection.head_received()
        elif connection.peer_closed:
            await self._close()  # nobody will send another request on this connection
            return
    await _original_protocol_send(self, event)


def _speaks_h11(server: Any) -> bool:
    return isinstance(getattr(server.protocol, "protocol", None), H11Protocol)


_original_run = PATCH.replace(TCPServer, "run", _run)
PATCH.replace(TCPServer, "_read_data", _read_data)
_original_protocol_send = PATCH.replace(TCPServer, "protocol_send", _protocol_send)
