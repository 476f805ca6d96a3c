from __future__ import annotations

import json
from pathlib import Path

from router.cluster import RegionPlan, banner, run_info, write_run_json


def test_run_json_is_private_and_complete(tmp_path: Path) -> None:
    plans = [
        RegionPlan("us-west", "127.0.0.1", 8000, ("http://127.0.0.1:1",)),
        RegionPlan("eu-west", "::1", 8002, ("http://127.0.0.1:2",)),
    ]
    info = run_info(plans, "sim", router="http://127.0.0.1:8080", api_key="gg_x")
    path = write_run_json(tmp_path, info)
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert data == {
        "router": "http://127.0.0.1:8080",
        "regions": {"us-west": "http://127.0.0.1:8000", "eu-west": "http://[::1]:8002"},
        "api_key": "gg_x",
        "backend": "sim",
        "backends": {"us-west": ["http://127.0.0.1:1"], "eu-west": ["http://127.0.0.1:2"]},
    }


def test_region_command_and_banner(tmp_path: Path) -> None:
    plan = RegionPlan("us-west", "127.0.0.1", 8000, ("http://127.0.0.1:1",), slots=2)
    argv = plan.command("python", tmp_path, simulated=True)
    assert argv[:3] == ["python", "-m", "gateway"]
    assert "--simulated" in argv and argv[argv.index("--backend") + 1] == "http://127.0.0.1:1"
    text = banner(run_info([plan], "sim"), "TOKEN123", tmp_path, tmp_path / "logs")
    assert "SIMULATED" in text and "TOKEN123" in text and "http://127.0.0.1:8000" in text
    assert "SIMULATED" not in banner(run_info([plan], "ollama"), "T", tmp_path, tmp_path)
