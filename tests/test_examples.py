"""Smoke and behaviour tests of the SRVP example's commands: train, resume, evaluate, quickstart, README."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from einops import rearrange

from examples.srvp import data as data_cli
from examples.srvp import evaluate as ev
from examples.srvp import quickstart, train
from examples.srvp.checkpoint import (
    default_checkpoint,
    fork_rng,
    load_checkpoint,
    load_model,
    paper_checkpoint,
    read_run_config,
    rng_state,
    set_rng_state,
)
from examples.srvp.config import PRESETS, TrainConfig
from examples.srvp.model import SRVP, FrameModel, Prediction
from latentdyn.distributions import diag_gaussian
from latentdyn.ssm import default_sampler

ROOT = Path(__file__).resolve().parents[1]


# test_set, tiny_run and tiny_cli_run: tests/conftest.py (shared with the other test files, made once).


def _tiny() -> TrainConfig:
    return PRESETS["tiny"]()


def test_train_cli_writes_a_run_directory(tiny_cli_run: Path) -> None:
    run = tiny_cli_run  # train.main(["--preset", "tiny", "--run-dir", run, "--lr-burnin", "2", "--lr-decay", "1"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr_burnin"] == 2 and config["model"]["state_size"] == 4
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["step"] == 3
    assert set(last) >= {"model", "optimizer", "scheduler", "step", "rng", "config"}
    assert (run / "checkpoints" / "best.pt").exists()
    assert isinstance(load_model(run), SRVP)
    assert (run / "train_log.jsonl").read_text().strip()


def test_the_printed_evaluate_command_asks_only_for_what_the_run_does_not_know(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--lr-burnin", "1", "--lr-decay", "0"]) == 0
    assert (
        f"evaluate: python -m examples.srvp.evaluate {run} --test-set data/smmnist_test_2digits_64.npz (make that test "
        "set first with: python -m examples.srvp.data smmnist-test-set --mnist-dir embedded --out data/)\n"
    ) in capsys.readouterr().out
    assert train.evaluate_command(run, "kth") == f"python -m examples.srvp.evaluate {run}"  # found via data_dir
    assert train.evaluate_command(run, "folder").endswith("--test-set FOLDER_OF_TEST_VIDEOS")


def test_train_cli_rejects_unknown_options_and_existing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--no-such-option", "1"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        train.main(["--preset", "nope", "--run-dir", str(tmp_path / "r")])
    with pytest.raises(SystemExit) as e:
        train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--architecture", "resnet"])
    assert e.value.code == 2
    assert "argument --architecture: invalid choice: 'resnet' (choose from 'dcgan', 'vgg')" in capsys.readouterr().err
    assert (
        train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "r2"), "--lr-burnin", "1", "--lr-decay", "0"]) == 0
    )
    assert train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "r2")]) == 2
    assert "already holds a run" in capsys.readouterr().err


def _quiet(cfg: TrainConfig, run: Path, **kwargs: object) -> train.TrainResult:
    return train.train(cfg, run, progress=False, log=lambda _: None, **kwargs)  # type: ignore[arg-type]


def _same_weights(a: Path, b: Path, which: str = "last") -> bool:
    ca, cb = (load_checkpoint(run / "checkpoints" / f"{which}.pt") for run in (a, b))
    wa, wb = ca["model"], cb["model"]
    same = ca["step"] == cb["step"] and ca["best_val_psnr"] == cb["best_val_psnr"]
    return same and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, train.TrainResult]:
    """The uninterrupted tiny run (its whole schedule) that the stopped and resumed runs are compared with: read
    only."""
    run = tmp_path_factory.mktemp("straight") / "run"
    return run, _quiet(_tiny(), run)


@pytest.mark.parametrize("split", [2, 3, 4])
def test_resume_is_exact(tmp_path: Path, split: int, straight_run: tuple[Path, train.TrainResult]) -> None:
    """Stopping at any step, with or without a validation there (val_interval 3), changes nothing."""
    cfg = _tiny()
    a, straight = straight_run
    first = _quiet(cfg, tmp_path / "b", max_steps=split)
    assert first.stopped == "max steps" and first.step == split
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == split
    second = _quiet(cfg, tmp_path / "b", resume=True)
    assert straight.step == second.step == cfg.n_iter
    assert straight.losses == first.losses + second.losses
    assert _same_weights(a, tmp_path / "b")
    # The same model selected: the validation at the stop is logged but selects nothing.
    assert _same_weights(a, tmp_path / "b", "best")


def test_a_stop_selects_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Models are selected at multiples of val_interval only (SPEC 3; val_interval 3 here): a validation at a
    stop (step 2) is logged, but a stopped and resumed run keeps the best.pt an uninterrupted run keeps."""
    cfg = _tiny()

    def scores() -> Iterator[float]:
        yield from (10.0 - i for i in range(100))  # every validation scores below the previous one

    for run in ("a", "b"):
        stream = scores()
        monkeypatch.setattr(train, "validate", lambda *_, stream=stream: next(stream))
        if run == "b":
            _quiet(cfg, tmp_path / run, max_steps=2)
            assert not (tmp_path / run / "checkpoints" / "best.pt").exists()
            _quiet(cfg, tmp_path / run, resume=True)
        else:
            _quiet(cfg, tmp_path / run)
    log = [json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "val_psnr" in e] == [2, 3, 6]
    best = [load_checkpoint(tmp_path / run / "checkpoints" / "best.pt") for run in ("a", "b")]
    assert best[0]["step"] == best[1]["step"] == 3
    assert all(torch.equal(best[0]["model"][k], best[1]["model"][k]) for k in best[0]["model"])


class _FakeGenerator:
    """A stand-in for an accelerator module with one global random state (torch.mps, torch.xpu)."""

    def __init__(self) -> None:
        self.state = torch.tensor([1, 2, 3], dtype=torch.uint8)

    def get_rng_state(self) -> torch.Tensor:
        return self.state.clone()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.state = state.clone()


def test_rng_state_of_an_accelerator_other_than_cuda_is_saved_restored_and_forked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On MPS (or XPU) the draws on the device use the device's generator: a resumed run or a continued evaluation
    that restored only the CPU state would draw other noise there."""
    fake = _FakeGenerator()
    monkeypatch.setattr(torch, "mps", fake, raising=False)
    mps = torch.device("mps")
    saved = rng_state(mps)
    assert torch.equal(saved["mps"], torch.tensor([1, 2, 3], dtype=torch.uint8))
    fake.state = torch.tensor([9], dtype=torch.uint8)
    set_rng_state(saved, mps)
    assert torch.equal(fake.state, torch.tensor([1, 2, 3], dtype=torch.uint8))
    cpu_before = torch.get_rng_state()
    with fork_rng(mps):
        fake.state = torch.tensor([7], dtype=torch.uint8)
        torch.rand(3)
    assert torch.equal(fake.state, torch.tensor([1, 2, 3], dtype=torch.uint8))
    assert torch.equal(torch.get_rng_state(), cpu_before)
    assert set(rng_state(torch.device("cpu"))) == {"torch"}


def test_time_budget_stop_resumes_exactly(tmp_path: Path) -> None:
    cfg = _tiny()
    straight = _quiet(cfg, tmp_path / "a")
    messages: list[str] = []
    first = train.train(dataclasses.replace(cfg, max_minutes=1e-9), tmp_path / "b", progress=False, log=messages.append)
    assert first.stopped == "time budget" and first.step == 1
    assert any(f"python -m examples.srvp.train --resume {tmp_path / 'b'}" in m for m in messages)
    second = _quiet(cfg, tmp_path / "b", resume=True)
    assert straight.losses == first.losses + second.losses
    assert _same_weights(tmp_path / "a", tmp_path / "b")


def _unhandled(signum: int, frame: object) -> None:
    import signal

    raise AssertionError(f"{signal.Signals(signum).name} reached the handler in place before the run")


@pytest.fixture
def signals_fail_outside_train() -> Iterator[None]:
    """SIGINT and SIGTERM go to ``_unhandled`` unless train handles them, in place of Python's handlers (a Ctrl-C
    that escaped would stop pytest, a SIGTERM end its process)."""
    import signal

    originals = {s: signal.signal(s, _unhandled) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in originals.items():
        signal.signal(s, handler)


@pytest.mark.parametrize(
    ("signame", "stopped", "torchrun"),
    [("SIGINT", "interrupted", False), ("SIGINT", "interrupted", True), ("SIGTERM", "terminated", False)],
)
@pytest.mark.usefixtures("signals_fail_outside_train")
def test_ctrl_c_or_sigterm_stops_after_the_step_with_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signame: str, stopped: str, torchrun: bool
) -> None:
    """Ctrl-C, or the SIGTERM a scheduler sends before it kills a job, ends the run after the step in progress
    with a checkpoint, from which the run resumes exactly. The same signal again: SIGTERM changes nothing (a
    signal to a whole job arrives twice under torchrun, and the scheduler's SIGKILL ends an overlong run); a
    second Ctrl-C interrupts at once, except under torchrun, whose agent passes the terminal's Ctrl-C on again."""
    import os
    import signal

    sig = getattr(signal, signame)
    if torchrun:
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    repeats = sig == signal.SIGTERM or torchrun
    cfg = _tiny()
    straight = _quiet(cfg, tmp_path / "a")
    original = SRVP.loss_terms
    calls = []
    handler_after_the_first: list[object] = []

    def interrupted(self: SRVP, x: torch.Tensor, out: object) -> object:
        calls.append(1)
        if len(calls) == 2:  # the signal in the middle of step 2
            os.kill(os.getpid(), sig)
            handler_after_the_first.append(signal.getsignal(sig))
            if repeats:
                os.kill(os.getpid(), sig)  # ignored: the stop is already asked for
        return original(self, x, out)  # type: ignore[arg-type]

    monkeypatch.setattr(SRVP, "loss_terms", interrupted)
    messages: list[str] = []
    first = train.train(cfg, tmp_path / "b", progress=False, log=messages.append)
    monkeypatch.undo()
    # A repeated signal still finds train's handler; otherwise (Ctrl-C) the one from before the run.
    assert (handler_after_the_first[0] is _unhandled) is not repeats
    assert first.stopped == stopped and first.step == 2
    assert train.exit_status(first.stopped) == 128 + sig  # the shell's status for the signal
    assert any(("Ctrl-C" if sig == signal.SIGINT else "SIGTERM") in m and "--resume" in m for m in messages)
    # Said when the loop stops, before the checkpoint and the validation, which may take long (review finding:
    # nothing acknowledged the Ctrl-C until the run had ended).
    by = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    again = " (Ctrl-C again stops at once)" if not torchrun else ""
    said = f"{by}: stopping at step 2: scoring a last validation{again}"  # (last.pt of step 2: written already)
    assert (cfg.checkpoint_interval, cfg.val_interval) == (2, 3)
    assert said in messages and messages.index(said) < next(i for i, m in enumerate(messages) if "validation" in m
                                                              and m.startswith("step 2"))  # fmt: skip
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGTERM) is _unhandled  # both restored
    second = _quiet(cfg, tmp_path / "b", resume=True)
    assert straight.losses == first.losses + second.losses
    assert _same_weights(tmp_path / "a", tmp_path / "b")


