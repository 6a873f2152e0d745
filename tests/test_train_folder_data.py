"""What a ``--dataset folder`` run records of its data and checks on resume (examples/srvp/train.py, datasets.py):
the videos its 95 % / 5 % split was drawn from, the note of a new run, and the messages about videos too short."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from shared_fixtures import frame_folder

from examples.srvp import train
from examples.srvp.checkpoint import load_checkpoint
from examples.srvp.config import PRESETS

pytest.importorskip("PIL")


def _videos(root: Path, names: list[str], n_frames: int = 8) -> Path:
    for i, name in enumerate(names):
        frame_folder(root / name, n_frames, 10 + 20 * i)
    return root


def _new_run(run: Path, videos: Path, *extra: str) -> list[str]:
    """The command line of a new tiny folder run (one thread)."""
    return ["--preset", "tiny", "--run-dir", str(run), "--dataset", "folder", "--data-dir", str(videos), "--threads",
            "1", *extra]  # fmt: skip


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``error:`` line of a command that failed cleanly."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


def _state(run: Path) -> tuple[bytes, bytes, int]:
    """config.json, the log and last.pt's step: what a refused resume must leave as it was."""
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    return (run / "config.json").read_bytes(), (run / "train_log.jsonl").read_bytes(), step


NAMES = ["cat", "dog", "owl", "pig", "ram", "yak", "eel"]


def test_a_new_folder_run_records_its_videos_relative_to_data_dir(tmp_path: Path) -> None:
    videos = _videos(tmp_path / "videos", NAMES)
    frame_folder(videos / "nested" / "bee", 8, 200)
    run = tmp_path / "run"
    assert train.main([*_new_run(run, videos), "--max-steps", "1"]) == 0
    data = json.loads((run / "config.json").read_text())["data"]
    assert sorted(data["videos"]) == sorted([*NAMES, "nested/bee"])  # names relative to data_dir, '/'-separated
    assert data["validation"] and set(data["validation"]) < set(data["videos"])


def test_a_resume_after_a_video_was_added_or_removed_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Adding a video redraws the permutation of the 95 % / 5 % split: the resumed run would train on a former
    validation video and select best.pt on other clips. The resume is refused before anything is written."""
    videos = _videos(tmp_path / "videos", NAMES)
    run = tmp_path / "run"
    argv = _new_run(run, videos)
    assert train.main([*argv, "--max-steps", "1"]) == 0
    before = _state(run)
    frame_folder(videos / "zebu", 8, 250)
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--threads", "1", "--max-steps", "2"]) == 2
    line = _error(capsys)
    assert line.startswith("error: --resume: data_dir ") and str(videos) in line
    assert "1 video(s) added (zebu), 0 removed" in line
    last = run / "checkpoints" / "last.pt"
    assert "validation" in line and f"--init-from {last}" in line
    assert (
        f"python -m examples.srvp.train --run-dir NEW_RUN --dataset folder --data-dir {videos} with the run's preset"
        in line
    )
    assert _state(run) == before
    # What the message says to run, with the run's preset: a new run on the folder as it is, from the weights.
    fresh = tmp_path / "fresh"
    assert train.main([*_new_run(fresh, videos), "--init-from", str(last), "--max-steps", "1"]) == 0
    saved = json.loads((fresh / "config.json").read_text())
    assert saved["train"]["dataset"] == "folder" and "zebu" in saved["data"]["videos"]
    # From Python the message names run_dir and the call that starts a new run.
    cfg = dataclasses.replace(PRESETS["tiny"](), dataset="folder", data_dir=str(videos), threads=1)
    with pytest.raises(ValueError, match=r"^run_dir: data_dir .* train\(cfg, NEW_RUN, init_from='.*last\.pt'\)"):
        train.train(cfg, run, resume=True, progress=False, log=lambda _: None)
    assert _state(run) == before
    # the same for the command of a requeued job, under its own flag
    assert train.main([*argv, "--auto-resume", "--max-steps", "2"]) == 2
    line = _error(capsys)
    assert line.startswith("error: --auto-resume: ") and "1 video(s) added (zebu), 0 removed" in line
    assert _state(run) == before
    # a video removed instead
    shutil.rmtree(videos / "zebu")
    shutil.rmtree(videos / "owl")
    assert train.main(["--resume", str(run), "--threads", "1", "--max-steps", "2"]) == 2
    assert "0 video(s) added, 1 removed (owl)" in _error(capsys)
    assert _state(run) == before
    # the folder as it was: the run goes on
    frame_folder(videos / "owl", 8, 50)
    assert train.main(["--resume", str(run), "--threads", "1", "--max-steps", "2"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2


def test_a_moved_folder_resumes_and_is_still_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """data_dir may be edited in config.json when the data moved (the names are relative to it); the moved folder
    is checked like the original."""
    videos = _videos(tmp_path / "videos", NAMES)
    run = tmp_path / "run"
    assert train.main([*_new_run(run, videos), "--max-steps", "1"]) == 0
    recorded = json.loads((run / "config.json").read_text())["data"]
    moved = tmp_path / "elsewhere" / "clips"
    moved.parent.mkdir()
    videos.rename(moved)
    config = json.loads((run / "config.json").read_text())
    config["train"]["data_dir"] = str(moved)
    (run / "config.json").write_text(json.dumps(config, indent=2))
    assert train.main(["--resume", str(run), "--threads", "1", "--max-steps", "2"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert json.loads((run / "config.json").read_text())["data"] == recorded
    frame_folder(moved / "zebu", 8, 250)
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--threads", "1", "--max-steps", "3"]) == 2
    line = _error(capsys)
    assert f"data_dir {moved} " in line and "1 video(s) added (zebu), 0 removed" in line


def test_a_run_without_a_data_record_resumes_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run made before config.json recorded its data resumes as before (nothing to compare with), and says that
    its split is drawn from the folder as it is now."""
    videos = _videos(tmp_path / "videos", NAMES)
    run = tmp_path / "run"
    assert train.main([*_new_run(run, videos), "--max-steps", "1"]) == 0
    config = json.loads((run / "config.json").read_text())
    del config["data"]
    (run / "config.json").write_text(json.dumps(config, indent=2))
    frame_folder(videos / "zebu", 8, 250)
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--threads", "1", "--max-steps", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count("does not record the videos the run's train/validation split was drawn from") == 1, err
    assert f"the {len(NAMES) + 1} videos in {videos}" in err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert "data" not in json.loads((run / "config.json").read_text())  # (config.json is left as it was)


