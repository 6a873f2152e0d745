"""Import and verify checkpoints of the official SRVP implementation.

    python -m examples.srvp.official convert OFFICIAL_DIR OUT_DIR
    python -m examples.srvp.official verify FIXTURE_DIR [--device cuda]

An official experiment directory holds ``config.json`` (the options of the official ``train.py``) and a
checkpoint (``model.pt`` by default) saved as ``torch.save(model.state_dict())``. Nothing is unpickled:
every file is read with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.distributions import Distribution

from examples.srvp._cli import (
    CliParser,
    add_version,
    ends_quietly_on_a_closed_pipe,
    robust_output,
    shell_quote,
    user_path,
)
from examples.srvp.checkpoint import (
    check_writable,
    os_error_message,
    read_json,
    read_torch_file,
    save_run,
)
from examples.srvp.config import (
    OFFICIAL_MODEL_OPTIONS,
    model_config_from_official,
    resolve_device,
    train_config_from_official,
)
from examples.srvp.model import SRVP, SRVPOutput

T = TypeVar("T")

__all__ = ["from_official_key", "load_official", "main", "official_state_dict", "to_official_key", "verify"]

# (our prefix, official prefix, whether the module is an MLP whose Linear k sits at index 2k in our Sequential
# and at ``module.k.0`` (k = 0) or ``module.k.1`` (k > 0) officially).
_PREFIXES: list[tuple[str, str, bool]] = [
    ("encoder.", "encoder.", False),
    ("decoder.", "decoder.", False),
    ("content.proj.", "w_proj.", False),
    ("content.out.", "w_inf.", False),
    ("q_y.head.net.layers.", "q_y.module.", True),
    ("q_z.lstm.", "inf_z.", False),
    ("q_z.head.net.", "q_z.", False),
    ("ssm.prior.net.layers.", "p_z.module.", True),
    ("ssm.cell.field.net.layers.", "dynamics.module.", True),
]


def to_official_key(key: str) -> str:
    """Official state-dict key of one of our keys (e.g. ``ssm.cell.field.net.layers.6.weight`` ->
    ``dynamics.module.3.1.weight``)."""
    for ours, theirs, mlp in _PREFIXES:
        if key.startswith(ours):
            rest = key[len(ours) :]
            if mlp:
                m = re.fullmatch(r"(\d+)\.(.+)", rest)
                if m is None or int(m.group(1)) % 2:
                    break
                k = int(m.group(1)) // 2
                return f"{theirs}{k}.{0 if k == 0 else 1}.{m.group(2)}"
            return theirs + rest
    raise KeyError(f"no official counterpart for key {key!r}")


def from_official_key(key: str) -> str:
    """Our key for an official state-dict key (inverse of :func:`to_official_key`)."""
    for ours, theirs, mlp in _PREFIXES:
        if key.startswith(theirs):
            rest = key[len(theirs) :]
            if mlp:
                m = re.fullmatch(r"(\d+)\.([01])\.(.+)", rest)
                if m is None:
                    break
                return f"{ours}{2 * int(m.group(1))}.{m.group(3)}"
            return ours + rest
    raise KeyError(f"unexpected official key {key!r}")


def official_state_dict(model: SRVP) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` under official key names and in the official order (to export to the
    official code). Our ``LatentSSM`` registers the cell before the prior, the official model ``p_z`` before
    ``dynamics``: entries are ordered by official top module, keeping our order within each."""
    rank = {theirs: i for i, (_, theirs, _) in enumerate(_PREFIXES)}
    items = [(to_official_key(k), v) for k, v in model.state_dict().items()]
    items.sort(key=lambda kv: next(r for prefix, r in rank.items() if kv[0].startswith(prefix)))
    return dict(items)


def _read_official_config(official_dir: Path, label: str = "OFFICIAL_DIR") -> dict[str, Any]:
    path = official_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{label}: no config.json in {official_dir}")
    options = read_json(path, label)
    if not isinstance(options, dict):
        raise ValueError(f"{label}: expected a JSON object of options in {path}")
    if isinstance(options.get("model"), dict) and "nx" not in options:
        raise ValueError(
            f"{label}: {path} is the config.json of a latentdyn run directory, not of the official code; "
            "evaluate that run directory directly"
        )
    return options


