"""Range fills against real origins: docker-registry, nginx without Range support, nginx capping
each connection, nginx serving wrong bytes; real aria2c with eight connections as the client."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory
from tests.registry_mirror.test_e2e_support import metric_total, mirror_config, ns, streamed_digest, wait_cached
from tests.support.images import push_blob, write_random_file
from tests.support.nginx import NginxServer
from tests.support.origin import OriginRegistry
from tests.support.procs import aria2c_command

pytestmark = pytest.mark.integration

MiB = 1 << 20
BLOB_SIZE = 24 * MiB
# Small thresholds so a 24 MiB blob takes every path the 64 MiB default gives big blobs.
RANGES_TOML = 'max_parallel_ranges = 4\nparallel_range_min_size = "4MiB"\n'


def _mirror_for(factory: MirrorFactory, origin: object, workdir: Path) -> object:
    config = mirror_config(workdir / "mirror.toml", [origin])  # type: ignore[list-item]
    text = config.read_text().replace("read_timeout = 5\n", "read_timeout = 5\n" + RANGES_TOML)
    config.write_text(text)
    return factory({}, extra_args=["--config", str(config)])


def _pushed(origin: OriginRegistry, tmp_path: Path, repo: str, seed: str) -> tuple[str, bytes]:
    path = write_random_file(tmp_path / f"{seed}.bin", BLOB_SIZE, seed=seed)
    data = path.read_bytes()
    digest = push_blob(origin, repo, path)
    path.unlink()
    return digest, data


def test_cold_range_of_the_tail_is_fetched_first(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    digest, data = _pushed(origin, tmp_path, "test/ranges", "tail")
    mirror = _mirror_for(mirror_process, origin, tmp_path)
    marker = origin.clear_log_marker()
    url = f"{mirror.url}/v2/test/ranges/blobs/{digest}"  # type: ignore[attr-defined]
    tail = BLOB_SIZE - MiB
    response = httpx.get(url, params=ns(origin), headers={"Range": f"bytes={tail}-"}, timeout=30)
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {tail}-{BLOB_SIZE - 1}/{BLOB_SIZE}"
    assert response.content == data[tail:]
    wait_cached(mirror.cache_dir, digest)  # type: ignore[attr-defined]
    gets = origin.blob_gets(digest, since=marker)
    # The first origin request was the reader's piece (the last 4 MiB), not the start of the blob.
    assert (gets[0].status, gets[0].bytes) == (206, 4 * MiB), gets
    assert sum(g.bytes for g in gets) == BLOB_SIZE  # and every byte was fetched once
    with httpx.stream("GET", url, params=ns(origin), timeout=30) as whole:
        assert streamed_digest(whole) == (digest, BLOB_SIZE)


def test_a_cold_range_past_the_end_is_a_416_and_the_fill_goes_on(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    """The mirror does not know a cold blob's size: the first origin request starts at the
    reader's offset, which lies past the end. The origin's 416 must not fail the fill (and every
    reader joined to it): the fill starts at byte 0, the reader gets the API's 416."""
    digest, data = _pushed(origin, tmp_path, "test/ranges", "past-end")
    mirror = _mirror_for(mirror_process, origin, tmp_path)
    url = f"{mirror.url}/v2/test/ranges/blobs/{digest}"  # type: ignore[attr-defined]
    past = httpx.get(url, params=ns(origin), headers={"Range": f"bytes={BLOB_SIZE + 8 * MiB}-"}, timeout=30)
    assert past.status_code == 416, past.text
    assert past.json()["errors"][0]["code"] == "RANGE_INVALID"
    assert past.headers["content-range"] == f"bytes */{BLOB_SIZE}"
    wait_cached(mirror.cache_dir, digest)  # type: ignore[attr-defined]
    with httpx.stream("GET", url, params=ns(origin), timeout=30) as whole:
        assert streamed_digest(whole) == (digest, len(data))


