"""The patches of library internals run only on the code they were written against.

A patch rewrites or wraps a library's private code; an upgrade that changes
that code can break it silently (a wrapper calling a method that now does
something else, a rewrite missing an upstream fix). So the source of every
original a patch replaces, and of the h2 method `_ClientH2` overrides, is
pinned here by hash: a changed library fails this test, and the patch must be
re-read against the new code before the hash is updated. At run time,
`apply()` refuses any version other than the pinned ones.
"""

from __future__ import annotations

import hashlib
import inspect
import tomllib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import h2.connection
import pytest

from gateway.server import patches
from gateway.server.patches import Patch, PatchMismatch, all_patches, check_versions
from gateway.server.patches import base as patches_base

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"
CLIENT_GOAWAY = "h2.connection.H2Connection._receive_goaway_frame"  # overridden by _ClientH2

# sha256 of inspect.getsource(original), at the versions pinned in pyproject.toml
# (hypercorn 0.18.0, h2 4.4.1, hpack 4.2.0). Update a hash only after re-checking
# the patch against the new source.
ORIGINAL_SOURCE_SHA256 = {
    # connections
    "hypercorn.asyncio.tcp_server.TCPServer.run": (
        "9437d01a916d887bd579db5d61ade2d76626a9619a448817242ed4766296ec23"
    ),
    "hypercorn.asyncio.tcp_server.TCPServer._read_data": (
        "8e7ad8f4bfca2fd27e8f698634a32519d2512b258e9168917455fada224b7e1e"
    ),
    "hypercorn.asyncio.tcp_server.TCPServer.protocol_send": (
        "06144915fc094c1b4e1dc99197a0f0fd3725f642f613a2d96acb5a1458e80031"
    ),
    # h2_guard
    "hypercorn.protocol.h2.H2Protocol._handle_events": (
        "3378aef0a2348f0def6e0044697ba0623985794f9b186efb5fbaf12733f4feb5"
    ),
    "h2.connection.H2Connection._receive_data_frame": (
        "09803eef3f564140481608e07cfdf626cdff9896090ecdc091ef7a8b8cfe6848"
    ),
    "hypercorn.asyncio.task_group.TaskGroup.spawn_app": (
        "6606faaadfc368e3935e3fb5a9a9706dbe083aa11c18ab24a805055fce797f1c"
    ),
    # reason_phrase
    "hypercorn.protocol.h11.H11Protocol._send_h11_event": (
        "5e40283daa303ec7f910e95145a9edd2b835fb54675ba1b1a560fbd58f136e19"
    ),
    # h2_sender
    "hypercorn.protocol.h2.H2Protocol.__init__": (
        "d577a96e2eb647a4c3484c2efdeca7ed9f1952d5eb27eeb091ecbc5be5a3bc41"
    ),
    "hypercorn.protocol.h2.H2Protocol.stream_send": (
        "d8fc824e2770ba5c7af707fc01e14eb2eaef377064221ec84009fa8d949fe90b"
    ),
    "hypercorn.protocol.h2.H2Protocol.send_task": (
        "3f55a53766403935c65d27c3d50c3f835cb00ac1e2e80b441fb4d9eadb2dbad9"
    ),
    "hypercorn.protocol.h2.H2Protocol._send_data": (
        "a89ce4286f36982057297d5c3302777cbcdb303c52eeb0936feaf5d95dd88eef"
    ),
    # hpack_decode
    "hpack.hpack.decode_huffman": (
        "cc3f7f031fb93b35a377fff4b4f8639cc4c7576dd8f8dd3a917d78aeee2b0de2"
    ),
    # gateway/http2/connection.py: _ClientH2
    CLIENT_GOAWAY: "adb9adfae94088c4b3a59114e4e0ce2da1f7a6db08db95ac350f5c24d0d1f249",
}


def originals() -> dict[str, tuple[str, Callable[..., Any]]]:
    """Every replaced or overridden original: qualified name -> (who replaces it, original)."""
    found: dict[str, tuple[str, Callable[..., Any]]] = {}
    for patch in all_patches():
        for name, original in patch.originals().items():
            assert name not in found, f"{name} is replaced by two patches"
            found[name] = (f"patch '{patch.name}'", original)
    goaway = h2.connection.H2Connection.__dict__["_receive_goaway_frame"]
    found[CLIENT_GOAWAY] = ("gateway/http2/connection.py's _ClientH2", goaway)
    return found


