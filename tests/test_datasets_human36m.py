"""Human3.6M pipeline end to end: 1000x1000 .mp4 files written by the test → conversion → test set → loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from PIL import Image

from latentdyn.video.datasets import (
    Human36MDataset,
    Human36MTestDataset,
    convert_human36m,
    make_human36m_test_set,
    write_video,
)

N_FRAMES = 12
# Near-lossless H.264 (4:4:4, crf 0) so the tests can compare pixels tightly.
LOSSLESS = {"options": {"crf": "0"}, "pix_fmt": "yuv444p"}
# (subject, video name, identity level); names as in Human3.6M, with spaces and dots.
VIDEOS = [
    (1, "Directions 1.54138969", 30),
    (1, "Walking.55011271", 60),
    (5, "Eating 2.58860488", 90),
    (9, "Posing.60457274", 120),
    (11, "Greeting 2.54138969", 150),
]


def raw_frames(identity: int, n: int = N_FRAMES, size: tuple[int, int] = (1000, 1000)) -> np.ndarray:
    """Bright outside the crop box; inside, the left half has the identity level and the right half 10+15t."""
    frames = np.full((n, *size, 3), 250, dtype=np.uint8)
    frames[:, 100:900, 100:500] = identity
    for t in range(n):
        frames[t, 100:900, 500:900] = 10 + 15 * t
    return frames


@pytest.fixture(scope="module")
def human(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("human")
    raw = base / "raw"
    for subject, name, identity in VIDEOS:
        folder = raw / f"S{subject}" / "Videos"
        folder.mkdir(parents=True, exist_ok=True)
        write_video(folder / f"{name}.mp4", raw_frames(identity), 50, **LOSSLESS)  # type: ignore[arg-type]
    # The _ALL videos are skipped (a garbage file proves it is never opened).
    (raw / "S1" / "Videos" / "_ALL 1.54138969.mp4").write_bytes(b"not read")
    data = base / "data"
    report = convert_human36m(raw, data)
    assert (report.written, report.skipped) == (len(VIDEOS), 0)
    return raw, data


def halves(clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean level of the left (identity) and right (time) interiors of each frame of (T, 64, 64, 3)."""
    return clip[:, 4:60, 4:28].mean(axis=(1, 2, 3)), clip[:, 4:60, 36:60].mean(axis=(1, 2, 3))


def test_conversion_layout_and_content(human: tuple[Path, Path]) -> None:
    _, data = human
    assert sorted(p.name for p in (data / "train").iterdir()) == [
        "S1-Directions 1.54138969.npz",
        "S1-Walking.55011271.npz",
        "S5-Eating 2.58860488.npz",
    ]
    assert sorted(p.name for p in (data / "test").iterdir()) == [
        "S11-Greeting 2.54138969.npz",
        "S9-Posing.60457274.npz",
    ]
    with np.load(data / "test" / "S9-Posing.60457274.npz") as stored:
        image = stored["image"]
        assert str(stored["filename"]) == "Posing.60457274"
        assert int(stored["subject"]) == 9
    assert image.dtype == np.uint8 and image.shape == (N_FRAMES, 64, 64, 3)  # every frame kept
    # The bright border (outside the box) must not reach the output: only the box is kept.
    left, right = halves(image)
    np.testing.assert_allclose(left, 120, atol=2)
    np.testing.assert_allclose(right, 10 + 15 * np.arange(N_FRAMES), atol=2)
    border = np.concatenate([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], axis=1)
    assert border.max() < 200


def test_crop_then_lanczos_matches_pillow(tmp_path: Path) -> None:
    """Frames are cropped to (100, 100, 900, 900) and then Lanczos-resized, as with Pillow step by step."""
    rng = np.random.default_rng(0)
    # Smooth random content (a coarse grid upsampled), different outside and inside the box.
    coarse = rng.integers(0, 256, (2, 25, 25, 3), dtype=np.uint8)
    frames = np.stack([np.asarray(Image.fromarray(c).resize((1000, 1000), Image.Resampling.BILINEAR)) for c in coarse])
    raw = tmp_path / "raw" / "S7" / "Videos"
    raw.mkdir(parents=True)
    write_video(raw / "Sitting.mp4", frames, 50, **LOSSLESS)  # type: ignore[arg-type]
    convert_human36m(tmp_path / "raw", tmp_path / "out", image_size=32)
    with np.load(tmp_path / "out" / "train" / "S7-Sitting.npz") as stored:
        image = stored["image"]
    expected = np.stack(
        [
            np.asarray(Image.fromarray(f).crop((100, 100, 900, 900)).resize((32, 32), Image.Resampling.LANCZOS))
            for f in frames
        ]
    )
    assert image.shape == (2, 32, 32, 3)
    assert np.abs(image.astype(int) - expected).max() <= 3
    # A resize of the whole frame (no crop) would be far off.
    uncropped = np.stack([np.asarray(Image.fromarray(f).resize((32, 32), Image.Resampling.LANCZOS)) for f in frames])
    assert np.abs(image.astype(int) - uncropped).mean() > 10


