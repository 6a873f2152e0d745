"""Type checkers see ``module(...)`` with the signature of the module's ``forward``.

torch types ``nn.Module.__call__`` as ``(...) -> Any``, so without help ``prior(y)``, ``cell(y, z)`` or
``encoder(x)`` is ``Any`` to mypy and pyright. Each public module of latentdyn therefore declares, in an
``if TYPE_CHECKING:`` block of its class (or of the public base whose ``forward`` it keeps), a ``__call__`` stub
with exactly ``forward``'s parameters and return type. These tests find every such module from the public
``__all__`` lists, check that the stub and ``forward`` agree, and that mypy sees the precise types.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from torch import nn
from torch.distributions import Independent

import latentdyn

ROOT = Path(__file__).resolve().parents[1]


OWN = ("latentdyn.", "examples.srvp.")
"""The packages whose public modules declare their call: latentdyn, and the SRVP example's models."""


def _public_modules() -> list[types.ModuleType]:
    """latentdyn and each of its modules and packages without a leading underscore in its dotted name, and the
    SRVP example's model modules (users call a loaded SRVP or SVG-LP too)."""
    modules = [
        latentdyn,
        importlib.import_module("examples.srvp.model"),
        importlib.import_module("examples.srvp.svglp"),
    ]
    for info in pkgutil.walk_packages(latentdyn.__path__, prefix="latentdyn."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            modules.append(importlib.import_module(info.name))
    return modules


def _public_module_classes() -> list[type[nn.Module]]:
    """The nn.Module classes of latentdyn named in a public ``__all__`` whose ``forward`` is their call."""
    found: dict[str, type[nn.Module]] = {}
    for module in _public_modules():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if (
                inspect.isclass(obj)
                and issubclass(obj, nn.Module)
                and obj.__module__.startswith(OWN)
                and obj.forward is not nn.Module.forward  # (nn.Module's raises NotImplementedError)
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[key] for key in sorted(found)]


MODULE_CLASSES = _public_module_classes()


def _class_node(cls: type) -> ast.ClassDef:
    node = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(node, ast.ClassDef) and node.name == cls.__name__
    return node


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _defs(body: list[ast.stmt], name: str) -> list[ast.FunctionDef]:
    return [stmt for stmt in body if isinstance(stmt, ast.FunctionDef) and stmt.name == name]


def _call_stub(cls: type) -> list[ast.FunctionDef]:
    """The ``def __call__`` statements (overloads, then the last) in ``if TYPE_CHECKING:`` blocks of ``cls``."""
    stubs = []
    for stmt in _class_node(cls).body:
        if isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
            stubs += _defs(stmt.body, "__call__")
    return stubs


def _is_overload(node: ast.FunctionDef) -> bool:
    return any(ast.unparse(d) in ("overload", "typing.overload") for d in node.decorator_list)


def _signature(nodes: list[ast.FunctionDef]) -> list[str]:
    """Each definition's parameters, defaults, annotations and return annotation, and whether it is an overload."""
    return [
        f"{'@overload ' if _is_overload(node) else ''}({ast.unparse(node.args)}) -> "
        f"{ast.unparse(node.returns) if node.returns else None}"
        for node in nodes
    ]


def _latentdyn_bases(cls: type) -> list[type]:
    """``cls`` and its base classes that latentdyn defines, nearest first."""
    return [k for k in cls.__mro__ if k.__module__.startswith(OWN)]


def test_discovery_finds_the_public_modules() -> None:
    names = {cls.__name__ for cls in MODULE_CLASSES}
    expected = {
        "MLP", "TimeDistributed", "GaussianHead", "ConditionalGaussianPrior", "StandardNormal", "VectorField",
        "MLPField", "TransitionCell", "ResidualCell", "ODECell", "MLPCell", "GRUCell", "FrameEncoder",
        "FrameDecoder", "DCGANEncoder", "DCGANDecoder", "VGGEncoder", "VGGDecoder", "DeepSetEncoder",
        "InitialStatePosterior", "FilteringPosterior", "LatentSSM", "LPIPS", "AlexNetFeatures", "ScalingLayer",
        "InceptionI3D", "SRVP", "SVGLP", "GaussianLSTM", "FramePredictor",
    }  # fmt: skip
    assert expected <= names, f"not found: {sorted(expected - names)}"


DELEGATES = {"LatentSSM": "rollout"}
"""Modules whose ``forward(x, ..., **kwargs)`` passes its keyword arguments on to a method, so that a subclass that
extends the method's arguments is called the same way: their ``__call__`` stub has that method's signature."""


@pytest.mark.parametrize("cls", MODULE_CLASSES, ids=lambda c: c.__qualname__)
def test_call_stub_matches_forward(cls: type[nn.Module]) -> None:
    # At run time the call is nn.Module's (hooks, torch.compile, DDP, functional_call): the stub is for type
    # checkers only.
    assert cls.__call__ is nn.Module.__call__, f"{cls.__qualname__} defines __call__ at run time"
    owner = next(k for k in cls.__mro__ if "forward" in vars(k))
    forward = _defs(_class_node(owner).body, "forward")
    stub_owner = next((k for k in _latentdyn_bases(cls) if _call_stub(k)), None)
    assert stub_owner is not None, (
        f"{cls.__qualname__}: no `if TYPE_CHECKING: def __call__(...)` stub in the class or a base of latentdyn; "
        f"copy {owner.__qualname__}.forward's signature(s) into one (see TransitionCell)"
    )
    stub = _call_stub(stub_owner)
    if owner.__qualname__ in DELEGATES:  # forward passes **kwargs on: the stub names the method's arguments
        method = DELEGATES[owner.__qualname__]
        forward = _defs(_class_node(owner).body, method)
        owner = type(owner.__qualname__ + "." + method, (), {})  # (named in the message)
    assert _signature(stub) == _signature(forward), (
        f"{cls.__qualname__}: the __call__ stub of {stub_owner.__qualname__} and {owner.__qualname__}.forward "
        f"differ:\n  __call__: {_signature(stub)}\n  forward:  {_signature(forward)}"
    )
    for node in stub:
        assert ast.unparse(node.body[0]) == "..." and len(node.body) == 1, f"{stub_owner.__qualname__}.__call__"
        assert all(ast.unparse(d) in ("overload", "typing.overload") for d in node.decorator_list)


_USER_CALLS = """
from typing import Any

import torch
from torch.distributions import Independent, Normal
from typing_extensions import assert_type

from latentdyn import (MLP, CellPath, ConditionalGaussianPrior, DCGANDecoder, DCGANEncoder, DeepSetEncoder,
                       EncoderOutput, EulerIntegrator, FilteringPosterior, GaussianHead, GRUCell,
                       InitialStatePosterior, LatentSSM, MLPCell, MLPField, ODECell, ResidualCell, Rollout,
                       StandardNormal, TimeDistributed, VectorField, VGGDecoder, VGGEncoder)
from latentdyn.video.fvd import InceptionI3D
from latentdyn.video.lpips import LPIPS, AlexNetFeatures, ScalingLayer

y, z, t = torch.zeros(4, 3), torch.zeros(4, 2), torch.zeros(())
field: VectorField = MLPField(3, 2, 16, 2)
assert_type(field(t, y, z), torch.Tensor)
for cell in (ResidualCell(field, 3, 2), ODECell(field, EulerIntegrator(), 3, 2), MLPCell(3, 2, 8, 1), GRUCell(3, 2)):
    assert_type(cell(y, z), torch.Tensor)
    assert_type(cell(y, z, 2, 5), torch.Tensor)
    assert_type(cell(y, z, return_path=True), CellPath)
    assert_type(cell(y, z, None, 0, return_path=True, check=False), CellPath)
    cell(y)  # type: ignore[call-overload]
prior = ConditionalGaussianPrior(MLP(3, 16, 4, 2))
assert_type(prior(y), {diag})
assert_type(GaussianHead(MLP(3, 16, 4, 2))(y), {diag})
assert_type(StandardNormal(2)(4, 5), {diag})
prior("y")  # type: ignore[arg-type]
ssm = LatentSSM(ResidualCell(field, 3, 2), prior)
assert_type(ssm(y, 3), Rollout)
assert_type(ssm(y, 3, sample=False, n_substeps=2), Rollout)

frames = torch.zeros(5, 2, 1, 32, 32)
for encoder in (DCGANEncoder(image_size=32, base_width=8, code_size=16), VGGEncoder(image_size=32)):
    assert_type(encoder(frames[0]), EncoderOutput)
    code, skips = encoder(frames[0])
    for decoder in (DCGANDecoder(image_size=32, in_features=16), VGGDecoder(image_size=32, skip=True)):
        assert_type(decoder(code), torch.Tensor)
        assert_type(decoder(code, skips), torch.Tensor)
        decoder(code, code)  # type: ignore[arg-type]
per_frame = TimeDistributed(DCGANEncoder(image_size=32, base_width=8, code_size=16))
codes = per_frame(frames).code  # (what TimeDistributed returns is the wrapped module's business: Any)
per_frame("frames")  # type: ignore[arg-type]
assert_type(DeepSetEncoder(16, 32, 8)(codes), torch.Tensor)
assert_type(InitialStatePosterior(16, n_frames=3, hidden_size=32, n_layers=2, state_size=3)(codes[:3]), {diag})
assert_type(FilteringPosterior(16, 32, 2)(codes), {diag})
assert_type(MLP(3, 16, 4, 2)(y), torch.Tensor)

rgb = torch.zeros(2, 3, 64, 64)
assert_type(LPIPS()(rgb, rgb), torch.Tensor)
assert_type(AlexNetFeatures()(rgb), list[torch.Tensor])
assert_type(ScalingLayer()(rgb), torch.Tensor)
assert_type(InceptionI3D()(torch.zeros(2, 3, 16, 224, 224)), torch.Tensor)
"""


@pytest.mark.slow  # (a cold mypy run: --no-incremental)
def test_calls_type_check_with_forward_types(tmp_path: Path) -> None:
    # mypy (as tests/test_docs.py runs it: the project's configuration, from the repository root) on what a user
    # writes. assert_type fails on Any, and the project's warn_unused_ignores reports an ignore that silences
    # nothing, so this passes only if each call has forward's parameters and return type.
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    # Recent torch types the diagonal Gaussians as Independent[Normal]; older torch (2.2) has no generic Independent.
    diag = "Independent[Normal]" if getattr(Independent, "__parameters__", ()) else "Independent"
    user = tmp_path / "user_calls.py"
    user.write_text(_USER_CALLS.replace("{diag}", diag), encoding="utf-8")
    command = [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent"]
    command += ["--cache-dir", str(tmp_path / ".mypy_cache"), str(user)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    report = (result.stdout + result.stderr).replace(str(tmp_path) + "/", "")
    assert result.returncode == 0, f"mypy does not see forward's types in module calls:\n{report}"


def _public_callables() -> list[tuple[str, object]]:
    """Every class and function named in a public ``__all__`` of latentdyn and of the SRVP example (each of its
    modules, the command-line ones included), and the methods and properties those classes define."""
    import examples.srvp

    modules = _public_modules()
    for info in pkgutil.walk_packages(examples.srvp.__path__, prefix="examples.srvp."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            modules.append(importlib.import_module(info.name))
    found: dict[int, tuple[str, object]] = {}
    for module in modules:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isroutine(obj)) or not obj.__module__.startswith(OWN):
                continue
            found.setdefault(id(obj), (f"{obj.__module__}.{name}", obj))
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    target = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                    if inspect.isroutine(target):
                        found.setdefault(id(target), (f"{obj.__module__}.{name}.{attr}", target))
    return sorted(found.values(), key=lambda item: item[0])


def test_annotations_resolve_at_run_time() -> None:
    """``typing.get_type_hints`` works on every public class, function and method: tools that read annotations at
    run time (tyro, pydantic, sphinx, ``inspect.signature(eval_str=True)``) see no name that exists only for type
    checkers (``FrameModel.predict`` and ``load_model`` named classes imported under ``TYPE_CHECKING``)."""
    import typing

    # torch made Independent generic after 2.2 (the lowest version admitted): there, annotations that name
    # Independent[Normal] cannot be evaluated at run time, which no annotation of ours can change but dropping
    # the precise type for every user. Only that failure is let through, and only on such a torch.
    old_torch = not hasattr(Independent, "__class_getitem__")
    callables = _public_callables()
    assert len(callables) > 300  # (the lookup finds the public API, not an empty list)
    failures = []
    for name, obj in callables:
        try:
            typing.get_type_hints(obj)
        except TypeError as error:
            if not (old_torch and "'type' object is not subscriptable" in str(error)):
                failures.append(f"{name}: TypeError: {error}")
        except Exception as error:  # (every failure is reported, by name)
            failures.append(f"{name}: {type(error).__name__}: {error}")
    assert not failures, "\n".join(failures)
