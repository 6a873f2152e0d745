"""Public-boundary checks of the networks, frame selection and helpers: a wrong dtype, size, device, generator or
flag is a TypeError/ValueError naming the argument, not an error from deep inside torch or a silent result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import latentdyn as L
from latentdyn.encoders.content import select_frames
from latentdyn.encoders.conv import DCGANDecoder, DCGANEncoder, VGGDecoder, VGGEncoder
from latentdyn.video import metrics, moving_mnist
from latentdyn.video.datasets import tfrecord
from latentdyn.video.lpips import ScalingLayer

F64 = torch.float64
ENCODERS = (DCGANEncoder, VGGEncoder)
DECODERS = (DCGANDecoder, VGGDecoder)


def _pair(encoder_cls: type, decoder_cls: type) -> tuple[nn.Module, nn.Module]:
    encoder = encoder_cls(image_size=32, base_width=4, code_size=6)
    decoder = decoder_cls(image_size=32, base_width=4, in_features=6, skip=True)
    return encoder, decoder


# ---------------------------------------------------------------------------------------------------------------
# Network inputs: dtype and size (F06)
# ---------------------------------------------------------------------------------------------------------------


def test_deepset_encoder_refuses_other_dtypes() -> None:
    enc = L.DeepSetEncoder(4, 8, 3)
    with pytest.raises(TypeError, match=r"^elements: expected the dtype of the encoder's parameters, torch\.float32"):
        enc(torch.randn(5, 2, 4, dtype=F64))
    with pytest.raises(TypeError, match=r"^elements: expected a floating-point tensor, got dtype torch\.int64"):
        enc(torch.ones(5, 2, 4, dtype=torch.long))
    assert enc.double()(torch.randn(5, 2, 4, dtype=F64)).dtype == F64


def test_posteriors_refuse_other_dtypes() -> None:
    initial = L.InitialStatePosterior(5, n_frames=2, hidden_size=8, n_layers=2, state_size=3)
    with pytest.raises(TypeError, match=r"^codes: expected the dtype of the posterior's parameters, torch\.float32"):
        initial(torch.randn(4, 3, 5, dtype=F64))
    filtering = L.FilteringPosterior(5, 8, 2)
    with pytest.raises(TypeError, match=r"^codes: expected the dtype of the posterior's parameters, torch\.float32"):
        filtering(torch.randn(4, 3, 5, dtype=F64))
    with pytest.raises(TypeError, match=r"^codes: expected a floating-point tensor"):
        filtering(torch.ones(4, 3, 5, dtype=torch.long))
    assert filtering.double()(torch.randn(4, 3, 5, dtype=F64)).mean.dtype == F64


@pytest.mark.parametrize(("encoder_cls", "decoder_cls"), list(zip(ENCODERS, DECODERS)))
def test_conv_networks_refuse_other_dtypes(encoder_cls: type, decoder_cls: type) -> None:
    encoder, decoder = _pair(encoder_cls, decoder_cls)
    x = torch.rand(2, 1, 32, 32)
    skips = encoder(x).skips
    with pytest.raises(TypeError, match=r"^x: expected the dtype of the encoder's parameters, torch\.float32"):
        encoder(x.double())
    with pytest.raises(TypeError, match=r"^h: expected the dtype of the decoder's parameters, torch\.float32"):
        decoder(torch.randn(2, 6, dtype=F64), skips)
    with pytest.raises(TypeError, match=r"^skips\[0\]: expected torch\.float32 or a lower precision"):
        decoder(torch.randn(2, 6), [s.double() for s in skips])
    # An integer skip was silently promoted by torch.cat.
    with pytest.raises(TypeError, match=r"^skips\[0\]: expected a floating-point tensor, got dtype torch\.int64"):
        decoder(torch.randn(2, 6), [s.long() for s in skips])
    # Lower-precision skips are promoted by the concatenation, as before.
    assert decoder(torch.randn(2, 6), [s.bfloat16() for s in skips]).dtype == torch.float32


@pytest.mark.parametrize(("encoder_cls", "decoder_cls"), list(zip(ENCODERS, DECODERS)))
def test_conv_networks_under_autocast_take_float32_inputs(encoder_cls: type, decoder_cls: type) -> None:
    encoder, decoder = _pair(encoder_cls, decoder_cls)
    x = torch.rand(2, 1, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(x)
        frames = decoder(out.code, out.skips)
        assert decoder(torch.randn(2, 6), [s.float() for s in out.skips]).shape == frames.shape
        with pytest.raises(TypeError, match=r"^x: expected float32 or a lower precision under torch\.autocast"):
            encoder(x.double())
    assert frames.shape == (2, 1, 32, 32)


def test_mlp_checks_its_input() -> None:
    mlp = L.MLP(3, 8, 2, 2)
    with pytest.raises(ValueError, match=r"^x: expected size 3 for axis 'd'"):
        mlp(torch.randn(5, 4))
    with pytest.raises(TypeError, match=r"^x: expected the dtype of the mlp's parameters, torch\.float32, got torch"):
        mlp(torch.randn(5, 3, dtype=F64))
    with pytest.raises(TypeError, match=r"^x: expected a floating-point tensor"):
        mlp(torch.ones(5, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"^x: expected a torch\.Tensor, got list"):
        mlp([[1.0, 2.0, 3.0]])
    assert mlp(torch.randn(5, 3)).dtype == torch.float32  # accepted: remembered
    mlp.double()  # the remembered dtype is only a hint: the new one is checked again
    assert mlp(torch.randn(5, 3, dtype=F64)).dtype == F64
    with pytest.raises(TypeError, match=r"^x: expected the dtype of the mlp's parameters, torch\.float64"):
        mlp(torch.randn(5, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert L.MLP(3, 8, 2, 2)(torch.randn(5, 3)).dtype == torch.bfloat16


def test_gaussian_head_checks_the_input_of_a_linear_network() -> None:
    with pytest.raises(ValueError, match=r"^h: expected size 3 for axis 'd'"):
        L.GaussianHead(nn.Linear(3, 4))(torch.randn(2, 4))
    with pytest.raises(TypeError, match=r"^h: expected the dtype of the head's parameters"):
        L.GaussianHead(nn.Sequential(nn.Linear(3, 4)))(torch.randn(2, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"^h: expected size 3 for axis 'd'"):
        L.GaussianHead(L.MLP(3, 8, 4, 2))(torch.randn(2, 5))


class _CastingNet(nn.Module):
    """A network of one's own: it casts its input to its parameters' dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h.to(self.linear.weight.dtype))


