"""`ghostgate keys ...` and `ghostgate route ...`: the router's commands.

    ghostgate keys create USER      a new API key, shown once
    ghostgate keys list             every key: id, user, created, last used, state
    ghostgate keys revoke KEY_ID    the key and every token it minted
    ghostgate route --location LOC  where LOC's requests go, and why

Keys live in the state dir's store (`gateway.store`: SQLite, or Redis with
`--redis`), which the running router reads too. `route` asks the running
router (found through `<state-dir>/run.json`) so the answer includes live
health and load; with no router up it decides locally from the region table,
every region assumed up, and says so.

With `--redis`, `create` and `revoke` succeed only once their write is in
Redis (retried for a moment, `StoreSettings`); if Redis stays away they say so
and exit 1, rather than report a key or revocation that only this host's local
copy knows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from gateway.config import read_toml
from gateway.store import KeyRecord, StoreError, open_store
from router import config
from router.locations import LocationError, parse_location
from router.nearest import RegionState, choose_region


def add_commands(commands: Any) -> None:
    """Add `keys` and `route` to `ghostgate`'s sub-commands (an argparse subparsers object)."""
    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="a new API key for USER (shown once)")
    create.add_argument("user")
    listing = actions.add_parser("list", help="every API key, without secrets")
    revoke = actions.add_parser("revoke", help="revoke a key and the tokens it minted")
    revoke.add_argument("key_id")
    route = commands.add_parser("route", help="which region a location is sent to, and why")
    route.add_argument("--location", required=True, help="region, us|eu|ap, country, lat,lon")
    route.add_argument("--config", type=Path, help="router TOML (for the region table)")
    route.add_argument("--json", action="store_true", help="print the decision as JSON")
    for parser in (create, listing, revoke, route):
        parser.add_argument("--state-dir", type=Path, default=Path(".ghostgate"))
    for parser in (create, listing, revoke):
        parser.add_argument("--redis", metavar="URL", help="shared store (or GHOSTGATE_REDIS_URL)")


def cmd_keys(args: argparse.Namespace) -> int:
    redis = config.redis_url(args.redis)
    try:
        return _keys(args, redis)
    except StoreError as exc:
        print(f"ghostgate: {_undone(args)} ({exc})", file=sys.stderr)
        return 1


def _undone(args: argparse.Namespace) -> str:
    """What a keys command that the store failed leaves behind, said plainly."""
    again = "run the command again once Redis answers"
    if args.keys_command == "create":
        return f"no key created: Redis did not take it (the local copy is revoked); {again}"
    if args.keys_command == "revoke":
        return (
            f"{args.key_id} is revoked only in this host's local copy: Redis did not take "
            f"the revocation, so other hosts still accept the key; {again}"
        )
    return "the key store cannot be read"


def _keys(args: argparse.Namespace, redis: str | None) -> int:
    if args.keys_command == "create":
        record, secret = asyncio.run(create_key(args.state_dir, redis, args.user))
        print(f"API key for {record.user} (id {record.key_id}). It is shown only this once:\n")
        print(f"  {secret}\n")
        print("A token:  curl -X POST <router>/v1/token -H 'Authorization: Bearer <key>'")
        return 0
    if args.keys_command == "list":
        print(format_keys(asyncio.run(list_keys(args.state_dir, redis))))
        return 0
    if asyncio.run(revoke_key(args.state_dir, redis, args.key_id)):
        print(f"revoked {args.key_id}: new tokens are refused now; tokens it minted are refused")
        print("by the router within a second and by regions that check revocations (see README).")
        return 0
    print(f"ghostgate: no active key {args.key_id}", file=sys.stderr)
    return 1


async def create_key(state_dir: Path, redis: str | None, user: str) -> tuple[KeyRecord, str]:
    """A new key, in Redis too when given; else `StoreError`, and the local copy revoked."""
    async with open_store(state_dir, redis) as store:
        record, secret = await store.create_key(user)
        try:
            await store.require_durable()
        except StoreError:
            await store.revoke_key(record.key_id)  # nobody will see its secret: retire it
            raise
        return record, secret


async def list_keys(state_dir: Path, redis: str | None) -> list[KeyRecord]:
    async with open_store(state_dir, redis) as store:
        return await store.list_keys()


async def revoke_key(state_dir: Path, redis: str | None, key_id: str) -> bool:
    """Whether `key_id` was active and is revoked now, in Redis too if given (else `StoreError`)."""
    async with open_store(state_dir, redis) as store:
        revoked = await store.revoke_key(key_id)
        await store.require_durable()
        return revoked


async def ensure_key(state_dir: Path, redis: str | None, user: str, previous: str | None) -> str:
    """`previous` if it is still an active key, else a new key for `user` (for `ghostgate up`)."""
    async with open_store(state_dir, redis) as store:
        if previous and await store.find_key(previous) is not None:
            return previous
        return (await store.create_key(user))[1]


def format_keys(records: list[KeyRecord]) -> str:
    if not records:
        return "no API keys (ghostgate keys create USER)"
    rows = [("KEY ID", "USER", "CREATED", "LAST USED", "STATE")]
    for r in sorted(records, key=lambda r: r.created_at):
        state = "active" if r.active else f"revoked {_when(r.revoked_at)}"
        rows.append((r.key_id, r.user, _when(r.created_at), _when(r.last_used_at), state))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def cmd_route(args: argparse.Namespace) -> int:
    router = running_router(args.state_dir)
    try:
        decision, source = (
            (ask_router(router, args.location), f"router {router}")
            if router
            else (local_decision(args.location, args.config), "local estimate")
        )
    except (LocationError, config.ConfigError) as exc:
        print(f"ghostgate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(decision, indent=2))
        return 0
    print(format_decision(decision, source))
    return 0


def running_router(state_dir: Path) -> str | None:
    """The router of `<state-dir>/run.json` if it answers, else None."""
    try:
        info = json.loads((state_dir / "run.json").read_text())
        router = info.get("router")
        if not router:
            return None
        with urllib.request.urlopen(router + "/healthz", timeout=1):
            return str(router)
    except (OSError, ValueError, AttributeError):
        return None


def ask_router(router: str, location: str) -> dict[str, Any]:
    url = f"{router}/v1/route?{urllib.parse.urlencode({'location': location})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        with exc:
            message = json.loads(exc.read()).get("error", {}).get("message", str(exc))
        raise LocationError(message) from None


def local_decision(location: str, config_path: Path | None) -> dict[str, Any]:
    """The decision from the region table alone, every region assumed up and idle."""
    document = read_toml(config_path) if config_path else {}
    regions = config.from_document(document).regions
    states = [RegionState(region, up=True) for region in regions]
    return dict(choose_region(parse_location(location, regions), states).to_dict())


def format_decision(decision: dict[str, Any], source: str) -> str:
    where = decision["location"]
    chosen = decision["region"] or "no region available"
    lines = [
        f"{chosen}  {decision['url'] or ''}".rstrip(),
        f"  why:       {decision['reason']}",
        f"  location:  {where['label']} ({where['kind']}, {where['lat']:.2f},{where['lon']:.2f})",
        f"  decided:   {source}"
        + ("" if source.startswith("router") else " (no router running: health unknown)"),
        "  regions:",
    ]
    for alt in decision["alternatives"]:
        lines.append(
            f"    {alt['name']:<10} {alt['status']:<8} est. RTT {alt['rtt_ms']:7.1f} ms"
            f"  {alt['distance_km']:8.0f} km"
        )
    return "\n".join(lines)
