"""Explicit Euler: the reference integrator, with no dependency."""

from __future__ import annotations

import torch
from typing_extensions import override

from latentdyn.fields import VectorField
from latentdyn.integrators.base import Integrator

__all__ = ["EulerIntegrator"]


class EulerIntegrator(Integrator):
    """Explicit Euler on the given grid: y_{j+1} = y_j + (t_{j+1} - t_j) · f(t_j, y_j, cond)."""

    @override
    def _integrate(self, field: VectorField, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Euler states at ``ts`` (S,) from ``y0`` (B, Dy) with ``cond`` (B, Dz); returns (S, B, Dy)."""
        states = [y0]
        y = y0
        for j in range(ts.shape[0] - 1):
            y = y + (ts[j + 1] - ts[j]) * field(ts[j], y, cond)
            states.append(y)
        return torch.stack(states)

    def __repr__(self) -> str:
        return "EulerIntegrator()"
