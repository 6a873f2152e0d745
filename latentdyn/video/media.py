"""Video frames as pictures: uint8 quantisation, grids of videos, GIF and PNG files.

The quantisation follows the SRVP convention (the official ``test.py``): frames in ``[0, 1]`` are clamped,
multiplied by 255 and **truncated** (``.byte()``), not rounded; uint8 sample files and the frames fed to FVD use it.

Files are written with imageio, an optional dependency (``pip install imageio`` or
``pip install 'latentdyn[examples]'``) that is imported only when a file is written. Every file is written
atomically: the bytes go to a temporary file in the same folder, which then replaces the target, so a
crash never leaves a half-written GIF under the final name.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from latentdyn._checks import check_positive_int, check_tensor, is_real
from latentdyn._files import atomic_write_bytes

__all__ = [
    "image_grid",
    "save_gif",
    "save_image_grid",
    "to_uint8",
    "video_grid",
]


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Quantisation of frames in ``[0, 1]`` to bytes: ``floor(255 · clamp(x, 0, 1))``.

    This is the official SRVP convention: clamp, multiply by 255 and cast with ``.byte()``, which truncates
    toward zero (so only exactly 1.0 maps to 255, and 0.999 maps to 254). It differs from rounding by up to
    one grey level; keep it wherever results are compared with the official uint8 files.

    Args:
        frames: floating-point frames of any shape, e.g. ``(T, B, C, H, W)``; values outside ``[0, 1]``
            are clamped.

    Returns:
        A uint8 tensor of the same shape, on the same device.

    Raises:
        TypeError: ``frames`` is not a floating-point tensor.
        ValueError: ``frames`` contains NaN (which has no byte value).
    """
    x = check_tensor(frames, "frames")
    if not x.is_floating_point():
        raise TypeError(f"frames: expected a floating-point tensor with values in [0, 1], got dtype {x.dtype}")
    if bool(torch.isnan(x).any()):
        raise ValueError("frames: contains NaN, which has no uint8 value; check the model output")
    return (x.clamp(0.0, 1.0) * 255).to(torch.uint8)


# --------------------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------------------


def _pad_byte(pad_value: object) -> int:
    if not is_real(pad_value):
        raise TypeError(f"pad_value: expected a float in [0, 1], got {type(pad_value).__name__} {pad_value!r}")
    if not (math.isfinite(pad_value) and 0.0 <= pad_value <= 1.0):
        raise ValueError(f"pad_value: expected a float in [0, 1] (0 black, 1 white), got {pad_value!r}")
    return int(pad_value * 255)  # truncation, as in to_uint8


def _check_padding(padding: object) -> int:
    return check_positive_int(padding, "padding", minimum=0)


def _row_as_rgb_bytes(row: object, name: str) -> torch.Tensor:
    """One grid row as uint8 RGB videos of shape ``(K, T, 3, H, W)``, on the CPU."""
    x = check_tensor(row, name)
    if x.dim() == 4:
        x = x.unsqueeze(0)
    if x.dim() != 5:
        raise ValueError(
            f"{name}: expected one video (T, C, H, W) or a row of videos (K, T, C, H, W), got shape {list(x.shape)}"
        )
    if x.shape[2] not in (1, 3):
        raise ValueError(f"{name}: expected C = 1 (grey) or 3 (RGB) channels at axis -3, got shape {list(x.shape)}")
    if x.is_floating_point():
        x = to_uint8(x)
    elif x.dtype != torch.uint8:
        raise TypeError(f"{name}: expected float frames in [0, 1] or uint8 frames, got dtype {x.dtype}")
    return x.detach().cpu().expand(-1, -1, 3, -1, -1)


