"""Permutation-invariant content encoders and frame selection."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from latentdyn._checks import (
    check_bool,
    check_choice,
    check_device,
    check_entry_input,
    check_generator,
    check_positive_int,
    check_shape,
    check_tensor,
)

__all__ = ["DeepSetEncoder", "check_frame_indices", "last_frames", "random_distinct_frames", "select_frames"]


class DeepSetEncoder(nn.Module):
    """Content w = out(pool_j proj(h_j)) over a set of element codes (DeepSets; SRVP's content variable).

    ``proj`` is Linear + ReLU applied to each element, ``pool`` a sum or a mean over the set, ``out`` a
    Linear layer followed by an activation (Tanh by default, so w ∈ (−1, 1)). Pooling makes the encoder
    invariant to the order of the elements by construction.

    Args:
        in_features: Dh, size of an element.
        hidden_features: size of the projected elements.
        out_features: Dw.
        pooling: ``"sum"`` (SRVP) or ``"mean"``.
        output_activation: ``"tanh"`` (SRVP) or ``"none"``.

    Raises:
        TypeError: a size is not an int, or an option is not a string.
        ValueError: a size below 1, or an unknown option.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        *,
        pooling: str = "sum",
        output_activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.pooling = check_choice(pooling, "pooling", ("sum", "mean"))
        check_choice(output_activation, "output_activation", ("tanh", "none"))
        self.in_features = check_positive_int(in_features, "in_features")
        check_positive_int(hidden_features, "hidden_features")
        check_positive_int(out_features, "out_features")
        self.proj = nn.Sequential(nn.Linear(in_features, hidden_features), nn.ReLU())
        act: nn.Module = nn.Tanh() if output_activation == "tanh" else nn.Identity()
        self.out = nn.Sequential(nn.Linear(hidden_features, out_features), act)

    def extra_repr(self) -> str:
        """The pooling, shown by ``print(encoder)`` (the layers show the sizes)."""
        return f"pooling={self.pooling!r}"

    def forward(self, elements: torch.Tensor) -> torch.Tensor:
        """Content w of each sequence from its set of K element codes.

        Args:
            elements: the set, (K, B, Dh), K >= 1; the order along K does not matter.

        Returns:
            w, (B, Dw).

        Raises:
            TypeError: ``elements`` is not a floating-point tensor, or (outside ``torch.autocast``) not in the
                dtype of the encoder's parameters.
            ValueError: ``elements`` is not (K, B, Dh) with K >= 1.
        """
        check_shape(elements, "k b d", "elements", d=self.in_features)
        if elements.shape[0] == 0:
            raise ValueError("elements: expected a non-empty set (K >= 1), got K = 0")
        check_entry_input(elements, "elements", self.proj[0], "encoder")
        h = self.proj(elements)
        pooled = h.sum(0) if self.pooling == "sum" else h.mean(0)
        return self.out(pooled)

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, elements: torch.Tensor) -> torch.Tensor: ...


def select_frames(codes: torch.Tensor, indices: torch.Tensor, *, check: bool = True) -> torch.Tensor:
    """Gather frames per sequence: out[k, b] = codes[indices[k, b], b].

    Args:
        codes: (T, B, ...).
        indices: (K, B) integer frame indices.
        check: validate the arguments (shapes, dtype, index range). ``False`` skips the checks, which read
            tensor values (a device sync, and a graph break under ``torch.compile``); use it only for
            indices the caller made itself.

    Returns:
        (K, B, ...).

    Raises:
        TypeError: ``check`` is not a bool; (with ``check``) ``codes`` or ``indices`` is not a tensor, or
            ``indices`` is not int64/int32.
        ValueError: (with ``check``) ``codes`` has fewer than 2 dimensions, ``indices`` is not (K, B) with the
            B of ``codes``, or an index is outside [0, T − 1].
    """
    if check_bool(check, "check", "False: trust the arguments"):
        check_tensor(codes, "codes")
        if codes.dim() < 2:
            raise ValueError(f"codes: expected a time-first tensor (T, B, ...), got shape {list(codes.shape)}")
        check_frame_indices(indices, codes.shape[0], codes.shape[1])
    idx = indices.long().view(*indices.shape, *([1] * (codes.dim() - 2))).expand(-1, -1, *codes.shape[2:])
    return torch.gather(codes, 0, idx)


