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
    max_parallel_ranges: int = field(
        default=4,
        metadata={
            "help": "Range requests one fill sends at once, once the origin answered Range (1: one stream)."
        },
    )
    parallel_range_min_size: int = field(
        default=64 * MiB,
        metadata={"help": "Blobs at least this big are fetched over parallel ranges."},
    )
    via: str | None = field(
        default=None,
        metadata={
            "help": "Another registry-mirror to fetch this upstream through first (a regional tier),"
            " asked with `?ns=<name>`; when it fails, the origin is asked directly."
        },
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
    scrub_rate: int = field(
        default=16 * MiB,
        metadata={
            "help": "Bytes per second the background scrubber re-hashes cached blobs (0 turns it off)."
        },
    )


@dataclass(frozen=True)
class P2PSettings:
    tracker: str = field(
        default="",
        metadata={"help": 'Tracker URL http(s)://host:port, "embedded" to serve one here, "" for off.'},
    )
    peer_listen: str = field(
        default="", metadata={"help": 'HOST:PORT serving pieces to peers; "" turns serving off.'}
    )
    advertise: str = field(
        default="",
        metadata={"help": 'URL peers use to reach this node; "" derives it from peer_listen.'},
    )
    zone: str = field(
        default="", metadata={"help": "Topology zone; peers in the same zone are preferred."}
    )
    peer_id: str = field(
        default="",
        metadata={
            "help": 'This node\'s name at the tracker; "" takes it from a node token (name/mac),'
            " else advertise's host:port. With the tracker's --cert-identity: peer_cert's commonName."
        },
    )
    piece_size: int = field(
        default=4 * MiB, metadata={"help": "Bytes per verified piece (256KiB to 64MiB)."}
    )
    tracker_token: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": "Bearer token for the tracker and peers (this node's own token, or the"
            " shared one), read at load from `tracker_token_file` or `tracker_token_env`."
        },
    )
    peer_ca: Path | None = field(
        default=None, metadata={"help": "PEM CA that peer certificates chain to (mutual TLS)."}
    )
    peer_cert: Path | None = field(
        default=None, metadata={"help": "PEM certificate this node shows to peers."}
    )
    peer_key: Path | None = field(
        default=None, metadata={"help": "PEM private key of peer_cert."}
    )
    max_uploads: int = field(
        default=16, metadata={"help": "Piece uploads to peers served at once."}
    )
    upload_bandwidth: int = field(
        default=0, metadata={"help": "Bytes per second sent to peers; 0 is unlimited."}
    )
    origin_concurrency: int = field(
        default=8, metadata={"help": "Blobs this node fetches from origins at once as a seed."}
    )
    stall_timeout: float = field(
        default=5.0, metadata={"help": "Seconds without progress before a peer is dropped."}
    )
    lease_ttl: float = field(
        default=10.0,
        metadata={"help": "Seconds a seed lease lasts (renewed every third); a dead seed's lease moves on after it."},
    )


@dataclass(frozen=True)
class CatalogSettings:
    sources: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Signed catalogs to follow, as REGISTRY/REPO:TAG references."},
    )
    trusted_keys: tuple[Path, ...] = field(
        default=(),
        metadata={"help": "Public keys a catalog signature must verify with; needed with sources."},
    )
    poll_interval: float = field(
        default=60.0, metadata={"help": "Seconds between checks of each catalog source."}
    )
    prefetch_concurrency: int = field(
        default=4, metadata={"help": "Blobs prefetched at once for a new catalog."}
    )
    insecure: bool = field(
        default=False, metadata={"help": "Fetch catalogs over plain HTTP (test registries)."}
    )
    state_dir: Path | None = field(
        default=None, metadata={"help": 'Catalog state; "" means <cache directory>/catalog.'}
    )


HUGGINGFACE_URL = "https://huggingface.co"
MODELSCOPE_URL = "https://www.modelscope.cn"


@dataclass(frozen=True)
class HubSettings:
    upstream: str = field(
        default=HUGGINGFACE_URL, metadata={"help": "Model hub origin, scheme://host[:port]."}
    )
    revision_ttl: float = field(
        default=60.0,
        metadata={"help": "Seconds a branch or tag -> commit answer is served before revalidation."},
    )
    auth_ttl: float = field(
        default=60.0,
        metadata={"help": "Seconds a token's access to a private repository is remembered."},
    )


def default_modelscope() -> HubSettings:
    return HubSettings(upstream=MODELSCOPE_URL)


@dataclass(frozen=True)
class AdminSettings:
    listen: str = field(
        default="127.0.0.1:5001",
        metadata={"help": 'HOST:PORT of the admin API; "" disables it.'},
    )
    token: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": "Bearer token for the admin API, read at load from `token_file` or"
            " `token_env`; required when listen is not a loopback address."
        },
    )


