"""latentdyn: latent state-space dynamics for PyTorch."""

from __future__ import annotations

__version__ = "0.1.0"
