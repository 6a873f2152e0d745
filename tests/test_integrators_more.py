"""Integrators, continued: what the adjoint's gradient is, step sizes against the sub-step grid, frame-local option
times, 16-bit Euler steps, torch.compile across frames, and the option values checked at construction."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from problems import LinearField, SmoothField, linear_solution, rotation_decay_matrix
from torchdiffeq._impl.odeint import SOLVERS

from latentdyn.cells import ODECell, ResidualCell
from latentdyn.fields import MLPField, VectorField
from latentdyn.integrators import EulerIntegrator, OdeintIntegrator, by_name
from latentdyn.integrators.odeint import ADAPTIVE_METHODS, LOW_ORDER_METHODS, ODEINT_METHODS
from latentdyn.ssm import LatentSSM

# ----------------------------------------------------------------------------------------------- the adjoint


def test_low_order_methods_are_torchdiffeqs_fixed_grid_methods_of_order_one_or_two() -> None:
    from torchdiffeq._impl.solvers import FixedGridODESolver

    fixed = {m: SOLVERS[m].order for m in ODEINT_METHODS if issubclass(SOLVERS[m], FixedGridODESolver)}
    assert LOW_ORDER_METHODS == {m: order for m, order in fixed.items() if order <= 2}
    assert set(ODEINT_METHODS) == set(SOLVERS) - {"scipy_solver"}  # as ODEINT_METHODS' docstring says


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "euler"},
        {"method": "midpoint"},
        {"method": "heun2"},
        {"method": "dopri5", "adjoint_method": "euler"},  # the backward solve alone
    ],
    ids=["euler", "midpoint", "heun2", "backward-euler"],
)
def test_adjoint_with_a_low_order_fixed_grid_method_warns(kwargs: dict[str, str]) -> None:
    """The adjoint's gradient is the continuous ODE's, off backprop's by O(Δt^order): a quarter for Euler at one
    step per frame. The docstring said it was exactly backprop's; building such an integrator now warns."""
    low = kwargs.get("adjoint_method", kwargs["method"])
    with pytest.warns(UserWarning, match=rf"adjoint=True\) with '{low}' \(order \d\).*O\(Δt\^order\).*'rk4'") as w:
        OdeintIntegrator(**kwargs, adjoint=True)  # type: ignore[arg-type]
    assert w[0].filename == __file__  # points at the line that built it
    with pytest.warns(UserWarning, match=f"'{low}'"):
        by_name(kwargs["method"], adjoint=True, **{k: v for k, v in kwargs.items() if k != "method"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OdeintIntegrator(kwargs["method"])  # without the adjoint: exact backprop, no warning
        OdeintIntegrator("rk4", adjoint=True)
        OdeintIntegrator("dopri5", adjoint=True)


def test_adjoint_gradient_differs_from_backprop_by_the_discretisation_error() -> None:
    """What the warning and the docs say: Euler's adjoint gradient is off by tens of per cent with one step per
    frame (26 % in the docs' example, 83 % here) and half that with two; RK4's by a hundred times less."""

    def relative_error(method: str, n: int) -> float:
        g = torch.Generator().manual_seed(0)
        field = SmoothField(3, 2, 8, generator=g).double()
        y = torch.randn(2, 3, generator=g, dtype=torch.float64)
        z = torch.randn(2, 2, generator=g, dtype=torch.float64)
        grads = []
        for adjoint in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cell = ODECell(field, OdeintIntegrator(method, adjoint=adjoint), 3, 2, n_substeps=n)
            grads.append(torch.autograd.grad(cell(y, z).square().sum(), list(field.parameters())))
        return max(((a - b).norm() / b.norm()).item() for a, b in zip(grads[1], grads[0]))

    euler = [relative_error("euler", n) for n in (1, 2)]
    assert euler[0] > 0.05 and 1.6 < euler[0] / euler[1] < 2.5  # order 1: halves with n
    assert relative_error("rk4", 1) < 0.02 * euler[0]


# ------------------------------------------------------------------------------------- step_size and the grid


def _linear_cell(options: dict[str, object], n: int = 1) -> ODECell:
    g = torch.Generator().manual_seed(1)
    field = LinearField(rotation_decay_matrix(), torch.randn(3, 2, generator=g, dtype=torch.float64))
    return ODECell(field, OdeintIntegrator("rk4", options=options), 3, 2, n_substeps=n)


def test_a_step_size_that_does_not_divide_the_substep_is_refused() -> None:
    """torchdiffeq interpolated the states at sub-step times linearly between its steps: with step_size=0.05 and
    n = 3 (the docs' own value), the first two sub-steps were about 3000 times less accurate than with 1/30."""
    divides = re.escape(
        "options['step_size']: 0.05 does not divide (it fits 6.66667 times) the sub-step 1/3 of an ODECell with "
        "n_substeps=3: torchdiffeq would interpolate"
    )
    hint = re.escape("use a step size that divides it, 1/(3·k) for an integer k >= 1 (0.333333, 0.166667, 0.111111")
    with pytest.raises(ValueError, match=f"^{divides}.*{hint}"):
        _linear_cell({"step_size": 0.05}, n=3)
    cell = _linear_cell({"step_size": 0.05})  # 1/20 divides one sub-step per frame
    g = torch.Generator().manual_seed(2)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64)
    z = torch.randn(4, 2, generator=g, dtype=torch.float64)
    assert cell(y, z).shape == (4, 3)
    for call in (
        lambda: cell.path(y, z, n_substeps=3),
        lambda: cell(y, z, 3),
        lambda: LatentSSM(cell).rollout(y, 3, n_substeps=3, posterior=_posterior(z, 2)),
    ):
        with pytest.raises(ValueError, match=f"^{divides}"):
            call()
    for step_size, n in ((0.5, 3), (2.0, 1)):
        with pytest.raises(ValueError, match=rf"options\['step_size'\]: {step_size} is larger than the sub-step 1/{n}"):
            _linear_cell({"step_size": step_size}, n=n)
    # Step sizes that divide 1/n step exactly onto every sub-step (up to the rounding of 1/(k·n)).
    field = cell.field
    exact = linear_solution(field.a.detach(), field.c.detach(), y, z, torch.arange(4, dtype=torch.float64) / 3)[1:]
    for step_size, bound in ((1 / 3, 1e-2), (1 / 6, 1e-3), (1 / 30, 1e-6)):  # RK4: 16 times per halving
        states = _linear_cell({"step_size": step_size}, n=3).path(y, z).states
        assert (states - exact).abs().max() < bound, step_size


def _posterior(z: torch.Tensor, steps: int) -> torch.distributions.Independent:
    from latentdyn.distributions import diag_gaussian

    loc = z.expand(steps, *z.shape)
    return diag_gaussian(loc, torch.ones_like(loc))


def test_the_rollout_checks_the_step_size_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is in Python floats, once per rollout (where the sub-step count is checked), not per frame."""
    calls: list[int] = []
    original = OdeintIntegrator._check_substeps

    def spy(self: OdeintIntegrator, n_substeps: int) -> None:
        calls.append(n_substeps)
        original(self, n_substeps)

    cell = _linear_cell({"step_size": 1 / 6}, n=3)
    monkeypatch.setattr(OdeintIntegrator, "_check_substeps", spy)
    z = torch.zeros(2, 2, dtype=torch.float64)
    LatentSSM(cell).rollout(torch.ones(2, 3, dtype=torch.float64), 6, posterior=_posterior(z, 5))
    assert calls == [3]


def test_a_direct_call_checks_the_step_size_against_ts() -> None:
    field = LinearField(rotation_decay_matrix())
    y0 = torch.ones(2, 3, dtype=torch.float64)
    cond = y0.new_zeros(2, 0)
    fine = OdeintIntegrator("rk4", options={"step_size": 0.05})
    with pytest.raises(
        ValueError,
        match=re.escape("options['step_size']: 0.05 does not divide (it fits 6.66667 times) ts[1] - ts[0] = 0.333333:")
        + r".*\(the spacing of ts\)/k",
    ):
        fine(field, y0, torch.arange(4, dtype=torch.float64) / 3, cond)
    with pytest.raises(ValueError, match=r"options\['step_size'\]: 0.05 does not divide .* ts\[2\] - ts\[0\] = 0\.13"):
        fine(field, y0, torch.tensor([0.0, 0.1, 0.13]), cond)
    with pytest.raises(ValueError, match=r"options\['step_size'\]: 0.5 is larger than ts\[1\] - ts\[0\] = 0\.2"):
        OdeintIntegrator("rk4", options={"step_size": 0.5})(field, y0, torch.tensor([0.0, 0.2]), cond)
    for ts in (torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64), torch.tensor([0.0, 0.1, 0.2]), torch.tensor([3.0])):
        assert fine(field, y0, ts, cond).shape == (ts.shape[0], 2, 3)  # float32 times: their rounding allowed


# ---------------------------------------------------------------------------------------- frame-local times


def test_time_options_are_frame_local_in_an_ode_cell() -> None:
    """What the docs now say: an ODECell solves over 0, 1/n, ..., 1 whatever the frame, so a grid_constructor
    sees those times, while the field sees frame + t."""
    seen: list[list[float]] = []

    def grid(func: object, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t.tolist())
        return t

    class Times(VectorField):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            self.times.append(t.item())
            return -y

    field = Times()
    cell = ODECell(field, OdeintIntegrator("euler", options={"grid_constructor": grid}), 1, 0, n_substeps=3)
    cell(torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 0, dtype=torch.float64), frame=10)
    assert seen == [[0.0, 1 / 3, 2 / 3, 1.0]]
    assert field.times == [10.0, 10 + 1 / 3, 10 + 2 / 3]


# ------------------------------------------------------------------------------------------ 16-bit Euler steps


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_euler_integrator_equals_residual_cell_in_16_bits(dtype: torch.dtype, n: int) -> None:
    """EulerIntegrator multiplied f by Δt held as a float64 tensor, which torch rounds to the 16-bit dtype first
    (bf16(1/3)·3 = 1.00195): ODECell(EulerIntegrator) was not ResidualCell in bfloat16 for n = 3, 7."""
    g = torch.Generator().manual_seed(0)
    field = MLPField(3, 2, hidden_size=8, n_layers=2).to(dtype)
    y = torch.randn(64, 3, generator=g).to(dtype)
    z = torch.randn(64, 2, generator=g).to(dtype)
    residual = ResidualCell(field, 3, 2, n_substeps=n).path(y, z, frame=5)
    euler = ODECell(field, EulerIntegrator(), 3, 2, n_substeps=n).path(y, z, frame=5)
    assert euler.states.dtype == dtype
    assert torch.equal(euler.states, residual.states)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_euler_integrator_steps_as_before_in_32_and_64_bits(dtype: torch.dtype) -> None:
    """Unchanged: y + (t_{j+1} − t_j)·f with the float64 step length rounded to the state's dtype."""
    g = torch.Generator().manual_seed(0)
    field = MLPField(3, 2, hidden_size=8, n_layers=2).to(dtype)
    y = torch.randn(8, 3, generator=g).to(dtype)
    z = torch.randn(8, 2, generator=g).to(dtype)
    ts = torch.tensor([0.0, 1 / 3, 0.5, 0.9, 1.7], dtype=torch.float64)
    with torch.no_grad():
        out = EulerIntegrator()(field, y, ts, z)
        for j in range(len(ts) - 1):
            y = y + (ts[j + 1] - ts[j]) * field(ts[j], y, z)
            assert torch.equal(out[j + 1], y)


def test_euler_integrator_under_a_16_bit_autocast_rounds_the_step_length_once() -> None:
    """A float32 state with a bfloat16 field (autocast): the step is taken in float32, not Δt rounded to bfloat16."""
    g = torch.Generator().manual_seed(0)
    field = MLPField(3, 2, hidden_size=8, n_layers=2)
    y = torch.randn(8, 3, generator=g)
    z = torch.randn(8, 2, generator=g)
    ts = torch.arange(4, dtype=torch.float64) / 3
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = EulerIntegrator()(field, y, ts, z)
        f = field(ts[0], y, z)
    assert f.dtype == torch.bfloat16 and out.dtype == torch.float32
    assert torch.equal(out[1], y + (1 / 3) * f.float())


# -------------------------------------------------------------------------------------------- torch.compile


def test_a_compiled_ode_cell_does_not_recompile_every_frame() -> None:
    """The frame was a Python int attribute of the wrapper the solver calls, which torch.compile guards on: a
    compiled ODECell(OdeintIntegrator) recompiled at every frame until the recompile limit (8)."""
    from torch._dynamo.testing import CompileCounter

    if tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 3):
        # (torch 2.2's dynamo fails to build guards on torchdiffeq's _PerturbFunc and recompiles by chance:
        # it compiled 18 graphs for 5 transitions and 14 for 13 in the lowest-versions run)
        pytest.skip(f"torch {torch.__version__}'s dynamo counts graphs of torchdiffeq unreliably")
    field = MLPField(3, 0, hidden_size=8, n_layers=2)
    y0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    counts = []
    try:
        for n_frames in (6, 14):
            torch._dynamo.reset()
            counter = CompileCounter()
            cell = ODECell(field, OdeintIntegrator("euler"), 3, 0, n_substeps=2)
            cell.compile(backend=counter)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # dynamo's notes on torchdiffeq's graph breaks
                try:
                    states = LatentSSM(cell).rollout(y0, n_frames).states
                except Exception as e:  # pragma: no cover (torch versions whose dynamo cannot trace torchdiffeq)
                    if tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 3):
                        pytest.skip(f"torch {torch.__version__}'s dynamo fails on torchdiffeq: {type(e).__name__}")
                    raise
            eager = LatentSSM(ODECell(field, OdeintIntegrator("euler"), 3, 0, n_substeps=2)).rollout(y0, n_frames)
            torch.testing.assert_close(states, eager.states, rtol=1e-6, atol=1e-6)
            counts.append(counter.frame_count)
    finally:
        torch._dynamo.reset()
    assert counts[0] == counts[1], counts  # the same graphs for 5 transitions as for 13


