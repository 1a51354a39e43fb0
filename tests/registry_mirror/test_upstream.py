"""UpstreamClient against real servers: docker-registry (open, htpasswd, token auth with a small
JWT issuer written here) and small aiohttp servers for what docker-registry cannot do (redirect to
another host, 429/5xx, a body that stalls)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
import httpx
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from registry_mirror.config import UpstreamSettings
from registry_mirror.upstream._auth import parse_www_authenticate
from registry_mirror.upstream._client import (
    UpstreamClient,
    UpstreamDenied,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTooLarge,
    UpstreamTooManyRequests,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "s3cret-pw"
SERVICE, ISSUER = "test-registry", "test-issuer"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
GUARD = 10.0  # a hang fails the test instead of stalling the suite


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a tiny token issuer: RS256 JWTs with the signing cert in x5c, trusted via rootcertbundle ----


@dataclass
class TokenIssuer:
    key: rsa.RSAPrivateKey
    cert_der: bytes
    requests: list[tuple[str, bool]] = field(default_factory=list)  # (scope, had credentials)

    def sign(self, scope: str, expires_in: int = 300) -> str:
        access = []
        if scope:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "exp": now + expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header))}.{_b64url(json.dumps(claims))}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


def _b64url(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_issuer(workdir: Path) -> tuple[TokenIssuer, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    bundle = workdir / "token-root.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TokenIssuer(key, cert.public_bytes(serialization.Encoding.DER)), bundle


def serve_issuer(issuer: TokenIssuer) -> tuple[ThreadingHTTPServer, str]:
    """Anonymous pulls get `token` + `expires_in`; repositories under `private/` need Basic
    credentials and get `access_token` without `expires_in` (the spec's 60 s default)."""
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            scope = query.get("scope", [""])[0]
            given = self.headers.get("Authorization")
            issuer.requests.append((scope, given is not None))
            if (given is not None and given != expected) or (":private/" in scope and not given):
                self._reply(401, {"details": "bad credentials"})
            elif given:
                self._reply(200, {"access_token": issuer.sign(scope)})
            else:
                self._reply(200, {"token": issuer.sign(scope), "expires_in": 300})

        def _reply(self, status: int, body: dict[str, object]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/token"


# -- docker-registry processes sharing one storage directory -------------------------------------


def start_registry(workdir: Path, name: str, storage: Path, auth: str = "") -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = workdir / f"{name}.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: test}}\n" + auth
    )
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/v2/", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"docker-registry {name} did not start: {(workdir / f'{name}.log').read_text()}")


@dataclass
class Content:
    layer: bytes
    layer_digest: str
    manifest: bytes
    manifest_digest: str


def push_image(url: str, repo: str, layer: bytes) -> Content:
    config = b"{}"
    with httpx.Client(base_url=url, timeout=30) as client:
        for blob in (layer, config):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
            sep = "&" if "?" in location else "?"
            client.put(f"{location}{sep}digest={digest}", content=blob).raise_for_status()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        client.put(
            f"/v2/{repo}/manifests/v1", content=manifest, headers={"Content-Type": MANIFEST_TYPE}
        ).raise_for_status()
    return Content(
        layer, "sha256:" + hashlib.sha256(layer).hexdigest(), manifest, "sha256:" + hashlib.sha256(manifest).hexdigest()
    )


@dataclass
class Origins:
    open_url: str
    basic_url: str
    token_url: str
    issuer: TokenIssuer
    content: Content


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    workdir = tmp_path_factory.mktemp("upstream")
    storage = workdir / "storage"
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    issuer, bundle = make_issuer(workdir)
    token_server, realm = serve_issuer(issuer)
    procs = []
    try:
        open_proc, open_url = start_registry(workdir, "open", storage)
        procs.append(open_proc)
        basic_proc, basic_url = start_registry(
            workdir, "basic", storage, f"auth: {{htpasswd: {{realm: test-realm, path: {htpasswd}}}}}\n"
        )
        procs.append(basic_proc)
        token_proc, token_url = start_registry(
            workdir,
            "token",
            storage,
            f"auth: {{token: {{realm: '{realm}', service: {SERVICE}, issuer: {ISSUER}, rootcertbundle: {bundle}}}}}\n",
        )
        procs.append(token_proc)
        layer = os.urandom(3 * 1024 * 1024 + 17)  # a few 1 MiB chunks and a ragged end
        content = push_image(open_url, "test/app", layer)
        push_image(open_url, "private/app", layer)
        yield Origins(open_url, basic_url, token_url, issuer, content)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        token_server.shutdown()
        token_server.server_close()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., UpstreamClient]]:
    clients: list[UpstreamClient] = []

    def build(url: str, **kwargs: object) -> UpstreamClient:
        settings_fields = {k: v for k, v in kwargs.items() if k in UpstreamSettings.__dataclass_fields__}
        extra = {k: v for k, v in kwargs.items() if k not in settings_fields}
        client = UpstreamClient(UpstreamSettings(name="origin", url=url, **settings_fields), **extra)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


