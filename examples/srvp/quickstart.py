"""The out-of-the-box run: train SRVP on Stochastic Moving MNIST on a CPU, evaluate it, show where things are.

    python -m examples.srvp.quickstart [--run-dir runs/smmnist-cpu] [--minutes 18]

1. Builds the fixed SM-MNIST test set from the MNIST digits shipped with latentdyn (no network); for a
   deterministic Moving MNIST run (``--preset smmnist-deterministic``), the deterministic test set of 100 frames.
2. Trains the ``smmnist-cpu`` preset (about 12.6 to 16.1 minutes on 2 CPU cores, at most 18). Running the command
   again resumes an unfinished run, or skips training when it is complete.
3. Evaluates it with the official protocol, best of 20 samples (1 for deterministic Moving MNIST, as the official
   README), against two reference predictors
   (copy-last-frame, all-black), and writes metrics (JSON), curves (PNG) and sample videos (GIF).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from examples.srvp import evaluate as ev
from examples.srvp._cli import (
    CliParser,
    add_version,
    ends_quietly_on_a_closed_pipe,
    refuse_torchrun,
    require_modules,
    robust_output,
    shell_quote,
    user_path,
    warnings_as_lines,
)
from examples.srvp.checkpoint import (
    FileLock,
    load_checkpoint,
    load_model_and_step,
    os_error_message,
    read_run_config,
    read_train_config,
)
from examples.srvp.config import PRESETS, ModelConfig, TrainConfig
from examples.srvp.train import _RESUME_MAY_CHANGE, TrainResult, cli_hints, exit_status, train


def ensure_test_set(path: Path, seq_len: int = 25, *, deterministic: bool = False) -> Path:
    """The (SM-)MNIST test set built from the embedded MNIST test digits (made once, then reused)."""
    from latentdyn.video.mnist import load_embedded_digits
    from latentdyn.video.moving_mnist import make_test_set, save_test_set

    if not path.exists():
        digits = load_embedded_digits("test")
        data = make_test_set(digits.images, digits.labels, seq_len=seq_len, deterministic=deterministic)
        save_test_set(path, data)
        print(f"made the test set {path}: {data.sequences.shape[1]} sequences of {seq_len} frames")
    return path


SMMNIST_PRESETS = tuple(sorted(name for name, make in PRESETS.items() if make().dataset == "smmnist"))
"""The presets this command can train: those on Moving MNIST, whose test set it builds itself."""


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (the help text says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m examples.srvp.quickstart``."""
    parser = CliParser(
        prog="python -m examples.srvp.quickstart",
        description=(__doc__ or "").split("\n")[0],
        formatter_class=_DefaultsHelp,
    )
    add_version(parser)
    parser.add_argument("--run-dir", type=user_path, default=Path("runs/smmnist-cpu"), help="the run (made or resumed)")
    parser.add_argument("--preset", default="smmnist-cpu", choices=SMMNIST_PRESETS, help="preset of a new run")
    parser.add_argument(
        "--minutes", type=float, default=None, help="training time budget of this invocation (default: the preset's)"
    )
    parser.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="samples per test sequence, best of N (default: 20; 1 for deterministic Moving MNIST, as the official "
        "README)",
    )
    parser.add_argument("--eval-sequences", type=int, default=256, help="test sequences to evaluate (0: all)")
    parser.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)  # smoke tests
    return parser


def _check_args(args: argparse.Namespace) -> None:
    """Every option checked before the training starts (not after 13 minutes of it)."""
    if args.n_samples is not None and args.n_samples < 1:
        raise ValueError(f"--n-samples: expected an int >= 1, got {args.n_samples}")
    if args.eval_sequences < 0:
        raise ValueError(f"--eval-sequences: expected an int >= 0 (0: all), got {args.eval_sequences}")
    if args.minutes is not None and not (args.minutes >= 0 and args.minutes != float("inf")):
        raise ValueError(f"--minutes: expected a finite number >= 0, got {args.minutes}")
    if args.max_steps is not None and args.max_steps < 1:
        raise ValueError(f"--max-steps: expected an int >= 1, got {args.max_steps}")


