"""Authorization for one upstream registry: static token, Basic, or the Bearer token flow.

The Bearer flow (distribution's token spec): the registry answers 401 with
`WWW-Authenticate: Bearer realm="...",service="...",scope="..."`; we GET the realm with `service`
and `scope=repository:<repo>:pull` (Basic credentials on that request when configured) and retry
the original request once with `Authorization: Bearer <token>`. Tokens are cached per scope until
shortly before they expire. Once a realm is known, a new repository's token is fetched up front,
which saves the 401 round trip.

Credentials and tokens never appear in log lines or exception messages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp

DEFAULT_EXPIRES_IN = 60.0  # the token spec's default when `expires_in` is missing
MAX_CACHED_TOKENS = 4096
TOKEN_REPLY_MAX_BYTES = 1024 * 1024

# token68 or auth-param list items: name=value, name="quoted \"value\"".
_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_SCHEME = re.compile(r"\s*,?\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:\s+|$)")


class TokenFetchError(Exception):
    """The token endpoint failed or answered nonsense; `status` is its HTTP status if it had one."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic", ...
    params: dict[str, str]  # parameter names in lower case


def parse_www_authenticate(values: Iterable[str]) -> list[Challenge]:
    """Parses every challenge from one or more `WWW-Authenticate` header values.

    Tolerates quoted commas (`scope="repository:a:pull,push"`), escaped quotes, odd spacing,
    unquoted values and several challenges in one header line.
    """
    challenges: list[Challenge] = []
    for value in values:
        position = 0
        while position < len(value):
            scheme_match = _SCHEME.match(value, position)
            if not scheme_match or not scheme_match.group(1):
                break
            scheme = scheme_match.group(1).lower()
            position = scheme_match.end()
            params: dict[str, str] = {}
            while position < len(value):
                param = _PARAM.match(value, position)
                if not param:
                    break
                params[param.group(1).lower()] = _unquote(param.group(2))
                position = param.end()
            challenges.append(Challenge(scheme, params))
    return challenges


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def token_lifetime(expires_in: float) -> float:
    """Seconds a token stays cached: refresh a quarter early, at most 30 s, at least 1 s of use."""
    return max(1.0, expires_in - min(30.0, expires_in / 4))


class UpstreamAuth:
    """Chooses the Authorization header for requests to one upstream and answers its challenges."""

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        static_token: str | None = None,
    ) -> None:
        self._basic = basic_header(username, password or "") if username else None
        self._static = f"Bearer {static_token}" if static_token else None
        self._use_basic = False  # set once the upstream asked for Basic
        self._bearer_realm: tuple[str, str | None] | None = None  # (realm, service)
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (header value, refresh at)
        self._pending: dict[str, asyncio.Future[str]] = {}  # one token request per scope

    def __repr__(self) -> str:  # never show credentials
        return f"UpstreamAuth(basic={self._basic is not None}, static={self._static is not None})"

    async def authorization(self, session: aiohttp.ClientSession, repository: str) -> str | None:
        """The header to send first: static token, Basic, a cached token, or a fresh one if the
        realm is already known (saves the 401 round trip)."""
        if self._static:
            return self._static
        if self._use_basic:
            return self._basic
        scope = pull_scope(repository) if repository else ""
        cached = self._cached(scope)
        if cached or self._bearer_realm is None or not scope:
            return cached
        realm, service = self._bearer_realm
        return await self._token(session, realm, service, scope)

    async def answer(
        self,
        session: aiohttp.ClientSession,
        repository: str,
        www_authenticate: Iterable[str],
        sent: str | None,
    ) -> str | None:
        """The header to retry with after a 401, or None when retrying cannot help."""
        challenges = {c.scheme: c for c in parse_www_authenticate(www_authenticate)}
        bearer = challenges.get("bearer")
        if bearer and "realm" in bearer.params and not self._static:
            realm, service = bearer.params["realm"], bearer.params.get("service")
            self._bearer_realm = (realm, service)
            scope = pull_scope(repository) if repository else bearer.params.get("scope", "")
            if sent is not None and self._cached(scope) == sent:
                del self._tokens[scope]  # the registry refused it; other waiters' tokens stay
            token = await self._token(session, realm, service, scope)
            return token if token != sent else None
        if "basic" in challenges and self._basic and sent != self._basic:
            self._use_basic = True
            return self._basic
        return None

    def _cached(self, scope: str) -> str | None:
        entry = self._tokens.get(scope)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._tokens[scope]
            return None
        return entry[0]

    async def _token(self, session: aiohttp.ClientSession, realm: str, service: str | None, scope: str) -> str:
        cached = self._cached(scope)
        if cached:
            return cached
        pending = self._pending.get(scope)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_token(session, realm, service, scope))
            self._pending[scope] = pending
            pending.add_done_callback(lambda _: self._pending.pop(scope, None))
        # shield: one waiter being cancelled must not cancel the fetch the others wait for
        return await asyncio.shield(pending)

    async def _fetch_token(self, session: aiohttp.ClientSession, realm: str, service: str | None, scope: str) -> str:
        if not realm.startswith(("https://", "http://")):
            raise TokenFetchError(None, "token realm is not an http(s) URL")
        params = {key: value for key, value in (("service", service), ("scope", scope)) if value}
        headers = {"Authorization": self._basic} if self._basic else {}
        async with session.get(realm, params=params, headers=headers) as response:
            if response.status != 200:
                raise TokenFetchError(response.status, f"token endpoint answered {response.status}")
            if (response.content_length or 0) > TOKEN_REPLY_MAX_BYTES:
                raise TokenFetchError(response.status, "token reply too large")
            raw = await response.content.read(TOKEN_REPLY_MAX_BYTES + 1)
        try:
            reply = json.loads(raw)
            token = reply.get("token") or reply.get("access_token")
            expires_in = float(reply.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (ValueError, AttributeError, TypeError):
            raise TokenFetchError(200, "token reply is not the expected JSON") from None
        if not isinstance(token, str) or not token:
            raise TokenFetchError(200, "token reply has no token")
        header = f"Bearer {token}"
        self._remember(scope, header, expires_in)
        return header

    def _remember(self, scope: str, header: str, expires_in: float) -> None:
        if len(self._tokens) >= MAX_CACHED_TOKENS:
            now = time.monotonic()
            for key in [k for k, (_, until) in self._tokens.items() if until <= now]:
                del self._tokens[key]
            if len(self._tokens) >= MAX_CACHED_TOKENS:
                self._tokens.pop(next(iter(self._tokens)))
        self._tokens[scope] = (header, time.monotonic() + token_lifetime(expires_in))
