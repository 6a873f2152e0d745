"""Evaluate a trained SRVP run with the official protocol (best of N samples per test sequence).

    python -m examples.srvp.evaluate RUN_DIR --test-set FILE [--n-samples 100] [--nt-gen 25]   # SM-MNIST
    python -m examples.srvp.evaluate RUN_DIR [--dataset kth] [--test-set DATA_DIR] [--fvd]      # KTH, ...

For every test sequence, N futures are sampled from the first ``nt_cond`` frames (the posterior on the
conditioning frames is re-sampled for each); for each metric separately the best sample is kept (highest
PSNR and SSIM, lowest LPIPS); scores are averaged over the predicted frames and reported as
mean ± 1.96·std/√n over sequences. Two reference predictors are scored the same way: copy-last-frame and
all-black. The N samples are drawn ``--sample-chunk`` at a time (:func:`examples.srvp.model.predict_in_chunks`),
which bounds memory without changing the samples. The noise of test sequence i is drawn from its own generator,
seeded from ``--seed`` and i (``--noise sequence``), so its samples do not depend on ``--batch-size``, the
sample chunk or the device; ``--noise batch`` draws each batch's noise from one global stream seeded once, as
the official ``test.py`` (the samples then depend on the batch size and on the order of the clips). Outputs go
to ``RUN_DIR/eval/``, named after the test data,
the checkpoint and its training step: a JSON file of metrics and per-time-step curves, a PNG plot of the
curves, a GIF of ground truth / best / worst / random samples and the per-sequence scores; with
``--save-official-files`` also the sample files of the official ``test.py`` (:func:`write_official_files`).
The progress is kept in ``RUN_DIR/eval/NAME.partial.pt`` (every ``--save-every`` minutes, and when Ctrl-C,
SIGTERM or an error stops the evaluation; the official sample arrays, written batch by batch, in
``NAME_official.partial/``): the same command continues a stopped evaluation to the results of an
uninterrupted one; ``--restart`` starts over. An existing ``NAME.json`` of an evaluation with other settings
is not replaced without ``--overwrite`` (or another ``--name``).

Test data (``--dataset``, default: the run's ``train.dataset``; ``--test-set``, default: the run's
``data_dir`` for KTH, Human3.6M and BAIR), with the official README's ``--nt-gen`` as default:

=========  ================================================================  ==============
dataset    ``--test-set``                                                    ``--nt-gen``
=========  ================================================================  ==============
smmnist    the ``.npz`` of ``data.py smmnist-test-set`` (time-major)         all its frames
kth        ``DATA_DIR`` holding ``svg_test_set_<nt_gen>.npz``, or that file   40
human36m   ``DATA_DIR`` holding ``test_set_<nt_gen>_<subsampling>/``         53
bair       ``DATA_DIR`` of ``convert-bair`` (every test video, from frame 0)  30
folder     a folder of test videos (each one clip from its first frame),     seq_len_test
           or an ``.npz`` whose ``sequences`` are uint8 (T, N, H, W[, C]) at
           the source's frame rate (one in the run's folder_frame_step kept)
=========  ================================================================  ==============

KTH, Human3.6M and BAIR models also take such an ``.npz`` of clips of one's own (any name but a KTH test
set's, ``svg_test_set_<T>.npz``), cut to their first ``--nt-gen`` frames.

LPIPS (AlexNet, linear weights v0.1; lower is better) is computed whenever the ImageNet AlexNet weights can
be found (``--lpips-alexnet``, ``LATENTDYN_ALEXNET_WEIGHTS`` or the torch cache, see
:meth:`latentdyn.video.lpips.LPIPS.from_files`); FVD with ``--fvd`` and I3D weights (``--i3d-weights``,
``LATENTDYN_I3D_WEIGHTS`` or the torch cache), on the first random sample with the ground-truth
conditioning frames, as the official code. A metric whose weights are missing is skipped with a message,
recorded in the JSON; the rest of the evaluation goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange, repeat
from torch import nn

from examples.srvp._cli import (
    ADJOINT_GRADIENT_WARNING,
    CliParser,
    add_threads,
    add_version,
    cpu_threads,
    ends_quietly_on_a_closed_pipe,
    progress_bar,
    refuse_torchrun,
    require_modules,
    robust_output,
    shell_quote,
    user_path,
    warnings_as_lines,
)
from examples.srvp._eval_data import (
    DEFAULT_NT_GEN,
    HUMAN36M_TEST_SET_NAME,
    KTH_TEST_SET_NAME,
    _names_a_test_set,
    _test_data_hint,
    _train_value,
    default_n_samples,
    default_nt_gen,
    load_sequences,
    load_test_clips,
    read_clip_archive,
    run_clip_options,
    smmnist_test_set_hint,
)
from examples.srvp._eval_outputs import (
    _CHOSEN_SKIPS,
    HIGHER_IS_BETTER,
    N_RANDOM_FILES,
    NOT_COMPUTED_HERE,
    OUTPUT_NOTES,
    format_results,
    mark_predicted,
    output_files,
    plot_figure,
    sample_grid,
    write_official_files,
    write_outputs,
)
from examples.srvp._eval_state import (
    STATE_FORMAT,
    SavedProgress,
    StateMismatchError,
    _Accumulated,
    _attach_progress,
    _config_defaults,
    _difference,
    _digest,
    _fingerprint,
    _load_progress,
    _OfficialArrays,
    _release_freed_memory,
    _save_progress,
    discard_progress,
    official_work_dir,
)
from examples.srvp._host import without_caller_autocast
from examples.srvp.checkpoint import (
    FileLock,
    check_writable,
    checkpoint_path,
    default_checkpoint,
    fork_rng,
    load_model_and_step,
    os_error_message,
    read_run_config,
    remove_stale_temporaries,
    rng_state,
    set_rng_state,
)
from examples.srvp.config import DATASETS, amp_resolution_missed, resolve_device
from examples.srvp.model import FrameModel, SampleChunk, predict_in_chunks
from latentdyn._checks import check_choice, check_int, check_positive_int, check_shape, is_real, warn_at_user
from latentdyn.video.collate import to_unit_interval
from latentdyn.video.datasets._common import is_hidden
from latentdyn.video.fvd import MIN_FRAMES, MIN_VIDEOS, FVDProtocol, compute_fvd
from latentdyn.video.media import to_uint8
from latentdyn.video.metrics import best_of_n, mean_confidence_interval, psnr, select_samples, ssim

__all__ = [
    "CHUNK_FRAMES",
    "DEFAULT_NT_GEN",
    "HIGHER_IS_BETTER",
    "HUMAN36M_TEST_SET_NAME",
    "KTH_TEST_SET_NAME",
    "NOISE_MODES",
    "NOT_COMPUTED_HERE",
    "OUTPUT_NOTES",
    "PSNR_CAP_DB",
    "STATE_FORMAT",
    "EvalProtocol",
    "EvalResult",
    "SavedProgress",
    "StateMismatchError",
    "auto_sample_chunk",
    "build_parser",
    "check_protocol",
    "check_sequences",
    "default_n_samples",
    "default_nt_gen",
    "discard_progress",
    "evaluate",
    "format_results",
    "load_sequences",
    "load_test_clips",
    "main",
    "mark_predicted",
    "official_work_dir",
    "plot_figure",
    "read_clip_archive",
    "run_clip_options",
    "sample_grid",
    "sequence_generators",
    "sequence_seed",
    "smmnist_test_set_hint",
    "write_official_files",
    "write_outputs",
]

METRICS = ("psnr", "ssim")
"""Metrics computed on every evaluation; ``"lpips"`` is added when an LPIPS module is given."""
PSNR_CAP_DB = 100.0
"""Per-frame PSNR cap (dB) used in averages: an exact prediction would otherwise make them infinite."""
CHUNK_FRAMES = 512
"""Predicted frames per ``predict`` call when no sample chunk is given (:func:`auto_sample_chunk`). Peak memory
grows with it: about 7 MB per predicted frame for the KTH preset's VGG decoder on CPU (measured: 8.4 GB for
one call of 20 samples × 2 sequences × 30 frames), so the default KTH evaluation (one sample of the 16
sequences of a batch × 30 frames per call, with either noise mode) peaks at about 3.5 GB, where one call for all
100 samples of 16 sequences would need about 340 GB.
Raise ``--sample-chunk`` where memory allows (fewer, larger calls are faster, most of all on GPUs)."""
NOISE_MODES = ("sequence", "batch")
"""How :func:`evaluate` draws the samples' noise: ``"sequence"``, from one generator per test sequence seeded
from (seed, the sequence's index) (:func:`sequence_generators`); ``"batch"``, from the global generator seeded
once, each batch's N·B rows in one block, as the official ``test.py``."""
_NOISE_STREAM = 2
"""Separates the evaluation's per-sequence seeds from the training's (``datasets.step_seed`` streams 0 and 1)."""


def sequence_seed(seed: int, index: int) -> int:
    """Seed (64 bits) of test sequence ``index``'s noise generator under ``noise="sequence"``, from the
    evaluation seed (``seed``; negative values as ``torch.manual_seed`` reads them, modulo 2**64)."""
    entropy = [check_int(seed, "seed") % 2**64, check_positive_int(index, "index", minimum=0)]
    return int(np.random.SeedSequence(entropy, spawn_key=(_NOISE_STREAM,)).generate_state(1, np.uint64)[0])


def sequence_generators(seed: int, indices: Iterable[int]) -> list[torch.Generator]:
    """CPU generators, one per test sequence of ``indices``, seeded with :func:`sequence_seed`: what
    :func:`evaluate` passes to :func:`examples.srvp.model.predict_in_chunks` for each batch with
    ``noise="sequence"``, so that a sequence's samples depend only on the seed and its index."""
    return [torch.Generator().manual_seed(sequence_seed(seed, i)) for i in indices]


@dataclass(frozen=True)
class EvalProtocol:
    """Options of an evaluation, recorded next to its results (the last three default as on the command line)."""

    nt_cond: int
    nt_gen: int  # conditioning + predicted frames
    n_samples: int
    n_substeps: int
    batch_size: int = 16
    seed: int = 1
    max_sequences: int = 0  # 0: all

    def __post_init__(self) -> None:
        # Kept as Python ints (a NumPy int would fail json.dumps and a weights_only load of saved progress).
        for name in ("nt_cond", "nt_gen", "n_samples", "n_substeps", "batch_size"):
            object.__setattr__(self, name, check_positive_int(getattr(self, name), f"protocol.{name}"))
        object.__setattr__(
            self, "max_sequences", check_positive_int(self.max_sequences, "protocol.max_sequences", minimum=0)
        )
        object.__setattr__(self, "seed", check_int(self.seed, "protocol.seed"))
        if self.nt_gen <= self.nt_cond:
            raise ValueError(
                f"protocol.nt_gen: expected more than nt_cond={self.nt_cond} frames (conditioning + predicted), "
                f"got {self.nt_gen}"
            )

    @property
    def n_future(self) -> int:
        return self.nt_gen - self.nt_cond


class EvalResult(dict[str, Any]):
    """The results of :func:`evaluate`: a dict, JSON-ready but for its ``_`` keys (arrays for the output files),
    printed as the results table (a notebook shows that, not pages of numbers and tensors)."""

    def __repr__(self) -> str:
        public = [k for k in self if not k.startswith("_")]
        arrays = [k for k in self if k.startswith("_")]
        try:
            table = format_results(self)
        except Exception:  # (a result changed by hand: its keys, at least)
            table = "(no results table: its entries were changed)"
        return f"EvalResult(\n{table}\nkeys: {', '.join(public)}; arrays: {', '.join(arrays) or 'none'}\n)"


@dataclass
class _Scores:
    """Per-sequence scores of one predictor: time averages (B,) and curves (B, T) per metric."""

    avg: dict[str, list[torch.Tensor]]
    curve: dict[str, list[torch.Tensor]]

    @classmethod
    def empty(cls, metrics: tuple[str, ...] = METRICS) -> _Scores:
        return cls({m: [] for m in metrics}, {m: [] for m in metrics})

    def add(self, name: str, avg: torch.Tensor, curve: torch.Tensor) -> None:
        self.avg[name].append(avg.detach().cpu())
        self.curve[name].append(curve.detach().cpu())

    def summary(self, first: int = 5) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.avg:
            avg, curve = torch.cat(self.avg[m]).double(), torch.cat(self.curve[m]).double()
            mean, half = mean_confidence_interval(avg)
            head_mean, head_half = mean_confidence_interval(curve[:, :first].mean(1))
            cmean, chalf = mean_confidence_interval(curve)
            out[m] = {"mean": float(mean), "ci95": float(half)}
            out[f"{m}_first{first}"] = {"mean": float(head_mean), "ci95": float(head_half)}
            out[f"{m}_curve"] = {"mean": cmean.tolist(), "ci95": chalf.tolist()}
            if m == "psnr":  # frames predicted exactly, counted at the cap (they explain a spike of a curve)
                out["psnr_capped_frames"] = int((curve >= PSNR_CAP_DB).sum())
        return out


def _lpips_scores(metric: nn.Module, pred: torch.Tensor, target: torch.Tensor, chunk: int) -> torch.Tensor:
    """LPIPS of (N, T, B, C, H, W) predictions against (T, B, C, H, W) targets: (N, B, T).

    All N·T·B frame pairs go through the network in batches of ``chunk`` pairs; the targets are gathered
    per batch (never copied N times)."""
    n, t, b = pred.shape[:3]
    flat_pred = rearrange(pred, "n t b c h w -> (n t b) c h w")
    flat_target = rearrange(target, "t b c h w -> (t b) c h w")
    pairs = torch.arange(flat_pred.shape[0], device=pred.device)
    dist = torch.cat([metric(flat_pred[idx], flat_target[idx % (t * b)]).float() for idx in pairs.split(chunk)])
    return rearrange(dist, "(n t b) -> n b t", n=n, t=t)


def _frame_scores(
    pred: torch.Tensor, target: torch.Tensor, lpips: nn.Module | None = None, chunk: int = 2048
) -> dict[str, torch.Tensor]:
    """PSNR, SSIM (and LPIPS) of (N, T, B, C, H, W) predictions against (T, B, C, H, W) targets: (N, B, T) each.

    A frame predicted exactly has an infinite PSNR; it is capped at ``PSNR_CAP_DB`` so that averages stay finite
    (this only ever happens to the copy-last-frame reference on clips whose digits stand still).
    """
    tgt = target.unsqueeze(0).expand_as(pred)
    scores = {
        "psnr": rearrange(psnr(pred, tgt).clamp(max=PSNR_CAP_DB), "n t b -> n b t"),
        "ssim": rearrange(ssim(pred, tgt), "n t b -> n b t"),
    }
    if lpips is not None:
        scores["lpips"] = _lpips_scores(lpips, pred, target, chunk)
    return scores


class _RunningBestOfN:
    """Best and worst of N samples per sequence for one metric, fed one chunk of samples at a time.

    Each chunk's best and worst sample come from :func:`best_of_n`; a later chunk's sample replaces the kept
    one only when strictly better (worse), so ties keep the lowest sample index and the choice is the one
    ``best_of_n`` makes over all N samples at once. Kept per sequence and side: the time-averaged score
    (``value``, (B,)), its curve ((B, T)), the sample index, and ``keep[name](chosen frames (T, B, C, H, W))``,
    batch first (e.g. a few sequences for the GIF, uint8 frames for the official files).
    """

    def __init__(
        self, higher_is_better: bool, keep: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None
    ) -> None:
        self.higher_is_better = higher_is_better
        self.keep = keep or {}
        self.best: dict[str, torch.Tensor] = {}
        self.worst: dict[str, torch.Tensor] = {}

    def update(self, start: int, scores: torch.Tensor, frames: torch.Tensor | None = None) -> None:
        """Samples ``start …`` of the N: scores (n, B, T) and their frames (n, T, B, C, H, W)."""
        sel = best_of_n(scores, higher_is_better=self.higher_is_better, layout="n b t")
        for kept, value, index, curve, higher_wins in (
            (self.best, sel.best, sel.best_index, sel.best_curve, self.higher_is_better),
            (self.worst, sel.worst, sel.worst_index, sel.worst_curve, not self.higher_is_better),
        ):
            assert curve is not None  # scores have a time axis
            new = {"value": value, "curve": curve, "index": index + start}
            if self.keep and frames is not None:
                chosen = select_samples(frames, index, batch_dim=2)
                new.update({name: take(chosen) for name, take in self.keep.items()})
            if not kept:
                kept.update(new)
                continue
            wins = value > kept["value"] if higher_wins else value < kept["value"]
            for key, v in new.items():
                mask = wins[: v.shape[0]].reshape(-1, *([1] * (v.dim() - 1)))
                kept[key] = torch.where(mask, v, kept[key])


def _official_layout(frames: torch.Tensor) -> torch.Tensor:
    """Frames (T, B, C, H, W) in [0, 1] as the official sample files store them: uint8 (B, T, H, W, C), truncated."""
    return rearrange(to_uint8(frames), "t b c h w -> b t h w c")


def auto_sample_chunk(batch_size: int, n_future: int, n_samples: int, frames: int = CHUNK_FRAMES) -> int:
    """Samples per ``predict`` call so that one call decodes about ``frames`` predicted frames (at least 1)."""
    return max(1, min(n_samples, frames // (batch_size * n_future)))


def _under(ctx: Any, chunks: Iterator[SampleChunk]) -> Iterator[SampleChunk]:
    """The chunks, each computed inside ``ctx`` (autocast), handed out outside it (metrics stay in float32)."""
    while True:
        with ctx:
            part = next(chunks, None)
        if part is None:
            return
        yield part


def check_sequences(sequences: object) -> tuple[int, int]:
    """Check test clips: a uint8 tensor (T, N, C, H, W) with N >= 1; returns (T, N)."""
    if not isinstance(sequences, torch.Tensor):
        raise TypeError(f"sequences: expected a uint8 tensor (T, N, C, H, W), got {type(sequences).__name__}")
    if sequences.dtype != torch.uint8:
        raise TypeError(
            f"sequences: expected uint8 frames (T, N, C, H, W) with values in [0, 255], got dtype {sequences.dtype}; "
            "frames already in [0, 1] would be divided by 255 again: pass (x * 255).round().to(torch.uint8)"
        )
    t, n = check_shape(sequences, "t n c h w", "sequences")["t"], sequences.shape[1]
    if n == 0:
        raise ValueError(f"sequences: expected at least one test clip (N >= 1), got shape {list(sequences.shape)}")
    return t, n


def check_protocol(model: FrameModel, nt_cond: int, n_substeps: int, *, names: dict[str, str] | None = None) -> None:
    """Check conditioning frames and sub-steps against the model, before any sampling.

    Args:
        model: the model to evaluate.
        nt_cond, n_substeps: the protocol's values.
        names: how messages name them (default ``protocol.nt_cond``, ``protocol.n_substeps``; the CLI passes
            its flags).

    Raises:
        ValueError: fewer conditioning frames than the model reads (SRVP: ``n_inference_frames``), or
            sub-steps for a discrete-time model.
    """
    name = {"nt_cond": "protocol.nt_cond", "n_substeps": "protocol.n_substeps", **(names or {})}
    c = model.config
    k = c.n_inference_frames if c.family == "srvp" else 1
    if nt_cond < k:
        raise ValueError(
            f"{name['nt_cond']}: the model infers y_0 and its content from n_inference_frames={k} frames, so it "
            f"needs at least {k} conditioning frames, got {nt_cond}"
        )
    if n_substeps != 1 and (c.family != "srvp" or c.transition != "residual"):
        raise ValueError(
            f"{name['n_substeps']}: this model is discrete-time (one step per frame), expected 1, got {n_substeps}"
        )


def _first_guess(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The scores of the first of (n, B, T) guesses, scored as one: time averages (B,) and curves (B, T), on the
    CPU."""
    return scores[0].mean(-1).cpu(), scores[0].cpu()


def _evaluate_batch(
    model: FrameModel,
    x: torch.Tensor,
    p: EvalProtocol,
    metrics: tuple[str, ...],
    ctx: Any,
    chunk: int,
    *,
    n_gif: int,
    lpips: nn.Module | None,
    lpips_chunk: int,
    fvd: int,
    official_files: bool,
    generators: list[torch.Generator] | None,
) -> dict[str, Any]:
    """Scores and kept frames of one batch of test clips x (T, B, C, H, W) in [0, 1], on the CPU, the noise drawn from
    ``generators`` (one per clip) or, when None, from the global generator:

    ``scores[predictor][metric] = (time averages (B,), curves (B, Tf))`` for the predictors ``model`` (best sample),
    ``worst``, ``random`` (sample 0, one draw: the model scored as the single-guess references are), ``copy_last``
    and ``black``; ``best_index[metric]`` (B,), the sample chosen as the best; ``gif`` (when ``n_gif`` > 0: the
    first ``n_gif`` clips' truth and best, worst and random samples, (T, n_gif, C, H, W)); ``fake`` (when ``fvd`` > 0:
    the predicted frames of samples 0 … fvd − 1, uint8 (fvd, Tf, B, C, H, W)); ``official`` (with
    ``official_files``: uint8 (B, T, H, W, C) per official file)."""
    cond, target = x[: p.nt_cond], x[p.nt_cond :]

    def keep(metric: str) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        out: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        if metric == "psnr" and n_gif > 0:  # the GIF shows the best and worst sample for PSNR
            out["gif"] = lambda c: rearrange(c[:, :n_gif], "t b c h w -> b t c h w")
        if official_files:
            out["official"] = _official_layout
        return out

    selections = {m: _RunningBestOfN(HIGHER_IS_BETTER[m], keep(m)) for m in metrics}
    out: dict[str, Any] = {}
    official: dict[str, torch.Tensor] = {}
    random: torch.Tensor | None = None  # sample 0 of the GIF's clips, after their conditioning frames
    first: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # sample 0's scores: one draw, not a best of N
    fakes: list[torch.Tensor] = []  # the FVD samples' predicted frames, chunk by chunk
    parts = predict_in_chunks(
        model,
        cond,
        p.n_future,
        p.n_samples,
        chunk,
        n_substeps=p.n_substeps,
        decode_cond="first" if official_files else False,
        generators=generators,
    )
    for part in _under(ctx, parts):
        frames = part.prediction.frames.float()  # (n, Tf, B, C, H, W), clamped to [0, 1]
        chunk_scores = _frame_scores(frames, target, lpips, lpips_chunk)
        for m, s in chunk_scores.items():
            selections[m].update(part.start, s, frames)
        if part.start < fvd:  # the FVD videos: samples 0 … fvd − 1
            fakes.append(to_uint8(frames[: fvd - part.start]).cpu())  # truncation, as the official .byte()
        if part.start == 0:  # sample 0: its scores, the GIF's random sample, the official files'
            first = {m: _first_guess(s) for m, s in chunk_scores.items()}
            if n_gif > 0:
                random = torch.cat([cond[:, :n_gif], frames[0][:, :n_gif]]).cpu()
            if official_files:
                rec = part.prediction.cond_frames
                assert rec is not None  # decode_cond="first"
                official["cond_rec"] = _official_layout(rec[0].float()).cpu()
        if official_files:
            for i in range(part.start, min(part.start + frames.shape[0], N_RANDOM_FILES)):
                official[f"random_{i + 1}"] = _official_layout(frames[i - part.start]).cpu()
    scores: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {"model": {}, "worst": {}, "random": first}
    out["best_index"] = {}
    for m, sel in selections.items():
        scores["model"][m] = (sel.best["value"].cpu(), sel.best["curve"].cpu())
        scores["worst"][m] = (sel.worst["value"].cpu(), sel.worst["curve"].cpu())
        out["best_index"][m] = sel.best["index"].cpu()
        if official_files:
            official[f"{m}_best"] = sel.best["official"].cpu()
            official[f"{m}_worst"] = sel.worst["official"].cpu()
    for name, guess in (
        ("copy_last", repeat(cond[-1], "b c h w -> 1 t b c h w", t=target.shape[0])),
        ("black", torch.zeros_like(target).unsqueeze(0)),
    ):
        scores[name] = {m: _first_guess(s) for m, s in _frame_scores(guess, target, lpips, lpips_chunk).items()}
    out["scores"] = scores
    if fvd:
        out["fake"] = torch.cat(fakes)
    if n_gif > 0:
        assert random is not None  # set by the first chunk
        out["gif"] = {"truth": x[:, :n_gif].cpu(), "random": random}
        for side, kept in (("best", selections["psnr"].best), ("worst", selections["psnr"].worst)):
            out["gif"][side] = torch.cat([cond[:, :n_gif], rearrange(kept["gif"], "b t c h w -> t b c h w")]).cpu()
    if official_files:
        out["official"] = official
    return out


@torch.no_grad()
def evaluate(
    model: FrameModel,
    sequences: torch.Tensor,
    protocol: EvalProtocol,
    *,
    device: torch.device | str = "cpu",
    amp: str = "none",
    n_gif: int = 4,
    progress: bool = True,
    lpips: nn.Module | None = None,
    lpips_chunk: int = 2048,
    fvd_network: nn.Module | None = None,
    fvd_protocol: FVDProtocol | None = None,
    fvd_samples: int = 1,
    sample_chunk: int | None = None,
    official_files: bool = False,
    state_file: str | Path | None = None,
    save_every: float = 600.0,
    noise: str = "sequence",
    indices: Iterable[int] | torch.Tensor | np.ndarray | None = None,
) -> EvalResult:
    """Best-of-N PSNR/SSIM (and LPIPS, FVD) of ``model`` on uint8 test clips (T, N, C, H, W), with reference predictors.

    The N samples of a batch of sequences are drawn ``sample_chunk`` at a time
    (:func:`examples.srvp.model.predict_in_chunks`) and scored chunk by chunk; only the per-sequence best and
    worst scores and the frames the outputs need are kept. The draws are those of one batched call
    whatever the chunk size, so the chunk size changes memory and speed, not the samples. The draws are seeded
    with ``protocol.seed`` inside a fork of the global random streams, which the caller finds as it left them;
    ``model`` is moved to ``device`` and run in eval mode, then given back the training mode of each of its
    modules (``lpips`` is moved to ``device`` and left in eval mode).

    With ``noise="sequence"`` (the default) the noise of test sequence i (y_0, the posterior z and every
    prior z of its N samples) comes from its own CPU generator seeded from (``protocol.seed``, i)
    (:func:`sequence_generators`), so a sequence's samples are the same whatever ``protocol.batch_size``, the
    sample chunk, the device or the other clips evaluated with it, up to the floating-point rounding of the
    networks, which may depend on how many rows a call has (about 1e-6 dB on a CPU; a batch size of 1 makes a
    sequence's scores bit for bit independent of the other clips). ``noise="batch"`` draws the noise as the
    official ``test.py``: from the global generator seeded once with ``protocol.seed``, each batch's N·B rows
    in one block, so a sequence's samples depend on the batch size, on its place in the test set and on the
    device's generator.

    Args:
        model: the trained model.
        sequences: uint8 test clips (T, N, C, H, W), N >= 1; frames are scored as floats in [0, 1].
        protocol: the evaluation options.
        device: where the model (and the metric networks) run.
        amp: ``"none"``, or ``"bf16"`` to run the model under bfloat16 autocast (metrics stay in float32).
        n_gif: test sequences kept for the sample GIF.
        progress: show a progress bar.
        lpips: an LPIPS module (e.g. ``LPIPS.from_files()``) mapping frame pairs (P, C, H, W) in [0, 1] to
            distances (P,); adds the ``lpips`` metric (best = lowest).
        lpips_chunk: frame pairs per LPIPS forward pass.
        fvd_network: an I3D in eval mode (e.g. ``InceptionI3D.from_file()``); adds FVD between the real
            clips and [ground-truth conditioning frames, first random sample], uint8-quantised.
        fvd_protocol: FVD options (resolution, resize ...); ``n_cond`` is set to ``protocol.nt_cond``.
        fvd_samples: FVD of each of the first K random samples (1 ≤ K ≤ ``protocol.n_samples``) against the same
            real clips, embedded once: ``fvd["value"]`` is their mean, ``fvd["values"]`` each and ``fvd["std"]``
            their population std (the paper's FVD ± over five samples: K = 5). 1 (SRVP's test script): the first
            sample's. The K samples' predicted frames are kept in uint8 until the end (and in the saved progress):
            K times the test clips' future frames.
        sample_chunk: samples per ``predict`` call, of the batch's sequences: at most
            ``sample_chunk · batch_size`` sequences at once; None: :func:`auto_sample_chunk`, about
            ``CHUNK_FRAMES`` predicted frames per call.
        official_files: also keep what the official test script saves (``"_official"``, see
            :func:`write_official_files`): random samples 1-5, sample 1's conditioning reconstructions, and
            the best and worst sample of each metric, uint8 (N_seq, T, H, W, C). They are not held in memory
            but written batch by batch to ``.npy`` files, in :func:`official_work_dir` with a ``state_file``
            (kept with the progress), else in a temporary folder (``TMPDIR``) removed at the end; the results
            hold them as read-only memory maps of these files.
        state_file: where to keep the progress (a torch file, written atomically) so that an evaluation
            that stops (Ctrl-C, a stop signal raised as an exception, a crash, a killed job) continues where
            it was: when the file exists, its batches are taken as done and the evaluation goes on from the
            next one with the random state saved with them, so the results (samples, scores, files) are
            those of an uninterrupted evaluation. It is written every ``save_every`` seconds at the end of a
            batch, when an exception ends the evaluation (the progress up to the last complete batch; the
            exception then carries a :class:`SavedProgress` as ``saved_progress``) and at the end (a
            complete file returns the results without sampling). With ``official_files`` the sample arrays
            are kept apart, in :func:`official_work_dir`, and the file records how many sequences they hold.
            Delete both (:func:`discard_progress`) once the results are stored.
        save_every: seconds between two saves of ``state_file`` during the evaluation.
        noise: ``"sequence"`` or ``"batch"`` (see above; :data:`NOISE_MODES`).
        indices: with ``noise="sequence"``, the index in its test set of each clip of ``sequences`` (N ints
            >= 0; default 0 … N − 1), which seeds its noise: a part of a test set, or its clips in another
            order, evaluated with their indices get the samples they get in the whole set.

    Returns:
        A JSON-ready dict (protocol, metrics, curves, reference predictors, throughput, ``provenance``: the
        noise mode, amp, device, versions and the digests of the weights and test clips, ``fvd`` when an
        FVD network is given) and, under the keys ``"_gif"``, ``"_per_sequence"``, ``"_per_sequence_others"``
        and ``"_official"`` (not JSON), the videos for the sample GIF, the per-sequence best scores (by metric
        name), the per-sequence scores of the worst sample, one sample and the reference predictors
        (``worst_psnr``, ``random_psnr``, ``copy_last_psnr``, ``black_psnr``, ...), their per-frame curves
        (``psnr_curve``, ``worst_psnr_curve``, ...), the index of each sequence's best sample
        (``psnr_best_index``, ...) and its index in the test set (``indices``), and the official sample arrays.

    Raises:
        TypeError: ``sequences`` is not a uint8 tensor.
        ValueError: ``sequences`` is not (T, N, C, H, W) with N >= 1 and frames the model reads, is shorter
            than ``protocol.nt_gen``, the protocol does not suit the model, ``sample_chunk`` < 1, ``noise``
            is not one of :data:`NOISE_MODES`, ``indices`` are not N ints >= 0 (or are given with
            ``noise="batch"``), or ``state_file`` is not an evaluation's progress; :class:`StateMismatchError`
            when it is that of an evaluation with other settings, weights or test clips, or its official sample
            arrays are missing or damaged.
        OSError: the official sample arrays could not be written (e.g. a full disk).
    """
    t_len, n_all = check_sequences(sequences)
    p = protocol
    if not isinstance(p, EvalProtocol):
        raise TypeError(f"protocol: expected an EvalProtocol, got {type(p).__name__}")
    c = model.config
    check_shape(sequences, "t n c h w", "sequences", c=c.channels, h=c.image_size, w=c.image_size)
    if t_len < p.nt_gen:
        raise ValueError(f"protocol.nt_gen: the test clips have {t_len} frames, fewer than nt_gen={p.nt_gen}")
    check_protocol(model, p.nt_cond, p.n_substeps)
    if sample_chunk is not None:
        check_positive_int(sample_chunk, "sample_chunk")
    check_choice(amp, "amp", ("none", "bf16"))
    check_choice(noise, "noise", NOISE_MODES)
    seq_indices = _check_indices(indices, n_all, noise)
    n_gif = check_positive_int(n_gif, "n_gif", minimum=0)
    check_positive_int(lpips_chunk, "lpips_chunk")
    check_positive_int(fvd_samples, "fvd_samples")
    if fvd_samples > p.n_samples:
        raise ValueError(
            f"fvd_samples: expected at most protocol.n_samples ({p.n_samples}) samples to score, got {fvd_samples}"
        )
    if fvd_samples > 1 and fvd_network is None:
        raise ValueError(f"fvd_samples: {fvd_samples} samples to score by FVD, but no fvd_network is given")
    state_file = None if state_file is None else Path(state_file).expanduser()
    if state_file is not None and state_file.is_dir():
        raise ValueError(f"state_file: expected a file name, got the directory {state_file}")
    if not is_real(save_every):
        raise TypeError(f"save_every: expected a number of seconds, got {type(save_every).__name__} {save_every!r}")
    if not (math.isfinite(save_every) and save_every >= 0):
        raise ValueError(f"save_every: expected a finite number of seconds >= 0, got {save_every!r}")
    device = torch.device(device)
    n_seq = n_all if not p.max_sequences else min(p.max_sequences, n_all)
    if sample_chunk is None:
        chunk = auto_sample_chunk(min(p.batch_size, n_seq), p.n_future, p.n_samples)
    else:
        chunk = sample_chunk
    # The evaluation seeds its own draws: the caller's random streams go on untouched; it runs the model in eval
    # mode: the caller's modes come back (a training loop that evaluates goes on training); and an autocast of
    # the caller's does not reach it (the model runs under --amp's, the metrics in float32).
    with fork_rng(device), _modes_kept(model), without_caller_autocast():
        return _evaluate(
            model,
            sequences,
            p,
            n_seq=n_seq,
            chunk=chunk,
            device=device,
            amp=amp,
            n_gif=n_gif,
            progress=progress,
            lpips=lpips,
            lpips_chunk=lpips_chunk,
            fvd_network=fvd_network,
            fvd_protocol=fvd_protocol,
            fvd_samples=fvd_samples,
            official_files=official_files,
            state_file=state_file,
            save_every=float(save_every),
            noise=noise,
            indices=seq_indices,
        )


@contextlib.contextmanager
def _modes_kept(model: nn.Module) -> Iterator[None]:
    """Give each module of ``model`` its training mode back on the way out."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _check_indices(indices: object, n: int, noise: str) -> list[int] | None:
    """``indices`` as a list of N Python ints >= 0, or None for the default 0 … N − 1."""
    if indices is None:
        return None
    if noise != "sequence":
        raise ValueError(f"indices: they seed the noise of noise='sequence', got noise={noise!r}")
    if isinstance(indices, (torch.Tensor, np.ndarray)):
        if indices.ndim != 1:
            raise ValueError(f"indices: expected one index per clip, (N,), got shape {list(indices.shape)}")
        indices = indices.tolist()
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
        raise TypeError(f"indices: expected N ints >= 0, one per clip, got {type(indices).__name__}")
    values = [check_positive_int(v, f"indices[{j}]", minimum=0) for j, v in enumerate(indices)]
    if len(values) != n:
        raise ValueError(f"indices: expected one per clip ({n}), got {len(values)}")
    return None if values == list(range(n)) else values


def _evaluate(
    model: FrameModel,
    sequences: torch.Tensor,
    p: EvalProtocol,
    *,
    n_seq: int,
    chunk: int,
    device: torch.device,
    amp: str,
    n_gif: int,
    progress: bool,
    lpips: nn.Module | None,
    lpips_chunk: int,
    fvd_network: nn.Module | None,
    fvd_protocol: FVDProtocol | None,
    fvd_samples: int,
    official_files: bool,
    state_file: Path | None,
    save_every: float,
    noise: str,
    indices: list[int] | None,
) -> EvalResult:
    """:func:`evaluate` once its arguments are checked."""
    model = model.to(device).eval()
    if lpips is not None:
        lpips = lpips.to(device).eval()
    metrics = METRICS + (("lpips",) if lpips is not None else ())
    torch.manual_seed(p.seed)
    acc = _Accumulated(done=0, seconds=0.0, rng=rng_state(device) if state_file is not None else {}, batches=())
    resumed_at: list[int] = []  # sequences done when a run continued saved progress
    index_of = indices if indices is not None else range(n_seq)
    fingerprint = _fingerprint(
        model,
        sequences[: p.nt_gen, :n_seq],
        p,
        lpips,
        sample_chunk=chunk,
        device=device.type,
        amp=amp,
        n_gif=n_gif,
        fvd=fvd_network is not None,
        fvd_samples=fvd_samples,
        official_files=official_files,
        noise=noise,
        **{"sequence indices": None if indices is None else _digest([("indices", torch.tensor(indices[:n_seq]))])},
    )
    official = None  # the official sample arrays, in files (in a temporary folder without a state file)
    if official_files:
        official = _OfficialArrays(None if state_file is None else official_work_dir(state_file), n_seq)
    if state_file is not None:
        if state_file.exists():
            acc, resumed_at, layout = _load_progress(state_file, fingerprint, _config_defaults(model))
            if official is not None:
                acc = official.resume(acc, layout, state_file)
            set_rng_state(acc.rng, device)
            if acc.done < n_seq:
                resumed_at.append(acc.done)
    saved = acc.done
    ctx = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if amp == "bf16"
        else torch.autocast(device.type, enabled=False)
    )
    bar: Any = None
    if progress and acc.done < n_seq:
        bar = progress_bar(total=n_seq, initial=acc.done, unit="seq", desc="evaluate")
    start, last_save = time.monotonic(), time.monotonic()

    def save() -> None:
        """Save the progress; a failure (a full disk) is a warning, and the evaluation goes on unprotected."""
        nonlocal saved, last_save
        assert state_file is not None
        try:
            if official is not None:
                official.sync()  # the rows the progress counts on are on the disk before it is saved
            _save_progress(state_file, fingerprint, acc, resumed_at, official.layout if official is not None else None)
        except OSError as e:
            warn_at_user(f"state_file: the progress could not be saved ({os_error_message(e)})", inside=(_EXAMPLE_DIR,))
            return
        saved, last_save = acc.done, time.monotonic()

    try:
        for lo in range(acc.done, n_seq, p.batch_size):
            # (the CPU's x / 255 on every device: a GPU's division would round half the values otherwise)
            x = to_unit_interval(sequences[: p.nt_gen, lo : min(lo + p.batch_size, n_seq)].to(device))
            n_gif_left = n_gif - sum(b["gif"]["truth"].shape[1] for b in acc.batches if "gif" in b)
            options: dict[str, Any] = dict(
                lpips=lpips, lpips_chunk=lpips_chunk, fvd=fvd_samples if fvd_network is not None else 0
            )
            # The batch's N·B rows in each predict call; the noise of each sequence from its own generator
            # (noise="sequence"), or the batch's from the global stream (noise="batch", the official way).
            generators = None if noise == "batch" else sequence_generators(p.seed, index_of[lo : lo + x.shape[1]])
            batch = _evaluate_batch(
                model,
                x,
                p,
                metrics,
                ctx,
                chunk,
                n_gif=min(x.shape[1], n_gif_left),
                official_files=official_files,
                generators=generators,
                **options,
            )
            if official is not None:  # rows lo … of the files: the progress counts on them once the batch is committed
                official.write(lo, batch.pop("official"))
                _release_freed_memory()
            # One assignment commits the batch: an interrupt before it leaves the progress at the last batch.
            acc = _Accumulated(
                done=lo + x.shape[1],
                seconds=acc.seconds + time.monotonic() - start,
                rng=rng_state(device) if state_file is not None else {},
                batches=(*acc.batches, batch),
            )
            start = time.monotonic()
            if bar is not None:
                bar.update(x.shape[1])
            if state_file is not None and (acc.done == n_seq or time.monotonic() - last_save >= save_every):
                save()
        # Inside the try: a stop during FVD still reports the (complete) saved progress.
        return _results(
            acc,
            p,
            model=model,
            sequences=sequences,
            n_seq=n_seq,
            chunk=chunk,
            metrics=metrics,
            resumed_at=resumed_at,
            official=official,
            fvd_network=fvd_network,
            fvd_protocol=fvd_protocol,
            provenance=_provenance(fingerprint, device),
            indices=list(index_of[:n_seq]),
        )
    except BaseException as exc:  # Ctrl-C, a stop signal turned into an exception, out of memory ...
        if official is not None:
            official.remove()  # a temporary folder; a work folder stays with the saved progress
        if state_file is not None:
            try:
                if acc.done > saved:
                    save()
            except Exception:  # the original error matters more than a failed save
                pass
            except BaseException as again:  # a second Ctrl-C during the save: the file holds the last one
                if saved > 0:
                    _attach_progress(again, SavedProgress(saved, n_seq, state_file))
                raise
            if saved > 0:
                _attach_progress(exc, SavedProgress(saved, n_seq, state_file))
        raise
    finally:
        if bar is not None:
            bar.close()


def _results(
    acc: _Accumulated,
    p: EvalProtocol,
    *,
    model: FrameModel,
    sequences: torch.Tensor,
    n_seq: int,
    chunk: int,
    metrics: tuple[str, ...],
    resumed_at: list[int],
    official: _OfficialArrays | None,
    fvd_network: nn.Module | None,
    fvd_protocol: FVDProtocol | None,
    provenance: dict[str, Any],
    indices: Sequence[int],
) -> EvalResult:
    """The results of an evaluation from the records of all its batches (see :func:`evaluate`); ``indices``: the
    test-set index of every sequence evaluated, in order."""
    elapsed = acc.seconds
    # Progress saved by an older version holds no "random" scores nor best indices: those are left out.
    predictors = ("model", "worst", "random", "copy_last", "black")
    names = [n for n in predictors if all(n in b["scores"] for b in acc.batches)]
    scores = {name: _Scores.empty(metrics) for name in names}
    for b in acc.batches:
        for name in names:
            for m, (avg, curve) in b["scores"][name].items():
                scores[name].add(m, avg, curve)
    best_index = (
        {f"{m}_best_index": torch.cat([b["best_index"][m] for b in acc.batches]).numpy() for m in metrics}
        if all("best_index" in b for b in acc.batches)
        else {}
    )
    gif_parts = [b["gif"] for b in acc.batches if "gif" in b]
    result = EvalResult(
        {
            "model": getattr(model.config, "family", "srvp"),
            "protocol": asdict(p),
            "n_sequences": n_seq,
            "sample_chunk": chunk,
            "metrics": scores["model"].summary(),
            "worst_sample": scores["worst"].summary(),
            **({"random_sample": scores["random"].summary()} if "random" in scores else {}),
            "reference_predictors": {name: scores[name].summary() for name in ("copy_last", "black")},
            "throughput": {
                "seconds": elapsed,
                "sequences_per_s": n_seq / elapsed,
                "predicted_frames_per_s": n_seq * p.n_samples * p.n_future / elapsed,
                "resumed_at": resumed_at,
            },
            "provenance": provenance,
            "_gif": {k: torch.cat([g[k] for g in gif_parts], dim=1) for k in gif_parts[0]} if gif_parts else {},
            "_per_sequence": {m: torch.cat(scores["model"].avg[m]).numpy() for m in metrics},
            "_per_sequence_others": {
                "indices": np.asarray(indices, dtype=np.int64),
                **best_index,
                **{
                    f"{name}_{m}": torch.cat(scores[name].avg[m]).numpy()
                    for name in names
                    if name != "model"
                    for m in metrics
                },
                **{
                    f"{m}_curve" if name == "model" else f"{name}_{m}_curve": torch.cat(scores[name].curve[m]).numpy()
                    for name in names
                    for m in metrics
                },
            },
        }
    )
    if official is not None:
        result["_official"] = official.arrays()
    if fvd_network is not None:
        real = sequences[: p.nt_gen, :n_seq]
        # (progress saved before --fvd-samples holds sample 0's frames alone, (Tf, B, C, H, W))
        future = torch.cat([b["fake"] if b["fake"].ndim == 6 else b["fake"][None] for b in acc.batches], dim=2)
        fakes = [torch.cat([real[: p.nt_cond], sample]) for sample in future]
        result["fvd"] = _fvd(
            real, fakes, fvd_network, dataclasses.replace(fvd_protocol or FVDProtocol(), n_cond=p.nt_cond)
        )
    return result


def _provenance(fingerprint: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """What decides the numbers besides the protocol: the results' ``provenance`` entry (see :func:`evaluate`)."""
    import platform

    import latentdyn

    out: dict[str, Any] = {
        "noise": fingerprint["noise"],
        "amp": fingerprint["amp"],
        "device": device.type,
    }
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
    out["torch_threads"] = torch.get_num_threads()
    out["versions"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "latentdyn": latentdyn.__version__,
    }
    out["digests"] = {
        "method": "BLAKE2b-128 of each tensor's name, dtype, shape and bytes",
        "model_weights": fingerprint["model weights"],
        "test_clips": fingerprint["test clips"],  # the uint8 clips evaluated, frames 0 .. nt_gen - 1
        "lpips_weights": fingerprint["LPIPS"],
        "sequence_indices": fingerprint["sequence indices"],  # None: 0 .. N - 1
    }
    return out


def _fvd(real: torch.Tensor, fakes: list[torch.Tensor], network: nn.Module, protocol: FVDProtocol) -> dict[str, Any]:
    """FVD of uint8 (T, N, C, H, W) videos, the real ones against each generated set of ``fakes`` (random samples
    1, 2 ...), as a JSON entry: the value (the mean over samples), the protocol, and with several samples each value
    and their population std; or why it was skipped."""
    t, n = real.shape[:2]
    if n < MIN_VIDEOS:
        return {"skipped": f"FVD needs at least {MIN_VIDEOS} test sequences, got {n}"}
    if t < MIN_FRAMES:
        return {"skipped": f"I3D needs at least {MIN_FRAMES} frames per video, got nt_gen={t}"}
    start = time.monotonic()
    try:
        first = compute_fvd(real, fakes[0], network, protocol)
        values = [first.value] + [
            compute_fvd(real, fake, network, protocol, real_embeddings=first.real_embeddings).value
            for fake in fakes[1:]
        ]
    except (ValueError, RuntimeError) as exc:  # e.g. a resolution too small for I3D's pooling
        return {"skipped": f"FVD failed: {exc}"}
    several = {"std": float(np.std(values)), "values": values} if len(values) > 1 else {}
    return {
        "value": float(np.mean(values)),
        **several,
        "samples": len(values),
        "protocol": asdict(first.protocol),
        "videos": (
            "real: ground truth; generated: ground-truth conditioning frames + first random sample"
            if len(values) == 1
            else f"real: ground truth; generated: ground-truth conditioning frames + random sample k, one FVD for "
            f"each k = 1 … {len(values)}; value: their mean, std: their population std (ddof = 0)"
        ),
        "seconds": time.monotonic() - start,
    }


def _check_amp_fits_the_solver(amp: str, model: FrameModel) -> None:
    """``--amp bf16``/``fp16`` with a run whose adaptive solver's rtol is below that dtype's eps: the solve under
    autocast would be refused (or crawl) once the evaluation had started."""
    c = model.config
    eps = amp_resolution_missed(c, amp)
    if eps is not None:
        raise ValueError(
            f"--amp: the run's {c.integrator!r} solver has rtol {c.integrator_rtol:g}, below the resolution of "
            f"{amp} autocast (eps {eps:g}); evaluate it with --amp none"
        )


def _cli_message(exc: Exception, flags: dict[str, str]) -> str:
    """A library error message with its argument names (``alexnet_path='…'``, ``path: …``) as the CLI flags."""
    text = str(exc)
    for argument, flag in flags.items():
        text = re.sub(rf"\b{argument}='([^']*)'", rf"{flag} \1", text)
        text = re.sub(rf"^{argument}:", f"{flag}:", text)
    return text


def _load_lpips(args: argparse.Namespace) -> tuple[nn.Module | None, dict[str, Any]]:
    """The LPIPS metric and its JSON entry, or ``None`` and the reason it is skipped."""
    if args.no_lpips:
        return None, {"skipped": "--no-lpips was given"}
    from latentdyn.video.lpips import LPIPS

    try:
        metric = LPIPS.from_files(args.lpips_alexnet, args.lpips_lin)
    except (FileNotFoundError, ValueError) as exc:
        message = _cli_message(exc, {"alexnet_path": "--lpips-alexnet", "lin_path": "--lpips-lin"})
        if args.lpips_alexnet is not None or args.lpips_lin is not None:
            raise ValueError(message) from None  # a file the user named: an error, before anything is computed
        return None, {"skipped": message}
    return metric, {
        "network": "AlexNet (ImageNet) + LPIPS linear weights v0.1, frames not resized",
        "alexnet": str(args.lpips_alexnet) if args.lpips_alexnet else "LATENTDYN_ALEXNET_WEIGHTS or the torch cache",
        "lin": str(args.lpips_lin) if args.lpips_lin else "shipped v0.1 (or LATENTDYN_LPIPS_WEIGHTS / torch cache)",
    }


def _load_i3d(args: argparse.Namespace) -> tuple[nn.Module | None, dict[str, Any]]:
    """The I3D network for FVD, or ``None`` and the reason FVD is skipped."""
    if not args.fvd:
        return None, {"skipped": "not requested (pass --fvd)"}
    from latentdyn.video.fvd import InceptionI3D

    try:
        network = InceptionI3D.from_file(args.i3d_weights)
    except (FileNotFoundError, ValueError) as exc:
        message = _cli_message(exc, {"path": "--i3d-weights"})
        if args.i3d_weights is not None:
            raise ValueError(message) from None  # a file the user named: an error, before anything is computed
        return None, {"skipped": message}
    return network.to(args.device), {}


class Terminated(BaseException):
    """Raised in the evaluate CLI by SIGTERM (a scheduler's or ``kill``'s stop), as Ctrl-C raises KeyboardInterrupt."""


@contextlib.contextmanager
def _stop_signal_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` (once: more SIGTERMs are ignored while the progress is saved). Only
    in the main thread, the one Python delivers signals to (``main`` may run in another, without it)."""

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _kept(exc: BaseException, sep: str, again: tuple[str, bool] | None = None) -> str:
    """What an evaluation stopped by ``exc`` kept, after ``sep``: "" when it saved nothing. ``again``: the command
    that continues it (:func:`_continue_command`), and whether that is the command given with ``--restart`` left
    out."""
    saved: SavedProgress | None = getattr(exc, "saved_progress", None)
    if saved is None:
        return ""
    same = "the same command" + (" without --restart" if again is not None and again[1] else "")
    return (
        f"{sep}after {saved.done} of {saved.total} test sequences: their results are saved in {saved.path}, "
        f"and {same} continues from there" + (f": {again[0]}" if again is not None else "")
    )


def _continue_command(argv: list[str]) -> tuple[str, bool]:
    """The command line that continues the evaluation of ``argv`` from its saved progress (``--restart`` would
    discard it: left out), and whether ``--restart`` was left out."""
    kept = [a for a in argv if a != "--restart"]
    return " ".join([_PROG, *map(shell_quote, kept)]), len(kept) < len(argv)


def _progress_of_other_steps(
    eval_dir: Path, name: str, before_step: str, after_step: str
) -> list[tuple[Path, int | None]]:
    """The saved progress in ``eval_dir``, and its checkpoint step, of the evaluations whose default name is
    ``name`` but for the step (``BEFORE_stepN_AFTER.partial.pt``, or no step) and which no evaluation runs now: a
    rerun after the run wrote a newer checkpoint (its name holds the new step) would otherwise leave them unmentioned
    for good."""
    pattern = re.compile(re.escape(before_step) + r"(?:_step(\d+))?" + re.escape(f"{after_step}.partial.pt"))
    try:
        entries = sorted(eval_dir.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        other = entry.name.removesuffix(".partial.pt")
        if match and other != name and entry.is_file() and not FileLock.held_elsewhere(eval_dir / f".{other}.lock"):
            found.append((entry, None if match.group(1) is None else int(match.group(1))))
    return found


def _clip_shape_hint(dataset: str, test_set: Path, train_cfg: dict[str, Any]) -> str:
    """What to do about test clips of another size or channel count than the model's (a suffix of the error)."""
    if test_set.suffix == ".npz":  # read as stored whatever the dataset
        return "; an .npz of clips is read as it is: store them at the model's size and channels"
    if dataset != train_cfg.get("dataset", "smmnist"):
        return f"; the run was trained on the {train_cfg.get('dataset', 'smmnist')!r} dataset: drop --dataset {dataset}"
    return ""


def _training_data_overlap(
    dataset: str, test_set: Path, train_cfg: dict[str, Any], record: object = None
) -> str | None:
    """How a folder run's ``--test-set`` overlaps the run's training data (``data_dir``): "is", "is inside" or
    "holds" it, with its path; None when it does not (or for the other datasets, whose test split is their own).
    Only what the folder reader reads counts: no ``.npz`` file or hidden folder inside ``data_dir``, no ``.npz``
    ``data_dir`` inside a folder test set, and, with the run's record of its videos (config.json's ``data``),
    only a path that is, holds or lies in one of them."""
    data_dir = train_cfg.get("data_dir")
    if dataset != "folder" or train_cfg.get("dataset") != "folder" or not isinstance(data_dir, str) or not data_dir:
        return None
    test, data = test_set.expanduser().resolve(), Path(data_dir).expanduser().resolve()
    if test == data:
        return f"is the run's training data (train.data_dir {data})"
    if data in test.parents:  # (data is then a folder)
        inside = test.relative_to(data)
        if test.suffix == ".npz" or any(is_hidden(part) for part in inside.parts):  # (the reader skips both)
            return None
        videos = record.get("videos") if isinstance(record, dict) else None
        if isinstance(videos, list):
            rel = inside.as_posix()
            if not any(v == rel or str(v).startswith(rel + "/") or rel.startswith(f"{v}/") for v in videos):
                return None
        return f"is inside the run's training data (train.data_dir {data})"
    if test in data.parents and data.suffix != ".npz" and not any(map(is_hidden, data.relative_to(test).parts)):
        return f"holds the run's training data (train.data_dir {data})"
    return None


def _other_steps_note(found: list[tuple[Path, int | None]], checkpoint: Path, step: int | None) -> str:
    """A note on the saved progress ``found`` (:func:`_progress_of_other_steps`): of which steps, that this
    evaluation does not continue it, that it cannot continue from the checkpoint's weights now, and how to delete
    it."""
    steps = ", ".join("no step" if s is None else f"step {s}" for _, s in found)
    remove = [path for p, _ in found for path in (p, official_work_dir(p)) if path.exists()]
    rm = "rm -r" if any(path.is_dir() for path in remove) else "rm"
    how = f"{rm} {' '.join(map(shell_quote, remove))}" if os.name == "posix" else " and ".join(map(str, remove))
    return (
        f"note: {', '.join(str(p) for p, _ in found)} hold{'s' if len(found) == 1 else ''} an unfinished evaluation "
        f"of another step of {checkpoint} ({steps}), of the same test set, number of samples, frames and sub-steps: "
        f"this one, of {'its step ' + str(step) if step is not None else 'its weights now'}, starts anew under its "
        f"own name. That progress continues only from the weights it was made from, which {checkpoint.name} no "
        f"longer holds; if you have no copy of them, delete it: {how}"
    )


def _flag_that_continues(what: str, saved: Any) -> tuple[bool, str] | None:
    """How the command line gives option ``what`` its ``saved`` value: (True, words to add) or (False, a switch to
    leave out); None when no flag can (the weights, the test clips, a value no flag takes)."""
    flag = FLAG_OF.get(what) if what in _CONTINUABLE else None
    if flag is None or saved is None or (what == "amp" and saved not in ("none", "bf16")):
        return None
    if isinstance(saved, bool):
        return (True, flag) if saved else (False, flag)
    return True, f"{flag} {saved}"


_CONTINUABLE = (
    "nt_cond",
    "nt_gen",
    "n_substeps",
    "n_samples",
    "batch_size",
    "seed",
    "max_sequences",
    "device",
    "amp",
    "sample_chunk",
    "noise",
    "fvd",
    "fvd_samples",
    "official_files",
)
"""Options whose saved value a flag of ``evaluate`` sets as such (``fvd`` and ``official_files`` too, as switches)."""


FLAG_OF = {
    "nt_cond": "--nt-cond",
    "nt_gen": "--nt-gen",
    "n_samples": "--n-samples",
    "n_substeps": "--n-substeps",
    "batch_size": "--batch-size",
    "seed": "--seed",
    "max_sequences": "--max-sequences",
    "device": "--device",
    "amp": "--amp",
    "fvd": "--fvd",
    "fvd_samples": "--fvd-samples",
    "official_files": "--save-official-files",
    "sample_chunk": "--sample-chunk",
    "noise": "--noise",
    "dataset": "--dataset",
    "test_set": "--test-set",
    "model weights": "checkpoint weights",
    "test clips": "test clips",
    "LPIPS": "LPIPS weights",
}
"""How the evaluate CLI names the settings of a saved progress (:class:`StateMismatchError`)."""


_PROG = "python -m examples.srvp.evaluate"
_EXAMPLE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
"""The example's folder: its frames are not the user's line a warning points at."""


def _check_overwrite(path: Path, settings: dict[str, Any], *, given_name: bool, computes: dict[str, bool]) -> None:
    """Refuse to replace ``path``, the results of an earlier evaluation, when they were made with other
    ``settings`` (protocol, noise, amp, device kind, dataset, test set) or hold a metric that this evaluation
    ``computes`` not (``{"lpips": bool, "fvd": bool}``); otherwise they are replaced.

    Raises:
        ValueError: the message names the differences and says how to go on (``--overwrite``, ``--name``).
    """
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        saved = None
    if not isinstance(saved, dict) or not isinstance(saved.get("protocol"), dict):
        said = "something other than the results of an evaluation"
    else:
        provenance: dict[str, Any] = saved.get("provenance") or {}
        data: dict[str, Any] = saved.get("data") or {}
        then = {
            **saved["protocol"],
            "noise": provenance.get("noise", "batch"),  # results written before --noise drew as "batch"
            "amp": provenance.get("amp"),
            "device": provenance.get("device"),
            "dataset": data.get("dataset"),
            "test_set": data.get("test_set"),
            # (results written before --fvd-samples scored the first sample alone)
            "fvd_samples": saved["fvd"].get("samples", 1) if _computed(saved.get("fvd"), "fvd") else None,
        }
        differences = [
            f"{FLAG_OF.get(key, key)}: {then.get(key)!r} there, {now!r} now"
            for key, now in settings.items()
            if then.get(key) != now and (key in saved["protocol"] or then.get(key) is not None)
        ]
        differences += [
            f"{metric.upper()}: computed there, not now"
            for metric, computed in computes.items()
            if not computed and _computed(saved.get(metric), metric)
        ]
        if not differences:
            return
        said = f"results of an evaluation with other settings ({'; '.join(differences)})"
    hint = "another --name" if given_name else "--name to write these under another name"
    raise ValueError(f"{path} holds {said}: pass --overwrite to replace it, or {hint}")


def _lock_results(
    lock: FileLock,
    eval_dir: Path,
    name: str,
    option: str,
    *,
    other_name: str = "pass --name to write these under another name",
) -> None:
    """Take ``lock`` on ``eval_dir/.NAME.lock`` for as long as this evaluation writes results named ``name`` (two
    evaluations of one name at once, e.g. with other seeds, would replace each other's results), then remove what a
    killed evaluation of that name left half-written: the temporary files of its saved progress and of every file
    :func:`write_outputs` writes (:func:`~examples.srvp._eval_outputs.output_files`, the official ones included).
    ``other_name``: how the refusal says to write under another name (empty: it says nothing of it)."""
    eval_dir.mkdir(parents=True, exist_ok=True)
    path = eval_dir / f".{name}.lock"
    lock.acquire(
        path,
        option,
        busy=f"another evaluation ({{who}}) is writing the results named {name} in {eval_dir} (it holds {path}); "
        f"wait for it to end{', or ' + other_name if other_name else ''}",
    )
    for written in (eval_dir / f"{name}.partial.pt", *output_files(eval_dir, name)):
        remove_stale_temporaries(written)


def _computed(entry: Any, metric: str) -> bool:
    """Whether a results file's ``"lpips"`` or ``"fvd"`` entry says that the metric was computed."""
    return isinstance(entry, dict) and "skipped" not in entry and (metric == "lpips" or "value" in entry)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m examples.srvp.evaluate``."""
    parser = CliParser(prog=_PROG, description=(__doc__ or "").split("\n")[0])
    add_version(parser)
    parser.add_argument(
        "run_dir", type=user_path, help="the run directory (holding config.json and checkpoints/) to evaluate"
    )
    parser.add_argument("--dataset", choices=DATASETS, default=None, help="test data kind (default: the run's)")
    parser.add_argument(
        "--test-set",
        type=user_path,
        default=None,
        help="the test data: an SM-MNIST .npz; a KTH/Human3.6M/BAIR data directory (default: the run's "
        "data_dir); a folder of test videos, or an .npz of uint8 clips (T, N, H, W[, C])",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        choices=("best", "last"),
        help="which weights (default as in the paper: best for KTH and Human3.6M runs, last otherwise)",
    )
    parser.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="samples per sequence, best of N (default: 100; 1 for deterministic Moving MNIST runs and models "
        "without noise, as the official README)",
    )
    parser.add_argument("--nt-cond", type=int, default=None, help="conditioning frames (default: the run's)")
    parser.add_argument(
        "--nt-gen",
        type=int,
        default=None,
        help="conditioning + predicted frames (default: KTH 40, Human3.6M 53, BAIR 30, folder the run's "
        "seq_len_test, SM-MNIST all)",
    )
    parser.add_argument("--n-substeps", type=int, default=None, help="sub-steps per frame (default: training)")
    parser.add_argument("--subsampling", type=int, default=None, help="Human3.6M subsampling (default: the run's)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=EvalProtocol.batch_size,
        help=f"test sequences predicted, scored and saved together (default: {EvalProtocol.batch_size}), which "
        "sets memory and speed; with --noise batch it also changes the samples",
    )
    parser.add_argument(
        "--max-sequences",
        type=int,
        default=EvalProtocol.max_sequences,
        help="evaluate only the first N sequences (0: all)",
    )
    parser.add_argument(
        "--sample-chunk",
        type=int,
        default=None,
        help=f"samples per prediction call, which bounds memory (default: about {CHUNK_FRAMES} predicted frames "
        "per call); the samples do not depend on it",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=EvalProtocol.seed,
        help="seed of the samples' noise (default: %(default)s); the same seed, device and thread count give the "
        "same scores",
    )
    parser.add_argument(
        "--noise",
        default="sequence",
        choices=NOISE_MODES,
        help="how the samples' noise is drawn: 'sequence' (default) from a CPU generator per test sequence "
        "seeded from --seed and the sequence's index, so that its samples depend neither on --batch-size nor on "
        "the other clips evaluated, on any device (its scores only in their last bits); 'batch': each batch's "
        "noise from one global stream seeded once, the way of the official test.py (the samples then depend "
        "on --batch-size and on the order of the clips)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    add_threads(parser)
    parser.add_argument(
        "--amp",
        default="none",
        choices=("none", "bf16"),
        help="bf16: run the model under bfloat16 autocast; the scores stay in float32 (default: none)",
    )
    parser.add_argument(
        "--name", default=None, help="output file stem (default from the test set, checkpoint, step and options)"
    )
    parser.add_argument(
        "--out",
        type=user_path,
        default=None,
        help="folder of the results, the saved progress and the lock (default: RUN_DIR/eval); with it nothing is "
        "written in the run directory, which may then be read-only (e.g. shared or released weights)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing eval/NAME.json written with other settings (without it, such an evaluation "
        "is refused before it starts, naming the differences)",
    )
    parser.add_argument(
        "--save-every",
        type=float,
        default=10.0,
        help="minutes between two saves of the progress to eval/NAME.partial.pt (default: 10; 0: after every "
        "batch); an interrupted evaluation (Ctrl-C, SIGTERM, a killed job) continues from there when the same "
        "command runs again",
    )
    parser.add_argument(
        "--restart", action="store_true", help="discard the saved progress of an unfinished evaluation of this name"
    )
    parser.add_argument(
        "--save-official-files",
        action="store_true",
        help="also write the official test.py files (results.npz, random_*.npz, cond_rec.npz, "
        "{psnr,ssim,lpips}_{best,worst}.npz) to eval/NAME_official/; until the end, each batch's samples are "
        "written to eval/NAME_official.partial/ (about as large as the files uncompressed), not held in memory",
    )
    lp = parser.add_argument_group("LPIPS (computed whenever the AlexNet weights are found)")
    lp.add_argument("--lpips-alexnet", type=user_path, default=None, help="torchvision's alexnet-owt-7be5be79.pth")
    lp.add_argument("--lpips-lin", type=user_path, default=None, help="LPIPS v0.1 linear weights (default: shipped)")
    lp.add_argument("--no-lpips", action="store_true", help="do not compute LPIPS")
    fv = parser.add_argument_group("FVD")
    fv.add_argument("--fvd", action="store_true", help="also compute FVD (needs at least 16 sequences)")
    fv.add_argument("--i3d-weights", type=user_path, default=None, help="I3D Kinetics-400 weights (piergiaj layout)")
    fv.add_argument("--fvd-resolution", type=int, default=224, help="I3D input size (default: 224, the protocol)")
    fv.add_argument(
        "--fvd-samples",
        type=int,
        default=1,
        metavar="K",
        help="FVD of each of the first K random samples, reported as mean ± std (the paper's: 5; default: 1, the "
        "first sample's, as the official test script)",
    )
    return parser


def _check_flags(args: argparse.Namespace) -> None:
    """Range checks of the integer flags, and ``--name``, before anything is loaded."""
    name = args.name
    if name is not None and (not name or "/" in name or "\\" in name or name.startswith(".")):
        raise ValueError(
            f"--name: expected a file name without a folder, not starting with '.' (the stem of "
            f"eval/NAME.json), got {name!r}"
        )
    at_least = {
        "--n-samples": (args.n_samples, 1),
        "--batch-size": (args.batch_size, 1),
        "--nt-cond": (args.nt_cond, 1),
        "--nt-gen": (args.nt_gen, 2),
        "--n-substeps": (args.n_substeps, 1),
        "--subsampling": (args.subsampling, 1),
        "--sample-chunk": (args.sample_chunk, 1),
        "--max-sequences": (args.max_sequences, 0),
        "--fvd-resolution": (args.fvd_resolution, 1),
        "--fvd-samples": (args.fvd_samples, 1),
        "--save-every": (args.save_every, 0),
    }
    for flag, (value, minimum) in at_least.items():
        if value is not None and not (math.isfinite(value) and value >= minimum):  # --save-every: NaN, inf
            hint = " (0: all)" if flag == "--max-sequences" else ""
            kind = "a number of minutes" if flag == "--save-every" else "an int"
            raise ValueError(f"{flag}: expected {kind} >= {minimum}{hint}, got {value}")
    if args.fvd_samples != 1 and not args.fvd:
        raise ValueError(f"--fvd-samples: FVD of {args.fvd_samples} samples asked for, but not FVD (add --fvd)")


@ends_quietly_on_a_closed_pipe
@robust_output()
@warnings_as_lines(ADJOINT_GRADIENT_WARNING)
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m examples.srvp.evaluate``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    lock = FileLock()
    try:
        with cpu_threads(args.threads):
            return _main(args, argv, lock)
    finally:
        lock.release()


def _main(args: argparse.Namespace, argv: list[str] | None, lock: FileLock) -> int:
    """:func:`main` once the flags are parsed; ``lock`` is taken on the results' name and released by the caller."""
    again = _continue_command(sys.argv[1:] if argv is None else argv)  # (what continues saved progress)
    try:
        refuse_torchrun(_PROG, "the evaluation", argv)
        _check_flags(args)
        require_modules("matplotlib", "imageio", needed_for="evaluate's curve plot and sample GIF")
        args.device = resolve_device(args.device)
        config = read_run_config(args.run_dir)
        eval_dir: Path = args.out if args.out is not None else Path(args.run_dir) / "eval"
        out_option = "--out" if args.out is not None else "run_dir"
        check_writable(eval_dir, out_option)  # before the evaluation, not after it
        args.checkpoint = args.checkpoint or default_checkpoint(args.run_dir, config)
        ckpt_file = checkpoint_path(args.run_dir, args.checkpoint)
        model, step = load_model_and_step(args.run_dir, args.checkpoint)
        train_cfg = config.get("train", {})
        dataset = args.dataset or _train_value(train_cfg, "dataset", "smmnist")
        run_file = Path(args.run_dir) / "config.json"  # values taken from it are blamed on it, not on a flag
        if args.dataset is None and dataset not in DATASETS:
            raise ValueError(
                f"run_dir: {run_file}: train.dataset: expected one of {DATASETS}, got {dataset!r} (--dataset "
                "overrides it)"
            )
        test_set: Path | None = args.test_set
        if test_set is None and dataset in DEFAULT_NT_GEN and train_cfg.get("dataset") == dataset:
            test_set = Path(train_cfg["data_dir"]) if train_cfg.get("data_dir") else None
        if test_set is None:
            raise ValueError(
                f"--test-set: required for the {dataset!r} dataset ({_test_data_hint(dataset, train_cfg, run_file)})"
            )
        run_nt_cond = train_cfg.get("nt_cond", model.config.n_inference_frames)
        if args.nt_cond is None and (not isinstance(run_nt_cond, int) or isinstance(run_nt_cond, bool)):
            raise ValueError(f"run_dir: {run_file}: train.nt_cond: expected an int, got {run_nt_cond!r}")
        nt_cond = args.nt_cond if args.nt_cond is not None else run_nt_cond
        nt_gen = args.nt_gen if args.nt_gen is not None else default_nt_gen(dataset, train_cfg)
        if dataset == "folder" and not nt_gen:
            raise ValueError("--nt-gen: required for a folder of videos when the run has no seq_len_test")
        n_substeps = args.n_substeps if args.n_substeps is not None else model.config.n_substeps
        # Checked before any data is read or sampled: nothing fails later, in the middle of the progress bar.
        nt_cond_name = (
            "--nt-cond" if args.nt_cond is not None else f"train.nt_cond of {run_file} (--nt-cond overrides it)"
        )
        check_protocol(model, nt_cond, n_substeps, names={"nt_cond": nt_cond_name, "n_substeps": "--n-substeps"})
        _check_amp_fits_the_solver(args.amp, model)
        options = run_clip_options(train_cfg, model)
        if args.subsampling is not None:
            options["subsampling"] = args.subsampling
        sequences = load_test_clips(dataset, test_set, nt_gen=nt_gen or 0, max_sequences=args.max_sequences, **options)
        if sequences.shape[1] == 0:
            raise ValueError(f"--test-set: {test_set} holds no test clips")
        if args.nt_gen is None and _names_a_test_set(dataset, test_set):
            nt_gen = sequences.shape[0]  # a test-set file or folder given by name: all its frames
        nt_gen = nt_gen or sequences.shape[0]
        if nt_gen <= nt_cond:
            if args.nt_gen is None:  # the length came from the dataset or the clips: the nt_cond is too long
                raise ValueError(
                    f"{nt_cond_name}: expected fewer conditioning frames than the {nt_gen} frames evaluated (nt_gen: "
                    f"the test clips' length or the dataset's default; --nt-gen changes it), got {nt_cond}"
                )
            given = "--nt-cond" if args.nt_cond is not None else "nt_cond (the run's)"
            raise ValueError(f"--nt-gen: expected more than {given}={nt_cond} frames, got {nt_gen}")
        if sequences.shape[0] < nt_gen:
            raise ValueError(f"--nt-gen: the test clips have {sequences.shape[0]} frames, fewer than {nt_gen}")
        size = model.config.image_size
        if sequences.shape[2] != model.config.channels or tuple(sequences.shape[3:]) != (size, size):
            raise ValueError(
                f"--test-set: frames are {list(sequences.shape[2:])} (C, H, W), the model expects "
                f"{[model.config.channels, size, size]}{_clip_shape_hint(dataset, test_set, train_cfg)}"
            )
        overlap = (
            _training_data_overlap(dataset, test_set, train_cfg, config.get("data"))
            if args.test_set is not None
            else None
        )
        if overlap:
            print(
                f"note: --test-set {test_set} {overlap}: its clips are videos the model was trained or validated on, "
                "so these scores are not test scores",
                file=sys.stderr,
            )
        protocol = EvalProtocol(
            nt_cond=nt_cond,
            nt_gen=nt_gen,
            n_samples=args.n_samples if args.n_samples is not None else default_n_samples(train_cfg, model),
            n_substeps=n_substeps,
            batch_size=args.batch_size,
            seed=args.seed,
            max_sequences=args.max_sequences,
        )
        if args.fvd_samples > protocol.n_samples:
            raise ValueError(
                f"--fvd-samples: expected at most the {protocol.n_samples} samples drawn per sequence (--n-samples), "
                f"got {args.fvd_samples}"
            )
        stem = test_set.stem if dataset == "smmnist" else dataset
        at = ckpt_file.stem if step is None else f"{ckpt_file.stem}_step{step}"
        after_step = f"_n{protocol.n_samples}_t{protocol.nt_gen}_dt{protocol.n_substeps}"
        name = args.name or f"{stem}_{at}{after_step}"
        settings = {
            **asdict(protocol),
            "noise": args.noise,
            "amp": args.amp,
            "device": torch.device(args.device).type,
            "dataset": dataset,
            "test_set": str(test_set),
            **({"fvd_samples": args.fvd_samples} if args.fvd else {}),
        }
        results_file = eval_dir / f"{name}.json"
        _lock_results(lock, eval_dir, name, "--name" if args.name else out_option)
        if not args.overwrite:  # before the metrics' weights are read and anything is computed
            wanted = {"lpips": not args.no_lpips, "fvd": args.fvd}
            _check_overwrite(results_file, settings, given_name=args.name is not None, computes=wanted)
        try:
            fvd_protocol = FVDProtocol(n_cond=nt_cond, resolution=args.fvd_resolution)
        except (TypeError, ValueError) as exc:
            raise ValueError(_cli_message(exc, {"resolution": "--fvd-resolution"})) from None
        lpips, lpips_info = _load_lpips(args)
        i3d, fvd_info = _load_i3d(args)
        if not args.overwrite:  # a metric asked for whose weights are missing is not computed either
            got = {"lpips": lpips is not None, "fvd": i3d is not None}
            _check_overwrite(results_file, settings, given_name=args.name is not None, computes=got)
        printed: dict[str, str] = {}  # the skip reasons printed in full now, shortened under the results
        for metric, info in (("lpips", lpips_info), ("fvd", fvd_info)):
            if "skipped" in info and info["skipped"] not in _CHOSEN_SKIPS:
                print(f"{metric.upper()} skipped: {info['skipped']}", file=sys.stderr)  # (a note: not a result)
                printed[metric] = info["skipped"]
        state = eval_dir / f"{name}.partial.pt"
        if args.restart:
            discard_progress(state)
        elif state.exists():
            print(f"continuing the unfinished evaluation saved in {state} (--restart starts over)")
        # (a note: nothing else changes). Only in the run's own eval folder: a shared --out may hold the progress of
        # another run's checkpoint of that name, still valid.
        if args.name is None and args.out is None and not state.exists():
            others = _progress_of_other_steps(eval_dir, name, f"{stem}_{ckpt_file.stem}", after_step)
            if others:
                print(_other_steps_note(others, ckpt_file, step), file=sys.stderr)
        with _stop_signal_raises():
            result = evaluate(
                model,
                sequences,
                protocol,
                device=args.device,
                amp=args.amp,
                lpips=lpips,
                fvd_network=i3d,
                fvd_protocol=fvd_protocol,
                fvd_samples=args.fvd_samples if i3d is not None else 1,
                sample_chunk=args.sample_chunk,
                official_files=args.save_official_files,
                state_file=state,
                save_every=60 * args.save_every,
                noise=args.noise,
            )
    except StateMismatchError as e:
        said = "; ".join(_difference(FLAG_OF.get(what, what), saved, now) for what, saved, now in e.differences)
        flags = [_flag_that_continues(what, saved) for what, saved, _ in e.differences]
        how = "run the command that started it to continue it"
        if flags and all(flags):  # only options of the command line differ (a default may have changed since)
            add = " ".join(words for keep, words in filter(None, flags) if keep)
            drop = " ".join(words for keep, words in filter(None, flags) if not keep)
            said_how = "; ".join(([f"add {add}"] if add else []) + ([f"leave out {drop}"] if drop else []))
            how = f"continue it with its settings ({said_how})"
        print(
            f"error: {e.path} holds an unfinished evaluation with other settings ({said}): {how}, pass --restart to "
            "discard it, or --name to evaluate under another name",
            file=sys.stderr,
        )
        return 2
    except (FileNotFoundError, ValueError) as e:
        hint = " (--restart discards it)" if str(e).startswith("state_file:") else ""
        print(f"error: {str(e).replace('state_file: ', '', 1)}{hint}{_kept(e, '; ', again)}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {os_error_message(e)}{_kept(e, '; ', again)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as e:
        how = "interrupted" if isinstance(e, KeyboardInterrupt) else "terminated"
        print(f"\n{how}{_kept(e, ' ', again) or ': no results were written'}", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 143
    except Exception as e:  # e.g. out of memory: the traceback, then what was kept
        if getattr(e, "saved_progress", None) is None:
            raise
        traceback.print_exc()
        print(f"error: {type(e).__name__}{_kept(e, ' ', again)}", file=sys.stderr)
        return 1
    result["lpips"] = lpips_info
    result.setdefault("fvd", fvd_info)
    result["data"] = {"dataset": dataset, "test_set": str(test_set)}
    if overlap:
        result["data"]["test_set_overlaps_training_data"] = overlap
    result["checkpoint"] = {"name": ckpt_file.stem, "file": str(ckpt_file), "step": step}
    result["provenance"]["command"] = [*_PROG.split(), *(sys.argv[1:] if argv is None else argv)]
    same = "the same command" + (" without --restart" if again[1] else "")  # (--restart would discard the state)
    try:
        paths = write_outputs(result, eval_dir, name)
    except OSError as e:
        print(f"error: {os_error_message(e)} ({same} writes the results again from {state})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\ninterrupted while writing the results: those already in {eval_dir} named "
            f"{name}* are complete (each file is written whole), the others missing; {same} writes "
            f"them again from {state}: {again[0]}",
            file=sys.stderr,
        )
        return 130
    discard_progress(state)
    print(format_results(result, said=printed))
    for kind, path in paths.items():
        print(f"{kind:13s} {path}{OUTPUT_NOTES.get(kind, '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
