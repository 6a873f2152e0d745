"""What an evaluation writes and prints: the results JSON, the curve plot, the sample GIF, per-sequence scores,
the official ``test.py`` files and the results table.

Part of :mod:`examples.srvp.evaluate`, which re-exports the public names.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from examples.srvp.checkpoint import (
    atomic_write,
    atomic_write_npz,
    atomic_write_text,
)

HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False}
"""Every metric an evaluation may report, in the order of its tables and plots, and whether higher is better."""

_AXIS_LABELS = {
    "psnr": "PSNR (dB, higher is better)",
    "ssim": "SSIM (higher is better)",
    "lpips": "LPIPS (lower is better)",
}


def _plot_title(result: dict[str, Any]) -> str:
    """What the curves are of: the weights and data (when the result says), the protocol and the selection."""
    p = result["protocol"]
    ckpt, data = result.get("checkpoint") or {}, result.get("data") or {}
    source = []
    if ckpt.get("name"):
        source.append(f"{ckpt['name']}.pt" + (f" at step {ckpt['step']}" if ckpt.get("step") is not None else ""))
    if data.get("test_set"):
        source.append(f"{data.get('dataset', 'test')} test set {Path(data['test_set']).name}")
    head = ", ".join(source) + ": " if source else ""
    return (
        f"{head}{result['n_sequences']} sequences, {p['nt_cond']} conditioning + {p['nt_gen'] - p['nt_cond']} "
        f"predicted frames\nbest and worst of {p['n_samples']} samples chosen per sequence and metric; bands: 95% "
        "confidence interval of the mean"
    )


def plot_figure(result: dict[str, Any]) -> Any:
    """The curve plot of ``result`` (a matplotlib ``Figure`` on an Agg canvas, not registered with pyplot): one
    panel per metric, its value at every predicted frame for the best and worst of N samples, one sample and the
    two reference predictors, with 95 % confidence bands; the title names the weights, the test set and the
    protocol when ``result`` records them."""
    # A figure of its own on an Agg canvas, without pyplot: the caller's backend (a notebook's) and pyplot's
    # list of open figures stay as they were.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    p = result["protocol"]
    name = result.get("model", "srvp").upper()
    steps = np.arange(p["nt_cond"] + 1, p["nt_gen"] + 1)
    names = _metric_names(result)
    fig = Figure(figsize=(5 * len(names), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, m in zip(axes[0], names):
        series = [
            (f"{name} best of {p['n_samples']}", result["metrics"]),
            (f"{name} worst of {p['n_samples']}", result["worst_sample"]),
            *([(f"{name} one sample", result["random_sample"])] if "random_sample" in result else []),
            ("copy last frame", result["reference_predictors"]["copy_last"]),
            ("all black", result["reference_predictors"]["black"]),
        ]
        for label, data in series:
            mean = np.array(data[f"{m}_curve"]["mean"])
            half = np.array(data[f"{m}_curve"]["ci95"])
            ax.plot(steps, mean, label=label)
            ax.fill_between(steps, mean - half, mean + half, alpha=0.25)
        ax.set_xlabel(f"frame (1 to {p['nt_cond']}: conditioning)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(_AXIS_LABELS.get(m, m.upper()))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(_plot_title(result), fontsize=9)
    fig.tight_layout()

    fig._repr_png_ = _FigurePNG(fig)  # type: ignore[attr-defined]
    return fig


class _FigurePNG:
    """A figure's ``_repr_png_``: a notebook shows the figure whatever its matplotlib backend. An object of this
    module rather than a closure, so that the figure still pickles, and a deep copy draws itself."""

    def __init__(self, figure: Any) -> None:
        self.figure = figure

    def __call__(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()


def _plot(result: dict[str, Any], path: Path) -> None:
    fig = plot_figure(result)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


GIF_HOLD_FRAMES = 4
"""The sample GIF shows its last frame this many times more (1 s at its 4 frames per second) before it loops."""
PREDICTED_COLOUR = (220, 40, 40)
"""The border of a predicted frame in the sample GIF (RGB); conditioning frames and the truth keep a grey one."""


def mark_predicted(frames: np.ndarray, grid_shape: tuple[int, ...], nt_cond: int, padding: int = 2) -> np.ndarray:
    """The frames of a :func:`latentdyn.video.media.video_grid` of (R, K, T, C, H, W) videos whose column 0 is
    the truth and the others predictions, with the border of every predicted cell (columns 1 and up, frames
    from ``nt_cond`` on) in :data:`PREDICTED_COLOUR`: where the prediction starts can be seen. The padding
    between the truth and column 1 is shared: its first half stays the truth's. A copy."""
    n_rows, n_cols, _, _, h, w = grid_shape
    out = frames.copy()
    for r in range(n_rows):
        top = r * (h + padding)
        for k in range(1, n_cols):
            left = k * (w + padding)
            shared = padding // 2 if k == 1 else 0  # (the truth's half of the strip between them)
            cell = out[nt_cond:, top : top + h + 2 * padding, left : left + w + 2 * padding]
            inner = cell[:, padding : padding + h, padding : padding + w].copy()
            cell[:, :, shared:] = PREDICTED_COLOUR
            cell[:, padding : padding + h, padding : padding + w] = inner
    return out


