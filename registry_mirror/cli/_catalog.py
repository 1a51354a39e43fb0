"""`registry-mirror catalog ...`: keygen, build, sign, verify, push, analyze, wait.

Exit codes: 0 ok, 1 verification or operation failed, 2 usage or input error. Errors are one
line on stderr; with --json, stdout carries one JSON object either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from catalog import (
    CatalogError,
    Reference,
    RegistryClient,
    SchemaError,
    analyze,
    build_catalog,
    catalog_to_json,
    check_activation,
    envelope_to_json,
    format_time,
    generate_keypair,
    keyid,
    load_private_key,
    load_public_key,
    parse_catalog,
    parse_reference,
    push_catalog,
    render_table,
    resolve_image,
    save_private_key,
    save_public_key,
    sign,
    to_json,
    verify,
)
from p2p import TrackerClient, TrackerError
from registry_mirror.config import InvalidValue, parse_size
from registry_mirror.config import parse_duration as parse_seconds

OK, FAILED, USAGE = 0, 1, 2
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class UsageError(Exception):
    """Bad flags or unreadable input: exit code 2."""


def register(subparsers: Any) -> None:
    """Add the `catalog` sub-command group; each leaf sets `func(args) -> int` (the exit code)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    group = subparsers.add_parser("catalog", help="build, sign, verify and publish image catalogs")
    commands = group.add_subparsers(dest="catalog_command", required=True)

    p = commands.add_parser("keygen", parents=[common], help="create an Ed25519 signing key pair")
    p.add_argument("--private", required=True, type=Path)
    p.add_argument("--public", required=True, type=Path)
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.set_defaults(func=_handler(cmd_keygen))

    p = commands.add_parser("build", parents=[common], help="build a catalog from images in a registry")
    p.add_argument("--image", action="append", required=True, metavar="REF")
    p.add_argument("--platform", action="append", default=[], metavar="OS/ARCH")
    p.add_argument("--delta-from", metavar="OLD_REF")
    p.add_argument("--delta-dir", type=Path)
    p.add_argument("--min-savings", type=float, default=0.5, help="keep a delta only if it saves this share")
    p.add_argument("--name", required=True)
    p.add_argument("--serial", required=True, type=int)
    p.add_argument(
        "--rollback-of",
        type=int,
        metavar="SERIAL",
        help="build a rollback that supersedes SERIAL (the bad catalog); --serial must still be higher",
    )
    p.add_argument("--expires-in", default="7d", help="e.g. 12h, 7d, 2w")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--insecure", action="store_true", help="plain HTTP to the registry")
    p.set_defaults(func=_handler(cmd_build))

    p = commands.add_parser("sign", parents=[common], help="wrap a catalog in a signed DSSE envelope")
    p.add_argument("--key", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("catalog", type=Path)
    p.set_defaults(func=_handler(cmd_sign))

    p = commands.add_parser("verify", parents=[common], help="check signature, schema and expiry")
    p.add_argument("--public", required=True, type=Path, action="append")
    p.add_argument("signed", type=Path)
    p.set_defaults(func=_handler(cmd_verify))

    p = commands.add_parser("push", parents=[common], help="publish a signed catalog as an OCI artifact")
    p.add_argument("signed", type=Path)
    p.add_argument("target", metavar="REGISTRY/REPO:TAG")
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--delta-dir", type=Path)
    p.set_defaults(func=_handler(cmd_push))

    p = commands.add_parser(
        "analyze", parents=[common], help="layer overlap of a set of images and the savings of caching and deltas"
    )
    p.add_argument("images", nargs="+", metavar="REF")
    p.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="OLD_REF",
        help="previous versions a node already holds (repeatable); deltas are computed against them",
    )
    p.add_argument("--platform", action="append", default=[], metavar="OS/ARCH")
    p.add_argument(
        "--delta-budget", default="4GiB", help="most old+new layer bytes downloaded to compute deltas (0: no deltas)"
    )
    p.add_argument("--insecure", action="store_true", help="plain HTTP to the registries")
    p.set_defaults(func=_handler(cmd_analyze))

    p = commands.add_parser(
        "wait", parents=[common], help="CI gate: wait until a share of the cluster's live peers holds a whole catalog"
    )
    p.add_argument("--tracker", required=True, metavar="URL")
    p.add_argument("--name", required=True, help="the catalog's name")
    p.add_argument("--serial", type=int, help="default: the newest serial the peers offer")
    p.add_argument("--ready", default="100%", help="share of live peers, e.g. 90%% or 0.9")
    p.add_argument("--timeout", default="10m", help="e.g. 90s, 10m")
    p.add_argument("--interval", default="2s", help="between progress checks")
    p.add_argument("--token-file", type=Path, help="the tracker's bearer token")
    p.set_defaults(func=_handler(cmd_wait))


