"""Abuse cases against a real mirror and a real tracker on loopback (issue 11): a header flood,
slowloris, clients that stop reading (a cached blob on the zero-copy path, an uncached one on the
copied path), and a lying peer with its own node token. For each: the mirror's peak RSS, the
latency of a normal client pulling a small cached blob meanwhile, and pass/fail.

Bounded in count and time (every case ends within its own timeout; at most a few hundred
connections), loopback only. Run it through bench-run:

    bench-run .venv/bin/python bench/abuse.py [--stalled 100] [--slowloris 200] [--floods 16]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from _common import MiB, MirrorProcess, OriginRegistry, Table, proc_status_kib, push, workdir, write_result

from p2p.errors import TrackerError
from p2p.tracker.auth import node_token
from p2p.tracker.models import BlobState, PeerInfo
from p2p.tracker_client import TrackerClient
from tests.p2p.harness import tracker
from tests.support.net import free_port

SECRET = b"bench-abuse-cluster-secret-0123456789abcdef"
HEADER_TIMEOUT = 3.0
SEND_TIMEOUT = 5.0
RSS_BUDGET_MIB = 64.0  # growth over idle any one attack may cause, plus per stalled reader:
# the copied path holds up to four 1 MiB chunks per connection (queued, held back for the digest,
# in the server's write buffer); the sendfile path none.
PER_READER_MIB = 4.0
LATENCY_BUDGET = 1.0  # seconds: the normal client's worst GET during an attack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floods", type=int, default=16, help="64 MiB header floods")
    parser.add_argument("--slowloris", type=int, default=200, help="slowloris connections")
    parser.add_argument("--stalled", type=int, default=100, help="readers that stop reading (cached blob)")
    parser.add_argument("--stalled-uncached", type=int, default=20, help="readers that stop reading (uncached)")
    args = parser.parse_args()
    with workdir("abuse") as work:
        origin = OriginRegistry(work / "origin").start()
        (work / "secret").write_bytes(SECRET)
        try:
            with tracker(work, token=None, extra=["--node-secret-file", str(work / "secret")]) as running:
                results = run_cases(work, origin, running.url, args)
        finally:
            origin.stop()
    report(results, args)


def run_cases(work: Path, origin: OriginRegistry, tracker_url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    small = push(origin, work, 1 * MiB, seed=1)
    cached = push(origin, work, 32 * MiB, seed=2)
    uncached = push(origin, work, 96 * MiB, seed=3)  # over 90% of max_size: streamed uncached
    mirrors = [start_mirror(work, origin, tracker_url, f"node-{n}") for n in (1, 2)]
    try:
        mirror = mirrors[0]
        for digest in (small, cached):
            httpx.get(blob_url(mirror, digest), timeout=60).raise_for_status()
        normal = lambda: httpx.get(blob_url(mirror, small), timeout=30).raise_for_status()  # noqa: E731
        cases = [
            ("header flood", lambda: header_flood(mirror, args.floods)),
            ("slowloris", lambda: slowloris(mirror, args.slowloris)),
            ("stalled readers, cached", lambda: stalled_readers(mirror, cached, args.stalled)),
            ("stalled readers, uncached", lambda: stalled_readers(mirror, uncached, args.stalled_uncached)),
            ("lying peer", lambda: lying_peer(mirrors, tracker_url, cached)),
        ]
        results = [{"case": "idle", **measure(mirror, normal, lambda: {"pass": True})}]
        for name, attack in cases:
            results.append({"case": name, **measure(mirror, normal, attack)})
        return results
    finally:
        for m in mirrors:
            m.stop()


def start_mirror(work: Path, origin: OriginRegistry, tracker_url: str, name: str) -> MirrorProcess:
    directory = work / name
    directory.mkdir()
    (directory / "token").write_text(node_token(SECRET, name))
    config = directory / "mirror.toml"
    config.write_text(
        'builtin_upstreams = false\nlog_level = "warning"\n'
        '[cache]\nmax_size = "100MiB"\n'
        f"[limits]\nheader_timeout = {HEADER_TIMEOUT}\nsend_timeout = {SEND_TIMEOUT}\n"
        f'[p2p]\ntracker = "{tracker_url}"\npeer_listen = "127.0.0.1:{free_port()}"\n'
        f'tracker_token_file = "{directory / "token"}"\npiece_size = "1MiB"\n'
    )
    return MirrorProcess(
        directory, {origin.host: origin.url}, ["--config", str(config), "--default-upstream", origin.host]
    ).start()


def blob_url(mirror: MirrorProcess, digest: str) -> str:
    return f"{mirror.url}/v2/bench/blob/blobs/{digest}"


# -- measuring ---------------------------------------------------------------------------------------
def rss_mib(pid: int) -> float:
    return proc_status_kib(pid, "VmRSS") / 1024


@contextmanager
def sampling(action: Callable[[], float], every: float, into: list[float]) -> Iterator[None]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                into.append(action())
            except Exception:  # noqa: BLE001 - a failed normal GET is recorded as a huge latency
                into.append(float("inf"))
            stop.wait(every)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def measure(
    mirror: MirrorProcess, normal: Callable[[], object], attack: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    assert mirror.process is not None
    pid = mirror.process.pid
    idle = rss_mib(pid)
    rss: list[float] = []
    latencies: list[float] = []

    def timed_normal() -> float:
        started = time.perf_counter()
        normal()
        return time.perf_counter() - started

    started = time.monotonic()
    with sampling(lambda: rss_mib(pid), 0.1, rss), sampling(timed_normal, 0.1, latencies):
        outcome = attack()
    peak = max(rss, default=idle)
    worst = max(latencies, default=float("nan"))
    budget = RSS_BUDGET_MIB + PER_READER_MIB * outcome.get("readers", 0)
    outcome["pass"] = bool(outcome["pass"]) and peak - idle < budget and worst < LATENCY_BUDGET
    return {
        "seconds": round(time.monotonic() - started, 2),
        "rss_idle_mib": round(idle, 1),
        "rss_peak_mib": round(peak, 1),
        "normal_gets": len(latencies),
        "normal_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "normal_max_ms": round(worst * 1000, 1),
        **outcome,
    }


# -- the attacks -------------------------------------------------------------------------------------
def header_flood(mirror: MirrorProcess, count: int) -> dict[str, Any]:
    """`count` clients at once, each sending 64 MiB of one header; every one must get a 431."""
    answers: list[bytes] = []

    def flood() -> None:
        with socket.create_connection(("127.0.0.1", mirror.port), timeout=30) as sock:
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
                block = b"a" * MiB
                for _ in range(64):
                    sock.sendall(block)
            except OSError:
                pass  # refused while sending: the answer is what counts
            try:
                answers.append(sock.recv(128))
            except OSError:
                answers.append(b"")

    threads = [threading.Thread(target=flood) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = sum(a.startswith(b"HTTP/1.1 431 ") for a in answers)
    return {"attackers": count, "refused_431": refused, "pass": refused == count}


def slowloris(mirror: MirrorProcess, count: int) -> dict[str, Any]:
    """`count` connections sending a header byte every 0.5 s; all must be closed by the header timeout."""
    deadline = HEADER_TIMEOUT + 5
    with ExitStack() as stack:
        socks = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", mirror.port), timeout=5))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sock.setblocking(False)
            socks.append(sock)
        started = time.monotonic()
        open_ = set(range(count))
        while open_ and time.monotonic() - started < deadline:
            for index in list(open_):
                try:
                    socks[index].recv(4096)
                    open_.discard(index)  # an answer (408) or the close: either ends it
                except BlockingIOError:
                    try:
                        socks[index].send(b"a")
                    except OSError:
                        open_.discard(index)
                except OSError:
                    open_.discard(index)
            time.sleep(0.5)
        took = time.monotonic() - started
    return {"attackers": count, "still_open": len(open_), "closed_after_s": round(took, 1), "pass": not open_}


def stalled_readers(mirror: MirrorProcess, digest: str, count: int) -> dict[str, Any]:
    """`count` GETs of a blob that read the status line and then nothing; all must be cut off."""

    def stalled_total() -> float:
        text = httpx.get(f"{mirror.url}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("registry_mirror_stalled_clients_total")
        )

    before = stalled_total()
    path = blob_url(mirror, digest).removeprefix(mirror.url)
    with ExitStack() as stack:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            stack.enter_context(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", mirror.port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: mirror\r\n\r\n".encode())
            sock.settimeout(30)
            sock.recv(64)
        started = time.monotonic()
        while stalled_total() - before < count and time.monotonic() - started < SEND_TIMEOUT + 15:
            time.sleep(0.2)
        cut = stalled_total() - before
        took = time.monotonic() - started
    return {
        "attackers": count,
        "readers": count,
        "cut_off": int(cut),
        "cut_after_s": round(took, 1),
        "pass": cut >= count and took < 3 * SEND_TIMEOUT,
    }


def lying_peer(mirrors: list[MirrorProcess], tracker_url: str, digest: str) -> dict[str, Any]:
    """A node with its own valid token lies: it rebinds node-1's id, announces a wrong size at a
    dead URL, floods reports against node-1. Then node-2 pulls the blob through the swarm."""

    async def attack() -> dict[str, Any]:
        async with TrackerClient(tracker_url, node_token(SECRET, "attacker")) as liar:
            try:
                await liar.heartbeat(PeerInfo("node-1", "http://127.0.0.1:9"))
                rebind_refused = False
            except TrackerError as exc:
                rebind_refused = exc.status == 403
            await liar.announce(
                PeerInfo("attacker", "http://127.0.0.1:9"), [BlobState(digest, 7, 1 * MiB, complete=True)]
            )
            limited = 0
            for _ in range(60):
                try:
                    await liar.report("attacker", "node-1", digest, "lie")
                except TrackerError as exc:
                    limited += exc.status == 429
            listed = [h.peer.id for h in await liar.peers(digest)]
        return {
            "rebind_refused": rebind_refused,
            "reports_rate_limited": limited,
            "honest_still_listed": "node-1" in listed,
        }

    outcome = asyncio.run(attack())
    started = time.monotonic()
    response = httpx.get(blob_url(mirrors[1], digest), timeout=60)
    outcome["pull_s"] = round(time.monotonic() - started, 2)
    outcome["pull_ok"] = response.status_code == 200 and len(response.content) == 32 * MiB
    outcome["pass"] = all(outcome[k] for k in ("rebind_refused", "honest_still_listed", "pull_ok")) and (
        outcome["reports_rate_limited"] > 0
    )
    return outcome


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = Table(
        ["case", "rss idle MiB", "rss peak MiB", "normal GET p50 ms", "normal GET max ms", "seconds", "pass"],
        [
            [
                r["case"],
                r["rss_idle_mib"],
                r["rss_peak_mib"],
                r["normal_p50_ms"],
                r["normal_max_ms"],
                r["seconds"],
                "PASS" if r["pass"] else "FAIL",
            ]
            for r in results
        ],
    )
    write_result(
        "abuse",
        {"args": vars(args), "header_timeout": HEADER_TIMEOUT, "send_timeout": SEND_TIMEOUT, "results": results},
        [table],
    )


if __name__ == "__main__":
    main()
