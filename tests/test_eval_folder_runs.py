"""Evaluating a run trained on one's own videos (``--dataset folder``): what evaluate says about the test set it is
given, when that is the training data or clips of the wrong shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from examples.srvp import evaluate as ev
from examples.srvp import train


def _frame_folder(folder: Path, n_frames: int, level: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for t in range(n_frames):
        frame = np.full((16, 16), level, dtype=np.uint8)
        frame[:, t % 16] = 255
        Image.fromarray(frame).save(folder / f"frame{t}.png")


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run trained one step on three videos of 8 frames: (run directory, its data_dir)."""
    root = tmp_path_factory.mktemp("folder_run")
    videos = root / "videos"
    for name, level in (("a", 10), ("b", 60), ("c", 120)):
        _frame_folder(videos / name, 8, level)
    run = root / "run"
    argv = ["--preset", "tiny", "--run-dir", str(run), "--dataset", "folder", "--data-dir", str(videos)]
    assert train.main([*argv, "--max-steps", "1", "--threads", "1"]) == 0
    return run, videos


def _evaluate(run: Path, test_set: Path, name: str, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    argv = [str(run), "--test-set", str(test_set), "--n-samples", "2", "--no-lpips", "--name", name, "--out", str(out)]
    code = ev.main([*argv, "--threads", "1"])
    return code, capsys.readouterr().err


def test_a_test_set_that_is_the_training_data_is_said_so(
    folder_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder run evaluated on its own training folder, on one of its videos, or on a folder holding it scored
    the videos it was trained on as test clips, without a word; the note and the results' JSON now say so."""
    run, videos = folder_run
    data = videos.resolve()
    other = tmp_path / "held_out"
    for name, level in (("x", 30), ("y", 90)):
        _frame_folder(other / name, 8, level)
    cases = [
        (videos, "leak_same", f"is the run's training data (train.data_dir {data})"),
        (videos / "b", "leak_inside", f"is inside the run's training data (train.data_dir {data})"),
        (videos.parent, "leak_holds", f"holds the run's training data (train.data_dir {data})"),
        (other, "held_out", None),
    ]
    for test_set, name, overlap in cases:
        code, err = _evaluate(run, test_set, name, tmp_path / "eval", capsys)
        assert code == 0, err
        result = json.loads((tmp_path / "eval" / f"{name}.json").read_text())
        if overlap is None:
            assert "not test scores" not in err, err
            assert "test_set_overlaps_training_data" not in result["data"]
        else:
            assert (
                f"note: --test-set {test_set} {overlap}: its clips are videos the model was trained or validated on, "
                "so these scores are not test scores"
            ) in err, err
            assert result["data"]["test_set_overlaps_training_data"] == overlap


def test_rgb_clips_for_a_grey_folder_run_are_named_by_their_shape(
    folder_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RGB clips in an .npz for a grey folder run were refused with "pass the --dataset the model was trained on",
    though the run's dataset was the one in use; the message now gives the shapes and what to do."""
    run, _ = folder_run
    clips = tmp_path / "rgb.npz"
    np.savez(clips, sequences=np.zeros((7, 2, 64, 64, 3), np.uint8))  # (T, N, H, W, C)
    code, err = _evaluate(run, clips, "rgb", tmp_path / "eval", capsys)
    assert code == 2
    assert err.rstrip("\n").splitlines()[-1] == (
        "error: --test-set: frames are [3, 64, 64] (C, H, W), the model expects [1, 64, 64]; an .npz of clips is read "
        "as it is: store them at the model's size and channels"
    )
    assert not (tmp_path / "eval" / "rgb.json").exists()
