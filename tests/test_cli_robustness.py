"""Robustness of the SRVP example CLIs: errors are one line naming the flag, reported before anything is
written or computed, and runs stay consistent across resumes (examples/srvp/)."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from shared_fixtures import frame_folder

from examples.srvp import train
from examples.srvp.checkpoint import UnsafeFileError, read_torch_file
from examples.srvp.config import PRESETS, TrainConfig


def _tiny() -> TrainConfig:
    return PRESETS["tiny"]()


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The stderr of a CLI that failed cleanly: one ``error: ...`` line (besides progress bars), no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "error: " in lines[0] and lines[0] == err.rstrip("\n").splitlines()[-1], err
    return lines[0]


# ------------------------------------------------------------------------------- new runs: validate first


def test_a_folder_video_shorter_than_a_clip_is_reported_before_the_run_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    videos = tmp_path / "videos"
    frame_folder(videos / "a", 3, 10)  # a training video (the 95 % / 5 % split of 3 keeps a and b)
    frame_folder(videos / "b", 8, 60)
    frame_folder(videos / "c", 8, 120)
    run = tmp_path / "run"
    argv = ["--preset", "tiny", "--run-dir", str(run), "--dataset", "folder", "--data-dir", str(videos)]
    assert train.main(argv) == 2
    line = _one_line_error(capsys)
    assert f"{videos / 'a'} has 3 frames, fewer than the 6 that clips of 6 frames" in line and "--seq-len" in line
    assert not run.exists()
    (videos / "a" / "frame0.png").rename(videos / "a" / "frame9.png")  # still 3 frames
    for t in range(3, 8):
        (videos / "b" / f"frame{t}.png").rename(videos / "a" / f"frame{t + 10}.png")
    # a now has 8 frames, b 3: the same check, whichever split the short video is in
    assert train.main(argv) == 2
    assert f"{videos / 'b'} has 3 frames" in _one_line_error(capsys)
    assert not run.exists()


def test_the_first_batch_is_checked_before_the_run_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from examples.srvp.datasets import check_stream, make_data

    cfg = _tiny()
    stream, _ = make_data(cfg)
    check_stream(stream, cfg)
    monkeypatch.setattr(type(stream), "__getitem__", lambda self, step: torch.zeros(5, 4, 1, 64, 64))
    with pytest.raises(ValueError, match=r"batch of step 0 has \(T, B\) = \(5, 4\), expected \(6, 4\)"):
        check_stream(stream, cfg)


# ------------------------------------------------------------------------------------------ run directories
def _quiet_train(cfg: TrainConfig, run: Path, **kwargs: object) -> train.TrainResult:
    return train.train(cfg, run, progress=False, log=lambda _: None, **kwargs)  # type: ignore[arg-type]


# tiny_run and test_set: tests/conftest.py (shared with the other test files, trained once).
@pytest.fixture
def wide_checkpoint(wide_run: Path) -> Path:
    """last.pt of a tiny run with --conv-width 8 (other shapes than the tiny run's; conftest's wide_run)."""
    return wide_run / "checkpoints" / "last.pt"


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


def test_demo_refuses_an_svglp_run(tmp_path: Path, test_set: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from examples.srvp import demo

    cfg = _tiny()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, family="svglp"))
    run = tmp_path / "svglp"
    _quiet_train(cfg, run, max_steps=2)
    assert demo.main([str(run), "--test-set", str(test_set), "--out", str(tmp_path / "gifs")]) == 2
    line = _one_line_error(capsys)
    assert f"run_dir: {run} is a 'svglp' run; the demos need an SRVP run" in line
    assert not (tmp_path / "gifs").exists()


@pytest.mark.parametrize("recorded", [True, False], ids=["training-checkpoint", "no-recorded-config"])
@pytest.mark.parametrize("cli", ["evaluate", "demo"])
def test_a_checkpoint_that_does_not_fit_config_json_is_a_one_line_error(
    tmp_path: Path,
    tiny_run: Path,
    wide_checkpoint: Path,
    test_set: Path,
    capsys: pytest.CaptureFixture[str],
    cli: str,
    recorded: bool,
) -> None:
    import torch

    from examples.srvp import demo
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)
    payload = torch.load(wide_checkpoint, weights_only=True)
    if not recorded:  # as an imported or hand-made checkpoint: only the weights say what they are
        del payload["config"]
    best = run / "checkpoints" / "best.pt"
    torch.save(payload, best)
    if cli == "evaluate":
        status = ev.main([str(run), "--test-set", str(test_set), "--checkpoint", "best", "--no-lpips"])
    else:
        out = str(tmp_path / "g")
        status = demo.main([str(run), "--test-set", str(test_set), "--out", out, "--checkpoint", "best"])
    assert status == 2
    line = _one_line_error(capsys)
    if recorded:
        assert f"checkpoint: {best} was written by another model configuration: conv_width checkpoint 8 vs " in line
    else:
        assert f"checkpoint: {best} does not fit the model of config.json: " in line
        assert "shape mismatches (encoder." in line and "checkpoint [8," in line


def test_run_files_record_their_layout_and_a_later_layout_is_refused_by_name(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """config.json and the checkpoints say which layout they follow and which latentdyn wrote them, so that a
    later version can read or convert them; files of a later layout are refused naming it, not read as garbage,
    and files from before the stamp (no "format") are layout 1."""
    import latentdyn
    from examples.srvp import evaluate as ev
    from examples.srvp.checkpoint import RUN_FORMAT

    assert RUN_FORMAT == 1
    stamp = {"format": 1, "latentdyn": latentdyn.__version__}
    config = json.loads((tiny_run / "config.json").read_text())
    assert {k: config[k] for k in stamp} == stamp
    for name in ("best", "last"):
        payload = torch.load(tiny_run / "checkpoints" / f"{name}.pt", weights_only=True)
        assert {k: payload[k] for k in stamp} == stamp
    flags = ["--test-set", str(test_set), "--max-sequences", "1", "--n-samples", "1", "--no-lpips"]

    run = _copy(tiny_run, tmp_path / "later-config")
    (run / "config.json").write_text(json.dumps({**config, "format": 2, "latentdyn": "9.0"}))
    assert ev.main([str(run), *flags]) == 2
    assert _one_line_error(capsys) == (
        f"error: run_dir: {run / 'config.json'} was written by latentdyn 9.0 in layout 2; this latentdyn "
        f"{latentdyn.__version__} reads layouts up to 1: upgrade latentdyn to use it"
    )
    assert train.main(["--resume", str(run), "--max-steps", "5"]) == 2
    assert "in layout 2; this latentdyn" in _one_line_error(capsys)

    run = _copy(tiny_run, tmp_path / "later-checkpoint")
    last = run / "checkpoints" / "last.pt"
    torch.save({**torch.load(last, weights_only=True), "format": 2}, last)
    assert ev.main([str(run), *flags, "--checkpoint", "last"]) == 2
    assert f"error: checkpoint: {last} was written by latentdyn {latentdyn.__version__} in layout 2" in (
        _one_line_error(capsys)
    )
    torch.save({**torch.load(last, weights_only=True), "format": "2"}, last)
    assert ev.main([str(run), *flags, "--checkpoint", "last"]) == 2
    assert f"error: checkpoint: {last}: format: expected an int >= 1, got '2'" in _one_line_error(capsys)

    run = _copy(tiny_run, tmp_path / "before-the-stamp")
    (run / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in stamp}))
    for name in ("best", "last"):
        path = run / "checkpoints" / f"{name}.pt"
        torch.save({k: v for k, v in torch.load(path, weights_only=True).items() if k not in stamp}, path)
    assert ev.main([str(run), *flags]) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--max-steps", "5"]) == 0
    resumed = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert resumed["step"] == 5 and {k: resumed[k] for k in stamp} == stamp  # what it writes is stamped
    # The training of runs that old has changed since (an upgrade review measured 0.01 after 8 steps): said once.
    said = capsys.readouterr().err  # (a note: on stderr)
    assert said.count("was written by an earlier latentdyn (before checkpoints recorded their version)") == 1


def test_evaluate_out_writes_nothing_in_the_run_directory(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Released or shared weights often sit in a folder the user cannot write: with --out the results, the saved
    progress and the lock go elsewhere and the run directory is only read."""
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)

    def snapshot() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(run)): (p.stat().st_size, p.stat().st_mtime_ns) for p in run.rglob("*")}

    before = snapshot()
    out = tmp_path / "results" / "tiny"
    flags = ["--test-set", str(test_set), "--max-sequences", "2", "--n-samples", "2", "--no-lpips", "--name", "x"]
    assert ev.main([str(run), *flags, "--out", str(out)]) == 0
    assert snapshot() == before
    assert json.loads((out / "x.json").read_text())["metrics"]["psnr"]["mean"] > 0
    assert {p.name for p in out.iterdir()} >= {"x.json", "x_per_sequence.npz", "x_curves.png", "x_samples.gif"}
    assert str(out / "x.json") in capsys.readouterr().out
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert ev.main([str(run), *flags, "--out", str(blocker / "eval")]) == 2
    assert f"--out: cannot write to {blocker / 'eval'}: {blocker} is not a directory" in _one_line_error(capsys)
    assert snapshot() == before


@pytest.mark.parametrize("recorded", [True, False], ids=["training-checkpoint", "no-recorded-config"])
def test_a_config_json_claiming_a_huge_model_is_refused_before_it_is_built(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str], recorded: bool
) -> None:
    """A few bytes of an edited or damaged config.json (conv_width 10**6) made evaluate and --resume build that
    model before comparing it with the checkpoint: gigabytes for a while, or a traceback from the allocator.
    The checkpoint is now checked against the configuration's shapes first (a model on the meta device)."""
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)
    saved = json.loads((run / "config.json").read_text())
    saved["model"]["conv_width"] = 10**6
    (run / "config.json").write_text(json.dumps(saved))
    if not recorded:  # as a hand-made checkpoint: only the weights' shapes say what they are
        for name in ("best", "last"):
            path = run / "checkpoints" / f"{name}.pt"
            payload = torch.load(path, weights_only=True)
            del payload["config"]
            torch.save(payload, path)
    assert ev.main([str(run), "--test-set", str(test_set), "--checkpoint", "best", "--no-lpips"]) == 2
    line = _one_line_error(capsys)
    best = run / "checkpoints" / "best.pt"
    if recorded:
        assert f"checkpoint: {best} was written by another model configuration: conv_width checkpoint 4 vs " in line
    else:
        assert f"checkpoint: {best} does not fit the model of config.json: " in line and "shape mismatches" in line
    assert train.main(["--resume", str(run), "--max-steps", "5"]) == 2
    line = _one_line_error(capsys)
    last = run / "checkpoints" / "last.pt"
    if recorded:
        assert f"--resume: {last} was written by another model configuration: conv_width checkpoint 4 vs " in line
    else:
        assert f"--resume: {last}" in line and "shape mismatches" in line


# -------------------------------------------------------------------------------- outputs that cannot be written
def test_evaluate_checks_its_output_folder_before_evaluating(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import tempfile

    from examples.srvp import evaluate as ev

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluated although the outputs cannot be written")

    monkeypatch.setattr(ev, "evaluate", never)
    run = _copy(tiny_run, tmp_path)
    contents = sorted(p.name for p in run.iterdir())  # (tensorboard/ too where tensorboard is installed)
    assert "eval" not in contents
    argv = [str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "1"]
    (run / "eval").write_text("a file where the output folder should be")
    assert ev.main(argv) == 2
    assert f"run_dir: cannot write to {run / 'eval'}: {run / 'eval'} is not a directory" in _one_line_error(capsys)
    (run / "eval").unlink()

    def read_only(*args: object, **kwargs: object) -> None:  # (the tests may run as root, which chmod does not stop)
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkstemp", read_only)
        assert ev.main(argv) == 2
    assert f"run_dir: cannot write to {run / 'eval'}: Permission denied" in _one_line_error(capsys)
    assert sorted(p.name for p in run.iterdir()) == contents  # no probe left


def test_evaluate_reports_a_failed_write_in_one_line(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from examples.srvp import evaluate as ev

    def disk_full(result: object, out_dir: Path, name: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / f"{name}.json"))

    monkeypatch.setattr(ev, "write_outputs", disk_full)
    run = _copy(tiny_run, tmp_path)
    argv = [str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "1", "--max-sequences", "2"]
    assert ev.main([*argv, "--name", "x"]) == 2
    assert f"error: No space left on device: {run / 'eval' / 'x.json'}" in _one_line_error(capsys)


def test_demo_checks_its_output_folder_first(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.srvp import demo

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert demo.main([str(tiny_run), "--test-set", str(test_set), "--out", str(blocker / "gifs")]) == 2
    assert f"--out: cannot write to {blocker / 'gifs'}: {blocker} is not a directory" in _one_line_error(capsys)


@pytest.mark.parametrize("cli", ["train", "quickstart", "data"])
def test_a_folder_that_cannot_be_made_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli: str
) -> None:
    from examples.srvp import data, quickstart

    blocker = tmp_path / "file"
    blocker.write_text("")
    if cli == "train":
        assert train.main(["--preset", "tiny", "--run-dir", str(blocker / "run")]) == 2
    elif cli == "quickstart":
        assert quickstart.main(["--run-dir", str(blocker / "run"), "--max-steps", "1"]) == 2
    else:
        with pytest.raises(SystemExit) as exit_:
            data.main(["smmnist-test-set", "--mnist-dir", "embedded", "--out", str(blocker / "sub" / "t.npz")])
        assert exit_.value.code == 2
    assert "not a directory" in _one_line_error(capsys).lower()  # (train: checked before the data is read)


# ----------------------------------------------------------------------------------------- damaged checkpoints
@pytest.mark.parametrize("cli", ["train", "evaluate"])
def test_an_empty_checkpoint_says_it_is_empty(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str], cli: str
) -> None:
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(b"")
    if cli == "train":
        assert train.main(["--resume", str(run)]) == 2
    else:
        assert ev.main([str(run), "--test-set", str(test_set), "--checkpoint", "last", "--no-lpips"]) == 2
    line = _one_line_error(capsys)
    assert f"checkpoint: cannot read {last}: the file is empty (0 bytes" in line


