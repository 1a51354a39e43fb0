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
    name: str = field(
        metadata={
            "help": "Registry host as containerd sends it in `?ns=` (docker.io, 127.0.0.1:5101)."
        }
    )
    url: str = field(metadata={"help": "Origin endpoint, scheme://host[:port] with no path."})
    username: str | None = field(
        default=None, metadata={"help": "User name for the origin's token or basic auth."}
    )
    password: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": "Password, read at load from `password_file` or `password_env`; never inline."
        },
    )
    token: str | None = field(
        default=None,
        repr=False,
        metadata={"help": "Static bearer token, read at load from `token_file` or `token_env`."},
    )
    ca_bundle: str | None = field(
        default=None, metadata={"help": "PEM file of CAs trusted for this origin."}
    )
    insecure: bool = field(
        default=False, metadata={"help": "Skip TLS verification (testing only)."}
    )
    connect_timeout: float = field(
        default=5.0, metadata={"help": "Seconds to wait for a connection to the origin."}
    )
    read_timeout: float = field(
        default=20.0,
        metadata={
            "help": "Seconds to wait for the next bytes; a hanging mirror costs containerd 30 s."
        },
    )
    allow_repositories: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Repository globs this upstream may serve; empty means every repository."
        },
    )
    library_prefix: bool = field(
        default=False,
        metadata={"help": "Docker Hub style: one-part names get `library/` (on for docker.io)."},
    )


@dataclass(frozen=True)
class CacheSettings:
    directory: Path = field(
        default_factory=default_cache_dir,
        metadata={"help": "Cache root; blobs are files named by digest."},
    )
    max_size: int = field(
        default=50 * GiB, metadata={"help": "Bytes the cache may hold before eviction."}
    )
    high_watermark: float = field(
        default=0.90, metadata={"help": "Eviction starts above this fraction of max_size."}
    )
    low_watermark: float = field(
        default=0.80, metadata={"help": "Eviction stops below this fraction of max_size."}
    )
    min_free_bytes: int = field(
        default=1 * GiB,
        metadata={"help": "Evict to keep at least this much free on the file system."},
    )
    complete_abandoned_fills: bool = field(
        default=True,
        metadata={
            "help": "Finish a fill whose readers all left, so the bytes are not fetched twice."
        },
    )
    chunk_size: int = field(
        default=1 * MiB, metadata={"help": "Bytes per read, hash update and socket send."}
    )


@dataclass(frozen=True)
class Settings:
    listen_host: str = field(
        default="127.0.0.1", metadata={"help": "Address to serve on (host part of `listen`)."}
    )
    listen_port: int = field(
        default=5000, metadata={"help": "Port to serve on (port part of `listen`)."}
    )
    path_prefix: str = field(
        default="",
        metadata={"help": 'URL path prefix of the mirror in hosts.toml, e.g. "/mirror".'},
    )
    upstreams: tuple[UpstreamSettings, ...] = field(
        default=(),
        metadata={
            "help": "Origins by registry name; built-in ones unless `builtin_upstreams = false`."
        },
    )
    default_upstream: str = field(
        default="docker.io",
        metadata={"help": "Upstream for requests that carry no `?ns=`; must be configured."},
    )
    tag_ttl: float = field(
        default=60.0,
        metadata={"help": "Seconds a tag -> digest answer is served before revalidation."},
    )
    max_stale: float = field(
        default=24 * 3600.0,
        metadata={"help": "Seconds a known tag is still served while the upstream fails."},
    )
    negative_ttl: float = field(
        default=5.0, metadata={"help": "Seconds an upstream 404 is remembered."}
    )
    manifest_max_bytes: int = field(
        default=4 * MiB, metadata={"help": "Largest manifest accepted from an upstream."}
    )
    cache: CacheSettings = field(
        default_factory=CacheSettings, metadata={"help": "The `[cache]` table."}
    )
    log_level: str = field(
        default="info", metadata={"help": "One of critical, error, warning, info, debug, trace."}
    )
    access_log: bool = field(default=True, metadata={"help": "Log one line per request."})

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
