"""What the example's command-line tools share: output that never fails on a character the console cannot
encode, printed commands that can be pasted back into a shell, path options with ``~`` expanded, and progress
bars that write plain lines, not terminal redraws, into log files."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import os
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

__all__ = [
    "EXTRA_MODULES",
    "LOG_INTERVAL",
    "CliParser",
    "LineProgress",
    "Unfailing",
    "add_threads",
    "add_version",
    "cpu_threads",
    "ends_quietly_on_a_closed_pipe",
    "progress_bar",
    "refuse_torchrun",
    "require_modules",
    "robust_output",
    "shell_quote",
    "user_path",
    "warnings_as_lines",
]


@contextlib.contextmanager
def robust_output() -> Iterator[None]:
    """While the block (or the decorated function) runs, ``sys.stdout`` and ``sys.stderr`` write a character
    their encoding lacks as an escape (``\\xb1``) instead of raising ``UnicodeEncodeError``, e.g. the ``±`` of a
    result under an ASCII locale (``LC_ALL=C``); afterwards each stream has its own error handler back (a
    ``main(argv)`` called from Python leaves the caller's streams as they were). Streams that cannot be
    reconfigured (replaced by a caller) are left as they are."""
    changed: list[tuple[Any, str]] = []
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        errors = getattr(stream, "errors", None)
        if callable(reconfigure) and isinstance(errors, str):
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError, TypeError):  # a closed or exotic stream
                continue
            changed.append((stream, errors))
    try:
        yield
    finally:
        for stream, errors in reversed(changed):
            with contextlib.suppress(ValueError, OSError, TypeError):
                stream.reconfigure(errors=errors)


ADJOINT_GRADIENT_WARNING = r"OdeintIntegrator\(adjoint=True\) with "
"""The start of latentdyn's warning that the adjoint of a low-order fixed-grid method misstates the gradient: about
training, so evaluate and demo do not show it; train says it in its own flags (:func:`examples.srvp.train.main`)."""


@contextlib.contextmanager
def warnings_as_lines(*ignore: str) -> Iterator[None]:
    """While the block (or the decorated command) runs, a warning prints as one line on stderr, ``warning: MESSAGE``,
    without the file and line Python names (the example's code or torch's, of no use to the command's user) and the
    source line under them; warnings whose message matches one of the regular expressions ``ignore`` (at its start)
    are not shown. Which warnings show stays the caller's choice (``-W``, ``PYTHONWARNINGS``: once per place by
    default, or an error); the filters and the display come back afterwards."""
    with warnings.catch_warnings():
        for pattern in ignore:
            warnings.filterwarnings("ignore", message=pattern)

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            with contextlib.suppress(OSError, ValueError):  # (a closed stderr: the warning is lost, not the run)
                print(f"warning: {str(message).strip()}", file=sys.stderr, flush=True)

        warnings.showwarning = show
        yield


class CliParser(argparse.ArgumentParser):
    """The argument parser of every command: no abbreviated flags (``--over`` must not run ``--overwrite``), and a
    usage error is one line (no usage block), exit status 2; an unknown flag's suggests the closest known ones
    (``did you mean --overwrite?``). Subcommands' parsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            given = message[len(prefix) :].split()
            known = sorted(_option_strings(self))
            hints = []
            for word in given:
                if word.startswith("-"):
                    flag = word.split("=", 1)[0]
                    # An abbreviation's completions first, then the flags spelled alike (a typo).
                    started = [k for k in known if k.startswith(flag)]
                    alike = difflib.get_close_matches(flag, known, n=3, cutoff=0.75)
                    close = list(dict.fromkeys(started + alike))[:3]
                    if close:
                        hints.append(f"{word}: did you mean {' or '.join(close)}?")
            message = f"{message}{' (' + '; '.join(hints) + ')' if hints else ''}"
        message = " ".join(message.split())  # (one line, whatever the message)
        self.exit(2, f"{self.prog}: error: {message}; {self.prog} --help lists the options\n")


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """The long flags of ``parser`` and of its subcommands' parsers."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


_Main = TypeVar("_Main", bound=Any)


def ends_quietly_on_a_closed_pipe(main: _Main) -> _Main:
    """Decorates a command's ``main``: when its standard output is a pipe closed early (``... | head -1``), the
    command goes on with its work, its later output discarded, and ends with the status of that work, without a
    traceback. (A write to the closed pipe raised ``BrokenPipeError``; standard output is block-buffered in a
    pipe, so that happened at whichever print filled the buffer, which stopped the work there.) Following Python's
    advice for SIGPIPE, the file descriptor of standard output is then pointed at ``os.devnull``, so that the
    interpreter's final flush does not fail either."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        original = sys.stdout
        tolerant = _ClosedPipeTolerant(original) if _has_fileno(original) else None
        if tolerant is not None:
            sys.stdout = tolerant
        try:
            status = main(*args, **kwargs)
            sys.stdout.flush()  # (what is left in the buffer, while the work's status is known)
            return status
        except BrokenPipeError:  # a write that went around sys.stdout: the work stopped there
            _point_at_devnull(original)
            return 1
        finally:
            if tolerant is not None and sys.stdout is tolerant:
                sys.stdout = original

    return wrapped  # type: ignore[return-value]


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):  # (a caller's stream without a file descriptor)
        return False
    return True


