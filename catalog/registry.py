"""A small, synchronous OCI Distribution client for the CI side (httpx; not a hot path).

Anonymous access only (no token auth yet); `insecure=True` means plain HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import oci
from catalog.errors import RegistryError
from oci import MANIFEST_TYPES

CHUNK = 1024 * 1024
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port]
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        tail = (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")
        return f"{self.registry}/{self.repository}{tail}"


def parse_reference(text: str) -> Reference:
    """Parse a fully qualified `host[:port]/repo[:tag][@digest]` (the grammar is `oci.reference`)."""
    try:
        ref = oci.parse_image_reference(text)
    except oci.InvalidReference as exc:
        raise ValueError(f"not a fully qualified image reference: {text!r} ({exc})") from None
    return Reference(ref.registry, ref.repository, ref.tag, str(ref.digest) if ref.digest else None)


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return value


class RegistryClient:
    def __init__(self, registry: str, insecure: bool = False, timeout: float = 30.0) -> None:
        scheme = "http" if insecure else "https"
        self._http = httpx.Client(base_url=f"{scheme}://{registry}", timeout=timeout, follow_redirects=True)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def get_manifest(self, repository: str, reference: str, accept: str = MANIFEST_ACCEPT) -> Manifest:
        body = self._get_capped(f"/v2/{repository}/manifests/{reference}", {"Accept": accept}, MAX_MANIFEST_BYTES)
        media_type, body_bytes = body
        digest = "sha256:" + hashlib.sha256(body_bytes).hexdigest()
        if reference.startswith("sha256:") and reference != digest:
            raise RegistryError(f"manifest {repository}@{reference} has digest {digest}")
        if not media_type:
            media_type = json.loads(body_bytes).get("mediaType", "")
        return Manifest(digest=digest, media_type=media_type, body=body_bytes)

    def get_blob_bytes(self, repository: str, digest: str, max_bytes: int) -> bytes:
        _, data = self._get_capped(f"/v2/{repository}/blobs/{digest}", {}, max_bytes)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError(f"blob {repository}@{digest} does not match its digest")
        return data

    def download_blob(self, repository: str, digest: str, path: Path) -> int:
        """Stream a blob to `path` (atomically), verifying its sha256; returns its size."""
        tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        hasher, size = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", f"/v2/{repository}/blobs/{digest}") as response:
                _check(response, f"GET blob {repository}@{digest}")
                with open(tmp, "wb") as out:
                    for chunk in response.iter_bytes(CHUNK):
                        hasher.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            if "sha256:" + hasher.hexdigest() != digest:
                raise RegistryError(f"blob {repository}@{digest} does not match its digest")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return size

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self._http.head(f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 404:
            return False
        _check(response, f"HEAD blob {repository}@{digest}")
        return True

    def push_blob(self, repository: str, digest: str, size: int, content: bytes | Path) -> None:
        """Monolithic upload (POST then PUT ?digest=), skipped when the blob is already there."""
        if self.blob_exists(repository, digest):
            return
        started = self._http.post(f"/v2/{repository}/blobs/uploads/")
        _check(started, f"start upload to {repository}")
        location = started.headers.get("Location", "")
        if not location:
            raise RegistryError(f"upload to {repository}: no Location header")
        separator = "&" if "?" in location else "?"
        body = content if isinstance(content, bytes) else _file_chunks(content)
        done = self._http.put(
            f"{location}{separator}digest={digest}",
            content=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        _check(done, f"PUT blob {repository}@{digest}")

    def push_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = self._http.put(
            f"/v2/{repository}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
        )
        _check(response, f"PUT manifest {repository}:{reference}")
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def _get_capped(self, path: str, headers: dict[str, str], max_bytes: int) -> tuple[str, bytes]:
        with self._http.stream("GET", path, headers=headers) as response:
            _check(response, f"GET {path}")
            declared = response.headers.get("Content-Length")
            if declared is not None and int(declared) > max_bytes:
                raise RegistryError(f"GET {path}: {declared} bytes, over the {max_bytes} byte limit")
            parts, total = [], 0
            for chunk in response.iter_bytes(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise RegistryError(f"GET {path}: over the {max_bytes} byte limit")
                parts.append(chunk)
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return media_type, b"".join(parts)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        if not response.is_stream_consumed:
            response.read()
        raise RegistryError(f"{what}: HTTP {response.status_code} {response.text[:200]!r}")
