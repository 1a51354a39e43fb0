"""Real processes for the hub tests: olah (offline, serving git repos made here) behind a small
HF-like front (private repos, Xet metadata), `registry-mirror serve --hf-upstream ...
--modelscope-upstream ...`, and clients run as subprocesses (huggingface_hub, modelscope,
`registry-mirror get`). Every helper process runs in a temp dir, so nothing lands in the repo."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hub.olah_origin import HubRepo, OlahOrigin
from tests.support.mirror import MirrorProcess
from tests.support.net import free_port, wait_http
from tests.support.procs import ManagedProcess, starts_processes

REPO_ROOT = Path(__file__).resolve().parents[2]
GOOD_TOKEN = "hf_good_token_for_tests"
WEIGHTS_SIZE = 3 * 1024 * 1024 + 17  # several 1 MiB chunks and a ragged end
DEAD_URL = "http://127.0.0.1:1"  # an origin nobody answers: keeps every default off the internet
# `serve` needs one registry upstream; the hub tests never ask it for anything.
UNUSED_REGISTRY = {"127.0.0.1:1": DEAD_URL}


@dataclass
class HubOrigin:
    olah: OlahOrigin
    front: ManagedProcess
    front_url: str
    public: HubRepo
    private: HubRepo
    corrupt: HubRepo
    sources: dict[str, bytes]  # "repo/path" -> expected bytes

    def front_log(self) -> str:
        return self.front.log_text()


def _random(size: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


def start_module(module: str, args: Sequence[str], workdir: Path) -> ManagedProcess:
    """`python -m tests.hub.<module> ARGS` with its cwd and log in `workdir`, not in the repo."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return ManagedProcess(
        [sys.executable, "-m", f"tests.hub.{module}", *args], workdir / f"{module}.log", env=env, cwd=workdir
    ).start()


def start_front(workdir: Path, olah_url: str, token: str) -> tuple[ManagedProcess, str]:
    """The HF-like front (tests/hub/hub_front.py) before olah; returns (process, url)."""
    port = free_port()
    front = start_module("hub_front", [str(port), olah_url, token], workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/whoami-v2", timeout=30, alive=front.alive)
    except BaseException:
        front.stop()
        raise
    return front, url


@pytest.fixture(scope="module")
@starts_processes
def hub_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubOrigin]:
    work = tmp_path_factory.mktemp("hub-origin")
    olah = OlahOrigin(work)
    sources: dict[str, bytes] = {}

    def make(repo_id: str, seed: int) -> HubRepo:
        weights = _random(WEIGHTS_SIZE, seed)
        staged = work / f"{seed}.bin"
        staged.write_bytes(weights)
        small = {"config.json": b'{"model_type": "test", "seed": %d}\n' % seed, "tokenizer/vocab.txt": b"a\nb\nc\n"}
        repo = olah.add_repo(repo_id, small, {"model.safetensors": staged})
        sources.update({f"{repo_id}/{k}": v for k, v in small.items()})
        sources[f"{repo_id}/model.safetensors"] = weights
        return repo

    public, private, corrupt = make("org/model", 1), make("private/model", 2), make("org/corrupt", 3)
    # A plain git file over the mirror's small-file cap: relayed, streamed, never cached whole.
    big_plain = _random(17 * 1024 * 1024, 7)
    olah.add_repo("org/plainbig", {"big.bin": big_plain})
    sources["org/plainbig/big.bin"] = big_plain
    # Same size, different bytes: the origin now serves a body that does not match its LFS pointer.
    corrupt.lfs_object("model.safetensors").write_bytes(_random(WEIGHTS_SIZE, 99))
    olah.start()
    try:
        front, front_url = start_front(work / "front", olah.url, GOOD_TOKEN)
    except BaseException:
        olah.stop()
        raise
    try:
        yield HubOrigin(olah, front, front_url, public, private, corrupt, sources)
    finally:
        front.stop()
        olah.stop()


def hub_args(hf_url: str = DEAD_URL, ms_url: str = DEAD_URL) -> list[str]:
    return ["--hf-upstream", hf_url, "--modelscope-upstream", ms_url]


def cached_blob(mirror: MirrorProcess, sha256: str) -> Path:
    """Where nvme_cache keeps the verified blob `sha256:<sha256>`."""
    return mirror.cache_dir / "blobs" / "sha256" / sha256[:2] / sha256


def committed_blob(mirror: MirrorProcess, sha256: str, deadline: float = 30.0) -> Path:
    """The cached blob once its fill committed. A client can have the whole body a moment before
    the fill's fsync and rename, so this waits for the file rather than expecting it at once."""
    path = cached_blob(mirror, sha256)
    end = time.monotonic() + deadline
    while not path.exists():
        if time.monotonic() > end:
            raise AssertionError(f"sha256:{sha256} never committed to {mirror.cache_dir}")
        time.sleep(0.05)
    return path


@pytest.fixture
def hub_mirror(mirror_process: Callable[..., MirrorProcess]) -> Callable[..., MirrorProcess]:
    """Factory: a real `registry-mirror serve` with the hubs pointed at the given origins."""

    def start(
        hf_url: str = DEAD_URL,
        ms_url: str = DEAD_URL,
        revision_ttl: float | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
    ) -> MirrorProcess:
        env: Mapping[str, str] = {} if revision_ttl is None else {"REGISTRY_MIRROR_HF_REVISION_TTL": str(revision_ttl)}
        return mirror_process(UNUSED_REGISTRY, extra_args=[*hub_args(hf_url, ms_url), *extra_args], host=host, env=env)

    return start


def run_python(
    code: str, env: dict[str, str], *args: str, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs a client in its own interpreter, as a user would, in `cwd` (a temp dir)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def hf_env(mirror: MirrorProcess, home: Path, *, xet: bool, token: str | None = None) -> dict[str, str]:
    env = {
        "HF_ENDPOINT": f"{mirror.url}/hf",
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "0" if xet else "1",
        "HF_HUB_ETAG_TIMEOUT": "30",
        "HF_HUB_DOWNLOAD_TIMEOUT": "30",
    }
    if token:
        env["HF_TOKEN"] = token
    else:
        env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    return env


@pytest.fixture
@starts_processes
def ms_origin(tmp_path: Path) -> Iterator[tuple[str, Path, ManagedProcess]]:
    files = tmp_path / "ms-files"
    (files / "sub").mkdir(parents=True)
    (files / "config.json").write_text('{"a": 1}')
    (files / "model.bin").write_bytes(random.Random(7).randbytes(2 * 1024 * 1024 + 3))
    (files / "sub" / "notes.txt").write_text("notes")
    port = free_port()
    origin = start_module("ms_origin", [str(port), str(files), "org/msmodel"], tmp_path / "ms-origin")
    try:
        wait_http(f"http://127.0.0.1:{port}/", alive=origin.alive)
        yield f"http://127.0.0.1:{port}", files, origin
    finally:
        origin.stop()


def get(mirror: MirrorProcess, *args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "registry-mirror"
    return subprocess.run(
        [str(cli), "get", *args, "--mirror", mirror.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=mirror.workdir,
        env={k: v for k, v in os.environ.items() if k != "HF_TOKEN"},
    )
