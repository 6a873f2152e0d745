"""Integrators: the shared contract, hand-written steps, convergence orders, adjoint gradients, by_name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from contracts import IntegratorContract
from problems import (
    LinearField,
    SmoothField,
    TimeModulatedField,
    linear_solution,
    rotation_decay_matrix,
)
from torch import nn
from torchdiffeq._impl.odeint import SOLVERS

from latentdyn.cells import ODECell, ResidualCell
from latentdyn.fields import MLPField, VectorField
from latentdyn.integrators import (
    INTEGRATOR_NAMES,
    EulerIntegrator,
    Integrator,
    OdeintIntegrator,
    by_name,
)
from latentdyn.integrators.odeint import LOW_ORDER_METHODS, ODEINT_METHODS

# Bounds on the linear problem with h = 1/10 over [0, 1] (‖A‖ ≈ 2, |y| ≲ 2): C·h^p with a generous C = 3
# for the fixed-grid methods of order p, and a few times rtol for the adaptive one.


class TestEulerIntegrator(IntegratorContract):
    linear_tol = 3 * 0.1

    def make_integrator(self, dtype: torch.dtype) -> Integrator:
        return EulerIntegrator()


class TestOdeintEuler(IntegratorContract):
    linear_tol = 3 * 0.1

    def make_integrator(self, dtype: torch.dtype) -> Integrator:
        return OdeintIntegrator("euler")


class TestOdeintMidpoint(IntegratorContract):
    linear_tol = 3 * 0.1**2

    def make_integrator(self, dtype: torch.dtype) -> Integrator:
        return OdeintIntegrator("midpoint")


class TestOdeintRK4(IntegratorContract):
    linear_tol = 3 * 0.1**4

    def make_integrator(self, dtype: torch.dtype) -> Integrator:
        return OdeintIntegrator("rk4")


class TestOdeintDopri5(IntegratorContract):
    linear_tol = 1e-6

    def make_integrator(self, dtype: torch.dtype) -> Integrator:
        if dtype == torch.float32:  # tolerances a float32 state can meet
            return OdeintIntegrator("dopri5", rtol=1e-5, atol=1e-6)
        return OdeintIntegrator("dopri5")


def _nonuniform_grid() -> torch.Tensor:
    return torch.tensor([0.0, 0.1, 0.35, 0.4, 0.9, 1.3], dtype=torch.float64)


def _smooth_problem(seed: int = 0) -> tuple[TimeModulatedField, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    field = TimeModulatedField(SmoothField(3, 2, 5, generator=g).double())
    y0 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    cond = torch.randn(4, 2, generator=g, dtype=torch.float64)
    return field, y0, cond


@pytest.mark.parametrize("integrator", [EulerIntegrator(), OdeintIntegrator("euler")], ids=repr)
def test_euler_steps_on_the_given_grid(integrator: Integrator) -> None:
    """y_{j+1} = y_j + (t_{j+1} − t_j)·f(t_j, y_j, z) on a non-uniform grid, written out."""
    field, y, cond = _smooth_problem()
    ts = _nonuniform_grid()
    with torch.no_grad():
        out = integrator(field, y, ts, cond)
        for j in range(len(ts) - 1):
            y = y + (ts[j + 1] - ts[j]) * field(ts[j], y, cond)
            torch.testing.assert_close(out[j + 1], y, rtol=1e-13, atol=1e-13)


def test_midpoint_steps_on_the_given_grid() -> None:
    """Explicit midpoint y_{j+1} = y_j + h·f(t_j + h/2, y_j + h/2·f(t_j, y_j)) on a non-uniform grid."""
    field, y, cond = _smooth_problem(1)
    ts = _nonuniform_grid()
    with torch.no_grad():
        out = OdeintIntegrator("midpoint")(field, y, ts, cond)
        for j in range(len(ts) - 1):
            h = ts[j + 1] - ts[j]
            half = y + h / 2 * field(ts[j], y, cond)
            y = y + h * field(ts[j] + h / 2, half, cond)
            torch.testing.assert_close(out[j + 1], y, rtol=1e-13, atol=1e-13)


def _observed_order(solve_at_one: dict[int, torch.Tensor], exact: torch.Tensor) -> float:
    """Slope of log(max error) against log(h) over the step counts n (h = 1/n)."""
    ns = sorted(solve_at_one)
    errs = [(solve_at_one[n] - exact).abs().max().item() for n in ns]
    slope = np.polyfit(np.log([1.0 / n for n in ns]), np.log(errs), 1)[0]
    return float(slope)


def _linear_problem() -> tuple[LinearField, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    a = rotation_decay_matrix()
    c = torch.randn(3, 2, generator=g, dtype=torch.float64)
    y0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    cond = torch.randn(5, 2, generator=g, dtype=torch.float64)
    exact = linear_solution(a, c, y0, cond, torch.tensor([0.0, 1.0], dtype=torch.float64))[-1]
    return LinearField(a, c), y0, cond, exact


@pytest.mark.parametrize(
    ("integrator", "order", "ns"),
    [
        (EulerIntegrator(), 1, (16, 32, 64, 128)),
        (OdeintIntegrator("euler"), 1, (16, 32, 64, 128)),
        (OdeintIntegrator("midpoint"), 2, (8, 16, 32, 64)),
        (OdeintIntegrator("rk4"), 4, (4, 8, 16, 32)),
    ],
    ids=["euler-ref", "euler", "midpoint", "rk4"],
)
def test_convergence_order(integrator: Integrator, order: int, ns: tuple[int, ...]) -> None:
    """Error at t = 1 on y' = Ay + Cz against the matrix exponential shrinks like h^order (float64)."""
    field, y0, cond, exact = _linear_problem()
    with torch.no_grad():
        finals = {n: integrator(field, y0, torch.arange(n + 1, dtype=torch.float64) / n, cond)[-1] for n in ns}
    assert _observed_order(finals, exact) == pytest.approx(order, abs=0.15)