async def read_blob(
    client: UpstreamClient, repo: str, digest: str, start: int | None = None
) -> tuple[int, int | None, bytes]:
    async with client.open_blob(repo, digest, range_start=start) as blob:
        body = b"".join([chunk async for chunk in blob.iter_chunks()])
        return blob.status, blob.size, body


# -- open registry -------------------------------------------------------------------------------


async def test_manifest_get_and_head(origins: Origins, make_client) -> None:
    client = make_client(origins.open_url)
    got = await client.get_manifest("test/app", "v1", [MANIFEST_TYPE])
    assert (got.status, got.media_type, got.digest) == (200, MANIFEST_TYPE, origins.content.manifest_digest)
    assert got.body == origins.content.manifest
    head = await client.get_manifest("test/app", "v1", [MANIFEST_TYPE], method="HEAD")
    assert (head.body, head.size, head.digest) == (b"", len(origins.content.manifest), got.digest)


async def test_blob_streams_in_chunks_and_resumes_with_range(origins: Origins, make_client) -> None:
    client = make_client(origins.open_url, chunk_size=1024 * 1024)
    layer = origins.content.layer
    async with client.open_blob("test/app", origins.content.layer_digest) as blob:
        chunks = [chunk async for chunk in blob.iter_chunks()]
        assert (blob.status, blob.size) == (200, len(layer))
    assert b"".join(chunks) == layer and len(chunks) >= 4
    assert max(len(chunk) for chunk in chunks) <= 1024 * 1024
    status, size, tail = await read_blob(client, "test/app", origins.content.layer_digest, start=1000)
    assert (status, size, tail) == (206, len(layer) - 1000, layer[1000:])


async def test_not_found_maps_to_upstream_not_found(origins: Origins, make_client) -> None:
    client = make_client(origins.open_url)
    with pytest.raises(UpstreamNotFound) as manifest_err:
        await client.get_manifest("test/app", "nope", [MANIFEST_TYPE])
    assert (manifest_err.value.status, manifest_err.value.code) == (404, "MANIFEST_UNKNOWN")
    with pytest.raises(UpstreamNotFound) as blob_err:
        await read_blob(client, "test/app", "sha256:" + "0" * 64)
    assert blob_err.value.code == "BLOB_UNKNOWN"


async def test_manifest_over_the_cap_is_refused(origins: Origins, make_client) -> None:
    client = make_client(origins.open_url, max_body_bytes=len(origins.content.manifest) - 1)
    with pytest.raises(UpstreamTooLarge):
        await client.get_manifest("test/app", "v1", [MANIFEST_TYPE])
    exact = make_client(origins.open_url, max_body_bytes=len(origins.content.manifest))
    assert (await exact.get_manifest("test/app", "v1", [MANIFEST_TYPE])).body == origins.content.manifest


