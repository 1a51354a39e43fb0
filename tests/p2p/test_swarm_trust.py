"""Lying announcements cannot make a pull fail or stall (issue 11, item 1): real mirrors with the
embedded tracker, a real docker-registry origin, and holders announced through the tracker API
by the test (a token holder can announce anything)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from p2p.tracker.models import BlobState, PeerInfo
from p2p.tracker_client import TrackerClient
from tests.p2p.test_swarm_e2e import PIECE, MiB, get_all, pushed_blob, start_swarm
from tests.support.mirror import MirrorProcess
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration


def _announce(tracker_url: str, digest: str, holders: list[tuple[str, str, int]]) -> None:
    async def run() -> None:
        async with TrackerClient(tracker_url, None) as client:
            for peer_id, url, size in holders:
                await client.announce(PeerInfo(peer_id, url), [BlobState(digest, size, PIECE, complete=True)])

    asyncio.run(run())


def _tracker_url(mirror: MirrorProcess) -> str:
    args = mirror.extra_args
    return f"http://{args[args.index('--peer-listen') + 1]}/tracker"


def test_lying_and_dead_holders_cost_a_pull_nothing(
    origin_factory: Callable[..., OriginRegistry], tmp_path: Path, mirror_process: Callable[..., MirrorProcess]
) -> None:
    origin, digest, size = pushed_blob(origin_factory, tmp_path, 8 * MiB + 321)
    tracker_mirror, puller = start_swarm(mirror_process, origin, 2, stall_timeout=10.0)
    _announce(
        _tracker_url(tracker_mirror),
        digest,
        [
            ("liar-short", f"{tracker_mirror.url}", size // 2),  # a wrong size at a URL that answers
            ("liar-long", "http://127.0.0.1:1", size * 2),
            ("ghost", "http://127.0.0.1:9", size),  # the right size, nobody at the URL
        ],
    )
    started = time.monotonic()
    assert get_all([puller], f"/v2/test/big/blobs/{digest}", timeout=30) == [digest]
    took = time.monotonic() - started
    # The origin alone serves 8 MiB here in well under a second; a dead swarm may add ~2 s, not 10.
    assert took < 5, took
    metrics = puller.client().get("/metrics").text
    assert 'registry_mirror_p2p_peers_excluded_total{reason="size"}' in metrics