def _flip_a_bit_in_a_tensor(path: Path) -> str:
    """Flip one bit in the middle of the largest tensor record of a torch zip file (what bit rot does); returns
    the record's name."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    return info.filename


def test_a_flipped_bit_in_a_checkpoint_is_an_error_naming_the_record(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch does not check the CRCs of its zip files: a flipped bit in a weight loaded silently, and a resumed
    run wrote it into a new, valid last.pt. read_torch_file checks them first."""
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    member = _flip_a_bit_in_a_tensor(last)
    assert train.main(["--resume", str(run), "--max-steps", "5"]) == 2
    line = _one_line_error(capsys)
    assert f"checkpoint: cannot read {last} ({len(before)} bytes): corrupted: the data of {member} does not" in line
    assert ev.main([str(run), "--test-set", str(test_set), "--checkpoint", "last", "--no-lpips"]) == 2
    assert f"the data of {member} does not match its CRC-32" in _one_line_error(capsys)
    legacy = tmp_path / "legacy.pt"  # torch's older format has no CRCs: read as before
    torch.save({"a": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(read_torch_file(legacy, "x")["a"], torch.ones(3))


def test_random_bytes_are_not_called_unsafe_and_a_pickle_of_code_is(tmp_path: Path) -> None:
    import os
    import random

    noise = tmp_path / "noise.pt"
    noise.write_bytes(random.Random(0).randbytes(5000))
    with pytest.raises(
        ValueError, match=r"noise.pt \(5000 bytes\): not a torch file, or a (truncated or )?corrupted"
    ) as e:
        read_torch_file(noise, "x")
    assert not isinstance(e.value, UnsafeFileError) and "weights_only" not in str(e.value)

    class Code:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, ("true",))

    code = tmp_path / "code.pt"
    torch.save({"model": Code()}, code)
    with pytest.raises(UnsafeFileError, match=r"it would load the Python object \S*system, which weights_only=True"):
        read_torch_file(code, "x")


def test_weights_that_are_not_finite_are_named_at_load(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint of NaN weights was reported as 'scores: contains NaN', naming neither the file nor the cause."""
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)
    last = run / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    key = next(k for k, v in payload["model"].items() if v.is_floating_point())
    payload["model"][key] = payload["model"][key] * float("nan")
    torch.save(payload, last)
    assert ev.main([str(run), "--test-set", str(test_set), "--checkpoint", "last", "--no-lpips"]) == 2
    line = _one_line_error(capsys)
    assert f"checkpoint: {last} holds weights that are not finite (NaN or inf in 1 tensors: {key}): a diverged" in line


def _disk_full_after(n_bytes: int) -> Callable[..., None]:
    """A ``torch.save`` whose writes fail as on a disk with ``n_bytes`` free: the real one, writing through a file
    that refuses more with ENOSPC. (torch's zip writer then raises RuntimeError, the OSError as its context.)"""
    import errno
    import io

    real_save = torch.save

    class _Full(io.RawIOBase):
        def __init__(self, f: Any) -> None:
            self.f, self.written = f, 0

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            if self.written + len(data) > n_bytes:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return self.f.write(data)

    def save(obj: object, f: Any, *args: Any, **kwargs: Any) -> None:
        real_save(obj, _Full(f), *args, **kwargs)

    return save


@pytest.mark.parametrize("fails", ["at-once", "in-torch-zip-writer"])
def test_a_full_disk_during_a_save_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str) -> None:
    """A full disk is an OSError naming the checkpoint, whatever torch.save made of it (review finding: on a disk
    filling up during the write, torch raises RuntimeError from its zip writer, which no OSError handler saw)."""
    import errno

    from examples.srvp.checkpoint import os_error_message, save_checkpoint

    def full(obj: object, f: Any, *args: object, **kwargs: object) -> None:
        f.write(b"PK\x03\x04")
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write to a full disk: no file name

    monkeypatch.setattr(torch, "save", full if fails == "at-once" else _disk_full_after(2000))
    target = tmp_path / "checkpoints" / "last.pt"
    target.parent.mkdir()
    target.write_bytes(b"the previous checkpoint")
    with pytest.raises(OSError) as e:
        save_checkpoint(target, {"model": {"w": torch.zeros(1000)}})
    assert e.value.errno == errno.ENOSPC and os_error_message(e.value) == f"No space left on device: {target}"
    assert list(target.parent.iterdir()) == [target]  # no temporary file
    assert target.read_bytes() == b"the previous checkpoint"


# ------------------------------------------------------------------------------- resuming damaged or foreign runs
def test_resume_without_last_pt_keeps_the_best_pt_of_a_trained_run(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose last.pt went missing (deleted, lost in a copy) restarted from step 0 and overwrote best.pt,
    its best model, and cut its log; now it is refused, saying how to continue from best.pt's step."""
    from examples.srvp.checkpoint import load_checkpoint

    run = _copy(tiny_run, tmp_path)
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    last.unlink()
    best_bytes, log_text = best.read_bytes(), (run / "train_log.jsonl").read_text()
    for argv in (["--resume", str(run)], ["--preset", "tiny", "--run-dir", str(run), "--auto-resume"]):
        assert train.main([*argv, "--max-steps", "5"]) == 2
        line = _one_line_error(capsys)
        option = "--auto-resume" if "--auto-resume" in argv else "--resume"  # (the flag the user gave)
        assert f"{option}: {last} is missing, but {best} holds the training state of step 3" in line
        assert f"cp {best} {last}" in line
        assert best.read_bytes() == best_bytes and (run / "train_log.jsonl").read_text() == log_text
        assert not last.exists()
    shutil.copyfile(best, last)  # as the message says
    assert train.main(["--resume", str(run), "--max-steps", "4"]) == 0
    assert load_checkpoint(last)["step"] == 4


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"optimizer": None}, "holds no training state to continue from (it lacks optimizer)"),
        ({"rng": None, "rng_ranks": None}, "holds no training state to continue from (it lacks rng)"),
        (
            {"optimizer": None, "scheduler": None, "scaler": None, "step": None, "rng": None, "rng_ranks": None},
            "(it lacks optimizer, scheduler, scaler, step, rng): only a checkpoint written by this training",
        ),
        ({"scheduler": {}}, "its 'scheduler' entry cannot be restored (KeyError: "),
        ({"rng": {"torch": "x"}, "rng_ranks": None}, "its 'rng' entry cannot be restored (TypeError: "),
        ({"rng_ranks": [{"torch": torch.zeros(3, dtype=torch.uint8)}]}, "its 'rng' entry cannot be restored ("),
        ({"step": -5}, "holds step -5, expected an integer >= 0"),
    ],
)
def test_resume_checks_the_training_state_of_last_pt(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str], edit: dict[str, Any], message: str
) -> None:
    """Weights without the training entries (an imported best.pt copied to last.pt, another tool's file), or
    entries of another kind, were a KeyError or RuntimeError traceback."""
    run = _copy(tiny_run, tmp_path)
    last = run / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    for key, value in edit.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    torch.save(payload, last)
    log_text = (run / "train_log.jsonl").read_text()
    assert train.main(["--resume", str(run), "--max-steps", "5"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"error: --resume: {last}") and message in line
    assert (run / "train_log.jsonl").read_text() == log_text


def test_resume_refuses_edited_training_options_of_config_json(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints recorded only the model's configuration: an edited (or swapped) train section, which changes
    the data stream or the schedule, went unnoticed. Runtime options, and data_dir (data that moved), may change;
    a checkpoint that recorded no training options (an older version) is not compared."""
    run = _copy(tiny_run, tmp_path)
    config_file, last = run / "config.json", run / "checkpoints" / "last.pt"
    config = json.loads(config_file.read_text())
    config["train"].update(seed=7, lr_burnin=100, max_minutes=5.0, data_dir="embedded")
    config_file.write_text(json.dumps(config))
    assert train.main(["--resume", str(run), "--max-steps", "5"]) == 2
    line = _one_line_error(capsys)
    assert f"--resume: {last} was written with other training options than {config_file} gives: " in line
    assert "lr_burnin checkpoint 4 vs config.json 100, seed checkpoint 1 vs config.json 7 (an edited" in line
    config["train"].update(seed=1, lr_burnin=4)  # runtime options alone: resumes
    config_file.write_text(json.dumps(config))
    assert train.main(["--resume", str(run), "--max-steps", "5"]) == 0
    payload = torch.load(last, weights_only=True)
    assert payload["config"]["train"]["seed"] == 1 and payload["step"] == 5
    config["train"]["seed"] = 7
    config_file.write_text(json.dumps(config))
    del payload["config"]["train"]  # a checkpoint of an older version
    torch.save(payload, last)
    assert train.main(["--resume", str(run), "--max-steps", "6"]) == 0


def _damaged_at_step_3(original: Callable[[Any, int], torch.Tensor]) -> Callable[[Any, int], torch.Tensor]:
    """A ``BatchStream.__getitem__`` whose batch of step 3 fails as a damaged data file read only when drawn."""

    def damaged(self: Any, step: int) -> torch.Tensor:
        if step == 3:
            raise ValueError("/data/x/image-003.png: cannot read image (image file is truncated)")
        return original(self, step)

    return damaged


def test_a_data_error_in_the_middle_of_a_run_keeps_the_steps_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged data file is read only when a batch draws it: the steps since the last checkpoint were lost.
    Now last.pt is written (the model is at a step boundary) and the run continues exactly once it is fixed.
    An error of the model step itself saves nothing (its state is not known to be good)."""
    from examples.srvp.checkpoint import load_checkpoint
    from examples.srvp.datasets import BatchStream
    from examples.srvp.model import SRVP

    argv = ["--preset", "tiny", "--checkpoint-interval", "100", "--val-interval", "100", "--threads", "1"]
    damaged = _damaged_at_step_3(BatchStream.__getitem__)

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(BatchStream, "__getitem__", damaged)
        assert train.main([*argv, "--run-dir", str(run)]) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert out.err.splitlines()[-1] == "error: /data/x/image-003.png: cannot read image (image file is truncated)"
    last = run / "checkpoints" / "last.pt"
    assert "stopped at step 3 of 6: the batch of step 3 could not be made" in out.out
    assert f"continue with: python -m examples.srvp.train --resume {run}" in out.out
    assert load_checkpoint(last)["step"] == 3
    assert train.main(["--resume", str(run)]) == 0
    straight = tmp_path / "straight"
    assert train.main([*argv, "--run-dir", str(straight)]) == 0
    a, b = load_checkpoint(last), load_checkpoint(straight / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])

    calls: list[int] = []
    loss = SRVP.loss_terms

    def failing(self: SRVP, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("the model step failed")
        return loss(self, *args)

    monkeypatch.setattr(SRVP, "loss_terms", failing)
    with pytest.raises(RuntimeError, match="the model step failed"):
        _quiet_train(dataclasses.replace(_tiny(), checkpoint_interval=100, val_interval=100), tmp_path / "model_error")
    assert not (tmp_path / "model_error" / "checkpoints" / "last.pt").exists()


def test_a_second_training_of_a_run_directory_is_refused(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two trainings of one run (a job launched twice, a requeued job whose first instance still runs) both ran
    and interleaved their log and checkpoints; the second one now stops at the lock the first holds."""
    import contextlib
    import os

    fcntl = pytest.importorskip("fcntl")
    run = _copy(tiny_run, tmp_path)
    new = tmp_path / "new"
    new.mkdir()
    with contextlib.ExitStack() as first_training:
        for folder in (run, new):
            f = first_training.enter_context(open(folder / ".lock", "w"))
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            f.write("4242\n")
            f.flush()
        last_bytes = (run / "checkpoints" / "last.pt").read_bytes()
        assert train.main(["--resume", str(run), "--max-steps", "5"]) == 2
        line = _one_line_error(capsys)
        assert f"--resume: another training (process 4242) is running in {run} (it holds {run / '.lock'})" in line
        assert (run / "checkpoints" / "last.pt").read_bytes() == last_bytes
        assert train.main(["--preset", "tiny", "--run-dir", str(new), "--max-steps", "1"]) == 2
        assert f"--run-dir: another training (process 4242) is running in {new}" in _one_line_error(capsys)
        assert sorted(p.name for p in new.iterdir()) == [".lock"]  # no config.json
    # The first training has ended (its lock went with it): the same commands run, and release the lock.
    assert train.main(["--resume", str(run), "--max-steps", "5"]) == 0
    assert train.main(["--preset", "tiny", "--run-dir", str(new), "--max-steps", "1"]) == 0
    assert (run / ".lock").read_text() == f"{os.getpid()}\n"
    with open(run / ".lock") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_training_writes_no_file_through_a_symbolic_link_in_the_run_directory(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run directory made by someone else (copied, shared) could hold ``.lock`` or ``train_log.jsonl`` as a
    symbolic link to any file the user can write: the lock's truncation and the log's appends damaged it. Both
    are refused before anything is written, and the linked file is left as it was."""
    pytest.importorskip("fcntl")
    victim = tmp_path / "precious.txt"
    victim.write_text("precious\n")
    for name in (".lock", "train_log.jsonl"):
        run = _copy(tiny_run, tmp_path / name)
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(victim)
        last_bytes = (run / "checkpoints" / "last.pt").read_bytes()
        assert train.main(["--resume", str(run), "--max-steps", "5"]) == 2
        assert f"--resume: {run / name} is a symbolic link; remove it" in _one_line_error(capsys)
        assert victim.read_text() == "precious\n" and (run / "checkpoints" / "last.pt").read_bytes() == last_bytes
        new = tmp_path / f"new{name}"
        new.mkdir()
        (new / name).symlink_to(victim)
        assert train.main(["--preset", "tiny", "--run-dir", str(new), "--max-steps", "1"]) == 2
        assert f"--run-dir: {new / name} is a symbolic link; remove it" in _one_line_error(capsys)
        assert victim.read_text() == "precious\n" and not (new / "checkpoints").exists()


def test_a_run_dir_that_is_a_file_is_reported_before_the_data_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("x")

    def no_data(cfg: TrainConfig, **options: Any) -> None:
        raise AssertionError("the data was read")

    monkeypatch.setattr(train, "make_data", no_data)
    assert train.main(["--preset", "tiny", "--run-dir", str(a_file)]) == 2
    assert f"error: --run-dir: cannot write to {a_file}: {a_file} is not a directory" in _one_line_error(capsys)


# ------------------------------------------------------------------------------------------------ the log
def test_a_resumed_run_logs_each_step_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed after its last checkpoint had logged later steps; resuming from the checkpoint drops them,
    so the log has the steps of an uninterrupted run (lines cut short by the kill go too)."""
    import dataclasses
    import json

    cfg = dataclasses.replace(_tiny(), lr_burnin=20, lr_decay=10, checkpoint_interval=15, val_interval=25)
    _quiet_train(cfg, tmp_path / "straight")

    def killed(*args: object, **kwargs: object) -> float:  # the validation of step 25: after the log of step 20
        raise KeyboardInterrupt

    run = tmp_path / "killed"
    with monkeypatch.context() as m:
        m.setattr(train, "validate", killed)
        with pytest.raises(KeyboardInterrupt):
            _quiet_train(cfg, run)
    log = run / "train_log.jsonl"
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [10, 20]  # last.pt: step 15
    with open(log, "a") as f:
        f.write("[" * 100_000 + "\n")  # a damaged line, nested too deeply for the parser
        f.write('{"step": 2')  # a line the kill cut short
    _quiet_train(cfg, run, resume=True)

    def steps(path: Path) -> list[tuple[int, bool]]:
        return [(e["step"], "val_psnr" in e) for e in map(json.loads, path.read_text().splitlines())]

    assert steps(log) == steps(tmp_path / "straight" / "train_log.jsonl")
    assert steps(log) == [(10, False), (20, False), (25, True), (30, False)]


# ---------------------------------------------------------------------------------------------- atomic writes
def test_atomic_writes_sync_the_data_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename is durable only once its folder is synced: without that, a power cut can leave a checkpoint's
    old name pointing at nothing or at the old file although training went on past it."""
    import os
    import stat

    from examples.srvp import checkpoint

    target = tmp_path / "run" / "config.json"
    synced: list[tuple[str, bool]] = []  # (what the fd was, whether target held the new text at that moment)
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        synced.append((kind, target.exists() and target.read_text() == "new"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    target.parent.mkdir()
    target.write_text("old")
    checkpoint.atomic_write_text(target, "new")
    assert synced == [("file", False), ("folder", True)]
    assert target.read_text() == "new"

    def refusing_fsync(fd: int) -> None:  # e.g. a file system that cannot sync folders: the write still stands
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", refusing_fsync)
    checkpoint.atomic_write_text(target, "newer")
    assert target.read_text() == "newer"
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]


def test_atomic_writes_get_the_permissions_a_plain_write_would(tmp_path: Path) -> None:
    import os
    import stat

    import torch

    from examples.srvp.checkpoint import atomic_write_npz, atomic_write_text, save_checkpoint

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "config.json", "{}")
        save_checkpoint(tmp_path / "checkpoints" / "last.pt", {"model": {"w": torch.zeros(1)}})
        atomic_write_npz(tmp_path / "scores.npz", psnr=np.zeros(2))
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("")
        assert mode(tmp_path / "plain.txt") == 0o644
        for name in ("config.json", "checkpoints/last.pt", "scores.npz"):
            assert mode(tmp_path / name) == 0o644, name
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.json", "{}")
        assert mode(tmp_path / "private.json") == 0o600
        (tmp_path / "config.json").chmod(0o640)  # a file rewritten in place keeps its permissions
        atomic_write_text(tmp_path / "config.json", "{}")
        assert mode(tmp_path / "config.json") == 0o640
    finally:
        os.umask(previous)


# ------------------------------------------------------------------------------------------------ resuming
def test_resume_refuses_a_preset(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for preset in ("smmnist", "tiny"):  # the default of a new run, and the run's own preset: both are errors
        assert train.main(["--resume", str(tiny_run), "--preset", preset]) == 2
        line = _one_line_error(capsys)
        assert f"--preset: a resumed run keeps the configuration of its config.json; drop --preset {preset}" in line
    args = train.build_parser().parse_args(["--run-dir", "new"])
    assert train.config_from_args(args) == PRESETS["smmnist"]()  # still the default of a new run


# ---------------------------------------------------------------------------------------- flags in messages
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--fvd-resolution", "0"], "error: --fvd-resolution: expected an int >= 1, got 0"),
        (["--fvd-samples", "0", "--fvd"], "error: --fvd-samples: expected an int >= 1, got 0"),
        (["--fvd-samples", "2"], "error: --fvd-samples: FVD of 2 samples asked for, but not FVD (add --fvd)"),
        (
            ["--fvd-samples", "3", "--fvd", "--n-samples", "2"],
            "error: --fvd-samples: expected at most the 2 samples drawn per sequence (--n-samples), got 3",
        ),
        (["--nt-cond", "8"], "error: --nt-cond: expected fewer conditioning frames than the 8 frames evaluated"),
        (["--nt-cond", "3", "--nt-gen", "3"], "error: --nt-gen: expected more than --nt-cond=3 frames, got 3"),
        (["--nt-gen", "2"], "error: --nt-gen: expected more than nt_cond (the run's)=2 frames, got 2"),
    ],
)
def test_evaluate_messages_name_the_flag_at_fault(
    tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    from examples.srvp import evaluate as ev

    assert ev.main([str(tiny_run), "--test-set", str(test_set), "--no-lpips", *flags]) == 2
    assert _one_line_error(capsys).startswith(message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "config.json is not valid JSON"),
        ("[" * 100_000, "config.json is not a configuration (JSON nested too deeply to read)"),
        ('{"model": {}}', "config.json has no 'train' section"),
        ('{"model": {}, "train": {"lr": -1}}', "config.json: lr: expected a finite number > 0, got -1"),
    ],
)
def test_resume_blames_the_run_config_not_a_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(content)
    assert train.main(["--resume", str(run)]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"error: --resume: {run}") and message in line
    assert train.main(["--resume", str(tmp_path / "nowhere")]) == 2
    assert _one_line_error(capsys) == f"error: --resume: {tmp_path / 'nowhere'} does not exist"


def test_an_edited_config_json_is_blamed_by_evaluate(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flag written as a string (``"use_noise": "false"``) would be read as true: it is an error that names the
    file, not a traceback."""
    import shutil

    from examples.srvp import evaluate as ev

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["model"]["use_noise"] = "false"
    (run / "config.json").write_text(json.dumps(config))
    assert ev.main([str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "1"]) == 2
    line = _one_line_error(capsys)
    assert line == f"error: run_dir: {run / 'config.json'}: use_noise: expected a bool, got str 'false'"
    config["model"]["use_noise"], config["train"]["compile"] = True, 1
    (run / "config.json").write_text(json.dumps(config))
    assert train.main(["--resume", str(run)]) == 2
    assert "compile: expected a bool, got int 1" in _one_line_error(capsys)


# ---------------------------------------------------------------------------------------------- quickstart
def test_quickstart_help_shows_no_empty_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.srvp import quickstart

    with pytest.raises(SystemExit):
        quickstart.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert "training time budget of this invocation (default: the preset's)" in text
    assert "(default: runs/smmnist-cpu)" in text
    assert "best of N (default: 20; 1 for deterministic Moving MNIST, as the official README)" in text


def test_quickstart_refuses_a_run_of_another_dataset_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from examples.srvp import quickstart
    from examples.srvp.config import config_to_dict

    cfg = config_to_dict(PRESETS["kth"]())
    run = tmp_path / "runs" / "kth"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": cfg.pop("model"), "train": cfg}))
    assert quickstart.main(["--run-dir", str(run), "--max-steps", "1"]) == 2
    line = _one_line_error(capsys)
    assert f"--run-dir: {run} holds a 'kth' run; the quickstart trains and evaluates Moving MNIST runs only" in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["config.json", "kth", "runs"]  # no test set made


def test_a_relative_data_dir_is_stored_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    work = tmp_path / "work"
    for name, level in (("a", 10), ("b", 60), ("c", 120)):
        frame_folder(work / "videos" / name, 8, level)
    monkeypatch.chdir(work)
    argv = ["--preset", "tiny", "--run-dir", "run", "--dataset", "folder", "--data-dir", "videos", "--max-steps", "1"]
    assert train.main(argv) == 0
    assert json.loads((work / "run" / "config.json").read_text())["train"]["data_dir"] == str(work / "videos")
    monkeypatch.chdir(tmp_path)  # another working directory
    assert train.main(["--resume", str(work / "run"), "--max-steps", "2"]) == 0
    assert "run directory: " in capsys.readouterr().out


# ------------------------------------------------------------------------------- evaluate: clip lengths
def test_evaluate_names_the_length_flags_when_test_clips_are_too_short(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.srvp import evaluate as ev

    videos, short = tmp_path / "videos", tmp_path / "short"
    for name, level in (("a", 10), ("b", 60), ("c", 120)):
        frame_folder(videos / name, 8, level)
    for name, level in (("a", 10), ("b", 60)):
        frame_folder(short / name, 4, level)  # the tiny preset's test clips have 6 frames
    run = tmp_path / "run"
    argv = ["--preset", "tiny", "--run-dir", str(run), "--dataset", "folder", "--data-dir", str(videos)]
    assert train.main([*argv, "--max-steps", "1"]) == 0
    capsys.readouterr()
    assert ev.main([str(run), "--test-set", str(short), "--n-samples", "2", "--no-lpips"]) == 2
    line = _one_line_error(capsys)
    assert f"--test-set: {short / 'a'} has 4 frames, fewer than the 6 that clips of 6 frames" in line
    assert "lower --nt-gen" in line
    assert not (run / "eval").exists()
    text = tmp_path / "clips.txt"  # (not a folder of videos: the message named the dataset's argument, root)
    text.write_text("clips")
    assert ev.main([str(run), "--test-set", str(text), "--n-samples", "2", "--no-lpips"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"error: --test-set: expected a directory of videos, found none at {text}")
    clips = tmp_path / "clips.npz"  # clips of one's own as arrays, time-major uint8 (T, N, H, W), as demo reads
    levels = np.array([0, 200, 100], np.uint8)
    np.savez(clips, sequences=np.broadcast_to(levels[None, :, None, None], (7, 3, 64, 64)).copy())
    assert ev.main([str(run), "--test-set", str(clips), "--n-samples", "2", "--no-lpips", "--name", "arr"]) == 0
    result = json.loads((run / "eval" / "arr.json").read_text())
    assert (result["protocol"]["nt_gen"], result["n_sequences"]) == (6, 3), result  # (the first 6 of 7 frames)
    short = tmp_path / "short.npz"
    np.savez(short, sequences=np.zeros((4, 2, 64, 64), np.uint8))
    assert ev.main([str(run), "--test-set", str(short), "--n-samples", "2", "--no-lpips"]) == 2
    assert _one_line_error(capsys).startswith(f"error: --test-set: {short} holds clips of 4 frames, fewer than the 6")

    bair = tmp_path / "bair"
    (bair / "processed_data" / "test").mkdir(parents=True)
    bair_argv = [str(tiny_run), "--dataset", "bair", "--test-set", str(bair), "--nt-gen", "31", "--no-lpips"]
    assert ev.main(bair_argv) == 2
    assert "--nt-gen: BAIR test videos have 30 frames, got 31" in _one_line_error(capsys)


def test_evaluate_names_the_frame_size_of_a_test_set_of_another_size(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Clips of 32x32 frames for a 64x64 model were blamed on an internal name ('sequences: expected size 64')."""
    from examples.srvp import evaluate as ev

    with np.load(test_set) as data:
        arrays = dict(data)
    arrays["sequences"] = arrays["sequences"][:, :, ::2, ::2]
    small = tmp_path / "small.npz"
    np.savez(small, **arrays)
    assert ev.main([str(tiny_run), "--test-set", str(small), "--no-lpips"]) == 2
    assert "error: --test-set: frames are [1, 32, 32] (C, H, W), the model expects [1, 64, 64]" in (
        _one_line_error(capsys)
    )


def test_evaluate_blames_config_json_for_its_values_not_flags_never_given(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)
    config_file = run / "config.json"
    config = json.loads(config_file.read_text())
    argv = [str(run), "--test-set", str(test_set), "--no-lpips"]
    for value, message in (
        (1.5, f"error: run_dir: {config_file}: train.nt_cond: expected an int, got 1.5"),  # (was truncated to 1)
        (1, f"error: train.nt_cond of {config_file} (--nt-cond overrides it): the model infers y_0"),
        (8, f"error: train.nt_cond of {config_file} (--nt-cond overrides it): expected fewer conditioning frames"),
    ):
        config["train"]["nt_cond"] = value
        config_file.write_text(json.dumps(config))
        assert ev.main(argv) == 2
        assert _one_line_error(capsys).startswith(message)
    assert ev.main([*argv, "--nt-cond", "1"]) == 2
    assert _one_line_error(capsys).startswith("error: --nt-cond: the model infers y_0")
    config["train"].update(nt_cond=2, dataset="mnist")
    config_file.write_text(json.dumps(config))
    assert ev.main(argv) == 2
    assert _one_line_error(capsys).startswith(f"error: run_dir: {config_file}: train.dataset: expected one of (")


def test_demo_reads_the_test_data_of_a_video_run_as_evaluate_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder/KTH/Human3.6M/BAIR run: demo reads its data_dir (or a folder given with --test-set) with the
    evaluation's clip length; it only took .npz files, so only Moving MNIST and KTH runs had demos."""
    from examples.srvp import demo

    videos = tmp_path / "videos"
    for name, level in (("a", 10), ("b", 60), ("c", 120)):
        frame_folder(videos / name, 8, level)
    run = tmp_path / "run"
    argv = ["--preset", "tiny", "--run-dir", str(run), "--dataset", "folder", "--data-dir", str(videos)]
    assert train.main([*argv, "--max-steps", "1"]) == 0
    capsys.readouterr()
    out = tmp_path / "gifs"
    assert demo.main([str(run), "--out", str(out), "--what", "interpolate", "--steps", "3"]) == 0
    assert (out / "interpolation.gif").stat().st_size > 0
    said = capsys.readouterr().out  # (a folder run's data_dir holds its training videos: the summary says so)
    assert f"of {videos} (the run's training videos: --test-set names held-out ones) (2 conditioning" in said
    assert demo.main([str(run), "--test-set", str(videos), "--out", str(out), "--what", "swap"]) == 0
    assert (out / "content_swap.gif").stat().st_size > 0
    assert f"of {videos} (2 conditioning frames)" in capsys.readouterr().out
    assert demo.main([str(run), "--test-set", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert f"--test-set: nothing at {tmp_path / 'nothing'}" in _one_line_error(capsys)


def test_evaluate_takes_one_sample_for_deterministic_moving_mnist_by_default(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SPEC 4.3: the official README tests deterministic Moving MNIST with --n_samples 1 (test.py's default is
    100); a model without noise draws the same future every time, so it also takes one."""
    import dataclasses
    import json

    from examples.srvp import evaluate as ev
    from examples.srvp.model import SRVP

    run = _copy(tiny_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["train"]["deterministic"] = True
    (run / "config.json").write_text(json.dumps(config))
    argv = [str(run), "--test-set", str(test_set), "--no-lpips", "--max-sequences", "2", "--batch-size", "2"]
    assert ev.main(argv) == 0
    written = {p.name for p in (run / "eval").glob("*.json")}
    assert any("_n1_" in name for name in written), written
    assert json.loads((run / "eval" / next(iter(written))).read_text())["protocol"]["n_samples"] == 1

    tiny = _tiny()
    assert ev.default_n_samples({"dataset": "smmnist", "deterministic": False}, SRVP(tiny.model)) == 100
    assert ev.default_n_samples({"dataset": "kth"}, SRVP(tiny.model)) == 100
    no_noise = dataclasses.replace(tiny.model, use_noise=False, noise_size=0)
    assert ev.default_n_samples({"dataset": "kth"}, SRVP(no_noise)) == 1


# ------------------------------------------------------------------------------------------------ Ctrl-C
def _no_escape(main: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        return main(argv)
    except KeyboardInterrupt:  # (left to pytest, it would end the whole test session)
        pytest.fail("Ctrl-C escaped the command as a KeyboardInterrupt")


@pytest.mark.parametrize("cli", ["evaluate", "demo", "data"])
def test_ctrl_c_ends_a_command_with_one_line_and_status_130(
    cli: str,
    tmp_path: Path,
    tiny_run: Path,
    test_set: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C in the middle of the work (evaluating, rendering, converting): no traceback, a line that says
    what was kept, and the shell's status for SIGINT."""
    from examples.srvp import data, demo
    from examples.srvp import evaluate as ev

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    if cli == "evaluate":
        monkeypatch.setattr(ev, "evaluate", ctrl_c)
        run = _copy(tiny_run, tmp_path)  # (the results' lock stays in run/eval)
        status = _no_escape(ev.main, [str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "1"])
        said = "interrupted: no results were written"
        written = (run / "eval").iterdir() if (run / "eval").exists() else ()
        assert all(p.name.startswith(".") and p.name.endswith(".lock") for p in written)  # only the results' lock
    elif cli == "demo":
        monkeypatch.setattr(demo, "interpolation", ctrl_c)
        out = tmp_path / "gifs"
        status = _no_escape(demo.main, [str(tiny_run), "--test-set", str(test_set), "--out", str(out)])
        said = f"interrupted: the GIFs already in {out} are complete"
        assert sorted(p.name for p in out.iterdir()) == ["content_swap.gif", "frame_rate.gif"]  # the demos before
    else:
        from latentdyn.video import moving_mnist

        monkeypatch.setattr(moving_mnist, "make_test_set", ctrl_c)
        with pytest.raises(SystemExit) as exit_:
            _no_escape(
                data.main, ["smmnist-test-set", "--mnist-dir", "embedded", "--seq-len", "2", "--out", str(tmp_path)]
            )
        status = int(exit_.value.code)  # type: ignore[arg-type]
        said = "interrupted; the outputs written so far are complete, and running the same command again makes it"
    assert status == 130
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


# ------------------------------------------------------------------ an evaluation that stops and continues
def _uint8_clips(n: int) -> Any:
    """n random test clips of 6 frames of 64x64, uint8 (T, N, 1, H, W), the same for every call."""
    import torch

    return torch.randint(0, 256, (6, n, 1, 64, 64), generator=torch.Generator().manual_seed(0)).to(torch.uint8)


def _stop_at_call(monkeypatch: pytest.MonkeyPatch, model_class: type, n: int, stop: Callable[[], None]) -> list[int]:
    """``model_class.predict`` calls ``stop`` in its ``n``-th call (1-based); returns the list of calls made."""
    calls: list[int] = []
    predict = model_class.predict

    def spy(self: object, *args: object, **kwargs: object) -> object:
        calls.append(len(calls) + 1)
        if len(calls) == n:
            stop()
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "predict", spy)
    return calls


@pytest.mark.parametrize("noise", ["sequence", "batch"])
def test_an_interrupted_evaluation_continues_to_the_results_of_an_uninterrupted_one(
    tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch, noise: str
) -> None:
    """Stopped in its third batch (Ctrl-C), an evaluation with a state file keeps its first two batches; run
    again, it draws the remaining samples from where it stopped: the scores, per-sequence values, GIF frames,
    official files and FVD videos are those of an uninterrupted evaluation, bit for bit. With both noise modes:
    "batch" continues the global random stream saved with the progress, "sequence" seeds each sequence anew."""
    import torch

    from examples.srvp import evaluate as ev
    from examples.srvp.checkpoint import load_model
    from examples.srvp.model import SRVP

    model = load_model(tiny_run, "last")
    clips = _uint8_clips(7)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=6, n_samples=4, n_substeps=1, batch_size=3, seed=1, max_sequences=0)
    fvd_inputs: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
    monkeypatch.setattr(ev, "_fvd", lambda real, fakes, *_: fvd_inputs.append((real, fakes)) or {"value": 0.0})
    options: dict[str, Any] = dict(progress=False, official_files=True, fvd_network=torch.nn.Identity(), sample_chunk=3)
    options["fvd_samples"] = 4  # samples 1 … 4: the second chunk's too
    options["noise"] = noise
    whole = ev.evaluate(model, clips, protocol, **options)

    state = tmp_path / "eval.partial.pt"

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    calls = _stop_at_call(monkeypatch, SRVP, 5, ctrl_c)  # 2 calls per batch (4 samples, 3 per call): batch 3
    with pytest.raises(KeyboardInterrupt) as stopped:
        ev.evaluate(model, clips, protocol, state_file=state, save_every=3600, **options)
    assert stopped.value.saved_progress == ev.SavedProgress(6, 7, state)  # type: ignore[attr-defined]
    if sys.version_info >= (3, 11):  # the traceback says it (notebook review: only an attribute said it)
        note = f"evaluate: the results of 6 of 7 sequences are saved in {state}; the same call again continues"
        assert any(n.startswith(note) for n in stopped.value.__notes__)
    calls.clear()
    continued = ev.evaluate(model, clips, protocol, state_file=state, **options)
    assert calls == [1, 2]  # only the last batch was sampled
    assert continued["throughput"]["resumed_at"] == [6] and whole["throughput"]["resumed_at"] == []
    public = ("metrics", "worst_sample", "reference_predictors", "n_sequences", "protocol")
    assert {k: continued[k] for k in public} == {k: whole[k] for k in public}
    for m in whole["_per_sequence"]:
        np.testing.assert_array_equal(continued["_per_sequence"][m], whole["_per_sequence"][m])
    assert whole["_gif"]["truth"].shape[1] == 4 and whole["_official"]["random_4"].shape[0] == 7
    for key in ("_gif", "_official"):
        assert whole[key].keys() == continued[key].keys()
        for name, value in whole[key].items():
            assert np.array_equal(np.asarray(continued[key][name]), np.asarray(value)), (key, name)
    (real, fakes), (real2, fakes2) = fvd_inputs[0], fvd_inputs[-1]
    assert torch.equal(real, real2) and len(fakes) == len(fakes2) == 4
    assert all(torch.equal(a, b) and a.shape[1] == 7 for a, b in zip(fakes, fakes2))

    # The complete file gives the results again without sampling anything.
    calls.clear()
    again = ev.evaluate(model, clips, protocol, state_file=state, **options)
    assert calls == [] and again["metrics"] == whole["metrics"]


def test_saved_progress_is_refused_by_another_evaluation(tmp_path: Path, tiny_run: Path) -> None:

    from examples.srvp import evaluate as ev
    from examples.srvp.checkpoint import load_model

    model = load_model(tiny_run, "last")
    clips = _uint8_clips(4)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=6, n_samples=2, n_substeps=1, batch_size=2, seed=1, max_sequences=0)
    state = tmp_path / "eval.partial.pt"
    ev.evaluate(model, clips, protocol, progress=False, state_file=state)
    other_seed = dataclasses.replace(protocol, seed=2)
    with pytest.raises(ev.StateMismatchError, match="seed: 1 saved, 2 now") as mismatch:
        ev.evaluate(model, clips, other_seed, progress=False, state_file=state)
    assert mismatch.value.differences == [("seed", 1, 2)]
    other_clips = clips.clone()
    other_clips[-1, -1, 0, 0, 0] ^= 1  # one bit of one pixel
    with pytest.raises(ev.StateMismatchError, match="other test clips") as mismatch:
        ev.evaluate(model, other_clips, protocol, progress=False, state_file=state)
    assert mismatch.value.differences == [("test clips", None, None)]
    trained_more = load_model(tiny_run, "best")
    with pytest.raises(ev.StateMismatchError, match="other model weights"):
        ev.evaluate(trained_more, clips, protocol, progress=False, state_file=state)
    with pytest.raises(ValueError, match="save_every: expected a finite number of seconds >= 0, got -1"):
        ev.evaluate(model, clips, protocol, progress=False, state_file=state, save_every=-1)
    state.write_bytes(b"")
    with pytest.raises(ValueError, match=r"state_file: cannot read .* the file is empty"):
        ev.evaluate(model, clips, protocol, progress=False, state_file=state)


def test_sigterm_stops_the_evaluate_cli_which_the_same_command_continues(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduler's SIGTERM in the middle of the evaluation: one line that says how far it got, status 143, the
    progress in eval/NAME.partial.pt; the same command then finishes with the results of an uninterrupted
    evaluation and removes the file. Another command of the same name is refused until --restart."""
    import os
    import shutil
    import signal

    from examples.srvp import evaluate as ev
    from examples.srvp.model import SRVP

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    argv = [str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "2", "--max-sequences", "5"]
    argv += ["--batch-size", "2", "--sample-chunk", "2", "--save-every", "0"]
    assert ev.main([*argv, "--name", "whole"]) == 0
    whole = json.loads((run / "eval" / "whole.json").read_text())
    capsys.readouterr()

    previous = signal.getsignal(signal.SIGTERM)
    _stop_at_call(monkeypatch, SRVP, 2, lambda: os.kill(os.getpid(), signal.SIGTERM))  # in the second batch
    status = _no_escape(ev.main, [*argv, "--name", "parts"])
    assert status == 143 and signal.getsignal(signal.SIGTERM) == previous
    err = capsys.readouterr().err
    state = run / "eval" / "parts.partial.pt"
    assert f"terminated after 2 of 5 test sequences: their results are saved in {state}" in err
    assert "Traceback" not in err and state.is_file() and not (run / "eval" / "parts.json").exists()

    assert ev.main([*argv, "--name", "parts", "--seed", "3"]) == 2
    line = _one_line_error(capsys)
    assert f"{state} holds an unfinished evaluation with other settings (--seed: 1 saved, 3 now)" in line
    assert "--restart to discard it" in line

    monkeypatch.undo()  # predict as it was
    assert ev.main([*argv, "--name", "parts"]) == 0
    out = capsys.readouterr().out
    assert f"continuing the unfinished evaluation saved in {state}" in out
    assert "predicted frames/s (computing time; continued after 2)" in out
    parts = json.loads((run / "eval" / "parts.json").read_text())
    assert parts["throughput"]["resumed_at"] == [2] and not state.exists()
    for key in ("metrics", "worst_sample", "reference_predictors"):
        assert parts[key] == whole[key]

    state.write_bytes(b"not a torch file")  # e.g. another program's file under that name
    assert ev.main([*argv, "--name", "parts"]) == 2
    line = _one_line_error(capsys)
    assert f"error: cannot read {state}" in line and line.endswith("(--restart discards it)")
    assert ev.main([*argv, "--name", "parts", "--restart"]) == 0
    assert json.loads((run / "eval" / "parts.json").read_text())["throughput"]["resumed_at"] == []
    assert not state.exists()


def test_saved_progress_survives_numpy_settings_a_second_ctrl_c_and_a_full_disk(
    tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review findings: a protocol of NumPy ints made a state file that weights_only=True could not read back; a
    second Ctrl-C during the save after the first one lost the report of what the file holds; a save that fails
    (a full disk) ended an evaluation whose results were computed."""

    from examples.srvp import evaluate as ev
    from examples.srvp.checkpoint import load_model

    model = load_model(tiny_run, "last")
    clips = _uint8_clips(5)
    sizes = dict(nt_cond=np.int64(2), nt_gen=np.int32(6), n_samples=np.int64(2), n_substeps=1, batch_size=2)
    protocol = ev.EvalProtocol(**sizes, seed=np.int64(1), max_sequences=0)  # type: ignore[arg-type]
    assert all(type(v) is int for v in dataclasses.asdict(protocol).values())
    state = tmp_path / "eval.partial.pt"
    options: dict[str, Any] = dict(progress=False, n_gif=np.int64(2), save_every=np.float32(0))
    whole = ev.evaluate(model, clips, protocol, state_file=state, **options)
    again = ev.evaluate(model, clips, protocol, state_file=state, **options)  # read back: the complete file
    assert again["metrics"] == whole["metrics"]
    state.unlink()

    save = ev._save_progress
    saves: list[int] = []

    def ctrl_c_in_saves_2_and_3(*args: Any) -> None:
        saves.append(args[2].done)
        if len(saves) in (2, 3):
            raise KeyboardInterrupt
        save(*args)

    monkeypatch.setattr(ev, "_save_progress", ctrl_c_in_saves_2_and_3)
    with pytest.raises(KeyboardInterrupt) as stopped:
        ev.evaluate(model, clips, protocol, state_file=state, **options)
    assert saves == [2, 4, 4]  # batch 1 saved; batch 2's save and the stop's save interrupted
    assert stopped.value.saved_progress == ev.SavedProgress(2, 5, state)  # type: ignore[attr-defined]
    monkeypatch.undo()
    continued = ev.evaluate(model, clips, protocol, state_file=state, **options)
    assert continued["throughput"]["resumed_at"] == [2] and continued["metrics"] == whole["metrics"]

    def disk_full(path: Any, payload: Any) -> None:
        raise OSError(28, "No space left on device", str(path))

    from examples.srvp import _eval_state

    monkeypatch.setattr(_eval_state, "save_checkpoint", disk_full)
    with pytest.warns(UserWarning, match="state_file: the progress could not be saved .No space left on device") as w:
        unsaved = ev.evaluate(model, clips, protocol, state_file=tmp_path / "other.pt", **options)
    assert {record.filename for record in w} == {__file__}  # the caller's line, not the example's (nor torch's)
    assert unsaved["metrics"] == whole["metrics"] and not (tmp_path / "other.pt").exists()
    monkeypatch.undo()
    monkeypatch.setattr(torch, "save", _disk_full_after(2000))  # as a real disk filling up during torch.save
    with pytest.warns(UserWarning, match="state_file: the progress could not be saved .No space left on device: "):
        unsaved = ev.evaluate(model, clips, protocol, state_file=tmp_path / "other.pt", **options)
    assert unsaved["metrics"] == whole["metrics"] and list(tmp_path.glob("*other.pt*")) == []
    with pytest.raises(ValueError, match="save_every: expected a finite number of seconds >= 0, got nan"):
        ev.evaluate(model, clips, protocol, state_file=state, progress=False, save_every=float("nan"))
    with pytest.raises(TypeError, match="save_every: expected a number of seconds, got str '60'"):
        ev.evaluate(model, clips, protocol, state_file=state, progress=False, save_every="60")  # type: ignore[arg-type]
    with pytest.raises(ev.StateMismatchError, match="sample_chunk: 2 saved, 1 now"):
        ev.evaluate(model, clips, protocol, state_file=state, progress=False, sample_chunk=1)


def test_the_evaluate_cli_reports_an_error_with_what_it_kept_and_runs_outside_the_main_thread(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import threading

    import torch

    from examples.srvp import evaluate as ev
    from examples.srvp.model import SRVP

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    argv = [str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "2", "--max-sequences", "5"]
    argv += ["--batch-size", "2", "--save-every", "0", "--name", "oom"]

    def out_of_memory() -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    _stop_at_call(monkeypatch, SRVP, 2, out_of_memory)  # in the second batch
    assert ev.main(argv) == 1
    err = capsys.readouterr().err
    state = run / "eval" / "oom.partial.pt"
    assert "Traceback" in err and "CUDA out of memory" in err
    last = err.rstrip("\n").splitlines()[-1]
    assert last == (
        f"error: OutOfMemoryError after 2 of 5 test sequences: their results are saved in {state}, and the same "
        f"command continues from there: python -m examples.srvp.evaluate {shlex.join(argv)}"
    )
    monkeypatch.undo()
    for minutes in ("nan", "inf", "-1"):
        assert ev.main([*argv, "--save-every", minutes]) == 2
        assert (
            _one_line_error(capsys) == f"error: --save-every: expected a number of minutes >= 0, got {float(minutes)}"
        )

    status: list[int] = []
    worker = threading.Thread(target=lambda: status.append(ev.main(argv)))  # e.g. a notebook's or a server's
    worker.start()
    worker.join()
    assert status == [0], capsys.readouterr().err
    assert json.loads((run / "eval" / "oom.json").read_text())["throughput"]["resumed_at"] == [2]


# ------------------------------------------------------------------------------------------------ portability
ROOT = Path(__file__).resolve().parents[1]
ASCII_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}
"""An environment whose stdout encoding is ASCII (a minimal container, a cron job)."""


def _python(args: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, timeout=300, **kwargs)


def test_atomic_writes_work_without_os_fchmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has os.fchmod only from Python 3.13: the permissions are then set through the path."""
    import os
    import stat

    import torch

    from examples.srvp.checkpoint import atomic_write_text, save_checkpoint

    monkeypatch.delattr(os, "fchmod")
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "config.json", "{}")
        save_checkpoint(tmp_path / "checkpoints" / "last.pt", {"model": {"w": torch.zeros(1)}})
    finally:
        os.umask(previous)
    for name in ("config.json", "checkpoints/last.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "config.json"]  # no temporary left


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts the open descriptors in /proc/self/fd")
def test_an_atomic_write_whose_permissions_are_refused_leaves_no_descriptor_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Soak-review finding: a file system that refuses chmod (e.g. some FUSE mounts) made each failed write leak
    the temporary file's descriptor, which a retrying loop would pile up. (Since the writers were merged the mode
    is best effort: the writes succeed there, and still leave no descriptor and no temporary behind.)"""
    import os

    from examples.srvp.checkpoint import atomic_write_text
    from latentdyn.video.moving_mnist import save_test_set

    def refuse(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refuse, raising=False)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        atomic_write_text(tmp_path / "config.json", "{}")
        save_test_set(tmp_path / "a.npz", _small_moving_mnist_test_set(), overwrite=True)
    assert len(os.listdir("/proc/self/fd")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "config.json"]  # no temporary left
    assert (tmp_path / "config.json").read_text() == "{}"


def _small_moving_mnist_test_set() -> Any:
    from latentdyn.video.moving_mnist import make_test_set

    digits = np.zeros((4, 28, 28), dtype=np.uint8)
    return make_test_set(digits, np.arange(4), seq_len=3, deterministic=False)


@pytest.mark.parametrize("cli", ["train", "evaluate", "official", "quickstart", "data", "demo"])
def test_the_clis_run_under_python_OO(cli: str) -> None:
    """``python -OO`` (PYTHONOPTIMIZE=2) removes the docstrings that parsers took their description from."""
    proc = _python(["-OO", "-m", f"examples.srvp.{cli}", "--help"], text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: python -m examples.srvp." in proc.stdout


def test_an_undecodable_config_json_is_a_one_line_error_naming_it(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)
    config = run / "config.json"
    config.write_bytes(b"\xff\xfe{}")
    for argv in (["--resume", str(run)], ["--run-dir", str(run), "--auto-resume", "--preset", "tiny"]):
        assert train.main(argv) == 2
        line = _one_line_error(capsys)
        option = argv[0] if argv[0] == "--resume" else "--auto-resume"  # (the flag the user gave)
        assert line.startswith(f"error: {option}: {config} is not UTF-8 text (invalid start byte at byte 0)"), line
    assert ev.main([str(run), "--test-set", str(test_set)]) == 2
    assert _one_line_error(capsys).startswith(f"error: run_dir: {config} is not UTF-8 text")


def test_config_json_is_utf8_whatever_the_locale(tmp_path: Path, tiny_run: Path) -> None:
    """A config.json holding a non-ASCII data_dir (written as UTF-8, as the CLIs write it) reads back under an
    ASCII locale, and with a byte-order mark (some Windows editors add one)."""
    run = _copy(tiny_run, tmp_path)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config["train"]["data_dir"] = str(tmp_path / "données vidéo")
    (run / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    code = "import sys; from examples.srvp.checkpoint import read_run_config as r; print(ascii(r(sys.argv[1])))"
    proc = _python(["-c", code, str(run)], env=ASCII_LOCALE, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ascii(str(tmp_path / "données vidéo")) in proc.stdout
    (run / "config.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(config).encode())
    from examples.srvp.checkpoint import read_run_config

    assert read_run_config(run)["train"]["data_dir"] == str(tmp_path / "données vidéo")


def test_evaluate_prints_its_results_on_an_ascii_console(tmp_path: Path, tiny_run: Path, test_set: Path) -> None:
    """The results hold "±": on a console that cannot show it, it is escaped (the command succeeds); and its
    progress, written to a pipe, holds no carriage-return redraws."""
    run = _copy(tiny_run, tmp_path)
    argv = ["-m", "examples.srvp.evaluate", str(run), "--test-set", str(test_set), "--no-lpips"]
    argv += ["--n-samples", "2", "--max-sequences", "2", "--batch-size", "2"]
    proc = _python(argv, env=ASCII_LOCALE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert b"\\xb1" in proc.stdout and b"\r" not in proc.stderr
    assert (run / "eval").is_dir()


def test_printed_commands_quote_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A command printed for the user to paste (continue, evaluate) keeps a path with spaces one argument."""
    import shlex

    from examples.srvp import evaluate as ev

    run = tmp_path / "my runs" / "a b"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--max-steps", "1"]) == 0
    out = capsys.readouterr().out
    resume = next(line for line in out.splitlines() if "continue with: " in line).split("continue with: ")[1]
    assert shlex.split(resume) == ["python", "-m", "examples.srvp.train", "--resume", str(run)]
    evaluate = next(line for line in out.splitlines() if line.startswith("evaluate: "))
    assert shlex.split(evaluate.removeprefix("evaluate: "))[:4] == ["python", "-m", "examples.srvp.evaluate", str(run)]
    assert train.evaluate_command(run, "kth") == f"python -m examples.srvp.evaluate '{run}'"
    with pytest.raises(FileNotFoundError, match=r"kth-test-set '.*/my runs/a b' --seq-len 40`"):
        ev.load_test_clips("kth", run, nt_gen=40)


def test_path_options_expand_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--run-dir=~/runs/a`` (the shell leaves a ``~`` after ``=``) is the home folder's, not ``./~/runs/a``."""
    from examples.srvp import data, demo, official, quickstart
    from examples.srvp import evaluate as ev

    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    assert train.main(["--preset", "tiny", "--run-dir=~/runs/a", "--max-steps", "1"]) == 0
    assert (home / "runs" / "a" / "config.json").is_file() and not (cwd / "~").exists()
    assert train.main(["--resume=~/runs/a", "--max-steps", "2"]) == 0
    assert f"run directory: {home / 'runs' / 'a'} (step 2" in capsys.readouterr().out
    args = ev.build_parser().parse_args(["~/r", "--test-set", "~/t.npz", "--i3d-weights", "~/i3d.pt"])
    assert (args.run_dir, args.test_set, args.i3d_weights) == (home / "r", home / "t.npz", home / "i3d.pt")
    args = demo.build_parser().parse_args(["~/r", "--test-set", "~/t.npz", "--out", "~/gifs"])
    assert (args.run_dir, args.test_set, args.out) == (home / "r", home / "t.npz", home / "gifs")
    assert quickstart.build_parser().parse_args(["--run-dir", "~/q"]).run_dir == home / "q"
    args = data.build_parser().parse_args(["smmnist-test-set", "--mnist-dir", "~/mnist", "--out", "~/data/"])
    assert (args.mnist_dir, args.out) == (f"{home}/mnist", f"{home}/data/")
    assert data.build_parser().parse_args(["convert-kth", "~/raw", "~/kth"]).out_dir == home / "kth"
    assert official.main(["verify", "~/fixture"]) == 2
    assert str(home / "fixture") in _one_line_error(capsys)


def test_training_progress_in_a_log_is_plain_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Written to a file or a pipe (a batch job's log), the progress is a line now and then, not a redraw per
    step; at the end a line says where the run stopped."""
    assert train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--max-steps", "3"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines()[-1].startswith("3/"), err


def test_progress_lines_and_the_terminal_bar(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import sys

    from tqdm import tqdm

    from examples.srvp._cli import LineProgress, progress_bar

    bar = progress_bar(total=10, unit="seq", desc="evaluate")
    assert isinstance(bar, LineProgress)
    bar.update(4)
    bar.close()
    assert capsys.readouterr().err.startswith("evaluate: 4/10 seq (40%, ")
    bar = LineProgress(total=None, initial=2, unit="video", interval=0.0)
    bar.set_postfix(loss="1.5")
    bar.update(1)
    bar.update(2)
    bar.write("a message")
    bar.close()  # (everything reported already)
    out, err = capsys.readouterr()
    assert out == "a message\n"
    assert [line.split(" (")[0] for line in err.splitlines()] == ["3 video", "5 video"]
    assert err.splitlines()[0].endswith(" loss=1.5")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress_bar(total=3, initial=1, unit="it", smoothing=0.05)
    assert isinstance(bar, tqdm)  # an interactive terminal keeps tqdm's bar
    bar.update(1)
    bar.close()
    assert "\r" in sys.stderr.getvalue()


def test_a_notebook_gets_a_live_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Notebook-review finding: a Jupyter kernel's stderr is no terminal, so a training or an evaluation showed a
    line a minute (a 28 s training: nothing, then one line at the end), where tqdm draws in place in a notebook."""
    import io
    import sys
    import types

    from tqdm import tqdm

    from examples.srvp._cli import LineProgress, in_notebook, progress_bar

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not in_notebook() and isinstance(progress_bar(total=3), LineProgress)

    class ZMQInteractiveShell:  # (IPython's Jupyter shell, by name; Colab's subclasses it)
        pass

    class ColabShell(ZMQInteractiveShell):
        pass

    for shell in (ZMQInteractiveShell(), ColabShell()):
        monkeypatch.setattr(sys, "stderr", io.StringIO())  # (each shell's bar checked on its own)
        monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda s=shell: s))
        monkeypatch.setitem(sys.modules, "ipywidgets", None)  # (without it: tqdm's text bar)
        assert in_notebook()
        bar = progress_bar(total=3, unit="it")
        assert isinstance(bar, tqdm)
        bar.update(2)
        bar.close()
        assert "\r" in sys.stderr.getvalue()
    # A terminal IPython (not a kernel) and an IPython without a shell keep the plain lines of a log.
    for shell in (types.SimpleNamespace(), None):
        monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda s=shell: s))
        assert not in_notebook() and isinstance(progress_bar(total=3), LineProgress)


def test_train_works_without_the_source_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed as .pyc files only (a frozen application), the flags' help texts cannot be read from the
    source: the flags still work, without help."""
    import inspect

    from examples.srvp.config import ModelConfig, field_comments

    def no_source(obj: object) -> str:
        raise OSError("could not get source code")

    assert "state_size" in field_comments(ModelConfig)
    monkeypatch.setattr(inspect, "getsource", no_source)
    assert field_comments(ModelConfig) == {}
    args = train.build_parser().parse_args(["--preset", "tiny", "--run-dir", "r", "--state-size", "3"])
    assert train.config_from_args(args).model.state_size == 3


def test_out_of_memory_while_reading_a_file_is_not_called_a_damaged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The readers turn any error of a damaged file into a ValueError, and evaluate skips LPIPS on a ValueError
    from weights it found itself: running out of memory must stay a MemoryError, not drop a metric silently."""
    from latentdyn.video import lpips, moving_mnist

    weights = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(2)}, weights)
    test_set = tmp_path / "t.npz"
    np.savez(test_set, a=np.zeros(2))

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(MemoryError):
        lpips._read_state_dict(weights)
    with pytest.raises(MemoryError):
        read_torch_file(weights, "--checkpoint")
    monkeypatch.setattr(np, "load", out_of_memory)
    with pytest.raises(MemoryError):
        moving_mnist.load_test_set(test_set)


def test_a_data_error_with_dataloader_workers_ends_them_and_releases_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With DataLoader workers, a data error left them alive (the traceback held their iterator) and they ignore
    SIGTERM, so the interpreter's exit, which terminates and joins them, hung for good; and the forked workers
    shared the run directory's lock, so a resume in the same process was refused as "another training"."""
    import multiprocessing

    from examples.srvp.datasets import BatchStream

    damaged = _damaged_at_step_3(BatchStream.__getitem__)

    run = tmp_path / "run"
    argv = ["--preset", "tiny", "--checkpoint-interval", "100", "--val-interval", "100", "--threads", "1"]
    with monkeypatch.context() as m:
        m.setattr(BatchStream, "__getitem__", damaged)
        assert train.main([*argv, "--n-workers", "2", "--run-dir", str(run)]) == 2
    assert multiprocessing.active_children() == []  # the workers ended with the run
    assert train.main(["--resume", str(run)]) == 0  # the lock was released


def test_crc_check_skips_members_written_without_a_crc(tmp_path: Path) -> None:
    """torch.serialization.set_crc32_options(False) writes members whose CRC-32 is 0: torch.load reads them, and
    the CRC check must not call such a file corrupted."""
    set_crc32 = getattr(torch.serialization, "set_crc32_options", None)
    if set_crc32 is None:
        pytest.skip("torch.serialization.set_crc32_options needs a newer torch")
    path = tmp_path / "x.pt"
    set_crc32(False)
    try:
        torch.save({"w": torch.arange(100.0)}, path)
    finally:
        set_crc32(True)
    assert torch.equal(read_torch_file(path, "--x")["w"], torch.arange(100.0))


def test_a_home_folder_of_no_user_is_an_option_error(capsys: pytest.CaptureFixture[str]) -> None:
    """'~nosuchuser/run' made Path.expanduser raise a RuntimeError, a traceback; argparse now names the option."""
    with pytest.raises(SystemExit) as e:
        train.main(["--preset", "tiny", "--run-dir", "~no-such-user-of-latentdyn/run"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --run-dir: cannot expand ~ in '~no-such-user-of-latentdyn/run'" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- --version
@pytest.mark.parametrize("tool", ["train", "evaluate", "quickstart", "demo", "official", "data"])
def test_every_cli_prints_its_versions(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--version`` prints latentdyn's, torch's and Python's versions on one line and exits 0, before anything
    else (no run directory needed, nothing written)."""
    import importlib
    import platform

    import latentdyn

    main = importlib.import_module(f"examples.srvp.{tool}").main
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    expected = (
        f"python -m examples.srvp.{tool}: latentdyn {latentdyn.__version__}, torch {torch.__version__}, "
        f"Python {platform.python_version()}\n"
    )
    assert out == expected


# ----------------------------------------------------------------------- file-system review (lock, logger, steps)
def test_a_lock_whose_pid_cannot_be_written_is_still_held_and_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk the pid write after the flock failed, and the locked descriptor leaked: a retry in the same
    process (a notebook) was refused as "another training". The lock is held and released all the same."""
    import errno
    import os

    pytest.importorskip("fcntl")

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    from examples.srvp.checkpoint import FileLock

    lock = FileLock()
    with monkeypatch.context() as m:
        m.setattr(os, "ftruncate", full)
        train._lock_run_dir(lock, tmp_path, "--run-dir")
    with pytest.raises(ValueError, match=r"another training .* is running"):
        train._lock_run_dir(FileLock(), tmp_path, "--run-dir")  # held
    lock.release()
    again = FileLock()
    train._lock_run_dir(again, tmp_path, "--run-dir")  # released
    again.release()


def test_a_failed_training_call_closes_its_logger(
    tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logger (its TensorBoard writer thread) was closed only when train() returned: one leaked per failed
    call in a notebook or a sweep."""
    closed: list[bool] = []
    monkeypatch.setattr(train._Logger, "close", lambda self: closed.append(True))

    def failing(*args: object, **kwargs: object) -> float:
        raise RuntimeError("validation failed")

    monkeypatch.setattr(train, "validate", failing)
    with pytest.raises(RuntimeError, match="validation failed"):
        _quiet_train(dataclasses.replace(_tiny(), val_interval=1), tmp_path / "run", max_steps=2)
    assert closed == [True]


def test_a_resume_already_past_max_steps_is_not_done(tmp_path: Path, tiny_run: Path) -> None:
    """--resume with --max-steps below the run's step trained nothing and reported "done" (exit 0), which a
    requeue loop reads as a finished run. It is a "max steps" stop, and nothing is rewritten."""
    run = _copy(tiny_run, tmp_path)
    files = {p: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    log = (run / "train_log.jsonl").read_text()
    messages: list[str] = []
    result = train.train(_tiny(), run, resume=True, max_steps=2, progress=False, log=messages.append)
    assert (result.step, result.stopped) == (4, "max steps")
    assert any("stopped at step 4 of" in m and "(--max-steps)" in m for m in messages), messages
    assert {p: p.read_bytes() for p in (run / "checkpoints").iterdir()} == files
    assert (run / "train_log.jsonl").read_text() == log


def test_a_training_removes_what_a_killed_one_left_half_written(tmp_path: Path, tiny_run: Path) -> None:
    """A kill during a checkpoint's write (out of memory, a scheduler's SIGKILL) left a hidden temporary file as
    large as a checkpoint that nothing removed; the next training of the run, once it holds the lock, does."""
    run = _copy(tiny_run, tmp_path)
    stale = [
        run / "checkpoints" / ".last.pt.abcd_f12.tmp",
        run / "checkpoints" / ".best.pt.0123abcd.tmp",
        run / ".train_log.jsonl.zz9_zz9z.tmp",
    ]
    kept = [run / "checkpoints" / "notes.last.pt.tmp", run / "checkpoints" / ".last.pt.user-copy.tmp"]
    for path in [*stale, *kept]:
        path.write_bytes(b"half-written")
    _quiet_train(_tiny(), run, resume=True, max_steps=5)
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)


def test_messages_that_cannot_be_written_do_not_end_the_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Standard output on a full disk (a cluster's slurm-*.out under a quota) or a pipe closed by ``head`` killed
    the training at its first validation message; the messages stop, with one warning, and the training goes on."""
    import errno

    calls: list[str] = []

    def broken(message: str) -> None:
        calls.append(message)
        raise OSError(errno.ENOSPC, "No space left on device")

    cfg = dataclasses.replace(_tiny(), val_interval=2, checkpoint_interval=2)
    result = train.train(cfg, tmp_path / "run", progress=False, log=broken)
    assert (result.step, result.stopped) == (cfg.n_iter, "done") and len(calls) == 1
    err = capsys.readouterr().err
    assert err.count("warning: progress messages can no longer be written (No space left on device)") == 1
    assert train.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == cfg.n_iter


# ------------------------------------------------------------- pinned by a hand-run mutation test (session 11)
@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="POSIX FIFOs")
def test_a_lock_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A FIFO named .lock (in a copied or shared run directory) is refused, never locked and written to."""
    import os

    from examples.srvp.checkpoint import FileLock

    fifo = tmp_path / ".lock"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"^--resume: .*\.lock is not a regular file; remove it$"):
        FileLock().acquire(fifo, "--resume", busy="{who}")


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="POSIX FIFOs")
def test_a_training_log_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    """Opening a FIFO for writing waits for a reader: a FIFO named train_log.jsonl hung the training for good
    before the regular-file check could refuse it."""
    import os
    import threading

    from examples.srvp.checkpoint import open_own_file

    fifo = tmp_path / "train_log.jsonl"
    os.mkfifo(fifo)
    outcome: list[BaseException | int] = []

    def open_log() -> None:
        try:
            outcome.append(open_own_file(fifo, os.O_WRONLY | os.O_APPEND, "--run-dir"))
        except BaseException as e:
            outcome.append(e)

    opener = threading.Thread(target=open_log, daemon=True)
    opener.start()
    opener.join(timeout=10)
    if opener.is_alive():  # the old behaviour: release the blocked open with a reader, then fail
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        opener.join(timeout=10)
        pytest.fail("open_own_file waited for a reader of the FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError), outcome
    assert str(outcome[0]) == f"--run-dir: {fifo} is not a regular file; remove it"


def test_a_lock_file_holds_only_its_holders_pid(tmp_path: Path) -> None:
    """A .lock left by a holder with a longer pid is truncated: otherwise trailing digits stay and a refusal could
    not name the holder."""
    import os

    from examples.srvp.checkpoint import FileLock

    path = tmp_path / ".lock"
    path.write_text("1234567890\n")
    lock = FileLock()
    lock.acquire(path, "--resume", busy="{who}")
    try:
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_a_torch_file_without_a_model_entry_is_not_a_checkpoint(tmp_path: Path) -> None:
    """E.g. an evaluation's .partial.pt copied as last.pt: a one-line error, not a KeyError later."""
    from examples.srvp.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"fingerprint": {}, "done": 3})
    with pytest.raises(ValueError, match=r"is not a latentdyn checkpoint \(no 'model' entry\)"):
        load_checkpoint(path)


def test_infinite_weights_are_not_finite(tmp_path: Path) -> None:
    """+inf and -inf are refused like NaN (every other test plants NaN)."""
    from examples.srvp.checkpoint import check_finite

    for bad in (float("inf"), float("-inf")):
        with pytest.raises(ValueError, match=r"holds weights that are not finite .* in 1 tensors: w\)"):
            state = {"w": torch.tensor([1.0, bad]), "n": torch.tensor([3])}
            check_finite(state, tmp_path / "x.pt", option="checkpoint")


def test_a_run_made_by_another_command_while_the_data_was_read_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `train --run-dir D` started together both pass the first check; the one that takes the lock second
    finds the other's config.json and refuses instead of replacing that run."""
    run = tmp_path / "run"
    real = train.make_data

    def make_data_and_race(cfg: Any, **options: Any) -> Any:  # another command creates the run meanwhile
        out = real(cfg, **options)
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text('{"other": 1}')
        return out

    monkeypatch.setattr(train, "make_data", make_data_and_race)
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--max-steps", "1"]) == 2
    assert (run / "config.json").read_text() == '{"other": 1}' and not (run / "checkpoints").exists()


# ------------------------------------------------------------------------- paths no other test took (coverage)
def test_a_truncated_checkpoint_of_the_legacy_format_is_called_truncated_or_corrupted(tmp_path: Path) -> None:
    """torch's legacy (non-zip) format has no CRCs: a copy cut short fails the unpickler (EOFError here), which is
    reported as a damaged file naming its size, not as a traceback."""
    path = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.arange(50.0)}}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError) as e:
        read_torch_file(path, "checkpoint")
    assert str(e.value).startswith(
        f"checkpoint: cannot read {path} (40 bytes): not a torch file, or a truncated or corrupted one (EOFError"
    )
    assert "EOFError: EOFError" not in str(e.value)  # (an error without a message is named once)
    assert not isinstance(e.value, UnsafeFileError)


