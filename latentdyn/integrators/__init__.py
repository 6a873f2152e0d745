"""Integrators: explicit Euler (reference) and any torchdiffeq method; ``by_name`` for command lines."""

from __future__ import annotations

from typing import Any, Literal, overload

from latentdyn._checks import check_choice
from latentdyn.integrators.base import Integrator
from latentdyn.integrators.euler import EulerIntegrator
from latentdyn.integrators.odeint import ODEINT_METHODS, OdeintIntegrator, OdeintName

__all__ = ["INTEGRATOR_NAMES", "EulerIntegrator", "Integrator", "OdeintIntegrator", "OdeintName", "by_name"]

INTEGRATOR_NAMES = ("euler-ref", *ODEINT_METHODS)
"""Names ``by_name`` accepts: ``"euler-ref"`` is latentdyn's own Euler, the rest are torchdiffeq's methods."""


@overload
def by_name(name: Literal["euler-ref"], **kwargs: Any) -> EulerIntegrator: ...
@overload
def by_name(name: OdeintName, **kwargs: Any) -> OdeintIntegrator: ...
@overload
def by_name(name: str, **kwargs: Any) -> Integrator: ...
def by_name(name: str, **kwargs: Any) -> Integrator:
    """Integrator from a command-line name.

    Args:
        name: ``"euler-ref"`` for :class:`EulerIntegrator`, or a torchdiffeq method name (``"euler"``,
            ``"rk4"``, ``"dopri5"``, ...) for :class:`OdeintIntegrator`.
        **kwargs: passed to :class:`OdeintIntegrator` (rtol, atol, options, adjoint).

    Returns:
        The integrator. A type checker sees the concrete class when ``name`` is a literal string
        (``by_name("rk4").method`` checks), and :class:`Integrator` for any other string.

    Raises:
        TypeError: ``name`` is not a string, or an option of the wrong kind (see :class:`OdeintIntegrator`).
        ValueError: an unknown name, options given to ``"euler-ref"``, or a bad option value.
    """
    check_choice(name, "name", INTEGRATOR_NAMES)
    if name == "euler-ref":
        if kwargs:
            raise ValueError(f"kwargs: EulerIntegrator takes no options, got {sorted(kwargs)}")
        return EulerIntegrator()
    return OdeintIntegrator(name, **kwargs)
