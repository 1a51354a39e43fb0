"""Real mirrors on their own loopback addresses, a real docker-registry origin, one tracker:
the origin serves each blob's bytes once, every copy is verified, faults are survived."""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.registry_mirror.test_e2e_support import metric_total
from tests.support.corrupting_peer import COMMAND as CORRUPTING_PEER
from tests.support.images import push_blob, write_random_file
from tests.support.mirror import MirrorProcess
from tests.support.net import free_port
from tests.support.nginx import NginxServer
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
PIECE = 1 * MiB


def start_swarm(
    mirror_process: Callable[..., MirrorProcess],
    origin: OriginRegistry,
    count: int,
    extra: dict[int, list[str]] | None = None,
    stall_timeout: float = 15.0,
    commands: dict[int, list[str]] | None = None,
    envs: dict[int, dict[str, str]] | None = None,
) -> list[MirrorProcess]:
    """Mirror 0 runs the embedded tracker; the others use it. Each has its own 127.0.0.x."""
    mirrors: list[MirrorProcess] = []
    tracker_url = ""
    for i in range(count):
        host = f"127.0.0.{11 + i}"
        peer_port = free_port(host)
        args = ["--peer-listen", f"{host}:{peer_port}", "--piece-size", str(PIECE), "--default-upstream", origin.host]
        if i == 0:
            args += ["--tracker", "embedded"]
            tracker_url = f"http://{host}:{peer_port}/tracker"
        else:
            args += ["--tracker", tracker_url]
        args += (extra or {}).get(i, [])
        # A generous stall timeout: 8 mirrors on 2 busy cores must not be taken for dead peers.
        env = {"REGISTRY_MIRROR_P2P_STALL_TIMEOUT": str(stall_timeout), **(envs or {}).get(i, {})}
        mirrors.append(
            mirror_process(
                {origin.host: origin.url}, extra_args=args, host=host, env=env, command=(commands or {}).get(i)
            )
        )
    return mirrors


def get_all(mirrors: list[MirrorProcess], path: str, timeout: float = 120) -> list[str | BaseException]:
    """GET `path` from every mirror at the same moment; the sha256 of each body, or the error."""
    barrier = threading.Barrier(len(mirrors))

    def fetch(mirror: MirrorProcess) -> str:
        barrier.wait()
        digest = hashlib.sha256()
        with httpx.stream("GET", f"{mirror.url}{path}", timeout=timeout) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes(1 << 20):
                digest.update(chunk)
        return "sha256:" + digest.hexdigest()

    with concurrent.futures.ThreadPoolExecutor(len(mirrors)) as pool:
        futures = [pool.submit(fetch, m) for m in mirrors]
        results: list[str | BaseException] = []
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion
                results.append(exc)
        return results


def pushed_blob(
    origin_factory: Callable[..., OriginRegistry], tmp_path: Path, size: int
) -> tuple[OriginRegistry, str, int]:
    origin = origin_factory()
    path = write_random_file(tmp_path / "blob.bin", size, "swarm")
    return origin, push_blob(origin, "test/big", path), size


@pytest.fixture
def big_blob(origin_factory: Callable[..., OriginRegistry], tmp_path: Path) -> tuple[OriginRegistry, str, int]:
    return pushed_blob(origin_factory, tmp_path, 96 * MiB + 12345)


def test_eight_mirrors_pull_once_from_origin(origin_factory, tmp_path, mirror_process) -> None:  # type: ignore[no-untyped-def]
    origin, digest, size = pushed_blob(origin_factory, tmp_path, 256 * MiB + 12345)
    mirrors = start_swarm(mirror_process, origin, 8)
    marker = origin.clear_log_marker()
    results = get_all(mirrors, f"/v2/test/big/blobs/{digest}")
    assert results == [digest] * 8, results
    gets = origin.blob_gets(digest, since=marker)
    assert len(gets) == 1, [(e.method, e.status, e.bytes) for e in gets]
    assert sum(e.bytes for e in gets) <= size + PIECE
    # Every mirror cached a verified copy: asking again costs the origin nothing.
    marker = origin.clear_log_marker()
    assert get_all(mirrors, f"/v2/test/big/blobs/{digest}") == [digest] * 8
    assert origin.blob_gets(digest, since=marker) == []


