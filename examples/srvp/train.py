"""Train SRVP.

    python -m examples.srvp.train --preset smmnist-cpu --run-dir runs/smmnist-cpu
    python -m examples.srvp.train --preset smmnist --run-dir runs/smmnist --batch-size 64 --amp bf16
    python -m examples.srvp.train --resume runs/smmnist-cpu

Every option of ``ModelConfig`` and ``TrainConfig`` is a flag (``--state-size``, ``--lr`` ...); a preset gives
the defaults and flags override them. Unknown flags are errors. The run directory receives ``config.json``,
``checkpoints/last.pt`` (for resuming) and ``checkpoints/best.pt`` (best validation), ``train_log.jsonl``
and, when tensorboard is installed, TensorBoard events.

Training is exactly resumable: the batch of step s is generated from a seed derived from (seed, s), and the
torch RNG state, optimizer, scheduler and step are checkpointed.
"""

from __future__ import annotations

import argparse
import contextvars
import dataclasses
import datetime
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from einops import rearrange

from examples.srvp._cli import (
    ADJOINT_GRADIENT_WARNING,
    CliParser,
    Unfailing,
    add_version,
    ends_quietly_on_a_closed_pipe,
    progress_bar,
    robust_output,
    shell_quote,
    user_path,
    warnings_as_lines,
)
from examples.srvp._host import CallerState, caller_state_kept
from examples.srvp.checkpoint import (
    FileLock,
    atomic_write_text,
    check_finite,
    check_fits,
    check_run_format,
    check_writable,
    checkpoint_path,
    default_checkpoint,
    fork_rng,
    load_checkpoint,
    non_finite_entries,
    open_own_file,
    os_error_message,
    read_run_config,
    read_torch_file,
    read_train_config,
    remove_stale_temporaries,
    rng_state,
    run_format,
    save_checkpoint,
    seed_rng,
    set_rng_state,
)
from examples.srvp.config import (
    FIELD_CHOICES,
    PRESETS,
    ModelConfig,
    TrainConfig,
    check_config_type,
    check_new_run,
    config_to_dict,
    field_comments,
    resolve_device,
)
from examples.srvp.datasets import (
    BatchStream,
    check_stream,
    describe_folder_data,
    folder_data_changes,
    folder_data_record,
    make_data,
)
from examples.srvp.model import FrameModel, build_model, predict_in_chunks
from latentdyn._repr import fields_repr
from latentdyn.integrators.odeint import LOW_ORDER_METHODS
from latentdyn.video.collate import to_unit_interval

__all__ = ["DataError", "build_parser", "cli_hints", "config_from_args", "lr_factor", "main", "train", "validate"]


# ------------------------------------------------------------------------------------------------ the CLI
_RUNTIME_FIELDS = {"n_workers", "device", "max_minutes", "max_steps", "threads", "compile"}
"""Options that may change when resuming: they do not change what is computed, though the device, the number of
CPU threads and compilation change the order of float sums (a resume with the same ones continues bit for bit;
with others, the run differs in the last bits, and those differences grow; a resume says so)."""


_RESUME_ADJUSTABLE = {"lr"}
"""Options that a resume may change on purpose (to get past a divergence): the run goes on from its checkpoint with
the new value, which config.json then records with the step it took effect at (``lr_changes``)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls: type[Any], group_title: str) -> None:
    """One flag per field of ``cls``; its help is the field's comment in config.py."""
    group = parser.add_argument_group(f"{group_title} options (default: the preset's)")
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type) or f.name == "model":
            continue
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        converters: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "bool": _parse_bool}
        conv = converters[kind]
        choices = FIELD_CHOICES.get(f.name)
        group.add_argument(
            _flag(f.name),
            dest=f"{group_title}.{f.name}",
            type=conv,
            default=None,
            choices=choices,
            metavar="{" + ",".join(choices) + "}" if choices else kind.upper(),
            help=comments.get(f.name, "").replace("%", "%%"),
        )


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m examples.srvp.train``."""
    parser = CliParser(
        prog="python -m examples.srvp.train",
        description="Train SRVP (or the SVG-LP baseline). A preset gives every option; flags override it.",
        epilog=(
            "Ctrl-C or SIGTERM (a scheduler's stop) ends the run at the end of the current step with a checkpoint "
            "(exit status 130 or 143); --resume RUN_DIR continues exactly."
        ),
    )
    add_version(parser)
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="base configuration of a new run (default: smmnist); a resumed run keeps its config.json",
    )
    parser.add_argument("--run-dir", type=user_path, default=None, help="output directory of a new run")
    parser.add_argument(
        "--auto-resume",
        action="store_true",
        help="with --run-dir: continue the run the directory already holds, if any, instead of refusing it (its "
        "configuration must be the one the other options give): one command for a job that may be requeued",
    )
    parser.add_argument(
        "--resume",
        type=user_path,
        default=None,
        metavar="RUN_DIR",
        help="continue this run exactly (only runtime options may change: "
        + ", ".join(_flag(n) for n in sorted(_RUNTIME_FIELDS))
        + "); --lr changes the peak learning rate from the checkpoint's step on (the schedule's factor still "
        "applies), e.g. to get past a divergence",
    )
    parser.add_argument(
        "--init-from",
        type=user_path,
        default=None,
        metavar="PATH",
        help="start the new run from these weights (a run directory: the checkpoint evaluate scores; a .pt "
        "checkpoint; or a state dict saved with torch.save), e.g. to fine-tune a run of save_run or official "
        "convert; the optimizer, schedule and step start afresh. The model options must give weights of the same "
        "shapes",
    )
    _add_dataclass_flags(parser, ModelConfig, "model")
    _add_dataclass_flags(parser, TrainConfig, "train")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Preset + overrides -> TrainConfig (errors name the option)."""
    try:
        return _config_from_args(args)
    except (ValueError, TypeError) as e:  # "name: ..." from the config checks -> "--name: ..."
        name, sep, rest = str(e).partition(":")
        if sep and name.isidentifier():
            raise _kind_of(e)(f"{_flag(name)}:{rest}") from None
        raise


def _kind_of(e: Exception) -> type[Exception]:
    """The class of a re-raised error that says the same with another message: ``FileNotFoundError``,
    ``TypeError`` or ``ValueError`` (not ``type(e)``, whose constructor may want other arguments, as
    ``UnicodeDecodeError``'s five)."""
    for kind in (FileNotFoundError, TypeError):
        if isinstance(e, kind):
            return kind
    return ValueError


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {"model": {}, "train": {}}  # type: dict[str, dict[str, Any]]
    for key, value in vars(args).items():
        if "." in key and value is not None:
            group, name = key.split(".", 1)
            overrides[group][name] = value
    if getattr(args, "auto_resume", False) and args.resume is not None:  # (main: the run directory holds a run)
        return _auto_resumed_config(args, overrides)
    if args.resume is not None:
        if args.preset is not None:
            raise ValueError(
                f"--preset: a resumed run keeps the configuration of its config.json; drop --preset {args.preset} "
                "(only runtime options and --lr may be given with --resume)"
            )
        base = _saved_config(args.resume)
        fixed = {k: v for k, v in overrides["train"].items() if k not in _RESUME_ADJUSTABLE}
        conflicts = _conflicts(base, overrides["model"], fixed)
        if conflicts:
            raise ValueError(f"--resume: options conflict with the run's config.json: {conflicts}")
        # The step limit belongs to one invocation: a resumed run goes on to the schedule's end unless told.
        may_change = _RUNTIME_FIELDS | _RESUME_ADJUSTABLE
        runtime = {"max_steps": 0, **{k: v for k, v in overrides["train"].items() if k in may_change}}
        return dataclasses.replace(base, **runtime)
    cfg = _new_config(args.preset, overrides)
    check_new_run(cfg)
    return cfg


def _new_config(preset: str | None, overrides: dict[str, dict[str, Any]]) -> TrainConfig:
    """A new run's configuration: the preset (default smmnist) with the flags' overrides."""
    base = PRESETS[preset or "smmnist"]()
    model = dataclasses.replace(base.model, **overrides["model"])
    return dataclasses.replace(base, model=model, **overrides["train"])


def _saved_config(run_dir: Path) -> TrainConfig:
    """The configuration in a run's config.json; errors start with ``--resume`` and blame the file."""
    try:
        return read_train_config(run_dir)
    except (ValueError, TypeError, FileNotFoundError) as e:  # the saved file, not a flag, is at fault
        text = str(e)
        detail = (
            text.removeprefix("run_dir: ") if text.startswith("run_dir: ") else f"{run_dir / 'config.json'}: {text}"
        )
        raise _kind_of(e)(f"--resume: {detail}") from None


def _conflicts(base: TrainConfig, model: dict[str, Any], train: dict[str, Any]) -> str:
    """The given values that differ from a run's saved ones, runtime options excepted ("" if none), as
    ``--flag saved a vs given b, ...``."""
    pairs = [(k, getattr(base.model, k), v) for k, v in model.items()]
    pairs += [(k, getattr(base, k), v) for k, v in train.items() if k not in _RUNTIME_FIELDS]
    return ", ".join(f"{_flag(k)} saved {a!r} vs given {b!r}" for k, a, b in pairs if a != b)


def _auto_resumed_config(args: argparse.Namespace, overrides: dict[str, dict[str, Any]]) -> TrainConfig:
    """``--auto-resume`` on a directory that holds a run: the configuration the options give (preset and flags,
    as for a new run) must be the saved one, but for the runtime options, which the options set. A learning rate
    that a resume changed (config.json's ``lr_changes``) stays: the job's command may keep giving the one it
    was started with."""
    given = with_absolute_data_dir(_new_config(args.preset, overrides))
    saved = _saved_config(args.resume)
    model = {f.name: getattr(given.model, f.name) for f in dataclasses.fields(given.model)}
    train = {f.name: getattr(given, f.name) for f in dataclasses.fields(given) if f.name != "model"}
    changes = read_run_config(args.resume).get("lr_changes")
    if isinstance(changes, list) and changes and isinstance(changes[0], dict) and train["lr"] == changes[0].get("from"):
        train["lr"] = saved.lr  # (the command's lr is the run's first one)
    conflicts = _conflicts(saved, model, train)
    if conflicts:
        raise ValueError(
            f"--auto-resume: {args.resume} holds a run of another configuration ({conflicts}); give the options it "
            "was started with, or another --run-dir"
        )
    return dataclasses.replace(saved, **{k: getattr(given, k) for k in _RUNTIME_FIELDS})


