"""Amortised posteriors: q(y_0) reads the first k codes in order, q(z_t) is a causal LSTM filter or a
bidirectional LSTM smoother."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from contracts import seeded
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from latentdyn import (
    MLP,
    ConditionalGaussianPrior,
    LatentSSM,
    MLPField,
    ResidualCell,
    index_steps,
    kl_per_sequence,
)
from latentdyn.encoders.posteriors import FilteringPosterior, InitialStatePosterior, SmoothingPosterior


def _codes(t: int, b: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(t, b, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _gradcheck_distribution(module: nn.Module, codes: torch.Tensor) -> bool:
    """float64 gradcheck of (mean, std) of ``module(codes)`` w.r.t. the codes and every parameter."""
    names = [k for k, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())

    def fn(codes: torch.Tensor, *ps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = functional_call(module, dict(zip(names, ps)), (codes,))
        return dist.mean, dist.stddev

    return bool(torch.autograd.gradcheck(fn, (codes.requires_grad_(True), *params)))


def test_initial_state_posterior_is_mlp_on_first_k_codes_in_time_order() -> None:
    with seeded(0):
        post = InitialStatePosterior(code_size=3, n_frames=2, hidden_size=6, n_layers=2, state_size=4).double()
    codes = _codes(5, 2, 3)
    dist = post(codes)
    assert tuple(dist.batch_shape) == (2,) and tuple(dist.event_shape) == (4,)
    l1, l2 = post.head.net.linears()  # type: ignore[operator]
    x = torch.cat([codes[0], codes[1]], dim=-1)  # frame 0 first
    raw = F.linear(torch.relu(F.linear(x, l1.weight, l1.bias)), l2.weight, l2.bias)
    torch.testing.assert_close(dist.mean, raw[:, :4], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dist.stddev, F.softplus(raw[:, 4:]) + 1e-8, rtol=1e-12, atol=1e-12)
    later = codes.clone()
    later[2:] = 100.0
    assert torch.equal(post(later).mean, dist.mean)
    swapped = codes[[1, 0, 2, 3, 4]]
    assert not torch.allclose(post(swapped).mean, dist.mean)


@given(k=st.integers(1, 4), extra=st.integers(0, 2), b=st.integers(1, 3))
def test_initial_state_posterior_shapes(k: int, extra: int, b: int) -> None:
    post = InitialStatePosterior(code_size=2, n_frames=k, hidden_size=4, n_layers=3, state_size=3)
    dist = post(torch.randn(k + extra, b, 2))
    assert tuple(dist.batch_shape) == (b,) and tuple(dist.event_shape) == (3,)
    assert torch.isfinite(dist.rsample()).all()


def test_initial_state_posterior_gradcheck() -> None:
    with seeded(0):
        post = InitialStatePosterior(code_size=2, n_frames=2, hidden_size=3, n_layers=2, state_size=2).double()
    assert _gradcheck_distribution(post, _codes(3, 2, 2))


def test_initial_state_posterior_errors() -> None:
    post = InitialStatePosterior(code_size=3, n_frames=4, hidden_size=6, n_layers=2, state_size=2)
    with pytest.raises(ValueError, match="codes: expected at least n_frames=4 frames, got 3"):
        post(torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match="codes: expected size 3 for axis 'd'"):
        post(torch.zeros(5, 2, 4))
    with pytest.raises(ValueError, match=r"codes: expected 3 dimensions \(t b d\)"):
        post(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="n_frames: expected an int >= 1, got 0"):
        InitialStatePosterior(code_size=3, n_frames=0, hidden_size=6, n_layers=2, state_size=2)
    with pytest.raises(ValueError, match="state_size"):
        InitialStatePosterior(code_size=3, n_frames=2, hidden_size=6, n_layers=2, state_size=0)
    with pytest.raises(ValueError, match="hidden_size: expected an int >= 1, got 0"):  # its own name, not the MLP's
        InitialStatePosterior(code_size=3, n_frames=2, hidden_size=0, n_layers=2, state_size=2)
    with pytest.raises(ValueError, match="n_layers: expected an int >= 1, got 0"):
        InitialStatePosterior(code_size=3, n_frames=2, hidden_size=6, n_layers=0, state_size=2)
    InitialStatePosterior(code_size=3, n_frames=2, hidden_size=0, n_layers=1, state_size=2)  # no hidden layer


def test_initial_state_posterior_wants_an_int_width_even_when_unused() -> None:
    """With n_layers=1 hidden_size=-1 or "x" was accepted without a word (the width is unused there)."""
    with pytest.raises(ValueError, match=r"^hidden_size: expected an int >= 0 \(unused with n_layers=1\), got -1$"):
        InitialStatePosterior(5, n_frames=2, hidden_size=-1, n_layers=1, state_size=3)
    with pytest.raises(TypeError, match=r"^hidden_size: expected an int \(unused with n_layers=1\), got str 'x'$"):
        InitialStatePosterior(5, n_frames=2, hidden_size="x", n_layers=1, state_size=3)  # type: ignore[arg-type]
    InitialStatePosterior(5, n_frames=2, hidden_size=7, n_layers=1, state_size=3)


def _lstm_by_hand(lstm: nn.LSTM, codes: torch.Tensor) -> torch.Tensor:
    """Single-layer LSTM from a zero state, gates (i, f, g, o) written out; outputs h_t, (T, B, H)."""
    b, hsize = codes.shape[1], lstm.hidden_size
    h = codes.new_zeros(b, hsize)
    c = codes.new_zeros(b, hsize)
    outs = []
    w_ih, w_hh = lstm.get_parameter("weight_ih_l0"), lstm.get_parameter("weight_hh_l0")
    b_ih, b_hh = lstm.get_parameter("bias_ih_l0"), lstm.get_parameter("bias_hh_l0")
    for x in codes:
        gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)


def test_filtering_posterior_matches_lstm_by_hand() -> None:
    with seeded(0):
        post = FilteringPosterior(code_size=3, hidden_size=5, noise_size=2).double()
    codes = _codes(6, 4, 3)
    dist = post(codes)
    assert tuple(dist.batch_shape) == (5, 4) and tuple(dist.event_shape) == (2,)
    h = _lstm_by_hand(post.lstm, codes)
    torch.testing.assert_close(post.features(codes), h, rtol=1e-12, atol=1e-12)
    linear = post.head.net
    assert isinstance(linear, nn.Linear)
    raw = h[1:] @ linear.weight.T + linear.bias  # output 0 is not used: z_t exists for t = 1..T-1
    torch.testing.assert_close(dist.mean, raw[..., :2], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dist.stddev, F.softplus(raw[..., 2:]) + 1e-8, rtol=1e-12, atol=1e-12)


def _means_with_frame_changed(
    posterior: type[FilteringPosterior] | type[SmoothingPosterior], k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Means of q(z_1..z_5) over 6 frames, before and after frame k changes."""
    with seeded(0):
        post = posterior(code_size=3, hidden_size=5, noise_size=2).double()
    codes = _codes(6, 2, 3)
    changed = codes.clone()
    changed[k] += 1.0
    return post(codes).mean, post(changed).mean


