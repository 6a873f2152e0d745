"""Masks of the objectives for padded (variable-length) sequences, against sums written out in the tests: the KL
through torch.distributions on each sequence's own steps, the residual norms element by element, the NLL through
torch.distributions.Normal on the observed elements."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from latentdyn import MLP, ConditionalGaussianPrior, LatentSSM, MLPField, ResidualCell
from latentdyn.distributions import diag_gaussian
from latentdyn.objectives import gaussian_nll, kl_per_sequence, residual_penalty


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _steps(lengths: list[int], t_len: int) -> torch.Tensor:
    """(T, B) bool: sequence b is observed at its first lengths[b] steps."""
    return torch.arange(t_len)[:, None] < torch.tensor(lengths)


def _kl_of_first_steps(
    loc_q: torch.Tensor, scale_q: torch.Tensor, loc_p: torch.Tensor, scale_p: torch.Tensor, lengths: list[int]
) -> torch.Tensor:
    """Σ_t KL over sequence b's first lengths[b] steps only, each sequence a distribution of its own."""
    out = []
    for b, n in enumerate(lengths):
        q = Independent(Normal(loc_q[:n, b], scale_q[:n, b]), 1)
        p = Independent(Normal(loc_p[:n, b], scale_p[:n, b]), 1)
        out.append(kl_divergence(q, p).sum() if n else torch.zeros((), dtype=loc_q.dtype))
    return torch.stack(out)


# --- kl_per_sequence(mask=)


def test_kl_mask_leaves_padded_steps_out_even_where_they_are_nan() -> None:
    """Padded transitions were counted in KL_z (a length-5 sequence padded to 10: 3.53 instead of 0.90)."""
    t_len, b_len, d = 6, 4, 3
    lengths = [6, 2, 0, 4]
    loc_q, loc_p = _rand(t_len, b_len, d, seed=0), _rand(t_len, b_len, d, seed=1)
    scale_q, scale_p = _rand(t_len, b_len, d, seed=2).exp(), _rand(t_len, b_len, d, seed=3).exp()
    expected = _kl_of_first_steps(loc_q, scale_q, loc_p, scale_p, lengths)
    steps = _steps(lengths, t_len)
    # The padding of the posterior is NaN (an encoder fed NaN padding), that of the prior's scale 0.
    loc_q, scale_p = loc_q.clone(), scale_p.clone()
    loc_q[~steps] = float("nan")
    scale_p[~steps] = 0.0
    q = Independent(Normal(loc_q, scale_q, validate_args=False), 1, validate_args=False)
    p = Independent(Normal(loc_p, scale_p, validate_args=False), 1, validate_args=False)
    for mask in (steps, steps.double(), steps.long(), steps.to(torch.uint8)):
        kl = kl_per_sequence(q, p, mask=mask)
        assert kl.shape == (b_len,) and kl.dtype == torch.float64
        torch.testing.assert_close(kl, expected, rtol=1e-12, atol=1e-12)
    assert kl[2].item() == 0.0  # a sequence with no step: exactly 0
    # No mask: the padding is counted (here NaN).
    assert not kl_per_sequence(q, p).isfinite().all()


def test_kl_mask_gradient_is_zero_at_finite_padded_steps() -> None:
    """Finite padding: the masked-out steps get a zero gradient, the others the gradient of their own KL."""
    t_len, b_len, d = 5, 3, 2
    lengths = [5, 1, 3]
    params = [_rand(t_len, b_len, d, seed=10 + i) for i in range(4)]
    params[1], params[3] = params[1].exp(), params[3].exp()
    leaves = [x.clone().requires_grad_() for x in params]
    kl = kl_per_sequence(
        diag_gaussian(leaves[0], leaves[1]), diag_gaussian(leaves[2], leaves[3]), mask=_steps(lengths, t_len)
    )
    grads = torch.autograd.grad(kl.sum(), leaves)
    # The same gradient from the unpadded sequences, each through torch.distributions.
    ref_leaves = [x.clone().requires_grad_() for x in params]
    ref_grads = torch.autograd.grad(
        _kl_of_first_steps(ref_leaves[0], ref_leaves[1], ref_leaves[2], ref_leaves[3], lengths).sum(), ref_leaves
    )
    steps = _steps(lengths, t_len)
    for g, ref in zip(grads, ref_grads):
        assert g.isfinite().all() and torch.all(g[~steps] == 0)
        torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0])
