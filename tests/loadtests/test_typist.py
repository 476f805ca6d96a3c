"""The locust scenario's plain parts: where the API key comes from, token grants,
the typing model, and how a stream's last line names its outcome."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from loadtests.typist import (
    CODE,
    MissingKey,
    api_key,
    outcome_of,
    parse_grant,
    typing_burst,
)


def test_api_key_from_the_environment_first(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"api_key": "gg_file"}))
    env = {"GHOSTGATE_API_KEY": "gg_env", "GHOSTGATE_STATE_DIR": str(tmp_path)}
    assert api_key(env) == "gg_env"


def test_api_key_from_run_json_in_the_state_dir(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"router": "x", "api_key": "gg_file"}))
    assert api_key({"GHOSTGATE_STATE_DIR": str(tmp_path)}) == "gg_file"


@pytest.mark.parametrize("content", [None, "not json", json.dumps({"api_key": None})])
def test_no_api_key_says_how_to_get_one(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "run.json").write_text(content)
    with pytest.raises(MissingKey) as caught:
        api_key({"GHOSTGATE_STATE_DIR": str(tmp_path)})
    assert "run.json" in str(caught.value)


def test_grant_refreshes_after_refresh_in_and_hides_its_token() -> None:
    payload = {
        "token": "eyJ.secret.sig",
        "expires_at": 2_000_000_000,
        "refresh_in": 300,
        "region": "eu-west",
        "endpoints": {"proxy": "http://127.0.0.1:8002", "api": "http://127.0.0.1:8080"},
    }
    grant = parse_grant(payload, now=100.0)
    assert (grant.region, grant.proxy) == ("eu-west", "http://127.0.0.1:8002")
    assert not grant.due(399.9) and grant.due(400.0)
    assert "secret" not in repr(grant)


def test_a_burst_is_keystrokes_then_a_pause() -> None:
    rng = random.Random(7)
    for _ in range(50):
        burst = typing_burst(rng, CODE, position=len(CODE) - 1)
        assert 3 <= len(burst) <= 12
        assert all(0.06 <= k.gap <= 0.18 for k in burst[:-1])
        assert 0.4 <= burst[-1].gap <= 1.5
        assert burst[1].text == CODE[0]  # wraps around the source text


def test_outcome_from_the_last_line() -> None:
    superseded = b'{"response":"x","done":false}\n{"done":true,"done_reason":"superseded"}\n'
    assert outcome_of(superseded) == "superseded"
    assert outcome_of(b'{"done":true,"done_reason":"stop"}\n') == "completed"
    assert outcome_of(b"cut mid-li") == "completed"
