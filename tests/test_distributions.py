"""Gaussian heads and priors: the SRVP parameterisation checked by hand, buffers, shapes, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from contracts import seeded
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence
from torch.func import functional_call

from latentdyn.distributions import (
    STD_EPS,
    ConditionalGaussianPrior,
    GaussianHead,
    StandardNormal,
    diag_gaussian,
    diag_gaussian_from_raw,
    index_steps,
)
from latentdyn.nn import MLP


@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    d=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_from_raw_mean_is_first_half_std_is_softplus_of_second_plus_eps(lead: list[int], d: int, seed: int) -> None:
    raw = 3 * torch.randn(*lead, 2 * d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    dist = diag_gaussian_from_raw(raw)
    assert isinstance(dist, Independent) and isinstance(dist.base_dist, Normal)
    assert tuple(dist.batch_shape) == tuple(lead) and tuple(dist.event_shape) == (d,)
    assert torch.equal(dist.mean, raw[..., :d])
    torch.testing.assert_close(dist.stddev, F.softplus(raw[..., d:]) + 1e-8, rtol=1e-15, atol=0)
    by_hand = torch.log1p(torch.exp(raw[..., d:])) + 1e-8  # softplus(x) = log(1 + eˣ); |x| stays small here
    torch.testing.assert_close(dist.stddev, by_hand, rtol=1e-12, atol=1e-15)


def test_std_floor_and_large_raw_values() -> None:
    raw = torch.tensor([0.0, 0.0, -60.0, 40.0], dtype=torch.float64)
    std = diag_gaussian_from_raw(raw).stddev
    assert STD_EPS == 1e-8
    assert std[0].item() == pytest.approx(1e-8, rel=1e-9)  # softplus(−60) ≈ 9e−27: the floor remains
    assert std[1].item() == pytest.approx(40.0 + 1e-8, rel=1e-14)  # softplus(x) ≈ x for large x, no overflow
    assert diag_gaussian_from_raw(raw, eps=0.5).stddev[0].item() == pytest.approx(0.5)
    assert torch.isfinite(diag_gaussian_from_raw(torch.tensor([0.0, 1e4])).stddev).all()


def test_from_raw_float32_keeps_dtype() -> None:
    dist = diag_gaussian_from_raw(torch.zeros(3, 4))
    assert dist.mean.dtype == torch.float32 and dist.stddev.dtype == torch.float32
    torch.testing.assert_close(dist.stddev, torch.full((3, 2), math.log(2.0) + 1e-8))


# Raw scales from below the floor (softplus(−20) ≈ 2e−9 < 1e−8, itself below float16's smallest number 6e−8) to
# ordinary values.
_RAW_SCALES = [-20.0, -17.0, -12.0, -10.0, -3.0, 0.0, 0.5, 3.0]


def _std_and_kl_reference(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """softplus(x) + 1e−8 and KL(N(m, s²) ‖ N(0, 1)) summed over the last axis, written out in float64 on the
    (rounded) half-precision raw values."""
    loc, raw_scale = raw.double().chunk(2, dim=-1)
    std = torch.log1p(torch.exp(raw_scale)) + 1e-8
    kl = 0.5 * (loc**2 + std**2 - 1 - 2 * std.log()).sum(-1)
    return std, kl


def _check_half_gaussian(dist: Independent, raw: torch.Tensor) -> None:
    """The mean is raw's first half, unchanged; the std is float32, positive, finite and the float64 formula."""
    d = raw.shape[-1] // 2
    assert dist.mean.dtype == raw.dtype and torch.equal(dist.mean, raw[..., :d])
    std = dist.stddev
    assert std.dtype == torch.float32
    assert bool((std > 0).all()) and bool(torch.isfinite(std).all())
    std_ref, kl_ref = _std_and_kl_reference(raw)
    # float32 softplus is accurate to a few ulps (1.2e−7 each) and the floor adds one rounding: 1e−6 is ~8 ulps,
    # while a bfloat16 std was off by up to 2⁻⁹ ≈ 2e−3, and a float16 one was 0 at the floor.
    torch.testing.assert_close(std.double(), std_ref, rtol=1e-6, atol=0)
    standard = diag_gaussian(torch.zeros_like(std), torch.ones_like(std))
    kl = kl_divergence(dist, standard)
    assert bool(torch.isfinite(kl).all())
    # A handful of float32 terms, the largest −log(1.2e−8) ≈ 18: a relative 1e−5 leaves room for their roundings.
    torch.testing.assert_close(kl.double(), kl_ref, rtol=1e-5, atol=0)