def _point_at_devnull(stream: Any) -> None:
    """Send what is still to be written to ``stream`` (its buffer included) to ``os.devnull``."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class _ClosedPipeTolerant:
    """Standard output that, once its reader is gone, discards what is written instead of raising."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            _point_at_devnull(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            _point_at_devnull(self._stream)
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()  # (the buffer now goes to devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


EXTRA_MODULES = {"tqdm": "tqdm", "imageio": "imageio", "matplotlib": "matplotlib", "PIL": "pillow"}
"""The modules of the ``examples`` extra, by import name, with their distribution names."""


def require_modules(*modules: str, needed_for: str) -> None:
    """Refuse to start a command whose outputs need modules of the ``examples`` extra that are not installed: a
    ``ValueError`` naming them and the install command (the quickstart trained its whole budget, then failed
    at its plot with ``No module named 'matplotlib'``).

    Args:
        modules: import names, keys of :data:`EXTRA_MODULES`.
        needed_for: what they are needed for, e.g. ``"the curve plot and the sample GIF"``.
    """
    import importlib.util

    missing = [EXTRA_MODULES.get(m, m) for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} needed for {needed_for} and not "
            'installed: pip install "latentdyn[examples]" (from a checkout: pip install -e ".[examples]")'
        )


def refuse_torchrun(prog: str, why: str, argv: list[str] | None) -> None:
    """Refuse to run a command as one of several processes of a ``torchrun`` job (``WORLD_SIZE`` > 1): a
    ``ValueError`` saying to run ``prog`` in one process. Every process ran the whole command and they raced for
    its outputs (evaluate's lock failed on all but one, whose writes torchrun then cut off).

    Only the command line is refused (``argv`` None: the arguments are the process's own); a ``main([...])`` call
    from Python, e.g. on rank 0 of a training script after its training, is the caller's to place.

    Args:
        prog: the command, e.g. ``"python -m examples.srvp.evaluate"``.
        why: what runs in one process, e.g. ``"the evaluation"``.
        argv: the ``argv`` the command's ``main`` was given.
    """
    world = os.environ.get("WORLD_SIZE", "1")
    if argv is None and world.isdigit() and int(world) > 1:
        raise ValueError(
            f"{why} runs in one process, and this is one of {world} (WORLD_SIZE={world}: torchrun); run {prog} "
            "without torchrun (only training runs over several processes)"
        )