async def test_tags_list_pass_through(origins: Origins, make_client) -> None:
    client = make_client(origins.open_url)
    listing = await client.get("test/app", "tags/list", {"n": "10"}, ["application/json"])
    assert listing.status == 200 and json.loads(listing.body) == {"name": "test/app", "tags": ["v1"]}


async def test_connection_refused_is_unavailable(make_client) -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", connect_timeout=2.0)
    with pytest.raises(UpstreamUnavailable) as err:
        await client.get_manifest("test/app", "v1", [MANIFEST_TYPE])
    assert err.value.status is None


# -- Basic auth (htpasswd) -----------------------------------------------------------------------


async def test_basic_auth_answers_the_challenge(origins: Origins, make_client) -> None:
    client = make_client(origins.basic_url, username=USER, password=PASSWORD)
    got = await client.get_manifest("test/app", "v1", [MANIFEST_TYPE])
    assert got.digest == origins.content.manifest_digest
    _, _, body = await read_blob(client, "test/app", origins.content.layer_digest)
    assert body == origins.content.layer


async def test_basic_auth_failures_are_unauthorized_without_leaking(origins: Origins, make_client) -> None:
    with pytest.raises(UpstreamUnauthorized):
        await make_client(origins.basic_url).get_manifest("test/app", "v1", [MANIFEST_TYPE])
    wrong = make_client(origins.basic_url, username=USER, password="wrong-password-xyz")
    with pytest.raises(UpstreamUnauthorized) as err:
        await wrong.get_manifest("test/app", "v1", [MANIFEST_TYPE])
    assert "wrong-password-xyz" not in str(err.value) and "wrong-password-xyz" not in repr(wrong.settings)


# -- Bearer tokens (docker-registry auth: token) -------------------------------------------------


async def test_anonymous_token_is_fetched_once_and_cached(origins: Origins, make_client) -> None:
    client = make_client(origins.token_url)
    before = len(origins.issuer.requests)
    for _ in range(3):
        got = await client.get_manifest("test/app", "v1", [MANIFEST_TYPE])
        assert got.body == origins.content.manifest
    _, _, body = await read_blob(client, "test/app", origins.content.layer_digest)
    assert body == origins.content.layer
    assert origins.issuer.requests[before:] == [("repository:test/app:pull", False)]


async def test_concurrent_requests_share_one_token_request(origins: Origins, make_client) -> None:
    client = make_client(origins.token_url)
    before = len(origins.issuer.requests)
    replies = await asyncio.gather(*[client.get_manifest("test/app", "v1", [MANIFEST_TYPE]) for _ in range(8)])
    assert {reply.digest for reply in replies} == {origins.content.manifest_digest}
    assert len(origins.issuer.requests) - before == 1


async def test_token_with_credentials_and_access_token_reply(origins: Origins, make_client) -> None:
    client = make_client(origins.token_url, username=USER, password=PASSWORD)
    got = await client.get_manifest("private/app", "v1", [MANIFEST_TYPE])
    assert got.digest == origins.content.manifest_digest
    assert origins.issuer.requests[-1] == ("repository:private/app:pull", True)


async def test_token_endpoint_refusal_is_unauthorized(origins: Origins, make_client) -> None:
    with pytest.raises(UpstreamUnauthorized):
        await make_client(origins.token_url).get_manifest("private/app", "v1", [MANIFEST_TYPE])
    wrong = make_client(origins.token_url, username=USER, password="nope-nope")
    with pytest.raises(UpstreamUnauthorized) as err:
        await wrong.get_manifest("test/app", "v1", [MANIFEST_TYPE])
    assert "nope-nope" not in str(err.value)


async def test_static_token_from_settings(origins: Origins, make_client) -> None:
    token = origins.issuer.sign("repository:test/app:pull")
    client = make_client(origins.token_url, token=token)
    before = len(origins.issuer.requests)
    assert (await client.get_manifest("test/app", "v1", [MANIFEST_TYPE])).body == origins.content.manifest
    assert len(origins.issuer.requests) == before
    with pytest.raises(UpstreamUnauthorized):  # the token grants test/app only
        await client.get_manifest("private/app", "v1", [MANIFEST_TYPE])


