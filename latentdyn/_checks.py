"""Argument checks used once at public boundaries.

Every helper raises ``TypeError`` for a wrong kind and ``ValueError`` for a wrong value or shape, with a
message that names the argument, says what was expected and what came.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from collections.abc import Mapping
from typing import TypeGuard

import numpy as np
import torch
from torch import nn

from latentdyn._autocast import autocast_enabled

__all__ = [
    "check_bool",
    "check_choice",
    "check_device",
    "check_entry_input",
    "check_float_dtype",
    "check_float_tensor",
    "check_generator",
    "check_hidden_size",
    "check_input_dtype",
    "check_input_dtypes",
    "check_int",
    "check_mask_type",
    "check_positive_int",
    "check_positive_real",
    "check_shape",
    "check_tensor",
    "is_int",
    "is_real",
    "mask_as_bool",
    "own_networks",
    "substeps_from_dt",
    "warn_at_user",
]


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def warn_at_user(message: str, category: type[Warning] = UserWarning, *, inside: tuple[str, ...] = ()) -> None:
    """``warnings.warn`` pointed at the first caller outside latentdyn, torch (whose ``torch.no_grad`` and
    ``nn.Module.__call__`` wrap the user's calls) and the folders ``inside`` (a package's own directories, ending in
    the path separator): a public function that reaches the warning through another one (``by_name`` building an
    ``OdeintIntegrator``) still shows the user's line, so the default filter shows it once per user call site and
    ``filterwarnings(module=...)`` can name the user's module."""
    skipped = (_PACKAGE_DIR, _TORCH_DIR, *inside)
    level, frame = 2, sys._getframe(1)  # level 2: the caller of this function
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skipped):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    warnings.warn(message, category, stacklevel=level)


def is_real(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a real number for an option: a Python or NumPy int or float, not a bool (nor a
    tensor: a tensor-valued option is a different kind of argument)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, torch.Tensor))


