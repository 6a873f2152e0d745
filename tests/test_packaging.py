"""The declared dependency floors are the ones CI tests: `.ci/lowest.txt` pins every direct dependency of the
package and of its extras at the lowest version pyproject.toml admits, and `.ci/lowest` installs them on the
lowest Python that requires-python admits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
