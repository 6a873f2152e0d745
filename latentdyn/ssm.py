"""LatentSSM: the one rollout loop over frames of a latent state-space model.

Model (time index t counts frames, states live at integer times, sub-steps of size 1/n in between)::

    z_{t+1} ~ q(z_{t+1} | x_{0..t+1})   while frame t+1 is observed,
    z_{t+1} ~ p(z_{t+1} | y_t)           afterwards (the prior is always evaluated at integer-time states),
    y_{t+1} = cell(y_t, z_{t+1})         in n sub-steps with z held constant.

With exogenous inputs u (actions, controls, covariates; ``LatentSSM(..., input_size=Du)``), u_{t+1} joins the
prior's and the cell's conditioning: p(z_{t+1} | y_t, u_{t+1}) and y_{t+1} = cell(y_t, [z_{t+1}, u_{t+1}]).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from latentdyn._checks import (
    check_bool,
    check_generator,
    check_input_dtype,
    check_int,
    check_mask_type,
    check_positive_int,
    check_shape,
    mask_as_bool,
)
from latentdyn._repr import fields_repr
from latentdyn.cells.base import CellPath, TransitionCell
from latentdyn.distributions import _diag_gaussian, index_steps

__all__ = ["LatentSSM", "Role", "Rollout", "Sampler", "default_sampler", "noise_sampler"]

# The message of check_shape for an axis of the wrong size, e.g. "h: expected size 4 for axis 'd' of (... d)".
_SIZE_CHECK = re.compile(r"^[\w.\[\]]+: expected size \d+ for axis ")

Role = Literal["y0", "z_posterior", "z_prior"]
"""What a sampler draws for: ``"y0"`` (initial state), ``"z_posterior"`` or ``"z_prior"`` (transition noise)."""

_TIME_TOLERANCE = 1e-9
"""Query times this close to the rollout's ends or to a sub-step time are taken as that time (float rounding)."""
_ULPS = {torch.float32: 16, torch.float16: 1, torch.bfloat16: 1}
"""Times given in a precision below float64 may lie this many units of that precision (at each time's own size)
outside the rollout and still be taken as its end: float32 times summed from steps (``torch.full((300,), 1 / 30)
.cumsum(0)`` ends at 10.000000954) are off by several units; a half-precision time by about one."""
_MAX_END_SLACK = 1e-3
"""The most (in frames) by which a time in low precision may lie outside the rollout and still be taken as its end:
far from 0 a unit of float32 is large (0.06 at a million), and a time that many frames away is an error."""
_MAX_SNAP = 0.25
"""The most (in sub-steps) by which a time in low precision is moved onto a sub-step time: the rest interpolates."""


def _low_precision(times: object) -> torch.dtype | None:
    """The precision of query times below float64 (float32, float16, bfloat16 tensors or arrays), else None: their
    margins (:func:`_time_tolerances`), and messages show their values as that precision writes them (0.2, not
    0.20000000298023224)."""
    if isinstance(times, torch.Tensor) and times.dtype in _ULPS:
        return times.dtype
    if isinstance(times, np.ndarray) and times.dtype in (np.float32, np.float16):
        return torch.float32 if times.dtype == np.float32 else torch.float16
    return None


def _time_tolerances(
    times: object, ts: torch.Tensor, n_substeps: int
) -> tuple[float | torch.Tensor, float | torch.Tensor]:
    """How far each query time of ``ts`` (float64, read from ``times``) may lie outside the rollout and still be taken
    as its end, and how close (in sub-steps) to a sub-step time it is taken as that time: float rounding,
    :data:`_TIME_TOLERANCE` for times given in float64 (or as Python numbers); for times given in a lower precision,
    units of that precision at each time's own size (:data:`_ULPS` of them outside the rollout, capped at
    :data:`_MAX_END_SLACK`; one near a sub-step time, capped at :data:`_MAX_SNAP` sub-steps)."""
    dtype = _low_precision(times)
    if dtype is None:
        return _TIME_TOLERANCE, _TIME_TOLERANCE * n_substeps
    unit = torch.finfo(dtype).eps * ts.abs().clamp(min=1.0)  # (NaN stays NaN: refused as not finite)
    end = (_ULPS[dtype] * unit).clamp(_TIME_TOLERANCE, _MAX_END_SLACK)
    return end, (unit.clamp(min=_TIME_TOLERANCE) * n_substeps).clamp(max=_MAX_SNAP)


def _lengths_if_ragged(times: object) -> list[int] | None:
    """The lengths of a list or tuple of per-sequence time series of different lengths (else None)."""
    if not isinstance(times, (list, tuple)) or len(times) < 2:
        return None
    lengths = []
    for t in times:
        if isinstance(t, (torch.Tensor, np.ndarray)) and t.ndim == 1:
            lengths.append(int(t.shape[0]))
        elif isinstance(t, (list, tuple)):
            lengths.append(len(t))
        else:
            return None
    return lengths if len(set(lengths)) > 1 else None


def _is_real_dtype(dtype: torch.dtype) -> bool:
    """Floating-point or integer (not bool, not complex)."""
    return dtype.is_floating_point or (not dtype.is_complex and dtype != torch.bool)


def _holds_bool(times: object) -> bool:
    """Whether query times given as (nested) sequences or an array hold a bool, which ``torch.as_tensor`` would
    silently read as 0 or 1."""
    if isinstance(times, (bool, np.bool_)):
        return True
    if isinstance(times, (np.ndarray, torch.Tensor)):
        return times.dtype in (np.bool_, torch.bool)
    if isinstance(times, Sequence) and not isinstance(times, (str, bytes)):
        return any(_holds_bool(t) for t in times)
    return False


class Sampler(Protocol):
    """Draws a value from a distribution; ``role`` says which latent it is for (noise control, tests)."""

    def __call__(self, dist: Distribution, role: Role, /) -> torch.Tensor:
        """A value of ``dist``'s batch and event shape (a sample, its mean, or fixed noise) for ``role``.

        The library passes both positionally, so a sampler may name its parameters as it likes."""
        ...


