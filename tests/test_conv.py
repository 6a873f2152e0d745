"""Tests of the convolutional frame encoders/decoders (latentdyn.encoders.conv).

Contract tests run on every implementation at every supported size; layout tests compare with the official
SRVP state-dict listings (``shared/fixtures/official-keys``); fidelity tests load the official weights
(``shared/fixtures/official/model.pt``, config A with nf = 16) and compare with the official outputs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch
from shared_fixtures import FIXTURES, REQUIRED, needs
from torch import nn

from latentdyn.encoders.conv import (
    SUPPORTED_IMAGE_SIZES,
    DCGANDecoder,
    DCGANEncoder,
    EncoderOutput,
    FrameDecoder,
    FrameEncoder,
    VGGDecoder,
    VGGEncoder,
    init_conv_weights_,
)

NF = 4  # small width for fast contract tests
N = 3  # frames per batch (BatchNorm in train mode needs N > 1 at the 1x1 code)
DTYPES = (torch.float32, torch.float64)


@pytest.fixture(autouse=True)
def _isolated_global_rng() -> Iterator[None]:
    """Module constructors and test inputs draw from the global RNG: seed it, and restore it afterwards."""
    with torch.random.fork_rng(devices=[]):
        yield


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _weighted_sum(tensors: list[torch.Tensor], seed: int) -> torch.Tensor:
    """A loss whose gradient reaches every input element (a plain sum is blind behind BatchNorm)."""
    g = _seeded(seed)
    total = torch.zeros((), dtype=tensors[0].dtype)
    for t in tensors:
        total = total + (t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum()
    return total


def _assert_all_params_get_gradients(module: nn.Module) -> None:
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


# ------------------------------------------------------------------------------------------------------------
# Contract tests
# ------------------------------------------------------------------------------------------------------------


class EncoderContract:
    """Contract every FrameEncoder implementation satisfies, at every supported size."""

    encoder_cls: ClassVar[type[DCGANEncoder | VGGEncoder]]
    decoder_cls: ClassVar[type[DCGANDecoder | VGGDecoder]]

    def make(self, image_size: int, channels: int = 2, code_size: int = 5) -> DCGANEncoder | VGGEncoder:
        return self.encoder_cls(image_size=image_size, channels=channels, base_width=NF, code_size=code_size)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("image_size", SUPPORTED_IMAGE_SIZES)
    def test_shapes_dtype_range_gradients(self, image_size: int, dtype: torch.dtype) -> None:
        enc = self.make(image_size).to(dtype)
        x = torch.rand(N, 2, image_size, image_size, dtype=dtype)
        out = enc(x)
        assert isinstance(out, EncoderOutput)
        assert out.code.shape == (N, 5)
        assert out.code.dtype == dtype
        assert torch.isfinite(out.code).all()
        assert out.code.abs().max() < 1  # tanh
        assert [tuple(s.shape) for s in out.skips] == [(N, *shape) for shape in enc.skip_shapes]
        for s in out.skips:
            assert s.dtype == dtype
            assert torch.isfinite(s).all()
        _weighted_sum([out.code, *out.skips], seed=1).backward()
        _assert_all_params_get_gradients(enc)

    @pytest.mark.parametrize("image_size", SUPPORTED_IMAGE_SIZES)
    def test_skips_deepest_first(self, image_size: int) -> None:
        enc = self.make(image_size)
        sizes = [h for _, h, _ in enc.skip_shapes]
        assert sizes == sorted(sizes)
        assert len(enc.skip_shapes) == {32: 3, 64: 4, 128: 5}[image_size]

    @pytest.mark.parametrize("image_size", SUPPORTED_IMAGE_SIZES)
    def test_skips_feed_decoder_with_skip(self, image_size: int) -> None:
        enc = self.make(image_size)
        dec = self.decoder_cls(image_size=image_size, channels=2, base_width=NF, in_features=7, skip=True)
        assert dec.skip_shapes == enc.skip_shapes
        out = enc(torch.rand(N, 2, image_size, image_size))
        h = torch.cat([torch.randn(N, 2), out.code], dim=1)  # [w, code], as SRVP feeds [w, y]
        x_hat = dec(h, out.skips)
        assert x_hat.shape == (N, 2, image_size, image_size)
        _weighted_sum([x_hat], seed=2).backward()
        _assert_all_params_get_gradients(enc)
        _assert_all_params_get_gradients(dec)

    def test_eval_mode_single_frame(self) -> None:
        enc = self.make(64).eval()
        with torch.no_grad():
            out = enc(torch.rand(1, 2, 64, 64))
        assert out.code.shape == (1, 5)

    def test_official_conventions(self) -> None:
        """Bias-free convolutions, LeakyReLU(0.2), BatchNorm defaults, BatchNorm before the activation."""
        enc = self.make(64)
        for m in enc.modules():
            if isinstance(m, nn.modules.conv._ConvNd):
                assert m.bias is None
            if isinstance(m, nn.LeakyReLU):
                assert m.negative_slope == 0.2
            if isinstance(m, nn.BatchNorm2d):
                assert (m.eps, m.momentum, m.affine, m.track_running_stats) == (1e-5, 0.1, True, True)
            if isinstance(m, nn.Sequential):
                kinds = [type(c) for c in m]
                for a, b in itertools.pairwise(kinds):
                    assert not (a is nn.LeakyReLU and b is nn.BatchNorm2d)

    # -- errors -----------------------------------------------------------------------------------------

    def test_wrong_rank(self) -> None:
        with pytest.raises(ValueError, match=r"x: expected 4 dimensions \(n c h w\), got 3"):
            self.make(32)(torch.rand(2, 32, 32))

    def test_wrong_channels(self) -> None:
        with pytest.raises(ValueError, match=r"x: expected size 2 for axis 'c'.*got shape \[3, 1, 32, 32\]"):
            self.make(32)(torch.rand(3, 1, 32, 32))

    def test_wrong_frame_size(self) -> None:
        with pytest.raises(ValueError, match=r"x: expected size 32 for axis 'h'.*got shape \[3, 2, 64, 64\]"):
            self.make(32)(torch.rand(3, 2, 64, 64))

    def test_integer_frames(self) -> None:
        with pytest.raises(TypeError, match=r"x: expected a floating-point tensor, got dtype torch\.uint8"):
            self.make(32)(torch.zeros(3, 2, 32, 32, dtype=torch.uint8))

    def test_unsupported_image_size(self) -> None:
        with pytest.raises(ValueError, match="image_size: expected one of the supported sizes 32, 64, 128, got 48"):
            self.make(48)

    def test_bad_constructor_arguments(self) -> None:
        with pytest.raises(TypeError, match="image_size: expected an int"):
            self.encoder_cls(image_size=64.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="channels: expected an int >= 1, got 0"):
            self.encoder_cls(channels=0)
        with pytest.raises(TypeError, match="base_width: expected an int"):
            self.encoder_cls(base_width="8")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="code_size: expected an int >= 1, got -1"):
            self.encoder_cls(code_size=-1)


class DecoderContract:
    """Contract every FrameDecoder implementation satisfies, at every size, with or without skips."""

    decoder_cls: ClassVar[type[DCGANDecoder | VGGDecoder]]

    def make(self, image_size: int, skip: bool, in_features: int = 7) -> DCGANDecoder | VGGDecoder:
        return self.decoder_cls(image_size=image_size, channels=2, base_width=NF, in_features=in_features, skip=skip)

    @staticmethod
    def random_skips(dec: FrameDecoder, n: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        return [torch.randn(n, *shape, dtype=dtype, requires_grad=True) for shape in dec.skip_shapes]

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("skip", [False, True])
    @pytest.mark.parametrize("image_size", SUPPORTED_IMAGE_SIZES)
    def test_shapes_dtype_range_gradients(self, image_size: int, skip: bool, dtype: torch.dtype) -> None:
        dec = self.make(image_size, skip).to(dtype)
        assert len(dec.skip_shapes) == {32: 3, 64: 4, 128: 5}[image_size]
        h = torch.randn(N, 7, dtype=dtype, requires_grad=True)
        skips = self.random_skips(dec, N, dtype) if skip else None
        x_hat = dec(h, skips)
        assert x_hat.shape == (N, 2, image_size, image_size)
        assert x_hat.dtype == dtype
        assert torch.isfinite(x_hat).all()
        assert x_hat.min() > 0 and x_hat.max() < 1  # sigmoid
        _weighted_sum([x_hat], seed=3).backward()
        _assert_all_params_get_gradients(dec)
        assert h.grad is not None and h.grad.abs().sum() > 0
        for s in skips or []:
            assert s.grad is not None and s.grad.abs().sum() > 0

    def test_skip_doubles_block_inputs(self) -> None:
        plain, with_skip = self.make(64, False), self.make(64, True)
        for j, (block, block_skip) in enumerate(zip(plain.conv, with_skip.conv, strict=True)):
            first = next(m for m in block.modules() if isinstance(m, nn.modules.conv._ConvNd))
            first_skip = next(m for m in block_skip.modules() if isinstance(m, nn.modules.conv._ConvNd))
            assert first.in_channels == plain.skip_shapes[j][0]
            assert first_skip.in_channels == 2 * first.in_channels

    def test_skip_concatenated_after_h(self) -> None:
        """[h, skip] along channels: zeroing the weights that read the second half removes every skip."""
        dec = self.make(32, True).eval()
        with torch.no_grad():
            for block in dec.conv:
                first = next(m for m in block.modules() if isinstance(m, nn.modules.conv._ConvNd))
                half = first.in_channels // 2
                if isinstance(first, nn.ConvTranspose2d):  # weight (C_in, C_out, k, k)
                    first.weight[half:] = 0
                else:  # weight (C_out, C_in, k, k)
                    first.weight[:, half:] = 0
            h = torch.randn(N, 7)
            a = dec(h, self.random_skips(dec, N))
            b = dec(h, self.random_skips(dec, N))
        torch.testing.assert_close(a, b, atol=0, rtol=0)

    def test_eval_mode_single_frame(self) -> None:
        dec = self.make(64, True).eval()
        with torch.no_grad():
            x_hat = dec(torch.randn(1, 7), self.random_skips(dec, 1))
        assert x_hat.shape == (1, 2, 64, 64)

    # -- errors -----------------------------------------------------------------------------------------

    def test_skips_given_without_skip(self) -> None:
        dec = self.make(32, False)
        skips = self.random_skips(dec, N)
        with pytest.raises(ValueError, match="skips: this decoder was built with skip=False"):
            dec(torch.randn(N, 7), skips)

    def test_skips_missing(self) -> None:
        with pytest.raises(ValueError, match=r"skips: this decoder was built with skip=True and needs 3 skip"):
            self.make(32, True)(torch.randn(N, 7))

    def test_skips_wrong_count(self) -> None:
        dec = self.make(32, True)
        with pytest.raises(ValueError, match=r"skips: expected 3 skip tensors \(deepest first\), got 2"):
            dec(torch.randn(N, 7), self.random_skips(dec, N)[:2])

    def test_skips_wrong_order(self) -> None:
        dec = self.make(32, True)
        with pytest.raises(ValueError, match=r"skips\[0\]: expected size"):
            dec(torch.randn(N, 7), self.random_skips(dec, N)[::-1])

    def test_skips_wrong_batch(self) -> None:
        dec = self.make(32, True)
        with pytest.raises(ValueError, match=r"skips\[0\]: expected size 3 for axis 'n'"):
            dec(torch.randn(N, 7), self.random_skips(dec, N + 1))

    def test_skips_not_a_list(self) -> None:
        dec = self.make(32, True)
        with pytest.raises(TypeError, match="skips: expected a list of 3 tensors, got Tensor"):
            dec(torch.randn(N, 7), torch.randn(3))

    def test_wrong_input_rank(self) -> None:
        with pytest.raises(ValueError, match=r"h: expected 2 dimensions \(n d\), got 4"):
            self.make(32, False)(torch.randn(N, 7, 1, 1))

    def test_wrong_in_features(self) -> None:
        with pytest.raises(ValueError, match=r"h: expected size 7 for axis 'd'"):
            self.make(32, False)(torch.randn(N, 8))

    def test_integer_input(self) -> None:
        with pytest.raises(TypeError, match="h: expected a floating-point tensor"):
            self.make(32, False)(torch.zeros(N, 7, dtype=torch.long))

    def test_bad_constructor_arguments(self) -> None:
        with pytest.raises(ValueError, match="image_size: expected one of the supported sizes 32, 64, 128, got 256"):
            self.decoder_cls(image_size=256)
        with pytest.raises(TypeError, match="skip: expected a bool, got str 'yes'"):
            self.decoder_cls(skip="yes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="in_features: expected an int >= 1, got 0"):
            self.decoder_cls(in_features=0)
        with pytest.raises(ValueError, match="channels: expected an int >= 1, got 0"):
            self.decoder_cls(channels=0)


class TestDCGANEncoder(EncoderContract):
    encoder_cls = DCGANEncoder
    decoder_cls = DCGANDecoder


class TestVGGEncoder(EncoderContract):
    encoder_cls = VGGEncoder
    decoder_cls = VGGDecoder


class TestDCGANDecoder(DecoderContract):
    decoder_cls = DCGANDecoder


class TestVGGDecoder(DecoderContract):
    decoder_cls = VGGDecoder


def _record_outputs(module: nn.Module, kind: type[nn.Module]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Register hooks that record (input, output) of every submodule of type ``kind``."""
    records: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        records.append((inputs[0].detach().clone(), output.detach().clone()))

    for m in module.modules():
        if isinstance(m, kind):
            m.register_forward_hook(hook)
    return records


