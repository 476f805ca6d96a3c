"""What the router's /readyz tells whom: ready, draining and the regions up to
anyone; the region count, the store and the signing kid to an operator only."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.auth.tokens import mint
from gateway.operations import ANYONE, OPERATOR, Asker, Listener
from router.app import create_app
from router.health import RegionHealth
from router.prober import RegionView
from router.regions import DEFAULT_REGIONS
from router.services import RouterServices
from router.settings import RouterSettings

MINIMAL = {"ready", "draining", "regions_up"}


def router(tmp_path: Path) -> RouterServices:
    _, services = create_app(RouterSettings(state_dir=tmp_path))
    services.keyring.load()  # the lifespan's first step: keys, and the verifier's
    for view in services.prober.views.values():
        view.observe(True, {"capacity": 4}, 1.0, "")
    return services


def bearer(services: RouterServices, scope: str) -> str:
    return "Bearer " + mint(services.keyring.signer(), "ops", scope=scope)[0]


def test_anyone_learns_only_which_regions_are_up(tmp_path: Path) -> None:
    services = router(tmp_path)
    ready, report = services.readiness(ANYONE)
    assert ready and set(report) == MINIMAL
    assert set(report["regions_up"]) == set(services.prober.views)  # type: ignore[arg-type]
    assert services.keyring.signer_kid not in json.dumps(report)
    for asker in (
        Asker(Listener.COMBINED, bearer(services, "completions chat")),
        Asker(Listener.COMBINED, "Bearer not.a.token"),
        Asker(Listener.PUBLIC, bearer(services, "admin")),
    ):
        assert set(services.readiness(asker)[1]) == MINIMAL


def test_an_operator_gets_the_full_report(tmp_path: Path) -> None:
    services = router(tmp_path)
    for asker in (Asker(Listener.COMBINED, bearer(services, "admin")), OPERATOR):
        ready, report = services.readiness(asker)
        assert ready and MINIMAL < set(report)
        assert report["signing_kid"] == services.keyring.signer_kid
        assert report["regions"] == len(services.prober.views) and "store" in report


def test_the_prober_reads_its_fields_from_a_regions_minimal_report() -> None:
    """The fields a region gives anyone are the ones `RegionView.observe` reads."""
    view = RegionView(DEFAULT_REGIONS[0], RegionHealth())
    minimal = {
        "ready": True,
        "draining": False,
        "simulated": True,
        "inflight": 3,
        "queued": 1,
        "capacity": 8,
        "waste": {"cancelled": {"superseded": 2}, "saved_tokens": 40, "from_memory": 1},
    }
    view.observe(True, minimal, 1.0, "")
    state = view.state()
    assert (state.up, state.draining, state.inflight, state.queued, state.capacity) == (
        True,
        False,
        3,
        1,
        8,
    )
    assert view.simulated and view.waste["saved_tokens"] == 40
