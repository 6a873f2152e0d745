"""Where one variant of the SRVP training step spends its time: host syncs, host vs device time, top operators.

    python -m benchmarks.profile_step [--variant bf16] [--batch 16] [--device cpu|cuda] [--json out.json]

The step is ``benchmarks.train_step``'s (same model, same variants). Three readings, in one process:

1. host syncs (GPU only): the points of one step where the host waits for the device (torch's sync debug mode),
   each named by the innermost line of latentdyn or examples on the stack and the line that synchronised;
2. the median time until ``step()`` returns to the host and until the device has finished it: about equal means
   the device waits for the host (launch-bound, or a sync inside the step), a much later finish means the device
   is the bottleneck;
3. ``torch.profiler`` over a few steps: device kernels per step, device time per step (the sum of the kernels'
   and copies' durations), and the rows of the profile with the most self device time (self CPU time on a CPU)
   per step. Both operators (``aten::...``) and the kernels they launch are rows, so the rows overlap.

It tells what to speed up; the speed itself is measured side by side by ``benchmarks.train_step``.
"""

from __future__ import annotations

import collections
import statistics
import sys
import time
import traceback
import warnings
from typing import Any

import torch

from benchmarks._common import check_at_least, check_json_path, checked_device, machine, sync, write_json
from benchmarks.train_step import COMPILE_WARMUP, VARIANTS, _step_fn, add_step_options, step_minimums
from examples.srvp._cli import CliParser, ends_quietly_on_a_closed_pipe

OURS = ("/latentdyn/", "/examples/", "/benchmarks/")


def _site(filename: str, lineno: int | None) -> str:
    """``path:line``, the path from site-packages or from the repository's root."""
    name = filename.replace("\\", "/")
    for root in ("site-packages/", *OURS):
        if root in name:
            name = name[name.index(root) :].removeprefix("site-packages/").lstrip("/")
            break
    return f"{name}:{lineno}"


def host_syncs(step: Any) -> list[dict[str, Any]]:
    """The points where one call of ``step`` makes the host wait for the CUDA device, with their counts."""
    sites: collections.Counter[tuple[str, str]] = collections.Counter()

    def record(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        frames = traceback.extract_stack()[:-1]
        ours = [f for f in frames if any(root in f.filename.replace("\\", "/") for root in OURS)]
        # (this script and the command's wrapper are on every stack: "-" when nothing else of ours is, e.g. for a
        # sync of the backward pass, which torch's own threads run)
        ours = [f for f in ours if not f.filename.endswith(("profile_step.py", "_cli.py"))]
        where = _site(ours[-1].filename, ours[-1].lineno) if ours else "-"
        sites[(where, _site(filename, lineno))] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        shown = warnings.showwarning
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
            warnings.showwarning = shown
    return [{"ours": o, "synced_at": s, "count": n} for (o, s), n in sites.most_common()]


def host_and_device_ms(step: Any, device: torch.device, iters: int) -> tuple[float, float]:
    """Median milliseconds until ``step()`` returns and until the device has finished it."""
    host, done = [], []
    for _ in range(iters):
        sync(device)
        t0 = time.perf_counter()
        step()
        t1 = time.perf_counter()
        sync(device)
        t2 = time.perf_counter()
        host.append(t1 - t0)
        done.append(t2 - t0)
    return 1e3 * statistics.median(host), 1e3 * statistics.median(done)


def profiled(step: Any, device: torch.device, steps: int, top: int) -> dict[str, Any]:
    """Kernels and device time per step, and the ``top`` rows by self device (GPU) or CPU (CPU) time per step."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    rows = prof.key_averages()
    # (torch < 2.4 names the device fields after CUDA)
    newer = bool(rows) and hasattr(rows[0], "self_device_time_total")
    key = ("self_device_time_total" if newer else "self_cuda_time_total") if cuda else "self_cpu_time_total"
    ranked = sorted(rows, key=lambda r: getattr(r, key), reverse=True)[:top]
    out: dict[str, Any] = {
        "top": [
            {
                "name": r.key,
                ("self_device_ms" if cuda else "self_cpu_ms"): getattr(r, key) / 1e3 / steps,
                "calls": r.count / steps,
            }
            for r in ranked
        ]
    }
    if cuda:
        out["kernels_per_step"] = len(kernels) / steps
        out["device_ms_per_step"] = sum(e.time_range.elapsed_us() for e in kernels) / 1e3 / steps
    return out


@ends_quietly_on_a_closed_pipe
def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m benchmarks.profile_step", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--variant", default="bf16", choices=list(VARIANTS), help="a variant of benchmarks.train_step")
    add_step_options(parser, warmup=5)
    parser.add_argument("--profile-steps", type=int, default=3, help="profiled steps of reading 3")
    parser.add_argument("--top", type=int, default=15, help="rows of the profile printed and written")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    check_at_least(parser, {**step_minimums(args), "--profile-steps": (args.profile_steps, 1), "--top": (args.top, 1)})
    check_json_path(parser, args.json)
    device = checked_device(parser, args)
    amp, channels_last, compile_ = VARIANTS[args.variant]
    step, flops, _ = _step_fn(args, amp, channels_last, compile_)
    for _ in range(args.warmup + (COMPILE_WARMUP if compile_ else 0)):
        step()
    sync(device)

    result: dict[str, Any] = {"variant": args.variant, "flops_per_step": flops}
    print(f"SRVP train step {args.variant}, nf={args.width}, batch {args.batch}, {args.seq_len} frames, on {device}")
    if device.type == "cuda":
        syncs = host_syncs(step)
        sync(device)
        result["host_syncs"] = sum(s["count"] for s in syncs)
        result["sync_sites"] = syncs
        print(f"host syncs in one step: {result['host_syncs']}")
        for s in syncs:
            print(f"  {s['count']:4d}  {s['ours']}  (synchronised at {s['synced_at']})")
    host, done = host_and_device_ms(step, device, args.iters)
    result |= {"host_ms": host, "done_ms": done}
    print(f"median per step: the host returns after {host:.1f} ms, the device has finished after {done:.1f} ms")
    result |= profiled(step, device, args.profile_steps, args.top)
    if "kernels_per_step" in result:
        print(
            f"per step: {result['kernels_per_step']:.0f} device kernels and copies, "
            f"{result['device_ms_per_step']:.1f} ms of device time"
        )
    unit = "self_device_ms" if device.type == "cuda" else "self_cpu_ms"
    print(f"{'ms/step':>8s} {'calls':>6s}  row ({unit.replace('_ms', '').replace('_', ' ')} time)")
    for r in result["top"]:
        print(f"{r[unit]:8.2f} {r['calls']:6.0f}  {r['name'][:100]}")
    write_json(args.json, {"benchmark": "profile_step", "machine": machine(), "config": vars(args), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
