"""Smoke and behaviour tests of the SRVP example's commands: train, resume, evaluate, quickstart, README."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.srvp import data as data_cli
from examples.srvp import evaluate as ev
from examples.srvp import quickstart, train
from examples.srvp.checkpoint import load_checkpoint, load_model
from examples.srvp.config import PRESETS, TrainConfig
from examples.srvp.model import SRVP

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def test_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SM-MNIST test set from the embedded digits (40 digits -> 20 sequences of 8 frames)."""
    from latentdyn.video.mnist import load_embedded_digits
    from latentdyn.video.moving_mnist import make_test_set, save_test_set

    digits = load_embedded_digits("test")
    data = make_test_set(digits.images[:40], digits.labels[:40], seq_len=8, deterministic=False)
    return save_test_set(tmp_path_factory.mktemp("data") / "test.npz", data)


def _tiny() -> TrainConfig:
    return PRESETS["tiny"]()


def test_train_cli_writes_a_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--lr-burnin", "2", "--lr-decay", "1"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr_burnin"] == 2 and config["model"]["state_size"] == 4
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["step"] == 3
    assert set(last) >= {"model", "optimizer", "scheduler", "step", "rng", "config"}
    assert (run / "checkpoints" / "best.pt").exists()
    assert isinstance(load_model(run), SRVP)
    assert (run / "train_log.jsonl").read_text().strip()


def test_train_cli_rejects_unknown_options_and_existing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--no-such-option", "1"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        train.main(["--preset", "nope", "--run-dir", str(tmp_path / "r")])
    with pytest.raises(SystemExit) as e:
        train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--architecture", "resnet"])
    assert e.value.code == 2
    assert "argument --architecture: invalid choice: 'resnet' (choose from 'dcgan', 'vgg')" in capsys.readouterr().err
    assert (
        train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "r2"), "--lr-burnin", "1", "--lr-decay", "0"]) == 0
    )
    assert train.main(["--preset", "tiny", "--run-dir", str(tmp_path / "r2")]) == 2
    assert "already holds a run" in capsys.readouterr().err


def _quiet(cfg: TrainConfig, run: Path, **kwargs: object) -> train.TrainResult:
    return train.train(cfg, run, progress=False, log=lambda _: None, **kwargs)  # type: ignore[arg-type]


def _same_weights(a: Path, b: Path) -> bool:
    wa = load_checkpoint(a / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(b / "checkpoints" / "last.pt")["model"]
    return all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("split", [2, 3, 4])
def test_resume_is_exact(tmp_path: Path, split: int) -> None:
    """Stopping at any step, with or without a validation there (val_interval 3), changes nothing."""
    cfg = _tiny()
    straight = _quiet(cfg, tmp_path / "a")
    first = _quiet(cfg, tmp_path / "b", max_steps=split)
    assert first.stopped == "max steps" and first.step == split
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == split
    second = _quiet(cfg, tmp_path / "b", resume=True)
    assert straight.step == second.step == cfg.n_iter
    assert straight.losses == first.losses + second.losses
    assert _same_weights(tmp_path / "a", tmp_path / "b")


def test_time_budget_stop_resumes_exactly(tmp_path: Path) -> None:
    cfg = _tiny()
    straight = _quiet(cfg, tmp_path / "a")
    messages: list[str] = []
    first = train.train(dataclasses.replace(cfg, max_minutes=1e-9), tmp_path / "b", progress=False, log=messages.append)
    assert first.stopped == "time budget" and first.step == 1
    assert any(f"python -m examples.srvp.train --resume {tmp_path / 'b'}" in m for m in messages)
    second = _quiet(cfg, tmp_path / "b", resume=True)
    assert straight.losses == first.losses + second.losses
    assert _same_weights(tmp_path / "a", tmp_path / "b")


def test_ctrl_c_stops_after_the_step_with_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    cfg = _tiny()
    straight = _quiet(cfg, tmp_path / "a")
    original = SRVP.loss_terms
    calls = []

    def interrupted(self: SRVP, x: torch.Tensor, out: object) -> object:
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C in the middle of step 2
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, x, out)  # type: ignore[arg-type]

    monkeypatch.setattr(SRVP, "loss_terms", interrupted)
    first = _quiet(cfg, tmp_path / "b")
    monkeypatch.undo()
    assert first.stopped == "interrupted" and first.step == 2
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    second = _quiet(cfg, tmp_path / "b", resume=True)
    assert straight.losses == first.losses + second.losses
    assert _same_weights(tmp_path / "a", tmp_path / "b")


