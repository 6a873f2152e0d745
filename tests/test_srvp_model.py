"""Tests of the SRVP example model (examples/srvp/model.py) at tiny sizes, and a smoke test of its demo.

Fidelity to the official code is tested in ``test_official.py``; here: every variant trains and predicts,
sub-steps, batched prediction, content and skip frames, loss reductions and input errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from contracts import HostReads
from einops import rearrange
from shared_fixtures import calibrated, frames
from torch.distributions import Distribution, Normal, kl_divergence

from examples.srvp.config import ModelConfig, config_to_dict
from examples.srvp.model import SRVP, Encoded
from latentdyn.cells import ODECell, ResidualCell
from latentdyn.encoders.content import select_frames
from latentdyn.integrators import by_name

SIZE = 32
TINY: dict[str, Any] = dict(
    image_size=SIZE,
    channels=1,
    conv_width=4,
    code_size=8,
    state_size=3,
    noise_size=2,
    n_inference_frames=2,
    inference_hidden=8,
    inference_layers=2,
    residual_hidden=8,
    residual_layers=2,
)


def tiny(**overrides: Any) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


class FixedNoise:
    """Sampler drawing mean + std·ε with ε from its own seeded generator, in call order."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, dist: Distribution, role: str) -> torch.Tensor:
        eps = torch.randn(dist.mean.shape, generator=self.generator, dtype=dist.mean.dtype)
        return dist.mean + dist.stddev * eps


