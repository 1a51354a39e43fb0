"""`registry-mirror tracker`: serve the p2p tracker (peer lookups, piece hashes, seed leases)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from http_limits import HeaderLimits
from p2p.tracker.app import TrackerConfig
from p2p.tracker.auth import Credentials, load_node_tokens, node_token
from p2p.tracker.server import ServerSettings, TLSFiles, serve

_MIN_SECRET_BYTES = 32


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdecimal() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _count(value: str) -> int:
    if not value.isdecimal() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


def _cap(value: str) -> int:
    if not value.isdecimal():
        raise argparse.ArgumentTypeError(f"expected a whole number (0: no cap), got {value!r}")
    return int(value)


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return number


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("tracker", help="serve the p2p tracker")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 5050), metavar="HOST:PORT")
    parser.add_argument("--store", default=None, metavar="URL", help="redis://HOST:PORT/DB (default: in memory)")
    parser.add_argument(
        "--token-file", type=Path,
        help="file holding the shared bearer token (weaker: any holder may act as any peer id)",
    )
    parser.add_argument(
        "--node-secret-file", type=Path,
        help="cluster secret that per-node tokens derive from (registry-mirror tracker-token)",
    )
    parser.add_argument("--node-tokens-file", type=Path, help="per-node tokens, '<peer id> <token>' per line")
    parser.add_argument(
        "--cert-identity", action="store_true",
        help="with --tls-ca: a client certificate's commonName is the caller's peer id (one certificate per node)",
    )
    parser.add_argument("--max-records-per-peer", type=_count, default=100_000, help="digests one peer may announce")
    parser.add_argument(
        "--exclusion-reporters", type=_count, default=2,
        help="distinct reporters that exclude a peer from a digest without a shown failed piece",
    )
    parser.add_argument("--report-rate", type=_positive, default=1.0, help="bad-piece reports per second per peer")
    parser.add_argument("--tls-cert", help="server certificate (PEM)")
    parser.add_argument("--tls-key", help="server private key (PEM)")
    parser.add_argument("--tls-ca", help="CA that client certificates must chain to (enables mutual TLS)")
    parser.add_argument("--peer-ttl", type=_positive, default=30.0, help="seconds a peer lives without heartbeat")
    parser.add_argument("--max-lease-ttl", type=_positive, default=600.0)
    parser.add_argument("--exclusion-ttl", type=_positive, default=600.0, help="seconds a reported peer is left out")
    parser.add_argument("--sweep-interval", type=_positive, default=30.0)
    parser.add_argument(
        "--no-auth", action="store_true", help="serve without token or client certificates (trusted networks only)"
    )
    parser.add_argument(
        "--max-connections-per-client", type=_cap, default=64,
        help="open connections one client address may hold (503 beyond; 0: no cap, e.g. behind a proxy)",
    )
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=run)


def read_secret(path: Path, flag: str) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise SystemExit(f"{flag}: {exc.strerror}: {path}") from exc
    if not text:
        raise SystemExit(f"{flag}: {path} is empty")
    return text


def _credentials(args: argparse.Namespace) -> Credentials:
    token = None if args.token_file is None else read_secret(args.token_file, "--token-file")
    secret = None
    if args.node_secret_file is not None:
        secret = read_secret(args.node_secret_file, "--node-secret-file").encode()
        if len(secret) < _MIN_SECRET_BYTES:
            raise SystemExit(f"--node-secret-file: needs at least {_MIN_SECRET_BYTES} characters")
    tokens = {}
    if args.node_tokens_file is not None:
        try:
            tokens = load_node_tokens(args.node_tokens_file)
        except OSError as exc:
            raise SystemExit(f"--node-tokens-file: {exc.strerror}: {args.node_tokens_file}") from exc
        except ValueError as exc:
            raise SystemExit(f"--node-tokens-file: {exc}") from exc
    if args.cert_identity and not args.tls_ca:
        raise SystemExit("--cert-identity needs --tls-ca")
    cert_identity = bool(args.cert_identity)
    return Credentials(token, secret, tokens, cert_identity)


def _settings(args: argparse.Namespace) -> ServerSettings:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    if args.tls_ca and not args.tls_cert:
        raise SystemExit("--tls-ca needs --tls-cert and --tls-key")
    credentials = _credentials(args)
    if not credentials.needs_token and not args.tls_ca and not args.no_auth:
        raise SystemExit(
            "the tracker needs --node-secret-file, --node-tokens-file, --token-file and/or --tls-ca"
            " (or --no-auth on a trusted network)"
        )
    host, port = args.listen
    return ServerSettings(
        host=host,
        port=port,
        store_url=args.store,
        peer_ttl=args.peer_ttl,
        tls=TLSFiles(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None,
        tracker=TrackerConfig(
            credentials=credentials,
            max_records_per_peer=args.max_records_per_peer,
            exclusion_reporters=args.exclusion_reporters,
            report_rate=args.report_rate,
            max_lease_ttl=args.max_lease_ttl,
            exclusion_ttl=args.exclusion_ttl,
            sweep_interval=args.sweep_interval,
        ),
        log_level=args.log_level,
        header_limits=HeaderLimits(16 * 1024, 10.0, "tracker", args.max_connections_per_client),
    )


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
    settings = _settings(args)
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
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
