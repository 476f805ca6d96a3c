"""The region table: the defaults and parsing a TOML-like list of tables."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from router.cluster import LOCAL_REGIONS
from router.regions import DEFAULT_REGIONS, Region, find_region, parse_regions


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "eu-west",
        "url": "http://127.0.0.1:8002",
        "lat": 53.35,
        "lon": -6.26,
        "area": "eu",
    }
    entry.update(changes)
    return {key: value for key, value in entry.items() if value is not None}


def test_defaults_match_the_local_cluster() -> None:
    assert [(r.name, int(r.url.rsplit(":", 1)[1])) for r in DEFAULT_REGIONS] == list(LOCAL_REGIONS)
    assert {r.area for r in DEFAULT_REGIONS} == {"us", "eu", "ap"}


def test_parse_from_toml() -> None:
    text = """
    [[regions]]
    name = "EU-West"
    url = "https://eu.example.com/"
    lat = 53.35
    lon = -6
    area = "EU"
    """
    regions = parse_regions(tomllib.loads(text)["regions"])
    assert regions == (Region("eu-west", "https://eu.example.com", 53.35, -6.0, "eu"),)


def test_defaults_round_trip() -> None:
    raw = [
        {"name": r.name, "url": r.url, "lat": r.lat, "lon": r.lon, "area": r.area}
        for r in DEFAULT_REGIONS
    ]
    assert parse_regions(raw) == DEFAULT_REGIONS


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"regions": []}, "must be a list"),
        ("eu-west", "must be a list"),
        ([], "must not be empty"),
        (["eu-west"], r"regions\[0\]: must be a table"),
        ([_entry(lat=None)], r"regions\[0\]: missing lat"),
        ([_entry(latitude=1.0)], "unknown field latitude"),
        ([_entry(name="eu west")], "name must be"),
        ([_entry(name=7)], "name must be"),
        ([_entry(url="127.0.0.1:8002")], "url must be http"),
        ([_entry(url="ftp://host")], "url must be http"),
        ([_entry(url="http://host:99999")], "invalid port"),
        ([_entry(url="http://host/?a=1")], "query or fragment"),
        ([_entry(lat=91)], r"regions\[0\] \(eu-west\): lat must be between -90 and 90"),
        ([_entry(lon=-180.5)], "lon must be between -180 and 180"),
        ([_entry(lat=float("nan"))], "lat must be between"),
        ([_entry(lat="53.3")], "lat must be a number"),
        ([_entry(lat=True)], "lat must be a number"),
        ([_entry(area="europe-1")], "area must be"),
        ([_entry(), _entry(name="EU-WEST")], "duplicate region name 'eu-west'"),
    ],
)
def test_bad_tables_say_what_is_wrong(entries: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_regions(entries)


def test_find_region_is_case_insensitive() -> None:
    assert find_region(DEFAULT_REGIONS, " AP-East ") == DEFAULT_REGIONS[3]
    assert find_region(DEFAULT_REGIONS, "ap-west") is None
