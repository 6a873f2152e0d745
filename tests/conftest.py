"""Test configuration: a deterministic, fast hypothesis profile loaded by default, and process-wide torch
settings that a test may change restored after it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings
from torch.distributions import Distribution

settings.register_profile("latentdyn", derandomize=True, deadline=None, max_examples=12)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "latentdyn"))


@pytest.fixture(autouse=True)
def _restore_distribution_validation() -> Iterator[None]:
    """The first ``torch.compile`` in a process turns ``torch.distributions`` argument validation off for the
    whole process (torch's own choice, in ``torch._dynamo``): a test that compiles must not turn it off for the
    tests after it."""
    before = Distribution._validate_args
    yield
    Distribution.set_default_validate_args(before)
