"""Cold and warm `snapshot_download` of a repo with one big LFS weights file (default 512 MiB) plus
small files, side by side in interleaved rounds:

- olah direct: olah (offline, serving the git repo) is the endpoint;
- mirror cold / warm: a real `registry-mirror serve --hf-upstream <olah>` with an empty cache, then again;
- olah proxy cold / warm (`--olah-proxy`, off by default): a second olah (not offline) whose
  hf-netloc/hf-lfs-netloc are the first olah, with an empty repos-path, then again. It only works
  for files up to 64 MiB: the proxy fetches 64 MiB blocks with Range, the offline origin olah
  ignores Range and sends the whole file, and the proxy raises "content of the response is
  incomplete" on every block, so the client retries for ever (see docs/models.md).

Each download runs `huggingface_hub.snapshot_download` inside this process (no interpreter start-up
in the timing) into a fresh local_dir and cache_dir, and is then checked against the LFS oid. The
origin olah's access log gives the GET/HEAD counts for the weights file per download.

    .venv/bin/python bench/hf_snapshot.py [--size-mib 512] [--rounds 3] [--budget-s 330] [--olah-proxy]

Rounds stop early once another would overrun --budget-s (the whole run stays under 6 minutes).

Writes bench/results/hf_snapshot.json and prints the table."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# huggingface_hub reads these when imported: plain HTTP (no Xet), no telemetry, long timeouts.
os.environ.update(
    {
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ETAG_TIMEOUT": "600",
        "HF_HUB_DOWNLOAD_TIMEOUT": "600",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    }
)
os.environ.pop("HF_TOKEN", None)

from _common import MiB, MirrorProcess, Table, median, read_warm, workdir, write_result  # noqa: E402
from huggingface_hub import snapshot_download  # noqa: E402
from olah.utils.repo_utils import get_meta_save_dir  # noqa: E402

from tests.hub.olah_origin import HubRepo, OlahOrigin  # noqa: E402
from tests.support.net import free_port, wait_http  # noqa: E402
from tests.support.procs import ManagedProcess  # noqa: E402

REPO_ID = "bench/model"
WEIGHTS = "model.safetensors"
SMALL_FILES = {
    "config.json": b'{"model_type": "bench"}\n',
    "tokenizer/vocab.txt": b"a\nb\nc\n" * 1000,
    "README.md": b"# bench model\n",
}
DEAD_URL = "http://127.0.0.1:1"
UNUSED_REGISTRY = {"127.0.0.1:1": DEAD_URL}  # `serve` needs one registry upstream; never asked here
PATHS = ("olah direct", "mirror", "olah proxy")


@dataclass
class Download:
    path: str  # "olah direct", "mirror cold", ...
    seconds: float
    origin_lfs_gets: int
    origin_lfs_heads: int


def make_weights(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with path.open("wb") as out:
        for index in range(0, size, MiB):
            out.write(index.to_bytes(8, "little") + block[8 : min(MiB, size - index)])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def lfs_requests(log: str, method: str) -> int:
    """Access-log lines for the weights file (olah logs through uvicorn at info level)."""
    return len(re.findall(rf'"{method} [^" ]*{re.escape(WEIGHTS)}[^" ]* HTTP', log))


def snapshot(endpoint: str, target: Path, repo: HubRepo, origin: OlahOrigin, name: str) -> Download:
    """One timed snapshot_download into fresh dirs; checks every file; counts origin LFS requests."""
    shutil.rmtree(target, ignore_errors=True)
    read_warm(repo.lfs_object(WEIGHTS))  # the VM drops idle page cache: same start for every path
    log_before = origin.log_text()
    started = time.perf_counter()
    local = Path(
        snapshot_download(
            REPO_ID, endpoint=endpoint, local_dir=target / "local", cache_dir=target / "cache", token=False
        )
    )
    seconds = time.perf_counter() - started
    time.sleep(0.2)  # let the origin's access-log lines for the last responses reach the file
    new_log = origin.log_text()[len(log_before) :]
    if sha256_of(local / WEIGHTS) != repo.lfs[WEIGHTS]:
        raise RuntimeError(f"{name}: {WEIGHTS} does not match its LFS oid")
    for path, data in SMALL_FILES.items():
        if (local / path).read_bytes() != data:
            raise RuntimeError(f"{name}: {path} differs")
    shutil.rmtree(target, ignore_errors=True)
    return Download(name, seconds, lfs_requests(new_log, "GET"), lfs_requests(new_log, "HEAD"))


def seed_origin_repo_meta(origin: OlahOrigin, repo: HubRepo) -> None:
    """An offline olah answers `/api/models/ORG/REPO` (no revision) only from revision metadata in
    its cache, which serving a git mirror never writes: 401 RepositoryNotFound otherwise. An online
    olah checks exactly that URL before anything else, so olah-behind-olah needs this file."""
    meta_dir = Path(get_meta_save_dir(str(origin.workdir / "cache"), "models", *REPO_ID.split("/"))) / repo.commit
    meta_dir.mkdir(parents=True, exist_ok=True)
    (meta_dir / "meta_head.json").write_text(
        json.dumps({"sha": repo.commit, "lastModified": "2024-01-01T00:00:00.000000Z"})
    )


@contextmanager
def hub_mirror(work: Path, origin_url: str) -> Iterator[MirrorProcess]:
    """A real `registry-mirror serve` with an empty cache, hf pointed at the origin olah."""
    shutil.rmtree(work, ignore_errors=True)
    mirror = MirrorProcess(
        work,
        UNUSED_REGISTRY,
        [
            "--hf-upstream",
            origin_url,
            "--modelscope-upstream",
            DEAD_URL,
            "--log-level",
            "warning",
            "--cache-max-size",
            "40GiB",
        ],
    )
    mirror.start()
    try:
        yield mirror
    finally:
        mirror.stop()
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def olah_proxy(work: Path, origin_url: str) -> Iterator[str]:
    """A second olah, online, caching what it fetches from the origin olah into an empty repos-path."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    origin = origin_url.split("://", 1)[1]
    config = work / "olah.toml"
    config.write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {port}\nrepos-path = "{work / "repos"}"\n'
        f'hf-scheme = "http"\nhf-netloc = "{origin}"\nhf-lfs-netloc = "{origin}"\n'
        f'mirror-scheme = "http"\nmirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
        "[accessibility]\noffline = false\n"
    )
    olah = Path(sys.executable).parent / "olah-cli"
    process = ManagedProcess([str(olah), "-c", str(config)], work / "olah.log", cwd=work).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/whoami-v2", timeout=30, alive=process.alive)
        yield url
    finally:
        process.stop()
        shutil.rmtree(work, ignore_errors=True)


