"""The SRVP example used from Python (a notebook or a script) rather than through its command lines: loading a
trained run, its configuration and checkpoints, evaluating inside a training loop, and what a type checker sees."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch

from examples.srvp import evaluate as ev
from examples.srvp import train
from examples.srvp.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    load_model,
    load_model_and_step,
    read_run_config,
    read_train_config,
)
from examples.srvp.config import PRESETS, TrainConfig, config_from_dict
from examples.srvp.model import SRVP

ROOT = Path(__file__).resolve().parents[1]


def _tiny(**model_changes: object) -> TrainConfig:
    cfg = PRESETS["tiny"]()
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model_changes))


@pytest.fixture
def run(wide_run: Path) -> Path:
    """A tiny run whose model differs from ModelConfig's defaults (conv_width 8), after 4 steps (best.pt of step 3,
    last.pt of step 4: the tiny preset validates every 3 steps): tests/conftest.py's wide_run, shared with other
    test files, copied before a change."""
    return wide_run


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def test_read_train_config_gives_the_runs_model(run: Path) -> None:
    cfg = read_train_config(run)
    assert isinstance(cfg, TrainConfig)
    assert cfg == dataclasses.replace(_tiny(conv_width=8), max_steps=cfg.max_steps)  # (max_steps: the call's)
    assert cfg.model.conv_width == 8


def test_a_train_section_without_its_model_is_refused(run: Path, tmp_path: Path) -> None:
    """config.json keeps the model beside the training options: building a TrainConfig from the ``train``
    section alone gave the default model (conv_width 64 for a run of 8), without a word."""
    saved = read_run_config(run)
    with pytest.raises(ValueError, match=r"^TrainConfig: the 'model' section is missing \(a ModelConfig\)$"):
        config_from_dict(TrainConfig, saved["train"])
    config = run / "config.json"
    broken = json.loads(config.read_text())
    del broken["train"]
    other = tmp_path / "no_train"
    (other / "checkpoints").mkdir(parents=True)
    (other / "config.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"^run_dir: .*config\.json has no 'train' section$"):
        read_train_config(other)


def test_load_model_defaults_to_the_checkpoint_evaluate_scores(run: Path, tmp_path: Path) -> None:
    """As ``evaluate``: the last weights of a Moving MNIST run (the paper scores the final model), the best of a
    KTH or Human3.6M run. It loaded best.pt of every run, whatever the dataset."""
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == 3
    assert load_model_and_step(run)[1] == 4  # smmnist: last.pt
    assert load_model_and_step(run, "best")[1] == 3
    kth = _copy(run, tmp_path)
    saved = json.loads((kth / "config.json").read_text())
    saved["train"]["dataset"] = "kth"
    (kth / "config.json").write_text(json.dumps(saved))
    assert load_model_and_step(kth)[1] == 3  # kth: best.pt
    assert isinstance(load_model(kth), SRVP)


def test_checkpoint_path_names_what_is_missing(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^which: expected 'best' or 'last', got 'final'$"):
        checkpoint_path(run, "final")  # type: ignore[arg-type]
    imported = _copy(run, tmp_path)
    (imported / "checkpoints" / "last.pt").unlink()  # as a run of official convert: best.pt only
    with pytest.raises(FileNotFoundError, match=r"no checkpoint last\.pt in .*, only best\.pt .*: ask for 'best'$"):
        checkpoint_path(imported, "last")
    assert load_model_and_step(imported)[1] == 3  # the default takes the one it has
    (imported / "checkpoints" / "best.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"^run_dir: no checkpoint last\.pt in .*; train first"):
        checkpoint_path(imported, "last")
    with pytest.raises(FileNotFoundError, match=r"^run_dir: no checkpoint best\.pt or last\.pt in "):
        checkpoint_path(imported, "best")


def test_a_callers_log_gets_the_validation_messages_beside_the_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Soak-review finding: with the progress bar on (the default), the validation lines went to standard output
    through the bar, not to the ``log`` a caller gave (a sweep's log file lacked its validation scores)."""
    got: list[str] = []
    train.train(_tiny(), tmp_path / "run", max_steps=3, progress=True, log=got.append)
    assert any(m.startswith("step 3: validation best-of-2 PSNR") for m in got)
    assert "validation" not in capsys.readouterr().out
    train.train(_tiny(), tmp_path / "printed", max_steps=3, progress=True)  # the default log: printed
    assert "step 3: validation best-of-2 PSNR" in capsys.readouterr().out