def test_from_raw_float16_keeps_the_std_floor_in_float32() -> None:
    """A float16 raw computed softplus(raw) + 1e−8 in float16: the floor vanished, softplus(−20) + 1e−8 was a std
    of exactly 0 and the KL infinite. The scale is now float32, the mean keeps the dtype of raw."""
    d = len(_RAW_SCALES)
    loc = torch.randn(3, d, generator=torch.Generator().manual_seed(0))
    raw = torch.cat([loc, torch.tensor(_RAW_SCALES).expand(3, d)], dim=-1).half()
    _check_half_gaussian(diag_gaussian_from_raw(raw), raw)


def test_from_raw_bfloat16_keeps_its_dtype_and_the_floor() -> None:
    """bfloat16 has float32's range, so the floor holds in it, and a model run in bfloat16 keeps bfloat16 draws."""
    raw = torch.cat([torch.zeros(len(_RAW_SCALES)), torch.tensor(_RAW_SCALES)]).bfloat16()
    std = diag_gaussian_from_raw(raw).stddev
    std_ref, _ = _std_and_kl_reference(raw)
    assert std.dtype == torch.bfloat16 and bool((std > 0).all())
    torch.testing.assert_close(std.double(), std_ref, rtol=2**-8, atol=0)  # one bfloat16 rounding


@pytest.mark.parametrize("dtype", [torch.float16])
def test_gaussian_head_under_cpu_autocast_keeps_the_std_floor(dtype: torch.dtype) -> None:
    """Under CPU autocast the head's network outputs half precision, and softplus (an autocast-to-float32 op on
    CUDA, not on the CPU) ran in it: with float16 a std of 0 and an infinite KL, whose gradient was NaN."""
    d = len(_RAW_SCALES)
    net = nn.Linear(4, 2 * d)
    with torch.no_grad():  # raw = the bias, whatever h: the reference is the bias rounded to the autocast dtype
        net.weight.zero_()
        net.bias.copy_(torch.cat([torch.linspace(-2, 2, d), torch.tensor(_RAW_SCALES)]))
    head = GaussianHead(net)
    h = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=dtype):
        raw = net(h)
        if raw.dtype != dtype:
            pytest.skip(f"CPU autocast to {dtype} is not supported by this torch")
        dist = head(h)
    assert torch.equal(raw, net.bias.detach().to(dtype).expand(3, 2 * d))
    _check_half_gaussian(dist, raw)
    standard = diag_gaussian(torch.zeros(3, d), torch.ones(3, d))
    kl_divergence(dist, standard).sum().backward()
    assert net.bias.grad is not None and bool(torch.isfinite(net.bias.grad).all())


def test_from_raw_errors() -> None:
    with pytest.raises(ValueError, match=r"raw: expected a last axis of even size 2·D .*got shape \[2, 5\]"):
        diag_gaussian_from_raw(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="raw: expected a last axis of even size"):
        diag_gaussian_from_raw(torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"raw: expected a torch\.Tensor"):
        diag_gaussian_from_raw([0.0, 1.0])  # type: ignore[arg-type]


