"""Small neural-network building blocks shared by every part of latentdyn."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from einops import rearrange
from torch import nn
from torch.nn.utils import parametrize

from latentdyn._checks import (
    check_entry_input,
    check_hidden_size,
    check_positive_int,
    check_shape,
    check_tensor,
    is_real,
)

__all__ = ["MLP", "TimeDistributed", "init_orthogonal_"]


class MLP(nn.Module):
    """Multi-layer perceptron ``Linear, (act, Linear) * (n_layers - 1)`` with a linear output.

    An activation precedes every Linear layer but the first, so the network ends on a Linear layer with no
    output activation; ``n_layers`` counts Linear layers (the official SRVP convention).

    Args:
        in_features: input size.
        hidden_features: width of the hidden layers, an int >= 1 (unused when ``n_layers == 1``, where any
            int >= 0 is accepted, e.g. 0).
        out_features: output size.
        n_layers: number of Linear layers, at least 1.
        activation: factory for the hidden activation (default ReLU), called with no arguments once per hidden
            layer: a module class such as ``nn.Tanh`` (not an instance ``nn.Tanh()``, nor the tensor function
            ``torch.tanh``), or a function of no arguments returning a module (``lambda: nn.LeakyReLU(0.1)``).

    Raises:
        TypeError: a size is not an int; ``activation`` is a module instance, not callable, a function that
            needs arguments (a tensor function such as ``torch.tanh`` or ``F.relu``), or builds something other
            than a module.
        ValueError: a size below 1 (``hidden_features`` with ``n_layers > 1``; negative otherwise).
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
        check_hidden_size(hidden_features, "hidden_features", check_positive_int(n_layers, "n_layers"))
        if isinstance(activation, nn.Module) or not callable(activation):
            hint = f"; pass {type(activation).__name__} without ()" if isinstance(activation, nn.Module) else ""
            raise TypeError(
                "activation: expected a factory that builds a module (a class such as nn.Tanh, or a function), got "
                f"{type(activation).__name__} {activation!r}{hint}"
            )
        takes_arguments = _needs_arguments(activation)
        if takes_arguments:
            raise _activation_needs_arguments(activation)
        sizes = [in_features] + [hidden_features] * (n_layers - 1) + [out_features]
        layers: list[nn.Module] = [nn.Linear(sizes[0], sizes[1])]
        for i in range(1, n_layers):
            if takes_arguments is None:  # no signature to read (a builtin such as torch.tanh): tell by calling
                try:
                    act = activation()
                except TypeError as e:
                    raise _activation_needs_arguments(activation) from e
                takes_arguments = False
            else:
                act = activation()
            if not isinstance(act, nn.Module):
                raise TypeError(f"activation: expected the factory to return an nn.Module, got {type(act).__name__}")
            layers += [act, nn.Linear(sizes[i], sizes[i + 1])]
        self.layers = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = out_features
        # The input dtype last found to be the first layer's: two compares per call instead of a full check (the
        # MLP runs at every sub-step of a field), the other with the first weight's dtype as it is now (after a
        # .double() the hint no longer holds). A hint only: any other dtype gets the full check again.
        self._accepted_dtype: torch.dtype | None = None

    def linears(self) -> list[nn.Linear]:
        """The Linear layers, input first."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to the last axis.

        Args:
            x: inputs, (..., in_features), floating point.

        Returns:
            Outputs, (..., out_features).

        Raises:
            TypeError: ``x`` is not a floating-point tensor, or (outside ``torch.autocast``) not in the dtype of
                the first layer's parameters.
            ValueError: the last axis of ``x`` is not ``in_features`` long.
        """
        self.check_input(x, "x")
        return self.layers(x)

    def check_input(self, x: object, name: str) -> None:
        """Check an input (..., in_features) of the MLP named ``name`` (for a caller's messages): a floating-point
        tensor in the dtype of the first layer's parameters (under ``torch.autocast``, float32 or lower).

        Raises:
            TypeError, ValueError: as :meth:`forward`, naming ``name``.
        """
        if isinstance(x, torch.Tensor) and x.dtype == self._accepted_dtype and x.shape[-1:] == (self.in_features,):
            first = self.layers._modules["0"]
            weight = first._parameters.get("weight") if first is not None else None
            if weight is not None and weight.dtype == x.dtype:
                return
        check_shape(x, "... d", name, d=self.in_features)
        accepted = check_entry_input(x, name, self.layers[0], "mlp")
        if accepted is not None:
            self._accepted_dtype = accepted

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def _needs_arguments(factory: Callable[..., object]) -> bool | None:
    """Whether ``factory`` cannot be called with no arguments, from its signature; None when it has none to read
    (builtins such as ``torch.tanh``). Classes are taken as factories (their constructor says the rest)."""
    if isinstance(factory, type):
        return False
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind()
    except TypeError:
        return True
    return False


