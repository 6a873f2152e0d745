"""Short printed forms of the result types (named tuples, dataclasses) that hold tensors.

A notebook prints what a cell returns: a ``Rollout`` of a few hundred states, an ``EncoderOutput`` with its skip
tensors, or a list of 9,000 losses printed in full fill pages (hundreds of kilobytes) and the notebook file with
them. These results print each field's shape, dtype and device instead; small tensors (a loss) keep their values.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["fields_repr", "short_repr"]

_SMALL = 6
"""Tensors, arrays and lists of at most this many elements are printed with their values."""


def _dtype(dtype: object) -> str:
    return str(dtype).removeprefix("torch.")


def short_repr(value: object) -> str:
    """``value`` in a line: a tensor or array as ``tensor(shape=(T, B, D), float32)`` (with its device off the
    CPU, and its values when it has at most 6 elements), a long list of numbers as its length, first and last,
    a list of tensors element by element (at most 4), anything else as ``repr``."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= _SMALL and value.layout == torch.strided and value.device.type != "meta":
            return repr(value)
        device = "" if value.device.type == "cpu" else f", device='{value.device}'"
        return f"tensor(shape={tuple(value.shape)}, {_dtype(value.dtype)}{device})"
    if isinstance(value, np.ndarray):
        if value.size <= _SMALL:
            return repr(value)
        return f"array(shape={value.shape}, {value.dtype})"
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields") and value:
        kind = "list" if isinstance(value, list) else "tuple"
        if len(value) > _SMALL and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
            return f"<{kind} of {len(value)} numbers: first {_number(value[0])}, last {_number(value[-1])}>"
        if any(isinstance(v, (torch.Tensor, np.ndarray)) for v in value) or len(value) > _SMALL:
            shown = [short_repr(v) for v in value[:4]] + ([f"... ({len(value)} in all)"] if len(value) > 4 else [])
            open_, close = ("[", "]") if kind == "list" else ("(", ")")
            return open_ + ", ".join(shown) + close
    return repr(value)


def _number(x: numbers.Real) -> str:
    """A number in at most about 6 significant digits (an int too large for a float as it is)."""
    try:
        return f"{float(x):.6g}"
    except OverflowError:
        return repr(x)


def fields_repr(obj: Any) -> str:
    """``Type(field=short, ...)`` for a named tuple or a dataclass instance, each field by :func:`short_repr`."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = [f.name for f in dataclasses.fields(obj) if f.repr]
    else:
        names = list(obj._fields)
    return f"{type(obj).__name__}(" + ", ".join(f"{n}={short_repr(getattr(obj, n))}" for n in names) + ")"
