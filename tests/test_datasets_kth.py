"""KTH pipeline end to end: raw .avi files written by the test → conversion → test set → loading."""

from __future__ import annotations

import io
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from PIL import Image

from latentdyn.video.datasets import (
    KTH_CLASSES,
    KTHDataset,
    KTHTestDataset,
    convert_kth,
    make_human36m_test_set,
    make_kth_test_set,
    write_video,
)
from latentdyn.video.datasets._common import check_npy_sizes, numeric_sort_key, read_npz

# Raw videos written by the fixture: (person, trial) pairs for every class, 160x120 like KTH.
RAW_VIDEOS = [(1, 1), (2, 1), (3, 2), (21, 1), (22, 3)]
N_FRAMES = 24
# mpeg4 at its default 200 kb/s blurs grey levels by up to 5; the real KTH files are far cleaner.
HIGH_QUALITY = {"b": "4M"}


def video_id(action: str, person: int, trial: int) -> int:
    return KTH_CLASSES.index(action) * 100 + person * 4 + trial


def id_level(vid: int) -> int:
    """Grey level of the left half of every frame: identifies the video (distinct levels, 8 apart)."""
    order = sorted(video_id(a, p, d) for a in KTH_CLASSES for p, d in RAW_VIDEOS)
    return 16 + 8 * order.index(vid)


def time_level(t: int) -> int:
    """Grey level of the right half of frame t (from 0): identifies the frame."""
    return 40 + 8 * t


def raw_frames(action: str, person: int, trial: int, n: int = N_FRAMES) -> np.ndarray:
    frames = np.empty((n, 120, 160, 3), dtype=np.uint8)
    frames[:, :, :80] = id_level(video_id(action, person, trial))
    for t in range(n):
        frames[t, :, 80:] = time_level(t)
    return frames


@pytest.fixture(scope="module")
def kth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(raw_dir, data_dir) with raw .avi files and their conversion."""
    base = tmp_path_factory.mktemp("kth")
    raw = base / "raw"
    for action in KTH_CLASSES:
        (raw / action).mkdir(parents=True)
        for person, trial in RAW_VIDEOS:
            name = f"person{person:02d}_{action}_d{trial}_uncomp.avi"
            write_video(raw / action / name, raw_frames(action, person, trial), 25, options=HIGH_QUALITY)
    (raw / "boxing" / "README.txt").write_text("not a video, ignored")
    data = base / "data"
    report = convert_kth(raw, data)
    assert report.written == len(KTH_CLASSES) * len(RAW_VIDEOS)
    assert report.skipped == 0
    assert report.out_dir == data / "processed_64"
    return raw, data


def read_levels(clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame grey level of the left (video id) and right (frame index) interiors of clips (T, 64, 64)."""
    return clip[:, 8:56, 4:24].mean(axis=(1, 2)), clip[:, 8:56, 40:60].mean(axis=(1, 2))


def test_conversion_layout_and_frames(kth: tuple[Path, Path]) -> None:
    _, data = kth
    folder = data / "processed_64" / "walking" / "person02_walking_d1"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"image-{i:03d}.png" for i in range(1, N_FRAMES + 1))  # 25 fps kept: same count
    with Image.open(folder / "image-001.png") as image:
        assert image.size == (64, 64)
        assert image.mode == "L"
    frames = np.stack([np.asarray(Image.open(folder / f"image-{i:03d}.png")) for i in range(1, N_FRAMES + 1)])
    left, right = read_levels(frames)
    np.testing.assert_allclose(left, id_level(video_id("walking", 2, 1)), atol=3)
    np.testing.assert_allclose(right, [time_level(t) for t in range(N_FRAMES)], atol=3)
    # No hidden temporary folders left behind.
    assert not [p for p in (data / "processed_64").rglob(".*")]