def test_networks_of_ones_own_are_not_held_to_the_parameter_dtype() -> None:
    assert L.GaussianHead(_CastingNet())(torch.randn(2, 3, dtype=F64)).mean.dtype == torch.float32
    # An embedding net takes integer inputs: the head does not presume a Linear.
    head = L.GaussianHead(nn.Sequential(nn.Embedding(5, 4)))
    assert head(torch.tensor([0, 3])).mean.shape == (2, 2)


# ---------------------------------------------------------------------------------------------------------------
# BatchNorm with one frame (F08)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder_cls", ENCODERS)
def test_encoder_one_frame_in_training_mode(encoder_cls: type) -> None:
    encoder = encoder_cls(image_size=32, base_width=4, code_size=6)
    with pytest.raises(ValueError, match=r"^x: got a single frame \(N = 1\) in training mode.*N >= 2.*eval\(\)"):
        encoder(torch.rand(1, 1, 32, 32))
    assert encoder.eval()(torch.rand(1, 1, 32, 32)).code.shape == (1, 6)


# ---------------------------------------------------------------------------------------------------------------
# Devices, generators, dtypes (F09) and frame indices (F15)
# ---------------------------------------------------------------------------------------------------------------


def test_frame_selection_checks_device_and_generator() -> None:
    with pytest.raises(ValueError, match=r"^device: expected a device such as 'cpu'"):
        L.random_distinct_frames(6, 2, 3, device="foo")
    with pytest.raises(TypeError, match=r"^generator: expected a torch\.Generator or None, got int 1"):
        L.random_distinct_frames(6, 2, 3, generator=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^device: expected a torch\.device, a device string"):
        L.last_frames(6, 2, 3, device=3.5)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(0)
    assert L.random_distinct_frames(6, 2, 3, device=torch.device("cpu"), generator=gen).shape == (2, 3)


def test_gaussian_window_checks_dtype_and_device() -> None:
    with pytest.raises(TypeError, match=r"^dtype: expected a floating-point torch\.dtype, got str 'float32'"):
        metrics.gaussian_window(dtype="float32")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^dtype: expected a floating-point torch\.dtype .*got torch\.int64"):
        metrics.gaussian_window(dtype=torch.int64)
    with pytest.raises(ValueError, match=r"^device: expected a device such as 'cpu'"):
        metrics.gaussian_window(device="nope")
    assert metrics.gaussian_window(dtype=F64, device="cpu").sum().item() == pytest.approx(1.0)


def test_last_frames_is_a_tensor_of_its_own() -> None:
    idx = L.last_frames(6, 2, 3)
    assert idx.is_contiguous()
    idx.add_(-1)  # a broadcast view refused in-place writes
    assert idx.tolist() == [[3, 3, 3], [4, 4, 4]]


def test_select_frames_check_is_a_bool() -> None:
    codes, idx = torch.randn(4, 2, 3), torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(TypeError, match=r"^check: expected a bool"):
        select_frames(codes, idx, check="no")  # type: ignore[arg-type]
    assert select_frames(codes, idx, check=False).shape == (1, 2, 3)


# ---------------------------------------------------------------------------------------------------------------
# TFRecord helpers (F10)
# ---------------------------------------------------------------------------------------------------------------


def test_tfrecord_helpers_name_wrong_kinds(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"^features: expected str feature names, got int 1"):
        tfrecord.encode_example({1: b"x"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"^features: expected a mapping"):
        tfrecord.encode_example([("a", b"x")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^data: expected bytes, a bytearray, a memoryview or a numpy array, got str"):
        tfrecord.crc32c("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^data: expected bytes"):
        tfrecord.masked_crc32c(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^record: expected bytes, a bytearray or a memoryview, got str"):
        tfrecord.parse_example("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^record: expected bytes, a bytearray or a memoryview, got int"):
        tfrecord.parse_example(5)  # type: ignore[arg-type]  # bytes(5) read as five zero bytes
    record = tfrecord.encode_example({"a": b"x"})
    assert tfrecord.parse_example(memoryview(record)) == {"a": [b"x"]}
    assert tfrecord.crc32c(bytearray(b"abc")) == tfrecord.crc32c(b"abc")
    path = tfrecord.write_tfrecord(tmp_path / "a.tfrecord", [record])
    with pytest.raises(TypeError, match=r"^verify: expected a bool"):
        list(tfrecord.iter_tfrecord(path, verify="False"))  # type: ignore[arg-type]
    assert list(tfrecord.iter_tfrecord(path, verify=False)) == [record]


# ---------------------------------------------------------------------------------------------------------------
# LPIPS scaling (F11)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_scaling_layer_takes_rgb_frames_only(channels: int) -> None:
    with pytest.raises(ValueError, match=r"^x: expected RGB frames \(N, 3, H, W\).*repeat grayscale frames"):
        ScalingLayer()(torch.rand(2, channels, 4, 4))


def test_scaling_layer_checks_the_kind() -> None:
    with pytest.raises(TypeError, match=r"^x: expected a floating-point tensor"):
        ScalingLayer()(torch.ones(2, 3, 4, 4, dtype=torch.long))
    assert ScalingLayer()(torch.zeros(2, 3, 4, 4, dtype=F64)).dtype == F64


# ---------------------------------------------------------------------------------------------------------------
# Flags (F16's kind elsewhere)
# ---------------------------------------------------------------------------------------------------------------


def test_save_test_set_flags_are_bools(tmp_path: Path) -> None:
    data = moving_mnist.make_test_set(np.zeros((4, 28, 28), np.uint8), np.arange(4), seq_len=3, deterministic=False)
    path = moving_mnist.save_test_set(tmp_path / "a.npz", data)
    with pytest.raises(TypeError, match=r"^overwrite: expected a bool"):
        moving_mnist.save_test_set(path, data, overwrite="False")  # type: ignore[arg-type]  # read as True
    with pytest.raises(TypeError, match=r"^compress: expected a bool"):
        moving_mnist.save_test_set(tmp_path / "b.npz", data, compress="no")  # type: ignore[arg-type]


def test_a_lazy_linear_head_learns_its_input_size() -> None:
    """A LazyLinear says in_features = 0 until its first call: the head's check let no input reach it."""
    from latentdyn.distributions import GaussianHead

    for net in (nn.LazyLinear(6), nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 6))):
        dist = GaussianHead(net)(torch.randn(5, 4))
        assert dist.mean.shape == (5, 3)


class _CastingLinear(nn.Linear):
    """A Linear of one's own that takes any tensor (token ids too) and casts it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype))


def test_a_linear_of_ones_own_may_take_integer_inputs() -> None:
    from latentdyn.distributions import GaussianHead

    head = GaussianHead(_CastingLinear(4, 6))
    assert head(torch.ones(5, 4, dtype=torch.long)).mean.shape == (5, 3)
    with pytest.raises(TypeError, match=r"h: expected a torch.Tensor, got list"):
        head([[1.0] * 4])  # type: ignore[arg-type]


def test_an_index_out_of_range_names_the_videos(tmp_path: Path) -> None:
    from latentdyn.video.datasets import VideoFolderDataset, write_video

    for i in range(2):
        frames = np.arange(6, dtype=np.uint8).repeat(8 * 8 * 3).reshape(6, 8, 8, 3) * 40  # (distinct frames)
        write_video(tmp_path / f"v{i}.gif", frames, 10)
    data = VideoFolderDataset(tmp_path, seq_len=3)
    assert data.draw(-1).video == 1
    with pytest.raises(IndexError, match=r"index: 2 is not one of the dataset's 2 videos \(0 to 1\)"):
        data[2]
