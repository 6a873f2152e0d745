"""Test configuration: a deterministic, fast hypothesis profile loaded by default, and process-wide torch
settings that a test may change restored after it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import settings
from torch.distributions import Distribution

settings.register_profile("latentdyn", derandomize=True, deadline=None, max_examples=12)
# The default profile tries the same 12 examples every run (fast, and the same on every machine); this one explores
# new ones: HYPOTHESIS_PROFILE=explore python -m pytest --hypothesis-seed=N (the seed has no effect on the default).
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "latentdyn"))


@pytest.fixture(autouse=True)
def _restore_distribution_validation() -> Iterator[None]:
    """The first ``torch.compile`` in a process turns ``torch.distributions`` argument validation off for the
    whole process (torch's own choice, in ``torch._dynamo``): a test that compiles must not turn it off for the
    tests after it."""
    before = Distribution._validate_args
    yield
    Distribution.set_default_validate_args(before)


@pytest.fixture(autouse=True)
def _restore_thread_count() -> Iterator[None]:
    """``train(cfg)`` with ``cfg.threads`` sets torch's thread count for the whole process (as the CLI wants): the
    tests after one that trains in process must not run on its thread count."""
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
