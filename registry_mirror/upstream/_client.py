"""The client for one upstream registry (OCI Distribution API), on one pooled aiohttp session.

Every failure leaves this module as an `UpstreamError` subclass (translated in `_translate`), so
the front end maps upstream trouble to OCI errors in one table:

    UpstreamError(status, code, message)
    ├── UpstreamUnauthorized      401, or the token endpoint refused us
    ├── UpstreamDenied            403
    ├── UpstreamNotFound          404
    ├── UpstreamTooManyRequests   429, with retry_after seconds when the upstream said
    ├── UpstreamUnavailable       5xx, refused/reset connections, TLS failures, timeouts, cut bodies
    └── UpstreamTooLarge          a manifest or listing over the size cap

Blob bodies are never decoded (`Accept-Encoding: identity`): the bytes must hash to the digest.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from nvme_cache.connections import ConnectionPool
from registry_mirror.config import MiB, UpstreamSettings
from registry_mirror.telemetry import _metrics as metrics
from registry_mirror.upstream._auth import TokenFetchError, UpstreamAuth
from registry_mirror.upstream._redirects import RedirectPolicy, RedirectRefused
from registry_mirror.upstream._via import ViaRoute

USER_AGENT = "registry-mirror/0.1"
MAX_REDIRECTS = 5
ERROR_BODY_MAX_BYTES = 64 * 1024


class UpstreamError(Exception):
    """An upstream request failed. `status` is the upstream's HTTP status, None without one."""

    default_code = "UNKNOWN"

    def __init__(self, status: int | None, code: str | None, message: str) -> None:
        super().__init__(f"{code or self.default_code}: {message}")
        self.status = status
        self.code = code or self.default_code
        self.message = message


class UpstreamUnauthorized(UpstreamError):
    default_code = "UNAUTHORIZED"


class UpstreamDenied(UpstreamError):
    default_code = "DENIED"


class UpstreamNotFound(UpstreamError):
    default_code = "NOT_FOUND"


class UpstreamTooManyRequests(UpstreamError):
    default_code = "TOOMANYREQUESTS"

    def __init__(self, status: int | None, code: str | None, message: str, retry_after: float | None = None) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    default_code = "UNAVAILABLE"


class UpstreamTooLarge(UpstreamError):
    default_code = "SIZE_INVALID"


_BY_STATUS: dict[int, type[UpstreamError]] = {
    401: UpstreamUnauthorized,
    403: UpstreamDenied,
    404: UpstreamNotFound,
    429: UpstreamTooManyRequests,
}


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes  # empty for HEAD


@dataclass(frozen=True)
class ManifestResponse:
    status: int
    media_type: str | None
    digest: str | None  # Docker-Content-Digest as the upstream sent it (unverified)
    size: int | None  # Content-Length (meaningful for HEAD)
    body: bytes  # empty for HEAD
    headers: CIMultiDictProxy[str]


class BlobStream:
    """An open blob body: `status` is 200 or 206, `size` the Content-Length if sent."""

    def __init__(self, response: aiohttp.ClientResponse, chunk_size: int) -> None:
        self._response = response
        self._chunk_size = chunk_size
        self.status = response.status
        self.size = response.content_length
        self.headers = response.headers

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        with _translate("blob body"):
            async for chunk in self._response.content.iter_chunked(self._chunk_size):
                yield chunk


