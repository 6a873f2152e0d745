"""File-system helpers shared by the writers of latentdyn and its examples."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["give_plain_mode", "plain_file_mode", "unsafe_global"]


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
    if fchmod is not None:
        fchmod(fd, mode)
    else:
        os.chmod(tmp_path, mode)


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
