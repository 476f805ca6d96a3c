"""How records and messages are written into Redis and read back out of it."""

from __future__ import annotations

import json
from collections.abc import Mapping

from redis.typing import EncodableT

from gateway.store.base import KeyRecord, Payload, StoreCorrupted

CANCEL_PREFIX = "ghostgate:cancel:"


def cancel_channel(instance: str) -> str:
    return CANCEL_PREFIX + instance


def text(value: object) -> str:
    """A Redis reply (bytes, as this client does not decode) as text."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise StoreCorrupted(f"unexpected Redis reply {type(value).__name__}")


def key_fields(record: KeyRecord) -> dict[EncodableT, EncodableT]:
    """A key record as the fields of its hash; absent times are absent fields."""
    fields: dict[EncodableT, EncodableT] = {
        "key_id": record.key_id,
        "user": record.user,
        "created_at": repr(record.created_at),
    }
    if record.revoked_at is not None:
        fields["revoked_at"] = repr(record.revoked_at)
    if record.last_used_at is not None:
        fields["last_used_at"] = repr(record.last_used_at)
    return fields


def parse_key(fields: Mapping[bytes | str, bytes | str] | object) -> KeyRecord | None:
    """The record in a key hash, or None when there is no such hash."""
    if not isinstance(fields, Mapping) or not fields:
        return None
    values = {text(name): text(value) for name, value in fields.items()}
    try:
        return KeyRecord(
            key_id=values["key_id"],
            user=values["user"],
            created_at=float(values["created_at"]),
            revoked_at=_time(values.get("revoked_at")),
            last_used_at=_time(values.get("last_used_at")),
        )
    except (KeyError, ValueError) as exc:
        raise StoreCorrupted(f"malformed key record in Redis: {exc!r}") from exc


def decode_payload(value: object) -> Payload | None:
    """A JSON object published by another instance; None for anything else (dropped)."""
    if not isinstance(value, bytes | str):
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _time(value: str | None) -> float | None:
    return None if value is None else float(value)
