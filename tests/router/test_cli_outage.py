"""`ghostgate keys create|revoke` with `--redis` succeed only when Redis has the write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import open_store
from run import main
from tests.e2e import free_port
from tests.gateway.store.redis_server import RedisServer


@pytest.fixture(autouse=True)
def no_redis_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GHOSTGATE_REDIS_URL", raising=False)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def created_key_id(out: str) -> str:
    return out.split("(id ")[1].split(")")[0]


def test_revoke_with_redis_away_exits_1_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = ["--state-dir", str(tmp_path)]
    away = ["--redis", f"redis://127.0.0.1:{free_port()}/0"]  # stopped: nothing listens
    assert main(["keys", "create", "alice", *state]) == 0  # in the local SQLite only
    key_id = created_key_id(capsys.readouterr().out)

    assert main(["keys", "revoke", key_id, *state, *away]) == 1
    out, err = capsys.readouterr()
    assert "revoked" not in out
    assert f"{key_id} is revoked only in this host's local copy" in err
    assert "Redis did not take the revocation" in err and "run the command again" in err


def test_create_with_redis_away_exits_1_and_shows_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = ["--state-dir", str(tmp_path)]
    away = ["--redis", f"redis://127.0.0.1:{free_port()}/0"]
    assert main(["keys", "create", "alice", *state, *away]) == 1
    out, err = capsys.readouterr()
    assert "gg_" not in out and "gg_" not in err
    assert "no key created: Redis did not take it" in err
    assert main(["keys", "list", *state]) == 0
    assert "revoked 20" in capsys.readouterr().out  # the local copy, retired


def test_create_and_revoke_with_redis_up(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = ["--state-dir", str(tmp_path)]
    shared = ["--redis", redis_server.url]
    assert main(["keys", "create", "alice", *state, *shared]) == 0
    key_id = created_key_id(capsys.readouterr().out)
    assert main(["keys", "revoke", key_id, *state, *shared]) == 0
    assert f"revoked {key_id}" in capsys.readouterr().out

    async def revoked_in_redis() -> frozenset[str]:
        async with open_store(None, redis_server.url) as store:
            return (await store.revocations()).keys

    assert key_id in asyncio.run(revoked_in_redis())


def test_the_router_keeps_its_revocations_in_its_state_dir(tmp_path: Path) -> None:
    from router.services import RouterServices
    from router.settings import RouterSettings

    services = RouterServices.build(RouterSettings(state_dir=tmp_path))
    assert services.revocations.path == tmp_path / "revocations.json"
    assert not (tmp_path / "revocations.json").exists()  # written by the lifespan only
