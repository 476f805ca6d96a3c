"""HTTP/2 attacks against a real region: floods end in GOAWAY(ENHANCE_YOUR_CALM)
within a bounded number of frames; a busy legitimate connection is never cut;
nothing one stream does ends another."""

from __future__ import annotations

import json
from collections.abc import Iterator

import h2.events
import pytest
from h2.errors import ErrorCodes

from tests.adversarial.h2peer import (
    H2Peer,
    body_of,
    empty_data_frame,
    ended,
    ping_frame,
    priority_frame,
    settings_frame,
    status,
)
from tests.e2e import Region, region

pytestmark = pytest.mark.e2e

# Small budgets, so each flood is cut within a few dozen frames.
CONFIG = """
[gateway.server]
h2_reset_burst = 40
h2_reset_rate = 20.0
h2_control_burst = 20
h2_control_rate = 2.0
h2_empty_burst = 40
h2_empty_rate = 10.0
h2_refused_burst = 10
h2_refused_rate = 1.0
"""
GENERATE = {"model": "starcoder2:3b", "prompt": "def f():", "options": {"num_predict": 30}}


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    tmp = tmp_path_factory.mktemp("adversarial-h2")
    config = tmp / "bounds.toml"
    config.write_text(CONFIG)
    with region(tmp, sim_args=["--decode-tps", "200"], region_args=["--config", str(config)]) as r:
        yield r


def generate_request(token: str, body: bytes) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "ghostgate"),
        (":path", "/api/generate"),
        ("authorization", f"Bearer {token}"),
        ("content-length", str(len(body))),
    ]


def calmed(peer: H2Peer) -> bool:
    goaway = peer.goaway()
    return goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_rapid_reset_ends_in_goaway_within_the_budget(reg: Region) -> None:
    peer = H2Peer(reg.port)
    sent = 0
    while sent < 500 and not peer.closed and peer.goaway() is None:
        # HEADERS and RST_STREAM together, 10 streams a write, as the attack
        # does: each stream costs the server a task, the client nothing.
        for _ in range(10):
            stream = peer.conn.get_next_available_stream_id()
            body = json.dumps(GENERATE).encode()
            peer.conn.send_headers(stream, generate_request(reg.token(f"u{sent % 50}"), body))
            peer.conn.send_data(stream, body, end_stream=True)
            peer.conn.reset_stream(stream)
            sent += 1
        try:
            peer.flush()
        except OSError:
            break
        peer.events(0.005)
    peer.until(lambda _: calmed(peer), within=3)
    assert calmed(peer)
    assert sent <= 40 + 20 * 3 + 20  # the burst, what the rate refilled meanwhile, slack
    peer.close()


@pytest.mark.parametrize(
    ("what", "frame"),
    [
        ("ping", ping_frame),
        ("settings", lambda n: settings_frame()),
        ("empty data", lambda n: empty_data_frame(1)),
        ("priority", lambda n: priority_frame(2 * n + 1)),
    ],
)
def test_cheap_frame_floods_end_in_goaway(reg: Region, what: str, frame: object) -> None:
    peer = H2Peer(reg.port)
    if what == "empty data":
        peer.request("/api/generate", reg.token(), GENERATE, end=False)
    for n in range(200):
        if peer.closed:
            break
        try:
            peer.raw(frame(n))  # type: ignore[operator]
        except OSError:
            break
    peer.until(lambda _: calmed(peer), within=3)
    assert calmed(peer), f"{what} flood was not cut"
    peer.close()


def test_a_busy_connection_that_cancels_often_is_never_cut(reg: Region) -> None:
    """What the router's pooled connection does: real requests, most cancelled
    after they started, some before: well within the budget's rate."""
    peer = H2Peer(reg.port)
    for round_ in range(15):
        streams = [peer.request("/api/generate", reg.token(f"dev{i}"), GENERATE) for i in range(4)]
        peer.events(0.05)
        for stream in streams[:3]:
            peer.reset(stream)
        peer.until(lambda evs, s=streams[3]: ended(evs, s), within=10)
        assert status(peer.received, streams[3]) == 200, round_
    assert peer.goaway() is None and not peer.closed
    peer.close()


def test_a_body_sent_after_its_refusal_ends_no_other_stream(reg: Region) -> None:
    """An early 401 (token refused before the body is read), then the body: the
    connection and the long stream beside it live on."""
    peer = H2Peer(reg.port)
    long_stream = peer.request("/api/generate", reg.token(), GENERATE)
    refused = peer.request("/api/generate", "not-a-token", GENERATE, end=False)
    peer.until(lambda evs: status(evs, refused) == 401, within=5)
    assert status(peer.received, refused) == 401
    for _ in range(30):  # more than Hypercorn's 10-message app queue
        try:
            peer.conn.send_data(refused, b"x" * 1000)
        except h2.exceptions.ProtocolError:
            break  # the region reset it (NO_ERROR): stop sending, as a client must
        peer.flush()
        peer.events(0.01)
    peer.until(lambda evs: ended(evs, long_stream), within=15)
    assert status(peer.received, long_stream) == 200
    assert b'"done":true' in body_of(peer.received, long_stream).replace(b" ", b"")
    assert peer.goaway() is None and not peer.closed
    # And the connection takes new work.
    again = peer.request("/api/tags", reg.token())
    peer.until(lambda evs: ended(evs, again), within=5)
    assert status(peer.received, again) == 200
    peer.close()
