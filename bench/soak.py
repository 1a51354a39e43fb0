"""Soak: two mirrors with P2P under steady mixed load while faults are injected on a schedule.

Load (all at once, for `--minutes`, default 10): ctr pulls of an image through the mirrors
(containerd, hosts.toml), cold and warm blob GETs and Range reads checked byte for byte against
the pushed files, and huggingface_hub snapshots through `/hf` (olah behind the HF-like front of
tests/hub). Faults, at fixed fractions of the run: the origin stopped and restarted, the origin
answering 429 for a while (nginx in front of it), the tracker killed (-9) and restarted, a peer
killed and restarted, a mirror killed mid-fill and restarted, the cache pushed near full, a byte
flipped in a cached file.

Reported: requests and failures by kind over time, wrong bytes delivered (a complete response whose
bytes differ from the pushed ones; must be 0), and each mirror's RSS, open fds, threads and asyncio
tasks sampled every 2 s (flat means no leak). Writes bench/results/soak.json and soak.png.

    bench-run .venv/bin/python bench/soak.py --minutes 3
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import RESULTS_DIR, MiB, Table, make_blob, workdir, write_result

from tests.hub.conftest import GOOD_TOKEN, start_front
from tests.hub.olah_origin import OlahOrigin
from tests.support.containerd import ContainerdDaemon, write_hosts_toml
from tests.support.images import push_blob, push_multilayer_image
from tests.support.mirror import MirrorProcess, mirror_binary
from tests.support.net import free_port, wait_http
from tests.support.nginx import NginxServer
from tests.support.origin import OriginRegistry
from tests.support.procs import ManagedProcess

REPO = "soak/blob"
SAMPLE_SECONDS = 2.0
BLOB_SIZES = [4 * MiB, 8 * MiB, 16 * MiB, 24 * MiB]
CACHE_MAX = "320MiB"
HOSTS = ("127.0.0.21", "127.0.0.22")


# -- servers with fixed addresses (restarted in place) ----------------------------------------------
class FixedOrigin(OriginRegistry):
    """docker-registry that keeps its port across restarts (the mirrors' upstream URL stays valid)."""

    def start(self, attempts: int = 3) -> FixedOrigin:
        if not self.port:
            return super().start(attempts)  # type: ignore[return-value]
        from tests.support.procs import require_binary

        # The first start wrote config.yml for this port; the same file serves every restart.
        self.process = ManagedProcess(
            [require_binary("docker-registry"), "serve", str(self.workdir / "config.yml")],
            self.workdir / f"registry-{time.time():.0f}.log",
        ).start()
        wait_http(f"{self.url}/v2/", timeout=20, alive=self.process.alive)
        return self


class SwitchableFront(NginxServer):
    """nginx before the origin; `rate_limited(True)` makes it answer 429 until switched back (SIGHUP)."""

    def __init__(self, work: Path, origin_url: str) -> None:
        proxy = NginxServer.proxy(work, origin_url)
        super().__init__(work, proxy.location, access_log=False)
        self._proxy_location = proxy.location

    def rate_limited(self, on: bool) -> None:
        self.location = "add_header Retry-After 1 always; return 429;" if on else self._proxy_location
        assert self.process is not None
        self._write_conf()
        os.kill(self.process.pid, signal.SIGHUP)  # the nginx master reloads its configuration

    def _write_conf(self) -> None:
        # The same file NginxServer.start writes, with the current location.
        conf = self.workdir / "nginx" / "nginx.conf"
        text = conf.read_text()
        head, _, tail = text.partition("location / { ")
        _, _, rest = tail.partition(" } }\n}")
        conf.write_text(f"{head}location / {{ {self.location} }} }}\n}}{rest}")


class Tracker:
    def __init__(self, work: Path, token_file: Path) -> None:
        self.port = free_port()
        self.argv = [mirror_binary(), "tracker", "--listen", f"127.0.0.1:{self.port}", "--token-file", str(token_file)]
        self.work = work
        self.process: ManagedProcess | None = None

    def start(self) -> Tracker:
        self.process = ManagedProcess(self.argv, self.work / f"tracker-{time.time():.0f}.log").start()
        wait_http(f"http://127.0.0.1:{self.port}/healthz", timeout=20, alive=self.process.alive)
        return self


# -- the tally ----------------------------------------------------------------------------------------
@dataclass
class Tally:
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)  # "kind:reason"
    wrong_bytes: int = 0
    timeline: list[dict[str, object]] = field(default_factory=list)
    _bytes: int = 0
    _ok: int = 0
    _failed: int = 0

    def success(self, kind: str, size: int) -> None:
        with self.lock:
            self.ok[kind] += 1
            self._ok += 1
            self._bytes += size

    def failure(self, kind: str, reason: str) -> None:
        with self.lock:
            self.failed[f"{kind}:{reason}"] += 1
            self._failed += 1

    def wrong(self, kind: str) -> None:
        with self.lock:
            self.wrong_bytes += 1
            self.failed[f"{kind}:wrong_bytes"] += 1

    def sample(self, processes: dict[str, tuple[int | None, str]]) -> None:
        with self.lock:
            point: dict[str, object] = {
                "t": round(time.monotonic() - self.started, 1),
                "bytes": self._bytes,
                "ok": self._ok,
                "failed": self._failed,
            }
            self._bytes = self._ok = self._failed = 0
        for name, (pid, url) in processes.items():
            point[name] = _process_stats(pid, url)
        self.timeline.append(point)


