"""Facts of SPEC.md (§3 training, §4 options, §5 data, §6 evaluation) that a mutation audit found unprotected.

Each test pins one fact whose mutant (a one-line change of the code that broke the fact) passed every other
test: the best sample chosen per metric, LPIPS kept at its minimum, the evaluation's default test-time sub-steps,
the official random_1 … random_5 files, no gradient clipping, the validation defaults (100 samples, 25 × 16
clips, n_iter_test 25 for an official config.json), the SM-MNIST test-set lengths, the KTH training persons,
channel and trials, and the BAIR training starts. Every test was run against its mutant and seen to fail, then
to pass once the mutant was reverted. Expected values come from SPEC.md (the section is cited next to each),
never from running the code under test; the data are tiny fakes written by the tests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from examples.srvp import data as data_cli
from examples.srvp import evaluate as ev
from examples.srvp import train
from examples.srvp.config import PRESETS, TrainConfig, train_config_from_official
from examples.srvp.model import FrameModel, Prediction, SampleChunk, build_model
from latentdyn.video.datasets import BAIRDataset, KTHDataset, make_kth_test_set

PAPER_PRESETS = ("smmnist", "smmnist-deterministic", "kth", "human36m", "bair")


# ------------------------------------------------------------------------------------------------- helpers
def _chunk(start: int, frames: torch.Tensor, cond_frames: torch.Tensor | None = None) -> SampleChunk:
    """A chunk of samples as predict_in_chunks yields it (only the fields the evaluation reads)."""
    return SampleChunk(start, cast(Prediction, SimpleNamespace(frames=frames, cond_frames=cond_frames)))


def _write_png_video(folder: Path, frames: list[np.ndarray], name: str, first: int = 0) -> None:
    """Frames as PNG files folder/<name.format(first + index)>, 8-bit grey (H, W) or RGB (H, W, 3)."""
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames, start=first):
        Image.fromarray(frame).save(folder / name.format(i))


def _write_kth_video(root: Path, action: str, person: int, trial: int, frames: list[np.ndarray]) -> None:
    """A converted KTH video: root/processed_64/<action>/personXX_<action>_dY/image-001.png … (SPEC 5.2)."""
    folder = root / "processed_64" / action / f"person{person:02d}_{action}_d{trial}"
    _write_png_video(folder, frames, "image-{:03d}.png", first=1)


def _grey(level: int) -> np.ndarray:
    return np.full((64, 64), level, dtype=np.uint8)


# ------------------------------------------------------------------------------------- best of N (SPEC 6)
TARGET_LEVEL = 128  # every ground-truth pixel
NOISE = 0.05  # sample "noisy": the target ± 0.05 in a checkerboard (PSNR 26 dB, poor SSIM)
SHIFT = 0.1  # sample "shifted": the target + 0.1 everywhere (PSNR 20 dB, SSIM close to 1)


def _best_of_n_setup(monkeypatch: pytest.MonkeyPatch) -> tuple[FrameModel, torch.Tensor, ev.EvalProtocol]:
    """Two test clips, two samples each: the best-PSNR sample ("noisy") is the worst-SSIM one; the noisy sample is
    sample 0 of clip 0 and sample 1 of clip 1 (each sequence makes its own choice)."""
    model = build_model(PRESETS["tiny"]().model)
    nt_cond, nt_gen = 2, 4
    seqs = torch.full((nt_gen, 2, 1, 64, 64), TARGET_LEVEL, dtype=torch.uint8)
    checker = (torch.arange(64).view(-1, 1) + torch.arange(64).view(1, -1)) % 2 * 2.0 - 1.0  # ±1

    def fake_chunks(model: nn.Module, cond: torch.Tensor, n_future: int, n: int, *_: Any, **__: Any) -> Iterator:
        truth = torch.full((n_future, 1, 64, 64), TARGET_LEVEL / 255, dtype=torch.float64)
        noisy, shifted = truth + NOISE * checker, truth + SHIFT
        clips = [torch.stack([noisy, shifted]), torch.stack([shifted, noisy])]  # per clip: (samples, T, C, H, W)
        frames = torch.stack([clips[int(i)] for i in range(cond.shape[1])], dim=2)  # (N, T, B, C, H, W)
        yield _chunk(0, frames.float())

    monkeypatch.setattr(ev, "predict_in_chunks", fake_chunks)
    protocol = ev.EvalProtocol(
        nt_cond=nt_cond, nt_gen=nt_gen, n_samples=2, n_substeps=1, batch_size=2, seed=0, max_sequences=0
    )
    return model, seqs, protocol


def _db(mse: float) -> float:
    return float(10 * np.log10(1 / mse))  # SPEC 6: PSNR = 10·log10(1/MSE)


def test_the_best_sample_is_chosen_for_each_metric_separately(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC 6 Best-of-N: for each metric separately, max for PSNR and SSIM; the best-PSNR sample may differ from
    the best-SSIM one. Here the best PSNR is the noisy sample's, the best SSIM the shifted sample's."""
    model, seqs, protocol = _best_of_n_setup(monkeypatch)
    result = ev.evaluate(model, seqs, protocol, progress=False, n_gif=0)
    # SPEC 6 SSIM: K1 = 0.01, data range 1. Two flat images (σ = 0): the contrast-structure factor is 1 and the
    # SSIM is the luminance factor (2·μx·μy + C1) / (μx² + μy² + C1) at every place of the valid window.
    a, c1 = TARGET_LEVEL / 255, 0.01**2
    shifted_ssim = (2 * a * (a + SHIFT) + c1) / (a**2 + (a + SHIFT) ** 2 + c1)
    assert result["metrics"]["psnr"]["mean"] == pytest.approx(_db(NOISE**2), abs=1e-3)
    # (float32 SSIM: its variances of flat images come out near, not at, zero; the noisy sample scores about 0.26)
    assert result["metrics"]["ssim"]["mean"] == pytest.approx(shifted_ssim, abs=1e-3)
    # The other sample of each metric is its worst: the shifted one for PSNR, the noisy one (σ ≠ 0) for SSIM.
    assert result["worst_sample"]["psnr"]["mean"] == pytest.approx(_db(SHIFT**2), abs=1e-3)
    assert result["worst_sample"]["ssim"]["mean"] < 0.5
    per_sequence = result["_per_sequence"]
    np.testing.assert_allclose(np.asarray(per_sequence["psnr"]), [_db(NOISE**2)] * 2, atol=1e-3)
    np.testing.assert_allclose(np.asarray(per_sequence["ssim"]), [shifted_ssim] * 2, atol=1e-3)


