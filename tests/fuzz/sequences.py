"""Running fuzzed HTTP/2 sequences on one connection, beside a victim stream on it.

`run_legal` drives h2's own state machine: whatever h2 would not send as a
client is skipped, so every frame that goes out is legal. The server must then
keep the connection (no GOAWAY, no close) and the victim, opened first, must
arrive intact.

`run_raw` puts frames on the wire as they are, legal or not. The server may
answer a connection error with GOAWAY; what it must not do is answer 5xx,
crash, or, when the frames left the victim's stream and the connection's
settings alone and it kept the connection, spoil the victim.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import h2.connection
import h2.exceptions
from h2.stream import StreamState

from tests.fuzz.frames import Act, Frame
from tests.fuzz.live import Live
from tests.fuzz.oracle import NEVER
from tests.fuzz.peer import Answer, FuzzPeer
from tests.fuzz.raw import RawPeer, frame
from tests.fuzz.strategies import Request
from tests.fuzz.victims import SHORT_VICTIM_TOKENS, victim_body, victim_text

_VICTIM_USERS = itertools.count()  # 32 users in turn: no per-user limit is reached


def victim_headers(live: Live) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "ghostgate"),
        (":path", "/api/generate"),
        ("authorization", f"Bearer {live.token(f'victim-{next(_VICTIM_USERS) % 32}')}"),
        ("content-type", "application/json"),
        ("x-ghostgate-group", f"same-connection-{time.monotonic_ns()}"),
    ]


def request_headers(live: Live, request: Request, target: str) -> list[tuple[str, str]]:
    route = request.route
    headers = [
        (":method", route.method),
        (":scheme", "http"),
        (":authority", "ghostgate"),
        (":path", route.path),
        *live.authorization(request, target),
        *request.headers,
    ]
    if route.has_body:
        headers.append(("content-type", "application/json"))
    return [(name.lower(), value) for name, value in headers]


def intact(live: Live, answer: Answer) -> str | None:
    """What is wrong with a same-connection victim's answer, or None."""
    if answer.status != 200:
        return f"victim status {answer.status}, reset {answer.reset}, body {answer.body[:200]!r}"
    text, problem = victim_text(answer.body)
    if problem is None and text != live.reference[SHORT_VICTIM_TOKENS]:
        problem = f"victim text differs: {text!r}"
    return problem


@dataclass
class Legal:
    """One legal sequence's state: the streams it opened, and the requests sent whole."""

    peer: FuzzPeer
    streams: list[int] = field(default_factory=list)
    whole: dict[int, Request] = field(default_factory=dict)

    def pick(self, index: int, victim: int) -> int | None:
        if index < 0:
            return victim
        return self.streams[index % len(self.streams)] if self.streams else None


def may_send(conn: h2.connection.H2Connection, stream_id: int, frame_kind: str) -> bool:
    """Whether a client may send `frame_kind` on the stream now. Asked first,
    because h2 closes a stream whose state machine it refuses an input."""
    stream = conn.streams.get(stream_id)
    if stream is None:
        return False
    state = stream.state_machine.state
    if frame_kind == "reset":
        return state not in (StreamState.IDLE, StreamState.CLOSED)
    return state in (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)


def settled(peer: FuzzPeer, within: float = 2.0) -> None:
    """Wait for the server's SETTINGS ACK. h2 applies the oldest pending value of
    every setting on any ACK, so a second SETTINGS sent before the first is
    acknowledged takes effect early on our side (HEADER_TABLE_SIZE 0 then fails
    a header block the server rightly encoded under the old size)."""
    deadline = time.monotonic() + within
    while peer.settings_acked < peer.settings_sent and time.monotonic() < deadline:
        if peer.closed:
            return
        peer.events(0.05)


