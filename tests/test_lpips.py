"""Tests for latentdyn.video.lpips: the LPIPS math, batching, grayscale handling and weight loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import latentdyn.video.lpips as lpips_module
from latentdyn.video.lpips import (
    ALEXNET_ENV_VAR,
    ALEXNET_FILENAME,
    LPIPS,
    LPIPS_ENV_VAR,
    LPIPS_LIN_FILENAME,
    SHIPPED_LIN_PATH,
    AlexNetFeatures,
    normalize_channels,
)

# The published ScalingLayer constants, written out independently of the module under test.
SHIFT = np.array([-0.030, -0.088, -0.188])
SCALE = np.array([0.458, 0.448, 0.450])

# torchvision's alexnet().features parameter names and shapes (the layout of alexnet-owt-7be5be79.pth).
TORCHVISION_FEATURES = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
}


@pytest.fixture(autouse=True)
def _isolated_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user environment variable or torch cache leaks into the tests."""
    monkeypatch.delenv(ALEXNET_ENV_VAR, raising=False)
    monkeypatch.delenv(LPIPS_ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _lin_weight(metric: LPIPS, k: int) -> torch.Tensor:
    layer = metric.lins[k]
    assert isinstance(layer, nn.Conv2d)
    return layer.weight


def _seeded_lpips(seed: int = 0) -> LPIPS:
    torch.manual_seed(seed)
    metric = LPIPS().eval()
    with torch.no_grad():  # LPIPS linear weights are non-negative; random ones keep the sign convention
        for k in range(len(metric.lins)):
            _lin_weight(metric, k).abs_()
    return metric


def _frames(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def metric() -> LPIPS:
    return _seeded_lpips()


# ------------------------------------------------------------------------------------------------------
# Properties of the distance
# ------------------------------------------------------------------------------------------------------


def test_identity_is_zero(metric: LPIPS) -> None:
    x = _frames(4, 3, 64, 64)
    with torch.no_grad():
        d = metric(x, x.clone())
    assert d.shape == (4,)
    assert torch.all(d == 0)


def test_distinct_frames_are_positive_and_symmetric(metric: LPIPS) -> None:
    x, y = _frames(5, 3, 64, 64, seed=2), _frames(5, 3, 64, 64, seed=3)
    with torch.no_grad():
        dxy, dyx = metric(x, y), metric(y, x)
    assert torch.all(dxy > 0)
    torch.testing.assert_close(dxy, dyx, rtol=1e-5, atol=1e-7)


def test_batched_equals_per_item(metric: LPIPS) -> None:
    x, y = _frames(3, 2, 3, 64, 64, seed=4), _frames(3, 2, 3, 64, 64, seed=5)  # (T, B, C, H, W)
    with torch.no_grad():
        batched = metric(x, y)
        single = torch.stack([torch.stack([metric(x[t, b], y[t, b]) for b in range(2)]) for t in range(3)])
    assert batched.shape == (3, 2)
    assert single.shape == (3, 2)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def test_grayscale_equals_repeated_rgb(metric: LPIPS) -> None:
    x, y = _frames(2, 1, 64, 64, seed=6), _frames(2, 1, 64, 64, seed=7)
    with torch.no_grad():
        gray = metric(x, y)
        rgb = metric(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1))
    torch.testing.assert_close(gray, rgb)


def test_frames_are_not_resized(metric: LPIPS) -> None:
    # A 64x64 AlexNet input gives the documented map sizes; the metric must score these maps directly.
    feats = metric.backbone(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 15, 15),
        (192, 7, 7),
        (384, 3, 3),
        (256, 3, 3),
        (256, 3, 3),
    ]
    with torch.no_grad():
        small = metric(_frames(1, 3, 64, 64), _frames(1, 3, 64, 64, seed=9))
        large = metric(
            nn.functional.interpolate(_frames(1, 3, 64, 64), size=128, mode="bilinear"),
            nn.functional.interpolate(_frames(1, 3, 64, 64, seed=9), size=128, mode="bilinear"),
        )
    assert not torch.allclose(small, large)


