"""KTH human actions: conversion of the raw ``.avi`` files, training clips and the fixed test set.

Layouts (``D`` is the directory you pick):

* raw input: ``raw_dir/<class>/personXX_<class>_dY_uncomp.avi`` for the six classes of
  :data:`KTH_CLASSES` (as SVG's ``download_kth.sh`` leaves them);
* converted: ``D/processed_64/<class>/personXX_<class>_dY/image-001.png, image-002.png, ...``, 64×64
  grayscale frames at 25 fps;
* test set: ``D/svg_test_set_40.npz`` with ``sequences`` uint8 (N, T, 64, 64) sample-major, ``persons``
  and ``actions``.

Persons 1–20 are for training (95 % / 5 % train/validation split of their videos), persons 21–25 for
testing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    numeric_sort_key,
    read_npz,
    read_png,
    require_dir,
    split_items,
    write_png,
)
from latentdyn.video.datasets.io import PathLike, read_video

__all__ = [
    "KTH_CLASSES",
    "KTHDataset",
    "KTHTestDataset",
    "KTHVideo",
    "convert_kth",
    "make_kth_test_set",
]

#: The six KTH action classes, in the order the official code enumerates (and draws) them.
KTH_CLASSES = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")

TRAIN_PERSONS = range(1, 21)
TEST_PERSONS = range(21, 26)

_RAW_NAME = re.compile(r"^person(\d{2})_([a-z]+)_d(\d)_uncomp\.avi$")
_VIDEO_NAME = re.compile(r"^person(\d{2})_([a-z]+)_d(\d)$")
_LAYOUT_HINT = "expected raw_dir/<class>/personXX_<class>_dY_uncomp.avi for the classes " + ", ".join(KTH_CLASSES)


@dataclass(frozen=True)
class KTHVideo:
    """One converted KTH video.

    Attributes:
        name: folder name, ``personXX_<class>_dY``.
        action: the action class.
        person: the person index, 1–25.
        trial: the recording condition d1–d4, as 1–4.
        frames: the frame files in temporal order.
    """

    name: str
    action: str
    person: int
    trial: int
    frames: tuple[Path, ...]


def _processed_dir(root: Path, image_size: int) -> Path:
    return root / f"processed_{image_size}"


def convert_kth(
    raw_dir: PathLike,
    out_dir: PathLike,
    image_size: int = 64,
    *,
    frame_rate: int = 25,
    overwrite: bool = False,
    progress: Callable[[Path], None] | None = None,
) -> ConversionReport:
    """Convert raw KTH videos into folders of grayscale PNG frames.

    Each ``raw_dir/<class>/<name>_uncomp.avi`` becomes ``out_dir/processed_<image_size>/<class>/<name>/``
    holding ``image-001.png``, ``image-002.png``, ... (ffmpeg's ``image-%03d`` naming, so frame 1000 is
    ``image-1000.png``). Frames are resized to ``image_size``×``image_size`` ignoring the 4:3 aspect ratio
    with swscale's bicubic filter, as ``ffmpeg -s`` does in the official conversion, and resampled to
    ``frame_rate`` from their timestamps like ``ffmpeg -r`` (an identity for KTH's 25 fps files).
    Channel 0 of the decoded RGB frame (what the official loader reads) is stored as an 8-bit grayscale PNG.

    Each video folder is written under a temporary name and renamed when complete; videos whose folder
    already exists are skipped (so an interrupted conversion can be resumed) unless ``overwrite``.

    Args:
        raw_dir: directory holding one sub-directory per class of :data:`KTH_CLASSES`.
        out_dir: where ``processed_<image_size>`` is created.
        image_size: output frame width and height.
        frame_rate: output frame rate.
        overwrite: convert again videos that were already converted.
        progress: called with each output folder after it is written.

    Returns:
        How many videos were written and skipped.

    Raises:
        TypeError: ``image_size`` or ``frame_rate`` is not an int.
        ValueError: a class directory is missing, an ``.avi`` name does not follow the KTH pattern, no
            video was found, or a video is unreadable, corrupt or truncated (the file is named).
        ImportError: PyAV is not installed.
    """
    size = check_positive_int(image_size, "image_size")
    check_positive_int(frame_rate, "frame_rate")
    raw = require_dir(Path(raw_dir), "raw_dir", _LAYOUT_HINT)
    processed = _processed_dir(Path(out_dir), size)
    todo: list[tuple[Path, Path]] = []
    for action in KTH_CLASSES:
        class_dir = require_dir(raw / action, "raw_dir", _LAYOUT_HINT)
        for entry in sorted(class_dir.iterdir()):
            if is_hidden(entry.name) or entry.suffix.lower() != ".avi":
                continue
            match = _RAW_NAME.match(entry.name)
            if match is None or match.group(2) != action:
                raise ValueError(f"{entry}: not a KTH video name; expected person<XX>_{action}_d<Y>_uncomp.avi")
            todo.append((entry, processed / action / entry.name.removesuffix("_uncomp.avi")))
    if not todo:
        raise ValueError(f"raw_dir: found no .avi video under {raw}; {_LAYOUT_HINT}")
    written = skipped = 0
    for source, target in todo:
        if target.exists() and not overwrite:
            skipped += 1
            continue
        frames = read_video(source, size=(size, size), frame_rate=frame_rate)
        with atomic_directory(target, overwrite=True) as tmp:
            for index, frame in enumerate(frames, start=1):
                write_png(tmp / f"image-{index:03d}.png", np.ascontiguousarray(frame[..., 0]))
        written += 1
        if progress is not None:
            progress(target)
    return ConversionReport(out_dir=processed, written=written, skipped=skipped)


def _list_videos(root: Path, image_size: int, persons: range) -> list[KTHVideo]:
    """Converted videos of the given persons, class by class, folders sorted by name."""
    processed = require_dir(_processed_dir(root, image_size), "root", "run convert_kth(raw_dir, root) to create it")
    if not any((processed / action).is_dir() for action in KTH_CLASSES):
        raise ValueError(
            f"root: {processed} holds none of the class folders {', '.join(KTH_CLASSES)}; "
            "run convert_kth(raw_dir, root) to create them"
        )
    videos: list[KTHVideo] = []
    for action in KTH_CLASSES:
        class_dir = processed / action
        if not class_dir.is_dir():  # a class with no converted video
            continue
        # The official loader used the unsorted os.listdir order, which made its train/validation split
        # depend on the filesystem. We sort the listing so the split is the same everywhere: a deliberate,
        # documented difference (the selected validation videos can differ from an official run).
        for entry in sorted(class_dir.iterdir()):
            if is_hidden(entry.name) or not entry.is_dir():
                continue
            match = _VIDEO_NAME.match(entry.name)
            if match is None or match.group(2) != action:
                raise ValueError(f"{entry}: not a converted KTH video folder (expected personXX_{action}_dY)")
            person = int(match.group(1))
            if person not in persons:
                continue
            # Numeric order: a lexicographic sort would put image-1000.png before image-101.png.
            frames = sorted(
                (f for f in entry.iterdir() if f.suffix == ".png" and not is_hidden(f.name)),
                key=lambda f: numeric_sort_key(f.name),
            )
            videos.append(KTHVideo(entry.name, action, person, int(match.group(3)), tuple(frames)))
    return videos


def _read_gray_frames(files: tuple[Path, ...] | list[Path], image_size: int) -> np.ndarray:
    """Read frames as uint8 (T, H, W), keeping channel 0 of colour images as the official loader does."""
    out = np.empty((len(files), image_size, image_size), dtype=np.uint8)
    for t, file in enumerate(files):
        image = read_png(file, size=(image_size, image_size))
        if image.ndim == 3:
            image = image[..., 0]
        if image.shape != (image_size, image_size):
            raise ValueError(f"{file}: expected a {image_size}x{image_size} frame, got shape {image.shape}")
        out[t] = image
    return out


class KTHDataset(RandomDraws, torch.utils.data.Dataset[np.ndarray]):
    """Random KTH training (or validation) clips x_{t0:t0+T}, uint8 (T, H, W) with H = W = ``image_size``.

    Every item draws a random video among those with at least ``seq_len`` frames, then a random start,
    so the dataset has a virtual ``length`` (500,000 in the official code) and ``index`` is ignored.
    Videos of persons 1–20 are split 95 % / 5 % into ``"train"`` and ``"val"`` with
    ``numpy.random.RandomState(42)`` over the sorted listing.

    Args:
        root: the ``out_dir`` given to :func:`convert_kth` (it holds ``processed_<image_size>``).
        seq_len: clip length T.
        split: ``"train"`` or ``"val"``.
        image_size: frame size H = W of the converted frames (a ``processed_<image_size>`` folder).
        rng: random generator for the draws (``numpy.random.Generator`` or ``RandomState``); every
            ``DataLoader`` worker gets a copy of it, so give each worker its own (``worker_init_fn``) when using
            several, or use ``seed``.
        length: virtual number of items.
        seed: seed of the dataset's own stream of draws, kept apart in every ``DataLoader`` worker: the main
            process draws from ``seed``, a worker from ``(seed, torch's worker seed)``, so workers draw different
            clips, each epoch anew, reproducibly from ``seed`` and torch's seed, with no ``worker_init_fn`` (as
            :class:`~latentdyn.video.moving_mnist.MovingMNIST` does). With neither ``rng`` nor ``seed`` the draws
            follow numpy's global generator, as the official code does, which PyTorch reseeds in each worker.

    Raises:
        TypeError: a count or ``seed`` is not an int, ``split`` not a string, or ``rng`` not a numpy generator.
        ValueError: a count below 1, a negative ``seed``, both ``rng`` and ``seed``, an unknown ``split``, wrong
            directory layout, or no video of the split has ``seq_len`` frames.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        seq_len: int,
        split: str = "train",
        image_size: int = 64,
        rng: Rng | None = None,
        length: int = 500_000,
        seed: int | None = None,
    ) -> None:
        self.seq_len = check_positive_int(seq_len, "seq_len")
        self.split = check_choice(split, "split", ("train", "val"))
        self.image_size = check_positive_int(image_size, "image_size")
        self.length = check_positive_int(length, "length")
        self._init_draws(rng, seed)
        self.videos = split_items(_list_videos(Path(root), self.image_size, TRAIN_PERSONS), self.split)
        self._eligible = [i for i, v in enumerate(self.videos) if len(v.frames) >= self.seq_len]
        if not self._eligible:
            longest = max((len(v.frames) for v in self.videos), default=0)
            raise ValueError(
                f"seq_len: no KTH {self.split} video under {root} has {self.seq_len} frames "
                f"({len(self.videos)} videos, the longest has {longest})"
            )

    def __len__(self) -> int:
        return self.length

    def draw(self, index: int) -> ClipRef:
        """The clip ``self[index]`` reads, drawn from ``rng`` without reading a frame: a video, then a start
        (``index`` is ignored)."""
        rng = self._stream()
        video = self._eligible[draw_int(rng, len(self._eligible))]
        return ClipRef(video, draw_int(rng, len(self.videos[video].frames) - self.seq_len + 1))

    def read(self, ref: ClipRef) -> np.ndarray:
        """The frames of clip ``ref`` (from :meth:`draw`), uint8 (T, H, W).

        Raises:
            TypeError: ``ref`` is not a pair of ints.
            ValueError: ``ref`` names no video of :attr:`videos`, or a clip that does not fit in its video.
        """
        video, start = check_clip_ref(
            ref, len(self.videos), self.seq_len, lambda i: (len(self.videos[i].frames), self.videos[i].name)
        )
        return _read_gray_frames(self.videos[video].frames[start : start + self.seq_len], self.image_size)

    def __getitem__(self, index: int) -> np.ndarray:
        """Draw a random clip, uint8 (T, H, W); ``index`` is ignored."""
        return self.read(self.draw(index))


