"""Attacks on connections, against a real region on loopback: each bound holds.

Bounds are shortened by a TOML file so each test takes seconds; the defaults
(10 s head, 30 s body, 30 s send, 10,000 connections) are the same code.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from tests.e2e import Region, get_json, http11_post, region

pytestmark = pytest.mark.e2e

CONFIG = """
[gateway.server]
head_timeout = 1.0
max_connections = 40
[gateway.limits]
body_timeout = 1.0
send_timeout = 1.0
"""


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    tmp = tmp_path_factory.mktemp("adversarial-connections")
    config = tmp / "bounds.toml"
    config.write_text(CONFIG)
    with region(
        tmp,
        sim_args=["--decode-tps", "400", "--max-tokens", "4000", "--min-tokens", "4000"],
        region_args=["--config", str(config)],
    ) as r:
        yield r


def connect(reg: Region) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", reg.port), timeout=5)
    return sock


def healthz(sock: socket.socket) -> bytes:
    """One keep-alive GET /healthz on `sock`, read to the end of its body."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return head


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True when the server closes `sock` (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def metric(reg: Region, name: str, labels: str = "") -> float:
    text = urllib_get(reg.url + "/metrics")
    total = 0.0
    for line in text.splitlines():
        metric_name = line.split("{", 1)[0].split(" ", 1)[0]
        if metric_name == name and (not labels or labels in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def urllib_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_silent_and_half_sent_heads_are_closed_at_the_deadline(reg: Region) -> None:
    before = metric(reg, "ghostgate_connections_closed_total", 'reason="head_timeout"')
    silent = [connect(reg) for _ in range(10)]
    half = [connect(reg) for _ in range(10)]
    for sock in half:
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-")  # never ends
    started = time.monotonic()
    assert all(closed_by_peer(s, within=3.0) for s in silent + half)
    assert time.monotonic() - started < 3.0
    after = metric(reg, "ghostgate_connections_closed_total", 'reason="head_timeout"')
    assert after - before >= 20
    for sock in silent + half:
        sock.close()
    assert get_json(reg.url + "/healthz")["status"] == "alive"  # and still serving


def test_an_idle_connection_that_served_a_request_stays(reg: Region) -> None:
    sock = connect(reg)
    assert b"200 OK" in healthz(sock)
    assert not closed_by_peer(sock, within=2.0)  # twice the head deadline
    assert b"200 OK" in healthz(sock)  # and it is still usable
    sock.close()


def test_at_the_bound_the_longest_idle_connection_is_shed(reg: Region) -> None:
    held = []
    for _ in range(45):  # more than max_connections = 40
        sock = connect(reg)
        assert b"200 OK" in healthz(sock)
        held.append(sock)
    # The first ones (longest idle) were closed to make room; the newest work.
    assert closed_by_peer(held[0], within=2.0)
    assert b"200 OK" in healthz(held[-1])
    assert metric(reg, "ghostgate_connections_closed_total", 'reason="shed"') >= 5
    assert metric(reg, "ghostgate_connections") <= 40
    for sock in held:
        sock.close()


def test_a_body_that_does_not_arrive_gets_408(reg: Region) -> None:
    sock = connect(reg)
    body = b'{"model": "starcoder2:3b", "prompt": "x"}'
    request = http11_post("/api/generate", reg.token(), body)
    sock.sendall(request[: -len(body) + 5])  # the head and 5 bytes of the body
    sock.settimeout(5)
    started = time.monotonic()
    answer = b""
    while not answer.endswith(b"}"):
        answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408")
    assert "not received within" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert time.monotonic() - started < 3
    sock.close()


def test_a_client_that_stops_reading_loses_its_stream_and_frees_the_slot(reg: Region) -> None:
    """HTTP/2 with a 1-byte window: the client never lets the server send."""
    sim = reg.sims[0]
    aborted = sim.stats()["aborted"]
    sock = connect(reg)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1})
    body = json.dumps({"model": "starcoder2:3b", "prompt": "slow reader"}).encode()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "x"),
        (":path", "/api/generate"),
        ("authorization", f"Bearer {reg.token('slow')}"),
        ("content-length", str(len(body))),
    ]
    conn.send_headers(1, headers)
    conn.send_data(1, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    reg.wait_until(lambda r: r["inflight"] == 1, what="the stream to take a slot")
    # Read nothing (no WINDOW_UPDATE): after the 1 s send timeout the region
    # ends the stream, the backend aborts and the slot comes back.
    reg.wait_until(lambda r: r["inflight"] == 0, timeout=5, what="the slot back")
    deadline = time.monotonic() + 5
    while sim.stats()["aborted"] == aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.stats()["aborted"] > aborted
    assert metric(reg, "ghostgate_cancellations_total", 'reason="slow_reader"') >= 1
    sock.close()


def test_the_region_still_serves_after_all_of_it(reg: Region, tmp_path: Path) -> None:
    with connect(reg) as sock:
        body = json.dumps(
            {
                "model": "starcoder2:3b",
                "prompt": "hi",
                "stream": False,
                "options": {"num_predict": 5},
            }
        ).encode()
        sock.sendall(http11_post("/api/generate", reg.token(), body))
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_too_many_or_too_large_headers_get_431(reg: Region) -> None:
    many = "".join(f"X-Pad-{i}: {i}\r\n" for i in range(150))  # small, but 150 of them
    with connect(reg) as sock:
        sock.sendall(f"GET /api/tags HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
        sock.settimeout(5)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    huge = "X-Huge: " + "a" * 20_000 + "\r\n"  # over the 16 KiB head
    with connect(reg) as sock:
        sock.sendall(f"GET /api/tags HTTP/1.1\r\nHost: x\r\n{huge}\r\n".encode())
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 431")