def test_std_floor_and_net_are_checked() -> None:
    """The scale is not validated (positive by construction), so a negative floor must be refused up front."""
    raw = torch.tensor([0.0, -10.0])
    with pytest.raises(ValueError, match=r"eps: expected a finite number >= 0 \(the std floor\), got -1\.0"):
        diag_gaussian_from_raw(raw, eps=-1.0)
    with pytest.raises(ValueError, match="eps: expected a finite number >= 0"):
        GaussianHead(nn.Linear(2, 2), eps=-1e-3)
    with pytest.raises(ValueError, match="eps: expected a finite number >= 0"):
        ConditionalGaussianPrior(nn.Linear(2, 2), eps=float("nan"))
    with pytest.raises(TypeError, match=r"eps: expected a real number >= 0 \(the std floor\), got str '1e-8'"):
        GaussianHead(nn.Linear(2, 2), eps="1e-8")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"net: expected an nn\.Module mapping \(\.\.\., Din\) .* got function"):
        GaussianHead(lambda h: h)  # type: ignore[arg-type]
    assert diag_gaussian_from_raw(raw, eps=0).stddev[0].item() == pytest.approx(math.log1p(math.exp(-10.0)))


def test_validate_args_stay_on() -> None:
    with pytest.raises(ValueError, match="scale"):
        diag_gaussian(torch.zeros(2), -torch.ones(2))


def test_gaussian_head_and_conditional_prior() -> None:
    with seeded(0):
        net = MLP(3, 8, 4, 2).double()
    head = GaussianHead(net)
    prior = ConditionalGaussianPrior(net)
    h = torch.randn(5, 6, 3, dtype=torch.float64)
    for module in (head, prior):
        dist = module(h)
        assert tuple(dist.batch_shape) == (5, 6) and tuple(dist.event_shape) == (2,)
        raw = net(h)
        assert torch.equal(dist.mean, raw[..., :2])
        torch.testing.assert_close(dist.stddev, F.softplus(raw[..., 2:]) + 1e-8, rtol=1e-15, atol=0)
    assert tuple(prior(h[0]).batch_shape) == (6,)