@ends_quietly_on_a_closed_pipe
@robust_output()
@warnings_as_lines()
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m examples.srvp.quickstart``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        refuse_torchrun("python -m examples.srvp.quickstart", "the quickstart", argv)
        _check_args(args)
        require_modules("matplotlib", "imageio", needed_for="the quickstart's curve plot and sample GIF")
        return _run(args, parser, sys.argv[1:] if argv is None else argv)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a run directory that cannot be written
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training
        print("\ninterrupted; run this command again to resume", file=sys.stderr)
        return 130


def _saved_config(run_dir: Path) -> TrainConfig:
    """The configuration of an existing run, checked to be one this command can train and evaluate."""
    saved = read_run_config(run_dir)
    dataset = (saved.get("train") or {}).get("dataset")
    if dataset != "smmnist":
        raise ValueError(
            f"--run-dir: {run_dir} holds a {dataset!r} run; the quickstart trains and evaluates Moving MNIST runs "
            f"only (continue it with python -m examples.srvp.train --resume {shell_quote(run_dir)}, evaluate it with "
            "python -m examples.srvp.evaluate)"
        )
    try:
        return read_train_config(run_dir)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--run-dir: {str(e).removeprefix('run_dir: ')}") from None


def _started_from(cfg: TrainConfig, preset: str) -> bool:
    """Whether a run of configuration ``cfg`` (its config.json) is one of ``preset``: the same options, but for
    those a run may change after it started (the runtime ones, ``--lr``, ``data_dir``)."""
    same = dataclasses.replace(PRESETS[preset](), **{k: getattr(cfg, k) for k in _RESUME_MAY_CHANGE})
    return same == cfg


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> int:
    run_dir: Path = args.run_dir
    saved_cfg = _saved_config(run_dir) if (run_dir / "config.json").exists() else None  # before anything is made
    # The official README's test sets: 25 frames of stochastic Moving MNIST, 100 of the deterministic version.
    cfg = saved_cfg if saved_cfg is not None else PRESETS[args.preset]()
    deterministic = cfg.deterministic
    file_name = "mmnist_test_embedded_100.npz" if deterministic else "smmnist_test_embedded_25.npz"
    test_set = ensure_test_set(
        args.run_dir.parent / "data" / file_name, 100 if deterministic else 25, deterministic=deterministic
    )
    trained: TrainResult | None = None
    # The training's advice is a command, as for examples.srvp.train: this one, which continues the run.
    again = " ".join([parser.prog, *map(shell_quote, argv)])
    given = "--minutes" if args.minutes is not None else None
    if saved_cfg is not None:
        given_preset = any(a == "--preset" or a.startswith("--preset=") for a in argv)
        if given_preset and not _started_from(saved_cfg, args.preset):  # (the run's own preset says nothing new)
            ran = next((f" of the {p} preset" for p in SMMNIST_PRESETS if _started_from(saved_cfg, p)), "")
            print(
                f"note: {run_dir} already holds a run{ran}; --preset {args.preset} is ignored (its config.json rules)"
            )
        cfg = dataclasses.replace(cfg, max_steps=0)  # a step limit of an earlier invocation does not carry over
        if args.minutes is not None:
            cfg = dataclasses.replace(cfg, max_minutes=args.minutes)
        last = run_dir / "checkpoints" / "last.pt"
        step = int(load_checkpoint(last)["step"]) if last.exists() else 0
        target = cfg.n_iter if args.max_steps is None else min(cfg.n_iter, args.max_steps)
        if step < target:
            print(f"resuming {run_dir} at step {step} of {target} (budget {cfg.max_minutes or 'none'} min)")
            with cli_hints(again=again, budget_from=given or str(run_dir / "config.json")):
                trained = train(cfg, run_dir, resume=True, max_steps=args.max_steps)
        else:
            print(f"{run_dir} is already trained ({step} steps); evaluating it")
    else:
        if args.minutes is not None:
            cfg = dataclasses.replace(cfg, max_minutes=args.minutes)
        print(f"training the {args.preset!r} preset into {run_dir} (budget {cfg.max_minutes or 'none'} min)")
        preset_minutes = PRESETS[args.preset]().max_minutes  # (what config.json keeps: --minutes is this run's)
        default = f"the {args.preset} preset's default (--minutes changes it)"
        with cli_hints(again=again, budget_from=given or default, saved_minutes=preset_minutes):
            trained = train(cfg, run_dir, max_steps=args.max_steps)
    if trained is not None and exit_status(trained.stopped):  # Ctrl-C, SIGTERM or a diverged loss: no evaluation
        why = "run this command again to resume"
        if trained.stopped == "nan":
            why = f"the loss diverged; see {run_dir / 'train_log.jsonl'}"
        print(f"training stopped at step {trained.step} ({trained.stopped}): {why}", file=sys.stderr)
        return exit_status(trained.stopped)

    # The final (lr-decayed) weights, not checkpoints/best.pt: over such a short run the validation PSNR,
    # averaged over all predicted frames, favours the blurry early models (see examples/srvp/README.md).
    model, last_step = load_model_and_step(run_dir, "last")
    assert isinstance(model.config, ModelConfig)
    sequences = ev.load_sequences(test_set)
    protocol = ev.EvalProtocol(
        nt_cond=cfg.nt_cond,
        nt_gen=sequences.shape[0],
        n_samples=args.n_samples if args.n_samples is not None else (1 if deterministic else 20),
        n_substeps=model.config.n_substeps,
        batch_size=16,
        seed=1,
        max_sequences=args.eval_sequences,
    )
    amp = "bf16" if cfg.amp == "bf16" else "none"
    name = f"{test_set.stem}_n{protocol.n_samples}"
    # As evaluate's command line: the results' name is locked while they are computed and written (two quickstarts
    # of one run would replace each other's files), and what a killed one left half-written is removed.
    lock = FileLock()
    try:
        ev._lock_results(lock, run_dir / "eval", name, "--run-dir", other_name="")
        result = ev.evaluate(model, sequences, protocol, amp=amp)
        # What evaluate's command line records too: a later run of this command replaces these results, and the
        # JSON says which weights (the step of last.pt) they are of.
        result["data"] = {"dataset": "smmnist", "test_set": str(test_set)}
        result["checkpoint"] = {"name": "last", "file": str(run_dir / "checkpoints" / "last.pt"), "step": last_step}
        result["lpips"] = {"skipped": ev.NOT_COMPUTED_HERE}  # the keys of evaluate's results, whatever made them
        result["fvd"] = {"skipped": ev.NOT_COMPUTED_HERE}
        result["provenance"]["command"] = [*parser.prog.split(), *argv]
        # Whether the weights are those of the whole schedule: a run stopped by its time budget (or a step limit)
        # is evaluated too, and its results say so.
        complete = last_step is not None and last_step >= cfg.n_iter
        result["training"] = {"complete": complete, "steps_done": last_step, "steps_planned": cfg.n_iter}
        paths = ev.write_outputs(result, run_dir / "eval", name)
    finally:
        lock.release()
    unfinished = f"an unfinished training (step {last_step} of {cfg.n_iter})"
    print()
    if not complete:
        print(f"results of {unfinished}, not of the whole schedule:")
    print(ev.format_results(result))
    print()
    print("outputs:")
    for kind, path in paths.items():
        print(f"  {kind:13s} {path}{ev.OUTPUT_NOTES.get(kind, '')}")
    print(f"  {'checkpoint':13s} {run_dir / 'checkpoints' / 'last.pt'}")
    print(f"  {'training log':13s} {run_dir / 'train_log.jsonl'}")
    if not deterministic:
        n_seq = result["n_sequences"]
        print(
            f"the paper's protocol (best of 100, every test sequence, float32; these results: best of "
            f"{protocol.n_samples}, {n_seq} sequences, {'bf16' if amp == 'bf16' else 'float32'}): python -m "
            f"examples.srvp.evaluate {shell_quote(run_dir)} --test-set {shell_quote(test_set)} --checkpoint last "
            "--n-samples 100"
        )
    if not complete:
        print(
            f"training unfinished (step {last_step} of {cfg.n_iter}): run this same command again to continue: {again}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
