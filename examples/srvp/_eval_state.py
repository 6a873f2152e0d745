"""An evaluation's saved progress: what :func:`examples.srvp.evaluate.evaluate` keeps in its ``state_file`` to
continue after Ctrl-C, SIGTERM or an error, the fingerprint that must match to continue, and the official sample
arrays kept on disk while the evaluation runs.

Part of :mod:`examples.srvp.evaluate`, which re-exports the public names.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import math
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from examples.srvp.checkpoint import (
    os_error_message,
    read_torch_file,
    save_checkpoint,
)

if TYPE_CHECKING:
    from examples.srvp.evaluate import EvalProtocol


STATE_FORMAT = 1
"""Version of the files :func:`~examples.srvp.evaluate.evaluate` saves its progress to (``state_file``)."""


@dataclass(frozen=True)
class _Accumulated:
    """What an evaluation holds after its first ``done`` sequences: one record per batch, the random state to
    draw the next batch's samples from, and the seconds spent computing (over all sessions)."""

    done: int
    seconds: float
    rng: dict[str, torch.Tensor]
    batches: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class SavedProgress:
    """Where an evaluation that did not finish left its progress: ``done`` of ``total`` sequences, in ``path``.

    An exception that ends :func:`~examples.srvp.evaluate.evaluate` with a ``state_file`` (Ctrl-C included) carries
    one as its ``saved_progress`` attribute once something was saved."""

    done: int
    total: int
    path: Path


def _attach_progress(exc: BaseException, progress: SavedProgress) -> None:
    """Give ``exc`` its ``saved_progress`` and, where Python has notes (3.11+), a note that its traceback shows:
    what was kept and that the same call continues from it."""
    exc.saved_progress = progress  # type: ignore[attr-defined]
    add_note = getattr(exc, "add_note", None)
    if callable(add_note):
        add_note(
            f"evaluate: the results of {progress.done} of {progress.total} sequences are saved in {progress.path}; "
            "the same call again continues from them"
        )


class StateMismatchError(ValueError):
    """A ``state_file`` holds the progress of an evaluation made with other settings, model or test clips.

    ``differences`` lists ``(what, saved, now)`` for each setting that differs (``saved`` and ``now`` are
    ``None`` for a content digest, e.g. ``("test clips", None, None)``)."""

    def __init__(self, path: Path, differences: list[tuple[str, Any, Any]]) -> None:
        self.path = path
        self.differences = differences
        said = ", ".join(_difference(*d) for d in differences)
        super().__init__(
            f"state_file: {path} holds the progress of another evaluation ({said}); delete it to start over"
        )


def _difference(what: str, saved: Any, now: Any) -> str:
    if saved is None and now is None:
        return f"other {what}"
    return f"{what}: {saved!r} saved, {now!r} now"


def _digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """A digest of named tensors' names, dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _fingerprint(
    model: nn.Module,
    clips: torch.Tensor,
    protocol: EvalProtocol,
    lpips: nn.Module | None,
    **options: Any,
) -> dict[str, Any]:
    """What must not change for an evaluation to continue from saved progress: the protocol, the options that
    shape the results (``sample_chunk``, ``device`` type, ``amp``, ``n_gif``, ``fvd``, ``fvd_samples``,
    ``official_files``, ``noise``, the digest of non-default ``indices``), the model's configuration and digests of
    its weights, the test clips and the LPIPS weights. The sample chunk is part of it although the draws do not
    depend on it: a GPU may pick other kernels for other batch sizes, and rounding could change which sample is
    best."""
    config = getattr(model, "config", None)
    return {
        "format": STATE_FORMAT,
        **asdict(protocol),
        **options,
        "model configuration": asdict(config) if dataclasses.is_dataclass(config) else None,  # type: ignore[arg-type]
        "model weights": _digest(model.state_dict().items()),
        "test clips": _digest([("clips", clips)]),
        "LPIPS": _digest(lpips.state_dict().items()) if lpips is not None else None,
    }


def _save_progress(
    path: Path,
    fingerprint: dict[str, Any],
    acc: _Accumulated,
    resumed_at: list[int],
    official: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Save the progress; ``official``: the layout of the official sample arrays (:class:`_OfficialArrays`), which
    are kept in :func:`official_work_dir`, not in the file."""
    payload = {
        "fingerprint": fingerprint,
        "done": acc.done,
        "seconds": acc.seconds,
        "rng": acc.rng,
        "batches": list(acc.batches),
        "resumed_at": resumed_at,
    }
    if official is not None:
        payload["official"] = official
    save_checkpoint(path, payload)