def test_vgg_encoder_pools_by_max_over_2x2() -> None:
    enc = VGGEncoder(image_size=32, channels=1, base_width=NF, code_size=5)
    records = _record_outputs(enc, nn.MaxPool2d)
    enc(torch.rand(N, 1, 32, 32))
    assert len(records) == 3  # blocks 1, 2 and last_conv
    for inp, out in records:
        windows = inp.unfold(2, 2, 2).unfold(3, 2, 2)  # (N, C, H/2, W/2, 2, 2)
        torch.testing.assert_close(out, windows.amax(dim=(-1, -2)), atol=0, rtol=0)


def test_vgg_decoder_upsamples_by_nearest_x2() -> None:
    dec = VGGDecoder(image_size=32, channels=1, base_width=NF, in_features=7)
    records = _record_outputs(dec, nn.Upsample)
    dec(torch.randn(N, 7))
    assert len(records) == 3  # first_upconv and every block but the last
    for inp, out in records:
        torch.testing.assert_close(out, inp.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3), atol=0, rtol=0)


def test_base_classes_are_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        FrameEncoder()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="abstract"):
        FrameDecoder()  # type: ignore[abstract]


# Skip shapes written out from the documented architecture (widths nf * min(2**i, 8)), deepest first.
_EXPECTED_SKIP_SHAPES: dict[tuple[str, int], list[tuple[int, int, int]]] = {
    ("dcgan", 32): [(16, 4, 4), (8, 8, 8), (4, 16, 16)],
    ("dcgan", 64): [(32, 4, 4), (16, 8, 8), (8, 16, 16), (4, 32, 32)],
    ("dcgan", 128): [(32, 4, 4), (32, 8, 8), (16, 16, 16), (8, 32, 32), (4, 64, 64)],
    ("vgg", 32): [(16, 8, 8), (8, 16, 16), (4, 32, 32)],
    ("vgg", 64): [(32, 8, 8), (16, 16, 16), (8, 32, 32), (4, 64, 64)],
    ("vgg", 128): [(32, 8, 8), (32, 16, 16), (16, 32, 32), (8, 64, 64), (4, 128, 128)],
}


