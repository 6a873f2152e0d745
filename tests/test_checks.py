"""Argument checks: what they accept, and that each refusal names the argument, the expectation and the value."""

from __future__ import annotations

import math
import os
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from latentdyn._checks import (
    check_bool,
    check_choice,
    check_float_tensor,
    check_int,
    check_positive_int,
    check_shape,
    check_tensor,
    substeps_from_dt,
)


def test_check_tensor() -> None:
    x = torch.zeros(2)
    assert check_tensor(x, "x") is x
    with pytest.raises(TypeError, match=r"codes: expected a torch\.Tensor, got list"):
        check_tensor([1.0], "codes")


def test_check_shape_returns_named_sizes() -> None:
    x = torch.zeros(2, 3, 4)
    assert check_shape(x, "t b d", "x") == {"t": 2, "b": 3, "d": 4}
    assert check_shape(x, "t _ d", "x", d=4) == {"t": 2, "d": 4}
    assert check_shape(x, "... d", "x") == {"d": 4}
    assert check_shape(torch.zeros(4), "... d", "x") == {"d": 4}
    assert check_shape(torch.zeros(3, 3), "d d", "x") == {"d": 3}


def test_check_shape_errors() -> None:
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"y0: expected 2 dimensions \(b dy\), got 3 with shape \[2, 3, 4\]"):
        check_shape(x, "b dy", "y0")
    with pytest.raises(ValueError, match=r"z: expected size 5 for axis 'd' of \(t b d\), got shape \[2, 3, 4\]"):
        check_shape(x, "t b d", "z", d=5)
    with pytest.raises(ValueError, match=r"x: axes named 'd' in \(d d\) must agree, got sizes 2 and 3"):
        check_shape(torch.zeros(2, 3), "d d", "x")
    with pytest.raises(ValueError, match=r"x: expected at least 2 dimensions \(\.\.\. c d\)"):
        check_shape(torch.zeros(4), "... c d", "x")
    with pytest.raises(TypeError, match=r"x: expected a torch\.Tensor"):
        check_shape((2, 3), "b d", "x")
    with pytest.raises(KeyError, match="internal"):
        check_shape(x, "t b d", "x", q=1)


def test_check_shape_says_one_dimension_in_the_singular() -> None:
    with pytest.raises(ValueError, match=r"^nll: expected 1 dimension \(b\), got 2 with shape \[1, 2\]$"):
        check_shape(torch.zeros(1, 2), "b", "nll")
    with pytest.raises(ValueError, match=r"^x: expected at least 1 dimension \(\.\.\. d\), got shape \[\]$"):
        check_shape(torch.zeros(()), "... d", "x")


def test_check_positive_int() -> None:
    assert check_positive_int(3, "n") == 3
    assert check_positive_int(0, "n", minimum=0) == 0
    with pytest.raises(ValueError, match="n_substeps: expected an int >= 1, got 0"):
        check_positive_int(0, "n_substeps")
    with pytest.raises(ValueError, match="cond_size: expected an int >= 0, got -1"):
        check_positive_int(-1, "cond_size", minimum=0)
    for bad in (True, 2.0, "2", None):
        with pytest.raises(TypeError, match="n_substeps: expected an int >= 1, got"):
            check_positive_int(bad, "n_substeps")


def test_check_int() -> None:
    assert check_int(0, "t0") == 0 and check_int(-3, "t0") == -3
    for bad in (True, 0.5, 2.0, "2", None):
        with pytest.raises(TypeError, match=f"t0: expected an int, got {type(bad).__name__}"):
            check_int(bad, "t0")


def test_check_choice() -> None:
    assert check_choice("b", "mode", ("a", "b")) == "b"
    assert check_choice("x", "mode", {"x": 1}) == "x"
    with pytest.raises(ValueError, match="mode: expected one of 'a', 'b', got 'c'"):
        check_choice("c", "mode", ("a", "b"))
    for bad in (1, None, b"a", ("a",)):
        with pytest.raises(TypeError, match=f"mode: expected one of 'a', 'b', got {type(bad).__name__}"):
            check_choice(bad, "mode", ("a", "b"))


