"""Human3.6M: conversion of the per-subject ``.mp4`` videos, training clips and the fixed test set.

Layouts (``D`` is the directory you pick):

* raw input: ``raw_dir/S<k>/Videos/<video>.mp4`` (files starting with ``_``, the ``_ALL`` videos, are
  skipped);
* converted: ``D/train/S<k>-<video>.npz`` for subjects 1, 5, 6, 7, 8 and ``D/test/S<k>-<video>.npz`` for
  subjects 9, 11, each with ``image`` uint8 (T, 64, 64, 3) at the original 50 fps, ``filename`` and
  ``subject``;
* test set: ``D/test_set_<T>_<s>/test_<i>.npz`` holding the (T−1)·s+1 raw frames of clip i (``image``)
  and its start (``frame``).

Clips keep one frame in ``subsampling`` (8 in the paper), so a clip of T frames spans (T−1)·8+1 raw frames.
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from latentdyn._checks import check_choice, check_positive_int
from latentdyn._files import atomic_path
from latentdyn.video.datasets._common import (
    ClipRef,
    ConversionReport,
    RandomDraws,
    Rng,
    atomic_directory,
    check_clip_ref,
    draw_int,
    is_hidden,
    read_npz,
    require_dir,
    require_pillow,
    split_items,
)
from latentdyn.video.datasets.io import PathLike, iter_video

__all__ = [
    "HUMAN36M_CROP_BOX",
    "HUMAN36M_TEST_SUBJECTS",
    "HUMAN36M_TRAIN_SUBJECTS",
    "Human36MDataset",
    "Human36MTestDataset",
    "convert_human36m",
    "make_human36m_test_set",
]

HUMAN36M_TRAIN_SUBJECTS = (1, 5, 6, 7, 8)
HUMAN36M_TEST_SUBJECTS = (9, 11)
#: Crop box (left, upper, right, lower), as Pillow's ``Image.crop`` takes it: the central 800×800.
HUMAN36M_CROP_BOX = (100, 100, 900, 900)

_LAYOUT_HINT = "expected raw_dir/S<k>/Videos/*.mp4 for subjects 1, 5, 6, 7, 8, 9, 11"


def _crop_resize(frame: np.ndarray, image_size: int, source: Path) -> np.ndarray:
    """Crop a frame (H, W, 3) to :data:`HUMAN36M_CROP_BOX`, then Lanczos-resize it to (image_size, image_size, 3)."""
    require_pillow()
    from PIL import Image

    _, _, right, lower = HUMAN36M_CROP_BOX
    if frame.shape[0] < lower or frame.shape[1] < right:
        raise ValueError(
            f"{source}: frames of {frame.shape[1]}x{frame.shape[0]} pixels are too small for the crop box "
            f"{HUMAN36M_CROP_BOX} (Human3.6M videos are 1000x1000)"
        )
    image = Image.fromarray(frame).crop(HUMAN36M_CROP_BOX)
    # Crop first, then resize, one after the other (not one resize with a box), as the StructVRNN
    # authors did; the official SRVP conversion follows them.
    return np.asarray(image.resize((image_size, image_size), resample=Image.Resampling.LANCZOS))


def convert_human36m(
    raw_dir: PathLike,
    out_dir: PathLike,
    image_size: int = 64,
    *,
    overwrite: bool = False,
    progress: Callable[[Path], None] | None = None,
) -> ConversionReport:
    """Convert Human3.6M videos into per-video ``.npz`` files of cropped, downsized RGB frames.

    Every frame of ``raw_dir/S<k>/Videos/<video>.mp4`` is cropped to the box (100, 100, 900, 900)
    (left, upper, right, lower) and then resized to ``image_size``×``image_size`` with Pillow's Lanczos
    filter; the frame rate is kept. Subjects 1, 5, 6, 7, 8 go to ``out_dir/train``, 9 and 11 to
    ``out_dir/test``, as ``S<k>-<video>.npz`` with ``image`` uint8 (T, H, W, 3) (H = W = ``image_size``),
    ``filename`` (the video name without extension) and ``subject`` (k). Files whose name starts with ``_`` are skipped.

    Subjects whose folder is absent are skipped (a partial download still converts); each output file is
    written under a temporary name and renamed when complete, and existing outputs are skipped unless
    ``overwrite``.

    Args:
        raw_dir: directory holding ``S1``, ``S5``, ... each with a ``Videos`` folder.
        out_dir: where ``train`` and ``test`` are created.
        image_size: output frame width and height.
        overwrite: convert again videos that were already converted.
        progress: called with each output file after it is written.

    Returns:
        How many videos were written and skipped.

    Raises:
        TypeError: ``image_size`` is not an int.
        ValueError: no subject folder or no video found, frames smaller than 900×900, or an unreadable,
            corrupt or truncated video (the file is named).
        ImportError: PyAV is not installed.
    """
    size = check_positive_int(image_size, "image_size")
    raw = require_dir(Path(raw_dir), "raw_dir", _LAYOUT_HINT)
    out = Path(out_dir)
    todo: list[tuple[Path, Path, int]] = []
    for subject in (*HUMAN36M_TRAIN_SUBJECTS, *HUMAN36M_TEST_SUBJECTS):
        video_dir = raw / f"S{subject}" / "Videos"
        if not video_dir.is_dir():
            continue
        split = "train" if subject in HUMAN36M_TRAIN_SUBJECTS else "test"
        for entry in sorted(video_dir.iterdir()):
            if entry.name.startswith("_") or is_hidden(entry.name) or entry.suffix.lower() != ".mp4":
                continue
            todo.append((entry, out / split / f"S{subject}-{entry.stem}.npz", subject))
    if not todo:
        raise ValueError(f"raw_dir: found no .mp4 video under {raw}; {_LAYOUT_HINT}")
    written = skipped = 0
    for source, target, subject in todo:
        if target.exists() and not overwrite:
            skipped += 1
            continue
        # Streamed frame by frame: a whole video at 1000x1000 would not fit in memory.
        frames = np.stack([_crop_resize(frame, size, source) for frame in iter_video(source)])
        with atomic_path(target) as tmp, tmp.open("wb") as handle:
            np.savez(handle, image=frames, filename=np.array(source.stem), subject=np.array(subject))
        written += 1
        if progress is not None:
            progress(target)
    return ConversionReport(out_dir=out, written=written, skipped=skipped)


def _raw_span(seq_len: int, subsampling: int) -> int:
    return (seq_len - 1) * subsampling + 1


def _npz_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix == ".npz" and not is_hidden(f.name))


def _load_image(path: Path) -> np.ndarray:
    """The ``image`` array of a converted video, uint8 (T, H, W, 3); ``ValueError`` naming a bad file."""
    fields = read_npz(path)
    if "image" not in fields:
        raise ValueError(f"{path}: missing key 'image' (found {sorted(fields)})")
    image = fields["image"]
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"{path}: expected 'image' uint8 (T, H, W, 3), got {image.dtype} {image.shape}")
    return image


def _stored_length(path: Path) -> int:
    """Number of frames of a converted video, read from the ``.npy`` header without loading the frames."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("image.npy") as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(member)
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise ValueError(f"{path}: not a converted Human3.6M video with an 'image' array ({exc})") from exc
    return int(shape[0])


