"""How many cases each fuzz test runs: its weight times the profile's `max_examples`.

The weights sum to 12: the "ci" profile (40) runs 480 cases in all, the "fuzz"
profile (850) 10,200 (tests/conftest.py registers both). Read when a test
module is imported, after pytest has loaded the profile.
"""

from __future__ import annotations

from hypothesis import settings

WEIGHTS = {
    "bodies": 3.0,
    "headers": 2.0,
    "other_paths": 1.0,
    "legal_sequences": 1.0,
    "raw_frames": 2.0,
    "parsers": 3.0,
}


def examples(test: str) -> int:
    """`max_examples` for `test` under the profile loaded now."""
    return max(1, round(settings.default.max_examples * WEIGHTS[test]))


def total() -> int:
    return sum(examples(name) for name in WEIGHTS)