_EARLIER_VALUES = {"noise": "batch", "fvd_samples": 1}
"""Fingerprint entries of progress saved before they were recorded, as such progress had them: drawn as
``noise="batch"`` before the noise modes existed, scored by FVD on the first sample alone before ``fvd_samples``."""
_NOT_RECORDED = ("sample_chunk", "model configuration")
"""Fingerprint entries that progress saved by earlier versions may lack; such progress continues. The sample chunk
does not change the draws, but on a GPU another chunk may run other kernels, whose rounding can change which sample
is best: results continued under another chunk are valid but may differ slightly from an uninterrupted evaluation's
(refusing would discard the saved work). The model's configuration: its weights' digest is there. A configuration
saved before a field existed is read with that field's default, which new fields must keep as the earlier behaviour
(as ``checkpoint.check_fits`` assumes for runs)."""


def _config_defaults(model: nn.Module) -> dict[str, Any]:
    """The default of each field of the model's configuration (a dataclass), for a saved configuration written
    before the field existed: it held the default then."""
    config = getattr(model, "config", None)
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return {}
    try:  # as checkpoint.check_fits reads a checkpoint's configuration
        return asdict(type(config)())
    except TypeError:  # (a configuration with a field that has no default)
        return {}


def _load_progress(
    path: Path, fingerprint: dict[str, Any], config_defaults: dict[str, Any] | None = None
) -> tuple[_Accumulated, list[int], dict[str, dict[str, Any]] | None]:
    """The progress saved in ``path``, checked against this evaluation's fingerprint, where it resumed before, and
    the layout of its official sample arrays (None when it has none, or holds them in its batches, as files saved
    before the arrays were kept apart did). ``config_defaults``: the defaults of the model configuration's fields,
    which a configuration saved before a field existed held.

    Raises:
        StateMismatchError: the file belongs to another evaluation.
        ValueError: the file is not a complete torch file of this format.
    """
    state = read_torch_file(path, "state_file")
    saved = state.get("fingerprint") if isinstance(state, dict) else None
    if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT:
        raise ValueError(f"state_file: {path} is not the progress of an evaluation (format {STATE_FORMAT})")
    digests = ("model configuration", "model weights", "test clips", "LPIPS", "sequence indices")
    differences = []
    for key, now in fingerprint.items():
        if key in _NOT_RECORDED and key not in saved:
            continue  # (saved by a version that did not record it)
        then = saved.get(key, _EARLIER_VALUES.get(key))
        if key == "model configuration" and isinstance(then, dict) and isinstance(now, dict):
            then = {**(config_defaults or {}), **then}
        if then == now:
            continue
        if key in digests:  # a digest says only "other" (or, for LPIPS, whether it was computed)
            on, off = ("given", "0 … N−1") if key == "sequence indices" else ("on", "off")
            then, now = (None, None) if then and now else (on if then else off, on if now else off)
        differences.append((key, then, now))
    if differences:
        raise StateMismatchError(path, differences)
    acc = _Accumulated(
        done=int(state["done"]), seconds=float(state["seconds"]), rng=state["rng"], batches=tuple(state["batches"])
    )
    official = state.get("official")
    if official is not None and not (
        isinstance(official, dict)
        and all(
            isinstance(spec, dict) and isinstance(spec.get("shape"), list) and isinstance(spec.get("dtype"), str)
            for spec in official.values()
        )
    ):
        raise ValueError(f"state_file: {path} is not the progress of an evaluation (format {STATE_FORMAT})")
    return acc, list(state["resumed_at"]), official


