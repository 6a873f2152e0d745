"""Frame-quality metrics for video prediction: PSNR, SSIM, best-of-N selection and confidence intervals.

Conventions follow the SRVP test protocol (the official ``test.py``; docs/srvp.md, Evaluation):

* PSNR and SSIM are computed **per frame and per channel**, then averaged over channels. Averaging over
  time (and the best-of-N choice) is left to :func:`best_of_n`, so that per-time-step curves stay available.
* SSIM uses an 11×11 Gaussian window (σ = 1.5, normalised to sum 1), K1 = 0.01, K2 = 0.03 and a **valid**
  convolution (no padding): a 64×64 frame gives a 54×54 SSIM map.
* Best-of-N keeps, for each test sequence and **each metric separately**, the best and the worst of the N
  samples; the confidence interval is ``1.96 · std / √n`` with the population std (ddof = 0).

Every function is batched over arbitrary leading axes, so a whole ``(N, T, B, C, H, W)`` stack of samples is
scored in one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import pack, unpack

from latentdyn._checks import (
    check_bool,
    check_device,
    check_float_dtype,
    check_int,
    check_positive_int,
    check_positive_real,
    check_shape,
    check_tensor,
)
from latentdyn._repr import fields_repr
from latentdyn.video._frames import channels_last_hint, check_frame_pair, check_value_range

__all__ = [
    "BestOfN",
    "MeanCI",
    "best_of_n",
    "gaussian_window",
    "mean_confidence_interval",
    "psnr",
    "select_samples",
    "ssim",
]


# --------------------------------------------------------------------------------------------------------
# Argument checks shared by the frame metrics
# --------------------------------------------------------------------------------------------------------


def _check_frame_pair(pred: object, target: object, data_range: object) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Check two same-shape, same-dtype floating tensors ``(..., C, H, W)`` with values in ``[0, data_range]``
    (NaN refused).

    Returns them and the checked ``data_range``. The value range costs one read of four numbers (a device
    synchronisation on GPUs), once per call.
    """
    p, t, sizes = check_frame_pair(pred, target, ("pred", "target"), "[0, data_range]")
    hint = channels_last_hint(sizes)
    if hint:
        raise ValueError(f"pred: expected channels at axis -3, (..., C, H, W), got shape {list(p.shape)}{hint}")
    peak = check_positive_real(data_range, "data_range")
    check_value_range({"pred": p, "target": t}, peak, "[0, data_range]", " (or data_range=255)")
    return p, t, peak


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half precisions lose too much in squared errors and window moments: compute them in float32.
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