Command = Callable[[argparse.Namespace], dict[str, Any]]


def _handler(command: Command) -> Callable[[argparse.Namespace], int]:
    return lambda args: run(command, args)


def run(command: Command, args: argparse.Namespace) -> int:
    """Call `command`, turning exceptions into one-line errors and exit codes."""
    try:
        result, code = command(args), OK
    except (UsageError, SchemaError, ValueError, OSError) as exc:
        result, code = {"ok": False, "error": _one_line(exc), "kind": type(exc).__name__}, USAGE
    except (CatalogError, httpx.HTTPError, KeyError, TypeError) as exc:
        # KeyError/TypeError: a manifest or config from the registry missing a required field.
        result, code = {"ok": False, "error": _one_line(exc), "kind": type(exc).__name__}, FAILED
    if code != OK:
        print(f"registry-mirror catalog {args.catalog_command}: {result['error']}", file=sys.stderr)
    if args.json:
        result.pop("message", None)
        print(json.dumps(result | {"ok": code == OK}, sort_keys=True))
    elif code == OK and result.get("message"):
        print(result["message"])
    return code


def cmd_keygen(args: argparse.Namespace) -> dict[str, Any]:
    for path in (args.private, args.public):
        if path.exists() and not args.force:
            raise UsageError(f"{path} exists (use --force to overwrite)")
    key = generate_keypair()
    save_private_key(key, args.private)
    save_public_key(key.public_key(), args.public)
    kid = keyid(key.public_key())
    return {"keyid": kid, "private": str(args.private), "public": str(args.public), "message": f"keyid {kid}"}


def cmd_build(args: argparse.Namespace) -> dict[str, Any]:
    refs = [parse_reference(r) for r in args.image]
    delta_from = parse_reference(args.delta_from) if args.delta_from else None
    if delta_from is not None and args.delta_dir is None:
        raise UsageError("--delta-from needs --delta-dir")
    registries = {r.registry for r in refs + ([delta_from] if delta_from else [])}
    if len(registries) != 1:
        raise UsageError(f"all images must be on one registry, got {', '.join(sorted(registries))}")
    if args.serial < 0:
        raise UsageError("--serial must not be negative")
    if args.rollback_of is not None and not 0 <= args.rollback_of < args.serial:
        raise UsageError("--rollback-of must be lower than --serial: a rollback gets a new, higher serial")
    expires_in = parse_duration(args.expires_in)
    if args.delta_dir is not None:
        args.delta_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0)
    with RegistryClient(registries.pop(), insecure=args.insecure) as client:
        cat = build_catalog(
            client,
            refs,
            args.name,
            args.serial,
            now,
            expires_in,
            tuple(args.platform),
            delta_from,
            args.delta_dir,
            args.min_savings,
            rollback_of=args.rollback_of,
        )
    _write_atomic(args.out, catalog_to_json(cat))
    return {
        "out": str(args.out),
        "name": cat.name,
        "serial": cat.serial,
        "images": len(cat.images),
        "blobs": len(cat.blobs),
        "deltas": len(cat.deltas),
        "message": f"{args.out}: {len(cat.images)} images, {len(cat.blobs)} blobs, {len(cat.deltas)} deltas",
    }


def cmd_sign(args: argparse.Namespace) -> dict[str, Any]:
    cat = parse_catalog(_read(args.catalog))  # never sign something that would not verify
    key = _load_key(load_private_key, args.key)
    envelope = sign(catalog_to_json(cat), key)
    _write_atomic(args.out, envelope_to_json(envelope))
    kid = envelope["signatures"][0]["keyid"]
    return {"out": str(args.out), "keyid": kid, "serial": cat.serial, "message": f"{args.out}: signed by {kid}"}


def cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    keys = [_load_key(load_public_key, p) for p in args.public]
    envelope = _read(args.signed)
    payload = verify(envelope, keys)
    try:
        cat = parse_catalog(payload)
    except SchemaError as exc:
        # A signed but malformed catalog is a verification failure, not a usage error.
        raise CatalogError(f"signed payload: {exc}") from None
    check_activation(None, cat, datetime.now(UTC))
    return {
        "name": cat.name,
        "serial": cat.serial,
        "expires": format_time(cat.expires),
        "images": len(cat.images),
        "blobs": len(cat.blobs),
        "deltas": len(cat.deltas),
        "message": f"OK: {cat.name} serial {cat.serial}, expires {format_time(cat.expires)}",
    }