def test_a_notebook_cell_run_again_continues_its_run_with_resume_auto(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Notebook-review finding: a cell ``train(cfg, RUN)`` run again failed with a command-line hint (``use --resume
    RUN``); ``resume="auto"`` starts the run or continues it, and the advice names ``train``'s arguments."""
    cfg, run = dataclasses.replace(_tiny(), lr_burnin=20), tmp_path / "run"
    first = train.train(cfg, run, resume="auto", max_steps=2, progress=False, log=lambda _: None)
    assert (first.step, first.stopped) == (2, "max steps")
    got: list[str] = []
    again = train.train(cfg, run, resume="auto", max_steps=4, progress=False, log=got.append)
    assert again.step == 4 and f"resuming {run} at step 2" in got
    assert f"continue with: train(cfg, {str(run)!r}, resume=True) (or python -m examples.srvp.train --resume" in got[-1]
    with pytest.raises(FileExistsError, match=r"^run_dir: .* already holds a run; continue it with train\(cfg, .*, "
                       r"resume=True\) \(or resume='auto'"):  # fmt: skip
        train.train(cfg, run, max_steps=5, progress=False, log=lambda _: None)
    with pytest.raises(TypeError, match=r"^resume: expected True, False or 'auto', got 'yes'"):
        train.train(cfg, run, resume="yes", progress=False)  # type: ignore[arg-type]
    # Resuming where there is no run says so, before announcing a start from step 0 (it announced one, then failed).
    got.clear()
    with pytest.raises(FileNotFoundError, match=r"^run_dir: no run to resume in .*none \(no config.json\); start "
                       r"one with train\(cfg, "):  # fmt: skip
        train.train(cfg, tmp_path / "none", resume=True, progress=False, log=got.append)
    assert got == []


def test_resume_auto_with_an_edited_cfg_names_what_differs_from_the_run(tmp_path: Path) -> None:
    """Diff review: a cell run again with an edited option was told that the checkpoint differed from "what
    config.json gives", though config.json was untouched: the difference was the caller's ``cfg``."""
    cfg, run = _tiny(), tmp_path / "run"
    train.train(cfg, run, max_steps=1, progress=False, log=lambda _: None)
    edited = dataclasses.replace(cfg, batch_size=2, model=dataclasses.replace(cfg.model, noise_size=5))
    with pytest.raises(ValueError, match=r"^cfg: differs from the configuration of the run in .* \(model.noise_size 3 "
                       r"there vs 5 in cfg, batch_size 4 there vs 2 in cfg\); a resume continues that run: pass "
                       r"read_train_config\("):  # fmt: skip
        train.train(edited, run, resume="auto", progress=False, log=lambda _: None)
    runtime = dataclasses.replace(cfg, threads=1, max_steps=2, lr=1e-4)  # what a resume may change
    assert train.train(runtime, run, resume="auto", progress=False, log=lambda _: None).step == 2


def test_the_python_entry_points_expand_a_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Notebook-review finding: ``train(cfg, "~/runs/x")`` made a folder named ``~`` in the working directory
    (the command lines expand it, so their advice named another folder)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    train.train(_tiny(), "~/runs/x", max_steps=1, progress=False, log=lambda _: None)
    assert (tmp_path / "home" / "runs" / "x" / "config.json").is_file() and not (tmp_path / "~").exists()
    assert isinstance(load_model("~/runs/x"), SRVP)
    assert load_checkpoint("~/runs/x/checkpoints/last.pt")["step"] == 1
    assert read_train_config("~/runs/x") == read_train_config(tmp_path / "home" / "runs" / "x")


def test_a_configuration_of_the_wrong_kind_says_what_to_do() -> None:
    """Notebook-review finding: a dict failed with an AttributeError deep inside; after importlib.reload of the
    config module (a notebook's autoreload) the message was "expected a ModelConfig, got ModelConfig"."""
    import importlib

    from examples.srvp import config as config_module

    with pytest.raises(TypeError, match=r"^cfg: expected a TrainConfig, got dict; build one from a dict with "
                       r"config_from_dict\(TrainConfig, d\)"):  # fmt: skip
        train.train(dataclasses.asdict(_tiny()), "unused")  # type: ignore[arg-type]
    first = dict(vars(config_module))
    try:
        importlib.reload(config_module)  # new classes; SRVP checks against those it imported
        with pytest.raises(TypeError, match=r"^config: expected a ModelConfig, got ModelConfig of another import "
                           r"of examples.srvp.config \(importlib.reload"):  # fmt: skip
            SRVP(config_module.PRESETS["tiny"]().model)
    finally:  # the module as the other modules and tests imported it
        vars(config_module).clear()
        vars(config_module).update(first)


def test_what_a_notebook_prints_of_the_results_is_short(run: Path, tmp_path: Path) -> None:
    """Notebook-review finding: the evaluation's result printed 47 KB (tensor dumps of its GIF videos), a
    ``TrainResult`` every loss on one line (152 KB after 9,000 steps), an ``Encoded`` 499 KB."""
    trained = train.train(_tiny(), tmp_path / "r", max_steps=3, progress=False, log=lambda _: None)
    assert repr(trained) == (
        f"TrainResult(run_dir={tmp_path / 'r'!r}, step=3, losses=[{', '.join(map(repr, trained.losses))}], "
        f"best_val_psnr={trained.best_val_psnr!r}, stopped='max steps')"
    )  # (3 losses: printed)
    long = dataclasses.replace(trained, losses=[1.0] * 9000)
    assert "losses=<list of 9000 numbers: first 1, last 1>" in repr(long)
    model = load_model(run)
    clips = torch.randint(0, 256, (6, 3, 1, 64, 64), dtype=torch.uint8)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=6, n_samples=2, n_substeps=1, batch_size=3)
    result = ev.evaluate(model, clips, protocol, progress=False)
    text = repr(result)
    assert isinstance(result, dict) and len(text) < 1500
    assert text.startswith("EvalResult(\n") and ev.format_results(result) in text
    assert text.endswith("; arrays: _gif, _per_sequence, _per_sequence_others\n)")
    with torch.no_grad():
        prediction = model.predict(clips[:2].float() / 255, 4, 2)
    assert len(repr(prediction)) < 1500 and "frames=tensor(shape=(2, 4, 3, 1, 64, 64), float32)" in repr(prediction)


