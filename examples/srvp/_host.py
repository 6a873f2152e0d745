"""What a call of the SRVP example leaves of the process that calls it (a notebook, a sweep, an application).

``train``, ``evaluate`` and ``load_model`` run in the caller's process: whatever global state they need
(threads, random streams, the default dtype, grad and autocast modes, cuDNN's autotuner) they set for themselves
and give back as it was, and what the caller had set (an autocast, ``no_grad``, a float64 default) does not reach
them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["CallerState", "caller_state_kept", "without_caller_autocast"]


@contextlib.contextmanager
def without_caller_autocast() -> Iterator[None]:
    """Autocast off (on the CPU, and on CUDA where there is CUDA) inside: an autocast the caller opened does not
    reach the code within, which opens its own where it wants one."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast("cpu", enabled=False))
        if torch.cuda.is_available():
            stack.enter_context(torch.autocast("cuda", enabled=False))
        yield


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