_OFFICIAL_ARRAY = re.compile(r"(cond_rec|random_\d+|(psnr|ssim|lpips)_(best|worst))\.npy")
"""The files of a work folder of official sample arrays (:func:`official_work_dir`): nothing else there is removed."""


def official_work_dir(state_file: str | Path) -> Path:
    """Where an evaluation with ``state_file`` and ``official_files=True`` keeps the official sample arrays until its
    results are written: ``NAME_official.partial/`` next to ``NAME.partial.pt`` (``STATE.official/`` next to a
    state file of another name), one ``.npy`` per official file, filled batch by batch. The progress saved in
    ``state_file`` counts on them; :func:`discard_progress` removes both."""
    path = Path(state_file)
    suffix = ".partial.pt"
    if path.name.endswith(suffix) and len(path.name) > len(suffix):
        return path.with_name(f"{path.name[: -len(suffix)]}_official.partial")
    return path.with_name(f"{path.name}.official")


def discard_progress(state_file: str | Path) -> None:
    """Remove the progress that :func:`~examples.srvp.evaluate.evaluate` saved in ``state_file`` and its official
    sample arrays (:func:`official_work_dir`): once the results are written, or to start over. What is missing is no
    error."""
    path = Path(state_file)
    path.unlink(missing_ok=True)  # first: saved progress never counts on arrays already removed
    _remove_work_files(official_work_dir(path))


def _remove_work_files(folder: Path) -> None:
    """Remove the official sample arrays in ``folder`` (only the files an evaluation writes there; a file that
    cannot be removed is left), then the folder if that left it empty."""
    try:
        entries = list(folder.iterdir())
    except OSError:  # no folder, or not a folder
        return
    for entry in entries:
        if _OFFICIAL_ARRAY.fullmatch(entry.name):
            with contextlib.suppress(OSError):
                entry.unlink()
    with contextlib.suppress(OSError):  # missing, or holds something else
        folder.rmdir()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another C library)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


