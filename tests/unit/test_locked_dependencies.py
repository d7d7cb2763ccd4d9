"""Pinned dependencies (issue 12 item 7): requirements.lock pins every dependency of every extra,
and scripts/bootstrap.sh installed exactly those pins into the environment running the tests."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _locked() -> dict[str, list[Requirement]]:
    """Lock entries by name; one name can have several pins for different Python versions."""
    pins: dict[str, list[Requirement]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            req = Requirement(line)
            pins.setdefault(canonicalize_name(req.name), []).append(req)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(r) for r in [*project["dependencies"], *(r for reqs in extras.values() for r in reqs)]]


def test_every_declared_dependency_and_extra_is_pinned_to_one_exact_version_that_fits_it() -> None:
    locked = _locked()
    for req in _declared():
        pins = locked.get(canonicalize_name(req.name))
        assert pins, f"{req.name} is declared in pyproject.toml but not in requirements.lock: run bash scripts/lock.sh"
        for pin in pins:
            (spec,) = pin.specifier
            assert spec.operator == "==", f"{pin} is not an exact pin"
            assert req.specifier.contains(spec.version, prereleases=True), (
                f"requirements.lock pins {pin} outside pyproject.toml's {req}: run bash scripts/lock.sh"
            )


def test_the_environment_has_exactly_the_locked_versions() -> None:
    """What bootstrap installed (every installed distribution the lock names, for this Python)."""
    wrong = []
    for name, pins in _locked().items():
        applicable = [p for p in pins if p.marker is None or p.marker.evaluate()]
        if not applicable:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an extra this environment was not installed with
        (spec,) = applicable[0].specifier
        if installed != spec.version:
            wrong.append(f"{name} {installed} (locked {spec.version})")
    assert not wrong, "not the locked versions: " + ", ".join(wrong) + " (bash scripts/bootstrap.sh installs them)"


def test_bootstrap_installs_from_the_lock() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    install_lines = [line for line in bootstrap.splitlines() if "pip install" in line and "-e " in line]
    assert install_lines and all("-c requirements.lock" in line for line in install_lines)
