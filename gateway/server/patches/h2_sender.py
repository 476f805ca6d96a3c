"""Hypercorn 0.18's HTTP/2 sender, made cheap for many streams of small chunks.

A region relays completions token by token: hundreds of streams on a few
connections, each sending a ~100-byte DATA frame every 20 ms or so. Profiled
under 200 such streams (loadtests/bench), Hypercorn's sender cost more than the
gateway itself, in two places:

1. Choosing the next stream. `H2Protocol` asks a `priority.PriorityTree` on
   every frame, whose `schedule()` pops every blocked stream (most of them,
   waiting for their next token) off a heap and pushes it back: O(n log n)
   per frame with n open streams. `RoundRobin` keeps only the streams that
   have data, O(1) per frame, in the same rotating order that equal weights
   give. It ignores RFC 7540 priority weights, which RFC 9113 deprecated.
2. Writing. Every frame, and every response's HEADERS, was its own socket
   write: a syscall each, and on a virtual machine often a wake-up of the
   peer's CPU. The sender now frames everything that is ready, then writes
   once (and at least every 64 KiB); response headers wait for that write,
   so they leave with the first DATA frame instead of alone.

Nothing else changes: flow control, stream states and the frames themselves
are h2's, as before. `_send_data` and `send_task` are rewritten from
Hypercorn 0.18.0's own (tests/gateway/server/test_patches.py holds their hashes).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import h2.exceptions
from hypercorn.events import RawData
from hypercorn.protocol.events import InformationalResponse, Response
from hypercorn.protocol.h2 import H2Protocol
from priority.priority import DeadlockError, DuplicateStreamError, MissingStreamError

from gateway.http2 import plain_encoding
from gateway.server.patches.base import Patch

FLUSH_BYTES = 64 * 1024  # write at least this often while streams keep having data


class RoundRobin:
    """What `H2Protocol` uses of `priority.PriorityTree`, in O(1) per call.

    Streams with data to send wait in a queue, each at most once; `next`
    takes the first and puts it back at the end. A stream blocked while
    queued is skipped (and dropped) when its turn comes.
    """

    def __init__(self) -> None:
        self._known: set[int] = set()
        self._ready: set[int] = set()
        self._queue: deque[int] = deque()
        self._queued: set[int] = set()

    # PriorityTree's priority arguments (depends_on, weight, exclusive), which
    # Hypercorn passes by name, are taken and ignored: see the module docstring.
    def insert_stream(self, stream_id: int, **_priority: object) -> None:
        if stream_id in self._known:
            raise DuplicateStreamError(f"Stream {stream_id} already in tree")
        self._known.add(stream_id)
        self.unblock(stream_id)  # a new stream is active, as in PriorityTree

    def reprioritize(self, stream_id: int, **_priority: object) -> None:
        self._check(stream_id)

    def remove_stream(self, stream_id: int) -> None:
        self._check(stream_id)
        self._known.discard(stream_id)
        self._ready.discard(stream_id)

    def block(self, stream_id: int) -> None:
        self._check(stream_id)
        self._ready.discard(stream_id)

    def unblock(self, stream_id: int) -> None:
        self._check(stream_id)
        self._ready.add(stream_id)
        if stream_id not in self._queued:
            self._queued.add(stream_id)
            self._queue.append(stream_id)

    def __iter__(self) -> RoundRobin:
        return self

    def __next__(self) -> int:
        queue, ready = self._queue, self._ready
        while queue:
            stream_id = queue.popleft()
            if stream_id in ready:
                queue.append(stream_id)
                return stream_id
            self._queued.discard(stream_id)
        raise DeadlockError("No unblocked streams to schedule.")

    def _check(self, stream_id: int) -> None:
        if stream_id not in self._known:
            raise MissingStreamError(f"Stream {stream_id} not in tree")

    def __repr__(self) -> str:
        return f"<RoundRobin streams={len(self._known)} ready={len(self._ready)}>"


PATCH = Patch(
    "h2-sender",
    why="PriorityTree re-sorts every blocked stream per frame; one write per frame",
    requires={"hypercorn": "0.18.0", "h2": "4.4.1", "priority": "2.0.0", "hpack": "4.2.0"},
)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    plain_encoding(self.connection)
    self.priority = RoundRobin()
    self._ghostgate_unflushed = 0


async def _send_task(self: Any) -> None:
    # As Hypercorn's, but the frames of every stream that has data go out in
    # one write, when no stream has more (or every FLUSH_BYTES).
    while not self.closed:
        try:
            stream_id = next(self.priority)
        except DeadlockError:
            await _flush_now(self)
            await self.has_data.wait()
            await self.has_data.clear()
        else:
            await _send_data(self, stream_id)
            if self._ghostgate_unflushed >= FLUSH_BYTES:
                await _flush_now(self)


async def _send_data(self: Any, stream_id: int) -> None:
    # Hypercorn 0.18's H2Protocol._send_data, minus its two flushes, and no
    # pop(0) when the stream's window is shut: Hypercorn's pop(0) releases the
    # app's paused push, so a client that never opens its window made the
    # buffer grow without bound. Now the app's send waits at the high-water
    # mark (two frames) until the client reads (gateway/idle_timeout.py
    # SendDeadline ends it if it never does).
    try:
        chunk_size = min(
            self.connection.local_flow_control_window(stream_id),
            self.connection.max_outbound_frame_size,
        )
        chunk_size = max(0, chunk_size)
        data = await self.stream_buffers[stream_id].pop(chunk_size) if chunk_size else b""
        if data:
            self.connection.send_data(stream_id, data)
            self._ghostgate_unflushed += len(data)
        else:
            self.priority.block(stream_id)

        if self.stream_buffers[stream_id].complete:
            self.connection.end_stream(stream_id)
            del self.stream_buffers[stream_id]
            self.priority.remove_stream(stream_id)
    except (h2.exceptions.StreamClosedError, KeyError, h2.exceptions.ProtocolError):
        # Stream or connection has closed whilst waiting to send
        # data, not a problem - just force close it.
        await self.stream_buffers[stream_id].close()
        del self.stream_buffers[stream_id]
        self.priority.remove_stream(stream_id)


async def _flush_now(self: Any) -> None:
    self._ghostgate_unflushed = 0
    data = self.connection.data_to_send()
    if data:
        await self.send(RawData(data=data))


async def _stream_send(self: Any, event: Any) -> None:
    if isinstance(event, InformationalResponse | Response):
        # Framed now, written by the send task in its next write, with the
        # first DATA frame when the app sends one right away (the relay does).
        try:
            self.connection.send_headers(
                event.stream_id,
                [
                    (b":status", b"%d" % event.status_code),
                    *event.headers,
                    *self.config.response_headers("h2"),
                ],
            )
        except (KeyError, h2.exceptions.ProtocolError):
            return  # the connection closed meanwhile, as Hypercorn's own handling
        await self.has_data.set()
        return
    await _original_stream_send(self, event)


_original_init = PATCH.replace(H2Protocol, "__init__", _init)
_original_stream_send = PATCH.replace(H2Protocol, "stream_send", _stream_send)
PATCH.replace(H2Protocol, "send_task", _send_task)
PATCH.replace(H2Protocol, "_send_data", _send_data)
