"""Run directories and checkpoints: atomic writes, ``weights_only=True`` loads.

A run directory holds ``config.json`` (``{"model": ..., "train": ...}``) and ``checkpoints/{last,best}.pt``,
each a dict with the model state and, for training checkpoints, optimizer, scheduler, step and RNG states. Both
record the layout they follow (``"format"``, :data:`RUN_FORMAT`) and the latentdyn version that wrote them, so
that a later version can read or convert them, and this one refuses the files of a later layout by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import pickle
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import latentdyn
from examples.srvp._cli import shell_quote
from examples.srvp._host import caller_state_kept
from examples.srvp.config import ModelConfig, TrainConfig, check_config_type, config_from_dict, config_to_dict
from examples.srvp.model import FrameModel, build_model
from latentdyn._files import atomic_write, is_temporary_of, unsafe_global

__all__ = [
    "CHECKPOINTS",
    "RUN_FORMAT",
    "FileLock",
    "atomic_write",
    "atomic_write_npz",
    "atomic_write_text",
    "check_finite",
    "check_fits",
    "check_run_format",
    "check_writable",
    "checkpoint_path",
    "default_checkpoint",
    "fork_rng",
    "load_checkpoint",
    "load_model",
    "load_model_and_step",
    "open_own_file",
    "os_error_message",
    "read_json",
    "read_run_config",
    "read_torch_file",
    "read_train_config",
    "rebuild_difference",
    "remove_stale_temporaries",
    "rng_state",
    "run_format",
    "save_checkpoint",
    "save_run",
    "seed_rng",
    "set_rng_state",
]


class FileLock:
    """An exclusive ``flock`` on a file, with the holder's process id in it, held from :meth:`acquire` to
    :meth:`release`: the system releases it when the process ends, however it ends, so a killed process leaves no
    stale lock (the file stays; it is never removed, which would race with another process taking it). Where
    ``fcntl`` is missing (Windows) or the file system has no locks, nothing is locked."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def acquire(self, path: Path, option: str, *, busy: str) -> None:
        """Take the lock on ``path`` (created if missing; never through a symbolic link).

        Args:
            path: the lock file.
            option: the option the refusal starts with.
            busy: what the refusal says, with ``{who}`` for the holder (``process 4242``).

        Raises:
            ValueError: another process holds the lock, or ``path`` is a symbolic link or not a regular file.
        """
        try:
            import fcntl
        except ImportError:  # (Windows)
            return
        fd = open_own_file(path, os.O_RDWR, option)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() if e.errno in _LOCKED else ""
            os.close(fd)
            if e.errno not in _LOCKED:  # a file system without locks (ENOLCK ...): as without fcntl
                return
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise ValueError(f"{option}: {busy.format(who=who)}") from None
        self._fd = fd  # held from here on (release() unlocks it), also if the pid cannot be written
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError:  # e.g. a full disk: the pid only names the holder to a second process
            pass

    @staticmethod
    def held_elsewhere(path: Path) -> bool:
        """Whether another process holds the lock on ``path`` now, found without taking it or writing the file (a
        shared lock tried and let go at once); False where there is no such file, no ``fcntl`` or no locks."""
        try:
            import fcntl
        except ImportError:  # (Windows)
            return False
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # missing (or a symbolic link): no lock there
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            return e.errno in _LOCKED
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def release(self) -> None:
        """Unlock and close (nothing if not held)."""
        if self._fd is not None:
            import fcntl

            # Unlocked explicitly: forked DataLoader workers share the descriptor, and closing this copy alone
            # would leave the lock held as long as they live.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


_LOCKED = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES}  # what flock(LOCK_NB) fails with when the lock is held


