"""Rollout readiness on the tracker (memory and Redis stores, a real tracker process): the share
of live peers, overall and per zone, holding every blob of a catalog or of a list of digests."""

from __future__ import annotations

import httpx
import pytest

from p2p.errors import TrackerError
from p2p.tracker.models import BlobState, PeerInfo
from p2p.tracker_client import TrackerClient
from tests.p2p.conftest import new_digest
from tests.p2p.harness import TOKEN

SIZE = 1 << 20


def peer(name: str, zone: str) -> PeerInfo:
    return PeerInfo(name, f"http://127.0.0.1:{9100 + sum(map(ord, name)) % 800}", zone)


def whole(digest: str) -> BlobState:
    return BlobState(digest, SIZE, 1 << 20, complete=True)


async def test_catalog_readiness_overall_per_zone_and_by_serial(client: TrackerClient) -> None:
    blobs = [new_digest() for _ in range(3)]
    newer = [*blobs, new_digest()]
    peers = [peer("r-a1", "a"), peer("r-a2", "a"), peer("r-b1", "b"), peer("r-b2", "b")]
    for each in peers:
        await client.heartbeat(each)
    assert await client.catalog_readiness("rollout") is None  # nobody offered it yet
    for each in peers[:3]:
        await client.offer_catalog("rollout", 7, each.id, blobs)
    # A fourth peer offers a different list for the same serial: the majority's list stands.
    await client.offer_catalog("rollout", 7, peers[3].id, [new_digest()])
    await client.announce(peers[0], [whole(d) for d in blobs])
    await client.announce(peers[2], [whole(d) for d in blobs])
    await client.announce(peers[1], [whole(d) for d in blobs[:2]] + [BlobState(blobs[2], SIZE * 4, 1 << 20)])
    answer = await client.catalog_readiness("rollout")
    assert answer is not None
    assert (answer["serial"], answer["digests"], answer["live"], answer["ready"], answer["offered_by"]) == (
        7,
        3,
        4,
        2,
        3,
    )
    assert answer["share"] == 0.5 and answer["ready_peers"] == ["r-a1", "r-b1"]
    assert answer["zones"] == {"a": {"live": 2, "ready": 1, "share": 0.5}, "b": {"live": 2, "ready": 1, "share": 0.5}}

    # A partial holding does not count; completing it does.
    await client.announce(peers[1], [whole(blobs[2])])
    assert (await client.catalog_readiness("rollout", 7))["ready"] == 3  # type: ignore[index]
    # A newer serial is what "no serial" means once a live peer offers it.
    await client.offer_catalog("rollout", 8, peers[0].id, newer)
    latest = await client.catalog_readiness("rollout")
    assert latest is not None and (latest["serial"], latest["ready"], latest["digests"]) == (8, 0, 4)
    assert (await client.catalog_readiness("rollout", 7))["ready"] == 3  # type: ignore[index]
    assert await client.catalog_readiness("rollout", 6) is None

    # An explicit list of digests, no catalog needed.
    async with httpx.AsyncClient(base_url=client.base_url, headers=client.headers) as http:
        listed = (await http.post("/v1/readiness", json={"digests": blobs[:1]})).json()
        assert (listed["live"], listed["ready"]) == (4, 3)
        bad = await http.post("/v1/readiness", json={"digests": ["md5:x"]})
        assert bad.status_code == 400 and bad.json()["field"] == "digests.0"
        assert (await http.get("/v1/readiness")).json()["field"] == "catalog"
        assert (await http.get("/v1/readiness", params={"catalog": "rollout", "serial": "-1"})).status_code == 400
        stranger = await http.put("/v1/catalogs/rollout/9", json={"peer_id": "never-seen", "digests": blobs})
        assert stranger.status_code == 409 and stranger.json()["field"] == "peer_id"
        assert (await http.put("/v1/catalogs/bad name/9", json={"peer_id": "r-a1", "digests": []})).status_code in (
            400,
            404,
        )
        assert (await http.put("/v1/catalogs/ok/9", json={"peer_id": "r-a1", "digests": [], "x": 1})).status_code == 400


async def test_offering_a_catalog_needs_the_token(tracker_url: str) -> None:
    async with TrackerClient(tracker_url, "wrong-" + TOKEN) as wrong:
        with pytest.raises(TrackerError) as caught:
            await wrong.offer_catalog("c", 1, "p", [])
        assert caught.value.status == 401
