"""The import order of the project's packages, checked on the source (every import statement,
including those inside functions): no package imports one above it, and `oci` imports nothing
outside the standard library.

    oci  <-  nvme_cache  <-  p2p  <-  registry_mirror
     ^   <-  http_limits <-  p2p      (listener limits, rate buckets, the control APIs' error body)
     ^   <-  catalog (with nvme_cache)  <-  registry_mirror
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> the project packages it may import (besides itself)
ALLOWED: dict[str, frozenset[str]] = {
    "oci": frozenset(),
    "http_limits": frozenset({"oci"}),
    "nvme_cache": frozenset({"oci"}),
    "catalog": frozenset({"oci", "nvme_cache"}),
    "p2p": frozenset({"oci", "nvme_cache", "http_limits"}),
    "registry_mirror": frozenset({"oci", "nvme_cache", "http_limits", "p2p", "catalog"}),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute top-level module) for every import in the file; relative imports are the
    file's own package and left out."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_every_package_of_the_project_has_a_place_in_the_order() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(ALLOWED), "add the new package to ALLOWED (and to docs/architecture.md)"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_imports_one_above_it(package: str) -> None:
    forbidden = set(ALLOWED) - ALLOWED[package] - {package}
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in imported_modules(path)
        if module in forbidden
    ]
    assert wrong == []


def test_oci_imports_only_the_standard_library() -> None:
    outside = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "oci").rglob("*.py"))
        for line, module in imported_modules(path)
        if module not in sys.stdlib_module_names and module not in ("oci", "__future__")
    ]
    assert outside == []


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from p2p.node import P2PNode\n    from . import sibling\n")
    assert imported_modules(source) == [(1, "os"), (4, "p2p")]
