"""The SRVP example (examples/srvp/model.py) against an independent reference written from SPEC.md alone
(``srvp_reference.py``), in float64, for the configurations that the official fixture (config A: DCGAN without
skips, Δt = 1, SM-MNIST) does not cover: the KTH preset (VGG + skip connections), Δt = 1/2 and 1/3, prediction
with more test sub-steps, RGB (Human3.6M, BAIR), DCGAN with skips and non-default loss weights.

Both sides get the same weights (the project's, exported with ``official_state_dict``) and the same noise (the
project's sampler roles "y0", "z_posterior" and "z_prior" fed with fixed ε); in training mode the project's random
content and skip frames are handed to the reference. BatchNorm statistics are calibrated first, so that eval-mode
frames depend on the encoder and decoder (with the initial statistics every frame decodes to 0.5 ± 1e-4). Float64
rounding leaves ~1e-15 between the two; a float32 step anywhere would leave ≥ 1e-8. The reference itself is
checked against the official fixture, and the last tests show that a one-weight or one-frame change on the
reference side is caught.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from shared_fixtures import FIXTURES, calibrated, frames, needs
from srvp_reference import Reference, loss
from torch.distributions import Distribution

from examples.srvp.config import PRESETS, ModelConfig
from examples.srvp.model import SRVP, SRVPOutput
from examples.srvp.official import official_state_dict, to_official_key

FIXTURE = FIXTURES / "official"
needs_fixture = needs(FIXTURE / "outputs.pt", "official SRVP fixture")
TOL = 1e-10  # float64 rounding: ~1e-15 observed; float32 anywhere: ≥ 1e-8
F64 = torch.float64
LOSS_TERMS = {"nll": "nll", "kl_y": "kl_y0", "kl_z": "kl_z", "residual": "l2_res", "total": "total"}  # ours: ref's


@pytest.fixture(autouse=True)
def _isolated_global_rng() -> Iterator[None]:
    """Constructors, inputs, noise and the random training frames use the global RNG: seed it, restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


class FixedNoise:
    """A sampler for the project's model that draws mean + std·ε with given ε, by role: ``eps_y0`` (B, ny) for
    "y0"; the first ``n_posterior`` rows of ``eps_z`` (transitions, B, nz) for the one "z_posterior" draw; the
    following rows, one per "z_prior" draw. This is the reference's order: one ε per frame transition."""

    def __init__(self, eps_y0: torch.Tensor, eps_z: torch.Tensor, n_posterior: int) -> None:
        self.eps_y0, self.eps_z, self.n_posterior, self.n_prior = eps_y0, eps_z, n_posterior, 0

    def __call__(self, dist: Distribution, role: str) -> torch.Tensor:
        if role == "y0":
            eps = self.eps_y0
        elif role == "z_posterior":
            assert dist.batch_shape[0] <= self.n_posterior
            eps = self.eps_z[: dist.batch_shape[0]]
        else:
            eps = self.eps_z[self.n_posterior + self.n_prior]
            self.n_prior += 1
        return dist.mean + dist.stddev * eps


def build(preset: str, **changes: Any) -> tuple[ModelConfig, SRVP, Reference]:
    """A preset's model at conv width 8 (plus ``changes``) in float64 with calibrated BatchNorm statistics, and the
    reference on a copy of its weights."""
    config = dataclasses.replace(PRESETS[preset]().model, conv_width=8, **changes)
    model = calibrated(SRVP(config).init_weights().double(), frames(config.n_inference_frames + 1, 2, config).double())
    sd = {k: v.detach().clone() for k, v in official_state_dict(model).items()}
    ref = Reference(
        sd,
        config.architecture,
        config.n_inference_frames,
        config.inference_layers,
        config.residual_layers,
        config.skip_connections,
    )
    return config, model, ref


