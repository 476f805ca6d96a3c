"""Which region serves a developer: the lowest estimated RTT plus load penalty.

Plain data in (the client's `Location`, a `RegionState` per region, a
`RoutePolicy`), a `RouteDecision` out; the health probes and `/readyz` polling
that fill in the states live elsewhere.

A region is skipped when it is down, draining, or full. Among the rest the
score is

    score = estimated RTT + load_penalty_ms * (inflight + queued) / capacity

so an idle region a little farther away beats a busy one next door: a request
that has to queue behind a whole generation waits far longer than the extra
milliseconds on the wire. Ties go to the alphabetically first region, so the
same inputs always give the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal, TypedDict

from router.geo import DEFAULT_FIXED_COST_MS, estimate_rtt_ms, haversine_km
from router.locations import Location
from router.regions import Region

RegionStatus = Literal["ready", "down", "draining", "full"]
NO_REGION = "no region available"


@dataclass(frozen=True, slots=True)
class RegionState:
    """What the router knows of a region right now (health probe + `/readyz`)."""

    region: Region
    up: bool
    draining: bool = False
    inflight: int = 0
    queued: int = 0
    capacity: int = 4  # parallel generations (slots) over all its healthy backends

    def __post_init__(self) -> None:
        if min(self.inflight, self.queued, self.capacity) < 0:
            raise ValueError(f"{self.region.name}: inflight, queued, capacity must be >= 0")

    @property
    def utilisation(self) -> float:
        """Outstanding requests per slot; infinite when the region has no slots."""
        if self.capacity == 0:
            return math.inf
        return (self.inflight + self.queued) / self.capacity


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """The knobs of region choice.

    `load_penalty_ms` is what a fully busy region (every slot taken, nothing
    queued) costs, in milliseconds of RTT. A region is full, and skipped, once
    `max_queued` requests wait there or its utilisation reaches `max_utilisation`.
    """

    fixed_cost_ms: float = DEFAULT_FIXED_COST_MS
    load_penalty_ms: float = 50.0
    max_utilisation: float = 2.0
    max_queued: int = 32

    def __post_init__(self) -> None:
        if not (self.fixed_cost_ms >= 0 and self.load_penalty_ms >= 0):
            raise ValueError("fixed_cost_ms and load_penalty_ms must be >= 0")
        if not (self.max_utilisation > 0 and self.max_queued >= 1):
            raise ValueError("max_utilisation must be > 0 and max_queued >= 1")


class LocationDict(TypedDict):
    lat: float
    lon: float
    kind: str
    label: str


class RouteDecisionDict(TypedDict):
    region: str | None
    url: str | None
    reason: str
    location: LocationDict
    alternatives: list[dict[str, object]]  # Alternative.to_dict


@dataclass(frozen=True, slots=True)
class Alternative:
    """One region as seen from the client: its estimated RTT, score and status."""

    name: str
    url: str
    status: RegionStatus
    distance_km: float
    rtt_ms: float
    score: float
    utilisation: float | None  # None: the region has no slots at all

    def to_dict(self) -> dict[str, object]:
        """Every field, as `/v1/route` lists it: the figures rounded for reading."""
        util = None if self.utilisation is None else round(self.utilisation, 3)
        return {
            **asdict(self),
            "distance_km": round(self.distance_km, 1),
            "rtt_ms": round(self.rtt_ms, 2),
            "score": round(self.score, 2),
            "utilisation": util,
        }


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The chosen region (None if none is available), why, and every region in order.

    `alternatives` holds the ready regions by score, then the unavailable ones;
    `chosen` is the first of them when it is ready.
    """

    location: Location
    chosen: Alternative | None
    reason: str
    alternatives: tuple[Alternative, ...]

    def ready(self) -> tuple[Alternative, ...]:
        """The ready regions, best first: whom to try, in order, when forwarding."""
        return tuple(alt for alt in self.alternatives if alt.status == "ready")

    def to_dict(self) -> RouteDecisionDict:
        """The JSON body of `GET /v1/route`."""
        loc = self.location
        return RouteDecisionDict(
            region=None if self.chosen is None else self.chosen.name,
            url=None if self.chosen is None else self.chosen.url,
            reason=self.reason,
            location=LocationDict(lat=loc.lat, lon=loc.lon, kind=loc.kind, label=loc.label),
            alternatives=[alt.to_dict() for alt in self.alternatives],
        )


def estimate_region_rtt_ms(
    location: Location, region: Region, fixed_cost_ms: float = DEFAULT_FIXED_COST_MS
) -> float:
    """Estimated RTT between a client location and a region."""
    distance = haversine_km(location.lat, location.lon, region.lat, region.lon)
    return estimate_rtt_ms(distance, fixed_cost_ms)


def choose_region(
    location: Location, states: Iterable[RegionState], policy: RoutePolicy | None = None
) -> RouteDecision:
    """Pick the ready region with the lowest RTT plus load penalty (module docstring)."""
    policy = RoutePolicy() if policy is None else policy
    alternatives = sorted((_assess(location, s, policy) for s in states), key=_rank)
    ready = [alt for alt in alternatives if alt.status == "ready"]
    if not ready:
        return RouteDecision(location, None, NO_REGION, tuple(alternatives))
    chosen = ready[0]
    return RouteDecision(location, chosen, _reason(chosen, alternatives), tuple(alternatives))


def _assess(location: Location, state: RegionState, policy: RoutePolicy) -> Alternative:
    region = state.region
    distance = haversine_km(location.lat, location.lon, region.lat, region.lon)
    rtt = estimate_rtt_ms(distance, policy.fixed_cost_ms)
    # Capped so that full and slot-less regions still get a finite, sortable score.
    load = min(state.utilisation, policy.max_utilisation)
    utilisation = state.utilisation if math.isfinite(state.utilisation) else None
    return Alternative(
        name=region.name,
        url=region.url,
        status=_status(state, policy),
        distance_km=distance,
        rtt_ms=rtt,
        score=rtt + policy.load_penalty_ms * load,
        utilisation=utilisation,
    )


def _status(state: RegionState, policy: RoutePolicy) -> RegionStatus:
    if not state.up:
        return "down"
    if state.draining:
        return "draining"
    if state.queued >= policy.max_queued or state.utilisation >= policy.max_utilisation:
        return "full"
    return "ready"


def _rank(alt: Alternative) -> tuple[bool, float, str]:
    return (alt.status != "ready", alt.score, alt.name)


def _reason(chosen: Alternative, alternatives: list[Alternative]) -> str:
    """Why `chosen`: what, if anything, was wrong with every region nearer than it."""
    nearer = sorted(
        (alt for alt in alternatives if (alt.rtt_ms, alt.name) < (chosen.rtt_ms, chosen.name)),
        key=lambda alt: (alt.rtt_ms, alt.name),
    )
    rtt = f"est. RTT {chosen.rtt_ms:.1f} ms"
    if not nearer:
        return f"nearest ready region ({rtt})"
    notes = "; ".join(_note(alt) for alt in nearer)
    if all(alt.status != "ready" for alt in nearer):
        return f"{notes}; next nearest ({rtt})"
    return f"{notes}; lowest RTT plus load ({rtt}, load {chosen.utilisation or 0:.0%})"


def _note(alt: Alternative) -> str:
    if alt.status == "ready":
        return f"{alt.name} is busier ({alt.utilisation or 0:.0%} load)"
    return f"{alt.name} is {alt.status}"
