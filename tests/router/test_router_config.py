"""Router settings from flags and TOML: every key checked, cross-field checks at start-up."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from router import config
from router.regions import DEFAULT_REGIONS


def parse(argv: list[str], environ: dict[str, str] | None = None) -> config.RouterSettings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.load(parser.parse_args(argv), environ or {})


def test_defaults_are_the_local_cluster() -> None:
    settings = parse([])
    assert settings.regions == DEFAULT_REGIONS and settings.port == 8080
    assert settings.url == "http://127.0.0.1:8080" and settings.default.name == "us-west"
    assert settings.redis_url is None and not settings.forward.wan_latency


def test_flags_replace_the_region_table_keeping_coordinates() -> None:
    regions = ["--region", "eu-west=http://10.0.0.2:8002", "--region", "ap-east=https://ap.example"]
    settings = parse(
        [*regions, "--wan-latency", "--public-url", "https://router.example/", "--port", "9000"]
    )
    assert [(r.name, r.url) for r in settings.regions] == [
        ("eu-west", "http://10.0.0.2:8002"),
        ("ap-east", "https://ap.example"),
    ]
    assert settings.regions[0].lat == DEFAULT_REGIONS[2].lat
    assert settings.forward.wan_latency and settings.url == "https://router.example"
    assert settings.default.name == "eu-west"


def test_redis_from_the_environment_unless_a_flag_says_otherwise() -> None:
    assert parse([], {"GHOSTGATE_REDIS_URL": "redis://a"}).redis_url == "redis://a"
    assert parse(["--redis", "redis://b"], {"GHOSTGATE_REDIS_URL": "redis://a"}).redis_url == (
        "redis://b"
    )


def test_toml_tables(tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    path.write_text(
        """
[router]
port = 8443
default_region = "hq"
[router.cidr]
"10.1.0.0/16" = "DE"
[router.policy]
load_penalty_ms = 10
[router.tokens]
lifetime = 900
[[regions]]
name = "hq"
url = "http://hq:8000"
lat = 1.0
lon = 2.0
area = "eu"
"""
    )
    settings = parse(["--config", str(path)])
    assert settings.port == 8443 and settings.default.name == "hq"
    assert settings.cidr == (("10.1.0.0/16", "DE"),)
    assert settings.policy.load_penalty_ms == 10.0 and settings.tokens.lifetime == 900.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[router]\nnope = 1", "unknown setting router.nope"),
        ("[router.tokens]\nlifetime = 7200", "token lifetime"),
        ("[router.tokens]\nlifetime = 'long'", "must be a float"),
        ("[router.forward]\nwan_latency = 1", "must be a bool"),
        ('[router.cidr]\n"10.1.2.3/16" = "DE"', "bad network"),
        ('[router.cidr]\n"10.0.0.0/8" = "atlantis"', "unknown location"),
        ("[router]\ndefault_region = 'mars'", "default_region"),
        ("[router.policy]\nmax_queued = 0", "max_queued"),
        ("[router.probes]\ntimeout = 5.0", "probes.timeout"),
    ],
)
def test_bad_settings_fail_at_start_up(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "router.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=fragment):
        parse(["--config", str(path)])


def test_an_unknown_region_flag_names_the_known_ones() -> None:
    with pytest.raises(config.ConfigError, match="us-west, us-east"):
        parse(["--region", "mars=http://x:1"])
    with pytest.raises(config.ConfigError, match="url must be"):
        parse(["--region", "us-west=ftp://x"])
