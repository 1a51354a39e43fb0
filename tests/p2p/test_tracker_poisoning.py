"""Piece hashes cannot be poisoned for good, and honest peers are not punished for it (issue 11,
item 2): a real tracker process (memory and Redis stores) and the real client."""

from __future__ import annotations

import hashlib

import pytest

from p2p.errors import TrackerError
from p2p.tracker.models import BlobState, PeerInfo
from p2p.tracker_client import TrackerClient
from tests.p2p.conftest import new_digest

MiB = 1024 * 1024
SIZE = 10 * MiB  # three 4 MiB pieces
GOOD = {i: hashlib.sha256(f"piece {i}".encode()).hexdigest() for i in range(3)}
BAD = "b" * 64
RECEIVED = "c" * 64


def peer(name: str) -> PeerInfo:
    return PeerInfo(name, f"http://127.0.0.1:{9000 + sum(map(ord, name)) % 900}")


def complete(digest: str) -> BlobState:
    return BlobState(digest, SIZE, 4 * MiB, complete=True)


async def test_a_seed_whose_fill_failed_withdraws_its_hashes(client: TrackerClient) -> None:
    digest = new_digest()
    assert (await client.lease(digest, "bad-seed", ttl=30)).granted
    await client.put_pieces(digest, "bad-seed", 4 * MiB, {0: BAD, 1: GOOD[1], 2: GOOD[2]}, size=SIZE)
    assert not await client.reset_pieces(digest, "bystander")  # only a writer may take them back
    assert await client.get_pieces(digest) is not None
    assert await client.reset_pieces(digest, "bad-seed")
    assert await client.get_pieces(digest) is None
    # The record starts over: the next seed publishes the right hashes without any conflict.
    await client.release(digest, "bad-seed")
    assert (await client.lease(digest, "good-seed", ttl=30)).granted
    await client.put_pieces(digest, "good-seed", 4 * MiB, GOOD, size=SIZE)
    record = await client.get_pieces(digest)
    assert record is not None and dict(record.hashes) == GOOD and record.complete


async def test_a_new_lease_holder_replaces_an_earlier_seeds_conflicting_hashes(client: TrackerClient) -> None:
    """The seed that poisoned a piece never withdrew (it crashed): the next seed is not refused."""
    digest = new_digest()
    assert (await client.lease(digest, "crashed-seed", ttl=30)).granted
    await client.put_pieces(digest, "crashed-seed", 4 * MiB, {0: BAD, 1: GOOD[1]})
    await client.release(digest, "crashed-seed")
    assert (await client.lease(digest, "next-seed", ttl=30)).granted
    await client.put_pieces(digest, "next-seed", 4 * MiB, {0: GOOD[0]}, size=SIZE)
    record = await client.get_pieces(digest)
    assert record is not None and dict(record.hashes) == {0: GOOD[0]}  # none of the old values survive
    with pytest.raises(TrackerError) as not_holder:
        await client.put_pieces(digest, "crashed-seed", 4 * MiB, {0: BAD})
    assert not_holder.value.status == 403  # the old seed no longer holds the lease


async def test_a_seed_contradicting_itself_is_refused_and_stores_nothing(client: TrackerClient) -> None:
    digest = new_digest()
    assert (await client.lease(digest, "seed", ttl=30)).granted
    await client.put_pieces(digest, "seed", 4 * MiB, {0: GOOD[0]})
    with pytest.raises(TrackerError) as conflict:
        await client.put_pieces(digest, "seed", 4 * MiB, {1: GOOD[1], 0: BAD})
    assert conflict.value.status == 409 and conflict.value.field == "hashes.0"
    record = await client.get_pieces(digest)
    assert record is not None and dict(record.hashes) == {0: GOOD[0]}  # all or nothing: piece 1 not stored


async def test_a_shown_failed_piece_excludes_for_that_digest_at_once(client: TrackerClient) -> None:
    digest, other = new_digest(), new_digest()
    assert (await client.lease(digest, "seed-s", ttl=30)).granted
    await client.put_pieces(digest, "seed-s", 4 * MiB, GOOD, size=SIZE)
    await client.announce(peer("liar-s"), [complete(digest), complete(other)])
    # Evidence the tracker cannot confirm counts as one reporter's word only.
    assert not await client.report("reporter-1", "liar-s", digest, "x", evidence=(1, BAD, RECEIVED))
    assert not await client.report("reporter-1", "liar-s", digest, "x", evidence=(1, GOOD[1], GOOD[1]))
    assert [h.peer.id for h in await client.peers(digest)] == ["liar-s"]
    assert await client.report("reporter-1", "liar-s", digest, "x", evidence=(1, GOOD[1], RECEIVED))
    assert await client.peers(digest) == []
    assert [h.peer.id for h in await client.peers(other)] == ["liar-s"]


async def test_withdrawn_hashes_take_the_exclusions_made_on_them(client: TrackerClient) -> None:
    """The case seen in the issue: a poisoned hash made downloaders report an honest peer."""
    digest = new_digest()
    assert (await client.lease(digest, "poisoning-seed", ttl=30)).granted
    await client.put_pieces(digest, "poisoning-seed", 4 * MiB, {**GOOD, 0: BAD}, size=SIZE)
    await client.announce(peer("honest-h"), [complete(digest)])
    for reporter in ("downloader-1", "downloader-2"):
        await client.report(reporter, "honest-h", digest, "bad piece 0", evidence=(0, BAD, GOOD[0]))
    assert await client.peers(digest) == []
    assert await client.reset_pieces(digest, "poisoning-seed")
    assert [h.peer.id for h in await client.peers(digest)] == ["honest-h"]
    # Reports against the withdrawn hash are no evidence any more.
    assert not await client.report("downloader-3", "honest-h", digest, "late", evidence=(0, BAD, GOOD[0]))
    assert [h.peer.id for h in await client.peers(digest)] == ["honest-h"]


async def test_conflicts_do_not_exclude_anyone(client: TrackerClient) -> None:
    digest = new_digest()
    await client.announce(peer("seed-c"), [complete(digest)])
    assert (await client.lease(digest, "seed-c", ttl=30)).granted
    await client.put_pieces(digest, "seed-c", 4 * MiB, {0: GOOD[0]})
    with pytest.raises(TrackerError):
        await client.put_pieces(digest, "seed-c", 4 * MiB, {0: BAD})
    assert [h.peer.id for h in await client.peers(digest)] == ["seed-c"]
