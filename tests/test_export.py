"""Deploying models: torch.export and torch.jit.trace of latentdyn parts and of the SRVP sampler, with the noise given
as inputs (docs/deploy.md). Each expected output is the eager module's on the same inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.export import Dim

from examples.srvp.config import PRESETS
from examples.srvp.model import build_model
from latentdyn import (
    MLP,
    ConditionalGaussianPrior,
    LatentSSM,
    MLPField,
    ResidualCell,
    diag_gaussian,
    last_frames,
    noise_sampler,
    select_frames,
)

pytestmark = pytest.mark.skipif(
    tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 5),
    reason=f"torch {torch.__version__}: torch.export before 2.5 lacks the non-strict mode and dynamic shapes used",
)


class _LastTwo(nn.Module):
    """The codes of the last two frames, (T, B, D) -> (2, B, D), through the library's checked frame indices."""

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        t, b = codes.shape[:2]
        return select_frames(codes, last_frames(t, 2, b), check=False)  # (check=True reads the indices' values)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # (last_frames compares the traced size with k)
@pytest.mark.filterwarnings("ignore:`torch.jit.trace.* is deprecated:DeprecationWarning")  # (torch 2.13: still there)
def test_sizes_that_torch_traces_pass_the_integer_checks_and_stay_dynamic() -> None:
    """A batch size read from a tensor is a SymInt under torch.export with a dynamic batch and a 0-dim tensor under
    torch.jit.trace: the checks take both (they refused them as "expected an int"), and keep them symbolic, so that
    the graph works at another batch size."""
    x, x7 = torch.randn(5, 3, 4), torch.randn(5, 7, 4)
    exported = torch.export.export(_LastTwo(), (x,), dynamic_shapes={"codes": {1: Dim("B", min=2, max=64)}})
    assert torch.equal(exported.module()(x7), x7[3:])
    traced = torch.jit.trace(_LastTwo(), (x,))
    assert torch.equal(traced(x7), x7[3:])


def test_a_rollout_given_a_diag_gaussian_posterior_exports() -> None:
    """``diag_gaussian`` validates its arguments by default, which reads their values: not while torch.export traces
    it (export failed on a data-dependent guard), still outside."""
    torch.manual_seed(0)
    ssm = LatentSSM(ResidualCell(MLPField(4, 2, 16, 2), 4, 2, 2), ConditionalGaussianPrior(MLP(4, 16, 4, 2))).eval()

    class Rollout(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ssm = ssm

        def forward(self, y0: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.ssm.rollout(y0, 6, posterior=diag_gaussian(loc, scale), sample=False).states

    args = (torch.randn(3, 4), torch.randn(2, 3, 2), torch.rand(2, 3, 2) + 0.1)
    exported = torch.export.export(Rollout(), args)
    others = (torch.randn(3, 4), torch.randn(2, 3, 2), torch.rand(2, 3, 2) + 0.1)
    assert torch.equal(exported.module()(*others), Rollout()(*others))
    with pytest.raises(ValueError, match="scale"):  # eager: validated as before
        diag_gaussian(torch.zeros(3, 2), -torch.ones(3, 2))


def _tiny_srvp() -> nn.Module:
    torch.manual_seed(0)
    return build_model(PRESETS["tiny"]().model).eval()


class _Means(nn.Module):
    """An SRVP's predicted means (no noise) from 3 conditioning frames of any batch size, as a tensor."""

    def __init__(self, model: nn.Module, *, n_future: int, n_samples: int) -> None:
        super().__init__()
        self.model, self.n_future, self.n_samples = model, n_future, n_samples

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.model.predict(cond, self.n_future, self.n_samples, sample=False, decode_cond=False).frames


def _clips(means: _Means, b: int) -> torch.Tensor:
    """3 conditioning frames of b sequences at the model's size, seeded by b."""
    c = means.model.config
    return torch.rand(3, b, c.channels, c.image_size, c.image_size, generator=torch.Generator().manual_seed(b))


def test_the_srvp_sampler_exports_with_its_noise_as_inputs(tmp_path: Path) -> None:
    """The noise given as tensors (``noise_sampler``): the exported program, saved and loaded, gives the eager
    model's frames for any noise, bit for bit."""
    model = _tiny_srvp()
    c = model.config
    n_cond, n_future, n_samples, b = 3, 4, 2, 2

    class Sampler(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, cond: torch.Tensor, eps_y0: torch.Tensor, eps_z: torch.Tensor) -> torch.Tensor:
            sampler = noise_sampler(y0=eps_y0, z=eps_z)
            return self.model.predict(cond, n_future, n_samples, sampler=sampler, decode_cond=False).frames

    def inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        rows = n_samples * b
        return (
            torch.rand(n_cond, b, c.channels, c.image_size, c.image_size, generator=g),
            torch.randn(rows, c.state_size, generator=g),
            torch.randn(n_cond - 1 + n_future, rows, c.noise_size, generator=g),
        )

    program = torch.export.export(Sampler(), inputs(0))
    torch.export.save(program, tmp_path / "sampler.pt2")
    loaded = torch.export.load(tmp_path / "sampler.pt2").module()
    with torch.no_grad():
        for seed in (0, 1):
            frames = loaded(*inputs(seed))
            assert frames.shape == (n_samples, n_future, b, c.channels, c.image_size, c.image_size)
            assert torch.equal(frames, Sampler()(*inputs(seed)))
        assert not torch.equal(loaded(*inputs(0)), loaded(*inputs(1)))


def test_the_srvp_sampler_exports_strictly_with_a_dynamic_batch() -> None:
    """``strict=True`` export of ``predict`` (the means) with a dynamic batch runs at other batch sizes as the eager
    model does. (The non-strict mode stops at a guard inside torch's LSTM: a torch limitation, docs/deploy.md.)"""
    means = _Means(_tiny_srvp(), n_future=4, n_samples=2)
    dynamic = {"cond": {1: Dim("B", max=64)}}
    program = torch.export.export(means, (_clips(means, 2),), dynamic_shapes=dynamic, strict=True)
    with torch.no_grad():
        for b in (1, 5):
            assert torch.equal(program.module()(_clips(means, b)), means(_clips(means, b)))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace.* is deprecated:DeprecationWarning")
def test_the_srvp_predictor_traces_and_runs_at_another_batch_size() -> None:
    """``predict`` reads the batch size from its frames for the content's frame indices: traced, that size was a
    0-dim tensor, which the checks refused ("n_frames: expected an int >= 1, got Tensor")."""
    means = _Means(_tiny_srvp(), n_future=3, n_samples=1)
    with torch.no_grad():
        traced = torch.jit.trace(means, (_clips(means, 2),), check_trace=False)
        assert torch.equal(traced(_clips(means, 5)), means(_clips(means, 5)))