@pytest.mark.parametrize(
    ("make_cell", "order"),
    [
        (lambda f: ResidualCell(f, 3, 2), 1),
        (lambda f: ODECell(f, OdeintIntegrator("rk4"), 3, 2), 4),
    ],
    ids=["residual", "ode-rk4"],
)
def test_convergence_order_through_cell_substeps(make_cell, order: int) -> None:  # type: ignore[no-untyped-def]
    """The sub-step count of a cell is the grid: one frame with n sub-steps converges at the method's order."""
    field, y0, cond, exact = _linear_problem()
    cell = make_cell(field)
    ns = (16, 32, 64, 128) if order == 1 else (4, 8, 16, 32)
    with torch.no_grad():
        finals = {n: cell.path(y0, cond, n_substeps=n, frame=2).states[-1] for n in ns}
    assert _observed_order(finals, exact) == pytest.approx(order, abs=0.15)


def _gradients(adjoint: bool, method: str, cond_is_leaf: bool) -> dict[str, torch.Tensor]:
    """Gradients of a loss on the trajectory w.r.t. field parameters, y0, z and what z is computed from.

    They are taken with ``torch.autograd.grad``: ``retain_grad`` on a non-leaf z would also collect the
    vector-Jacobian products that the adjoint pass computes internally, which are not dloss/dz.
    """
    g = torch.Generator().manual_seed(11)
    field = SmoothField(3, 2, 6, generator=g).double()
    encoder = torch.nn.Linear(4, 2).double()
    with torch.no_grad():
        encoder.weight.copy_(torch.randn(2, 4, generator=g, dtype=torch.float64))
        encoder.bias.copy_(torch.randn(2, generator=g, dtype=torch.float64))
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    y0 = torch.randn(3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    cond = encoder(x)
    if cond_is_leaf:
        cond = cond.detach().requires_grad_(True)
    ts = torch.tensor([0.0, 0.4, 1.0, 1.5], dtype=torch.float64)
    integrator = OdeintIntegrator(method, rtol=1e-10, atol=1e-12, adjoint=adjoint)
    out = integrator(field, y0, ts, cond)
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    wrt: dict[str, torch.Tensor] = {f"field.{k}": p for k, p in field.named_parameters()}
    wrt.update(y0=y0, cond=cond)
    if not cond_is_leaf:
        wrt.update({f"encoder.{k}": p for k, p in encoder.named_parameters()})
    grads = torch.autograd.grad((out * weights).sum(), list(wrt.values()))
    return dict(zip(wrt, grads))


@pytest.mark.parametrize("cond_is_leaf", [True, False], ids=["leaf-z", "encoded-z"])
def test_adjoint_gradients_equal_backprop(cond_is_leaf: bool) -> None:
    """odeint_adjoint gives the backprop gradients, including those w.r.t. z and whatever produced z."""
    backprop = _gradients(adjoint=False, method="dopri5", cond_is_leaf=cond_is_leaf)
    adjoint = _gradients(adjoint=True, method="dopri5", cond_is_leaf=cond_is_leaf)
    assert backprop.keys() == adjoint.keys()
    for name in backprop:
        assert backprop[name].abs().sum() > 0, name
        torch.testing.assert_close(adjoint[name], backprop[name], rtol=1e-6, atol=1e-8, msg=name)


@pytest.mark.parametrize(("method", "options"), [("dopri5", None), ("rk4", {"step_size": 0.01})])
def test_adjoint_gradients_equal_backprop_when_z_depends_on_the_field(
    method: str, options: dict[str, float] | None
) -> None:
    """A rollout whose z_t comes from a prior on y_{t-1}: z then depends on the field's own parameters (through
    the earlier frames), which the adjoint pass must not count a second time. (rk4 with a fine grid: the
    adjoint of a fixed-step solve matches backprop only up to the discretisation error.)"""
    g = torch.Generator().manual_seed(5)
    field = SmoothField(2, 2, 6, generator=g).double()
    prior_net = torch.nn.Linear(2, 2).double()
    with torch.no_grad():
        prior_net.weight.copy_(torch.randn(2, 2, generator=g, dtype=torch.float64))
    y0 = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    params = {**dict(field.named_parameters()), **{f"prior.{k}": p for k, p in prior_net.named_parameters()}}
    grads, finals = {}, {}
    for adjoint in (False, True):
        integrator = OdeintIntegrator(method, rtol=1e-10, atol=1e-12, options=options, adjoint=adjoint)
        y, loss = y0, torch.zeros((), dtype=torch.float64)
        for _ in range(3):  # three frames: z_t = g(y_{t-1}), y_t = solve(f(., z_t)) from y_{t-1}
            y = integrator(field, y, ts, torch.tanh(prior_net(y)))[-1]
            loss = loss + y.square().sum()
        finals[adjoint] = y.detach()
        grads[adjoint] = dict(zip([*params, "y0"], torch.autograd.grad(loss, [*params.values(), y0])))
    torch.testing.assert_close(finals[True], finals[False], rtol=0, atol=1e-13)  # the same forward steps
    for name, expected in grads[False].items():
        assert expected.abs().sum() > 0, name
        torch.testing.assert_close(grads[True][name], expected, rtol=1e-6, atol=1e-8, msg=name)


def _functional_call_gradients(adjoint: bool, model: str) -> dict[str, torch.Tensor]:
    """Gradients with respect to tensors passed through ``torch.func.functional_call`` (an ensemble member,
    fast weights), which differ from the module's own: a cell with a z that needs no gradient, or a LatentSSM
    rollout whose z come from a prior on the states (z then rides in the adjoint's state)."""
    from torch.func import functional_call

    from latentdyn.distributions import ConditionalGaussianPrior
    from latentdyn.ssm import LatentSSM

    g = torch.Generator().manual_seed(13)
    field = SmoothField(3, 2, 6, generator=g).double()
    y0 = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    integrator = OdeintIntegrator("dopri5", rtol=1e-10, atol=1e-12, adjoint=adjoint)
    cell = ODECell(field, integrator, 3, 2, n_substeps=2)
    module: torch.nn.Module = cell
    if model == "ssm":
        prior_net = torch.nn.Linear(3, 4).double()
        with torch.no_grad():
            prior_net.weight.copy_(torch.randn(4, 3, generator=g, dtype=torch.float64))
            prior_net.bias.zero_()
        module = LatentSSM(cell, ConditionalGaussianPrior(prior_net))
    other = {
        k: (p.detach() + 0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64)).requires_grad_()
        for k, p in module.named_parameters()
    }
    if model == "ssm":
        states = functional_call(module, other, (y0, 3), {"sample": False}).states
    else:
        z = torch.randn(2, 2, generator=g, dtype=torch.float64)
        states = functional_call(module, other, (y0, z))
    loss = (states * torch.randn(states.shape, generator=g, dtype=torch.float64)).sum()
    return dict(zip([*other, "y0"], torch.autograd.grad(loss, [*other.values(), y0])))


