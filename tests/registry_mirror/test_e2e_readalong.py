"""Read-along pushes (nvme_cache/readalong.py) with real curl clients and real origins: a client
at the edge of a fill gets its bytes from the receive buffers, a slow one goes on from the file,
and a body that turns out wrong is cut short all the same."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory
from tests.registry_mirror.test_e2e_ranges import BLOB_SIZE, MiB, _mirror_for, _pushed
from tests.registry_mirror.test_e2e_support import metric_total, wait_cached
from tests.support.images import write_random_file
from tests.support.nginx import NginxServer
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration


def _live_ends(mirror: object, end: str) -> float:
    text = httpx.get(f"{mirror.url}/metrics").text  # type: ignore[attr-defined]
    lines = [line for line in text.splitlines() if line.startswith("registry_mirror_cache_live_reads_total{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if f'end="{end}"' in line)


def _pushed_bytes(mirror: object) -> float:
    return metric_total(httpx.get(f"{mirror.url}/metrics").text, "registry_mirror_cache_pushed_bytes_total")  # type: ignore[attr-defined]


def _curl(url: str, out: Path, *options: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--fail", "-o", str(out), *options, url], capture_output=True, timeout=60)


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_client_at_the_edge_of_a_fill_gets_its_bytes_from_the_receive_buffers(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    """nginx caps the origin at 16 MB/s, so curl waits at the edge of the fill for most of the
    blob: those bytes are pushed; the held-back last chunk follows from the file once verified."""
    digest, _ = _pushed(origin, tmp_path, "test/along", "along")
    front = NginxServer.proxy(tmp_path / "nginx", origin.url, "limit_rate 16m;", buffering=True).start()
    try:
        mirror = _mirror_for(mirror_process, front, tmp_path)
        out = tmp_path / "out.bin"
        result = _curl(f"{mirror.url}/v2/test/along/blobs/{digest}?ns={front.host}", out)  # type: ignore[attr-defined]
        assert result.returncode == 0, result.stderr
        assert _sha256(out) == digest and out.stat().st_size == BLOB_SIZE
        wait_cached(mirror.cache_dir, digest)  # type: ignore[attr-defined]
        assert _pushed_bytes(mirror) >= BLOB_SIZE // 2
        assert _pushed_bytes(mirror) <= BLOB_SIZE - MiB  # never the held-back chunk
        assert _live_ends(mirror, "limit") >= 1
    finally:
        front.stop()


def test_a_slow_client_falls_behind_and_goes_on_from_the_file(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    """The origin sends 32 MB/s, curl takes 8 MB/s: its socket fills, the push ends, and curl
    gets the rest from the temp file (then the cache), every byte right."""
    digest, _ = _pushed(origin, tmp_path, "test/slow", "slow")
    front = NginxServer.proxy(tmp_path / "nginx", origin.url, "limit_rate 32m;", buffering=True).start()
    try:
        mirror = _mirror_for(mirror_process, front, tmp_path)
        out = tmp_path / "out.bin"
        url = f"{mirror.url}/v2/test/slow/blobs/{digest}?ns={front.host}"  # type: ignore[attr-defined]
        result = _curl(url, out, "--limit-rate", "8M")
        assert result.returncode == 0, result.stderr
        assert _sha256(out) == digest
        assert _live_ends(mirror, "behind") >= 1
        # Some of it pushed, the rest from the file: how much fits in the loopback socket buffers
        # before curl falls behind depends on the kernel's autotuning and the machine's load.
        assert 0 < _pushed_bytes(mirror) < BLOB_SIZE
    finally:
        front.stop()


def test_a_wrong_body_read_along_is_cut_short_and_nothing_cached(mirror_process: MirrorFactory, tmp_path: Path) -> None:
    """nginx serves the blob with one bit flipped near its end, 8 MB/s: curl reads along from
    the receive buffers and still never gets a complete body."""
    data = write_random_file(tmp_path / "good.bin", 12 * MiB, seed="along-wrong").read_bytes()
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    served = tmp_path / "static" / "v2" / "test" / "bad" / "blobs" / digest
    served.parent.mkdir(parents=True)
    bad = bytearray(data)
    bad[len(data) - 10] ^= 0x01
    served.write_bytes(bytes(bad))
    front = NginxServer.static(tmp_path / "nginx", tmp_path / "static", "limit_rate 8m;").start()
    try:
        mirror = _mirror_for(mirror_process, front, tmp_path)
        out = tmp_path / "out.bin"
        result = _curl(f"{mirror.url}/v2/test/bad/blobs/{digest}?ns={front.host}", out)  # type: ignore[attr-defined]
        assert result.returncode != 0  # curl: transfer closed with outstanding read data
        assert 4 * MiB <= out.stat().st_size < len(data)
        assert _pushed_bytes(mirror) >= 4 * MiB  # it read along, then the digest failed
        cache = mirror.cache_dir  # type: ignore[attr-defined]
        assert not (cache / "blobs" / "sha256" / digest[7:9] / digest[7:]).exists()
    finally:
        front.stop()
