"""Import of official SRVP experiment directories as the authors released them (examples/srvp/official.py).

The released ``config.json`` files reportedly hold only the ~20 options the official ``test.py`` reads, not the
whole option list of ``train.py``. These tests build such directories for the five README configurations, at
``nf = 16`` to stay fast (the layouts at full width are checked key by key in tests/test_official.py), and
check what ``convert`` fills in, how it explains weights that do not fit, and the commands docs/srvp.md shows.
"""

from __future__ import annotations

import json
import re
import shlex
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from examples.srvp import data as data_cli
from examples.srvp import evaluate as evaluate_cli
from examples.srvp import train as train_cli
from examples.srvp.config import PRESETS, model_config_from_official
from examples.srvp.model import SRVP
from examples.srvp.official import load_official, main, official_state_dict

ROOT = Path(__file__).resolve().parents[1]

# The options a released config.json holds (those the official test.py reads).
RELEASED_KEYS = (
    "archi dataset deterministic max_speed n_euler_steps nc nf nh_inf nh_res nhx nlayers_inf nlayers_res nt_cond "
    "nt_inf ndigits nx ny nz seq_len_test skipco"
).split()
_COMMON = dict(max_speed=4, ndigits=2, nx=64, nf=16, nhx=128, nh_inf=256, nh_res=512, nlayers_inf=3, nlayers_res=4)
_VIDEO = dict(archi="vgg", skipco=True, n_euler_steps=2, ny=50, nz=50, deterministic=False)
RELEASED: dict[str, dict[str, Any]] = {
    # name -> the released-style config.json (SPEC 4.2's README lines, nf = 16)
    "smmnist": _COMMON
    | dict(archi="dcgan", skipco=False, dataset="smmnist", deterministic=False, n_euler_steps=1, nc=1)
    | dict(ny=20, nz=20, nt_cond=5, nt_inf=5, seq_len_test=25),
    "mmnist": _COMMON
    | dict(archi="dcgan", skipco=False, dataset="smmnist", deterministic=True, n_euler_steps=1, nc=1)
    | dict(ny=20, nz=20, nt_cond=5, nt_inf=5, seq_len_test=None),
    "kth": _COMMON | _VIDEO | dict(dataset="kth", nc=1, nt_cond=10, nt_inf=3, seq_len_test=30),
    "human36m": _COMMON | _VIDEO | dict(dataset="human", nc=3, nt_cond=8, nt_inf=3, seq_len_test=53),
    "bair": _COMMON | _VIDEO | dict(dataset="bair", nc=3, nt_cond=2, nt_inf=2, seq_len_test=None),
}
PRESET_OF = {"smmnist": "smmnist", "mmnist": "smmnist-deterministic", "kth": "kth", "human36m": "human36m"} | {
    "bair": "bair"
}
# The checkpoint the official README tests (KTH and Human3.6M: model_best.pt).
CHECKPOINT_OF = {"kth": "model_best.pt", "human36m": "model_best.pt"}
# Training-only options a released config.json lacks, and what the README line of the dataset sets them to
# when it changes the official default (SPEC 4.2).
README_VALUES = {
    "smmnist": dict(seq_len=15, beta_z=2.0),
    "mmnist": dict(seq_len=15, beta_z=2.0, lr_scheduling_burnin=800_000),
    "kth": dict(seq_len=20, obs_scale=0.2, res_gain=1.2, batch_size=100, lr_scheduling_burnin=150_000)
    | dict(lr_scheduling_n_iter=50_000, val_interval=5_000),
    "human36m": dict(seq_len=16, obs_scale=0.2, res_gain=1.2, batch_size=100, lr_scheduling_burnin=325_000)
    | dict(lr_scheduling_n_iter=25_000, batch_size_test=8),
    "bair": dict(seq_len=12, obs_scale=0.71, batch_size=192, lr_scheduling_n_iter=500_000),
}
README_NAMES = {"smmnist": "SM-MNIST", "mmnist": "deterministic Moving MNIST", "kth": "KTH"} | {
    "human36m": "Human3.6M",
    "bair": "BAIR",
}
TRAINING_ONLY = {"seq_len", "res_gain", "obs_scale", "beta_y", "beta_z", "l2_res", "batch_size", "lr"} | {
    "lr_scheduling_burnin",
    "lr_scheduling_n_iter",
    "val_interval",
    "batch_size_test",
    "n_iter_test",
    "n_samples_test",
}