def check_tensor(x: object, name: str) -> torch.Tensor:
    """Return ``x`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    return x


def check_float_tensor(x: object, name: str) -> torch.Tensor:
    """Return ``x`` if it is a floating-point tensor.

    Raises:
        TypeError: ``x`` is not a tensor, or its dtype is not floating point (an integer, bool or complex
            tensor), both named ``name``.
    """
    t = check_tensor(x, name)
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    return t


def check_input_dtype(x: torch.Tensor, name: str, module: nn.Module, owner: str) -> torch.dtype | None:
    """Check that a floating-point ``x`` can enter ``module``'s networks; return the highest dtype another input
    combined with it (concatenated, added) may have, or None (not checked).

    Without ``torch.autocast`` on ``x``'s device the networks need inputs of their parameters' dtype: ``x`` must
    have it, and the ceiling is that dtype. Under autocast the inputs are cast to the autocast dtype, except
    float64 ones, which would meet lower-precision weights: ``x`` must be float32 or lower and so is the ceiling
    (for float64 parameters nothing is checked). A module without floating-point parameters, or with parameters
    of several dtypes, is not checked. Metadata only: no value is read.

    Args:
        x: the input, a floating-point tensor (checked by the caller).
        name: its name, used in messages.
        module: the module whose parameters ``x`` meets.
        owner: what ``module`` is in messages ("model", "cell", "field").

    Raises:
        TypeError: ``x`` is not in the parameters' dtype (without autocast), or is float64 under autocast for
            parameters that are not.
    """
    return _check_input_dtype(x, name, _float_dtypes(module), owner)


def _check_input_dtype(x: torch.Tensor, name: str, dtypes: set[torch.dtype], owner: str) -> torch.dtype | None:
    """:func:`check_input_dtype` for a module whose floating-point parameters have ``dtypes``."""
    if len(dtypes) != 1:
        return None
    (want,) = dtypes
    if autocast_enabled(x.device.type):
        if want == torch.float64:
            return None
        ceiling = torch.float32
        if torch.promote_types(x.dtype, ceiling) != ceiling:
            raise TypeError(
                f"{name}: expected float32 or a lower precision under torch.autocast (which does not cast float64 "
                f"inputs) for a {owner} with {want} parameters, got {x.dtype}"
            )
        return ceiling
    if x.dtype != want:
        raise TypeError(
            f"{name}: expected the dtype of the {owner}'s parameters, {want}, got {x.dtype}; cast {name} with "
            f"{name}.to({want}) or the {owner} with {owner}.to({x.dtype}), or run under torch.autocast"
        )
    return want


def own_networks(module: nn.Module) -> bool:
    """Whether ``module`` and all its submodules are classes of latentdyn or of ``torch.nn`` (whose layers need
    inputs of their parameters' dtype), none of a user's (whose forward may cast its inputs)."""
    return _own_float_dtypes(module) is not None


_OWN_CLASSES: dict[type, bool] = {}
"""Whether a module class is latentdyn's or ``torch.nn``'s (:func:`own_networks`), by class."""


def _own_float_dtypes(module: nn.Module, *, own_only: bool = True) -> set[torch.dtype] | None:
    """The dtypes of the floating-point parameters of ``module`` and its submodules when all of them are
    latentdyn's or torch's own (:func:`own_networks`), else None (with ``own_only=False``: whoever's they are).

    One walk of the module tree, read afresh at each call (the checks run at every public call of a cell or an
    integrator, so this is their cost: a plain walk of the ``_modules`` and ``_parameters`` dicts is several times
    faster than ``modules()`` and ``parameters()``, which build each submodule's name)."""
    dtypes: set[torch.dtype] = set()
    stack: list[nn.Module | None] = [module]
    seen: set[int] = set()  # (a module shared by two parents, or a cycle, is walked once)
    while stack:
        m = stack.pop()
        if m is None or id(m) in seen:
            continue
        seen.add(id(m))
        if own_only:
            cls = type(m)
            own = _OWN_CLASSES.get(cls)
            if own is None:
                own = _OWN_CLASSES[cls] = cls.__module__.startswith(("latentdyn.", "torch.nn."))
            if not own:
                return None
        for p in m._parameters.values():
            if p is not None:
                dtypes.add(p.dtype)
        stack.extend(m._modules.values())
    return {d for d in dtypes if d.is_floating_point}


def _float_dtypes(module: nn.Module) -> set[torch.dtype]:
    """The dtypes of the floating-point parameters of ``module`` and its submodules."""
    dtypes = _own_float_dtypes(module, own_only=False)
    assert dtypes is not None  # (None only for own_only)
    return dtypes


def check_input_dtypes(
    module: nn.Module, owner: str, y: torch.Tensor, y_name: str, z: torch.Tensor, z_name: str
) -> None:
    """Check the dtypes of a state ``y`` and a condition ``z`` that ``module`` combines (e.g. concatenates).

    Both must be floating point. When every layer with parameters in ``module`` is latentdyn's or torch's own
    (:func:`own_networks`; they compute in their parameters' dtype), ``y`` must suit those parameters
    (:func:`check_input_dtype`) and ``z`` must not promote what it is combined with: not of a higher precision
    than ``y`` (nor, under autocast, than float32). A ``z`` of a lower precision is accepted, as
    :meth:`LatentSSM.rollout <latentdyn.ssm.LatentSSM.rollout>` accepts a lower-precision posterior. A network
    of one's own may cast its inputs (a float32 field integrating a float64 state): its dtypes are its own
    business. Metadata only: no value is read.

    Raises:
        TypeError: ``y`` or ``z`` is not a floating-point tensor, or has a dtype the networks would refuse,
            each named.
    """
    check_float_tensor(y, y_name)
    check_float_tensor(z, z_name)
    dtypes = _own_float_dtypes(module)
    if dtypes is None:
        return
    ceiling = _check_input_dtype(y, y_name, dtypes, owner)
    if ceiling is None and not autocast_enabled(y.device.type):
        ceiling = y.dtype
    if ceiling is not None and torch.promote_types(z.dtype, ceiling) != ceiling:
        raise TypeError(
            f"{z_name}: expected {ceiling} or a lower precision ({y_name} is {y.dtype}), got {z.dtype}, which would "
            f"promote what the {owner} computes; cast it with {z_name}.to({y_name}.dtype)"
        )


def check_entry_input(x: object, name: str, layer: nn.Module, owner: str) -> torch.dtype | None:
    """Check an input ``x`` that enters ``layer`` (a network's first layer) as it is: when ``layer`` is latentdyn's
    or torch's own (:func:`own_networks`), a floating-point tensor of a dtype its parameters accept
    (:func:`check_input_dtype`, with its ``torch.autocast`` rules). A layer of one's own may cast its input (an
    integer one too): only that ``x`` is a tensor is checked. Metadata only: no value is read.

    Returns:
        The dtype of the layer's parameters when ``x`` has it (a caller may remember it as accepted), else None.

    Raises:
        TypeError: ``x`` is not a tensor, or, for a layer of latentdyn's or torch's, not a floating-point one or of
            a dtype the layer would refuse, named ``name``.
    """
    dtypes = _own_float_dtypes(layer)
    if dtypes is None:
        check_tensor(x, name)
        return None
    t = check_float_tensor(x, name)
    _check_input_dtype(t, name, dtypes, owner)
    return t.dtype if dtypes == {t.dtype} else None


def check_device(value: object, name: str = "device") -> torch.device | None:
    """``value`` as a ``torch.device`` (None stays None): a ``torch.device``, a device string (``"cpu"``,
    ``"cuda:0"``) or a device index, as ``torch.device`` reads them.

    Raises:
        TypeError: ``value`` is of another kind (a float, a dtype, ...).
        ValueError: a string or index that names no device (``"foo"``, ``-1``).
    """
    if value is None or isinstance(value, torch.device):
        return value
    if isinstance(value, str) or is_int(value):
        try:
            return torch.device(value)
        except (RuntimeError, ValueError):
            raise ValueError(f"{name}: expected a device such as 'cpu', 'cuda' or 'cuda:0', got {value!r}") from None
    raise TypeError(
        f"{name}: expected a torch.device, a device string such as 'cpu' or 'cuda:0', or None, got "
        f"{type(value).__name__} {value!r}"
    )


def check_generator(value: object, name: str = "generator") -> torch.Generator | None:
    """``value`` if it is a ``torch.Generator`` or None, else raise ``TypeError`` naming ``name`` (a seed is not
    a generator: ``torch.Generator().manual_seed(seed)`` makes one)."""
    if value is None or isinstance(value, torch.Generator):
        return value
    raise TypeError(
        f"{name}: expected a torch.Generator or None, got {type(value).__name__} {value!r}; for a seed s pass "
        "torch.Generator().manual_seed(s)"
    )


def check_float_dtype(value: object, name: str = "dtype") -> torch.dtype:
    """``value`` if it is a floating-point ``torch.dtype``.

    Raises:
        TypeError: ``value`` is not a ``torch.dtype`` (a string such as ``"float32"``: pass ``torch.float32``).
        ValueError: an integer, bool or complex dtype.
    """
    if not isinstance(value, torch.dtype):
        hint = (
            f"; pass torch.{value}"
            if isinstance(value, str) and isinstance(getattr(torch, value, None), torch.dtype)
            else ""
        )
        raise TypeError(f"{name}: expected a floating-point torch.dtype, got {type(value).__name__} {value!r}{hint}")
    if not value.is_floating_point:
        raise ValueError(
            f"{name}: expected a floating-point torch.dtype (torch.float32, torch.float64, ...), got {value}"
        )
    return value


def check_shape(x: object, pattern: str, name: str, **sizes: int) -> dict[str, int]:
    """Check that ``x`` is a tensor whose shape matches an einops-style ``pattern``.

    Args:
        x: the value to check.
        pattern: space-separated axis names, e.g. ``"t b d"``. A name may repeat (same size required);
            ``_`` matches any size; ``...`` matches any number of leading axes.
        name: the argument's name, used in messages.
        **sizes: required sizes of named axes, e.g. ``d=20``.

    Returns:
        The size of every named axis.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: wrong rank or a size that differs from ``sizes`` or from another axis of the same name.
    """
    t = check_tensor(x, name)
    axes = pattern.split()
    shape = tuple(t.shape)
    if axes and axes[0] == "...":
        axes = axes[1:]
        if len(shape) < len(axes):
            raise ValueError(f"{name}: expected at least {_dimensions(len(axes))} ({pattern}), got shape {list(shape)}")
        shape = shape[len(shape) - len(axes) :]
    elif len(shape) != len(axes):
        raise ValueError(
            f"{name}: expected {_dimensions(len(axes))} ({pattern}), got {len(shape)} with shape {list(shape)}"
        )
    found: dict[str, int] = {}
    for axis, size in zip(axes, shape):
        if axis == "_":
            continue
        if axis in found and found[axis] != size:
            raise ValueError(
                f"{name}: axes named {axis!r} in ({pattern}) must agree, got sizes {found[axis]} and {size}"
            )
        found[axis] = size
    for axis, want in sizes.items():
        if axis not in found:
            raise KeyError(f"internal: size given for axis {axis!r} that is not in pattern {pattern!r}")
        if found[axis] != want:
            raise ValueError(
                f"{name}: expected size {want} for axis {axis!r} of ({pattern}), got shape {list(t.shape)}"
            )
    return found


def _dimensions(n: int) -> str:
    """``"1 dimension"``, ``"3 dimensions"``."""
    return f"{n} dimension" if n == 1 else f"{n} dimensions"


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an integer for an option: a Python or NumPy integer, not a bool (nor a tensor); or a
    size that torch is tracing (:func:`_traced_size`)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, torch.Tensor)):
        return True
    return _traced_size(value)


def _traced_size(value: object) -> bool:
    """Whether ``value`` is a size read from a tensor that torch is tracing: a ``torch.SymInt`` (a dynamic size under
    ``torch.export`` or ``torch.compile``), or a 0-dim integer tensor while ``torch.jit.trace`` records (where
    ``x.shape[0]`` is one). The checks keep such a size as it is: ``int()`` would fix it to the example's value."""
    if isinstance(value, torch.SymInt):
        return True
    return (
        isinstance(value, torch.Tensor)
        and value.dim() == 0
        and not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
        and torch.jit.is_tracing()
    )


def _at_least(value: int, minimum: int) -> bool:
    """``value >= minimum``, for a size that torch traces too: a SymInt's comparison becomes a guard (a constraint on
    the dynamic size), a traced tensor's is read at its example value without the tracer's warning."""
    if isinstance(value, torch.Tensor):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return bool(value >= minimum)
    return bool(value >= minimum)


def check_bool(value: object, name: str, meaning: str = "") -> bool:
    """``value`` if it is a bool (or a NumPy bool, returned as a bool), else raise ``TypeError`` naming ``name``:
    a flag given as ``"False"`` or ``0.5`` is a mistake that ``bool(value)`` would silently read. ``meaning``,
    if given, is said in parentheses after "expected a bool" (e.g. what True means)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    what = f" ({meaning})" if meaning else ""
    raise TypeError(f"{name}: expected a bool{what}, got {type(value).__name__} {value!r}")


def check_int(value: object, name: str) -> int:
    """``value`` as an ``int`` if it is an integer (:func:`is_int`), else raise ``TypeError`` naming ``name``."""
    if not is_int(value):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    return value if _traced_size(value) else int(value)


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (:func:`is_int`) at least ``minimum``."""
    if not is_int(value):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {type(value).__name__} {value!r}")
    if not _at_least(value, minimum):
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value if _traced_size(value) else int(value)


def check_hidden_size(value: object, name: str, n_layers: int) -> int:
    """``value`` as an ``int``: the width of the hidden layers of an MLP of ``n_layers`` (checked) Linear layers.

    An int >= 1 when there are hidden layers (``n_layers > 1``); with a single layer it is unused and any int
    >= 0 is accepted (0 says "no hidden layer"), but still an int: a wrong kind is a mistake either way.

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` < 1 with ``n_layers > 1``, or negative.
    """
    if n_layers > 1:
        return check_positive_int(value, name)
    if not is_int(value):
        raise TypeError(f"{name}: expected an int (unused with n_layers=1), got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected an int >= 0 (unused with n_layers=1), got {value}")
    return int(value)


def check_positive_real(value: object, name: str) -> float:
    """Return ``value`` as a float if it is a positive finite real number (:func:`is_real`)."""
    if not is_real(value):
        raise TypeError(f"{name}: expected a positive real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return value


def check_choice(value: object, name: str, choices: Mapping[str, object] | tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise say which are allowed.

    Raises:
        TypeError: ``value`` is not a string.
        ValueError: ``value`` is a string that is not one of ``choices``.
    """
    allowed = tuple(choices)
    listed = ", ".join(map(repr, allowed))
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected one of {listed}, got {type(value).__name__} {value!r}")
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {listed}, got {value!r}")
    return value


def substeps_from_dt(dt: float) -> int:
    """Number of integration sub-steps per frame for a step size ``dt = 1/n``.

    The conversion is checked: ``1/dt`` must be a positive integer up to the rounding of ``dt``'s precision (so
    ``1/3`` is accepted and gives 3), which is what lets every time be built from integer counters afterwards.
    A Python float or ``np.float64`` must be within 1e-9 of ``1/n`` (relative); a NumPy scalar of lower
    precision (``np.float32``, ``np.float16``, e.g. read from a float32 array or config) within two of its
    machine epsilons, so that ``np.float32(1 / 3)`` gives 3 too.

    Args:
        dt: the step size as a fraction of a frame, ``1/n`` with ``n >= 1``: a real number (a Python or NumPy int
            or float; not a bool or a tensor).

    Returns:
        ``n``, the number of sub-steps per frame.

    Raises:
        TypeError: ``dt`` is not a real number.
        ValueError: ``dt`` is not of the form ``1/n`` for an integer ``n >= 1``.
    """
    if not is_real(dt):
        raise TypeError(f"dt: expected a float 1/n, got {type(dt).__name__} {dt!r}")
    # The relative error of n·dt is the rounding of dt: 1e-9 is far above float64's, a float32 needs its own.
    tolerance = max(1e-9, 2.0 * float(np.finfo(dt).eps)) if isinstance(dt, np.floating) else 1e-9
    dt = float(dt)
    if not math.isfinite(dt) or dt <= 0 or dt > 1:
        raise ValueError(f"dt: expected 1/n for an integer n >= 1, got {dt!r}")
    n = round(1.0 / dt)
    if n < 1 or abs(n * dt - 1.0) > tolerance:
        raise ValueError(
            f"dt: expected 1/n for an integer n >= 1, got {dt!r} (1/dt = {1.0 / dt!r}); pass n_substeps=n to be exact"
        )
    return n


def check_mask_type(mask: object, name: str = "mask") -> torch.Tensor:
    """``mask`` if it is a bool or real tensor (its values are not read); messages name it ``name``."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name}: expected a bool or 0/1 tensor or None, got {type(mask).__name__}")
    if mask.is_complex():
        raise TypeError(f"{name}: expected a bool or 0/1 real tensor, got dtype {mask.dtype}")
    return mask


def mask_as_bool(mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A checked mask on ``device``, as bool (``mask != 0``)."""
    mask = mask.to(device)
    return mask if mask.dtype == torch.bool else mask != 0