@given(k=st.integers(1, 5))
def test_filtering_posterior_never_sees_the_future(k: int) -> None:
    """Changing frame k leaves q(z_t) for t < k unchanged and changes q(z_k)."""
    before, after = _means_with_frame_changed(FilteringPosterior, k)
    assert torch.equal(before[: k - 1], after[: k - 1])  # z_1..z_{k-1}
    assert not torch.allclose(before[k - 1], after[k - 1])  # z_k sees frame k


def test_filtering_posterior_gradcheck() -> None:
    with seeded(0):
        post = FilteringPosterior(code_size=2, hidden_size=2, noise_size=2).double()
    assert _gradcheck_distribution(post, _codes(3, 2, 2))


def test_filtering_posterior_errors() -> None:
    post = FilteringPosterior(code_size=3, hidden_size=5, noise_size=2)
    with pytest.raises(ValueError, match="codes: expected size 3 for axis 'd'"):
        post(torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="codes: expected 3 dimensions"):
        post(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"codes: expected at least 1 frame \(T >= 1\), got shape \[0, 2, 3\]"):
        post(torch.zeros(0, 2, 3))  # the LSTM's own error did not name the argument
    assert post(torch.zeros(1, 2, 3)).batch_shape == (0, 2)  # one frame: no transition, no z
    with pytest.raises(ValueError, match="noise_size: expected an int >= 1, got 0"):
        FilteringPosterior(code_size=3, hidden_size=5, noise_size=0)
    with pytest.raises(ValueError, match="hidden_size"):
        FilteringPosterior(code_size=3, hidden_size=0, noise_size=2)