def test_constant_colour_converts_to_its_red_level(tmp_path: Path) -> None:
    """The official loader keeps channel 0 (red) of ffmpeg's RGB frames; a flat colour gives its red level."""
    raw = tmp_path / "raw"
    for action in KTH_CLASSES:
        (raw / action).mkdir(parents=True)
    frames = np.empty((6, 120, 160, 3), dtype=np.uint8)
    frames[...] = (200, 60, 30)
    write_video(raw / "running" / "person05_running_d2_uncomp.avi", frames, 25)
    convert_kth(raw, tmp_path / "out")
    folder = tmp_path / "out" / "processed_64" / "running" / "person05_running_d2"
    levels = np.stack([np.asarray(Image.open(p)) for p in sorted(folder.iterdir())])
    assert levels.shape == (6, 64, 64)
    assert np.abs(levels.astype(int) - 200).max() <= 3


def test_aspect_ratio_is_ignored_like_ffmpeg_s(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for action in KTH_CLASSES:
        (raw / action).mkdir(parents=True)
    frames = np.zeros((4, 120, 160, 3), dtype=np.uint8)
    frames[:, 60:, :] = 255  # bottom half white: the edge must land on row 32 of 64 (stretched, no bars)
    write_video(raw / "jogging" / "person07_jogging_d1_uncomp.avi", frames, 25)
    convert_kth(raw, tmp_path / "out", image_size=32)
    image = np.asarray(Image.open(tmp_path / "out/processed_32/jogging/person07_jogging_d1/image-001.png"))
    assert image.shape == (32, 32)
    assert image[:14].max() < 20 and image[18:].min() > 235


def test_second_conversion_skips_existing_videos(kth: tuple[Path, Path]) -> None:
    raw, data = kth
    report = convert_kth(raw, data)
    assert (report.written, report.skipped) == (0, len(KTH_CLASSES) * len(RAW_VIDEOS))


def train_videos(data: Path) -> list[str]:
    """Training-person folders in the documented order: class order, then sorted names."""
    names = []
    for action in KTH_CLASSES:
        names += sorted(p.name for p in (data / "processed_64" / action).iterdir() if int(p.name[6:8]) <= 20)
    return names


def test_train_val_split(kth: tuple[Path, Path]) -> None:
    _, data = kth
    train = KTHDataset(data, seq_len=10, split="train")
    val = KTHDataset(data, seq_len=10, split="val")
    everything = train_videos(data)
    assert len(everything) == 6 * 3
    # numpy.random.RandomState(42) shuffles the indices; the first int(0.95 n) are training videos.
    perm = np.random.RandomState(42).permutation(len(everything))
    n_train = int(0.95 * len(everything))
    assert [v.name for v in train.videos] == [everything[i] for i in sorted(perm[:n_train])]
    assert [v.name for v in val.videos] == [everything[i] for i in sorted(perm[n_train:])]
    assert all(v.person <= 20 for v in train.videos + val.videos)
    assert len(train) == 500_000 and len(KTHDataset(data, seq_len=10, length=7)) == 7


def test_training_clips_are_contiguous_windows(kth: tuple[Path, Path]) -> None:
    _, data = kth
    dataset = KTHDataset(data, seq_len=10, rng=np.random.default_rng(0))
    train_ids = {id_level(video_id(v.action, v.person, v.trial)) for v in dataset.videos}
    starts = set()
    for index in range(30):
        clip = dataset[index]
        assert clip.dtype == np.uint8 and clip.shape == (10, 64, 64)
        left, right = read_levels(clip)
        level = round(float(left.mean()))
        assert min(abs(level - i) for i in train_ids) <= 3  # from a training video
        t = np.round((right - 40) / 8).astype(int)
        np.testing.assert_array_equal(t, t[0] + np.arange(10))  # consecutive frames
        assert 0 <= t[0] <= N_FRAMES - 10
        starts.add(int(t[0]))
    assert len(starts) > 3  # random starts


def test_global_numpy_seed_makes_clips_reproducible(kth: tuple[Path, Path]) -> None:
    _, data = kth
    dataset = KTHDataset(data, seq_len=5)
    np.random.seed(3)
    first = [dataset[0] for _ in range(4)]
    np.random.seed(3)
    again = [dataset[0] for _ in range(4)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_clip_longer_than_every_video(kth: tuple[Path, Path]) -> None:
    _, data = kth
    with pytest.raises(ValueError, match=f"seq_len: no KTH train video .* has {N_FRAMES + 1} frames"):
        KTHDataset(data, seq_len=N_FRAMES + 1)


def test_test_set_from_converted_videos(kth: tuple[Path, Path]) -> None:
    _, data = kth
    path = make_kth_test_set(data, seq_len=12, size=20, seed=42)
    assert path == data / "svg_test_set_12.npz"
    with np.load(path) as stored:
        assert stored["sequences"].dtype == np.uint8
        assert stored["sequences"].shape == (20, 12, 64, 64)  # sample-major
        persons, actions = stored["persons"], stored["actions"]
    # Only the test persons' existing videos can be drawn (missing combinations are redrawn).
    existing = {(p, d) for p, d in RAW_VIDEOS if p > 20}
    test_set = KTHTestDataset(data, seq_len=12)
    assert len(test_set) == 20
    for i in range(20):
        assert str(actions[i]) in KTH_CLASSES and int(persons[i]) in {p for p, _ in existing}
        clip = test_set[i]
        assert clip.shape == (12, 64, 64)
        left, right = read_levels(clip)
        trials = [d for p, d in existing if p == int(persons[i])]
        assert abs(left.mean() - id_level(video_id(str(actions[i]), int(persons[i]), trials[0]))) <= 3
        t = np.round((right - 40) / 8).astype(int)
        np.testing.assert_array_equal(t, t[0] + np.arange(12))
    again = make_kth_test_set(data, seq_len=12, size=20, seed=42, overwrite=True)
    with np.load(again) as second:
        np.testing.assert_array_equal(second["sequences"], test_set.sequences)


def write_processed(root: Path, videos: dict[tuple[str, int, int], int]) -> None:
    """A processed_64 tree written directly: video -> number of frames; frame t has level t."""
    for (action, person, trial), n in videos.items():
        folder = root / "processed_64" / action / f"person{person:02d}_{action}_d{trial}"
        folder.mkdir(parents=True)
        for t in range(n):
            Image.fromarray(np.full((64, 64), t % 256, dtype=np.uint8)).save(folder / f"image-{t + 1:03d}.png")


def test_test_set_follows_the_official_draw_order(tmp_path: Path) -> None:
    """With every test video present, clip i is the one the official script's draws select."""
    lengths = {
        (action, person, trial): 14 + (3 * person + trial + len(action)) % 5
        for action in KTH_CLASSES
        for person in range(21, 26)
        for trial in range(1, 5)
    }
    write_processed(tmp_path, lengths)
    path = make_kth_test_set(tmp_path, seq_len=10, size=8, seed=42)
    stored = dict(np.load(path))  # (a dict: the archive's file closes at once)
    rs = np.random.RandomState(42)
    for i in range(8):
        action = KTH_CLASSES[rs.randint(6)]
        person = rs.randint(21, 26)
        trial = rs.randint(1, 5)
        start = rs.randint(lengths[(action, person, trial)] - 10 + 1)
        assert (str(stored["actions"][i]), int(stored["persons"][i])) == (action, person)
        np.testing.assert_array_equal(stored["sequences"][i, :, 0, 0], start + np.arange(10))


def test_frames_are_ordered_numerically_past_999(tmp_path: Path) -> None:
    write_processed(tmp_path, {("boxing", 1, 1): 1003})
    dataset = KTHDataset(tmp_path, seq_len=1003, split="val")  # one video: int(0.95 * 1) = 0 in train
    frames = dataset.videos[0].frames
    assert [f.name for f in frames[998:1001]] == ["image-999.png", "image-1000.png", "image-1001.png"]
    assert numeric_sort_key("image-1000.png") > numeric_sort_key("image-999.png")


def test_existing_test_set_is_not_overwritten(kth: tuple[Path, Path]) -> None:
    _, data = kth
    make_kth_test_set(data, seq_len=5, size=3)
    with pytest.raises(FileExistsError, match=r"svg_test_set_5.npz already exists; pass overwrite=True"):
        make_kth_test_set(data, seq_len=5, size=3)


def test_test_set_options_are_taken_by_keyword(kth: tuple[Path, Path]) -> None:
    """make_kth_test_set(d, T, size, seed) and make_human36m_test_set(d, T, subsampling, size, seed) put different
    options third: make_human36m_test_set(d, 53, 1000) read 1000 as the subsampling."""
    _, data = kth
    with pytest.raises(TypeError, match="positional argument"):
        make_kth_test_set(data, 5, 3)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional argument"):
        make_human36m_test_set(data, 53, 1000)  # type: ignore[misc]


def test_test_set_with_no_long_enough_video(kth: tuple[Path, Path]) -> None:
    _, data = kth
    with pytest.raises(ValueError, match=r"seq_len: no KTH test video \(persons 21-25\) .* has 99 frames"):
        make_kth_test_set(data, seq_len=99, size=3)


def test_test_set_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"svg_test_set_40.npz: no KTH test set; create it"):
        KTHTestDataset(tmp_path)
    (tmp_path / "svg_test_set_40.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match=r"svg_test_set_40.npz: not a readable .npz file"):
        KTHTestDataset(tmp_path)
    np.savez(tmp_path / "svg_test_set_40.npz", sequences=np.zeros((2, 40, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"missing keys \['actions', 'persons'\]"):
        KTHTestDataset(tmp_path)
    np.savez(
        tmp_path / "svg_test_set_40.npz",
        sequences=np.zeros((2, 30, 64, 64), np.uint8),
        persons=np.array([21, 22]),
        actions=np.array(["boxing", "running"]),
    )
    with pytest.raises(ValueError, match=r"expected 'sequences' uint8 \(N, 40, H, W\)"):
        KTHTestDataset(tmp_path)
    np.savez(
        tmp_path / "svg_test_set_40.npz",
        sequences=np.zeros((2, 40, 64, 64), np.uint8),
        persons=np.array([21]),
        actions=np.array(["boxing", "running"]),
    )
    with pytest.raises(ValueError, match=r"one entry per sequence"):
        KTHTestDataset(tmp_path)


def npy_bytes(array: np.ndarray | None = None, claim: tuple[int, ...] | None = None, data: int = 64) -> bytes:
    """A real .npy, or a header claiming a uint8 array of shape ``claim`` followed by ``data`` zero bytes."""
    buffer = io.BytesIO()
    if claim is None:
        np.lib.format.write_array(buffer, array, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": claim})
        buffer.write(b"\0" * data)
    return buffer.getvalue()


def zip_of(path: Path, compress_type: int = zipfile.ZIP_STORED, **members: bytes) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress_type) as archive:
        for key, data in members.items():
            archive.writestr(f"{key}.npy", data)
    return path


def forge_directory(path: Path, *, file_size: int | None = None, compress_size: int | None = None) -> None:
    """Overwrite the sizes the zip's central directory gives its first member (what zipfile believes)."""
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    if compress_size is not None:
        data[entry + 20 : entry + 24] = struct.pack("<I", compress_size)
    if file_size is not None:
        data[entry + 24 : entry + 28] = struct.pack("<I", file_size)
    path.write_bytes(bytes(data))


PETABYTES = (1 << 20, 1 << 20, 64, 64)  # 4 PiB: beyond any address space, so numpy's allocation always fails


def test_test_set_header_claiming_more_than_the_file_is_named(tmp_path: Path) -> None:
    """Before, the reader let numpy allocate the claimed 4 PiB first: a bare MemoryError without the file name."""
    path = zip_of(
        tmp_path / "svg_test_set_40.npz",
        sequences=npy_bytes(claim=PETABYTES),
        persons=npy_bytes(np.array([21])),
        actions=npy_bytes(np.array(["boxing"])),
    )
    pattern = (
        rf"^{re.escape(str(path))}: key 'sequences': truncated or corrupted: its \.npy header claims "
        r"\[1048576, 1048576, 64, 64\] uint8 \(4503599627370496 bytes\), its archive member holds at most 64 bytes"
    )
    with pytest.raises(ValueError, match=pattern):
        KTHTestDataset(tmp_path)


def test_check_npy_sizes_accepts_real_files(tmp_path: Path) -> None:
    arrays = {
        "frames": np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5),
        "empty": np.zeros((0, 7), np.float64),
        "words": np.array(["boxing", "running"]),
        "fortran": np.asfortranarray(np.ones((3, 4), np.int32)),
        "records": np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2,))]),
        "zeros": np.zeros(200_000, np.uint8),  # deflates far below its size
    }
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez_compressed(tmp_path / "small.npz", **arrays)
    np.save(tmp_path / "one.npy", arrays["frames"])
    np.savez(tmp_path / "obj.npz", obj=np.array([None, 1], dtype=object))  # np.load refuses it later
    (tmp_path / "junk.npz").write_bytes(b"not an archive")  # np.load reports it later
    (tmp_path / "empty.npz").write_bytes(b"")
    for name in ("plain.npz", "small.npz", "one.npy", "obj.npz", "junk.npz", "empty.npz"):
        check_npy_sizes(tmp_path / name)
    assert read_npz(tmp_path / "small.npz").keys() == arrays.keys()


