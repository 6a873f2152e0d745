"""Helpers shared by the dataset modules: atomic outputs, PNG frames, splits and random draws.

Nothing here is public API; the dataset modules re-export what users need.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import PIL.Image

__all__ = [
    "VAL_FRACTION_SEED",
    "ConversionReport",
    "atomic_directory",
    "atomic_file",
    "draw_int",
    "is_hidden",
    "load_npz",
    "numeric_sort_key",
    "read_png",
    "require_dir",
    "split_items",
    "write_png",
]

T = TypeVar("T")

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


def _partial_name(final: Path) -> Path:
    # Same directory (so the rename is atomic), hidden (so loaders skip leftovers of a killed run), same
    # suffix (so writers that pick a format from the extension still work).
    return final.with_name(f".{final.stem}.partial-{uuid.uuid4().hex[:8]}{final.suffix}")


@contextmanager
def atomic_directory(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that is renamed to ``final`` only if the block succeeds.

    On any exception the temporary directory is removed, so no partial output is ever visible at
    ``final``.

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
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling path that replaces ``final`` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
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


def draw_int(rng: np.random.Generator | None, high: int) -> int:
    """Uniform integer in ``[0, high)`` from ``rng``, or from numpy's global generator when ``rng`` is None.

    The global generator is what the official loaders use; PyTorch's ``DataLoader`` reseeds it in every
    worker, so each worker draws different clips.
    """
    if rng is None:
        return int(np.random.randint(high))
    return int(rng.integers(high))


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles); ``ValueError`` naming the file if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as exc:
        # A file that is not an .npz archive makes np.load try (and refuse) pickle, return a bare array
        # (no context manager) or fail to parse a header.
        raise ValueError(f"{path}: cannot read .npz file ({exc})") from exc


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


def read_png(path: Path) -> np.ndarray:
    """Decode an image file into a uint8 array (H, W), (H, W, 3) or (H, W, 4).

    Grey images (1-, 8- and 16-bit) give (H, W), 16-bit values scaled to 8 bits (``round(v / 257)``);
    colour images give (H, W, 3), palette images looked up, CMYK and similar converted to RGB; images with
    an alpha channel (RGBA, grey + alpha, palette with transparency) give (H, W, 4) RGBA.

    Raises:
        ValueError: the file cannot be decoded, or has an image mode not listed above (the file and mode
            are named).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return _to_uint8(image, path)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from exc


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 array (H, W) or (H, W, 3) as a PNG file."""
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG")