def test_a_stop_asked_by_another_process_is_acknowledged_with_what_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Diff review: the acknowledgement named this process's own signal ("None" when another rank of a
    data-parallel job got it) and promised a checkpoint and a validation that the stop may not make."""
    import sys

    votes = train._max_over_ranks

    def another_rank_interrupted(value: int, dist: object, device: torch.device) -> int:
        caller = sys._getframe(1)  # the stop vote after step 3 of _train: another rank's Ctrl-C (2) wins
        if caller.f_code.co_name == "_train" and caller.f_locals.get("step") == 3:
            return max(2, value)
        return votes(value, dist, device)  # type: ignore[arg-type]

    monkeypatch.setattr(train, "_max_over_ranks", another_rank_interrupted)
    messages: list[str] = []
    result = train.train(_tiny(), tmp_path / "run", max_steps=10, progress=False, log=messages.append)
    assert (result.stopped, result.step) == ("interrupted", 3)
    # Step 3: not a checkpoint step (every 2), so last.pt is written; a validation step (every 3), so none more.
    assert "Ctrl-C (in another process): stopping at step 3: writing last.pt" in messages
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3


def test_a_stop_writes_its_checkpoint_before_the_log_only_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a SIGTERM the scheduler's grace period runs: a validation that outlasts it (a slow one, or one
    killed) must not cost the checkpoint. No periodic checkpoint at step 2 here (interval 100)."""

    def killed(*args: object) -> float:
        raise RuntimeError("killed during the validation")

    monkeypatch.setattr(train, "validate", killed)
    with pytest.raises(RuntimeError, match="killed during the validation"):
        _quiet(dataclasses.replace(_tiny(), checkpoint_interval=100), tmp_path / "run", max_steps=2)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


@pytest.mark.slow  # (a training process and its 2 DataLoader workers, up to minutes on a busy machine)
def test_sigterm_to_the_whole_job_with_dataloader_workers_saves_and_resumes(tmp_path: Path) -> None:
    """A scheduler's SIGTERM reaches every process of the job (here a process group), the DataLoader workers
    included: the run still ends after its step with a checkpoint and exit status 143, and resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "examples.srvp.train", "--preset", "tiny", "--run-dir", str(run)]
    cmd += ["--lr-decay", "100000", "--val-interval", "100000", "--checkpoint-interval", "100000"]
    cmd += ["--n-workers", "2", "--threads", "1"]
    proc = subprocess.Popen(
        cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a job's
    )  # fmt: skip
    log = run / "train_log.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text().count("\n") >= 2) and time.monotonic() < deadline:
            time.sleep(0.1)  # 20 steps taken, the workers serving
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert "exited unexpectedly" not in err and "Traceback" not in err, err
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert step >= 20 and f"stopped at step {step} of 100004 (SIGTERM)" in err + out
    assert train.main(["--resume", str(run), "--max-steps", str(step + 1), "--threads", "1"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == step + 1


def test_a_run_without_a_checkpoint_yet_resumes_from_step_zero(tmp_path: Path) -> None:
    """A run stopped before its first checkpoint (a crash, a kill) is neither stuck nor started twice."""
    cfg = _tiny()
    straight = _quiet(cfg, tmp_path / "a")
    _quiet(cfg, tmp_path / "b", max_steps=1)
    (tmp_path / "b" / "checkpoints" / "last.pt").unlink()
    assert not (tmp_path / "b" / "checkpoints" / "best.pt").exists()  # step 1 is not a validation step
    messages: list[str] = []
    again = train.train(cfg, tmp_path / "b", resume=True, progress=False, log=messages.append)
    assert any("no checkpoint yet: starting it from step 0" in m for m in messages)
    assert again.losses == straight.losses


def test_resume_refuses_a_checkpoint_of_another_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    _quiet(_tiny(), run, max_steps=2)
    config = json.loads((run / "config.json").read_text())
    config["model"]["beta_z"] = 5.0  # an edited config.json: same shapes, another loss
    (run / "config.json").write_text(json.dumps(config))
    assert train.main(["--resume", str(run)]) == 2
    assert "was written by another model configuration: beta_z checkpoint 1.0 vs config.json 5.0" in (
        capsys.readouterr().err
    )
    config["model"]["beta_z"], config["model"]["state_size"] = 1.0, 7  # another shape: no traceback either
    (run / "config.json").write_text(json.dumps(config))
    assert train.main(["--resume", str(run)]) == 2
    assert "state_size checkpoint 4 vs config.json 7" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--lr", "-1", "--lr: expected a finite number > 0, got -1.0"),
        ("--lr", "inf", "--lr: expected a finite number > 0, got inf"),
        ("--beta-z", "-3", "--beta-z: expected a finite number >= 0, got -3.0"),
        ("--residual-weight", "-1", "--residual-weight: expected a finite number >= 0, got -1.0"),
        ("--obs-scale", "nan", "--obs-scale: expected a positive standard deviation, got nan"),
        ("--threads", "-2", "--threads: expected an int >= 0, got -2"),
        ("--n-workers", "-2", "--n-workers: expected an int >= -1, got -2"),
        ("--seed", "-1", "--seed: expected an int >= 0, got -1"),
        ("--max-speed", "-1", "--max-speed: expected an int >= 0, got -1"),
        ("--max-minutes", "-1", "--max-minutes: expected a finite number >= 0, got -1.0"),
        ("--max-steps", "-1", "--max-steps: expected an int >= 0, got -1"),
        ("--device", "cudaa", "--device: expected e.g. 'cpu', 'cuda' or 'cuda:1', got 'cudaa'"),
        ("--channels", "3", "--channels: the 'smmnist' dataset has 1-channel frames, got channels=3"),
        ("--image-size", "32", "--image-size: Moving MNIST frames are 64x64, got image_size=32"),
    ],
)
def test_train_cli_names_the_option_of_a_bad_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), flag, value]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not run.exists()  # nothing half-made: the corrected command can use the same directory


def test_data_workers_default_to_none_on_a_cpu_and_to_several_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 0 workers every batch is made between two steps in the training process (about 60 ms for 128
    SM-MNIST clips here): the paper's command on a GPU could never reach 30 steps/s. The default (-1) now
    gives a GPU training workers, leaving one core per training process, and a CPU training none."""
    import os

    from examples.srvp.config import PRESETS

    assert all(make().n_workers == -1 for make in PRESETS.values())
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for cores, expected in ((64, 8), (4, 3), (1, 0)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)), raising=False)
        assert train.data_workers(-1, cuda) == expected
        assert train.data_workers(-1, cpu) == 0
        assert train.data_workers(5, cuda) == train.data_workers(5, cpu) == 5
        assert train.data_workers(0, cuda) == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun, 4 GPUs on the machine: 4 cores each
    assert train.data_workers(-1, cuda) == 3


def test_train_cli_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Linear layers of f and of the prior" in text  # the residual_layers field comment
    assert "--integrator {euler-ref," in text and "--amp {none,bf16,fp16}" in text
    assert "stop (with a checkpoint) after this global step" in text
    with pytest.raises(SystemExit):
        train.main(["--resume", str(Path("a")), "--run-dir", str(Path("b"))])
    assert "--run-dir and --resume name different directories" in capsys.readouterr().err


def test_resume_with_conflicting_options_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train.train(_tiny(), run, max_steps=2, progress=False, log=lambda _: None)
    assert train.main(["--resume", str(run), "--lr-decay", "5"]) == 2  # (--lr may change: see below)
    assert "--lr-decay saved 2 vs given 5" in capsys.readouterr().err
    # Runtime-only options may change.
    args = train.build_parser().parse_args(["--resume", str(run), "--threads", "1"])
    assert train.config_from_args(args).threads == 1


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _tiny()
    run = tmp_path / "run"
    train.train(cfg, run, max_steps=2, progress=False, log=lambda _: None)
    good = load_checkpoint(run / "checkpoints" / "last.pt")
    original = SRVP.loss_terms

    def poisoned(self: SRVP, x: torch.Tensor, out: object) -> object:
        terms = original(self, x, out)  # type: ignore[arg-type]
        return terms._replace(total=terms.total * float("nan"))

    monkeypatch.setattr(SRVP, "loss_terms", poisoned)
    messages: list[str] = []
    result = train.train(cfg, run, resume=True, max_steps=6, progress=False, log=messages.append)
    assert result.stopped == "nan" and result.step == 2
    assert any("loss is nan" in m for m in messages)
    kept = load_checkpoint(run / "checkpoints" / "last.pt")
    assert kept["step"] == 2 and all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])


