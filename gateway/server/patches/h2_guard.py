"""Hypercorn 0.18.0's HTTP/2 connections, made safe against one bad stream or client.

1. Isolation. A DATA frame for a stream whose response is already complete
   (an early 401, 405, 413 or 429 answered before the body came in) raised
   KeyError out of `H2Protocol._handle_events`, which ended the connection and
   every other stream on it: through the router's pooled connection, one
   client's refused request ended another developer's stream. Such a frame is
   now acknowledged (the connection's flow-control window stays open) and the
   stream reset with NO_ERROR, so the client stops sending (RFC 9113 8.1).
2. The app queue. Each stream's messages to its app go through a queue of
   10; once the app has returned, nobody reads it, and the next body frame
   (or the disconnect message) blocked the connection's reader for good,
   stalling every stream on it. After its app ends, a stream's queue drops
   what it is given and releases whoever waits on it.
3. A malformed message is a stream error (RFC 9113 8.1.1), not a connection
   error: h2 raised InvalidBodyLengthError (a body longer or shorter than its
   content-length) out of `receive_data`, and Hypercorn closed the connection
   with every stream on it. That stream alone is now reset (PROTOCOL_ERROR).
4. Rapid reset and floods (gateway/server/h2_budget.py): early resets,
   SETTINGS and PING, empty DATA and PRIORITY frames are charged to the
   connection's budget; past it, GOAWAY(ENHANCE_YOUR_CALM). A reset stream's
   app task still counts against `h2_max_concurrent_streams` until it ends:
   a HEADERS frame past that limit is refused (RST_STREAM REFUSED_STREAM),
   never given a task, and refusals are charged too.

`_handle_events` is Hypercorn 0.18.0's with these changes, `_receive_data_frame`
wraps h2 4.4.1's (its source hash is
held by tests/gateway/server/test_patches.py), as is `TaskGroup.spawn_app`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hypercorn.asyncio.task_group import TaskGroup, _handle
from hypercorn.events import Closed, Updated
from hypercorn.protocol.events import Body, EndBody
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.http_stream import ASGIHTTPState

from gateway.server.h2_budget import Cost, FrameBudget, H2Limits
from gateway.server.patches.base import Patch
from gateway.server.patches.connections import TABLE

PATCH = Patch(
    "h2-guard",
    why="late DATA ends the connection, a dead app's queue stalls it, rapid reset, floods",
    requires={"hypercorn": "0.18.0", "h2": "4.4.1"},
)

_limits = H2Limits()


def configure(limits: H2Limits) -> None:
    global _limits
    _limits = limits


class _AppInbox:
    """A stream's queue to its app, which stops taking messages once the app ended."""

    __slots__ = ("_done", "queue")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue(size)  # the app reads `queue.get`
        self._done = False

    async def put(self, message: Any) -> None:
        if not self._done:
            await self.queue.put(message)

    def close(self) -> None:
        self._done = True
        while not self.queue.empty():  # each get releases one blocked put
            self.queue.get_nowait()


