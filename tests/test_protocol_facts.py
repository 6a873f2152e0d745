"""Facts of the paper's training and evaluation protocol (SPEC §3, §4.3, §6) that no end-to-end number catches.

Each expected value here is written from SPEC.md (or computed independently with numpy), never read back from
the code under test: the validation's choice of sample, what reaches FVD, the default lengths of the test sets,
Adam's settings, the Human3.6M subject split and the identity of the shipped LPIPS weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from examples.srvp import data as data_cli
from examples.srvp import evaluate as ev
from examples.srvp import train
from examples.srvp.config import PRESETS
from examples.srvp.model import SampleChunk, build_model
from latentdyn.video.datasets.human36m import HUMAN36M_TEST_SUBJECTS, HUMAN36M_TRAIN_SUBJECTS


# ------------------------------------------------------------------------------------------------ validation
def _constant_error(truth: torch.Tensor, error: float) -> torch.Tensor:
    return truth + error  # every pixel off by `error`: PSNR = 10·log10(1/error²) exactly


def test_validation_chooses_the_sample_on_all_frames_and_scores_the_predicted_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SPEC 3: the best of N is the sample with the highest PSNR averaged over all frames (conditioning
    reconstructions included); the score is its PSNR over the predicted frames, averaged over clips."""
    cfg = dataclasses.replace(PRESETS["tiny"](), nt_cond=2, val_batch_size=1, val_samples=2, amp="none")
    val = torch.full((4, 2, 1, 8, 8), 0.5)  # (T, B, C, H, W): 2 clips, 2 conditioning + 2 predicted frames
    # errors[clip][sample] = (error on the conditioning frames, error on the predicted frames)
    errors = [[(0.01, 0.1), (0.1, 0.05)], [(0.1, 0.1), (0.01, 0.2)]]

    def fake_chunks(model: nn.Module, cond: torch.Tensor, n_future: int, n: int, *_: Any, **kw: Any) -> Iterator:
        assert kw.get("decode_cond") is True and n == 2 and n_future == 2
        clip = 0 if not fake_chunks.calls else 1  # type: ignore[attr-defined]
        fake_chunks.calls += 1  # type: ignore[attr-defined]
        truth = val[:, clip : clip + 1]
        cond_frames = torch.stack([_constant_error(truth[:2], errors[clip][s][0]) for s in range(2)])
        frames = torch.stack([_constant_error(truth[2:], errors[clip][s][1]) for s in range(2)])
        yield SampleChunk(0, SimpleNamespace(cond_frames=cond_frames, frames=frames))  # type: ignore[arg-type]

    fake_chunks.calls = 0  # type: ignore[attr-defined]
    monkeypatch.setattr(train, "predict_in_chunks", fake_chunks)
    score = train.validate(nn.Linear(1, 1), cfg, val, torch.device("cpu"))  # type: ignore[arg-type]

    def db(e: float) -> float:
        return float(10 * np.log10(1 / e**2))

    # Clip 0: sample 0 wins on all frames (30 dB vs 23 dB) though sample 1 is better on the predicted ones.
    # Clip 1: sample 1 wins on all frames (27 dB vs 20 dB) though sample 0 is better on the predicted ones.
    expected = (db(0.1) + db(0.2)) / 2
    assert fake_chunks.calls == 2  # type: ignore[attr-defined]
    assert score == pytest.approx(expected, abs=1e-3)


