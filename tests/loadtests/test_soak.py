"""The soak run (`python -m loadtests.soak`): its growth verdicts as plain
functions, and 18 seconds of the real thing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.soak import Thresholds, judge, slope

ROOT = Path(__file__).resolve().parent.parent.parent


def test_slope_is_least_squares() -> None:
    assert slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert slope([(0, 1), (1, 0), (2, 1), (3, 0)]) == pytest.approx(-0.2)
    assert slope([(1, 5)]) == 0.0 and slope([(1, 5), (1, 6)]) == 0.0


def test_growth_past_a_threshold_fails_and_warm_up_is_not_judged() -> None:
    # RSS leaps during warm-up (caches fill), then is flat; tasks leak 30 a minute.
    samples = [
        {"t": t, "region.rss_kib": 50_000 if t < 60 else 80_000, "region.tasks": 20 + t / 2}
        for t in range(0, 600, 10)
    ]
    verdicts = {v.series: v for v in judge(samples, 60, Thresholds())}
    assert verdicts["region.rss_kib"].ok and verdicts["region.rss_kib"].growth == pytest.approx(0)
    tasks = verdicts["region.tasks"]
    assert tasks.slope_per_minute == pytest.approx(30) and tasks.growth > 50 and not tasks.ok


def test_rss_is_judged_against_a_share_of_its_own_value() -> None:
    samples = [{"t": t * 60.0, "router.rss_kib": 100_000 + 3_000 * t} for t in range(5)]
    [rss] = judge(samples, 0, Thresholds(rss_share=0.10))
    assert rss.limit == pytest.approx(10_000) and rss.growth == pytest.approx(12_000)
    assert not rss.ok


@pytest.mark.e2e
def test_a_short_soak_passes_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.soak",
            "--minutes",
            "0.3",
            "--sample-seconds",
            "2",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| series | first | last | slope/min | growth | limit | ok |" in done.stdout
    assert "soak: passed" in done.stdout
    result = json.loads(out.read_text())
    assert result["failures"] == [] and len(result["samples"]) >= 8
    assert {"region.rss_kib", "router.fds", "region.tasks"} <= {
        v["series"] for v in result["verdicts"]
    }
    activity = result["activity"]
    for kind in ("completion_cancelled", "h1_closes", "reconnects", "bad_token_4xx", "floods_cut"):
        assert activity.get(kind, 0) > 0, (kind, activity)