def test_kl_mask_gradient_is_zero_where_diagonal_gaussian_padding_is_not_finite(bad: float) -> None:
    """Padding that is NaN or infinite (a posterior of padding) or a zero scale: the masked-out steps still get a
    zero gradient, and the others the gradient of their own KL (0·NaN in the KL's backward made every gradient
    NaN, the prior's included)."""
    t_len, b_len, d = 5, 3, 2
    lengths = [5, 1, 3]
    steps = _steps(lengths, t_len)
    params = [_rand(t_len, b_len, d, seed=20 + i) for i in range(4)]
    params[1], params[3] = params[1].exp(), params[3].exp()
    ref_leaves = [x.clone().requires_grad_() for x in params]
    ref_grads = torch.autograd.grad(
        _kl_of_first_steps(ref_leaves[0], ref_leaves[1], ref_leaves[2], ref_leaves[3], lengths).sum(), ref_leaves
    )
    expected = _kl_of_first_steps(*params, lengths)
    for padded in (0, 1, 2, 3):  # the posterior's loc or scale, the prior's loc or scale
        bad_params = [x.clone() for x in params]
        bad_params[padded][~steps] = bad
        leaves = [x.requires_grad_() for x in bad_params]
        q = Independent(Normal(leaves[0], leaves[1], validate_args=False), 1, validate_args=False)
        p = Independent(Normal(leaves[2], leaves[3], validate_args=False), 1, validate_args=False)
        kl = kl_per_sequence(q, p, mask=steps)
        torch.testing.assert_close(kl.detach(), expected, rtol=1e-12, atol=1e-12)
        grads = torch.autograd.grad(kl.sum(), leaves)
        for g, ref in zip(grads, ref_grads):
            assert g.isfinite().all() and torch.all(g[~steps] == 0), (padded, g)
            torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-12)


def test_kl_mask_of_distributions_without_a_mean() -> None:
    """A registered KL between distributions whose ``mean`` raises (exp-transformed Gaussians sharing their
    transform): the mask still applies, as for any distribution."""
    from torch.distributions import ExpTransform, TransformedDistribution

    t_len, b_len, d = 4, 3, 2
    lengths = [4, 1, 2]
    params = [_rand(t_len, b_len, d, seed=30 + i) for i in range(4)]
    params[1], params[3] = params[1].exp(), params[3].exp()

    def exp_of(loc: torch.Tensor, scale: torch.Tensor) -> TransformedDistribution:
        return TransformedDistribution(Independent(Normal(loc, scale), 1), [ExpTransform()])

    q, p = exp_of(params[0], params[1]), exp_of(params[2], params[3])
    with pytest.raises(NotImplementedError):
        q.mean  # noqa: B018
    kl = kl_per_sequence(q, p, mask=_steps(lengths, t_len))
    # The KL is invariant under a shared bijection: that of the Gaussians, on each sequence's own steps.
    torch.testing.assert_close(kl, _kl_of_first_steps(*params, lengths), rtol=1e-12, atol=1e-12)


