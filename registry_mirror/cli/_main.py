"""`registry-mirror` command line: a table of sub-commands, each registered only when it runs.

A sub-command lives in its own small module with `register(subparsers)`, which adds its parser
and sets `func(args) -> int`. Only the chosen command's module is imported, so `hosts-toml` does
not pay for (or break on) the server's imports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeAlias

from registry_mirror.config import CONFIG_ENV, ConfigError, InvalidValue, Settings, load_settings

PROG = "registry-mirror"
# argparse exposes no public name for it (and its runtime class takes no type argument)
Subparsers: TypeAlias = "argparse._SubParsersAction[OneLineParser]"
Registrar = Callable[[Subparsers], None]


@dataclass(frozen=True)
class Subcommand:
    help: str
    registrar: str | Registrar  # "module:function" is imported only when this command runs


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one stderr line, exit 2, like configuration errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


# ---- serve ----


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help=f"TOML configuration (default: ${CONFIG_ENV})")


def _register_serve(subparsers: Subparsers) -> None:
    """One flag per setting that declares one in settings.py, so the two never drift."""
    from registry_mirror.config import SETTING_KEYS, UPSTREAM_FLAG, VIA_FLAG, add_flags, flag_help

    parser = subparsers.add_parser("serve", help=SUBCOMMANDS["serve"].help)
    _add_config_flag(parser)
    parser.add_argument(UPSTREAM_FLAG, action="append", metavar="NAME=URL", help="add or replace an upstream")
    parser.add_argument(
        VIA_FLAG,
        action="append",
        metavar="NAME=URL",
        help="fetch upstream NAME through the registry-mirror at URL (a regional tier) [upstreams.NAME.via]",
    )
    add_flags(parser, SETTING_KEYS, flag_help)
    parser.set_defaults(func=_serve)


def serve_flags() -> tuple[str, ...]:
    """The names of `serve`'s flags that load_settings reads (its `cli` mapping keys)."""
    from registry_mirror.config import serve_flags as table_flags

    return table_flags()


def _cli_values(args: argparse.Namespace, names: Sequence[str]) -> dict[str, object]:
    return {name: getattr(args, name) for name in names}


def settings_from_args(
    args: argparse.Namespace, cli: Mapping[str, object], env: Mapping[str, str] | None = None
) -> Settings:
    """Settings for a command with a --config flag; the file defaults to $REGISTRY_MIRROR_CONFIG."""
    env = os.environ if env is None else env
    config_file = args.config if args.config is not None else env.get(CONFIG_ENV) or None
    return load_settings(Path(config_file) if config_file else None, env, cli)


def _serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, _cli_values(args, serve_flags()))
    from registry_mirror.runtime import _server as server  # lazy: the app's imports are heavy

    config_file = args.config if args.config is not None else os.environ.get(CONFIG_ENV) or None
    return server.run(settings, Path(config_file) if config_file else None)


# ---- cache verify ----


def _register_cache(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("cache", help=SUBCOMMANDS["cache"].help)
    actions = parser.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="check every cached blob against its digest")
    verify.add_argument("--cache-dir", metavar="DIR", help="cache root")
    _add_config_flag(verify)
    verify.set_defaults(func=_cache_verify)


def _cache_verify(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, {"cache_dir": args.cache_dir})
    from registry_mirror.runtime import _server as server

    return server.verify_cache(settings)


# ---- hosts-toml ----


def _argument(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from a value parser, so a bad value is a one-line usage error."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except InvalidValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _register_hosts_toml(subparsers: Subparsers) -> None:
    from registry_mirror.cli import _hosts_toml as hosts_toml
    from registry_mirror.config import parse_registry_name

    parser = subparsers.add_parser("hosts-toml", help=SUBCOMMANDS["hosts-toml"].help)
    parser.add_argument(
        "--mirror",
        type=_argument(hosts_toml.parse_mirror_url),
        metavar="URL",
        help="the mirror's URL as containerd reaches it (required unless --remove)",
    )
    parser.add_argument(
        "--registry",
        action="append",
        type=_argument(parse_registry_name),
        metavar="NAME",
        help="registry host to send to the mirror (repeatable), e.g. docker.io; with --remove and "
        "none given: every registry",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="hosts directory")
    parser.add_argument(
        "--override-path",
        action="store_true",
        help="the mirror URL path is the API root as is (containerd adds no /v2)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        type=_argument(hosts_toml.parse_header),
        metavar="K=V",
        help="header containerd sends to the mirror (repeatable); the files are then 0600",
    )
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="the mirror is the only host: a blocked (403) or failed pull is not retried at the registry",
    )
    parser.add_argument(
        "--remove",
        action="store_true",
        help="uninstall: remove the files this command wrote for the registries (others are kept)",
    )
    parser.add_argument(
        "--containerd-config",
        type=Path,
        metavar="FILE",
        help="also point containerd's CRI registry config_path at --out in FILE (edited in place; "
        "containerd must then be restarted)",
    )
    parser.add_argument(
        "--local-image-pull",
        action="store_true",
        help="with --containerd-config on containerd 2.x: set use_local_image_pull = true, without "
        "which CRI pulls go through the transfer service, which ignores hosts.toml",
    )
    parser.add_argument(
        "--restart-command",
        metavar="CMD",
        help="with --containerd-config: run CMD when the file changed, e.g. from a privileged pod with "
        "hostPID: 'nsenter --target 1 --mount --pid -- systemctl restart containerd'",
    )
    parser.set_defaults(func=_hosts_toml)