# ------------------------------------------------------------------------------------------------------ FVD
def test_fvd_compares_ground_truth_with_conditioning_frames_and_the_first_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SPEC 6: FVD's real videos are the ground truth [:nt_gen]; its generated videos are the ground-truth
    conditioning frames followed by the first random sample (not the best one), quantised with .byte()."""
    model = build_model(PRESETS["tiny"]().model)
    n_seq, nt_cond, nt_gen = 16, 2, 10
    seqs = torch.randint(0, 256, (12, n_seq, 1, 64, 64), generator=torch.Generator().manual_seed(0)).to(torch.uint8)

    def sample(cond: torch.Tensor, s: int, n_future: int) -> torch.Tensor:  # (Tf, B, C, H, W) in [0, 1]
        steps = torch.arange(1, n_future + 1, dtype=cond.dtype).view(-1, 1, 1, 1, 1)
        return (cond[-1] * (0.3 + 0.2 * s) + 0.013 * steps).clamp(0, 1)

    def fake_chunks(model: nn.Module, cond: torch.Tensor, n_future: int, n: int, *_: Any, **__: Any) -> Iterator:
        frames = torch.stack([sample(cond, s, n_future) for s in range(n)])
        yield SampleChunk(0, SimpleNamespace(cond_frames=None, frames=frames))  # type: ignore[arg-type]

    seen: dict[str, Any] = {}

    def fake_fvd(real: torch.Tensor, fake: torch.Tensor, network: nn.Module, protocol: Any) -> Any:
        seen.update(real=real, fake=fake, protocol=protocol)
        return SimpleNamespace(value=1.0, protocol=protocol)

    monkeypatch.setattr(ev, "predict_in_chunks", fake_chunks)
    monkeypatch.setattr(ev, "compute_fvd", fake_fvd)
    protocol = ev.EvalProtocol(
        nt_cond=nt_cond, nt_gen=nt_gen, n_samples=3, n_substeps=1, batch_size=5, seed=0, max_sequences=0
    )
    result = ev.evaluate(model, seqs, protocol, progress=False, n_gif=0, fvd_network=nn.Identity())
    assert result["fvd"]["value"] == 1.0
    assert torch.equal(seen["real"], seqs[:nt_gen])
    assert torch.equal(seen["fake"][:nt_cond], seqs[:nt_cond])
    first = sample(seqs[:nt_cond].double() / 255, 0, nt_gen - nt_cond)
    expected = (first.float() * 255).to(torch.uint8)  # truncation toward zero, as the official .byte()
    assert torch.equal(seen["fake"][nt_cond:], expected)
    assert seen["protocol"].n_cond == nt_cond


class _MeanNet(nn.Module):
    """A cheap stand-in for I3D: per-channel spatial means of every frame, (n, 3, T, R, R) -> (n, 3T)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x.mean(dim=(-2, -1)).flatten(1)


def _sample(cond: torch.Tensor, s: int, n_future: int) -> torch.Tensor:
    """Sample s of a stand-in model: (Tf, B, C, H, W) in [0, 1], different for every s."""
    steps = torch.arange(1, n_future + 1, dtype=cond.dtype).view(-1, 1, 1, 1, 1)
    return (cond[-1] * (0.2 + 0.25 * s) + 0.017 * steps * s).clamp(0, 1)


def _fvd_case(monkeypatch: pytest.MonkeyPatch) -> tuple[nn.Module, torch.Tensor, ev.EvalProtocol]:
    """A model, 16 test clips of 12 frames and a protocol (2 + 8 frames, 4 samples), the model's samples drawn by
    :func:`_sample` in the chunks the evaluation asks for."""

    def fake_chunks(
        model: nn.Module, cond: torch.Tensor, n_future: int, n: int, chunk: int, *_: Any, **__: Any
    ) -> Iterator:
        for start in range(0, n, chunk):
            frames = torch.stack([_sample(cond, s, n_future) for s in range(start, min(start + chunk, n))])
            yield SampleChunk(start, SimpleNamespace(cond_frames=None, frames=frames))  # type: ignore[arg-type]

    monkeypatch.setattr(ev, "predict_in_chunks", fake_chunks)
    seqs = torch.randint(0, 256, (12, 16, 1, 64, 64), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=10, n_samples=4, n_substeps=1, batch_size=6, seed=0, max_sequences=0)
    return build_model(PRESETS["tiny"]().model), seqs, protocol


