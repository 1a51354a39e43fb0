"""The HTTP client for a model hub origin (Hugging Face or ModelScope API), on one aiohttp session.

The client's own `Authorization` (and ModelScope's cookie) goes to the origin; redirects are
followed by hand so those never reach another host (a CDN, S3). Transport failures and 5xx
answers become `HubUnavailable`; other error answers are returned for the caller to relay.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from registry_mirror.hub import _metrics as metrics

USER_AGENT = "registry-mirror/0.1 (hub)"
MAX_REDIRECTS = 5
MAX_JSON_BYTES = 64 * 1024 * 1024  # a recursive tree page of a huge dataset stays far below this
CREDENTIAL_HEADERS = ("authorization", "cookie")
RequestData = Mapping[str, str] | bytes | None  # a form, or a body forwarded verbatim


class HubUnavailable(Exception):
    """The origin could not be reached, timed out, broke a body, or answered 5xx."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HubTooLarge(Exception):
    """A JSON answer or small file over the cap."""


@dataclass(frozen=True)
class HubReply:
    status: int
    headers: CIMultiDict[str]
    body: bytes  # empty for HEAD
    url: URL  # after redirects

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def credentials(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers that identify the client to the origin."""
    return {name: value for name in CREDENTIAL_HEADERS if (value := headers.get(name))}


class HubClient:
    def __init__(
        self,
        base_url: str,
        hub: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        chunk_size: int = 1024 * 1024,
    ) -> None:
        self.base = URL(base_url.rstrip("/"))
        self.hub = hub
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self.chunk_size = chunk_size
        self._session: aiohttp.ClientSession | None = None

    def url(self, path: str, query: str = "") -> URL:
        """`path` is already percent-encoded (as the client sent it)."""
        return URL(f"{self.base}{path}" + (f"?{query}" if query else ""), encoded=True)

    async def request(
        self,
        method: str,
        url: URL,
        creds: Mapping[str, str],
        *,
        kind: str,
        data: RequestData = None,
        headers: Mapping[str, str] | None = None,
        limit: int = MAX_JSON_BYTES,
    ) -> HubReply:
        """A whole (capped) answer; 5xx and transport errors raise HubUnavailable."""
        async with self.open(method, url, creds, kind=kind, data=data, headers=headers) as response:
            body = b"" if method == "HEAD" else await _read_capped(response, limit)
            return HubReply(response.status, CIMultiDict(response.headers), body, response.url)

    @contextlib.asynccontextmanager
    async def open(
        self,
        method: str,
        url: URL,
        creds: Mapping[str, str],
        *,
        kind: str,
        data: RequestData = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A streaming answer (any status below 500); released on exit."""
        metrics.upstream_requests.add(1, {"hub": self.hub, "kind": kind})
        try:
            response = await self._follow(method, url, creds, data, headers or {})
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise HubUnavailable(f"{method} {url.path}: {type(exc).__name__}") from None
        try:
            if response.status >= 500:
                raise HubUnavailable(f"{method} {url.path} answered {response.status}", response.status)
            yield response
        finally:
            response.release()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use so it binds to the serving loop.
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self._connect_timeout,
                sock_connect=self._connect_timeout,
                sock_read=self._read_timeout,
            )
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
                timeout=timeout,
                auto_decompress=False,
                read_bufsize=self.chunk_size,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
        return self._session

    async def _follow(
        self,
        method: str,
        url: URL,
        creds: Mapping[str, str],
        data: RequestData,
        headers: Mapping[str, str],
    ) -> aiohttp.ClientResponse:
        session = self._get_session()
        origin = url.origin()
        for _ in range(MAX_REDIRECTS + 1):
            request_headers = dict(headers)
            if url.origin() == origin:
                request_headers.update(creds)
            response = await session.request(method, url, headers=request_headers, data=data, allow_redirects=False)
            location = response.headers.get("Location")
            if response.status not in (301, 302, 303, 307, 308) or not location:
                return response
            response.release()
            url = response.url.join(URL(location, encoded=True))
            if response.status == 303:
                method, data = "GET", None
        raise HubUnavailable(f"more than {MAX_REDIRECTS} redirects")


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise HubTooLarge(f"{response.url.path}: {response.content_length} bytes over {limit}")
    body = bytearray()
    try:
        async for chunk in response.content.iter_chunked(256 * 1024):
            body += chunk
            if len(body) > limit:
                raise HubTooLarge(f"{response.url.path}: over {limit} bytes")
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise HubUnavailable(f"{response.url.path}: body broke ({type(exc).__name__})") from None
    return bytes(body)
