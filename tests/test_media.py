"""Tests for latentdyn.video.media: uint8 quantisation, video/image grids, GIF and PNG files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from latentdyn.video import media
from latentdyn.video.media import image_grid, save_gif, save_image_grid, to_uint8, video_grid


def _distinct_grey_video(t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A grey video (T, 1, H, W) in [0, 1] whose frames all differ (GIF writers merge repeated frames)."""
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(t, 1, h, w, generator=g)
    video[:, 0, 0, 0] = torch.arange(t) / max(t, 1)
    return video


# ---------------------------------------------------------------------------------------------------------
# to_uint8
# ---------------------------------------------------------------------------------------------------------


def test_to_uint8_truncates_after_clamping() -> None:
    x = torch.tensor([-0.5, 0.0, 0.5, 0.999, 1.0, 2.0, 1 / 255, 0.9999 / 255])
    out = to_uint8(x)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    # floor(255 x) on the clamped values; rounding would give 128 for 0.5 and 255 for 0.999.
    assert out.tolist() == [0, 0, 127, 254, 255, 255, 1, 0]


def test_to_uint8_matches_numpy_floor_on_random_frames() -> None:
    x = torch.rand(3, 2, 1, 8, 8, dtype=torch.float64) * 1.2 - 0.1
    expected = np.floor(np.clip(x.numpy(), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(to_uint8(x).numpy(), expected)


def test_to_uint8_errors() -> None:
    with pytest.raises(TypeError, match=r"frames: expected a torch\.Tensor"):
        to_uint8(np.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="frames: expected a floating-point tensor"):
        to_uint8(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="frames: contains NaN"):
        to_uint8(torch.tensor([0.5, float("nan")]))


# ---------------------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------------------


def test_video_grid_places_each_video_in_its_cell() -> None:
    r, k, t, h, w, pad = 2, 3, 4, 5, 6, 2
    videos = torch.rand(r, k, t, 1, h, w)
    grid = video_grid(videos, padding=pad, pad_value=0.0)
    assert grid.shape == (t, r * (h + pad) + pad, k * (w + pad) + pad, 3)
    assert grid.dtype == np.uint8
    expected = to_uint8(videos).numpy()
    for i in range(r):
        for j in range(k):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            cell = grid[:, top : top + h, left : left + w]
            for c in range(3):  # grey repeated to RGB
                np.testing.assert_array_equal(cell[..., c], expected[i, j, :, 0])


def test_video_grid_padding_has_pad_value_everywhere_outside_cells() -> None:
    r, k, t, h, w, pad = 2, 2, 3, 4, 4, 3
    grid = video_grid(torch.zeros(r, k, t, 3, h, w), padding=pad, pad_value=0.5)
    mask = np.ones(grid.shape[1:3], dtype=bool)
    for i in range(r):
        for j in range(k):
            mask[pad + i * (h + pad) : pad + i * (h + pad) + h, pad + j * (w + pad) : pad + j * (w + pad) + w] = False
    assert (grid[:, mask] == 127).all()  # 0.5 * 255 truncated
    assert (grid[:, ~mask] == 0).all()
    assert mask.sum() == grid.shape[1] * grid.shape[2] - r * k * h * w


def test_video_grid_one_video_per_row_and_no_padding() -> None:
    videos = torch.rand(3, 2, 1, 4, 5)  # (R, T, C, H, W)
    grid = video_grid(videos, padding=0)
    assert grid.shape == (2, 12, 5, 3)
    np.testing.assert_array_equal(grid[1, 4:8, :, 0], to_uint8(videos[1, 1, 0]).numpy())


def test_video_grid_ragged_rows_mixed_channels_and_uint8() -> None:
    t, h, w = 3, 4, 4
    grey = torch.rand(t, 1, h, w)  # one video
    rgb = (torch.rand(2, t, 3, h, w) * 255).to(torch.uint8)  # a row of two uint8 videos
    grid = video_grid([grey, rgb], padding=1, pad_value=1.0)
    assert grid.shape == (t, 2 * (h + 1) + 1, 2 * (w + 1) + 1, 3)
    np.testing.assert_array_equal(grid[:, 1:5, 1:5, 2], to_uint8(grey[:, 0]).numpy())
    # The missing second video of the first row is blank (pad_value).
    assert (grid[:, 1:5, 6:10] == 255).all()
    np.testing.assert_array_equal(grid[:, 6:10, 6:10], rgb[1].permute(0, 2, 3, 1).numpy())


def test_image_grid_matches_one_frame_video_grid() -> None:
    images = torch.rand(2, 3, 1, 6, 7)  # (R, K, C, H, W)
    grid = image_grid(images, padding=1)
    assert grid.shape == (2 * 7 + 1, 3 * 8 + 1, 3)
    np.testing.assert_array_equal(grid, video_grid(images.unsqueeze(2), padding=1)[0])
    rows = image_grid([images[0, 0], images[1]], padding=1)
    assert rows.shape == grid.shape
    np.testing.assert_array_equal(rows[8:], grid[8:])


def test_grid_errors() -> None:
    video = torch.rand(3, 1, 4, 4)
    with pytest.raises(ValueError, match=r"videos: expected a tensor \(R, T, C, H, W\)"):
        video_grid(video)
    with pytest.raises(TypeError, match="videos: expected a tensor or a sequence of tensors"):
        video_grid(7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"videos\[1\]: expected a torch\.Tensor"):
        video_grid([video, video.numpy()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"videos\[0\]: expected one video \(T, C, H, W\)"):
        video_grid([video[0]])
    with pytest.raises(ValueError, match=r"videos\[0\]: expected C = 1 \(grey\) or 3"):
        video_grid([video.expand(3, 2, 4, 4)])
    with pytest.raises(TypeError, match=r"videos\[0\]: expected float frames in \[0, 1\] or uint8"):
        video_grid([video.long()])
    with pytest.raises(ValueError, match=r"videos\[1\]: expected T, H, W = 3, 4, 4 like videos\[0\], got 2, 4, 4"):
        video_grid([video, video[:2]])
    with pytest.raises(ValueError, match="videos: expected at least one video"):
        video_grid([])
    with pytest.raises(ValueError, match="padding: expected an int >= 0"):
        video_grid([video], padding=-1)
    with pytest.raises(TypeError, match="padding: expected an int >= 0"):
        video_grid([video], padding=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"pad_value: expected a float in \[0, 1\]"):
        video_grid([video], pad_value=255)
    with pytest.raises(TypeError, match=r"pad_value: expected a float in \[0, 1\]"):
        video_grid([video], pad_value=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"images: expected a tensor \(R, C, H, W\)"):
        image_grid(torch.rand(4, 4))
    with pytest.raises(ValueError, match=r"images\[0\]: expected an image \(C, H, W\)"):
        image_grid([torch.rand(4, 4)])
    with pytest.raises(TypeError, match="images: expected a tensor or a sequence of tensors"):
        image_grid("abc")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------


def test_gif_round_trip_keeps_frames_pixels_and_loops(tmp_path: Path) -> None:
    frames = video_grid(torch.stack([_distinct_grey_video(6, 9, 11, seed=1), _distinct_grey_video(6, 9, 11, seed=2)]))
    path = save_gif(tmp_path / "clip.gif", frames, fps=5)
    assert path == tmp_path / "clip.gif"
    back = iio.imread(path, index=None)
    assert back.shape[0] == 6
    np.testing.assert_array_equal(back[..., :3], frames)  # grey frames: <= 256 colours, lossless
    meta = iio.immeta(path, index=0)
    assert meta["loop"] == 0  # NETSCAPE loop count 0: forever
    assert meta["duration"] == 200


def test_gif_accepts_a_uint8_tensor_and_rgb_colours(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)  # 64 pixels: < 256 colours a frame
    save_gif(tmp_path / "rgb.gif", torch.from_numpy(frames))
    np.testing.assert_array_equal(iio.imread(tmp_path / "rgb.gif", index=None)[..., :3], frames)


def test_save_gif_is_atomic_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "folder" / "clip.gif"
    save_gif(target, video_grid(torch.rand(1, 3, 1, 4, 4)))
    assert os.listdir(target.parent) == ["clip.gif"]  # parents created, no temporary file left
    save_gif(target, video_grid(torch.rand(1, 5, 1, 4, 4)))
    assert os.listdir(target.parent) == ["clip.gif"]
    assert iio.imread(target, index=None).shape[0] == 5


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "clip.gif"
    target.write_bytes(b"old")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(media.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_gif(target, video_grid(torch.rand(1, 2, 1, 4, 4)))
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["clip.gif"]


def test_save_image_grid_round_trip(tmp_path: Path) -> None:
    images = torch.rand(2, 3, 1, 5, 5)
    path = save_image_grid(tmp_path / "grid.png", images, padding=1, pad_value=0.0)
    back = iio.imread(path)
    np.testing.assert_array_equal(back, image_grid(images, padding=1, pad_value=0.0))
    assert os.listdir(tmp_path) == ["grid.png"]


def test_missing_imageio_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imageio", None)
    monkeypatch.setitem(sys.modules, "imageio.v3", None)
    frames = video_grid(torch.rand(1, 2, 1, 4, 4))
    with pytest.raises(ImportError, match=r"pip install imageio .*latentdyn\[examples\]"):
        save_gif(tmp_path / "clip.gif", frames)
    with pytest.raises(ImportError, match="pip install imageio"):
        save_image_grid(tmp_path / "grid.png", torch.rand(1, 1, 4, 4))
    assert os.listdir(tmp_path) == []


def test_save_gif_errors(tmp_path: Path) -> None:
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match=r"frames: expected a uint8 numpy array or tensor \(T, H, W, 3\)"):
        save_gif(tmp_path / "a.gif", [frames])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="frames: expected uint8 values"):
        save_gif(tmp_path / "a.gif", frames.astype(np.float32))
    with pytest.raises(ValueError, match=r"frames: expected a non-empty array of shape \(T, H, W, 3\)"):
        save_gif(tmp_path / "a.gif", frames[..., :1])
    with pytest.raises(ValueError, match=r"frames: expected a non-empty array of shape \(T, H, W, 3\)"):
        save_gif(tmp_path / "a.gif", frames[:0])
    with pytest.raises(ValueError, match="fps: expected a positive finite number"):
        save_gif(tmp_path / "a.gif", frames, fps=0)
    with pytest.raises(TypeError, match="fps: expected a positive real number"):
        save_gif(tmp_path / "a.gif", frames, fps="10")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_a_full_disk_names_the_file_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails (a full disk: no file name) named no file, so a user could not tell which output or
    disk was at fault; the error names the GIF or PNG asked for, and no temporary file is left."""
    import errno

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    for path, save in ((tmp_path / "clip.gif", lambda p: save_gif(p, video_grid(torch.rand(1, 2, 1, 4, 4)))),
                       (tmp_path / "grid.png", lambda p: save_image_grid(p, torch.rand(1, 1, 4, 4)))):  # fmt: skip
        with pytest.raises(OSError) as info:
            save(path)
        assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(path))
    assert os.listdir(tmp_path) == []
