"""Any torchdiffeq solver as a drop-in integrator."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from typing_extensions import override

from latentdyn._checks import check_choice
from latentdyn.fields import VectorField
from latentdyn.integrators.base import Integrator

__all__ = ["ODEINT_METHODS", "OdeintIntegrator"]

ODEINT_METHODS = (
    "euler",
    "midpoint",
    "heun2",
    "rk4",
    "explicit_adams",
    "implicit_adams",
    "fixed_adams",
    "heun3",
    "bosh3",
    "fehlberg2",
    "adaptive_heun",
    "dopri5",
    "dopri8",
)
"""Solver names that ``torchdiffeq.odeint`` accepts."""


class _BoundField(nn.Module):
    """f(t, y) with the conditioning bound, as torchdiffeq expects."""

    def __init__(self, field: VectorField, cond: torch.Tensor) -> None:
        super().__init__()
        self.field = field
        self.cond = cond

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.field(t, y, self.cond)


class OdeintIntegrator(Integrator):
    """Integrate with ``torchdiffeq.odeint`` (or ``odeint_adjoint``) and any of its methods.

    Args:
        method: a torchdiffeq method name, e.g. ``"euler"``, ``"rk4"``, ``"dopri5"``.
        rtol: relative tolerance of adaptive methods.
        atol: absolute tolerance of adaptive methods.
        options: extra solver options, passed through (e.g. ``{"step_size": 0.1}``).
        adjoint: use the adjoint method (O(1) memory in the number of steps). The conditioning tensor is
            added to ``adjoint_params``, so gradients with respect to it are correct.
    """

    def __init__(
        self,
        method: str = "dopri5",
        *,
        rtol: float = 1e-7,
        atol: float = 1e-9,
        options: dict[str, Any] | None = None,
        adjoint: bool = False,
    ) -> None:
        self.method = check_choice(method, "method", ODEINT_METHODS)
        self.rtol = rtol
        self.atol = atol
        self.options = dict(options or {})
        self.adjoint = adjoint

    @override
    def _integrate(
        self, field: VectorField, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        """States at ``ts`` (S,) from ``y0`` (B, Dy) with ``cond`` (B, Dz); returns (S, B, Dy)."""
        import torchdiffeq

        func = _BoundField(field, cond)
        kwargs: dict[str, Any] = dict(
            method=self.method, rtol=self.rtol, atol=self.atol, options=self.options
        )
        if self.adjoint:
            params: tuple[torch.Tensor, ...] = tuple(field.parameters())
            if cond.requires_grad:
                params = (*params, cond)
            return torchdiffeq.odeint_adjoint(func, y0, ts, adjoint_params=params, **kwargs)
        return torchdiffeq.odeint(func, y0, ts, **kwargs)

    def __repr__(self) -> str:
        return (
            f"OdeintIntegrator(method={self.method!r}, rtol={self.rtol}, atol={self.atol}, "
            f"adjoint={self.adjoint})"
        )
