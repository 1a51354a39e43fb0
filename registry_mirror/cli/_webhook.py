"""`registry-mirror webhook`: serve the model-hub pod-injection webhook over TLS."""

from __future__ import annotations

import argparse

from registry_mirror.config import InvalidValue
from registry_mirror.config import parse_listen as parse_listen_value


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT as the settings parse it, as an argparse type (a bad one is a usage error)."""
    try:
        return parse_listen_value(value)
    except InvalidValue as exc:
        raise argparse.ArgumentTypeError(f"--listen: {exc}") from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "webhook",
        help="serve the mutating admission webhook that adds HF_ENDPOINT/MODELSCOPE_ENDPOINT to pods",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--listen", type=parse_listen, default=("0.0.0.0", 8443), metavar="HOST:PORT")
    parser.add_argument("--tls-cert", required=True, metavar="FILE", help="server certificate (PEM)")
    parser.add_argument("--tls-key", required=True, metavar="FILE", help="its private key (PEM)")
    parser.add_argument(
        "--mirror-port",
        type=int,
        default=5000,
        metavar="PORT",
        help="the node mirror's port on the node IP (its hostPort)",
    )
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from http_limits import HeaderLimits, with_header_limits
    from registry_mirror.telemetry import install_metrics, metrics_endpoint
    from registry_mirror.webhook import HubEndpoints, create_app

    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        try:
            open(path, "rb").close()
        except OSError as exc:
            raise SystemExit(f"registry-mirror: error: {flag}: cannot read {path!r}: {exc.strerror}") from None
    install_metrics("registry-mirror-webhook")
    host, port = args.listen
    config = uvicorn.Config(
        create_app(HubEndpoints(port=args.mirror_port), metrics_endpoint),
        host=host,
        port=port,
        log_level=args.log_level,
        access_log=False,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        http=with_header_limits(HttpToolsProtocol, HeaderLimits(16 * 1024, 10.0, "webhook")),
    )
    uvicorn.Server(config).run()
    return 0