@pytest.mark.parametrize(("family", "image_size"), list(_EXPECTED_SKIP_SHAPES))
def test_documented_skip_shapes(family: str, image_size: int) -> None:
    enc_cls, dec_cls = {"dcgan": (DCGANEncoder, DCGANDecoder), "vgg": (VGGEncoder, VGGDecoder)}[family]
    expected = _EXPECTED_SKIP_SHAPES[(family, image_size)]
    assert list(enc_cls(image_size=image_size, base_width=NF).skip_shapes) == expected
    assert list(dec_cls(image_size=image_size, base_width=NF, skip=True).skip_shapes) == expected


# ------------------------------------------------------------------------------------------------------------
# Official layouts (64x64): key names, shapes, order, parameter counts
# ------------------------------------------------------------------------------------------------------------

_OFFICIAL_CONFIGS: dict[str, dict[str, Any]] = {
    # SPEC §1.12: encoder / decoder parameter counts of the official modules.
    "config_A_smmnist_dcgan": dict(
        family=(DCGANEncoder, DCGANDecoder), in_features=276, skip=False, counts=(3_804_160, 5_016_448)
    ),
    "config_B_kth_vgg_skipco": dict(
        family=(VGGEncoder, VGGDecoder), in_features=306, skip=True, counts=(8_685_632, 13_276_992)
    ),
}