def test_a_run_without_a_checkpoint_yet_resumes_from_step_zero(tmp_path: Path) -> None:
    """A run stopped before its first checkpoint (a crash, a kill) is neither stuck nor started twice."""
    cfg = _tiny()
    straight = _quiet(cfg, tmp_path / "a")
    _quiet(cfg, tmp_path / "b", max_steps=1)
    (tmp_path / "b" / "checkpoints" / "last.pt").unlink()
    (tmp_path / "b" / "checkpoints" / "best.pt").unlink()
    messages: list[str] = []
    again = train.train(cfg, tmp_path / "b", resume=True, progress=False, log=messages.append)
    assert any("no checkpoint yet: starting it from step 0" in m for m in messages)
    assert again.losses == straight.losses


def test_resume_refuses_a_checkpoint_of_another_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    _quiet(_tiny(), run, max_steps=2)
    config = json.loads((run / "config.json").read_text())
    config["model"]["beta_z"] = 5.0  # an edited config.json: same shapes, another loss
    (run / "config.json").write_text(json.dumps(config))
    assert train.main(["--resume", str(run)]) == 2
    assert "was written by another model configuration: beta_z checkpoint 1.0 vs config.json 5.0" in (
        capsys.readouterr().err
    )
    config["model"]["beta_z"], config["model"]["state_size"] = 1.0, 7  # another shape: no traceback either
    (run / "config.json").write_text(json.dumps(config))
    assert train.main(["--resume", str(run)]) == 2
    assert "state_size checkpoint 4 vs config.json 7" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--lr", "-1", "--lr: expected a finite number > 0, got -1.0"),
        ("--lr", "inf", "--lr: expected a finite number > 0, got inf"),
        ("--beta-z", "-3", "--beta-z: expected a finite number >= 0, got -3.0"),
        ("--residual-weight", "-1", "--residual-weight: expected a finite number >= 0, got -1.0"),
        ("--obs-scale", "nan", "--obs-scale: expected a positive standard deviation, got nan"),
        ("--threads", "-2", "--threads: expected an int >= 0, got -2"),
        ("--n-workers", "-1", "--n-workers: expected an int >= 0, got -1"),
        ("--seed", "-1", "--seed: expected an int >= 0, got -1"),
        ("--max-speed", "-1", "--max-speed: expected an int >= 0, got -1"),
        ("--max-minutes", "-1", "--max-minutes: expected a finite number >= 0, got -1.0"),
        ("--max-steps", "-1", "--max-steps: expected an int >= 0, got -1"),
        ("--device", "cudaa", "--device: expected e.g. 'cpu', 'cuda' or 'cuda:1', got 'cudaa'"),
    ],
)
def test_train_cli_names_the_option_of_a_bad_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), flag, value]) == 2
    assert message in capsys.readouterr().err
    assert not run.exists()  # nothing half-made


def test_train_cli_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Linear layers of f and of the prior" in text  # the residual_layers field comment
    assert "--integrator {euler-ref," in text and "--amp {none,bf16,fp16}" in text
    assert "stop (with a checkpoint) after this global step" in text
    with pytest.raises(SystemExit):
        train.main(["--resume", str(Path("a")), "--run-dir", str(Path("b"))])
    assert "--run-dir and --resume name different directories" in capsys.readouterr().err


