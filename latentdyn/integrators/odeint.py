"""Any torchdiffeq solver as a drop-in integrator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from typing_extensions import override

from latentdyn._checks import check_bool, check_choice, check_positive_real
from latentdyn.fields import VectorField
from latentdyn.integrators.base import Integrator

__all__ = ["ADAPTIVE_METHODS", "ODEINT_METHODS", "OdeintIntegrator"]

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

ADAPTIVE_METHODS = ("bosh3", "fehlberg2", "adaptive_heun", "dopri5", "dopri8")
"""The methods among :data:`ODEINT_METHODS` that choose their steps from ``rtol`` and ``atol``."""


class _BoundField(nn.Module):
    """f(t, y) with the conditioning bound, as torchdiffeq expects."""

    def __init__(self, field: VectorField, cond: torch.Tensor) -> None:
        super().__init__()
        self.field = field
        self.cond = cond

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.field(t, y, self.cond)


class _CarriedCondField(nn.Module):
    """f on the state (y, c) with dc/dt = 0: the conditioning travels as part of the state (adjoint mode).

    As an input of the solve rather than a captured tensor, c gets its gradient from the adjoint ODE, and the
    vector-Jacobian products of the backward pass stop at it: a captured c that depends on the field's own
    parameters (z_t from a prior on y_{t-1}) would have those parameters' gradients counted twice.
    """

    def __init__(self, field: VectorField) -> None:
        super().__init__()
        self.field = field

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        y, c = state
        return self.field(t, y, c), torch.zeros_like(c)


def _state_part_norm(
    norm: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[tuple[torch.Tensor, ...]], torch.Tensor]:
    """A norm of the y part of a (y, c) state: step sizes are chosen exactly as for y alone."""

    def on_y(state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return norm(state[0])

    return on_y


def _rms(x: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's default norm of a single-tensor state."""
    return x.abs().pow(2).mean().sqrt()


class OdeintIntegrator(Integrator):
    """Integrate with ``torchdiffeq.odeint`` (or ``odeint_adjoint``) and any of its methods.

    An empty batch (B = 0) gives empty states (S, 0, Dy) with every method, without calling the solver (whose
    step-size control and Adams corrector cannot measure an empty state).

    Args:
        method: a torchdiffeq method name, e.g. ``"euler"``, ``"rk4"``, ``"dopri5"``.
        rtol: relative tolerance of adaptive methods (:data:`ADAPTIVE_METHODS`); with a bfloat16 state it must
            be at least the dtype's eps, 2⁻⁷ (a ``ValueError`` otherwise: below it the solver cannot converge).
        atol: absolute tolerance of adaptive methods. Adaptive methods refuse float16 states, whose range
            torchdiffeq's error norm overflows.
        options: extra solver options, passed through (e.g. ``{"step_size": 0.1}``).
        adjoint: use the adjoint method (O(1) memory in the number of steps). A conditioning tensor that
            requires a gradient is carried as a constant part of the state, (y, z) with dz/dt = 0, so it gets its
            gradient from the adjoint ODE and what produced it (even the field's own parameters, through earlier
            frames) gets exactly the backprop gradient.

    Raises:
        TypeError: ``method`` not a string, ``rtol``/``atol`` not real numbers, ``options`` not a dict or None,
            ``adjoint`` not a bool.
        ValueError: an unknown method, or a tolerance that is not positive and finite. When integrating: a
            bfloat16 state with ``rtol`` below its eps, or a float16 state, with an adaptive method.
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
        rtol, atol = check_positive_real(rtol, "rtol"), check_positive_real(atol, "atol")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options: expected a dict of solver options or None, got {type(options).__name__}")
        adjoint = check_bool(adjoint, "adjoint")
        self.rtol = rtol
        self.atol = atol
        self.options = dict(options or {})
        self.adjoint = adjoint

    @override
    def _integrate(self, field: VectorField, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """States at ``ts`` (S,) from ``y0`` (B, Dy) with ``cond`` (B, Dz); returns (S, B, Dy)."""
        import torchdiffeq

        if self.method in ADAPTIVE_METHODS and y0.dtype == torch.float16:
            # torchdiffeq's error norm squares errors scaled by the tolerances, which overflows float16 (max
            # 65504) for most tolerances: the step size collapses to 0 ("underflow in dt").
            raise ValueError(
                f"y0: the adaptive method {self.method!r} cannot step a float16 state reliably (its error norm "
                "overflows float16); use a fixed-step method, or a bfloat16 or float32 state"
            )
        if self.method in ADAPTIVE_METHODS and torch.finfo(y0.dtype).bits <= 16:
            eps = torch.finfo(y0.dtype).eps
            if self.rtol < eps:
                # Asked for more than the dtype resolves, an adaptive solver shrinks its step until it underflows:
                # torchdiffeq then stalls for minutes and returns garbage (bfloat16) or asserts (float16).
                raise ValueError(
                    f"rtol: {self.rtol:g} is below the resolution of the {y0.dtype} state (eps {eps:g}); "
                    f"use rtol >= {eps:g} with {self.method!r}, a fixed-step method, or a float32 state"
                )
        if y0.numel() == 0:
            # No sequence (B = 0): the error norm of an empty state is a mean over nothing, NaN, so adaptive
            # methods shrink the step until torchdiffeq asserts ("underflow in dt"), and the Adams methods take
            # a max over it. Nothing moves: every time holds the empty y0.
            return y0.unsqueeze(0).expand(ts.shape[0], *y0.shape).clone()
        func = _BoundField(field, cond)
        kwargs: dict[str, Any] = dict(method=self.method, rtol=self.rtol, atol=self.atol, options=self.options)
        if self.adjoint:
            params = tuple(field.parameters())
            if not cond.requires_grad:
                return torchdiffeq.odeint_adjoint(func, y0, ts, adjoint_params=params, **kwargs)
            # z needs a gradient: it rides in the state (see _CarriedCondField); the norm looks at y only, so the
            # forward solve takes the steps it takes without the adjoint.
            kwargs["options"] = {**self.options, "norm": _state_part_norm(self.options.get("norm", _rms))}
            carried = _CarriedCondField(field)
            ys, _ = torchdiffeq.odeint_adjoint(carried, (y0, cond), ts, adjoint_params=params, **kwargs)
            return ys
        return torchdiffeq.odeint(func, y0, ts, **kwargs)

    def __repr__(self) -> str:
        options = f", options={self.options!r}" if self.options else ""
        return (
            f"OdeintIntegrator(method={self.method!r}, rtol={self.rtol}, atol={self.atol}{options}, "
            f"adjoint={self.adjoint})"
        )
