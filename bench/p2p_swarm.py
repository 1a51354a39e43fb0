"""P2P swarm: N = 1, 2, 4, 8 nodes pull one 512 MiB blob at the same moment from an origin behind a
100 MB/s link; our mirrors with P2P, the same mirrors without P2P, docker-registry in proxy mode.

The origin (docker-registry) runs inside a network namespace of our own whose egress a `tc tbf`
shapes to 800 Mbit/s (~100 MB/s); every node (a mirror, or a proxy) runs in the root namespace on
its own loopback address 127.0.0.11-18, so only origin traffic crosses the shaped link and peer
traffic runs at loopback speed. Each node has one client (curl piped into `openssl dgst -sha256`,
so every copy is verified), all started together. Measured per run: total time until every client
has the whole blob, origin bytes / blob size (the origin's own access log), per-node throughput,
the CPU-seconds of every node's server together and how busy the machine's cores were meanwhile
(/proc/stat; "steal" is the share the hypervisor gave to other guests: a run at more than a few
percent is not comparable with one at none): at 100% busy the time is set by the CPU every process
needs, not by the swarm. Before each run a probe writes 1 GiB where the caches go and times its last
256 MiB (`page_cost`: a new page past the guest's recycled ones): every node pays that per byte,
and on this VM it moved 0.3-11 CPU-s/GiB with what the host does with freed guest memory, so
compare runs whose probes and steal agree.
Every run starts fresh processes on empty cache directories; configurations alternate within a
round so drift from other load on the machine hits them alike.

    .venv/bin/python bench/p2p_swarm.py [--size-mib 512] [--counts 1,2,4,8] [--rounds 1] [--profile DIR]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import (
    REPO,
    MiB,
    MirrorProcess,
    OriginRegistry,
    ProxyRegistry,
    Table,
    baseline_tree,
    make_blob,
    median,
    origin_blob_path,
    page_cost,
    read_warm,
    recording,
    workdir,
    write_result,
)
from _threads import MachineCpu, ThreadCpu, stat_cpu_seconds
from netns import ShapedNamespace

from tests.support.images import push_blob
from tests.support.net import free_port, wait_http
from tests.support.origin import _config_yaml  # the origin config the tests use
from tests.support.procs import ManagedProcess, require_binary

CONFIGS = ("p2p", "no-p2p", "docker-registry proxy")
ORIGIN_BYTES_GOAL = 1.02  # x blob size, P2P, every N
TIME_RATIO_GOAL = 0.25  # P2P / no-P2P total time at N = 8
UPSTREAM = "origin"
PIECE_SIZE = "4MiB"
_OPERATION = re.compile(r'operation="([^"]+)"')
FAILED_LOGS = Path("/tmp/p2p_swarm-failed")  # the product default, said explicitly so the figure names it


class NamespacedOrigin(OriginRegistry):
    """docker-registry serving inside `ns` on its veth address; its egress is the shaped link."""

    def __init__(self, workdir: Path, ns: ShapedNamespace, port: int = 5000) -> None:
        super().__init__(workdir, bind_host=ns.ns_addr)
        self.ns = ns
        self.port = port  # the namespace is ours: no one else binds there

    def start(self, attempts: int = 1) -> NamespacedOrigin:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(_config_yaml(self.host, self.workdir / "storage", None))
        argv = self.ns.exec_argv([require_binary("docker-registry"), "serve", str(config)])
        self.process = ManagedProcess(argv, self.workdir / "registry.log").start()
        wait_http(
            f"{self.url}/v2/",
            timeout=20,
            alive=self.process.alive,
            headers={"User-Agent": "registry-mirror-tests-sentinel/startup"},
        )
        return self


@dataclass
class Node:
    """One node's server (a mirror or a proxy) and the URL its client pulls the blob from."""

    server: MirrorProcess | ProxyRegistry
    url: str

    def stop(self) -> None:
        self.server.stop()

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def cpu_seconds(self) -> float:
        return stat_cpu_seconds(Path(f"/proc/{self.pid}/stat").read_text())

    def tracker_calls(self) -> Counter[str]:
        """Requests this node has made to the tracker, by operation (its own /metrics); none for a proxy."""
        calls: Counter[str] = Counter()
        if isinstance(self.server, MirrorProcess):
            text = httpx.get(f"{self.server.url}/metrics", timeout=10).text
            for line in text.splitlines():
                if line.startswith("registry_mirror_tracker_request_duration_seconds_count"):
                    operation = _OPERATION.search(line)
                    calls[operation.group(1) if operation else "?"] += int(float(line.rsplit(" ", 1)[1]))
        return calls


