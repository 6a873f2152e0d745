"""Import and verify checkpoints of the official SRVP implementation.

    python -m examples.srvp.official convert OFFICIAL_DIR OUT_DIR
    python -m examples.srvp.official verify FIXTURE_DIR [--device cuda]

An official experiment directory holds ``config.json`` (the options of the official ``train.py``) and a
checkpoint (``model.pt`` by default) saved as ``torch.save(model.state_dict())``. Nothing is unpickled:
every file is read with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.distributions import Distribution

from examples.srvp._cli import (
    CliParser,
    add_version,
    ends_quietly_on_a_closed_pipe,
    robust_output,
    shell_quote,
    user_path,
    warnings_as_lines,
)
from examples.srvp._host import full_fp32
from examples.srvp.checkpoint import (
    atomic_write_text,
    check_finite,
    check_writable,
    os_error_message,
    read_json,
    read_torch_file,
    save_run,
)
from examples.srvp.config import (
    OFFICIAL_MODEL_OPTIONS,
    ModelConfig,
    model_config_from_official,
    resolve_device,
    train_config_from_official,
)
from examples.srvp.model import SRVP, SRVPOutput

T = TypeVar("T")

__all__ = [
    "from_official_key",
    "load_official",
    "main",
    "official_init_hint",
    "official_state_dict",
    "to_official_key",
    "verify",
]

# (our prefix, official prefix, whether the module is an MLP whose Linear k sits at index 2k in our Sequential
# and at ``module.k.0`` (k = 0) or ``module.k.1`` (k > 0) officially).
_PREFIXES: list[tuple[str, str, bool]] = [
    ("encoder.", "encoder.", False),
    ("decoder.", "decoder.", False),
    ("content.proj.", "w_proj.", False),
    ("content.out.", "w_inf.", False),
    ("q_y.head.net.layers.", "q_y.module.", True),
    ("q_z.lstm.", "inf_z.", False),
    ("q_z.head.net.", "q_z.", False),
    ("ssm.prior.net.layers.", "p_z.module.", True),
    ("ssm.cell.field.net.layers.", "dynamics.module.", True),
]


def to_official_key(key: str) -> str:
    """Official state-dict key of one of our keys (e.g. ``ssm.cell.field.net.layers.6.weight`` ->
    ``dynamics.module.3.1.weight``)."""
    for ours, theirs, mlp in _PREFIXES:
        if key.startswith(ours):
            rest = key[len(ours) :]
            if mlp:
                m = re.fullmatch(r"(\d+)\.(.+)", rest)
                if m is None or int(m.group(1)) % 2:
                    break
                k = int(m.group(1)) // 2
                return f"{theirs}{k}.{0 if k == 0 else 1}.{m.group(2)}"
            return theirs + rest
    raise KeyError(f"no official counterpart for key {key!r}")


def from_official_key(key: str) -> str:
    """Our key for an official state-dict key (inverse of :func:`to_official_key`)."""
    for ours, theirs, mlp in _PREFIXES:
        if key.startswith(theirs):
            rest = key[len(theirs) :]
            if mlp:
                m = re.fullmatch(r"(\d+)\.([01])\.(.+)", rest)
                if m is None:
                    break
                return f"{ours}{2 * int(m.group(1))}.{m.group(3)}"
            return ours + rest
    raise KeyError(f"unexpected official key {key!r}")


def official_state_dict(model: SRVP) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` under official key names and in the official order (to export to the
    official code). Our ``LatentSSM`` registers the cell before the prior, the official model ``p_z`` before
    ``dynamics``: entries are ordered by official top module, keeping our order within each."""
    rank = {theirs: i for i, (_, theirs, _) in enumerate(_PREFIXES)}
    items = [(to_official_key(k), v) for k, v in model.state_dict().items()]
    items.sort(key=lambda kv: next(r for prefix, r in rank.items() if kv[0].startswith(prefix)))
    return dict(items)


def _read_official_config(official_dir: Path, label: str = "OFFICIAL_DIR") -> dict[str, Any]:
    path = official_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{label}: no config.json in {official_dir}")
    options = read_json(path, label)
    if not isinstance(options, dict):
        raise ValueError(f"{label}: expected a JSON object of options in {path}")
    if isinstance(options.get("model"), dict) and "nx" not in options:
        raise ValueError(
            f"{label}: {path} is the config.json of a latentdyn run directory, not of the official code; "
            "evaluate that run directory directly"
        )
    return options


_OFFICIAL_NAMES = {ours: official for official, ours in OFFICIAL_MODEL_OPTIONS.items()} | {
    "lr_burnin": "lr_scheduling_burnin",
    "lr_decay": "lr_scheduling_n_iter",
    "val_batch_size": "batch_size_test",
    "val_samples": "n_samples_test",
    "num_digits": "ndigits",
}
"""Our option name -> the official one, for messages about an official config.json."""


def _from_options(build: Callable[[dict[str, Any]], T], options: dict[str, Any], path: Path, label: str) -> T:
    """``build(options)``; an option it refuses is a one-line error that names the file and the official option."""
    try:
        return build(options)
    except (TypeError, ValueError) as e:
        message = " ".join(str(e).split()).removeprefix("config.json: ")
        name, sep, rest = message.partition(": ")
        if sep and name in _OFFICIAL_NAMES:
            message = f"{_OFFICIAL_NAMES[name]} ({name}): {rest}"
        raise ValueError(f"{label}: {path}: {message}") from None