def _test_set_path(root: Path, seq_len: int) -> Path:
    return root / f"svg_test_set_{seq_len}.npz"


def make_kth_test_set(
    data_dir: PathLike,
    *,
    seq_len: int = 40,
    size: int = 1000,
    seed: int = 42,
    image_size: int = 64,
    overwrite: bool = False,
) -> Path:
    """Build the fixed KTH test set of ``size`` clips of persons 21–25.

    Clip after clip, ``numpy.random.RandomState(seed)`` draws a class (uniform over
    :data:`KTH_CLASSES`), a person (uniform in 21–25), a trial (uniform in d1–d4) and a start, in the
    official order, so with every test video present the clips are the official ones. A drawn
    combination that does not exist or has fewer than ``seq_len`` frames (the official script crashed
    there) is redrawn from the same stream: class, person and trial again.

    The options are taken by keyword (``make_human36m_test_set`` has ``subsampling`` where this has ``size``).

    Args:
        data_dir: the ``out_dir`` of :func:`convert_kth`; the file is written there.
        seq_len: clip length T.
        size: number of clips N.
        seed: seed of the ``RandomState``.
        image_size: frame size H = W of the converted frames.
        overwrite: replace an existing file.

    Returns:
        The path of ``svg_test_set_<seq_len>.npz``, holding ``sequences`` uint8 (N, T, H, W),
        ``persons`` int64 (N,) and ``actions`` str (N,).

    Raises:
        TypeError: a count is not an int.
        ValueError: a count below 1, wrong layout, or no test video has ``seq_len`` frames.
        FileExistsError: the file exists and ``overwrite`` is false.
    """
    t_len = check_positive_int(seq_len, "seq_len")
    n_clips = check_positive_int(size, "size")
    s = check_positive_int(image_size, "image_size")
    root = Path(data_dir)
    out = _test_set_path(root, t_len)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True to replace it")
    available = {(v.action, v.person, v.trial): v for v in _list_videos(root, s, TEST_PERSONS)}
    if not any(len(v.frames) >= t_len for v in available.values()):
        raise ValueError(
            f"seq_len: no KTH test video (persons 21-25) under {root} has {t_len} frames "
            f"({len(available)} test videos found)"
        )
    rs = np.random.RandomState(seed)
    sequences = np.empty((n_clips, t_len, s, s), dtype=np.uint8)
    persons = np.empty(n_clips, dtype=np.int64)
    actions: list[str] = []
    i = 0
    while i < n_clips:
        action = KTH_CLASSES[rs.randint(len(KTH_CLASSES))]
        person = int(rs.randint(TEST_PERSONS.start, TEST_PERSONS.stop))
        trial = int(rs.randint(1, 5))
        video = available.get((action, person, trial))
        if video is None or len(video.frames) < t_len:
            continue
        start = int(rs.randint(len(video.frames) - t_len + 1))
        sequences[i] = _read_gray_frames(video.frames[start : start + t_len], s)
        persons[i] = person
        actions.append(action)
        i += 1
    with atomic_path(out) as tmp, tmp.open("wb") as handle:
        np.savez_compressed(handle, sequences=sequences, persons=persons, actions=np.array(actions))
    return out


