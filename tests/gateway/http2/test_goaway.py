"""A graceful GOAWAY, sans-I/O: `_ClientH2` keeps what h2 4.4.1 would drop.

h2's `_receive_goaway_frame` closes the connection and clears the outbound
buffer, so whatever h2 queued earlier in the same read is lost: the PING ACK
it writes by itself for a PING, and any RST_STREAM we queued but had not
written yet. A draining server that PINGs us then waits for an ACK that never
comes; a cancelled stream keeps generating.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from hyperframe.frame import Frame, GoAwayFrame, PingFrame, RstStreamFrame

from gateway.http2.connection import _ClientH2

PROBE = b"drain?!!"  # the server's 8-byte PING payload
REQUEST = [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/")]


def frames(data: bytes) -> list[Frame]:
    """The frames in `data`, in order (no client preface in it)."""
    found: list[Frame] = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        found.append(frame)
        view = view[9 + length :]
    return found


def connected(client: h2.connection.H2Connection) -> h2.connection.H2Connection:
    """`client` with streams 1 and 3 open, and the server that accepted them."""
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    client.send_headers(3, REQUEST, end_stream=True)
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())  # the server's SETTINGS, and its ACK of ours
    server.receive_data(client.data_to_send())  # our ACK of its SETTINGS
    return server


def graceful_goaway_after_ping(client: h2.connection.H2Connection) -> bytes:
    """Stream 3 was cancelled but its RST_STREAM not yet written; then one read
    brings a PING and a GOAWAY(NO_ERROR, last_stream_id=1). Returns what the
    server sends next: the response of stream 1, which it promised to finish."""
    server = connected(client)
    client.reset_stream(3, ErrorCodes.CANCEL)
    server.ping(PROBE)
    # Written behind the server's h2, which would close itself on its own GOAWAY.
    read = server.data_to_send() + GoAwayFrame(0, last_stream_id=1).serialize()
    events = client.receive_data(read)
    assert [type(event) for event in events] == [
        h2.events.PingReceived,
        h2.events.ConnectionTerminated,
    ]
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"done", end_stream=True)
    return server.data_to_send()


@pytest.fixture
def client() -> _ClientH2:
    return _ClientH2(h2.config.H2Configuration(client_side=True))


def test_frames_queued_in_the_goaway_read_still_go_out(client: _ClientH2) -> None:
    graceful_goaway_after_ping(client)
    sent = frames(client.data_to_send())
    acks = [f for f in sent if isinstance(f, PingFrame) and "ACK" in f.flags]
    assert [ack.opaque_data for ack in acks] == [PROBE]
    resets = [f for f in sent if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(3, ErrorCodes.CANCEL)]


def test_streams_up_to_last_stream_id_finish_after_a_graceful_goaway(client: _ClientH2) -> None:
    response = graceful_goaway_after_ping(client)
    client.data_to_send()
    assert client.state_machine.state is not ConnectionState.CLOSED
    events = client.receive_data(response)
    received = [type(event) for event in events]
    assert h2.events.ResponseReceived in received and h2.events.StreamEnded in received
    data = next(e for e in events if isinstance(e, h2.events.DataReceived))
    assert data.stream_id == 1 and data.data == b"done"
    client.acknowledge_received_data(data.flow_controlled_length, 1)  # still allowed to send


def test_an_error_goaway_still_closes_the_connection(client: _ClientH2) -> None:
    connected(client)
    client.receive_data(GoAwayFrame(0, error_code=ErrorCodes.PROTOCOL_ERROR).serialize())
    assert client.state_machine.state is ConnectionState.CLOSED