class _NonFiniteGradient(torch.autograd.Function):
    """The identity, whose backward multiplies the gradient by inf: a loss that stays finite while its backward
    overflows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


def _poison_gradients(monkeypatch: pytest.MonkeyPatch, after_calls: int) -> None:
    """From the training forward pass number ``after_calls`` (0-based) on, the loss keeps its value and its
    gradients are not finite."""
    original = SRVP.loss_terms
    calls = [0]

    def poisoned(self: SRVP, x: torch.Tensor, out: Any) -> Any:
        terms = original(self, x, out)
        if self.training:
            calls[0] += 1
            if calls[0] > after_calls:
                return terms._replace(total=_NonFiniteGradient.apply(terms.total))
        return terms

    monkeypatch.setattr(SRVP, "loss_terms", poisoned)


def test_a_finite_loss_with_non_finite_gradients_stops_before_its_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by a review: only the loss was checked, so the update from non-finite gradients went through, and
    when a stop came right after it (here --max-steps) last.pt was written with NaN weights, exit status 0."""
    run = tmp_path / "run"
    train.train(_tiny(), run, max_steps=2, progress=False, log=lambda _: None)
    last = run / "checkpoints" / "last.pt"
    good = load_checkpoint(last)
    _poison_gradients(monkeypatch, after_calls=0)
    assert train.main(["--resume", str(run), "--max-steps", "3"]) == 1  # step 2's update would end at the stop
    out = capsys.readouterr().out
    assert "step 2: gradients are not finite" in out and f"{last} holds step 2" in out
    assert "resuming unchanged diverges again" in out and "evaluate:" not in out  # (no evaluation of it offered)
    kept = load_checkpoint(last)
    assert kept["step"] == 2 and all(torch.equal(kept["model"][k], v) for k, v in good["model"].items())


def test_no_checkpoint_is_written_with_weights_that_are_not_finite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The step's gradient check turned off, so that an update makes the weights NaN right before a save.
    monkeypatch.setattr(train, "_grad_norm", lambda model: torch.zeros(()))
    _poison_gradients(monkeypatch, after_calls=1)  # step 1's update; checkpoint_interval 2 saves after it
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run)]) == 1
    err = capsys.readouterr().err
    assert "step 2: the model's" in err and f"{run / 'checkpoints' / 'last.pt'} was not written" in err
    assert not (run / "checkpoints" / "last.pt").exists()


def test_resume_refuses_a_checkpoint_whose_weights_are_not_finite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A last.pt of a version without the checks (or damaged): refused with a message, rather than resumed into a
    NaN loss at once."""
    from examples.srvp.checkpoint import save_checkpoint

    run = tmp_path / "run"
    train.train(_tiny(), run, max_steps=2, progress=False, log=lambda _: None)
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    save_checkpoint(last, state)
    assert train.main(["--resume", str(run)]) == 2
    assert f"--resume: {last} holds weights that are not finite" in capsys.readouterr().err


def test_a_validation_score_that_is_not_finite_never_becomes_the_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: a NaN score at the first selection point was kept as the best, and no later score is
    greater than NaN, so best.pt stayed that model for the rest of the run."""
    scores = iter([float("nan"), 10.0])
    monkeypatch.setattr(train, "validate", lambda *args: next(scores))
    messages: list[str] = []
    run = tmp_path / "run"
    result = train.train(_tiny(), run, progress=False, log=messages.append)  # validations at steps 3 and 6
    assert result.step == 6 and result.best_val_psnr == 10.0
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == 6
    assert any("step 3: validation" in m and "not finite" in m for m in messages)


def test_validation_counts_an_exactly_predicted_frame_as_the_evaluation_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.srvp.datasets import make_data
    from examples.srvp.evaluate import PSNR_CAP_DB
    from examples.srvp.model import build_model
    from latentdyn.video import metrics

    cfg = _tiny()
    _, val = make_data(cfg)
    monkeypatch.setattr(metrics, "psnr", lambda a, b: torch.full(a.shape[:3], float("inf")))  # every frame exact
    assert train.validate(build_model(cfg.model), cfg, val, torch.device("cpu")) == PSNR_CAP_DB
    assert PSNR_CAP_DB == 100.0  # the cap the documentation gives (examples/srvp/README.md, docs/srvp.md)


@pytest.mark.skipif(not hasattr(torch.amp, "GradScaler"), reason="fp16 on the CPU needs torch >= 2.3")
def test_fp16_training_whose_every_update_is_skipped_stops_as_diverged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: with fp16 loss scaling, gradients that are never finite made the scaler skip every update
    silently; the run ended "done" with exit status 0 and weights that had never changed."""
    _poison_gradients(monkeypatch, after_calls=0)
    cfg = dataclasses.replace(_tiny(), amp="fp16", lr_burnin=train.MAX_SKIPPED_UPDATES + 10)
    messages: list[str] = []
    run = tmp_path / "run"
    # Stopped and resumed half-way through the skips: the count travels in last.pt, the stop comes where an
    # uninterrupted run's does (the skip of an update is read back with the next step's loss, one step late).
    assert train.train(cfg, run, max_steps=30, progress=False, log=lambda _: None).stopped == "max steps"
    result = train.train(cfg, run, resume=True, progress=False, log=messages.append)
    assert result.stopped == "nan" and result.step == train.MAX_SKIPPED_UPDATES
    assert any(f"skipped the last {train.MAX_SKIPPED_UPDATES} updates" in m for m in messages)
    logged = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    rows = [row for row in logged if "skipped_updates" in row]  # (every 10 steps, with the loss terms)
    assert rows and all(row["skipped_updates"] == row["step"] - 1 for row in rows) and rows[-1]["amp_scale"] < 1


def test_the_log_has_the_gradient_norm_of_the_logged_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding: the gradients' norm was read back every step (to stop before a non-finite update) but
    not logged, though it is what one looks at first when a training misbehaves."""
    norms: list[float] = []
    grad_norm = train._grad_norm

    def spy(model: torch.nn.Module) -> torch.Tensor:
        norm = grad_norm(model)
        norms.append(float(norm))
        return norm

    monkeypatch.setattr(train, "_grad_norm", spy)
    run = tmp_path / "run"
    train.train(dataclasses.replace(_tiny(), lr_burnin=30), run, max_steps=20, progress=False, log=lambda _: None)
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    logged = {row["step"]: row["grad_norm"] for row in rows if "nll" in row}
    assert logged == {10: norms[9], 20: norms[19]} and len(set(norms)) == 20 and min(norms) > 0


def test_a_resume_with_another_thread_count_says_it_is_not_bit_for_bit(tmp_path: Path) -> None:
    """Found by a review: --threads may change on resume, but on a CPU it changes the order of float sums, so the
    run is no longer bit-identical to an uninterrupted one; the docs claimed it continued exactly."""
    threads = torch.get_num_threads()
    run, messages = tmp_path / "run", []  # type: Path, list[str]
    try:
        train.train(dataclasses.replace(_tiny(), threads=1), run, max_steps=2, progress=False, log=lambda _: None)
        assert load_checkpoint(run / "checkpoints" / "last.pt")["runtime"]["threads"] == 1
        cfg = dataclasses.replace(_tiny(), threads=2)
        train.train(cfg, run, resume=True, max_steps=3, progress=False, log=messages.append)
        assert any("threads 1 (this run: 2)" in m and "not bit for bit" in m for m in messages)
        messages.clear()
        train.train(cfg, run, resume=True, max_steps=4, progress=False, log=messages.append)  # same count: silent
        assert not any("bit for bit" in m for m in messages)
    finally:
        torch.set_num_threads(threads)


def _logged_lr(run: Path, step: int) -> float:
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return next(row["lr"] for row in rows if row["step"] == step and "lr" in row)


def test_a_resume_may_change_the_peak_learning_rate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by a review: a diverged run could not be continued, since a resume replays it exactly and refused
    every change. ``--resume RUN --lr LR`` goes on from the checkpoint with LR as the schedule's peak rate."""
    run, fresh = tmp_path / "run", tmp_path / "fresh"
    train.train(_tiny(), run, max_steps=4, progress=False, log=lambda _: None)  # the decay starts (burn-in 4)
    assert train.main(["--resume", str(run), "--lr", "0.0001", "--max-steps", "5"]) == 0
    assert "the peak learning rate changes from 0.0003 to 0.0001 at step 4" in capsys.readouterr().out
    saved = read_run_config(run)
    assert saved["train"]["lr"] == 1e-4 and saved["lr_changes"] == [{"step": 4, "from": 3e-4, "to": 1e-4}]
    # Step 4's update used the new peak rate at the schedule's point of step 4 (half-way down the decay), as a
    # run started with it does.
    train.train(dataclasses.replace(_tiny(), lr=1e-4), fresh, max_steps=5, progress=False, log=lambda _: None)
    assert _logged_lr(run, 5) == _logged_lr(fresh, 5) == pytest.approx(1e-4 * _official_lr_factors(4, 2)[4])
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == 1e-4 and state["scheduler"]["base_lrs"] == [1e-4]
    # Later resumes keep it without being told again (and do not record a change).
    assert train.main(["--resume", str(run)]) == 0
    assert "peak learning rate" not in capsys.readouterr().out and len(read_run_config(run)["lr_changes"]) == 1
    # A requeued job's command still gives the run's first options: --auto-resume keeps the changed rate.
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--auto-resume"]) == 0
    assert read_run_config(run)["train"]["lr"] == 1e-4 and len(read_run_config(run)["lr_changes"]) == 1


def _official_lr_factors(burnin: int, decay: int) -> list[float]:
    """The official loop (SPEC §3, train.py): ``itr`` counts updates from 1; after update ``itr`` the LambdaLR,
    whose factor after i steps is max(0, (decay − i)/decay), steps if ``itr >= burnin``."""
    factors, i = [], 0
    for itr in range(1, burnin + decay + 1):
        factors.append(max(0.0, (decay - i) / decay))
        if itr >= burnin:
            i += 1
    return factors


def test_lr_schedule_is_the_official_one() -> None:
    assert _official_lr_factors(4, 4) == [1, 1, 1, 1, 0.75, 0.5, 0.25, 0.0]  # the last update runs at 0
    for burnin, decay in ((4, 4), (0, 3), (1, 3), (5, 1), (2, 7)):
        ours = [train.lr_factor(s, burnin, decay) for s in range(burnin + decay)]
        assert ours == pytest.approx(_official_lr_factors(burnin, decay)), (burnin, decay)


