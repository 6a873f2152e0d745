"""BAIR robot pushing (``softmotion30_44k``): conversion of the TFRecords to PNG frames, and clips.

Layouts (``D`` is the directory you pick):

* raw input: ``raw_dir/softmotion30_44k/{train,test}/*.tfrecords`` (as SVG's ``download_bair.sh`` leaves
  them); each record is a ``tf.train.Example`` whose features ``0/image_aux1/encoded`` …
  ``29/image_aux1/encoded`` hold the 30 frames as raw 64×64×3 RGB bytes;
* converted: ``D/processed_data/{train,test}/<record file stem>/<k:03d>/<i:03d>.png``, where the video
  number k counts from 1 within each TFRecord file and the frame number i from 0.

No TensorFlow is needed: :mod:`latentdyn.video.datasets.tfrecord` reads the files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch.utils.data

from latentdyn._checks import check_choice, check_positive_int
from latentdyn.video.datasets._common import (
    ClipRef,
    ConversionReport,
    RandomDraws,
    Rng,
    atomic_directory,
    check_clip_ref,
    draw_int,
    is_hidden,
    read_png,
    require_dir,
    split_items,
    video_index,
    write_png,
)
from latentdyn.video.datasets.io import PathLike
from latentdyn.video.datasets.tfrecord import iter_tfrecord, parse_example

__all__ = [
    "BAIR_FRAMES",
    "BAIR_IMAGE_SIZE",
    "BAIRDataset",
    "bair_frame_key",
    "convert_bair",
    "decode_bair_record",
]

BAIR_FRAMES = 30
BAIR_IMAGE_SIZE = 64
_LAYOUT_HINT = "expected raw_dir/softmotion30_44k/{train,test}/*.tfrecords"


def bair_frame_key(i: int) -> str:
    """Name of the feature holding frame ``i`` (from 0) of a BAIR record: ``"<i>/image_aux1/encoded"``.

    Args:
        i: the frame index, 0..29.
    """
    return f"{i}/image_aux1/encoded"


def decode_bair_record(record: bytes) -> np.ndarray:
    """The 30 frames of one BAIR record as uint8 (30, 64, 64, 3).

    Args:
        record: one serialised ``tf.train.Example`` of a BAIR TFRecord file.

    Returns:
        uint8 frames (T, H, W, 3) = (30, 64, 64, 3).

    Raises:
        ValueError: the record is not an Example, or a frame feature is missing or has the wrong size.
    """
    features = parse_example(record)
    frame_bytes = BAIR_IMAGE_SIZE * BAIR_IMAGE_SIZE * 3
    video = np.empty((BAIR_FRAMES, BAIR_IMAGE_SIZE, BAIR_IMAGE_SIZE, 3), dtype=np.uint8)
    for i in range(BAIR_FRAMES):
        key = bair_frame_key(i)
        value = features.get(key)
        if not isinstance(value, list) or not value:
            raise ValueError(f"missing bytes feature {key!r}")
        if len(value[0]) != frame_bytes:
            raise ValueError(f"feature {key!r} holds {len(value[0])} bytes, expected {frame_bytes} (64x64 RGB)")
        video[i] = np.frombuffer(value[0], dtype=np.uint8).reshape(BAIR_IMAGE_SIZE, BAIR_IMAGE_SIZE, 3)
    return video


def convert_bair(
    raw_dir: PathLike,
    out_dir: PathLike,
    *,
    overwrite: bool = False,
    verify_checksums: bool = True,
    progress: Callable[[Path], None] | None = None,
) -> ConversionReport:
    """Convert the BAIR TFRecords into folders of PNG frames.

    Record k (from 1) of ``raw_dir/softmotion30_44k/<split>/<stem>.tfrecords`` becomes the folder
    ``out_dir/processed_data/<split>/<stem>/<k:03d>/`` holding ``000.png`` … ``029.png``. Each TFRecord
    file is converted into a temporary folder renamed when complete, so a bad record leaves nothing behind
    for that file; files already converted are skipped unless ``overwrite``.

    Args:
        raw_dir: directory holding ``softmotion30_44k``.
        out_dir: where ``processed_data`` is created.
        overwrite: convert again files that were already converted.
        verify_checksums: check the CRC of every record.
        progress: called with each output folder (one per TFRecord file) after it is written.

    Returns:
        Counts of TFRecord files written and skipped (not of videos).

    Raises:
        ValueError: wrong layout, a corrupt, truncated or empty TFRecord (one without any record, such as a
            zero-byte file), a checksum mismatch, or a record with a missing or malformed frame; the message
            names the file and the record.
    """
    raw = require_dir(Path(raw_dir) / "softmotion30_44k", "raw_dir", _LAYOUT_HINT)
    todo: list[tuple[Path, Path]] = []
    for split in ("train", "test"):
        split_dir = require_dir(raw / split, "raw_dir", _LAYOUT_HINT)
        files = sorted(f for f in split_dir.iterdir() if f.suffix == ".tfrecords" and not is_hidden(f.name))
        if not files:
            raise ValueError(f"raw_dir: no .tfrecords file in {split_dir}; {_LAYOUT_HINT}")
        processed = Path(out_dir) / "processed_data" / split
        todo.extend((f, processed / f.stem) for f in files)
    written = skipped = 0
    for source, target in todo:
        if target.exists() and not overwrite:
            skipped += 1
            continue
        with atomic_directory(target, overwrite=True) as tmp:
            n_records = 0
            for k, record in enumerate(iter_tfrecord(source, verify=verify_checksums), start=1):
                try:
                    video = decode_bair_record(record)
                except ValueError as exc:
                    raise ValueError(f"{source}: record {k - 1}: {exc}") from exc
                folder = tmp / f"{k:03d}"
                folder.mkdir()
                for i, frame in enumerate(video):
                    write_png(folder / f"{i:03d}.png", frame)
                n_records = k
            if n_records == 0:  # an empty folder would be skipped as converted by every later run
                raise ValueError(
                    f"{source}: no record ({source.stat().st_size} bytes): an interrupted download? "
                    "Download the file again"
                )
        written += 1
        if progress is not None:
            progress(target)
    return ConversionReport(out_dir=Path(out_dir) / "processed_data", written=written, skipped=skipped)


def _subdirs(folder: Path) -> list[Path]:
    # Plain string order, like the official loader (which fixes the train/validation split).
    return sorted(d for d in folder.iterdir() if d.is_dir() and not is_hidden(d.name))


class BAIRDataset(RandomDraws, torch.utils.data.Dataset[np.ndarray]):
    """BAIR clips, uint8 (T, 64, 64, 3): one item per video.

    Video folders are listed in sorted order. ``"train"`` and ``"val"`` split the training videos
    95 % / 5 % with ``numpy.random.RandomState(42)`` and start each clip at a random frame in
    [0, 30 − T]; ``"test"`` uses every test video from frame 0.

    Args:
        root: the ``out_dir`` of :func:`convert_bair` (it holds ``processed_data``).
        seq_len: clip length T, at most 30.
        split: ``"train"``, ``"val"`` or ``"test"``.
        rng: random generator for the start frames (``numpy.random.Generator`` or ``RandomState``), copied into
            every ``DataLoader`` worker; see :class:`~latentdyn.video.datasets.KTHDataset` about workers.
        seed: seed of the dataset's own stream of start frames, kept apart in every worker (as ``KTHDataset``'s);
            with neither ``rng`` nor ``seed``, numpy's global generator.

    Attributes:
        videos: frame files of each video, in order.

    Raises:
        TypeError: ``seq_len`` or ``seed`` is not an int, ``split`` not a string, or ``rng`` not a numpy generator.
        ValueError: ``seq_len`` below 1 or above 30, a negative ``seed``, both ``rng`` and ``seed``, an unknown
            ``split``, wrong layout, or a video folder without 30 frames.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        seq_len: int,
        split: str = "train",
        rng: Rng | None = None,
        seed: int | None = None,
    ) -> None:
        self.seq_len = check_positive_int(seq_len, "seq_len")
        if self.seq_len > BAIR_FRAMES:
            raise ValueError(f"seq_len: BAIR videos have {BAIR_FRAMES} frames, got seq_len={self.seq_len}")
        self.split = check_choice(split, "split", ("train", "val", "test"))
        self._init_draws(rng, seed)
        folder = require_dir(
            Path(root) / "processed_data" / ("test" if self.split == "test" else "train"),
            "root",
            "run convert_bair(raw_dir, root) to create it",
        )
        videos: list[Sequence[Path]] = []
        for file_dir in _subdirs(folder):
            for video_dir in _subdirs(file_dir):
                frames = sorted(f for f in video_dir.iterdir() if f.suffix == ".png" and not is_hidden(f.name))
                if len(frames) != BAIR_FRAMES:
                    raise ValueError(f"{video_dir}: expected {BAIR_FRAMES} frames 000.png-029.png, found {len(frames)}")
                videos.append(tuple(frames))
        if not videos:
            raise ValueError(f"root: no BAIR video folder under {folder}")
        self.videos = videos if self.split == "test" else split_items(videos, self.split)

    def __len__(self) -> int:
        return len(self.videos)

    def draw(self, index: int) -> ClipRef:
        """The clip ``self[index]`` reads, without reading a frame: video ``index`` from a start drawn from ``rng``
        (from frame 0 for ``"test"``)."""
        video = video_index(index, len(self.videos))
        return ClipRef(video, 0 if self.split == "test" else draw_int(self._stream(), BAIR_FRAMES - self.seq_len + 1))

    def read(self, ref: ClipRef) -> np.ndarray:
        """The frames of clip ``ref`` (from :meth:`draw`), uint8 (T, 64, 64, 3).

        Raises:
            TypeError: ``ref`` is not a pair of ints.
            ValueError: ``ref`` names no video of :attr:`videos`, a clip that does not fit in its video, or a frame
                that is not 64x64 RGB.
        """
        video, start = check_clip_ref(
            ref, len(self.videos), self.seq_len, lambda i: (BAIR_FRAMES, self.videos[i][0].parent)
        )
        frames = self.videos[video]
        clip = np.empty((self.seq_len, BAIR_IMAGE_SIZE, BAIR_IMAGE_SIZE, 3), dtype=np.uint8)
        for t in range(self.seq_len):
            image = read_png(frames[start + t], size=(BAIR_IMAGE_SIZE, BAIR_IMAGE_SIZE))
            if image.shape != clip.shape[1:]:
                raise ValueError(f"{frames[start + t]}: expected a 64x64 RGB frame, got shape {image.shape}")
            clip[t] = image
        return clip

    def __getitem__(self, index: int) -> np.ndarray:
        """Clip of video ``index``, uint8 (T, 64, 64, 3)."""
        return self.read(self.draw(index))