def test_a_checkpoint_whose_zip_member_cannot_be_opened_is_a_one_line_error(tmp_path: Path) -> None:
    """A damaged zip directory that names a compression method zipfile does not know: NotImplementedError from
    the CRC check, reported as a corrupted file."""
    import struct

    path = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.ones(3)}}, path)
    data = bytearray(path.read_bytes())
    entry = data.find(b"PK\x01\x02")  # the first central-directory entry; its compression method is at byte 10
    data[entry + 10 : entry + 12] = struct.pack("<H", 99)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as e:
        read_torch_file(path, "--resume")
    assert str(e.value) == (
        f"--resume: cannot read {path} ({len(data)} bytes): truncated or corrupted (That compression method is not "
        "supported)"
    )


def test_read_torch_file_names_the_option_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^state_file: no file at .*nothing\.pt$"):
        read_torch_file(tmp_path / "nothing.pt", "state_file")
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^checkpoint: no file at .*folder\.pt$"):
        read_torch_file(tmp_path / "folder.pt", "checkpoint")


def test_a_file_system_without_locks_trains_unlocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """flock failing with ENOLCK (an NFS mount without a lock daemon) is as Windows without fcntl: no lock, no
    error; a held lock (EWOULDBLOCK) is still a refusal."""
    import errno

    fcntl = pytest.importorskip("fcntl")
    from examples.srvp.checkpoint import FileLock

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    lock = FileLock()
    with monkeypatch.context() as m:
        m.setattr(fcntl, "flock", no_locks)
        lock.acquire(tmp_path / ".lock", "--run-dir", busy="held by {who}")
    lock.release()  # (nothing held: nothing to unlock)
    assert lock._fd is None

    def held(fd: int, operation: int) -> None:
        raise OSError(errno.EWOULDBLOCK, "Resource temporarily unavailable")

    monkeypatch.setattr(fcntl, "flock", held)
    with pytest.raises(ValueError, match=r"^--run-dir: held by (process \d+|another process)$"):
        FileLock().acquire(tmp_path / ".lock", "--run-dir", busy="held by {who}")


