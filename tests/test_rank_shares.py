"""Each torchrun process makes only its share of a batch: the shares of N processes are the batch of one, bit
for bit, and each process reads (decodes, renders) only the clips of its share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from examples.srvp import datasets as srvp_data
from examples.srvp.config import PRESETS, TrainConfig
from examples.srvp.datasets import check_stream, make_data, share_slice
from latentdyn.video import datasets as vd
from latentdyn.video.datasets import ClipRef, write_video
from latentdyn.video.datasets._common import write_png

LEVELS = (20, 60, 100, 140, 180, 220)


def frames(n: int, level: int, size: int = 64, rgb: bool = False) -> np.ndarray:
    """n uint8 frames of a bright bar moving right on a background of ``level``: every frame and video differs."""
    video = np.full((n, size, size, 3) if rgb else (n, size, size), level, dtype=np.uint8)
    for t in range(n):
        video[t, :, 2 + 3 * t : 6 + 3 * t] = 255
    return video


def kth_data(root: Path) -> Path:
    for person in (1, 2, 3, 4):
        for action, level in (("boxing", 30), ("walking", 90)):
            folder = root / "processed_64" / action / f"person{person:02d}_{action}_d1"
            folder.mkdir(parents=True)
            for t, image in enumerate(frames(9 + person, level + 10 * person)):
                write_png(folder / f"image-{t + 1}.png", image)
    return root


def human36m_data(root: Path) -> Path:
    (root / "train").mkdir(parents=True)
    for i, level in enumerate(LEVELS):
        np.savez(root / "train" / f"S1_{i}.npz", image=frames(20 + i, level, rgb=True))
    return root


def bair_data(root: Path) -> Path:
    for i, level in enumerate(LEVELS):
        folder = root / "processed_data" / "train" / "traj_0" / str(i)
        folder.mkdir(parents=True)
        for t, image in enumerate(frames(30, level, rgb=True)):
            write_png(folder / f"{t:03d}.png", image)
    return root


def folder_data(root: Path) -> Path:
    for i, level in enumerate(LEVELS):
        write_video(root / f"clip{i}.gif", frames(12 + i, level, size=40, rgb=True), 10)
    return root


def frame_folder_data(root: Path) -> Path:
    for i, level in enumerate(LEVELS):
        (root / f"video{i}").mkdir(parents=True)
        for t, image in enumerate(frames(10 + i, level, rgb=True)):
            write_png(root / f"video{i}" / f"{t:03d}.png", image)
    return root


def array_data(root: Path) -> Path:
    root.mkdir()
    np.savez(root / "clips.npz", sequences=np.stack([frames(14, level) for level in LEVELS], axis=1))
    return root / "clips.npz"


def config(dataset: str, data_dir: Path | None, channels: int) -> TrainConfig:
    base = PRESETS["tiny"]()
    model = dataclasses.replace(base.model, channels=channels)
    cfg = dataclasses.replace(base, model=model, dataset=dataset, batch_size=8, seq_len=6, val_sequences=2)
    if dataset == "human36m":
        cfg = dataclasses.replace(cfg, subsampling=2)
    return cfg if data_dir is None else dataclasses.replace(cfg, data_dir=str(data_dir))


CASES: dict[str, tuple[Callable[[Path], Path] | None, str, int, type | None]] = {
    # name: (makes data_dir, dataset, channels, the dataset class whose reads are counted)
    "smmnist": (None, "smmnist", 1, None),
    "kth": (kth_data, "kth", 1, vd.KTHDataset),
    "human36m": (human36m_data, "human36m", 3, vd.Human36MDataset),
    "bair": (bair_data, "bair", 3, vd.BAIRDataset),
    "folder of video files": (folder_data, "folder", 3, vd.VideoFolderDataset),
    "folder of frame folders": (frame_folder_data, "folder", 1, vd.VideoFolderDataset),
    "npz of clips": (array_data, "folder", 1, srvp_data._ArrayClips),
}


@pytest.mark.parametrize("name", CASES)
def test_the_shares_of_n_processes_are_the_batch_of_one(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, dataset, channels, cls = CASES[name]
    cfg = config(dataset, None if make is None else make(tmp_path / "data"), channels)
    whole, val = make_data(cfg)
    reads: list[int] = []
    if cls is None:  # Moving MNIST: the clips rendered per batch
        from latentdyn.video import moving_mnist

        compose = moving_mnist.compose_clips

        def counted(digits: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
            reads.append(len(digits))
            return compose(digits, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(moving_mnist, "compose_clips", counted)
    else:
        read = cls.read

        def counted_read(self: object, ref: ClipRef) -> np.ndarray:
            reads.append(1)
            return read(self, ref)

        monkeypatch.setattr(cls, "read", counted_read)
    for world in (2, 4):
        shares = [make_data(cfg, share=(rank, world)) for rank in range(world)]
        for step in (0, 3):
            expected = whole[step]
            assert expected.shape[:2] == (6, 8)
            reads.clear()
            parts = [stream[step] for stream, _ in shares]
            assert torch.equal(torch.cat(parts, dim=1), expected)
            assert all(torch.equal(part, chunk) for part, chunk in zip(parts, expected.chunk(world, dim=1)))
            # Each process read or rendered its 8 / world clips, not the batch's 8.
            assert sum(reads) == 8 and (len(reads) == world if cls is None else True)
            check_stream(shares[1][0], cfg, step, share=(1, world))
        assert all(torch.equal(v, val) for _, v in shares)  # the validation clips are whole on every process
    assert not torch.equal(whole[0], whole[3])


def test_a_share_of_the_wrong_size_is_named(tmp_path: Path) -> None:
    cfg = config("smmnist", None, 1)
    stream, _ = make_data(cfg, share=(0, 2))
    with pytest.raises(ValueError, match=r"expected \(6, 8\) \(seq_len, batch_size\)"):
        check_stream(stream, cfg)
    with pytest.raises(ValueError, match=r"share: a batch of 8 does not split over 3 processes"):
        make_data(cfg, share=(0, 3))
    with pytest.raises(ValueError, match=r"share: expected \(rank, world\) with 0 <= rank < world, got \(2, 2\)"):
        share_slice(8, (2, 2))
    assert share_slice(8, (1, 4)) == slice(2, 4)


DATASETS: dict[str, Callable[[Path], object]] = {
    "kth": lambda root: vd.KTHDataset(kth_data(root), seq_len=6),
    "human36m": lambda root: vd.Human36MDataset(human36m_data(root), seq_len=6, subsampling=2),
    "bair": lambda root: vd.BAIRDataset(bair_data(root), seq_len=6),
    "folder": lambda root: vd.VideoFolderDataset(folder_data(root), seq_len=6, frame_step=2, length=100),
    "folder by video": lambda root: vd.VideoFolderDataset(frame_folder_data(root), seq_len=6),
}


@pytest.mark.parametrize("name", DATASETS)
def test_read_of_draw_is_the_item_draw_for_draw(name: str, tmp_path: Path) -> None:
    data: Any = DATASETS[name](tmp_path / "data")
    n = len(data.videos if hasattr(data, "videos") else data.sources)
    for index in (0, n - 1, -1):
        data.rng = item_rng = np.random.default_rng(index % n)
        item = data[index]
        data.rng = draw_rng = np.random.default_rng(index % n)
        ref = data.draw(index)
        assert isinstance(ref, ClipRef) and 0 <= ref.video < n and ref.start >= 0
        assert np.array_equal(data.read(ref), item)
        # The same draws, in the same order: the generators are where the item left its own.
        assert np.array_equal(draw_rng.integers(1 << 30, size=4), item_rng.integers(1 << 30, size=4))
    with pytest.raises(TypeError, match=r"ref: expected a ClipRef\(video, start\) of ints \(from draw\), got 3"):
        data.read(3)
    with pytest.raises(ValueError, match=rf"ref: video {n} is not one of the dataset's {n} videos \(0 to {n - 1}\)"):
        data.read(ClipRef(n, 0))
    with pytest.raises(ValueError, match=r"ref: expected a start frame >= 0, got -1"):
        data.read(ClipRef(0, -1))
    if name != "folder":  # (a video file's length is known once it is decoded)
        with pytest.raises(ValueError, match=r"ref: a clip .* from frame 40 does not fit in"):
            data.read(ClipRef(0, 40))
