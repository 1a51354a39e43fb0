"""The ModelScope API under `/modelscope` (MODELSCOPE_ENDPOINT=http://mirror/modelscope).

- `GET /api/v1/models/{owner}/{name}/repo/files?Revision=...`: passed through; its `Sha256` and
  `Size` per path are remembered per (repo, revision) for `revision_ttl` (stale while the origin
  fails), and the origin serving it to these credentials grants them the repo for `auth_ttl`.
- `GET /api/v1/models/{owner}/{name}/repo?Revision=&FilePath=`: a file with a listed sha256 is a
  blob `sha256:<Sha256>` in nvme_cache (one verified fill, shared with peers); one without is
  relayed uncached.
- Other GETs about one repo (model info, revisions): answered from the cache for `revision_ttl`,
  else from the origin, else (origin down) stale.
- Anything else: passed through with the client's credentials.
Listings and answers persist in the cache index (hub.revisions): a cached repo keeps working with
the origin down, after a restart too.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import CIMultiDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from nvme_cache import Digest, InvalidDigest
from registry_mirror.api import Mirror
from registry_mirror.hub._auth_cache import AccessCache
from registry_mirror.hub._delivery import hub_source, serve_blob
from registry_mirror.hub._hf_routes import _route_path
from registry_mirror.hub._hf_upstream import HubClient, HubReply, HubTooLarge, HubUnavailable, credentials
from registry_mirror.hub._relay import OriginRefused, kept_headers, relay, unavailable
from registry_mirror.hub._revisions import Resolution, RevisionCache

REPO_API = re.compile(r"^/api/v1/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)/(?P<op>repo/files|repo)$")
REPO_INFO = re.compile(r"^/api/v1/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)(?:/revisions)?$")
DEFAULT_REVISION = "master"


@dataclass(frozen=True)
class ListedFile:
    size: int
    sha256: str | None


class ModelScopeApp:
    def __init__(self, mirror: Mirror, client: HubClient, listings: RevisionCache, access: AccessCache) -> None:
        self.mirror = mirror
        self.client = client
        self.listings = listings  # (type, repo, revision) -> the listing JSON (commit field unused)
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.dispatch(request, _route_path(scope))
        except OriginRefused as refused:
            response = relay(refused.reply, self.client, request, strip_json=False)
        except (HubUnavailable, HubTooLarge) as exc:
            response = unavailable(exc)
        await response(scope, receive, send)

    async def dispatch(self, request: Request, path: str) -> ASGIApp:
        creds = credentials(request.headers)
        match = REPO_API.match(path)
        if request.method == "GET" and (info := REPO_INFO.match(path)):
            return await self.cached_get(request, path, creds, info["type"], info["repo"])
        if match is None or request.method not in ("GET", "HEAD"):
            return await self.pass_through(request, path, creds)
        repo_type, repo = match["type"], match["repo"]
        revision = request.query_params.get("Revision") or DEFAULT_REVISION
        if match["op"] == "repo/files":
            try:
                reply = await self._fetch_listing(request, path, creds)
            except HubUnavailable as exc:
                stale = self.listings.stale((repo_type, repo, revision), exc, route="modelscope_listing")
                if stale is None:
                    raise
                await self._require_access(repo_type, repo, revision, creds)
                return Response(stale.body, 200, media_type="application/json")
            if reply.ok:
                self._remember(repo_type, repo, revision, creds, reply.body)
            return relay(reply, self.client, request, strip_json=False)
        file_path = request.query_params.get("FilePath")
        if not file_path:
            return await self.pass_through(request, path, creds)
        listed = await self.listed_file(repo_type, repo, revision, file_path, creds)
        if listed is None or listed.sha256 is None:
            return await self.pass_through(request, path, creds)
        try:
            digest = Digest("sha256", listed.sha256.lower())
        except InvalidDigest:
            return await self.pass_through(request, path, creds)
        url = self.client.url(path, request.url.query)
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{digest.hex}"'}
        origin = functools.partial(hub_source, self.client, url, creds, "file", listed.size)  # built on a miss
        return await serve_blob(
            self.mirror,
            digest,
            listed.size,
            origin,
            headers,
            request_headers=request.headers,
            head=request.method == "HEAD",
            kind="modelscope",
        )

    async def listed_file(
        self, repo_type: str, repo: str, revision: str, file_path: str, creds: Mapping[str, str]
    ) -> ListedFile | None:
        key = (repo_type, repo, revision)

        async def fetch() -> Resolution:
            query = f"Revision={revision}&Recursive=True"
            url = self.client.url(f"/api/v1/{repo_type}/{repo}/repo/files", query)
            reply = await self.client.request("GET", url, creds, kind="listing")
            if not reply.ok:
                raise OriginRefused(reply)
            self.access.allow(creds, f"{repo_type}/{repo}")
            return Resolution("", reply.body)

        listing = await self.listings.resolve(key, fetch, route="modelscope_listing")
        assert listing is not None
        await self._require_access(repo_type, repo, revision, creds)
        return _files(listing.body).get(file_path)

    async def _require_access(self, repo_type: str, repo: str, revision: str, creds: Mapping[str, str]) -> None:
        refused: list[HubReply] = []

        async def ask_origin() -> bool:
            url = self.client.url(f"/api/v1/{repo_type}/{repo}/repo/files", f"Revision={revision}")
            reply = await self.client.request("GET", url, creds, kind="auth_check")
            if not reply.ok:
                refused.append(reply)
            return reply.ok

        if not await self.access.check(creds, f"{repo_type}/{repo}", ask_origin):
            raise OriginRefused(refused[0])

    async def _fetch_listing(self, request: Request, path: str, creds: Mapping[str, str]) -> HubReply:
        return await self.client.request("GET", self.client.url(path, request.url.query), creds, kind="listing")

    def _remember(self, repo_type: str, repo: str, revision: str, creds: Mapping[str, str], body: bytes) -> None:
        if _files(body):
            self.listings.remember((repo_type, repo, revision), Resolution("", body))
            self.access.allow(creds, f"{repo_type}/{repo}")

    async def cached_get(
        self, request: Request, path: str, creds: Mapping[str, str], repo_type: str, repo: str
    ) -> Response:
        query = request.url.query

        async def fetch() -> Resolution:
            reply = await self.client.request("GET", self.client.url(path, query), creds, kind="api")
            if not reply.ok:
                raise OriginRefused(reply)
            self.access.allow(creds, f"{repo_type}/{repo}")
            return Resolution("", reply.body, kept_headers(reply))

        answer = await self.listings.resolve((repo_type, repo, "get", path, query), fetch, route="modelscope_api")
        assert answer is not None
        await self._require_access(repo_type, repo, DEFAULT_REVISION, creds)
        reply = HubReply(200, CIMultiDict(answer.headers), answer.body, self.client.url(path, query))
        return relay(reply, self.client, request, strip_json=False)

    async def pass_through(self, request: Request, path: str, creds: Mapping[str, str]) -> Response:
        body = await request.body() if request.method in ("POST", "PUT") else b""
        content_type = {"Content-Type": request.headers["content-type"]} if "content-type" in request.headers else {}
        url = self.client.url(path, request.url.query)
        reply = await self.client.request(
            request.method, url, creds, kind="api", data=body or None, headers=content_type
        )
        return relay(reply, self.client, request, strip_json=False)


def _files(body: bytes) -> dict[str, ListedFile]:
    try:
        entries = json.loads(body)["Data"]["Files"]
    except (ValueError, KeyError, TypeError):
        return {}
    files: dict[str, ListedFile] = {}
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("Type") != "tree" and "Path" in entry:
            sha256 = entry.get("Sha256") or entry.get("sha256")
            files[str(entry["Path"])] = ListedFile(int(entry.get("Size") or 0), str(sha256) if sha256 else None)
    return files
