"""Region choice: RTT, load penalty, skipping unavailable regions, the decision's shape."""

from __future__ import annotations

import json

import pytest

from router.locations import Location, parse_location
from router.nearest import (
    RegionState,
    RoutePolicy,
    choose_region,
    estimate_region_rtt_ms,
)
from router.regions import DEFAULT_REGIONS, Region

US_WEST, US_EAST, EU_WEST, AP_EAST = DEFAULT_REGIONS
SAN_FRANCISCO = Location(37.77, -122.42, "latlon", "37.77,-122.42")


def _states(**overrides: RegionState) -> list[RegionState]:
    """All four default regions up and idle, except those overridden by name."""
    idle = {r.name.replace("-", "_"): RegionState(r, up=True) for r in DEFAULT_REGIONS}
    return list((idle | overrides).values())


def test_nearest_ready_region_and_its_reason() -> None:
    decision = choose_region(SAN_FRANCISCO, _states())
    assert decision.chosen is not None and decision.chosen.name == "us-west"
    assert decision.reason.startswith("nearest ready region (est. RTT ")
    names = [alt.name for alt in decision.alternatives]
    assert names == ["us-west", "us-east", "eu-west", "ap-east"]
    assert all(alt.status == "ready" for alt in decision.alternatives)


def test_rtt_uses_the_formula() -> None:
    # Two regions 2000 km apart along the equator-ish meridian: 20 ms + fixed cost.
    here = Location(0.0, 0.0, "latlon", "0,0")
    far = Region("far", "http://far:1", 2000 / 111.195, 0.0, "xx")
    assert estimate_region_rtt_ms(here, far) == pytest.approx(22.0, abs=0.01)
    assert estimate_region_rtt_ms(here, far, fixed_cost_ms=5) == pytest.approx(25.0, abs=0.01)
    decision = choose_region(here, [RegionState(far, up=True)], RoutePolicy(fixed_cost_ms=0))
    assert decision.alternatives[0].rtt_ms == pytest.approx(20.0, abs=0.01)
    assert decision.alternatives[0].distance_km == pytest.approx(2000, abs=0.5)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (RegionState(US_WEST, up=False), "down"),
        (RegionState(US_WEST, up=True, draining=True), "draining"),
        (RegionState(US_WEST, up=True, inflight=4, queued=4, capacity=4), "full"),
        (RegionState(US_WEST, up=True, inflight=1, queued=32, capacity=64), "full"),
        (RegionState(US_WEST, up=True, capacity=0), "full"),
    ],
)
def test_unavailable_region_is_skipped_for_next_nearest(state: RegionState, status: str) -> None:
    decision = choose_region(SAN_FRANCISCO, _states(us_west=state))
    assert decision.chosen is not None and decision.chosen.name == "us-east"
    assert decision.reason.startswith(f"us-west is {status}; next nearest (est. RTT ")
    last = decision.alternatives[-1]
    assert (last.name, last.status) == ("us-west", status)
    assert [alt.name for alt in decision.ready()] == ["us-east", "eu-west", "ap-east"]


def test_down_wins_over_draining_and_full() -> None:
    state = RegionState(US_WEST, up=False, draining=True, inflight=9, capacity=1)
    decision = choose_region(SAN_FRANCISCO, _states(us_west=state))
    assert decision.alternatives[-1].status == "down"


def test_load_penalty_moves_traffic_to_a_slightly_farther_idle_region() -> None:
    busy = RegionState(US_WEST, up=True, inflight=4, queued=1, capacity=4)  # 125% load
    decision = choose_region(SAN_FRANCISCO, _states(us_west=busy))
    assert decision.chosen is not None and decision.chosen.name == "us-east"
    assert decision.reason.startswith("us-west is busier (125% load); lowest RTT plus load")
    # us-west is still a ready fallback, just ranked after the idle region.
    assert [alt.name for alt in decision.ready()][:2] == ["us-east", "us-west"]


def test_light_load_does_not_send_anyone_across_the_continent() -> None:
    light = RegionState(US_WEST, up=True, inflight=1, capacity=4)
    decision = choose_region(SAN_FRANCISCO, _states(us_west=light))
    assert decision.chosen is not None and decision.chosen.name == "us-west"
    assert decision.chosen.score == pytest.approx(decision.chosen.rtt_ms + 50 * 0.25)


def test_zero_penalty_ignores_load() -> None:
    busy = RegionState(US_WEST, up=True, inflight=7, capacity=4)
    decision = choose_region(SAN_FRANCISCO, _states(us_west=busy), RoutePolicy(load_penalty_ms=0))
    assert decision.chosen is not None and decision.chosen.name == "us-west"


def test_several_unavailable_regions_are_all_explained() -> None:
    decision = choose_region(
        SAN_FRANCISCO,
        _states(
            us_west=RegionState(US_WEST, up=False),
            us_east=RegionState(US_EAST, up=True, draining=True),
        ),
    )
    assert decision.chosen is not None and decision.chosen.name == "eu-west"
    assert decision.reason.startswith("us-west is down; us-east is draining; next nearest")


def test_no_region_available() -> None:
    states = [RegionState(r, up=False) for r in DEFAULT_REGIONS]
    decision = choose_region(SAN_FRANCISCO, states)
    assert decision.chosen is None and decision.reason == "no region available"
    assert len(decision.alternatives) == 4 and decision.ready() == ()
    assert choose_region(SAN_FRANCISCO, []).reason == "no region available"


def test_ties_go_to_the_first_name_whatever_the_input_order() -> None:
    here = Location(0.0, 0.0, "latlon", "0,0")
    twins = [Region(name, f"http://{name}:1", 0.0, 10.0, "xx") for name in ("b", "a", "c")]
    for order in (twins, twins[::-1]):
        decision = choose_region(here, [RegionState(r, up=True) for r in order])
        assert [alt.name for alt in decision.alternatives] == ["a", "b", "c"]


def test_us_area_balances_between_the_us_regions() -> None:
    us = parse_location("us", DEFAULT_REGIONS)
    busy_east = RegionState(US_EAST, up=True, inflight=1, capacity=4)
    decision = choose_region(us, _states(us_east=busy_east))
    assert decision.chosen is not None and decision.chosen.name == "us-west"


def test_to_dict_is_json_serialisable() -> None:
    states = _states(ap_east=RegionState(AP_EAST, up=True, capacity=0))
    data = choose_region(SAN_FRANCISCO, states).to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["region"] == "us-west" and data["url"] == "http://127.0.0.1:8000"
    location = {"lat": 37.77, "lon": -122.42, "kind": "latlon", "label": "37.77,-122.42"}
    assert data["location"] == location
    first = data["alternatives"][0]
    assert set(first) == {"name", "url", "status", "distance_km", "rtt_ms", "score", "utilisation"}
    assert data["alternatives"][-1]["utilisation"] is None
    empty = choose_region(SAN_FRANCISCO, []).to_dict()
    assert (empty["region"], empty["url"], empty["alternatives"]) == (None, None, [])


def test_bad_state_and_policy_are_rejected() -> None:
    with pytest.raises(ValueError):
        RegionState(US_WEST, up=True, inflight=-1)
    with pytest.raises(ValueError):
        RoutePolicy(load_penalty_ms=-1)
    with pytest.raises(ValueError):
        RoutePolicy(max_utilisation=0)
