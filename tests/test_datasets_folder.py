"""VideoFolderDataset over video files and folders of frames written by the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from PIL import Image

from latentdyn.video.datasets import VideoFolderDataset, folder, iter_video, probe_video, write_video
from latentdyn.video.datasets.io import _count_frames as count_frames

LOSSLESS = {"options": {"crf": "0"}, "pix_fmt": "yuv444p"}


def ramp(n: int, height: int = 24, width: int = 32, step: int = 12) -> np.ndarray:
    """Frames of uniform grey level step * t, so the frame index can be read back."""
    levels = (np.arange(n) * step).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()


def frame_index(clip: np.ndarray, step: int = 12) -> np.ndarray:
    return np.round(clip.reshape(len(clip), -1).mean(axis=1) / step).astype(int)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("videos")
    write_video(base / "a.mp4", ramp(12), 25, **LOSSLESS)  # type: ignore[arg-type]
    (base / "nested").mkdir()
    write_video(base / "nested" / "b.avi", ramp(14), 25, options={"b": "4M"})
    write_video(base / "c.gif", ramp(10), 10)
    frames = base / "frames"
    frames.mkdir()
    for t, frame in enumerate(ramp(11)):
        Image.fromarray(frame).save(frames / f"frame-{t + 1}.png")  # frame-10 must come after frame-9
    (base / "notes.txt").write_text("ignored")
    (base / ".hidden.mp4").write_bytes(b"ignored")
    return base


def test_discovery(root: Path) -> None:
    dataset = VideoFolderDataset(root, seq_len=4)
    assert [s.path.relative_to(root).as_posix() for s in dataset.sources] == [
        "a.mp4",
        "c.gif",
        "frames",
        "nested/b.avi",
    ]
    frames = dataset.sources[2].frames
    assert [f.name for f in frames[8:11]] == ["frame-9.png", "frame-10.png", "frame-11.png"]
    assert len(dataset) == 4


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_clips_are_contiguous(root: Path, index: int) -> None:
    dataset = VideoFolderDataset(root, seq_len=5, rng=np.random.default_rng(index))
    starts = set()
    for _ in range(8):
        clip = dataset[index]
        assert clip.dtype == np.uint8 and clip.shape == (5, 24, 32, 3)
        t = frame_index(clip)
        np.testing.assert_array_equal(t, t[0] + np.arange(5))
        starts.add(int(t[0]))
    assert len(starts) > 1


def test_frame_step_and_fixed_start(root: Path) -> None:
    dataset = VideoFolderDataset(root, seq_len=4, frame_step=3, random_start=False)
    for index in range(4):
        np.testing.assert_array_equal(frame_index(dataset[index]), [0, 3, 6, 9])


def test_resize_grayscale_and_virtual_length(root: Path) -> None:
    dataset = VideoFolderDataset(
        root, seq_len=3, image_size=(16, 8), grayscale=True, length=10, rng=np.random.default_rng(0)
    )
    assert len(dataset) == 10
    clip = dataset[7]
    assert clip.shape == (3, 16, 8) and clip.dtype == np.uint8
    t = frame_index(clip[..., None])
    np.testing.assert_array_equal(t, t[0] + np.arange(3))
    assert VideoFolderDataset(root, seq_len=2, image_size=20)[0].shape == (2, 20, 20, 3)


def test_center_crop_keeps_the_middle(tmp_path: Path) -> None:
    """A 40x80 frame in three vertical bands: a square centre crop keeps only the middle (green) band."""
    folder = tmp_path / "bands"
    folder.mkdir()
    frame = np.zeros((40, 80, 3), dtype=np.uint8)
    frame[:, :20, 0] = 255
    frame[:, 20:60, 1] = 255
    frame[:, 60:, 2] = 255
    for t in range(3):
        Image.fromarray(frame).save(folder / f"{t}.png")
    cropped = VideoFolderDataset(tmp_path, seq_len=2, image_size=10, crop="center")[0]
    assert cropped.shape == (2, 10, 10, 3)
    np.testing.assert_array_equal(cropped[..., 1], 255)
    assert cropped[..., [0, 2]].max() == 0
    squeezed = VideoFolderDataset(tmp_path, seq_len=2, image_size=10, resample="nearest")[0]
    assert squeezed[..., 0].max() == 255 and squeezed[..., 2].max() == 255  # no crop: all bands kept


def test_too_short_video_is_named(root: Path) -> None:
    dataset = VideoFolderDataset(root, seq_len=12)
    assert dataset[0].shape[0] == 12  # a.mp4 has exactly 12 frames
    with pytest.raises(ValueError, match=r"c.gif: 10 frames, fewer than the 12 that seq_len=12"):
        dataset[1]
    with pytest.raises(ValueError, match=r"frames: 11 frames, fewer than the 12"):
        dataset[2]
    with pytest.raises(ValueError, match=r"a.mp4: 12 frames, fewer than the 13 that seq_len=7 with frame_step=2"):
        VideoFolderDataset(root, seq_len=7, frame_step=2)[0]


UNANNOUNCED = [
    pytest.param(".mkv", "libx264", {"crf": "0"}, id="mkv"),
    pytest.param(".webm", "libvpx-vp9", {"lossless": "1"}, id="webm"),
]


def write_unannounced(path: Path, n: int, codec: str, options: dict[str, str]) -> Path:
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"PyAV has no {codec} encoder")
    write_video(path, ramp(n, step=6), 25, codec=codec, options=options, pix_fmt="yuv444p")
    assert probe_video(path).n_frames == 0  # what makes these containers special: no count in the header
    return path


@pytest.mark.parametrize(("suffix", "codec", "options"), UNANNOUNCED)
def test_unannounced_frame_count_decodes_only_the_clip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, codec: str, options: dict[str, str]
) -> None:
    """Matroska/WebM say nothing of their length: the frames are counted from the packets (once per file),
    and only the frames up to the clip's end are decoded, as for a container that announces its count."""
    (tmp_path / "mkv").mkdir()
    video = write_unannounced(tmp_path / "mkv" / f"v{suffix}", 40, codec, options)
    (tmp_path / "mp4").mkdir()
    write_video(tmp_path / "mp4" / "v.mp4", ramp(40, step=6), 25, **LOSSLESS)  # type: ignore[arg-type]
    decoded: list[int] = []
    counted: list[Path] = []

    def counting_iter_video(path: Path) -> Iterator[np.ndarray]:
        for frame in iter_video(path):
            decoded.append(1)
            yield frame

    def counting_count_frames(path: Path) -> int:
        counted.append(path)
        return count_frames(path)

    monkeypatch.setattr(folder, "iter_video", counting_iter_video)
    monkeypatch.setattr(folder, "_count_frames", counting_count_frames)
    dataset = VideoFolderDataset(tmp_path / "mkv", seq_len=3, frame_step=2, random_start=False)
    np.testing.assert_array_equal(frame_index(dataset[0], 6), [0, 2, 4])
    assert len(decoded) <= 6  # up to the clip's end (and the next frame); the old code decoded all 40
    # Random starts are drawn from the counted length exactly as from an announced one.
    mkv = VideoFolderDataset(tmp_path / "mkv", seq_len=4, rng=np.random.default_rng(3))
    mp4 = VideoFolderDataset(tmp_path / "mp4", seq_len=4, rng=np.random.default_rng(3))
    starts = set()
    for _ in range(12):
        decoded.clear()
        clip = mkv[0]
        assert len(decoded) <= frame_index(clip, 6)[-1] + 2
        np.testing.assert_array_equal(frame_index(clip, 6), frame_index(mp4[0], 6))
        starts.add(int(frame_index(clip, 6)[0]))
    assert len(starts) > 3 and max(starts) <= 36
    assert counted == [video, video]  # once for each dataset, not once per clip
    with pytest.raises(ValueError, match=rf"v\{suffix}: 40 frames, fewer than the 41 that seq_len=41"):
        VideoFolderDataset(tmp_path / "mkv", seq_len=41)[0]
    # A file replaced by another version is counted again.
    write_unannounced(video, 3, codec, options)
    with pytest.raises(ValueError, match=rf"v\{suffix}: 3 frames, fewer than the 4 that seq_len=4"):
        mkv[0]
    assert counted[-1] == video and len(counted) == 4


