"""The router end to end: real router and region processes, HTTP/2, simulated Ollama.

One cluster for the module: the router (CIDR table from a config file, key
rotation grace 0 so a rotation signs at once) in front of three regions that
trust its keys only through `--jwks`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from gateway.auth.keys import SigningKeys
from gateway.http2 import H2Connection
from router.cli import create_key, revoke_key
from tests.router.harness import Cluster, cluster, generate_body, request_json

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("router")
    config = tmp / "router.toml"
    config.write_text('[router.cidr]\n"127.0.0.2/32" = "ap-east"\n')
    with cluster(tmp, router_args=["--config", str(config), "--rotation-grace", "0"]) as c:
        yield c


@pytest.fixture(scope="module")
def key(gg: Cluster) -> str:
    return asyncio.run(create_key(gg.state_dir, None, "alice"))[1]


def bearer(credential: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}", **extra}


def token_for(gg: Cluster, key: str, location: str = "us-west") -> dict[str, object]:
    status, answer, _ = request_json(
        "POST", gg.url + "/v1/token", bearer(key, **{"X-Client-Location": location})
    )
    assert status == 200, answer
    assert isinstance(answer, dict)
    return answer


def wait_for(predicate: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_key_becomes_a_token_that_every_region_accepts(gg: Cluster) -> None:
    record, key = asyncio.run(create_key(gg.state_dir, None, "bob"))
    answer = token_for(gg, key, "DE")
    assert answer["region"] == "eu-west" and answer["user"] == "bob"
    assert answer["endpoints"] == {"api": gg.url, "proxy": gg.regions["eu-west"].url}
    token = str(answer["token"])
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "bob" and claims["jti"].startswith(record.key_id + ".")
    assert claims["exp"] - claims["iat"] == 600 and answer["expires_at"] == claims["exp"]
    assert 60 <= int(str(answer["refresh_in"])) <= 600 - 120
    for region in gg.regions.values():
        status, body, headers = request_json("GET", region.url + "/api/tags", bearer(token))
        assert status == 200 and body["models"], region.name
        assert headers["X-Ghostgate-Region"] == region.name
    # Copilot's token fetch: GET, `Authorization: token <key>`.
    status, envelope, _ = request_json(
        "GET", gg.url + "/copilot_internal/v2/token", {"Authorization": f"token {key}"}
    )
    assert status == 200
    assert {"token", "expires_at", "refresh_in", "endpoints"} <= set(envelope)
    assert envelope["endpoints"]["proxy"] == gg.regions["us-west"].url  # default region


@pytest.mark.parametrize("path", ["/v1/token", "/copilot_internal/v2/token"])
@pytest.mark.parametrize(
    "authorization", [None, "Bearer gg_not-a-key", "Bearer x.y.z", "Basic eA=="]
)
def test_a_bad_or_missing_key_is_401_in_openai_shape(
    gg: Cluster, path: str, authorization: str | None
) -> None:
    method = "POST" if path == "/v1/token" else "GET"
    headers = {"Authorization": authorization} if authorization else {}
    status, body, response_headers = request_json(method, gg.url + path, headers)
    assert status == 401
    assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert body["error"]["type"] == "authentication_error" and body["error"]["message"]


@pytest.mark.parametrize(
    ("query", "header", "source", "region", "kind"),
    [
        ("ap-east", None, None, "ap-east", "region"),
        ("eu", None, None, "eu-west", "area"),
        ("JP", None, None, "ap-east", "country"),
        ("48.85,2.35", None, None, "eu-west", "latlon"),
        ("us", "SG", None, "us-west", "area"),  # the query wins over the header
        (None, "SG", None, "ap-east", "country"),
        (None, None, "127.0.0.2", "ap-east", "cidr"),
        (None, None, None, "us-west", "default"),
    ],
)
def test_each_kind_of_location_routes_to_its_region(
    gg: Cluster, query: str | None, header: str | None, source: str | None, region: str, kind: str
) -> None:
    url = gg.url + "/v1/route" + (f"?location={query}" if query else "")
    headers = {"X-Client-Location": header} if header else {}
    status, decision, _ = request_json("GET", url, headers, source=source)
    assert status == 200
    assert decision["region"] == region and decision["location"]["kind"] == kind
    assert decision["url"] == gg.regions[region].url and decision["reason"]
    rtts = [alt["rtt_ms"] for alt in decision["alternatives"]]
    assert len(rtts) == 3 and decision["alternatives"][0]["name"] == region


def test_an_unknown_location_is_400(gg: Cluster) -> None:
    status, body, _ = request_json("GET", gg.url + "/v1/route?location=atlantis")
    assert status == 400 and "unknown location" in body["error"]["message"]


def test_a_revoked_key_gets_no_new_token_and_forwards_stop(gg: Cluster) -> None:
    record, key = asyncio.run(create_key(gg.state_dir, None, "mallory"))
    token = str(token_for(gg, key)["token"])
    for credential in (key, token):
        assert request_json("GET", gg.url + "/api/tags", bearer(credential))[0] == 200
    assert asyncio.run(revoke_key(gg.state_dir, None, record.key_id))
    status = request_json("POST", gg.url + "/v1/token", bearer(key))[0]
    assert status == 401, "a revoked key must get no new token, at once"
    # Forward mode learns it from the store's revocation feed (every second).
    for credential in (key, token):
        wait_for(
            lambda c=credential: request_json("GET", gg.url + "/api/tags", bearer(c))[0] == 401,
            3.0,
            "the router refusing a revoked key's credentials",
        )


def test_regions_verify_with_the_jwks_across_a_key_rotation(gg: Cluster, key: str) -> None:
    old = str(token_for(gg, key)["token"])
    old_kid = jwt.get_unverified_header(old)["kid"]
    SigningKeys.rotate(gg.state_dir)

    def new_token() -> str | None:
        token = str(token_for(gg, key)["token"])
        return token if jwt.get_unverified_header(token)["kid"] != old_kid else None

    wait_for(lambda: new_token() is not None, 3.0, "the router signing with the new key")
    new = new_token()
    assert new is not None
    status, jwks, _ = request_json("GET", gg.url + "/.well-known/jwks.json")
    assert status == 200 and old_kid in {k["kid"] for k in jwks["keys"]} and len(jwks["keys"]) == 2
    for region in gg.regions.values():
        assert request_json("GET", region.url + "/api/tags", bearer(old))[0] == 200
        # The first token with the unknown kid makes the region fetch the JWKS.
        wait_for(
            lambda r=region: request_json("GET", r.url + "/api/tags", bearer(new))[0] == 200,
            5.0,
            f"{region.name} accepting the new key",
        )


@pytest.mark.anyio
async def test_forward_mode_streams_incrementally_over_http2(gg: Cluster, key: str) -> None:
    headers = [("authorization", f"Bearer {key}"), ("x-client-location", "eu")]
    async with await H2Connection.open("127.0.0.1", gg.port) as conn:
        stream = await conn.request(
            "POST", "/api/generate", headers, generate_body(25), record_chunk_times=True
        )
        lines = (await stream.read_all()).splitlines()
        times = stream.chunk_times
        models = await conn.request("GET", "/v1/models", headers)
        listing = json.loads(await models.read_all())
    assert stream.status == 200 and len(lines) == 26 and json.loads(lines[-1])["done"]
    assert dict(stream.headers)["x-ghostgate-region"] == "eu-west"
    assert times is not None and len(times) >= 20
    assert times[-1] - times[0] > 0.3  # 25 tokens at the simulated 50 tok/s, relayed as made
    assert models.status == 200 and listing["data"]


@pytest.mark.anyio
async def test_rst_stream_at_the_router_stops_the_backend(gg: Cluster, key: str) -> None:
    sim = gg.regions["eu-west"].sim
    headers = [("authorization", f"Bearer {key}"), ("x-client-location", "eu")]
    async with await H2Connection.open("127.0.0.1", gg.port) as conn:
        stream = await conn.request("POST", "/api/generate", headers, generate_body(2000))
        for _ in range(3):
            assert await stream.read_chunk()
        before = await asyncio.to_thread(sim.stats)
        await stream.reset()
        elapsed = await asyncio.to_thread(
            wait_for, lambda: sim.stats()["aborted"] > before["aborted"], 2.0, "abort"
        )
    assert elapsed < 0.5, elapsed


def test_http11_close_at_the_router_stops_the_backend(gg: Cluster, key: str) -> None:
    sim = gg.regions["eu-west"].sim
    body = generate_body(2000)
    request = (
        f"POST /api/generate HTTP/1.1\r\nHost: router\r\nAuthorization: Bearer {key}\r\n"
        f"X-Client-Location: eu\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", gg.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while received.count(b"\n{") < 3:
            received += sock.recv(65536)
        assert received.startswith(b"HTTP/1.1 200")
        before = sim.stats()
    elapsed = wait_for(lambda: sim.stats()["aborted"] > before["aborted"], 2.0, "abort")
    assert elapsed < 0.5, elapsed


def test_a_killed_region_is_passed_over_then_used_again(gg: Cluster, key: str) -> None:
    decision = request_json("GET", gg.url + "/v1/route?location=DE")[1]
    nearest = decision["alternatives"][0]["name"]
    assert nearest == "eu-west"
    headers = bearer(key, **{"X-Client-Location": "DE"})

    def generate() -> str:
        status, _, response = request_json("POST", gg.url + "/api/generate", headers, body)
        assert status == 200, status
        return str(response["X-Ghostgate-Region"])

    body = generate_body(3)
    body = json.dumps({**json.loads(body), "stream": False}).encode()
    assert generate() == nearest
    region = gg.regions[nearest]
    region.kill()
    served = [generate() for _ in range(5)]  # none may fail
    # The next best by RTT plus load (probed load can tip it between the others).
    assert nearest not in served
    gg.wait_until(lambda c: nearest not in c.regions_up(), 5.0, "the router seeing it down")
    region.start()
    gg.wait_until(lambda c: nearest in c.regions_up(), 10.0, "the router seeing it back")
    assert generate() == nearest


def test_status_page_status_json_and_metrics(gg: Cluster) -> None:
    import urllib.request

    with urllib.request.urlopen(gg.url + "/", timeout=5) as response:
        page = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/html")
    assert "/v1/status" in page and "<script>" in page
    assert 'src="http' not in page and 'href="http' not in page  # no external assets
    status, report, _ = request_json("GET", gg.url + "/v1/status?location=JP")
    assert status == 200 and report["decision"]["region"] == "ap-east"
    assert {r["name"] for r in report["regions"]} == set(gg.regions)
    assert all(r["health"] == "up" and r["capacity"] == 4 for r in report["regions"])
    with urllib.request.urlopen(gg.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'ghostgate_region_up{region="ap-east"} 1.0' in text
    assert "ghostgate_route_decisions_total" in text
    assert request_json("GET", gg.url + "/readyz")[0] == 200


def test_router_state_dir_holds_no_secret_in_logs(gg: Cluster, key: str) -> None:
    logs = [gg.state_dir.parent / "router.log", *(r.log for r in gg.regions.values())]
    text = "".join(Path(p).read_text() for p in logs)
    assert key not in text and "eyJ" not in text