def open_own_file(path: Path, flags: int, option: str) -> int:
    """``os.open(path, flags | O_CREAT)`` for a file of a run directory itself, never through a symbolic link
    (a copied or shared run directory could hold one to any file the user can write, which a lock's truncation
    or a log's appends would then damage) and only if it is a regular file.

    Raises:
        ValueError: ``path`` is a symbolic link or not a regular file (one line starting with ``option``).
    """
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # (a FIFO opened for writing would wait for a reader for good)
    try:
        fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | nonblocking, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise ValueError(
                f"{option}: {path} is a symbolic link; remove it (no file is written through one)"
            ) from None
        if e.errno == errno.ENXIO:  # a FIFO without a reader, or a socket
            raise ValueError(f"{option}: {path} is not a regular file; remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{option}: {path} is not a regular file; remove it")
    if nonblocking:
        os.set_blocking(fd, True)
    return fd


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` calls of ``path`` made left behind (a process killed
    mid-write leaves one, as large as a checkpoint). Only while holding the lock that excludes every other writer
    of ``path``. Returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            if is_temporary_of(entry, path):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def check_writable(folder: str | os.PathLike[str], option: str) -> None:
    """Files can be created in ``folder`` (or, where it does not exist yet, in the directory that will hold it):
    checked before a long computation whose results go there. Nothing is left behind.

    Raises:
        ValueError: one line starting with ``option`` that names the folder and the reason.
    """
    target = Path(folder)
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option}: cannot write to {target}: {existing} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{option}: cannot write to {target}: {e.strerror or e}") from None


def os_error_message(e: OSError) -> str:
    """One line for an ``OSError`` of the file system (``Permission denied: runs/x/eval/a.json``)."""
    if e.strerror and e.filename is not None:
        return f"{e.strerror}: {e.filename}"
    return " ".join(str(e).split()) or type(e).__name__


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8) through a temporary file and a rename."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_npz(path: str | os.PathLike[str], *, compressed: bool = False, **arrays: np.ndarray) -> Path:
    """``np.savez`` (or ``np.savez_compressed``) to a temporary file in the same folder, then rename over ``path``."""
    save = np.savez_compressed if compressed else np.savez
    atomic_write(path, lambda f: save(f, **arrays))  # type: ignore[arg-type]  # (numpy's stub: allow_pickle)
    return Path(path)


def _accelerator_module(device: torch.device) -> Any:
    """``torch.mps`` or ``torch.xpu``: an accelerator other than CUDA whose module keeps one global random state;
    None for the CPU, CUDA (indexed, handled apart) and devices without one."""
    if device.type in ("cpu", "cuda"):
        return None
    module = getattr(torch, device.type, None)
    has_state = callable(getattr(module, "get_rng_state", None)) and callable(getattr(module, "set_rng_state", None))
    return module if has_state else None


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global random states that draws on ``device`` use: ``torch`` (CPU) and that of the device's own
    generator: ``cuda`` (that device's), or ``mps``/``xpu`` on those."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif (module := _accelerator_module(device)) is not None:
        state[device.type] = module.get_rng_state()
    return state


def seed_rng(value: int, device: torch.device) -> None:
    """Seed the streams :func:`rng_state` covers, the CPU's and ``device``'s own (that CUDA device's, or
    ``mps``/``xpu``), with ``value``; no other device's (``torch.manual_seed`` seeds every CUDA device)."""
    torch.default_generator.manual_seed(value)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(value)
    elif (module := _accelerator_module(device)) is not None and callable(getattr(module, "manual_seed", None)):
        module.manual_seed(value)


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned (a device's state only on a device of that type, where it was
    saved)."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type in state and (module := _accelerator_module(device)) is not None:
        module.set_rng_state(state[device.type])


@contextlib.contextmanager
def fork_rng(device: torch.device) -> Iterator[None]:
    """A context whose random draws (CPU, and ``device``'s) leave the global streams as they were: e.g. a
    validation or an evaluation inside a run that must resume exactly."""
    saved = rng_state(device)
    try:
        yield
    finally:
        set_rng_state(saved, device)


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    atomic_write(path, lambda f: torch.save(payload, f))


class UnsafeFileError(ValueError, pickle.UnpicklingError):
    """A torch file that ``weights_only=True`` refuses: it would unpickle code or arbitrary objects."""


def read_torch_file(path: str | os.PathLike[str], option: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors that start with ``option`` and say why.

    A file in torch's zip format is first checked against the CRC-32 of every member (torch does not check
    them): a flipped bit in a tensor is an error here rather than a silently altered weight. That reads the
    file once more: about 60 ms for the 128 MB training checkpoint of the smmnist preset (CPU, file in the
    page cache), as much again as the ``torch.load`` itself.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an empty file, a truncated or corrupted one, or one that is not a torch file;
            :class:`UnsafeFileError` (also a ``pickle.UnpicklingError``) for one that would unpickle code.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{option}: no file at {p}")
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"{option}: cannot read {p}: the file is empty (0 bytes; an interrupted write or copy?)")
    _check_zip_crc(p, option, size)
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except MemoryError:  # out of memory is not a damaged file
        raise
    except Exception as e:  # corrupt, truncated or not a torch file (torch raises many kinds)
        reason = " ".join(str(e).split()) or type(e).__name__
        if "weights_only" in reason:  # torch's explanation is long: keep what the file holds
            found = unsafe_global(reason)
            if found is not None:  # a pickle that names a class or function: refused before anything ran
                raise UnsafeFileError(
                    f"{option}: cannot read {p}: it would load the Python object {found}, which "
                    "weights_only=True refuses, so nothing was unpickled"
                ) from None
            # Any other refusal is of a pickle opcode that torch never writes: random or damaged bytes.
            detail = reason.partition("WeightsUnpickler error: ")[2].split(" Check the documentation")[0]
            reason = "not a torch file, or a corrupted one" + (f" ({detail.rstrip('. ')})" if detail else "")
        elif "PytorchStreamReader" in reason:  # keep the first sentence of torch's long explanation
            reason = f"truncated or corrupted ({reason.split('. ')[0]})"
        elif not isinstance(e, OSError):  # random or damaged bytes fail the unpickler in many ways (EOFError,
            # IndexError, KeyError, UnicodeDecodeError ...)
            kind = type(e).__name__
            reason = (
                f"not a torch file, or a truncated or corrupted one ({kind if reason == kind else f'{kind}: {reason}'})"
            )
        raise ValueError(f"{option}: cannot read {p} ({size} bytes): {reason}") from None


def _first_bad_member(archive: zipfile.ZipFile) -> str | None:
    """``archive.testzip()``, except for members stored without a CRC-32 (0: a file written after
    ``torch.serialization.set_crc32_options(False)``), which have nothing to check."""
    for info in archive.infolist():
        if info.CRC == 0:
            continue
        try:
            with archive.open(info) as member:
                while member.read(1 << 20):
                    pass
        except zipfile.BadZipFile:  # (what a CRC mismatch raises once the member is read)
            return info.filename
    return None


def _check_zip_crc(p: Path, option: str, size: int) -> None:
    """For a file in zip format (what ``torch.save`` writes), a one-line ``ValueError`` naming the first member
    whose data does not match its CRC-32. Files in torch's legacy format, and zip files too damaged to be
    opened (truncated: their directory at the end is missing), are left to ``torch.load`` to report."""
    if not zipfile.is_zipfile(p):
        return
    try:
        with zipfile.ZipFile(p) as archive:
            bad = _first_bad_member(archive)
    except Exception as e:  # (a damaged local header, an impossible size ...: BadZipFile, EOFError, ValueError)
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{option}: cannot read {p} ({size} bytes): truncated or corrupted ({reason})") from None
    if bad is not None:
        raise ValueError(
            f"{option}: cannot read {p} ({size} bytes): corrupted: the data of {bad} does not match its CRC-32 "
            "(a damaged disk or copy); nothing was loaded"
        )


RUN_FORMAT = 1
"""The layout of the run directories' ``config.json`` and checkpoints that this version writes and the last one it
reads. Files without a ``"format"`` entry (written before it existed) have layout 1. A new configuration option
with a default (the value runs written before it had) keeps the layout: this version reads such older files as
they are, and an older version refuses a newer file by naming the options it does not know."""


def run_format() -> dict[str, Any]:
    """The entries that stamp a ``config.json`` or a checkpoint with its layout and the latentdyn that wrote it."""
    return {"format": RUN_FORMAT, "latentdyn": latentdyn.__version__}


def check_run_format(data: dict[str, Any], path: Path, option: str) -> None:
    """``data``, read from ``path``, follows a layout this version reads; otherwise a one-line ``ValueError``
    starting with ``option`` that names the file, the layout and the version that wrote it."""
    found = data.get("format", 1)
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise ValueError(f"{option}: {path}: format: expected an int >= 1, got {found!r}")
    if found > RUN_FORMAT:
        raise ValueError(
            f"{option}: {path} was written by latentdyn {data.get('latentdyn', '(unknown)')} in layout {found}; "
            f"this latentdyn {latentdyn.__version__} reads layouts up to {RUN_FORMAT}: upgrade latentdyn to use it"
        )


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint without unpickling code (``weights_only=True``), of a layout this version reads."""
    p = Path(path).expanduser()
    data = read_torch_file(p, "checkpoint")
    if not isinstance(data, dict) or "model" not in data:
        raise ValueError(f"checkpoint: {p} is not a latentdyn checkpoint (no 'model' entry)")
    check_run_format(data, p, "checkpoint")
    return data


# The paper's protocol: the official test.py scores the final weights (model.pt) by default, and its README says
# to pass model_best.pt for KTH and Human3.6M only.
BEST_CHECKPOINT_DATASETS = ("kth", "human36m")


def paper_checkpoint(run_config: dict[str, Any]) -> Literal["best", "last"]:
    """``"best"`` for a run trained on KTH or Human3.6M, ``"last"`` otherwise, as the paper's evaluation does."""
    dataset = (run_config.get("train") or {}).get("dataset")
    return "best" if dataset in BEST_CHECKPOINT_DATASETS else "last"


def default_checkpoint(run_dir: str | os.PathLike[str], run_config: dict[str, Any]) -> Literal["best", "last"]:
    """The checkpoint a run is evaluated with when none is named: :func:`paper_checkpoint` of its parsed
    ``config.json``, or the run's only checkpoint when it has just one (a run imported by ``official convert``
    has only ``best.pt``)."""
    preferred = paper_checkpoint(run_config)
    other: Literal["best", "last"] = "last" if preferred == "best" else "best"
    ckpt_dir = Path(run_dir).expanduser() / "checkpoints"
    if not (ckpt_dir / f"{preferred}.pt").exists() and (ckpt_dir / f"{other}.pt").exists():
        return other
    return preferred


CHECKPOINTS = ("best", "last")
"""The checkpoints of a run: ``checkpoints/best.pt`` (best validation score) and ``checkpoints/last.pt``."""


def checkpoint_path(run_dir: str | os.PathLike[str], which: Literal["best", "last"] = "best") -> Path:
    """Path of ``checkpoints/<which>.pt``; ``best`` falls back to ``last`` when there is no best yet.

    Raises:
        ValueError: ``which`` is neither ``"best"`` nor ``"last"``.
        FileNotFoundError: the run has no such checkpoint.
    """
    if which not in CHECKPOINTS:
        raise ValueError(f"which: expected 'best' or 'last', got {which!r}")
    ckpt_dir = Path(run_dir).expanduser() / "checkpoints"
    best, last = ckpt_dir / "best.pt", ckpt_dir / "last.pt"
    if which == "last" and not last.exists() and best.exists():
        raise FileNotFoundError(
            f"run_dir: no checkpoint last.pt in {ckpt_dir}, only best.pt (a run imported by official convert has "
            "only that one): ask for 'best'"
        )
    p = best if which == "best" and best.exists() else last
    if not p.exists():
        wanted = "best.pt or last.pt" if which == "best" else "last.pt"
        raise FileNotFoundError(f"run_dir: no checkpoint {wanted} in {ckpt_dir}; train first or pass a run directory")
    return p


def read_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``config.json`` of a run directory (UTF-8, as :func:`atomic_write_text` writes it, whatever the
    locale)."""
    p = Path(run_dir).expanduser() / "config.json"
    if not p.is_file():
        raise FileNotFoundError(f"run_dir: {_not_a_run(Path(run_dir).expanduser(), run_dir)}")
    data = read_json(p, "run_dir")
    if not isinstance(data, dict) or "model" not in data:
        raise ValueError(f"run_dir: {p} has no 'model' section")
    check_run_format(data, p, "run_dir")
    return data


def _not_a_run(path: Path, given: str | os.PathLike[str]) -> str:
    """Why ``path`` (a path given as a run directory, which holds no config.json) is not one, and what to give
    instead: a checkpoint file's or a ``checkpoints/`` folder's run directory."""
    if not path.exists():
        return f"{given} does not exist"
    if path.is_file():
        if path.suffix == ".pt":
            run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
            which = f" --checkpoint {path.stem}" if path.stem in ("best", "last") else ""
            if (run / "config.json").is_file():
                return f"{given} is a checkpoint file; give its run directory: {shell_quote(run)}{which}"
            return f"{given} is a checkpoint file; give the run directory that holds it in checkpoints/"
        return f"{given} is a file; give a run directory (the folder that holds config.json and checkpoints/)"
    if path.name == "checkpoints" and (path.parent / "config.json").is_file():
        return f"{given} is the checkpoints folder of a run; give the run directory: {shell_quote(path.parent)}"
    return f"no config.json in {given}"


def read_json(path: Path, label: str) -> Any:
    """The parsed JSON file ``path``, read as UTF-8 whatever the locale; a file that is not UTF-8 text or not
    JSON is a one-line ``ValueError`` starting with ``label`` that names it."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))  # (-sig: a BOM, as some Windows editors write)
    except UnicodeDecodeError as e:
        raise ValueError(f"{label}: {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{label}: {path} is not valid JSON: {e}") from e
    except RecursionError:  # arrays or objects nested thousands deep: no configuration looks like that
        raise ValueError(f"{label}: {path} is not a configuration (JSON nested too deeply to read)") from None


def check_fits(
    payload: dict[str, Any],
    model: torch.nn.Module,
    config: ModelConfig,
    path: Path,
    *,
    option: str,
    model_of: str = "config.json",
) -> None:
    """The checkpoint ``payload`` read from ``path`` was written by a model of ``config`` and its weights fit
    ``model``; otherwise a one-line ``ValueError`` starting with ``option`` that names the file and the mismatch
    (``model_of`` says where the model's configuration comes from).

    The configuration a training checkpoint records is compared first (an edited ``config.json``, or weights
    copied from another run, may still have the same shapes); then every key and shape of the state dict.
    """
    saved = (payload.get("config") or {}).get("model")
    if isinstance(saved, dict):
        # An option newer than the checkpoint had its default then (as config_from_dict reads config.json).
        saved = {**config_to_dict(ModelConfig()), **saved}
        current = config_to_dict(config)
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if changed:
            detail = ", ".join(f"{k} checkpoint {saved.get(k)!r} vs config.json {current.get(k)!r}" for k in changed)
            raise ValueError(f"{option}: {path} was written by another model configuration: {detail}")
    state, expected = payload["model"], model.state_dict()
    if not isinstance(state, dict):
        raise ValueError(f"{option}: {path} holds no state dict under 'model' (got {type(state).__name__})")
    problems = []
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    for what, keys in (("missing keys", missing), ("unexpected keys", unexpected)):
        if keys:
            problems.append(f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    shapes = [
        f"{k} checkpoint {list(state[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches ({'; '.join(shapes[:3])}{'; ...' if len(shapes) > 3 else ''})")
    if problems:
        raise ValueError(f"{option}: {path} does not fit the model of {model_of}: {'; '.join(problems)}")


def non_finite_entries(state: dict[str, Any]) -> list[str]:
    """The names of the floating-point tensors of the state dict ``state`` that hold a NaN or an infinity."""
    return [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def check_finite(state: dict[str, Any], path: Path, *, option: str) -> None:
    """Every floating-point tensor of the state dict ``state`` (read from ``path``) is finite; otherwise a
    one-line ``ValueError`` starting with ``option`` that names the file and the first tensors at fault (weights
    of a diverged training, or damaged ones, would only show later as NaN scores)."""
    bad = non_finite_entries(state)
    if bad:
        names = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise ValueError(
            f"{option}: {path} holds weights that are not finite (NaN or inf in {len(bad)} tensors: {names}): a "
            "diverged or damaged model"
        )


def read_train_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The whole training configuration of a run directory: its ``config.json``'s ``train`` section with its
    ``model`` section (the file keeps the two side by side, as the official one keeps its options).

    Raises:
        FileNotFoundError: no ``config.json``.
        ValueError, TypeError: the file is not a run's configuration of this version (the message names it).
    """
    saved = read_run_config(run_dir)
    p = Path(run_dir).expanduser() / "config.json"
    if not isinstance(saved.get("train"), dict):
        raise ValueError(f"run_dir: {p} has no 'train' section")
    try:
        return config_from_dict(TrainConfig, {**saved["train"], "model": saved["model"]})
    except (TypeError, ValueError) as e:  # the file, edited or of another version, is at fault
        raise (TypeError if isinstance(e, TypeError) else ValueError)(f"run_dir: {p}: {e}") from None


def rebuild_difference(model: FrameModel) -> str | None:
    """How ``model`` differs from the model its ``config`` builds (what :func:`load_model` gives back), or None.

    Compared, module by module: the class of the model and of each submodule, the names and shapes of the
    parameters and buffers, and the plain settings (numbers, strings, flags) of each module and of the
    non-module objects it holds, such as an ODE cell's integrator (its method and tolerances). A part swapped or
    a setting changed after the model was built is found; what a module computes in a method overridden by a
    subclass is not (the classes must then differ, which is found).
    """
    with torch.random.fork_rng(devices=[]), torch.device("meta"):  # (no memory, no draw from the caller's stream)
        rebuilt = build_model(model.config)
    if type(model) is not type(rebuilt):
        return f"the configuration builds a {type(rebuilt).__name__}, not a {type(model).__name__}"
    ours, theirs = dict(model.named_modules()), dict(rebuilt.named_modules())
    for name in [*ours, *(n for n in theirs if n not in ours)]:  # (parents first: the outermost difference)
        where = name or "the model"
        if name not in theirs:
            return f"{where} ({type(ours[name]).__name__}) is not in the model the configuration builds"
        if name not in ours:
            return f"{where} ({type(theirs[name]).__name__}), which the configuration builds, is missing"
        a, b = ours[name], theirs[name]
        synced = isinstance(a, torch.nn.SyncBatchNorm) and isinstance(b, torch.nn.modules.batchnorm._BatchNorm)
        if type(a) is not type(b) and not synced:  # (SyncBatchNorm of data-parallel training: the same weights)
            return f"{where} is a {type(a).__name__} where the configuration builds a {type(b).__name__}"
        for kind, got, want in (
            ("parameter", dict(a.named_parameters(recurse=False)), dict(b.named_parameters(recurse=False))),
            ("buffer", dict(a.named_buffers(recurse=False)), dict(b.named_buffers(recurse=False))),
        ):
            for key in got.keys() | want.keys():
                shape_got = None if key not in got else tuple(got[key].shape)
                shape_want = None if key not in want else tuple(want[key].shape)
                if shape_got != shape_want:
                    return f"{where}'s {kind} {key!r} has shape {shape_got} where the configuration builds {shape_want}"
        for key, (got_value, want_value) in _settings_pairs(a, b):
            if got_value != want_value:
                return f"{where}'s {key} is {got_value!r} where the configuration builds {want_value!r}"
    return None


_PLAIN = (bool, int, float, str, type(None))


def _plain(value: object) -> bool:
    """A setting compared by value: a number, string, flag or None, or a tuple or str-keyed dict of them (an
    integrator's solver options)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value))


def _settings_pairs(a: torch.nn.Module, b: torch.nn.Module) -> Iterator[tuple[str, tuple[object, object]]]:
    """The plain settings of two modules side by side (``training`` aside), and of the non-module objects they
    hold (an integrator), named ``attribute.setting``; a class that differs is a setting ``attribute``."""
    mine, other = vars(a), vars(b)
    for key in sorted(mine.keys() | other.keys()):
        if key.startswith("_") or key == "training":
            continue
        x, y = mine.get(key), other.get(key)
        if _plain(x) or _plain(y):
            yield key, (x, y)
        elif hasattr(x, "__dict__") and hasattr(y, "__dict__") and not isinstance(x, (torch.nn.Module, torch.Tensor)):
            if type(x) is not type(y):
                yield key, (type(x).__name__, type(y).__name__)
                continue
            inner_x, inner_y = vars(x), vars(y)
            for inner in sorted(inner_x.keys() | inner_y.keys()):
                u, v = inner_x.get(inner), inner_y.get(inner)
                if not inner.startswith("_") and (_plain(u) or _plain(v)):
                    yield f"{key}.{inner}", (u, v)


def save_run(
    run_dir: str | os.PathLike[str],
    model: FrameModel,
    train_config: TrainConfig,
    *,
    step: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a run directory holding ``model``'s weights: ``config.json`` and ``checkpoints/best.pt``, what
    :func:`load_model`, ``examples.srvp.evaluate`` and ``examples.srvp.demo`` read (e.g. a model fine-tuned in a
    loop of one's own). All or nothing: an error (a full disk, Ctrl-C) leaves no half-made run behind.

    The run holds no training state (optimizer, random streams): ``examples.srvp.train --resume`` refuses it,
    and ``examples.srvp.train --run-dir NEW_DIR --init-from RUN_DIR`` fine-tunes its weights in a new run.

    Args:
        run_dir: a directory that holds no run yet (no ``config.json`` nor checkpoint).
        model: an ``SRVP`` or ``SVGLP``; ``config.json`` gets its ``config``.
        train_config: the training options (dataset, clip lengths, ...) that ``evaluate`` reads; its
            ``model`` is replaced by the model's own configuration.
        step: the training step the weights are of, if known.
        extra: more entries for the checkpoint (e.g. where the weights come from).

    Returns:
        ``run_dir`` as a Path.

    Raises:
        FileExistsError: ``run_dir`` holds a run already.
        TypeError: ``model`` or ``train_config`` of another type.
        ValueError: ``train_config`` does not fit the model's configuration.
    """
    if not isinstance(model, FrameModel):
        raise TypeError(f"model: expected an SRVP or SVGLP model, got {type(model).__name__}")
    check_config_type(train_config, TrainConfig, "train_config")
    difference = rebuild_difference(model)
    if difference is not None:
        raise ValueError(
            f"model: load_model would not give this model back: it rebuilds a model from model.config, and "
            f"{difference}. Give the configuration the change (e.g. dataclasses.replace(model.config, ...) and "
            "build_model), or save a model of one's own design with torch.save(model.state_dict(), ...)"
        )
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ValueError(f"step: expected None or an int >= 0, got {step!r}")
    out = Path(run_dir).expanduser()
    ckpt = out / "checkpoints" / "best.pt"
    for taken in (out / "config.json", ckpt, out / "checkpoints" / "last.pt"):
        if taken.exists():
            raise FileExistsError(f"run_dir: {taken} already exists; choose an empty directory")
    train = dataclasses.replace(train_config, model=model.config)  # (checks the two together)
    config = {
        **run_format(),
        "model": config_to_dict(model.config),
        "train": {k: v for k, v in config_to_dict(train).items() if k != "model"},
    }
    check_writable(out, "run_dir")
    made = [d for d in (ckpt.parent, *ckpt.parent.parents) if not d.exists()]  # deepest first
    try:
        save_checkpoint(ckpt, {**(extra or {}), **run_format(), "model": model.state_dict(), "step": step})
        atomic_write_text(out / "config.json", json.dumps(config, indent=2))
    except BaseException:
        ckpt.unlink(missing_ok=True)
        for folder in made:  # the folders this call made, if nothing else was put there meanwhile
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return out


def load_model_and_step(
    run_dir: str | os.PathLike[str],
    which: Literal["best", "last"] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[FrameModel, int | None]:
    """The model of a run directory (an ``SRVP``, or an ``SVGLP`` for a run of that baseline), in eval mode, and
    the training step its checkpoint holds (None if none).

    Args:
        run_dir: a run directory of ``examples.srvp.train`` or of ``examples.srvp.official convert``.
        which: ``"best"`` (the best validation score; the last weights while there is none yet) or ``"last"``;
            by default the one ``examples.srvp.evaluate`` scores (:func:`default_checkpoint`: as the paper, the
            best for KTH and Human3.6M, the last otherwise, or the only one the run has).
        device: where the model goes.

    Raises:
        FileNotFoundError, ValueError, TypeError: no such run or checkpoint, or files that do not fit (the
            message names the file).
    """
    saved = read_run_config(run_dir)
    try:
        config = config_from_dict(ModelConfig, saved["model"], name="model")
    except (TypeError, ValueError) as e:  # the file, edited or of another version, is at fault
        raise ValueError(f"run_dir: {Path(run_dir).expanduser() / 'config.json'}: {e}") from None
    path = checkpoint_path(run_dir, default_checkpoint(run_dir, saved) if which is None else which)
    payload = load_checkpoint(path)
    # float32 whatever the caller's default dtype, and without a draw from the caller's random stream (the
    # initialisation is overwritten anyway)
    with caller_state_kept():
        with torch.device("meta"):  # shapes only, at no cost whatever config.json says: before memory is spent
            check_fits(payload, build_model(config), config, path, option="checkpoint")
        check_finite(payload["model"], path, option="checkpoint")
        model = build_model(config)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, ValueError) as e:  # (what check_fits does not see, e.g. a non-tensor entry)
        detail = " ".join(str(e).split())
        raise ValueError(f"checkpoint: {path} does not fit the model of config.json: {detail}") from None
    step = payload.get("step")
    return model.to(device).eval(), int(step) if isinstance(step, int) else None


def load_model(
    run_dir: str | os.PathLike[str],
    which: Literal["best", "last"] | None = None,
    device: str | torch.device = "cpu",
) -> FrameModel:
    """The model of a run directory, in eval mode: :func:`load_model_and_step` without the step."""
    return load_model_and_step(run_dir, which, device)[0]
