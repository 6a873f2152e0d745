"""Multi-process training, second review, in one process (the torchrun runs are in test_ddp.py): the processes
wait for rank 0's validation longer than torch's default timeouts, a resume over processes that do not split the
run's batch says so, evaluate, demo and quickstart refuse to run as several processes, and a validation's noise
depends on the step alone."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from examples.srvp import demo, quickstart, train
from examples.srvp import evaluate as ev
from examples.srvp.config import PRESETS

ROOT = Path(__file__).resolve().parents[1]


def test_the_process_group_waits_longer_than_torchs_default_timeouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 0 validates alone while the others wait: gloo's 30 min (NCCL's 10) ended long validations."""
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    seen: dict[str, object] = {}

    class Stop(Exception):
        pass

    def init_process_group(backend: str, **kwargs: object) -> None:
        seen.update(kwargs, backend=backend)
        raise Stop

    monkeypatch.setattr(torch.distributed, "init_process_group", init_process_group)
    cfg = dataclasses.replace(PRESETS["tiny"](), threads=1)
    with pytest.raises(Stop):
        train.train(cfg, tmp_path / "run")
    assert seen["backend"] == "gloo"
    timeout = seen["timeout"]
    assert timeout == train.GROUP_TIMEOUT and train.GROUP_TIMEOUT.total_seconds() >= 2 * 3600


@pytest.mark.parametrize(
    ("visible", "local_rank", "masked", "expected"),
    [(4, 3, False, 3), (1, 3, True, 0), (2, 3, False, None), (1, 3, False, None)],
)
def test_each_process_takes_its_own_gpu_among_those_it_sees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, visible: int, local_rank: int, masked: bool, expected: int | None
) -> None:
    """A CUDA-paths review: process LOCAL_RANK took cuda:LOCAL_RANK, which does not exist when the launcher
    gives each process its own GPU (CUDA_VISIBLE_DEVICES per rank: one visible, cuda:0). More processes than
    visible GPUs is an error naming the flag. Simulated without a GPU."""
    for name, value in (("WORLD_SIZE", "4"), ("RANK", str(local_rank)), ("LOCAL_RANK", str(local_rank))):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    if masked:  # the launcher gave each process its own GPU
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", str(local_rank))
    else:  # every process sees the node's GPUs: with one, they would all share it
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    chosen: list[torch.device] = []

    class Stop(Exception):
        pass

    def set_device(device: torch.device) -> None:
        chosen.append(device)

    def init_process_group(backend: str, **kwargs: object) -> None:
        assert backend == "nccl"
        raise Stop

    monkeypatch.setattr(train, "resolve_device", lambda _: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(torch.distributed, "init_process_group", init_process_group)
    cfg = dataclasses.replace(PRESETS["tiny"](), threads=1, batch_size=4)
    if expected is None:
        with pytest.raises(
            ValueError, match=rf"^--device: process 3 of this node has no GPU of its own \({visible} visible\)"
        ):
            train.train(cfg, tmp_path / "run")
        assert chosen == []
        return
    with pytest.raises(Stop):
        train.train(cfg, tmp_path / "run")
    assert chosen == [torch.device("cuda", expected)]


def test_a_resume_over_processes_that_do_not_split_the_runs_batch_names_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--max-steps", "1", "--threads", "1"]) == 0
    capsys.readouterr()
    for name, value in (("WORLD_SIZE", "3"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    assert train.main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: --resume: the run's batch size 4 (its config.json) does not split over 3 processes; resume it "
        "with 1, 2, 4 processes"
    ), err  # (it blamed --batch-size, which the user had not given and cannot change on a resume)
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize("cli", ["evaluate", "demo", "quickstart"])
def test_one_process_commands_refuse_to_run_under_torchrun(
    cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every process of a torchrun job ran the whole evaluation: all but one failed on its lock, and torchrun
    cut the writes of that one short (a partial file and a temporary left behind)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "out"
    argv = {
        "evaluate": [str(tmp_path / "run"), "--out", str(out)],
        "demo": [str(tmp_path / "run"), "--out", str(out)],
        "quickstart": ["--run-dir", str(out)],
    }[cli]
    main = {"evaluate": ev.main, "demo": demo.main, "quickstart": quickstart.main}[cli]
    monkeypatch.setattr(sys, "argv", [f"examples/srvp/{cli}.py", *argv])  # as the command line runs it
    assert main() == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "runs in one process, and this is one of 2 (WORLD_SIZE=2: torchrun)" in err
    assert f"run python -m examples.srvp.{cli} without torchrun" in err
    assert not out.exists()
    # Called from Python (rank 0 of a training script, say), the caller decides: the command goes on to its own
    # checks (here: no run at that path).
    assert main(argv) == 2
    assert "torchrun" not in capsys.readouterr().err


def test_a_validations_noise_depends_on_the_step_not_on_the_training_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation drew from rank 0's training stream, so the score of the same weights (and the choice of best.pt)
    depended on the number of processes. Here a second run draws one more number per step (as another share of
    the noise would); its validations draw the same noise as the first run's."""
    seen: dict[str, list[torch.Tensor]] = {}
    real_validate = train.validate
    from examples.srvp.model import SRVP

    forward = SRVP.forward

    def run(name: str, extra_draws: bool) -> None:
        seen[name] = []

        def validate(*args: object, **kwargs: object) -> float:
            seen[name].append(torch.rand(4))  # (inside the validation's forked streams)
            return real_validate(*args, **kwargs)  # type: ignore[arg-type]

        def drawing_forward(self: SRVP, x: torch.Tensor, **kwargs: object) -> object:
            if extra_draws:
                torch.rand(1)
            return forward(self, x, **kwargs)

        monkeypatch.setattr(train, "validate", validate)
        monkeypatch.setattr(SRVP, "forward", drawing_forward)
        cfg = dataclasses.replace(PRESETS["tiny"](), val_interval=2, threads=1)
        train.train(cfg, tmp_path / name, progress=False, log=lambda _: None)

    run("plain", extra_draws=False)
    run("drawing", extra_draws=True)
    assert len(seen["plain"]) == 3  # steps 2, 4, 6
    for a, b in zip(seen["plain"], seen["drawing"]):
        assert torch.equal(a, b)
    assert not torch.equal(seen["plain"][0], seen["plain"][1])  # each step its own noise


def test_seed_rng_seeds_the_cpu_and_the_devices_own_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.srvp.checkpoint import seed_rng

    seed_rng(123, torch.device("cpu"))
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(123)))

    class FakeMPS:  # an accelerator with one global stream, as torch.mps (none on this machine)
        def __init__(self) -> None:
            self.seeds: list[int] = []

        def get_rng_state(self) -> torch.Tensor:
            return torch.zeros(1)

        def set_rng_state(self, state: torch.Tensor) -> None:
            pass

        def manual_seed(self, value: int) -> None:
            self.seeds.append(value)

    fake = FakeMPS()
    monkeypatch.setattr(torch, "mps", fake, raising=False)
    seed_rng(7, torch.device("mps"))
    assert fake.seeds == [7]  # (the validation's noise on a Mac came from the training stream)
