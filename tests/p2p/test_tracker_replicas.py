"""Two tracker replicas on one real redis-server agree on peers, leases, hashes and exclusions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from p2p.errors import TrackerError
from p2p.tracker.models import BlobState, PeerInfo
from p2p.tracker_client import TrackerClient
from tests.p2p.conftest import new_digest
from tests.p2p.harness import TOKEN, tracker
from tests.support.waits import eventually

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def replica_urls(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    workdir = tmp_path_factory.mktemp("replicas")
    with tracker(workdir, store=redis_url) as a, tracker(workdir, store=redis_url) as b:
        yield a.url, b.url


@pytest.fixture
async def replicas(replica_urls: tuple[str, str]) -> AsyncIterator[tuple[TrackerClient, TrackerClient]]:
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(TrackerClient(replica_urls[0], TOKEN))
        b = await stack.enter_async_context(TrackerClient(replica_urls[1], TOKEN))
        yield a, b


async def test_peers_announced_on_one_replica_are_found_on_the_other(
    replicas: tuple[TrackerClient, TrackerClient],
) -> None:
    a, b = replicas
    digest = new_digest()
    await a.announce(PeerInfo("node-a", "http://127.0.0.1:9201", "z1"), [BlobState(digest, 5 * MiB, complete=True)])
    await b.announce(
        PeerInfo("node-b", "http://127.0.0.1:9202", "z2"), [BlobState(digest, 5 * MiB, pieces=frozenset({1}))]
    )
    for client in (a, b):
        assert [h.peer.id for h in await client.peers(digest, zone="z2")] == ["node-b", "node-a"]
    await b.withdraw("node-a", [digest])
    assert [h.peer.id for h in await a.peers(digest)] == ["node-b"]


async def test_concurrent_leases_across_replicas_grant_exactly_one(
    replicas: tuple[TrackerClient, TrackerClient],
) -> None:
    digest = new_digest()
    leases = await asyncio.gather(*(replicas[i % 2].lease(digest, f"racer-{i}", ttl=30) for i in range(50)))
    assert sum(lease.granted for lease in leases) == 1
    assert len({lease.holder_id for lease in leases}) == 1


async def test_lease_moves_on_across_replicas_after_expiry(replicas: tuple[TrackerClient, TrackerClient]) -> None:
    a, b = replicas
    digest = new_digest()
    # Long enough that the refusal below comes before it runs out, even on a loaded machine.
    assert (await a.lease(digest, "seed-a", ttl=2.0)).granted
    assert (await b.lease(digest, "seed-b", ttl=30)).holder_id == "seed-a"
    # The lease runs out on the Redis server's clock: wait for it, no fixed sleep.
    await eventually(
        lambda: b.lease(digest, "seed-b", ttl=30),
        lambda lease: lease.granted,
        "the expired lease moving on to the other replica's peer",
    )
    assert (await a.lease(digest, "seed-a", ttl=30)).holder_id == "seed-b"


async def test_piece_hashes_and_exclusions_are_shared(replicas: tuple[TrackerClient, TrackerClient]) -> None:
    a, b = replicas
    digest = new_digest()
    assert (await a.lease(digest, "seed-h", ttl=30)).granted
    await b.put_pieces(digest, "seed-h", 4 * MiB, {0: "a" * 64})
    with pytest.raises(TrackerError) as conflict:
        await a.put_pieces(digest, "seed-h", 4 * MiB, {0: "b" * 64})
    assert conflict.value.status == 409
    record = await a.get_pieces(digest)
    assert record is not None and dict(record.hashes) == {0: "a" * 64}

    await a.announce(PeerInfo("bad-node", "http://127.0.0.1:9203"), [BlobState(digest, 4 * MiB, complete=True)])
    await a.report("node-x", "bad-node", digest, "piece 0 sha256 mismatch")
    await b.report("node-y", "bad-node", digest, "piece 1 sha256 mismatch")  # extends, never shortens
    assert await b.peers(digest) == []
    assert (await a.stats())["excluded"] >= 1