def check_frame_indices(indices: object, n_frames: int, batch_size: int, name: str = "indices") -> torch.Tensor:
    """Check frame indices (K, B): an integer tensor with B columns and values in [0, n_frames − 1].

    Returns:
        ``indices``, unchanged.

    Raises:
        TypeError: ``indices`` is not an int64/int32 tensor.
        ValueError: ``indices`` is not (K, B), or an index is outside [0, n_frames − 1] (any index when
            ``n_frames`` is 0). The range check reads two values back (a device synchronisation on GPUs).
    """
    idx = check_tensor(indices, name)
    check_shape(idx, "k b", name, b=batch_size)
    if idx.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: expected an integer tensor, got {idx.dtype}")
    if idx.numel() and n_frames == 0:
        raise ValueError(
            f"{name}: got {idx.shape[0]} row(s) of frame indices, but there are no frames to select from (T = 0)"
        )
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n_frames):
        raise ValueError(f"{name}: expected frame indices in [0, {n_frames - 1}], got {idx.min()}..{idx.max()}")
    return idx


def random_distinct_frames(
    n_frames: int,
    k: int,
    batch_size: int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random frame indices (K, B): K = k distinct frames out of ``n_frames``, drawn uniformly per sequence.

    Args:
        n_frames: T, the number of frames to choose from.
        k: K, frames drawn per sequence (without replacement), at most ``n_frames``.
        batch_size: B.
        device: device of the result.
        generator: random generator to draw from; the global torch generator when ``None``.

    Returns:
        int64 indices (K, B) in [0, T − 1], for :func:`select_frames`.

    Raises:
        TypeError: a count is not an int; ``device`` is not a device (a ``torch.device``, a string or an index);
            ``generator`` is not a ``torch.Generator``.
        ValueError: a count below 1, or ``k > n_frames``; ``device`` names no device.
    """
    check_positive_int(k, "k")
    check_positive_int(n_frames, "n_frames")
    check_positive_int(batch_size, "batch_size")
    if k > n_frames:
        raise ValueError(f"k: cannot draw {k} distinct content frames out of {n_frames} available")
    device = check_device(device)
    generator = check_generator(generator)
    # Drawn on the generator's device (a CPU generator gives a GPU batch the indices it gives a CPU one), returned
    # on ``device`` (the default device when None, as torch.rand's).
    target = device if device is not None else torch.empty(0).device
    source = target if generator is None else generator.device
    return torch.rand(n_frames, batch_size, device=source, generator=generator).to(target).argsort(dim=0)[:k]


def last_frames(n_frames: int, k: int, batch_size: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Frame indices (K, B) of the last K = k of ``n_frames`` frames, the same for every sequence.

    Args:
        n_frames: T, the number of frames.
        k: K, frames taken, at most ``n_frames``.
        batch_size: B.
        device: device of the result.

    Returns:
        int64 indices (K, B): T − K, ..., T − 1 in every column, for :func:`select_frames`; a tensor of its own
        (contiguous, not a broadcast view), which may be written in place.

    Raises:
        TypeError: a count is not an int; ``device`` is not a device (a ``torch.device``, a string or an index).
        ValueError: a count below 1, or ``k > n_frames``; ``device`` names no device.
    """
    check_positive_int(k, "k")
    check_positive_int(n_frames, "n_frames")
    check_positive_int(batch_size, "batch_size")
    if k > n_frames:
        raise ValueError(f"k: cannot take the last {k} content frames out of {n_frames} available")
    return torch.arange(n_frames - k, n_frames, device=check_device(device))[:, None].repeat(1, batch_size)
