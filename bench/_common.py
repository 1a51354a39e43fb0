"""What every bench script shares: the real servers (origin, proxy, mirror, nginx), a test blob,
curl as the GET client, interleaved rounds, the table and the JSON result file."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # tests.support holds the real-server fixtures; PYTHONPATH still wins, so a prototype copy of
    # a package can be measured against the tree's own.
    _after_pythonpath = 1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    sys.path.insert(_after_pythonpath, str(REPO_ROOT))

from tests.support.images import push_blob  # noqa: E402
from tests.support.mirror import MirrorProcess  # noqa: E402
from tests.support.nginx import NginxServer  # noqa: E402
from tests.support.origin import OriginRegistry, ProxyRegistry  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
# run_all --quick points this elsewhere so smoke runs never overwrite real results.
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")
REPO = "bench/blob"
# Freed guest memory is reported to the host after ~2 s (min_free_ms, page_reporting): a fill that
# starts later than that touches pages the host has taken back, as every new mirror's does.
FRESH_PAGES_PAUSE = 3.0
UPSTREAM = "origin"

__all__ = [
    "FRESH_PAGES_PAUSE",
    "GiB",
    "MiB",
    "REPO",
    "MirrorProcess",
    "NginxServer",
    "OriginRegistry",
    "ProxyRegistry",
    "Table",
    "curl_get",
    "curl_get_many",
    "drop_from_page_cache",
    "interleaved",
    "make_blob",
    "median",
    "mirror_blob_path",
    "origin_blob_path",
    "page_cost",
    "proc_status_kib",
    "push",
    "read_warm",
    "registry_data_path",
    "start_mirror",
    "wait_for_file",
    "workdir",
    "write_result",
]


@contextmanager
def workdir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-", dir=parent or os.environ.get("BENCH_TMP")))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the blob --------------------------------------------------------------------------------------
@contextmanager
def baseline_tree(work: Path, revision: str | None) -> Iterator[Path | None]:
    """A checkout of `revision` whose code an older mirror runs (PYTHONPATH wins over the venv),
    or None without one; the worktree is pruned afterwards."""
    if not revision:
        yield None
        return
    tree = work / "baseline"
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", "-f", str(tree), revision],
        check=True,
        capture_output=True,
    )
    try:
        yield tree
    finally:
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "prune"], check=False)


def make_blob(path: Path, size: int, seed: int = 1) -> str:
    """`size` incompressible bytes (a counter hashed into 1 MiB blocks of sha-stretched noise)."""
    digest = hashlib.sha256()
    block = os.urandom(MiB)  # one random block, varied per MiB: cheap and never compressible
    with path.open("wb") as out:
        for index in range(0, size, MiB):
            chunk = (index // MiB + seed).to_bytes(8, "little") + block[8 : min(MiB, size - index)]
            digest.update(chunk)
            out.write(chunk)
    return f"sha256:{digest.hexdigest()}"


def push(origin: OriginRegistry, work: Path, size: int, seed: int) -> str:
    """A new `size`-byte blob of `seed` pushed to the origin under REPO; its digest."""
    blob = work / f"blob-{seed}.bin"
    digest = make_blob(blob, size, seed=seed)
    push_blob(origin, REPO, blob)
    blob.unlink()
    return digest


def registry_data_path(storage: Path, digest: str) -> Path:
    hex_ = digest.split(":", 1)[1]
    return storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_[:2] / hex_ / "data"


def origin_blob_path(origin: OriginRegistry, digest: str) -> Path:
    return registry_data_path(origin.workdir / "storage", digest)


def mirror_blob_path(cache_dir: Path, digest: str) -> Path:
    algorithm, hex_ = digest.split(":", 1)
    return cache_dir / "blobs" / algorithm / hex_[:2] / hex_


def wait_for_file(path: Path, timeout: float = 60.0) -> Path:
    """A fill commits (fsync, rename) after the last byte went out: wait for the file."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)
    return path


def read_warm(*paths: Path) -> None:
    """The VM drops page cache idle for ~60 s: read the file just before a warm figure."""
    for path in paths:
        with path.open("rb", buffering=0) as src:
            while src.readinto(_WARM_BUFFER):
                pass


