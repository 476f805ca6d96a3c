"""Input bounds against a real region: what used to be a 500 (NaN, 1e999, 10**400,
a 100,000-deep body) is a 4xx in the route's dialect, and `n` choices hold `n`
of the user's streams, all given back when the client leaves."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from urllib.parse import urlsplit

import pytest

from tests.e2e import Region, region

pytestmark = [pytest.mark.e2e]

MODEL = "starcoder2:3b"
ROUTES = {
    "/api/generate": {"model": MODEL, "prompt": "def", "options": {"num_predict": "X"}},
    "/api/chat": {"model": MODEL, "messages": [], "options": {"seed": "X"}},
    "/v1/completions": {"model": MODEL, "prompt": "def", "max_tokens": "X"},
    "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user"}], "seed": "X"},
    "/v1/engines/copilot-codex/completions": {"prompt": "def", "max_tokens": "X"},
}


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    tmp = tmp_path_factory.mktemp("bounds")
    args = ["--max-streams", "3"]
    with region(tmp, sim_args=["--load-seconds", "0.05"], region_args=args) as r:
        yield r


def post(reg: Region, path: str, body: bytes) -> tuple[int, Message, bytes]:
    headers = {**reg.auth(), "Content-Type": "application/json"}
    request = urllib.request.Request(reg.url + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def message_of(path: str, raw: bytes) -> str:
    error = json.loads(raw)["error"]
    if path.startswith("/v1/"):
        assert set(error) == {"message", "type", "code"}
        return str(error["message"])
    assert isinstance(error, str)
    return error


@pytest.mark.parametrize("path", list(ROUTES))
@pytest.mark.parametrize(
    ("literal", "status"),
    [("NaN", 400), ("Infinity", 400), ("1e999", 422), (str(10**400), 422)],
)
def test_numbers_that_were_500s_are_4xx(reg: Region, path: str, literal: str, status: int) -> None:
    body = json.dumps(ROUTES[path]).replace('"X"', literal).encode()
    code, _, raw = post(reg, path, body)
    assert code == status, raw
    message = message_of(path, raw)
    assert len(message) < 120 and "0" * 64 not in message


@pytest.mark.parametrize("path", list(ROUTES))
def test_a_100000_deep_body_is_400(reg: Region, path: str) -> None:
    code, _, raw = post(reg, path, b"[" * 100_000 + b"]" * 100_000)
    assert code == 400 and "nesting too deep" in message_of(path, raw)


def test_n_over_the_users_streams_is_429(reg: Region) -> None:
    body = {"model": MODEL, "prompt": "def", "max_tokens": 2, "n": 4}
    code, headers, raw = post(reg, "/v1/completions", json.dumps(body).encode())
    assert code == 429 and headers["Retry-After"] == "1"
    assert "generations at once" in message_of("/v1/completions", raw)
    body["n"] = 3  # at the limit
    code, _, raw = post(reg, "/v1/completions", json.dumps(body).encode())
    assert code == 200 and len(json.loads(raw)["choices"]) == 3


def test_a_cancelled_request_gives_its_streams_back(reg: Region) -> None:
    address = urlsplit(reg.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    body = {"model": MODEL, "prompt": "def", "max_tokens": 400, "n": 2, "stream": True}
    headers = {**reg.auth(), "Content-Type": "application/json"}
    connection.request("POST", "/v1/completions", json.dumps(body).encode(), headers)
    response = connection.getresponse()
    assert response.status == 200 and response.read1(64)  # streaming, 2 streams held
    two_more = {"model": MODEL, "prompt": "x", "max_tokens": 1, "n": 2}
    assert post(reg, "/v1/completions", json.dumps(two_more).encode())[0] == 429
    connection.close()  # the editor moved on
    three = {"model": MODEL, "prompt": "x", "max_tokens": 1, "n": 3}
    deadline = time.monotonic() + 5
    while (code := post(reg, "/v1/completions", json.dumps(three).encode())[0]) == 429:
        assert time.monotonic() < deadline, "the cancelled request's streams never came back"
        time.sleep(0.05)
    assert code == 200


def test_refusals_are_counted(reg: Region) -> None:
    stops = {"model": MODEL, "prompt": "def", "options": {"stop": ["s"] * 33}}
    assert post(reg, "/api/generate", json.dumps(stops).encode())[0] == 422
    assert post(reg, "/api/generate", b"[" * 40)[0] == 400
    four = {"model": MODEL, "prompt": "def", "max_tokens": 1, "n": 4}
    assert post(reg, "/v1/completions", json.dumps(four).encode())[0] == 429
    with urllib.request.urlopen(reg.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'ghostgate_input_refusals_total{bound="stop_sequences"}' in text
    assert 'ghostgate_input_refusals_total{bound="json_depth"}' in text
    assert 'ghostgate_user_limit_refusals_total{limit="streams"}' in text
