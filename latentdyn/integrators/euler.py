"""Explicit Euler: the reference integrator, with no dependency."""

from __future__ import annotations

import torch
from typing_extensions import override

from latentdyn.fields import VectorField
from latentdyn.integrators.base import Integrator

__all__ = ["EulerIntegrator"]


class EulerIntegrator(Integrator):
    """Explicit Euler on the given grid: y_{j+1} = y_j + (t_{j+1} - t_j) · f(t_j, y_j, cond).

    The step length is a float64 tensor. With a 16-bit field output (a bfloat16 or float16 state, or a field
    under a 16-bit autocast) the product (t_{j+1} - t_j) · f is taken in float32 and rounded once to the
    result's dtype, as ``ResidualCell``'s ``Δt·f`` is: multiplied directly, torch would round the step length to
    the 16-bit dtype first (bfloat16's 1/3 is 0.3340, so three sub-steps made a frame 1.00195 long), a
    systematic bias of the time scale. ``ODECell(field, EulerIntegrator())`` then computes exactly what
    ``ResidualCell(field)`` does in bfloat16 too. torchdiffeq's own fixed-grid methods (``OdeintIntegrator``)
    keep that bias with 16-bit states.
    """

    @override
    def _integrate(self, field: VectorField, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Euler states at ``ts`` (S,) from ``y0`` (B, Dy) with ``cond`` (B, Dz); returns (S, B, Dy)."""
        states = [y0]
        y = y0
        for j in range(ts.shape[0] - 1):
            y = y + _step(ts[j + 1] - ts[j], field(ts[j], y, cond), y.dtype)
            states.append(y)
        return torch.stack(states)

    def __repr__(self) -> str:
        return "EulerIntegrator()"


def _step(dt: torch.Tensor, f: torch.Tensor, state_dtype: torch.dtype) -> torch.Tensor:
    """dt · f for a 0-dim float64 ``dt``: in float32 for a 16-bit ``f`` (rounded once to the dtype of
    ``y + dt·f``), as before for a 32- or 64-bit one (dt rounded to f's dtype, then multiplied)."""
    if f.dtype not in (torch.float16, torch.bfloat16):
        return dt * f
    return (dt.to(torch.float32) * f.to(torch.float32)).to(torch.promote_types(state_dtype, f.dtype))