def test_a_capped_seed_paces_its_uploads_and_keeps_its_downloader(origin_factory, tmp_path, mirror_process) -> None:  # type: ignore[no-untyped-def]
    """Under an upload cap the bytes flow at the cap from the first second: a run of pieces taken
    from the cap whole would leave the downloader seconds without a byte, past its stall timeout,
    and it would drop the seed and go to the origin."""
    origin, digest, size = pushed_blob(origin_factory, tmp_path, 32 * MiB)
    cap = 4 * MiB
    seed, downloader = start_swarm(
        mirror_process, origin, 2, stall_timeout=2.0, envs={0: {"REGISTRY_MIRROR_P2P_UPLOAD_BANDWIDTH": str(cap)}}
    )
    path = f"/v2/test/big/blobs/{digest}"
    assert get_all([seed], path) == [digest]
    marker = origin.clear_log_marker()
    started = time.monotonic()
    assert get_all([downloader], path) == [digest]
    elapsed = time.monotonic() - started
    assert origin.blob_gets(digest, since=marker) == []  # every byte came from the capped seed
    # The cap held: after its one-second burst, the rest at 4 MiB/s.
    assert elapsed >= (size - cap) / cap * 0.9, elapsed
    throttled = httpx.get(f"{seed.url}/metrics").text
    assert "registry_mirror_p2p_upload_throttled_seconds_total" in throttled


def test_corrupting_peer_is_excluded(big_blob, mirror_process) -> None:  # type: ignore[no-untyped-def]
    origin, digest, _size = big_blob
    mirrors = start_swarm(mirror_process, origin, 3, commands={0: CORRUPTING_PEER})
    seed = mirrors[0]
    # The faulty mirror fetches first and holds the whole blob.
    assert get_all([seed], f"/v2/test/big/blobs/{digest}") == [digest]
    marker = origin.clear_log_marker()
    results = get_all(mirrors[1:], f"/v2/test/big/blobs/{digest}")
    assert results == [digest] * 2, results
    metrics = httpx.get(f"{mirrors[1].url}/metrics").text + httpx.get(f"{mirrors[2].url}/metrics").text
    assert "registry_mirror_p2p_bad_pieces_total" in metrics
    # The bad peer was dropped and the bytes came from the origin at most once more.
    assert len(origin.blob_gets(digest, since=marker)) <= 1


def test_seed_killed_mid_transfer(big_blob, mirror_process) -> None:  # type: ignore[no-untyped-def]
    origin, digest, _size = big_blob
    mirrors = start_swarm(mirror_process, origin, 4, stall_timeout=5.0)
    seed = mirrors[1]  # not the tracker's host
    started = threading.Event()

    def slow_seed_read() -> None:
        with httpx.stream("GET", f"{seed.url}/v2/test/big/blobs/{digest}", timeout=60) as response:
            for i, _ in enumerate(response.iter_bytes(256 * 1024)):
                if i == 8:
                    started.set()
                    break

    reader = threading.Thread(target=slow_seed_read)
    reader.start()
    assert started.wait(30)
    others = mirrors[2:]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        later = pool.submit(get_all, others, f"/v2/test/big/blobs/{digest}")
        seed.kill9()
        results = later.result(timeout=120)
    reader.join(10)
    assert results == [digest] * len(others), results


def test_a_takeover_from_an_origin_that_ignores_range_still_serves_the_pull(big_blob, mirror_process, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The seed dies while its downloaders hold some pieces; the one that takes over asks the origin
    for the rest with a Range, and this origin (nginx `max_ranges 0`, capped so the seed is still
    mid-blob) answers the whole blob. The takeover reads its first bytes again and drops them: the
    pull that the origin alone would have served is served, P2P or not."""
    origin, digest, _size = big_blob
    front = NginxServer.proxy(
        tmp_path / "nginx", origin.url, 'proxy_set_header Range "";', "max_ranges 0;", "limit_rate 16m;", buffering=True
    )
    front.start()
    try:
        mirrors = start_swarm(mirror_process, front, 3, stall_timeout=3.0)  # type: ignore[arg-type]
        seed, others = mirrors[1], [mirrors[0], mirrors[2]]
        seeding = threading.Thread(target=get_all, args=([seed], f"/v2/test/big/blobs/{digest}"), daemon=True)
        seeding.start()
        deadline = time.monotonic() + 60
        while not metric_total(httpx.get(f"{seed.url}/metrics").text, "registry_mirror_p2p_fills_total"):
            assert time.monotonic() < deadline, "the seed never started its fill"  # it holds the lease now
            time.sleep(0.05)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            later = pool.submit(get_all, others, f"/v2/test/big/blobs/{digest}")
            while not all(
                metric_total(httpx.get(f"{m.url}/metrics").text, "registry_mirror_p2p_pieces_received_total") >= 2
                for m in others
            ):
                assert time.monotonic() < deadline, "the downloaders never got pieces from the seed"
                time.sleep(0.1)
            seed.kill9()
            results = later.result(timeout=120)
        assert results == [digest] * len(others), results
        reread = sum(
            metric_total(httpx.get(f"{m.url}/metrics").text, "registry_mirror_p2p_origin_reread_bytes_total")
            for m in others
        )
        assert reread > 0  # the case this covers: a takeover past byte 0 met a whole-blob answer
    finally:
        front.stop()
