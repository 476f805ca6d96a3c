"""What /readyz and /metrics tell whom (gateway/operations.py): the decisions,
the region's report, and the whole app called in-process, without sockets."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import config
from gateway.app import create_app
from gateway.asgi import ASGIApp
from gateway.auth.tokens import mint
from gateway.operations import (
    ANYONE,
    OPERATOR,
    Asker,
    Listener,
    listener_for,
    listening,
    serves,
    tells_all,
    token_scopes,
)
from gateway.server.serve import hypercorn_config
from gateway.services import Services
from gateway.settings import BackendSpec, GatewaySettings, ServerSettings

BACKEND = "http://10.9.8.7:11434"  # what a probe of a public address must not learn
MODEL = "secret-coder:7b"
ERROR = "ClientConnectorError: Cannot connect to host 10.9.8.6:11434"
MINIMAL = {"ready", "draining", "simulated", "inflight", "queued", "capacity", "waste"}
PUBLIC_PORT, OPERATIONS_PORT = 8000, 9100

COMBINED, PUBLIC, OPERATIONS = Listener.COMBINED, Listener.PUBLIC, Listener.OPERATIONS
KEY = Ed25519PrivateKey.generate()


def bearer(scope: str) -> str:
    return "Bearer " + mint(KEY, "ops", scope=scope)[0]


def region(**server: Any) -> tuple[ASGIApp, Services]:
    backends = (BackendSpec(BACKEND), BackendSpec("http://10.9.8.6:11434"))
    app, services = create_app(
        GatewaySettings(backends=backends, simulated=True, server=ServerSettings(**server))
    )
    services.verifier.set_keys((KEY.public_key(),))
    up, down = services.scheduler.backends
    up.healthy, up.models, up.loaded = True, {MODEL}, {MODEL}
    down.last_error = ERROR
    return app, services


def failures(services: Services, reason: str) -> float:
    value = services.metrics.registry.get_sample_value(
        "ghostgate_auth_failures_total", {"reason": reason}
    )
    return value or 0.0


# The decisions, as plain data.


def test_the_listener_is_the_local_port_a_request_came_in_on() -> None:
    assert listener_for(("127.0.0.1", PUBLIC_PORT), 0) is COMBINED
    assert listener_for(("127.0.0.1", PUBLIC_PORT), OPERATIONS_PORT) is PUBLIC
    assert listener_for(("127.0.0.1", OPERATIONS_PORT), OPERATIONS_PORT) is OPERATIONS
    assert listener_for(["::1", OPERATIONS_PORT], OPERATIONS_PORT) is OPERATIONS
    assert listener_for(None, OPERATIONS_PORT) is PUBLIC  # unknown: never the operator's


def test_who_is_told_everything() -> None:
    admin, editor, none = frozenset({"admin"}), frozenset({"completions", "chat"}), frozenset()
    assert tells_all(OPERATIONS, none)
    assert tells_all(COMBINED, admin)
    assert not tells_all(COMBINED, editor) and not tells_all(COMBINED, none)
    assert not tells_all(PUBLIC, admin)  # beside an operations port: never


def test_what_each_listener_serves() -> None:
    assert all(serves(COMBINED, p) for p in ("/healthz", "/readyz", "/metrics", "/api/tags"))
    assert serves(PUBLIC, "/readyz") and serves(PUBLIC, "/api/tags")
    assert not serves(PUBLIC, "/metrics")
    assert serves(OPERATIONS, "/metrics") and serves(OPERATIONS, "/readyz")
    assert not serves(OPERATIONS, "/api/tags") and not serves(OPERATIONS, "/")


def test_a_token_gives_its_scopes_and_a_bad_one_none() -> None:
    _, services = region()
    refused: list[str] = []
    verifier = services.verifier
    assert token_scopes(verifier, None, refused.append) == frozenset()
    assert token_scopes(verifier, bearer("admin"), refused.append) == {"admin"}
    assert token_scopes(verifier, bearer("completions"), refused.append) == {"completions"}
    assert refused == []  # no token is a probe, not a failure
    assert token_scopes(verifier, "Bearer not.a.token", refused.append) == frozenset()
    other = "Bearer " + mint(Ed25519PrivateKey.generate(), "eve", scope="admin")[0]
    assert token_scopes(verifier, other, refused.append) == frozenset()
    assert len(refused) == 2


# The region's report.


def test_anyone_gets_only_what_the_router_reads() -> None:
    _, services = region()
    ready, report = services.readiness(ANYONE)
    assert ready and set(report) == MINIMAL
    assert report["capacity"] == 4 and report["simulated"] is True
    assert set(report["waste"]) == {"cancelled", "saved_tokens", "from_memory"}  # type: ignore[arg-type]
    text = json.dumps(report)
    for secret in (BACKEND, "10.9.8.6", MODEL, "ClientConnectorError"):
        assert secret not in text


@pytest.mark.anyio  # the report counts the event loop's tasks
async def test_an_admin_token_gets_the_full_report() -> None:
    _, services = region()
    ready, report = services.readiness(Asker(COMBINED, bearer("admin")))
    assert ready and MINIMAL < set(report)
    for field in ("region", "groups_live", "store", "store_degraded", "tasks", "backends"):
        assert field in report
    detail = report["backends"]["detail"]  # type: ignore[index]
    assert detail[0]["url"] == BACKEND and detail[0]["models"] == [MODEL]
    assert detail[1]["error"] == ERROR
    assert services.readiness(OPERATOR)[1].keys() == report.keys()


@pytest.mark.parametrize(
    "asker",
    [
        Asker(COMBINED, bearer("completions chat")),  # an editor's token
        Asker(COMBINED, "Bearer not.a.token"),
        Asker(COMBINED, "Basic b3BzOm9wcw=="),
        Asker(PUBLIC, bearer("admin")),  # the public port beside an operations port
    ],
)
def test_any_other_caller_gets_the_minimal_report(asker: Asker) -> None:
    _, services = region()
    ready, report = services.readiness(asker)
    assert ready and set(report) == MINIMAL


def test_a_bad_token_is_counted_as_an_auth_failure_and_no_token_is_not() -> None:
    _, services = region()
    services.readiness(ANYONE)
    assert failures(services, "missing") == 0
    services.readiness(Asker(COMBINED, "Bearer not.a.token"))
    assert failures(services, "malformed") == 1


def test_the_heartbeat_still_says_ready_and_the_load() -> None:
    _, services = region()
    beat = services.heartbeat()
    assert beat["ready"] is True and beat["capacity"] == 4 and "detail" not in beat


# The whole app, in-process: what the route table and `listening` make of it.


async def get(
    app: ASGIApp, path: str, authorization: str | None = None, port: int = PUBLIC_PORT
) -> tuple[int, bytes]:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", port),
        "client": ("127.0.0.1", 50000),
        "headers": headers,
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.anyio
async def test_one_port_readyz_is_minimal_without_an_admin_token() -> None:
    app, _ = region()
    status, body = await get(app, "/readyz")
    assert status == 200 and set(json.loads(body)) == MINIMAL
    assert BACKEND.encode() not in body and MODEL.encode() not in body
    status, body = await get(app, "/readyz", bearer("completions"))
    assert status == 200 and set(json.loads(body)) == MINIMAL
    status, body = await get(app, "/readyz", "Bearer not.a.token")  # not a 401: probes
    assert status == 200 and set(json.loads(body)) == MINIMAL
    status, body = await get(app, "/readyz", bearer("admin"))
    assert status == 200 and json.loads(body)["backends"]["detail"][0]["url"] == BACKEND
    status, _ = await get(app, "/metrics")  # Prometheus scrapes it here by default
    assert status == 200


@pytest.mark.anyio
async def test_with_an_operations_port_the_public_port_tells_nothing_more() -> None:
    app, services = region(port=PUBLIC_PORT, operations_port=OPERATIONS_PORT)
    served = listening(app, services.settings.server.operations_port)
    status, body = await get(served, "/readyz", bearer("admin"))
    assert status == 200 and set(json.loads(body)) == MINIMAL
    status, body = await get(served, "/metrics")
    assert status == 404 and json.loads(body) == {"error": "no route /metrics"}
    status, body = await get(served, "/readyz", port=OPERATIONS_PORT)
    assert status == 200 and json.loads(body)["backends"]["detail"][0]["url"] == BACKEND
    status, body = await get(served, "/metrics", port=OPERATIONS_PORT)
    assert status == 200 and b"ghostgate_requests_total" in body
    status, _ = await get(served, "/healthz", port=OPERATIONS_PORT)
    assert status == 200
    for path in ("/api/tags", "/v1/models", "/"):  # no API route on the operations port
        status, body = await get(served, path, bearer("completions"), port=OPERATIONS_PORT)
        assert status == 404, path


@pytest.mark.anyio
async def test_a_draining_region_says_so_to_anyone() -> None:
    app, services = region()
    services.draining = True
    status, body = await get(app, "/readyz")
    assert status == 503 and json.loads(body)["draining"] is True


# The settings: flags, TOML, and what Hypercorn binds.


def test_the_operations_port_is_a_setting_with_no_port_by_default() -> None:
    assert (ServerSettings().operations_port, ServerSettings().operations_host) == (0, "127.0.0.1")
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(["--operations-port", "9100", "--operations-host", "10.0.0.2"])
    server = config.load(args, {}).server
    assert (server.operations_port, server.operations_host) == (9100, "10.0.0.2")
    table = config.from_table({"server": {"operations_port": 9101}}).server
    assert table.operations_port == 9101 and table.operations_host == "127.0.0.1"


def test_an_operations_port_must_be_a_port_of_its_own() -> None:
    config.check_server(ServerSettings(port=8000, operations_port=9100))
    with pytest.raises(config.ConfigError, match="must differ from port"):
        config.check_server(ServerSettings(port=8000, operations_port=8000))
    with pytest.raises(config.ConfigError, match="not a TCP port"):
        config.check_server(ServerSettings(operations_port=70000))


def test_hypercorn_binds_the_operations_port_in_plain_http(tmp_path: Any) -> None:
    plain = hypercorn_config(ServerSettings(port=8000, operations_port=9100))
    assert plain.bind == ["127.0.0.1:8000", "127.0.0.1:9100"] and plain.insecure_bind == []
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls = hypercorn_config(
        ServerSettings(
            port=8000, operations_port=9100, operations_host="::1", certfile=cert, keyfile=key
        )
    )
    assert tls.bind == ["127.0.0.1:8000"] and tls.insecure_bind == ["[::1]:9100"]
    assert hypercorn_config(ServerSettings()).insecure_bind == []  # nothing shared leaked