def test_a_notebook_shows_the_curves_and_the_samples(run: Path, tmp_path: Path) -> None:
    """Notebook-review finding: ``plot_figure``'s figure showed as ``<Figure size ...>`` unless pyplot's inline
    backend had been started, and the sample grid was only reachable through the GIF file."""
    clips = torch.randint(0, 256, (6, 3, 1, 64, 64), dtype=torch.uint8)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=6, n_samples=2, n_substeps=1, batch_size=3)
    result = ev.evaluate(load_model(run), clips, protocol, progress=False, n_gif=2)
    fig = ev.plot_figure(result)
    png = fig._repr_png_()  # what IPython displays
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import copy
    import pickle

    for other in (pickle.loads(pickle.dumps(fig)), copy.deepcopy(fig)):  # (diff review: a closure broke pickling)
        assert other._repr_png_.figure is other and other._repr_png_()[:8] == png[:8]
    frames = ev.sample_grid(result)
    assert frames is not None and frames.shape == (6, 2 * 66 + 2, 4 * 66 + 2, 3) and frames.dtype == np.uint8
    from PIL import Image

    with Image.open(ev.write_outputs(result, tmp_path, "x")["gif"]) as gif:
        gif.seek(3)
        shown = np.asarray(gif.convert("RGB")).astype(int)
    assert np.abs(shown - frames[3]).max() <= 4  # the GIF shows these frames (up to its 256-colour palette)
    no_videos = ev.evaluate(load_model(run), clips, protocol, progress=False, n_gif=0)
    assert ev.sample_grid(no_videos) is None


def test_evaluate_inside_a_training_loop_gives_the_modes_back(run: Path) -> None:
    """A loop that evaluates now and then goes on training: evaluate() left the model in eval mode, so the
    training went on with BatchNorm's running statistics and without its batch statistics."""
    model = load_model(run).train()
    model.content.eval()  # a module the caller froze stays frozen  # type: ignore[union-attr]
    modes = {name: m.training for name, m in model.named_modules()}
    clips = torch.randint(0, 256, (6, 3, 1, 64, 64), dtype=torch.uint8)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=6, n_samples=2, n_substeps=1, batch_size=3, seed=0, max_sequences=0)
    seen: list[bool] = []
    predict = model.predict

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(model.training)
        return predict(*args, **kwargs)  # type: ignore[arg-type]

    model.predict = spy  # type: ignore[method-assign]
    ev.evaluate(model, clips, protocol, progress=False, n_gif=0)
    assert seen and not any(seen)  # it ran in eval mode
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert not model.content.training and model.encoder.training  # type: ignore[union-attr]


def test_write_outputs_takes_a_string_path(run: Path, tmp_path: Path) -> None:
    model = load_model(run)
    clips = torch.randint(0, 256, (6, 2, 1, 64, 64), dtype=torch.uint8)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=6, n_samples=2, n_substeps=1, batch_size=2, seed=0, max_sequences=0)
    result = ev.evaluate(model, clips, protocol, progress=False, n_gif=1, official_files=True)
    paths = ev.write_outputs(result, str(tmp_path / "out"), "x")
    assert paths["json"] == tmp_path / "out" / "x.json" and paths["json"].is_file()
    official = ev.write_official_files(result, str(tmp_path / "official"))
    assert np.load(official / "results.npz")["psnr"].shape == (2,)


def test_predict_names_cond_frames_of_the_wrong_dtype(run: Path) -> None:
    model = load_model(run)
    frames = torch.randint(0, 256, (3, 2, 1, 64, 64), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"^cond_frames: expected floating-point frames in \[0, 1\], got dtype "):
        model.predict(frames, 2)
    with pytest.raises(TypeError, match=r"divide uint8 frames by 255"):
        model.predict(frames, 2)
    with pytest.raises(TypeError, match=r"^x: expected floating-point frames .* got dtype torch\.int64$"):
        model(frames.long())


_USER_SCRIPT = """
import torch
from typing_extensions import assert_type

from examples.srvp.checkpoint import load_model, load_model_and_step, read_train_config
from examples.srvp.config import ModelConfig, TrainConfig, config_from_dict
from examples.srvp.model import SRVP, FrameModel, Prediction, SRVPOutput
from examples.srvp.svglp import SVGLP, SVGLPOutput, SVGLPPrediction
from latentdyn import ElboTerms

model = load_model("runs/x")
assert_type(model, FrameModel)
assert_type(load_model_and_step("runs/x", "last"), tuple[FrameModel, int | None])
load_model("runs/x", "final")  # type: ignore[arg-type]
assert_type(read_train_config("runs/x"), TrainConfig)
assert_type(config_from_dict(ModelConfig, {}), ModelConfig)
x = torch.zeros(4, 2, 1, 64, 64)
assert_type(model.predict(x, 3, 2), Prediction | SVGLPPrediction)
if isinstance(model, SRVP):
    assert_type(model(x), tuple[ElboTerms, SRVPOutput])
    assert_type(model.predict(x, 3).frames, torch.Tensor)
elif isinstance(model, SVGLP):
    assert_type(model(x), tuple[ElboTerms, SVGLPOutput])
"""


