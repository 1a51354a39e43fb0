"""The p2p tracker: which peer holds which pieces of which blob, piece hashes, and seed leases.

Kept import-light on purpose: `p2p.tracker.models` is shared with the client, so the Starlette app
lives in `p2p.tracker.app` and is imported only by whoever serves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from p2p.tracker.app import TrackerConfig as TrackerConfig
    from p2p.tracker.app import create_app as create_app
    from p2p.tracker.auth import Credentials as Credentials
    from p2p.tracker.auth import load_node_tokens as load_node_tokens
    from p2p.tracker.auth import node_token as node_token
    from p2p.tracker.memory_store import MemoryStore as MemoryStore
    from p2p.tracker.models import PEER_ID_RE as PEER_ID_RE
    from p2p.tracker.server import ServerSettings as ServerSettings
    from p2p.tracker.server import TLSFiles as TLSFiles
    from p2p.tracker.server import serve as serve

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "app": ["TrackerConfig", "create_app"],
        "auth": ["Credentials", "load_node_tokens", "node_token"],
        "memory_store": ["MemoryStore"],
        "models": ["PEER_ID_RE"],
        "server": ["ServerSettings", "TLSFiles", "serve"],
    },
)