@pytest.fixture(autouse=True)
def _isolated_global_rng() -> Iterator[None]:
    """Constructors, inputs and default sampling use the global RNG: seed it per test and restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


# ------------------------------------------------------------------------------------------- variants
VARIANTS: dict[str, dict[str, Any]] = {
    "residual": {},
    "mlp": dict(transition="mlp"),
    "gru": dict(transition="gru"),
    "rk4": dict(integrator="rk4", n_substeps=2),
    "dopri5": dict(integrator="dopri5"),
    "no-content": dict(use_content=False),
    "no-noise": dict(use_noise=False, noise_size=0),
    "skips-dcgan": dict(skip_connections=True, architecture="dcgan"),
    "skips-vgg": dict(skip_connections=True, architecture="vgg"),
    "substeps-3": dict(n_substeps=3),
    "dcgan-64": dict(image_size=64),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_trains_and_predicts(name: str) -> None:
    config = tiny(**VARIANTS[name])
    model = SRVP(config).init_weights()
    if config.integrator == "dopri5":
        # Loose tolerances keep the adaptive solver fast; ModelConfig has no tolerance fields.
        cell = model.ssm.cell
        assert isinstance(cell, ODECell)
        cell.integrator = by_name("dopri5", rtol=1e-3, atol=1e-4)
    t, b = 4, 2
    x = frames(t, b, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    terms, out = model(x)
    assert out.frames.shape == x.shape
    assert torch.isfinite(terms.total)
    terms.total.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"zero gradient for {pname}"
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert all(not torch.equal(p0, p) for p0, p in zip(before, model.parameters()))

    model.eval()
    with torch.no_grad():
        pred = model.predict(x[:2], 3, n_samples=2)
    c, h = config.channels, config.image_size
    assert pred.frames.shape == (2, 3, b, c, h, h)
    assert pred.cond_frames.shape == (2, 2, b, c, h, h)
    assert pred.states.shape == (2, 3, b, config.state_size)
    assert torch.isfinite(pred.frames).all()
    # The rollout records exactly one z per transition (none without noise).
    assert pred.future_rollout.z.shape == (3, 2 * b, config.z_size)


def test_official_variant_has_the_paper_structure() -> None:
    """Without noise there is no q(z) and no prior; without content the decoder reads y only."""
    model = SRVP(tiny(use_noise=False, noise_size=0, use_content=False))
    assert model.q_z is None and model.ssm.prior is None and model.content is None
    x = frames(3, 2, model.config)
    terms, out = model(x)
    assert out.w is None and out.content_indices is None
    assert float(terms.kl_z) == 0.0


# ------------------------------------------------------------------------------------------- sub-steps
def test_three_substeps_one_frame_per_step_and_z_held() -> None:
    """n_substeps = 3: exactly one state per frame time, z constant over each frame's sub-steps.

    The official code builds its sub-step grid with ``numpy.linspace(dt, T-1, (T-1)/dt)`` and keeps a state
    when ``t.is_integer()``. With dt = 1/3 most integer times come out as 0.999…/1.000…1, so states are
    dropped and ``ceil`` schedules z one sub-step late (SPEC §1.8). The integer sub-step counter makes
    every frame time exact; this test checks the resulting shapes and z schedule.
    """
    config = tiny(n_substeps=3)
    model = SRVP(config).init_weights().train()
    calls: list[tuple[float, torch.Tensor]] = []
    cell = model.ssm.cell
    assert isinstance(cell, ResidualCell)
    field = cell.field

    def record(module: Any, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        t, _, cond = args
        calls.append((float(t), cond.detach().clone()))

    handle = field.register_forward_hook(record)
    t_frames, b = 5, 2
    x = frames(t_frames, b, config)
    terms, out = model(x)
    handle.remove()
    roll = out.rollout
    assert out.frames.shape == (t_frames, b, 1, SIZE, SIZE)
    assert roll.states.shape == (t_frames, b, config.state_size)
    assert roll.substates.shape[0] == 3 * (t_frames - 1) + 1
    assert roll.residuals is not None and roll.residuals.shape[0] == 3 * (t_frames - 1)
    assert roll.z.shape == (t_frames - 1, b, config.noise_size)
    assert torch.equal(roll.states[-1], roll.substates[-1])
    assert len(calls) == 3 * (t_frames - 1)
    for i, (time, cond) in enumerate(calls):
        frame, j = divmod(i, 3)
        assert time == pytest.approx(frame + j / 3, abs=1e-6)
        assert torch.equal(cond, roll.z[frame]), f"sub-step {i} does not use z of frame {frame}"
    assert torch.isfinite(terms.total)
    # Decoding every sub-step gives (T−1)·3 + 1 frames, the frame times being every third one.
    with torch.no_grad():
        model.eval()
        sub = model.infer(x, sample=False, decode_substeps=True)
        plain = model.infer(x, sample=False)
    assert sub.frames.shape[0] == 3 * (t_frames - 1) + 1
    torch.testing.assert_close(sub.frames[::3], plain.frames, atol=1e-6, rtol=1e-5)


def test_prediction_with_finer_substeps() -> None:
    """Trained with 2 sub-steps, predicted with 4: twice as many intermediate frames, same frame times."""
    config = tiny(n_substeps=2, skip_connections=True)
    model = SRVP(config).init_weights().eval()
    t_f, b = 3, 2
    cond = frames(3, b, config)
    with torch.no_grad():
        p4_sub = model.predict(cond, t_f, 2, n_substeps=4, substep_frames=True, sampler=FixedNoise(1))
        p2_sub = model.predict(cond, t_f, 2, n_substeps=2, substep_frames=True, sampler=FixedNoise(1))
        p4 = model.predict(cond, t_f, 2, n_substeps=4, sampler=FixedNoise(1))
        p2 = model.predict(cond, t_f, 2, sampler=FixedNoise(1))
    assert p4_sub.frames.shape == (2, t_f * 4, b, 1, SIZE, SIZE)
    assert p2_sub.frames.shape == (2, t_f * 2, b, 1, SIZE, SIZE)
    assert p4.frames.shape == (2, t_f, b, 1, SIZE, SIZE)
    # Frame j of the sub-step output is at time nt_cond − 1 + (j + 1)/n: every n-th one is a frame time.
    torch.testing.assert_close(p4_sub.frames[:, 3::4], p4.frames, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(p2_sub.frames[:, 1::2], p2.frames, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(p4_sub.states, p4.states)
    # The future rollout starts at the time of the last conditioning frame, nt_cond − 1, so its sub-step j is
    # at time nt_cond − 1 + j/n and Rollout.at is queried in absolute frame times.
    tc = cond.shape[0]
    sub_times = torch.tensor([tc - 1 + j / 4 for j in range(t_f * 4 + 1)], dtype=torch.float64)
    torch.testing.assert_close(p4_sub.future_rollout.times(), sub_times)
    torch.testing.assert_close(p4.future_rollout.at([tc - 1])[0], p4.cond_rollout.states[-1])
    last = rearrange(p4.states[:, -1], "n b d -> (n b) d")
    torch.testing.assert_close(p4.future_rollout.at([tc - 1 + t_f])[0], last)
    assert p4.cond_rollout.n_substeps == p2.cond_rollout.n_substeps == 2
    assert p4.future_rollout.n_substeps == 4
    torch.testing.assert_close(p4.cond_frames, p2.cond_frames)
    # Same noise, different Δt: the first transition starts from the same state with the same z, yet the
    # Euler paths differ, so the sub-step count is really used.
    torch.testing.assert_close(p4.future_rollout.z[0], p2.future_rollout.z[0])
    assert not torch.allclose(p4.states, p2.states, atol=1e-6)


# ------------------------------------------------------------------------------------------- prediction
def test_predict_batches_samples_and_conditions_on_the_last_frames() -> None:
    config = tiny(skip_connections=True)
    tc, b, n, k = 3, 2, 4, config.n_inference_frames
    cond = frames(tc, b, config)
    model = calibrated(SRVP(config).init_weights(), cond)
    q_y_batches: list[int] = []
    encoder_calls: list[int] = []
    h1 = model.q_y.register_forward_hook(lambda m, args, out: q_y_batches.append(args[0].shape[1]))
    h2 = model.encoder.register_forward_hook(lambda m, args, out: encoder_calls.append(args[0].shape[0]))
    with torch.no_grad():
        pred = model.predict(cond, 2, n_samples=n)
    h1.remove()
    h2.remove()
    # One pass for all N samples: the frames are encoded once, q(y_0) is evaluated once on N·B sequences.
    assert encoder_calls == [tc * b]
    assert q_y_batches == [n * b]
    # The posterior is re-sampled per sample: different y_0 (and z) for the same sequence.
    y0 = rearrange(pred.cond_rollout.states[0], "(n b) d -> n b d", n=n)
    for s in range(1, n):
        assert not torch.allclose(y0[0], y0[s])
    z = rearrange(pred.cond_rollout.z, "t (n b) d -> n t b d", n=n)
    assert not torch.allclose(z[0], z[1])
    # w from the last k conditioning frames, skips from the last one: decode the states with them.
    with torch.no_grad():
        enc = model.encode(cond)
        last = torch.arange(tc - k, tc)[:, None].expand(k, b)
        w = model.infer_content(enc.codes, last)
        w_first = model.infer_content(enc.codes, torch.arange(k)[:, None].expand(k, b))
        skips = [s[-1] for s in enc.skips]
        cond_states = rearrange(pred.cond_rollout.states, "t (n b) d -> n t b d", n=n)
        for s in range(n):
            torch.testing.assert_close(pred.frames[s], model.decode(pred.states[s], w, skips), atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(
                pred.cond_frames[s], model.decode(cond_states[s], w, skips), atol=1e-6, rtol=1e-5
            )
        assert not torch.allclose(pred.frames[0], model.decode(pred.states[0], w_first, skips), atol=1e-6)
        # In eval mode, infer_content's default picks the same last k frames.
        torch.testing.assert_close(model.infer_content(enc.codes), w)
    # The future starts from the last conditioning state.
    torch.testing.assert_close(pred.future_rollout.states[0], pred.cond_rollout.states[-1])


def test_predict_clamps_frames_to_unit_interval() -> None:
    model = SRVP(tiny()).init_weights().eval()
    # Push the decoder output beyond [0, 1] (the sigmoid alone never leaves it).
    model.decoder.register_forward_hook(lambda m, args, out: out + torch.linspace(-2, 2, out.numel()).view_as(out))
    with torch.no_grad():
        pred = model.predict(frames(2, 2, model.config), 2, n_samples=2)
        raw = model.infer(frames(2, 2, model.config)).frames
    assert raw.min() < 0 and raw.max() > 1
    for f in (pred.frames, pred.cond_frames):
        assert f.min() == 0 and f.max() == 1


# ---------------------------------------------------------------------------------- content and skips
def test_content_frames_training_vs_eval() -> None:
    config = tiny(n_inference_frames=3, skip_connections=True)
    model = SRVP(config).init_weights()
    t, k, b = 6, 3, 500
    model.train()
    idx = model.content_indices(t, b, torch.device("cpu"))
    assert idx.shape == (k, b)
    assert all(len(set(col.tolist())) == k for col in idx.T), "content frames must be distinct"
    assert idx.min() >= 0 and idx.max() < t
    # Uniform over the whole clip: each frame is chosen with probability k/T (std of the estimate 0.022).
    freq = torch.stack([(idx == f).any(0).float().mean() for f in range(t)])
    assert (freq - k / t).abs().max() < 0.1, freq
    assert len({tuple(col.tolist()) for col in idx.T}) > 10, "not drawn independently per sequence"
    # Skip frame: uniform over all T frames, independently per sequence.
    enc = Encoded(torch.zeros(t, b, 1), [torch.arange(t).float()[:, None, None, None, None].expand(t, b, 1, 1, 1)])
    skips, skip_index = model.skip_frames(enc)
    assert skip_index is not None
    assert torch.equal(skips[0][:, 0, 0, 0], skip_index.float())
    counts = torch.bincount(skip_index, minlength=t).float() / b
    assert (counts - 1 / t).abs().max() < 0.07, counts

    # infer wires them: w from the drawn frames, skips from the drawn frame.
    x = frames(t, 2, config)
    out = model.infer(x)
    assert out.content_indices is not None and out.skip_index is not None
    with torch.no_grad():
        codes = model.encode(x).codes  # same batch, same BatchNorm statistics
        torch.testing.assert_close(out.w, model.content(select_frames(codes, out.content_indices)))  # type: ignore[misc]

    model.eval()
    idx = model.content_indices(t, 4, torch.device("cpu"))
    assert torch.equal(idx, torch.arange(t - k, t)[:, None].expand(k, 4))
    _, skip_index = model.skip_frames(Encoded(enc.codes[:, :4], [s[:, :4] for s in enc.skips]))
    assert skip_index is not None and skip_index.tolist() == [t - 1] * 4
    out = model.infer(x)
    assert out.content_indices is not None and out.skip_index is not None
    assert out.content_indices[:, 0].tolist() == [3, 4, 5]
    assert out.skip_index.tolist() == [t - 1, t - 1]


# ---------------------------------------------------------------------------------------------- loss
def test_encoder_is_trained_through_both_posteriors() -> None:
    """q(y_0 | x_1:k) and q(z_t | x_1:t) read the encoder's codes differentiably (the paper trains h_phi
    through both posteriors): each distribution's parameters have a non-zero gradient in the encoder."""
    config = tiny()
    model = SRVP(config).init_weights()
    out = model.infer(frames(4, 2, config))
    assert out.rollout.posterior is not None
    params = list(model.encoder.parameters())
    for name, dist in (("q_y0", out.q_y0), ("q_z", out.rollout.posterior)):
        base = dist.base_dist
        grads = torch.autograd.grad(base.loc.sum() + base.scale.sum(), params, allow_unused=True, retain_graph=True)
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), name