def _build_official(name: str) -> tuple[FrameEncoder, FrameDecoder]:
    cfg = _OFFICIAL_CONFIGS[name]
    enc_cls, dec_cls = cfg["family"]
    enc = enc_cls(image_size=64, channels=1, base_width=64, code_size=128)
    dec = dec_cls(image_size=64, channels=1, base_width=64, in_features=cfg["in_features"], skip=cfg["skip"])
    return enc, dec


@pytest.mark.parametrize("name", list(_OFFICIAL_CONFIGS))
def test_parameter_counts(name: str) -> None:
    enc, dec = _build_official(name)
    counts = (sum(p.numel() for p in enc.parameters()), sum(p.numel() for p in dec.parameters()))
    assert counts == _OFFICIAL_CONFIGS[name]["counts"]


@needs(FIXTURES / "official-keys", "official key layouts")
@pytest.mark.parametrize("name", list(_OFFICIAL_CONFIGS))
def test_official_state_dict_layout(name: str) -> None:
    listing = json.loads((FIXTURES / "official-keys" / f"{name}.json").read_text())
    enc, dec = _build_official(name)
    for prefix, module in (("encoder.", enc), ("decoder.", dec)):
        official = [e for e in listing["state_dict"] if e["key"].startswith(prefix)]
        assert official, f"no {prefix} keys in the listing"
        ours = module.state_dict()
        assert list(ours) == [e["key"][len(prefix) :] for e in official]
        for e in official:
            t = ours[e["key"][len(prefix) :]]
            assert list(t.shape) == e["shape"], e["key"]
            assert str(t.dtype).removeprefix("torch.") == e["dtype"], e["key"]
        param_names = {k for k, _ in module.named_parameters()}
        assert param_names == {e["key"][len(prefix) :] for e in official if e["kind"] == "parameter"}
        assert sum(p.numel() for p in module.parameters()) == listing["n_parameters_by_top_module"][prefix[:-1]]
        # an official-shaped state dict loads strictly
        module.load_state_dict({e["key"][len(prefix) :]: torch.zeros(e["shape"]) for e in official}, strict=True)


