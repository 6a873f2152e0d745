"""Batching of uint8 videos into the float tensors the models read.

:func:`collate_videos` makes a float batch in one call; :func:`stack_videos` and :func:`to_unit_interval` split it
in two, so that a DataLoader's workers hand over (and a GPU receives) a quarter of the bytes, uint8, and the
conversion runs where the batch is used, with the same values on every device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange

__all__ = ["collate_videos", "stack_videos", "to_unit_interval"]


def collate_videos(videos: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
    """Batch of videos x in [0, 1], time-first: uint8 values divided by 255.

    This is the SRVP collate convention: a list of B uint8 videos (T, H, W) or (T, H, W, C) becomes one
    float32 tensor (T, B, C, H, W), with C = 1 for videos without a channel axis. Use it as a DataLoader's
    ``collate_fn``; ``to_unit_interval(stack_videos(videos))`` is the same batch in two steps.

    Args:
        videos: B >= 1 uint8 arrays or tensors, all of the same shape (T, H, W) or (T, H, W, C).

    Returns:
        float32 tensor (T, B, C, H, W) with values in [0, 1].

    Raises:
        TypeError: ``videos`` is not a sequence of numpy arrays / tensors, or a video is not uint8.
        ValueError: no video, a video is not 3- or 4-dimensional, or the shapes differ.
    """
    return to_unit_interval(stack_videos(videos))


def stack_videos(videos: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
    """Batch of videos, time-first, still uint8: :func:`collate_videos` without the conversion to [0, 1].

    Args:
        videos: B >= 1 uint8 arrays or tensors, all of the same shape (T, H, W) or (T, H, W, C).

    Returns:
        uint8 tensor (T, B, C, H, W), contiguous, with C = 1 for videos without a channel axis.

    Raises:
        TypeError: ``videos`` is not a sequence of numpy arrays / tensors, or a video is not uint8.
        ValueError: no video, a video is not 3- or 4-dimensional, or the shapes differ.
    """
    if isinstance(videos, (np.ndarray, torch.Tensor)) or not isinstance(videos, Sequence):
        raise TypeError(f"videos: expected a sequence (list or tuple) of uint8 arrays, got {type(videos).__name__}")
    if len(videos) == 0:
        raise ValueError("videos: expected at least one video, got an empty sequence")
    tensors: list[torch.Tensor] = []
    first_shape: torch.Size | None = None
    for i, video in enumerate(videos):
        if isinstance(video, np.ndarray):
            # (a read-only array, e.g. np.asarray of a Pillow image or a memory map's slice, is copied: torch
            # warns on tensors over memory it may not write)
            video = torch.from_numpy(np.require(video, requirements=("C", "W")))
        elif not isinstance(video, torch.Tensor):
            raise TypeError(f"videos[{i}]: expected a numpy array or torch.Tensor, got {type(video).__name__}")
        if video.dtype != torch.uint8:
            raise TypeError(f"videos[{i}]: expected dtype uint8, got {video.dtype}")
        if video.dim() not in (3, 4):
            raise ValueError(f"videos[{i}]: expected shape (T, H, W) or (T, H, W, C), got {list(video.shape)}")
        if first_shape is None:
            first_shape = video.shape
        elif video.shape != first_shape:
            raise ValueError(
                f"videos[{i}]: every video must have the shape of videos[0] {list(first_shape)}, "
                f"got {list(video.shape)}"
            )
        tensors.append(video if video.dim() == 4 else video.unsqueeze(-1))
    batch = torch.stack(tensors)
    return rearrange(batch, "b t h w c -> t b c h w").contiguous()


_UNIT_VALUES = torch.arange(256, dtype=torch.float32).div_(255.0)
"""v / 255 in float32 for the 256 uint8 values v, computed by the CPU (correctly rounded division)."""
_UNIT_TABLES: dict[torch.device, torch.Tensor] = {}


def to_unit_interval(x: torch.Tensor) -> torch.Tensor:
    """uint8 frames as float32 values in [0, 1]: x / 255, equal bit for bit on every device.

    On the CPU this is the division itself. Elsewhere the values are looked up in a table that the CPU computed:
    a CUDA division by a scalar multiplies by its reciprocal, which rounds about half of the 256 values
    differently, so frames converted on a GPU would not be those a CPU run (or the official code, which
    converts on the CPU) reads.

    Args:
        x: uint8 tensor of any shape, on any device.

    Returns:
        float32 tensor of the shape of ``x``, on its device.

    Raises:
        TypeError: ``x`` is not a uint8 tensor.
    """
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8:
        got = f"a tensor of dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"x: expected a uint8 tensor, got {got}")
    if x.device.type == "cpu":
        return x.to(torch.float32).div_(255.0)
    table = _UNIT_TABLES.get(x.device)
    if table is None:
        table = _UNIT_TABLES[x.device] = _UNIT_VALUES.to(x.device)
    return table[x.long()]
