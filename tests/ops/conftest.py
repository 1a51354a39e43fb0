"""Mirrors configured for the operations tests, and a pull done the way containerd does it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.images import PushedImage
from tests.support.mirror import MirrorProcess
from tests.support.net import free_port, wait_http
from tests.support.origin import OriginRegistry

MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


class OpsMirror(MirrorProcess):
    """A mirror with a config file and an admin listener; ready even when /v2/ wants a token."""

    def __init__(self, workdir: Path, origin: OriginRegistry, config_text: str) -> None:
        self.admin_port = free_port()
        self.config_file = workdir / "mirror.toml"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(config_text + f'\n[admin]\nlisten = "127.0.0.1:{self.admin_port}"\n')
        super().__init__(
            workdir, {origin.host: origin.url}, ["--config", str(self.config_file), "--default-upstream", origin.host]
        )

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        wait_http(f"{self.url}/healthz", timeout=timeout, alive=self.process.alive)
        wait_http(f"{self.admin_url}/admin/status", timeout=timeout, alive=self.process.alive)


OpsMirrorFactory = Callable[[str], OpsMirror]


@pytest.fixture
def ops_mirror(tmp_path: Path, origin: OriginRegistry) -> Iterator[OpsMirrorFactory]:
    started: list[OpsMirror] = []

    def start(config_text: str = "") -> OpsMirror:
        mirror = OpsMirror(tmp_path / f"ops-mirror-{len(started)}", origin, config_text)
        started.append(mirror)
        return mirror.start()

    yield start
    for mirror in started:
        mirror.stop()


def pull(client: httpx.Client, image: PushedImage, **headers: str) -> int:
    """Manifest by tag, then config and layers; returns the blob bytes received."""
    ns = {"ns": image.registry}
    manifest = client.get(
        f"/v2/{image.repo}/manifests/{image.tag}", params=ns, headers={"Accept": MANIFEST_ACCEPT, **headers}
    )
    manifest.raise_for_status()
    received = 0
    for blob in (image.config, *image.layers):
        response = client.get(f"/v2/{image.repo}/blobs/{blob.digest}", params=ns, headers=headers)
        response.raise_for_status()
        assert len(response.content) == blob.size
        received += len(response.content)
    return received
