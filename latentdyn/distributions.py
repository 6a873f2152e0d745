"""Gaussian heads and priors that return ``torch.distributions`` objects.

Distributions are values: every head returns ``Independent(Normal(loc, scale), 1)`` over the last axis, so
KL terms go through ``torch.distributions.kl_divergence`` and sampling through ``rsample``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from latentdyn._checks import (
    check_bool,
    check_entry_input,
    check_float_tensor,
    check_positive_int,
    check_shape,
    is_int,
    is_real,
)
from latentdyn.nn import MLP

__all__ = [
    "ConditionalGaussianPrior",
    "GaussianHead",
    "StandardNormal",
    "diag_gaussian",
    "diag_gaussian_from_raw",
    "index_steps",
]

STD_EPS = 1e-8
"""Additive floor of the standard deviation: ``std = softplus(raw) + STD_EPS`` (official SRVP)."""


def diag_gaussian(loc: torch.Tensor, scale: torch.Tensor, *, validate_args: bool | None = None) -> Independent[Normal]:
    """Diagonal Gaussian N(loc, diag(scale²)) over the last axis.

    Args:
        loc: mean, (..., D), floating point.
        scale: standard deviation, (..., D), floating point, positive.
        validate_args: ``torch.distributions`` argument validation (None: its global default, on, except while
            ``torch.compile`` or ``torch.export`` trace the call: the checks depend on the values, which a graph
            cannot, and export failed on them). Validation reads the values back to the host, a device
            synchronisation on GPUs: library code passes False for scales that are positive by construction.

    Returns:
        ``Independent(Normal(loc, scale), 1)`` with batch shape (...) and event shape (D,).

    Raises:
        TypeError: ``loc`` or ``scale`` is not a floating-point tensor, or ``validate_args`` is neither a bool
            nor None.
        ValueError: ``loc`` or ``scale`` has no event axis (0-dim), the shapes do not broadcast, or (with
            validation) a scale that is not positive.
    """
    for name, x in (("loc", loc), ("scale", scale)):
        check_float_tensor(x, name)
        if x.dim() == 0:
            raise ValueError(f"{name}: expected a tensor (..., D) with an event axis, got a 0-dim tensor")
    try:
        torch.broadcast_shapes(loc.shape, scale.shape)
    except RuntimeError:
        raise ValueError(
            f"scale: expected a shape that broadcasts with the shape of loc {list(loc.shape)}, got {list(scale.shape)}"
        ) from None
    if validate_args is not None:
        validate_args = check_bool(validate_args, "validate_args")
    elif _compiling():
        validate_args = False
    return _diag_gaussian(loc, scale, validate_args=validate_args)


def _compiling() -> bool:
    """Whether ``torch.compile`` or ``torch.export`` is tracing the code (False on a torch without the query)."""
    query = getattr(torch.compiler, "is_compiling", None)
    return bool(query()) if query is not None else False


def _diag_gaussian(loc: torch.Tensor, scale: torch.Tensor, *, validate_args: bool | None = None) -> Independent[Normal]:
    """Unchecked :func:`diag_gaussian`, for library code that built ``loc`` and ``scale`` itself."""
    return Independent(Normal(loc, scale, validate_args=validate_args), 1, validate_args=validate_args)


def _check_eps(eps: object) -> float:
    """The std floor: a finite real number >= 0 (a negative one would allow a negative std unnoticed, as the
    scale is not validated)."""
    if not is_real(eps):
        raise TypeError(f"eps: expected a real number >= 0 (the std floor), got {type(eps).__name__} {eps!r}")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps: expected a finite number >= 0 (the std floor), got {eps!r}")
    return float(eps)


def diag_gaussian_from_raw(raw: torch.Tensor, eps: float = STD_EPS) -> Independent[Normal]:
    """Diagonal Gaussian from raw parameters: mean = first half, std = softplus(second half) + eps.

    A float16 ``raw`` (e.g. a network's output under float16 ``torch.autocast``) gets its scale computed and
    kept in float32, so that the floor survives: 1e-8 is below float16's smallest number, and softplus(−20) + eps
    was a std of exactly 0 there (an infinite KL). The mean keeps the dtype of ``raw``. bfloat16, with float32's
    range, keeps the floor and its own dtype.

    Args:
        raw: (..., 2·D) raw parameters, split along the last axis.
        eps: additive floor of the standard deviation, a finite number >= 0.

    Returns:
        A distribution with batch shape (...) and event shape (D,): mean in the dtype of ``raw``, scale too,
        except float32 for a float16 ``raw`` (its draws, log-densities and KL terms are then float32: a model
        run in float16 outside autocast, whose states are float16, cannot take such draws in
        :meth:`LatentSSM.rollout <latentdyn.ssm.LatentSSM.rollout>`; run it under ``torch.autocast``).

    Raises:
        TypeError: ``raw`` is not a floating-point tensor; ``eps`` is not a real number.
        ValueError: the last axis of ``raw`` is not of even size; ``eps`` is negative or not finite.
    """
    return _diag_gaussian_from_raw(check_float_tensor(raw, "raw"), _check_eps(eps))


def _diag_gaussian_from_raw(raw: torch.Tensor, eps: float) -> Independent[Normal]:
    """:func:`diag_gaussian_from_raw` for a tensor ``raw`` and a checked ``eps`` (a head checks its eps once, when
    it is built, not at every call); the shape of ``raw``, a network's output, is still checked."""
    if raw.dim() == 0 or raw.shape[-1] % 2 != 0:
        raise ValueError(f"raw: expected a last axis of even size 2·D (mean, raw scale), got shape {list(raw.shape)}")
    loc, raw_scale = raw.chunk(2, dim=-1)
    if raw_scale.dtype == torch.float16:
        # In float16 the floor is lost: eps = 1e-8 is below its smallest number (6e-8), so softplus(−20) + eps
        # rounds to a std of exactly 0 (an infinite KL). The scale is computed and kept in float32, as CUDA
        # autocast computes softplus already (an autocast-to-float32 op there, not under CPU autocast).
        # (bfloat16 has float32's range: the floor holds, and a bfloat16 model keeps bfloat16 draws.)
        raw_scale = raw_scale.float()
    # The scale is positive by construction: skip torch.distributions' argument validation (elementwise
    # checks and a host sync on every call); a NaN reaches the loss, where training stops on it cleanly.
    return _diag_gaussian(loc, F.softplus(raw_scale) + eps, validate_args=False)


def index_steps(dist: Distribution | None, index: int | slice) -> Independent[Normal]:
    """Select steps along the first batch axis of a diagonal Gaussian with batch shape (T, ...).

    Args:
        dist: an ``Independent(Normal)`` whose batch shape starts with the time axis, batch (T, ...). (Typed as
            optional so that a ``Rollout``'s ``prior`` passes a type checker; ``None`` is refused.)
        index: an integer step or a slice of steps.

    Returns:
        The diagonal Gaussian of the selected steps: batch (...) for an integer, (T', ...) for a slice.

    Raises:
        TypeError: ``dist`` is not a diagonal Gaussian ``Independent(Normal(loc, scale), 1)`` (an
            ``Independent`` with ``reinterpreted_batch_ndims`` other than 1 included); ``index`` is neither an int
            nor a slice (a bool, which NumPy-style indexing reads as a new axis, included).
        ValueError: ``dist`` has no batch axis (batch shape ()), so no time axis to select from; an integer
            ``index`` outside ``[-T, T-1]``; a slice ``index`` whose step is zero or negative (its start and stop
            may lie outside the steps and are clipped, as in Python).
    """
    if dist is None:
        raise TypeError(
            "dist: expected Independent(Normal) (a diagonal Gaussian), got None (a Rollout's prior is None when its "
            "model has no prior)"
        )
    if not (isinstance(dist, Independent) and isinstance(dist.base_dist, Normal)):
        raise TypeError(f"dist: expected Independent(Normal) (a diagonal Gaussian), got {type(dist).__name__}")
    if dist.reinterpreted_batch_ndims != 1:
        raise TypeError(
            f"dist: expected Independent(Normal(loc, scale), 1) (a diagonal Gaussian over the last axis), got "
            f"reinterpreted_batch_ndims={dist.reinterpreted_batch_ndims} (batch shape {list(dist.batch_shape)}, "
            f"event shape {list(dist.event_shape)})"
        )
    if not (is_int(index) or isinstance(index, slice)):
        raise TypeError(f"index: expected an int or a slice of steps, got {type(index).__name__} {index!r}")
    if len(dist.batch_shape) == 0:
        raise ValueError(
            f"dist: expected a batch shape (T, ...) starting with the time axis, got batch shape () "
            f"(event shape {list(dist.event_shape)})"
        )
    n_steps = dist.batch_shape[0]
    steps: int | slice
    if isinstance(index, slice):
        if is_int(index.step) and index.step < 1:
            raise ValueError(f"index: expected a slice with a positive step (or none), got {index!r}")
        steps = index
    else:
        steps = int(index)
        if n_steps == 0:
            raise ValueError(f"index: expected a step of dist, but dist has no steps (T = 0), got {steps}")
        if not -n_steps <= steps < n_steps:
            raise ValueError(f"index: expected a step in [{-n_steps}, {n_steps - 1}] (T = {n_steps}), got {steps}")
    base = dist.base_dist
    return _diag_gaussian(base.loc[steps], base.scale[steps], validate_args=False)  # parts of a valid one


class GaussianHead(nn.Module):
    """Diagonal Gaussian head q(·|h) = N(mean(h), std(h)) on top of a network that outputs 2·D raw values.

    The first half of the network output is the mean and the second half the raw scale, mapped to
    ``softplus(raw) + eps`` (the official SRVP parameterisation; not exp, not a log-variance). A float16
    output (under ``torch.autocast``) gets a float32 scale, as in :func:`diag_gaussian_from_raw`.

    Args:
        net: a module mapping features (..., Din) to raw parameters (..., 2·D).
        eps: additive floor of the standard deviation, a finite number >= 0.

    Raises:
        TypeError: ``net`` is not an ``nn.Module`` (its parameters would not be registered); ``eps`` is not a
            real number.
        ValueError: ``eps`` is negative or not finite.
    """

    def __init__(self, net: nn.Module, eps: float = STD_EPS) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net: expected an nn.Module mapping (..., Din) to (..., 2·D), got {type(net).__name__}")
        self.net = net
        self.eps = _check_eps(eps)

    def extra_repr(self) -> str:
        """The standard deviation's floor, shown by ``print(head)``."""
        return f"eps={self.eps}"

    def forward(self, h: torch.Tensor) -> Independent[Normal]:
        """Diagonal Gaussian N(mean(h), std(h)) with batch shape (...) and event shape (D,).

        Args:
            h: features, (..., Din).

        Returns:
            ``Independent(Normal(loc, scale), 1)``, batch (...), event (D,); ``scale`` is float32 for a float16
            network output, ``loc`` in the output's dtype.

        Raises:
            TypeError: for a ``net`` that starts with a ``Linear`` layer (an :class:`~latentdyn.nn.MLP`, an
                ``nn.Linear``, an ``nn.Sequential`` of them), ``h`` is not a floating-point tensor or (outside
                ``torch.autocast``) not in the dtype of that layer's parameters; the network's output is not a
                floating-point tensor.
            ValueError: for such a ``net``, the last axis of ``h`` is not the layer's input size.
        """
        _check_net_input(self.net, h, "h")
        return _diag_gaussian_from_raw(check_float_tensor(self.net(h), "raw"), self.eps)

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, h: torch.Tensor) -> Independent[Normal]: ...


