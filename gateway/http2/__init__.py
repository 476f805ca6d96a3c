"""Our HTTP/2 client, on asyncio and the sans-I/O `h2` library.

Why our own: httpcore 1.0.9's HTTP/2 client does not send RST_STREAM when a
streamed response is closed early, so the server never learns of a cancel
(docs/ARCHITECTURE.md). Here every stream closed unfinished is reset at once,
and a connection survives a graceful GOAWAY.

    client      `H2Client`: one connection per origin, reconnecting, re-sending
                what is safe to re-send
    connection  `H2Connection`, `H2Stream` and the exception tree
    hpack       header blocks sent without Huffman coding
"""

from __future__ import annotations

from gateway.http2.client import H2Client
from gateway.http2.connection import (
    ConnectError,
    ConnectionLost,
    H2Connection,
    H2Error,
    H2Stream,
    StreamReset,
    build_request_headers,
    error_name,
)
from gateway.http2.hpack import PlainEncoder, plain_encoding

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "H2Client",
    "H2Connection",
    "H2Error",
    "H2Stream",
    "PlainEncoder",
    "StreamReset",
    "build_request_headers",
    "error_name",
    "plain_encoding",
]
