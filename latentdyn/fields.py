"""Vector fields dy/dt = f(t, y, cond) for continuous-time latent dynamics.

The conditioning (SRVP's z) is an explicit argument, never module state, so that any integrator, and the
adjoint method, can see it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from latentdyn._checks import check_hidden_size, check_positive_int
from latentdyn.nn import MLP

__all__ = ["MLPField", "VectorField", "check_field_sizes"]


class VectorField(nn.Module, abc.ABC):
    """Abstract vector field f(t, y, cond) giving dy/dt.

    Attributes:
        state_size: Dy, if the field declares it (``MLPField`` does; None: not declared). The cells and the
            integrators check a declared size against theirs and the inputs' (:func:`check_field_sizes`), so that
            a mismatch is a ``ValueError`` naming the field, not an unnamed matmul error inside it.
        cond_size: Dz (Dz + Du with inputs), if declared; None otherwise.
    """

    state_size: int | None = None
    cond_size: int | None = None

    @abc.abstractmethod
    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Evaluate dy/dt.

        Args:
            t: scalar time, a 0-dim tensor; the cells pass absolute times frame + j/n in float64 (exact at any
                frame, whatever the state's dtype): cast it (``t.to(y)``) before concatenating it to the state.
            y: state, (B, Dy).
            cond: conditioning held constant over the integration, (B, Dz); Dz may be 0.

        Returns:
            dy/dt, (B, Dy), the shape of ``y`` (the cells and integrators raise a ``ValueError`` naming the field
            otherwise, rather than broadcast a (B, 1) or (Dy,) output into the update).
        """

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...


def check_field_sizes(field: VectorField, sizes: dict[str, int], what: str) -> None:
    """Check the sizes a field declares (``state_size``, ``cond_size``; None: not declared) against ``sizes``,
    e.g. ``{"state_size": 4, "cond_size": 2}``; ``what`` says whose sizes those are in the message."""
    for name, want in sizes.items():
        have = getattr(field, name)
        if isinstance(have, int) and have != want:
            raise ValueError(f"field: its {name} is {have}, {what} {name} is {want}; build both with the same sizes")


def evaluate_checked(field: VectorField, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """``field(t, y, cond)``, checked to be a tensor of the state's shape (B, Dy) (shapes only, no values read).

    A field's output is user code: one of shape (B, 1) or (Dy,) would otherwise broadcast into the update
    y + Δt·f without a word, and one of another size fail as an unnamed broadcast error.
    """
    dy = field(t, y, cond)
    if not isinstance(dy, torch.Tensor) or dy.shape != y.shape:
        got = f"shape {list(dy.shape)}" if isinstance(dy, torch.Tensor) else type(dy).__name__
        raise ValueError(
            f"field: {type(field).__name__}.forward must return dy/dt of the state's shape (B, Dy) = {list(y.shape)}, "
            f"got {got}"
        )
    return dy


class _CheckedField(VectorField):
    """A field whose every evaluation goes through :func:`evaluate_checked` (for integrators called directly)."""

    def __init__(self, field: VectorField) -> None:
        super().__init__()
        self.field = field

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return evaluate_checked(self.field, t, y, cond)


class MLPField(VectorField):
    """Autonomous field f(y, cond) = MLP([y, cond]) (SRVP's residual network; time is ignored).

    Args:
        state_size: Dy.
        cond_size: Dz (0 for an unconditioned field), or Dz + Du in a model with exogenous inputs.
        hidden_size: MLP width, an int >= 1 (unused when ``n_layers == 1``, where any int >= 0 is accepted).
        n_layers: number of Linear layers.
        activation: factory of the hidden activation, as :class:`~latentdyn.nn.MLP` takes it (a module class
            such as ``nn.Tanh``); default ReLU, SRVP's. With an adaptive solver prefer a smooth one (``nn.Tanh``,
            ``nn.SiLU``, ``nn.Softplus``): the kinks of ReLU break the smoothness the solver's error control and
            gradient checks assume.

    Raises:
        TypeError: a size is not an int; ``activation`` is not a factory of modules (see
            :class:`~latentdyn.nn.MLP`).
        ValueError: ``state_size``, ``n_layers`` or (with ``n_layers > 1``) ``hidden_size`` below 1, or
            ``cond_size`` or ``hidden_size`` negative.
    """

    def __init__(
        self,
        state_size: int,
        cond_size: int,
        hidden_size: int,
        n_layers: int,
        *,
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        # (declared: the base's int | None reached a user of MLPField.state_size in pyright; mutable attributes are
        # invariant there, hence the ignore)
        self.state_size: int = check_positive_int(state_size, "state_size")  # pyright: ignore[reportIncompatibleVariableOverride]
        self.cond_size: int = check_positive_int(cond_size, "cond_size", minimum=0)  # pyright: ignore[reportIncompatibleVariableOverride]
        # Checked here so that a message names this class's argument, not the MLP's ``hidden_features``.
        check_hidden_size(hidden_size, "hidden_size", check_positive_int(n_layers, "n_layers"))
        self.net = MLP(state_size + cond_size, hidden_size, state_size, n_layers, activation=activation)

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Vector field dy/dt = MLP([y, cond]), the same at every time.

        Args:
            t: scalar time, a 0-dim tensor (ignored).
            y: state, (B, Dy).
            cond: conditioning, (B, Dz).

        Returns:
            dy/dt, (B, Dy).
        """
        return self.net(torch.cat([y, cond], dim=-1))
