"""Turning origin answers into client answers: error relays (with `X-Error-Code`), JSON
pass-through without Xet fields, and `Link` pagination pointed back at this mirror."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from yarl import URL

from registry_mirror.hub._errors import UPSTREAM_ERROR, UPSTREAM_UNAVAILABLE, hub_error
from registry_mirror.hub._hf_upstream import HubClient, HubReply, HubTooLarge, HubUnavailable
from registry_mirror.hub._xet import is_xet_header, strip_xet_json

log = logging.getLogger("registry_mirror.hub")

RELAYED_HEADERS = frozenset(
    {"content-type", "link", "x-error-code", "x-error-message", "x-repo-commit", "etag", "x-total-count"}
)


class OriginRefused(Exception):
    """The origin answered an error the client must see as is (401, 403 GatedRepo, 404 ...)."""

    def __init__(self, reply: HubReply) -> None:
        super().__init__(f"origin answered {reply.status}")
        self.reply = reply


def mirror_base(request: Request) -> str:
    """This mount's public URL, as the client reached it."""
    host = request.headers.get("host", f"{request.url.hostname}:{request.url.port}")
    return f"{request.url.scheme}://{host}{request.scope.get('root_path', '')}"


def kept_headers(reply: HubReply) -> tuple[tuple[str, str], ...]:
    """The headers `relay` may pass on, as stored with a cached answer (relayed again later)."""
    return tuple((name, value) for name, value in reply.headers.items() if name.lower() in RELAYED_HEADERS)


def relay(reply: HubReply, client: HubClient, request: Request, *, strip_json: bool = True) -> Response:
    headers: dict[str, str] = {}
    for name, value in reply.headers.items():
        lower = name.lower()
        if lower not in RELAYED_HEADERS or is_xet_header(name, value):
            continue
        if lower == "link":
            value = value.replace(str(client.base), mirror_base(request))
        headers[name] = value
    body = reply.body
    if strip_json and "json" in reply.headers.get("content-type", ""):
        body = strip_xet_json(body)
    return Response(body, reply.status, headers=headers)


def unavailable(exc: HubUnavailable | HubTooLarge) -> Response:
    """502 for an origin that could not answer usefully; why goes to the log only."""
    log.info("hub origin failed: %s", exc)
    if isinstance(exc, HubTooLarge):
        return hub_error(502, UPSTREAM_ERROR, "the origin's answer is over the mirror's size limit")
    return hub_error(502, UPSTREAM_UNAVAILABLE, "the model hub origin is unavailable")


class StreamedRelay:
    """A large non-LFS file (rare: the Hub keeps those under 10 MB) relayed uncached, chunk by
    chunk: nothing in memory beyond one chunk, and a body cut short by the origin is cut short
    for the client too (no content-addressed digest to verify it against)."""

    def __init__(self, client: HubClient, url: URL, creds: Mapping[str, str], range_header: str | None) -> None:
        self._client = client
        self._url = url
        self._creds = creds
        self._range = range_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {"Range": self._range} if self._range else {}
        async with self._client.open("GET", self._url, self._creds, kind="large_file", headers=headers) as response:
            out = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in response.headers.items()
                if name.lower() in RELAYED_HEADERS | {"content-length", "content-range", "accept-ranges"}
                and not is_xet_header(name, value)
            ]
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            async for chunk in response.content.iter_chunked(self._client.chunk_size):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
