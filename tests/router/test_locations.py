"""Client location: parsing each form, the CIDR table, and the order of sources."""

from __future__ import annotations

import re

import pytest

from router.countries import Country
from router.locations import CidrTable, Location, LocationError, parse_location, resolve_location
from router.nearest import RegionState, choose_region
from router.regions import DEFAULT_REGIONS, Region, find_region

US_WEST, US_EAST, EU_WEST, AP_EAST = DEFAULT_REGIONS


def _nearest(text: str) -> str:
    location = parse_location(text, DEFAULT_REGIONS)
    decision = choose_region(location, [RegionState(r, up=True) for r in DEFAULT_REGIONS])
    assert decision.chosen is not None
    return decision.chosen.name


@pytest.mark.parametrize(
    ("text", "kind", "region"),
    [
        ("DE", "country", "eu-west"),
        ("gb", "country", "eu-west"),
        ("JP", "country", "ap-east"),
        ("HK", "country", "ap-east"),
        ("IN", "country", "ap-east"),
        ("AU", "country", "ap-east"),
        ("BR", "country", "us-east"),
        ("ZA", "country", "eu-west"),
        ("CA", "country", "us-west"),
        ("eu-west", "region", "eu-west"),
        ("AP-EAST", "region", "ap-east"),
        ("eu", "area", "eu-west"),
        ("ap", "area", "ap-east"),
        ("37.7,-122.4", "latlon", "us-west"),
        (" 40.7 , -74.0 ", "latlon", "us-east"),
        ("-33.87,151.21", "latlon", "ap-east"),
    ],
)
def test_each_kind_resolves_to_the_right_default_region(text: str, kind: str, region: str) -> None:
    assert parse_location(text, DEFAULT_REGIONS).kind == kind
    assert _nearest(text) == region


def test_us_area_is_a_us_region_and_wins_over_the_country_code() -> None:
    location = parse_location("us", DEFAULT_REGIONS)
    assert (location.kind, location.label) == ("area", "us")
    assert _nearest("us") in {"us-west", "us-east"}
    assert parse_location("US", DEFAULT_REGIONS) == location


def test_region_location_is_the_region_itself() -> None:
    assert parse_location("eu-west", DEFAULT_REGIONS) == Location(
        EU_WEST.lat, EU_WEST.lon, "region", "eu-west"
    )


def test_area_without_a_region_falls_back_to_a_fixed_hub() -> None:
    only_us = (US_WEST, US_EAST)
    location = parse_location("ap", only_us)
    assert location.kind == "area" and location.lat == pytest.approx(1.35, abs=0.01)


def test_custom_area_and_country_table() -> None:
    regions = (*DEFAULT_REGIONS, Region("sa-east", "http://sa:1", -23.55, -46.63, "sa"))
    assert parse_location("SA", regions).kind == "area"  # the area shadows Saudi Arabia
    countries = {"ZZ": Country("ZZ", "Testland", 10.0, 20.0)}
    assert parse_location("zz", DEFAULT_REGIONS, countries) == Location(
        10.0, 20.0, "country", "ZZ (Testland)"
    )
    with pytest.raises(LocationError):
        parse_location("DE", DEFAULT_REGIONS, countries)


def test_latlon_bounds_are_inclusive() -> None:
    assert parse_location("90,180", DEFAULT_REGIONS).lat == 90
    assert parse_location("-90,-180", DEFAULT_REGIONS).lon == -180
    assert parse_location("+1.5,.5", DEFAULT_REGIONS).label == "1.5,0.5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("XK", "unknown location 'XK'"),
        ("mars", "expected a region"),
        ("eu-central", "unknown location"),
        ("91,0", "latitude 91 is out of range"),
        ("0,180.01", "longitude 180.01 is out of range"),
        ("nan,0", "latitude 'nan' is not a decimal number"),
        ("0,inf", "longitude 'inf' is not a decimal number"),
        ("1e1,0", "not a decimal number"),
        ("1_0,0", "not a decimal number"),
        ("1,2,3", "expected 'lat,lon'"),
        ("1,", "longitude '' is not"),
        ("x" * 101, "too long"),
    ],
)
def test_bad_locations_raise_location_error(text: str, message: str) -> None:
    with pytest.raises(LocationError, match=message):
        parse_location(text, DEFAULT_REGIONS)
    assert issubclass(LocationError, ValueError)


