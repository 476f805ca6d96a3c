"""Hypercorn 0.18.0: a connection the client closed while idle lingers for the
whole keep-alive timeout.

When a client closes an idle keep-alive connection (editor plugins do, some
after every completion), Hypercorn's TCP server reads EOF but its idle timer
keeps the connection's task group open until `keep_alive_timeout`: the socket,
three tasks and their memory stay for as long as that timeout. Ghostgate sets
it to hours (editors keep HTTP/2 connections for a working day), so without
this they would pile up (measured: three tasks per closed connection, for the
whole timeout; found by the cancel-storm test).

The fix: once the peer has closed, stop the idle timer, and treat a later
"idle again" (a response finishing after a half-close) as the end of the
connection.
"""

from __future__ import annotations

from typing import Any

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import Updated

from gateway.server.patches.base import Patch

PATCH = Patch(
    "idle-close",
    why="closed idle connections linger for keep_alive_timeout (three tasks each)",
    requires={"hypercorn": "0.18.0"},
)


async def _read_data_then_stop_idle(self: Any) -> None:
    try:
        await _original_read_data(self)
    finally:
        self._ghostgate_peer_closed = True
        await self.idle_task.stop()


async def _protocol_send_closing_when_done(self: Any, event: Any) -> None:
    if isinstance(event, Updated) and event.idle and getattr(self, "_ghostgate_peer_closed", False):
        await self._close()  # nobody will send another request on this connection
        return
    await _original_protocol_send(self, event)


_original_read_data = PATCH.replace(TCPServer, "_read_data", _read_data_then_stop_idle)
_original_protocol_send = PATCH.replace(
    TCPServer, "protocol_send", _protocol_send_closing_when_done
)