def test_smoothing_posterior_joins_a_forward_and_a_backward_lstm() -> None:
    """Output t is [forward LSTM after frames 0..t, backward LSTM after frames T-1..t]; z_t reads output t."""
    with seeded(0):
        post = SmoothingPosterior(code_size=3, hidden_size=5, noise_size=2).double()
    codes = _codes(6, 4, 3)
    dist = post(codes)
    assert tuple(dist.batch_shape) == (5, 4) and tuple(dist.event_shape) == (2,)
    forward = _lstm_by_hand(_one_direction_module(post, ""), codes)
    backward = _lstm_by_hand(_one_direction_module(post, "_reverse"), codes.flip(0)).flip(0)
    h = torch.cat([forward, backward], dim=-1)
    torch.testing.assert_close(post.features(codes), h, rtol=1e-12, atol=1e-12)
    linear = post.head.net
    assert isinstance(linear, nn.Linear)
    raw = h[1:] @ linear.weight.T + linear.bias  # output 0 is not used: z_t exists for t = 1..T-1
    torch.testing.assert_close(dist.mean, raw[..., :2], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dist.stddev, F.softplus(raw[..., 2:]) + 1e-8, rtol=1e-12, atol=1e-12)


def _one_direction_module(post: SmoothingPosterior, suffix: str) -> nn.LSTM:
    lstm = nn.LSTM(post.lstm.input_size, post.lstm.hidden_size).double()
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(lstm, name).copy_(getattr(post.lstm, name + suffix))
    return lstm


@given(k=st.integers(1, 5))
def test_smoothing_posterior_sees_the_whole_sequence(k: int) -> None:
    """Changing frame k changes q(z_t) for every t, before k as well as from k on (the filter's do not change)."""
    before, after = _means_with_frame_changed(SmoothingPosterior, k)
    for t in range(5):  # z_{t+1}
        assert not torch.allclose(before[t], after[t]), t


def test_smoothing_posterior_of_a_padded_batch_is_that_of_each_sequence_alone() -> None:
    """With ``lengths``, sequence b's posterior at its steps is the one of its L_b codes alone, whatever the
    padding (NaN there included); without, the backward LSTM reads the padding into every step."""
    with seeded(0):
        post = SmoothingPosterior(code_size=3, hidden_size=5, noise_size=2).double()
    lengths = [6, 3, 1, 4]
    codes = _codes(6, 4, 3)
    padded = codes.clone()
    for b, n in enumerate(lengths):
        padded[n:, b] = float("nan")
    for given_lengths in (lengths, torch.tensor(lengths), np.array(lengths, dtype=np.int32)):
        features = post.features(padded, given_lengths)
        dist = post(padded, given_lengths)
        assert torch.isfinite(dist.mean).all() and torch.isfinite(dist.stddev).all()
        for b, n in enumerate(lengths):
            alone = post.features(codes[:n, b : b + 1])[:, 0]
            torch.testing.assert_close(features[:n, b], alone, rtol=1e-12, atol=1e-12)
            assert torch.equal(features[n:, b], torch.zeros_like(features[n:, b]))  # not read: 0
            torch.testing.assert_close(dist.mean[: n - 1, b], post(codes[:n, b : b + 1]).mean[:, 0])
    # Without lengths, a short sequence's steps depend on its padding.
    zero_padded = codes.clone()
    zero_padded[3:, 1] = 0.0
    assert not torch.allclose(post.features(zero_padded)[:3, 1], post.features(codes[:3, 1:2])[:, 0])
    assert post(padded[:, :0], []).batch_shape == (5, 0)  # an empty batch


