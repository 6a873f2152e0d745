"""Any torchdiffeq solver as a drop-in integrator."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast, get_args

import torch
from torch import nn
from torch.func import functional_call
from typing_extensions import override

from latentdyn._autocast import autocast_dtype
from latentdyn._checks import check_bool, check_choice, check_positive_real, is_int, is_real, warn_at_user
from latentdyn.fields import VectorField
from latentdyn.integrators.base import Integrator

__all__ = [
    "ADAPTIVE_METHODS",
    "LOW_ORDER_METHODS",
    "ODEINT_METHODS",
    "OdeintIntegrator",
    "OdeintName",
    "solver_option_names",
]

OdeintName = Literal[
    "euler",
    "midpoint",
    "heun2",
    "rk4",
    "explicit_adams",
    "implicit_adams",
    "fixed_adams",
    "heun3",
    "bosh3",
    "fehlberg2",
    "adaptive_heun",
    "dopri5",
    "dopri8",
]
"""The solver names that ``torchdiffeq.odeint`` accepts, as a type: ``by_name`` of a literal one is typed
``OdeintIntegrator``."""

ODEINT_METHODS: tuple[OdeintName, ...] = get_args(OdeintName)
"""Solver names that ``torchdiffeq.odeint`` accepts: the keys of torchdiffeq's solver table (``SOLVERS`` in
``torchdiffeq._impl.odeint``) except ``"scipy_solver"``, which runs SciPy on the host outside autograd."""

ADAPTIVE_METHODS = ("bosh3", "fehlberg2", "adaptive_heun", "dopri5", "dopri8")
"""The methods among :data:`ODEINT_METHODS` that choose their steps from ``rtol`` and ``atol``."""

LOW_ORDER_METHODS = {"euler": 1, "midpoint": 2, "heun2": 2}
"""The fixed-grid methods of order 1 or 2 (torchdiffeq's ``order``), by name: with ``adjoint=True`` their gradient
is off by a visible amount (see :class:`OdeintIntegrator`), so building one warns."""

_RATIO_RTOL = 1e-9
"""Relative tolerance on the number of ``step_size`` steps in an interval: that many steps must be an integer."""


class _Captured:
    """The tensors a module's forward saw: its parameters and buffers, to evaluate it at them again later.

    torchdiffeq's adjoint backward calls the field again and takes vector-Jacobian products with respect to the
    parameters the forward passed as ``adjoint_params``. Under ``torch.func.functional_call`` the module holds
    other tensors by then (functional_call has put its own back): the backward would differentiate the wrong
    function, and the passed-in tensors would get zero gradients, silently. Captured at the forward, the tensors
    are swapped back in for the backward's calls when the module holds other tensors by then (only then is
    the cost of ``functional_call`` paid; otherwise a few identity checks per call).
    """

    def __init__(self, module: nn.Module) -> None:
        self.tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
        # Every (dict, name, tensor) slot of every submodule, tied ones included: a few identity checks tell
        # whether the module still holds exactly these tensors.
        self._slots = [
            (slots, name, tensor)
            for m in module.modules()
            for slots in (m._parameters, m._buffers)
            for name, tensor in slots.items()
            if tensor is not None
        ]

    def held(self) -> bool:
        """Whether the module holds the captured tensors now."""
        return all(slots.get(name) is tensor for slots, name, tensor in self._slots)

    def call(self, module: nn.Module, *args: Any) -> Any:
        """``module(*args)`` evaluated at the captured tensors."""
        if self.held():
            return module(*args)
        return functional_call(module, self.tensors, args)


class _BoundField(nn.Module):
    """f(t, y) with the conditioning bound, as torchdiffeq expects.

    ``captured`` is set once the forward solve of the adjoint is done: the backward's calls then see the
    tensors the forward saw (see :class:`_Captured`).
    """

    def __init__(self, field: VectorField, cond: torch.Tensor) -> None:
        super().__init__()
        self.field = field
        self.cond = cond
        self.captured: _Captured | None = None

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.captured is not None:
            return self.captured.call(self.field, t, y, self.cond)
        return self.field(t, y, self.cond)


class _CarriedCondField(nn.Module):
    """f on the state (y, c) with dc/dt = 0: the conditioning travels as part of the state (adjoint mode).

    As an input of the solve rather than a captured tensor, c gets its gradient from the adjoint ODE, and the
    vector-Jacobian products of the backward pass stop at it: a captured c that depends on the field's own
    parameters (z_t from a prior on y_{t-1}) would have those parameters' gradients counted twice.
    ``captured`` as for :class:`_BoundField`.
    """

    def __init__(self, field: VectorField) -> None:
        super().__init__()
        self.field = field
        self.captured: _Captured | None = None

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        y, c = state
        dy = self.field(t, y, c) if self.captured is None else self.captured.call(self.field, t, y, c)
        return dy, torch.zeros_like(c)


_NO_DOUBLE_BACKWARD = (
    "OdeintIntegrator(adjoint=True) does not support double backward (create_graph=True, e.g. a gradient "
    "penalty, torch.autograd.functional.hessian, or a meta-gradient through the solve): torchdiffeq's adjoint "
    "computes its gradients outside autograd, so their own gradients would be silently missing; use "
    "adjoint=False for higher-order gradients"
)


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on the output of an adjoint solve whose backward refuses to build a graph (``create_graph``).

    torchdiffeq's adjoint backward runs under ``no_grad``: with ``create_graph=True`` the gradients it returns
    would have no graph, and a gradient penalty through them would silently contribute nothing.
    """

    @staticmethod
    def forward(ctx: Any, ys: torch.Tensor) -> torch.Tensor:
        return ys.clone()  # not a view: the caller may modify the states in place, as torchdiffeq's own output

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # the engine enables grad mode in backward exactly for create_graph=True
            raise RuntimeError(_NO_DOUBLE_BACKWARD)
        return grad


