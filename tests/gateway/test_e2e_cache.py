"""The completion cache and typing-through answer without a backend request."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import ollama
import openai
import pytest

from tests.e2e import Region, region

pytestmark = pytest.mark.e2e

MODEL = "starcoder2:3b"
PREFIX, SUFFIX = "def mean(values):\n    ", "\n\nprint(mean([1, 2]))\n"


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    with region(tmp_path_factory.mktemp("cache"), sim_args=["--load-seconds", "0"]) as r:
        yield r


def backend_requests(reg: Region) -> int:
    return int(reg.sims[0].stats()["requests"])


def cache_hits(reg: Region) -> dict[str, float]:
    with urllib.request.urlopen(reg.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    hits = {}
    for line in text.splitlines():
        if line.startswith("ghostgate_cache_hits_total{"):
            kind = line.split('kind="')[1].split('"')[0]
            hits[kind] = float(line.rsplit(" ", 1)[1])
    return hits


def ollama_client(reg: Region, group: str) -> ollama.Client:
    return ollama.Client(host=reg.url, headers={**reg.auth(), "X-Ghostgate-Group": group})


def test_deterministic_repeat_is_served_from_the_cache(reg: Region) -> None:
    options: Any = {"temperature": 0, "num_predict": 12}
    with ollama_client(reg, "cache-1") as client:
        first = client.generate(model=MODEL, prompt=PREFIX, suffix=SUFFIX, options=options)
        before = backend_requests(reg)
        again = list(
            client.generate(model=MODEL, prompt=PREFIX, suffix=SUFFIX, options=options, stream=True)
        )
    assert backend_requests(reg) == before
    assert "".join(p.response for p in again) == first.response and again[-1].done
    assert cache_hits(reg).get("exact", 0) >= 1


def test_sampled_requests_are_not_cached(reg: Region) -> None:
    with ollama_client(reg, "cache-2") as client:
        client.generate(model=MODEL, prompt="x = ", options={"temperature": 0.7, "num_predict": 4})
        before = backend_requests(reg)
        client.generate(model=MODEL, prompt="x = ", options={"temperature": 0.7, "num_predict": 4})
    assert backend_requests(reg) == before + 1


def test_typing_through_in_ollama_dialect(reg: Region) -> None:
    with ollama_client(reg, "editor-a") as client:
        shown = client.generate(
            model=MODEL,
            prompt=PREFIX,
            suffix=SUFFIX,
            options={"num_predict": 16, "temperature": 0.2},
        ).response
        assert len(shown) > 3
        before = backend_requests(reg)
        typed = shown[:2]
        rest = client.generate(
            model=MODEL,
            prompt=PREFIX + typed,
            suffix=SUFFIX,
            options={"num_predict": 16, "temperature": 0.2},
        )
        assert rest.response == shown[2:] and rest.done
        assert backend_requests(reg) == before
        # Typing something else goes to the backend, as does another editor.
        client.generate(
            model=MODEL,
            prompt=PREFIX + "zz",
            suffix=SUFFIX,
            options={"num_predict": 4, "temperature": 0.2},
        )
    with ollama_client(reg, "editor-b") as other:
        other.generate(
            model=MODEL,
            prompt=PREFIX + typed,
            suffix=SUFFIX,
            options={"num_predict": 16, "temperature": 0.2},
        )
    assert backend_requests(reg) == before + 2
    assert cache_hits(reg).get("typing", 0) >= 1


def test_typing_through_and_cache_in_openai_dialect(reg: Region) -> None:
    client = openai.OpenAI(
        base_url=reg.url + "/v1",
        api_key=reg.token(),
        max_retries=0,
        default_headers={"X-Ghostgate-Group": "editor-c"},
    )
    with client:
        shown = (
            client.completions.create(
                model=MODEL, prompt=PREFIX, suffix=SUFFIX, max_tokens=16, temperature=0.3
            )
            .choices[0]
            .text
        )
        before = backend_requests(reg)
        streamed = list(
            client.completions.create(
                model=MODEL,
                prompt=PREFIX + shown[:3],
                suffix=SUFFIX,
                max_tokens=16,
                temperature=0.3,
                stream=True,
            )
        )
        assert "".join(c.choices[0].text for c in streamed) == shown[3:]
        assert streamed[-1].choices[0].finish_reason in ("stop", "length")
        first = client.completions.create(
            model=MODEL, prompt="import ", max_tokens=6, temperature=0
        )
        again = client.completions.create(
            model=MODEL, prompt="import ", max_tokens=6, temperature=0
        )
        assert again.choices[0].text == first.choices[0].text
    assert backend_requests(reg) == before + 1  # only the first temperature-0 request


def test_cache_can_be_switched_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    with region(
        tmp_path_factory.mktemp("nocache"),
        sim_args=["--load-seconds", "0"],
        region_args=["--no-cache", "--no-typing-through"],
    ) as reg:
        body = json.dumps(
            {
                "model": MODEL,
                "prompt": "a",
                "stream": False,
                "options": {"temperature": 0, "num_predict": 3},
            }
        ).encode()
        for _ in range(2):
            request = urllib.request.Request(
                reg.url + "/api/generate", data=body, headers=reg.auth(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert json.loads(response.read())["done"]
        assert backend_requests(reg) == 2
