"""oci: the vocabulary of the OCI distribution and image specs, standard library only.

Digests, repository names, tags and image references, manifest media types, HTTP byte ranges and
the bearer-token check: what every other package (nvme_cache, p2p, catalog, registry_mirror)
shares. It imports nothing outside the standard library, so anything may import it.
"""

from oci.bearer import bearer_matches, bearer_token, token_matches
from oci.digest import DIGEST_RE, SUPPORTED_ALGORITHMS, Digest, Hasher, InvalidDigest, Verifier, new_hasher
from oci.media_types import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_V1_SIGNED,
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    is_index,
    is_manifest,
)
from oci.ranges import ByteRange, ContentRange, UnsatisfiableRange, parse_content_range, parse_range
from oci.reference import (
    MAX_NAME_LENGTH,
    ImageReference,
    InvalidReference,
    is_qualified_host,
    is_registry_host,
    is_repository,
    is_tag,
    parse_image_reference,
    repository_error,
)

__all__ = [
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_V1_SIGNED",
    "IMAGE_MANIFEST_TYPES",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "MAX_NAME_LENGTH",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "DIGEST_RE",
    "SUPPORTED_ALGORITHMS",
    "ByteRange",
    "ContentRange",
    "Digest",
    "Hasher",
    "ImageReference",
    "InvalidDigest",
    "InvalidReference",
    "UnsatisfiableRange",
    "Verifier",
    "bearer_matches",
    "bearer_token",
    "is_index",
    "is_manifest",
    "is_qualified_host",
    "is_registry_host",
    "is_repository",
    "is_tag",
    "new_hasher",
    "parse_content_range",
    "parse_image_reference",
    "parse_range",
    "repository_error",
    "token_matches",
]
