"""The integrator contract: a checked public call around one unchecked method per implementation."""

from __future__ import annotations

import abc

import torch

from latentdyn._checks import check_shape, check_tensor
from latentdyn.fields import VectorField, _CheckedField

__all__ = ["Integrator"]


class Integrator(abc.ABC):
    """Solve dy/dt = field(t, y, cond) from ``y0`` and report the state at every time in ``ts``.

    ``integrator(field, y0, ts, cond)`` returns a tensor of shape (S, B, Dy) with ``out[0] == y0``, like
    ``torchdiffeq.odeint``. Fixed-grid integrators step exactly on ``ts``.

    The public call checks its arguments once, then calls :meth:`_integrate`, which subclasses implement and
    which trusts its arguments. The check of ``ts`` reads its values (a device synchronisation on GPUs), so
    code that calls an integrator in a loop on a grid it built itself (``ODECell``, once per frame) calls
    :meth:`_integrate` directly.
    """

    def __call__(self, field: VectorField, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Integrate.

        Args:
            field: the vector field.
            y0: initial state at ``ts[0]``, (B, Dy), floating point.
            ts: strictly increasing finite times, (S,) with S >= 1, floating point.
            cond: conditioning passed to every field call, (B, Dz).

        Returns:
            States at ``ts``, (S, B, Dy).

        Raises:
            TypeError: ``field`` is not a ``VectorField``; ``y0``, ``ts`` or ``cond`` is not a tensor, or ``ts``
                or ``y0`` is not floating point.
            ValueError: wrong shapes (``ts`` not 1-D or empty, ``y0`` not (B, Dy), ``cond`` not (B, Dz) with
                the same B, a field output not of the state's shape), or ``ts`` not finite and strictly
                increasing.
        """
        if not isinstance(field, VectorField):
            raise TypeError(f"field: expected a VectorField, got {type(field).__name__}")
        b = check_shape(y0, "b dy", "y0")["b"]
        if not y0.is_floating_point():
            raise TypeError(f"y0: expected a floating-point tensor, got dtype {y0.dtype}")
        check_shape(cond, "b dz", "cond", b=b)
        check_tensor(ts, "ts")
        if not ts.is_floating_point():
            raise TypeError(f"ts: expected a floating-point tensor of times, got dtype {ts.dtype}")
        if ts.dim() != 1 or ts.numel() == 0:
            raise ValueError(f"ts: expected a 1-D tensor of S >= 1 times, got shape {list(ts.shape)}")
        if not bool(torch.isfinite(ts).all()):
            raise ValueError(f"ts: expected finite times, got {ts.tolist()}")
        if not bool((ts[1:] > ts[:-1]).all()):
            raise ValueError(f"ts: expected strictly increasing times, got {ts.tolist()}")
        return self._integrate(_CheckedField(field), y0, ts, cond)

    @abc.abstractmethod
    def _integrate(self, field: VectorField, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Unchecked :meth:`__call__`: states at ``ts`` (S,) from ``y0`` (B, Dy) and ``cond`` (B, Dz), (S, B, Dy)."""