class KTHTestDataset(torch.utils.data.Dataset[np.ndarray]):
    """The fixed KTH test clips, uint8 (T, H, W) (64×64 by default), read from ``svg_test_set_<seq_len>.npz``.

    Args:
        root: directory holding the file (the ``data_dir`` of :func:`make_kth_test_set`).
        seq_len: clip length T, which names the file.

    Attributes:
        sequences: uint8 (N, T, H, W), N clips.
        persons: int (N,) person of each clip.
        actions: str (N,) action class of each clip.

    Raises:
        TypeError: ``seq_len`` is not an int.
        FileNotFoundError: the file does not exist.
        ValueError: ``seq_len`` below 1, or the file lacks a key or holds arrays of the wrong shape or dtype.
    """

    def __init__(self, root: PathLike, *, seq_len: int = 40) -> None:
        t_len = check_positive_int(seq_len, "seq_len")
        path = _test_set_path(Path(root), t_len)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no KTH test set; create it with make_kth_test_set")
        data = read_npz(path)
        missing = {"sequences", "persons", "actions"} - set(data)
        if missing:
            raise ValueError(f"{path}: missing keys {sorted(missing)} (found {sorted(data)})")
        self.sequences = data["sequences"]
        self.persons = data["persons"]
        self.actions = data["actions"]
        if self.sequences.dtype != np.uint8 or self.sequences.ndim != 4 or self.sequences.shape[1] != t_len:
            raise ValueError(
                f"{path}: expected 'sequences' uint8 (N, {t_len}, H, W), got {self.sequences.dtype} "
                f"{self.sequences.shape}"
            )
        n = len(self.sequences)
        if len(self.persons) != n or len(self.actions) != n:
            raise ValueError(
                f"{path}: 'persons' ({len(self.persons)}) and 'actions' ({len(self.actions)}) must have "
                f"one entry per sequence ({n})"
            )

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> np.ndarray:
        """Clip ``index``, uint8 (T, H, W)."""
        return self.sequences[index]
