"""The default tracker store: dictionaries with deadlines on a monotonic clock, for one replica."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from p2p.tracker.models import BlobState, Lease, PeerHolding, PeerInfo, PieceHashes
from p2p.tracker.readiness import CatalogList, list_id
from p2p.tracker.store import PieceConflict, PiecesWrite, Registration, StoreStats

KEPT_SERIALS = 4  # per catalog name: the newest few (a rollout, and what it replaces)
MAX_CATALOG_NAMES = 1000


@dataclass
class _Peer:
    info: PeerInfo
    session: str
    expires: float


@dataclass(frozen=True)
class _Holding:
    session: str
    blob: BlobState
    bitmap: bytes


@dataclass
class _Pieces:
    piece_size: int
    size: int | None
    expires: float
    hashes: dict[int, str] = field(default_factory=dict)
    writers: set[str] = field(default_factory=set)  # who published these values; any may reset them


class MemoryStore:
    kind = "memory"

    def __init__(
        self,
        peer_ttl: float,
        pieces_ttl: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._peer_ttl = peer_ttl
        self._pieces_ttl = pieces_ttl
        self._clock = clock
        self._peers: dict[str, _Peer] = {}
        self._holdings: dict[str, dict[str, _Holding]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._pieces: dict[str, _Pieces] = {}
        self._excluded: dict[tuple[str, str], float] = {}  # (digest, peer) -> until
        self._reports: dict[tuple[str, str], dict[str, float]] = {}  # (digest, peer) -> reporter -> until
        self._records: dict[str, set[str]] = {}  # peer -> digests it holds (for the per-peer cap)
        # name -> serial -> list id -> (digests, offering peer ids)
        self._catalogs: dict[str, dict[int, dict[str, tuple[tuple[str, ...], set[str]]]]] = {}

    def _live_peer(self, peer_id: str) -> _Peer | None:
        peer = self._peers.get(peer_id)
        if peer is not None and peer.expires <= self._clock():
            del self._peers[peer_id]
            return None
        return peer

    async def register_peer(self, peer: PeerInfo) -> Registration:
        current = self._live_peer(peer.id)
        session = current.session if current else secrets.token_hex(8)
        if current is None:
            self._forget_records(peer.id)  # a new session starts empty: its old records are stale
        self._peers[peer.id] = _Peer(peer, session, self._clock() + self._peer_ttl)
        return Registration(session, current is not None)

    async def get_peer(self, peer_id: str) -> PeerInfo | None:
        peer = self._live_peer(peer_id)
        return None if peer is None else peer.info

    def _forget_records(self, peer_id: str) -> None:
        for digest in self._records.pop(peer_id, set()):
            holders = self._holdings.get(digest)
            if holders is not None:
                holders.pop(peer_id, None)
                if not holders:
                    del self._holdings[digest]

    async def put_holdings(self, peer_id: str, session: str, blobs: Sequence[BlobState], cap: int) -> int:
        records = self._records.setdefault(peer_id, set())
        refused = 0
        for blob in blobs:
            if blob.digest not in records and len(records) >= cap:
                refused += 1
                continue
            records.add(blob.digest)
            self._holdings.setdefault(blob.digest, {})[peer_id] = _Holding(session, blob, blob.bitmap())
        return refused

    async def remove_holdings(self, peer_id: str, digests: Sequence[str]) -> None:
        records = self._records.get(peer_id, set())
        for digest in digests:
            records.discard(digest)
            holders = self._holdings.get(digest)
            if holders is not None:
                holders.pop(peer_id, None)
                if not holders:
                    del self._holdings[digest]

    def _excluded_now(self, digest: str, peer_id: str) -> bool:
        until = self._excluded.get((digest, peer_id))
        return until is not None and until > self._clock()

    async def holders(self, digest: str) -> list[PeerHolding]:
        found = []
        for peer_id, holding in list(self._holdings.get(digest, {}).items()):
            peer = self._live_peer(peer_id)
            if peer is None or peer.session != holding.session:
                del self._holdings[digest][peer_id]
                continue
            if self._excluded_now(digest, peer_id):
                continue
            blob = holding.blob
            found.append(PeerHolding(peer.info, blob.size, blob.piece_size, blob.complete, holding.bitmap))
        return found

    async def acquire_lease(self, digest: str, peer_id: str, ttl: float) -> tuple[Lease, bool]:
        now = self._clock()
        holder, expires = self._leases.get(digest, ("", 0.0))
        if expires > now and holder != peer_id:
            return Lease(False, holder, expires - now, await self.get_peer(holder)), False
        renewed = expires > now
        self._leases[digest] = (peer_id, now + ttl)
        return Lease(True, peer_id, ttl, await self.get_peer(peer_id)), renewed

    async def release_lease(self, digest: str, peer_id: str) -> bool:
        holder, expires = self._leases.get(digest, ("", 0.0))
        if holder != peer_id or expires <= self._clock():
            return False
        del self._leases[digest]
        return True

    async def lease_holder(self, digest: str) -> str | None:
        holder, expires = self._leases.get(digest, ("", 0.0))
        return holder if expires > self._clock() else None

    async def put_piece_hashes(
        self, digest: str, writer: str, piece_size: int, size: int | None, hashes: Mapping[int, str]
    ) -> PiecesWrite:
        now = self._clock()
        record = self._pieces.get(digest)
        if record is None or record.expires <= now:
            record = None
        replaced = False
        if record is not None:
            conflict = _first_conflict(record, piece_size, size, hashes)
            if conflict is not None:
                if writer in record.writers:
                    return PiecesWrite(conflict=conflict)  # a seed contradicting itself: refused
                # An earlier seed's values disagree with the current lease holder's: that seed's
                # fill was bad (or it lied). Its values go, and what was said on them with it.
                self._drop_digest(digest)
                record, replaced = None, True
        if record is None:
            record = self._pieces[digest] = _Pieces(piece_size, size, now)
        record.writers.add(writer)
        record.expires = now + self._pieces_ttl
        if size is not None:
            record.size = size
        record.hashes.update(hashes)
        return PiecesWrite(replaced=replaced)

    async def reset_piece_hashes(self, digest: str, writer: str) -> bool:
        record = self._pieces.get(digest)
        if record is None or writer not in record.writers:
            return False
        self._drop_digest(digest)
        return True

    def _drop_digest(self, digest: str) -> None:
        """The piece hashes of `digest` and every report and exclusion made on them."""
        self._pieces.pop(digest, None)
        for key in [k for k in self._excluded if k[0] == digest]:
            del self._excluded[key]
        for key in [k for k in self._reports if k[0] == digest]:
            del self._reports[key]

    async def get_piece_hashes(self, digest: str) -> PieceHashes | None:
        record = self._pieces.get(digest)
        if record is None or record.expires <= self._clock():
            return None
        return PieceHashes(digest, record.piece_size, record.size, dict(record.hashes))

    async def report_peer(
        self, digest: str, peer_id: str, reporter: str, *, shown: bool, reporters_needed: int, ttl: float
    ) -> bool:
        now = self._clock()
        key = (digest, peer_id)
        reporters = {r: t for r, t in self._reports.get(key, {}).items() if t > now}
        reporters[reporter] = now + ttl
        self._reports[key] = reporters
        if not shown and len(reporters) < reporters_needed:
            return False
        fresh = not self._excluded_now(digest, peer_id)
        self._excluded[key] = max(self._excluded.get(key, 0.0), now + ttl)
        return fresh

    async def live_peers(self) -> list[PeerInfo]:
        return [peer.info for peer_id in list(self._peers) if (peer := self._live_peer(peer_id)) is not None]

    async def put_catalog(self, name: str, serial: int, peer_id: str, digests: Sequence[str]) -> None:
        if name not in self._catalogs and len(self._catalogs) >= MAX_CATALOG_NAMES:
            return
        serials = self._catalogs.setdefault(name, {})
        offers = serials.setdefault(serial, {})
        for _, voters in offers.values():
            voters.discard(peer_id)  # a peer's latest offer for a serial replaces its earlier one
        offers.setdefault(list_id(digests), (tuple(digests), set()))[1].add(peer_id)
        for old in sorted(serials)[:-KEPT_SERIALS]:
            del serials[old]

    async def catalog_lists(self, name: str) -> list[CatalogList]:
        return [
            CatalogList(serial, digests, frozenset(voters))
            for serial, offers in self._catalogs.get(name, {}).items()
            for digests, voters in offers.values()
        ]

    async def catalog_names(self) -> list[str]:
        return sorted(self._catalogs)

    async def stats(self) -> StoreStats:
        await self.sweep()
        return StoreStats(len(self._peers), len(self._holdings), len(self._leases), len(self._excluded))

    async def sweep(self) -> None:
        now = self._clock()
        self._peers = {k: p for k, p in self._peers.items() if p.expires > now}
        self._leases = {k: v for k, v in self._leases.items() if v[1] > now}
        self._pieces = {k: p for k, p in self._pieces.items() if p.expires > now}
        self._excluded = {k: t for k, t in self._excluded.items() if t > now}
        self._reports = {k: live for k, r in self._reports.items() if (live := {p: t for p, t in r.items() if t > now})}
        for digest in list(self._holdings):
            holders = {
                peer_id: h
                for peer_id, h in self._holdings[digest].items()
                if (peer := self._peers.get(peer_id)) is not None and peer.session == h.session
            }
            if holders:
                self._holdings[digest] = holders
            else:
                del self._holdings[digest]
        self._records = {
            peer_id: {d for d in digests if peer_id in self._holdings.get(d, {})}
            for peer_id, digests in self._records.items()
            if peer_id in self._peers
        }

    async def close(self) -> None:
        return None


def _first_conflict(
    record: _Pieces, piece_size: int, size: int | None, hashes: Mapping[int, str]
) -> PieceConflict | None:
    if record.piece_size != piece_size:
        return PieceConflict("piece_size", str(record.piece_size), str(piece_size))
    if size is not None and record.size is not None and record.size != size:
        return PieceConflict("size", str(record.size), str(size))
    for index, value in sorted(hashes.items()):
        stored = record.hashes.get(index)
        if stored is not None and stored != value:
            return PieceConflict(f"hashes.{index}", stored, value)
    return None