def _common_frame_size(files: Sequence[Path], videos: Sequence[np.ndarray]) -> tuple[int, int]:
    """The (H, W) every video shares; ``ValueError`` naming a file whose frames differ from the most common size.

    Caught here, the mistake (files converted with another ``image_size``) is reported before training
    rather than as a batch of mixed shapes at some later step, without a file name.
    """
    sizes = Counter((int(v.shape[1]), int(v.shape[2])) for v in videos)
    common = sizes.most_common(1)[0][0]
    for file, video in zip(files, videos):
        size = (int(video.shape[1]), int(video.shape[2]))
        if size != common:
            others = f"{sizes[common]} other videos of the split have" if sizes[common] > 1 else "another video has"
            raise ValueError(
                f"{file}: frames are {size[0]}x{size[1]} (H x W), but {others} {common[0]}x{common[1]}; every "
                "video must have one frame size (convert them all with the same image_size)"
            )
    return common


class Human36MDataset(RandomDraws, torch.utils.data.Dataset[np.ndarray]):
    """Random Human3.6M training (or validation) clips, uint8 (T, H, W, 3), one raw frame in ``subsampling``.

    The whole split is loaded into memory at construction, as in the official code. Every item draws a
    random video among those with at least (T−1)·subsampling+1 frames, then a random start, so the
    dataset has a virtual ``length`` and ``index`` is ignored. The sorted ``train`` files are split
    95 % / 5 % into ``"train"`` and ``"val"`` with ``numpy.random.RandomState(42)``.

    Args:
        root: the ``out_dir`` of :func:`convert_human36m`.
        seq_len: clip length T.
        subsampling: keep one raw frame in this many.
        split: ``"train"`` or ``"val"``.
        rng: random generator (``numpy.random.Generator`` or ``RandomState``), copied into every ``DataLoader``
            worker; see :class:`~latentdyn.video.datasets.KTHDataset` about workers.
        length: virtual number of items.
        seed: seed of the dataset's own stream of draws, kept apart in every worker (as ``KTHDataset``'s); with
            neither ``rng`` nor ``seed``, numpy's global generator.

    Attributes:
        files: the converted files of the split, sorted.
        videos: their frames, uint8 (T, H, W, 3), in the order of ``files``.
        frame_size: the frame size (H, W) every video shares.

    Raises:
        TypeError: a count or ``seed`` is not an int, ``split`` not a string, or ``rng`` not a numpy generator.
        ValueError: a count below 1, a negative ``seed``, both ``rng`` and ``seed``, an unknown ``split``, wrong
            layout, an unreadable file, videos of different frame sizes (the odd file is named), or no video long
            enough.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        seq_len: int,
        subsampling: int = 8,
        split: str = "train",
        rng: Rng | None = None,
        length: int = 500_000,
        seed: int | None = None,
    ) -> None:
        self.seq_len = check_positive_int(seq_len, "seq_len")
        self.subsampling = check_positive_int(subsampling, "subsampling")
        self.split = check_choice(split, "split", ("train", "val"))
        self.length = check_positive_int(length, "length")
        self._init_draws(rng, seed)
        folder = require_dir(Path(root) / "train", "root", "run convert_human36m(raw_dir, root) to create it")
        self.files = split_items(_npz_files(folder), self.split)
        self.span = _raw_span(self.seq_len, self.subsampling)
        self.videos = [_load_image(f) for f in self.files]
        self._eligible = [i for i, v in enumerate(self.videos) if len(v) >= self.span]
        if not self._eligible:
            longest = max((len(v) for v in self.videos), default=0)
            raise ValueError(
                f"seq_len: no Human3.6M {self.split} video under {folder} has the {self.span} frames that "
                f"seq_len={self.seq_len} with subsampling={self.subsampling} needs "
                f"({len(self.videos)} videos, the longest has {longest})"
            )
        self.frame_size = _common_frame_size(self.files, self.videos)

    def __len__(self) -> int:
        return self.length

    def draw(self, index: int) -> ClipRef:
        """The clip ``self[index]`` reads, drawn from ``rng`` without reading a frame: a video, then a start
        (``index`` is ignored)."""
        rng = self._stream()
        video = self._eligible[draw_int(rng, len(self._eligible))]
        return ClipRef(video, draw_int(rng, len(self.videos[video]) - self.span + 1))

    def read(self, ref: ClipRef) -> np.ndarray:
        """The frames of clip ``ref`` (from :meth:`draw`), uint8 (T, H, W, 3).

        Raises:
            TypeError: ``ref`` is not a pair of ints.
            ValueError: ``ref`` names no video of :attr:`videos`, or a clip that does not fit in its video.
        """
        video, start = check_clip_ref(ref, len(self.videos), self.span, lambda i: (len(self.videos[i]), self.files[i]))
        return self.videos[video][start : start + self.span : self.subsampling]

    def __getitem__(self, index: int) -> np.ndarray:
        """Draw a random clip, uint8 (T, H, W, 3); ``index`` is ignored."""
        return self.read(self.draw(index))


def _test_set_dir(root: Path, seq_len: int, subsampling: int) -> Path:
    # The official script writes test_set_<T>_<s> (its loader looked for test_set_<size>_<T>_<s>, a
    # mismatch); we read and write the name the script writes.
    return root / f"test_set_{seq_len}_{subsampling}"


def make_human36m_test_set(
    data_dir: PathLike,
    *,
    seq_len: int = 53,
    subsampling: int = 8,
    size: int = 1000,
    seed: int = 42,
    overwrite: bool = False,
) -> Path:
    """Build the fixed Human3.6M test set: ``size`` clips of raw frames from the test subjects.

    ``numpy.random.RandomState(seed)`` draws, clip after clip, a video of the sorted ``data_dir/test``
    listing and a start, in the official order. Every raw frame of the (T−1)·s+1 span is stored, as
    ``test_set_<T>_<s>/test_<i>.npz`` with the video's ``image`` (cut to the span), ``filename``,
    ``subject`` and ``frame`` (the start). A drawn video shorter than the span (the official script
    crashed there) is redrawn from the same stream. The folder is written under a temporary name and
    renamed when complete.

    Args:
        data_dir: the ``out_dir`` of :func:`convert_human36m`.
        seq_len: clip length T after subsampling.
        subsampling: keep one raw frame in s.
        size: number of clips.
        seed: seed of the ``RandomState``.
        overwrite: replace an existing test set.

    Returns:
        The test-set folder.

    Raises:
        TypeError: a count is not an int.
        ValueError: a count below 1, wrong layout, or no test video long enough.
        FileExistsError: the folder exists and ``overwrite`` is false.
    """
    t_len = check_positive_int(seq_len, "seq_len")
    sub = check_positive_int(subsampling, "subsampling")
    n_clips = check_positive_int(size, "size")
    root = Path(data_dir)
    folder = require_dir(root / "test", "data_dir", "run convert_human36m(raw_dir, data_dir) to create it")
    files = _npz_files(folder)
    span = _raw_span(t_len, sub)
    lengths = [_stored_length(f) for f in files]
    if not any(n >= span for n in lengths):
        raise ValueError(
            f"seq_len: no Human3.6M test video under {folder} has the {span} frames that seq_len={t_len} "
            f"with subsampling={sub} needs ({len(files)} videos, the longest has {max(lengths, default=0)})"
        )
    out = _test_set_dir(root, t_len, sub)
    rs = np.random.RandomState(seed)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        i = 0
        while i < n_clips:
            video = int(rs.randint(len(files)))
            if lengths[video] < span:
                continue
            start = int(rs.randint(lengths[video] - span + 1))
            fields: dict[str, Any] = dict(read_npz(files[video]))  # Any: np.savez types its keywords
            fields["image"] = fields["image"][start : start + span]
            fields["frame"] = np.array(start)
            with (tmp / f"test_{i}.npz").open("wb") as handle:
                np.savez(handle, **fields)
            i += 1
    return out


_TEST_NAME = re.compile(r"^test_(\d+)\.npz$")


class Human36MTestDataset(torch.utils.data.Dataset[np.ndarray]):
    """The fixed Human3.6M test clips, uint8 (T, H, W, 3), subsampled from the stored raw frames.

    Clips are ordered by their number ``i`` (``test_0``, ``test_1``, ..., ``test_10``, ...). The official
    loader sorted the file names as strings (``test_0``, ``test_1``, ``test_10``, ``test_100``, ...);
    the set of clips, and so every averaged score, is the same.

    Args:
        root: the ``data_dir`` of :func:`make_human36m_test_set`.
        seq_len: clip length T (names the folder).
        subsampling: keep one raw frame in s (names the folder).

    Attributes:
        files: the clip files in order.

    Raises:
        TypeError: ``seq_len`` or ``subsampling`` is not an int.
        ValueError: ``seq_len`` or ``subsampling`` below 1, the folder is missing or holds unexpected files,
            or a clip is too short.
    """

    def __init__(self, root: PathLike, *, seq_len: int = 53, subsampling: int = 8) -> None:
        self.seq_len = check_positive_int(seq_len, "seq_len")
        self.subsampling = check_positive_int(subsampling, "subsampling")
        folder = require_dir(
            _test_set_dir(Path(root), self.seq_len, self.subsampling),
            "root",
            "create the test set with make_human36m_test_set",
        )
        numbered: list[tuple[int, Path]] = []
        for f in _npz_files(folder):
            match = _TEST_NAME.match(f.name)
            if match is None:
                raise ValueError(f"{f}: unexpected file in a Human3.6M test set (expected test_<i>.npz)")
            numbered.append((int(match.group(1)), f))
        if not numbered:
            raise ValueError(f"root: the test-set folder {folder} holds no test_<i>.npz file")
        self.files = [f for _, f in sorted(numbered)]
        self.span = _raw_span(self.seq_len, self.subsampling)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        """Clip ``index``, uint8 (T, H, W, 3): raw frames 0, s, 2s, ... of the stored span."""
        path = self.files[index]
        image = _load_image(path)
        if len(image) < self.span:
            raise ValueError(
                f"{path}: holds {len(image)} frames, fewer than the {self.span} that seq_len={self.seq_len} "
                f"with subsampling={self.subsampling} needs"
            )
        return image[0 : self.span : self.subsampling].copy()  # (a view would keep the whole stored span alive)
