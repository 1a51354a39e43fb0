"""The packages' public faces: every subpackage of registry_mirror, and p2p, p2p.tracker and
catalog, names what it offers in one table (`__all__`, lazy_loader), each name resolves from the
module that defines it, type checkers see the same names, and code in one registry_mirror
subpackage reaches into another only through that face (the `_metrics` instrument modules
excepted)."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = sorted(p.name for p in (ROOT / "registry_mirror").iterdir() if (p / "__init__.py").exists())
FACADES = [f"registry_mirror.{sub}" for sub in SUBPACKAGES] + ["p2p", "p2p.tracker", "catalog"]
PRODUCT = ("registry_mirror", "nvme_cache", "p2p", "catalog", "http_limits", "oci")


def _type_checking_names(init: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                names.update(a.asname or a.name for a in imp.names)
    return names


def test_the_layout_is_the_documented_one() -> None:
    assert SUBPACKAGES == [
        "admin",
        "api",
        "cli",
        "config",
        "hub",
        "policy",
        "runtime",
        "signatures",
        "telemetry",
        "upstream",
        "webhook",
    ]
    top = sorted(p.name for p in (ROOT / "registry_mirror").glob("*.py"))
    assert top == ["__init__.py", "version.py"]


@pytest.mark.parametrize("name", FACADES)
def test_every_exported_name_resolves_from_its_own_package(name: str) -> None:
    package = importlib.import_module(name)
    assert package.__all__, f"{name} exports nothing"
    assert package.__all__ == sorted(set(package.__all__))
    for exported in package.__all__:
        value = getattr(package, exported)
        if isinstance(value, type) or inspect.isfunction(value):  # not aliases such as Callable[...]
            home = value.__module__
            assert home.startswith(f"{name}."), (exported, home)
    assert not hasattr(package, "no_such_name")


@pytest.mark.parametrize("name", FACADES)
def test_type_checkers_see_what_the_table_exports(name: str) -> None:
    package = importlib.import_module(name)
    assert _type_checking_names(ROOT / name.replace(".", "/") / "__init__.py") == set(package.__all__)


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_modules_inside_a_subpackage_are_private(sub: str) -> None:
    public = [p.name for p in (ROOT / "registry_mirror" / sub).glob("*.py") if not p.name.startswith("_")]
    assert public == []


def test_product_code_uses_other_packages_through_their_facades() -> None:
    leaks = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            own = path.relative_to(ROOT).parts[:2]
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ImportFrom) or not node.module:
                    continue
                parts = tuple(node.module.split("."))
                if package == "registry_mirror" and parts[0] in ("p2p", "catalog"):
                    if node.module not in ("p2p", "p2p.tracker", "catalog"):
                        leaks.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}")
                    continue
                if len(parts) < 3 or parts[0] != "registry_mirror" or parts[:2] == own:
                    continue
                private = parts[2].startswith("_")
                instruments = parts[2] == "_metrics"
                if private and not instruments:
                    leaks.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}")
    assert leaks == []
