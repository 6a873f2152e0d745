"""What a call of the SRVP example leaves of the process that calls it (a notebook, a sweep, an application).

``train``, ``evaluate`` and ``load_model`` run in the caller's process: whatever global state they need
(threads, random streams, the default dtype, grad and autocast modes, cuDNN's autotuner) they set for themselves
and give back as it was, and what the caller had set (an autocast, ``no_grad``, a float64 default) does not reach
them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["CallerState", "caller_state_kept", "full_fp32", "tf32_settings", "without_caller_autocast"]


@contextlib.contextmanager
def without_caller_autocast() -> Iterator[None]:
    """Autocast off (on the CPU, and on CUDA where there is CUDA) inside: an autocast the caller opened does not
    reach the code within, which opens its own where it wants one."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast("cpu", enabled=False))
        if torch.cuda.is_available():
            stack.enter_context(torch.autocast("cuda", enabled=False))
        yield


def _legacy_tf32_flags() -> tuple[bool, bool] | None:
    """torch's legacy TF32 switches (``allow_tf32`` of matmul and cuDNN), or None when the process set TF32 through
    the newer ``fp32_precision`` settings, after which torch refuses to read the legacy ones (a RuntimeError about
    mixing the two APIs)."""
    try:
        return bool(torch.backends.cuda.matmul.allow_tf32), bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        return None


def _precision_settings() -> list[Any]:
    """The objects of torch's ``fp32_precision`` settings that TF32 reaches: CUDA matmul, cuDNN convolutions and
    RNNs."""
    cudnn = torch.backends.cudnn
    return [torch.backends.cuda.matmul, cudnn.conv, cudnn.rnn]  # type: ignore[attr-defined]


def tf32_settings() -> dict[str, Any]:
    """Whether CUDA's fp32 matmuls and cuDNN use TF32, through whichever of torch's two APIs the process uses:
    ``{"matmul": bool, "cudnn": bool}`` (``allow_tf32``), or the ``fp32_precision`` of matmul, cuDNN convolutions and
    RNNs (``"tf32"``, ``"ieee"`` or ``"none"``: as its parent)."""
    legacy = _legacy_tf32_flags()
    if legacy is not None:
        return {"matmul": legacy[0], "cudnn": legacy[1]}
    matmul, conv, rnn = _precision_settings()
    return {"matmul": matmul.fp32_precision, "cudnn_conv": conv.fp32_precision, "cudnn_rnn": rnn.fp32_precision}


@contextlib.contextmanager
def full_fp32(device: torch.device) -> Iterator[None]:
    """On a CUDA ``device``, fp32 matmuls and cuDNN without TF32 inside (cuDNN convolutions use it by default); the
    settings come back on the way out. Elsewhere nothing is touched. Through whichever of torch's two TF32 APIs the
    process uses: reading the legacy ``allow_tf32`` after the newer ``fp32_precision`` was set raises in torch."""
    if device.type != "cuda":
        yield
        return
    legacy = _legacy_tf32_flags()
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if legacy is not None:
        matmul.allow_tf32 = cudnn.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32, cudnn.allow_tf32 = legacy
        return
    targets = _precision_settings()
    saved = [target.fp32_precision for target in targets]
    for target in targets:
        target.fp32_precision = "ieee"
    try:
        yield
    finally:
        for target, value in zip(targets, saved):
            target.fp32_precision = value


class CallerState:
    """The process state a call changes, saved on entry: :meth:`restore` puts it back. A call that comes to use a
    device with its own random stream registers it with :meth:`uses`, before drawing from it."""

    def __init__(self) -> None:
        self.threads = torch.get_num_threads()
        self.default_dtype = torch.get_default_dtype()
        self.cudnn_benchmark = torch.backends.cudnn.benchmark
        self.cpu_rng = torch.get_rng_state()
        # torch.manual_seed seeds every CUDA generator too: those in use are kept (those not yet initialised are
        # seeded when CUDA starts, as after any torch.manual_seed)
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def uses(self, device: torch.device) -> None:
        """Keep ``device``'s random stream too (CUDA: every device's, once CUDA is initialised for it)."""
        if device.type == "cuda" and self.cuda_rng is None:
            self.cuda_rng = torch.cuda.get_rng_state_all()

    def restore(self) -> None:
        torch.set_num_threads(self.threads)
        torch.set_default_dtype(self.default_dtype)
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            with contextlib.suppress(RuntimeError):  # (a failed CUDA context: the call's own error matters)
                torch.cuda.set_rng_state_all(self.cuda_rng)


@contextlib.contextmanager
def caller_state_kept() -> Iterator[CallerState]:
    """Run a call as if from a fresh process and give the caller's state back on the way out, however it ends:
    float32 default dtype, grad mode on (even inside the caller's ``no_grad`` or ``inference_mode``), no autocast
    of the caller's, and the thread count, random streams and cuDNN autotuning as they were before."""
    saved = CallerState()
    try:
        torch.set_default_dtype(torch.float32)
        with torch.inference_mode(False), torch.enable_grad(), without_caller_autocast():
            yield saved
    finally:
        saved.restore()