def video_grid(
    videos: torch.Tensor | Sequence[torch.Tensor], *, padding: int = 2, pad_value: float = 1.0
) -> np.ndarray:
    """Grid of videos, frame by frame: row ``r``, column ``k`` of frame ``t`` shows ``videos[r][k][t]``.

    Rows are stacked top to bottom, columns left to right, with ``padding`` pixels of ``pad_value`` between
    cells and around the border, so the grid is ``R·(H + padding) + padding`` pixels high and
    ``K·(W + padding) + padding`` wide. Grey frames are repeated to RGB. A time-first batch
    ``(T, B, C, H, W)`` becomes one row of B videos with ``einops.rearrange(x, "t b c h w -> 1 b t c h w")``.

    Args:
        videos: either a tensor ``(R, T, C, H, W)`` (R rows of one video), a tensor ``(R, K, T, C, H, W)``
            (R rows of K videos), or a sequence of rows, each ``(T, C, H, W)`` or ``(K_r, T, C, H, W)``; rows
            shorter than the longest are filled with ``pad_value``. Frames are floats in ``[0, 1]``
            (quantised with :func:`to_uint8`) or uint8; ``C`` is 1 or 3 and may differ between rows; ``T``,
            ``H`` and ``W`` must agree.
        padding: pixels between cells and around the border.
        pad_value: grey level of the padding, in ``[0, 1]``.

    Returns:
        A uint8 array ``(T, H_total, W_total, 3)``, ready for :func:`save_gif`.

    Raises:
        TypeError: a video is not a float or uint8 tensor, or an option has the wrong kind.
        ValueError: wrong ranks, channel counts other than 1 or 3, rows that disagree on ``T``, ``H`` or
            ``W``, no video at all, a negative padding or a pad value outside ``[0, 1]``.
    """
    pad = _check_padding(padding)
    fill = _pad_byte(pad_value)
    if isinstance(videos, torch.Tensor):
        if videos.dim() not in (5, 6):
            raise ValueError(
                f"videos: expected a tensor (R, T, C, H, W) or (R, K, T, C, H, W), got shape {list(videos.shape)}"
            )
        rows = [_row_as_rgb_bytes(videos[r], f"videos[{r}]") for r in range(videos.shape[0])]
    elif isinstance(videos, Sequence) and not isinstance(videos, (str, bytes)):
        rows = [_row_as_rgb_bytes(row, f"videos[{r}]") for r, row in enumerate(videos)]
    else:
        raise TypeError(f"videos: expected a tensor or a sequence of tensors, got {type(videos).__name__}")
    if not rows or max(row.shape[0] for row in rows) == 0:
        raise ValueError("videos: expected at least one video, got none")
    frame_shape = rows[0].shape[1:]  # (T, 3, H, W)
    for r, row in enumerate(rows):
        if row.shape[1:] != frame_shape:
            t, _, h, w = frame_shape
            raise ValueError(
                f"videos[{r}]: expected T, H, W = {t}, {h}, {w} like videos[0], "
                f"got {row.shape[1]}, {row.shape[3]}, {row.shape[4]}"
            )
    n_cols = max(row.shape[0] for row in rows)
    # Fill short rows with blank videos, then give every cell a bottom and right margin; the top and left
    # margins of the whole grid are added last.
    cells = torch.stack(
        [torch.cat([row, row.new_full((n_cols - row.shape[0], *frame_shape), fill)]) for row in rows]
    )  # (R, K, T, 3, H, W)
    cells = F.pad(cells, (0, pad, 0, pad), value=fill)
    grid = rearrange(cells, "r k t c h w -> t (r h) (k w) c")
    grid = F.pad(grid, (0, 0, pad, 0, pad, 0), value=fill)
    return grid.contiguous().numpy()


def image_grid(
    images: torch.Tensor | Sequence[torch.Tensor], *, padding: int = 2, pad_value: float = 1.0
) -> np.ndarray:
    """Grid of still images: row ``r``, column ``k`` shows ``images[r][k]``; see :func:`video_grid`.

    Args:
        images: a tensor ``(R, C, H, W)`` (one image per row), a tensor ``(R, K, C, H, W)``, or a sequence
            of rows ``(C, H, W)`` / ``(K_r, C, H, W)``; floats in ``[0, 1]`` or uint8, C in {1, 3}.
        padding: pixels between cells and around the border.
        pad_value: grey level of the padding, in ``[0, 1]``.

    Returns:
        A uint8 array ``(H_total, W_total, 3)``.

    Raises:
        TypeError: as :func:`video_grid`.
        ValueError: as :func:`video_grid`.
    """
    # An image is a one-frame video: insert T = 1 before the channel axis (axis -3) of every row.
    if isinstance(images, torch.Tensor):
        if images.dim() not in (4, 5):
            raise ValueError(
                f"images: expected a tensor (R, C, H, W) or (R, K, C, H, W), got shape {list(images.shape)}"
            )
        videos: torch.Tensor | list[torch.Tensor] = images.unsqueeze(-4)
    elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        videos = []
        for r, row in enumerate(images):
            x = check_tensor(row, f"images[{r}]")
            if x.dim() not in (3, 4):
                raise ValueError(
                    f"images[{r}]: expected an image (C, H, W) or a row of images (K, C, H, W), "
                    f"got shape {list(x.shape)}"
                )
            videos.append(x.unsqueeze(-4))
    else:
        raise TypeError(f"images: expected a tensor or a sequence of tensors, got {type(images).__name__}")
    return video_grid(videos, padding=padding, pad_value=pad_value)[0]