# -- small aiohttp servers for redirects, rate limits, 5xx and stalls ----------------------------


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(routes: web.RouteTableDef, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_redirect_to_another_host_drops_authorization(serve, make_client) -> None:
    seen: dict[str, str | None] = {}
    storage = web.RouteTableDef()

    @storage.get("/bucket/blob")
    async def bucket(request: web.Request) -> web.Response:
        seen["storage"] = request.headers.get("Authorization")
        seen["raw_path"] = request.raw_path
        return web.Response(body=b"blob-bytes")

    storage_url = await serve(storage, host="127.0.0.2")
    origin = web.RouteTableDef()

    @origin.get("/token")
    async def token(request: web.Request) -> web.Response:
        return web.json_response({"token": "tok-123"})

    @origin.get("/v2/test/app/blobs/{digest}")
    async def blob(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        if auth != "Bearer tok-123":
            realm = f"http://{request.host}/token"
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'})
        seen["origin"] = auth
        # a raw header: web.HTTPTemporaryRedirect would normalise the presigned query
        location = f"{storage_url}/bucket/blob?X-Amz-Signature=a%2Fb%3D&x=1"
        return web.Response(status=307, headers={"Location": location})

    client = make_client(await serve(origin))
    status, _, body = await read_blob(client, "test/app", "sha256:" + "a" * 64)
    assert (status, body) == (200, b"blob-bytes")
    assert seen == {
        "origin": "Bearer tok-123",
        "storage": None,
        "raw_path": "/bucket/blob?X-Amz-Signature=a%2Fb%3D&x=1",
    }


async def test_status_codes_map_to_exceptions(serve, make_client) -> None:
    routes = web.RouteTableDef()
    answers = {
        "limited": web.Response(status=429, headers={"Retry-After": "7"}, body=b"slow down"),
        "denied": web.json_response({"errors": [{"code": "DENIED", "message": "no"}]}, status=403),
        "broken": web.json_response({"errors": [{"code": "UNKNOWN", "message": "boom"}]}, status=500),
        "busy": web.Response(status=503),
        "teapot": web.Response(status=418),
    }

    @routes.get("/v2/{name}/manifests/{ref}")
    async def manifest(request: web.Request) -> web.Response:
        return answers[request.match_info["name"]]

    client = make_client(await serve(routes))
    with pytest.raises(UpstreamTooManyRequests) as limited:
        await client.get_manifest("limited", "v1", [])
    assert (limited.value.status, limited.value.retry_after) == (429, 7.0)
    with pytest.raises(UpstreamDenied):
        await client.get_manifest("denied", "v1", [])
    with pytest.raises(UpstreamUnavailable) as broken:
        await client.get_manifest("broken", "v1", [])
    assert (broken.value.status, broken.value.code, broken.value.message) == (500, "UNKNOWN", "boom")
    with pytest.raises(UpstreamUnavailable):
        await client.get_manifest("busy", "v1", [])
    with pytest.raises(UpstreamError) as teapot:
        await client.get_manifest("teapot", "v1", [])
    assert type(teapot.value) is UpstreamError and teapot.value.status == 418


async def test_stall_mid_body_raises_within_read_timeout(serve, make_client) -> None:
    routes = web.RouteTableDef()
    release = asyncio.Event()

    @routes.get("/v2/test/app/blobs/{digest}")
    async def stalling(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(4 * 1024 * 1024)})
        await response.prepare(request)
        await response.write(b"x" * 1024 * 1024)
        await release.wait()  # never sends the rest until the test ends
        return response

    client = make_client(await serve(routes), read_timeout=0.3)
    received = 0
    try:
        with pytest.raises(UpstreamUnavailable) as err:
            async with asyncio.timeout(GUARD):
                async with client.open_blob("test/app", "sha256:" + "b" * 64) as blob:
                    async for chunk in blob.iter_chunks():
                        received += len(chunk)
    finally:
        release.set()  # lets the server's cleanup finish even when the test fails
    assert received == 1024 * 1024 and "timed out" in err.value.message


async def test_chunked_body_over_the_cap_is_refused(serve, make_client) -> None:
    routes = web.RouteTableDef()

    @routes.get("/v2/test/app/manifests/{ref}")
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(64):  # 4 MiB without a Content-Length
            await response.write(b"{" * 64 * 1024)
        return response

    client = make_client(await serve(routes), max_body_bytes=256 * 1024)
    with pytest.raises(UpstreamTooLarge):
        await client.get_manifest("test/app", "v1", [MANIFEST_TYPE])


def test_www_authenticate_parsing() -> None:
    [bearer] = parse_www_authenticate(
        ['Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"']
    )
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }
    first, second = parse_www_authenticate(['BASIC realm="a \\"q\\" b", bearer realm=http://t/x'])
    assert (first.scheme, first.params) == ("basic", {"realm": 'a "q" b'})
    assert (second.scheme, second.params) == ("bearer", {"realm": "http://t/x"})


