"""The `registry-mirror` command line: a table of sub-commands, each imported only when it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry_mirror._facade import lazy_exports

if TYPE_CHECKING:
    from registry_mirror.cli._hosts_toml import toml_string as toml_string
    from registry_mirror.cli._main import main as main

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "_hosts_toml": ("toml_string",),
        "_main": ("main",),
    },
)
