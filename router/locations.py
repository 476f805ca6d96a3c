"""Where a developer is, as far as the router can tell.

A location is given, first that applies (docs/ARCHITECTURE.md, "Geo routing"):

1. `?location=` on the request,
2. the `X-Client-Location` header,
3. the client IP, through a configured CIDR table (longest prefix wins),
4. the default region.

Steps 1 and 2 accept a region name, an area (`us`, `eu`, `ap`, ...), an ISO 3166
alpha-2 country code or `lat,lon`, all case-insensitive. A location that was
given but cannot be understood raises `LocationError`: routing such a request
somewhere arbitrary would hide the mistake from the developer who made it.

Exceptions:

    ValueError
    └── LocationError   a location string that is not one of the forms above
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from router.countries import Country, load_countries
from router.geo import centroid
from router.regions import Region, find_region

LocationKind = Literal["region", "area", "country", "latlon", "cidr", "default"]
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# Fallback points for the well-known areas when no configured region is in them:
# the usual interconnection hubs (geographic centre of the contiguous US,
# Frankfurt, Singapore).
AREA_POINTS: Mapping[str, tuple[float, float]] = {
    "us": (39.8283, -98.5795),
    "eu": (50.1109, 8.6821),
    "ap": (1.3521, 103.8198),
}

# Plain decimal degrees only: float() would also take "nan", "inf", "1e2" and "1_0".
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_MAX_TEXT = 100


class LocationError(ValueError):
    """A client location that is none of: region, area, country code, `lat,lon`."""


@dataclass(frozen=True, slots=True)
class Location:
    """A point on Earth, how it was determined, and a label saying so."""

    lat: float
    lon: float
    kind: LocationKind
    label: str


def parse_location(
    text: str, regions: Sequence[Region], countries: Mapping[str, Country] | None = None
) -> Location:
    """Understand a client-supplied location, or raise LocationError.

    Tried in order: `lat,lon`, a region name, an area, a country code; the more
    specific wins a clash of spellings, so `us` is the area (the centroid of the
    US regions), not the country. `countries` defaults to the shipped table.
    """
    stripped = text.strip()
    if not stripped:
        raise LocationError("location is empty")
    if len(stripped) > _MAX_TEXT:
        raise LocationError(f"location is too long ({len(stripped)} characters)")
    if "," in stripped:
        return _parse_latlon(stripped)
    found = _named_location(stripped, regions, load_countries() if countries is None else countries)
    if found is None:
        raise LocationError(_unknown_message(stripped, regions))
    return found


def area_point(area: str, regions: Sequence[Region]) -> tuple[float, float] | None:
    """The point standing for an area: its regions' centroid, else a fixed hub."""
    points = [(region.lat, region.lon) for region in regions if region.area == area]
    if points:
        return centroid(points)
    return AREA_POINTS.get(area)


def _named_location(
    text: str, regions: Sequence[Region], countries: Mapping[str, Country]
) -> Location | None:
    region = find_region(regions, text)
    if region is not None:
        return Location(region.lat, region.lon, "region", region.name)
    area = text.lower()
    point = area_point(area, regions)
    if point is not None:
        return Location(point[0], point[1], "area", area)
    country = countries.get(text.upper())
    if country is not None:
        return Location(country.lat, country.lon, "country", f"{country.code} ({country.name})")
    return None


def _parse_latlon(text: str) -> Location:
    parts = text.split(",")
    if len(parts) != 2:
        raise LocationError(f"location {text!r}: expected 'lat,lon', e.g. '37.77,-122.42'")
    lat = _coordinate(parts[0].strip(), "latitude", 90.0)
    lon = _coordinate(parts[1].strip(), "longitude", 180.0)
    return Location(lat, lon, "latlon", f"{lat:g},{lon:g}")


def _coordinate(text: str, what: str, limit: float) -> float:
    if not _DECIMAL.fullmatch(text):
        raise LocationError(f"{what} {text!r} is not a decimal number of degrees")
    value = float(text)
    if not -limit <= value <= limit:
        raise LocationError(f"{what} {text} is out of range -{limit:g}..{limit:g}")
    return value


def _unknown_message(text: str, regions: Sequence[Region]) -> str:
    names = ", ".join(region.name for region in regions)
    areas = ", ".join(sorted({region.area for region in regions} | set(AREA_POINTS)))
    return (
        f"unknown location {text!r}: expected a region ({names}), an area ({areas}), "
        "an ISO 3166 country code such as 'DE', or 'lat,lon'"
    )


class CidrTable:
    """Client networks mapped to locations; the longest matching prefix wins.

    Lookups try each prefix length present in the table, longest first, with
    one dict probe each: at most 33 probes for IPv4 and 129 for IPv6, however
    many networks are configured.
    """

    def __init__(self, entries: Iterable[tuple[IPNetwork, Location]] = ()) -> None:
        self._entries: dict[IPNetwork, Location] = {}
        for network, location in entries:
            cidr = Location(location.lat, location.lon, "cidr", f"{network} ({location.label})")
            self._entries[network] = cidr
        lengths = {(net.version, net.prefixlen) for net in self._entries}
        self._lengths = sorted(lengths, key=lambda pair: -pair[1])

    @classmethod
    def parse(
        cls,
        pairs: Iterable[tuple[str, str]],
        regions: Sequence[Region],
        countries: Mapping[str, Country] | None = None,
    ) -> CidrTable:
        """Build from `(network, location)` strings, e.g. `("10.1.0.0/16", "DE")`.

        Raises ValueError (LocationError for the location half) naming the entry.
        Host bits set in a network (`10.1.2.3/16`) are an error: it usually means
        a mistyped prefix length.
        """
        entries: list[tuple[IPNetwork, Location]] = []
        seen: set[IPNetwork] = set()
        for network, location in pairs:
            try:
                parsed = ipaddress.ip_network(network.strip(), strict=True)
            except ValueError as exc:
                raise ValueError(f"cidr table: bad network {network!r}: {exc}") from None
            if parsed in seen:
                raise ValueError(f"cidr table: network {parsed} is listed twice")
            seen.add(parsed)
            try:
                entries.append((parsed, parse_location(location, regions, countries)))
            except LocationError as exc:
                raise LocationError(f"cidr table entry {network}: {exc}") from None
        return cls(entries)

    def lookup(self, ip: str) -> Location | None:
        """The location of the longest prefix holding `ip`; None if none or not an IP."""
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError:
            return None
        # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for version, length in self._lengths:
            if version == address.version:
                network = ipaddress.ip_network((address, length), strict=False)
                if network in self._entries:
                    return self._entries[network]
        return None

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<CidrTable networks={len(self._entries)}>"


def resolve_location(
    query_location: str | None,
    header_location: str | None,
    client_ip: str | None,
    cidr_table: CidrTable | None,
    default_region: Region,
    regions: Sequence[Region],
    countries: Mapping[str, Country] | None = None,
) -> Location:
    """The client's location from the first source that applies (module docstring).

    An absent or blank query parameter or header does not apply. One that is
    given but not understood raises LocationError, with its source in the message.
    """
    explicit = (("location parameter", query_location), ("X-Client-Location", header_location))
    for source, text in explicit:
        if text is not None and text.strip():
            try:
                return parse_location(text, regions, countries)
            except LocationError as exc:
                raise LocationError(f"{source}: {exc}") from None
    if client_ip and cidr_table is not None:
        found = cidr_table.lookup(client_ip)
        if found is not None:
            return found
    label = f"default region {default_region.name}"
    return Location(default_region.lat, default_region.lon, "default", label)
