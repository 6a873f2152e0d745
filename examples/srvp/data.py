"""Dataset preparation commands for the SRVP example: ``python -m examples.srvp.data COMMAND ...``.

Commands:
    smmnist-test-set    the fixed (Stochastic) Moving MNIST test set, as the official ``make_test_set``.

Each command is a :class:`Command` in :data:`COMMANDS`: to add one, write its ``add_arguments`` and ``run``
functions and call :func:`register`. Nothing is parsed at import time; :func:`main` builds the parser.

Example::

    python -m examples.srvp.data smmnist-test-set --mnist-dir ~/data --seq-len 25 --out data/
    python -m examples.srvp.data smmnist-test-set --mnist-dir embedded --deterministic --out data/

``--mnist-dir`` is the folder that holds ``MNIST/raw/t10k-*-ubyte[.gz]`` (torchvision's layout), or
``embedded`` for the 1,000 test digits shipped with latentdyn (a quick, smaller test set of 500 clips whose
numbers are not comparable with the paper's).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COMMANDS", "Command", "build_parser", "main", "register"]


@dataclass(frozen=True)
class Command:
    """One subcommand of the data CLI.

    Attributes:
        name: the subcommand as typed on the command line.
        help: one line shown by ``--help``.
        add_arguments: adds the subcommand's options to its parser.
        run: does the work from the parsed options; returns the exit status.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}
"""The registered subcommands by name, in registration order."""


def register(command: Command) -> Command:
    """Add ``command`` to :data:`COMMANDS`; ``ValueError`` if its name is taken."""
    if command.name in COMMANDS:
        raise ValueError(f"command {command.name!r} is already registered")
    COMMANDS[command.name] = command
    return command


# ----------------------------------------------------------------------------------------- smmnist-test-set
_DEFAULT_SEQ_LEN = {False: 25, True: 100}  # the official README's lengths (stochastic, deterministic)


def _add_smmnist_test_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mnist-dir",
        required=True,
        help="folder holding MNIST/raw/t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] "
        "(torchvision's layout), or 'embedded' for the 1,000 test digits shipped with latentdyn",
    )
    parser.add_argument(
        "--seq-len",
        type=int,
        default=None,
        help="frames per sequence (default: 25, or 100 with --deterministic, as the official README)",
    )
    parser.add_argument(
        "--deterministic", action="store_true", help="deterministic bounces (MMNIST) instead of SM-MNIST"
    )
    parser.add_argument("--num-digits", type=int, default=2, help="digits per sequence (default: 2)")
    parser.add_argument("--max-speed", type=int, default=4, help="largest velocity component (default: 4)")
    parser.add_argument("--seed", type=int, default=42, help="numpy seed (default: 42, the official one)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        help="output .npz file, or an existing folder to receive the official file name "
        "(smmnist_test_2digits_64.npz / mmnist_test_2digits_64.npz); default: the current folder",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _run_smmnist_test_set(args: argparse.Namespace) -> int:
    from latentdyn.video.mnist import digit_source
    from latentdyn.video.moving_mnist import make_test_set, official_test_set_name, save_test_set

    seq_len = _DEFAULT_SEQ_LEN[args.deterministic] if args.seq_len is None else args.seq_len
    out: Path = args.out
    if out.is_dir():
        out = out / official_test_set_name(deterministic=args.deterministic, num_digits=args.num_digits)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    digits = digit_source(args.mnist_dir, "test")
    data = make_test_set(
        digits.images,
        digits.labels,
        seq_len=seq_len,
        deterministic=args.deterministic,
        num_digits=args.num_digits,
        seed=args.seed,
        max_speed=args.max_speed,
    )
    path = save_test_set(out, data, overwrite=args.overwrite)
    kind = "deterministic Moving MNIST" if args.deterministic else "Stochastic Moving MNIST"
    n_seq = data.sequences.shape[1]
    print(f"wrote {path.resolve()}: {kind} test set, {n_seq} sequences of {seq_len} frames (keys sequences,")
    print(f"  latents, labels, digits) from {len(digits.images)} test digits of {args.mnist_dir}, seed {args.seed}")
    print(f"  load it with latentdyn.video.moving_mnist.MovingMNISTTestSet({str(path)!r})")
    return 0


register(
    Command(
        name="smmnist-test-set",
        help="make the fixed (Stochastic) Moving MNIST test set from MNIST test digits",
        add_arguments=_add_smmnist_test_set,
        run=_run_smmnist_test_set,
    )
)


# ------------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per registered command."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.srvp.data", description="Prepare datasets for the SRVP example."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen command; returns the exit status.

    Errors in the inputs (missing files, invalid values) end with a one-line message and status 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args._run(args)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError) as exc:
        parser.exit(2, f"{parser.prog} {args.command}: error: {exc}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
