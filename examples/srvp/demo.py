"""Three things a trained SRVP can do that a frame-by-frame predictor cannot, saved as GIFs.

    python -m examples.srvp.demo RUN_DIR --test-set FILE --out DIR [--what framerate|swap|interpolate|all]

- **framerate** (``frame_rate.gif``): the latent dynamics are an ODE integrated with Euler sub-steps, so the
  model can predict with 2× and 4× the training sub-steps and decode every intermediate state: rows show the
  ground truth, the training frame rate, 2× and 4× (each frame held until the next one, so rows play in sync).
- **swap** (``content_swap.gif``): the content w (and the skip connections) of clip A decoded along the
  dynamics (y_0, z) of clip B, and the other way round. Rows: dynamics of A, dynamics of B; columns: ground
  truth, prediction, prediction with the other clip's content.
- **interpolate** (``interpolation.gif``): the mean of q(y_0) of two clips, linearly interpolated and rolled out
  with the mean of the prior (no sampling), decoded with the content of clip A. Columns: ground truth A,
  the interpolation from A to B, ground truth B.

RUN_DIR is a run directory of ``examples.srvp.train`` (or one written by ``examples.srvp.official convert``).
The test set is an ``.npz`` file whose ``sequences`` array holds uint8 clips: time-major (T, N, H, W) or
(T, N, H, W, C), e.g. the one ``python -m examples.srvp.data smmnist-test-set`` writes, or a KTH test set
``svg_test_set_<T>.npz`` of ``python -m examples.srvp.data kth-test-set``, which is sample-major (N, T, H, W).
For a KTH, Human3.6M, BAIR or folder-of-videos run it may also be what ``examples.srvp.evaluate`` reads for
that dataset (a data directory, a Human3.6M ``test_set_<T>_<s>`` folder, a folder of videos), read with the
evaluation's clip length. Without ``--test-set`` the run's ``data_dir`` is used: the test split of a KTH,
Human3.6M or BAIR data directory, as evaluate reads it; for a folder-of-videos run, whose ``data_dir`` holds its
training videos (evaluate asks for ``--test-set`` there), those videos, and the printed summary says so.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from einops import rearrange, repeat

from examples.srvp._cli import (
    ADJOINT_GRADIENT_WARNING,
    CliParser,
    add_threads,
    add_version,
    cpu_threads,
    ends_quietly_on_a_closed_pipe,
    refuse_torchrun,
    require_modules,
    robust_output,
    shell_quote,
    user_path,
    warnings_as_lines,
)
from examples.srvp.checkpoint import (
    check_writable,
    load_model,
    os_error_message,
    read_run_config,
)
from examples.srvp.config import DATASETS, resolve_device
from examples.srvp.evaluate import (
    KTH_TEST_SET_NAME,
    default_nt_gen,
    load_test_clips,
    read_clip_archive,
    run_clip_options,
    smmnist_test_set_hint,
)
from examples.srvp.model import SRVP
from latentdyn.ssm import Sampler, default_sampler
from latentdyn.video.media import save_gif, video_grid

__all__ = ["content_swap", "frame_rate", "interpolation", "load_clips", "load_run_clips", "main", "seeded_sampler"]

DEMOS = ("framerate", "swap", "interpolate")


def load_clips(path: str | Path) -> torch.Tensor:
    """Clips of a test-set ``.npz`` (key ``sequences``, uint8) as floats in [0, 1], (T, N, C, H, W).

    A KTH test set (named ``svg_test_set_<T>.npz``, sample-major) is read with
    :func:`examples.srvp.evaluate.load_test_clips`; any other file must be time-major (T, N, H, W[, C]).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"--test-set: no file at {file}")
    if KTH_TEST_SET_NAME.fullmatch(file.name):
        return load_test_clips("kth", file, nt_gen=0).float() / 255
    return read_clip_archive(file).float() / 255