async def test_redirects_never_lead_to_the_mirror_itself(serve, make_client) -> None:
    """Issue 11, item 14: an origin's 302 to the mirror's own admin listener is not followed."""
    from registry_mirror.upstream import UpstreamError
    from registry_mirror.upstream._redirects import RedirectPolicy

    reached: list[str] = []
    own = web.RouteTableDef()

    @own.get("/admin/status")
    async def admin(request: web.Request) -> web.Response:
        reached.append(request.path)
        return web.json_response({"admin": True})

    own_url = await serve(own)
    own_port = int(own_url.rsplit(":", 1)[1])
    origin = web.RouteTableDef()

    @origin.get("/v2/test/app/manifests/v1")
    async def manifest(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": f"{own_url}/admin/status"})

    client = make_client(await serve(origin), redirects=RedirectPolicy.for_listeners([("127.0.0.1", own_port)]))
    with pytest.raises(UpstreamError) as refused:
        await client.get_manifest("test/app", "v1", [MANIFEST_TYPE])
    assert refused.value.code == "REDIRECT_REFUSED" and reached == []


@pytest.mark.parametrize(
    ("upstream", "target", "allowed"),
    [
        ("http://10.1.2.3", "http://127.0.0.1:8080/x", False),  # a remote origin sending us to loopback
        ("http://10.1.2.3", "http://[::1]:8080/x", False),
        ("http://10.1.2.3", "http://0.0.0.0:8080/x", False),
        ("http://10.1.2.3", "http://169.254.169.254/latest/meta-data", False),
        ("http://127.0.0.1:5101", "http://169.254.169.254/", False),  # metadata: never
        ("http://10.1.2.3", "file:///etc/passwd", False),
        ("http://10.1.2.3", "https://10.9.9.9/bucket/blob", True),
        ("http://127.0.0.1:5101", "http://127.0.0.2:9000/bucket", True),  # a local origin redirects locally
    ],
)
async def test_redirect_policy(upstream: str, target: str, allowed: bool) -> None:
    from yarl import URL

    from registry_mirror.upstream._redirects import RedirectPolicy, RedirectRefused

    policy = RedirectPolicy.for_listeners([("127.0.0.1", 5000), ("127.0.0.1", 5001)])
    if allowed:
        await policy.check(URL(upstream), URL(target))
    else:
        with pytest.raises(RedirectRefused):
            await policy.check(URL(upstream), URL(target))


def test_accept_admits_media_types() -> None:
    from registry_mirror.api._manifest_cache import accepts

    oci = "application/vnd.oci.image.manifest.v1+json"
    assert accepts([], oci) and accepts(["*/*"], oci) and accepts(["application/*"], oci)
    assert accepts([f"{oci}; q=0.5"], oci) and accepts(["APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON"], oci)
    assert not accepts(["application/vnd.docker.distribution.manifest.v2+json"], oci)
