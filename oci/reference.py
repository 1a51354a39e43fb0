"""Repository names, tags, registry hosts and image references, as the OCI distribution spec
(v1.1, "Pulling manifests") and docker's reference grammar write them.

A name or tag that passes these checks is a safe path segment: no `..`, no empty component, no `/`
at either end, no `%`. The regexes use `-+` (not `-*`) so none of them can backtrack badly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from oci.digest import Digest, InvalidDigest

MAX_NAME_LENGTH: Final = 255
COMPONENT: Final = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
TAG: Final = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# registry host as in `?ns=` or a reference's first component: DNS name, IPv4 or [IPv6], port
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
REGISTRY_HOST: Final = re.compile(rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?")
MAX_HOST_LENGTH: Final = 255


class InvalidReference(ValueError):
    """A repository name, tag, registry host or image reference outside the grammar."""


def repository_error(name: str) -> str | None:
    """Why `name` is not a repository name (`a/b-c/d.e`), or None when it is one."""
    if not name:
        return "empty repository name"
    if len(name) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} characters"
    if not all(COMPONENT.fullmatch(part) for part in name.split("/")):
        return "each /-separated component must be lowercase letters and digits joined by . _ __ or -"
    return None


def is_repository(name: str) -> bool:
    return repository_error(name) is None


def is_tag(text: str) -> bool:
    return TAG.fullmatch(text) is not None


def is_registry_host(text: str) -> bool:
    return len(text) <= MAX_HOST_LENGTH and REGISTRY_HOST.fullmatch(text) is not None


def is_qualified_host(host: str) -> bool:
    """docker's rule for "the first component is a registry": a dot, a port, or `localhost`."""
    return "." in host or ":" in host or host == "localhost"


@dataclass(frozen=True)
class ImageReference:
    """`host[:port]/repository[:tag][@digest]`, fully qualified."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    def __str__(self) -> str:
        tail = (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")
        return f"{self.registry}/{self.repository}{tail}"


def parse_image_reference(text: str) -> ImageReference:
    """Parse a fully qualified `host[:port]/repo[:tag][@digest]`; InvalidReference says what is
    wrong. Neither tag nor digest is required (callers that need one check)."""
    rest, at, digest_text = text.partition("@")
    registry, slash, path = rest.partition("/")
    if not slash or not is_qualified_host(registry) or not is_registry_host(registry):
        raise InvalidReference(f"not a fully qualified image reference (REGISTRY/REPOSITORY[:TAG]): {text[:200]!r}")
    repository, tag = path, None
    if ":" in path.rpartition("/")[2]:
        repository, _, tag = path.rpartition(":")
        if not is_tag(tag):
            raise InvalidReference(f"invalid tag {tag[:200]!r}")
    reason = repository_error(repository)
    if reason is not None:
        raise InvalidReference(f"invalid repository {repository[:200]!r}: {reason}")
    digest = None
    if at:
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as exc:
            raise InvalidReference(f"invalid digest: {exc}") from exc
    return ImageReference(registry, repository, tag, digest)
