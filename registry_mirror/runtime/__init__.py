"""Assembling and running the process: the ASGI app, its lifespan, startup checks, the p2p and
catalog wiring, and the uvicorn entry points."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry_mirror._facade import lazy_exports

if TYPE_CHECKING:
    from registry_mirror.runtime._app import build_mirror as build_mirror
    from registry_mirror.runtime._server import run as run
    from registry_mirror.runtime._server import verify_cache as verify_cache

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "_app": ("build_mirror",),
        "_server": (
            "run",
            "verify_cache",
        ),
    },
)
