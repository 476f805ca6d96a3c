"""The router with an operations port, in front of a real region: its public
/readyz is minimal, and its probes still see the region ready, with its load and
savings, from the region's minimal /readyz."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import free_port, get_json
from tests.router.harness import Cluster, cluster, request_json

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    port = free_port()
    tmp: Path = tmp_path_factory.mktemp("operations")
    with cluster(tmp, names=("eu-west",), router_args=["--operations-port", str(port)]) as c:
        yield c, f"http://127.0.0.1:{port}"


def test_the_routers_public_readyz_is_minimal(gg: tuple[Cluster, str]) -> None:
    router, _ = gg
    status, report, _ = request_json("GET", router.url + "/readyz", router.admin_auth())
    assert status == 200 and report == {"ready": True, "draining": False, "regions_up": ["eu-west"]}
    try:
        urllib.request.urlopen(router.url + "/metrics", timeout=5)
    except urllib.error.HTTPError as exc:
        with exc:
            assert exc.code == 404
    else:
        raise AssertionError("/metrics served on the public port")


def test_the_operations_port_has_the_full_report(gg: tuple[Cluster, str]) -> None:
    _, operations = gg
    report = get_json(operations + "/readyz")
    assert report["regions_up"] == ["eu-west"] and report["signing_kid"]
    with urllib.request.urlopen(operations + "/metrics", timeout=5) as response:
        assert b'ghostgate_region_up{region="eu-west"} 1.0' in response.read()


def test_the_probes_still_read_load_and_savings(gg: tuple[Cluster, str]) -> None:
    router, _ = gg
    status = get_json(router.url + "/v1/status?location=eu")
    (region,) = status["regions"]
    assert region["up"] and region["simulated"] and region["capacity"] == 4
    assert set(region["waste"]) == {"cancelled", "saved_tokens", "from_memory"}
    assert set(status["savings"]) == {"cancelled", "saved_tokens", "from_memory"}
