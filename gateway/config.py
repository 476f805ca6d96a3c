"""Building `GatewaySettings` from flags, environment and an optional TOML file.

The one module that reads `os.environ` for the gateway. Precedence, lowest
first: built-in defaults, the TOML file's `[gateway]` table, `GHOSTGATE_*`
environment variables, command-line flags.

TOML layout (every table optional):

    [gateway]
    region = "us-west"
    [gateway.server]      host, port, certfile, keyfile, keep_alive_timeout, ...
    [gateway.limits]      max_body_bytes, queue_size, queue_wait_completion, ...
    [gateway.timeouts]    connect, read
    [gateway.health]      interval, timeout
    [gateway.auth]        public_key_files, jwks_url, jwks_refresh, issuer, audience, ...
    [[gateway.backends]]  url, slots
    [gateway.waste]       supersede, implicit_groups, cache, cache_ttl, typing_through
    [gateway.models]      completion, chat, context_tokens
    [gateway.store]       write_retries, write_backoff, replay_limit (Redis outages)
    [gateway.models.aliases]   "copilot-codex" = "starcoder2:3b"
    [gateway.models.fim]       "my-coder:7b" = "starcoder"   (or {template = "...", stop = [...]})
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from gateway.completion import custom_family, family_by_name
from gateway.settings import (
    DEFAULT_SLOTS,
    AuthSettings,
    BackendSpec,
    FimOverride,
    GatewaySettings,
    HealthSettings,
    Limits,
    ModelSettings,
    ServerSettings,
    StoreSettings,
    Timeouts,
    WasteSettings,
)

G = TypeVar("G")
_GROUPS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "limits": Limits,
    "timeouts": Timeouts,
    "health": HealthSettings,
    "auth": AuthSettings,
    "waste": WasteSettings,
    "store": StoreSettings,
}


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which value and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The region process's flags (also used by `ghostgate up` for each region)."""
    parser.add_argument("--config", type=Path, help="TOML file with a [gateway] table")
    parser.add_argument("--region", help="this region's name (default: local)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000)")
    parser.add_argument(
        "--operations-port",
        type=int,
        metavar="PORT",
        help="serve /healthz, /readyz (in full) and /metrics here, not on --port (default: none)",
    )
    parser.add_argument(
        "--operations-host", help="the operations port's address (default 127.0.0.1)"
    )
    parser.add_argument(
        "--backend",
        action="append",
        metavar="URL",
        help="an Ollama server (repeatable); URL#SLOTS sets its parallel slots",
    )
    parser.add_argument("--slots", type=int, help="parallel generations per backend (default 4)")
    parser.add_argument("--state-dir", type=Path, help="read public keys from STATE_DIR/keys")
    parser.add_argument(
        "--public-key",
        action="append",
        type=Path,
        metavar="PEM",
        help="a token verification key (repeatable)",
    )
    parser.add_argument(
        "--jwks", metavar="URL", help="also trust the keys of this JWKS (the router's), refreshed"
    )
    parser.add_argument("--certfile", type=Path, help="TLS certificate (enables HTTPS, h2 by ALPN)")
    parser.add_argument("--keyfile", type=Path, help="TLS private key")
    parser.add_argument("--max-body-bytes", type=int, help="request body limit (default 1 MiB)")
    parser.add_argument("--queue-size", type=int, help="max requests waiting for a slot")
    parser.add_argument(
        "--queue-per-user",
        type=int,
        metavar="N",
        help="requests one user may have waiting for a slot (default 8, 0 = off)",
    )
    parser.add_argument(
        "--user-slot-share",
        type=float,
        metavar="F",
        help="share of the slots a user may hold while others wait (default 0.5, 1 = off)",
    )
    parser.add_argument(
        "--simulated",
        action="store_true",
        default=None,
        help="label this region's backends as simulated",
    )
    parser.add_argument("--log-level", help="debug, info, warning, error")
    parser.add_argument(
        "--redis", metavar="URL", help="shared state in Redis (keys, revocations, limits, cache)"
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        metavar="N",
        help="requests per minute per user (default 600, 0 = off)",
    )
    parser.add_argument(
        "--max-streams",
        type=int,
        metavar="N",
        help="concurrent generations per user (default 16, 0 = off)",
    )
    parser.add_argument(
        "--no-supersede",
        action="store_true",
        help="never cancel a request because a newer one of its group came",
    )
    parser.add_argument(
        "--no-implicit-groups",
        action="store_true",
        help="group only requests that send X-Ghostgate-Group",
    )
    parser.add_argument("--no-cache", action="store_true", help="no completion cache")
    parser.add_argument(
        "--no-typing-through",
        action="store_true",
        help="never answer from the previous completion of the group",
    )


