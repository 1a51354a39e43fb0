"""Settings: frozen dataclasses, one field per setting, the only place a setting is declared.

Each field carries its default, description, value parser and flag (config_fields.setting);
config_load derives the TOML keys, `REGISTRY_MIRROR_*` variables and flags from them and fills
them from TOML, then the environment, then CLI flags. Lower packages never see these classes:
the app hands them plain typed parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nvme_cache.scrub import DEFAULT_MIN_AGE, DEFAULT_RATE
from registry_mirror.config._fields import (
    count,
    described,
    optional_path,
    seconds,
    secret,
    setting,
    size,
    switch,
    table,
    text,
)
from registry_mirror.config._values import (
    GiB,
    KiB,
    MiB,
    glob,
    parse_choice,
    parse_fraction,
    parse_globs,
    parse_image_references,
    parse_listen,
    parse_log_level,
    parse_optional_digest,
    parse_optional_listen,
    parse_optional_url,
    parse_origin_url,
    parse_otlp_endpoint,
    parse_path,
    parse_path_prefix,
    parse_paths,
    parse_peer_id,
    parse_rate,
    parse_registry_name,
    parse_size,
    parse_text,
    parse_tracker,
    parse_zone,
)

__all__ = [
    "BUILTIN_UPSTREAMS", "HUGGINGFACE_URL", "MODELSCOPE_URL", "SIGNATURE_MODES", "AdminSettings", "BlockRule",
    "CacheSettings", "CatalogSettings", "GiB", "HubSettings", "KiB", "LimitSettings", "MiB", "P2PSettings",
    "Settings", "SignatureRule", "TelemetrySettings", "UpstreamSettings", "builtin_upstreams",
    "default_cache_dir", "default_modelscope",
]  # fmt: skip

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

LISTEN_HELP = "HOST:PORT to serve on ([::1]:5000 for IPv6; port 0 picks a free port)."


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "registry-mirror"


@dataclass(frozen=True)
class UpstreamSettings:
    name: str = described(help="Registry host as containerd sends it in `?ns=` (docker.io, 127.0.0.1:5101).")
    url: str = setting(help="Origin endpoint, scheme://host[:port] with no path.", parse=parse_origin_url, kind="text")
    username: str | None = setting(
        None, help="User name for the origin's token or basic auth.", parse=parse_text, kind="text"
    )
    password: str | None = secret(
        "Password, read at load from `password_file` or `password_env`; never inline.",
        what="password", blank_unsets=False,
    )  # fmt: skip
    token: str | None = secret(
        "Static bearer token, read at load from `token_file` or `token_env`.",
        what="token", blank_unsets=False,
    )  # fmt: skip
    ca_bundle: str | None = setting(
        None, help="PEM file of CAs trusted for this origin.", parse=parse_path, kind="path"
    )
    insecure: bool = switch(False, "Skip TLS verification (testing only).")
    connect_timeout: float = seconds(5.0, "Seconds to wait for a connection to the origin.", positive=True)
    read_timeout: float = seconds(
        20.0, "Seconds to wait for the next bytes; a hanging mirror costs containerd 30 s.", positive=True
    )
    allow_repositories: tuple[str, ...] = setting(
        (), help="Repository globs this upstream may serve; empty means every repository.",
        parse=parse_globs, kind="list",
    )  # fmt: skip
    library_prefix: bool = switch(False, "Docker Hub style: one-part names get `library/` (on for docker.io).")
    max_parallel_ranges: int = count(
        4, "Range requests one fill sends at once, once the origin answered Range (1: one stream).", 1
    )
    parallel_range_min_size: int = setting(
        64 * MiB, help="Blobs at least this big are fetched over parallel ranges.", parse=parse_size, kind="size"
    )
    via: str | None = setting(
        None,
        help="Another registry-mirror to fetch this upstream through first (a regional tier),"
        " asked with `?ns=<name>`; when it fails, the origin is asked directly.",
        parse=parse_origin_url,
        kind="text",
    )


@dataclass(frozen=True)
class CacheSettings:
    directory: Path = setting(
        help="Cache root; blobs are files named by digest.", parse=parse_path, kind="path",
        flag="cache_dir", env="CACHE_DIR", factory=default_cache_dir,
    )  # fmt: skip
    max_size: int = size(50 * GiB, "Bytes the cache may hold before eviction.", 1 * MiB, flag="cache_max_size")
    high_watermark: float = setting(
        0.90, help="Eviction starts above this fraction of max_size.", parse=parse_fraction, kind="fraction"
    )
    low_watermark: float = setting(
        0.80, help="Eviction stops below this fraction of max_size.", parse=parse_fraction, kind="fraction"
    )
    min_free_bytes: int = size(1 * GiB, "Evict to keep at least this much free on the file system.", 0)
    complete_abandoned_fills: bool = switch(
        True, "Finish a fill whose readers all left, so the bytes are not fetched twice."
    )
    direct_writes: bool = switch(
        False,
        "Write fills nobody reads back from the file (prefetches, pins, abandoned fills, fills whose clients read along from the receive buffers) around the page cache with O_DIRECT, so they do not push the node's page cache out; off by default: measured slower where the page cache is cheap, and peers and later hits then read those blobs from the device.",
    )
    chunk_size: int = size(1 * MiB, "Bytes per read, hash update and socket send.", 4 * KiB, 64 * MiB)
    scrub_rate: int = size(
        DEFAULT_RATE, "Bytes per second the background scrubber re-hashes cached blobs (0 turns it off).", 0
    )
    scrub_min_age: float = seconds(
        DEFAULT_MIN_AGE, "Seconds after a blob was hashed (committed or scrubbed) before the scrubber hashes it again."
    )


@dataclass(frozen=True)
class P2PSettings:
    tracker: str = text(
        "", 'Tracker URL http(s)://host:port, "embedded" to serve one here, "" for off.', parse_tracker, "tracker"
    )
    peer_listen: str = text(
        "", 'HOST:PORT serving pieces to peers; "" turns serving off.', parse_optional_listen, "peer_listen"
    )
    advertise: str = text(
        "", 'URL peers use to reach this node; "" derives it from peer_listen.', parse_optional_url, "advertise"
    )
    zone: str = text("", "Topology zone; peers in the same zone are preferred.", parse_zone, "zone")
    peer_id: str = text(
        "",
        'This node\'s name at the tracker; "" takes it from a node token (name/mac),'
        " else advertise's host:port. With the tracker's --cert-identity: peer_cert's commonName.",
        parse_peer_id,
        "peer_id",
    )
    piece_size: int = size(
        4 * MiB, "Bytes per verified piece (256KiB to 64MiB).", 256 * KiB, 64 * MiB, flag="piece_size"
    )
    tracker_token: str | None = secret(
        "Bearer token for the tracker and peers (this node's own token, or the"
        " shared one), read at load from `tracker_token_file` or `tracker_token_env`.",
        what="tracker token", file_flag="tracker_token_file",
    )  # fmt: skip
    peer_ca: Path | None = optional_path("PEM CA that peer certificates chain to (mutual TLS).", "peer_ca")
    peer_cert: Path | None = optional_path("PEM certificate this node shows to peers.", "peer_cert")
    peer_key: Path | None = optional_path("PEM private key of peer_cert.", "peer_key")
    max_uploads: int = count(16, "Piece uploads to peers served at once.", 1)
    upload_bandwidth: int = size(0, "Bytes per second sent to peers; 0 is unlimited.", 0)
    origin_concurrency: int = count(8, "Blobs this node fetches from origins at once as a seed.", 1)
    stall_timeout: float = seconds(5.0, "Seconds without progress before a peer is dropped.", positive=True)
    lease_ttl: float = seconds(
        10.0, "Seconds a seed lease lasts (renewed every third); a dead seed's lease moves on after it.",
        positive=True,
    )  # fmt: skip


@dataclass(frozen=True)
class CatalogSettings:
    sources: tuple[str, ...] = setting(
        (), help="Signed catalogs to follow, as REGISTRY/REPO:TAG references.",
        parse=parse_image_references, kind="list", flag="catalog",
    )  # fmt: skip
    trusted_keys: tuple[Path, ...] = setting(
        (), help="Public keys a catalog signature must verify with; needed with sources.",
        parse=parse_paths, kind="paths", flag="trusted_key",
    )  # fmt: skip
    poll_interval: float = seconds(
        60.0, "Seconds between checks of each catalog source.", positive=True, flag="catalog_poll_interval"
    )
    prefetch_concurrency: int = count(4, "Blobs prefetched at once for a new catalog.", 1)
    insecure: bool = switch(False, "Fetch catalogs over plain HTTP (test registries).", "catalog_insecure")
    state_dir: Path | None = optional_path('Catalog state; "" means <cache directory>/catalog.')


HUGGINGFACE_URL = "https://huggingface.co"
MODELSCOPE_URL = "https://www.modelscope.cn"


@dataclass(frozen=True)
class HubSettings:
    # One class for [hf] and [modelscope]: the flag is --hf-upstream or --modelscope-upstream.
    upstream: str = text(
        HUGGINGFACE_URL, "Model hub origin, scheme://host[:port].", parse_origin_url, "{table}_upstream"
    )
    revision_ttl: float = seconds(60.0, "Seconds a branch or tag -> commit answer is served before revalidation.")
    auth_ttl: float = seconds(60.0, "Seconds a token's access to a private repository is remembered.")


def default_modelscope() -> HubSettings:
    return HubSettings(upstream=MODELSCOPE_URL)


@dataclass(frozen=True)
class AdminSettings:
    listen: str = text(
        "127.0.0.1:5001", 'HOST:PORT of the admin API; "" disables it.', parse_optional_listen, "admin_listen"
    )
    token: str | None = secret(
        "Bearer token for the admin API, read at load from `token_file` or"
        " `token_env`; required when listen is not a loopback address.",
        what="admin API token",
    )  # fmt: skip


@dataclass(frozen=True)
class LimitSettings:
    client_rate: float = setting(
        0.0, help="Requests per second per client IP; 0 is off.", parse=parse_rate, kind="rate"
    )
    client_burst: int = count(200, "Requests a client IP may send at once above the rate.", 1)
    upstream_concurrency: int = count(0, "Requests in flight per upstream; 0 is off.", 0)
    upstream_bandwidth: int = size(0, "Bytes per second per upstream; 0 is off.", 0)
    max_header_bytes: int = size(
        64 * KiB, "Largest request line plus headers on every listener; larger is 431.", 1 * KiB, 16 * MiB
    )
    header_timeout: float = seconds(
        10.0, "Seconds a client has to send a request's headers on every listener.", positive=True
    )
    send_timeout: float = seconds(
        30.0,
        "Seconds a client may read nothing of a response body before it is cut off (and its buffers and blob let go).",
        positive=True,
    )
    max_connections_per_client: int = count(
        256, "Open connections per client IP on every listener; more get 503; 0 is no cap.", 0
    )


def _glob(default: str, help: str, *, empty_ok: bool) -> str:
    result: str = setting(default, help=help, parse=glob(empty_ok=empty_ok), kind="text")
    return result


@dataclass(frozen=True)
class BlockRule:
    reason: str = setting(help="Why; sent to the client in the error (required).", parse=parse_text, kind="text")
    upstream: str = _glob("*", "Registry name glob.", empty_ok=False)
    repository: str = _glob("*", "Repository glob.", empty_ok=False)
    tag: str = _glob("", 'Tag glob; "" matches any tag.', empty_ok=True)
    digest: str = setting("", help='A full digest; "" matches any digest.', parse=parse_optional_digest, kind="text")
    hf_repo: str = _glob(
        "",
        'Model hub repository glob (org/name); set: the rule is for model hubs only, "": for images only.',
        empty_ok=True,
    )


SIGNATURE_MODES = ("enforce", "warn")


@dataclass(frozen=True)
class SignatureRule:
    upstream: str = setting(
        help="Registry name of a configured upstream (required).", parse=parse_registry_name, kind="text"
    )
    repositories: tuple[str, ...] = setting(
        help="Repository globs as the upstream names them (library/* on Docker Hub; required).",
        parse=parse_globs, kind="list",
    )  # fmt: skip
    public_keys: tuple[Path, ...] = setting(
        help="PEM files of cosign public keys; a signature by any one counts (required).",
        parse=parse_paths, kind="paths",
    )  # fmt: skip
    mode: str = setting(
        "enforce",
        help="enforce: refuse unsigned manifests with 403; warn: serve them, count and log.",
        parse=parse_choice(SIGNATURE_MODES),
        kind="text",
    )
    name: str = setting(
        "", help='Named in refusals, logs and metrics; "" means signatures[N].', parse=parse_text, kind="text"
    )


@dataclass(frozen=True)
class TelemetrySettings:
    otlp_endpoint: str = text(
        "", 'OTLP endpoint for traces, e.g. http://127.0.0.1:4318; "" is off.', parse_otlp_endpoint, "otlp_endpoint"
    )
    service_name: str = text("registry-mirror", "service.name of exported traces.")


@dataclass(frozen=True)
class Settings:
    listen_host: str = setting(
        "127.0.0.1", help=LISTEN_HELP, parse=parse_listen, kind="listen", flag="listen",
        key="listen", attrs=("listen_host", "listen_port"),
    )  # fmt: skip
    listen_port: int = described(5000, help="Port to serve on (port part of `listen`).")
    path_prefix: str = text(
        "", 'URL path prefix of the mirror in hosts.toml, e.g. "/mirror".', parse_path_prefix, "path_prefix"
    )
    upstreams: tuple[UpstreamSettings, ...] = described(
        (), help="Origins by registry name; built-in ones unless `builtin_upstreams = false`."
    )
    default_upstream: str = text(
        "docker.io", "Upstream for requests that carry no `?ns=`; must be configured.", parse_registry_name,
        "default_upstream",
    )  # fmt: skip
    tag_ttl: float = seconds(60.0, "Seconds a tag -> digest answer is served before revalidation.")
    max_stale: float = seconds(
        24 * 3600.0,
        "Seconds a known tag, hub revision or listing is still served while the origin fails (also after a restart).",
    )
    negative_ttl: float = seconds(5.0, "Seconds an upstream 404 is remembered.")
    confirm_ttl: float = seconds(
        60.0,
        "Seconds an upstream's HEAD confirming that a repository holds a digest cached"
        " for another repository is remembered.",
    )
    manifest_max_bytes: int = size(4 * MiB, "Largest manifest accepted from an upstream.", 1 * KiB)
    cache: CacheSettings = table(CacheSettings, "The local content-addressed cache.")
    log_level: str = text("info", "One of critical, error, warning, info, debug, trace.", parse_log_level, "log_level")
    access_log: bool = switch(True, "Log one line per request.")
    client_token: str | None = secret(
        "Clients must send `Authorization: Bearer <token>`; read at load from"
        " `client_token_file` or `client_token_env`.",
        what="token clients must send",
    )  # fmt: skip
    p2p: P2PSettings = table(
        P2PSettings, "Sharing blobs between nodes: a tracker, peers serving verified pieces, seed leases."
    )
    catalog: CatalogSettings = table(CatalogSettings, "Signed catalogs of images to prefetch, polled from registries.")
    hf: HubSettings = table(HubSettings, "The Hugging Face model hub mirror.")
    modelscope: HubSettings = table(default_modelscope, "The ModelScope model hub mirror.")
    admin: AdminSettings = table(
        AdminSettings, "The admin API (pins, blocklist, status). A listen address that is not loopback needs a token."
    )
    limits: LimitSettings = table(LimitSettings, "Rate and concurrency limits, to protect the node and the origins.")
    blocklist: tuple[BlockRule, ...] = described(
        (), help="`[[blocklist]]` rules; the admin API changes them at run time."
    )
    telemetry: TelemetrySettings = table(TelemetrySettings, "Tracing export; metrics are always served at `/metrics`.")
    signatures: tuple[SignatureRule, ...] = described(
        (), help="`[[signatures]]` policies: cosign signatures a manifest must carry."
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
