"""Contract tests shared by every implementation of a base class (nflows style).

A test module subclasses a contract once per implementation and says how to build it; pytest collects the
subclasses (named ``Test*``), so every implementation runs every check below. The contracts only assert
properties that hold for any correct implementation; implementation-specific values live in the test modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from problems import LinearField, SmoothField, linear_solution, rotation_decay_matrix
from strategies import Dims, batch_sizes, dims, dtypes, state_sizes
from torch.utils._python_dispatch import TorchDispatchMode

from latentdyn.cells import TransitionCell
from latentdyn.fields import VectorField
from latentdyn.integrators import Integrator

__all__ = ["CellContract", "HostReads", "IntegratorContract", "seeded"]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the global torch RNG inside the block only (module constructors draw from it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class HostReads(TorchDispatchMode):
    """Records the ops that read tensor values back to the host, build tensors from host data or move them
    between devices: on a GPU each is a device synchronisation (``.item()``, ``bool(t)``, argument
    validation, ``torch.tensor(...)``, ``t.to(device)`` of a tensor made on the host)."""

    OPS = ("aten._local_scalar_dense", "aten.is_nonzero", "aten.lift_fresh", "aten.nonzero", "aten.masked_select")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if str(func).startswith(self.OPS) or (str(func).startswith("aten._to_copy") and "device" in kwargs):
            self.seen.append(str(func))
        return func(*args, **kwargs)


# Every subclass runs the same hypothesis test function: that is the point of a contract, not a flaw.
_contract = settings(suppress_health_check=[HealthCheck.differing_executors])


def _randn(*shape: int, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


def _tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol) for comparing two computations of the same value in ``dtype``."""
    return (1e-5, 1e-5) if dtype == torch.float32 else (1e-10, 1e-12)


