"""Hypercorn, h2 and hpack patched in place: one module per patch, applied by `apply()`.

Patching a library's internals is a last resort; each patch here exists because
a measured defect or cost had no public way around it (docs/ARCHITECTURE.md,
"Patches"). The rules every patch follows:

- it replaces named attributes of named classes or modules, listed in its
  `PATCH.replaces`, and keeps the originals it wraps (`PATCH.originals()`);
- it names the exact versions it was written against (`PATCH.requires`); the
  same versions are pinned in pyproject.toml, and `apply()` refuses to start
  a process on any other installed version (`PatchMismatch`), so an upgrade
  fails loudly at start-up instead of misbehaving under load;
- tests/gateway/server/test_patches.py holds a hash of the source of every
  replaced original, so an upgrade breaks that test before it reaches a
  region.

`apply()` is idempotent and is called by every process that serves (region,
router) and by the test suite's in-process servers.
"""

from __future__ import annotations

from gateway.server.patches.base import Patch, PatchMismatch, check_versions

__all__ = ["Patch", "PatchMismatch", "all_patches", "apply", "check_versions"]


def all_patches() -> tuple[Patch, ...]:
    """Every patch (imported here, not at package import: they import hypercorn and h2)."""
    from gateway.server.patches import (
        connections,
        h2_guard,
        h2_sender,
        hpack_decode,
        reason_phrase,
    )

    return (
        connections.PATCH,
        reason_phrase.PATCH,
        h2_sender.PATCH,
        h2_guard.PATCH,
        hpack_decode.PATCH,
    )


def apply() -> None:
    """Check every patch's library versions, then install them all (idempotent).

    Raises `PatchMismatch` naming the library, the version found and the one
    required, before anything is replaced."""
    patches = all_patches()
    for patch in patches:
        check_versions(patch)
    for patch in patches:
        patch.install()
