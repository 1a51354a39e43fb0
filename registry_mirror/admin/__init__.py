"""The admin API on its own listener: status, prefetch, pins, blocklist, catalogs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry_mirror._facade import lazy_exports

if TYPE_CHECKING:
    from registry_mirror.admin._app import build_admin as build_admin

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "_app": ("build_admin",),
    },
)