@pytest.mark.parametrize("sample_chunk", [1, 2, 4])
def test_fvd_of_several_samples_scores_samples_one_to_k_against_the_same_real_videos(
    monkeypatch: pytest.MonkeyPatch, sample_chunk: int
) -> None:
    """The paper's FVD ± over five samples, in one evaluation: ``fvd_samples=K`` scores random samples 1 … K (each
    after the ground-truth conditioning frames, quantised with .byte()), however the samples are chunked; the value
    is their mean, the std their population std; the real videos are embedded once."""
    from latentdyn.video.fvd import FVDProtocol, compute_fvd

    model, seqs, protocol = _fvd_case(monkeypatch)
    nt_cond, nt_gen, k = protocol.nt_cond, protocol.nt_gen, 3
    net = _MeanNet().eval()
    fvd = ev.evaluate(
        model,
        seqs,
        protocol,
        progress=False,
        n_gif=0,
        fvd_network=net,
        fvd_protocol=FVDProtocol(resolution=8),
        fvd_samples=k,
        sample_chunk=sample_chunk,
    )["fvd"]
    assert net.calls == 1 + k  # 16 videos: one chunk of I3D per set, the real set once
    real = seqs[:nt_gen]
    expected = []
    for s in range(k):
        future = _sample(seqs[:nt_cond].double() / 255, s, nt_gen - nt_cond)
        fake = torch.cat([seqs[:nt_cond], (future.float() * 255).to(torch.uint8)])  # .byte() truncates
        expected.append(compute_fvd(real, fake, _MeanNet().eval(), FVDProtocol(n_cond=nt_cond, resolution=8)).value)
    assert len(set(expected)) == k  # the samples differ
    assert fvd["values"] == pytest.approx(expected, rel=1e-9)
    assert fvd["value"] == pytest.approx(np.mean(expected), rel=1e-9)
    assert fvd["std"] == pytest.approx(np.std(expected, ddof=0), rel=1e-9)
    assert fvd["samples"] == k and fvd["protocol"]["n_cond"] == nt_cond


