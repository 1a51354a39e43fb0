"""`registry-mirror get hf://ORG/REPO[@REV]` and `modelscope://ORG/REPO[@REV]`: download a repo
snapshot through the mirror, resumable (`.part` files continued with Range) and verified (sha256
for LFS / listed files, size for the rest). Exit codes: 0 ok, 1 download or verification failure,
2 usage."""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import httpx
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

CHUNK = 1024 * 1024
FileUrl = Callable[[str], str]
Advance = Callable[[int], object]
SCHEMES = ("hf://", "modelscope://")


class GetFailed(Exception):
    """A download or verification failure (exit 1)."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # None: verified by size only


@dataclass(frozen=True)
class Target:
    hub: str  # hf | modelscope
    repo: str
    revision: str


def parse_target(text: str) -> Target:
    scheme = next((s for s in SCHEMES if text.startswith(s)), None)
    if scheme is None:
        raise ValueError(f"{text!r}: expected hf://ORG/REPO[@REV] or modelscope://ORG/REPO[@REV]")
    repo, _, revision = text[len(scheme) :].partition("@")
    if not repo or repo.count("/") > 1 or repo.startswith("/") or repo.endswith("/"):
        raise ValueError(f"{text!r}: the repository must be ORG/REPO")
    hub = scheme[:-3]
    return Target(hub, repo, revision or ("main" if hub == "hf" else "master"))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("get", help="download a Hugging Face or ModelScope repo through the mirror")
    parser.add_argument("target", metavar="hf://ORG/REPO[@REV]", help="or modelscope://ORG/REPO[@REV]")
    parser.add_argument("--include", action="append", default=[], metavar="GLOB", help="only matching paths")
    parser.add_argument("--out", type=Path, metavar="DIR", help="destination (default: ./REPO)")
    parser.add_argument("--mirror", default="http://127.0.0.1:5000", metavar="URL", help="the mirror's address")
    parser.add_argument("--repo-type", choices=("model", "dataset", "space"), default="model")
    parser.add_argument("--token", default=os.environ.get("HF_TOKEN"), help="bearer token (default: $HF_TOKEN)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        target = parse_target(args.target)
    except ValueError as exc:
        print(f"registry-mirror get: error: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out or Path(target.repo.split("/")[-1])
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    try:
        with httpx.Client(base_url=args.mirror.rstrip("/"), headers=headers, timeout=60) as client:
            files, file_url = _listing(client, target, args.repo_type)
            chosen = [f for f in files if not args.include or any(fnmatch.fnmatch(f.path, g) for g in args.include)]
            _download_all(client, chosen, file_url, out)
    except (GetFailed, httpx.HTTPError) as exc:
        print(f"registry-mirror get: {exc}", file=sys.stderr)
        return 1
    print(f"{len(chosen)} files in {out}")
    return 0


def _listing(client: httpx.Client, target: Target, repo_type: str) -> tuple[list[RemoteFile], FileUrl]:
    if target.hub == "hf":
        return _hf_listing(client, target, repo_type)
    return _modelscope_listing(client, target)


def _hf_listing(client: httpx.Client, target: Target, repo_type: str) -> tuple[list[RemoteFile], FileUrl]:
    api = f"/hf/api/{repo_type}s/{target.repo}"
    revision = _checked(client.get(f"{api}/revision/{quote(target.revision, safe='')}")).json()
    commit = revision["sha"]
    files: list[RemoteFile] = []
    url: str | None = f"{api}/tree/{commit}?recursive=true&expand=false"
    while url:
        page = _checked(client.get(url))
        for entry in page.json():
            if entry.get("type") == "file":
                lfs = entry.get("lfs") or {}
                files.append(RemoteFile(entry["path"], int(entry["size"]), lfs.get("oid")))
        url = page.links.get("next", {}).get("url")
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    return files, lambda path: f"/hf/{prefix}{target.repo}/resolve/{commit}/{quote(path)}"


def _modelscope_listing(client: httpx.Client, target: Target) -> tuple[list[RemoteFile], FileUrl]:
    api = f"/modelscope/api/v1/models/{target.repo}"
    listing = _checked(client.get(f"{api}/repo/files", params={"Revision": target.revision, "Recursive": "True"}))
    files = [
        RemoteFile(entry["Path"], int(entry.get("Size") or 0), entry.get("Sha256") or None)
        for entry in listing.json()["Data"]["Files"]
        if entry.get("Type") != "tree"
    ]

    def file_url(path: str) -> str:
        return f"{api}/repo?Revision={quote(target.revision, safe='')}&FilePath={quote(path, safe='')}"

    return files, file_url


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        code = response.headers.get("x-error-code", "")
        raise GetFailed(f"{response.request.method} {response.request.url.path}: {response.status_code} {code}".strip())
    return response


def _download_all(client: httpx.Client, files: list[RemoteFile], file_url: FileUrl, out: Path) -> None:
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=not sys.stderr.isatty(), disable=not sys.stderr.isatty()) as progress:
        for remote in files:
            destination = _inside(out, remote.path)
            task = progress.add_task(remote.path, total=remote.size)
            _download_one(client, file_url(remote.path), remote, destination, lambda n: progress.advance(task, n))  # noqa: B023 - used in this iteration


def _inside(out: Path, path: str) -> Path:
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts:
        raise GetFailed(f"refusing path {path!r} outside the output directory")
    return out.joinpath(*relative.parts)


def _download_one(client: httpx.Client, url: str, remote: RemoteFile, destination: Path, advance: Advance) -> None:
    if destination.exists() and _verified(destination, remote):
        advance(remote.size)
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > remote.size:
        part.unlink()
        have = 0
    if have < remote.size or remote.size == 0:
        headers = {"Range": f"bytes={have}-"} if have else {}
        with client.stream("GET", url, headers=headers) as response:
            _checked(response)
            if have and response.status_code != 206:
                have = 0  # the server ignored the Range: start over
            advance(have)
            with open(part, "r+b" if have else "wb") as handle:
                handle.seek(have)
                handle.truncate()
                for chunk in response.iter_bytes(CHUNK):
                    handle.write(chunk)
                    advance(len(chunk))
    if not _verified(part, remote):
        part.unlink()
        raise GetFailed(f"{remote.path}: content does not match its {'sha256' if remote.sha256 else 'size'}")
    os.replace(part, destination)


def _verified(path: Path, remote: RemoteFile) -> bool:
    if path.stat().st_size != remote.size:
        return False
    if remote.sha256 is None:
        return True
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == remote.sha256.lower()