# ------------------------------------------------------------------------------------ options of config.json
_MODEL_FILLABLE = ("res_gain", "obs_scale", "beta_y", "beta_z", "l2_res")
"""Model options that only training reads (init gain, observation std, loss weights): filled in when absent."""

_MODEL_REQUIRED = tuple(k for k in OFFICIAL_MODEL_OPTIONS if k not in _MODEL_FILLABLE)
"""What building the model and predicting with it need: the constructor's options and ``n_euler_steps`` (the
official ``test.py`` infers the conditioning frames with the training step)."""

_CONVERT_REQUIRED = (*_MODEL_REQUIRED, "dataset", "nt_cond")
"""What ``convert`` needs besides: the test data and the number of conditioning frames of the evaluation."""

_README_LINES: dict[str, tuple[str, dict[str, Any]]] = {
    # official dataset (and "-deterministic") -> (its name, the options of its official README training line
    # that are not model shapes; SPEC 4.2)
    "smmnist": (
        "SM-MNIST",
        dict(seq_len=15, res_gain=1.41, obs_scale=1.0, beta_z=2.0, batch_size=128)
        | dict(lr_scheduling_burnin=1_000_000, lr_scheduling_n_iter=100_000),
    ),
    "smmnist-deterministic": (
        "deterministic Moving MNIST",
        dict(seq_len=15, res_gain=1.41, obs_scale=1.0, beta_z=2.0, batch_size=128)
        | dict(lr_scheduling_burnin=800_000, lr_scheduling_n_iter=100_000),
    ),
    "kth": (
        "KTH",
        dict(seq_len=20, res_gain=1.2, obs_scale=0.2, beta_z=1.0, batch_size=100)
        | dict(lr_scheduling_burnin=150_000, lr_scheduling_n_iter=50_000, val_interval=5_000, seq_len_test=30),
    ),
    "human": (
        "Human3.6M",
        dict(seq_len=16, res_gain=1.2, obs_scale=0.2, beta_z=1.0, batch_size=100)
        | dict(lr_scheduling_burnin=325_000, lr_scheduling_n_iter=25_000, val_interval=20_000)
        | dict(batch_size_test=8, seq_len_test=53),
    ),
    "bair": (
        "BAIR",
        dict(seq_len=12, res_gain=1.41, obs_scale=0.71, beta_z=1.0, batch_size=192)
        | dict(lr_scheduling_burnin=1_000_000, lr_scheduling_n_iter=500_000),
    ),
}

_TRAIN_PY_DEFAULTS: dict[str, Any] = dict(
    beta_y=1.0, l2_res=1.0, lr=3e-4, val_interval=20_000, batch_size_test=16, n_iter_test=25, n_samples_test=100
)
"""The official ``train.py`` defaults of the other training options the import reads (args.py)."""

_README_AT_DEFAULT: dict[str, Any] = dict(
    res_gain=1.41, obs_scale=1.0, beta_z=1.0, batch_size=128, lr_scheduling_burnin=1_000_000
) | dict(lr_scheduling_n_iter=100_000, val_interval=20_000, batch_size_test=16)
"""The official defaults of the options of the README lines: a README value equal to it is the default's."""

_DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "smmnist": dict(ndigits=2, max_speed=4, deterministic=False),
    "human": dict(subsampling=8),
}
"""The official defaults of the data options of a dataset."""

_BOOL_OPTIONS = ("skipco", "deterministic")
_OFFICIAL_DATASET_NAMES = ("bair", "human", "kth", "smmnist")


