"""Frame-metric throughput of the evaluation: ``ssim`` (and ``psnr``) frame pairs per second, three SSIM filters.

    python -m benchmarks.metrics [--pairs 320,6400] [--channels 1] [--size 64] [--iters 7] [--json out.json]

The best-of-N evaluation scores every sample's every predicted frame, so its metric code runs on hundreds to
thousands of frame pairs per call (``examples.srvp.evaluate`` scores about 512 predicted frames at a time). SSIM
is the costly one: five window moments per plane, each filtered by an 11×11 Gaussian. Three ways of computing
the same SSIM are run side by side, in turns in one process, each through ``ssim`` itself (its checks included)
with one of its module's internals swapped:

- ``ssim``: :func:`latentdyn.video.metrics.ssim` as it runs on this device. On CPU, two banded-matrix matmuls
  per plane, a block of planes at a time (about 4 MiB of moments: they stay in the caches).
- ``one-pass``: the same filter over all planes at once (what ``ssim`` did on CPU before the blocks; on other
  devices, what it does anyway).
- ``grouped-conv``: the two 1-D passes as grouped ``conv2d`` over all planes at once (what ``ssim`` does on
  other devices, and did on CPU before the banded matmuls).

``psnr`` is timed alongside for scale. Each variant's per-frame SSIM is compared with ``ssim``'s in the same run
(``max_abs_diff_vs_ssim``), so all three provably compute the same metric. The ratios are against ``one-pass``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from benchmarks._common import check_at_least, check_json_path, checked_device, interleaved, machine, write_json
from examples.srvp._cli import CliParser, ends_quietly_on_a_closed_pipe
from latentdyn.video import metrics
from latentdyn.video.metrics import psnr, ssim

WINDOW = 11
"""The protocol's SSIM window (``ssim``'s default): frames must be at least this size."""


@contextmanager
def _patched(**attributes: Any) -> Iterator[None]:
    """``latentdyn.video.metrics`` with some module attributes replaced, restored on exit."""
    saved = {name: getattr(metrics, name) for name in attributes}
    for name, value in attributes.items():
        setattr(metrics, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(metrics, name, value)


def _variant(**attributes: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``ssim`` itself (its checks included) with ``attributes`` of its module swapped in."""

    def score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with _patched(**attributes):
            return ssim(pred, target)

    return score


VARIANTS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ssim": ssim,
    # One block holding every plane (the CPU path before the blocks; on other devices, what ssim does anyway).
    "one-pass": _variant(_CPU_BLOCK_BYTES=1 << 62),
    # The grouped convolutions of other devices, over every plane at once, on this device.
    "grouped-conv": _variant(_CPU_BLOCK_BYTES=1 << 62, _filter_valid_matmul=metrics._filter_valid_conv),
}
BASELINE = "one-pass"


def _key(variant: str) -> str:
    """A variant's name as the prefix of its JSON fields (``one-pass`` → ``one_pass``)."""
    return variant.replace("-", "_")


def _pairs(n: int, channels: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, C, size, size)`` targets in [0, 1] and noisy predictions of them (float32)."""
    g = torch.Generator().manual_seed(n)
    target = torch.rand(n, channels, size, size, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    return pred.to(device), target.to(device)


def measure(n: int, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    pred, target = _pairs(n, args.channels, args.size, device)
    with torch.inference_mode():
        reference = ssim(pred, target)
        diff = {v: float((fn(pred, target) - reference).abs().max()) for v, fn in VARIANTS.items() if v != "ssim"}

        def call(fn: Callable[..., torch.Tensor]) -> Callable[[], object]:
            return lambda: fn(pred, target)

        fns = {v: call(fn) for v, fn in VARIANTS.items()} | {"psnr": call(psnr)}
        seconds = interleaved(fns, device, args.warmup, args.iters)
    out: dict[str, Any] = {"pairs": n, "channels": args.channels, "size": args.size}
    for v, s in seconds.items():
        out[f"{_key(v)}_s"] = s
        out[f"{_key(v)}_pairs_per_s"] = n / s
    for v in VARIANTS:
        out[f"{_key(v)}_speedup_vs_{_key(BASELINE)}"] = seconds[BASELINE] / seconds[v]
    for v, d in diff.items():
        out[f"{_key(v)}_max_abs_diff_vs_ssim"] = d
    return out


@ends_quietly_on_a_closed_pipe
def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m benchmarks.metrics", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pairs", default="320,6400", help="comma-separated numbers of frame pairs per call")
    parser.add_argument(
        "--channels", type=int, default=1, help="channels per frame (1: SM-MNIST and KTH, 3: BAIR and Human3.6M)"
    )
    parser.add_argument("--size", type=int, default=64, help="frame height and width")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=7)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    try:
        pairs = [int(p) for p in args.pairs.split(",")]
    except ValueError:
        parser.error(f"--pairs: expected comma-separated ints, got {args.pairs!r}")
    check_at_least(
        parser,
        {
            "--pairs": (min(pairs), 1),
            "--channels": (args.channels, 1),
            "--size": (args.size, WINDOW),
            "--warmup": (args.warmup, 0),
            "--iters": (args.iters, 1),
            "--threads": (args.threads, 0),
        },
    )
    check_json_path(parser, args.json)
    device = checked_device(parser, args)
    results = []
    print(f"machine: {machine()}")
    print(f"{args.channels}×{args.size}×{args.size} frame pairs: seconds per call (median); ratios vs {BASELINE}")
    print(f"{'pairs':>6s} | " + " | ".join(f"{v:>12s} {'ratio':>6s}" for v in VARIANTS) + f" | {'psnr':>8s}")
    for n in pairs:
        r = measure(n, args, device)
        results.append(r)
        cells = [f"{r[f'{_key(v)}_s']:12.4f} {r[f'{_key(v)}_speedup_vs_one_pass']:6.2f}" for v in VARIANTS]
        print(f"{n:6d} | " + " | ".join(cells) + f" | {r['psnr_s']:8.4f}")
    worst = max(r[k] for r in results for k in r if k.endswith("max_abs_diff_vs_ssim"))
    print(f"largest per-frame SSIM difference between the variants: {worst:.1e}")
    write_json(
        args.json,
        {"benchmark": "metrics", "machine": machine(), "config": vars(args) | {"pairs": pairs}, "results": results},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
