"""LatentSSM rollouts: one state per frame, z scheduled per frame, prior on integer-time states, Rollout.at."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from contracts import seeded
from hypothesis import example, given
from hypothesis import strategies as st
from problems import TimeModulatedField
from torch import nn
from torch.distributions import Distribution, Independent, Laplace, MultivariateNormal, Normal

from latentdyn.cells import GRUCell, MLPCell, ResidualCell
from latentdyn.distributions import ConditionalGaussianPrior, StandardNormal, diag_gaussian, index_steps
from latentdyn.fields import MLPField, VectorField
from latentdyn.nn import MLP
from latentdyn.objectives import elbo, kl_per_sequence, residual_penalty
from latentdyn.ssm import LatentSSM, Role, Rollout, default_sampler, noise_sampler

DY, DZ, B, T = 3, 2, 4, 30


def make_ssm(n: int = 1, seed: int = 0, dtype: torch.dtype = torch.float64) -> LatentSSM:
    """Residual cell on a time-dependent field (so the frame index matters) and an MLP prior."""
    with seeded(seed):
        field = TimeModulatedField(MLPField(DY, DZ, 16, 2))
        prior = ConditionalGaussianPrior(MLP(DY, 16, 2 * DZ, 2))
    return LatentSSM(ResidualCell(field, DY, DZ, n), prior).to(dtype)


def make_posterior(length: int, seed: int = 1, dtype: torch.dtype = torch.float64) -> Independent:
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(length, B, DZ, generator=g, dtype=torch.float64)
    scale = 0.5 + torch.rand(length, B, DZ, generator=g, dtype=torch.float64)
    return diag_gaussian(loc.to(dtype), scale.to(dtype))


def make_y0(seed: int = 2, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(B, DY, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


class RecordingSampler:
    """Draws mean + std·ε with its own generator and records every call (role, distribution, value)."""

    def __init__(self, seed: int = 3) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.calls: list[tuple[str, Distribution, torch.Tensor]] = []

    def __call__(self, dist: Distribution, role: str) -> torch.Tensor:
        eps = torch.randn(dist.mean.shape, generator=self.generator, dtype=torch.float64).to(dist.mean)
        value = dist.mean + dist.stddev * eps
        self.calls.append((role, dist, value))
        return value

    @property
    def roles(self) -> list[str]:
        return [role for role, _, _ in self.calls]


def replay(ssm: LatentSSM, y0: torch.Tensor, z: torch.Tensor, n: int, t0: int) -> list[torch.Tensor]:
    """Re-run the cell frame by frame with z[t−1] for every sub-step of t−1 → t; the sub-step blocks."""
    blocks, y = [], y0
    for t in range(1, z.shape[0] + 1):
        path = ssm.cell.path(y, z[t - 1], n_substeps=n, frame=t0 + t - 1)
        blocks.append(path.states)
        y = path.states[-1]
    return blocks


@pytest.mark.parametrize("t0", [0, 4])
@pytest.mark.parametrize("n", [1, 3, 5, 6, 7])
def test_one_state_per_frame_and_z_held_per_frame(n: int, t0: int) -> None:
    """30 frames with n sub-steps: (T−1)·n + 1 sub-states, one state per frame, z_t over all of t−1 → t."""
    ssm = make_ssm()
    y0, n_post = make_y0(), 12
    sampler = RecordingSampler()
    r = ssm.rollout(y0, T, posterior=make_posterior(n_post), sampler=sampler, n_substeps=n, t0=t0)
    assert r.n_substeps == n and r.n_frames == T and r.t0 == t0
    assert r.substates.shape == ((T - 1) * n + 1, B, DY)
    assert r.states.shape == (T, B, DY)
    assert r.z.shape == (T - 1, B, DZ)
    assert r.residuals is not None and r.residuals.shape == ((T - 1) * n, B, DY)
    assert torch.equal(r.substates[0], y0)

    blocks = replay(ssm, y0, r.z, n, t0)
    for t, block in enumerate(blocks, start=1):
        assert torch.equal(r.substates[(t - 1) * n + 1 : t * n + 1], block), f"frame {t - 1} -> {t}"
        assert torch.equal(r.states[t], block[-1])
    torch.testing.assert_close(r.states, r.substates[::n], rtol=0, atol=0)

    # z: the posterior draw for t <= 12, then one prior draw per frame, on the state y_{t-1}.
    assert sampler.roles == ["z_posterior"] + ["z_prior"] * (T - 1 - n_post)
    assert torch.equal(r.z[:n_post], sampler.calls[0][2])
    for t in range(n_post + 1, T):
        _, dist, value = sampler.calls[t - n_post]
        assert torch.equal(r.z[t - 1], value)
        expected = ssm.prior(r.states[t - 1])  # type: ignore[misc]
        torch.testing.assert_close(dist.mean, expected.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(dist.stddev, expected.stddev, rtol=1e-12, atol=1e-12)

    # The reported prior is p(z_t | y_{t-1}) at integer-time states only, for every transition.
    assert r.prior is not None and tuple(r.prior.batch_shape) == (T - 1, B)
    expected = ssm.prior(r.states[:-1])  # type: ignore[misc]
    torch.testing.assert_close(r.prior.mean, expected.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r.prior.stddev, expected.stddev, rtol=1e-12, atol=1e-12)
    assert r.posterior is not None and tuple(r.posterior.batch_shape) == (n_post, B)


@given(n_observed=st.integers(1, T), length=st.integers(T - 1, T + 3))
@example(n_observed=T, length=T - 1)  # every transition observed (found with HYPOTHESIS_PROFILE=explore)
def test_posterior_while_observed_then_prior(n_observed: int, length: int) -> None:
    ssm = make_ssm(n=2)
    post = make_posterior(length)
    sampler = RecordingSampler()
    r = ssm.rollout(make_y0(), T, posterior=post, n_observed=n_observed, sampler=sampler)
    n_post = n_observed - 1
    assert sampler.roles == ["z_posterior"] * (n_post > 0) + ["z_prior"] * (T - 1 - n_post)
    assert r.posterior is not None  # batch (0, B) when no step is used
    assert torch.equal(r.posterior.mean, post.mean[:n_post])
    assert torch.equal(r.posterior.stddev, post.stddev[:n_post])
    if n_post > 0:
        assert torch.equal(r.z[:n_post], sampler.calls[0][2])
    prior_draws = [v for _, _, v in sampler.calls[n_post > 0 :]]
    assert len(prior_draws) == T - 1 - n_post  # (none when every transition is observed)
    if prior_draws:
        assert torch.equal(r.z[n_post:], torch.stack(prior_draws))


def test_default_observed_frames_cover_the_posterior() -> None:
    """Without n_observed, every posterior step is used (capped at the number of transitions)."""
    ssm = make_ssm()
    sampler = RecordingSampler()
    r = ssm.rollout(make_y0(), 10, posterior=make_posterior(4), sampler=sampler)
    assert sampler.roles == ["z_posterior"] + ["z_prior"] * 5
    assert r.posterior is not None and r.posterior.batch_shape == (4, B)
    long = ssm.rollout(make_y0(), 10, posterior=make_posterior(20), sampler=RecordingSampler())
    assert long.posterior is not None and long.posterior.batch_shape == (9, B)


def test_sample_false_gives_means() -> None:
    ssm = make_ssm(n=3)
    post = make_posterior(6)
    r = ssm.rollout(make_y0(), 12, posterior=post, sample=False)
    assert torch.equal(r.z[:6], post.mean)
    for t in range(7, 12):
        expected = ssm.prior(r.states[t - 1]).mean  # type: ignore[misc]
        torch.testing.assert_close(r.z[t - 1], expected, rtol=1e-12, atol=1e-12)
    again = ssm.rollout(make_y0(), 12, posterior=post, sample=False)
    assert torch.equal(again.substates, r.substates)


def test_sample_true_reparameterises() -> None:
    """Default sampling draws (z differs from the means) with rsample: states carry gradients to q and p."""
    ssm = make_ssm(n=2)
    loc = torch.zeros(5, B, DZ, dtype=torch.float64, requires_grad=True)
    post = diag_gaussian(loc, torch.ones(5, B, DZ, dtype=torch.float64))
    with seeded(0):
        r = ssm.rollout(make_y0(), 9, posterior=post)
    assert not torch.equal(r.z[:5], loc.detach())
    # Through the states alone (no KL): the posterior part reaches loc, the prior part the prior's parameters.
    prior_params = list(ssm.prior.parameters())  # type: ignore[union-attr]
    grads = torch.autograd.grad(r.states[-1].square().sum(), [loc, *prior_params], retain_graph=True)
    for grad in grads:
        assert grad.abs().sum() > 0
    assert r.prior is not None and r.posterior is not None
    prior_part = diag_gaussian(r.prior.mean[:5], r.prior.stddev[:5])
    kl_per_sequence(r.posterior, prior_part).sum().backward()
    for name, p in ssm.prior.named_parameters():  # type: ignore[union-attr]
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_at_is_exact_on_substeps_and_linear_between() -> None:
    ssm = make_ssm(n=7)
    r = ssm.rollout(make_y0(), T, posterior=make_posterior(5), sampler=RecordingSampler(), t0=3)
    times = r.times()
    assert times.dtype == torch.float64 and times.shape == (r.substates.shape[0],)
    assert times[0] == 3 and times[-1] == 3 + T - 1
    assert torch.equal(r.at(times), r.substates)
    assert torch.equal(r.at(list(range(3, 3 + T))), r.states)
    g = torch.Generator().manual_seed(0)
    i = torch.arange(r.substates.shape[0] - 1)
    frac = 0.05 + 0.9 * torch.rand(i.shape, generator=g, dtype=torch.float64)
    query = 3 + (i + frac) / 7
    expected = (1 - frac)[:, None, None] * r.substates[:-1] + frac[:, None, None] * r.substates[1:]
    torch.testing.assert_close(r.at(query), expected, rtol=1e-12, atol=1e-12)


def test_at_float32_and_single_time() -> None:
    ssm = make_ssm(n=3, dtype=torch.float32)
    r = ssm.rollout(make_y0(dtype=torch.float32), 6, sampler=RecordingSampler())
    out = r.at([2.5])
    assert out.shape == (1, B, DY) and out.dtype == torch.float32
    torch.testing.assert_close(out[0], 0.5 * (r.substates[7] + r.substates[8]))
    assert torch.equal(r.at(torch.tensor([5.0])), r.states[-1:])


def test_at_bfloat16_interpolates_with_an_exact_weight() -> None:
    """Bfloat16 states are interpolated in float32, then rounded to bfloat16: the results are the bfloat16
    numbers nearest to the exact interpolation (a bfloat16 weight 1/3 would be off by 2⁻⁹ first)."""
    g = torch.Generator().manual_seed(0)
    states = torch.randn(2, 1000, 8, generator=g).to(torch.bfloat16)
    r = Rollout(substates=states, n_substeps=1, z=torch.zeros(1, 1000, 0), prior=None, posterior=None, residuals=None)
    out = r.at([1 / 3])
    assert out.dtype == torch.bfloat16
    s = states.double()
    expected = (s[0] + (s[1] - s[0]) / 3).to(torch.bfloat16)
    # Rounded twice (float32, then bfloat16), a handful of ties may land one step off (6 of 8,000 here); with
    # a bfloat16 weight about a third of them did (2,724).
    assert (out[0] != expected).sum() < 80


def test_at_errors() -> None:
    r = make_ssm(n=2).rollout(make_y0(), 5, sampler=RecordingSampler(), t0=1)
    with pytest.raises(ValueError, match=r"times: expected finite times within the rollout \[1\.0, 5\.0\]"):
        r.at([0.5, 2.0])
    with pytest.raises(ValueError, match="times: expected finite times within the rollout"):
        r.at([5.25])
    with pytest.raises(ValueError, match="times: expected non-decreasing times"):
        r.at([2.0, 1.5])
    with pytest.raises(ValueError, match="times: expected at least one query time"):
        r.at([])
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError, match=r"times: expected finite times within the rollout \[1\.0, 5\.0\]"):
            r.at([2.0, bad])
        with pytest.raises(ValueError, match="times: expected finite times within the rollout"):
            r.at(torch.tensor([bad]))
    with pytest.raises(ValueError, match=re.escape("per sequence, got shape [2, 2]")):
        r.at([[1.5, 2.0], [2.5, 3.0]])  # B = 4 sequences
    with pytest.raises(ValueError, match=re.escape(f"or (Q, B) = (Q, {B}) per sequence, got shape [1, 1, {B}]")):
        r.at(torch.full((1, 1, B), 2.0))
    per_sequence = torch.tensor([[1.5] * B, [2.0] * (B - 1) + [1.0]])
    with pytest.raises(ValueError, match=re.escape("times: expected non-decreasing times along each column")):
        r.at(per_sequence)
    with pytest.raises(ValueError, match="times: expected finite times within the rollout"):
        r.at(torch.tensor([[1.5] * (B - 1) + [5.5]]))
    with pytest.raises(ValueError, match="times: expected finite times within the rollout"):
        r.at([5.0 + 1e-6])  # beyond the rounding tolerance


def test_at_takes_repeated_times() -> None:
    """A shorter irregular series padded by repeating its last time was refused (strictly increasing times were
    required): a repeated time reads the same state as its first occurrence."""
    r = make_ssm(n=3).rollout(make_y0(), 6, sampler=RecordingSampler(), t0=1)
    shared = r.at([1.5, 2.25, 2.25, 2.25])
    assert torch.equal(shared[2], shared[1]) and torch.equal(shared[3], shared[1])
    own = torch.tensor([[1.5, 1.0, 2.0, 1.25], [2.25, 3.5, 2.0, 4.0], [2.25, 5.0, 2.0, 4.0]], dtype=torch.float64)
    padded = r.at(own)
    for b in range(B):
        for q in range(3):
            torch.testing.assert_close(padded[q, b], r.at([float(own[q, b])])[0, b], rtol=0, atol=0)


def test_at_errors_are_short_and_name_the_first_bad_entry() -> None:
    """The messages printed every time (148,091 characters for 15 × 512 times), float32 ones as float64 noise
    (0.20000000298023224): now the count, the first bad entry's position and its value as given."""
    r = make_ssm().rollout(make_y0(), 11, sampler=RecordingSampler())
    many = torch.linspace(0, 10, 15, dtype=torch.float32)[:, None].repeat(1, B)
    many[-1, 2], many[9, 3] = 10.5, float("nan")  # two entries outside, the first in row-major order at [9, 3]
    with pytest.raises(ValueError) as outside:
        r.at(many)
    message = str(outside.value)
    assert message.startswith("times: expected finite times within the rollout [0.0, 10.0]")
    assert f"got 2 of {15 * B} times outside it or not finite, the first at [q, b] = [9, 3]: nan" in message
    assert len(message) < 200
    wide = torch.rand(15, 512, generator=torch.Generator().manual_seed(0)).sort(0).values * 10
    wide[-1, 7] = 10.5
    wide_model = LatentSSM(ResidualCell(MLPField(DY, 0, 8, 2), DY, 0))
    with pytest.raises(ValueError, match=re.escape("the first at [q, b] = [14, 7]: 10.5")) as long_one:
        wide_model.rollout(torch.zeros(512, DY), 11).at(wide)
    assert len(str(long_one.value)) < 200
    late = make_ssm().rollout(make_y0(), 5, sampler=RecordingSampler(), t0=1)
    with pytest.raises(ValueError, match=re.escape("1 of 2 times outside it or not finite, the first at index 0: 0.2")):
        late.at(torch.tensor([0.2, 1.5], dtype=torch.float32))
    with pytest.raises(ValueError, match=re.escape("got 1 decrease(s), the first at index 2: 0.2 after 0.3")):
        r.at(torch.tensor([0.1, 0.3, 0.2], dtype=torch.float32))
    with pytest.raises(
        ValueError, match=re.escape("got 1 decrease(s), the first at index 1: 0.2 after 0.30000000000001")
    ):
        r.at([0.30000000000001, 0.2])  # float64 times keep their digits
    decreasing = torch.tensor([[1.0] * B, [2.0, 0.5, 2.0, 2.0], [3.0, 2.5, 1.0, 3.0]])
    with pytest.raises(ValueError, match=re.escape("got 2 decrease(s), the first at [q, b] = [1, 1]: 0.5 after 1.0")):
        r.at(decreasing)