# ------------------------------------------------------------------------------------------------------------
# Fidelity to the official weights and outputs (config A, nf = 16)
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official() -> dict[str, Any]:
    base = FIXTURES / "official"
    if not (base / "model.pt").is_file() and not REQUIRED:
        pytest.skip(f"official fixture not found ({base})")
    return {
        "state": torch.load(base / "model.pt", weights_only=True),
        "inputs": torch.load(base / "inputs.pt", weights_only=True),
        "outputs": torch.load(base / "outputs.pt", weights_only=True)["tensors"],
    }


def _sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _official_modules(official: dict[str, Any]) -> tuple[DCGANEncoder, DCGANDecoder]:
    enc = DCGANEncoder(image_size=64, channels=1, base_width=16, code_size=128)
    dec = DCGANDecoder(image_size=64, channels=1, base_width=16, in_features=276, skip=False)
    enc.load_state_dict(_sub_state(official["state"], "encoder."), strict=True)
    dec.load_state_dict(_sub_state(official["state"], "decoder."), strict=True)
    return enc, dec


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_official_encoder_outputs(official: dict[str, Any], mode: str) -> None:
    enc, _ = _official_modules(official)
    enc.train(mode == "train")
    x = official["inputs"]["x"]  # (T, B, C, H, W)
    with torch.no_grad():
        code = enc(x.flatten(0, 1)).code.unflatten(0, x.shape[:2])
    torch.testing.assert_close(code, official["outputs"][f"{mode}/hx"], atol=1e-5, rtol=1e-4)


def test_official_decoder_outputs(official: dict[str, Any]) -> None:
    _, dec = _official_modules(official)
    dec.eval()
    out = official["outputs"]
    prefix = "eval/posterior_zero_noise_dt1/"
    y, w = out[prefix + "y"], out[prefix + "w"]  # (T, B, Dy), (B, Dw)
    h = torch.cat([w.expand(y.shape[0], -1, -1), y], dim=-1)  # decoder input [w, y]
    with torch.no_grad():
        x_rec = dec(h.flatten(0, 1)).unflatten(0, y.shape[:2])
    torch.testing.assert_close(x_rec, out[prefix + "x_rec"], atol=1e-5, rtol=1e-4)