class CellContract:
    """Contract of :class:`~latentdyn.cells.TransitionCell`: (B, Dy), (B, Dz) → (B, Dy) with a sub-step path.

    Subclasses define :meth:`make_cell` and the class attributes below.
    """

    #: Whether the cell takes several sub-steps per frame.
    supports_substeps: bool = True
    #: Whether ``path`` reports residuals (increments) rather than ``None``.
    has_residuals: bool = True
    #: Smallest conditioning size the cell accepts.
    min_cond: int = 0

    def make_cell(self, state_size: int, cond_size: int, n_substeps: int) -> TransitionCell:
        """A fresh cell (float32 parameters from the global RNG)."""
        raise NotImplementedError

    def build(self, d: Dims) -> TransitionCell:
        with seeded(d.seed):
            cell = self.make_cell(d.state, d.cond, d.n_substeps if self.supports_substeps else 1)
        return cell.to(d.dtype)

    def inputs(self, d: Dims) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(d.seed + 1)
        return _randn(d.batch, d.state, dtype=d.dtype, generator=g), _randn(d.batch, d.cond, dtype=d.dtype, generator=g)

    @_contract
    @given(data=st.data())
    def test_shapes_dtype_finite(self, data: st.DataObject) -> None:
        d = data.draw(dims(min_cond=self.min_cond, substeps=self.supports_substeps))
        cell = self.build(d)
        y, z = self.inputs(d)
        out = cell(y, z)
        assert out.shape == (d.batch, d.state)
        assert out.dtype == d.dtype
        assert torch.isfinite(out).all()
        path = cell.path(y, z)
        assert path.states.shape == (d.n_substeps, d.batch, d.state)
        assert path.states.dtype == d.dtype
        assert torch.equal(path.states[-1], out)

    @_contract
    @given(data=st.data())
    def test_residuals_are_increments(self, data: st.DataObject) -> None:
        d = data.draw(dims(min_cond=self.min_cond, substeps=self.supports_substeps))
        cell = self.build(d)
        y, z = self.inputs(d)
        path = cell.path(y, z)
        assert cell.has_residuals == self.has_residuals  # what a rollout of no transition relies on
        if not self.has_residuals:
            assert path.residuals is None
            return
        assert path.residuals is not None
        assert path.residuals.shape == path.states.shape
        assert path.residuals.dtype == d.dtype
        previous = torch.cat([y[None], path.states[:-1]])
        rtol, atol = _tolerances(d.dtype)
        torch.testing.assert_close(previous + path.residuals, path.states, rtol=rtol, atol=atol)

    @_contract
    @given(data=st.data())
    def test_gradients_reach_every_parameter(self, data: st.DataObject) -> None:
        d = data.draw(dims(min_cond=max(self.min_cond, 1), substeps=self.supports_substeps))
        d = d._replace(batch=4)
        cell = self.build(d)
        y, z = self.inputs(d)
        y.requires_grad_(True)
        z.requires_grad_(True)
        cell(y, z).square().sum().backward()
        for name, p in cell.named_parameters():
            assert p.grad is not None, f"no gradient reached {name}"
            assert p.grad.dtype == d.dtype
            assert torch.isfinite(p.grad).all(), name
            if p.numel():
                assert p.grad.abs().sum() > 0, f"zero gradient for {name}"
        for name, x in (("y", y), ("z", z)):
            assert x.grad is not None and x.grad.abs().sum() > 0, f"no gradient reached {name}"

    @_contract
    @given(n=st.integers(min_value=1, max_value=8), seed=st.integers(0, 100))
    def test_path_takes_n_substeps(self, n: int, seed: int) -> None:
        d = Dims(batch=2, state=3, cond=max(self.min_cond, 2), n_substeps=1, dtype=torch.float64, seed=seed)
        cell = self.build(d)
        y, z = self.inputs(d)
        if self.supports_substeps:
            assert cell.path(y, z, n_substeps=n).states.shape == (n, 2, 3)
        elif n > 1:
            with pytest.raises(ValueError, match="n_substeps"):
                cell.path(y, z, n_substeps=n)

    def test_bad_substeps(self) -> None:
        cell = self.build(Dims(2, 3, max(self.min_cond, 2), 1, torch.float32, 0))
        y, z = self.inputs(Dims(2, 3, max(self.min_cond, 2), 1, torch.float32, 0))
        with pytest.raises(ValueError, match="n_substeps"):
            cell.path(y, z, n_substeps=0)
        with pytest.raises(TypeError, match="n_substeps"):
            cell.path(y, z, n_substeps=2.0)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="n_substeps"):
            cell.path(y, z, n_substeps=True)

    def test_bad_inputs(self) -> None:
        dz = max(self.min_cond, 2)
        d = Dims(3, 4, dz, 1, torch.float32, 0)
        cell = self.build(d)
        y, z = self.inputs(d)
        with pytest.raises(ValueError, match="y: expected 2 dimensions"):
            cell(y[0], z)
        with pytest.raises(ValueError, match="y: expected size 4"):
            cell(y[:, :3], z)
        with pytest.raises(ValueError, match="z: expected size 3 for axis 'b'"):
            cell(y, z[:2])
        with pytest.raises(ValueError, match=f"z: expected size {dz} for axis 'dz'"):
            cell(y, torch.cat([z, z], dim=-1))
        with pytest.raises(ValueError, match="z: expected 2 dimensions"):
            cell(y, z[None])
        with pytest.raises(TypeError, match=r"y: expected a torch\.Tensor"):
            cell(y.tolist(), z)