# --------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------


def _imageio_v3() -> ModuleType:
    try:
        import imageio.v3 as iio
    except ImportError as err:
        raise ImportError(
            "writing GIF/PNG files needs imageio: pip install imageio (or pip install 'latentdyn[examples]')"
        ) from err
    return iio


def _check_gif_frames(frames: object) -> np.ndarray:
    """Check uint8 RGB frames ``(T, H, W, 3)`` (array or tensor) and return them as a numpy array."""
    if isinstance(frames, torch.Tensor):
        array = frames.detach().cpu().numpy()
    elif isinstance(frames, np.ndarray):
        array = frames
    else:
        raise TypeError(f"frames: expected a uint8 numpy array or tensor (T, H, W, 3), got {type(frames).__name__}")
    if array.dtype != np.uint8:
        raise TypeError(
            f"frames: expected uint8 values (T, H, W, 3), got dtype {array.dtype}; "
            "quantise float frames with to_uint8 or build them with video_grid"
        )
    if array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
        raise ValueError(f"frames: expected a non-empty array of shape (T, H, W, 3), got {list(array.shape)}")
    return np.ascontiguousarray(array)


def save_gif(path: str | os.PathLike[str], frames: np.ndarray | torch.Tensor, *, fps: float = 10.0) -> Path:
    """Animated GIF of RGB frames, looping forever, written atomically.

    Each frame is shown for ``1000 / fps`` milliseconds; GIF stores delays in hundredths of a second and
    many viewers slow down delays below 20 ms, so ``fps`` above 50 is not honoured everywhere. Frames are
    stored losslessly as long as each has at most 256 distinct colours (always true for grey videos).
    Pillow merges consecutive identical frames into one longer frame, which keeps the timing but means a
    reader may see fewer frames than were written.

    Args:
        path: the file to write; missing parent folders are created and an existing file is replaced.
        frames: uint8 frames ``(T, H, W, 3)`` (numpy array or tensor), e.g. from :func:`video_grid`.
        fps: frames per second.

    Returns:
        The path written.

    Raises:
        ImportError: imageio is not installed.
        TypeError: ``frames`` is not a uint8 array or tensor, or ``fps`` is not a real number.
        ValueError: ``frames`` is not a non-empty ``(T, H, W, 3)`` array, or ``fps`` is not positive.
    """
    array = _check_gif_frames(frames)
    if not is_real(fps):
        raise TypeError(f"fps: expected a positive real number, got {type(fps).__name__} {fps!r}")
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: expected a positive finite number, got {fps!r}")
    iio = _imageio_v3()
    data = iio.imwrite("<bytes>", array, extension=".gif", is_batch=True, duration=1000.0 / fps, loop=0)
    return atomic_write_bytes(path, data)


def save_image_grid(
    path: str | os.PathLike[str],
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    padding: int = 2,
    pad_value: float = 1.0,
) -> Path:
    """PNG file of a grid of images (see :func:`image_grid`), written atomically.

    Args:
        path: the file to write; missing parent folders are created and an existing file is replaced.
        images: a tensor ``(R, C, H, W)`` or ``(R, K, C, H, W)``, or a sequence of rows ``(C, H, W)`` /
            ``(K_r, C, H, W)``; floats in ``[0, 1]`` or uint8, C in {1, 3}.
        padding: pixels between cells and around the border.
        pad_value: grey level of the padding, in ``[0, 1]``.

    Returns:
        The path written.

    Raises:
        ImportError: imageio is not installed.
        TypeError: as :func:`image_grid`.
        ValueError: as :func:`image_grid`.
    """
    grid = image_grid(images, padding=padding, pad_value=pad_value)
    iio = _imageio_v3()
    data = iio.imwrite("<bytes>", grid, extension=".png")
    return atomic_write_bytes(path, data)