def test_check_npy_sizes_refuses_claims_beyond_the_file(tmp_path: Path) -> None:
    one = tmp_path / "one.npy"
    one.write_bytes(npy_bytes(claim=(1000,), data=999))  # a .npy cut one byte short
    with pytest.raises(
        ValueError,
        match=r"one\.npy: truncated or corrupted: its \.npy header claims \[1000\] uint8 "
        r"\(1000 bytes\), the file holds 999 bytes of data$",
    ):
        check_npy_sizes(one)
    path = zip_of(tmp_path / "d.npz", zipfile.ZIP_DEFLATED, ok=npy_bytes(np.zeros(5)), bad=npy_bytes(claim=PETABYTES))
    with pytest.raises(ValueError, match=r"d\.npz: key 'bad': truncated or corrupted"):
        check_npy_sizes(path)
    check_npy_sizes(path, keys=["ok"])  # only the arrays that will be read are checked
    # The sizes of the zip directory are bounded by the bytes present: a stored member cannot hold more than
    # its compressed bytes, nor those more than the file; a deflated one no more than 1032 times its bytes.
    path = zip_of(tmp_path / "s.npz", claimed=npy_bytes(claim=(1 << 30,)))
    forge_directory(path, file_size=(1 << 31))
    with pytest.raises(ValueError, match=r"s\.npz: key 'claimed': .* holds at most 64 bytes of data"):
        check_npy_sizes(path)
    forge_directory(path, file_size=(1 << 31), compress_size=(1 << 31))
    with pytest.raises(ValueError, match=r"s\.npz: key 'claimed': .* holds at most \d{3} bytes of data"):
        check_npy_sizes(path)
    path = zip_of(tmp_path / "z.npz", zipfile.ZIP_DEFLATED, claimed=npy_bytes(claim=(1 << 31,), data=1000))
    forge_directory(path, file_size=(1 << 31) + 128)
    with pytest.raises(ValueError, match=r"z\.npz: key 'claimed': .* holds at most \d{4,6} bytes of data"):
        check_npy_sizes(path)


