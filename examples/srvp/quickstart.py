"""The out-of-the-box run: train SRVP on Stochastic Moving MNIST on a CPU, evaluate it, show where things are.

    python -m examples.srvp.quickstart [--run-dir runs/smmnist-cpu] [--minutes 13]

1. Builds the fixed SM-MNIST test set from the MNIST digits shipped with latentdyn (no network).
2. Trains the ``smmnist-cpu`` preset (about 13 minutes on 2 CPU cores). Running the command again resumes an
   unfinished run, or skips training when it is complete.
3. Evaluates it with the official protocol, best of 20 samples, against two reference predictors
   (copy-last-frame, all-black), and writes metrics (JSON), curves (PNG) and sample videos (GIF).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from examples.srvp import evaluate as ev
from examples.srvp.checkpoint import load_checkpoint, load_model, read_run_config
from examples.srvp.config import PRESETS, ModelConfig, TrainConfig, config_from_dict
from examples.srvp.train import train


def ensure_test_set(path: Path, seq_len: int = 25) -> Path:
    """The SM-MNIST test set built from the embedded MNIST test digits (made once, then reused)."""
    from latentdyn.video.mnist import load_embedded_digits
    from latentdyn.video.moving_mnist import make_test_set, save_test_set

    if not path.exists():
        digits = load_embedded_digits("test")
        data = make_test_set(digits.images, digits.labels, seq_len=seq_len, deterministic=False)
        save_test_set(path, data)
        print(f"made the test set {path}: {data.sequences.shape[1]} sequences of {seq_len} frames")
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m examples.srvp.quickstart``."""
    parser = argparse.ArgumentParser(prog="python -m examples.srvp.quickstart", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/smmnist-cpu"))
    parser.add_argument("--preset", default="smmnist-cpu", choices=sorted(PRESETS))
    parser.add_argument("--minutes", type=float, default=None, help="training time budget (default: the preset's)")
    parser.add_argument("--n-samples", type=int, default=20, help="samples per test sequence (best of N)")
    parser.add_argument("--eval-sequences", type=int, default=256, help="test sequences to evaluate (0: all)")
    parser.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)  # smoke tests
    args = parser.parse_args(argv)

    test_set = ensure_test_set(args.run_dir.parent / "data" / "smmnist_test_embedded_25.npz")
    run_dir: Path = args.run_dir
    if (run_dir / "config.json").exists():
        saved = read_run_config(run_dir)
        cfg = config_from_dict(TrainConfig, {**saved["train"], "model": saved["model"]})
        last = run_dir / "checkpoints" / "last.pt"
        step = int(load_checkpoint(last)["step"]) if last.exists() else 0
        target = cfg.n_iter if args.max_steps is None else min(cfg.n_iter, args.max_steps)
        if step < target:
            print(f"resuming {run_dir} at step {step} of {target}")
            train(cfg, run_dir, resume=True, max_steps=args.max_steps)
        else:
            print(f"{run_dir} is already trained ({step} steps); evaluating it")
    else:
        cfg = PRESETS[args.preset]()
        if args.minutes is not None:
            cfg = dataclasses.replace(cfg, max_minutes=args.minutes)
        print(f"training the {args.preset!r} preset into {run_dir} (budget {cfg.max_minutes or 'none'} min)")
        train(cfg, run_dir, max_steps=args.max_steps)

    # The final (lr-decayed) weights, not checkpoints/best.pt: over such a short run the validation PSNR,
    # averaged over all predicted frames, favours the blurry early models (see examples/srvp/README.md).
    model = load_model(run_dir, "last")
    assert isinstance(model.config, ModelConfig)
    sequences = ev.load_sequences(test_set)
    protocol = ev.EvalProtocol(
        nt_cond=cfg.nt_cond,
        nt_gen=sequences.shape[0],
        n_samples=args.n_samples,
        n_substeps=model.config.n_substeps,
        batch_size=16,
        seed=1,
        max_sequences=args.eval_sequences,
    )
    amp = "bf16" if cfg.amp == "bf16" else "none"
    result = ev.evaluate(model, sequences, protocol, amp=amp)
    name = f"{test_set.stem}_n{protocol.n_samples}"
    paths = ev.write_outputs(result, run_dir / "eval", name)
    print()
    print(ev.format_results(result))
    print()
    print("outputs:")
    for kind, path in paths.items():
        print(f"  {kind:13s} {path}")
    print(f"  {'checkpoint':13s} {run_dir / 'checkpoints' / 'last.pt'}")
    print(f"  {'training log':13s} {run_dir / 'train_log.jsonl'}")
    print(
        f"more samples: python -m examples.srvp.evaluate {run_dir} --test-set {test_set} --checkpoint last "
        "--n-samples 100"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