def test_at_per_sequence_times_read_each_sequence_at_its_own_times() -> None:
    """(Q, B) times: entry [q, b] is sequence b at times[q, b], as a (Q,) query of that time would give it."""
    r = make_ssm(n=3).rollout(make_y0(), 6, sampler=RecordingSampler(), t0=2)
    g = torch.Generator().manual_seed(9)
    times = torch.sort(2 + 5 * torch.rand(4, B, generator=g, dtype=torch.float64), dim=0).values
    times[0, 1] = 2.0  # an end and a sub-step time exactly
    times[1, 2] = 3 + 1 / 3
    out = r.at(times)
    assert out.shape == (4, B, DY)
    for q in range(4):
        for b in range(B):
            torch.testing.assert_close(out[q, b], r.at([float(times[q, b])])[0, b], rtol=0, atol=0)
    assert torch.equal(out[0, 1], r.states[0, 1]) and torch.equal(out[1, 2], r.substates[4, 2])
    # By hand: linear interpolation between the sub-states around each time (sub-step 1/3).
    pos = (times[2, 3] - 2) * 3
    i = int(pos)
    manual = r.substates[i, 3] + (pos - i) * (r.substates[i + 1, 3] - r.substates[i, 3])
    torch.testing.assert_close(out[2, 3], manual, rtol=1e-12, atol=1e-12)


