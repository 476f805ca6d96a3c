"""Found by the legal HTTP/2 sequence fuzz (tests/fuzz/test_live.py): a client
that sends SETTINGS_HEADER_TABLE_SIZE=0 twice before the server's next header
block gets that block without the dynamic table size update RFC 7541 section
4.2 requires, so a correct client must end the connection (COMPRESSION_ERROR).

h2 4.4.1 sets `encoder.header_table_size` for every SETTINGS that carries the
setting, the same value included; hpack 4.2.0's `HeaderTable.maxsize` setter
then sets `resized = (new != old)`, False the second time, and the update still
owed from the first is never emitted. The live test meets it only when both
SETTINGS land before a response's headers; here it is the region's and the
router's own stack (an h2 server connection with `plain_encoding`, as
gateway/server/patches/h2_sender.py sets it up), in memory, every time.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from h2.settings import SettingCodes

from gateway.http2 import plain_encoding

pytestmark = pytest.mark.e2e  # with the rest of tests/fuzz; no process, a few ms


def pair() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    plain_encoding(server)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    server.initiate_connection()
    return client, server


def exchange(client: h2.connection.H2Connection, server: h2.connection.H2Connection) -> None:
    """Carry bytes both ways until neither side has any to send."""
    while True:
        to_server, to_client = client.data_to_send(), server.data_to_send()
        if not to_server and not to_client:
            return
        if to_server:
            server.receive_data(to_server)
        if to_client:
            client.receive_data(to_client)


@pytest.mark.parametrize("times", [1, 2])
def test_a_table_size_setting_reaches_the_next_header_block(times: int) -> None:
    client, server = pair()
    exchange(client, server)
    request = [(":method", "GET"), (":scheme", "http"), (":authority", "g"), (":path", "/")]
    client.send_headers(1, request, end_stream=True)
    exchange(client, server)
    for _ in range(times):  # each acknowledged before the next, as a careful client does
        client.update_settings({SettingCodes.HEADER_TABLE_SIZE: 0})
        exchange(client, server)
    server.send_headers(1, [(":status", "200"), ("content-type", "application/json")])
    events = client.receive_data(server.data_to_send())  # raises ProtocolError when wrong
    assert any(isinstance(e, h2.events.ResponseReceived) for e in events)
