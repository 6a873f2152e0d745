"""LatentSSM.rollout(posterior_mask=...): per sequence and per step, z from the posterior or from the prior
(missing observations, sequences conditioned on different numbers of frames)."""

from __future__ import annotations

import pytest
import torch
from contracts import HostReads, seeded
from problems import TimeModulatedField
from torch.distributions import Independent, Normal, kl_divergence

from latentdyn.cells import ResidualCell
from latentdyn.distributions import ConditionalGaussianPrior, diag_gaussian, index_steps
from latentdyn.fields import MLPField
from latentdyn.nn import MLP
from latentdyn.objectives import kl_per_sequence
from latentdyn.ssm import LatentSSM

DY, DZ, DU, B = 3, 2, 2, 4
L, T = 5, 8  # posterior steps z_1..z_5 (frames 0..5 observed), 8 frames: z_6, z_7 predicted

# Columns are sequences, rows the posterior steps z_1..z_5 (row t−1 for z_t):
# sequence 0 conditioned on 4 frames (z_1..z_3), sequence 1 on 2 frames (z_1), sequence 2 misses frame 3 (z_3)
# and frame 4 is there again, sequence 3 observes every frame.
MIXED = torch.tensor(
    [
        [1, 1, 1, 1],
        [1, 0, 1, 1],
        [1, 0, 0, 1],
        [0, 0, 1, 1],
        [0, 0, 1, 1],
    ],
    dtype=torch.bool,
)


def make_ssm(n: int = 2, input_size: int = 0, seed: int = 0) -> LatentSSM:
    """Residual cell on a time-dependent field (the frame index matters) and an MLP prior, float64."""
    with seeded(seed):
        field = TimeModulatedField(MLPField(DY, DZ + input_size, 16, 2))
        prior = ConditionalGaussianPrior(MLP(DY + input_size, 16, 2 * DZ, 2))
    return LatentSSM(ResidualCell(field, DY, DZ + input_size, n), prior, input_size=input_size).double()


def make_posterior(length: int = L, seed: int = 1) -> Independent:
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(length, B, DZ, generator=g, dtype=torch.float64)
    scale = 0.5 + torch.rand(length, B, DZ, generator=g, dtype=torch.float64)
    return diag_gaussian(loc, scale)


