"""Per-node tokens end to end (issue 11, item 3): a stand-alone tracker that knows only the cluster
secret, two real mirrors each holding only its own token, and a real docker-registry origin. Each
mirror's peer id comes from its token; peers accept each other's tokens through the tracker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from p2p.tracker.auth import node_token
from p2p.tracker_client import TrackerClient
from tests.p2p.harness import tracker
from tests.p2p.test_swarm_e2e import PIECE, MiB, get_all, pushed_blob
from tests.support.mirror import MirrorProcess
from tests.support.net import free_port
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration

SECRET = b"cluster-secret-for-the-e2e-test-0123456789"


def test_mirrors_with_their_own_tokens_share_blobs(
    origin_factory: Callable[..., OriginRegistry], tmp_path: Path, mirror_process: Callable[..., MirrorProcess]
) -> None:
    origin, digest, size = pushed_blob(origin_factory, tmp_path, 5 * MiB + 3)
    (tmp_path / "secret").write_bytes(SECRET)
    with tracker(tmp_path, token=None, extra=["--node-secret-file", str(tmp_path / "secret")]) as running:
        mirrors = []
        for i, name in enumerate(["gpu-node-1", "gpu-node-2"]):
            host = f"127.0.0.{31 + i}"
            token_file = tmp_path / f"{name}.token"
            token_file.write_text(node_token(SECRET, name))
            args = [
                "--peer-listen",
                f"{host}:{free_port(host)}",
                "--piece-size",
                str(PIECE),
                "--default-upstream",
                origin.host,
                "--tracker",
                running.url,
                "--tracker-token-file",
                str(token_file),
            ]
            mirrors.append(mirror_process({origin.host: origin.url}, extra_args=args, host=host))
        assert get_all(mirrors[:1], f"/v2/test/big/blobs/{digest}", timeout=30) == [digest]
        marker = origin.clear_log_marker()
        assert get_all(mirrors[1:], f"/v2/test/big/blobs/{digest}", timeout=30) == [digest]
        assert origin.blob_gets(digest, since=marker) == []  # from the peer, which accepted the token

        async def holders() -> list[str]:
            async with TrackerClient(running.url, node_token(SECRET, "gpu-node-2")) as client:
                return sorted(h.peer.id for h in await client.peers(digest))

        deadline = time.monotonic() + 10  # the second commit is announced within announce_interval
        while (found := asyncio.run(holders())) != ["gpu-node-1", "gpu-node-2"]:
            assert time.monotonic() < deadline, found
            time.sleep(0.1)
        # Someone without a token the tracker accepts reads nothing from a peer.
        peer_url = f"http://{mirrors[0].extra_args[1]}/p2p/v1/blobs/{digest}"
        refused = httpx.get(peer_url, headers={"Range": "bytes=0-9", "Authorization": "Bearer gpu-node-1/" + "0" * 64})
        assert refused.status_code == 401
        assert refused.json() == {"error": "unauthorized", "field": "authorization"}
        # The peer listener's refusals, each in its one error shape and naming the input at fault.
        auth = {"Authorization": "Bearer " + node_token(SECRET, "gpu-node-2")}
        for headers, url, status, field in [
            ({"Range": "bytes=0-"}, peer_url, 400, "range"),
            ({"Range": "bytes=9-0"}, peer_url, 400, "range"),
            ({"Range": f"bytes={size}-{size + 9}"}, peer_url, 416, "range"),
            ({"Range": "bytes=0-9"}, peer_url.replace(digest, "sha256:nothex"), 400, "digest"),
            ({"Range": "bytes=0-9"}, peer_url.replace(digest, "sha256:" + "0" * 64), 404, None),
        ]:
            answer = httpx.get(url, headers={**auth, **headers})
            assert answer.status_code == status, (headers, url, answer.text[:200])
            assert answer.json().get("field") == field and answer.json()["error"], answer.text[:200]
        ranged = httpx.get(peer_url, headers={**auth, "Range": "bytes=0-9"})
        assert ranged.status_code == 206 and ranged.headers["content-range"] == f"bytes 0-9/{size}"
