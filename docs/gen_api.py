"""Generate ``docs/api.md`` and ``docs/video_api.md``: every public name with its signature and one-line summary.

    python docs/gen_api.py           # rewrite both pages
    python docs/gen_api.py --check   # exit with status 1 if a page is out of date

``api.md`` lists ``latentdyn.__all__`` grouped by role; ``video_api.md`` lists the ``__all__`` of each
``latentdyn.video`` submodule (imported on demand, so not in ``latentdyn.__all__``). The pages are built from the
objects themselves (signatures from ``inspect``, summaries from the first line of each docstring), so they cannot
drift from the code; ``tests/test_docs.py`` fails when one is stale.
"""

from __future__ import annotations

import argparse
import ast
import enum
import importlib
import inspect
import itertools
import re
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"
VIDEO_PAGE = ROOT / "docs" / "video_api.md"

SECTIONS: list[tuple[str, str, str]] = [
    # (module prefix, title, one line about the section)
    ("latentdyn.ssm", "Rollout", "The one loop over frames and its result."),
    ("latentdyn.cells", "Transition cells", "y_{t+1} = cell(y_t, z_{t+1}) over one frame, in n sub-steps."),
    ("latentdyn.fields", "Vector fields", "dy/dt = f(t, y, cond), the conditioning passed explicitly."),
    ("latentdyn.integrators", "Integrators", "Solvers of dy/dt = f(t, y, cond) on a time grid."),
    ("latentdyn.distributions", "Distributions", "Heads and priors that return torch.distributions objects."),
    ("latentdyn.encoders.posteriors", "Posteriors", "Amortised q(y_0 | x) and q(z_t | x_{0..t})."),
    ("latentdyn.encoders.content", "Content", "Permutation-invariant content encoder and frame selection."),
    ("latentdyn.encoders.conv", "Frame encoders and decoders", "Convolutional h(x) and g(h, skips)."),
    ("latentdyn.objectives", "Objectives", "Pure loss functions with per-sequence (B,) reductions."),
    ("latentdyn.nn", "Building blocks", "Small modules and initialisers."),
    ("latentdyn._checks", "Helpers", "Checked conversions used at public boundaries."),
]

VIDEO_SECTIONS: list[tuple[str, str, str]] = [
    # (module, title, one line about the section): every name of the module's __all__, in that order
    ("latentdyn.video.moving_mnist", "Moving MNIST", "Stochastic and deterministic Moving MNIST, as SRVP makes it."),
    ("latentdyn.video.mnist", "MNIST digits", "The digits Moving MNIST draws: embedded, on disk, or downloaded."),
    ("latentdyn.video.datasets", "Real video data sets", "KTH, Human3.6M, BAIR and folders of videos."),
    ("latentdyn.video.collate", "Batching", "uint8 clips into the float (T, B, C, H, W) tensors the models read."),
    ("latentdyn.video.metrics", "Metrics", "PSNR, SSIM, best-of-N selection and confidence intervals."),
    ("latentdyn.video.lpips", "LPIPS", "Learned perceptual image patch similarity, AlexNet v0.1."),
    ("latentdyn.video.fvd", "FVD", "Fréchet video distance on I3D features."),
    ("latentdyn.video.media", "Media", "Quantisation, grids of videos, GIF and PNG files."),
]


def _google_section(obj: Any, title: str) -> list[tuple[str, str]]:
    """Entries ``(name, text)`` of a Google-style docstring section such as ``Args:`` or ``Attributes:``."""
    doc = obj.__doc__ if isinstance(obj.__doc__, str) else None
    if not doc:
        return []
    lines = inspect.cleandoc(doc).splitlines()
    try:
        start = lines.index(f"{title}:") + 1
    except ValueError:
        return []
    entries: list[tuple[str, str]] = []
    for line in lines[start:]:
        if line.strip() and not line.startswith(" "):
            break  # the next section
        if not line.strip():
            continue
        match = re.fullmatch(r" {4}(\*{0,2}[\w, ]+?)(?: \(.*?\))?: (.*)", line)
        if match and not line.startswith(" " * 5):
            entries.append((match.group(1), match.group(2).strip()))
        elif entries:
            name, text = entries[-1]
            entries[-1] = (name, f"{text} {line.strip()}")
    return [(name, _markdown(text)) for name, text in entries]


def _module_of(name: str, obj: Any) -> str:
    """Module that defines ``obj`` (constants have no ``__module__``: the latentdyn module listing them)."""
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return str(obj.__module__)
    found = [
        mod_name
        for mod_name, mod in sorted(sys.modules.items())
        if mod_name.startswith("latentdyn") and name in getattr(mod, "__all__", ()) and mod_name != "latentdyn"
    ]
    if not found:
        raise LookupError(f"{name}: no latentdyn submodule lists it in __all__")
    return min(found, key=len)  # the shallowest submodule that exports it (where it is documented)


def _section_of(module: str) -> str:
    for prefix, title, _ in SECTIONS:
        if module == prefix or module.startswith(prefix + "."):
            return title
    raise LookupError(f"module {module}: no section in docs/gen_api.py SECTIONS; add one")


