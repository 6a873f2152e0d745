"""Discrete-time cells: one update per frame, no sub-steps."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from typing_extensions import override

from latentdyn._autocast import autocast_enabled
from latentdyn._checks import check_hidden_size, check_positive_int, is_int, own_networks
from latentdyn.cells.base import CellPath, TransitionCell
from latentdyn.nn import MLP

__all__ = ["GRUCell", "MLPCell"]


class MLPCell(TransitionCell):
    """Non-residual transition y_{t+1} = MLP([y_t, z_{t+1}]) (the paper's MLP ablation).

    Args:
        state_size: Dy.
        cond_size: Dz.
        hidden_size: MLP width, an int >= 1 (unused when ``n_layers == 1``, where any int >= 0 is accepted, as
            by :class:`~latentdyn.nn.MLP`).
        n_layers: number of Linear layers.
        activation: factory of the hidden activation, as :class:`~latentdyn.nn.MLP` and
            :class:`~latentdyn.fields.MLPField` take it (a module class such as ``nn.Tanh``); default ReLU.

    Raises:
        TypeError: a size or count that is not an int; ``activation`` is not a factory of modules (see
            :class:`~latentdyn.nn.MLP`).
        ValueError: ``state_size``, ``n_layers`` or (with ``n_layers > 1``) ``hidden_size`` < 1, or
            ``cond_size`` or ``hidden_size`` < 0.
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
        super().__init__(state_size, cond_size)
        n_layers = check_positive_int(n_layers, "n_layers")
        hidden_size = check_hidden_size(hidden_size, "hidden_size", n_layers)
        self.net = MLP(self.state_size + self.cond_size, hidden_size, self.state_size, n_layers, activation=activation)

    @override
    def _path(self, y: torch.Tensor, z: torch.Tensor, n_substeps: int, frame: int) -> CellPath:
        return CellPath(self.net(torch.cat([y, z], dim=-1)).unsqueeze(0), None)


class GRUCell(TransitionCell):
    """GRU transition with z as input and y as hidden state: y_{t+1} = GRU(z_{t+1}, y_t) (paper's ablation).

    Under ``torch.autocast`` the GRU runs in its parameters' dtype and returns the state's dtype: on a GPU,
    autocast would run it in 16 bits whole and return a 16-bit state.

    Args:
        state_size: Dy (GRU hidden size).
        cond_size: Dz (GRU input size), at least 1.

    Raises:
        TypeError: a size that is not an int.
        ValueError: ``state_size`` < 1 or ``cond_size`` < 1.
    """

    def __init__(self, state_size: int, cond_size: int) -> None:
        check_positive_int(state_size, "state_size")  # first, as the base class checks it
        if is_int(cond_size) and cond_size < 1:  # before the base class, which would ask for an int >= 0
            raise ValueError(f"cond_size: a GRUCell needs an input of size >= 1 (an int >= 1), got {cond_size}")
        super().__init__(state_size, cond_size)
        self.gru = nn.GRUCell(cond_size, state_size)

    @override
    def check_inputs(self, y: torch.Tensor, z: torch.Tensor) -> None:
        """As :meth:`TransitionCell.check_inputs`, and outside ``torch.autocast`` ``z`` in the dtype of ``y``:
        ``nn.GRUCell`` takes z as its input, which it does not promote (a lower-precision z is refused too).

        Raises:
            TypeError, ValueError: as :meth:`TransitionCell.check_inputs`; ``z`` of another dtype than ``y``.
        """
        super().check_inputs(y, z)
        if z.dtype != y.dtype and not autocast_enabled(y.device.type) and own_networks(self):
            raise TypeError(
                f"z: expected the dtype of y, {y.dtype} (nn.GRUCell does not promote its input), got {z.dtype}; "
                "cast it with z.to(y.dtype)"
            )

    @override
    def _path(self, y: torch.Tensor, z: torch.Tensor, n_substeps: int, frame: int) -> CellPath:
        if autocast_enabled(y.device.type) and type(self.gru) is nn.GRUCell:
            # CUDA's autocast runs gru_cell whole in 16 bits, the state included (CPU's decomposes it into
            # autocast matmuls and keeps the state's dtype): the states would lose their float32 accumulation on
            # a GPU only. Under autocast the cell runs in its parameters' dtype, and returns the state's.
            w = self.gru.weight_hh.dtype
            with torch.autocast(y.device.type, enabled=False):
                return CellPath(self.gru(z.to(w), y.to(w)).to(y.dtype).unsqueeze(0), None)
        return CellPath(self.gru(z, y).unsqueeze(0), None)