@pytest.mark.parametrize("model", ["cell", "ssm"])
def test_adjoint_gradients_under_functional_call(model: str) -> None:
    """Under torch.func.functional_call the adjoint's backward evaluates the field at the tensors the forward
    used, not at the module's own (which functional_call has put back by then): the passed-in tensors get the
    backprop gradients (they got zeros, and y0 and the prior wrong ones)."""
    backprop = _functional_call_gradients(adjoint=False, model=model)
    adjoint = _functional_call_gradients(adjoint=True, model=model)
    assert backprop.keys() == adjoint.keys()
    for name, expected in backprop.items():
        assert expected.abs().sum() > 0, name
        torch.testing.assert_close(adjoint[name], expected, rtol=1e-6, atol=1e-8, msg=name)


@pytest.mark.parametrize("cond_requires_grad", [False, True])
def test_adjoint_refuses_double_backward(cond_requires_grad: bool) -> None:
    """A gradient penalty through an adjoint solve (create_graph=True) is an error, not a silently missing term:
    torchdiffeq's adjoint computes its gradients without a graph."""
    g = torch.Generator().manual_seed(4)
    field = SmoothField(2, 2, 4, generator=g).double()
    y0 = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    cond = torch.randn(2, 2, generator=g, dtype=torch.float64).requires_grad_(cond_requires_grad)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    for adjoint in (False, True):
        out = OdeintIntegrator("rk4", adjoint=adjoint)(field, y0, ts, cond).square().sum()
        if adjoint:
            with pytest.raises(
                RuntimeError, match=r"adjoint=True\) does not support double backward .* use adjoint=False"
            ):
                torch.autograd.grad(out, y0, create_graph=True)
            (gy,) = torch.autograd.grad(out, y0)  # first order: unchanged
            assert gy.abs().sum() > 0 and gy.grad_fn is None
        else:
            (gy,) = torch.autograd.grad(out, y0, create_graph=True)
            gy.square().sum().backward()  # the penalty's own gradient reaches the parameters
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())


