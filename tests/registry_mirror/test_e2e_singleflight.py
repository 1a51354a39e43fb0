"""Single flight, proven by the origin's access log: 16 concurrent cold GETs of one 32 MiB blob make
exactly one origin GET, and every client gets the whole, right body."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory
from tests.registry_mirror.test_e2e_support import MIRROR_USER_AGENT, ns, start_mirror
from tests.support.images import push_blob, write_random_file
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration

CLIENTS = 16
BLOB_SIZE = 32 << 20


async def _get_digest(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> tuple[int, str, int]:
    sha = hashlib.sha256()
    total = 0
    async with client.stream("GET", url, params=params) as response:
        async for chunk in response.aiter_bytes(1 << 20):
            sha.update(chunk)
            total += len(chunk)
        return response.status_code, f"sha256:{sha.hexdigest()}", total


async def _concurrent_gets(base_url: str, url: str, params: dict[str, str]) -> list[tuple[int, str, int]]:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        return list(await asyncio.gather(*(_get_digest(client, url, params) for _ in range(CLIENTS))))


def test_concurrent_cold_gets_make_one_origin_get(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    # Fresh random bytes: the blob is cold in every mirror, whatever ran before.
    path = write_random_file(tmp_path / "layer.bin", BLOB_SIZE, seed=tmp_path.name + str(id(tmp_path)))
    digest = push_blob(origin, "test/singleflight", path)
    path.unlink()
    mirror = start_mirror(mirror_process, origin, tmp_path)
    marker = origin.clear_log_marker()

    results = asyncio.run(_concurrent_gets(mirror.url, f"/v2/test/singleflight/blobs/{digest}", ns(origin)))

    assert results == [(200, digest, BLOB_SIZE)] * CLIENTS
    gets = origin.blob_gets(digest, since=marker)
    assert len(gets) == 1, gets
    assert (
        gets[0].status in (200, 206) and gets[0].bytes == BLOB_SIZE and gets[0].user_agent.startswith(MIRROR_USER_AGENT)
    )
    assert gets[0].bytes == BLOB_SIZE
    assert [e for e in origin.blob_requests(digest, since=marker) if e.method == "HEAD"] == []
