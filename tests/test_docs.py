"""The documentation runs and points where it says: code blocks, the generated API page, relative links."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import linecache
import re
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINKED_FILES = [
    *PAGES,
    ROOT / "README.md",
    ROOT / "examples" / "srvp" / "README.md",
    ROOT / "benchmarks" / "README.md",
    ROOT / "latentdyn" / "data" / "README.md",
]

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```\s*$", re.M | re.S)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```\s*$", re.M | re.S)
_HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return _PYTHON_BLOCK.findall(page.read_text(encoding="utf-8"))


def links(page: Path) -> list[str]:
    """Link targets of a Markdown page, outside code blocks."""
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return [a or b for a, b in _LINK.findall(text)]


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and mkdocs' toc with the GitHub slugifier) gives a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Anchors of every heading of a Markdown page."""
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {github_anchor(h) for h in _HEADING.findall(text)}


@pytest.fixture
def quiet_torch() -> Iterator[None]:
    """One thread (tiny models run fastest there, and the machine is shared) and the global RNG restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            yield
    finally:
        torch.set_num_threads(threads)


NEEDS_TORCH = {"deploy.md": (2, 5)}
"""Pages whose code needs a newer torch than the lowest latentdyn admits (2.2): deploy.md's torch.export (its
non-strict mode, and a strict mode that traces the samplers; torch 2.2's export fails on the page). Their blocks are
skipped below that version, as the page says."""


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(
    page: Path, quiet_torch: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    need = NEEDS_TORCH.get(page.name)
    if need is not None and _torch_version() < need:
        pytest.skip(f"{page.name} needs torch {need[0]}.{need[1]} or newer, this is {torch.__version__}")
    # Every block of a page runs in order in one namespace, as a reader pasting them would; in a real module
    # (dataclasses and pickling look their module up) and from an empty folder (nothing is written to the repo).
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    name = f"docs_{page.stem}"
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    start = time.process_time()  # (CPU time: the machine may be busy with other work)
    for i, block in enumerate(python_blocks(page)):
        filename = f"{page.relative_to(ROOT)} (python block {i + 1})"
        linecache.cache[filename] = (len(block), None, block.splitlines(keepends=True), filename)  # tracebacks
        code = compile(block, filename, "exec")
        exec(code, module.__dict__)
    elapsed = time.process_time() - start
    assert elapsed < 20, f"{page.name}: the code blocks took {elapsed:.1f} s of CPU; keep documentation examples fast"


@pytest.mark.slow  # (a cold mypy run: --no-incremental)
def test_python_blocks_type_check(tmp_path: Path) -> None:
    # A reader pastes the examples into a type-checked project: they pass mypy under the project's own
    # configuration (pyproject.toml) against the local latentdyn. One module per page, its blocks joined in
    # order (as test_python_blocks_run executes them); mypy runs from the repository root and keeps its cache
    # in tmp_path.
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed, so the documentation's code is not type-checked")
    files = []
    for page in [ROOT / "README.md", *PAGES]:
        blocks = python_blocks(page)
        if blocks:
            path = tmp_path / f"doc_{page.stem.lower()}.py"
            path.write_text("\n".join(blocks), encoding="utf-8")
            files.append(str(path))
    # And what the pages do not show but users write: a sampler naming its parameters as it likes, the
    # initialisers' return type, Rollout.at on a NumPy array, a rollout's optional prior passed to the KL helpers.
    cases = tmp_path / "user_cases.py"
    cases.write_text(_USER_CASES, encoding="utf-8")
    files.append(str(cases))
    command = [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent"]
    command += ["--cache-dir", str(tmp_path / ".mypy_cache")]  # (errors of the pages only, not of latentdyn)
    result = subprocess.run([*command, *files], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    report = (result.stdout + result.stderr).replace(str(tmp_path) + "/", "")
    assert result.returncode == 0, f"the documentation's python blocks fail mypy:\n{report}"


_USER_CASES = """
import numpy as np
import torch
from torch.distributions import Distribution

from latentdyn import (MLP, CellPath, ConditionalGaussianPrior, DCGANEncoder, LatentSSM, MLPField, ResidualCell,
                       Role, Rollout, index_steps, init_conv_weights_, init_orthogonal_, kl_per_sequence,
                       residual_penalty)


def use_means(d: Distribution, r: Role) -> torch.Tensor:
    return d.mean


