"""Crash safety: `kill -9` of the mirror in the middle of a fill, a restart on the same cache, and
`registry-mirror cache verify` finding (and quarantining) a corrupted cached blob."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory
from tests.registry_mirror.test_e2e_support import (
    cached_blob_path,
    ns,
    start_mirror,
    streamed_digest,
    wait_cached,
)
from tests.support.images import push_blob, write_random_file
from tests.support.mirror import mirror_binary
from tests.support.origin import OriginRegistry
from tests.support.run import run

pytestmark = pytest.mark.integration

BLOB_SIZE = 48 << 20


def _temp_files(cache_dir: Path) -> list[Path]:
    return list((cache_dir / "tmp").iterdir())


def _wait_partial_temp_file(cache_dir: Path, timeout: float = 20.0) -> Path:
    deadline = time.monotonic() + timeout
    while True:
        # The fill allocates its whole temp file up front, then writes pieces into it.
        temps = [p for p in _temp_files(cache_dir) if p.stat().st_size > 0]
        if temps:
            return temps[0]
        assert time.monotonic() < deadline, "the fill never wrote to its temp file"
        time.sleep(0.02)


def _cache_verify(cache_dir: Path) -> tuple[int, str]:
    result = run([mirror_binary(), "cache", "verify", "--cache-dir", str(cache_dir)], check=False, timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_kill9_mid_fill_then_restart_and_verify(mirror_process: MirrorFactory, origin_factory, tmp_path: Path) -> None:
    origin: OriginRegistry = origin_factory()
    source = write_random_file(tmp_path / "big.bin", BLOB_SIZE, seed="crash")
    digest = push_blob(origin, "test/crash", source)
    source.unlink()
    mirror = start_mirror(mirror_process, origin, tmp_path)
    assert origin.process is not None and mirror.process is not None
    url = f"{mirror.url}/v2/test/crash/blobs/{digest}"

    # A slow reader, and the origin frozen after its headers: the fill is surely mid-way.
    with httpx.stream("GET", url, params=ns(origin), timeout=30) as response:
        assert response.status_code == 200
        os.kill(origin.process.pid, signal.SIGSTOP)
        try:
            partial = _wait_partial_temp_file(mirror.cache_dir)
            mirror.kill9()
        finally:
            os.kill(origin.process.pid, signal.SIGCONT)
        with pytest.raises(httpx.TransportError):
            streamed_digest(response)
    assert partial.exists()  # the crash left the half-written temp file behind
    assert not cached_blob_path(mirror.cache_dir, digest).exists()

    mirror.restart()
    assert _temp_files(mirror.cache_dir) == []  # removed at start
    marker = origin.clear_log_marker()
    head = httpx.head(url, params=ns(origin), timeout=30)
    assert head.status_code == 200 and int(head.headers["content-length"]) == BLOB_SIZE
    with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
        assert response.status_code == 200
        assert streamed_digest(response) == (digest, BLOB_SIZE)
    # Fetched again, whole: one request from byte 0 (a range fill's first request is a Range).
    gets = origin.blob_gets(digest, since=marker)
    assert [(e.status, e.bytes) for e in gets] == [(206, BLOB_SIZE)], gets
    cached = wait_cached(mirror.cache_dir, digest)

    mirror.stop()
    assert _cache_verify(mirror.cache_dir)[0] == 0
    with open(cached, "r+b") as handle:  # same size, one byte flipped
        handle.seek(BLOB_SIZE // 3)
        byte = handle.read(1)
        handle.seek(BLOB_SIZE // 3)
        handle.write(bytes([byte[0] ^ 0x01]))
    code, output = _cache_verify(mirror.cache_dir)
    assert code == 1, output
    assert digest in output
    assert not cached.exists()
    assert [p.name for p in (mirror.cache_dir / "quarantine").iterdir()] == [digest.replace(":", "-")]
    assert _cache_verify(mirror.cache_dir)[0] == 0  # the quarantined blob is gone from the index

    # After a restart the corrupt blob is not served: it is fetched again and is right.
    mirror.restart()
    marker = origin.clear_log_marker()
    with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
        assert streamed_digest(response) == (digest, BLOB_SIZE)
    assert len(origin.blob_gets(digest, since=marker)) == 1
