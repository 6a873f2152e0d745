"""SRVP's residual cell and the general ODE cell."""

from __future__ import annotations

import torch
from typing_extensions import override

from latentdyn.cells.base import CellPath, TransitionCell, local_times, substep_time
from latentdyn.fields import VectorField, check_field_sizes, evaluate_checked
from latentdyn.integrators.base import Integrator

__all__ = ["ODECell", "ResidualCell"]


def _check_field(field: object, state_size: int, cond_size: int) -> VectorField:
    if not isinstance(field, VectorField):
        raise TypeError(
            f"field: expected a VectorField (forward(t, y, cond) -> dy/dt), got {type(field).__name__}; "
            "subclass latentdyn.VectorField, or use MLPField"
        )
    # A field that declares its sizes (MLPField does) must fit the cell's: caught here rather than as a matmul
    # shape error at the first call.
    check_field_sizes(field, {"state_size": state_size, "cond_size": cond_size}, "the cell's")
    return field


class ResidualCell(TransitionCell):
    """Residual update y ← y + Δt·f(y, z) repeated n times per frame, Δt = 1/n, z held constant (SRVP).

    The residuals Δt·f are returned exactly as added to the state, for SRVP's residual-norm penalty.

    Args:
        field: the residual function f(t, y, z) (SRVP's MLP on [y, z]).
        state_size: Dy.
        cond_size: Dz.
        n_substeps: default sub-steps per frame.

    Raises:
        TypeError: ``field`` is not a ``VectorField``, or a size or count is not an int.
        ValueError: a size or count out of range, or a field built for other sizes than (Dy, Dz).
    """

    supports_substeps = True
    has_residuals = True

    def __init__(self, field: VectorField, state_size: int, cond_size: int, n_substeps: int = 1) -> None:
        super().__init__(state_size, cond_size, n_substeps)
        self.field = _check_field(field, state_size, cond_size)

    @override
    def _path(self, y: torch.Tensor, z: torch.Tensor, n_substeps: int, frame: int) -> CellPath:
        dt = 1.0 / n_substeps
        states, residuals = [], []
        for j in range(n_substeps):
            res = dt * evaluate_checked(self.field, substep_time(frame, j, n_substeps, y), y, z)
            y = y + res
            states.append(y)
            residuals.append(res)
        return CellPath(torch.stack(states), torch.stack(residuals))


class ODECell(TransitionCell):
    """Transition by integrating dy/dt = field(t, y, z) over one frame with any integrator.

    The integrator is asked for the states on the grid ``frame + j/n`` (fixed-grid methods step exactly on
    it; adaptive ones use it as output times). Residuals are the increments between grid states, recomputed as
    differences of the states (they agree with the increments the solver added to within an ulp, not exactly).

    The integrator integrates over the frame-local grid ``0, 1/n, ..., 1`` and the field sees the absolute
    time ``frame + t`` (added in float64). So the times in an ``OdeintIntegrator``'s options (``jump_t``,
    ``step_t``, the ``t`` a ``grid_constructor`` receives) are frame-local: 0 is the start of the frame, 1 its
    end, and they apply to every frame (``{"jump_t": [0.5]}`` is a discontinuity in the middle of each frame,
    not at absolute time 0.5). A ``step_size`` option must divide the sub-step 1/n (1/(k·n) for an integer k):
    refused otherwise, when the cell is built, called with checks, or rolled out.

    Args:
        field: the vector field.
        integrator: e.g. :class:`~latentdyn.integrators.EulerIntegrator` or an ``OdeintIntegrator``.
        state_size: Dy.
        cond_size: Dz.
        n_substeps: default number of grid intervals per frame.

    Raises:
        TypeError: ``field`` is not a ``VectorField``, ``integrator`` not an ``Integrator``, or a size or count
            is not an int.
        ValueError: a size or count out of range, a field built for other sizes than (Dy, Dz), or a sub-step
            count the integrator's settings do not fit (an ``OdeintIntegrator``'s ``step_size`` that does not
            divide 1/n).
    """

    supports_substeps = True
    has_residuals = True

    def __init__(
        self,
        field: VectorField,
        integrator: Integrator,
        state_size: int,
        cond_size: int,
        n_substeps: int = 1,
    ) -> None:
        super().__init__(state_size, cond_size, n_substeps)
        if not isinstance(integrator, Integrator):
            raise TypeError(f"integrator: expected an Integrator, got {type(integrator).__name__}")
        self.field = _check_field(field, state_size, cond_size)
        self.integrator = integrator
        self.check_substeps(n_substeps)  # the default n against the integrator (unset when the base checked it)

    @override
    def check_substeps(self, n_substeps: int | None) -> int:
        """A checked sub-step count, as :meth:`TransitionCell.check_substeps`, that the integrator also fits: an
        ``OdeintIntegrator``'s ``step_size`` must divide the sub-step 1/n.

        Raises:
            TypeError: ``n_substeps`` is not an int.
            ValueError: ``n_substeps`` < 1, or a sub-step the integrator's settings do not fit.
        """
        n = super().check_substeps(n_substeps)
        integrator = self.__dict__.get("integrator")  # None while TransitionCell.__init__ checks the default
        if isinstance(integrator, Integrator):
            integrator._check_substeps(n)
        return n

    def extra_repr(self) -> str:
        """The sizes, the default sub-step count and the integrator (not a module, so not listed otherwise)."""
        return f"{super().extra_repr()}, integrator={self.integrator!r}"

    @override
    def _path(self, y: torch.Tensor, z: torch.Tensor, n_substeps: int, frame: int) -> CellPath:
        # The integrator gets the local grid j/n, exact enough in any dtype, and the field the absolute time
        # frame + t added in float64: torchdiffeq casts the times it passes to the field to the state's dtype,
        # which in bfloat16 cannot tell 100 + 1/3 from 100.5. The grid is valid by construction, so the
        # integrator's checks (which read values: a device sync per frame) are skipped.
        # The frame is a 0-dim float64 tensor, not an int attribute of _FrameField: torch.compile guards on a
        # module's int attributes, and recompiled the solve at every frame (up to its recompile limit).
        local = local_times(0, n_substeps, y)
        start = torch.full((), frame, dtype=torch.float64, device=y.device)
        out = self.integrator._integrate(_FrameField(self.field, start), y, local, z)
        return CellPath(out[1:], out[1:] - out[:-1])


class _FrameField(VectorField):
    """``field`` seen from the frame's local time: f(frame + t, y, cond), the sum taken in float64 (exact for an
    integer frame up to 2⁵³ and a local time j/n)."""

    def __init__(self, field: VectorField, frame: torch.Tensor) -> None:
        super().__init__()
        self.field = field
        self.frame = frame

    @override
    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return evaluate_checked(self.field, t.to(torch.float64) + self.frame, y, cond)