def _release_freed_memory() -> None:
    """Give the heap memory freed by a batch back to the system, where the C library allows (glibc).

    A batch with official files allocates and frees large arrays between the small ones kept for the results;
    glibc then reuses the holes poorly and the heap grew by up to 1.5 MiB per SM-MNIST sequence, memory that is free
    but never returned (measured: flat with ``malloc_trim`` after each batch, or with a fixed
    ``MALLOC_MMAP_THRESHOLD_``). It costs well under a millisecond per batch."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class _OfficialArrays:
    """The official sample arrays of an evaluation (see :func:`write_official_files`) while it runs, on disk: one
    ``NAME.npy`` per official file, (n_seq, T, H, W, C) uint8, preallocated at the first batch and filled batch by
    batch, so that memory does not grow with the test set. Rows are written with plain writes, not through a
    memory map, where a full disk would be a SIGBUS instead of an OSError. ``folder`` None: a temporary folder,
    removed at the end. ``layout`` ({name: {"shape": [...], "dtype": str}}) is saved with the progress."""

    def __init__(self, folder: Path | None, n_seq: int) -> None:
        self.folder = folder
        self.temporary = folder is None
        self.n_seq = n_seq
        self.layout: dict[str, dict[str, Any]] = {}
        self._offsets: dict[str, int] = {}  # where the data of each file starts, after the .npy header
        self._unsynced: set[str] = set()

    def _path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{name}.npy"

    def _row_bytes(self, name: str) -> int:
        spec = self.layout[name]
        return math.prod(spec["shape"][1:]) * np.dtype(spec["dtype"]).itemsize

    def _create(self, first: dict[str, np.ndarray]) -> None:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="srvp-official-"))
        else:
            _remove_work_files(self.folder)  # what an evaluation of this name left, that no saved progress counts on
            self.folder.mkdir(parents=True, exist_ok=True)
        for name, rows in first.items():
            shape = (self.n_seq, *rows.shape[1:])
            array = np.lib.format.open_memmap(self._path(name), mode="w+", dtype=rows.dtype, shape=shape)
            self._offsets[name] = array.offset
            del array  # a sparse file: no page was written
            self.layout[name] = {"shape": list(shape), "dtype": rows.dtype.str}

    def write(self, start: int, arrays: dict[str, torch.Tensor] | dict[str, np.ndarray]) -> None:
        """Rows ``start …`` of every file, from one batch's arrays (B, T, H, W, C)."""
        batch = {name: np.ascontiguousarray(np.asarray(a)) for name, a in arrays.items()}
        if not self.layout:
            self._create(batch)
        if list(batch) != list(self.layout):
            raise RuntimeError(f"official arrays: expected {list(self.layout)}, got {list(batch)}")
        for name, rows in batch.items():
            if rows.nbytes != len(rows) * self._row_bytes(name) or start + len(rows) > self.n_seq:
                raise RuntimeError(f"official arrays: {name}: rows {start}+{list(rows.shape)} do not fit the file")
            with open(self._path(name), "r+b") as f:
                f.seek(self._offsets[name] + start * self._row_bytes(name))
                f.write(rows.reshape(-1).view(np.uint8).data)
            self._unsynced.add(name)

    def sync(self) -> None:
        """Flush the rows written since the last call to the disk: before the progress that counts on them is saved."""
        for name in sorted(self._unsynced):
            with open(self._path(name), "r+b") as f:
                os.fsync(f.fileno())
        self._unsynced.clear()

    def resume(self, acc: _Accumulated, layout: dict[str, dict[str, Any]] | None, state_file: Path) -> _Accumulated:
        """Continue the arrays of the progress ``acc`` loaded from ``state_file``: check the files that ``layout``
        describes or, for progress saved with the arrays in its batches, write them to the files and return the
        batches without them."""
        if layout is not None:
            for name, spec in layout.items():
                path = self._path(name)
                damaged = f"state_file: {state_file}: its official sample arrays are missing or damaged"
                try:
                    array = np.load(path, mmap_mode="r", allow_pickle=False)
                except OSError as e:
                    raise ValueError(f"{damaged} ({os_error_message(e)})") from None
                except ValueError as e:  # not a .npy file, or shorter than its header says
                    raise ValueError(f"{damaged} ({path}: {' '.join(str(e).split())})") from None
                found = (list(array.shape), array.dtype.str)
                self._offsets[name] = array.offset
                del array
                if found != (spec["shape"], spec["dtype"]):
                    raise ValueError(
                        f"{damaged} ({path} holds {found[0]} {found[1]}, expected {spec['shape']} {spec['dtype']})"
                    )
            self.layout = {name: dict(spec) for name, spec in layout.items()}
            return acc
        if acc.batches and all("official" in b for b in acc.batches):
            start = 0
            for b in acc.batches:
                self.write(start, b["official"])
                start += len(next(iter(b["official"].values())))
            self.sync()
            batches = tuple({k: v for k, v in b.items() if k != "official"} for b in acc.batches)
            return dataclasses.replace(acc, batches=batches)
        raise ValueError(f"state_file: {state_file} holds no official sample arrays")

    def arrays(self) -> dict[str, np.ndarray]:
        """The complete arrays: read-only memory maps of the files (a temporary folder is removed: on POSIX the maps
        outlive the files; elsewhere the folder goes when the maps are freed)."""
        out = {name: np.load(self._path(name), mmap_mode="r", allow_pickle=False) for name in self.layout}
        if self.temporary and self.folder is not None:
            self.remove()
            if self.folder.exists():
                for array in out.values():
                    weakref.finalize(array, shutil.rmtree, self.folder, True)
        return out

    def remove(self) -> None:
        """Remove a temporary folder (a work folder stays with the progress that counts on it)."""
        if self.temporary and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
