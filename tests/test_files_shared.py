"""The shared file helpers: one ``.npz`` reader (latentdyn.video.datasets._common.read_npz) behind every public
reader of ``.npz`` files, and one atomic writer (latentdyn._files) behind every public writer of files."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from latentdyn._files import atomic_path, atomic_write, is_temporary_of
from latentdyn.video.datasets._common import atomic_directory, read_npz

# ------------------------------------------------------------------------------------------------ .npz readers


def _kth(folder: Path) -> tuple[Path, Callable[[], object]]:
    from latentdyn.video.datasets import KTHTestDataset

    rng = np.random.default_rng(0)
    path = folder / "svg_test_set_3.npz"
    np.savez_compressed(
        path,
        sequences=rng.integers(0, 4, (2, 3, 8, 8), dtype=np.uint8),
        persons=np.array([21, 22]),
        actions=np.array(["boxing", "running"]),
    )
    return path, lambda: KTHTestDataset(folder, seq_len=3)


def _human36m(folder: Path) -> tuple[Path, Callable[[], object]]:
    from latentdyn.video.datasets import Human36MTestDataset

    rng = np.random.default_rng(1)
    (folder / "test_set_3_1").mkdir()
    path = folder / "test_set_3_1" / "test_0.npz"
    np.savez_compressed(
        path,
        image=rng.integers(0, 4, (3, 8, 8, 3), dtype=np.uint8),
        filename=np.array("Walking.54138969"),
        subject=np.array(9),
    )
    return path, lambda: Human36MTestDataset(folder, seq_len=3, subsampling=1)[0]


def _moving_mnist(folder: Path) -> tuple[Path, Callable[[], object]]:
    from latentdyn.video.moving_mnist import load_test_set

    rng = np.random.default_rng(2)
    path = folder / "test.npz"
    np.savez_compressed(
        path,
        sequences=rng.integers(0, 4, (2, 2, 8, 8), dtype=np.uint8),
        latents=rng.integers(0, 4, (2, 2, 1, 4)),
        labels=np.array([[3], [7]]),
        digits=rng.integers(0, 4, (2, 1, 4, 4), dtype=np.uint8),
    )
    return path, lambda: load_test_set(path)


def _clip_array(folder: Path) -> tuple[Path, Callable[[], object]]:
    from examples.srvp.datasets import read_clip_array

    rng = np.random.default_rng(3)
    path = folder / "clips.npz"
    np.savez_compressed(path, sequences=rng.integers(0, 4, (3, 2, 8, 8), dtype=np.uint8))
    return path, lambda: read_clip_array(path, "--test-set")


READERS = {"kth": _kth, "human36m": _human36m, "moving_mnist": _moving_mnist, "clip_array": _clip_array}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_bit_flipped_compressed_npz_files_are_refused_naming_the_file(tmp_path: Path, reader: str) -> None:
    """Single bits flipped all over a compressed .npz (zip headers, deflated data, the .npy headers inside):
    every public reader answers with a one-line ValueError naming the file, or reads the file (a flip in a part
    nobody checks).

    Before, the KTH and Human3.6M readers let zlib.error and tokenize.TokenError (and others) escape."""
    path, read = READERS[reader](tmp_path)
    good = path.read_bytes()
    causes: set[type[BaseException]] = set()
    for bit in range(5, 8 * len(good), 23):  # (23 bits apart: every bit of a byte, all over the file)
        damaged = bytearray(good)
        damaged[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(damaged))
        try:
            read()
        except ValueError as exc:
            message = str(exc)
            assert str(path) in message and "\n" not in message, (bit, message)
            if exc.__cause__ is not None:
                causes.add(type(exc.__cause__))
        except Exception as exc:  # pragma: no cover - what the test is for
            pytest.fail(f"bit {bit}: {type(exc).__module__}.{type(exc).__name__} escaped: {exc}")
    assert zlib.error in causes and zipfile.BadZipFile in causes, causes  # (deflated data and zip damage were hit)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_an_empty_npz_file_is_said_to_be_empty(tmp_path: Path, reader: str) -> None:
    """Before, only load_test_set said so; the others said that a 0-byte file was not a zip file."""
    path, read = READERS[reader](tmp_path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty file \(0 bytes\)") as info:
        read()
    assert str(path) in str(info.value)


@pytest.mark.parametrize("where", ["np.load", "member"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_memory_error_is_not_called_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str, where: str
) -> None:
    """Out of memory for a genuine array is not a damaged file: MemoryError propagates from every reader."""
    _, read = READERS[reader](tmp_path)

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    if where == "np.load":
        monkeypatch.setattr(np, "load", out_of_memory)
    else:
        monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", out_of_memory)
    with pytest.raises(MemoryError):
        read()


def test_read_npz_reads_and_checks_only_the_keys_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w") as archive:  # 'huge' claims 4 PiB over a few bytes
        header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.uint8))
        header["shape"] = (1 << 20, 1 << 20, 64, 64)
        member = archive.open("huge.npy", "w")
        np.lib.format.write_array_header_1_0(member, header)
        member.close()
        with archive.open("x.npy", "w") as member:
            np.lib.format.write_array(member, np.arange(3))
    np.testing.assert_array_equal(read_npz(path, ["x"])["x"], np.arange(3))
    with pytest.raises(ValueError, match=r"a\.npz: key 'huge': truncated or corrupted"):
        read_npz(path)
    with pytest.raises(ValueError, match=r"^--x: .*a\.npz: missing key\(s\) y \(found huge, x\)$"):
        read_npz(path, ["x", "y"], option="--x")

    def refuse(found: list[str]) -> None:
        raise ValueError(f"mine: {found}")

    with pytest.raises(ValueError, match=r"^mine: \['huge', 'x'\]$"):
        read_npz(path, ["x"], check=refuse)
    np.save(tmp_path / "single.npy", np.zeros(2))
    with pytest.raises(ValueError, match=r"single\.npy: expected an \.npz archive holding 'x', got a single array"):
        read_npz(tmp_path / "single.npy", ["x"])


def test_read_npz_closes_the_file_of_an_unreadable_archive(tmp_path: Path) -> None:
    """np.load given a path leaves the file open when the zip is unreadable (a ResourceWarning, a handle held until
    the garbage collector runs): the reader opens and closes it itself, whether the archive reads or not."""
    import gc
    import warnings

    good = tmp_path / "good.npz"
    np.savez(good, x=np.arange(1000))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=r"truncated\.npz: not a readable \.npz file"):
            read_npz(truncated)
        with pytest.raises(ValueError, match=r"single\.npy: expected an \.npz archive"):
            read_npz(single)
        np.testing.assert_array_equal(read_npz(good)["x"], np.arange(1000))
        with pytest.raises(ValueError, match=r"missing\.npz: not a readable \.npz file \(.*No such file"):
            read_npz(tmp_path / "missing.npz")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


# ------------------------------------------------------------------------------------------------ atomic writers


def test_atomic_directory_keeps_the_old_folder_when_the_new_one_cannot_be_renamed_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the old folder was deleted before the rename: a rename that then failed lost it."""
    final = tmp_path / "video"
    final.mkdir()
    (final / "image-001.png").write_bytes(b"old")
    real_replace = os.replace

    def refuse_the_new_one(src: Any, dst: Any) -> None:
        if ".partial-" in Path(src).name:
            raise PermissionError(errno.EACCES, "Permission denied", str(src), None, str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_the_new_one)
    with pytest.raises(PermissionError), atomic_directory(final, overwrite=True) as tmp:
        (tmp / "image-001.png").write_bytes(b"new")
    assert (final / "image-001.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video"]  # nothing set aside or half made is left
    monkeypatch.setattr(os, "replace", real_replace)
    with atomic_directory(final, overwrite=True) as tmp:
        (tmp / "image-001.png").write_bytes(b"new")
    assert (final / "image-001.png").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video"]


