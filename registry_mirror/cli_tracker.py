"""`registry-mirror tracker`: serve the p2p tracker (peer lookups, piece hashes, seed leases)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from p2p.tracker.app import TrackerConfig
from p2p.tracker.server import ServerSettings, TLSFiles, serve


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdecimal() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return number


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("tracker", help="serve the p2p tracker")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 5050), metavar="HOST:PORT")
    parser.add_argument("--store", default=None, metavar="URL", help="redis://HOST:PORT/DB (default: in memory)")
    parser.add_argument("--token-file", type=Path, help="file holding the shared bearer token")
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
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> ServerSettings:
    token = None
    if args.token_file is not None:
        token = args.token_file.read_text().strip()
        if not token:
            raise SystemExit(f"--token-file: {args.token_file} is empty")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    if args.tls_ca and not args.tls_cert:
        raise SystemExit("--tls-ca needs --tls-cert and --tls-key")
    if token is None and not args.tls_ca and not args.no_auth:
        raise SystemExit("the tracker needs --token-file and/or --tls-ca (or --no-auth on a trusted network)")
    host, port = args.listen
    return ServerSettings(
        host=host,
        port=port,
        store_url=args.store,
        peer_ttl=args.peer_ttl,
        tls=TLSFiles(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None,
        tracker=TrackerConfig(
            token=token,
            max_lease_ttl=args.max_lease_ttl,
            exclusion_ttl=args.exclusion_ttl,
            sweep_interval=args.sweep_interval,
        ),
        log_level=args.log_level,
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
    except OSError as exc:
        raise SystemExit(f"--token-file: {exc}") from exc
    from registry_mirror.telemetry import install_metrics, metrics_endpoint

    install_metrics("registry-mirror-tracker")  # tracker latency, leases, reports at GET /metrics
    serve(settings, metrics_endpoint)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point until the main CLI hooks `register` in."""
    parser = argparse.ArgumentParser(prog="registry-mirror")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
