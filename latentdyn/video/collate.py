"""Batching of uint8 videos into the float tensors the models read."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange

__all__ = ["collate_videos"]


def collate_videos(videos: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
    """Batch of videos x in [0, 1], time-first: uint8 values divided by 255.

    This is the SRVP collate convention: a list of B uint8 videos (T, H, W) or (T, H, W, C) becomes one
    float32 tensor (T, B, C, H, W), with C = 1 for videos without a channel axis. Use it as a DataLoader's
    ``collate_fn``.

    Args:
        videos: B >= 1 uint8 arrays or tensors, all of the same shape (T, H, W) or (T, H, W, C).

    Returns:
        float32 tensor (T, B, C, H, W) with values in [0, 1].

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
            video = torch.from_numpy(np.ascontiguousarray(video))
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
    return rearrange(batch, "b t h w c -> t b c h w").contiguous().to(torch.float32).div_(255.0)
