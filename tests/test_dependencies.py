"""Dependency floors (pyproject.toml), the pinned versions CI installs (constraints.txt) and the set-up
script agree: every dependency is pinned at a version its floor admits, torch is left to setup_env.sh,
and this machine runs the pinned versions."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
SETUP = (REPO / "scripts/setup_env.sh").read_text()
TORCH_ONLY = {"torch", "filelock", "fsspec", "jinja2", "markupsafe", "mpmath", "networkx", "sympy"}


def requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def pins() -> dict[str, Version]:
    out = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin name==version"
            out[canonicalize_name(name)] = Version(version)
    return out


def torch_pin() -> Version:
    """The torch setup_env.sh installs when the machine has none (``${BMVTRACK_TORCH:-torch==X}``)."""
    (version,) = re.findall(r"BMVTRACK_TORCH:-torch==([0-9][^}\"]*)", SETUP)
    return Version(version)


def test_every_dependency_is_pinned_within_its_floor():
    pinned = pins()
    for req in requirements():
        name = canonicalize_name(req.name)
        version = torch_pin() if name == "torch" else pinned.get(name)
        assert version is not None, f"{req.name} ({req}) has no pin in constraints.txt"
        assert req.specifier.contains(version, prereleases=True), f"{req.name}: pin {version} is below {req}"


def test_torch_is_left_to_setup_env_so_no_cuda_build_is_forced():
    pinned = pins()
    assert not TORCH_ONLY & set(pinned), "torch (or a package only torch needs) is pinned in constraints.txt"
    assert not [n for n in pinned if n.startswith(("nvidia-", "triton"))]
    install = [line for line in SETUP.splitlines() if "pip install" in line and "-e " in line]
    assert install and all("-c constraints.txt" in line for line in install)  # CI installs exactly the pins
    assert "constraints.txt -nt" in SETUP  # a changed pin reinstalls


def test_this_machine_runs_the_pinned_versions():
    pinned = pins()
    for req in requirements():
        name = canonicalize_name(req.name)
        want = torch_pin() if name == "torch" else pinned[name]
        try:
            have = Version(metadata.version(req.name))
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} is not installed: run scripts/setup_env.sh")
        if name == "torch":  # a local build label (+cpu, +cu124) or BMVTRACK_TORCH's version is fine
            assert req.specifier.contains(have, prereleases=True), f"torch {have} is below {req}"
            continue
        assert have == want, f"{req.name} {have} is installed, constraints.txt pins {want}: run scripts/setup_env.sh"


@pytest.mark.parametrize("folder", ["agents", "envs"])
def test_a_top_level_folder_imported_by_its_own_name_says_which_package_it_is(folder: str) -> None:
    """From the repository root ``import agents`` would load a second copy (every tracker registered
    twice); it fails at once, naming the package to import instead."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", f"import {folder}"], cwd=root, capture_output=True, text=True)
    assert done.returncode != 0
    assert f"import bmvtrack.{folder}" in done.stderr.strip().splitlines()[-1]