@pytest.fixture(autouse=True)
def _isolated_global_rng() -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def _weights(options: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Random weights of the model that ``options`` describe, under official key names (a stand-in for trained
    ones: every float entry is random, so a wrong mapping shows; variances positive, so that it predicts)."""
    model_options = {"res_gain": 1.41, "obs_scale": 1.0, "beta_y": 1.0, "beta_z": 1.0, "l2_res": 1.0} | options
    state = official_state_dict(SRVP(model_config_from_official(model_options)))
    random = {k: 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    return random | {k: 0.5 + torch.rand_like(v) for k, v in state.items() if k.endswith(".running_var")}


# The training-only options, as train.py would dump them (for the tests of what a full config.json meets too).
FULL_TRAINING = {"seq_len": 15, "res_gain": 1.41, "obs_scale": 1.0, "beta_y": 1.0, "beta_z": 2.0, "l2_res": 1.0} | {
    "batch_size": 128,
    "lr": 3e-4,
    "lr_scheduling_burnin": 1_000_000,
    "lr_scheduling_n_iter": 100_000,
    "val_interval": 20_000,
    "batch_size_test": 16,
    "n_iter_test": 25,
    "n_samples_test": 100,
}


def _released_dir(
    root: Path, name: str, state: Any = None, checkpoint: str | None = None, full: bool = False, **changes: Any
) -> tuple[Path, dict[str, torch.Tensor]]:
    """A released-style official directory: the 20-option config.json (with ``changes``; None removes; ``full``:
    with the training-only options too, as a whole train.py dump) and the checkpoint of the README
    (``model.pt``, or ``model_best.pt`` for KTH and Human3.6M)."""
    options = dict(RELEASED[name])
    assert sorted(options) == sorted(RELEASED_KEYS)
    weights = _weights(options) if state is None else state
    options |= FULL_TRAINING if full else {}
    for key, value in changes.items():
        if value is None:
            options.pop(key, None)
        else:
            options[key] = value
    d = root / f"official_{name}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(options, indent=4))
    torch.save(weights, d / (checkpoint or CHECKPOINT_OF.get(name, "model.pt")))
    return d, weights


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# ------------------------------------------------------------------------------------------ filled options
@pytest.mark.parametrize("name", list(RELEASED))
def test_convert_a_released_config_of_each_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A config.json with only the options test.py reads converts: the training-only options come from the
    dataset's README line (the presets mirror those lines), one stderr line lists every value filled in and
    where it came from, and config.json records them. It failed on 'missing official options ['seq_len']'."""
    official, weights = _released_dir(tmp_path, name)
    out = tmp_path / "run"
    argv = ["convert", str(official), str(out)]
    if name in CHECKPOINT_OF:
        argv += ["--model-name", CHECKPOINT_OF[name]]
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "filled in" in line]
    assert len(notes) == 1, captured.err
    saved = json.loads((out / "config.json").read_text())
    filled = saved["official_filled_in"]
    expected_keys = TRAINING_ONLY | ({"subsampling"} if name == "human36m" else set())
    assert set(filled) == expected_keys
    for key, entry in filled.items():
        assert f"{key}={entry['value']!r}" in notes[0], key
        if key in README_VALUES[name]:
            assert entry["value"] == README_VALUES[name][key], key
            assert entry["from"] == f"the official README's {README_NAMES[name]} command line", key
        else:
            assert entry["from"] == "the official train.py defaults", key
    # The values are the README line's: the preset of the same line agrees on every training setting.
    preset = PRESETS[PRESET_OF[name]]()
    model, train = saved["model"], saved["train"]
    for field in ("obs_scale", "residual_gain", "beta_y", "beta_z", "residual_weight", "n_substeps"):
        assert model[field] == getattr(preset.model, field), field
    fields = ("seq_len", "batch_size", "lr", "lr_burnin", "lr_decay", "nt_cond", "val_interval", "val_batch_size")
    for field in (*fields, "val_sequences", "val_samples", "subsampling", "deterministic"):
        assert train[field] == getattr(preset, field), field
    assert train["seq_len_test"] == (RELEASED[name]["seq_len_test"] or preset.test_len)
    # The weights are the official ones.
    state = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert state["official_filled_in"] == filled
    from examples.srvp.checkpoint import load_model

    loaded = official_state_dict(load_model(out))  # type: ignore[arg-type]
    assert list(loaded) == list(weights)
    for key, value in weights.items():
        assert torch.equal(loaded[key], value), key


