"""Test problems with known solutions (in the spirit of torchdiffeq's ``tests/problems.py``).

* :class:`LinearField`: dy/dt = A y + C z, solved exactly by :func:`linear_solution` with a matrix exponential
  of the augmented system d/dt [y; z] = [[A, C], [0, 0]] [y; z].
* :class:`SmoothField`: a small smooth (tanh) network that depends on the conditioning, for gradient checks.
* :class:`TimeModulatedField`: wraps a field and scales it by 1 + sin(t)/2, so the time each sub-step sees matters.
"""

from __future__ import annotations

import torch
from torch import nn

from latentdyn.fields import VectorField

__all__ = [
    "LinearField",
    "SmoothField",
    "TimeModulatedField",
    "linear_solution",
    "rotation_decay_matrix",
]


def rotation_decay_matrix(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A fixed 3×3 matrix A with eigenvalues −0.2 ± 2i and −0.5: a damped rotation plus a decay, (3, 3)."""
    return torch.tensor([[-0.2, 2.0, 0.0], [-2.0, -0.2, 0.3], [0.0, 0.0, -0.5]], dtype=dtype)


class LinearField(VectorField):
    """Affine field dy/dt = A y + C z (time ignored), row-vector convention: y (B, Dy) ↦ y Aᵀ + z Cᵀ.

    Args:
        a: A, (Dy, Dy).
        c: C, (Dy, Dz); ``None`` means Dz = 0. Both are parameters, so gradients can reach them.
    """

    def __init__(self, a: torch.Tensor, c: torch.Tensor | None = None) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())
        dy = a.shape[0]
        self.c = nn.Parameter(c.clone() if c is not None else a.new_zeros(dy, 0))

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """y Aᵀ + z Cᵀ for y (B, Dy) and cond (B, Dz); returns (B, Dy)."""
        return y @ self.a.T + cond @ self.c.T


def linear_solution(
    a: torch.Tensor, c: torch.Tensor | None, y0: torch.Tensor, cond: torch.Tensor, ts: torch.Tensor
) -> torch.Tensor:
    """Exact solution of dy/dt = A y + C z at times ``ts`` (S,) from y(ts[0]) = y0 (B, Dy); returns (S, B, Dy).

    Uses exp(M (t − t₀)) on the augmented state [y; z] with M = [[A, C], [0, 0]].
    """
    dy = a.shape[0]
    dz = cond.shape[-1]
    c = c if c is not None else a.new_zeros(dy, 0)
    m = a.new_zeros(dy + dz, dy + dz)
    m[:dy, :dy] = a
    m[:dy, dy:] = c
    s0 = torch.cat([y0, cond], dim=-1)
    out = [s0 @ torch.linalg.matrix_exp(m * (t - ts[0])).T for t in ts]
    return torch.stack(out)[..., :dy]


class SmoothField(VectorField):
    """Smooth conditioned field f(y, z) = V tanh(W y + U z + b) (C^∞, so gradient checks see no kinks).

    Args:
        state_size: Dy.
        cond_size: Dz.
        hidden_size: width of the tanh layer.
        generator: seeds the N(0, 1/fan_in) weights.
    """

    def __init__(
        self, state_size: int, cond_size: int, hidden_size: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        fan_in = state_size + cond_size
        self.w = nn.Parameter(torch.randn(hidden_size, state_size, generator=generator) / fan_in**0.5)
        self.u = nn.Parameter(torch.randn(hidden_size, cond_size, generator=generator) / fan_in**0.5)
        self.b = nn.Parameter(0.1 * torch.randn(hidden_size, generator=generator))
        self.v = nn.Parameter(torch.randn(state_size, hidden_size, generator=generator) / hidden_size**0.5)

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """V tanh(W y + U z + b) for y (B, Dy) and cond (B, Dz); returns (B, Dy)."""
        return torch.tanh(y @ self.w.T + cond @ self.u.T + self.b) @ self.v.T


class TimeModulatedField(VectorField):
    """Non-autonomous field (1 + sin(t)/2) · inner(t, y, z): the time passed to every evaluation matters."""

    def __init__(self, inner: VectorField) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Scaled inner field for scalar t, y (B, Dy) and cond (B, Dz); returns (B, Dy)."""
        return (1.0 + 0.5 * torch.sin(t)) * self.inner(t, y, cond)