def _frames() -> np.ndarray:
    return np.zeros((2, 8, 8, 3), np.uint8)


def _save_test_set(path: Path) -> None:
    from latentdyn.video.moving_mnist import MovingMNISTTestData, save_test_set

    data = MovingMNISTTestData(
        sequences=np.zeros((2, 1, 8, 8), np.uint8),
        latents=np.zeros((2, 1, 1, 4), np.int64),
        labels=np.zeros((1, 1), np.int64),
        digits=np.zeros((1, 1, 4, 4), np.uint8),
    )
    save_test_set(path, data, overwrite=True)


def _atomic_path(path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"new")


def _write_video(path: Path) -> None:
    from latentdyn.video.datasets import write_video

    write_video(path, _frames(), fps=5)


def _write_tfrecord(path: Path) -> None:
    from latentdyn.video.datasets import write_tfrecord

    write_tfrecord(path, [b"a record"])


def _save_gif(path: Path) -> None:
    from latentdyn.video.media import save_gif

    save_gif(path, _frames())


def _save_image_grid(path: Path) -> None:
    from latentdyn.video.media import save_image_grid

    save_image_grid(path, torch.zeros(1, 1, 4, 4))


def _atomic_write_text(path: Path) -> None:
    from examples.srvp.checkpoint import atomic_write_text

    atomic_write_text(path, "new")


def _write_json(path: Path) -> None:
    from benchmarks._common import write_json

    write_json(str(path), {"new": 1})


WRITERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "atomic_write": ("out.bin", lambda p: atomic_write(p, lambda f: f.write(b"new"))),
    "atomic_path": ("out.bin", _atomic_path),
    "checkpoint.atomic_write_text": ("config.json", _atomic_write_text),
    "media.save_gif": ("clip.gif", _save_gif),
    "media.save_image_grid": ("grid.png", _save_image_grid),
    "moving_mnist.save_test_set": ("test.npz", _save_test_set),
    "datasets.write_tfrecord": ("a.tfrecord", _write_tfrecord),
    "datasets.write_video": ("clip.gif", _write_video),
    "benchmarks.write_json": ("b.json", _write_json),
}


