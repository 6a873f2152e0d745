"""Tests for latentdyn.video.fvd: Fréchet distance, Gaussian fits, I3D, preprocessing and the FVD protocol."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latentdyn.video.fvd import (
    I3D_ENV_VAR,
    I3D_FILENAME,
    FVDProtocol,
    InceptionI3D,
    compute_fvd,
    frechet_distance,
    fvd_from_embeddings,
    gaussian_fit,
    i3d_embeddings,
    preprocess_for_i3d,
)


@pytest.fixture(autouse=True)
def _isolated_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(I3D_ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _random_spd(d: int, seed: int, rank: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, rank or d, generator=g, dtype=torch.float64)
    return a @ a.T / (rank or d)


# ------------------------------------------------------------------------------------------------------
# Fréchet distance and Gaussian fits
# ------------------------------------------------------------------------------------------------------


def test_equal_gaussians_have_zero_distance() -> None:
    mu = torch.randn(6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = _random_spd(6, seed=1)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-10)


def test_shifted_means_give_squared_norm() -> None:
    sigma = _random_spd(5, seed=2)
    mu1 = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    mu2 = torch.tensor([0.0, 1.0, 0.5, 2.0, 3.0], dtype=torch.float64)
    expected = 1.0 + 9.0 + 0.0 + 4.0 + 0.0
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-10)


def test_diagonal_covariances_closed_form() -> None:
    a = np.array([1.0, 4.0, 0.25, 9.0])
    b = np.array([4.0, 1.0, 1.0, 0.0])
    mu1, mu2 = torch.zeros(4, dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    expected = float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)) + 1.0
    value = frechet_distance(mu1, torch.diag(torch.from_numpy(a)), mu2, torch.diag(torch.from_numpy(b)))
    assert value == pytest.approx(expected, rel=1e-10)


def test_general_case_matches_scipy_sqrtm_and_is_symmetric() -> None:
    linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = _random_spd(8, seed=3), _random_spd(8, seed=4)
    g = torch.Generator().manual_seed(5)
    mu1, mu2 = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    covmean = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = float(((mu1 - mu2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * np.trace(covmean))
    d12 = frechet_distance(mu1, s1, mu2, s2)
    d21 = frechet_distance(mu2, s2, mu1, s1)
    assert d12 == pytest.approx(expected, rel=1e-8)
    assert d21 == pytest.approx(d12, rel=1e-8)


def test_near_singular_covariances_are_stable() -> None:
    # Rank 3 in dimension 40 (fewer videos than logits), plus a tiny perturbation: finite, >= 0, symmetric.
    s1 = _random_spd(40, seed=6, rank=3)
    s2 = _random_spd(40, seed=7, rank=3)
    mu = torch.zeros(40, dtype=torch.float64)
    assert frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-8 * float(torch.trace(s1)))
    near = s1 + 1e-12 * torch.eye(40, dtype=torch.float64)
    assert frechet_distance(mu, s1, mu, near) == pytest.approx(0.0, abs=1e-5)
    d12, d21 = frechet_distance(mu, s1, mu, s2), frechet_distance(mu, s2, mu, s1)
    assert np.isfinite(d12) and d12 > 0
    assert d21 == pytest.approx(d12, rel=1e-6)
    # Bounded by the trace terms: 0 <= d <= tr S1 + tr S2 when the means agree.
    assert d12 <= float(torch.trace(s1) + torch.trace(s2)) + 1e-9


def test_float32_inputs_are_computed_in_float64() -> None:
    s = _random_spd(4, seed=8)
    mu1, mu2 = torch.zeros(4), torch.full((4,), 1e-4)
    value = frechet_distance(mu1, s.float(), mu2, s.float())
    assert value == pytest.approx(4e-8, rel=1e-3)


def test_gaussian_fit_is_unbiased_and_float64() -> None:
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(9))
    fit = gaussian_fit(x)
    assert fit.mean.dtype == torch.float64 and fit.cov.dtype == torch.float64
    np.testing.assert_allclose(fit.mean.numpy(), x.double().numpy().mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(fit.cov.numpy(), np.cov(x.double().numpy(), rowvar=False, ddof=1), rtol=1e-10)


def test_fvd_from_embeddings_zero_for_same_set_and_positive_otherwise() -> None:
    g = torch.Generator().manual_seed(10)
    a = torch.randn(20, 4, generator=g)
    assert fvd_from_embeddings(a, a.clone()) == pytest.approx(0.0, abs=1e-8)
    assert fvd_from_embeddings(a, a + 1.0) == pytest.approx(4.0, rel=1e-6)


def test_gaussian_fit_needs_two_rows() -> None:
    with pytest.raises(ValueError, match=r"embeddings: need at least 2 rows"):
        gaussian_fit(torch.zeros(1, 3))


def test_gaussian_fit_rejects_non_finite() -> None:
    x = torch.zeros(3, 2)
    x[1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"embeddings: contains NaN or infinite values"):
        gaussian_fit(x)


def test_frechet_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"sigma2: expected size 3"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(4))


def test_frechet_rejects_non_finite() -> None:
    bad = torch.eye(2)
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"sigma1: contains NaN or infinite values"):
        frechet_distance(torch.zeros(2), bad, torch.zeros(2), torch.eye(2))


def test_frechet_rejects_covariances_that_are_not_psd() -> None:
    """-I was accepted and its clamped square root gave a distance of 0.0 to +I."""
    mu, eye = torch.zeros(2), torch.eye(2)
    with pytest.raises(
        ValueError, match=r"sigma1: expected a positive semi-definite covariance, got an eigenvalue of -1"
    ):
        frechet_distance(mu, -eye, mu, eye)
    indefinite = torch.tensor([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    with pytest.raises(ValueError, match=r"sigma2: expected a positive semi-definite covariance"):
        frechet_distance(mu, eye, mu, indefinite)
    # Round-off below zero in a singular covariance (fewer samples than dimensions, fit in float32) is fine.
    g = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(16, 200, generator=g, dtype=torch.float64).to(dtype) * 100 + 50
        centred = x - x.mean(0)
        cov = centred.T @ centred / 15
        assert torch.linalg.eigvalsh(cov.double()).min() < 0  # round-off, as real fits have
        assert frechet_distance(x.mean(0), cov, x.mean(0), cov) == pytest.approx(0.0, abs=1e-6 * float(cov.trace()))
    # ... also when a float32 fit is passed on in float64 (statistics computed on a GPU, then saved).
    x = torch.randn(400, 50, generator=g, dtype=torch.float64) @ torch.randn(50, 256, generator=g, dtype=torch.float64)
    cov32 = torch.cov(x.float().T * 10).double()  # rank 50 of 256
    assert torch.linalg.eigvalsh(cov32).min() < -1e-8 * float(torch.linalg.eigvalsh(cov32).max())  # float32 round-off
    value = frechet_distance(x.mean(0), cov32, x.mean(0), cov32)
    assert value == pytest.approx(0.0, abs=1e-4 * float(cov32.trace()))


# ------------------------------------------------------------------------------------------------------
# Preprocessing
# ------------------------------------------------------------------------------------------------------


def test_tf1_bilinear_resize_by_hand() -> None:
    # TF 1.x resize_bilinear (align_corners=False, no half-pixel centres) samples the source at i * in/out:
    # 2 -> 4 pixels samples at 0, 0.5, 1, 1.5 -> a, (a + b) / 2, b, b (the last clamped to the edge).
    row = torch.tensor([[0, 200]], dtype=torch.uint8)
    videos = row.view(1, 1, 1, 1, 2).expand(1, 1, 1, 4, 2)  # (T, N, C, H, W): rows identical
    out = preprocess_for_i3d(videos, resolution=4, resize="tf1")
    expected_values = torch.tensor([0.0, 100.0, 200.0, 200.0])
    torch.testing.assert_close(out[0, 0, 0, 0], expected_values * 2 / 255 - 1)
    assert out.shape == (1, 3, 1, 4, 4)


def test_half_pixel_resize_matches_interpolate() -> None:
    videos = torch.randint(0, 256, (3, 2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = preprocess_for_i3d(videos, resolution=12, resize="half_pixel")
    frames = videos.permute(1, 0, 2, 3, 4).reshape(6, 3, 8, 8).float()
    ref = F.interpolate(frames, size=(12, 12), mode="bilinear", align_corners=False) * 2 / 255 - 1
    torch.testing.assert_close(out.permute(0, 2, 1, 3, 4).reshape(6, 3, 12, 12), ref)


def test_same_size_resize_is_identity_and_range_is_minus_one_to_one() -> None:
    videos = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1, 1).expand(2, 1, 1, 4, 4)
    out = preprocess_for_i3d(videos, resolution=4)
    assert torch.all(out[0, :, 0] == -1) and torch.all(out[0, :, 1] == 1)


def test_float_frames_are_truncated_like_byte() -> None:
    x = torch.tensor([0.0, 0.5, 0.999, 1.0]).view(4, 1, 1, 1, 1)
    out = preprocess_for_i3d(x, resolution=1)
    values = (out[0, 0, :, 0, 0] + 1) * 255 / 2
    torch.testing.assert_close(values, torch.tensor([0.0, 127.0, 254.0, 255.0]), rtol=0, atol=1e-4)


def test_uint8_and_float_inputs_agree() -> None:
    q = torch.randint(0, 256, (2, 3, 1, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(preprocess_for_i3d(q, resolution=9), preprocess_for_i3d(q.float() / 255, resolution=9))


def test_grayscale_is_repeated_to_rgb() -> None:
    q = torch.randint(0, 256, (2, 3, 1, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        preprocess_for_i3d(q, resolution=7), preprocess_for_i3d(q.expand(-1, -1, 3, -1, -1), resolution=7)
    )


def test_preprocess_rejects_out_of_range_floats() -> None:
    with pytest.raises(ValueError, match=r"videos: expected values in \[0, 1\], .*clamp predictions to \[0, 1\] first"):
        preprocess_for_i3d(torch.full((1, 1, 1, 2, 2), 2.0))
    # Frames in [0, 255] as floats get the hint the frame metrics give (FVD's said to clamp them).
    with pytest.raises(ValueError, match=r"videos: .*frames in \[0, 255\] need x / 255 \(or pass uint8 frames as"):
        preprocess_for_i3d(torch.full((1, 1, 1, 2, 2), 200.0))
    nan = torch.zeros(1, 1, 1, 2, 2)
    nan[..., 0, 0] = float("nan")  # (the audit: NaN compares False, so `< 0 or > 1` let it through)
    with pytest.raises(ValueError, match=r"got values in \[nan, nan\]; it holds NaN"):
        preprocess_for_i3d(nan)


def test_preprocess_rejects_integer_dtypes_other_than_uint8() -> None:
    with pytest.raises(TypeError, match=r"videos: expected uint8 or floating-point frames"):
        preprocess_for_i3d(torch.zeros(1, 1, 1, 2, 2, dtype=torch.int64))


def test_preprocess_rejects_two_channels() -> None:
    with pytest.raises(ValueError, match=r"videos: expected 1 \(grayscale\) or 3 \(RGB\) channels"):
        preprocess_for_i3d(torch.zeros(1, 1, 2, 2, 2))


def test_preprocess_rejects_unknown_resize() -> None:
    with pytest.raises(ValueError, match=r"resize: expected one of 'tf1', 'half_pixel'"):
        preprocess_for_i3d(torch.zeros(1, 1, 1, 2, 2), resize="bicubic")


# ------------------------------------------------------------------------------------------------------
# I3D
# ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def i3d() -> InceptionI3D:
    torch.manual_seed(0)
    return InceptionI3D().eval()


def test_i3d_random_weights_give_400_logits(i3d: InceptionI3D) -> None:
    videos = torch.rand(16, 2, 1, 16, 16, generator=torch.Generator().manual_seed(3))  # (T, N, C, H, W)
    emb = i3d_embeddings(videos, i3d, resolution=32)
    assert emb.shape == (2, 400)
    assert torch.isfinite(emb).all()


def test_i3d_chunks_do_not_change_embeddings(i3d: InceptionI3D) -> None:
    videos = torch.rand(10, 3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    whole = i3d_embeddings(videos, i3d, resolution=16, chunk_size=16)
    chunked = i3d_embeddings(videos, i3d, resolution=16, chunk_size=2)
    torch.testing.assert_close(whole, chunked, rtol=1e-4, atol=1e-5)


def test_i3d_layout_matches_pytorch_port_names(i3d: InceptionI3D) -> None:
    shapes = {k: tuple(v.shape) for k, v in i3d.state_dict().items()}
    assert shapes["Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7)
    assert shapes["Conv3d_1a_7x7.bn.running_var"] == (64,)
    assert shapes["Conv3d_2c_3x3.conv3d.weight"] == (192, 64, 3, 3, 3)
    assert shapes["Mixed_3b.b1b.conv3d.weight"] == (128, 96, 3, 3, 3)
    assert shapes["Mixed_4b.b0.conv3d.weight"] == (192, 480, 1, 1, 1)
    assert shapes["Mixed_5c.b3b.conv3d.weight"] == (128, 832, 1, 1, 1)
    assert shapes["logits.conv3d.weight"] == (400, 1024, 1, 1, 1)
    assert shapes["logits.conv3d.bias"] == (400,)
    assert not any(k.endswith("conv3d.bias") for k in shapes if not k.startswith("logits"))
    # Inception-v1 I3D has 12,697,264 parameters (BatchNorm scales included).
    assert sum(p.numel() for p in i3d.parameters()) == 12_697_264


def test_i3d_head_equals_port_pooling_at_224(i3d: InceptionI3D) -> None:
    # At 224x224 the last block is 7x7: the port's AvgPool3d((2, 7, 7), stride 1), the logits conv and a
    # mean over the remaining time steps must give the same logits as the head.
    features = torch.randn(2, 1024, 4, 7, 7, generator=torch.Generator().manual_seed(5))
    pooled = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=(1, 1, 1))(features)
    expected = i3d.logits.conv3d(pooled).squeeze(-1).squeeze(-1).mean(dim=2)
    torch.testing.assert_close(i3d.head(features), expected, rtol=1e-5, atol=1e-5)


def test_i3d_head_weights_time_windows_by_hand(i3d: InceptionI3D) -> None:
    # T' = 3 gives two windows (f0 + f1) / 2 and (f1 + f2) / 2: frame weights 1/4, 1/2, 1/4.
    features = torch.randn(1, 1024, 3, 2, 2, generator=torch.Generator().manual_seed(6))
    spatial = features.mean(dim=(-2, -1))[0]
    weighted = 0.25 * spatial[:, 0] + 0.5 * spatial[:, 1] + 0.25 * spatial[:, 2]
    conv = i3d.logits.conv3d
    assert conv.bias is not None
    expected = conv.weight.view(400, 1024) @ weighted + conv.bias
    torch.testing.assert_close(i3d.head(features)[0], expected, rtol=1e-5, atol=1e-5)


def test_i3d_needs_nine_frames(i3d: InceptionI3D) -> None:
    with pytest.raises(ValueError, match=r"x: I3D needs at least 9 frames"):
        i3d(torch.zeros(1, 3, 8, 32, 32))


def test_i3d_rejects_wrong_channels(i3d: InceptionI3D) -> None:
    with pytest.raises(ValueError, match=r"x: expected size 3 for axis 'c'"):
        i3d(torch.zeros(1, 1, 16, 32, 32))


def test_i3d_rejects_bad_bn_eps() -> None:
    with pytest.raises(ValueError, match=r"bn_eps: expected a positive float"):
        InceptionI3D(bn_eps=0.0)
    with pytest.raises(TypeError, match=r"bn_eps: expected a positive float, got str 'x'"):
        InceptionI3D(bn_eps="x")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------
# Weight files
# ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory: pytest.TempPathFactory, i3d: InceptionI3D) -> Path:
    """A port-layout state dict as older PyTorch saved it: no BatchNorm num_batches_tracked entries."""
    state = {k: v.clone() for k, v in i3d.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["Mixed_4d.b2b.bn.running_var"].fill_(2.0)
    path = tmp_path_factory.mktemp("weights") / I3D_FILENAME
    torch.save(state, path)
    return path


def test_from_file_loads_port_layout(i3d_file: Path) -> None:
    net = InceptionI3D.from_file(i3d_file)
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())
    assert torch.all(net.state_dict()["Mixed_4d.b2b.bn.running_var"] == 2.0)


def test_from_file_uses_environment_variable(i3d_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(I3D_ENV_VAR, str(i3d_file))
    assert torch.all(InceptionI3D.from_file().state_dict()["Mixed_4d.b2b.bn.running_var"] == 2.0)


def test_from_file_uses_torch_cache_directory(i3d_file: Path) -> None:
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    (cache / I3D_FILENAME).write_bytes(i3d_file.read_bytes())
    assert torch.all(InceptionI3D.from_file().state_dict()["Mixed_4d.b2b.bn.running_var"] == 2.0)


def test_missing_weights_say_what_to_put_where() -> None:
    with pytest.raises(FileNotFoundError, match=r"I3D Kinetics-400 weights not found") as info:
        InceptionI3D.from_file()
    message = str(info.value)
    assert "path=" in message and I3D_ENV_VAR in message and I3D_FILENAME in message
    assert str(Path(torch.hub.get_dir()) / "checkpoints") in message


def test_path_pointing_nowhere_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"path: I3D Kinetics-400 weights file .* does not exist"):
        InceptionI3D.from_file(tmp_path / "missing.pt")


def test_wrong_shape_names_file_and_key(i3d_file: Path, tmp_path: Path) -> None:
    state = torch.load(i3d_file, weights_only=True)
    state["logits.conv3d.weight"] = torch.zeros(600, 1024, 1, 1, 1)
    bad = tmp_path / "kinetics600.pt"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"kinetics600\.pt.*'logits\.conv3d\.weight' has shape \[600, 1024"):
        InceptionI3D.from_file(bad)


def test_unexpected_key_names_file_and_key(i3d_file: Path, tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in torch.load(i3d_file, weights_only=True).items()}
    bad = tmp_path / "data_parallel.pt"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"data_parallel\.pt.*unexpected key 'module\."):
        InceptionI3D.from_file(bad)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", r"the file is empty \(0 bytes"),
        (None, r"not a PyTorch file, or a truncated or corrupted one \(IndexError"),  # random bytes, seed 2
        (b"PK\x03\x04" + bytes(60), r"truncated or corrupted"),
    ],
    ids=["empty", "random", "bad_zip"],
)
def test_damaged_weights_file_gives_a_one_line_value_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes | None, reason: str
) -> None:
    """Before, random bytes escaped as IndexError/KeyError tracebacks and an empty file gave the reason '()'.

    A ValueError is also what the evaluate CLI catches to skip FVD for a file found through the environment.
    """
    import random

    bad = tmp_path / "i3d.pt"
    bad.write_bytes(random.Random(2).randbytes(2000) if data is None else data)
    monkeypatch.setenv(I3D_ENV_VAR, str(bad))
    for path in (bad, None):
        with pytest.raises(ValueError, match=rf"i3d\.pt': cannot be read as a PyTorch state dict: {reason}") as info:
            InceptionI3D.from_file(path)
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------------
# FVD protocol
# ------------------------------------------------------------------------------------------------------


class _PoolNet(nn.Module):
    """A cheap stand-in embedding: per-channel spatial means of every frame, (n, 3, T, R, R) -> (n, 3T)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_frames: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_frames.append(x.shape[2])
        return x.mean(dim=(-2, -1)).flatten(1)


