"""Convolutional frame encoders h(x) and decoders g(h) (DCGAN and VGG families, with skip connections).

The 64×64 versions reproduce the SRVP official architectures layer for layer, and their module tree yields the
official state-dict key names, so an official ``encoder.*`` / ``decoder.*`` state dict loads with
``load_state_dict(strict=True)`` once its prefix is stripped.

Shapes use ``N`` for a batch of frames (for videos, the T·B frames folded together), ``C`` channels,
``H = W = image_size``, ``Dh = code_size`` and ``Din = in_features``.

Frame sizes. Every network has ``L = log2(image_size) - 2`` blocks (3, 4, 5 for 32, 64, 128); block ``i`` has
width ``base_width · min(2**i, 8)``. 64 is the official size. For 32 the deepest official block is dropped
(widths nf, 2nf, 4nf); for 128 one more block of width 8nf is appended (widths nf, 2nf, 4nf, 8nf, 8nf), as in
the 128-pixel networks of SVG (Denton & Fergus, 2018). Every encoder ends on a 4×4 map reduced by a valid 4×4
convolution, and every decoder starts from a 4×4 map, whatever the size.

- DCGAN: each encoder block is a 4×4 stride-2 convolution (block 0 without BatchNorm), so block ``i`` outputs
  ``image_size / 2**(i+1)`` pixels. The decoder mirrors it with 4×4 stride-2 transposed convolutions; its last
  block is a bare transposed convolution to ``channels``.
- VGG: 3×3 convolutions; block 0 runs at full size, every later block starts with a 2×2 max-pool, so block
  ``i`` outputs ``image_size / 2**i`` pixels. Blocks 0 and 1 hold two convolutions, the others three. The
  decoder block that mirrors encoder block ``i`` holds as many convolutions and ends with a nearest ×2
  upsampling; the last one ends with a bare 3×3 transposed convolution to ``channels`` instead.

Skip connections: the encoder returns the output of every block (deepest first); decoder block ``j`` receives
``[h, skips[j]]`` (h first, along channels), which doubles its input channels.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from latentdyn._checks import (
    check_bool,
    check_entry_input,
    check_float_tensor,
    check_input_dtype,
    check_int,
    check_positive_int,
    check_shape,
    is_real,
    own_networks,
)
from latentdyn._repr import fields_repr
from latentdyn.nn import _drawn_by, _init_tensor_

__all__ = [
    "SUPPORTED_IMAGE_SIZES",
    "DCGANDecoder",
    "DCGANEncoder",
    "EncoderOutput",
    "FrameDecoder",
    "FrameEncoder",
    "VGGDecoder",
    "VGGEncoder",
    "init_conv_weights_",
]

SUPPORTED_IMAGE_SIZES: tuple[int, ...] = (32, 64, 128)
"""Frame sizes (height = width, in pixels) the convolutional encoders and decoders are built for."""

_LEAKY_SLOPE = 0.2
_MAX_WIDTH_FACTOR = 8


class EncoderOutput(NamedTuple):
    """Frame encoding h(x) and the skip tensors of a frame encoder.

    Attributes:
        code: the encoding, shape ``(N, Dh)``.
        skips: one tensor per encoder block, deepest (smallest) first; shapes are listed by the encoder's
            ``skip_shapes``, each ``(N, C_j, H_j, W_j)``.
    """

    code: torch.Tensor
    skips: list[torch.Tensor]

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


# ------------------------------------------------------------------------------------------------------------
# Argument checks
# ------------------------------------------------------------------------------------------------------------


def _check_image_size(image_size: object) -> int:
    image_size = check_int(image_size, "image_size")
    if image_size not in SUPPORTED_IMAGE_SIZES:
        supported = ", ".join(map(str, SUPPORTED_IMAGE_SIZES))
        raise ValueError(f"image_size: expected one of the supported sizes {supported}, got {image_size}")
    return image_size


def _first_layer(module: nn.Module) -> nn.Module:
    """The layer an input of ``module`` meets first: down the first items of its Sequentials and ModuleLists."""
    while isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module):
        module = module[0]
    return module


def _num_blocks(image_size: int) -> int:
    return int(math.log2(image_size)) - 2


def _widths(base_width: int, n_blocks: int) -> list[int]:
    return [base_width * min(2**i, _MAX_WIDTH_FACTOR) for i in range(n_blocks)]


# ------------------------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------------------------


def _leaky_relu() -> nn.LeakyReLU:
    return nn.LeakyReLU(_LEAKY_SLOPE, inplace=True)


class _FullMapConv2d(nn.Conv2d):
    """A valid convolution whose kernel covers the whole input map (4×4 → 1×1), computed as one matmul.

    Same parameters and state-dict layout as ``nn.Conv2d(c_in, c_out, k, 1, 0, bias=False)``; on a ``k×k``
    input the convolution is a dense layer on the flattened map, which runs 2–4× faster than the
    convolution kernel on CPUs. Other input sizes fall back to the convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = self.groups == 1 and self.padding == (0, 0) and self.dilation == (1, 1) and self.bias is None
        if not plain or x.shape[-2:] != self.weight.shape[-2:]:
            return super().forward(x)
        out = nn.functional.linear(x.flatten(1), self.weight.flatten(1))
        return out[:, :, None, None]