def test_a_full_config_fills_nothing_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Options config.json has are never replaced: given them all, nothing is filled in or recorded."""
    options = (
        dict(RELEASED["kth"])
        | {"seq_len": 20, "res_gain": 1.3, "obs_scale": 0.5, "beta_y": 1.0}
        | {
            "beta_z": 1.5,
            "l2_res": 0.0,
            "batch_size": 100,
            "lr": 3e-4,
            "lr_scheduling_burnin": 10,
            "lr_scheduling_n_iter": 10,
            "val_interval": 5,
            "batch_size_test": 16,
            "n_iter_test": 25,
            "n_samples_test": 100,
        }
    )
    official, _ = _released_dir(tmp_path, "kth", checkpoint="model.pt")
    (official / "config.json").write_text(json.dumps(options))
    assert main(["convert", str(official), str(tmp_path / "run")]) == 0
    assert "filled in" not in capsys.readouterr().err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "official_filled_in" not in saved
    assert (saved["model"]["obs_scale"], saved["model"]["beta_z"], saved["model"]["residual_gain"]) == (0.5, 1.5, 1.3)


def test_every_missing_required_option_is_named_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    official, _ = _released_dir(tmp_path, "smmnist", full=True, nhx=None, nt_cond=None, skipco=None)
    err = _error(["convert", str(official), str(tmp_path / "run")], capsys)
    assert (
        err == f"error: OFFICIAL_DIR: {official / 'config.json'}: missing official options ['nhx', 'nt_cond', 'skipco']"
    )


def test_load_official_fills_in_the_model_options_of_a_released_config(tmp_path: Path) -> None:
    official, weights = _released_dir(tmp_path, "kth", checkpoint="model.pt")
    model, options = load_official(official)
    assert "obs_scale" not in options  # (the options as config.json has them)
    assert (model.config.obs_scale, model.config.residual_gain, model.config.beta_z) == (0.2, 1.2, 1.0)
    assert torch.equal(official_state_dict(model)["q_z.weight"], weights["q_z.weight"])


@pytest.mark.parametrize(("text", "value"), [("False", False), ("false", False), ("TRUE", True)])
def test_string_booleans_are_read_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, value: bool
) -> None:
    """``"skipco": "False"`` was skip connections on (``bool("False")``), and the weights then did not fit."""
    official, _ = _released_dir(tmp_path, "smmnist", full=True, skipco="False", deterministic=text)
    out = tmp_path / "run"
    assert main(["convert", str(official), str(out)]) == 0, capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["skip_connections"] is False
    assert saved["train"]["deterministic"] is value


@pytest.mark.parametrize("text", ["no", "", "0", 1, [True]])
def test_a_boolean_that_is_not_one_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: Any) -> None:
    official, _ = _released_dir(tmp_path, "smmnist", full=True, skipco=text)
    err = _error(["convert", str(official), str(tmp_path / "run")], capsys)
    assert err == f"error: OFFICIAL_DIR: {official / 'config.json'}: skipco: expected true or false, got {text!r}"


# ---------------------------------------------------------------------------------------- mismatch hints
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # The decoder's input is [w, y]: 276 = nh_inf + ny channels, not a conv option.
        (
            {"ny": 30},
            "key 'decoder.first_upconv.0.weight' has shape [276, 128, 4, 4], the configuration expects "
            "[286, 128, 4, 4] (set by config.json's ny=30, nh_inf=256; the weights fit ny=20)",
        ),
        (
            {"nz": 30},
            "key 'q_z.weight' has shape [40, 256], the configuration expects [60, 256] (set by config.json's nz=30; "
            "the weights fit nz=20)",
        ),
        (
            {"nt_inf": 3},
            "key 'q_y.module.0.0.weight' has shape [256, 640], the configuration expects [256, 384] (set by "
            "config.json's nhx=128, nt_inf=3; the weights fit nt_inf=5)",
        ),
        (
            {"nf": 64},
            "key 'encoder.conv.0.0.weight' has shape [16, 1, 4, 4], the configuration expects [64, 1, 4, 4] (set by "
            "config.json's nf=64; the weights fit nf=16)",
        ),
        (
            {"skipco": True},
            "key 'decoder.conv.0.0.weight' has shape [128, 64, 4, 4], the configuration expects [256, 64, 4, 4] "
            "(set by config.json's nf=16, skipco=True; the weights fit skipco=False)",
        ),
    ],
    ids=["ny", "nz", "nt_inf", "nf", "skipco"],
)
def test_a_shape_mismatch_names_the_options_that_set_the_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, Any], message: str
) -> None:
    """The hint named the conv options (archi, skipco, nf, nc) for any encoder/decoder key, even when ny made the
    difference; now it names the options that set the dimensions that differ, and a value that fits."""
    official, _ = _released_dir(tmp_path, "smmnist", full=True, state=_weights(RELEASED["smmnist"]), **changes)
    err = _error(["convert", str(official), str(tmp_path / "run")], capsys)
    assert err == f"error: OFFICIAL_DIR: {official / 'model.pt'}: {message}"


def test_weights_of_another_architecture_name_the_options_that_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    official, _ = _released_dir(tmp_path, "smmnist", full=True, archi="vgg")
    err = _error(["convert", str(official), str(tmp_path / "run")], capsys)
    assert err.startswith(
        f"error: OFFICIAL_DIR: {official / 'model.pt'}: state dict does not match the configuration in config.json "
        "(the weights fit archi='dcgan', skipco=False, where config.json has archi='vgg', skipco=False); missing keys:"
    )


def test_a_state_dict_without_batchnorm_step_counters_loads(tmp_path: Path) -> None:
    """Files of PyTorch < 0.4.1 have no ``num_batches_tracked``; PyTorch's own BatchNorm loading accepts that."""
    weights = _weights(RELEASED["smmnist"])
    old = {k: v for k, v in weights.items() if not k.endswith(".num_batches_tracked")}
    assert len(weights) - len(old) == 8
    norm = torch.nn.BatchNorm2d(32)  # (encoder.conv.1: 2 nf channels)
    norm.load_state_dict({k.removeprefix("encoder.conv.1.1."): v for k, v in old.items() if "encoder.conv.1.1." in k})
    official, _ = _released_dir(tmp_path, "smmnist", full=True, state=old)
    model, _ = load_official(official)
    loaded = official_state_dict(model)
    for key, value in weights.items():
        if key.endswith(".num_batches_tracked"):
            assert int(loaded[key]) == 0, key
        else:
            assert torch.equal(loaded[key], value), key
    # Any other missing key is still an error.
    del old["q_z.bias"]
    official, _ = _released_dir(tmp_path, "smmnist", full=True, state=old)
    with pytest.raises(ValueError, match=r"missing keys: \[.*\] \(9 in all\); unexpected keys: none"):
        load_official(official)