ssm = LatentSSM(ResidualCell(MLPField(3, 2, 16, 2), 3, 2), ConditionalGaussianPrior(MLP(3, 16, 4, 2)))
roll = ssm.rollout(torch.zeros(4, 3), 3, sampler=use_means)
at: torch.Tensor = roll.at(np.array([0.5, 1.5]))
kl: torch.Tensor = kl_per_sequence(roll.prior, index_steps(roll.prior, slice(0, 2)))
penalty: torch.Tensor = residual_penalty(roll.residuals)
mlp: MLP = init_orthogonal_(MLP(2, 8, 2, n_layers=2), gain=1.0)
encoder: DCGANEncoder = init_conv_weights_(DCGANEncoder(image_size=32, base_width=8, code_size=16))
# A field's declared sizes are ints; a return_path known only as a bool gives the union; ssm(...) has rollout's
# arguments (a misspelt one is an error).
field = MLPField(3, 2, 16, 2)
width: int = field.state_size + field.cond_size
want_path = bool(np.random.rand() > 0.5)
step: torch.Tensor | CellPath = ResidualCell(field, 3, 2)(torch.zeros(4, 3), torch.zeros(4, 2), return_path=want_path)
called: Rollout = ssm(torch.zeros(4, 3), 3, sample=False, n_substeps=1)
"""


def test_the_pages_that_teach_by_example_have_code() -> None:
    for name in ("tutorial.md", "integrators.md", "new_cell.md", "concepts.md"):
        assert python_blocks(DOCS / name), f"docs/{name} has no ```python block"


def _load_generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("docs_gen_api", DOCS / "gen_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_page_is_up_to_date() -> None:
    expected = _load_generator().render()
    actual = (DOCS / "api.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/api.md is stale: run `python docs/gen_api.py` and commit the result"


def test_api_page_lists_every_public_name() -> None:
    import latentdyn

    text = _load_generator().render()
    headings = set(re.findall(r"^### `(\w+)`$", text, re.M))
    assert headings == set(latentdyn.__all__)


def test_video_api_page_is_up_to_date_and_lists_every_video_name() -> None:
    """The latentdyn.video submodules had no reference page: docs/api.md said they were "not listed here"."""
    generator = _load_generator()
    expected = generator.render_video()
    assert (DOCS / "video_api.md").read_text(encoding="utf-8") == expected, (
        "docs/video_api.md is stale: run `python docs/gen_api.py` and commit the result"
    )
    video_dir = ROOT / "latentdyn" / "video"
    modules = sorted(
        f"latentdyn.video.{p.stem if p.is_file() else p.name}"
        for p in video_dir.iterdir()
        if (p.suffix == ".py" and not p.stem.startswith("_")) or (p / "__init__.py").is_file()
    )
    assert sorted(m for m, _, _ in generator.VIDEO_SECTIONS) == modules  # no submodule left out
    names = set()
    for module in modules:
        names |= set(importlib.import_module(module).__all__)
    headings = re.findall(r"^### `(\w+)`$", expected, re.M)
    assert set(headings) == names and len(headings) == len(set(headings))


@pytest.mark.parametrize("page", LINKED_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target} (no file {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading with anchor #{anchor} in {dest.name})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_every_page_is_in_the_docs_index() -> None:
    listed = {Path(t.partition("#")[0]).name for t in links(DOCS / "README.md")}
    missing = sorted(p.name for p in PAGES if p.name != "README.md" and p.name not in listed)
    assert not missing, f"docs/README.md does not link to {missing}"


def test_link_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Real heading\n", encoding="utf-8")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md) [ok](b.md#real-heading) [web](https://example.org) `[code](nope.md)`\n"
        "```text\n[in a block](nope.md)\n```\n[bad](missing.md) [bad anchor](b.md#nope)\n",
        encoding="utf-8",
    )
    assert links(page) == ["b.md", "b.md#real-heading", "https://example.org", "missing.md", "b.md#nope"]
    assert anchors(tmp_path / "b.md") == {"real-heading"}
    assert github_anchor("`Rollout.at` and query times") == "rolloutat-and-query-times"


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings if s.startswith("--") and s != "--help"}


@pytest.mark.parametrize("command", ["train", "evaluate", "demo"])
def test_srvp_guide_mentions_every_flag(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    module = importlib.import_module(f"examples.srvp.{command}")
    text = (DOCS / "srvp.md").read_text(encoding="utf-8")
    missing = sorted(f for f in _option_strings(module.build_parser()) if f"`{f}" not in text)
    assert not missing, f"docs/srvp.md does not mention these flags of examples.srvp.{command}: {missing}"