def test_a_type_checker_sees_the_types_of_a_loaded_run(tmp_path: Path) -> None:
    """load_model, load_model_and_step and config_from_dict returned Any, and SRVP(...)(x) was Any: a typo in
    a user's script passed mypy."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    user = tmp_path / "user_script.py"
    user.write_text(_USER_SCRIPT, encoding="utf-8")
    command = [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent"]
    command += ["--cache-dir", str(tmp_path / ".mypy_cache"), str(user)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    report = (result.stdout + result.stderr).replace(str(tmp_path) + "/", "")
    assert result.returncode == 0, f"mypy does not see the types of a loaded run:\n{report}"


def test_a_model_fine_tuned_in_ones_own_loop_is_saved_as_a_run(run: Path, tmp_path: Path) -> None:
    """save_run writes what load_model, evaluate and demo read; there was no public way (the checkpoint layout
    and config.json's sections had to be copied from the source)."""
    from examples.srvp.checkpoint import save_run

    cfg = read_train_config(run)
    model = load_model(run).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    terms, _ = model(torch.rand(cfg.seq_len, 2, 1, 64, 64))
    terms.total.backward()
    optimizer.step()
    out = save_run(tmp_path / "tuned", model, cfg, step=5)
    assert out == tmp_path / "tuned"
    again, step = load_model_and_step(out)
    assert step == 5 and again.config == model.config and not again.training
    tuned = model.state_dict()
    assert all(torch.equal(v, tuned[k]) for k, v in again.state_dict().items())
    assert read_train_config(out) == cfg
    # evaluate's command line reads it as any run.
    from latentdyn.video.mnist import load_embedded_digits
    from latentdyn.video.moving_mnist import make_test_set, save_test_set

    digits = load_embedded_digits("test")
    data = make_test_set(digits.images[:4], digits.labels[:4], seq_len=cfg.seq_len, deterministic=False)
    test_set = save_test_set(tmp_path / "test.npz", data)
    args = [str(out), "--test-set", str(test_set), "--n-samples", "2"]
    assert ev.main(args) == 0
    assert (out / "eval").is_dir()

    with pytest.raises(FileExistsError, match=r"^run_dir: .*config\.json already exists; choose an empty directory$"):
        save_run(out, model, cfg)
    with pytest.raises(TypeError, match=r"^model: expected an SRVP or SVGLP model, got Linear$"):
        save_run(tmp_path / "other", torch.nn.Linear(2, 2), cfg)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^train_config: expected a TrainConfig, got dict; build one from a dict with "
                       r"config_from_dict\(TrainConfig, d\)$"):  # fmt: skip
        save_run(tmp_path / "other", model, {"dataset": "smmnist"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^step: expected None or an int >= 0, got -1$"):
        save_run(tmp_path / "other", model, cfg, step=-1)
    assert not (tmp_path / "other").exists()  # nothing written by a refused call


def test_eval_protocol_defaults_are_the_command_lines() -> None:
    """Only what depends on the run must be given from Python; the rest defaults as ``evaluate``'s flags do."""
    protocol = ev.EvalProtocol(nt_cond=5, nt_gen=25, n_samples=100, n_substeps=1)
    args = ev.build_parser().parse_args(["RUN"])
    assert (protocol.batch_size, protocol.seed, protocol.max_sequences) == (16, 1, 0)
    assert (args.batch_size, args.seed, args.max_sequences) == (16, 1, 0)


# ------------------------------------------------------------------ what a call leaves of the caller's process
def test_train_neither_takes_nor_leaves_the_callers_process_state(tmp_path: Path) -> None:
    """A notebook or a sweep calls train() again and again. It left the thread count it set (--threads), a
    random stream reseeded to the run's (a sweep drawing its next learning rate with torch drew the same one after
    every run); and the caller's state reached it: under no_grad it failed at step 1 after creating the run, under
    a float64 default dtype it failed on the dtypes, under the caller's bf16 autocast it trained in bf16."""
    quiet = {"max_steps": 2, "progress": False, "log": lambda _: None}
    cfg = dataclasses.replace(_tiny(), threads=1)
    plain = tmp_path / "plain"
    train.train(cfg, plain, **quiet)  # type: ignore[arg-type]

    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.manual_seed(11)
    expected_draw = torch.rand(3)
    torch.manual_seed(11)
    hostile = tmp_path / "hostile"
    try:
        torch.set_num_threads(threads + 1)
        torch.set_default_dtype(torch.float64)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            result = train.train(cfg, hostile, **quiet)  # type: ignore[arg-type]
        # the caller's state, given back
        assert torch.get_default_dtype() == torch.float64 and torch.get_num_threads() == threads + 1
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
    assert torch.equal(torch.rand(3), expected_draw)  # the caller's stream goes on as if train() had not run
    assert result.stopped == "max steps" and result.step == 2
    a = load_checkpoint(plain / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(hostile / "checkpoints" / "last.pt")["model"]
    assert all(b[k].dtype == a[k].dtype and torch.equal(a[k], b[k]) for k in a)  # the same training, in float32


def test_evaluate_and_load_model_under_the_callers_autocast_and_default_dtype(run: Path) -> None:
    """The caller's fp16 autocast changed the SSIM without a word (the metrics ran under it) and bf16 failed after
    all the sampling; load_model drew from the caller's random stream and built a float64 model under a float64
    default dtype, which evaluate then refused."""
    clips = torch.randint(0, 256, (6, 3, 1, 64, 64), dtype=torch.uint8)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=6, n_samples=2, n_substeps=1, batch_size=3)
    expected = ev.evaluate(load_model(run), clips, protocol, progress=False, n_gif=0)
    dtype = torch.get_default_dtype()
    torch.manual_seed(5)
    draw = torch.rand(3)
    torch.manual_seed(5)
    torch.set_default_dtype(torch.float64)
    try:
        model = load_model(run)
    finally:
        torch.set_default_dtype(dtype)
    assert torch.equal(torch.rand(3), draw)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for amp in (torch.float16, torch.bfloat16):
        with torch.autocast("cpu", dtype=amp):
            got = ev.evaluate(model, clips, protocol, progress=False, n_gif=0)
        assert got["metrics"] == expected["metrics"]
        assert got["reference_predictors"] == expected["reference_predictors"]


def test_the_curve_plot_leaves_the_callers_matplotlib_backend_and_figures(run: Path, tmp_path: Path) -> None:
    """write_outputs switched the process to the Agg backend for good: a notebook's inline plots stopped showing."""
    import matplotlib

    pyplot = pytest.importorskip("matplotlib.pyplot")
    before = matplotlib.get_backend()
    clips = torch.randint(0, 256, (6, 2, 1, 64, 64), dtype=torch.uint8)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=6, n_samples=2, n_substeps=1, batch_size=2)
    result = ev.evaluate(load_model(run), clips, protocol, progress=False, n_gif=1)
    matplotlib.use("svg")
    try:
        figures = pyplot.get_fignums()
        paths = ev.write_outputs(result, tmp_path, "x")
        assert matplotlib.get_backend() == "svg" and pyplot.get_fignums() == figures
    finally:
        matplotlib.use(before)
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_curve_plot_says_what_it_shows(run: Path) -> None:
    """Review finding: the plot's title gave only the number of sequences (not the weights, the test set, the
    protocol or the selection), its y axes had no unit or direction and its frame axis fractional ticks."""
    pytest.importorskip("matplotlib")
    clips = torch.randint(0, 256, (7, 3, 1, 64, 64), dtype=torch.uint8)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=7, n_samples=4, n_substeps=1, batch_size=3)
    result = ev.evaluate(load_model(run), clips, protocol, progress=False, n_gif=0)
    bare = ev.plot_figure(result)
    assert bare._suptitle.get_text() == (
        "3 sequences, 2 conditioning + 5 predicted frames\nbest and worst of 4 samples chosen per sequence and "
        "metric; bands: 95% confidence interval of the mean"
    )
    result["checkpoint"] = {"name": "last", "file": "/runs/x/checkpoints/last.pt", "step": 9000}
    result["data"] = {"dataset": "smmnist", "test_set": "/data/smmnist_test_embedded_25.npz"}
    fig = ev.plot_figure(result)
    assert fig._suptitle.get_text().startswith(
        "last.pt at step 9000, smmnist test set smmnist_test_embedded_25.npz: 3 sequences, 2 conditioning + 5"
    )
    psnr, ssim = fig.axes
    assert (psnr.get_ylabel(), ssim.get_ylabel()) == ("PSNR (dB, higher is better)", "SSIM (higher is better)")
    assert psnr.get_xlabel() == "frame (1 to 2: conditioning)"
    ticks = [t for t in psnr.get_xticks() if 3 <= t <= 7]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert psnr.lines[0].get_xdata().tolist() == [3, 4, 5, 6, 7]