def _hosts_toml(args: argparse.Namespace) -> int:
    from registry_mirror.cli._hosts_toml import remove_hosts_dir, write_hosts_dir

    if args.remove:
        try:
            for path in remove_hosts_dir(args.out, args.registry):
                print(f"removed {path}")
        except OSError as exc:
            return fail(f"--out: cannot remove {str(exc.filename or args.out)!r}: {exc.strerror}")
        return 0
    if args.mirror is None or not args.registry:
        return fail("--mirror and --registry are required (unless --remove)")
    if args.containerd_config is not None:
        status = _containerd_config(args.containerd_config, args.out, args.local_image_pull, args.restart_command)
        if status:
            return status
    try:
        written = write_hosts_dir(
            args.out,
            args.registry,
            args.mirror,
            override_path=args.override_path,
            headers=dict(args.header),
            no_fallback=args.no_fallback,
        )
    except OSError as exc:
        return fail(f"--out: cannot write {str(exc.filename or args.out)!r}: {exc.strerror}")
    for path in written:
        print(path)
    return 0


def _containerd_config(config: Path, hosts_dir: Path, local_image_pull: bool, restart: str | None) -> int:
    import shlex
    import subprocess

    from registry_mirror.cli._containerd_config import ContainerdConfigError, point_at_hosts_dir

    try:
        changed = point_at_hosts_dir(config, hosts_dir, local_image_pull=local_image_pull)
    except ContainerdConfigError as exc:
        return fail(f"--containerd-config: {exc}")
    except OSError as exc:
        return fail(f"--containerd-config: cannot update {str(exc.filename or config)!r}: {exc.strerror}")
    print(f"{config}: {'updated' if changed else 'unchanged'}", flush=True)
    if changed and restart:
        done = subprocess.run(shlex.split(restart), check=False)
        if done.returncode:
            return fail(f"--restart-command exited with {done.returncode}: {restart}")
    elif changed:
        print(f"{config}: restart containerd to apply it", flush=True)
    return 0


# ---- the table ----

SUBCOMMANDS: dict[str, Subcommand] = {
    "serve": Subcommand("run the mirror", _register_serve),
    "hosts-toml": Subcommand("write containerd hosts.toml files", _register_hosts_toml),
    "cache": Subcommand("cache maintenance (verify)", _register_cache),
    "tracker": Subcommand("serve the p2p tracker", "registry_mirror.cli._tracker:register"),
    "tracker-token": Subcommand(
        "print a node's tracker token from the cluster secret", "registry_mirror.cli._tracker:register_token"
    ),
    "ctl": Subcommand("control a running mirror through its admin API", "registry_mirror.cli._ctl:register"),
    "catalog": Subcommand("build, sign, verify and publish catalogs", "registry_mirror.cli._catalog:register"),
    "webhook": Subcommand("serve the pod-injection webhook for model hubs", "registry_mirror.cli._webhook:register"),
    "get": Subcommand("download a hf:// or modelscope:// repo through the mirror", "registry_mirror.cli._get:register"),
}


def _registrar(subcommand: Subcommand) -> Registrar:
    if not isinstance(subcommand.registrar, str):
        return subcommand.registrar
    module, _, function = subcommand.registrar.partition(":")
    registrar: Registrar = getattr(importlib.import_module(module), function)
    return registrar


def build_parser(command: str | None) -> OneLineParser:
    """The parser with `command` fully registered and the others listed by name and help only."""
    from registry_mirror.version import VERSION

    parser = OneLineParser(prog=PROG, description="A node-local pull-through registry mirror.")
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, subcommand in SUBCOMMANDS.items():
        if name == command:
            _registrar(subcommand)(subparsers)
        else:
            subparsers.add_parser(name, help=subcommand.help, add_help=False)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in SUBCOMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_chosen_command(argv)).parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        return fail(str(exc))
    return result


if __name__ == "__main__":
    raise SystemExit(main())
