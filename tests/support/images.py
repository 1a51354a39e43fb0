"""Test images built offline (umoci, fixed timestamps, seeded bytes) and pushed to an origin.

Same seed and sizes give the same digests on every run, so a test may compare digests it
computed earlier. Big payloads are written and uploaded in 1 MiB chunks, never held whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx

from .clients import skopeo
from .origin import OriginRegistry
from .procs import require_binary
from .run import run

CHUNK = 1 << 20
FIXED_TIME = "2024-01-01T00:00:00Z"
_FIXED_EPOCH = 1704067200  # FIXED_TIME as a Unix timestamp

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ALL_MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
ARTIFACT_TYPE = "application/vnd.registry-mirror.test.artifact.v1"
ARTIFACT_CONFIG_TYPE = "application/vnd.registry-mirror.test.config.v1+json"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class PushedImage:
    """One image manifest as stored on the origin (digests as the origin serves them)."""

    registry: str  # host:port
    repo: str
    tag: str
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    platform: str = "linux/amd64"
    artifact_type: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.repo}:{self.tag}"

    @property
    def digest_ref(self) -> str:
        return f"{self.registry}/{self.repo}@{self.manifest.digest}"

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config first, then layers: every blob a full pull fetches."""
        return (self.config, *self.layers)


@dataclass(frozen=True)
class PushedIndex:
    registry: str
    repo: str
    tag: str
    manifest: Descriptor
    children: tuple[PushedImage, ...] = field(default_factory=tuple)

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.repo}:{self.tag}"

    def child(self, platform: str) -> PushedImage:
        return next(c for c in self.children if c.platform == platform)


# -- bytes -----------------------------------------------------------------------------
def seeded_chunks(size: int, seed: int | str) -> Iterator[bytes]:
    rng = random.Random(seed)
    remaining = size
    while remaining > 0:
        n = min(CHUNK, remaining)
        yield rng.randbytes(n)
        remaining -= n


