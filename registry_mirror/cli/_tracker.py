"""`registry-mirror tracker`: serve the p2p tracker (peer lookups, piece hashes, seed leases)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from http_limits import HeaderLimits
from p2p.tracker import Credentials, ServerSettings, TLSFiles, TrackerConfig, load_node_tokens, node_token, serve
from registry_mirror.config import (
    TRACKER_KEYS,
    ConfigError,
    TrackerSettings,
    add_flags,
    load_tracker_settings,
    tracker_flag_help,
)

_MIN_SECRET_BYTES = 32


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The flags come from TrackerSettings (config_tracker), one per field."""
    parser = subparsers.add_parser("tracker", help="serve the p2p tracker")
    add_flags(parser, TRACKER_KEYS, tracker_flag_help)
    parser.set_defaults(func=run)


def read_secret(path: Path, flag: str) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise SystemExit(f"{flag}: {exc.strerror}: {path}") from exc
    if not text:
        raise SystemExit(f"{flag}: {path} is empty")
    return text


def _credentials(flags: TrackerSettings) -> Credentials:
    token = None if flags.token_file is None else read_secret(flags.token_file, "--token-file")
    secret = None
    if flags.node_secret_file is not None:
        secret = read_secret(flags.node_secret_file, "--node-secret-file").encode()
        if len(secret) < _MIN_SECRET_BYTES:
            raise SystemExit(f"--node-secret-file: needs at least {_MIN_SECRET_BYTES} characters")
    tokens = {}
    if flags.node_tokens_file is not None:
        try:
            tokens = load_node_tokens(flags.node_tokens_file)
        except OSError as exc:
            raise SystemExit(f"--node-tokens-file: {exc.strerror}: {flags.node_tokens_file}") from exc
        except ValueError as exc:
            raise SystemExit(f"--node-tokens-file: {exc}") from exc
    if flags.cert_identity and not flags.tls_ca:
        raise SystemExit("--cert-identity needs --tls-ca")
    cert_identity = bool(flags.cert_identity)
    return Credentials(token, secret, tokens, cert_identity)


def _settings(flags: TrackerSettings) -> ServerSettings:
    if bool(flags.tls_cert) != bool(flags.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    if flags.tls_ca and not flags.tls_cert:
        raise SystemExit("--tls-ca needs --tls-cert and --tls-key")
    credentials = _credentials(flags)
    if not credentials.needs_token and not flags.tls_ca and flags.auth:
        raise SystemExit(
            "the tracker needs --node-secret-file, --node-tokens-file, --token-file and/or --tls-ca"
            " (or --no-auth on a trusted network)"
        )
    return ServerSettings(
        host=flags.listen_host,
        port=flags.listen_port,
        store_url=flags.store,
        peer_ttl=flags.peer_ttl,
        tls=_tls(flags),
        tracker=TrackerConfig(
            credentials=credentials,
            max_records_per_peer=flags.max_records_per_peer,
            exclusion_reporters=flags.exclusion_reporters,
            report_rate=flags.report_rate,
            max_lease_ttl=flags.max_lease_ttl,
            exclusion_ttl=flags.exclusion_ttl,
            sweep_interval=flags.sweep_interval,
        ),
        log_level=flags.log_level,
        header_limits=HeaderLimits(16 * 1024, 10.0, "tracker", flags.max_connections_per_client),
    )


def _tls(flags: TrackerSettings) -> TLSFiles | None:
    if flags.tls_cert is None or flags.tls_key is None:
        return None
    return TLSFiles(str(flags.tls_cert), str(flags.tls_key), str(flags.tls_ca) if flags.tls_ca else None)


def register_token(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("tracker-token", help="print a node's tracker token from the cluster secret")
    parser.add_argument("--secret-file", type=Path, required=True, help="the tracker's --node-secret-file")
    parser.add_argument("node", help="the node's peer id (p2p.peer_id), e.g. its host name")
    parser.set_defaults(func=run_token)


def run_token(args: argparse.Namespace) -> int:
    secret = read_secret(args.secret_file, "--secret-file").encode()
    if len(secret) < _MIN_SECRET_BYTES:
        raise SystemExit(f"--secret-file: needs at least {_MIN_SECRET_BYTES} characters")
    try:
        print(node_token(secret, args.node))
    except ValueError as exc:
        raise SystemExit(f"node: {exc}") from exc
    return 0


def run(args: argparse.Namespace) -> int:
    settings = _settings(load_tracker_settings(vars(args)))
    from registry_mirror.telemetry import install_metrics, metrics_endpoint

    install_metrics("registry-mirror-tracker")  # tracker latency, leases, reports at GET /metrics
    serve(settings, metrics_endpoint)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point until the main CLI hooks `register` in."""
    parser = argparse.ArgumentParser(prog="registry-mirror")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    register_token(subparsers)
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"registry-mirror: error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