def _table() -> CidrTable:
    return CidrTable.parse(
        [
            ("10.0.0.0/8", "us-west"),
            ("10.1.0.0/16", "DE"),
            ("10.1.2.0/24", "JP"),
            ("2001:db8::/32", "eu"),
            ("2001:db8:1::/48", "1.35,103.82"),
            ("0.0.0.0/0", "BR"),
        ],
        DEFAULT_REGIONS,
    )


@pytest.mark.parametrize(
    ("ip", "label"),
    [
        ("10.9.9.9", "10.0.0.0/8 (us-west)"),
        ("10.1.9.9", "10.1.0.0/16 (DE (Germany))"),
        ("10.1.2.3", "10.1.2.0/24 (JP (Japan))"),
        ("::ffff:10.1.2.3", "10.1.2.0/24 (JP (Japan))"),
        ("192.0.2.1", "0.0.0.0/0 (BR (Brazil))"),
        ("2001:db8:ffff::1", "2001:db8::/32 (eu)"),
        ("2001:db8:1:2::1", "2001:db8:1::/48 (1.35,103.82)"),
    ],
)
def test_cidr_longest_prefix_wins(ip: str, label: str) -> None:
    found = _table().lookup(ip)
    assert found is not None and (found.kind, found.label) == ("cidr", label)


def test_cidr_no_match_and_garbage() -> None:
    table = _table()
    assert table.lookup("2001:db9::1") is None  # no IPv6 default route in the table
    assert table.lookup("not-an-ip") is None
    assert CidrTable().lookup("10.0.0.1") is None
    assert len(table) == 6 and "networks=6" in repr(table)


def test_cidr_table_rejects_bad_entries() -> None:
    with pytest.raises(ValueError, match=re.escape("bad network '10.1.2.3/16'")):
        CidrTable.parse([("10.1.2.3/16", "DE")], DEFAULT_REGIONS)
    with pytest.raises(ValueError, match=re.escape("bad network '10.0.0.0/33'")):
        CidrTable.parse([("10.0.0.0/33", "DE")], DEFAULT_REGIONS)
    with pytest.raises(ValueError, match=re.escape("network 10.0.0.0/8 is listed twice")):
        CidrTable.parse([("10.0.0.0/8", "DE"), ("10.0.0.0/8", "JP")], DEFAULT_REGIONS)
    with pytest.raises(LocationError, match=re.escape("entry 10.0.0.0/8: unknown location 'ZZ'")):
        CidrTable.parse([("10.0.0.0/8", "ZZ")], DEFAULT_REGIONS)


def _resolve(
    query: str | None = None, header: str | None = None, ip: str | None = None
) -> Location:
    return resolve_location(query, header, ip, _table(), EU_WEST, DEFAULT_REGIONS)


def test_resolve_order_query_header_ip_default() -> None:
    assert _resolve("JP", "DE", "10.9.9.9").label == "JP (Japan)"
    assert _resolve(None, "DE", "10.9.9.9").label == "DE (Germany)"
    assert _resolve("  ", "DE").label == "DE (Germany)"  # blank means not given
    assert _resolve(None, None, "10.9.9.9").kind == "cidr"
    default = _resolve(None, None, "2001:db9::1")
    assert default == Location(EU_WEST.lat, EU_WEST.lon, "default", "default region eu-west")
    assert _resolve().kind == "default"
    no_table = resolve_location(None, None, "10.9.9.9", None, US_EAST, DEFAULT_REGIONS)
    assert no_table.label == "default region us-east"


def test_resolve_reports_which_source_was_bad() -> None:
    with pytest.raises(LocationError, match=r"^location parameter: unknown location 'ZZ'"):
        _resolve("ZZ", "DE")
    with pytest.raises(LocationError, match=r"^X-Client-Location: latitude 99"):
        _resolve(None, "99,0")


def test_find_region_and_location_agree() -> None:
    region = find_region(DEFAULT_REGIONS, "us-west")
    assert region is not None
    assert parse_location("us-west", DEFAULT_REGIONS).lat == region.lat
