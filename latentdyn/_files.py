"""File-system helpers shared by the writers of latentdyn and its examples."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["give_plain_mode", "plain_file_mode"]


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
