"""Building blocks of latentdyn/nn.py: MLP, TimeDistributed (also around the conv encoders and decoders),
init_orthogonal_."""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from contracts import seeded
from torch import nn

from latentdyn.encoders.conv import DCGANDecoder, DCGANEncoder, EncoderOutput, VGGDecoder, VGGEncoder
from latentdyn.nn import MLP, TimeDistributed, init_orthogonal_

# ------------------------------------------------------------------------------------------------------ MLP


@pytest.mark.parametrize("n_layers", [1, 2, 4])
def test_mlp_is_linear_then_activation_linear_pairs(n_layers: int) -> None:
    """n_layers Linear layers, an activation before each but the first, no output activation."""
    with seeded(0):
        mlp = MLP(3, 6, 2, n_layers).double()
    linears = mlp.linears()
    assert len(linears) == n_layers
    assert [(l.in_features, l.out_features) for l in linears] == list(
        zip([3] + [6] * (n_layers - 1), [6] * (n_layers - 1) + [2])
    )
    x = torch.randn(5, 4, 3, dtype=torch.float64)  # any leading axes
    h = F.linear(x, linears[0].weight, linears[0].bias)
    for layer in linears[1:]:
        h = F.linear(torch.relu(h), layer.weight, layer.bias)
    torch.testing.assert_close(mlp(x), h, rtol=1e-12, atol=1e-12)
    assert isinstance(mlp.layers[-1], nn.Linear)  # linear output
    assert (mlp.in_features, mlp.out_features) == (3, 2)


def test_mlp_takes_an_activation_factory() -> None:
    with seeded(0):
        mlp = MLP(2, 4, 1, 3, activation=nn.Tanh).double()
    assert [type(m) for m in mlp.layers] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    l1, l2, l3 = mlp.linears()
    x = torch.randn(7, 2, dtype=torch.float64)
    expected = l3(torch.tanh(l2(torch.tanh(l1(x)))))
    torch.testing.assert_close(mlp(x), expected, rtol=1e-12, atol=1e-12)


def test_mlp_refuses_an_activation_instance() -> None:
    """nn.Tanh() instead of nn.Tanh would be called with no input at build time (a TypeError about forward)."""
    with pytest.raises(TypeError, match=r"activation: expected a factory .* got Tanh Tanh\(\); pass Tanh without \(\)"):
        MLP(2, 4, 1, 2, activation=nn.Tanh())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"activation: expected a factory .* got str 'relu'$"):
        MLP(2, 4, 1, 2, activation="relu")  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"activation: expected the factory to return an nn\.Module, got builtin_function_or_method"
    ):
        MLP(2, 4, 1, 2, activation=lambda: torch.tanh)  # type: ignore[arg-type,return-value]
    assert len(MLP(2, 4, 1, 2, activation=lambda: nn.LeakyReLU(0.2)).layers) == 3


@pytest.mark.parametrize(
    ("activation", "name"),
    [(torch.tanh, "builtin_function_or_method tanh"), (F.relu, "function relu"), (lambda x: x, "function <lambda>")],
)
def test_mlp_refuses_a_tensor_function_as_activation(activation: object, name: str) -> None:
    """activation=torch.tanh failed inside the factory call: "tanh() missing 1 required positional arguments"."""
    message = (
        f"activation: expected a factory called with no arguments that returns a module (a class such as nn.Tanh), "
        f"got {name}, which needs arguments"
    )
    with pytest.raises(TypeError, match=re.escape(message)) as e:
        MLP(2, 8, 2, 2, activation=activation)  # type: ignore[arg-type]
    assert "pass the module class (nn.Tanh for torch.tanh, nn.ReLU for F.relu)" in str(e.value)


def test_mlp_of_one_layer_ignores_the_hidden_width() -> None:
    mlp = MLP(3, 0, 2, 1)
    assert len(mlp.linears()) == 1 and mlp(torch.zeros(4, 3)).shape == (4, 2)


