"""Transition cells: one contract ``(B, Dy), (B, Dz) -> (B, Dy)`` per frame, with sub-step access."""

from __future__ import annotations

from latentdyn.cells.base import CellPath, TransitionCell
from latentdyn.cells.discrete import GRUCell, MLPCell
from latentdyn.cells.residual import ODECell, ResidualCell

__all__ = ["CellPath", "GRUCell", "MLPCell", "ODECell", "ResidualCell", "TransitionCell"]