def test_resume_with_conflicting_options_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train.train(_tiny(), run, max_steps=2, progress=False, log=lambda _: None)
    assert train.main(["--resume", str(run), "--lr", "0.1"]) == 2
    assert "--lr saved 0.0003 vs given 0.1" in capsys.readouterr().err
    # Runtime-only options may change.
    args = train.build_parser().parse_args(["--resume", str(run), "--threads", "1"])
    assert train.config_from_args(args).threads == 1


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _tiny()
    run = tmp_path / "run"
    train.train(cfg, run, max_steps=2, progress=False, log=lambda _: None)
    good = load_checkpoint(run / "checkpoints" / "last.pt")
    original = SRVP.loss_terms

    def poisoned(self: SRVP, x: torch.Tensor, out: object) -> object:
        terms = original(self, x, out)  # type: ignore[arg-type]
        return terms._replace(total=terms.total * float("nan"))

    monkeypatch.setattr(SRVP, "loss_terms", poisoned)
    messages: list[str] = []
    result = train.train(cfg, run, resume=True, max_steps=6, progress=False, log=messages.append)
    assert result.stopped == "nan" and result.step == 2
    assert any("loss is nan" in m for m in messages)
    kept = load_checkpoint(run / "checkpoints" / "last.pt")
    assert kept["step"] == 2 and all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])


def _official_lr_factors(burnin: int, decay: int) -> list[float]:
    """The official loop (SPEC §3, train.py): ``itr`` counts updates from 1; after update ``itr`` the LambdaLR,
    whose factor after i steps is max(0, (decay − i)/decay), steps if ``itr >= burnin``."""
    factors, i = [], 0
    for itr in range(1, burnin + decay + 1):
        factors.append(max(0.0, (decay - i) / decay))
        if itr >= burnin:
            i += 1
    return factors


def test_lr_schedule_is_the_official_one() -> None:
    assert _official_lr_factors(4, 4) == [1, 1, 1, 1, 0.75, 0.5, 0.25, 0.0]  # the last update runs at 0
    for burnin, decay in ((4, 4), (0, 3), (1, 3), (5, 1), (2, 7)):
        ours = [train.lr_factor(s, burnin, decay) for s in range(burnin + decay)]
        assert ours == pytest.approx(_official_lr_factors(burnin, decay)), (burnin, decay)


def test_training_updates_use_the_official_learning_rates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[float] = []
    make_adam = train.make_adam

    def recording_adam(params: object, lr: float) -> torch.optim.Adam:
        opt = make_adam(params, lr)  # type: ignore[arg-type]
        opt.register_step_pre_hook(lambda o, args, kwargs: used.append(o.param_groups[0]["lr"]))
        return opt

    monkeypatch.setattr(train, "make_adam", recording_adam)
    cfg = dataclasses.replace(_tiny(), lr=1e-3, lr_burnin=3, lr_decay=4, val_interval=100)
    train.train(cfg, tmp_path / "run", progress=False, log=lambda _: None)
    assert used == pytest.approx([1e-3 * f for f in _official_lr_factors(3, 4)])


def test_paper_presets_match_the_official_command_lines() -> None:
    smm = PRESETS["smmnist"]()
    assert (smm.model.state_size, smm.model.noise_size, smm.model.n_substeps, smm.model.beta_z) == (20, 20, 1, 2.0)
    assert (smm.batch_size, smm.seq_len, smm.nt_cond, smm.lr_burnin, smm.lr_decay) == (128, 15, 5, 1_000_000, 100_000)
    assert smm.model.architecture == "dcgan" and not smm.model.skip_connections and smm.model.conv_width == 64
    det = PRESETS["smmnist-deterministic"]()
    assert det.deterministic and (det.lr_burnin, det.lr_decay) == (800_000, 100_000)


