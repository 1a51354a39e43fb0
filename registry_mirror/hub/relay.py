"""Turning origin answers into client answers: error relays (with `X-Error-Code`), JSON
pass-through without Xet fields, and `Link` pagination pointed back at this mirror."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry_mirror.hub.hf_upstream import HubClient, HubReply
from registry_mirror.hub.xet import is_xet_header, strip_xet_json

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


def unavailable(message: str) -> Response:
    return Response(message, 502, headers={"X-Error-Code": "UpstreamUnavailable", "X-Error-Message": message[:200]})
