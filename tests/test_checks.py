"""Argument checks: what they accept, and that each refusal names the argument, the expectation and the value."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from latentdyn._checks import (
    check_choice,
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
