"""Evaluate a trained SRVP run with the official protocol (best of N samples per test sequence).

    python -m examples.srvp.evaluate RUN_DIR --test-set FILE [--n-samples 100] [--nt-gen 25]

For every test sequence, N futures are sampled from the first ``nt_cond`` frames (the posterior on the
conditioning frames is re-sampled for each); for each metric separately the best sample is kept; scores are
averaged over the predicted frames and reported as mean ± 1.96·std/√n over sequences. Two reference
predictors are scored the same way: copy-last-frame and all-black. Outputs go to ``RUN_DIR/eval/``: a JSON
file of metrics and per-time-step curves, a PNG plot of the curves and a GIF of ground truth / best / worst /
random samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange, repeat

from examples.srvp.checkpoint import atomic_write_text, checkpoint_path, load_model, read_run_config
from examples.srvp.model import SRVP
from latentdyn.video.metrics import best_of_n, mean_confidence_interval, psnr, select_samples, ssim

__all__ = ["EvalProtocol", "evaluate", "load_sequences", "main"]

METRICS = ("psnr", "ssim")


@dataclass(frozen=True)
class EvalProtocol:
    """Options of an evaluation, recorded next to its results."""

    nt_cond: int
    nt_gen: int  # conditioning + predicted frames
    n_samples: int
    n_substeps: int
    batch_size: int
    seed: int
    max_sequences: int  # 0: all

    @property
    def n_future(self) -> int:
        return self.nt_gen - self.nt_cond


def load_sequences(path: str | Path) -> torch.Tensor:
    """Test clips of a ``.npz`` test set as uint8 (T, N, C, H, W).

    Moving MNIST files (``sequences`` (T, N, H, W), time-major, as the official ``make_test_set``) are read
    with :func:`latentdyn.video.moving_mnist.load_test_set`, which validates them.
    """
    from latentdyn.video.moving_mnist import load_test_set

    data = load_test_set(path)
    return rearrange(torch.from_numpy(np.ascontiguousarray(data.sequences)), "t n h w -> t n 1 h w")


@dataclass
class _Scores:
    """Per-sequence scores of one predictor: time averages (B,) and curves (B, T) per metric."""

    avg: dict[str, list[torch.Tensor]]
    curve: dict[str, list[torch.Tensor]]

    @classmethod
    def empty(cls) -> _Scores:
        return cls({m: [] for m in METRICS}, {m: [] for m in METRICS})

    def add(self, name: str, avg: torch.Tensor, curve: torch.Tensor) -> None:
        self.avg[name].append(avg)
        self.curve[name].append(curve)

    def summary(self, first: int = 5) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in METRICS:
            avg, curve = torch.cat(self.avg[m]).double(), torch.cat(self.curve[m]).double()
            mean, half = mean_confidence_interval(avg)
            head_mean, head_half = mean_confidence_interval(curve[:, :first].mean(1))
            cmean, chalf = mean_confidence_interval(curve)
            out[m] = {"mean": float(mean), "ci95": float(half)}
            out[f"{m}_first{first}"] = {"mean": float(head_mean), "ci95": float(head_half)}
            out[f"{m}_curve"] = {"mean": cmean.tolist(), "ci95": chalf.tolist()}
        return out


def _frame_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR and SSIM of (N, T, B, C, H, W) predictions against (T, B, C, H, W) targets: (N, B, T) each."""
    tgt = target.unsqueeze(0).expand_as(pred)
    return {
        "psnr": rearrange(psnr(pred, tgt), "n t b -> n b t"),
        "ssim": rearrange(ssim(pred, tgt), "n t b -> n b t"),
    }


