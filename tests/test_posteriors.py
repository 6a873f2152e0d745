"""Amortised posteriors: q(y_0) reads the first k codes in order, q(z_t) is a causal LSTM filter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from contracts import seeded
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from latentdyn.encoders.posteriors import FilteringPosterior, InitialStatePosterior


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


@given(k=st.integers(1, 5))
def test_filtering_posterior_never_sees_the_future(k: int) -> None:
    """Changing frame k leaves q(z_t) for t < k unchanged and changes q(z_k)."""
    with seeded(0):
        post = FilteringPosterior(code_size=3, hidden_size=5, noise_size=2).double()
    codes = _codes(6, 2, 3)
    changed = codes.clone()
    changed[k] += 1.0
    before, after = post(codes), post(changed)
    assert torch.equal(before.mean[: k - 1], after.mean[: k - 1])  # z_1..z_{k-1}
    assert not torch.allclose(before.mean[k - 1], after.mean[k - 1])  # z_k sees frame k


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


def test_initial_state_posterior_takes_its_sizes_by_keyword() -> None:
    """(code_size, n_frames, hidden_size, n_layers, state_size) put the output size after the layer count, unlike
    MLP: InitialStatePosterior(8, 2, 16, 4, 3) read as MLP-like built a 3-dimensional state with 4 layers."""
    with pytest.raises(TypeError, match="positional argument"):
        InitialStatePosterior(8, 2, 16, 4, 3)  # type: ignore[misc]
    post = InitialStatePosterior(8, n_frames=2, hidden_size=16, n_layers=4, state_size=3)
    assert post(torch.randn(5, 2, 8)).event_shape == (3,)