class _ScaledField(VectorField):
    """dy/dt = s · tanh(W y + cond), with the scale s a buffer (a functional_call may pass one needing a gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2).double()
        self.register_buffer("s", torch.tensor(0.7, dtype=torch.float64))

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.s * torch.tanh(self.linear(y) + cond)


def test_adjoint_gives_buffers_passed_with_a_gradient_theirs() -> None:
    """A buffer given to functional_call as a tensor that requires a gradient got none with the adjoint (only
    parameters were adjoint parameters), while backprop gave it one."""
    from torch.func import functional_call

    field = _ScaledField()
    y0 = torch.tensor([[0.3, -0.2], [0.1, 0.5]], dtype=torch.float64)
    cond = torch.tensor([[0.2, 0.1], [-0.3, 0.4]], dtype=torch.float64)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        s = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
        integrator = OdeintIntegrator("dopri5", rtol=1e-10, atol=1e-12, adjoint=adjoint)
        states = functional_call(_BoundSolve(integrator, field), {"field.s": s}, (y0, ts, cond))
        (g,) = torch.autograd.grad(states.square().sum(), s, allow_unused=True)
        grads.append(g)
    assert grads[0] is not None and grads[0].abs() > 0
    assert grads[1] is not None
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-8)


class _BoundSolve(nn.Module):
    """A module around one solve, so that functional_call can swap the field's tensors."""

    def __init__(self, integrator: OdeintIntegrator, field: VectorField) -> None:
        super().__init__()
        self.integrator, self.field = integrator, field

    def forward(self, y0: torch.Tensor, ts: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.integrator(self.field, y0, ts, cond)


def test_adjoint_states_can_be_modified_in_place() -> None:
    """The states of an adjoint solve that need a gradient are not a view (as torchdiffeq's own are not): an
    evaluation loop may clamp them in place."""
    g = torch.Generator().manual_seed(4)
    field = SmoothField(2, 2, 4, generator=g).double()
    y0 = torch.randn(2, 2, generator=g, dtype=torch.float64)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    states = OdeintIntegrator("rk4", adjoint=True)(field, y0, ts, torch.zeros(2, 2, dtype=torch.float64))
    assert states.requires_grad
    states.clamp_(-0.1, 0.1)
    assert states.abs().max() <= 0.1


def test_adjoint_without_gradient_on_cond() -> None:
    """A z that needs no gradient is left out of the adjoint parameters; parameters still get theirs."""
    g = torch.Generator().manual_seed(2)
    field = SmoothField(2, 2, 4, generator=g).double()
    y0 = torch.randn(2, 2, generator=g, dtype=torch.float64)
    cond = torch.randn(2, 2, generator=g, dtype=torch.float64)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    OdeintIntegrator("rk4", adjoint=True)(field, y0, ts, cond).sum().backward()
    adjoint = [p.grad.clone() for p in field.parameters() if p.grad is not None]
    field.zero_grad()
    OdeintIntegrator("rk4")(field, y0, ts, cond).sum().backward()
    direct = [p.grad for p in field.parameters() if p.grad is not None]
    assert len(adjoint) == len(direct) == 4
    for a, d in zip(adjoint, direct):
        torch.testing.assert_close(a, d, rtol=1e-3, atol=1e-6)


def test_by_name() -> None:
    assert isinstance(by_name("euler-ref"), EulerIntegrator)
    rk4 = by_name("rk4", rtol=1e-3, adjoint=True)
    assert isinstance(rk4, OdeintIntegrator)
    assert (rk4.method, rk4.rtol, rk4.adjoint) == ("rk4", 1e-3, True)
    assert by_name("euler").method == "euler" and by_name("midpoint").method == "midpoint"
    assert "OdeintIntegrator(method='rk4'" in repr(rk4)
    stepped = OdeintIntegrator("rk4", options={"step_size": 0.25})
    assert (
        repr(stepped)
        == "OdeintIntegrator(method='rk4', rtol=1e-07, atol=1e-09, options={'step_size': 0.25}, adjoint=False)"
    )


# Order of every fixed-grid method, None for the adaptive ones; the test below checks the table covers the list.
# torchdiffeq's Adams methods start with RK4 steps and raise the Adams-Bashforth order with the history: over
# the 4 steps below they reach order 3.
_ORDERS: dict[str, int | None] = {
    "euler-ref": 1,
    "euler": 1,
    "midpoint": 2,
    "heun2": 2,
    "heun3": 3,
    "rk4": 4,
    "explicit_adams": 3,
    "implicit_adams": 3,
    "fixed_adams": 3,
    "bosh3": None,
    "fehlberg2": None,
    "adaptive_heun": None,
    "dopri5": None,
    "dopri8": None,
}


def test_the_order_table_covers_every_listed_name() -> None:
    assert set(_ORDERS) == set(INTEGRATOR_NAMES)


@pytest.mark.parametrize("name", INTEGRATOR_NAMES)
def test_every_listed_name_integrates_a_linear_problem(name: str) -> None:
    """y' = Ay over [0, 0.2] in 4 steps against the matrix exponential, for every name ``by_name`` takes.

    Bound: 3·h^p for a fixed-grid method of order p (as in the contract), 1e-4 for the adaptive methods at
    their default tolerances (torchdiffeq's lower-order ones interpolate the output times, at about 1e-5 here).
    """
    integrator = by_name(name)
    assert isinstance(integrator, Integrator)
    g = torch.Generator().manual_seed(0)
    a = rotation_decay_matrix()
    y0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    cond = torch.zeros(2, 0, dtype=torch.float64)
    h = 0.05
    ts = torch.arange(5, dtype=torch.float64) * h
    with torch.no_grad():
        out = integrator(LinearField(a), y0, ts, cond)
    exact = linear_solution(a, None, y0, cond, ts)
    order = _ORDERS[name]
    bound = 3 * h**order if order is not None else 1e-4
    err = (out - exact).abs().max().item()
    assert err < bound, (name, err, bound)


def test_listed_methods_are_torchdiffeq_methods() -> None:
    assert set(ODEINT_METHODS) <= set(SOLVERS)
    assert INTEGRATOR_NAMES[0] == "euler-ref"


def test_unknown_integrator_errors() -> None:
    with pytest.raises(ValueError, match=r"name: expected one of .*'rk4'.*, got 'rk5'"):
        by_name("rk5")
    with pytest.raises(ValueError, match="method: expected one of"):
        OdeintIntegrator("rk5")
    with pytest.raises(ValueError, match="kwargs: EulerIntegrator takes no options"):
        by_name("euler-ref", rtol=1e-3)


@pytest.mark.parametrize("integrator", [EulerIntegrator(), OdeintIntegrator("rk4")], ids=["euler", "rk4"])
def test_call_checks_sizes_and_dtypes_against_the_field(integrator: Integrator) -> None:
    """A y0 or cond one column too wide, or a float64 y0 for a float32 field, failed inside the field as
    torch's "mat1 and mat2 shapes cannot be multiplied" / "must have the same dtype"."""
    field = MLPField(3, 2, 8, 2)
    y0, ts, cond = torch.randn(4, 3), torch.linspace(0, 1, 3), torch.randn(4, 2)
    with pytest.raises(
        ValueError, match=r"^y0: expected \(B, Dy\) with Dy = 3, the field's state_size, got shape \[4, 4\]$"
    ):
        integrator(field, torch.randn(4, 4), ts, cond)
    with pytest.raises(
        ValueError, match=r"^cond: expected \(B, Dz\) with Dz = 2, the field's cond_size, got shape \[4, 3\]$"
    ):
        integrator(field, y0, ts, torch.randn(4, 3))
    with pytest.raises(TypeError, match=r"^cond: expected a floating-point tensor, got dtype torch\.int64$"):
        integrator(field, y0, ts, cond.long())
    with pytest.raises(
        TypeError, match=r"^y0: expected the dtype of the field's parameters, torch\.float32, got torch\.float64"
    ):
        integrator(field, y0.double(), ts, cond.double())
    with pytest.raises(
        TypeError, match=r"^cond: expected torch\.float32 or a lower precision \(y0 is torch\.float32\)"
    ):
        integrator(field, y0, ts, cond.double())
    # Valid calls are unchanged: float64 times with float32 states, a float64 field with float64 states, and a
    # field that declares no sizes (checked against nothing).
    assert integrator(field, y0, ts.double(), cond).shape == (3, 4, 3)
    assert integrator(MLPField(3, 2, 8, 2).double(), y0.double(), ts, cond.double()).dtype == torch.float64
    assert integrator(_ShapedField((4, 5)), torch.randn(4, 5), ts, torch.randn(4, 7)).shape == (3, 4, 5)


class _ShapedField(VectorField):
    """dy/dt of a given shape: (B, 1) and (Dy,) used to broadcast into the update without a word."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.ones(self.shape, dtype=y.dtype)


@pytest.mark.parametrize("shape", [(4, 1), (3,), (4, 5), (1, 4, 3)], ids=["B1", "Dy", "wide", "extra-axis"])
def test_field_output_must_have_the_state_shape(shape: tuple[int, ...]) -> None:
    """Through the integrators' public call and through every cell that evaluates a field."""
    import re

    y, z, ts = torch.randn(4, 3), torch.randn(4, 2), torch.linspace(0, 1, 3)
    message = re.escape(
        f"field: _ShapedField.forward must return dy/dt of the state's shape (B, Dy) = [4, 3], got shape {list(shape)}"
    )
    field = _ShapedField(shape)
    for integrator in (EulerIntegrator(), OdeintIntegrator("rk4"), OdeintIntegrator("dopri5")):
        with pytest.raises(ValueError, match=message):
            integrator(field, y, ts, z)
        with pytest.raises(ValueError, match=message):
            ODECell(field, integrator, 3, 2, n_substeps=2)(y, z)
    with pytest.raises(ValueError, match=message):
        ResidualCell(field, 3, 2, n_substeps=2)(y, z)
    adjoint = OdeintIntegrator("rk4", adjoint=True)
    with pytest.raises(ValueError, match=message):
        adjoint(field, y, ts, z.requires_grad_())
    assert EulerIntegrator()(_ShapedField((4, 3)), y, ts, z).shape == (3, 4, 3)


@pytest.mark.parametrize("name", INTEGRATOR_NAMES)
@pytest.mark.parametrize("adjoint", [False, True], ids=["backprop", "adjoint"])
def test_every_integrator_takes_an_empty_batch(name: str, adjoint: bool) -> None:
    """B = 0 gives empty states (S, 0, Dy): adaptive solvers measured the empty state's error as NaN and
    asserted "underflow in dt"; fixed-step ones already worked."""
    integrator = by_name(name)
    if adjoint:
        if not isinstance(integrator, OdeintIntegrator):
            return
        if integrator.method in LOW_ORDER_METHODS:
            with pytest.warns(UserWarning, match=r"adjoint=True\) with .* O\(Δt\^order\)"):
                integrator = OdeintIntegrator(integrator.method, adjoint=True)
        else:
            integrator = OdeintIntegrator(integrator.method, adjoint=True)
    field = MLPField(3, 2, 8, 2)
    y0 = torch.zeros(0, 3, requires_grad=True)
    cond = torch.zeros(0, 2, requires_grad=True)
    out = integrator(field, y0, torch.linspace(0.0, 1.0, 4), cond)
    assert out.shape == (4, 0, 3) and out.dtype == torch.float32
    cell = ODECell(field, integrator, 3, 2, n_substeps=3)
    path = cell.path(y0, cond)
    assert path.states.shape == (3, 0, 3)  # the n sub-step states after y0
    assert cell(y0, cond).shape == (0, 3)


# A valid value of every solver option torchdiffeq 0.2.5 knows, to check that the names latentdyn accepts are
# ones the solvers take (no "Unexpected arguments" warning, no TypeError).
_OPTION_VALUES: dict[str, object] = {
    "step_size": 0.05,
    "grid_constructor": None,
    "interp": "linear",
    "perturb": False,
    "implicit": True,
    "max_iters": 4,
    "max_order": 4,
    "norm": lambda x: x.abs().max(),
    "dfactor": 0.2,
    "dtype": torch.float64,
    "first_step": None,
    "ifactor": 10.0,
    "jump_t": None,
    "max_num_steps": 10_000,
    "max_step": 1.0,
    "min_step": 0.0,
    "safety": 0.9,
    "step_t": None,
}


@pytest.mark.parametrize("method", ODEINT_METHODS)
def test_option_names_are_those_the_solver_takes(method: str) -> None:
    """Every name the check accepts runs through torchdiffeq without its "Unexpected arguments" warning; a name
    outside is refused at construction (torchdiffeq itself only warned and ignored it)."""
    import warnings

    from latentdyn.integrators.odeint import solver_option_names

    names = solver_option_names(method)
    assert names is not None and {"norm"} < names
    assert names <= set(_OPTION_VALUES), sorted(names - set(_OPTION_VALUES))
    a = rotation_decay_matrix()
    y0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ts = torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64)
    for name in sorted(names):
        integrator = OdeintIntegrator(method, options={name: _OPTION_VALUES[name]})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = integrator(LinearField(a), y0, ts, y0.new_zeros(2, 0))
        assert out.shape == (3, 2, 3), (method, name)
    with pytest.raises(
        ValueError, match=rf"options: unknown option\(s\) 'stepsize' for method '{method}', which takes"
    ):
        OdeintIntegrator(method, options={"stepsize": 0.1})
    with pytest.warns(UserWarning, match="Unexpected arguments"):  # what torchdiffeq does with it
        import torchdiffeq

        torchdiffeq.odeint(lambda t, y: -y, y0, ts, method=method, options={"stepsize": 0.1})


