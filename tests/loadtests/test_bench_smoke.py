"""`python -m loadtests.bench --smoke`: every path measured, nothing failed, files written.

Seconds of load on a shared CI machine: no target is asserted here, only that
the harness measures what it says it does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent.parent


def test_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        # LiteLLM (when installed) takes longer to start than this whole run.
        [sys.executable, "-m", "loadtests.bench", "--smoke", "--no-litellm", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads((out / "bench.json").read_text())
    paths = {"direct", "region", "router"} | (
        {"nginx"} if "nginx" not in result["skipped"] else set()
    )
    assert {run["path"] for run in result["runs"]} == paths
    for run in result["runs"]:
        assert run["failed"] == 0 and run["h2load_failed"] == 0, run
        assert run["requests_per_second"] > 0 and run["ttft_p50_ms"] > 0, run
        assert 15 < run["gap_p50_ms"] < 40, run  # tokens 20 ms apart
    for row in result["cancel"]:
        assert row["backend_closed"] == row["cancels"] > 0, row  # every cancel reached it
    [long] = result["long_connection"]
    assert long["succeeded"] == long["requests"] and long["connections_opened"] == 1
    text = (out / "bench.md").read_text()
    assert "| target | measured | met |" in text and "cores" in text
    assert (out / "bench.png").exists()
