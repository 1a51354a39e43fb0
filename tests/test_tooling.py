"""The packages the wheel ships, the packages mypy checks and the packages marked typed (PEP 561)
are one list: a new top-level package cannot be shipped untyped or unchecked."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _shipped() -> set[str]:
    patterns = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]  # type: ignore[index]
    return {pattern.rstrip("*") for pattern in patterns}


def test_every_shipped_package_is_type_checked_and_typed() -> None:
    checked = set(_pyproject()["tool"]["mypy"]["packages"])  # type: ignore[index]
    assert checked == _shipped()
    assert {name for name in _shipped() if (REPO / name / "py.typed").is_file()} == _shipped()


@pytest.mark.integration  # builds the wheel with pip
def test_the_wheel_carries_py_typed(tmp_path: Path) -> None:
    # As `make dist` builds it (in an isolated build environment: setuptools>=77 reads the license)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(REPO)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("registry_mirror-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"{package}/py.typed" for package in _shipped()} <= names
