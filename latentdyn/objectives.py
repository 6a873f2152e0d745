"""Training objectives as pure functions with explicit, named reductions.

Per-sequence terms have shape (B,): each is a sum over time and dimensions of one sequence. The ELBO
averages them over the batch, so its value is per sequence (the official SRVP reduction: divide by B only).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch.distributions import Distribution, kl_divergence

from latentdyn._checks import check_shape, check_tensor

__all__ = ["ElboTerms", "elbo", "gaussian_nll", "kl_per_sequence", "residual_penalty"]


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_nll(target: torch.Tensor, mean: torch.Tensor, std: float | torch.Tensor) -> torch.Tensor:
    """−log N(target | mean, std²) summed over time and every dimension of each sequence.

    The full Gaussian log-density is used, constant included: per element
    ½((x − μ)/σ)² + log σ + ½ log 2π.

    Args:
        target: observations, (T, B, ...).
        mean: predicted means, same shape as ``target``.
        std: observation standard deviation (a float or a broadcastable tensor).

    Returns:
        Per-sequence NLL, (B,).
    """
    check_tensor(target, "target")
    check_tensor(mean, "mean")
    if target.shape != mean.shape:
        raise ValueError(f"mean: expected the shape of target {list(target.shape)}, got {list(mean.shape)}")
    if target.dim() < 2:
        raise ValueError(f"target: expected a time-first tensor (T, B, ...), got shape {list(target.shape)}")
    reduce_dims = (0, *range(2, target.dim()))  # everything but the batch axis
    if isinstance(std, (int, float)) and not isinstance(std, bool):
        # One σ for every element: Σ ½((x − μ)/σ)² + n·(log σ + ½ log 2π) without materialising a
        # full-size log σ (what Normal.log_prob does): about a third of the elementwise work. A Python σ
        # is checked and used on the host: no tensor is copied to (or read back from) the device.
        if not std > 0 or not math.isfinite(std):
            raise ValueError(f"std: expected a positive standard deviation (finite), got {std!r}")
        n = target[:, 0].numel()
        sq = (target - mean).square().sum(reduce_dims)
        return sq / (2 * std**2) + n * (math.log(std) + _HALF_LOG_2PI)
    scale = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    if bool((scale <= 0).any()):
        raise ValueError(f"std: expected a positive standard deviation, got {std!r}")
    if scale.dim() == 0:
        n = target[:, 0].numel()
        sq = (target - mean).square().sum(reduce_dims)
        return sq / (2 * scale.square()) + n * (scale.log() + _HALF_LOG_2PI)
    per_element = ((target - mean) / scale).square() / 2 + scale.log() + _HALF_LOG_2PI
    return per_element.sum(reduce_dims)


def kl_per_sequence(q: Distribution, p: Distribution) -> torch.Tensor:
    """KL(q ‖ p) through ``torch.distributions.kl_divergence``, summed over leading (time) batch axes.

    Args:
        q, p: distributions with the same batch shape, either (B,) or (T, B).

    Returns:
        Per-sequence KL, (B,).
    """
    kl = kl_divergence(q, p)
    if kl.dim() == 1:
        return kl
    if kl.dim() == 2:
        return kl.sum(0)
    raise ValueError(f"q: expected batch shape (B,) or (T, B), got {list(q.batch_shape)}")


def residual_penalty(residuals: torch.Tensor) -> torch.Tensor:
    """Sum over sub-steps of the Euclidean norm (not squared) of each residual Δt·f.

    Args:
        residuals: (S, B, Dy).

    Returns:
        Per-sequence penalty, (B,).
    """
    check_shape(residuals, "s b d", "residuals")
    return torch.linalg.vector_norm(residuals, dim=-1).sum(0)


class ElboTerms(NamedTuple):
    """Batch-averaged ELBO terms (each a 0-dim tensor, per sequence)."""

    nll: torch.Tensor
    kl_y: torch.Tensor
    kl_z: torch.Tensor
    residual: torch.Tensor
    total: torch.Tensor


def elbo(
    nll: torch.Tensor,
    kl_y: torch.Tensor | None = None,
    kl_z: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    *,
    beta_y: float = 1.0,
    beta_z: float = 1.0,
    residual_weight: float = 1.0,
) -> ElboTerms:
    """Negative ELBO with β weights: mean over the batch of nll + β_y·KL_y + β_z·KL_z + λ·penalty.

    Args:
        nll: per-sequence negative log-likelihood, (B,).
        kl_y: per-sequence KL of the initial state, (B,), or None.
        kl_z: per-sequence KL of the transition noise, (B,), or None.
        residual: per-sequence residual penalty, (B,), or None.
        beta_y: weight of ``kl_y``.
        beta_z: weight of ``kl_z``.
        residual_weight: λ; the penalty is added only when λ > 0 (as the official code does).

    Returns:
        The terms averaged over the batch and the weighted total.
    """
    b = check_shape(nll, "b", "nll")["b"]
    zero = nll.new_zeros(b)
    terms = []
    for name, value in (("kl_y", kl_y), ("kl_z", kl_z), ("residual", residual)):
        if value is None:
            terms.append(zero)
        else:
            check_shape(value, "b", name, b=b)
            terms.append(value)
    ky, kz, res = terms
    total = nll + beta_y * ky + beta_z * kz
    if residual_weight > 0:
        total = total + residual_weight * res
    return ElboTerms(nll.mean(), ky.mean(), kz.mean(), res.mean(), total.mean())