_WARM_BUFFER = bytearray(8 * MiB)


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def proc_status_kib(pid: int | str, field: str) -> int:
    """One KiB figure of /proc/PID/status ("VmRSS", "VmHWM"); `pid` may be "self"."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


# -- servers ---------------------------------------------------------------------------------------
def start_mirror(
    work: Path, origin_url: str, cache_dir: Path | None = None, env: dict[str, str] | None = None
) -> MirrorProcess:
    mirror = MirrorProcess(
        work,
        {UPSTREAM: origin_url},
        ["--default-upstream", UPSTREAM, "--log-level", "warning", "--cache-max-size", "40GiB"],
        cache_dir=cache_dir,
        env=env,
    )
    return mirror.start()


# -- curl as the GET client --------------------------------------------------------------------------
def curl_get(url: str) -> tuple[int, float]:
    """(bytes received, seconds) for one GET into /dev/null; raises unless HTTP 200."""
    (result,) = curl_get_many([url])
    return result


def curl_get_many(urls: Sequence[str]) -> list[tuple[int, float]]:
    """Start one curl per URL at once; each reports its own bytes and time."""
    procs = [
        subprocess.Popen(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        code, size, seconds = out.split()
        if proc.returncode != 0 or code not in ("200", "206"):
            raise RuntimeError(f"curl failed: rc={proc.returncode} http={code} {err.strip()}")
        results.append((int(size), float(seconds)))
    return results


# -- rounds, table, result file ----------------------------------------------------------------------
def interleaved(variants: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, variant): the order flips every round so drift hits every variant alike."""
    for round_no in range(rounds):
        order = list(variants) if round_no % 2 == 0 else list(reversed(variants))
        for name in order:
            yield round_no, name


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Table:
    columns: Sequence[str]
    rows: list[Sequence[object]]

    def render(self) -> str:
        cells = [[_cell(value) for value in row] for row in self.rows]
        widths = [max(len(str(c)), *(len(row[i]) for row in cells)) for i, c in enumerate(self.columns)]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(self.columns, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join(lines)

    def markdown(self) -> str:
        cells = [[_cell(value) for value in row] for row in self.rows]
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_result(name: str, result: dict[str, object], tables: Sequence[Table]) -> Path:
    for table in tables:
        print(table.render())
        print()
        print(table.markdown())
        print()
    result = {
        "name": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        **result,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def page_cost(directory: Path, size: int = GiB, tail: int = 256 * MiB) -> float:
    """CPU-s per GiB of the last `tail` bytes of a `size`-byte file written into `directory` after
    a pause of FRESH_PAGES_PAUSE: what a page past the guest's pool of recently freed ones costs
    right now. On this VM the first few hundred MiB of any write take recycled pages (0.2-0.5
    CPU-s/GiB) and the rest pages the host took back, whose first touch is a host fault (up to
    8-11 CPU-s/GiB on 2026-12-03); every fill pays the latter once it has used the pool, so only
    figures measured where this probe read alike compare. It pauses again after removing the
    file, so what it touched is the host's again before the measured run starts."""
    chunk = os.urandom(MiB)
    time.sleep(FRESH_PAGES_PAUSE)
    fd, name = tempfile.mkstemp(prefix="page-cost-", dir=directory)
    try:
        for offset in range(0, size - tail, MiB):
            os.pwrite(fd, chunk, offset)
        started = time.thread_time()
        for offset in range(size - tail, size, MiB):
            os.pwrite(fd, chunk, offset)
        spent = time.thread_time() - started
    finally:
        os.close(fd)
        os.unlink(name)
    time.sleep(FRESH_PAGES_PAUSE)
    return spent / (tail / GiB)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


@contextmanager
def recording(output_dir: Path | None, targets: dict[str, int]) -> Iterator[None]:
    """With an output directory: `perf record -g` and `py-spy record` (raw stacks, every thread) of
    each process in `targets` (label -> pid) while the block runs, one `.data` and one
    `.py-spy.txt` per label; without one, nothing."""
    if output_dir is None or not targets:
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    recorders: list[subprocess.Popen[bytes]] = []
    for label, pid in targets.items():
        output = output_dir / f"{label.replace(' ', '-')}-{time.monotonic_ns()}.data"
        commands = [
            ["perf", "record", "-q", "-F", "499", "-g", "-p", str(pid), "-o", str(output)],
            [spy, "record", "-r", "199", "-f", "raw", "--threads", "--nonblocking", "-p", str(pid)],
        ]
        commands[1] += ["-o", str(output.with_suffix(".py-spy.txt"))]
        recorders += [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for argv in commands]
    time.sleep(1.0)  # they attach before the transfer starts
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(2)
            recorder.wait()