def empty_raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    for action in KTH_CLASSES:
        (raw / action).mkdir(parents=True)
    return raw


def test_wrong_raw_layout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"raw_dir: expected a directory at .*nowhere"):
        convert_kth(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "partial" / "boxing").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"expected a directory at .*handclapping.*<class>/personXX"):
        convert_kth(tmp_path / "partial", tmp_path / "out")
    raw = empty_raw(tmp_path)
    with pytest.raises(ValueError, match=r"found no .avi video under"):
        convert_kth(raw, tmp_path / "out")
    (raw / "walking" / "my_walk.avi").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"my_walk.avi: not a KTH video name"):
        convert_kth(raw, tmp_path / "out")
    (raw / "walking" / "my_walk.avi").unlink()
    (raw / "walking" / "person01_running_d1_uncomp.avi").write_bytes(b"x")  # class and folder disagree
    with pytest.raises(ValueError, match=r"person01_running_d1_uncomp.avi: not a KTH video name"):
        convert_kth(raw, tmp_path / "out")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_bad_video_is_named_and_leaves_no_output(tmp_path: Path, damage: str) -> None:
    raw = empty_raw(tmp_path)
    write_video(raw / "boxing" / "person01_boxing_d1_uncomp.avi", raw_frames("boxing", 1, 1), 25, options=HIGH_QUALITY)
    bad = raw / "boxing" / "person02_boxing_d1_uncomp.avi"
    if damage == "garbage":
        bad.write_bytes(b"\x00garbage" * 100)
    else:
        noisy = np.random.default_rng(0).integers(0, 256, (20, 120, 160, 3), dtype=np.uint8)
        data = write_video(tmp_path / "full.avi", noisy, 25).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"person02_boxing_d1_uncomp.avi"):
        convert_kth(raw, out)
    boxing = out / "processed_64" / "boxing"
    assert sorted(p.name for p in boxing.iterdir()) == ["person01_boxing_d1"]  # no partial folder


