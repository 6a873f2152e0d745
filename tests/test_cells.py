"""Transition cells: the shared contract for every cell, equivalences, and hand-computed references."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from contracts import CellContract, seeded
from hypothesis import given
from hypothesis import strategies as st
from problems import LinearField, TimeModulatedField, linear_solution, rotation_decay_matrix
from strategies import dims, n_substeps
from torch import nn
from torch.func import functional_call

from latentdyn._autocast import autocast_enabled
from latentdyn.cells import CellPath, GRUCell, MLPCell, ODECell, ResidualCell, TransitionCell
from latentdyn.distributions import diag_gaussian
from latentdyn.fields import MLPField, VectorField
from latentdyn.integrators import EulerIntegrator, OdeintIntegrator
from latentdyn.ssm import LatentSSM

HIDDEN = 16


class TestResidualCell(CellContract):
    def make_cell(self, state_size: int, cond_size: int, n_substeps: int) -> TransitionCell:
        return ResidualCell(MLPField(state_size, cond_size, HIDDEN, 3), state_size, cond_size, n_substeps)


class TestODECellEuler(CellContract):
    def make_cell(self, state_size: int, cond_size: int, n_substeps: int) -> TransitionCell:
        field = MLPField(state_size, cond_size, HIDDEN, 3)
        return ODECell(field, EulerIntegrator(), state_size, cond_size, n_substeps)


class TestODECellRK4(CellContract):
    def make_cell(self, state_size: int, cond_size: int, n_substeps: int) -> TransitionCell:
        field = MLPField(state_size, cond_size, HIDDEN, 3)
        return ODECell(field, OdeintIntegrator("rk4"), state_size, cond_size, n_substeps)


class TestMLPCell(CellContract):
    supports_substeps = False
    has_residuals = False

    def make_cell(self, state_size: int, cond_size: int, n_substeps: int) -> TransitionCell:
        return MLPCell(state_size, cond_size, HIDDEN, 3)


class TestGRUCell(CellContract):
    supports_substeps = False
    has_residuals = False
    min_cond = 1

    def make_cell(self, state_size: int, cond_size: int, n_substeps: int) -> TransitionCell:
        return GRUCell(state_size, cond_size)


def _three_euler_cells(dy: int, dz: int, n: int, seed: int, dtype: torch.dtype) -> list[TransitionCell]:
    """ResidualCell, ODECell(Euler) and ODECell(Odeint euler) sharing one field."""
    with seeded(seed):
        field = TimeModulatedField(MLPField(dy, dz, HIDDEN, 3)).to(dtype)
    return [
        ResidualCell(field, dy, dz, n),
        ODECell(field, EulerIntegrator(), dy, dz, n),
        ODECell(field, OdeintIntegrator("euler"), dy, dz, n),
    ]


@given(d=dims(substeps=False), frame=st.integers(0, 5))
def test_euler_cells_bitwise_equal_at_one_substep(d, frame: int) -> None:  # type: ignore[no-untyped-def]
    cells = _three_euler_cells(d.state, d.cond, 1, d.seed, d.dtype)
    g = torch.Generator().manual_seed(d.seed)
    y = torch.randn(d.batch, d.state, generator=g).to(d.dtype)
    z = torch.randn(d.batch, d.cond, generator=g).to(d.dtype)
    paths = [c.path(y, z, frame=frame) for c in cells]
    for p in paths[1:]:
        assert torch.equal(p.states, paths[0].states)
        # ODECell reports increments (y + Δt·f) − y, equal to Δt·f up to one rounding of y.
        torch.testing.assert_close(p.residuals, paths[0].residuals)


@given(d=dims(), frame=st.integers(0, 5))
def test_euler_cells_agree_with_substeps(d, frame: int) -> None:  # type: ignore[no-untyped-def]
    cells = _three_euler_cells(d.state, d.cond, d.n_substeps, d.seed, d.dtype)
    g = torch.Generator().manual_seed(d.seed)
    y = torch.randn(d.batch, d.state, generator=g).to(d.dtype)
    z = torch.randn(d.batch, d.cond, generator=g).to(d.dtype)
    paths = [c.path(y, z, frame=frame) for c in cells]
    tol = 1e-5 if d.dtype == torch.float32 else 1e-12
    for p in paths[1:]:
        torch.testing.assert_close(p.states, paths[0].states, rtol=tol, atol=tol)
        torch.testing.assert_close(p.residuals, paths[0].residuals, rtol=tol, atol=tol)


@given(n=n_substeps, frame=st.integers(0, 9), seed=st.integers(0, 2**16))
def test_residual_cell_matches_hand_written_euler(n: int, frame: int, seed: int) -> None:
    """y_{j+1} = y_j + (1/n)·f(frame + j/n, y_j, z), residual = (1/n)·f, with times from plain floats."""
    with seeded(seed):
        field = TimeModulatedField(MLPField(3, 2, HIDDEN, 2)).double()
    cell = ResidualCell(field, 3, 2, n)
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64)
    z = torch.randn(4, 2, generator=g, dtype=torch.float64)
    path = cell.path(y, z, frame=frame)
    assert path.residuals is not None
    for j in range(n):
        t = torch.tensor(frame + j / n, dtype=torch.float64)
        res = field(t, y, z) / n
        torch.testing.assert_close(path.residuals[j], res, rtol=1e-12, atol=1e-14)
        y = y + res
        torch.testing.assert_close(path.states[j], y, rtol=1e-12, atol=1e-14)


def test_frame_sets_the_time_of_a_non_autonomous_field() -> None:
    with seeded(0):
        field = TimeModulatedField(MLPField(3, 2, HIDDEN, 2))
    cell = ResidualCell(field, 3, 2, 2)
    y, z = torch.randn(2, 3), torch.randn(2, 2)
    assert not torch.allclose(cell.path(y, z, frame=0).states, cell.path(y, z, frame=1).states)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_ode_cell_rk4_solves_linear_problem(n: int) -> None:
    """ODECell(rk4) over one frame with n sub-steps against the matrix-exponential solution."""
    g = torch.Generator().manual_seed(1)
    a = rotation_decay_matrix()
    c = torch.randn(3, 2, generator=g, dtype=torch.float64)
    cell = ODECell(LinearField(a, c), OdeintIntegrator("rk4"), 3, 2, n)
    y = torch.randn(2, 3, generator=g, dtype=torch.float64)
    z = torch.randn(2, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        states = cell.path(y, z, frame=3).states
    exact = linear_solution(a, c, y, z, torch.arange(n + 1, dtype=torch.float64) / n)[1:]
    # Fourth order: n steps of local error ≈ (h‖A‖)⁵/120·|y| with ‖A‖ ≈ 2, |y| ≲ 2 give about 0.5·h⁴.
    assert (states - exact).abs().max() < 0.5 / n**4


def test_mlp_cell_is_mlp_on_state_then_noise() -> None:
    with seeded(0):
        cell = MLPCell(3, 2, 5, 2).double()
    y = torch.randn(4, 3, dtype=torch.float64)
    z = torch.randn(4, 2, dtype=torch.float64)
    l1, l2 = cell.net.linears()
    x = torch.cat([y, z], dim=-1)
    expected = F.linear(torch.relu(F.linear(x, l1.weight, l1.bias)), l2.weight, l2.bias)
    torch.testing.assert_close(cell(y, z), expected, rtol=1e-12, atol=1e-12)


def test_mlp_cell_takes_an_activation_like_mlp_field() -> None:
    """MLPField took activation= and its sibling MLPCell refused it ('unexpected keyword argument')."""
    with seeded(0):
        cell = MLPCell(3, 2, 5, 2, activation=nn.Tanh).double()
    y, z = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    l1, l2 = cell.net.linears()
    expected = F.linear(torch.tanh(F.linear(torch.cat([y, z], dim=-1), l1.weight, l1.bias)), l2.weight, l2.bias)
    torch.testing.assert_close(cell(y, z), expected, rtol=1e-12, atol=1e-12)


def test_gru_cell_reads_noise_as_input_and_state_as_hidden() -> None:
    """GRU equations written out: r, u gates, candidate c, y' = (1 − u)·c + u·y."""
    with seeded(0):
        cell = GRUCell(3, 2).double()
    y = torch.randn(4, 3, dtype=torch.float64)
    z = torch.randn(4, 2, dtype=torch.float64)
    gru = cell.gru
    wi_r, wi_u, wi_c = gru.weight_ih.chunk(3)
    wh_r, wh_u, wh_c = gru.weight_hh.chunk(3)
    bi_r, bi_u, bi_c = gru.bias_ih.chunk(3)
    bh_r, bh_u, bh_c = gru.bias_hh.chunk(3)
    r = torch.sigmoid(z @ wi_r.T + bi_r + y @ wh_r.T + bh_r)
    u = torch.sigmoid(z @ wi_u.T + bi_u + y @ wh_u.T + bh_u)
    c = torch.tanh(z @ wi_c.T + bi_c + r * (y @ wh_c.T + bh_c))
    torch.testing.assert_close(cell(y, z), (1 - u) * c + u * y, rtol=1e-12, atol=1e-12)