def test_os_error_message_is_one_line_without_a_file_name() -> None:
    from examples.srvp.checkpoint import os_error_message

    assert (
        os_error_message(OSError(28, "No space left on device", "/r/last.pt")) == "No space left on device: /r/last.pt"
    )
    assert os_error_message(OSError("the disk\n  went away")) == "the disk went away"
    assert os_error_message(BlockingIOError()) == "BlockingIOError"


@pytest.mark.parametrize("damage", ["missing", "unexpected", "not-a-dict", "not-a-tensor"])
def test_a_checkpoint_whose_state_dict_does_not_fit_is_a_one_line_error(
    tmp_path: Path, tiny_run: Path, damage: str
) -> None:
    """Keys missing or extra, a 'model' entry that is no state dict, a weight that is a number: each is a
    ValueError naming the file (never a KeyError or a load_state_dict traceback)."""
    from examples.srvp.checkpoint import load_model_and_step

    run = _copy(tiny_run, tmp_path)
    last = run / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    del payload["config"]  # as a hand-made checkpoint: only its state dict says what it holds
    state = payload["model"]
    names = sorted(state)
    if damage == "missing":
        for name in names[:4]:
            del state[name]
        expected = rf"does not fit the model of config\.json: 4 missing keys \({', '.join(names[:3])}, \.\.\.\)$"
    elif damage == "unexpected":
        state["extra.weight"] = torch.zeros(2)
        expected = r"does not fit the model of config\.json: 1 unexpected keys \(extra\.weight\)$"
    elif damage == "not-a-dict":
        payload["model"] = [1, 2]
        expected = r"holds no state dict under 'model' \(got list\)$"
    else:
        weight = next(k for k in names if k.endswith(".weight"))
        state[weight] = 3
        expected = rf"does not fit the model of config\.json: .*{weight}"
    torch.save(payload, last)
    with pytest.raises(ValueError, match=rf"^checkpoint: {last} {expected}") as e:
        load_model_and_step(run, "last")
    assert "\n" not in str(e.value)