@dataclass(frozen=True)
class LimitSettings:
    client_rate: float = field(
        default=0.0, metadata={"help": "Requests per second per client IP; 0 is off."}
    )
    client_burst: int = field(
        default=200, metadata={"help": "Requests a client IP may send at once above the rate."}
    )
    upstream_concurrency: int = field(
        default=0, metadata={"help": "Requests in flight per upstream; 0 is off."}
    )
    upstream_bandwidth: int = field(
        default=0, metadata={"help": "Bytes per second per upstream; 0 is off."}
    )
    max_header_bytes: int = field(
        default=64 * KiB,
        metadata={"help": "Largest request line plus headers on every listener; larger is 431."},
    )
    header_timeout: float = field(
        default=10.0,
        metadata={"help": "Seconds a client has to send a request's headers on every listener."},
    )
    send_timeout: float = field(
        default=30.0,
        metadata={
            "help": "Seconds a client may read nothing of a response body before it is cut off"
            " (and its buffers and blob let go)."
        },
    )
    max_connections_per_client: int = field(
        default=256,
        metadata={"help": "Open connections per client IP on every listener; more get 503; 0 is no cap."},
    )


@dataclass(frozen=True)
class BlockRule:
    reason: str = field(metadata={"help": "Why; sent to the client in the error (required)."})
    upstream: str = field(default="*", metadata={"help": "Registry name glob."})
    repository: str = field(default="*", metadata={"help": "Repository glob."})
    tag: str = field(default="", metadata={"help": 'Tag glob; "" matches any tag.'})
    digest: str = field(
        default="", metadata={"help": 'A full digest; "" matches any digest.'}
    )
    hf_repo: str = field(
        default="",
        metadata={
            "help": 'Model hub repository glob (org/name); set: the rule is for model hubs'
            ' only, "": for images only.'
        },
    )


SIGNATURE_MODES = ("enforce", "warn")


@dataclass(frozen=True)
class SignatureRule:
    upstream: str = field(metadata={"help": "Registry name of a configured upstream (required)."})
    repositories: tuple[str, ...] = field(
        metadata={"help": "Repository globs as the upstream names them (library/* on Docker Hub; required)."}
    )
    public_keys: tuple[Path, ...] = field(
        metadata={"help": "PEM files of cosign public keys; a signature by any one counts (required)."}
    )
    mode: str = field(
        default="enforce",
        metadata={"help": 'enforce: refuse unsigned manifests with 403; warn: serve them, count and log.'},
    )
    name: str = field(
        default="", metadata={"help": 'Named in refusals, logs and metrics; "" means signatures[N].'}
    )


@dataclass(frozen=True)
class TelemetrySettings:
    otlp_endpoint: str = field(
        default="", metadata={"help": 'OTLP endpoint for traces, e.g. http://127.0.0.1:4318; "" is off.'}
    )
    service_name: str = field(
        default="registry-mirror", metadata={"help": "service.name of exported traces."}
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
        metadata={
            "help": "Seconds a known tag, hub revision or listing is still served while the origin fails"
            " (also after a restart)."
        },
    )
    negative_ttl: float = field(
        default=5.0, metadata={"help": "Seconds an upstream 404 is remembered."}
    )
    confirm_ttl: float = field(
        default=60.0,
        metadata={
            "help": "Seconds an upstream's HEAD confirming that a repository holds a digest cached"
            " for another repository is remembered."
        },
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
    client_token: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": "Clients must send `Authorization: Bearer <token>`; read at load from"
            " `client_token_file` or `client_token_env`."
        },
    )
    p2p: P2PSettings = field(default_factory=P2PSettings, metadata={"help": "The `[p2p]` table."})
    catalog: CatalogSettings = field(
        default_factory=CatalogSettings, metadata={"help": "The `[catalog]` table."}
    )
    hf: HubSettings = field(default_factory=HubSettings, metadata={"help": "The `[hf]` table."})
    modelscope: HubSettings = field(
        default_factory=default_modelscope, metadata={"help": "The `[modelscope]` table."}
    )
    admin: AdminSettings = field(
        default_factory=AdminSettings, metadata={"help": "The `[admin]` table."}
    )
    limits: LimitSettings = field(
        default_factory=LimitSettings, metadata={"help": "The `[limits]` table."}
    )
    blocklist: tuple[BlockRule, ...] = field(
        default=(), metadata={"help": "`[[blocklist]]` rules; the admin API changes them at run time."}
    )
    telemetry: TelemetrySettings = field(
        default_factory=TelemetrySettings, metadata={"help": "The `[telemetry]` table."}
    )
    signatures: tuple[SignatureRule, ...] = field(
        default=(), metadata={"help": "`[[signatures]]` policies: cosign signatures a manifest must carry."}
    )

    def upstream(self, name: str) -> UpstreamSettings | None:
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        return None

    def catalog_state_dir(self) -> Path:
        """catalog.state_dir, or <cache directory>/catalog when unset."""
        return self.catalog.state_dir or self.cache.directory / "catalog"


def builtin_upstreams() -> tuple[UpstreamSettings, ...]:
    return tuple(
        UpstreamSettings(name=name, url=url, library_prefix=(name == "docker.io"))
        for name, url in BUILTIN_UPSTREAMS.items()
    )
