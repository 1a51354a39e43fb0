"""What a tracker store must do; `memory_store` and `redis_store` implement it.

Liveness is per peer: each registration gets a session id that lives as long as the peer keeps
heartbeating. Holdings carry the session they were announced under, so a peer that expired and
comes back starts empty instead of reviving stale pieces, and nothing needs a sweep to be correct.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from p2p.tracker.models import BlobState, Lease, PeerHolding, PeerInfo, PieceHashes
from p2p.tracker.readiness import CatalogList


@dataclass(frozen=True)
class Registration:
    session: str
    was_live: bool  # False: the tracker had forgotten this peer, which must announce everything again


@dataclass(frozen=True)
class PieceConflict:
    field: str  # piece_size, size or hashes.<index>
    stored: str
    offered: str


@dataclass(frozen=True)
class PiecesWrite:
    """The outcome of publishing piece hashes: `conflict` set means nothing was stored and the
    record was left as it was; `replaced` means a new lease holder's hashes disagreed with an
    earlier seed's and superseded them (the earlier seed's fill had bad bytes, or lied)."""

    conflict: PieceConflict | None = None
    replaced: bool = False


@dataclass(frozen=True)
class StoreStats:
    peers: int
    digests: int
    leases: int
    excluded: int


class TrackerStore(Protocol):
    kind: str

    async def register_peer(self, peer: PeerInfo) -> Registration: ...

    async def put_holdings(self, peer_id: str, session: str, blobs: Sequence[BlobState], cap: int) -> int:
        """Stores what fits under `cap` digests per peer (updates to digests it holds always fit);
        returns how many of `blobs` were refused for the cap."""
        ...

    async def remove_holdings(self, peer_id: str, digests: Sequence[str]) -> None: ...

    async def holders(self, digest: str) -> list[PeerHolding]:
        """Live, not excluded peers holding at least one piece of `digest`."""
        ...

    async def get_peer(self, peer_id: str) -> PeerInfo | None: ...

    async def acquire_lease(self, digest: str, peer_id: str, ttl: float) -> tuple[Lease, bool]:
        """Grant, renew (when `peer_id` holds it) or refuse; the bool says whether it was renewed."""
        ...

    async def release_lease(self, digest: str, peer_id: str) -> bool: ...

    async def lease_holder(self, digest: str) -> str | None: ...

    async def put_piece_hashes(
        self, digest: str, writer: str, piece_size: int, size: int | None, hashes: Mapping[int, str]
    ) -> PiecesWrite:
        """All or nothing. Values a writer published before are fixed for that writer (a conflict
        with them is refused and stores nothing); values from other writers (seeds whose lease
        ended) are replaced as a whole when the new writer disagrees with any of them. Expiry
        moves on only when something was stored."""
        ...

    async def reset_piece_hashes(self, digest: str, writer: str) -> bool:
        """Drops the record if `writer` contributed to it (its fill failed verification), and with
        it every report and exclusion made against the digest's holders on those hashes."""
        ...

    async def get_piece_hashes(self, digest: str) -> PieceHashes | None: ...

    async def report_peer(
        self, digest: str, peer_id: str, reporter: str, *, shown: bool, reporters_needed: int, ttl: float
    ) -> bool:
        """Records a report against `peer_id` for `digest` only. The peer is left out of lookups
        for that digest for `ttl` once `reporters_needed` distinct reporters reported it within
        `ttl`, or at once when the reporter showed a failed piece (`shown`). True when this
        report excluded it (it was not excluded already)."""
        ...

    async def live_peers(self) -> list[PeerInfo]:
        """Every peer whose heartbeat is within the TTL."""
        ...

    async def put_catalog(self, name: str, serial: int, peer_id: str, digests: Sequence[str]) -> None:
        """`peer_id` says catalog (name, serial) has these blobs (one offer per peer and serial)."""
        ...

    async def catalog_lists(self, name: str) -> list[CatalogList]:
        """Every list offered for the kept serials of `name` (the newest few)."""
        ...

    async def catalog_names(self) -> list[str]: ...

    async def stats(self) -> StoreStats: ...

    async def sweep(self) -> None:
        """Drop expired entries; only bounds memory, correctness never waits for it."""
        ...

    async def close(self) -> None: ...
