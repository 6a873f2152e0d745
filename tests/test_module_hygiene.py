"""What a PyTorch user expects of the library's modules and results beyond their numbers: a float64 model
computes its loss in float64, half-precision LPIPS features normalise without overflow or NaN, a warning
points at the user's line however deep the library's own calls go, results holding tensors compare by
identity, and a model's repr shows its sizes."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import pytest
import torch

from examples.srvp.config import ModelConfig
from examples.srvp.model import build_model
from latentdyn import LatentSSM, MLPCell, StandardNormal, gaussian_nll
from latentdyn.integrators import OdeintIntegrator, by_name
from latentdyn.video.lpips import LPIPS, normalize_channels

TINY = ModelConfig(
    image_size=32,
    conv_width=4,
    code_size=8,
    state_size=4,
    noise_size=3,
    inference_hidden=8,
    inference_layers=2,
    residual_hidden=8,
    residual_layers=2,
    n_inference_frames=2,
)


@pytest.mark.parametrize("family", ["srvp", "svglp"])
def test_a_float64_model_computes_every_loss_term_in_float64(family: str) -> None:
    torch.manual_seed(0)
    model = build_model(replace(TINY, family=family)).double().eval()
    x = torch.rand(4, 2, 1, 32, 32, dtype=torch.float64)
    terms, out = model(x, sample=False)
    for name, value in terms._asdict().items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == torch.float64, name
    if family == "srvp":  # the NLL of the frames the pass decoded, to float64's digits (float32's were 1.5e-4 off)
        expected = gaussian_nll(x, out.frames, TINY.obs_scale).mean()
        torch.testing.assert_close(terms.nll, expected, rtol=1e-12, atol=0)


def test_a_float64_models_loss_gradient_matches_finite_differences() -> None:
    torch.manual_seed(0)
    model = build_model(TINY).double().eval()
    x = torch.rand(4, 2, 1, 32, 32, dtype=torch.float64)
    weight = next(model.decoder.parameters())
    idx = (0,) * weight.dim()

    def loss() -> torch.Tensor:
        return model(x, sample=False)[0].total

    (grad,) = torch.autograd.grad(loss(), weight)
    h = 1e-6
    with torch.no_grad():
        weight[idx] += h
        up = loss().item()
        weight[idx] -= 2 * h
        down = loss().item()
        weight[idx] += h
    # In float32 the loss moved by nothing at this step (difference 0.0 against a gradient of 6e-4).
    assert (up - down) / (2 * h) == pytest.approx(grad[idx].item(), rel=1e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_features_normalise_like_float32_ones(dtype: torch.dtype) -> None:
    big = torch.full((1, 256, 1, 1), 20.0)  # the float16 sum of squares, 102400, overflows
    assert normalize_channels(big.to(dtype)).float().square().sum().sqrt().item() == pytest.approx(1.0, rel=1e-2)
    zeros = normalize_channels(torch.zeros(1, 4, 2, 2, dtype=dtype))  # eps 1e-10 is 0 in float16: 0/0
    assert zeros.dtype == dtype
    assert torch.equal(zeros.float(), torch.zeros(1, 4, 2, 2))


def _half_convolutions_run_on_the_cpu() -> bool:
    try:
        torch.nn.functional.conv2d(torch.zeros(1, 1, 2, 2, dtype=torch.float16), torch.zeros(1, 1, 1, 1).half())
    except (RuntimeError, NotImplementedError):  # ("not implemented for 'Half'" on older torch builds)
        return False
    return True


@pytest.mark.skipif(not _half_convolutions_run_on_the_cpu(), reason="this torch has no float16 CPU convolution")
def test_a_half_lpips_with_an_all_zero_feature_map_is_finite_and_close_to_float32() -> None:
    class HalfDead(torch.nn.Module):  # a backbone whose second map is all zero, as ReLU maps can be
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            y = self.conv(x)
            return [torch.relu(y), torch.zeros_like(y)]

    torch.manual_seed(0)
    model = LPIPS(backbone=HalfDead(), channels=(4, 4)).eval()
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    full = model(x, y)
    half = copy.deepcopy(model).half()(x, y)
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), full, rtol=1e-2, atol=1e-3)


def test_the_adjoint_warning_points_at_the_users_line_through_by_name() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        by_name("euler", adjoint=True)
        OdeintIntegrator("euler", adjoint=True)
    assert [w.filename for w in seen] == [__file__, __file__]


def test_results_holding_tensors_compare_by_identity_not_elementwise() -> None:
    from latentdyn.video.fvd import FVDProtocol, FVDResult
    from latentdyn.video.mnist import load_embedded_digits
    from latentdyn.video.moving_mnist import make_test_set

    cell = MLPCell(3, 2, 8, 2)
    ssm = LatentSSM(cell, StandardNormal(2))
    with torch.no_grad():
        roll = ssm.rollout(torch.zeros(4, 3), 3)
    fvd = FVDResult(1.0, FVDProtocol(), torch.zeros(2, 3), torch.zeros(2, 3))
    digits = load_embedded_digits()
    data = make_test_set(digits.images[:4], digits.labels[:4], seq_len=3, deterministic=False)
    torch.manual_seed(0)
    with torch.no_grad():
        out = build_model(TINY).eval()(torch.rand(4, 2, 1, 32, 32))[1]
    for value in (roll, fvd, data, out):
        twin = copy.deepcopy(value)
        assert value == value  # (identity)
        assert value != twin  # (raised "Boolean value of Tensor with more than one value is ambiguous")
        assert len({value, twin}) == 2  # hashable, as a module is


def test_a_latent_ssm_shows_how_its_condition_splits_into_noise_and_inputs() -> None:
    cell = MLPCell(4, 3, 8, 2)
    assert "noise_size=3, input_size=0" in repr(LatentSSM(cell, StandardNormal(3)))
    assert "noise_size=2, input_size=1" in repr(LatentSSM(cell, StandardNormal(2), input_size=1))


def test_normalising_an_all_zero_pixel_has_a_finite_gradient() -> None:
    features = torch.zeros(1, 4, 1, 2, dtype=torch.float64)
    features[0, :, 0, 1] = torch.tensor([3.0, 4.0, 0.0, 0.0])  # one all-zero pixel, one of norm 5
    features.requires_grad_(True)
    normalize_channels(features).sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()  # (NaN at the zero pixel before)
    eps = 1e-10
    torch.testing.assert_close(features.grad[0, :, 0, 0], torch.full((4,), 1 / eps, dtype=torch.float64))
    # At the other pixel, d/df of Σ_c f_c / (‖f‖ + eps) by the closed form 1/‖f‖ − (Σ_c f_c) f / ‖f‖³.
    f = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(features.grad[0, :, 0, 1], 1 / 5 - f.sum() * f / 125, rtol=1e-8, atol=1e-12)