class _PointToMapConvTranspose2d(nn.ConvTranspose2d):
    """A transposed convolution of a 1×1 input into a k×k map, computed as one matmul.

    Same parameters and state-dict layout as ``nn.ConvTranspose2d(c_in, c_out, k, 1, 0, bias=False)``; on a
    1×1 input it is ``h @ W`` reshaped to ``(N, c_out, k, k)``, 3–4× faster than the transposed-convolution
    kernel on CPUs. Other input sizes fall back to the transposed convolution.
    """

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        plain = self.groups == 1 and self.padding == (0, 0) and self.dilation == (1, 1) and self.bias is None
        if not plain or self.output_padding != (0, 0) or x.shape[-2:] != (1, 1) or output_size is not None:
            return super().forward(x, output_size)
        out = x.flatten(1) @ self.weight.flatten(1)
        return out.view(x.shape[0], *self.weight.shape[1:])


def _conv_bn(conv: nn.Module, width: int, activation: nn.Module) -> nn.Sequential:
    """Convolution, BatchNorm, activation (BatchNorm before the activation, as the official code runs)."""
    return nn.Sequential(conv, nn.BatchNorm2d(width), activation)


def _vgg_conv(c_in: int, c_out: int) -> nn.Sequential:
    return _conv_bn(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), c_out, _leaky_relu())


def _vgg_n_convs(block: int) -> int:
    return 2 if block < 2 else 3


# ------------------------------------------------------------------------------------------------------------
# Base classes
# ------------------------------------------------------------------------------------------------------------


class FrameEncoder(nn.Module, abc.ABC):
    """Frame encoder h(x): an image batch to a code and a list of skip tensors.

    Attributes:
        image_size: height = width of the frames, in pixels.
        channels: number of frame channels C.
        code_size: size Dh of the code.
        skip_shapes: ``(C_j, H_j, W_j)`` of every skip tensor, deepest first.
    """

    image_size: int
    channels: int
    code_size: int
    skip_shapes: tuple[tuple[int, int, int], ...]

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> EncoderOutput:
        """Encode frames.

        Args:
            x: frames, shape ``(N, C, H, W)``.

        Returns:
            The code ``(N, Dh)`` and the skip tensors, deepest first.
        """

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, x: torch.Tensor) -> EncoderOutput: ...