def _videos(n: int, t: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(t, n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_compute_fvd_identical_sets_is_zero_and_records_protocol() -> None:
    net = _PoolNet().eval()
    real = _videos(20)
    result = compute_fvd(real, real.clone(), net, FVDProtocol(n_cond=2, resolution=8))
    assert result.value == pytest.approx(0.0, abs=1e-8)
    assert result.protocol.n_videos == 20
    assert result.protocol.sample == "first" and result.protocol.include_conditioning
    assert result.real_embeddings.shape == (20, 18)


def test_compute_fvd_matches_embedding_route() -> None:
    net = _PoolNet().eval()
    real, fake = _videos(17, seed=1), _videos(17, seed=2)
    protocol = FVDProtocol(resolution=8, chunk_size=5)
    result = compute_fvd(real, fake, net, protocol)
    emb_r = i3d_embeddings(real, net, resolution=8)
    emb_f = i3d_embeddings(fake, net, resolution=8)
    assert result.value > 0
    assert result.value == pytest.approx(fvd_from_embeddings(emb_r, emb_f), rel=1e-9)


def test_compute_fvd_scores_another_generated_set_with_the_real_embeddings_of_an_earlier_call() -> None:
    """Several generated sets against one real set (the paper's five samples): the real videos are embedded once,
    and each value is the one of embedding both sets anew."""
    net = _PoolNet().eval()
    real, fake1, fake2 = _videos(17, seed=1), _videos(17, seed=2), _videos(17, seed=3)
    protocol = FVDProtocol(resolution=8, chunk_size=32)  # one forward pass per set
    first = compute_fvd(real, fake1, net, protocol)
    assert len(net.seen_frames) == 2
    second = compute_fvd(real, fake2, net, protocol, real_embeddings=first.real_embeddings)
    assert len(net.seen_frames) == 3  # the generated set alone
    expected = fvd_from_embeddings(i3d_embeddings(real, net, resolution=8), i3d_embeddings(fake2, net, resolution=8))
    assert second.value == pytest.approx(expected, rel=1e-9) and second.value != pytest.approx(first.value)
    assert second.real_embeddings is first.real_embeddings


def test_compute_fvd_checks_the_real_embeddings_it_is_given() -> None:
    net = _PoolNet().eval()
    real = _videos(17, seed=1)
    emb = compute_fvd(real, _videos(17, seed=2), net, FVDProtocol(resolution=8)).real_embeddings
    with pytest.raises(
        ValueError,
        match=r"real_embeddings: expected the embeddings of the 17 real videos, \(N, D\) "
        r"= \(17, D\), got shape \[16, 18\]",
    ):
        compute_fvd(real, real, net, FVDProtocol(resolution=8), real_embeddings=emb[:16])
    with pytest.raises(ValueError, match=r"real_embeddings: .* got shape \[17, 3, 6\]"):
        compute_fvd(real, real, net, FVDProtocol(resolution=8), real_embeddings=emb.view(17, 3, 6))
    with pytest.raises(TypeError, match=r"real_embeddings: expected a (torch.Tensor|floating-point tensor)"):
        compute_fvd(real, real, net, real_embeddings=emb.numpy())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"real_embeddings: .* got dtype torch.int64"):
        compute_fvd(real, real, net, FVDProtocol(resolution=8), real_embeddings=emb.long())
    with pytest.raises(ValueError, match=r"real_embeddings: expected embeddings of size D = 18 \(the network's\)"):
        compute_fvd(real, real, net, FVDProtocol(resolution=8), real_embeddings=emb[:, :7])


def test_compute_fvd_can_drop_conditioning_frames() -> None:
    net = _PoolNet().eval()
    compute_fvd(_videos(16, t=6), _videos(16, t=6, seed=3), net, FVDProtocol(n_cond=2, include_conditioning=False))
    assert set(net.seen_frames) == {4}


def test_compute_fvd_needs_sixteen_videos() -> None:
    with pytest.raises(ValueError, match=r"FVD needs at least 16 videos per set, got N = 15"):
        compute_fvd(_videos(15), _videos(15), _PoolNet().eval())


def test_compute_fvd_rejects_different_shapes() -> None:
    with pytest.raises(ValueError, match=r"real and fake: expected the same shape"):
        compute_fvd(_videos(16), _videos(17), _PoolNet().eval())


def test_compute_fvd_rejects_network_in_training_mode() -> None:
    with pytest.raises(ValueError, match=r"network: expected eval mode"):
        compute_fvd(_videos(16), _videos(16), _PoolNet().train())


def test_compute_fvd_checks_declared_number_of_videos() -> None:
    with pytest.raises(ValueError, match=r"protocol.n_videos: is 32, but the videos hold N = 16"):
        compute_fvd(_videos(16), _videos(16), _PoolNet().eval(), FVDProtocol(n_videos=32))


def test_compute_fvd_rejects_dropping_every_frame() -> None:
    with pytest.raises(ValueError, match=r"protocol.n_cond: dropping 6 conditioning frames leaves none"):
        compute_fvd(_videos(16), _videos(16), _PoolNet().eval(), FVDProtocol(n_cond=6, include_conditioning=False))


def test_compute_fvd_rejects_other_protocol_types() -> None:
    with pytest.raises(TypeError, match=r"protocol: expected an FVDProtocol"):
        compute_fvd(_videos(16), _videos(16), _PoolNet().eval(), {"resolution": 8})  # type: ignore[arg-type]


def test_protocol_defaults_are_srvp() -> None:
    p = FVDProtocol()
    assert (p.include_conditioning, p.sample, p.resolution, p.resize, p.chunk_size) == (True, "first", 224, "tf1", 16)


@pytest.mark.parametrize(
    ("field", "value", "error", "pattern"),
    [
        ("sample", "median", ValueError, r"sample: expected one of 'first', 'random', 'best', 'worst'"),
        ("resize", "nearest", ValueError, r"resize: expected one of"),
        ("resolution", 0, ValueError, r"resolution: expected an int >= 1"),
        ("chunk_size", 1.5, TypeError, r"chunk_size: expected an int"),
        ("n_cond", -1, ValueError, r"n_cond: expected an int >= 0"),
        ("n_videos", 8, ValueError, r"n_videos: expected an int >= 16"),
        ("include_conditioning", 1, TypeError, r"include_conditioning: expected a bool"),
    ],
)
def test_protocol_validates_fields(field: str, value: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        dataclasses.replace(FVDProtocol(), **{field: value})  # type: ignore[arg-type]


def test_fvd_with_random_i3d_end_to_end(i3d: InceptionI3D) -> None:
    real = torch.rand(9, 16, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    fake = (real + 0.3).clamp(0, 1)
    result = compute_fvd(real, fake, i3d, FVDProtocol(resolution=8))
    same = compute_fvd(real, real, i3d, FVDProtocol(resolution=8))
    assert result.value > 0
    assert same.value == pytest.approx(0.0, abs=1e-6)
    assert result.real_embeddings.shape == (16, 400)


def test_fvd_result_prints_short() -> None:
    """FVDResult printed its embeddings' values (about a thousand characters for 16 videos of 64 features)."""
    from latentdyn.video.fvd import FVDResult

    result = FVDResult(
        value=12.5,
        protocol=FVDProtocol(),
        real_embeddings=torch.randn(16, 400),
        fake_embeddings=torch.randn(16, 400),
    )
    text = repr(result)
    assert text.startswith("FVDResult(value=12.5, protocol=") and len(text) < 600
    assert "real_embeddings=" in text and "[16, 400]" in text.replace("(", "[").replace(")", "]")
