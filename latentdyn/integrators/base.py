"""The integrator contract."""

from __future__ import annotations

import abc

import torch

from latentdyn.fields import VectorField

__all__ = ["Integrator"]


class Integrator(abc.ABC):
    """Solve dy/dt = field(t, y, cond) from ``y0`` and report the state at every time in ``ts``.

    ``integrator(field, y0, ts, cond)`` returns a tensor of shape (S, B, Dy) with ``out[0] == y0``, like
    ``torchdiffeq.odeint``. Fixed-grid integrators step exactly on ``ts``.
    """

    @abc.abstractmethod
    def __call__(
        self, field: VectorField, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        """Integrate.

        Args:
            field: the vector field.
            y0: initial state at ``ts[0]``, (B, Dy).
            ts: increasing times, (S,).
            cond: conditioning passed to every field call, (B, Dz).

        Returns:
            States at ``ts``, (S, B, Dy).
        """