def test_training_updates_use_the_official_learning_rates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[float] = []
    make_adam = train.make_adam

    def recording_adam(params: object, lr: float) -> torch.optim.Adam:
        opt = make_adam(params, lr)  # type: ignore[arg-type]
        opt.register_step_pre_hook(lambda o, args, kwargs: used.append(o.param_groups[0]["lr"]))
        return opt

    # What is optimised: the gradient of each update must reach the weighted total (β_z·KL_z, λ·penalty
    # included) with weight 1, not an unweighted sum of the logged terms.
    total_grads: list[float] = []
    loss_terms = SRVP.loss_terms

    def hooked_loss_terms(self: SRVP, x: torch.Tensor, out: Any) -> Any:
        terms = loss_terms(self, x, out)
        terms.total.register_hook(lambda g: total_grads.append(float(g)))
        return terms

    monkeypatch.setattr(train, "make_adam", recording_adam)
    monkeypatch.setattr(SRVP, "loss_terms", hooked_loss_terms)
    cfg = dataclasses.replace(_tiny(), lr=1e-3, lr_burnin=3, lr_decay=4, val_interval=100)
    train.train(cfg, tmp_path / "run", progress=False, log=lambda _: None)
    expected = [1e-3 * f for f in _official_lr_factors(3, 4)]
    assert used == pytest.approx(expected)
    assert cfg.amp == "none" and total_grads == [1.0] * len(expected)  # fp32: no loss scaling
    # The logged rate of a step is the rate its update used (the last update runs at 0).
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    logged = {row["step"]: row["lr"] for row in rows if "lr" in row}
    assert logged == {len(expected): pytest.approx(expected[-1])}


def test_paper_presets_match_the_official_command_lines() -> None:
    smm = PRESETS["smmnist"]()
    assert (smm.model.state_size, smm.model.noise_size, smm.model.n_substeps, smm.model.beta_z) == (20, 20, 1, 2.0)
    assert (smm.batch_size, smm.seq_len, smm.nt_cond, smm.lr_burnin, smm.lr_decay) == (128, 15, 5, 1_000_000, 100_000)
    assert smm.model.architecture == "dcgan" and not smm.model.skip_connections and smm.model.conv_width == 64
    det = PRESETS["smmnist-deterministic"]()
    assert det.deterministic and (det.lr_burnin, det.lr_decay) == (800_000, 100_000)


