"""A benchmark's parent passes every option it measures with on to its children: the lists were written by hand,
so an option added to a benchmark but not to its list was measured at the child's default, silently."""

from __future__ import annotations

import argparse
import importlib
import re

import pytest

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

    monkeypatch.setattr(module, "run_child", run_child)
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
