"""The benchmark's plain parts: /proc parsing, h2load's summary, token gaps,
percentiles, and the targets read from a result."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from loadtests.bench.clients import Target, token_gaps
from loadtests.bench.h2load import h2load_command, parse_output
from loadtests.bench.litellm import litellm_command, litellm_config
from loadtests.bench.procs import parse_stat, parse_status_kib, usage
from loadtests.bench.report import markdown, targets
from loadtests.bench.runner import percentile

H2LOAD = """
finished in 4.00s, 466.75 req/s, 1.22MB/s
requests: 1867 total, 1867 started, 1867 done, 1860 succeeded, 7 failed, 0 errored, 0 timeout
status codes: 1858 2xx, 0 3xx, 2 4xx, 0 5xx
"""


def test_stat_fields_are_counted_from_the_last_parenthesis() -> None:
    line = "4242 (python (x) y) S 17 4242 4242 0 -1 4194560 1 0 0 0 250 31 0 0 20 0 3 0"
    assert parse_stat(line) == (17, 281)


def test_status_values_in_kib() -> None:
    text = "Name:\tpython\nVmHWM:\t  90000 kB\nVmRSS:\t  81234 kB\n"
    assert parse_status_kib(text, "VmRSS") == 81234
    assert parse_status_kib(text, "VmSwap") == 0


def test_own_usage_is_positive() -> None:
    mine = usage(os.getpid())
    assert mine.cpu_seconds > 0 and mine.rss_mb > 1 and mine.peak_rss_mb >= mine.rss_mb / 2


def test_h2load_summary() -> None:
    result = parse_output(H2LOAD)
    assert result.requests_per_second == 466.75 and result.done == 1867
    assert (result.succeeded, result.failed) == (1858, 9)  # 7 failed, 2 answered 4xx


def test_h2load_spreads_streams_over_connections_and_sends_auth() -> None:
    target = Target("region", "127.0.0.1", 8000, http2=True, authorization="Bearer t")
    argv = h2load_command("h2load", target, 200, Path("b"), 2000)
    assert argv[argv.index("-c") + 1] == "2" and argv[argv.index("-m") + 1] == "100"
    assert "authorization: Bearer t" in argv and argv[argv.index("-n") + 1] == "2000"
    direct = Target("direct", "127.0.0.1", 11434, http2=False)
    argv = h2load_command("h2load", direct, 64, Path("b"), 640)
    assert "--h1" in argv and argv[argv.index("-c") + 1] == "64" and "-m" not in argv
    assert "Bearer" not in repr(target)


def test_gaps_between_token_lines_without_the_done_line() -> None:
    chunks = [
        (0.0, b'{"t":1}\n'),
        (0.02, b'{"t":2}\n{"t":3}\n'),
        (0.05, b'{"t":4}\n{"done":true}\n'),
    ]
    gaps = token_gaps(chunks)
    assert [round(g, 3) for g in gaps] == [0.02, 0.0, 0.03]
    assert token_gaps([(0.0, b'{"t":1}\n{"t"'), (0.01, b":2}\n"), (0.01, b'{"done":1}\n')]) == [
        0.01
    ]


def test_gaps_between_sse_events_without_the_finish_event_or_done() -> None:
    chunks = [
        (0.00, b'data: {"t":1}\n\n'),
        (0.02, b'data: {"t":2}\n\ndata: {"t":3}\n\n'),
        (0.05, b'data: {"finish_reason":"stop"}\n\n'),
        (0.05, b"data: [DONE]\n\n"),
    ]
    assert [round(g, 3) for g in token_gaps(chunks)] == [0.02, 0.0]


def test_litellm_path_speaks_openai_over_http1() -> None:
    target = Target("litellm", "127.0.0.1", 4000, http2=False, openai=True)
    assert target.path == "/v1/completions"
    request = json.loads(target.body("x = "))
    assert request["prompt"] == "x = " and request["stream"] is True
    argv = h2load_command("h2load", target, 8, Path("b"), 80)
    assert "--h1" in argv and argv[-1] == "http://127.0.0.1:4000/v1/completions"
    config = litellm_config("http://127.0.0.1:11434")
    assert 'model: "ollama/starcoder2:3b"' in config
    assert 'api_base: "http://127.0.0.1:11434"' in config
    argv = litellm_command("litellm", Path("c.yaml"), "127.0.0.1", 4000)
    assert argv[argv.index("--port") + 1] == "4000" and argv[argv.index("--config") + 1] == "c.yaml"


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3.0 and math.isnan(percentile([], 50))


def run(
    path: str, concurrency: int, rps: float | None, p50: float, cpu: dict[str, float]
) -> dict[str, object]:
    return {
        "path": path,
        "concurrency": concurrency,
        "requests_per_second": rps,
        "ttft_p50_ms": p50,
        "ttft_p99_ms": p50 + 5,
        "gap_p50_ms": 20.0,
        "gap_p99_ms": 22.0,
        "cpu_ms_per_request": cpu,
        "rss_mb": {},
    }


def test_targets_from_a_result() -> None:
    result = {
        "when": "2026-01-01",
        "command": "python -m loadtests.bench --quick",
        "machine": {"summary": "2 cores"},
        "skipped": {"litellm": "not installed"},
        "runs": [
            run("direct", 1, None, 21.0, {}),
            run("region", 1, None, 21.5, {}),
            run("direct", 200, 460.0, 40.0, {"backend": 0.8}),
            run("region", 200, 450.0, 43.0, {"region": 1.4, "backend": 0.8}),
            run("router", 200, 440.0, 45.0, {"router": 1.6, "region": 1.4}),
        ],
        "cancel": [
            {
                "path": "region",
                "cancels": 50,
                "backend_closed": 50,
                "p50_ms": 1,
                "p99_ms": 4,
                "max_ms": 5,
            },
        ],
        "long_connection": [
            {
                "path": "region",
                "requests": 10,
                "succeeded": 10,
                "connections_opened": 1,
                "retries": 0,
                "concurrent_streams": 100,
                "seconds": 1.0,
            },
        ],
        "many_streams": None,
    }
    met = {name.split(" (")[0]: ok for name, _, ok in targets(result)}
    assert met == {
        "throughput >= 97% of direct": True,
        "region CPU <= 1.5 ms per request": True,
        "router hop <= 1.5 ms more CPU": False,
        "added TTFT <= 2 ms p50, <= 10 ms p99": False,
        "added TTFT <= 1 ms p50, one stream": True,
        "RST_STREAM -> backend closed p99 <= 10 ms": True,
        "one connection, 10 requests, 100 streams at once": True,
    }
    text = markdown(result)
    assert "| region | 200 | 450.0 | 97.8% |" in text and "litellm: not installed" in text
