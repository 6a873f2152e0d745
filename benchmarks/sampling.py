"""Sampling speed: predicted frames per second for N futures of B sequences, variants side by side.

    python -m benchmarks.sampling [--width 64] [--samples 100] [--future 20] [--device cpu|cuda] [--json out.json]

Variants:
- ``official-loop``: the official test protocol's structure, one sample at a time (re-infer the posterior on
  the conditioning frames, generate, decode), in fp32 under ``no_grad``;
- ``batched-fp32``: latentdyn's ``SRVP.predict``: all N samples of all B sequences in one batched pass, under
  ``inference_mode``;
- ``batched-bf16``: the same under bf16 autocast with channels_last convolutions;
- ``svglp-*``: an SVG-LP-style image-autoregressive baseline built from the same encoder/decoder parts, which
  must re-encode every generated frame (see ``examples/srvp/svglp.py``), when it is available.
Each variant runs in its own process so that its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from benchmarks._common import (
    ChildFailed,
    check_at_least,
    check_json_path,
    checked_device,
    checked_names,
    child_argv,
    exit_status,
    figures,
    machine,
    peak_memory,
    run_variants,
    time_it,
    write_json,
)
from examples.srvp._cli import CliParser, ends_quietly_on_a_closed_pipe

VARIANTS = ("official-loop", "batched-fp32", "batched-bf16", "svglp-fp32", "svglp-bf16")
BASELINE = "official-loop"
"""The variant the ratios are relative to (the first variant measured when it is not among ``--variants``)."""
SRVP_MIN_COND = 5
"""SRVP's inference frames (``ModelConfig.n_inference_frames``): its variants need at least as many conditioning
frames (the SVG-LP baseline needs 1)."""


def _srvp(args: argparse.Namespace, device: torch.device) -> Any:
    from examples.srvp.config import ModelConfig
    from examples.srvp.model import SRVP

    torch.manual_seed(0)
    return SRVP(ModelConfig(conv_width=args.width)).init_weights().to(device).eval()


def child(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.rand(args.cond, args.batch, 1, 64, 64, device=device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = args.variant
    if name.startswith("svglp"):
        from examples.srvp.svglp import SVGLP, SVGLPConfig

        torch.manual_seed(0)
        model: Any = SVGLP(SVGLPConfig(conv_width=args.width)).to(device).eval()
    else:
        model = _srvp(args, device)
    if name.endswith("bf16"):
        model = model.to(memory_format=torch.channels_last)

    def run() -> None:
        if name == "official-loop":
            with torch.no_grad():
                for _ in range(args.samples):
                    model.predict(x, args.future, 1)  # as the official test.py: also the conditioning reconstructions
            return
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=name.endswith("bf16")):
            model.predict(x, args.future, args.samples, decode_cond=False)

    seconds = time_it(run, device, warmup=1, iters=args.iters)
    frames = args.batch * args.samples * args.future
    return {"variant": name, "seconds": seconds, "frames_per_s": frames / seconds, **peak_memory(device)}


@ends_quietly_on_a_closed_pipe
def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m benchmarks.sampling", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--width", type=int, default=64, help="conv base width nf (64: the paper's SM-MNIST model)")
    parser.add_argument("--batch", type=int, default=1, help="B test sequences")
    parser.add_argument("--samples", type=int, default=100, help="N futures per sequence")
    parser.add_argument("--cond", type=int, default=5, help="conditioning frames")
    parser.add_argument("--future", type=int, default=20, help="predicted frames")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS)
    )
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--variant", default="batched-fp32", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    names = checked_names(parser, args.variants, "--variants", VARIANTS)
    srvp_runs = any(not n.startswith("svglp") for n in names)
    check_at_least(
        parser,
        {
            "--width": (args.width, 1),
            "--batch": (args.batch, 1),
            "--samples": (args.samples, 1),
            "--cond": (args.cond, SRVP_MIN_COND if srvp_runs else 1),
            "--future": (args.future, 1),
            "--iters": (args.iters, 1),
            "--threads": (args.threads, 0),
        },
    )
    check_json_path(parser, args.json)
    checked_device(parser, args)
    common = child_argv(parser, args)

    def skipped(e: ChildFailed) -> str | None:
        missing = e.variant.startswith("svglp") and "No module named 'examples.srvp.svglp'" in e.stderr
        return "examples/srvp/svglp.py is not available" if missing else None

    results, failed = run_variants(
        "sampling",
        common,
        names,
        lambda r, f: write_json(args.json, figures("sampling", args, names, r, f, complete=False), quiet=True),
        skipped,
    )
    if not results:
        if not failed:
            print("error: no variant ran", file=sys.stderr)
        return 1
    # The ratios are relative to the official loop when it ran, else to the first variant (and say so).
    base = next((r for r in results if r["variant"] == BASELINE), results[0])
    official = base["variant"] == BASELINE
    ratio_key = "speedup_vs_official_loop" if official else "speedup_vs_baseline"
    against = (
        "the official one-sample-at-a-time loop" if official else f"{base['variant']} (the official loop did not run)"
    )
    print(f"machine: {machine()}")
    print(
        f"{args.samples} futures x {args.future} frames of {args.batch} sequence(s) from {args.cond} frames, "
        f"nf={args.width}; ratios vs {against}"
    )
    print(f"{'variant':16s} {'frames/s':>9s} {'ratio':>6s} {'peak RSS':>9s}")
    for r in results:
        r[ratio_key] = r["frames_per_s"] / base["frames_per_s"]
        print(
            f"{r['variant']:16s} {r['frames_per_s']:9.0f} {r[ratio_key]:6.2f} "
            f"{r['peak_rss_mib']:7.0f}Mi" + (f" {r['peak_cuda_mib']:.0f}Mi GPU" if "peak_cuda_mib" in r else "")
        )
    srvp = {r["variant"]: r for r in results}
    for kind in ("fp32", "bf16"):
        a, b = srvp.get(f"batched-{kind}"), srvp.get(f"svglp-{kind}")
        if a and b:
            print(f"SRVP vs SVG-LP ({kind}): {a['frames_per_s'] / b['frames_per_s']:.2f}x the frames per second")
    write_json(args.json, figures("sampling", args, names, results, failed, complete=True, baseline=base["variant"]))
    return exit_status(failed)


if __name__ == "__main__":
    sys.exit(main())
