"""The `registry-mirror` command line: a table of sub-commands, each imported only when it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from registry_mirror.cli._hosts_toml import toml_string as toml_string
    from registry_mirror.cli._main import main as main

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_hosts_toml": ["toml_string"],
        "_main": ["main"],
    },
)
