"""Shared helpers of the benchmark scripts: timing, matmul throughput, peak memory, child processes, JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from examples.srvp._host import tf32_settings
from latentdyn._files import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["tf32"] = tf32_settings()  # fp32 variants on a GPU: cuDNN convolutions use TF32 unless switched off
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per call of ``fn`` (median of ``iters`` timed calls after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def interleaved(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, iters: int
) -> dict[str, float]:
    """Median seconds per call of every function, the functions taking turns (same machine state for all)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def matmul_flops(dtype: torch.dtype, device: torch.device, n: int = 2048, iters: int = 10) -> float:
    """Measured dense matmul throughput in FLOP/s for square n×n products of ``dtype``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    seconds = time_it(lambda: a @ b, device, warmup=3, iters=iters)
    return 2 * n**3 / seconds


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA memory on GPU), in MiB."""
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


class ChildFailed(RuntimeError):
    """A variant's child process failed; ``str()`` is one line (the variant, its exit status and the last line of
    its error), ``stderr`` the child's whole standard error."""

    def __init__(self, variant: str, status: int, stderr: str, command: list[str]) -> None:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else "no error message"
        super().__init__(f"variant {variant} failed in its own process (exit status {status}): {last}")
        self.variant, self.status, self.stderr, self.command = variant, status, stderr, command


