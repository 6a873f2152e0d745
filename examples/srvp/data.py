"""Dataset preparation commands for the SRVP example: ``python -m examples.srvp.data COMMAND ...``.

Commands:
    smmnist-test-set    the fixed (Stochastic) Moving MNIST test set, as the official ``make_test_set``.
    convert-kth         raw KTH ``.avi`` files -> ``OUT_DIR/processed_64/<class>/<video>/image-*.png``.
    kth-test-set        the fixed KTH test set ``DATA_DIR/svg_test_set_<T>.npz`` (persons 21-25).
    convert-human36m    Human3.6M ``.mp4`` files -> ``OUT_DIR/{train,test}/S<k>-<video>.npz``.
    human36m-test-set   the fixed Human3.6M test set ``DATA_DIR/test_set_<T>_<s>/test_<i>.npz``.
    convert-bair        BAIR TFRecords -> ``OUT_DIR/processed_data/{train,test}/<file>/<k>/<i>.png``.

Each command is a :class:`Command` in :data:`COMMANDS`: to add one, write its ``add_arguments`` and ``run``
functions and call :func:`register`. Nothing is parsed at import time; :func:`main` builds the parser.

Example::

    python -m examples.srvp.data smmnist-test-set --mnist-dir ~/data --seq-len 25 --out data/
    python -m examples.srvp.data smmnist-test-set --mnist-dir embedded --deterministic --out data/

    python -m examples.srvp.data convert-kth ~/kth/raw data/kth && python -m examples.srvp.data kth-test-set data/kth
    python -m examples.srvp.data convert-human36m ~/human36m data/human36m
    python -m examples.srvp.data human36m-test-set data/human36m
    python -m examples.srvp.data convert-bair ~/bair data/bair     # ~/bair holds softmotion30_44k/

The converted ``OUT_DIR`` is the ``--data-dir`` of ``python -m examples.srvp.train --preset kth`` (and
``human36m``, ``bair``) and, by default, where ``python -m examples.srvp.evaluate`` finds the test set.
Conversions skip videos already converted (outputs are written atomically), so an interrupted conversion
resumes where it stopped; ``--overwrite`` converts everything again.

``--mnist-dir`` is the folder that holds ``MNIST/raw/t10k-*-ubyte[.gz]`` (torchvision's layout), or
``embedded`` for the 1,000 test digits shipped with latentdyn (a quick, smaller test set of 500 clips whose
numbers are not comparable with the paper's).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from examples.srvp._cli import (
    CliParser,
    add_version,
    ends_quietly_on_a_closed_pipe,
    progress_bar,
    robust_output,
    shell_quote,
    user_path,
    warnings_as_lines,
)

if TYPE_CHECKING:
    from latentdyn.video.datasets import ConversionReport

__all__ = ["COMMANDS", "Command", "build_parser", "main", "register", "smmnist_test_set_command"]


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
        type=os.path.expanduser,
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
        default=".",
        type=os.path.expanduser,
        help="output file if it ends in .npz, else a folder (created if needed) that receives the official "
        "file name (smmnist_test_2digits_64.npz / mmnist_test_2digits_64.npz); a trailing / always means a "
        "folder; default: the current folder",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def smmnist_test_set_command(
    mnist_dir: str = "embedded",
    *,
    deterministic: bool = False,
    num_digits: int = 2,
    max_speed: int = 4,
    out: str = "data/",
) -> tuple[str, Path]:
    """The complete ``smmnist-test-set`` command that makes the test set of a Moving MNIST run of these data
    settings (a run's ``data_dir``: ``embedded`` or the MNIST folder, whose test digits it reads), and the file
    it writes (``out`` + the official name), for the hints that ask for ``--test-set``."""
    from latentdyn.video.moving_mnist import official_test_set_name

    words = ["python -m examples.srvp.data smmnist-test-set", "--mnist-dir", shell_quote(mnist_dir or "embedded")]
    if deterministic:
        words.append("--deterministic")
    if num_digits != 2:
        words += ["--num-digits", str(num_digits)]
    if max_speed != 4:
        words += ["--max-speed", str(max_speed)]
    words += ["--out", shell_quote(out)]
    file = Path(out) / official_test_set_name(deterministic=deterministic, num_digits=num_digits)
    return " ".join(words), file


def _test_set_path(out: str, default_name: str) -> Path:
    """The file that ``--out`` names: ``out`` itself if it ends in ``.npz`` (and is not a folder), else
    ``out/default_name``. A trailing path separator always means a folder, which need not exist yet."""
    separators = tuple(sep for sep in (os.sep, os.altsep) if sep)
    path = Path(out)
    if path.suffix.lower() == ".npz" and not out.endswith(separators) and not path.is_dir():
        return path
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--out {out}: {path} exists and is not a folder (an output file must end in .npz)")
    return path / default_name


def _run_smmnist_test_set(args: argparse.Namespace) -> int:
    from latentdyn.video.mnist import digit_source
    from latentdyn.video.moving_mnist import make_test_set, official_test_set_name, save_test_set

    seq_len = _DEFAULT_SEQ_LEN[args.deterministic] if args.seq_len is None else args.seq_len
    out = _test_set_path(args.out, official_test_set_name(deterministic=args.deterministic, num_digits=args.num_digits))
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


# ------------------------------------------------------------------------------------- real video datasets
def _progress(desc: str) -> tuple[Callable[[Path], None], Callable[[], None]]:
    """A progress callback counting converted videos on stderr, and the function that closes it.

    The bar appears with the first converted video, so an error found up front prints only its message."""
    bars: list[Any] = []

    def update(_path: Path) -> None:
        if not bars:
            bars.append(progress_bar(desc=desc, unit="video"))
        bars[0].update(1)

    def close() -> None:
        for bar in bars:
            bar.close()

    return update, close


def _print_conversion(what: str, report: ConversionReport, unit: str = "videos") -> None:
    print(
        f"wrote {report.out_dir.resolve()}: {what}, {report.written} {unit} converted, {report.skipped} already there"
    )


def _add_convert(parser: argparse.ArgumentParser, *, image_size: bool = True) -> None:
    parser.add_argument(
        "raw_dir", type=user_path, metavar="RAW_DIR", help="the raw download (layout in the module help)"
    )
    parser.add_argument("out_dir", type=user_path, metavar="OUT_DIR", help="where the converted dataset is written")
    if image_size:
        parser.add_argument("--image-size", type=int, default=64, help="output frame size (default: 64)")
    parser.add_argument("--overwrite", action="store_true", help="convert again videos already converted")


def _run_convert_kth(args: argparse.Namespace) -> int:
    from latentdyn.video.datasets import convert_kth

    update, close = _progress("convert-kth")
    try:
        report = convert_kth(args.raw_dir, args.out_dir, args.image_size, overwrite=args.overwrite, progress=update)
    finally:
        close()
    _print_conversion(f"KTH frames {args.image_size}x{args.image_size} (grayscale PNG, 25 fps)", report)
    print(f"  next: python -m examples.srvp.data kth-test-set {shell_quote(args.out_dir)}")
    return 0


def _add_kth_test_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", type=user_path, metavar="DATA_DIR", help="the OUT_DIR of convert-kth")
    parser.add_argument("--seq-len", type=int, default=40, help="frames per clip (default: 40, the README's)")
    parser.add_argument("--size", type=int, default=1000, help="number of clips (default: 1000)")
    parser.add_argument("--seed", type=int, default=42, help="seed (default: 42, the official one)")
    parser.add_argument("--image-size", type=int, default=64, help="frame size of the conversion (default: 64)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing test set")


def _run_kth_test_set(args: argparse.Namespace) -> int:
    from latentdyn.video.datasets import make_kth_test_set

    path = make_kth_test_set(
        args.data_dir,
        seq_len=args.seq_len,
        size=args.size,
        seed=args.seed,
        image_size=args.image_size,
        overwrite=args.overwrite,
    )
    print(f"wrote {path.resolve()}: KTH test set, {args.size} clips of {args.seq_len} frames (persons 21-25),")
    print(f"  seed {args.seed}; keys sequences (N, T, H, W) uint8, persons, actions")
    return 0


def _run_convert_human36m(args: argparse.Namespace) -> int:
    from latentdyn.video.datasets import convert_human36m

    update, close = _progress("convert-human36m")
    try:
        report = convert_human36m(
            args.raw_dir, args.out_dir, args.image_size, overwrite=args.overwrite, progress=update
        )
    finally:
        close()
    _print_conversion(f"Human3.6M frames {args.image_size}x{args.image_size} RGB (train/ and test/ .npz)", report)
    print(f"  next: python -m examples.srvp.data human36m-test-set {shell_quote(args.out_dir)}")
    return 0


def _add_human36m_test_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", type=user_path, metavar="DATA_DIR", help="the OUT_DIR of convert-human36m")
    parser.add_argument("--seq-len", type=int, default=53, help="frames per clip (default: 53, the README's)")
    parser.add_argument("--subsampling", type=int, default=8, help="keep one raw frame in this many (default: 8)")
    parser.add_argument("--size", type=int, default=1000, help="number of clips (default: 1000)")
    parser.add_argument("--seed", type=int, default=42, help="seed (default: 42, the official one)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing test set")


def _run_human36m_test_set(args: argparse.Namespace) -> int:
    from latentdyn.video.datasets import make_human36m_test_set

    path = make_human36m_test_set(
        args.data_dir,
        seq_len=args.seq_len,
        subsampling=args.subsampling,
        size=args.size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    span = (args.seq_len - 1) * args.subsampling + 1
    print(f"wrote {path.resolve()}: Human3.6M test set, {args.size} clips of {args.seq_len} frames, one in")
    print(f"  {args.subsampling} of {span} raw frames (test subjects 9 and 11), seed {args.seed}")
    return 0


def _add_convert_bair(parser: argparse.ArgumentParser) -> None:
    _add_convert(parser, image_size=False)
    parser.add_argument("--no-verify", action="store_true", help="skip the CRC check of every record")


def _run_convert_bair(args: argparse.Namespace) -> int:
    from latentdyn.video.datasets import convert_bair

    update, close = _progress("convert-bair")
    try:
        report = convert_bair(
            args.raw_dir,
            args.out_dir,
            overwrite=args.overwrite,
            verify_checksums=not args.no_verify,
            progress=update,
        )
    finally:
        close()
    _print_conversion("BAIR frames 64x64 RGB PNG, 30 per video", report, unit="TFRecord files")
    print(f"  the test split (processed_data/test) is the test set: train with --data-dir {shell_quote(args.out_dir)}")
    return 0


for _command in (
    Command("convert-kth", "convert raw KTH .avi videos into 64x64 PNG frames", _add_convert, _run_convert_kth),
    Command(
        "kth-test-set", "make the fixed KTH test set from the converted videos", _add_kth_test_set, _run_kth_test_set
    ),
    Command(
        "convert-human36m",
        "convert Human3.6M .mp4 videos into cropped 64x64 RGB .npz files",
        _add_convert,
        _run_convert_human36m,
    ),
    Command(
        "human36m-test-set",
        "make the fixed Human3.6M test set from the converted test videos",
        _add_human36m_test_set,
        _run_human36m_test_set,
    ),
    Command("convert-bair", "convert BAIR TFRecords into 64x64 RGB PNG frames", _add_convert_bair, _run_convert_bair),
):
    register(_command)


# ------------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per registered command."""
    parser = CliParser(prog="python -m examples.srvp.data", description="Prepare datasets for the SRVP example.")
    add_version(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run)
    return parser


@ends_quietly_on_a_closed_pipe
@robust_output()
@warnings_as_lines()
def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen command; returns the exit status.

    Errors in the inputs (missing files, invalid values) end with a one-line message and status 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args._run(args)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError, ImportError) as exc:
        parser.exit(2, f"{parser.prog} {args.command}: error: {exc}\n")
    except OSError as exc:  # e.g. an output folder that cannot be written
        from examples.srvp.checkpoint import os_error_message

        parser.exit(2, f"{parser.prog} {args.command}: error: {os_error_message(exc)}\n")
    except KeyboardInterrupt:  # every output is written whole (temporary file, then rename)
        again = {
            "convert-kth": "skips the videos already converted",
            "convert-human36m": "skips the videos already converted",
            "convert-bair": "skips the TFRecord files already converted",
        }.get(args.command, "makes it again")
        parser.exit(
            130,
            f"\n{parser.prog} {args.command}: interrupted; the outputs written so far are complete, and running the "
            f"same command again {again}\n",
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
