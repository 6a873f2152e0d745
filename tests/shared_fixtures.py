"""Where the tests find the reference fixtures of ``shared/fixtures`` (the official SRVP checkpoint, inputs and
outputs, and the official state-dict layouts), one lookup for every test file.

In order: the folder named by ``LATENTDYN_FIXTURES``; ``shared/fixtures`` inside the repository (where
``benchmarks/README.md`` puts it on a device machine); ``shared/fixtures`` beside the repository root. Tests
that need a missing fixture skip, saying where they looked; with ``LATENTDYN_REQUIRE_FIXTURES=1`` they run and
fail instead, so that a machine meant to have the fixtures cannot lose those checks silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = (
    [Path(os.environ["LATENTDYN_FIXTURES"]).expanduser()]
    if os.environ.get("LATENTDYN_FIXTURES")
    else [ROOT / "shared" / "fixtures", ROOT.parent / "shared" / "fixtures"]
)
FIXTURES = next((c for c in _CANDIDATES if c.is_dir()), _CANDIDATES[-1])
"""The fixtures folder (the last place looked when none exists)."""
REQUIRED = os.environ.get("LATENTDYN_REQUIRE_FIXTURES") == "1"


def needs(path: Path, what: str) -> pytest.MarkDecorator:
    """Skip unless ``path`` exists (or ``LATENTDYN_REQUIRE_FIXTURES=1``: run, and fail where it is missing)."""
    looked = " or ".join(str(c) for c in _CANDIDATES)
    return pytest.mark.skipif(
        not path.exists() and not REQUIRED,
        reason=f"{what} not found ({path}; looked in {looked}; LATENTDYN_FIXTURES names another folder)",
    )