def test_mlp_of_one_layer_still_wants_an_int_width() -> None:
    """The unused width took "x" or -1 without a word; it is an int >= 0 there now (0 and any width still work)."""
    for bad in ("x", 1.5, None, True):
        with pytest.raises(TypeError, match=r"^hidden_features: expected an int \(unused with n_layers=1\), got "):
            MLP(3, bad, 2, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^hidden_features: expected an int >= 0 \(unused with n_layers=1\), got -1$"):
        MLP(3, -1, 2, 1)
    assert len(MLP(3, 64, 2, 1).linears()) == 1


def test_mlp_errors() -> None:
    with pytest.raises(ValueError, match="in_features: expected an int >= 1, got 0"):
        MLP(0, 4, 2, 2)
    with pytest.raises(ValueError, match="out_features: expected an int >= 1, got -2"):
        MLP(3, 4, -2, 2)
    with pytest.raises(ValueError, match="n_layers: expected an int >= 1, got 0"):
        MLP(3, 4, 2, 0)
    with pytest.raises(ValueError, match="hidden_features: expected an int >= 1, got 0"):
        MLP(3, 0, 2, 2)
    with pytest.raises(TypeError, match=r"in_features: expected an int >= 1, got float 3\.0"):
        MLP(3.0, 4, 2, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="n_layers: expected an int >= 1, got bool True"):
        MLP(3, 4, 2, True)
    with pytest.raises(TypeError, match="hidden_features: expected an int >= 1, got str"):
        MLP(3, "4", 2, 2)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ init_orthogonal_


def test_init_orthogonal_sets_every_linear_layer_and_nothing_else() -> None:
    """W Wᵀ = gain²·I (or Wᵀ W for tall W), zero biases, in nested modules; other layers untouched."""
    with seeded(0):
        model = nn.Sequential(MLP(3, 8, 5, 3), nn.LayerNorm(5), nn.Sequential(nn.Linear(5, 2, bias=False)))
    with torch.no_grad():
        model[1].weight.add_(1.0)  # a non-default value that the init must not reset
    norm_before = {k: v.clone() for k, v in model[1].state_dict().items()}
    gain = 1.7
    init_orthogonal_(model, gain)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4
    for layer in linears:
        w = layer.weight.detach().double()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0], dtype=torch.float64), rtol=0, atol=1e-5)
        if layer.bias is not None:
            assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    for k, v in model[1].state_dict().items():
        assert torch.equal(v, norm_before[k]), k


def test_init_orthogonal_follows_the_generator() -> None:
    def weights(seed: int) -> list[torch.Tensor]:
        mlp = MLP(3, 6, 2, 3)
        init_orthogonal_(mlp, 1.0, generator=torch.Generator().manual_seed(seed))
        return [l.weight.detach().clone() for l in mlp.linears()]

    same, again, other = weights(4), weights(4), weights(5)
    assert all(torch.equal(a, b) for a, b in zip(same, again))
    assert not torch.equal(same[0], other[0])


def test_init_orthogonal_returns_the_module_and_checks_its_arguments() -> None:
    mlp = MLP(3, 6, 2, 2)
    assert init_orthogonal_(mlp, 1.0) is mlp  # like init_conv_weights_, so both chain the same way
    with pytest.raises(TypeError, match=r"module: expected a torch\.nn\.Module, got list"):
        init_orthogonal_([mlp], 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="gain: expected a real number, got str '1'"):
        init_orthogonal_(mlp, "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gain: expected a finite number, got nan"):
        init_orthogonal_(mlp, float("nan"))
    with pytest.raises(TypeError, match=r"generator: expected a torch\.Generator or None, got int"):
        init_orthogonal_(mlp, 1.0, 0)  # type: ignore[arg-type]


