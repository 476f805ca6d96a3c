"""`ghostgate keys` and `ghostgate route`, and the cluster plan's router parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router.cli import format_keys, local_decision, running_router
from router.cluster import RegionPlan, banner, previous_api_key, router_command, run_info
from run import main


def test_keys_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = ["--state-dir", str(tmp_path)]
    assert main(["keys", "create", "alice", *state]) == 0
    created = capsys.readouterr().out
    secret = next(word for word in created.split() if word.startswith("gg_"))
    key_id = created.split("(id ")[1].split(")")[0]
    assert main(["keys", "list", *state]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "alice" in listing and "active" in listing
    assert secret not in listing  # shown once, never again
    assert main(["keys", "revoke", key_id, *state]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "revoke", key_id, *state]) == 1
    main(["keys", "list", *state])
    assert "revoked 20" in capsys.readouterr().out


def test_route_without_a_router_decides_locally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert running_router(tmp_path) is None
    assert main(["route", "--location", "SG", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ap-east") and "local estimate" in out
    assert main(["route", "--location", "atlantis", "--state-dir", str(tmp_path)]) == 2
    decision = local_decision("48.85,2.35", None)
    assert decision["region"] == "eu-west" and len(decision["alternatives"]) == 4
    (tmp_path / "run.json").write_text(json.dumps({"router": "http://127.0.0.1:9"}))
    assert running_router(tmp_path) is None  # recorded but not answering


def test_format_keys_when_there_are_none() -> None:
    assert "ghostgate keys create" in format_keys([])


def test_router_and_region_commands() -> None:
    plans = [RegionPlan("us-west", "127.0.0.1", 8000, ("http://b:1",))]
    argv = router_command("py", "127.0.0.1", 8080, Path("s"), plans, "redis://r", True)
    assert argv[:3] == ["py", "-m", "router"]
    assert argv[argv.index("--region") + 1] == "us-west=http://127.0.0.1:8000"
    assert "--wan-latency" in argv and argv[argv.index("--redis") + 1] == "redis://r"
    region = plans[0].command("py", Path("s"), True, jwks="http://r/.well-known/jwks.json")
    assert region[region.index("--jwks") + 1] == "http://r/.well-known/jwks.json"
    assert "--jwks" not in plans[0].command("py", Path("s"), True)


def test_banner_with_a_router_shows_key_and_editor_setup(tmp_path: Path) -> None:
    plans = [RegionPlan("us-west", "127.0.0.1", 8000, ("http://b:1",))]
    info = run_info(plans, "sim", router="http://127.0.0.1:8080", api_key="gg_KEY")
    text = banner(info, "TOKEN", tmp_path, tmp_path / "logs")
    for fragment in (
        "router     http://127.0.0.1:8080",
        "gg_KEY",
        "/v1/token",
        "apiBase: http://127.0.0.1:8080",
        '"debug.overrideProxyUrl": "http://127.0.0.1:8080"',
        "/copilot_internal/v2/token",
    ):
        assert fragment in text, fragment


def test_previous_api_key(tmp_path: Path) -> None:
    assert previous_api_key(tmp_path) is None
    (tmp_path / "run.json").write_text(json.dumps({"api_key": "gg_x"}))
    assert previous_api_key(tmp_path) == "gg_x"
    (tmp_path / "run.json").write_text("[")
    assert previous_api_key(tmp_path) is None