@given(n=st.integers(1, 10_000))
def test_substeps_from_dt_inverts_one_over_n(n: int) -> None:
    assert substeps_from_dt(1 / n) == n
    assert substeps_from_dt(1.0 / float(n)) == n


def test_substeps_from_dt_plain_values() -> None:
    assert substeps_from_dt(1) == 1
    assert substeps_from_dt(0.5) == 2
    assert substeps_from_dt(0.25) == 4


@given(n=st.integers(1, 10_000))
def test_substeps_from_dt_takes_float32_reciprocals(n: int) -> None:
    """np.float32(1/3) (from a float32 array or config) is 1/3 to float32's precision: it was refused."""
    import numpy as np

    assert substeps_from_dt(np.float32(1 / n)) == n
    if n <= 64:  # float16 tells 1/n from 1/(n+1) only for small n
        assert substeps_from_dt(np.float16(1 / n)) == n


def test_substeps_from_dt_keeps_refusing_non_reciprocals_in_float32() -> None:
    import numpy as np

    for dt in (0.3, 0.4, 2 / 3, 0.15, 1 / 3 + 1e-6):
        with pytest.raises(ValueError, match=r"dt: expected 1/n for an integer n >= 1, got .*pass n_substeps=n"):
            substeps_from_dt(np.float32(dt))
    with pytest.raises(ValueError, match=r"dt: expected 1/n"):
        substeps_from_dt(1 / 3 + 1e-8)  # a Python float keeps the 1e-9 tolerance


def test_substeps_from_dt_documents_its_argument() -> None:
    doc = substeps_from_dt.__doc__ or ""
    assert "Args:\n        dt:" in doc and "Returns:" in doc


@pytest.mark.parametrize("dt", [0.3, 0.4, 2 / 3, 0.15, 1 / 3 + 1e-6])
def test_substeps_from_dt_rejects_non_reciprocals(dt: float) -> None:
    with pytest.raises(ValueError, match=r"dt: expected 1/n for an integer n >= 1, got .*pass n_substeps=n"):
        substeps_from_dt(dt)


@pytest.mark.parametrize("dt", [0.0, -0.5, 1.5, 2.0, math.nan, math.inf])
def test_substeps_from_dt_rejects_out_of_range(dt: float) -> None:
    with pytest.raises(ValueError, match="dt: expected 1/n for an integer n >= 1"):
        substeps_from_dt(dt)


@pytest.mark.parametrize("dt", [True, "0.5", None, torch.tensor(0.5)])
def test_substeps_from_dt_rejects_non_numbers(dt: object) -> None:
    with pytest.raises(TypeError, match="dt: expected a float 1/n"):
        substeps_from_dt(dt)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- real numbers and public boundaries
def test_numpy_scalars_are_real_numbers_but_bools_and_tensors_are_not() -> None:
    import numpy as np

    from latentdyn._checks import is_real

    for value in (1, 0.5, np.float32(0.5), np.float64(0.5), np.int64(3)):
        assert is_real(value), value
    for value in (True, np.bool_(True), torch.tensor(0.5), "0.5", None):
        assert not is_real(value), value
    assert substeps_from_dt(np.float32(0.25)) == 4  # what a numpy config or array element gives


def test_numpy_integers_are_ints_and_come_back_as_python_ints() -> None:
    """np.int64 counts (array elements, np.arange, pandas) were TypeErrors while np.float32 reals were accepted."""
    import numpy as np

    for value in (np.int64(3), np.int32(3), np.uint8(3)):
        for out in (check_int(value, "n"), check_positive_int(value, "n")):
            assert out == 3 and type(out) is int
    for value in (True, np.bool_(True), np.float64(3.0), torch.tensor(3), 3.0):
        with pytest.raises(TypeError, match=r"n: expected an int"):
            check_int(value, "n")
    with pytest.raises(ValueError, match=r"n: expected an int >= 1, got 0"):
        check_positive_int(np.int64(0), "n")