def test_gru_cell_keeps_float32_states_under_an_autocast_that_runs_gru_cell_in_16_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CUDA-paths review: CUDA's autocast runs ``gru_cell`` whole in 16 bits, the state included (CPU's
    decomposes it and keeps the state float32), so a GRU model's states lost their float32 accumulation on a GPU
    only. Simulated here on a CPU: ``nn.GRUCell`` made to behave as under CUDA's autocast."""
    plain = nn.GRUCell.forward

    def as_on_cuda(self: nn.GRUCell, x: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        if not autocast_enabled("cpu"):
            return plain(self, x, hx)
        low = torch.bfloat16
        with torch.autocast("cpu", enabled=False):
            params = [p.to(low) for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)]
            assert hx is not None
            return torch._VF.gru_cell(x.to(low), hx.to(low), *params)

    monkeypatch.setattr(nn.GRUCell, "forward", as_on_cuda)
    with seeded(0):
        ssm = LatentSSM(GRUCell(8, 4))
    y0, z = torch.randn(16, 8), torch.randn(5, 16, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states = ssm.rollout(y0, 6, posterior=diag_gaussian(z, torch.ones_like(z)), sample=False).states
    assert states.dtype == torch.float32
    assert not torch.equal(states[1:], states[1:].bfloat16().float())  # not rounded to 16 bits
    torch.testing.assert_close(
        states, ssm.rollout(y0, 6, posterior=diag_gaussian(z, torch.ones_like(z)), sample=False).states
    )


class _PathOf(torch.nn.Module):
    """Exposes ``cell.path`` as ``forward`` so that ``functional_call`` can swap the cell's parameters."""

    def __init__(self, cell: TransitionCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.cell.path(y, z)
        assert path.residuals is not None
        return path.states, path.residuals


def test_residual_cell_gradcheck() -> None:
    """float64 gradcheck of the ResidualCell path w.r.t. y, z and every parameter (2 sub-steps)."""
    with seeded(0):
        module = _PathOf(ResidualCell(MLPField(2, 2, 4, 2), 2, 2, 2)).double()
    names = [k for k, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(y: torch.Tensor, z: torch.Tensor, *ps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return functional_call(module, dict(zip(names, ps)), (y, z))

    assert torch.autograd.gradcheck(fn, (y, z, *params))


def test_mlp_field_takes_an_activation() -> None:
    """MLPField had a fixed ReLU, so a latent ODE with an adaptive solver could not have a smooth field (a
    gradcheck through dopri5 fails with ReLU). The default stays ReLU (SRVP's)."""
    with seeded(0):
        relu = MLPField(3, 2, 8, 3)
        tanh = MLPField(3, 2, 8, 3, activation=torch.nn.Tanh).double()
    assert [type(m) for m in relu.net.layers][1::2] == [torch.nn.ReLU, torch.nn.ReLU]
    assert [type(m) for m in tanh.net.layers][1::2] == [torch.nn.Tanh, torch.nn.Tanh]
    y, z = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    l1, l2, l3 = tanh.net.linears()
    expected = l3(torch.tanh(l2(torch.tanh(l1(torch.cat([y, z], dim=-1))))))
    torch.testing.assert_close(tanh(torch.tensor(0.0), y, z), expected, rtol=1e-12, atol=1e-12)
    cell = ODECell(tanh, OdeintIntegrator("dopri5", rtol=1e-10, atol=1e-12), 3, 2, 2)
    y_check = y[:2].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda y: cell(y, z[:2]), (y_check,), atol=1e-6, rtol=1e-5)
    with pytest.raises(TypeError, match=r"activation: expected a factory called with no arguments"):
        MLPField(3, 2, 8, 2, activation=torch.tanh)  # type: ignore[arg-type]


def test_constructor_errors() -> None:
    field = MLPField(3, 2, 4, 2)
    with pytest.raises(ValueError, match="n_substeps: expected an int >= 1, got 0"):
        ResidualCell(field, 3, 2, 0)
    with pytest.raises(TypeError, match="n_substeps"):
        ResidualCell(field, 3, 2, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state_size"):
        ResidualCell(field, 0, 2)
    with pytest.raises(ValueError, match="cond_size"):
        ResidualCell(field, 3, -1)
    with pytest.raises(TypeError, match="integrator: expected an Integrator"):
        ODECell(field, "rk4", 3, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cond_size: a GRUCell needs an input"):
        GRUCell(3, 0)
    with pytest.raises(ValueError, match="cond_size: expected an int >= 0, got -1"):
        MLPField(3, -1, 4, 2)
    with pytest.raises(TypeError, match=r"cond_size: expected an int >= 0, got float 1\.5"):
        MLPField(3, 1.5, 4, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="state_size: expected an int >= 1, got float"):
        MLPField(3.0, 1, 4, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden_size: expected an int >= 1, got 0"):  # its own name, not the MLP's
        MLPField(3, 1, 0, 2)
    with pytest.raises(ValueError, match="n_layers: expected an int >= 1, got 0"):
        MLPField(3, 1, 4, 0)
    with pytest.raises(ValueError, match="hidden_size: expected an int >= 1, got 0"):  # MLPCell too
        MLPCell(3, 1, 0, 2)
    with pytest.raises(ValueError, match="n_layers: expected an int >= 1, got 0"):
        MLPCell(3, 1, 4, 0)
    not_a_field = torch.nn.Linear(5, 3)
    for make in (
        lambda f: ResidualCell(f, 3, 2),
        lambda f: ODECell(f, EulerIntegrator(), 3, 2),
    ):
        with pytest.raises(TypeError, match=r"field: expected a VectorField \(forward\(t, y, cond\) .* got Linear"):
            make(not_a_field)
        with pytest.raises(TypeError, match=r"field: expected a VectorField .* got function"):
            make(lambda t, y, z: y)


class _DiscreteCell(TransitionCell):
    """A discrete-time cell whose constructor passes a sub-step count on to the base class."""

    def __init__(self, n_substeps: int) -> None:
        super().__init__(3, 2, n_substeps)

    def _path(self, y: torch.Tensor, z: torch.Tensor, n_substeps: int, frame: int) -> CellPath:
        return CellPath(y[None], None)


def test_gru_cell_asks_for_a_condition_of_size_at_least_one() -> None:
    """GRUCell(3, -1) was told "cond_size: expected an int >= 0" (the base class's bound), then 0 was refused."""
    for bad in (-1, 0):
        with pytest.raises(
            ValueError, match=rf"^cond_size: a GRUCell needs an input of size >= 1 \(an int >= 1\), got {bad}$"
        ):
            GRUCell(3, bad)
    with pytest.raises(TypeError, match="cond_size: expected an int >= 0, got float"):
        GRUCell(3, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state_size: expected an int >= 1, got 0"):
        GRUCell(0, 2)


def test_hidden_size_is_an_int_even_when_unused() -> None:
    """With n_layers=1 MLPField took hidden_size="x" or -1 without a word while MLPCell refused 0; both now take
    any int >= 0 there (the width is unused) and refuse other kinds and negative ints."""
    for make in (lambda h, n: MLPField(3, 1, h, n), lambda h, n: MLPCell(3, 1, h, n)):
        for bad in ("x", 2.0, None, True):
            with pytest.raises(TypeError, match=r"hidden_size: expected an int"):
                make(bad, 1)
        with pytest.raises(ValueError, match=r"^hidden_size: expected an int >= 0 \(unused with n_layers=1\), got -1$"):
            make(-1, 1)
        with pytest.raises(ValueError, match=r"^hidden_size: expected an int >= 1, got 0$"):
            make(0, 2)
        for width in (0, 8):
            net = make(width, 1)
            assert sum(isinstance(m, torch.nn.Linear) for m in net.modules()) == 1


def _cells_for_dtypes() -> list[TransitionCell]:
    return [
        ResidualCell(MLPField(3, 2, 8, 2), 3, 2, 2),
        ODECell(MLPField(3, 2, 8, 2), EulerIntegrator(), 3, 2),
        MLPCell(3, 2, 8, 2),
        GRUCell(3, 2),
    ]


def test_path_refuses_inputs_of_dtypes_the_networks_refuse() -> None:
    """An integer y went through ResidualCell (promoted by the field's concatenation), and float64 y or z met
    float32 weights as torch's "mat1 and mat2 must have the same dtype": each is named now."""
    y, z = torch.randn(4, 3), torch.randn(4, 2)
    for cell in _cells_for_dtypes():
        name = type(cell).__name__
        for call in (cell.path, cell):
            with pytest.raises(TypeError, match=r"^y: expected a floating-point tensor, got dtype torch\.int64$"):
                call(y.long(), z)
            with pytest.raises(TypeError, match=r"^z: expected a floating-point tensor, got dtype torch\.int64$"):
                call(y, z.long())
            with pytest.raises(
                TypeError, match=r"^y: expected the dtype of the cell's parameters, torch\.float32, got torch\.float64"
            ):
                call(y.double(), z.double())
            with pytest.raises(
                TypeError,
                match=r"^z: expected torch\.float32 or a lower precision \(y is torch\.float32\), got "
                r"torch\.float64",
            ):
                call(y, z.double())
        double = cell.double()
        assert double.path(y.double(), z.double()).states.dtype == torch.float64, name
        with pytest.raises(TypeError, match=r"^y: expected the dtype of the cell's parameters, torch\.float64"):
            double.path(y, z)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # float64 parameters: autocast leaves them alone
            double.path(y.double(), z.double())


def test_path_keeps_taking_a_condition_of_lower_precision() -> None:
    """The rollout feeds lower-precision posterior draws to the cell (promoted by the concatenation): the
    cell's own check lets them through too, with the same result as the promoted condition."""
    y, z = torch.randn(4, 3), torch.randn(4, 2).half()
    for cell in _cells_for_dtypes()[:3]:
        assert torch.equal(cell.path(y, z).states, cell.path(y, z.float()).states)


class _CastingField(VectorField):
    """A float32 network that integrates a state of any dtype (cast in, cast back): a field of one's own."""

    def __init__(self) -> None:
        super().__init__()
        self.net = MLPField(3, 2, 8, 2)

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(t.float(), y.float(), cond.float()).to(y.dtype)


def test_a_field_of_ones_own_may_cast_its_inputs() -> None:
    """Review of the dtype checks: a float32 field that casts inside, to integrate a float64 state (a tight
    tolerance), worked through the cells and integrators, and must keep working; the strict dtype rule is for
    latentdyn's and torch's own layers, which compute in their parameters' dtype."""
    y, z = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    field = _CastingField()
    for cell in (ResidualCell(field, 3, 2), ODECell(field, EulerIntegrator(), 3, 2)):
        assert cell.path(y, z).states.dtype == torch.float64
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert EulerIntegrator()(field, y, ts, z).dtype == torch.float64
    with pytest.raises(TypeError, match=r"^y0: expected the dtype of the field's parameters, torch\.float32"):
        EulerIntegrator()(MLPField(3, 2, 8, 2), y, ts, z)  # latentdyn's own field: refused, named


def test_a_gru_cell_takes_z_in_the_dtype_of_y() -> None:
    """Review of the dtype checks: nn.GRUCell does not promote its input, so a lower-precision z passed the
    check and failed inside torch."""
    cell, y, z = GRUCell(3, 2), torch.randn(4, 3), torch.randn(4, 2)
    with pytest.raises(TypeError, match=r"^z: expected the dtype of y, torch\.float32 \(nn\.GRUCell does not "):
        cell.path(y, z.half())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts both
        assert cell.path(y, z.bfloat16()).states.shape == (1, 4, 3)


def test_cells_run_on_the_meta_device() -> None:
    """Review of the dtype checks: a shape-only dry run on the meta device failed asking autocast about "meta"."""
    y, z = torch.empty(4, 3, device="meta"), torch.empty(4, 2, device="meta")
    for cell in (MLPCell(3, 2, 8, 2), ResidualCell(MLPField(3, 2, 8, 2), 3, 2), GRUCell(3, 2)):
        assert cell.to("meta").path(y, z).states.shape == (1, 4, 3)


def test_path_under_autocast_refuses_only_float64_inputs() -> None:
    cell = ResidualCell(MLPField(3, 2, 8, 2), 3, 2)
    y, z = torch.randn(4, 3), torch.randn(4, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cell.path(y, z).states.shape == (1, 4, 3)
        assert cell.path(y.bfloat16(), z.bfloat16()).states.shape == (1, 4, 3)
        with pytest.raises(TypeError, match=r"^y: expected float32 or a lower precision under torch\.autocast"):
            cell.path(y.double(), z)
        with pytest.raises(TypeError, match=r"^z: expected torch\.float32 or a lower precision"):
            cell.path(y, z.double())


def test_forward_flags_are_bools() -> None:
    """return_path="False" returned the CellPath (a non-empty string is truthy); check=0 skipped the checks."""
    cell = ResidualCell(MLPField(3, 2, 8, 2), 3, 2)
    y, z = torch.randn(4, 3), torch.randn(4, 2)
    with pytest.raises(TypeError, match=r"^return_path: expected a bool \(True: return the whole CellPath\), got str"):
        cell(y, z, return_path="False")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"^check: expected a bool .*got int 0$"):
        cell(y, z, check=0)  # type: ignore[call-overload]
    import numpy as np

    assert isinstance(cell(y, z, return_path=np.bool_(True)), CellPath)  # type: ignore[call-overload]
    assert torch.equal(cell(y, z, check=False), cell(y, z))


def test_discrete_cells_refuse_substeps_in_constructor_default() -> None:
    """A default of n > 1 sub-steps is refused when the cell is built, not at its first rollout."""
    with pytest.raises(
        ValueError, match="n_substeps: _DiscreteCell is a discrete-time cell and takes exactly 1 step per frame, got 3"
    ):
        _DiscreteCell(3)
    with pytest.raises(TypeError, match="n_substeps: expected an int >= 1"):
        _DiscreteCell(1.0)  # type: ignore[arg-type]
    assert _DiscreteCell(1).n_substeps == 1
    cell = MLPCell(3, 2, 4, 2)
    assert cell.n_substeps == 1 and cell.check_substeps(None) == 1
    with pytest.raises(ValueError, match="n_substeps: MLPCell is a discrete-time cell"):
        cell.check_substeps(3)
    # The built-in discrete cells take no sub-step count at all.
    with pytest.raises(TypeError, match="n_substeps"):
        MLPCell(3, 2, 4, 2, n_substeps=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="n_substeps"):
        GRUCell(3, 2, n_substeps=3)  # type: ignore[call-arg]


def test_path_takes_an_integer_frame() -> None:
    cell = ResidualCell(MLPField(3, 2, 4, 2), 3, 2, 2)
    y, z = torch.randn(2, 3), torch.randn(2, 2)
    for bad in (0.5, True, 1.0):
        with pytest.raises(TypeError, match=f"frame: expected an int, got {type(bad).__name__}"):
            cell.path(y, z, frame=bad)  # type: ignore[arg-type]


class _Increments(TransitionCell):
    """y + z·W, reporting its increment; ``has_residuals`` is left to each test."""

    def __init__(self) -> None:
        super().__init__(3, 2)
        self.w = torch.nn.Linear(2, 3)

    def _path(self, y: torch.Tensor, z: torch.Tensor, n_substeps: int, frame: int) -> CellPath:
        step = self.w(z)
        return CellPath((y + step)[None], step[None])


def test_residuals_must_agree_with_has_residuals() -> None:
    """A cell that returns residuals without saying so (or the reverse) is a TypeError in path and rollout:
    a rollout of no transition relies on the attribute to report empty residuals or None."""
    from latentdyn.ssm import LatentSSM

    cell = _Increments()
    y, z = torch.randn(4, 3), torch.randn(4, 2)
    message = (
        r"cell: _Increments\._path returned residuals=a tensor, but _Increments\.has_residuals is False; "
        r"set the class attribute has_residuals = True"
    )
    with pytest.raises(TypeError, match=message):
        cell.path(y, z)
    with pytest.raises(TypeError, match=message):
        LatentSSM(cell).rollout(y, 3, posterior=diag_gaussian(torch.zeros(2, 4, 2), torch.ones(2, 4, 2)))
    cell.has_residuals = True
    assert cell.path(y, z).residuals is not None
    r = LatentSSM(cell).rollout(y, 1)
    assert r.residuals is not None and r.residuals.shape == (0, 4, 3)

    class Quiet(MLPCell):
        has_residuals = True

    with pytest.raises(TypeError, match=r"Quiet\._path returned residuals=None, but Quiet\.has_residuals is True"):
        Quiet(3, 2, 4, 2).path(y, z)


class _Shaped(TransitionCell):
    """Returns what it is told to, to break the (n, B, Dy) contract of _path on purpose."""

    supports_substeps = True
    has_residuals = True

    def __init__(self, make: Callable[[torch.Tensor, int], object]) -> None:
        super().__init__(3, 2)
        self.make = make

    def _path(self, y: torch.Tensor, z: torch.Tensor, n_substeps: int, frame: int) -> CellPath:
        return self.make(y, n_substeps)  # type: ignore[return-value]


def test_path_shapes_are_checked() -> None:
    """A _path that ignores n (one state for n = 2) gave a rollout whose states were every other frame, and
    residuals of (B, Dy) were concatenated into a wrong (T·B, Dy); both are now named in path and rollout."""
    from latentdyn.ssm import LatentSSM

    y = torch.randn(4, 3)
    z = torch.randn(4, 2)
    post = diag_gaussian(torch.zeros(4, 4, 2), torch.ones(4, 4, 2))
    cases = [
        (lambda y, n: CellPath(y[None] + 1, y[None]), "states of shape [1, 4, 3], expected (n, B, Dy) = [2, 4, 3]"),
        (lambda y, n: CellPath(y.expand(n, -1, -1), y), "residuals of shape [4, 3], expected (n, B, Dy) = [2, 4, 3]"),
        (lambda y, n: CellPath(y, y), "states of shape [4, 3], expected (n, B, Dy) = [2, 4, 3]"),
    ]
    for make, message in cases:
        cell = _Shaped(make)
        with pytest.raises(ValueError, match=re.escape(f"cell: _Shaped._path returned {message}")):
            cell.path(y, z, n_substeps=2)
        with pytest.raises(ValueError, match=re.escape(f"cell: _Shaped._path returned {message}")):
            LatentSSM(cell).rollout(y, 5, posterior=post, n_substeps=2)
    with pytest.raises(TypeError, match=r"_Shaped\._path must return a CellPath\(states, residuals\), got Tensor"):
        _Shaped(lambda y, n: y[None]).path(y, z)
    good = _Shaped(lambda y, n: CellPath(y.expand(n, -1, -1), torch.zeros(n, *y.shape)))
    assert LatentSSM(good).rollout(y, 5, posterior=post, n_substeps=2).states.shape == (5, 4, 3)


class _RecordingField(VectorField):
    """(1 + sin(t)/2)·inner, recording the time of every evaluation as a Python float."""

    def __init__(self, inner: VectorField) -> None:
        super().__init__()
        self.inner = inner
        self.times: list[float] = []

    def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.times.append(float(t))
        return (1.0 + 0.5 * torch.sin(t)) * self.inner(t, y, cond)


@pytest.mark.parametrize(("dtype", "frame"), [(torch.bfloat16, 100), (torch.float32, 100_000)])
def test_substep_times_stay_exact_at_large_frames(dtype: torch.dtype, frame: int) -> None:
    """In bfloat16 the grid of frame 100 with n = 3 rounds to [100, 100.5, 100.5, 101] (a zero-length step),
    in float32 frame 1e5 loses the thirds: the cells keep times in float64 whatever the state's dtype."""
    n = 3
    with seeded(0):
        field = _RecordingField(LinearField(rotation_decay_matrix(), torch.randn(3, 2, dtype=torch.float64)))
    field = field.to(dtype)
    g = torch.Generator().manual_seed(0)
    y = torch.randn(4, 3, generator=g).to(dtype)
    z = torch.randn(4, 2, generator=g).to(dtype)
    exact = [(frame * n + j) / n for j in range(n)]  # Python floats from integers
    cells = {
        "residual": ResidualCell(field, 3, 2, n),
        "euler-ref": ODECell(field, EulerIntegrator(), 3, 2, n),
        "euler": ODECell(field, OdeintIntegrator("euler"), 3, 2, n),
    }
    states = {}
    for name, cell in cells.items():
        field.times.clear()
        states[name] = cell.path(y, z, frame=frame).states
        assert states[name].dtype == dtype
        if name == "euler":
            # torchdiffeq casts the times it passes to the field to the state's dtype: the cell hands it the
            # local grid j/n, so the rounding is that of j/n (not of frame + j/n), then adds the frame in float64.
            local_rounding = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-23
            assert field.times == pytest.approx(exact, abs=local_rounding, rel=0)
        else:
            assert field.times == exact, name
    # The three Euler cells agree to the state's rounding (a zero-length step would be off by about Δt·f).
    ref = states["residual"].double()
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    for name in ("euler-ref", "euler"):
        torch.testing.assert_close(states[name].double(), ref, rtol=tol, atol=tol, msg=name)


def test_local_times_are_float64_on_the_state_device() -> None:
    from latentdyn.cells.base import local_times

    ts = local_times(100, 3, torch.zeros(2, 3, dtype=torch.bfloat16))
    assert ts.dtype == torch.float64 and ts.device == torch.device("cpu")
    assert ts.tolist() == [100.0, 100 + 1 / 3, 100 + 2 / 3, 101.0]


def test_substep_time_is_the_local_grid_entry_bit_for_bit() -> None:
    """ResidualCell builds each sub-step time alone (cheaper than the grid per frame): the same float64 values,
    so time-dependent fields see exactly the times they saw when the grid was built."""
    from latentdyn.cells.base import local_times, substep_time

    like = torch.zeros(2, 3, dtype=torch.bfloat16)
    for n in (1, 2, 3, 5, 6, 7, 10):
        for frame in (-7, 0, 1, 99, 12345, 10**9 + 7):
            grid = local_times(frame, n, like)
            singles = torch.stack([substep_time(frame, j, n, like) for j in range(n + 1)])
            assert singles.dtype == torch.float64 and singles.shape == (n + 1,)
            assert torch.equal(singles, grid), (frame, n)


def test_ode_cell_rollout_reads_no_values_back_to_the_host() -> None:
    """ODECell builds a valid grid itself every frame and calls the integrator's unchecked method: the
    public checks of ``ts`` read values (a device sync per frame on a GPU)."""
    from contracts import HostReads

    from latentdyn.distributions import ConditionalGaussianPrior
    from latentdyn.nn import MLP
    from latentdyn.ssm import LatentSSM

    with seeded(0):
        cell = ODECell(TimeModulatedField(MLPField(3, 2, 8, 2)), EulerIntegrator(), 3, 2, 3)
        ssm = LatentSSM(cell, ConditionalGaussianPrior(MLP(3, 8, 4, 2)))
    y0 = torch.randn(4, 3)
    posterior = diag_gaussian(torch.zeros(2, 4, 2), torch.ones(2, 4, 2), validate_args=False)
    ssm.rollout(y0, 6, posterior=posterior)  # warm-up
    spy = HostReads()
    with spy:
        roll = ssm.rollout(y0, 6, posterior=posterior)
        roll.states.sum().backward()
    assert spy.seen == [], spy.seen


def test_a_field_declares_its_sizes_as_attributes_of_vector_field() -> None:
    """The cells and integrators read ``state_size``/``cond_size`` off any VectorField (None: not declared)."""
    from latentdyn.fields import VectorField, check_field_sizes

    class Plain(VectorField):
        def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            return -y

    plain = Plain()
    assert plain.state_size is None and plain.cond_size is None
    check_field_sizes(plain, {"state_size": 3, "cond_size": 2}, "the cell's")  # nothing declared: nothing to check
    plain.state_size = 4
    with pytest.raises(ValueError, match=r"^field: its state_size is 4, the cell's state_size is 3; build both"):
        check_field_sizes(plain, {"state_size": 3, "cond_size": 2}, "the cell's")
    with pytest.raises(ValueError, match=r"field: its state_size is 4, the cell's state_size is 3"):
        ResidualCell(plain, 3, 2)


def test_a_rollout_of_a_single_transition_checks_the_cells_path() -> None:
    """The rollout checks the path of its first transition: a two-frame rollout has only that one."""
    from latentdyn.ssm import LatentSSM

    class OneState(TransitionCell):
        supports_substeps = True
        has_residuals = True

        def __init__(self) -> None:
            super().__init__(3, 2)

        def _path(self, y: torch.Tensor, z: torch.Tensor, n_substeps: int, frame: int) -> CellPath:
            return CellPath(y[None] + 1, y[None])  # one state whatever n

    y = torch.randn(4, 3)
    post = diag_gaussian(torch.zeros(1, 4, 2), torch.ones(1, 4, 2))
    message = "cell: OneState._path returned states of shape [1, 4, 3], expected (n, B, Dy) = [2, 4, 3]"
    with pytest.raises(ValueError, match=re.escape(message)):
        LatentSSM(OneState()).rollout(y, 2, posterior=post, n_substeps=2)