def test_smoothing_posterior_gradcheck_and_rollout() -> None:
    with seeded(0):
        post = SmoothingPosterior(code_size=2, hidden_size=2, noise_size=2).double()
    assert _gradcheck_distribution(post, _codes(3, 2, 2))
    # A drop-in posterior of a rollout; its padded steps left out of the KL by the mask.
    with seeded(1):
        ssm = LatentSSM(ResidualCell(MLPField(3, 2, 8, 2), 3, 2), ConditionalGaussianPrior(MLP(3, 8, 4, 2))).double()
    lengths = torch.tensor([4, 2])
    q = post(_codes(4, 2, 2), lengths)
    mask = torch.arange(1, 4)[:, None] < lengths  # z_t for t < L
    roll = ssm.rollout(torch.zeros(2, 3, dtype=torch.float64), 4, posterior=q, posterior_mask=mask)
    kl = kl_per_sequence(roll.posterior, index_steps(roll.prior, slice(0, 3)), mask=roll.posterior_mask)
    step = torch.distributions.kl_divergence(q, index_steps(roll.prior, slice(0, 3)))
    torch.testing.assert_close(kl, torch.stack([step[:, 0].sum(), step[:1, 1].sum()]))


def test_smoothing_posterior_errors() -> None:
    post = SmoothingPosterior(code_size=3, hidden_size=5, noise_size=2)
    codes = torch.zeros(4, 2, 3)
    with pytest.raises(ValueError, match="codes: expected size 3 for axis 'd'"):
        post(torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match=r"codes: expected at least 1 frame \(T >= 1\), got shape \[0, 2, 3\]"):
        post(torch.zeros(0, 2, 3))
    with pytest.raises(TypeError, match=r"^codes: expected the dtype of the posterior's parameters, torch\.float32"):
        post(codes.double())
    assert post(torch.zeros(1, 2, 3)).batch_shape == (0, 2)  # one frame: no transition, no z
    with pytest.raises(ValueError, match=r"^lengths: expected one length per sequence, shape \(2,\), got shape \[3\]"):
        post(codes, [4, 4, 4])
    with pytest.raises(
        ValueError,
        match=r"^lengths: expected lengths in \[1, T\] = \[1, 4\], got 2 outside, the first"
        r" at 0: 0",
    ):
        post(codes, [0, 5])
    with pytest.raises(TypeError, match=r"^lengths: expected integer lengths, got a tensor of dtype torch\.float32"):
        post(codes, torch.tensor([4.0, 2.0]))
    with pytest.raises(TypeError, match=r"^lengths: expected ints, got bool True"):
        post(codes, [True, 2])
    with pytest.raises(TypeError, match=r"^lengths: expected B ints \(a sequence, a tensor or an array\), got int"):
        post(codes, 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^lengths: expected integer lengths, got an array of dtype float64"):
        post(codes, np.array([4.0, 2.0]))
    with pytest.raises(ValueError, match="noise_size: expected an int >= 1, got 0"):
        SmoothingPosterior(code_size=3, hidden_size=5, noise_size=0)
    with pytest.raises(ValueError, match="hidden_size"):
        SmoothingPosterior(code_size=3, hidden_size=0, noise_size=2)


def test_initial_state_posterior_takes_its_sizes_by_keyword() -> None:
    """(code_size, n_frames, hidden_size, n_layers, state_size) put the output size after the layer count, unlike
    MLP: InitialStatePosterior(8, 2, 16, 4, 3) read as MLP-like built a 3-dimensional state with 4 layers."""
    with pytest.raises(TypeError, match="positional argument"):
        InitialStatePosterior(8, 2, 16, 4, 3)  # type: ignore[misc]
    post = InitialStatePosterior(8, n_frames=2, hidden_size=16, n_layers=4, state_size=3)
    assert post(torch.randn(5, 2, 8)).event_shape == (3,)