def test_the_results_count_the_frames_predicted_exactly(run: Path) -> None:
    """Review finding: one frame copied exactly by copy-last counted as 100 dB and made a spike of its curve, with
    nothing in the results to explain it."""
    clips = torch.randint(0, 256, (7, 3, 1, 64, 64), dtype=torch.uint8)
    clips[2:, 0] = clips[1, 0]  # sequence 0 stands still after its 2 conditioning frames: copy-last is exact
    clips[4, 1] = clips[1, 1]  # sequence 1's frame 5 (index 4) repeats its last conditioning frame
    clips[:, 2] = 0  # sequence 2 is black throughout: the all-black predictor is exact
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=7, n_samples=2, n_substeps=1, batch_size=3)
    result = ev.evaluate(load_model(run), clips, protocol, progress=False, n_gif=0)
    refs = result["reference_predictors"]
    assert refs["copy_last"]["psnr_capped_frames"] == 5 + 1 + 5  # (a black clip stands still too)
    assert refs["black"]["psnr_capped_frames"] == 5
    assert result["metrics"]["psnr_capped_frames"] == 0 == result["worst_sample"]["psnr_capped_frames"]


def test_the_per_sequence_file_pairs_the_model_with_the_reference_predictors(run: Path, tmp_path: Path) -> None:
    """Review finding: the file held the model's best-of-N scores only, so SRVP could not be compared with
    copy-last sequence by sequence (a paired comparison)."""
    from latentdyn.video.metrics import psnr

    clips = torch.randint(0, 256, (6, 3, 1, 64, 64), dtype=torch.uint8)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=6, n_samples=2, n_substeps=1, batch_size=2)
    result = ev.evaluate(load_model(run), clips, protocol, progress=False, n_gif=0)
    with np.load(ev.write_outputs(result, tmp_path, "x")["per_sequence"]) as saved:
        arrays = dict(saved)
    kinds = ("", "worst_", "random_", "copy_last_", "black_")
    scores = {f"{k}{m}{curve}" for k in kinds for m in ("psnr", "ssim") for curve in ("", "_curve")}
    assert set(arrays) == scores | {"indices", "psnr_best_index", "ssim_best_index"}
    assert arrays["indices"].tolist() == [0, 1, 2]
    frames = clips.float() / 255
    copied = frames[1:2].expand(4, -1, -1, -1, -1)  # the last conditioning frame, for the 4 predicted ones
    expected = psnr(copied, frames[2:]).mean(0)  # (T, B) -> (B,)
    np.testing.assert_allclose(arrays["copy_last_psnr"], expected.numpy(), rtol=1e-5)
    assert (arrays["worst_psnr"] <= arrays["psnr"]).all()
    assert float(arrays["black_ssim"].mean()) == pytest.approx(result["reference_predictors"]["black"]["ssim"]["mean"])


