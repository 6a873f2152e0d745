"""Learned perceptual image patch similarity (LPIPS), AlexNet backbone, linear layers v0.1.

This is the metric SRVP reports: ``net-lin`` with an ImageNet AlexNet and the v0.1 linear
calibration of Zhang et al. (2018). For two frames ``x`` and ``y`` in ``[-1, 1]`` the distance is

    d(x, y) = Σ_k  mean_{h,w}  Σ_c  w_kc · ( f̂_k(x)_chw − f̂_k(y)_chw )²,

where ``f_k`` is the k-th ReLU output of the backbone applied to the shifted and scaled input
``(x − shift) / scale``, ``f̂_k = f_k / (‖f_k‖_c + 1e-10)`` is normalised to unit length over channels at
every pixel, and ``w_k ≥ 0`` are the learned 1×1 linear weights (no bias).

Frames are **not resized** (SRVP scores 64×64 frames as they are) and grayscale frames are repeated to three
channels. The backbone is a plain module returning a list of feature maps, so a reduced network (one layer,
a few channels) can stand in for AlexNet in tests.

Weights are not downloaded. :meth:`LPIPS.from_files` finds

* the torchvision ImageNet AlexNet file ``alexnet-owt-7be5be79.pth`` (user-supplied: pass its path, set
  ``LATENTDYN_ALEXNET_WEIGHTS``, or put it where torchvision caches it, ``torch.hub.get_dir()/checkpoints/``);
* the v0.1 linear weights, shipped in ``latentdyn/data/lpips_alex_v0.1.pth`` (BSD-2-Clause, see
  ``latentdyn/data/README.md``), which an argument, ``LATENTDYN_LPIPS_WEIGHTS`` or a file of the same name in
  the torch cache directory override.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from einops import pack, unpack
from torch import nn

from latentdyn._checks import check_float_tensor, check_shape, is_int
from latentdyn._files import unsafe_global
from latentdyn.video._frames import channels_last_hint, check_frame_pair, check_value_range

__all__ = [
    "ALEXNET_ENV_VAR",
    "ALEXNET_FILENAME",
    "LPIPS",
    "LPIPS_ENV_VAR",
    "LPIPS_LIN_FILENAME",
    "AlexNetFeatures",
    "ScalingLayer",
    "normalize_channels",
]

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
"""File name of torchvision's ImageNet AlexNet weights (also its name in the torch cache directory)."""
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_ENV_VAR = "LATENTDYN_ALEXNET_WEIGHTS"
LPIPS_LIN_FILENAME = "lpips_alex_v0.1.pth"
"""File name of the LPIPS v0.1 AlexNet linear weights (shipped copy and torch cache directory)."""
LPIPS_ENV_VAR = "LATENTDYN_LPIPS_WEIGHTS"
SHIPPED_LIN_PATH = Path(__file__).resolve().parent.parent / "data" / LPIPS_LIN_FILENAME

# Published ScalingLayer constants of the LPIPS code: inputs in [-1, 1] are shifted and scaled per channel.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_NORM_EPS = 1e-10


# --------------------------------------------------------------------------------------------------------
# Weight files: where to find them, how to read and check them (shared with latentdyn.video.fvd)
# --------------------------------------------------------------------------------------------------------


def _resolve_weights_path(
    argument: str | os.PathLike[str] | None,
    *,
    env_var: str,
    filename: str,
    what: str,
    source: str,
    argument_name: str,
    shipped: Path | None = None,
) -> Path:
    """Find a weights file: the argument, then ``env_var``, then the torch cache dir, then ``shipped``.

    An explicit argument or environment variable that points nowhere is an error, not a reason to look
    elsewhere: silently using another file would hide a typo.
    """
    if argument is not None:
        path = Path(argument).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{argument_name}: {what} file {str(path)!r} does not exist")
        return path
    from_env = os.environ.get(env_var)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{env_var} is set to {from_env!r}, but no {what} file exists there; fix the variable or unset it"
            )
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    if shipped is not None and shipped.is_file():
        return shipped
    raise FileNotFoundError(
        f"{what} not found. Get {filename!r} ({source}) and do one of: "
        f"(1) pass {argument_name}='/path/to/{filename}'; "
        f"(2) set the environment variable {env_var}=/path/to/{filename}; "
        f"(3) put it at {str(cached)!r} (the torch cache directory, torch.hub.get_dir()/checkpoints)."
    )


