"""Speed of the SRVP training step (forward, loss, backward, Adam), variants measured side by side.

    python -m benchmarks.train_step [--width 64] [--batch 16] [--device cpu|cuda] [--json out.json]

The model is the SM-MNIST configuration (DCGAN 64×64, ny = nz = 20, seq_len 15; ``--skip-connections``: with the
decoder skip connections of the ``smmnist-cpu`` and KTH presets). The baseline variant, ``official-kernels``, is the
fp32 eager step run with the torch convolution kernels the official code uses (latentdyn's dense matmul paths for
the full-map layers swapped back, and one frame's skips tiled over every frame, not computed once per sequence):
it computes what the official implementation computes (verified on the official fixture), so every ratio printed
is relative to the official step on the same machine. ``fp32`` is latentdyn's default fp32 step. The script also
measures dense matmul throughput in the same run and reports the fraction of it that the step reaches
(FLOPs counted by ``torch.utils.flop_counter``). Each variant runs in its own process, so its peak memory is
its own.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from benchmarks._common import (
    check_at_least,
    check_json_path,
    checked_device,
    checked_names,
    child_argv,
    exit_status,
    figures,
    machine,
    matmul_flops,
    peak_memory,
    run_variants,
    time_it,
    write_json,
)
from examples.srvp._cli import CliParser, ends_quietly_on_a_closed_pipe

VARIANTS = {
    # name: (autocast dtype or "none", channels_last, compile)
    "official-kernels": ("none", False, False),
    "fp32": ("none", False, False),
    "fp32+channels_last": ("none", True, False),
    "bf16+channels_last": ("bf16", True, False),
    "bf16": ("bf16", False, False),
    "fp32+compile": ("none", False, True),
    "bf16+channels_last+compile": ("bf16", True, True),
    "fp16+channels_last": ("fp16", True, False),  # GPU: fp16 autocast with loss scaling
}
DEFAULT_VARIANTS = [v for v in VARIANTS if not v.startswith("fp16")]
BASELINE = "official-kernels"
"""The variant the ratios are relative to (the first variant measured when it is not among ``--variants``)."""
MIN_SEQ_LEN = 5
"""The model's inference frames (``ModelConfig.n_inference_frames``): a clip needs at least as many."""
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


COMPILE_WARMUP = 3
"""Steps a compiled variant takes before it is measured, beyond ``--warmup`` (its compilations)."""


def add_step_options(parser: argparse.ArgumentParser, *, warmup: int) -> None:
    """The options of the model and step measured, shared with ``benchmarks.profile_step``."""
    parser.add_argument("--width", type=int, default=64, help="conv base width nf (64: the paper's SM-MNIST model)")
    parser.add_argument(
        "--skip-connections",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="decoder skip connections, as the smmnist-cpu and KTH presets (the paper's SM-MNIST model has none)",
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=warmup, help="steps before any measurement")
    parser.add_argument("--iters", type=int, default=10, help="timed steps")


def step_minimums(args: argparse.Namespace) -> dict[str, tuple[int, int]]:
    """``check_at_least``'s ``flag: (value, minimum)`` for the options of :func:`add_step_options`."""
    return {
        "--width": (args.width, 1),
        "--batch": (args.batch, 1),
        "--seq-len": (args.seq_len, MIN_SEQ_LEN),
        "--warmup": (args.warmup, 0),
        "--iters": (args.iters, 1),
        "--threads": (args.threads, 0),
    }


def _plain_kernels(model: torch.nn.Module) -> None:
    """Swap latentdyn's dense fast paths back to the torch convolution kernels the official code runs."""
    from torch import nn

    from latentdyn.encoders.conv import _FullMapConv2d, _PointToMapConvTranspose2d

    for m in model.modules():
        if isinstance(m, _FullMapConv2d):
            m.__class__ = nn.Conv2d  # type: ignore[assignment]  # (the same parameters, the plain kernel)
        elif isinstance(m, _PointToMapConvTranspose2d):
            m.__class__ = nn.ConvTranspose2d  # type: ignore[assignment]


def _tiled_skips(decoder: torch.nn.Module) -> None:
    """Make ``decoder`` tile one frame's skips over every frame before decoding, as the official code does (the
    skips concatenated to every frame's map), instead of computing their part once per sequence (``skip_repeats``)."""
    forward = decoder.forward

    def tiled(h: torch.Tensor, skips: Any = None, *, skip_repeats: int = 1) -> torch.Tensor:
        if skips is not None and skip_repeats > 1:
            skips = [s.unsqueeze(0).expand(skip_repeats, *s.shape).flatten(0, 1) for s in skips]
        return forward(h, skips)

    decoder.forward = tiled


