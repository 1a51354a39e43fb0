"""`registry-mirror ctl`: the admin API's client. Human tables by default, `--json` for scripts.

Exit codes: 0 done; 1 the mirror refused or failed (or cannot be reached); 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ADMIN_ENV = "REGISTRY_MIRROR_ADMIN"
TOKEN_FILE_ENV = "REGISTRY_MIRROR_ADMIN_TOKEN_FILE"
DEFAULT_ADMIN = "http://127.0.0.1:5001"


class CtlError(Exception):
    """A failure to report on one line; `code` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("ctl", help="control a running mirror through its admin API")
    parser.add_argument("--admin", metavar="URL", help=f"admin API (default ${ADMIN_ENV} or {DEFAULT_ADMIN})")
    parser.add_argument("--token-file", type=Path, metavar="FILE", help=f"admin token (default ${TOKEN_FILE_ENV})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    commands = parser.add_subparsers(dest="ctl_command", required=True, metavar="COMMAND")

    commands.add_parser("status", help="cache size, hit ratio, peers, active catalog").set_defaults(func=_run(_status))

    cache = commands.add_parser("cache", help="list, inspect, evict, pin and unpin cached blobs")
    cache_actions = cache.add_subparsers(dest="cache_action", required=True, metavar="ACTION")
    ls = cache_actions.add_parser("ls", help="cached blobs, most recently used first")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=_run(_cache_ls))
    for name, fn, help_text in (
        ("inspect", _cache_inspect, "one blob's size, media type, pins"),
        ("evict", _cache_evict, "remove one blob (refused while pinned or read)"),
        ("pin", _cache_pin, "keep a blob from eviction"),
        ("unpin", _cache_unpin, "let a pinned blob be evicted again"),
    ):
        action = cache_actions.add_parser(name, help=help_text)
        action.add_argument("digest", metavar="DIGEST")
        if name in ("pin", "unpin"):
            action.add_argument("--name", default="admin", help="pin set name (default: admin)")
        action.set_defaults(func=_run(fn))

    blocklist = commands.add_parser("blocklist", help="list, add and remove blocklist rules")
    block_actions = blocklist.add_subparsers(dest="blocklist_action", required=True, metavar="ACTION")
    block_actions.add_parser("ls", help="rules in force").set_defaults(func=_run(_blocklist_ls))
    add = block_actions.add_parser("add", help="block pulls now (kept across restarts until rm)")
    for field in ("upstream", "repository", "tag", "digest", "hf-repo"):
        add.add_argument(f"--{field}", help=f"{field} to match (globs except digest)")
    add.add_argument("--reason", required=True, help="sent to the client in the 403")
    add.set_defaults(func=_run(_blocklist_add))
    rm = block_actions.add_parser("rm", help="remove a rule added through the admin API")
    rm.add_argument("rule_id", metavar="ID")
    rm.set_defaults(func=_run(_blocklist_rm))

    catalog = commands.add_parser("catalog", help="the active catalog")
    catalog_actions = catalog.add_subparsers(dest="catalog_action", required=True, metavar="ACTION")
    catalog_actions.add_parser("status", help="active serial, prefetch progress").set_defaults(
        func=_run(_catalog_status)
    )
    catalog_actions.add_parser("rollback", help="go back to the previous catalog").set_defaults(
        func=_run(_catalog_rollback)
    )

    prefetch = commands.add_parser("prefetch", help="pull an image into the cache, with progress")
    prefetch.add_argument("ref", metavar="REF", help="REGISTRY/REPOSITORY:TAG or @DIGEST")
    prefetch.add_argument("--platform", default="linux/amd64")
    prefetch.add_argument("--no-wait", action="store_true", help="start the job and return")
    prefetch.set_defaults(func=_run(_prefetch))
    _accept_common_flags_everywhere(commands)


def _accept_common_flags_everywhere(commands: Any) -> None:
    """`ctl status --json` works like `ctl --json status`: every leaf command takes the common
    flags too (SUPPRESS keeps a leaf from overwriting what was given before the command)."""
    for sub in commands.choices.values():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            _accept_common_flags_everywhere(nested[0])
            continue
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--admin", metavar="URL", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--token-file", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


# ---- plumbing ----


