"""The tracker process exports its own instruments at GET /metrics (no token: Prometheus scrapes it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from p2p.tracker_client import TrackerClient
from tests.p2p.conftest import new_digest
from tests.p2p.harness import TOKEN, tracker

pytestmark = pytest.mark.integration  # starts its own tracker


async def test_tracker_exports_lease_metrics(tmp_path: Path) -> None:
    with tracker(tmp_path) as running:
        async with TrackerClient(running.url, TOKEN) as client:
            digest = new_digest()
            assert (await client.lease(digest, "seed-m", ttl=30)).granted
            assert not (await client.lease(digest, "other-m", ttl=30)).granted
        answer = httpx.get(f"{running.url}/metrics", timeout=10)
    assert answer.status_code == 200
    lines = [line for line in answer.text.splitlines() if line.startswith("registry_mirror_tracker_leases")]
    assert lines, answer.text[:2000]
    assert any('result="granted"' in line for line in lines), lines
