"""Content encoder and frame selection: DeepSets invariance and formula, frame indices and gathers."""

from __future__ import annotations

import math

import pytest
import torch
from contracts import seeded
from hypothesis import given
from hypothesis import strategies as st
from strategies import permutations_of
from torch.func import functional_call

from latentdyn.encoders.content import DeepSetEncoder, last_frames, random_distinct_frames, select_frames


def _encoder(pooling: str, activation: str = "tanh") -> DeepSetEncoder:
    with seeded(0):
        return DeepSetEncoder(3, 5, 2, pooling=pooling, output_activation=activation).double()


@pytest.mark.parametrize("pooling", ["sum", "mean"])
@given(data=st.data(), k=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_deepset_permutation_invariance(pooling: str, data: st.DataObject, k: int, seed: int) -> None:
    enc = _encoder(pooling)
    elements = torch.randn(k, 3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    perm = data.draw(permutations_of(k))
    torch.testing.assert_close(enc(elements[perm]), enc(elements), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("pooling", "activation"), [("sum", "tanh"), ("mean", "tanh"), ("sum", "none")])
def test_deepset_formula(pooling: str, activation: str) -> None:
    """w = act(W₂ · pool_k relu(W₁ h_k + b₁) + b₂), pooled by a sum or a mean over the K elements."""
    enc = _encoder(pooling, activation)
    elements = torch.randn(4, 2, 3, dtype=torch.float64)
    lin1, lin2 = enc.proj[0], enc.out[0]
    assert isinstance(lin1, torch.nn.Linear) and isinstance(lin2, torch.nn.Linear)
    projected = [torch.relu(elements[k] @ lin1.weight.T + lin1.bias) for k in range(4)]
    pooled = torch.stack(projected).sum(0) / (4 if pooling == "mean" else 1)
    pre = pooled @ lin2.weight.T + lin2.bias
    expected = torch.tanh(pre) if activation == "tanh" else pre
    out = enc(elements)
    assert out.shape == (2, 2)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_deepset_gradcheck() -> None:
    enc = _encoder("sum")
    names = [k for k, _ in enc.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in enc.parameters())
    elements = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def fn(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return functional_call(enc, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(fn, (elements.requires_grad_(True), *params))


def test_deepset_errors() -> None:
    with pytest.raises(ValueError, match="pooling: expected one of 'sum', 'mean', got 'max'"):
        DeepSetEncoder(3, 5, 2, pooling="max")
    with pytest.raises(ValueError, match="output_activation: expected one of 'tanh', 'none', got 'relu'"):
        DeepSetEncoder(3, 5, 2, output_activation="relu")
    with pytest.raises(ValueError, match="in_features"):
        DeepSetEncoder(0, 5, 2)
    with pytest.raises(ValueError, match="hidden_features: expected an int >= 1, got 0"):
        DeepSetEncoder(3, 0, 2)
    with pytest.raises(ValueError, match="out_features: expected an int >= 1, got -1"):
        DeepSetEncoder(3, 5, -1)
    with pytest.raises(TypeError, match=r"hidden_features: expected an int >= 1, got float 5\.0"):
        DeepSetEncoder(3, 5.0, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pooling: expected one of 'sum', 'mean', got NoneType"):
        DeepSetEncoder(3, 5, 2, pooling=None)  # type: ignore[arg-type]
    enc = DeepSetEncoder(3, 5, 2)
    with pytest.raises(ValueError, match=r"elements: expected a non-empty set \(K >= 1\), got K = 0"):
        enc(torch.zeros(0, 2, 3))
    with pytest.raises(ValueError, match="elements: expected size 3 for axis 'd'"):
        enc(torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="elements: expected 3 dimensions"):
        enc(torch.zeros(2, 3))


@pytest.mark.parametrize("trailing", [(), (4,), (1, 2, 3)])
def test_select_frames_gathers_per_sequence(trailing: tuple[int, ...]) -> None:
    codes = torch.randn(5, 3, *trailing)
    indices = torch.tensor([[4, 0, 2], [1, 0, 3]])
    out = select_frames(codes, indices)
    assert out.shape == (2, 3, *trailing)
    for k in range(2):
        for b in range(3):
            assert torch.equal(out[k, b], codes[indices[k, b], b])
    assert torch.equal(select_frames(codes, indices.int()), out)


def test_select_frames_errors() -> None:
    codes = torch.randn(5, 3, 4)
    with pytest.raises(ValueError, match=r"indices: expected frame indices in \[0, 4\], got"):
        select_frames(codes, torch.tensor([[5, 0, 0]]))
    with pytest.raises(ValueError, match=r"indices: expected frame indices in \[0, 4\]"):
        select_frames(codes, torch.tensor([[-1, 0, 0]]))
    with pytest.raises(TypeError, match="indices: expected an integer tensor"):
        select_frames(codes, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="indices: expected size 3 for axis 'b'"):
        select_frames(codes, torch.zeros(1, 2, dtype=torch.long))


def test_select_frames_from_no_frames_says_so() -> None:
    """Codes with T = 0 were told "expected frame indices in [0, -1]", an empty range."""
    with pytest.raises(ValueError, match=r"indices: got 1 row\(s\) of frame indices, but there are no frames .*T = 0"):
        select_frames(torch.randn(0, 3, 5), torch.zeros(1, 3, dtype=torch.long))
    assert select_frames(torch.randn(0, 3, 5), torch.zeros(0, 3, dtype=torch.long)).shape == (0, 3, 5)


@given(n=st.integers(1, 8), data=st.data(), b=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_random_distinct_frames_distinct_and_in_range(n: int, data: st.DataObject, b: int, seed: int) -> None:
    k = data.draw(st.integers(1, n))
    idx = random_distinct_frames(n, k, b, generator=torch.Generator().manual_seed(seed))
    assert idx.shape == (k, b) and idx.dtype == torch.int64
    assert int(idx.min()) >= 0 and int(idx.max()) < n
    for col in idx.T.tolist():
        assert len(set(col)) == k
    again = random_distinct_frames(n, k, b, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(idx, again)


def test_random_distinct_frames_uniform_and_independent_per_sequence() -> None:
    """Each frame is picked with probability k/n, and sequences draw independently of each other."""
    n, k, b = 6, 2, 6000
    idx = random_distinct_frames(n, k, b, generator=torch.Generator().manual_seed(0))
    freq = torch.stack([(idx == f).any(0) for f in range(n)]).double().mean(1)
    torch.testing.assert_close(freq, torch.full((n,), k / n, dtype=torch.float64), rtol=0, atol=0.03)
    sets = [frozenset(col) for col in idx.T.tolist()]
    same_as_next = sum(sets[i] == sets[i + 1] for i in range(b - 1)) / (b - 1)
    assert same_as_next == pytest.approx(1 / math.comb(n, k), abs=0.02)  # 1/15 if independent
    # The first pick of sequence b says nothing about the first pick of sequence b + 1.
    first = idx[0].double()
    corr = torch.corrcoef(torch.stack([first[:-1], first[1:]]))[0, 1]
    assert abs(corr.item()) < 0.05
    other = random_distinct_frames(n, k, b, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(idx, other)


def test_random_distinct_frames_errors() -> None:
    with pytest.raises(ValueError, match="k: cannot draw 5 distinct content frames out of 3 available"):
        random_distinct_frames(3, 5, 2)
    with pytest.raises(ValueError, match="k: expected an int >= 1, got 0"):
        random_distinct_frames(3, 0, 2)
    with pytest.raises(ValueError, match="n_frames"):
        random_distinct_frames(0, 1, 2)


@given(n=st.integers(1, 8), data=st.data(), b=st.integers(1, 4))
def test_last_frames(n: int, data: st.DataObject, b: int) -> None:
    k = data.draw(st.integers(1, n))
    idx = last_frames(n, k, b)
    assert idx.shape == (k, b)
    assert idx.T.tolist() == [list(range(n - k, n))] * b
    codes = torch.randn(n, b, 2)
    assert torch.equal(select_frames(codes, idx), codes[n - k :])


def test_last_frames_errors() -> None:
    with pytest.raises(ValueError, match="k: cannot take the last 4 content frames out of 3 available"):
        last_frames(3, 4, 2)
    with pytest.raises(ValueError, match="k: expected an int >= 1"):
        last_frames(3, 0, 2)
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got -1"):
        last_frames(5, 2, -1)
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got 0"):
        last_frames(5, 2, 0)
    with pytest.raises(TypeError, match="batch_size: expected an int >= 1, got float"):
        last_frames(5, 2, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_frames: expected an int >= 1, got 0"):
        last_frames(0, 1, 2)


def test_check_frame_indices_names_the_argument() -> None:
    import torch as _torch

    from latentdyn.encoders.content import check_frame_indices

    good = _torch.tensor([[0, 4]])
    assert check_frame_indices(good, 5, 2) is good
    with pytest.raises(ValueError, match=r"content_indices: expected frame indices in \[0, 4\], got 0..5"):
        check_frame_indices(_torch.tensor([[0, 5]]), 5, 2, "content_indices")
    with pytest.raises(ValueError, match="skip_index: expected size 2 for axis 'b'"):
        check_frame_indices(_torch.tensor([[0, 1, 2]]), 5, 2, "skip_index")


def test_random_distinct_frames_refuses_one_frame_more_than_available() -> None:
    assert random_distinct_frames(3, 3, 2).shape == (3, 2)
    with pytest.raises(ValueError, match="k: cannot draw 4 distinct content frames out of 3 available"):
        random_distinct_frames(3, 4, 2)


def test_deepset_pools_by_sum_by_default() -> None:
    """SRVP's content encoder sums over the frames (a mean would be another model)."""
    assert DeepSetEncoder(3, 5, 2).pooling == "sum"


def test_random_distinct_frames_returns_on_the_default_device_whatever_the_generators() -> None:
    """The draws are made on the generator's device (a CPU generator serves GPU batches); the result is on
    ``device``, and without one on torch's default device, not the generator's (a diff review)."""
    previous = torch.empty(0).device  # (torch.get_default_device: torch >= 2.3)
    torch.set_default_device("meta")
    try:
        assert random_distinct_frames(6, 3, 2, generator=torch.Generator()).device.type == "meta"
    finally:
        torch.set_default_device(previous)
    on_cpu = random_distinct_frames(6, 3, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(
        on_cpu, random_distinct_frames(6, 3, 2, device="cpu", generator=torch.Generator().manual_seed(0))
    )
