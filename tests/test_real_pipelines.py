"""The SRVP example on real video formats, end to end: raw files in the datasets' own formats → the
``data.py`` conversion and test-set commands → 2 training steps of a tiny model on the paper presets →
evaluation with LPIPS and FVD (random weights) or their skip messages. Also: the presets against SPEC §4.2,
step-seeded batches, and the errors of the configuration, the data commands and the evaluation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from examples.srvp import data as data_cli
from examples.srvp import evaluate as ev
from examples.srvp import train
from examples.srvp.config import PRESETS, ModelConfig, TrainConfig
from examples.srvp.datasets import BatchStream, generate_clips, make_data, step_seed
from latentdyn.video.collate import collate_videos, stack_videos, to_unit_interval
from latentdyn.video.datasets import KTH_CLASSES, encode_example, write_tfrecord, write_video
from latentdyn.video.fvd import I3D_ENV_VAR, InceptionI3D
from latentdyn.video.lpips import ALEXNET_ENV_VAR, LPIPS, LPIPS_ENV_VAR, AlexNetFeatures

# A tiny model on top of any preset: the presets' architecture (VGG + skips), sizes cut down.
TINY = [
    *("--conv-width", "4", "--code-size", "16", "--state-size", "4", "--noise-size", "3"),
    *("--inference-hidden", "16", "--residual-hidden", "16", "--inference-layers", "2", "--residual-layers", "2"),
    *("--batch-size", "2", "--lr-burnin", "1", "--lr-decay", "1", "--val-interval", "2", "--checkpoint-interval", "2"),
    *("--val-sequences", "2", "--val-batch-size", "2", "--val-samples", "2"),
]


@pytest.fixture(autouse=True)
def _no_user_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No weights from the user's environment or torch cache leak into the tests."""
    for var in (ALEXNET_ENV_VAR, LPIPS_ENV_VAR, I3D_ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seeded random AlexNet (torchvision layout) and I3D (pytorch-i3d layout) weight files."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(AlexNetFeatures().state_dict(), folder / "alexnet.pth")
    torch.save(InceptionI3D().state_dict(), folder / "i3d.pt")
    return {"alexnet": folder / "alexnet.pth", "i3d": folder / "i3d.pt"}


def moving_bar(n: int, height: int, width: int, level: int, rgb: bool = True) -> np.ndarray:
    """Frames (T, H, W, 3) of a bright vertical bar moving right on a ``level`` grey background."""
    frames = np.full((n, height, width, 3), level, dtype=np.uint8)
    bar = max(width // 8, 2)
    for t in range(n):
        x = (t * bar) % (width - bar)
        frames[t, :, x : x + bar] = 230
    return frames if rgb else frames[..., 0]


def train_run(run: Path, preset: str, data_dir: Path, *extra: str) -> Path:
    argv = ["--preset", preset, "--run-dir", str(run), "--data-dir", str(data_dir), *TINY, *extra]
    assert train.main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["dataset"] == preset
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert any("val_psnr" in entry and np.isfinite(entry["val_psnr"]) for entry in log)
    return run


def output_stem(run: Path, prefix: str, suffix: str) -> str:
    """Default evaluation stem: data, checkpoint evaluated and its training step, then the options. By default
    the paper evaluates the best-validation weights of KTH and Human3.6M and the final ones of the others."""
    which = "best" if prefix in ("kth", "human36m") else "last"
    step = torch.load(run / "checkpoints" / f"{which}.pt", weights_only=True)["step"]
    return f"{prefix}_{which}_step{step}_{suffix}"


def black_scores(clips: np.ndarray, nt_cond: int) -> tuple[float, np.ndarray]:
    """PSNR of the all-black predictor on uint8 sample-major clips (N, T, H, W[, C]), computed with numpy,
    and the float frames (T, N, C, H, W) it was computed on."""
    x = clips.astype(np.float64) / 255
    x = x[..., None] if x.ndim == 4 else x
    future = x[:, nt_cond:]  # (N, Tf, H, W, C)
    mse = (future**2).mean(axis=(2, 3))  # (N, Tf, C)
    psnr = (10 * np.log10(1 / mse)).mean(-1).mean(-1).mean()
    return float(psnr), np.moveaxis(x, (0, 1, 4), (1, 0, 2))


def lpips_of_black(alexnet: Path, frames: np.ndarray, nt_cond: int) -> float:
    """LPIPS of the all-black predictor: per frame, averaged over time, then over sequences."""
    metric = LPIPS.from_files(alexnet_path=alexnet)
    target = torch.from_numpy(frames[nt_cond:]).float()  # (Tf, N, C, H, W)
    with torch.no_grad():
        per_frame = metric(torch.zeros_like(target), target)  # (Tf, N)
    return float(per_frame.mean(0).mean())


# ------------------------------------------------------------------------------------------------------ KTH
@pytest.fixture(scope="module")
def kth_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data_dir, run_dir): raw .avi files → convert-kth → kth-test-set → 2 training steps (preset kth)."""
    base = tmp_path_factory.mktemp("kth")
    raw = base / "raw"
    for k, action in enumerate(KTH_CLASSES):
        (raw / action).mkdir(parents=True)
        for person, trial in ((1, 1), (2, 1), (21, 1)):
            frames = moving_bar(12, 24, 32, level=20 + 10 * k + person)
            write_video(raw / action / f"person{person:02d}_{action}_d{trial}_uncomp.avi", frames, 25)
    data = base / "data"
    assert data_cli.main(["convert-kth", str(raw), str(data)]) == 0
    assert data_cli.main(["kth-test-set", str(data), "--seq-len", "10", "--size", "16"]) == 0
    run = train_run(base / "run", "kth", data, "--seq-len", "6", "--nt-cond", "3", "--seq-len-test", "8")
    return data, run


def test_kth_commands_print_where_outputs_went(kth_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = kth_run
    # A second conversion skips every video, and says where the data is.
    raw = data.parent / "raw"
    assert data_cli.main(["convert-kth", str(raw), str(data)]) == 0
    out = capsys.readouterr().out
    assert str((data / "processed_64").resolve()) in out and "0 videos converted, 18 already there" in out
    with pytest.raises(SystemExit) as info:
        data_cli.main(["kth-test-set", str(data), "--seq-len", "10", "--size", "16"])
    assert info.value.code == 2 and "already exists" in capsys.readouterr().err


def test_kth_evaluation_with_lpips_and_fvd(
    kth_run: tuple[Path, Path], weights: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = kth_run
    argv = [str(run), "--n-samples", "2", "--nt-gen", "10", "--batch-size", "8", "--lpips-alexnet"]
    argv += [str(weights["alexnet"]), "--fvd", "--i3d-weights", str(weights["i3d"]), "--fvd-resolution", "16"]
    assert ev.main([*argv, "--fvd-samples", "2"]) == 0  # dataset and test data: the run's (kth, its data_dir)
    out = capsys.readouterr().out
    assert "skipped" not in out and "LPIPS" in out and "FVD " in out
    assert " (16 videos, mean ± std over random samples 1-2, conditioning frames included, 16x16 tf1 resize)" in out
    stem = output_stem(run, "kth", "n2_t10_dt2")
    result = json.loads((run / "eval" / f"{stem}.json").read_text())
    assert result["data"]["dataset"] == "kth" and result["n_sequences"] == 16
    assert result["protocol"]["nt_cond"] == 3 and result["protocol"]["nt_gen"] == 10
    assert len(result["metrics"]["lpips_curve"]["mean"]) == 7
    # (Not marked slow: the only test that notices LPIPS read as higher-is-better, which would report the worst.)
    assert 0 <= result["metrics"]["lpips"]["mean"] <= result["worst_sample"]["lpips"]["mean"]
    # The black predictor's scores, computed independently from the test file.
    clips = np.load(data / "svg_test_set_10.npz")["sequences"]
    psnr, frames = black_scores(clips, nt_cond=3)
    black = result["reference_predictors"]["black"]
    assert black["psnr"]["mean"] == pytest.approx(psnr, rel=1e-5)
    assert black["lpips"]["mean"] == pytest.approx(lpips_of_black(weights["alexnet"], frames, 3), rel=1e-4)
    fvd = result["fvd"]
    assert np.isfinite(fvd["value"]) and fvd["value"] >= 0
    assert fvd["samples"] == 2 and fvd["value"] == pytest.approx(np.mean(fvd["values"]))
    assert fvd["std"] == pytest.approx(np.std(fvd["values"]))
    assert fvd["protocol"]["n_cond"] == 3 and fvd["protocol"]["include_conditioning"]
    assert (fvd["protocol"]["n_videos"], fvd["protocol"]["resolution"], fvd["protocol"]["sample"]) == (16, 16, "first")
    per_sequence = dict(np.load(run / "eval" / f"{stem}_per_sequence.npz"))  # (its file closes at once)
    assert per_sequence["lpips"].shape == (16,)
    # FVD of one sample is another number: these results are not replaced by it without --overwrite.
    assert ev.main(argv) == 2
    assert "with other settings (--fvd-samples: 2 there, 1 now): pass --overwrite" in capsys.readouterr().err


def test_kth_evaluation_without_weights_skips_lpips_and_fvd(
    kth_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = kth_run
    test_file = data / "svg_test_set_10.npz"  # given by name: nt_gen is its length
    argv = [str(run), "--test-set", str(test_file), "--n-samples", "2", "--max-sequences", "4", "--fvd"]
    assert ev.main([*argv, "--name", "noweights"]) == 0
    err = capsys.readouterr().err  # (notes go to stderr)
    assert "LPIPS skipped: AlexNet ImageNet weights not found" in err and "--lpips-alexnet" in err
    assert "FVD skipped: I3D Kinetics-400 weights not found" in err and "--i3d-weights" in err
    result = json.loads((run / "eval" / "noweights.json").read_text())
    assert "AlexNet ImageNet weights not found" in result["lpips"]["skipped"]
    assert "I3D Kinetics-400 weights not found" in result["fvd"]["skipped"]
    assert "lpips" not in result["metrics"] and result["n_sequences"] == 4
    assert result["protocol"]["nt_gen"] == 10 and result["data"] == {"dataset": "kth", "test_set": str(test_file)}


def test_fvd_is_skipped_below_16_sequences(
    kth_run: tuple[Path, Path], weights: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, run = kth_run
    argv = [str(run), "--n-samples", "1", "--nt-gen", "10", "--max-sequences", "3", "--no-lpips", "--fvd"]
    argv += ["--i3d-weights", str(weights["i3d"]), "--name", "few"]
    assert ev.main(argv) == 0
    assert "FVD skipped: FVD needs at least 16 test sequences, got 3" in capsys.readouterr().out
    result = json.loads((run / "eval" / "few.json").read_text())
    assert result["lpips"] == {"skipped": "--no-lpips was given"}
    assert result["fvd"]["skipped"].startswith("FVD needs at least 16")


def test_demo_reads_the_sample_major_kth_test_set(
    kth_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("imageio")
    from examples.srvp import demo

    data, run = kth_run
    test_file = data / "svg_test_set_10.npz"
    raw = np.load(test_file)["sequences"]  # (N, T, H, W): clip-major, as kth-test-set writes it
    clips = demo.load_clips(test_file)
    assert clips.shape == (10, raw.shape[0], 1, 64, 64)
    np.testing.assert_array_equal(clips[:, 3, 0].numpy(), raw[3].astype(np.float32) / 255)
    argv = [str(run), "--test-set", str(test_file), "--out", str(tmp_path / "demo"), "--what", "swap"]
    assert demo.main(argv) == 0
    assert "(3 conditioning frames)" in capsys.readouterr().out
    renamed = tmp_path / "kth_clips.npz"  # the name no longer says it is sample-major
    renamed.write_bytes(test_file.read_bytes())
    with pytest.raises(ValueError, match=r"looks like a KTH test set .* keep its name svg_test_set_<T>\.npz"):
        demo.load_clips(renamed)


def test_kth_stream_is_step_seeded(kth_run: tuple[Path, Path]) -> None:
    data, _ = kth_run
    model = dataclasses.replace(PRESETS["kth"]().model, conv_width=4)
    cfg = dataclasses.replace(PRESETS["kth"](), model=model, data_dir=str(data), seq_len=6, batch_size=3)
    cfg = dataclasses.replace(cfg, nt_cond=3, seq_len_test=8, val_sequences=4)
    stream, val = make_data(cfg)
    assert val.shape == (8, 4, 1, 64, 64) and val.dtype == torch.float32
    later, first, again = stream[5], stream[2], stream[5]
    assert later.shape == (6, 3, 1, 64, 64)
    assert torch.equal(later, again) and not torch.equal(later, first)
    other, val2 = make_data(cfg)  # a fresh stream (a resumed run, another worker) sees the same batches
    assert torch.equal(other[2], first) and torch.equal(val, val2)
    reseeded, _ = make_data(dataclasses.replace(cfg, seed=2))
    assert not torch.equal(reseeded[2], first)


# ------------------------------------------------------------------------------------------------ Human3.6M
def test_human36m_end_to_end(tmp_path: Path, weights: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    for subject, name, level in ((1, "Walking.1", 40), (1, "Eating 2.2", 80), (9, "Posing.3", 120)):
        folder = raw / f"S{subject}" / "Videos"
        folder.mkdir(parents=True, exist_ok=True)
        write_video(folder / f"{name}.mp4", moving_bar(20, 1000, 1000, level), 50)
    data = tmp_path / "data"
    assert data_cli.main(["convert-human36m", str(raw), str(data)]) == 0
    argv = ["human36m-test-set", str(data), "--seq-len", "10", "--subsampling", "2", "--size", "4"]
    assert data_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert str((data / "test_set_10_2").resolve()) in out and str(data.resolve()) in out
    extra = ("--subsampling", "2", "--seq-len", "6", "--nt-cond", "3", "--seq-len-test", "8")
    run = train_run(tmp_path / "run", "human36m", data, *extra)
    # Test data, subsampling and dataset come from the run: test_set_10_2 under its data_dir.
    argv = [str(run), "--n-samples", "2", "--nt-gen", "10", "--lpips-alexnet", str(weights["alexnet"])]
    assert ev.main(argv) == 0
    result = json.loads((run / "eval" / f"{output_stem(run, 'human36m', 'n2_t10_dt2')}.json").read_text())
    assert result["data"] == {"dataset": "human36m", "test_set": str(data)}
    assert result["n_sequences"] == 4 and "lpips" in result["metrics"]
    assert result["fvd"] == {"skipped": "not requested (pass --fvd)"}
    clips = np.stack([np.load(data / "test_set_10_2" / f"test_{i}.npz")["image"][::2] for i in range(4)])
    assert clips.shape == (4, 10, 64, 64, 3)
    psnr, frames = black_scores(clips, nt_cond=3)
    black = result["reference_predictors"]["black"]
    assert black["psnr"]["mean"] == pytest.approx(psnr, rel=1e-5)
    assert black["lpips"]["mean"] == pytest.approx(lpips_of_black(weights["alexnet"], frames, 3), rel=1e-4)


# ----------------------------------------------------------------------------------------------------- BAIR
def bair_record(video: np.ndarray) -> bytes:
    """A record with BAIR's feature names: 30 frames of ``<i>/image_aux1/encoded`` (raw RGB bytes)."""
    features: dict[str, object] = {f"{i}/image_aux1/encoded": video[i].tobytes() for i in range(30)}
    features.update({f"{i}/action": np.zeros(4, np.float32) for i in range(30)})
    return encode_example(features)


def test_bair_end_to_end(tmp_path: Path, weights: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw" / "softmotion30_44k"
    videos = {
        "train": [moving_bar(30, 64, 64, level) for level in (30, 60, 90)],
        "test": [moving_bar(30, 64, 64, level) for level in (50, 110)],
    }
    for split, clips in videos.items():
        (raw / split).mkdir(parents=True)
        write_tfrecord(raw / split / f"traj_0_to_{len(clips) - 1}.tfrecords", [bair_record(v) for v in clips])
    data = tmp_path / "data"
    assert data_cli.main(["convert-bair", str(tmp_path / "raw"), str(data)]) == 0
    assert str((data / "processed_data").resolve()) in capsys.readouterr().out
    run = train_run(tmp_path / "run", "bair", data, "--seq-len", "6", "--seq-len-test", "8")
    argv = [str(run), "--n-samples", "2", "--lpips-alexnet", str(weights["alexnet"])]
    assert ev.main(argv) == 0
    result = json.loads((run / "eval" / f"{output_stem(run, 'bair', 'n2_t30_dt2')}.json").read_text())
    # Every test video, from frame 0, 30 frames (the README's nt_gen), 2 conditioning frames (the preset's).
    assert result["n_sequences"] == 2 and (result["protocol"]["nt_cond"], result["protocol"]["nt_gen"]) == (2, 30)
    psnr, frames = black_scores(np.stack(videos["test"]), nt_cond=2)
    black = result["reference_predictors"]["black"]
    assert black["psnr"]["mean"] == pytest.approx(psnr, rel=1e-5)
    assert black["lpips"]["mean"] == pytest.approx(lpips_of_black(weights["alexnet"], frames, 2), rel=1e-4)


def test_bair_batches_draw_videos_with_replacement(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "softmotion30_44k"
    for split, n in (("train", 3), ("test", 1)):
        (raw / split).mkdir(parents=True)
        clips = [moving_bar(30, 64, 64, 20 + 40 * i) for i in range(n)]
        write_tfrecord(raw / split / "traj.tfrecords", [bair_record(v) for v in clips])
    assert data_cli.main(["convert-bair", str(tmp_path / "raw"), str(tmp_path / "data")]) == 0
    cfg = dataclasses.replace(PRESETS["bair"](), data_dir=str(tmp_path / "data"), batch_size=8, val_sequences=3)
    stream, val = make_data(cfg)
    # 3 training videos: 2 for training, 1 for validation (the official 95 % / 5 % rule).
    order = np.random.RandomState(42).permutation(3)
    train_levels, val_levels = {20 + 40 * int(i) for i in order[:2]}, {20 + 40 * int(order[2])}

    def levels(x: torch.Tensor) -> set[int]:  # background level of each clip (the bar never reaches x = 63)
        return {round(float(v) * 255) for v in x[0, :, 0, 0, -1]}

    assert val.shape == (12, 3, 3, 64, 64) and levels(val) == val_levels  # the one video, drawn 3 times
    batch = stream[0]
    assert batch.shape == (12, 8, 3, 64, 64) and batch.dtype == torch.uint8
    assert levels(to_unit_interval(batch)) <= train_levels  # 8 clips from 2 videos: drawn with replacement
    assert torch.equal(stream[0], batch)


# --------------------------------------------------------------------------------------------------- folder
def test_folder_dataset_training_and_test_clips(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    for i in range(3):
        write_video(videos / f"clip{i}.gif", moving_bar(9, 40, 48, 30 * i + 20), 10)
    model = dataclasses.replace(PRESETS["tiny"]().model, channels=1)
    cfg = dataclasses.replace(
        PRESETS["tiny"](), model=model, dataset="folder", data_dir=str(videos), folder_crop="center"
    )
    stream, val = make_data(cfg)
    assert stream[0].shape == (6, 4, 1, 64, 64) and val.shape == (6, 4, 1, 64, 64)
    clips = ev.load_test_clips("folder", videos, nt_gen=8, image_size=64, grayscale=True, crop="center")
    assert clips.shape == (8, 3, 1, 64, 64) and clips.dtype == torch.uint8
    (tmp_path / "one").mkdir()
    (videos / "clip0.gif").rename(tmp_path / "one" / "clip0.gif")
    with pytest.raises(ValueError, match=r"data_dir: the folder dataset needs at least 2 videos .* found 1"):
        make_data(dataclasses.replace(cfg, data_dir=str(tmp_path / "one")))


# ------------------------------------------------------------------------------------------ presets, config
SPEC_TABLE = {
    # dataset: ny, nz, n_euler_steps, res_gain, archi, skipco, nt_cond, nt_inf, obs_scale, beta_z, batch, nc,
    # seq_len, burnin, decay, val_interval, batch_size_test, seq_len_test (SPEC §4.2; None: the defaults)
    "kth": (50, 50, 2, 1.2, "vgg", True, 10, 3, 0.2, 1.0, 100, 1, 20, 150_000, 50_000, 5000, 16, 30),
    "human36m": (50, 50, 2, 1.2, "vgg", True, 8, 3, 0.2, 1.0, 100, 3, 16, 325_000, 25_000, 20000, 8, 53),
    "bair": (50, 50, 2, 1.41, "vgg", True, 2, 2, 0.71, 1.0, 192, 3, 12, 1_000_000, 500_000, 20000, 16, 12),
}


@pytest.mark.parametrize("name", sorted(SPEC_TABLE))
def test_presets_match_the_readme_command_lines(name: str) -> None:
    cfg = PRESETS[name]()
    m = cfg.model
    got = (
        m.state_size,
        m.noise_size,
        m.n_substeps,
        m.residual_gain,
        m.architecture,
        m.skip_connections,
        cfg.nt_cond,
        m.n_inference_frames,
        m.obs_scale,
        m.beta_z,
        cfg.batch_size,
        m.channels,
        cfg.seq_len,
        cfg.lr_burnin,
        cfg.lr_decay,
        cfg.val_interval,
        cfg.val_batch_size,
        cfg.test_len,
    )
    assert got == SPEC_TABLE[name]
    # Everything else at the official defaults (SPEC §4.1).
    defaults = ModelConfig()
    for field in ("image_size", "conv_width", "code_size", "inference_hidden", "inference_layers"):
        assert getattr(m, field) == getattr(defaults, field), field
    assert (m.residual_hidden, m.residual_layers, m.beta_y, m.residual_weight) == (512, 4, 1.0, 1.0)
    assert (cfg.lr, cfg.val_samples, cfg.val_sequences, cfg.dataset) == (3e-4, 100, 25 * cfg.val_batch_size, name)
    assert cfg.subsampling == 8 and cfg.data_dir == ""


@pytest.mark.parametrize("name", ["kth", "human36m", "bair"])
def test_real_presets_need_a_data_dir(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=rf"data_dir: the '{name}' dataset needs --data-dir DIR"):
        make_data(PRESETS[name]())
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=r"data_dir: no directory at .*nowhere"):
        make_data(dataclasses.replace(PRESETS[name](), data_dir=str(missing)))
    with pytest.raises(ValueError, match=rf"data_dir: {name} data in {tmp_path} is not usable: root: expected"):
        make_data(dataclasses.replace(PRESETS[name](), data_dir=str(tmp_path)))
    assert train.main(["--preset", name, "--run-dir", str(tmp_path / "run"), "--data-dir", str(missing)]) == 2
    assert "data_dir: no directory at" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "ucf101"}, r"dataset: expected one of \('smmnist', 'kth', 'human36m', 'bair', 'folder'\)"),
        ({"subsampling": 0}, r"subsampling: expected an int >= 1, got 0"),
        ({"folder_frame_step": 0}, r"folder_frame_step: expected an int >= 1, got 0"),
        ({"folder_crop": "edge"}, r"folder_crop: expected one of \('none', 'center'\), got 'edge'"),
        ({"dataset": "kth", "channels": 3}, r"channels: the 'kth' dataset has 1-channel frames, got channels=3"),
        ({"dataset": "bair", "channels": 1}, r"channels: the 'bair' dataset has 3-channel frames, got channels=1"),
        ({"dataset": "bair", "channels": 3, "seq_len": 31}, r"seq_len: BAIR videos have 30 frames, got 31"),
        ({"dataset": "bair", "channels": 3, "seq_len_test": 40}, r"seq_len_test: BAIR videos have 30 frames, got 40"),
        ({"dataset": "bair", "channels": 3, "image_size": 32}, r"image_size: BAIR frames are 64x64, got image_size=32"),
        ({"amp": "fp8"}, r"amp: expected one of \('none', 'bf16', 'fp16'\), got 'fp8'"),
        ({"lr_burnin": 0, "lr_decay": 0}, r"lr_burnin, lr_decay: expected >= 0 with a positive sum, got 0, 0"),
        ({"n_inference_frames": 3, "seq_len": 2}, r"seq_len: expected at least n_inference_frames=3, got 2"),
        ({"n_inference_frames": 3, "nt_cond": 2}, r"nt_cond: expected at least n_inference_frames=3, got 2"),
        ({"nt_cond": 5, "seq_len_test": 5}, r"seq_len_test: expected more than nt_cond=5 frames, got 5"),
        ({"nt_cond": 5, "seq_len": 5}, r"seq_len_test: expected more than nt_cond=5 frames, got 5"),  # (0: seq_len)
    ],
)
def test_train_config_errors(changes: dict[str, object], message: str) -> None:
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    model = ModelConfig(**{k: v for k, v in changes.items() if k in model_fields})  # type: ignore[arg-type]
    train_changes = {k: v for k, v in changes.items() if k not in model_fields}
    with pytest.raises(ValueError, match=message):
        TrainConfig(model=model, **train_changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (  # --adjoint true with Euler trained without it, and config.json said it had
            {"adjoint": True},
            r"adjoint: the adjoint method is for the torchdiffeq integrators",
        ),
        (  # dopri5 took 190 s per step of the smmnist-cpu preset (bf16): it cannot reach 1e-7 in bf16
            {"amp": "bf16", "integrator": "dopri5"},
            r"integrator-?_?rtol: 1e-07 is below the resolution of bf16 autocast \(eps 0.0078125\), which 'dopri5'",
        ),
        ({"amp": "fp16", "integrator": "bosh3", "integrator_rtol": 1e-4}, r"integrator-?_?rtol: 0.0001 is below"),
    ],
)
def test_new_run_refusals(
    changes: dict[str, object], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused for a new run, by train() and by the command line (naming the flag), while a saved run's
    configuration is read as it was written (see test_python_api's run of an earlier version)."""
    from examples.srvp.config import check_new_run

    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    model = ModelConfig(**{k: v for k, v in changes.items() if k in model_fields})  # type: ignore[arg-type]
    train_changes = {k: v for k, v in changes.items() if k not in model_fields}
    cfg = TrainConfig(model=model, **train_changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^" + message):
        check_new_run(cfg)
    with pytest.raises(ValueError, match="^" + message):
        train.train(cfg, tmp_path / "run", progress=False, log=lambda _: None)
    argv = ["--preset", "tiny", "--run-dir", str(tmp_path / "run")]
    for key, value in changes.items():
        argv += ["--" + key.replace("_", "-"), str(value).lower() if isinstance(value, bool) else str(value)]
    assert train.main(argv) == 2
    assert capsys.readouterr().err.startswith("error: --")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data_dir": None}, r"^data_dir: expected a str \(a directory or file\), got NoneType$"),
        ({"device": 0}, r"^device: expected a str such as 'cpu' or 'cuda', got int$"),
        ({"lr": "3e-4"}, r"^lr: expected a number, got str$"),
        ({"max_minutes": True}, r"^max_minutes: expected a number, got bool$"),
    ],
)
def test_train_config_type_errors(changes: dict[str, object], message: str) -> None:
    """A value of the wrong type (from an edited config.json) names its field; "3e-4" is not read as a number."""
    with pytest.raises(TypeError, match=message):
        TrainConfig(**changes)  # type: ignore[arg-type]


def test_smmnist_batches_are_unchanged() -> None:
    """The batch of step s is the official generator drawn from RandomState(step_seed(seed, s))."""
    from latentdyn.video.mnist import digit_source

    cfg = PRESETS["tiny"]()
    stream, val = make_data(cfg)
    assert isinstance(stream, BatchStream)
    digits = np.asarray(digit_source("embedded", "train").images)
    order = np.random.RandomState(42).permutation(len(digits))
    n_train = int(0.95 * len(digits))
    motion = dict(num_digits=2, max_speed=4, deterministic=False)
    for step in (0, 7):
        rs = np.random.RandomState(step_seed(cfg.seed, step))
        clips = generate_clips(digits[order[:n_train]], cfg.batch_size, cfg.seq_len, rs, **motion)  # type: ignore[arg-type]
        batch = stream[step]  # uint8 through the DataLoader (a quarter of the bytes), converted where it is used
        assert batch.dtype == torch.uint8 and torch.equal(batch, stack_videos(list(clips)))
    rs = np.random.RandomState(step_seed(cfg.seed, 0, stream=1))
    clips = generate_clips(digits[order[n_train:]], cfg.val_sequences, cfg.test_len, rs, **motion)  # type: ignore[arg-type]
    assert torch.equal(val, collate_videos(list(clips)))


# --------------------------------------------------------------------------------------- command errors
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["convert-kth", "{tmp}/none", "{tmp}/out"], "convert-kth: error: raw_dir: expected a directory at"),
        (["kth-test-set", "{tmp}"], "kth-test-set: error: root: expected a directory at"),
        (["convert-human36m", "{tmp}", "{tmp}/out"], "convert-human36m: error: raw_dir: found no .mp4 video"),
        (["human36m-test-set", "{tmp}"], "human36m-test-set: error: data_dir: expected a directory at"),
        (["convert-bair", "{tmp}", "{tmp}/out"], "convert-bair: error: raw_dir: expected a directory at"),
        (["kth-test-set", "{tmp}", "--seq-len", "0"], "kth-test-set: error: seq_len: expected an int >= 1"),
    ],
)
def test_data_command_errors_exit_2_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        data_cli.main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err
    assert len(err.strip().splitlines()) == 1


def test_evaluation_errors_name_the_missing_test_data(
    kth_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = kth_run
    assert ev.main([str(run), "--nt-gen", "12"]) == 2
    err = capsys.readouterr().err
    assert "no KTH test set" in err and f"kth-test-set {data} --seq-len 12" in err
    assert ev.main([str(run), "--dataset", "smmnist"]) == 2
    assert "--test-set: required for the 'smmnist' dataset" in capsys.readouterr().err
    assert ev.main([str(run), "--dataset", "human36m", "--test-set", str(tmp_path)]) == 2
    assert "human36m-test-set" in capsys.readouterr().err
    assert ev.main([str(run), "--dataset", "bair", "--test-set", str(tmp_path)]) == 2
    assert "convert-bair RAW_DIR" in capsys.readouterr().err