def test_the_sample_gif_marks_the_predicted_frames_and_pauses_at_the_end(run: Path, tmp_path: Path) -> None:
    """Review finding: nothing in the GIF showed where the prediction starts (the conditioning frames of every
    column are the truth's), white separators merged with white digits, and it looped without a pause."""
    from PIL import Image

    clips = torch.randint(0, 256, (6, 2, 1, 64, 64), dtype=torch.uint8)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=6, n_samples=2, n_substeps=1, batch_size=2)
    result = ev.evaluate(load_model(run), clips, protocol, progress=False, n_gif=2)
    with Image.open(ev.write_outputs(result, tmp_path, "x")["gif"]) as gif:
        frames, durations = [], []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")).astype(int))
            durations.append(gif.info["duration"])
    assert len(frames) == 6 and durations == [250] * 5 + [250 * 5]  # (the held copies merge into the last frame)
    assert frames[0].shape == (2 * 66 + 2, 4 * 66 + 2, 3)
    red, grey = np.array([220, 40, 40]), np.array([128, 128, 128])
    for t, frame in enumerate(frames):
        for row in range(2):
            top = row * 66
            assert np.abs(frame[top + 1, 33] - grey).max() <= 2  # the truth column's top border: always grey
            assert np.abs(frame[top + 33, 66] - grey).max() <= 2  # and the first half of the strip at its right
            assert np.abs(frame[top + 33, 67] - (red if t >= 2 else grey)).max() <= 2  # (the other half: column 1's)
            for col in (1, 2, 3):
                border = frame[top + 1, col * 66 + 33]  # the middle of the cell's top border
                assert np.abs(border - (red if t >= 2 else grey)).max() <= 2, (t, row, col, border)