def _check_net_input(net: nn.Module, h: object, name: str) -> None:
    """Check the input of a head's network when its first layer is known to be a Linear (other networks, such as
    one starting with an embedding, say what they take themselves). Shapes and dtypes only."""
    while isinstance(net, nn.Sequential) and len(net):
        net = net[0]
    if isinstance(net, MLP):
        net.check_input(h, name)
    elif isinstance(net, nn.Linear) and not isinstance(net, nn.modules.lazy.LazyModuleMixin):
        # (a LazyLinear learns its input size at its first call: nothing to check against before)
        check_shape(h, "... d", name, d=net.in_features)
        check_entry_input(h, name, net, "head")


class ConditionalGaussianPrior(GaussianHead):
    """Learned conditional prior p(z | y) = N(mu(y), sigma(y)) (SRVP's p(z_t | y_{t-1})).

    A ``GaussianHead`` whose input is the latent state: ``prior(y)`` with y of shape (..., Dy) (e.g. (B, Dy)
    or (T, B, Dy)) returns a distribution with batch shape (...) and event shape (Dz,), the prior contract
    of :class:`~latentdyn.ssm.LatentSSM`.

    Args:
        net: a module mapping states (..., Dy) (or [y, u], (..., Dy + Du), for a model with inputs) to raw
            parameters (..., 2·Dz).
        eps: additive floor of the standard deviation, a finite number >= 0.

    Raises:
        TypeError: ``net`` is not an ``nn.Module``; ``eps`` is not a real number.
        ValueError: ``eps`` is negative or not finite.
    """


