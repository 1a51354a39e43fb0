"""Manifest and index media types (OCI image spec and docker's schema 2)."""

from __future__ import annotations

from typing import Final

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
# docker's schema 1, signed: still answered by old registries, never produced here.
DOCKER_MANIFEST_V1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES: Final = (OCI_INDEX, DOCKER_LIST)
IMAGE_MANIFEST_TYPES: Final = (OCI_MANIFEST, DOCKER_MANIFEST)
# What a client that can read any current manifest sends as Accept, indexes first.
MANIFEST_TYPES: Final = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    """An image manifest or an index of them (not a blob, config or signature payload)."""
    return media_type in MANIFEST_TYPES