# -- starting N nodes of one configuration ---------------------------------------------------------
def start_nodes(
    config: str,
    count: int,
    origin: OriginRegistry,
    work: Path,
    digest: str,
    log_level: str = "warning",
    caches: Path | None = None,
    baseline: Path | None = None,
) -> list[Node]:
    hosts = [f"127.0.0.{11 + i}" for i in range(count)]
    if config == "docker-registry proxy":
        starters: list[Callable[[], Node]] = [
            lambda host=host: _proxy_node(ProxyRegistry(work / host, origin.url, bind_host=host), digest)
            for host in hosts
        ]
        return _start_all(starters)
    p2p_args: list[list[str]] = [[] for _ in hosts]
    if config.startswith("p2p"):
        peer_ports = [free_port(host) for host in hosts]
        tracker = f"http://{hosts[0]}:{peer_ports[0]}/tracker"
        p2p_args = [
            [
                "--peer-listen",
                f"{host}:{port}",
                "--piece-size",
                PIECE_SIZE,
                "--tracker",
                "embedded" if i == 0 else tracker,
            ]
            for i, (host, port) in enumerate(zip(hosts, peer_ports, strict=True))
        ]
    mirrors = [
        MirrorProcess(
            work / host,
            {UPSTREAM: origin.url},
            ["--default-upstream", UPSTREAM, "--log-level", log_level, "--cache-max-size", "40GiB", *extra],
            host=host,
            cache_dir=(caches or work / "caches") / host,
            env={"PYTHONPATH": str(baseline)} if config.endswith("baseline") and baseline else None,
        )
        for host, extra in zip(hosts, p2p_args, strict=True)
    ]
    return _start_all([lambda mirror=mirror: _mirror_node(mirror, digest) for mirror in mirrors])


def _mirror_node(mirror: MirrorProcess, digest: str) -> Node:
    mirror.start()
    return Node(mirror, f"{mirror.url}/v2/{REPO}/blobs/{digest}")


def _proxy_node(proxy: ProxyRegistry, digest: str) -> Node:
    proxy.start()
    return Node(proxy, f"{proxy.url}/v2/{REPO}/blobs/{digest}")


def _start_all(starters: Sequence[Callable[[], Node]]) -> list[Node]:
    """Start in parallel (each waits for its own readiness); stop the started ones if one fails."""
    with concurrent.futures.ThreadPoolExecutor(len(starters)) as pool:
        futures = [pool.submit(start) for start in starters]
        concurrent.futures.wait(futures)
    nodes = [f.result() for f in futures if f.exception() is None]
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        for node in nodes:
            node.stop()
        raise RuntimeError(f"{len(failed)} node(s) did not start") from failed[0]
    return nodes


# -- the clients -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientResult:
    digest: str
    size: int
    seconds: float