def test_second_conversion_skips(human: tuple[Path, Path]) -> None:
    raw, data = human
    report = convert_human36m(raw, data)
    assert (report.written, report.skipped) == (0, len(VIDEOS))


def test_training_clips(human: tuple[Path, Path]) -> None:
    _, data = human
    train = Human36MDataset(data, seq_len=4, subsampling=3, rng=np.random.default_rng(0))
    val = Human36MDataset(data, seq_len=4, subsampling=3, split="val")
    files = sorted(p.name for p in (data / "train").iterdir())
    perm = np.random.RandomState(42).permutation(3)
    assert [f.name for f in train.files] == [files[i] for i in sorted(perm[:2])]  # int(0.95 * 3) = 2
    assert [f.name for f in val.files] == [files[i] for i in sorted(perm[2:])]
    assert len(train) == 500_000
    identities = {v[2] for v in VIDEOS if v[0] in (1, 5, 6, 7, 8) and f"S{v[0]}-{v[1]}.npz" in files}
    for _ in range(20):
        clip = train[0]
        assert clip.dtype == np.uint8 and clip.shape == (4, 64, 64, 3)
        left, right = halves(clip)
        assert min(abs(left.mean() - i) for i in identities) <= 2
        t = np.round((right - 10) / 15).astype(int)
        np.testing.assert_array_equal(t, t[0] + 3 * np.arange(4))  # one raw frame in 3
        assert 0 <= t[0] <= N_FRAMES - 10  # the span (4-1)*3+1 = 10 fits


def test_clip_span_longer_than_every_video(human: tuple[Path, Path]) -> None:
    _, data = human
    with pytest.raises(ValueError, match=r"seq_len: no Human3.6M train video .* has the 13 frames"):
        Human36MDataset(data, seq_len=3, subsampling=6)


def test_videos_of_another_frame_size_are_named_at_construction(tmp_path: Path) -> None:
    """A file converted at another size used to pass construction and fail at some training step with a
    batch-shape error naming no file."""
    from latentdyn.video.datasets._common import split_items

    train = tmp_path / "train"
    train.mkdir()
    names = [f"S1_Video{i}.npz" for i in range(6)]
    odd = split_items(names, "train")[1]  # a file of the training part
    for name in names:
        size = 32 if name == odd else 64
        np.savez(train / name, image=np.zeros((N_FRAMES, size, size, 3), np.uint8))
    with pytest.raises(
        ValueError, match=rf"train/{odd}: frames are 32x32 \(H x W\), but 4 other videos of the split have 64x64"
    ):
        Human36MDataset(tmp_path, seq_len=3, subsampling=1)
    (train / odd).unlink()
    assert Human36MDataset(tmp_path, seq_len=3, subsampling=1).frame_size == (64, 64)


def test_test_set_follows_the_official_draw_order(human: tuple[Path, Path]) -> None:
    _, data = human
    folder = make_human36m_test_set(data, seq_len=3, subsampling=2, size=12, seed=42)
    assert folder == data / "test_set_3_2"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"test_{i}.npz" for i in range(12))
    test_files = sorted((data / "test").iterdir())
    rs = np.random.RandomState(42)
    for i in range(12):
        video = rs.randint(len(test_files))
        start = rs.randint(N_FRAMES - 5 + 1)
        with np.load(folder / f"test_{i}.npz") as clip, np.load(test_files[video]) as source:
            assert int(clip["frame"]) == start
            assert str(clip["filename"]) == str(source["filename"])
            assert int(clip["subject"]) == int(source["subject"])
            np.testing.assert_array_equal(clip["image"], source["image"][start : start + 5])  # all raw frames
    dataset = Human36MTestDataset(data, seq_len=3, subsampling=2)
    assert len(dataset) == 12
    assert [f.name for f in dataset.files][:3] == ["test_0.npz", "test_1.npz", "test_2.npz"]
    assert dataset.files[10].name == "test_10.npz"  # numeric order
    with np.load(folder / "test_10.npz") as clip:
        np.testing.assert_array_equal(dataset[10], clip["image"][[0, 2, 4]])
    assert dataset[0].shape == (3, 64, 64, 3) and dataset[0].dtype == np.uint8
    # A clip owns its frames: a strided view kept every stored span (all raw frames of a clip, 8x more with the
    # protocol's subsampling) alive until the test set was stacked, about 5 GB for the 1,000 test clips.
    assert dataset[10].base is None and dataset[10].flags.c_contiguous


