"""Objectives against formulas written out in the tests (closed-form KL, Gaussian NLL, residual norms)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from latentdyn import LatentSSM, MLPField, ResidualCell
from latentdyn.distributions import diag_gaussian, index_steps
from latentdyn.objectives import ElboTerms, elbo, gaussian_nll, kl_per_sequence, residual_penalty


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _closed_form_kl(m1: torch.Tensor, s1: torch.Tensor, m2: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """KL(N(m1, s1²) ‖ N(m2, s2²)) per element: log(s2/s1) + (s1² + (m1 − m2)²) / (2 s2²) − ½."""
    return torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


@given(t=st.integers(0, 4), b=st.integers(1, 4), d=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_kl_matches_closed_form(t: int, b: int, d: int, seed: int) -> None:
    """(T, B) batches sum over time and dimensions; t = 0 stands for a (B,) batch."""
    lead = (t, b) if t else (b,)
    m1, m2 = _rand(*lead, d, seed=seed), _rand(*lead, d, seed=seed + 1)
    s1, s2 = _rand(*lead, d, seed=seed + 2).exp(), _rand(*lead, d, seed=seed + 3).exp()
    kl = kl_per_sequence(diag_gaussian(m1, s1), diag_gaussian(m2, s2))
    expected = _closed_form_kl(m1, s1, m2, s2).sum(-1)
    if t:
        expected = expected.sum(0)
    assert kl.shape == (b,)
    torch.testing.assert_close(kl, expected, rtol=1e-12, atol=1e-12)


def test_kl_against_standard_normal() -> None:
    """KL(N(m, s²) ‖ N(0, 1)) = ½ Σ (m² + s² − 1 − log s²), the SRVP KL_y."""
    m, s = _rand(3, 4, seed=0), _rand(3, 4, seed=1).exp()
    kl = kl_per_sequence(diag_gaussian(m, s), diag_gaussian(torch.zeros_like(m), torch.ones_like(s)))
    torch.testing.assert_close(kl, 0.5 * (m**2 + s**2 - 1 - torch.log(s**2)).sum(-1))


def test_kl_rejects_deeper_batches() -> None:
    loc = torch.zeros(2, 3, 4, 5)
    q = diag_gaussian(loc, torch.ones_like(loc))
    with pytest.raises(ValueError, match=r"q: expected batch shape \(B,\) or \(T, B\), got \[2, 3, 4\]"):
        kl_per_sequence(q, q)


def test_kl_of_no_steps_is_zero() -> None:
    """A (0, B) batch (the prior of a single-frame rollout) sums over nothing: zeros (B,), not an error."""
    q = diag_gaussian(torch.zeros(0, 3, 2, dtype=torch.float64), torch.ones(0, 3, 2, dtype=torch.float64))
    p = diag_gaussian(torch.zeros(0, 3, 2, dtype=torch.float64), torch.full((0, 3, 2), 2.0, dtype=torch.float64))
    kl = kl_per_sequence(q, p)
    assert kl.shape == (3,) and kl.dtype == torch.float64 and torch.equal(kl, torch.zeros(3, dtype=torch.float64))
    none = diag_gaussian(torch.zeros(4, 0, 2), torch.ones(4, 0, 2))
    assert kl_per_sequence(none, none).shape == (0,)


def test_kl_refuses_to_broadcast_batch_or_event_shapes() -> None:
    """A posterior over 1 step against a prior over 4 steps is an error, not KL(q_1 ‖ p_t) for every t."""
    q = diag_gaussian(_rand(1, 3, 2, seed=0), _rand(1, 3, 2, seed=1).exp())
    p = diag_gaussian(_rand(4, 3, 2, seed=2), _rand(4, 3, 2, seed=3).exp())
    message = (
        r"p: expected the batch shape \[1, 3\] and event shape \[2\] of q, got batch \[4, 3\] and event \[2\]; "
        r".*index_steps\(r\.prior, slice\(0, L\)\)"
    )
    with pytest.raises(ValueError, match=message):
        kl_per_sequence(q, p)
    # (B,) against (T, B) would broadcast too.
    q_b = diag_gaussian(_rand(3, 2, seed=4), _rand(3, 2, seed=5).exp())
    with pytest.raises(ValueError, match=r"p: expected the batch shape \[3\]"):
        kl_per_sequence(q_b, p)
    # Same batch, different event size (Independent over an event of 1 against one of 2).
    p_event = diag_gaussian(_rand(1, 3, 1, seed=6), _rand(1, 3, 1, seed=7).exp())
    with pytest.raises(ValueError, match=r"and event shape \[2\] of q, got batch \[1, 3\] and event \[1\]"):
        kl_per_sequence(q, p_event)
    with pytest.raises(TypeError, match="p: expected a torch Distribution, got Tensor"):
        kl_per_sequence(q, torch.zeros(1, 3, 2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="q: expected a torch Distribution, got Tensor"):
        kl_per_sequence(torch.zeros(1, 3, 2), p)  # type: ignore[arg-type]
    # The selection the message suggests works and gives the closed form of the first step.
    from latentdyn.distributions import index_steps

    kl = kl_per_sequence(q, index_steps(p, slice(0, 1)))
    expected = _closed_form_kl(q.mean, q.stddev, p.mean[:1], p.stddev[:1]).sum((0, 2))
    torch.testing.assert_close(kl, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("std", [1.0, 0.2, 0.71])
def test_gaussian_nll_matches_formula_with_constant(std: float) -> None:
    """Per element ½((x − μ)/σ)² + log σ + ½ log 2π, summed over time and every axis but the batch."""
    target = _rand(5, 3, 1, 4, 4, seed=0).sigmoid()
    mean = _rand(5, 3, 1, 4, 4, seed=1).sigmoid()
    nll = gaussian_nll(target, mean, std)
    per_element = 0.5 * ((target - mean) / std) ** 2 + math.log(std) + 0.5 * math.log(2 * math.pi)
    expected = torch.stack([per_element[:, b].sum() for b in range(3)])
    assert nll.shape == (3,)
    torch.testing.assert_close(nll, expected, rtol=1e-12, atol=1e-10)
    tensor_std = gaussian_nll(target, mean, torch.tensor(std, dtype=torch.float64))
    torch.testing.assert_close(tensor_std, expected, rtol=1e-12, atol=1e-10)


def test_gaussian_nll_with_a_broadcast_std_matches_normal_log_prob() -> None:
    """A per-channel σ (broadcast over time, batch and pixels) agrees with torch.distributions.Normal."""
    target = _rand(4, 3, 2, 5, 5, seed=2)
    mean = _rand(4, 3, 2, 5, 5, seed=3)
    std = torch.tensor([0.3, 1.7], dtype=torch.float64).view(2, 1, 1)
    expected = -torch.distributions.Normal(mean, std).log_prob(target).sum(dim=(0, 2, 3, 4))
    torch.testing.assert_close(gaussian_nll(target, mean, std), expected, rtol=1e-12, atol=1e-10)


def test_gaussian_nll_with_a_per_sequence_std_uses_each_sequences_own_log_std() -> None:
    """A σ that differs between sequences (and pixels): each element pays its own log σ, so sequence b's NLL
    depends on its σ only (a log σ averaged over the whole batch would move it)."""
    target = _rand(3, 2, 1, 2, 2, seed=4)
    mean = _rand(3, 2, 1, 2, 2, seed=5)
    std = torch.tensor([[0.2, 0.5], [1.5, 3.0]], dtype=torch.float64).view(1, 2, 1, 1, 2)  # (T, B, C, H, W)
    expected = torch.zeros(2, dtype=torch.float64)
    for idx in torch.cartesian_prod(*(torch.arange(n) for n in target.shape)).tolist():
        t, b, c, h, w = idx
        sigma = float(std[0, b, 0, 0, w])
        z = float(target[t, b, c, h, w] - mean[t, b, c, h, w]) / sigma
        expected[b] += 0.5 * z * z + math.log(sigma) + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(gaussian_nll(target, mean, std), expected, rtol=1e-12, atol=1e-10)


def test_gaussian_nll_of_a_perfect_prediction_is_the_constant() -> None:
    x = torch.rand(2, 3, 10)
    nll = gaussian_nll(x, x, 1.0)
    torch.testing.assert_close(nll, torch.full((3,), 2 * 10 * 0.5 * math.log(2 * math.pi)))


def test_gaussian_nll_errors() -> None:
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"mean: expected the shape of target \[2, 3, 4\], got \[2, 3, 5\]"):
        gaussian_nll(x, torch.zeros(2, 3, 5), 1.0)
    with pytest.raises(ValueError, match=r"target: expected a time-first tensor \(T, B, \.\.\.\)"):
        gaussian_nll(torch.zeros(4), torch.zeros(4), 1.0)
    with pytest.raises(ValueError, match="std: expected a positive standard deviation"):
        gaussian_nll(x, x, 0.0)
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="std: expected a positive standard deviation"):
            gaussian_nll(x, x, bad)
    with pytest.raises(ValueError, match="std: expected a positive standard deviation"):
        gaussian_nll(x, x, torch.tensor([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(TypeError, match=r"target: expected a torch\.Tensor"):
        gaussian_nll(x.tolist(), x, 1.0)  # type: ignore[arg-type]


def test_gaussian_nll_std_tensor_must_broadcast_to_the_target() -> None:
    """A std that would grow the target's shape is an error: (2, 1, 1, 1) against (3, 2, 4) gave (3, 4)."""
    x = _rand(3, 2, 4, seed=0)
    with pytest.raises(
        ValueError,
        match=r"std: expected a shape that broadcasts to the shape of target \[3, 2, 4\], got \[2, 1, 1, 1\]",
    ):
        gaussian_nll(x, x, torch.ones(2, 1, 1, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"std: expected a shape that broadcasts .* got \[5\]"):
        gaussian_nll(x, x, torch.ones(5, dtype=torch.float64))  # does not broadcast at all
    # Shapes that broadcast to the target's (leading ones included) keep the (B,) result.
    for shape in ((1, 1, 1, 4), (3, 2, 4), (1, 2, 1), ()):
        if len(shape) > x.dim():
            with pytest.raises(ValueError, match="std: expected a shape that broadcasts"):
                gaussian_nll(x, x, torch.ones(shape, dtype=torch.float64))
        else:
            assert gaussian_nll(x, x, torch.ones(shape, dtype=torch.float64)).shape == (2,)


def test_gaussian_nll_rejects_non_finite_std_tensors_and_non_float_inputs() -> None:
    x = torch.zeros(2, 3, 4)
    for bad in (float("inf"), float("nan"), -1.0, 0.0):
        with pytest.raises(ValueError, match=r"std: expected a positive standard deviation \(finite\)"):
            gaussian_nll(x, x, torch.tensor(bad))
        with pytest.raises(ValueError, match=r"std: expected a positive standard deviation \(finite\)"):
            gaussian_nll(x, x, torch.tensor([1.0, 1.0, 1.0, bad]))
    with pytest.raises(TypeError, match="std: expected a float or a tensor, got list"):
        gaussian_nll(x, x, [1.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="std: expected a float or a tensor, got bool"):
        gaussian_nll(x, x, True)
    frames = torch.zeros(2, 3, 4, dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"target: expected a floating-point tensor, got dtype torch\.uint8"):
        gaussian_nll(frames, x, 1.0)
    with pytest.raises(TypeError, match=r"mean: expected a floating-point tensor, got dtype torch\.int64"):
        gaussian_nll(x, x.long(), 1.0)


def test_gaussian_nll_under_vmap_and_fullgraph_compile() -> None:
    """A tensor std (a learned observation noise) vmapped over, e.g. one per ensemble member, and the NLL compiled
    with fullgraph=True: the check of std's values (data-dependent control flow) made vmap raise, and a generator
    in math.prod broke the graph whatever std was. Eager calls still check the values."""
    x, mean = _rand(5, 3, 4, seed=0), _rand(5, 3, 4, seed=1)
    mask = _rand(5, 3, 1, seed=2) > 0
    stds = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    per_member = torch.func.vmap(lambda s: gaussian_nll(x, mean, s))(stds)
    assert torch.equal(per_member, torch.stack([gaussian_nll(x, mean, s) for s in stds]))
    full = torch.func.vmap(lambda s: gaussian_nll(x, mean, s.expand(4)))(stds)  # the per-element branch
    torch.testing.assert_close(full, per_member, rtol=1e-12, atol=0)

    def float_std(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return gaussian_nll(a, b, 0.5)

    def masked(a: torch.Tensor, b: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return gaussian_nll(a, b, 0.5, mask=k)

    cases: list[tuple[Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]] = [(float_std, (x, mean))]
    if hasattr(torch.compiler, "is_compiling"):  # torch >= 2.3: the value check can tell it is being traced
        cases += [(masked, (x, mean, mask)), (gaussian_nll, (x, mean, stds[0]))]  # (2.2's dynamo: mask.is_complex)
    try:
        for fn, args in cases:
            torch._dynamo.reset()
            compiled = torch.compile(fn, fullgraph=True, backend="eager")
            assert torch.equal(compiled(*args), fn(*args))
    finally:
        torch._dynamo.reset()
    with pytest.raises(ValueError, match=r"std: expected a positive standard deviation \(finite\)"):
        gaussian_nll(x, mean, -stds[0])


def test_residual_penalty_is_sum_of_unsquared_norms() -> None:
    res = _rand(6, 3, 4, seed=0)
    by_hand = torch.tensor(
        [sum(math.sqrt(sum(res[s, b, d].item() ** 2 for d in range(4))) for s in range(6)) for b in range(3)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(residual_penalty(res), by_hand, rtol=1e-12, atol=1e-12)
    # Not squared: the penalty is positively homogeneous of degree 1.
    torch.testing.assert_close(residual_penalty(3 * res), 3 * residual_penalty(res))
    three_four = torch.tensor([[[3.0, 4.0]], [[0.0, 0.0]], [[6.0, 8.0]]])
    assert residual_penalty(three_four).tolist() == [15.0]
    with pytest.raises(ValueError, match=r"residuals: expected 3 dimensions \(s b d\)"):
        residual_penalty(torch.zeros(3, 4))
    assert torch.equal(residual_penalty(torch.zeros(0, 3, 4)), torch.zeros(3))  # no sub-steps


def test_elbo_weights_and_batch_mean() -> None:
    nll, ky, kz, res = (_rand(4, seed=i).abs() for i in range(4))
    terms = elbo(nll, ky, kz, res, beta_y=0.5, beta_z=2.0, residual_weight=0.3)
    assert isinstance(terms, ElboTerms)
    by_hand = sum(nll[b] + 0.5 * ky[b] + 2.0 * kz[b] + 0.3 * res[b] for b in range(4)) / 4
    torch.testing.assert_close(terms.total, by_hand)
    for got, per_seq in zip(terms[:4], (nll, ky, kz, res)):
        torch.testing.assert_close(got, per_seq.sum() / 4)
    assert all(t.dim() == 0 for t in terms)


def test_elbo_defaults_and_missing_terms() -> None:
    nll, ky, kz, res = (_rand(3, seed=i).abs() for i in range(4))
    torch.testing.assert_close(elbo(nll, ky, kz, res).total, (nll + ky + kz + res).mean())
    only = elbo(nll)
    torch.testing.assert_close(only.total, nll.mean())
    assert only.kl_y.item() == only.kl_z.item() == only.residual.item() == 0.0


def test_elbo_zero_weight_drops_the_penalty() -> None:
    """λ = 0 leaves the penalty out of the total (an infinite penalty would otherwise poison it)."""
    nll, ky, kz = (_rand(3, seed=i).abs() for i in range(3))
    res = torch.full((3,), math.inf, dtype=torch.float64)
    terms = elbo(nll, ky, kz, res, residual_weight=0.0)
    torch.testing.assert_close(terms.total, (nll + ky + kz).mean())
    assert math.isinf(terms.residual.item())


def test_elbo_errors() -> None:
    nll = torch.zeros(3)
    with pytest.raises(ValueError, match=r"nll: expected 1 dimension \(b\)"):
        elbo(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="kl_y: expected size 3 for axis 'b'"):
        elbo(nll, kl_y=torch.zeros(4))
    with pytest.raises(ValueError, match="kl_z: expected 1 dimension "):
        elbo(nll, kl_z=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="residual: expected size 3"):
        elbo(nll, residual=torch.zeros(1))


def test_elbo_rejects_negative_or_non_finite_weights() -> None:
    nll, kl = torch.ones(3), torch.ones(3)
    for name in ("beta_y", "beta_z", "residual_weight"):
        for bad in (-0.5, -1, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"{name}: expected a finite weight >= 0, got {bad!r}"):
                elbo(nll, kl, kl, kl, **{name: bad})
        for bad_kind in (True, "1.0", torch.tensor(1.0)):
            with pytest.raises(TypeError, match=f"{name}: expected a real number >= 0"):
                elbo(nll, kl, kl, kl, **{name: bad_kind})
        # Zero and ints are weights.
        assert torch.isfinite(elbo(nll, kl, kl, kl, **{name: 0}).total)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gaussian_nll_of_half_precision_frames_is_reduced_in_float32(dtype: torch.dtype) -> None:
    """20 frames of 64×64 sum 81920 terms: in float16 the sum overflowed to inf (bfloat16 kept ~3 digits)."""
    target = _rand(20, 2, 1, 64, 64, seed=4).sigmoid().to(dtype)
    mean = torch.zeros_like(target)
    # The formula written out in float64 on the same (rounded) values.
    x = target.double()
    per_element = 0.5 * (x / 0.5) ** 2 + math.log(0.5) + 0.5 * math.log(2 * math.pi)
    expected = per_element.sum(dim=(0, 2, 3, 4))
    assert expected.min() > torch.finfo(torch.float16).max  # beyond what a float16 sum can hold
    for std in (0.5, torch.tensor(0.5), torch.full((1, 64, 64), 0.5)):
        nll = gaussian_nll(target, mean, std)
        assert nll.dtype == torch.float32 and nll.shape == (2,)
        torch.testing.assert_close(nll.double(), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["half", "half loc, float32 scale"])
def test_kl_of_half_precision_gaussians_is_computed_in_float32(dtype: torch.dtype, kind: str) -> None:
    """100 steps of 64 dimensions sum 6400 terms of ~18 nats: in float16 the sum overflowed to inf, and bfloat16
    kept ~3 digits (0.3 % off). The second kind is what a GaussianHead gives under autocast (a float32 scale)."""
    t, b, d = 100, 3, 64
    m1, m2 = (_rand(t, b, d, seed=5) + 6).to(dtype), _rand(t, b, d, seed=6).to(dtype)
    s1, s2 = (0.5 * _rand(t, b, d, seed=7)).exp().to(dtype), (0.5 * _rand(t, b, d, seed=8)).exp().to(dtype)
    if kind != "half":
        s1, s2 = s1.float(), s2.float()
    # The closed form in float64 on the same (rounded) parameters.
    expected = _closed_form_kl(m1.double(), s1.double(), m2.double(), s2.double()).sum(dim=(0, 2))
    assert expected.min() > torch.finfo(torch.float16).max  # beyond what a float16 sum can hold
    leaves = [x.clone().requires_grad_() for x in (m1, s1, m2, s2)]
    kl = kl_per_sequence(diag_gaussian(leaves[0], leaves[1]), diag_gaussian(leaves[2], leaves[3]))
    assert kl.dtype == torch.float32 and kl.shape == (b,)
    # float32 terms (a few roundings each, ~1e−7 relative) summed pairwise: 1e−5 is far above their error and
    # far below bfloat16's 3e−3.
    torch.testing.assert_close(kl.double(), expected, rtol=1e-5, atol=0)
    kl.sum().backward()
    assert all(x.grad is not None and x.grad.dtype == x.dtype and bool(x.grad.isfinite().all()) for x in leaves)
    # One step, batch (B,), and no step: float32 as well.
    one = kl_per_sequence(diag_gaussian(m1[0], s1[0]), diag_gaussian(m2[0], s2[0]))
    assert one.dtype == torch.float32
    expected_one = _closed_form_kl(*(x[0].double() for x in (m1, s1, m2, s2))).sum(-1)
    torch.testing.assert_close(one.double(), expected_one, rtol=1e-5, atol=0)
    none = kl_per_sequence(diag_gaussian(m1[:0], s1[:0]), diag_gaussian(m2[:0], s2[:0]))
    assert none.dtype == torch.float32 and torch.equal(none, torch.zeros(b))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_residual_penalty_of_half_precision_residuals_is_reduced_in_float32(dtype: torch.dtype) -> None:
    """400 sub-steps of norms ~200 sum beyond float16's largest number (inf), and bfloat16 kept ~3 digits."""
    res = (30 * _rand(400, 2, 50, seed=9)).to(dtype)
    expected = torch.linalg.vector_norm(res.double(), dim=-1).sum(0)  # float64 on the same (rounded) values
    assert expected.min() > torch.finfo(torch.float16).max
    penalty = residual_penalty(res)
    assert penalty.dtype == torch.float32 and penalty.shape == (2,)
    # float32 norms of 50 terms and a sum of 400 of them: errors ~1e−7 relative, far below 1e−5.
    torch.testing.assert_close(penalty.double(), expected, rtol=1e-5, atol=0)


def test_gaussian_nll_of_no_sequence_is_empty() -> None:
    """B = 0 (as rollouts and kl_per_sequence allow) gives (0,), not an IndexError."""
    x = torch.zeros(3, 0, 4)
    for std in (1.0, torch.tensor(2.0), torch.ones(4), torch.ones(3, 1, 4)):
        nll = gaussian_nll(x, x, std)
        assert nll.shape == (0,) and nll.dtype == torch.float32


def test_gaussian_nll_refuses_bool_and_complex_std_tensors() -> None:
    """std=True is refused; a bool tensor was read as σ = 1."""
    x = torch.zeros(2, 1, 3)
    with pytest.raises(
        TypeError, match=r"std: expected a real tensor \(floating point or integer\), got dtype torch\.bool"
    ):
        gaussian_nll(x, x, torch.tensor(True))
    with pytest.raises(TypeError, match=r"std: expected a real tensor .*got dtype torch\.complex64"):
        gaussian_nll(x, x, torch.ones(3, dtype=torch.complex64))


def test_residual_penalty_and_elbo_refuse_non_float_tensors() -> None:
    with pytest.raises(TypeError, match=r"residuals: expected a floating-point tensor, got dtype torch\.int64"):
        residual_penalty(torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"residuals: expected a torch\.Tensor, got list"):
        residual_penalty([[[1.0]]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nll: expected a floating-point tensor, got dtype torch\.int64"):
        elbo(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match=r"kl_z: expected a floating-point tensor, got dtype torch\.bool"):
        elbo(torch.ones(2), kl_z=torch.ones(2, dtype=torch.bool))


def test_elbo_of_no_sequence_is_refused() -> None:
    """The mean over an empty batch is NaN, which would silently poison a training step."""
    with pytest.raises(ValueError, match=r"nll: expected at least one sequence \(B >= 1\) to average over"):
        elbo(torch.zeros(0))


def _hand_nll(x: torch.Tensor, m: torch.Tensor, std: torch.Tensor, observed: torch.Tensor) -> list[float]:
    """Per-sequence NLL written out element by element: observed elements only, each ½((x−μ)/σ)² + log σ + ½ log 2π."""
    t_len, b_len, d_len = x.shape
    totals = []
    for b in range(b_len):
        total = 0.0
        for t in range(t_len):
            for d in range(d_len):
                if observed[t, b, d]:
                    s = float(std[t, b, d])
                    z = (float(x[t, b, d]) - float(m[t, b, d])) / s
                    total += 0.5 * z * z + math.log(s) + 0.5 * math.log(2 * math.pi)
        totals.append(total)
    return totals


@pytest.mark.parametrize("std_kind", ["float", "0-dim", "per-dim", "full"])
def test_gaussian_nll_mask_leaves_masked_elements_out(std_kind: str) -> None:
    """Padded observations had no mask: every element counted, log σ and constant included. Masked-out elements
    now contribute nothing, and a NaN in the padding reaches neither the value nor the gradient."""
    t_len, b_len, d_len = 5, 3, 2
    x, m = _rand(t_len, b_len, d_len, seed=0), _rand(t_len, b_len, d_len, seed=1)
    lengths = torch.tensor([5, 2, 4])  # sequence b is observed at its first lengths[b] steps
    steps = (torch.arange(t_len)[:, None] < lengths).expand(t_len, b_len)  # (T, B)
    std = {
        "float": 0.3,
        "0-dim": torch.tensor(0.3, dtype=torch.float64),
        "per-dim": torch.tensor([0.2, 0.7], dtype=torch.float64),
        "full": 0.1 + torch.rand(t_len, b_len, d_len, generator=torch.Generator().manual_seed(2), dtype=torch.float64),
    }[std_kind]
    std_full = torch.as_tensor(std, dtype=torch.float64).expand(t_len, b_len, d_len)
    expected = _hand_nll(x, m, std_full, steps[..., None].expand(t_len, b_len, d_len))
    padded = x.clone()
    padded[~steps] = float("nan")
    mean = m.clone().requires_grad_()
    for mask in (steps[..., None], steps[..., None].double(), steps[..., None].long()):
        out = gaussian_nll(padded, mean, std, mask=mask)
        assert out.shape == (b_len,)
        torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), mean)
    assert grad.isfinite().all() and torch.all(grad[~steps] == 0)
    # A mask of ones is no mask.
    everything = torch.ones(t_len, b_len, 1, dtype=torch.bool)
    torch.testing.assert_close(gaussian_nll(x, m, std, mask=everything), gaussian_nll(x, m, std), rtol=0, atol=0)


def test_gaussian_nll_mask_errors() -> None:
    x = torch.zeros(4, 3, 2)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "mask: expected a shape that broadcasts to the shape of target [4, 3, 2], got [4, 3]; add trailing axes "
            "of size 1: mask[..., None]"
        ),
    ):
        gaussian_nll(x, x, 1.0, mask=torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=re.escape("mask: expected a shape that broadcasts to the shape of target")):
        gaussian_nll(x, x, 1.0, mask=torch.ones(5, 3, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"mask: expected a bool or 0/1 tensor or None, got list"):
        gaussian_nll(x, x, 1.0, mask=[[True]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"mask: expected a bool or 0/1 real tensor, got dtype torch.complex64"):
        gaussian_nll(x, x, 1.0, mask=torch.ones(2, dtype=torch.complex64))


def test_residual_penalty_of_a_discrete_cell_says_why_there_are_no_residuals() -> None:
    """residual_penalty(r.residuals) of a GRU or MLP rollout said only "expected a torch.Tensor, got NoneType"."""
    with pytest.raises(TypeError, match=r"residuals: expected a tensor \(S, B, Dy\), got None: .* discrete-time") as e:
        residual_penalty(None)
    assert "pass residual=None to elbo" in str(e.value)


def test_kl_refuses_distributions_without_an_event_axis() -> None:
    """A plain Normal over (4, 3) was read as (T, B) = (4, 3) and summed over the wrong axis."""
    from torch.distributions import Independent, Normal

    plain = Normal(torch.zeros(4, 3), 1.0)
    with pytest.raises(ValueError, match=re.escape("q: expected a distribution over vectors, event shape (D,), got")):
        kl_per_sequence(plain, Normal(torch.zeros(4, 3), 1.0))
    with pytest.raises(ValueError, match=r"p: .* event \[\] \(Normal\).* Independent\(Normal\(loc, scale\), 1\)"):
        kl_per_sequence(diag_gaussian(torch.zeros(4, 3), torch.ones(4, 3)), plain)
    wrapped = Independent(plain, 1)
    assert kl_per_sequence(wrapped, Independent(Normal(torch.ones(4, 3), 1.0), 1)).shape == (4,)


def test_a_rollout_without_prior_or_posterior_says_so_in_the_kl() -> None:
    """``Rollout.prior`` and ``.posterior`` are optional, and the KL helpers take them as they come (so that
    documented code type-checks): a None says where it comes from, not just its type."""
    ssm = LatentSSM(ResidualCell(MLPField(3, 2, 8, 2), 3, 2))  # no prior
    z = diag_gaussian(torch.zeros(4, 2, 2), torch.ones(4, 2, 2))
    roll = ssm.rollout(torch.zeros(2, 3), 5, posterior=z)
    with pytest.raises(TypeError, match=r"^p: expected a torch Distribution, got None \(a Rollout's prior is None"):
        kl_per_sequence(roll.posterior, roll.prior)
    with pytest.raises(TypeError, match=r"^dist: expected Independent\(Normal\) .*got None \(a Rollout's prior"):
        index_steps(roll.prior, slice(0, 4))


def test_kl_of_other_half_precision_distributions_is_summed_over_time_in_float32() -> None:
    """Not only Gaussians: 40 steps of a float16 Laplace KL of 2392 each sum to 95680, beyond float16's 65504 (a
    hand-run mutation test found the float32 sum of the other distributions unpinned)."""
    from torch.distributions import Independent, Laplace, kl_divergence

    t, b, d = 40, 2, 8
    scale = torch.full((t, b, d), 0.01, dtype=torch.float16)
    q = Independent(Laplace(torch.zeros(t, b, d, dtype=torch.float16), scale), 1)
    p = Independent(Laplace(torch.full((t, b, d), 3.0, dtype=torch.float16), scale), 1)
    kl = kl_per_sequence(q, p)
    assert kl.dtype == torch.float32 and torch.isfinite(kl).all()
    torch.testing.assert_close(kl, kl_divergence(q, p).float().sum(0))
