"""`make image`: the OCI archive runs under a private containerd (runc, read-only root, non-root user)
and serves a real pull; it holds only runtime dependencies.

The archive is built by `make image` when missing or older than its sources (a few minutes, with
the Debian archive reachable); the test then imports it, `ctr run`s it and pulls through it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TestImages
from tests.support.containerd import ContainerdDaemon, write_hosts_toml
from tests.support.mirror import REPO_ROOT
from tests.support.net import free_port, wait_http
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration

ARCHIVE = REPO_ROOT / "dist" / "registry-mirror.oci.tar"
IMAGE_UID = 10001
CACHE_IN_IMAGE = "/var/cache/registry-mirror"
TEST_ONLY = ("pytest", "hypothesis", "huggingface_hub", "modelscope", "olah", "grpc")


@pytest.fixture(scope="session")
def archive() -> Path:
    done = subprocess.run(
        ["make", "--no-print-directory", "image"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return ARCHIVE


def _oci_json(tar: tarfile.TarFile, name: str) -> Any:
    """A JSON file of the archive: `index.json`, or a blob by its digest."""
    member = tar.extractfile(name if name == "index.json" else "blobs/" + name.replace(":", "/"))
    assert member is not None
    return json.load(member)


def _manifest_and_config(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    with tarfile.open(path) as tar:
        index = _oci_json(tar, "index.json")
        [descriptor] = index["manifests"]
        manifest = _oci_json(tar, descriptor["digest"])
        return descriptor, manifest, _oci_json(tar, manifest["config"]["digest"])


def test_archive_names_the_version_runs_as_non_root_and_has_no_test_dependencies(archive: Path) -> None:
    descriptor, manifest, config = _manifest_and_config(archive)
    assert (
        descriptor["annotations"]["org.opencontainers.image.ref.name"]
        == f"registry-mirror:{version('registry-mirror')}"
    )
    assert config["config"]["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert config["config"]["Entrypoint"] == ["/opt/registry-mirror/bin/registry-mirror"]
    assert CACHE_IN_IMAGE in config["config"]["Volumes"]
    assert len(manifest["layers"]) == 2  # the OS, then the app: a code change re-ships only the app
    compressed = sum(layer["size"] for layer in manifest["layers"])
    assert compressed < 150 << 20, f"{compressed / 2**20:.0f} MiB compressed"
    with tarfile.open(archive) as tar:
        app_layer = tar.extractfile("blobs/" + manifest["layers"][-1]["digest"].replace(":", "/"))
        assert app_layer is not None
        with tarfile.open(fileobj=app_layer, mode="r|gz") as layer:
            names = [member.name for member in layer]
    packages = {m.group(1).lower() for n in names if (m := re.search(r"site-packages/([^/]+)/", n))}
    assert {"registry_mirror", "nvme_cache", "starlette", "uvicorn"} <= packages
    assert not {p for p in packages if p.startswith(TEST_ONLY)}, sorted(packages)
    assert not any(n.endswith("/bin/pip") for n in names)  # no installer left in the image


class Container:
    """`ctr run -d` of the imported image; killed, deleted and removed at the end."""

    def __init__(self, containerd: ContainerdDaemon, image: str, name: str) -> None:
        self.containerd, self.image, self.name = containerd, image, name

    def run(self, log: Path, cache: Path, *argv: str) -> None:
        self.containerd.ctr(
            "run",
            "-d",
            "--log-uri",
            f"file://{log}",
            "--snapshotter",
            "native",
            "--net-host",
            "--read-only",
            "--mount",
            f"type=bind,src={cache},dst={CACHE_IN_IMAGE},options=rbind:rw",
            "--mount",
            "type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev:mode=1777",
            self.image,
            self.name,
            *argv,
        )

    def pids(self) -> list[int]:
        listing = self.containerd.ctr("task", "ps", self.name).stdout.split("\n")[1:]
        return [int(line.split()[0]) for line in listing if line.strip()]

    def remove(self) -> None:
        self.containerd.ctr("task", "kill", "--signal", "SIGKILL", self.name, check=False)
        self.containerd.ctr("task", "delete", "--force", self.name, check=False)
        self.containerd.ctr("containers", "rm", self.name, check=False)


@pytest.fixture
def container(containerd: ContainerdDaemon, archive: Path) -> Iterator[Container]:
    containerd.ctr("images", "import", "--snapshotter", "native", str(archive), timeout=600)
    [image] = [ref for ref in containerd.image_refs() if "registry-mirror:" in ref]
    assert image.endswith(f"registry-mirror:{version('registry-mirror')}")
    running = Container(containerd, image, "registry-mirror-under-test")
    yield running
    running.remove()


def test_containerised_mirror_serves_a_pull_from_a_read_only_root(
    container: Container, containerd: ContainerdDaemon, origin: OriginRegistry, images: TestImages, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chown(cache, IMAGE_UID, IMAGE_UID)  # a hostPath volume the pod's user owns
    port, admin_port = free_port(), free_port()
    log = tmp_path / "container.log"
    # ARGV replaces the entry point and its arguments together (ctr 1.6).
    container.run(
        log,
        cache,
        "/opt/registry-mirror/bin/registry-mirror",
        "serve",
        f"--listen=127.0.0.1:{port}",
        f"--admin-listen=127.0.0.1:{admin_port}",
        f"--upstream={origin.host}={origin.url}",
        f"--default-upstream={origin.host}",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
    except TimeoutError:
        raise AssertionError(log.read_text() if log.exists() else "no container log") from None
    pid = container.pids()[0]
    uid_line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(IMAGE_UID)] * 4

    write_hosts_toml(containerd.hosts_dir, origin.host, f"http://127.0.0.1:{port}", server_url=origin.url)
    marker = origin.clear_log_marker()
    containerd.ctr_pull(images.app.ref)
    gets = origin.blob_gets(since=marker)
    assert {e.blob_digest for e in gets} == {b.digest for b in images.app.blobs}
    assert all(e.user_agent.startswith("registry-mirror/") for e in gets), gets
    cached = [
        p for p in cache.rglob("*") if p.is_file() and p.name in {b.digest.split(":")[1] for b in images.app.blobs}
    ]
    assert len(cached) == len(images.app.blobs), sorted(str(p) for p in cache.rglob("*"))
    assert {p.stat().st_uid for p in cached} == {IMAGE_UID}
