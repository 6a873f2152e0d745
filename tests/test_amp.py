"""Mixed precision: bf16 autocast training tracks fp32 training (loss terms are computed in fp32)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.srvp.config import PRESETS
from examples.srvp.model import SRVP
from examples.srvp.train import train


def test_bf16_training_tracks_fp32_over_50_steps(tmp_path: Path) -> None:
    base = dataclasses.replace(PRESETS["tiny"](), lr_burnin=50, lr_decay=0, val_interval=1000, lr=1e-3)
    runs = {}
    for amp in ("none", "bf16"):
        cfg = dataclasses.replace(base, amp=amp, channels_last=amp == "bf16")
        runs[amp] = np.array(train(cfg, tmp_path / amp, progress=False, log=lambda _: None).losses)
    fp32, bf16 = runs["none"], runs["bf16"]
    assert len(fp32) == len(bf16) == 50
    # Most of the loss is the Gaussian constant (obs_scale 1), so compare the decrease D of the mean loss
    # from the first to the last 10 steps: both learn, by the same amount, and track each other step by step.
    drop = {k: v[:10].mean() - v[-10:].mean() for k, v in runs.items()}
    assert drop["none"] > 300 and drop["bf16"] > 300, drop
    assert abs(drop["bf16"] - drop["none"]) < 0.1 * drop["none"], drop

    # Step by step, through a moving median of 5 steps: a single loss spike of one run (an ordinary event of
    # either precision: with another seed, fp32 had one 2,500 above bf16 at one step) is not a divergence.
    def smooth(v: np.ndarray) -> np.ndarray:
        return np.array([np.median(v[i : i + 5]) for i in range(len(v) - 4)])

    gap = np.abs(smooth(fp32) - smooth(bf16)).max()
    assert gap < 0.25 * drop["none"], gap


def test_loss_terms_are_fp32_under_bf16_autocast() -> None:
    cfg = PRESETS["tiny"]().model
    torch.manual_seed(0)
    model = SRVP(cfg).init_weights()
    x = torch.rand(5, 2, 1, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms, out = model(x)
    assert out.frames.dtype == torch.bfloat16  # the networks ran in bf16
    assert all(t.dtype == torch.float32 for t in terms)


def test_latent_states_accumulate_in_fp32_under_bf16_autocast() -> None:
    """The networks run in bf16, but the states sum residuals over every step: they stay float32."""
    model = SRVP(PRESETS["tiny"]().model).init_weights()
    x = torch.rand(5, 2, 1, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, out = model(x)
        model.eval()
        pred = model.predict(x[:3], 4, 2)
    assert out.frames.dtype == torch.bfloat16
    assert out.rollout.states.dtype == torch.float32
    assert pred.states.dtype == torch.float32 and pred.future_rollout.substates.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_low_precision_model_outside_autocast_says_how_to_run_in_low_precision(dtype: torch.dtype) -> None:
    """model.to(torch.bfloat16) cannot keep the float32 states: the error says to use autocast instead (it used to
    ask the user to cast a y0 they never passed), and under autocast such a model runs."""
    model = SRVP(PRESETS["tiny"]().model).init_weights().to(dtype)
    x = torch.rand(5, 2, 1, 64, 64)
    advice = r"^model: SRVP keeps its latent states in float32 .* torch.autocast .*--amp bf16\) rather than model.to"
    with pytest.raises(TypeError, match=advice):
        model(x.to(dtype))
    model.eval()
    with pytest.raises(TypeError, match=advice):
        model.predict(x[:3].to(dtype), 2)
    if dtype == torch.bfloat16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model.predict(x[:3], 2).states.dtype == torch.float32
    model.double()  # float64 is a higher precision: fine
    assert model.predict(x[:3].double(), 2).states.dtype == torch.float64


@pytest.mark.filterwarnings("ignore:.*torch.cuda.amp.GradScaler:FutureWarning")  # the path taken on torch 2.2
def test_grad_scaler_on_torch_without_torch_amp_grad_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.2 (the floor) has only torch.cuda.amp.GradScaler: its disabled form is the pass-through that
    fp32 and bf16 training use; fp16 on the CPU has no scaler there and is refused up front, naming amp."""
    from examples.srvp.train import make_grad_scaler

    cpu = torch.device("cpu")
    if hasattr(torch.amp, "GradScaler"):
        assert isinstance(make_grad_scaler(cpu, enabled=False), torch.amp.GradScaler)
        monkeypatch.delattr(torch.amp, "GradScaler")
    loss = torch.tensor(3.0)
    scaler = make_grad_scaler(cpu, enabled=False)
    assert scaler.scale(loss) is loss and scaler.state_dict() == {}
    with pytest.raises(ValueError, match=r"^amp: fp16 on cpu needs torch >= 2.3"):
        make_grad_scaler(cpu, enabled=True)
