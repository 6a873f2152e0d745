"""LatentSSM: the one rollout loop over frames of a latent state-space model.

Model (time index t counts frames, states live at integer times, sub-steps of size 1/n in between)::

    z_{t+1} ~ q(z_{t+1} | x_{0..t+1})   while frame t+1 is observed,
    z_{t+1} ~ p(z_{t+1} | y_t)           afterwards (the prior is always evaluated at integer-time states),
    y_{t+1} = cell(y_t, z_{t+1})         in n sub-steps with z held constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from latentdyn._checks import check_positive_int, check_shape
from latentdyn.cells.base import TransitionCell
from latentdyn.distributions import diag_gaussian, index_steps

__all__ = ["LatentSSM", "Rollout", "Sampler", "default_sampler"]

Role = Literal["y0", "z_posterior", "z_prior"]


class Sampler(Protocol):
    """Draws a value from a distribution; ``role`` says which latent it is for (noise control, tests)."""

    def __call__(self, dist: Distribution, role: Role) -> torch.Tensor: ...


def default_sampler(sample: bool = True) -> Sampler:
    """Reparameterised samples (``sample=True``) or means (``sample=False``)."""

    def draw(dist: Distribution, role: Role) -> torch.Tensor:
        return dist.rsample() if sample else dist.mean

    return draw


@dataclass
class Rollout:
    """Result of :meth:`LatentSSM.rollout`.

    Attributes:
        substates: every sub-step state, ((T−1)·n + 1, B, Dy); entry i is at time ``t0 + i/n``.
        n_substeps: n, sub-steps per frame.
        z: the noise of every transition, (T−1, B, Dz); ``z[t-1]`` drives frame t−1 → t.
        prior: p(z_t | y_{t−1}) for every transition, batch (T−1, B), or ``None`` without a prior.
        posterior: the posterior steps that were used, batch (L, B), or ``None``.
        residuals: increments of every sub-step, ((T−1)·n, B, Dy), or ``None`` for non-residual cells.
        t0: integer time of the first state.
    """

    substates: torch.Tensor
    n_substeps: int
    z: torch.Tensor
    prior: Independent | None
    posterior: Independent | None
    residuals: torch.Tensor | None
    t0: int = 0

    @property
    def states(self) -> torch.Tensor:
        """States at frame (integer) times, (T, B, Dy)."""
        return self.substates[:: self.n_substeps]

    @property
    def n_frames(self) -> int:
        """T, the number of frame times covered."""
        return (self.substates.shape[0] - 1) // self.n_substeps + 1

    def times(self) -> torch.Tensor:
        """Time of every sub-step state, ((T−1)·n + 1,), float64, built from integers."""
        i = torch.arange(self.substates.shape[0], dtype=torch.float64)
        return self.t0 + i / self.n_substeps

    def at(self, times: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """States at arbitrary query times in ``[t0, t0 + T − 1]``, (Q, B, Dy).

        Between sub-step states the state is linearly interpolated, which is exact for Euler sub-steps
        (the Euler solution is piecewise linear) and a first-order approximation for other cells.

        Args:
            times: Q strictly increasing times.
        """
        ts = torch.as_tensor(times, dtype=torch.float64).flatten()
        lo, hi = float(self.t0), float(self.t0 + self.n_frames - 1)
        if ts.numel() == 0:
            raise ValueError("times: expected at least one query time, got none")
        if bool((ts < lo).any()) or bool((ts > hi).any()):
            raise ValueError(f"times: expected times within the rollout [{lo}, {hi}], got {ts.tolist()}")
        if ts.numel() > 1 and not bool((ts[1:] > ts[:-1]).all()):
            raise ValueError(f"times: expected strictly increasing times, got {ts.tolist()}")
        pos = (ts - self.t0) * self.n_substeps
        # A sub-step time i/n can come back as i − ε after the float round trip (n = 7, i = 61): snap it
        # onto i so that sub-step times return the stored states exactly.
        nearest = pos.round()
        pos = torch.where((pos - nearest).abs() < 1e-9, nearest, pos)
        left = pos.floor().long().clamp(max=self.substates.shape[0] - 1)
        right = (left + 1).clamp(max=self.substates.shape[0] - 1)
        w = (pos - left).to(self.substates)[:, None, None]
        return torch.lerp(self.substates[left], self.substates[right], w)


class LatentSSM(nn.Module):
    """Latent state-space model: a transition cell driven by per-frame noise z from a posterior or a prior.

    Args:
        cell: the transition y_t → y_{t+1}.
        prior: conditional prior p(z_{t+1} | y_t), a module mapping (B, Dy) to a distribution with batch
            (B,); ``None`` for models without z (the cell then takes Dz = 0) or that always get a posterior.
    """

    def __init__(self, cell: TransitionCell, prior: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(cell, TransitionCell):
            raise TypeError(f"cell: expected a TransitionCell, got {type(cell).__name__}")
        self.cell = cell
        self.prior = prior

    def rollout(
        self,
        y0: torch.Tensor,
        n_frames: int,
        *,
        posterior: Independent | None = None,
        n_observed: int | None = None,
        sample: bool = True,
        sampler: Sampler | None = None,
        n_substeps: int | None = None,
        t0: int = 0,
    ) -> Rollout:
        """Roll the model out from ``y0`` over ``n_frames`` frame times.

        For every transition t−1 → t (t = 1..T−1): z_t comes from the posterior while frame t is observed
        (t < n_observed), else from the prior evaluated on y_{t−1} (sampled, or its mean with
        ``sample=False``); then the cell takes its n sub-steps with z_t held constant. The prior is always
        evaluated on integer-time states, also along the posterior part (for the KL).

        Args:
            y0: state of the first frame, (B, Dy).
            n_frames: T, number of frame times including the first, at least 1.
            posterior: q(z_t | x_{0..t}) for t = 1..L, batch (L, B), event (Dz,).
            n_observed: frames observed; z_t for t < n_observed comes from the posterior. Defaults to L + 1.
            sample: draw z (and reparameterise) if True, else use means. Ignored when ``sampler`` is given.
            sampler: custom draw function (e.g. fixed noise).
            n_substeps: sub-steps per frame, Δt = 1/n; defaults to the cell's.
            t0: integer time of ``y0`` (time-dependent fields see absolute times).

        Returns:
            A :class:`Rollout`.
        """
        cell = self.cell
        b = check_shape(y0, "b dy", "y0", dy=cell.state_size)["b"]
        check_positive_int(n_frames, "n_frames")
        n = cell.check_substeps(n_substeps)
        n_post = self._check_posterior(posterior, n_observed, n_frames, b)
        draw = sampler if sampler is not None else default_sampler(sample)
        n_trans = n_frames - 1

        post_used = index_steps(posterior, slice(0, n_post)) if posterior is not None and n_post > 0 else None
        z_post = draw(post_used, "z_posterior") if post_used is not None else None

        substates = [y0.unsqueeze(0)]
        residuals: list[torch.Tensor] = []
        zs: list[torch.Tensor] = []
        prior_steps: list[Independent] = []
        y = y0
        for t in range(1, n_trans + 1):
            if z_post is not None and t <= n_post:
                z = z_post[t - 1]
            elif cell.cond_size == 0:
                z = y.new_zeros(b, 0)
            else:
                if self.prior is None:
                    raise ValueError(
                        f"posterior: this model has no prior, so z_{t} must come from the posterior, which "
                        f"covers {n_post} transitions out of the {n_trans} requested"
                    )
                p = self.prior(y)
                prior_steps.append(p)
                z = draw(p, "z_prior")
            path = cell._path(y, z, n, t0 + t - 1)
            substates.append(path.states)
            if path.residuals is not None:
                residuals.append(path.residuals)
            zs.append(z)
            y = path.states[-1]

        all_states = torch.cat(substates)
        z_all = torch.stack(zs) if zs else y0.new_zeros(0, b, cell.cond_size)
        prior = self._collect_prior(all_states[::n], n_post, prior_steps, n_trans)
        return Rollout(
            substates=all_states,
            n_substeps=n,
            z=z_all,
            prior=prior,
            posterior=post_used,
            residuals=torch.cat(residuals) if residuals else None,
            t0=t0,
        )

    def _check_posterior(
        self, posterior: Independent | None, n_observed: int | None, n_frames: int, b: int
    ) -> int:
        """Number of transitions whose z comes from the posterior."""
        n_trans = n_frames - 1
        if n_observed is not None:
            check_positive_int(n_observed, "n_observed")
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
        if len(shape) != 2 or shape[1] != b or event != (self.cell.cond_size,):
            raise ValueError(
                f"posterior: expected batch shape (L, {b}) and event shape ({self.cell.cond_size},), got "
                f"batch {list(shape)} and event {list(event)}"
            )
        available = shape[0]
        wanted = available + 1 if n_observed is None else check_positive_int(n_observed, "n_observed")
        if wanted - 1 > available:
            raise ValueError(
                f"posterior: covers {available} transitions, but n_observed={wanted} frames need {wanted - 1}"
            )
        return min(wanted - 1, n_trans)

    def _collect_prior(
        self, states: torch.Tensor, n_post: int, in_loop: list[Independent], n_trans: int
    ) -> Independent | None:
        """p(z_t | y_{t−1}) for every transition: batched along the posterior part, as drawn afterwards."""
        if self.prior is None or self.cell.cond_size == 0 or n_trans == 0:
            return None
        n_post = min(n_post, n_trans)
        parts_loc: list[torch.Tensor] = []
        parts_scale: list[torch.Tensor] = []
        if n_post > 0:
            p = self.prior(states[:n_post])
            parts_loc.append(p.mean)
            parts_scale.append(p.stddev)
        if in_loop:
            parts_loc.append(torch.stack([p.mean for p in in_loop]))
            parts_scale.append(torch.stack([p.stddev for p in in_loop]))
        return diag_gaussian(torch.cat(parts_loc), torch.cat(parts_scale), validate_args=False)  # valid parts