def add_version(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` a ``--version`` flag that prints the versions of latentdyn, torch and Python on one line
    (argparse's own ``version`` action would wrap it at the terminal's width), and exits."""
    parser.add_argument("--version", action=_Version, nargs=0, help="print the versions and exit")
    return parser


def add_threads(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` the ``--threads N`` flag of ``train``: torch's CPU threads for the command (0, the default:
    torch's own choice, one per core). Use it with :func:`cpu_threads`."""
    parser.add_argument(
        "--threads", type=_thread_count, default=0, metavar="N", help="torch CPU threads (default: 0, torch's own)"
    )
    return parser


def _thread_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0 (0: torch's own number of threads), got {text!r}")
    return value


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """torch's CPU threads set to ``n`` inside (0: left as they are) and given back on the way out, so that a
    command's ``main`` called from Python leaves its caller's thread count alone."""
    if not n:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


class _Version(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        import platform

        import torch

        import latentdyn

        print(
            f"{parser.prog}: latentdyn {latentdyn.__version__}, torch {torch.__version__}, Python "
            f"{platform.python_version()}"
        )
        parser.exit()


class Unfailing:
    """Messages that never stop the work they report on: the first write that fails (standard output on a full
    disk or a quota, a pipe closed by ``head``) makes every later one a no-op, after one warning on stderr (if
    that can be written). A multi-day training is not killed by its log file.

    ``Unfailing(print)`` is called like ``print``; :meth:`wrap` does the same for an object's methods (a
    progress bar)."""

    def __init__(self, write: Any) -> None:
        self._write = write
        self.failed = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._guarded(self._write, *args, **kwargs)

    def wrap(self, obj: Any) -> Any:
        """``obj`` with every method call guarded the same way (``None`` stays ``None``)."""
        return None if obj is None else _GuardedObject(obj, self)

    def _guarded(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return None
        try:
            return call(*args, **kwargs)
        except OSError as e:
            self.failed = True
            reason = f"{e.strerror}" if e.strerror else type(e).__name__
            with contextlib.suppress(OSError, ValueError):
                print(
                    f"warning: progress messages can no longer be written ({reason}); the work goes on without them",
                    file=sys.stderr,
                )
            return None


class _GuardedObject:
    def __init__(self, obj: Any, guard: Unfailing) -> None:
        self._obj, self._guard = obj, guard

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: self._guard._guarded(attr, *args, **kwargs)


def shell_quote(path: str | os.PathLike[str]) -> str:
    """``path`` as one argument of a printed command line (quoted where it holds spaces or shell characters)."""
    text = os.fspath(path)
    if os.name == "nt":
        return subprocess.list2cmdline([text])
    return shlex.quote(text)


def user_path(text: str) -> Path:
    """The ``type`` of a path option: a ``Path`` with ``~`` expanded (the shell does not expand it in
    ``--run-dir=~/runs/a``)."""
    try:
        return Path(text).expanduser()
    except RuntimeError as e:  # "~name" of no user: argparse reports the option, not a traceback
        raise argparse.ArgumentTypeError(f"cannot expand ~ in {text!r} ({e})") from None


LOG_INTERVAL = 60.0
"""Seconds between two progress lines written to a stream that is not a terminal (a log file)."""


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ``ZMQInteractiveShell`` or a subclass, e.g. Colab's),
    whose standard error is no terminal but shows a progress bar's redraws."""
    ipython = sys.modules.get("IPython")  # (never imported here: a kernel has imported it)
    get_ipython = getattr(ipython, "get_ipython", None)
    if not callable(get_ipython):
        return False
    try:
        shell = get_ipython()
    except Exception:  # (an IPython in a state of its own: no notebook bar)
        return False
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def progress_bar(
    *, total: int | None = None, initial: int = 0, desc: str | None = None, unit: str = "it", **options: Any
) -> Any:
    """A tqdm progress bar on stderr when it is a terminal; in a Jupyter notebook, tqdm's notebook widget (its
    text bar without ``ipywidgets``); otherwise (a log file, a pipe) a :class:`LineProgress`, which writes a plain
    line every :data:`LOG_INTERVAL` seconds instead of a redraw (``\\r``) per update.

    All offer ``update``, ``set_postfix``, ``write`` and ``close``; ``options`` go to tqdm."""
    stream = sys.stderr
    isatty = getattr(stream, "isatty", None)
    try:
        terminal = bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed stream
        terminal = False
    if not terminal and in_notebook():
        try:
            import ipywidgets  # noqa: F401  (what tqdm's notebook bar draws with)
            from tqdm.notebook import tqdm as notebook_bar

            return notebook_bar(total=total, initial=initial, desc=desc, unit=unit, **options)
        except ImportError:  # the text bar: a notebook shows its redraws in place
            terminal = True
    if terminal:
        try:
            from tqdm import tqdm
        except ImportError:  # (tqdm is in the examples extra; the plain lines do without it)
            pass
        else:
            return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream, dynamic_ncols=True, **options)
    return LineProgress(total=total, initial=initial, desc=desc, unit=unit, file=stream)


class LineProgress:
    """Progress for a log: a line ``desc: n/total unit (pct, rate, elapsed) postfix`` at most every ``interval``
    seconds, and one at ``close`` for what the last line did not report."""

    def __init__(
        self,
        *,
        total: int | None = None,
        initial: int = 0,
        desc: str | None = None,
        unit: str = "it",
        file: TextIO | None = None,
        interval: float = LOG_INTERVAL,
    ) -> None:
        self.n = initial
        self.total = total
        self.desc = desc
        self.unit = unit
        self.file = file if file is not None else sys.stderr
        self.interval = interval
        self._start = self._last = time.monotonic()
        self._start_n = self._reported = initial
        self._postfix = ""
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._line(now)

    def set_postfix(self, **values: Any) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, message: str) -> None:
        """Print a message (to stdout, as ``tqdm.write``)."""
        print(message, flush=True)

    def close(self) -> None:
        if not self._closed and self.n != self._reported:
            self._line(time.monotonic())
        self._closed = True

    def _line(self, now: float) -> None:
        elapsed = now - self._start
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{100 * self.n / self.total:.0f}%"] if self.total else []
        parts.append(f"{(self.n - self._start_n) / max(elapsed, 1e-9):.3g} {self.unit}/s")
        parts.append(f"{elapsed:.0f} s")
        line = f"{self.desc + ': ' if self.desc else ''}{done} {self.unit} ({', '.join(parts)})"
        print(line + (f" {self._postfix}" if self._postfix else ""), file=self.file, flush=True)
        self._last, self._reported = now, self.n
