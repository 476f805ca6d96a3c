"""The region table: where each region's proxy listens and where on Earth it is.

A region table comes from the config file as a list of tables,

    [[regions]]
    name = "eu-west"
    url = "http://127.0.0.1:8002"
    lat = 53.35
    lon = -6.26
    area = "eu"

and `parse_regions(config["regions"])` turns it into `Region`s, or raises a
`ValueError` that names the entry and the field at fault.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

# Region names end up in URLs, the X-Ghostgate-Region header and metric labels.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# An area groups regions for `?location=us`; short and lower case like "us", "eu".
_AREA = re.compile(r"[a-z]{2,8}")
_FIELDS = ("name", "url", "lat", "lon", "area")


@dataclass(frozen=True, slots=True)
class Region:
    """One region: its name, its proxy's base URL, its coordinates and its area."""

    name: str
    url: str
    lat: float
    lon: float
    area: str


# The local multi-region cluster (router/cluster.py): ports 8000-8003, placed
# where such regions really run so that a developer's location picks the same
# region it would in production.
DEFAULT_REGIONS: tuple[Region, ...] = (
    Region("us-west", "http://127.0.0.1:8000", 45.5152, -122.6784, "us"),  # Portland, OR
    Region("us-east", "http://127.0.0.1:8001", 39.0438, -77.4874, "us"),  # Ashburn, VA
    Region("eu-west", "http://127.0.0.1:8002", 53.3498, -6.2603, "eu"),  # Dublin
    Region("ap-east", "http://127.0.0.1:8003", 22.3193, 114.1694, "ap"),  # Hong Kong
)


def parse_regions(entries: object) -> tuple[Region, ...]:
    """Build the region table from a TOML-like list of tables.

    Each entry needs `name`, `url`, `lat`, `lon` and `area`; unknown keys are
    rejected so that a misspelt field is not silently ignored. Names and areas
    are lower-cased (locations match them case-insensitively) and names are unique.
    """
    if isinstance(entries, str | bytes) or not isinstance(entries, Sequence):
        raise ValueError(f"regions must be a list of tables, got {type(entries).__name__}")
    if not entries:
        raise ValueError("regions must not be empty")
    regions = tuple(_parse_region(entry, f"regions[{i}]") for i, entry in enumerate(entries))
    seen: set[str] = set()
    for region in regions:
        if region.name in seen:
            raise ValueError(f"regions: duplicate region name {region.name!r}")
        seen.add(region.name)
    return regions


def find_region(regions: Sequence[Region], name: str) -> Region | None:
    """The region called `name` (case-insensitive), or None."""
    wanted = name.strip().lower()
    return next((region for region in regions if region.name == wanted), None)


def _parse_region(entry: object, where: str) -> Region:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: must be a table, got {type(entry).__name__}")
    missing = [field for field in _FIELDS if field not in entry]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(str(key) for key in entry if key not in _FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field {', '.join(unknown)}")
    name = _parse_name(entry["name"], where)
    where = f"{where} ({name})"
    return Region(
        name=name,
        url=_parse_url(entry["url"], where),
        lat=_parse_degrees(entry["lat"], f"{where}: lat", 90.0),
        lon=_parse_degrees(entry["lon"], f"{where}: lon", 180.0),
        area=_parse_area(entry["area"], where),
    )


def _parse_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value.lower()):
        raise ValueError(
            f"{where}: name must be 1-63 letters, digits, '.', '_' or '-', got {value!r}"
        )
    return value.lower()


def _parse_url(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: url must be a string, got {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where}: url must be http(s)://host[:port], got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{where}: url must not have a query or fragment, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port like ":99999"
    except ValueError:
        raise ValueError(f"{where}: url has an invalid port, got {value!r}") from None
    # The proxy paths are appended to it; a trailing slash would double up.
    return value.rstrip("/")


def _parse_degrees(value: object, what: str, limit: float) -> float:
    # bool is an int subclass; `lat = true` is a mistake, not 1 degree.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise ValueError(f"{what} must be between {-limit:g} and {limit:g}, got {value!r}")
    return number


def _parse_area(value: object, where: str) -> str:
    if not isinstance(value, str) or not _AREA.fullmatch(value.lower()):
        raise ValueError(f"{where}: area must be 2-8 letters such as 'us', got {value!r}")
    return value.lower()