def test_evaluate_cli_and_reference_predictors(
    tmp_path: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    train.train(_tiny(), run, max_steps=2, progress=False, log=lambda _: None)
    code = ev.main(
        [
            str(run),
            "--test-set",
            str(test_set),
            "--n-samples",
            "3",
            "--max-sequences",
            "5",
            "--batch-size",
            "2",
            "--nt-cond",
            "2",
            "--nt-gen",
            "7",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "copy_last" in out and "black" in out
    # An SM-MNIST run is scored on its final weights by default, as the official test.py scores model.pt.
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    stem = f"test_last_step{step}_n3_t7_dt1"  # the checkpoint and its step name the outputs
    result = json.loads((run / "eval" / f"{stem}.json").read_text())
    assert result["checkpoint"] == {"name": "last", "file": str(run / "checkpoints" / "last.pt"), "step": step}
    assert result["n_sequences"] == 5
    assert len(result["metrics"]["psnr_curve"]["mean"]) == 5
    # The all-black predictor's PSNR computed independently with numpy.
    seqs = np.load(test_set)["sequences"][2:7, :5].astype(np.float64) / 255
    mse = (seqs**2).mean(axis=(2, 3))  # (T, N)
    expected = (10 * np.log10(1 / mse)).mean(0).mean()
    assert result["reference_predictors"]["black"]["psnr"]["mean"] == pytest.approx(expected, rel=1e-5)
    for suffix in ("_curves.png", "_samples.gif", "_per_sequence.npz"):
        assert (run / "eval" / f"{stem}{suffix}").stat().st_size > 0


def test_evaluate_errors(tmp_path: Path, test_set: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert ev.main([str(tmp_path / "empty"), "--test-set", str(test_set)]) == 2
    assert "no config.json" in capsys.readouterr().err
    run = tmp_path / "run"
    train.train(_tiny(), run, max_steps=1, progress=False, log=lambda _: None)
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    assert ev.main([str(run), "--test-set", str(test_set)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, sequences=np.zeros((3, 4), np.uint8))
    train.train(_tiny(), tmp_path / "run2", max_steps=1, progress=False, log=lambda _: None)
    assert ev.main([str(tmp_path / "run2"), "--test-set", str(bad)]) == 2
    assert "bad.npz" in capsys.readouterr().err


def test_quickstart_evaluates_a_deterministic_run_on_the_deterministic_test_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SPEC 4.3 and 5.1: deterministic Moving MNIST is tested on its own 100-frame test set with one sample; the
    quickstart scored such a run on the stochastic 25-frame set, best of 20."""
    run = tmp_path / "runs" / "det"
    argv = ["--preset", "tiny", "--run-dir", str(run), "--deterministic", "true", "--max-steps", "1"]
    assert train.main(argv) == 0
    assert quickstart.main(["--run-dir", str(run), "--eval-sequences", "2"]) == 0
    assert "the paper's protocol" not in capsys.readouterr().out
    test_set = tmp_path / "runs" / "data" / "mmnist_test_embedded_100.npz"
    assert [p.name for p in (tmp_path / "runs" / "data").iterdir()] == [test_set.name]
    assert ev.load_sequences(test_set).shape[0] == 100
    result = json.loads((run / "eval" / "mmnist_test_embedded_100_n1.json").read_text())
    assert result["protocol"]["n_samples"] == 1 and result["protocol"]["nt_gen"] == 100


def test_quickstart_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The documented test-set command has already made RUN_DIR/../data/ (a folder): quickstart adds its file.
    data = tmp_path / "runs" / "data"
    assert data_cli.main(["smmnist-test-set", "--mnist-dir", "embedded", "--seq-len", "2", "--out", f"{data}/"]) == 0
    run = tmp_path / "runs" / "q"
    args = ["--run-dir", str(run), "--preset", "tiny", "--max-steps", "2", "--eval-sequences", "3", "--n-samples", "2"]
    assert quickstart.main(args) == 0
    out = capsys.readouterr().out
    assert "copy_last" in out and "gif" in out
    gif = run / "eval" / "smmnist_test_embedded_25_n2_samples.gif"
    assert f"{gif} (rows: test sequences; columns: truth, best and worst sample by PSNR, a random sample; red" in out
    # What differs from the paper's evaluation is said with the command that runs it.
    paper = "the paper's protocol (best of 100, every test sequence, float32; these results: best of 2, 3 sequences"
    assert paper in out
    assert sorted(p.name for p in data.iterdir()) == ["smmnist_test_2digits_64.npz", "smmnist_test_embedded_25.npz"]
    assert (run / "eval" / "smmnist_test_embedded_25_n2.json").exists()
    # Running it again resumes the unfinished run instead of starting over.
    assert quickstart.main([*args[:4], "--max-steps", "4", *args[6:]]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
    # The results replaced say which weights they are of (review finding: they did not).
    result = json.loads((run / "eval" / "smmnist_test_embedded_25_n2.json").read_text())
    assert result["checkpoint"] == {"name": "last", "file": str(run / "checkpoints" / "last.pt"), "step": 4}
    assert result["data"] == {"dataset": "smmnist", "test_set": str(data / "smmnist_test_embedded_25.npz")}
    # The keys of evaluate's results, and the command that wrote them (review finding: the quickstart's had neither).
    assert result["provenance"]["command"] == ["python", "-m", "examples.srvp.quickstart", *args[:4], "--max-steps",
                                               "4", *args[6:]]  # fmt: skip
    assert "not computed by the quickstart" in result["lpips"]["skipped"] == result["fvd"]["skipped"]
    assert "skipped" not in capsys.readouterr().out


@pytest.mark.parametrize(("stopped", "status", "hint"), [
    ("interrupted", 130, "run this command again to resume"),
    ("terminated", 143, "run this command again to resume"),
    ("nan", 1, "the loss diverged; see"),
])  # fmt: skip
def test_quickstart_does_not_evaluate_a_run_stopped_by_a_signal_or_a_diverged_loss(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stopped: str,
    status: int,
    hint: str,
) -> None:
    """Ctrl-C or SIGTERM during training asks the command to end, not to evaluate a half-trained model (the
    quickstart used to go on to a minute of evaluation); a time budget's stop is the normal end and evaluates."""

    def one_step_then(cfg: TrainConfig, run_dir: Path, **kwargs: object) -> train.TrainResult:
        _quiet(cfg, run_dir, max_steps=1)
        return train.TrainResult(run_dir, 1, [0.0], None, stopped)

    monkeypatch.setattr(quickstart, "train", one_step_then)
    run = tmp_path / "runs" / "q"
    assert (
        quickstart.main(["--run-dir", str(run), "--preset", "tiny", "--eval-sequences", "2", "--n-samples", "1"])
        == status
    )
    assert f"training stopped at step 1 ({stopped}): {hint}" in capsys.readouterr().err
    assert not (run / "eval").exists()


def test_quickstart_checks_its_options_first_and_honours_minutes_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "runs" / "q"
    for flag, value, message in (
        ("--n-samples", "0", "--n-samples: expected an int >= 1, got 0"),
        ("--eval-sequences", "-1", "--eval-sequences: expected an int >= 0 (0: all), got -1"),
        ("--minutes", "-2", "--minutes: expected a finite number >= 0, got -2.0"),
    ):
        assert quickstart.main(["--run-dir", str(run), "--preset", "tiny", flag, value]) == 2
        assert message in capsys.readouterr().err
        assert not run.exists()  # rejected before any training
    _quiet(_tiny(), run, max_steps=2)
    seen: list[TrainConfig] = []
    monkeypatch.setattr(quickstart, "train", lambda cfg, *a, **k: seen.append(cfg))
    args = ["--run-dir", str(run), "--minutes", "0.5", "--eval-sequences", "2", "--n-samples", "1"]
    assert quickstart.main([*args, "--preset", "smmnist"]) == 0
    assert seen and seen[0].max_minutes == 0.5 and seen[0].model == _tiny().model
    assert "--preset smmnist is ignored" in capsys.readouterr().out


def test_readme_python_example_runs() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_commands_are_the_ones_ci_runs() -> None:
    text = (ROOT / "README.md").read_text()
    bash = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert any('pip install -e ".[test]"' in b and "pytest" in b for b in bash)
    assert any('pip install -e ".[examples]"' in b and "examples.srvp.quickstart" in b for b in bash)
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'readme_cmd "pytest"' in ci and 'readme_cmd "examples.srvp.quickstart"' in ci


def test_bad_data_dir_leaves_no_half_made_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (run / "config.json").exists()


def test_infer_checks_user_given_frame_indices_once() -> None:
    torch.manual_seed(0)
    model = SRVP(_tiny().model).init_weights()
    x = torch.rand(4, 2, 1, 64, 64)
    with pytest.raises(ValueError, match="content_indices: expected frame indices in"):
        model.infer(x, content_indices=torch.tensor([[0, 4], [1, 2]]))
    with pytest.raises(ValueError, match="skip_index: expected size 2"):
        model.infer(x, skip_index=torch.tensor([0, 1, 2]))


# ------------------------------------------------------------------------------------ evaluation in chunks
# tiny_run (tests/conftest.py): the tiny preset after 4 training steps (best.pt of step 3, last.pt of step 4).


def _protocol(**changes: int) -> ev.EvalProtocol:
    values = dict(nt_cond=2, nt_gen=6, n_samples=5, n_substeps=1, batch_size=3, seed=1, max_sequences=0)
    return ev.EvalProtocol(**{**values, **changes})


def _clips(n: int, size: int = 64, t: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (t, n, 1, size, size), generator=torch.Generator().manual_seed(seed)).to(torch.uint8)


def _public(result: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in result.items() if not k.startswith("_") and k not in ("throughput", "sample_chunk")}


def test_evaluate_predicts_in_chunks_with_the_same_results(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """predict sees at most sample_chunk·B sequences per call, and the chunked evaluation draws and scores the
    samples of the one-call evaluation (same seed): same best/worst scores, curves and GIF frames."""
    model = load_model(tiny_run, "last")
    calls: list[tuple[int, int]] = []
    predict = model.predict

    def spy(cond: torch.Tensor, n_future: int, n_samples: int, **kwargs: object) -> object:
        calls.append((n_samples, cond.shape[1]))
        return predict(cond, n_future, n_samples, **kwargs)

    monkeypatch.setattr(model, "predict", spy)
    clips = _clips(7)
    whole = ev.evaluate(model, clips, _protocol(), progress=False, sample_chunk=5)
    assert calls == [(5, 3), (5, 3), (5, 1)]  # the unchunked path: one call of N·B per batch
    calls.clear()
    chunked = ev.evaluate(model, clips, _protocol(), progress=False, sample_chunk=2)
    assert calls == [(2, 3), (2, 3), (1, 3)] * 2 + [(2, 1), (2, 1), (1, 1)]
    assert chunked["sample_chunk"] == 2 and whole["sample_chunk"] == 5
    assert whole["metrics"]["psnr"]["mean"] != whole["worst_sample"]["psnr"]["mean"]  # samples do differ
    _assert_nested_close(_public(chunked), _public(whole))
    for m in ("psnr", "ssim"):
        np.testing.assert_allclose(chunked["_per_sequence"][m], whole["_per_sequence"][m], rtol=1e-6)
    for key, frames in whole["_gif"].items():
        torch.testing.assert_close(chunked["_gif"][key], frames, rtol=0, atol=1e-5)
    # The automatic chunk: about CHUNK_FRAMES predicted frames per call.
    calls.clear()
    auto = ev.evaluate(model, clips, _protocol(n_samples=40, batch_size=7), progress=False)
    per_call = ev.CHUNK_FRAMES // (7 * 4)
    assert auto["sample_chunk"] == per_call and max(n for n, _ in calls) == per_call
    assert sum(n for n, _ in calls) == 40


def _assert_nested_close(a: object, b: object, where: str = "result") -> None:
    """Same structure; numbers equal within rounding (relative 1e-6)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_nested_close(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_nested_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9), where
    else:
        assert a == b, where


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_running_best_of_n_over_chunks_is_best_of_n(higher_is_better: bool) -> None:
    """Merging the chunks' best and worst samples gives best_of_n over all N at once, ties included."""
    from latentdyn.video.metrics import best_of_n

    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (7, 5, 4), generator=gen).double()  # many ties between samples
    frames = torch.rand(7, 4, 5, 1, 2, 2, generator=gen)
    ref = best_of_n(scores, higher_is_better=higher_is_better, layout="n b t")
    for chunk in (1, 2, 3, 7):
        sel = ev._RunningBestOfN(higher_is_better, {"frames": lambda c: c.movedim(1, 0)})
        for lo in range(0, 7, chunk):
            sel.update(lo, scores[lo : lo + chunk], frames[lo : lo + chunk])
        for side, index, value, curve in (
            (sel.best, ref.best_index, ref.best, ref.best_curve),
            (sel.worst, ref.worst_index, ref.worst, ref.worst_curve),
        ):
            assert torch.equal(side["index"], index) and torch.equal(side["value"], value)
            assert torch.equal(side["curve"], curve)
            for b in range(5):
                assert torch.equal(side["frames"][b], frames[int(index[b]), :, b])


def test_evaluate_checks_its_arguments(tiny_run: Path) -> None:
    model = load_model(tiny_run, "last")
    clips = _clips(3)
    with pytest.raises(TypeError, match=r"sequences: expected uint8 frames .* got dtype torch.float32"):
        ev.evaluate(model, clips.float() / 255, _protocol(), progress=False)
    with pytest.raises(TypeError, match=r"sequences: expected a uint8 tensor \(T, N, C, H, W\), got ndarray"):
        ev.evaluate(model, clips.numpy(), _protocol(), progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"sequences: expected at least one test clip \(N >= 1\), got shape"):
        ev.evaluate(model, clips[:, :0], _protocol(), progress=False)
    with pytest.raises(ValueError, match=r"sequences: expected 5 dimensions"):
        ev.evaluate(model, clips[:, 0], _protocol(), progress=False)
    with pytest.raises(ValueError, match=r"sequences: expected size 64 for axis 'h' .* got shape \[6, 3, 1, 32, 32\]"):
        ev.evaluate(model, _clips(3, size=32), _protocol(), progress=False)
    with pytest.raises(ValueError, match=r"sample_chunk: expected an int >= 1, got 0"):
        ev.evaluate(model, clips, _protocol(), progress=False, sample_chunk=0)
    with pytest.raises(ValueError, match=r"protocol.nt_cond: .* at least 2 conditioning frames, got 1"):
        ev.evaluate(model, clips, _protocol(nt_cond=1), progress=False)
    with pytest.raises(ValueError, match=r"protocol.max_sequences: expected an int >= 0, got -1"):
        _protocol(max_sequences=-1)
    with pytest.raises(ValueError, match=r"protocol.n_substeps: expected an int >= 1, got 0"):
        _protocol(n_substeps=0)
    with pytest.raises(ValueError, match=r"protocol.nt_gen: expected more than nt_cond=2 frames"):
        _protocol(nt_gen=2)
    with pytest.raises(ValueError, match=r"max_sequences: expected an int >= 0, got -1"):
        ev.load_test_clips("smmnist", "unused.npz", nt_gen=6, max_sequences=-1)
    with pytest.raises(ValueError, match=r"protocol.nt_gen: the test clips have 6 frames, fewer than nt_gen=7"):
        ev.evaluate(model, clips, _protocol(nt_gen=7), progress=False)
    with pytest.raises(ValueError, match=r"amp: expected one of 'none', 'bf16', got 'fp16'"):
        ev.evaluate(model, clips, _protocol(), progress=False, amp="fp16")  # ran in float32 before
    with pytest.raises(TypeError, match=r"n_gif: expected an int >= 0, got float 1.5"):
        ev.evaluate(model, clips, _protocol(), progress=False, n_gif=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"lpips_chunk: expected an int >= 1, got 0"):
        ev.evaluate(model, clips, _protocol(), progress=False, lpips_chunk=0)
    with pytest.raises(ValueError, match=r"state_file: expected a file name, got the directory"):
        ev.evaluate(model, clips, _protocol(), progress=False, state_file=tiny_run)
    with pytest.raises(ValueError, match=r"fvd_samples: expected an int >= 1, got 0"):
        ev.evaluate(model, clips, _protocol(), progress=False, fvd_samples=0)
    n = _protocol().n_samples
    with pytest.raises(ValueError, match=rf"fvd_samples: expected at most protocol.n_samples \({n}\) samples to "):
        ev.evaluate(model, clips, _protocol(), progress=False, fvd_network=torch.nn.Identity(), fvd_samples=n + 1)
    with pytest.raises(ValueError, match=r"fvd_samples: 2 samples to score by FVD, but no fvd_network is given"):
        ev.evaluate(model, clips, _protocol(), progress=False, fvd_samples=2)
    # uint8 frames are divided by 255 once: the black predictor's PSNR, computed here with numpy. The
    # evaluation seeds its own draws and leaves the caller's random stream where it was.
    torch.manual_seed(123)
    expected_draw = torch.rand(3, generator=torch.Generator().manual_seed(123))
    result = ev.evaluate(model, clips, _protocol(), progress=False)
    assert torch.equal(torch.rand(3), expected_draw)
    future = clips[2:6].double().numpy() / 255
    expected = (10 * np.log10(1 / (future**2).mean(axis=(2, 3, 4)))).mean(0).mean()
    assert result["reference_predictors"]["black"]["psnr"]["mean"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-sequences", "-1"], "--max-sequences: expected an int >= 0 (0: all), got -1"),
        (["--nt-cond", "0"], "--nt-cond: expected an int >= 1, got 0"),
        (["--nt-cond", "-1"], "--nt-cond: expected an int >= 1, got -1"),
        (["--nt-cond", "1"], "--nt-cond: the model infers y_0 and its content from n_inference_frames=2 frames"),
        (["--n-substeps", "0"], "--n-substeps: expected an int >= 1, got 0"),
        (["--n-substeps", "-1"], "--n-substeps: expected an int >= 1, got -1"),
        (["--nt-gen", "0"], "--nt-gen: expected an int >= 2, got 0"),
        (["--sample-chunk", "0"], "--sample-chunk: expected an int >= 1, got 0"),
    ],
)
def test_evaluate_cli_rejects_bad_counts_before_starting(
    tiny_run: Path, test_set: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No value is silently replaced by the run's, and no error shows up in the middle of a progress bar."""
    assert ev.main([str(tiny_run), "--test-set", str(test_set), "--n-samples", "2", *flags]) == 2
    captured = capsys.readouterr()
    # One line: the error alone, no progress bar (tqdm writes to stderr) and nothing printed before it.
    assert captured.err.startswith(f"error: {message}") and len(captured.err.strip().splitlines()) == 1
    assert captured.out == ""


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [("smmnist", "last"), ("bair", "last"), ("folder", "last"), ("kth", "best"), ("human36m", "best"), (None, "last")],
)
def test_default_checkpoint_follows_the_paper_protocol(dataset: str | None, expected: str) -> None:
    """SPEC 4.3: test.py loads model.pt unless told otherwise; the official README passes model_best.pt for KTH and
    Human3.6M only."""
    assert paper_checkpoint({"model": {}, "train": {"dataset": dataset}}) == expected
    assert paper_checkpoint({"model": {}}) == "last"


def test_default_checkpoint_is_the_only_one_a_run_has(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert default_checkpoint(run, read_run_config(run)) == "last"  # an SM-MNIST run with both checkpoints
    (run / "checkpoints" / "last.pt").unlink()
    assert default_checkpoint(run, read_run_config(run)) == "best"  # as a run imported by `official convert`


def test_evaluate_outputs_name_the_checkpoint_and_step(
    tiny_run: Path, test_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))  # (evaluate writes into run/eval)
    argv = [str(run), "--test-set", str(test_set), "--n-samples", "1", "--max-sequences", "2", "--nt-gen", "4"]
    assert ev.main([*argv, "--checkpoint", "best"]) == 0
    assert ev.main([*argv, "--checkpoint", "last"]) == 0
    capsys.readouterr()
    names = {}
    for which in ("best", "last"):
        step = load_checkpoint(run / "checkpoints" / f"{which}.pt")["step"]
        names[which] = f"test_{which}_step{step}_n1_t4_dt1"
        result = json.loads((run / "eval" / f"{names[which]}.json").read_text())
        assert result["checkpoint"]["name"] == which and result["checkpoint"]["step"] == step
    assert names["best"] != names["last"]


def test_per_sequence_scores_are_written_atomically(
    tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_model(tiny_run, "last")
    result = ev.evaluate(model, _clips(2), _protocol(n_samples=2), progress=False)
    paths = ev.write_outputs(result, tmp_path, "x")
    before = paths["per_sequence"].read_bytes()

    def broken(file: object, **arrays: object) -> None:
        assert hasattr(file, "write")  # written to an open temporary file, not to the final path
        file.write(b"partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        ev.write_outputs(result, tmp_path, "x")
    assert paths["per_sequence"].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_missing_weights_messages_name_the_cli_flags(
    tiny_run: Path, test_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from latentdyn.video.fvd import I3D_ENV_VAR
    from latentdyn.video.lpips import ALEXNET_ENV_VAR, LPIPS_ENV_VAR, AlexNetFeatures

    for var in (ALEXNET_ENV_VAR, LPIPS_ENV_VAR, I3D_ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))  # (evaluate writes into run/eval)
    argv = [str(run), "--test-set", str(test_set), "--n-samples", "1", "--max-sequences", "2", "--fvd"]
    assert ev.main([*argv, "--name", "noweights"]) == 0
    out, err = capsys.readouterr()  # (the notes go to stderr, the results to stdout)
    assert "LPIPS skipped: AlexNet ImageNet weights not found" in err and "pass --lpips-alexnet /path/to/" in err
    assert "FVD skipped: I3D Kinetics-400 weights not found" in err and "pass --i3d-weights /path/to/" in err
    assert "alexnet_path" not in out + err and "path='" not in out + err
    # The whole reason once, before the evaluation; its first sentence under the results.
    assert (out + err).count("pass --lpips-alexnet") == 1 and (out + err).count("pass --i3d-weights") == 1
    assert (
        "LPIPS skipped: AlexNet ImageNet weights not found (the whole reason: above, and in the JSON)\n"
        "FVD skipped: I3D Kinetics-400 weights not found (the whole reason: above, and in the JSON)\n"
    ) in out
    # Only a reason printed before is cut short: one that arose during the evaluation is printed whole (review).
    saved = json.loads(next((run / "eval").glob("noweights*.json")).read_text())
    saved["fvd"] = {"skipped": "FVD failed: out of memory. Tried to allocate 2 GiB"}
    printed = {"lpips": saved["lpips"]["skipped"], "fvd": "I3D Kinetics-400 weights not found. Get them"}
    table = ev.format_results(saved, said=printed)
    assert "FVD skipped: FVD failed: out of memory. Tried to allocate 2 GiB\n" in table
    assert "LPIPS skipped: AlexNet ImageNet weights not found (the whole reason: above, and in the JSON)" in table
    # A metric skipped by choice is no news: not printed (the JSON says why).
    assert ev.main([*argv[:-1], "--name", "chosen", "--no-lpips"]) == 0
    out, err = capsys.readouterr()
    assert "skipped" not in out + err
    saved = json.loads(next((run / "eval").glob("chosen*.json")).read_text())
    assert saved["lpips"] == {"skipped": "--no-lpips was given"} and "not requested" in saved["fvd"]["skipped"]
    # A weights file the user names but that cannot be read is an error, reported before anything is computed.
    missing = str(tmp_path / "missing.pth")
    assert ev.main([*argv, "--name", "badpaths", "--lpips-alexnet", missing]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: --lpips-alexnet: AlexNet ImageNet weights file '{missing}' does not exist\n"
    assert captured.out == ""
    assert ev.main([*argv, "--name", "badpaths", "--no-lpips", "--i3d-weights", missing]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: --i3d-weights: I3D Kinetics-400 weights file '{missing}' does not exist\n"
    assert captured.out == ""
    alexnet = tmp_path / "alexnet.pth"
    torch.save(AlexNetFeatures().state_dict(), alexnet)
    assert ev.main([*argv, "--name", "badlin", "--lpips-alexnet", str(alexnet), "--lpips-lin", missing]) == 2
    assert f"--lpips-lin: LPIPS v0.1 linear weights file '{missing}' does not exist" in capsys.readouterr().err
    # No results written (only the lock each evaluation holds on its name, which stays, as training's .lock).
    assert not list((run / "eval").glob("[!.]*badpaths*")) and not list((run / "eval").glob("[!.]*badlin*"))


# ---------------------------------------------------------------------------------- official output files
class BinaryPredictor(FrameModel):
    """A stand-in model with exact uint8 frames: each predicted pixel is 0 or 1 (the sign of its noise), and
    the conditioning reconstructions are 0.999 everywhere (255 · 0.999 truncates to 254)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = dataclasses.replace(_tiny().model, image_size=32)
        self.encoder = torch.nn.Identity()

    def predict(
        self, cond: torch.Tensor, n_future: int, n_samples: int = 1, *, sampler: Any = None, **kwargs: Any
    ) -> Prediction:
        tc, b = self.check_frames(cond, "cond_frames")
        size = self.config.image_size
        loc = torch.zeros(n_samples * b, n_future * size * size)
        draw = sampler if sampler is not None else default_sampler(kwargs.get("sample", True))
        noise = draw(diag_gaussian(loc, torch.ones_like(loc)), "y0")
        pattern = "(n b) (t c h w) -> n t b c h w"
        frames = rearrange((noise > 0).float(), pattern, n=n_samples, t=n_future, c=1, h=size)
        rec = torch.full((n_samples, tc, b, 1, size, size), 0.999) if kwargs.get("decode_cond", True) else None
        return Prediction(frames, rec, None, None, None)  # type: ignore[arg-type]


def _numpy_psnr(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Time-averaged PSNR of uint8 (N, T, H, W, C) samples against uint8 (N, T, H, W, C) truth: (N,)."""
    mse = ((samples / 255.0 - truth / 255.0) ** 2).mean(axis=(2, 3))  # (N, T, C)
    return (10 * np.log10(1 / mse)).mean(-1).mean(-1)


@pytest.mark.parametrize("n_samples", [4, 7])
def test_official_files_layout_and_best_samples(tmp_path: Path, n_samples: int) -> None:
    clips = _clips(5, size=32, t=7)  # nt_cond 2, nt_gen 6: 4 predicted frames, the clips' last frame unused
    protocol = _protocol(n_samples=n_samples, nt_gen=6, batch_size=2)
    result = ev.evaluate(BinaryPredictor(), clips, protocol, progress=False, official_files=True, sample_chunk=3)
    paths = ev.write_outputs(result, tmp_path, "run")
    folder = paths["official"]
    assert folder == tmp_path / "run_official"
    n_random = min(n_samples, 5)
    expected = {"results", "cond_rec", *(f"random_{i}" for i in range(1, n_random + 1))}
    expected |= {f"{m}_{side}" for m in ("psnr", "ssim") for side in ("best", "worst")}
    assert {p.stem for p in folder.iterdir()} == expected and not any(p.name.startswith(".") for p in folder.iterdir())
    results = dict(np.load(folder / "results.npz"))  # (dicts: the archives' files close at once)
    assert sorted(results) == ["psnr", "ssim"]
    assert results["psnr"].shape == (5,) and results["ssim"].shape == (5,)
    files = {name: dict(np.load(folder / f"{name}.npz")) for name in expected - {"results"}}
    for name, archive in files.items():
        assert list(archive) == ["samples"]
        t = 2 if name == "cond_rec" else 4  # conditioning reconstructions vs predicted frames only
        assert archive["samples"].dtype == np.uint8 and archive["samples"].shape == (5, t, 32, 32, 1), name
    assert (files["cond_rec"]["samples"] == 254).all()  # 0.999 · 255 truncated, as the official .byte()
    # The best-PSNR file holds, for every sequence, the sample whose PSNR is the reported best, and it is the
    # best of the random samples when they are all of them.
    truth = np.moveaxis(clips[2:6].numpy(), (0, 1, 2), (1, 0, 4))  # (N, Tf, H, W, C)
    best = _numpy_psnr(files["psnr_best"]["samples"], truth)
    np.testing.assert_allclose(best, results["psnr"], rtol=1e-5)
    randoms = np.stack([_numpy_psnr(files[f"random_{i}"]["samples"], truth) for i in range(1, n_random + 1)])
    worst = _numpy_psnr(files["psnr_worst"]["samples"], truth)
    assert (randoms <= best).all() and (worst <= randoms).all() and (worst < best).all()
    if n_samples <= 5:  # the random files hold every sample
        assert (randoms.max(0) == best).all() and (randoms.min(0) == worst).all()
        index = randoms.argmax(0)
        for b in range(5):
            assert np.array_equal(files["psnr_best"]["samples"][b], files[f"random_{index[b] + 1}"]["samples"][b])
    np.testing.assert_array_equal(np.load(paths["per_sequence"])["psnr"], results["psnr"])
    # The chunk size changes nothing: one call for all samples writes the same arrays.
    whole = ev.evaluate(BinaryPredictor(), clips, protocol, progress=False, official_files=True, sample_chunk=100)
    for name, arrays in whole["_official"].items():
        np.testing.assert_array_equal(arrays, result["_official"][name], err_msg=name)
    for m, values in whole["_per_sequence"].items():
        np.testing.assert_allclose(values, result["_per_sequence"][m], rtol=1e-6)


def test_save_official_files_flag(
    tiny_run: Path, test_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))  # (evaluate writes into run/eval)
    argv = [str(run), "--test-set", str(test_set), "--n-samples", "2", "--max-sequences", "3"]
    assert ev.main([*argv, "--nt-gen", "5", "--name", "off", "--save-official-files"]) == 0
    folder = run / "eval" / "off_official"
    assert str(folder) in capsys.readouterr().out
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        ["results.npz", "cond_rec.npz", "random_1.npz", "random_2.npz"]
        + [f"{m}_{s}.npz" for m in ("psnr", "ssim") for s in ("best", "worst")]
    )
    assert np.load(folder / "cond_rec.npz")["samples"].shape == (3, 2, 64, 64, 1)
    assert np.load(folder / "psnr_best.npz")["samples"].shape == (3, 3, 64, 64, 1)
    assert ev.main([*argv, "--nt-gen", "5", "--name", "plain"]) == 0
    assert not (run / "eval" / "plain_official").exists()


def test_auto_resume_makes_one_command_for_a_requeued_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same command starts the run, continues it after a stop (a requeued job runs its command again), and
    does nothing more once it is done; a command whose configuration differs is refused, naming the options."""
    run = tmp_path / "run"
    argv = ["--preset", "tiny", "--run-dir", str(run), "--auto-resume", "--lr-burnin", "3"]
    assert train.main([*argv, "--max-steps", "2"]) == 0  # a new run, stopped at step 2
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert train.main([*argv, "--max-steps", "4"]) == 0  # the same command continues it (max steps is runtime)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
    assert train.main(argv) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 5  # lr_burnin 3 + lr_decay 2: done
    straight = tmp_path / "straight"
    assert train.main(["--preset", "tiny", "--run-dir", str(straight), "--lr-burnin", "3"]) == 0
    assert _same_weights(run, straight)
    assert train.main(argv) == 0  # done: nothing more
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 5
    capsys.readouterr()
    assert train.main([*argv[:-1], "4", "--noise-size", "2"]) == 2
    err = capsys.readouterr().err
    assert f"--auto-resume: {run} holds a run of another configuration" in err
    assert "--noise-size saved 3 vs given 2" in err and "--lr-burnin saved 3 vs given 4" in err
    with pytest.raises(SystemExit):
        train.main(["--resume", str(run), "--auto-resume"])
    assert "--auto-resume goes with --run-dir DIR" in capsys.readouterr().err


def test_auto_resume_recognises_its_run_whatever_form_the_data_dir_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config.json keeps data_dir absolute; the same command, with a relative path or a trailing slash, is the
    same run."""
    from PIL import Image

    for name, level in (("a", 10), ("b", 60), ("c", 120)):
        (tmp_path / "videos" / name).mkdir(parents=True)
        for t in range(8):
            frame = np.full((16, 16), level, dtype=np.uint8)
            frame[:, t] = 255
            Image.fromarray(frame).save(tmp_path / "videos" / name / f"frame{t}.png")
    monkeypatch.chdir(tmp_path)
    argv = ["--preset", "tiny", "--run-dir", "run", "--auto-resume", "--dataset", "folder", "--threads", "1"]
    assert train.main([*argv, "--data-dir", "videos", "--max-steps", "1"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["data_dir"] == str(tmp_path / "videos")
    assert train.main([*argv, "--data-dir", "videos/", "--max-steps", "2"]) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


@pytest.mark.usefixtures("signals_fail_outside_train")
def test_a_repeated_sigterm_during_the_stops_checkpoint_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchrun passes a job's SIGTERM on to the ranks a second time, possibly once the loop has ended: the
    stop's handlers stay until its checkpoint is written (no periodic checkpoint at step 2 here)."""
    import os
    import signal

    cfg = dataclasses.replace(_tiny(), checkpoint_interval=100)
    original_loss, original_rng = SRVP.loss_terms, train._rank_rng_states
    calls: list[int] = []

    def signalled(self: SRVP, x: torch.Tensor, out: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_loss(self, x, out)  # type: ignore[arg-type]

    def signalled_again(*args: object) -> object:
        os.kill(os.getpid(), signal.SIGTERM)  # in the middle of save_last
        return original_rng(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(SRVP, "loss_terms", signalled)
    monkeypatch.setattr(train, "_rank_rng_states", signalled_again)
    result = _quiet(cfg, tmp_path / "run")
    assert result.stopped == "terminated" and result.step == 2
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


# ------------------------------------------------------------- pinned by a hand-run mutation test (session 11)
def test_a_repeated_lr_change_is_recorded_once(tmp_path: Path) -> None:
    """A resume whose --lr change had no checkpoint yet applies it again; config.json lists it once."""
    (tmp_path / "config.json").write_text(json.dumps({"model": {}, "train": {"lr": 0.002}}))
    train._record_lr_change(tmp_path, 100, 0.002, 0.001)
    train._record_lr_change(tmp_path, 100, 0.002, 0.001)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["lr"] == 0.001
    assert saved["lr_changes"] == [{"step": 100, "from": 0.002, "to": 0.001}]
    train._record_lr_change(tmp_path, 200, 0.001, 0.0005)
    assert len(json.loads((tmp_path / "config.json").read_text())["lr_changes"]) == 2


def test_a_tied_validation_score_keeps_the_earlier_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a strictly better score replaces best.pt: ties (a capped PSNR, a run that stopped learning) keep the
    earlier model."""
    from examples.srvp.checkpoint import load_checkpoint

    scores = iter([10.0, 10.0])
    monkeypatch.setattr(train, "validate", lambda *args: next(scores))
    run = tmp_path / "run"
    result = train.train(PRESETS["tiny"](), run, progress=False, log=lambda _: None)  # validations at steps 3, 6
    assert result.step == 6 and result.best_val_psnr == 10.0
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == 3


@pytest.mark.parametrize("tail", ['{"step": 4', '{"step": 15}'], ids=["cut-line", "line-without-newline"])
def test_a_resume_keeps_the_log_entries_up_to_its_checkpoint_step(tmp_path: Path, tail: str) -> None:
    """Entries up to and including the resumed step stay (checkpoints fall on logged steps); later ones go, and so
    does a last line without its newline, even a parseable one, which the next append would join."""
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (10, 20, 30)) + tail)
    train._Logger(tmp_path, enabled=True, resume_step=20).close()
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [10, 20]


# ------------------------------------------------------------------------- paths no other test took (coverage)
def test_the_best_checkpoint_of_a_run_without_one_is_its_last(tiny_run: Path, tmp_path: Path) -> None:
    """``load_model(run, "best")`` before any validation made best.pt loads last.pt (the fixture's step 4)."""
    from examples.srvp.checkpoint import checkpoint_path, load_model_and_step

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "checkpoints" / "best.pt").unlink()
    assert checkpoint_path(run, "best") == run / "checkpoints" / "last.pt"
    assert load_model_and_step(run, "best")[1] == 4
    (run / "checkpoints" / "last.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"^run_dir: no checkpoint best\.pt \(?or last\.pt\)? in "):
        checkpoint_path(run, "best")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_train_cli_refuses_an_accelerator_this_machine_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str
) -> None:
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--device", device]) == 2
    err = capsys.readouterr().err
    if device.startswith("cuda"):
        build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        expected = f"error: --device: {device!r} is not available ({build}, torch {torch.__version__}); use 'cpu'"
    else:
        expected = f"error: --device: {device!r} is not available on this machine; use 'cpu' or 'cuda'"
    assert err.strip() == expected
    assert not run.exists()


def test_resolve_device_refuses_what_is_not_a_device_name() -> None:
    from examples.srvp.config import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(TypeError, match=r"^--device: expected a device name such as 'cpu' or 'cuda', got int$"):
        resolve_device(0)  # type: ignore[arg-type]


def test_train_cli_reads_bool_options_as_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = train.build_parser()
    for word, value in (("yes", True), ("ON", True), ("1", True), ("false", False), ("Off", False), ("0", False)):
        parsed = {k.rpartition(".")[2]: v for k, v in vars(parser.parse_args(["--deterministic", word])).items()}
        assert parsed["deterministic"] is value, word
    with pytest.raises(SystemExit) as e:
        train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--deterministic", "maybe"])
    assert e.value.code == 2
    assert "argument --deterministic: expected true/false, got 'maybe'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_train_cli_needs_a_run_directory(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        train.main(["--preset", "tiny"])
    assert e.value.code == 2
    assert "error: give --run-dir DIR for a new run, or --resume RUN_DIR" in capsys.readouterr().err


def test_train_cli_ends_a_file_system_error_or_a_ctrl_c_in_set_up_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    full = tmp_path / "run" / "checkpoints" / "last.pt"

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(full))

    monkeypatch.setattr(train, "train", disk_full)
    run = tmp_path / "my run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run)]) == 2
    assert capsys.readouterr().err == f"error: No space left on device: {full}\n"

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train", ctrl_c)
    try:
        status = train.main(["--preset", "tiny", "--run-dir", str(run)])
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped train.main")
    assert status == 130
    err = capsys.readouterr().err
    assert err.strip() == (  # (no config.json: --resume would find no run)
        f"interrupted; no run was made in {run} yet (it has no config.json); start it with the same command again: "
        f"python -m examples.srvp.train --preset tiny --run-dir '{run}'"
    )
    run.mkdir()
    (run / "config.json").write_text("{}")  # once the run exists, --resume continues it
    assert train.main(["--preset", "tiny", "--run-dir", str(run)]) == 130
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"interrupted; continue from the last checkpoint with: python -m examples.srvp.train --resume '{run}'"
    )


def test_ctrl_c_in_a_new_runs_set_up_prints_a_command_that_starts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: Ctrl-C while a new run read its data or built its model (seconds on a busy machine), before
    its config.json existed, printed ``--resume RUN_DIR``, which then failed (no run to resume). The command it
    prints now starts the run; a Ctrl-C in a resume's set-up prints the same command, which continues it."""
    import shlex

    build_model = train.build_model
    building: list[int] = []

    def ctrl_c_while_building(*args: Any, **kwargs: Any) -> Any:
        building.append(1)
        if len(building) == 1:
            raise KeyboardInterrupt
        return build_model(*args, **kwargs)

    monkeypatch.setattr(train, "build_model", ctrl_c_while_building)
    run = tmp_path / "new run"
    argv = ["--preset", "tiny", "--run-dir", str(run), "--max-steps", "1", "--threads", "1"]
    assert train.main(argv) == 130
    command = capsys.readouterr().err.strip().split("start it with the same command again: ")[1]
    assert not (run / "config.json").exists() and shlex.split(command)[3:] == argv
    assert train.main(shlex.split(command)[3:]) == 0  # the printed command starts the run
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1

    # Ctrl-C in the set-up of a resume: the same command continues the run, with its options (a bare --resume
    # RUN_DIR dropped --lr, which config.json then still held at the run's former rate).
    building.clear()
    resume_argv = ["--resume", str(run), "--max-steps", "2", "--lr", "1e-4"]
    assert train.main(resume_argv) == 130
    hint = capsys.readouterr().err.strip().splitlines()[-1]
    again = shlex.join(["python", "-m", "examples.srvp.train", *resume_argv])
    assert hint == f"interrupted; continue from the last checkpoint with the same command again: {again}"
    assert train.main(shlex.split(hint.split("again: ")[1])[3:]) == 0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 2 and state["config"]["train"]["lr"] == 1e-4


def test_a_batch_that_does_not_split_over_the_processes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torchrun (WORLD_SIZE=2) each process takes half of every batch: an odd batch size is refused before
    any process group is made or anything written."""
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    cfg = dataclasses.replace(_tiny(), batch_size=3)
    with pytest.raises(ValueError, match=r"^--batch-size: 3 does not split over 2 processes$"):
        _quiet(cfg, tmp_path / "run")
    assert not torch.distributed.is_initialized()
    assert not (tmp_path / "run" / "config.json").exists()


def test_quickstart_evaluates_a_run_already_trained_without_training_it(
    tiny_cli_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # train.main(["--preset", "tiny", "--run-dir", run, "--lr-burnin", "2", "--lr-decay", "1"]), copied: the
    # quickstart writes into run/eval.
    run = Path(shutil.copytree(tiny_cli_run, tmp_path / "runs" / "q"))

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(quickstart, "train", no_training)
    assert quickstart.main(["--run-dir", str(run), "--eval-sequences", "2", "--n-samples", "1"]) == 0
    assert f"{run} is already trained (3 steps); evaluating it" in capsys.readouterr().out  # 2 + 1 steps
    result = json.loads((run / "eval" / "smmnist_test_embedded_25_n1.json").read_text())
    assert result["checkpoint"]["step"] == 3


def test_quickstart_removes_what_a_killed_one_left_half_written_and_locks_its_results(
    tiny_cli_run: Path,
    test_set: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review finding: a quickstart killed while it wrote the sample GIF (or another output) left its hidden
    temporary file, which no later run removed: it took no lock on its results and cleaned nothing. It now locks
    them as evaluate does (a second one at once is refused) and removes every output's temporaries."""
    from examples.srvp.checkpoint import FileLock

    run = Path(shutil.copytree(tiny_cli_run, tmp_path / "runs" / "q"))  # (the whole schedule: nothing to train)
    monkeypatch.setattr(quickstart, "ensure_test_set", lambda *args, **kwargs: test_set)  # (8 frames: fast)
    eval_dir = run / "eval"
    eval_dir.mkdir()
    name = f"{test_set.stem}_n1"  # the quickstart's name: test set and samples
    stale = [
        eval_dir / f".{name}_samples.gif.ab12cd34.tmp",
        eval_dir / f".{name}.json.zz9_zz9z.tmp",
        eval_dir / f".{name}_curves.png.0123abcd.tmp.png",
        eval_dir / f".{name}_per_sequence.npz.a1b2c3d4.tmp",
    ]
    kept = [eval_dir / f".{name}_n2_samples.gif.ab12cd34.tmp", eval_dir / f"notes.{name}.json.tmp"]
    for path in [*stale, *kept]:
        path.write_bytes(b"half-written")
    argv = ["--run-dir", str(run), "--eval-sequences", "2", "--n-samples", "1"]
    assert quickstart.main(argv) == 0
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
    assert (eval_dir / f"{name}_samples.gif").is_file()
    capsys.readouterr()
    other = FileLock()  # another quickstart (or evaluate --name) writing these results now
    other.acquire(eval_dir / f".{name}.lock", "test", busy="")
    try:
        assert quickstart.main(argv) == 2
    finally:
        other.release()
    err = capsys.readouterr().err
    assert f"error: --run-dir: another evaluation (process {os.getpid()}) is writing the results named {name} " in err
    assert err.rstrip().endswith("; wait for it to end")


def test_quickstart_notes_an_ignored_preset_only_when_it_is_not_the_runs(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: rerunning ``quickstart --preset tiny`` on a tiny run said "--preset tiny is ignored": the
    note compared the flag with its default, not with the run's configuration."""
    run = Path(shutil.copytree(tiny_run, tmp_path / "runs" / "q"))  # train(PRESETS["tiny"]()), 4 of 6 steps

    def ctrl_c(*args: object, **kwargs: object) -> None:  # (the note comes before the training)
        raise KeyboardInterrupt

    monkeypatch.setattr(quickstart, "train", ctrl_c)
    monkeypatch.setattr(quickstart, "ensure_test_set", lambda path, *a, **k: path)
    notes = []
    for given in (["--preset", "tiny"], ["--preset=tiny"], [], ["--preset", "smmnist-cpu"]):
        assert quickstart.main(["--run-dir", str(run), *given]) == 130
        notes.append([line for line in capsys.readouterr().out.splitlines() if "is ignored" in line])
    assert notes[:3] == [[], [], []]
    assert notes[3] == [
        f"note: {run} already holds a run of the tiny preset; --preset smmnist-cpu is ignored (its config.json rules)"
    ]


def test_quickstart_gives_a_new_run_its_minutes_and_ends_a_ctrl_c_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[TrainConfig] = []

    def ctrl_c_while_training(cfg: TrainConfig, *args: object, **kwargs: object) -> None:
        seen.append(cfg)
        raise KeyboardInterrupt

    monkeypatch.setattr(quickstart, "train", ctrl_c_while_training)
    monkeypatch.setattr(quickstart, "ensure_test_set", lambda path, *a, **k: path)  # (not needed before training)
    run = tmp_path / "runs" / "q"
    try:
        status = quickstart.main(["--run-dir", str(run), "--preset", "tiny", "--minutes", "0.25"])
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped quickstart.main")
    assert status == 130
    assert len(seen) == 1 and seen[0].max_minutes == 0.25 and seen[0].model == _tiny().model
    out, err = capsys.readouterr()
    assert f"training the 'tiny' preset into {run} (budget 0.25 min)" in out
    assert err == "\ninterrupted; run this command again to resume\n"


def test_quickstart_refuses_a_run_whose_config_json_has_an_unknown_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "q"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--max-steps", "1"]) == 0
    capsys.readouterr()
    config = json.loads((run / "config.json").read_text())
    config["train"]["warp_factor"] = 9
    (run / "config.json").write_text(json.dumps(config))
    assert quickstart.main(["--run-dir", str(run), "--eval-sequences", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --run-dir: {run / 'config.json'}: TrainConfig: unknown options ['warp_factor']; ")
    assert len(err.splitlines()) == 1 and not (run / "eval").exists()


def test_quickstart_refuses_a_max_steps_below_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "runs" / "q"
    assert quickstart.main(["--run-dir", str(run), "--preset", "tiny", "--max-steps", "0"]) == 2
    assert capsys.readouterr().err == "error: --max-steps: expected an int >= 1, got 0\n"
    assert not run.exists()
