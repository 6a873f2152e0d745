"""MNIST sources: the IDX reader, torchvision's layout, the opt-in download and the embedded digits."""

from __future__ import annotations

import gzip
import hashlib
import socket
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from latentdyn.video import mnist
from latentdyn.video.mnist import (
    MNIST_MD5,
    digit_source,
    download_mnist,
    load_embedded_digits,
    load_mnist,
    mnist_raw_dir,
    read_idx,
)


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file written from the format's definition (independent of the reader)."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    raw = mnist_raw_dir(root)
    raw.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(array, 0x08)
        if gz:
            (raw / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (raw / name).write_bytes(data)


def random_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


# -------------------------------------------------------------------------------------------------- read_idx
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("dtype", "code"), [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C), (np.float64, 0x0E)]
)
def test_read_idx_round_trip(tmp_path: Path, gz: bool, dtype: type, code: int) -> None:
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    data = idx_bytes(array, code)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"  # no .gz suffix, gzipped content
    path.write_bytes(gzip.compress(idx_bytes(np.array([3, 1, 4], np.uint8), 0x08)))
    np.testing.assert_array_equal(read_idx(path), [3, 1, 4])


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x00\x00", "shorter than the 4-byte magic"),
        (b"\x01\x00\x08\x01" + GOOD[4:], "two zero bytes"),
        (b"\x00\x00\x07\x03" + GOOD[4:], "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (GOOD[:10], "truncated IDX header"),
        (GOOD[:-1], "IDX data truncated.*need 24 bytes, got 23"),
        (GOOD + b"\x00", "trailing bytes"),
        (b"\x1f\x8b" + b"not really gzip", "corrupt or truncated gzip"),
        (gzip.compress(GOOD)[:-12], "corrupt or truncated gzip"),
        (gzip.compress(GOOD)[:-8], "corrupt or truncated gzip"),  # data complete, checksum trailer missing
        (gzip.compress(GOOD)[:-8] + b"\0" * 8, "corrupt or truncated gzip.*CRC check failed"),
        (gzip.compress(GOOD + b"\0"), r"IDX data has trailing bytes: .* need 24 bytes, got more"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def gzip_of(header: bytes, zero_bytes: int) -> bytes:
    """Gzip of an IDX header followed by ``zero_bytes`` zeros, compressed a megabyte at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    parts = [compressor.compress(header)]
    block = bytes(1 << 20)
    for start in range(0, zero_bytes, len(block)):
        parts.append(compressor.compress(block[: min(len(block), zero_bytes - start)]))
    return b"".join([*parts, compressor.flush()])


def test_read_idx_decompresses_only_what_the_header_declares(tmp_path: Path) -> None:
    """A gzip bomb: a header declaring 12 bytes followed by 32 MB of zeros (in 32 KB of gzip).

    Before, the whole stream was decompressed in memory (32 MB here, gigabytes for a real bomb) before the
    header was looked at; now only the declared bytes are, then one more shows the file is too long."""
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(gzip_of(idx_bytes(np.zeros((3, 2, 2), np.uint8), 0x08)[:16], 32 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bomb-idx3-ubyte.gz: IDX data has trailing bytes: .* need 12 bytes"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


@pytest.mark.parametrize("which", ["images", "labels"])
def test_load_mnist_refuses_absurd_counts_from_the_header(tmp_path: Path, which: str) -> None:
    """A header declaring 4,000,000 digits (3 GB, the report's 3 MB gzip bomb) is refused before any data is read.

    Here the data stops after 1 MB: before, this was reported as truncated only after decompressing it all."""
    images, labels = random_digits(3)
    write_split(tmp_path, "test", images, labels, gz=True)
    name = "t10k-images-idx3-ubyte.gz" if which == "images" else "t10k-labels-idx1-ubyte.gz"
    shape = (4_000_000, 28, 28) if which == "images" else (4_000_000,)
    header = bytes([0, 0, 0x08, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape)
    (mnist_raw_dir(tmp_path) / name).write_bytes(gzip_of(header, 1 << 20))
    pattern = rf"{name}: the IDX header declares 4000000 items, more than the 100000 accepted \(MNIST's splits"
    with pytest.raises(ValueError, match=pattern):
        load_mnist(tmp_path, "test")


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# ------------------------------------------------------------------------------------------------ load_mnist
def test_load_mnist_reads_both_splits_plain_or_gzipped(tmp_path: Path) -> None:
    train = random_digits(12, seed=1)
    test = random_digits(7, seed=2)
    write_split(tmp_path, "train", *train, gz=True)
    write_split(tmp_path, "test", *test, gz=False)
    for split, (images, labels) in (("train", train), ("test", test)):
        got = load_mnist(tmp_path, split)
        assert got.images.dtype == np.uint8 and got.images.shape == images.shape
        np.testing.assert_array_equal(got.images, images)
        np.testing.assert_array_equal(got.labels, labels)
    np.testing.assert_array_equal(digit_source(tmp_path, "test").images, test[0])
    np.testing.assert_array_equal(digit_source(str(tmp_path), "train").labels, train[1])


def test_load_mnist_needs_only_the_requested_split(tmp_path: Path) -> None:
    write_split(tmp_path, "test", *random_digits(3), gz=True)
    assert load_mnist(tmp_path, "test").images.shape == (3, 28, 28)
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\[\.gz\].*train-labels") as info:
        load_mnist(tmp_path, "train")
    assert str(mnist_raw_dir(tmp_path)) in str(info.value)


def test_load_mnist_missing_directory_lists_files_and_place(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"put t10k-images-idx3-ubyte\[\.gz\], t10k-labels.* in .*MNIST/raw"):
        load_mnist(tmp_path / "empty", "test")


def test_load_mnist_checks_contents(tmp_path: Path) -> None:
    raw = mnist_raw_dir(tmp_path)
    raw.mkdir(parents=True)
    images, labels = random_digits(4)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels, 0x08))
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images[:, :, :27], 0x08))
    with pytest.raises(ValueError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        load_mnist(tmp_path, "test")
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images[:3], 0x08))
    with pytest.raises(ValueError, match="4 labels for 3 images"):
        load_mnist(tmp_path, "test")
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images, 0x08))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([1, 2, 3, 10], np.uint8), 0x08))
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9"):
        load_mnist(tmp_path, "test")
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels.astype(np.int32), 0x0C))
    with pytest.raises(ValueError, match=r"expected uint8 labels of shape \(N,\), got int32"):
        load_mnist(tmp_path, "test")


def test_load_mnist_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split: expected one of 'train', 'test', got 'val'"):
        load_mnist(tmp_path, "val")
    with pytest.raises(ValueError, match="split: expected one of"):
        load_embedded_digits("validation")


# ---------------------------------------------------------------------------------------------- download
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_fails_offline_with_instructions(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"could not download t10k-images-idx3-ubyte\.gz") as info:
        download_mnist(tmp_path, splits=("test",), mirrors=(closed_port_url(),), timeout=5)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte[.gz]" in message and str(mnist_raw_dir(tmp_path)) in message
    assert not any(mnist_raw_dir(tmp_path).iterdir()), "no partial file may be left behind"


def fake_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, np.ndarray]:
    """A file:// mirror with small gzipped IDX files, and the checksums patched to theirs."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    images, labels = random_digits(5, seed=3)
    for name, array in (("t10k-images-idx3-ubyte.gz", images), ("t10k-labels-idx1-ubyte.gz", labels)):
        content = gzip.compress(idx_bytes(array, 0x08))
        (mirror / name).write_bytes(content)
        monkeypatch.setitem(MNIST_MD5, name, hashlib.md5(content).hexdigest())
    return mirror.as_uri() + "/", images


def test_download_tries_mirrors_in_turn_and_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, images = fake_mirror(tmp_path, monkeypatch)
    raw = download_mnist(tmp_path / "root", splits=("test",), mirrors=(closed_port_url(), url), timeout=5)
    assert raw == mnist_raw_dir(tmp_path / "root")
    assert sorted(p.name for p in raw.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    np.testing.assert_array_equal(load_mnist(tmp_path / "root", "test").images, images)
    # Files already there with the right checksum are kept without any network access.
    download_mnist(tmp_path / "root", splits=("test",), mirrors=(closed_port_url(),), timeout=5)


def test_download_without_os_fchmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has os.fchmod only from Python 3.13: the permissions are then set through the path."""
    import os
    import stat

    url, images = fake_mirror(tmp_path, monkeypatch)
    monkeypatch.delattr(os, "fchmod")
    previous = os.umask(0o022)
    try:
        raw = download_mnist(tmp_path / "root", splits=("test",), mirrors=(url,), timeout=5)
    finally:
        os.umask(previous)
    assert sorted(p.name for p in raw.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in raw.iterdir())
    np.testing.assert_array_equal(load_mnist(tmp_path / "root", "test").images, images)


def test_download_rejects_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = fake_mirror(tmp_path, monkeypatch)
    monkeypatch.setitem(MNIST_MD5, "t10k-images-idx3-ubyte.gz", "0" * 32)
    with pytest.raises(RuntimeError, match="MD5 checksum mismatch"):
        download_mnist(tmp_path / "root", splits=("test",), mirrors=(url,))
    assert not (mnist_raw_dir(tmp_path / "root") / "t10k-images-idx3-ubyte.gz").exists()


def test_download_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="splits: expected one of"):
        download_mnist(tmp_path, splits=("valid",))
    with pytest.raises(ValueError, match="mirrors: expected at least one base URL"):
        download_mnist(tmp_path, mirrors=())


def test_published_checksums_are_well_formed() -> None:
    assert set(MNIST_MD5) == {n + ".gz" for pair in mnist.MNIST_FILES.values() for n in pair}
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in MNIST_MD5.values())


# ------------------------------------------------------------------------------------------------ embedded
def test_embedded_digits_shapes_and_classes() -> None:
    train, test = load_embedded_digits("train"), load_embedded_digits("test")
    assert train.images.shape == (4000, 28, 28) and test.images.shape == (1000, 28, 28)
    for part in (train, test):
        assert part.images.dtype == np.uint8 and part.labels.dtype == np.uint8
        assert part.labels.shape == (len(part.images),)
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(test.labels).tolist() == [100] * 10
    # Disjoint splits of distinct real digits (white strokes on black).
    flat = np.concatenate([train.images, test.images]).reshape(5000, -1)
    assert len(np.unique(flat, axis=0)) == 5000
    assert flat.max() == 255 and np.median(flat) == 0
    np.testing.assert_array_equal(digit_source("embedded", "test").images, test.images)


def test_embedded_digits_are_upright() -> None:
    # A "1" is a vertical stroke: its ink spreads over many more rows than columns. Transposed images (the
    # usual mistake with flattened MNIST) would swap the two.
    digits = load_embedded_digits("train")
    ones = digits.images[digits.labels == 1].astype(np.float64)
    ink = ones.mean(axis=0)
    rows, cols = ink.sum(axis=1), ink.sum(axis=0)
    grid = np.arange(28)

    def spread(weights: np.ndarray) -> float:
        mean = (weights * grid).sum() / weights.sum()
        return float(np.sqrt((weights * (grid - mean) ** 2).sum() / weights.sum()))

    assert spread(rows) > 2 * spread(cols)

    # Not upside down: the row with the most ink is the bar of a "7" (top half) and the loop of a "6"
    # (bottom half).
    def densest_row(label: int) -> int:
        return int(digits.images[digits.labels == label].astype(np.float64).sum(axis=(0, 2)).argmax())

    assert densest_row(7) < 12 and densest_row(6) > 16
