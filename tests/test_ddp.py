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


@pytest.mark.slow
def test_two_process_gloo_training_keeps_ranks_in_sync(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29517",
        "-m",
        "examples.srvp.train",
        "--preset",
        "tiny",
        "--run-dir",
        str(run),
        "--threads",
        "1",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    sync = [r for r in records if "ddp_params_identical" in r]
    assert sync == [{"step": 6, "ddp_world_size": 2, "ddp_params_identical": True}]
    # Only rank 0 wrote: one config, one set of checkpoints, and the log has one record per logged step.
    steps = [r["step"] for r in records if "total" in r]
    assert steps == sorted(set(steps))
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["step"] == 6
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
