"""Reproducibility of the SRVP evaluation (examples/srvp/evaluate.py): a test sequence's samples depend only on the
seed and its index, an evaluation does not silently replace another's results, and the results say what made them."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from einops import rearrange
from shared_fixtures import calibrated

from examples.srvp import evaluate as ev
from examples.srvp import train
from examples.srvp.checkpoint import load_model
from examples.srvp.config import PRESETS
from examples.srvp.model import SRVP, FrameModel
from latentdyn.distributions import diag_gaussian
from latentdyn.ssm import default_sampler

N_CLIPS = 8


@pytest.fixture(autouse=True)
def _isolated_global_rng() -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    """8 uint8 test clips (T=6, N, C=1, 64, 64) of moving bright squares on black."""
    gen = torch.Generator().manual_seed(0)
    out = torch.zeros(6, N_CLIPS, 1, 64, 64, dtype=torch.uint8)
    for n in range(N_CLIPS):
        y, x = torch.randint(0, 40, (2,), generator=gen).tolist()
        dy, dx = torch.randint(-3, 4, (2,), generator=gen).tolist()
        for t in range(6):
            out[t, n, 0, y + dy * t + 8 : y + dy * t + 20, x + dx * t + 8 : x + dx * t + 20] = 200 + 5 * n
    return out


@pytest.fixture(scope="module")
def model(clips: torch.Tensor) -> SRVP:
    """The tiny preset, untrained, with its BatchNorm statistics set by one pass over the clips (with the initial
    statistics every frame decodes to about 0.5 and the samples barely differ)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SRVP(PRESETS["tiny"]().model).init_weights()
        return calibrated(net, clips.float() / 255)


def _protocol(**changes: Any) -> ev.EvalProtocol:
    values: dict[str, Any] = dict(nt_cond=2, nt_gen=6, n_samples=4, n_substeps=1, batch_size=3, seed=1)
    return ev.EvalProtocol(**{**values, "max_sequences": 0, **changes})


def _evaluate(model: SRVP, clips: torch.Tensor, **options: Any) -> dict[str, Any]:
    protocol = options.pop("protocol", _protocol())
    return ev.evaluate(model, clips, protocol, progress=False, **options)


def _per_sequence(result: dict[str, Any]) -> dict[str, np.ndarray]:
    return {m: np.asarray(v) for m, v in result["_per_sequence"].items()}


def _assert_same_per_sequence(a: dict[str, np.ndarray], b: dict[str, np.ndarray], exact: bool = False) -> None:
    """The same scores per sequence: bit for bit, or up to the rounding of predict calls of other numbers of rows
    (about 1e-7 relative; different samples differ by 1e-3 and more)."""
    assert a.keys() == b.keys()
    for m in a:
        if exact:
            assert np.array_equal(a[m], b[m]), (m, np.abs(a[m] - b[m]).max())
        else:
            np.testing.assert_allclose(a[m], b[m], rtol=1e-5, atol=1e-6, err_msg=m)


def _assert_close(a: Any, b: Any) -> None:
    """Nested results (dicts, lists, numbers) equal up to rounding."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_close(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_close(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    else:
        assert a == b


def _assert_same_frames(a: np.ndarray, b: np.ndarray) -> None:
    """uint8 frames of the same samples: a value on a rounding boundary may move by one level, nothing more."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert a.shape == b.shape and diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


# --------------------------------------------------------------------------- samples per sequence, not per batch
def test_per_sequence_results_do_not_depend_on_the_batch_size(model: SRVP, clips: torch.Tensor) -> None:
    """Batch sizes 1, 3 and 8 give every sequence the same samples, hence the same best-of-N scores, curves,
    reference scores, GIF frames and official sample files, up to the rounding of predict calls of another
    number of rows."""
    results = {
        b: _evaluate(model, clips, protocol=_protocol(batch_size=b), official_files=True, n_gif=4) for b in (1, 3, 8)
    }
    first = results[1]
    assert first["metrics"]["psnr"]["mean"] != first["worst_sample"]["psnr"]["mean"]  # the samples do differ
    for b in (3, 8):
        _assert_same_per_sequence(_per_sequence(results[b]), _per_sequence(first))
        for key in ("metrics", "worst_sample", "reference_predictors"):
            _assert_close(results[b][key], first[key])
        for key in ("_gif", "_official"):
            assert results[b][key].keys() == first[key].keys()
            for name, value in first[key].items():
                _assert_same_frames(np.asarray(results[b][key][name]), np.asarray(value))


