"""A seed whose origin response was corrupt takes its piece hashes back, so the next, correct
seed is neither refused nor reported (issue 11, item 2, as seen without any attacker): real
mirrors with the embedded tracker and a real docker-registry origin whose blob file is flipped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from p2p.tracker_client import TrackerClient
from tests.p2p.test_swarm_e2e import MiB, get_all, pushed_blob, start_swarm
from tests.registry_mirror.test_e2e_support import metric_total, origin_blob_data
from tests.support.mirror import MirrorProcess
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration


def _published(tracker_url: str, digest: str) -> dict[int, str] | None:
    async def run() -> dict[int, str] | None:
        async with TrackerClient(tracker_url, None) as client:
            record = await client.get_pieces(digest)
            return None if record is None else dict(record.hashes)

    return asyncio.run(run())


def test_a_failed_seed_withdraws_its_hashes_and_the_next_seed_serves_peers(
    origin_factory: Callable[..., OriginRegistry], tmp_path: Path, mirror_process: Callable[..., MirrorProcess]
) -> None:
    origin, digest, _size = pushed_blob(origin_factory, tmp_path, 6 * MiB + 77)
    data_file = origin_blob_data(origin, digest)
    good = data_file.read_bytes()
    flipped = bytearray(good)
    flipped[3 * MiB + 5] ^= 0xFF  # piece 3 of six 1 MiB pieces
    data_file.write_bytes(bytes(flipped))
    tracker_mirror, first_seed, downloader = start_swarm(mirror_process, origin, 3)
    args = tracker_mirror.extra_args
    tracker_url = f"http://{args[args.index('--peer-listen') + 1]}/tracker"

    (failed,) = get_all([first_seed], f"/v2/test/big/blobs/{digest}", timeout=30)
    assert isinstance(failed, httpx.HTTPError), failed  # aborted: never the wrong bytes
    deadline = time.monotonic() + 15
    while _published(tracker_url, digest) is not None:  # the failed fill settles, then withdraws
        assert time.monotonic() < deadline, "the failed seed left its piece hashes at the tracker"
        time.sleep(0.1)

    data_file.write_bytes(good)
    assert get_all([tracker_mirror], f"/v2/test/big/blobs/{digest}", timeout=30) == [digest]
    marker = origin.clear_log_marker()
    assert get_all([downloader], f"/v2/test/big/blobs/{digest}", timeout=30) == [digest]
    assert origin.blob_gets(digest, since=marker) == []  # every piece came from the honest seed
    metrics = downloader.client().get("/metrics").text
    assert metric_total(metrics, "registry_mirror_p2p_bad_pieces_total") == 0