def test_test_set_errors(human: tuple[Path, Path], tmp_path: Path) -> None:
    _, data = human
    make_human36m_test_set(data, seq_len=2, subsampling=1, size=2)
    with pytest.raises(FileExistsError, match=r"test_set_2_1 already exists; pass overwrite=True"):
        make_human36m_test_set(data, seq_len=2, subsampling=1, size=2)
    make_human36m_test_set(data, seq_len=2, subsampling=1, size=3, overwrite=True)
    assert len(Human36MTestDataset(data, seq_len=2, subsampling=1)) == 3
    with pytest.raises(ValueError, match=r"no Human3.6M test video .* has the 97 frames"):
        make_human36m_test_set(data, seq_len=13, subsampling=8, size=2)
    with pytest.raises(ValueError, match=r"data_dir: expected a directory at .*test, found none"):
        make_human36m_test_set(tmp_path, size=2)
    with pytest.raises(ValueError, match=r"test_set_53_8, found none; create the test set"):
        Human36MTestDataset(tmp_path)
    folder = tmp_path / "test_set_53_8"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"holds no test_<i>.npz file"):
        Human36MTestDataset(tmp_path)
    np.savez(folder / "clip.npz", image=np.zeros((417, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"clip.npz: unexpected file in a Human3.6M test set"):
        Human36MTestDataset(tmp_path)
    (folder / "clip.npz").unlink()
    np.savez(folder / "test_0.npz", image=np.zeros((100, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"test_0.npz: holds 100 frames, fewer than the 417"):
        Human36MTestDataset(tmp_path)[0]
    (folder / "test_0.npz").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"test_0.npz: not a readable .npz file"):
        Human36MTestDataset(tmp_path)[0]
    np.savez(folder / "test_0.npz", frames=np.zeros((100, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"test_0.npz: missing key 'image'"):
        Human36MTestDataset(tmp_path)[0]
    np.savez(folder / "test_0.npz", image=np.zeros((417, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"expected 'image' uint8 \(T, H, W, 3\)"):
        Human36MTestDataset(tmp_path)[0]


def test_wrong_layout_and_bad_videos(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"raw_dir: expected a directory at .*nowhere"):
        convert_human36m(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "raw" / "S2" / "Videos").mkdir(parents=True)  # not a Human3.6M subject
    with pytest.raises(ValueError, match=r"found no .mp4 video under .*S<k>/Videos/\*.mp4"):
        convert_human36m(tmp_path / "raw", tmp_path / "out")
    with pytest.raises(ValueError, match=r"root: expected a directory at .*train, found none; run convert_human36m"):
        Human36MDataset(tmp_path / "out", seq_len=5)

    videos = tmp_path / "raw" / "S6" / "Videos"
    videos.mkdir(parents=True)
    write_video(videos / "Small.mp4", np.zeros((2, 480, 640, 3), np.uint8), 50)
    with pytest.raises(ValueError, match=r"Small.mp4: frames of 640x480 pixels are too small for the crop box"):
        convert_human36m(tmp_path / "raw", tmp_path / "out")
    (videos / "Small.mp4").unlink()

    noisy = np.random.default_rng(0).integers(0, 256, (6, 1000, 1000, 3), dtype=np.uint8)
    data = write_video(tmp_path / "full.mp4", noisy, 50).read_bytes()
    (videos / "Broken.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"Broken.mp4"):
        convert_human36m(tmp_path / "raw", tmp_path / "out")
    train = tmp_path / "out" / "train"
    assert not train.exists() or list(train.iterdir()) == []  # nothing half-written


def test_argument_errors(human: tuple[Path, Path]) -> None:
    _, data = human
    with pytest.raises(ValueError, match=r"split: expected one of 'train', 'val'"):
        Human36MDataset(data, seq_len=3, split="test")
    with pytest.raises(ValueError, match=r"subsampling: expected an int >= 1"):
        Human36MDataset(data, seq_len=3, subsampling=0)