def test_at_names_times_of_the_wrong_kind() -> None:
    """Not-a-number inputs were torch.as_tensor's errors ("new(): invalid data type 'str'"), or read as 0/1."""
    r = make_ssm(n=2).rollout(make_y0(), 5, sampler=RecordingSampler(), t0=1)
    prefix = r"times: expected real times \(a sequence of numbers or a tensor\), got "
    for bad, got in (("2.5", "str"), (None, "NoneType"), ([1.5, "2"], "list"), ({2.0}, "set")):
        with pytest.raises(TypeError, match=prefix + got):
            r.at(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=prefix + r"a tensor of dtype torch\.bool"):
        r.at(torch.tensor([True]))  # would have been time 1.0
    with pytest.raises(TypeError, match=prefix + r"a tensor of dtype torch\.complex64"):
        r.at(torch.tensor([2.0 + 0j]))
    assert torch.equal(r.at(torch.tensor([2, 3])), r.states[1:3])  # integer times are real times


def test_at_takes_times_a_rounding_away_from_the_ends() -> None:
    """0.1 added 30 times is 3.0000000000000013: the last frame of a 4-frame rollout, not an error."""
    r = make_ssm(n=2).rollout(make_y0(), 4, sampler=RecordingSampler())
    late = 0.0
    for _ in range(30):  # (not sum(): from Python 3.12 it compensates rounding and gives 3.0)
        late += 0.1
    assert late > 3.0
    assert torch.equal(r.at([late]), r.states[-1:])
    assert torch.equal(r.at([1.5, late]), r.substates[[3, 6]])
    early = make_ssm(n=2).rollout(make_y0(), 4, sampler=RecordingSampler(), t0=1)
    assert torch.equal(early.at([1 - 1e-12]), early.states[:1])


def test_at_takes_float32_times_a_float32_rounding_away_from_the_ends_and_substeps() -> None:
    """float32 times summed from steps drift by several float32 units: 300 steps of 1/30 end at 10.000000954, which
    was refused as outside the rollout [0, 10]; a float32 sub-step time (1/3) came back interpolated, not the
    stored state. Times in float64 keep the tight tolerance, and a time really outside is still refused."""
    r = make_ssm(n=3).rollout(make_y0(), 11, sampler=RecordingSampler())
    steps = torch.full((300,), 1 / 30, dtype=torch.float32).cumsum(0)
    assert steps[-1].item() > 10.0  # (the rounding this is about)
    out = r.at(steps)
    assert torch.equal(out[-1], r.states[-1])
    assert torch.equal(out[9], r.substates[1])  # 10/30 = 1/3: sub-step 1, after float32 rounding
    assert torch.equal(r.at(torch.tensor([1 / 3, 2 / 3], dtype=torch.float32)), r.substates[[1, 2]])
    assert torch.equal(r.at(np.array([10.000001], dtype=np.float32)), r.states[-1:])
    with pytest.raises(ValueError, match=r"within the rollout \[0\.0, 10\.0\]"):
        r.at(torch.tensor([10.001], dtype=torch.float32))
    with pytest.raises(ValueError, match=r"within the rollout \[0\.0, 10\.0\]"):
        r.at([10.000001])  # (float64 times: no float32 slack)


class ConstantField(VectorField):
    """f(t, y, z) = 1: the state is the time, y(t) = y(t0) + t − t0 (Euler is exact)."""

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_at_low_precision_margins_are_each_times_own_and_small(dtype: torch.dtype) -> None:
    """The margins are units of each query time's own size, capped: a margin at the rollout's largest time (30
    frames, 20 sub-steps) snapped half-precision times near 0 onto the nearest sub-step (0.5249 came back as the
    state at 0.5), float32 times of a 1000-frame rollout likewise, and a float32 time 1.5 frames past the end of a
    rollout starting at 1e6 was taken as its end. On a linear path, at(t) must give t."""
    cell = ResidualCell(ConstantField(), state_size=1, cond_size=0, n_substeps=20)
    r = LatentSSM(cell).double().rollout(torch.zeros(1, 1, dtype=torch.float64), 30)  # y(t) = t
    queries = torch.tensor([0.5249, 1.2305, 7.77], dtype=dtype)
    torch.testing.assert_close(r.at(queries)[:, 0, 0], queries.double(), rtol=0, atol=1e-12)
    long = LatentSSM(ResidualCell(ConstantField(), 1, 0, n_substeps=300)).double()
    r = long.rollout(torch.zeros(1, 1, dtype=torch.float64), 1000)
    queries = torch.tensor([0.5013334, 1.001, 998.5], dtype=torch.float32)
    torch.testing.assert_close(r.at(queries)[:, 0, 0], queries.double(), rtol=0, atol=1e-9)
    far = LatentSSM(ResidualCell(ConstantField(), 1, 0, n_substeps=2)).double()
    r = far.rollout(torch.zeros(1, 1, dtype=torch.float64), 10, t0=1_000_000)
    with pytest.raises(ValueError, match=r"within the rollout \[1000000\.0, 1000009\.0\]"):
        r.at(torch.tensor([1_000_010.5], dtype=torch.float32))


def test_at_says_how_to_pass_per_sequence_times_of_different_lengths() -> None:
    """A list of per-sequence series of different lengths was "expected real times"; per-sequence times as rows
    (B, Q) were refused without a word on the transpose."""
    r = make_ssm(n=2).rollout(make_y0(), 6, sampler=RecordingSampler())
    ragged = [torch.tensor([0.5, 1.0, 4.0]), torch.tensor([2.0, 3.5]), torch.tensor([1.0])]
    for times in (ragged, [t.tolist() for t in ragged]):
        with pytest.raises(ValueError, match=r"got 3 series of different lengths \[3, 2, 1\]; pad each to the longest"):
            r.at(times)  # type: ignore[arg-type]
    rows = torch.rand(B, 7) * 5  # (B, Q): one row per sequence
    with pytest.raises(
        ValueError, match=rf"got shape \[{B}, 7\]; per-sequence times as rows \(B, Q\): pass the transpose"
    ):
        r.at(rows)
    assert r.at(rows.sort(dim=1).values.T).shape == (7, B, DY)


def test_rollout_without_noise_and_without_prior() -> None:
    """Dz = 0 and no prior: a deterministic latent ODE rollout; z is empty and no prior is reported."""
    with seeded(0):
        cell = ResidualCell(MLPField(DY, 0, 8, 2), DY, 0, 3)
    ssm = LatentSSM(cell).double()
    y0 = make_y0()
    r = ssm.rollout(y0, 10)
    assert r.z.shape == (9, B, 0)
    assert r.prior is None and r.posterior is None
    assert r.states.shape == (10, B, DY)
    blocks = replay(ssm, y0, r.z, 3, 0)
    assert torch.equal(r.substates[1:], torch.cat(blocks))


def test_single_frame_rollout() -> None:
    """No transition: empty z, residuals and prior (not None, which means "no residuals" / "no prior")."""
    r = make_ssm(n=4).rollout(make_y0(), 1)
    assert r.substates.shape == (1, B, DY) and r.states.shape == (1, B, DY) and r.n_frames == 1
    assert r.z.shape == (0, B, DZ) and r.posterior is None
    assert r.residuals is not None and r.residuals.shape == (0, B, DY) and r.residuals.dtype == torch.float64
    assert r.prior is not None
    assert tuple(r.prior.batch_shape) == (0, B) and tuple(r.prior.event_shape) == (DZ,)
    # The per-sequence terms of an empty rollout are zeros of shape (B,).
    assert torch.equal(residual_penalty(r.residuals), torch.zeros(B, dtype=torch.float64))
    empty_q = index_steps(make_posterior(3), slice(0, 0))
    assert torch.equal(kl_per_sequence(empty_q, r.prior), torch.zeros(B, dtype=torch.float64))
    assert torch.equal(elbo(torch.zeros(B), residual=residual_penalty(r.residuals).float()).total, torch.tensor(0.0))


@pytest.mark.parametrize(("n_frames", "length", "n_observed"), [(1, 0, None), (4, 3, 1)])
def test_a_given_posterior_with_no_step_used_is_empty_not_none(
    n_frames: int, length: int, n_observed: int | None
) -> None:
    """One frame with a (0, B) posterior (a filtering posterior over one frame), or n_observed=1: the rollout's
    posterior is batch (0, B), its KL zeros (B,), and the sampler never draws from it."""
    sampler = RecordingSampler()
    post = make_posterior(length)
    r = make_ssm().rollout(make_y0(), n_frames, posterior=post, n_observed=n_observed, sampler=sampler)
    assert r.posterior is not None and tuple(r.posterior.batch_shape) == (0, B)
    assert "z_posterior" not in [role for role, *_ in sampler.calls]
    assert r.prior is not None
    kl = kl_per_sequence(r.posterior, index_steps(r.prior, slice(0, 0)))
    assert torch.equal(kl, torch.zeros(B, dtype=torch.float64))