def test_numpy_integers_at_public_boundaries() -> None:
    import numpy as np

    from latentdyn import MLP, ConditionalGaussianPrior, DCGANEncoder, LatentSSM, MLPField, ResidualCell

    i = np.int64
    cell = ResidualCell(MLPField(i(3), i(2), i(8), i(2)), state_size=i(3), cond_size=i(2), n_substeps=i(2))
    ssm = LatentSSM(cell, ConditionalGaussianPrior(MLP(i(3), i(8), i(4), n_layers=i(2))))
    roll = ssm.rollout(torch.randn(4, 3), n_frames=i(5), t0=i(1), n_substeps=i(3))
    assert roll.states.shape == (5, 4, 3) and type(roll.t0) is int and type(roll.n_substeps) is int
    assert type(cell.n_substeps) is int
    assert DCGANEncoder(image_size=i(32), channels=1, base_width=4, code_size=8)(
        torch.rand(2, 1, 32, 32)
    ).code.shape == (
        2,
        8,
    )


def test_numpy_float32_std_is_a_scalar_std() -> None:
    import numpy as np

    from latentdyn import gaussian_nll

    x, mean = torch.rand(3, 2, 4), torch.rand(3, 2, 4)
    assert torch.equal(gaussian_nll(x, mean, np.float32(0.5)), gaussian_nll(x, mean, 0.5))


