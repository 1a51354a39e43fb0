"""`registry-mirror tracker` settings: declared like the mirror's (config_fields), read from flags.

Each field is one flag; `tracker --help` and the tracker table of docs/configuration.md are
derived from these fields, and values go through the same parsers as the mirror's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from registry_mirror.config._fields import Key, count, described, keys_of, optional_path, seconds, setting, switch
from registry_mirror.config._load import cli_value
from registry_mirror.config._values import InvalidValue, parse_listen, parse_log_level, parse_rate, parse_text


def _positive_rate(value: object) -> float:
    rate = parse_rate(value)
    if rate <= 0:
        raise InvalidValue(f"must be more than 0 per second, got {value!r}")
    return rate


_FLAG = "{name}"  # every tracker setting is a flag named after its field


@dataclass(frozen=True)
class TrackerSettings:
    listen_host: str = setting(
        "127.0.0.1", help="HOST:PORT to serve on ([::1]:5050 for IPv6).", parse=parse_listen, kind="listen",
        flag="listen", key="listen", attrs=("listen_host", "listen_port"),
    )  # fmt: skip
    listen_port: int = described(5050, help="Port to serve on (port part of `listen`).")
    store: str | None = setting(
        None, help="redis://HOST:PORT/DB; unset: in memory.", parse=parse_text, kind="text", flag=_FLAG
    )
    token_file: Path | None = optional_path(
        "File holding the shared bearer token (weaker: any holder may act as any peer id).", _FLAG
    )
    node_secret_file: Path | None = optional_path(
        "Cluster secret that per-node tokens derive from (registry-mirror tracker-token).", _FLAG
    )
    node_tokens_file: Path | None = optional_path("Per-node tokens, '<peer id> <token>' per line.", _FLAG)
    cert_identity: bool = switch(
        False, "With --tls-ca: a client certificate's commonName is the caller's peer id (one certificate per node).",
        _FLAG,
    )  # fmt: skip
    max_records_per_peer: int = count(100_000, "Digests one peer may announce.", 1, _FLAG)
    exclusion_reporters: int = count(
        2, "Distinct reporters that exclude a peer from a digest without a shown failed piece.", 1, _FLAG
    )
    report_rate: float = setting(
        1.0, help="Bad-piece reports per second per peer.", parse=_positive_rate, kind="rate", flag=_FLAG
    )
    tls_cert: Path | None = optional_path("Server certificate (PEM).", _FLAG)
    tls_key: Path | None = optional_path("Server private key (PEM).", _FLAG)
    tls_ca: Path | None = optional_path("CA that client certificates must chain to (enables mutual TLS).", _FLAG)
    peer_ttl: float = seconds(30.0, "Seconds a peer lives without a heartbeat.", positive=True, flag=_FLAG)
    max_lease_ttl: float = seconds(
        600.0, "Longest seed lease a peer may ask for, in seconds.", positive=True, flag=_FLAG
    )
    exclusion_ttl: float = seconds(600.0, "Seconds a reported peer is left out.", positive=True, flag=_FLAG)
    sweep_interval: float = seconds(
        30.0, "Seconds between sweeps of expired peers, leases and exclusions.", positive=True, flag=_FLAG
    )
    auth: bool = switch(True, "--no-auth: serve without token or client certificates (trusted networks only).", _FLAG)
    max_connections_per_client: int = count(
        64, "Open connections one client address may hold (503 beyond; 0: no cap, e.g. behind a proxy).", 0, _FLAG
    )
    log_level: str = setting(
        "info", help="One of critical, error, warning, info, debug, trace.", parse=parse_log_level, kind="text",
        flag=_FLAG,
    )  # fmt: skip


TRACKER_KEYS: tuple[Key, ...] = tuple(keys_of(TrackerSettings))


def load_tracker_settings(cli: Mapping[str, object]) -> TrackerSettings:
    """TrackerSettings from the flags given (None or absent: the default), keyed by Key.cli.

    A bad value raises ConfigError naming the field and its flag, as load_settings does."""
    values: dict[str, object] = {}
    cwd = Path.cwd()
    for key in TRACKER_KEYS:
        raw = cli.get(key.cli or "")
        if raw is None:
            continue
        value = cli_value(key, raw, key.flag or key.path, cwd)
        values.update(key.spread(value))
    return TrackerSettings(**values)  # type: ignore[arg-type]  # each value parsed for its field
