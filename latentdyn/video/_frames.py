"""The checks of frames that the frame metrics (PSNR, SSIM), LPIPS and FVD share: one place for the dtype,
shape, layout and value-range rules and their hints, so that the three do not drift apart (LPIPS gave
channels-last RGBA frames no hint, FVD had no hint for frames in [0, 255])."""

from __future__ import annotations

import math

import torch

from latentdyn._checks import check_shape, check_tensor

__all__ = ["channels_last_hint", "check_frame_pair", "check_value_range"]


def channels_last_hint(sizes: dict[str, int], *, channels_refused: bool = False) -> str:
    """``"; it looks channels-last ..."`` when a (..., C, H, W) shape reads better as (..., H, W, C): a last axis
    of 1, 3 or 4 (grey, RGB, RGBA) after two larger ones, or after any two when the caller already refuses C
    (``channels_refused``: LPIPS takes 1 or 3 channels); else ``""``."""
    if sizes["w"] in (1, 3, 4) and (channels_refused or min(sizes["c"], sizes["h"]) > 4):
        return (
            "; it looks channels-last (..., H, W, C): move the channels first, e.g. "
            "einops.rearrange(x, '... h w c -> ... c h w')"
        )
    return ""


def check_frame_pair(
    a: object, b: object, names: tuple[str, str], range_text: str
) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """Two floating-point tensors ``(..., C, H, W)`` of one dtype and one shape, and their sizes (``c``, ``h``,
    ``w``); errors name the arguments ``names`` and the value range ``range_text`` (e.g. ``"[0, 1]"``). Values
    are checked by :func:`check_value_range`."""
    x = check_tensor(a, names[0])
    y = check_tensor(b, names[1])
    for name, t in zip(names, (x, y)):
        if not t.is_floating_point():
            raise TypeError(
                f"{name}: expected a floating-point tensor with values in {range_text}, got dtype {t.dtype}; "
                "convert uint8 frames with x.float() / 255"
            )
    both = f"{names[0]} and {names[1]}"
    if x.dtype != y.dtype:
        raise TypeError(f"{both}: expected the same dtype, got {x.dtype} and {y.dtype}")
    sizes = check_shape(x, "... c h w", name=names[0])
    if x.shape != y.shape:
        raise ValueError(f"{both}: expected the same shape (..., C, H, W), got {list(x.shape)} and {list(y.shape)}")
    return x, y, sizes


def check_value_range(frames: dict[str, torch.Tensor], peak: float, range_name: str, scale_hint: str = "") -> None:
    """Refuse frames with values outside ``[0, peak]`` or NaN, naming the argument and saying what to do.

    One read of two numbers per tensor, all in one transfer (a device synchronisation on GPUs), once per call.

    Args:
        frames: the tensors by argument name.
        peak: the largest value allowed.
        range_name: how the message names the range, e.g. ``"[0, 1]"`` or ``"[0, data_range]"`` (then shown
            with its value, ``[0, data_range] = [0, 2]``).
        scale_hint: what the hint for frames in [0, 255] adds after ``need x / 255``, e.g.
            ``" (or data_range=255)"``.
    """
    shown = range_name if range_name == f"[0, {peak:g}]" else f"{range_name} = [0, {peak:g}]"
    tensors = [(name, t) for name, t in frames.items() if t.numel()]
    if not tensors:
        return
    values = torch.stack([v for _, t in tensors for v in (t.amin(), t.amax())]).tolist()
    for i, (name, _) in enumerate(tensors):
        lo, hi = values[2 * i], values[2 * i + 1]
        if lo >= 0 and hi <= peak:  # written so that NaN (which compares False) is refused too
            continue
        if math.isnan(lo) or math.isnan(hi):
            hint = "it holds NaN; check what produced it"
        elif hi > 2 * peak:
            hint = f"frames in [0, 255] need x / 255{scale_hint}"
        else:
            hint = f"clamp predictions to {range_name} first"
        raise ValueError(f"{name}: expected values in {shown}, got values in [{lo:.4g}, {hi:.4g}]; {hint}")
