"""What ``torch.autocast`` does on a device now, the same on every torch that pyproject.toml admits (the queries
took no device type before torch 2.4)."""

from __future__ import annotations

import torch

__all__ = ["autocast_dtype", "autocast_enabled"]


def _queries_take_a_device_type() -> bool:
    """Whether ``torch.is_autocast_enabled`` takes a device type (torch >= 2.4), asked once at import: under
    ``torch.compile`` a refused call would not be a ``TypeError`` to catch but a failed compilation."""
    try:
        torch.is_autocast_enabled("cpu")
    except TypeError:
        return False
    except RuntimeError:
        pass
    return True


_TAKES_DEVICE_TYPE = _queries_take_a_device_type()


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` ("cpu", "cuda", ...); False for a device type autocast does not
    know (``"meta"``: a shape-only dry run)."""
    if not _TAKES_DEVICE_TYPE:  # torch < 2.4: one query per device type
        if device_type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return device_type == "cuda" and bool(torch.is_autocast_enabled())
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except RuntimeError:  # "unknown device type for autocast": it is not on there
        return False


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes in on ``device_type``, or None while it is off there."""
    if not autocast_enabled(device_type):
        return None
    get = getattr(torch, "get_autocast_dtype", None)
    if get is not None:  # torch >= 2.4
        result: torch.dtype = get(device_type)
        return result
    return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()
