"""Package facades that import a private module only when one of its names is first used.

Every subpackage's `__init__` names what it offers in one table; importing the package (which
Python does before any of its private modules) then costs nothing and cannot close an import
cycle between packages. Type checkers see the same names through `if TYPE_CHECKING:` imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]) -> tuple[list[str], Callable[[str], object]]:
    """`__all__` and a module `__getattr__` (PEP 562) for `package`, from {private module: names}."""
    home = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return sorted(home), __getattr__
