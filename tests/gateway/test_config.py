from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway import config
from gateway.settings import BackendSpec


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_override_toml_and_env(tmp_path: Path) -> None:
    toml = tmp_path / "g.toml"
    toml.write_text(
        '[gateway]\nregion = "eu-west"\n'
        "[gateway.limits]\nmax_body_bytes = 2048\nqueue_wait_completion = 0.5\n"
        '[[gateway.backends]]\nurl = "http://10.0.0.1:11434"\nslots = 2\n'
    )
    settings = config.load(parse("--config", str(toml), "--port", "9000"), environ={})
    assert settings.region == "eu-west" and settings.server.port == 9000
    assert settings.limits.max_body_bytes == 2048 and settings.limits.queue_wait_completion == 0.5
    assert settings.backends == (BackendSpec("http://10.0.0.1:11434", 2),)
    env = {"GHOSTGATE_REGION": "ap-east", "GHOSTGATE_BACKENDS": "http://a:1, http://b:2#8"}
    settings = config.load(parse("--config", str(toml)), environ=env)
    assert settings.region == "ap-east"
    assert settings.backends == (BackendSpec("http://a:1", 4), BackendSpec("http://b:2", 8))
    settings = config.load(
        parse("--config", str(toml), "--region", "x", "--backend", "http://c:3", "--slots", "1"),
        environ=env,
    )
    assert settings.region == "x" and settings.backends == (BackendSpec("http://c:3", 1),)


def test_state_dir_supplies_public_keys(tmp_path: Path) -> None:
    from gateway.auth.keys import SigningKeys

    SigningKeys.load_or_create(tmp_path)
    settings = config.load(parse("--state-dir", str(tmp_path)), environ={})
    assert len(settings.auth.public_key_files) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gateway]\nnope = 1\n", "unknown setting gateway.nope"),
        ("[gateway.limits]\nqueue_size = 'big'\n", "gateway.limits.queue_size must be a number"),
        ("[gateway.server]\nwat = 1\n", "unknown setting gateway.server.wat"),
        ("[[gateway.backends]]\nslots = 1\n", "needs a url"),
        ("[gateway\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_value(tmp_path: Path, text: str, message: str) -> None:
    toml = tmp_path / "g.toml"
    toml.write_text(text)
    with pytest.raises(config.ConfigError, match=message):
        config.load(parse("--config", str(toml)), environ={})


@pytest.mark.parametrize("bad", ["localhost:11434", "http://x#many", "http://x#0"])
def test_bad_backend_urls(bad: str) -> None:
    with pytest.raises(config.ConfigError):
        config.parse_backend(bad)


def test_model_table_from_toml(tmp_path: Path) -> None:
    toml = tmp_path / "g.toml"
    toml.write_text(
        '[gateway.models]\ncompletion = "starcoder2:3b"\ncontext_tokens = 8192\n'
        '[gateway.models.aliases]\n"copilot-codex" = "starcoder2:3b"\n'
        '[gateway.models.fim]\n"my-coder:7b" = "starcoder"\n'
        '"odd:1b" = {template = "<A>{prefix}<B>{suffix}<C>", stop = ["<END>"]}\n'
    )
    models = config.load(parse("--config", str(toml)), environ={}).models
    assert models.completion == "starcoder2:3b" and models.chat is None
    assert models.context_tokens == 8192 and models.aliases["copilot-codex"] == "starcoder2:3b"
    assert models.fim["my-coder:7b"].family == "starcoder"
    assert models.fim["odd:1b"].stop == ("<END>",)


def test_unknown_fim_family_is_a_config_error(tmp_path: Path) -> None:
    toml = tmp_path / "g.toml"
    toml.write_text('[gateway.models.fim]\n"x:1b" = "no-such-family"\n')
    with pytest.raises(config.ConfigError, match="x:1b"):
        config.load(parse("--config", str(toml)), environ={})
