"""File-system helpers shared by the writers of latentdyn and its examples."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "first_line",
    "give_plain_mode",
    "is_temporary_of",
    "plain_file_mode",
    "sync_folder",
    "unsafe_global",
]


def plain_file_mode(path: str | os.PathLike[str]) -> int:
    """The permissions ``open(path, "w")`` would leave: the existing file's, else 0o666 less the umask.

    Atomic writers create a temporary file with ``tempfile.mkstemp``, which makes it 0o600 whatever the umask,
    and rename it over ``path``; they give it these permissions first (:func:`give_plain_mode`).
    """
    try:
        return Path(path).stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def give_plain_mode(fd: int, tmp_path: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Give the temporary file ``tmp_path`` (open as ``fd``) the :func:`plain_file_mode` of ``target``.

    ``os.fchmod`` where it exists; otherwise (Windows before Python 3.13) ``os.chmod`` on the path.
    """
    mode = plain_file_mode(target)
    fchmod = getattr(os, "fchmod", None)
    try:
        if fchmod is not None:
            fchmod(fd, mode)
        else:
            os.chmod(tmp_path, mode)
    except OSError:
        # A file system without Unix modes (vfat, some network shares) refuses the change; the file keeps the
        # mode it was made with there, which is the folder's to decide, and the write goes on.
        pass


_UNSAFE_GLOBAL = re.compile(r"(?:GLOBAL|Unsupported class) (\S+?)[.,]?(?:\s|$)")  # torch >= 2.3, torch 2.2


def unsafe_global(message: str) -> str | None:
    """The class or function that ``torch.load(weights_only=True)`` refused to load, named in its error
    ``message`` (whitespace folded); None when the refusal names none (random or damaged bytes)."""
    found = _UNSAFE_GLOBAL.search(message)
    return None if found is None else found.group(1)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none (for one-line errors that quote
    what a library raised)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _temporary_name_pattern(target: Path) -> re.Pattern[str]:
    # mkstemp's names: PREFIX, 8 characters of [a-z0-9_], SUFFIX
    kept = re.escape(target.suffix) if target.suffix else ""
    return re.compile(rf"{re.escape('.' + target.name)}\.[a-z0-9_]{{8}}\.tmp(?:{kept})?")


def is_temporary_of(entry: str | os.PathLike[str], target: str | os.PathLike[str]) -> bool:
    """Whether the file ``entry`` (a name or path) is a temporary file that :func:`atomic_write` or
    :func:`atomic_path` makes for ``target``: ``.NAME.XXXXXXXX.tmp``, or ``.NAME.XXXXXXXX.tmp.SUFFIX`` for the
    writers that need the target's extension. A process killed mid-write leaves one behind."""
    return _temporary_name_pattern(Path(target)).fullmatch(Path(entry).name) is not None


def sync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush ``folder``'s entries (a rename in it) to the disk. Best effort: where a folder cannot be opened or
    synced (Windows, some network file systems) the rename is as durable as the system makes it."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_error_behind(error: BaseException) -> OSError | None:
    """The ``OSError`` with an errno that ``error`` is or was raised while handling (its cause or context)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        current = current.__cause__ or current.__context__
    return None


def _naming_target(error: BaseException, target: Path, tmp: Path | None) -> OSError | None:
    """``error`` as an ``OSError`` naming ``target`` when it is (or hides) the file system's refusal to write the
    target (a full disk names no file, a refused temporary file names the temporary); None otherwise."""
    if not isinstance(error, Exception):
        return None  # (KeyboardInterrupt, SystemExit: as they are)
    found = _os_error_behind(error)
    if found is None or found.errno is None:
        return None
    ours = {None, str(target), *(() if tmp is None else (str(tmp),))}
    # (a temporary file the system refused to create is named by mkstemp's error before ``tmp`` is known)
    if found.filename is not None and str(found.filename) not in ours and not is_temporary_of(found.filename, target):
        return None  # another file's error (read by the writer, say): it names its own file
    return OSError(found.errno, found.strerror or os.strerror(found.errno), str(target))


@contextmanager
def _replacing(final: Path, suffix: str) -> Iterator[tuple[BinaryIO, Path]]:
    """A binary file open on a new temporary file next to ``final`` (``.NAME.XXXXXXXX.tmp`` + ``suffix``), and its
    path; when the block succeeds its data are synced, it is renamed over ``final`` and the folder is synced; when
    it fails it is removed. File-system errors name ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as handle:  # (first: the file object closes fd whatever fails next)
            give_plain_mode(handle.fileno(), tmp, final)
            yield handle, tmp
            handle.flush()
            os.fsync(handle.fileno())  # (the file's data, also what the block wrote through another descriptor)
        os.replace(tmp, final)
        tmp = None  # (renamed: nothing to remove whatever happens next)
        sync_folder(final.parent)
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        renamed = _naming_target(e, final, tmp)
        if renamed is not None:
            raise renamed from e
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` with a binary file opened on a new temporary file next to ``path``, then rename it over
    ``path``; returns ``path``.

    The temporary file has an unpredictable name (``.NAME.XXXXXXXX.tmp``, see :func:`is_temporary_of`) and is
    created exclusively, so a planted file or symbolic link is never written through; it gets the permissions a
    plain ``open(path, "w")`` would leave (:func:`give_plain_mode`). Its data are synced before the rename and the
    folder after it, so that after a power cut ``path`` holds either its old or its new content, and still holds
    it. If anything fails the temporary file is removed and ``path`` is left as it was. Missing parent folders
    are created.

    Raises:
        OSError: the file system refused (e.g. a full disk), naming ``path``, also when ``write`` reported it as
            another exception (``torch.save`` raises ``RuntimeError`` from its zip writer when a write fails).
            Other exceptions of ``write`` propagate as they are.
    """
    final = Path(path)
    with _replacing(final, "") as (handle, _):
        write(handle)
    return final


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` as :func:`atomic_write` does; returns ``path``.

    Raises:
        OSError: the file system refused (e.g. a full disk), naming ``path``.
    """
    return atomic_write(path, lambda handle: handle.write(data))


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield the path of a new empty temporary file next to ``target`` that ends with ``target``'s extension (for
    writers that pick a format from it, or write by name only); when the block succeeds it replaces ``target``
    as in :func:`atomic_write`, and when it fails it is removed and ``target`` is left as it was.

    Raises:
        OSError: the file system refused (a full disk, a read-only folder), naming ``target``.
    """
    final = Path(target)
    with _replacing(final, final.suffix) as (_, tmp):
        yield tmp