def default_sampler(sample: bool = True, *, generator: torch.Generator | None = None) -> Sampler:
    """The default sampler: reparameterised samples (``sample=True``) or means (``sample=False``).

    A diagonal Gaussian ``Independent(Normal(loc, scale), 1)`` is drawn as ``loc + ε·scale`` with
    ``ε = torch.randn(loc.shape)``: the numbers of its ``rsample()`` (the same draws from the same generator
    state), written so that it also runs under ``torch.func.vmap(..., randomness="different")``, where
    ``rsample``'s in-place ``normal_`` cannot. Other distributions are drawn with ``rsample()``.

    With ``generator``, ε comes from it alone, ``torch.randn(loc.shape, generator=generator)`` on the
    generator's device in float32 (float64 for float64 distributions), then moved to the distribution's device
    and dtype: a rollout's noise then depends on the generator's seed only, not on the global stream, what
    else draws from it, the device the model runs on or a half-precision autocast. Each draw continues the
    generator's stream, so one generator gives a rollout different noise at every frame, and the same rollout
    again once re-seeded.

    Args:
        sample: draw a reparameterised sample (True) or return the distribution's mean (False).
        generator: the ``torch.Generator`` to draw ε from (None: the global generator of the distribution's
            device). Only for diagonal Gaussians; unused with ``sample=False``.

    Raises:
        TypeError: ``sample`` is not a bool, ``generator`` is not a ``torch.Generator``; at a draw, with a
            ``generator``, a distribution other than a diagonal Gaussian (its ``rsample`` takes no generator).
    """
    sample = check_bool(sample, "sample")
    generator = check_generator(generator)

    def draw(dist: Distribution, role: Role) -> torch.Tensor:
        if not sample:
            return dist.mean
        if type(dist) is Independent and type(dist.base_dist) is Normal:
            loc, scale = dist.base_dist.loc, dist.base_dist.scale  # broadcast to one shape by Normal
            if generator is None:
                return loc + torch.randn(loc.shape, dtype=loc.dtype, device=loc.device) * scale  # as Normal.rsample
            precision = torch.promote_types(loc.dtype, torch.float32)
            eps = torch.randn(loc.shape, generator=generator, dtype=precision, device=generator.device)
            return loc + eps.to(device=loc.device, dtype=loc.dtype) * scale
        if generator is not None:
            raise TypeError(
                f"generator: default_sampler draws with a generator from diagonal Gaussians Independent(Normal, 1) "
                f"only, got a {type(dist).__name__} for {role!r} (its rsample takes no generator); pass a sampler "
                "of your own"
            )
        return dist.rsample()

    return draw


def noise_sampler(*, y0: torch.Tensor | None = None, z: torch.Tensor | None = None) -> Sampler:
    """A sampler that draws from given standard-normal noise: ``loc + ε·scale``, with ε read from ``y0`` and ``z``.

    The rollout's randomness then comes in as tensors: a model wrapped so that the noise is an input exports
    (``torch.export``) to a pure function, whose samples are the same in any runtime; two models or settings
    compared on the same noise differ by the model alone (common random numbers).

    The z noise is consumed in order, one row per transition: a draw of batch shape (K, B) (the observed part of
    a :meth:`LatentSSM.rollout`, drawn in one ``"z_posterior"`` call) takes the next K rows of ``z``, one of batch
    shape (B,) (a ``"z_prior"`` draw) the next row. A sampler therefore serves one rollout (or one ``predict``):
    make another for the next. A rollout with a ``posterior_mask`` also draws the prior of its observed
    transitions, which would take rows of their own: it refuses this sampler.

    Args:
        y0: ε of the ``"y0"`` draw, the shape of that distribution's samples, e.g. (B, Dy); None: no such draw.
        z: ε of the transitions, (T', B, Dz): row t for transition t (all transitions of the rollout, observed
            and predicted); None: no z draw.

    Returns:
        The sampler, for ``sampler=`` of :meth:`LatentSSM.rollout` (or ``SRVP.predict``). Its draws have the
        dtype of the distribution's mean (a float16 model's prior keeps its scale in float32).

    Raises:
        TypeError: ``y0`` or ``z`` is not a floating-point tensor (or None). At a draw: a distribution other than a
            diagonal Gaussian ``Independent(Normal, 1)``.
        ValueError: at a draw, noise of a shape other than the distribution's, a role without noise, or ``z`` used
            up (the message says how many rows were given and asked for).
    """
    for name, eps in (("y0", y0), ("z", z)):
        if eps is not None and not (isinstance(eps, torch.Tensor) and eps.is_floating_point()):
            kind = f"tensor of dtype {eps.dtype}" if isinstance(eps, torch.Tensor) else type(eps).__name__
            raise TypeError(f"{name}: expected standard-normal noise, a floating-point tensor, or None, got {kind}")
    if z is not None and z.dim() < 2:
        raise ValueError(f"z: expected noise of one row per transition, (T', ..., Dz), got shape {list(z.shape)}")
    used = 0  # rows of z consumed

    def draw(dist: Distribution, role: Role) -> torch.Tensor:
        nonlocal used
        if not (type(dist) is Independent and type(dist.base_dist) is Normal):
            raise TypeError(
                f"noise_sampler: draws diagonal Gaussians Independent(Normal, 1), got a {type(dist).__name__} for "
                f"{role!r}"
            )
        loc, scale = dist.base_dist.loc, dist.base_dist.scale
        if role == "y0":
            if y0 is None:
                raise ValueError("noise_sampler: a 'y0' draw, but no y0 noise was given")
            eps, what = y0, "y0"
        else:
            if z is None:
                raise ValueError(f"noise_sampler: a {role!r} draw, but no z noise was given")
            block = loc.dim() == z.dim()  # batch (K, B): K transitions; (B,): one
            rows = loc.shape[0] if block else 1
            if used + rows > z.shape[0]:
                raise ValueError(
                    f"z: noise for {z.shape[0]} transitions, but the rollout asks for {used + rows} ({role!r} draw "
                    f"of {rows} after {used}); give one row per transition"
                )
            eps = z[used : used + rows] if block else z[used]
            what = f"z[{used}:{used + rows}]" if block else f"z[{used}]"
            used += rows
        if eps.shape != loc.shape:
            raise ValueError(
                f"{what}: expected noise of the {role!r} distribution's shape {list(loc.shape)}, got {list(eps.shape)}"
            )
        precision = torch.promote_types(loc.dtype, scale.dtype)  # (a float16 mean with a float32 scale: float32)
        return (loc + eps.to(device=loc.device, dtype=precision) * scale).to(loc.dtype)

    draw._one_row_per_transition = True  # type: ignore[attr-defined]  # (a masked rollout refuses it)
    return draw


