"""The tracker API end to end: a real tracker process (memory and Redis stores) and the real client."""

from __future__ import annotations

import asyncio

import pytest

from p2p.errors import TrackerError
from p2p.tracker.models import BlobState, PeerInfo
from p2p.tracker_client import TrackerClient
from tests.p2p.conftest import new_digest
from tests.support.waits import eventually

MiB = 1024 * 1024
SIZE = 10 * MiB  # three 4 MiB pieces


def peer(name: str, zone: str = "z1", load: float = 0.0) -> PeerInfo:
    return PeerInfo(name, f"http://127.0.0.1:{9000 + sum(map(ord, name)) % 900}", zone, load)


def partial(digest: str, *pieces: int) -> BlobState:
    return BlobState(digest, SIZE, 4 * MiB, complete=False, pieces=frozenset(pieces))


def complete(digest: str) -> BlobState:
    return BlobState(digest, SIZE, 4 * MiB, complete=True)


async def test_announce_then_lookup_returns_piece_bitmaps(client: TrackerClient) -> None:
    digest = new_digest()
    await client.announce(peer("seed-1"), [complete(digest)])
    await client.announce(peer("leech-1"), [partial(digest, 0, 2)])
    found = {h.peer.id: h for h in await client.peers(digest)}
    assert set(found) == {"seed-1", "leech-1"}
    assert found["seed-1"].complete and found["seed-1"].pieces_held == 3
    assert [found["leech-1"].has(i) for i in range(3)] == [True, False, True]
    assert found["leech-1"].peer.url == peer("leech-1").url


async def test_lookup_ranks_same_zone_then_piece_holders_then_load(client: TrackerClient) -> None:
    digest = new_digest()
    await client.announce(peer("far-idle", zone="z2", load=0), [complete(digest)])
    await client.announce(peer("near-busy", zone="z1", load=9), [complete(digest)])
    await client.announce(peer("near-idle-few", zone="z1", load=1), [partial(digest, 1)])
    await client.announce(peer("near-idle-many", zone="z1", load=1), [partial(digest, 0, 1)])
    await client.announce(peer("near-empty", zone="z1", load=0), [partial(digest)])
    # Asking for piece 0: its holders first, then load; peers with no piece are never offered.
    ranked = [h.peer.id for h in await client.peers(digest, zone="z1", piece=0)]
    assert ranked == ["near-idle-many", "near-busy", "near-idle-few", "far-idle"]
    # Without a piece, equally loaded peers come in random order (spreads a big swarm's load).
    unhinted = [h.peer.id for h in await client.peers(digest, zone="z1")]
    assert set(unhinted[:2]) == {"near-idle-many", "near-idle-few"} and unhinted[2:] == ["near-busy", "far-idle"]
    limited = await client.peers(digest, zone="z1", exclude=["near-idle-many"], limit=1, piece=1)
    assert [h.peer.id for h in limited] == ["near-idle-few"]


async def test_reannounce_replaces_state_and_withdraw_removes(client: TrackerClient) -> None:
    digest = new_digest()
    await client.announce(peer("grower"), [partial(digest, 0)])
    await client.announce(peer("grower"), [partial(digest, 0, 1)])
    (holding,) = await client.peers(digest)
    assert holding.pieces_held == 2
    await client.withdraw("grower", [digest])
    assert await client.peers(digest) == []


async def test_heartbeat_tells_a_forgotten_peer_to_reannounce(client: TrackerClient) -> None:
    newcomer = peer(f"hb-{new_digest()[7:19]}")
    assert await client.heartbeat(newcomer) is False
    assert await client.heartbeat(newcomer) is True


async def test_fifty_concurrent_lease_requests_grant_exactly_one(client: TrackerClient) -> None:
    digest = new_digest()
    leases = await asyncio.gather(*(client.lease(digest, f"racer-{i}", ttl=30) for i in range(50)))
    winners = [lease for lease in leases if lease.granted]
    assert len(winners) == 1
    assert {lease.holder_id for lease in leases} == {winners[0].holder_id}