def make_y0(seed: int = 2) -> torch.Tensor:
    return torch.randn(B, DY, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def by_hand(
    ssm: LatentSSM,
    y0: torch.Tensor,
    q: Independent,
    mask: torch.Tensor,
    n_frames: int,
    n_observed: int,
    *,
    t0: int = 0,
    inputs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The expected means rollout, sequence by sequence and frame by frame, without the rollout loop: z_t is the
    posterior mean where frame t is observed and the mask is True, else the prior's mean on that sequence's own
    y_{t−1} (and u_t); the cell steps one sequence at a time. Returns states (T, B, Dy), z (T−1, B, Dz) and the
    prior's loc and scale (T−1, B, Dz) on the states reached."""
    n = ssm.cell.n_substeps
    states, zs, locs, scales = [], [], [], []
    for b in range(y0.shape[0]):
        y = y0[b : b + 1]
        seq_states, seq_z, seq_loc, seq_scale = [y[0]], [], [], []
        for t in range(1, n_frames):
            u = None if inputs is None else inputs[t - 1, b : b + 1]
            x = y if u is None else torch.cat([y, u], dim=-1)
            assert ssm.prior is not None
            p = ssm.prior(x)
            if t < n_observed and bool(mask[t - 1, b]):
                z = q.mean[t - 1, b : b + 1]
            else:
                z = p.mean
            cond = z if u is None else torch.cat([z, u], dim=-1)
            y = ssm.cell.path(y, cond, n_substeps=n, frame=t0 + t - 1).states[-1]
            seq_states.append(y[0])
            seq_z.append(z[0])
            seq_loc.append(p.base_dist.loc[0])
            seq_scale.append(p.base_dist.scale[0])
        states.append(torch.stack(seq_states))
        zs.append(torch.stack(seq_z))
        locs.append(torch.stack(seq_loc))
        scales.append(torch.stack(seq_scale))
    return tuple(torch.stack(v, dim=1) for v in (states, zs, locs, scales))  # type: ignore[return-value]


def test_an_all_true_mask_is_the_rollout_without_a_mask() -> None:
    """Every step from the posterior: the same states and z (exactly: the posterior's z is selected as it is),
    the same prior up to rounding (evaluated per frame here, in one batched call without a mask)."""
    ssm, y0, q = make_ssm(), make_y0(), make_posterior()
    ones = torch.ones(L, B, dtype=torch.bool)
    plain = ssm.rollout(y0, T, posterior=q, sample=False, t0=3)
    masked = ssm.rollout(y0, T, posterior=q, sample=False, t0=3, posterior_mask=ones)
    assert torch.equal(masked.substates, plain.substates) and torch.equal(masked.z, plain.z)
    assert torch.equal(masked.residuals, plain.residuals)  # type: ignore[arg-type]
    assert masked.prior is not None and plain.prior is not None
    assert masked.prior.batch_shape == (T - 1, B)
    torch.testing.assert_close(masked.prior.base_dist.loc, plain.prior.base_dist.loc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(masked.prior.base_dist.scale, plain.prior.base_dist.scale, rtol=1e-12, atol=1e-12)
    assert masked.posterior is not None and masked.posterior.batch_shape == (L, B)
    assert plain.posterior_mask is None
    assert masked.posterior_mask is not None and torch.equal(masked.posterior_mask, ones)
    # Sampled, with only observed frames: the posterior is drawn first, as without a mask, so the same draws.
    with seeded(5):
        plain = ssm.rollout(y0, L + 1, posterior=q)
    with seeded(5):
        masked = ssm.rollout(y0, L + 1, posterior=q, posterior_mask=ones)
    assert torch.equal(masked.states, plain.states) and torch.equal(masked.z, plain.z)


def test_an_all_false_mask_is_the_rollout_from_the_prior_alone() -> None:
    """No step from the posterior: z of every transition from the prior, as n_observed=1 (and no posterior)
    gives, prior included; the posterior's steps are still reported, with the mask."""
    ssm, y0, q = make_ssm(), make_y0(), make_posterior()
    zeros = torch.zeros(L, B, dtype=torch.bool)
    masked = ssm.rollout(y0, T, posterior=q, sample=False, t0=1, posterior_mask=zeros)
    for expected in (
        ssm.rollout(y0, T, posterior=q, n_observed=1, sample=False, t0=1),
        ssm.rollout(y0, T, sample=False, t0=1),
    ):
        assert torch.equal(masked.substates, expected.substates) and torch.equal(masked.z, expected.z)
        assert masked.prior is not None and expected.prior is not None
        assert torch.equal(masked.prior.base_dist.loc, expected.prior.base_dist.loc)
        assert torch.equal(masked.prior.base_dist.scale, expected.prior.base_dist.scale)
    assert masked.posterior is not None and masked.posterior.batch_shape == (L, B)
    assert masked.posterior_mask is not None and not masked.posterior_mask.any()


@pytest.mark.parametrize("n_observed", [None, 4])
def test_a_mixed_mask_takes_each_sequence_and_step_from_posterior_or_prior(n_observed: int | None) -> None:
    """Ragged conditioning (4 and 2 observed frames) and a missing frame in the middle, checked against the
    sequences stepped one by one; steps at or beyond n_observed follow the prior whatever the mask says."""
    ssm, y0, q = make_ssm(n=3), make_y0(), make_posterior()
    roll = ssm.rollout(y0, T, posterior=q, n_observed=n_observed, sample=False, t0=2, posterior_mask=MIXED)
    n_obs = L + 1 if n_observed is None else n_observed
    states, z, loc, scale = by_hand(ssm, y0, q, MIXED, T, n_obs, t0=2)
    torch.testing.assert_close(roll.states, states, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(roll.z, z, rtol=1e-12, atol=1e-12)
    assert roll.prior is not None and roll.prior.batch_shape == (T - 1, B)
    torch.testing.assert_close(roll.prior.base_dist.loc, loc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(roll.prior.base_dist.scale, scale, rtol=1e-12, atol=1e-12)
    assert roll.posterior is not None and roll.posterior.batch_shape == (n_obs - 1, B)
    assert roll.posterior_mask is not None and torch.equal(roll.posterior_mask, MIXED[: n_obs - 1])
    # The mask changed something: sequence 3 (all True) as without a mask, sequences 0..2 not.
    plain = ssm.rollout(y0, T, posterior=q, n_observed=n_observed, sample=False, t0=2)
    assert torch.equal(roll.states[:, 3], plain.states[:, 3])
    assert not torch.allclose(roll.states[:, :3], plain.states[:, :3])


def test_a_mask_of_zeros_and_ones_reads_as_bools() -> None:
    """0/1 floating-point and integer masks (read as != 0), as kl_per_sequence takes them; recorded as bools."""
    ssm, y0, q = make_ssm(), make_y0(), make_posterior()
    expected = ssm.rollout(y0, T, posterior=q, sample=False, posterior_mask=MIXED)
    for mask in (MIXED.double(), MIXED.long(), MIXED.float() * 2):
        got = ssm.rollout(y0, T, posterior=q, sample=False, posterior_mask=mask)
        assert torch.equal(got.states, expected.states)
        assert got.posterior_mask is not None and got.posterior_mask.dtype == torch.bool
        assert torch.equal(got.posterior_mask, MIXED)


def test_the_sampler_draws_the_posterior_then_the_prior_of_every_transition() -> None:
    """With a mask a sampler gets the posterior's (L, B, Dz) draw and a (B, Dz) "z_prior" draw for every
    transition; its prior draws are what the masked-out steps take."""
    ssm, y0, q = make_ssm(), make_y0(), make_posterior()
    calls: list[tuple[str, torch.Size, torch.Tensor]] = []
    g = torch.Generator().manual_seed(7)

    def draw(dist: torch.distributions.Distribution, role: str) -> torch.Tensor:
        value = dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=g, dtype=torch.float64)
        calls.append((role, dist.batch_shape, value))
        return value

    roll = ssm.rollout(y0, T, posterior=q, sampler=draw, posterior_mask=MIXED)
    assert [role for role, _, _ in calls] == ["z_posterior"] + ["z_prior"] * (T - 1)
    assert calls[0][1] == (L, B) and all(shape == (B,) for _, shape, _ in calls[1:])
    post = calls[0][2]
    for t in range(1, T):
        expected = torch.where(MIXED[t - 1, :, None], post[t - 1], calls[t][2]) if t <= L else calls[t][2]
        assert torch.equal(roll.z[t - 1], expected)


def test_the_kl_of_the_observed_steps_counts_only_the_masked_in_steps() -> None:
    """kl_per_sequence(r.posterior, index_steps(r.prior, slice(0, L)), mask=r.posterior_mask), written from the
    rollout alone, against the KL of the selected steps only, each against the prior on the states reached."""
    ssm, y0, q = make_ssm(), make_y0(), make_posterior()
    roll = ssm.rollout(y0, T, posterior=q, posterior_mask=MIXED)  # sampled: the states reached matter
    assert roll.posterior is not None and roll.prior is not None
    kl = kl_per_sequence(roll.posterior, index_steps(roll.prior, slice(0, L)), mask=roll.posterior_mask)
    assert ssm.prior is not None
    expected = torch.zeros(B, dtype=torch.float64)
    for t in range(1, L + 1):
        for b in range(B):
            if MIXED[t - 1, b]:
                p = ssm.prior(roll.states[t - 1, b])  # p(z_t | y_{t−1}) of sequence b, recomputed
                q_tb = Normal(q.base_dist.loc[t - 1, b], q.base_dist.scale[t - 1, b])
                expected[b] += kl_divergence(q_tb, p.base_dist).sum()
    torch.testing.assert_close(kl, expected, rtol=1e-12, atol=1e-12)
    assert (kl > 0).all()  # every sequence has an observed step


@pytest.mark.parametrize("sample", [True, False])
def test_nan_posterior_parameters_where_masked_out_reach_nothing(sample: bool) -> None:
    """The posterior of padding (NaN loc and scale) where the mask is False: finite states and z, and finite
    gradients, zero for the posterior's parameters at those steps (they were not used) and not elsewhere."""
    ssm, y0, q = make_ssm(), make_y0(), make_posterior()
    loc = q.base_dist.loc.clone().masked_fill(~MIXED[..., None], float("nan")).requires_grad_()
    scale = q.base_dist.scale.clone().masked_fill(~MIXED[..., None], float("nan")).requires_grad_()
    padded = Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)
    with seeded(3):
        roll = ssm.rollout(y0, T, posterior=padded, sample=sample, posterior_mask=MIXED)
    assert torch.isfinite(roll.substates).all() and torch.isfinite(roll.z).all()
    assert roll.prior is not None and torch.isfinite(roll.prior.base_dist.loc).all()
    (roll.states.square().sum() + roll.z.square().sum()).backward()
    assert loc.grad is not None and torch.isfinite(loc.grad).all()
    assert (loc.grad[~MIXED] == 0).all() and (loc.grad[MIXED] != 0).all()
    if sample:
        assert scale.grad is not None and torch.isfinite(scale.grad).all()
        assert (scale.grad[~MIXED] == 0).all() and (scale.grad[MIXED] != 0).all()
    else:
        assert scale.grad is None  # means only: the scale is not used
    for name, param in ssm.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name

    # The KL of the observed steps with the rollout's mask: finite, and so are all gradients through it.
    loc.grad = scale.grad = None
    ssm.zero_grad()
    with seeded(3):
        roll = ssm.rollout(y0, T, posterior=padded, sample=sample, posterior_mask=MIXED)
    assert roll.prior is not None and roll.posterior is not None
    kl = kl_per_sequence(roll.posterior, index_steps(roll.prior, slice(0, L)), mask=roll.posterior_mask)
    assert torch.isfinite(kl).all()
    (kl.sum() + roll.states.square().sum()).backward()
    for grad in (loc.grad, scale.grad):
        assert grad is not None and torch.isfinite(grad).all() and (grad[~MIXED] == 0).all()
    for name, param in ssm.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_exogenous_inputs_reach_the_prior_where_the_mask_is_false() -> None:
    """With inputs the prior of a masked-out step reads [y_{t−1}, u_t] and the cell [z_t, u_t]."""
    ssm, y0, q = make_ssm(input_size=DU), make_y0(), make_posterior()
    u = torch.randn(T - 1, B, DU, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    roll = ssm.rollout(y0, T, posterior=q, sample=False, inputs=u, t0=1, posterior_mask=MIXED)
    states, z, loc, scale = by_hand(ssm, y0, q, MIXED, T, L + 1, t0=1, inputs=u)
    torch.testing.assert_close(roll.states, states, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(roll.z, z, rtol=1e-12, atol=1e-12)
    assert roll.prior is not None
    torch.testing.assert_close(roll.prior.base_dist.loc, loc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(roll.prior.base_dist.scale, scale, rtol=1e-12, atol=1e-12)
    # The inputs matter at the masked-out steps: other inputs, another z there.
    other = ssm.rollout(y0, T, posterior=q, sample=False, inputs=u + 1, t0=1, posterior_mask=MIXED)
    assert (other.z[:L][~MIXED] != roll.z[:L][~MIXED]).all()
    assert torch.equal(other.z[:L][MIXED], roll.z[:L][MIXED])


def test_a_model_without_noise_accepts_a_mask_that_changes_nothing() -> None:
    """Dz = 0: z is empty, a posterior over it is taken (event (0,)), and so is its mask, which has nothing
    to choose; it is recorded like any other."""
    with seeded(0):
        cell = ResidualCell(TimeModulatedField(MLPField(DY, DU, 16, 2)), DY, DU, 2)
    ssm = LatentSSM(cell, None, input_size=DU).double()
    y0 = make_y0()
    u = torch.randn(T - 1, B, DU, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    q = diag_gaussian(torch.zeros(L, B, 0, dtype=torch.float64), torch.ones(L, B, 0, dtype=torch.float64))
    plain = ssm.rollout(y0, T, posterior=q, inputs=u)
    masked = ssm.rollout(y0, T, posterior=q, inputs=u, posterior_mask=MIXED)
    assert torch.equal(masked.substates, plain.substates) and masked.z.shape == (T - 1, B, 0)
    assert masked.prior is None
    assert masked.posterior_mask is not None and torch.equal(masked.posterior_mask, MIXED)


def test_posterior_mask_refusals_name_the_argument() -> None:
    ssm, y0, q = make_ssm(), make_y0(), make_posterior()
    with pytest.raises(TypeError, match=r"^posterior_mask: expected a bool or 0/1 tensor or None, got list$"):
        ssm.rollout(y0, T, posterior=q, posterior_mask=MIXED.tolist())  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"^posterior_mask: expected a bool or 0/1 real tensor, got dtype torch\.complex64"
    ):
        ssm.rollout(y0, T, posterior=q, posterior_mask=MIXED.to(torch.complex64))
    with pytest.raises(
        ValueError,
        match=r"^posterior_mask: expected a posterior to go with it \(the mask says which of its steps give z\), "
        r"got posterior=None and a mask of shape \[5, 4\]; pass posterior=q, or no mask$",
    ):
        ssm.rollout(y0, T, posterior_mask=MIXED)
    with pytest.raises(
        ValueError, match=r"^posterior_mask: expected the posterior's batch shape \(L, B\) = \[5, 4\], got \[5\]$"
    ):
        ssm.rollout(y0, T, posterior=q, posterior_mask=MIXED[:, 0])
    frames = torch.ones(L + 1, B, dtype=torch.bool)
    with pytest.raises(
        ValueError,
        match=r"^posterior_mask: expected the posterior's batch shape \(L, B\) = \[5, 4\], got \[6, 4\]; a \(T, B\) "
        r"mask of observed frames gives the posterior's steps as mask\[1:\]",
    ):
        ssm.rollout(y0, T, posterior=q, posterior_mask=frames)
    with pytest.raises(ValueError, match=r"got \[4, 5\]; is it transposed\? steps come first"):
        ssm.rollout(y0, T, posterior=q, posterior_mask=MIXED.T)
    with pytest.raises(ValueError, match=r"got \[5, 4, 1\]; one entry per step and sequence: drop the trailing axis"):
        ssm.rollout(y0, T, posterior=q, posterior_mask=MIXED[..., None])
    # A model without a prior: refused whatever the values (an all-True mask too), which are not read.
    no_prior = LatentSSM(ssm.cell)
    for mask in (MIXED, torch.ones(L, B, dtype=torch.bool)):
        with pytest.raises(
            ValueError,
            match=r"^posterior_mask: this model has no prior, so a step the mask leaves out \(False\) would have no "
            r"distribution to draw z from; a mask is refused for such a model whatever its values",
        ):
            no_prior.rollout(y0, L + 1, posterior=q, posterior_mask=mask)
    assert no_prior.rollout(y0, L + 1, posterior=q).posterior_mask is None  # (without a mask, as before)


def test_a_masked_rollout_and_its_kl_read_no_values_back_to_the_host() -> None:
    """The mask's values are never read (no sync per frame on a GPU, and vmap and compile can trace it)."""
    ssm, y0, q = make_ssm(), make_y0(), make_posterior()
    mask = MIXED.double()
    ssm.rollout(y0, T, posterior=q, posterior_mask=mask)  # warm-up
    spy = HostReads()
    with spy:
        roll = ssm.rollout(y0, T, posterior=q, posterior_mask=mask)
        kl = kl_per_sequence(roll.posterior, index_steps(roll.prior, slice(0, L)), mask=roll.posterior_mask)
        (roll.states.sum() + kl.sum()).backward()
    assert spy.seen == [], spy.seen


def test_masked_rollouts_under_vmap_and_compile() -> None:
    """vmap over several masks of one batch (as over ensembles), and torch.compile with fullgraph=True: the mask
    picks z with torch.where, with no branch on its values."""
    ssm, y0, q = make_ssm(), make_y0(), make_posterior()
    masks = torch.stack([MIXED, ~MIXED, torch.ones_like(MIXED)])

    def states(mask: torch.Tensor) -> torch.Tensor:
        return ssm(y0, T, posterior=q, sample=False, posterior_mask=mask).states

    batched = torch.func.vmap(states)(masks)
    for k in range(masks.shape[0]):
        torch.testing.assert_close(batched[k], states(masks[k]), rtol=1e-12, atol=1e-12)
    if not hasattr(torch.compiler, "is_compiling"):  # torch 2.2's dynamo cannot trace the mask's is_complex()
        return
    try:
        torch._dynamo.reset()
        compiled = torch.compile(states, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(MIXED), states(MIXED), rtol=1e-12, atol=1e-12)
    finally:
        torch._dynamo.reset()


def test_the_recorded_mask_is_a_copy_of_the_callers() -> None:
    """A loader that reuses its mask's buffer for the next batch must not rewrite an earlier rollout's record."""
    ssm, y0, q = make_ssm(), make_y0(), make_posterior()
    mask = MIXED.clone()
    roll = ssm.rollout(y0, T, posterior=q, sample=False, posterior_mask=mask)
    mask.fill_(False)
    assert roll.posterior_mask is not None and torch.equal(roll.posterior_mask, MIXED)


@pytest.mark.parametrize("cell_kind", ["residual", "gru", "mlp"])
@pytest.mark.parametrize("masked", [False, True])
def test_a_lower_precision_posterior_drives_every_cell_in_the_states_dtype(cell_kind: str, masked: bool) -> None:
    """A bfloat16 posterior (autocast heads) for float32 states: accepted by the docstring, but nn.GRUCell does not
    promote its input, so a GRU model failed inside torch. The draw is cast up exactly: the rollout is the one
    with the posterior given in float32, and z is float32 with a mask or without."""
    from latentdyn.cells import GRUCell, MLPCell

    with seeded(5):
        cell = {
            "residual": lambda: ResidualCell(MLPField(DY, DZ, 16, 2), DY, DZ, 2),
            "gru": lambda: GRUCell(DY, DZ),
            "mlp": lambda: MLPCell(DY, DZ, 16, 2),
        }[cell_kind]()
        ssm = LatentSSM(cell, ConditionalGaussianPrior(MLP(DY, 16, 2 * DZ, 2)))
    y0 = make_y0().float()
    q = make_posterior()
    low = diag_gaussian(q.base_dist.loc.bfloat16(), q.base_dist.scale.bfloat16())
    exact = diag_gaussian(low.base_dist.loc.float(), low.base_dist.scale.float())
    mask = MIXED if masked else None
    got = ssm.rollout(y0, T, posterior=low, sample=False, posterior_mask=mask)
    expected = ssm.rollout(y0, T, posterior=exact, sample=False, posterior_mask=mask)
    assert got.z.dtype == torch.float32 and got.states.dtype == torch.float32
    assert torch.equal(got.z, expected.z) and torch.equal(got.states, expected.states)
