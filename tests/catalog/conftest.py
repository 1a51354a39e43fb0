"""A real docker-registry origin on a free loopback port, and test images pushed to it over HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.procs import starts_processes

WEIGHTS_SIZE = 16 * 1024 * 1024
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Origin:
    address: str  # 127.0.0.1:PORT
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"


@pytest.fixture(scope="module")
@starts_processes
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    if shutil.which("docker-registry") is None:
        pytest.fail("docker-registry is not installed (make test-deps)")
    root = tmp_path_factory.mktemp("origin")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: info, accesslog: {disabled: false}}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: catalog-tests}}\n"
    )
    log_path = root / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v2/", proc, log_path)
        yield Origin(f"127.0.0.1:{port}", log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("docker-registry did not become ready")


# ---- pushing test images with plain registry HTTP ----------------------------------------


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(origin: Origin, repo: str, data: bytes) -> dict[str, object]:
    digest = sha(data)
    started = httpx.post(origin.url(f"/v2/{repo}/blobs/uploads/"))
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    location = location if location.startswith("http") else origin.url(location)
    done = httpx.put(
        f"{location}{'&' if '?' in location else '?'}digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    return {"digest": digest, "size": len(data)}


def push_manifest(origin: Origin, repo: str, tag: str, doc: dict[str, object], media_type: str) -> str:
    body = json.dumps(doc).encode()
    response = httpx.put(origin.url(f"/v2/{repo}/manifests/{tag}"), content=body, headers={"Content-Type": media_type})
    assert response.status_code == 201, response.text
    return sha(body)


def tar_of(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(content), 0
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def weights(version: int) -> bytes:
    """Seeded 16 MiB; v2 changes ~3% (one replaced region, one insertion shifting offsets)."""
    rng = random.Random(1234)
    data = bytearray(rng.randbytes(WEIGHTS_SIZE))
    if version >= 2:
        rng2 = random.Random(99)
        data[1_000_000:1_250_000] = rng2.randbytes(250_000)
        data[9_000_000:9_000_000] = rng2.randbytes(250_000)
    return bytes(data)


def push_image(origin: Origin, repo: str, tag: str, version: int, arch: str = "amd64") -> dict[str, object]:
    """One image manifest: a small app layer (same in every version) and a weights layer."""
    app = push_blob(origin, repo, tar_of("app/run.sh", b"#!/bin/sh\necho hello\n"))
    model = push_blob(origin, repo, tar_of("model/weights.bin", weights(version)))
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [app["digest"], model["digest"]]},
            "config": {"Labels": {"version": str(version)}},
        }
    ).encode()
    cfg = push_blob(origin, repo, config)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, **cfg},
        "layers": [{"mediaType": LAYER_TAR, **app}, {"mediaType": LAYER_TAR, **model}],
    }
    body = json.dumps(doc).encode()
    digest = push_manifest(origin, repo, tag, doc, OCI_MANIFEST)
    return {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(body),
        "layers": doc["layers"],
        "config": doc["config"],
    }


@dataclass(frozen=True)
class PushedImages:
    repo: str
    v1: dict[str, object]  # single manifest, linux/amd64
    v2_index: str  # digest of an index over linux/amd64 + linux/arm64
    v2_amd64: dict[str, object]


@pytest.fixture(scope="module")
def images(origin: Origin) -> PushedImages:
    repo = "test/model"
    v1 = push_image(origin, repo, "v1", 1)
    v2_amd64 = push_image(origin, repo, "v2-amd64", 2, "amd64")
    v2_arm64 = push_image(origin, repo, "v2-arm64", 2, "arm64")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": m["digest"],
                "size": m["size"],
                "platform": {"os": "linux", "architecture": arch},
            }
            for m, arch in ((v2_amd64, "amd64"), (v2_arm64, "arm64"))
        ],
    }
    v2_index = push_manifest(origin, repo, "v2", index, OCI_INDEX)
    return PushedImages(repo, v1, v2_index, v2_amd64)