def test_gaussian_head_gradcheck() -> None:
    """float64 gradcheck of (mean, std) of a GaussianHead w.r.t. its input and parameters."""
    with seeded(0):
        head = GaussianHead(MLP(2, 3, 4, 2)).double()
    names = [k for k, _ in head.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in head.parameters())
    h = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)

    def fn(h: torch.Tensor, *ps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = functional_call(head, dict(zip(names, ps)), (h,))
        return dist.mean, dist.stddev

    assert torch.autograd.gradcheck(fn, (h, *params))


def test_standard_normal_follows_double_and_to() -> None:
    prior = StandardNormal(3)
    assert prior.state_dict() == {}  # buffers are not persistent
    dist = prior(4, 2)
    assert tuple(dist.batch_shape) == (4, 2) and tuple(dist.event_shape) == (3,)
    assert torch.equal(dist.mean, torch.zeros(4, 2, 3)) and torch.equal(dist.stddev, torch.ones(4, 2, 3))
    assert dist.mean.dtype == torch.float32
    prior.double()
    assert prior.loc.dtype == torch.float64 and prior.scale.dtype == torch.float64
    assert prior(2).sample().dtype == torch.float64
    prior.to(torch.float32)
    assert prior(2).mean.dtype == torch.float32
    prior.to(torch.device("cpu"), torch.float64)
    assert prior(2).stddev.dtype == torch.float64 and prior(2).mean.device.type == "cpu"
    # log N(x | 0, I) written out: −½|x|² − (D/2) log 2π.
    x = torch.randn(5, 3, dtype=torch.float64)
    expected = -0.5 * x.square().sum(-1) - 1.5 * math.log(2 * math.pi)
    torch.testing.assert_close(prior(5).log_prob(x), expected)
    assert tuple(prior().batch_shape) == ()
    with pytest.raises(ValueError, match="dim: expected an int >= 1, got 0"):
        StandardNormal(0)


def test_standard_normal_of_states_takes_their_batch_shape() -> None:
    prior = StandardNormal(3)
    dist = prior(torch.randn(4, 2, 7))  # states (T, B, Dy): batch (T, B)
    assert tuple(dist.batch_shape) == (4, 2) and tuple(dist.event_shape) == (3,)
    assert torch.equal(dist.mean, torch.zeros(4, 2, 3)) and torch.equal(dist.stddev, torch.ones(4, 2, 3))
    assert tuple(prior(torch.randn(5)).batch_shape) == ()  # one state (Dy,)
    with pytest.raises(ValueError, match=r"^y: expected states \(\.\.\., Dy\) with at least one axis, got a 0-dim"):
        prior(torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"^batch_shape\[1\]: expected an int, got a tensor of shape \[2, 3\]"):
        prior(4, torch.zeros(2, 3))  # type: ignore[arg-type]


def test_standard_normal_built_on_the_meta_device() -> None:
    """Deferred initialisation: built on the meta device, materialised with to_empty and loaded, the prior is
    N(0, I) exactly (its mean and scale were non-persistent buffers of uninitialised memory: a NaN KL)."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = GaussianHead(nn.Linear(2, 6))
            self.prior = StandardNormal(3)

    with seeded(0):
        reference = Model().double()
    with torch.device("meta"):
        model = Model()
    model = model.to_empty(device="cpu").double()
    model.load_state_dict(reference.state_dict(), strict=True)
    assert sorted(model.state_dict()) == ["head.net.bias", "head.net.weight"]  # the prior adds no key
    prior = model.prior(4, 2)
    assert prior.mean.dtype == torch.float64
    assert torch.equal(prior.mean, torch.zeros(4, 2, 3, dtype=torch.float64))
    assert torch.equal(prior.stddev, torch.ones(4, 2, 3, dtype=torch.float64))
    q = model.head(torch.randn(4, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    kl = torch.distributions.kl_divergence(q, prior)
    assert torch.isfinite(kl).all()
    assert torch.equal(kl, torch.distributions.kl_divergence(q, reference.prior(4, 2)))


def test_index_steps() -> None:
    loc = torch.randn(5, 2, 3)
    scale = torch.rand(5, 2, 3) + 0.1
    dist = diag_gaussian(loc, scale)
    one = index_steps(dist, 2)
    assert tuple(one.batch_shape) == (2,)
    assert torch.equal(one.mean, loc[2]) and torch.equal(one.stddev, scale[2])
    part = index_steps(dist, slice(1, 4))
    assert tuple(part.batch_shape) == (3, 2)
    assert torch.equal(part.mean, loc[1:4]) and torch.equal(part.stddev, scale[1:4])
    full = MultivariateNormal(torch.zeros(5, 2, 3), torch.eye(3))
    with pytest.raises(TypeError, match=r"dist: expected Independent\(Normal\)"):
        index_steps(full, 0)


def test_index_steps_refuses_bool_and_non_integer_indices() -> None:
    """A bool is an int to Python but a new axis to tensor indexing: index_steps(d, True) gave batch (1, T, B)."""
    import numpy as np

    dist = diag_gaussian(torch.randn(5, 2, 3), torch.rand(5, 2, 3) + 0.1)
    for bad in (True, np.bool_(False), 1.0, None, [0, 1], torch.tensor(0)):
        with pytest.raises(TypeError, match=r"index: expected an int or a slice of steps, got "):
            index_steps(dist, bad)  # type: ignore[arg-type]
    picked = index_steps(dist, np.int64(3))
    assert tuple(picked.batch_shape) == (2,) and torch.equal(picked.mean, dist.mean[3])


def test_index_steps_needs_a_time_axis() -> None:
    """Without a batch axis, a slice selected along the event axis and an int failed inside torch."""
    no_time = diag_gaussian(torch.zeros(4), torch.ones(4))
    for index in (0, slice(0, 2)):
        with pytest.raises(ValueError, match=r"dist: expected a batch shape \(T, \.\.\.\) .*got batch shape \(\)"):
            index_steps(no_time, index)


def test_index_steps_refuses_an_independent_over_more_than_one_axis() -> None:
    """Independent(Normal, 2) with batch (5,), event (4, 3) came back as batch (4,), event (3,): a reshaped
    event, not step 1."""
    loc, scale = torch.zeros(5, 4, 3), torch.ones(5, 4, 3)
    for ndims in (2, 0):
        with pytest.raises(
            TypeError,
            match=rf"dist: expected Independent\(Normal\(loc, scale\), 1\) .*reinterpreted_batch_ndims={ndims}",
        ):
            index_steps(Independent(Normal(loc, scale), ndims), 1)


def test_index_steps_refuses_out_of_range_steps_naming_index() -> None:
    """An int out of range was torch's IndexError, a zero or negative step torch's ValueError naming nothing."""
    dist = diag_gaussian(torch.zeros(5, 4, 3), torch.ones(5, 4, 3))
    for index in (5, -6, 100):
        with pytest.raises(ValueError, match=rf"^index: expected a step in \[-5, 4\] \(T = 5\), got {index}$"):
            index_steps(dist, index)
    for index in (slice(0, 3, 0), slice(None, None, -1)):
        with pytest.raises(ValueError, match=r"^index: expected a slice with a positive step \(or none\), got slice"):
            index_steps(dist, index)
    empty = diag_gaussian(torch.zeros(0, 4, 3), torch.ones(0, 4, 3))
    with pytest.raises(ValueError, match=r"^index: expected a step of dist, but dist has no steps \(T = 0\), got 0$"):
        index_steps(empty, 0)
    # The ends and Python's clipping of slices stay as they were.
    assert torch.equal(index_steps(dist, -5).mean, dist.mean[0]) and torch.equal(
        index_steps(dist, 4).mean, dist.mean[4]
    )
    assert tuple(index_steps(dist, slice(3, 99, 2)).batch_shape) == (1, 4)
    assert tuple(index_steps(empty, slice(0, 2)).batch_shape) == (0, 4)


def test_diag_gaussian_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"loc: expected a tensor \(\.\.\., D\) with an event axis, got a 0-dim"):
        diag_gaussian(torch.tensor(0.0), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"scale: expected a tensor \(\.\.\., D\) with an event axis"):
        diag_gaussian(torch.zeros(3), torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"loc: expected a torch\.Tensor, got list"):
        diag_gaussian([0.0, 0.0], torch.ones(2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"scale: expected a floating-point tensor, got dtype torch\.int64"):
        diag_gaussian(torch.zeros(2), torch.ones(2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"loc: expected a floating-point tensor, got dtype torch\.bool"):
        diag_gaussian(torch.zeros(2, dtype=torch.bool), torch.ones(2))
    with pytest.raises(ValueError, match=r"scale: expected a shape that broadcasts with the shape of loc \[2, 3\]"):
        diag_gaussian(torch.zeros(2, 3), torch.ones(2, 4))
    with pytest.raises(TypeError, match=r"validate_args: expected a bool, got str 'no'"):
        diag_gaussian(torch.zeros(2), torch.ones(2), validate_args="no")  # type: ignore[arg-type]
    broadcast = diag_gaussian(torch.zeros(4, 3), torch.ones(3))  # a shared scale broadcasts, as Normal allows
    assert tuple(broadcast.batch_shape) == (4,) and torch.equal(broadcast.stddev, torch.ones(4, 3))


def test_from_raw_refuses_integer_tensors() -> None:
    with pytest.raises(TypeError, match=r"raw: expected a floating-point tensor, got dtype torch\.int64"):
        diag_gaussian_from_raw(torch.zeros(2, 4, dtype=torch.long))


def test_standard_normal_takes_a_batch_of_size_zero() -> None:
    """Only negative batch sizes are refused: an empty batch is a batch (the last one of a split, say)."""
    prior = StandardNormal(3)
    d = prior(0, 4)
    assert tuple(d.batch_shape) == (0, 4) and tuple(d.event_shape) == (3,)
    assert tuple(prior(torch.zeros(0, 5)).batch_shape) == (0,)
    assert tuple(prior((2, 0)).batch_shape) == (2, 0)
    with pytest.raises(ValueError, match=r"batch_shape\[0\]"):
        prior(-1, 4)