def load_run_clips(path: Path | None, run: dict[str, Any], model: SRVP, n_clips: int) -> tuple[torch.Tensor, Path]:
    """The first ``n_clips`` test clips for a run, floats in [0, 1] (T, N, C, H, W), and the path they came from.

    An ``.npz`` file is read with :func:`load_clips`. Any other path, or the run's ``data_dir`` when ``path`` is
    None, is read as ``examples.srvp.evaluate`` reads the run's dataset (KTH, Human3.6M, BAIR, folder), with
    the evaluation's default clip length.
    """
    train_cfg = run.get("train", {})
    dataset = train_cfg.get("dataset") or "smmnist"
    if dataset not in DATASETS:  # (load_test_clips would blame --dataset, which evaluate has and the demo not)
        raise ValueError(f"run_dir: config.json: train.dataset: expected one of {DATASETS}, got {dataset!r}")
    if path is None:
        if dataset == "smmnist":
            raise ValueError(f"--test-set: required for a Moving MNIST run ({smmnist_test_set_hint(train_cfg)})")
        if not train_cfg.get("data_dir"):
            raise ValueError(f"--test-set: required for this {dataset!r} run (its config.json names no data_dir)")
        path = Path(train_cfg["data_dir"])
    if dataset == "smmnist" or (path.suffix == ".npz" and dataset != "folder"):
        return load_clips(path), path
    if not path.exists():
        raise FileNotFoundError(f"--test-set: nothing at {path}")
    nt_gen = default_nt_gen(dataset, train_cfg) or 0
    clips = load_test_clips(dataset, path, nt_gen=nt_gen, max_sequences=n_clips, **run_clip_options(train_cfg, model))
    return clips.float() / 255, path


