"""The command lines' second review: an unfinished quickstart says so, a command-line time budget is its
invocation's, printed commands run as printed, benchmark ratios name their baseline, sizes and ``--json`` are
checked before measuring, a wrong run directory says what to give, a closed pipe is no failure, notes go to
stderr, and flags are never abbreviated."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.srvp import data as data_cli
from examples.srvp import demo, quickstart, train
from examples.srvp import evaluate as ev
from examples.srvp.checkpoint import load_checkpoint
from examples.srvp.config import PRESETS

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _one_line(err: str) -> str:
    """The one line of a clean failure's stderr (no traceback, no usage block)."""
    assert "Traceback" not in err, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def tiny_run(tiny_cli_run: Path) -> Path:
    """conftest's run of ``train --preset tiny --lr-burnin 2 --lr-decay 1`` (shared: copied before a change)."""
    return tiny_cli_run


@pytest.fixture(scope="module")
def test_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli_more_data") / "test.npz"
    assert data_cli.main(["smmnist-test-set", "--mnist-dir", "embedded", "--seq-len", "6", "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------------ 1. an unfinished quickstart says so
def test_quickstart_labels_the_results_of_an_unfinished_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "q"
    args = ["--run-dir", str(run), "--preset", "tiny", "--eval-sequences", "1", "--n-samples", "1"]
    assert quickstart.main([*args, "--max-steps", "2"]) == 0  # (exit 0: CI's main job relies on it)
    out = capsys.readouterr().out
    again = shlex.join(["python", "-m", "examples.srvp.quickstart", *args, "--max-steps", "2"])
    # The training's stop says how to continue: this command, not train --resume (which does not evaluate).
    assert f"stopped at step 2 of 6 (--max-steps); continue with: {again}\n" in out
    assert "examples.srvp.train --resume" not in out
    assert "\nresults of an unfinished training (step 2 of 6), not of the whole schedule:\n" in out
    last = out.rstrip("\n").splitlines()[-1]
    assert last == f"training unfinished (step 2 of 6): run this same command again to continue: {again}"
    result = json.loads((run / "eval" / "smmnist_test_embedded_25_n1.json").read_text())
    assert result["training"] == {"complete": False, "steps_done": 2, "steps_planned": 6}
    # The same command without the step limit finishes the schedule: the results are then final.
    assert quickstart.main(args) == 0
    out = capsys.readouterr().out
    assert "unfinished" not in out
    result = json.loads((run / "eval" / "smmnist_test_embedded_25_n1.json").read_text())
    assert result["training"] == {"complete": True, "steps_done": 6, "steps_planned": 6}


# ------------------------------------------------------------ 2. a command line's time budget is its invocation's
def test_a_command_line_time_budget_does_not_carry_over_to_later_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--max-minutes", "1e-6"]) == 0
    out = capsys.readouterr().out
    assert "stopped at step 1 of 6 (time budget of 1e-06 min, from --max-minutes); continue with: python -m " in out
    assert json.loads((run / "config.json").read_text())["train"]["max_minutes"] == 0.0  # the tiny preset's
    # A resume without the flag runs without the budget of the first invocation: to the end of the schedule.
    assert train.main(["--resume", str(run), "--max-steps", "3"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3
    capsys.readouterr()
    # A resume with the flag: that invocation's budget, said as such.
    assert train.main(["--resume", str(run), "--max-minutes", "1e-6"]) == 0
    assert "stopped at step 4 of 6 (time budget of 1e-06 min, from --max-minutes)" in capsys.readouterr().out
    # An older run's config.json that holds a budget is still read, and the stop says where the budget came from.
    config = json.loads((run / "config.json").read_text())
    config["train"]["max_minutes"] = 1e-6
    (run / "config.json").write_text(json.dumps(config))
    assert train.main(["--resume", str(run)]) == 0
    said = f"stopped at step 5 of 6 (time budget of 1e-06 min, from {run / 'config.json'})"
    assert said in capsys.readouterr().out


def test_a_new_run_keeps_its_presets_budget_not_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quickstart's --minutes too: config.json keeps the preset's budget (smmnist-cpu: 18 minutes)."""
    seen: list[float | None] = []

    def stop_before_training(cfg: object, run_dir: Path, *args: object) -> None:
        seen.append(train._cli_run().saved_minutes)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(train, "_train", stop_before_training)
        patch.setattr(quickstart, "ensure_test_set", lambda path, *a, **k: path)
        assert quickstart.main(["--run-dir", str(tmp_path / "q"), "--minutes", "0.5"]) == 130
        argv = ["--preset", "smmnist-cpu", "--run-dir", str(tmp_path / "t"), "--max-minutes", "0.5"]
        assert train.main(argv) == 130
    assert seen == [PRESETS["smmnist-cpu"]().max_minutes] * 2 == [18.0] * 2
    # A quickstart run made with --minutes: its config.json holds the preset's budget, and the stop names --minutes.
    run = tmp_path / "runs" / "q"
    args = ["--run-dir", str(run), "--preset", "tiny", "--minutes", "1e-6", "--eval-sequences", "1", "--n-samples", "1"]
    assert quickstart.main(args) == 0
    out = capsys.readouterr().out
    assert "(time budget of 1e-06 min, from --minutes); continue with: python -m examples.srvp.quickstart" in out
    assert json.loads((run / "config.json").read_text())["train"]["max_minutes"] == 0.0


# -------------------------------------------------------------------- 3. the hinted test-set command runs
def test_the_printed_test_set_command_runs_and_the_evaluate_command_then_works(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--max-steps", "1"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("evaluate: "))
    evaluate_cmd, make_cmd = (
        line.removeprefix("evaluate: ").removesuffix(")").split(" (make that test set first with: ")
    )
    assert make_cmd == "python -m examples.srvp.data smmnist-test-set --mnist-dir embedded --out data/"
    monkeypatch.chdir(tmp_path)
    assert data_cli.main(shlex.split(make_cmd)[3:]) == 0  # as printed: the whole 500-clip test set
    words = shlex.split(evaluate_cmd)
    assert words[:3] == ["python", "-m", "examples.srvp.evaluate"]
    assert ev.main([*words[3:], "--max-sequences", "1", "--n-samples", "1", "--no-lpips"]) == 0
    capsys.readouterr()
    # evaluate's and demo's "--test-set: required" name the same complete command.
    assert ev.main([str(run)]) == 2
    said = _one_line(capsys.readouterr().err)
    assert f"make it with: {make_cmd}, then pass --test-set data/smmnist_test_2digits_64.npz" in said
    assert demo.main([str(run), "--out", str(tmp_path / "demo")]) == 2
    assert f"make it with: {make_cmd}, then pass --test-set data/smmnist_test_2digits_64.npz" in _one_line(
        capsys.readouterr().err
    )


def test_the_test_set_hint_follows_the_runs_data_settings() -> None:
    cfg = PRESETS["smmnist-deterministic"]()
    said = train.evaluate_command(Path("runs/d"), "smmnist", "/data/mnist", cfg=cfg)
    assert said == (
        "python -m examples.srvp.evaluate runs/d --test-set data/mmnist_test_2digits_64.npz (make that test set first "
        "with: python -m examples.srvp.data smmnist-test-set --mnist-dir /data/mnist --deterministic --out data/)"
    )
    hint = ev.smmnist_test_set_hint({"dataset": "smmnist", "data_dir": "embedded", "num_digits": 3, "max_speed": 2})
    assert "--mnist-dir embedded --num-digits 3 --max-speed 2 --out data/" in hint
    assert hint.endswith("then pass --test-set data/smmnist_test_3digits_64.npz")


# ------------------------------------------------------------------- 4. and 5. benchmarks
def _children_in_process(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Run each variant's child (``python -m benchmarks.NAME ... --child``) in this process, its JSON line read as
    from its own process: the parent's ratios, wording and JSON as in a real run, without a Python start per
    process. (Each benchmark runs end to end in its own processes in test_benchmarks.py and test_svglp.py.)"""
    import contextlib
    import importlib
    import io

    from benchmarks import _common

    commands: list[list[str]] = []
    real_run = subprocess.run

    def in_process(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if cmd[-1] != "--child":
            return real_run(cmd, **kwargs)  # (platform.processor() runs uname)
        assert cmd[:2] == [sys.executable, "-m"], cmd
        commands.append(cmd)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = importlib.import_module(cmd[2]).main(cmd[3:])
        return subprocess.CompletedProcess(cmd, status, stdout=out.getvalue(), stderr="")

    monkeypatch.setattr(_common.subprocess, "run", in_process)
    return commands


def test_train_step_ratios_name_their_baseline_when_the_official_step_did_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import train_step

    children = _children_in_process(monkeypatch)
    monkeypatch.setattr(train_step, "matmul_flops", lambda *a, **k: 1e9)  # (the peak: not what is checked here)
    out = tmp_path / "ts.json"
    status = train_step.main(["--width", "4", "--batch", "2", "--seq-len", "6", "--variants", "fp32",
                              "--iters", "1", "--warmup", "0", "--threads", "1", "--json", str(out)])  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert status == 0, stderr[-3000:]
    assert [c[2] for c in children] == ["benchmarks.train_step"] and "fp32" == children[0][-2]
    data = json.loads(out.read_text())
    assert data["baseline"] == "fp32"
    assert "speedup_vs_official" not in data["results"][0] and data["results"][0]["speedup_vs_baseline"] == 1.0
    assert "ratios vs fp32 (the official step did not run)" in stdout


def test_sampling_ratios_name_their_baseline_when_the_official_loop_did_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import sampling

    children = _children_in_process(monkeypatch)
    out = tmp_path / "s.json"
    status = sampling.main(["--width", "4", "--samples", "2", "--future", "2", "--variants", "batched-fp32",
                            "--iters", "1", "--threads", "1", "--json", str(out)])  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert status == 0, stderr[-3000:]
    assert [c[2] for c in children] == ["benchmarks.sampling"] and "batched-fp32" == children[0][-2]
    data = json.loads(out.read_text())
    assert data["baseline"] == "batched-fp32"
    assert "speedup_vs_official_loop" not in data["results"][0] and data["results"][0]["speedup_vs_baseline"] == 1.0
    assert "ratios vs batched-fp32 (the official loop did not run)" in stdout


@pytest.mark.parametrize(
    ("name", "argv", "said"),
    [
        ("train_step", ["--batch", "0"], "--batch: expected an int >= 1, got 0"),
        ("train_step", ["--seq-len", "1"], "--seq-len: expected an int >= 5, got 1"),
        ("train_step", ["--iters", "0"], "--iters: expected an int >= 1, got 0"),
        ("sampling", ["--samples", "0"], "--samples: expected an int >= 1, got 0"),
        ("sampling", ["--cond", "2"], "--cond: expected an int >= 5, got 2"),
        ("sampling", ["--iters", "0"], "--iters: expected an int >= 1, got 0"),
        ("rollout", ["--iters", "0"], "--iters: expected an int >= 1, got 0"),
        ("rollout", ["--batch", "-1"], "--batch: expected an int >= 0, got -1"),
        ("data", ["--warmup", "-1"], "--warmup: expected an int >= 0, got -1"),
        ("train_step", ["--json", "."], "--json: . is a folder; expected a file name"),
        ("sampling", ["--json", "FILE/x.json"], "--json: cannot make the folder FILE"),
        ("rollout", ["--json", "."], "--json: . is a folder"),
        ("data", ["--json", "."], "--json: . is a folder"),
    ],
)
def test_benchmarks_check_sizes_and_the_json_path_before_measuring(
    name: str, argv: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import importlib

    module = importlib.import_module(f"benchmarks.{name}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("")
    monkeypatch.setattr(module, "machine", lambda: pytest.fail("measured before the options were checked"))
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert _one_line(err).startswith(f"python -m benchmarks.{name}: error: {said}")


def test_a_failed_benchmark_child_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import _common, train_step

    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: CUDA out of memory\n'

    def failing(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=traceback)

    monkeypatch.setattr(_common.subprocess, "run", failing)
    monkeypatch.setattr(train_step, "matmul_flops", lambda *a, **k: 1e9)
    assert train_step.main(["--variants", "fp32", "--iters", "1"]) == 1
    said = _one_line(capsys.readouterr().err)
    assert said == (
        "error: variant fp32 failed in its own process (exit status 1): RuntimeError: CUDA out of memory "
        "(BENCHMARK_DEBUG=1 prints its whole error)"
    )


# ------------------------------------------------------------------ 6. a run directory that is not one
@pytest.mark.parametrize("cli", ["evaluate", "demo"])
def test_a_wrong_run_directory_says_what_to_give(
    cli: str, tiny_run: Path, test_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = ev.main if cli == "evaluate" else demo.main
    extra = ["--test-set", str(test_set), *(["--out", str(tmp_path / "d")] if cli == "demo" else [])]
    ckpt = tiny_run / "checkpoints"
    for given, said in (
        (ckpt / "best.pt", f"{ckpt / 'best.pt'} is a checkpoint file; give its run directory: {tiny_run} "
                           "--checkpoint best"),
        (ckpt, f"{ckpt} is the checkpoints folder of a run; give the run directory: {tiny_run}"),
        (tmp_path / "missing", f"{tmp_path / 'missing'} does not exist"),
    ):  # fmt: skip
        assert main([str(given), *extra]) == 2
        assert _one_line(capsys.readouterr().err) == f"error: run_dir: {said}"


# ------------------------------------------------------------------ 7. a pipe closed early
@pytest.mark.parametrize("cli", ["evaluate", "train"])
def test_output_into_a_closed_pipe_ends_without_a_traceback(
    cli: str, tiny_run: Path, test_set: Path, tmp_path: Path
) -> None:
    """``... | head -1``: the reader is gone before the command's output; the work is done, exit status 0."""
    if cli == "evaluate":
        run = Path(shutil.copytree(tiny_run, tmp_path / "trained"))  # (evaluate writes into run/eval)
        argv = [str(run), "--test-set", str(test_set), "--n-samples", "1", "--max-sequences", "1", "--no-lpips"]
        argv += ["--name", "piped"]
    else:
        argv = ["--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--max-steps", "1"]
    read, write = os.pipe()
    os.close(read)  # (as head after its first line: every write of the command fails with EPIPE)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", f"examples.srvp.{cli}", *argv], cwd=ROOT, env=ENV, stdout=write,
            stderr=subprocess.PIPE, text=True, timeout=300,
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    done = (run / "eval" / "piped.json") if cli == "evaluate" else (tmp_path / "run" / "checkpoints" / "last.pt")
    assert done.exists()


# ------------------------------------------------------------------ 8. notes go to stderr
def test_notes_go_to_stderr_and_fit_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--max-steps", "1"]) == 0
    out, err = capsys.readouterr()
    assert "note:" not in out
    note = next(line for line in err.splitlines() if line.startswith("note: the Moving MNIST digits"))
    # The quickstart has no --data-dir: the note names the command that has it.
    assert "python -m examples.srvp.train --data-dir MNIST_DIR" in note and "give --data-dir" not in note


# ------------------------------------------------------------------ 9. no abbreviations, one-line suggestions
@pytest.mark.parametrize(
    ("main", "argv", "said"),
    [
        ("examples.srvp.train", ["--preset", "tiny", "--run-dir", "R", "--max-step", "2"], "--max-step: did you mean"),
        ("examples.srvp.evaluate", ["RUN", "--over"], "--over: did you mean --overwrite?"),
        ("examples.srvp.demo", ["RUN", "--out", "D", "--check", "best"], "--check: did you mean --checkpoint?"),
        ("examples.srvp.quickstart", ["--minute", "1"], "--minute: did you mean --minutes?"),
        ("examples.srvp.data", ["smmnist-test-set", "--mnist-dir", "embedded", "--seq", "3"], "--seq: did you mean"),
        ("examples.srvp.official", ["convert", "A", "B", "--model-nam", "x"], "did you mean --model-name?"),
        ("benchmarks.train_step", ["--iter", "1"], "--iter: did you mean --iters?"),
        ("benchmarks.sampling", ["--sample", "1"], "--sample: did you mean --samples"),
        ("benchmarks.rollout", ["--frame", "1"], "--frame: did you mean --frames?"),
        ("benchmarks.data", ["--iter", "1"], "--iter: did you mean --iters?"),
    ],
)
def test_flags_are_never_abbreviated_and_an_unknown_one_gets_a_suggestion(
    main: str, argv: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import importlib

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(main).main(argv)
    assert exit_.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"python -m {main}: error: unrecognized arguments: ") and said in line
    assert not any(tmp_path.iterdir())  # nothing ran


def test_a_closed_pipe_does_not_stop_the_work_midway(tmp_path: Path) -> None:
    """Piped standard output is block-buffered: a command printing more than the buffer holds got BrokenPipeError at
    the print that filled it, which stopped its work there (and the status then said nothing of it). The work goes
    on, its output discarded, and the command ends with the work's own status."""
    done = tmp_path / "done"
    script = (
        "import sys\n"
        "from examples.srvp._cli import ends_quietly_on_a_closed_pipe\n"
        "@ends_quietly_on_a_closed_pipe\n"
        "def main():\n"
        "    for i in range(20000):\n"
        "        print('line', i)\n"
        f"    open({str(done)!r}, 'w').write('yes')\n"
        "    return 3\n"
        "sys.exit(main())\n"
    )
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=ENV, stdout=write, stderr=subprocess.PIPE, text=True,
            timeout=120,
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == 3, proc.stderr
    assert done.read_text() == "yes"
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------ a minimal install (no examples extra)
def _without(monkeypatch: pytest.MonkeyPatch, *missing: str) -> None:
    """Make ``missing`` look not installed, to find_spec and to import."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)  # (import then raises ImportError)


@pytest.mark.parametrize("command", ["quickstart", "evaluate", "demo"])
def test_a_command_whose_outputs_need_the_examples_extra_says_so_before_working(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without matplotlib the quickstart trained its whole budget (about 15 minutes), then failed at its plot with
    a traceback ending "No module named 'matplotlib'"."""
    _without(monkeypatch, "matplotlib", "imageio")
    run_dir = tmp_path / "run"
    if command == "quickstart":
        status = quickstart.main(["--preset", "tiny", "--run-dir", str(run_dir), "--max-steps", "1"])
    elif command == "evaluate":
        status = ev.main([str(run_dir), "--test-set", str(tmp_path / "t.npz")])
    else:
        status = demo.main([str(run_dir), "--out", str(tmp_path / "demo")])
    err = capsys.readouterr().err
    assert status == 2
    needs = "imageio is needed" if command == "demo" else "matplotlib and imageio are needed"
    assert err.startswith(f"error: {needs} for ") and 'pip install "latentdyn[examples]"' in err, err
    assert not run_dir.exists()  # nothing was trained or written


def test_the_progress_bar_of_a_terminal_does_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a terminal, train imported tqdm unconditionally and crashed at once without it."""
    from examples.srvp import _cli

    class Terminal:
        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            pass

    _without(monkeypatch, "tqdm")
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = _cli.progress_bar(total=3, desc="train")
    assert isinstance(bar, _cli.LineProgress)
    bar.update(3)
    bar.close()


def test_training_says_what_it_trains_on_which_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing said on which device a run trained (the CPU by default, also on a GPU machine)."""
    import torch

    assert train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    n_iter = PRESETS["tiny"]().n_iter
    line = next(x for x in out.splitlines() if x.startswith("training steps"))
    assert line.startswith(f"training steps 0 to 2 of {n_iter:,}, batch {PRESETS['tiny']().batch_size}, on cpu, ")
    assert "threads, precision fp32" in line and "CUDA" not in line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    hint = train._plan_line(PRESETS["tiny"](), torch.device("cpu"), 2, 4, 1)
    assert hint.endswith("(a CUDA GPU is available: --device cuda trains on it)")


# ------------------------------------------------------------------------ 3rd review: flags shared by the commands
def test_evaluate_and_demo_take_threads_like_train_and_give_the_callers_count_back(
    tiny_run: Path, test_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    out = tmp_path / "eval"
    argv = ["--test-set", str(test_set), "--max-sequences", "1", "--n-samples", "1", "--no-lpips", "--out", str(out)]
    assert ev.main([str(tiny_run), *argv, "--threads", str(wanted)]) == 0
    (results,) = out.glob("*.json")
    assert json.loads(results.read_text())["provenance"]["torch_threads"] == wanted
    assert torch.get_num_threads() == before

    seen: list[int] = []
    real_save = demo._save
    monkeypatch.setattr(demo, "_save", lambda *a, **k: (seen.append(torch.get_num_threads()), real_save(*a, **k))[1])
    argv = ["--test-set", str(test_set), "--what", "swap", "--out", str(tmp_path / "demo"), "--threads", str(wanted)]
    assert demo.main([str(tiny_run), *argv]) == 0
    assert seen == [wanted]
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("cli", ["evaluate", "demo"])
def test_a_negative_thread_count_is_refused_in_one_line(
    cli: str, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = ev.main if cli == "evaluate" else demo.main
    extra = ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as stop:
        main([str(tiny_run), *extra, "--threads", "-2"])
    assert stop.value.code == 2
    assert "argument --threads: expected an int >= 0 (0: torch's own number of threads), got '-2'" in _one_line(
        capsys.readouterr().err
    )


def test_demo_takes_nt_cond_as_evaluate_and_train_spell_it(
    tiny_run: Path, test_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tiny_run), "--test-set", str(test_set), "--what", "swap", "--out", str(tmp_path / "demo")]
    assert demo.main([*argv, "--nt-cond", "99"]) == 2
    assert "--n-cond: expected" in _one_line(capsys.readouterr().err)
    assert demo.main([*argv, "--nt-cond", "2"]) == 0


def test_a_resume_keeps_the_adam_implementation_this_machine_chose(tmp_path: Path) -> None:
    """A CUDA-paths review: ``Optimizer.load_state_dict`` restores the saved groups' ``fused`` and ``foreach``
    flags, so a run saved on a GPU (fused Adam) and resumed on a CPU without fused Adam (torch < 2.4) failed at its
    first step, and a run saved by such a build resumed on a GPU unfused. Simulated by a checkpoint whose flags
    are the other ones."""
    import torch

    from examples.srvp.checkpoint import save_checkpoint

    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--threads", "1", "--max-steps", "1"]) == 0
    last = run / "checkpoints" / "last.pt"
    chosen = train.make_adam([torch.nn.Parameter(torch.zeros(2))], 1e-3).param_groups[0]
    state = torch.load(last, weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        group["fused"], group["foreach"] = (None, True) if chosen["fused"] else (True, None)
    save_checkpoint(last, state)
    assert train.main(["--resume", str(run), "--threads", "1", "--max-steps", "2"]) == 0
    resumed = torch.load(last, weights_only=True)
    assert resumed["step"] == 2
    for group in resumed["optimizer"]["param_groups"]:
        assert (group["fused"], group["foreach"]) == (chosen["fused"], chosen["foreach"])


# ------------------------------------------------------------------------------------ warnings on the commands
def test_a_command_shows_a_warning_as_one_line_and_gives_the_display_back(capsys: pytest.CaptureFixture[str]) -> None:
    """Python printed "FILE:LINE: UserWarning: MESSAGE" and the source line: the example's code (or torch's), of
    no use to the user of a command. Filters other than the ones given stay the caller's."""
    import warnings

    from examples.srvp._cli import warnings_as_lines

    shown = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with warnings_as_lines(r"left out\b"):
            warnings.warn("something to know\n", UserWarning, stacklevel=1)
            warnings.warn("left out here", UserWarning, stacklevel=1)
            warnings.warn("something else", RuntimeWarning, stacklevel=1)
        assert warnings.showwarning is shown
        warnings.simplefilter("error")
        with warnings_as_lines(), pytest.raises(UserWarning, match="an error still"):
            warnings.warn("an error still", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: something to know\nwarning: something else\n"


def test_train_says_the_adjoint_warning_in_its_flags_and_evaluate_leaves_it_out(
    tmp_path: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """latentdyn warns that the adjoint of a low-order method misstates the gradient, in Python's terms
    ("OdeintIntegrator(adjoint=True) ... or adjoint=False") and at the example's line: train says it with its flags,
    evaluate (which takes no gradient) says nothing of it."""
    run = tmp_path / "run"
    args = ["--preset", "tiny", "--run-dir", str(run), "--lr-burnin", "1", "--lr-decay", "1"]
    assert train.main([*args, "--integrator", "euler", "--adjoint", "true"]) == 0
    err = capsys.readouterr().err
    assert "warning: --adjoint true with --integrator euler (order 1): the adjoint gives the gradient " in err
    assert "use --integrator rk4 or an adaptive method such as dopri5, or --adjoint false" in err
    assert "OdeintIntegrator" not in err and err.count("--adjoint true") == 1
    assert ev.main([str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "1"]) == 0
    assert "adjoint" not in capsys.readouterr().err