async def _spawn_app(
    self: Any, app: Any, config: Any, scope: Any, send: Callable[..., Awaitable[None]]
) -> Callable[[Any], Awaitable[None]]:
    # Hypercorn 0.18.0's TaskGroup.spawn_app, with the inbox above and a count
    # of this connection's running apps.
    inbox = _AppInbox(config.max_app_queue_size)

    def _call_soon(func: Callable[..., Any], *args: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(func(*args), self._loop)
        return future.result()

    async def _run() -> None:
        try:
            await _handle(
                app,
                config,
                scope,
                inbox.queue.get,
                send,
                partial(self._loop.run_in_executor, None),
                _call_soon,
            )
        finally:
            self._ghostgate_apps -= 1
            inbox.close()

    self._ghostgate_apps = getattr(self, "_ghostgate_apps", 0) + 1
    self.spawn(_run)
    return inbox.put


def _budget(protocol: Any) -> FrameBudget:
    budget: FrameBudget | None = protocol.__dict__.get("_ghostgate_budget")
    if budget is None:
        budget = protocol._ghostgate_budget = FrameBudget(_limits)
    return budget


async def _handle_events(self: Any, events: list[h2.events.Event]) -> None:
    budget, now = _budget(self), time.monotonic()
    for event in events:
        if isinstance(event, h2.events.RequestReceived):
            if self.context.terminated.is_set():
                self.connection.reset_stream(event.stream_id)
                self.connection.update_settings(
                    {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 0}
                )
            elif (
                getattr(self.task_group, "_ghostgate_apps", 0)
                >= self.config.h2_max_concurrent_streams
            ):
                # Streams reset while their app still runs count here, so a
                # reset never buys the client a new task.
                self.connection.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
                budget.charge(Cost.REFUSED, now)
            else:
                await self._create_stream(event)
                await self.send(Updated(idle=False))

            if self.keep_alive_requests > self.config.keep_alive_max_requests:
                self.connection.close_connection()
        elif isinstance(event, h2.events.DataReceived):
            if not event.data and event.stream_ended is None:
                budget.charge(Cost.EMPTY, now)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                await stream.handle(Body(stream_id=event.stream_id, data=event.data))
            else:
                # Answered already: keep the connection's window open (below),
                # and tell the client to stop sending this body.
                _reset_quietly(self, event.stream_id)
            self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:  # else the response went before the whole request
                await stream.handle(EndBody(stream_id=event.stream_id))
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None and getattr(stream, "state", None) is ASGIHTTPState.REQUEST:
                budget.charge(Cost.EARLY_RESET, now)
            await self._close_stream(event.stream_id)
            await self._window_updated(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            await self._window_updated(event.stream_id)
        elif isinstance(event, h2.events.PriorityUpdated):
            budget.charge(Cost.EMPTY, now)
            await self._priority_updated(event)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            budget.charge(Cost.CONTROL, now)
            if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                await self._window_updated(None)
        elif isinstance(event, h2.events.PingReceived):
            budget.charge(Cost.CONTROL, now)
        elif isinstance(event, h2.events.ConnectionTerminated):
            await self.send(Closed())
        if budget.exceeded is not None:
            await _calm_down(self, budget.exceeded)
            return
    await self._flush()


def _reset_quietly(protocol: Any, stream_id: int) -> None:
    try:
        protocol.connection.reset_stream(stream_id, ErrorCodes.NO_ERROR)
    except h2.exceptions.ProtocolError:
        pass  # closed on both sides meanwhile: nothing to stop


async def _calm_down(protocol: Any, cost: Cost) -> None:
    """GOAWAY(ENHANCE_YOUR_CALM), then close: the client spent its budget."""
    TABLE.count("h2_abuse")
    try:
        protocol.connection.close_connection(
            error_code=ErrorCodes.ENHANCE_YOUR_CALM, additional_data=cost.value.encode()
        )
        await protocol._flush()
    except h2.exceptions.ProtocolError:
        pass
    await protocol.send(Closed())


def _receive_data_frame(self: Any, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
    try:
        result: tuple[list[Any], list[h2.events.Event]] = _original_receive_data_frame(self, frame)
    except h2.exceptions.InvalidBodyLengthError:
        # The window was consumed before the stream refused the data: give it
        # back, then end only this stream.
        self.acknowledge_received_data(frame.flow_controlled_length, frame.stream_id)
        self.reset_stream(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
        reset = h2.events.StreamReset(
            stream_id=frame.stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False
        )
        return [], [reset]
    return result


PATCH.replace(H2Protocol, "_handle_events", _handle_events)
_original_receive_data_frame = PATCH.replace(
    h2.connection.H2Connection, "_receive_data_frame", _receive_data_frame
)
PATCH.replace(TaskGroup, "spawn_app", _spawn_app)
