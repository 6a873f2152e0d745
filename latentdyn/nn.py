"""Small neural-network building blocks shared by every part of latentdyn."""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange
from torch import nn

from latentdyn._checks import check_positive_int, check_tensor

__all__ = ["MLP", "TimeDistributed", "init_orthogonal_"]


class MLP(nn.Module):
    """Multi-layer perceptron ``Linear, (act, Linear) * (n_layers - 1)`` with a linear output.

    An activation precedes every Linear layer but the first, so the network ends on a Linear layer with no
    output activation; ``n_layers`` counts Linear layers (the official SRVP convention).

    Args:
        in_features: input size.
        hidden_features: width of the hidden layers (unused when ``n_layers == 1``).
        out_features: output size.
        n_layers: number of Linear layers, at least 1.
        activation: factory for the hidden activation (default ReLU).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        n_layers: int,
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        check_positive_int(in_features, "in_features")
        check_positive_int(out_features, "out_features")
        check_positive_int(n_layers, "n_layers")
        if n_layers > 1:
            check_positive_int(hidden_features, "hidden_features")
        sizes = [in_features] + [hidden_features] * (n_layers - 1) + [out_features]
        layers: list[nn.Module] = [nn.Linear(sizes[0], sizes[1])]
        for i in range(1, n_layers):
            layers += [activation(), nn.Linear(sizes[i], sizes[i + 1])]
        self.layers = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = out_features

    def linears(self) -> list[nn.Linear]:
        """The Linear layers, input first."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to ``x`` of shape (..., in_features); returns (..., out_features)."""
        return self.layers(x)


class TimeDistributed(nn.Module):
    """Apply a per-item module to every element of a time-first batch ``(T, B, ...)``.

    The time and batch axes are folded into one before the call and unfolded after, so modules that mix
    statistics across the batch (BatchNorm in training) see all T·B items at once.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (T, B, ...) to (T, B, ...out) with the wrapped module applied to (T·B, ...)."""
        check_tensor(x, "x")
        if x.dim() < 2:
            raise ValueError(f"x: expected a time-first tensor (T, B, ...), got shape {list(x.shape)}")
        out = self.module(rearrange(x, "t b ... -> (t b) ..."))
        return rearrange(out, "(t b) ... -> t b ...", t=x.shape[0])


def init_orthogonal_(module: nn.Module, gain: float, generator: torch.Generator | None = None) -> None:
    """Initialise every Linear layer of ``module``: orthogonal weights with ``gain``, zero biases.

    The layers are visited in ``module.apply`` order (children before parents, registration order), so a
    seeded global RNG gives the same weights as any other code that walks the module the same way.
    """

    def init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, gain=gain, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    module.apply(init)