def test_official_seed1_initialisation(official: dict[str, Any]) -> None:
    """torch.manual_seed(1), the official constructor's RNG use, then init: the official weights, bit for bit.

    The constructor builds encoder, decoder, then the other modules (which only consume RNG here, stand-ins
    of the same shapes as in model.pt); ``init`` then applies the conv initialisation.
    """
    state = official["state"]
    with torch.random.fork_rng():
        torch.manual_seed(1)
        enc = DCGANEncoder(image_size=64, channels=1, base_width=16, code_size=128)
        dec = DCGANDecoder(image_size=64, channels=1, base_width=16, in_features=276)
        for key in ("w_proj.0", "w_inf.0", "q_y.module.0.0", "q_y.module.1.1", "q_y.module.2.1"):
            out_f, in_f = state[key + ".weight"].shape
            nn.Linear(in_f, out_f)
        nn.LSTM(state["inf_z.weight_ih_l0"].shape[1], state["inf_z.weight_hh_l0"].shape[1])
        keys = ["q_z"] + [f"p_z.module.{i}.{min(i, 1)}" for i in range(4)]
        keys += [f"dynamics.module.{i}.{min(i, 1)}" for i in range(4)]
        for key in keys:
            out_f, in_f = state[key + ".weight"].shape
            nn.Linear(in_f, out_f)
        init_conv_weights_(enc)
        init_conv_weights_(dec)
    for prefix, module in (("encoder.", enc), ("decoder.", dec)):
        for name, p in module.named_parameters():
            assert torch.equal(p, state[prefix + name]), prefix + name


# ------------------------------------------------------------------------------------------------------------
# Initialisation
# ------------------------------------------------------------------------------------------------------------


def test_init_statistics() -> None:
    extra_conv = nn.Conv2d(3, 8, 3, bias=True)
    linear = nn.Linear(4, 4)
    module = nn.ModuleDict(dict(enc=VGGEncoder(image_size=32, base_width=8), extra=extra_conv, linear=linear))
    linear_before = linear.weight.detach().clone()
    init_conv_weights_(module, std=0.05, generator=_seeded(0))
    conv_w = torch.cat([m.weight.flatten() for m in module.modules() if isinstance(m, nn.Conv2d)])
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_w = torch.cat([m.weight.flatten() for m in bns])
    bn_b = torch.cat([m.bias.flatten() for m in bns])
    n_conv, n_bn = conv_w.numel(), bn_w.numel()
    assert abs(conv_w.mean().item()) < 5 * 0.05 / n_conv**0.5
    assert abs(conv_w.std().item() / 0.05 - 1) < 5 / (2 * n_conv) ** 0.5
    assert abs(bn_w.mean().item() - 1) < 5 * 0.05 / n_bn**0.5
    assert abs(bn_w.std().item() / 0.05 - 1) < 5 / (2 * n_bn) ** 0.5
    assert torch.equal(bn_b, torch.zeros_like(bn_b))
    assert extra_conv.bias is not None and torch.equal(extra_conv.bias, torch.zeros(8))
    assert torch.equal(linear.weight, linear_before)  # not a conv: untouched


def test_init_generator_reproducible() -> None:
    a, b, c = (DCGANDecoder(image_size=32, base_width=4, skip=True) for _ in range(3))
    init_conv_weights_(a, generator=_seeded(5))
    init_conv_weights_(b, generator=_seeded(5))
    init_conv_weights_(c, generator=_seeded(6))
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), name
        if not name.endswith("bias"):
            assert not torch.equal(p, r), name


def test_init_follows_apply_order() -> None:
    """Draws go child-first in registration order: the first conv of block 0 gets the first draws."""
    enc = DCGANEncoder(image_size=32, base_width=4)
    init_conv_weights_(enc, std=1.0, generator=_seeded(3))
    block0 = enc.conv[0]
    assert isinstance(block0, nn.Sequential) and isinstance(block0[0], nn.Conv2d)
    first = block0[0].weight
    expected = torch.randn(first.numel(), generator=_seeded(3)).reshape(first.shape)
    torch.testing.assert_close(first, expected, atol=0, rtol=0)


