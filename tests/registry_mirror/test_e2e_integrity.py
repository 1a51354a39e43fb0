"""Cached bytes that rot or change behind the cache's back are caught, quarantined and fetched
again: a byte flipped, a file truncated, a file grown, each with and without a mirror restart;
the background scrubber; `cache verify` beside the mirror serving the same blob."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory
from tests.registry_mirror.test_e2e_support import (
    assert_no_server_errors,
    cached_blob_path,
    metric_total,
    ns,
    start_mirror,
    streamed_digest,
    wait_cached,
)
from tests.support.images import push_blob, write_random_file
from tests.support.mirror import MirrorProcess, mirror_binary
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration

BLOB_SIZE = 9 << 20  # several 4 MiB reads and a ragged end
NO_SCRUB = 'scrub_rate = "0"'


def _setup(
    mirror_process: MirrorFactory, origin_factory, tmp_path: Path, seed: str, cache_toml: str = NO_SCRUB
) -> tuple[OriginRegistry, MirrorProcess, str, str]:
    origin = origin_factory()
    source = write_random_file(tmp_path / f"{seed}.bin", BLOB_SIZE + 12345, seed=seed)
    digest = push_blob(origin, "test/integrity", source)
    mirror = start_mirror(mirror_process, origin, tmp_path, extra_toml=f"[cache]\n{cache_toml}")
    url = f"{mirror.url}/v2/test/integrity/blobs/{digest}"
    with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
        assert streamed_digest(response) == (digest, BLOB_SIZE + 12345)
    _wait_trusted(wait_cached(mirror.cache_dir, digest))
    return origin, mirror, digest, url


def _wait_trusted(path: Path, timeout: float = 10.0) -> None:
    """Once the committed file is marked verified its mtime sits a second in the past (so that a
    later write in the same clock tick still changes it): corrupting it earlier would race that."""
    deadline = time.monotonic() + timeout
    while time.time() - path.stat().st_mtime < 0.5:
        assert time.monotonic() < deadline, f"{path} was never marked verified"
        time.sleep(0.01)


def _corrupt(path: Path, kind: str) -> None:
    size = path.stat().st_size
    if kind == "flip":
        with open(path, "r+b") as handle:  # 4 bytes overwritten, same size
            handle.seek(size // 2)
            handle.write(b"\xde\xad\xbe\xef")
    elif kind == "truncate":
        os.truncate(path, size - 1000)
    else:
        with open(path, "ab") as handle:
            handle.write(b"grown")


def _corrupt_count(mirror: MirrorProcess, stage: str) -> float:
    text = httpx.get(f"{mirror.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("registry_mirror_cache_corrupt_blobs_total{") and f'stage="{stage}"' in line
    )


def _quarantined(mirror: MirrorProcess, digest: str) -> bool:
    return (mirror.cache_dir / "quarantine" / digest.replace(":", "-")).exists()


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
@pytest.mark.parametrize("kind", ["flip", "truncate", "grow"])
def test_corrupted_cache_file_is_caught_and_refetched(
    kind: str, restart: bool, mirror_process: MirrorFactory, origin_factory, tmp_path: Path
) -> None:
    origin, mirror, digest, url = _setup(mirror_process, origin_factory, tmp_path, f"{kind}-{restart}")
    size = BLOB_SIZE + 12345
    _corrupt(cached_blob_path(mirror.cache_dir, digest), kind)
    if restart:
        mirror.restart()
    marker = origin.clear_log_marker()
    if kind == "flip":
        # Same size: only the hash can tell. The body is cut before its last byte, never a
        # complete-looking wrong 200.
        received = 0
        with pytest.raises(httpx.TransportError):
            with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
                assert response.status_code == 200 and int(response.headers["content-length"]) == size
                for chunk in response.iter_bytes(1 << 20):
                    received += len(chunk)
        assert received < size
        assert _corrupt_count(mirror, "first_read") == 1
    else:
        # A size that differs from the index is seen before a byte is sent: this very request
        # fetches it again.
        with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
            assert streamed_digest(response) == (digest, size)
        stage = "restart_scan" if restart else "size"
        assert _corrupt_count(mirror, stage) == 1
    assert _quarantined(mirror, digest)
    assert f"cached blob {digest} is corrupt" in mirror.log_text()
    # The next request refetches from the origin and gets the right bytes.
    with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
        assert streamed_digest(response) == (digest, size)
    assert len(origin.blob_gets(digest, since=marker)) == 1
    # Verified again: later reads are complete and right (zero-copy from here on).
    with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
        assert streamed_digest(response) == (digest, size)
    assert_no_server_errors(mirror)


def test_range_of_unverified_blob_waits_for_verification(
    mirror_process: MirrorFactory, origin_factory, tmp_path: Path
) -> None:
    origin, mirror, digest, url = _setup(mirror_process, origin_factory, tmp_path, "range")
    _corrupt(cached_blob_path(mirror.cache_dir, digest), "flip")
    mirror.restart()
    with pytest.raises(httpx.TransportError):  # the range's own bytes are fine; the blob is not
        with httpx.stream("GET", url, params=ns(origin), headers={"Range": "bytes=0-99"}, timeout=60) as response:
            assert response.status_code == 206
            response.read()
    assert _quarantined(mirror, digest)
    ranged = httpx.get(url, params=ns(origin), headers={"Range": "bytes=100-199"}, timeout=60)
    assert ranged.status_code == 206 and len(ranged.content) == 100


def test_scrubber_finds_rot_nobody_read(mirror_process: MirrorFactory, origin_factory, tmp_path: Path) -> None:
    origin, mirror, digest, url = _setup(
        mirror_process,
        origin_factory,
        tmp_path,
        "scrub",
        cache_toml='scrub_rate = "64MiB"\nscrub_min_age = "0s"',  # the commit just hashed it: re-hash at once
    )
    path = cached_blob_path(mirror.cache_dir, digest)
    _corrupt(path, "flip")
    deadline = time.monotonic() + 30
    while not _quarantined(mirror, digest):
        assert time.monotonic() < deadline, "the scrubber never found the flipped bytes"
        time.sleep(0.1)
    text = httpx.get(f"{mirror.url}/metrics", timeout=10).text
    assert metric_total(text, "registry_mirror_cache_scrub_bytes_total") >= BLOB_SIZE
    assert "registry_mirror_cache_scrub_progress" in text
    assert _corrupt_count(mirror, "scrub") == 1
    with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
        assert streamed_digest(response) == (digest, BLOB_SIZE + 12345)


def _cache_verify(cache_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [mirror_binary(), "cache", "verify", "--cache-dir", str(cache_dir)], capture_output=True, text=True, timeout=120
    )


def test_cache_verify_beside_the_running_mirror(mirror_process: MirrorFactory, origin_factory, tmp_path: Path) -> None:
    origin, mirror, digest, url = _setup(mirror_process, origin_factory, tmp_path, "verify")
    size = BLOB_SIZE + 12345
    # A reader mid-way through the blob while verify runs: it completes, right.
    with httpx.stream("GET", url, params=ns(origin), timeout=60) as reading:
        chunks = reading.iter_bytes(1 << 20)
        first = next(chunks)
        clean = _cache_verify(mirror.cache_dir)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "verified by the running mirror" in clean.stdout and "checked 1 blobs, 0 corrupt" in clean.stdout
        assert len(first) + sum(len(c) for c in chunks) == size

    _corrupt(cached_blob_path(mirror.cache_dir, digest), "flip")
    found = _cache_verify(mirror.cache_dir)
    assert found.returncode == 1 and f"corrupt: {digest}" in found.stdout, found.stdout + found.stderr
    assert _corrupt_count(mirror, "verify") == 1
    # The mirror itself forgot it: the next GET refetches, never an empty or short 200.
    marker = origin.clear_log_marker()
    with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
        assert response.status_code == 200
        assert streamed_digest(response) == (digest, size)
    assert len(origin.blob_gets(digest, since=marker)) == 1
    assert_no_server_errors(mirror)


def test_cache_verify_refuses_a_mirror_without_admin(
    mirror_process: MirrorFactory, origin_factory, tmp_path: Path
) -> None:
    origin = origin_factory()
    mirror = start_mirror(mirror_process, origin, tmp_path, extra_args=["--admin-listen", ""])
    result = _cache_verify(mirror.cache_dir)
    assert result.returncode == 2
    assert result.stderr == (
        f"registry-mirror: error: the cache dir is served by registry-mirror pid "
        f"{mirror.process.pid} with its admin API off: enable admin.listen, or stop it, "
        "and run cache verify again\n"
    )