def pull_all(urls: Sequence[str]) -> tuple[float, list[ClientResult]]:
    """One `curl | openssl dgst` per URL, all started together: (wall seconds until the last, each)."""
    script = (
        "set -o pipefail; curl -sS --fail -w '%{stderr}%{size_download} %{time_total}\\n' "
        '-o - "$1" | openssl dgst -sha256 -r'
    )
    started = time.perf_counter()
    procs = [
        subprocess.Popen(["bash", "-c", script, "pull", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for url in urls
    ]
    outputs = [proc.communicate(timeout=900) for proc in procs]
    elapsed = time.perf_counter() - started
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"client failed (rc={proc.returncode}): {err.strip()[-500:]}")
        size, seconds = err.strip().splitlines()[-1].split()
        results.append(ClientResult("sha256:" + out.split()[0], int(size), float(seconds)))
    return elapsed, results


class TrackerWatch:
    """Samples the embedded tracker (piece hashes published, each holder's pieces and load)."""

    def __init__(self, mirror: MirrorProcess | ProxyRegistry, digest: str) -> None:
        peer_listen = mirror.extra_args[mirror.extra_args.index("--peer-listen") + 1]  # type: ignore[union-attr]
        self.base = f"http://{peer_listen}/tracker/v1"
        self.digest = digest
        self.samples: list[dict[str, object]] = []
        self.started = time.perf_counter()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._done.wait(0.25):
                sample: dict[str, object] = {"t": round(time.perf_counter() - self.started, 2)}
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    pieces = client.get(f"{self.base}/pieces/{self.digest}")
                    sample["hashes"] = len(pieces.json()["hashes"]) if pieces.status_code == 200 else 0
                    peers = client.get(f"{self.base}/peers/{self.digest}").json()["peers"]
                    sample["holders"] = {
                        p["peer"]["id"]: [p["pieces_held"], p["peer"]["load"], p["complete"]] for p in peers
                    }
                self.samples.append(sample)

    def stop(self) -> list[dict[str, object]]:
        self._done.set()
        self._thread.join(5)
        return self.samples


# -- one run ------------------------------------------------------------------------------------------
def run_once(
    config: str, count: int, origin: OriginRegistry, work: Path, digest: str, size: int, args: argparse.Namespace
) -> dict[str, object]:
    place = work / f"{config.replace(', ', '-').split()[0]}-{count}"
    caches = args.cache_root / f"p2p-swarm-{os.getpid()}-{place.name}" if args.cache_root else place / "caches"
    # Every node writes its blob into new pages; what one costs moved 20x within a day here.
    new_pages = page_cost(args.cache_root or work)
    try:
        nodes = start_nodes(config, count, origin, place, digest, args.mirror_log_level, caches, args.baseline_tree)
    except BaseException:
        shutil.rmtree(caches, ignore_errors=True)
        raise
    try:
        read_warm(origin_blob_path(origin, digest))  # the origin's disk is never the bottleneck
        marker = origin.clear_log_marker()
        watcher = TrackerWatch(nodes[0].server, digest) if args.watch_tracker and config == "p2p" else None
        servers_before = sum(node.cpu_seconds() for node in nodes)
        calls_before = sum((node.tracker_calls() for node in nodes), Counter[str]())
        threads = [ThreadCpu(node.pid, sampled=False) for node in nodes]
        try:
            profiled = {f"{place.name}-node{i}": node.pid for i, node in enumerate(nodes)} if "p2p" in config else {}
            with MachineCpu() as machine, contextlib.ExitStack() as watching:
                watching.enter_context(recording(args.profile, profiled))
                for watched in threads:
                    watching.enter_context(watched)
                seconds, clients = pull_all([node.url for node in nodes])
        finally:
            timeline = watcher.stop() if watcher is not None else []
        servers_cpu = sum(node.cpu_seconds() for node in nodes) - servers_before
        tracker_calls = sum((node.tracker_calls() for node in nodes), Counter[str]()) - calls_before
        by_thread: dict[str, float] = {}
        for watched in threads:
            for name, cpu in watched.by_name().items():
                by_thread[name] = by_thread.get(name, 0.0) + cpu
    except BaseException:
        _keep_logs(place)
        raise
    finally:
        for node in nodes:
            node.stop()
        if args.keep_logs:
            _keep_logs(place)
        shutil.rmtree(place, ignore_errors=True)
        shutil.rmtree(caches, ignore_errors=True)
    gets = origin.blob_gets(digest, since=marker)
    bad = [c for c in clients if c.digest != digest or c.size != size]
    if bad:
        raise RuntimeError(f"{config} N={count}: {len(bad)} client(s) got a wrong blob: {bad}")
    return {
        "seconds": seconds,
        "origin_gets": len(gets),
        "origin_bytes": sum(entry.bytes for entry in gets),
        "origin_ratio": sum(entry.bytes for entry in gets) / size,
        "node_mb_per_s": [size / c.seconds / 1e6 for c in clients],
        "verified": len(clients),
        "nodes_cpu_seconds": servers_cpu,
        "tracker_calls": sum(tracker_calls.values()),
        "tracker_calls_by_operation": dict(tracker_calls.most_common()),
        "nodes_cpu_by_thread": dict(sorted(by_thread.items(), key=lambda item: -item[1])),
        "machine_busy": machine.busy,
        "machine_steal": machine.steal,
        "page_cost_cpu_s_per_gib": new_pages,
        **({"tracker_timeline": timeline} if timeline else {}),
    }


def _keep_logs(place: Path) -> None:
    """A run's server logs survive the work directory (after a failure, or with --keep-logs)."""
    kept = FAILED_LOGS / place.name
    for log in place.rglob("*.log"):
        target = kept / log.relative_to(place)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, target)
    print(f"server logs kept in {kept}")


