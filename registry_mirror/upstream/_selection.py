"""Which upstream answers a request: `?ns=` picks it, nothing else can (no open proxy)."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from registry_mirror.api import ErrorCode, OCIError
from registry_mirror.config import Settings
from registry_mirror.upstream._client import UpstreamClient
from registry_mirror.upstream._redirects import RedirectPolicy


@dataclass(frozen=True)
class Target:
    client: UpstreamClient
    name: str  # the upstream's registry name (docker.io)
    repository: str  # as the client asked; the upstream client adds `library/` for Docker Hub


class Upstreams:
    def __init__(self, settings: Settings) -> None:
        redirects = RedirectPolicy.for_listeners(own_listeners(settings))
        self._clients = {
            u.name: UpstreamClient(
                u, max_body_bytes=settings.manifest_max_bytes, chunk_size=settings.cache.chunk_size, redirects=redirects
            )
            for u in settings.upstreams
        }
        self._default = settings.default_upstream

    def names(self) -> list[str]:
        return sorted(self._clients)

    def resolve(self, ns: str | None, repository: str) -> Target:
        name = self._default if ns is None else _canonical(ns)
        client = self._clients.get(name)
        if client is None:
            # Fast 404: containerd falls back to the next host; we never fetch from unnamed hosts.
            raise OCIError(ErrorCode.NAME_UNKNOWN, f"registry {name!r} is not configured on this mirror")
        allowed = client.settings.allow_repositories
        if allowed and not any(fnmatchcase(repository, pattern) for pattern in allowed):
            raise OCIError(ErrorCode.NAME_UNKNOWN, f"repository {repository!r} is not shared through this mirror")
        return Target(client, name, repository)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


def own_listeners(settings: Settings) -> list[tuple[str, int]]:
    """The addresses this process listens on: an origin's redirect must never lead back to them."""
    listeners = [(settings.listen_host, settings.listen_port)]
    for listen in (settings.admin.listen, settings.p2p.peer_listen):
        host, _, port = (listen or "").rpartition(":")
        if port.isdigit():
            listeners.append((host.strip("[]"), int(port)))
    return listeners


def _canonical(ns: str) -> str:
    return "docker.io" if ns in ("index.docker.io", "registry-1.docker.io") else ns