def test_evaluate_cli_and_reference_predictors(
    tmp_path: Path, test_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    train.train(_tiny(), run, max_steps=2, progress=False, log=lambda _: None)
    code = ev.main(
        [
            str(run),
            "--test-set",
            str(test_set),
            "--n-samples",
            "3",
            "--max-sequences",
            "5",
            "--batch-size",
            "2",
            "--nt-cond",
            "2",
            "--nt-gen",
            "7",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "copy_last" in out and "black" in out
    result = json.loads((run / "eval" / "test_n3_t7_dt1.json").read_text())
    assert result["n_sequences"] == 5
    assert len(result["metrics"]["psnr_curve"]["mean"]) == 5
    # The all-black predictor's PSNR computed independently with numpy.
    seqs = np.load(test_set)["sequences"][2:7, :5].astype(np.float64) / 255
    mse = (seqs**2).mean(axis=(2, 3))  # (T, N)
    expected = (10 * np.log10(1 / mse)).mean(0).mean()
    assert result["reference_predictors"]["black"]["psnr"]["mean"] == pytest.approx(expected, rel=1e-5)
    for suffix in ("_curves.png", "_samples.gif", "_per_sequence.npz"):
        assert (run / "eval" / f"test_n3_t7_dt1{suffix}").stat().st_size > 0


def test_evaluate_errors(tmp_path: Path, test_set: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert ev.main([str(tmp_path / "empty"), "--test-set", str(test_set)]) == 2
    assert "no config.json" in capsys.readouterr().err
    run = tmp_path / "run"
    train.train(_tiny(), run, max_steps=1, progress=False, log=lambda _: None)
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    assert ev.main([str(run), "--test-set", str(test_set)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, sequences=np.zeros((3, 4), np.uint8))
    train.train(_tiny(), tmp_path / "run2", max_steps=1, progress=False, log=lambda _: None)
    assert ev.main([str(tmp_path / "run2"), "--test-set", str(bad)]) == 2
    assert "bad.npz" in capsys.readouterr().err


def test_quickstart_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The documented test-set command has already made RUN_DIR/../data/ (a folder): quickstart adds its file.
    data = tmp_path / "runs" / "data"
    assert data_cli.main(["smmnist-test-set", "--mnist-dir", "embedded", "--seq-len", "2", "--out", f"{data}/"]) == 0
    run = tmp_path / "runs" / "q"
    args = ["--run-dir", str(run), "--preset", "tiny", "--max-steps", "2", "--eval-sequences", "3", "--n-samples", "2"]
    assert quickstart.main(args) == 0
    out = capsys.readouterr().out
    assert "copy_last" in out and "gif" in out
    assert sorted(p.name for p in data.iterdir()) == ["smmnist_test_2digits_64.npz", "smmnist_test_embedded_25.npz"]
    assert (run / "eval" / "smmnist_test_embedded_25_n2.json").exists()
    # Running it again resumes the unfinished run instead of starting over.
    assert quickstart.main([*args[:4], "--max-steps", "4", *args[6:]]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4


def test_quickstart_checks_its_options_first_and_honours_minutes_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "runs" / "q"
    for flag, value, message in (
        ("--n-samples", "0", "--n-samples: expected an int >= 1, got 0"),
        ("--eval-sequences", "-1", "--eval-sequences: expected an int >= 0 (0: all), got -1"),
        ("--minutes", "-2", "--minutes: expected a finite number >= 0, got -2.0"),
    ):
        assert quickstart.main(["--run-dir", str(run), "--preset", "tiny", flag, value]) == 2
        assert message in capsys.readouterr().err
        assert not run.exists()  # rejected before any training
    _quiet(_tiny(), run, max_steps=2)
    seen: list[TrainConfig] = []
    monkeypatch.setattr(quickstart, "train", lambda cfg, *a, **k: seen.append(cfg))
    args = ["--run-dir", str(run), "--minutes", "0.5", "--eval-sequences", "2", "--n-samples", "1"]
    assert quickstart.main([*args, "--preset", "smmnist"]) == 0
    assert seen and seen[0].max_minutes == 0.5 and seen[0].model == _tiny().model
    assert "--preset smmnist is ignored" in capsys.readouterr().out


def test_readme_python_example_runs() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_commands_are_the_ones_ci_runs() -> None:
    text = (ROOT / "README.md").read_text()
    bash = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert any('pip install -e ".[test]"' in b and "pytest" in b for b in bash)
    assert any('pip install -e ".[examples]"' in b and "examples.srvp.quickstart" in b for b in bash)
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'readme_cmd "pytest"' in ci and 'readme_cmd "examples.srvp.quickstart"' in ci


def test_bad_data_dir_leaves_no_half_made_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert train.main(["--preset", "tiny", "--run-dir", str(run), "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (run / "config.json").exists()


def test_infer_checks_user_given_frame_indices_once() -> None:
    torch.manual_seed(0)
    model = SRVP(_tiny().model).init_weights()
    x = torch.rand(4, 2, 1, 64, 64)
    with pytest.raises(ValueError, match="content_indices: expected frame indices in"):
        model.infer(x, content_indices=torch.tensor([[0, 4], [1, 2]]))
    with pytest.raises(ValueError, match="skip_index: expected size 2"):
        model.infer(x, skip_index=torch.tensor([0, 1, 2]))
