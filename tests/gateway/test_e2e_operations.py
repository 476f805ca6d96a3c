"""/readyz and /metrics of a real region process: what a probe of its public port
learns, with and without an operations port (gateway/operations.py)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import Region, free_port, get_json, readyz, region

pytestmark = pytest.mark.e2e

MINIMAL = {"ready", "draining", "simulated", "inflight", "queued", "capacity", "waste"}


@pytest.fixture(scope="module")
def one_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    with region(tmp_path_factory.mktemp("one-port")) as reg:
        yield reg


@pytest.fixture(scope="module")
def two_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Region, str]]:
    port = free_port()
    with region(
        tmp_path_factory.mktemp("two-ports"), region_args=["--operations-port", str(port)]
    ) as reg:
        yield reg, f"http://127.0.0.1:{port}"


def status_of(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def assert_minimal(report: dict[str, Any], reg: Region) -> None:
    assert set(report) == MINIMAL and report["ready"] is True and report["capacity"] == 4
    text = repr(report)
    assert reg.sims[0].url not in text and "127.0.0.1" not in text
    assert "starcoder2" not in text and "deepseek" not in text  # no model names


def test_a_probe_without_a_token_learns_only_what_the_router_reads(one_port: Region) -> None:
    assert_minimal(readyz(one_port.url), one_port)
    assert_minimal(readyz(one_port.url, one_port.auth()), one_port)  # an editor's token
    assert_minimal(readyz(one_port.url, {"Authorization": "Bearer x.y.z"}), one_port)


def test_an_admin_token_reads_the_full_report(one_port: Region) -> None:
    report = one_port.readyz(admin=True)
    assert MINIMAL < set(report) and report["region"] == "test-region"
    assert [b["url"] for b in report["backends"]["detail"]] == [one_port.sims[0].url]
    assert report["backends"]["detail"][0]["models"]
    assert status_of(one_port.url + "/metrics")[0] == 200  # scraped here by default


def test_with_an_operations_port_the_full_report_is_there_only(
    two_ports: tuple[Region, str],
) -> None:
    reg, operations = two_ports
    assert_minimal(reg.readyz(admin=True), reg)  # even with an admin token
    status, body = status_of(reg.url + "/metrics")
    assert status == 404 and b"ghostgate_" not in body
    report = get_json(operations + "/readyz")
    assert [b["url"] for b in report["backends"]["detail"]] == [reg.sims[0].url]
    status, body = status_of(operations + "/metrics")
    assert status == 200 and b"ghostgate_requests_total" in body
    assert get_json(operations + "/healthz")["status"] == "alive"
    # No API route on the operations port, token or not.
    assert status_of(operations + "/api/tags", reg.auth())[0] == 404
    assert status_of(reg.url + "/api/tags", reg.auth())[0] == 200
