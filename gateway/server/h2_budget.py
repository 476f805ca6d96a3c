"""What an HTTP/2 connection may cost us before it is cut: token buckets over frames.

HTTP/2 lets a client make the server work with frames that cost the client
nothing: a stream opened and reset at once (rapid reset, CVE-2023-44487: each
HEADERS spawns an app task), SETTINGS and PING frames (each answered with an
ACK), empty DATA and PRIORITY frames (CVE-2019-9518, 9513). Each kind has a
bucket: a burst, refilled at a rate; a connection that empties one gets GOAWAY
(ENHANCE_YOUR_CALM). The rates sit far above what a legitimate busy connection
sends: the router's pooled connection to a region carries every developer's
cancels, hundreds of resets a second, and is never cut (tested).

A stream counts as an early reset when the client resets it before any
response started; the running app tasks of reset streams still count against
the connection's stream limit until they end (patches/h2_guard.py).

No I/O and an injected clock: tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Cost(Enum):
    """The kinds of cheap-to-send frames a connection is charged for."""

    EARLY_RESET = "early_reset"  # RST_STREAM before the response started
    CONTROL = "control"  # SETTINGS and PING (each makes us send an ACK)
    EMPTY = "empty"  # DATA without payload or END_STREAM, PRIORITY
    REFUSED = "refused"  # a stream opened past the limit of running streams


@dataclass(frozen=True, slots=True)
class Allowance:
    """Frames of one kind: `burst` at once, `rate` per second sustained."""

    burst: float
    rate: float


@dataclass(frozen=True, slots=True)
class H2Limits:
    """The per-connection budgets (ServerSettings builds one)."""

    early_reset: Allowance = Allowance(burst=1000, rate=500)
    control: Allowance = Allowance(burst=100, rate=10)
    empty: Allowance = Allowance(burst=1000, rate=100)
    refused: Allowance = Allowance(burst=100, rate=10)

    def allowance(self, cost: Cost) -> Allowance:
        allowance: Allowance = getattr(self, cost.value)
        return allowance


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class FrameBudget:
    """One connection's buckets. `charge` returns False once a bucket is empty."""

    limits: H2Limits
    _buckets: dict[Cost, _Bucket] = field(default_factory=dict)
    exceeded: Cost | None = None

    def charge(self, cost: Cost, now: float) -> bool:
        allowance = self.limits.allowance(cost)
        bucket = self._buckets.get(cost)
        if bucket is None:
            bucket = self._buckets[cost] = _Bucket(allowance.burst, now)
        else:
            refill = (now - bucket.at) * allowance.rate
            bucket.tokens = min(allowance.burst, bucket.tokens + refill)
            bucket.at = now
        if bucket.tokens < 1:
            self.exceeded = cost
            return False
        bucket.tokens -= 1
        return True