N_RANDOM_FILES = 5
"""The official test script saves the first 5 samples as ``random_1.npz`` … ``random_5.npz``."""
OFFICIAL_FILES = (
    "results",
    *(f"random_{i}" for i in range(1, N_RANDOM_FILES + 1)),
    "cond_rec",
    *(f"{metric}_{which}" for metric in HIGHER_IS_BETTER for which in ("best", "worst")),
)
"""The files :func:`write_official_files` may write (``NAME.npz`` each), and no others."""


def output_paths(out_dir: str | os.PathLike[str], name: str) -> dict[str, Path]:
    """Where :func:`write_outputs` writes the results named ``name`` in ``out_dir``, by the kinds it returns:
    ``json``, ``plot``, ``per_sequence``, ``gif`` and ``official`` (the folder of :func:`write_official_files`).
    One list for the writers and for what a killed writer may have left (:func:`output_files`)."""
    out_dir = Path(out_dir).expanduser()
    return {
        "json": out_dir / f"{name}.json",
        "plot": out_dir / f"{name}_curves.png",
        "per_sequence": out_dir / f"{name}_per_sequence.npz",
        "gif": out_dir / f"{name}_samples.gif",
        "official": out_dir / f"{name}_official",
    }


def official_file_paths(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """The file of each of :data:`OFFICIAL_FILES` in ``folder``."""
    return {official: Path(folder) / f"{official}.npz" for official in OFFICIAL_FILES}


def output_files(out_dir: str | os.PathLike[str], name: str) -> list[Path]:
    """Every file :func:`write_outputs` may write for the results named ``name`` in ``out_dir`` (the official files
    in place of their folder): those whose temporary files an evaluation killed mid-write leaves behind."""
    paths = output_paths(out_dir, name)
    folder = paths.pop("official")
    return [*paths.values(), *official_file_paths(folder).values()]


OUTPUT_NOTES = {
    "gif": (
        " (rows: test sequences; columns: truth, best and worst sample by PSNR, a random sample; red border: "
        "predicted frames)"
    ),
    "per_sequence": " (each sequence's scores, best of N, one sample and the references, per frame too)",
}
"""How to read an output of :func:`write_outputs` (after its path, where the commands list them)."""


def sample_grid(result: dict[str, Any]) -> np.ndarray | None:
    """The frames of the sample GIF of ``result`` (None when it kept no videos: ``n_gif=0``): uint8
    (T, H', W', 3), rows the first test sequences, columns the truth and the best and worst sample by PSNR and a
    random one, predicted frames framed in red (:func:`mark_predicted`). In a notebook, show a frame with
    ``PIL.Image.fromarray(frames[t])``, or the GIF :func:`write_outputs` writes with
    ``IPython.display.Image(filename=path)``."""
    from latentdyn.video.media import video_grid

    videos = result["_gif"]
    if not videos:
        return None
    # Rows: one test sequence each; columns: truth, best-PSNR, worst-PSNR, random sample.
    cols = [videos[k] for k in ("truth", "best", "worst", "random")]
    grid = rearrange(torch.stack(cols), "k t b c h w -> b k t c h w")
    return mark_predicted(video_grid(grid, pad_value=0.5), grid.shape, result["protocol"]["nt_cond"])


def write_outputs(result: dict[str, Any], out_dir: str | os.PathLike[str], name: str) -> dict[str, Path]:
    """Write the JSON, the curve plot, the sample GIF and per-sequence scores (each atomically); returns their paths.

    When ``result`` holds the official sample arrays (``evaluate(..., official_files=True)``), they are
    written too, to ``out_dir/<name>_official/`` (see :func:`write_official_files`).
    """
    from latentdyn.video.media import save_gif

    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    where = output_paths(out_dir, name)
    paths = {"json": where["json"], "plot": where["plot"]}
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    atomic_write_text(paths["json"], json.dumps(public, indent=2))
    per_sequence = {**result["_per_sequence"], **result.get("_per_sequence_others", {})}
    paths["per_sequence"] = atomic_write_npz(where["per_sequence"], **per_sequence)
    _plot(result, paths["plot"])
    frames = sample_grid(result)
    if frames is not None:
        frames = np.concatenate([frames, np.repeat(frames[-1:], GIF_HOLD_FRAMES, axis=0)])  # a pause at the end
        paths["gif"] = save_gif(where["gif"], frames, fps=4)
    if "_official" in result:
        paths["official"] = write_official_files(result, where["official"])
    return paths


def write_official_files(result: dict[str, Any], folder: str | os.PathLike[str]) -> Path:
    """The files the official ``test.py`` writes, each written atomically to ``folder``; returns it.

    - ``results.npz``: keys ``psnr``, ``ssim`` (and ``lpips`` when computed), the per-sequence best values,
      shape (N_seq,) (PSNR with each frame capped at ``PSNR_CAP_DB``, as the other outputs).
    - ``random_1.npz`` … ``random_5.npz`` (fewer when N < 5): samples 1 to 5, predicted frames only.
    - ``cond_rec.npz``: sample 1's reconstruction of the nt_cond conditioning frames.
    - ``{psnr,ssim,lpips}_{best,worst}.npz``: the best and worst sample of each sequence for each metric,
      predicted frames only.

    Each sample file holds ``samples``, uint8 (N_seq, T, H, W, C) from ×255 with truncation. Arrays are
    compressed (``np.savez_compressed``), as the official script does.
    """
    official = result.get("_official")
    if not official:
        raise ValueError("result: no official sample arrays; run evaluate(..., official_files=True)")
    paths = official_file_paths(folder)
    unknown = [name for name in official if name not in paths or name == "results"]
    if unknown:  # (a file no rerun would clean up after: OFFICIAL_FILES lists them all)
        raise ValueError(
            f"result: official sample arrays of unknown files {unknown}; expected some of {OFFICIAL_FILES[1:]}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_npz(paths["results"], compressed=True, **result["_per_sequence"])
    for name, samples in official.items():
        atomic_write_npz(paths[name], compressed=True, samples=samples)
    return folder


def _metric_names(result: dict[str, Any]) -> list[str]:
    return [m for m in HIGHER_IS_BETTER if m in result["metrics"]]


NOT_COMPUTED_HERE = "not computed by the quickstart (python -m examples.srvp.evaluate computes it)"
"""The ``skipped`` reason of LPIPS and FVD in the quickstart's results."""
_CHOSEN_SKIPS = ("--no-lpips was given", "not requested (pass --fvd)", NOT_COMPUTED_HERE)
"""The reasons a metric is skipped that the user chose (no news to print)."""


def format_results(result: dict[str, Any], *, said: dict[str, str] | None = None) -> str:
    """The results table (best of N, reference predictors), FVD and skipped metrics, as printed text.

    A metric skipped because the user chose so (``--no-lpips``, no ``--fvd``) is not listed. ``said`` maps a
    metric (``"lpips"``, ``"fvd"``) to the skip reason already printed in full (the command prints a missing
    weights file's before the evaluation): a skip for that same reason gets its first sentence only; any other
    reason (e.g. FVD failing during the evaluation) is printed whole. The JSON keeps every reason."""
    lines = []
    n = result["protocol"]["n_samples"]
    names = _metric_names(result)
    model = result.get("model", "srvp").upper()
    rows = [(f"{model} best of {n}", result["metrics"])]
    if "random_sample" in result:  # one draw, scored as the single-guess references below are
        rows.append((f"{model} one sample", result["random_sample"]))
    rows += [(k, v) for k, v in result["reference_predictors"].items()]
    decimals = {"psnr": 3, "ssim": 4, "lpips": 4}
    # With 5 predicted frames or fewer, the "first 5" scores are the overall ones: not printed twice.
    protocol = result["protocol"]
    first5 = [f"{m}_first5" for m in names] if protocol["nt_gen"] - protocol["nt_cond"] > 5 else []
    header = [f"{m.upper():>18s}" for m in names] + [f"{k.split('_')[0].upper() + ' first 5':>18s}" for k in first5]
    lines.append(f"{'':22s} " + " ".join(header))
    for label, r in rows:
        cells = []
        for key in [*names, *first5]:
            d = decimals[key.split("_")[0]]
            cells.append(f"{r[key]['mean']:>9.{d}f} ± {r[key]['ci95']:<6.{d}f}")
        lines.append(f"{label:22s} " + " ".join(cells))
    lines.append(
        f"(mean over the {result['n_sequences']} sequences ± the half-width of its 95 % interval, "
        "1.96·std/√n; each sequence's score is its mean over the predicted frames)"
    )
    for metric in ("lpips", "fvd"):
        entry = result.get(metric)
        if isinstance(entry, dict) and "skipped" in entry:
            reason = str(entry["skipped"])
            if reason in _CHOSEN_SKIPS:
                continue
            if said and said.get(metric) == reason and ". " in reason:
                reason = reason.split(". ")[0] + " (the whole reason: above, and in the JSON)"
            lines.append(f"{metric.upper()} skipped: {reason}")
        elif metric == "fvd" and isinstance(entry, dict) and "value" in entry:
            proto = entry["protocol"]
            k = entry.get("samples", 1)
            value, which = (
                (f"{entry['value']:.2f}", "first random sample")
                if k == 1
                else (f"{entry['value']:.2f} ± {entry['std']:.2f}", f"mean ± std over random samples 1-{k}")
            )
            lines.append(
                f"FVD {value} ({proto['n_videos']} videos, {which}, conditioning frames "
                f"included, {proto['resolution']}x{proto['resolution']} {proto['resize']} resize)"
            )
    t = result["throughput"]
    lines.append(
        f"{result['n_sequences']} sequences in {t['seconds']:.1f} s: {t['sequences_per_s']:.2f} sequences/s, "
        f"{t['predicted_frames_per_s']:.0f} predicted frames/s"
        + (f" (computing time; continued after {', '.join(map(str, t['resumed_at']))})" if t.get("resumed_at") else "")
    )
    return "\n".join(lines)
