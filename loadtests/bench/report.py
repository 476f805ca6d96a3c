"""The benchmark's results as a Markdown table, the issue's targets checked, and
a chart of time to first token against concurrency for each path.

`result` is the JSON document the benchmark writes: `machine`, `plan`,
`skipped`, and what `runner.run_all` measured (`runs`, `cancel`,
`long_connection`, `many_streams`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PROXY_OF = {"region": "region", "router": "router", "nginx": "nginx", "litellm": "litellm"}
PROXIES = ("router", "region", "nginx", "litellm")
REFERENCE = 200  # the concurrency the targets are set at


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _by(result: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(run["path"], run["concurrency"]): run for run in result["runs"]}


def main_table(result: dict[str, Any]) -> str:
    runs = _by(result)
    lines = [
        "| path | streams | req/s | vs direct | TTFT p50 ms | TTFT p99 ms | added p50 | "
        "added p99 | gap p50 ms | gap p99 ms | proxy CPU ms/req | backend CPU ms/req | "
        "proxy RSS MB |",
        "| --- |" + " ---: |" * 12,
    ]
    for (path, concurrency), run in runs.items():
        direct = runs.get(("direct", concurrency))
        rps, share = run["requests_per_second"], "-"
        if rps and direct and direct["requests_per_second"]:
            share = f"{100 * rps / direct['requests_per_second']:.1f}%"
        added = ("-", "-")
        if path != "direct" and direct:
            added = (
                f"{run['ttft_p50_ms'] - direct['ttft_p50_ms']:+.2f}",
                f"{run['ttft_p99_ms'] - direct['ttft_p99_ms']:+.2f}",
            )
        cpu = run["cpu_ms_per_request"]
        proxy = " + ".join(f"{name} {_num(cpu.get(name))}" for name in PROXIES if name in cpu)
        rss = " + ".join(
            f"{_num(run['rss_mb'].get(name), 0)}" for name in PROXIES if name in run["rss_mb"]
        )
        lines.append(
            f"| {path} | {concurrency} | {_num(rps, 1)} | {share} | {_num(run['ttft_p50_ms'])} | "
            f"{_num(run['ttft_p99_ms'])} | {added[0]} | {added[1]} | {_num(run['gap_p50_ms'])} | "
            f"{_num(run['gap_p99_ms'])} | {proxy or '-'} | {_num(cpu.get('backend'))} | "
            f"{rss or '-'} |"
        )
    return "\n".join(lines)


def cancel_table(result: dict[str, Any]) -> str:
    lines = [
        "| path | cancels | backend closed | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["cancel"]:
        lines.append(
            f"| {row['path']} | {row['cancels']} | {row['backend_closed']} | "
            f"{_num(row['p50_ms'])} | {_num(row['p99_ms'])} | {_num(row['max_ms'])} |"
        )
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, what was measured, met?) for each of the issue's targets;
    None when this run did not measure it."""
    runs = _by(result)
    top = max((c for _, c in runs), default=0)
    at = REFERENCE if ("region", REFERENCE) in runs else top
    region, direct = runs.get(("region", at)), runs.get(("direct", at))
    router = runs.get(("router", at))
    single, single_direct = runs.get(("region", 1)), runs.get(("direct", 1))
    checks: list[tuple[str, str, bool | None]] = []
    if region and direct and region["requests_per_second"] and direct["requests_per_second"]:
        share = region["requests_per_second"] / direct["requests_per_second"]
        checks.append(
            (f"throughput >= 97% of direct ({at} streams)", f"{share:.1%}", share >= 0.97)
        )
    if region and "region" in region["cpu_ms_per_request"]:
        cpu = region["cpu_ms_per_request"]["region"]
        checks.append(("region CPU <= 1.5 ms per request", f"{cpu:.2f} ms", cpu <= 1.5))
    if router and "router" in router["cpu_ms_per_request"]:
        cpu = router["cpu_ms_per_request"]["router"]
        checks.append(("router hop <= 1.5 ms more CPU", f"{cpu:.2f} ms", cpu <= 1.5))
    if region and direct:
        p50 = region["ttft_p50_ms"] - direct["ttft_p50_ms"]
        p99 = region["ttft_p99_ms"] - direct["ttft_p99_ms"]
        checks.append(
            (
                f"added TTFT <= 2 ms p50, <= 10 ms p99 ({at} streams)",
                f"{p50:+.2f} / {p99:+.2f} ms",
                p50 <= 2 and p99 <= 10,
            )
        )
    if single and single_direct:
        p50 = single["ttft_p50_ms"] - single_direct["ttft_p50_ms"]
        checks.append(("added TTFT <= 1 ms p50, one stream", f"{p50:+.2f} ms", p50 <= 1))
    for row in result["cancel"]:
        if row["path"] in ("region", "router"):
            closed = row["backend_closed"] == row["cancels"]
            measured = f"{_num(row['p99_ms'])} ms ({row['backend_closed']}/{row['cancels']})"
            checks.append(
                (
                    f"RST_STREAM -> backend closed p99 <= 10 ms ({row['path']})",
                    measured,
                    closed and row["p99_ms"] <= 10,
                )
            )
    many = result.get("many_streams")
    if many:
        ok = many["peak_rss_mb"] <= 200 and many["succeeded"] == many["requests"]
        checks.append(
            (
                f"region RSS <= 200 MB at {many['streams']} streams",
                f"{many['peak_rss_mb']:.0f} MB (peak in flight {many['peak_in_flight']})",
                ok,
            )
        )
    for row in result.get("long_connection") or []:
        ok = (
            row["succeeded"] == row["requests"]
            and row["connections_opened"] == 1
            and row["retries"] == 0
        )
        checks.append(
            (
                f"one connection, {row['requests']} requests, "
                f"{row['concurrent_streams']} streams at once ({row['path']})",
                f"{row['succeeded']}/{row['requests']} ok, {row['connections_opened']} "
                f"connection(s), {row['retries']} retries",
                ok,
            )
        )
    return checks


