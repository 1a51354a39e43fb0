"""The Hugging Face API under `/hf` (HF_ENDPOINT=http://mirror/hf).

- `/api/{type}s/{repo}/revision/{rev}`: cached revision -> commit (TTL, stale on origin failure).
- `/{type}s?/{repo}/resolve/{rev}/{path}`: HEAD answered from paths-info metadata; GET from the
  cache (LFS by sha256, small files by (repo, commit, path)), else one verified origin fill.
- `/api/{type}s/{repo}` and its `/tree/{rev}` pages: answered from the cache (a commit's pages
  forever, others for the TTL, stale on origin failure), else fetched with the client's
  credentials; Xet fields stripped and pagination links pointed back here.
- Everything else under `/api/`: passed through.
Revisions, listings and paths-info answers persist in the cache index (hub.revisions), so cached
repos keep working with the origin down, after a restart too.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from cachetools import LRUCache
from multidict import CIMultiDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from yarl import URL

from nvme_cache import Digest
from registry_mirror.api import Mirror
from registry_mirror.hub._auth_cache import AccessCache
from registry_mirror.hub._delivery import SMALL_FILE_MAX_BYTES, SmallFileKey, SmallFiles, hub_source, serve_blob
from registry_mirror.hub._errors import ENTRY_NOT_FOUND, hub_error
from registry_mirror.hub._hf_upstream import HubClient, HubReply, HubTooLarge, HubUnavailable, credentials
from registry_mirror.hub._relay import OriginRefused, StreamedRelay, kept_headers, relay, unavailable
from registry_mirror.hub._revisions import Resolution, RevisionCache, is_commit
from registry_mirror.hub._xet import strip_xet_json

REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
API_PATH = re.compile(rf"^/api/(?P<type>models|datasets|spaces)/{REPO}/(?P<op>revision)/(?P<rev>[^/]+)$")
RESOLVE_PATH = re.compile(rf"^/(?:(?P<type>datasets|spaces)/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
# Model info and tree pages: cacheable GETs about one repo.
REPO_API_PATH = re.compile(rf"^/api/(?P<type>models|datasets|spaces)/{REPO}(?:/tree/(?P<rev>[^/]+)(?:/.*)?)?$")
TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


@dataclass(frozen=True)
class FileInfo:
    size: int
    git_oid: str
    lfs_sha256: str | None


@dataclass(frozen=True)
class RepoRef:
    repo_type: str  # model | dataset | space
    repo: str  # decoded "org/name"
    raw_repo: str  # as sent (percent-encoded)

    @property
    def key(self) -> str:
        return f"{self.repo_type}s/{self.repo}"

    def api(self, tail: str) -> str:
        return f"/api/{self.repo_type}s/{self.raw_repo}/{tail}"


class HuggingFaceApp:
    def __init__(
        self,
        mirror: Mirror,
        client: HubClient,
        revisions: RevisionCache,
        access: AccessCache,
        small: SmallFiles,
        listings: RevisionCache | None = None,
    ) -> None:
        self.mirror = mirror
        self.client = client
        self.revisions = revisions
        self.listings = listings or revisions  # tree pages, model info, paths-info answers
        self.access = access
        self.small = small
        self._file_infos: LRUCache[tuple[str, str, str], FileInfo | None] = LRUCache(100_000)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.dispatch(request, _route_path(scope))
        except OriginRefused as refused:
            response = relay(refused.reply, self.client, request)
        except (HubUnavailable, HubTooLarge) as exc:
            response = unavailable(exc)
        await response(scope, receive, send)

    async def dispatch(self, request: Request, path: str) -> ASGIApp:
        creds = credentials(request.headers)
        if request.method in ("GET", "HEAD"):
            if match := RESOLVE_PATH.match(path):
                ref = RepoRef((match["type"] or "models")[:-1], unquote(match["repo"]), match["repo"])
                return await self.resolve_file(request, ref, unquote(match["rev"]), match["path"], creds)
            if match := API_PATH.match(path):
                ref = RepoRef(match["type"][:-1], unquote(match["repo"]), match["repo"])
                resolution = await self.resolve_revision(ref, unquote(match["rev"]), creds)
                return Response(
                    b"" if request.method == "HEAD" else resolution.body, 200, media_type="application/json"
                )
        if request.method == "GET" and (match := REPO_API_PATH.match(path)):
            ref = RepoRef(match["type"][:-1], unquote(match["repo"]), match["repo"])
            return await self.cached_api(request, ref, unquote(match["rev"]) if match["rev"] else None, path, creds)
        if path.startswith("/api/"):
            return await self.pass_through(request, path, creds)
        return hub_error(404, ENTRY_NOT_FOUND, "no such endpoint on this mirror")

    async def cached_api(
        self, request: Request, ref: RepoRef, rev: str | None, path: str, creds: Mapping[str, str]
    ) -> Response:
        """A repo's info or tree page: from the cache when fresh (a commit's pages always are),
        else from the origin, else (origin down) stale."""
        query = request.url.query

        async def fetch() -> Resolution:
            reply = await self.client.request("GET", self.client.url(path, query), creds, kind="api")
            if not reply.ok:
                raise OriginRefused(reply)
            self.access.allow(creds, ref.key)
            return Resolution("", reply.body, kept_headers(reply))

        key = (ref.repo_type, ref.repo, "api", path, query)
        route = "hf_tree" if rev is not None else "hf_api"
        answer = await self.listings.resolve(key, fetch, route=route, immutable=rev is not None and is_commit(rev))
        assert answer is not None
        await self.require_access(ref, rev or "main", creds)
        reply = HubReply(200, CIMultiDict(answer.headers), answer.body, self.client.url(path, query))
        return relay(reply, self.client, request)

    # -- revisions and access --------------------------------------------------------------------
    async def resolve_revision(self, ref: RepoRef, rev: str, creds: Mapping[str, str]) -> Resolution:
        async def fetch() -> Resolution:
            url = self.client.url(ref.api(f"revision/{_quote_rev(rev)}"))
            reply = await self.client.request("GET", url, creds, kind="revision")
            if not reply.ok:
                raise OriginRefused(reply)
            body = strip_xet_json(reply.body)
            commit = json.loads(body).get("sha")
            if not isinstance(commit, str) or not is_commit(commit):
                raise HubUnavailable(f"revision answer for {ref.key}@{rev} has no commit sha")
            self.access.allow(creds, ref.key)  # the origin just served this repo to these credentials
            return Resolution(commit, body)

        resolution = await self.revisions.resolve((ref.repo_type, ref.repo, rev), fetch, route="hf_revision")
        assert resolution is not None
        await self.require_access(ref, resolution.commit, creds)
        return resolution

    async def require_access(self, ref: RepoRef, commit: str, creds: Mapping[str, str]) -> None:
        refused: list[HubReply] = []

        async def ask_origin() -> bool:
            url = self.client.url(ref.api(f"revision/{commit}"))
            reply = await self.client.request("HEAD", url, creds, kind="auth_check")
            if not reply.ok:
                refused.append(reply)
            return reply.ok

        if not await self.access.check(creds, ref.key, ask_origin):
            raise OriginRefused(refused[0])

    async def commit_of(self, ref: RepoRef, rev: str, creds: Mapping[str, str]) -> str:
        if is_commit(rev):
            await self.require_access(ref, rev, creds)
            return rev
        return (await self.resolve_revision(ref, rev, creds)).commit

    # -- files -----------------------------------------------------------------------------------
    async def file_info(self, ref: RepoRef, commit: str, path: str, creds: Mapping[str, str]) -> FileInfo | None:
        key = (ref.key, commit, path)
        if key in self._file_infos:
            return self._file_infos[key]  # a commit's tree never changes

        async def fetch() -> Resolution:
            url = self.client.url(ref.api(f"paths-info/{commit}"))
            data = {"paths": path, "expand": "false"}
            reply = await self.client.request("POST", url, creds, kind="paths_info", data=data)
            if not reply.ok:
                raise OriginRefused(reply)
            return Resolution(commit, reply.body)

        durable_key = (ref.repo_type, ref.repo, "paths-info", commit, path)
        answer = await self.listings.resolve(durable_key, fetch, route="hf_paths_info", immutable=True)
        assert answer is not None
        info = _parse_file_info(answer.body, path)
        self._file_infos[key] = info
        return info

    async def resolve_file(
        self, request: Request, ref: RepoRef, rev: str, raw_path: str, creds: Mapping[str, str]
    ) -> ASGIApp:
        commit = await self.commit_of(ref, rev, creds)
        path = unquote(raw_path)
        info = await self.file_info(ref, commit, path, creds)
        if info is None:
            return hub_error(404, ENTRY_NOT_FOUND, f"{path} not found at {commit}", {"X-Repo-Commit": commit})
        etag = info.lfs_sha256 or info.git_oid
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
        if info.lfs_sha256 is not None:
            headers.update({"X-Linked-Etag": f'"{info.lfs_sha256}"', "X-Linked-Size": str(info.size)})
        head = request.method == "HEAD"
        url = self.client.url(f"/{TYPE_PREFIX[ref.repo_type]}{ref.raw_repo}/resolve/{commit}/{raw_path}")
        if info.lfs_sha256 is not None:
            digest = Digest("sha256", info.lfs_sha256)
            origin = functools.partial(hub_source, self.client, url, creds, "lfs", info.size)  # built on a miss
            return await serve_blob(
                self.mirror, digest, info.size, origin, headers, request_headers=request.headers, head=head, kind="hf"
            )
        if head:
            return await serve_blob(
                self.mirror,
                Digest("sha256", "0" * 64),
                info.size,
                None,
                headers,
                request_headers=request.headers,
                head=True,
                kind="hf",
            )
        if info.size > SMALL_FILE_MAX_BYTES:
            return StreamedRelay(self.client, url, creds, request.headers.get("range"))
        small_key = SmallFileKey(ref.repo_type, ref.repo, commit, path)
        digest_or_none = self.small.cached(small_key)
        if digest_or_none is None:
            digest_or_none = await self.small.fetch(small_key, self.client, url, creds, info.size, info.git_oid)
        return await serve_blob(
            self.mirror,
            digest_or_none,
            info.size,
            None,
            headers,
            request_headers=request.headers,
            head=False,
            kind="hf",
        )

    async def pass_through(
        self, request: Request, path: str, creds: Mapping[str, str], url: URL | None = None
    ) -> Response:
        target = url or self.client.url(path, request.url.query)
        body = await request.body() if request.method in ("POST", "PUT") else b""
        content_type = {"Content-Type": request.headers["content-type"]} if "content-type" in request.headers else {}
        reply = await self.client.request(
            request.method, target, creds, kind="api", data=body or None, headers=content_type
        )
        return relay(reply, self.client, request)


def _parse_file_info(body: bytes, path: str) -> FileInfo | None:
    for entry in json.loads(body):
        if entry.get("path") == path and entry.get("type") == "file":
            lfs = entry.get("lfs") or {}
            return FileInfo(int(entry["size"]), str(entry["oid"]), lfs.get("oid") or lfs.get("sha256"))
    return None


def _quote_rev(rev: str) -> str:
    return rev.replace("/", "%2F")


def _route_path(scope: Scope) -> str:
    """The percent-encoded path below this mount (revisions like refs%2Fpr%2F1 keep their slash)."""
    raw = scope.get("raw_path")
    path: str = raw.decode("latin-1") if raw else scope["path"]
    path = path.split("?", 1)[0]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