# --------------------------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------------------------


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-frame peak signal-to-noise ratio ``10 · log10(data_range² / MSE)``, averaged over channels.

    The MSE is the mean over ``H × W`` of one frame and one channel; the PSNR of each channel is computed
    from it and the channel PSNRs are averaged (as SRVP's protocol: a per-frame PSNR, not the PSNR of a pooled MSE).
    Averaging over time is left to the caller (see :func:`best_of_n`).

    A channel whose prediction equals the target (MSE = 0) has PSNR ``+inf``, and so has the frame: the
    value is mathematically infinite and is kept as such rather than clipped to an arbitrary ceiling.

    Args:
        pred: predicted frames, shape ``(..., C, H, W)``, floating point, values in ``[0, data_range]``.
        target: ground-truth frames, same shape and dtype as ``pred``.
        data_range: the peak value (1 for frames in ``[0, 1]``).

    Returns:
        PSNR in decibels, shape ``(...)``; float32 for half-precision inputs, else the input dtype.

    Raises:
        TypeError: an input is not a floating-point tensor, the dtypes differ, or ``data_range`` is not a
            real number.
        ValueError: fewer than 3 dimensions, different shapes, a channels-last shape (..., H, W, C), values
            outside ``[0, data_range]`` (e.g. frames in [0, 255] with ``data_range=1``) or NaN, or
            ``data_range`` not positive and finite.
    """
    p, t, peak = _check_frame_pair(pred, target, data_range)
    dtype = _working_dtype(p.dtype)
    mse = (p.to(dtype) - t.to(dtype)).square().mean(dim=(-2, -1))  # (..., C)
    # 10·log10(peak² / mse); mse = 0 gives log10(0) = -inf, hence +inf dB, without a division warning.
    per_channel = 20.0 * math.log10(peak) - 10.0 * torch.log10(mse)
    return per_channel.mean(dim=-1)


# --------------------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------------------


def _gaussian_1d(window_size: int, sigma: float, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
    offsets = torch.arange(window_size, dtype=torch.float64, device=device) - (window_size - 1) / 2
    g = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype)


def gaussian_window(
    window_size: int = 11,
    sigma: float = 1.5,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised 2-D Gaussian window ``w[i, j] ∝ exp(-((i - r)² + (j - r)²) / 2σ²)``, ``r = (size - 1)/2``.

    It is the outer product of a normalised 1-D Gaussian with itself, so it sums to 1. :func:`ssim` applies
    it as two 1-D passes, which is the same filter.

    Args:
        window_size: odd side length of the window.
        sigma: standard deviation of the Gaussian, in pixels.
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        The window, shape ``(window_size, window_size)``.

    Raises:
        TypeError: ``window_size`` is not an int, ``sigma`` not a real number, ``dtype`` not a ``torch.dtype`` or
            ``device`` not a device (a ``torch.device``, a string or an index).
        ValueError: ``window_size`` is even or below 1, ``sigma`` is not positive and finite, ``dtype`` is not
            floating point (an integer window would round every weight to 0), or ``device`` names no device.
    """
    size = check_positive_int(window_size, "window_size")
    if size % 2 == 0:
        raise ValueError(f"window_size: expected an odd int (the window has a centre pixel), got {size}")
    s = check_positive_real(sigma, "sigma")
    dtype = check_float_dtype(dtype)
    g = _gaussian_1d(size, s, torch.float64, check_device(device))
    return torch.outer(g, g).to(dtype)


def _filter_valid_conv(moments: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Valid separable filtering of ``(M, 5, H, W)`` by the 1-D window ``g`` as grouped convolutions.

    The 2-D window is an outer product, so the valid 2-D convolution is a vertical then a horizontal pass.
    """
    size = g.shape[0]
    moments = F.conv2d(moments, g[None, None, :, None].expand(5, 1, size, 1), groups=5)
    return F.conv2d(moments, g[None, None, None, :].expand(5, 1, 1, size), groups=5)


def _band_matrix(g: torch.Tensor, n_in: int) -> torch.Tensor:
    """The valid 1-D filter by ``g`` as a matrix: ``(n_in - k + 1, n_in)`` with ``band[i, i + j] = g[j]``."""
    size = g.shape[0]
    band = g.new_zeros(n_in - size + 1, n_in)
    for j in range(size):
        band.diagonal(j).fill_(g[j])
    return band


def _filter_valid_matmul(moments: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The same filter as :func:`_filter_valid_conv`, as two batched matmuls with banded matrices.

    ``Gv (H - k + 1, H) @ moments (M, 5, H, W) @ Gh (W, W - k + 1)``: on CPUs this is several times faster
    than the depthwise 11×1 / 1×11 convolutions (which took most of the evaluation time).
    """
    height, width = moments.shape[-2:]
    return _band_matrix(g, height) @ moments @ _band_matrix(g, width).mT


_CPU_BLOCK_BYTES = 4 << 20
"""Bytes of window moments :func:`ssim` filters at a time on CPU (5 maps per plane): about 50 grey 64×64 planes."""


def _ssim_means(
    x: torch.Tensor,
    y: torch.Tensor,
    g: torch.Tensor,
    filter_valid: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    c1: float,
    c2: float,
) -> torch.Tensor:
    """Mean over the valid SSIM map of each plane pair ``x, y`` (M, H, W) with the 1-D window ``g``: (M,)."""
    moments = filter_valid(torch.stack([x, y, x * x, y * y, x * y], dim=1), g)  # (M, 5, H - k + 1, W - k + 1)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.unbind(dim=1)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(-2, -1))


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity index (Wang et al., 2004) per frame, with a Gaussian window and no padding.

    With window moments ``μ_x, μ_y, σ_x², σ_y², σ_xy`` (population, i.e. weighted by the normalised window)
    and ``c1 = (k1 · data_range)², c2 = (k2 · data_range)²``, the SSIM map is::

        ((2 μ_x μ_y + c1)(2 σ_xy + c2)) / ((μ_x² + μ_y² + c1)(σ_x² + σ_y² + c2))

    evaluated only where the window fits inside the frame (a "valid" convolution: 54×54 for 64×64 frames
    with the 11-pixel window). Each channel is filtered separately; the map is averaged over space, then
    over channels. Averaging over time is left to the caller.

    The Gaussian window is separable, so the filter is a vertical then a horizontal 1-D pass. On CPU
    tensors the two passes are batched matmuls with banded Gaussian matrices (``(H - k + 1) × H`` and
    ``W × (W - k + 1)``): CPU depthwise convolutions are slow, and this makes the filter ≈ 8× and the
    whole SSIM ≈ 3× faster (64×64 frames, 1 thread). On CPU the planes are also taken a block at a time
    (about 4 MiB of window moments, 50 grey 64×64 frames), so that their moments stay in the caches: another
    1.6× for 320 frames per call, 2.5× for 1,600, 3.5× for 6,400 (``python -m benchmarks.metrics``). A frame's SSIM
    does not depend on the block, up to rounding (identical in float32 in the measurements; float64 matmuls
    may sum in another order). On other devices the passes stay grouped convolutions over all planes at once
    (cuDNN handles them well). Both compute the same valid filter, up to the order of float sums.

    Args:
        pred: predicted frames, shape ``(..., C, H, W)``, floating point, values in ``[0, data_range]``.
        target: ground-truth frames, same shape and dtype as ``pred``.
        data_range: the dynamic range of the values (1 for frames in ``[0, 1]``).
        window_size: odd side of the Gaussian window; at most ``min(H, W)``.
        sigma: standard deviation of the Gaussian window, in pixels.
        k1: stabilising constant of the luminance term.
        k2: stabilising constant of the contrast-structure term.

    Returns:
        SSIM, shape ``(...)``; 1 where ``pred == target``. float32 for half-precision inputs, else the input
        dtype.

    Raises:
        TypeError: an input is not a floating-point tensor, the dtypes differ, or an option has the wrong
            kind.
        ValueError: fewer than 3 dimensions, different shapes, a channels-last shape (..., H, W, C), values
            outside ``[0, data_range]`` or NaN, an even window, a window larger than the frame, or a
            non-positive option.
    """
    p, t, peak = _check_frame_pair(pred, target, data_range)
    size = check_positive_int(window_size, "window_size")
    if size % 2 == 0:
        raise ValueError(f"window_size: expected an odd int (the window has a centre pixel), got {size}")
    s = check_positive_real(sigma, "sigma")
    c1 = (check_positive_real(k1, "k1") * peak) ** 2
    c2 = (check_positive_real(k2, "k2") * peak) ** 2
    height, width = p.shape[-2:]
    if size > min(height, width):
        raise ValueError(
            f"window_size: expected at most the frame size min(H, W) = {min(height, width)} "
            f"(frames are {height}x{width}), got {size}"
        )

    dtype = _working_dtype(p.dtype)
    # Fold every leading axis and the channels into one batch axis: each (frame, channel) is filtered
    # alone, which is what a grouped convolution with one window per channel does.
    x, packed_shape = pack([p.to(dtype)], "* h w")
    y = t.to(dtype).reshape(x.shape)
    g = _gaussian_1d(size, s, dtype, p.device)
    if p.device.type == "cpu":
        # Filtered in blocks of planes whose five moment maps stay in the CPU's caches: the same arithmetic
        # per plane, ≈ 3× faster than one pass over all of them, whose moments make several round trips
        # through memory.
        filter_valid, block = _filter_valid_matmul, max(1, _CPU_BLOCK_BYTES // (5 * height * width * x.element_size()))
    else:
        filter_valid, block = _filter_valid_conv, x.shape[0]
    means = torch.cat(
        [_ssim_means(xb, yb, g, filter_valid, c1, c2) for xb, yb in zip(x.split(block), y.split(block), strict=True)]
    )
    per_channel = unpack(means, packed_shape, "*")[0]  # (..., C)
    return per_channel.mean(dim=-1)


# --------------------------------------------------------------------------------------------------------
# Best-of-N and confidence intervals
# --------------------------------------------------------------------------------------------------------


class BestOfN(NamedTuple):
    """Best and worst of N samples for each sequence, for one metric.

    Attributes:
        best: time-averaged score of the best sample, shape ``(B,)``.
        worst: time-averaged score of the worst sample, shape ``(B,)``.
        best_index: index in ``[0, N)`` of the best sample, shape ``(B,)``, int64.
        worst_index: index of the worst sample, shape ``(B,)``, int64.
        best_curve: per-time-step scores of the best sample, shape ``(B, T)``; ``None`` when the scores
            had no time axis.
        worst_curve: per-time-step scores of the worst sample, shape ``(B, T)``, or ``None``.
    """

    best: torch.Tensor
    worst: torch.Tensor
    best_index: torch.Tensor
    worst_index: torch.Tensor
    best_curve: torch.Tensor | None
    worst_curve: torch.Tensor | None

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


_SCORE_LAYOUTS = {2: ("n b",), 3: ("n t b", "n b t")}


def _scores_batch_before_time(scores: torch.Tensor, layout: str | None) -> torch.Tensor:
    """``scores`` as (N, B) or (N, B, T), after checking that ``layout`` names its axes."""
    if layout is not None and not isinstance(layout, str):
        raise TypeError(f"layout: expected a string such as 'n t b', or None, got {type(layout).__name__} {layout!r}")
    allowed = _SCORE_LAYOUTS[scores.dim()]
    if layout is None and scores.dim() == 3:
        raise ValueError(
            f"layout: three-dimensional scores (shape {list(scores.shape)}) need their layout: 'n t b' for what "
            "psnr, ssim and LPIPS give for time-first samples (N, T, B, C, H, W), or 'n b t'"
        )
    axes = None if layout is None else " ".join(layout.split())
    if axes is not None and axes not in allowed:
        raise ValueError(
            f"layout: expected {' or '.join(repr(a) for a in allowed)} for scores of shape {list(scores.shape)}, "
            f"got {layout!r}"
        )
    return scores.transpose(1, 2) if axes == "n t b" else scores


def best_of_n(scores: torch.Tensor, *, higher_is_better: bool, layout: str | None = None) -> BestOfN:
    """Best-of-N selection: for each sequence, the sample with the best time-averaged score.

    Per-time-step scores are first averaged over time; the sample with the highest (or lowest) average is the best
    one for that sequence, and its whole curve over time is returned as well. Call it once per metric: the best-PSNR
    sample may differ from the best-SSIM one (as in SRVP's protocol). Ties go to the lowest sample index.

    Three-dimensional scores must say their layout: :func:`psnr`, :func:`ssim` and
    :class:`~latentdyn.video.lpips.LPIPS` give ``(N, T, B)`` for time-first samples ``(N, T, B, C, H, W)``
    (``layout="n t b"``); ``layout="n b t"`` takes them batch before time. Without it the two would be told apart
    only by their sizes, and a swap would rank samples per time step instead of per sequence without an error::

        sel = best_of_n(psnr(samples, target.expand_as(samples)), higher_is_better=True, layout="n t b")
        mean, half = mean_confidence_interval(sel.best)        # the printed "mean +/- 1.96 std/sqrt(B)"
        curve, band = mean_confidence_interval(sel.best_curve)  # per-time-step curve, shape (T,)
        best_videos = select_samples(samples, sel.best_index, batch_dim=2)

    Args:
        scores: scores per sample and sequence, shape ``(N, B)``, or per sample, time step and sequence,
            ``(N, T, B)`` or ``(N, B, T)`` as ``layout`` says. Floating point, without NaN (``±inf`` is allowed:
            PSNR of a perfect frame).
        higher_is_better: ``True`` for PSNR and SSIM (best = max), ``False`` for LPIPS (best = min).
        layout: ``"n t b"`` or ``"n b t"``, required for three-dimensional scores; ``None`` (or ``"n b"``) for
            ``(N, B)`` scores.

    Returns:
        A :class:`BestOfN` with the best and worst scores and their sample indices; the curves are ``(B, T)``
        whatever the layout.

    Raises:
        TypeError: ``scores`` is not a floating-point tensor, ``higher_is_better`` is not a bool or ``layout`` is
            not a string or None.
        ValueError: ``scores`` is not 2- or 3-dimensional, has no samples (N = 0) or no time steps (T = 0), or
            contains NaN; ``layout`` is missing for 3-dimensional scores or names other axes than ``scores`` has.
    """
    s = check_tensor(scores, "scores")
    higher_is_better = check_bool(higher_is_better, "higher_is_better", "True for PSNR/SSIM, False for LPIPS")
    if not s.is_floating_point():
        raise TypeError(f"scores: expected a floating-point tensor, got dtype {s.dtype}")
    if s.dim() not in (2, 3):
        raise ValueError(
            f"scores: expected shape (N, B), (N, T, B) or (N, B, T), got {s.dim()} dimensions with shape "
            f"{list(s.shape)}"
        )
    s = _scores_batch_before_time(s, layout)
    if s.shape[0] == 0:
        raise ValueError(f"scores: expected at least one sample (N >= 1), got shape {list(s.shape)}")
    if s.dim() == 3 and s.shape[2] == 0:
        raise ValueError(
            f"scores: expected at least one time step (T >= 1), got shape {list(scores.shape)} with "
            f"layout={layout!r} (the time average of no step is NaN)"
        )
    if bool(torch.isnan(s).any()):
        raise ValueError("scores: contains NaN, so no sample can be ranked; check the metric inputs")

    summary = s.mean(dim=-1) if s.dim() == 3 else s  # (N, B)
    if higher_is_better:
        best_index, worst_index = summary.argmax(dim=0), summary.argmin(dim=0)
    else:
        best_index, worst_index = summary.argmin(dim=0), summary.argmax(dim=0)
    columns = torch.arange(summary.shape[1], device=s.device)
    best_curve = s[best_index, columns] if s.dim() == 3 else None
    worst_curve = s[worst_index, columns] if s.dim() == 3 else None
    return BestOfN(
        best=summary[best_index, columns],
        worst=summary[worst_index, columns],
        best_index=best_index,
        worst_index=worst_index,
        best_curve=best_curve,
        worst_curve=worst_curve,
    )


def select_samples(samples: torch.Tensor, index: torch.Tensor, *, batch_dim: int) -> torch.Tensor:
    """Per-sequence choice among N samples: ``out[..., b, ...] = samples[index[b], ..., b, ...]``.

    Used to keep the best (or worst) predicted videos after :func:`best_of_n`.

    Args:
        samples: a stack of samples with the sample axis first and the sequence axis at ``batch_dim``,
            e.g. ``(N, B, T, C, H, W)`` (``batch_dim=1``) or time-first ``(N, T, B, C, H, W)``
            (``batch_dim=2``).
        index: the chosen sample for each sequence, shape ``(B,)``, integer values in ``[0, N)``.
        batch_dim: position of the sequence axis in ``samples`` (at least 1), by keyword: ``2`` for time-first
            samples, ``1`` for batch-first ones (it has no default, so that neither is taken for the other).

    Returns:
        ``samples`` without its sample axis: shape ``samples.shape[1:]``.

    Raises:
        TypeError: an argument has the wrong kind or ``index`` is not an integer tensor.
        ValueError: ``samples`` has fewer than 2 dimensions, ``batch_dim`` is out of range, ``index`` is not
            ``(B,)`` or has values outside ``[0, N)``.
    """
    x = check_tensor(samples, "samples")
    dim = check_positive_int(batch_dim, "batch_dim")
    if x.dim() < 2:
        raise ValueError(
            f"samples: expected at least 2 dimensions, a sample axis then the sequence axis, got shape {list(x.shape)}"
        )
    if dim >= x.dim():
        raise ValueError(
            f"batch_dim: expected an axis of samples in [1, {x.dim() - 1}], got {dim} "
            f"for samples of shape {list(x.shape)}"
        )
    idx = check_tensor(index, "index")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise TypeError(f"index: expected an integer tensor, got dtype {idx.dtype}")
    check_shape(idx, "b", name="index", b=x.shape[dim])
    n = x.shape[0]
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(
            f"index: expected values in [0, {n}) (N = {n} samples), got range [{int(idx.min())}, {int(idx.max())}]"
        )
    moved = x.movedim(dim, 1)  # (N, B, ...)
    chosen = moved[idx.to(device=x.device, dtype=torch.long), torch.arange(moved.shape[1], device=x.device)]
    return chosen.movedim(0, dim - 1)


class MeanCI(NamedTuple):
    """Mean with the half-width of its normal-approximation confidence interval (``mean ± half_width``).

    Attributes:
        mean: the mean over the reduced axis.
        half_width: ``z · std / √n`` with the population std (ddof = 0).
    """

    mean: torch.Tensor
    half_width: torch.Tensor

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


def mean_confidence_interval(values: torch.Tensor, dim: int = 0, z: float = 1.96) -> MeanCI:
    """Mean and normal-approximation confidence half-width ``z · std / √n`` along one axis.

    The std is the population std (ddof = 0, numpy's default), as in the SRVP printed results; with the
    default ``z = 1.96`` this is the 95% interval SRVP reports. One value gives a half-width of 0.

    Args:
        values: floating-point tensor, e.g. per-sequence best scores ``(B,)`` or curves ``(B, T)``.
        dim: the axis to reduce (the n values).
        z: the normal quantile of the interval.

    Returns:
        A :class:`MeanCI`; both tensors have the shape of ``values`` without ``dim``.

    Raises:
        TypeError: ``values`` is not a floating-point tensor, ``dim`` not an int, ``z`` not a real number.
        ValueError: ``values`` is 0-dim (no axis to reduce), ``dim`` out of range, an empty axis, or ``z`` not
            positive and finite.
    """
    v = check_tensor(values, "values")
    if not v.is_floating_point():
        raise TypeError(f"values: expected a floating-point tensor, got dtype {v.dtype}")
    dim = check_int(dim, "dim")
    if v.dim() == 0:
        raise ValueError("values: expected at least 1 dimension (the axis of the n values), got a 0-dim tensor")
    if not -v.dim() <= dim < v.dim():
        raise ValueError(f"dim: expected an axis in [{-v.dim()}, {v.dim() - 1}], got {dim} for shape {list(v.shape)}")
    quantile = check_positive_real(z, "z")
    n = v.shape[dim]
    if n == 0:
        raise ValueError(f"values: expected at least one value along dim {dim}, got shape {list(v.shape)}")
    mean = v.mean(dim=dim)
    std = v.std(dim=dim, correction=0)
    return MeanCI(mean=mean, half_width=quantile * std / math.sqrt(n))