def test_kl_mask_of_a_rollout_equals_the_short_sequence_rolled_alone() -> None:
    """The documented recipe: kl_per_sequence(r.posterior, r.prior, mask=observed[1:]) and
    residual_penalty(r.residuals, mask=observed[1:]) of a padded batch give, for a 3-frame sequence, the terms of
    that sequence rolled alone (computed here through kl_divergence and hand norms, not the functions' masks)."""
    torch.manual_seed(0)
    dy, dz, b_len, t_len, n = 3, 2, 3, 7, 3
    ssm = LatentSSM(
        ResidualCell(MLPField(dy, dz, 16, 2), dy, dz, n_substeps=n).double(),
        ConditionalGaussianPrior(MLP(dy, 16, 2 * dz, n_layers=2)).double(),
    )
    lengths = [7, 3, 5]
    observed = _steps(lengths, t_len)
    y0 = _rand(b_len, dy, seed=0)
    loc, scale = _rand(t_len - 1, b_len, dz, seed=1), _rand(t_len - 1, b_len, dz, seed=2).exp()
    roll = ssm.rollout(y0, t_len, posterior=diag_gaussian(loc, scale), sample=False)
    kl = kl_per_sequence(roll.posterior, roll.prior, mask=observed[1:])
    penalty = residual_penalty(roll.residuals, mask=observed[1:])
    for b, length in enumerate(lengths):
        alone = ssm.rollout(
            y0[b : b + 1],
            length,
            posterior=diag_gaussian(loc[: length - 1, b : b + 1], scale[: length - 1, b : b + 1]),
            sample=False,
        )
        assert alone.prior is not None and alone.posterior is not None and alone.residuals is not None
        torch.testing.assert_close(kl[b], kl_divergence(alone.posterior, alone.prior).sum(), rtol=1e-10, atol=1e-12)
        by_hand = sum(math.sqrt(sum(float(v) ** 2 for v in row)) for row in alone.residuals[:, 0].detach())
        torch.testing.assert_close(penalty[b].item(), by_hand, rtol=1e-10, atol=1e-12)
    # Unmasked, the short sequences' terms include their padded transitions.
    assert kl_per_sequence(roll.posterior, roll.prior)[1] > kl[1]


def test_kl_mask_of_one_step_batches_and_of_nothing() -> None:
    """(B,) batches take a (B,) mask; T = 0 and B = 0 still give zeros, the mask's shape checked."""
    m1, m2 = _rand(4, 2, seed=0), _rand(4, 2, seed=1)
    s1, s2 = _rand(4, 2, seed=2).exp(), _rand(4, 2, seed=3).exp()
    q, p = diag_gaussian(m1, s1), diag_gaussian(m2, s2)
    keep = torch.tensor([True, False, True, False])
    per_seq = kl_divergence(Independent(Normal(m1, s1), 1), Independent(Normal(m2, s2), 1))
    expected = torch.where(keep, per_seq, 0.0)
    torch.testing.assert_close(kl_per_sequence(q, p, mask=keep), expected, rtol=1e-12, atol=0)
    empty = diag_gaussian(torch.zeros(0, 3, 2), torch.ones(0, 3, 2))
    assert torch.equal(kl_per_sequence(empty, empty, mask=torch.ones(0, 3, dtype=torch.bool)), torch.zeros(3))
    with pytest.raises(ValueError, match=re.escape("mask: expected the batch shape of q and p [0, 3], got [1, 3]")):
        kl_per_sequence(empty, empty, mask=torch.ones(1, 3, dtype=torch.bool))
    none = diag_gaussian(torch.zeros(4, 0, 2), torch.ones(4, 0, 2))
    assert kl_per_sequence(none, none, mask=torch.ones(4, 0)).shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kl_mask_of_half_precision_gaussians_is_in_float32(dtype: torch.dtype) -> None:
    t_len, b_len, d = 60, 2, 64
    m1, m2 = (_rand(t_len, b_len, d, seed=5) + 6).to(dtype), _rand(t_len, b_len, d, seed=6).to(dtype)
    s1, s2 = (
        (0.5 * _rand(t_len, b_len, d, seed=7)).exp().to(dtype),
        (0.5 * _rand(t_len, b_len, d, seed=8)).exp().to(dtype),
    )
    lengths = [60, 45]
    expected = _kl_of_first_steps(m1.double(), s1.double(), m2.double(), s2.double(), lengths)
    assert expected.min() > torch.finfo(torch.float16).max  # a float16 sum would overflow
    kl = kl_per_sequence(diag_gaussian(m1, s1), diag_gaussian(m2, s2), mask=_steps(lengths, t_len))
    assert kl.dtype == torch.float32
    torch.testing.assert_close(kl.double(), expected, rtol=1e-5, atol=0)