def _load_failure(err: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one short line (torch's own messages are paragraphs)."""
    text = " ".join(str(err).split())
    if "Weights only load failed" in text:
        found = unsafe_global(text)
        if found is not None:  # a pickle naming a class or function: refused before anything ran
            return (
                f"it holds Python objects other than tensors ({found}), which weights_only=True "
                "refuses (nothing was unpickled)"
            )
        detail = text.partition("WeightsUnpickler error: ")[2].split(" Check the documentation")[0].rstrip(". ")
        return "not a PyTorch file, or a truncated or corrupted one" + (f" ({detail})" if detail else "")
    if "PytorchStreamReader" in text:  # keep the first sentence of torch's long explanation
        return f"truncated or corrupted ({text.split('. ')[0]})"
    # Random or damaged bytes make the unpickler fail in many ways: EOFError, IndexError, KeyError,
    # UnicodeDecodeError, UnpicklingError...
    detail = f"{type(err).__name__}: {text}" if text else type(err).__name__
    if len(detail) > 160:
        detail = detail[:157] + "..."
    return f"not a PyTorch file, or a truncated or corrupted one ({detail})"


_KNOWN_SHA256 = {
    # torch hub's convention: the name of torchvision's file carries the start of its SHA-256
    ALEXNET_FILENAME: "7be5be79",
    # the lpips 0.1.4 wheel's weights/v0.1/alex.pth, shipped byte for byte (latentdyn/data/README.md)
    LPIPS_LIN_FILENAME: "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
}
"""The SHA-256 (or its start) of the published weight files, by name: a file of such a name must have it."""


def _check_known_digest(path: Path) -> None:
    """A file named as a published weight file (:data:`_KNOWN_SHA256`) holds exactly that file: a flipped bit
    or a partial copy loads without an error from torch, and would change every score silently."""
    expected = _KNOWN_SHA256.get(path.name)
    if expected is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    got = digest.hexdigest()
    if not got.startswith(expected):
        raise ValueError(
            f"{str(path)!r}: not the published {path.name} (its SHA-256 begins {got[:8]}, the published file's "
            f"{expected[:8]}): a damaged or partial download or copy; get the file again (or, for other weights "
            "on purpose, give them another name)"
        )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``{name: tensor}`` file with ``torch.load(weights_only=True)`` onto the CPU; a file named as a
    published weight file must hold its bytes (checked by SHA-256).

    Raises:
        ValueError: the file cannot be read (empty, not a torch file, truncated or corrupted, or a pickle of
            other objects), is not a state dict, or is named as a published file but differs from it; one line
            naming the file and the reason.
    """
    where = f"{str(path)!r}: cannot be read as a PyTorch state dict"
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ValueError(f"{where} ({err.strerror or err})") from err
    if size == 0:
        raise ValueError(f"{where}: the file is empty (0 bytes; an interrupted download or copy?)")
    try:
        _check_known_digest(path)
    except OSError as err:
        raise ValueError(f"{where} ({err.strerror or err})") from err
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:  # out of memory is not a damaged file (evaluate would skip LPIPS for a damaged one)
        raise
    except Exception as err:  # torch raises many kinds for a damaged file, not only UnpicklingError
        raise ValueError(f"{where}: {_load_failure(err)}") from err
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise ValueError(
            f"{str(path)!r}: expected a state dict (a mapping from parameter names to tensors), "
            f"got {type(loaded).__name__}"
        )
    return dict(loaded)


def _check_state(
    expected: Mapping[str, torch.Size],
    state: Mapping[str, torch.Tensor],
    path: Path,
    *,
    optional: tuple[str, ...] = (),
) -> None:
    """Check that ``state`` has exactly the ``expected`` keys and shapes, naming the file and key on error.

    Args:
        expected: the shape of every key the receiving module needs.
        state: the tensors read from ``path`` (already filtered of entries that are ignored on purpose).
        path: the file, for messages.
        optional: suffixes of ``expected`` keys that may be absent (e.g. ``num_batches_tracked``).
    """
    for key in state:
        if key not in expected:
            raise ValueError(f"{str(path)!r}: unexpected key {key!r} (expected keys like {next(iter(expected))!r})")
    for key, want in expected.items():
        if key not in state:
            if optional and key.endswith(optional):
                continue
            raise ValueError(f"{str(path)!r}: missing key {key!r}")
        got = state[key]
        if tuple(got.shape) != tuple(want):
            raise ValueError(f"{str(path)!r}: key {key!r} has shape {list(got.shape)}, expected {list(want)}")


def _load_checked(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    path: Path,
    *,
    optional: tuple[str, ...] = (),
) -> None:
    """Copy ``state`` into ``module`` after :func:`_check_state` against the module's own state dict."""
    _check_state({k: v.shape for k, v in module.state_dict().items()}, state, path, optional=optional)
    module.load_state_dict(dict(state), strict=False)


# --------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------


class ScalingLayer(nn.Module):
    """Per-channel affine map ``(x − shift) / scale`` of LPIPS, applied to RGB frames in ``[-1, 1]``.

    The constants are built in the input's dtype at every call (not stored as float32 buffers), so a
    float64 computation uses them at full precision.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shift and scale RGB frames.

        Args:
            x: frames in ``[-1, 1]``, shape ``(N, 3, H, W)``.

        Returns:
            The scaled frames, shape ``(N, 3, H, W)``.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: ``x`` is not ``(N, 3, H, W)``: the constants are per RGB channel (:class:`LPIPS` repeats
                grayscale frames to three channels before scaling them).
        """
        c = check_shape(x, "n c h w", "x")["c"]
        if c != 3:
            raise ValueError(
                f"x: expected RGB frames (N, 3, H, W), got shape {list(x.shape)}; the shift and scale are per RGB "
                "channel: repeat grayscale frames to 3 channels first, e.g. x.expand(-1, 3, -1, -1)"
            )
        check_float_tensor(x, "x")
        shift = torch.tensor(_SHIFT, dtype=x.dtype, device=x.device).view(3, 1, 1)
        scale = torch.tensor(_SCALE, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x - shift) / scale

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def normalize_channels(features: torch.Tensor, eps: float = _NORM_EPS) -> torch.Tensor:
    """Unit normalisation over channels ``f / (‖f‖₂ + eps)`` at every pixel, as LPIPS does.

    Args:
        features: feature maps, shape ``(N, C, H, W)``.
        eps: added to the norm (not under the square root), so all-zero features stay zero.

    Returns:
        The normalised maps, shape ``(N, C, H, W)``, in the dtype of ``features``. Half-precision features are
        normalised in float32: in float16 the sum of squares overflows (256 channels of 20 reach 102400, above
        its 65504, and the features came out 0) and ``eps`` rounds to 0 (all-zero features came out NaN).
    """
    work = features.to(torch.promote_types(features.dtype, torch.float32))
    # vector_norm, not square-sum-sqrt: sqrt's infinite slope at 0 times the zero features made the gradient
    # NaN at an all-zero pixel; vector_norm's is 0 there, so the gradient is the true 1/eps.
    norm = torch.linalg.vector_norm(work, dim=1, keepdim=True)
    return (work / (norm + eps)).to(features.dtype)


def _check_min_size(x: torch.Tensor, min_size: int, name: str) -> None:
    """Check that the frames ``x`` (..., H, W) are at least ``min_size`` pixels high and wide."""
    if min(x.shape[-2:]) < min_size:
        raise ValueError(
            f"{name}: expected frames of at least {min_size}×{min_size} pixels (the smallest the AlexNet backbone "
            f"takes; frames are not resized), got shape {list(x.shape)}"
        )


class AlexNetFeatures(nn.Module):
    """AlexNet convolutional trunk returning the five ReLU outputs ``relu1 … relu5`` used by LPIPS.

    The parameters live in ``self.features``, an ``nn.Sequential`` with the indices of torchvision's
    ``alexnet().features`` (convolutions at 0, 3, 6, 8 and 10), so torchvision's ImageNet state dict
    (``features.0.weight`` …) loads into it directly; its ``classifier.*`` entries are not needed.

    The taps follow LPIPS: ``relu1`` after the first convolution, ``relu2`` after max-pooling and the second
    convolution, ``relu3``-``relu5`` after the third to fifth convolutions (the last max-pool is not used).
    For a 64×64 input the maps are 15×15, 7×7, 3×3, 3×3 and 3×3; the smallest input is 31×31
    (:attr:`min_size`), for which the last three maps are 1×1.
    """

    channels: tuple[int, ...] = (64, 192, 384, 256, 256)
    min_size: int = 31
    """The smallest height and width: below it the second max-pooling has nothing left to pool (the first
    convolution maps H to ⌊(H − 7)/4⌋ + 1, each pooling h to ⌊(h − 3)/2⌋ + 1, which must stay >= 1)."""
    _taps: tuple[int, ...] = (1, 4, 7, 9, 11)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU feature maps.

        Args:
            x: scaled RGB frames, shape ``(N, 3, H, W)``, in the dtype of the parameters; H and W at least
                :attr:`min_size` (31).

        Returns:
            ``[relu1, …, relu5]``, shapes ``(N, C_k, H_k, W_k)`` with ``C = (64, 192, 384, 256, 256)``.

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: ``x`` is not (N, 3, H, W), or H or W is below :attr:`min_size`.
        """
        check_shape(x, "n c h w", "x", c=3)
        _check_min_size(x, self.min_size, "x")
        outputs: list[torch.Tensor] = []
        h = x
        for index, layer in enumerate(self.features):
            if index > self._taps[-1]:
                break
            h = layer(h)
            if index in self._taps:
                outputs.append(h)
        return outputs

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, x: torch.Tensor) -> list[torch.Tensor]: ...

    def load_torchvision_weights(self, path: str | os.PathLike[str]) -> None:
        """Load torchvision's ImageNet AlexNet state dict (``alexnet-owt-7be5be79.pth``) from ``path``.

        Only the ``features.*`` entries are used; ``classifier.*`` entries are ignored.

        Args:
            path: the state-dict file.

        Raises:
            ValueError: the file is not a state dict, or a ``features.*`` key is missing, unexpected or has
                the wrong shape (the message names the file and the key).
        """
        file = Path(path)
        state = _read_state_dict(file)
        kept = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        _load_checked(self, kept, file)


# --------------------------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------------------------


class LPIPS(nn.Module):
    """LPIPS distance ``d(x, y) = Σ_k mean_hw Σ_c w_kc (f̂_k(x) − f̂_k(y))²`` between frames in ``[0, 1]``.

    ``LPIPS()`` builds the AlexNet configuration with *random* weights (for tests and shape checks); the
    metric SRVP reports is :meth:`LPIPS.from_files`. Any backbone returning a list of feature maps can be
    used, with one 1×1 linear layer (no bias) per map: ``lins[k]`` holds the weights ``w_k``.

    Args:
        backbone: module mapping scaled frames ``(N, 3, H, W)`` to a list of ``len(channels)`` feature maps
            ``(N, C_k, H_k, W_k)``; default :class:`AlexNetFeatures`.
        channels: the channel count ``C_k`` of each map; required with a custom backbone, default
            ``AlexNetFeatures.channels``.

    Raises:
        TypeError: ``channels`` holds something other than ints.
        ValueError: ``channels`` is missing for a custom backbone, or empty / not positive.
    """

    def __init__(self, *, backbone: nn.Module | None = None, channels: Sequence[int] | None = None) -> None:
        super().__init__()
        if backbone is None:
            backbone = AlexNetFeatures()
            channels = AlexNetFeatures.channels if channels is None else channels
        if channels is None:
            raise ValueError("channels: required with a custom backbone (the channel count of each feature map)")
        channels = tuple(channels)
        if any(not is_int(c) for c in channels):
            raise TypeError(f"channels: expected a non-empty sequence of positive ints, got {channels!r}")
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels: expected a non-empty sequence of positive ints, got {channels!r}")
        channels = tuple(int(c) for c in channels)
        self.channels = channels
        self.scaling = ScalingLayer()
        self.backbone = backbone
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in channels)

    @classmethod
    def from_files(
        cls,
        alexnet_path: str | os.PathLike[str] | None = None,
        lin_path: str | os.PathLike[str] | None = None,
    ) -> LPIPS:
        """The LPIPS metric of the paper: ImageNet AlexNet + v0.1 linear weights, in eval mode, frozen.

        Each path is resolved from the argument, then an environment variable (``LATENTDYN_ALEXNET_WEIGHTS``,
        ``LATENTDYN_LPIPS_WEIGHTS``), then the torch cache directory
        (``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth`` and ``…/lpips_alex_v0.1.pth``), then,
        for the linear weights only, the copy shipped in ``latentdyn/data/``.

        Args:
            alexnet_path: torchvision's ``alexnet-owt-7be5be79.pth`` (keys ``features.0.weight`` …).
            lin_path: the LPIPS v0.1 ``alex.pth`` (keys ``lin0.model.1.weight`` … ``lin4.model.1.weight``).

        Raises:
            FileNotFoundError: a file cannot be found; the message says which file and the three places
                to put it.
            ValueError: a file is not a state dict or has a missing, unexpected or wrongly shaped key.
        """
        alexnet_file = _resolve_weights_path(
            alexnet_path,
            env_var=ALEXNET_ENV_VAR,
            filename=ALEXNET_FILENAME,
            what="AlexNet ImageNet weights",
            source=f"torchvision's ImageNet AlexNet, {ALEXNET_URL}",
            argument_name="alexnet_path",
        )
        lin_file = _resolve_weights_path(
            lin_path,
            env_var=LPIPS_ENV_VAR,
            filename=LPIPS_LIN_FILENAME,
            what="LPIPS v0.1 linear weights",
            source="weights/v0.1/alex.pth of the PerceptualSimilarity code or the `lpips` package",
            argument_name="lin_path",
            shipped=SHIPPED_LIN_PATH,
        )
        metric = cls()
        backbone = metric.backbone
        if not isinstance(backbone, AlexNetFeatures):  # pragma: no cover - cls() always builds AlexNet
            raise TypeError("internal: LPIPS() must build an AlexNetFeatures backbone")
        backbone.load_torchvision_weights(alexnet_file)
        metric.load_lin_weights(lin_file)
        metric.eval()
        metric.requires_grad_(False)
        return metric

    def load_lin_weights(self, path: str | os.PathLike[str]) -> None:
        """Load LPIPS linear weights saved by PerceptualSimilarity (keys ``lin{k}.model.1.weight``).

        Args:
            path: the state-dict file (``alex.pth`` of LPIPS v0.1).

        Raises:
            ValueError: the file is not a state dict, or a key is missing, unexpected or wrongly shaped.
        """
        file = Path(path)
        state = _read_state_dict(file)
        # PerceptualSimilarity wraps each layer as Sequential(Dropout, Conv2d): the conv is "model.1".
        weights = [lin.weight for lin in self._lin_layers()]
        expected = {f"lin{k}.model.1.weight": w.shape for k, w in enumerate(weights)}
        _check_state(expected, state, file)
        with torch.no_grad():
            for k, w in enumerate(weights):
                w.copy_(state[f"lin{k}.model.1.weight"])

    def _lin_layers(self) -> list[nn.Conv2d]:
        return [lin for lin in self.lins if isinstance(lin, nn.Conv2d)]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance between corresponding frames of ``x`` and ``y``.

        The frames are cast to the dtype of the network's parameters (e.g. float16 or float64 frames for the
        float32 metric), so any floating-point frames can be scored.

        Args:
            x: frames in ``[0, 1]``, shape ``(..., C, H, W)`` with ``C`` = 1 (repeated to RGB) or 3;
                floating point. Frames are not resized: with the AlexNet backbone H and W must be at least
                31 (:attr:`AlexNetFeatures.min_size`).
            y: frames, same shape and dtype as ``x``.

        Returns:
            Distances, shape ``(...)``, one per frame pair: float32 for half-precision frames (float16,
            bfloat16), else the dtype of the frames (the network computes in its own dtype either way).

        Raises:
            TypeError: an input is not a floating-point tensor, or the dtypes differ.
            ValueError: fewer than 3 dimensions, different shapes, ``C`` not 1 or 3 (e.g. channels-last
                frames), frames smaller than 31×31 with the AlexNet backbone, or values outside ``[0, 1]``
                (e.g. frames in [0, 255]) or NaN; checking the range reads four numbers back once per call (a
                device synchronisation on GPUs). Also a backbone that returns a number of feature maps other
                than ``len(channels)``.
        """
        a, b, sizes = check_frame_pair(x, y, ("x", "y"), "[0, 1]")
        if sizes["c"] not in (1, 3):
            raise ValueError(
                f"x: expected 1 (grayscale) or 3 (RGB) channels at axis -3, got shape {list(a.shape)}"
                f"{channels_last_hint(sizes, channels_refused=True)}"
            )
        if isinstance(self.backbone, AlexNetFeatures):
            _check_min_size(a, AlexNetFeatures.min_size, "x")
        check_value_range({"x": a, "y": b}, 1.0, "[0, 1]")

        out_dtype = torch.float32 if a.dtype in (torch.float16, torch.bfloat16) else a.dtype
        # The network's own dtype (a convolution refuses inputs of another): the backbone's parameters', else
        # (a backbone without parameters) the linear layers'.
        lins = self._lin_layers()
        net_dtype = next(iter(self.backbone.parameters()), lins[0].weight if lins else a).dtype
        frames, packed_shape = pack([a, b], "* c h w")  # x frames first, then y frames: one backbone pass
        frames = frames.to(net_dtype)
        if sizes["c"] == 1:
            frames = frames.expand(-1, 3, -1, -1)
        feats = self.backbone(self.scaling(frames * 2.0 - 1.0))
        if len(feats) != len(self.lins):
            raise ValueError(
                f"backbone: returned {len(feats)} feature maps, but LPIPS has {len(self.lins)} linear layers"
            )
        n = frames.shape[0] // 2
        total: torch.Tensor | None = None
        for feat, lin in zip(feats, self.lins):
            weight = getattr(lin, "weight", None)
            unit = normalize_channels(feat if weight is None else feat.to(weight.dtype))
            diff = (unit[:n] - unit[n:]).square()
            term = lin(diff).mean(dim=(-2, -1)).squeeze(1).to(out_dtype)
            total = term if total is None else total + term
        if total is None:  # pragma: no cover - channels is non-empty, so there is at least one map
            raise ValueError("backbone: returned no feature map")
        [distance] = unpack(total, packed_shape[:1], "*")
        return distance

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...