@dataclass(eq=False)  # (fields are tensors: == compared them elementwise and raised; identity, as for modules)
class Rollout:
    """Result of :meth:`LatentSSM.rollout`.

    Attributes:
        substates: every sub-step state, ((T−1)·n + 1, B, Dy); entry i is at time ``t0 + i/n``.
        n_substeps: n, sub-steps per frame.
        z: the noise of every transition, (T−1, B, Dz), in the dtype of the states (a draw of a lower precision
            is cast up, exactly); ``z[t-1]`` drives frame t−1 → t.
        prior: p(z_t | y_{t−1}) for every transition, batch (T−1, B) (empty, (0, B), for a single frame), or
            ``None`` for a model without a prior or without noise (Dz = 0).
        posterior: the posterior steps that were used, batch (L, B) (L = 0 when a posterior was given but no
            step of it was used: one frame, or ``n_observed=1``), or ``None`` when no posterior was given.
        residuals: increments of every sub-step, ((T−1)·n, B, Dy) (empty, (0, B, Dy), for a single frame), or
            ``None`` for cells that do not report them (``cell.has_residuals`` is False: MLP, GRU).
        t0: integer time of the first state.
        posterior_mask: which of the used posterior steps gave z, (L, B) bool (the rows of the rollout's
            ``posterior_mask`` for the steps of ``posterior``; where False, z came from the prior), or ``None``
            when the rollout was given no mask (every step of ``posterior`` gave z). The KL of the observed part
            is then ``kl_per_sequence(r.posterior, index_steps(r.prior, slice(0, L)), mask=r.posterior_mask)``
            either way.
    """

    substates: torch.Tensor
    n_substeps: int
    z: torch.Tensor
    prior: Independent[Normal] | None
    posterior: Independent[Normal] | None
    residuals: torch.Tensor | None
    t0: int = 0
    posterior_mask: torch.Tensor | None = None

    @property
    def states(self) -> torch.Tensor:
        """States at frame (integer) times, (T, B, Dy)."""
        return self.substates[:: self.n_substeps]

    @property
    def n_frames(self) -> int:
        """T, the number of frame times covered."""
        return (self.substates.shape[0] - 1) // self.n_substeps + 1

    def times(self) -> torch.Tensor:
        """Time of every sub-step state, ((T−1)·n + 1,), float64 on the device of ``substates``, built from
        integers."""
        i = torch.arange(self.substates.shape[0], dtype=torch.float64, device=self.substates.device)
        return self.t0 + i / self.n_substeps

    def at(self, times: Sequence[float] | Sequence[Sequence[float]] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """States at arbitrary query times in ``[t0, t0 + T − 1]``, (Q, B, Dy).

        Between sub-step states the state is linearly interpolated, which is exact for Euler sub-steps
        (the Euler solution is piecewise linear) and a second-order approximation of a smooth trajectory for
        other cells: the chord between two sub-step states misses the curve by up to about h²/8·max|y''|, with
        h = 1/n the sub-step. With an accurate cell (an adaptive solver at tight tolerances is accurate at the
        sub-step times only) this interpolation error dominates at times between sub-steps: raise
        ``n_substeps`` (of the cell, or of :meth:`LatentSSM.rollout`) to make ``at`` accurate; the error falls
        as 1/n², about 4 times per doubling of n. An adaptive solver evaluates its field as often at any n (it
        reads the sub-step states off its own interpolant): a larger n costs memory, not solver steps.

        Times up to 1e-9 outside the rollout (float rounding, e.g. ``sum([0.1] * 30)``) are taken as its ends, and times
        that close to a sub-step time as that time. Times given in float32 may lie up to 16 float32 units (of their own
        size) outside the rollout (``torch.full((300,), 1 / 30).cumsum(0)`` ends at 10.000000954), float16 and bfloat16
        times one unit, but never more than 1e-3 frames; a low-precision time within one unit of a sub-step time (and a
        quarter of a sub-step at most) is taken as that sub-step time.

        Args:
            times: Q non-decreasing, finite times, shared by every sequence (a sequence, a tensor or a NumPy
                array of shape (Q,)), or Q times per sequence, (Q, B), column b non-decreasing (irregularly
                sampled data: ``at(times)[q, b]`` is sequence b at ``times[q, b]``). Repeated times are allowed (e.g. a
                shorter series padded by repeating its last time) and give the same state; decreasing times are
                refused (they are the sign of a transposed (B, Q) array).

        Returns:
            The states, (Q, B, Dy), in the dtype of ``substates``.

        Raises:
            TypeError: ``times`` is not made of real numbers (a string, ``None``, a bool, or a bool or complex
                tensor).
            ValueError: no time, a time that is not finite or outside the rollout, times that decrease, a
                shape other than (Q,) and (Q, B), or a list of per-sequence series of different lengths (the
                message says how to pad them). The message gives the number of bad entries and the position
                and value of the first (not the whole array).
        """
        if isinstance(times, (str, bytes)) or (isinstance(times, torch.Tensor) and not _is_real_dtype(times.dtype)):
            got = f"a tensor of dtype {times.dtype}" if isinstance(times, torch.Tensor) else type(times).__name__
            raise TypeError(f"times: expected real times (a sequence of numbers or a tensor), got {got}")
        if _holds_bool(times):
            raise TypeError(f"times: expected real times (a sequence of numbers or a tensor), got bools {times!r:.80}")
        lengths = _lengths_if_ragged(times)
        if lengths is not None:
            raise ValueError(
                f"times: expected one (Q, B) array, got {len(lengths)} series of different lengths "
                f"{lengths[:8]}{' …' if len(lengths) > 8 else ''}; pad each to the longest by repeating its last time, "
                "stack them as the columns of a (Q, B) array, and leave the padding out of the loss with a mask"
            )
        try:
            ts = torch.as_tensor(times, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(
                f"times: expected real times (a sequence of numbers or a tensor), got {type(times).__name__} "
                f"{times!r:.80}"
            ) from e
        single = _low_precision(times) is not None  # (messages show such times in their own precision)
        n_seq = self.substates.shape[1]
        if ts.dim() > 2 or (ts.dim() == 2 and ts.shape[1] != n_seq):
            transposed = ts.dim() == 2 and ts.shape[0] == n_seq
            raise ValueError(
                f"times: expected times (Q,) shared by the sequences or (Q, B) = (Q, {n_seq}) per sequence, got "
                f"shape {list(ts.shape)}"
                + ("; per-sequence times as rows (B, Q): pass the transpose" if transposed else "")
            )
        per_sequence = ts.dim() == 2
        ts = ts if per_sequence else ts.flatten()
        lo, hi = float(self.t0), float(self.t0 + self.n_frames - 1)
        if ts.numel() == 0:
            raise ValueError("times: expected at least one query time, got none")
        # Written so that NaN fails it (every comparison with NaN is False).
        end_tol, snap = _time_tolerances(times, ts, self.n_substeps)
        inside = (ts >= lo - end_tol) & (ts <= hi + end_tol)
        if not bool(inside.all()):
            outside = ~inside
            first = _first_index(outside)
            raise ValueError(
                f"times: expected finite times within the rollout [{lo}, {hi}], got {int(outside.sum())} of "
                f"{ts.numel()} times outside it or not finite, the first at {_where(first)}: "
                f"{_format_time(float(ts[first]), single)}"
            )
        if ts.shape[0] > 1:
            decreasing = ts[1:] < ts[:-1]
            if bool(decreasing.any()):
                before = _first_index(decreasing)
                after = (before[0] + 1, *before[1:])
                what = "times along each column (per sequence)" if per_sequence else "times"
                raise ValueError(
                    f"times: expected non-decreasing {what}, got {int(decreasing.sum())} decrease(s), the first at "
                    f"{_where(after)}: {_format_time(float(ts[after]), single)} after "
                    f"{_format_time(float(ts[before]), single)}"
                )
        ts = ts.clamp(lo, hi)
        pos = (ts - self.t0) * self.n_substeps
        # A sub-step time i/n can come back as i − ε after the float round trip (n = 7, i = 61): snap it
        # onto i so that sub-step times return the stored states exactly.
        nearest = pos.round()
        pos = torch.where((pos - nearest).abs() < snap, nearest, pos)
        left = pos.floor().long().clamp(max=self.substates.shape[0] - 1)
        right = (left + 1).clamp(max=self.substates.shape[0] - 1)
        states = self.substates
        # At least float32 arithmetic: a bfloat16 weight would be off by up to 2⁻⁹ before the lerp even starts.
        work = torch.promote_types(states.dtype, torch.float32)
        w = (pos - left).to(device=states.device, dtype=work)
        if per_sequence:  # (Q, B) indices: sequence b reads its own sub-step states
            seq = torch.arange(n_seq, device=states.device)
            left, right = left.to(states.device), right.to(states.device)
            a, b = states[left, seq], states[right, seq]
            return torch.lerp(a.to(work), b.to(work), w[:, :, None]).to(states.dtype)
        return torch.lerp(states[left].to(work), states[right].to(work), w[:, None, None]).to(states.dtype)

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


def _format_time(value: float, single: bool) -> str:
    """A query time for a message: the shortest text of its float32 value for single-precision times."""
    return str(np.float32(value)) if single else repr(value)


def _first_index(mask: torch.Tensor) -> tuple[int, ...]:
    """Index of the first True entry of ``mask`` in row-major order (mask has one)."""
    return tuple(int(i) for i in mask.nonzero()[0])


def _where(index: tuple[int, ...]) -> str:
    """``index`` as a message says it: "[q, b] = [3, 7]" for per-sequence times, "index 3" for shared ones."""
    return f"[q, b] = {list(index)}" if len(index) == 2 else f"index {index[0]}"


def _in_dtype(draw: Sampler, dtype: torch.dtype | None) -> Sampler:
    """``draw`` with its values cast down to ``dtype`` (None: as they come). A float16 model's prior keeps its scale
    in float32 (:func:`~latentdyn.distributions.diag_gaussian_from_raw`), so its draws are float32: the default
    sampler gives them in the states' float16, as drawing in float16 would (a custom sampler is checked instead)."""
    if dtype is None:
        return draw

    def in_dtype(dist: Distribution, role: Role) -> torch.Tensor:
        z = draw(dist, role)
        return z.to(dtype) if torch.promote_types(z.dtype, dtype) != dtype else z

    return in_dtype


def _check_draw(z: object, role: Role, shape: tuple[int, ...], state_dtype: torch.dtype | None) -> torch.Tensor:
    """Check that a sampler's draw for ``role`` is a floating-point tensor of ``shape`` (no values read) and,
    unless ``state_dtype`` is None (not checked), that it does not promote states of that dtype."""
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        got = f"a tensor of dtype {z.dtype}" if isinstance(z, torch.Tensor) else type(z).__name__
        raise TypeError(f"sampler: expected a floating-point tensor for role {role!r}, got {got}")
    if tuple(z.shape) != shape:
        raise ValueError(
            f"sampler: expected a draw of shape {list(shape)} for role {role!r} (the distribution's batch and event "
            f"shape), got shape {list(z.shape)}"
        )
    if state_dtype is not None and torch.promote_types(z.dtype, state_dtype) != state_dtype:
        raise TypeError(
            f"sampler: expected a draw in the dtype of y0, {state_dtype} (or a lower precision), for role {role!r}, "
            f"got {z.dtype}; the cell would see a condition of another dtype than its parameters"
        )
    return z


class LatentSSM(nn.Module):
    """Latent state-space model y_t = cell(y_{t−1}, [z_t, u_t]) with z_t from a posterior or a prior.

    The cell is driven by per-frame noise z and optionally by exogenous inputs u (actions, controls) given
    with each rollout.

    Args:
        cell: the transition y_t → y_{t+1}; its condition is z (``cell.cond_size`` = Dz), or [z, u]
            concatenated when the model takes inputs (``cell.cond_size`` = Dz + Du).
        prior: conditional prior p(z_{t+1} | y_t), a module mapping states (..., Dy) to a diagonal Gaussian
            ``Independent(Normal(loc, scale), 1)`` with batch shape (...) and event shape (Dz,) (e.g.
            :class:`~latentdyn.distributions.ConditionalGaussianPrior`, or
            :class:`~latentdyn.distributions.StandardNormal` for a fixed N(0, I)). With inputs it is p(z_{t+1} | y_t,
            u_{t+1}) and maps [y, u] (..., Dy + Du). The rollout calls it on (B, ·) once per predicted frame and
            on (L, B, ·) for the observed part (on (B, ·) once per frame there too when given a
            ``posterior_mask``), and checks the kind and shapes of the first output of each call
            (a shape error inside the first call of each is re-raised naming the input size the prior receives).
            ``None`` for models without z (Dz = 0, where a prior is refused) or that always get a posterior.
        input_size: Du, the size of the exogenous input of each transition (0: none). The noise size is
            then Dz = ``cell.cond_size`` − Du.

    Attributes:
        cell: the transition cell.
        prior: the prior module, or ``None``.
        input_size: Du, the size of the exogenous input of each transition (0: the model takes none).
        noise_size: Dz = ``cell.cond_size`` − ``input_size``, the size of z: the event size the prior and a
            posterior must have, and the last axis of ``Rollout.z``. 0 for a deterministic model, which takes no
            prior.

    Raises:
        TypeError: ``cell`` is not a ``TransitionCell``; ``prior`` is not a module; ``input_size`` is not an int.
        ValueError: ``input_size`` is negative or larger than ``cell.cond_size``; a ``prior`` given while
            ``cell.cond_size`` − ``input_size`` leaves no noise (Dz = 0), so that it would never be called.
    """

    def __init__(self, cell: TransitionCell, prior: nn.Module | None = None, *, input_size: int = 0) -> None:
        super().__init__()
        if not isinstance(cell, TransitionCell):
            raise TypeError(f"cell: expected a TransitionCell, got {type(cell).__name__}")
        if prior is not None and not isinstance(prior, nn.Module):
            raise TypeError(
                f"prior: expected an nn.Module mapping states (..., Dy) to a distribution, or None, got "
                f"{type(prior).__name__}"
            )
        input_size = check_positive_int(input_size, "input_size", minimum=0)
        if input_size > cell.cond_size:
            raise ValueError(
                f"input_size: expected at most the cell's cond_size={cell.cond_size} (its condition is [z, u], "
                f"Dz + Du), got {input_size}"
            )
        if prior is not None and cell.cond_size == input_size:
            raise ValueError(
                f"prior: given, but the cell's cond_size={cell.cond_size} minus input_size={input_size} leaves no "
                "noise (Dz = 0), so the prior would never be called nor trained; pass prior=None for a deterministic "
                "model, or build the cell with cond_size = Dz + Du"
            )
        self.cell = cell
        self.prior = prior
        self.input_size = input_size
        self.noise_size = cell.cond_size - input_size

    def extra_repr(self) -> str:
        """The split of the cell's condition into noise and inputs (the cell shows only their sum)."""
        return f"noise_size={self.noise_size}, input_size={self.input_size}"

    def _prior(self, y: torch.Tensor, u: torch.Tensor | None, check: bool) -> Independent[Normal]:
        """p(z | y[, u]) for states y (..., Dy) and inputs u (..., Du) or None; with ``check``, its kind and shapes
        (no values) are checked."""
        prior = self.prior
        if prior is None:
            raise RuntimeError("internal: _prior called on a model without a prior")
        x = y if u is None else torch.cat([y, u.to(y.dtype)], dim=-1)
        if not check:
            return prior(x)
        try:
            p = prior(x)
        except (RuntimeError, ValueError) as e:
            # A network built for another input size fails inside torch ("mat1 and mat2 shapes cannot be
            # multiplied"), or at the input check of latentdyn's heads and MLPs (check_shape's "h: expected size
            # ... for axis"): say what the prior is given. Only on checked calls (the first of each kind), and only
            # for shape errors, which the message names; others pass through untouched.
            text = str(e)
            if isinstance(e, ValueError):
                if not _SIZE_CHECK.match(text):
                    raise
            elif ("shape" not in text and "size" not in text) or "out of memory" in text:
                raise
            if u is None:
                what = f"states y of size Dy = {y.shape[-1]}"
            else:
                what = (
                    f"[y, u], states and inputs concatenated, of size Dy + Du = {y.shape[-1]} + {u.shape[-1]} = "
                    f"{x.shape[-1]}"
                )
            raise ValueError(
                f"prior: the prior module failed on its input of shape {list(x.shape)}; it receives {what} (build "
                f"its network for that input size): {text}"
            ) from e
        if not (isinstance(p, Independent) and isinstance(p.base_dist, Normal)):
            raise TypeError(
                "prior: expected the prior module to return a diagonal Gaussian Independent(Normal(loc, scale), "
                f"1), got {type(p).__name__}"
                + (f"({type(p.base_dist).__name__})" if isinstance(p, Independent) else "")
            )
        batch, event = tuple(p.batch_shape), tuple(p.event_shape)
        want_batch, want_event = tuple(y.shape[:-1]), (self.noise_size,)
        if batch != want_batch or event != want_event:
            what = "states" if u is None else "states and inputs [y, u]"
            size = list(y.shape) if u is None else [*y.shape[:-1], y.shape[-1] + u.shape[-1]]
            why = ""
            if event != want_event:
                cond = self.cell.cond_size
                if self.input_size:
                    dz = f"Dz = cell.cond_size ({cond}) − input_size ({self.input_size}) = {self.noise_size}"
                else:
                    dz = f"Dz = cell.cond_size ({cond})"
                why = (
                    f"; the noise size is {dz}, so the prior must output event ({self.noise_size},), or the cell's "
                    "cond_size is wrong" + (" (it must be Dz + Du)" if self.input_size else "")
                )
            raise ValueError(
                f"prior: expected the prior module to map {what} {size} to batch shape "
                f"{list(want_batch)} and event shape {list(want_event)}, got batch {list(batch)} and event "
                f"{list(event)}{why}"
            )
        return p

    def rollout(
        self,
        y0: torch.Tensor,
        n_frames: int,
        *,
        posterior: Independent[Normal] | None = None,
        n_observed: int | None = None,
        sample: bool = True,
        sampler: Sampler | None = None,
        n_substeps: int | None = None,
        t0: int = 0,
        inputs: torch.Tensor | None = None,
        posterior_mask: torch.Tensor | None = None,
    ) -> Rollout:
        """Roll the model out from ``y0`` over ``n_frames`` frame times.

        For every transition t−1 → t (t = 1..T−1): z_t comes from the posterior while frame t is observed
        (t < n_observed, and ``posterior_mask[t-1, b]`` for sequence b when a mask is given), else from the
        prior evaluated on y_{t−1} (sampled, or its mean with ``sample=False``); then the cell takes its n
        sub-steps with z_t held constant. The prior is always evaluated on integer-time states, also along the
        posterior part (for the KL). The cell and the prior are called as modules, the cell as ``cell(y, cond, n,
        frame, return_path=True, check=False)`` (see :meth:`TransitionCell.forward
        <latentdyn.cells.TransitionCell.forward>`), so forward hooks on them and compiled ones (``cell.compile()``,
        ``torch.compile(cell)``) apply within a rollout.

        The states keep the dtype of ``y0``. Under ``torch.autocast`` keep ``y0`` in float32 (``y0.float()``,
        e.g. for a head's mean computed in bfloat16): the networks still run in the autocast dtype, but each
        state is the previous one plus a sub-step's Δt·f, and a bfloat16 state (about 3 significant digits)
        rounds those small increments away step after step. In one example with 4 sub-steps per frame, a
        bfloat16 ``y0`` put y_T − y_0 off by about 30 % (median over the batch), a float32 one by 0.3 %.

        Args:
            y0: state of the first frame, (B, Dy); float32 under ``torch.autocast`` (see above).
            n_frames: T, number of frame times including the first, at least 1.
            posterior: q(z_t | x_{0..t}) for t = 1..L, batch (L, B), event (Dz,).
            n_observed: frames observed; z_t for t < n_observed comes from the posterior. Defaults to L + 1.
            sample: draw z (and reparameterise) if True, else use means. Ignored when ``sampler`` is given.
            sampler: custom draw function ``draw(dist, role)`` (e.g. fixed noise); each draw must have the
                distribution's batch and event shape.
            n_substeps: sub-steps per frame, Δt = 1/n; defaults to the cell's.
            t0: integer time of ``y0`` (time-dependent fields see absolute times).
            inputs: exogenous inputs u_t for t = 1..T−1, (T−1, B, Du): ``inputs[t-1]`` drives frame t−1 → t, as
                ``z[t-1]``, along the observed and the predicted part alike. Required when the model was built
                with ``input_size`` > 0 (except for a single frame), refused otherwise.
            posterior_mask: which steps of the posterior give z, per sequence (missing frames, sequences
                conditioned on different numbers of frames): a bool tensor, or a 0/1 floating-point or integer
                tensor (read as ``mask != 0``, as the masks of :func:`~latentdyn.objectives.kl_per_sequence`; its
                values are not read back), of the posterior's batch shape (L, B), row t−1 for z_t. Where
                ``posterior_mask[t-1, b]`` is False, z_t of sequence b comes from the prior evaluated on its own
                y_{t−1} (and u_t), drawn as a predicted step's is (sampled, its mean with ``sample=False``, or
                the ``sampler``'s draw for role ``"z_prior"``); where True, from the posterior. Steps at or
                beyond ``n_observed`` take the prior whatever the mask says. With a mask the prior is evaluated
                once per frame on (B, Dy) also along the posterior part, and the sampler draws the posterior's
                steps used (``Rollout.posterior``'s, (min(L, n_observed − 1, T − 1), B, Dz)) and then one
                ``"z_prior"`` (B, Dz) for every transition, observed ones included (so a
                sampled rollout draws other noise for its predicted part than one without a mask). Where the
                mask is False the posterior's parameters may be NaN (the posterior of padding): no NaN reaches
                the states, z or their gradients, and no gradient reaches those parameters (nor through the KL
                of :func:`~latentdyn.objectives.kl_per_sequence` with the same mask). Recorded in
                ``Rollout.posterior_mask``.
                For a model without noise (Dz = 0) z is empty and the mask changes nothing. None (the default):
                every step of the posterior gives z.

        Returns:
            A :class:`Rollout`.

        Raises:
            TypeError: an argument of the wrong kind (``n_frames``, ``n_substeps``, ``n_observed`` or ``t0``
                not an int, ``sample`` not a bool, ``y0`` not floating-point, a posterior that is not a diagonal
                Gaussian, a prior that does not return one, a ``sampler`` that is not callable or draws something
                other than a floating-point tensor, a ``posterior_mask`` that is not a tensor or is a complex one).
                Also dtypes the networks would refuse: ``y0`` not in the dtype of the model's parameters, or a
                posterior or a draw of a higher precision than ``y0`` (a float64 one for float32 states); under
                ``torch.autocast``, which casts the other dtypes, only float64 ones for a model whose parameters
                are not float64.
            ValueError: wrong shapes of ``y0``, of ``inputs``, of the posterior, of ``posterior_mask`` (not the
                posterior's batch shape (L, B)), of the prior's output or of a sampler's draw; counts out of
                range; z needed beyond the posterior from a model without a prior; ``inputs`` missing for a model
                that takes them, or given to one that does not; ``posterior_mask`` given without a posterior, or
                to a model with noise (Dz > 0) but without a prior, whatever its values (they are not read: a
                False step would need the prior).
        """
        cell = self.cell
        b = check_shape(y0, "b dy", "y0", dy=cell.state_size)["b"]
        if not y0.is_floating_point():
            raise TypeError(f"y0: expected a floating-point tensor, got dtype {y0.dtype}")
        sample = check_bool(sample, "sample")
        n_frames = check_positive_int(n_frames, "n_frames")
        t0 = check_int(t0, "t0")
        n = cell.check_substeps(n_substeps)
        step = _transition(cell)
        n_post = self._check_posterior(posterior, n_observed, n_frames, b)
        mask_used = self._check_posterior_mask(posterior_mask, posterior, n_post)
        # A y0, posterior or draw of a dtype the networks refuse would fail inside them ("mat1 and mat2 must
        # have the same dtype"): named here instead. The highest dtype a draw may have, or None.
        state_dtype = self._check_dtypes(y0, posterior)
        if sampler is not None and not callable(sampler):
            raise TypeError(
                f"sampler: expected a callable draw(dist, role) -> tensor, or None, got {type(sampler).__name__}"
            )
        draw = sampler if sampler is not None else _in_dtype(default_sampler(sample), state_dtype)
        if mask_used is not None and getattr(sampler, "_one_row_per_transition", False):
            raise ValueError(
                "sampler: a noise_sampler reads one row of z per transition, but a rollout with a posterior_mask "
                "draws the prior of the observed transitions too (for the sequences the mask hands to it); draw "
                "the noise with a sampler of your own, or roll out without the mask"
            )
        n_trans = n_frames - 1
        u_all = self._check_inputs(inputs, n_trans, b)
        dz = self.noise_size
        if dz > 0 and self.prior is None and n_post < n_trans:
            raise ValueError(
                f"posterior: this model has no prior, so z_{n_post + 1} must come from the posterior, which "
                f"covers {n_post} transitions out of the {n_trans} requested"
            )

        # A given posterior stays a distribution even when no step of it is used (batch (0, B)), so that its KL
        # terms are zeros (B,) rather than a None to special-case.
        post_used = index_steps(posterior, slice(0, n_post)) if posterior is not None else None
        z_post = None
        if post_used is not None and n_post > 0:
            z_post = _check_draw(draw(post_used, "z_posterior"), "z_posterior", (n_post, b, dz), state_dtype)
        # With a mask, each posterior step may hand some sequences to the prior: it is evaluated (and drawn from)
        # inside the loop there, and z picked per sequence with torch.where (no value read: vmap and compile
        # trace it; the posterior's draw where the mask is False, NaN for a posterior of padding, is never used
        # in arithmetic and gets a zero gradient). Without a mask the prior of the posterior part is evaluated
        # after the loop in one batched call. For Dz = 0, z is empty and the mask changes nothing.
        step_mask = mask_used if dz > 0 else None

        substates = [y0.unsqueeze(0)]
        residuals: list[torch.Tensor] = []
        zs: list[torch.Tensor] = []
        prior_steps: list[Independent[Normal]] = []
        y = y0

        def from_prior(y: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
            """A draw of p(z | y[, u]), kept for the rollout's prior (the first call checks its output)."""
            p = self._prior(y, u, check=not prior_steps)
            prior_steps.append(p)
            return _check_draw(draw(p, "z_prior"), "z_prior", (b, dz), state_dtype)

        for t in range(1, n_trans + 1):
            u = None if u_all is None else u_all[t - 1]
            if z_post is not None and t <= n_post:
                z = z_post[t - 1]
                if step_mask is not None:  # a prior exists (checked)
                    z = torch.where(step_mask[t - 1, :, None], z, from_prior(y, u))
            elif dz == 0:
                z = y.new_zeros(b, 0)
            else:  # a prior exists (checked above)
                z = from_prior(y, u)
            if z.dtype != y.dtype and torch.promote_types(z.dtype, y.dtype) == y.dtype:
                # A lower-precision draw (a bfloat16 posterior of autocast heads) is cast up, exactly: nn.GRUCell
                # does not promote its input, and z stays of one dtype whatever gave it (a mask mixes both).
                z = z.to(y.dtype)
            cond = z if u is None else torch.cat([z, u.to(z.dtype)], dim=-1)
            path = step(y, cond, n, t0 + t - 1)
            if t == 1:
                cell.check_path(path, n, b)
            substates.append(path.states)
            if path.residuals is not None:
                residuals.append(path.residuals)
            zs.append(z)
            y = path.states[-1]

        all_states = torch.cat(substates)
        z_all = torch.stack(zs) if zs else y0.new_zeros(0, b, dz)
        batched = n_post if step_mask is None else 0  # posterior steps whose prior is evaluated after the loop
        prior = self._collect_prior(all_states[::n], u_all, batched, prior_steps, n_trans)
        if residuals:
            all_residuals: torch.Tensor | None = torch.cat(residuals)
        else:  # no transition: empty for a cell that reports residuals, so that penalties sum to zeros (B,)
            all_residuals = y0.new_zeros(0, b, cell.state_size) if cell.has_residuals else None
        return Rollout(
            substates=all_states,
            n_substeps=n,
            z=z_all,
            prior=prior,
            posterior=post_used,
            residuals=all_residuals,
            t0=t0,
            posterior_mask=mask_used,
        )

    def forward(self, y0: torch.Tensor, n_frames: int, **kwargs: Any) -> Rollout:
        """``ssm(y0, n_frames, ...)``: the same as :meth:`rollout`.

        Module calls (hooks, ``DistributedDataParallel``, ``torch.func.functional_call``) go through
        ``forward``. It passes its keyword arguments on as they come, so a subclass whose ``rollout`` takes other
        ones is called the same way; type checkers see :meth:`rollout`'s arguments by name.

        Args:
            y0: state of the first frame, (B, Dy).
            n_frames: T, number of frame times including the first.
            **kwargs: the keyword arguments of :meth:`rollout`.

        Returns:
            A :class:`Rollout`.
        """
        return self.rollout(y0, n_frames, **kwargs)

    if TYPE_CHECKING:  # module(...) has rollout's signature (forward passes its keyword arguments on)

        def __call__(
            self,
            y0: torch.Tensor,
            n_frames: int,
            *,
            posterior: Independent[Normal] | None = None,
            n_observed: int | None = None,
            sample: bool = True,
            sampler: Sampler | None = None,
            n_substeps: int | None = None,
            t0: int = 0,
            inputs: torch.Tensor | None = None,
            posterior_mask: torch.Tensor | None = None,
        ) -> Rollout: ...

    def _check_dtypes(self, y0: torch.Tensor, posterior: Independent[Normal] | None) -> torch.dtype | None:
        """Check the dtypes the networks would refuse; return the highest dtype a draw may have (None: any).

        Without autocast the networks need inputs of their parameters' dtype: ``y0`` must have it, and a
        posterior or a draw must not promote the states (z is concatenated with them). Under autocast the
        inputs are cast to the autocast dtype, except float64 ones, which then meet lower-precision weights.
        Models without floating-point parameters, or with parameters of several dtypes, are not checked.
        """
        ceiling = check_input_dtype(y0, "y0", self, "model")
        if ceiling is None:
            return None
        if posterior is not None:
            # Both parameters: a draw loc + scale·ε takes the dtype of the higher one (a float32 loc with a
            # float64 scale draws float64).
            base = posterior.base_dist
            got = torch.promote_types(base.loc.dtype, base.scale.dtype)
            if torch.promote_types(got, ceiling) != ceiling:
                raise TypeError(
                    f"posterior: expected the dtype of y0, {ceiling} (or a lower precision), got {got} (loc "
                    f"{base.loc.dtype}, scale {base.scale.dtype}); the cell would see a condition of another dtype "
                    "than its parameters"
                )
        return ceiling

    def _check_inputs(self, inputs: torch.Tensor | None, n_trans: int, b: int) -> torch.Tensor | None:
        """The exogenous inputs (T−1, B, Du) of a rollout, or None for a model without inputs."""
        du = self.input_size
        if inputs is None:
            if du > 0 and n_trans > 0:
                raise ValueError(
                    f"inputs: this model takes exogenous inputs (input_size={du}), expected a tensor (T-1, B, Du) = "
                    f"{[n_trans, b, du]}, got None"
                )
            return None
        if du == 0:
            raise ValueError(
                "inputs: this model takes no exogenous inputs (input_size=0; build it with "
                "LatentSSM(cell, prior, input_size=Du) and a cell whose cond_size is Dz + Du), got a tensor"
            )
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"inputs: expected a tensor (T-1, B, Du), got {type(inputs).__name__}")
        if not inputs.is_floating_point():
            raise TypeError(f"inputs: expected a floating-point tensor, got dtype {inputs.dtype}")
        if tuple(inputs.shape) != (n_trans, b, du):
            raise ValueError(
                f"inputs: expected shape (T-1, B, Du) = {[n_trans, b, du]} (one input per transition), got "
                f"{list(inputs.shape)}"
            )
        return inputs

    def _check_posterior(
        self, posterior: Independent[Normal] | None, n_observed: int | None, n_frames: int, b: int
    ) -> int:
        """Number of transitions whose z comes from the posterior."""
        n_trans = n_frames - 1
        if n_observed is not None:
            n_observed = check_positive_int(n_observed, "n_observed")
        if posterior is None:
            if n_observed is not None and n_observed > 1:
                raise ValueError(
                    f"n_observed: {n_observed} observed frames need a posterior over {n_observed - 1} "
                    "transitions, got posterior=None"
                )
            return 0
        if not isinstance(posterior, Distribution):
            raise TypeError(f"posterior: expected a torch Distribution, got {type(posterior).__name__}")
        if not (isinstance(posterior, Independent) and isinstance(posterior.base_dist, Normal)):
            raise TypeError(
                "posterior: expected a diagonal Gaussian Independent(Normal(loc, scale), 1), got "
                f"{type(posterior).__name__}"
            )
        shape = tuple(posterior.batch_shape)
        event = tuple(posterior.event_shape)
        if len(shape) != 2 or shape[1] != b or event != (self.noise_size,):
            raise ValueError(
                f"posterior: expected batch shape (L, {b}) and event shape ({self.noise_size},), got "
                f"batch {list(shape)} and event {list(event)}"
            )
        available = shape[0]
        wanted = available + 1 if n_observed is None else check_positive_int(n_observed, "n_observed")
        if wanted - 1 > available:
            raise ValueError(
                f"posterior: covers {available} transitions, but n_observed={wanted} frames need {wanted - 1}"
            )
        return min(wanted - 1, n_trans)

    def _check_posterior_mask(
        self, posterior_mask: torch.Tensor | None, posterior: Independent[Normal] | None, n_post: int
    ) -> torch.Tensor | None:
        """The rows of ``posterior_mask`` for the ``n_post`` posterior steps used, bool (n_post, B) on the device
        of the posterior, or None without a mask. Its kind, shape and the model are checked, not its values."""
        if posterior_mask is None:
            return None
        mask = check_mask_type(posterior_mask, "posterior_mask")
        if posterior is None:
            raise ValueError(
                f"posterior_mask: expected a posterior to go with it (the mask says which of its steps give z), got "
                f"posterior=None and a mask of shape {list(mask.shape)}; pass posterior=q, or no mask"
            )
        want = tuple(posterior.batch_shape)  # (L, B), checked
        if tuple(mask.shape) != want:
            hint = ""
            if mask.dim() == 2 and tuple(mask.shape) == (want[0] + 1, want[1]):
                hint = (
                    "; a (T, B) mask of observed frames gives the posterior's steps as mask[1:] (z_t belongs to "
                    "frame t)"
                )
            elif mask.dim() == 2 and tuple(mask.shape) == (want[1], want[0]):
                hint = "; is it transposed? steps come first (time-first), sequences second"
            elif mask.dim() == 3 and tuple(mask.shape) == (*want, 1):
                hint = "; one entry per step and sequence: drop the trailing axis, posterior_mask[..., 0]"
            raise ValueError(
                f"posterior_mask: expected the posterior's batch shape (L, B) = {list(want)}, got "
                f"{list(mask.shape)}{hint}"
            )
        if self.prior is None and self.noise_size > 0:
            raise ValueError(
                "posterior_mask: this model has no prior, so a step the mask leaves out (False) would have no "
                "distribution to draw z from; a mask is refused for such a model whatever its values (they are not "
                "read); pass no mask (every step from the posterior), or build the model with a prior"
            )
        # A copy: the rollout's record must not change when the caller reuses its mask's buffer.
        return mask_as_bool(mask[:n_post], posterior.base_dist.loc.device).clone()

    def _collect_prior(
        self,
        states: torch.Tensor,
        inputs: torch.Tensor | None,
        n_post: int,
        in_loop: list[Independent[Normal]],
        n_trans: int,
    ) -> Independent[Normal] | None:
        """p(z_t | y_{t−1}) for every transition: evaluated here in one batched call for the first ``n_post`` (the
        posterior part of a rollout without a mask), then the ``in_loop`` ones, evaluated in the loop.

        Empty (batch (0, B)) for a single-frame rollout; None without a prior or without noise.
        """
        if self.prior is None or self.noise_size == 0:
            return None
        if n_trans == 0:
            empty = states.new_zeros(0, states.shape[1], self.noise_size)
            return _diag_gaussian(empty, torch.ones_like(empty), validate_args=False)
        n_post = min(n_post, n_trans)
        parts_loc: list[torch.Tensor] = []
        parts_scale: list[torch.Tensor] = []
        if n_post > 0:
            u = None if inputs is None else inputs[:n_post]
            base = self._prior(states[:n_post], u, check=True).base_dist
            parts_loc.append(base.loc)
            parts_scale.append(base.scale)
        if in_loop:
            parts_loc.append(torch.stack([p.base_dist.loc for p in in_loop]))
            parts_scale.append(torch.stack([p.base_dist.scale for p in in_loop]))
        return _diag_gaussian(torch.cat(parts_loc), torch.cat(parts_scale), validate_args=False)  # valid parts


def _transition(cell: TransitionCell) -> Callable[[torch.Tensor, torch.Tensor, int, int], CellPath]:
    """How the rollout takes one transition, unchecked (it checks once): through the module call, so that hooks
    on the cell and a compiled cell apply; a cell class that overrides ``forward`` with a signature of its own
    (``forward(y, z)``, as custom cells could before the rollout called the cell as a module) is stepped through
    its ``_path`` directly, as the rollout did then."""
    base = getattr(cell, "_orig_mod", cell)  # the module inside a torch.compile wrapper
    if type(base).forward is TransitionCell.forward:

        def through_module(y: torch.Tensor, cond: torch.Tensor, n: int, frame: int) -> CellPath:
            return cell(y, cond, n, frame, return_path=True, check=False)

        return through_module
    return base._path