def targets_table(result: dict[str, Any]) -> str:
    lines = ["| target | measured | met |", "| --- | --- | --- |"]
    for target, measured, met in targets(result):
        mark = "yes" if met else ("no" if met is not None else "not measured")
        lines.append(f"| {target} | {measured} | {mark} |")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    parts = [
        f"Measured {result['when']} with `{result['command']}` on {machine['summary']}; "
        "client, proxies and backend share the machine. Backend: the simulated Ollama "
        "in fast mode (20 NDJSON tokens, 20 ms apart). req/s from h2load; TTFT and gaps "
        "from the benchmark's own clients (HTTP/1.1 to the backend, HTTP/2 to proxies).",
        "",
        main_table(result),
        "",
        "Cancel latency: client RST_STREAM (HTTP/1.1: close) to the backend's connection closing.",
        "",
        cancel_table(result),
        "",
        targets_table(result),
    ]
    if result.get("skipped"):
        skipped = "; ".join(f"{k}: {v}" for k, v in result["skipped"].items())
        parts += ["", f"Not measured: {skipped}."]
    return "\n".join(parts) + "\n"


def chart(result: dict[str, Any], path: Path) -> bool:
    """TTFT p50 and p99 against concurrency, one line per path. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    paths = sorted({run["path"] for run in result["runs"]}, key=list(PROXY_OF).count)
    for axis, key, title in (
        (axes[0], "ttft_p50_ms", "time to first token, p50"),
        (axes[1], "ttft_p99_ms", "time to first token, p99"),
    ):
        for name in paths:
            points = sorted(
                (run["concurrency"], run[key]) for run in result["runs"] if run["path"] == name
            )
            axis.plot([c for c, _ in points], [v for _, v in points], marker="o", label=name)
        axis.set_xscale("log")
        axis.set_xlabel("concurrent streams")
        axis.set_ylabel("ms")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    axes[0].legend()
    figure.suptitle(f"Ghostgate benchmark, {result['machine']['summary']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