def _step_fn(args: argparse.Namespace, amp: str, channels_last: bool, compile_: bool) -> tuple[Any, float, Any]:
    from examples.srvp.config import ModelConfig
    from examples.srvp.model import SRVP
    from examples.srvp.train import make_grad_scaler

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the official training script
    torch.manual_seed(0)
    config = ModelConfig(
        conv_width=args.width, state_size=20, noise_size=20, beta_z=2.0, skip_connections=args.skip_connections
    )
    model = SRVP(config).init_weights()
    model = model.to(device)
    if args.variant == "official-kernels":
        _plain_kernels(model)
        _tiled_skips(model.decoder)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    net: Any = torch.compile(model) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    x = torch.rand(args.seq_len, args.batch, 1, 64, 64, device=device)
    dtype = DTYPES.get(amp, torch.float32)
    scaler = make_grad_scaler(device, enabled=amp == "fp16")  # bf16 needs no loss scaling

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=amp != "none"):
            terms, _ = net(x)
        opt.zero_grad(set_to_none=True)
        scaler.scale(terms.total).backward()
        scaler.step(opt)
        scaler.update()

    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        with torch.autocast(device.type, dtype=dtype, enabled=amp != "none"):
            terms, _ = model(x)
        terms.total.backward()
    opt.zero_grad(set_to_none=True)
    return step, float(counter.get_total_flops()), scaler


def child(args: argparse.Namespace) -> dict[str, Any]:
    amp, cl, comp = VARIANTS[args.variant]
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    step, flops, scaler = _step_fn(args, amp, cl, comp)
    settle = 0
    if amp == "fp16":
        # The loss scale starts at 2^16 and halves at every overflow, skipping that update: timed before it
        # settles, the step would be measured on skipped updates. Stepped until a step keeps the scale.
        while settle < 40:
            before = scaler.get_scale()
            step()
            settle += 1
            if scaler.get_scale() >= before:
                break
    if device.type == "cuda":  # the peak of the timed steps, not of the eager FLOP count above
        torch.cuda.reset_peak_memory_stats(device)
    warmup = args.warmup + (COMPILE_WARMUP if comp else 0)
    seconds = time_it(step, device, warmup=warmup, iters=args.iters)
    return {
        "variant": args.variant,
        "seconds_per_step": seconds,
        "steps_per_s": 1 / seconds,
        "sequences_per_s": args.batch / seconds,
        "flops_per_step": flops,
        "achieved_flops": flops / seconds,
        **({"loss_scale_settling_steps": settle, "loss_scale": float(scaler.get_scale())} if amp == "fp16" else {}),
        **peak_memory(device),
    }


@ends_quietly_on_a_closed_pipe
def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m benchmarks.train_step", description=(__doc__ or "").split("\n")[0])
    add_step_options(parser, warmup=3)
    parser.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS)
    )
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--variant", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import json

        print(json.dumps(child(args)))
        return 0
    check_at_least(parser, step_minimums(args))
    check_json_path(parser, args.json)
    device = checked_device(parser, args)
    names = checked_names(parser, args.variants, "--variants", VARIANTS)
    # Dense matmul throughput of every precision the variants use, measured in this run.
    used = {"fp32"} | {VARIANTS[n][0] for n in names if VARIANTS[n][0] != "none"}
    peak = {k: matmul_flops(DTYPES.get(k, torch.float32), device) for k in sorted(used)}
    common = child_argv(parser, args)

    def payload(results: list[dict[str, Any]], failed: list[dict[str, str]], **more: Any) -> dict[str, Any]:
        for r in results:
            amp = VARIANTS[r["variant"]][0]
            r["fraction_of_matmul_peak"] = r["achieved_flops"] / peak["fp32" if amp == "none" else amp]
        return figures("train_step", args, names, results, failed, matmul_flops=peak, **more)

    results, failed = run_variants(
        "train_step", common, names, lambda r, f: write_json(args.json, payload(r, f, complete=False), quiet=True)
    )
    if not results:
        return 1
    # The ratios are relative to the official step when it ran, else to the first variant (and say so).
    base = next((r for r in results if r["variant"] == BASELINE), results[0])
    official = base["variant"] == BASELINE
    ratio_key = "speedup_vs_official" if official else "speedup_vs_baseline"
    against = (
        f"{BASELINE} (the official fp32 step)" if official else f"{base['variant']} (the official step did not run)"
    )
    print(f"machine: {machine()}")
    print("matmul throughput: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peak.items()))
    print(
        f"SRVP train step, nf={args.width}, batch {args.batch}, {args.seq_len} frames, "
        f"{base['flops_per_step'] / 1e9:.0f} GFLOP per step; ratios vs {against}"
    )
    print(f"{'variant':28s} {'it/s':>7s} {'seq/s':>7s} {'ratio':>6s} {'of peak':>8s} {'peak RSS':>9s}")
    for r in results:
        r[ratio_key] = r["steps_per_s"] / base["steps_per_s"]
        print(
            f"{r['variant']:28s} {r['steps_per_s']:7.2f} {r['sequences_per_s']:7.1f} {r[ratio_key]:6.2f} "
            f"{100 * r['fraction_of_matmul_peak']:7.1f}% {r['peak_rss_mib']:7.0f}Mi"
            + (f" {r['peak_cuda_mib']:.0f}Mi GPU" if "peak_cuda_mib" in r else "")
        )
    write_json(args.json, payload(results, failed, complete=True, baseline=base["variant"]))
    return exit_status(failed)


if __name__ == "__main__":
    sys.exit(main())
