"""Where the tests find the reference fixtures of ``shared/fixtures`` (the official SRVP checkpoint, inputs and
outputs, and the official state-dict layouts), one lookup for every test file.

In order: the folder named by ``LATENTDYN_FIXTURES``; ``shared/fixtures`` inside the repository (where
``benchmarks/README.md`` puts it on a device machine); ``shared/fixtures`` beside the repository root. Tests
that need a missing fixture skip, saying where they looked; with ``LATENTDYN_REQUIRE_FIXTURES=1`` they run and
fail instead, so that a machine meant to have the fixtures cannot lose those checks silently.

Also the small helpers that several test files use: random frames of a model's size, a model whose BatchNorm
statistics are those of one pass over given frames, and a video as a folder of PNG frames."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
import torch

if TYPE_CHECKING:
    from examples.srvp.config import ModelConfig

M = TypeVar("M", bound=torch.nn.Module)

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = (
    [Path(os.environ["LATENTDYN_FIXTURES"]).expanduser()]
    if os.environ.get("LATENTDYN_FIXTURES")
    else [ROOT / "shared" / "fixtures", ROOT.parent / "shared" / "fixtures"]
)
FIXTURES = next((c for c in _CANDIDATES if c.is_dir()), _CANDIDATES[-1])
"""The fixtures folder (the last place looked when none exists)."""
REQUIRED = os.environ.get("LATENTDYN_REQUIRE_FIXTURES") == "1"


def needs(path: Path, what: str) -> pytest.MarkDecorator:
    """Skip unless ``path`` exists (or ``LATENTDYN_REQUIRE_FIXTURES=1``: run, and fail where it is missing)."""
    looked = " or ".join(str(c) for c in _CANDIDATES)
    return pytest.mark.skipif(
        not path.exists() and not REQUIRED,
        reason=f"{what} not found ({path}; looked in {looked}; LATENTDYN_FIXTURES names another folder)",
    )


def frames(t: int, b: int, config: ModelConfig) -> torch.Tensor:
    """``t`` random frames of ``b`` sequences, of the model's channels and image size (from the global RNG)."""
    return torch.rand(t, b, config.channels, config.image_size, config.image_size)


def calibrated(model: M, x: torch.Tensor) -> M:
    """Set every BatchNorm's running statistics to those of one train-mode pass over x; eval mode.

    With the initial statistics (mean 0, var 1) the N(0, 0.02²) convolutions make eval-mode activations
    vanish, so every frame decodes to 0.5 ± 1e-4 and comparisons between inputs would see nothing.
    """
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one pass, exactly that batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def frame_folder(folder: Path, n_frames: int, level: int) -> None:
    """A video as a folder of ``n_frames`` grey 16×16 PNG frames ``frame{t}.png``: background ``level``, a white
    column at ``t % 16`` (so that frames differ and their order shows)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    for t in range(n_frames):
        frame = np.full((16, 16), level, dtype=np.uint8)
        frame[:, t % 16] = 255
        Image.fromarray(frame).save(folder / f"frame{t}.png")