# ------------------------------------------------------------------------------------- option values checked


@pytest.mark.parametrize(
    ("method", "options", "error", "message"),
    [
        ("dopri5", {"first_step": 0.0}, ValueError, r"options\['first_step'\]: expected a positive finite number"),
        ("dopri5", {"first_step": -1.0}, ValueError, r"options\['first_step'\]: expected a positive finite"),
        ("bosh3", {"first_step": float("inf")}, ValueError, r"options\['first_step'\]: expected a positive finite"),
        ("dopri5", {"first_step": "0.1"}, TypeError, r"options\['first_step'\]: expected a positive finite .*str"),
        ("dopri5", {"max_num_steps": 0}, ValueError, r"options\['max_num_steps'\]: expected an int from 1 to"),
        ("dopri5", {"max_num_steps": 2.5}, TypeError, r"options\['max_num_steps'\]: expected an int >= 1, got float"),
        ("dopri5", {"max_num_steps": 2**31}, ValueError, r"options\['max_num_steps'\]: expected an int from 1 to"),
        ("rk4", {"step_size": 0}, ValueError, r"options\['step_size'\]: expected a positive finite number or None"),
        ("rk4", {"step_size": -0.1}, ValueError, r"options\['step_size'\]: expected a positive finite number"),
        ("euler", {"step_size": float("nan")}, ValueError, r"options\['step_size'\]: expected a positive finite"),
        ("rk4", {"step_size": True}, TypeError, r"options\['step_size'\]: expected a positive finite .*bool"),
        ("dopri5", {"norm": "seminorm"}, ValueError, r"options\['norm'\]: 'seminorm' is only for .*adjoint_options"),
        ("dopri5", {"norm": "max"}, TypeError, r"options\['norm'\]: expected a callable, .* got str 'max'"),
        ("implicit_adams", {"max_iters": 0}, ValueError, r"options\['max_iters'\]: expected an int from 1 to"),
        ("fixed_adams", {"max_iters": 0}, ValueError, r"options\['max_iters'\]: expected an int from 1 to"),
        ("implicit_adams", {"max_iters": 1.0}, TypeError, r"options\['max_iters'\]: expected an int >= 1"),
    ],
)
def test_option_values_are_checked_at_construction(
    method: str, options: dict[str, object], error: type[Exception], message: str
) -> None:
    """They failed at the first solve with messages that blamed something else: "underflow in dt" (with the
    field's NaNs named as the likely cause), "max_num_steps=2.5", "unsupported range: 0 -> inf", "'str' object
    is not callable", "cannot access local variable 'f'"."""
    with pytest.raises(error, match=f"^{message}"):
        OdeintIntegrator(method, options=options)


