"""Tests of the SVG-LP baseline (examples/srvp/svglp.py) at tiny sizes.

Shapes and loss terms of the teacher-forced pass, gradients of a training step, the image-autoregressive
generation (every generated frame goes back through the encoder, which SRVP never does), sample-major batching,
errors, and the example's commands (train, load, evaluate, the sampling benchmark) run with ``family="svglp"``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from einops import rearrange
from shared_fixtures import calibrated, frames
from torch.distributions import Distribution

from examples.srvp import evaluate as ev
from examples.srvp import train
from examples.srvp.checkpoint import load_model
from examples.srvp.config import ModelConfig
from examples.srvp.model import SRVP, build_model
from examples.srvp.svglp import SVGLP, GaussianLSTM, SVGLPConfig

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
TINY: dict[str, Any] = dict(
    image_size=SIZE,
    conv_width=4,
    code_size=8,
    noise_size=2,
    residual_hidden=8,
    inference_hidden=8,
    n_inference_frames=2,
)


def tiny(**overrides: Any) -> ModelConfig:
    return SVGLPConfig(**{**TINY, **overrides})


class Offset:
    """Sampler returning the mean plus ``offset(row)`` (row = index along the batch axis)."""

    def __init__(self, offset: Any) -> None:
        self.offset = offset

    def __call__(self, dist: Distribution, role: str) -> torch.Tensor:
        mean = dist.mean
        rows = torch.arange(mean.shape[-2], dtype=mean.dtype)
        return mean + self.offset(rows)[:, None]


class EncoderSpy:
    """Records the inputs of every call of a module's forward."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.inputs: list[torch.Tensor] = []
        self.handle = module.register_forward_pre_hook(lambda _m, args: self.inputs.append(args[0].detach().clone()))

    def frames(self) -> int:
        return sum(x.shape[0] for x in self.inputs)


@pytest.fixture(autouse=True)
def _isolated_global_rng() -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


# ------------------------------------------------------------------------------------------------- config
def test_config_has_svg_smmnist_sizes_and_overrides() -> None:
    c = SVGLPConfig()
    assert c.family == "svglp"
    # SVG's SM-MNIST model: g_dim 128, z_dim 10, rnn_size 256, 1-layer posterior/prior, 2-layer predictor, β 1e-4.
    assert (c.code_size, c.noise_size, c.residual_hidden, c.inference_hidden) == (128, 10, 256, 256)
    assert (c.inference_layers, c.residual_layers, c.beta_z) == (1, 2, 1e-4)
    assert (c.conv_width, c.image_size, c.architecture, c.skip_connections, c.n_inference_frames) == (
        64,
        64,
        "dcgan",
        True,
        5,
    )
    assert SVGLPConfig(conv_width=16).conv_width == 16
    m = SVGLP(c)
    assert isinstance(build_model(c), SVGLP)
    assert m.posterior is not None and m.prior is not None
    assert (m.posterior.lstm.num_layers, m.prior.lstm.num_layers, m.predictor.lstm.num_layers) == (1, 1, 2)
    assert m.predictor.lstm.hidden_size == 256 and m.posterior.head.out_features == 2 * 10
    assert m.decoder.in_features == 128 and m.decoder.skip


