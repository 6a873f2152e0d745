"""Evaluating a run trained on one's own videos (``--dataset folder``): what evaluate says about the test set it is
given, when that is the training data or clips of the wrong shape."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from shared_fixtures import frame_folder

from examples.srvp import evaluate as ev
from examples.srvp import train


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run trained one step on three videos of 8 frames: (run directory, its data_dir)."""
    root = tmp_path_factory.mktemp("folder_run")
    videos = root / "videos"
    for name, level in (("a", 10), ("b", 60), ("c", 120)):
        frame_folder(videos / name, 8, level)
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
        frame_folder(other / name, 8, level)
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


def test_what_the_folder_reader_never_trained_on_is_not_said_to_be_training_data(
    folder_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inside data_dir, an .npz of clips, a hidden folder and a video added after the run started (not in its
    config.json record) were never read for training: no note."""
    run, videos = folder_run
    clips = videos / "held_out_clips.npz"
    np.savez(clips, sequences=np.zeros((7, 2, 64, 64), np.uint8))
    frame_folder(videos / ".hidden" / "x", 8, 30)
    frame_folder(videos / "added_later", 8, 200)
    try:
        for test_set, name in ((clips, "npz"), (videos / ".hidden", "hidden"), (videos / "added_later", "later")):
            code, err = _evaluate(run, test_set, name, tmp_path / "eval", capsys)
            assert code == 0, err
            assert "not test scores" not in err, (name, err)
            result = json.loads((tmp_path / "eval" / f"{name}.json").read_text())
            assert "test_set_overlaps_training_data" not in result["data"]
    finally:  # (the module's run keeps its folder as it trained on it)
        clips.unlink()
        shutil.rmtree(videos / ".hidden")
        shutil.rmtree(videos / "added_later")


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


def test_the_npz_hint_is_given_for_every_dataset() -> None:
    """An .npz of clips is read as stored for every dataset: "drop --dataset" would change nothing there."""
    from examples.srvp.evaluate import _clip_shape_hint

    npz = "; an .npz of clips is read as it is: store them at the model's size and channels"
    for dataset in ("smmnist", "kth", "human36m", "bair", "folder"):
        for trained in ("smmnist", "kth", "folder"):
            assert _clip_shape_hint(dataset, Path("clips.npz"), {"dataset": trained}) == npz
    assert _clip_shape_hint("folder", Path("videos"), {"dataset": "kth"}) == (
        "; the run was trained on the 'kth' dataset: drop --dataset folder"
    )
    assert _clip_shape_hint("kth", Path("data/kth"), {"dataset": "kth"}) == ""