_OFFICIAL_NAMES = {ours: official for official, ours in OFFICIAL_MODEL_OPTIONS.items()} | {
    "lr_burnin": "lr_scheduling_burnin",
    "lr_decay": "lr_scheduling_n_iter",
    "val_batch_size": "batch_size_test",
    "val_samples": "n_samples_test",
    "num_digits": "ndigits",
}
"""Our option name -> the official one, for messages about an official config.json."""


def _from_options(build: Callable[[dict[str, Any]], T], options: dict[str, Any], path: Path, label: str) -> T:
    """``build(options)``; an option it refuses is a one-line error that names the file and the official option."""
    try:
        return build(options)
    except (TypeError, ValueError) as e:
        message = " ".join(str(e).split()).removeprefix("config.json: ")
        name, sep, rest = message.partition(": ")
        if sep and name in _OFFICIAL_NAMES:
            message = f"{_OFFICIAL_NAMES[name]} ({name}): {rest}"
        raise ValueError(f"{label}: {path}: {message}") from None


def _conv_options(model: SRVP) -> str:
    c = model.config
    return f"config.json has archi={c.architecture!r}, skipco={c.skip_connections}, nf={c.conv_width}, nc={c.channels}"


def _few(keys: list[str], n: int = 4) -> str:
    """``keys`` for a one-line message: all of them when few, else the first ``n`` and the count."""
    if not keys:
        return "none"
    if len(keys) <= n:
        return str(keys)
    return "[" + ", ".join(map(repr, keys[:n])) + f", ...] ({len(keys)} in all)"


