"""Forward mode: an API call sent to the router is relayed to the nearest ready region.

    editor --(API key or JWT)--> router --(router's JWT, HTTP/2 stream)--> region

One request, step by step:

1. Authorize (an API key becomes a cached token, a JWT is verified and passed
   on) and read the body, bounded. The body is kept whole so the request can
   go to another region: `H2Client` sends a body in one piece, and completion
   bodies are small.
2. Choose: the ready regions, best first (`RouteDecision.ready`); when every
   region that is up is full, those, best first.
3. Try them in turn. A failed connect, a lost connection, a reset, or a 503
   (draining, no capacity) moves on to the next region, as long as nothing has
   reached the client. The region's headers are held until its first body byte
   so that a region failing in between can still be passed over. A region that
   refuses connections is ejected at once; the probes bring it back.
4. Relay the status, the headers and then the body, chunk by chunk as DATA
   frames arrive. From the first byte on there is no retry: a failure ends the
   stream in the endpoint's dialect (router/middleware.py).

Cancellation: steps 2-4 run under `until_disconnect`. When the client goes
away (HTTP/2 RST_STREAM, HTTP/1.1 close), the relay task is cancelled where it
waits: in `H2Connection.request` or `H2Stream.read_chunk`, both of which send
RST_STREAM(CANCEL) to the region on cancellation, and the `finally` closes the
stream in every case. The region sees its client leave and stops the backend.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from gateway.asgi import Headers, Receive, Scope, Send, header, read_body, until_disconnect
from gateway.errors import NoCapacity, Unauthorized, UpstreamError, UpstreamTimeout
from gateway.http2 import ConnectError, H2Error, H2Stream
from gateway.idle_timeout import IdleTimeout
from gateway.trace import Stage, Trace, trace_of
from router.nearest import Alternative
from router.services import Caller, RouterServices, peer_address

# Not passed to the region: connection-specific (illegal in HTTP/2), or replaced.
_REQUEST_DROP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
        b"host",
        b"te",
        b"expect",
        b"content-length",
        b"authorization",
        b"x-request-id",
    }
)
# Hypercorn adds its own date and server headers to what the router sends.
_RESPONSE_DROP = frozenset({"date", "server"})
REFUSED = 503  # a region draining or out of capacity: try the next one


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What goes to every region tried: the same request, with the router's token."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


class Forwarder:
    """The plain-ASGI endpoint for every API path the router does not serve itself."""

    def __init__(self, services: RouterServices) -> None:
        self.services = services
        self.settings = services.settings.forward

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trace = trace_of(scope)
        caller = await self._authorize(scope)
        trace.user = caller.subject
        body = await read_body(
            scope, receive, self.settings.max_body_bytes, self.settings.body_timeout
        )
        decision = self.services.decide(self.services.locate(scope))
        # Every region busy is not every region gone: let the nearest busy
        # ones queue the request or refuse it themselves.
        candidates = decision.ready() or tuple(
            alt for alt in decision.alternatives if alt.status == "full"
        )
        if not candidates:
            raise NoCapacity("no region is available", retry_after=1)
        self.services.metrics.route_decisions.labels(candidates[0].name).inc()
        request = upstream_request(scope, caller, trace, body)
        await until_disconnect(receive, self._forward(request, candidates, send, trace))

    async def _authorize(self, scope: Scope) -> Caller:
        try:
            authorization = header(scope, b"authorization")
            return await self.services.authorize(authorization, peer_address(scope))
        except Unauthorized as exc:
            self.services.metrics.auth_failures.labels(exc.reason).inc()
            raise

    async def _forward(
        self,
        request: UpstreamRequest,
        candidates: tuple[Alternative, ...],
        send: Send,
        trace: Trace,
    ) -> None:
        for index, alternative in enumerate(candidates):
            opened = await self._attempt(alternative, request, trace, index + 1 == len(candidates))
            if opened is None:
                continue
            stream, first = opened
            try:
                await self._relay(stream, first, send, trace)
            finally:
                await stream.aclose()  # resets the stream unless it ended
            return
        raise NoCapacity("no region could take the request", retry_after=1)

    async def _attempt(
        self, alternative: Alternative, request: UpstreamRequest, trace: Trace, last: bool
    ) -> tuple[H2Stream, bytes] | None:
        """The region's stream and first chunk, or None to try the next region."""
        if self.settings.wan_latency:
            delay = alternative.rtt_ms / 1000
            await asyncio.sleep(delay)
            trace.queue_wait += delay  # simulated wire time, not router overhead
        trace.attempts += 1
        trace.backend = alternative.name
        trace.stage = Stage.PREFILL
        trace.upstream_sent = time.perf_counter()
        client = self.services.clients[alternative.name]
        try:
            async with asyncio.timeout(self.settings.read_timeout):
                stream = await client.request(
                    request.method, request.target, request.headers, request.body
                )
        except H2Error as exc:
            self._pass_over(alternative, str(exc), eject=isinstance(exc, ConnectError))
            return None
        except TimeoutError:
            raise UpstreamTimeout(f"region {alternative.name} did not answer in time") from None
        if stream.status == REFUSED and not last:
            await stream.aclose()
            self._pass_over(alternative, f"answered {REFUSED}", eject=False)
            return None
        try:
            async with asyncio.timeout(self.settings.read_timeout):
                first = await stream.read_chunk()
        except H2Error as exc:
            await stream.aclose()
            self._pass_over(alternative, str(exc), eject=False)
            return None
        except BaseException as exc:  # timeout, or our own cancellation: the client left
            await stream.aclose()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout(f"region {alternative.name} sent nothing in time") from None
            raise
        trace.upstream_first_byte = time.perf_counter()
        return stream, first

    def _pass_over(self, alternative: Alternative, reason: str, *, eject: bool) -> None:
        self.services.metrics.failovers.labels(alternative.name).inc()
        if eject:
            self.services.prober.eject(alternative.name, reason)

    async def _relay(self, stream: H2Stream, first: bytes, send: Send, trace: Trace) -> None:
        headers: Headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in stream.headers
            if name not in _RESPONSE_DROP
        ]
        await send({"type": "http.response.start", "status": stream.status, "headers": headers})
        trace.stage = Stage.STREAMING
        chunk = first
        try:
            # One timer for the stream, not one per chunk (gateway/idle_timeout.py).
            async with IdleTimeout(self.settings.read_timeout) as idle:
                while chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    idle.touch()  # a client too slow to read is not the region stalling
                    chunk = await stream.read_chunk()
                    idle.touch()
        except H2Error as exc:
            raise UpstreamError(f"region {trace.backend} failed mid-stream: {exc}") from exc
        except TimeoutError:
            raise UpstreamTimeout(f"region {trace.backend} stalled mid-stream") from None
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        trace.stage = Stage.DONE


def upstream_request(scope: Scope, caller: Caller, trace: Trace, body: bytes) -> UpstreamRequest:
    """The request as the region gets it: same target and headers, the router's token."""
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    target = (raw + (b"?" + query if query else b"")).decode("latin-1")
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in scope["headers"]
        if name not in _REQUEST_DROP and not name.startswith(b":")
    ]
    headers += [("authorization", f"Bearer {caller.token}"), ("x-request-id", trace.request_id)]
    client = scope.get("client")
    if client:
        headers.append(("x-forwarded-for", str(client[0])))
    return UpstreamRequest(scope["method"], target, headers, body)
