"""Great-circle distance, the RTT estimate and the spherical centroid."""

from __future__ import annotations

import math

import pytest

from router.geo import EARTH_RADIUS_KM, centroid, estimate_rtt_ms, haversine_km


def test_distance_of_a_point_to_itself_is_zero() -> None:
    assert haversine_km(53.35, -6.26, 53.35, -6.26) == 0.0


def test_quarter_and_half_circumference() -> None:
    quarter = math.pi * EARTH_RADIUS_KM / 2
    assert haversine_km(0, 0, 0, 90) == pytest.approx(quarter)
    assert haversine_km(0, 0, 90, 0) == pytest.approx(quarter)
    # Antipodes: the rounding guard keeps asin in its domain.
    assert haversine_km(10, 20, -10, -160) == pytest.approx(2 * quarter)


def test_known_city_pair_and_antimeridian() -> None:
    # London to New York is about 5570 km.
    assert haversine_km(51.5074, -0.1278, 40.7128, -74.0060) == pytest.approx(5570, abs=15)
    # 1 degree of longitude either side of 180 is 2 degrees apart, not 358.
    assert haversine_km(0, 179, 0, -179) == pytest.approx(2 * math.pi * EARTH_RADIUS_KM / 180)


def test_rtt_is_there_and_back_at_200_km_per_ms_plus_fixed_cost() -> None:
    assert estimate_rtt_ms(2000) == pytest.approx(22.0)  # 20 ms + the default 2 ms
    assert estimate_rtt_ms(2000, fixed_cost_ms=0) == pytest.approx(20.0)
    assert estimate_rtt_ms(0, fixed_cost_ms=5) == pytest.approx(5.0)
    assert estimate_rtt_ms(10_000, fixed_cost_ms=2) == pytest.approx(102.0)
    with pytest.raises(ValueError):
        estimate_rtt_ms(-1)


def test_centroid_of_two_points_is_equidistant() -> None:
    lat, lon = centroid([(45.5, -122.7), (39.0, -77.5)])
    west = haversine_km(lat, lon, 45.5, -122.7)
    assert west == pytest.approx(haversine_km(lat, lon, 39.0, -77.5))


def test_centroid_across_the_antimeridian() -> None:
    lat, lon = centroid([(0, 170), (0, -170)])
    assert lat == pytest.approx(0, abs=1e-9)
    assert abs(lon) == pytest.approx(180)


def test_centroid_rejects_nothing_and_cancelling_points() -> None:
    with pytest.raises(ValueError):
        centroid([])
    with pytest.raises(ValueError):
        centroid([(0, 0), (0, 180)])