def test_a_video_files_length_is_read_once_per_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawing a clip needs the video's length: its header is read once, not once per clip (a torchrun process
    draws every clip of the global batch and decodes only its share), and again when the file changes."""
    write_video(tmp_path / "v.mp4", ramp(20, step=6), 25, **LOSSLESS)  # type: ignore[arg-type]
    probed: list[Path] = []

    def counting_probe(path: Path) -> object:
        probed.append(Path(path))
        return probe_video(path)

    monkeypatch.setattr(folder, "probe_video", counting_probe)
    dataset = VideoFolderDataset(tmp_path, seq_len=4, length=10, rng=np.random.default_rng(0))
    starts = {dataset.draw(0).start for _ in range(30)}
    assert len(starts) > 5 and max(starts) <= 16
    clip = dataset[0]
    assert clip.shape == (4, 24, 32, 3) and probed == [tmp_path / "v.mp4"]
    write_video(tmp_path / "v.mp4", ramp(3, step=6), 25, **LOSSLESS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"v.mp4: 3 frames, fewer than the 4 that seq_len=4"):
        dataset.draw(0)
    assert len(probed) == 2


def test_corrupt_video_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    with pytest.raises(ValueError, match=r"broken.mp4"):
        VideoFolderDataset(tmp_path, seq_len=2)[0]
    (tmp_path / "broken.mp4").unlink()
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "001.png").write_bytes(b"not a png")
    (frames / "002.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"001.png: cannot read image"):
        VideoFolderDataset(tmp_path, seq_len=2)[0]


def test_decompression_bomb_frame_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow refuses images of more than 2 * MAX_IMAGE_PIXELS pixels (a 1.1 MB PNG of 20000x20000, say);
    before, its DecompressionBombError escaped as a traceback without the file name."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(2):
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / f"{t}.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 40x40 = 1600 pixels > 2 * 500
    with pytest.raises(ValueError, match=r"frames/0.png: cannot read image \(Image size \(1600 pixels\) exceeds limit"):
        VideoFolderDataset(tmp_path, seq_len=2)[0]


def test_mixed_frame_sizes_need_image_size(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "1.png")
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(folder / "2.png")
    with pytest.raises(ValueError, match=r"mixed: frames of different sizes"):
        VideoFolderDataset(tmp_path, seq_len=2)[0]
    assert VideoFolderDataset(tmp_path, seq_len=2, image_size=6)[0].shape == (2, 6, 6, 3)


def test_argument_errors(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"root: found no video under"):
        VideoFolderDataset(tmp_path, seq_len=2)
    with pytest.raises(ValueError, match=r"root: expected a directory of videos, found none at"):
        VideoFolderDataset(tmp_path / "missing", seq_len=2)
    with pytest.raises(ValueError, match=r"crop: expected one of 'center'"):
        VideoFolderDataset(root, seq_len=2, image_size=8, crop="random")
    with pytest.raises(ValueError, match=r"crop: 'center' needs an image_size"):
        VideoFolderDataset(root, seq_len=2, crop="center")
    with pytest.raises(ValueError, match=r"resample: expected one of"):
        VideoFolderDataset(root, seq_len=2, resample="fancy")
    with pytest.raises(TypeError, match=r"image_size: expected None, an int or a \(height, width\) tuple"):
        VideoFolderDataset(root, seq_len=2, image_size=[8, 8])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"frame_step: expected an int >= 1"):
        VideoFolderDataset(root, seq_len=2, frame_step=0)


def coloured_frame(t: int) -> np.ndarray:
    """A red 16x16 frame with a green bar at columns 4t..4t+3."""
    frame = np.zeros((16, 16, 3), np.uint8)
    frame[..., 0] = 200
    frame[:, 4 * t : 4 * t + 4] = (20, 200, 60)
    return frame


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_frames_are_read_as_colours(tmp_path: Path, transparent: bool) -> None:
    """Palette PNGs (GIF exports, pngquant) hold indices; the clip must hold the colours they stand for."""
    folder = tmp_path / "palette"
    folder.mkdir()
    expected = np.stack([coloured_frame(t) for t in range(4)])
    for t, frame in enumerate(expected):
        image = Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        # With transparency, entry 3 (unused: every pixel stays opaque) is marked transparent.
        image.save(folder / f"{t}.png", **({"transparency": 3} if transparent else {}))
        with Image.open(folder / f"{t}.png") as saved:
            assert saved.mode == "P" and ("transparency" in saved.info) == transparent
    dataset = VideoFolderDataset(tmp_path, seq_len=4, random_start=False)
    np.testing.assert_array_equal(dataset[0], expected)
    gray = VideoFolderDataset(tmp_path, seq_len=4, random_start=False, grayscale=True)[0]
    np.testing.assert_array_equal(gray, np.stack([np.asarray(Image.fromarray(f).convert("L")) for f in expected]))


def test_16_bit_frames_are_scaled_to_8_bits(tmp_path: Path) -> None:
    """16-bit grey PNGs are scaled (65535 -> 255), not clipped to white."""
    folder = tmp_path / "deep"
    folder.mkdir()
    levels = [0, 20, 200, 255]
    for t, level in enumerate(levels):
        frame = np.full((8, 8), level * 257, np.uint16)
        frame[0, 0] = 65535  # white pixel
        frame[0, 1] = level * 257 + (100 if level < 255 else -100)  # rounds to the same 8-bit level
        Image.fromarray(frame).save(folder / f"{t}.png")
        with Image.open(folder / f"{t}.png") as saved:  # 16-bit grey: "I;16", or "I" in older Pillow (9.1)
            assert saved.mode in ("I;16", "I")
    clip = VideoFolderDataset(tmp_path, seq_len=4, random_start=False, grayscale=True)[0]
    expected = np.broadcast_to(np.array(levels, np.uint8)[:, None, None], (4, 8, 8)).copy()
    expected[:, 0, 0] = 255
    np.testing.assert_array_equal(clip, expected)
    rgb = VideoFolderDataset(tmp_path, seq_len=4, random_start=False)[0]
    np.testing.assert_array_equal(rgb, np.repeat(expected[..., None], 3, axis=-1))


def test_grey_alpha_and_one_bit_frames(tmp_path: Path) -> None:
    folder = tmp_path / "la"
    folder.mkdir()
    grey_alpha = np.zeros((8, 8, 2), np.uint8)
    grey_alpha[..., 0] = 90
    grey_alpha[..., 1] = 10  # nearly transparent: the alpha is dropped, the grey level kept
    Image.fromarray(grey_alpha, mode="LA").save(folder / "1.png")
    Image.new("1", (8, 8), 1).save(folder / "2.png")
    clip = VideoFolderDataset(tmp_path, seq_len=2, random_start=False, grayscale=True)[0]
    np.testing.assert_array_equal(clip[0], np.full((8, 8), 90, np.uint8))
    np.testing.assert_array_equal(clip[1], np.full((8, 8), 255, np.uint8))


def test_unsupported_image_mode_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "float"
    folder.mkdir()
    for t in range(2):
        Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(folder / f"{t}.tif")
    # .tif is not a frame extension; give the file a frame name (Pillow reads by content).
    for t in range(2):
        (folder / f"{t}.tif").rename(folder / f"{t}.png")
    with pytest.raises(ValueError, match=r"0\.png: image mode 'F' is not supported"):
        VideoFolderDataset(tmp_path, seq_len=2, random_start=False)[0]


def test_a_folder_video_one_frame_short_of_a_clip_is_reported_up_front(tmp_path: Path) -> None:
    """The boundary of the start-up check: span - 1 frames are refused (they would fail at whichever training step
    draws the video), span frames are accepted."""
    from examples.srvp.datasets import check_folder_lengths

    for name, n in (("a", 6), ("b", 5)):
        (tmp_path / name).mkdir()
        for t in range(n):
            Image.fromarray(np.full((16, 16), 10 * t, np.uint8)).save(tmp_path / name / f"frame{t}.png")
    videos = VideoFolderDataset(tmp_path, seq_len=6, image_size=16, grayscale=True, length=10)
    with pytest.raises(ValueError, match=r"b has 5 frames, fewer than the 6 that clips of 6 frames"):
        check_folder_lengths(videos, "--seq-len")
    videos.sources = [s for s in videos.sources if s.path.name == "a"]
    check_folder_lengths(videos, "--seq-len")  # exactly one clip long: accepted


def test_cmyk_frames_are_read_as_rgb_and_16_bit_values_beyond_16_bits_are_named(tmp_path: Path) -> None:
    """A CMYK image (print workflows, some JPEGs) is converted to RGB: no ink is white, full cyan has no red, full
    black is black. A 32-bit integer image whose values do not fit 16 bits is refused, not wrapped or clipped."""
    from latentdyn.video.datasets._common import read_png

    cmyk = np.zeros((2, 3, 4), np.uint8)
    cmyk[0, 1, 0] = 255  # cyan
    cmyk[1, 2, 3] = 255  # black
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.tif")
    expected = np.full((2, 3, 3), 255, np.uint8)
    expected[0, 1] = (0, 255, 255)
    expected[1, 2] = (0, 0, 0)
    np.testing.assert_array_equal(read_png(tmp_path / "cmyk.tif"), expected)

    wide = np.array([[0, 70_000], [-1, 5]], np.int32)
    Image.fromarray(wide, mode="I").save(tmp_path / "wide.tif")
    with Image.open(tmp_path / "wide.tif") as saved:
        assert saved.mode == "I"
    with pytest.raises(ValueError, match=r"wide\.tif: image mode 'I' with values outside 0-65535 \(-1\.\.70000\)"):
        read_png(tmp_path / "wide.tif")
