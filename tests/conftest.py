"""Shared pytest configuration: async tests run on asyncio through anyio's plugin."""

from __future__ import annotations

import pytest

from gateway.server import patches


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def library_patches() -> None:
    """Every process that serves runs patched (gateway/server/serve.py), so the
    in-process servers and clients of the tests do too."""
    patches.apply()
