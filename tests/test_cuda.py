"""The CUDA paths: fidelity of the GPU kernels, training (fp32, bf16, fp16 with loss scaling), resuming,
sampling and evaluation on a GPU. Skipped where no CUDA device is visible; ``benchmarks/device_check.sh``
runs them on a GPU machine together with the GPU benchmarks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from shared_fixtures import FIXTURES, needs

from examples.srvp import evaluate as ev
from examples.srvp._host import full_fp32
from examples.srvp.checkpoint import load_checkpoint
from examples.srvp.config import PRESETS, resolve_device
from examples.srvp.model import SRVP
from examples.srvp.official import _Noise, verify
from examples.srvp.train import train

FIXTURE = FIXTURES / "official"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(autouse=True)
def _isolated_rng() -> Iterator[None]:
    with torch.random.fork_rng(devices=[0] if torch.cuda.is_available() else []):
        torch.manual_seed(0)
        yield


def test_resolve_device_accepts_the_visible_gpus() -> None:
    assert resolve_device("cuda").type == "cuda"
    assert resolve_device(f"cuda:{torch.cuda.device_count() - 1}").index == torch.cuda.device_count() - 1
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_frames_converted_on_the_gpu_are_those_of_the_cpu() -> None:
    """uint8 batches travel to the GPU and are converted there: every value as the CPU divides it."""
    from latentdyn.video.collate import to_unit_interval

    every = torch.arange(256, dtype=torch.uint8).reshape(4, 64)
    on_gpu = to_unit_interval(every.cuda())
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), to_unit_interval(every))


@needs(FIXTURE / "outputs.pt", "the official fixture")  # (device_check.sh requires it: a skip is no pass there)
def test_official_fixture_is_reproduced_by_the_cuda_kernels() -> None:
    checks = verify(FIXTURE, "cuda")
    failed = [f"{c.name}: {c.detail}" for c in checks if c.status == "FAIL"]
    assert not failed, failed
    assert sum(c.status == "ok" for c in checks) >= 80


def test_cuda_and_cpu_compute_the_same_loss_and_prediction() -> None:
    model = SRVP(PRESETS["tiny"]().model).init_weights()
    x = torch.rand(6, 3, 1, 64, 64)
    means = _Noise(None, None, None)
    with full_fp32(torch.device("cuda")), torch.no_grad():
        out = {}
        for device in ("cpu", "cuda"):
            m = model.to(device).eval()
            terms, _ = m(x.to(device), sampler=means)
            pred = m.predict(x[:2].to(device), 4, 2, sampler=means)
            out[device] = (terms.total.cpu(), pred.frames.cpu())
    torch.testing.assert_close(out["cuda"][0], out["cpu"][0], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(out["cuda"][1], out["cpu"][1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_training_on_cuda_learns_and_resumes(tmp_path: Path, amp: str) -> None:
    cfg = dataclasses.replace(PRESETS["tiny"](), device="cuda", amp=amp, lr=1e-3, lr_burnin=20, lr_decay=0)
    quiet = {"progress": False, "log": lambda _: None}
    straight = train(cfg, tmp_path / "a", max_steps=20, **quiet)  # type: ignore[arg-type]
    first = train(cfg, tmp_path / "b", max_steps=10, **quiet)  # type: ignore[arg-type]
    second = train(cfg, tmp_path / "b", resume=True, max_steps=20, **quiet)  # type: ignore[arg-type]
    losses = np.array(straight.losses)
    assert straight.stopped == "done" and len(losses) == 20 and np.isfinite(losses).all()
    assert losses[-5:].mean() < losses[:5].mean()
    # The batches, noise and state are restored exactly; cuDNN's backward kernels may sum in another order,
    # so the two runs agree to rounding rather than bitwise.
    np.testing.assert_allclose(first.losses + second.losses, straight.losses, rtol=1e-3)
    state = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert state["step"] == 20 and "cuda" in state["rng"]
    # The file holds host tensors, so that a plain torch.load works without a GPU (load_checkpoint maps every
    # tensor to the CPU whatever the file holds: it could not tell).
    saved_on: set[str] = set()

    def where(storage: Any, location: str) -> Any:
        saved_on.add(location)
        return storage

    torch.load(tmp_path / "b" / "checkpoints" / "last.pt", map_location=where, weights_only=True)
    assert saved_on == {"cpu"}


def test_batched_bf16_sampling_on_cuda() -> None:
    model = SRVP(PRESETS["tiny"]().model).init_weights().cuda().eval().to(memory_format=torch.channels_last)
    x = torch.rand(3, 2, 1, 64, 64, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        pred = model.predict(x, 5, 7, decode_cond=False)
    assert pred.frames.shape == (7, 5, 2, 1, 64, 64)
    assert pred.frames.is_cuda and torch.isfinite(pred.frames.float()).all()
    assert 0 <= pred.frames.min() and pred.frames.max() <= 1


def test_evaluation_on_cuda_scores_the_reference_predictors_as_on_cpu() -> None:
    from latentdyn.video.mnist import load_embedded_digits
    from latentdyn.video.moving_mnist import make_test_set

    digits = load_embedded_digits("test")
    data = make_test_set(digits.images[:16], digits.labels[:16], seq_len=8, deterministic=False)
    sequences = torch.from_numpy(data.sequences).unsqueeze(2)  # (T, N, 1, 64, 64) uint8
    model = SRVP(PRESETS["tiny"]().model).init_weights()
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=8, n_samples=3, n_substeps=1, batch_size=4, seed=1, max_sequences=0)
    results = {d: ev.evaluate(model, sequences, protocol, device=d, progress=False) for d in ("cpu", "cuda")}
    cpu, gpu = results["cpu"], results["cuda"]
    for ref in ("copy_last", "black"):
        for metric in ("psnr", "ssim"):
            a, b = cpu["reference_predictors"][ref][metric]["mean"], gpu["reference_predictors"][ref][metric]["mean"]
            assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (ref, metric, a, b)
    assert all(np.isfinite(gpu["metrics"][m]["mean"]) for m in ("psnr", "ssim"))


def test_a_training_on_the_gpu_gives_the_callers_random_streams_back(tmp_path: Path) -> None:
    """train() seeds the CPU and every CUDA generator with the run's seed: the caller's streams go on as if it had
    not run, and cuDNN's autotuning is as the caller left it."""
    benchmark = torch.backends.cudnn.benchmark
    torch.manual_seed(7)
    expected = torch.rand(3), torch.rand(3, device="cuda").cpu()
    torch.manual_seed(7)
    cfg = dataclasses.replace(PRESETS["tiny"](), device="cuda")
    train(cfg, tmp_path / "run", max_steps=2, progress=False, log=lambda _: None)
    assert torch.equal(torch.rand(3), expected[0]) and torch.equal(torch.rand(3, device="cuda").cpu(), expected[1])
    assert torch.backends.cudnn.benchmark == benchmark