class _MeanAbsoluteLPIPS(nn.Module):
    """A stand-in LPIPS module: frame pairs (P, C, H, W) in [0, 1] -> their mean absolute difference (P,)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).abs().mean(dim=(1, 2, 3))


def test_lpips_keeps_the_lowest_distance_of_the_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC 6 Best-of-N: min for LPIPS (a distance), where PSNR and SSIM keep the max. The stand-in distance is
    NOISE for the noisy sample and SHIFT for the shifted one, so the best is NOISE and the worst SHIFT."""
    model, seqs, protocol = _best_of_n_setup(monkeypatch)
    result = ev.evaluate(model, seqs, protocol, progress=False, n_gif=0, lpips=_MeanAbsoluteLPIPS())
    assert result["metrics"]["lpips"]["mean"] == pytest.approx(NOISE, abs=1e-5)
    assert result["worst_sample"]["lpips"]["mean"] == pytest.approx(SHIFT, abs=1e-5)
    np.testing.assert_allclose(np.asarray(result["_per_sequence"]["lpips"]), [NOISE, NOISE], atol=1e-5)


# ------------------------------------------------------------------------------------- evaluation command line
@pytest.fixture(scope="module")
def run_dt2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run trained one step with n_substeps = 2 (n_euler_steps 2, as the KTH/Human3.6M/BAIR runs of SPEC
    4.2), and an SM-MNIST test set of 2 sequences of 6 frames."""
    from latentdyn.video.mnist import load_embedded_digits
    from latentdyn.video.moving_mnist import make_test_set, save_test_set

    root = tmp_path_factory.mktemp("spec_facts_dt2")
    cfg = PRESETS["tiny"]()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, n_substeps=2))
    train.train(cfg, root / "run", max_steps=1, progress=False, log=lambda _: None)
    digits = load_embedded_digits("test")
    data = make_test_set(digits.images[:4], digits.labels[:4], seq_len=6, deterministic=False)
    return root / "run", save_test_set(root / "test.npz", data)


def test_the_evaluation_generates_with_the_runs_substeps_by_default(run_dt2: tuple[Path, Path]) -> None:
    """SPEC 4.3: test.py's --n_euler_steps defaults to the training value (None = training value); so without
    --n-substeps a run trained with 2 Euler steps per frame is evaluated with 2."""
    run, test_set = run_dt2
    argv = [str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "1", "--out", str(run / "dt")]
    assert ev.main(argv) == 0
    (out,) = (run / "dt").glob("*.json")
    assert json.loads(out.read_text())["protocol"]["n_substeps"] == 2
    assert out.stem.endswith("_dt2")


def test_save_official_files_writes_random_1_to_random_5(
    run_dt2: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC 6 Files written: random_1.npz … random_5.npz, the first five samples (of 7 here), each a uint8
    (N_seq, T, H, W, C) array `samples` of the predicted frames, ×255 and truncated. Sample s of the stand-in
    prediction is the flat level 30·(s + 1) + 0.5 (truncated to 30·(s + 1))."""
    run, test_set = run_dt2

    def fake_chunks(model: nn.Module, cond: torch.Tensor, n_future: int, n: int, *_: Any, **__: Any) -> Iterator:
        for s in range(n):  # one sample per chunk
            level = (30 * (s + 1) + 0.5) / 255
            frames = torch.full((1, n_future, *cond.shape[1:]), level)
            yield _chunk(s, frames, cond_frames=torch.full((1, *cond.shape), level))

    monkeypatch.setattr(ev, "predict_in_chunks", fake_chunks)
    argv = [str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "7", "--out", str(run / "files")]
    assert ev.main([*argv, "--save-official-files", "--name", "official"]) == 0
    folder = run / "files" / "official_official"
    assert sorted(p.name for p in folder.glob("random_*.npz")) == [f"random_{k}.npz" for k in range(1, 6)]
    for k in range(1, 6):
        with np.load(folder / f"random_{k}.npz") as stored:
            samples = stored["samples"]
        assert samples.dtype == np.uint8 and samples.shape == (2, 4, 64, 64, 1)  # 2 sequences, 6 - 2 frames
        assert (samples == 30 * k).all()


