"""Fréchet video distance (FVD): I3D Kinetics-400 logits, Gaussian fits and the Fréchet distance.

FVD (Unterthiner et al., 2018) compares two sets of videos through the embeddings of an I3D network
(Inception-v1 inflated to 3-D, trained on Kinetics-400): each set is summarised by the mean and covariance
of its embeddings, and the score is the Fréchet distance between the two Gaussians,

    FVD = ‖μ_r − μ_g‖² + tr Σ_r + tr Σ_g − 2 tr (Σ_r^{1/2} Σ_g Σ_r^{1/2})^{1/2}.

SRVP computes it with the Google research code (TensorFlow 1.x and the TF-Hub module ``i3d-kinetics-400/1``);
SRVP's protocol, which this module follows in PyTorch:

* videos are **uint8-quantised** frames (floats in ``[0, 1]`` are quantised here by truncating ``× 255``, as
  the official ``.byte()`` does), taken as values in ``[0, 255]``, repeated to RGB when grayscale, resized
  bilinearly to 224×224 and mapped to ``[-1, 1]``;
* the embedding is the 400 Kinetics logits, averaged over time as the TF-Hub module does;
* embeddings are computed in chunks of 16 videos and at least 16 videos are required. The official code pads
  the last chunk with the first videos and drops their embeddings; in eval mode every video is embedded
  independently, so plain smaller last chunks give the same numbers;
* the means and **unbiased** (``N − 1``) covariances are compared in float64.

The network is the TF model's architecture (TF ``SAME`` padding, BatchNorm ε = 1e-3, 2×7×7 VALID average
pool, time-averaged logits) in PyTorch. Its weights are not shipped: :class:`InceptionI3D` loads the widely
used PyTorch port layout (module names of ``piergiaj/pytorch-i3d``, e.g. ``i3d_pretrained_400.pt``), which
the user supplies (:meth:`InceptionI3D.from_file`). Those are converted TF weights, so values are close to,
but not guaranteed bit-identical with, the TF-Hub numbers of the paper.

Resizing: TF 1.x ``tf.image.resize_bilinear`` (what the official code calls) samples the source at
``i · in/out`` (no half-pixel centres), unlike ``torch.nn.functional.interpolate(align_corners=False)``.
``resize="tf1"`` (default) reproduces the former, ``resize="half_pixel"`` the latter (as several PyTorch FVD
ports do); the protocol records which one was used.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from latentdyn._checks import check_choice, check_float_tensor, check_positive_int, check_shape, check_tensor, is_real
from latentdyn._repr import fields_repr
from latentdyn.video._frames import check_value_range
from latentdyn.video.lpips import _check_state, _read_state_dict, _resolve_weights_path

__all__ = [
    "I3D_ENV_VAR",
    "I3D_FILENAME",
    "MIN_FRAMES",
    "MIN_VIDEOS",
    "FVDProtocol",
    "FVDResult",
    "GaussianFit",
    "InceptionI3D",
    "compute_fvd",
    "frechet_distance",
    "fvd_from_embeddings",
    "gaussian_fit",
    "i3d_embeddings",
    "preprocess_for_i3d",
]

I3D_FILENAME = "i3d_pretrained_400.pt"
"""File name looked up in the torch cache directory (``torch.hub.get_dir()/checkpoints/``)."""
I3D_ENV_VAR = "LATENTDYN_I3D_WEIGHTS"
MIN_VIDEOS = 16
"""The official FVD code embeds chunks of 16 videos and needs at least one full chunk."""
RESIZE_MODES = ("tf1", "half_pixel")
SAMPLE_CHOICES = ("first", "random", "best", "worst")


# --------------------------------------------------------------------------------------------------------
# Gaussian fits and the Fréchet distance
# --------------------------------------------------------------------------------------------------------


class GaussianFit(NamedTuple):
    """Mean and covariance of a set of embeddings, float64."""

    mean: torch.Tensor
    """``(D,)``"""
    cov: torch.Tensor
    """``(D, D)``, unbiased (divided by ``N − 1``)."""

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


def gaussian_fit(embeddings: torch.Tensor) -> GaussianFit:
    """Sample mean and unbiased covariance ``Σ = (X − μ)ᵀ(X − μ) / (N − 1)`` of embeddings, in float64.

    The ``N − 1`` normalisation is the one of TF-GAN's ``frechet_classifier_distance_from_activations``
    (used by the official FVD code) and of ``numpy.cov``.

    Args:
        embeddings: one row per video, shape ``(N, D)``, ``N ≥ 2``.

    Returns:
        A :class:`GaussianFit` with ``mean`` ``(D,)`` and ``cov`` ``(D, D)``, float64, on the input device.

    Raises:
        TypeError: ``embeddings`` is not a tensor.
        ValueError: not 2-D, or fewer than 2 rows, or non-finite values.
    """
    sizes = check_shape(embeddings, "n d", name="embeddings")
    if sizes["n"] < 2:
        raise ValueError(f"embeddings: need at least 2 rows for a covariance, got shape {list(embeddings.shape)}")
    x = embeddings.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("embeddings: contains NaN or infinite values")
    mean = x.mean(dim=0)
    centred = x - mean
    cov = centred.T @ centred / (sizes["n"] - 1)
    return GaussianFit(mean=mean, cov=cov)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition (negatives → 0)."""
    eigvals, eigvecs = torch.linalg.eigh(matrix)
    return (eigvecs * eigvals.clamp_min(0.0).sqrt()) @ eigvecs.T