def test_init_errors() -> None:
    enc = DCGANEncoder(image_size=32, base_width=4)
    with pytest.raises(TypeError, match=r"module: expected a torch\.nn\.Module, got Tensor"):
        init_conv_weights_(torch.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"std: expected a positive finite float, got 0\.0"):
        init_conv_weights_(enc, std=0.0)
    with pytest.raises(TypeError, match=r"std: expected a positive float, got str '0\.02'"):
        init_conv_weights_(enc, std="0.02")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"generator: expected a torch\.Generator or None, got int"):
        init_conv_weights_(enc, generator=0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# Dense fast paths of the full-map convolutions
# ------------------------------------------------------------------------------------------------------------


def _grads(out: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    return torch.autograd.grad(out, tensors, weights)


@pytest.mark.parametrize(
    ("kind", "size"),
    [("conv", 4), ("conv", 6), ("upconv", 1), ("upconv", 2)],  # 4 and 1: the dense paths; 6 and 2: fallbacks
)
def test_dense_paths_equal_the_torch_kernels(kind: str, size: int) -> None:
    """_FullMapConv2d is nn.Conv2d and _PointToMapConvTranspose2d is nn.ConvTranspose2d (values and gradients)."""
    from latentdyn.encoders.conv import _FullMapConv2d, _PointToMapConvTranspose2d

    torch.manual_seed(0)
    if kind == "conv":
        fast: nn.Module = _FullMapConv2d(6, 5, 4, 1, 0, bias=False).double()
        x = torch.randn(3, 6, size, size, dtype=torch.float64, requires_grad=True)
        ref = nn.functional.conv2d(x, fast.weight)
    else:
        fast = _PointToMapConvTranspose2d(7, 3, 4, 1, 0, bias=False).double()
        x = torch.randn(2, 7, size, size, dtype=torch.float64, requires_grad=True)
        ref = nn.functional.conv_transpose2d(x, fast.weight)
        assert ref.shape == (2, 3, size + 3, size + 3)
    out = fast(x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(_grads(out, x, fast.weight), _grads(ref, x, fast.weight), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dense_paths_keep_the_official_module_types() -> None:
    """The fast modules are subclasses of the torch layers, so isinstance checks and init still see them."""
    enc, dec = DCGANEncoder(base_width=4, code_size=8), DCGANDecoder(base_width=4, in_features=8)
    assert isinstance(enc.last_conv[0], nn.Conv2d)
    assert isinstance(dec.first_upconv[0], nn.ConvTranspose2d)


def test_dense_paths_only_take_the_plain_case() -> None:
    """Padding, groups, dilation or output padding make the layer fall back to the torch kernel."""
    from latentdyn.encoders.conv import _FullMapConv2d, _PointToMapConvTranspose2d

    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    for conv in (_FullMapConv2d(4, 6, 3, 1, 1, bias=False), _FullMapConv2d(4, 6, 3, groups=2, bias=False)):
        conv = conv.double()
        ref = nn.functional.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        torch.testing.assert_close(conv(x), ref)
    h = torch.randn(2, 4, 1, 1, dtype=torch.float64)
    for up in (
        _PointToMapConvTranspose2d(4, 6, 3, 2, 1, bias=False),
        _PointToMapConvTranspose2d(4, 6, 3, 2, 0, output_padding=1, bias=False),
        _PointToMapConvTranspose2d(4, 6, 3, groups=2, bias=False),
    ):
        up = up.double()
        ref = nn.functional.conv_transpose2d(
            h, up.weight, None, up.stride, up.padding, up.output_padding, up.groups, up.dilation
        )
        torch.testing.assert_close(up(h), ref)


@pytest.mark.parametrize("family", ["dcgan", "vgg"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_skip_repeats_is_the_tiled_skips_decoded_once_per_skip_row(family: str, train: bool) -> None:
    """``skip_repeats=R`` (row i of h with skip row i mod M) computes what tiling the skips R times computes, in both
    modes (train: BatchNorm over all rows), with gradients, for the DCGAN (bias-free transposed convolutions) and
    VGG (convolutions inside nested Sequentials) decoders; a first convolution with a bias gives it once."""
    torch.manual_seed(0)
    enc = (DCGANEncoder if family == "dcgan" else VGGEncoder)(image_size=32, channels=1, base_width=4, code_size=6)
    dec = (DCGANDecoder if family == "dcgan" else VGGDecoder)(
        image_size=32, channels=1, base_width=4, in_features=6, skip=True
    )
    enc, dec = enc.double(), dec.double()
    if family == "vgg":  # a bias on a split convolution: added once, not once per part
        first = dec.conv[0][0][0]
        assert isinstance(first, nn.Conv2d)
        first.bias = nn.Parameter(torch.randn(first.out_channels, dtype=torch.float64))
    dec.train(train)
    m, repeats = 3, 4
    skips = [s.detach().requires_grad_() for s in enc(torch.rand(m, 1, 32, 32, dtype=torch.float64)).skips]
    h = torch.randn(repeats * m, 6, dtype=torch.float64, requires_grad=True)
    tiled = [s.unsqueeze(0).expand(repeats, *s.shape).flatten(0, 1) for s in skips]
    want = dec(h, tiled)
    got = dec(h, skips, skip_repeats=repeats)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    seed = torch.randn_like(want)
    grads_want = torch.autograd.grad(want, [h, *skips, *dec.parameters()], seed)
    grads_got = torch.autograd.grad(got, [h, *skips, *dec.parameters()], seed)
    for a, b in zip(grads_got, grads_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.equal(dec(h, tiled, skip_repeats=1), want)  # (the default)


def test_skip_repeats_tiles_where_a_layer_has_hooks_and_checks_its_argument() -> None:
    """A hook on a block (or on its first convolution) must see the tiled input it would see without
    skip_repeats, so such a block tiles; skip_repeats must divide the rows of h, and skips have one row per
    sequence."""
    torch.manual_seed(0)
    enc = DCGANEncoder(image_size=32, channels=1, base_width=4, code_size=6)
    dec = DCGANDecoder(image_size=32, channels=1, base_width=4, in_features=6, skip=True).eval()
    skips = enc(torch.rand(2, 1, 32, 32)).skips
    h = torch.randn(6, 6)
    seen: list[int] = []
    first_conv = dec.conv[0][0]
    handle = first_conv.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    tiled = [s.unsqueeze(0).expand(3, *s.shape).flatten(0, 1) for s in skips]
    torch.testing.assert_close(dec(h, skips, skip_repeats=3), dec(h, tiled))
    assert seen == [6, 6]  # the hooked layer ran on all 6 rows both times
    handle.remove()
    with pytest.raises(ValueError, match=r"skip_repeats: expected a divisor of the 6 rows of h, got 4"):
        dec(h, skips, skip_repeats=4)
    with pytest.raises(ValueError, match=r"skips"):
        dec(h, tiled, skip_repeats=3)  # tiled already: 6 skip rows for 6 / 3 = 2 sequences
    with pytest.raises((TypeError, ValueError), match=r"skip_repeats"):
        dec(h, skips, skip_repeats=0)


def test_skip_repeats_runs_backward_hooks_of_the_split_convolution_and_counts_its_flops() -> None:
    """The split ran the first convolution's function directly, skipping its backward hooks (gradient monitors,
    Grad-CAM): such a block tiles, and the hook runs once, as without skip_repeats. Global module hooks are left
    alone, so that FlopCounterMode (which sets them) counts the split computation, the one that runs: fewer FLOPs
    than with the skips tiled."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    enc = DCGANEncoder(image_size=32, channels=1, base_width=4, code_size=6)
    dec = DCGANDecoder(image_size=32, channels=1, base_width=4, in_features=6, skip=True)
    skips = [s.detach() for s in enc(torch.rand(2, 1, 32, 32)).skips]
    h = torch.randn(6, 6, requires_grad=True)
    tiled = [s.unsqueeze(0).expand(3, *s.shape).flatten(0, 1) for s in skips]
    flops = {}
    for name, args in (("split", (skips, 3)), ("tiled", (tiled, 1))):
        counter = FlopCounterMode(display=False)
        with counter:
            dec(h, args[0], skip_repeats=args[1])
        flops[name] = counter.get_total_flops()
    assert 0 < flops["split"] < flops["tiled"]
    first_conv = dec.conv[1][0]
    calls: list[str] = []
    handle = first_conv.register_full_backward_hook(lambda mod, gin, gout: calls.append("backward"))
    dec(h, skips, skip_repeats=3).sum().backward()
    handle.remove()
    assert calls == ["backward"]


def test_srvp_decodes_with_a_decoder_subclass_that_does_not_take_skip_repeats() -> None:
    """SRVP.decode passes skip_repeats to the library's decoders only: a subclass with its own forward(h, skips)
    gets the tiled skips, as before."""
    from examples.srvp.config import ModelConfig
    from examples.srvp.model import SRVP

    class Mine(DCGANDecoder):
        def forward(self, h: torch.Tensor, skips: Any = None) -> torch.Tensor:  # type: ignore[override]
            return super().forward(h, skips)

    torch.manual_seed(0)
    model = SRVP(ModelConfig(conv_width=4, state_size=3, noise_size=2, skip_connections=True)).init_weights().eval()
    x = torch.rand(6, 2, 1, 64, 64)
    with torch.no_grad():
        want = model.reconstruct(x)
        mine = Mine(image_size=64, channels=1, base_width=4, in_features=model.decoder.in_features, skip=True)
        mine.load_state_dict(model.decoder.state_dict())
        model.decoder = mine.eval()
        got = model.reconstruct(x)
    torch.testing.assert_close(got, want)