def cmd_push(args: argparse.Namespace) -> dict[str, Any]:
    target = parse_reference(args.target)
    if target.tag is None or target.digest is not None:
        raise UsageError(f"{args.target}: push needs REGISTRY/REPO:TAG")
    envelope = _read(args.signed)
    if args.delta_dir is not None and not args.delta_dir.is_dir():
        raise UsageError(f"{args.delta_dir}: not a directory")
    with RegistryClient(target.registry, insecure=args.insecure) as client:
        digest = push_catalog(client, target, envelope, args.delta_dir)
    return {"target": str(target), "digest": digest, "message": f"{target}@{digest}"}


def cmd_analyze(args: argparse.Namespace) -> dict[str, Any]:
    refs = [parse_reference(r) for r in args.images]
    old_refs = [parse_reference(r) for r in args.against]
    try:
        budget = parse_size(args.delta_budget)
    except InvalidValue as exc:
        raise UsageError(f"--delta-budget: {exc}") from None
    clients: dict[str, RegistryClient] = {}

    def client(ref: Reference) -> RegistryClient:
        if ref.registry not in clients:
            clients[ref.registry] = RegistryClient(ref.registry, insecure=args.insecure)
        return clients[ref.registry]

    def download(ref: Reference, digest: str, path: Path) -> int:
        return client(ref).download_blob(ref.repository, digest, path)

    try:
        platforms = tuple(args.platform)
        new = [resolve_image(client(ref), ref, platforms) for ref in refs]
        old = [resolve_image(client(ref), ref, platforms) for ref in old_refs]
        result = analyze(new, old, download=download if budget else None, delta_budget=budget)
    finally:
        for each in clients.values():
            each.close()
    return to_json(result) | {"message": render_table(result)}


class NotReady(CatalogError):
    """`catalog wait` timed out: exit code 1 with the share reached."""


def cmd_wait(args: argparse.Namespace) -> dict[str, Any]:
    wanted = _parse_share(args.ready)
    try:
        timeout, interval = parse_seconds(args.timeout), max(parse_seconds(args.interval), 0.05)
    except InvalidValue as exc:
        raise UsageError(f"--timeout/--interval: {exc}") from None
    if args.serial is not None and args.serial < 0:
        raise UsageError("--serial must not be negative")
    token = _read(args.token_file).decode().strip() if args.token_file else None
    return asyncio.run(_wait(args.tracker, token, args.name, args.serial, wanted, timeout, interval, not args.json))


async def _wait(
    url: str,
    token: str | None,
    name: str,
    serial: int | None,
    wanted: float,
    timeout: float,  # noqa: ASYNC109 - the deadline spans every poll and is named in the error
    interval: float,
    show: bool,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with TrackerClient(url, token) as tracker:
        while True:
            try:
                answer = await tracker.catalog_readiness(name, serial)
                line = _progress(name, serial, answer)
            except TrackerError as exc:
                answer, line = None, f"{name}: tracker unreachable or refusing ({exc})"
            if show:
                print(line, flush=True)
            if answer is not None and answer["live"] and answer["share"] >= wanted:
                return answer | {"message": f"ready: {line}"}
            if time.monotonic() + interval > deadline:
                raise NotReady(f"not ready after {timeout:g}s (wanted {wanted:.0%}): {line}")
            await asyncio.sleep(interval)


def _progress(name: str, serial: int | None, answer: dict[str, Any] | None) -> str:
    if answer is None:
        return f"{name}{f' serial {serial}' if serial is not None else ''}: no live peer has offered it yet (0%)"
    zones = ", ".join(f"{zone or '(none)'} {z['ready']}/{z['live']}" for zone, z in answer["zones"].items())
    return (
        f"{name} serial {answer['serial']}: {answer['ready']}/{answer['live']} live peers hold all"
        f" {answer['digests']} blobs ({answer['share']:.0%}); zones: {zones}"
    )


def _parse_share(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise UsageError(f"--ready {text!r}: expected a share like 90% or 0.9")
    return value


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"--expires-in {text!r}: expected a positive number with s, m, h, d or w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None


def _load_key(loader: Callable[[Path], Any], path: Path) -> Any:
    try:
        return loader(path)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except (ValueError, TypeError, CatalogError) as exc:
        raise UsageError(f"{path}: not a usable Ed25519 PEM key ({_one_line(exc)})") from None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point until registry_mirror.cli._main calls register()."""
    parser = argparse.ArgumentParser(prog="registry-mirror")
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else USAGE
    handler: Callable[[argparse.Namespace], int] = args.func
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