def load(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> GatewaySettings:
    """Settings from parsed flags, the environment and the TOML file they name."""
    env = os.environ if environ is None else environ
    config_path = args.config or _env_path(env, "GHOSTGATE_CONFIG")
    table = read_toml(config_path).get("gateway", {}) if config_path else {}
    settings = from_table(table)
    settings = _apply_env(settings, env)
    return _apply_flags(settings, args)


def servable(settings: GatewaySettings) -> GatewaySettings:
    """`settings`, if a region can serve with them: it needs a backend, and a key to
    verify tokens with; else `ConfigError`. Kept out of `load`, which also builds
    settings that are not meant to serve on their own (the tests')."""
    if not settings.backends:
        raise ConfigError("no backend given (--backend URL)")
    if not settings.auth.public_key_files and not settings.auth.jwks_url:
        raise ConfigError("no token verification key (--state-dir, --public-key or --jwks)")
    check_server(settings.server)
    return settings


def check_server(server: ServerSettings) -> ServerSettings:
    """`server`, if its ports can be told apart; else `ConfigError`. The operations
    port is recognised by its number (gateway/operations.py), so it must not be
    the public one's."""
    port = server.operations_port
    if port and not 0 < port < 65536:
        raise ConfigError(f"operations_port {port} is not a TCP port")
    if port and port == server.port:
        raise ConfigError(f"operations_port {port} must differ from port")
    return server


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file at `path`; `ConfigError` when it cannot be read or parsed."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def from_table(table: Mapping[str, Any]) -> GatewaySettings:
    """Settings from a `[gateway]` TOML table, every key checked."""
    settings = GatewaySettings()
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key in _GROUPS:
            changes[key] = _group(getattr(settings, key), value, f"gateway.{key}")
        elif key == "backends":
            changes[key] = tuple(_backend(entry) for entry in value)
        elif key == "models":
            changes[key] = _models(value)
        elif key in ("region", "simulated", "log_level", "redis_url"):
            changes[key] = value
        else:
            raise ConfigError(f"unknown setting gateway.{key}")
    return dataclasses.replace(settings, **changes)


def parse_backend(text: str, slots: int | None = None) -> BackendSpec:
    """`http://host:port` or `http://host:port#SLOTS`."""
    url, _, count = text.partition("#")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"backend {text!r} must be an http:// or https:// URL")
    if count and not count.isdigit():
        raise ConfigError(f"backend {text!r}: slots after '#' must be a number")
    n = int(count) if count else (slots or DEFAULT_SLOTS)
    if n < 1:
        raise ConfigError(f"backend {text!r} needs at least one slot")
    return BackendSpec(url=url.rstrip("/"), slots=n)


def _group(current: G, values: Any, where: str) -> G:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table")
    fields = {f.name: f for f in dataclasses.fields(current)}  # type: ignore[arg-type]
    for key in values:
        if key not in fields:
            raise ConfigError(f"unknown setting {where}.{key}")
    coerced = {k: _coerce(getattr(current, k), v, f"{where}.{k}") for k, v in values.items()}
    return dataclasses.replace(current, **coerced)  # type: ignore[type-var]


def _coerce(default: Any, value: Any, where: str) -> Any:
    if isinstance(default, bool) or isinstance(default, str):
        if not isinstance(value, type(default)):
            raise ConfigError(f"{where} must be a {type(default).__name__}")
        return value
    if isinstance(default, int | float) and not isinstance(value, bool):
        if not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number")
        return type(default)(value)
    if isinstance(default, tuple):
        return tuple(Path(v) for v in value)
    if default is None or isinstance(default, Path):
        return Path(value)
    return value


