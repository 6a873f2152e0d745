"""Training data of the SRVP example: a stream of batches indexed by step, and fixed validation clips.

The batch of step s is generated from its own seed, derived from (seed, s) only: batches do not depend on
the number of DataLoader workers, and a resumed run sees exactly the batches an uninterrupted one would.

Datasets (``TrainConfig.dataset``):

* ``smmnist``: Moving MNIST clips generated on the fly from MNIST digits (95 % / 5 % train/validation
  split of the training digits), drawn with a ``numpy.random.RandomState`` seeded for the step.
* ``kth``, ``human36m``: random clips of the converted videos (``latentdyn.video.datasets``); the step's
  ``numpy.random.Generator`` draws each clip's video and start.
* ``bair``: one clip per video, as the official loader indexes it by video. The step's generator draws B
  video indices **with replacement** (rather than the official per-epoch permutations, which would tie a
  batch to the epoch it falls in), then each clip's start.
* ``folder``: random clips of the videos under ``data_dir`` (video files or folders of frames), resized to
  ``image_size`` (grayscale when ``channels`` is 1); or, when ``data_dir`` is an ``.npz`` file, random clips of
  the videos of its ``sequences`` array (uint8, time-major (T, N, H, W) or (T, N, H, W, C), already at
  ``image_size``: :func:`read_clip_array`). Its videos are split 95 % / 5 % into training and validation like
  the official ``get_fold``; a new run's ``config.json`` records what the split was drawn from
  (:func:`folder_data_record`), and a resume refuses data that differs (:func:`folder_data_changes`).

The validation clips are drawn once, from the ``"val"`` split, with ``seq_len_test`` frames and a seed
derived from (seed, 0, stream 1).

Under ``torchrun``, process r of N makes only its share of each batch, clips r·B/N to (r+1)·B/N of the batch one
process would make: every process draws the whole batch's random stream (videos, starts, digits, trajectories:
cheap), and reads, decodes or draws the frames of its own clips only. N processes thus train on exactly the
batches of one, at 1/N of the data cost each.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from examples.srvp.config import TrainConfig
from latentdyn._checks import is_int
from latentdyn.video.datasets._common import ClipRef, draw_int, read_npz

__all__ = [
    "BatchStream",
    "ClipSampler",
    "check_stream",
    "describe_folder_data",
    "folder_data_changes",
    "folder_data_record",
    "generate_clips",
    "make_clip_dataset",
    "make_data",
    "read_clip_array",
    "share_slice",
    "step_seed",
]

_PREPARE = {
    "kth": "python -m examples.srvp.data convert-kth RAW_DIR DATA_DIR",
    "human36m": "python -m examples.srvp.data convert-human36m RAW_DIR DATA_DIR",
    "bair": "python -m examples.srvp.data convert-bair RAW_DIR DATA_DIR",
    "folder": "a directory holding video files or folders of PNG/JPEG frames, or an .npz file of uint8 clips",
}
"""How the ``data_dir`` of each real dataset is made (quoted in error messages)."""
_VIRTUAL_LENGTH = 500_000  # the official virtual length of the KTH / Human3.6M training sets


# ----------------------------------------------------------------------------------------------------- data
def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """Seed of the batch of ``step``: distinct per (seed, step), so batches do not depend on workers or resumes.

    ``stream`` separates independent uses (0: training batches, 1: the validation clips)."""
    return int(np.random.SeedSequence([seed, step], spawn_key=(stream,)).generate_state(1)[0])


class BatchStream(torch.utils.data.Dataset[torch.Tensor]):
    """Training batches indexed by step: item s is the batch of step s, generated from its own seed.

    Args:
        make_batch: maps a seed to the batch's B uint8 videos, (T, H, W) or (T, H, W, C) each.
        seed: the run's seed; step s uses ``step_seed(seed, s)``.
    """

    def __init__(self, make_batch: Callable[[int], Sequence[np.ndarray] | np.ndarray], seed: int) -> None:
        self.make_batch = make_batch
        self.seed = seed

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, step: int) -> torch.Tensor:
        """The batch of ``step``, uint8 (T, B, C, H, W): a quarter of the bytes of the float batch through the
        DataLoader's shared memory, pinned memory and the copy to the device; the training step converts it
        with :func:`latentdyn.video.collate.to_unit_interval` where it runs."""
        from latentdyn.video.collate import stack_videos

        return stack_videos(list(self.make_batch(step_seed(self.seed, step))))


def share_slice(n: int, share: tuple[int, int]) -> slice:
    """The clips of a batch of ``n`` that process ``rank`` of ``world`` makes, ``share = (rank, world)``: the
    ``rank``-th of ``world`` equal parts, as ``batch.chunk(world, dim=1)[rank]`` would split the whole batch.

    Raises:
        ValueError: ``rank`` is not in ``[0, world)`` or ``n`` does not split into ``world`` equal parts.
    """
    rank, world = share
    if not 0 <= rank < world:
        raise ValueError(f"share: expected (rank, world) with 0 <= rank < world, got {share}")
    if n % world:
        raise ValueError(f"share: a batch of {n} does not split over {world} processes")
    size = n // world
    return slice(rank * size, (rank + 1) * size)


# ------------------------------------------------------------------------------------------- Moving MNIST
def _digits(cfg: TrainConfig, split: str) -> np.ndarray:
    from latentdyn.video.mnist import digit_source

    return np.asarray(digit_source(cfg.data_dir, split).images)


def generate_clips(
    pool: np.ndarray,
    n: int,
    seq_len: int,
    rng: np.random.RandomState,
    *,
    num_digits: int,
    max_speed: int,
    deterministic: bool,
    keep: slice = slice(None),
) -> np.ndarray:
    """n Moving MNIST clips, uint8 (n, T, 64, 64), drawn from ``rng`` in the official per-clip order.

    Per clip and digit: the digit pick, then its trajectory (``draw_trajectory``); the n clips are then
    composed at once (``compose_clips``, the rule of ``compose_frames``). With ``keep``, all n clips are drawn
    (the same stream) but only ``clips[keep]`` are composed and returned.

    Raises:
        ValueError: ``n`` or ``num_digits`` is below 1 (no clip, or a clip without digits).
    """
    from latentdyn.video.moving_mnist import compose_clips, draw_trajectory

    if n < 1 or num_digits < 1:
        raise ValueError(f"n, num_digits: expected at least 1 clip of at least 1 digit, got {n}, {num_digits}")
    picks, positions = [], []
    for _ in range(n):
        for _ in range(num_digits):
            picks.append(rng.randint(0, len(pool)))
            traj = draw_trajectory(
                rng, seq_len=seq_len, limit=64 - pool.shape[1], deterministic=deterministic, max_speed=max_speed
            )
            positions.append(traj.positions)
    shape = (n, num_digits)
    chosen = np.array(picks).reshape(shape)[keep]
    return compose_clips(pool[chosen], np.stack(positions).reshape(*shape, seq_len, 2)[keep], 64)


class _MovingMNISTBatches:
    """n Moving MNIST clips of T frames from a digit pool, drawn with ``RandomState(seed)``; the ``share`` (rank,
    world) of them only (:func:`share_slice`)."""

    def __init__(
        self, cfg: TrainConfig, pool: np.ndarray, n: int, seq_len: int, share: tuple[int, int] = (0, 1)
    ) -> None:
        self.pool, self.n, self.seq_len, self.keep = pool, n, seq_len, share_slice(n, share)
        self.num_digits, self.max_speed, self.deterministic = cfg.num_digits, cfg.max_speed, cfg.deterministic

    def __call__(self, seed: int) -> np.ndarray:
        return generate_clips(
            self.pool,
            self.n,
            self.seq_len,
            np.random.RandomState(seed),
            num_digits=self.num_digits,
            max_speed=self.max_speed,
            deterministic=self.deterministic,
            keep=self.keep,
        )


# -------------------------------------------------------------------------------------- real video datasets
class _RandomClipDataset(Protocol):
    """A dataset of the ``latentdyn.video.datasets`` kind: uint8 clips, random draws from ``rng``."""

    rng: np.random.Generator | np.random.RandomState | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...

    def draw(self, index: int) -> ClipRef: ...

    def read(self, ref: ClipRef) -> np.ndarray: ...


class ClipSampler:
    """Clips of a video dataset drawn from one seed: the batch of a step, or the validation clips.

    A shallow copy of the dataset gets ``rng = numpy.random.default_rng(seed)``, so the clips depend on the
    seed only (not on earlier draws, nor on the worker that builds them).

    Args:
        dataset: the clip dataset (its ``rng`` is never modified).
        n: clips per call (B).
        by_video: the dataset is indexed by video (BAIR): the generator first draws n video indices (with
            replacement unless ``distinct``), then each clip's start. Otherwise every item is already a
            random clip and the index is ignored.
        distinct: draw distinct videos when there are at least n (for the validation clips).
        share: ``(rank, world)``: every clip is drawn, but only the rank's share (:func:`share_slice`) is read.
    """

    def __init__(
        self,
        dataset: _RandomClipDataset,
        n: int,
        *,
        by_video: bool,
        distinct: bool = False,
        share: tuple[int, int] = (0, 1),
    ) -> None:
        self.dataset, self.n, self.by_video, self.distinct = dataset, n, by_video, distinct
        self.keep = share_slice(n, share)

    def __call__(self, seed: int) -> list[np.ndarray]:
        data = copy.copy(self.dataset)
        rng = np.random.default_rng(seed)
        data.rng = rng
        if not self.by_video:
            clips = [data.draw(0) for _ in range(self.n)]
        else:
            n_videos = len(data)
            if self.distinct:
                indices = rng.choice(n_videos, size=self.n, replace=self.n > n_videos)
            else:
                indices = rng.integers(n_videos, size=self.n)
            clips = [data.draw(int(i)) for i in indices]
        return [data.read(clip) for clip in clips[self.keep]]


def read_clip_array(file: Path, option: str = "--test-set") -> np.ndarray:
    """The ``sequences`` array of an ``.npz`` file of clips of one's own (``numpy.savez(file, sequences=...)``):
    uint8, time-major (T, N, H, W) or (T, N, H, W, C).

    Args:
        file: the ``.npz`` file.
        option: the option that named it, which starts every error message.

    Raises:
        ValueError: the file is not a readable ``.npz``, has no ``sequences`` array, or holds one of another
            type or number of dimensions (the message names ``option``, the file and what it holds).
    """

    def check(found: list[str]) -> None:
        if "sequences" not in found:
            raise ValueError(f"{option}: {file} has no 'sequences' array (found {found})")
        if {"persons", "actions"} <= set(found):
            hint = "; keep its name svg_test_set_<T>.npz so that it is read as one" if option == "--test-set" else ""
            raise ValueError(
                f"{option}: {file} looks like a KTH test set (keys 'persons', 'actions'), whose sequences are "
                f"sample-major (N, T, H, W){hint}"
            )

    seq = read_npz(file, ["sequences"], option=option, check=check)["sequences"]
    if seq.dtype != np.uint8 or seq.ndim not in (4, 5):
        raise ValueError(
            f"{option}: {file}: expected uint8 sequences (T, N, H, W) or (T, N, H, W, C), got {seq.dtype} "
            f"{list(seq.shape)}"
        )
    return seq


class _ArrayClips:
    """Random clips of the videos of a time-major uint8 array (T, N, H, W[, C]): each item draws a video, then a
    start (from ``rng``), and is ``seq_len`` frames taken every ``frame_step``, (seq_len, H, W[, C])."""

    def __init__(self, videos: np.ndarray, seq_len: int, frame_step: int) -> None:
        self.videos, self.seq_len, self.frame_step = videos, seq_len, frame_step
        self.span = (seq_len - 1) * frame_step + 1
        self.rng: np.random.Generator | np.random.RandomState | None = None

    def __len__(self) -> int:
        return _VIRTUAL_LENGTH

    def draw(self, index: int) -> ClipRef:
        video = draw_int(self.rng, self.videos.shape[1])
        return ClipRef(video, draw_int(self.rng, self.videos.shape[0] - self.span + 1))

    def read(self, ref: ClipRef) -> np.ndarray:
        video, start = ref
        return np.ascontiguousarray(self.videos[start : start + self.span : self.frame_step, video])

    def __getitem__(self, index: int) -> np.ndarray:
        return self.read(self.draw(index))


def _array_clip_dataset(cfg: TrainConfig, file: Path, split: str, seq_len: int) -> _ArrayClips:
    """The ``split`` clips of an ``.npz`` of videos (``data_dir`` of a folder dataset)."""
    flag = "--seq-len" if split == "train" else "--seq-len-test"
    if cfg.folder_crop != "none":
        raise ValueError(
            f"folder_crop: the clips of {file} are used at their own size (they must already be image_size), so "
            f"there is nothing to crop; got {cfg.folder_crop!r}, expected 'none'"
        )
    seq = read_clip_array(file, "data_dir")
    videos = _split_sources(list(range(seq.shape[1])), split, file)
    clips = _ArrayClips(seq[:, videos], seq_len, cfg.folder_frame_step)
    if seq.shape[0] < clips.span:
        raise ValueError(
            f"data_dir: the videos of {file} have {seq.shape[0]} frames, fewer than the {clips.span} that clips of "
            f"{seq_len} frames (every {cfg.folder_frame_step}) need; lower {flag}"
        )
    return clips


def _split_sources(sources: list[Any], split: str, root: Path) -> list[Any]:
    """The official 95 % / 5 % split (``RandomState(42)`` permutation; items keep their order)."""
    if len(sources) < 2:
        raise ValueError(
            f"data_dir: the folder dataset needs at least 2 videos in {root} (95 % train / 5 % validation "
            f"split), found {len(sources)}"
        )
    order = np.random.RandomState(42).permutation(len(sources))
    n_train = int(0.95 * len(sources))
    chosen = set((order[:n_train] if split == "train" else order[n_train:]).tolist())
    return [s for i, s in enumerate(sources) if i in chosen]


def make_clip_dataset(cfg: TrainConfig, split: str, seq_len: int) -> _RandomClipDataset:
    """The ``split`` ("train" or "val") clip dataset of a real-video configuration, clips of ``seq_len`` frames
    (for the folder dataset, of the videos under ``data_dir`` or of an ``.npz`` file's ``sequences``).

    Raises:
        ValueError: ``data_dir`` is empty, missing or does not hold the converted dataset (the message names
            it and the command that makes it).
    """
    from latentdyn.video import datasets as vd

    if cfg.dataset not in _PREPARE:
        raise ValueError(f"dataset: expected one of {tuple(_PREPARE)}, got {cfg.dataset!r}")
    if not cfg.data_dir:
        raise ValueError(
            f"data_dir: the {cfg.dataset!r} dataset needs --data-dir DIR ({_PREPARE[cfg.dataset]}); none was given"
        )
    root = Path(cfg.data_dir).expanduser()
    if cfg.dataset == "folder" and root.suffix == ".npz" and root.is_file():
        return _array_clip_dataset(cfg, root, split, seq_len)
    if not root.is_dir():
        raise ValueError(f"data_dir: no directory at {root} (expected {_PREPARE[cfg.dataset]})")
    try:
        if cfg.dataset == "kth":
            return vd.KTHDataset(root, seq_len=seq_len, split=split, image_size=cfg.model.image_size)
        if cfg.dataset == "human36m":
            return vd.Human36MDataset(root, seq_len=seq_len, subsampling=cfg.subsampling, split=split)
        if cfg.dataset == "bair":
            return vd.BAIRDataset(root, seq_len=seq_len, split=split)
        folder = vd.VideoFolderDataset(
            root,
            seq_len=seq_len,
            image_size=cfg.model.image_size,
            crop=None if cfg.folder_crop == "none" else cfg.folder_crop,
            grayscale=cfg.model.channels == 1,
            frame_step=cfg.folder_frame_step,
            length=_VIRTUAL_LENGTH,
        )
        folder.sources = _split_sources(folder.sources, split, root)
        flag = "--seq-len" if split == "train" else "--seq-len-test"
        check_folder_lengths(folder, flag, validation=split == "val")
        return folder
    except ValueError as exc:
        message = str(exc)
        if message.startswith("data_dir:"):
            raise
        raise ValueError(f"data_dir: {cfg.dataset} data in {root} is not usable: {message}") from exc


_LISTED = 5
"""How many names a message lists before "and N more"."""


def _first_few(names: Sequence[str], limit: int = _LISTED) -> str:
    """Up to ``limit`` of ``names``, then how many more there are."""
    listed = ", ".join(names[:limit])
    return listed if len(names) <= limit else f"{listed} and {len(names) - limit} more"


def check_folder_lengths(folder: Any, flag: str, source: str = "data_dir", *, validation: bool = False) -> None:
    """Every video of a folder dataset is long enough for one clip (checked up front, not at the step that
    happens to draw a short one). Frame folders are counted; video files are probed (header only).

    Args:
        folder: a ``VideoFolderDataset``.
        flag: the option that sets the clip length (named in the message).
        source: the option that names the folder (starts the message).
        validation: ``folder`` holds the videos the 95 % / 5 % split holds out for validation (the message says
            so: removing one of them draws the split again, and another video may then be held out).

    Raises:
        ValueError: some videos are too short; the message names the first, counts them all and lists up to
            :data:`_LISTED` of them in all.
    """
    from latentdyn.video.datasets.io import probe_video

    short = []  # (path, frames) of every video too short
    for video in folder.sources:
        n_frames = len(video.frames) if video.frames else probe_video(video.path).n_frames
        if n_frames and n_frames < folder.span:
            short.append((video.path, n_frames))
    if not short:
        return
    (first, n_first), others = short[0], [f"{path} ({n} frames)" for path, n in short[1:]]
    message = (
        f"{source}: {first} has {n_first} frames, fewer than the {folder.span} that clips of {folder.seq_len} "
        f"frames (every {folder.frame_step}) need"
    )
    if others:
        message += f", and {len(others)} other video(s) are too short as well: {_first_few(others, _LISTED - 1)}"
    these = "that video" if len(short) == 1 else "those videos"
    if validation:
        held = "it is a validation video" if len(short) == 1 else "they are validation videos"
        message += (
            f"; {held} (held out by the 95 % / 5 % split of the videos), whose clips have {flag} frames: lower "
            f"{flag}, or make every video at least {folder.span} frames long (removing {these} draws the split "
            "again, and another video may then be held out)"
        )
    else:
        message += f"; lower {flag} or remove {these}"
    raise ValueError(message)


# -------------------------------------------------------------------------------- the record of a folder run
def folder_data_record(cfg: TrainConfig) -> dict[str, Any] | None:
    """What the 95 % / 5 % split of a ``folder`` run is drawn from, as ``config.json`` keeps it (``"data"``), for
    a resume to check that the split is still the run's: the videos under ``data_dir``, named relative to it (the
    folder may move) in the order the split permutes, and the validation ones; for an ``.npz``, its numbers of
    videos and frames (read from the array's header) and the indices of the validation videos. Nothing is
    decoded.

    Returns:
        The record, or None for another dataset, or a ``data_dir`` that holds no video (:func:`make_data` says
        what is wrong with it).
    """
    from latentdyn.video.datasets import VideoFolderDataset

    if cfg.dataset != "folder" or not cfg.data_dir:
        return None
    root = Path(cfg.data_dir).expanduser()
    if root.suffix == ".npz" and root.is_file():
        shape = _array_shape(root)
        if shape is None or len(shape) not in (4, 5):
            return None
        indices = list(range(shape[1]))
        held = _split_sources(indices, "val", root) if len(indices) >= 2 else []
        return {"videos": shape[1], "frames": shape[0], "validation": held}
    try:
        sources = VideoFolderDataset(root, seq_len=1).sources
    except ValueError:  # no directory, or no video in it
        return None
    names = [source.path.relative_to(root).as_posix() for source in sources]
    return {"videos": names, "validation": _split_sources(names, "val", root) if len(names) >= 2 else []}


def _array_shape(file: Path) -> tuple[int, ...] | None:
    """The shape of the ``sequences`` array of an ``.npz``, from its header; None if it cannot be read."""
    import zipfile

    from latentdyn.video.datasets._common import _npy_claim

    try:
        with zipfile.ZipFile(file) as archive, archive.open("sequences.npy") as member:
            claim = _npy_claim(member)
    except Exception:  # not an archive, no such array, damage: make_data says what
        return None
    return None if claim is None else claim[0]


def folder_data_changes(recorded: Any, now: dict[str, Any] | None) -> str | None:
    """How the data of a folder run differs from the ``recorded`` (``config.json``'s ``"data"``): "" when it is the
    same data, else the difference in words; None when ``now`` is unknown (:func:`folder_data_record` gave None:
    :func:`make_data` then says what is wrong).

    Raises:
        ValueError: ``recorded`` is not a record :func:`folder_data_record` writes (the message, without an
            option, says what it holds).
    """
    videos = recorded.get("videos") if isinstance(recorded, dict) else None
    names: list[str] | None = None  # a folder's
    if isinstance(videos, list) and all(isinstance(name, str) for name in videos):
        names = videos
    elif not (is_int(videos) and is_int(recorded.get("frames"))):
        raise ValueError(
            "expected a 'videos' list of names (a folder) or numbers of 'videos' and 'frames' (an .npz), got "
            f"{json.dumps(recorded)[:200]}"
        )
    if now is None:
        return None
    now_videos = now["videos"]
    if names is None and isinstance(now_videos, list):
        return f"the run's data was an .npz of {videos} videos, data_dir is now a folder of {len(now_videos)} videos"
    if names is not None and not isinstance(now_videos, list):
        return f"the run's data was a folder of {len(names)} videos, data_dir is now an .npz of {now_videos} videos"
    if names is None:
        if (videos, recorded["frames"]) == (now_videos, now["frames"]):
            return ""
        return (
            f"the run's .npz held {videos} videos of {recorded['frames']} frames, data_dir now holds {now_videos} "
            f"videos of {now['frames']} frames"
        )
    if names == now_videos:
        return ""
    before, after = set(names), set(now_videos)
    added = [name for name in now_videos if name not in before]
    removed = [name for name in names if name not in after]
    if not added and not removed:
        return f"the same {len(names)} videos, in another order"

    def listed(some: list[str]) -> str:
        return f" ({_first_few(some)})" if some else ""

    return f"{len(added)} video(s) added{listed(added)}, {len(removed)} removed{listed(removed)}"


def describe_folder_data(cfg: TrainConfig, record: dict[str, Any]) -> str:
    """What a folder run trains on, in a line (the note of a new run), from its :func:`folder_data_record` and the
    options: how many videos, the split, how frames are read."""
    videos, held = record["videos"], record["validation"]
    if isinstance(videos, int):  # an .npz
        what = f"{videos} videos of {record['frames']} frames in {cfg.data_dir}"
        which = f"video{'s' if len(held) > 1 else ''} {_first_few([str(i) for i in held])} of the array, counted from 0"
        how = f"frames used as stored ({cfg.model.image_size}×{cfg.model.image_size}, {cfg.model.channels} channel"
        how += "s)" if cfg.model.channels > 1 else ")"
    else:
        what = f"{len(videos)} videos in {cfg.data_dir}"
        which = _first_few(held)
        size = f"{cfg.model.image_size}×{cfg.model.image_size}"
        if cfg.folder_crop == "center":
            how = f"frames cropped to their largest centred square and resized to {size}"
        else:
            how = f"frames resized to {size} (non-square ones stretched: --folder-crop center keeps their aspect ratio)"
        colour = "grey" if cfg.model.channels == 1 else "RGB"
        how += f", read as {colour} (the model has {cfg.model.channels} channel{'s' * (cfg.model.channels > 1)})"
    n_videos = videos if isinstance(videos, int) else len(videos)
    if cfg.folder_frame_step > 1:
        how += f", one frame in {cfg.folder_frame_step} kept"
    return (
        f"folder data: {what}, {n_videos - len(held)} for training and {len(held)} held out for validation "
        f"({which}); {how}"
    )


def _check_frames(clips: torch.Tensor, cfg: TrainConfig) -> None:
    want = (cfg.model.channels, cfg.model.image_size, cfg.model.image_size)
    got = tuple(clips.shape[2:])
    if got != want:
        raise ValueError(
            f"data_dir: the {cfg.dataset} clips in {cfg.data_dir} have (C, H, W) = {got}, but the model reads "
            f"{want} (channels, image_size); convert the data at that size or change the model options"
        )


def check_stream(stream: BatchStream, cfg: TrainConfig, step: int = 0, *, share: tuple[int, int] = (0, 1)) -> None:
    """Draw the batch of ``step`` and check its shape against the configuration: a run is created only once
    its data has been read (a bad file or frame size fails here, not in the middle of the first step).
    ``share`` is the stream's (rank, world), as given to :func:`make_data`: its batches hold batch_size / world
    clips.

    Raises:
        ValueError: the batch cannot be made, or its shape is not (seq_len, batch_size / world, C, H, W).
    """
    try:
        batch = stream[step]
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith("data_dir:") else f"data_dir: {message}") from exc
    _check_frames(batch, cfg)
    want = (cfg.seq_len, cfg.batch_size // share[1])
    if tuple(batch.shape[:2]) != want:
        what = "seq_len, batch_size" if share[1] == 1 else f"seq_len, batch_size / {share[1]} processes"
        raise ValueError(
            f"data_dir: the {cfg.dataset} batch of step {step} has (T, B) = {tuple(batch.shape[:2])}, "
            f"expected {want} ({what})"
        )


def make_data(cfg: TrainConfig, *, share: tuple[int, int] = (0, 1)) -> tuple[BatchStream, torch.Tensor]:
    """The training stream and the fixed validation clips.

    ``stream[s]`` is the batch of step s, uint8 (T, B, C, H, W) (:class:`BatchStream`; convert it with
    :func:`latentdyn.video.collate.to_unit_interval`); the stream has no end (its length is ``sys.maxsize``), so
    a ``DataLoader`` over it takes ``batch_size=None`` and a sampler of the steps, e.g. ``range(0, n_steps)``.
    The validation clips are float (T, N, C, H, W) in [0, 1]. With ``share = (rank, world)`` the stream's
    batches are process ``rank``'s share of them, B / world clips (:func:`share_slice`); the validation clips are
    whole.

    Raises:
        ValueError: a missing or ill-formed ``data_dir`` (named in the message), or frames whose size or
            channels differ from the model's.
    """
    from latentdyn.video.collate import collate_videos

    val_seed = step_seed(cfg.seed, 0, stream=1)
    if cfg.dataset == "smmnist":
        digits = _digits(cfg, "train")
        rs = np.random.RandomState(42)  # 95/5 split of the training digits, as the official get_fold
        order = rs.permutation(len(digits))
        n_train = int(0.95 * len(digits))
        train_digits, val_digits = digits[order[:n_train]], digits[order[n_train:]]
        train_batches = _MovingMNISTBatches(cfg, train_digits, cfg.batch_size, cfg.seq_len, share)
        val = collate_videos(list(_MovingMNISTBatches(cfg, val_digits, cfg.val_sequences, cfg.test_len)(val_seed)))
        _check_frames(val, cfg)
        return BatchStream(train_batches, cfg.seed), val
    by_video = cfg.dataset == "bair"
    train_set = make_clip_dataset(cfg, "train", cfg.seq_len)
    val_set = make_clip_dataset(cfg, "val", cfg.test_len)
    val = collate_videos(ClipSampler(val_set, cfg.val_sequences, by_video=by_video, distinct=True)(val_seed))
    _check_frames(val, cfg)
    return BatchStream(ClipSampler(train_set, cfg.batch_size, by_video=by_video, share=share), cfg.seed), val