def test_dataset_wrong_layout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"processed_64, found none; run convert_kth"):
        KTHDataset(tmp_path, seq_len=5)
    (tmp_path / "processed_64" / "dancing").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"holds none of the class folders boxing, handclapping"):
        KTHDataset(tmp_path, seq_len=5)
    (tmp_path / "processed_64" / "boxing" / "clip_one").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"clip_one: not a converted KTH video folder"):
        KTHDataset(tmp_path, seq_len=5)


def test_frame_of_wrong_size_is_named(tmp_path: Path) -> None:
    write_processed(tmp_path, {("boxing", 1, 1): 5})
    odd = tmp_path / "processed_64/boxing/person01_boxing_d1/image-003.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(odd)
    dataset = KTHDataset(tmp_path, seq_len=5, split="val")  # 1 video: int(0.95) = 0 train, 1 val
    with pytest.raises(ValueError, match=r"image-003.png: expected a 64x64 \(H x W\) frame, got 32x32$"):
        dataset[0]


def test_argument_errors(kth: tuple[Path, Path]) -> None:
    _, data = kth
    with pytest.raises(ValueError, match=r"split: expected one of 'train', 'val'"):
        KTHDataset(data, seq_len=5, split="test")
    with pytest.raises(ValueError, match=r"seq_len: expected an int >= 1"):
        KTHDataset(data, seq_len=0)
    with pytest.raises(TypeError, match=r"image_size: expected an int"):
        convert_kth(data, data, image_size=64.0)  # type: ignore[arg-type]