def test_a_config_json_without_a_model_section_or_with_another_kind_of_one_is_refused(
    tmp_path: Path, tiny_run: Path
) -> None:
    from examples.srvp.checkpoint import load_model_and_step, read_run_config

    run = _copy(tiny_run, tmp_path)
    config_file = run / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({"train": config["train"]}))
    with pytest.raises(ValueError, match=rf"^run_dir: {config_file} has no 'model' section$"):
        read_run_config(run)
    config_file.write_text(json.dumps([config]))
    with pytest.raises(ValueError, match=rf"^run_dir: {config_file} has no 'model' section$"):
        read_run_config(run)
    config_file.write_text(json.dumps({**config, "model": [config["model"]]}))
    with pytest.raises(
        ValueError, match=rf"^run_dir: {config_file}: model: expected a dict for ModelConfig, got list$"
    ):
        load_model_and_step(run, "last")


# ------------------------------------------------------------------- evaluate: where the test data comes from
def _kth_test_file(folder: Path, n_clips: int, n_frames: int) -> Path:
    """A KTH test file as ``data.py kth-test-set`` names it: n_clips grey 64x64 clips of n_frames frames."""
    folder.mkdir(parents=True, exist_ok=True)
    sequences = np.random.default_rng(0).integers(0, 256, (n_clips, n_frames, 64, 64), dtype=np.uint8)
    path = folder / f"svg_test_set_{n_frames}.npz"
    np.savez(path, sequences=sequences, persons=np.arange(n_clips), actions=np.array(["walking"] * n_clips))
    return path