def test_a_sequence_s_results_do_not_depend_on_the_other_clips(model: SRVP, clips: torch.Tensor) -> None:
    """The first 5 clips (max_sequences), or clips 4-7 alone given their indices, get the samples they get in the
    evaluation of all 8, although the batches (of 3) are cut differently; with batches of one sequence, their
    scores are bit for bit the same."""
    whole = _per_sequence(_evaluate(model, clips))
    head = _per_sequence(_evaluate(model, clips, protocol=_protocol(max_sequences=5)))
    _assert_same_per_sequence(head, {m: v[:5] for m, v in whole.items()})
    tail = _per_sequence(_evaluate(model, clips[:, 4:], indices=range(4, N_CLIPS)))
    _assert_same_per_sequence(tail, {m: v[4:] for m, v in whole.items()})
    one = _protocol(batch_size=1)
    whole_1 = _per_sequence(_evaluate(model, clips, protocol=one))
    tail_1 = _per_sequence(_evaluate(model, clips[:, 4:], protocol=one, indices=range(4, N_CLIPS)))
    _assert_same_per_sequence(tail_1, {m: v[4:] for m, v in whole_1.items()}, exact=True)


def test_a_permuted_test_set_gives_each_sequence_the_same_results(model: SRVP, clips: torch.Tensor) -> None:
    """The clips in another order, each with its index in the test set, score as in the original order (compared
    sequence by sequence); without their indices they draw the noise of their new places."""
    perm = torch.randperm(N_CLIPS, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(perm, torch.arange(N_CLIPS))
    whole = _per_sequence(_evaluate(model, clips))
    permuted = _per_sequence(_evaluate(model, clips[:, perm], indices=perm))
    _assert_same_per_sequence(permuted, {m: v[perm.numpy()] for m, v in whole.items()})
    renumbered = _per_sequence(_evaluate(model, clips[:, perm]))
    assert not np.array_equal(renumbered["psnr"], permuted["psnr"])


def test_the_seed_and_the_index_give_each_sequence_its_own_generator() -> None:
    seeds = {ev.sequence_seed(s, i) for s in (0, 1, 2, -1) for i in range(50)}
    assert len(seeds) == 200 and all(0 <= s < 2**64 for s in seeds)
    assert ev.sequence_seed(-1, 3) == ev.sequence_seed(2**64 - 1, 3)  # as torch.manual_seed reads -1
    gens = ev.sequence_generators(1, [5, 5, 6])
    draws = [torch.randn(3, generator=g) for g in gens]
    assert all(g.device.type == "cpu" for g in gens)  # the same noise whichever device the model runs on
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_the_evaluation_seeds_are_a_stream_of_their_own() -> None:
    """The test sequences' seeds differ from the training batches' and validation clips' seeds of the same
    (seed, index) (datasets.step_seed streams 0 and 1): no evaluation noise repeats a training draw."""
    from examples.srvp.datasets import step_seed

    for seed in (0, 1, 42):
        for index in range(20):
            low_word = ev.sequence_seed(seed, index) % 2**32  # (step_seed's seeds are 32-bit words)
            assert low_word not in {step_seed(seed, index, stream) for stream in (0, 1)}


class _NoiseEcho(FrameModel):
    """A stand-in model whose prediction is its noise: a y_0 draw (N·B, 5) and a posterior draw (2, N·B, 3), given
    back as {"y0": (n, B, 5), "z": (n, 2, B, 3)} (no network, so no rounding)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = PRESETS["tiny"]().model
        self.encoder = torch.nn.Identity()

    def predict(self, cond: torch.Tensor, n_future: int, n_samples: int = 1, **kwargs: Any) -> Any:
        b = cond.shape[1]
        draw = kwargs["sampler"] or default_sampler(kwargs.get("sample", True))
        loc = torch.zeros(n_samples * b, 5)
        y0 = draw(diag_gaussian(loc, torch.ones_like(loc)), "y0")
        loc = torch.full((2, n_samples * b, 3), 1.0)
        z = draw(diag_gaussian(loc, torch.full_like(loc, 2.0)), "z_posterior")
        return {
            "y0": rearrange(y0, "(n b) d -> n b d", n=n_samples),
            "z": rearrange(z, "t (n b) d -> n t b d", n=n_samples),
        }


def test_predict_in_chunks_draws_each_sequence_s_noise_from_its_own_generator() -> None:
    """Sequence b's noise comes from generators[b] alone: the same in a batch of 3 as alone, whatever the chunk
    size; the global generator is not used."""
    from examples.srvp.model import predict_in_chunks

    stub = _NoiseEcho()
    x = torch.zeros(2, 3, 1, 64, 64)

    def draws(frames: torch.Tensor, indices: list[int], chunk: int) -> dict[str, torch.Tensor]:
        gens = ev.sequence_generators(7, indices)
        parts = list(predict_in_chunks(stub, frames, 1, 5, chunk, generators=gens))
        return {k: torch.cat([p.prediction[k] for p in parts]) for k in ("y0", "z")}

    torch.manual_seed(5)
    together = draws(x, [0, 1, 2], 5)
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    for chunk in (1, 2, 5):
        assert all(torch.equal(v, together[k]) for k, v in draws(x, [0, 1, 2], chunk).items())
    for b in range(3):
        alone = draws(x[:, b : b + 1], [b], 2)
        assert torch.equal(alone["y0"][:, 0], together["y0"][:, b])
        assert torch.equal(alone["z"][:, :, 0], together["z"][:, :, b])
    assert not torch.equal(together["y0"][:, 0], together["y0"][:, 1])  # each sequence its own noise
    gens = ev.sequence_generators(7, [0, 1, 2])
    with pytest.raises(ValueError, match=r"generators: expected one per sequence \(3\), got 2"):
        list(predict_in_chunks(stub, x, 1, 5, 2, generators=gens[:2]))
    with pytest.raises(TypeError, match=r"generators: expected a list of torch.Generator, one per sequence, got int"):
        list(predict_in_chunks(stub, x, 1, 5, 2, generators=3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"generators: they draw the samples' noise; pass them without a sampler"):
        list(predict_in_chunks(stub, x, 1, 5, 2, generators=gens, sample=False))


def test_noise_batch_draws_as_the_official_test_script(model: SRVP, clips: torch.Tensor) -> None:
    """``noise="batch"``: the global generator seeded once, each batch's N·B rows drawn in one predict call (the
    official test.py), so the samples depend on the batch size."""
    result = _evaluate(model, clips, protocol=_protocol(batch_size=3), noise="batch", sample_chunk=4)
    torch.manual_seed(1)
    expected = []
    with torch.no_grad():
        for lo in range(0, N_CLIPS, 3):
            x = clips[:6, lo : lo + 3].float() / 255
            frames = model.predict(x[:2], 4, 4, decode_cond=False).frames
            expected.append(ev._frame_scores(frames, x[2:])["psnr"].mean(-1).max(0).values)
    assert np.array_equal(result["_per_sequence"]["psnr"], torch.cat(expected).numpy())
    other = _evaluate(model, clips, protocol=_protocol(batch_size=8), noise="batch", sample_chunk=4)
    assert not np.array_equal(other["_per_sequence"]["psnr"], result["_per_sequence"]["psnr"])
    assert result["provenance"]["noise"] == "batch"


def test_evaluate_checks_the_noise_options(model: SRVP, clips: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"noise: expected one of 'sequence', 'batch', got 'global'"):
        _evaluate(model, clips, noise="global")
    with pytest.raises(ValueError, match=r"indices: expected one per clip \(8\), got 3"):
        _evaluate(model, clips, indices=[0, 1, 2])
    with pytest.raises(ValueError, match=r"indices\[1\]: expected an int >= 0, got -1"):
        _evaluate(model, clips, indices=[0, -1, *range(2, N_CLIPS)])
    with pytest.raises(ValueError, match=r"indices: they seed the noise of noise='sequence', got noise='batch'"):
        _evaluate(model, clips, indices=range(N_CLIPS), noise="batch")
    with pytest.raises(TypeError, match=r"indices: expected N ints >= 0, one per clip, got str"):
        _evaluate(model, clips, indices="01234567")


def test_saved_progress_records_the_noise_mode(tmp_path: Path, model: SRVP, clips: torch.Tensor) -> None:
    """The progress file's fingerprint holds the noise mode: another mode is refused; progress saved before the
    modes existed (no "noise" in it) was drawn as "batch" and continues only as "batch"."""
    from examples.srvp.checkpoint import read_torch_file, save_checkpoint

    state = tmp_path / "eval.partial.pt"
    _evaluate(model, clips, noise="batch", state_file=state)
    with pytest.raises(ev.StateMismatchError, match="noise: 'batch' saved, 'sequence' now") as mismatch:
        _evaluate(model, clips, state_file=state)
    assert mismatch.value.differences == [("noise", "batch", "sequence")]
    saved = read_torch_file(state, "state_file")
    del saved["fingerprint"]["noise"], saved["fingerprint"]["sequence indices"]
    save_checkpoint(state, saved)
    with pytest.raises(ev.StateMismatchError, match="noise: 'batch' saved, 'sequence' now"):
        _evaluate(model, clips, state_file=state)
    again = _evaluate(model, clips, noise="batch", state_file=state)  # complete: the results without sampling
    assert again["metrics"] == _evaluate(model, clips, noise="batch")["metrics"]
    permuted = tmp_path / "permuted.partial.pt"
    _evaluate(model, clips, indices=range(N_CLIPS - 1, -1, -1), state_file=permuted)
    with pytest.raises(ev.StateMismatchError, match="other sequence indices"):
        _evaluate(model, clips, indices=[1, 0, *range(2, N_CLIPS)], state_file=permuted)
    with pytest.raises(ev.StateMismatchError, match="sequence indices: 'given' saved, '0 … N−1' now"):
        _evaluate(model, clips, state_file=permuted)


def test_progress_saved_by_earlier_versions_continues(tmp_path: Path, model: SRVP, clips: torch.Tensor) -> None:
    """Progress saved before the fingerprint held the sample chunk and the model configuration, or before the
    configuration had its newer fields (which held their defaults then), continues; a configuration that differs in
    a field it recorded is still refused."""
    from examples.srvp.checkpoint import read_torch_file, save_checkpoint

    plain = _evaluate(model, clips)
    state = tmp_path / "eval.partial.pt"
    _evaluate(model, clips, state_file=state)
    saved = read_torch_file(state, "state_file")
    recorded = dict(saved["fingerprint"]["model configuration"])
    assert {"integrator_rtol", "integrator_atol"} <= recorded.keys()
    for key in ("integrator_rtol", "integrator_atol"):  # written before these fields existed
        del saved["fingerprint"]["model configuration"][key]
    save_checkpoint(state, saved)
    assert _evaluate(model, clips, state_file=state)["metrics"] == plain["metrics"]
    del saved["fingerprint"]["sample_chunk"], saved["fingerprint"]["model configuration"]  # not recorded at all
    save_checkpoint(state, saved)
    assert _evaluate(model, clips, state_file=state)["metrics"] == plain["metrics"]
    saved["fingerprint"]["model configuration"] = {**recorded, "n_substeps": recorded["n_substeps"] + 1}
    save_checkpoint(state, saved)
    with pytest.raises(ev.StateMismatchError, match="other model configuration"):
        _evaluate(model, clips, state_file=state)


# ------------------------------------------------------------------------------------------------- provenance
def test_results_record_what_decides_the_numbers(model: SRVP, clips: torch.Tensor) -> None:
    import latentdyn

    result = _evaluate(model, clips)
    prov = result["provenance"]
    assert (prov["noise"], prov["amp"], prov["device"]) == ("sequence", "none", "cpu")
    assert prov["torch_threads"] == torch.get_num_threads()
    versions = prov["versions"]
    assert versions["torch"] == torch.__version__ and versions["numpy"] == np.__version__
    assert versions["latentdyn"] == latentdyn.__version__ and versions["python"] == "{}.{}.{}".format(*sys.version_info)
    digests = prov["digests"]
    assert digests["model_weights"] == ev._digest(model.state_dict().items())
    assert digests["test_clips"] == ev._digest([("clips", clips[:6])])
    assert digests["lpips_weights"] is None and digests["sequence_indices"] is None
    json.dumps(prov)  # JSON-ready
    head = _evaluate(model, clips, protocol=_protocol(max_sequences=2), indices=range(7, -1, -1))
    assert head["provenance"]["digests"]["test_clips"] == ev._digest([("clips", clips[:6, :2])])
    assert head["provenance"]["digests"]["sequence_indices"] is not None


# ------------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def run_and_test_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run after 2 training steps and a small SM-MNIST test set (12 sequences of 6 frames)."""
    from latentdyn.video.mnist import load_embedded_digits
    from latentdyn.video.moving_mnist import make_test_set, save_test_set

    root = tmp_path_factory.mktemp("evalrepro")
    train.train(PRESETS["tiny"](), root / "run", max_steps=2, progress=False, log=lambda _: None)
    digits = load_embedded_digits("test")
    data = make_test_set(digits.images[:24], digits.labels[:24], seq_len=6, deterministic=False)
    return root / "run", save_test_set(root / "test.npz", data)