def load_official(
    official_dir: str | Path, model_name: str = "model.pt", label: str = "OFFICIAL_DIR"
) -> tuple[SRVP, dict[str, Any]]:
    """Build our SRVP from an official experiment directory and load its weights strictly.

    Returns:
        The model (in eval mode) and the official options.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: missing or unexpected keys (named), shape mismatches, unknown options.
    """
    official_dir = Path(official_dir)
    options = _read_official_config(official_dir, label)
    config = _from_options(model_config_from_official, options, official_dir / "config.json", label)
    with torch.device("meta"):  # shapes only, at no cost whatever config.json says: checked before memory is spent
        model = SRVP(config)
    path = official_dir / model_name
    if not path.is_file():
        raise FileNotFoundError(f"{label}: no checkpoint {model_name} in {official_dir}")
    state = read_torch_file(path, label)
    where = f"{label}: {path}"
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        raise ValueError(
            f"{where} is a latentdyn checkpoint (a run directory's checkpoints/*.pt), not an official state dict; "
            "evaluate its run directory directly"
        )
    if not isinstance(state, dict):
        raise ValueError(f"{where}: expected a state dict (torch.save(model.state_dict())), got {type(state).__name__}")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{where}: expected a state dict of tensors, but entry {not_tensors[0]!r} holds a value of type "
            f"{type(state[not_tensors[0]]).__name__}"
        )
    state = {str(k).removeprefix("module."): v for k, v in state.items()}  # DDP-wrapped saves
    expected = {to_official_key(k): k for k in model.state_dict()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        hint = ""
        if all(k.startswith(("encoder.", "decoder.")) for k in missing + unexpected):
            hint = f" (the encoder/decoder differ: {_conv_options(model)})"
        raise ValueError(
            f"{where}: state dict does not match the configuration in config.json{hint}; "
            f"missing keys: {_few(missing)}; unexpected keys: {_few(unexpected)}"
        )
    ours = model.state_dict()
    converted = {}
    for key, value in state.items():
        target = expected[key]
        if tuple(value.shape) != tuple(ours[target].shape):
            hint = f" ({_conv_options(model)})" if key.startswith(("encoder.", "decoder.")) else ""
            raise ValueError(
                f"{where}: key {key!r} has shape {list(value.shape)}, the configuration expects "
                f"{list(ours[target].shape)}{hint}"
            )
        converted[target] = value
    model = SRVP(config)
    model.load_state_dict(converted, strict=True)
    return model.eval(), options


def convert(official_dir: str | Path, out_dir: str | Path, model_name: str = "model.pt") -> Path:
    """Write a latentdyn run directory (``config.json``, ``checkpoints/best.pt``) from an official one.

    OUT_DIR must not hold a run already (its ``config.json`` or a checkpoint): the import would replace the
    configuration of that run's weights. It is checked, with writability, before anything is read.
    """
    out = Path(out_dir)
    ckpt = out / "checkpoints" / "best.pt"
    for taken in (out / "config.json", ckpt, out / "checkpoints" / "last.pt"):
        if taken.exists():
            raise FileExistsError(f"OUT_DIR: {taken} already exists; choose an empty directory")
    check_writable(out, "OUT_DIR")
    official_dir = Path(official_dir)
    options = _read_official_config(official_dir)  # every option is checked before the weights are read
    train = _from_options(train_config_from_official, options, official_dir / "config.json", "OFFICIAL_DIR")
    model, options = load_official(official_dir, model_name)
    save_run(out, model, train, extra={"source": "official", "official_options": options})
    return out


def evaluate_hint(run_dir: Path) -> str:
    """The evaluate command of an imported run: the test data it needs, as the official README tests it."""
    train = read_json(run_dir / "config.json", "run_dir")["train"]
    command = f"python -m examples.srvp.evaluate {shell_quote(run_dir)}"
    if train["dataset"] == "smmnist":
        if train["deterministic"]:  # the official README: one sample, 100 frames
            made = "mmnist_test_2digits_64.npz made by python -m examples.srvp.data smmnist-test-set --deterministic"
            return f"{command} --test-set FILE.npz --n-samples 1 ({made})"
        made = "smmnist_test_2digits_64.npz made by python -m examples.srvp.data smmnist-test-set"
        return f"{command} --test-set FILE.npz ({made})"
    if Path(train["data_dir"]).is_dir():
        return command
    return (
        f"{command} --test-set DATA_DIR (the folder of python -m examples.srvp.data; the official data_dir "
        f"{train['data_dir'] or '(none)'} is not here)"
    )


# --------------------------------------------------------------------------------------------- verification
class _Noise:
    """Sampler with the fixture's noise convention: zero noise (means) or saved noise in call order."""

    def __init__(self, eps_y0: torch.Tensor | None, eps_z: torch.Tensor | None, eps_prior: torch.Tensor | None):
        self.eps = {"y0": eps_y0, "z_posterior": eps_z, "z_prior": eps_prior}
        self.prior_calls = 0

    def __call__(self, dist: Distribution, role: str) -> torch.Tensor:
        eps = self.eps[role]
        if eps is None:
            return dist.mean
        if role == "z_prior":
            e = eps[self.prior_calls]
            self.prior_calls += 1
        elif role == "z_posterior":
            e = eps[: dist.batch_shape[0]]
        else:
            e = eps
        return dist.mean + dist.stddev * e


@dataclass
class Check:
    """One verified entry."""

    name: str
    status: str  # "ok", "FAIL" or "skipped"
    detail: str


def _close(name: str, got: torch.Tensor, ref: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> Check:
    if tuple(got.shape) != tuple(ref.shape):
        return Check(name, "FAIL", f"shape {list(got.shape)} != reference {list(ref.shape)}")
    got, ref = got.detach().cpu().double(), ref.double()
    diff = (got - ref).abs()
    ok = bool((diff <= atol + rtol * ref.abs()).all())
    return Check(name, "ok" if ok else "FAIL", f"max abs diff {diff.max().item():.3e}")


def _output_entries(out: SRVPOutput, substeps: bool = False) -> dict[str, torch.Tensor]:
    roll = out.rollout
    entries = {
        "x_rec": out.frames,
        "y": roll.substates if substeps else roll.states,
        "z": roll.z,
        "q_y0_mean": out.q_y0.mean,
        "q_y0_scale": out.q_y0.stddev,
    }
    if out.w is not None:
        entries["w"] = out.w
    if roll.posterior is not None:
        entries |= {"q_z_mean": roll.posterior.mean, "q_z_scale": roll.posterior.stddev}
    if roll.prior is not None:
        entries |= {"p_z_mean": roll.prior.mean, "p_z_scale": roll.prior.stddev}
    if roll.residuals is not None:
        entries["res"] = roll.residuals
    return entries


def _loss_checks(prefix: str, terms: Any, ref: dict[str, float]) -> Iterator[Check]:
    names = {"nll": "nll", "kl_y0": "kl_y", "kl_z": "kl_z", "l2_res": "residual", "total": "total"}
    for theirs, ours in names.items():
        if theirs not in ref:
            continue
        got, want = float(getattr(terms, ours).detach()), float(ref[theirs])
        rel = abs(got - want) / max(abs(want), 1e-12)
        yield Check(
            f"loss {prefix}/{theirs}",
            "ok" if rel <= 1e-5 else "FAIL",
            f"{got:.6f} vs {want:.6f} (rel {rel:.2e})",
        )


@contextmanager
def _full_fp32() -> Iterator[None]:
    """CUDA fp32 without TF32 (cuDNN convolutions use TF32 by default): the fixture is full fp32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def verify(fixture_dir: str | Path, device: str | torch.device = "cpu") -> list[Check]:
    """Recompute every entry of an official fixture directory with our model; see the fixture's README.

    Args:
        fixture_dir: the fixture directory (``config.json``, ``model.pt``, ``inputs.pt``, ``outputs.pt``).
        device: where the model runs (``"cuda"`` checks the GPU kernels; TF32 is switched off meanwhile, as
            the fixture was computed in full fp32). Comparisons are made on the CPU in float64.
    """
    device = torch.device(device)
    with _full_fp32():
        return _verify(Path(fixture_dir), device)


def _verify(fixture_dir: Path, device: torch.device) -> list[Check]:
    model, _ = load_official(fixture_dir, label="FIXTURE_DIR")
    model = model.to(device)
    inputs = read_torch_file(fixture_dir / "inputs.pt", "FIXTURE_DIR", map_location=device)
    outputs = read_torch_file(fixture_dir / "outputs.pt", "FIXTURE_DIR")
    if not isinstance(inputs, dict) or not isinstance(inputs.get("x"), torch.Tensor):
        raise ValueError(
            f"FIXTURE_DIR: {fixture_dir / 'inputs.pt'} is not a fixture's inputs (a dict with a tensor 'x')"
        )
    if not isinstance(outputs, dict) or not isinstance(outputs.get("tensors"), dict):
        raise ValueError(
            f"FIXTURE_DIR: {fixture_dir / 'outputs.pt'} is not a fixture's outputs (a dict with 'tensors')"
        )
    tensors: dict[str, torch.Tensor] = outputs["tensors"]
    meta: dict[str, Any] = outputs.get("meta", {})
    losses: dict[str, dict[str, float]] = meta.get("losses", {})
    x: torch.Tensor = inputs["x"]
    saved = (inputs.get("eps_y0"), inputs.get("eps_z"), inputs.get("eps_prior"))
    k = model.config.n_inference_frames
    computed: dict[str, torch.Tensor] = {}
    checks: list[Check] = []

    def noise(kind: str) -> _Noise:
        return _Noise(None, None, None) if kind == "zero" else _Noise(*saved)

    with torch.no_grad():
        model.eval()
        enc = model.encode(x)
        computed["eval/hx"] = enc.codes
        if model.content is not None:
            w_last, w_first = model.infer_content(enc.codes), model.infer_content(enc.codes[:k])
            assert w_last is not None and w_first is not None  # (a model with content infers one)
            computed["eval/w_last_nt_inf_frames"], computed["eval/w_first_nt_inf_frames"] = w_last, w_first
        q_y0 = model.q_y(enc.codes)
        computed["eval/q_y0_mean"], computed["eval/q_y0_scale"] = q_y0.mean, q_y0.stddev
        if model.q_z is not None:
            computed["eval/lstm_out"] = model.q_z.features(enc.codes)
        for kind in ("zero", "saved"):
            name = f"eval/posterior_{kind}_noise_dt1"
            out = model.infer(x, sampler=noise(kind), n_substeps=1)
            computed |= {f"{name}/{key}": v for key, v in _output_entries(out).items()}
            if name in losses:
                checks += _loss_checks(name, model.loss_terms(x, out), losses[name])
        half = model.infer(x, sampler=noise("zero"), n_substeps=2, decode_substeps=True)
        computed |= {
            f"eval/posterior_zero_noise_dt0.5_all_substeps/{key}": v
            for key, v in _output_entries(half, substeps=True).items()
        }
        computed["eval/posterior_zero_noise_dt0.5/y"] = half.rollout.states
        n_future = (
            tensors["eval/predict_zero_noise/x_pred"].shape[0] if "eval/predict_zero_noise/x_pred" in tensors else 20
        )
        nt_cond = (
            tensors["eval/predict_zero_noise/y_cond"].shape[0] if "eval/predict_zero_noise/y_cond" in tensors else k
        )
        for kind in ("zero", "saved"):
            pred = model.predict(x[:nt_cond], n_future, 1, sampler=noise(kind))
            fut = pred.future_rollout
            assert pred.cond_frames is not None  # decode_cond defaults to True
            p = f"eval/predict_{kind}_noise"
            computed |= {
                f"{p}/x_cond_rec": pred.cond_frames[0],
                f"{p}/y_cond": pred.cond_rollout.states,
                f"{p}/y_pred": fut.states,
                f"{p}/z_pred": fut.z,
                f"{p}/x_pred": pred.frames[0],
            }
            if fut.prior is not None:
                computed |= {f"{p}/p_z_pred_mean": fut.prior.mean, f"{p}/p_z_pred_scale": fut.prior.stddev}
            if model.content is not None:
                w = model.infer_content(model.encode(x[:nt_cond]).codes)
                assert w is not None  # (a model with content infers one)
                computed[f"{p}/w"] = w

    # Train mode: batch statistics in BatchNorm, recorded content frames, saved noise, gradients.
    train_model = copy.deepcopy(model).train()
    with torch.no_grad():
        computed["train/hx"] = copy.deepcopy(model).train().encode(x).codes
    indices = tensors.get("train/w_frame_indices")
    indices = None if indices is None else indices.to(device)
    name = "train/posterior_saved_noise_dt1"
    terms, out = train_model(x, sampler=noise("saved"), content_indices=indices, n_substeps=1)
    computed |= {f"{name}/{key}": v.detach() for key, v in _output_entries(out).items()}
    if indices is not None:
        computed["train/w_frame_indices"] = indices
    if name in losses:
        checks += _loss_checks(name, terms, losses[name])
    terms.total.backward()
    params = {to_official_key(n): p for n, p in train_model.named_parameters()}
    grad_checks: list[Check] = []
    for key, ref in tensors.items():
        if not key.startswith("train/grad/"):
            continue
        official = key.removeprefix("train/grad/")
        param = params.get(official)
        if param is None or param.grad is None:
            grad_checks.append(Check(key, "FAIL", "no such parameter or no gradient"))
            continue
        diff = (param.grad.cpu().double() - ref.double()).abs().max().item()
        bound = 2e-3 * ref.double().abs().max().item()
        grad_checks.append(
            Check(key, "ok" if diff <= bound else "FAIL", f"max abs diff {diff:.3e} (bound {bound:.3e})")
        )

    for key, ref in tensors.items():
        if key.startswith("train/grad/"):
            continue
        if key in computed:
            checks.append(_close(key, computed[key], ref))
        else:
            checks.append(Check(key, "FAIL", "present in the fixture but not recomputed"))
    for key in sorted(set(computed) - set(tensors)):
        checks.append(Check(key, "skipped", "not in the fixture"))
    return checks + grad_checks


# ---------------------------------------------------------------------------------------------------- CLI
@ends_quietly_on_a_closed_pipe
@robust_output()
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m examples.srvp.official``."""
    parser = CliParser(prog="python -m examples.srvp.official", description=(__doc__ or "").split("\n")[0])
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p_conv = sub.add_parser("convert", help="official experiment directory -> latentdyn run directory")
    p_conv.add_argument("official_dir", type=user_path)
    p_conv.add_argument("out_dir", type=user_path)
    p_conv.add_argument("--model-name", default="model.pt", help="checkpoint file in OFFICIAL_DIR")
    p_ver = sub.add_parser("verify", help="recompute an official fixture directory and compare")
    p_ver.add_argument("fixture_dir", type=user_path)
    p_ver.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:1 ...")
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            out = convert(args.official_dir, args.out_dir, args.model_name)
            print(f"wrote {out}/config.json and {out}/checkpoints/best.pt")
            print(f"evaluate it with: {evaluate_hint(out)}")
            return 0
        checks = verify(args.fixture_dir, resolve_device(args.device))
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. an OUT_DIR that cannot be written
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status:7s} {c.name:{width}s}  {c.detail}")
    failed = [c for c in checks if c.status == "FAIL"]
    n_ok = sum(c.status == "ok" for c in checks)
    n_skip = sum(c.status == "skipped" for c in checks)
    print(f"verify: {n_ok} entries ok, {len(failed)} failed, {n_skip} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
