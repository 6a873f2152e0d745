"""Training the SRVP example on clips held as arrays: ``--dataset folder --data-dir CLIPS.npz``, whose
``sequences`` array is uint8 and time-major (T, N, H, W) or (T, N, H, W, C), the layout ``evaluate --test-set``
and ``demo`` already read. No video decoder is needed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.srvp import demo, evaluate, train
from examples.srvp.config import PRESETS, TrainConfig
from examples.srvp.datasets import make_data

N_VIDEOS, N_FRAMES = 20, 12


def labelled_videos(channels: int = 0, size: int = 64) -> np.ndarray:
    """Time-major uint8 videos (T, N, H, W[, C]) whose pixel (0, 0) holds the video's index and (0, 1) the
    frame's index, so that every clip can be traced back to where it was cut."""
    videos = np.zeros((N_FRAMES, N_VIDEOS, size, size), dtype=np.uint8)
    videos[:, :, 0, 0] = np.arange(N_VIDEOS)[None, :]
    videos[:, :, 0, 1] = np.arange(N_FRAMES)[:, None]
    videos[:, :, 10:20, 10:20] = 200
    return np.repeat(videos[..., None], channels, axis=-1) if channels else videos


def tiny_config(data: Path, channels: int = 1, **changes: object) -> TrainConfig:
    cfg = PRESETS["tiny"]()
    model = dataclasses.replace(cfg.model, channels=channels)
    return dataclasses.replace(cfg, model=model, dataset="folder", data_dir=str(data), **changes)


def origins(clips: torch.Tensor) -> list[tuple[int, list[int]]]:
    """(video, frame indices) of every clip of a (T, B, C, H, W) batch, uint8 or in [0, 1]."""
    labels = clips[:, :, 0, 0, :2].double()
    labels = labels * 255 if clips.is_floating_point() else labels
    labels = labels.round().long()
    out = []
    for b in range(clips.shape[1]):
        video = labels[:, b, 0]
        assert (video == video[0]).all(), "a clip mixes videos"
        out.append((int(video[0]), labels[:, b, 1].tolist()))
    return out


@pytest.mark.parametrize("frame_step", [1, 2])
def test_training_clips_are_windows_of_the_split_videos(tmp_path: Path, frame_step: int) -> None:
    np.savez(tmp_path / "clips.npz", sequences=labelled_videos())
    cfg = tiny_config(tmp_path / "clips.npz", folder_frame_step=frame_step, batch_size=16, val_sequences=3)
    stream, val = make_data(cfg)
    # The official 95 % / 5 % split of the videos, as for a folder of video files.
    order = np.random.RandomState(42).permutation(N_VIDEOS)
    train_videos, val_videos = set(order[:19].tolist()), set(order[19:].tolist())
    seen: set[int] = set()
    for step in range(4):
        batch = stream[step]
        assert batch.shape == (cfg.seq_len, 16, 1, 64, 64) and batch.dtype == torch.uint8
        assert torch.equal(stream[step], batch)  # a step's batch depends on the step only
        for video, frames in origins(batch):
            assert video in train_videos
            assert frames == list(range(frames[0], frames[0] + frame_step * cfg.seq_len, frame_step))
            seen.add(video)
        assert int(batch[:, :, 0, 15, 15].min()) == 200  # the content came along
    assert len(seen) > 10  # videos are drawn at random, not always the first
    assert not torch.equal(stream[0], stream[1])
    assert val.shape == (cfg.test_len, 3, 1, 64, 64) and val.is_floating_point()
    assert {video for video, _ in origins(val)} == val_videos


def test_colour_clips_and_frame_size_must_match_the_model(tmp_path: Path) -> None:
    np.savez(tmp_path / "rgb.npz", sequences=labelled_videos(channels=3))
    stream, _ = make_data(tiny_config(tmp_path / "rgb.npz", channels=3))
    assert stream[0].shape == (6, 4, 3, 64, 64)
    with pytest.raises(ValueError, match=r"^data_dir: the folder clips in .*rgb\.npz have \(C, H, W\) = \(3, 64, 64\)"):
        make_data(tiny_config(tmp_path / "rgb.npz", channels=1))
    np.savez(tmp_path / "small.npz", sequences=labelled_videos(size=32))
    with pytest.raises(ValueError, match=r"\(C, H, W\) = \(1, 32, 32\), but the model reads \(1, 64, 64\)"):
        make_data(tiny_config(tmp_path / "small.npz"))


@pytest.mark.parametrize(
    ("arrays", "changes", "message"),
    [
        ({"sequences": labelled_videos()[:5]}, {}, r"have 5 frames, fewer than the 6 that clips of 6 frames"),
        ({"sequences": labelled_videos()}, {"folder_frame_step": 3}, r"fewer than the 16 .* \(every 3\) need"),
        ({"sequences": labelled_videos()[:, :1]}, {}, r"needs at least 2 videos in .*, found 1"),
        ({"sequences": labelled_videos().astype(np.float32)}, {}, r"expected uint8 sequences .* got float32"),
        ({"videos": labelled_videos()}, {}, r"has no 'sequences' array"),
        ({"sequences": labelled_videos()}, {"folder_crop": "center"}, r"^folder_crop: .* nothing to crop"),
    ],
)
def test_unusable_clip_arrays_are_refused_naming_the_option(
    tmp_path: Path, arrays: dict[str, np.ndarray], changes: dict[str, object], message: str
) -> None:
    np.savez(tmp_path / "clips.npz", **arrays)
    with pytest.raises(ValueError, match=message) as info:
        make_data(tiny_config(tmp_path / "clips.npz", **changes))
    assert str(info.value).startswith("folder_crop:" if changes.get("folder_crop") else "data_dir:")
    assert "--test-set" not in str(info.value)


