"""Helpers shared by the dataset modules: atomic outputs, PNG frames, splits and random draws.

Nothing here is public API; the dataset modules re-export what users need.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, NamedTuple, TypeVar

import numpy as np
from torch.utils.data import get_worker_info

from latentdyn._checks import is_int
from latentdyn._files import first_line

if TYPE_CHECKING:
    import PIL.Image

__all__ = [
    "VAL_FRACTION_SEED",
    "ClipRef",
    "ConversionReport",
    "RandomDraws",
    "Rng",
    "atomic_directory",
    "check_clip_ref",
    "check_npy_sizes",
    "draw_int",
    "is_hidden",
    "numeric_sort_key",
    "read_npz",
    "read_png",
    "require_dir",
    "require_pillow",
    "split_items",
    "video_index",
    "write_png",
]

T = TypeVar("T")

_NPY_MAGIC = b"\x93NUMPY"

# The official code splits every training set 95 % / 5 % with ``numpy.random.RandomState(42)``.
VAL_FRACTION_SEED = 42
_TRAIN_FRACTION = 0.95


@dataclass(frozen=True)
class ConversionReport:
    """What a dataset conversion did.

    Attributes:
        out_dir: the directory the converted dataset lives in.
        written: number of videos converted by this call.
        skipped: number of videos whose output already existed (complete, thanks to atomic renames) and
            were left untouched.
    """

    out_dir: Path
    written: int
    skipped: int


def is_hidden(name: str) -> bool:
    """Whether a directory entry is hidden (dot files, and the ``.partial`` leftovers of a killed run)."""
    return name.startswith(".")


_DIGITS = re.compile(r"(\d+)")


def numeric_sort_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers by value: ``image-999.png`` before ``image-1000.png``."""
    parts = _DIGITS.split(name)
    return tuple((0, int(p)) if i % 2 else (1, p) for i, p in enumerate(parts) if p)


def require_dir(path: Path, what: str, hint: str = "") -> Path:
    """Return ``path`` if it is a directory, else raise ``ValueError`` saying which layout was expected."""
    if not path.is_dir():
        extra = f"; {hint}" if hint else ""
        raise ValueError(f"{what}: expected a directory at {path}, found none{extra}")
    return path


