"""The region proxy end to end: real Hypercorn, real sockets, simulated Ollama workers."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import ollama
import pytest

from gateway.http2 import H2Connection
from tests.e2e import Region, http11_post, region

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

MODEL = "starcoder2:3b"


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    with region(tmp_path_factory.mktemp("proxy"), sim_args=["--load-seconds", "0.05"]) as r:
        yield r


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def h2_headers(reg: Region) -> list[tuple[str, str]]:
    return [("content-type", "application/json"), ("authorization", f"Bearer {reg.token()}")]


def generate_body(num_predict: int, prompt: str = "def fib(n):") -> bytes:
    return json.dumps(
        {"model": MODEL, "prompt": prompt, "options": {"num_predict": num_predict}}
    ).encode()


def wait_for(predicate: Any, timeout: float) -> float:
    """Seconds until `predicate()` held; fails the test past `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)
    return time.monotonic() - started


def test_official_ollama_client_lists_generates_and_chats(reg: Region) -> None:
    with ollama.Client(host=reg.url, headers=reg.auth()) as client:
        check_official_client(client)


def check_official_client(client: ollama.Client) -> None:
    names = {m.model for m in client.list().models}
    assert {MODEL, "deepseek-coder:6.7b-base"} <= names
    whole = client.generate(model=MODEL, prompt="def add(a, b):", stream=False)
    assert whole.done and whole.response and whole.eval_count
    parts = list(client.generate(model=MODEL, prompt="def add(a, b):", stream=True))
    assert len(parts) > 2 and parts[-1].done
    assert "".join(p.response for p in parts) == whole.response  # deterministic backend
    chat = client.chat(
        model="deepseek-coder:6.7b-base", messages=[{"role": "user", "content": "write a sort"}]
    )
    assert chat.message.role == "assistant" and chat.message.content
    streamed = list(
        client.chat(
            model="deepseek-coder:6.7b-base",
            stream=True,
            messages=[{"role": "user", "content": "write a sort"}],
        )
    )
    assert streamed[-1].done and "".join(p.message.content or "" for p in streamed)
    assert MODEL in {m.model for m in client.ps().models}
    assert ".Suffix" in (client.show(MODEL).template or "")


def test_missing_or_bad_token_is_401(reg: Region) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic eA=="}):
        status, response_headers, body = post(reg.url + "/api/generate", generate_body(4), headers)
        assert status == 401
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
        assert isinstance(json.loads(body)["error"], str)
    with pytest.raises(ollama.ResponseError) as info, ollama.Client(host=reg.url) as client:
        client.list()
    assert info.value.status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b'{"model": "starcoder2:3b", "prompt": ', 400, "invalid JSON"),
        (b'{"model": 3, "prompt": "x"}', 422, "model must be a string"),
        (b'{"model": "starcoder2:3b", "options": {"num_predict": "x"}}', 422, "num_predict"),
        (b'{"model": "no-such-model:7b", "prompt": "x"}', 404, "not found"),
        (b'{"prompt": "x"}', 400, "model is required"),
        (b"x" * (1024 * 1024 + 1), 413, "limit"),
    ],
)
def test_bad_input_gets_its_4xx_in_ollama_shape(
    reg: Region, body: bytes, status: int, fragment: str
) -> None:
    code, _, raw = post(reg.url + "/api/generate", body, reg.auth())
    assert code == status
    assert fragment in json.loads(raw)["error"]


def test_method_and_route_errors_in_ollama_shape(reg: Region) -> None:
    request = urllib.request.Request(reg.url + "/api/generate", headers=reg.auth())
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    with info.value as error:
        assert error.code == 405 and "error" in json.loads(error.read())
    code, _, raw = post(reg.url + "/api/nothing", b"{}", reg.auth())
    assert code == 404 and "error" in json.loads(raw)


def test_405_says_what_is_allowed(reg: Region) -> None:
    """RFC 9110 15.5.6: a 405 carries `Allow`."""
    for path, allowed in (("/api/generate", "POST"), ("/v1/models", "GET, HEAD")):
        request = urllib.request.Request(reg.url + path, method="PUT", headers=reg.auth())
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        with info.value as error:
            assert error.code == 405
            assert error.headers["Allow"] == allowed


@pytest.mark.parametrize("path", ["/api/tags", "/v1/models", "/healthz", "/"])
def test_head_is_served_for_get_routes(reg: Region, path: str) -> None:
    """RFC 9110 9.3.2: HEAD is GET's headers without the body."""
    get = urllib.request.Request(reg.url + path, headers=reg.auth())
    with urllib.request.urlopen(get, timeout=5) as response:
        body, get_type = response.read(), response.headers["Content-Type"]
    head = urllib.request.Request(reg.url + path, method="HEAD", headers=reg.auth())
    with urllib.request.urlopen(head, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == get_type
        assert response.headers["Content-Length"] == str(len(body))
        assert response.read() == b""


def test_ids_region_header_health_and_metrics(reg: Region) -> None:
    request = urllib.request.Request(
        reg.url + "/api/tags", headers={**reg.auth(), "X-Request-Id": "abc-123"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["X-Request-Id"] == "abc-123"
        assert response.headers["X-Ghostgate-Region"] == "test-region"
    with urllib.request.urlopen(reg.url + "/healthz", timeout=5) as response:
        assert response.headers["X-Request-Id"]
    ready = reg.readyz(admin=True)
    assert ready["ready"] and ready["backends"]["healthy"] == 1 and ready["simulated"]
    with urllib.request.urlopen(reg.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    for name in (
        "ghostgate_requests_total",
        "ghostgate_time_to_first_token_seconds",
        "ghostgate_overhead_seconds",
        "ghostgate_backend_inflight",
        "ghostgate_queue_depth",
        "ghostgate_upstream_connections_opened_total",
        "ghostgate_auth_failures_total",
    ):
        assert name in text, name
    assert 'route="/api/generate"' in text


async def test_tokens_arrive_incrementally_over_http2(reg: Region) -> None:
    async with await H2Connection.open("127.0.0.1", reg.port) as conn:
        stream = await conn.request(
            "POST", "/api/generate", h2_headers(reg), generate_body(25), record_chunk_times=True
        )
        lines = (await stream.read_all()).splitlines()
        times = stream.chunk_times
    assert stream.status == 200 and len(lines) == 26
    assert times is not None and len(times) >= 20
    # 25 tokens at the simulated 50 tok/s: the first long before the last.
    assert times[-1] - times[0] > 0.3


async def test_rst_stream_stops_the_backend_and_connection_serves_on(reg: Region) -> None:
    sim = reg.sims[0]
    async with await H2Connection.open("127.0.0.1", reg.port) as conn:
        stream = await conn.request("POST", "/api/generate", h2_headers(reg), generate_body(2000))
        for _ in range(3):
            assert await stream.read_chunk()
        before = sim.stats()
        await stream.reset()
        elapsed = await asyncio.to_thread(
            wait_for, lambda: sim.stats()["aborted"] > before["aborted"], 2.0
        )
        after = sim.stats()
        # Noticed at the next token boundary (20 ms apart), like Ollama.
        assert elapsed < 0.25, elapsed
        assert after["tokens_after_client_left"] - before["tokens_after_client_left"] <= 2
        follow = await conn.request("POST", "/api/generate", h2_headers(reg), generate_body(5))
        lines = (await follow.read_all()).splitlines()
        assert follow.status == 200 and json.loads(lines[-1])["done"]
    reg.wait_until(lambda r: r["inflight"] == 0, what="no request in flight")


def test_http11_close_mid_stream_stops_the_backend(reg: Region) -> None:
    sim = reg.sims[0]
    body = generate_body(2000)
    with socket.create_connection(("127.0.0.1", reg.port), timeout=5) as sock:
        sock.sendall(http11_post("/api/generate", reg.token(), body))
        received = b""
        while received.count(b"\n{") < 3:
            received += sock.recv(65536)
        assert received.startswith(b"HTTP/1.1 200")
        before = sim.stats()
    elapsed = wait_for(lambda: sim.stats()["aborted"] > before["aborted"], 2.0)
    assert elapsed < 0.25, elapsed
    reg.wait_until(lambda r: r["inflight"] == 0, what="no request in flight")


def test_http11_status_lines_carry_their_reason_phrase(reg: Region) -> None:
    """Hypercorn sends `HTTP/1.1 200 ` with no phrase; clients such as h2load's
    HTTP/1.1 mode then never see a status (gateway/server/patches/reason_phrase.py)."""

    def status_line(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", reg.port), timeout=5) as sock:
            sock.sendall(request)
            received = b""
            while b"\r\n" not in received:
                chunk = sock.recv(4096)
                assert chunk, received
                received += chunk
        return received.split(b"\r\n", 1)[0]

    body = generate_body(3)
    assert status_line(http11_post("/api/generate", reg.token(), body)) == b"HTTP/1.1 200 OK"
    assert status_line(http11_post("/api/generate", "forged", body)) == (
        b"HTTP/1.1 401 Unauthorized"
    )
    assert status_line(b"GET /healthz HTTP/1.1\r\nHost: ghostgate\r\n\r\n") == (b"HTTP/1.1 200 OK")


async def test_tls_with_alpn_h2(tmp_path: Path) -> None:
    import ssl

    from tests.tls import self_signed

    cert, key = self_signed(tmp_path)
    with region(tmp_path, tls=(cert, key)) as r:
        context = ssl.create_default_context(cafile=str(cert))
        async with await H2Connection.open(
            "127.0.0.1", r.port, ssl=context, server_hostname="localhost"
        ) as conn:
            stream = await conn.request("GET", "/api/tags", h2_headers(r))
            assert stream.status == 200
            assert json.loads(await stream.read_all())["models"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("flag", ["--http2", "--http2-prior-knowledge"])
def test_h2c_by_upgrade_and_prior_knowledge(reg: Region, flag: str) -> None:
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            flag,
            "-H",
            f"Authorization: Bearer {reg.token()}",
            reg.url + "/api/tags",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert result.stdout == "2 200"


def test_connections_closed_while_idle_do_not_linger(reg: Region) -> None:
    """Editor plugins close connections after a completion; Hypercorn 0.18 would
    keep each one's socket and tasks for the whole (hours-long) keep-alive."""
    before = reg.readyz(admin=True)["tasks"]
    body = generate_body(3)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", reg.port), timeout=5) as sock:
            sock.sendall(http11_post("/api/generate", reg.token(), body))
            received = b""
            while b'"done": true' not in received and b'"done":true' not in received:
                received += sock.recv(65536)
    wait_for(lambda: reg.readyz(admin=True)["tasks"] <= before, 3.0)


@pytest.mark.parametrize(
    ("scope", "path", "body", "allowed"),
    [
        ("completions", "/api/generate", {"prompt": "x"}, True),
        ("completions", "/api/chat", {"messages": []}, False),
        ("completions", "/v1/chat/completions", {"messages": []}, False),
        ("chat", "/api/chat", {"messages": [{"role": "user", "content": "hi"}]}, True),
        ("chat", "/v1/completions", {"prompt": "x"}, False),
        ("chat", "/v1/engines/codex/completions", {"prompt": "x"}, False),
        ("admin", "/api/generate", {"prompt": "x"}, False),
    ],
)
def test_a_token_is_good_only_for_the_routes_of_its_scope(
    reg: Region, scope: str, path: str, body: dict[str, object], allowed: bool
) -> None:
    from gateway.auth import mint

    token = mint(reg.keys.active, f"scoped-{scope}", scope=scope)[0]
    payload = {"model": "starcoder2:3b", "stream": False, "max_tokens": 3, **body}
    code, _, raw = post(
        reg.url + path,
        json.dumps(payload).encode(),
        {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
    )
    if allowed:
        assert code == 200
        return
    assert code == 403
    error = json.loads(raw)["error"]
    if path.startswith("/v1/"):
        assert error["type"] == "permission_error" and error["code"] == "insufficient_scope"
    else:
        assert "scope" in error
    # Listing models needs a good token of any scope.
    listing = urllib.request.Request(
        reg.url + "/api/tags", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(listing, timeout=5) as response:
        assert response.status == 200
