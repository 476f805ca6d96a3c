"""Shared pytest configuration: async tests run on asyncio through anyio's plugin."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

from gateway.server import patches

# Hypothesis profiles for tests/fuzz. "ci", the default, is what `make test` runs:
# a few hundred cases in all, derandomized so CI is reproducible, and not shrunk
# (each case is a live request: shrinking one failure takes minutes). "fuzz"
# (`pytest --hypothesis-profile=fuzz`, `make fuzz`) scales every fuzz test's
# share of cases (tests/fuzz/shares.py) to at least 10,000 in all, random.
# Neither keeps an example database, so the work tree stays clean: a failure
# prints its example instead ("fuzz" shrinks it first, and adds a
# `@reproduce_failure` blob to replay it).
# The fuzz tests check the live stack after all of a test's cases, through a
# function-scoped fixture: on purpose, not once per case.
_FUZZ_HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.function_scoped_fixture,
]
settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
    suppress_health_check=_FUZZ_HEALTH,
)
settings.register_profile(
    "fuzz",
    max_examples=850,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_FUZZ_HEALTH,
)
settings.load_profile(os.environ.get("GHOSTGATE_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def library_patches() -> None:
    """Every process that serves runs patched (gateway/server/serve.py), so the
    in-process servers and clients of the tests do too."""
    patches.apply()