def _check_psd(sym: torch.Tensor, dtype: torch.dtype, name: str) -> None:
    """Refuse a symmetric float64 matrix with an eigenvalue below zero beyond the round-off of a covariance
    computed in ``dtype``, or in float32 whatever ``dtype`` says (statistics computed on a GPU in float32 are
    often passed on in float64): ``D · eps · 10`` relative to the largest eigenvalue magnitude."""
    if sym.numel() == 0:
        return
    eigvals = torch.linalg.eigvalsh(sym)
    eps = max(torch.finfo(dtype).eps if dtype.is_floating_point else 0.0, torch.finfo(torch.float32).eps)
    tolerance = 10.0 * sym.shape[0] * eps * float(eigvals.abs().max())
    lowest = float(eigvals.min())
    if lowest < -tolerance:
        raise ValueError(
            f"{name}: expected a positive semi-definite covariance, got an eigenvalue of {lowest:.4g} (largest "
            f"magnitude {float(eigvals.abs().max()):.4g})"
        )


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Fréchet (2-Wasserstein²) distance ``‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}``.

    Computed in float64 with a route that stays stable for singular covariances (fewer videos than
    embedding dimensions is common): ``Σ₁^{1/2}`` comes from the eigen-decomposition of the symmetrised
    ``Σ₁`` with negative round-off eigenvalues set to 0, and ``tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}`` is the sum of
    the square roots of the (clamped) eigenvalues of that symmetric PSD matrix. This equals
    ``tr (Σ₁Σ₂)^{1/2}`` (same eigenvalues) without a general matrix square root, which for singular or
    ill-conditioned inputs returns complex values (``scipy.linalg.sqrtm``). It is the route of TF-GAN, minus
    its SVD. A result below 0 from round-off is returned as 0.

    Args:
        mu1: mean of the first Gaussian, shape ``(D,)``.
        sigma1: covariance of the first Gaussian, shape ``(D, D)``, symmetric PSD.
        mu2: mean of the second Gaussian, shape ``(D,)``.
        sigma2: covariance of the second Gaussian, shape ``(D, D)``, symmetric PSD.

    Returns:
        The distance, a Python float ``≥ 0``.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: shapes that are not ``(D,)``/``(D, D)`` with one ``D``, non-finite values, or a covariance
            that is not positive semi-definite (an eigenvalue below zero by more than round-off).
    """
    d = check_shape(mu1, "d", name="mu1")["d"]
    check_shape(mu2, "d", name="mu2", d=d)
    check_shape(sigma1, "d d", name="sigma1", d=d)
    check_shape(sigma2, "d d", name="sigma2", d=d)
    m1, m2, s1, s2 = (t.to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    for name, t in (("mu1", m1), ("sigma1", s1), ("mu2", m2), ("sigma2", s2)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    for name, sym, given in (("sigma1", s1, sigma1), ("sigma2", s2, sigma2)):
        _check_psd(sym, given.dtype, name)
    root1 = _psd_sqrt(s1)
    inner = root1 @ s2 @ root1
    inner = 0.5 * (inner + inner.T)
    trace_sqrt = torch.linalg.eigvalsh(inner).clamp_min(0.0).sqrt().sum()
    value = (m1 - m2).square().sum() + torch.trace(s1) + torch.trace(s2) - 2.0 * trace_sqrt
    return max(float(value), 0.0)


def fvd_from_embeddings(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between the Gaussian fits of two embedding sets.

    Args:
        real: embeddings of the real videos, shape ``(N, D)``.
        fake: embeddings of the generated videos, shape ``(M, D)``.

    Returns:
        ``frechet_distance(*gaussian_fit(real), *gaussian_fit(fake))``.

    Raises:
        TypeError, ValueError: as :func:`gaussian_fit` and :func:`frechet_distance`.
    """
    fit_r = gaussian_fit(real)
    fit_f = gaussian_fit(fake)
    return frechet_distance(fit_r.mean, fit_r.cov, fit_f.mean, fit_f.cov)


