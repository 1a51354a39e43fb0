"""TTL behaviour of the in-memory store on a hand-driven clock (no sleeping)."""

from __future__ import annotations

from p2p.tracker.memory_store import MemoryStore
from p2p.tracker.models import BlobState, PeerInfo

DIGEST = "sha256:" + "1" * 64
PEER = PeerInfo("node-a", "http://127.0.0.1:9001", "z1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def blob(*pieces: int) -> BlobState:
    return BlobState(DIGEST, size=8 * 64 * 1024, piece_size=64 * 1024, pieces=frozenset(pieces))


async def test_heartbeats_keep_a_peer_and_its_pieces_alive() -> None:
    clock = Clock()
    store = MemoryStore(peer_ttl=10.0, clock=clock)
    registration = await store.register_peer(PEER)
    await store.put_holdings(PEER.id, registration.session, [blob(0, 1)])
    for _ in range(5):
        clock.now += 8.0
        assert (await store.register_peer(PEER)).was_live
    assert [h.peer.id for h in await store.holders(DIGEST)] == ["node-a"]


async def test_an_expired_peer_comes_back_without_its_old_pieces() -> None:
    clock = Clock()
    store = MemoryStore(peer_ttl=10.0, clock=clock)
    registration = await store.register_peer(PEER)
    await store.put_holdings(PEER.id, registration.session, [blob(0)])
    clock.now += 10.5
    again = await store.register_peer(PEER)  # before any lookup could prune the old holding
    assert not again.was_live and again.session != registration.session
    assert await store.holders(DIGEST) == []


async def test_lease_is_exclusive_until_it_expires() -> None:
    clock = Clock()
    store = MemoryStore(peer_ttl=10.0, clock=clock)
    first, _ = await store.acquire_lease(DIGEST, "a", 5.0)
    second, _ = await store.acquire_lease(DIGEST, "b", 5.0)
    assert first.granted and not second.granted and second.holder_id == "a"
    renewed, was_renewal = await store.acquire_lease(DIGEST, "a", 5.0)
    assert renewed.granted and was_renewal
    clock.now += 5.01
    moved, _ = await store.acquire_lease(DIGEST, "b", 5.0)
    assert moved.granted and moved.holder_id == "b"


async def test_exclusion_ends_after_its_ttl() -> None:
    clock = Clock()
    store = MemoryStore(peer_ttl=100.0, clock=clock)
    registration = await store.register_peer(PEER)
    await store.put_holdings(PEER.id, registration.session, [blob(3)])
    assert await store.exclude_peer(PEER.id, 30.0)
    assert await store.holders(DIGEST) == []
    clock.now += 31.0
    assert len(await store.holders(DIGEST)) == 1


async def test_sweep_forgets_expired_entries() -> None:
    clock = Clock()
    store = MemoryStore(peer_ttl=10.0, pieces_ttl=20.0, clock=clock)
    registration = await store.register_peer(PEER)
    await store.put_holdings(PEER.id, registration.session, [blob(0)])
    await store.acquire_lease(DIGEST, PEER.id, 5.0)
    await store.put_piece_hashes(DIGEST, 64 * 1024, None, {0: "0" * 64})
    clock.now += 21.0
    stats = await store.stats()
    assert (stats.peers, stats.digests, stats.leases) == (0, 0, 0)
    assert await store.get_piece_hashes(DIGEST) is None