def source_sha256(function: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def current(owner: Any, name: str) -> Any:
    # The attribute as it stands on the owner itself (a class's own, or a module's).
    return owner.__dict__[name]


def restore_originals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the session's `apply()` for one test (monkeypatch re-installs afterwards)."""
    for patch in all_patches():
        for target, _ in patch.replacements:
            monkeypatch.setattr(target.owner, target.name, target.original)


def test_every_original_is_the_source_its_patch_was_written_against() -> None:
    # Never skipped: this is what stops an upgraded library from meeting a stale patch.
    found = originals()
    unhashed = sorted(found.keys() - ORIGINAL_SOURCE_SHA256.keys())
    assert not unhashed, (
        f"originals with no hash in ORIGINAL_SOURCE_SHA256: {unhashed}; add the sha256 "
        "of each one's source, at the pinned version the patch was written against"
    )
    stale = sorted(ORIGINAL_SOURCE_SHA256.keys() - found.keys())
    assert not stale, f"hashes of originals nothing replaces any more: {stale}; remove them"
    changed = [
        f"{name} (replaced by {who}): sha256 {sha} instead of {ORIGINAL_SOURCE_SHA256[name]}"
        for name, (who, original) in sorted(found.items())
        if (sha := source_sha256(original)) != ORIGINAL_SOURCE_SHA256[name]
    ]
    assert not changed, (
        "the installed library's source changed under a patch:\n  "
        + "\n  ".join(changed)
        + "\nRe-check each patch against the new library version (and fix it), then "
        "update its pins in pyproject.toml and Patch.requires, and the hash here."
    )


def test_every_required_version_is_pinned_in_pyproject() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins: dict[str, str] = {}
    for dependency in dependencies:
        name, exact, version = dependency.partition("==")
        if exact:
            pins[name.strip().lower()] = version.strip()
    for patch in all_patches():
        assert patch.replacements, f"patch '{patch.name}' replaces nothing"
        for dist, version in patch.requires.items():
            assert pins.get(dist.lower()) == version, (
                f"patch '{patch.name}' needs {dist}=={version}"
            )
    for dist in ("h2", "hpack", "hyperframe"):  # what _ClientH2 subclasses and imports
        assert pins.get(dist) == metadata.version(dist)


def fake_version(dist: str, reported: str | None) -> Callable[[str], str]:
    real = metadata.version

    def version(name: str) -> str:
        if name.lower() != dist:
            return real(name)
        if reported is None:
            raise metadata.PackageNotFoundError(name)
        return reported

    return version


def hpack_patches() -> list[Patch]:
    return [patch for patch in all_patches() if "hpack" in patch.requires]


@pytest.mark.parametrize("reported", ["4.3.0", None])
def test_check_versions_names_the_library_and_both_versions(
    monkeypatch: pytest.MonkeyPatch, reported: str | None
) -> None:
    monkeypatch.setattr(patches_base.metadata, "version", fake_version("hpack", reported))
    for patch in hpack_patches():
        with pytest.raises(PatchMismatch) as caught:
            check_versions(patch)
        message = str(caught.value)
        assert f"'{patch.name}'" in message and "hpack==4.2.0" in message
        found = f"hpack {reported} is installed" if reported else "hpack is not installed"
        assert found in message


def test_a_mismatch_installs_no_patch_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    # hpack is required by the last two patches only: checking and installing
    # patch by patch would have installed the first two before failing.
    restore_originals(monkeypatch)
    monkeypatch.setattr(patches_base.metadata, "version", fake_version("hpack", "4.3.0"))
    assert [p.name for p in all_patches()][:2] == ["connections", "reason-phrase"]
    with pytest.raises(PatchMismatch, match=r"hpack==4\.2\.0, but hpack 4\.3\.0 is installed"):
        patches.apply()
    for patch in all_patches():
        assert not patch.installed, patch.name
        for target, _ in patch.replacements:
            assert current(target.owner, target.name) is target.original, target.qualname


def test_apply_installs_every_patch_and_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    restore_originals(monkeypatch)
    assert not any(patch.installed for patch in all_patches())
    before = {name: original for name, (_, original) in originals().items()}
    patches.apply()
    assert all(patch.installed for patch in all_patches())
    patches.apply()
    for patch in all_patches():
        assert patch.installed, patch.name
        for target, new in patch.replacements:
            assert new is not target.original
            assert current(target.owner, target.name) is new, target.qualname
    assert {name: original for name, (_, original) in originals().items()} == before
