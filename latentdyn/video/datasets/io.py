"""Reading and writing video files as uint8 arrays (T, H, W, 3).

Decoding and encoding go through PyAV (the FFmpeg libraries, no ``ffmpeg`` binary), an optional
dependency installed with ``pip install "latentdyn[video]"``; GIF files go through Pillow instead.

Damaged files are reported, not silently shortened: a file that cannot be opened, a packet that cannot be
decoded, or a file that holds fewer packets than its header announces (a truncated download) raises a
``ValueError`` that names the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from latentdyn._checks import check_choice, check_positive_int, check_positive_real, is_int
from latentdyn._files import atomic_path
from latentdyn.video.datasets._common import require_pillow

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["VideoInfo", "iter_video", "probe_video", "read_video", "write_video"]

PathLike = str | os.PathLike[str]

# swscale filters by name; "bicubic" is what the ffmpeg command line uses by default (``-s``).
INTERPOLATIONS = ("bicubic", "bilinear", "area", "lanczos", "point")


def _import_av() -> ModuleType:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('Reading and writing video files needs PyAV: pip install "latentdyn[video]"') from exc
    return av


def _video_stream(container: Any, path: Path) -> Any:
    """The first video stream of the open PyAV ``container`` read from ``path``.

    Raises:
        ValueError: the file holds no video stream (the message names it).
    """
    if not container.streams.video:
        raise ValueError(f"{path}: the file holds no video stream")
    return container.streams.video[0]


def _existing_file(path: PathLike, name: str = "path") -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{name}: no video file at {p}")
    return p


def _is_gif(path: Path) -> bool:
    return path.suffix.lower() == ".gif"


@dataclass(frozen=True)
class VideoInfo:
    """Header facts about a video file (nothing is decoded).

    Attributes:
        n_frames: number of frames announced by the container (0 when it does not say).
        fps: average frame rate (0.0 when unknown).
        height: frame height H in pixels.
        width: frame width W in pixels.
    """

    n_frames: int
    fps: float
    height: int
    width: int


def probe_video(path: PathLike) -> VideoInfo:
    """Read a video file's header: frame count, frame rate and frame size.

    Args:
        path: a video file PyAV can read, or a ``.gif``.

    Returns:
        The header facts; nothing is decoded.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable video (the message names it).
        ImportError: PyAV is not installed (files other than GIFs).
    """
    p = _existing_file(path)
    if _is_gif(p):
        require_pillow()
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as image:
                duration = float(image.info.get("duration", 0) or 0)
                return VideoInfo(
                    n_frames=int(getattr(image, "n_frames", 1)),
                    fps=1000.0 / duration if duration > 0 else 0.0,
                    height=image.height,
                    width=image.width,
                )
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"{p}: not a readable GIF file ({exc})") from exc
    av = _import_av()
    try:
        with av.open(str(p)) as container:
            stream = _video_stream(container, p)
            rate = stream.average_rate
            return VideoInfo(
                n_frames=int(stream.frames or 0),
                fps=float(rate) if rate else 0.0,
                height=int(stream.codec_context.height),
                width=int(stream.codec_context.width),
            )
    except av.FFmpegError as exc:
        raise ValueError(f"{p}: not a readable video file ({exc})") from exc


def _count_frames(path: Path) -> int:
    """Number of frames in a video file, counted from its packets without decoding any.

    For containers whose header gives no frame count (Matroska, WebM): one demux pass, a fraction of the
    cost of decoding. It counts the packets :func:`_decode` expects a frame from (non-empty, not marked
    for discarding), so a file that decodes without error yields at least this many frames.

    Raises:
        ValueError: the file is not a readable video (the message names it).
        ImportError: PyAV is not installed.
    """
    av = _import_av()
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            return sum(1 for packet in container.demux(stream) if packet.size and not packet.is_discard)
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: cannot read video ({exc})") from exc


def _decode(path: Path, size: tuple[int, int] | None, interpolation: str) -> Iterator[tuple[float | None, np.ndarray]]:
    """Yield (presentation time in seconds or None, uint8 frame (H, W, 3)) for each decoded frame."""
    if _is_gif(path):
        yield from _decode_gif(path, size, interpolation)
        return
    av = _import_av()
    n_packets = n_nonempty = n_decoded = 0
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            announced = int(stream.frames or 0)
            for packet in container.demux(stream):
                if packet.pts is not None or packet.size:
                    n_packets += 1
                # Packets the container marks for discarding (edit lists) decode to nothing, legitimately.
                if packet.size and not packet.is_discard:
                    n_nonempty += 1
                for frame in packet.decode():
                    n_decoded += 1
                    if size is None:
                        array = frame.to_ndarray(format="rgb24")
                    else:
                        array = frame.reformat(
                            width=size[1], height=size[0], format="rgb24", interpolation=interpolation.upper()
                        ).to_ndarray()
                    yield (float(frame.time) if frame.time is not None else None), array
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: cannot decode video ({exc})") from exc
    if n_decoded == 0:
        raise ValueError(f"{path}: the file holds no decodable video frame")
    if announced and n_packets < announced:
        raise ValueError(
            f"{path}: truncated or corrupt video: the header announces {announced} frames but the file holds only "
            f"{n_packets}"
        )
    if n_decoded < n_nonempty:
        raise ValueError(f"{path}: corrupt video: {n_nonempty - n_decoded} of {n_nonempty} frames could not be decoded")


def _decode_gif(
    path: Path, size: tuple[int, int] | None, interpolation: str
) -> Iterator[tuple[float | None, np.ndarray]]:
    require_pillow()
    from PIL import Image, ImageSequence, UnidentifiedImageError

    resample = {
        "bicubic": Image.Resampling.BICUBIC,
        "bilinear": Image.Resampling.BILINEAR,
        "area": Image.Resampling.BOX,
        "lanczos": Image.Resampling.LANCZOS,
        "point": Image.Resampling.NEAREST,
    }[interpolation]

    try:
        with Image.open(path) as image:
            elapsed = 0.0
            for frame in ImageSequence.Iterator(image):
                rgb = frame.convert("RGB")
                if size is not None:
                    rgb = rgb.resize((size[1], size[0]), resample=resample)
                yield elapsed, np.asarray(rgb)
                elapsed += float(frame.info.get("duration", 0) or 0) / 1000.0
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"{path}: cannot decode GIF ({exc})") from exc


def _check_size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    if is_int(size):
        side = check_positive_int(size, "size")
        return (side, side)
    if isinstance(size, tuple) and len(size) == 2:
        return (check_positive_int(size[0], "size[0]"), check_positive_int(size[1], "size[1]"))
    raise TypeError(f"size: expected None, an int or a (height, width) tuple, got {size!r}")


def iter_video(
    path: PathLike, *, size: int | tuple[int, int] | None = None, interpolation: str = "bicubic"
) -> Iterator[np.ndarray]:
    """Stream the frames of a video file, one uint8 array (H, W, 3) at a time.

    Use this rather than :func:`read_video` for long high-resolution videos (one Human3.6M video decoded
    at once would need gigabytes).

    Args:
        path: a video file PyAV can read (``.mp4``, ``.avi``, ...) or a ``.gif``.
        size: resize every frame to ``(H, W)`` (an int means square), ignoring the aspect ratio, the way
            ``ffmpeg -s WxH`` does; ``None`` keeps the stored size.
        interpolation: swscale filter used to resize: one of ``"bicubic"`` (ffmpeg's default),
            ``"bilinear"``, ``"area"``, ``"lanczos"``, ``"point"``.

    Raises:
        TypeError: ``size`` is neither None, an int nor a (height, width) pair of ints, ``interpolation``
            is not a string, or ``frame_rate`` is neither None nor a real number.
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable, corrupt or truncated file (named in the message), a size below 1 or an unknown
            ``interpolation``. The error can come after some frames were yielded, when the damage is found at
            the end of the file.
        ImportError: PyAV is not installed.
    """
    p = _existing_file(path)
    wanted = _check_size(size)
    check_choice(interpolation, "interpolation", INTERPOLATIONS)
    return (frame for _, frame in _decode(p, wanted, interpolation))


def _resample_indices(times: list[float], frame_rate: float) -> list[int]:
    """Frame index shown at each tick of a constant ``frame_rate`` clock starting at the first frame.

    Each tick shows the frame on screen at that time (the last one that started at or before it), so
    frames are repeated when the clock is faster and dropped when it is slower. ``ffmpeg -r`` behaves the
    same way up to its tolerance of about one frame of drift; for a file already at ``frame_rate`` this is
    the identity.
    """
    tolerance = 1e-6
    t0 = times[0]
    offsets = [t - t0 for t in times]
    n_ticks = math.floor((max(offsets) * frame_rate) + tolerance) + 1
    out: list[int] = []
    current = 0
    for tick in range(n_ticks):
        now = tick / frame_rate + tolerance
        while current + 1 < len(offsets) and offsets[current + 1] <= now:
            current += 1
        out.append(current)
    return out


def read_video(
    path: PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    frame_rate: float | None = None,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """Decode a whole video file into a uint8 array (T, H, W, 3).

    Args:
        path: a video file PyAV can read (``.mp4``, ``.avi``, ...) or a ``.gif``.
        size: resize every frame to ``(H, W)`` (an int means square), ignoring the aspect ratio.
        frame_rate: resample to this constant frame rate from the frame timestamps (frames are repeated
            or dropped, as ``ffmpeg -r`` does); ``None`` keeps every decoded frame. Files without
            timestamps are returned as decoded.
        interpolation: swscale filter used to resize (see :func:`iter_video`).

    Returns:
        uint8 array (T, H, W, 3), RGB.

    Raises:
        TypeError: ``size`` is neither None, an int nor a (height, width) pair of ints, ``interpolation``
            is not a string, or ``frame_rate`` is neither None nor a real number.
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable, corrupt or truncated file (named in the message), a bad ``frame_rate``, a
            size below 1 or an unknown ``interpolation``.
        ImportError: PyAV is not installed.
    """
    p = _existing_file(path)
    wanted = _check_size(size)
    check_choice(interpolation, "interpolation", INTERPOLATIONS)
    if frame_rate is not None:
        frame_rate = check_positive_real(frame_rate, "frame_rate")
    times: list[float | None] = []
    frames: list[np.ndarray] = []
    for time, frame in _decode(p, wanted, interpolation):
        times.append(time)
        frames.append(frame)
    if frame_rate is not None and all(t is not None for t in times):
        indices = _resample_indices([float(t) for t in times if t is not None], float(frame_rate))
        frames = [frames[i] for i in indices]
    return np.stack(frames)


_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "mpeg4"}


def write_video(
    path: PathLike,
    frames: np.ndarray,
    fps: float,
    *,
    codec: str | None = None,
    pix_fmt: str = "yuv420p",
    options: Mapping[str, str] | None = None,
) -> Path:
    """Encode uint8 frames (T, H, W, 3) or (T, H, W) into a video file.

    The file is written under a temporary name and renamed when complete, so a failure leaves nothing
    behind. ``.gif`` files are written with Pillow; everything else with PyAV.

    Args:
        path: output file; the extension picks the container (``.mp4``, ``.avi``, ``.mkv``, ``.gif``...).
        frames: uint8 array (T, H, W, 3) RGB or (T, H, W) grayscale.
        fps: frame rate.
        codec: FFmpeg encoder name; by default ``libx264`` for ``.mp4``/``.mov``/``.mkv`` and ``mpeg4``
            for ``.avi``.
        pix_fmt: pixel format stored in the file; ``yuv420p`` (the default, what players expect) needs an
            even H and W.
        options: encoder options, e.g. ``{"crf": "0"}``.

    Returns:
        The path written.

    Raises:
        TypeError: ``frames`` is not a uint8 numpy array, or ``fps`` is not a real number.
        ValueError: wrong shape, odd size with ``yuv420p``, ``fps`` not positive and finite, or an unknown
            extension.
        ImportError: PyAV is not installed (non-GIF files).
    """
    out = Path(path)
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        kind = frames.dtype if isinstance(frames, np.ndarray) else type(frames).__name__
        raise TypeError(f"frames: expected a uint8 numpy array (T, H, W[, 3]), got {kind}")
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames: expected shape (T, H, W, 3) or (T, H, W) with T >= 1, got {frames.shape}")
    fps = check_positive_real(fps, "fps")
    suffix = out.suffix.lower()
    if suffix == ".gif":
        with atomic_path(out) as tmp:
            _write_gif(tmp, frames, float(fps))
        return out
    if codec is None:
        if suffix not in _CODECS:
            raise ValueError(
                f"path: cannot pick a codec for extension {suffix!r} of {out}; use one of "
                f"{', '.join(sorted([*_CODECS, '.gif']))} or pass codec="
            )
        codec = _CODECS[suffix]
    height, width = frames.shape[1:3]
    if pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(
            f"frames: pix_fmt 'yuv420p' needs an even height and width, got {height}x{width}; "
            "crop or pad the frames, or pass pix_fmt='yuv444p'"
        )
    av = _import_av()
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(out) as tmp:
        try:
            with av.open(str(tmp), "w") as container:
                stream: Any = container.add_stream(codec, rate=rate, options=dict(options or {}))
                stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
                for array in frames:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
                    container.mux(stream.encode(frame))
                container.mux(stream.encode(None))
        except ValueError as exc:  # av.FFmpegError and av's UnknownCodecError both derive from ValueError
            raise ValueError(f"{out}: cannot encode video with codec {codec!r} ({exc})") from exc
    return out


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    require_pillow()
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=round(1000.0 / fps),
        loop=0,
        optimize=False,
    )