async def test_lease_renewal_release_and_completion(client: TrackerClient) -> None:
    digest = new_digest()
    await client.announce(peer("seed-r"), [partial(digest)])
    granted = await client.lease(digest, "seed-r", ttl=30)
    assert granted.granted and granted.holder is not None and granted.holder.id == "seed-r"
    assert (await client.lease(digest, "seed-r", ttl=30)).granted  # renewal by the holder
    waiting = await client.lease(digest, "other", ttl=30)
    assert not waiting.granted and waiting.holder_id == "seed-r" and waiting.holder is not None
    assert await client.release(digest, "other") is False
    # Announcing the blob complete ends the seed's lease.
    await client.announce(peer("seed-r"), [complete(digest)])
    assert (await client.lease(digest, "other", ttl=30)).granted
    assert await client.release(digest, "other") is True


async def test_lease_moves_on_when_the_seed_stops_renewing(client: TrackerClient) -> None:
    digest = new_digest()
    # Long enough that the refusal below comes before it runs out, even on a loaded machine.
    assert (await client.lease(digest, "dying-seed", ttl=2.0)).granted
    assert not (await client.lease(digest, "next", ttl=30)).granted
    # The lease runs out on the tracker's clock (another process, or Redis): wait for it, no fixed sleep.
    moved = await eventually(
        lambda: client.lease(digest, "next", ttl=30), lambda lease: lease.granted, "the expired lease moving on"
    )
    assert moved.granted and moved.holder_id == "next"


async def test_piece_hashes_first_writer_wins(client: TrackerClient) -> None:
    digest = new_digest()
    h0, h1, other = "0" * 64, "1" * 64, "f" * 64
    assert await client.get_pieces(digest) is None
    assert (await client.lease(digest, "seed-p", ttl=30)).granted
    await client.put_pieces(digest, "seed-p", 4 * MiB, {0: h0})
    await client.put_pieces(digest, "seed-p", 4 * MiB, {0: h0, 1: h1})  # repeating a value is fine
    with pytest.raises(TrackerError) as conflict:
        await client.put_pieces(digest, "seed-p", 4 * MiB, {1: other})
    assert conflict.value.status == 409 and conflict.value.field == "hashes.1"
    record = await client.get_pieces(digest)
    assert record is not None and dict(record.hashes) == {0: h0, 1: h1}
    assert record.size is None and not record.complete
    await client.put_pieces(digest, "seed-p", 4 * MiB, {2: "2" * 64}, size=SIZE)
    record = await client.get_pieces(digest)
    assert record is not None and record.piece_count == 3 and record.complete
    with pytest.raises(TrackerError) as size_conflict:
        await client.put_pieces(digest, "seed-p", 4 * MiB, {}, size=SIZE + 1)
    assert size_conflict.value.field == "size"
    with pytest.raises(TrackerError) as piece_size_conflict:
        await client.put_pieces(digest, "seed-p", 8 * MiB, {0: h0})
    assert piece_size_conflict.value.field == "piece_size"


async def test_only_the_lease_holder_publishes_piece_hashes(client: TrackerClient) -> None:
    digest = new_digest()
    with pytest.raises(TrackerError) as no_lease:
        await client.put_pieces(digest, "intruder", 4 * MiB, {0: "0" * 64})
    assert no_lease.value.status == 403 and no_lease.value.field == "peer_id"
    assert (await client.lease(digest, "seed-q", ttl=30)).granted
    with pytest.raises(TrackerError):
        await client.put_pieces(digest, "intruder", 4 * MiB, {0: "0" * 64})
    assert await client.get_pieces(digest) is None


async def test_peer_reported_by_two_is_left_out_of_that_digest_only(client: TrackerClient) -> None:
    digest, other = new_digest(), new_digest()
    await client.announce(peer("liar"), [complete(digest), complete(other)])
    await client.announce(peer("honest"), [complete(digest)])
    assert not await client.report("honest", "liar", digest, "piece 2 sha256 mismatch")
    assert sorted(h.peer.id for h in await client.peers(digest)) == ["honest", "liar"]  # one word is not enough
    assert await client.report("another", "liar", digest, "piece 2 sha256 mismatch")
    assert [h.peer.id for h in await client.peers(digest)] == ["honest"]
    assert [h.peer.id for h in await client.peers(other)] == ["liar"]  # its other blobs are still offered


async def test_stats_count_live_peers(client: TrackerClient) -> None:
    digest = new_digest()
    await client.announce(peer("counted"), [complete(digest)])
    stats = await client.stats()
    assert stats["store"] in ("memory", "redis")
    assert stats["peers"] >= 1 and stats["digests"] >= 1