def _cli_run(run_and_test_set: tuple[Path, Path], tmp_path: Path) -> tuple[Path, list[str]]:
    run = Path(shutil.copytree(run_and_test_set[0], tmp_path / "run"))
    argv = [str(run), "--test-set", str(run_and_test_set[1]), "--no-lpips", "--n-samples", "2", "--max-sequences", "3"]
    return run, argv


def test_an_evaluation_with_other_settings_does_not_replace_earlier_results(
    tmp_path: Path, run_and_test_set: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Same default name, other --seed: refused before anything is computed, naming the difference; --overwrite
    replaces the results, and the same command again replaces them silently (same settings)."""
    run, argv = _cli_run(run_and_test_set, tmp_path)
    assert ev.main(argv) == 0
    (out,) = (run / "eval").glob("*.json")
    first = out.read_text()
    capsys.readouterr()
    assert ev.main([*argv, "--seed", "2", "--amp", "bf16"]) == 2
    out_text, err = capsys.readouterr()
    # Refused before anything else: before the "LPIPS skipped" line, the progress bar and the sampling.
    assert out_text == "" and err.count("\n") == 1 and "Traceback" not in err
    assert f"error: {out} holds results of an evaluation with other settings (--seed: 1 there, 2 now; " in err
    assert "--amp: 'none' there, 'bf16' now)" in err
    assert "pass --overwrite to replace it, or --name to write these under another name" in err
    assert out.read_text() == first and not list((run / "eval").glob("*.partial.pt"))
    assert ev.main([*argv, "--seed", "2", "--name", "seed2"]) == 0
    assert json.loads((run / "eval" / "seed2.json").read_text())["protocol"]["seed"] == 2
    assert ev.main([*argv, "--seed", "2", "--overwrite"]) == 0
    assert json.loads(out.read_text())["protocol"]["seed"] == 2
    assert ev.main([*argv, "--seed", "2"]) == 0  # the same settings: replaced without a question
    assert ev.main([*argv, "--seed", "2", "--batch-size", "1", "--noise", "batch"]) == 2
    assert "(--batch-size: 16 there, 1 now; --noise: 'sequence' there, 'batch' now)" in capsys.readouterr().err


def test_a_stopped_evaluation_of_other_options_says_which_flags_continue_it(
    tmp_path: Path,
    run_and_test_set: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Progress saved with other command-line options (e.g. under an earlier default of --noise): the message names
    the flags that continue it, not "the command that started it", which may be the very command given."""
    run, argv = _cli_run(run_and_test_set, tmp_path)
    monkeypatch.setattr(ev, "discard_progress", lambda _: None)  # the progress stays, as if the evaluation stopped
    assert ev.main([*argv, "--name", "p", "--noise", "batch", "--seed", "4"]) == 0
    monkeypatch.undo()
    capsys.readouterr()
    assert ev.main([*argv, "--name", "p", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished evaluation with other settings (--seed: 4 saved, 1 now; --noise: 'batch' saved, " in err
    assert "'sequence' now): continue it with its settings (add --seed 4 --noise batch), pass --restart to " in err
    assert ev.main([*argv, "--name", "p", "--overwrite", "--seed", "4", "--noise", "batch"]) == 0
    assert not (run / "eval" / "p.partial.pt").exists()
    # A switch that was off is to be left out (there is no --no-fvd to add).
    assert ev._flag_that_continues("fvd", False) == (False, "--fvd")
    assert ev._flag_that_continues("fvd_samples", 5) == (True, "--fvd-samples 5")
    assert ev._flag_that_continues("amp", "fp16") is None  # (a value the command line no longer takes)


def test_results_with_a_metric_this_evaluation_does_not_compute_are_not_replaced(
    tmp_path: Path,
    run_and_test_set: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Earlier results with LPIPS and FVD are not replaced by results without them: neither when they are not
    asked for (refused before anything is read) nor when their weights are missing (refused once that is known)."""
    from latentdyn.video.fvd import I3D_ENV_VAR
    from latentdyn.video.lpips import ALEXNET_ENV_VAR, LPIPS_ENV_VAR

    for var in (ALEXNET_ENV_VAR, LPIPS_ENV_VAR, I3D_ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no AlexNet or I3D weights anywhere
    run, argv = _cli_run(run_and_test_set, tmp_path)
    assert ev.main(argv) == 0
    (out,) = (run / "eval").glob("*.json")
    saved = json.loads(out.read_text())
    assert "skipped" in saved["lpips"] and "skipped" in saved["fvd"]
    saved["lpips"] = {"network": "AlexNet (ImageNet) + LPIPS linear weights v0.1"}  # as if both were computed
    saved["fvd"] = {"value": 123.0}
    out.write_text(json.dumps(saved))
    capsys.readouterr()
    assert ev.main(argv) == 2
    out_text, err = capsys.readouterr()
    assert out_text == "" and "(LPIPS: computed there, not now; FVD: computed there, not now)" in err
    without_flag = [a for a in argv if a != "--no-lpips"]
    assert ev.main([*without_flag, "--fvd"]) == 2  # asked for, but the weights are missing
    out_text, err = capsys.readouterr()
    assert "(LPIPS: computed there, not now; FVD: computed there, not now)" in err
    assert "skipped" not in out_text and json.loads(out.read_text()) == saved
    del saved["fvd"]  # a file without an FVD entry (or with a skipped one) asks for nothing
    out.write_text(json.dumps(saved))
    assert ev.main(without_flag) == 2
    assert "(LPIPS: computed there, not now)" in capsys.readouterr().err
    assert ev.main([*argv, "--overwrite"]) == 0
    assert "skipped" in json.loads(out.read_text())["lpips"]


def test_the_results_are_never_written_through_a_symbolic_link(
    tmp_path: Path, run_and_test_set: tuple[Path, Path]
) -> None:
    """The curves plot went through a fixed temporary name: a run directory shared by someone else with a
    symbolic link there made the evaluation overwrite the linked file (any file the user can write)."""
    run, argv = _cli_run(run_and_test_set, tmp_path)
    assert ev.main(argv) == 0
    (out,) = (run / "eval").glob("*.json")
    victim = tmp_path / "precious.txt"
    victim.write_text("precious")
    for path in [p for p in (run / "eval").iterdir() if not p.name.startswith(".")]:  # (not the results' lock)
        path.unlink()
        path.symlink_to(victim)  # the results' own names
        for temporary in (f".{path.name}.tmp.png", f".{path.name}.tmp"):
            (path.parent / temporary).symlink_to(victim)  # and the temporary names used before
    assert ev.main([*argv, "--overwrite"]) == 0  # (NAME.json, a link to a text file, is not results)
    assert victim.read_bytes() == b"precious"
    assert (run / "eval" / f"{out.stem}_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = [p for p in (run / "eval").iterdir() if not p.name.startswith(".")]
    assert written and not any(p.is_symlink() for p in written)


def test_results_written_before_the_noise_modes_count_as_batch_noise(
    tmp_path: Path, run_and_test_set: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, argv = _cli_run(run_and_test_set, tmp_path)
    assert ev.main([*argv, "--noise", "batch"]) == 0
    (out,) = (run / "eval").glob("*.json")
    old = json.loads(out.read_text())
    del old["provenance"]  # as the evaluation wrote it before
    out.write_text(json.dumps(old))
    assert ev.main([*argv, "--noise", "batch"]) == 0
    assert ev.main(argv) == 2
    assert "(--noise: 'batch' there, 'sequence' now)" in capsys.readouterr().err
    for text in ("not json", "[" * 100_000):  # (the second: nested too deeply for the parser)
        out.write_text(text)
        assert ev.main(argv) == 2
        assert f"{out} holds something other than the results of an evaluation: pass --overwrite" in (
            capsys.readouterr().err
        )


def test_the_cli_results_record_the_command_and_the_provenance(
    tmp_path: Path, run_and_test_set: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, argv = _cli_run(run_and_test_set, tmp_path)
    assert ev.main([*argv, "--name", "prov"]) == 0
    result = json.loads((run / "eval" / "prov.json").read_text())
    prov = result["provenance"]
    assert prov["command"] == ["python", "-m", "examples.srvp.evaluate", *argv, "--name", "prov"]
    assert (prov["noise"], prov["amp"], prov["device"]) == ("sequence", "none", "cpu")
    assert set(prov["versions"]) == {"python", "torch", "numpy", "latentdyn"}
    model = load_model(run, "last")
    assert prov["digests"]["model_weights"] == ev._digest(model.state_dict().items())
    clips = ev.load_sequences(run_and_test_set[1])[:, :3]
    assert prov["digests"]["test_clips"] == ev._digest([("clips", clips)])
    assert dataclasses.is_dataclass(model.config)


def test_two_evaluations_of_one_name_at_once_do_not_replace_each_other(
    tmp_path: Path, run_and_test_set: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two evaluations with the same default name (other --seed) running at once both reported success and the
    one that ended last replaced the other's results (the settings were compared only at the start): the second
    is refused while the first holds the name; a killed one's half-written files are removed by the next."""
    from examples.srvp.checkpoint import FileLock

    pytest.importorskip("fcntl")
    run, argv = _cli_run(run_and_test_set, tmp_path)
    assert ev.main(argv) == 0
    (out,) = (run / "eval").glob("*.json")
    name = out.stem
    first = FileLock()  # as an evaluation of that name still running (in another process)
    first.acquire(run / "eval" / f".{name}.lock", "run_dir", busy="held")
    try:
        capsys.readouterr()
        assert ev.main([*argv, "--seed", "7", "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"error: run_dir: another evaluation (process {os.getpid()}) is writing the results named {name}" in err
        assert "pass --name to write these under another name" in err
    finally:
        first.release()
    stale = [run / "eval" / f".{name}.partial.pt.k7x2_q9a.tmp", run / "eval" / f".{name}.json.abcdefgh.tmp"]
    kept = run / "eval" / f".{name}_other.json.abcdefgh.tmp"  # another name's: not this evaluation's to remove
    for path in [*stale, kept]:
        path.write_bytes(b"half-written by a killed evaluation")
    assert ev.main(argv) == 0
    assert not any(path.exists() for path in stale) and kept.exists()


# ---------------------------------------------------------------------------------------- official sample files
def _official_bytes(folder: Path) -> dict[str, bytes]:
    """The bytes of every file in ``folder`` (with ``_fixed_zip_time`` the .npz files carry no date of their own)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def _fixed_zip_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The .npz files are zip files whose members carry the time they were written: fixed, so that two runs can
    write byte-identical files."""
    import time
    import types
    import zipfile

    clock = types.SimpleNamespace(time=lambda: 1_700_000_000.0, localtime=time.localtime)
    monkeypatch.setattr(zipfile, "time", clock)


def _stop_in_batch(monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    """Ctrl-C in the ``batch``-th batch (1-based) that ``evaluate`` computes from now on."""
    evaluate_batch, calls = ev._evaluate_batch, []

    def stop(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == batch:
            raise KeyboardInterrupt
        return evaluate_batch(*args, **kwargs)

    monkeypatch.setattr(ev, "_evaluate_batch", stop)


@pytest.mark.usefixtures("_fixed_zip_time")
def test_an_interrupted_evaluation_writes_the_official_files_of_an_uninterrupted_one(
    tmp_path: Path, model: SRVP, clips: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped twice, an evaluation with official files continues from the arrays kept in its work folder next to
    the progress, and writes files byte-identical to those of an uninterrupted one; progress saved by an earlier
    version, with the arrays in its batches, continues too. The work folder holds nothing else."""
    options: dict[str, Any] = dict(official_files=True, sample_chunk=3, save_every=3600)
    whole = _evaluate(model, clips, **options)  # no state file: the arrays go through a temporary folder
    expected = _official_bytes(ev.write_official_files(whole, tmp_path / "whole"))
    state = tmp_path / "eval.partial.pt"
    work = ev.official_work_dir(state)
    assert work == tmp_path / "eval_official.partial"
    for stop, done in ((2, 3), (2, 6)):  # batches of 3 sequences: stopped in batches 2 and 3
        _stop_in_batch(monkeypatch, stop)
        with pytest.raises(KeyboardInterrupt) as stopped:
            _evaluate(model, clips, state_file=state, **options)
        monkeypatch.undo()
        assert stopped.value.saved_progress == ev.SavedProgress(done, N_CLIPS, state)  # type: ignore[attr-defined]
        assert sorted(p.name for p in work.iterdir()) == sorted(f"{name}.npy" for name in whole["_official"])
    continued = _evaluate(model, clips, state_file=state, **options)
    assert continued["throughput"]["resumed_at"] == [3, 6]
    assert _official_bytes(ev.write_official_files(continued, tmp_path / "continued")) == expected
    again = _evaluate(model, clips, state_file=state, **options)  # complete: from the files, without sampling
    assert _official_bytes(ev.write_official_files(again, tmp_path / "again")) == expected

    # Progress saved with the arrays in its batches (before they were kept apart) continues from them.
    from examples.srvp.checkpoint import read_torch_file, save_checkpoint

    ev.discard_progress(state)
    assert not state.exists() and not work.exists()
    _stop_in_batch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        _evaluate(model, clips, state_file=state, **options)
    monkeypatch.undo()
    saved = read_torch_file(state, "state_file")
    arrays = {name: np.load(work / f"{name}.npy") for name in saved.pop("official")}
    for i, batch in enumerate(saved["batches"]):
        batch["official"] = {name: torch.from_numpy(a[3 * i : 3 * i + 3].copy()) for name, a in arrays.items()}
    save_checkpoint(state, saved)
    shutil.rmtree(work)
    old = _evaluate(model, clips, state_file=state, **options)
    assert old["throughput"]["resumed_at"] == [6]
    assert _official_bytes(ev.write_official_files(old, tmp_path / "old")) == expected

    # A work folder that lost an array is not taken for one that holds the progress.
    (work / "psnr_best.npy").unlink()
    with pytest.raises(ValueError, match=r"state_file: .*eval.partial.pt: its official sample arrays are missing"):
        _evaluate(model, clips, state_file=state, **options)
    ev.discard_progress(state)
    assert not state.exists() and not work.exists()


def test_the_saved_progress_does_not_grow_with_the_official_arrays(
    tmp_path: Path, model: SRVP, clips: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: every batch's official sample arrays were kept in memory and pickled into the progress file
    at every save (about 1.2 MiB per SM-MNIST sequence, 6 GiB for a whole test set, rewritten at each save). The
    file now grows by the batches' scores only; the arrays go to the work folder, batch by batch."""
    from examples.srvp.checkpoint import read_torch_file

    state = tmp_path / "eval.partial.pt"
    sizes: list[int] = []
    save = ev._save_progress

    def measured(*args: Any) -> None:
        save(*args)
        sizes.append(state.stat().st_size)

    monkeypatch.setattr(ev, "_save_progress", measured)
    options: dict[str, Any] = dict(official_files=True, save_every=0, n_gif=0, protocol=_protocol(batch_size=2))
    result = _evaluate(model, clips, state_file=state, **options)
    per_sequence = sum(a[0].nbytes for a in result["_official"].values())  # 34 frames of 64×64: 136 KiB
    assert len(sizes) == N_CLIPS // 2  # a save after each batch of 2 sequences
    assert sizes[-1] - sizes[0] < per_sequence / 4  # 6 more sequences: a few KiB of scores (0.8 MiB before)
    saved = read_torch_file(state, "state_file")
    assert saved["done"] == N_CLIPS and not any("official" in batch for batch in saved["batches"])
    layout = {name: {"shape": list(a.shape), "dtype": "|u1"} for name, a in result["_official"].items()}
    assert saved["official"] == layout
    work = ev.official_work_dir(state)
    for name, array in result["_official"].items():  # read-only maps of the work folder's files
        assert isinstance(array, np.memmap) and not array.flags.writeable
        assert Path(array.filename) == work / f"{name}.npy"


@pytest.mark.usefixtures("_fixed_zip_time")
def test_the_cli_continues_the_official_files_of_a_stopped_evaluation(
    tmp_path: Path,
    run_and_test_set: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--save-official-files: a stopped evaluation keeps the arrays of its complete batches in
    eval/NAME_official.partial/; the same command writes the files of an uninterrupted evaluation, byte for byte,
    and removes the folder with the progress; other settings are refused without touching them; --restart
    discards them."""
    run, argv = _cli_run(run_and_test_set, tmp_path)
    argv += ["--batch-size", "1", "--save-every", "0", "--save-official-files"]
    assert ev.main([*argv, "--name", "whole"]) == 0
    expected = _official_bytes(run / "eval" / "whole_official")
    state, work = run / "eval" / "parts.partial.pt", run / "eval" / "parts_official.partial"
    _stop_in_batch(monkeypatch, 3)
    assert ev.main([*argv, "--name", "parts"]) == 130
    monkeypatch.undo()
    assert "interrupted after 2 of 3 test sequences" in capsys.readouterr().err
    assert state.is_file() and {p.suffix for p in work.iterdir()} == {".npy"}
    assert not (run / "eval" / "parts_official").exists()
    assert ev.main([*argv, "--name", "parts", "--seed", "3"]) == 2  # another evaluation: refused
    assert "(--seed: 1 saved, 3 now)" in capsys.readouterr().err
    assert ev.main([*argv, "--name", "parts"]) == 0
    assert json.loads((run / "eval" / "parts.json").read_text())["throughput"]["resumed_at"] == [2]
    assert _official_bytes(run / "eval" / "parts_official") == expected
    assert not state.exists() and not work.exists()

    _stop_in_batch(monkeypatch, 2)
    assert ev.main([*argv, "--name", "again"]) == 130
    monkeypatch.undo()
    assert (run / "eval" / "again_official.partial").is_dir()
    assert ev.main([*argv, "--name", "again", "--restart"]) == 0
    assert json.loads((run / "eval" / "again.json").read_text())["throughput"]["resumed_at"] == []
    assert _official_bytes(run / "eval" / "again_official") == expected
    assert not (run / "eval" / "again_official.partial").exists() and not (run / "eval" / "again.partial.pt").exists()


def test_indices_given_as_an_array_read_as_a_list_and_must_be_one_dimensional(model: SRVP, clips: torch.Tensor) -> None:
    reversed_list = _per_sequence(_evaluate(model, clips, indices=list(range(N_CLIPS - 1, -1, -1))))
    reversed_tensor = _per_sequence(_evaluate(model, clips, indices=torch.arange(N_CLIPS).flip(0)))
    for m in reversed_list:
        np.testing.assert_array_equal(reversed_tensor[m], reversed_list[m])
    with pytest.raises(ValueError, match=r"^indices: expected one index per clip, \(N,\), got shape \[2, 4\]$"):
        _evaluate(model, clips, indices=np.arange(N_CLIPS).reshape(2, 4))
    with pytest.raises(TypeError, match=r"^protocol: expected an EvalProtocol, got dict$"):
        ev.evaluate(model, clips, dataclasses.asdict(_protocol()), progress=False)  # type: ignore[arg-type]


class _NoFVDNetwork(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pytest.fail("the I3D network ran on a set FVD cannot be computed on")


def test_fvd_is_skipped_with_a_reason_when_the_videos_are_too_few_or_too_short(
    tmp_path: Path, model: SRVP, clips: torch.Tensor
) -> None:
    """FVD needs MIN_VIDEOS test sequences and MIN_FRAMES frames per video: below, the results say why it was
    skipped, and the evaluation goes on (and without GIF samples, no GIF is written)."""
    from latentdyn.video.fvd import MIN_FRAMES, MIN_VIDEOS

    assert clips.shape[1] < MIN_VIDEOS and clips.shape[0] < MIN_FRAMES
    result = _evaluate(model, clips, fvd_network=_NoFVDNetwork(), n_gif=0, protocol=_protocol(n_samples=1))
    assert result["fvd"] == {"skipped": f"FVD needs at least {MIN_VIDEOS} test sequences, got {N_CLIPS}"}
    many = clips[:, torch.arange(MIN_VIDEOS) % N_CLIPS]
    result_many = _evaluate(model, many, fvd_network=_NoFVDNetwork(), protocol=_protocol(n_samples=1))
    t = clips.shape[0]
    assert result_many["fvd"] == {"skipped": f"I3D needs at least {MIN_FRAMES} frames per video, got nt_gen={t}"}

    assert result["_gif"] == {}
    paths = ev.write_outputs(result, tmp_path, "nogif")
    assert "gif" not in paths and not (tmp_path / "nogif_samples.gif").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nogif.json", "nogif_curves.png", "nogif_per_sequence.npz"]
    assert json.loads(paths["json"].read_text())["fvd"]["skipped"].startswith("FVD needs at least")
    with pytest.raises(ValueError, match=r"^result: no official sample arrays; run evaluate\(\.\.\., official_"):
        ev.write_official_files(result, tmp_path / "official")
    assert not (tmp_path / "official").exists()
