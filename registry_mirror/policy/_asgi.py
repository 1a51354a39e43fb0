"""PolicyGate: the one policy gate in front of every route of the main listener.

Every request that is not an operational endpoint (`/healthz`, `/readyz`, `/metrics`) is admitted
by `Policy.admit` (rate limit, client token) before any handler runs, whatever route it is for:
a route added later is gated without being told to be. Routes that name what they serve register
a subject function (path -> blocklist Subject) for their mount; its Subject is checked against
the blocklist here too. The mirror's own client token is removed from the request once checked,
so no handler can forward it to an origin (the hubs forward the client's Authorization)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from registry_mirror.api import OCIError, to_response_parts
from registry_mirror.hub import hub_error
from registry_mirror.policy import _metrics as metrics
from registry_mirror.policy._blocklist import Subject
from registry_mirror.policy._client_auth import TOKEN_HEADER
from registry_mirror.policy._gate import Policy

# path below the mount (raw, percent-encoded), query string -> what is asked for (None: nothing
# a rule can name, e.g. a listing, or a path the route will reject anyway).
SubjectOf = Callable[[str, bytes], Subject | None]
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


class PolicyGate:
    def __init__(self, app: ASGIApp, policy: Policy, subjects: Sequence[tuple[str, SubjectOf]] = ()) -> None:
        """`subjects`: (mount, function) pairs, longest mount first wins; mount "" matches all."""
        self.app = app
        self.policy = policy
        self.subjects = sorted(subjects, key=lambda pair: -len(pair[0]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        route = self._route(scope["path"])
        try:
            client = scope.get("client")
            self.policy.admit(client[0] if client else None, Headers(scope=scope))
            if self.policy.blocklist and route is not None:
                subject = self._subject(scope, *route)
                if subject is not None:
                    self.policy.check_subject(subject)
        except OCIError as error:
            metrics.gate_refusals.add(1, {"route": route[0] if route else "other", "code": str(error.code)})
            scope.setdefault("registry_mirror", {})["error"] = str(error.code)
            await _refuse(error, scope, receive, send)
            return
        if self.policy.client_auth is not None:
            scope = {**scope, "headers": _without_client_token(scope["headers"], self.policy)}
        await self.app(scope, receive, send)

    def _route(self, path: str) -> tuple[str, SubjectOf] | None:
        for mount, subject_of in self.subjects:
            if not mount or path == mount or path.startswith(mount + "/"):
                return mount, subject_of
        return None

    def _subject(self, scope: Scope, mount: str, subject_of: SubjectOf) -> Subject | None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        path = raw.decode("latin-1").split("?", 1)[0][len(mount) :]
        try:
            return subject_of(path, scope.get("query_string", b""))
        except (OCIError, ValueError):
            return None  # the route itself answers the malformed request


def _without_client_token(headers: Sequence[tuple[bytes, bytes]], policy: Policy) -> list[tuple[bytes, bytes]]:
    auth = policy.client_auth
    assert auth is not None
    kept = []
    for name, value in headers:
        if name == TOKEN_HEADER.encode():
            continue
        if name == b"authorization" and auth.allows(value.decode("latin-1")):
            continue
        kept.append((name, value))
    return kept


async def _refuse(error: OCIError, scope: Scope, receive: Receive, send: Send) -> None:
    """In the shape of the route's API family: the hubs' (`X-Error-Code`, `X-Error-Message`,
    `{"error"}`) on /hf and /modelscope, OCI's `{"errors"}` everywhere else."""
    if scope["path"].startswith(("/hf/", "/modelscope/")):
        hub = hub_error(error.status, str(error.code), error.message, error.headers)
        status, headers, body = hub.status_code, dict(hub.headers), bytes(hub.body)
        headers.pop("content-length", None)
    else:
        status, headers, body = to_response_parts(error)
    head = scope["method"] == "HEAD"
    response = Response(b"" if head else body, status, headers)
    if head:
        response.headers["Content-Length"] = str(len(body))
    await response(scope, receive, send)
