"""Building a process's services only wires: every file, dir, socket and task
is made in the lifespan (`running`), never by `build`."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from gateway.app import create_app as create_region
from gateway.settings import AuthSettings, BackendSpec, GatewaySettings
from router.app import create_app as create_router
from router.settings import RouterSettings


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


@pytest.mark.anyio
async def test_building_a_region_or_router_touches_no_file_and_starts_no_task(
    tmp_path: Path, private_tmp: Path
) -> None:
    state = tmp_path / "state"
    tasks = len(asyncio.all_tasks())
    region = GatewaySettings(
        backends=(BackendSpec("http://127.0.0.1:9"),),
        # Read by the lifespan: a missing file must not fail the build.
        auth=AuthSettings(public_key_files=(state / "missing.pub.pem",)),
    )
    create_region(region)
    create_region(GatewaySettings(backends=region.backends, state_dir=state))
    create_router(RouterSettings(state_dir=state))
    assert not state.exists()  # no keys, no SQLite file, no dirs
    assert list(private_tmp.iterdir()) == []  # no temporary dirs either
    assert len(asyncio.all_tasks()) == tasks