def test_a_bf16_training_inside_the_callers_autocast_updates_the_weights_it_casts(tmp_path: Path) -> None:
    """autocast keeps its bf16 copies of the weights until the outermost autocast context exits: a training inside
    an outer context (the caller's, or the one that keeps the caller's autocast out) would go on with the copies of
    the first step's weights. The reference is the same run stopped after every step and resumed: each call starts
    without copies."""
    quiet = {"progress": False, "log": lambda _: None}
    cfg = dataclasses.replace(_tiny(), amp="bf16", threads=1)
    stepwise = tmp_path / "stepwise"
    train.train(cfg, stepwise, max_steps=1, **quiet)  # type: ignore[arg-type]
    for steps in (2, 3):
        train.train(read_train_config(stepwise), stepwise, resume=True, max_steps=steps, **quiet)  # type: ignore[arg-type]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        train.train(cfg, tmp_path / "inside", max_steps=3, **quiet)  # type: ignore[arg-type]
    a = load_checkpoint(stepwise / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "inside" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 3
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_resuming_a_run_of_save_run_says_it_has_no_training_state(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said that best.pt held 'the training state of step 6' and to copy it to last.pt, which the resume then
    refused as holding no training state."""
    from examples.srvp.checkpoint import save_run

    out = save_run(tmp_path / "saved", load_model(run), read_train_config(run), step=6)
    assert train.main(["--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: --resume: {out / 'checkpoints' / 'best.pt'} holds weights without a training state (optimizer, "
        "random states) to continue from, as official convert and save_run write them;"
    )
    assert train.main(["--run-dir", str(out), "--auto-resume", "--preset", "tiny", "--conv-width", "8"]) == 2
    assert capsys.readouterr().err.startswith(f"error: --auto-resume: {out / 'checkpoints' / 'best.pt'} holds weights")


@pytest.mark.parametrize("family", ["srvp", "svglp"])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_model_a_configuration_builds_is_what_it_rebuilds(preset: str, family: str) -> None:
    from examples.srvp.checkpoint import rebuild_difference
    from examples.srvp.model import build_model

    config = PRESETS[preset]().model
    if family == "svglp":
        config = dataclasses.replace(config, family="svglp", n_substeps=1)
    model = build_model(config).init_weights().eval()
    assert rebuild_difference(model) is None


def test_save_run_refuses_a_model_that_load_model_would_not_give_back(run: Path, tmp_path: Path) -> None:
    """A part swapped or a setting changed after building: load_model rebuilt the stock model of config.json and
    loaded the weights into it, silently when the parameter names matched (an ODE cell with other tolerances, a
    subclass), so evaluate and demo scored a model that was never trained."""
    from examples.srvp.checkpoint import save_run
    from examples.srvp.model import build_model
    from latentdyn.cells import GRUCell
    from latentdyn.integrators.odeint import OdeintIntegrator

    cfg = read_train_config(run)

    class MySRVP(SRVP):
        pass

    ode = build_model(dataclasses.replace(cfg.model, integrator="dopri5"))
    ode.ssm.cell.integrator = OdeintIntegrator("dopri5", rtol=1e-3, atol=1e-4)  # type: ignore[attr-defined]
    assert isinstance(ode, SRVP)
    gru = load_model(run)
    assert isinstance(gru, SRVP)
    cell = gru.ssm.cell
    gru.ssm.cell = GRUCell(cell.state_size, cell.cond_size)
    expected = {
        "a subclass": (MySRVP(cfg.model), "the configuration builds a SRVP, not a MySRVP"),
        "other tolerances": (ode, "ssm.cell's integrator.atol is 0.0001 where the configuration builds 1e-09"),
        "another cell": (gru, "ssm.cell is a GRUCell where the configuration builds a ResidualCell"),
    }
    for what, (model, says) in expected.items():
        with pytest.raises(ValueError, match="load_model would not give this model back") as error:
            save_run(tmp_path / "out", model, dataclasses.replace(cfg, model=model.config))
        assert says in str(error.value), what
        assert not (tmp_path / "out").exists(), what
    save_run(tmp_path / "out", build_model(dataclasses.replace(cfg.model, integrator="dopri5")), cfg)  # the stock one
    options = build_model(dataclasses.replace(cfg.model, integrator="dopri5"))
    options.ssm.cell.integrator = OdeintIntegrator("dopri5", options={"max_num_steps": 50})  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"ssm\.cell's integrator\.options is \{'max_num_steps': 50\} where"):
        save_run(tmp_path / "out", options, dataclasses.replace(cfg, model=options.config))
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build_model(cfg.model))  # (data-parallel training's)
    save_run(tmp_path / "synced", cast(SRVP, synced), cfg)


def test_a_new_run_starts_from_the_weights_of_another(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fine-tuning weights of save_run or official convert with the example's training: --resume refuses them (no
    training state), and there was no way to start a new run from them."""
    from examples.srvp.checkpoint import save_run

    source = save_run(tmp_path / "saved", load_model(run), read_train_config(run), step=6)
    cfg = dataclasses.replace(read_train_config(run), lr=1e-12)  # (the weights barely move in one step)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, beta_z=2.0))  # (a loss weight may change)
    logs: list[str] = []
    train.train(cfg, tmp_path / "tuned", init_from=source, max_steps=1, progress=False, log=logs.append)
    assert any(line.endswith("saved/checkpoints/best.pt (trained with --beta-z 1.0)") for line in logs), logs
    tuned, start = dict(load_model(tmp_path / "tuned", "last").named_parameters()), load_model(source)
    for name, weight in start.named_parameters():
        torch.testing.assert_close(tuned[name], weight, rtol=0, atol=1e-6, msg=name)
    fresh = tmp_path / "fresh"  # (without --init-from, the same run is far from those weights)
    train.train(cfg, fresh, max_steps=1, progress=False, log=lambda _: None)
    first = next(iter(start.state_dict()))
    assert not torch.allclose(load_model(fresh, "last").state_dict()[first], start.state_dict()[first], atol=1e-3)
    torch.save(start.state_dict(), tmp_path / "bare.pt")  # (what save_run's message says to do for one's own)
    train.train(cfg, tmp_path / "bare", init_from=tmp_path / "bare.pt", max_steps=1, progress=False, log=logs.append)
    bare = dict(load_model(tmp_path / "bare", "last").named_parameters())
    for name, weight in start.named_parameters():
        torch.testing.assert_close(bare[name], weight, rtol=0, atol=1e-6, msg=name)
    record = json.loads((tmp_path / "tuned" / "config.json").read_text())["init_from"]
    assert record == {"checkpoint": str((source / "checkpoints" / "best.pt").resolve()), "step": 6}

    # Stopped before its first checkpoint (a job killed early): the resume starts from the source again, not from
    # a random initialisation (a requeued --auto-resume job no longer passes --init-from).
    shutil.rmtree(tmp_path / "tuned" / "checkpoints")
    train.train(cfg, tmp_path / "tuned", resume=True, max_steps=1, progress=False, log=lambda _: None)
    tuned = dict(load_model(tmp_path / "tuned", "last").named_parameters())
    for name, weight in start.named_parameters():
        torch.testing.assert_close(tuned[name], weight, rtol=0, atol=1e-6, msg=name)

    with pytest.raises(ValueError, match=r"^--init-from: a resumed run continues from its own last\.pt"):
        train.train(cfg, tmp_path / "tuned", resume=True, init_from=source, progress=False, log=lambda _: None)
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, conv_width=4))
    with pytest.raises(ValueError, match=r"^--init-from: .*best.pt does not fit the model of this run: \d+ shape"):
        train.train(other, tmp_path / "other", init_from=source, progress=False, log=lambda _: None)
    with pytest.raises(FileNotFoundError, match=r"^--init-from: nothing at "):
        train.train(cfg, tmp_path / "other", init_from=tmp_path / "nothing", progress=False, log=lambda _: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^--init-from: no config.json in "):  # (it said run_dir:)
        train.train(cfg, tmp_path / "other", init_from=tmp_path / "empty", progress=False, log=lambda _: None)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"^--init-from: .*list\.pt is neither a latentdyn checkpoint nor a state"):
        train.train(cfg, tmp_path / "other", init_from=tmp_path / "list.pt", progress=False, log=lambda _: None)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"^--init-from: cannot read "):  # (it said checkpoint:)
        train.train(cfg, tmp_path / "other", init_from=tmp_path / "junk.pt", progress=False, log=lambda _: None)
    assert not (tmp_path / "other").exists()

    flags = ["--preset", "tiny", "--conv-width", "8", "--beta-z", "2", "--lr", "1e-12", "--max-steps", "2"]
    argv = ["--run-dir", str(tmp_path / "tuned"), "--auto-resume", "--init-from", str(source), *flags]
    assert train.main(argv) == 0  # (a requeued job: the run continues from its own checkpoint)
    assert "holds a run: it continues from its own checkpoint, not --init-from" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        train.main(["--resume", str(tmp_path / "tuned"), "--init-from", str(source)])
    assert "--init-from starts a new run (--run-dir DIR)" in capsys.readouterr().err