# --------------------------------------------------------------------------------------------------------
# I3D (Inception-v1 inflated to 3-D), the Kinetics-400 classifier whose logits embed videos
# --------------------------------------------------------------------------------------------------------


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding of one axis: output ``ceil(size/stride)``, the extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """Zero-pad ``(N, C, T, H, W)`` so that a VALID op with ``kernel``/``stride`` acts like TF ``SAME``."""
    pads: list[int] = []
    for size, k, s in reversed(list(zip(x.shape[-3:], kernel, stride))):  # F.pad lists the last axis first
        pads.extend(_same_padding(int(size), k, s))
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """3-D convolution with TF ``SAME`` padding, then optional BatchNorm and ReLU (``conv3d``, ``bn``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        *,
        batch_norm: bool = True,
        relu: bool = True,
        bias: bool = False,
        bn_eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        self.relu = relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel_size=kernel, stride=stride, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=bn_eps) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the unit to ``x`` of shape ``(N, C_in, T, H, W)``; returns ``(N, C_out, T', H', W')``."""
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """3-D max-pooling with TF ``SAME`` padding.

    Padding is with zeros, which equals TF's (padding ignored by the max) because every pooled tensor in
    I3D is a ReLU output or a concatenation of ReLU outputs, hence non-negative.
    """

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` of shape ``(N, C, T, H, W)``; returns ``(N, C, ⌈T/s_t⌉, ⌈H/s_h⌉, ⌈W/s_w⌉)``."""
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Inception-v1 mixed block: 1×1, 1×1→3×3, 1×1→3×3 and pool→1×1 branches, concatenated on channels."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int], *, bn_eps: float) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0, bn_eps=bn_eps)
        self.b1a = Unit3D(in_channels, w1a, bn_eps=bn_eps)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3D(in_channels, w2a, bn_eps=bn_eps)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3), bn_eps=bn_eps)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3b, bn_eps=bn_eps)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(N, C_in, T, H, W)``; returns ``(N, C_out, T, H, W)``."""
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (name, in_channels, branch widths) of the nine mixed blocks of Inception-v1.
_MIXED: tuple[tuple[str, int, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)
# I3D needs ceil(T / 8) >= 2 time steps at the last block for its 2-frame temporal pooling.
MIN_FRAMES = 9


class InceptionI3D(nn.Module):
    """I3D Inception-v1 Kinetics classifier; ``forward`` returns the time-averaged logits used by FVD.

    The layers carry the module names of the widely used PyTorch port (``Conv3d_1a_7x7``,
    ``MaxPool3d_2a_3x3``, …, ``Mixed_5c``, ``logits``; each unit with ``conv3d`` and ``bn``), so its state
    dicts (e.g. ``i3d_pretrained_400.pt``) load directly. The head follows the TF model: a 2×7×7 VALID
    average pool (here: a mean over space, identical at 224×224, and which keeps small test inputs
    possible), a 1×1×1 convolution with bias to the logits, and a mean of the logits over the remaining
    time steps. Dropout is omitted (an identity in eval mode).

    Args:
        num_classes: number of logits (400 for Kinetics-400).
        in_channels: input channels (3 for RGB).
        bn_eps: BatchNorm epsilon. ``1e-3`` is the TF/Sonnet value of the original model (and of
            ``piergiaj/pytorch-i3d``); some FVD ports use PyTorch's ``1e-5``.

    Raises:
        TypeError, ValueError: ``num_classes`` or ``in_channels`` not a positive int, ``bn_eps`` not positive.
    """

    def __init__(self, *, num_classes: int = 400, in_channels: int = 3, bn_eps: float = 1e-3) -> None:
        super().__init__()
        check_positive_int(num_classes, "num_classes")
        check_positive_int(in_channels, "in_channels")
        if not is_real(bn_eps):
            raise TypeError(f"bn_eps: expected a positive float, got {type(bn_eps).__name__} {bn_eps!r}")
        if not bn_eps > 0:
            raise ValueError(f"bn_eps: expected a positive float, got {bn_eps!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        layers: list[tuple[str, nn.Module]] = [
            ("Conv3d_1a_7x7", Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps)),
            ("MaxPool3d_2a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2))),
            ("Conv3d_2b_1x1", Unit3D(64, 64, bn_eps=bn_eps)),
            ("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)),
            ("MaxPool3d_3a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2))),
        ]
        for name, channels, widths in _MIXED:
            layers.append((name, InceptionBlock(channels, widths, bn_eps=bn_eps)))
            if name == "Mixed_3c":
                layers.append(("MaxPool3d_4a_3x3", MaxPool3dSame((3, 3, 3), (2, 2, 2))))
            elif name == "Mixed_4f":
                layers.append(("MaxPool3d_5a_2x2", MaxPool3dSame((2, 2, 2), (2, 2, 2))))
        self._order = tuple(name for name, _ in layers)
        for name, layer in layers:
            self.add_module(name, layer)
        self.logits = Unit3D(1024, num_classes, batch_norm=False, relu=False, bias=True)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None, *, bn_eps: float = 1e-3) -> InceptionI3D:
        """The Kinetics-400 I3D with user-supplied weights, in eval mode and frozen.

        The file is resolved from ``path``, then the environment variable ``LATENTDYN_I3D_WEIGHTS``, then
        ``torch.hub.get_dir()/checkpoints/i3d_pretrained_400.pt``. It must be a state dict in the
        ``piergiaj/pytorch-i3d`` layout (``Conv3d_1a_7x7.conv3d.weight``, …, ``logits.conv3d.bias``);
        BatchNorm ``num_batches_tracked`` entries may be absent.

        Args:
            path: the weights file.
            bn_eps: BatchNorm epsilon (see the class docstring).

        Raises:
            FileNotFoundError: no file found; the message lists the three ways to supply it.
            ValueError: the file is not a state dict, or a key is missing, unexpected or wrongly shaped
                (the message names the file and the key).
        """
        file = _resolve_weights_path(
            path,
            env_var=I3D_ENV_VAR,
            filename=I3D_FILENAME,
            what="I3D Kinetics-400 weights",
            source="a PyTorch port of the Kinetics-400 I3D in the piergiaj/pytorch-i3d layout, "
            "as used by common PyTorch FVD code",
            argument_name="path",
        )
        network = cls(bn_eps=bn_eps)
        state = _read_state_dict(file)
        expected = {k: v.shape for k, v in network.state_dict().items()}
        _check_state(expected, state, file, optional=("num_batches_tracked",))
        network.load_state_dict(state, strict=False)
        network.eval()
        network.requires_grad_(False)
        return network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Time-averaged class logits.

        Args:
            x: videos in ``[-1, 1]``, shape ``(N, C, T, H, W)`` (Conv3d layout; see
                :func:`preprocess_for_i3d`), ``T ≥ 9``.

        Returns:
            Logits, shape ``(N, num_classes)``.

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: wrong shape or channel count, or fewer than 9 frames.
        """
        sizes = check_shape(x, "n c t h w", name="x", c=self.in_channels)
        if sizes["t"] < MIN_FRAMES:
            raise ValueError(f"x: I3D needs at least {MIN_FRAMES} frames, got shape {list(x.shape)} (N, C, T, H, W)")
        for name in self._order:
            x = self.get_submodule(name)(x)
        return self.head(x)

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from the last block's features: spatial mean, 2-frame windows, time mean, 1×1×1 conv.

        Args:
            features: output of ``Mixed_5c``, shape ``(N, 1024, T', H', W')`` with ``T' ≥ 2``.

        Returns:
            Logits, shape ``(N, num_classes)``.
        """
        x = features.mean(dim=(-2, -1))  # (N, 1024, T'): the 7x7 VALID spatial pool at 224x224
        x = 0.5 * (x[..., 1:] + x[..., :-1])  # 2-frame VALID temporal pool, stride 1
        logits = self.logits(x.mean(dim=-1)[..., None, None, None])  # time mean commutes with 1x1x1 conv
        return logits.flatten(1)


# --------------------------------------------------------------------------------------------------------
# Preprocessing and embeddings
# --------------------------------------------------------------------------------------------------------


def _tf1_resize_matrix(in_size: int, out_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(out, in)`` weights of TF 1.x ``resize_bilinear`` (align_corners=False, half_pixel_centers=False)."""
    src = torch.arange(out_size, dtype=torch.float64) * (in_size / out_size)
    low = src.floor().long().clamp_max(in_size - 1)
    high = (low + 1).clamp_max(in_size - 1)
    frac = src - low.to(torch.float64)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, low), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix.to(dtype=dtype, device=device)


def _quantised_values(videos: torch.Tensor) -> torch.Tensor:
    """uint8 frames as float32 values in ``[0, 255]``; floats in ``[0, 1]`` are quantised by truncation."""
    if videos.dtype == torch.uint8:
        return videos.to(torch.float32)
    if not videos.is_floating_point():
        raise TypeError(f"videos: expected uint8 or floating-point frames, got dtype {videos.dtype}")
    check_value_range({"videos": videos}, 1.0, "[0, 1]", " (or pass uint8 frames as they are)")
    return (videos * 255).to(torch.uint8).to(torch.float32)


def preprocess_for_i3d(videos: torch.Tensor, *, resolution: int = 224, resize: str = "tf1") -> torch.Tensor:
    """FVD input pipeline: quantise to uint8 values, RGB, bilinear resize, map ``[0, 255] → [-1, 1]``.

    Args:
        videos: frames, time first, shape ``(T, N, C, H, W)`` with ``C`` = 1 or 3; uint8 values in
            ``[0, 255]``, or floats in ``[0, 1]`` quantised here as ``(x · 255).byte()`` (truncation).
        resolution: output height and width (224 in the protocol; smaller values keep tests fast).
        resize: ``"tf1"`` for TF 1.x ``resize_bilinear`` sampling (the official code), ``"half_pixel"`` for
            ``F.interpolate(mode="bilinear", align_corners=False)``.

    Returns:
        Float32 videos in ``[-1, 1]`` in the Conv3d layout, shape ``(N, 3, T, resolution, resolution)``.

    Raises:
        TypeError: ``videos`` is not a uint8 or floating-point tensor.
        ValueError: wrong shape or channels, float values outside ``[0, 1]``, bad ``resolution``/``resize``.
    """
    sizes = check_shape(videos, "t n c h w", name="videos")
    if sizes["c"] not in (1, 3):
        raise ValueError(f"videos: expected 1 (grayscale) or 3 (RGB) channels, got shape {list(videos.shape)}")
    check_positive_int(resolution, "resolution")
    check_choice(resize, "resize", RESIZE_MODES)
    values = _quantised_values(videos)
    frames = rearrange(values, "t n c h w -> (n t) c h w")
    if sizes["c"] == 1:
        frames = frames.expand(-1, 3, -1, -1)
    if resize == "tf1":
        rows = _tf1_resize_matrix(sizes["h"], resolution, frames.dtype, frames.device)
        cols = _tf1_resize_matrix(sizes["w"], resolution, frames.dtype, frames.device)
        frames = torch.einsum("ph,bchw,qw->bcpq", rows, frames, cols)
    else:
        frames = F.interpolate(frames, size=(resolution, resolution), mode="bilinear", align_corners=False)
    scaled = frames * (2.0 / 255.0) - 1.0
    return rearrange(scaled, "(n t) c h w -> n c t h w", n=sizes["n"])


def _network_device(network: nn.Module) -> torch.device:
    for param in network.parameters():
        return param.device
    for buffer in network.buffers():
        return buffer.device
    return torch.device("cpu")


def i3d_embeddings(
    videos: torch.Tensor,
    network: nn.Module,
    *,
    resolution: int = 224,
    resize: str = "tf1",
    chunk_size: int = 16,
) -> torch.Tensor:
    """Embeddings of videos by ``network`` (the I3D logits), preprocessed and computed chunk by chunk.

    Args:
        videos: frames, shape ``(T, N, C, H, W)``, uint8 or floats in ``[0, 1]`` (see
            :func:`preprocess_for_i3d`); moved to the network's device one chunk at a time.
        network: module mapping ``(n, 3, T, R, R)`` in ``[-1, 1]`` to ``(n, D)``, in eval mode (e.g.
            :class:`InceptionI3D`).
        resolution: frame size ``R`` fed to the network.
        resize: ``"tf1"`` or ``"half_pixel"`` (see :func:`preprocess_for_i3d`).
        chunk_size: videos per forward pass (16 in the official code).

    Returns:
        Embeddings, shape ``(N, D)``, on the network's device.

    Raises:
        TypeError: ``network`` is not an ``nn.Module``.
        ValueError: ``network`` is in training mode, or as :func:`preprocess_for_i3d`.
    """
    if not isinstance(network, nn.Module):
        raise TypeError(f"network: expected a torch.nn.Module, got {type(network).__name__}")
    if network.training:
        raise ValueError(
            "network: expected eval mode (BatchNorm in training mode would make each embedding depend on "
            "the other videos of its chunk); call network.eval()"
        )
    check_shape(videos, "t n c h w", name="videos")
    check_positive_int(chunk_size, "chunk_size")
    device = _network_device(network)
    outputs: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, videos.shape[1], chunk_size):
            chunk = videos[:, start : start + chunk_size].to(device)
            outputs.append(network(preprocess_for_i3d(chunk, resolution=resolution, resize=resize)))
    return torch.cat(outputs, dim=0)


# --------------------------------------------------------------------------------------------------------
# The protocol and the score
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FVDProtocol:
    """How an FVD number was obtained; stored next to the value so that numbers are compared like for like.

    The defaults are SRVP's protocol: full videos with the ground-truth conditioning frames in both
    sets, the first random sample as the generated video, 224×224 frames with TF 1.x bilinear resizing,
    chunks of 16 videos.
    """

    n_cond: int = 0
    """Conditioning frames at the start of every video (0 if unknown or none)."""
    include_conditioning: bool = True
    """Keep the conditioning frames in both sets (SRVP); ``False`` drops the first ``n_cond`` frames."""
    sample: str = "first"
    """Which generated sample the fake videos are: ``"first"`` (SRVP), ``"random"``, ``"best"``, ``"worst"``."""
    resolution: int = 224
    """Frame size fed to I3D (224 in the protocol)."""
    resize: str = "tf1"
    """``"tf1"`` (TF 1.x ``resize_bilinear``, the official code) or ``"half_pixel"`` (``F.interpolate``)."""
    chunk_size: int = 16
    """Videos per I3D forward pass."""
    n_videos: int | None = None
    """Number of videos per set; ``None`` before scoring, filled in by :func:`compute_fvd`."""

    def __post_init__(self) -> None:
        check_positive_int(self.n_cond, "n_cond", minimum=0)
        if not isinstance(self.include_conditioning, bool):
            raise TypeError(f"include_conditioning: expected a bool, got {self.include_conditioning!r}")
        check_choice(self.sample, "sample", SAMPLE_CHOICES)
        check_positive_int(self.resolution, "resolution")
        check_choice(self.resize, "resize", RESIZE_MODES)
        check_positive_int(self.chunk_size, "chunk_size")
        if self.n_videos is not None:
            check_positive_int(self.n_videos, "n_videos", minimum=MIN_VIDEOS)


@dataclass(frozen=True, eq=False)  # (array fields: == raised; identity instead)
class FVDResult:
    """An FVD value with the protocol that produced it and the embeddings it came from."""

    value: float
    """The Fréchet distance between the real and generated embedding Gaussians."""
    protocol: FVDProtocol
    """The protocol, with ``n_videos`` filled in."""
    real_embeddings: torch.Tensor
    """``(N, D)`` embeddings of the real videos."""
    fake_embeddings: torch.Tensor
    """``(N, D)`` embeddings of the generated videos."""

    def __repr__(self) -> str:
        """The fields in a line, the embeddings by shape and dtype (their values filled a notebook's screen)."""
        return fields_repr(self)


def compute_fvd(
    real: torch.Tensor,
    fake: torch.Tensor,
    network: nn.Module,
    protocol: FVDProtocol | None = None,
    *,
    real_embeddings: torch.Tensor | None = None,
) -> FVDResult:
    """Fréchet video distance between real and generated videos under a recorded protocol.

    Following SRVP, ``real`` holds [ground-truth conditioning frames, ground-truth future] and ``fake``
    holds [ground-truth conditioning frames, generated future] (sample 1); with
    ``protocol.include_conditioning=False`` the first ``protocol.n_cond`` frames are dropped from both.

    Several generated sets are scored against one real set (the paper's FVD ± over five samples) by embedding the
    real videos once: ``first = compute_fvd(real, fake_1, i3d)``, then
    ``compute_fvd(real, fake_k, i3d, real_embeddings=first.real_embeddings)``.

    Args:
        real: real videos, shape ``(T, N, C, H, W)``, uint8 or floats in ``[0, 1]``, ``N ≥ 16``.
        fake: generated videos, same shape as ``real``.
        network: the embedding network in eval mode, usually ``InceptionI3D.from_file()``.
        protocol: the options; default ``FVDProtocol()`` (SRVP's).
        real_embeddings: the embeddings of ``real`` by ``network`` under ``protocol``, shape ``(N, D)``, from an
            earlier call (its :attr:`FVDResult.real_embeddings`); None: ``real`` is embedded. They are not checked
            against ``real``: embeddings of other videos, or of another network or protocol, give a wrong value.

    Returns:
        An :class:`FVDResult` carrying the value, the protocol (with ``n_videos``) and the embeddings.

    Raises:
        TypeError: an input is not a tensor, ``protocol`` is not an :class:`FVDProtocol`.
        ValueError: fewer than 16 videos, different shapes, ``n_cond`` not below ``T`` when dropping
            conditioning frames, ``protocol.n_videos`` not ``N``, ``real_embeddings`` not ``(N, D)``, or as
            :func:`i3d_embeddings`.
    """
    protocol = FVDProtocol() if protocol is None else protocol
    if not isinstance(protocol, FVDProtocol):
        raise TypeError(f"protocol: expected an FVDProtocol, got {type(protocol).__name__}")
    sizes = check_shape(real, "t n c h w", name="real")
    check_tensor(fake, "fake")
    if fake.shape != real.shape:
        raise ValueError(
            f"real and fake: expected the same shape (T, N, C, H, W), got {list(real.shape)} and {list(fake.shape)}"
        )
    n = sizes["n"]
    if n < MIN_VIDEOS:
        raise ValueError(f"real and fake: FVD needs at least {MIN_VIDEOS} videos per set, got N = {n}")
    if protocol.n_videos is not None and protocol.n_videos != n:
        raise ValueError(f"protocol.n_videos: is {protocol.n_videos}, but the videos hold N = {n}")
    if not protocol.include_conditioning:
        if protocol.n_cond >= sizes["t"]:
            raise ValueError(
                f"protocol.n_cond: dropping {protocol.n_cond} conditioning frames leaves none of T = {sizes['t']}"
            )
        real, fake = real[protocol.n_cond :], fake[protocol.n_cond :]
    if real_embeddings is not None:
        check_float_tensor(real_embeddings, "real_embeddings")
        if real_embeddings.ndim != 2 or real_embeddings.shape[0] != n:
            raise ValueError(
                f"real_embeddings: expected the embeddings of the {n} real videos, (N, D) = ({n}, D), "
                f"got shape {list(real_embeddings.shape)}"
            )

    def embed(videos: torch.Tensor) -> torch.Tensor:
        return i3d_embeddings(
            videos, network, resolution=protocol.resolution, resize=protocol.resize, chunk_size=protocol.chunk_size
        )

    real_emb = embed(real) if real_embeddings is None else real_embeddings
    fake_emb = embed(fake)
    if real_emb.shape[1] != fake_emb.shape[1]:  # (given embeddings of another network)
        raise ValueError(
            f"real_embeddings: expected embeddings of size D = {fake_emb.shape[1]} (the network's), got shape "
            f"{list(real_emb.shape)}"
        )
    value = fvd_from_embeddings(real_emb, fake_emb)
    return FVDResult(
        value=value,
        protocol=dataclasses.replace(protocol, n_videos=n),
        real_embeddings=real_emb,
        fake_embeddings=fake_emb,
    )
