"""hypothesis strategies for the shapes and sub-step counts the contract tests draw."""

from __future__ import annotations

from typing import NamedTuple

import torch
from hypothesis import strategies as st

__all__ = [
    "Dims",
    "batch_sizes",
    "cond_sizes",
    "dims",
    "dtypes",
    "n_substeps",
    "permutations_of",
    "state_sizes",
]

batch_sizes = st.integers(min_value=1, max_value=4)
"""B."""

state_sizes = st.integers(min_value=1, max_value=5)
"""Dy."""

cond_sizes = st.integers(min_value=0, max_value=3)
"""Dz, including 0 (no conditioning)."""

n_substeps = st.integers(min_value=1, max_value=8)
"""Sub-steps per frame n (Δt = 1/n)."""

dtypes = st.sampled_from([torch.float32, torch.float64])
"""Floating dtypes every module must keep."""


class Dims(NamedTuple):
    """Sizes of one draw: batch B, state Dy, conditioning Dz, sub-steps n, dtype and a seed."""

    batch: int
    state: int
    cond: int
    n_substeps: int
    dtype: torch.dtype
    seed: int


@st.composite
def dims(draw: st.DrawFn, *, min_cond: int = 0, substeps: bool = True) -> Dims:
    """Draw a :class:`Dims`; ``substeps=False`` fixes n = 1 (discrete-time cells)."""
    return Dims(
        batch=draw(batch_sizes),
        state=draw(state_sizes),
        cond=draw(st.integers(min_value=min_cond, max_value=3)),
        n_substeps=draw(n_substeps) if substeps else 1,
        dtype=draw(dtypes),
        seed=draw(st.integers(min_value=0, max_value=2**16)),
    )


def permutations_of(k: int) -> st.SearchStrategy[list[int]]:
    """Permutations of ``range(k)``."""
    return st.permutations(list(range(k)))