def test_initialisers_reach_parametrized_weights() -> None:
    """init_orthogonal_ and init_conv_weights_ wrote in place into a weight_norm layer's weight, which is
    recomputed from its originals at every access: nothing changed, silently. They now set it through the
    parametrization (the draws of a plain layer), and refuse a weight computed by a hook."""
    import warnings

    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import weight_norm

    from latentdyn.encoders.conv import init_conv_weights_

    mlp, plain = MLP(4, 8, 4, 2), MLP(4, 8, 4, 2)
    for layer in mlp.linears():
        weight_norm(layer)
    init_orthogonal_(mlp, 2.0, generator=torch.Generator().manual_seed(0))
    init_orthogonal_(plain, 2.0, generator=torch.Generator().manual_seed(0))
    for layer, reference in zip(mlp.linears(), plain.linears()):
        torch.testing.assert_close(layer.weight, reference.weight, rtol=1e-5, atol=1e-6)
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    w = mlp.linears()[1].weight.detach().double()
    torch.testing.assert_close(w @ w.T, 4 * torch.eye(4, dtype=torch.float64), rtol=0, atol=1e-4)

    convs = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    reference_convs = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    weight_norm(convs[0])
    init_conv_weights_(convs, generator=torch.Generator().manual_seed(1))
    init_conv_weights_(reference_convs, generator=torch.Generator().manual_seed(1))
    for got, expected in zip(convs.modules(), reference_convs.modules()):
        if isinstance(got, (nn.Conv2d, nn.BatchNorm2d)):
            torch.testing.assert_close(got.weight, expected.weight, rtol=1e-5, atol=1e-7)
            assert got.bias is not None and torch.equal(got.bias, torch.zeros_like(got.bias))

    class Positive(nn.Module):  # a parametrization without right_inverse: the weight cannot be set
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.exp()

    positive = nn.Linear(3, 3)
    parametrize.register_parametrization(positive, "weight", Positive())
    with pytest.raises(TypeError, match=r"cannot initialise the parametrized weight of a Linear .* before registering"):
        init_orthogonal_(positive, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of the parametrization
        hooked = torch.nn.utils.weight_norm(nn.Conv2d(2, 3, 3))
    with pytest.raises(TypeError, match=r"the weight of a Conv2d is not a parameter but computed from others"):
        init_conv_weights_(hooked)


def test_initialisers_still_reach_buffer_weights_and_a_fresh_deprecated_spectral_norm() -> None:
    """Tensors that an in-place write does initialise are initialised in place, as before the parametrization
    support: a weight registered as a buffer (a frozen layer), and the deprecated hook-based spectral_norm
    before its first forward, whose weight is a view of weight_orig."""
    import warnings

    frozen, plain = nn.Linear(6, 4), nn.Linear(6, 4)
    weight = frozen.weight.detach().clone()
    del frozen.weight
    frozen.register_buffer("weight", weight)
    init_orthogonal_(frozen, 1.5, generator=torch.Generator().manual_seed(3))
    init_orthogonal_(plain, 1.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(frozen.weight, plain.weight.detach())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of the parametrization
        spectral = torch.nn.utils.spectral_norm(nn.Linear(6, 4))
    init_orthogonal_(spectral, 1.0, generator=torch.Generator().manual_seed(3))
    reference = nn.Linear(6, 4)
    init_orthogonal_(reference, 1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(spectral.weight_orig.detach(), reference.weight.detach())


# ------------------------------------------------------------------------------------------ TimeDistributed


def test_time_distributed_applies_the_module_to_every_step() -> None:
    with seeded(0):
        linear = nn.Linear(4, 3).double()
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    out = TimeDistributed(linear)(x)
    assert out.shape == (5, 2, 3)
    for t in range(5):
        torch.testing.assert_close(out[t], linear(x[t]), rtol=1e-12, atol=1e-12)


def test_time_distributed_batch_norm_sees_all_steps() -> None:
    """In training, BatchNorm normalises over the T·B items together, not per time step."""
    x = torch.randn(4, 3, 2, dtype=torch.float64) * torch.tensor([1.0, 5.0], dtype=torch.float64) + 2
    out = TimeDistributed(nn.BatchNorm1d(2).double().train())(x)
    flat = x.reshape(12, 2)
    expected = (flat - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(out.reshape(12, 2), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("enc_cls", "dec_cls"), [(DCGANEncoder, DCGANDecoder), (VGGEncoder, VGGDecoder)])
def test_time_distributed_wraps_frame_encoders_and_decoders_with_skips(enc_cls: type, dec_cls: type) -> None:
    """FrameEncoder returns an EncoderOutput (a NamedTuple holding a list); FrameDecoder takes (h, skips)."""
    t, b = 3, 2
    with seeded(0):
        encoder = enc_cls(image_size=32, channels=1, base_width=4, code_size=6).double().eval()
        decoder = dec_cls(image_size=32, channels=1, base_width=4, in_features=6, skip=True).double().eval()
    x = torch.rand(t, b, 1, 32, 32, dtype=torch.float64)
    out = TimeDistributed(encoder)(x)
    assert isinstance(out, EncoderOutput) and isinstance(out.skips, list)
    flat = encoder(x.reshape(t * b, 1, 32, 32))
    assert out.code.shape == (t, b, 6)
    torch.testing.assert_close(out.code.reshape(t * b, 6), flat.code, rtol=0, atol=0)
    assert len(out.skips) == len(flat.skips) == len(encoder.skip_shapes)
    for s, f, shape in zip(out.skips, flat.skips, encoder.skip_shapes):
        assert s.shape == (t, b, *shape)
        torch.testing.assert_close(s.reshape(f.shape), f, rtol=0, atol=0)

    frames = TimeDistributed(decoder)(out.code, out.skips)
    assert frames.shape == x.shape
    expected = decoder(flat.code, flat.skips)
    torch.testing.assert_close(frames.reshape(expected.shape), expected, rtol=0, atol=0)
    # Keyword arguments are folded too; None passes through.
    torch.testing.assert_close(TimeDistributed(decoder)(out.code, skips=out.skips), frames, rtol=0, atol=0)
    plain = dec_cls(image_size=32, channels=1, base_width=4, in_features=6, skip=False).double().eval()
    assert TimeDistributed(plain)(out.code, None).shape == x.shape


@pytest.mark.parametrize(("t", "b"), [(0, 3), (3, 0), (0, 0)])
def test_time_distributed_keeps_empty_time_or_batch_axes(t: int, b: int) -> None:
    """A sequence of no frames (or a batch of no sequences) folds to 0 items and unfolds back to (T, B, ...)."""
    out = TimeDistributed(nn.Linear(4, 3))(torch.zeros(t, b, 4))
    assert out.shape == (t, b, 3)
    codes, skips = TimeDistributed(DCGANEncoder(image_size=32, channels=1, base_width=4, code_size=6))(
        torch.zeros(t, b, 1, 32, 32)
    )
    assert codes.shape == (t, b, 6) and all(s.shape[:2] == (t, b) for s in skips)


class _Pair(NamedTuple):
    first: torch.Tensor
    rest: tuple[torch.Tensor, int]


class _Echo(nn.Module):
    """Returns its inputs, to see what TimeDistributed hands the module and how it unfolds the result."""

    def forward(self, x: torch.Tensor, pair: _Pair, scale: float, size: torch.Size) -> tuple[torch.Tensor, _Pair]:
        assert x.shape == (6, 4) and pair.first.shape == (6, 2) and pair.rest[0].shape == (6,)
        assert scale == 0.5 and isinstance(size, torch.Size)
        return x * scale, pair


def test_time_distributed_folds_containers_and_passes_other_values() -> None:
    x, first, last = torch.randn(2, 3, 4), torch.randn(2, 3, 2), torch.randn(2, 3)
    y, pair = TimeDistributed(_Echo())(x, _Pair(first, (last, 7)), 0.5, size=torch.Size([1, 2]))
    assert torch.equal(y, x * 0.5)
    assert isinstance(pair, _Pair) and isinstance(pair.rest, tuple)
    assert torch.equal(pair.first, first) and torch.equal(pair.rest[0], last) and pair.rest[1] == 7


def test_time_distributed_errors() -> None:
    td = TimeDistributed(nn.Linear(4, 3))
    with pytest.raises(TypeError, match=r"x: expected a torch\.Tensor, got list"):
        td([[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x: expected a time-first tensor \(T, B, \.\.\.\), got shape \[4\]"):
        td(torch.zeros(4))
    with pytest.raises(TypeError, match=r"module: expected an nn\.Module, got function"):
        TimeDistributed(lambda x: x)  # type: ignore[arg-type]
    decoder = TimeDistributed(DCGANDecoder(image_size=32, channels=1, base_width=4, in_features=6, skip=True))
    encoder = TimeDistributed(DCGANEncoder(image_size=32, channels=1, base_width=4, code_size=6))
    out = encoder(torch.rand(3, 2, 1, 32, 32))
    bad_skips = [*out.skips[:-1], out.skips[-1][:2]]  # one skip over 2 steps instead of 3
    last = len(out.skips) - 1
    with pytest.raises(
        ValueError,
        match=rf"args\[0\]\[{last}\]: expected a time-first tensor starting with \(T, B\) = \(3, 2\) like x, got "
        r"shape \[2, 2, ",
    ):
        decoder(out.code, bad_skips)
    with pytest.raises(ValueError, match=r"skips\[0\]: expected a time-first tensor starting with \(T, B\)"):
        decoder(out.code, skips=[s[:, :1] for s in out.skips])

    class Total(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum()

    with pytest.raises(
        ValueError,
        match=r"output: expected the wrapped module to return tensors starting with T·B = 6 items, got shape \[\]",
    ):
        TimeDistributed(Total())(torch.zeros(3, 2, 4))


# ------------------------------------------------------------------------------------------------- printing
def _parts() -> list[tuple[nn.Module, str]]:
    from latentdyn import (
        ConditionalGaussianPrior,
        DeepSetEncoder,
        FilteringPosterior,
        GRUCell,
        InitialStatePosterior,
        MLPCell,
        MLPField,
        ODECell,
        ResidualCell,
        StandardNormal,
        by_name,
    )

    return [
        (
            ResidualCell(MLPField(5, 3, 8, 2), 5, 3, n_substeps=4),
            "ResidualCell(\n  state_size=5, cond_size=3, n_substeps=4",
        ),
        (
            ODECell(MLPField(5, 3, 8, 2), by_name("rk4"), 5, 3, n_substeps=2),
            "ODECell(\n  state_size=5, cond_size=3, n_substeps=2, integrator=OdeintIntegrator(method='rk4'",
        ),
        (MLPCell(6, 2, 8, 2), "MLPCell(\n  state_size=6, cond_size=2, n_substeps=1"),
        (GRUCell(6, 2), "GRUCell(\n  state_size=6, cond_size=2, n_substeps=1"),
        (StandardNormal(7), "StandardNormal(dim=7)"),
        (ConditionalGaussianPrior(MLP(4, 8, 6, 2), eps=0.25), "ConditionalGaussianPrior(\n  eps=0.25"),
        (DeepSetEncoder(4, 8, 3, pooling="mean"), "DeepSetEncoder(\n  pooling='mean'"),
        (
            InitialStatePosterior(16, n_frames=3, hidden_size=8, n_layers=2, state_size=4),
            "InitialStatePosterior(\n  n_frames=3",
        ),
        (FilteringPosterior(16, 8, 4).head, "GaussianHead(\n  eps=1e-08"),
        (
            DCGANEncoder(image_size=32, channels=3, base_width=8, code_size=24),
            "DCGANEncoder(\n  image_size=32, channels=3, base_width=8, code_size=24",
        ),
        (
            VGGDecoder(image_size=128, channels=1, base_width=4, in_features=10, skip=True),
            "VGGDecoder(\n  image_size=128, channels=1, base_width=4, in_features=10, skip=True",
        ),
    ]


def test_print_shows_each_parts_settings() -> None:
    """``print(model)`` shows the settings a part was built with, not only its layers (sizes, sub-steps, the
    integrator, which is not a module, the standard deviation's floor, the pooling, the frames read)."""
    for module, expected in _parts():
        assert expected in repr(module), (expected, repr(module)[:300])


def test_results_print_their_tensors_by_shape() -> None:
    """Notebook-review finding: a notebook prints the result of a cell, and a ``Rollout`` or an ``EncoderOutput``
    printed every tensor (pages of numbers, kept in the notebook file); they now print shapes and dtypes, and
    small tensors (a loss) with their values."""
    from latentdyn import ConditionalGaussianPrior, LatentSSM, MLPField, ResidualCell, elbo
    from latentdyn._repr import short_repr

    ssm = LatentSSM(ResidualCell(MLPField(4, 2, 8, 2), 4, 2), ConditionalGaussianPrior(MLP(4, 8, 4, 2)))
    roll = ssm.rollout(torch.zeros(16, 4), 30)
    text = repr(roll)
    assert text.startswith("Rollout(substates=tensor(shape=(30, 16, 4), float32), n_substeps=1, z=tensor(shape=(29,")
    assert len(text) < 700 and "posterior=None" in text
    out = DCGANEncoder(image_size=64, channels=1, base_width=4, code_size=8)(torch.rand(2, 1, 64, 64))
    assert repr(out) == (
        "EncoderOutput(code=tensor(shape=(2, 8), float32), skips=[tensor(shape=(2, 32, 4, 4), float32), "
        "tensor(shape=(2, 16, 8, 8), float32), tensor(shape=(2, 8, 16, 16), float32), tensor(shape=(2, 4, 32, 32), "
        "float32)])"
    )
    terms = elbo(torch.tensor([2.5]), torch.tensor([0.25]), torch.tensor([0.5]), torch.tensor([0.0]))
    assert repr(terms) == (
        "ElboTerms(nll=tensor(2.5000), kl_y=tensor(0.2500), kl_z=tensor(0.5000), residual=tensor(0.), "
        "total=tensor(3.2500))"
    )
    assert short_repr([0.5] * 3) == "[0.5, 0.5, 0.5]"
    assert short_repr(list(range(100))) == "<list of 100 numbers: first 0, last 99>"
    assert short_repr([torch.zeros(1)] * 5).endswith("... (5 in all)]")
    # (diff review) a repr never raises, and mixed or numpy lists are short too
    assert short_repr([10**400] * 7).startswith("<list of 7 numbers: first 1000")
    assert short_repr([np.float32(1.5)] * 7) == "<list of 7 numbers: first 1.5, last 1.5>"
    assert short_repr([torch.zeros(100), 3] * 4) == (
        "[tensor(shape=(100,), float32), 3, tensor(shape=(100,), float32), 3, ... (8 in all)]"
    )
    assert short_repr(torch.zeros(3, 4, device="meta")) == "tensor(shape=(3, 4), float32, device='meta')"