def test_odeint_integrator_options_are_checked() -> None:
    from latentdyn.integrators import OdeintIntegrator

    with pytest.raises(TypeError, match=r"adjoint: expected a bool, got str 'false'"):
        OdeintIntegrator("rk4", adjoint="false")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"rtol: expected a positive finite number, got -1.0"):
        OdeintIntegrator("dopri5", rtol=-1.0)
    with pytest.raises(TypeError, match=r"atol: expected a positive real number, got str '1e-3'"):
        OdeintIntegrator("dopri5", atol="1e-3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"options: expected a dict of solver options or None, got list"):
        OdeintIntegrator("rk4", options=[("step_size", 0.1)])  # type: ignore[arg-type]


def test_adaptive_solvers_refuse_what_a_16_bit_state_cannot_meet() -> None:
    """Below bfloat16's eps, dopri5 shrinks its step until it underflows (minutes of calls, then a wrong
    result); in float16 its error norm overflows for most tolerances ("underflow in dt 0.0"). A tolerance
    bfloat16 resolves, or a fixed-step method, works."""
    from latentdyn import ODECell, VectorField
    from latentdyn.integrators import OdeintIntegrator

    class Ones(VectorField):
        def forward(self, t: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            return torch.ones_like(y)

    def path(integrator: OdeintIntegrator, dtype: torch.dtype) -> torch.Tensor:
        y, z = torch.zeros(1, 2, dtype=dtype), torch.zeros(1, 1, dtype=dtype)
        return ODECell(Ones(), integrator, 2, 1, n_substeps=3).path(y, z).states[:, 0, 0].float()

    with pytest.raises(ValueError, match=r"rtol: 1e-07 is below the resolution of the torch\.bfloat16 state"):
        path(OdeintIntegrator("dopri5"), torch.bfloat16)
    with pytest.raises(ValueError, match=r"y0: the adaptive method 'bosh3' cannot step a float16 state"):
        path(OdeintIntegrator("bosh3", rtol=1e-2, atol=1e-3), torch.float16)
    exact = torch.tensor([1 / 3, 2 / 3, 1.0])
    eps = torch.finfo(torch.bfloat16).eps
    torch.testing.assert_close(path(OdeintIntegrator("dopri5", rtol=eps), torch.bfloat16), exact, rtol=eps, atol=0)
    for dtype in (torch.bfloat16, torch.float16):
        torch.testing.assert_close(path(OdeintIntegrator("rk4"), dtype), exact, rtol=torch.finfo(dtype).eps, atol=0)


def test_an_adaptive_solve_under_16_bit_autocast_needs_a_tolerance_it_resolves() -> None:
    """A float32 state whose field computes in bfloat16 (autocast, as in SRVP's --amp bf16 training): dopri5 at
    rtol 1e-7 took ~60x the field evaluations of a float32 solve (190 s per SM-MNIST training step), unrefused."""
    from latentdyn import MLPField, ODECell
    from latentdyn.integrators import OdeintIntegrator

    cell = ODECell(MLPField(2, 1, 8, 2), OdeintIntegrator("dopri5"), 2, 1)
    y, z = torch.ones(3, 2), torch.zeros(3, 1)
    cell.path(y, z)  # (float32 without autocast: the default tolerances)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(ValueError, match=r"rtol: 1e-07 is below the resolution of the field under autocast to"):
            cell.path(y, z)
        loose = ODECell(cell.field, OdeintIntegrator("dopri5", rtol=1e-2, atol=1e-3), 2, 1)
        assert loose.path(y, z).states.dtype == torch.float32
        with torch.autocast("cpu", enabled=False):
            cell.path(y, z)
        cell.double().path(y.double(), z.double())  # (autocast leaves float64 as it is: the field computes in it)


def test_a_field_of_other_sizes_than_its_cell_is_refused_when_built() -> None:
    from latentdyn import MLPField, ODECell, ResidualCell, by_name

    with pytest.raises(ValueError, match=r"field: its state_size is 3, the cell's state_size is 4"):
        ResidualCell(MLPField(3, 2, 8, 2), state_size=4, cond_size=2)
    with pytest.raises(ValueError, match=r"field: its cond_size is 2, the cell's cond_size is 1"):
        ODECell(MLPField(4, 2, 8, 2), by_name("rk4"), state_size=4, cond_size=1)


def test_rollout_and_standard_normal_arguments_are_checked() -> None:
    from latentdyn import MLP, ConditionalGaussianPrior, LatentSSM, MLPField, ResidualCell, StandardNormal

    ssm = LatentSSM(ResidualCell(MLPField(2, 1, 4, 2), 2, 1), ConditionalGaussianPrior(MLP(2, 4, 2, 2)))
    with pytest.raises(TypeError, match=r"y0: expected a floating-point tensor, got dtype torch\.int64"):
        ssm.rollout(torch.zeros(3, 2, dtype=torch.int64), 2)
    with pytest.raises(TypeError, match=r"sample: expected a bool, got str 'False'"):
        ssm.rollout(torch.zeros(3, 2), 2, sample="False")  # type: ignore[arg-type]
    prior = StandardNormal(2)
    assert prior(torch.Size([4, 3])).batch_shape == prior(4, 3).batch_shape == (4, 3)
    assert prior().batch_shape == ()
    with pytest.raises(ValueError, match=r"batch_shape\[1\]: expected an int >= 0, got -1"):
        prior(4, -1)
    with pytest.raises(TypeError, match=r"batch_shape\[0\]: expected an int >= 0, got float 2.0"):
        prior(2.0)  # type: ignore[arg-type]


def test_flags_must_be_bools() -> None:
    """bool(value) read the string "False" as True: a flag of another kind is a TypeError naming it."""
    from pathlib import Path

    import numpy as np

    from latentdyn._checks import check_bool
    from latentdyn.video.datasets import VideoFolderDataset
    from latentdyn.video.moving_mnist import MovingMNIST, compute_trajectory, make_test_set

    assert check_bool(True, "flag") is True and check_bool(np.bool_(False), "flag") is False
    for bad in ("False", 0, 1.0, None, torch.tensor(True)):
        with pytest.raises(TypeError, match=r"flag: expected a bool, got "):
            check_bool(bad, "flag")
    digits = np.zeros((4, 28, 28), dtype=np.uint8)
    with pytest.raises(TypeError, match=r"deterministic: expected a bool, got str 'False'"):
        MovingMNIST(digits, seq_len=3, deterministic="False")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"deterministic: expected a bool, got int 0"):
        compute_trajectory(0, 0, 1, 1, seq_len=3, limit=36, deterministic=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"deterministic: expected a bool, got str 'no'"):
        make_test_set(digits, np.zeros(4, dtype=np.int64), seq_len=3, deterministic="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"grayscale: expected a bool, got str 'False'"):
        VideoFolderDataset(Path(__file__).parent, seq_len=2, grayscale="False")  # type: ignore[arg-type]


def test_check_float_tensor() -> None:
    x = torch.zeros(2, dtype=torch.bfloat16)
    assert check_float_tensor(x, "x") is x
    for dtype in (torch.int64, torch.uint8, torch.bool, torch.complex64):
        with pytest.raises(TypeError, match=re.escape(f"raw: expected a floating-point tensor, got dtype {dtype}")):
            check_float_tensor(torch.zeros(2, dtype=dtype), "raw")
    with pytest.raises(TypeError, match=r"raw: expected a torch\.Tensor, got float"):
        check_float_tensor(1.0, "raw")


def test_check_bool_says_what_the_flag_means() -> None:
    import numpy as np

    assert check_bool(np.True_, "higher_is_better", "True for PSNR") is True
    with pytest.raises(TypeError, match=r"higher_is_better: expected a bool \(True for PSNR\), got int 1"):
        check_bool(1, "higher_is_better", "True for PSNR")


class _Own(torch.nn.Module):  # a class of one's own (this test module is not latentdyn's)
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)


def _networks() -> dict[str, torch.nn.Module]:
    from latentdyn import MLP, MLPField, ResidualCell

    shared = torch.nn.Linear(3, 3)
    tree = torch.nn.Sequential(shared, torch.nn.Tanh(), shared)  # one module twice
    tree.register_module("gone", None)  # a submodule set to None
    cyclic = torch.nn.Sequential(torch.nn.Linear(2, 2))
    cyclic.add_module("back", cyclic)
    mixed = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).double())
    counted = torch.nn.Embedding(4, 2)
    counted.register_parameter("steps", torch.nn.Parameter(torch.zeros(1, dtype=torch.long), requires_grad=False))
    return {
        "cell": ResidualCell(MLPField(4, 2, 8, 2), 4, 2),
        "double mlp": MLP(3, 4, 2, 2).double(),
        "shared and None": tree,
        "cycle": cyclic,
        "mixed dtypes": mixed,
        "integer parameter": counted,
        "no parameters": torch.nn.Tanh(),
        "user's class": _Own(),
        "user's class inside": torch.nn.Sequential(torch.nn.Linear(2, 2), _Own()),
        "bf16 linear": torch.nn.Linear(2, 2).to(torch.bfloat16),
    }