class IntegratorContract:
    """Contract of :class:`~latentdyn.integrators.Integrator`: (field, y0, ts, cond) → (S, B, Dy), out[0] = y0.

    Subclasses define :meth:`make_integrator` and ``linear_tol``, a bound on the max error on the linear test
    problem over [0, 1] with a grid of step 1/10 (a bound from the method's order, not a measured value).
    """

    linear_tol: float = 0.0

    def make_integrator(self, dtype: torch.dtype) -> Integrator:
        raise NotImplementedError

    @staticmethod
    def field(state: int, cond: int, seed: int, dtype: torch.dtype) -> VectorField:
        return SmoothField(state, cond, 6, generator=torch.Generator().manual_seed(seed)).to(dtype)

    @_contract
    @given(
        b=batch_sizes,
        dy=state_sizes,
        dz=st.integers(0, 3),
        s=st.integers(2, 6),
        dtype=dtypes,
        seed=st.integers(0, 2**16),
    )
    def test_shapes_dtype_finite(self, b: int, dy: int, dz: int, s: int, dtype: torch.dtype, seed: int) -> None:
        field = self.field(dy, dz, seed, dtype)
        g = torch.Generator().manual_seed(seed + 1)
        y0 = _randn(b, dy, dtype=dtype, generator=g)
        cond = _randn(b, dz, dtype=dtype, generator=g)
        ts = (torch.arange(s, dtype=torch.float64) / (s - 1)).to(dtype)
        out = self.make_integrator(dtype)(field, y0, ts, cond)
        assert out.shape == (s, b, dy)
        assert out.dtype == dtype
        assert torch.isfinite(out).all()
        assert torch.equal(out[0], y0)

    @_contract
    @given(dtype=dtypes, seed=st.integers(0, 2**16))
    def test_gradients_reach_every_parameter(self, dtype: torch.dtype, seed: int) -> None:
        field = self.field(3, 2, seed, dtype)
        g = torch.Generator().manual_seed(seed + 1)
        y0 = _randn(4, 3, dtype=dtype, generator=g).requires_grad_(True)
        cond = _randn(4, 2, dtype=dtype, generator=g).requires_grad_(True)
        ts = torch.tensor([0.0, 0.5, 1.0], dtype=dtype)
        self.make_integrator(dtype)(field, y0, ts, cond)[1:].square().sum().backward()
        for name, p in field.named_parameters():
            assert p.grad is not None and p.grad.dtype == dtype, name
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        for name, x in (("y0", y0), ("cond", cond)):
            assert x.grad is not None and x.grad.abs().sum() > 0, f"no gradient reached {name}"

    @pytest.mark.parametrize("dz", [0, 2])
    def test_linear_problem_accuracy(self, dz: int) -> None:
        g = torch.Generator().manual_seed(3)
        a = rotation_decay_matrix()
        c = torch.randn(3, dz, generator=g, dtype=torch.float64)
        field = LinearField(a, c)
        y0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
        cond = torch.randn(2, dz, generator=g, dtype=torch.float64)
        ts = torch.arange(11, dtype=torch.float64) / 10
        with torch.no_grad():
            out = self.make_integrator(torch.float64)(field, y0, ts, cond)
        exact = linear_solution(a, c, y0, cond, ts)
        err = (out - exact).abs().max().item()
        assert err < self.linear_tol, err

    def test_single_time_returns_y0(self) -> None:
        field = self.field(3, 2, 0, torch.float64)
        y0, cond = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
        out = self.make_integrator(torch.float64)(field, y0, torch.zeros(1, dtype=torch.float64), cond)
        assert out.shape == (1, 4, 3) and torch.equal(out[0], y0)

    def test_checks_its_arguments(self) -> None:
        """One check in the base class, before any work: kinds, shapes, and times that strictly increase."""
        integrator = self.make_integrator(torch.float64)
        field = self.field(3, 2, 0, torch.float64)
        y0, cond = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
        ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        with pytest.raises(TypeError, match=r"ts: expected a torch\.Tensor, got list"):
            integrator(field, y0, [0.0, 0.5, 1.0], cond)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"ts: expected a floating-point tensor of times, got dtype torch\.int64"):
            integrator(field, y0, torch.arange(3), cond)
        with pytest.raises(ValueError, match=r"ts: expected a 1-D tensor of S >= 1 times, got shape \[1, 3\]"):
            integrator(field, y0, ts[None], cond)
        with pytest.raises(ValueError, match=r"ts: expected a 1-D tensor of S >= 1 times, got shape \[\]"):
            integrator(field, y0, ts[0], cond)
        with pytest.raises(ValueError, match=r"ts: expected a 1-D tensor of S >= 1 times, got shape \[0\]"):
            integrator(field, y0, ts[:0], cond)
        for bad in ([1.0, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 1.0, 0.5]):
            with pytest.raises(ValueError, match=r"ts: expected strictly increasing times, got \["):
                integrator(field, y0, torch.tensor(bad, dtype=torch.float64), cond)
        for bad_time in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match="ts: expected finite times"):
                integrator(field, y0, torch.tensor([0.0, 0.5, bad_time], dtype=torch.float64), cond)
        with pytest.raises(ValueError, match=r"y0: expected 2 dimensions \(b dy\)"):
            integrator(field, y0[0], ts, cond)
        with pytest.raises(TypeError, match=r"y0: expected a floating-point tensor, got dtype torch\.int64"):
            integrator(field, y0.long(), ts, cond)
        with pytest.raises(ValueError, match=r"cond: expected size 4 for axis 'b'"):
            integrator(field, y0, ts, cond[:2])
        with pytest.raises(ValueError, match=r"cond: expected 2 dimensions \(b dz\)"):
            integrator(field, y0, ts, cond[0])
        with pytest.raises(TypeError, match=r"cond: expected a torch\.Tensor"):
            integrator(field, y0, ts, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="field: expected a VectorField, got function"):
            integrator(lambda t, y, c: y, y0, ts, cond)  # type: ignore[arg-type]