def test_the_mirrors_worker_threads_carry_their_names_into_the_kernel(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    """`top -H` and perf tell receiving, allocating and sending apart (nvme_cache/threads.py)."""
    digest, _ = _pushed(origin, tmp_path, "test/names", "names")
    mirror = _mirror_for(mirror_process, origin, tmp_path)
    with httpx.stream("GET", f"{mirror.url}/v2/test/names/blobs/{digest}", params=ns(origin), timeout=30) as cold:  # type: ignore[attr-defined]
        assert streamed_digest(cold) == (digest, BLOB_SIZE)
    wait_cached(mirror.cache_dir, digest)  # type: ignore[attr-defined]
    tasks = Path(f"/proc/{mirror.process.pid}/task")  # type: ignore[attr-defined]
    names = {(task / "comm").read_text().strip().rsplit("_", 1)[0] for task in tasks.iterdir()}
    assert {"origin-request", "nvme-cache", "sendfile"} <= names, names


@pytest.mark.parametrize("direct", [True, False])
def test_a_fill_nobody_reads_along_writes_around_the_page_cache_when_told_to(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path, direct: bool
) -> None:
    """The cache under tmp_path is on the machine's disk (ext4 here), which takes O_DIRECT. A
    client that asks for one byte and leaves leaves a fill nobody reads (nginx's cap keeps it
    running long enough): its bytes go around the page cache. A client that reads along takes
    its bytes from the receive buffers (read-along pushes), so its fill goes around the page
    cache too; without direct writes nothing does."""
    abandoned, _ = _pushed(origin, tmp_path, "test/direct", f"left-{direct}")
    read_along, _ = _pushed(origin, tmp_path, "test/direct", f"along-{direct}")
    front = NginxServer.proxy(tmp_path / "nginx", origin.url, "limit_rate 4m;").start()
    try:
        config = mirror_config(tmp_path / "mirror.toml", [front])  # type: ignore[list-item]
        config.write_text(config.read_text().replace("read_timeout = 5\n", "read_timeout = 5\n" + RANGES_TOML))
        env = {"REGISTRY_MIRROR_CACHE_DIRECT_WRITES": "true"} if direct else {}  # off by default
        mirror = mirror_process({}, extra_args=["--config", str(config)], env=env)
        blobs = f"{mirror.url}/v2/test/direct/blobs"
        first = httpx.get(f"{blobs}/{abandoned}", params={"ns": front.host}, headers={"Range": "bytes=0-0"}, timeout=30)
        assert first.status_code == 206 and len(first.content) == 1
        wait_cached(mirror.cache_dir, abandoned, timeout=60)

        def direct_bytes() -> float:
            metrics = httpx.get(f"{mirror.url}/metrics").text
            return metric_total(metrics, "registry_mirror_cache_direct_written_bytes_total")

        left_alone = direct_bytes()
        assert (left_alone >= BLOB_SIZE // 2) if direct else (left_alone == 0), left_alone
        with httpx.stream("GET", f"{blobs}/{abandoned}", params={"ns": front.host}, timeout=30) as hit:
            assert streamed_digest(hit) == (abandoned, BLOB_SIZE)  # the bytes on the disk are right
        with httpx.stream("GET", f"{blobs}/{read_along}", params={"ns": front.host}, timeout=60) as cold:
            assert streamed_digest(cold) == (read_along, BLOB_SIZE)
        wait_cached(mirror.cache_dir, read_along)
        metrics = httpx.get(f"{mirror.url}/metrics").text
        assert metric_total(metrics, "registry_mirror_cache_pushed_bytes_total") >= BLOB_SIZE // 2
        if direct:
            assert direct_bytes() >= left_alone + BLOB_SIZE // 2  # read along from memory
        else:
            assert direct_bytes() == 0
    finally:
        front.stop()


def test_origin_without_range_support(mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path) -> None:
    digest, data = _pushed(origin, tmp_path, "test/norange", "norange")
    # nginx drops the Range header, so the origin answers 200 with the whole blob every time.
    front = NginxServer.proxy(tmp_path / "nginx", origin.url, 'proxy_set_header Range "";', "max_ranges 0;").start()
    try:
        mirror = _mirror_for(mirror_process, front, tmp_path)
        url = f"{mirror.url}/v2/test/norange/blobs/{digest}"  # type: ignore[attr-defined]
        middle = BLOB_SIZE // 2
        response = httpx.get(url, params={"ns": front.host}, headers={"Range": f"bytes={middle}-"}, timeout=30)
        assert response.status_code == 206 and response.content == data[middle:]
        wait_cached(mirror.cache_dir, digest)  # type: ignore[attr-defined]
        blob_lines = [line for line in front.access_lines() if "/blobs/" in line]
        assert len(blob_lines) == 1 and '" 200 ' in blob_lines[0], blob_lines  # one whole stream
    finally:
        front.stop()


def test_wrong_bytes_from_the_origin_abort_and_cache_nothing(mirror_process: MirrorFactory, tmp_path: Path) -> None:
    data = write_random_file(tmp_path / "good.bin", 6 * MiB, seed="wrong").read_bytes()
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    root = tmp_path / "static"
    served = root / "v2" / "test" / "bad" / "blobs" / digest
    served.parent.mkdir(parents=True)
    bad = bytearray(data)
    bad[len(data) - 10] ^= 0x01  # same size, one bit flipped near the end
    served.write_bytes(bytes(bad))
    front = NginxServer.static(tmp_path / "nginx", root).start()
    try:
        mirror = _mirror_for(mirror_process, front, tmp_path)
        url = f"{mirror.url}/v2/test/bad/blobs/{digest}"  # type: ignore[attr-defined]
        for _ in range(2):  # and the second time too: nothing was cached
            with pytest.raises(httpx.TransportError):
                with httpx.stream("GET", url, params={"ns": front.host}, timeout=30) as response:
                    assert response.status_code == 200
                    received = sum(len(chunk) for chunk in response.iter_bytes())
                    pytest.fail(f"a wrong body completed ({received} bytes)")
        cache = mirror.cache_dir  # type: ignore[attr-defined]
        assert not (cache / "blobs" / "sha256" / digest[7:9] / digest[7:]).exists()
    finally:
        front.stop()


def test_capped_origin_gets_parallel_ranges(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    digest, _ = _pushed(origin, tmp_path, "test/capped", "capped")
    front = NginxServer.proxy(tmp_path / "nginx", origin.url, "limit_rate 4m;").start()
    try:
        mirror = _mirror_for(mirror_process, front, tmp_path)
        url = f"{mirror.url}/v2/test/capped/blobs/{digest}"  # type: ignore[attr-defined]
        with httpx.stream("GET", url, params={"ns": front.host}, timeout=60) as response:
            assert streamed_digest(response) == (digest, BLOB_SIZE)
        wait_cached(mirror.cache_dir, digest)  # type: ignore[attr-defined]
        blob_lines = [line for line in front.access_lines() if "/blobs/" in line]
        # One slow connection got helpers: many range requests, each byte still fetched once.
        assert len(blob_lines) > 3 and all('" 206 ' in line for line in blob_lines), blob_lines
        assert sum(g.bytes for g in origin.blob_gets(digest)) == BLOB_SIZE
    finally:
        front.stop()


def test_a_slow_origin_is_read_with_a_low_water_mark_that_never_outwaits_the_read_timeout(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    """800 KB/s and a 0.25 s read timeout: a fixed 256 KiB mark (SO_RCVLOWAT) would wait 0.32 s
    for each wake-up and time the fill out. The mark follows the measured rate, and the body's
    tail goes without one (keep-alive: no end of stream would ever wake it)."""
    size = 2 * MiB
    path = write_random_file(tmp_path / "slow.bin", size, seed="slow")
    digest = push_blob(origin, "test/slow", path)
    front = NginxServer.proxy(
        tmp_path / "nginx", origin.url, "limit_rate 800k;", "proxy_max_temp_file_size 0;", buffering=True
    ).start()
    try:
        config = mirror_config(tmp_path / "mirror.toml", [front])  # type: ignore[list-item]
        config.write_text(config.read_text().replace("read_timeout = 5\n", "read_timeout = 0.25\n"))
        mirror = mirror_process({}, extra_args=["--config", str(config)])
        url = f"{mirror.url}/v2/test/slow/blobs/{digest}"
        with httpx.stream("GET", url, params={"ns": front.host}, timeout=60) as response:
            assert response.status_code == 200
            assert streamed_digest(response) == (digest, size)
        wait_cached(mirror.cache_dir, digest)
        metrics_text = httpx.get(f"{mirror.url}/metrics").text
        marked = [
            line
            for line in metrics_text.splitlines()
            if line.startswith("registry_mirror_origin_body_reads_total") and 'low_water="yes"' in line
        ]
        assert marked and float(marked[0].rsplit(" ", 1)[1]) > 0, metrics_text
        assert metric_total(metrics_text, "registry_mirror_range_retries_total") == 0
        assert sum(g.bytes for g in origin.blob_gets(digest)) == size
    finally:
        front.stop()


def test_aria2c_with_eight_connections_cold(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    digest, _ = _pushed(origin, tmp_path, "test/aria", "aria")
    mirror = _mirror_for(mirror_process, origin, tmp_path)
    marker = origin.clear_log_marker()
    out = tmp_path / "out"
    url = f"{mirror.url}/v2/test/aria/blobs/{digest}?ns={origin.host}"  # type: ignore[attr-defined]
    subprocess.run(
        aria2c_command(url, out),
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert f"sha256:{hashlib.sha256((out / 'blob').read_bytes()).hexdigest()}" == digest
    wait_cached(mirror.cache_dir, digest)  # type: ignore[attr-defined]
    assert sum(g.bytes for g in origin.blob_gets(digest, since=marker)) == BLOB_SIZE  # each byte once


def test_clients_leaving_mid_body_never_corrupt_other_connections(
    mirror_process: MirrorFactory, origin: OriginRegistry, tmp_path: Path
) -> None:
    # sendfile runs on a thread: a connection closed under it must never let its bytes reach the
    # next connection that gets the same descriptor number (seen with aria2c before the fix).
    import concurrent.futures
    import random

    digest, _ = _pushed(origin, tmp_path, "test/leaving", "leaving")
    mirror = _mirror_for(mirror_process, origin, tmp_path)
    url = f"{mirror.url}/v2/test/leaving/blobs/{digest}"  # type: ignore[attr-defined]
    with httpx.stream("GET", url, params=ns(origin), timeout=30) as response:
        assert streamed_digest(response) == (digest, BLOB_SIZE)
    wait_cached(mirror.cache_dir, digest)  # type: ignore[attr-defined]

    def leave_early(seed: int) -> None:
        with httpx.stream("GET", url, params=ns(origin), timeout=30) as response:
            wanted = random.Random(seed).randrange(1, BLOB_SIZE // 2)
            got = 0
            for chunk in response.iter_raw(64 * 1024):
                got += len(chunk)
                if got >= wanted:
                    return  # closes the connection mid-body

    def read_whole(_: int) -> tuple[str, int]:
        with httpx.Client(timeout=30) as client:  # keep-alive: several responses per connection
            results = set()
            for _ in range(2):
                with client.stream("GET", url, params=ns(origin)) as response:
                    results.add(streamed_digest(response))
            assert len(results) == 1
            return results.pop()

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        leavers = [pool.submit(leave_early, seed) for seed in range(24)]
        readers = [pool.submit(read_whole, n) for n in range(6)]
        assert [r.result() for r in readers] == [(digest, BLOB_SIZE)] * 6
        for leaver in leavers:
            leaver.result()