def _process_stats(pid: int | None, url: str) -> dict[str, float] | None:
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stats = {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024, "fds": fds, "threads": int(fields["Threads"])}
    with contextlib.suppress(httpx.HTTPError, ValueError):
        for line in httpx.get(f"{url}/metrics", timeout=2).text.splitlines():
            if line.startswith("registry_mirror_asyncio_tasks"):
                stats["tasks"] = float(line.rsplit(" ", 1)[1])
    return stats


# -- the load -----------------------------------------------------------------------------------------
class Blobs:
    """Pushed blobs and where their bytes are, to check every response against."""

    def __init__(self, origin: OriginRegistry, work: Path) -> None:
        self.origin, self.work = origin, work
        self.files: dict[str, Path] = {}
        self.lock = threading.Lock()
        self._seed = 0

    def push(self, size: int) -> str:
        with self.lock:
            self._seed += 1
            seed = self._seed
        path = self.work / f"blob-{seed}.bin"
        make_blob(path, size, seed=seed)
        digest = push_blob(self.origin, REPO, path)
        with self.lock:
            self.files[digest] = path
        return digest

    def pick(self, rng: random.Random) -> tuple[str, Path]:
        with self.lock:
            return rng.choice(sorted(self.files.items()))


def blob_worker(stop: threading.Event, tally: Tally, blobs: Blobs, mirrors: list[MirrorProcess], seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            digest, path = blobs.pick(rng)
            mirror = rng.choice(mirrors)
            size = path.stat().st_size
            ranged = rng.random() < 0.3
            start = rng.randrange(size) if ranged else 0
            end = min(size, start + rng.randrange(1, 4 * MiB)) if ranged else size
            kind = "range" if ranged else "blob"
            headers = {"Range": f"bytes={start}-{end - 1}"} if ranged else {}
            try:
                with client.stream("GET", f"{mirror.url}/v2/{REPO}/blobs/{digest}", headers=headers) as response:
                    if response.status_code not in (200, 206):
                        tally.failure(kind, f"http_{response.status_code}")
                        response.read()
                        time.sleep(0.2)
                        continue
                    hasher = hashlib.sha256()
                    received = 0
                    for chunk in response.iter_bytes(1 << 20):
                        hasher.update(chunk)
                        received += len(chunk)
            except httpx.HTTPError as exc:
                tally.failure(kind, type(exc).__name__)
                time.sleep(0.2)
                continue
            with open(path, "rb") as source:  # what the origin was given
                source.seek(start)
                expected = hashlib.sha256(source.read(end - start)).hexdigest()
            if received == end - start and hasher.hexdigest() == expected:
                tally.success(kind, received)
            else:
                tally.wrong(kind)


def ctr_worker(stop: threading.Event, tally: Tally, containerd: ContainerdDaemon, ref: str) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):
            containerd.remove_all_images()
        result = containerd.ctr_pull(ref, check=False, timeout=120)
        if getattr(result, "returncode", 1) == 0:
            tally.success("ctr_pull", 0)
        else:
            tally.failure("ctr_pull", "exit")
            time.sleep(0.5)


HF_SNAPSHOT = "import sys\nfrom huggingface_hub import snapshot_download\nprint(snapshot_download(sys.argv[1]))\n"


