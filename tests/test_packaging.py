"""The declared dependency floors are the ones CI tests: `.ci/lowest.txt` pins every direct dependency of the
package and of its extras at the lowest version pyproject.toml admits, and `.ci/lowest` installs them on the
lowest Python that requires-python admits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import latentdyn

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; the checks need not run on every Python
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _floor(requirement: str) -> str | None:
    match = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", requirement)
    return match.group(1) if match else None


def _pins() -> dict[str, str]:
    lines = (ROOT / ".ci" / "lowest.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip().lower(): version.strip() for name, version in pairs}


def test_every_direct_dependency_is_pinned_at_its_floor_for_the_lowest_versions_run() -> None:
    project = _pyproject()["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += [r for r in extra if _name(r) != "latentdyn"]
    floors = {_name(r): _floor(r) for r in requirements}
    assert all(floors.values()), f"every dependency needs a floor (>=): {floors}"
    pins = _pins()
    assert set(pins) == set(floors)
    for name, floor in floors.items():
        assert floor is not None
        # ">=2.2" admits 2.2.0: compare release numbers padded with zeros.
        want = [int(p) for p in floor.split(".")]
        have = [int(p) for p in pins[name].split(".")]
        width = max(len(want), len(have))
        assert want + [0] * (width - len(want)) == have + [0] * (width - len(have)), (name, floor, pins[name])


def test_the_lowest_versions_run_uses_the_lowest_python_and_every_extra() -> None:
    project = _pyproject()["project"]
    lowest_python = re.fullmatch(r">=\s*(3\.\d+)", project["requires-python"])
    assert lowest_python is not None
    script = (ROOT / ".ci" / "lowest").read_text()
    assert f"python{lowest_python.group(1)}" in script
    extras = set(project["optional-dependencies"])
    installed = re.search(r'-e "\.\[([a-z,]+)\]"', script)
    assert installed is not None
    # The test extra pulls in examples and video; the rest must be named.
    named = set(installed.group(1).split(","))
    pulled = {e for r in project["optional-dependencies"]["test"] if _name(r) == "latentdyn"
              for e in re.findall(r"\[([a-z,]+)\]", r)[0].split(",")}  # fmt: skip
    assert named | pulled == extras
    assert "bash .ci/lowest" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_the_wheel_holds_everything_the_main_job_needs(tmp_path: Path) -> None:
    """A non-editable install (``pip install latentdyn`` from the wheel) has the shipped data, the type marker,
    the licence and the example, and runs the quickstart from another folder (tiny preset, one step)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("setuptools", minversion="77")  # the build backend, used without a network
    if not (ROOT / ".git").exists():
        pytest.skip("builds from the files git tracks")
    # From a copy of the tracked files: the checkout's own build/ and *.egg-info would fill in what is missing.
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    src = tmp_path / "src"
    for name in tracked.splitlines():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", str(tmp_path), str(src)], check=True)
    (wheel,) = tmp_path.glob("latentdyn-*.whl")
    assert wheel.name.startswith(f"latentdyn-{latentdyn.__version__}-")  # the version has one source
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("latentdyn/py.typed", "latentdyn/data/mnist_digits.npz", "latentdyn/data/lpips_alex_v0.1.pth",
                    "latentdyn/data/README.md", "examples/srvp/quickstart.py", "examples/py.typed"):  # fmt: skip
        assert shipped in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)  # PEP 639
    # The shipped data's own licences (CC BY-SA for the digits, BSD for the LPIPS weights) travel with the wheel.
    assert any(n.endswith(".dist-info/licenses/latentdyn/data/README.md") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    code = (
        "import sys, latentdyn, examples.srvp.quickstart as q\n"
        f"assert latentdyn.__file__.startswith({str(site)!r}), latentdyn.__file__\n"
        "sys.exit(q.main(['--preset', 'tiny', '--run-dir', 'runs/q', '--max-steps', '1', '--eval-sequences', '2',"
        " '--n-samples', '1']))\n"
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (work / "runs" / "q" / "eval" / "smmnist_test_embedded_25_n1_samples.gif").stat().st_size > 0


def _third_party_imports(folder: Path) -> dict[str, set[str]]:
    """Top-level modules imported (absolutely) by the .py files under ``folder`` that are neither the standard
    library nor this repository's packages: module -> files importing it. An import in a ``try`` whose
    ``except ImportError`` falls back without raising is optional (tqdm's notebook bar and ipywidgets) and left out;
    one whose handler raises (a message naming the extra to install) counts."""
    import ast
    import sys

    def optional_imports(tree: ast.AST) -> set[int]:
        skipped: set[int] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try):
                continue
            handles = [h for h in node.handlers if "ImportError" in ast.dump(h.type or ast.Name("BaseException"))]
            if handles and not any(isinstance(n, ast.Raise) for h in handles for n in ast.walk(h)):
                skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
        return skipped

    own = {"latentdyn", "examples", "benchmarks"}
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        optional = optional_imports(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("folder", ["latentdyn", "examples"])
def test_every_third_party_import_is_a_declared_dependency(folder: str) -> None:
    """Pillow was imported by the frame, GIF and resizing code but declared by no extra: `pip install
    "latentdyn[video]"` could not convert KTH (imageio and matplotlib brought it in for the tests only)."""
    from importlib.metadata import packages_distributions

    project = _pyproject()["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for requirements in project["optional-dependencies"].values():
        declared |= {_name(r) for r in requirements if not r.startswith("latentdyn")}
    distributions = packages_distributions()
    missing = {}
    for module, files in _third_party_imports(ROOT / folder).items():
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        if not names & declared:
            missing[module] = (sorted(names) or ["not installed"], sorted(files)[:3])
    assert not missing, f"imported but not declared in pyproject.toml (module: distributions, files): {missing}"