_RST_ROLE = re.compile(r":(?:class|meth|func|attr|data|mod):`~?([^`]+)`")


def _markdown(text: str) -> str:
    """Sphinx cross-references (``:class:`~a.b.C` ``) as plain code spans."""
    return _RST_ROLE.sub(lambda m: f"`{m.group(1).split('.')[-1] if '~' in m.group(0) else m.group(1)}`", text)


def _summary(obj: Any) -> str:
    """First line of the object's own docstring (not one inherited from a base class)."""
    doc = obj.__doc__ if isinstance(obj.__doc__, str) else None
    if not doc:
        return ""
    return _markdown(inspect.cleandoc(doc).splitlines()[0].strip())


def _constant_doc(module: str, name: str) -> str:
    """First line of the string literal that follows ``name = ...`` in the module's source."""
    source = inspect.getsource(importlib.import_module(module))
    body = ast.parse(source).body
    for stmt, nxt in itertools.pairwise(body):
        targets = (
            [t.id for t in stmt.targets if isinstance(t, ast.Name)]
            if isinstance(stmt, ast.Assign)
            else [stmt.target.id]
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            else []
        )
        if name in targets and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            return str(nxt.value.value).strip().splitlines()[0]
    return ""


def _annotation(ann: Any) -> str:
    if isinstance(ann, str):
        return ann
    if isinstance(ann, typing.ForwardRef):
        return ann.__forward_arg__
    return inspect.formatannotation(ann)


def _default(value: Any) -> str:
    if inspect.isclass(value) or inspect.isfunction(value):
        module = value.__module__
        prefix = "nn." if module.startswith("torch.nn") else ""
        return prefix + value.__qualname__
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)


def _signature(obj: Callable[..., Any], *, drop_return: bool = False) -> str:
    sig = inspect.signature(obj)
    params = list(sig.parameters.values())
    parts: list[str] = []
    star_done = False
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text, star_done = "*" + p.name, True
        elif p.kind is p.VAR_KEYWORD:
            text = "**" + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += (" = " if p.annotation is not p.empty else "=") + _default(p.default)
        parts.append(text)
        last_positional_only = p.kind is p.POSITIONAL_ONLY and (
            i == len(params) - 1 or params[i + 1].kind is not p.POSITIONAL_ONLY
        )
        if last_positional_only:
            parts.append("/")
    out = f"({', '.join(parts)})"
    ret = sig.return_annotation
    if not drop_return and ret is not sig.empty and _annotation(ret) != "None":
        out += f" -> {_annotation(ret)}"
    return out


def _own_classes(cls: type) -> Iterator[type]:
    """``cls`` and its latentdyn base classes, most derived first."""
    for klass in cls.__mro__:
        if klass.__module__.startswith("latentdyn"):
            yield klass


def _constructor(cls: type) -> str | None:
    """Constructor signature, or None for abstract bases and protocols without one of their own."""
    if hasattr(cls, "_fields") and issubclass(cls, tuple):  # NamedTuple
        return _signature(cls, drop_return=True)
    if typing.Protocol in cls.__mro__:
        return None
    if any("__init__" in vars(k) for k in _own_classes(cls)):
        return _signature(cls, drop_return=True)
    return None if inspect.isabstract(cls) else "()"


def _members(cls: type) -> list[tuple[str, str, str]]:
    """(name, signature, summary) of the public methods and properties that ``cls`` itself defines."""
    rows: list[tuple[str, str, str]] = []
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        if isinstance(value, property):
            rows.append((name, "", _summary(value)))
        elif isinstance(value, (staticmethod, classmethod)):
            rows.append((name, _signature(value.__func__), _summary(value.__func__)))
        elif inspect.isfunction(value):
            sig = _signature(value)
            sig = sig.replace("(self, ", "(", 1).replace("(self)", "()", 1)
            rows.append((name, sig, _summary(value)))
    return rows


def _public_bases(cls: type, public: set[str]) -> list[str]:
    """Names of the public latentdyn base classes whose members ``cls`` inherits."""
    return [k.__name__ for k in cls.__mro__[1:] if k.__module__.startswith("latentdyn") and k.__name__ in public]


