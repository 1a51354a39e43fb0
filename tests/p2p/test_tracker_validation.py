"""Every malformed input is a 400 naming the field (or 401/413), checked against a real tracker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.p2p.conftest import new_digest
from tests.p2p.harness import TOKEN


@pytest.fixture(scope="module")
def tracker_url(memory_tracker_url: str) -> str:
    return memory_tracker_url  # store-independent checks: one tracker is enough


PEER = {"id": "node-1", "url": "http://127.0.0.1:5000", "zone": "z1", "load": 0}


def blob(**overrides: Any) -> dict[str, Any]:
    return {
        "digest": new_digest(),
        "size": 10 * 2**20,
        "piece_size": 4 * 2**20,
        "complete": False,
        "pieces": [0],
        **overrides,
    }


def announce(peer: dict[str, Any] | None = None, blobs: Any = None) -> dict[str, Any]:
    return {"peer": peer or PEER, "blobs": [blob()] if blobs is None else blobs}


@pytest.fixture
async def http(tracker_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=tracker_url, headers=headers) as c:
        yield c


BAD_ANNOUNCES = [
    ({"peer": PEER}, "blobs"),
    ({**announce(), "extra": 1}, "extra"),
    (announce(blobs=[blob(digest="sha256:totallywrong")]), "blobs.0.digest"),
    (announce(blobs=[blob(digest="SHA256:" + "A" * 64)]), "blobs.0.digest"),
    (announce(blobs=[blob() for _ in range(1025)]), "blobs"),
    (announce(blobs=[blob(pieces=[3])]), "blobs.0.pieces.0"),
    (announce(blobs=[blob(pieces=[-1])]), "blobs.0.pieces.0"),
    (announce(blobs=[blob(pieces=list(range(4)))]), "blobs.0.pieces"),
    (announce(blobs=[blob(pieces="//8=")]), "blobs.0.pieces"),  # 2 bytes for 3 pieces
    (announce(blobs=[blob(pieces="8A==")]), "blobs.0.pieces"),  # bit 3 set, only 3 pieces
    (announce(blobs=[blob(pieces="not base64!")]), "blobs.0.pieces"),
    (announce(blobs=[blob(size=-1)]), "blobs.0.size"),
    (announce(blobs=[blob(size=True)]), "blobs.0.size"),
    (announce(blobs=[blob(size=2**60)]), "blobs.0.size"),
    (announce(blobs=[blob(piece_size=1000)]), "blobs.0.piece_size"),
    (announce(blobs=[blob(complete="yes")]), "blobs.0.complete"),
    (announce(peer={**PEER, "id": "bad id with spaces"}), "peer.id"),
    (announce(peer={**PEER, "id": "x" * 129}), "peer.id"),
    (announce(peer={**PEER, "url": "ftp://127.0.0.1/"}), "peer.url"),
    (announce(peer={**PEER, "url": "http://user:pw@127.0.0.1:5000"}), "peer.url"),
    (announce(peer={**PEER, "url": "http:///nohost"}), "peer.url"),
    (announce(peer={**PEER, "url": "http://127.0.0.1:99999"}), "peer.url"),
    (announce(peer={**PEER, "url": "http://127.0.0.1:5000/?q=1"}), "peer.url"),
    (announce(peer={**PEER, "url": "http://127.0.0.1:5000/a b"}), "peer.url"),
    (announce(peer={**PEER, "url": "http://" + "a" * 600}), "peer.url"),
    (announce(peer={**PEER, "zone": "zone/../x"}), "peer.zone"),
    (announce(peer={**PEER, "load": -1}), "peer.load"),
    (announce(peer={**PEER, "load": "low"}), "peer.load"),
]


@pytest.mark.parametrize(("body", "field"), BAD_ANNOUNCES)
async def test_bad_announce_names_the_field(http: httpx.AsyncClient, body: Any, field: str) -> None:
    response = await http.post("/v1/announce", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


async def test_non_json_and_non_object_bodies(http: httpx.AsyncClient) -> None:
    for content in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        response = await http.post("/v1/announce", content=content)
        assert response.status_code == 400 and response.json()["field"] == "body"


async def test_oversized_body_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/announce", content=b" " * (9 * 2**20))
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/peers/sha256:abc", "digest"),
        (f"/v1/peers/{'sha256:' + '0' * 64}?limit=0", "limit"),
        (f"/v1/peers/{'sha256:' + '0' * 64}?limit=many", "limit"),
        (f"/v1/peers/{'sha256:' + '0' * 64}?zone=a%20b", "zone"),
        (f"/v1/peers/{'sha256:' + '0' * 64}?exclude=%20", "exclude"),
        (f"/v1/peers/{'sha256:' + '0' * 64}?" + "&".join(f"exclude=p{i}" for i in range(33)), "exclude"),
        (f"/v1/peers/{'sha256:' + '0' * 64}?colour=red", "colour"),
        ("/v1/pieces/md5:00", "digest"),
    ],
)
async def test_bad_lookups_name_the_field(http: httpx.AsyncClient, path: str, field: str) -> None:
    response = await http.get(path)
    assert response.status_code == 400 and response.json()["field"] == field


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/withdraw", {"peer_id": "a", "digests": ["sha256:" + "0" * 64] * 1025}, "digests"),
        ("POST", "/v1/withdraw", {"peer_id": "a", "digests": ["nope"]}, "digests.0"),
        ("POST", "/v1/heartbeat", {"peer": {"id": "a"}}, "peer.url"),
        ("POST", "/v1/lease/{d}", {"peer_id": "a", "ttl": 0}, "ttl"),
        ("POST", "/v1/lease/{d}", {"peer_id": "a", "ttl": 10**6}, "ttl"),
        ("POST", "/v1/lease/{d}", {"ttl": 5}, "peer_id"),
        ("POST", "/v1/lease/{d}/release", {"peer_id": ""}, "peer_id"),
        ("PUT", "/v1/pieces/{d}", {"peer_id": "a", "piece_size": 4 * 2**20, "hashes": {"0": "xyz"}}, "hashes.0"),
        (
            "PUT",
            "/v1/pieces/{d}",
            {"peer_id": "a", "piece_size": 4 * 2**20, "hashes": {"0": "md5:" + "0" * 64}},
            "hashes.0",
        ),
        (
            "PUT",
            "/v1/pieces/{d}",
            {"peer_id": "a", "piece_size": 4 * 2**20, "size": 5, "hashes": {"1": "0" * 64}},
            "hashes.1",
        ),
        ("PUT", "/v1/pieces/{d}", {"peer_id": "a", "piece_size": 4 * 2**20, "hashes": {"-1": "0" * 64}}, "hashes.-1"),
        ("PUT", "/v1/pieces/{d}", {"peer_id": "a", "piece_size": 4 * 2**20, "hashes": []}, "hashes"),
        ("POST", "/v1/report", {"reporter": "a", "peer_id": "a", "digest": "sha256:" + "0" * 64}, "peer_id"),
        (
            "POST",
            "/v1/report",
            {"reporter": "a", "peer_id": "b", "digest": "sha256:" + "0" * 64, "reason": "x" * 300},
            "reason",
        ),
    ],
)
async def test_bad_bodies_name_the_field(
    http: httpx.AsyncClient, method: str, path: str, body: Any, field: str
) -> None:
    response = await http.request(method, path.format(d=new_digest()), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


async def test_valid_bitmap_and_index_forms_are_accepted(http: httpx.AsyncClient) -> None:
    both = [blob(pieces="oA=="), blob(pieces=[0, 2]), blob(size=0, pieces=[]), blob(complete=True)]
    response = await http.post("/v1/announce", json=announce(blobs=both))
    assert response.status_code == 200 and response.json()["accepted"] == 4


async def test_unknown_routes_and_methods_answer_in_the_error_shape(http: httpx.AsyncClient) -> None:
    for method, path, status in (("GET", "/v1/nothing", 404), ("DELETE", "/v1/announce", 405)):
        response = await http.request(method, path)
        assert (response.status_code, set(response.json())) == (status, {"error"}), response.text[:200]
