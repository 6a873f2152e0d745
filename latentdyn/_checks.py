"""Argument checks used once at public boundaries.

Every helper raises ``TypeError`` for a wrong kind and ``ValueError`` for a wrong value or shape, with a
message that names the argument, says what was expected and what came.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import TypeGuard

import numpy as np
import torch

__all__ = [
    "check_bool",
    "check_choice",
    "check_float_tensor",
    "check_int",
    "check_positive_int",
    "check_positive_real",
    "check_shape",
    "check_tensor",
    "is_int",
    "is_real",
    "substeps_from_dt",
]


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
            raise ValueError(f"{name}: expected at least {len(axes)} dimensions ({pattern}), got shape {list(shape)}")
        shape = shape[len(shape) - len(axes) :]
    elif len(shape) != len(axes):
        raise ValueError(
            f"{name}: expected {len(axes)} dimensions ({pattern}), got {len(shape)} with shape {list(shape)}"
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


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an integer for an option: a Python or NumPy integer, not a bool (nor a tensor)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, torch.Tensor))


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
    return int(value)


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (:func:`is_int`) at least ``minimum``."""
    if not is_int(value):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
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

    The conversion is checked: ``1/dt`` must be a positive integer up to float rounding (so ``1/3`` is
    accepted and gives 3), which is what lets every time be built from integer counters afterwards.

    Raises:
        TypeError: ``dt`` is not a real number.
        ValueError: ``dt`` is not of the form ``1/n`` for an integer ``n >= 1``.
    """
    if not is_real(dt):
        raise TypeError(f"dt: expected a float 1/n, got {type(dt).__name__} {dt!r}")
    dt = float(dt)
    if not math.isfinite(dt) or dt <= 0 or dt > 1:
        raise ValueError(f"dt: expected 1/n for an integer n >= 1, got {dt!r}")
    n = round(1.0 / dt)
    if n < 1 or abs(n * dt - 1.0) > 1e-9:
        raise ValueError(
            f"dt: expected 1/n for an integer n >= 1, got {dt!r} (1/dt = {1.0 / dt!r}); pass n_substeps=n to be exact"
        )
    return n
