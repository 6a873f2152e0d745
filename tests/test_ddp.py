"""Data-parallel training: two CPU processes (gloo) launched by torchrun keep identical parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from examples.srvp.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _own_tmp(folder: Path) -> dict[str, str]:
    """TMPDIR for a torchrun job: its torchelastic_* folders go with the test's tmp_path, not into /tmp for good."""
    tmp = folder / "tmpdir"
    tmp.mkdir(parents=True, exist_ok=True)
    return {"TMPDIR": str(tmp)}


def _torchrun_script(
    tmp_path: Path, text: str, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Two torchrun processes running the Python script ``text`` (which patches the training, then runs
    ``train.main``) with ``argv``, one thread each unless ``env`` says otherwise; the finished process."""
    script = tmp_path / "script.py"
    script.write_text(text)
    full_env = {**os.environ, **_own_tmp(tmp_path), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v}  # (an empty value: unset, e.g. torchrun's own OMP default)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), *argv]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)


def _torchrun(run: Path, *flags: str) -> None:
    env = {**os.environ, **_own_tmp(run.parent), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "examples.srvp.train", "--threads", "1", *flags]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_two_process_gloo_training_keeps_ranks_in_sync(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    _torchrun(run, "--preset", "tiny", "--run-dir", str(run))
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    sync = [r for r in records if "ddp_params_identical" in r]
    assert sync == [{"step": 6, "ddp_world_size": 2, "ddp_params_identical": True}]
    # Only rank 0 wrote: one config, one set of checkpoints, and the log has one record per logged step.
    steps = [r["step"] for r in records if "total" in r]
    assert steps == sorted(set(steps))
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["step"] == 6
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    # Each rank draws its own noise, and the checkpoint keeps both streams.
    ranks = last["rng_ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])

    # Stopped at step 3 and resumed, the two processes end exactly where the uninterrupted run did.
    split = tmp_path / "split"
    _torchrun(split, "--preset", "tiny", "--run-dir", str(split), "--max-steps", "3")
    assert load_checkpoint(split / "checkpoints" / "last.pt")["step"] == 3
    _torchrun(split, "--resume", str(split))
    resumed = load_checkpoint(split / "checkpoints" / "last.pt")
    assert resumed["step"] == 6
    assert all(torch.equal(resumed["model"][k], last["model"][k]) for k in last["model"])


_LATE_RANK = """
import os, sys, time
import torch.distributed as d
start = d.init_process_group
def late(*args, **kwargs):  # rank 1 reaches train()'s checks a few seconds after rank 0
    start(*args, **kwargs)
    if os.environ["RANK"] == "1":
        time.sleep(float(os.environ["LATE_RANK_SECONDS"]))
d.init_process_group = late
from examples.srvp import train
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_late_rank_does_not_find_rank_0s_new_run(tmp_path: Path) -> None:
    """Rank 0 writes config.json only once every rank has checked that the directory holds no run."""
    run = tmp_path / "run"
    argv = ["--threads", "1", "--preset", "tiny", "--run-dir", str(run), "--max-steps", "1"]
    proc = _torchrun_script(tmp_path, _LATE_RANK, *argv, env={"LATE_RANK_SECONDS": "8"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "already holds a run" not in proc.stderr
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_torchrun_job_saves_and_resumes(tmp_path: Path, signame: str) -> None:
    """A scheduler's SIGTERM, or a terminal's Ctrl-C, reaches torchrun and the ranks, and torchrun passes it on
    to the ranks a second time: they finish the step together, rank 0 writes last.pt, and the run resumes."""
    import signal
    import time

    run = tmp_path / "run"
    env = {**os.environ, **_own_tmp(tmp_path), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "examples.srvp.train", "--threads", "1", "--preset", "tiny", "--run-dir", str(run)]
    cmd += ["--lr-decay", "100000", "--val-interval", "100000", "--checkpoint-interval", "100000"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    log = run / "train_log.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text().count("\n") >= 2) and time.monotonic() < deadline:
            time.sleep(0.1)  # 20 steps taken
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        os.killpg(proc.pid, getattr(signal, signame))
        out = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    reason = "SIGTERM" if signame == "SIGTERM" else "Ctrl-C"
    assert step >= 20 and f"stopped at step {step} of 100004 ({reason})" in out, out[-3000:]
    _torchrun(run, "--resume", str(run), "--max-steps", str(step + 1))
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == step + 1


_SLOW_RANK_0 = """
import os, sys, time
from examples.srvp import train
init = train._Logger.__init__
def slow(self, *args, **kwargs):  # rank 0 starts its clock later (it alone makes the log, as with TensorBoard)
    init(self, *args, **kwargs)
    if os.environ["RANK"] == "0":
        time.sleep(1.0)
train._Logger.__init__ = slow
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_ranks_that_stop_on_their_own_clocks_agree_on_why(tmp_path: Path) -> None:
    """Rank 1 reaches the time budget first: every rank reports the time budget (a rank that guessed Ctrl-C
    exited 130, and torchrun failed the job)."""
    run = tmp_path / "run"
    argv = ["--threads", "1", "--preset", "tiny", "--run-dir", str(run), "--lr-decay", "100000"]
    proc = _torchrun_script(tmp_path, _SLOW_RANK_0, *argv, "--max-minutes", "0.05")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    said = f"stopped at step {step} of 100004 (time budget of 0.05 min, from --max-minutes)"
    assert said in proc.stdout + proc.stderr


_FAILS_ON_RANK_1 = """
import os, sys
from examples.srvp import train
from examples.srvp.datasets import BatchStream
make = BatchStream.__getitem__
def damaged(self, step):  # rank 1 alone cannot make some batch (a damaged file in its share, a killed worker)
    if os.environ["RANK"] == "1" and {condition}:
        raise {error}
    return make(self, step)
BatchStream.__getitem__ = damaged
sys.exit(train.main(sys.argv[1:]))
"""


def _torchrun_failing_on_rank_1(tmp_path: Path, condition: str, error: str, *flags: str) -> str:
    """The output of two torchrun processes whose rank 1 raises ``error`` for the batches of the steps where
    ``condition`` holds, once they have failed."""
    text = _FAILS_ON_RANK_1.format(condition=condition, error=error)
    proc = _torchrun_script(tmp_path, text, "--threads", "1", "--preset", "tiny", *flags)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    return out


@pytest.mark.slow
def test_a_batch_that_fails_on_one_rank_stops_every_rank_with_a_checkpoint(tmp_path: Path) -> None:
    """Rank 1's batch of step 3 cannot be made: every rank stops after step 3, last.pt keeps the three steps
    with both ranks' RNG streams, and the run resumed once the data is back ends where an uninterrupted one
    does. (Rank 0 went on into step 4's collectives and waited there for a rank that had left: nothing saved.)"""
    run = tmp_path / "run"
    error = 'OSError("/data/x/image-003.png: Input/output error")'
    out = _torchrun_failing_on_rank_1(
        tmp_path, "step == 3", error, "--run-dir", str(run), "--checkpoint-interval", "100"
    )
    assert "stopped at step 3 of 6: the batch of step 3 could not be made by process 1" in out, out[-3000:]
    assert "error: /data/x/image-003.png: Input/output error" in out  # rank 1's own error
    assert "error: the batch of step 3 could not be made by process 1 of the job" in out  # rank 0's
    assert "examples/srvp/train.py" not in out  # no rank's traceback (torchrun prints its own)
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert saved["step"] == 3 and len(saved["rng_ranks"]) == 2

    _torchrun(run, "--resume", str(run))
    straight = tmp_path / "straight"
    _torchrun(straight, "--preset", "tiny", "--run-dir", str(straight), "--checkpoint-interval", "100")
    a, b = load_checkpoint(run / "checkpoints" / "last.pt"), load_checkpoint(straight / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.slow
def test_a_first_batch_share_that_fails_on_one_rank_stops_every_rank_before_the_run_is_made(tmp_path: Path) -> None:
    """Each process reads only its share of a batch, so the first batch's check can fail on one process alone:
    every process stops with the reason, and no run is created. (Rank 0 went on to the barrier before config.json and
    was ended there by torchrun, saying nothing of why.)"""
    run = tmp_path / "run"
    out = _torchrun_failing_on_rank_1(
        tmp_path, "True", 'ValueError("/data/clip3.gif: cannot be decoded")', "--run-dir", str(run)
    )
    assert "error: data_dir: /data/clip3.gif: cannot be decoded" in out, out[-3000:]  # rank 1's own error
    assert "error: data_dir: process 1 could not make its share of the first batch" in out, out[-3000:]  # rank 0's
    assert not (run / "config.json").exists()


_RANK_TERMS = """
import os, sys
import torch
DDP = torch.nn.parallel.DistributedDataParallel
forward = DDP.forward
def recorded(self, *args, **kwargs):  # each rank's own loss terms, on stderr
    out = forward(self, *args, **kwargs)
    if self.training:
        print(f"TERMS {os.environ['RANK']} " + " ".join(repr(float(v)) for v in out[0]), file=sys.stderr, flush=True)
    return out
DDP.forward = recorded
from examples.srvp import train
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_the_log_holds_the_whole_batchs_terms_and_threads_are_per_process(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    argv = ["--threads", str(cores), "--preset", "tiny", "--run-dir", str(run), "--max-steps", "1"]
    proc = _torchrun_script(tmp_path, _RANK_TERMS, *argv, env={"OMP_NUM_THREADS": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = {}
    for line in proc.stderr.splitlines():
        if line.startswith("TERMS "):
            _, rank, *values = line.split()
            ranks[int(rank)] = [float(v) for v in values]
    assert sorted(ranks) == [0, 1] and ranks[0] != ranks[1]  # each rank's share has its own loss
    logged = json.loads((run / "train_log.jsonl").read_text().splitlines()[0])
    fields = ["nll", "kl_y", "kl_z", "residual", "total"]
    for i, name in enumerate(fields):  # the mean of the shares (rank 0's share alone before)
        assert logged[name] == pytest.approx((ranks[0][i] + ranks[1][i]) / 2, rel=1e-6, abs=1e-6), name
    # 2 processes × all the cores' threads each: the job says they outnumber the cores, and the plan line
    # says the threads are each process's.
    assert f"note: 2 processes × {cores} threads each are more than the {cores} cores here" in proc.stderr
    assert f"{cores} threads each" in proc.stdout