def test_single_frame_rollout_of_cells_without_residuals_or_prior() -> None:
    """None keeps its meaning: a discrete cell reports no residuals, a model without prior or z no prior."""
    with seeded(0):
        discrete = LatentSSM(MLPCell(DY, DZ, 8, 2), ConditionalGaussianPrior(MLP(DY, 8, 2 * DZ, 2))).double()
        no_noise = LatentSSM(ResidualCell(MLPField(DY, 0, 8, 2), DY, 0, 2)).double()
    r = discrete.rollout(make_y0(), 1)
    assert r.residuals is None and r.prior is not None and r.prior.batch_shape == (0, B)
    r = no_noise.rollout(make_y0(), 1)
    assert r.prior is None and r.residuals is not None and r.residuals.shape == (0, B, DY)
    r = LatentSSM(make_ssm().cell).rollout(make_y0(), 1)
    assert r.prior is None


def test_discrete_cell_rollout() -> None:
    with seeded(0):
        ssm = LatentSSM(MLPCell(DY, DZ, 8, 2), ConditionalGaussianPrior(MLP(DY, 8, 2 * DZ, 2))).double()
    r = ssm.rollout(make_y0(), 6, posterior=make_posterior(2), sampler=RecordingSampler())
    assert r.residuals is None and r.states.shape == (6, B, DY) and r.substates.shape == (6, B, DY)
    with pytest.raises(ValueError, match="n_substeps: MLPCell is a discrete-time cell"):
        ssm.rollout(make_y0(), 6, n_substeps=2)