def _models(table: Any) -> ModelSettings:
    if not isinstance(table, dict):
        raise ConfigError("gateway.models must be a table")
    values = dict(table)
    aliases = values.pop("aliases", {})
    fim = values.pop("fim", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise ConfigError("gateway.models.aliases maps names to model names")
    if not isinstance(fim, dict):
        raise ConfigError("gateway.models.fim must be a table")
    base = _group(ModelSettings(completion="", chat=""), values, "gateway.models")
    return dataclasses.replace(
        base,
        completion=base.completion or None,
        chat=base.chat or None,
        aliases=MappingProxyType(dict(aliases)),
        fim=MappingProxyType({str(k): _fim(k, v) for k, v in fim.items()}),
    )


def _fim(model: str, value: Any) -> FimOverride:
    where = f"gateway.models.fim.{model}"
    if isinstance(value, str):
        try:
            family_by_name(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return FimOverride(family=value)
    if not isinstance(value, dict) or not isinstance(value.get("template"), str):
        raise ConfigError(f"{where} must be a family name or {{template = ..., stop = [...]}}")
    stop = value.get("stop", [])
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ConfigError(f"{where}.stop must be a list of strings")
    try:
        custom_family(value["template"], stop)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return FimOverride(template=value["template"], stop=tuple(stop))


def _backend(entry: Any) -> BackendSpec:
    if isinstance(entry, str):
        return parse_backend(entry)
    if not isinstance(entry, dict) or "url" not in entry:
        raise ConfigError("each [[gateway.backends]] needs a url")
    return parse_backend(str(entry["url"]), int(entry.get("slots", DEFAULT_SLOTS)))


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name)
    return Path(value) if value else None


def _apply_env(settings: GatewaySettings, env: Mapping[str, str]) -> GatewaySettings:
    changes: dict[str, Any] = {}
    if env.get("GHOSTGATE_REGION"):
        changes["region"] = env["GHOSTGATE_REGION"]
    if env.get("GHOSTGATE_BACKENDS"):
        changes["backends"] = tuple(
            parse_backend(u.strip()) for u in env["GHOSTGATE_BACKENDS"].split(",") if u.strip()
        )
    if env.get("GHOSTGATE_REDIS_URL"):
        changes["redis_url"] = env["GHOSTGATE_REDIS_URL"]
    if env.get("GHOSTGATE_LOG_LEVEL"):
        changes["log_level"] = env["GHOSTGATE_LOG_LEVEL"]
    return dataclasses.replace(settings, **changes)


def _apply_flags(settings: GatewaySettings, args: argparse.Namespace) -> GatewaySettings:
    server = _replace_given(
        settings.server,
        host=args.host,
        port=args.port,
        operations_port=getattr(args, "operations_port", None),
        operations_host=getattr(args, "operations_host", None),
        certfile=args.certfile,
        keyfile=args.keyfile,
    )
    limits = _replace_given(
        settings.limits,
        max_body_bytes=args.max_body_bytes,
        queue_size=args.queue_size,
        user_requests_per_minute=getattr(args, "rate_limit", None),
        user_streams=getattr(args, "max_streams", None),
        queue_per_user=getattr(args, "queue_per_user", None),
        user_slot_share=getattr(args, "user_slot_share", None),
    )
    keys = list(settings.auth.public_key_files) + list(args.public_key or [])
    if args.state_dir is not None:
        keys.extend(sorted((args.state_dir / "keys").glob("*.pub.pem")))
    auth = dataclasses.replace(settings.auth, public_key_files=tuple(keys))
    if args.jwks:
        auth = dataclasses.replace(auth, jwks_url=args.jwks)
    backends: Sequence[BackendSpec] = settings.backends
    if args.backend:
        backends = tuple(parse_backend(b, args.slots) for b in args.backend)
    elif args.slots:
        backends = tuple(dataclasses.replace(b, slots=args.slots) for b in backends)
    waste = settings.waste
    waste = dataclasses.replace(
        waste,
        supersede=waste.supersede and not getattr(args, "no_supersede", False),
        implicit_groups=waste.implicit_groups and not getattr(args, "no_implicit_groups", False),
        cache=waste.cache and not getattr(args, "no_cache", False),
        typing_through=waste.typing_through and not getattr(args, "no_typing_through", False),
    )
    return dataclasses.replace(
        settings,
        waste=waste,
        state_dir=args.state_dir or settings.state_dir,
        redis_url=getattr(args, "redis", None) or settings.redis_url,
        region=args.region or settings.region,
        backends=tuple(backends),
        simulated=settings.simulated if args.simulated is None else args.simulated,
        log_level=args.log_level or settings.log_level,
        server=server,
        limits=limits,
        auth=auth,
    )


def _replace_given(group: G, **values: Any) -> G:
    given = {k: v for k, v in values.items() if v is not None}
    return dataclasses.replace(group, **given) if given else group  # type: ignore[type-var]
