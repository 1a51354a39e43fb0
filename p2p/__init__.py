"""Peers: the node, its piece listener and client, the swarm, the tracker and its client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from p2p.config import P2PConfig as P2PConfig
    from p2p.errors import TrackerError as TrackerError
    from p2p.node import P2PNode as P2PNode
    from p2p.peer_server import create_peer_app as create_peer_app
    from p2p.tracker_client import TrackerClient as TrackerClient

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["P2PConfig"],
        "errors": ["TrackerError"],
        "node": ["P2PNode"],
        "peer_server": ["create_peer_app"],
        "tracker_client": ["TrackerClient"],
    },
)