def test_gradients_flow_to_inputs(metric: LPIPS) -> None:
    x = _frames(2, 3, 32, 32).requires_grad_(True)
    metric(x, _frames(2, 3, 32, 32, seed=8)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------------
# Hand-computed reduced networks
# ------------------------------------------------------------------------------------------------------


class _IdentityBackbone(nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


def _frame_scaling_to(a: np.ndarray) -> np.ndarray:
    """An RGB pixel in [0, 1] whose LPIPS-scaled value ((2x − 1) − shift) / scale equals ``a``."""
    return (SCALE * a + SHIFT + 1.0) / 2.0


def test_single_layer_identity_backbone_closed_form() -> None:
    # Backbone = identity on the scaled input, one linear layer with weights w = (w1, w2, w3).
    # Pixel 1 scales to e1 in x and e2 in y (orthogonal unit vectors): contribution w1 + w2.
    # Pixel 2 scales to (0.3, 0.4, 0) in x and (0.6, 0.8, 0) in y: same direction, contribution 0.
    # (Every frame value stays in [0, 1], the input range LPIPS checks.)
    # LPIPS = mean over the 2 pixels = (w1 + w2) / 2.
    w = torch.tensor([0.7, 0.2, 0.5], dtype=torch.float64)
    metric = LPIPS(backbone=_IdentityBackbone(), channels=(3,)).double()
    with torch.no_grad():
        _lin_weight(metric, 0).copy_(w.view(1, 3, 1, 1))
    x = np.stack([_frame_scaling_to(np.array([1.0, 0, 0])), _frame_scaling_to(np.array([0.3, 0.4, 0]))], axis=-1)
    y = np.stack([_frame_scaling_to(np.array([0, 1.0, 0])), _frame_scaling_to(np.array([0.6, 0.8, 0]))], axis=-1)
    xt = torch.from_numpy(x).view(1, 3, 1, 2)
    yt = torch.from_numpy(y).view(1, 3, 1, 2)
    with torch.no_grad():
        d = metric(xt, yt)
    assert d.shape == (1,)
    assert d.item() == pytest.approx((0.7 + 0.2) / 2, rel=1e-8)


def _numpy_conv_relu(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Valid 2-D cross-correlation + ReLU with explicit loops; x (C, H, W), weight (K, C, kh, kw)."""
    k_out, _, kh, kw = weight.shape
    _, h, w = x.shape
    out = np.zeros((k_out, h - kh + 1, w - kw + 1))
    for k in range(k_out):
        for i in range(h - kh + 1):
            for j in range(w - kw + 1):
                out[k, i, j] = np.sum(x[:, i : i + kh, j : j + kw] * weight[k]) + bias[k]
    return np.maximum(out, 0.0)


def test_single_conv_layer_matches_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    conv_w = rng.normal(size=(4, 3, 3, 3))
    conv_b = rng.normal(size=4) * 0.1
    lin_w = rng.uniform(0.1, 1.0, size=4)
    x = rng.uniform(size=(3, 6, 5))
    y = rng.uniform(size=(3, 6, 5))

    def reference(a: np.ndarray, b: np.ndarray) -> float:
        fa = _numpy_conv_relu(((2 * a - 1) - SHIFT[:, None, None]) / SCALE[:, None, None], conv_w, conv_b)
        fb = _numpy_conv_relu(((2 * b - 1) - SHIFT[:, None, None]) / SCALE[:, None, None], conv_w, conv_b)
        fa = fa / (np.sqrt((fa**2).sum(axis=0, keepdims=True)) + 1e-10)
        fb = fb / (np.sqrt((fb**2).sum(axis=0, keepdims=True)) + 1e-10)
        per_pixel = np.einsum("c,chw->hw", lin_w, (fa - fb) ** 2)
        return float(per_pixel.mean())

    conv = nn.Conv2d(3, 4, kernel_size=3)
    backbone = nn.Sequential(conv, nn.ReLU())

    class OneLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = backbone

        def forward(self, inp: torch.Tensor) -> list[torch.Tensor]:
            return [self.body(inp)]

    metric = LPIPS(backbone=OneLayer(), channels=(4,)).double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(conv_w))
        assert conv.bias is not None
        conv.bias.copy_(torch.from_numpy(conv_b))
        _lin_weight(metric, 0).copy_(torch.from_numpy(lin_w).view(1, 4, 1, 1))
        d = metric(torch.from_numpy(x)[None], torch.from_numpy(y)[None])
    assert d.item() == pytest.approx(reference(x, y), rel=1e-10)


def test_normalize_channels_unit_norm_and_zero() -> None:
    f = torch.tensor([[3.0, 0.0], [4.0, 0.0]]).view(1, 2, 1, 2)  # pixel 1: (3, 4); pixel 2: (0, 0)
    out = normalize_channels(f)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.6, 0.8]))
    assert torch.all(out[0, :, 0, 1] == 0)


# ------------------------------------------------------------------------------------------------------
# Input validation
# ------------------------------------------------------------------------------------------------------


def test_rejects_integer_frames(metric: LPIPS) -> None:
    x = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor"):
        metric(x, x)


def test_rejects_different_dtypes(metric: LPIPS) -> None:
    with pytest.raises(TypeError, match=r"x and y: expected the same dtype"):
        metric(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64, dtype=torch.float64))


def test_rejects_different_shapes(metric: LPIPS) -> None:
    with pytest.raises(ValueError, match=r"x and y: expected the same shape"):
        metric(torch.zeros(2, 3, 64, 64), torch.zeros(1, 3, 64, 64))


def test_rejects_two_channels(metric: LPIPS) -> None:
    with pytest.raises(ValueError, match=r"x: expected 1 \(grayscale\) or 3 \(RGB\) channels"):
        metric(torch.zeros(1, 2, 64, 64), torch.zeros(1, 2, 64, 64))


def test_rejects_values_outside_the_unit_interval(metric: LPIPS) -> None:
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"x: expected values in \[0, 1\], got .*frames in \[0, 255\] need x / 255"):
        metric(x * 255, x * 255)
    with pytest.raises(
        ValueError, match=r"y: expected values in \[0, 1\], got values in \[-0\.0\d+, .*clamp predictions"
    ):
        metric(x, x - 0.1)
    ends = (x > 0.5).to(x.dtype)
    assert torch.isfinite(metric(ends, 1 - ends)).all()  # 0 and 1 themselves are valid


def test_rejects_nan_frames(metric: LPIPS) -> None:
    """NaN compares False both ways, so `lo < 0 or hi > 1` let a NaN frame through to a NaN distance."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    bad = x.clone()
    bad[1, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"y: expected values in \[0, 1\], got values in \[nan, nan\]; it holds NaN"):
        metric(x, bad)
    with pytest.raises(ValueError, match=r"x: expected values in \[0, 1\], got .*it holds NaN"):
        metric(bad, x)


@pytest.mark.parametrize("size", [64, 4])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channels_last_frames_get_a_hint(metric: LPIPS, channels: int, size: int) -> None:
    """RGBA frames channels-last got no hint (the frame metrics gave one): the rule is shared now, and small
    frames keep the hint LPIPS gave them (their channel count is refused anyway)."""
    x = torch.rand(2, size, size, channels)
    with pytest.raises(ValueError, match=r"x: expected 1 \(grayscale\) or 3 \(RGB\) channels .* looks channels-last"):
        metric(x, x)


def test_rejects_missing_dimensions(metric: LPIPS) -> None:
    with pytest.raises(ValueError, match=r"x: expected at least 3 dimensions"):
        metric(torch.zeros(64, 64), torch.zeros(64, 64))


def test_custom_backbone_needs_channels() -> None:
    with pytest.raises(ValueError, match=r"channels: required with a custom backbone"):
        LPIPS(backbone=_IdentityBackbone())


def test_channels_must_be_positive_ints() -> None:
    with pytest.raises(ValueError, match=r"channels: expected a non-empty sequence of positive ints"):
        LPIPS(backbone=_IdentityBackbone(), channels=(0,))
    with pytest.raises(TypeError, match=r"channels: expected a non-empty sequence of positive ints, got \('a',\)"):
        LPIPS(backbone=_IdentityBackbone(), channels=("a",))  # type: ignore[arg-type]


def test_backbone_map_count_must_match_channels() -> None:
    metric = LPIPS(backbone=_IdentityBackbone(), channels=(3, 3))
    with pytest.raises(ValueError, match=r"backbone: returned 1 feature maps, but LPIPS has 2 linear layers"):
        metric(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))


# ------------------------------------------------------------------------------------------------------
# Weight files
# ------------------------------------------------------------------------------------------------------


def test_alexnet_parameter_layout_matches_torchvision() -> None:
    shapes = {k: tuple(v.shape) for k, v in AlexNetFeatures().state_dict().items()}
    assert shapes == TORCHVISION_FEATURES


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-layout AlexNet file with seeded weights (classifier entries kept small, then ignored)."""
    torch.manual_seed(3)
    state = {k: torch.randn(shape) * 0.05 for k, shape in TORCHVISION_FEATURES.items()}
    state["classifier.1.weight"] = torch.randn(4, 9)
    state["classifier.6.bias"] = torch.randn(4)
    path = tmp_path_factory.mktemp("weights") / "alexnet-seeded.pth"  # (not torchvision's name: other bytes)
    torch.save(state, path)
    return path


def test_torchvision_file_loads_into_features(alexnet_file: Path) -> None:
    net = AlexNetFeatures()
    net.load_torchvision_weights(alexnet_file)
    saved = torch.load(alexnet_file, weights_only=True)
    for key in TORCHVISION_FEATURES:
        torch.testing.assert_close(net.state_dict()[key], saved[key], rtol=0, atol=0)


@pytest.mark.skipif(not SHIPPED_LIN_PATH.is_file(), reason="LPIPS v0.1 linear weights not shipped")
def test_shipped_lin_weights_have_expected_shapes() -> None:
    state = torch.load(SHIPPED_LIN_PATH, map_location="cpu", weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "lin0.model.1.weight": (1, 64, 1, 1),
        "lin1.model.1.weight": (1, 192, 1, 1),
        "lin2.model.1.weight": (1, 384, 1, 1),
        "lin3.model.1.weight": (1, 256, 1, 1),
        "lin4.model.1.weight": (1, 256, 1, 1),
    }
    metric = LPIPS()
    metric.load_lin_weights(SHIPPED_LIN_PATH)
    for k in range(5):
        torch.testing.assert_close(_lin_weight(metric, k), state[f"lin{k}.model.1.weight"], rtol=0, atol=0)
        assert torch.all(_lin_weight(metric, k) >= 0)


@pytest.mark.skipif(not SHIPPED_LIN_PATH.is_file(), reason="LPIPS v0.1 linear weights not shipped")
def test_from_files_uses_argument_and_shipped_lin(alexnet_file: Path) -> None:
    metric = LPIPS.from_files(alexnet_path=alexnet_file)
    assert not metric.training
    assert not any(p.requires_grad for p in metric.parameters())
    shipped = torch.load(SHIPPED_LIN_PATH, map_location="cpu", weights_only=True)
    torch.testing.assert_close(_lin_weight(metric, 4), shipped["lin4.model.1.weight"], rtol=0, atol=0)
    x, y = _frames(2, 1, 64, 64), _frames(2, 1, 64, 64, seed=2)
    d = metric(x, y)
    assert d.shape == (2,) and torch.all(d > 0)
    assert torch.all(metric(x, x) == 0)


def _lin_file(path: Path, scale: float) -> Path:
    state = {f"lin{k}.model.1.weight": torch.full((1, c, 1, 1), scale) for k, c in enumerate(AlexNetFeatures.channels)}
    torch.save(state, path)
    return path


def test_environment_variables_are_used(alexnet_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lin = _lin_file(tmp_path / "my_lin.pth", 0.25)
    monkeypatch.setenv(ALEXNET_ENV_VAR, str(alexnet_file))
    monkeypatch.setenv(LPIPS_ENV_VAR, str(lin))
    metric = LPIPS.from_files()
    assert torch.all(_lin_weight(metric, 2) == 0.25)


def test_torch_cache_directory_is_used(alexnet_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lpips_module, "_KNOWN_SHA256", {})  # the seeded files stand in for the published ones
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    (cache / ALEXNET_FILENAME).write_bytes(alexnet_file.read_bytes())
    _lin_file(cache / LPIPS_LIN_FILENAME, 0.5)  # the cache copy comes before the shipped one
    metric = LPIPS.from_files()
    assert torch.all(_lin_weight(metric, 0) == 0.5)


def test_missing_alexnet_says_what_to_put_where() -> None:
    with pytest.raises(FileNotFoundError, match=r"alexnet-owt-7be5be79\.pth") as info:
        LPIPS.from_files()
    message = str(info.value)
    assert "alexnet_path=" in message
    assert ALEXNET_ENV_VAR in message
    assert str(Path(torch.hub.get_dir()) / "checkpoints") in message
    assert "download.pytorch.org" in message


def test_missing_lin_weights_say_what_to_put_where(alexnet_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("latentdyn.video.lpips.SHIPPED_LIN_PATH", Path("/nonexistent/lpips_alex_v0.1.pth"))
    with pytest.raises(FileNotFoundError, match=r"LPIPS v0\.1 linear weights not found") as info:
        LPIPS.from_files(alexnet_path=alexnet_file)
    message = str(info.value)
    assert "lin_path=" in message and LPIPS_ENV_VAR in message and "checkpoints" in message


def test_argument_pointing_nowhere_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"alexnet_path: AlexNet ImageNet weights file .* does not exist"):
        LPIPS.from_files(alexnet_path=tmp_path / "nope.pth")


def test_environment_variable_pointing_nowhere_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALEXNET_ENV_VAR, str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match=rf"{ALEXNET_ENV_VAR} is set to .*nope\.pth"):
        LPIPS.from_files()


def test_wrong_shape_names_file_and_key(alexnet_file: Path, tmp_path: Path) -> None:
    state = torch.load(alexnet_file, weights_only=True)
    state["features.3.weight"] = torch.zeros(192, 64, 3, 3)
    bad = tmp_path / "bad_alexnet.pth"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"bad_alexnet\.pth.*'features\.3\.weight' has shape \[192, 64, 3, 3\]"):
        AlexNetFeatures().load_torchvision_weights(bad)


def test_missing_key_names_file_and_key(alexnet_file: Path, tmp_path: Path) -> None:
    state = torch.load(alexnet_file, weights_only=True)
    del state["features.10.bias"]
    bad = tmp_path / "short.pth"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"short\.pth.*missing key 'features\.10\.bias'"):
        LPIPS.from_files(alexnet_path=bad)


def test_wrong_lin_shape_names_file_and_key(tmp_path: Path) -> None:
    state = {f"lin{k}.model.1.weight": torch.zeros(1, c, 1, 1) for k, c in enumerate(AlexNetFeatures.channels)}
    state["lin1.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    bad = tmp_path / "vgg_like.pth"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"vgg_like\.pth.*'lin1\.model\.1\.weight' has shape \[1, 64, 1, 1\]"):
        LPIPS().load_lin_weights(bad)


def test_unexpected_lin_key_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "other.pth"
    torch.save({"lins.0.weight": torch.zeros(1, 64, 1, 1)}, bad)
    with pytest.raises(ValueError, match=r"other\.pth.*unexpected key 'lins\.0\.weight'"):
        LPIPS().load_lin_weights(bad)


def test_non_state_dict_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], bad)
    with pytest.raises(ValueError, match=r"list\.pth.*expected a state dict"):
        AlexNetFeatures().load_torchvision_weights(bad)


def test_unreadable_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pth.*cannot be read as a PyTorch state dict"):
        AlexNetFeatures().load_torchvision_weights(bad)


class _NotATensor:
    pass


def _damaged_weight_files(directory: Path) -> dict[str, tuple[Path, str]]:
    """Files an interrupted download, a bad disk or a wrong file can leave, with the reason each should give."""
    import random

    good = directory / "good.pth"
    torch.save(AlexNetFeatures().state_dict(), good)
    files = {
        "empty": (b"", r"the file is empty \(0 bytes"),
        # random.Random(2).randbytes(2000) made torch.load raise IndexError ('pop from empty list')
        "random_indexerror": (random.Random(2).randbytes(2000), r"not a PyTorch file.*IndexError"),
        "random_operand": (random.Random(0).randbytes(200), r"not a PyTorch file.*Unsupported operand"),
        "truncated": (good.read_bytes()[: good.stat().st_size // 2], r"truncated or corrupted"),
    }
    out = {}
    for name, (data, reason) in files.items():
        path = directory / f"{name}.pth"
        path.write_bytes(data)
        out[name] = (path, reason)
    unsafe = directory / "unsafe.pth"
    torch.save({"a": _NotATensor()}, unsafe)
    out["unsafe"] = (unsafe, r"objects other than tensors \(.*_NotATensor\), which weights_only=True refuses")
    return out


def test_damaged_weight_files_give_one_line_reasons(tmp_path: Path) -> None:
    """Any failure of torch.load is a ValueError naming the file with a short reason, never an IndexError or
    KeyError traceback, nor torch's paragraph-long explanation."""
    for name, (path, reason) in _damaged_weight_files(tmp_path).items():
        for load in (AlexNetFeatures().load_torchvision_weights, LPIPS().load_lin_weights):
            with pytest.raises(ValueError, match=reason) as info:
                load(path)
            message = str(info.value)
            assert message.startswith(f"{str(path)!r}: cannot be read as a PyTorch state dict: "), (name, message)
            assert "\n" not in message and len(message) < 300 + len(str(path)), (name, message)


def test_random_bytes_never_escape_as_other_errors(tmp_path: Path) -> None:
    """About 8 % of random files made torch.load raise IndexError, KeyError or UnicodeDecodeError."""
    import random

    path = tmp_path / "random.pth"
    for seed in range(60):
        rng = random.Random(seed)
        path.write_bytes(rng.randbytes(rng.choice([10, 200, 2000])))
        with pytest.raises(ValueError, match=r"random\.pth': cannot be read as a PyTorch state dict: not a"):
            AlexNetFeatures().load_torchvision_weights(path)


def test_damaged_file_behind_the_environment_variable_is_a_value_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ValueError is what callers (the evaluate CLI) catch to skip the metric when no path was given."""
    import random

    bad = tmp_path / "alexnet.pth"
    bad.write_bytes(random.Random(2).randbytes(2000))
    monkeypatch.setenv(ALEXNET_ENV_VAR, str(bad))
    with pytest.raises(ValueError, match=r"alexnet\.pth': cannot be read as a PyTorch state dict: not a PyTorch"):
        LPIPS.from_files()


# ------------------------------------------------------------------------------------------------------
# Smallest frames and input dtypes
# ------------------------------------------------------------------------------------------------------


def test_min_size_is_the_smallest_input_alexnet_takes() -> None:
    """The documented minimum is the real one: the trunk's own layers up to relu5 (the last max-pool is not
    used) run at 31 px and fail at 30 px."""
    trunk = AlexNetFeatures().features[:12]
    assert AlexNetFeatures.min_size == 31
    with torch.no_grad():
        for h, w in ((31, 31), (31, 64), (64, 31)):
            assert trunk(torch.zeros(1, 3, h, w)).shape[0] == 1
        for h, w in ((30, 30), (30, 64), (64, 30)):
            with pytest.raises(RuntimeError, match="too small"):
                trunk(torch.zeros(1, 3, h, w))


def test_frames_below_the_minimum_are_refused_up_front(metric: LPIPS) -> None:
    """Frames of 11 to 30 px failed deep in torch ("Output size is too small")."""
    for h, w in ((30, 30), (11, 11), (64, 30)):
        x = _frames(2, 1, h, w)
        with pytest.raises(
            ValueError, match=rf"x: expected frames of at least 31×31 pixels .*got shape \[2, 1, {h}, {w}\]"
        ):
            metric(x, x)
        with pytest.raises(ValueError, match=r"x: expected frames of at least 31×31 pixels"):
            metric.backbone(_frames(2, 3, h, w))
    with torch.no_grad():
        assert metric(_frames(2, 1, 31, 31), _frames(2, 1, 31, 31, seed=3)).shape == (2,)


@pytest.mark.parametrize(
    ("dtype", "out_dtype"),
    [(torch.float16, torch.float32), (torch.bfloat16, torch.float32), (torch.float64, torch.float64)],
)
def test_frames_of_any_float_dtype_are_scored_by_the_float32_network(
    metric: LPIPS, dtype: torch.dtype, out_dtype: torch.dtype
) -> None:
    """float16 and float64 frames failed in the first convolution ("Input type ... and bias type (float)")."""
    x, y = _frames(3, 1, 64, 64).to(dtype), _frames(3, 1, 64, 64, seed=5).to(dtype)
    with torch.no_grad():
        got = metric(x, y)
        reference = metric(x.float(), y.float())  # the same frames, as float32
    assert got.dtype == out_dtype and got.shape == (3,)
    torch.testing.assert_close(got.float(), reference, rtol=1e-6, atol=1e-7)


def test_a_file_named_as_a_published_one_must_hold_its_bytes(alexnet_file: Path, tmp_path: Path) -> None:
    """A flipped bit or a partial copy of a weight file loads without an error from torch and changes every score
    silently; files named as the published ones (torchvision's AlexNet, whose name carries the start of its
    SHA-256, and the LPIPS v0.1 weights latentdyn ships) are checked against their digest."""
    import hashlib

    if SHIPPED_LIN_PATH.is_file():
        shipped = SHIPPED_LIN_PATH.read_bytes()
        assert hashlib.sha256(shipped).hexdigest() == lpips_module._KNOWN_SHA256[LPIPS_LIN_FILENAME]
        LPIPS().load_lin_weights(SHIPPED_LIN_PATH)
        flipped = bytearray(shipped)
        flipped[-200] ^= 0x01  # inside the last tensor's data: torch reads it without complaint
        torch.load(_write(tmp_path / "other.pth", flipped), map_location="cpu", weights_only=True)
        with pytest.raises(ValueError, match=r"lpips_alex_v0\.1\.pth': not the published lpips_alex_v0\.1\.pth .*"
                                             r"a damaged or partial download or copy"):  # fmt: skip
            LPIPS().load_lin_weights(_write(tmp_path / LPIPS_LIN_FILENAME, flipped))
    renamed = tmp_path / ALEXNET_FILENAME
    renamed.write_bytes(alexnet_file.read_bytes())
    with pytest.raises(ValueError, match=r"not the published alexnet-owt-7be5be79\.pth \(its SHA-256 begins "):
        AlexNetFeatures().load_torchvision_weights(renamed)
    with pytest.raises(ValueError, match=r"not the published alexnet-owt-7be5be79\.pth"):
        LPIPS.from_files(renamed)
    AlexNetFeatures().load_torchvision_weights(alexnet_file)  # the same bytes under another name: not checked


def _write(path: Path, data: bytes | bytearray) -> Path:
    path.write_bytes(bytes(data))
    return path