def test_adjoint_options_take_seminorm_or_a_callable_norm() -> None:
    assert OdeintIntegrator(adjoint=True, adjoint_options={"norm": "seminorm"}).adjoint_options == {"norm": "seminorm"}
    OdeintIntegrator(adjoint=True, adjoint_options={"norm": lambda x: x[1].abs().max()})
    with pytest.raises(ValueError, match=r"^adjoint_options\['norm'\]: expected a callable norm or 'seminorm'"):
        OdeintIntegrator(adjoint=True, adjoint_options={"norm": "semi"})
    with pytest.raises(ValueError, match=r"^adjoint_options\['max_num_steps'\]: expected an int from 1"):
        OdeintIntegrator(adjoint=True, adjoint_options={"max_num_steps": 0})


@pytest.mark.filterwarnings("ignore:Functional iteration did not converge")  # one corrector iteration
@pytest.mark.parametrize("method", [m for m in ODEINT_METHODS if m not in ADAPTIVE_METHODS])
def test_valid_option_values_still_solve(method: str) -> None:
    """Values at the edge of what the checks accept run through torchdiffeq."""
    options: dict[str, object] = {"step_size": 0.1}
    if method in ("implicit_adams", "fixed_adams", "explicit_adams"):
        options["max_iters"] = 1
    integrator = OdeintIntegrator(method, options=options)
    out = integrator(
        LinearField(rotation_decay_matrix()),
        torch.ones(2, 3, dtype=torch.float64),
        torch.tensor([0.0, 0.2, 0.4], dtype=torch.float64),
        torch.zeros(2, 0, dtype=torch.float64),
    )
    assert torch.isfinite(out).all()
    adaptive = OdeintIntegrator("dopri5", options={"first_step": 1e-3, "max_num_steps": 1})
    with pytest.raises(RuntimeError, match="max_num_steps=1"):
        adaptive(
            LinearField(rotation_decay_matrix()),
            torch.ones(2, 3, dtype=torch.float64),
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            torch.zeros(2, 0, dtype=torch.float64),
        )
