"""ISO 3166-1 countries and a representative point for each.

The table ships as `router/data/countries.csv` (its header says where the
coordinates come from) and is read once, through `importlib.resources` so that
it is found in a wheel or a zip as well as in a checkout.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

_CODE = re.compile(r"[A-Z]{2}")
_HEADER = ["code", "name", "lat", "lon"]


@dataclass(frozen=True, slots=True)
class Country:
    """An ISO 3166-1 alpha-2 code, its English short name and a point inside it."""

    code: str
    name: str
    lat: float
    lon: float


@functools.cache
def load_countries() -> Mapping[str, Country]:
    """The shipped country table, keyed by upper-case alpha-2 code (read-only)."""
    text = resources.files("router.data").joinpath("countries.csv").read_text("utf-8")
    return MappingProxyType(parse_countries_csv(text))


def parse_countries_csv(text: str) -> dict[str, Country]:
    """Parse `code,name,lat,lon` rows; lines starting with `#` are comments.

    One row per line (no quoted line breaks). Raises ValueError naming the line
    of the first bad row, so a broken data file fails at start-up rather than
    misrouting someone.
    """
    rows = [
        (number, next(csv.reader([line])))
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.startswith("#")
    ]
    if not rows or rows[0][1] != _HEADER:
        header = rows[0][1] if rows else None
        raise ValueError(f"countries: header must be {','.join(_HEADER)}, got {header}")
    countries: dict[str, Country] = {}
    for number, row in rows[1:]:
        country = _parse_row(row, f"countries line {number}")
        if country.code in countries:
            raise ValueError(f"countries line {number}: duplicate code {country.code}")
        countries[country.code] = country
    return countries


def _parse_row(row: list[str], where: str) -> Country:
    if len(row) != len(_HEADER):
        raise ValueError(f"{where}: expected {len(_HEADER)} fields, got {len(row)}")
    code, name, lat, lon = row
    if not _CODE.fullmatch(code):
        raise ValueError(f"{where}: code must be two upper-case letters, got {code!r}")
    if not name:
        raise ValueError(f"{where}: name is empty")
    lat_deg = _degrees(lat, f"{where}: lat", 90)
    lon_deg = _degrees(lon, f"{where}: lon", 180)
    return Country(code, name, lat_deg, lon_deg)


def _degrees(text: str, what: str, limit: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} is not a number: {text!r}") from None
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise ValueError(f"{what} must be between {-limit:g} and {limit:g}, got {text!r}")
    return value
