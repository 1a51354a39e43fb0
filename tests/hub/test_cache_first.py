"""Cache-first for the hubs: with the origin stopped after a mirror restart, every cached repo
is still served whole by the real clients (huggingface_hub, `registry-mirror get`, modelscope),
from revisions, listings and paths-info answers the cache index kept."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.hub.conftest import GOOD_TOKEN, get, hf_env, run_python, start_front
from tests.hub.olah_origin import OlahOrigin
from tests.support.mirror import MirrorProcess
from tests.support.procs import ManagedProcess

SNAPSHOT = """
import sys
from huggingface_hub import snapshot_download
print(snapshot_download(sys.argv[1]))
"""
ONE_FILE = """
import sys
from huggingface_hub import hf_hub_download
print(hf_hub_download(sys.argv[1], sys.argv[2], revision=sys.argv[3]))
"""
MS_SNAPSHOT = """
import sys
from modelscope import snapshot_download
print(snapshot_download(sys.argv[1], local_dir=sys.argv[2]))
"""
REPO = "org/durable"


class StoppableHub:
    """olah and the HF-like front, both stoppable: this module's own, never the shared one."""

    def __init__(self, work: Path) -> None:
        self.olah = OlahOrigin(work)
        work.mkdir(parents=True, exist_ok=True)
        weights = work / "weights.bin"
        self.files = {"config.json": b'{"model_type": "durable"}\n', "tokenizer/vocab.txt": b"x\ny\n"}
        weights.write_bytes(random.Random(41).randbytes(2 * 1024 * 1024 + 5))
        self.files["model.safetensors"] = weights.read_bytes()
        self.repo = self.olah.add_repo(
            REPO, {k: v for k, v in self.files.items() if k != "model.safetensors"}, {"model.safetensors": weights}
        )
        self.olah.start()
        self.front, self.url = start_front(work / "front", self.olah.url, GOOD_TOKEN)

    def stop(self) -> None:
        self.front.stop()
        self.olah.stop()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[StoppableHub]:
    origin = StoppableHub(tmp_path / "hub")
    try:
        yield origin
    finally:
        origin.stop()


def _assert_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, expected in files.items():
        assert (folder / name).read_bytes() == expected, name


def _stale(mirror: MirrorProcess) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in httpx.get(f"{mirror.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("registry_mirror_stale_answers_total{"):
            route = line.split('route="', 1)[1].split('"', 1)[0]
            found[route] = found.get(route, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def test_hf_clients_after_restart_with_origin_stopped(
    hub: StoppableHub, hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    # revision_ttl 0: every revision is asked again, so with the origin down it is served stale.
    mirror = hub_mirror(hub.url, revision_ttl=0)
    warm = run_python(SNAPSHOT, hf_env(mirror, tmp_path / "home-warm", xet=False), REPO, cwd=tmp_path)
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert get(mirror, f"hf://{REPO}", "--out", str(tmp_path / "get-warm")).returncode == 0

    mirror.restart()
    hub.stop()
    cold = run_python(SNAPSHOT, hf_env(mirror, tmp_path / "home-cold", xet=False), REPO, cwd=tmp_path)
    assert cold.returncode == 0, cold.stderr[-3000:] + mirror.log_text()[-3000:]
    _assert_files(Path(cold.stdout.strip().splitlines()[-1]), hub.files)
    one = run_python(
        ONE_FILE, hf_env(mirror, tmp_path / "home-one", xet=False), REPO, "model.safetensors", "main", cwd=tmp_path
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert Path(one.stdout.strip().splitlines()[-1]).read_bytes() == hub.files["model.safetensors"]
    result = get(mirror, f"hf://{REPO}", "--out", str(tmp_path / "get-cold"))
    assert result.returncode == 0, result.stderr
    _assert_files(tmp_path / "get-cold", hub.files)
    assert _stale(mirror).get("hf_revision", 0) >= 1

    # A repo the mirror never saw is a clear 502 UpstreamUnavailable, not a hang or a 500.
    unknown = httpx.get(f"{mirror.url}/hf/api/models/org/never-seen/revision/main", timeout=20)
    assert unknown.status_code == 502 and unknown.headers["x-error-code"] == "UpstreamUnavailable"
    # the hub routes' one error shape, with fixed text: the origin's address stays in the log
    assert unknown.json() == {"error": "the model hub origin is unavailable"}
    assert unknown.headers["x-error-message"] == "the model hub origin is unavailable"
    assert "Traceback" not in mirror.log_text()


def test_private_repo_is_not_served_while_origin_down(
    hub: StoppableHub, hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    """Only what the origin served anonymously is public: a credentialed client's cached answers
    are not handed to anyone while the origin cannot check them."""
    mirror = hub_mirror(hub.url)
    warm = run_python(SNAPSHOT, hf_env(mirror, tmp_path / "home", xet=False, token=GOOD_TOKEN), REPO, cwd=tmp_path)
    assert warm.returncode == 0, warm.stderr[-3000:]
    mirror.restart()
    hub.stop()
    other = httpx.get(
        f"{mirror.url}/hf/api/models/{REPO}/revision/main",
        timeout=20,
        headers={"Authorization": "Bearer hf_someone_else"},
    )
    assert other.status_code == 502


def test_modelscope_client_after_restart_with_origin_stopped(
    ms_origin: tuple[str, Path, ManagedProcess], hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    url, files, origin = ms_origin
    mirror = hub_mirror(ms_url=url)
    env = {
        "MODELSCOPE_ENDPOINT": f"{mirror.url}/modelscope",
        "MODELSCOPE_CACHE": str(tmp_path / "ms-cache-1"),
        "MODELSCOPE_DOMAIN": f"127.0.0.1:{mirror.port}/modelscope",
    }
    warm = run_python(MS_SNAPSHOT, env, "org/msmodel", str(tmp_path / "warm"), cwd=tmp_path)
    assert warm.returncode == 0, warm.stderr[-3000:]
    mirror.restart()
    origin.stop()
    env["MODELSCOPE_CACHE"] = str(tmp_path / "ms-cache-2")
    cold = run_python(MS_SNAPSHOT, env, "org/msmodel", str(tmp_path / "cold"), cwd=tmp_path)
    assert cold.returncode == 0, cold.stderr[-3000:] + mirror.log_text()[-3000:]
    for source in files.rglob("*"):
        if source.is_file():
            assert (tmp_path / "cold" / source.relative_to(files)).read_bytes() == source.read_bytes()
    assert sum(_stale(mirror).values()) >= 1
