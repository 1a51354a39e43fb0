"""Per-peer identity at the tracker (issue 11, item 3): a node token (derived from the cluster
secret, or listed in a file) names one peer id, and its holder may change only that peer's
records; records per peer are capped and reports rate-limited. A real tracker process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from p2p.errors import TrackerError
from p2p.tracker.auth import node_token
from p2p.tracker.models import BlobState, PeerInfo
from p2p.tracker_client import TrackerClient
from tests.p2p.conftest import new_digest
from tests.p2p.harness import REPO, TOKEN, tracker
from tests.support.procs import starts_processes

SECRET = "cluster-secret-0123456789abcdef0123456789"
LISTED = "listed-token-for-node-c-0123456789"
CAP = 3


@pytest.fixture(scope="module", params=["memory", "redis"])
@starts_processes
def identity_tracker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("identity")
    (workdir / "secret").write_text(SECRET + "\n")
    (workdir / "tokens").write_text(f"# minted by the fleet's secret store\nnode-c {LISTED}\n")
    store = request.getfixturevalue("redis_url") if request.param == "redis" else None
    extra = [
        "--node-secret-file",
        str(workdir / "secret"),
        "--node-tokens-file",
        str(workdir / "tokens"),
        "--max-records-per-peer",
        str(CAP),
        "--report-rate",
        "0.01",
    ]
    with tracker(workdir, store=store, extra=extra) as running:  # also the shared TOKEN, the older mode
        yield running.url


def token_of(peer_id: str) -> str:
    return node_token(SECRET.encode(), peer_id)


def peer(name: str) -> PeerInfo:
    return PeerInfo(name, "http://127.0.0.1:9400")


async def test_a_node_token_proves_its_peer_id(identity_tracker: str) -> None:
    async with TrackerClient(identity_tracker, token_of("node-a")) as client:
        assert await client.whoami() == "node-a"
    async with TrackerClient(identity_tracker, LISTED) as client:
        assert await client.whoami() == "node-c"
    async with TrackerClient(identity_tracker, TOKEN) as client:
        assert await client.whoami() is None  # the shared token names nobody


@pytest.mark.parametrize(
    "token",
    [token_of("node-a").replace("node-a", "node-b"), "node-a/" + "0" * 64, node_token(b"another secret", "node-a")],
)
async def test_a_forged_node_token_is_refused(identity_tracker: str, token: str) -> None:
    async with TrackerClient(identity_tracker, token) as client:
        with pytest.raises(TrackerError) as refused:
            await client.heartbeat(peer("node-b"))
    assert refused.value.status == 401


async def test_a_node_may_change_only_its_own_records(identity_tracker: str) -> None:
    digest = new_digest()
    async with TrackerClient(identity_tracker, token_of("victim")) as victim:
        await victim.announce(peer("victim"), [BlobState(digest, 1024, 64 * 1024, complete=True)])
        assert (await victim.lease(digest, "victim", ttl=30)).granted
    async with TrackerClient(identity_tracker, token_of("intruder")) as intruder:
        attempts = [
            ("peer.id", intruder.heartbeat(PeerInfo("victim", "http://10.6.6.6:1"))),  # rebinding its URL
            ("peer.id", intruder.announce(PeerInfo("victim", "http://10.6.6.6:1"), [])),
            ("peer_id", intruder.withdraw("victim", [digest])),
            ("peer_id", intruder.release(digest, "victim")),
            ("peer_id", intruder.lease(new_digest(), "victim", ttl=30)),
            ("peer_id", intruder.put_pieces(digest, "victim", 64 * 1024, {0: "0" * 64})),
            ("peer_id", intruder.reset_pieces(digest, "victim")),
            ("reporter", intruder.report("victim", "someone", digest, "framed")),
        ]
        for field, attempt in attempts:
            with pytest.raises(TrackerError) as refused:
                await attempt
            assert (refused.value.status, refused.value.field) == (403, field)
        found = await intruder.peers(digest)  # reading is open to every member
    assert [(h.peer.id, h.peer.url) for h in found] == [("victim", "http://127.0.0.1:9400")]
    async with TrackerClient(identity_tracker, TOKEN) as shared:
        # The weaker, older mode: the shared token may still act for any peer id.
        await shared.heartbeat(peer("anyone-shared"))


async def test_records_per_peer_are_capped(identity_tracker: str) -> None:
    digests = [new_digest() for _ in range(CAP + 2)]
    blobs = [BlobState(d, 1024, 64 * 1024, complete=True) for d in digests]
    async with TrackerClient(identity_tracker, token_of("hoarder")) as client:
        body = {"peer": peer("hoarder").to_wire(), "blobs": [b.to_wire() for b in blobs]}
        async with httpx.AsyncClient(base_url=client.base_url, headers=client.headers) as http:
            response = await http.post("/v1/announce", json=body)
        assert response.json()["accepted"] == CAP and response.json()["refused"] == 2
        assert [len(await client.peers(d)) for d in digests] == [1] * CAP + [0, 0]
        await client.withdraw("hoarder", digests[:1])
        await client.announce(peer("hoarder"), blobs[CAP : CAP + 1])
        assert len(await client.peers(digests[CAP])) == 1


async def test_reports_are_rate_limited_per_reporter(identity_tracker: str) -> None:
    digest = new_digest()
    noisy = {"Authorization": f"Bearer {token_of('noisy')}"}
    async with httpx.AsyncClient(base_url=identity_tracker, headers=noisy) as http:
        statuses = []
        for n in range(40):  # the burst is 30; at 0.01/s not one more token arrives meanwhile
            body = {"reporter": "noisy", "peer_id": f"target-{n}", "digest": digest}
            statuses.append((await http.post("/v1/report", json=body)).status_code)
    assert statuses[:30] == [200] * 30 and statuses[30:] == [429] * 10
    async with TrackerClient(identity_tracker, token_of("quiet")) as other:
        await other.report("quiet", "target-0", digest, "its own bucket")


def test_tracker_token_command_mints_the_token_the_tracker_accepts(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry_mirror.cli._main",
            "tracker-token",
            "--secret-file",
            str(tmp_path / "secret"),
            "gpu-node-17",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == token_of("gpu-node-17")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry_mirror.cli._main",
            "tracker-token",
            "--secret-file",
            str(tmp_path / "secret"),
            "bad name",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1


def test_whoami_without_credentials_is_401(identity_tracker: str) -> None:
    assert httpx.get(f"{identity_tracker}/v1/whoami").status_code == 401