def test_loss_terms_against_manual_float64_recomputation() -> None:
    config = tiny(obs_scale=0.7, beta_y=0.5, beta_z=2.0, residual_weight=3.0, n_substeps=2)
    model = SRVP(config).init_weights().train()
    t, b = 4, 3
    x = frames(t, b, config)
    terms, out = model(x)
    roll = out.rollout
    assert roll.posterior is not None and roll.prior is not None and roll.residuals is not None

    def normal(d: Distribution) -> Normal:
        return Normal(d.mean.detach().double(), d.stddev.detach().double())

    nll = -Normal(out.frames.detach().double(), 0.7).log_prob(x.double()).sum(dim=(0, 2, 3, 4))
    kl_y = kl_divergence(normal(out.q_y0), Normal(0.0, 1.0)).sum(-1)
    assert roll.posterior.batch_shape == roll.prior.batch_shape == (t - 1, b)
    kl_z = kl_divergence(normal(roll.posterior), normal(roll.prior)).sum(-1).sum(0)
    residual = roll.residuals.detach().double().norm(dim=-1).sum(0)
    assert roll.residuals.shape[0] == 2 * (t - 1)  # one term per Euler sub-step
    expected = {
        "nll": nll.mean(),
        "kl_y": kl_y.mean(),
        "kl_z": kl_z.mean(),
        "residual": residual.mean(),
        "total": (nll + 0.5 * kl_y + 2.0 * kl_z + 3.0 * residual).mean(),
    }
    for name, value in expected.items():
        got = getattr(terms, name).detach()
        assert got.dtype == torch.float32 and got.dim() == 0
        assert float(got) == pytest.approx(float(value), rel=1e-5), name
    # The prior of the KL is evaluated along the inferred trajectory, on the integer-time states.
    prior = model.ssm.prior(roll.states[:-1])  # type: ignore[misc]
    torch.testing.assert_close(roll.prior.mean, prior.mean)