def run_child(script: str, args: list[str]) -> dict[str, Any]:
    """Run one variant in a fresh process (so that its peak memory is its own) and return its JSON; a failure is
    a :class:`ChildFailed`. What a variant that ran wrote to stderr (warnings) is passed on, each line marked with
    the variant's name."""
    cmd = [sys.executable, "-m", f"benchmarks.{script}", *args, "--child"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    variant = args[args.index("--variant") + 1] if "--variant" in args[:-1] else script
    if proc.returncode != 0:
        raise ChildFailed(variant, proc.returncode, proc.stderr, cmd)
    for line in proc.stderr.splitlines():  # a variant's warnings (e.g. torch.compile's) reach the user, marked
        print(f"{variant}: {line}", file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_failed(e: ChildFailed) -> int:
    """Report a variant's failure in one line (its whole error with ``BENCHMARK_DEBUG=1``); the exit status, 1."""
    if os.environ.get("BENCHMARK_DEBUG"):
        print(e.stderr, file=sys.stderr, end="")
    print(f"error: {e} (BENCHMARK_DEBUG=1 prints its whole error)", file=sys.stderr)
    return 1


def run_variants(
    script: str,
    common: list[str],
    names: list[str],
    partial: Callable[[list[dict[str, Any]], list[dict[str, str]]], None],
    skipped: Callable[[ChildFailed], str | None] = lambda e: None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Run every variant in its own process, in order: the results of those that ran, and a
    ``{"variant", "error"}`` entry for each that failed. A failure is reported in one line (:func:`child_failed`) and
    the next variant runs; after each variant ``partial(results, failed)`` is called (to write the figures so
    far: a run cut short by a time limit keeps them). A variant's one-line figures are printed as it ends.
    ``skipped(error)``: a reason to pass over a failure as a skip (printed), or None."""
    results: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for name in names:
        try:
            results.append(run_child(script, [*common, "--variant", name]))
        except ChildFailed as e:
            reason = skipped(e)
            if reason is not None:
                print(f"{name}: skipped ({reason})")
                continue
            child_failed(e)
            failed.append({"variant": name, "error": str(e)})
        else:
            shown = {k: v for k, v in results[-1].items() if k != "variant" and isinstance(v, (int, float))}
            print(f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()), flush=True)
        partial(results, failed)
    return results, failed


def figures(
    benchmark: str,
    args: argparse.Namespace,
    names: list[str],
    results: list[dict[str, Any]],
    failed: list[dict[str, str]],
    **more: Any,
) -> dict[str, Any]:
    """The JSON of a benchmark whose variants ran in their own processes (:func:`run_variants`): ``more`` goes
    between its configuration and its results."""
    config = vars(args) | {"variants": names}
    return {
        "benchmark": benchmark,
        "machine": machine(),
        "config": config,
        **more,
        "results": results,
        "failed": failed,
    }


def exit_status(failed: list[dict[str, str]]) -> int:
    """1 when a variant failed, after a line naming them (each was reported as it failed), else 0."""
    if not failed:
        return 0
    print(f"failed: {', '.join(f['variant'] for f in failed)} (above; the others' figures are kept)", file=sys.stderr)
    return 1


PARENT_ONLY = frozenset({"help", "variants", "json", "variant", "child"})
"""The options a benchmark's parent keeps to itself: every other one is passed on to each child."""


def child_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The options of ``args`` a child run measures with, as flags: every option of ``parser`` but
    :data:`PARENT_ONLY`, so that an option added to a benchmark reaches its children (a hand-written list that
    forgot one measured the child at its default)."""
    argv: list[str] = []
    for action in parser._actions:
        if not action.option_strings or action.dest in PARENT_ONLY:
            continue
        flag, value = action.option_strings[0], getattr(args, action.dest)
        if isinstance(action, argparse.BooleanOptionalAction):
            argv += [] if value is None else [flag if value else f"--no-{flag.removeprefix('--')}"]
        elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            argv += [flag] if value != action.default else []
        elif type(action) is argparse._StoreAction:
            if value is None:
                continue  # (the child's default is None too)
            argv += [flag, *map(str, value)] if isinstance(value, (list, tuple)) else [flag, str(value)]
        else:  # (an option of another kind: say how to pass it on here, rather than pass it wrongly)
            raise TypeError(f"child_argv: cannot pass {flag} ({type(action).__name__}) on to a child")
    return argv


def check_at_least(parser: argparse.ArgumentParser, minimums: dict[str, tuple[int, int]]) -> None:
    """Each ``flag: (value, minimum)`` checked before anything is measured; a usage error (one line, status 2)
    names the first flag below its minimum."""
    for flag, (value, minimum) in minimums.items():
        if value < minimum:
            parser.error(f"{flag}: expected an int >= {minimum}, got {value}")


def check_json_path(parser: argparse.ArgumentParser, path: str | None) -> None:
    """``--json PATH`` checked before anything is measured (not after minutes of it): not a folder, in a folder
    that exists or can be made, and writable."""
    if not path:
        return
    file = Path(os.path.expanduser(path))
    if file.is_dir():
        parser.error(f"--json: {path} is a folder; expected a file name (e.g. {file / 'results.json'})")
    parent = file.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"--json: cannot make the folder {parent} ({e.strerror or type(e).__name__})")
    if not parent.is_dir():
        parser.error(f"--json: {parent} is not a folder")
    if not os.access(parent, os.W_OK) or (file.exists() and not os.access(file, os.W_OK)):
        parser.error(f"--json: {path} cannot be written (no write permission)")


def checked_names(parser: argparse.ArgumentParser, text: str, flag: str, known: Iterable[str]) -> list[str]:
    """The comma-separated names of ``flag`` (``text``), each one of ``known``, else a usage error."""
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"{flag}: unknown {unknown}; choose from {list(known)}")
    return names


def checked_device(parser: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """``--device`` resolved (a usage error if it is not available); ``--threads`` applied when the script has it."""
    from examples.srvp.config import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    return device


def write_json(path: str | None, data: dict[str, Any], *, quiet: bool = False) -> None:
    """Write ``data`` as indented UTF-8 JSON to ``path`` (``~`` expanded, folders created), atomically: an earlier
    file stays whole until the new one has been written. Nothing when ``path`` is empty or None. Says where it
    wrote unless ``quiet``."""
    if path:
        path = os.path.expanduser(path)  # (``--json=~/x.json``: the shell leaves the ``~``)
        atomic_write_bytes(path, json.dumps(data, indent=2).encode("utf-8"))
        if not quiet:
            print(f"wrote {path}")