def test_a_new_moving_mnist_run_on_the_shipped_digits_says_they_are_a_subset(tmp_path: Path) -> None:
    """The Moving MNIST presets (the paper's smmnist included) default to the 4,000 shipped training digits; the
    paper trains on MNIST's 60,000 (SPEC: the official data loader reads the whole training split)."""
    logs: list[str] = []
    train.train(_tiny(), tmp_path / "run", max_steps=1, progress=False, log=logs.append)
    assert PRESETS["smmnist"]().data_dir == "embedded"
    assert any(line.startswith("note: the Moving MNIST digits are the 4,000 training digits") for line in logs)


def test_a_run_of_an_earlier_version_loads_evaluates_and_resumes_as_it_did(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run written before integrator_rtol/integrator_atol existed (its config.json and checkpoints lack them),
    with --adjoint true beside euler-ref (which a new run refuses, as it does nothing): every checkpoint of such a
    run was refused as "written by another model configuration" (None vs the new defaults)."""
    from examples.srvp.checkpoint import save_checkpoint

    old = _copy(run, tmp_path)
    config = json.loads((old / "config.json").read_text())
    for key in ("integrator_rtol", "integrator_atol"):
        del config["model"][key]
    config["model"]["adjoint"] = True
    (old / "config.json").write_text(json.dumps(config))
    for name in ("best", "last"):
        payload = load_checkpoint(old / "checkpoints" / f"{name}.pt")
        for key in ("integrator_rtol", "integrator_atol"):
            del payload["config"]["model"][key]
        payload["config"]["model"]["adjoint"] = True
        save_checkpoint(old / "checkpoints" / f"{name}.pt", payload)
    model = load_model(old, "last")
    for (name, weight), reference in zip(model.state_dict().items(), load_model(run, "last").state_dict().values()):
        torch.testing.assert_close(weight, reference, rtol=0, atol=0, msg=name)
    assert read_train_config(old).model.adjoint
    assert train.main(["--resume", str(old), "--max-steps", "5"]) == 0, capsys.readouterr().err
    assert load_model_and_step(old, "last")[1] == 5
    with pytest.raises(ValueError, match=r"^adjoint: the adjoint method is for the torchdiffeq integrators"):
        train.train(read_train_config(old), tmp_path / "new", progress=False, log=lambda _: None)  # (a new run)
