"""A benchmark's parent passes every option it measures with on to its children: the lists were written by hand,
so an option added to a benchmark but not to its list was measured at the child's default, silently."""

from __future__ import annotations

import argparse
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks import _common
from benchmarks._common import PARENT_ONLY, ChildFailed, child_argv
from examples.srvp._cli import CliParser


def test_child_argv_passes_every_option_but_the_parents_own() -> None:
    parser = CliParser(prog="bench")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--new-knob", default="a")  # (an option added later)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--variants", default="x,y")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args(["--width", "8", "--new-knob", "b", "--fast", "--json", "out.json"])
    argv = child_argv(parser, args)
    assert argv == ["--width", "8", "--new-knob", "b", "--fast"]
    again = parser.parse_args(argv)
    assert (again.width, again.new_knob, again.fast) == (8, "b", True)
    assert child_argv(parser, parser.parse_args([])) == ["--width", "64", "--new-knob", "a"]


def test_child_argv_passes_every_kind_of_option_so_that_the_child_parses_the_same_values() -> None:
    parser = CliParser(prog="bench")
    parser.add_argument("--no-cache", dest="cache", action="store_false")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2])
    for given in ([], ["--no-cache", "--no-compile", "--dtype", "bf16", "--sizes", "3", "4"]):
        args = parser.parse_args(given)
        assert parser.parse_args(child_argv(parser, args)) == args, given
    parser.add_argument("--tag", action="append")
    with pytest.raises(TypeError, match=r"child_argv: cannot pass --tag \(_AppendAction\) on to a child"):
        child_argv(parser, parser.parse_args([]))


@pytest.mark.parametrize("script", ["sampling", "train_step"])
def test_every_option_of_a_benchmark_reaches_its_children(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(f"benchmarks.{script}")
    seen: list[list[str]] = []

    def run_child(name: str, argv: list[str]) -> dict[str, object]:
        seen.append(argv)
        raise ChildFailed("v", 1, "stop", [])

    monkeypatch.setattr(_common, "run_child", run_child)
    if hasattr(module, "matmul_flops"):
        monkeypatch.setattr(module, "matmul_flops", lambda *a, **k: 1e9)
    status = module.main(["--iters", "1", "--threads", "1"])
    assert status == 1 and seen
    given = {a for a in seen[0] if a.startswith("--")}
    given |= {"--" + a.removeprefix("--no-") for a in given if a.startswith("--no-")}  # (--x/--no-x: passed as off)
    options = set()
    parser_help = _help(module)
    for flag in re.findall(r"(?m)^  (--[a-z-]+)", parser_help):
        if flag.removeprefix("--").replace("-", "_") not in PARENT_ONLY:
            options.add(flag)
    assert options and options <= given | {"--variant"}, sorted(options - given)


def _help(module: object) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        module.main(["--help"])  # type: ignore[attr-defined]
    return out.getvalue()


@pytest.mark.parametrize(
    ("script", "variants"),
    [
        ("train_step", ["fp32", "bf16", "fp32+channels_last"]),
        ("sampling", ["official-loop", "batched-fp32", "batched-bf16"]),
    ],
)
def test_a_failed_variant_keeps_the_others_figures(
    script: str,
    variants: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A CUDA-paths review: one variant that failed (or a time limit) threw away every figure, since nothing was
    printed or written before all had run; on a short GPU lease the compile variant, last, is the likely one.
    Now the others are printed and written, the JSON lists the failure, and the exit status is still 1."""
    module = importlib.import_module(f"benchmarks.{script}")
    written: list[dict[str, Any]] = []

    def run_child(name: str, argv: list[str]) -> dict[str, object]:
        variant = argv[argv.index("--variant") + 1]
        if variant == variants[1]:
            raise ChildFailed(variant, 1, "Traceback ...\nRuntimeError: out of memory", [])
        common = {"variant": variant, "peak_rss_mib": 100.0}
        if script == "train_step":
            return common | {"steps_per_s": 2.0, "sequences_per_s": 32.0, "flops_per_step": 1e9, "achieved_flops": 2e9}
        return common | {"frames_per_s": 400.0}

    real_write = _common.write_json

    def write_json(path: str | None, data: dict[str, Any], *, quiet: bool = False) -> None:
        written.append(json.loads(json.dumps(data)))
        real_write(path, data, quiet=quiet)

    monkeypatch.setattr(_common, "run_child", run_child)
    monkeypatch.setattr(module, "write_json", write_json)
    if hasattr(module, "matmul_flops"):
        monkeypatch.setattr(module, "matmul_flops", lambda *a, **k: 1e10)
    out = tmp_path / "figures.json"
    status = module.main(["--iters", "1", "--threads", "1", "--variants", ",".join(variants), "--json", str(out)])
    assert status == 1
    saved = json.loads(out.read_text())
    assert [r["variant"] for r in saved["results"]] == [variants[0], variants[2]]
    assert saved["failed"] == [
        {"variant": variants[1], "error": f"variant {variants[1]} failed in its own process (exit status 1): "
         "RuntimeError: out of memory"}
    ]  # fmt: skip
    assert saved["complete"] is True and saved["baseline"] == variants[0]
    # After each variant the figures so far were on the disk.
    assert [len(w["results"]) for w in written] == [1, 1, 2, 2] and written[0]["complete"] is False
    printed = capsys.readouterr()
    assert f"{variants[0]}: " in printed.out and "out of memory" in printed.err


def test_a_variant_s_warnings_reach_the_user_marked_with_its_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A variant that ran had its stderr (e.g. torch.compile's warnings) captured and dropped."""
    import subprocess

    def run(cmd: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        stderr = "x.py:3: UserWarning: something to know\n  warnings.warn(...)\n"
        return subprocess.CompletedProcess(cmd, 0, stdout='progress\n{"variant": "eager"}\n', stderr=stderr)

    monkeypatch.setattr(_common.subprocess, "run", run)
    assert _common.run_child("train_step", ["--steps", "1", "--variant", "eager"]) == {"variant": "eager"}
    err = capsys.readouterr().err
    assert err == "eager: x.py:3: UserWarning: something to know\neager:   warnings.warn(...)\n"