def test_kl_mask_errors() -> None:
    q = diag_gaussian(torch.zeros(4, 3, 2), torch.ones(4, 3, 2))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "mask: expected the batch shape of q and p [4, 3], got [5, 3]; a (T, B) mask of frames gives its "
            "(T−1, B) transitions as mask[1:]"
        ),
    ):
        kl_per_sequence(q, q, mask=torch.ones(5, 3, dtype=torch.bool))
    for shape in ((4, 3, 1), (4, 1), (3,), (3, 4), ()):
        with pytest.raises(
            ValueError, match=re.escape(f"mask: expected the batch shape of q and p [4, 3], got {list(shape)}")
        ):
            kl_per_sequence(q, q, mask=torch.ones(shape, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"mask: expected a bool or 0/1 tensor or None, got list"):
        kl_per_sequence(q, q, mask=[[True] * 3] * 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"mask: expected a bool or 0/1 real tensor, got dtype torch.complex64"):
        kl_per_sequence(q, q, mask=torch.ones(4, 3, dtype=torch.complex64))
    with pytest.raises(TypeError):
        kl_per_sequence(q, q, torch.ones(4, 3, dtype=torch.bool))  # type: ignore[call-arg]  # keyword-only


# --- residual_penalty(mask=)


def _hand_penalty(res: torch.Tensor, keep: torch.Tensor) -> list[float]:
    """Σ over kept sub-steps s of sqrt(Σ_d res[s, b, d]²), element by element; keep is (S, B)."""
    s_len, b_len, d_len = res.shape
    return [
        sum(math.sqrt(sum(float(res[s, b, d]) ** 2 for d in range(d_len))) for s in range(s_len) if keep[s, b])
        for b in range(b_len)
    ]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_residual_penalty_mask_of_transitions_covers_their_sub_steps(n: int) -> None:
    """A (T−1, B) mask of transitions (observed[1:]) keeps the n sub-steps of each kept transition."""
    t_len, b_len, d = 6, 4, 3
    lengths = [6, 2, 1, 4]
    observed = _steps(lengths, t_len)
    res = _rand((t_len - 1) * n, b_len, d, seed=n)
    keep = torch.tensor([[observed[1 + s // n, b].item() for b in range(b_len)] for s in range((t_len - 1) * n)])
    expected = torch.tensor(_hand_penalty(res, keep), dtype=torch.float64)
    padded = res.clone()
    padded[~keep] = float("nan")
    for mask in (observed[1:], observed[1:].double(), observed[1:].long()):
        penalty = residual_penalty(padded, mask=mask)
        assert penalty.shape == (b_len,) and penalty.dtype == torch.float64
        torch.testing.assert_close(penalty, expected, rtol=1e-12, atol=1e-12)
    assert penalty[2].item() == 0.0  # one frame: no transition
    # An (S, B) mask of each sub-step gives the same.
    torch.testing.assert_close(residual_penalty(padded, mask=keep), expected, rtol=1e-12, atol=1e-12)


def test_residual_penalty_mask_of_each_sub_step_and_of_rows_covering_several() -> None:
    """M dividing S: a (2, B) mask of 6 sub-steps covers 3 each; an (S, B) mask decides each sub-step."""
    res = _rand(6, 2, 2, seed=0)
    rows = torch.tensor([[True, False], [False, True]])
    keep = rows.repeat_interleave(3, dim=0)
    torch.testing.assert_close(
        residual_penalty(res, mask=rows),
        torch.tensor(_hand_penalty(res, keep), dtype=torch.float64),
        rtol=1e-12,
        atol=1e-12,
    )
    odd = torch.tensor([[True, False], [False, False], [True, True], [False, True], [False, False], [True, False]])
    torch.testing.assert_close(
        residual_penalty(res, mask=odd),
        torch.tensor(_hand_penalty(res, odd), dtype=torch.float64),
        rtol=1e-12,
        atol=1e-12,
    )
    three_four = torch.tensor([[[3.0, 4.0]], [[5.0, 12.0]], [[6.0, 8.0]]])
    assert residual_penalty(three_four, mask=torch.tensor([[True], [False], [True]])).tolist() == [15.0]


def test_residual_penalty_mask_gradient_is_finite_and_zero_where_masked() -> None:
    """NaN residuals in the padding and a zero residual that is kept: every gradient finite, 0 at the masked rows;
    at the kept zero residual 0 too (torch's vector_norm has gradient 0 at 0, where sqrt(Σx²) has NaN)."""
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    (g0,) = torch.autograd.grad(torch.linalg.vector_norm(zero, dim=-1).sum(), zero)
    assert torch.equal(g0, torch.zeros(1, 3, dtype=torch.float64))
    res = _rand(4, 2, 3, seed=1)
    res[1, 0] = 0.0  # kept, and zero
    res[2:, 1] = float("nan")  # masked out
    mask = torch.tensor([[True, True], [True, True], [True, False], [True, False]])
    leaf = res.clone().requires_grad_()
    (grad,) = torch.autograd.grad(residual_penalty(leaf, mask=mask).sum(), leaf)
    assert grad.isfinite().all()
    assert torch.all(grad[2:, 1] == 0) and torch.all(grad[1, 0] == 0)
    # Elsewhere the gradient of a norm: x / ‖x‖.
    kept = [(0, 0), (2, 0), (3, 0), (0, 1), (1, 1)]
    for s, b in kept:
        torch.testing.assert_close(grad[s, b], res[s, b] / res[s, b].norm(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_residual_penalty_mask_of_half_precision_residuals_is_in_float32(dtype: torch.dtype) -> None:
    res = (30 * _rand(400, 2, 50, seed=9)).to(dtype)
    mask = _steps([400, 350], 400)
    expected = torch.where(mask, torch.linalg.vector_norm(res.double(), dim=-1), 0.0).sum(0)
    assert expected.min() > torch.finfo(torch.float16).max
    penalty = residual_penalty(res, mask=mask)
    assert penalty.dtype == torch.float32
    torch.testing.assert_close(penalty.double(), expected, rtol=1e-5, atol=0)


def test_residual_penalty_mask_errors_say_the_rule() -> None:
    res = torch.zeros(10, 3, 2)  # (T−1)·n = 5·2 sub-steps of 6 frames
    rule = "with B = 3 and M dividing the S = 10 sub-steps of residuals, each row covering S/M consecutive sub-steps"
    # A (T, B) mask of the frames (6 does not divide 10), too many rows, the wrong batch, one axis, three axes.
    for shape in ((6, 3), (20, 3), (5, 2), (5,), (5, 3, 1), (3, 10)):
        with pytest.raises(ValueError, match=re.escape(f"mask: expected shape (M, B) {rule}")) as e:
            residual_penalty(res, mask=torch.ones(shape, dtype=torch.bool))
        assert str(e.value).endswith(f"got {list(shape)}") and "observed[1:]" in str(e.value)
    # No sub-step (a single-frame rollout): the (0, B) transitions of a (1, B) frame mask only.
    empty = torch.zeros(0, 3, 2)
    assert torch.equal(residual_penalty(empty, mask=torch.ones(0, 3, dtype=torch.bool)), torch.zeros(3))
    with pytest.raises(ValueError, match=re.escape("M dividing the S = 0 sub-steps")):
        residual_penalty(empty, mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"mask: expected a bool or 0/1 tensor or None, got list"):
        residual_penalty(res, mask=[[True] * 3] * 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"mask: expected a bool or 0/1 real tensor, got dtype torch.complex64"):
        residual_penalty(res, mask=torch.ones(5, 3, dtype=torch.complex64))


# --- gaussian_nll: ambiguous masks, std only where observed


def _normal_nll(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float, keep: torch.Tensor) -> torch.Tensor:
    """Σ over kept elements of −log N(x | mean, std²) per sequence (axis 1), through torch.distributions."""
    std_full = torch.as_tensor(std, dtype=x.dtype).expand(x.shape)
    keep = keep.expand(x.shape)
    out = torch.zeros(x.shape[1], dtype=x.dtype)
    for b in range(x.shape[1]):
        k = keep[:, b]
        out[b] = -Normal(mean[:, b][k], std_full[:, b][k]).log_prob(x[:, b][k]).sum()
    return out


def test_gaussian_nll_refuses_a_mask_of_the_leading_axes_that_also_broadcasts() -> None:
    """3 series of 3 frames of 3 dimensions: a (T, B) mask without its trailing axis broadcast along (B, D) and
    was accepted (off by 436 in the review); (5, 4, 3) was refused with a hint."""
    x, mean = _rand(3, 3, 3, seed=0), _rand(3, 3, 3, seed=1)
    steps = _rand(3, 3, seed=2) > 0
    message = (
        "mask: shape [3, 3] is ambiguous for target [3, 3, 3]: it equals the target's leading axes and also "
        "broadcasts along its trailing ones; say which: mask[..., None] for the leading axes (e.g. a (T, B) mask of "
        "each step), mask[None] for the trailing ones"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        gaussian_nll(x, mean, 0.1, mask=steps)
    with pytest.raises(ValueError, match=re.escape("mask: shape [3, 3] is ambiguous")):
        gaussian_nll(x, mean, torch.full((3,), 0.1, dtype=torch.float64), mask=steps.double())
    # Either explicit form is accepted and means what it says.
    torch.testing.assert_close(
        gaussian_nll(x, mean, 0.1, mask=steps[..., None]),
        _normal_nll(x, mean, 0.1, steps[..., None]),
        rtol=1e-12,
        atol=1e-12,
    )
    torch.testing.assert_close(
        gaussian_nll(x, mean, 0.1, mask=steps[None]), _normal_nll(x, mean, 0.1, steps[None]), rtol=1e-12, atol=1e-12
    )
    # A (T,) mask of 3 steps of 3 dimensions, and T = 1 with B == D.
    with pytest.raises(ValueError, match=re.escape("say which: mask[..., None, None] for the leading axes")):
        gaussian_nll(x, mean, 0.1, mask=steps[:, 0])
    one = _rand(1, 4, 4, seed=3)
    with pytest.raises(ValueError, match=re.escape("mask: shape [1, 4] is ambiguous for target [1, 4, 4]")):
        gaussian_nll(one, one, 0.1, mask=torch.ones(1, 4, dtype=torch.bool))


def test_gaussian_nll_masks_that_read_one_way_only_are_accepted() -> None:
    """A full-shape mask, a mask of the trailing axes that is not of the leading ones, masks of size-1 axes (the
    same either way) and a 0-dim mask still pass."""
    x, mean = _rand(3, 3, 3, seed=0), _rand(3, 3, 3, seed=1)
    full = _rand(3, 3, 3, seed=4) > 0
    torch.testing.assert_close(
        gaussian_nll(x, mean, 0.2, mask=full), _normal_nll(x, mean, 0.2, full), rtol=1e-12, atol=1e-12
    )
    everything = torch.ones((), dtype=torch.bool)
    for shape in ((), (1,), (1, 1), (1, 1, 1)):
        torch.testing.assert_close(
            gaussian_nll(x, mean, 0.2, mask=torch.ones(shape)),
            _normal_nll(x, mean, 0.2, everything),
            rtol=1e-12,
            atol=1e-12,
        )
    y, m = _rand(5, 4, 3, seed=5), _rand(5, 4, 3, seed=6)
    per_dim = torch.tensor([True, False, True])  # (D,), not the leading axes
    torch.testing.assert_close(
        gaussian_nll(y, m, 0.2, mask=per_dim), _normal_nll(y, m, 0.2, per_dim), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -1.0, float("inf")])
def test_gaussian_nll_std_may_be_bad_where_masked_out(bad: float) -> None:
    """Per-observation error bars padded with NaN (or 0) were refused although masked out."""
    t_len, b_len, d = 5, 3, 2
    x, mean = _rand(t_len, b_len, d, seed=0), _rand(t_len, b_len, d, seed=1)
    steps = _steps([5, 2, 4], t_len)[..., None]  # (T, B, 1)
    std = 0.1 + _rand(t_len, b_len, d, seed=2).abs()
    expected = _normal_nll(x, mean, std, steps)
    padded_std, padded_x = std.clone(), x.clone()
    padded_std[~steps.expand_as(std)] = bad
    padded_x[~steps.expand_as(x)] = float("nan")
    torch.testing.assert_close(gaussian_nll(padded_x, mean, padded_std, mask=steps), expected, rtol=1e-12, atol=1e-12)
    # A σ per step (T, B, 1), bad at the padded steps.
    step_std = std[..., :1].clone()
    expected_steps = _normal_nll(x, mean, step_std, steps)
    step_std[~steps] = bad
    torch.testing.assert_close(
        gaussian_nll(padded_x, mean, step_std, mask=steps), expected_steps, rtol=1e-12, atol=1e-12
    )
    # A σ per dimension (D,) whose dimension 1 is never observed.
    dims = torch.tensor([True, False])
    per_dim = torch.tensor([0.3, bad], dtype=torch.float64)
    torch.testing.assert_close(
        gaussian_nll(x, mean, per_dim, mask=dims),
        _normal_nll(x, mean, torch.tensor([0.3, 1.0], dtype=torch.float64), dims),
        rtol=1e-12,
        atol=1e-12,
    )


def test_gaussian_nll_bad_std_message_gives_count_and_first_index_not_the_tensor() -> None:
    x = torch.zeros(4, 3, 2)
    std = torch.ones(4, 3, 2)
    std[1, 2, 0], std[3, 0, 1], std[2, 1, 1] = float("nan"), 0.0, -2.0
    with pytest.raises(ValueError) as e:
        gaussian_nll(x, x, std)
    assert str(e.value) == (
        "std: expected a positive standard deviation (finite), got 3 of 24 values that are not, the first "
        "std[1, 2, 0] = nan"
    )
    # Under a mask: the values some observed element reads, counted once each (a (T, 1, 1) σ read by 3 sequences).
    steps = _steps([1, 3, 2], 4)[..., None]
    with pytest.raises(ValueError) as e:
        gaussian_nll(x, x, std, mask=steps)
    assert str(e.value) == (
        "std: expected a positive standard deviation (finite) where an element is observed, got 2 of 24 values that "
        "are not, the first std[1, 2, 0] = nan"
    )
    per_step = torch.tensor([1.0, -1.0, 0.0, 1.0]).view(4, 1, 1)
    with pytest.raises(ValueError) as e:
        gaussian_nll(x, x, per_step, mask=steps)
    assert "got 2 of 4 values that are not, the first std[1, 0, 0] = -1.0" in str(e.value)
    assert "tensor(" not in str(e.value)
    with pytest.raises(ValueError, match=re.escape("got 1 of 1 values that are not, the first std = inf")):
        gaussian_nll(x, x, torch.tensor(float("inf")))


@pytest.mark.parametrize("bad", [0.0, float("nan")])
def test_gaussian_nll_gradients_are_finite_where_a_masked_out_std_is_bad(bad: float) -> None:
    """A 0 or NaN σ in the padding gave a finite loss but NaN gradients there (0 × 1/0 in the backward pass),
    which reached a network computing σ at its next step; the gradient at masked-out elements is 0, and at the
    observed ones that of the observed elements alone (Normal.log_prob on them)."""
    torch.manual_seed(0)
    target, mean = torch.rand(4, 2, 3, dtype=torch.float64), torch.rand(4, 2, 3, dtype=torch.float64)
    mask = torch.ones(4, 2, 1, dtype=torch.bool)
    mask[2:, 1] = False
    raw = torch.rand(4, 2, 3, dtype=torch.float64, requires_grad=True)
    padding = torch.where(mask, 0.0, bad).to(torch.float64)
    std = (torch.nn.functional.softplus(raw) + 0.1) * mask + padding  # (padded by arithmetic, as batches often are)
    gaussian_nll(target, mean, std, mask=mask).sum().backward()
    assert raw.grad is not None and bool(raw.grad.isfinite().all())
    assert torch.equal(raw.grad[2:, 1], torch.zeros(2, 3, dtype=torch.float64))
    kept = raw.detach().clone().requires_grad_(True)
    full = mask.expand(4, 2, 3)
    scale = torch.nn.functional.softplus(kept) + 0.1
    (-Normal(mean[full], scale[full]).log_prob(target[full])).sum().backward()
    assert kept.grad is not None
    torch.testing.assert_close(raw.grad, kept.grad, rtol=1e-12, atol=1e-12)


def test_gaussian_nll_vmapped_over_masks_with_a_std_bad_only_in_the_padding() -> None:
    """The values of std are not read back when the mask is a torch.func transform's tensor (vmap over masks):
    reading them was data-dependent control flow, which vmap refuses."""
    target, mean = torch.rand(4, 3, 5), torch.rand(4, 3, 5)
    mask = torch.ones(4, 3, 1, dtype=torch.bool)
    mask[2:, 1] = False
    std = torch.where(mask, torch.full((4, 3, 5), 0.5), torch.zeros(()))
    alone = gaussian_nll(target, mean, std, mask=mask)
    batched = torch.func.vmap(lambda m: gaussian_nll(target, mean, std, mask=m))(mask.expand(2, *mask.shape))
    torch.testing.assert_close(batched, alone.expand(2, 3))