def test_clips_batch_with_collate_videos(kth: tuple[Path, Path]) -> None:
    collate = pytest.importorskip("latentdyn.video.collate")
    _, data = kth
    dataset = KTHDataset(data, seq_len=6, rng=np.random.default_rng(1))
    batch = collate.collate_videos([dataset[0], dataset[1], dataset[2]])
    assert tuple(batch.shape) == (6, 3, 1, 64, 64)
    assert float(batch.max()) <= 1.0


def test_check_npy_sizes_reads_version_2_headers_and_bzip2_members(tmp_path: Path) -> None:
    """A .npy of format 2.0 (numpy writes it for headers over 64 KiB) and an .npz whose members are bzip2- or
    LZMA-compressed (other zip tools): a claim beyond the data is refused for them too."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_2_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": (1000,)})
    header = buffer.getvalue()
    assert header[6:8] == b"\x02\x00"  # the format version: 2.0
    v2 = tmp_path / "v2.npy"
    v2.write_bytes(header + b"\0" * 999)
    with pytest.raises(ValueError, match=r"v2\.npy: .* claims \[1000\] uint8 \(1000 bytes\), the file holds 999 bytes"):
        check_npy_sizes(v2)
    v2.write_bytes(header + b"\0" * 1000)
    check_npy_sizes(v2)  # exactly the claimed bytes
    for compression in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        path = zip_of(tmp_path / f"{compression}.npz", compression, bad=npy_bytes(claim=(1000,), data=999))
        with pytest.raises(ValueError, match=r"key 'bad': truncated or corrupted: .* holds at most 999 bytes of data$"):
            check_npy_sizes(path)
        good = zip_of(tmp_path / f"good{compression}.npz", compression, ok=npy_bytes(np.arange(1000, dtype=np.uint8)))
        check_npy_sizes(good)