def test_residual_weight_zero_leaves_the_penalty_out() -> None:
    model = SRVP(tiny(residual_weight=0.0)).init_weights().train()
    with torch.no_grad():
        terms, _ = model(frames(3, 2, model.config))
    assert float(terms.residual) > 0
    assert float(terms.total) == pytest.approx(float(terms.nll + terms.kl_y + terms.kl_z), rel=1e-6)


# ---------------------------------------------------------------------------------------------- errors
def test_bad_frames() -> None:
    model = SRVP(tiny()).eval()
    with pytest.raises(ValueError, match=r"x: expected size 1 for axis 'c'"):
        model.infer(torch.rand(3, 2, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"x: expected size 32 for axis 'h'"):
        model.infer(torch.rand(3, 2, 1, 64, 64))
    with pytest.raises(ValueError, match=r"x: expected 5 dimensions \(t b c h w\)"):
        model.infer(torch.rand(3, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match="n_frames: expected at least the 3 given frames, got 2"):
        model.infer(torch.rand(3, 2, 1, SIZE, SIZE), 2)
    with pytest.raises(ValueError, match=r"cond_frames: expected size 32 for axis 'w'"):
        model.predict(torch.rand(3, 2, 1, SIZE, 16), 2)
    with pytest.raises(ValueError, match="cond_frames: expected at least n_inference_frames=2 frames, got 1"):
        model.predict(torch.rand(1, 2, 1, SIZE, SIZE), 2)
    with pytest.raises(ValueError, match="n_future"):
        model.predict(torch.rand(2, 2, 1, SIZE, SIZE), 0)
    with pytest.raises(ValueError, match="n_samples"):
        model.predict(torch.rand(2, 2, 1, SIZE, SIZE), 1, 0)
    with pytest.raises(TypeError, match="decode_cond: expected a bool, got int 1"):
        model.predict(torch.rand(2, 2, 1, SIZE, SIZE), 1, decode_cond=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"cond_frames: expected at least one frame of one sequence .* \[2, 0, 1"):
        model.predict(torch.rand(2, 0, 1, SIZE, SIZE), 1)


def test_infer_names_x_in_its_errors() -> None:
    """Too few frames or no sequence: the message names the argument given, not an internal one."""
    model = SRVP(tiny())
    for mode in (model.train(), model.eval()):
        with pytest.raises(ValueError, match="x: expected at least n_inference_frames=2 frames, got 1"):
            mode.infer(torch.rand(1, 2, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"x: expected at least one frame of one sequence \(T, B >= 1\), got \[4, 0"):
        model.infer(torch.rand(4, 0, 1, SIZE, SIZE))
    with pytest.raises(TypeError, match=r"skip_index: expected a torch\.Tensor, got list"):
        model.infer(torch.rand(4, 2, 1, SIZE, SIZE), skip_index=[0, 1])  # type: ignore[arg-type]


def test_loss_terms_need_frame_times() -> None:
    model = SRVP(tiny(n_substeps=2))
    x = frames(3, 2, model.config)
    out = model.infer(x, decode_substeps=True)
    with pytest.raises(ValueError, match="decode frame times only"):
        model.loss_terms(x, out)


def test_bad_configs() -> None:
    with pytest.raises(ValueError, match=r"architecture: expected one of \('dcgan', 'vgg'\), got 'resnet'"):
        tiny(architecture="resnet")
    with pytest.raises(ValueError, match=r"transition: expected one of .*got 'lstm'"):
        tiny(transition="lstm")
    with pytest.raises(ValueError, match=r"integrator: expected one of .*got 'leapfrog'"):
        tiny(integrator="leapfrog")
    with pytest.raises(ValueError, match="'mlp' is a discrete-time cell; it needs n_substeps=1"):
        tiny(transition="mlp", n_substeps=2)
    with pytest.raises(ValueError, match="'gru' is a discrete-time cell"):
        tiny(transition="gru", integrator="rk4")
    with pytest.raises(ValueError, match="'gru' takes z as its input"):
        tiny(transition="gru", use_noise=False, noise_size=0)
    with pytest.raises(ValueError, match="conv_width: expected an int >= 1, got 0"):
        tiny(conv_width=0)
    with pytest.raises(TypeError, match=r"state_size: expected an int, got int64 "):
        tiny(state_size=np.int64(3))  # config.json could not keep it
    with pytest.raises(ValueError, match=r"^image_size: expected one of the supported sizes 32, 64, 128, got 48$"):
        tiny(image_size=48)  # (refused by the encoder, once a model was built from it)
    # Tolerances that would do nothing were recorded in config.json as if they had: refused, as the discrete
    # cells' sub-steps are (the implicit Adams methods' corrector reads them).
    with pytest.raises(ValueError, match=r"^integrator_rtol: tolerances are for the torchdiffeq methods that read"):
        tiny(integrator="rk4", integrator_rtol=1e-3)
    implicit = SRVP(tiny(integrator="implicit_adams", integrator_rtol=1e-3))
    assert implicit.ssm.cell.integrator.rtol == 1e-3  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"^integrator_atol: expected a finite number > 0, got 0.0"):
        tiny(integrator="dopri5", integrator_atol=0.0)
    ode = SRVP(tiny(integrator="dopri5", integrator_rtol=1e-3, integrator_atol=1e-5, adjoint=True))
    integrator = ode.ssm.cell.integrator  # type: ignore[attr-defined]
    assert (integrator.method, integrator.rtol, integrator.atol, integrator.adjoint) == ("dopri5", 1e-3, 1e-5, True)
    for flag in ("use_noise", "use_content", "skip_connections", "adjoint"):  # "false" would read as true
        with pytest.raises(TypeError, match=f"{flag}: expected a bool, got str 'false'"):
            tiny(**{flag: "false"})
    with pytest.raises(ValueError, match=r"^noise_size: use_noise=True needs noise_size >= 1, got 0$"):
        tiny(use_noise=True, noise_size=0)
    with pytest.raises(ValueError, match="obs_scale: expected a positive standard deviation"):
        tiny(obs_scale=0.0)
    with pytest.raises(TypeError, match="config: expected a ModelConfig, got dict"):
        SRVP(TINY)  # type: ignore[arg-type]
    model = SRVP(tiny(transition="mlp")).eval()
    with pytest.raises(ValueError, match="n_substeps: MLPCell is a discrete-time cell"):
        model.predict(torch.rand(2, 1, 1, SIZE, SIZE), 2, n_substeps=2)


# ------------------------------------------------------------------------------------------------ demo
def _run_dir(tmp_path: Path, config: ModelConfig) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": config_to_dict(config), "train": {}}))
    torch.save({"model": SRVP(config).init_weights().state_dict()}, run / "checkpoints" / "best.pt")
    return run


def test_demo_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("imageio")
    from examples.srvp import demo

    config = tiny(n_substeps=2, skip_connections=True)
    run = _run_dir(tmp_path, config)
    rng = np.random.default_rng(0)
    test_set = tmp_path / "test.npz"
    np.savez(test_set, sequences=rng.integers(0, 256, (6, 3, SIZE, SIZE), dtype=np.uint8))
    out = tmp_path / "demo"
    argv = [str(run), "--test-set", str(test_set), "--out", str(out), "--n-cond", "3", "--n-future", "2"]
    assert demo.main([*argv, "--what", "all", "--clips", "0", "2", "--steps", "3"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["content_swap.gif", "frame_rate.gif", "interpolation.gif"]
    printed = capsys.readouterr().out
    assert str(out / "frame_rate.gif") in printed
    # What the GIFs show, in the code's indices and the paper's (review finding: y_0 vs the README's y_1), and
    # that the predictions of the swap start with reconstructions, where evaluate's GIF shows the truth.
    assert "(the first 3 frames of the predictions: reconstructions of the conditioning frames)" in printed
    assert "y_0 (the paper's y_1) interpolated from A to B in 3 steps" in printed

    # The grids: rows aligned on the finest grid (4 × 2 sub-steps per frame), 2 clips × 3 columns, 3 + 2 columns.
    model = SRVP(config).eval()
    clips = demo.load_clips(test_set)[:, [0, 2]]
    assert clips.shape == (6, 2, 1, SIZE, SIZE) and clips.max() <= 1
    pad = 2
    cell = SIZE + pad
    assert demo.frame_rate(model, clips[:, :1], 3, 2).shape == ((3 + 2) * 8, 4 * cell + pad, cell + pad, 3)
    assert demo.content_swap(model, clips, 3, 2).shape == (5, 2 * cell + pad, 3 * cell + pad, 3)
    assert demo.interpolation(model, clips, 3, 2, steps=3).shape == (5, cell + pad, 5 * cell + pad, 3)

    # Errors name the option.
    assert demo.main([*argv, "--what", "swap", "--clips", "0", "7"]) == 2
    assert "--clips: expected indices in [0, 2]" in capsys.readouterr().err
    assert demo.main([*argv, "--n-cond", "6"]) == 2
    assert "--n-cond" in capsys.readouterr().err
    assert demo.main([*argv, "--n-future", "4"]) == 2
    assert "--n-future" in capsys.readouterr().err
    np.savez(test_set, sequences=rng.integers(0, 256, (6, 3, 64, 64), dtype=np.uint8))
    assert demo.main(argv) == 2
    assert "the model expects [1, 32, 32]" in capsys.readouterr().err


def test_demo_errors_name_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from examples.srvp import demo

    run = _run_dir(tmp_path, tiny())
    out = tmp_path / "demo"
    test_set = tmp_path / "test.npz"
    np.savez(test_set, sequences=np.zeros((6, 3, SIZE, SIZE), dtype=np.uint8))
    other = tmp_path / "other.npz"
    np.savez(other, frames=np.zeros((6, 3, SIZE, SIZE), dtype=np.uint8))
    config = json.loads((run / "config.json").read_text())
    for argv, message in (
        (["--test-set", str(tmp_path / "missing.npz")], f"--test-set: no file at {tmp_path / 'missing.npz'}"),
        (["--test-set", str(other)], f"--test-set: {other} has no 'sequences' array (found ['frames'])"),
        (
            [],
            "--test-set: required for a Moving MNIST run (make it with: python -m examples.srvp.data smmnist-test-set",
        ),
        (["--test-set", str(test_set), "--steps", "1"], "--steps: expected at least 2 interpolation steps, got 1"),
        (["--test-set", str(test_set), "--fps", "0"], "--fps: expected a positive finite number, got 0.0"),
        (["--test-set", str(test_set), "--fps", "nan"], "--fps: expected a positive finite number, got nan"),
        (["--test-set", str(test_set), "--fps", "inf"], "--fps: expected a positive finite number, got inf"),
    ):
        assert demo.main([str(run), "--out", str(out), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and len(err.splitlines()) == 1, (argv, err)
    (run / "config.json").write_text(json.dumps({**config, "train": {"dataset": "kth"}}))
    assert demo.main([str(run), "--out", str(out)]) == 2
    assert (
        capsys.readouterr().err
        == "error: --test-set: required for this 'kth' run (its config.json names no data_dir)\n"
    )
    assert not out.exists()


def test_demo_says_what_a_model_without_sub_steps_or_content_cannot_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("imageio")
    from examples.srvp import demo

    run = _run_dir(tmp_path, tiny(transition="mlp", use_content=False, skip_connections=False))
    test_set = tmp_path / "test.npz"
    np.savez(test_set, sequences=np.random.default_rng(0).integers(0, 256, (5, 2, SIZE, SIZE), dtype=np.uint8))
    out = tmp_path / "demo"
    assert demo.main([str(run), "--test-set", str(test_set), "--out", str(out), "--n-cond", "3", "--what", "all"]) == 0
    printed = capsys.readouterr().out
    assert "framerate: skipped, the 'mlp' transition is discrete-time (no sub-steps)" in printed
    assert "swap: this model has no content variable and no skips, so both columns will be identical" in printed
    assert sorted(p.name for p in out.iterdir()) == ["content_swap.gif", "interpolation.gif"]


def test_demo_functions_under_the_callers_autocast_and_default_dtype() -> None:
    """Soak-review finding: ``demo.interpolation`` failed inside a caller's bf16 autocast (its interpolation
    weights were float32, the states bf16) and under a float64 default dtype (float64 weights, float32 states)."""
    from examples.srvp import demo

    torch.manual_seed(0)
    model = SRVP(tiny()).init_weights().eval()
    clips = torch.rand(5, 2, 1, SIZE, SIZE)
    plain = demo.interpolation(model, clips, 3, 2, steps=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert demo.interpolation(model, clips, 3, 2, steps=3).shape == plain.shape
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert np.array_equal(demo.interpolation(model, clips, 3, 2, steps=3), plain)
    finally:
        torch.set_default_dtype(default)


def test_demo_reports_a_gif_that_cannot_be_written_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from examples.srvp import demo

    run = _run_dir(tmp_path, tiny())
    test_set = tmp_path / "test.npz"
    np.savez(test_set, sequences=np.zeros((5, 2, SIZE, SIZE), dtype=np.uint8))
    gif = tmp_path / "demo" / "interpolation.gif"

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(gif))

    monkeypatch.setattr(demo, "save_gif", disk_full)
    argv = [str(run), "--test-set", str(test_set), "--out", str(gif.parent), "--n-cond", "3", "--what", "interpolate"]
    assert demo.main(argv) == 2
    assert capsys.readouterr().err == f"error: No space left on device: {gif}\n"

    def not_finite(*args: object, **kwargs: object) -> None:  # (diff review: a diverged model's frames)
        raise ValueError("frames: contains NaN")

    monkeypatch.setattr(demo, "save_gif", not_finite)
    assert demo.main(argv) == 2
    assert capsys.readouterr().err == "error: interpolation.gif could not be made: frames: contains NaN\n"


def test_reconstruct_decodes_the_posterior_means_without_drawing_noise() -> None:
    torch.manual_seed(0)
    model = SRVP(tiny()).init_weights().eval()
    x = frames(4, 2, model.config)
    with torch.no_grad():
        expected = model.infer(x, sample=False).frames.clamp(0, 1)  # the posterior means: no noise drawn
    got = model.reconstruct(x)
    torch.testing.assert_close(model.reconstruct(x), got, rtol=0, atol=0)
    assert got.shape == x.shape and float(got.min()) >= 0 and float(got.max()) <= 1
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_predict_without_conditioning_reconstructions_draws_the_same_futures() -> None:
    """decode_cond=False only skips decoding the conditioning frames: the futures are the same draws."""
    from examples.srvp.config import PRESETS

    torch.manual_seed(0)
    model = SRVP(PRESETS["tiny"]().model).init_weights().eval()
    x = torch.rand(3, 2, 1, 64, 64)
    with torch.no_grad():
        torch.manual_seed(1)
        full = model.predict(x, 4, 3)
        torch.manual_seed(1)
        lean = model.predict(x, 4, 3, decode_cond=False)
    assert full.cond_frames is not None and full.cond_frames.shape == (3, 3, 2, 1, 64, 64)
    assert lean.cond_frames is None
    torch.testing.assert_close(lean.frames, full.frames, rtol=0, atol=0)


# ------------------------------------------------------------------------------------ chunked prediction
def _chunked(model: SRVP, x: torch.Tensor, n: int, chunk: int, **kwargs: Any) -> list[Any]:
    from examples.srvp.model import predict_in_chunks

    with torch.no_grad():
        return list(predict_in_chunks(model, x, 3, n, chunk, **kwargs))


@pytest.mark.parametrize("name", ["residual", "skips-vgg", "substeps-3"])
def test_predict_in_chunks_draws_the_noise_of_one_call(name: str) -> None:
    """Whatever the chunk size, sample i gets the noise one predict call gives it for the same seed, and the
    global generator ends in the same state; chunk >= N is that one call."""
    config = tiny(**VARIANTS[name])
    x = frames(4, 2, config)
    model = calibrated(SRVP(config).init_weights(), frames(6, 4, config))
    n = 5
    with torch.no_grad():
        torch.manual_seed(3)
        full = model.predict(x, 3, n)
    after_full = torch.rand(4)
    assert full.cond_frames is not None and full.frames.std() > 0.01  # samples differ: the check has teeth
    for chunk in (1, 2, 3, n, n + 2):
        for decode_cond in (False, "first"):
            torch.manual_seed(3)
            parts = _chunked(model, x, n, chunk, decode_cond=decode_cond)
            assert torch.equal(torch.rand(4), after_full)
            starts = [part.start for part in parts]
            sizes = [part.prediction.frames.shape[0] for part in parts]
            assert starts == [sum(sizes[:i]) for i in range(len(sizes))] and sum(sizes) == n
            assert max(sizes) <= chunk and all(part.prediction.frames.shape[2] == 2 for part in parts)
            got = torch.cat([part.prediction.frames for part in parts])
            exact = chunk >= n and decode_cond is False
            torch.testing.assert_close(got, full.frames, rtol=0, atol=0 if exact else 1e-5)
            recs = [part.prediction.cond_frames for part in parts]
            if decode_cond == "first":  # sample 0 alone, with its conditioning reconstruction
                assert sizes[0] == 1 and recs[0] is not None and all(r is None for r in recs[1:])
                torch.testing.assert_close(recs[0], full.cond_frames[:1], rtol=0, atol=1e-5)
            else:
                assert all(r is None for r in recs)
    # Different chunks do hold different samples.
    assert not torch.allclose(full.frames[0], full.frames[1])


def test_predict_in_chunks_means_and_custom_samplers() -> None:
    config = tiny()
    model = calibrated(SRVP(config).init_weights(), frames(6, 4, config))
    x = frames(3, 2, config)
    with torch.no_grad():
        means = model.predict(x, 3, 4, sample=False, decode_cond=True)
    parts = _chunked(model, x, 4, 3, sample=False, decode_cond=True)
    torch.testing.assert_close(torch.cat([p.prediction.frames for p in parts]), means.frames, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        torch.cat([p.prediction.cond_frames for p in parts]), means.cond_frames, rtol=0, atol=1e-5
    )
    rows: list[int] = []

    def sampler(dist: Distribution, role: str) -> torch.Tensor:
        rows.append(dist.mean.shape[-2])
        return dist.mean

    parts = _chunked(model, x, 5, 2, sampler=sampler)
    assert [p.prediction.frames.shape[0] for p in parts] == [2, 2, 1]
    assert set(rows) == {4, 2}  # a custom sampler draws for n·B rows of each chunk


def test_predict_in_chunks_errors() -> None:
    config = tiny()
    model = SRVP(config).eval()
    x = frames(3, 2, config)
    with pytest.raises(ValueError, match=r"chunk: expected an int >= 1, got 0"):
        _chunked(model, x, 2, 0)
    with pytest.raises(TypeError, match=r"chunk: expected an int >= 1, got float 1.5"):
        _chunked(model, x, 2, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"n_samples: expected an int >= 1, got 0"):
        _chunked(model, x, 0, 1)
    with pytest.raises(ValueError, match=r"decode_cond: expected True, False or 'first', got 'all'"):
        _chunked(model, x, 2, 1, decode_cond="all")
    with pytest.raises(TypeError, match=r"decode_cond: expected a bool, got int 1"):  # 1 == True, yet read as False
        _chunked(model, x, 2, 1, decode_cond=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"cond_frames: expected 5 dimensions"):
        _chunked(model, x[0], 2, 1)


# --------------------------------------------------------------------------------- host synchronisation
@pytest.mark.parametrize("name", ["residual", "skips-vgg", "substeps-3", "no-content"])
def test_training_step_and_sampling_never_read_values_back_to_the_host(name: str) -> None:
    """The forward pass, loss, backward pass and batched sampling run without host round trips, so that a GPU
    can queue a whole step: no ``.item()``, no validation of values, no tensors made from Python data."""
    model = SRVP(tiny(**VARIANTS[name])).init_weights()
    x = frames(6, 3, model.config)
    model(x)[0].total.backward()  # warm-up (lazy initialisations)
    spy = HostReads()
    with spy:
        terms, _ = model(x)
        terms.total.backward()
    assert spy.seen == [], spy.seen
    model.eval()
    with spy, torch.inference_mode():
        model.predict(x[:3], 4, 5, decode_cond=False)
    assert spy.seen == [], spy.seen


@pytest.mark.parametrize("name", ["residual", "mlp", "rk4", "no-noise"])
def test_loss_terms_of_a_single_frame(name: str) -> None:
    """One frame: no transition, so the rollout's residuals and prior are empty and kl_z and the penalty are
    zero; the loss is the NLL and KL_y, and it trains."""
    model = SRVP(tiny(n_inference_frames=1, **VARIANTS[name])).init_weights()
    x = frames(1, 3, model.config)
    terms, out = model(x)
    roll = out.rollout
    if model.ssm.cell.has_residuals:
        assert roll.residuals is not None and roll.residuals.shape == (0, 3, model.config.state_size)
    else:
        assert roll.residuals is None
    assert terms.residual.item() == 0.0 and terms.kl_z.item() == 0.0
    assert torch.isfinite(terms.total) and terms.nll.item() > 0
    torch.testing.assert_close(terms.total, terms.nll + model.config.beta_y * terms.kl_y)
    terms.total.backward()
