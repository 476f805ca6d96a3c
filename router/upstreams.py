"""One HTTP/2 client per region, for forward mode; owned by the router's lifespan.

`gateway.http2.H2Client` keeps one connection per region, multiplexes every
forwarded request on it, replaces it after a GOAWAY or a loss, and really
resets a stream that is closed early, which is how a cancelled forward stops
the region (and through it, the backend) at once.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit

from gateway.http2 import H2Client
from gateway.lifecycle import ClosedOnExit
from router.regions import Region


def client_for(region: Region, connect_timeout: float) -> H2Client:
    """An HTTP/2 client to the region's proxy: h2c for http://, TLS with ALPN for https://."""
    parts = urlsplit(region.url)
    tls = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if tls else 80)
    context = ssl.create_default_context() if tls else None
    return H2Client(
        host,
        port,
        ssl=context,
        server_hostname=host if tls else None,
        connect_timeout=connect_timeout,
    )


class RegionClients(ClosedOnExit):
    """The HTTP/2 clients of every region, closed together on exit. Their
    connections open on first use, so opening this takes nothing."""

    def __init__(self, regions: Iterable[Region], connect_timeout: float) -> None:
        self._clients = {r.name: client_for(r, connect_timeout) for r in regions}

    def __getitem__(self, name: str) -> H2Client:
        return self._clients[name]

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()

    def __repr__(self) -> str:
        return f"<RegionClients {list(self._clients.values())!r}>"
