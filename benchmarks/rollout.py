"""Rollout overhead of small latent models: ``LatentSSM.rollout`` against a hand-written torch loop (the floor).

    python -m benchmarks.rollout [--configs NAME,...] [--iters 7] [--device cpu|cuda] [--json out.json]

Time-series and world models are often small (Dy = 8..32, Dz = 2..8, MLPs of width 64, batch 16..256,
100..1000 frames), so a rollout's cost can be Python and per-step overhead rather than arithmetic. Every
configuration is run two ways, side by side:

- ``floor``: a minimal loop written with plain torch around the same networks (the torch layers of the same
  ``MLP`` modules of the field, prior and cell, without the MLPs' input checks): prior raw output → chunk →
  softplus + 1e-8 → ``loc + eps·scale``, the cell's update,
  one ``torch.stack`` at the end. No checks, no ``torch.distributions`` objects, no per-frame bookkeeping.
- ``latentdyn``: ``LatentSSM.rollout`` on the same model, with the default sampler.

Both are timed for the forward pass under ``torch.inference_mode`` (generation, imagination) and for forward +
backward of the same loss (training). The ratio ``latentdyn / floor`` is the overhead of the library. Before
timing, both run with means (``sample=False``) and their states are compared (``max_abs_diff_vs_floor``), so
the floor provably computes the same thing. The variants alternate within one process (both see the same
machine state, which matters more for a ratio of two short timings on a shared machine than separate peak
memories, which the other scripts measure).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._common import (
    check_at_least,
    check_json_path,
    checked_device,
    checked_names,
    interleaved,
    machine,
    write_json,
)
from examples.srvp._cli import CliParser, ends_quietly_on_a_closed_pipe
from latentdyn import (
    MLP,
    ConditionalGaussianPrior,
    EulerIntegrator,
    GRUCell,
    LatentSSM,
    MLPField,
    ODECell,
    ResidualCell,
    diag_gaussian,
)


@dataclass(frozen=True)
class Config:
    cell: str  # "residual" (ResidualCell), "ode-euler" (ODECell + EulerIntegrator) or "gru" (GRUCell)
    dy: int  # state size Dy
    dz: int  # noise size Dz
    width: int  # hidden width of the field and prior MLPs
    batch: int  # B sequences
    frames: int  # T frames
    substeps: int  # n sub-steps per frame
    observed: int  # frames observed: z from a posterior for the first observed - 1 transitions, then the prior


CONFIGS = {
    "residual-tiny": Config("residual", dy=8, dz=2, width=64, batch=16, frames=1000, substeps=1, observed=1),
    "residual-small": Config("residual", dy=16, dz=4, width=64, batch=64, frames=200, substeps=2, observed=100),
    "ode-euler": Config("ode-euler", dy=32, dz=8, width=64, batch=256, frames=100, substeps=4, observed=1),
    "gru": Config("gru", dy=32, dz=8, width=64, batch=128, frames=500, substeps=1, observed=250),
}
MLP_LAYERS = 3  # Linear layers of the field and prior MLPs (two hidden layers)
# The MLPs have tanh activations: the field's output is bounded, so a 1000-frame rollout stays finite (with ReLU
# the state grows geometrically), and so are the prior's parameters.


def build(cfg: Config, device: torch.device, dtype: torch.dtype) -> LatentSSM:
    torch.manual_seed(0)
    if cfg.cell == "gru":
        cell: Any = GRUCell(cfg.dy, cfg.dz)
    else:
        field = MLPField(cfg.dy, cfg.dz, cfg.width, MLP_LAYERS)
        field.net = MLP(cfg.dy + cfg.dz, cfg.width, cfg.dy, MLP_LAYERS, activation=nn.Tanh)
        if cfg.cell == "residual":
            cell = ResidualCell(field, cfg.dy, cfg.dz, n_substeps=cfg.substeps)
        else:
            cell = ODECell(field, EulerIntegrator(), cfg.dy, cfg.dz, n_substeps=cfg.substeps)
    prior = ConditionalGaussianPrior(MLP(cfg.dy, cfg.width, 2 * cfg.dz, MLP_LAYERS, activation=nn.Tanh))
    return LatentSSM(cell, prior).to(device=device, dtype=dtype)


class Outputs:
    """What both variants return: states (T, B, Dy), prior loc and scale (T−1, B, Dz), residuals or None."""

    def __init__(self, states: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, res: torch.Tensor | None):
        self.states, self.loc, self.scale, self.residuals = states, loc, scale, res

    def loss(self) -> torch.Tensor:
        total = self.states.square().mean() + self.loc.square().mean() + self.scale.mean()
        return total if self.residuals is None else total + self.residuals.square().mean()


def _layers(net: nn.Module) -> nn.Module:
    """The torch layers of an :class:`~latentdyn.nn.MLP` (``layers``), or ``net`` itself."""
    return net.layers if isinstance(net, MLP) else net


def floor_rollout(
    ssm: LatentSSM, cfg: Config, y0: torch.Tensor, q_loc: torch.Tensor, q_scale: torch.Tensor, sample: bool
) -> Outputs:
    """The same rollout written as a plain torch loop around the model's networks (their torch layers: an MLP's
    ``layers``, without the MLP's input check)."""
    prior_net: nn.Module = _layers(ssm.prior.net)  # type: ignore[union-attr,arg-type]

    def prior_params(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw_scale = prior_net(y).chunk(2, dim=-1)
        return loc, F.softplus(raw_scale) + 1e-8

    def draw(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return loc + torch.randn_like(loc) * scale if sample else loc

    n, n_post = cfg.substeps, cfg.observed - 1
    z_post = draw(q_loc, q_scale)
    states, residuals, locs, scales = [y0], [], [], []
    y = y0
    for t in range(1, cfg.frames):
        if t <= n_post:
            z = z_post[t - 1]
        else:
            loc, scale = prior_params(y)
            locs.append(loc)
            scales.append(scale)
            z = draw(loc, scale)
        if cfg.cell == "gru":
            y = ssm.cell.gru(z, y)  # type: ignore[operator]
            states.append(y)
            continue
        net: nn.Module = _layers(ssm.cell.field.net)  # type: ignore[union-attr,arg-type]
        for _ in range(n):
            res = (1.0 / n) * net(torch.cat([y, z], dim=-1))
            y = y + res
            states.append(y)
            residuals.append(res)
    all_states = torch.stack(states)
    loc_parts, scale_parts = [], []
    if n_post > 0:  # the prior along the observed part, in one batch
        loc, scale = prior_params(all_states[: n_post * n : n])
        loc_parts, scale_parts = [loc], [scale]
    if locs:
        loc_parts.append(torch.stack(locs))
        scale_parts.append(torch.stack(scales))
    res = torch.stack(residuals) if residuals else None
    return Outputs(all_states[::n], torch.cat(loc_parts), torch.cat(scale_parts), res)


def latentdyn_rollout(
    ssm: LatentSSM, cfg: Config, y0: torch.Tensor, q_loc: torch.Tensor, q_scale: torch.Tensor, sample: bool
) -> Outputs:
    posterior = diag_gaussian(q_loc, q_scale) if cfg.observed > 1 else None
    r = ssm.rollout(y0, cfg.frames, posterior=posterior, sample=sample)
    assert r.prior is not None
    return Outputs(r.states, r.prior.base_dist.loc, r.prior.base_dist.scale, r.residuals)


VARIANTS: dict[str, Callable[..., Outputs]] = {"floor": floor_rollout, "latentdyn": latentdyn_rollout}


def measure(name: str, cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    ssm = build(cfg, device, dtype)
    g = torch.Generator().manual_seed(1)
    y0 = torch.randn(cfg.batch, cfg.dy, generator=g).to(device, dtype)
    q_loc = torch.randn(max(cfg.observed - 1, 0), cfg.batch, cfg.dz, generator=g).to(device, dtype)
    q_scale = torch.rand(q_loc.shape, generator=g).add(0.5).to(device, dtype)

    with torch.no_grad():
        means = {variant: fn(ssm, cfg, y0, q_loc, q_scale, False) for variant, fn in VARIANTS.items()}
    diff = max(
        float((getattr(means["floor"], k) - getattr(means["latentdyn"], k)).abs().max())
        for k in ("states", "loc", "scale")
    )

    def forward(fn: Callable[..., Outputs]) -> Callable[[], object]:
        def run() -> None:
            with torch.inference_mode():
                fn(ssm, cfg, y0, q_loc, q_scale, True)

        return run

    def forward_backward(fn: Callable[..., Outputs]) -> Callable[[], object]:
        def run() -> None:
            ssm.zero_grad(set_to_none=True)
            fn(ssm, cfg, y0, q_loc, q_scale, True).loss().backward()

        return run

    out: dict[str, Any] = {"config": name, **asdict(cfg), "max_abs_diff_vs_floor": diff}
    for mode, wrap in (("forward", forward), ("forward_backward", forward_backward)):
        seconds = interleaved({variant: wrap(fn) for variant, fn in VARIANTS.items()}, device, args.warmup, args.iters)
        for variant, s in seconds.items():
            out[f"{variant}_{mode}_s"] = s
        out[f"overhead_{mode}"] = seconds["latentdyn"] / seconds["floor"]
        out[f"us_per_frame_{mode}"] = 1e6 * seconds["latentdyn"] / (cfg.frames - 1)
    return out


@ends_quietly_on_a_closed_pipe
def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m benchmarks.rollout", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ", ".join(CONFIGS))
    parser.add_argument("--frames", type=int, default=0, help="override T of every configuration (0: keep)")
    parser.add_argument("--batch", type=int, default=0, help="override B of every configuration (0: keep)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=7)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    check_at_least(
        parser,
        {
            "--frames": (args.frames, 0),
            "--batch": (args.batch, 0),
            "--warmup": (args.warmup, 0),
            "--iters": (args.iters, 1),
            "--threads": (args.threads, 0),
        },
    )
    check_json_path(parser, args.json)
    checked_device(parser, args)
    names = checked_names(parser, args.configs, "--configs", CONFIGS)
    results = []
    print(f"machine: {machine()}")
    print("seconds per rollout (median); overhead = latentdyn / floor (the hand-written torch loop)")
    print(
        f"{'config':15s} {'frames':>6s} {'B':>4s} {'n':>2s} | {'floor':>8s} {'latentdyn':>9s} {'overhead':>8s} | "
        f"{'floor':>8s} {'latentdyn':>9s} {'overhead':>8s}"
    )
    print(f"{'':30s} | {'forward (inference_mode)':^28s} | {'forward + backward':^28s}")
    for name in names:
        cfg = CONFIGS[name]
        if args.frames:
            cfg = replace(cfg, frames=args.frames, observed=min(cfg.observed, args.frames))
        if args.batch:
            cfg = replace(cfg, batch=args.batch)
        r = measure(name, cfg, args)
        results.append(r)
        print(
            f"{name:15s} {cfg.frames:6d} {cfg.batch:4d} {cfg.substeps:2d} | {r['floor_forward_s']:8.4f} "
            f"{r['latentdyn_forward_s']:9.4f} {r['overhead_forward']:8.2f} | {r['floor_forward_backward_s']:8.4f} "
            f"{r['latentdyn_forward_backward_s']:9.4f} {r['overhead_forward_backward']:8.2f}"
        )
    write_json(
        args.json,
        {"benchmark": "rollout", "machine": machine(), "config": vars(args) | {"configs": names}, "results": results},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