def _strict_bool(name: str, value: Any) -> bool:
    """A boolean option of config.json: JSON true/false, or the strings "true"/"false" (any case); nothing else
    (``bool("False")`` is True)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{name}: expected true or false, got {value!r}")


def _complete_options(options: dict[str, Any], *, training: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """``options`` with its booleans parsed strictly and the training-only options it lacks filled in from its
    dataset's official README training line (or the official defaults, where that line leaves one at its default).

    The configurations released with the paper reportedly hold only the options the official ``test.py`` reads;
    only what building and evaluating the model needs is required: with ``training`` (for a run directory) the
    model options, the dataset and ``nt_cond``; otherwise the model options (and the dataset if anything is
    to be filled in).

    Returns:
        The completed options, and what was filled in: ``{option: {"value": ..., "from": ...}}``.

    Raises:
        ValueError: every missing required option in one message, a boolean that is not one, or an unknown
            dataset when its README line is needed.
    """
    out = dict(options)
    for name in _BOOL_OPTIONS:
        if out.get(name) is not None:
            out[name] = _strict_bool(name, out[name])
    fillable = list(_MODEL_FILLABLE)
    if training:
        fillable += [k for _, line in _README_LINES.values() for k in line] + list(_TRAIN_PY_DEFAULTS)
        fillable += list(_DATA_DEFAULTS.get(str(out.get("dataset")), {}))
    to_fill = [k for k in dict.fromkeys(fillable) if out.get(k) is None]
    required = list(_CONVERT_REQUIRED if training else _MODEL_REQUIRED)
    if to_fill and "dataset" not in required:
        required.append("dataset")  # (its README line gives the values)
    missing = sorted(k for k in required if out.get(k) is None)
    if missing:
        raise ValueError(f"config.json: missing official options {missing}")
    if not to_fill:
        return out, {}
    dataset = out["dataset"]
    if not isinstance(dataset, str) or dataset not in _OFFICIAL_DATASET_NAMES:
        raise ValueError(
            f"config.json: dataset: expected one of the official datasets {list(_OFFICIAL_DATASET_NAMES)}, "
            f"got {dataset!r}"
        )
    filled: dict[str, Any] = {}
    if "deterministic" in to_fill:  # (a data option of SM-MNIST only) before it picks the README line
        out["deterministic"] = False
        filled["deterministic"] = {"value": False, "from": "the official train.py defaults"}
    name, readme = _README_LINES["smmnist-deterministic" if dataset == "smmnist" and out["deterministic"] else dataset]
    defaults = _TRAIN_PY_DEFAULTS | _DATA_DEFAULTS.get(dataset, {})
    for key in to_fill:
        if key in filled:
            continue
        if key in readme and readme[key] != _README_AT_DEFAULT.get(key, object()):
            value, source = readme[key], f"the official README's {name} command line"
        elif key in readme:
            value, source = readme[key], "the official train.py defaults"
        elif key in defaults:
            value, source = defaults[key], "the official train.py defaults"
        else:
            continue  # an option of another dataset's line (seq_len_test), left at its official default
        out[key] = value
        filled[key] = {"value": value, "from": source}
    return out, filled


def _filled_line(filled: dict[str, Any]) -> str:
    """One line: every value filled in, grouped by where it came from."""
    groups: dict[str, list[str]] = {}
    for key, entry in filled.items():
        groups.setdefault(entry["from"], []).append(f"{key}={entry['value']!r}")
    return "; ".join(f"{', '.join(items)} ({source})" for source, items in groups.items())


# ---------------------------------------------------------------------------------------- the state dict
_OFFICIAL_ONLY_PREFIXES = ("w_proj.", "w_inf.", "q_y.module.", "inf_z.", "q_z.weight", "q_z.bias", "p_z.", "dynamics.")
"""Key prefixes of the official model that none of ours has (the encoder and decoder share their names)."""


def _looks_official(state: dict[Any, Any]) -> bool:
    """Whether the keys of ``state`` are those of an official SRVP state dict (DDP's ``module.`` aside)."""
    return any(str(k).removeprefix("module.").startswith(_OFFICIAL_ONLY_PREFIXES) for k in state)


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _unwrap(state: Any, where: str) -> tuple[Any, str]:
    """The official state dict in what ``torch.load`` gave: itself, or the one official state dict a wrapping
    dict holds (``{"state_dict": ..., "epoch": ...}``); and a note when it was unwrapped."""
    if not isinstance(state, dict) or any(isinstance(v, torch.Tensor) for v in state.values()):
        return state, ""
    inner = [k for k, v in state.items() if _is_state_dict(v) and _looks_official(v)]
    if len(inner) == 1:
        others = [str(k) for k in state if k != inner[0]]
        besides = f" (besides {_few(others)})" if others else ""
        return state[inner[0]], f"{where} holds the state dict under {inner[0]!r}{besides}: read from there"
    if len(inner) > 1:
        raise ValueError(
            f"{where} holds several official state dicts, under {inner}: save the one to import alone, "
            "e.g. torch.save(checkpoint[KEY], 'model.pt')"
        )
    return state, ""


def _official_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Official key -> shape of a model of ``config``, built on the meta device: shapes only, at no cost whatever
    the configuration says (checked before memory is spent)."""
    with torch.device("meta"):
        model = SRVP(config)
    return {to_official_key(k): tuple(v.shape) for k, v in model.state_dict().items()}


def _shapes(config: ModelConfig) -> dict[str, tuple[int, ...]] | None:
    """:func:`_official_shapes`, or None if ``config`` builds no model (a probe of another configuration)."""
    try:
        return _official_shapes(config)
    except (ValueError, TypeError, RuntimeError):
        return None


_SHAPE_OPTIONS = ("nc", "nf", "nhx", "ny", "nz", "nt_inf", "nh_inf", "nh_res")
"""Integer options that set the shapes of weights (the others set which weights there are)."""


def _fitting_change(config: ModelConfig, shapes: dict[str, tuple[int, ...]], changes: list[dict[str, Any]]) -> str:
    """The first of ``changes`` (official option -> value) under which the model's keys and shapes are exactly
    ``shapes``, as ``"ny=20"``; "" if none."""
    for change in changes:
        try:
            candidate = dataclasses.replace(config, **{OFFICIAL_MODEL_OPTIONS[k]: v for k, v in change.items()})
        except (ValueError, TypeError):
            continue
        if _shapes(candidate) == shapes:
            return ", ".join(f"{k}={v!r}" for k, v in change.items())
    return ""


def _option_value(config: ModelConfig, official: str) -> Any:
    return getattr(config, OFFICIAL_MODEL_OPTIONS[official])


def _current(config: ModelConfig, change: str) -> str:
    """config.json's values of the options a change (``"archi='vgg', skipco=True"``) names."""
    names = [part.split("=")[0] for part in change.split(", ")]
    return ", ".join(f"{name}={_option_value(config, name)!r}" for name in names)


def _shape_hint(config: ModelConfig, shapes: dict[str, tuple[int, ...]], key: str, want: tuple[int, ...]) -> str:
    """Why ``key`` has another shape (``shapes[key]``) than a model of ``config`` has (``want``): the options of
    config.json that set the dimensions that differ, and a value of one of them that fits every weight, when
    there is one."""
    got = shapes[key]
    differing = [i for i in range(len(want)) if got[i] != want[i]] if len(got) == len(want) else []
    setters: list[str] = []
    changes: list[dict[str, Any]] = []
    for name in _SHAPE_OPTIONS:
        value = _option_value(config, name)
        try:
            probe = _shapes(dataclasses.replace(config, **{OFFICIAL_MODEL_OPTIONS[name]: value + 1}))
        except (ValueError, TypeError):
            continue
        if probe is None or len(probe.get(key, ())) != len(want):
            continue
        steps = {i: probe[key][i] - want[i] for i in differing if probe[key][i] != want[i]}
        if not steps:
            continue
        setters.append(name)
        solutions = {value + (got[i] - want[i]) // s for i, s in steps.items() if (got[i] - want[i]) % s == 0}
        if len(solutions) == 1 and len(steps) == len(differing) and min(solutions) >= 1:
            changes.append({name: solutions.pop()})
    skipco = not config.skip_connections
    probe = _shapes(dataclasses.replace(config, skip_connections=skipco))
    if probe is not None and len(probe.get(key, ())) == len(want) and any(probe[key][i] != want[i] for i in differing):
        setters.append("skipco")
        changes.append({"skipco": skipco})
    if not setters:
        return ""
    where = ", ".join(f"{name}={_option_value(config, name)!r}" for name in setters)
    fit = _fitting_change(config, shapes, changes)
    return f" (set by config.json's {where}" + (f"; the weights fit {fit}" if fit else "") + ")"


def _keys_hint(config: ModelConfig, shapes: dict[str, tuple[int, ...]], keys: list[str]) -> str:
    """Why the key sets differ: the options that decide them, and values that fit every weight, if any."""
    changes: list[dict[str, Any]] = [
        {"archi": archi, "skipco": skip} for archi in ("dcgan", "vgg") for skip in (False, True)
    ]
    changes += [{"nlayers_inf": n} for n in range(2, 9)] + [{"nlayers_res": n} for n in range(2, 9)]
    fit = _fitting_change(config, shapes, changes)
    if fit:
        return f" (the weights fit {fit}, where config.json has {_current(config, fit)})"
    if all(k.startswith(("encoder.", "decoder.")) for k in keys):
        return f" (the encoder/decoder differ: config.json has {_conv_options(config)})"
    return ""


def _conv_options(config: ModelConfig) -> str:
    c = config
    return f"archi={c.architecture!r}, skipco={c.skip_connections}, nf={c.conv_width}, nc={c.channels}"


def _few(keys: list[str], n: int = 4) -> str:
    """``keys`` for a one-line message: all of them when few, else the first ``n`` and the count."""
    if not keys:
        return "none"
    if len(keys) <= n:
        return str(keys)
    return "[" + ", ".join(map(repr, keys[:n])) + f", ...] ({len(keys)} in all)"


@dataclass
class _Loaded:
    model: SRVP
    options: dict[str, Any]  # as config.json has them
    filled: dict[str, Any]  # options filled in: {name: {"value": ..., "from": ...}}
    notes: list[str]  # what the user should know (a state dict unwrapped)


def _missing_checkpoint(official_dir: Path, model_name: str, label: str) -> FileNotFoundError:
    others = sorted(p.name for p in official_dir.glob("*.pt") if p.is_file()) if official_dir.is_dir() else []
    hint = ""
    if others:
        best = "model_best.pt" if "model_best.pt" in others else others[0]
        hint = f"; it holds {_few(others)}: pass --model-name {shell_quote(best)}"
    return FileNotFoundError(f"{label}: no checkpoint {model_name} in {official_dir}{hint}")


def _load(official_dir: Path, model_name: str, label: str, *, training: bool) -> _Loaded:
    options = _read_official_config(official_dir, label)
    path = official_dir / "config.json"
    completed, filled = _from_options(lambda o: _complete_options(o, training=training), options, path, label)
    config = _from_options(model_config_from_official, completed, path, label)
    expected_shapes = _official_shapes(config)
    path = official_dir / model_name
    if not path.is_file():
        raise _missing_checkpoint(official_dir, model_name, label)
    state = read_torch_file(path, label)
    where = f"{label}: {path}"
    state, unwrapped = _unwrap(state, where)
    notes = [unwrapped] if unwrapped else []
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        raise ValueError(
            f"{where} is a latentdyn checkpoint (a run directory's checkpoints/*.pt), not an official state dict; "
            "evaluate its run directory directly"
        )
    if not isinstance(state, dict):
        raise ValueError(f"{where}: expected a state dict (torch.save(model.state_dict())), got {type(state).__name__}")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        wrapped = " (a wrapped state dict? save that entry alone)" if _is_state_dict(state[not_tensors[0]]) else ""
        raise ValueError(
            f"{where}: expected a state dict of tensors, but entry {not_tensors[0]!r} holds a value of type "
            f"{type(state[not_tensors[0]]).__name__}{wrapped}"
        )
    state = {str(k).removeprefix("module."): v for k, v in state.items()}  # DDP-wrapped saves
    expected = {k: from_official_key(k) for k in expected_shapes}  # official key -> ours
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing and not unexpected and all(k.endswith(".num_batches_tracked") for k in missing):
        # Saved by PyTorch < 0.4.1, whose BatchNorm had no step counter: its own loading starts it at 0 too.
        state |= {k: torch.tensor(0, dtype=torch.long) for k in missing}
        missing = []
    if missing or unexpected:
        hint = _keys_hint(config, {k: tuple(v.shape) for k, v in state.items()}, missing + unexpected)
        raise ValueError(
            f"{where}: state dict does not match the configuration in config.json{hint}; "
            f"missing keys: {_few(missing)}; unexpected keys: {_few(unexpected)}"
        )
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for key in expected:  # (in the official order)
        if shapes[key] != expected_shapes[key]:
            hint = _shape_hint(config, shapes, key, expected_shapes[key])
            if not hint and key.startswith(("encoder.", "decoder.")):
                hint = f" (config.json has {_conv_options(config)})"
            raise ValueError(
                f"{where}: key {key!r} has shape {list(shapes[key])}, the configuration expects "
                f"{list(expected_shapes[key])}{hint}"
            )
    check_finite(state, path, option=label)
    model = SRVP(config)
    model.load_state_dict({target: state[key] for key, target in expected.items()}, strict=True)
    return _Loaded(model.eval(), options, filled, notes)


def load_official(
    official_dir: str | Path, model_name: str = "model.pt", label: str = "OFFICIAL_DIR"
) -> tuple[SRVP, dict[str, Any]]:
    """Build our SRVP from an official experiment directory and load its weights strictly.

    The options that only training reads (``res_gain``, ``obs_scale``, ``beta_y``, ``beta_z``, ``l2_res``) are
    filled in from the official README line of the config's ``dataset`` when config.json lacks them; a state
    dict saved under one key of a dict (``{"state_dict": ...}``) is read from there; BatchNorm step counters
    missing from a file of PyTorch < 0.4.1 start at 0, as PyTorch's own loading does.

    Returns:
        The model (in eval mode) and the official options (as config.json has them).

    Raises:
        FileNotFoundError: a missing file.
        ValueError: missing or unexpected keys (named), shape mismatches (with the options that set the
            shape), unknown options, non-finite weights.
    """
    loaded = _load(Path(official_dir), model_name, label, training=False)
    return loaded.model, loaded.options


def convert(official_dir: str | Path, out_dir: str | Path, model_name: str = "model.pt") -> Path:
    """Write a latentdyn run directory (``config.json``, ``checkpoints/best.pt``) from an official one.

    OUT_DIR must not hold a run already (its ``config.json`` or a checkpoint): the import would replace the
    configuration of that run's weights. It is checked, with writability, before anything is read. Training
    options config.json lacks are filled in from the dataset's official README line (see
    :func:`convert_with_notes`, which also returns them).
    """
    return convert_with_notes(official_dir, out_dir, model_name)[0]


def convert_with_notes(
    official_dir: str | Path, out_dir: str | Path, model_name: str = "model.pt"
) -> tuple[Path, dict[str, Any], list[str]]:
    """:func:`convert`, also returning the options filled in (``{name: {"value", "from"}}``, recorded in the
    run's ``config.json`` as ``official_filled_in``) and notes for the user."""
    out = Path(out_dir)
    ckpt = out / "checkpoints" / "best.pt"
    for taken in (out / "config.json", ckpt, out / "checkpoints" / "last.pt"):
        if taken.exists():
            raise FileExistsError(f"OUT_DIR: {taken} already exists; choose an empty directory")
    check_writable(out, "OUT_DIR")
    official_dir = Path(official_dir)
    options = _read_official_config(official_dir)  # every option is checked before the weights are read
    path = official_dir / "config.json"
    completed, _ = _from_options(lambda o: _complete_options(o, training=True), options, path, "OFFICIAL_DIR")
    train = _from_options(train_config_from_official, completed, path, "OFFICIAL_DIR")
    loaded = _load(official_dir, model_name, "OFFICIAL_DIR", training=True)
    notes = list(loaded.notes)
    if train.dataset in ("kth", "human36m") and model_name == "model.pt" and (official_dir / "model_best.pt").is_file():
        notes.append(
            "the official README tests model_best.pt for KTH and Human3.6M: for the paper's numbers convert it "
            "with --model-name model_best.pt"
        )
    extra: dict[str, Any] = {"source": "official", "official_options": options}
    if loaded.filled:
        extra["official_filled_in"] = loaded.filled
    made = [d for d in (ckpt.parent, *ckpt.parent.parents) if not d.exists()]  # deepest first
    save_run(out, loaded.model, train, extra=extra)
    if loaded.filled:  # recorded in config.json too, where a later fine-tune reads its settings
        try:
            saved = read_json(out / "config.json", "OUT_DIR")
            atomic_write_text(out / "config.json", json.dumps({**saved, "official_filled_in": loaded.filled}, indent=2))
        except BaseException:
            (out / "config.json").unlink(missing_ok=True)
            ckpt.unlink(missing_ok=True)
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
    return out, loaded.filled, notes


def evaluate_hint(run_dir: Path) -> str:
    """The evaluate command of an imported run: the test data it needs, as the official README tests it."""
    from examples.srvp.data import smmnist_test_set_command

    train = read_json(run_dir / "config.json", "run_dir")["train"]
    command = f"python -m examples.srvp.evaluate {shell_quote(run_dir)}"
    if train["dataset"] == "smmnist":
        make, file = smmnist_test_set_command(
            "embedded",
            deterministic=train["deterministic"],
            num_digits=train["num_digits"],
            max_speed=train["max_speed"],
        )
        samples = " --n-samples 1" if train["deterministic"] else ""  # the official README: one sample
        n_paper = 10_000 // train["num_digits"]
        return (
            f"{command} --test-set {shell_quote(file)}{samples} (make that test set first with: {make}; "
            "--mnist-dir embedded reads the 1,000 MNIST test digits shipped with latentdyn, a test set not "
            f"comparable with the paper's: --mnist-dir MNIST_DIR, holding MNIST/raw/t10k-*, makes the paper's "
            f"{n_paper:,} sequences from the 10,000 test digits)"
        )
    if train["data_dir"] and Path(train["data_dir"]).is_dir():  # (Path("") is the current folder)
        return command
    return (
        f"{command} --test-set DATA_DIR (the folder of python -m examples.srvp.data; the official data_dir "
        f"{train['data_dir'] or '(none)'} is not here)"
    )


def official_init_hint(source: Path, data: Any = None) -> str:
    """What to do when ``train --init-from`` names official weights (``source``: an official experiment
    directory, or a file whose contents, ``data``, have official key names): convert them first. "" otherwise."""
    folder = source if source.is_dir() else source.parent
    official_config = False
    if (folder / "config.json").is_file():
        with contextlib.suppress(ValueError, OSError):
            options = read_json(folder / "config.json", "config.json")
            official_config = isinstance(options, dict) and "model" not in options and "nt_inf" in options
    if source.is_dir():
        if not official_config:
            return ""
        what = f"{source} is an experiment directory of the official SRVP code"
    else:
        unwrapped = data
        with contextlib.suppress(ValueError):
            unwrapped, _ = _unwrap(data, str(source))
        if not isinstance(unwrapped, dict) or not _looks_official(unwrapped):
            return ""
        what = f"{source} holds official SRVP weights (official key names such as 'w_proj.0.weight')"
    name = "" if source.is_dir() or source.name == "model.pt" else f" --model-name {shell_quote(source.name)}"
    official_dir = shell_quote(folder) if official_config else "OFFICIAL_DIR"
    return (
        f"{what}: convert it first with python -m examples.srvp.official convert {official_dir} OUT_DIR{name}"
        + ("" if official_config else " (OFFICIAL_DIR: the folder of the file and its config.json)")
        + ", then give --init-from OUT_DIR"
    )


# --------------------------------------------------------------------------------------------- verification
class _Noise:
    """Sampler with the fixture's noise convention: zero noise (means) or saved noise in call order."""

    def __init__(self, eps_y0: torch.Tensor | None, eps_z: torch.Tensor | None, eps_prior: torch.Tensor | None):
        self.eps = {"y0": eps_y0, "z_posterior": eps_z, "z_prior": eps_prior}
        self.prior_calls = 0

    def __call__(self, dist: Distribution, role: str) -> torch.Tensor:
        eps = self.eps[role]
        if eps is None:
            return dist.mean
        if role == "z_prior":
            e = eps[self.prior_calls]
            self.prior_calls += 1
        elif role == "z_posterior":
            e = eps[: dist.batch_shape[0]]
        else:
            e = eps
        return dist.mean + dist.stddev * e


@dataclass
class Check:
    """One verified entry."""

    name: str
    status: str  # "ok", "FAIL" or "skipped"
    detail: str


def _close(name: str, got: torch.Tensor, ref: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> Check:
    if tuple(got.shape) != tuple(ref.shape):
        return Check(name, "FAIL", f"shape {list(got.shape)} != reference {list(ref.shape)}")
    got, ref = got.detach().cpu().double(), ref.double()
    diff = (got - ref).abs()
    ok = bool((diff <= atol + rtol * ref.abs()).all())
    return Check(name, "ok" if ok else "FAIL", f"max abs diff {diff.max().item():.3e}")


def _output_entries(out: SRVPOutput, substeps: bool = False) -> dict[str, torch.Tensor]:
    roll = out.rollout
    entries = {
        "x_rec": out.frames,
        "y": roll.substates if substeps else roll.states,
        "z": roll.z,
        "q_y0_mean": out.q_y0.mean,
        "q_y0_scale": out.q_y0.stddev,
    }
    if out.w is not None:
        entries["w"] = out.w
    if roll.posterior is not None:
        entries |= {"q_z_mean": roll.posterior.mean, "q_z_scale": roll.posterior.stddev}
    if roll.prior is not None:
        entries |= {"p_z_mean": roll.prior.mean, "p_z_scale": roll.prior.stddev}
    if roll.residuals is not None:
        entries["res"] = roll.residuals
    return entries


def _loss_checks(prefix: str, terms: Any, ref: dict[str, float]) -> Iterator[Check]:
    names = {"nll": "nll", "kl_y0": "kl_y", "kl_z": "kl_z", "l2_res": "residual", "total": "total"}
    for theirs, ours in names.items():
        if theirs not in ref:
            continue
        got, want = float(getattr(terms, ours).detach()), float(ref[theirs])
        rel = abs(got - want) / max(abs(want), 1e-12)
        yield Check(
            f"loss {prefix}/{theirs}",
            "ok" if rel <= 1e-5 else "FAIL",
            f"{got:.6f} vs {want:.6f} (rel {rel:.2e})",
        )


def verify(fixture_dir: str | Path, device: str | torch.device = "cpu") -> list[Check]:
    """Recompute every entry of an official fixture directory with our model; see the fixture's README.

    Args:
        fixture_dir: the fixture directory (``config.json``, ``model.pt``, ``inputs.pt``, ``outputs.pt``).
        device: where the model runs (``"cuda"`` checks the GPU kernels; TF32 is switched off meanwhile, as
            the fixture was computed in full fp32). Comparisons are made on the CPU in float64.
    """
    device = torch.device(device)
    with full_fp32(device):  # the fixture is full fp32
        return _verify(Path(fixture_dir), device)


def _copied(model: SRVP) -> SRVP:
    """A deep copy of ``model`` whose recurrent layers keep their weights in one buffer: ``copy.deepcopy`` copies
    each weight of an LSTM on its own, and on a GPU cuDNN then compacts them at every call, with a warning (seen
    on an H200: the fixture's train-mode check failed under the suite's warnings-as-errors)."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, torch.nn.RNNBase):
            module.flatten_parameters()  # (a no-op on the CPU)
    return twin


def _verify(fixture_dir: Path, device: torch.device) -> list[Check]:
    _read_official_config(fixture_dir, "FIXTURE_DIR")  # (no such folder, or a run directory: said first)
    absent = [name for name in ("inputs.pt", "outputs.pt") if not (fixture_dir / name).is_file()]
    if absent:
        raise FileNotFoundError(
            f"FIXTURE_DIR: no {' nor '.join(absent)} in {fixture_dir}: it is not a fixture of the official code "
            "(config.json, model.pt, inputs.pt, outputs.pt); to import an official experiment directory, use "
            f"python -m examples.srvp.official convert {shell_quote(fixture_dir)} OUT_DIR"
        )
    model, _ = load_official(fixture_dir, label="FIXTURE_DIR")
    model = model.to(device)
    inputs = read_torch_file(fixture_dir / "inputs.pt", "FIXTURE_DIR", map_location=device)
    outputs = read_torch_file(fixture_dir / "outputs.pt", "FIXTURE_DIR")
    if not isinstance(inputs, dict) or not isinstance(inputs.get("x"), torch.Tensor):
        raise ValueError(
            f"FIXTURE_DIR: {fixture_dir / 'inputs.pt'} is not a fixture's inputs (a dict with a tensor 'x')"
        )
    if not isinstance(outputs, dict) or not isinstance(outputs.get("tensors"), dict):
        raise ValueError(
            f"FIXTURE_DIR: {fixture_dir / 'outputs.pt'} is not a fixture's outputs (a dict with 'tensors')"
        )
    tensors: dict[str, torch.Tensor] = outputs["tensors"]
    meta: dict[str, Any] = outputs.get("meta", {})
    losses: dict[str, dict[str, float]] = meta.get("losses", {})
    x: torch.Tensor = inputs["x"]
    saved = (inputs.get("eps_y0"), inputs.get("eps_z"), inputs.get("eps_prior"))
    k = model.config.n_inference_frames
    computed: dict[str, torch.Tensor] = {}
    checks: list[Check] = []

    def noise(kind: str) -> _Noise:
        return _Noise(None, None, None) if kind == "zero" else _Noise(*saved)

    with torch.no_grad():
        model.eval()
        enc = model.encode(x)
        computed["eval/hx"] = enc.codes
        if model.content is not None:
            w_last, w_first = model.infer_content(enc.codes), model.infer_content(enc.codes[:k])
            assert w_last is not None and w_first is not None  # (a model with content infers one)
            computed["eval/w_last_nt_inf_frames"], computed["eval/w_first_nt_inf_frames"] = w_last, w_first
        q_y0 = model.q_y(enc.codes)
        computed["eval/q_y0_mean"], computed["eval/q_y0_scale"] = q_y0.mean, q_y0.stddev
        if model.q_z is not None:
            computed["eval/lstm_out"] = model.q_z.features(enc.codes)
        for kind in ("zero", "saved"):
            name = f"eval/posterior_{kind}_noise_dt1"
            out = model.infer(x, sampler=noise(kind), n_substeps=1)
            computed |= {f"{name}/{key}": v for key, v in _output_entries(out).items()}
            if name in losses:
                checks += _loss_checks(name, model.loss_terms(x, out), losses[name])
        half = model.infer(x, sampler=noise("zero"), n_substeps=2, decode_substeps=True)
        computed |= {
            f"eval/posterior_zero_noise_dt0.5_all_substeps/{key}": v
            for key, v in _output_entries(half, substeps=True).items()
        }
        computed["eval/posterior_zero_noise_dt0.5/y"] = half.rollout.states
        n_future = (
            tensors["eval/predict_zero_noise/x_pred"].shape[0] if "eval/predict_zero_noise/x_pred" in tensors else 20
        )
        nt_cond = (
            tensors["eval/predict_zero_noise/y_cond"].shape[0] if "eval/predict_zero_noise/y_cond" in tensors else k
        )
        for kind in ("zero", "saved"):
            pred = model.predict(x[:nt_cond], n_future, 1, sampler=noise(kind))
            fut = pred.future_rollout
            assert pred.cond_frames is not None  # decode_cond defaults to True
            p = f"eval/predict_{kind}_noise"
            computed |= {
                f"{p}/x_cond_rec": pred.cond_frames[0],
                f"{p}/y_cond": pred.cond_rollout.states,
                f"{p}/y_pred": fut.states,
                f"{p}/z_pred": fut.z,
                f"{p}/x_pred": pred.frames[0],
            }
            if fut.prior is not None:
                computed |= {f"{p}/p_z_pred_mean": fut.prior.mean, f"{p}/p_z_pred_scale": fut.prior.stddev}
            if model.content is not None:
                w = model.infer_content(model.encode(x[:nt_cond]).codes)
                assert w is not None  # (a model with content infers one)
                computed[f"{p}/w"] = w

    # Train mode: batch statistics in BatchNorm, recorded content frames, saved noise, gradients.
    train_model = _copied(model).train()
    with torch.no_grad():
        computed["train/hx"] = _copied(model).train().encode(x).codes
    indices = tensors.get("train/w_frame_indices")
    indices = None if indices is None else indices.to(device)
    name = "train/posterior_saved_noise_dt1"
    terms, out = train_model(x, sampler=noise("saved"), content_indices=indices, n_substeps=1)
    computed |= {f"{name}/{key}": v.detach() for key, v in _output_entries(out).items()}
    if indices is not None:
        computed["train/w_frame_indices"] = indices
    if name in losses:
        checks += _loss_checks(name, terms, losses[name])
    terms.total.backward()
    params = {to_official_key(n): p for n, p in train_model.named_parameters()}
    grad_checks: list[Check] = []
    for key, ref in tensors.items():
        if not key.startswith("train/grad/"):
            continue
        official = key.removeprefix("train/grad/")
        param = params.get(official)
        if param is None or param.grad is None:
            grad_checks.append(Check(key, "FAIL", "no such parameter or no gradient"))
            continue
        diff = (param.grad.cpu().double() - ref.double()).abs().max().item()
        bound = 2e-3 * ref.double().abs().max().item()
        grad_checks.append(
            Check(key, "ok" if diff <= bound else "FAIL", f"max abs diff {diff:.3e} (bound {bound:.3e})")
        )

    for key, ref in tensors.items():
        if key.startswith("train/grad/"):
            continue
        if key in computed:
            checks.append(_close(key, computed[key], ref))
        else:
            checks.append(Check(key, "FAIL", "present in the fixture but not recomputed"))
    for key in sorted(set(computed) - set(tensors)):
        checks.append(Check(key, "skipped", "not in the fixture"))
    return checks + grad_checks


# ---------------------------------------------------------------------------------------------------- CLI
@ends_quietly_on_a_closed_pipe
@robust_output()
@warnings_as_lines()
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m examples.srvp.official``."""
    parser = CliParser(prog="python -m examples.srvp.official", description=(__doc__ or "").split("\n")[0])
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p_conv = sub.add_parser("convert", help="official experiment directory -> latentdyn run directory")
    p_conv.add_argument("official_dir", type=user_path)
    p_conv.add_argument("out_dir", type=user_path)
    p_conv.add_argument("--model-name", default="model.pt", help="checkpoint file in OFFICIAL_DIR")
    p_ver = sub.add_parser("verify", help="recompute an official fixture directory and compare")
    p_ver.add_argument("fixture_dir", type=user_path)
    p_ver.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:1 ...")
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            out, filled, notes = convert_with_notes(args.official_dir, args.out_dir, args.model_name)
            if filled:
                print(
                    f"note: {args.official_dir / 'config.json'} lacks {len(filled)} options that building and "
                    f"evaluating the model do not need; filled in: {_filled_line(filled)}; recorded in "
                    f"{out / 'config.json'} (official_filled_in)",
                    file=sys.stderr,
                )
            for line in notes:
                print(f"note: {line}", file=sys.stderr)
            print(f"wrote {out}/config.json and {out}/checkpoints/best.pt")
            print(f"evaluate it with: {evaluate_hint(out)}")
            return 0
        checks = verify(args.fixture_dir, resolve_device(args.device))
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. an OUT_DIR that cannot be written
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status:7s} {c.name:{width}s}  {c.detail}")
    failed = [c for c in checks if c.status == "FAIL"]
    n_ok = sum(c.status == "ok" for c in checks)
    n_skip = sum(c.status == "skipped" for c in checks)
    print(f"verify: {n_ok} entries ok, {len(failed)} failed, {n_skip} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
