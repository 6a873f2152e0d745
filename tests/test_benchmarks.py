"""Smoke test of the training-step benchmark: it runs, compares against the official kernels, writes its JSON.

(The sampling benchmark's smoke test is in test_svglp.py, next to the baseline it compares against.) The rollout
benchmark runs every configuration shrunk to a few frames: its floor computes what the rollout computes.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_benchmark_writes_documented_fields(tmp_path: Path) -> None:
    out = tmp_path / "train_step.json"
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--width", "4", "--batch", "2", "--seq-len", "6"]
    cmd += ["--variants", "official-kernels,fp32", "--iters", "1", "--warmup", "1", "--threads", "1"]
    cmd += ["--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [r["variant"] for r in data["results"]] == ["official-kernels", "fp32"]
    fields = {"seconds_per_step", "steps_per_s", "sequences_per_s", "flops_per_step", "achieved_flops"}
    fields |= {"fraction_of_matmul_peak", "speedup_vs_official", "peak_rss_mib"}
    for r in data["results"]:
        assert fields <= set(r), fields - set(r)
    assert data["results"][0]["speedup_vs_official"] == 1.0
    # Both variants count the same work: the dense paths change kernels, not FLOPs.
    assert data["results"][0]["flops_per_step"] == data["results"][1]["flops_per_step"] > 0


def test_profile_step_writes_documented_fields(tmp_path: Path) -> None:
    """The profile of a train_step variant (on a CPU: no syncs nor kernels to read, the top rows by CPU time)."""
    out = tmp_path / "profile.json"
    cmd = [sys.executable, "-m", "benchmarks.profile_step", "--width", "4", "--batch", "2", "--seq-len", "6"]
    cmd += ["--variant", "fp32", "--warmup", "1", "--iters", "2", "--profile-steps", "1", "--top", "4"]
    cmd += ["--threads", "1", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["variant"] == "fp32" and data["config"]["batch"] == 2 and data["flops_per_step"] > 0
    assert 0 < data["host_ms"] <= data["done_ms"]
    assert len(data["top"]) == 4 and {"name", "self_cpu_ms", "calls"} == set(data["top"][0])
    times = [r["self_cpu_ms"] for r in data["top"]]
    assert times == sorted(times, reverse=True) and times[0] > 0
    assert "median per step: the host returns after" in proc.stdout


def test_profile_step_refuses_bad_options_before_measuring() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args, said in (
        (["--profile-steps", "0"], "--profile-steps: expected an int >= 1, got 0"),
        (["--variant", "bf17"], "invalid choice: 'bf17'"),
    ):
        cmd = [sys.executable, "-m", "benchmarks.profile_step", *args]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr


def test_rollout_benchmark_writes_documented_fields(tmp_path: Path) -> None:
    from benchmarks.rollout import CONFIGS

    out = tmp_path / "rollout.json"
    cmd = [sys.executable, "-m", "benchmarks.rollout", "--frames", "6", "--batch", "3", "--iters", "1"]
    cmd += ["--warmup", "1", "--threads", "1", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [r["config"] for r in data["results"]] == list(CONFIGS)
    fields = {"frames", "batch", "substeps", "observed", "max_abs_diff_vs_floor"}
    for mode in ("forward", "forward_backward"):
        fields |= {f"floor_{mode}_s", f"latentdyn_{mode}_s", f"overhead_{mode}", f"us_per_frame_{mode}"}
    for r in data["results"]:
        assert fields <= set(r), fields - set(r)
        assert r["frames"] == 6 and r["batch"] == 3
        # The floor is the same model written by hand: same states and prior parameters (means).
        assert r["max_abs_diff_vs_floor"] < 1e-5, r
        assert r["overhead_forward"] == r["latentdyn_forward_s"] / r["floor_forward_s"]
    assert data["results"][1]["observed"] == 6  # a posterior over every transition of the shrunk rollout


def test_metrics_benchmark_writes_documented_fields(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    cmd = [sys.executable, "-m", "benchmarks.metrics", "--pairs", "3,70", "--channels", "3", "--size", "16"]
    cmd += ["--iters", "1", "--warmup", "0", "--threads", "1", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [r["pairs"] for r in data["results"]] == [3, 70]
    for r in data["results"]:
        assert r["channels"] == 3 and r["size"] == 16
        for v in ("ssim", "one_pass", "grouped_conv"):
            assert r[f"{v}_pairs_per_s"] == r["pairs"] / r[f"{v}_s"]
            assert r[f"{v}_speedup_vs_one_pass"] == r["one_pass_s"] / r[f"{v}_s"]
        assert r["psnr_pairs_per_s"] == r["pairs"] / r["psnr_s"]
        # The three variants compute the same per-frame SSIM (the filters differ only in the order of sums).
        assert r["one_pass_max_abs_diff_vs_ssim"] < 1e-6 and r["grouped_conv_max_abs_diff_vs_ssim"] < 1e-6


def test_metrics_benchmark_variants_put_the_library_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each variant swaps internals of latentdyn.video.metrics for one call only, and computes what ssim does."""
    from benchmarks.metrics import VARIANTS
    from latentdyn.video import metrics

    before = {name: getattr(metrics, name) for name in ("_CPU_BLOCK_BYTES", "_filter_valid_matmul", "_ssim_means")}
    calls: list[tuple[str, int]] = []
    means = metrics._ssim_means

    def recorded(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, filter_valid: Any, c1: float, c2: float) -> Any:
        calls.append((filter_valid.__name__, x.shape[0]))
        return means(x, y, g, filter_valid, c1, c2)

    monkeypatch.setattr(metrics, "_ssim_means", recorded)
    before["_ssim_means"] = recorded
    g = torch.Generator().manual_seed(0)
    target = torch.rand(130, 1, 64, 64, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    expected = metrics.ssim(pred, target)
    block = metrics._CPU_BLOCK_BYTES // (5 * 64 * 64 * 4)
    assert 1 < block < 130
    blocks = [("_filter_valid_matmul", min(block, 130 - start)) for start in range(0, 130, block)]
    for name, fn in VARIANTS.items():
        calls.clear()
        torch.testing.assert_close(fn(pred, target), expected, rtol=0, atol=1e-6)
        assert {n: getattr(metrics, n) for n in before} == before, name
        assert (
            calls
            == {
                "ssim": blocks,
                "one-pass": [("_filter_valid_matmul", 130)],
                "grouped-conv": [("_filter_valid_conv", 130)],
            }[name]
        )


def test_official_kernels_variant_runs_the_torch_convolutions() -> None:
    from benchmarks.train_step import _plain_kernels
    from examples.srvp.config import ModelConfig
    from examples.srvp.model import SRVP

    model = SRVP(ModelConfig(conv_width=4, state_size=3, noise_size=2)).init_weights()
    x = torch.rand(6, 2, 1, 64, 64)
    torch.manual_seed(0)
    fast = model(x)[0].total
    _plain_kernels(model)
    kinds = {type(m) for m in model.modules()}
    assert nn.Conv2d in kinds and nn.ConvTranspose2d in kinds
    assert all(type(m).__module__.startswith("torch.") for m in model.modules() if isinstance(m, nn.Conv2d))
    assert all(type(m).__module__.startswith("torch.") for m in model.modules() if isinstance(m, nn.ConvTranspose2d))
    torch.manual_seed(0)
    torch.testing.assert_close(model(x)[0].total, fast, rtol=1e-5, atol=1e-3)


def test_official_kernels_variant_tiles_the_skips_as_the_official_code() -> None:
    """With --skip-connections, the official variant decodes every frame with its own copy of the skips (what the
    official code computes and costs), latentdyn's step computes their part once per sequence: the same loss, and
    the tiled skips' copies reach the decoder's blocks (T·B rows of skips, not B)."""
    from benchmarks.train_step import _plain_kernels, _tiled_skips
    from examples.srvp.config import ModelConfig
    from examples.srvp.model import SRVP

    torch.manual_seed(0)
    model = SRVP(ModelConfig(conv_width=4, state_size=3, noise_size=2, skip_connections=True)).init_weights()
    x = torch.rand(6, 2, 1, 64, 64)
    torch.manual_seed(0)
    fast = model(x)[0].total
    _plain_kernels(model)
    forward = model.decoder.forward
    rows: list[int] = []

    def spy(h: torch.Tensor, skips: Any = None, **kwargs: Any) -> torch.Tensor:
        rows.append(skips[0].shape[0])
        return forward(h, skips, **kwargs)

    model.decoder.forward = spy
    _tiled_skips(model.decoder)
    torch.manual_seed(0)
    torch.testing.assert_close(model(x)[0].total, fast, rtol=1e-5, atol=1e-3)
    assert rows == [6 * 2]


def test_train_step_benchmark_takes_skip_connections(tmp_path: Path) -> None:
    out = tmp_path / "train_step.json"
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--width", "4", "--batch", "2", "--seq-len", "6"]
    cmd += ["--variants", "official-kernels,fp32", "--iters", "1", "--warmup", "0", "--threads", "1"]
    cmd += ["--skip-connections", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["config"]["skip_connections"] is True
    official, fp32 = data["results"]
    # The skips' part of each decoder block once per sequence instead of once per frame: less work counted.
    assert 0 < fp32["flops_per_step"] < official["flops_per_step"]


def test_device_check_fits_one_device_command_and_kills_a_step_at_its_limit() -> None:
    """Review finding: the step limits added up to 690 s, past the device tool's 600 s per command (before the
    machine's start), and a plain ``timeout`` sent SIGTERM only, which the training inside the CUDA tests turns
    into a clean stop of that training, so the step went on past its limit. The fidelity test must not pass the
    step by skipping."""
    script = (ROOT / "benchmarks" / "device_check.sh").read_text()
    limits = [int(n) for n in re.findall(r'^\s*step "[^"]+" (\d+) ', script, re.M)]
    assert len(limits) == 4 and sum(limits) <= 540, limits
    assert re.search(r"^\s*timeout -k \d+ \"\$limit\" \"\$@\"$", script, re.M)
    assert "export LATENTDYN_REQUIRE_FIXTURES=" in script


@pytest.mark.slow
def test_device_check_script_runs_end_to_end_on_a_cpu(tmp_path: Path) -> None:
    """The prepared GPU check, shrunk to a CPU dry run: every step runs and writes its figures."""
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DEVICE": "cpu",
        "BATCH": "2",
        "WIDTH": "4",
        "ITERS": "1",
        "SAMPLES": "2",
        "MINUTES": "0.1",
        "WORKERS": "0",
        "VARIANTS": "fp32",
        "SAMPLING_VARIANTS": "official-loop,batched-fp32",
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert (tmp_path / "failed_steps.txt").read_text() == ""
    assert json.loads((tmp_path / "train_step_cpu_b2.json").read_text())["results"][0]["variant"] == "fp32"
    assert {r["variant"] for r in json.loads((tmp_path / "sampling_cpu.json").read_text())["results"]} == {
        "official-loop",
        "batched-fp32",
    }
    assert (tmp_path / "e2e_train_log.jsonl").stat().st_size > 0
    assert "=== done" in (tmp_path / "log.txt").read_text()


def test_data_benchmark_writes_documented_fields(tmp_path: Path) -> None:
    from benchmarks.data import VARIANTS

    out = tmp_path / "data.json"
    cmd = [sys.executable, "-m", "benchmarks.data", "--batch", "6", "--seq-len", "5", "--iters", "1", "--warmup", "0"]
    cmd += ["--target", "10", "--processes", "3", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [r["variant"] for r in data["results"]] == list(VARIANTS) and data["peak_rss_mib"] > 0
    fields = {"clips_per_batch", "seconds_per_batch", "clips_per_s", "mib_per_batch", "speedup_vs_per_clip"}
    for r in data["results"]:
        assert fields | {"workers_for_target"} <= set(r), fields - set(r)
        clips = 2 if r["variant"] == "share-uint8" else 6  # one of 3 processes makes 2 of the 6 clips
        assert r["clips_per_batch"] == clips and r["clips_per_s"] == clips / r["seconds_per_batch"]
        assert r["workers_for_target"] == math.ceil(10 * clips / r["clips_per_s"])
    mib = {r["variant"]: r["mib_per_batch"] for r in data["results"]}
    assert mib["batch-float"] == 4 * mib["batch-uint8"] == 12 * mib["share-uint8"] == 6 * 5 * 64 * 64 * 4 / 2**20
    assert "share-uint8: one of 3 processes, 2 clips of each batch" in proc.stdout


@pytest.mark.parametrize("name", ["data", "metrics", "profile_step", "rollout", "sampling", "train_step"])
def test_benchmark_help_under_python_OO(name: str) -> None:
    """``python -OO`` removes the docstring the parser takes its description from."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-OO", "-m", f"benchmarks.{name}", "--help"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"usage: python -m benchmarks.{name}" in proc.stdout


def test_json_output_expands_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--json=~/b.json`` (the shell leaves a ``~`` after ``=``) is written in the home folder."""
    from benchmarks._common import write_json

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    write_json("~/out/b.json", {"µ": 1})
    assert json.loads((tmp_path / "home" / "out" / "b.json").read_text(encoding="utf-8")) == {"µ": 1}
    assert not (tmp_path / "~").exists()
