"""Amortised posteriors over the initial state and the transition noise, from frame codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from einops import rearrange
from torch import nn
from torch.distributions import Independent, Normal
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from latentdyn._checks import check_entry_input, check_hidden_size, check_positive_int, check_shape, is_int
from latentdyn.distributions import GaussianHead
from latentdyn.nn import MLP

__all__ = ["FilteringPosterior", "InitialStatePosterior", "SmoothingPosterior"]


class InitialStatePosterior(nn.Module):
    """q(y_0 | x_{0..k−1}): an MLP on the concatenated codes of the first k frames, in time order.

    The arguments after ``code_size`` are taken by keyword: their order differed from :class:`~latentdyn.nn.MLP`'s
    (output size before the number of layers), and ``n_frames`` read positionally is easily taken for the
    sequence length (which would feed q(y_0) the frames it is meant to predict).

    Args:
        code_size: Dh, size of a frame code.
        n_frames: k, number of leading frames read (K in shapes), not the length of the sequences.
        hidden_size: MLP width, an int >= 1 (unused when ``n_layers == 1``, where any int >= 0 is accepted).
        n_layers: number of Linear layers of the MLP.
        state_size: Dy.

    Raises:
        TypeError: a size is not an int.
        ValueError: a size below 1 (``hidden_size`` with ``n_layers > 1``; negative otherwise).
    """

    def __init__(self, code_size: int, *, n_frames: int, hidden_size: int, n_layers: int, state_size: int) -> None:
        super().__init__()
        self.code_size = check_positive_int(code_size, "code_size")
        self.n_frames = check_positive_int(n_frames, "n_frames")
        self.state_size = check_positive_int(state_size, "state_size")
        # Checked here so that a message names this class's argument, not the MLP's ``hidden_features``.
        check_hidden_size(hidden_size, "hidden_size", check_positive_int(n_layers, "n_layers"))
        self.head = GaussianHead(MLP(n_frames * code_size, hidden_size, 2 * state_size, n_layers))

    def extra_repr(self) -> str:
        """The number of leading frames read, shown by ``print(posterior)``."""
        return f"n_frames={self.n_frames}"

    def forward(self, codes: torch.Tensor) -> Independent[Normal]:
        """Posterior q(y_0 | x_{0..k−1}) from the codes of the first k frames.

        Args:
            codes: frame codes, (T, B, Dh) with T >= k; only the first k frames are read.

        Returns:
            A diagonal Gaussian with batch (B,) and event (Dy,).

        Raises:
            TypeError: ``codes`` is not a floating-point tensor, or (outside ``torch.autocast``) not in the dtype
                of the posterior's parameters.
            ValueError: ``codes`` is not (T, B, Dh) with T >= k.
        """
        t = check_shape(codes, "t b d", "codes", d=self.code_size)["t"]
        if t < self.n_frames:
            raise ValueError(f"codes: expected at least n_frames={self.n_frames} frames, got {t}")
        net = self.head.net
        if isinstance(net, MLP):  # the head built here; a replaced one checks its own input
            check_entry_input(codes, "codes", net.layers[0], "posterior")
        return self.head(rearrange(codes[: self.n_frames], "k b d -> b (k d)"))

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, codes: torch.Tensor) -> Independent[Normal]: ...


class FilteringPosterior(nn.Module):
    """q(z_t | x_{0..t}): an LSTM over frame codes whose output at index t parameterises z_t (filtering).

    The LSTM starts from a zero state and reads frames 0..t, so z_t never sees the future. Output 0 is not
    used: z_t exists for t = 1..T−1.

    Args:
        code_size: Dh.
        hidden_size: LSTM size.
        noise_size: Dz (the ``cond_size`` of a cell without exogenous inputs).

    Raises:
        TypeError: a size is not an int.
        ValueError: a size below 1.
    """

    def __init__(self, code_size: int, hidden_size: int, noise_size: int) -> None:
        super().__init__()
        self.code_size = check_positive_int(code_size, "code_size")
        self.noise_size = check_positive_int(noise_size, "noise_size")
        self.lstm, self.head = _lstm_and_head(code_size, hidden_size, noise_size, bidirectional=False)

    def features(self, codes: torch.Tensor) -> torch.Tensor:
        """Filtering features: the LSTM outputs after reading frames 0..t, for every t.

        Args:
            codes: frame codes, (T, B, Dh), T >= 1.

        Returns:
            LSTM outputs, (T, B, hidden_size).

        Raises:
            TypeError: ``codes`` is not a floating-point tensor, or (outside ``torch.autocast``) not in the dtype
                of the LSTM's parameters.
            ValueError: ``codes`` is not (T, B, Dh) with T >= 1.
        """
        _check_codes(codes, self.code_size, self.lstm)
        return self.lstm(codes)[0]

    def forward(self, codes: torch.Tensor) -> Independent[Normal]:
        """Posteriors q(z_t | x_{0..t}) of z_1..z_{T−1}.

        Args:
            codes: frame codes, (T, B, Dh), T >= 1.

        Returns:
            A diagonal Gaussian with batch (T−1, B) and event (Dz,).

        Raises:
            TypeError: ``codes`` is not a floating-point tensor, or (outside ``torch.autocast``) not in the dtype
                of the LSTM's parameters.
            ValueError: ``codes`` is not (T, B, Dh) with T >= 1.
        """
        return self.head(self.features(codes)[1:])

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, codes: torch.Tensor) -> Independent[Normal]: ...


class SmoothingPosterior(nn.Module):
    """q(z_t | x_{0..T−1}): a bidirectional LSTM over frame codes whose output at index t parameterises z_t
    (smoothing, as in deep Kalman filters' structured inference networks).

    Output t joins the forward LSTM after frames 0..t and the backward LSTM after frames T−1 down to t, so
    z_t sees the whole sequence given: a tighter posterior than :class:`FilteringPosterior`'s for fitting and
    imputing whole sequences, but not one for prediction, where the frames after the conditioning ones are
    unknown (give it the conditioning frames only: it is then the smoothing posterior of those). Output 0 is
    not used: z_t exists for t = 1..T−1. A drop-in for :class:`FilteringPosterior` in
    :meth:`~latentdyn.LatentSSM.rollout` and :func:`~latentdyn.kl_per_sequence`.

    Sequences of different lengths padded to T need ``lengths``: without it the backward LSTM would read the
    padding first and carry it into every step.

    Args:
        code_size: Dh.
        hidden_size: the size of each direction's LSTM (the features are 2·hidden_size).
        noise_size: Dz (the ``cond_size`` of a cell without exogenous inputs).

    Raises:
        TypeError: a size is not an int.
        ValueError: a size below 1.
    """

    def __init__(self, code_size: int, hidden_size: int, noise_size: int) -> None:
        super().__init__()
        self.code_size = check_positive_int(code_size, "code_size")
        self.noise_size = check_positive_int(noise_size, "noise_size")
        self.lstm, self.head = _lstm_and_head(code_size, hidden_size, noise_size, bidirectional=True)

    def features(
        self, codes: torch.Tensor, lengths: Sequence[int] | torch.Tensor | np.ndarray | None = None
    ) -> torch.Tensor:
        """Smoothing features: for every t, the forward LSTM's output after frames 0..t and the backward LSTM's
        after frames T−1 (or L−1 for a sequence of length L) down to t, concatenated.

        Args:
            codes: frame codes, (T, B, Dh), T >= 1.
            lengths: the length L_b of every sequence, (B,) ints in [1, T], for a batch padded to T; None: every
                sequence has T frames. Codes past a sequence's length are not read (NaN there is harmless), and
                its features there are 0. The lengths are read on the host (a device sync for a CUDA tensor).

        Returns:
            The features, (T, B, 2·hidden_size), forward half first. (Under CPU autocast, a padded batch's
            packed LSTM runs in float32: its features are float32 where the others are bfloat16.)

        Raises:
            TypeError: ``codes`` is not a floating-point tensor, or (outside ``torch.autocast``) not in the dtype
                of the LSTM's parameters; ``lengths`` is not made of ints.
            ValueError: ``codes`` is not (T, B, Dh) with T >= 1; ``lengths`` is not of shape (B,) or has a
                length outside [1, T].
        """
        t, b = _check_codes(codes, self.code_size, self.lstm)
        if lengths is None:
            return self.lstm(codes)[0]
        lens = _check_lengths(lengths, t, b)
        if b == 0:
            return self.lstm(codes)[0]
        packed = pack_padded_sequence(codes, lens, enforce_sorted=False)
        return pad_packed_sequence(self.lstm(packed)[0], total_length=t)[0]

    def forward(
        self, codes: torch.Tensor, lengths: Sequence[int] | torch.Tensor | np.ndarray | None = None
    ) -> Independent[Normal]:
        """Posteriors q(z_t | x_{0..T−1}) of z_1..z_{T−1}.

        Args:
            codes: frame codes, (T, B, Dh), T >= 1.
            lengths: the length of every sequence, (B,), for a padded batch (see :meth:`features`). Steps at
                and past a sequence's length L (z_t for t >= L) are the head's output on zero features, not a
                posterior: leave them out with a mask (``posterior_mask`` of the rollout, ``mask`` of
                :func:`~latentdyn.kl_per_sequence`).

        Returns:
            A diagonal Gaussian with batch (T−1, B) and event (Dz,).

        Raises:
            TypeError: ``codes`` is not a floating-point tensor, or (outside ``torch.autocast``) not in the dtype
                of the LSTM's parameters; ``lengths`` is not made of ints.
            ValueError: ``codes`` is not (T, B, Dh) with T >= 1; bad ``lengths`` (see :meth:`features`).
        """
        return self.head(self.features(codes, lengths)[1:])

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(
            self, codes: torch.Tensor, lengths: Sequence[int] | torch.Tensor | np.ndarray | None = None
        ) -> Independent[Normal]: ...


def _lstm_and_head(
    code_size: int, hidden_size: int, noise_size: int, *, bidirectional: bool
) -> tuple[nn.LSTM, GaussianHead]:
    """The LSTM over the codes and the Gaussian head on its outputs of a filtering or smoothing posterior."""
    hidden_size = check_positive_int(hidden_size, "hidden_size")
    lstm = nn.LSTM(code_size, hidden_size, bidirectional=bidirectional)
    return lstm, GaussianHead(nn.Linear((2 if bidirectional else 1) * hidden_size, 2 * noise_size))


def _check_codes(codes: torch.Tensor, code_size: int, lstm: nn.LSTM) -> tuple[int, int]:
    """(T, B) of ``codes``, checked to be (T, B, Dh) with T >= 1 and a dtype ``lstm`` takes."""
    sizes = check_shape(codes, "t b d", "codes", d=code_size)
    if sizes["t"] == 0:
        raise ValueError(f"codes: expected at least 1 frame (T >= 1), got shape {list(codes.shape)}")
    check_entry_input(codes, "codes", lstm, "posterior")
    return sizes["t"], sizes["b"]


def _check_lengths(lengths: object, t: int, b: int) -> torch.Tensor:
    """``lengths`` as a CPU int64 (B,) tensor of values in [1, T] (what ``pack_padded_sequence`` takes)."""
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, (Sequence, torch.Tensor, np.ndarray)):
        raise TypeError(f"lengths: expected B ints (a sequence, a tensor or an array), got {type(lengths).__name__}")
    if isinstance(lengths, torch.Tensor):
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise TypeError(f"lengths: expected integer lengths, got a tensor of dtype {lengths.dtype}")
        lens = lengths.detach().to("cpu", torch.int64)
    elif isinstance(lengths, np.ndarray):
        if lengths.dtype.kind not in "iu":
            raise TypeError(f"lengths: expected integer lengths, got an array of dtype {lengths.dtype}")
        lens = torch.as_tensor(lengths.astype(np.int64))
    else:
        bad = [v for v in lengths if not is_int(v)]
        if bad:
            raise TypeError(f"lengths: expected ints, got {type(bad[0]).__name__} {bad[0]!r}")
        lens = torch.tensor(list(lengths), dtype=torch.int64).reshape(len(lengths))
    if lens.shape != (b,):
        raise ValueError(f"lengths: expected one length per sequence, shape ({b},), got shape {list(lens.shape)}")
    out = (lens < 1) | (lens > t)
    if bool(out.any()):
        i = int(out.nonzero()[0, 0])
        raise ValueError(
            f"lengths: expected lengths in [1, T] = [1, {t}], got {int(out.sum())} outside, the first at {i}: "
            f"{int(lens[i])}"
        )
    return lens