class FrameDecoder(nn.Module, abc.ABC):
    """Frame decoder g(h, skips): a feature vector (and optional skip tensors) to frames in (0, 1).

    Attributes:
        image_size: height = width of the frames, in pixels.
        channels: number of frame channels C.
        in_features: size Din of the input vector.
        skip: whether skip tensors are concatenated to the inputs of the blocks.
        skip_shapes: ``(C_j, H_j, W_j)`` of the skip tensor every block expects when ``skip`` is on, deepest
            first (the encoder's ``skip_shapes`` for the same size and widths).
    """

    image_size: int
    channels: int
    in_features: int
    skip: bool
    skip_shapes: tuple[tuple[int, int, int], ...]

    @abc.abstractmethod
    def forward(self, h: torch.Tensor, skips: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Decode feature vectors into frames.

        Args:
            h: features, shape ``(N, Din)``.
            skips: skip tensors, deepest first, each ``(N, C_j, H_j, W_j)``; given exactly when ``skip``
                is on.

        Returns:
            Frames in (0, 1), shape ``(N, C, H, W)``.
        """

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, h: torch.Tensor, skips: Sequence[torch.Tensor] | None = None) -> torch.Tensor: ...


class _ConvStackEncoder(FrameEncoder):
    """Shared forward pass of the convolutional encoders: blocks ``conv``, then ``last_conv``.

    Subclasses build ``self.conv`` (an ``nn.ModuleList``, registered first) and ``self.last_conv``.
    """

    conv: nn.ModuleList
    last_conv: nn.Module

    def _set_sizes(
        self, *, image_size: object, channels: object, base_width: object, code_size: object
    ) -> tuple[int, int, int, int]:
        size = _check_image_size(image_size)
        self.image_size = size
        self.channels = check_positive_int(channels, "channels")
        self.base_width = check_positive_int(base_width, "base_width")
        self.code_size = check_positive_int(code_size, "code_size")
        return size, self.channels, self.base_width, self.code_size

    def extra_repr(self) -> str:
        """The frame size, channels, base width and code size, shown by ``print(encoder)``."""
        return (
            f"image_size={self.image_size}, channels={self.channels}, base_width={self.base_width}, "
            f"code_size={self.code_size}"
        )

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        """Encode frames.

        Args:
            x: frames, shape ``(N, C, H, W)`` with ``C = channels`` and ``H = W = image_size``.

        Returns:
            ``EncoderOutput(code, skips)``: the code tanh(BN(conv(·))) in (-1, 1), shape ``(N, Dh)``, and the
            output of every block, deepest first.

        Raises:
            TypeError: ``x`` is not a floating-point tensor, or (outside ``torch.autocast``) not in the dtype of
                the encoder's parameters.
            ValueError: ``x`` has the wrong rank, channel count or size; a single frame (N = 1) in training mode,
                where BatchNorm cannot compute statistics over the 1×1 code map.
        """
        n = check_shape(x, "n c h w", "x", c=self.channels, h=self.image_size, w=self.image_size)["n"]
        check_entry_input(x, "x", _first_layer(self.conv), "encoder")
        if n == 1 and self.training and self._code_batchnorm_training():
            raise ValueError(
                "x: got a single frame (N = 1) in training mode, where the BatchNorm of the code needs N >= 2 "
                "frames for its batch statistics; encode a batch of 2 or more frames, or call encoder.eval() to "
                "encode one frame with the running statistics"
            )
        skips: list[torch.Tensor] = []
        out = x
        for block in self.conv:
            out = block(out)
            skips.append(out)
        code = rearrange(self.last_conv(out), "n d 1 1 -> n d")
        skips.reverse()
        return EncoderOutput(code=code, skips=skips)

    def _code_batchnorm_training(self) -> bool:
        """Whether a BatchNorm in training mode normalises the 1×1 code map (one value per frame and channel)."""
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in self.last_conv.modules())


class _ConvStackDecoder(FrameDecoder):
    """Shared forward pass of the convolutional decoders: ``first_upconv``, blocks ``conv``, sigmoid.

    Subclasses build ``self.first_upconv`` (registered first) and ``self.conv`` (an ``nn.ModuleList``).
    """

    first_upconv: nn.Module
    conv: nn.ModuleList

    def _set_sizes(
        self, *, image_size: object, channels: object, base_width: object, in_features: object, skip: object
    ) -> tuple[int, int, int, int, bool]:
        size = _check_image_size(image_size)
        self.image_size = size
        self.channels = check_positive_int(channels, "channels")
        self.base_width = check_positive_int(base_width, "base_width")
        self.in_features = check_positive_int(in_features, "in_features")
        self.skip = check_bool(skip, "skip")
        return size, self.channels, self.base_width, self.in_features, self.skip

    def extra_repr(self) -> str:
        """The frame size, channels, base width, input size and skip connections, shown by ``print(decoder)``."""
        return (
            f"image_size={self.image_size}, channels={self.channels}, base_width={self.base_width}, "
            f"in_features={self.in_features}, skip={self.skip}"
        )

    def _check_skips(self, skips: Sequence[torch.Tensor] | None, n: int, ceiling: torch.dtype | None) -> None:
        if not self.skip:
            if skips is not None:
                raise ValueError(
                    "skips: this decoder was built with skip=False and takes no skip tensors, "
                    f"got {type(skips).__name__}; build it with skip=True to use them"
                )
            return
        expected = len(self.skip_shapes)
        if skips is None:
            raise ValueError(
                f"skips: this decoder was built with skip=True and needs {expected} skip tensors "
                "(deepest first), got None"
            )
        if isinstance(skips, torch.Tensor) or not isinstance(skips, Sequence):
            raise TypeError(f"skips: expected a list of {expected} tensors, got {type(skips).__name__}")
        if len(skips) != expected:
            raise ValueError(f"skips: expected {expected} skip tensors (deepest first), got {len(skips)}")
        for j, (s, (c, h, w)) in enumerate(zip(skips, self.skip_shapes, strict=True)):
            check_shape(s, "n c h w", f"skips[{j}]", n=n, c=c, h=h, w=w)
            check_float_tensor(s, f"skips[{j}]")
            if ceiling is not None and torch.promote_types(s.dtype, ceiling) != ceiling:
                raise TypeError(
                    f"skips[{j}]: expected {ceiling} or a lower precision for this decoder, got {s.dtype}, which "
                    f"would promote what the decoder computes; cast it with skips[{j}].to({ceiling})"
                )

    def forward(
        self, h: torch.Tensor, skips: Sequence[torch.Tensor] | None = None, *, skip_repeats: int = 1
    ) -> torch.Tensor:
        """Decode feature vectors into frames.

        Args:
            h: features, shape ``(N, Din)``.
            skips: with ``skip=True``, one tensor per block, deepest first, shapes ``(N / skip_repeats,
                *skip_shapes[j])`` (an encoder's ``EncoderOutput.skips``); with ``skip=False``, ``None``.
            skip_repeats: row ``i`` of ``h`` takes the skips of row ``i mod (N / skip_repeats)`` (e.g. T frames
                of B sequences, time-major, sharing one frame's skips per sequence). Each block's first
                (linear, bias-free) convolution is then split into its part on the running map and its part on
                the skips, the latter computed once per skip row and broadcast: the same function as tiling
                the skips ``skip_repeats`` times, without the copies and the repeated arithmetic (the sums are
                rounded differently).

        Returns:
            Frames in (0, 1) (a sigmoid of the last layer), shape ``(N, C, H, W)``.

        Raises:
            TypeError: ``h`` is not a floating-point tensor, or (outside ``torch.autocast``) not in the dtype of
                the decoder's parameters; ``skips`` is not a sequence, or holds a tensor that is not floating
                point or of a higher precision than those parameters (float32 under autocast).
            ValueError: ``h`` has the wrong shape; skips given to a decoder without skip connections, or
                missing, of the wrong number or with wrong shapes for one with them.
        """
        n = check_shape(h, "n d", "h", d=self.in_features)["n"]
        repeats = check_positive_int(skip_repeats, "skip_repeats")
        if n % repeats:
            raise ValueError(f"skip_repeats: expected a divisor of the {n} rows of h, got {repeats}")
        first = _first_layer(self.first_upconv)
        check_float_tensor(h, "h")
        ceiling = check_input_dtype(h, "h", first, "decoder") if own_networks(first) else None
        self._check_skips(skips, n // repeats, ceiling)
        out = self.first_upconv(rearrange(h, "n d -> n d 1 1"))
        for j, block in enumerate(self.conv):
            if skips is None:
                out = block(out)
            elif repeats == 1:
                out = block(torch.cat([out, skips[j]], dim=1))
            else:
                out = _block_with_shared_skip(block, out, skips[j], repeats)
        return torch.sigmoid(out)

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(
            self, h: torch.Tensor, skips: Sequence[torch.Tensor] | None = None, *, skip_repeats: int = 1
        ) -> torch.Tensor: ...


def _block_with_shared_skip(block: nn.Module, out: torch.Tensor, skip: torch.Tensor, repeats: int) -> torch.Tensor:
    """``block(cat([out, tile(skip, repeats)], 1))`` for ``out`` (repeats·M, ...) and ``skip`` (M, ...), row i of
    ``out`` with row i mod M of ``skip``: the block's first layer, a convolution (linear in its input), runs on
    ``out`` and on ``skip`` with the two parts of its weight, and the skip's part (computed M times, not
    repeats·M) is broadcast-added. A block of other layers tiles the skips."""
    layers = _plain_layers(block)
    conv = layers[0] if layers is not None else None
    padding = getattr(conv, "padding", None)
    if not (
        type(conv) in (nn.Conv2d, nn.ConvTranspose2d)
        and isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))  # (for the type checkers)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and isinstance(padding, tuple)
    ):
        tiled = skip.unsqueeze(0).expand(repeats, *skip.shape).flatten(0, 1)
        return block(torch.cat([out, tiled], dim=1))
    assert layers is not None
    c = out.shape[1]
    if isinstance(conv, nn.ConvTranspose2d):  # weight (in, out, kh, kw); the bias once, in the running map's part
        args = (conv.stride, padding, conv.output_padding, 1, conv.dilation)
        main = F.conv_transpose2d(out, conv.weight[:c], conv.bias, *args)
        side = F.conv_transpose2d(skip, conv.weight[c:], None, *args)
    else:  # weight (out, in, kh, kw)
        main = F.conv2d(out, conv.weight[:, :c], conv.bias, conv.stride, padding, conv.dilation)
        side = F.conv2d(skip, conv.weight[:, c:], None, conv.stride, padding, conv.dilation)
    x = (main.unflatten(0, (repeats, -1)) + side).flatten(0, 1)
    for layer in layers[1:]:
        x = layer(x)
    return x


def _plain_layers(block: nn.Module) -> list[nn.Module] | None:
    """The layers ``block`` runs one after the other, through nested ``nn.Sequential`` s, or None when a
    Sequential (a subclass, or one with hooks) or the first layer has hooks: that may compute something else."""
    if type(block) is not nn.Sequential:
        return None if _hooked(block) else [block]
    if _hooked(block):
        return None
    layers: list[nn.Module] = []
    for child in block:
        inner = _plain_layers(child) if type(child) is nn.Sequential else [child]
        if inner is None:
            return None
        layers += inner
    return None if not layers or _hooked(layers[0]) else layers


def _hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` runs hooks of its own (forward or backward) that calling its function directly
    would skip. Global module hooks (``register_module_forward_hook``) are not looked at: tools such as
    ``FlopCounterMode`` set them, and they would then measure another computation than the one that runs; the split
    convolution's arithmetic still goes through torch's functions, which such tools count."""
    own = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(getattr(module, name, None) for name in own)


# ------------------------------------------------------------------------------------------------------------
# DCGAN
# ------------------------------------------------------------------------------------------------------------


class DCGANEncoder(_ConvStackEncoder):
    """DCGAN frame encoder h(x) = tanh(BN(conv(blocks(x)))) with stride-2 4×4 convolutions.

    At 64×64 this is the official ``DCGAN64Encoder`` (blocks ``nf, 2nf, 4nf, 8nf`` at 32, 16, 8, 4 pixels).

    Args:
        image_size: frame height = width, one of 32, 64, 128.
        channels: frame channels C (``nc``).
        base_width: width of the first block (``nf``).
        code_size: size of the code Dh (``nhx``).

    Raises:
        TypeError: a size is not an int.
        ValueError: ``image_size`` is not one of 32, 64, 128, or a size below 1.
    """

    def __init__(self, *, image_size: int = 64, channels: int = 1, base_width: int = 64, code_size: int = 128) -> None:
        super().__init__()
        size, nc, nf, nh = self._set_sizes(
            image_size=image_size, channels=channels, base_width=base_width, code_size=code_size
        )
        n_blocks = _num_blocks(size)
        widths = _widths(nf, n_blocks)
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(nc, widths[0], 4, 2, 1, bias=False), _leaky_relu())]
        for i in range(1, n_blocks):
            conv = nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1, bias=False)
            blocks.append(_conv_bn(conv, widths[i], _leaky_relu()))
        self.conv = nn.ModuleList(blocks)
        self.last_conv = _conv_bn(_FullMapConv2d(widths[-1], nh, 4, 1, 0, bias=False), nh, nn.Tanh())
        self.skip_shapes = tuple(
            (widths[i], size // 2 ** (i + 1), size // 2 ** (i + 1)) for i in reversed(range(n_blocks))
        )


class DCGANDecoder(_ConvStackDecoder):
    """DCGAN frame decoder g(h) = sigmoid(blocks(upconv(h))) with stride-2 4×4 transposed convolutions.

    At 64×64 this is the official ``DCGAN64Decoder``: a 4×4 map of width 8nf, then blocks to
    ``4nf, 2nf, nf`` (BatchNorm, LeakyReLU) and a bare transposed convolution to C channels.

    Args:
        image_size: frame height = width, one of 32, 64, 128.
        channels: frame channels C produced (``nc``).
        base_width: width of the last hidden block (``nf``).
        in_features: size Din of the input vector (``nh_inf + ny`` in SRVP).
        skip: whether each block takes the matching encoder skip tensor (doubling its input channels).

    Raises:
        TypeError: a size is not an int, or ``skip`` not a bool.
        ValueError: ``image_size`` is not one of 32, 64, 128, or a size below 1.
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        channels: int = 1,
        base_width: int = 64,
        in_features: int = 128,
        skip: bool = False,
    ) -> None:
        super().__init__()
        size, nc, nf, n_in, use_skip = self._set_sizes(
            image_size=image_size,
            channels=channels,
            base_width=base_width,
            in_features=in_features,
            skip=skip,
        )
        n_blocks = _num_blocks(size)
        widths = _widths(nf, n_blocks)
        coef = 2 if use_skip else 1
        self.first_upconv = _conv_bn(
            _PointToMapConvTranspose2d(n_in, widths[-1], 4, 1, 0, bias=False), widths[-1], _leaky_relu()
        )
        blocks: list[nn.Module] = []
        for i in reversed(range(n_blocks)):  # mirrors encoder block i
            if i > 0:
                upconv = nn.ConvTranspose2d(widths[i] * coef, widths[i - 1], 4, 2, 1, bias=False)
                blocks.append(_conv_bn(upconv, widths[i - 1], _leaky_relu()))
            else:
                blocks.append(nn.ConvTranspose2d(widths[0] * coef, nc, 4, 2, 1, bias=False))
        self.conv = nn.ModuleList(blocks)
        self.skip_shapes = tuple(
            (widths[i], size // 2 ** (i + 1), size // 2 ** (i + 1)) for i in reversed(range(n_blocks))
        )


# ------------------------------------------------------------------------------------------------------------
# VGG
# ------------------------------------------------------------------------------------------------------------


class VGGEncoder(_ConvStackEncoder):
    """VGG frame encoder h(x) = tanh(BN(conv(pool(blocks(x))))) with 3×3 convolutions and max-pooling.

    At 64×64 this is the official ``VGG64Encoder`` (blocks ``nf, 2nf, 4nf, 8nf`` at 64, 32, 16, 8 pixels with
    2, 2, 3, 3 convolutions).

    Args:
        image_size: frame height = width, one of 32, 64, 128.
        channels: frame channels C (``nc``).
        base_width: width of the first block (``nf``).
        code_size: size of the code Dh (``nhx``).

    Raises:
        TypeError: a size is not an int.
        ValueError: ``image_size`` is not one of 32, 64, 128, or a size below 1.
    """

    def __init__(self, *, image_size: int = 64, channels: int = 1, base_width: int = 64, code_size: int = 128) -> None:
        super().__init__()
        size, nc, nf, nh = self._set_sizes(
            image_size=image_size, channels=channels, base_width=base_width, code_size=code_size
        )
        n_blocks = _num_blocks(size)
        widths = _widths(nf, n_blocks)
        blocks: list[nn.Module] = []
        for i in range(n_blocks):
            c_in = nc if i == 0 else widths[i - 1]
            layers: list[nn.Module] = [] if i == 0 else [nn.MaxPool2d(2, 2, 0)]
            layers.append(_vgg_conv(c_in, widths[i]))
            layers.extend(_vgg_conv(widths[i], widths[i]) for _ in range(_vgg_n_convs(i) - 1))
            blocks.append(nn.Sequential(*layers))
        self.conv = nn.ModuleList(blocks)
        self.last_conv = nn.Sequential(
            nn.MaxPool2d(2, 2, 0),
            _conv_bn(_FullMapConv2d(widths[-1], nh, 4, 1, 0, bias=False), nh, nn.Tanh()),
        )
        self.skip_shapes = tuple((widths[i], size // 2**i, size // 2**i) for i in reversed(range(n_blocks)))


class VGGDecoder(_ConvStackDecoder):
    """VGG frame decoder g(h) = sigmoid(blocks(up(upconv(h)))) with 3×3 convolutions and ×2 upsampling.

    At 64×64 this is the official ``VGG64Decoder``: a 4×4 map of width 8nf upsampled to 8×8, then blocks of
    3, 3, 2 convolutions (the last one of each narrowing to the next width) each followed by a nearest ×2
    upsampling, and a last block of one convolution and a bare 3×3 transposed convolution to C channels.

    Args:
        image_size: frame height = width, one of 32, 64, 128.
        channels: frame channels C produced (``nc``).
        base_width: width of the last hidden block (``nf``).
        in_features: size Din of the input vector (``nh_inf + ny`` in SRVP).
        skip: whether each block takes the matching encoder skip tensor (doubling its input channels).

    Raises:
        TypeError: a size is not an int, or ``skip`` not a bool.
        ValueError: ``image_size`` is not one of 32, 64, 128, or a size below 1.
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        channels: int = 1,
        base_width: int = 64,
        in_features: int = 128,
        skip: bool = False,
    ) -> None:
        super().__init__()
        size, nc, nf, n_in, use_skip = self._set_sizes(
            image_size=image_size,
            channels=channels,
            base_width=base_width,
            in_features=in_features,
            skip=skip,
        )
        n_blocks = _num_blocks(size)
        widths = _widths(nf, n_blocks)
        coef = 2 if use_skip else 1
        first = _conv_bn(_PointToMapConvTranspose2d(n_in, widths[-1], 4, 1, 0, bias=False), widths[-1], _leaky_relu())
        self.first_upconv = nn.Sequential(first, nn.Upsample(scale_factor=2, mode="nearest"))
        blocks: list[nn.Module] = []
        for i in reversed(range(n_blocks)):  # mirrors encoder block i
            n_convs = _vgg_n_convs(i)
            layers: list[nn.Module] = []
            for k in range(n_convs if i > 0 else n_convs - 1):
                c_in = widths[i] * coef if k == 0 else widths[i]
                c_out = widths[i - 1] if (i > 0 and k == n_convs - 1) else widths[i]
                layers.append(_vgg_conv(c_in, c_out))
            if i > 0:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            else:
                layers.append(nn.ConvTranspose2d(widths[0], nc, 3, 1, 1, bias=False))
            blocks.append(nn.Sequential(*layers))
        self.conv = nn.ModuleList(blocks)
        self.skip_shapes = tuple((widths[i], size // 2**i, size // 2**i) for i in reversed(range(n_blocks)))


# ------------------------------------------------------------------------------------------------------------
# Initialisation
# ------------------------------------------------------------------------------------------------------------


_M = TypeVar("_M", bound=nn.Module)


def init_conv_weights_(module: _M, std: float = 0.02, generator: torch.Generator | None = None) -> _M:
    """Gaussian initialisation N(0, std²) of convolutions and N(1, std²) of BatchNorm scales, in place.

    Every ``Conv*``/``ConvTranspose*`` weight is drawn from N(0, std²) and its bias (if any) set to 0; every
    BatchNorm weight is drawn from N(1, std²) and its bias set to 0. Other modules are left alone. The draws
    follow ``module.apply`` order (children before parents, in registration order), which is the order the
    official SRVP ``init`` uses, so with the same RNG state the same weights come out.

    Args:
        module: the module to initialise (e.g. a :class:`FrameEncoder` or :class:`FrameDecoder`).
        std: standard deviation of the Gaussians (0.02 in SRVP).
        generator: random generator to draw from; the global torch generator when ``None``.

    Returns:
        ``module`` itself.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``, ``std`` is not a real number, or ``generator`` is neither
            a ``torch.Generator`` nor ``None``.
        ValueError: ``std`` is not a positive finite number.

    A parametrized weight (``torch.nn.utils.parametrizations.weight_norm``, ``spectral_norm``) is initialised
    through its parametrization, as in :func:`~latentdyn.init_orthogonal_`; one computed by a hook (the
    deprecated ``torch.nn.utils.weight_norm``) is a ``TypeError``, since an in-place initialisation would change
    nothing.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    if not is_real(std):
        raise TypeError(f"std: expected a positive float, got {type(std).__name__} {std!r}")
    std = float(std)
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std: expected a positive finite float, got {std!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")

    def init_one(m: nn.Module) -> None:
        if isinstance(m, nn.modules.conv._ConvNd):
            _init_tensor_(
                m, "weight", lambda w: _drawn_by(generator, w, lambda t: nn.init.normal_(t, 0.0, std, generator))
            )
            _init_tensor_(m, "bias", nn.init.zeros_)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            _init_tensor_(
                m, "weight", lambda w: _drawn_by(generator, w, lambda t: nn.init.normal_(t, 1.0, std, generator))
            )
            _init_tensor_(m, "bias", nn.init.zeros_)

    module.apply(init_one)
    return module