@contextmanager
def atomic_directory(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that is renamed to ``final`` only if the block succeeds.

    On any exception the temporary directory is removed, so no partial output is ever visible at
    ``final``. An existing ``final`` (``overwrite``) is renamed aside before the new one is renamed in, and
    removed only then: if that rename fails it is put back, so the old data are never lost.

    Raises:
        FileExistsError: ``final`` exists and ``overwrite`` is false.
    """
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        if final.exists() or final.is_symlink():
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")  # (hidden: loaders skip it)
            os.replace(final, old)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old, final)
                raise
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def split_items(items: Sequence[T], split: str) -> list[T]:
    """Training or validation part of a list of training items, as the official code splits them.

    The indices are shuffled with ``numpy.random.RandomState(42)``; the first ``int(0.95 * n)`` go to
    training, the rest to validation. The items keep their original order within each part.
    """
    order = list(range(len(items)))
    np.random.RandomState(VAL_FRACTION_SEED).shuffle(order)
    n_train = int(_TRAIN_FRACTION * len(order))
    chosen = set(order[:n_train] if split == "train" else order[n_train:])
    return [item for i, item in enumerate(items) if i in chosen]


class ClipRef(NamedTuple):
    """Which clip an item of a random-clip dataset is, before any frame is read.

    ``dataset.draw(i)`` makes the random draws of ``dataset[i]`` and returns them as a ``ClipRef``;
    ``dataset.read(ref)`` reads that clip, so ``dataset.read(dataset.draw(i))`` is ``dataset[i]``, draw for draw.
    Drawing many clips and reading a few is how each process of a multi-process training makes only its share
    of a global batch while every process draws the same random stream.

    Attributes:
        video: index of the video in the dataset's ``videos`` (``sources`` for
            :class:`~latentdyn.video.datasets.VideoFolderDataset`).
        start: index of the clip's first frame in that video.
    """

    video: int
    start: int


def check_clip_ref(
    ref: object, n_videos: int, span: int = 1, frames_of: Callable[[int], tuple[int | None, object]] | None = None
) -> ClipRef:
    """``ref`` as a :class:`ClipRef` of one of ``n_videos`` videos with a start >= 0 and, when ``frames_of(video)``
    gives the video's (frame count, or None when unknown; name), a clip of ``span`` frames that fits in it.

    Raises:
        TypeError: ``ref`` is not a pair of ints.
        ValueError: the video index is outside ``[0, n_videos)``, the start is negative, or the clip does not fit.
    """
    if not (isinstance(ref, tuple) and len(ref) == 2 and all(is_int(v) for v in ref)):
        raise TypeError(f"ref: expected a ClipRef(video, start) of ints (from draw), got {ref!r}")
    video, start = int(ref[0]), int(ref[1])
    if not 0 <= video < n_videos:
        raise ValueError(f"ref: video {video} is not one of the dataset's {n_videos} videos (0 to {n_videos - 1})")
    if start < 0:
        raise ValueError(f"ref: expected a start frame >= 0, got {start}")
    if frames_of is not None:
        n_frames, name = frames_of(video)
        if n_frames is not None and start + span > n_frames:
            raise ValueError(
                f"ref: a clip spanning {span} frames from frame {start} does not fit in the {n_frames} frames of {name}"
            )
    return ClipRef(video, start)


def video_index(index: int, n_videos: int) -> int:
    """``index`` of one of ``n_videos`` videos, as a list reads it (a negative index counts from the end).

    Raises:
        IndexError: no such video.
    """
    if not -n_videos <= index < n_videos:
        raise IndexError(f"index: {index} is not one of the dataset's {n_videos} videos (0 to {n_videos - 1})")
    return index % n_videos


Rng = np.random.Generator | np.random.RandomState


def draw_int(rng: Rng | None, high: int) -> int:
    """Uniform integer in ``[0, high)`` from ``rng``, or from numpy's global generator when ``rng`` is None.

    The global generator is what the official loaders use; PyTorch's ``DataLoader`` reseeds it in every
    worker, so each worker draws different clips.
    """
    if rng is None:
        return int(np.random.randint(high))
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(high))
    return int(rng.integers(high))


class RandomDraws:
    """The stream a dataset's random draws come from: its ``rng``, a stream of its ``seed``, or numpy's global one.

    A dataset calls :meth:`_init_draws` in its constructor and :meth:`_stream` before drawing. ``rng`` is an
    attribute that may be replaced later (a shallow copy with its own generator); it wins over ``seed``.
    """

    rng: Rng | None
    seed: int | None

    def _init_draws(self, rng: object, seed: object) -> None:
        if rng is not None and not isinstance(rng, (np.random.Generator, np.random.RandomState)):
            raise TypeError(
                f"rng: expected a numpy.random.Generator, a numpy.random.RandomState or None, got "
                f"{type(rng).__name__}; for a seed, pass seed=INT"
            )
        if seed is not None:
            if not is_int(seed):
                raise TypeError(f"seed: expected an int >= 0 or None, got {type(seed).__name__} {seed!r}")
            if int(seed) < 0:
                raise ValueError(f"seed: expected an int >= 0 or None, got {seed}")
            if rng is not None:
                raise ValueError("seed: give rng or seed, not both (rng would be used and seed ignored)")
        self.rng = rng
        self.seed = None if seed is None else int(seed)
        self._seeded: np.random.Generator | None = None
        self._seeded_for: int | None = None

    def _stream(self) -> Rng | None:
        """The generator to draw from now (None: numpy's global one)."""
        if self.rng is not None or self.seed is None:
            return self.rng
        info = get_worker_info()
        worker_seed = None if info is None else int(info.seed)
        if self._seeded is None or self._seeded_for != worker_seed:
            entropy = [self.seed] if worker_seed is None else [self.seed, worker_seed]
            self._seeded = np.random.default_rng(entropy)
            self._seeded_for = worker_seed
        return self._seeded


# Deflate cannot expand data by more than about 1032:1; a deflated member said to inflate to more is damaged.
_DEFLATE_MAX_RATIO = 1032


def _npy_claim(stream: IO[bytes]) -> tuple[tuple[int, ...], np.dtype, int] | None:
    """(shape, dtype, header length) of the ``.npy`` data ``stream`` starts with, or None if it does not."""
    magic = stream.read(len(_NPY_MAGIC) + 2)  # the magic string, then the format version's two bytes
    if len(magic) < len(_NPY_MAGIC) + 2 or not magic.startswith(_NPY_MAGIC):
        return None
    if magic[-2] == 1:
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:  # 2.0, and 3.0 whose header differs only in being UTF-8
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    return tuple(int(n) for n in shape), np.dtype(dtype), stream.tell()


def _oversized(
    path: Path, key: str | None, claim: tuple[tuple[int, ...], np.dtype, int] | None, stored: int
) -> str | None:
    """The refusal for a header that claims more than the ``stored`` bytes (header included), else None."""
    if claim is None or claim[1].hasobject:  # object arrays are pickles, which np.load refuses anyway
        return None
    shape, dtype, header = claim
    claimed, holds = math.prod(shape) * dtype.itemsize, max(stored - header, 0)
    if claimed <= holds:
        return None
    where = f"key {key!r}: truncated or corrupted" if key is not None else "truncated or corrupted"
    container = "its archive member holds at most" if key is not None else "the file holds"
    return (
        f"{path}: {where}: its .npy header claims {list(shape)} {dtype} ({claimed} bytes), {container} {holds} "
        "bytes of data"
    )


def check_npy_sizes(path: Path, keys: Iterable[str] | None = None) -> None:
    """Refuse an ``.npy`` or ``.npz`` file whose ``.npy`` header claims more data than the file holds.

    numpy allocates the array a header declares before reading a byte of it, so a few damaged bytes that
    claim terabytes end in a bare ``MemoryError`` without this check. Members are compared with their size in
    the zip directory, itself bounded by the compressed bytes present. ``keys`` limits the check to the arrays
    that will be read. Anything else wrong with the file is left for ``np.load`` to report.

    Raises:
        ValueError: a header claims more than its file or archive member holds (the file and key are named).
    """
    wanted = None if keys is None else set(keys)
    problem = None
    try:
        with path.open("rb") as handle:
            file_bytes = os.fstat(handle.fileno()).st_size
            claim = _npy_claim(handle)
            if claim is not None:
                problem = _oversized(path, None, claim, file_bytes)
            elif zipfile.is_zipfile(handle):
                with zipfile.ZipFile(handle) as archive:
                    for info in archive.infolist():
                        key = info.filename.removesuffix(".npy")
                        if wanted is not None and key not in wanted:
                            continue
                        present = min(info.compress_size, file_bytes)
                        if info.compress_type == zipfile.ZIP_STORED:
                            stored = min(info.file_size, present)
                        elif info.compress_type == zipfile.ZIP_DEFLATED:
                            stored = min(info.file_size, present * _DEFLATE_MAX_RATIO + _DEFLATE_MAX_RATIO)
                        else:
                            stored = info.file_size
                        with archive.open(info) as member:
                            problem = _oversized(path, key, _npy_claim(member), stored)
                        if problem:
                            break
    except Exception:  # damage of any other kind: np.load finds it and reports it
        return
    if problem:
        raise ValueError(problem)


def read_npz(
    path: Path,
    keys: Iterable[str] | None = None,
    *,
    option: str | None = None,
    check: Callable[[list[str]], None] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (no pickles), each as stored (any shape and dtype).

    Every way a file can be unreadable (empty, truncated, damaged bit by bit, not an archive, a single ``.npy``
    array, a header claiming more data than the file holds, an object array) is a ``ValueError`` naming the file
    (and the key, for a damaged member), in one line. ``MemoryError`` (out of memory for a genuine array)
    propagates.

    Args:
        path: the ``.npz`` file.
        keys: the arrays to read (the others are neither read nor checked); None reads them all.
        option: the option or argument that named the file, which then starts every error message.
        check: called with the archive's keys before anything is read; it may raise its own ``ValueError``
            (a missing key said in the caller's words, a file of another kind).

    Returns:
        ``{key: array}``, in the order of ``keys`` (of the archive when ``keys`` is None).

    Raises:
        ValueError: the file cannot be read as an ``.npz`` archive, a member cannot be read, or a key of ``keys``
            is missing (the keys found are listed).
    """
    prefix = f"{option}: " if option else ""
    wanted = None if keys is None else list(keys)
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False  # (np.load says what is wrong)
    if empty:
        raise ValueError(f"{prefix}{path}: empty file (0 bytes), not an .npz archive: an interrupted download or copy?")
    try:
        check_npy_sizes(path, wanted)  # a header claiming more than the file holds is damage, not a lack of memory
    except ValueError as exc:
        raise ValueError(f"{prefix}{exc}") from exc
    # The file is opened here, not by np.load: given a path, np.load leaves its file open when the archive is
    # unreadable (a ResourceWarning, and a handle held until the garbage collector runs).
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ValueError(f"{prefix}{path}: not a readable .npz file ({first_line(exc)})") from exc
    with handle:
        return _read_open_npz(handle, path, prefix, wanted, check)


def _read_open_npz(
    handle: BinaryIO,
    path: Path,
    prefix: str,
    wanted: list[str] | None,
    check: Callable[[list[str]], None] | None,
) -> dict[str, np.ndarray]:
    """:func:`read_npz` of the opened file ``handle``, its arrays read before it is closed."""
    try:
        archive = np.load(handle, allow_pickle=False)
    except MemoryError:  # out of memory is not a damaged file (check_npy_sizes refused impossible claims)
        raise
    except Exception as exc:  # OSError, ValueError, EOFError, BadZipFile, zlib.error, a tokenizer's error...
        raise ValueError(f"{prefix}{path}: not a readable .npz file ({first_line(exc)})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        holding = "" if not wanted else " holding " + ", ".join(repr(key) for key in wanted)
        raise ValueError(f"{prefix}{path}: expected an .npz archive{holding}, got a single array")
    with archive:
        found = list(archive.files)
        if check is not None:
            check(found)
        if wanted is None:
            wanted = found
        missing = [key for key in wanted if key not in found]
        if missing:
            raise ValueError(f"{prefix}{path}: missing key(s) {', '.join(missing)} (found {', '.join(found)})")
        arrays: dict[str, np.ndarray] = {}
        for key in wanted:
            try:
                arrays[key] = archive[key]
            except MemoryError:
                raise
            except Exception as exc:  # a damaged member (bad CRC, zlib.error, EOFError...) or an object array
                raise ValueError(f"{prefix}{path}: cannot read key {key!r} ({first_line(exc)})") from exc
    return arrays


# Modes Pillow converts to 8-bit RGB, and those whose array is already what read_png returns.
_TO_RGB = ("CMYK", "YCbCr", "LAB", "HSV")
_AS_IS = ("L", "RGB", "RGBA")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_uint8(image: PIL.Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in _AS_IS:
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode == "P":
        # Palette indices are not colours: look them up (keeping a transparent entry as alpha).
        return np.asarray(image.convert("RGBA" if "transparency" in image.info else "RGB"))
    if mode in ("PA", "LA"):
        return np.asarray(image.convert("RGBA"))
    if mode in _TO_RGB:
        return np.asarray(image.convert("RGB"))
    if mode in _SIXTEEN_BIT:
        # 16-bit grey (Pillow reads 16-bit PNG grey as "I;16", older versions as "I"): scale to 8 bits
        # with rounding, 65535 -> 255, rather than clipping everything above 255 to white.
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"{path}: image mode {mode!r} with values outside 0-65535 ({values.min()}..{values.max()}); "
                "save the frames as 8-bit or 16-bit images"
            )
        return ((values + 128) // 257).astype(np.uint8)
    raise ValueError(
        f"{path}: image mode {mode!r} is not supported; save the frames as 8-bit grey, RGB, RGBA or palette "
        "images, or as 16-bit grey"
    )


def require_pillow() -> None:
    """Raise an ImportError that names the extra to install when Pillow is missing (frames, GIFs, resizing)."""
    try:
        import PIL  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Reading and writing frame images (PNG, GIF) and resizing frames needs Pillow: "
            'pip install "latentdyn[video]"'
        ) from exc


def read_png(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file into a uint8 array (H, W), (H, W, 3) or (H, W, 4).

    Grey images (1-, 8- and 16-bit) give (H, W), 16-bit values scaled to 8 bits (``round(v / 257)``);
    colour images give (H, W, 3), palette images looked up, CMYK and similar converted to RGB; images with
    an alpha channel (RGBA, grey + alpha, palette with transparency) give (H, W, 4) RGBA.

    ``size`` (H, W), when given, is checked against the file's header before anything is decoded.

    Raises:
        ValueError: the file cannot be decoded (Pillow's decompression-bomb limit included), has an image mode
            not listed above, or is not of ``size`` (the file, and the mode or size, are named).
    """
    require_pillow()
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if size is not None and (image.height, image.width) != size:
                raise ValueError(
                    f"{path}: expected a {size[0]}x{size[1]} (H x W) frame, got {image.height}x{image.width}"
                )
            image.load()
            return _to_uint8(image, path)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from exc


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 array (H, W) or (H, W, 3) as a PNG file."""
    require_pillow()
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG")