def seeded_sampler(seed: int) -> Sampler:
    """Reparameterised samples mean + std·ε with ε from a private generator seeded with ``seed``: two
    predictions with the same seed draw the same noise in the same order (y_0, posterior z, one prior z per
    frame), on any device."""
    return default_sampler(generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def frame_rate(
    model: SRVP, clip: torch.Tensor, n_cond: int, n_future: int, *, factors: tuple[int, ...] = (1, 2, 4), seed: int = 0
) -> np.ndarray:
    """Predictions of one clip (T, 1, C, H, W) with ``f`` times the training sub-steps for every f in factors.

    Every row is put on the finest grid (n_max sub-steps per frame) by showing, at each fine time, the latest
    frame the row has; the conditioning frames (ground truth) come first in every row.

    Returns:
        A uint8 grid (T_total, H', W', 3), T_total = (n_cond + n_future) · n_max.
    """
    base = model.config.n_substeps
    n_max = base * max(factors)
    cond = clip[:n_cond]
    fine = torch.arange(1, n_future * n_max + 1)
    held_cond = cond[:, 0].repeat_interleave(n_max, dim=0)  # (n_cond·n_max, C, H, W)

    def on_fine_grid(seq: torch.Tensor, per_frame: int) -> torch.Tensor:
        # seq[0] is the last conditioning frame, seq[j] (j >= 1) is at time n_cond − 1 + j/per_frame.
        return torch.cat([held_cond, seq[fine * per_frame // n_max]])

    rows = [on_fine_grid(clip[n_cond - 1 : n_cond + n_future, 0], 1)]
    for f in factors:
        n = base * f
        pred = model.predict(cond, n_future, 1, n_substeps=n, substep_frames=True, sampler=seeded_sampler(seed))
        rows.append(on_fine_grid(torch.cat([cond[-1:, 0], pred.frames[0, :, 0]]), n))
    return video_grid(torch.stack(rows))


@torch.no_grad()
def content_swap(model: SRVP, clips: torch.Tensor, n_cond: int, n_future: int, *, seed: int = 0) -> np.ndarray:
    """Two clips (T, 2, C, H, W): each clip's dynamics decoded with its own and with the other's content.

    Returns:
        A uint8 grid (n_cond + n_future, H', W', 3): row r = dynamics of clip r; columns = ground truth,
        prediction, prediction with the content (w and skips) of the other clip.
    """
    cond = clips[:n_cond]
    pred = model.predict(cond, n_future, 1, sampler=seeded_sampler(seed))
    states = torch.cat([pred.cond_rollout.states, pred.states[0]])  # (T, 2, Dy): y_0, z of each clip
    w, skips = model.prediction_conditioning(model.encode(cond))
    own = model.decode(states, w, skips).clamp(0, 1)
    other = model.decode(states, None if w is None else w.flip(0), [s.flip(0) for s in skips]).clamp(
        0, 1
    )  # content of clip 1 − r on the dynamics of clip r
    truth = clips[: n_cond + n_future]
    return video_grid(rearrange(torch.stack([truth, own, other]), "k t r c h w -> r k t c h w"))


@torch.no_grad()
def interpolation(model: SRVP, clips: torch.Tensor, n_cond: int, n_future: int, *, steps: int = 7) -> np.ndarray:
    """Mean initial states of two clips (T, 2, C, H, W), interpolated and rolled out with the mean prior.

    y_0(α) = (1 − α)·E[y_0 | clip A] + α·E[y_0 | clip B] for ``steps`` values of α in [0, 1]; each is rolled
    out over n_cond + n_future frames with the prior's mean z and decoded with the content of clip A.

    Returns:
        A uint8 grid (n_cond + n_future, H', W', 3): one row of steps + 2 videos (truth A, α = 0 … 1, truth B).
    """
    cond = clips[:n_cond]
    y0 = model.q_y(model.encode(cond).codes).mean  # (2, Dy)
    alpha = torch.linspace(0, 1, steps, device=y0.device, dtype=y0.dtype)[:, None]  # (y0: bf16 under autocast)
    y0s = torch.lerp(y0[0].expand(steps, -1), y0[1].expand(steps, -1), alpha)
    roll = model.ssm.rollout(y0s, n_cond + n_future, sample=False)
    w, skips = model.prediction_conditioning(model.encode(cond[:, :1]))
    w_s = None if w is None else repeat(w[0], "d -> s d", s=steps)
    skips_s = [repeat(s[0], "c h w -> s c h w", s=steps) for s in skips]
    videos = model.decode(roll.states, w_s, skips_s).clamp(0, 1)  # (T, steps, C, H, W)
    truth = clips[: n_cond + n_future]
    row = torch.cat([truth[:, :1], videos, truth[:, 1:2]], dim=1)
    return video_grid(rearrange(row, "t k c h w -> 1 k t c h w"))


# ---------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m examples.srvp.demo``."""
    p = CliParser(
        prog="python -m examples.srvp.demo",
        description="SRVP demos: higher frame rate, content swap, latent interpolation (GIFs).",
    )
    add_version(p)
    p.add_argument("run_dir", type=user_path, help="run directory (config.json, checkpoints/)")
    p.add_argument(
        "--test-set",
        type=user_path,
        default=None,
        help=".npz file with uint8 'sequences' (T, N, H, W[, C]), a KTH svg_test_set_<T>.npz (N, T, H, W), or the "
        "test data evaluate reads for the run's dataset (default: the run's data_dir, except for Moving MNIST)",
    )
    p.add_argument("--out", type=user_path, required=True, help="folder for the GIFs")
    p.add_argument("--what", choices=(*DEMOS, "all"), default="all", help="which demo (default: all)")
    p.add_argument("--clips", type=int, nargs=2, default=(0, 1), metavar=("A", "B"), help="test clips A, B")
    p.add_argument(
        "--n-cond",
        "--nt-cond",
        dest="n_cond",
        type=int,
        default=None,
        metavar="N",
        help="conditioning frames (default: the run's nt_cond; --nt-cond as in evaluate and train)",
    )
    p.add_argument("--n-future", type=int, default=None, help="predicted frames (default: the rest of the clip)")
    p.add_argument("--steps", type=int, default=7, help="interpolation steps, ends included (default: 7)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled noise (default: 0)")
    p.add_argument("--fps", type=float, default=4.0, help="frames per second of the data (default: 4)")
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default=None,
        help="which weights (default as in the paper: best for KTH and Human3.6M runs, last otherwise)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    add_threads(p)
    return p


def _settings(args: argparse.Namespace, model: SRVP, run: dict[str, Any], clips: torch.Tensor) -> tuple[int, int]:
    """Checked (n_cond, n_future)."""
    c = model.config
    t, n = clips.shape[:2]
    if tuple(clips.shape[2:]) != (c.channels, c.image_size, c.image_size):
        raise ValueError(
            f"--test-set: frames are {list(clips.shape[2:])} (C, H, W), the model expects "
            f"{[c.channels, c.image_size, c.image_size]}"
        )
    for i in args.clips:
        if not 0 <= i < n:
            raise ValueError(f"--clips: expected indices in [0, {n - 1}], got {list(args.clips)}")
    n_cond = args.n_cond if args.n_cond is not None else int(run.get("train", {}).get("nt_cond", c.n_inference_frames))
    if not c.n_inference_frames <= n_cond < t:
        raise ValueError(f"--n-cond: expected {c.n_inference_frames} to {t - 1} frames (clips have {t}), got {n_cond}")
    n_future = args.n_future if args.n_future is not None else t - n_cond
    if not 1 <= n_future <= t - n_cond:
        raise ValueError(
            f"--n-future: expected 1 to {t - n_cond} frames after {n_cond} conditioning ones, got {n_future}"
        )
    if args.steps < 2:
        raise ValueError(f"--steps: expected at least 2 interpolation steps, got {args.steps}")
    if not (math.isfinite(args.fps) and args.fps > 0):  # (inf passed here, then failed at the first GIF)
        raise ValueError(f"--fps: expected a positive finite number, got {args.fps}")
    return n_cond, n_future


@ends_quietly_on_a_closed_pipe
@robust_output()
@warnings_as_lines(ADJOINT_GRADIENT_WARNING)
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m examples.srvp.demo``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        refuse_torchrun("python -m examples.srvp.demo", "the demo", argv)
        require_modules("imageio", needed_for="the demo's GIFs")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        with cpu_threads(args.threads):
            return _run(args)
    except OSError as e:  # (a GIF that cannot be written)
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except _GIFError as e:  # (frames a GIF cannot show: a model whose predictions are not finite)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # each GIF is written whole, after its demo
        print(f"\ninterrupted: the GIFs already in {args.out} are complete", file=sys.stderr)
        return 130


class _GIFError(ValueError):
    """Frames that a GIF cannot show (not finite: a model whose predictions diverged)."""


def _save(path: Path, frames: np.ndarray, fps: float) -> Path:
    try:
        return save_gif(path, frames, fps=fps)
    except ValueError as e:
        raise _GIFError(f"{path.name} could not be made: {e}") from e


def _run(args: argparse.Namespace) -> int:
    try:
        args.device = resolve_device(args.device)
        run = read_run_config(args.run_dir)
        family = (run.get("model") or {}).get("family", "srvp")
        if family != "srvp":
            raise ValueError(
                f"run_dir: {args.run_dir} is a {family!r} run; the demos need an SRVP run (family 'srvp'): they "
                "show SRVP's latent ODE sub-steps, content variable and initial state, which that model has not"
            )
        model = cast(SRVP, load_model(args.run_dir, args.checkpoint, args.device))  # (family 'srvp', above)
        training_videos = args.test_set is None and run.get("train", {}).get("dataset") == "folder"
        clips, args.test_set = load_run_clips(args.test_set, run, model, max(0, *args.clips) + 1)
        n_cond, n_future = _settings(args, model, run, clips)
        check_writable(args.out, "--out")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pair = clips[:, list(args.clips)].to(args.device)
    todo = DEMOS if args.what == "all" else (args.what,)
    written: list[tuple[Path, str]] = []
    if "framerate" in todo:
        if model.ssm.cell.supports_substeps:
            factors = (1, 2, 4)
            grid = frame_rate(model, pair[:, :1], n_cond, n_future, factors=factors, seed=args.seed)
            n_max = model.config.n_substeps * max(factors)
            fps = min(args.fps * n_max, 50.0)  # GIF viewers do not honour delays below 20 ms
            what = f"clip {args.clips[0]}: truth, then {', '.join(f'{f}x' for f in factors)} the training sub-steps"
            written.append((_save(args.out / "frame_rate.gif", grid, fps), what))
        else:
            print(f"framerate: skipped, the {model.config.transition!r} transition is discrete-time (no sub-steps)")
    if "swap" in todo:
        if model.content is None and not model.config.skip_connections:
            print("swap: this model has no content variable and no skips, so both columns will be identical")
        grid = content_swap(model, pair, n_cond, n_future, seed=args.seed)
        what = (
            "rows = dynamics of clips A, B; columns = truth, prediction, prediction with the other's content (the "
            f"first {n_cond} frames of the predictions: reconstructions of the conditioning frames)"
        )
        written.append((_save(args.out / "content_swap.gif", grid, args.fps), what))
    if "interpolate" in todo:
        grid = interpolation(model, pair, n_cond, n_future, steps=args.steps)
        what = (
            f"truth A, y_0 (the paper's y_1) interpolated from A to B in {args.steps} steps (mean prior, content "
            "of A), truth B"
        )
        written.append((_save(args.out / "interpolation.gif", grid, args.fps), what))
    a, b = args.clips
    source = (
        f"{args.test_set} (the run's training videos: --test-set names held-out ones)"
        if training_videos
        else args.test_set
    )
    print(f"demo of {args.run_dir} on clips A={a}, B={b} of {source} ({n_cond} conditioning frames):")
    for path, what in written:
        print(f"  {path}: {what}")
    if written:
        print(f"open the GIFs in a browser or an image viewer, e.g. xdg-open {shell_quote(written[0][0])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