def test_unknown_options_are_refused_whatever_the_route() -> None:
    with pytest.raises(ValueError, match=r"options: unknown option\(s\) 'step_size' for method 'dopri5'"):
        by_name("dopri5", options={"step_size": 0.1})  # a fixed-grid option given to an adaptive method
    with pytest.raises(ValueError, match=r"options: unknown option\(s\) 'max_num_steps' for method 'rk4'"):
        OdeintIntegrator("rk4", options={"max_num_steps": 10})
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'implicit' for method 'explicit_adams'"):
        OdeintIntegrator("explicit_adams", options={"implicit": True})  # its solver sets it itself
    with pytest.raises(TypeError, match=r"options: expected option names as strings, got 1"):
        OdeintIntegrator("rk4", options={1: 0.1})  # type: ignore[dict-item]


def test_too_few_max_num_steps_is_named() -> None:
    """torchdiffeq's bare AssertionError ("max_num_steps exceeded (2>=2)") now names the option."""
    field = LinearField(rotation_decay_matrix())
    y0 = torch.ones(2, 3, dtype=torch.float64)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for adjoint in (False, True):
        integrator = OdeintIntegrator("dopri5", options={"max_num_steps": 2}, adjoint=adjoint)
        with pytest.raises(
            RuntimeError, match=r"options: the 'dopri5' solve took more steps than max_num_steps=2"
        ) as e:
            integrator(field, y0, ts, y0.new_zeros(2, 0))
        assert isinstance(e.value.__cause__, AssertionError)
    enough = OdeintIntegrator("dopri5", options={"max_num_steps": 1000})
    assert enough(field, y0, ts, y0.new_zeros(2, 0)).shape == (2, 2, 3)