def test_a_cpu_generator_initialises_and_draws_on_the_gpu_as_on_the_cpu() -> None:
    """A CUDA-paths review: torch's in-place initialisers and ``torch.rand`` refuse a generator of another device,
    so ``init_conv_weights_``, ``init_orthogonal_`` and ``random_distinct_frames`` failed for GPU tensors given
    a CPU generator. They draw on the generator's device: the values are the CPU's."""
    from latentdyn import DCGANEncoder, init_conv_weights_, init_orthogonal_, random_distinct_frames
    from latentdyn.nn import MLP

    def made(device: str) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
        conv = init_conv_weights_(
            DCGANEncoder(base_width=8, code_size=4).to(device), generator=torch.Generator().manual_seed(0)
        )
        mlp = init_orthogonal_(MLP(4, 8, 2, 2).to(device), 1.0, generator=torch.Generator().manual_seed(0))
        idx = random_distinct_frames(6, 3, 5, device=device, generator=torch.Generator().manual_seed(0))
        return conv, mlp, idx

    on_cpu, on_gpu = made("cpu"), made("cuda")
    for a, b in zip(on_cpu[:2], on_gpu[:2]):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert q.device.type == "cuda" and torch.equal(p, q.cpu()), name
    assert on_gpu[2].device.type == "cuda" and torch.equal(on_gpu[2].cpu(), on_cpu[2])


def test_a_run_saved_with_unfused_adam_resumes_with_fused_adam_on_the_gpu(tmp_path: Path) -> None:
    """A diff review: the chosen implementation was set after ``load_state_dict``, which had left the host
    ``step`` counts of an unfused checkpoint on the host, and fused Adam on a GPU refused them at the first step.
    The flags are set before loading now; here a GPU run's checkpoint is rewritten as an unfused one."""
    from examples.srvp.checkpoint import save_checkpoint

    cfg = dataclasses.replace(PRESETS["tiny"](), device="cuda")
    quiet: dict[str, Any] = {"progress": False, "log": lambda _: None}
    train(cfg, tmp_path / "run", max_steps=2, **quiet)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        group["fused"], group["foreach"] = None, True
    for entry in state["optimizer"]["state"].values():
        entry["step"] = entry["step"].cpu()  # as an unfused Adam keeps it
    save_checkpoint(last, state)
    resumed = train(cfg, tmp_path / "run", resume=True, max_steps=4, **quiet)
    # (max_steps stops before the tiny preset's last step: "done" was expected until a GPU ran the test)
    assert (resumed.step, resumed.stopped) == (4, "max steps")