@torch.no_grad()
def evaluate(
    model: SRVP,
    sequences: torch.Tensor,
    protocol: EvalProtocol,
    *,
    device: torch.device | str = "cpu",
    amp: str = "none",
    n_gif: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Best-of-N PSNR/SSIM of ``model`` on uint8 test clips (T, N, C, H, W), with reference predictors.

    Returns:
        A JSON-ready dict (protocol, metrics, curves, reference predictors, throughput) and, under the key
        ``"_gif"`` (not JSON), the videos for the sample GIF.
    """
    device = torch.device(device)
    p = protocol
    if sequences.shape[0] < p.nt_gen:
        raise ValueError(f"--nt-gen: the test clips have {sequences.shape[0]} frames, fewer than nt_gen={p.nt_gen}")
    n_seq = sequences.shape[1] if not p.max_sequences else min(p.max_sequences, sequences.shape[1])
    torch.manual_seed(p.seed)
    model = model.to(device).eval()
    scores = {"model": _Scores.empty(), "copy_last": _Scores.empty(), "black": _Scores.empty()}
    worst = _Scores.empty()
    gif: dict[str, list[torch.Tensor]] = {"truth": [], "best": [], "worst": [], "random": []}
    ctx = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if amp == "bf16"
        else torch.autocast(device.type, enabled=False)
    )
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_seq, unit="seq", desc="evaluate", dynamic_ncols=True)
    start = time.monotonic()
    for lo in range(0, n_seq, p.batch_size):
        x = sequences[: p.nt_gen, lo : min(lo + p.batch_size, n_seq)].to(device).float().div_(255)
        cond, target = x[: p.nt_cond], x[p.nt_cond :]
        with ctx:
            pred = model.predict(cond, p.n_future, p.n_samples, n_substeps=p.n_substeps)
        frames = pred.frames.float()  # (N, Tf, B, C, H, W), clamped to [0, 1]
        per_metric = _frame_scores(frames, target)
        for m, s in per_metric.items():
            sel = best_of_n(s, higher_is_better=True)
            assert sel.best_curve is not None and sel.worst_curve is not None
            scores["model"].add(m, sel.best, sel.best_curve)
            worst.add(m, sel.worst, sel.worst_curve)
            if m == "psnr" and sum(v.shape[1] for v in gif["truth"]) < n_gif:
                k = n_gif - sum(v.shape[1] for v in gif["truth"])
                gif["truth"].append(x[:, :k].cpu())
                for name, idx in (("best", sel.best_index), ("worst", sel.worst_index)):
                    chosen = select_samples(frames, idx, batch_dim=2)[:, :k]
                    gif[name].append(torch.cat([cond[:, :k], chosen]).cpu())
                gif["random"].append(torch.cat([cond[:, :k], frames[0][:, :k]]).cpu())
        for name, guess in (
            ("copy_last", repeat(cond[-1], "b c h w -> 1 t b c h w", t=target.shape[0])),
            ("black", torch.zeros_like(target).unsqueeze(0)),
        ):
            for m, s in _frame_scores(guess, target).items():
                scores[name].add(m, s[0].mean(-1), s[0])
        if bar is not None:
            bar.update(x.shape[1])
    elapsed = time.monotonic() - start
    if bar is not None:
        bar.close()
    result: dict[str, Any] = {
        "protocol": asdict(protocol),
        "n_sequences": n_seq,
        "metrics": scores["model"].summary(),
        "worst_sample": worst.summary(),
        "reference_predictors": {name: scores[name].summary() for name in ("copy_last", "black")},
        "throughput": {
            "seconds": elapsed,
            "sequences_per_s": n_seq / elapsed,
            "predicted_frames_per_s": n_seq * p.n_samples * p.n_future / elapsed,
        },
        "_gif": {k: torch.cat(v, dim=1) for k, v in gif.items() if v},
        "_per_sequence": {m: torch.cat(scores["model"].avg[m]).numpy() for m in METRICS},
    }
    return result


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = result["protocol"]
    steps = np.arange(p["nt_cond"] + 1, p["nt_gen"] + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, m in zip(axes, METRICS):
        series = [
            (f"SRVP best of {p['n_samples']}", result["metrics"]),
            (f"SRVP worst of {p['n_samples']}", result["worst_sample"]),
            ("copy last frame", result["reference_predictors"]["copy_last"]),
            ("all black", result["reference_predictors"]["black"]),
        ]
        for label, data in series:
            mean = np.array(data[f"{m}_curve"]["mean"])
            half = np.array(data[f"{m}_curve"]["ci95"])
            ax.plot(steps, mean, label=label)
            ax.fill_between(steps, mean - half, mean + half, alpha=0.25)
        ax.set_xlabel("frame (t)")
        ax.set_ylabel(m.upper())
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{result['n_sequences']} test sequences, 95% confidence bands")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_outputs(result: dict[str, Any], out_dir: Path, name: str) -> dict[str, Path]:
    """Write the JSON, the curve plot, the sample GIF and per-sequence scores; returns their paths."""
    from latentdyn.video.media import save_gif, video_grid

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{name}.json", "plot": out_dir / f"{name}_curves.png"}
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    atomic_write_text(paths["json"], json.dumps(public, indent=2))
    np.savez(out_dir / f"{name}_per_sequence.npz", **result["_per_sequence"])
    paths["per_sequence"] = out_dir / f"{name}_per_sequence.npz"
    _plot(result, paths["plot"])
    videos = result["_gif"]
    if videos:
        # Rows: one test sequence each; columns: truth, best-PSNR, worst-PSNR, random sample.
        cols = [videos[k] for k in ("truth", "best", "worst", "random")]
        grid = rearrange(torch.stack(cols), "k t b c h w -> b k t c h w")
        paths["gif"] = save_gif(out_dir / f"{name}_samples.gif", video_grid(grid), fps=4)
    return paths


def format_results(result: dict[str, Any]) -> str:
    lines = []
    n = result["protocol"]["n_samples"]
    rows = [(f"SRVP best of {n}", result["metrics"])] + [(k, v) for k, v in result["reference_predictors"].items()]
    lines.append(f"{'':22s} {'PSNR':>16s} {'SSIM':>18s} {'PSNR first 5':>16s} {'SSIM first 5':>18s}")
    for label, r in rows:
        lines.append(
            f"{label:22s} {r['psnr']['mean']:8.3f} ± {r['psnr']['ci95']:.3f}  {r['ssim']['mean']:.4f} ± "
            f"{r['ssim']['ci95']:.4f}  {r['psnr_first5']['mean']:8.3f} ± {r['psnr_first5']['ci95']:.3f}  "
            f"{r['ssim_first5']['mean']:.4f} ± {r['ssim_first5']['ci95']:.4f}"
        )
    t = result["throughput"]
    lines.append(
        f"{result['n_sequences']} sequences in {t['seconds']:.1f} s: {t['sequences_per_s']:.2f} sequences/s, "
        f"{t['predicted_frames_per_s']:.0f} predicted frames/s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m examples.srvp.evaluate``."""
    parser = argparse.ArgumentParser(prog="python -m examples.srvp.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--test-set", type=Path, required=True, help=".npz test set (official layout)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
    parser.add_argument("--n-samples", type=int, default=100, help="samples per sequence (best of N)")
    parser.add_argument("--nt-cond", type=int, default=None, help="conditioning frames (default: the run's)")
    parser.add_argument("--nt-gen", type=int, default=None, help="conditioning + predicted frames (default: all)")
    parser.add_argument("--n-substeps", type=int, default=None, help="sub-steps per frame (default: training)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-sequences", type=int, default=0, help="evaluate only the first N sequences")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="none", choices=("none", "bf16"))
    parser.add_argument("--name", default=None, help="output file stem (default from the test set and options)")
    args = parser.parse_args(argv)
    try:
        config = read_run_config(args.run_dir)
        checkpoint_path(args.run_dir, args.checkpoint)
        model = load_model(args.run_dir, args.checkpoint)
        sequences = load_sequences(args.test_set)
        train_cfg = config.get("train", {})
        nt_cond = args.nt_cond or int(train_cfg.get("nt_cond", model.config.n_inference_frames))
        nt_gen = args.nt_gen or sequences.shape[0]
        for name, value in (("--n-samples", args.n_samples), ("--batch-size", args.batch_size)):
            if value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value}")
        if nt_gen <= nt_cond:
            raise ValueError(f"--nt-gen: expected more than nt_cond={nt_cond} frames, got {nt_gen}")
        protocol = EvalProtocol(
            nt_cond=nt_cond,
            nt_gen=nt_gen,
            n_samples=args.n_samples,
            n_substeps=args.n_substeps or model.config.n_substeps,
            batch_size=args.batch_size,
            seed=args.seed,
            max_sequences=args.max_sequences,
        )
        result = evaluate(model, sequences, protocol, device=args.device, amp=args.amp)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = args.name or f"{args.test_set.stem}_n{protocol.n_samples}_t{protocol.nt_gen}_dt{protocol.n_substeps}"
    paths = write_outputs(result, Path(args.run_dir) / "eval", name)
    print(format_results(result))
    for kind, path in paths.items():
        print(f"{kind:13s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