class _NanAfterHalfField(VectorField):
    """dy/dt = y until t = 0.5, then NaN: the error norm is NaN, so an adaptive solver shrinks its step to 0."""

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.where(t > 0.5, torch.full_like(y, float("nan")), y)


def test_step_size_underflow_is_explained() -> None:
    """torchdiffeq's bare AssertionError ("underflow in dt 0.0") says what usually causes it."""
    y0 = torch.ones(2, 3, dtype=torch.float64)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for adjoint in (False, True):
        integrator = OdeintIntegrator("dopri5", adjoint=adjoint)
        with pytest.raises(
            RuntimeError, match=r"the 'dopri5' solve shrank its step .*underflow in dt.*NaN or inf"
        ) as e:
            integrator(_NanAfterHalfField(), y0, ts, y0.new_zeros(2, 0))
        assert isinstance(e.value.__cause__, AssertionError)


def test_adjoint_options_are_torchdiffeqs_arguments_and_are_checked() -> None:
    import inspect

    import torchdiffeq

    taken = inspect.signature(torchdiffeq.odeint_adjoint).parameters
    for name in ("adjoint_rtol", "adjoint_atol", "adjoint_method", "adjoint_options"):
        assert name in taken and name in inspect.signature(OdeintIntegrator).parameters
        with pytest.raises(ValueError, match=rf"{name}: only used with adjoint=True, got .* with adjoint=False"):
            OdeintIntegrator("dopri5", **{name: {"adjoint_method": "rk4", "adjoint_options": {}}.get(name, 1e-3)})
    with pytest.raises(ValueError, match=r"adjoint_rtol: expected a positive finite number, got -1.0"):
        OdeintIntegrator(adjoint=True, adjoint_rtol=-1.0)
    with pytest.raises(ValueError, match=r"adjoint_method: expected one of .*, got 'rk5'"):
        OdeintIntegrator(adjoint=True, adjoint_method="rk5")
    with pytest.raises(ValueError, match=r"adjoint_options: unknown option\(s\) 'step_size' for method 'dopri5'"):
        OdeintIntegrator(adjoint=True, adjoint_options={"step_size": 0.1})
    with pytest.raises(TypeError, match=r"adjoint_options: expected a dict of solver options or None, got str"):
        OdeintIntegrator(adjoint=True, adjoint_options="seminorm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"adjoint_options: required when adjoint_method='rk4' differs from method"):
        OdeintIntegrator(adjoint=True, adjoint_method="rk4", options={"max_num_steps": 100})
    checked = OdeintIntegrator(adjoint=True, adjoint_method="rk4", adjoint_options={"step_size": 0.1})
    assert checked.adjoint_options == {"step_size": 0.1}
    assert repr(checked) == (
        "OdeintIntegrator(method='dopri5', rtol=1e-07, atol=1e-09, adjoint=True, adjoint_method='rk4', "
        "adjoint_options={'step_size': 0.1})"
    )


@pytest.mark.parametrize("cond_requires_grad", [False, True])
def test_adjoint_options_reach_the_backward_solve(cond_requires_grad: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The adjoint's own settings are passed to odeint_adjoint (they could not be set), and the backward solve
    they configure still gives the backprop gradients."""
    import torchdiffeq

    seen: list[dict[str, object]] = []
    original = torchdiffeq.odeint_adjoint

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(torchdiffeq, "odeint_adjoint", spy)
    g = torch.Generator().manual_seed(3)
    field = SmoothField(2, 2, 4, generator=g).double()
    y0 = torch.randn(3, 2, generator=g, dtype=torch.float64)
    cond = torch.randn(3, 2, generator=g, dtype=torch.float64).requires_grad_(cond_requires_grad)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)

    def grads(integrator: OdeintIntegrator) -> list[torch.Tensor]:
        wrt = [*field.parameters(), *([cond] if cond_requires_grad else [])]
        return list(torch.autograd.grad(integrator(field, y0, ts, cond).square().sum(), wrt))

    backprop = grads(OdeintIntegrator("dopri5", rtol=1e-10, atol=1e-12))
    settings = [
        dict(adjoint_options={"norm": "seminorm"}),
        dict(adjoint_method="rk4", adjoint_options={"step_size": 0.01}),
        dict(adjoint_method="dopri8", adjoint_rtol=1e-11, adjoint_atol=1e-13),
    ]
    for kwargs in settings:
        seen.clear()
        got = grads(OdeintIntegrator("dopri5", rtol=1e-10, atol=1e-12, adjoint=True, **kwargs))  # type: ignore[arg-type]
        assert len(seen) == 1
        for key, value in kwargs.items():
            assert seen[0][key] == value, key
        if "adjoint_method" in kwargs and "adjoint_options" not in kwargs:
            assert seen[0]["adjoint_options"] == {}  # torchdiffeq refuses a different method without them
        for a, b in zip(got, backprop):  # rk4 at h = 0.01 differs from backprop by its discretisation error
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