# -------------------------------------------------------------------------------------------- training (SPEC 3)
def test_a_training_step_is_a_plain_adam_step_without_gradient_clipping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC 3: Adam with PyTorch's defaults and no gradient clipping: the gradients reach Adam as the backward
    pass left them, and the first update is Adam's first step, lr·g / (|g| + eps) (bias-corrected moments m = g,
    v = g²; eps 1e-8)."""
    seen: dict[str, Any] = {}
    make_adam = train.make_adam

    def no_clipping(*_: Any, **__: Any) -> None:
        raise AssertionError("SPEC 3: no gradient clipping")

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", no_clipping)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_value_", no_clipping)

    def checked_adam(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
        params = list(parameters)
        backward: dict[int, torch.Tensor] = {}  # the gradients as backward accumulated them
        for p in params:
            p.register_post_accumulate_grad_hook(lambda q: backward.__setitem__(id(q), cast(Any, q.grad).clone()))
        opt = make_adam(params, lr)

        def before(o: torch.optim.Optimizer, *_: Any) -> None:
            with_grad = [p for p in params if p.grad is not None]
            seen["grads"] = [(cast(torch.Tensor, p.grad).clone(), backward[id(p)]) for p in with_grad]
            seen["params"] = [(p, p.detach().clone()) for p in with_grad]
            seen["lr"] = o.param_groups[0]["lr"]

        def after(o: torch.optim.Optimizer, *_: Any) -> None:
            seen["updated"] = [p.detach().clone() for p, _ in seen["params"]]

        class Checked(torch.optim.Adam):  # (not step hooks: torch 2.2 did not call them here)
            def step(self, closure: Any = None) -> Any:
                before(self)
                result = super().step(closure)
                after(self)
                return result

        opt.__class__ = Checked
        return opt

    monkeypatch.setattr(train, "make_adam", checked_adam)
    cfg = dataclasses.replace(PRESETS["tiny"](), amp="none")
    train.train(cfg, tmp_path / "run", max_steps=1, progress=False, log=lambda _: None)
    grads = seen["grads"]
    assert len(grads) > 10
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for _, g in grads]))
    assert norm > 10  # the backward pass's gradients: large enough for a clipping to show
    for at_step, from_backward in grads:
        assert torch.equal(at_step, from_backward)
    assert seen["lr"] == pytest.approx(3e-4)  # SPEC 4.1: lr 3e-4, constant during the burn-in
    for (_, before), after, (g, _) in zip(seen["params"], seen["updated"], grads):
        expected = before - seen["lr"] * g / (g.abs() + 1e-8)
        torch.testing.assert_close(after, expected, rtol=0, atol=1e-6)


def test_validation_defaults_are_100_samples_of_25_batches_of_16_clips() -> None:
    """SPEC 3 and 4.1: n_samples_test = 100 samples per validation clip, n_iter_test = 25 batches of
    batch_size_test = 16 clips (Human3.6M: 8, README); no paper preset changes the number of samples."""
    default = TrainConfig()
    assert (default.val_samples, default.val_batch_size, default.val_sequences) == (100, 16, 25 * 16)
    for name in PAPER_PRESETS:
        cfg = PRESETS[name]()
        batch = 8 if name == "human36m" else 16
        assert (cfg.val_samples, cfg.val_batch_size, cfg.val_sequences) == (100, batch, 25 * batch), name


def _official_options(**changes: Any) -> dict[str, Any]:
    """An official config.json's options: the SPEC 4.1 defaults and the README's SM-MNIST line (SPEC 4.2)."""
    options: dict[str, Any] = dict(
        nx=64, nc=1, nf=64, nhx=128, ny=20, nz=20, skipco=False, nt_inf=5, nh_inf=256, nlayers_inf=3,
        nh_res=512, nlayers_res=4, archi="dcgan", res_gain=1.41, n_euler_steps=1, obs_scale=1, beta_y=1,
        beta_z=2.0, l2_res=1, dataset="smmnist", data_dir="DATA_DIR", seq_len=15, nt_cond=5,
    )  # fmt: skip
    options.update(changes)
    return options


def test_an_official_config_without_n_iter_test_validates_on_25_batches() -> None:
    """SPEC 4.1: n_iter_test defaults to 25 and batch_size_test to 16: a config.json that leaves them unset
    (absent or null) validates on 25 batches of its batch size."""
    assert train_config_from_official(_official_options()).val_sequences == 25 * 16
    assert train_config_from_official(_official_options(n_iter_test=None)).val_sequences == 25 * 16
    assert train_config_from_official(_official_options(batch_size_test=8)).val_sequences == 25 * 8
    assert train_config_from_official(_official_options(n_iter_test=3, batch_size_test=8)).val_sequences == 3 * 8


# --------------------------------------------------------------------------------------------- data (SPEC 5)
@pytest.mark.parametrize(("deterministic", "frames"), [(False, 25), (True, 100)])
def test_the_smmnist_test_set_command_defaults_to_the_readme_lengths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deterministic: bool, frames: int
) -> None:
    """SPEC 5.1 / 4.3: make_test_set with the README's --seq_len 25 (stochastic), --seq_len 100 with
    --deterministic. (Four digits instead of the 1,000 embedded test digits: 2 sequences, written fast.)"""
    from latentdyn.video import mnist

    digit_source = mnist.digit_source

    def four_digits(*args: Any, **kwargs: Any) -> mnist.MNISTDigits:
        digits = digit_source(*args, **kwargs)
        return mnist.MNISTDigits(digits.images[:4], digits.labels[:4])

    monkeypatch.setattr(mnist, "digit_source", four_digits)
    out = tmp_path / "test.npz"
    argv = ["smmnist-test-set", "--mnist-dir", "embedded", "--out", str(out)]
    assert data_cli.main([*argv, "--deterministic"] if deterministic else argv) == 0
    with np.load(out) as stored:
        assert stored["sequences"].shape == (frames, 2, 64, 64)  # time-major (T, N, 64, 64)


def test_kth_training_uses_persons_1_to_20(tmp_path: Path) -> None:
    """SPEC 5.2: training (and its 5 % validation) uses persons 1–20; person 21 is a test person."""
    for person in (18, 19, 20, 21):
        _write_kth_video(tmp_path, "boxing", person, 1, [_grey(10 * person)] * 3)
    train_set = KTHDataset(tmp_path, seq_len=2, split="train")  # int(0.95 · 3) = 2 videos
    val_set = KTHDataset(tmp_path, seq_len=2, split="val")
    assert sorted(v.person for v in train_set.videos + val_set.videos) == [18, 19, 20]


def test_kth_frames_keep_channel_0_of_colour_images(tmp_path: Path) -> None:
    """SPEC 5.2: the loader reads the PNGs and keeps channel 0 (red) of colour frames."""
    rgb = np.empty((64, 64, 3), dtype=np.uint8)
    rgb[...] = (200, 60, 30)
    _write_kth_video(tmp_path, "running", 5, 2, [rgb, rgb])
    dataset = KTHDataset(tmp_path, seq_len=2, split="val", rng=np.random.default_rng(0))  # int(0.95 · 1) = 0 train
    clip = dataset[0]
    assert [v.person for v in dataset.videos] == [5] and clip.shape == (2, 64, 64)
    assert (clip == 200).all()


def test_kth_test_set_draws_the_trial_uniformly_in_d1_to_d4(tmp_path: Path) -> None:
    """SPEC 5.2: each test clip draws a class uniformly, a person uniformly in 21–25, a trial d1–d4 uniformly,
    then a start (make_test_set.py, RandomState(42)). Every frame of a trial-d video has the level 60·d."""
    classes = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")  # SPEC 5.2 order
    for action in classes:
        for person in range(21, 26):
            for trial in range(1, 5):
                _write_kth_video(tmp_path, action, person, trial, [_grey(60 * trial)] * 3)
    n, seq_len = 40, 2
    with np.load(make_kth_test_set(tmp_path, seq_len=seq_len, size=n, seed=42)) as stored:
        trials = stored["sequences"][:, 0, 0, 0] // 60
        persons, actions = stored["persons"], stored["actions"]
    rs = np.random.RandomState(42)
    expected = []
    for _ in range(n):
        action, person, trial = classes[rs.randint(6)], rs.randint(21, 26), rs.randint(1, 5)
        rs.randint(3 - seq_len + 1)  # the start
        expected.append((action, person, trial))
    assert [(str(a), int(p), int(d)) for a, p, d in zip(actions, persons, trials)] == expected
    assert set(trials.tolist()) == {1, 2, 3, 4}


def test_bair_training_starts_reach_30_minus_seq_len(tmp_path: Path) -> None:
    """SPEC 5.4: a training clip starts at a random frame in [0, 30 − seq_len], both ends included. Frame i of
    the fake videos has the level 8·i, which gives the start of a clip."""
    frames = [np.full((64, 64, 3), 8 * i, dtype=np.uint8) for i in range(30)]
    for k in (1, 2):  # two videos: int(0.95 · 2) = 1 for training
        _write_png_video(tmp_path / "processed_data" / "train" / "traj_0_to_255" / str(k), frames, "{:03d}.png")
    seq_len = 28
    dataset = BAIRDataset(tmp_path, seq_len=seq_len, split="train", rng=np.random.default_rng(0))
    starts = set()
    for _ in range(60):
        clip = dataset[0]
        levels = clip[:, 0, 0, 0].astype(int) // 8
        np.testing.assert_array_equal(levels, levels[0] + np.arange(seq_len))
        starts.add(int(levels[0]))
    assert starts == set(range(30 - seq_len + 1))
