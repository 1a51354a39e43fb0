"""`Range: bytes=N-` on a blob whose size is not known yet (an origin that streams it chunked,
without Content-Length, ignoring Range) gets a valid answer: the whole blob as a 200, never a 206
with `Content-Range: bytes N-*/*`, which RFC 9110 14.4 does not allow (incl-range = first-pos "-"
last-pos) and a strict client rejects."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory
from tests.registry_mirror.test_e2e_support import start_mirror

pytestmark = pytest.mark.integration

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")  # RFC 9110 range-resp


@dataclass
class _Origin:
    host: str
    url: str


def _chunked_origin(blob: bytes) -> tuple[http.server.ThreadingHTTPServer, _Origin]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(200 if "/blobs/" in self.path or self.path.startswith("/v2/") else 404)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header(
                "Content-Type", "application/octet-stream" if "/blobs/" in self.path else "application/json"
            )
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            body = blob if "/blobs/" in self.path else b"{}"
            for i in range(0, len(body), 65536):
                part = body[i : i + 65536]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    return server, _Origin(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")


def test_open_range_of_a_blob_of_unknown_size_has_a_valid_content_range(
    mirror_process: MirrorFactory, tmp_path: Path
) -> None:
    blob = bytes(range(256)) * 4096  # 1 MiB
    digest = f"sha256:{hashlib.sha256(blob).hexdigest()}"
    server, origin = _chunked_origin(blob)
    try:
        mirror = start_mirror(mirror_process, [origin], tmp_path)  # type: ignore[list-item]
        url = f"{mirror.url}/v2/test/chunked/blobs/{digest}"
        response = httpx.get(url, params={"ns": origin.host}, headers={"Range": "bytes=100-"}, timeout=30)
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
            assert match is not None, f"invalid Content-Range {response.headers.get('content-range')!r}"
            assert response.content == blob[int(match.group(1)) : int(match.group(2)) + 1]
        else:
            assert response.status_code == 200 and response.content == blob  # the whole blob: allowed
    finally:
        server.shutdown()
