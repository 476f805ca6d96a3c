"""Two fixes for Hypercorn 0.18.0.

1. Connections the client closed while idle linger.

When a client closes an idle keep-alive connection (editor plugins do, some
after every completion), Hypercorn's TCP server reads EOF but its idle timer
keeps the connection's task group open until `keep_alive_timeout`: the socket,
three tasks and their memory stay for as long as that timeout. Ghostgate sets
it to hours (editors keep HTTP/2 connections for a working day), so without
this they would pile up (measured: three tasks per closed connection, for the
whole timeout).

The fix: once the peer has closed, stop the idle timer, and treat a later
"idle again" (a response finishing after a half-close) as the end of the
connection.

2. HTTP/1.1 responses go out with an empty reason phrase (`HTTP/1.1 200 `).
RFC 9112 allows it, but some clients do not cope: h2load's HTTP/1.1 mode never
records the status of such a response and counts every one as failed. The
standard phrase (`200 OK`, `429 Too Many Requests`) is filled in.

Pinned to hypercorn==0.18.0 (and h11==0.16.0); check them again on an upgrade.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import h11
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import Updated
from hypercorn.protocol.h11 import H11Protocol

_original_read_data = TCPServer._read_data
_original_protocol_send = TCPServer.protocol_send
_original_send_h11_event = H11Protocol._send_h11_event

REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


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


async def _send_h11_event_with_reason(self: Any, event: Any) -> None:
    if isinstance(event, h11.Response | h11.InformationalResponse) and not event.reason:
        # h11's events are frozen; this one is ours until it is sent.
        object.__setattr__(event, "reason", REASONS.get(event.status_code, b""))
    await _original_send_h11_event(self, event)


def apply() -> None:
    """Install the fixes (idempotent)."""
    TCPServer._read_data = _read_data_then_stop_idle  # type: ignore[method-assign]
    TCPServer.protocol_send = _protocol_send_closing_when_done  # type: ignore[method-assign]
    H11Protocol._send_h11_event = _send_h11_event_with_reason  # type: ignore[method-assign]