def write_random_file(path: Path, size: int, seed: int | str) -> Path:
    """`size` reproducible pseudo-random bytes (incompressible, so layer size ~ payload size)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for chunk in seeded_chunks(size, seed):
            out.write(chunk)
    return path


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


def _fix_mtimes(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.utime(Path(dirpath, name), (_FIXED_EPOCH, _FIXED_EPOCH), follow_symlinks=False)
    os.utime(root, (_FIXED_EPOCH, _FIXED_EPOCH))


# -- raw registry push over HTTP ----------------------------------------------------------
def push_blob(origin: OriginRegistry | str, repo: str, data: bytes | Path) -> str:
    """Monolithic upload: POST /blobs/uploads/, then PUT <Location>&digest=... with the bytes."""
    base = origin if isinstance(origin, str) else origin.url
    if isinstance(data, bytes):
        digest, size = f"sha256:{hashlib.sha256(data).hexdigest()}", len(data)
        content: bytes | Iterator[bytes] = data
    else:
        digest, size = file_digest(Path(data)), Path(data).stat().st_size
        content = _file_chunks(Path(data))
    with httpx.Client(timeout=120) as client:
        started = client.post(f"{base}/v2/{repo}/blobs/uploads/")
        _expect(started, 202)
        location = urljoin(f"{base}/", started.headers["location"])
        separator = "&" if "?" in location else "?"
        put = client.put(
            f"{location}{separator}digest={digest}",
            content=content,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        _expect(put, 201)
    return digest


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK):
            yield chunk


def push_manifest(origin: OriginRegistry | str, repo: str, ref: str, body: bytes, media_type: str) -> str:
    base = origin if isinstance(origin, str) else origin.url
    response = httpx.put(
        f"{base}/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type}, timeout=60
    )
    _expect(response, 201)
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def fetch_manifest(
    origin: OriginRegistry | str, repo: str, ref: str, accept: Sequence[str] = ALL_MANIFEST_TYPES
) -> tuple[bytes, str, str]:
    """(body, media type, Docker-Content-Digest) as the origin serves them."""
    base = origin if isinstance(origin, str) else origin.url
    response = httpx.get(f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join(accept)}, timeout=60)
    _expect(response, 200)
    return (response.content, response.headers["content-type"].split(";")[0], response.headers["docker-content-digest"])


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise AssertionError(
            f"{response.request.method} {response.request.url} -> "
            f"{response.status_code} (wanted {status}): {response.text[:500]}"
        )


# -- umoci layouts ------------------------------------------------------------------------
def build_oci_layout(
    layout: Path,
    tag: str,
    layer_sizes: Sequence[int],
    seed: int | str,
    architecture: str = "amd64",
    workdir: Path | None = None,
) -> Path:
    """Add image `tag` to the OCI layout: one layer per size, each a single random file."""
    umoci = require_binary("umoci")
    layout = Path(layout)
    scratch = Path(workdir or layout.parent) / f"src-{layout.name}-{tag}"
    if not (layout / "index.json").exists():
        run([umoci, "init", "--layout", str(layout)])
    empty = f"empty-{tag}"
    run([umoci, "new", "--image", f"{layout}:{empty}"])
    run(
        [
            umoci,
            "config",
            "--image",
            f"{layout}:{empty}",
            "--tag",
            tag,
            "--no-history",
            "--created",
            FIXED_TIME,
            "--author",
            "registry-mirror-tests",
            "--os",
            "linux",
            "--architecture",
            architecture,
            "--config.cmd",
            "/bin/sh",
        ]
    )
    for index, size in enumerate(layer_sizes):
        source = scratch / f"layer{index}"
        write_random_file(source / f"blob{index}.bin", size, f"{seed}/{architecture}/{index}")
        _fix_mtimes(source)
        run(
            [
                umoci,
                "insert",
                "--image",
                f"{layout}:{tag}",
                "--history.created",
                FIXED_TIME,
                "--history.created_by",
                f"layer {index}",
                str(source),
                f"/layer{index}",
            ]
        )
        shutil.rmtree(source)
    run([umoci, "rm", "--image", f"{layout}:{empty}"])
    return layout


def _read_pushed(origin: OriginRegistry, repo: str, tag: str, platform: str = "linux/amd64") -> PushedImage:
    body, media_type, digest = fetch_manifest(origin, repo, tag)
    manifest = json.loads(body)
    config = manifest["config"]
    return PushedImage(
        registry=origin.host,
        repo=repo,
        tag=tag,
        manifest=Descriptor(media_type, digest, len(body)),
        config=Descriptor(config["mediaType"], config["digest"], config["size"]),
        layers=tuple(Descriptor(d["mediaType"], d["digest"], d["size"]) for d in manifest["layers"]),
        platform=platform,
        artifact_type=manifest.get("artifactType"),
    )


def push_multilayer_image(
    origin: OriginRegistry,
    repo: str,
    tag: str,
    layers: Sequence[int],
    seed: int | str,
    workdir: Path,
    docker_schema2: bool = False,
    architecture: str = "amd64",
) -> PushedImage:
    """Build an image with one layer per size and push it (OCI, or Docker schema2)."""
    layout = build_oci_layout(Path(workdir) / f"layout-{seed}-{architecture}", tag, layers, seed, architecture, workdir)
    fmt = ["--format", "v2s2"] if docker_schema2 else ["--format", "oci"]
    skopeo(["copy", "--dest-tls-verify=false", *fmt, f"oci:{layout}:{tag}", f"docker://{origin.host}/{repo}:{tag}"])
    return _read_pushed(origin, repo, tag, f"linux/{architecture}")


def push_schema2_image(
    origin: OriginRegistry, repo: str, tag: str, layers: Sequence[int], seed: int | str, workdir: Path
) -> PushedImage:
    return push_multilayer_image(origin, repo, tag, layers, seed, workdir, docker_schema2=True)


def push_multiarch_index(
    origin: OriginRegistry,
    repo: str,
    tag: str,
    layers: Sequence[int],
    seed: int | str,
    workdir: Path,
    architectures: Sequence[str] = ("amd64", "arm64"),
) -> PushedIndex:
    """Two single-arch images in one layout, an OCI index over them, `skopeo copy --all`."""
    layout = Path(workdir) / f"layout-{seed}-multi"
    descriptors = []
    for arch in architectures:
        build_oci_layout(layout, f"{tag}-{arch}", layers, seed, arch, workdir)
        descriptors.append(
            _layout_descriptor(layout, f"{tag}-{arch}") | {"platform": {"architecture": arch, "os": "linux"}}
        )
    index_body = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}, separators=(",", ":")
    ).encode()
    _add_to_layout(layout, tag, index_body, OCI_INDEX)
    skopeo(["copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{origin.host}/{repo}:{tag}"])
    body, media_type, digest = fetch_manifest(origin, repo, tag)
    children = tuple(
        _read_pushed(origin, repo, m["digest"], f"linux/{m['platform']['architecture']}")
        for m in json.loads(body)["manifests"]
    )
    # The children were fetched by digest; keep the index tag so `.ref` stays meaningful.
    children = tuple(
        PushedImage(c.registry, c.repo, c.manifest.digest, c.manifest, c.config, c.layers, c.platform) for c in children
    )
    return PushedIndex(origin.host, repo, tag, Descriptor(media_type, digest, len(body)), children)


def _layout_descriptor(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return {k: entry[k] for k in ("mediaType", "digest", "size")}
    raise KeyError(f"{tag} not in {layout}")


def _add_to_layout(layout: Path, tag: str, body: bytes, media_type: str) -> None:
    """A tiny OCI-layout writer: store the blob and point index.json's `tag` at it."""
    digest = hashlib.sha256(body).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(body)
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    index["manifests"] = [
        m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    index["manifests"].append(
        {
            "mediaType": media_type,
            "digest": f"sha256:{digest}",
            "size": len(body),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index_path.write_text(json.dumps(index))


def push_artifact(
    origin: OriginRegistry,
    repo: str,
    tag: str,
    files: dict[str, bytes | Path],
    artifact_type: str = ARTIFACT_TYPE,
) -> PushedImage:
    """An OCI 1.1-style artifact: image manifest with `artifactType` and a custom config type.

    Each file becomes a layer titled with its name (what oras pull writes to disk).
    """
    config_body = b"{}"
    config = Descriptor(ARTIFACT_CONFIG_TYPE, push_blob(origin, repo, config_body), len(config_body))
    layers = []
    for name, data in files.items():
        size = len(data) if isinstance(data, bytes) else Path(data).stat().st_size
        layers.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": push_blob(origin, repo, data),
                "size": size,
                "annotations": {"org.opencontainers.image.title": name},
            }
        )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
        "layers": layers,
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    digest = push_manifest(origin, repo, tag, body, OCI_MANIFEST)
    return PushedImage(
        registry=origin.host,
        repo=repo,
        tag=tag,
        manifest=Descriptor(OCI_MANIFEST, digest, len(body)),
        config=config,
        layers=tuple(Descriptor(d["mediaType"], d["digest"], d["size"]) for d in layers),
        platform="",
        artifact_type=artifact_type,
    )
