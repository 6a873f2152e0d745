"""Clips from a folder of your own videos: video files and folders of frames, mixed freely."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.utils.data

from latentdyn._checks import check_bool, check_choice, check_positive_int, is_int
from latentdyn.video.datasets._common import (
    ClipRef,
    RandomDraws,
    Rng,
    check_clip_ref,
    draw_int,
    is_hidden,
    numeric_sort_key,
    read_png,
    require_pillow,
    video_index,
)
from latentdyn.video.datasets.io import PathLike, _count_frames, iter_video, probe_video

__all__ = ["FRAME_EXTENSIONS", "VIDEO_EXTENSIONS", "VideoFolderDataset", "VideoSource"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".gif", ".mov", ".mkv", ".webm")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
_RESAMPLING = ("lanczos", "bicubic", "bilinear", "nearest", "box")


@dataclass(frozen=True)
class VideoSource:
    """One video of a :class:`VideoFolderDataset`.

    Attributes:
        path: the video file, or the folder holding its frames.
        frames: for a folder, its frame files in numeric order; empty for a video file.
    """

    path: Path
    frames: tuple[Path, ...] = ()


def _discover(root: Path) -> list[VideoSource]:
    sources: list[VideoSource] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not is_hidden(d))
        here = Path(directory)
        visible = sorted((f for f in files if not is_hidden(f)), key=numeric_sort_key)
        frames = tuple(here / f for f in visible if Path(f).suffix.lower() in FRAME_EXTENSIONS)
        if frames:
            sources.append(VideoSource(here, frames))
        sources.extend(VideoSource(here / f) for f in visible if Path(f).suffix.lower() in VIDEO_EXTENSIONS)
    return sources


class VideoFolderDataset(RandomDraws, torch.utils.data.Dataset[np.ndarray]):
    """Random clips from every video under a folder, uint8 (T, H, W, 3) or (T, H, W) with ``grayscale``.

    ``root`` is searched recursively. Every video file (``.mp4``, ``.avi``, ``.gif``, ``.mov``, ``.mkv``,
    ``.webm``) is one video, and every folder that directly holds PNG/JPEG images is one video whose frames
    are those images in numeric order (``frame-2.png`` before ``frame-10.png``). Frame images may be grey
    (1-, 8- or 16-bit, the last scaled to 8 bits), RGB, palette (looked up) or with alpha (dropped); other
    image modes are refused, naming the file.

    An item is a clip of ``seq_len`` frames taken every ``frame_step`` frames, from a random start
    (``random_start=True``) or from the first frame. With ``length=None`` item ``i`` comes from video
    ``i``; with a ``length``, the dataset is virtual and every item draws a random video. Only the frames up
    to the clip's end are decoded. A video file's length is read once from its header (a container that does not
    announce it, ``.mkv`` or ``.webm``, has its packets counted, without decoding) and kept while the file is
    unchanged.

    Frames are processed in this order: ``crop="center"`` keeps the largest centred region with the aspect
    ratio of ``image_size``; then the frame is resized to ``image_size`` (ignoring the aspect ratio when
    there is no crop); then ``grayscale`` converts it to luma (ITU-R 601, Pillow's ``"L"``).

    Args:
        root: the folder to search.
        seq_len: clip length T.
        image_size: output ``(H, W)`` (an int means square); ``None`` keeps each video's size (all frames of
            a clip must then have the same size).
        crop: ``None`` or ``"center"``.
        grayscale: return (T, H, W) luma clips instead of RGB.
        frame_step: keep one frame in this many.
        resample: Pillow filter for the resize: ``"lanczos"``, ``"bicubic"``, ``"bilinear"``,
            ``"nearest"`` or ``"box"``.
        random_start: draw the clip start at random (else start at frame 0).
        length: virtual number of items (a random video per item), or ``None`` for one item per video.
        rng: random generator (``numpy.random.Generator`` or ``RandomState``), copied into every ``DataLoader``
            worker; see :class:`~latentdyn.video.datasets.KTHDataset` about workers.
        seed: seed of the dataset's own stream of draws, kept apart in every worker (as ``KTHDataset``'s); with
            neither ``rng`` nor ``seed``, numpy's global generator.

    Attributes:
        sources: the videos found, in sorted order.

    Raises:
        TypeError: an option of the wrong kind (a count not an int, ``image_size`` neither None, an int nor a
            pair, a choice not a string, ``grayscale`` or ``random_start`` not a bool).
        ValueError: no video under ``root``, bad options; when loading, a video too short for the clip,
            an unreadable file or a frame image of an unsupported mode (named in the message).
    """

    def __init__(
        self,
        root: PathLike,
        *,
        seq_len: int,
        image_size: int | tuple[int, int] | None = None,
        crop: str | None = None,
        grayscale: bool = False,
        frame_step: int = 1,
        resample: str = "lanczos",
        random_start: bool = True,
        length: int | None = None,
        rng: Rng | None = None,
        seed: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"root: expected a directory of videos, found none at {self.root}")
        self.seq_len = check_positive_int(seq_len, "seq_len")
        self.frame_step = check_positive_int(frame_step, "frame_step")
        if image_size is None:
            self.image_size: tuple[int, int] | None = None
        elif is_int(image_size):
            self.image_size = (check_positive_int(image_size, "image_size"),) * 2
        elif isinstance(image_size, tuple) and len(image_size) == 2:
            self.image_size = (
                check_positive_int(image_size[0], "image_size[0]"),
                check_positive_int(image_size[1], "image_size[1]"),
            )
        else:
            raise TypeError(f"image_size: expected None, an int or a (height, width) tuple, got {image_size!r}")
        if crop is not None:
            check_choice(crop, "crop", ("center",))
            if self.image_size is None:
                raise ValueError("crop: 'center' needs an image_size to take the aspect ratio from")
        self.crop = crop
        self.grayscale = check_bool(grayscale, "grayscale")
        self.resample = check_choice(resample, "resample", _RESAMPLING)
        self.random_start = check_bool(random_start, "random_start")
        self.length = None if length is None else check_positive_int(length, "length")
        self._init_draws(rng, seed)
        self.span = (self.seq_len - 1) * self.frame_step + 1
        self.sources = _discover(self.root)
        # path -> (st_size, st_mtime_ns, frames, whether the header announced them)
        self._frame_counts: dict[Path, tuple[int, int, int, bool]] = {}
        if not self.sources:
            raise ValueError(
                f"root: found no video under {self.root} (video files {', '.join(VIDEO_EXTENSIONS)}, or "
                f"folders of {', '.join(FRAME_EXTENSIONS)} frames)"
            )

    def __len__(self) -> int:
        return len(self.sources) if self.length is None else self.length

    def _process(self, frame: np.ndarray) -> np.ndarray:
        require_pillow()
        from PIL import Image

        image = Image.fromarray(frame)
        image = image.convert("L") if self.grayscale else image.convert("RGB")
        if self.image_size is not None:
            height, width = self.image_size
            box = None
            if self.crop == "center":
                scale = min(image.width / width, image.height / height)
                crop_w, crop_h = width * scale, height * scale
                left, upper = (image.width - crop_w) / 2, (image.height - crop_h) / 2
                box = (round(left), round(upper), round(left + crop_w), round(upper + crop_h))
                image = image.crop(box)
            resample = getattr(Image.Resampling, self.resample.upper())
            image = image.resize((width, height), resample=resample)
        return np.asarray(image)

    def _too_short(self, source: VideoSource, n_frames: int) -> ValueError:
        return ValueError(
            f"{source.path}: {n_frames} frames, fewer than the {self.span} that seq_len={self.seq_len} with "
            f"frame_step={self.frame_step} needs"
        )

    def _start(self, n_frames: int) -> int:
        return draw_int(self._stream(), n_frames - self.span + 1) if self.random_start else 0

    def _frames_of(self, source: VideoSource) -> int:
        """How many frames ``source`` has: its frame files, or a video file's header count (or counted packets),
        read once per file version."""
        if source.frames:
            return len(source.frames)
        return self._video_length(source.path)[0]

    def _video_length(self, path: Path) -> tuple[int, bool]:
        """(frames, whether the header announced them) of a video file, kept while the file is unchanged."""
        stat = path.stat()
        cached = self._frame_counts.get(path)
        if cached is not None and cached[:2] == (stat.st_size, stat.st_mtime_ns):
            return cached[2], cached[3]
        n_frames = probe_video(path).n_frames
        announced = n_frames > 0
        if not announced:  # a container that does not say (Matroska, WebM): count its packets, decoding nothing
            n_frames = _count_frames(path)
        if n_frames == 0:  # no frame packet at all: decoding names the problem
            n_frames = sum(1 for _ in iter_video(path))
        self._frame_counts[path] = (stat.st_size, stat.st_mtime_ns, n_frames, announced)
        return n_frames, announced

    def _draw_start(self, source: VideoSource) -> int:
        """A start for a clip of ``source`` (drawn from ``rng`` with ``random_start``), once its length is checked."""
        n_frames = self._frames_of(source)
        if n_frames < self.span:
            raise self._too_short(source, n_frames)
        return self._start(n_frames)

    def load(self, source: VideoSource) -> np.ndarray:
        """A clip of ``source``, processed: uint8 (T, H, W, 3), or (T, H, W) with ``grayscale``.

        Args:
            source: one of :attr:`sources`.

        Returns:
            T = ``seq_len`` frames, one in ``frame_step``, from a random start (or the first frame without
            ``random_start``).

        Raises:
            ValueError: the video is too short for the clip, cannot be decoded (the file is named), or has
                frames of different sizes without ``image_size``.
            ImportError: PyAV is not installed (video files other than GIFs).
        """
        return self._read(source, self._draw_start(source))

    def draw(self, index: int) -> ClipRef:
        """The clip ``self[index]`` reads, without decoding a frame: video ``index`` (or, with ``length``, a video
        drawn from ``rng``), then its start. A video file's length comes from its header (or its counted packets).

        Raises:
            ValueError: the video is too short for the clip.
            ImportError: PyAV is not installed (video files other than GIFs).
        """
        if self.length is None:
            video = video_index(index, len(self.sources))
        else:
            video = draw_int(self._stream(), len(self.sources))
        return ClipRef(video, self._draw_start(self.sources[video]))

    def read(self, ref: ClipRef) -> np.ndarray:
        """The frames of clip ``ref`` (from :meth:`draw`), processed as :meth:`load` does.

        Raises:
            TypeError: ``ref`` is not a pair of ints.
            ValueError: ``ref`` names no video of :attr:`sources`, a clip that does not fit in its video, or a
                video that cannot be decoded (named), or frames of different sizes without ``image_size``.
            ImportError: PyAV is not installed (video files other than GIFs).
        """
        sources = self.sources
        # (a video file's length is known once decoded: _read says when the clip runs past it)
        video, start = check_clip_ref(
            ref, len(sources), self.span, lambda i: (len(sources[i].frames) or None, sources[i].path)
        )
        return self._read(sources[video], start)

    def _read(self, source: VideoSource, start: int) -> np.ndarray:
        """The clip of ``source`` from frame ``start``, processed."""
        if source.frames:
            raw = [read_png(f) for f in source.frames[start : start + self.span : self.frame_step]]
        else:
            raw = []
            for t, frame in enumerate(iter_video(source.path)):
                if t >= start + self.span:
                    break
                if t >= start and (t - start) % self.frame_step == 0:
                    raw.append(frame)
            if len(raw) < self.seq_len:
                n_frames, announced = self._video_length(source.path)
                said = f"the header announces {n_frames} frames"
                if not announced:
                    said = f"the file holds {n_frames} frame packets"
                raise ValueError(
                    f"{source.path}: {said} but fewer could be decoded (clip from frame {start} needs {self.span})"
                )
        processed = [self._process(frame) for frame in raw]
        shapes = {p.shape for p in processed}
        if len(shapes) > 1:
            raise ValueError(
                f"{source.path}: frames of different sizes {sorted(shapes)}; pass image_size to resize them"
            )
        return np.stack(processed)

    def __getitem__(self, index: int) -> np.ndarray:
        """A clip, uint8 (T, H, W, 3) or (T, H, W): of video ``index``, or of a random video with ``length``."""
        return self.read(self.draw(index))