def _failing_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync

    def full(fd: int) -> None:  # a full disk, found when the data are flushed: no file name
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)


def _failing_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(src: Any, dst: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", refused)


def _refused_create(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def refused(*args: Any, **kwargs: Any) -> tuple[int, str]:  # a read-only folder: mkstemp names its temporary
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        os.unlink(name)
        raise PermissionError(errno.EACCES, "Permission denied", name)

    monkeypatch.setattr(tempfile, "mkstemp", refused)


def _refused_chmod(monkeypatch: pytest.MonkeyPatch) -> None:  # (not a failure: the write goes on, see below)
    def refused(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refused, raising=False)
    monkeypatch.setattr(os, "chmod", refused)


FAILURES = {"fsync": _failing_fsync, "replace": _failing_replace, "create": _refused_create}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str, failure: str
) -> None:
    """Every public writer goes through the shared atomic writer: the data are synced before the rename (a
    full disk found then fails the write), a failure removes the temporary file and leaves the old file, and the
    error names the file asked for. Before, the dataset writers, save_test_set and the benchmarks' JSON never
    synced (and the benchmarks wrote in place)."""
    name, write = WRITERS[writer]
    target = tmp_path / "out" / name
    target.parent.mkdir()
    target.write_bytes(b"old")
    FAILURES[failure](monkeypatch)
    with pytest.raises(OSError) as info:
        write(target)
    assert info.value.filename == str(target), info.value
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == [name]


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failed_mnist_download_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    from latentdyn.video.mnist import MNIST_MD5, download_mnist, mnist_raw_dir

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    names = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    for name in names:
        (mirror / name).write_bytes(name.encode())
        monkeypatch.setitem(MNIST_MD5, name, hashlib.md5(name.encode()).hexdigest())
    raw = mnist_raw_dir(tmp_path / "root")
    raw.mkdir(parents=True)
    for name in names:
        (raw / name).write_bytes(b"old")  # (a wrong checksum: downloaded again)
    FAILURES[failure](monkeypatch)
    with pytest.raises(RuntimeError, match="could not download") as info:
        download_mnist(tmp_path / "root", splits=("test",), mirrors=(mirror.as_uri() + "/",))
    assert str(raw / names[0]) in str(info.value)
    assert sorted(p.name for p in raw.iterdir()) == sorted(names)
    assert all((raw / name).read_bytes() == b"old" for name in names)


def test_an_error_of_another_file_keeps_its_name(tmp_path: Path) -> None:
    """Only the file system's refusal to write the target is renamed to the target: an error the writing code
    met on another file (a missing input, say) still names that file."""
    missing = tmp_path / "input.txt"
    with pytest.raises(FileNotFoundError) as info:
        atomic_write(tmp_path / "out.txt", lambda f: f.write(missing.read_bytes()))
    assert info.value.filename == str(missing)
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_extension_syncs_and_gets_plain_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "clip.mp4"
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    previous = os.umask(0o022)
    try:
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".clip.mp4.")
            assert is_temporary_of(tmp, target)
            tmp.write_bytes(b"new")
    finally:
        os.umask(previous)
    assert synced == ["file", "folder"]
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


@pytest.mark.parametrize("kind", ["atomic_write", "atomic_path"])
def test_remove_stale_temporaries_knows_the_shared_writers_temporaries(tmp_path: Path, kind: str) -> None:
    """A process killed mid-write leaves the shared writer's temporary file; the training run's clean-up (holding
    the run's lock) recognises it by name."""
    from examples.srvp.checkpoint import remove_stale_temporaries

    target = tmp_path / "last.pt"
    seen: list[str] = []
    if kind == "atomic_write":
        atomic_write(target, lambda f: seen.extend(p.name for p in tmp_path.iterdir()))
    else:
        with atomic_path(target) as tmp:
            seen.append(tmp.name)
    (stale,) = seen
    (tmp_path / stale).write_bytes(b"left by a killed process")
    (tmp_path / ".last.pt.user-copy.tmp").write_bytes(b"not ours")
    assert remove_stale_temporaries(target) == [tmp_path / stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".last.pt.user-copy.tmp", "last.pt"]


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_file_system_that_refuses_modes_still_gets_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    """vfat and some network shares refuse chmod: the plain mode is best effort there (the write failed)."""
    name, write = WRITERS[writer]
    target = tmp_path / "out" / name
    target.parent.mkdir()
    _refused_chmod(monkeypatch)
    write(target)
    assert target.is_file() and target.stat().st_size > 0
    assert [p.name for p in target.parent.iterdir()] == [name]