class StandardNormal(nn.Module):
    """Fixed standard-normal prior N(0, I) over vectors of size ``dim``.

    It follows ``.to(device)`` and ``.double()`` through an empty non-persistent buffer that only carries the
    dtype and device, and builds its zeros and ones when called: ``state_dict`` stays empty, and a prior built
    on the meta device and materialised with ``to_empty`` (deferred initialisation) is exact, with nothing to
    reset or load.

    Args:
        dim: event size D (e.g. Dz), at least 1.

    Attributes:
        loc: the mean, zeros (D,) in the prior's dtype and device (a new tensor at each access).
        scale: the standard deviation, ones (D,), likewise.

    Raises:
        TypeError: ``dim`` is not an int.
        ValueError: ``dim`` is below 1.
    """

    _anchor: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        check_positive_int(dim, "dim")
        self.dim = dim
        # Empty: uninitialised memory (to_empty) cannot make it wrong; it only tells the dtype and device.
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    def extra_repr(self) -> str:
        """The event size, shown by ``print(prior)``."""
        return f"dim={self.dim}"

    @property
    def loc(self) -> torch.Tensor:
        """Zeros (D,) in the prior's dtype and device."""
        return self._anchor.new_zeros(self.dim)

    @property
    def scale(self) -> torch.Tensor:
        """Ones (D,) in the prior's dtype and device."""
        return self._anchor.new_ones(self.dim)

    def forward(self, *batch_shape: int | Sequence[int] | torch.Tensor) -> Independent[Normal]:
        """Standard normal N(0, I) with batch shape ``batch_shape`` and event shape (D,).

        Called on a tensor of states, ``prior(y)`` with y (..., Dy), it is the fixed prior p(z | y) = N(0, I) of
        batch ``y.shape[:-1]``: the prior contract of :class:`~latentdyn.ssm.LatentSSM` (``y`` is only read for
        its shape).

        Args:
            *batch_shape: the batch sizes, e.g. ``prior(T, B)``, or one tuple or ``torch.Size``, or one tensor
                of states (..., Dy) whose leading axes are the batch.

        Returns:
            ``Independent(Normal(0, 1), 1)`` in the prior's dtype and device, batch ``batch_shape``, event (D,).

        Raises:
            TypeError: a size is not an int, or a tensor comes with other arguments.
            ValueError: a size is negative, or a tensor of states has no axis.
        """
        if len(batch_shape) == 1 and isinstance(batch_shape[0], torch.Tensor):
            y = batch_shape[0]
            if y.dim() == 0:
                raise ValueError("y: expected states (..., Dy) with at least one axis, got a 0-dim tensor")
            sizes: tuple[object, ...] = tuple(y.shape[:-1])
        elif len(batch_shape) == 1 and isinstance(batch_shape[0], (tuple, list)):  # torch.Size is a tuple
            sizes = tuple(batch_shape[0])
        else:
            sizes = batch_shape
        for i, size in enumerate(sizes):
            if isinstance(size, torch.Tensor):
                raise TypeError(
                    f"batch_shape[{i}]: expected an int, got a tensor of shape {list(size.shape)} (states are "
                    "taken alone: prior(y))"
                )
            check_positive_int(size, f"batch_shape[{i}]", minimum=0)
        shape = (*sizes, self.dim)
        return _diag_gaussian(self.loc.expand(shape), self.scale.expand(shape), validate_args=False)  # type: ignore[arg-type]

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, *batch_shape: int | Sequence[int] | torch.Tensor) -> Independent[Normal]: ...
