"""Tests for latentdyn.video.metrics: PSNR and SSIM against scikit-image, best-of-N, confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from latentdyn.video import metrics as metrics_module
from latentdyn.video.metrics import (
    BestOfN,
    MeanCI,
    best_of_n,
    gaussian_window,
    mean_confidence_interval,
    psnr,
    select_samples,
    ssim,
)
from latentdyn.video.mnist import digit_source

FrameMetric = Callable[..., torch.Tensor]


def _noisy_pair(
    shape: tuple[int, ...], seed: int, noise: float = 0.1, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random target in [0, 1] and a clamped noisy prediction of it."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g, dtype=torch.float64)
    pred = (target + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0.0, 1.0)
    return pred.to(dtype), target.to(dtype)


def _skimage_ssim(pred: np.ndarray, target: np.ndarray, **kwargs: object) -> Any:
    """skimage's mean SSIM with the protocol's settings (Gaussian window, σ = 1.5 unless given, population
    covariances, data range 1); ``full=True`` returns (mean, full SSIM map) instead."""
    settings = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}
    result = structural_similarity(pred, target, **{**settings, **kwargs})
    return result if kwargs.get("full") else float(result)


# ---------------------------------------------------------------------------------------------------------
# PSNR
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "seed"), [(64, 64, 0), (17, 31, 1), (8, 8, 2)])
def test_psnr_matches_skimage_on_one_channel(height: int, width: int, seed: int) -> None:
    pred, target = _noisy_pair((1, height, width), seed)
    expected = peak_signal_noise_ratio(target[0].numpy(), pred[0].numpy(), data_range=1.0)
    assert psnr(pred, target).item() == pytest.approx(expected, rel=1e-12)


def test_psnr_averages_channel_psnrs_not_a_pooled_mse() -> None:
    # SPEC §6: PSNR per frame and channel, then the mean over channels. Channels with very different
    # errors make this differ from the PSNR of the MSE pooled over channels (which skimage computes).
    pred, target = _noisy_pair((3, 32, 32), seed=3)
    pred[1] = (target[1] + 0.3 * torch.randn(32, 32, dtype=torch.float64)).clamp(0, 1)
    per_channel = [peak_signal_noise_ratio(target[c].numpy(), pred[c].numpy(), data_range=1.0) for c in range(3)]
    pooled = peak_signal_noise_ratio(target.numpy(), pred.numpy(), data_range=1.0)
    got = psnr(pred, target).item()
    assert got == pytest.approx(float(np.mean(per_channel)), rel=1e-12)
    assert abs(got - pooled) > 0.1


def test_psnr_data_range_scales_out() -> None:
    pred, target = _noisy_pair((2, 3, 16, 16), seed=4)
    torch.testing.assert_close(psnr(pred * 255, target * 255, data_range=255), psnr(pred, target))


def test_psnr_identical_frames_are_infinite_and_per_frame() -> None:
    pred, target = _noisy_pair((4, 1, 16, 16), seed=5)
    pred[2] = target[2]
    out = psnr(pred, target)
    assert out.shape == (4,)
    assert math.isinf(out[2].item()) and out[2].item() > 0
    assert torch.isfinite(out[[0, 1, 3]]).all()
    assert torch.isinf(psnr(target, target)).all()


def test_psnr_half_precision_is_computed_in_float32() -> None:
    pred, target = _noisy_pair((2, 1, 16, 16), seed=6)
    out = psnr(pred.half(), target.half())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, psnr(pred.half().float(), target.half().float()))


# ---------------------------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------------------------


def test_gaussian_window_is_scipys_11_tap_gaussian() -> None:
    # scipy's gaussian_filter (used by skimage) with sigma 1.5 and truncate 3.5 is an 11-tap normalised
    # Gaussian; filtering a unit impulse reproduces its 2-D kernel.
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1.0
    kernel = gaussian_filter(impulse, sigma=1.5, truncate=3.5, mode="constant")
    window = gaussian_window(11, 1.5, dtype=torch.float64)
    assert window.shape == (11, 11)
    np.testing.assert_allclose(window.numpy(), kernel, rtol=1e-12, atol=1e-15)
    assert window.sum().item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("height", "width", "seed"), [(64, 64, 0), (23, 40, 1), (11, 11, 2)])
def test_ssim_matches_skimage_valid_region(height: int, width: int, seed: int) -> None:
    # skimage filters with mode="reflect" over the whole image, so its SSIM map S has the full image size
    # and its border of width (win_size - 1) // 2 = 5 depends on the reflected padding. Every interior
    # value uses only pixels inside the image: S[5:-5, 5:-5] is exactly the "valid" map (54x54 for 64x64)
    # that latentdyn computes. skimage's mean SSIM is itself the mean of that crop; we check both.
    pred, target = _noisy_pair((1, height, width), seed)
    mssim, full_map = _skimage_ssim(pred[0].numpy(), target[0].numpy(), full=True)
    valid = full_map[5:-5, 5:-5]
    assert valid.shape == (height - 10, width - 10)
    got = ssim(pred, target).item()
    assert got == pytest.approx(float(valid.mean()), rel=1e-10)
    assert got == pytest.approx(float(mssim), rel=1e-10)


def test_ssim_keeps_negative_map_values() -> None:
    # An inverted frame is anti-correlated with its target: most of the SSIM map is negative, and the mean
    # SSIM with it (skimage's, over the same valid crop) is below zero. Clipping the map at 0 would hide it.
    _, target = _noisy_pair((1, 32, 32), seed=12)
    pred = 1.0 - target
    _, full_map = _skimage_ssim(pred[0].numpy(), target[0].numpy(), full=True)
    expected = float(full_map[5:-5, 5:-5].mean())
    assert expected < -0.5
    assert ssim(pred, target).item() == pytest.approx(expected, rel=1e-10)


def test_ssim_matches_skimage_with_another_window() -> None:
    # skimage sizes its Gaussian filter by truncate = 3.5 (radius int(3.5 sigma + 0.5)) and crops by
    # win_size; sigma = 0.8 gives radius 3, i.e. a 7-tap filter consistent with win_size = 7.
    pred, target = _noisy_pair((1, 20, 20), seed=7)
    expected = _skimage_ssim(pred[0].numpy(), target[0].numpy(), sigma=0.8, win_size=7)
    assert ssim(pred, target, window_size=7, sigma=0.8).item() == pytest.approx(expected, rel=1e-10)


def test_ssim_averages_channels_like_skimage() -> None:
    pred, target = _noisy_pair((3, 32, 32), seed=8)
    expected = _skimage_ssim(pred.numpy(), target.numpy(), channel_axis=0)
    assert ssim(pred, target).item() == pytest.approx(expected, rel=1e-10)


def test_ssim_float32_close_to_float64_reference() -> None:
    pred, target = _noisy_pair((1, 64, 64), seed=9, dtype=torch.float32)
    expected = _skimage_ssim(pred[0].double().numpy(), target[0].double().numpy())
    out = ssim(pred, target)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(expected, abs=1e-5)


def test_ssim_identity_is_one_and_symmetric() -> None:
    pred, target = _noisy_pair((2, 3, 1, 24, 24), seed=10)
    torch.testing.assert_close(ssim(target, target), torch.ones(2, 3, dtype=torch.float64))
    constant = torch.full((1, 16, 16), 0.3, dtype=torch.float64)
    assert ssim(constant, constant).item() == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(ssim(pred, target), ssim(target, pred))
    assert (ssim(pred, target) < 1).all()


def test_ssim_data_range_scales_out() -> None:
    pred, target = _noisy_pair((2, 1, 16, 16), seed=11)
    torch.testing.assert_close(ssim(pred * 255, target * 255, data_range=255), ssim(pred, target))


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_batched_equals_per_item(metric: FrameMetric) -> None:
    pred, target = _noisy_pair((3, 4, 2, 1, 16, 16), seed=12)  # (N, T, B, C, H, W)
    batched = metric(pred, target)
    assert batched.shape == (3, 4, 2)
    for n in range(3):
        for t in range(4):
            for b in range(2):
                assert batched[n, t, b].item() == pytest.approx(
                    metric(pred[n, t, b], target[n, t, b]).item(), rel=1e-12
                )


def test_ssim_empty_batch_gives_empty_result() -> None:
    assert ssim(torch.rand(0, 1, 16, 16), torch.rand(0, 1, 16, 16)).shape == (0,)


def test_ssim_band_matrix_is_the_valid_1d_filter() -> None:
    # Row i holds the window at columns i .. i + k - 1: a 3-tap window on 5 samples gives 3 outputs.
    band = metrics_module._band_matrix(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 5)
    expected = [[1.0, 2.0, 3.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0, 0.0], [0.0, 0.0, 1.0, 2.0, 3.0]]
    assert band.tolist() == expected


def _conv_reference_filter(moments: torch.Tensor, window_size: int, sigma: float) -> torch.Tensor:
    """The valid filter as one grouped 2-D convolution with the full window (independent of latentdyn's)."""
    window = gaussian_window(window_size, sigma, dtype=moments.dtype)
    return F.conv2d(moments, window.expand(5, 1, window_size, window_size), groups=5)


_CPU_PATH_CASES = [
    ((4, 1, 64, 64), 11, 1.5),
    ((2, 3, 3, 64, 64), 11, 1.5),  # leading batch axes, RGB
    ((3, 1, 48, 80), 11, 1.5),  # non-square
    ((2, 2, 3, 48, 80), 7, 0.8),
    ((5, 1, 11, 11), 11, 1.5),  # a single output pixel
    ((2, 3, 20, 13), 7, 1.0),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shape", "window_size", "sigma"), _CPU_PATH_CASES)
def test_ssim_cpu_matmul_path_matches_grouped_convolution(
    shape: tuple[int, ...], window_size: int, sigma: float, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On CPU, ssim filters the window moments with banded matrices instead of grouped convolutions
    # (cuDNN keeps the convolutions). Both must compute the same function, to rounding.
    atol = 1e-6 if dtype == torch.float32 else 1e-12
    pred, target = _noisy_pair(shape, seed=sum(shape) + window_size, dtype=dtype)
    x, y = pred.reshape(-1, *shape[-2:]), target.reshape(-1, *shape[-2:])
    moments = torch.stack([x, y, x * x, y * y, x * y], dim=1)
    g = metrics_module._gaussian_1d(window_size, sigma, dtype, None)
    filtered = metrics_module._filter_valid_matmul(moments, g)
    assert filtered.shape == (moments.shape[0], 5, shape[-2] - window_size + 1, shape[-1] - window_size + 1)
    assert filtered.dtype == dtype
    torch.testing.assert_close(filtered, _conv_reference_filter(moments, window_size, sigma), rtol=0, atol=atol)
    torch.testing.assert_close(filtered, metrics_module._filter_valid_conv(moments, g), rtol=0, atol=atol)

    # The whole SSIM: the CPU default (the matmul path: the convolutions are not called) against ssim
    # with the grouped-convolution path swapped in.
    conv_filter = metrics_module._filter_valid_conv
    with monkeypatch.context() as patch:
        patch.setattr(metrics_module, "_filter_valid_conv", None)
        got = ssim(pred, target, window_size=window_size, sigma=sigma)
    with monkeypatch.context() as patch:
        patch.setattr(metrics_module, "_filter_valid_matmul", conv_filter)
        expected = ssim(pred, target, window_size=window_size, sigma=sigma)
    assert got.shape == shape[:-3] and got.dtype == dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)


def _smmnist_like_frames(n: int, seed: int) -> torch.Tensor:
    """``(n, 1, 64, 64)`` float32 frames in [0, 1]: two MNIST digits (the embedded subset) on black."""
    rng = np.random.default_rng(seed)
    digits = np.asarray(digit_source("embedded", "train").images)
    frames = np.zeros((n, 64, 64), dtype=np.uint8)
    for frame in frames:
        for index in rng.integers(0, len(digits), size=2):
            top, left = rng.integers(0, 64 - 28 + 1, size=2)
            patch = frame[top : top + 28, left : left + 28]
            np.maximum(patch, digits[index], out=patch)
    return torch.from_numpy(frames).float().div(255).unsqueeze(1)


def test_ssim_cpu_matmul_path_is_bit_identical_on_smmnist_like_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    # Observed, not guaranteed by torch: on these float32 SM-MNIST-like frames the banded matmuls sum the
    # same products in the same order as the convolutions, so every per-frame SSIM is the same float.
    target = _smmnist_like_frames(24, seed=0)
    noise = 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    for pred in ((target + noise).clamp(0, 1), target.roll(3, dims=-1), torch.zeros_like(target)):
        got = ssim(pred, target)
        with monkeypatch.context() as patch:
            patch.setattr(metrics_module, "_filter_valid_matmul", metrics_module._filter_valid_conv)
            expected = ssim(pred, target)
        assert torch.equal(got, expected), float((got - expected).abs().max())


# ---------------------------------------------------------------------------------------------------------
# Frame-metric errors
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_frame_metric_errors(metric: FrameMetric) -> None:
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(TypeError, match=r"pred: expected a torch\.Tensor"):
        metric(x.numpy(), x)
    with pytest.raises(TypeError, match="target: expected a floating-point tensor"):
        metric(x, (x * 255).byte())
    with pytest.raises(TypeError, match="pred and target: expected the same dtype"):
        metric(x, x.double())
    with pytest.raises(ValueError, match=r"pred and target: expected the same shape"):
        metric(x, x[:1])
    with pytest.raises(ValueError, match=r"pred: expected at least 3 dimensions"):
        metric(x[0, 0], x[0, 0])
    with pytest.raises(ValueError, match="data_range: expected a positive finite number"):
        metric(x, x, data_range=0.0)
    with pytest.raises(TypeError, match="data_range: expected a positive real number"):
        metric(x, x, data_range=True)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_frame_metrics_check_the_value_range(metric: FrameMetric) -> None:
    """Frames in [0, 255] with data_range=1 used to give e.g. a PSNR of -27.7 dB: they are an error now."""
    pred, target = _noisy_pair((3, 2, 16, 16), seed=4, dtype=torch.float32)
    with pytest.raises(
        ValueError,
        match=r"pred: expected values in \[0, data_range\] = \[0, 1\], got values in \[0, 2\d\d(\.\d+)?\]; "
        r"frames in \[0, 255\] need x / 255 \(or data_range=255\)",
    ):
        metric(pred * 255, target * 255)
    with pytest.raises(ValueError, match=r"target: expected values in \[0, data_range\] = \[0, 1\]"):
        metric(pred, target * 255)
    with pytest.raises(ValueError, match=r"pred: .* got values in \[-0\.\d+, .*clamp predictions to \[0, data_range\]"):
        metric(pred - 0.2, target)
    with pytest.raises(ValueError, match=r"pred: expected values in \[0, data_range\] = \[0, 0\.5\]"):
        metric(pred, target, data_range=0.5)
    # The bounds themselves are valid, and [0, 255] frames are fine with data_range=255.
    ends = (torch.rand(3, 2, 16, 16) > 0.5).float()
    assert torch.isfinite(metric(ends, 1 - ends)).all()
    torch.testing.assert_close(metric(pred * 255, target * 255, data_range=255), metric(pred, target))


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_frame_metrics_refuse_nan(metric: FrameMetric) -> None:
    """NaN compares False both ways, so `lo < 0 or hi > peak` let a NaN frame through to a NaN score."""
    pred, target = _noisy_pair((3, 2, 16, 16), seed=4, dtype=torch.float32)
    bad = target.clone()
    bad[1, 0, 3, 3] = math.nan
    with pytest.raises(
        ValueError,
        match=r"target: expected values in \[0, data_range\] = \[0, 1\], got values in "
        r"\[nan, nan\]; it holds NaN",
    ):
        metric(pred, bad)
    with pytest.raises(ValueError, match=r"pred: expected values in \[0, data_range\] .*it holds NaN"):
        metric(bad, pred)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_frame_metrics_reject_channels_last(metric: FrameMetric) -> None:
    pred, target = _noisy_pair((4, 16, 16, 3), seed=5)  # (T, H, W, C)
    with pytest.raises(ValueError, match=r"pred: expected channels at axis -3, .* looks channels-last"):
        metric(pred, target)
    first = metric(pred.movedim(-1, -3), target.movedim(-1, -3))  # (T, C, H, W)
    assert first.shape == (4,)
    assert metric(pred[..., :1].movedim(-1, -3), target[..., :1].movedim(-1, -3)).shape == (4,)


def test_ssim_option_errors() -> None:
    x = torch.rand(1, 16, 16)
    with pytest.raises(ValueError, match=r"window_size: expected at most the frame size min\(H, W\) = 12"):
        ssim(x[..., :12, :], x[..., :12, :], window_size=13)
    with pytest.raises(ValueError, match="window_size: expected an odd int"):
        ssim(x, x, window_size=10)
    with pytest.raises(ValueError, match="window_size: expected an int >= 1"):
        ssim(x, x, window_size=0)
    with pytest.raises(TypeError, match="window_size: expected an int"):
        ssim(x, x, window_size=11.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma: expected a positive finite number"):
        ssim(x, x, sigma=-1.0)
    with pytest.raises(ValueError, match="k1: expected a positive finite number"):
        ssim(x, x, k1=0.0)
    with pytest.raises(ValueError, match="k2: expected a positive finite number"):
        ssim(x, x, k2=math.inf)
    with pytest.raises(ValueError, match="window_size: expected an odd int"):
        gaussian_window(4)
    with pytest.raises(TypeError, match="sigma: expected a positive real number"):
        gaussian_window(5, "1.5")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Best-of-N
# ---------------------------------------------------------------------------------------------------------


@settings(derandomize=True, deadline=None, max_examples=20)
@given(
    n=st.integers(1, 6),
    b=st.integers(1, 5),
    t=st.integers(1, 4),
    higher=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_best_of_n_matches_numpy_brute_force(n: int, b: int, t: int, higher: bool, seed: int) -> None:
    scores = np.random.default_rng(seed).normal(size=(n, b, t))
    out = best_of_n(torch.from_numpy(scores), higher_is_better=higher, layout="n b t")
    assert isinstance(out, BestOfN)
    averaged = scores.mean(axis=-1)
    for j in range(b):
        column = list(averaged[:, j])
        best = max(range(n), key=column.__getitem__) if higher else min(range(n), key=column.__getitem__)
        worst = min(range(n), key=column.__getitem__) if higher else max(range(n), key=column.__getitem__)
        assert out.best_index[j].item() == best
        assert out.worst_index[j].item() == worst
        assert out.best[j].item() == pytest.approx(column[best], rel=1e-12)
        assert out.worst[j].item() == pytest.approx(column[worst], rel=1e-12)
        assert out.best_curve is not None and out.worst_curve is not None
        np.testing.assert_array_equal(out.best_curve[j].numpy(), scores[best, j])
        np.testing.assert_array_equal(out.worst_curve[j].numpy(), scores[worst, j])
    if higher:
        assert (out.best >= out.worst).all()
    else:
        assert (out.best <= out.worst).all()


def test_best_of_n_selects_on_the_time_average_not_per_step() -> None:
    # Sample 0 wins the first step, sample 1 wins on average: the best sample is 1, with its whole curve.
    scores = torch.tensor([[[10.0, 0.0, 0.0]], [[5.0, 5.0, 5.0]]])  # (N=2, B=1, T=3)
    out = best_of_n(scores, higher_is_better=True, layout="n b t")
    assert out.best_index.tolist() == [1]
    assert out.best.tolist() == [5.0]
    assert out.best_curve is not None and out.best_curve.tolist() == [[5.0, 5.0, 5.0]]
    assert out.worst_curve is not None and out.worst_curve.tolist() == [[10.0, 0.0, 0.0]]


def test_best_of_n_without_time_axis_and_ties_and_inf() -> None:
    scores = torch.tensor([[1.0, 0.25, math.inf], [3.0, 0.25, 1.0], [3.0, 0.125, 2.0]])  # (N=3, B=3)
    out = best_of_n(scores, higher_is_better=True)
    assert out.best_index.tolist() == [1, 0, 0]  # ties go to the lowest index; +inf (PSNR of a copy) wins
    assert out.worst_index.tolist() == [0, 2, 1]
    assert out.best.tolist() == [3.0, 0.25, math.inf]
    assert out.best_curve is None and out.worst_curve is None
    low = best_of_n(scores, higher_is_better=False)
    assert low.best_index.tolist() == [0, 2, 1]


def test_best_of_n_errors() -> None:
    with pytest.raises(TypeError, match=r"scores: expected a torch\.Tensor"):
        best_of_n(np.zeros((2, 3)), higher_is_better=True)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"higher_is_better: expected a bool \(True for PSNR/SSIM, False for LPIPS\), got int 1"
    ):
        best_of_n(torch.zeros(2, 3), higher_is_better=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scores: expected a floating-point tensor"):
        best_of_n(torch.zeros(2, 3, dtype=torch.long), higher_is_better=True)
    with pytest.raises(ValueError, match=r"scores: expected shape \(N, B\), \(N, T, B\) or \(N, B, T\)"):
        best_of_n(torch.zeros(2), higher_is_better=True)
    with pytest.raises(ValueError, match=r"scores: expected at least one sample"):
        best_of_n(torch.zeros(0, 3), higher_is_better=True)
    with pytest.raises(ValueError, match="scores: contains NaN"):
        best_of_n(torch.tensor([[0.0, math.nan]]), higher_is_better=True)


def test_best_of_n_refuses_no_time_steps() -> None:
    """(N, B, T=0) scores averaged to NaN over time and every sequence 'chose' sample 0."""
    with pytest.raises(ValueError, match=r"scores: expected at least one time step \(T >= 1\), got shape \[4, 3, 0\]"):
        best_of_n(torch.rand(4, 3, 0), higher_is_better=True, layout="n b t")
    with pytest.raises(ValueError, match=r"scores: expected at least one time step \(T >= 1\), got shape \[4, 0, 3\]"):
        best_of_n(torch.rand(4, 0, 3), higher_is_better=True, layout="n t b")
    assert best_of_n(torch.rand(4, 0, 2), higher_is_better=True, layout="n b t").best.shape == (0,)  # no sequence


def test_select_samples_picks_per_sequence() -> None:
    samples = torch.randn(4, 3, 2, 5)  # (N, T, B, D): time-first, batch at axis 2
    index = torch.tensor([3, 1])
    out = select_samples(samples, index, batch_dim=2)
    assert out.shape == (3, 2, 5)
    for b in range(2):
        torch.testing.assert_close(out[:, b], samples[index[b], :, b])
    batch_second = samples.movedim(2, 1)  # (N, B, T, D)
    torch.testing.assert_close(select_samples(batch_second, index, batch_dim=1), out.movedim(1, 0))


def test_select_samples_of_fewer_than_two_axes_says_so() -> None:
    """A 1-D stack was told "batch_dim: expected an axis of samples in [1, 0]", an empty range."""
    for samples in (torch.zeros(4), torch.zeros(())):
        with pytest.raises(
            ValueError, match=r"^samples: expected at least 2 dimensions, a sample axis then the sequence"
        ):
            select_samples(samples, torch.zeros(1, dtype=torch.long), batch_dim=1)


def test_select_samples_errors() -> None:
    samples = torch.randn(4, 2, 3)
    with pytest.raises(TypeError, match="index: expected an integer tensor"):
        select_samples(samples, torch.zeros(2), batch_dim=1)
    with pytest.raises(ValueError, match=r"index: expected size 2 for axis 'b'"):
        select_samples(samples, torch.zeros(3, dtype=torch.long), batch_dim=1)
    with pytest.raises(ValueError, match=r"index: expected values in \[0, 4\)"):
        select_samples(samples, torch.tensor([0, 4]), batch_dim=1)
    with pytest.raises(ValueError, match=r"batch_dim: expected an axis of samples in \[1, 2\]"):
        select_samples(samples, torch.zeros(2, dtype=torch.long), batch_dim=3)
    with pytest.raises(ValueError, match="batch_dim: expected an int >= 1"):
        select_samples(samples, torch.zeros(4, dtype=torch.long), batch_dim=0)


# ---------------------------------------------------------------------------------------------------------
# Confidence intervals
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_mean_confidence_interval_matches_numpy(dim: int) -> None:
    values = np.random.default_rng(0).normal(size=(7, 5))
    out = mean_confidence_interval(torch.from_numpy(values), dim=dim)
    assert isinstance(out, MeanCI)
    n = values.shape[dim]
    np.testing.assert_allclose(out.mean.numpy(), values.mean(axis=dim), rtol=1e-12)
    np.testing.assert_allclose(out.half_width.numpy(), 1.96 * values.std(axis=dim) / np.sqrt(n), rtol=1e-12)
    wide = mean_confidence_interval(torch.from_numpy(values), dim=dim, z=2.576)
    np.testing.assert_allclose(wide.half_width.numpy(), 2.576 * values.std(axis=dim) / np.sqrt(n), rtol=1e-12)


def test_mean_confidence_interval_of_one_value_is_exact() -> None:
    out = mean_confidence_interval(torch.tensor([0.25]))
    assert out.mean.item() == 0.25 and out.half_width.item() == 0.0


def test_mean_confidence_interval_of_a_0_dim_tensor_says_so() -> None:
    """A 0-dim tensor was told "dim: expected an axis in [0, -1]", an empty range."""
    with pytest.raises(
        ValueError, match=r"values: expected at least 1 dimension \(the axis of the n values\), got a 0-dim"
    ):
        mean_confidence_interval(torch.tensor(1.0))


def test_mean_confidence_interval_errors() -> None:
    with pytest.raises(TypeError, match="values: expected a floating-point tensor"):
        mean_confidence_interval(torch.arange(3))
    with pytest.raises(TypeError, match="dim: expected an int"):
        mean_confidence_interval(torch.zeros(3), dim=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dim: expected an axis in \[-1, 0\]"):
        mean_confidence_interval(torch.zeros(3), dim=1)
    with pytest.raises(ValueError, match="values: expected at least one value along dim 0"):
        mean_confidence_interval(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="z: expected a positive finite number"):
        mean_confidence_interval(torch.zeros(3), z=-1.96)


def test_best_of_n_takes_numpy_bools_like_every_flag() -> None:
    """np.True_ was refused ("expected a bool ..., got bool np.True_") while check_bool accepts it elsewhere."""
    scores = torch.tensor([[1.0, 4.0], [3.0, 2.0]])
    for flag, best in ((np.True_, [1, 0]), (np.False_, [0, 1])):
        out = best_of_n(scores, higher_is_better=flag)  # type: ignore[arg-type]
        assert out.best_index.tolist() == best


def test_best_of_n_takes_psnr_output_as_it_comes_with_its_layout() -> None:
    """psnr gives (N, T, B) for time-first samples; best_of_n read three axes as (N, B, T) only, so chaining the
    two ranked the samples per time step (best_index of shape (T,)) without an error."""
    gen = torch.Generator().manual_seed(3)
    n, t, b = 4, 5, 3
    target = torch.rand(t, b, 1, 8, 8, generator=gen)
    noise = torch.linspace(0.02, 0.3, n).reshape(n, 1, 1, 1, 1, 1)
    # Sample j of sequence k is the target plus noise of level noise[(j + k) % n]: the best sample differs by sequence.
    levels = torch.stack([noise.roll(-k, 0) for k in range(b)], dim=3).reshape(n, 1, b, 1, 1, 1)
    samples = (target + levels * torch.randn(n, t, b, 1, 8, 8, generator=gen)).clamp(0, 1)
    scores = psnr(samples, target.expand_as(samples))  # (N, T, B)
    sel = best_of_n(scores, higher_is_better=True, layout="n t b")
    assert sel.best_index.shape == (b,)
    expected = [min(range(n), key=lambda j, k=k: float(levels[j, 0, k])) for k in range(b)]  # least noise
    assert sel.best_index.tolist() == expected
    assert sel.best_curve is not None
    torch.testing.assert_close(sel.best_curve, scores[sel.best_index, :, torch.arange(b)])  # (B, T)
    batch_first = best_of_n(scores.transpose(1, 2), higher_is_better=True, layout="n b t")
    for a, c in zip(sel, batch_first):
        torch.testing.assert_close(a, c)
    best_videos = select_samples(samples, sel.best_index, batch_dim=2)
    for k in range(b):
        torch.testing.assert_close(best_videos[:, k], samples[expected[k], :, k])


def test_best_of_n_needs_the_layout_of_three_axes() -> None:
    scores = torch.rand(4, 5, 3)
    with pytest.raises(ValueError, match=r"^layout: three-dimensional scores \(shape \[4, 5, 3\]\) need their layout"):
        best_of_n(scores, higher_is_better=True)
    with pytest.raises(
        ValueError, match=r"^layout: expected 'n t b' or 'n b t' for scores of shape \[4, 5, 3\], got 'b n t'"
    ):
        best_of_n(scores, higher_is_better=True, layout="b n t")
    with pytest.raises(ValueError, match=r"^layout: expected 'n b' for scores of shape \[4, 5\], got 'n t b'"):
        best_of_n(scores[..., 0], higher_is_better=True, layout="n t b")
    with pytest.raises(TypeError, match=r"^layout: expected a string such as 'n t b', or None, got tuple"):
        best_of_n(scores, higher_is_better=True, layout=("n", "t", "b"))  # type: ignore[arg-type]
    two = best_of_n(scores[..., 0], higher_is_better=True, layout="n b")
    assert two.best_index.tolist() == best_of_n(scores[..., 0], higher_is_better=True).best_index.tolist()


def test_select_samples_needs_the_batch_axis_by_name() -> None:
    """A default batch_dim of 1 took the time axis of time-first samples for the batch one."""
    with pytest.raises(TypeError, match="batch_dim"):
        select_samples(torch.zeros(2, 3, 3), torch.zeros(3, dtype=torch.long))  # type: ignore[call-arg]


def test_ssim_cpu_blocks_give_each_frame_its_own_score(monkeypatch: pytest.MonkeyPatch) -> None:
    # On CPU, ssim filters its (frame, channel) planes a block at a time. Whatever the block size (one plane,
    # a block ending inside a frame's channels, a last partial block, all planes at once), each frame's
    # score is the one it gets alone.
    pred, target = _noisy_pair((5, 7, 3, 16, 16), seed=11, dtype=torch.float32)
    pred[2, 3] = target[2, 3]  # an exact frame (SSIM 1) marks its place in the output
    alone = torch.stack([torch.stack([ssim(p, t) for p, t in zip(ps, ts)]) for ps, ts in zip(pred, target)])
    assert alone[2, 3] == 1 and bool((alone < 1).sum() == alone.numel() - 1)
    plane_bytes = 5 * 16 * 16 * 4
    for planes in (1, 2, 4, 13, 105, 1000):
        monkeypatch.setattr(metrics_module, "_CPU_BLOCK_BYTES", planes * plane_bytes)
        got = ssim(pred, target)
        assert got.shape == (5, 7)
        torch.testing.assert_close(got, alone, rtol=0, atol=1e-6)
