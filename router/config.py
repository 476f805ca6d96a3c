"""Building `RouterSettings` from flags, the environment and an optional TOML file.

The one module that reads `os.environ` for the router. Precedence, lowest
first: built-in defaults, the TOML file, `GHOSTGATE_REDIS_URL`, flags.

TOML layout (every table optional):

    [router]          host, port, public_url, default_region, redis_url, log_level
    [router.cidr]     "10.1.0.0/16" = "DE"   (client network -> location)
    [router.policy]   fixed_cost_ms, load_penalty_ms, max_utilisation, max_queued
    [router.probes]   interval, timeout
    [router.forward]  max_body_bytes, body_timeout, send_timeout, connect_timeout,
                      read_timeout, wan_latency
    [router.tokens]   lifetime, issuer, audience, rotation_grace, recheck,
                      failed_lookups_per_minute, lookup_limiter_addresses,
                      negative_cache_seconds, negative_cache_entries, last_used_interval
    [router.store]    write_retries, write_backoff, replay_limit (Redis outages)
    [[regions]]       name, url, lat, lon, area   (see router/regions.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# One error for any unusable configuration, the region's or the router's.
from gateway.config import ConfigError as ConfigError
from gateway.config import read_toml
from gateway.settings import StoreSettings
from router.locations import CidrTable
from router.nearest import RoutePolicy
from router.regions import DEFAULT_REGIONS, Region, find_region, parse_regions
from router.settings import ForwardSettings, ProbeSettings, RouterSettings, TokenSettings

_GROUPS: dict[str, type[Any]] = {
    "policy": RoutePolicy,
    "probes": ProbeSettings,
    "forward": ForwardSettings,
    "tokens": TokenSettings,
    "store": StoreSettings,
}
_SCALARS = ("host", "port", "public_url", "default_region", "redis_url", "log_level")
MAX_TOKEN_LIFETIME = 1800.0  # a region's default max_lifetime: longer tokens are refused


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `python -m router`."""
    parser.add_argument("--config", type=Path, help="TOML file ([router] and [[regions]])")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument("--public-url", help="the router's URL as clients reach it")
    parser.add_argument("--state-dir", type=Path, help="signing keys and API keys (.ghostgate)")
    parser.add_argument("--redis", metavar="URL", help="shared state in Redis (API keys, ...)")
    parser.add_argument(
        "--region",
        action="append",
        metavar="NAME=URL",
        help="a region and its proxy URL (repeatable); replaces the region table",
    )
    parser.add_argument("--default-region", help="where clients of unknown location go")
    parser.add_argument(
        "--wan-latency",
        action="store_true",
        default=None,
        help="delay each forward by the estimated client-region RTT (local runs)",
    )
    parser.add_argument("--token-lifetime", type=float, help="seconds (default 600)")
    parser.add_argument("--rotation-grace", type=float, help="seconds before a new key signs")
    parser.add_argument("--log-level", help="debug, info, warning, error")