def _activation_needs_arguments(activation: Callable[..., object]) -> TypeError:
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return TypeError(
        "activation: expected a factory called with no arguments that returns a module (a class such as nn.Tanh), "
        f"got {type(activation).__name__} {name}, which needs arguments (a function applied to tensors); pass the "
        "module class (nn.Tanh for torch.tanh, nn.ReLU for F.relu) or a function such as lambda: nn.Tanh()"
    )


class TimeDistributed(nn.Module):
    """Apply a per-item module to every element of a time-first batch ``(T, B, ...)``.

    The time and batch axes of every tensor argument are folded into one, (T·B, ...), before the call, and
    those of every tensor in the result are unfolded after, (T, B, ...). Tensors inside lists, tuples and
    NamedTuples are folded and unfolded too (the containers keep their types), and other arguments (``None``,
    numbers, strings) pass through unchanged. So a :class:`~latentdyn.encoders.FrameEncoder` maps frames
    (T, B, C, H, W) to an ``EncoderOutput`` with code (T, B, Dh) and skips (T, B, C_j, H_j, W_j), and a
    :class:`~latentdyn.encoders.FrameDecoder` takes features (T, B, Din) and those skips.

    Modules that mix statistics across the batch (BatchNorm in training) see all T·B items at once.

    Args:
        module: the per-item module, called on (T·B, ...) tensors.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module: expected an nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Call the module on ``x`` (T, B, ...) and the other arguments folded to (T·B, ...); unfold the result.

        Args:
            x: a time-first tensor (T, B, ...); it sets T and B.
            *args: further arguments; their tensors (also in lists, tuples, NamedTuples) must start with
                (T, B) like ``x``.
            **kwargs: keyword arguments, folded in the same way.

        Returns:
            The module's result with every tensor unfolded to (T, B, ...), in the same containers.

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: ``x`` has fewer than 2 dimensions; another tensor argument does not start with (T, B);
                a tensor of the result does not start with T·B.
        """
        check_tensor(x, "x")
        if x.dim() < 2:
            raise ValueError(f"x: expected a time-first tensor (T, B, ...), got shape {list(x.shape)}")
        t, b = x.shape[:2]
        folded_args = [_fold(a, t, b, f"args[{i}]") for i, a in enumerate(args)]
        folded_kwargs = {k: _fold(v, t, b, k) for k, v in kwargs.items()}
        out = self.module(_fold(x, t, b, "x"), *folded_args, **folded_kwargs)
        return _unfold(out, t, b, "output")

    if TYPE_CHECKING:  # module(...) has forward's signature (torch types nn.Module.__call__ as (...) -> Any)

        def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any: ...


def _is_namedtuple(value: object) -> bool:
    # The NamedTuple idiom (as torch.utils._pytree tests it): a tuple subclass with _fields. Other tuple
    # subclasses (torch.Size) are values, not containers.
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def _map(value: Any, fn: Callable[[torch.Tensor, str], torch.Tensor], name: str) -> Any:
    """``fn`` applied to every tensor of ``value`` (in lists, plain tuples and NamedTuples); the rest as is."""
    if isinstance(value, torch.Tensor):
        return fn(value, name)
    if _is_namedtuple(value):
        return type(value)(*(_map(v, fn, f"{name}.{f}") for f, v in zip(value._fields, value)))
    if type(value) in (list, tuple):
        return type(value)(_map(v, fn, f"{name}[{i}]") for i, v in enumerate(value))
    return value


def _fold(value: Any, t: int, b: int, name: str) -> Any:
    def fold(x: torch.Tensor, where: str) -> torch.Tensor:
        if x.dim() < 2 or tuple(x.shape[:2]) != (t, b):
            raise ValueError(
                f"{where}: expected a time-first tensor starting with (T, B) = ({t}, {b}) like x, got shape "
                f"{list(x.shape)}"
            )
        return rearrange(x, "t b ... -> (t b) ...")

    return _map(value, fold, name)


def _unfold(value: Any, t: int, b: int, name: str) -> Any:
    def unfold(x: torch.Tensor, where: str) -> torch.Tensor:
        if x.dim() < 1 or x.shape[0] != t * b:
            raise ValueError(
                f"{where}: expected the wrapped module to return tensors starting with T·B = {t * b} items, got "
                f"shape {list(x.shape)}"
            )
        return rearrange(x, "(t b) ... -> t b ...", t=t, b=b)  # both sizes: with t = 0, b cannot be inferred

    return _map(value, unfold, name)


_M = TypeVar("_M", bound=nn.Module)