def test_a_checkpoint_in_the_format_of_pytorch_1_4_converts(tmp_path: Path) -> None:
    """The paper's PyTorch 1.4 saved the older, non-zip format (the guide says convert reads it)."""
    weights = _weights(RELEASED["bair"])
    official, _ = _released_dir(tmp_path, "bair", state={})
    torch.save(weights, official / "model.pt", _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(official / "model.pt")
    model, _ = load_official(official)
    assert torch.equal(official_state_dict(model)["dynamics.module.3.1.weight"], weights["dynamics.module.3.1.weight"])


# ------------------------------------------------------------------------------------- damaged directories
def test_a_directory_with_only_model_best_says_which_name_to_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    official, _ = _released_dir(tmp_path, "kth", full=True)
    err = _error(["convert", str(official), str(tmp_path / "run")], capsys)
    assert err == (
        f"error: OFFICIAL_DIR: no checkpoint model.pt in {official}; it holds ['model_best.pt']: pass --model-name "
        "model_best.pt"
    )


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_a_state_dict_wrapped_in_a_dict_is_read_from_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], wrapper: str
) -> None:
    weights = _weights(RELEASED["smmnist"])
    official, _ = _released_dir(tmp_path, "smmnist", full=True, state={wrapper: weights, "epoch": 3})
    out = tmp_path / "run"
    assert main(["convert", str(official), str(out)]) == 0
    err = capsys.readouterr().err
    assert f"note: OFFICIAL_DIR: {official / 'model.pt'} holds the state dict under {wrapper!r}" in err
    from examples.srvp.checkpoint import load_model

    assert torch.equal(official_state_dict(load_model(out))["q_z.weight"], weights["q_z.weight"])  # type: ignore[arg-type]


