"""Distance on the globe and the round-trip time it costs.

The router cannot measure the RTT between a developer and every region before it
answers, so it estimates it: light in fibre covers about 200 km per millisecond,
a request goes there and back, and real paths add a roughly fixed cost (routing
detours, switching, the TLS and HTTP work at each end). The estimate only has to
rank regions correctly, and for that the great-circle distance is good enough.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

EARTH_RADIUS_KM = 6371.0
FIBRE_KM_PER_MS = 200.0
DEFAULT_FIXED_COST_MS = 2.0


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    # Rounding can push h a hair above 1 for antipodal points; asin would raise.
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def estimate_rtt_ms(distance_km: float, fixed_cost_ms: float = DEFAULT_FIXED_COST_MS) -> float:
    """Estimated round trip: there and back through fibre, plus a fixed cost."""
    if distance_km < 0:
        raise ValueError(f"distance must not be negative, got {distance_km}")
    return 2 * distance_km / FIBRE_KM_PER_MS + fixed_cost_ms


def centroid(points: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """The spherical centroid of (lat, lon) points, in degrees.

    Averaging unit vectors rather than degrees keeps points on both sides of the
    antimeridian (Tokyo and Hawaii) from averaging to somewhere near Africa.
    """
    x = y = z = 0.0
    count = 0
    for lat, lon in points:
        phi, lam = math.radians(lat), math.radians(lon)
        x += math.cos(phi) * math.cos(lam)
        y += math.cos(phi) * math.sin(lam)
        z += math.sin(phi)
        count += 1
    if count == 0:
        raise ValueError("centroid of no points")
    if math.hypot(x, y, z) < 1e-9:
        raise ValueError("points cancel out; their centroid is undefined")
    lat = math.degrees(math.atan2(z, math.hypot(x, y)))
    lon = math.degrees(math.atan2(y, x))
    return lat, lon
