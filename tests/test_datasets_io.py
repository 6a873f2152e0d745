"""Video file reading and writing (latentdyn.video.datasets.io), on files encoded by the tests."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from latentdyn.video.datasets.io import (
    iter_video,
    probe_video,
    read_video,
    write_video,
)


def ramp_video(n: int = 10, height: int = 16, width: int = 24, step: int = 20) -> np.ndarray:
    """Frames whose uniform grey level is step * t, so the frame index can be read back from the pixels."""
    levels = (np.arange(n) * step).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv", ".gif"])
def test_roundtrip_keeps_shape_and_levels(tmp_path: Path, suffix: str) -> None:
    frames = ramp_video()
    path = write_video(tmp_path / f"clip{suffix}", frames, 25)
    video = read_video(path)
    assert video.dtype == np.uint8
    assert video.shape == frames.shape
    # Lossy codecs: a flat frame comes back within a couple of grey levels.
    assert np.abs(video.astype(int) - frames).max() <= 3
    info = probe_video(path)
    assert (info.height, info.width) == (16, 24)
    assert info.fps == pytest.approx(25.0, rel=0.05)
    assert leftovers(tmp_path) == []


def test_grayscale_frames_are_written_as_grey_rgb(tmp_path: Path) -> None:
    frames = np.full((5, 8, 8), 77, dtype=np.uint8)
    video = read_video(write_video(tmp_path / "g.avi", frames, 25))
    assert video.shape == (5, 8, 8, 3)
    assert np.abs(video.astype(int) - 77).max() <= 2


def test_iter_video_streams_the_same_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "c.mp4", ramp_video(), 25, options={"crf": "0"}, pix_fmt="yuv444p")
    np.testing.assert_array_equal(np.stack(list(iter_video(path))), read_video(path))


def test_resize_ignores_aspect_ratio(tmp_path: Path) -> None:
    frames = np.zeros((3, 40, 80, 3), dtype=np.uint8)
    frames[:, :, 40:, 0] = 255  # right half red
    frames[:, 20:, :, 1] = 255  # bottom half green
    path = write_video(tmp_path / "c.mp4", frames, 25, options={"crf": "0"}, pix_fmt="yuv444p")
    video = read_video(path, size=(16, 32))
    assert video.shape == (3, 16, 32, 3)
    # The vertical edge lands in the middle column and the horizontal one in the middle row: stretched,
    # not letterboxed.
    assert video[:, :, :14, 0].max() < 20 and video[:, :, 18:, 0].min() > 235
    assert video[:, :6, :, 1].max() < 20 and video[:, 10:, :, 1].min() > 235
    assert read_video(path, size=8).shape == (3, 8, 8, 3)


def test_frame_rate_resampling_repeats_and_drops_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "c.mp4", ramp_video(10), 25, options={"crf": "0"}, pix_fmt="yuv444p")
    index = np.round(read_video(path)[:, 0, 0, 0] / 20).astype(int)
    np.testing.assert_array_equal(index, np.arange(10))
    doubled = np.round(read_video(path, frame_rate=50)[:, 0, 0, 0] / 20).astype(int)
    # Ticks every 20 ms over frames every 40 ms: every frame shown twice (the last tick is frame 9's start).
    np.testing.assert_array_equal(doubled, np.repeat(np.arange(10), 2)[:19])
    halved = np.round(read_video(path, frame_rate=12.5)[:, 0, 0, 0] / 20).astype(int)
    np.testing.assert_array_equal(halved, [0, 2, 4, 6, 8])
    slower = np.round(read_video(path, frame_rate=10)[:, 0, 0, 0] / 20).astype(int)
    # Ticks at 0, 100, 200, 300 ms show the frame on screen then: frames starting at 0, 80, 200, 280 ms.
    np.testing.assert_array_equal(slower, [0, 2, 5, 7])
    same = np.round(read_video(path, frame_rate=25)[:, 0, 0, 0] / 20).astype(int)
    np.testing.assert_array_equal(same, np.arange(10))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no video file at .*nothing.mp4"):
        read_video(tmp_path / "nothing.mp4")
    with pytest.raises(FileNotFoundError, match=r"nothing.avi"):
        probe_video(tmp_path / "nothing.avi")


def test_garbage_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"not a video at all" * 50)
    with pytest.raises(ValueError, match=r"garbage.mp4: cannot decode video"):
        read_video(bad)
    with pytest.raises(ValueError, match=r"garbage.mp4: not a readable video"):
        probe_video(bad)
    gif = tmp_path / "garbage.gif"
    gif.write_bytes(b"GIF89a-but-not-really")
    with pytest.raises(ValueError, match=r"garbage.gif"):
        read_video(gif)


def test_truncated_avi_is_detected(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    good = write_video(tmp_path / "good.avi", frames, 25)
    data = good.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ValueError, match=r"cut.avi: truncated or corrupt video: the header announces 20 frames"):
        read_video(cut)
    with pytest.raises(ValueError, match=r"cut.avi: truncated"):
        list(iter_video(cut))


def test_truncated_mp4_is_detected(tmp_path: Path) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    data = write_video(tmp_path / "good.mp4", frames, 25).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.mp4"):
        read_video(cut)


def test_write_video_argument_errors(tmp_path: Path) -> None:
    frames = ramp_video()
    with pytest.raises(TypeError, match=r"frames: expected a uint8 numpy array"):
        write_video(tmp_path / "a.mp4", frames.astype(np.float32), 25)
    with pytest.raises(TypeError, match=r"frames: expected a uint8 numpy array"):
        write_video(tmp_path / "a.mp4", frames.tolist(), 25)
    with pytest.raises(ValueError, match=r"frames: expected shape \(T, H, W, 3\)"):
        write_video(tmp_path / "a.mp4", frames[..., :2], 25)
    with pytest.raises(ValueError, match=r"even height and width"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 15, 16, 3), np.uint8), 25)
    with pytest.raises(ValueError, match=r"fps: expected a positive finite number, got 0\.0"):
        write_video(tmp_path / "a.mp4", frames, 0)
    for bad in (True, "25", None):
        with pytest.raises(TypeError, match=r"fps: expected a positive real number, got "):
            write_video(tmp_path / "a.mp4", frames, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"cannot pick a codec for extension '.xyz'"):
        write_video(tmp_path / "a.xyz", frames, 25)
    with pytest.raises(ValueError, match=r"a.mp4: cannot encode video with codec 'no-such-codec'"):
        write_video(tmp_path / "a.mp4", frames, 25, codec="no-such-codec")
    assert list(tmp_path.iterdir()) == []  # nothing written, no partial file left


def test_read_video_argument_errors(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.avi", ramp_video(), 25)
    with pytest.raises(ValueError, match=r"frame_rate: expected a positive finite number, got 0\.0"):
        read_video(path, frame_rate=0)
    for bad in (True, "25"):
        with pytest.raises(TypeError, match=r"frame_rate: expected a positive real number, got "):
            read_video(path, frame_rate=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"interpolation: expected one of"):
        read_video(path, interpolation="cubic-ish")
    with pytest.raises(TypeError, match=r"size: expected None, an int or a"):
        read_video(path, size=(1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"size: expected an int >= 1"):
        read_video(path, size=0)


def test_missing_pyav_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r'pip install "latentdyn\[video\]"'):
        read_video(path)


def test_numpy_frame_rates_are_numbers(tmp_path: Path) -> None:
    """np.float32 and np.int64 rates were refused with a ValueError ("got np.float32(25.0)"): they are numbers."""
    frames = ramp_video()
    path = write_video(tmp_path / "a.avi", frames, np.int64(25))
    assert np.array_equal(read_video(path, frame_rate=np.float32(50)), read_video(path, frame_rate=50))
    assert write_video(tmp_path / "b.avi", frames, np.float32(25.0)).is_file()


def test_a_packet_that_decodes_to_nothing_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Non-empty packets that the decoder drops without an error must not shorten a video silently (its clips would
    be cut from fewer frames than it holds)."""
    from types import SimpleNamespace
    from typing import Any

    from latentdyn.video.datasets import io

    frame = SimpleNamespace(time=0.0, to_ndarray=lambda format: np.zeros((4, 4, 3), np.uint8))

    def packet(frames: list[Any]) -> SimpleNamespace:
        return SimpleNamespace(pts=0, size=10, is_discard=False, decode=lambda: frames)

    class Container:
        streams = SimpleNamespace(video=[SimpleNamespace(frames=0)])

        def __enter__(self) -> Container:
            return self

        def __exit__(self, *exc: object) -> bool:
            return False

        def demux(self, stream: object) -> list[SimpleNamespace]:
            return [packet([frame]), packet([]), packet([frame])]

    fake_av = SimpleNamespace(open=lambda path: Container(), FFmpegError=type("FFmpegError", (Exception,), {}))
    monkeypatch.setattr(io, "_import_av", lambda: fake_av)
    path = tmp_path / "v.mkv"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"v\.mkv: corrupt video: 1 of 3 frames could not be decoded"):
        list(io._decode(path, None, "bicubic"))
