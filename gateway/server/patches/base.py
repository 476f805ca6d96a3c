"""What a patch of a library's internals declares, and the version check that guards it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any


class PatchMismatch(RuntimeError):
    """An installed library is not the version a patch was written against."""


@dataclass(frozen=True, slots=True)
class Target:
    """One replaced attribute: `owner.name`, and what stood there before."""

    owner: Any  # a class or a module
    name: str
    original: Any

    @property
    def qualname(self) -> str:
        module = getattr(self.owner, "__module__", None) or self.owner.__name__
        if isinstance(self.owner, type):
            return f"{module}.{self.owner.__qualname__}.{self.name}"
        return f"{module}.{self.name}"


@dataclass(slots=True)
class Patch:
    """A named patch: the versions it needs, and the attributes it replaces.

    `replacements` maps each target to its new value; the original is captured
    when the patch module is imported, before anything is installed."""

    name: str
    why: str  # the defect or cost, and the upstream issue where there is one
    requires: Mapping[str, str]  # distribution name -> exact version
    replacements: list[tuple[Target, Any]] = field(default_factory=list)

    def replace(self, owner: Any, name: str, new: Any) -> Any:
        """Register `owner.name = new`; returns the original, for the new code to call."""
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        self.replacements.append((Target(owner, name, original), new))
        return original

    def originals(self) -> dict[str, Callable[..., Any]]:
        """Every replaced original by qualified name (what the hash test reads)."""
        return {target.qualname: target.original for target, _ in self.replacements}

    @property
    def installed(self) -> bool:
        return all(_current(t) is new for t, new in self.replacements)

    def install(self) -> None:
        """Put every replacement in place (idempotent)."""
        for target, new in self.replacements:
            setattr(target.owner, target.name, new)


def _current(target: Target) -> Any:
    owner = target.owner
    return (
        owner.__dict__.get(target.name) if isinstance(owner, type) else getattr(owner, target.name)
    )


def check_versions(patch: Patch) -> None:
    """Raise `PatchMismatch` unless every library `patch` touches is the pinned version."""
    for dist, wanted in patch.requires.items():
        try:
            found = metadata.version(dist)
        except metadata.PackageNotFoundError:
            raise PatchMismatch(
                f"Ghostgate's patch '{patch.name}' was written for {dist}=={wanted}, "
                f"but {dist} is not installed. Install the versions pinned in "
                f"pyproject.toml (pip install -e .)."
            ) from None
        if found != wanted:
            raise PatchMismatch(
                f"Ghostgate's patch '{patch.name}' was written for {dist}=={wanted}, "
                f"but {dist} {found} is installed. Install the versions pinned in "
                f"pyproject.toml (pip install -e .), or re-check the patch against "
                f"{dist} {found} and update its pins and tests/gateway/server/test_patches.py."
            )
