"""The request boundary of every Ghostgate process, region and router: a `Trace`
per request, the route matched once, the context headers on every response,
the one place exceptions become responses, and a record of the request when it
ends (metrics and the access log).

Before the response has started, an exception is answered in the route's
dialect with the right status (gateway/errors.py renders it); after it has
started, the stream is ended with a last error line or event, so the client
never sees a broken connection for a gateway-side failure, and it is counted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from gateway.asgi import ASGIApp, ClientGone, Headers, Message, Receive, Scope, Send, header
from gateway.errors import (
    Dialect,
    GatewayError,
    HeadersTooLarge,
    dialect_for_path,
    error_body,
    render_error,
)
from gateway.idle_timeout import SendDeadline, SlowReader
from gateway.routing import MATCH_KEY, OTHER, RouteTable
from gateway.trace import TRACE_KEY, Trace

log = logging.getLogger("ghostgate.gateway")
access_log = logging.getLogger("ghostgate.access")

CANCEL_REASONS = frozenset(
    {"client_disconnect", "superseded", "timeout", "shutdown", "slow_reader"}
)


def request_id(scope: Scope) -> str:
    """The client's X-Request-Id if it is sane, else a fresh one."""
    given = header(scope, b"x-request-id")
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return os.urandom(12).hex()


class RequestBoundary:
    """The outermost middleware of every Ghostgate process, region and router: a
    `Trace` per request, the context headers on the response, the error
    boundary, and a record of the request when it ends.

    The route is matched here, once, and left in the scope for the middleware
    and the dispatch inside (gateway/routing.py). Subclasses say which headers
    (`_context_headers`), what a failed stream counts (`_stream_failed`) and
    what is recorded (`_record`).
    """

    errors_log = log  # where an unhandled exception is logged

    def __init__(
        self,
        app: ASGIApp,
        table: RouteTable,
        send_timeout: float,
        max_headers: int,
        max_header_bytes: int,
    ) -> None:
        self.app = app
        self.table = table
        self.send_timeout = send_timeout
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        match = self.table.match(scope["path"])
        scope[MATCH_KEY] = match
        if match is None:
            label, dialect = OTHER, dialect_for_path(scope["path"])
        else:
            route = match.route
            label = OTHER if route.prefix else route.metric_label
            dialect = route.error_dialect
        trace = Trace(request_id(scope), label, time.perf_counter())
        scope[TRACE_KEY] = trace

        deadline = SendDeadline(self.send_timeout)

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                trace.status = message["status"]
                trace.response_started = True
                # A copy: endpoints may send the same start message for every
                # request, and each gets its own context headers.
                headers = self._context_headers(message.get("headers", []), trace)
                message = {**message, "headers": headers}
            elif not trace.client_first_byte and message.get("body"):
                trace.client_first_byte = time.perf_counter()
            deadline.sending()
            await send(message)
            deadline.sent()

        try:
            self._check_headers(scope["headers"])
            with deadline:
                await self.app(scope, receive, send_with_context)
        except ClientGone:
            trace.outcome = "client_disconnect"
        except SlowReader:
            # Nothing more can reach this client; ending the app closed the
            # upstream (the backend stops) and gave its slot back.
            trace.outcome = "slow_reader"
        except GatewayError as exc:
            await self._fail(exc, trace, dialect, send_with_context)
        except asyncio.CancelledError:
            trace.outcome = "shutdown"
            raise
        except Exception as exc:
            self.errors_log.exception("unhandled error", extra={"request_id": trace.request_id})
            error = GatewayError(f"internal error ({type(exc).__name__})")
            await self._fail(error, trace, dialect, send_with_context)
        finally:
            self._record(trace, scope)

    def _check_headers(self, headers: Headers) -> None:
        # h11 bounds a head that arrives in pieces, not one read whole; count here.
        if len(headers) > self.max_headers:
            raise HeadersTooLarge(f"more than {self.max_headers} request headers")
        if sum(len(name) + len(value) for name, value in headers) > self.max_header_bytes:
            raise HeadersTooLarge(f"request headers over {self.max_header_bytes} bytes")

    async def _fail(self, exc: GatewayError, trace: Trace, dialect: Dialect, send: Send) -> None:
        trace.outcome = self._failure_outcome(exc)
        trace.error = exc.message
        try:
            if not trace.response_started:
                status, headers, body = render_error(exc, dialect)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            # The status is gone; end the stream the way the dialect ends one
            # in error, so the client's parser sees a reason, not a cut.
            self._stream_failed(trace)
            body = error_body(dialect, exc.message, exc.kind, exc.code)
            tail = body + b"\n" if dialect is Dialect.OLLAMA else b"data: " + body + b"\n\n"
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except OSError:
            pass  # the client is gone too; nothing left to tell

    def _context_headers(self, headers: Headers, trace: Trace) -> Headers:
        raise NotImplementedError

    def _failure_outcome(self, exc: GatewayError) -> str:
        # A 504 is a timeout wherever it came from (no answer, no connection).
        return "timeout" if exc.status == 504 else "error"

    def _stream_failed(self, trace: Trace) -> None:
        """A stream already under way ended in error."""

    def _record(self, trace: Trace, scope: Scope) -> None:
        raise NotImplementedError