def test_evaluate_takes_the_test_data_of_a_kth_run_from_its_data_dir_and_asks_for_the_smmnist_file(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --test-set: an SM-MNIST run has no test file to fall back on (the message names the command that
    makes one); a KTH run reads the test file in its data_dir, at the dataset's default length (40, the official
    README's); a Human3.6M test set is looked for at --subsampling when it is given."""
    from examples.srvp import evaluate as ev

    assert ev.main([str(tiny_run), "--no-lpips", "--out", str(tmp_path / "out")]) == 2
    assert _one_line_error(capsys) == (
        "error: --test-set: required for the 'smmnist' dataset (make it with: python -m examples.srvp.data "
        "smmnist-test-set --mnist-dir embedded --out data/, then pass --test-set data/smmnist_test_2digits_64.npz)"
    )
    run = _copy(tiny_run, tmp_path)
    shutil.rmtree(run / "eval", ignore_errors=True)  # what other tests evaluated of the tiny run
    config = json.loads((run / "config.json").read_text())
    kth_data = tmp_path / "kth data"
    kth_data.mkdir()
    config["train"].update(dataset="kth", data_dir=str(kth_data))
    (run / "config.json").write_text(json.dumps(config))
    assert ev.main([str(run), "--no-lpips"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"error: --test-set: no KTH test set {kth_data / 'svg_test_set_40.npz'}; make it with ")
    assert f"`python -m examples.srvp.data kth-test-set '{kth_data}' --seq-len 40`" in line

    h36m = tmp_path / "h36m"
    h36m.mkdir()
    argv = [str(run), "--dataset", "human36m", "--test-set", str(h36m), "--nt-gen", "6", "--no-lpips"]
    assert ev.main([*argv, "--subsampling", "4"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"error: --test-set: no Human3.6M test set {h36m / 'test_set_6_4'}; make it with ")
    assert line.endswith(f"human36m-test-set {h36m} --seq-len 6 --subsampling 4`")
    assert not (run / "eval").exists()


def test_a_kth_test_file_given_by_name_sets_the_clip_length(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--test-set DIR/svg_test_set_6.npz`` evaluates clips of 6 frames without --nt-gen (the dataset's default,
    40, is for the folder form); --max-sequences reads the first clips only; a file of no clip is an error."""
    from examples.srvp import evaluate as ev

    file = _kth_test_file(tmp_path / "kth", n_clips=3, n_frames=6)
    out = tmp_path / "out"
    argv = [str(tiny_run), "--dataset", "kth", "--test-set", str(file), "--no-lpips", "--n-samples", "1"]
    assert ev.main([*argv, "--out", str(out), "--name", "named", "--max-sequences", "2"]) == 0
    result = json.loads((out / "named.json").read_text())
    assert result["protocol"]["nt_gen"] == 6 and result["n_sequences"] == 2
    assert result["data"] == {"dataset": "kth", "test_set": str(file)}
    capsys.readouterr()
    with np.load(file) as data:
        first_two = torch.from_numpy(data["sequences"][:2]).transpose(0, 1).unsqueeze(2)  # (T, N, 1, H, W)
    assert torch.equal(ev.load_test_clips("kth", file, nt_gen=40, max_sequences=2), first_two)
    with pytest.raises(ValueError, match=r"^--dataset: expected one of \('smmnist', .*got 'mnist'$"):
        ev.load_test_clips("mnist", file, nt_gen=6)

    empty = _kth_test_file(tmp_path / "empty", n_clips=0, n_frames=6)
    argv = [str(tiny_run), "--dataset", "kth", "--test-set", str(empty), "--no-lpips", "--out", str(out)]
    assert ev.main(argv) == 2
    assert _one_line_error(capsys) == f"error: --test-set: {empty} holds no test clips"


def test_a_human36m_test_folder_given_by_name_is_read_whole_and_its_colour_channels_named(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--test-set DIR/test_set_6_2`` names the clip length (6) and subsampling (2) of a Human3.6M test set; its
    RGB clips do not suit the grey tiny model, which the message says (not a shape of internal names)."""
    from examples.srvp import evaluate as ev

    folder = tmp_path / "h36m" / "test_set_6_2"
    folder.mkdir(parents=True)
    for i in range(2):  # (6 - 1) * 2 + 1 = 11 raw frames make a clip of 6 frames, one in 2
        np.savez(folder / f"test_{i}.npz", image=np.zeros((11, 64, 64, 3), np.uint8))
    argv = [str(tiny_run), "--dataset", "human36m", "--test-set", str(folder), "--no-lpips", "--out", str(tmp_path)]
    assert ev.main(argv) == 2
    assert _one_line_error(capsys) == (
        "error: --test-set: frames are [3, 64, 64] (C, H, W), the model expects [1, 64, 64]; the run was trained on "
        "the 'smmnist' dataset: drop --dataset human36m"
    )


def test_evaluate_names_nt_gen_beyond_the_clips_and_sub_steps_of_a_discrete_time_model(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.srvp import evaluate as ev
    from examples.srvp.checkpoint import save_run
    from examples.srvp.model import SRVP

    with np.load(test_set) as data:
        n_frames = data["sequences"].shape[0]  # time-major
    argv = ["--test-set", str(test_set), "--no-lpips", "--out", str(tmp_path / "out")]
    assert ev.main([str(tiny_run), *argv, "--nt-gen", str(n_frames + 2)]) == 2
    assert _one_line_error(capsys) == (
        f"error: --nt-gen: the test clips have {n_frames} frames, fewer than {n_frames + 2}"
    )
    cfg = _tiny()
    mlp = save_run(tmp_path / "mlp", SRVP(dataclasses.replace(cfg.model, transition="mlp")), cfg)
    assert ev.main([str(mlp), *argv, "--n-substeps", "2"]) == 2
    assert _one_line_error(capsys) == (
        "error: --n-substeps: this model is discrete-time (one step per frame), expected 1, got 2"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lpips-alexnet", "{missing}"], "error: --lpips-alexnet: AlexNet ImageNet weights file '{missing}'"),
        (["--no-lpips", "--fvd", "--i3d-weights", "{missing}"], "error: --i3d-weights: I3D Kinetics-400 weights "),
    ],
)
def test_metric_weights_named_on_the_command_line_must_exist(
    tmp_path: Path,
    tiny_run: Path,
    test_set: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    message: str,
) -> None:
    """A weights file the user named that is missing is an error before anything is computed (weights found by
    no name only skip their metric)."""
    from examples.srvp import evaluate as ev

    missing = str(tmp_path / "nowhere.pth")
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: pytest.fail("evaluated despite a missing weights file"))
    out = tmp_path / "out"
    argv = [str(tiny_run), "--test-set", str(test_set), "--out", str(out)]
    assert ev.main([*argv, *(f.format(missing=missing) for f in flags)]) == 2
    line = _one_line_error(capsys)
    assert line.startswith(message.format(missing=missing)) and missing in line
    assert [p.name for p in out.iterdir() if not p.name.endswith(".lock")] == []


def test_ctrl_c_while_the_results_are_written_keeps_the_progress_for_the_same_command(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after the evaluation, while its files are written: status 130, a line that says which files are
    complete, and the progress file stays, from which the same command writes the results without sampling."""
    from examples.srvp import _eval_outputs
    from examples.srvp import evaluate as ev
    from examples.srvp.model import SRVP

    out = tmp_path / "out"
    argv = [str(tiny_run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "2", "--max-sequences", "3"]
    argv += ["--out", str(out), "--name", "cut"]

    def ctrl_c(*args: object) -> None:  # the plot is written after the JSON and the per-sequence scores
        raise KeyboardInterrupt

    monkeypatch.setattr(_eval_outputs, "_plot", ctrl_c)
    assert _no_escape(ev.main, argv) == 130
    err = capsys.readouterr().err
    state = out / "cut.partial.pt"
    assert err.rstrip("\n").splitlines()[-1] == (
        f"interrupted while writing the results: those already in {out} named cut* are complete (each file is "
        f"written whole), the others missing; the same command writes them again from {state}: "
        f"python -m examples.srvp.evaluate {shlex.join(argv)}"
    )
    assert state.is_file() and (out / "cut.json").is_file() and not (out / "cut_curves.png").exists()
    written = json.loads((out / "cut.json").read_text())
    monkeypatch.undo()
    calls = _stop_at_call(monkeypatch, SRVP, 0, lambda: None)
    assert ev.main(argv) == 0
    assert calls == []  # nothing sampled again: the saved progress holds every sequence
    assert (out / "cut_curves.png").is_file() and not state.exists()
    assert json.loads((out / "cut.json").read_text())["metrics"] == written["metrics"]


def test_evaluate_removes_what_a_killed_evaluation_left_half_written(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review finding: an evaluation killed while it wrote the sample GIF or an official .npz left its hidden
    temporary file (compressed samples: large), which the same command, run again, never removed (it cleaned the
    JSON's, the progress', the per-sequence scores' and the plot's only). Every output's are removed now, and the
    list they come from is that of the files written."""
    from examples.srvp import _eval_outputs
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)
    eval_dir, name = run / "eval", "cut"
    official = eval_dir / f"{name}_official"
    official.mkdir(parents=True)
    stale = [eval_dir / f".{name}{suffix}.ab12cd34.tmp" for suffix in (".json", ".partial.pt", "_samples.gif")]
    stale += [eval_dir / f".{name}_curves.png.zz9_zz9z.tmp.png", eval_dir / f".{name}_per_sequence.npz.0a1b2c3d.tmp"]
    stale += [official / f".{file}.npz.ab12cd34.tmp" for file in ("results", "random_5", "cond_rec", "lpips_worst")]
    kept = [eval_dir / f".other{name}_samples.gif.ab12cd34.tmp", official / ".notes.txt.ab12cd34.tmp"]
    for path in [*stale, *kept]:
        path.write_bytes(b"half-written")
    argv = [str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "2", "--max-sequences", "2"]
    assert ev.main([*argv, "--name", name, "--save-official-files"]) == 0
    capsys.readouterr()
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)
    # Every file the evaluation wrote is one output_files lists (so its temporaries are cleaned up after).
    written = {p for p in eval_dir.rglob("*") if p.is_file() and p not in kept and not p.name.endswith(".lock")}
    assert written and written <= set(_eval_outputs.output_files(eval_dir, name))
    assert {p.stem for p in official.iterdir() if p not in kept} == set(_eval_outputs.OFFICIAL_FILES) - {
        f"random_{i}"
        for i in range(3, 6)  # (2 samples: random_1 and random_2)
    } - {"lpips_best", "lpips_worst"}


def test_evaluate_says_how_to_continue_and_names_progress_of_another_step_of_its_checkpoint(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: an evaluation of a run still training, stopped by Ctrl-C, said that the same command
    continues it; once the training wrote a newer last.pt, the same command (whose default name holds the step)
    started a new evaluation, silently, and the old progress stayed for good. The interruption now prints the
    command that continues (without --restart, which would discard the progress), and an evaluation that starts
    anew names the progress of another step of its checkpoint, and how to delete it."""
    from examples.srvp import evaluate as ev
    from examples.srvp.checkpoint import FileLock
    from examples.srvp.model import SRVP

    run = _copy(tiny_run, tmp_path)  # last.pt of step 4
    argv = [str(run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "2", "--max-sequences", "4"]
    argv += ["--batch-size", "2", "--save-every", "0", "--checkpoint", "last"]

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    _stop_at_call(monkeypatch, SRVP, 2, ctrl_c)  # in the second batch
    assert _no_escape(ev.main, [*argv, "--restart"]) == 130  # (--restart: no progress yet to discard)
    old = run / "eval" / "test_last_step4_n2_t8_dt1.partial.pt"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted after 2 of 4 test sequences: their results are saved in {old}, and the same command without "
        f"--restart continues from there: python -m examples.srvp.evaluate {shlex.join(argv)}"
    )
    monkeypatch.undo()
    _quiet_train(_tiny(), run, resume=True, max_steps=5)  # the training goes on: last.pt of step 5

    other = FileLock()  # an evaluation of step 4 still running: its progress is not named
    lock_file = run / "eval" / f".{old.name.removesuffix('.partial.pt')}.lock"
    other.acquire(lock_file, "test", busy="")
    held_by = lock_file.read_bytes()
    try:
        assert ev._progress_of_other_steps(run / "eval", "test_last_step5_n2_t8_dt1", "test_last", "_n2_t8_dt1") == []
        assert lock_file.read_bytes() == held_by  # (looked at, not written: it still names its holder)
    finally:
        other.release()
    before = lock_file.stat().st_mtime_ns
    assert len(ev._progress_of_other_steps(run / "eval", "test_last_step5_n2_t8_dt1", "test_last", "_n2_t8_dt1")) == 1
    assert lock_file.stat().st_mtime_ns == before and lock_file.read_bytes() == held_by  # (a free lock: not taken)

    shared = tmp_path / "shared"  # an --out shared by runs: another run's progress of that name is not named
    shared.mkdir()
    (shared / old.name).write_bytes(old.read_bytes())
    assert ev.main([*argv, "--out", str(shared)]) == 0
    assert "note: " not in capsys.readouterr().err

    assert ev.main(argv) == 0
    err = capsys.readouterr().err
    note = next(line for line in err.splitlines() if line.startswith("note: "))
    assert note == (
        f"note: {old} holds an unfinished evaluation of another step of {run / 'checkpoints' / 'last.pt'} (step 4), "
        "of the same test set, number of samples, frames and sub-steps: this one, of its step 5, starts anew under "
        "its own name. That "
        "progress continues only from the weights it was made from, which last.pt no longer holds; if you have no "
        f"copy of them, delete it: rm {shlex.quote(str(old))}"
    )
    assert old.is_file() and (run / "eval" / "test_last_step5_n2_t8_dt1.json").is_file()  # (only a note)
    assert json.loads((run / "eval" / "test_last_step5_n2_t8_dt1.json").read_text())["checkpoint"]["step"] == 5
    assert ev.main([*argv, "--name", "mine"]) == 0  # (a name of one's own: no such note)
    assert "note: " not in capsys.readouterr().err


def test_an_error_before_any_progress_is_raised_and_the_results_name_is_released(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error with nothing saved yet is the error itself (its traceback), not a line about saved
    progress; the lock on the name is released, so that the next command (here with --restart, which has no
    progress to discard) runs."""
    from examples.srvp import evaluate as ev
    from examples.srvp.model import SRVP

    def broken() -> None:
        raise RuntimeError("a bug in a model of one's own")

    out = tmp_path / "out"
    argv = [str(tiny_run), "--test-set", str(test_set), "--no-lpips", "--n-samples", "1", "--max-sequences", "2"]
    argv += ["--out", str(out), "--name", "bug"]
    _stop_at_call(monkeypatch, SRVP, 1, broken)
    with pytest.raises(RuntimeError, match="a bug in a model of one's own"):
        ev.main(argv)
    assert not (out / "bug.partial.pt").exists()
    monkeypatch.undo()
    assert ev.main([*argv, "--restart"]) == 0
    assert json.loads((out / "bug.json").read_text())["throughput"]["resumed_at"] == []


def test_a_data_error_of_the_first_batch_is_blamed_on_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.srvp.datasets import check_stream, make_data

    cfg = _tiny()
    stream, _ = make_data(cfg)

    def damaged(self: object, step: int) -> None:
        raise ValueError("frame3.png: cannot decode image")

    monkeypatch.setattr(type(stream), "__getitem__", damaged)
    with pytest.raises(ValueError, match=r"^data_dir: frame3.png: cannot decode image$"):
        check_stream(stream, cfg)

    def named(self: object, step: int) -> None:
        raise ValueError("data_dir: no videos left")

    monkeypatch.setattr(type(stream), "__getitem__", named)
    with pytest.raises(ValueError, match=r"^data_dir: no videos left$"):  # not "data_dir: data_dir: ..."
        check_stream(stream, cfg)
    monkeypatch.setattr(type(stream), "__getitem__", lambda self, step: torch.zeros(6, 4, 1, 32, 32))
    with pytest.raises(ValueError, match=r"have \(C, H, W\) = \(1, 32, 32\), but the model reads \(1, 64, 64\)"):
        check_stream(stream, cfg)


def test_evaluate_refuses_a_name_that_is_not_a_file_name(
    tmp_path: Path, tiny_run: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--name a/b failed with the OS's 'No such file or directory' for eval/.a/b.lock, naming no option; '' was
    replaced by the default name; and x/../../y wrote RUN/y.json, outside eval/, once eval/x and eval/.x existed."""
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)
    for name in ("a/b", "x/../../y", "", ".hidden", "..", "a\\b"):
        assert ev.main([str(run), "--test-set", str(test_set), "--no-lpips", "--name", name]) == 2
        assert _one_line_error(capsys) == (
            "error: --name: expected a file name without a folder, not starting with '.' (the stem of eval/NAME.json), "
            f"got {name!r}"
        )
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in tiny_run.iterdir())


def test_evaluate_says_what_test_data_a_run_of_another_dataset_needs(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dataset kth on an SM-MNIST run without --test-set ended with a space and no hint; a folder given as the
    SM-MNIST test set was 'no such test-set file' without the option's name."""
    from examples.srvp import evaluate as ev

    assert ev.main([str(tiny_run), "--dataset", "kth", "--no-lpips", "--out", str(tmp_path / "out")]) == 2
    assert _one_line_error(capsys) == (
        "error: --test-set: required for the 'kth' dataset (its test data: this run was trained on 'smmnist', so its "
        "data_dir is not that)"
    )
    assert ev.main([str(tiny_run), "--test-set", str(tmp_path), "--no-lpips", "--out", str(tmp_path / "out")]) == 2
    assert _one_line_error(capsys) == (
        f"error: --test-set: {tmp_path} is a folder; an SM-MNIST test set is an .npz file (made by python -m "
        "examples.srvp.data smmnist-test-set)"
    )


def test_evaluate_asks_a_folder_run_for_its_test_videos(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run trained on a folder of videos (or on KTH without a data_dir) was told that it had been trained on
    another dataset."""
    from examples.srvp import evaluate as ev

    run = _copy(tiny_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    for dataset, expected in (
        ("folder", "(a folder of test videos, or an .npz whose sequences are uint8 (T, N, H, W[, C]))"),
        ("kth", f"(its test data: {run / 'config.json'} names no data_dir)"),
    ):
        config["train"].update(dataset=dataset, data_dir="")
        (run / "config.json").write_text(json.dumps(config))
        assert ev.main([str(run), "--no-lpips", "--nt-gen", "6"]) == 2
        assert _one_line_error(capsys) == f"error: --test-set: required for the {dataset!r} dataset {expected}"


def _ascii_stream() -> Any:
    import io

    return io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict", write_through=True)


@pytest.mark.parametrize("cli", ["train", "evaluate", "official", "quickstart", "data", "demo"])
def test_main_called_from_python_gives_the_streams_their_error_handlers_back(
    cli: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook or a script that calls ``main(argv)`` keeps its own ``sys.stdout``/``sys.stderr`` error handler
    (the escape of unencodable characters is the command's own, while it runs)."""
    import importlib
    import sys

    out, err = _ascii_stream(), _ascii_stream()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    main = importlib.import_module(f"examples.srvp.{cli}").main
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert (out.errors, err.errors) == ("strict", "strict")
    assert b"latentdyn" in out.buffer.getvalue()


def test_robust_output_escapes_while_it_runs_and_only_then() -> None:
    import sys

    from examples.srvp._cli import robust_output

    stream = _ascii_stream()
    previous = sys.stdout
    sys.stdout = stream
    try:
        with robust_output():
            print("14.38 ± 0.12")
        with pytest.raises(UnicodeEncodeError):
            print("±")
    finally:
        sys.stdout = previous
    assert stream.buffer.getvalue() == b"14.38 \\xb1 0.12\n"


def test_evaluate_refuses_an_amp_the_runs_adaptive_solver_cannot_meet(
    tmp_path: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dopri5 run (rtol 1e-7) evaluated with --amp bf16: the solve under autocast is refused by the integrator
    once the evaluation has started; the message now comes first, and names what evaluate can change."""
    from examples.srvp import evaluate as ev

    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--integrator", "dopri5", "--max-steps", "1"]) == 0
    capsys.readouterr()
    argv = [str(run), "--test-set", str(test_set), "--n-samples", "2", "--no-lpips", "--max-sequences", "2"]
    assert ev.main([*argv, "--amp", "bf16"]) == 2
    assert _one_line_error(capsys) == (
        "error: --amp: the run's 'dopri5' solver has rtol 1e-07, below the resolution of bf16 autocast (eps "
        "0.0078125); evaluate it with --amp none"
    )
    assert not (run / "eval").exists()
    assert ev.main(argv) == 0