def test_fvd_progress_saved_before_several_samples_continues(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Progress saved before ``fvd_samples`` (its batches hold sample 1's frames alone, its fingerprint no
    ``fvd_samples``) continues as one sample's; asked for more samples, it is refused, naming the option."""
    from examples.srvp.checkpoint import read_torch_file, save_checkpoint
    from latentdyn.video.fvd import FVDProtocol

    model, seqs, protocol = _fvd_case(monkeypatch)
    options: dict[str, Any] = dict(progress=False, n_gif=0, fvd_protocol=FVDProtocol(resolution=8))
    state = tmp_path / "eval.partial.pt"
    whole = ev.evaluate(model, seqs, protocol, state_file=state, fvd_network=_MeanNet().eval(), **options)["fvd"]
    saved = read_torch_file(state, "state_file")
    assert saved["fingerprint"]["fvd_samples"] == 1
    del saved["fingerprint"]["fvd_samples"]
    for batch in saved["batches"]:
        assert batch["fake"].shape[0] == 1
        batch["fake"] = batch["fake"][0]  # (Tf, B, C, H, W), as saved then
    save_checkpoint(state, saved)
    net = _MeanNet().eval()
    again = ev.evaluate(model, seqs, protocol, state_file=state, fvd_network=net, **options)["fvd"]
    assert net.calls == 2 and again["value"] == whole["value"] and "values" not in again
    with pytest.raises(ev.StateMismatchError, match="fvd_samples"):
        ev.evaluate(model, seqs, protocol, state_file=state, fvd_network=net, fvd_samples=2, **options)


def test_evaluation_curves_follow_the_predicted_frames_in_time_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC 6: the per-time-step curves are over the predicted frames nt_cond+1..nt_gen, in that order, and
    "_first5" averages the first five of them; for the model (best of N) as for the copy-last reference."""
    model = build_model(PRESETS["tiny"]().model)
    n_seq, nt_cond, nt_gen = 3, 2, 10
    levels = [40 + 10 * t for t in range(nt_gen)]  # frame t is uniformly levels[t]/255: a different value each
    seqs = torch.tensor(levels, dtype=torch.uint8).view(-1, 1, 1, 1, 1).expand(nt_gen, n_seq, 1, 64, 64)
    future_errors = [0.01 * (j + 1) for j in range(nt_gen - nt_cond)]  # sample 0's error grows with time

    def fake_chunks(model: nn.Module, cond: torch.Tensor, n_future: int, n: int, *_: Any, **__: Any) -> Iterator:
        truth = seqs[nt_cond:nt_gen, : cond.shape[1]].double() / 255
        steps = torch.tensor(future_errors, dtype=torch.float64).view(-1, 1, 1, 1, 1)
        frames = torch.stack([truth + steps * (1 + s) for s in range(n)])  # sample 0 best
        yield SampleChunk(0, SimpleNamespace(cond_frames=None, frames=frames.float()))  # type: ignore[arg-type]

    monkeypatch.setattr(ev, "predict_in_chunks", fake_chunks)
    protocol = ev.EvalProtocol(
        nt_cond=nt_cond, nt_gen=nt_gen, n_samples=2, n_substeps=1, batch_size=2, seed=0, max_sequences=0
    )
    result = ev.evaluate(model, seqs, protocol, progress=False, n_gif=0)

    def db(e: float) -> float:
        return float(10 * np.log10(1 / e**2))

    model_curve = [db(e) for e in future_errors]
    copy_last = [db((levels[t] - levels[nt_cond - 1]) / 255) for t in range(nt_cond, nt_gen)]
    for scores, curve in ((result["metrics"], model_curve), (result["reference_predictors"]["copy_last"], copy_last)):
        assert scores["psnr_curve"]["mean"] == pytest.approx(curve, abs=1e-3)
        assert scores["psnr_first5"]["mean"] == pytest.approx(np.mean(curve[:5]), abs=1e-3)
        assert scores["psnr"]["mean"] == pytest.approx(np.mean(curve), abs=1e-3)


def test_one_sample_is_scored_and_the_per_sequence_file_rebuilds_the_summaries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Next to the best of N, the model is scored on one draw (sample 0), as the single-guess references are; and
    the per-sequence file holds what a reader needs to recompute and pair every summary: the test-set indices,
    each sequence's curves, the best sample's index, the one-sample scores."""
    model = build_model(PRESETS["tiny"]().model)
    n_seq, nt_cond, nt_gen, n = 5, 2, 6, 3
    seqs = torch.full((nt_gen, n_seq, 1, 64, 64), 100, dtype=torch.uint8)
    # Sample s of sequence b is off by error(s, b) at every frame: sample 1 the best for every sequence, sample 0
    # second best for sequence 0 only (and the worst elsewhere), sample 2 in between.
    offsets = {0: [0.02, 0.06, 0.06, 0.06, 0.06], 1: [0.01] * 5, 2: [0.03, 0.04, 0.04, 0.04, 0.04]}

    def fake_chunks(model: nn.Module, cond: torch.Tensor, n_future: int, n: int, *_: Any, **__: Any) -> Iterator:
        b = cond.shape[1]
        truth = seqs[nt_cond:nt_gen, :b].double() / 255
        off = torch.tensor([offsets[s][:b] for s in range(n)], dtype=torch.float64).view(n, 1, b, 1, 1, 1)
        yield SampleChunk(0, SimpleNamespace(cond_frames=None, frames=(truth + off).float()))  # type: ignore[arg-type]

    monkeypatch.setattr(ev, "predict_in_chunks", fake_chunks)
    protocol = ev.EvalProtocol(nt_cond=nt_cond, nt_gen=nt_gen, n_samples=n, n_substeps=1, batch_size=n_seq, seed=0)
    indices = [7, 2, 9, 4, 0]  # the clips' places in their test set
    result = ev.evaluate(model, seqs, protocol, progress=False, n_gif=0, indices=indices)

    def db(e: float) -> float:
        return float(10 * np.log10(1 / e**2))

    one = [db(e) for e in offsets[0]]
    assert result["random_sample"]["psnr"]["mean"] == pytest.approx(np.mean(one), abs=1e-3)
    assert result["metrics"]["psnr"]["mean"] == pytest.approx(db(0.01), abs=1e-3)
    assert "SRVP one sample" in ev.format_results(result)
    assert "95 % interval, 1.96·std/√n" in ev.format_results(result)

    saved = dict(np.load(ev.write_outputs(result, tmp_path, "r")["per_sequence"]))  # (its file closes at once)
    assert saved["indices"].tolist() == indices
    assert saved["psnr_best_index"].tolist() == [1] * n_seq
    np.testing.assert_allclose(saved["random_psnr"], one, atol=1e-3)
    np.testing.assert_allclose(saved["worst_psnr"], [db(0.03)] + [db(0.06)] * 4, atol=1e-3)
    for m in ("psnr", "ssim"):
        assert saved[f"{m}_curve"].shape == (n_seq, nt_gen - nt_cond)
        assert np.all(saved[f"worst_{m}"] <= saved[f"random_{m}"] + 1e-6)
        assert np.all(saved[f"random_{m}"] <= saved[m] + 1e-6)
        for key, summary in ((m, result["metrics"]), (f"random_{m}", result["random_sample"])):
            curve = saved[f"{key}_curve"].astype(np.float64)
            np.testing.assert_allclose(curve.mean(1), saved[key], rtol=1e-6)
            for name, values in ((m, curve.mean(1)), (f"{m}_first5", curve[:, :5].mean(1))):
                assert summary[name]["mean"] == pytest.approx(values.mean(), rel=1e-6)
                assert summary[name]["ci95"] == pytest.approx(1.96 * values.std() / np.sqrt(n_seq), rel=1e-5)


def test_progress_saved_before_the_one_sample_scores_continues_without_them(tmp_path: Path) -> None:
    """Progress saved by a version that kept no one-sample scores nor best indices continues: the results leave
    those out and are otherwise the ones of an uninterrupted evaluation."""
    from examples.srvp.checkpoint import save_checkpoint

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(PRESETS["tiny"]().model)
    clips = torch.randint(0, 256, (5, 4, 1, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    protocol = ev.EvalProtocol(nt_cond=2, nt_gen=5, n_samples=2, n_substeps=1, batch_size=2, seed=0)
    whole = ev.evaluate(model, clips, protocol, progress=False, n_gif=0)
    state = tmp_path / "progress.pt"
    ev.evaluate(model, clips, protocol, progress=False, n_gif=0, state_file=state)
    saved = torch.load(state, weights_only=True)
    first = saved["batches"][0]
    del first["scores"]["random"], first["best_index"]  # as an earlier version saved its batches
    save_checkpoint(state, {**saved, "done": 2, "batches": [first]})
    continued = ev.evaluate(model, clips, protocol, progress=False, n_gif=0, state_file=state)
    assert "random_sample" not in continued and "random_sample" in whole
    assert continued["metrics"] == whole["metrics"]
    assert continued["reference_predictors"] == whole["reference_predictors"]
    assert "psnr_best_index" not in continued["_per_sequence_others"]
    assert "random_psnr" not in continued["_per_sequence_others"]
    np.testing.assert_array_equal(
        continued["_per_sequence_others"]["psnr_curve"], whole["_per_sequence_others"]["psnr_curve"]
    )


def test_the_printed_table_shows_first_5_columns_only_when_more_than_5_frames_are_predicted() -> None:
    """With 5 predicted frames or fewer, the "first 5" scores are the overall ones: the table does not print them
    twice (it did, under a "first 5" heading); with more, they are printed, from the "_first5" entries."""

    def scores(value: float) -> dict[str, dict[str, Any]]:
        return {
            "psnr": {"mean": value, "ci95": 0.5},
            "psnr_first5": {"mean": value + 1, "ci95": 0.25},
            "ssim": {"mean": value / 100, "ci95": 0.01},
            "ssim_first5": {"mean": value / 50, "ci95": 0.02},
        }

    def table(nt_cond: int, nt_gen: int) -> list[str]:
        result = {
            "protocol": {"n_samples": 3, "nt_cond": nt_cond, "nt_gen": nt_gen},
            "metrics": scores(20.0),
            "reference_predictors": {"copy_last": scores(10.0)},
            "n_sequences": 4,
            "throughput": {"seconds": 1.0, "sequences_per_s": 4.0, "predicted_frames_per_s": 12.0},
        }
        return ev.format_results(result).splitlines()

    few = table(5, 10)
    assert "first 5" not in "\n".join(few)
    assert few[1].split() == ["SRVP", "best", "of", "3", "20.000", "±", "0.500", "0.2000", "±", "0.0100"]
    many = table(5, 11)
    assert many[0].split() == ["PSNR", "SSIM", "PSNR", "first", "5", "SSIM", "first", "5"]
    assert many[2].split()[-6:] == ["11.000", "±", "0.250", "0.2000", "±", "0.0200"]


# -------------------------------------------------------------------------------------- test-set defaults
def test_default_test_lengths_are_the_official_readmes() -> None:
    """SPEC 4.3: the README's --nt_gen is 40 for KTH, 53 for Human3.6M (seq_len_test), 30 for BAIR."""
    assert ev.DEFAULT_NT_GEN == {"kth": 40, "human36m": 53, "bair": 30}


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("kth-test-set", {"seq_len": 40, "size": 1000, "seed": 42}),
        ("human36m-test-set", {"seq_len": 53, "subsampling": 8, "size": 1000, "seed": 42}),
        ("smmnist-test-set", {"num_digits": 2, "max_speed": 4, "seed": 42}),
    ],
)
def test_test_set_commands_default_to_the_official_settings(command: str, expected: dict[str, int]) -> None:
    """SPEC 4.3 and 5: make_test_set.py's seed 42 and size 1,000, the README's lengths and subsampling."""
    parser = data_cli.build_parser()
    required = ["--mnist-dir", "embedded"] if command == "smmnist-test-set" else ["DATA_DIR"]
    args = vars(parser.parse_args([command, *required]))
    assert {k: args[k] for k in expected} == expected


# ------------------------------------------------------------------------------------------------- training
def test_adam_is_pytorchs_default_adam() -> None:
    """SPEC 3: Adam with betas (0.9, 0.999), eps 1e-8, no weight decay, no amsgrad; only the lr is set."""
    opt = train.make_adam(nn.Linear(2, 2).parameters(), lr=3e-4)
    assert isinstance(opt, torch.optim.Adam)
    d = opt.defaults
    assert (d["lr"], d["betas"], d["eps"], d["weight_decay"], d["amsgrad"]) == (3e-4, (0.9, 0.999), 1e-8, 0, False)


# ---------------------------------------------------------------------------------------------------- data
def test_human36m_subject_split() -> None:
    """SPEC 4: subjects 1, 5, 6, 7 and 8 train, 9 and 11 test."""
    assert tuple(HUMAN36M_TRAIN_SUBJECTS) == (1, 5, 6, 7, 8)
    assert tuple(HUMAN36M_TEST_SUBJECTS) == (9, 11)


def test_shipped_lpips_weights_are_the_v0_1_alexnet_file() -> None:
    """The linear weights are the lpips package's v0.1 AlexNet file, byte for byte (its SHA-256 as recorded in
    latentdyn/data/README.md when the file was copied)."""
    data = resources.files("latentdyn") / "data" / "lpips_alex_v0.1.pth"
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert digest == "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