def test_rollout_errors() -> None:
    ssm = make_ssm()
    y0 = make_y0()
    with pytest.raises(TypeError, match="cell: expected a TransitionCell"):
        LatentSSM(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="y0: expected 2 dimensions"):
        ssm.rollout(y0[0], 5)
    with pytest.raises(ValueError, match=f"y0: expected size {DY} for axis 'dy'"):
        ssm.rollout(y0[:, :2], 5)
    with pytest.raises(ValueError, match="n_frames: expected an int >= 1, got 0"):
        ssm.rollout(y0, 0)
    with pytest.raises(TypeError, match="n_frames"):
        ssm.rollout(y0, 5.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_substeps: expected an int >= 1"):
        ssm.rollout(y0, 5, n_substeps=0)
    with pytest.raises(TypeError, match="n_substeps"):
        ssm.rollout(y0, 5, n_substeps=0.5)  # type: ignore[arg-type]
    for bad_t0 in (0.5, True, "3", 2.0):
        with pytest.raises(TypeError, match=f"t0: expected an int, got {type(bad_t0).__name__}"):
            ssm.rollout(y0, 5, t0=bad_t0)  # type: ignore[arg-type]
    assert ssm.rollout(y0, 3, t0=-2, sample=False).t0 == -2  # any integer time


class _LaplacePrior(nn.Module):
    """A prior that returns a diagonal Laplace: not a Gaussian, so it cannot be rebuilt as one."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(DY, 2 * DZ).double()

    def forward(self, y: torch.Tensor) -> Independent:
        loc, raw = self.net(y).chunk(2, dim=-1)
        return Independent(Laplace(loc, raw.exp()), 1)


class _ShapedPrior(nn.Module):
    """A Gaussian prior whose output shape is set by hand (to break the contract on purpose)."""

    def __init__(self, event: int = DZ, flatten: bool = False, independent: bool = True) -> None:
        super().__init__()
        self.net = nn.Linear(DY, event).double()
        self.flatten, self.independent = flatten, independent

    def forward(self, y: torch.Tensor) -> Distribution:
        loc = self.net(y.reshape(-1, DY) if self.flatten else y)
        base = Normal(loc, torch.ones_like(loc))
        return Independent(base, 1) if self.independent else base


@pytest.mark.parametrize("with_posterior", [False, True], ids=["prior-step", "prior-batched"])
def test_prior_output_is_checked(with_posterior: bool) -> None:
    """The prior's first output in a rollout must be Independent(Normal) with batch (...) and event (Dz,),
    both where it is called per frame on (B, Dy) and where it is called once on (L, B, Dy)."""
    cell = make_ssm().cell
    y0 = make_y0()
    # With a posterior over every transition, the prior is only called once, batched over (3, B, Dy).
    n_frames, kwargs = (4, {"posterior": make_posterior(3)}) if with_posterior else (6, {})
    with pytest.raises(
        TypeError, match=r"prior: expected .* Independent\(Normal\(loc, scale\), 1\), got Independent\(Laplace\)"
    ):
        LatentSSM(cell, _LaplacePrior()).rollout(y0, n_frames, **kwargs)
    with pytest.raises(TypeError, match=r"prior: expected .* got Normal"):
        LatentSSM(cell, _ShapedPrior(independent=False)).rollout(y0, n_frames, **kwargs)
    shape = [3, B, DY] if with_posterior else [B, DY]
    message = (
        f"prior: expected the prior module to map states {shape} to batch shape {shape[:-1]} and event shape "
        f"[{DZ}], got batch {shape[:-1]} and event [{DZ + 1}]"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        LatentSSM(cell, _ShapedPrior(event=DZ + 1)).rollout(y0, n_frames, **kwargs)
    if with_posterior:  # a prior that only handles (B, Dy) flattens the time axis away
        with pytest.raises(ValueError, match=re.escape(f"got batch [{3 * B}] and event [{DZ}]")):
            LatentSSM(cell, _ShapedPrior(flatten=True)).rollout(y0, n_frames, **kwargs)
    # A prior that keeps the contract works in both places.
    r = LatentSSM(cell, _ShapedPrior()).rollout(y0, n_frames, sample=False, **kwargs)
    assert r.prior is not None and r.prior.batch_shape == (n_frames - 1, B)


def test_prior_must_be_a_module_of_states() -> None:
    cell = make_ssm().cell
    with pytest.raises(TypeError, match=r"prior: expected an nn\.Module mapping states \(\.\.\., Dy\) .* got str"):
        LatentSSM(cell, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"prior: .* got function"):
        LatentSSM(cell, lambda y: y)  # type: ignore[arg-type]


def test_a_standard_normal_is_a_fixed_prior_of_the_rollout() -> None:
    """StandardNormal took only a batch shape, so LatentSSM refused it and asked for a wrapper module; it now takes
    the states like any prior: p(z | y) = N(0, I) with batch y.shape[:-1]."""
    cell = make_ssm().cell
    ssm = LatentSSM(cell, StandardNormal(DZ).double())
    roll = ssm.rollout(make_y0(), 6, posterior=make_posterior(3), sample=False)
    assert roll.prior is not None and roll.prior.batch_shape == (5, B) and roll.prior.event_shape == (DZ,)
    assert torch.equal(roll.prior.mean, torch.zeros(5, B, DZ, dtype=torch.float64))
    assert torch.equal(roll.prior.stddev, torch.ones(5, B, DZ, dtype=torch.float64))
    assert torch.equal(roll.z[3:], torch.zeros(2, B, DZ, dtype=torch.float64))  # the prior's means, sample=False
    with_inputs = LatentSSM(ResidualCell(MLPField(DY, DZ + 2, 8, 2), DY, DZ + 2, 1), StandardNormal(DZ), input_size=2)
    u = torch.randn(5, B, 2)
    roll = with_inputs.rollout(make_y0(dtype=torch.float32), 6, inputs=u)
    assert roll.z.shape == (5, B, DZ) and roll.prior is not None and roll.prior.batch_shape == (5, B)


def test_role_is_exported_with_the_roles_the_rollout_uses() -> None:
    import typing

    import latentdyn

    assert latentdyn.Role is Role and "Role" in latentdyn.__all__
    sampler = RecordingSampler()
    make_ssm().rollout(make_y0(), 4, posterior=make_posterior(1), sampler=sampler)
    assert set(sampler.roles) <= set(typing.get_args(Role))


def test_posterior_errors() -> None:
    ssm = make_ssm()
    y0 = make_y0()
    with pytest.raises(ValueError, match="posterior: covers 3 transitions, but n_observed=6 frames need 5"):
        ssm.rollout(y0, 10, posterior=make_posterior(3), n_observed=6)
    with pytest.raises(ValueError, match="posterior: covers 3 transitions, but n_observed=5 frames need 4"):
        ssm.rollout(y0, 10, posterior=make_posterior(3), n_observed=5)  # one past the boundary
    assert isinstance(ssm.rollout(y0, 10, posterior=make_posterior(3), n_observed=4, sample=False), Rollout)
    with pytest.raises(ValueError, match=r"n_observed: 3 observed frames need a posterior over 2"):
        ssm.rollout(y0, 10, n_observed=3)
    with pytest.raises(ValueError, match="n_observed"):
        ssm.rollout(y0, 10, posterior=make_posterior(3), n_observed=0)
    with pytest.raises(TypeError, match="n_observed"):
        ssm.rollout(y0, 10, n_observed="all")  # type: ignore[arg-type]
    loc = torch.zeros(4, B + 1, DZ, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"posterior: expected batch shape \(L, {B}\)"):
        ssm.rollout(y0, 10, posterior=diag_gaussian(loc, torch.ones_like(loc)))
    loc = torch.zeros(B, DZ, dtype=torch.float64)
    with pytest.raises(ValueError, match="posterior: expected batch shape"):
        ssm.rollout(y0, 10, posterior=diag_gaussian(loc, torch.ones_like(loc)))
    loc = torch.zeros(4, B, DZ + 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"posterior: expected .* event shape \({DZ},\)"):
        ssm.rollout(y0, 10, posterior=diag_gaussian(loc, torch.ones_like(loc)))
    with pytest.raises(TypeError, match="posterior: expected a torch Distribution"):
        ssm.rollout(y0, 10, posterior=torch.zeros(4, B, DZ))  # type: ignore[arg-type]
    full = MultivariateNormal(torch.zeros(4, B, DZ, dtype=torch.float64), torch.eye(DZ, dtype=torch.float64))
    with pytest.raises(TypeError, match="posterior: expected a diagonal Gaussian"):
        ssm.rollout(y0, 10, posterior=full)  # type: ignore[arg-type]
    no_prior = LatentSSM(ssm.cell)
    with pytest.raises(ValueError, match="posterior: this model has no prior, so z_4 must come from"):
        no_prior.rollout(y0, 10, posterior=make_posterior(3))
    assert isinstance(no_prior.rollout(y0, 4, posterior=make_posterior(3), sample=False), Rollout)


def test_sampler_and_its_draws_are_checked() -> None:
    """A sampler is user code: a draw of the wrong shape or kind is named at the rollout, not a cat error."""
    ssm, y0 = make_ssm(), make_y0()
    with pytest.raises(TypeError, match=r"sampler: expected a callable draw\(dist, role\) -> tensor, or None, got int"):
        ssm.rollout(y0, 4, sampler=3)  # type: ignore[arg-type]

    def flat(dist: Distribution, role: str) -> torch.Tensor:  # drops the batch shape
        return dist.mean.reshape(-1, DZ)[:2]

    prior_message = f"sampler: expected a draw of shape [{B}, {DZ}] for role 'z_prior'"
    with pytest.raises(ValueError, match=re.escape(prior_message)):
        ssm.rollout(y0, 4, sampler=flat)
    message = f"sampler: expected a draw of shape [2, {B}, {DZ}] for role 'z_posterior' (the distribution's batch"
    with pytest.raises(ValueError, match=re.escape(message + f" and event shape), got shape [2, {DZ}]")):
        ssm.rollout(y0, 4, posterior=make_posterior(2), sampler=flat)
    with pytest.raises(TypeError, match=r"sampler: expected a floating-point tensor for role 'z_prior', got list"):
        ssm.rollout(y0, 4, sampler=lambda dist, role: [0.0])  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match=r"for role 'z_prior', got a tensor of dtype torch\.int64"):
        ssm.rollout(y0, 4, sampler=lambda dist, role: dist.mean.long())
    # A draw of the right shape passes, whatever its values.
    r = ssm.rollout(y0, 4, sampler=lambda dist, role: torch.zeros_like(dist.mean))
    assert torch.equal(r.z, torch.zeros(3, B, DZ, dtype=torch.float64))


def test_calling_the_model_is_a_rollout() -> None:
    """LatentSSM had no forward: ssm(...) and torch.func.functional_call raised NotImplementedError."""
    ssm, y0 = make_ssm(n=2), make_y0()
    r = ssm(y0, 5, posterior=make_posterior(2), sample=False, t0=3)
    expected = ssm.rollout(y0, 5, posterior=make_posterior(2), sample=False, t0=3)
    assert isinstance(r, Rollout) and r.t0 == 3 and torch.equal(r.substates, expected.substates)
    # Parameters swapped in for one call: zero weights give a field f = 0, so the state stays y0.
    zeros = {name: torch.zeros_like(p) for name, p in ssm.named_parameters()}
    still = torch.func.functional_call(ssm, zeros, (y0, 4), {"sample": False})
    assert torch.equal(still.states, y0.expand(4, -1, -1))
    assert not torch.equal(ssm.rollout(y0, 4, sample=False).states, still.states)  # own parameters untouched


def test_the_rollout_calls_the_cell_as_a_module() -> None:
    """The rollout called the cell's _path directly: forward hooks on the cell never fired, and a compiled cell
    (cell.compile(), torch.compile(cell) assigned to ssm.cell) silently ran in eager mode."""
    from torch._dynamo.testing import CompileCounter

    from latentdyn.cells import CellPath

    ssm, y0, post = make_ssm(n=3), make_y0(), make_posterior(4)
    expected = ssm.rollout(y0, 8, posterior=post, sample=False, t0=2)
    seen: list[tuple[int, object]] = []
    handle = ssm.cell.register_forward_hook(lambda module, args, output: seen.append((args[3], output)))
    got = ssm.rollout(y0, 8, posterior=post, sample=False, t0=2)
    handle.remove()
    assert [frame for frame, _ in seen] == list(range(2, 9))  # one call per transition, at its frame
    assert all(isinstance(output, CellPath) for _, output in seen)
    assert torch.equal(got.substates, expected.substates) and got.residuals is not None
    assert expected.residuals is not None and torch.equal(got.residuals, expected.residuals)
    try:
        for how in ("method", "wrapper"):
            torch._dynamo.reset()
            counter, compiled = CompileCounter(), make_ssm(n=3)
            if how == "method":
                compiled.cell.compile(backend=counter)
            else:
                compiled.cell = torch.compile(compiled.cell, backend=counter)  # type: ignore[assignment]
            got = compiled.rollout(y0, 8, posterior=post, sample=False, t0=2)
            assert counter.frame_count >= 1, how  # the cell's forward was compiled
            assert torch.equal(got.substates, expected.substates), how
    finally:
        torch._dynamo.reset()


def test_a_cell_class_that_overrides_forward_still_rolls_out() -> None:
    """A custom cell written when the rollout called _path directly may override forward(y, z) (say, to clamp
    what cell(y, z) returns): its rollout failed with "unexpected keyword argument 'return_path'"; it is
    stepped through its _path, as before, also when wrapped by torch.compile."""

    class Clamped(ResidualCell):
        def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return super().forward(y, z).clamp(-5, 5)

    ssm, y0, post = make_ssm(n=2), make_y0(), make_posterior(4)
    expected = ssm.rollout(y0, 6, posterior=post, sample=False)
    custom = LatentSSM(Clamped(ssm.cell.field, DY, DZ, 2), ssm.prior).double()
    got = custom.rollout(y0, 6, posterior=post, sample=False)
    assert torch.equal(got.substates, expected.substates)
    try:
        torch._dynamo.reset()
        custom.cell = torch.compile(custom.cell, backend="eager")  # type: ignore[assignment]
        assert torch.equal(custom.rollout(y0, 6, posterior=post, sample=False).substates, expected.substates)
    finally:
        torch._dynamo.reset()


# ----------------------------------------------------------------------------------- exogenous inputs (actions)
DU = 2


def make_controlled_ssm(n: int = 2, seed: int = 0) -> LatentSSM:
    """A model whose cell is conditioned on [z, u] (Dz + Du) and whose prior reads [y, u] (Dy + Du)."""
    with seeded(seed):
        field = TimeModulatedField(MLPField(DY, DZ + DU, 16, 2))
        prior = ConditionalGaussianPrior(MLP(DY + DU, 16, 2 * DZ, 2))
    return LatentSSM(ResidualCell(field, DY, DZ + DU, n), prior, input_size=DU).double()


def make_inputs(length: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(length, B, DU, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("n_post", [0, 4])
def test_inputs_condition_the_cell_and_the_prior_of_every_transition(n_post: int) -> None:
    """u_t joins z_t in the cell's condition and y_{t−1} in the prior's input, observed part and prediction alike.

    Replayed by hand: the cell's public path() with [z_t, u_t], the prior module on [y_{t−1}, u_t]."""
    ssm, n, t0, frames = make_controlled_ssm(), 2, 3, 9
    y0, u = make_y0(), make_inputs(frames - 1)
    posterior = make_posterior(n_post) if n_post else None
    sampler = RecordingSampler()
    r = ssm.rollout(y0, frames, posterior=posterior, sampler=sampler, t0=t0, inputs=u)
    assert r.z.shape == (frames - 1, B, DZ) and r.prior is not None and r.prior.event_shape == (DZ,)

    prior_draws = [(dist, value) for role, dist, value in sampler.calls if role == "z_prior"]
    assert len(prior_draws) == frames - 1 - n_post
    y, expected_states, expected_loc = y0, [y0], []
    for t in range(1, frames):
        p = ssm.prior(torch.cat([y, u[t - 1]], -1))
        expected_loc.append(p.mean)
        if t > n_post:  # drawn from the prior on [y_{t−1}, u_t]: the sampler saw exactly that distribution
            dist, value = prior_draws[t - 1 - n_post]
            torch.testing.assert_close(dist.mean, p.mean, rtol=0, atol=0)
            torch.testing.assert_close(r.z[t - 1], value, rtol=0, atol=0)
        path = ssm.cell.path(y, torch.cat([r.z[t - 1], u[t - 1]], -1), n_substeps=n, frame=t0 + t - 1)
        y = path.states[-1]
        expected_states.append(y)
    torch.testing.assert_close(r.states, torch.stack(expected_states), rtol=0, atol=0)
    torch.testing.assert_close(r.prior.mean, torch.stack(expected_loc), rtol=1e-12, atol=1e-12)


def test_inputs_change_the_rollout_and_receive_gradients() -> None:
    ssm, y0 = make_controlled_ssm(), make_y0()
    u = make_inputs(5).requires_grad_()
    a = ssm.rollout(y0, 6, sample=False, inputs=u)
    b = ssm.rollout(y0, 6, sample=False, inputs=u.detach() + 1)
    assert not torch.allclose(a.states[1:], b.states[1:])
    a.states[-1].sum().backward()
    assert u.grad is not None and bool((u.grad != 0).any())
    single = ssm.rollout(y0, 1)  # no transition, no input needed
    assert single.states.shape == (1, B, DY) and single.z.shape == (0, B, DZ)


def test_a_deterministic_controlled_model_needs_no_noise() -> None:
    """Dz = 0: the cell's whole condition is u (a controlled ODE); no prior, no posterior."""
    with seeded(0):
        cell = ResidualCell(MLPField(DY, DU, 16, 2), DY, DU, 1)
    ssm = LatentSSM(cell, input_size=DU).double()
    y0, u = make_y0(), make_inputs(3)
    r = ssm.rollout(y0, 4, inputs=u)
    assert r.z.shape == (3, B, 0) and r.prior is None
    expected = cell(cell(cell(y0, u[0]), u[1]), u[2])
    torch.testing.assert_close(r.states[-1], expected, rtol=0, atol=0)


def test_inputs_errors() -> None:
    ssm, y0 = make_controlled_ssm(), make_y0()
    with pytest.raises(
        ValueError, match=re.escape("inputs: this model takes exogenous inputs (input_size=2), expected")
    ):
        ssm.rollout(y0, 4)
    with pytest.raises(ValueError, match=re.escape(f"inputs: expected shape (T-1, B, Du) = [3, {B}, 2] (one input")):
        ssm.rollout(y0, 4, inputs=make_inputs(4))
    with pytest.raises(TypeError, match=r"inputs: expected a floating-point tensor, got dtype torch.int64"):
        ssm.rollout(y0, 4, inputs=torch.zeros(3, B, DU, dtype=torch.long))
    with pytest.raises(TypeError, match=r"inputs: expected a tensor \(T-1, B, Du\), got list"):
        ssm.rollout(y0, 4, inputs=[[0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("inputs: this model takes no exogenous inputs (input_size=0")):
        make_ssm().rollout(y0, 4, inputs=make_inputs(3))
    cell = ResidualCell(MLPField(DY, DZ, 8, 2), DY, DZ, 1)
    with pytest.raises(ValueError, match=re.escape("input_size: expected at most the cell's cond_size=2")):
        LatentSSM(cell, input_size=3)
    with pytest.raises(ValueError, match=r"input_size: expected an int >= 0"):
        LatentSSM(cell, input_size=-1)
    # A prior that reads y only, in a model with inputs: named with the size it was given.
    wrong = LatentSSM(
        ResidualCell(MLPField(DY, DZ + DU, 8, 2), DY, DZ + DU, 1),
        ConditionalGaussianPrior(MLP(DY + DU, 8, 2 * (DZ + DU), 2)),
        input_size=DU,
    ).double()
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"prior: expected the prior module to map states and inputs [y, u] [{B}, 5] to batch shape [{B}] "
            "and event shape [2]"
        ),
    ):
        wrong.rollout(y0, 4, inputs=make_inputs(3))


def test_a_prior_without_noise_is_refused() -> None:
    """A prior given while cond_size − input_size = 0 was kept and never called: z of shape (T−1, B, 0), prior
    None, the prior's parameters never trained."""
    with pytest.raises(
        ValueError,
        match=re.escape("prior: given, but the cell's cond_size=2 minus input_size=2 leaves no noise (Dz = 0)"),
    ):
        LatentSSM(GRUCell(4, 2), ConditionalGaussianPrior(MLP(4 + 2, 16, 4, 2)), input_size=2)
    with pytest.raises(ValueError, match=re.escape("prior: given, but the cell's cond_size=0 minus input_size=0")):
        LatentSSM(ResidualCell(MLPField(DY, 0, 8, 2), DY, 0), ConditionalGaussianPrior(MLP(DY, 8, 2, 2)))
    deterministic = LatentSSM(GRUCell(4, 2), input_size=2)
    assert (deterministic.noise_size, deterministic.input_size) == (0, 2)


def test_a_prior_of_the_wrong_event_size_is_told_how_dz_is_made() -> None:
    """With inputs, the error blamed the prior only; it now says Dz = cond_size − input_size, so that a cell
    built without room for u is found too."""
    model = LatentSSM(GRUCell(4, 2), ConditionalGaussianPrior(MLP(4 + 1, 8, 4, 2)), input_size=1)
    message = (
        "event [2]; the noise size is Dz = cell.cond_size (2) − input_size (1) = 1, so the prior must output event "
        "(1,), or the cell's cond_size is wrong (it must be Dz + Du)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        model.rollout(torch.randn(3, 4), 5, inputs=torch.randn(4, 3, 1))
    plain = LatentSSM(make_ssm().cell, ConditionalGaussianPrior(MLP(DY, 8, 2 * (DZ + 1), 2))).double()
    with pytest.raises(ValueError, match=re.escape("the noise size is Dz = cell.cond_size (2), so the prior must")):
        plain.rollout(make_y0(), 3)


@pytest.mark.parametrize("with_posterior", [False, True])
def test_a_prior_network_of_the_wrong_input_size_is_named(with_posterior: bool) -> None:
    """A prior network built for Dy instead of Dy + Du failed with torch's bare "mat1 and mat2 shapes cannot be
    multiplied"; now named, with the size it receives, at its first call per-frame or batched."""
    model = LatentSSM(
        ResidualCell(MLPField(DY, DZ + DU, 8, 2), DY, DZ + DU),
        ConditionalGaussianPrior(MLP(DY, 8, 2 * DZ, 2)),
        input_size=DU,
    ).double()
    kwargs = {"posterior": make_posterior(3)} if with_posterior else {}
    shape = [3, B, DY + DU] if with_posterior else [B, DY + DU]
    message = (
        f"prior: the prior module failed on its input of shape {shape}; it receives [y, u], states and inputs "
        f"concatenated, of size Dy + Du = {DY} + {DU} = {DY + DU} (build its network for that input size): "
        f"h: expected size {DY} for axis 'd'"  # the head's input check (torch's "mat1 and mat2" before)
    )
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        model.rollout(make_y0(), 4, inputs=make_inputs(3), **kwargs)
    assert isinstance(caught.value.__cause__, ValueError)
    with pytest.raises(ValueError, match=re.escape("(build its network for that input size): mat1")) as caught:
        # A network of one's own still fails inside torch, and is named the same way.
        LatentSSM(
            model.cell, ConditionalGaussianPrior(nn.Sequential(nn.Identity(), nn.Linear(DY, 2 * DZ))), input_size=DU
        ).double().rollout(make_y0(), 4, inputs=make_inputs(3), **kwargs)
    assert isinstance(caught.value.__cause__, RuntimeError)
    no_inputs = LatentSSM(make_ssm().cell, ConditionalGaussianPrior(MLP(DY + 1, 8, 2 * DZ, 2))).double()
    with pytest.raises(ValueError, match=re.escape(f"it receives states y of size Dy = {DY} (build its network")):
        no_inputs.rollout(make_y0(), 4, **kwargs)

    class Failing(nn.Module):
        def forward(self, y: torch.Tensor) -> Independent:
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match=r"^out of memory$"):  # not a shape error: untouched
        LatentSSM(make_ssm().cell, Failing()).double().rollout(make_y0(), 4, **kwargs)


def test_default_sampler_checks_sample() -> None:
    """default_sampler("no") drew samples: any non-empty string was true."""
    from latentdyn.ssm import default_sampler

    with pytest.raises(TypeError, match=r"sample: expected a bool, got str 'no'"):
        default_sampler("no")  # type: ignore[arg-type]
    dist = diag_gaussian(torch.ones(2, 3), torch.ones(2, 3))
    assert torch.equal(default_sampler(False)(dist, "z_prior"), torch.ones(2, 3))


def test_default_sampler_draws_rsample_numbers_and_runs_under_vmap() -> None:
    """The default sampler drew with rsample, whose in-place normal_ cannot run under
    vmap(randomness="different"); it now draws loc + randn·scale: the same numbers, also under vmap."""
    from latentdyn.ssm import default_sampler

    draw = default_sampler(True)
    raw = torch.randn(6, 5, 2 * DZ, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loc, scale = raw.chunk(2, dim=-1)  # strided views, as a head's outputs
    for dist in (
        diag_gaussian(loc, scale.abs() + 0.1),
        diag_gaussian(loc.transpose(0, 1), scale.transpose(0, 1).abs() + 0.1),  # not contiguous
        StandardNormal(DZ)(4, 3),  # expanded
        diag_gaussian(torch.zeros(3, DZ, dtype=torch.bfloat16), torch.ones(3, DZ, dtype=torch.bfloat16)),
    ):
        with seeded(0):
            expected, after = dist.rsample(), torch.rand(2)
        with seeded(0):
            got, got_after = draw(dist, "z_prior"), torch.rand(2)
        assert torch.equal(got, expected) and torch.equal(got_after, after)  # same draws, same generator state
    other = Independent(Laplace(torch.zeros(3, DZ), torch.ones(3, DZ)), 1)
    with seeded(1):
        expected = other.rsample()
    with seeded(1):
        assert torch.equal(draw(other, "z_prior"), expected)

    ssm, y0 = make_ssm(n=2), make_y0()

    def one(y: torch.Tensor, sample: bool) -> torch.Tensor:
        return ssm(y[None], 6, sample=sample).states[:, 0]

    with seeded(2):
        sampled = torch.func.vmap(lambda y: one(y, True), randomness="different")(y0)
    assert sampled.shape == (B, 6, DY) and torch.isfinite(sampled).all()
    means = torch.func.vmap(lambda y: one(y, False))(y0)
    torch.testing.assert_close(means, ssm(y0, 6, sample=False).states.transpose(0, 1), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(sampled, means)


def test_at_refuses_bools_in_sequences() -> None:
    """A bool tensor was refused but [True] was read as t = 1."""
    import numpy as np

    r = make_ssm(n=2).rollout(make_y0(), 5, sampler=RecordingSampler())
    for bad in ([True], [0.5, True], [[True] * B], (np.bool_(True),), np.array([True, False])):
        with pytest.raises(TypeError, match=r"times: expected real times .*got bools"):
            r.at(bad)  # type: ignore[arg-type]
    assert torch.equal(r.at([1]), r.states[1:2]) and torch.equal(r.at(np.array([1.0])), r.states[1:2])


def test_rollout_refuses_dtypes_the_networks_would_refuse() -> None:
    """A float64 y0, posterior or draw for a float32 model failed inside a matmul ("mat1 and mat2 must have the
    same dtype"); the rollout names the argument and both dtypes."""
    ssm = make_ssm(dtype=torch.float32)
    y0 = make_y0(dtype=torch.float32)
    with pytest.raises(
        TypeError, match=r"y0: expected the dtype of the model's parameters, torch\.float32, got torch\.float64"
    ):
        ssm.rollout(y0.double(), 3)
    with pytest.raises(TypeError, match=r"posterior: expected the dtype of y0, torch\.float32 .*got torch\.float64"):
        ssm.rollout(y0, 3, posterior=make_posterior(2, dtype=torch.float64))
    for n_observed in (1, 2):  # a draw for the prior, then one for the posterior
        with pytest.raises(
            TypeError, match=r"sampler: expected a draw in the dtype of y0, torch\.float32 .*got torch\.float64"
        ):
            ssm.rollout(
                y0,
                3,
                posterior=make_posterior(2, dtype=torch.float32),
                n_observed=n_observed,
                sampler=lambda dist, role: dist.mean.double(),
            )
    # A lower-precision posterior only rounds z: the states stay float32, as before.
    low = ssm.rollout(y0, 3, posterior=make_posterior(2, dtype=torch.bfloat16))
    assert low.states.dtype == torch.float32


def test_rollout_reads_the_dtype_of_the_posterior_scale_too() -> None:
    """A float32 loc with a float64 scale passed the posterior check (which read the mean only) and was then
    blamed on the sampler, which the caller had not given."""
    ssm = make_ssm(dtype=torch.float32)
    y0 = make_y0(dtype=torch.float32)
    post = Independent(Normal(torch.zeros(2, B, DZ), torch.ones(2, B, DZ, dtype=torch.float64)), 1)
    with pytest.raises(
        TypeError,
        match=r"^posterior: expected the dtype of y0, torch\.float32 \(or a lower precision\), got torch\.float64 "
        r"\(loc torch\.float32, scale torch\.float64\)",
    ):
        ssm.rollout(y0, 3, posterior=post)
    # A lower-precision scale is fine, as a lower-precision posterior is.
    half = Independent(Normal(torch.zeros(2, B, DZ), torch.ones(2, B, DZ, dtype=torch.bfloat16)), 1)
    assert ssm.rollout(y0, 3, posterior=half).states.dtype == torch.float32


def test_times_are_on_the_device_of_the_states() -> None:
    """times() was always a CPU tensor: on a GPU rollout, arithmetic with the states needed a copy."""
    r = Rollout(
        substates=torch.empty(5, 2, 3, device="meta"),
        n_substeps=2,
        z=torch.empty(2, 2, 1, device="meta"),
        prior=None,
        posterior=None,
        residuals=None,
    )
    times = r.times()
    assert times.device.type == "meta" and times.dtype == torch.float64 and times.shape == (5,)
    cpu = make_ssm(n=2).rollout(make_y0(), 3, posterior=make_posterior(2), t0=1)
    assert torch.equal(cpu.times(), torch.tensor([1 + j / 2 for j in range(5)], dtype=torch.float64))


def test_rollout_leaves_dtypes_to_autocast_except_float64() -> None:
    """Under autocast the networks cast float32 inputs themselves (not float64 ones): a float32 y0 runs a
    bfloat16 model there, while outside autocast it is refused."""
    ssm = make_ssm(dtype=torch.bfloat16)
    y0 = make_y0(dtype=torch.float32)
    with pytest.raises(TypeError, match=r"y0: expected the dtype of the model's parameters, torch\.bfloat16"):
        ssm.rollout(y0, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = ssm.rollout(y0, 3, posterior=make_posterior(2, dtype=torch.float32))
        assert r.states.shape == (3, B, DY)
        with pytest.raises(TypeError, match=r"y0: expected float32 or a lower precision under torch\.autocast"):
            ssm.rollout(y0.double(), 3)
        with pytest.raises(TypeError, match=r"posterior: expected the dtype of y0, torch\.float32 .*torch\.float64"):
            ssm.rollout(y0, 3, posterior=make_posterior(2, dtype=torch.float64))


def test_default_sampler_draws_from_its_generator_alone() -> None:
    from latentdyn.ssm import default_sampler

    loc, scale = torch.randn(4, 3), torch.rand(4, 3) + 0.5
    dist = diag_gaussian(loc, scale)
    state = torch.get_rng_state()
    got = default_sampler(generator=torch.Generator().manual_seed(7))(dist, "z_prior")
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is not drawn from
    expected = loc + torch.randn(4, 3, generator=torch.Generator().manual_seed(7)) * scale
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # A bfloat16 distribution gets the same ε, drawn in float32 and rounded (not bfloat16's own randn stream).
    half = diag_gaussian(loc.bfloat16(), scale.bfloat16())
    got_half = default_sampler(generator=torch.Generator().manual_seed(7))(half, "z_prior")
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(7)).bfloat16()
    assert got_half.dtype == torch.bfloat16
    torch.testing.assert_close(got_half, loc.bfloat16() + eps * scale.bfloat16(), rtol=0, atol=0)


def test_a_rollout_with_a_seeded_generator_repeats_and_ignores_the_global_seed() -> None:
    from latentdyn.ssm import default_sampler

    ssm = make_ssm(n=2)
    y0 = make_y0()
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        roll = ssm.rollout(y0, 5, sampler=default_sampler(generator=torch.Generator().manual_seed(3)))
        runs.append(roll.states)
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    other = ssm.rollout(y0, 5, sampler=default_sampler(generator=torch.Generator().manual_seed(4))).states
    assert not torch.allclose(other[1:], runs[0][1:])  # another seed, other noise (frame 0 is y0)


def test_default_sampler_refuses_what_a_generator_cannot_draw() -> None:
    from latentdyn.ssm import default_sampler

    with pytest.raises(TypeError, match=r"generator: expected a torch.Generator or None, got int 3"):
        default_sampler(generator=3)  # type: ignore[arg-type]
    laplace = Independent(Laplace(torch.zeros(2, 3), torch.ones(2, 3)), 1)
    draw = default_sampler(generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match=r"generator: .*diagonal Gaussians.* got a Independent for 'z_prior'"):
        draw(laplace, "z_prior")
    assert default_sampler(generator=None)(laplace, "z_prior").shape == (2, 3)  # rsample, as before


def test_default_sampler_with_a_generator_draws_eps_in_float32_for_a_16_bit_distribution() -> None:
    """The noise of a 16-bit distribution is torch's float32 stream of the generator, rounded: torch's own 16-bit
    randn agrees with it only for some sizes (here 100 elements, where it does not)."""
    g = torch.Generator().manual_seed(3)
    loc, scale = torch.randn(25, 4, generator=g), torch.rand(25, 4, generator=g) + 0.5
    for dtype in (torch.bfloat16, torch.float16):
        dist = diag_gaussian(loc.to(dtype), scale.to(dtype))
        got = default_sampler(generator=torch.Generator().manual_seed(7))(dist, "z_prior")
        eps = torch.randn(25, 4, generator=torch.Generator().manual_seed(7)).to(dtype)
        assert got.dtype == dtype
        torch.testing.assert_close(got, loc.to(dtype) + eps * scale.to(dtype), rtol=0, atol=0)


def test_at_snaps_float64_times_within_1e_9_frames_of_a_substep_time() -> None:
    """A float64 query time within 1e-9 frames of a sub-step time is that time (1e-9·n in sub-steps); 1e-7
    frames away it is interpolated."""
    g = torch.Generator().manual_seed(0)
    n = 4
    substates = torch.randn(2 * n + 1, 3, 2, generator=g, dtype=torch.float64)
    r = Rollout(
        substates=substates,
        n_substeps=n,
        z=torch.zeros(2, 3, 0, dtype=torch.float64),
        prior=None,
        posterior=None,
        residuals=None,
        t0=5,
    )
    assert torch.equal(r.at([6.5 - 0.9e-9, 6.5 + 0.9e-9]), substates[[6, 6]])  # sub-step 6 is at 5 + 6/4
    w = 1e-7 * n
    expected = (1 - w) * substates[6] + w * substates[7]
    torch.testing.assert_close(r.at([6.5 + 1e-7])[0], expected, rtol=1e-12, atol=1e-15)
    assert not torch.equal(r.at([6.5 + 1e-7])[0], substates[6])


# ------------------------------------------------------------------------------------------------ noise_sampler
def test_noise_sampler_reads_one_row_of_z_per_transition_observed_or_predicted() -> None:
    """Transition t's z is loc_t + ε_t·scale_t with ε_t = z[t], whether the posterior (drawn in one call for the
    observed transitions) or the prior (one call per transition) gives it."""
    ssm, y0, k = make_ssm(), make_y0(), 3
    post = make_posterior(k)
    eps = torch.randn(7, B, DZ, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    r = ssm.rollout(y0, 8, posterior=post, sampler=noise_sampler(z=eps))
    assert r.prior is not None
    expected = torch.cat([post.mean + eps[:k] * post.stddev, r.prior.mean[k:] + eps[k:] * r.prior.stddev[k:]])
    torch.testing.assert_close(r.z, expected, rtol=0, atol=1e-12)
    # The same noise, the same rollout; another row t changes z from transition t on only.
    again = ssm.rollout(y0, 8, posterior=post, sampler=noise_sampler(z=eps))
    assert torch.equal(again.states, r.states)
    other = eps.clone()
    other[5] += 1.0
    moved = ssm.rollout(y0, 8, posterior=post, sampler=noise_sampler(z=other))
    assert torch.equal(moved.z[:5], r.z[:5]) and not torch.equal(moved.z[5], r.z[5])
    assert torch.equal(moved.states[:6], r.states[:6]) and not torch.equal(moved.states[6], r.states[6])


def test_noise_sampler_draws_y0_and_casts_the_noise_to_the_distribution() -> None:
    loc, scale = torch.zeros(B, DY), torch.full((B, DY), 2.0)
    eps = torch.randn(B, DY, dtype=torch.float64)
    value = noise_sampler(y0=eps)(diag_gaussian(loc, scale), "y0")
    assert value.dtype == torch.float32 and torch.equal(value, (eps.float() * 2.0))


def test_noise_sampler_says_what_is_missing_or_misshapen() -> None:
    ssm, y0 = make_ssm(), make_y0()
    with pytest.raises(ValueError, match=r"^z: noise for 4 transitions, but the rollout asks for 5 \('z_prior' draw "):
        ssm.rollout(y0, 8, sampler=noise_sampler(z=torch.randn(4, B, DZ, dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"^z\[0\]: expected noise of the 'z_prior' distribution's shape \[4, 2\], "):
        ssm.rollout(y0, 3, sampler=noise_sampler(z=torch.randn(2, B + 1, DZ, dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"^noise_sampler: a 'z_prior' draw, but no z noise was given"):
        ssm.rollout(y0, 3, sampler=noise_sampler(y0=y0))
    gaussian = diag_gaussian(torch.zeros(B, DY), torch.ones(B, DY))
    with pytest.raises(ValueError, match=r"^noise_sampler: a 'y0' draw, but no y0 noise was given"):
        noise_sampler(z=torch.zeros(2, B, DZ))(gaussian, "y0")
    with pytest.raises(ValueError, match=r"^y0: expected noise of the 'y0' distribution's shape \[4, 3\], got \[4\]"):
        noise_sampler(y0=torch.zeros(B))(gaussian, "y0")
    with pytest.raises(TypeError, match=r"^noise_sampler: draws diagonal Gaussians Independent\(Normal, 1\), got a "):
        noise_sampler(y0=torch.zeros(B, DY))(Normal(torch.zeros(B, DY), 1.0), "y0")
    with pytest.raises(
        TypeError,
        match=r"^z: expected standard-normal noise, a floating-point tensor, or None, got "
        r"tensor of dtype torch.int64",
    ):
        noise_sampler(z=torch.zeros(2, B, DZ, dtype=torch.long))
    with pytest.raises(TypeError, match=r"^y0: expected standard-normal noise, .* got list"):
        noise_sampler(y0=[0.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^z: expected noise of one row per transition, \(T', \.\.\., Dz\), got "):
        noise_sampler(z=torch.zeros(DZ))


def test_a_float16_model_samples_with_the_default_sampler() -> None:
    """A float16 model's prior keeps its scale (so its draws) in float32; the default sampler gave the rollout
    float32 draws, which it refused as the sampler's fault ("expected a draw in the dtype of y0"), though no sampler
    was passed. Its draws now come in float16, the values of the float32 draws rounded; a custom sampler's float32
    draw is still refused."""
    ssm = LatentSSM(ResidualCell(MLPField(4, 2, 16, 2), 4, 2, 2), ConditionalGaussianPrior(MLP(4, 16, 4, 2))).half()
    y0 = torch.randn(3, 4).half()
    with torch.no_grad():
        torch.manual_seed(0)
        r = ssm.rollout(y0, 6)
        torch.manual_seed(0)
        rounded = ssm.rollout(y0, 6, sampler=lambda d, role: default_sampler()(d, role).half())
    assert r.z.dtype == r.states.dtype == torch.float16
    assert torch.equal(r.z, rounded.z) and torch.equal(r.states, rounded.states)
    with pytest.raises(TypeError, match=r"sampler: expected a draw in the dtype of y0, torch.float16"):
        ssm.rollout(y0, 6, sampler=default_sampler())


def test_noise_sampler_is_refused_by_a_masked_rollout_and_rounds_to_a_float16_mean() -> None:
    """A posterior_mask makes the rollout draw the prior of the observed transitions too: with one row per
    transition the rows would be misread (predicted step t took row t + L), so it is refused. A float16 model's
    prior keeps its scale in float32: the draw comes in the mean's float16, which the rollout takes."""
    ssm, y0, k = make_ssm(), make_y0(), 3
    eps = torch.randn(7, B, DZ, dtype=torch.float64)
    mask = torch.ones(k, B, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"^sampler: a noise_sampler reads one row of z per transition, but a rollout"):
        ssm.rollout(y0, 8, posterior=make_posterior(k), posterior_mask=mask, sampler=noise_sampler(z=eps))
    half = LatentSSM(ResidualCell(MLPField(4, 2, 16, 2), 4, 2, 2), ConditionalGaussianPrior(MLP(4, 16, 4, 2))).half()
    noise = torch.randn(5, 3, 2)
    with torch.no_grad():
        r = half.rollout(torch.randn(3, 4).half(), 6, sampler=noise_sampler(z=noise))
    assert r.prior is not None and r.prior.stddev.dtype == torch.float32 and r.z.dtype == torch.float16
    assert torch.equal(r.z, (r.prior.mean.float() + noise * r.prior.stddev).half())


def test_a_subclass_that_extends_rollout_is_called_with_its_own_arguments() -> None:
    """``ssm(...)`` passes its keyword arguments on to ``rollout`` as they come (type checkers see rollout's)."""

    calls: list[bool] = []

    class Counted(LatentSSM):
        def rollout(self, y0: torch.Tensor, n_frames: int, *, count: bool = False, **kwargs: Any) -> Rollout:
            calls.append(count)
            return super().rollout(y0, n_frames, **kwargs)

    ssm = make_ssm()
    counted = Counted(ssm.cell, ssm.prior)
    r = counted(make_y0(), 3, count=True, sample=False)  # type: ignore[call-arg]
    assert calls == [True] and r.n_frames == 3
