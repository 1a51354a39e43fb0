"""Debian's docker-registry (CNCF distribution 2.8) as a real origin, and its access log.

The access log (one combined-format line per finished request on stderr) is the proof of
what reached the origin; tests count blob GETs there rather than trusting the mirror.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from .net import free_port, wait_http
from .procs import ManagedProcess, require_binary

# 127.0.0.1 - - [23/Nov/2026:04:58:39 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "myagent/1"
_ACCESS_LINE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<uri>\S+) [^"]*" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-) "[^"]*" "(?P<ua>[^"]*)"$'
)
_BLOB_PATH = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")
_MANIFEST_PATH = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
_SENTINEL_UA = "registry-mirror-tests-sentinel"
_sentinel_ids = itertools.count()


@dataclass(frozen=True)
class AccessEntry:
    method: str
    uri: str  # path plus query string, as sent
    status: int
    bytes: int  # bytes written; docker-registry reports the error body size even for HEAD
    user_agent: str

    @property
    def path(self) -> str:
        return self.uri.split("?", 1)[0]

    @property
    def blob_digest(self) -> str | None:
        match = _BLOB_PATH.match(self.path)
        return match.group("digest") if match else None

    @property
    def manifest_ref(self) -> str | None:
        match = _MANIFEST_PATH.match(self.path)
        return match.group("ref") if match else None


def parse_access_log(text: str) -> list[AccessEntry]:
    entries = []
    for line in text.splitlines():
        match = _ACCESS_LINE.match(line)
        if match is None:
            continue
        entries.append(
            AccessEntry(
                method=match["method"],
                uri=match["uri"],
                status=int(match["status"]),
                bytes=0 if match["bytes"] == "-" else int(match["bytes"]),
                user_agent=match["ua"],
            )
        )
    return entries


def _config_yaml(addr: str, storage_dir: Path, proxy_remote: str | None) -> str:
    # JSON-style flow values are valid YAML and need no quoting rules of our own.
    lines = [
        "version: 0.1",
        "log: {level: info, accesslog: {disabled: false}}",
        f'storage: {{filesystem: {{rootdirectory: "{storage_dir}"}}, delete: {{enabled: true}}}}',
        f'http: {{addr: "{addr}", secret: "registry-mirror-tests"}}',
    ]
    if proxy_remote is not None:
        lines.append(f'proxy: {{remoteurl: "{proxy_remote}"}}')
    return "\n".join(lines) + "\n"


class OriginRegistry:
    """`docker-registry serve` on a free loopback port with filesystem storage under `workdir`."""

    def __init__(self, workdir: Path, bind_host: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.bind_host = bind_host
        self.port = 0
        self.process: ManagedProcess | None = None

    # -- lifecycle -------------------------------------------------------------------
    def _proxy_remote(self) -> str | None:
        return None

    def start(self, attempts: int = 3) -> OriginRegistry:
        binary = require_binary("docker-registry")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            self.port = free_port(self.bind_host)
            config = self.workdir / "config.yml"
            config.write_text(_config_yaml(self.host, self.workdir / "storage", self._proxy_remote()))
            self.process = ManagedProcess(
                [binary, "serve", str(config)], self.workdir / f"registry-{attempt}.log"
            ).start()
            try:
                wait_http(
                    f"{self.url}/v2/",
                    timeout=20,
                    alive=self.process.alive,
                    headers={"User-Agent": f"{_SENTINEL_UA}/startup"},
                )
                return self
            except (RuntimeError, TimeoutError) as exc:
                log = self.process.log_tail()
                self.process.stop()
                # Another engineer's process may have taken the port between probe and bind.
                if "address already in use" not in log or attempt == attempts - 1:
                    raise RuntimeError(f"docker-registry did not start:\n{log}") from exc
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> OriginRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------
    @property
    def host(self) -> str:
        """host:port as used in image references, e.g. 127.0.0.1:5000."""
        return f"{self.bind_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # -- access log --------------------------------------------------------------------
    def _require_process(self) -> ManagedProcess:
        if self.process is None:
            raise RuntimeError("registry not started")
        return self.process

    def access_log(self, settle: bool = True) -> list[AccessEntry]:
        """Every request answered so far (sentinel probes left out).

        With `settle`, first wait until a fresh probe request shows up in the log, so lines
        for responses the test already received are flushed too.
        """
        if settle:
            self.settle()
        return [
            e for e in parse_access_log(self._require_process().log_text()) if not e.user_agent.startswith(_SENTINEL_UA)
        ]

    def clear_log_marker(self) -> int:
        """A marker for 'now'; pass it to entries_since() to see only later requests."""
        self.settle()
        return self._require_process().log_path.stat().st_size

    def entries_since(self, marker: int, settle: bool = True) -> list[AccessEntry]:
        if settle:
            self.settle()
        return [e for e in self._raw_entries(marker) if not e.user_agent.startswith(_SENTINEL_UA)]

    def _raw_entries(self, marker: int) -> list[AccessEntry]:
        with open(self._require_process().log_path, "rb") as log:
            log.seek(marker)
            return parse_access_log(log.read().decode(errors="replace"))

    def blob_requests(self, digest: str | None = None, since: int = 0) -> list[AccessEntry]:
        """GET/HEAD requests on /v2/<repo>/blobs/<digest> (uploads excluded)."""
        return [
            e
            for e in self.entries_since(since)
            if e.method in ("GET", "HEAD") and e.blob_digest is not None and (digest is None or e.blob_digest == digest)
        ]

    def blob_gets(self, digest: str | None = None, since: int = 0) -> list[AccessEntry]:
        return [e for e in self.blob_requests(digest, since) if e.method == "GET"]

    def manifest_requests(self, since: int = 0) -> list[AccessEntry]:
        return [e for e in self.entries_since(since) if e.method in ("GET", "HEAD") and e.manifest_ref is not None]

    def settle(self, timeout: float = 10.0) -> None:
        """Send a uniquely tagged probe and wait for its log line."""
        agent = f"{_SENTINEL_UA}/{next(_sentinel_ids)}"
        httpx.get(f"{self.url}/v2/", headers={"User-Agent": agent}, timeout=5)
        deadline = time.monotonic() + timeout
        while not any(e.user_agent == agent for e in self._raw_entries(0)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"probe request never appeared in {self._require_process().log_path}")
            time.sleep(0.02)

    def wait_for(
        self,
        predicate: Callable[[list[AccessEntry]], bool],
        since: int = 0,
        timeout: float = 10.0,
    ) -> list[AccessEntry]:
        """Poll until `predicate(entries since marker)` holds; return those entries."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.entries_since(since, settle=False)
            if predicate(entries):
                return entries
            if time.monotonic() > deadline:
                raise TimeoutError(f"access log condition not met after {timeout}s")
            time.sleep(0.02)


class ProxyRegistry(OriginRegistry):
    """docker-registry in pull-through proxy mode in front of `remote_url` (benchmark anchor)."""

    def __init__(self, workdir: Path, remote_url: str, bind_host: str = "127.0.0.1") -> None:
        super().__init__(workdir, bind_host)
        self.remote_url = remote_url

    def _proxy_remote(self) -> str | None:
        return self.remote_url