def hf_worker(
    stop: threading.Event, tally: Tally, mirrors: list[MirrorProcess], files: dict[str, bytes], work: Path
) -> None:
    round_ = 0
    while not stop.is_set():
        round_ += 1
        mirror = mirrors[round_ % len(mirrors)]
        home = work / f"hf-home-{round_}"
        env = {
            **os.environ,
            "HF_ENDPOINT": f"{mirror.url}/hf",
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
            "HF_HUB_ETAG_TIMEOUT": "20",
        }
        done = subprocess.run(
            [sys.executable, "-c", HF_SNAPSHOT, "org/soak"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=work,
        )
        if done.returncode != 0:
            tally.failure("hf_snapshot", "exit")
        else:
            folder = Path(done.stdout.strip().splitlines()[-1])
            if all((folder / name).read_bytes() == data for name, data in files.items()):
                tally.success("hf_snapshot", sum(len(d) for d in files.values()))
            else:
                tally.wrong("hf_snapshot")
        shutil.rmtree(home, ignore_errors=True)
        time.sleep(0.5)


# -- the run ------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    duration = args.minutes * 60
    with workdir("soak") as work:
        return run(work, duration, args.seed)


def run(work: Path, duration: float, seed: int) -> int:
    rng = random.Random(seed)
    stack = contextlib.ExitStack()
    with stack:
        origin = FixedOrigin(work / "origin").start()
        stack.callback(origin.stop)
        front = SwitchableFront(work / "front", origin.url).start()
        stack.callback(front.stop)
        blobs = Blobs(origin, work)
        for size in BLOB_SIZES * 3:
            blobs.push(size)
        image = push_multilayer_image(
            origin, "soak/app", "v1", (2 * MiB, 1 * MiB, 512 * 1024), seed="soak", workdir=work
        )

        olah = OlahOrigin(work / "hub")
        weights = work / "weights.bin"
        weights.write_bytes(random.Random(seed).randbytes(6 * MiB + 3))
        hf_files = {"config.json": b'{"model_type": "soak"}\n', "model.safetensors": weights.read_bytes()}
        olah.add_repo("org/soak", {"config.json": hf_files["config.json"]}, {"model.safetensors": weights})
        olah.start()
        stack.callback(olah.stop)
        hub_front, hub_url = start_front(work / "hub-front", olah.url, GOOD_TOKEN)
        stack.callback(hub_front.stop)

        token = work / "tracker.token"
        token.write_text("soak-token\n")
        tracker = Tracker(work, token).start()
        stack.callback(lambda: tracker.process and tracker.process.stop())
        upstream = front.host
        mirrors = []
        for host in HOSTS:
            extra = [
                "--default-upstream",
                upstream,
                "--log-level",
                "warning",
                "--cache-max-size",
                CACHE_MAX,
                "--peer-listen",
                f"{host}:{free_port(host)}",
                "--tracker",
                f"http://127.0.0.1:{tracker.port}",
                "--tracker-token-file",
                str(token),
                "--hf-upstream",
                hub_url,
            ]
            mirror = MirrorProcess(work / host, {upstream: front.url}, extra, host=host).start()
            stack.callback(mirror.stop)
            mirrors.append(mirror)

        containerd = ContainerdDaemon(work / "containerd").start()
        stack.callback(containerd.stop)
        write_hosts_toml(containerd.hosts_dir, upstream, [m.url for m in mirrors], server_url=front.url)
        ref = f"{upstream}/{image.repo}:{image.tag}"

        tally = Tally()
        stop = threading.Event()
        workers = [
            threading.Thread(target=blob_worker, args=(stop, tally, blobs, mirrors, seed + i), daemon=True)
            for i in range(3)
        ]
        workers.append(threading.Thread(target=ctr_worker, args=(stop, tally, containerd, ref), daemon=True))
        workers.append(threading.Thread(target=hf_worker, args=(stop, tally, mirrors, hf_files, work), daemon=True))
        events: list[dict[str, object]] = []

        def event(name: str) -> None:
            events.append({"t": round(time.monotonic() - tally.started, 1), "event": name})
            print(f"[{events[-1]['t']:>6}s] {name}", flush=True)

        def kill_mid_fill() -> None:
            digest = blobs.push(48 * MiB)
            mirror = mirrors[0]
            reader = threading.Thread(target=lambda: _quiet_get(f"{mirror.url}/v2/{REPO}/blobs/{digest}"), daemon=True)
            reader.start()
            deadline = time.monotonic() + 20
            while (
                not any(p.stat().st_size for p in (mirror.cache_dir / "tmp").iterdir()) and time.monotonic() < deadline
            ):
                time.sleep(0.01)
            mirror.kill9()
            mirror.restart()

        def flip_cached_byte() -> None:
            cached = [
                p
                for p in (mirrors[0].cache_dir / "blobs" / "sha256").rglob("*")
                if p.is_file() and f"sha256:{p.name}" in blobs.files
            ]
            if cached:
                target = rng.choice(cached)
                with open(target, "r+b") as handle:
                    handle.seek(target.stat().st_size // 2)
                    handle.write(b"\xff\x00\xff\x00")

        schedule: list[tuple[float, str, Callable[[], object]]] = [
            (0.10, "origin stopped", origin.stop),
            (0.18, "origin started", origin.start),
            (0.25, "origin answers 429", lambda: front.rate_limited(True)),
            (0.33, "origin answers again", lambda: front.rate_limited(False)),
            (0.40, "tracker kill -9", lambda: tracker.process and tracker.process.kill9()),
            (0.45, "tracker restarted", tracker.start),
            (0.50, "peer kill -9", mirrors[1].kill9),
            (0.55, "peer restarted", mirrors[1].restart),
            (0.60, "mirror kill -9 mid-fill, restarted", kill_mid_fill),
            (0.70, "cache near full", lambda: [blobs.push(32 * MiB) for _ in range(6)]),
            (0.80, "byte flipped in a cached file", flip_cached_byte),
        ]

        def sampler() -> None:
            while not stop.is_set():
                tally.sample(
                    {
                        f"mirror{i}": (m.process.pid if m.process and m.process.alive() else None, m.url)
                        for i, m in enumerate(mirrors)
                    }
                )
                stop.wait(SAMPLE_SECONDS)

        sampling = threading.Thread(target=sampler, daemon=True)
        sampling.start()
        for worker in workers:
            worker.start()
        for fraction, name, action in schedule:
            wait = tally.started + fraction * duration - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                action()
                event(name)
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                event(f"{name} FAILED: {exc}")
        time.sleep(max(0.0, tally.started + duration - time.monotonic()))
        stop.set()
        for worker in workers:
            worker.join(timeout=150)
        sampling.join(timeout=10)
        return report(tally, events, duration)


def _quiet_get(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        with httpx.stream("GET", url, timeout=60) as response:
            for _ in response.iter_bytes(1 << 20):
                pass


def report(tally: Tally, events: list[dict[str, object]], duration: float) -> int:
    series = tally.timeline
    flat = {}
    for name in ("mirror0", "mirror1"):
        points = [p[name] for p in series if isinstance(p.get(name), dict)]
        if points:
            rss = [float(p["rss_mib"]) for p in points]  # type: ignore[index]
            fds = [float(p["fds"]) for p in points]  # type: ignore[index]
            flat[name] = {
                "rss_mib_first": rss[0],
                "rss_mib_max": max(rss),
                "rss_mib_last": rss[-1],
                "fds_first": fds[0],
                "fds_max": max(fds),
                "fds_last": fds[-1],
            }
    requests = sum(tally.ok.values()) + sum(tally.failed.values())
    result = {
        "minutes": duration / 60,
        "requests": requests,
        "ok": dict(tally.ok),
        "failed": dict(tally.failed),
        "wrong_bytes_delivered": tally.wrong_bytes,
        "events": events,
        "flat": flat,
        "timeline": series,
    }
    table = Table(
        ["kind", "ok", "failed"],
        [
            (kind, tally.ok.get(kind, 0), sum(v for k, v in tally.failed.items() if k.startswith(kind + ":")))
            for kind in ("blob", "range", "ctr_pull", "hf_snapshot")
        ],
    )
    write_result("soak", result, [table])
    plot(series, events, RESULTS_DIR / "soak.png")
    print(f"wrong bytes delivered: {tally.wrong_bytes}")
    return 1 if tally.wrong_bytes else 0


def plot(series: list[dict[str, object]], events: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [float(p["t"]) for p in series]  # type: ignore[arg-type]
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    axes[0].plot(t, [int(p["bytes"]) / MiB / SAMPLE_SECONDS for p in series])  # type: ignore[call-overload]
    axes[0].set_ylabel("client MiB/s")
    axes[1].plot(t, [p["ok"] for p in series], label="ok")
    axes[1].plot(t, [p["failed"] for p in series], label="failed", color="tab:red")
    axes[1].set_ylabel(f"requests / {SAMPLE_SECONDS:.0f} s")
    axes[1].legend(loc="upper right")
    per_mirror: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for point in series:
        for name in ("mirror0", "mirror1"):
            stats = point.get(name)
            if isinstance(stats, dict):
                for key, value in stats.items():
                    per_mirror[name][key].append((float(point["t"]), float(value)))  # type: ignore[arg-type]
    for name, stats in per_mirror.items():
        axes[2].plot(*zip(*stats["rss_mib"], strict=True), label=f"{name} RSS")
        axes[3].plot(*zip(*stats["fds"], strict=True), label=f"{name} fds")
        if stats.get("tasks"):
            axes[3].plot(*zip(*stats["tasks"], strict=True), linestyle="--", label=f"{name} tasks")
    axes[2].set_ylabel("RSS MiB")
    axes[3].set_ylabel("fds / tasks")
    axes[2].legend(loc="upper right")
    axes[3].legend(loc="upper right")
    axes[3].set_xlabel("seconds")
    for ax in axes:
        for item in events:
            ax.axvline(float(item["t"]), color="grey", linewidth=0.6, linestyle=":")  # type: ignore[arg-type]
    for item in events:
        axes[0].annotate(
            str(item["event"]),
            (float(item["t"]), 0),
            rotation=90,
            fontsize=7,  # type: ignore[arg-type]
            xytext=(2, 4),
            textcoords="offset points",
            va="bottom",
        )
    fig.suptitle("registry-mirror soak: two mirrors with P2P under faults")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
