"""SRVP configurations: the model (every official option, readable names) and presets.

``ModelConfig`` holds what defines the network and its loss; ``examples/srvp/README.md`` maps every field
to the official command-line option and the paper's symbol. ``TrainConfig`` holds the training, data and
validation options; ``PRESETS`` mirror the official README command lines (listed in docs/srvp.md § Presets).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from latentdyn.encoders.conv import SUPPORTED_IMAGE_SIZES
from latentdyn.integrators import INTEGRATOR_NAMES
from latentdyn.integrators.odeint import ADAPTIVE_METHODS

__all__ = [
    "PRESETS",
    "TOLERANCE_METHODS",
    "ModelConfig",
    "TrainConfig",
    "amp_resolution_missed",
    "check_config_type",
    "check_new_run",
    "config_from_dict",
    "config_to_dict",
    "model_config_from_official",
    "resolve_device",
    "train_config_from_official",
]

FAMILIES = ("srvp", "svglp")
ARCHITECTURES = ("dcgan", "vgg")
TRANSITIONS = ("residual", "mlp", "gru")
DATASETS = ("smmnist", "kth", "human36m", "bair", "folder")
FOLDER_CROPS = ("none", "center")
AMP_MODES = ("none", "bf16", "fp16")
TOLERANCE_METHODS = (*ADAPTIVE_METHODS, "implicit_adams", "fixed_adams")
"""The torchdiffeq methods whose solvers read ``rtol`` and ``atol``: the adaptive ones, and the implicit Adams
methods, whose corrector iterates until it meets them."""
BAIR_FRAMES = 30  # every BAIR video has 30 frames
_DATASET_CHANNELS = {"smmnist": (1,), "kth": (1,), "human36m": (3,), "bair": (3,), "folder": (1, 3)}
_FIXED_SIZE_DATASETS = {"smmnist": "Moving MNIST", "bair": "BAIR"}
"""Datasets whose frames are always 64x64 (the others are converted or resized to ``image_size``)."""


@dataclass(frozen=True)
class ModelConfig:
    """Every option of the SRVP model (defaults: the official defaults; sizes of SM-MNIST)."""

    image_size: int = 64  # nx: frame height = width (32, 64 or 128; the official code has only 64)
    channels: int = 1  # nc: frame channels
    conv_width: int = 64  # nf: base number of conv filters
    code_size: int = 128  # nhx: size of a frame code h(x)
    state_size: int = 20  # ny: latent state y
    noise_size: int = 20  # nz: per-transition noise z
    skip_connections: bool = False  # skipco: encoder->decoder skips from one frame
    n_inference_frames: int = 5  # nt_inf: k, frames read by q(y_0) and by the content encoder
    inference_hidden: int = 256  # nh_inf: width of q(y_0), of the z LSTM and of w
    inference_layers: int = 3  # nlayers_inf: Linear layers of q(y_0)
    residual_hidden: int = 512  # nh_res: width of f and of the prior p(z|y)
    residual_layers: int = 4  # nlayers_res: Linear layers of f and of the prior
    architecture: str = "dcgan"  # archi: "dcgan" or "vgg"
    residual_gain: float = 1.41  # res_gain: orthogonal init gain of f
    n_substeps: int = 1  # n_euler_steps: integration steps per frame in training (dt = 1/n)
    obs_scale: float = 1.0  # obs_scale: std of the Gaussian observation model
    beta_y: float = 1.0  # beta_y: weight of KL(q(y_0) || N(0, I))
    beta_z: float = 1.0  # beta_z: weight of the KL of z
    residual_weight: float = 1.0  # l2_res: lambda, weight of the residual norm penalty
    transition: str = "residual"  # "residual" (SRVP), "mlp" or "gru" (the paper's ablations)
    integrator: str = "euler-ref"  # "euler-ref" (latentdyn's Euler, SRVP) or a torchdiffeq method
    adjoint: bool = False  # adjoint method for torchdiffeq integrators
    integrator_rtol: float = 1e-7  # relative tolerance of the adaptive (dopri5, ...) and implicit Adams methods
    integrator_atol: float = 1e-9  # absolute tolerance of the adaptive and implicit Adams methods
    use_content: bool = True  # content variable w (False: the paper's App. E ablation)
    use_noise: bool = True  # stochastic z (False: deterministic latent ODE)
    family: str = "srvp"  # "srvp", or "svglp" (the image-autoregressive baseline of examples/srvp/svglp.py)

    def __post_init__(self) -> None:
        _check_ints(
            self,
            "image_size channels conv_width code_size state_size n_inference_frames inference_hidden "
            "inference_layers residual_hidden residual_layers n_substeps",
            minimum=1,
        )
        _check_ints(self, "noise_size", minimum=0)
        if self.image_size not in SUPPORTED_IMAGE_SIZES:  # (checked by the encoder too, once built: too late)
            supported = ", ".join(map(str, SUPPORTED_IMAGE_SIZES))
            raise ValueError(f"image_size: expected one of the supported sizes {supported}, got {self.image_size}")
        _check_bools(self, "skip_connections adjoint use_content use_noise")
        if self.use_noise and self.noise_size < 1:
            raise ValueError("noise_size: use_noise=True needs noise_size >= 1, got 0")
        for name in ("family", "architecture", "transition", "integrator"):
            allowed = FIELD_CHOICES[name]
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        if self.transition != "residual" and (self.n_substeps != 1 or self.integrator != "euler-ref"):
            raise ValueError(
                f"transition: {self.transition!r} is a discrete-time cell; it needs n_substeps=1 and "
                f"integrator='euler-ref', got n_substeps={self.n_substeps}, integrator={self.integrator!r}"
            )
        for name in ("integrator_rtol", "integrator_atol"):
            _check_real(getattr(self, name), name, positive=True)
            if getattr(self, name) != getattr(ModelConfig, name) and self.integrator not in TOLERANCE_METHODS:
                raise ValueError(
                    f"{name}: tolerances are for the torchdiffeq methods that read them {TOLERANCE_METHODS}; with "
                    f"integrator={self.integrator!r} it would be ignored"
                )
        if self.transition == "gru" and not self.use_noise:
            raise ValueError("transition: 'gru' takes z as its input, so it needs use_noise=True")
        _check_real(self.obs_scale, "obs_scale", positive=True, what="standard deviation")
        for name in ("beta_y", "beta_z", "residual_weight"):
            _check_real(getattr(self, name), name, positive=False)
        _check_real(self.residual_gain, "residual_gain", positive=True)

    @property
    def z_size(self) -> int:
        """Size of z actually used (0 without noise)."""
        return self.noise_size if self.use_noise else 0


FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "family": FAMILIES,
    "architecture": ARCHITECTURES,
    "transition": TRANSITIONS,
    "integrator": INTEGRATOR_NAMES,
    "dataset": DATASETS,
    "folder_crop": FOLDER_CROPS,
    "amp": AMP_MODES,
}
"""The allowed values of the str options of ``ModelConfig`` and ``TrainConfig``."""


def field_comments(cls: type[Any]) -> dict[str, str]:
    """The one-line comment of each field of a config dataclass (its documentation, e.g. for ``--help``); none
    where the source is not installed (only ``.pyc`` files, a frozen application)."""
    import inspect
    import re

    pattern = re.compile(r"^\s+(\w+): [^=]+=.*?  # (.+)$")
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source file: the flags work, their help lacks the comments
        return {}
    return {m[1]: m[2].strip() for line in source.splitlines() if (m := pattern.match(line))}


def _check_ints(config: Any, names: str, *, minimum: int) -> None:
    """Each field named in ``names`` (space-separated) is a Python int (not a bool: config.json keeps it as
    JSON) >= ``minimum``: ``TypeError`` for another kind, ``ValueError`` for a smaller value."""
    for name in names.split():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
        if value < minimum:
            raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


def _check_bools(config: Any, names: str) -> None:
    """Each field named in ``names`` (space-separated) is a bool: ``"false"`` or ``1`` would be read as true."""
    for name in names.split():
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")


def _parse_device(name: str | torch.device, option: str) -> torch.device:
    """``torch.device(name)``, with an error naming ``option`` for a string torch does not parse."""
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"{option}: expected e.g. 'cpu', 'cuda' or 'cuda:1', got {name!r}") from None


def _check_real(value: object, name: str, *, positive: bool, what: str = "") -> None:
    """A finite real number, > 0 (``positive``) or >= 0; ``what`` names it in the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        expected = f"a positive {what}" if what else f"a finite number {'> 0' if positive else '>= 0'}"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


