"""SRVP configurations: the model (every official option, readable names) and presets.

``ModelConfig`` holds what defines the network and its loss; ``examples/srvp/README.md`` maps every field
to the official command-line option and the paper's symbol. Training and data options live in
``examples/srvp/train.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from latentdyn.integrators import INTEGRATOR_NAMES

__all__ = ["ModelConfig", "config_from_dict", "config_to_dict"]

ARCHITECTURES = ("dcgan", "vgg")
TRANSITIONS = ("residual", "mlp", "gru")


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
    use_content: bool = True  # content variable w (False: the paper's App. E ablation)
    use_noise: bool = True  # stochastic z (False: deterministic latent ODE)

    def __post_init__(self) -> None:
        positive = (
            "image_size channels conv_width code_size state_size n_inference_frames inference_hidden "
            "inference_layers residual_hidden residual_layers n_substeps"
        ).split()
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        if isinstance(self.noise_size, bool) or not isinstance(self.noise_size, int) or self.noise_size < 0:
            raise ValueError(f"noise_size: expected an int >= 0, got {self.noise_size!r}")
        if self.use_noise and self.noise_size < 1:
            raise ValueError("noise_size: use_noise=True needs noise_size >= 1, got 0")
        for name, allowed in (
            ("architecture", ARCHITECTURES),
            ("transition", TRANSITIONS),
            ("integrator", INTEGRATOR_NAMES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        if self.transition != "residual" and (self.n_substeps != 1 or self.integrator != "euler-ref"):
            raise ValueError(
                f"transition: {self.transition!r} is a discrete-time cell; it needs n_substeps=1 and "
                f"integrator='euler-ref', got n_substeps={self.n_substeps}, integrator={self.integrator!r}"
            )
        if self.transition == "gru" and not self.use_noise:
            raise ValueError("transition: 'gru' takes z as its input, so it needs use_noise=True")
        if self.obs_scale <= 0:
            raise ValueError(f"obs_scale: expected a positive standard deviation, got {self.obs_scale!r}")

    @property
    def z_size(self) -> int:
        """Size of z actually used (0 without noise)."""
        return self.noise_size if self.use_noise else 0


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[Any], data: dict[str, Any]) -> Any:
    """Build the dataclass ``cls`` from ``data``; unknown keys are errors, nested dataclasses are rebuilt."""
    if not isinstance(data, dict):
        raise TypeError(f"data: expected a dict for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown options {unknown}; known: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        ftype = fields[name].type
        target = _dataclass_type(cls, name, ftype)
        kwargs[name] = config_from_dict(target, value) if target is not None else value
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