def _escape_pipes(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _arguments(obj: Any, section: str) -> list[str]:
    """A bullet list of a docstring's ``Args:`` or ``Attributes:`` section, under a bold title."""
    entries = _google_section(obj, section)
    if not entries:
        return []
    title = "Arguments" if section == "Args" else "Attributes"
    return [f"**{title}**", "", *(f"- `{n}`: {t}" for n, t in entries), ""]


def _entry(name: str, obj: Any, module: str, public: set[str]) -> list[str]:
    lines = [f"### `{name}`", ""]
    if inspect.isclass(obj):
        ctor = _constructor(obj)
        kind = "abstract class" if inspect.isabstract(obj) else "class"
        if typing.Protocol in obj.__mro__:
            kind = "protocol"
        lines += ["```text", f"{kind} {name}{ctor or ''}", "```", "", _summary(obj), ""]
        lines += _arguments(obj, "Args") + _arguments(obj, "Attributes")
        members = _members(obj)
        if members:
            lines += ["| member | summary |", "|---|---|"]
            for m_name, m_sig, m_summary in members:
                cell = f"`{m_name}{m_sig}`"
                lines.append(f"| {_escape_pipes(cell)} | {_escape_pipes(m_summary) or '—'} |")
            lines.append("")
        bases = _public_bases(obj, public)
        if bases:
            lines += ["Inherits the members of " + ", ".join(f"[`{b}`](#{b.lower()})" for b in bases) + ".", ""]
    elif inspect.isfunction(obj):
        lines += ["```text", f"def {name}{_signature(obj)}", "```", "", _summary(obj), ""]
        lines += _arguments(obj, "Args")
    else:
        lines += ["```text", f"{name} = {obj!r}", "```", "", _constant_doc(module, name), ""]
    lines += [f"Defined in `{module}`.", ""]
    return lines


def _import(module: str) -> Any:
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(ROOT))


def _order(obj: Any, name: str) -> tuple[int, str]:
    """Classes, then functions, then constants, each alphabetically."""
    return (0 if inspect.isclass(obj) else 1 if callable(obj) else 2, name.lower())


def _page(
    header: list[str],
    sections: list[tuple[str, str, str]],
    by_section: dict[str, list[tuple[str, Any, str]]],
    public: set[str],
) -> str:
    """The page: its header, a line of names per section, then every section's entries."""
    lines = list(header)
    intro = {title: about for _, title, about in sections}
    for title, entries in by_section.items():
        if entries:
            names = ", ".join(f"`{n}`" for n, _, _ in entries)
            lines.append(f"- **{title}**: {names}")
    lines.append("")
    for title, entries in by_section.items():
        if not entries:
            continue
        lines += [f"## {title}", "", intro[title], ""]
        for name, obj, module in entries:
            lines += _entry(name, obj, module, public)
    return "\n".join(lines).rstrip() + "\n"


def render() -> str:
    """The text of ``docs/api.md`` for the latentdyn importable now."""
    latentdyn = _import("latentdyn")
    by_section: dict[str, list[tuple[str, Any, str]]] = {title: [] for _, title, _ in SECTIONS}
    public = set(latentdyn.__all__)
    for name in sorted(latentdyn.__all__, key=lambda n: _order(getattr(latentdyn, n), n)):
        obj = getattr(latentdyn, name)
        module = _module_of(name, obj)
        by_section[_section_of(module)].append((name, obj, module))
    header = [
        "# API reference",
        "",
        "<!-- Generated by docs/gen_api.py from the code; do not edit by hand. -->",
        "",
        f"Every name of `latentdyn.__all__` (version {latentdyn.__version__}), grouped by role: the signature "
        "and the first line of its docstring. Import them from the top level (`from latentdyn import "
        "LatentSSM`). Video data sets, metrics and media live in `latentdyn.video`: see the "
        "[video API reference](video_api.md). Shapes use the glossary letters of [Concepts](concepts.md#shapes).",
        "",
    ]
    return _page(header, SECTIONS, by_section, public)


def render_video() -> str:
    """The text of ``docs/video_api.md``: the ``__all__`` of every ``latentdyn.video`` submodule."""
    latentdyn = _import("latentdyn")
    by_section: dict[str, list[tuple[str, Any, str]]] = {}
    public: set[str] = set()
    for module_name, title, _ in VIDEO_SECTIONS:
        module = _import(module_name)
        names = sorted(module.__all__, key=lambda n, m=module: _order(getattr(m, n), n))
        public.update(names)
        by_section[title] = []
        for name in names:
            obj = getattr(module, name)
            defined = str(obj.__module__) if inspect.isclass(obj) or inspect.isfunction(obj) else module_name
            by_section[title].append((name, obj, defined))
    header = [
        "# Video API reference",
        "",
        "<!-- Generated by docs/gen_api.py from the code; do not edit by hand. -->",
        "",
        f"Every name of the `__all__` of each `latentdyn.video` submodule (version {latentdyn.__version__}): the "
        "signature and the first line of its docstring. These submodules are imported on demand, so that their "
        "optional dependencies (PyAV for real videos, imageio for GIFs) are needed only by the parts that use them: "
        "import from the submodule (`from latentdyn.video.metrics import psnr`). The model parts are in the "
        "[API reference](api.md).",
        "",
    ]
    return _page(header, VIDEO_SECTIONS, by_section, public)


PAGES: dict[Path, Callable[[], str]] = {PAGE: render, VIDEO_PAGE: render_video}


def main(argv: list[str] | None = None) -> int:
    """Write the pages, or with ``--check`` compare them with what would be written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a page is stale")
    args = parser.parse_args(argv)
    stale = 0
    for page, make in PAGES.items():
        text = make()
        if args.check:
            if not page.exists() or page.read_text(encoding="utf-8") != text:
                print(f"{page} is out of date: run python docs/gen_api.py", file=sys.stderr)
                stale = 1
            else:
                print(f"{page} is up to date")
            continue
        page.write_text(text, encoding="utf-8")
        print(f"wrote {page}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