# -- main ---------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rate", default="800mbit", help="tc tbf rate of the origin's egress")
    parser.add_argument("--budget-s", type=float, default=420, help="no new round starts after this")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="a subset of: " + ", ".join(CONFIGS))
    parser.add_argument("--baseline", metavar="REV", help="also run an older tree's P2P mirrors (a git worktree)")
    parser.add_argument("--keep-logs", action="store_true", help=f"keep every run's server logs in {FAILED_LOGS}")
    parser.add_argument("--mirror-log-level", default="warning")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        default=None,
        help="perf record and py-spy every P2P node during each run (they cost CPU: the times are slower)",
    )
    parser.add_argument(
        "--watch-tracker",
        action="store_true",
        help="sample the embedded tracker every 0.25 s during P2P runs (a timeline in the JSON)",
    )
    parser.add_argument(
        "--cache-root",
        type=Path,
        default=None,
        help="put the mirrors' cache directories here (e.g. /dev/shm, to take the disk out)",
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    configs = tuple(c for c in CONFIGS if c in args.configs.split(","))
    if args.baseline:  # the older tree's P2P right after this one's, every round
        configs = tuple(x for c in configs for x in ((c, "p2p, baseline") if c == "p2p" else (c,)))
    size = args.size_mib * MiB
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so the finally blocks remove the namespace
    started = time.monotonic()
    runs: dict[str, dict[int, list[dict[str, object]]]] = {c: {n: [] for n in counts} for c in configs}
    rounds_done = 0
    with workdir("p2p") as work, baseline_tree(work, args.baseline) as tree, ShapedNamespace(rate=args.rate) as ns:
        args.baseline_tree = tree
        origin = NamespacedOrigin(work / "origin", ns).start()
        try:
            blob = work / "blob.bin"
            digest = make_blob(blob, size, seed=7)
            push_blob(origin, REPO, blob)
            blob.unlink()
            for round_no in range(args.rounds):
                if round_no and time.monotonic() - started > args.budget_s:
                    print(f"time budget reached: {round_no} round(s) done")
                    break
                for count in counts:
                    for config in configs if round_no % 2 == 0 else configs[::-1]:
                        result = run_once(config, count, origin, work, digest, size, args)
                        runs[config][count].append(result)
                        print(
                            f"round {round_no} N={count} {config}: {result['seconds']:.1f} s, "
                            f"origin {result['origin_ratio']:.3f}x, steal {result['machine_steal']:.0%}, new pages {result['page_cost_cpu_s_per_gib']:.2f} CPU-s/GiB, "
                            f"{result['tracker_calls']} tracker calls "
                            f"{result['tracker_calls_by_operation']}; "
                            "servers' CPU by thread: "
                            + ", ".join(f"{name} {cpu:.1f}" for name, cpu in result["nodes_cpu_by_thread"].items()),  # type: ignore[attr-defined]
                            flush=True,
                        )
                rounds_done += 1
            qdisc = ns.qdisc_stats()
        finally:
            origin.stop()
    report(runs, counts, size, rounds_done, args, qdisc, time.monotonic() - started)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


# -- report ---------------------------------------------------------------------------------------------
def report(
    runs: dict[str, dict[int, list[dict[str, object]]]],
    counts: list[int],
    size: int,
    rounds: int,
    args: argparse.Namespace,
    qdisc: str,
    wall: float,
) -> None:
    rows: list[list[object]] = []
    summary: dict[str, object] = {}
    for count in counts:
        plain = median([float(r["seconds"]) for r in runs.get("no-p2p", {}).get(count, [])])  # type: ignore[arg-type]
        for config in runs:
            results = runs[config][count]
            seconds = median([float(r["seconds"]) for r in results])  # type: ignore[arg-type]
            ratio = max(float(r["origin_ratio"]) for r in results)  # type: ignore[arg-type]
            speeds = [s for r in results for s in r["node_mb_per_s"]]  # type: ignore[attr-defined]
            medians = {
                key: median([float(r[key]) for r in results])  # type: ignore[arg-type]
                for key in ("nodes_cpu_seconds", "machine_busy", "machine_steal", "page_cost_cpu_s_per_gib")
            }
            goals = []
            if config == "p2p":
                goals.append(f"origin <= {ORIGIN_BYTES_GOAL}x {'met' if ratio <= ORIGIN_BYTES_GOAL else 'MISSED'}")
                if count == 8:
                    met = seconds <= TIME_RATIO_GOAL * plain
                    goals.append(f"time <= {TIME_RATIO_GOAL}x no-p2p {'met' if met else 'MISSED'}")
            rows.append(
                [
                    count,
                    config,
                    seconds,
                    seconds / plain,
                    ratio,
                    "/".join(str(r["origin_gets"]) for r in results),
                    median(speeds),
                    min(speeds),
                    medians["nodes_cpu_seconds"],
                    f"{medians['machine_busy']:.0%}",
                    f"{medians['machine_steal']:.0%}",
                    medians["page_cost_cpu_s_per_gib"],
                    "; ".join(goals),
                ]
            )
            summary[f"{config} N={count}"] = {
                "seconds_median": seconds,
                "x_no_p2p": seconds / plain,
                "origin_ratio_max": ratio,
                "nodes_cpu_seconds_median": medians["nodes_cpu_seconds"],
                "machine_busy_median": medians["machine_busy"],
                "machine_steal_median": medians["machine_steal"],
                "page_cost_median": medians["page_cost_cpu_s_per_gib"],
            }
    table = Table(
        [
            "N",
            "configuration",
            "total s",
            "x no-p2p",
            "origin bytes / blob",
            "origin GETs",
            "node MB/s median",
            "node MB/s min",
            "servers CPU-s",
            "machine busy",
            "steal",
            "new page CPU-s/GiB",
            "goals",
        ],
        rows,
    )
    write_result(
        "p2p_swarm",
        {
            "blob_bytes": size,
            "piece_size": PIECE_SIZE,
            "rounds": rounds,
            "origin_link": f"tc tbf rate {args.rate} burst 1mb latency 50ms on the origin namespace's veth egress",
            "client": "curl | openssl dgst -sha256",
            "wall_seconds": wall,
            "summary": summary,
            "runs": {c: {str(n): v for n, v in r.items()} for c, r in runs.items()},
            "qdisc": qdisc,
        },
        [table],
    )


if __name__ == "__main__":
    main()