class Admin:
    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CtlError(f"cannot reach the admin API at {self.url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code >= 400:
            raise CtlError(f"{response.status_code}: {body.get('error', body)}")
        return body


def _run(action: Callable[[Admin, argparse.Namespace], tuple[Any, str]]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            admin = Admin(_admin_url(args), _token(args))
            result, human = action(admin, args)
        except CtlError as exc:
            print(f"registry-mirror ctl: error: {exc}", file=sys.stderr)
            return exc.code
        print(json.dumps(result, indent=2, sort_keys=True) if args.json else human)
        return 0

    return run


def _admin_url(args: argparse.Namespace) -> str:
    url: str = args.admin or os.environ.get(ADMIN_ENV) or DEFAULT_ADMIN
    if not url.startswith(("http://", "https://")):
        raise CtlError(f"--admin: expected http(s)://HOST:PORT, got {url!r}", 2)
    return url


def _token(args: argparse.Namespace) -> str | None:
    path = args.token_file or (Path(os.environ[TOKEN_FILE_ENV]) if os.environ.get(TOKEN_FILE_ENV) else None)
    if path is None:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise CtlError(f"--token-file: cannot read {str(path)!r}: {exc.strerror}", 2) from None


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, box=None, header_style="bold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console = Console(record=True, width=160, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text().rstrip()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _size(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# ---- commands: each returns (JSON result, human text) ----


def _status(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    status = admin.call("GET", "/admin/status")
    cache, traffic = status["cache"], status["traffic"]
    ratio = traffic.get("hit_ratio")
    urls = status.get("upstream_urls", {})
    upstreams = ", ".join(f"{name} ({urls[name]})" if urls.get(name) else name for name in status["upstreams"])
    lines = [
        f"mirror     {status.get('address', '?')} (admin {admin.url}), version {status.get('version', '?')},"
        f" pid {status.get('pid', '?')}, up {_duration(status.get('uptime_seconds', 0))}",
        f"cache dir  {status.get('cache_dir', '?')}",
        f"cache      {_size(cache['bytes_used'])} of {_size(cache['bytes_capacity'])}, {cache['blobs']} blobs,"
        f" {cache['pins']} pins, {cache['fills_in_flight']} fills running",
        f"hit ratio  {'-' if ratio is None else f'{ratio:.1%}'} of blob bytes"
        f" (origin bytes saved: {_size(traffic['origin_bytes_saved'])})",
        "bytes      " + (", ".join(f"{k} {_size(v)}" for k, v in traffic["blob_bytes_by_source"].items()) or "-"),
        f"upstreams  {upstreams}; default {status.get('default_upstream', '?')}",
        f"blocklist  {status['blocklist_rules']} rules",
    ]
    lines += [f"{name:<10} {json.dumps(value)}" for name, value in status.items() if name not in _STATUS_CORE]
    return status, "\n".join(lines)


_STATUS_CORE = {
    "cache",
    "traffic",
    "upstreams",
    "blocklist_rules",
    "uptime_seconds",
    "upstream_limits",
    "address",
    "version",
    "pid",
    "cache_dir",
    "upstream_urls",
    "default_upstream",
}


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days else f"{hours}h{minutes}m" if hours else f"{minutes}m{secs}s"


def _cache_ls(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    listing = admin.call("GET", "/admin/cache", params={"limit": args.limit})
    rows = [{**b, "size": _size(b["size"]), "pinned": "yes" if b["pinned"] else ""} for b in listing["blobs"]]
    human = _table(rows, ["digest", "size", "media_type", "pinned"]) + f"\n{listing['total']} blobs"
    return listing, human


def _cache_inspect(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    info = admin.call("GET", f"/admin/cache/{args.digest}")
    return info, "\n".join(f"{k:<12} {_cell(v)}" for k, v in info.items())


def _cache_evict(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    result = admin.call("DELETE", f"/admin/cache/{args.digest}")
    return result, f"evicted {result['evicted']}"


def _cache_pin(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    result = admin.call("POST", f"/admin/cache/{args.digest}/pin", params={"name": args.name})
    return result, f"pinned {args.digest} under {args.name!r} ({len(result['digests'])} blobs in that pin)"


def _cache_unpin(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    result = admin.call("DELETE", f"/admin/cache/{args.digest}/pin", params={"name": args.name})
    return result, f"unpinned {args.digest} from {args.name!r}"


def _blocklist_ls(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    result = admin.call("GET", "/admin/blocklist")
    columns = ["id", "origin", "upstream", "repository", "tag", "digest", "hf_repo", "reason"]
    return result, _table(result["rules"], columns) if result["rules"] else "no blocklist rules"


def _blocklist_add(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    rule = {k: getattr(args, k) for k in ("upstream", "repository", "tag", "digest", "hf_repo", "reason")}
    result = admin.call("POST", "/admin/blocklist", json={k: v for k, v in rule.items() if v})
    return result, f"added rule {result['id']}"


def _blocklist_rm(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    result = admin.call("DELETE", f"/admin/blocklist/{args.rule_id}")
    return result, f"removed rule {result['removed']}"


def _catalog_status(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    result = admin.call("GET", "/admin/catalog")
    return result, "\n".join(f"{k:<16} {json.dumps(v)}" for k, v in result.items())


def _catalog_rollback(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    result = admin.call("POST", "/admin/catalog/rollback")
    return result, "rolled back: " + json.dumps(result)


def _prefetch(admin: Admin, args: argparse.Namespace) -> tuple[Any, str]:
    job = admin.call("POST", "/admin/prefetch", json={"ref": args.ref, "platform": args.platform})
    if not args.no_wait:
        job = _follow(admin, job, show_bar=not args.json and sys.stderr.isatty())
    if job["state"] == "failed":
        raise CtlError(f"prefetch of {args.ref} failed: {job['error']}")
    human = f"{args.ref}: {job['state']}, {job['done_blobs']}/{job['total_blobs']} blobs, {_size(job['done_bytes'])}"
    return job, human


def _follow(admin: Admin, job: dict[str, Any], *, show_bar: bool) -> dict[str, Any]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, disable=not show_bar, transient=True) as progress:
        task = progress.add_task(job["ref"], total=None)
        while job["state"] in ("resolving", "running"):
            time.sleep(0.2)
            job = admin.call("GET", f"/admin/prefetch/{job['id']}")
            progress.update(task, total=job["total_bytes"] or None, completed=job["done_bytes"])
    return job
