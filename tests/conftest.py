"""Test configuration: a deterministic, fast hypothesis profile loaded by default, process-wide torch settings
that a test may change restored after it, and the tiny training runs and test set that several test files read,
made once per session and checked unchanged after every test that uses them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from torch.distributions import Distribution

settings.register_profile("latentdyn", derandomize=True, deadline=None, max_examples=12)
# The default profile tries the same 12 examples every run (fast, and the same on every machine); this one explores
# new ones: HYPOTHESIS_PROFILE=explore python -m pytest --hypothesis-seed=N (the seed has no effect on the default).
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "latentdyn"))


@pytest.fixture(autouse=True)
def _restore_distribution_validation() -> Iterator[None]:
    """The first ``torch.compile`` in a process turns ``torch.distributions`` argument validation off for the
    whole process (torch's own choice, in ``torch._dynamo``): a test that compiles must not turn it off for the
    tests after it."""
    before = Distribution._validate_args
    yield
    Distribution.set_default_validate_args(before)


@pytest.fixture(autouse=True)
def _restore_thread_count() -> Iterator[None]:
    """``train(cfg)`` with ``cfg.threads`` sets torch's thread count for the whole process (as the CLI wants): the
    tests after one that trains in process must not run on its thread count."""
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------- runs trained once, shared read-only
# A tiny training run takes seconds; the test files that only read one share it, trained once per session (per
# worker under pytest-xdist). A test that changes a run copies it first (shutil.copytree into its tmp_path): the
# fixtures below fail the test that wrote into the shared run or test set, which would change it for the others.
def _listing(path: Path) -> dict[str, tuple[int, int]]:
    """Every file of ``path`` with its size and modification time, and every folder (a folder's own time changes
    with an entry made and removed again, as a refused command's lock: no change to what the tests read)."""
    entries = [path, *path.rglob("*")] if path.is_dir() else [path]
    return {str(p): (0, 0) if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns) for p in entries}


def _read_only(path: Path, listing: dict[str, tuple[int, int]]) -> Iterator[Path]:
    yield path
    now = _listing(path)
    if now != listing:
        changed = sorted(k for k in now.keys() | listing.keys() if now.get(k) != listing.get(k))
        pytest.fail(
            f"this test changed {path}, which the session's tests share (copy it into tmp_path first): {changed}"
        )


@pytest.fixture(scope="session")
def _tiny_run_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, int]]]:
    from examples.srvp import train
    from examples.srvp.config import PRESETS

    run = tmp_path_factory.mktemp("tiny") / "run"
    train.train(PRESETS["tiny"](), run, max_steps=4, progress=False, log=lambda _: None)
    return run, _listing(run)


@pytest.fixture
def tiny_run(_tiny_run_once: tuple[Path, dict[str, tuple[int, int]]]) -> Iterator[Path]:
    """A run directory of the tiny preset after 4 training steps (best.pt of step 3, last.pt of step 4), trained
    in process. Shared: a test copies it before changing it."""
    yield from _read_only(*_tiny_run_once)


@pytest.fixture(scope="session")
def _tiny_cli_run_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, int]]]:
    from examples.srvp import train

    run = tmp_path_factory.mktemp("tiny_cli") / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--lr-burnin", "2", "--lr-decay", "1"]) == 0
    return run, _listing(run)


@pytest.fixture
def tiny_cli_run(_tiny_cli_run_once: tuple[Path, dict[str, tuple[int, int]]]) -> Iterator[Path]:
    """The run directory of ``python -m examples.srvp.train --preset tiny --lr-burnin 2 --lr-decay 1`` (its whole
    schedule: 3 steps). Shared: a test copies it before changing it."""
    yield from _read_only(*_tiny_cli_run_once)


@pytest.fixture(scope="session")
def _wide_run_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, int]]]:
    import dataclasses

    from examples.srvp import train
    from examples.srvp.config import PRESETS

    cfg = PRESETS["tiny"]()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, conv_width=8))
    run = tmp_path_factory.mktemp("wide") / "run"
    train.train(cfg, run, max_steps=4, progress=False, log=lambda _: None)
    return run, _listing(run)


@pytest.fixture
def wide_run(_wide_run_once: tuple[Path, dict[str, tuple[int, int]]]) -> Iterator[Path]:
    """A tiny run whose model differs from ModelConfig's defaults and from the tiny preset's (conv_width 8), after
    4 steps (best.pt of step 3, last.pt of step 4: the tiny preset validates every 3 steps). Shared: a test copies
    it before changing it."""
    yield from _read_only(*_wide_run_once)


@pytest.fixture(scope="session")
def _test_set_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, int]]]:
    from latentdyn.video.mnist import load_embedded_digits
    from latentdyn.video.moving_mnist import make_test_set, save_test_set

    digits = load_embedded_digits("test")
    data = make_test_set(digits.images[:40], digits.labels[:40], seq_len=8, deterministic=False)
    path = save_test_set(tmp_path_factory.mktemp("data") / "test.npz", data)
    return path, _listing(path)


@pytest.fixture
def test_set(_test_set_once: tuple[Path, dict[str, tuple[int, int]]]) -> Iterator[Path]:
    """A small SM-MNIST test set from the embedded digits (40 digits -> 20 sequences of 8 frames). Shared."""
    yield from _read_only(*_test_set_once)
