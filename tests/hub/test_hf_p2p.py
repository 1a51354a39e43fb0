"""Two real mirrors on their own loopback addresses share an LFS file through p2p: the second
hf_hub_download makes no origin request for the weights, and both copies hash to the LFS sha256."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.hub.conftest import HubOrigin, committed_blob, hf_env, run_python
from tests.hub.test_hf import ONE_FILE, origin_gets
from tests.support.mirror import MirrorProcess
from tests.support.net import free_port

PIECE_SIZE = 1024 * 1024  # the 3 MiB + 17 weights span four pieces


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def wait_until_complete_holder(tracker_url: str, sha256: str, peer_url: str, deadline: float = 60.0) -> None:
    """Polls the tracker until `peer_url` is announced as holding all of `sha256:<sha256>`
    (announces are batched, so the commit and the announce are a moment apart)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        peers = httpx.get(f"{tracker_url}/v1/peers/sha256:{sha256}", timeout=10).json()["peers"]
        if any(p["complete"] and p["peer"]["url"].rstrip("/") == peer_url for p in peers):
            return
        time.sleep(0.1)
    raise AssertionError(f"{peer_url} never announced sha256:{sha256} as complete; tracker: {peers}")


def download(mirror: MirrorProcess, home: Path, repo: str, path: str) -> Path:
    result = run_python(ONE_FILE, hf_env(mirror, home, xet=False), repo, path, "main", cwd=home)
    assert result.returncode == 0, result.stderr[-3000:] + mirror.log_text()[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def test_second_mirror_gets_lfs_file_from_first_through_p2p(
    hub_origin: HubOrigin, hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    repo, path = "org/model", "model.safetensors"
    sha256 = hub_origin.public.lfs[path]
    host_a, host_b = "127.0.0.21", "127.0.0.22"
    peer_port_a, peer_port_b = free_port(host_a), free_port(host_b)
    tracker_url = f"http://{host_a}:{peer_port_a}/tracker"
    p2p = ["--piece-size", str(PIECE_SIZE)]
    mirror_a = hub_mirror(
        hub_origin.front_url,
        host=host_a,
        extra_args=[*p2p, "--peer-listen", f"{host_a}:{peer_port_a}", "--tracker", "embedded"],
    )
    mirror_b = hub_mirror(
        hub_origin.front_url,
        host=host_b,
        extra_args=[*p2p, "--peer-listen", f"{host_b}:{peer_port_b}", "--tracker", tracker_url],
    )
    before = origin_gets(hub_origin, repo, path)

    copy_a = download(mirror_a, tmp_path / "home-a", repo, path)
    after_a = origin_gets(hub_origin, repo, path)
    assert after_a - before == 1
    wait_until_complete_holder(tracker_url, sha256, f"http://{host_a}:{peer_port_a}")

    copy_b = download(mirror_b, tmp_path / "home-b", repo, path)
    after_b = origin_gets(hub_origin, repo, path)
    assert after_b == after_a, mirror_b.log_text()[-3000:]  # B's bytes came from A, not the origin
    assert file_sha256(copy_a) == file_sha256(copy_b) == sha256
    assert file_sha256(committed_blob(mirror_b, sha256)) == sha256  # B verified and cached its copy too
