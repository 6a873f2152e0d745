"""Training objectives as pure functions with explicit, named reductions.

Per-sequence terms have shape (B,): each is a sum over time and dimensions of one sequence. The ELBO
averages them over the batch, so its value is per sequence (the official SRVP reduction: divide by B only).
"""

from __future__ import annotations

import math
from typing import NamedTuple, cast

import torch
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from latentdyn._checks import check_float_tensor, check_mask_type, check_shape, is_real, mask_as_bool
from latentdyn._repr import fields_repr

__all__ = ["ElboTerms", "elbo", "gaussian_nll", "kl_per_sequence", "residual_penalty"]


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_nll(
    target: torch.Tensor,
    mean: torch.Tensor,
    std: float | torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """−log N(target | mean, std²) summed over time and every dimension of each sequence.

    The full Gaussian log-density is used, constant included: per element
    ½((x − μ)/σ)² + log σ + ½ log 2π.

    Half-precision inputs (float16, bfloat16) are computed and reduced in float32: a per-sequence NLL sums
    T·C·H·W terms, which overflows float16 (largest value 65504) for a few 64×64 frames, and bfloat16 keeps
    only about 3 significant digits of such a sum.

    Args:
        target: observations, (T, B, ...), floating point.
        mean: predicted means, same shape as ``target``, floating point.
        std: observation standard deviation, positive and finite: a Python number (checked on the host), or
            a real (not bool, not complex) tensor whose shape broadcasts to the shape of ``target`` (its
            values are checked, which reads them back to the host: pass a Python number in a training step).
            The values of a tensor ``std`` are not checked inside ``torch.compile`` (torch >= 2.3) or a
            ``torch.func`` transform (``vmap``, ``grad``), which cannot read them back: a learned std can be
            vmapped over (an ensemble) and compiled with ``fullgraph=True``.
        mask: which elements are observed, for padded sequences: a bool tensor, or a 0/1 floating-point or
            integer tensor (read as ``mask != 0``; its values are not read back to check they are 0 or 1),
            whose shape broadcasts to the shape of ``target`` (for a (T, B) mask of (T, B, D) observations,
            ``mask[..., None]``). A masked-out element contributes nothing, neither its squared error nor its
            log σ and constant terms, and no gradient, even where the padding of ``target`` is NaN; a tensor
            ``std`` may be NaN or 0 there too. A mask with fewer axes than ``target`` that equals its leading
            axes and would also broadcast along its trailing ones (a (T, B) mask of (T, B, D) observations with
            T == B == D) is ambiguous and refused: write ``mask[..., None]`` or ``mask[None]``. ``None`` (the
            default): every element is observed.

    Returns:
        Per-sequence NLL, (B,) (empty for B = 0), in the dtype ``target`` and ``mean`` promote to, float32 for
        float16 and bfloat16.

    Raises:
        TypeError: ``target`` or ``mean`` is not a floating-point tensor; ``std`` is neither a number nor a
            real tensor (a bool or complex tensor); ``mask`` is neither None nor a bool or real tensor.
        ValueError: shapes differ, ``target`` is not time-first, ``std`` or ``mask`` does not broadcast to
            ``target`` without growing it, ``mask`` is ambiguous (see above), or ``std`` is not positive and
            finite (a tensor ``std``: where an element is observed, outside torch.compile and torch.func
            transforms; the message gives the number of such values, the first one's index and value).
    """
    check_float_tensor(target, "target")
    check_float_tensor(mean, "mean")
    if target.shape != mean.shape:
        raise ValueError(f"mean: expected the shape of target {list(target.shape)}, got {list(mean.shape)}")
    if target.dim() < 2:
        raise ValueError(f"target: expected a time-first tensor (T, B, ...), got shape {list(target.shape)}")
    observed = None if mask is None else _check_mask(mask, target)
    reduce_dims = (0, *range(2, target.dim()))  # everything but the batch axis
    # Elements per sequence (target[:, 0] fails for B = 0); a list, not a generator, which torch.compile cannot
    # trace without a graph break.
    n = math.prod([target.shape[d] for d in reduce_dims])
    dtype = _working_dtype(torch.promote_types(target.dtype, mean.dtype))
    diff = target.to(dtype) - mean.to(dtype)
    count: float | torch.Tensor = n
    if observed is not None:
        # Zeroed before any arithmetic: a NaN in the padding then reaches neither the sum nor the gradient.
        diff = torch.where(observed, diff, diff.new_zeros(()))
        count = observed.expand(target.shape).sum(reduce_dims).to(dtype)
    if is_real(std):
        std = float(std)
        # One σ for every element: Σ ½((x − μ)/σ)² + n·(log σ + ½ log 2π) without materialising a
        # full-size log σ (what Normal.log_prob does): about a third of the elementwise work. A Python σ
        # is checked and used on the host: no tensor is copied to (or read back from) the device.
        if not std > 0 or not math.isfinite(std):
            raise ValueError(f"std: expected a positive standard deviation (finite), got {std!r}")
        sq = diff.square().sum(reduce_dims)
        return sq / (2 * std**2) + count * (math.log(std) + _HALF_LOG_2PI)
    if not isinstance(std, torch.Tensor):
        raise TypeError(f"std: expected a float or a tensor, got {type(std).__name__} {std!r}")
    if std.dtype == torch.bool or std.is_complex():
        raise TypeError(f"std: expected a real tensor (floating point or integer), got dtype {std.dtype}")
    if not _broadcasts_to(std.shape, target.shape):
        raise ValueError(
            f"std: expected a shape that broadcasts to the shape of target {list(target.shape)}, got {list(std.shape)}"
        )
    scale = std.to(dtype=dtype, device=mean.device)
    # Reading the values back is data-dependent control flow, which torch.func transforms (vmap) and
    # torch.compile(fullgraph=True) cannot trace: there the check is left out.
    if not (_is_traced(std) or (observed is not None and _is_traced(observed))):
        _check_std_values(std, scale, observed)
    if scale.dim() == 0:
        sq = diff.square().sum(reduce_dims)
        return sq / (2 * scale.square()) + count * (scale.log() + _HALF_LOG_2PI)
    if observed is not None:
        # Replaced before any arithmetic, as diff: a 0 or NaN σ in the padding reaches neither the sum nor the
        # gradient (0 × 1/0 would be NaN there).
        scale = torch.where(observed, scale, scale.new_ones(()))
    per_element = (diff / scale).square() / 2 + scale.log() + _HALF_LOG_2PI
    if observed is not None:
        per_element = torch.where(observed, per_element, per_element.new_zeros(()))
    return per_element.sum(reduce_dims)


def _check_std_values(std: torch.Tensor, scale: torch.Tensor, observed: torch.Tensor | None) -> None:
    """Refuse a tensor σ that is not positive and finite where an element is observed (padding may hold a NaN
    or 0 σ), naming how many values are bad and the first one (not the whole tensor)."""
    bad = ~(torch.isfinite(scale) & (scale > 0))
    if not bool(bad.any()):  # the usual case: one read-back, the mask not even looked at
        return
    if observed is not None:
        # A value of std is used where some observed element reads it through the broadcast.
        bad = (bad & observed).to(torch.int32).sum_to_size(scale.shape) > 0
        if not bool(bad.any()):
            return
    first = tuple(int(i) for i in bad.nonzero()[0])
    where = f"std[{', '.join(map(str, first))}]" if first else "std"
    observed_text = " where an element is observed" if observed is not None else ""
    raise ValueError(
        f"std: expected a positive standard deviation (finite){observed_text}, got {int(bad.sum())} of "
        f"{bad.numel()} values that are not, the first {where} = {float(std[first])!r}"
    )


_is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3


def _is_traced(x: torch.Tensor) -> bool:
    """Whether ``x`` is being traced by torch.compile (torch >= 2.3) or is a torch.func transform's tensor
    (vmap, grad, jacrev, ...): its values cannot be read back into Python control flow there."""
    if _is_compiling is not None and _is_compiling():
        return True
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether ``shape`` broadcasts to ``target`` without growing it."""
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def _check_mask(mask: object, target: torch.Tensor) -> torch.Tensor:
    """The observation mask of :func:`gaussian_nll` as a bool tensor on the device of ``target`` (no values read)."""
    mask = check_mask_type(mask)
    missing = target.dim() - mask.dim()
    # Equal to the target's leading axes: a mask of each step (T, B), which needs trailing axes of size 1.
    leading = 0 < mask.dim() < target.dim() and tuple(mask.shape) == tuple(target.shape[: mask.dim()])
    nones = ", ".join(["None"] * missing)
    if not _broadcasts_to(mask.shape, target.shape):
        hint = f"; add trailing axes of size 1: mask[..., {nones}]" if leading else ""
        raise ValueError(
            f"mask: expected a shape that broadcasts to the shape of target {list(target.shape)}, got "
            f"{list(mask.shape)}{hint}"
        )
    if leading and any(n != 1 for n in mask.shape):
        # It also broadcasts along the trailing axes (T == B == D for a (T, B) mask of (T, B, D) observations):
        # broadcasting would read it as a mask of the trailing axes, which is rarely what such a mask means. (A
        # mask of ones only reads the same either way.)
        raise ValueError(
            f"mask: shape {list(mask.shape)} is ambiguous for target {list(target.shape)}: it equals the target's "
            "leading axes and also broadcasts along its trailing ones; say which: "
            f"mask[..., {nones}] for the leading axes (e.g. a (T, B) mask of each step), "
            f"mask[{nones}] for the trailing ones"
        )
    return mask_as_bool(mask, target.device)


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for the half precisions (sums of many terms overflow or lose their digits there), else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def kl_per_sequence(
    q: Distribution | None, p: Distribution | None, *, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(q ‖ p) through ``torch.distributions.kl_divergence``, summed over leading (time) batch axes.

    The two distributions must have the same batch and event shapes: no broadcasting, so that a posterior
    over fewer steps than a prior is an error rather than a silent comparison against the wrong steps.

    Half-precision diagonal Gaussians (``Independent(Normal)`` with a float16 or bfloat16 mean or scale, what
    heads give under ``torch.autocast``) are computed and reduced in float32, as in :func:`gaussian_nll`: a
    per-sequence KL sums T·D terms, which overflows float16 and keeps about 3 significant digits in bfloat16.
    For other distributions a half-precision per-step KL is summed over time in float32.

    Args:
        q, p: distributions with the same batch shape, either (B,) or (T, B), and the same event shape, which
            must not be empty: a plain ``Normal(loc, scale)`` over (T, B, D) has batch (T, B, D) and no event,
            and one over (B, D) would be read as T = B steps of D sequences. (Typed as optional so that a
            ``Rollout``'s ``prior`` and ``posterior`` pass a type checker; ``None`` is refused.)
        mask: which steps count, for padded sequences: a bool tensor, or a 0/1 floating-point or integer
            tensor (read as ``mask != 0``; its values are not read back), of exactly the batch shape of ``q``
            and ``p``, (T, B) or (B,). For the KL of a rollout's transitions, batch (T−1, B), and a (T, B)
            mask of observed frames, pass ``observed[1:]``: the transition into frame t belongs to frame t.
            A masked-out step contributes exactly 0, even where its KL is not finite (NaN distribution
            parameters in the padding), and its gradient is 0: for diagonal Gaussians (``Independent(Normal)``)
            also where its parameters are NaN or infinite (they are replaced by N(0, I) before the KL), for other
            distributions where they are finite. ``None`` (the default): every step counts.

    Returns:
        Per-sequence KL, (B,); zeros for T = 0 steps. In the dtype the parameters promote to, float32 for
        float16 and bfloat16.

    Raises:
        TypeError: ``q`` or ``p`` is not a ``torch.distributions.Distribution`` (``None`` included: the prior
            of a rollout of a model without a prior, the posterior of a rollout given none); ``mask`` is
            neither None nor a bool or real tensor.
        ValueError: the batch or event shapes differ, an event shape is empty (a plain ``Normal``: wrap it with
            ``Independent(..., 1)`` or use :func:`~latentdyn.distributions.diag_gaussian`), the batch shape is
            neither (B,) nor (T, B), or ``mask`` does not have that batch shape.
    """
    for name, d in (("q", q), ("p", p)):
        if d is None:
            raise TypeError(
                f"{name}: expected a torch Distribution, got None (a Rollout's prior is None when its model has no "
                "prior, its posterior when the rollout was given none)"
            )
        if not isinstance(d, Distribution):
            raise TypeError(f"{name}: expected a torch Distribution, got {type(d).__name__}")
    assert q is not None and p is not None  # (for the type checkers)
    for name, d in (("q", q), ("p", p)):
        if len(d.event_shape) == 0:
            raise ValueError(
                f"{name}: expected a distribution over vectors, event shape (D,), got batch {list(d.batch_shape)} "
                f"and event [] ({type(d).__name__}): its last batch axis would be read as the sequences; wrap it as "
                "Independent(Normal(loc, scale), 1) or build it with diag_gaussian(loc, scale)"
            )
    if q.batch_shape != p.batch_shape or q.event_shape != p.event_shape:
        raise ValueError(
            f"p: expected the batch shape {list(q.batch_shape)} and event shape {list(q.event_shape)} of q, got "
            f"batch {list(p.batch_shape)} and event {list(p.event_shape)}; to compare a posterior over L steps "
            "with a rollout's prior, select its first steps with index_steps(r.prior, slice(0, L))"
        )
    if len(q.batch_shape) not in (1, 2):
        raise ValueError(f"q: expected batch shape (B,) or (T, B), got {list(q.batch_shape)}")
    if mask is not None:
        mask = check_mask_type(mask)
        if mask.shape != q.batch_shape:
            hint = ""
            if len(q.batch_shape) == 2 and tuple(mask.shape) == (q.batch_shape[0] + 1, q.batch_shape[1]):
                hint = "; a (T, B) mask of frames gives its (T−1, B) transitions as mask[1:]"
            raise ValueError(
                f"mask: expected the batch shape of q and p {list(q.batch_shape)}, got {list(mask.shape)}{hint}"
            )
    if 0 in q.batch_shape:
        # No steps (a single-frame rollout) or no sequences: a sum over nothing. kl_divergence itself fails on
        # empty Independent distributions (it reshapes with -1), so the zeros are made here.
        return q.mean.new_zeros(q.batch_shape[-1], dtype=_working_dtype(q.mean.dtype))
    keep = None if mask is None else mask_as_bool(mask, mask.device)  # (q.mean: not every distribution has one)
    kl = kl_divergence(
        _float32_if_half(_standard_where_masked(q, keep)), _float32_if_half(_standard_where_masked(p, keep))
    )
    # Another kind of distribution with half-precision parameters: at least the sum over time in float32.
    kl = kl.to(_working_dtype(kl.dtype))
    if keep is not None:
        # Selected, not multiplied: 0·NaN (a KL of NaN padding) would be NaN.
        kl = torch.where(keep.to(kl.device), kl, kl.new_zeros(()))
    return kl if kl.dim() == 1 else kl.sum(0)


def _standard_where_masked(d: Distribution, keep: torch.Tensor | None) -> Distribution:
    """A diagonal Gaussian (exactly ``Independent(Normal)``) with N(0, 1) in place of its masked-out steps
    (``keep`` False, of its batch shape), so that their KL is computed on finite values: NaN parameters there
    (a posterior of padding) would otherwise give NaN gradients through the KL's backward, 0·NaN. Other
    distributions, or no mask: ``d``."""
    if keep is None or not (type(d) is Independent and type(d.base_dist) is Normal):
        return d
    base = cast(Normal, d.base_dist)
    where = keep.to(base.loc.device).reshape(*keep.shape, *(1,) * (base.loc.dim() - keep.dim()))
    loc = torch.where(where, base.loc, base.loc.new_zeros(()))
    scale = torch.where(where, base.scale, base.scale.new_ones(()))
    return Independent(Normal(loc, scale, validate_args=False), d.reinterpreted_batch_ndims, validate_args=False)


def _float32_if_half(d: Distribution) -> Distribution:
    """A diagonal Gaussian (exactly ``Independent(Normal)``: a subclass may have its own KL) with a float16 or
    bfloat16 loc or scale, rebuilt with both in float32 (a constructed one, not validated again); else ``d``."""
    if not (type(d) is Independent and type(d.base_dist) is Normal):
        return d
    base = cast(Normal, d.base_dist)
    half = (torch.float16, torch.bfloat16)
    if base.loc.dtype not in half and base.scale.dtype not in half:
        return d
    dtype = _working_dtype(torch.promote_types(base.loc.dtype, base.scale.dtype))
    normal = Normal(base.loc.to(dtype), base.scale.to(dtype), validate_args=False)
    return Independent(normal, d.reinterpreted_batch_ndims, validate_args=False)


def residual_penalty(residuals: torch.Tensor | None, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over sub-steps of the Euclidean norm (not squared) of each residual Δt·f.

    Half-precision residuals (float16, bfloat16) are computed and reduced in float32, as in
    :func:`gaussian_nll`: the penalty sums the norms of every sub-step, which overflows float16 and keeps
    about 3 significant digits in bfloat16.

    Args:
        residuals: the increments of every sub-step, (S, B, Dy), floating point; a rollout's ``residuals``
            have S = (T−1)·n. (Typed as optional so that ``Rollout.residuals`` passes a type checker; ``None``
            is refused.)
        mask: which sub-steps count, for padded sequences: a bool tensor, or a 0/1 floating-point or integer
            tensor (read as ``mask != 0``; its values are not read back), of shape (M, B) where M divides S,
            each row covering S/M consecutive sub-steps: a (T−1, B) mask of the transitions (``observed[1:]``
            for a (T, B) mask of observed frames: the transition into frame t belongs to frame t) whatever
            the number n of sub-steps, or an (S, B) mask of each sub-step. (A (T, B) mask of the frames
            themselves is refused, except when T divides n, where its shape is that of a valid mask and it is
            read as one: pass ``observed[1:]``.) A masked-out residual contributes exactly 0 and no gradient,
            even where it is not finite. ``None`` (the default): every sub-step counts.

    Returns:
        Per-sequence penalty, (B,), in the dtype of ``residuals``, float32 for float16 and bfloat16.

    Raises:
        TypeError: ``residuals`` is not a floating-point tensor (``None``, what the rollout of a discrete-time
            cell reports, included); ``mask`` is neither None nor a bool or real tensor.
        ValueError: ``residuals`` is not 3-dimensional; ``mask`` is not (M, B) with M dividing S.
    """
    if residuals is None:
        raise TypeError(
            "residuals: expected a tensor (S, B, Dy), got None: the rollout's cell is discrete-time (MLPCell, "
            "GRUCell: has_residuals is False) and reports no residuals; pass residual=None to elbo"
        )
    check_float_tensor(residuals, "residuals")
    check_shape(residuals, "s b d", "residuals")
    work = residuals.to(_working_dtype(residuals.dtype))
    if mask is not None:
        steps = _check_substep_mask(mask, residuals)
        # Zeroed before the norm (whose gradient at 0 is 0 in torch): a NaN residual in the padding reaches
        # neither the sum nor the gradient.
        work = torch.where(steps[..., None], work, work.new_zeros(()))
    return torch.linalg.vector_norm(work, dim=-1).sum(0)


def _check_substep_mask(mask: object, residuals: torch.Tensor) -> torch.Tensor:
    """The mask of :func:`residual_penalty`, (M, B) with M dividing S, as a bool (S, B) on the device of
    ``residuals`` (each row repeated S/M times; no values read)."""
    mask = check_mask_type(mask)
    n_steps, batch = residuals.shape[0], residuals.shape[1]
    rows = mask.shape[0] if mask.dim() == 2 else -1
    # Rows covering a whole number k >= 1 of sub-steps each (and a (0, B) mask of no sub-step: T = 1).
    fits = (
        mask.dim() == 2 and mask.shape[1] == batch and (rows == n_steps or (0 < rows < n_steps and n_steps % rows == 0))
    )
    if not fits:
        raise ValueError(
            f"mask: expected shape (M, B) with B = {batch} and M dividing the S = {n_steps} sub-steps of residuals, "
            "each row covering S/M consecutive sub-steps (a (T−1, B) mask of the transitions, such as observed[1:] "
            f"of a (T, B) mask of frames, or an (S, B) mask of each sub-step), got {list(mask.shape)}"
        )
    mask = mask_as_bool(mask, residuals.device)
    return mask if rows == n_steps else mask.repeat_interleave(n_steps // rows, dim=0)


class ElboTerms(NamedTuple):
    """Batch-averaged ELBO terms (each a 0-dim tensor, per sequence).

    Attributes:
        nll: mean over the batch of the per-sequence negative log-likelihood.
        kl_y: mean KL of the initial state (unweighted; zero when not given).
        kl_z: mean KL of the transition noise (unweighted; zero when not given).
        residual: mean residual penalty (unweighted; zero when not given).
        total: the weighted objective to minimise, mean of nll + β_y·KL_y + β_z·KL_z + λ·penalty.
    """

    nll: torch.Tensor
    kl_y: torch.Tensor
    kl_z: torch.Tensor
    residual: torch.Tensor
    total: torch.Tensor

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


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
        nll: per-sequence negative log-likelihood, (B,) with B >= 1 (a mean over no sequence is undefined),
            floating point.
        kl_y: per-sequence KL of the initial state, (B,), floating point, or None.
        kl_z: per-sequence KL of the transition noise, (B,), floating point, or None.
        residual: per-sequence residual penalty, (B,), floating point, or None.
        beta_y: weight of ``kl_y``.
        beta_z: weight of ``kl_z``.
        residual_weight: λ; the penalty is added only when λ > 0 (as the official code does).

    Returns:
        The terms averaged over the batch and the weighted total.

    Raises:
        TypeError: a weight is not a real number; a term is not a floating-point tensor.
        ValueError: a weight is negative or not finite; a term is not of shape (B,); B = 0.
    """
    for name, weight in (("beta_y", beta_y), ("beta_z", beta_z), ("residual_weight", residual_weight)):
        if not is_real(weight):
            raise TypeError(f"{name}: expected a real number >= 0, got {type(weight).__name__} {weight!r}")
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"{name}: expected a finite weight >= 0, got {weight!r}")
    b = check_shape(check_float_tensor(nll, "nll"), "b", "nll")["b"]
    if b == 0:
        raise ValueError("nll: expected at least one sequence (B >= 1) to average over, got shape [0]")
    zero = nll.new_zeros(b)
    terms = []
    for name, value in (("kl_y", kl_y), ("kl_z", kl_z), ("residual", residual)):
        if value is None:
            terms.append(zero)
        else:
            check_shape(check_float_tensor(value, name), "b", name, b=b)
            terms.append(value)
    ky, kz, res = terms
    total = nll + beta_y * ky + beta_z * kz
    if residual_weight > 0:
        total = total + residual_weight * res
    return ElboTerms(nll.mean(), ky.mean(), kz.mean(), res.mean(), total.mean())
