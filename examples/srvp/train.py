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
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from examples.srvp.checkpoint import (
    atomic_write_text,
    load_checkpoint,
    read_run_config,
    save_checkpoint,
)
from examples.srvp.config import ModelConfig, config_from_dict, config_to_dict
from examples.srvp.model import SRVP

__all__ = ["PRESETS", "TrainConfig", "main", "train", "train_config_from_official"]


@dataclass(frozen=True)
class TrainConfig:
    """Training, data and validation options (defaults: the official ones)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: str = "smmnist"  # smmnist (stochastic or deterministic Moving MNIST)
    data_dir: str = "embedded"  # MNIST directory (torchvision layout) or "embedded" (digits shipped with latentdyn)
    num_digits: int = 2  # ndigits: digits per Moving MNIST clip
    max_speed: int = 4  # max_speed: Moving MNIST velocity bound
    deterministic: bool = False  # deterministic: bounces keep the velocity
    seq_len: int = 15  # seq_len: training clip length
    batch_size: int = 128  # batch_size
    lr: float = 3e-4  # lr: Adam learning rate
    lr_burnin: int = 1_000_000  # lr_scheduling_burnin: steps at constant lr
    lr_decay: int = 100_000  # lr_scheduling_n_iter: steps of linear decay to 0 after the burn-in
    nt_cond: int = 5  # nt_cond: conditioning frames in validation and test
    seq_len_test: int = 0  # seq_len_test: validation clip length (0: seq_len)
    val_interval: int = 20_000  # val_interval: steps between validations
    val_sequences: int = 400  # n_iter_test * batch_size_test: validation clips (fixed, from held-out digits)
    val_batch_size: int = 16  # batch_size_test
    val_samples: int = 100  # n_samples_test: samples per validation clip (best of N)
    checkpoint_interval: int = 1000  # steps between checkpoints/last.pt writes (also at the end)
    seed: int = 1  # seed of the model init, the data stream and the noise
    n_workers: int = 0  # DataLoader workers generating batches
    device: str = "cpu"  # cpu, cuda, cuda:1 ...
    amp: str = "none"  # none, bf16 or fp16 autocast (loss terms in fp32)
    compile: bool = False  # torch.compile the model
    channels_last: bool = False  # channels_last memory format for the conv nets
    max_minutes: float = 0.0  # stop (with a checkpoint) after this many minutes; 0: no budget
    threads: int = 0  # torch CPU threads (0: torch's default)

    @property
    def n_iter(self) -> int:
        """Total number of steps: burn-in plus decay."""
        return self.lr_burnin + self.lr_decay

    def __post_init__(self) -> None:
        if self.dataset not in ("smmnist",):
            raise ValueError(f"dataset: expected 'smmnist', got {self.dataset!r}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp: expected one of 'none', 'bf16', 'fp16', got {self.amp!r}")
        for name in (
            "num_digits",
            "seq_len",
            "batch_size",
            "nt_cond",
            "val_interval",
            "val_sequences",
            "val_batch_size",
            "val_samples",
            "checkpoint_interval",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        if self.lr_burnin < 0 or self.lr_decay < 0 or self.n_iter < 1:
            raise ValueError(
                f"lr_burnin, lr_decay: expected >= 0 with a positive sum, got {self.lr_burnin}, {self.lr_decay}"
            )
        if self.seq_len < self.model.n_inference_frames:
            raise ValueError(
                f"seq_len: expected at least n_inference_frames={self.model.n_inference_frames}, got {self.seq_len}"
            )
        if self.nt_cond < self.model.n_inference_frames:
            raise ValueError(
                f"nt_cond: expected at least n_inference_frames={self.model.n_inference_frames}, got {self.nt_cond}"
            )
        if self.test_len <= self.nt_cond:
            raise ValueError(f"seq_len_test: expected more than nt_cond={self.nt_cond} frames, got {self.test_len}")

    @property
    def test_len(self) -> int:
        """Validation clip length."""
        return self.seq_len_test or self.seq_len


# --------------------------------------------------------------------------------------------------- presets
def _paper(model: dict[str, Any], **train: Any) -> TrainConfig:
    return TrainConfig(model=ModelConfig(**model), **train)


PRESETS: dict[str, Callable[[], TrainConfig]] = {
    # The official README command lines (SPEC §4.2).
    "smmnist": lambda: _paper(
        dict(state_size=20, noise_size=20, n_inference_frames=5, beta_z=2.0),
        seq_len=15,
        nt_cond=5,
        batch_size=128,
        lr_burnin=1_000_000,
        lr_decay=100_000,
    ),
    "smmnist-deterministic": lambda: _paper(
        dict(state_size=20, noise_size=20, n_inference_frames=5, beta_z=2.0),
        deterministic=True,
        seq_len=15,
        nt_cond=5,
        batch_size=128,
        lr_burnin=800_000,
        lr_decay=100_000,
    ),
    # The out-of-the-box CPU run: about 12 minutes on 2 cores (see README for the choice and its numbers).
    "smmnist-cpu": lambda: _paper(
        dict(state_size=20, noise_size=20, n_inference_frames=5, conv_width=16, obs_scale=0.2, beta_z=1.0),
        seq_len=15,
        nt_cond=5,
        seq_len_test=15,
        batch_size=16,
        lr=3e-4,
        lr_burnin=5_000,
        lr_decay=1_000,
        val_interval=1_000,
        val_sequences=32,
        val_samples=10,
        amp="bf16",
        max_minutes=14.0,
        checkpoint_interval=500,
    ),
    # A few seconds: for tests and smoke runs.
    "tiny": lambda: _paper(
        dict(
            state_size=4,
            noise_size=3,
            n_inference_frames=2,
            conv_width=4,
            code_size=16,
            inference_hidden=16,
            residual_hidden=16,
            image_size=64,
            inference_layers=2,
            residual_layers=2,
        ),
        seq_len=6,
        nt_cond=2,
        seq_len_test=6,
        batch_size=4,
        lr_burnin=4,
        lr_decay=2,
        val_interval=3,
        val_sequences=4,
        val_batch_size=2,
        val_samples=2,
        checkpoint_interval=2,
    ),
}


def train_config_from_official(options: dict[str, Any]) -> TrainConfig:
    """The training options of an official ``config.json`` (model options via ``model_config_from_official``)."""
    from examples.srvp.config import model_config_from_official

    dataset = options.get("dataset", "smmnist")
    return TrainConfig(
        model=model_config_from_official(options),
        dataset="smmnist" if dataset not in ("smmnist",) else dataset,
        num_digits=int(options.get("ndigits", 2)),
        max_speed=int(options.get("max_speed", 4)),
        deterministic=bool(options.get("deterministic", False)),
        seq_len=int(options["seq_len"]),
        batch_size=int(options.get("batch_size", 128)),
        lr=float(options.get("lr", 3e-4)),
        lr_burnin=int(options.get("lr_scheduling_burnin", 1_000_000)),
        lr_decay=int(options.get("lr_scheduling_n_iter", 100_000)),
        nt_cond=int(options["nt_cond"]),
        seq_len_test=int(options.get("seq_len_test") or 0) or max(int(options["seq_len"]), int(options["nt_cond"]) + 1),
        val_interval=int(options.get("val_interval", 20_000)),
        val_batch_size=int(options.get("batch_size_test", 16)),
        val_samples=int(options.get("n_samples_test", 100)),
        seed=int(options.get("seed") or 1),
    )


# ------------------------------------------------------------------------------------------------ the CLI
_RUNTIME_FIELDS = {"n_workers", "device", "max_minutes", "threads", "compile"}
"""Options that may change when resuming (they do not change the computation's results on one device)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls: type[Any], group_title: str) -> None:
    group = parser.add_argument_group(group_title)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type) or f.name == "model":
            continue
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        conv: Callable[[str], Any] = {"int": int, "float": float, "str": str, "bool": _parse_bool}[kind]
        group.add_argument(
            _flag(f.name),
            dest=f"{group_title}.{f.name}",
            type=conv,
            default=None,
            metavar=kind.upper(),
            help="(default from the preset)",
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
    parser = argparse.ArgumentParser(
        prog="python -m examples.srvp.train",
        description="Train SRVP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="base configuration")
    parser.add_argument("--run-dir", type=Path, default=None, help="output directory (must not hold a run)")
    parser.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue this run exactly")
    _add_dataclass_flags(parser, ModelConfig, "model")
    _add_dataclass_flags(parser, TrainConfig, "train")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Preset + overrides -> TrainConfig (errors name the option)."""
    overrides = {"model": {}, "train": {}}  # type: dict[str, dict[str, Any]]
    for key, value in vars(args).items():
        if "." in key and value is not None:
            group, name = key.split(".", 1)
            overrides[group][name] = value
    if args.resume is not None:
        saved = read_run_config(args.resume)
        base = config_from_dict(TrainConfig, {**saved["train"], "model": saved["model"]})
        conflicts = {
            **{
                f"--{k.replace('_', '-')}": (getattr(base.model, k), v)
                for k, v in overrides["model"].items()
                if getattr(base.model, k) != v
            },
            **{
                f"--{k.replace('_', '-')}": (getattr(base, k), v)
                for k, v in overrides["train"].items()
                if getattr(base, k) != v and k not in _RUNTIME_FIELDS
            },
        }
        if conflicts:
            detail = ", ".join(f"{k} saved {a!r} vs given {b!r}" for k, (a, b) in conflicts.items())
            raise ValueError(f"--resume: options conflict with the run's config.json: {detail}")
        runtime = {k: v for k, v in overrides["train"].items() if k in _RUNTIME_FIELDS}
        return dataclasses.replace(base, **runtime)
    base = PRESETS[args.preset or "smmnist"]()
    model = dataclasses.replace(base.model, **overrides["model"])
    return dataclasses.replace(base, model=model, **overrides["train"])


# ----------------------------------------------------------------------------------------------------- data
def _step_seed(seed: int, step: int, stream: int = 0) -> int:
    """Seed of the batch of ``step``: distinct per (seed, step), so batches do not depend on workers or resumes.

    ``stream`` separates independent uses (0: training batches, 1: the validation clips)."""
    return int(np.random.SeedSequence([seed, step], spawn_key=(stream,)).generate_state(1)[0])


class BatchStream(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Training batches indexed by step: item s is the batch of step s, generated from its own seed."""

    def __init__(self, make_batch: Callable[[np.random.RandomState], np.ndarray], seed: int) -> None:
        self.make_batch = make_batch
        self.seed = seed

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, step: int) -> torch.Tensor:
        from latentdyn.video.collate import collate_videos

        return collate_videos(list(self.make_batch(np.random.RandomState(_step_seed(self.seed, step)))))


def _digits(cfg: TrainConfig, split: str) -> np.ndarray:
    from latentdyn.video.mnist import digit_source

    return np.asarray(digit_source(cfg.data_dir, split).images)


def generate_clips(
    pool: np.ndarray,
    n: int,
    seq_len: int,
    rng: np.random.RandomState,
    *,
    num_digits: int,
    max_speed: int,
    deterministic: bool,
) -> np.ndarray:
    """n Moving MNIST clips, uint8 (n, T, 64, 64), drawn from ``rng`` in the official per-clip order."""
    from latentdyn.video.moving_mnist import compose_frames, draw_trajectory

    clips = []
    for _ in range(n):
        chosen, positions = [], []
        for _ in range(num_digits):
            chosen.append(pool[rng.randint(0, len(pool))])
            traj = draw_trajectory(
                rng, seq_len=seq_len, limit=64 - pool.shape[1], deterministic=deterministic, max_speed=max_speed
            )
            positions.append(traj.positions)
        clips.append(compose_frames(chosen, positions, 64))
    return np.stack(clips)


def make_data(cfg: TrainConfig) -> tuple[BatchStream, torch.Tensor]:
    """Training stream and the fixed validation clips (T, N, C, H, W) from held-out digits."""
    digits = _digits(cfg, "train")
    rs = np.random.RandomState(42)  # 95/5 split of the training digits, as the official get_fold
    order = rs.permutation(len(digits))
    n_train = int(0.95 * len(digits))
    train_digits, val_digits = digits[order[:n_train]], digits[order[n_train:]]

    def make_batch(
        rng: np.random.RandomState, pool: np.ndarray = train_digits, n: int = cfg.batch_size, t: int = cfg.seq_len
    ) -> np.ndarray:
        return generate_clips(
            pool, n, t, rng, num_digits=cfg.num_digits, max_speed=cfg.max_speed, deterministic=cfg.deterministic
        )

    from latentdyn.video.collate import collate_videos

    val = collate_videos(
        list(
            make_batch(
                np.random.RandomState(_step_seed(cfg.seed, 0, stream=1)), val_digits, cfg.val_sequences, cfg.test_len
            )
        )
    )
    return BatchStream(make_batch, cfg.seed), val


# ------------------------------------------------------------------------------------------------- training
def lr_factor(step: int, burnin: int, decay: int) -> float:
    """Learning-rate factor after ``step`` updates: 1 during the burn-in, then linear to 0 over ``decay``."""
    if step <= burnin:
        return 1.0
    return max(0.0, (decay - (step - burnin)) / decay) if decay > 0 else 0.0


def autocast(cfg: TrainConfig, device: torch.device) -> Any:
    """The autocast context of the configuration (a no-op for fp32)."""
    if cfg.amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def validate(model: SRVP, cfg: TrainConfig, val: torch.Tensor, device: torch.device) -> float:
    """Best-of-N PSNR on the validation clips (higher is better).

    As the official validation, the best sample is chosen on the PSNR over all frames (conditioning
    reconstructions included); its PSNR over the predicted frames is averaged over clips.
    """
    from einops import rearrange

    from latentdyn.video.metrics import psnr

    was_training = model.training
    model.eval()
    scores = []
    for start in range(0, val.shape[1], cfg.val_batch_size):
        x = val[:, start : start + cfg.val_batch_size].to(device)
        with autocast(cfg, device):
            pred = model.predict(x[: cfg.nt_cond], x.shape[0] - cfg.nt_cond, cfg.val_samples)
        frames = torch.cat([pred.cond_frames, pred.frames], dim=1).float()  # (N, T, B, C, H, W)
        p = rearrange(psnr(frames, x.float().expand_as(frames)), "n t b -> n b t")
        best = p.mean(-1).argmax(0)  # (B,)
        chosen = p[best, torch.arange(p.shape[1])]  # (B, T)
        scores.append(chosen[:, cfg.nt_cond :].mean(-1))
    model.train(was_training)
    return float(torch.cat(scores).mean())


class _Logger:
    """JSONL log, optional TensorBoard."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.path = run_dir / "train_log.jsonl"
        self.enabled = enabled
        self.tb: Any = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:  # tensorboard is an optional extra
                self.tb = None

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
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
    stopped: str  # "done", "time budget" or "nan"


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train (or resume) a run; returns when the schedule, ``max_steps`` or the time budget ends.

    Args:
        cfg: the configuration (on resume, the run's own).
        run_dir: output directory; must not already hold a run unless ``resume``.
        resume: continue from ``run_dir/checkpoints/last.pt``.
        max_steps: stop after this global step (tests, smoke runs).
        progress: show a tqdm progress bar.
        log: where messages go.
    """
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if not resume and (run_dir / "config.json").exists():
        raise FileExistsError(f"--run-dir: {run_dir} already holds a run; use --resume {run_dir} or another directory")
    torch.manual_seed(cfg.seed)
    model = SRVP(cfg.model).init_weights().to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.lr_burnin, cfg.lr_decay))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    step, best = 0, None
    if resume:
        state = load_checkpoint(ckpt_dir / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, best = int(state["step"]), state.get("best_val_psnr")
        log(f"resuming {run_dir} at step {step}")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            run_dir / "config.json",
            json.dumps(
                {
                    "model": config_to_dict(cfg.model),
                    "train": {k: v for k, v in config_to_dict(cfg).items() if k != "model"},
                },
                indent=2,
            ),
        )
    stream, val = make_data(cfg)
    end = cfg.n_iter if max_steps is None else min(cfg.n_iter, max_steps)
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        sampler=range(step, end),
        num_workers=cfg.n_workers,
        persistent_workers=False,
        prefetch_factor=4 if cfg.n_workers else None,
    )
    net: Any = torch.compile(model) if cfg.compile else model
    logger = _Logger(run_dir, enabled=True)

    def checkpoint(name: str) -> None:
        save_checkpoint(
            ckpt_dir / f"{name}.pt",
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "rng": _rng_state(device),
                "best_val_psnr": best,
                "config": {"model": config_to_dict(cfg.model)},
            },
        )

    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=end, initial=step, dynamic_ncols=True, unit="it", smoothing=0.05)
    start_time = time.monotonic()
    losses: list[float] = []
    stopped = "done"
    seqs, t_rate = 0, time.monotonic()
    model.train()
    batches: Iterator[torch.Tensor] = iter(loader)  # (creating the iterator draws from torch's RNG)
    if resume:
        _set_rng_state(state["rng"], device)
    try:
        for x in batches:
            x = x.to(device, non_blocking=True)
            with autocast(cfg, device):
                out = net.infer(x) if not cfg.compile else net(x)[1]
            terms = model.loss_terms(x, out)
            if not math.isfinite(float(terms.total.detach())):
                stopped = "nan"
                log(
                    f"step {step}: loss is {float(terms.total.detach())}; stopping. The last good checkpoint is "
                    f"{ckpt_dir / 'last.pt'} (step of the last periodic save)."
                )
                break
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms.total).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            seqs += x.shape[1]
            values = {k: float(v.detach()) for k, v in terms._asdict().items()}
            losses.append(values["total"])
            if step % 10 == 0 or step == end:
                logger.log(step, {**values, "lr": scheduler.get_last_lr()[0]})
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
            if step % cfg.val_interval == 0 or step == end:
                score = validate(model, cfg, val, device)
                logger.log(step, {"val_psnr": score})
                if best is None or score > best:
                    best = score
                    checkpoint("best")
                if bar is not None:
                    bar.write(
                        f"step {step}: validation best-of-{cfg.val_samples} PSNR {score:.2f} dB (best {best:.2f})"
                    )
            if step % cfg.checkpoint_interval == 0 or step == end:
                checkpoint("last")
            if cfg.max_minutes and (time.monotonic() - start_time) / 60 >= cfg.max_minutes:
                stopped = "time budget"
                break
    finally:
        if bar is not None:
            bar.close()
        logger.close()
    if stopped == "time budget":
        if best is None or step % cfg.val_interval:
            score = validate(model, cfg, val, device)
            logger.log(step, {"val_psnr": score})
            if best is None or score > best:
                best = score
                checkpoint("best")
        checkpoint("last")
        log(f"time budget of {cfg.max_minutes} min reached at step {step}")
    return TrainResult(run_dir, step, losses, best, stopped)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m examples.srvp.train``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is None and args.run_dir is None:
        parser.error("give --run-dir DIR for a new run, or --resume RUN_DIR")
    try:
        cfg = config_from_args(args)
        run_dir = args.resume if args.resume is not None else args.run_dir
        result = train(cfg, run_dir, resume=args.resume is not None)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"run directory: {result.run_dir} (step {result.step}, {result.stopped})")
    if result.best_val_psnr is not None:
        print(f"best validation PSNR: {result.best_val_psnr:.2f} dB -> {result.run_dir / 'checkpoints' / 'best.pt'}")
    print(f"evaluate: python -m examples.srvp.evaluate {result.run_dir} --test-set FILE")
    return 1 if result.stopped == "nan" else 0


if __name__ == "__main__":
    sys.exit(main())