def test_two_wrapped_state_dicts_are_not_guessed_between(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = _weights(RELEASED["smmnist"])
    official, _ = _released_dir(tmp_path, "smmnist", full=True, state={"model": weights, "ema": weights})
    err = _error(["convert", str(official), str(tmp_path / "run")], capsys)
    assert "holds several official state dicts, under ['model', 'ema']: save the one to import alone" in err


def test_a_non_finite_weight_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = _weights(RELEASED["smmnist"])
    weights["q_z.weight"][0, 0] = float("nan")
    official, _ = _released_dir(tmp_path, "smmnist", full=True, state=weights)
    err = _error(["convert", str(official), str(tmp_path / "run")], capsys)
    assert err.startswith(f"error: OFFICIAL_DIR: {official / 'model.pt'} holds weights that are not finite")
    assert "q_z.weight" in err


def test_verify_of_an_experiment_directory_points_to_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    official, _ = _released_dir(tmp_path, "smmnist", full=True)
    err = _error(["verify", str(official)], capsys)
    assert err == (
        f"error: FIXTURE_DIR: no inputs.pt nor outputs.pt in {official}: it is not a fixture of the official code "
        "(config.json, model.pt, inputs.pt, outputs.pt); to import an official experiment directory, use python -m "
        f"examples.srvp.official convert {official} OUT_DIR"
    )


@pytest.mark.parametrize("what", ["directory", "model_best.pt", "loose file"])
def test_train_init_from_official_weights_says_to_convert_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    official, _ = _released_dir(tmp_path, "kth", full=True)
    if what == "directory":
        source, expected = official, f"{official} is an experiment directory of the official SRVP code"
        command = f"convert {official} OUT_DIR, then"
    elif what == "model_best.pt":
        source, expected = official / "model_best.pt", f"{official / 'model_best.pt'} holds official SRVP weights"
        command = f"convert {official} OUT_DIR --model-name model_best.pt, then"
    else:
        source = tmp_path / "loose" / "weights.pt"
        source.parent.mkdir()
        source.write_bytes((official / "model_best.pt").read_bytes())
        expected, command = (
            f"{source} holds official SRVP weights",
            "convert OFFICIAL_DIR OUT_DIR --model-name weights.pt",
        )
    run = tmp_path / "new-run"
    assert train_cli.main(["--preset", "tiny", "--run-dir", str(run), "--init-from", str(source)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: --init-from: {expected}")
    assert f"python -m examples.srvp.official {command}" in err and err.rstrip().endswith("--init-from OUT_DIR")
    assert not run.exists()


# ---------------------------------------------------------------------------------------- printed commands
@pytest.mark.parametrize("name", ["smmnist", "mmnist"])
def test_the_printed_moving_mnist_commands_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The hint was '... (smmnist_test_2digits_64.npz made by python -m examples.srvp.data smmnist-test-set)',
    a command without its required --mnist-dir; now the complete command, which runs as printed."""
    official, _ = _released_dir(tmp_path, name)
    monkeypatch.chdir(tmp_path)
    assert main(["convert", str(official), "imported"]) == 0
    hint = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(
        r"evaluate it with: python -m examples\.srvp\.evaluate (\S+ .*?) \(make that test set first with: "
        r"python -m examples\.srvp\.data (.*?); --mnist-dir embedded reads the 1,000 MNIST test digits shipped "
        r"with latentdyn, a test set not comparable with the paper's: (.*)\)",
        hint,
    )
    assert match is not None, hint
    assert "--mnist-dir MNIST_DIR" in match.group(3) and "5,000 sequences" in match.group(3)
    make = shlex.split(match.group(2))
    assert ("--deterministic" in make) is (name == "mmnist")
    assert data_cli.main([*make, "--seq-len", "8"]) == 0  # (8 frames instead of 25 or 100: faster, same command)
    evaluate = shlex.split(match.group(1))
    assert ("--n-samples" in evaluate) is (name == "mmnist")
    extra = ["--max-sequences", "2", "--no-lpips", "--out", "eval"] + (["--n-samples", "2"] if name != "mmnist" else [])
    assert evaluate_cli.main([*evaluate, *extra]) == 0, capsys.readouterr().err
    assert list((tmp_path / "eval").glob("*.json"))


# ------------------------------------------------------------------------------------------ the guide
def _released_models_table() -> list[list[str]]:
    text = (ROOT / "docs" / "srvp.md").read_text(encoding="utf-8")
    section = text.split("### The released models, dataset by dataset", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]  # (row 0: the header)


TABLE_DATASETS = {"SM-MNIST": "smmnist", "deterministic Moving MNIST": "mmnist", "KTH": "kth"} | {
    "Human3.6M": "human36m",
    "BAIR": "bair",
}
PAPER = {
    "SM-MNIST": ["PSNR 16.93 ± 0.07", "SSIM 0.7799 ± 0.0020"],
    "KTH": ["PSNR 29.69", "SSIM 0.8697", "LPIPS 0.0736", "FVD 222"],
    "Human3.6M": ["FVD 416"],
    "BAIR": ["PSNR 19.59", "SSIM 0.8196", "LPIPS 0.0574", "FVD 163"],
}


def test_the_guide_s_table_of_released_models_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command of docs/srvp.md's table: the convert commands run on a released-style directory of their
    dataset, the data and evaluate commands parse and name the run that convert wrote; the paper's numbers are
    the paper's (SPEC)."""
    table = _released_models_table()
    assert [row[0] for row in table] == list(TABLE_DATASETS)
    monkeypatch.chdir(tmp_path)
    for row in table:
        name = TABLE_DATASETS[row[0]]
        for number in PAPER.get(row[0], []):
            assert number in row[4], (row[0], number)
        assert "no released checkpoint" in row[5].lower()
        official, _ = _released_dir(tmp_path, name)
        commands = [shlex.split(c) for c in re.findall(r"`(python -m examples\.srvp\.[^`]+)`", " ".join(row))]
        assert [c[2] for c in commands] == ["examples.srvp.official", "examples.srvp.data", "examples.srvp.evaluate"]
        convert, make, evaluate = (c[3:] for c in commands)
        assert main([str(official) if word == "OFFICIAL_DIR" else word for word in convert]) == 0, row[0]
        capsys.readouterr()
        data_cli.build_parser().parse_args(make)
        args = evaluate_cli.build_parser().parse_args(evaluate)
        assert (args.run_dir / "checkpoints" / "best.pt").is_file(), row[0]
        assert Path(convert[2]) == args.run_dir
