"""`registry-mirror tracker` settings: declared like the mirror's (config_fields), read from flags.

Each field is one flag; `tracker --help` and the tracker table of docs/configuration.md are
derived from these fields, and values go through the same parsers as the mirror's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from registry_mirror.config_fields import Key, described, keys_of, setting
from registry_mirror.config_values import (
    InvalidValue,
    parse_bool,
    parse_count,
    parse_listen,
    parse_log_level,
    parse_optional_path,
    parse_rate,
    parse_text,
    parse_timeout,
)
from registry_mirror.config_load import ConfigError, cli_value


def _positive_rate(value: object) -> float:
    rate = parse_rate(value)
    if rate <= 0:
        raise InvalidValue(f"must be more than 0 per second, got {value!r}")
    return rate


def _file(help: str) -> Path | None:
    result: Path | None = setting(None, help=help, parse=parse_optional_path, kind="path", flag="{name}")
    return result


def _seconds(default: float, help: str) -> float:
    result: float = setting(default, help=help, parse=parse_timeout, kind="duration", flag="{name}")
    return result


def _count(default: int, help: str, minimum: int) -> int:
    result: int = setting(default, help=help, parse=parse_count(minimum), kind="int", flag="{name}")
    return result


def _switch(default: bool, help: str) -> bool:
    result: bool = setting(default, help=help, parse=parse_bool, kind="bool", flag="{name}")
    return result


@dataclass(frozen=True)
class TrackerSettings:
    listen_host: str = setting(
        "127.0.0.1", help="HOST:PORT to serve on ([::1]:5050 for IPv6).", parse=parse_listen, kind="listen",
        flag="listen", key="listen", attrs=("listen_host", "listen_port"),
    )  # fmt: skip
    listen_port: int = described(5050, help="Port to serve on (port part of `listen`).")
    store: str | None = setting(
        None, help="redis://HOST:PORT/DB; unset: in memory.", parse=parse_text, kind="text", flag="store"
    )
    token_file: Path | None = _file("File holding the shared bearer token (weaker: any holder may act as any peer id).")
    node_secret_file: Path | None = _file(
        "Cluster secret that per-node tokens derive from (registry-mirror tracker-token)."
    )
    node_tokens_file: Path | None = _file("Per-node tokens, '<peer id> <token>' per line.")
    cert_identity: bool = _switch(
        False, "With --tls-ca: a client certificate's commonName is the caller's peer id (one certificate per node)."
    )
    max_records_per_peer: int = _count(100_000, "Digests one peer may announce.", 1)
    exclusion_reporters: int = _count(
        2, "Distinct reporters that exclude a peer from a digest without a shown failed piece.", 1
    )
    report_rate: float = setting(
        1.0, help="Bad-piece reports per second per peer.", parse=_positive_rate, kind="rate", flag="{name}"
    )
    tls_cert: Path | None = _file("Server certificate (PEM).")
    tls_key: Path | None = _file("Server private key (PEM).")
    tls_ca: Path | None = _file("CA that client certificates must chain to (enables mutual TLS).")
    peer_ttl: float = _seconds(30.0, "Seconds a peer lives without a heartbeat.")
    max_lease_ttl: float = _seconds(600.0, "Longest seed lease a peer may ask for, in seconds.")
    exclusion_ttl: float = _seconds(600.0, "Seconds a reported peer is left out.")
    sweep_interval: float = _seconds(30.0, "Seconds between sweeps of expired peers, leases and exclusions.")
    auth: bool = _switch(True, "--no-auth: serve without token or client certificates (trusted networks only).")
    max_connections_per_client: int = _count(
        64, "Open connections one client address may hold (503 beyond; 0: no cap, e.g. behind a proxy).", 0
    )
    log_level: str = setting(
        "info", help="One of critical, error, warning, info, debug, trace.", parse=parse_log_level, kind="text",
        flag="log_level",
    )  # fmt: skip


TRACKER_KEYS: tuple[Key, ...] = tuple(keys_of(TrackerSettings))


def load_tracker_settings(cli: Mapping[str, object]) -> TrackerSettings:
    """TrackerSettings from the flags given (None or absent: the default), keyed by Key.cli."""
    values: dict[str, object] = {}
    cwd = Path.cwd()
    for key in TRACKER_KEYS:
        raw = cli.get(key.cli or "")
        if raw is None:
            continue
        value = cli_value(key, raw, key.flag or key.path, cwd)
        values.update(key.spread(value))
    try:
        return TrackerSettings(**values)  # type: ignore[arg-type]
    except TypeError as exc:  # a key this module declares but the dataclass lacks: a bug here
        raise ConfigError("tracker", str(exc)) from None