def check_new_run(cfg: TrainConfig) -> None:
    """Refuse, for a new run, settings that would do nothing or could not train at a usable speed; a saved run is
    read as it was written (runs of earlier versions load, evaluate and resume as they did).

    Raises:
        ValueError: ``adjoint`` with the ``euler-ref`` integrator (nothing to take the adjoint of), or an adaptive
            method under bf16/fp16 autocast with ``integrator_rtol`` below that dtype's eps (the message names
            the field).
    """
    m = cfg.model
    if m.adjoint and m.integrator == "euler-ref" and m.family == "srvp":
        raise ValueError(
            "adjoint: the adjoint method is for the torchdiffeq integrators (integrator='rk4', 'dopri5', ...); "
            "with 'euler-ref' it would be ignored"
        )
    eps = amp_resolution_missed(m, cfg.amp)
    if eps is not None:
        raise ValueError(
            f"integrator_rtol: {m.integrator_rtol:g} is below the resolution of {cfg.amp} autocast (eps "
            f"{eps:g}), which {m.integrator!r} cannot reach; use integrator_rtol >= {eps:g} (e.g. 1e-2), "
            "amp='none', or a fixed-step integrator"
        )


def amp_resolution_missed(model: ModelConfig, amp: str) -> float | None:
    """The eps of ``amp``'s 16-bit dtype when an SRVP model's adaptive solver asks for an ``integrator_rtol``
    below it, else None. Under that autocast the field's layers compute in the 16-bit dtype, and the solver cannot
    bring its error estimate below eps·|f| but by shrinking its steps (about 190 s per SM-MNIST training step
    with dopri5 in bf16); ``OdeintIntegrator`` refuses such a solve."""
    if amp == "none" or model.family != "srvp" or model.integrator not in ADAPTIVE_METHODS:
        return None
    eps = torch.finfo(torch.bfloat16 if amp == "bf16" else torch.float16).eps
    return eps if model.integrator_rtol < eps else None


