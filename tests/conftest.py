"""Test configuration: a deterministic, fast hypothesis profile loaded by default."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("latentdyn", derandomize=True, deadline=None, max_examples=12)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "latentdyn"))
