"""The plain parameters the p2p layer runs with (the front end builds them from its settings)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class P2PConfig:
    peer_id: str
    advertise_url: str  # where other peers reach our peer listener
    tracker_url: str
    tracker_token: str | None = None
    zone: str = ""
    piece_size: int = 4 * MiB
    max_uploads: int = 16
    origin_concurrency: int = 8  # origin fetches this node runs at once (as seed or fallback)
    upload_bandwidth: int = 0  # bytes/s for all uploads together, 0 = unlimited
    stall_timeout: float = 5.0  # a peer (or the whole swarm) that moves no bytes this long is dropped
    lease_ttl: float = 10.0
    window: int = 16  # pieces fetched in parallel ahead of the next one (they land in the file: no buffers)
    run_pieces: int = 8  # consecutive pieces one request may ask a peer for (two runs per peer fill the window)
    poll_interval: float = 0.2  # how often a waiting downloader asks the tracker again
    announce_interval: float = 0.25  # pieces of fills in progress are announced this often
    heartbeat_interval: float = 10.0
    client_ssl: ssl.SSLContext | None = None  # for peers and the tracker, when peer TLS is on