def test_a_malformed_data_record_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    videos = _videos(tmp_path / "videos", NAMES[:3])
    run = tmp_path / "run"
    assert train.main([*_new_run(run, videos), "--max-steps", "1"]) == 0
    config = json.loads((run / "config.json").read_text())
    config["data"] = {"videos": "cat"}
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--threads", "1", "--max-steps", "2"]) == 2
    assert _error(capsys).startswith(f"error: --resume: {run / 'config.json'}: its 'data' section is not one")


def test_an_npz_run_records_its_numbers_of_videos_and_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    clips = tmp_path / "clips.npz"
    np.savez(clips, sequences=rng.integers(0, 256, (10, 20, 64, 64), dtype=np.uint8))
    run = tmp_path / "run"
    assert train.main([*_new_run(run, clips), "--max-steps", "1"]) == 0
    err = capsys.readouterr().err
    assert err.count("note: folder data: 20 videos of 10 frames in ") == 1, err
    data = json.loads((run / "config.json").read_text())["data"]
    assert (data["videos"], data["frames"]) == (20, 10) and set(data["validation"]) < set(range(20))
    np.savez(clips, sequences=rng.integers(0, 256, (10, 21, 64, 64), dtype=np.uint8))  # one video more
    assert train.main(["--resume", str(run), "--threads", "1", "--max-steps", "2"]) == 2
    assert "held 20 videos of 10 frames, data_dir now holds 21 videos of 10 frames" in _error(capsys)


def test_a_new_folder_run_notes_its_data_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The note says how many videos, which are held out, and how frames are read; a resume does not repeat it."""
    videos = _videos(tmp_path / "videos", NAMES)
    run = tmp_path / "run"
    assert train.main([*_new_run(run, videos), "--max-steps", "1"]) == 0
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if line.startswith("note: folder data: ")]
    assert len(notes) == 1 and "folder data" not in out, err
    held = json.loads((run / "config.json").read_text())["data"]["validation"]
    assert held and set(held) < set(NAMES)
    assert notes[0].startswith(
        f"note: folder data: {len(NAMES)} videos in {videos}, {len(NAMES) - len(held)} for training and {len(held)} "
        f"held out for validation ({', '.join(held)}); frames resized to 64×64 (non-square ones stretched"
    )
    assert "read as grey (the model has 1 channel)" in notes[0]
    assert train.main(["--resume", str(run), "--threads", "1", "--max-steps", "2"]) == 0
    assert "folder data" not in capsys.readouterr().err
    crop = tmp_path / "crop"
    assert train.main([*_new_run(crop, videos, "--folder-crop", "center"), "--max-steps", "1"]) == 0
    (note,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: folder data: ")]
    assert "cropped to their largest centred square and resized to 64×64" in note and "stretched" not in note


def test_every_short_video_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not only the first: each fix would otherwise meet the next short video. At most 5 are named."""
    from examples.srvp.datasets import check_folder_lengths
    from latentdyn.video.datasets import VideoFolderDataset

    root = tmp_path / "videos"
    short = [f"s{i}" for i in range(3)]
    _videos(root, ["long1", "long2"], 8)
    _videos(root / "short", short, 3)
    dataset = VideoFolderDataset(root, seq_len=6, image_size=16, grayscale=True, length=10)
    with pytest.raises(ValueError) as info:
        check_folder_lengths(dataset, "--seq-len")
    message = str(info.value)
    assert all(f"{root / 'short' / name}" in message for name in short), message
    assert "2 other video(s)" in message and message.endswith("lower --seq-len or remove those videos")
    assert "validation" not in message
    for i in range(3, 9):  # 9 short videos: 5 named, 4 counted
        frame_folder(root / "short" / f"s{i}", 3, 100)
    dataset = VideoFolderDataset(root, seq_len=6, image_size=16, grayscale=True, length=10)
    with pytest.raises(ValueError) as info:
        check_folder_lengths(dataset, "--seq-len")
    message = str(info.value)
    assert "8 other video(s)" in message and " and 4 more;" in message
    assert sum(f"{root / 'short' / f's{i}'}" in message for i in range(9)) == 5
    with pytest.raises(ValueError, match=r"validation videos .*whose clips have --seq-len-test frames"):
        check_folder_lengths(dataset, "--seq-len-test", validation=True)


def test_a_validation_video_too_short_for_seq_len_test_is_said_to_be_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training clips fit (6 frames of 8), validation clips of --seq-len-test 10 do not: the error says that the
    video is held out for validation, which removing it would not fix (the split is drawn again)."""
    videos = _videos(tmp_path / "videos", NAMES)
    run = tmp_path / "run"
    assert train.main([*_new_run(run, videos), "--seq-len-test", "10"]) == 2
    line = _error(capsys)
    assert line.startswith(f"error: data_dir: {videos}") and "has 8 frames, fewer than the 10" in line
    assert "validation video" in line and "(held out by the 95 % / 5 % split" in line
    assert "lower --seq-len-test" in line
    assert not run.exists()