def noise(config: ModelConfig, transitions: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ε of y_0 (B, ny) and of every transition (T−1, B, nz)."""
    eps_y0 = torch.randn(batch, config.state_size, dtype=F64)
    return eps_y0, torch.randn(transitions, batch, config.noise_size, dtype=F64)


def max_diff(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
    return max((a - b).abs().max().item() for a, b in pairs.values())


def assert_all_close(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Every (project, reference) pair equal to float64 rounding; the message names all that differ."""
    bad = []
    for name, (ours, theirs) in pairs.items():
        assert ours.shape == theirs.shape, f"{name}: shape {list(ours.shape)} vs reference {list(theirs.shape)}"
        assert ours.dtype == theirs.dtype == F64, f"{name}: {ours.dtype} vs reference {theirs.dtype}"
        if not torch.allclose(ours, theirs, rtol=TOL, atol=TOL):
            bad.append(f"{name} (max |diff| {(ours - theirs).abs().max().item():.3g})")
    assert not bad, "project differs from the reference: " + ", ".join(bad)


def pass_pairs(
    config: ModelConfig,
    model: SRVP,
    ref: Reference,
    x: torch.Tensor,
    *,
    train: bool,
    n_frames: int | None = None,
    decode_substeps: bool = False,
    ref_changes: dict[str, Any] | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(project, reference) pairs of one posterior pass over x (the project's ``infer``, then its loss terms when
    every frame time of x is decoded): frames, states, z, prior, posterior, residuals, w, q(y_0), loss terms.
    ``ref_changes`` overrides arguments of the reference's pass (the failure tests)."""
    t, b = x.shape[:2]
    n_frames = n_frames or t
    n = config.n_substeps
    eps_y0, eps_z = noise(config, n_frames - 1, b)
    model.train(train)
    out: SRVPOutput = model.infer(
        x, n_frames, sampler=FixedNoise(eps_y0, eps_z, t - 1), decode_substeps=decode_substeps
    )
    # Training draws the content and skip frames at random: hand the project's to the reference.
    indices = dict(w_idx=out.content_indices, skip_idx=out.skip_index) if train else {}
    r = ref.forward(x, n_frames, n, train, eps_y0, eps_z, **(indices | (ref_changes or {})))
    if not train:  # calibrated statistics: eval-mode frames depend on the input
        assert r["x_rec"].std() > 5e-3
    roll = out.rollout
    assert roll.prior is not None and roll.posterior is not None and roll.residuals is not None and out.w is not None
    ref_frames = ref.decode(r["w"], r["sub"], r["skips"], train) if decode_substeps else r["x_rec"]
    pairs = {
        "frames": (out.frames, ref_frames),
        "states": (roll.states, r["y"]),
        "substates": (roll.substates, r["sub"]),
        "z": (roll.z, r["z"]),
        "prior mean": (roll.prior.mean, r["p_z_mean"]),
        "prior std": (roll.prior.stddev, r["p_z_std"]),
        "posterior mean": (roll.posterior.mean, r["q_z_mean"]),
        "posterior std": (roll.posterior.stddev, r["q_z_std"]),
        "residuals": (roll.residuals, r["res"]),
        "w": (out.w, r["w"]),
        "q(y_0) mean": (out.q_y0.mean, r["q_y0_mean"]),
        "q(y_0) std": (out.q_y0.stddev, r["q_y0_std"]),
    }
    if n_frames == t and not decode_substeps:
        terms = model.loss_terms(x, out)._asdict()
        ref_terms = loss(x, r, config.obs_scale, config.beta_y, config.beta_z, config.residual_weight)
        pairs |= {f"loss {ours}": (terms[ours], ref_terms[theirs]) for ours, theirs in LOSS_TERMS.items()}
    return pairs


# ------------------------------------------------------------------------------------------ posterior passes
# preset, frames T, batch B, model changes (conv width 8 always)
CASES: dict[str, tuple[str, int, int, dict[str, Any]]] = {
    "kth (vgg+skips, n=2)": ("kth", 5, 2, {}),
    "kth n=3": ("kth", 5, 2, dict(n_substeps=3)),
    "human36m (rgb)": ("human36m", 4, 2, {}),
    "bair (rgb, k=2)": ("bair", 4, 2, {}),
    "dcgan+skips (smmnist-cpu)": ("smmnist-cpu", 6, 2, {}),
    "loss weights, n=3": ("kth", 4, 2, dict(n_substeps=3, beta_y=0.7, beta_z=2.5, residual_weight=0.3, obs_scale=0.3)),
    "no residual penalty": ("kth", 4, 2, dict(residual_weight=0.0)),
    "k=1": ("kth", 4, 2, dict(n_inference_frames=1)),
    "2 inference, 3 residual layers": ("kth", 4, 2, dict(inference_layers=2, residual_layers=3)),
}


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", list(CASES))
def test_posterior_pass_and_loss_terms_match_the_reference(case: str, train: bool) -> None:
    preset, t, b, changes = CASES[case]
    config, model, ref = build(preset, **changes)
    x = frames(t, b, config).double()
    with torch.no_grad():
        assert_all_close(pass_pairs(config, model, ref, x, train=train))


def test_decoded_substeps_match_the_reference() -> None:
    config, model, ref = build("kth", n_substeps=3)
    x = frames(4, 2, config).double()
    with torch.no_grad():
        pairs = pass_pairs(config, model, ref, x, train=False, decode_substeps=True)
    assert pairs["frames"][0].shape[0] == 3 * 3 + 1
    assert_all_close(pairs)


def test_validation_pass_with_prior_after_the_given_frames_matches_the_reference() -> None:
    config, model, ref = build("kth")
    x = frames(4, 2, config).double()
    with torch.no_grad():
        pairs = pass_pairs(config, model, ref, x, train=False, n_frames=7)
    assert pairs["z"][0].shape[0] == 6 and pairs["posterior mean"][0].shape[0] == 3
    assert_all_close(pairs)


def test_loss_gradients_match_the_reference() -> None:
    config, model, ref = build("kth", n_substeps=3, beta_y=0.7, beta_z=2.5, residual_weight=0.3)
    x = frames(4, 2, config).double()
    eps_y0, eps_z = noise(config, 3, 2)
    model.train()
    terms, out = model(x, sampler=FixedNoise(eps_y0, eps_z, 3))
    terms.total.backward()
    ref.sd = {k: v.requires_grad_(v.is_floating_point()) for k, v in ref.sd.items()}
    r = ref.forward(x, 4, 3, True, eps_y0, eps_z, w_idx=out.content_indices, skip_idx=out.skip_index)
    loss(x, r, config.obs_scale, config.beta_y, config.beta_z, config.residual_weight)["total"].backward()
    pairs = {}
    for name, p in model.named_parameters():
        theirs = ref.sd[to_official_key(name)].grad
        assert p.grad is not None and theirs is not None, name
        pairs[name] = (p.grad / theirs.abs().max(), theirs / theirs.abs().max())  # relative to each tensor's scale
    assert len(pairs) == len(ref.sd) - sum(1 for k in ref.sd if "running" in k or "num_batches" in k)
    assert_all_close(pairs)


# ------------------------------------------------------------------------------------------ prediction
def predict_pairs(
    preset: str, n_cond: int, n_future: int, n_test: int, n_samples: int = 1, **changes: Any
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(project, reference) pairs of ``predict`` (N samples: the reference runs the N·B sequences, sample-major)."""
    config, model, ref = build(preset, **changes)
    b = 2
    x = frames(n_cond, b, config).double()
    eps_y0, eps_z = noise(config, n_cond - 1 + n_future, n_samples * b)
    with torch.no_grad():
        p = model.eval().predict(
            x, n_future, n_samples, n_substeps=n_test, sampler=FixedNoise(eps_y0, eps_z, n_cond - 1)
        )
        x_n = x.repeat(1, n_samples, 1, 1, 1)
        cond, future, predicted = ref.predict(
            x_n, n_cond + n_future, config.n_substeps, n_test, eps_y0, eps_z[: n_cond - 1], eps_z[n_cond - 1 :]
        )
    assert predicted.std() > 5e-3 and p.cond_frames is not None
    split = (n_samples, b)
    return {
        "frames": (p.frames, predicted.unflatten(1, split).transpose(0, 1)),
        "conditioning frames": (p.cond_frames, cond["x_rec"].clamp(0, 1).unflatten(1, split).transpose(0, 1)),
        "states": (p.states, future["y"][1:].unflatten(1, split).transpose(0, 1)),
        "conditioning states": (p.cond_rollout.substates, cond["sub"]),
        "future substates": (p.future_rollout.substates, future["sub"]),
        "future z": (p.future_rollout.z, future["z"]),
    }


@pytest.mark.parametrize("n_test", [2, 3, 4])
def test_kth_prediction_with_test_substeps_matches_the_reference(n_test: int) -> None:
    """Trained with n = 2; predicted with 2, 3 and 4 sub-steps per frame (4: the paper's Δt/2)."""
    pairs = predict_pairs("kth", 4, 3, n_test)
    assert pairs["future substates"][0].shape[0] == 3 * n_test + 1
    assert_all_close(pairs)


def test_bair_prediction_with_several_samples_matches_the_reference() -> None:
    """RGB, k = 2 conditioning frames; every sample re-infers the posterior (its own y_0 and z noise)."""
    assert_all_close(predict_pairs("bair", 2, 3, 2, n_samples=2))


def test_substep_frames_match_the_reference() -> None:
    config, model, ref = build("kth")
    x = frames(3, 2, config).double()
    eps_y0, eps_z = noise(config, 2 + 2, 2)
    with torch.no_grad():
        p = model.eval().predict(x, 2, n_substeps=3, substep_frames=True, sampler=FixedNoise(eps_y0, eps_z, 2))
        cond, future, predicted = ref.predict(x, 5, 2, 3, eps_y0, eps_z[:2], eps_z[2:])
        substep_frames = ref.decode(cond["w"], future["sub"][1:], cond["skips"], False).clamp(0, 1)
    assert_all_close({"frames": (p.frames[0], substep_frames), "frame times": (p.frames[0, 2::3], predicted)})


# ------------------------------------------------------------------------------------------ the reference itself
@needs_fixture
def test_the_reference_reproduces_the_official_fixture() -> None:
    """The reference against the official code's own float32 outputs (config A): within 2e-5 of each tensor's
    scale (the official float32-vs-float64 deviations reach 4e-6 of it) and 1e-6 relative on the losses; eval
    and training mode, Δt = 1 and 1/2 (every sub-step decoded), prediction. No project code involved."""
    sd = {
        k: v.double() if v.is_floating_point() else v
        for k, v in torch.load(FIXTURE / "model.pt", map_location="cpu", weights_only=True).items()
    }
    inputs = torch.load(FIXTURE / "inputs.pt", map_location="cpu", weights_only=True)
    outputs = torch.load(FIXTURE / "outputs.pt", map_location="cpu", weights_only=True)
    expected, losses = outputs["tensors"], outputs["meta"]["losses"]
    x, eps_y0, eps_z, eps_prior = (inputs[k].double() for k in ("x", "eps_y0", "eps_z", "eps_prior"))
    ref = Reference(sd, "dcgan", 5)
    t = x.shape[0]

    def check(got: dict[str, torch.Tensor], prefix: str) -> None:
        for theirs, ours in got.items():
            key = f"{prefix}/{theirs}"
            want = expected[key].double()
            atol = 2e-5 * max(1.0, want.abs().max().item())
            assert ours.shape == want.shape, f"{key}: shape {list(ours.shape)}, official {list(want.shape)}"
            diff = (ours - want).abs().max().item()
            assert diff <= atol, f"{key}: max |diff| {diff:.3g} > {atol:.3g}"

    names = dict(y="y", z="z", res="res", w="w", p_z_mean="p_z_mean", p_z_scale="p_z_std", q_z_mean="q_z_mean")
    names |= dict(q_z_scale="q_z_std", q_y0_mean="q_y0_mean", q_y0_scale="q_y0_std")
    with torch.no_grad():
        for mode, train, w_idx in (("eval", False, None), ("train", True, expected["train/w_frame_indices"])):
            r = ref.forward(x, t, 1, train, eps_y0, eps_z, w_idx=w_idx)
            prefix = f"{mode}/posterior_saved_noise_dt1"
            check({theirs: r[ours] for theirs, ours in names.items()} | {"x_rec": r["x_rec"]}, prefix)
            for name, value in loss(x, r, 1.0, 1.0, 2.0, 1.0).items():
                assert value.item() == pytest.approx(losses[prefix][name], rel=1e-6), (prefix, name)
        r = ref.forward(x, t, 2, False)
        every_substep = ref.decode(r["w"], r["sub"], r["skips"], False)
        check({"y": r["sub"], "x_rec": every_substep}, "eval/posterior_zero_noise_dt0.5_all_substeps")
        cond, future, predicted = ref.predict(x[:5], 25, 1, 1, eps_y0, eps_z[:4], eps_prior)
        got = {"x_pred": predicted, "y_pred": future["y"], "z_pred": future["z"], "y_cond": cond["y"]}
        check(got | {"x_cond_rec": cond["x_rec"], "w": cond["w"]}, "eval/predict_saved_noise")


# ------------------------------------------------------------------------------------------ can the comparison fail
def _perturb_decoder_weight(ref: Reference) -> dict[str, Any]:
    """One weight of the decoder's last convolution on the reference side (+0.05 of a N(0, 0.02²) weight)."""
    ref.sd = dict(ref.sd)
    weight = ref.sd["decoder.conv.3.1.weight"].clone()
    weight[0, 0, 1, 1] += 0.05
    ref.sd["decoder.conv.3.1.weight"] = weight
    return {}


MUTANTS = {  # changes to the reference on the eval-mode pass below (KTH: T = 5, B = 2, k = 3)
    "one decoder weight": _perturb_decoder_weight,
    "skips of frame T-2": lambda ref: {"skip_idx": torch.tensor([3, 3])},
    "w from the first k frames": lambda ref: {"w_idx": torch.arange(3)[:, None].expand(3, 2)},
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_the_comparison_catches_a_small_change_on_the_reference_side(mutant: str) -> None:
    """The same comparison as above, in eval mode, after one change to the reference: it fails, by far more than
    its tolerance. Unchanged, the same pass agrees (the control)."""
    config, model, ref = build("kth")
    x = frames(5, 2, config).double()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        assert_all_close(pass_pairs(config, model, ref, x, train=False))
    with torch.no_grad():
        pairs = pass_pairs(config, model, ref, x, train=False, ref_changes=MUTANTS[mutant](ref))
    assert max_diff({"frames": pairs["frames"]}) > 1e-3
    with pytest.raises(AssertionError, match="frames"):
        assert_all_close(pairs)
