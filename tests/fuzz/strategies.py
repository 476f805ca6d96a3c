"""Hypothesis strategies for whole requests: a route, a body (tests/fuzz/bodies.py),
a credential and headers, over HTTP/1.1 or HTTP/2.

Headers are random names and values within HTTP's rules, huge values and many
of them; credentials are valid, absent, malformed, foreign, expired, of the
wrong scope (`AUTH_KINDS`, which tests/fuzz/live.py turns into a header).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.bodies import RAW, bodies
from tests.fuzz.routes import OTHER_ROUTES, ROUTES, Route

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
# Names a client library sets itself, or that HTTP/2 forbids: not fuzzed here
# (the raw-frame fuzz sends them).
RESERVED_NAMES = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"}
    | {"host", "content-length", "authorization"}
)
HEADER_NAME = st.text(alphabet=TCHAR, min_size=1, max_size=30).filter(
    lambda name: name not in RESERVED_NAMES
)
VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))
SHORT_VALUE = st.text(alphabet=VISIBLE + " \t", max_size=60).map(str.strip)
HEADER_VALUE = st.one_of(
    SHORT_VALUE,
    st.builds(lambda c, n: c * n, st.sampled_from(list("ax=,;")), st.integers(1_000, 20_000)),
)
# A few headers, any of them huge (8 x 20 KB at most: past every bound, around
# the 16 KiB and 64 KiB ones), or many short ones (past the count of 100).
EXTRA_HEADERS = st.one_of(
    st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=8),
    st.lists(st.tuples(HEADER_NAME, SHORT_VALUE), min_size=50, max_size=150),
)
# Headers the gateway reads, with values it must cope with.
KNOWN_HEADERS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "x-ghostgate-group",
                "x-request-id",
                "x-client-location",
                "content-type",
                "user-agent",
                "accept",
                "x-forwarded-for",
                "accept-encoding",
            ]
        ),
        HEADER_VALUE,
    ),
    max_size=4,
)

# How the request authenticates: the live module turns each kind into a header.
AUTH_KINDS = (
    "valid",
    "valid",
    "valid",
    "valid",
    "none",
    "empty",
    "random",
    "lowercase-scheme",
    "basic",
    "oversized",
    "three-parts",
    "foreign-key",
    "expired",
    "admin-only",
    "wrong-scope",
    "padded",
    "twice",
    "api-key",
    "unknown-api-key",
)
AUTH = st.one_of(st.sampled_from(AUTH_KINDS), st.tuples(st.just("literal"), HEADER_VALUE))


@dataclass(frozen=True, slots=True)
class Request:
    route: Route
    body: bytes
    auth: Any  # an AUTH_KINDS name, or ("literal", value)
    headers: tuple[tuple[str, str], ...]
    http2: bool
    user: int  # which fuzz user sends it (per-user limits stay out of the way)

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        shown = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        headers: list[object] = [
            (n, v if len(v) <= 40 else f"{v[:20]}... ({len(v)} chars)") for n, v in self.headers[:6]
        ]
        if len(self.headers) > 6:
            size = sum(len(n) + len(v) for n, v in self.headers)
            headers.append(f"... {len(self.headers) - 6} more, {size} bytes in all")
        auth = self.auth if len(str(self.auth)) <= 80 else f"{str(self.auth)[:60]}..."
        return (
            f"Request({self.route.method} {self.route.path}, body={shown!r} "
            f"({len(self.body)} bytes), auth={auth!r}, headers={headers!r}, "
            f"http2={self.http2}, user={self.user})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis' printer: this repr, not every field


def requests(
    routes: tuple[Route, ...] = ROUTES,
    *,
    auth: st.SearchStrategy[Any] | None = None,
    headers: st.SearchStrategy[list[tuple[str, str]]] | None = None,
) -> st.SearchStrategy[Request]:
    """A request to one of `routes`, over HTTP/1.1 or HTTP/2."""
    auth = st.just("valid") if auth is None else auth
    return _request(routes, auth, KNOWN_HEADERS if headers is None else headers)


# A composite, not st.builds: hypothesis then prints a failing case through
# `Request.__repr__` (its body cut short), not as the calls that built a body
# of 200,000 characters.
@st.composite
def _request(
    draw: st.DrawFn,
    routes: tuple[Route, ...],
    auth: st.SearchStrategy[Any],
    headers: st.SearchStrategy[list[tuple[str, str]]],
    bodies_of: Callable[[Route], st.SearchStrategy[bytes]] | None = None,
    query: bool = False,
) -> Request:
    route = draw(st.sampled_from(routes))
    body = draw((bodies_of or bodies)(route))
    if query and (text := draw(st.one_of(st.just(""), QUERY))):
        route = dataclasses.replace(route, path=f"{route.path}?{text}")
    return Request(
        route, body, draw(auth), tuple(draw(headers)), draw(st.booleans()), draw(st.integers(0, 99))
    )


QUERY = st.text(alphabet=TCHAR + "=&%,.:;@/?", max_size=40)


def other_requests() -> st.SearchStrategy[Request]:
    """A request to one of `OTHER_ROUTES`, any credential, odd headers, a query."""

    def any_body(route: Route) -> st.SearchStrategy[bytes]:
        return st.one_of(st.just(b""), RAW) if route.method in ("POST", "DELETE") else st.just(b"")

    headers = st.one_of(KNOWN_HEADERS, EXTRA_HEADERS)
    return _request(OTHER_ROUTES, AUTH, headers, any_body, query=True)


TARGETS = st.sampled_from(["region", "router"])
