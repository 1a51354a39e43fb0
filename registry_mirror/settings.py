"""Settings: frozen dataclasses with the embedded defaults.

`config_load.py` fills them from TOML, then the environment, then CLI flags. Lower packages never
see these classes: the app hands them plain typed parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# containerd sends the registry host in `?ns=`; these are the upstreams a fresh install knows.
BUILTIN_UPSTREAMS: dict[str, str] = {
    "docker.io": "https://registry-1.docker.io",
    "ghcr.io": "https://ghcr.io",
    "quay.io": "https://quay.io",
    "registry.k8s.io": "https://registry.k8s.io",
    "gcr.io": "https://gcr.io",
    "nvcr.io": "https://nvcr.io",
    "public.ecr.aws": "https://public.ecr.aws",
    "mcr.microsoft.com": "https://mcr.microsoft.com",
}


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "registry-mirror"


@dataclass(frozen=True)
class UpstreamSettings:
    name: str  # registry host as containerd sends it in ?ns= (docker.io, 127.0.0.1:5101)
    url: str  # scheme://host[:port], no trailing slash
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # resolved from *_file / *_env at load
    token: str | None = field(default=None, repr=False)  # a static bearer token
    ca_bundle: str | None = None
    insecure: bool = False  # skip TLS verification (never the default)
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    # Repository globs this upstream may serve; empty means every repository.
    allow_repositories: tuple[str, ...] = ()
    # Docker Hub style: one-part names get `library/`.
    library_prefix: bool = False


@dataclass(frozen=True)
class CacheSettings:
    directory: Path = field(default_factory=default_cache_dir)
    max_size: int = 50 * GiB
    high_watermark: float = 0.90
    low_watermark: float = 0.80
    min_free_bytes: int = 1 * GiB
    # A fill whose readers all disconnected still completes, so the bytes are not fetched twice.
    complete_abandoned_fills: bool = True
    chunk_size: int = 1 * MiB


@dataclass(frozen=True)
class Settings:
    listen_host: str = "127.0.0.1"
    listen_port: int = 5000
    # Mirror URL path prefix (hosts.toml `[host."http://m/prefix"]`), e.g. "/mirror".
    path_prefix: str = ""
    upstreams: tuple[UpstreamSettings, ...] = ()
    default_upstream: str = "docker.io"
    tag_ttl: float = 60.0  # seconds a tag -> digest answer is served before revalidation
    max_stale: float = 24 * 3600.0  # how long a known tag is served while the upstream fails
    negative_ttl: float = 5.0  # seconds an upstream 404 is remembered
    manifest_max_bytes: int = 4 * MiB
    cache: CacheSettings = field(default_factory=CacheSettings)
    log_level: str = "info"
    access_log: bool = True

    def upstream(self, name: str) -> UpstreamSettings | None:
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        return None


def builtin_upstreams() -> tuple[UpstreamSettings, ...]:
    return tuple(
        UpstreamSettings(name=name, url=url, library_prefix=(name == "docker.io"))
        for name, url in BUILTIN_UPSTREAMS.items()
    )