def resolve_device(name: object, option: str = "--device") -> torch.device:
    """The ``torch.device`` named ``name``, checked to exist on this machine (errors name ``option``).

    Raises:
        TypeError: ``name`` is not a str or ``torch.device``.
        ValueError: an unknown device type, or an accelerator this machine or torch build does not have.
    """
    if not isinstance(name, str | torch.device):
        raise TypeError(f"{option}: expected a device name such as 'cpu' or 'cuda', got {type(name).__name__}")
    device = _parse_device(name, option)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"{option}: {name!r} is not available ({build}, torch {torch.__version__}); use 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"{option}: {name!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type != "cpu":
        available = getattr(torch, device.type, None)
        if available is None or not getattr(available, "is_available", lambda: False)():
            raise ValueError(f"{option}: {name!r} is not available on this machine; use 'cpu' or 'cuda'")
    return device


_Config = TypeVar("_Config")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(config)


def check_config_type(value: object, cls: type, name: str) -> None:
    """Refuse ``value`` unless it is a ``cls`` (a configuration class of this module), naming ``name``.

    A dict is pointed to :func:`config_from_dict`; an object of a class of the same name from another import
    of this module (``importlib.reload``, a notebook's autoreload) is told so, since "expected a ModelConfig,
    got ModelConfig" would not say it.

    Raises:
        TypeError: ``value`` is not a ``cls``.
    """
    if isinstance(value, cls):
        return
    kind = type(value).__name__
    if isinstance(value, dict):
        hint = f"; build one from a dict with config_from_dict({cls.__name__}, d)"
    elif kind == cls.__name__:
        hint = (
            f" of another import of {type(value).__module__} (importlib.reload or a notebook's autoreload made a "
            "new class); rebuild the configuration, or restart the interpreter"
        )
    else:
        hint = ""
    raise TypeError(f"{name}: expected a {cls.__name__}, got {kind}{hint}")


def config_from_dict(cls: type[_Config], data: dict[str, Any], *, name: str = "data") -> _Config:
    """Build the dataclass ``cls`` from ``data``; unknown keys are errors, nested dataclasses are rebuilt.

    A missing option takes its default (files of older versions lack newer options), except a nested
    configuration: a ``TrainConfig`` without its ``model`` would silently be the default model. (A run's
    ``config.json`` keeps the model beside the training options: ``examples.srvp.checkpoint.read_train_config``
    reads both.) ``name`` is what errors call ``data``; a nested section is called by its field's name."""
    if not isinstance(data, dict):
        raise TypeError(f"{name}: expected a dict for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown options {unknown}; known: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for key, f in fields.items():
        target = _dataclass_type(cls, key, f.type)
        if key not in data:
            if target is not None:
                raise ValueError(f"{cls.__name__}: the {key!r} section is missing (a {target.__name__})")
            continue
        kwargs[key] = config_from_dict(target, data[key], name=key) if target is not None else data[key]
    return cls(**kwargs)


def _dataclass_type(cls: type[Any], name: str, ftype: Any) -> type[Any] | None:
    import typing

    hints = typing.get_type_hints(cls)
    hint = hints.get(name, ftype)
    return hint if dataclasses.is_dataclass(hint) and isinstance(hint, type) else None


OFFICIAL_MODEL_OPTIONS: dict[str, str] = {
    "nx": "image_size",
    "nc": "channels",
    "nf": "conv_width",
    "nhx": "code_size",
    "ny": "state_size",
    "nz": "noise_size",
    "skipco": "skip_connections",
    "nt_inf": "n_inference_frames",
    "nh_inf": "inference_hidden",
    "nlayers_inf": "inference_layers",
    "nh_res": "residual_hidden",
    "nlayers_res": "residual_layers",
    "archi": "architecture",
    "res_gain": "residual_gain",
    "n_euler_steps": "n_substeps",
    "obs_scale": "obs_scale",
    "beta_y": "beta_y",
    "beta_z": "beta_z",
    "l2_res": "residual_weight",
}
"""Official ``train.py`` option -> ``ModelConfig`` field."""


def model_config_from_official(options: dict[str, Any]) -> ModelConfig:
    """``ModelConfig`` from the options of an official ``config.json`` (missing options are errors)."""
    missing = sorted(k for k in OFFICIAL_MODEL_OPTIONS if k not in options)
    if missing:
        raise ValueError(f"config.json: missing official options {missing}")
    kwargs: dict[str, Any] = {}
    for official, ours in OFFICIAL_MODEL_OPTIONS.items():
        value = options[official]
        field_type = {f.name: f.type for f in dataclasses.fields(ModelConfig)}[ours]
        if field_type == "float":
            value = float(value)
        elif field_type == "bool":
            value = bool(value)
        kwargs[ours] = value
    return ModelConfig(**kwargs)


@dataclass(frozen=True)
class TrainConfig:
    """Training, data and validation options (defaults: the official ones)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: str = "smmnist"  # smmnist (Moving MNIST), kth, human36m, bair or folder (your videos: a folder or an .npz)
    data_dir: str = "embedded"  # smmnist: MNIST directory or "embedded"; others: OUT_DIR of the data command
    num_digits: int = 2  # ndigits: digits per Moving MNIST clip
    max_speed: int = 4  # max_speed: Moving MNIST velocity bound
    deterministic: bool = False  # deterministic: bounces keep the velocity
    subsampling: int = 8  # subsampling: Human3.6M clips keep one raw (50 fps) frame in this many
    folder_crop: str = "none"  # folder: "none" (stretch to image_size) or "center" (largest centred square)
    folder_frame_step: int = 1  # folder: keep one frame in this many (frames resized to image_size, nc=1: luma)
    seq_len: int = 15  # seq_len: training clip length
    batch_size: int = 128  # batch_size
    lr: float = 3e-4  # lr: Adam learning rate
    lr_burnin: int = 1_000_000  # lr_scheduling_burnin: steps at constant lr
    lr_decay: int = 100_000  # lr_scheduling_n_iter: steps of linear decay to 0 after the burn-in
    nt_cond: int = 5  # nt_cond: conditioning frames in validation and test
    seq_len_test: int = 0  # seq_len_test: validation clip length (0: seq_len)
    val_interval: int = 20_000  # val_interval: steps between validations
    val_sequences: int = 400  # n_iter_test * batch_size_test: validation clips (fixed, from held-out digits)
    val_batch_size: int = 16  # batch_size_test
    val_samples: int = 100  # n_samples_test: samples per validation clip (best of N)
    checkpoint_interval: int = 1000  # steps between checkpoints/last.pt writes (also at the end)
    seed: int = 1  # seed of the model init, the data stream and the noise
    n_workers: int = -1  # DataLoader workers (-1: none on a CPU, up to 8 on a GPU); spawned ones copy Human3.6M
    device: str = "cpu"  # cpu, cuda, cuda:1 ...
    amp: str = "none"  # none, bf16 or fp16 autocast (loss terms in fp32)
    compile: bool = False  # torch.compile the model
    channels_last: bool = False  # channels_last memory format for the conv nets
    max_minutes: float = 0.0  # stop (with a checkpoint) after this many minutes; 0: no budget
    max_steps: int = 0  # stop (with a checkpoint) after this global step; 0: the end of the lr schedule
    threads: int = 0  # torch CPU threads (0: torch's default)

    @property
    def n_iter(self) -> int:
        """Total number of steps: burn-in plus decay."""
        return self.lr_burnin + self.lr_decay

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {DATASETS}, got {self.dataset!r}")
        if not isinstance(self.data_dir, str):
            raise TypeError(f"data_dir: expected a str (a directory or file), got {type(self.data_dir).__name__}")
        channels = _DATASET_CHANNELS.get(self.dataset)
        if channels is not None and self.model.channels not in channels:
            raise ValueError(
                f"channels: the {self.dataset!r} dataset has {' or '.join(map(str, channels))}-channel frames, "
                f"got channels={self.model.channels}"
            )
        fixed = _FIXED_SIZE_DATASETS.get(self.dataset)
        if fixed is not None and self.model.image_size != 64:
            raise ValueError(f"image_size: {fixed} frames are 64x64, got image_size={self.model.image_size}")
        if self.folder_crop not in FOLDER_CROPS:
            raise ValueError(f"folder_crop: expected one of {FOLDER_CROPS}, got {self.folder_crop!r}")
        if not isinstance(self.device, str):
            raise TypeError(f"device: expected a str such as 'cpu' or 'cuda', got {type(self.device).__name__}")
        _parse_device(self.device, "device")  # the format only: whether it exists is checked where it is used
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp: expected one of {AMP_MODES}, got {self.amp!r}")
        _check_ints(
            self,
            "num_digits seq_len batch_size nt_cond val_interval val_sequences val_batch_size val_samples "
            "checkpoint_interval subsampling folder_frame_step",
            minimum=1,
        )
        _check_ints(self, "lr_burnin lr_decay seed threads max_steps seq_len_test max_speed", minimum=0)
        _check_ints(self, "n_workers", minimum=-1)
        _check_bools(self, "deterministic compile channels_last")
        _check_real(self.lr, "lr", positive=True)
        _check_real(self.max_minutes, "max_minutes", positive=False)
        if self.n_iter < 1:
            raise ValueError(
                f"lr_burnin, lr_decay: expected >= 0 with a positive sum, got {self.lr_burnin}, {self.lr_decay}"
            )
        if self.seq_len < self.model.n_inference_frames:
            raise ValueError(
                f"seq_len: expected at least n_inference_frames={self.model.n_inference_frames}, got {self.seq_len}"
            )
        if self.nt_cond < self.model.n_inference_frames:
            raise ValueError(
                f"nt_cond: expected at least n_inference_frames={self.model.n_inference_frames}, got {self.nt_cond}"
            )
        if self.test_len <= self.nt_cond:
            raise ValueError(f"seq_len_test: expected more than nt_cond={self.nt_cond} frames, got {self.test_len}")
        if self.dataset == "bair":
            for name, value in (("seq_len", self.seq_len), ("seq_len_test", self.test_len)):
                if value > BAIR_FRAMES:
                    raise ValueError(f"{name}: BAIR videos have {BAIR_FRAMES} frames, got {value}")

    @property
    def test_len(self) -> int:
        """Validation clip length."""
        return self.seq_len_test or self.seq_len


# --------------------------------------------------------------------------------------------------- presets
def _paper(model: dict[str, Any], **train: Any) -> TrainConfig:
    return TrainConfig(model=ModelConfig(**model), **train)


_REAL_VIDEO_MODEL: dict[str, Any] = dict(
    state_size=50, noise_size=50, n_substeps=2, architecture="vgg", skip_connections=True
)
"""Model options the official KTH, Human3.6M and BAIR command lines share."""

PRESETS: dict[str, Callable[[], TrainConfig]] = {
    # The official README command lines.
    "smmnist": lambda: _paper(
        dict(state_size=20, noise_size=20, n_inference_frames=5, beta_z=2.0),
        seq_len=15,
        nt_cond=5,
        batch_size=128,
        lr_burnin=1_000_000,
        lr_decay=100_000,
    ),
    "smmnist-deterministic": lambda: _paper(
        dict(state_size=20, noise_size=20, n_inference_frames=5, beta_z=2.0),
        deterministic=True,
        seq_len=15,
        nt_cond=5,
        batch_size=128,
        lr_burnin=800_000,
        lr_decay=100_000,
    ),
    # KTH, Human3.6M and BAIR read converted data: give --data-dir OUT_DIR (see `python -m examples.srvp.data`).
    "kth": lambda: _paper(
        dict(_REAL_VIDEO_MODEL, channels=1, residual_gain=1.2, n_inference_frames=3, obs_scale=0.2),
        dataset="kth",
        data_dir="",
        seq_len=20,
        nt_cond=10,
        seq_len_test=30,
        batch_size=100,
        lr_burnin=150_000,
        lr_decay=50_000,
        val_interval=5_000,
        val_batch_size=16,
        val_sequences=25 * 16,
    ),
    "human36m": lambda: _paper(
        dict(_REAL_VIDEO_MODEL, channels=3, residual_gain=1.2, n_inference_frames=3, obs_scale=0.2),
        dataset="human36m",
        data_dir="",
        subsampling=8,
        seq_len=16,
        nt_cond=8,
        seq_len_test=53,
        batch_size=100,
        lr_burnin=325_000,
        lr_decay=25_000,
        val_interval=20_000,
        val_batch_size=8,
        val_sequences=25 * 8,
    ),
    "bair": lambda: _paper(
        dict(_REAL_VIDEO_MODEL, channels=3, residual_gain=1.41, n_inference_frames=2, obs_scale=0.71),
        dataset="bair",
        data_dir="",
        seq_len=12,
        nt_cond=2,
        batch_size=192,
        lr_burnin=1_000_000,
        lr_decay=500_000,
        val_interval=20_000,
        val_batch_size=16,
        val_sequences=25 * 16,
    ),
    # The out-of-the-box CPU run: 9,000 steps in about 12.6 to 16.1 minutes on 2 cores (the budget, 18, leaves
    # room for a slow day), the lr decaying over the last third so that a run stopped by the budget still ends
    # nearly annealed
    # (examples/srvp/README.md has the runs behind the choice and the numbers it reaches).
    "smmnist-cpu": lambda: _paper(
        dict(
            state_size=20,
            noise_size=20,
            n_inference_frames=5,
            conv_width=16,
            obs_scale=0.2,
            beta_z=1.0,
            skip_connections=True,
        ),
        seq_len=15,
        nt_cond=5,
        seq_len_test=15,
        batch_size=4,
        lr=5e-4,
        lr_burnin=6_000,
        lr_decay=3_000,
        val_interval=1_500,
        val_sequences=32,
        val_samples=10,
        amp="bf16",
        channels_last=True,
        max_minutes=18.0,
        checkpoint_interval=500,
    ),
    # A few seconds: for tests and smoke runs.
    "tiny": lambda: _paper(
        dict(
            state_size=4,
            noise_size=3,
            n_inference_frames=2,
            conv_width=4,
            code_size=16,
            inference_hidden=16,
            residual_hidden=16,
            image_size=64,
            inference_layers=2,
            residual_layers=2,
        ),
        seq_len=6,
        nt_cond=2,
        seq_len_test=6,
        batch_size=4,
        lr_burnin=4,
        lr_decay=2,
        val_interval=3,
        val_sequences=4,
        val_batch_size=2,
        val_samples=2,
        checkpoint_interval=2,
    ),
}


_OFFICIAL_DATASETS = {"smmnist": "smmnist", "kth": "kth", "human": "human36m", "bair": "bair"}
"""Official ``--dataset`` value -> ``TrainConfig.dataset``."""


_OFFICIAL_REQUIRED_TRAIN_OPTIONS = ("dataset", "seq_len", "nt_cond")
"""Training options the official ``train.py`` requires (so every official ``config.json`` has them)."""


def train_config_from_official(options: dict[str, Any]) -> TrainConfig:
    """The training options of an official ``config.json`` (model options via ``model_config_from_official``).

    Raises:
        ValueError: a missing required option, or a ``dataset`` the official code does not have.
    """
    missing = sorted(k for k in _OFFICIAL_REQUIRED_TRAIN_OPTIONS if options.get(k) is None)
    if missing:
        raise ValueError(f"config.json: missing official options {missing}")
    dataset = _OFFICIAL_DATASETS.get(options["dataset"])
    if dataset is None:
        raise ValueError(
            f"config.json: dataset: expected one of the official datasets {sorted(_OFFICIAL_DATASETS)}, "
            f"got {options['dataset']!r}"
        )
    val_batch_size = int(options.get("batch_size_test") or 16)
    return TrainConfig(
        model=model_config_from_official(options),
        dataset=dataset,
        data_dir="embedded" if dataset == "smmnist" else str(options.get("data_dir") or ""),
        subsampling=int(options.get("subsampling", 8)),
        num_digits=int(options.get("ndigits", 2)),
        max_speed=int(options.get("max_speed", 4)),
        deterministic=bool(options.get("deterministic", False)),
        seq_len=int(options["seq_len"]),
        batch_size=int(options.get("batch_size", 128)),
        lr=float(options.get("lr", 3e-4)),
        lr_burnin=int(options.get("lr_scheduling_burnin", 1_000_000)),
        lr_decay=int(options.get("lr_scheduling_n_iter", 100_000)),
        nt_cond=int(options["nt_cond"]),
        seq_len_test=int(options.get("seq_len_test") or 0) or max(int(options["seq_len"]), int(options["nt_cond"]) + 1),
        val_interval=int(options.get("val_interval", 20_000)),
        val_batch_size=val_batch_size,
        # validation reads n_iter_test batches of batch_size_test clips
        val_sequences=int(options.get("n_iter_test") or 25) * val_batch_size,
        val_samples=int(options.get("n_samples_test", 100)),
        seed=int(options.get("seed") or 1),
    )