def run_legal(live: Live, target: str, acts: list[Act]) -> None:
    peer = FuzzPeer(live.port(target))
    try:
        victim = peer.open(victim_headers(live), victim_body(SHORT_VICTIM_TOKENS))
        settled(peer)
        state = Legal(peer)
        for act in acts:
            if peer.closed:
                break
            try:
                _apply(live, target, state, act, victim)
                peer.flush()
            except (h2.exceptions.ProtocolError, ValueError):
                continue  # h2 would not send this as a client: not a legal step
            except OSError:
                break
            peer.events(0)
        peer.wait([victim, *state.whole])
        assert peer.goaway() is None and not peer.closed, (
            f"{target} ended a connection that broke no rule: {peer.goaway()} ({peer.why_closed})"
        )
        problem = intact(live, peer.answers[victim])
        assert problem is None, f"{target}: {problem}"
        for stream_id, answer in peer.answers.items():
            request = state.whole.get(stream_id)
            if request is not None and answer.status is not None:
                live.judge(request, answer, target)
            assert answer.status not in NEVER, f"{target} stream {stream_id}: {answer}"
        live.assert_no_crash(f"legal sequence on {target}")
    finally:
        peer.close()


def _apply(live: Live, target: str, state: Legal, act: Act, victim: int) -> None:
    conn = state.peer.conn
    if act.kind == "request":
        assert act.request is not None
        headers = request_headers(live, act.request, target)
        stream_id = state.peer.open(headers, act.request.body, end=act.end)
        state.streams.append(stream_id)
        if act.end:
            state.whole[stream_id] = act.request
        return
    if act.kind == "ping":
        conn.ping(act.payload)
    elif act.kind == "settings":
        state.peer.update_settings({act.other: act.number})
        settled(state.peer)
    elif act.kind == "pause":
        time.sleep(act.number / 1000)
    elif act.kind == "window":
        stream_id = None if act.target < 0 else state.pick(act.target, victim)
        if stream_id is not None and not may_send(conn, stream_id, "reset"):
            return  # WINDOW_UPDATE goes where RST_STREAM may
        if act.target >= 0 and stream_id is None:
            return
        conn.increment_flow_control_window(act.number, stream_id=stream_id)
    elif act.kind == "priority":
        stream_id = state.pick(act.target, victim)
        depends = 0 if act.other < 0 else state.pick(act.other, victim)
        if stream_id is None or depends is None or depends == stream_id:
            return
        conn.prioritize(stream_id, weight=act.number, depends_on=depends, exclusive=act.end)
    else:
        stream_id = state.pick(act.target, victim) if act.target >= 0 else None
        if stream_id is None or stream_id == victim:
            return  # the victim is never touched by its own connection's fuzz
        if not may_send(conn, stream_id, act.kind):
            return
        if act.kind == "data":
            state.whole.pop(stream_id, None)
            conn.send_data(stream_id, act.payload, end_stream=act.end)
        elif act.kind == "reset":
            state.whole.pop(stream_id, None)
            conn.reset_stream(stream_id, error_code=act.number)
        elif act.kind == "trailers":
            conn.send_headers(stream_id, [("x-fuzz-trailer", "1")], end_stream=True)


def run_raw(live: Live, target: str, frames: list[Frame], victim_first: bool) -> None:
    peer = RawPeer(live.port(target))
    try:
        if victim_first:
            peer.request(1, victim_headers(live), victim_body(SHORT_VICTIM_TOKENS))
        tags = [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "ghostgate"),
            (":path", "/api/tags"),
            ("authorization", f"Bearer {live.token('raw')}"),
        ]
        for item in frames:
            payload, flags = item.payload, item.flags
            if item.kind in ("headers", "request"):
                payload = peer.header_block(tags)  # a valid block, on any flags and stream
            peer.send(frame(item.type, flags, item.stream_id, payload))
        peer.pump(0.05)
        if victim_first:
            peer.until(1, within=10)
        for stream_id, answer in peer.answers.items():
            assert answer.status not in NEVER, f"{target} stream {stream_id}: {answer} ({frames})"
        # The victim's own stream, the connection's settings and a GOAWAY of the
        # client's are the client's to spoil; anything else must leave it intact.
        exempt = any(
            f.stream_id == 1 or (f.type == 0x4 and not f.flags & 0x1) or f.type == 0x7
            for f in frames
        )
        if victim_first and not exempt and peer.goaway is None and peer.closed_by != "reset":
            assert not peer.closed or peer.answers[1].ended, (
                f"{target} closed the connection without GOAWAY: {peer.answers.get(1)}"
            )
            problem = intact(live, peer.answers[1])
            assert problem is None, f"{target}: {problem}"
        live.assert_no_crash(f"raw frames on {target}")
    finally:
        peer.close()
