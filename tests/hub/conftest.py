"""Real processes for the hub tests: olah (offline, serving git repos made here) behind a small
HF-like front (private repos, Xet metadata), the mirror with the hub mounted, and clients run as
subprocesses (huggingface_hub, modelscope, `registry-mirror get`)."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hub.olah_origin import HubRepo, OlahOrigin
from tests.support.net import free_port, wait_http
from tests.support.procs import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
GOOD_TOKEN = "hf_good_token_for_tests"
WEIGHTS_SIZE = 3 * 1024 * 1024 + 17  # several 1 MiB chunks and a ragged end


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


@pytest.fixture(scope="module")
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
    # Same size, different bytes: the origin now serves a body that does not match its LFS pointer.
    corrupt.lfs_object("model.safetensors").write_bytes(_random(WEIGHTS_SIZE, 99))
    olah.start()
    port = free_port()
    front = ManagedProcess([sys.executable, "-m", "tests.hub.hub_front", str(port), olah.url, GOOD_TOKEN],
                           work / "front.log", cwd=REPO_ROOT).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/api/whoami-v2", timeout=30, alive=front.alive)
        yield HubOrigin(olah, front, f"http://127.0.0.1:{port}", public, private, corrupt, sources)
    finally:
        front.stop()
        olah.stop()


class HubMirror:
    def __init__(self, workdir: Path, hf_url: str, ms_url: str, revision_ttl: float = 60.0) -> None:
        self.workdir = workdir
        self.cache_dir = workdir / "cache"
        self.port = free_port()
        self.process = ManagedProcess(
            [sys.executable, "-m", "tests.hub.serve_hub", str(self.port), str(self.cache_dir), hf_url, ms_url,
             str(revision_ttl)],
            workdir / "mirror.log", cwd=REPO_ROOT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "HubMirror":
        self.process.start()
        wait_http(f"{self.url}/healthz", timeout=30, alive=self.process.alive)
        return self

    def cached_blob(self, sha256: str) -> Path:
        return self.cache_dir / "blobs" / "sha256" / sha256[:2] / sha256


@pytest.fixture
def hub_mirror(tmp_path: Path) -> Iterator[Callable[..., HubMirror]]:
    started: list[HubMirror] = []

    def start(hf_url: str = "http://127.0.0.1:1", ms_url: str = "http://127.0.0.1:1", revision_ttl: float = 60.0,
              ) -> HubMirror:
        mirror = HubMirror(tmp_path / f"mirror-{len(started)}", hf_url, ms_url, revision_ttl)
        started.append(mirror)
        return mirror.start()

    yield start
    for mirror in started:
        mirror.process.stop()


def run_python(code: str, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs a client in its own interpreter, as a user would."""
    return subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT)


def hf_env(mirror: HubMirror, home: Path, *, xet: bool, token: str | None = None) -> dict[str, str]:
    env = {"HF_ENDPOINT": f"{mirror.url}/hf", "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_XET": "0" if xet else "1", "HF_HUB_ETAG_TIMEOUT": "30", "HF_HUB_DOWNLOAD_TIMEOUT": "30"}
    if token:
        env["HF_TOKEN"] = token
    else:
        env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    return env