@pytest.mark.parametrize("name", list(_networks()))
def test_the_checks_one_walk_finds_what_modules_and_parameters_find(name: str) -> None:
    """The dtype checks of every cell and integrator call walk the module tree once, by its dicts (four times
    faster than modules() and parameters()); they must find what those find."""
    from latentdyn._checks import _float_dtypes, _own_float_dtypes, own_networks

    net = _networks()[name]
    own = all(type(m).__module__.startswith(("latentdyn.", "torch.nn.")) for m in net.modules())
    dtypes = {p.dtype for p in net.parameters() if p.is_floating_point()}
    assert own_networks(net) is own
    assert _own_float_dtypes(net) == (dtypes if own else None)
    assert _float_dtypes(net) == dtypes


def test_an_mlp_converted_after_a_call_checks_its_inputs_again() -> None:
    """The MLP remembers the input dtype it accepted (one compare per call): after .double() a float32 input is the
    documented TypeError, not torch's 'mat1 and mat2' error from a hint that no longer held."""
    from latentdyn import MLP

    mlp = MLP(3, 8, 2, 2)
    mlp(torch.randn(4, 3))
    mlp.double()
    with pytest.raises(TypeError, match=r"x: expected the dtype of the mlp's parameters, torch.float64, got "):
        mlp(torch.randn(4, 3))
    assert mlp(torch.randn(4, 3, dtype=torch.float64)).dtype == torch.float64


def test_warn_at_user_points_past_torch_wrappers_and_the_folders_given() -> None:
    """The line a warning names is the user's: past latentdyn's frames, the folders ``inside`` (an example's) and
    torch's own (``torch.no_grad`` wraps a decorated function in torch/utils/_contextlib.py, where the warning
    landed)."""
    from latentdyn._checks import warn_at_user

    here = os.path.dirname(os.path.abspath(__file__)) + os.sep

    @torch.no_grad()
    def library_call() -> None:
        warn_at_user("from the library", inside=(here,))

    user_line = compile("library_call()", "/somewhere/user_script.py", "exec")
    with pytest.warns(UserWarning, match="from the library") as caught:
        exec(user_line, {"library_call": library_call})
    assert [w.filename for w in caught] == ["/somewhere/user_script.py"]