def with_absolute_data_dir(cfg: TrainConfig) -> TrainConfig:
    """The configuration with its ``data_dir`` made absolute (``~`` expanded), as a new run's config.json keeps
    it, so that the run resumes and evaluates from any working directory ("" and "embedded" stay)."""
    if not cfg.data_dir or cfg.data_dir == "embedded":
        return cfg
    return dataclasses.replace(cfg, data_dir=os.path.abspath(os.path.expanduser(cfg.data_dir)))


# ------------------------------------------------------------------------------------------------- training
def lr_factor(step: int, burnin: int, decay: int) -> float:
    """Learning-rate factor of the update that follows ``step`` updates, as in the official schedule.

    The official loop numbers its updates from 1 and steps its ``LambdaLR`` (factor (decay − i)/decay after
    i steps) after every update whose number is at least ``burnin``. So updates 1..burnin run at the full
    rate, update burnin + j at (decay − j)/decay, and the last update of the schedule, burnin + decay, at 0.
    ``decay = 0`` (which the official code cannot run) means a constant rate.
    """
    if decay <= 0:
        return 1.0
    scheduler_steps = max(0, step + 1 - max(burnin, 1))
    return max(0.0, (decay - scheduler_steps) / decay)


def on_host(state: Any) -> Any:
    """``state`` (nested dicts, lists and tuples) with every tensor on the CPU (a CPU tensor is kept as it is)."""
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        return {k: on_host(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(on_host(v) for v in state)
    return state


def _with_implementation_of(optimizer: torch.optim.Optimizer, saved: Any) -> Any:
    """The saved optimizer state ``saved`` with the implementation flags (``fused``, ``foreach``) that
    :func:`make_adam` chose for ``optimizer`` on this machine, for ``load_state_dict``.

    ``load_state_dict`` restores the saved groups' flags: a run saved on a GPU (fused) and resumed on a CPU without
    fused Adam (torch < 2.4) failed at its first step. They are set before loading, not after: torch places each
    parameter's ``step`` count by the loaded flags (on the parameter's device for fused Adam), and a fused step
    given the host counts of an unfused run fails on a GPU."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        return saved  # (load_state_dict says what is wrong with it)
    chosen = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
    return {**saved, "param_groups": [{**g, **flags} for g, flags in zip(groups, chosen)] + groups[len(chosen) :]}


def make_adam(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with PyTorch's defaults (as the official code), fused into one kernel where this build can.

    The fused implementation (CPU since torch 2.4, CUDA) computes the same update in one pass over the
    parameters instead of a dozen foreach passes: ≈ 2 ms of a 50 ms CPU step at batch 4. Older builds fall
    back to the default implementation.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def make_grad_scaler(device: torch.device, enabled: bool) -> Any:
    """The loss scaler of fp16 training on ``device`` (a pass-through when not ``enabled``).

    ``torch.amp.GradScaler`` (torch >= 2.3) serves every device; torch 2.2 has only ``torch.cuda.amp.GradScaler``,
    whose disabled form is the same pass-through, and no scaler for fp16 on the CPU.
    """
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    if enabled and device.type != "cuda":
        raise ValueError(f"amp: fp16 on {device.type} needs torch >= 2.3 (this is {torch.__version__}); use bf16")
    return torch.cuda.amp.GradScaler(enabled=enabled)


def autocast(cfg: TrainConfig, device: torch.device) -> Any:
    """The autocast context of the configuration (a no-op for fp32)."""
    if cfg.amp == "none":
        return nullcontext()
    return _autocast_of_its_own(device.type, torch.bfloat16 if cfg.amp == "bf16" else torch.float16)


@contextmanager
def _autocast_of_its_own(device_type: str, dtype: torch.dtype) -> Iterator[None]:
    """``torch.autocast`` whose copies of the weights in ``dtype`` go with it. torch keeps them until the
    outermost autocast context exits, and the training runs inside one (``caller_state_kept``): kept, the
    next step would compute with the copies of weights its update has changed."""
    try:
        with torch.autocast(device_type, dtype=dtype):
            yield
    finally:
        torch.clear_autocast_cache()


@torch.no_grad()
def validate(model: FrameModel, cfg: TrainConfig, val: torch.Tensor, device: torch.device) -> float:
    """Best-of-N PSNR on the validation clips (higher is better).

    As the official validation, the best sample is chosen on the PSNR over all frames (conditioning
    reconstructions included); its PSNR over the predicted frames is averaged over clips. The N samples are
    drawn in chunks of about ``CHUNK_FRAMES`` decoded frames (``predict_in_chunks``), so memory does not grow
    with N; only the per-frame PSNRs (N, B, T) are kept. A frame predicted exactly (infinite PSNR) counts
    ``PSNR_CAP_DB``, as in the evaluation.
    """
    from examples.srvp.evaluate import PSNR_CAP_DB, auto_sample_chunk  # (the evaluation module: only needed here)
    from latentdyn.video.metrics import psnr

    was_training = model.training
    model.eval()
    scores = []
    for start in range(0, val.shape[1], cfg.val_batch_size):
        x = val[:, start : start + cfg.val_batch_size].to(device)
        t, b = x.shape[:2]
        chunk = auto_sample_chunk(b, t, cfg.val_samples)
        parts = []
        chunks = predict_in_chunks(model, x[: cfg.nt_cond], t - cfg.nt_cond, cfg.val_samples, chunk, decode_cond=True)
        with autocast(cfg, device):  # the model's passes; the PSNR below is elementwise float32 arithmetic
            for part in chunks:
                pred = part.prediction
                assert pred.cond_frames is not None  # decode_cond=True
                frames = torch.cat([pred.cond_frames, pred.frames], dim=1).float()  # (n, T, B, C, H, W)
                score = psnr(frames, x.float().expand_as(frames)).clamp(max=PSNR_CAP_DB)  # as evaluate does
                parts.append(rearrange(score, "n t b -> n b t"))
        p = torch.cat(parts)  # (N, B, T)
        best = p.mean(-1).argmax(0)  # (B,)
        chosen = p[best, torch.arange(b, device=p.device)]  # (B, T)
        scores.append(chosen[:, cfg.nt_cond :].mean(-1))
    model.train(was_training)
    return float(torch.cat(scores).mean())


class _Logger:
    """JSONL log, optional TensorBoard."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None = None) -> None:
        self.path = run_dir / "train_log.jsonl"
        self.enabled = enabled
        self.tb: Any = None
        if enabled:
            os.close(
                open_own_file(self.path, os.O_WRONLY | os.O_APPEND, "--run-dir" if resume_step is None else "--resume")
            )
            if resume_step is not None:
                self._forget_after(resume_step)
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if resume_step is None else resume_step + 1  # (events of steps >= purge go)
                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)
            except Exception:  # tensorboard is an optional extra
                self.tb = None

    def _forget_after(self, step: int) -> None:
        """Drop the entries of steps after ``step`` (the checkpoint a run resumes from): a run killed after its
        last checkpoint logged steps that the resumed run logs again. Lines cut short by the kill go too."""
        if not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # (a line nested thousands deep)
                continue
            if line.endswith("\n") and isinstance(entry, dict) and entry.get("step", 0) <= step:
                kept.append(line)
        if kept != lines:
            atomic_write_text(self.path, "".join(kept))

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with os.fdopen(open_own_file(self.path, os.O_WRONLY | os.O_APPEND, "--run-dir"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def images(self, step: int, tag: str, frames: torch.Tensor) -> None:
        if self.tb is not None:
            self.tb.add_images(tag, frames, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


@dataclass
class TrainResult:
    """What :func:`train` did."""

    run_dir: Path
    step: int
    losses: list[float]
    best_val_psnr: float | None
    stopped: str  # "done", "max steps", "time budget", "interrupted" (Ctrl-C), "terminated" (SIGTERM) or "nan"

    def __repr__(self) -> str:
        """The fields in a line, tensors by shape and dtype (a notebook prints the result of a cell)."""
        return fields_repr(self)


class _StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the end of the current step, with a checkpoint.

    SIGTERM is what job schedulers and service managers (SLURM before a time limit or a preemption, Kubernetes,
    ``docker stop``, systemd, ``torchrun`` passing on its own) send to ask a process to end before they kill it.
    The first of either signal sets ``by`` to ``"Ctrl-C"`` or ``"SIGTERM"``. Then:

    - more SIGTERMs change nothing: a signal sent to a whole job reaches a process more than once (directly and
      through ``torchrun``), and what ends a run that outlasts the grace period is the scheduler's SIGKILL;
    - a second Ctrl-C acts at once as usual (KeyboardInterrupt, without a checkpoint of the step in progress),
      except under ``torchrun`` (``launched_by_torchrun``), whose agent passes the terminal's Ctrl-C on to the
      ranks a second time, and kills them itself after its shutdown timeout.
    """

    def __init__(self, launched_by_torchrun: bool = False) -> None:
        self.by: str | None = None
        self.repeat_interrupts = not launched_by_torchrun
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.by is not None

    def __enter__(self) -> _StopRequest:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        if self.by is None:
            self.by = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self.repeat_interrupts:  # from now on Ctrl-C interrupts at once
            self._restore(signal.SIGINT)

    def _restore(self, *signals: int) -> None:
        import signal

        for sig in signals or list(self._previous):
            if sig not in self._previous:
                continue
            previous = self._previous.pop(sig)
            if previous is None:  # a handler installed from C, which Python cannot put back: the default one
                previous = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, previous)

    def __exit__(self, *exc: object) -> None:
        self._restore()


def _shut_down_workers(batches: Iterator[torch.Tensor]) -> None:
    """End the DataLoader workers of ``batches`` now (nothing for a loader without workers; again: nothing).

    Left to garbage collection, the workers of an iterator that an exception's traceback still references
    outlive it, and they ignore SIGTERM: the interpreter's exit, which terminates and then joins them, hangs.
    """
    shut_down = getattr(batches, "_shutdown_workers", None)  # torch's _MultiProcessingDataLoaderIter
    if callable(shut_down):
        shut_down()


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the main process.

    A terminal's Ctrl-C and a scheduler's SIGTERM reach every process of the job, the workers included. A
    worker that ended on one would make the main process fail (``DataLoader worker ... exited unexpectedly``)
    before it could finish the step and write its checkpoint; ignoring them, the workers keep serving until the
    main process shuts them down (right after the loop, before the stop's checkpoint), and end with it if it dies
    (PyTorch's workers watch their parent). The cost: the DataLoader's last resort for a worker that does not
    end when told, a SIGTERM after 5 s, no longer works; such a worker delays the exit until it ends or a
    SIGKILL comes.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _usable_cores() -> int:
    """The cores this process may use (those a scheduler gave the job, where the system says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _local_processes() -> int:
    """The training processes of this machine (``LOCAL_WORLD_SIZE`` under ``torchrun``, else 1)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def data_workers(requested: int, device: torch.device) -> int:
    """The DataLoader workers of a training: ``requested`` if >= 0; for -1 (the default), none on a CPU (they
    would take cores from the training's own threads) and, on an accelerator, up to 8 processes, leaving one
    core to each training process of the machine (``LOCAL_WORLD_SIZE`` under ``torchrun``): a GPU step of the
    paper's SM-MNIST model (batch 128, ≥ 30 per second) needs more batches than one process makes."""
    if requested >= 0:
        return requested
    if device.type == "cpu":
        return 0
    per_process = _usable_cores() // _local_processes()
    return max(0, min(8, per_process - 1))


GROUP_TIMEOUT = datetime.timedelta(hours=3)
"""How long a process of a ``torchrun`` job waits for the others in a collective before the job fails: long
enough for rank 0's validation of the paper's presets on a slow GPU (the others wait for it), short enough to
end a job whose rank hangs on the same day. A rank that dies ends the job at once (``torchrun``)."""


@dataclass
class _Dist:
    """This process's place in a ``torchrun`` launch (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> _Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def _check_first_batch(stream: BatchStream, cfg: TrainConfig, dist: _Dist, device: torch.device) -> None:
    """``check_stream`` of this process's share of the first batch; every process raises when one share fails (the
    others would otherwise wait for it at their first collective)."""
    failure: ValueError | None = None
    try:
        check_stream(stream, cfg, share=(dist.rank, dist.world))
    except ValueError as exc:
        failure = exc
    failed = _max_over_ranks(dist.rank + 1 if failure is not None else 0, dist, device)
    if failure is not None:
        raise failure
    if failed:
        raise ValueError(
            f"data_dir: process {failed - 1} could not make its share of the first batch (its error is in its output)"
        )


def _all_true(flag: bool, dist: _Dist, device: torch.device) -> bool:
    """Whether ``flag`` holds on every rank (so that all ranks stop together)."""
    return not _max_over_ranks(int(not flag), dist, device)


def _seed_validation(seed: int, step: int, device: torch.device) -> None:
    """Seed the CPU's and ``device``'s streams from (``seed``, ``step``) alone for a validation (inside a
    ``fork_rng``): its samples, and so the score that picks ``best.pt``, then depend on the weights and the step,
    not on how many processes trained them or on rank 0's share of the training noise."""
    import numpy as np

    # (a Python int before the shift: numpy 1 refuses uint64 >> int)
    state = int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0])
    seed_rng(state >> 1, device)


def _mean_over_ranks(values: torch.Tensor, dist: _Dist) -> torch.Tensor:
    """The mean over the ranks of each rank's ``values`` (``values`` itself in one process). Every rank's batch
    share has the same size, so this is the mean over the whole batch. (A sum, then a division: gloo has no
    average.)"""
    if dist.world == 1:
        return values
    total = values.clone()
    torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return total / dist.world


def _max_over_ranks(value: int, dist: _Dist, device: torch.device) -> int:
    """The largest of every rank's ``value``."""
    if dist.world == 1:
        return value
    t = torch.tensor([value], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


_DATA_ERROR = 4
"""The ranks' stop vote of a batch that could not be made: ``_DATA_ERROR + rank`` outranks every other reason."""


class DataError(RuntimeError):
    """The batch of a step could not be made by another process of a data-parallel job (this one stopped with it)."""


def _next_batch(batches: Iterator[torch.Tensor]) -> tuple[torch.Tensor | None, Exception | None]:
    """The next batch (None at the end), or the error that making it raised."""
    try:
        return next(batches), None
    except StopIteration:
        return None, None
    except Exception as e:
        return None, e


MAX_SKIPPED_UPDATES = 50
"""With fp16 loss scaling, a run stops as diverged after this many updates skipped in a row: each halves the scale,
so the gradients stayed non-finite while it fell by 2**50 (a start from the default 65536 skips 10 to 15)."""


def _grad_norm(model: torch.nn.Module) -> torch.Tensor:
    """The 2-norm of all the gradients of ``model`` as a float32 scalar on their device: NaN or inf when one of them
    is (or when they are too large to represent: an update from them would not be finite either)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(model.parameters()).device)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in torch._foreach_norm(grads)]))


def _what_last_holds(last_path: Path, saved_step: int) -> str:
    """``"RUN/checkpoints/last.pt holds step N"``, or that there is none yet: what a stop keeps of the run."""
    return f"{last_path} holds step {saved_step}" if last_path.exists() else "no checkpoint was written yet"


def _diverged_message(step: int, fault: str, last_path: Path, saved_step: int) -> str:
    """What a run that stopped as diverged at ``step`` tells: why, what its ``last.pt`` holds, and that an
    unchanged resume would diverge again (it replays the same batches and noise)."""
    kept = _what_last_holds(last_path, saved_step)
    return (
        f"step {step}: {fault}; stopping without this update ({kept}). A resume replays the same steps exactly, so "
        "resuming unchanged diverges again here: resume with a smaller peak learning rate (--resume RUN_DIR --lr "
        "LR) or start a new run with other options"
    )


def _params_identical_across_ranks(model: torch.nn.Module, device: torch.device) -> bool:
    """All-gather a fingerprint of the parameters and compare them (a DDP sanity check)."""
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    weights = torch.linspace(1, 2, flat.numel(), dtype=torch.float64, device=flat.device)
    fp = torch.stack([flat.sum(), (flat * weights).sum()]).to(device)
    gathered = [torch.empty_like(fp) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, fp)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def _rank_rng_states(dist: _Dist, device: torch.device) -> list[dict[str, Any]]:
    """The RNG state of every rank (each rank draws its own noise), gathered for rank 0's checkpoint."""
    mine = rng_state(device)
    if dist.world == 1:
        return [mine]
    states: list[Any] = [None] * dist.world
    torch.distributed.all_gather_object(states, {k: v.cpu() for k, v in mine.items()})
    return states


@dataclass
class _Initial:
    """Weights a new run starts from (``--init-from``)."""

    state: dict[str, Any]
    path: Path
    record: dict[str, Any]  # what config.json keeps of the source
    note: str  # model settings the source was trained with that differ from the run's ("" if none)


def _initial_weights(source: Path, model_config: ModelConfig) -> _Initial:
    """The weights ``--init-from`` names, checked to fit a model of ``model_config``: a run directory (the
    checkpoint evaluate scores) or a checkpoint file."""
    if not source.exists():
        raise FileNotFoundError(f"--init-from: nothing at {source}")
    from examples.srvp.official import official_init_hint

    source_config: Any = None
    try:
        if source.is_dir():
            if hint := official_init_hint(source):  # an official experiment directory: to be converted first
                raise ValueError(f"--init-from: {hint}")
            run = read_run_config(source)
            path = checkpoint_path(source, default_checkpoint(source, run))
            source_config = run.get("model")
            payload = load_checkpoint(path)
        else:
            path = source
            data = read_torch_file(path, "--init-from")
            if hint := official_init_hint(path, data):  # official key names: to be converted first
                raise ValueError(f"--init-from: {hint}")
            if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
                payload = {"model": data}  # a bare state dict: torch.save(model.state_dict(), path)
            elif isinstance(data, dict) and "model" in data:
                check_run_format(data, path, "checkpoint")
                payload = data
            else:
                raise ValueError(f"checkpoint: {path} is neither a latentdyn checkpoint nor a state dict")
    except (ValueError, TypeError, FileNotFoundError) as e:  # (their messages name run_dir or checkpoint)
        label, sep, rest = str(e).partition(": ")
        if not sep or label not in ("run_dir", "checkpoint"):
            raise
        raise type(e)(f"--init-from: {rest}") from None
    if source_config is None:
        source_config = payload["config"].get("model") if isinstance(payload.get("config"), dict) else None
    with torch.device("meta"):  # names and shapes only: settings such as loss weights may change in fine-tuning
        model, weights = build_model(model_config), {"model": payload.get("model")}
        check_fits(weights, model, model_config, path, option="--init-from", model_of="this run")
    check_finite(payload["model"], path, option="--init-from")
    note = ""
    if isinstance(source_config, dict):
        current = config_to_dict(model_config)
        changed = [k for k in current if k in source_config and source_config[k] != current[k]]
        if changed:
            note = " (trained with " + ", ".join(f"{_flag(k)} {source_config[k]!r}" for k in changed) + ")"
    step = payload.get("step")
    record = {"checkpoint": str(path.resolve()), "step": step if isinstance(step, int) else None}
    return _Initial(payload["model"], path, record, note)


def _check_has_training_state(ckpt_dir: Path) -> None:
    """A run to resume without ``last.pt`` is one stopped before its first checkpoint (it restarts from step 0),
    not one whose ``best.pt`` holds weights from elsewhere (``official convert``) or a training state (a
    ``last.pt`` deleted, or lost in a copy): restarting such a run would train from a random initialisation and
    overwrite ``best.pt``, the only copy of those weights, and cut the log back to step 0."""
    best, last = ckpt_dir / "best.pt", ckpt_dir / "last.pt"
    if last.exists() or not best.exists():
        return
    payload = load_checkpoint(best)
    if "optimizer" not in payload or payload.get("step") is None:  # (official convert, save_run)
        raise ValueError(
            f"--resume: {best} holds weights without a training state (optimizer, random states) to continue from, "
            f"as official convert and save_run write them; resuming would train from scratch and overwrite them. "
            f"Evaluate the run as it is, or fine-tune its weights in a new run: --run-dir NEW_DIR --init-from "
            f"{shell_quote(ckpt_dir.parent)}"
        )
    step = payload["step"]
    raise ValueError(
        f"--resume: {last} is missing, but {best} holds the training state of step {step}; starting over from step "
        f"0 would overwrite it. To continue from step {step}: cp {shell_quote(best)} {shell_quote(last)}; to start "
        f"the run over, move {ckpt_dir.parent} away first"
    )


_TRAINING_ENTRIES = ("model", "optimizer", "scheduler", "scaler", "step")
"""What a checkpoint to resume from holds besides the RNG states (``rng`` or ``rng_ranks``)."""


def _check_training_entries(state: dict[str, Any], path: Path) -> None:
    """``state`` (read from ``path``) holds a training state to resume from: every entry a training checkpoint
    has, and a step that is an integer >= 0; otherwise a one-line ``ValueError`` naming the file and the entries."""
    missing = [k for k in _TRAINING_ENTRIES if k not in state]
    if not state.get("rng_ranks") and "rng" not in state:
        missing.append("rng")
    if missing:
        raise ValueError(
            f"--resume: {path} holds no training state to continue from (it lacks {', '.join(missing)}): only a "
            "checkpoint written by this training command can be resumed (weights alone, e.g. an imported best.pt, "
            "cannot)"
        )
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"--resume: {path} holds step {step!r}, expected an integer >= 0")


def _unrestorable(path: Path, entry: str, e: Exception) -> ValueError:
    detail = " ".join(str(e).split()) or "no detail"
    return ValueError(f"--resume: {path}: its {entry!r} entry cannot be restored ({type(e).__name__}: {detail})")


def _try_rng_state(state: Any, device: torch.device) -> None:
    """Check that ``set_rng_state`` takes ``state`` (applied later, once the batch iterator exists), leaving the
    random streams as they are."""
    if state is not None:
        with fork_rng(device):
            set_rng_state(state, device)


_RESUME_MAY_CHANGE = _RUNTIME_FIELDS | _RESUME_ADJUSTABLE | {"data_dir"}
"""Training options a resumed run may have changed since its checkpoint: the runtime ones, those a resume adjusts
(``--lr``), and config.json's ``data_dir`` (edited when the data moved)."""


def _training_options(cfg: TrainConfig) -> dict[str, Any]:
    """The ``train`` section of config.json (every ``TrainConfig`` field but the model), as checkpoints keep it."""
    return {k: v for k, v in config_to_dict(cfg).items() if k != "model"}


def _change_lr(optimizer: torch.optim.Optimizer, scheduler: Any, lr: float) -> None:
    """Make ``lr`` the peak learning rate of a restored optimizer and LambdaLR schedule, which go on at the same
    point of the schedule (nothing changes if it already is)."""
    if scheduler.base_lrs == [lr] * len(optimizer.param_groups):
        return
    scheduler.base_lrs = [lr] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = lr
        group["lr"] = lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # (what get_last_lr() reads)


def _record_lr_change(run_dir: Path, step: int, was: Any, lr: float) -> None:
    """config.json of a resumed run whose peak learning rate changed: ``train.lr`` is the new one (what later
    checkpoints and resumes compare with), ``lr_changes`` lists every change with its step."""
    saved = {**read_run_config(run_dir), **run_format()}  # (written in this version's layout)
    saved["train"]["lr"] = lr
    change = {"step": step, "from": was, "to": lr}
    done = saved.get("lr_changes", [])
    if not (done and done[-1] == change):  # (a resume of a change that had no checkpoint yet applies it again)
        saved["lr_changes"] = [*done, change]
    atomic_write_text(run_dir / "config.json", json.dumps(saved, indent=2))


def _runtime(device: torch.device, cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint records of how its steps were computed, beyond the options: a resume that computes
    otherwise is not bit-identical to an uninterrupted run (see :data:`_RUNTIME_FIELDS`)."""
    return {"device": device.type, "threads": torch.get_num_threads(), "compile": cfg.compile}


def _runtime_changes(saved: Any, now: dict[str, Any]) -> str:
    """``"threads 1 (this run: 2), ..."`` for what differs between a checkpoint's ``runtime`` and this run's ("" if
    nothing does, or if the checkpoint recorded none)."""
    if not isinstance(saved, dict):
        return ""
    return ", ".join(f"{k} {saved[k]!r} (this run: {v!r})" for k, v in now.items() if k in saved and saved[k] != v)


def _check_same_training_options(state: dict[str, Any], cfg: TrainConfig, path: Path, run_dir: Path) -> None:
    """The training options ``state`` (read from ``path``) was written with are those of the run's config.json,
    but for :data:`_RESUME_MAY_CHANGE`; a checkpoint that recorded none (an older version) is not compared."""
    config = state.get("config")
    saved = config.get("train") if isinstance(config, dict) else None
    if not isinstance(saved, dict):
        return
    current = _training_options(cfg)
    changed = sorted(k for k in saved.keys() & current.keys() if k not in _RESUME_MAY_CHANGE and saved[k] != current[k])
    if changed:
        detail = ", ".join(f"{k} checkpoint {saved[k]!r} vs config.json {current[k]!r}" for k in changed)
        raise ValueError(
            f"--resume: {path} was written with other training options than {run_dir / 'config.json'} gives: "
            f"{detail} (an edited or replaced config.json; only runtime options and --lr may change on resume)"
        )


def _check_same_folder_data(run_dir: Path, cfg: TrainConfig, now: dict[str, Any] | None) -> str | None:
    """A resumed folder run reads the data its train/validation split was drawn from, as its config.json records it
    (``data``, :func:`~examples.srvp.datasets.folder_data_record`; ``now`` is the record of ``data_dir`` as it is):
    the same videos, named relative to ``data_dir`` (which may have moved), or an ``.npz`` of as many videos and
    frames. Every rank checks, before any data is read.

    Returns:
        A note for a run made before config.json recorded its data (resumed as before), else None.

    Raises:
        ValueError: the data differs (what was added and removed, and what to do), or config.json's ``data`` is
            not a record this version writes.
    """
    config = run_dir / "config.json"
    saved = read_run_config(run_dir)
    if "data" not in saved:
        if now is None:
            return None
        count = now["videos"] if isinstance(now["videos"], int) else len(now["videos"])
        return (
            f"note: {config} does not record the videos the run's train/validation split was drawn from (a run "
            f"made before latentdyn recorded them): the split is drawn from the {count} videos in {cfg.data_dir} "
            "now, which is the run's own split only if no video was added or removed since the run started"
        )
    try:
        changes = folder_data_changes(saved["data"], now)
    except ValueError as e:
        where = "--resume" if _FROM_CLI.get() else "run_dir"
        raise ValueError(
            f"{where}: {config}: its 'data' section is not one latentdyn writes: {e}; restore it, or delete the "
            "section to resume without checking the data"
        ) from None
    if not changes:  # the same data, or none readable (make_data then says what is wrong with it)
        return None
    last = run_dir / "checkpoints" / "last.pt"
    if _FROM_CLI.get():
        where = "--resume"
        start = (
            f"python -m examples.srvp.train --run-dir NEW_RUN --dataset folder --data-dir {shell_quote(cfg.data_dir)} "
            "with the run's preset and other options (its config.json lists them)"
            + (f" --init-from {shell_quote(last)} to keep its weights" if last.exists() else "")
        )
    else:
        where = "run_dir"
        start = "train(cfg, NEW_RUN" + (f", init_from={str(last)!r}) to keep its weights" if last.exists() else ")")
    raise ValueError(
        f"{where}: data_dir {cfg.data_dir} no longer holds the data the run's train/validation split was drawn "
        f"from ({config} records it under 'data'): {changes}. The split permutes the videos in their order, so the "
        "run would go on training on other clips and selecting best.pt on other validation clips. Restore data_dir "
        "as it was (if the videos moved, config.json's data_dir may be edited to their new place), or start a new "
        f"run on the data as it is now: {start}"
    )


def _check_cfg_is_the_runs(cfg: TrainConfig, run_dir: Path) -> None:
    """From Python, a resume's ``cfg`` (the caller's: a notebook cell run again with an edited option) is the
    run's own but for what a resume may change; the command line reads config.json itself."""
    saved = read_train_config(run_dir)
    pairs = [
        (f"model.{f.name}", getattr(saved.model, f.name), getattr(cfg.model, f.name))
        for f in dataclasses.fields(cfg.model)
    ]
    pairs += [
        (f.name, getattr(saved, f.name), getattr(cfg, f.name))
        for f in dataclasses.fields(cfg)
        if f.name != "model" and f.name not in _RESUME_MAY_CHANGE
    ]
    changed = ", ".join(f"{name} {a!r} there vs {b!r} in cfg" for name, a, b in pairs if a != b)
    if changed:
        raise ValueError(
            f"cfg: differs from the configuration of the run in {run_dir} ({changed}); a resume continues that run: "
            f"pass read_train_config({str(run_dir)!r}) (runtime options such as threads, max_steps, max_minutes "
            "and lr may differ), or give another run_dir for a new run"
        )


LOCK_FILE = ".lock"
"""The file of a run directory that a training holds a lock on while it runs (with the process id in it)."""


def _lock_run_dir(lock: FileLock, run_dir: Path, option: str) -> None:
    """Take ``lock`` on ``run_dir``'s :data:`LOCK_FILE` while a training runs there, then remove what a killed
    training left half-written. A second training of the same run (a job started twice, a requeued job whose first
    instance still runs) is refused instead of writing the same checkpoints and log. Under ``torchrun`` only rank
    0, the process that writes the run's files, takes it."""
    path = run_dir / LOCK_FILE
    lock.acquire(
        path,
        option,
        busy=f"another training ({{who}}) is running in {run_dir} (it holds {path}); wait for it to end or stop it, "
        "or use another run directory",
    )
    for name in ("config.json", "train_log.jsonl"):
        remove_stale_temporaries(run_dir / name)
    for name in ("last.pt", "best.pt"):
        remove_stale_temporaries(run_dir / "checkpoints" / name)


_FROM_CLI: contextvars.ContextVar[bool] = contextvars.ContextVar("srvp_train_from_cli", default=False)
"""Whether :func:`train` runs for a command line (its hints are then commands) or for Python code."""


@dataclass(frozen=True)
class _CliRun:
    """What a command line tells :func:`train` beside the configuration (see :func:`cli_hints`)."""

    again: str | None = None  # the command that continues the run (default: train --resume RUN_DIR)
    budget_from: str | None = None  # where cfg.max_minutes comes from, said when the budget stops the run
    saved_minutes: float | None = None  # the max_minutes a new run's config.json keeps (default: cfg's)


_CLI_RUN: contextvars.ContextVar[_CliRun | None] = contextvars.ContextVar("srvp_train_cli_run", default=None)


def _cli_run() -> _CliRun:
    """What the command line that runs :func:`train` told it (nothing from Python)."""
    told = _CLI_RUN.get() if _FROM_CLI.get() else None
    return told if told is not None else _CliRun()


@contextmanager
def cli_hints(
    *, again: str | None = None, budget_from: str | None = None, saved_minutes: float | None = None
) -> Iterator[None]:
    """While the block runs, :func:`train` phrases its advice as commands (``--resume RUN``, or ``again``: the
    command that continues the run), as the command lines that call it want; from Python it names ``train``'s
    arguments. ``budget_from`` says where the time budget came from (a flag, the preset, config.json);
    ``saved_minutes`` is the budget a new run's config.json keeps for later invocations (the preset's: a time
    budget given on the command line belongs to that invocation only)."""
    token = _FROM_CLI.set(True)
    run_token = _CLI_RUN.set(_CliRun(again, budget_from, saved_minutes))
    try:
        yield
    finally:
        _CLI_RUN.reset(run_token)
        _FROM_CLI.reset(token)


def _plan_line(cfg: TrainConfig, device: torch.device, step: int, end: int, world: int) -> str:
    """What this invocation trains: steps, batch, device, threads, precision (a GPU machine trained on the CPU for
    days without a word, the CPU being the default device)."""
    where = f"{device}" + (f" × {world} processes" if world > 1 else "")
    if device.type == "cpu":
        where += f", {torch.get_num_threads()} threads" + (" each" if world > 1 else "")
    line = (
        f"training steps {step:,} to {end:,} of {cfg.n_iter:,}, batch {cfg.batch_size}, on {where}, "
        f"precision {'fp32' if cfg.amp == 'none' else cfg.amp + ' autocast'}"
    )
    if device.type == "cpu" and torch.cuda.is_available():
        line += " (a CUDA GPU is available: --device cuda trains on it)"
    return line


def _continue_hint(run_dir: Path) -> str:
    """How to continue the run in ``run_dir``: a command for a command line, a call from Python."""
    if _FROM_CLI.get():
        return _cli_run().again or f"python -m examples.srvp.train --resume {shell_quote(run_dir)}"
    command = f"python -m examples.srvp.train --resume {shell_quote(run_dir)}"
    return f"train(cfg, {str(run_dir)!r}, resume=True) (or {command})"


def _budget_source() -> str:
    """Where the time budget of this invocation came from (a flag, the preset, config.json)."""
    return _cli_run().budget_from or "cfg.max_minutes"


def _already_a_run(run_dir: Path) -> FileExistsError:
    if _FROM_CLI.get():
        return FileExistsError(f"--run-dir: {run_dir} already holds a run; use --resume {run_dir} or another directory")
    return FileExistsError(
        f"run_dir: {run_dir} already holds a run; continue it with train(cfg, {str(run_dir)!r}, resume=True) (or "
        "resume='auto', which starts the run or continues it), or give another directory"
    )


def train(
    cfg: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool | Literal["auto"] = False,
    init_from: str | os.PathLike[str] | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train (or resume) a run; returns when the schedule, ``max_steps`` or the time budget ends.

    Under ``torchrun --nproc_per_node=N`` the run is data-parallel (DDP; NCCL on GPUs, gloo on CPUs): the
    global batch is split across ranks, BatchNorm becomes SyncBatchNorm on GPUs as in the official code
    (PyTorch's SyncBatchNorm is GPU-only, so on CPUs each rank normalises with its own batch statistics), each
    rank draws its own noise, and only rank 0 validates and writes files.

    A stop before the end (time budget, ``max_steps``, Ctrl-C, SIGTERM) writes ``checkpoints/last.pt``; resuming from it
    gives the run an uninterrupted one would have: batches come from per-step seeds, validation draws from
    a forked random stream, and every rank's RNG state is saved.

    Args:
        cfg: the configuration (on resume, the run's own).
        run_dir: output directory (``~`` is expanded); must not already hold a run unless ``resume``.
        resume: continue from ``run_dir/checkpoints/last.pt`` (from step 0 if the run has none yet); ``"auto"``:
            continue the run in ``run_dir`` if there is one, else start it (a notebook cell or a requeued job run
            again, as ``--auto-resume``).
        init_from: a new run only: start from the weights of this run directory (the checkpoint
            ``examples.srvp.evaluate`` scores) or checkpoint file instead of the initialisation, with a fresh
            optimizer, schedule and step (fine-tuning; ``config.json`` records the source). The weights must fit
            the model of ``cfg`` (same names and shapes); other model settings may differ (a note lists them).
        max_steps: stop after this global step (also ``cfg.max_steps``; the smaller one wins).
        progress: show a tqdm progress bar.
        log: where messages go.

    Raises:
        TypeError: ``cfg`` is not a :class:`~examples.srvp.config.TrainConfig` (e.g. a dict: see
            :func:`~examples.srvp.config.config_from_dict`), or ``resume`` is neither a bool nor ``"auto"``.
        FileExistsError: ``run_dir`` already holds a run and ``resume`` is False.
        FileNotFoundError: ``resume`` is True and ``run_dir`` holds no run.
        ValueError: among others, another training holds the run directory (its ``.lock``), or a resumed run's
            checkpoint lacks, or cannot restore, its training state or was written with other options.
        Exception: the error of a batch that could not be made (after ``last.pt`` of the steps done is written),
            or :class:`DataError` in the other processes of a data-parallel job.
    """
    check_config_type(cfg, TrainConfig, "cfg")
    run_dir = Path(os.fspath(run_dir)).expanduser()
    if resume == "auto":
        resume = (run_dir / "config.json").exists()
    elif not isinstance(resume, bool):
        raise TypeError(f"resume: expected True, False or 'auto', got {resume!r}")
    lock = FileLock()
    # The training sets the threads, seeds, default dtype and grad mode it needs; the caller (a notebook, a
    # sweep) gets its own back, and its autocast or no_grad does not reach the training.
    with caller_state_kept() as caller:
        try:
            source = None if init_from is None else Path(os.fspath(init_from)).expanduser()
            return _train(cfg, run_dir, resume, source, max_steps, progress, log, lock, caller)
        finally:
            lock.release()


def _train(
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool,
    init_from: Path | None,
    max_steps: int | None,
    progress: bool,
    log: Callable[[str], None],
    lock: FileLock,
    caller: CallerState,
) -> TrainResult:
    """:func:`train`, which holds ``lock`` once it is taken here and releases it when this returns or raises;
    ``caller`` is given the device whose random stream the training draws from."""
    to_stdout = log is print  # (then a message beside the progress bar goes through the bar, see below)
    messages = Unfailing(log)  # a full or closed standard output must not end the training
    log = messages
    # Notes (what the run is trained on, how a resume differs) go to stderr when the messages go to stdout, so that
    # standard output holds the run's results.
    note = Unfailing(lambda message: print(message, file=sys.stderr, flush=True)) if to_stdout else messages
    ckpt_dir = run_dir / "checkpoints"
    if init_from is not None and resume:
        raise ValueError(
            f"--init-from: a resumed run continues from its own last.pt; {init_from} can only start a new run"
        )
    dist = _Dist.from_env()
    owns_group = False  # whether this call started the process group (and so ends it)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if dist.world > 1:
        if cfg.batch_size % dist.world:
            if resume:  # (the batch size is the run's: --batch-size cannot change on a resume)
                divisors = [k for k in range(1, min(cfg.batch_size, 64) + 1) if cfg.batch_size % k == 0]
                raise ValueError(
                    f"--resume: the run's batch size {cfg.batch_size} (its config.json) does not split over "
                    f"{dist.world} processes; resume it with {', '.join(map(str, divisors))} processes"
                )
            raise ValueError(f"--batch-size: {cfg.batch_size} does not split over {dist.world} processes")
        if device.type == "cuda":
            # One GPU per process: LOCAL_RANK's among those visible, or the only one when the launcher gives each
            # process its own (CUDA_VISIBLE_DEVICES per rank, as some cluster schedulers do).
            visible = torch.cuda.device_count()
            device = torch.device("cuda", dist.local_rank if visible > 1 else 0)
            local_world = os.environ.get("LOCAL_WORLD_SIZE", "1")
            shared = visible == 1 and local_world.isdigit() and int(local_world) > 1
            if (visible > 1 and dist.local_rank >= visible) or (shared and "CUDA_VISIBLE_DEVICES" not in os.environ):
                raise ValueError(
                    f"--device: process {dist.local_rank} of this node has no GPU of its own ({visible} visible); "
                    "run at most one process per GPU (torchrun --nproc_per_node), or give each its own with "
                    "CUDA_VISIBLE_DEVICES"
                )
            torch.cuda.set_device(device)
        if not torch.distributed.is_initialized():
            # Rank 0 validates alone while the others wait in the next collective: the default timeout (gloo 30
            # min, NCCL 10) ended a job whose validation took longer, losing that step's last.pt.
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=GROUP_TIMEOUT)
            owns_group = True
    caller.uses(device)
    if dist.world > 1 and dist.main and device.type == "cpu":
        local, threads, cores = _local_processes(), torch.get_num_threads(), _usable_cores()
        if threads * local > cores:
            note(
                f"note: {local} processes × {threads} threads each are more than the {cores} cores here, which "
                "slows every step; --threads is per process"
            )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the official code: the fastest kernels for these fixed shapes
    if not resume and (run_dir / "config.json").exists():
        raise _already_a_run(run_dir)
    if resume and not (run_dir / "config.json").exists():
        where = "--resume" if _FROM_CLI.get() else "run_dir"
        start = f"--run-dir {shell_quote(run_dir)}" if _FROM_CLI.get() else f"train(cfg, {str(run_dir)!r})"
        raise FileNotFoundError(f"{where}: no run to resume in {run_dir} (no config.json); start one with {start}")
    if resume and not _FROM_CLI.get():
        _check_cfg_is_the_runs(cfg, run_dir)
    if resume:
        if dist.main and run_dir.is_dir():
            _lock_run_dir(
                lock, run_dir, "--resume"
            )  # before anything of the run is read: another training may write it
        _check_has_training_state(ckpt_dir)
    else:
        check_new_run(cfg)
        check_writable(run_dir, "--run-dir")  # (e.g. a file of that name) before the data is read
        cfg = with_absolute_data_dir(cfg)
    initial = _initial_weights(init_from, cfg.model) if init_from is not None else None
    if resume and initial is None and not (ckpt_dir / "last.pt").exists() and (run_dir / "config.json").exists():
        # A run started from other weights and stopped before its first checkpoint starts again from them (a
        # requeued --auto-resume job drops --init-from: the run holds its source).
        recorded = read_run_config(run_dir).get("init_from")
        if isinstance(recorded, dict) and isinstance(recorded.get("checkpoint"), str):
            initial = _initial_weights(Path(recorded["checkpoint"]), cfg.model)
    # What a folder run's split is drawn from (config.json records it): a resume is refused if it changed, before
    # anything is read, by every rank.
    data_record = folder_data_record(cfg)
    if resume and cfg.dataset == "folder":
        unrecorded = _check_same_folder_data(run_dir, cfg, data_record)
        if unrecorded and dist.main:
            note(unrecorded)
    # Before anything is written: bad data options leave no half-made run. Each process makes its share of every
    # batch from the whole batch's random draws, so N processes train on the batches of one.
    stream, val = make_data(cfg, share=(dist.rank, dist.world))
    if not resume:  # the first batch too: a run is created only once its data has been read
        _check_first_batch(stream, cfg, dist, device)
    last_path = ckpt_dir / "last.pt"
    state = load_checkpoint(last_path) if resume and last_path.exists() else None
    if state is not None:  # against the shapes of config.json's model, at no cost whatever it says
        _check_training_entries(state, last_path)
        with torch.device("meta"):
            check_fits(state, build_model(cfg.model), cfg.model, last_path, option="--resume")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).init_weights().to(device)
    if initial is not None:  # (after the initialisation: the run's random stream is the same either way)
        model.load_state_dict(initial.state)
        if dist.main:
            log(f"starting from the weights of {initial.path}{initial.note}")
    if dist.rank > 0:
        torch.manual_seed(cfg.seed + dist.rank)  # same initial weights, but each rank draws its own noise
    if dist.world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = make_adam(model.parameters(), cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.lr_burnin, cfg.lr_decay))
    scaler = make_grad_scaler(device, enabled=cfg.amp == "fp16")
    step, best, rng = 0, None, None
    if dist.world > 1 and not resume:
        # Every rank has checked that the run directory holds no run before rank 0 writes config.json below;
        # otherwise a rank that reached the check late would see rank 0's file and refuse its own run.
        torch.distributed.barrier()
    lr_was: Any = None  # the peak learning rate of the steps done (a resume's --lr may change it)
    saved_amp_skips: dict[str, Any] = {}
    if state is not None:
        config = state.get("config")
        lr_was = config.get("train", {}).get("lr") if isinstance(config, dict) else None  # (before _change_lr)
        check_finite(state["model"], last_path, option="--resume")  # (written by a version without the checks)
        _check_same_training_options(state, cfg, last_path, run_dir)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(_with_implementation_of(optimizer, state["optimizer"]))
        except (RuntimeError, ValueError) as e:
            detail = " ".join(str(e).split())
            raise ValueError(f"--resume: {last_path} does not fit this configuration: {detail}") from None
        except Exception as e:  # (an optimizer entry of another kind: KeyError, TypeError ...)
            raise _unrestorable(last_path, "optimizer", e) from None
        step, best = state["step"], state.get("best_val_psnr")
        ranks = state.get("rng_ranks") or [state["rng"]]
        if not isinstance(ranks, list):
            raise _unrestorable(last_path, "rng_ranks", TypeError(f"expected a list, got {type(ranks).__name__}"))
        rng = ranks[dist.rank] if dist.rank < len(ranks) else None
        for entry, restore in (
            ("scheduler", lambda: scheduler.load_state_dict(state["scheduler"])),
            ("scaler", lambda: scaler.load_state_dict(state["scaler"])),
            ("rng", lambda: _try_rng_state(rng, device)),
        ):
            try:
                restore()
            except Exception as e:  # a state of another kind or version: say which entry, not a traceback
                raise _unrestorable(last_path, entry, e) from None
        lr_was = scheduler.base_lrs[0] if lr_was is None else lr_was  # (older checkpoints: the restored schedule's)
        if isinstance(state.get("amp_skips"), dict):
            saved_amp_skips = {k: v for k, v in state["amp_skips"].items() if k in ("scale", "skipped", "in_a_row")}
        _change_lr(optimizer, scheduler, cfg.lr)
        changed = _runtime_changes(state.get("runtime"), _runtime(device, cfg))
        if changed and dist.main:
            note(
                f"note: {last_path} was written with {changed}: the run continues, but not bit for bit as an "
                "uninterrupted one (float sums in another order)"
            )
        if "format" not in state and dist.main:  # (stamped since 2026-12-02; the training changed on 2026-12-01)
            note(
                f"note: {last_path} was written by an earlier latentdyn (before checkpoints recorded their version): "
                "the run continues with this version's training, which may not be bit for bit what that version "
                "would have done"
            )
        if len(ranks) != dist.world and dist.main:
            note(
                f"note: {last_path} was written by {len(ranks)} process(es), this run has {dist.world}: the "
                "batches are the same, the noise of the other ranks is not"
            )
        if dist.main:
            log(f"resuming {run_dir} at step {step}")
    elif resume:
        if dist.main:
            log(f"{run_dir} has no checkpoint yet: starting it from step 0")
    elif dist.main:
        saved_minutes = _cli_run().saved_minutes
        # A command line's time budget is its invocation's: config.json keeps the preset's for later ones.
        saved_budget = {} if saved_minutes is None else {"max_minutes": saved_minutes}
        run_dir.mkdir(parents=True, exist_ok=True)
        _lock_run_dir(lock, run_dir, "--run-dir")
        if (run_dir / "config.json").exists():  # made by another command while this one read its data
            raise _already_a_run(run_dir)
        atomic_write_text(
            run_dir / "config.json",
            json.dumps(
                {
                    **run_format(),
                    "model": config_to_dict(cfg.model),
                    "train": {k: v for k, v in config_to_dict(cfg).items() if k != "model"} | saved_budget,
                    **({"init_from": initial.record} if initial is not None else {}),
                    **({"data": data_record} if data_record is not None else {}),
                },
                indent=2,
            ),
        )
        if data_record is not None:
            note("note: " + describe_folder_data(cfg, data_record))
        if cfg.dataset == "smmnist" and cfg.data_dir == "embedded":  # (the default: no download)
            note(
                "note: the Moving MNIST digits are the 4,000 training digits shipped with latentdyn, a subset of "
                "the paper's 60,000; python -m examples.srvp.train --data-dir MNIST_DIR (MNIST/raw/train-*) trains "
                "on all of them"
            )
    if resume and dist.main:
        if lr_was is None:  # no checkpoint yet
            lr_was = read_run_config(run_dir)["train"].get("lr")
        if lr_was != cfg.lr:  # --resume RUN_DIR --lr LR (or an lr edited in config.json: recorded the same way)
            _record_lr_change(run_dir, step, lr_was, cfg.lr)
            log(f"the peak learning rate changes from {lr_was!r} to {cfg.lr!r} at step {step} (config.json records it)")
    end = cfg.n_iter
    for limit in (max_steps, cfg.max_steps):
        if limit:
            end = min(end, limit)
    if dist.main and step < end:
        log(_plan_line(cfg, device, step, end, dist.world))
    workers = data_workers(cfg.n_workers, device)
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        sampler=range(step, end),
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        worker_init_fn=_ignore_stop_signals if workers else None,
        pin_memory=device.type == "cuda",
    )
    net: Any = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        net = torch.compile(net)
    logger = _Logger(run_dir, enabled=dist.main, resume_step=step if resume else None)
    saved_step = first_step = step  # the step of last.pt (0 without one); the step this call starts at

    def checkpoint(name: str, rng_states: list[dict[str, Any]] | None = None) -> None:
        if not dist.main:
            return
        weights = model.state_dict()
        bad = non_finite_entries(weights)  # unreachable through the step's own checks: no checkpoint holds such
        if bad:
            raise FloatingPointError(
                f"step {step}: the model's {bad[0]!r} is not finite; {ckpt_dir / (name + '.pt')} was not written "
                f"({_what_last_holds(last_path, saved_step)})"
            )
        rng_states = rng_states or [rng_state(device)]
        save_checkpoint(
            ckpt_dir / f"{name}.pt",
            {
                **run_format(),
                # Host copies (torch.save copies a GPU tensor to the host anyway): a plain torch.load of a GPU
                # run's checkpoint then works on a machine without one, as load_checkpoint's does.
                "model": on_host(weights),
                "optimizer": on_host(optimizer.state_dict()),
                "scheduler": scheduler.state_dict(),
                "scaler": on_host(scaler.state_dict()),
                "step": step,
                "rng": rng_states[0],
                "rng_ranks": rng_states,
                "best_val_psnr": best,
                "config": {"model": config_to_dict(cfg.model), "train": _training_options(cfg)},
                "runtime": _runtime(device, cfg),
                "amp_skips": dict(amp_skips),
            },
        )

    def save_last() -> None:
        """``last.pt`` with every rank's RNG state (called by all ranks together)."""
        nonlocal saved_step
        checkpoint("last", _rank_rng_states(dist, device))
        saved_step = step

    def _save_after_data_error(failed_rank: int) -> None:
        """The batch of the next step could not be made on ``failed_rank`` (every rank knows, at the same step):
        the model is at a step boundary, so ``last.pt`` of the steps done is consistent, with every rank's RNG
        state. (Not a diverged model: a non-finite loss stops before its update.)"""
        if step > saved_step:
            save_last()
        if dist.main:
            kept = _what_last_holds(last_path, saved_step)
            where = f" by process {failed_rank}" if failed_rank != dist.rank else ""
            log(
                f"stopped at step {step} of {cfg.n_iter}: the batch of step {step} could not be made{where} ({kept}); "
                f"once the data is fixed, continue with: {_continue_hint(run_dir)}"
            )

    def run_validation(select: bool = True) -> None:
        """Validate; with ``select``, keep ``best.pt`` (only at multiples of ``val_interval``, as the official
        code selects models, so that a stopped and resumed run selects the same model as an uninterrupted one)."""
        nonlocal best
        if not dist.main:
            return
        with fork_rng(device):  # validation draws must not shift the training stream (exact resumes)
            _seed_validation(cfg.seed, step, device)
            score = validate(model, cfg, val, device)
            sample = None
            if logger.tb is not None:
                with torch.no_grad():
                    model.eval()
                    clip = val[:, :4].to(device)
                    pred = model.predict(clip[: cfg.nt_cond], clip.shape[0] - cfg.nt_cond, 1)
                    model.train()
                row = torch.cat([clip[cfg.nt_cond :], pred.frames[0].to(clip)], dim=1)  # (T, 2*4, C, H, W)
                sample = rearrange(row, "t b c h w -> (b t) c h w").float()
        logger.log(step, {"val_psnr": score})
        if select and math.isfinite(score) and (best is None or score > best):  # (NaN would stay best for good)
            best = score
            checkpoint("best")
        message = f"step {step}: validation best-of-{cfg.val_samples} PSNR {score:.2f} dB " + (
            f"(best {best:.2f})" if best is not None else "(no best yet)"
        )
        if not select:
            message += "; at the stop, not a model-selection point"
        elif not math.isfinite(score):
            message += "; not finite, so not a candidate for best.pt"
        if bar is not None and to_stdout:
            bar.write(message)  # printed without breaking a terminal's bar (tqdm.write)
        else:
            log(message)  # a caller's own log gets every message, bar or not
        if sample is not None:
            logger.images(step, "validation/truth_then_sample", sample)

    bar: Any = None
    if progress and dist.main:
        bar = messages.wrap(progress_bar(total=end, initial=step, unit="it", smoothing=0.05))
    start_time = time.monotonic()
    losses: list[float] = []
    stopped = "done"
    # fp16 loss scaling, followed without a device sync of its own: the scale after an update is read back with
    # the next step's loss terms, so a skipped update (the scale falls) is seen one step later. amp_skips holds
    # the scale of the latest update seen and the skipped updates seen (in all, and in a row), and travels in
    # last.pt, so that a resumed run stops where an uninterrupted one does.
    amp_skips: dict[str, Any] = {"scale": None, "skipped": 0, "in_a_row": 0}
    pending: Any = None  # the scale after the latest update: a tensor not read back yet, or a number
    if scaler.is_enabled():
        amp_skips.update(saved_amp_skips)
        pending = scaler.get_scale()  # (after the restored update, if any)
        amp_skips["scale"] = pending if amp_skips["scale"] is None else amp_skips["scale"]
    seqs, t_rate = 0, time.monotonic()
    model.train()
    batches: Iterator[torch.Tensor] = iter(loader)  # (creating the iterator draws from torch's RNG)
    if rng is not None:
        set_rng_state(rng, device)
    try:
        with _StopRequest(launched_by_torchrun="TORCHELASTIC_RUN_ID" in os.environ) as stop:
            # A batch that cannot be made (e.g. a damaged data file, read only when drawn) stops every rank at
            # the same step: the next step's batch is drawn before the ranks agree whether to go on, so a rank
            # whose batch failed is never waited for inside a step's collectives.
            x, data_error = _next_batch(batches)
            why = _max_over_ranks(_DATA_ERROR + dist.rank if data_error is not None else 0, dist, device)
            if why:
                stopped = "data error"
            while x is not None and not why:  # (why: the vote on the first batch; later stops break)
                x = to_unit_interval(x.to(device, non_blocking=True))  # (uint8 from the stream: 4x fewer bytes)
                lr = scheduler.get_last_lr()[0]  # the rate of this step's update
                with autocast(cfg, device):
                    terms, _ = net(x)  # SRVP.forward: posterior pass and loss terms (computed in fp32)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(terms.total).backward()
                # One read-back per step of all terms and, without a loss scaler (which skips such updates
                # itself), of the gradients' norm: a finite loss can still have non-finite gradients, and their
                # update would put NaN weights into the next checkpoint.
                # The terms of the whole batch: each rank's share averaged over the ranks (the log showed rank 0's
                # share alone); the gradients' norm and the loss scale are the same on every rank already.
                read = list(_mean_over_ranks(torch.stack([t.detach().float() for t in terms]), dist).unbind())
                read += [] if scaler.is_enabled() else [_grad_norm(model)]
                if isinstance(pending, torch.Tensor):
                    read.append(pending.float().reshape(()))
                row = torch.stack(read).tolist()
                values = dict(zip(terms._fields, row))
                if scaler.is_enabled():
                    scale = row[-1] if isinstance(pending, torch.Tensor) else float(pending)
                    fell = scale < amp_skips["scale"]
                    amp_skips.update(
                        scale=scale,
                        skipped=amp_skips["skipped"] + fell,
                        in_a_row=amp_skips["in_a_row"] + 1 if fell else 0,
                    )
                fault = (
                    f"loss is {values['total']}"
                    if not math.isfinite(values["total"])
                    else f"gradients are not finite (norm {row[-1]})"
                    if not scaler.is_enabled() and not math.isfinite(row[-1])
                    else f"fp16 loss scaling skipped the last {amp_skips['in_a_row']} updates (gradients not finite at "
                    f"every scale down to {amp_skips['scale']:g})"
                    if amp_skips["in_a_row"] >= MAX_SKIPPED_UPDATES
                    else ""
                )
                if not _all_true(not fault, dist, device):
                    stopped = "nan"
                    if dist.main:
                        log(_diverged_message(step, fault or "another process diverged", last_path, saved_step))
                    break
                scaler.step(optimizer)
                scaler.update()
                if scaler.is_enabled():
                    pending = scaler._get_scale_async().detach().clone()  # (read back with the next step's terms)
                scheduler.step()
                step += 1
                seqs += x.shape[1] * dist.world
                losses.append(values["total"])
                if step % 10 == 0 or step == end:
                    amp = (
                        {"amp_scale": amp_skips["scale"], "skipped_updates": amp_skips["skipped"]}
                        if scaler.is_enabled()
                        else {"grad_norm": row[len(terms)]}  # (the scaler's gradients are scaled: not logged)
                    )
                    logger.log(step, {**values, "lr": lr, **amp, "seconds": time.monotonic() - start_time})
                if bar is not None:
                    now = time.monotonic()
                    bar.update(1)
                    if step % 10 == 0:
                        bar.set_postfix(
                            loss=f"{values['total']:.1f}",
                            nll=f"{values['nll']:.1f}",
                            kl_y=f"{values['kl_y']:.2f}",
                            kl_z=f"{values['kl_z']:.2f}",
                            seq_s=f"{seqs / max(now - t_rate, 1e-9):.1f}",
                        )
                        seqs, t_rate = 0, now
                if step % cfg.val_interval == 0:
                    run_validation()
                if step % cfg.checkpoint_interval == 0 or step == cfg.n_iter:
                    save_last()
                if step == end:
                    break
                x, data_error = _next_batch(batches)  # (the batch of the next step, see above)
                out_of_time = bool(cfg.max_minutes) and (time.monotonic() - start_time) / 60 >= cfg.max_minutes
                # Every rank stops for the same reason (each sees its own clock and signals): the strongest one.
                why = 3 if stop.by == "SIGTERM" else 2 if stop.requested else 1 if out_of_time else 0
                why = _max_over_ranks(_DATA_ERROR + dist.rank if data_error is not None else why, dist, device)
                if why:
                    stopped = (
                        "data error" if why >= _DATA_ERROR else ("time budget", "interrupted", "terminated")[why - 1]
                    )
                    break
            _shut_down_workers(batches)  # before the stop's checkpoint
            if bar is not None:
                bar.close()
                bar = None
            if stopped in ("interrupted", "terminated") and dist.main:  # (said now: the validation may take long)
                # What the stop below does (the same conditions), and the signal the ranks agreed on.
                todo = [f"writing {last_path.name}"] if step > first_step and step % cfg.checkpoint_interval else []
                todo += ["scoring a last validation"] if step > first_step and step % cfg.val_interval else []
                signal_name = stop.by or f"{'Ctrl-C' if stopped == 'interrupted' else 'SIGTERM'} (in another process)"
                again = stop.by is not None and stop.repeat_interrupts and bool(todo)
                log(
                    f"{signal_name}: stopping at step {step}"
                    + (f": {' and '.join(todo)}" if todo else "")
                    + (" (Ctrl-C again stops at once)" if again else "")
                )
            if stopped == "data error":
                _save_after_data_error(why - _DATA_ERROR)
                if data_error is not None:
                    raise data_error
                raise DataError(
                    f"the batch of step {step} could not be made by process {why - _DATA_ERROR} of the job (its "
                    "error is in that process's output)"
                )
            if stopped != "nan" and end <= step < cfg.n_iter:  # (also a resume already past --max-steps)
                stopped = "max steps"
            # Still under the stop's signal handlers: a repeated signal does not cost the checkpoint.
            if stopped in ("time budget", "interrupted", "terminated", "max steps") and step > first_step:
                if step % cfg.checkpoint_interval:  # first: after a SIGTERM the scheduler's grace period is running
                    save_last()
                if step % cfg.val_interval:  # a score for the log; model selection stays on the official grid
                    run_validation(select=False)
            if stopped in ("time budget", "interrupted", "terminated", "max steps"):
                if dist.main:
                    reason = {
                        "time budget": f"time budget of {cfg.max_minutes} min, from {_budget_source()}",
                        "max steps": "--max-steps",
                        "terminated": "SIGTERM",
                        "interrupted": "Ctrl-C",
                    }
                    log(
                        f"stopped at step {step} of {cfg.n_iter} ({reason[stopped]}); continue with: "
                        f"{_continue_hint(run_dir)}"
                    )
    except BaseException:
        logger.close()  # (its TensorBoard writer's thread would outlive a failed call in a notebook or a sweep)
        raise
    finally:
        # Also after an error: the workers ignore SIGTERM (see _ignore_stop_signals), so workers left alive
        # would hang the interpreter's exit, which terminates and then joins them.
        _shut_down_workers(batches)
        if bar is not None:
            bar.close()
    if dist.world > 1:
        same = _params_identical_across_ranks(model, device)
        logger.log(step, {"ddp_world_size": dist.world, "ddp_params_identical": same})
        if dist.main:
            log(f"DDP: {dist.world} processes, parameters identical across ranks: {same}")
    logger.close()
    del net  # DDP's reducer holds the process group: it goes first, while the group registry still holds it
    if owns_group:
        # Left to the interpreter's exit, the process group's threads can abort the process ("terminate
        # called without an active exception", seen once in a few dozen 2-process runs).
        torch.distributed.barrier()
        # torch 2.2's gloo group joins its worker thread in its destructor without releasing the GIL, and a
        # worker still freeing the tensors of a finished collective waits for the GIL: a deadlock, seen once
        # in CI when the last reference to the group was DDP's reducer, freed as train() returned. A pause that
        # lets the worker take the GIL and finish comes before the group is destroyed.
        time.sleep(0.1)
        torch.distributed.destroy_process_group()
    return TrainResult(run_dir, step, losses, best, stopped)


def _adjoint_gradient_note(model: ModelConfig) -> str | None:
    """latentdyn's warning on the adjoint of a low-order fixed-grid method (its gradient is the continuous ODE's,
    not the computed states'), in the command's flags; None when it does not apply."""
    order = LOW_ORDER_METHODS.get(model.integrator)
    if not model.adjoint or order is None or model.family != "srvp":
        return None
    return (
        f"warning: --adjoint true with --integrator {model.integrator} (order {order}): the adjoint gives the "
        "gradient of the continuous ODE, which differs from the gradient of the computed states by the method's "
        "discretisation error (in one measured example, relative: 26 % for Euler with one step per frame); use "
        "--integrator rk4 or an adaptive method such as dopri5, or --adjoint false for backprop's exact gradient"
    )


@ends_quietly_on_a_closed_pipe
@robust_output()
@warnings_as_lines(ADJOINT_GRADIENT_WARNING)
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m examples.srvp.train``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is None and args.run_dir is None:
        parser.error("give --run-dir DIR for a new run, or --resume RUN_DIR")
    if args.resume is not None and args.run_dir is not None and args.run_dir != args.resume:
        parser.error("--run-dir and --resume name different directories; --resume RUN_DIR continues RUN_DIR")
    if args.auto_resume:
        if args.run_dir is None or args.resume is not None:
            parser.error("--auto-resume goes with --run-dir DIR (it starts the run there or continues it)")
        if (args.run_dir / "config.json").exists():  # (each rank looks before rank 0 may write it)
            args.resume = args.run_dir
            if args.init_from is not None:  # (a requeued job: the run started from them already)
                print(f"{args.run_dir} holds a run: it continues from its own checkpoint, not --init-from")
                args.init_from = None
    if args.init_from is not None and args.resume is not None:
        parser.error("--init-from starts a new run (--run-dir DIR); --resume continues a run from its own last.pt")
    try:
        cfg = config_from_args(args)
        adjoint = _adjoint_gradient_note(cfg.model)
        if adjoint is not None and _Dist.from_env().main:  # (latentdyn's warning of it names Python arguments)
            print(adjoint, file=sys.stderr)
        run_dir = args.resume if args.resume is not None else args.run_dir
        with cli_hints(**_budget_hints(args)):
            result = train(cfg, run_dir, resume=args.resume is not None, init_from=args.init_from)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, DataError) as e:
        message = str(e)
        if args.auto_resume and message.startswith("--resume:"):  # (the user gave --auto-resume, not --resume)
            message = "--auto-resume:" + message.removeprefix("--resume:")
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a run directory that cannot be written
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # weights that are not finite, which no checkpoint may hold
        print(f"error: {e}", file=sys.stderr)
        return EXIT_STATUS["nan"]
    except KeyboardInterrupt:  # a second Ctrl-C (or the first during set-up): no checkpoint of the step in progress
        print(f"\ninterrupted; {_after_interrupt(args, parser, argv)}", file=sys.stderr)
        return 130
    if _Dist.from_env().main:
        print(f"run directory: {result.run_dir} (step {result.step}, {result.stopped})")
        if result.best_val_psnr is not None:
            print(
                f"best validation PSNR: {result.best_val_psnr:.2f} dB -> {result.run_dir / 'checkpoints' / 'best.pt'}"
            )
        if result.stopped != "nan":
            print(f"evaluate: {evaluate_command(result.run_dir, cfg.dataset, cfg.data_dir, cfg=cfg)}")
    return exit_status(result.stopped)


def _after_interrupt(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str] | None) -> str:
    """What continues a command line that Ctrl-C ended outside the training loop: a resume, the same command (its
    --lr, --max-minutes ... would be lost with a bare ``--resume RUN_DIR``); a new run, ``--resume RUN_DIR`` once it
    exists (its config.json: the same command would refuse the existing run), else (its set-up: reading the data,
    building the model) the same command, as ``--resume`` would find no run."""
    run_dir = args.resume if args.resume is not None else args.run_dir
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ  # (the command to give again is torchrun's: not seen from here)
    command = " ".join([parser.prog, *map(shell_quote, sys.argv[1:] if argv is None else argv)])
    if args.resume is not None:
        again = "the same torchrun command again" if torchrun else f"the same command again: {command}"
        return f"continue from the last checkpoint with {again}"
    if (run_dir / "config.json").exists():
        return f"continue from the last checkpoint with: python -m examples.srvp.train --resume {shell_quote(run_dir)}"
    said = f"no run was made in {run_dir} yet (it has no config.json); "
    if torchrun:
        return said + "start it with the same torchrun command again"
    return said + f"start it with the same command again: {command}"


#: The exit status of a run by how it stopped: a stop asked for by a signal is not a success (so that
#: ``train && evaluate`` does not go on), and reads as the shell's 128 + signal number; a diverged loss is 1.
EXIT_STATUS = {"nan": 1, "interrupted": 130, "terminated": 143}


def exit_status(stopped: str) -> int:
    """The process exit status of a run that stopped so (``TrainResult.stopped``): 0 unless in ``EXIT_STATUS``."""
    return EXIT_STATUS.get(stopped, 0)


def _budget_hints(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`cli_hints`' time-budget arguments for this command line: a ``--max-minutes`` given applies to this
    invocation only (a new run's config.json keeps its preset's budget, which a resume without the flag runs
    with), and the stop message says where the budget came from."""
    given = getattr(args, "train.max_minutes", None) is not None
    preset = args.preset or "smmnist"
    if args.resume is not None and not args.auto_resume:  # the budget of the run's config.json, unless given
        return {"budget_from": "--max-minutes" if given else f"{args.resume / 'config.json'}"}
    return {
        "budget_from": "--max-minutes" if given else f"the {preset} preset's default (--max-minutes changes it)",
        "saved_minutes": PRESETS[preset]().max_minutes,
    }


def evaluate_command(run_dir: Path, dataset: str, data_dir: str = "", *, cfg: TrainConfig | None = None) -> str:
    """The command that evaluates a run: the real datasets' test data is found from the run's data_dir; a run
    on a folder of videos (or on the clips of an ``.npz``, its ``data_dir``) is told to name its test videos; a
    Moving MNIST run is told the complete command that makes its test set (from ``cfg``'s data settings)."""
    command = f"python -m examples.srvp.evaluate {shell_quote(run_dir)}"
    if dataset == "smmnist":
        from examples.srvp.data import smmnist_test_set_command

        settings: dict[str, Any] = {"mnist_dir": data_dir or "embedded"}
        if cfg is not None:
            settings.update(deterministic=cfg.deterministic, num_digits=cfg.num_digits, max_speed=cfg.max_speed)
        make, file = smmnist_test_set_command(**settings)
        return f"{command} --test-set {shell_quote(file)} (make that test set first with: {make})"
    if dataset == "folder":
        return f"{command} --test-set {'TEST_CLIPS.npz' if data_dir.endswith('.npz') else 'FOLDER_OF_TEST_VIDEOS'}"
    return command


if __name__ == "__main__":
    sys.exit(main())