def test_bad_configs() -> None:
    with pytest.raises(TypeError, match="config: expected a ModelConfig"):
        SVGLP({"family": "svglp"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"config\.family: expected 'svglp'"):
        SVGLP(ModelConfig())
    with pytest.raises(ValueError, match="n_substeps: SVG-LP is discrete-time"):
        SVGLP(tiny(n_substeps=2))


def test_init_weights_is_svgs() -> None:
    model = SVGLP(tiny())
    assert model.init_weights() is model
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(bool((m.bias == 0).all()) for m in linears)
    w = torch.cat([m.weight.detach().flatten() for m in linears])
    assert 0.01 < float(w.std()) < 0.03
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(float((m.weight.detach() - 1).abs().max()) < 0.2 for m in bn)


# ------------------------------------------------------------------------------------------------ training
VARIANTS: dict[str, dict[str, Any]] = {
    "dcgan-skips": {},
    "vgg-skips": dict(architecture="vgg"),
    "no-skips": dict(skip_connections=False),
    "no-noise": dict(use_noise=False, noise_size=0),
    "dcgan-64": dict(image_size=64),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_trains_and_predicts(name: str) -> None:
    config = tiny(**VARIANTS[name])
    model = SVGLP(config).init_weights()
    t, b = 5, 3
    x = frames(t, b, config)
    terms, out = model(x)
    assert set(terms._fields) == {"nll", "kl_y", "kl_z", "residual", "total"}
    assert out.frames.shape == (t - 1, b, 1, config.image_size, config.image_size)
    assert out.codes.shape == (t, b, 8) and out.predicted_codes.shape == (t - 1, b, 8)
    assert float(terms.kl_y) == 0 and float(terms.residual) == 0
    assert (float(terms.kl_z.detach()) == 0) == (not config.use_noise)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    terms.total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reaches {missing}"
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    opt.step()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert torch.isfinite(model(x)[0].total)
    model.eval()
    with torch.no_grad():
        pred = model.predict(x[:3], 4, 2)
    assert pred.frames.shape == (2, 4, b, 1, config.image_size, config.image_size)
    assert pred.cond_frames is not None
    assert pred.cond_frames.shape == (2, 3, b, 1, config.image_size, config.image_size)
    with torch.no_grad():
        torch.manual_seed(3)
        full = model.predict(x[:3], 4, 2)
        torch.manual_seed(3)
        lean = model.predict(x[:3], 4, 2, decode_cond=False)
    assert lean.cond_frames is None
    torch.testing.assert_close(lean.frames, full.frames, rtol=0, atol=0)
    assert pred.codes.shape == (2, 4, b, 8) and pred.z.shape == (2, 4, b, config.z_size)
    assert float(pred.frames.min()) >= 0 and float(pred.frames.max()) <= 1


def test_loss_terms_are_svgs_mse_and_kl() -> None:
    """nll = Σ_t mean_{C,H,W}(x̂_t − x_t)² / obs_scale², kl_z = Σ_{t,d} KL of (μ, logvar) Gaussians (SVG's formula)."""
    config = tiny(obs_scale=0.5, beta_z=0.3)
    model = SVGLP(config)
    x = frames(4, 2, config).double()
    model.double()
    terms, out = model(x)
    d = (out.frames.double() - x[1:]) ** 2
    nll = torch.stack([d[:, b].mean(dim=(1, 2, 3)).sum() for b in range(2)]) / 0.25
    assert out.posterior is not None and out.prior is not None
    mu1, s1 = out.posterior.mean, out.posterior.stddev
    mu2, s2 = out.prior.mean, out.prior.stddev
    kl = (torch.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5).sum(dim=(0, 2))
    torch.testing.assert_close(terms.nll, nll.mean())  # float64 for a float64 model
    torch.testing.assert_close(terms.kl_z, kl.mean())
    torch.testing.assert_close(terms.total, (nll + 0.3 * kl).mean())


def test_skips_come_from_the_previous_frame_then_the_last_conditioning_frame() -> None:
    model = SVGLP(tiny())
    x = frames(6, 2, model.config)
    assert model.infer(x, n_cond=3).skip_index.tolist() == [0, 1, 2, 2, 2]
    assert model.infer(x).skip_index.tolist() == [0, 1, 1, 1, 1]  # n_cond defaults to n_inference_frames = 2
    assert model.infer(x[:2]).skip_index.tolist() == [0]


def test_gaussian_lstm_steps_like_one_sequence_call() -> None:
    """predict() steps the LSTMs one frame at a time with a carried state; training runs whole sequences."""
    lstm = GaussianLSTM(5, 7, 2, 3)
    inputs = torch.randn(4, 2, 5)
    whole, (h, c) = lstm(inputs)
    state = None
    means = []
    for t in range(4):
        step, state = lstm(inputs[t : t + 1], state)
        means.append(step.mean)
    torch.testing.assert_close(torch.cat(means), whole.mean)
    assert state is not None
    torch.testing.assert_close(state[0], h)
    torch.testing.assert_close(state[1], c)
    assert whole.batch_shape == (4, 2) and whole.event_shape == (3,)
    # SVG's parameterisation: a mean and a log-variance, std = exp(logvar / 2).
    mu, logvar = lstm.head(lstm.lstm(lstm.embed(inputs))[0]).chunk(2, dim=-1)
    torch.testing.assert_close(whole.mean, mu)
    torch.testing.assert_close(whole.stddev, torch.exp(logvar / 2))


# ---------------------------------------------------------------------------------------------- generation
def test_predict_re_encodes_every_generated_frame_and_srvp_does_not() -> None:
    tc, tf, n, b = 3, 4, 2, 2
    config = tiny()
    model = calibrated(SVGLP(config), frames(5, 4, config))
    x = frames(tc, b, config)
    spy = EncoderSpy(model.encoder)
    with torch.no_grad():
        pred = model.predict(x, tf, n)
    spy.handle.remove()
    # One batched call for the conditioning frames, then one per generated frame but the last.
    assert len(spy.inputs) == 1 + (tf - 1)
    assert spy.frames() == tc * b + (tf - 1) * n * b
    torch.testing.assert_close(spy.inputs[0], rearrange(x, "t b c h w -> (t b) c h w"))
    for j in range(tf - 1):  # call j+1 reads generated frame j of every sample (sample-major)
        torch.testing.assert_close(spy.inputs[j + 1], rearrange(pred.frames[:, j], "n b c h w -> (n b) c h w"))

    srvp_config = ModelConfig(**{k: v for k, v in TINY.items()}, state_size=3, inference_layers=2)
    srvp = calibrated(SRVP(srvp_config), frames(5, 4, srvp_config))
    spy = EncoderSpy(srvp.encoder)
    with torch.no_grad():
        srvp.predict(x, tf, n)
    spy.handle.remove()
    assert len(spy.inputs) == 1 and spy.frames() == tc * b


def test_generated_frames_take_the_skips_of_the_last_conditioning_frame() -> None:
    tc, tf, n, b = 3, 3, 2, 2
    config = tiny()
    model = calibrated(SVGLP(config), frames(5, 4, config))
    x = frames(tc, b, config)
    calls: list[list[torch.Tensor]] = []
    handle = model.decoder.register_forward_pre_hook(lambda _m, args: calls.append(list(args[1])))
    with torch.no_grad():
        model.predict(x, tf, n)
        enc = model.encode(x)
    handle.remove()
    assert len(calls) == 2 + tf  # frame 0, the conditioning steps (one call), then one call per generated frame
    for skips in calls[-tf:]:
        for got, s in zip(skips, enc.skips, strict=True):
            torch.testing.assert_close(got, s[-1].repeat(n, 1, 1, 1))
    for got, s in zip(calls[1], enc.skips, strict=True):  # conditioning frame t takes frame t−1's skips
        torch.testing.assert_close(got, rearrange(s[:-1].repeat(1, n, 1, 1, 1), "t b c h w -> (t b) c h w"))


def test_predict_is_sample_major_and_samples_run_independently() -> None:
    config = tiny()
    model = calibrated(SVGLP(config), frames(5, 4, config))
    x = frames(3, 2, config)
    with torch.no_grad():
        # Sample n of sequence b sits at row n·B + b: give sample n the noise mean + n.
        both = model.predict(x, 3, 2, sampler=Offset(lambda rows: (rows // 2).to(torch.float32)))
        for b in range(2):
            for n in range(2):
                alone = model.predict(x[:, b : b + 1], 3, 1, sampler=Offset(lambda rows, n=n: rows * 0 + n))
                torch.testing.assert_close(both.frames[n, :, b], alone.frames[0, :, 0])
                torch.testing.assert_close(both.cond_frames[n, :, b], alone.cond_frames[0, :, 0])
        assert not torch.allclose(both.frames[0], both.frames[1])
        means = model.predict(x, 3, 2, sample=False)
    torch.testing.assert_close(means.frames[0], means.frames[1])


def test_conditioning_reconstructions_are_the_teacher_forced_predictions() -> None:
    config = tiny()
    model = calibrated(SVGLP(config), frames(5, 4, config))
    x = frames(4, 2, config)
    with torch.no_grad():
        pred = model.predict(x, 2, 1, sample=False)
        out = model.infer(x, n_cond=4, sample=False)
    torch.testing.assert_close(pred.cond_frames[0, 1:], out.frames)


def test_deterministic_variant_ignores_sampling() -> None:
    config = tiny(use_noise=False, noise_size=0)
    model = calibrated(SVGLP(config), frames(5, 4, config))
    with torch.no_grad():
        pred = model.predict(frames(3, 2, config), 3, 2)
    torch.testing.assert_close(pred.frames[0], pred.frames[1])


def test_predict_under_bf16_autocast_and_channels_last() -> None:
    config = tiny()
    model = calibrated(SVGLP(config), frames(5, 4, config)).to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        pred = model.predict(frames(3, 2, config), 3, 2)
    assert pred.frames.shape == (2, 3, 2, 1, SIZE, SIZE)
    assert bool(torch.isfinite(pred.frames.float()).all())


# ----------------------------------------------------------------------------------------------------- errors
def test_predict_refuses_substeps() -> None:
    model = SVGLP(tiny()).eval()
    x = frames(2, 1, model.config)
    with pytest.raises(ValueError, match="n_substeps: SVG-LP is discrete-time"):
        model.predict(x, 2, 1, n_substeps=2)
    with pytest.raises(ValueError, match="substep_frames: SVG-LP is discrete-time"):
        model.predict(x, 2, 1, substep_frames=True)
    with torch.no_grad():
        assert model.predict(x, 2, 1, n_substeps=1).frames.shape[1] == 2  # the one step per frame it has


def test_bad_inputs() -> None:
    model = SVGLP(tiny())
    with pytest.raises(ValueError, match="needs at least 2 frames"):
        model(frames(1, 2, model.config))
    with pytest.raises(ValueError, match="n_cond: expected at most the 3 given frames"):
        model(frames(3, 2, model.config), n_cond=4)
    with pytest.raises(ValueError, match="x: expected size 32 for axis 'h'"):
        model(torch.rand(3, 2, 1, 16, 32))
    with pytest.raises(ValueError, match="cond_frames: expected 5 dimensions"):
        model.predict(torch.rand(2, 1, 32, 32), 2)
    with pytest.raises(ValueError, match=r"cond_frames: expected at least one frame of one sequence .* \[0, 1, 1"):
        model.predict(frames(0, 1, model.config), 2)
    with pytest.raises(ValueError, match=r"cond_frames: expected at least one frame of one sequence .* \[2, 0, 1"):
        model.predict(frames(2, 0, model.config), 2)
    with pytest.raises(TypeError, match="decode_cond: expected a bool, got str 'no'"):
        model.predict(frames(2, 1, model.config), 2, decode_cond="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_future: expected an int >= 1"):
        model.predict(frames(2, 1, model.config), 0)
    with pytest.raises(ValueError, match="n_samples: expected an int >= 1"):
        model.predict(frames(2, 1, model.config), 2, 0)
    x = frames(3, 2, model.config)
    _, out = model(x)
    with pytest.raises(ValueError, match="out: predicted frames"):
        model.loss_terms(x[:2], out)


# ------------------------------------------------------------------------------------------ example commands
def test_train_cli_load_and_evaluate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["--preset", "tiny", "--family", "svglp", "--run-dir", str(run), "--lr-burnin", "2", "--lr-decay", "1"]
    assert train.main(argv) == 0
    assert json.loads((run / "config.json").read_text())["model"]["family"] == "svglp"
    loaded = load_model(run)
    assert isinstance(loaded, SVGLP) and not loaded.training
    model: Any = loaded  # evaluate() is annotated for SRVP; it only needs predict() and config
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert any("val_psnr" in r and np.isfinite(r["val_psnr"]) for r in log)
    sequences = torch.randint(0, 256, (5, 3, 1, 64, 64), dtype=torch.uint8)
    protocol = ev.EvalProtocol(
        nt_cond=2, nt_gen=5, n_samples=2, n_substeps=model.config.n_substeps, batch_size=2, seed=1, max_sequences=0
    )
    result = ev.evaluate(model, sequences, protocol, progress=False)
    assert result["n_sequences"] == 3 and np.isfinite(result["metrics"]["psnr"]["mean"])


def test_sampling_benchmark_compares_srvp_and_svglp() -> None:
    cmd = [sys.executable, "-m", "benchmarks.sampling", "--width", "4", "--samples", "2", "--future", "3"]
    cmd += ["--variants", "batched-fp32,svglp-fp32", "--iters", "1", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "svglp-fp32" in proc.stdout and "skipped" not in proc.stdout
    assert "SRVP vs SVG-LP (fp32):" in proc.stdout


def test_predict_from_a_single_conditioning_frame() -> None:
    """T_c = 1: no conditioning step runs the LSTMs; the reconstruction is frame 0 decoded from its own code, and
    the first prediction starts the prior and predictor LSTMs from their initial state on that code."""
    config = tiny()
    model = calibrated(SVGLP(config), frames(5, 4, config))
    x = frames(1, 2, config)
    with torch.no_grad():
        pred = model.predict(x, 3, 2, sample=False)
        enc = model.encode(x)
        p, _ = model.prior(enc.codes)
        first, _ = model.predictor(torch.cat([enc.codes, p.mean], dim=-1))
        frame_1 = model.decode(first, enc.skips).clamp(0, 1)
        rec_0 = model.decode(enc.codes, enc.skips).clamp(0, 1)
    size = config.image_size
    assert pred.frames.shape == (2, 3, 2, 1, size, size)
    assert pred.cond_frames is not None and pred.cond_frames.shape == (2, 1, 2, 1, size, size)
    for n in range(2):
        torch.testing.assert_close(pred.cond_frames[n, 0], rec_0[0])
        torch.testing.assert_close(pred.frames[n, 0], frame_1[0])


def test_svglp_reads_the_noise_of_a_noise_sampler_one_row_per_transition() -> None:
    """SVG-LP draws z as one-step sequences, batch (1, N·B): a noise_sampler gives it row t of z for transition t,
    as it gives SRVP's (so that the two models can be driven by the same noise)."""
    from latentdyn import noise_sampler

    torch.manual_seed(0)
    model = SVGLP(tiny()).eval()
    c = model.config
    cond = torch.rand(3, 2, c.channels, c.image_size, c.image_size)
    eps = torch.randn(2 + 4, 2 * 2, c.noise_size)  # 2 observed transitions, 4 predicted; N·B = 4 rows

    def frames(noise: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.predict(cond, 4, 2, sampler=noise_sampler(z=noise)).frames

    first = frames(eps)
    assert torch.equal(frames(eps), first)
    moved = eps.clone()
    moved[4] += 1.0  # the third predicted transition
    other = frames(moved)
    assert torch.equal(other[:, :2], first[:, :2]) and not torch.equal(other[:, 2], first[:, 2])
