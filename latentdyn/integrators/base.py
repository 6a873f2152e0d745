"""The integrator contract: a checked public call around one unchecked method per implementation."""

from __future__ import annotations

import abc

import torch

from latentdyn._checks import check_input_dtypes, check_shape, check_tensor
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
            y0: initial state at ``ts[0]``, (B, Dy), floating point (in the dtype of the parameters of a field
                made of latentdyn's or torch's layers).
            ts: strictly increasing finite times, (S,) with S >= 1, floating point.
            cond: conditioning passed to every field call, (B, Dz), floating point, of at most ``y0``'s
                precision.

        Returns:
            States at ``ts``, (S, B, Dy).

        Raises:
            TypeError: ``field`` is not a ``VectorField``; ``y0``, ``ts`` or ``cond`` is not a tensor, or not
                floating point; for a field whose layers are latentdyn's or torch's own (one of one's own may cast
                its inputs), ``y0`` not in the dtype of the field's floating-point parameters (when they have
                one; under ``torch.autocast``, float32 or lower unless they are float64), or ``cond`` of a
                higher precision than ``y0``.
            ValueError: wrong shapes (``ts`` not 1-D or empty, ``y0`` not (B, Dy), ``cond`` not (B, Dz) with
                the same B, Dy or Dz other than the field's ``state_size`` or ``cond_size`` when it declares
                them, as :class:`~latentdyn.fields.MLPField` does; a field output not of the state's shape),
                ``ts`` not finite and strictly increasing, or times the integrator's settings do not fit (an
                ``OdeintIntegrator``'s ``step_size`` that does not divide them).
        """
        if not isinstance(field, VectorField):
            raise TypeError(f"field: expected a VectorField, got {type(field).__name__}")
        b = check_shape(y0, "b dy", "y0")["b"]
        if not y0.is_floating_point():
            raise TypeError(f"y0: expected a floating-point tensor, got dtype {y0.dtype}")
        check_shape(cond, "b dz", "cond", b=b)
        # A field that declares its sizes (MLPField does) is checked against them, as the cells check it: a
        # mismatch would otherwise fail as an unnamed matmul shape error inside the field.
        for name, x, want, attr, axis in (
            ("y0", y0, field.state_size, "state_size", "Dy"),
            ("cond", cond, field.cond_size, "cond_size", "Dz"),
        ):
            if isinstance(want, int) and x.shape[1] != want:
                raise ValueError(
                    f"{name}: expected (B, {axis}) with {axis} = {want}, the field's {attr}, got shape {list(x.shape)}"
                )
        check_input_dtypes(field, "field", y0, "y0", cond, "cond")
        check_tensor(ts, "ts")
        if not ts.is_floating_point():
            raise TypeError(f"ts: expected a floating-point tensor of times, got dtype {ts.dtype}")
        if ts.dim() != 1 or ts.numel() == 0:
            raise ValueError(f"ts: expected a 1-D tensor of S >= 1 times, got shape {list(ts.shape)}")
        if not bool(torch.isfinite(ts).all()):
            raise ValueError(f"ts: expected finite times, got {ts.tolist()}")
        if not bool((ts[1:] > ts[:-1]).all()):
            raise ValueError(f"ts: expected strictly increasing times, got {ts.tolist()}")
        self._check_times(ts)
        return self._integrate(_CheckedField(field), y0, ts, cond)

    def _check_times(self, ts: torch.Tensor) -> None:
        """Check valid times ``ts`` (S,) against the integrator's own settings (the public call; nothing here).

        Raises:
            ValueError: times the settings do not fit.
        """
        return None  # (a hook: not abstract, most integrators have nothing to check)

    def _check_substeps(self, n_substeps: int) -> None:
        """Check the integrator's settings against a cell's sub-step 1/n (nothing here).

        ``ODECell`` calls it where it checks its sub-step count (``check_substeps``: once per checked call or
        rollout, in Python, without reading a tensor), since its grid is ``0, 1/n, ..., 1``.

        Raises:
            ValueError: a sub-step the settings do not fit.
        """
        return None  # (a hook, as _check_times)

    @abc.abstractmethod
    def _integrate(self, field: VectorField, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Unchecked :meth:`__call__`: states at ``ts`` (S,) from ``y0`` (B, Dy) and ``cond`` (B, Dz), (S, B, Dy)."""
