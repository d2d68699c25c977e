"""Binder's environment: every runtime dependency pinned exactly, within the package's own ranges,
and the build script stops at the first failure."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "binder" / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"binder/requirements.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_runtime_dependency_is_pinned_inside_its_range() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = _pins()
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        assert name in pins, f"{dep.name} is a dependency but binder/requirements.txt does not pin it"
        assert dep.specifier.contains(pins[name]), f"{dep.name}=={pins[name]} is outside {dep.specifier}"
    assert {"voila", "jupyterlab", "ipykernel"} <= set(pins)


def test_post_build_installs_the_package_and_stops_on_failure() -> None:
    script = (ROOT / "binder" / "postBuild").read_text(encoding="utf-8")
    assert re.search(r"^set -e", script, re.M)
    assert re.search(r"^pip install .*\.$", script, re.M)