def init_orthogonal_(module: _M, gain: float, generator: torch.Generator | None = None) -> _M:
    """Orthogonal initialisation W Wᵀ = gain²·I of every Linear layer of ``module``, zero biases, in place.

    The layers are visited in ``module.apply`` order (children before parents, registration order), so a
    seeded global RNG gives the same weights as any other code that walks the module the same way.

    Args:
        module: the module whose ``nn.Linear`` layers are initialised (other layers are left alone).
        gain: scale of the orthogonal matrices (SRVP's residual network: its ``res_gain``).
        generator: random generator to draw from; the global torch generator when ``None``.

    Returns:
        ``module`` itself (as :func:`~latentdyn.encoders.init_conv_weights_` does).

    A layer whose weight carries a parametrization (``torch.nn.utils.parametrizations.weight_norm``,
    ``spectral_norm``) is initialised through it: the orthogonal matrix is assigned to ``layer.weight``, which
    sets the parametrization's originals by its ``right_inverse`` (weight norm then gives the orthogonal matrix
    up to rounding; spectral norm divides it by its estimate of its largest singular value, as any weight).

    Raises:
        TypeError: ``module`` is not an ``nn.Module``, ``gain`` not a real number, or ``generator`` neither a
            ``torch.Generator`` nor ``None``; a Linear weight that cannot be set (a parametrization without
            ``right_inverse``, or a weight computed by a hook such as the deprecated
            ``torch.nn.utils.weight_norm``, where an in-place initialisation would change nothing).
        ValueError: ``gain`` is not finite.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    if not is_real(gain):
        raise TypeError(f"gain: expected a real number, got {type(gain).__name__} {gain!r}")
    if not math.isfinite(gain):
        raise ValueError(f"gain: expected a finite number, got {gain!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")

    def init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            _init_tensor_(
                m, "weight", lambda w: _drawn_by(generator, w, lambda t: nn.init.orthogonal_(t, gain, generator))
            )
            _init_tensor_(m, "bias", nn.init.zeros_)

    module.apply(init)
    return module


def _drawn_by(generator: torch.Generator | None, w: torch.Tensor, fill: Callable[[torch.Tensor], object]) -> None:
    """``fill(w)``, drawing from ``generator`` on its own device: a CPU generator initialises a GPU tensor with the
    values it gives a CPU one (torch's in-place initialisers refuse a generator of another device)."""
    if generator is None or generator.device == w.device:
        fill(w)
        return
    drawn = torch.empty(w.shape, dtype=w.dtype, device=generator.device)
    fill(drawn)
    with torch.no_grad():
        w.copy_(drawn)


def _init_tensor_(module: nn.Module, name: str, init: Callable[[torch.Tensor], object]) -> None:
    """Initialise the tensor ``name`` (a weight or bias) of ``module`` in place with ``init``.

    A parametrized tensor (``torch.nn.utils.parametrizations.weight_norm``, ``spectral_norm``, ...) is
    recomputed from its originals at every access, so an in-place write would change nothing: ``init`` fills a
    new tensor, which is assigned through the parametrization's ``right_inverse`` (weight norm then gives that
    tensor up to rounding; spectral norm divides it by its estimate of its largest singular value). The draws
    are those of an unparametrized layer. A parameter, a buffer (a frozen layer) or an attribute that views a
    parameter's memory (the deprecated ``spectral_norm`` before its first forward) is written in place; any
    other tensor, computed by a hook (the deprecated ``torch.nn.utils.weight_norm``), is a ``TypeError``. A
    missing one (no bias) is left.
    """
    if parametrize.is_parametrized(module, name):
        with torch.no_grad():
            value = torch.empty_like(getattr(module, name))
            init(value)
            try:
                setattr(module, name, value)
            except (RuntimeError, NotImplementedError) as e:
                raise TypeError(
                    f"module: cannot initialise the parametrized {name} of a "
                    f"{parametrize.type_before_parametrizations(module).__name__} ({e}); "
                    "initialise it before registering the parametrization"
                ) from e
        return
    tensor: torch.Tensor | None = module._parameters.get(name)
    if tensor is None:
        tensor = module._buffers.get(name)  # a frozen layer's weight, say: initialised in place as before
    if tensor is None:
        attr = getattr(module, name, None)
        if attr is None:
            return
        if isinstance(attr, torch.Tensor) and _shares_storage_with_a_parameter(attr, module):
            tensor = attr  # e.g. the deprecated spectral_norm before its first forward: weight is weight_orig's
    if tensor is None:
        raise TypeError(
            f"module: the {name} of a {type(module).__name__} is not a parameter but computed from others (by a "
            "hook such as the deprecated torch.nn.utils.weight_norm or spectral_norm), so initialising it would "
            "change nothing; initialise before applying it, or use torch.nn.utils.parametrizations"
        )
    init(tensor)


def _shares_storage_with_a_parameter(tensor: torch.Tensor, module: nn.Module) -> bool:
    """Whether ``tensor`` is a view of the memory of one of ``module``'s own parameters."""
    ptr = tensor.untyped_storage().data_ptr()
    return any(p.untyped_storage().data_ptr() == ptr for p in module.parameters(recurse=False))
