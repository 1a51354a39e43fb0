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
    await store.put_holdings(PEER.id, registration.session, [blob(0, 1)], 10)
    for _ in range(5):
        clock.now += 8.0
        assert (await store.register_peer(PEER)).was_live
    assert [h.peer.id for h in await store.holders(DIGEST)] == ["node-a"]


async def test_an_expired_peer_comes_back_without_its_old_pieces() -> None:
    clock = Clock()
    store = MemoryStore(peer_ttl=10.0, clock=clock)
    registration = await store.register_peer(PEER)
    await store.put_holdings(PEER.id, registration.session, [blob(0)], 10)
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


async def test_sweep_forgets_expired_entries() -> None:
    clock = Clock()
    store = MemoryStore(peer_ttl=10.0, pieces_ttl=20.0, clock=clock)
    registration = await store.register_peer(PEER)
    await store.put_holdings(PEER.id, registration.session, [blob(0)], 10)
    await store.acquire_lease(DIGEST, PEER.id, 5.0)
    await store.put_piece_hashes(DIGEST, PEER.id, 64 * 1024, None, {0: "0" * 64})
    clock.now += 21.0
    stats = await store.stats()
    assert (stats.peers, stats.digests, stats.leases) == (0, 0, 0)
    assert await store.get_piece_hashes(DIGEST) is None


async def test_exclusion_is_per_digest_and_ends_after_its_ttl() -> None:
    clock = Clock()
    store = MemoryStore(peer_ttl=100.0, clock=clock)
    other = "sha256:" + "2" * 64
    registration = await store.register_peer(PEER)
    await store.put_holdings(PEER.id, registration.session, [blob(3), BlobState(other, 1024, 64 * 1024, True)], 10)
    assert not await store.report_peer(DIGEST, PEER.id, "r1", shown=False, reporters_needed=2, ttl=30.0)
    assert not await store.report_peer(DIGEST, PEER.id, "r1", shown=False, reporters_needed=2, ttl=30.0)
    assert len(await store.holders(DIGEST)) == 1  # the same reporter twice is still one word
    assert await store.report_peer(DIGEST, PEER.id, "r2", shown=False, reporters_needed=2, ttl=30.0)
    assert await store.holders(DIGEST) == []
    assert len(await store.holders(other)) == 1
    clock.now += 31.0
    assert len(await store.holders(DIGEST)) == 1


async def test_reports_older_than_the_ttl_do_not_add_up() -> None:
    clock = Clock()
    store = MemoryStore(peer_ttl=1000.0, clock=clock)
    registration = await store.register_peer(PEER)
    await store.put_holdings(PEER.id, registration.session, [blob(3)], 10)
    assert not await store.report_peer(DIGEST, PEER.id, "r1", shown=False, reporters_needed=2, ttl=30.0)
    clock.now += 31.0
    assert not await store.report_peer(DIGEST, PEER.id, "r2", shown=False, reporters_needed=2, ttl=30.0)
    assert len(await store.holders(DIGEST)) == 1


async def test_piece_hashes_expire_unless_something_is_stored() -> None:
    """A refused conflict must not keep a record alive (it used to extend the expiry first)."""
    clock = Clock()
    store = MemoryStore(peer_ttl=10.0, pieces_ttl=20.0, clock=clock)
    assert (await store.put_piece_hashes(DIGEST, "seed", 64 * 1024, None, {0: "0" * 64})).conflict is None
    clock.now += 15.0
    assert (await store.put_piece_hashes(DIGEST, "seed", 64 * 1024, None, {0: "f" * 64})).conflict is not None
    clock.now += 6.0
    assert await store.get_piece_hashes(DIGEST) is None


async def test_records_per_peer_are_capped_and_a_new_session_starts_empty() -> None:
    clock = Clock()
    store = MemoryStore(peer_ttl=10.0, clock=clock)
    digests = ["sha256:" + str(i) * 64 for i in range(5)]
    registration = await store.register_peer(PEER)
    blobs = [BlobState(d, 1024, 64 * 1024, True) for d in digests]
    assert await store.put_holdings(PEER.id, registration.session, blobs, 3) == 2
    assert await store.put_holdings(PEER.id, registration.session, blobs[:3], 3) == 0  # updates always fit
    await store.remove_holdings(PEER.id, digests[:1])
    assert await store.put_holdings(PEER.id, registration.session, blobs[4:], 3) == 0
    clock.now += 11.0
    registration = await store.register_peer(PEER)
    assert await store.put_holdings(PEER.id, registration.session, blobs[:3], 3) == 0