@functools.cache
def tls_context(ca_bundle: str | None, insecure: bool) -> ssl.SSLContext:
    """One TLS context per trust setting for the whole process, shared by every upstream's
    aiohttp session and range pool: each context loads the CA store again (tens of ms, ~1 MB)."""
    context = ssl.create_default_context(cafile=ca_bundle)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class UpstreamClient:
    """Pulls manifests, blobs and listings from one upstream registry."""

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        max_body_bytes: int = 4 * MiB,
        chunk_size: int = 1 * MiB,
        max_connections: int = 64,
        redirects: RedirectPolicy | None = None,
    ) -> None:
        self.settings = settings
        self._redirects = redirects or RedirectPolicy()
        self._base = URL(settings.url.rstrip("/"))
        self._max_body_bytes = max_body_bytes
        self._chunk_size = chunk_size
        self._max_connections = max_connections
        self._auth = UpstreamAuth(username=settings.username, password=settings.password, static_token=settings.token)
        self._session: aiohttp.ClientSession | None = None
        self._range_pool: ConnectionPool | None = None
        self._ssl()  # at startup: loading the CA store takes tens of ms the first request must not wait
        self._via = ViaRoute(settings.via, settings.name) if settings.via else None

    async def get_manifest(
        self, repo: str, reference: str, accept: list[str], *, method: str = "GET"
    ) -> ManifestResponse:
        headers = {"Accept": ", ".join(accept)} if accept else {}
        path = f"manifests/{reference}"
        async with self._request(method, repo, path, headers=headers) as response:
            body = b"" if method == "HEAD" else await self._read_capped(response, "manifest")
            return ManifestResponse(
                status=response.status,
                media_type=response.headers.get("Content-Type"),
                digest=response.headers.get("Docker-Content-Digest"),
                size=response.content_length,
                body=body,
                headers=CIMultiDictProxy(CIMultiDict(response.headers)),
            )

    @contextlib.asynccontextmanager
    async def open_blob(self, repo: str, digest: str, *, range_start: int | None = None) -> AsyncIterator[BlobStream]:
        headers = {"Range": f"bytes={range_start}-"} if range_start else {}
        async with self._request("GET", repo, f"blobs/{digest}", headers=headers) as response:
            yield BlobStream(response, self._chunk_size)

    async def head_blob(self, repo: str, digest: str) -> int | None:
        """The blob's size as the upstream reports it (None without Content-Length)."""
        async with self._request("HEAD", repo, f"blobs/{digest}", headers={}) as response:
            return response.content_length

    async def get(
        self,
        repo: str,
        path_suffix: str,
        params: Mapping[str, str] | None = None,
        accept: Iterable[str] = (),
    ) -> UpstreamResponse:
        """Pass-through GET of `/v2/<repo>/<path_suffix>` (tags/list, referrers/<digest>)."""
        accept = list(accept)
        headers = {"Accept": ", ".join(accept)} if accept else {}
        async with self._request("GET", repo, path_suffix, headers=headers, params=params) as resp:
            body = await self._read_capped(resp, path_suffix)
            return UpstreamResponse(resp.status, CIMultiDictProxy(CIMultiDict(resp.headers)), body)

    # -- for registry_mirror.upstream._ranges: blob bodies on worker threads ------------------------
    def blob_url(self, repository: str, digest: str) -> str:
        """`repository` as the upstream names it (after upstream_repository)."""
        return str(self._base.with_path(f"/v2/{repository}/blobs/{digest}"))

    async def authorization(self, repository: str) -> str | None:
        with _translate("token"):
            return await self._auth.authorization(self._get_session(), repository)

    async def answer_challenge(self, repository: str, headers: Mapping[str, str], sent: str | None) -> str | None:
        challenge = [line for line in headers.get("www-authenticate", "").split("\n") if line]
        with _translate("token"):
            return await self._auth.answer(self._get_session(), repository, challenge, sent)

    def range_pool(self) -> ConnectionPool:
        if self._range_pool is None:
            tls = tls_context(self.settings.ca_bundle, self.settings.insecure) if self._base.scheme == "https" else None
            self._range_pool = ConnectionPool(tls, self.settings.connect_timeout, self.settings.read_timeout)
        return self._range_pool

    async def aclose(self) -> None:
        if self._range_pool is not None:
            self._range_pool.close()
            self._range_pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def upstream_repository(self, repo: str) -> str:
        """Docker Hub style: a one-part name means `library/<name>` there."""
        if self.settings.library_prefix and "/" not in repo:
            return f"library/{repo}"
        return repo

    # -- internals ---------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use so it binds to the running loop (the app's lifespan loop).
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl(), ttl_dns_cache=300)
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self.settings.connect_timeout,
                sock_connect=self.settings.connect_timeout,
                sock_read=self.settings.read_timeout,  # between chunks, so big blobs never time out
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                auto_decompress=False,
                read_bufsize=self._chunk_size,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
        return self._session

    def _ssl(self) -> ssl.SSLContext | bool:
        return False if self.settings.insecure else tls_context(self.settings.ca_bundle, insecure=False)

    @contextlib.asynccontextmanager
    async def _request(
        self,
        method: str,
        repo: str,
        path_suffix: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Sends (through the via mirror first, when there is one), raises on any error status."""
        repository = self.upstream_repository(repo)
        response = None
        if self._via is not None:
            response = await self._open_via(self._via, method, repository, path_suffix, headers, params)
        if response is None:
            response = await self._open_origin(method, repository, path_suffix, headers, params)
        try:
            yield response
        finally:
            # back to the pool when the body was read to the end, closed otherwise
            response.release()

    async def _open_origin(
        self,
        method: str,
        repository: str,
        path_suffix: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
    ) -> aiohttp.ClientResponse:
        """The origin's answer, with auth, retried once after a 401 challenge; raises on errors."""
        url = self._base.with_path(f"/v2/{repository}/{path_suffix}")
        if params:
            url = url.with_query(params)
        session = self._get_session()
        with _translate(f"{method} {url.path}"):
            sent = await self._auth.authorization(session, repository)
            response = await self._follow(session, method, url, headers, sent)
            try:
                if response.status == 401:
                    challenge = response.headers.getall("WWW-Authenticate", [])
                    response.release()
                    retry_with = await self._auth.answer(session, repository, challenge, sent)
                    if retry_with is not None:
                        response = await self._follow(session, method, url, headers, retry_with)
                if response.status >= 400:
                    raise await _error_from(response, f"{method} {url.path}")
            except BaseException:
                response.release()
                raise
            return response

    async def _open_via(
        self,
        via: ViaRoute,
        method: str,
        repository: str,
        path_suffix: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
    ) -> aiohttp.ClientResponse | None:
        """The via mirror's answer, or None when the origin should be asked instead. The origin's
        credentials are never sent to it (it holds its own), nor are its redirects followed."""
        attrs = {"upstream": self.settings.name}
        if not via.usable():
            metrics.via_requests.add(1, {**attrs, "result": "skipped"})
            return None
        url = via.url(repository, path_suffix, dict(params or {}))
        try:
            with _translate(f"{method} via {via.base}"):
                response = await self._get_session().request(method, url, headers=dict(headers), allow_redirects=False)
            if response.status < 300:
                metrics.via_requests.add(1, {**attrs, "result": "via"})
                return response
            response.release()
            down = response.status >= 500
        except UpstreamUnavailable:
            down = True
        via.failed(down)
        metrics.via_requests.add(1, {**attrs, "result": "fallback"})
        return None

    async def _follow(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        authorization: str | None,
    ) -> aiohttp.ClientResponse:
        """Follows redirects by hand so Authorization never reaches another origin (S3, a CDN)."""
        origin = url.origin()
        for _ in range(MAX_REDIRECTS + 1):
            request_headers = dict(headers)
            if authorization and url.origin() == origin:
                request_headers["Authorization"] = authorization
            response = await session.request(method, url, headers=request_headers, allow_redirects=False)
            location = response.headers.get("Location")
            if response.status not in (301, 302, 303, 307, 308) or not location:
                return response
            response.release()
            # encoded=True keeps presigned query signatures byte for byte
            url = response.url.join(URL(location, encoded=True))
            await self.check_redirect(url)
        raise UpstreamUnavailable(None, None, f"more than {MAX_REDIRECTS} redirects")

    async def check_redirect(self, url: URL) -> None:
        """Raises unless the redirect policy lets this upstream's requests follow to `url`."""
        try:
            await self._redirects.check(self._base, url)
        except RedirectRefused as exc:
            raise UpstreamError(None, "REDIRECT_REFUSED", str(exc)) from None

    async def _read_capped(self, response: aiohttp.ClientResponse, what: str) -> bytes:
        cap = self._max_body_bytes
        if response.content_length is not None and response.content_length > cap:
            raise UpstreamTooLarge(response.status, None, f"{what} larger than {cap} bytes")
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > cap:
                raise UpstreamTooLarge(response.status, None, f"{what} larger than {cap} bytes")
        return bytes(body)


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """The one place where transport and token errors become UpstreamError."""
    try:
        yield
    except TokenFetchError as err:
        if err.status in (401, 403):
            raise UpstreamUnauthorized(err.status, None, f"token request: {err.message}") from None
        raise UpstreamUnavailable(err.status, None, f"token request: {err.message}") from None
    except TimeoutError:
        raise UpstreamUnavailable(None, None, f"{what}: timed out") from None
    except aiohttp.ClientError as err:
        raise UpstreamUnavailable(None, None, f"{what}: {type(err).__name__}") from None


async def _error_from(response: aiohttp.ClientResponse, what: str) -> UpstreamError:
    body = await _read_error_body(response)
    return error_for_status(response.status, response.headers.get("Retry-After"), body, what)


def error_for_status(status: int, retry_after_header: str | None, body: bytes, what: str) -> UpstreamError:
    """The UpstreamError for an error answer: the one table every upstream call goes through."""
    code, message = _oci_error(body)
    message = message or f"{what} answered {status}"
    if status == 429:
        retry_after = parse_retry_after(retry_after_header)
        return UpstreamTooManyRequests(status, code, message, retry_after)
    if status >= 500:
        return UpstreamUnavailable(status, code, message)
    return _BY_STATUS.get(status, UpstreamError)(status, code, message)


async def _read_error_body(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.content.read(ERROR_BODY_MAX_BYTES)
    except (TimeoutError, aiohttp.ClientError):
        return b""


def _oci_error(body: bytes) -> tuple[str | None, str | None]:
    """First entry of an OCI `{"errors": [{"code", "message"}]}` body, if that is what it is."""
    try:
        first = json.loads(body)["errors"][0]
        return str(first["code"]), str(first.get("message") or "") or None
    except (ValueError, KeyError, IndexError, TypeError):
        return None, None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