def redis_url(flag: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The Redis URL: the flag, else `GHOSTGATE_REDIS_URL`, else None (embedded store)."""
    env = os.environ if environ is None else environ
    return flag or env.get("GHOSTGATE_REDIS_URL") or None


def load(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> RouterSettings:
    """Settings from parsed flags, the environment and the TOML file they name."""
    document = read_toml(args.config) if args.config else {}
    settings = from_document(document)
    from_env = redis_url(None, environ)
    if from_env:
        settings = dataclasses.replace(settings, redis_url=from_env)
    return check(_apply_flags(settings, args))


def from_document(document: Mapping[str, Any]) -> RouterSettings:
    """Settings from a parsed TOML document, every key checked."""
    settings = RouterSettings()
    changes: dict[str, Any] = {}
    if "regions" in document:
        try:
            changes["regions"] = parse_regions(document["regions"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    table = document.get("router", {})
    if not isinstance(table, dict):
        raise ConfigError("[router] must be a table")
    for key, value in table.items():
        if key in _GROUPS:
            changes[key] = _group(getattr(settings, key), value, f"router.{key}")
        elif key == "cidr":
            changes[key] = _cidr(value)
        elif key in _SCALARS:
            changes[key] = value
        else:
            raise ConfigError(f"unknown setting router.{key}")
    return dataclasses.replace(settings, **changes)


def parse_region_flags(flags: list[str], known: tuple[Region, ...]) -> tuple[Region, ...]:
    """`NAME=URL` flags as regions; a name must be in `known` (for its coordinates)."""
    regions: list[dict[str, object]] = []
    for flag in flags:
        name, sep, url = flag.partition("=")
        base = find_region(known, name) if sep else None
        if base is None:
            names = ", ".join(r.name for r in known)
            raise ConfigError(
                f"--region {flag!r}: expected NAME=URL with NAME one of {names} "
                "(other regions need their coordinates in the config's [[regions]])"
            )
        entry: dict[str, object] = {
            "name": base.name,
            "url": url,
            "lat": base.lat,
            "lon": base.lon,
            "area": base.area,
        }
        regions.append(entry)
    try:
        return parse_regions(regions)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check(settings: RouterSettings) -> RouterSettings:
    """Cross-field checks, so that a bad table fails at start-up, not at the first request."""
    names = [r.name for r in settings.regions]
    if settings.default_region and settings.default_region not in names:
        raise ConfigError(f"default_region {settings.default_region!r} is not in {names}")
    try:
        CidrTable.parse(settings.cidr, settings.regions)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    lifetime = settings.tokens.lifetime
    if not 60 <= lifetime <= MAX_TOKEN_LIFETIME:
        raise ConfigError(f"token lifetime must be 60..{MAX_TOKEN_LIFETIME:g} s, got {lifetime:g}")
    if not 0 < settings.probes.timeout <= settings.probes.interval:
        raise ConfigError("probes.timeout must be > 0 and at most probes.interval")
    _check_lookup_guards(settings.tokens)
    return settings


def _check_lookup_guards(tokens: TokenSettings) -> None:
    """The bounds on API key lookups (router/grants.py): 0 turns a guard off,
    a table must hold at least one entry."""
    for name in ("failed_lookups_per_minute", "negative_cache_seconds", "last_used_interval"):
        if getattr(tokens, name) < 0:
            raise ConfigError(f"tokens.{name} must be >= 0")
    for name in ("lookup_limiter_addresses", "negative_cache_entries"):
        if getattr(tokens, name) < 1:
            raise ConfigError(f"tokens.{name} must be >= 1")


def _apply_flags(settings: RouterSettings, args: argparse.Namespace) -> RouterSettings:
    given = {
        "host": args.host,
        "port": args.port,
        "public_url": args.public_url,
        "state_dir": args.state_dir,
        "redis_url": args.redis,
        "default_region": args.default_region,
        "log_level": args.log_level,
    }
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if args.region:
        changes["regions"] = parse_region_flags(args.region, settings.regions or DEFAULT_REGIONS)
    if args.wan_latency is not None:
        changes["forward"] = dataclasses.replace(settings.forward, wan_latency=args.wan_latency)
    tokens = {"lifetime": args.token_lifetime, "rotation_grace": args.rotation_grace}
    tokens = {k: v for k, v in tokens.items() if v is not None}
    if tokens:
        changes["tokens"] = dataclasses.replace(settings.tokens, **tokens)
    return dataclasses.replace(settings, **changes)


def _group(current: Any, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table")
    fields = {f.name: f for f in dataclasses.fields(current)}
    coerced: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown setting {where}.{key}")
        default = getattr(current, key)
        if isinstance(default, bool) != isinstance(value, bool):
            raise ConfigError(f"{where}.{key} must be a {type(default).__name__}")
        if not isinstance(value, type(default) | (int if isinstance(default, float) else str)):
            raise ConfigError(f"{where}.{key} must be a {type(default).__name__}")
        coerced[key] = type(default)(value)
    try:
        return dataclasses.replace(current, **coerced)
    except ValueError as exc:  # the group's own checks (RoutePolicy)
        raise ConfigError(f"{where}: {exc}") from None


def _cidr(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError('router.cidr must be a table of "network" = "location" strings')
    return tuple((str(network), location) for network, location in value.items())
