"""Assembling and running the process: the ASGI app, its lifespan, startup checks, the p2p and
catalog wiring, and the uvicorn entry points."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from registry_mirror.runtime._app import build_mirror as build_mirror
    from registry_mirror.runtime._server import run as run
    from registry_mirror.runtime._server import verify_cache as verify_cache

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_app": ["build_mirror"],
        "_server": ["run", "verify_cache"],
    },
)
