"""Training-data throughput of one process: SM-MNIST batches per second, and the DataLoader workers a target rate needs.

A GPU training of the paper's SM-MNIST model at 30 steps/s and batch 128 needs 3,840 clips/s from its data
workers. Three ways of making the same batch of the step's seed, side by side in one process:

* ``per-clip-float``: each clip composed alone (``compose_frames``), then converted to float32 (``collate_videos``):
  the per-clip form of the official loader;
* ``batch-float``: all clips composed at once (``generate_clips``), then converted to float32 in the worker;
* ``batch-uint8``: what ``BatchStream`` hands to the DataLoader: the batch stacked, still uint8 (the training step
  converts it on its device);
* ``share-uint8``: what ``BatchStream`` hands to the DataLoader of one of ``--processes`` torchrun processes: the
  whole batch's random draws, then only that process's clips composed and stacked (its clips/s count its share).

All are checked to hold the same frames (the share: its clips of the batch) before they are timed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks._common import check_at_least, check_json_path, checked_names, machine, peak_memory, time_it, write_json
from examples.srvp._cli import CliParser, ends_quietly_on_a_closed_pipe

VARIANTS = ("per-clip-float", "batch-float", "batch-uint8", "share-uint8")


def _makers(batch: int, seq_len: int, seed: int, processes: int) -> dict[str, Callable[[], torch.Tensor]]:
    """One function per variant, each making the batch of ``seed`` from the SM-MNIST training digits (the share of
    the last of ``processes`` processes for ``share-uint8``)."""
    from examples.srvp.config import PRESETS
    from examples.srvp.datasets import _digits, generate_clips, share_slice
    from latentdyn.video.collate import collate_videos, stack_videos
    from latentdyn.video.moving_mnist import compose_frames, draw_trajectory

    cfg = PRESETS["smmnist"]()  # (its digits, their number and motion; batch and length are the options')
    pool = _digits(cfg, "train")
    motion: dict[str, Any] = {"max_speed": cfg.max_speed, "deterministic": cfg.deterministic}

    def per_clip() -> torch.Tensor:
        rng = np.random.RandomState(seed)
        clips = []
        for _ in range(batch):
            chosen, corners = [], []
            for _ in range(cfg.num_digits):
                chosen.append(pool[rng.randint(0, len(pool))])
                corners.append(draw_trajectory(rng, seq_len=seq_len, limit=64 - pool.shape[1], **motion).positions)
            clips.append(compose_frames(chosen, corners, 64))
        return collate_videos(clips)

    def batch_clips(keep: slice = slice(None)) -> np.ndarray:
        rng = np.random.RandomState(seed)
        return generate_clips(pool, batch, seq_len, rng, num_digits=cfg.num_digits, keep=keep, **motion)

    share = share_slice(batch, (processes - 1, processes))
    return {
        "per-clip-float": per_clip,
        "batch-float": lambda: collate_videos(list(batch_clips())),
        "batch-uint8": lambda: stack_videos(list(batch_clips())),
        "share-uint8": lambda: stack_videos(list(batch_clips(share))),
    }


@ends_quietly_on_a_closed_pipe
def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m benchmarks.data", description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS)
    )
    parser.add_argument("--batch", type=int, default=128, help="clips per batch (default: 128, the paper's)")
    parser.add_argument("--seq-len", type=int, default=15, help="frames per clip (default: 15, the paper's)")
    parser.add_argument("--target", type=float, default=30.0, help="training steps/s to feed (default: 30)")
    parser.add_argument(
        "--processes", type=int, default=8, help="torchrun processes sharing a batch, for share-uint8 (default: 8)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1, as in a worker)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    names = checked_names(parser, args.variants, "--variants", VARIANTS)
    check_at_least(
        parser,
        {
            "--batch": (args.batch, 1),
            "--seq-len": (args.seq_len, 1),
            "--iters": (args.iters, 1),
            "--warmup": (args.warmup, 0),
            "--threads": (args.threads, 1),
        },
    )
    if not (math.isfinite(args.target) and args.target > 0):
        parser.error(f"--target: expected a number > 0, got {args.target}")
    if args.processes < 1 or args.batch % args.processes:
        parser.error(f"--processes: expected an int >= 1 that divides --batch {args.batch}, got {args.processes}")
    check_json_path(parser, args.json)
    torch.set_num_threads(args.threads)
    makers = _makers(args.batch, args.seq_len, seed=1, processes=args.processes)
    reference = makers["per-clip-float"]()
    clips = {name: args.batch // args.processes if name == "share-uint8" else args.batch for name in names}
    for name in names:  # the same frames, whatever the variant
        made = makers[name]()
        same = made if made.dtype == torch.float32 else made.float().div_(255.0)
        if not torch.equal(same, reference[:, args.batch - clips[name] :]):
            raise RuntimeError(f"variant {name} makes other frames than per-clip-float")
    seconds = {name: time_it(makers[name], torch.device("cpu"), args.warmup, args.iters) for name in names}
    base = seconds.get("per-clip-float")
    results = []
    print(f"machine: {machine()}")
    print(f"one process, {args.threads} thread(s), {args.batch} clips x {args.seq_len} frames, median of {args.iters}")
    if "share-uint8" in names:
        print(f"share-uint8: one of {args.processes} processes, {clips['share-uint8']} clips of each batch")
    print(f"{'variant':15s} {'ms/batch':>9s} {'clips/s':>8s} {'MiB/batch':>9s} {'speed-up':>8s} {'workers':>8s}")
    for name in names:
        made = makers[name]()
        clips_per_s = clips[name] / seconds[name]
        r = {
            "variant": name,
            "clips_per_batch": clips[name],
            "seconds_per_batch": seconds[name],
            "clips_per_s": clips_per_s,
            "mib_per_batch": made.numel() * made.element_size() / 2**20,
            "speedup_vs_per_clip": base / seconds[name] if base else None,
            "workers_for_target": math.ceil(args.target * clips[name] / clips_per_s),
        }
        results.append(r)
        speedup = f"{r['speedup_vs_per_clip']:8.2f}" if base else f"{'-':>8s}"
        print(
            f"{name:15s} {1000 * seconds[name]:9.1f} {clips_per_s:8.0f} {r['mib_per_batch']:9.1f} {speedup} "
            f"{r['workers_for_target']:8d}"
        )
    print(f"workers: processes like this one needed for {args.target:g} steps/s of its clips per batch")
    write_json(
        args.json,
        {
            "benchmark": "data",
            "machine": machine(),
            "config": vars(args) | {"variants": names},
            "results": results,
            **peak_memory(torch.device("cpu")),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
