"""The transition-cell contract: advance a latent state by one frame given the frame's noise z."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Literal, NamedTuple, overload

import torch
from torch import nn

from latentdyn._checks import check_bool, check_input_dtypes, check_int, check_positive_int, check_shape
from latentdyn._repr import fields_repr

__all__ = ["CellPath", "TransitionCell"]


class CellPath(NamedTuple):
    """Every sub-step of one frame transition.

    Attributes:
        states: states after each sub-step, (n, B, Dy); ``states[-1]`` is the next frame's state.
        residuals: the increments y_{j+1} − y_j of each sub-step, (n, B, Dy) (for SRVP, Δt·f exactly), or
            ``None`` for cells that are not of residual form (MLP, GRU).
    """

    states: torch.Tensor
    residuals: torch.Tensor | None

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


class TransitionCell(nn.Module, abc.ABC):
    """Abstract transition y_{t+1} = cell(y_t, z_{t+1}) over one frame, possibly in ``n_substeps`` sub-steps.

    Subclasses implement :meth:`_path`; the public :meth:`path` and :meth:`forward` check their inputs.

    Attributes:
        state_size: Dy.
        cond_size: Dz (0 when the cell takes no noise).
        n_substeps: default number of sub-steps per frame.
        supports_substeps: whether ``n_substeps`` other than 1 are meaningful (continuous-time cells).
        has_residuals: whether :meth:`path` reports the increments of its sub-steps (else ``None``).

    Args:
        state_size: Dy, at least 1.
        cond_size: Dz, the size of the condition (0 for a cell without noise).
        n_substeps: default sub-steps per frame, at least 1 (exactly 1 for discrete-time cells).

    Raises:
        TypeError: a size or count that is not an int.
        ValueError: a size or count out of range, or ``n_substeps`` other than 1 for a discrete-time cell.
    """

    supports_substeps: bool = False
    has_residuals: bool = False

    def __init__(self, state_size: int, cond_size: int, n_substeps: int = 1) -> None:
        super().__init__()
        self.state_size = check_positive_int(state_size, "state_size")
        self.cond_size = check_positive_int(cond_size, "cond_size", minimum=0)
        self.n_substeps = self.check_substeps(n_substeps)

    def extra_repr(self) -> str:
        """The sizes and the default sub-step count, shown by ``print(cell)``."""
        return f"state_size={self.state_size}, cond_size={self.cond_size}, n_substeps={self.n_substeps}"

    def check_substeps(self, n_substeps: int | None) -> int:
        """A checked sub-step count: ``n_substeps``, or the cell's default when it is ``None``.

        Raises:
            TypeError: ``n_substeps`` is not an int.
            ValueError: ``n_substeps`` < 1, or other than 1 for a discrete-time cell.
        """
        if n_substeps is None:
            return self.n_substeps
        n_substeps = check_positive_int(n_substeps, "n_substeps")
        if n_substeps != 1 and not self.supports_substeps:
            raise ValueError(
                f"n_substeps: {type(self).__name__} is a discrete-time cell and takes exactly 1 step per "
                f"frame, got {n_substeps}"
            )
        return n_substeps

    def check_inputs(self, y: torch.Tensor, z: torch.Tensor) -> None:
        """Check a state y (B, Dy) and a condition z (B, Dz) against the cell's sizes and dtype.

        Shapes and dtypes only (no value is read). Both floating point; and when the cell's layers are
        latentdyn's or torch's own (a field of one's own may cast its inputs: :func:`latentdyn._checks.own_networks`)
        the dtypes follow :meth:`LatentSSM.rollout <latentdyn.ssm.LatentSSM.rollout>`: ``y`` in the dtype of the
        cell's floating-point parameters (when they have one; under ``torch.autocast``, which casts the inputs,
        float32 or lower unless the parameters are float64), and ``z`` not of a higher precision than ``y`` (a
        lower one is promoted when concatenated).

        Raises:
            TypeError: ``y`` or ``z`` is not a tensor or not floating point; ``y`` not in the dtype of the cell's
                parameters (see above); ``z`` of a higher precision than ``y`` (e.g. float64 for a float32
                state).
            ValueError: their shapes do not match (B, Dy) and (B, Dz) with the same B.
        """
        b = check_shape(y, "b dy", "y", dy=self.state_size)["b"]
        check_shape(z, "b dz", "z", b=b, dz=self.cond_size)
        check_input_dtypes(self, "cell", y, "y", z, "z")

    def path(self, y: torch.Tensor, z: torch.Tensor, n_substeps: int | None = None, frame: int = 0) -> CellPath:
        """All sub-step states of the transition from frame ``frame`` to ``frame + 1``.

        Args:
            y: state at integer time ``frame``, (B, Dy).
            z: the transition's noise, held constant over the frame, (B, Dz).
            n_substeps: sub-steps per frame (Δt = 1/n); defaults to the cell's.
            frame: integer time of ``y`` (time-dependent fields see ``frame + j/n``).

        Returns:
            The sub-step states (n, B, Dy) and residuals.

        Raises:
            TypeError: an argument of the wrong kind (``y`` or ``z`` not a floating-point tensor, or of a dtype
                :meth:`check_inputs` refuses; ``n_substeps`` or ``frame`` not an int), or a ``_path`` that does
                not return a ``CellPath``.
            ValueError: shapes that do not match the cell's sizes, or a bad sub-step count.
        """
        self.check_inputs(y, z)
        frame = check_int(frame, "frame")
        n = self.check_substeps(n_substeps)
        return self.check_path(self._path(y, z, n, frame), n, y.shape[0])

    def check_path(self, path: CellPath, n_substeps: int, batch_size: int) -> CellPath:
        """Check what ``_path`` returned and return it.

        It must be a ``CellPath`` whose states are (n, B, Dy), with residuals of the same shape exactly when the
        class says so (``has_residuals``). Shapes only, no values are read.

        Raises:
            TypeError: not a ``CellPath``, or residuals present or missing against ``has_residuals``.
            ValueError: states or residuals of another shape than (n, B, Dy).
        """
        name = type(self).__name__
        if not isinstance(path, CellPath):
            raise TypeError(f"cell: {name}._path must return a CellPath(states, residuals), got {type(path).__name__}")
        if (path.residuals is not None) != self.has_residuals:
            got = "None" if path.residuals is None else "a tensor"
            raise TypeError(
                f"cell: {name}._path returned residuals={got}, but {name}."
                f"has_residuals is {self.has_residuals}; set the class attribute has_residuals = "
                f"{path.residuals is not None}"
            )
        want = (n_substeps, batch_size, self.state_size)
        for part in ("states", "residuals"):
            value = getattr(path, part)
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"cell: {name}._path returned {part} of type {type(value).__name__}, not a tensor")
            if tuple(value.shape) != want:
                raise ValueError(
                    f"cell: {name}._path returned {part} of shape {list(value.shape)}, expected (n, B, Dy) = "
                    f"{list(want)}: one entry per sub-step (n_substeps={n_substeps}), even for a single step"
                )
        return path

    @overload
    def forward(
        self,
        y: torch.Tensor,
        z: torch.Tensor,
        n_substeps: int | None = None,
        frame: int = 0,
        *,
        return_path: Literal[False] = False,
        check: bool = True,
    ) -> torch.Tensor: ...

    @overload
    def forward(
        self,
        y: torch.Tensor,
        z: torch.Tensor,
        n_substeps: int | None = None,
        frame: int = 0,
        *,
        return_path: Literal[True],
        check: bool = True,
    ) -> CellPath: ...

    @overload
    def forward(
        self,
        y: torch.Tensor,
        z: torch.Tensor,
        n_substeps: int | None = None,
        frame: int = 0,
        *,
        return_path: bool = False,
        check: bool = True,
    ) -> torch.Tensor | CellPath: ...

    def forward(
        self,
        y: torch.Tensor,
        z: torch.Tensor,
        n_substeps: int | None = None,
        frame: int = 0,
        *,
        return_path: bool = False,
        check: bool = True,
    ) -> torch.Tensor | CellPath:
        """``cell(y, z)``: the state one frame later, (B, Dy), from y (B, Dy) and z (B, Dz).

        :meth:`LatentSSM.rollout <latentdyn.ssm.LatentSSM.rollout>` calls the cell this way too, once per
        transition, as ``cell(y, cond, n, frame, return_path=True, check=False)``: forward hooks on the cell,
        ``cell.compile()`` and ``torch.compile(cell)`` apply within a rollout, and a hook then sees the
        :class:`CellPath` as the output.

        Args:
            y: state at integer time ``frame``, (B, Dy).
            z: the transition's noise, (B, Dz).
            n_substeps: sub-steps per frame; defaults to the cell's.
            frame: integer time of ``y``.
            return_path: return the whole :class:`CellPath` (what :meth:`path` returns) instead of its last
                state.
            check: check the arguments and what :meth:`_path` returns, as :meth:`path` does. ``False`` (the
                rollout, which checks once) trusts them: ``n_substeps`` and ``frame`` must then be valid ints.

        Returns:
            The next state (B, Dy), or the :class:`CellPath` with ``return_path``.

        Raises:
            TypeError: ``return_path`` or ``check`` is not a bool (a string ``"False"`` would read as True);
                (with ``check``) as :meth:`path`.
            ValueError: (with ``check``) as :meth:`path`.
        """
        return_path = check_bool(return_path, "return_path", "True: return the whole CellPath")
        if check_bool(check, "check", "False: trust the arguments, as the rollout does"):
            path = self.path(y, z, n_substeps, frame)
        else:
            path = self._path(y, z, self.n_substeps if n_substeps is None else n_substeps, frame)
        return path if return_path else path.states[-1]

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        @overload
        def __call__(
            self,
            y: torch.Tensor,
            z: torch.Tensor,
            n_substeps: int | None = None,
            frame: int = 0,
            *,
            return_path: Literal[False] = False,
            check: bool = True,
        ) -> torch.Tensor: ...

        @overload
        def __call__(
            self,
            y: torch.Tensor,
            z: torch.Tensor,
            n_substeps: int | None = None,
            frame: int = 0,
            *,
            return_path: Literal[True],
            check: bool = True,
        ) -> CellPath: ...

        @overload
        def __call__(
            self,
            y: torch.Tensor,
            z: torch.Tensor,
            n_substeps: int | None = None,
            frame: int = 0,
            *,
            return_path: bool = False,
            check: bool = True,
        ) -> torch.Tensor | CellPath: ...

        def __call__(
            self,
            y: torch.Tensor,
            z: torch.Tensor,
            n_substeps: int | None = None,
            frame: int = 0,
            *,
            return_path: bool = False,
            check: bool = True,
        ) -> torch.Tensor | CellPath: ...

    @abc.abstractmethod
    def _path(self, y: torch.Tensor, z: torch.Tensor, n_substeps: int, frame: int) -> CellPath:
        """Unchecked :meth:`path`; the rollout loop calls it (through ``forward``) after checking once."""


def local_times(frame: int, n_substeps: int, like: torch.Tensor) -> torch.Tensor:
    """Times ``frame + j/n`` for j = 0..n, built from integers, as a float64 (n+1,) tensor on ``like``'s device.

    The grid stays float64 whatever the state's dtype: in bfloat16 the grid of frame 100 with n = 3 would round
    to [100, 100.5, 100.5, 101] (a step of length zero), and in float32 frame 1e5 loses the thirds. A 0-dim
    float64 time does not change the dtype of the state arithmetic it enters (type promotion keeps the
    dimensioned operand's dtype).
    """
    # Built on ``like``'s device: a host-made grid would be copied to the GPU (and synchronise) every frame.
    grid = torch.arange(frame * n_substeps, (frame + 1) * n_substeps + 1, dtype=torch.float64, device=like.device)
    return grid / n_substeps


def substep_time(frame: int, j: int, n_substeps: int, like: torch.Tensor) -> torch.Tensor:
    """Time ``frame + j/n`` as a 0-dim float64 tensor on ``like``'s device: ``local_times(frame, n, like)[j]``
    without building the grid (one small tensor per sub-step rather than a grid, a division and an index).

    The value is the same: (frame·n + j) / n in float64, the integer numerator exact (up to 2⁵³) and the division
    correctly rounded, whether Python or torch divides.
    """
    return torch.full((), (frame * n_substeps + j) / n_substeps, dtype=torch.float64, device=like.device)