def _state_part_norm(
    norm: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[tuple[torch.Tensor, ...]], torch.Tensor]:
    """A norm of the y part of a (y, c) state: step sizes are chosen exactly as for y alone."""

    def on_y(state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return norm(state[0])

    return on_y


def _rms(x: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's default norm of a single-tensor state."""
    return x.abs().pow(2).mean().sqrt()


def solver_option_names(method: str) -> frozenset[str] | None:
    """The ``options`` names the torchdiffeq solver of ``method`` takes, read from its constructors' signatures.

    The names are the keyword parameters of the solver class's ``__init__`` and of the base classes it passes
    its ``**kwargs`` on to, without those ``odeint`` fills itself (``func``, ``y0``, ``rtol``, ``atol``), plus
    ``"norm"``, which ``odeint`` hands to every solver. torchdiffeq itself only warns about other names
    ("Unexpected arguments") and ignores them.

    Args:
        method: a name of :data:`ODEINT_METHODS`.

    Returns:
        The names, or ``None`` when the installed torchdiffeq does not let them be read (its solver table or a
        constructor's signature is not where torchdiffeq 0.2.5 has it): options are then not checked.
    """
    try:
        from torchdiffeq._impl.odeint import SOLVERS

        solver = SOLVERS[method]
    except (ImportError, AttributeError, KeyError, TypeError):
        return None
    names = {"norm"}
    for cls in getattr(solver, "__mro__", ()):
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = list(inspect.signature(init).parameters.values())
        except (TypeError, ValueError):
            return None
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names.update(p.name for p in params if p.kind in keyword)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break  # the chain of constructors ends here: nothing else is passed on
    if method == "explicit_adams":
        names.discard("implicit")  # its solver class sets it itself (implicit=False) on the way to its base
    return frozenset(names - {"self", "func", "y0", "rtol", "atol"})


def _check_options(options: object, name: str, method: str) -> dict[str, Any]:
    """``options`` as a new dict, its names checked against what ``method``'s solver takes."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"{name}: expected a dict of solver options or None, got {type(options).__name__}")
    options = dict(options)
    bad = [k for k in options if not isinstance(k, str)]
    if bad:
        raise TypeError(f"{name}: expected option names as strings, got {bad[0]!r}")
    known = solver_option_names(method)
    if known is not None:
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"{name}: unknown option(s) {', '.join(map(repr, unknown))} for method {method!r}, which takes "
                f"{', '.join(map(repr, sorted(known)))}"
            )
    for key, value in options.items():
        _check_option_value(value, f"{name}[{key!r}]", key, adjoint=name == "adjoint_options")
    return options


def _check_option_value(value: object, where: str, key: str, *, adjoint: bool) -> None:
    """The value checks torchdiffeq leaves to a failure far from the option (or to none): ``step_size`` and
    ``first_step`` (None or positive and finite), ``max_num_steps`` and ``max_iters`` (ints >= 1), ``norm``
    (callable, or ``"seminorm"`` in the adjoint's options)."""
    if key in ("step_size", "first_step"):
        if value is None:
            return
        if not is_real(value):
            raise TypeError(f"{where}: expected a positive finite number or None, got {type(value).__name__} {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{where}: expected a positive finite number or None, got {value!r}")
    elif key in ("max_num_steps", "max_iters"):
        top = 2**31 - 1  # torchdiffeq holds max_num_steps as an int32 tensor
        if not is_int(value):
            raise TypeError(f"{where}: expected an int >= 1, got {type(value).__name__} {value!r}")
        if not 1 <= value <= top:
            raise ValueError(f"{where}: expected an int from 1 to {top}, got {value!r}")
    elif key == "norm" and not callable(value):
        if adjoint:
            if value != "seminorm":
                raise ValueError(f"{where}: expected a callable norm or 'seminorm', got {value!r}")
        elif value == "seminorm":
            raise ValueError(
                f"{where}: 'seminorm' is only for the backward solve, adjoint_options={{'norm': 'seminorm'}} (with "
                "adjoint=True); the norm of options must be a callable, norm(tensor) -> 0-dim tensor"
            )
        else:
            raise TypeError(
                f"{where}: expected a callable, norm(tensor) -> 0-dim tensor, got {type(value).__name__} {value!r}"
            )


def _step_size_error(
    step_size: float, span: float, what: str, suggest: str, tolerance: float = _RATIO_RTOL
) -> ValueError | None:
    """None when ``step_size`` steps tile an interval of length ``span``, else the error to raise.

    ``what`` names the interval ("the sub-step 1/3 of ..."), ``suggest`` what to use instead. A step size larger
    than the interval, or one that leaves a remainder (``tolerance``: relative, on the number of steps), makes
    torchdiffeq interpolate the state at the interval's end linearly between its own steps."""
    ratio = span / step_size
    steps = round(ratio)
    if steps >= 1 and abs(ratio - steps) <= tolerance * ratio:
        return None
    why = "is larger than" if ratio < 1 else f"does not divide (it fits {ratio:.6g} times)"
    return ValueError(
        f"options['step_size']: {step_size!r} {why} {what}: torchdiffeq would interpolate the states there "
        f"linearly between its own steps, far less accurately than it steps; {suggest}"
    )


def _divisors(span: float, label: str) -> str:
    """The advice of a step-size error: the step sizes ``label`` that divide ``span``."""
    values = ", ".join(f"{span / k:.6g}" for k in (1, 2, 3, 4))
    return f"use a step size that divides it, {label} for an integer k >= 1 ({values}, ...), or no step_size"


def _named_solver_error(error: AssertionError, method: str, options: Mapping[str, Any]) -> RuntimeError | None:
    """torchdiffeq's bare assertions of an adaptive solve as errors that say what went wrong; None for another."""
    text = str(error)
    if text.startswith("max_num_steps exceeded"):
        limit = options.get("max_num_steps", "its default 2**31 - 1")
        return RuntimeError(
            f"options: the {method!r} solve took more steps than max_num_steps={limit} allows between two output "
            f"times (torchdiffeq: {text}); raise options['max_num_steps'], loosen rtol/atol, or add sub-steps"
        )
    if text.startswith("underflow in dt"):
        return RuntimeError(
            f"the {method!r} solve shrank its step until the time no longer advanced (torchdiffeq: {text}): the "
            "field returned NaN or inf, the solution blows up in finite time, or the dynamics are too stiff for "
            "rtol/atol; check the field's outputs, loosen rtol/atol, or use a fixed-step method"
        )
    return None


class OdeintIntegrator(Integrator):
    """Integrate with ``torchdiffeq.odeint`` (or ``odeint_adjoint``) and any of its methods.

    An empty batch (B = 0) gives empty states (S, 0, Dy) with every method, without calling the solver (whose
    step-size control and Adams corrector cannot measure an empty state).

    Args:
        method: a torchdiffeq method name, e.g. ``"euler"``, ``"rk4"``, ``"dopri5"``.
        rtol: relative tolerance of adaptive methods (:data:`ADAPTIVE_METHODS`); with a bfloat16 state, or a
            solve under a bfloat16 or float16 autocast (which computes the field in that dtype), it must be at
            least that dtype's eps, 2⁻⁷ or 2⁻¹⁰ (a ``ValueError`` otherwise: below it the solver cannot converge,
            or does so only with steps thousands of times smaller).
        atol: absolute tolerance of adaptive methods. Adaptive methods refuse float16 states, whose range
            torchdiffeq's error norm overflows.
        options: extra solver options, passed to torchdiffeq (e.g. ``{"step_size": 0.1}`` for a fixed-grid
            method, ``{"max_num_steps": 1000}`` for an adaptive one). Their names are checked against what the
            method's solver takes (:func:`solver_option_names`), and some values here: ``step_size`` and
            ``first_step`` positive and finite, ``max_num_steps`` and ``max_iters`` (the Adams methods' corrector
            iterations) ints >= 1, ``norm`` a callable (``"seminorm"`` is for ``adjoint_options`` only); the others
            are torchdiffeq's to check. A ``step_size`` must divide the intervals between the output times (a
            call checks it against ``ts``, an ``ODECell`` against its sub-step 1/n: use 1/(k·n)): otherwise
            torchdiffeq interpolates the states at the output times linearly between its own steps (3000 times
            less accurate at the sub-steps with RK4, ``step_size=0.05`` and n = 3). Times in options
            (``jump_t``, ``step_t``, the ``t`` a ``grid_constructor`` receives) are those of ``ts``; in an
            ``ODECell`` they are frame-local, 0 at the frame's start and 1 at its end, and apply to every frame
            (``{"step_t": [1.0]}`` keeps an adaptive method's evaluations within the frame).
        adjoint: use the adjoint method (O(1) memory in the number of steps). Its gradient is that of the
            continuous ODE, integrated backward by the solver: it differs from backprop's (the exact gradient of
            the computed states) by the discretisation error, O(Δtᵖ) for a method of order p. Measured on a small
            smooth field, relative to the backprop gradient: Euler 26 % with one step per frame and 13 % with two,
            midpoint 2.6e-3, RK4 7e-7, dopri5 at rtol 1e-10 4e-10. Building one with a first- or second-order
            fixed-grid method (:data:`LOW_ORDER_METHODS`, forward or backward) warns: use ``"rk4"``, an adaptive
            method, or ``adjoint=False``. A conditioning tensor that requires a gradient is carried as a constant
            part of the state, (y, z) with dz/dt = 0, so it gets its gradient from the adjoint ODE and what
            produced it (even the field's own parameters, through earlier frames) gets its gradient once, as with
            backprop (up to the same discretisation error), not twice. The gradients reach the field's registered
            parameters and buffers only (what ``named_parameters``/``named_buffers`` list): a tensor the field
            uses without registering it (a global or closure tensor that requires a gradient) gets none.
        adjoint_rtol: ``rtol`` of the backward (adjoint) solve; None: ``rtol``. Only with ``adjoint=True``.
        adjoint_atol: ``atol`` of the backward solve; None: ``atol``. Only with ``adjoint=True``.
        adjoint_method: method of the backward solve; None: ``method``. Only with ``adjoint=True``.
        adjoint_options: solver options of the backward solve, names checked against ``adjoint_method``'s
            solver, e.g. ``{"norm": "seminorm"}`` (torchdiffeq's cheaper error norm for the adjoint, which leaves
            the parameters' adjoint out of the step-size control). None: ``options`` without ``"norm"`` (as
            torchdiffeq does); required when ``adjoint_method`` differs from ``method`` and ``options`` are
            given. Only with ``adjoint=True``. These four are ``torchdiffeq.odeint_adjoint``'s arguments of the
            same names.

    Warns:
        UserWarning: ``adjoint=True`` with a method of :data:`LOW_ORDER_METHODS` (as ``method`` or
            ``adjoint_method``): the adjoint gradient is then far from backprop's (see ``adjoint``).

    Raises:
        TypeError: ``method`` or ``adjoint_method`` not a string, a tolerance not a real number, ``options`` or
            ``adjoint_options`` not a dict or None, ``adjoint`` not a bool, an option value of the wrong kind
            (see ``options``).
        ValueError: an unknown method, a tolerance that is not positive and finite, an option name the method's
            solver does not take, an option value out of range (see ``options``), ``adjoint_*`` arguments without
            ``adjoint=True``, or ``adjoint_options`` missing for an ``adjoint_method`` other than ``method`` with
            ``options``. When integrating: a bfloat16 state, or a 16-bit autocast, with ``rtol`` below its eps, or
            a float16 state, with an adaptive method; a ``step_size`` that does not divide the intervals of
            ``ts`` from ``ts[0]`` (or an ``ODECell``'s sub-step), or is larger than them.
        RuntimeError: when integrating, an adaptive solve that needs more steps than
            ``options["max_num_steps"]`` between two output times, or whose step size underflows (a field that
            returns NaN or inf, a solution that blows up): torchdiffeq's assertions, explained. The backward
            solve of the adjoint reports them as torchdiffeq does.
    """

    def __init__(
        self,
        method: str = "dopri5",
        *,
        rtol: float = 1e-7,
        atol: float = 1e-9,
        options: dict[str, Any] | None = None,
        adjoint: bool = False,
        adjoint_rtol: float | None = None,
        adjoint_atol: float | None = None,
        adjoint_method: str | None = None,
        adjoint_options: dict[str, Any] | None = None,
    ) -> None:
        self.method = cast(OdeintName, check_choice(method, "method", ODEINT_METHODS))
        rtol, atol = check_positive_real(rtol, "rtol"), check_positive_real(atol, "atol")
        self.options = _check_options(options, "options", self.method)
        adjoint = check_bool(adjoint, "adjoint")
        self.rtol = rtol
        self.atol = atol
        self.adjoint = adjoint
        given = {
            "adjoint_rtol": adjoint_rtol,
            "adjoint_atol": adjoint_atol,
            "adjoint_method": adjoint_method,
            "adjoint_options": adjoint_options,
        }
        if not adjoint:
            for name, value in given.items():
                if value is not None:
                    raise ValueError(f"{name}: only used with adjoint=True, got {value!r} with adjoint=False")
        self.adjoint_rtol = None if adjoint_rtol is None else check_positive_real(adjoint_rtol, "adjoint_rtol")
        self.adjoint_atol = None if adjoint_atol is None else check_positive_real(adjoint_atol, "adjoint_atol")
        self.adjoint_method = (
            None if adjoint_method is None else check_choice(adjoint_method, "adjoint_method", ODEINT_METHODS)
        )
        backward_method = self.adjoint_method or self.method
        if adjoint_options is None and backward_method != self.method and self.options:
            raise ValueError(
                f"adjoint_options: required when adjoint_method={backward_method!r} differs from "
                f"method={self.method!r} and options are given (they need not apply to the other method); pass "
                "adjoint_options={} for its defaults"
            )
        self.adjoint_options = (
            None if adjoint_options is None else _check_options(adjoint_options, "adjoint_options", backward_method)
        )
        if adjoint:
            low = [m for m in dict.fromkeys((self.method, backward_method)) if m in LOW_ORDER_METHODS]
            if low:
                which = " and ".join(f"{m!r} (order {LOW_ORDER_METHODS[m]})" for m in low)
                warn_at_user(
                    f"OdeintIntegrator(adjoint=True) with {which}: the adjoint gives the gradient of the continuous "
                    "ODE, which differs from the gradient of the computed states by the method's discretisation "
                    "error, O(Δt^order) (in one measured example, relative: 26 % for Euler with one step per frame, "
                    "13 % with two, 2.6e-3 for midpoint); use 'rk4' (7e-7 there) or an adaptive method such as "
                    "'dopri5', or adjoint=False for backprop's exact gradient",
                )

    @override
    def _check_substeps(self, n_substeps: int) -> None:
        """A ``step_size`` option must divide an ``ODECell``'s sub-step 1/n (Python floats: no device sync)."""
        step_size = self.options.get("step_size")
        if step_size is None:
            return
        what = f"the sub-step 1/{n_substeps} of an ODECell with n_substeps={n_substeps}"
        error = _step_size_error(step_size, 1.0 / n_substeps, what, _divisors(1.0 / n_substeps, f"1/({n_substeps}·k)"))
        if error is not None:
            raise error

    @override
    def _check_times(self, ts: torch.Tensor) -> None:
        """A ``step_size`` option must divide every ``ts[j] - ts[0]`` (the public call has read ``ts`` already)."""
        step_size = self.options.get("step_size")
        if step_size is None or ts.shape[0] < 2:
            return
        times = ts.detach().to("cpu", torch.float64).tolist()
        # Times held in a low precision put the ratios off by their rounding: the tolerance allows for it.
        tolerance = max(_RATIO_RTOL, 4 * torch.finfo(ts.dtype).eps)
        gaps = [times[i + 1] - times[i] for i in range(len(times) - 1)]
        if max(gaps) - min(gaps) <= tolerance * max(gaps):
            suggest = _divisors(gaps[0], "(the spacing of ts)/k")
        else:
            suggest = "use a step size that divides every ts[j] - ts[0], or no step_size"
        for j in range(1, len(times)):
            what = f"ts[{j}] - ts[0] = {times[j] - times[0]:.6g}"
            error = _step_size_error(step_size, times[j] - times[0], what, suggest, tolerance)
            if error is not None:
                raise error

    @override
    def _integrate(self, field: VectorField, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """States at ``ts`` (S,) from ``y0`` (B, Dy) with ``cond`` (B, Dz); returns (S, B, Dy)."""
        import torchdiffeq

        if self.method in ADAPTIVE_METHODS and y0.dtype == torch.float16:
            # torchdiffeq's error norm squares errors scaled by the tolerances, which overflows float16 (max
            # 65504) for most tolerances: the step size collapses to 0 ("underflow in dt").
            raise ValueError(
                f"y0: the adaptive method {self.method!r} cannot step a float16 state reliably (its error norm "
                "overflows float16); use a fixed-step method, or a bfloat16 or float32 state"
            )
        if self.method in ADAPTIVE_METHODS:
            self._check_resolution(y0)
        if y0.numel() == 0:
            # No sequence (B = 0): the error norm of an empty state is a mean over nothing, NaN, so adaptive
            # methods shrink the step until torchdiffeq asserts ("underflow in dt"), and the Adams methods take
            # a max over it. Nothing moves: every time holds the empty y0.
            return y0.unsqueeze(0).expand(ts.shape[0], *y0.shape).clone()
        try:
            return self._solve(torchdiffeq, field, y0, ts, cond)
        except AssertionError as e:
            named = _named_solver_error(e, self.method, self.options)
            if named is None:
                raise
            raise named from e

    def _check_resolution(self, y0: torch.Tensor) -> None:
        """An adaptive solve asks for no more than the arithmetic resolves: ``rtol`` at least the eps of a 16-bit
        state, or of the 16-bit dtype a float32 state's field computes in under autocast.

        Asked for more, an adaptive solver shrinks its step until it underflows (torchdiffeq then stalls for
        minutes and returns garbage) or, when only the field is 16-bit, takes thousands of steps per interval:
        the field's rounding is an error it cannot reduce below eps·|f| (60x the field evaluations of a float32
        solve, measured)."""
        if torch.finfo(y0.dtype).bits <= 16:
            low, what, instead = y0.dtype, f"the {y0.dtype} state", "a float32 state"
        else:
            cast = autocast_dtype(y0.device.type) if y0.dtype == torch.float32 else None  # (it casts float32 only)
            if cast is None or torch.finfo(cast).bits > 16:
                return
            low, what, instead = cast, f"the field under autocast to {cast}", "no autocast"
        eps = torch.finfo(low).eps
        if self.rtol < eps:
            raise ValueError(
                f"rtol: {self.rtol:g} is below the resolution of {what} (eps {eps:g}); use rtol >= {eps:g} with "
                f"{self.method!r}, a fixed-step method, or {instead}"
            )

    def _solve(
        self, torchdiffeq: Any, field: VectorField, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        """The torchdiffeq call of :meth:`_integrate`."""
        func = _BoundField(field, cond)
        kwargs: dict[str, Any] = dict(method=self.method, rtol=self.rtol, atol=self.atol, options=self.options)
        if not self.adjoint:
            return torchdiffeq.odeint(func, y0, ts, **kwargs)
        # The tensors this forward sees, for the backward's calls of the field (see _Captured).
        captured = _Captured(field)
        # Parameters, and buffers that require a gradient (a functional_call may pass tensors that do).
        params = tuple(t for t in captured.tensors.values() if t.requires_grad)
        kwargs.update(self._adjoint_kwargs())
        if not cond.requires_grad:
            ys = torchdiffeq.odeint_adjoint(func, y0, ts, adjoint_params=params, **kwargs)
            func.captured = captured
        else:
            # z needs a gradient: it rides in the state (see _CarriedCondField); the norm looks at y only, so the
            # forward solve takes the steps it takes without the adjoint.
            kwargs["options"] = {**self.options, "norm": _state_part_norm(self.options.get("norm", _rms))}
            carried = _CarriedCondField(field)
            ys, _ = torchdiffeq.odeint_adjoint(carried, (y0, cond), ts, adjoint_params=params, **kwargs)
            carried.captured = captured
        return _FirstOrderOnly.apply(ys) if ys.requires_grad else ys

    def _adjoint_kwargs(self) -> dict[str, Any]:
        """The ``adjoint_*`` arguments of ``torchdiffeq.odeint_adjoint`` that were set (None: torchdiffeq's)."""
        kwargs: dict[str, Any] = {}
        if self.adjoint_rtol is not None:
            kwargs["adjoint_rtol"] = self.adjoint_rtol
        if self.adjoint_atol is not None:
            kwargs["adjoint_atol"] = self.adjoint_atol
        if self.adjoint_method is not None:
            kwargs["adjoint_method"] = self.adjoint_method
            if self.adjoint_options is None:  # options are empty (checked): the other method's defaults
                kwargs["adjoint_options"] = {}
        if self.adjoint_options is not None:
            kwargs["adjoint_options"] = dict(self.adjoint_options)
        return kwargs

    def __repr__(self) -> str:
        options = f", options={self.options!r}" if self.options else ""
        extra = "".join(f", {k}={v!r}" for k, v in self._adjoint_kwargs().items() if k != "adjoint_options")
        if self.adjoint_options is not None:
            extra += f", adjoint_options={self.adjoint_options!r}"
        return (
            f"OdeintIntegrator(method={self.method!r}, rtol={self.rtol}, atol={self.atol}{options}, "
            f"adjoint={self.adjoint}{extra})"
        )