def test_train_evaluate_and_demo_on_clip_arrays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The commands a user runs on arrays of their own: train on one .npz, evaluate on another, demo."""
    np.savez(tmp_path / "train.npz", sequences=labelled_videos())
    np.savez(tmp_path / "test.npz", sequences=labelled_videos()[:, :3])
    run = tmp_path / "run"
    argv = ["--preset", "tiny", "--run-dir", str(run), "--dataset", "folder", "--data-dir", str(tmp_path / "train.npz")]
    assert train.main([*argv, "--channels", "1", "--max-steps", "2", "--threads", "1"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["data_dir"] == str(tmp_path / "train.npz")
    assert f"evaluate: python -m examples.srvp.evaluate {run} --test-set TEST_CLIPS.npz" in capsys.readouterr().out
    out = tmp_path / "eval"
    assert evaluate.main([str(run), "--test-set", str(tmp_path / "test.npz"), "--no-lpips", "--n-samples", "2",
                          "--out", str(out)]) == 0  # fmt: skip
    (result_file,) = out.glob("*.json")
    assert json.loads(result_file.read_text())["n_sequences"] == 3
    assert demo.main([str(run), "--out", str(tmp_path / "gifs"), "--what", "swap"]) == 0
    assert list((tmp_path / "gifs").glob("*.gif"))


def test_evaluate_and_demo_read_the_clips_as_training_did(tmp_path: Path) -> None:
    """Diff-review findings: an .npz was evaluated at consecutive frames though the run trained on one frame in
    ``--folder-frame-step``; and demo (no --test-set) read every video of the training .npz, whole, predicting
    its full length (a 300-frame tiny run went NaN and crashed writing the GIF)."""
    from examples.srvp.checkpoint import load_model, read_run_config

    videos = np.zeros((40, 6, 64, 64), dtype=np.uint8)
    videos[:, :, 0, 0] = np.arange(6)[None, :]
    videos[:, :, 0, 1] = np.arange(40)[:, None]
    np.savez(tmp_path / "clips.npz", sequences=videos)
    run = tmp_path / "run"
    argv = ["--preset", "tiny", "--run-dir", str(run), "--dataset", "folder", "--data-dir", str(tmp_path / "clips.npz")]
    assert train.main([*argv, "--channels", "1", "--folder-frame-step", "2", "--max-steps", "1", "--threads", "1"]) == 0
    config, model = read_run_config(run), load_model(run)
    options = evaluate.run_clip_options(config["train"], model)
    clips = evaluate.load_test_clips("folder", tmp_path / "clips.npz", nt_gen=6, **options)
    assert clips.shape == (6, 6, 1, 64, 64)
    assert [frames for _, frames in origins(clips)] == [[0, 2, 4, 6, 8, 10]] * 6
    with pytest.raises(ValueError, match=r"fewer than the 25 \(one in 2: 49 frames\) asked for; lower --nt-gen"):
        evaluate.load_test_clips("folder", tmp_path / "clips.npz", nt_gen=25, **options)
    shown, source = demo.load_run_clips(None, config, model, 2)  # the demo's default: the run's data_dir
    assert source == tmp_path / "clips.npz" and shown.shape == (6, 2, 1, 64, 64)  # seq_len_test frames, 2 clips
    assert [frames for _, frames in origins(shown)] == [[0, 2, 4, 6, 8, 10]] * 2


@pytest.mark.parametrize("dataset", ["kth", "human36m", "bair"])
def test_evaluate_reads_clips_of_ones_own_for_any_datasets_model(tmp_path: Path, dataset: str) -> None:
    """A KTH run's own .npz was looked for as a folder holding svg_test_set_40.npz (demo read it as clips)."""
    videos = labelled_videos()
    file = tmp_path / "my_clips.npz"
    np.savez(file, sequences=videos)
    clips = evaluate.load_test_clips(dataset, file, nt_gen=10, max_sequences=3)
    assert clips.dtype == torch.uint8 and clips.shape == (10, 3, 1, 64, 64)
    assert torch.equal(clips[:, :, 0], torch.from_numpy(videos[:10, :3]))
    with pytest.raises(ValueError, match=r"--test-set: .*my_clips.npz holds clips of 12 frames, fewer than the 40"):
        evaluate.load_test_clips(dataset, file, nt_gen=40)
    # A KTH test set's name still means the KTH layout (sample-major), not clips of one's own.
    named = tmp_path / "svg_test_set_10.npz"
    persons, actions = np.arange(3), np.array(["walking"] * 3)
    np.savez(named, sequences=np.ascontiguousarray(videos.swapaxes(0, 1)[:3, :10]), persons=persons, actions=actions)
    kth = evaluate.load_test_clips("kth", named, nt_gen=0)
    assert torch.equal(kth[:, :, 0], torch.from_numpy(videos[:10, :3]))


def test_demo_blames_the_runs_config_for_an_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^run_dir: config.json: train.dataset: expected one of .*got 'ucf101'$"):
        demo.load_run_clips(None, {"train": {"dataset": "ucf101"}}, None, 2)  # type: ignore[arg-type]