def run_path(path: str, work: Path, origin: OlahOrigin, repo: HubRepo) -> list[Download]:
    client = work / "client"
    if path == "olah direct":
        return [snapshot(origin.url, client, repo, origin, path)]
    if path == "mirror":
        with hub_mirror(work / "mirror", origin.url) as mirror:
            return [snapshot(f"{mirror.url}/hf", client, repo, origin, f"mirror {temp}") for temp in ("cold", "warm")]
    with olah_proxy(work / "olah-proxy", origin.url) as proxy_url:
        return [snapshot(proxy_url, client, repo, origin, f"olah proxy {temp}") for temp in ("cold", "warm")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=330.0, help="start no round that would end later")
    parser.add_argument("--olah-proxy", action="store_true", help="add olah's caching proxy mode (files <= 64 MiB)")
    args = parser.parse_args()
    paths = [p for p in PATHS if args.olah_proxy or p != "olah proxy"]
    size = args.size_mib * MiB
    total_bytes = size + sum(len(data) for data in SMALL_FILES.values())
    downloads: list[Download] = []
    started = time.monotonic()
    with workdir("hf-snapshot") as work:
        staged = work / "weights.bin"
        make_weights(staged, size)
        origin = OlahOrigin(work / "origin")
        repo = origin.add_repo(REPO_ID, SMALL_FILES, {WEIGHTS: staged})
        seed_origin_repo_meta(origin, repo)
        origin.start()
        try:
            for round_no in range(args.rounds):
                elapsed = time.monotonic() - started
                if round_no and elapsed / round_no + elapsed > args.budget_s:
                    print(f"stopping after {round_no} rounds: another would overrun --budget-s", flush=True)
                    break
                # Interleaved, the order flipping every round, so drift in load hits every path alike.
                for path in paths if round_no % 2 == 0 else list(reversed(paths)):
                    for download in run_path(path, work, origin, repo):
                        print(
                            f"round {round_no} {download.path:<16} {download.seconds:6.2f} s  origin LFS "
                            f"GET {download.origin_lfs_gets} HEAD {download.origin_lfs_heads}",
                            flush=True,
                        )
                        downloads.append(download)
        finally:
            origin.stop()
    order = ["olah direct", "mirror cold", "mirror warm", "olah proxy cold", "olah proxy warm"]
    names = [name for name in order if any(d.path == name for d in downloads)]
    direct = median([d.seconds for d in downloads if d.path == "olah direct"])
    rows, summary = [], {}
    for name in names:
        mine = [d for d in downloads if d.path == name]
        seconds = median([d.seconds for d in mine])
        gets = sorted({d.origin_lfs_gets for d in mine})
        heads = sorted({d.origin_lfs_heads for d in mine})
        summary[name] = {
            "median_s": seconds,
            "mb_per_s": total_bytes / seconds / 1e6,
            "x_olah_direct": seconds / direct,
            "runs_s": [d.seconds for d in mine],
            "origin_lfs_gets": [d.origin_lfs_gets for d in mine],
            "origin_lfs_heads": [d.origin_lfs_heads for d in mine],
        }
        rows.append(
            [
                name,
                seconds,
                total_bytes / seconds / 1e6,
                seconds / direct,
                "/".join(map(str, gets)),
                "/".join(map(str, heads)),
            ]
        )
    table = Table(["path", "median s", "MB/s", "x olah direct", "origin LFS GETs", "origin LFS HEADs"], rows)
    rounds_done = len([d for d in downloads if d.path == "olah direct"])
    write_result(
        "hf_snapshot",
        {
            "size_mib": args.size_mib,
            "total_bytes": total_bytes,
            "rounds": rounds_done,
            "wall_s": time.monotonic() - started,
            "results": summary,
        },
        [table],
    )


if __name__ == "__main__":
    main()
