"""Helpers shared by the end-to-end tests (test_e2e_*.py); holds no tests itself.

Every mirror here runs with `builtin_upstreams = false`: the built-in upstreams point at the
internet, and a test must never send traffic beyond 127.0.0.0/8.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.support.mirror import MirrorProcess
from tests.support.net import wait_http
from tests.support.origin import OriginRegistry

MIRROR_USER_AGENT = "registry-mirror/"


def mirror_config(path: Path, origins: Sequence[OriginRegistry], extra: str = "") -> Path:
    """A TOML config naming each origin as its own upstream (`127.0.0.1:PORT`, what containerd sends
    in `?ns=`), the first as the default; nothing else is configured."""
    lines = ["builtin_upstreams = false", f'default_upstream = "{origins[0].host}"', extra, ""]
    for origin in origins:
        lines += [
            f'[upstreams."{origin.host}"]',
            f'url = "{origin.url}"',
            "connect_timeout = 2",
            "read_timeout = 5",
            "",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def start_mirror(
    factory: Callable[..., MirrorProcess],
    origins: OriginRegistry | Sequence[OriginRegistry],
    workdir: Path,
    *,
    extra_toml: str = "",
    extra_args: Sequence[str] = (),
    cache_dir: Path | None = None,
) -> MirrorProcess:
    origins = [origins] if isinstance(origins, OriginRegistry) else list(origins)
    config = mirror_config(workdir / f"mirror-{len(list(workdir.glob('mirror-*.toml')))}.toml", origins, extra_toml)
    return factory({}, extra_args=["--config", str(config), *extra_args], cache_dir=cache_dir)


class PrefixedMirror(MirrorProcess):
    """A mirror under `--path-prefix`: the factory's readiness probe (`GET /v2/`) cannot see it."""

    def __init__(self, workdir: Path, prefix: str, extra_args: Sequence[str]) -> None:
        super().__init__(workdir, {}, ["--path-prefix", prefix, *extra_args])
        self.prefix = prefix

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        response = wait_http(f"{self.url}{self.prefix}/v2/", timeout=timeout, alive=self.process.alive)
        if response.status_code != 200:
            raise RuntimeError(f"GET {self.prefix}/v2/ answered {response.status_code}: {response.text[:300]}")


@pytest.fixture
def prefixed_mirror(tmp_path: Path) -> Iterator[Callable[..., PrefixedMirror]]:
    """Factory: prefixed_mirror(origin, prefix) -> a started PrefixedMirror, stopped at teardown."""
    started: list[PrefixedMirror] = []

    def start(origin: OriginRegistry, prefix: str) -> PrefixedMirror:
        config = mirror_config(tmp_path / f"prefixed-{len(started)}.toml", [origin])
        mirror = PrefixedMirror(tmp_path / f"prefixed-{len(started)}", prefix, ["--config", str(config)])
        started.append(mirror)
        return mirror.start()

    yield start
    for mirror in started:
        mirror.stop()


def assert_no_server_errors(mirror: MirrorProcess) -> None:
    """No request answered 500 and no traceback logged: every failure became a deliberate OCI error."""
    log = mirror.log_text()
    assert "Traceback" not in log and '"status":500' not in log, mirror.process.log_tail(60) if mirror.process else log


def ns(origin: OriginRegistry) -> dict[str, str]:
    return {"ns": origin.host}


def sha256_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def streamed_digest(response: httpx.Response) -> tuple[str, int]:
    """(digest, length) of a streamed body, read in 1 MiB chunks."""
    sha = hashlib.sha256()
    total = 0
    for chunk in response.iter_bytes(1 << 20):
        sha.update(chunk)
        total += len(chunk)
    return f"sha256:{sha.hexdigest()}", total


def cached_blob_path(cache_dir: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":")
    return cache_dir / "blobs" / algorithm / hexdigest[:2] / hexdigest


def wait_cached(cache_dir: Path, digest: str, timeout: float = 20.0) -> Path:
    """The cached file of `digest`; the fill commits (renames) just after the last byte was sent."""
    path = cached_blob_path(cache_dir, digest)
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert time.monotonic() < deadline, f"{digest} never committed to {cache_dir}"
        time.sleep(0.02)
    return path


def origin_blob_data(origin: OriginRegistry, digest: str) -> Path:
    """The file docker-registry's filesystem driver keeps a blob's bytes in."""
    algorithm, hexdigest = digest.split(":")
    return (
        origin.workdir
        / "storage"
        / "docker"
        / "registry"
        / "v2"
        / "blobs"
        / algorithm
        / hexdigest[:2]
        / hexdigest
        / "data"
    )


def metric_total(metrics_text: str, name: str) -> float:
    """Sum of every sample of `name` (any labels) in a Prometheus text exposition."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
