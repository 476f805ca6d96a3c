"""A fix for Hypercorn 0.18.0: connections the client closed while idle linger.

When a client closes an idle keep-alive connection (editor plugins do, some
after every completion), Hypercorn's TCP server reads EOF but its idle timer
keeps the connection's task group open until `keep_alive_timeout`: the socket,
three tasks and their memory stay for as long as that timeout. Ghostgate sets
it to hours (editors keep HTTP/2 connections for a working day), so without
this they would pile up (measured: three tasks per closed connection, for the
whole timeout).

The fix: once the peer has closed, stop the idle timer, and treat a later
"idle again" (a response finishing after a half-close) as the end of the
connection. Pinned to hypercorn==0.18.0; check it again on an upgrade.
"""

from __future__ import annotations

from typing import Any

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import Updated

_original_read_data = TCPServer._read_data
_original_protocol_send = TCPServer.protocol_send


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


def apply() -> None:
    """Install the fix (idempotent)."""
    TCPServer._read_data = _read_data_then_stop_idle  # type: ignore[method-assign]
    TCPServer.protocol_send = _protocol_send_closing_when_done  # type: ignore[method-assign]
