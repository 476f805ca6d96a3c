"""The probe-driven health state machine."""

from __future__ import annotations

from router.health import RegionHealth


def _run(health: RegionHealth, probes: str) -> RegionHealth:
    for probe in probes:
        health = health.observe(probe == "+")
    return health


def test_starts_unknown_and_not_routable() -> None:
    health = RegionHealth()
    assert health.status == "unknown" and not health.up
    assert _run(health, "--").status == "unknown"


def test_first_good_probe_brings_a_new_region_up() -> None:
    assert _run(RegionHealth(), "+").up
    assert _run(RegionHealth(), "---+").status == "up"


def test_down_after_two_consecutive_misses() -> None:
    up = _run(RegionHealth(), "+")
    assert _run(up, "-").up  # one miss is forgiven
    assert not _run(up, "--").up
    assert _run(up, "--").status == "down"
    assert _run(up, "-+-+-+").up  # misses must be consecutive


def test_back_after_two_consecutive_good_probes() -> None:
    down = _run(RegionHealth(), "+--")
    assert not _run(down, "+").up
    assert _run(down, "++").up
    assert not _run(down, "+-+").up  # successes must be consecutive
    assert _run(down, "+-++").up


def test_counters_track_the_current_streak() -> None:
    health = _run(RegionHealth(), "+++-")
    assert (health.up, health.misses, health.successes) == (True, 1, 0)
    health = health.observe(True)
    assert (health.misses, health.successes) == (0, 1)


def test_thresholds_can_be_changed() -> None:
    up = _run(RegionHealth(), "+")
    assert up.observe(False, down_after=1).status == "down"
    assert up.observe(False).observe(False, down_after=3).up
