"""Suite-wide fixtures that start REAL servers and clients as local processes.

- `origin` (session): docker-registry on a loopback port; `origin_factory` for extra ones.
- `images` (session): the standard test images pushed once onto `origin`.
- `containerd` (function): a private containerd daemon with CRI.
- `mirror_process` (function): factory for `registry-mirror serve` processes.
Every process is stopped at teardown; a missing binary fails with the package to install.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.containerd import ContainerdDaemon
from tests.support.images import (
    PushedImage,
    PushedIndex,
    push_artifact,
    push_multiarch_index,
    push_multilayer_image,
    push_schema2_image,
    write_random_file,
)
from tests.support.mirror import MirrorProcess
from tests.support.origin import OriginRegistry
from tests.support.procs import allow_processes, starts_processes

# The standard images: sizes are payload bytes per layer (layers are gzip, so a bit larger).
APP_LAYERS = (1 << 20, 256 << 10, 3 << 20)
ARTIFACT_FILE_SIZE = 2 << 20


@dataclass(frozen=True)
class TestImages:
    app: PushedImage  # OCI, 3 layers, test/app:v1
    docker: PushedImage  # Docker schema2, 2 layers, test/docker:v1
    multi: PushedIndex  # OCI index over linux/amd64 and linux/arm64, test/multi:v1
    artifact: PushedImage  # image manifest with artifactType, test/artifact:v1
    artifact_files: Mapping[str, Path]  # the original files, to compare an oras pull against

    __test__ = False  # not a test class despite the name


def _starts_processes(fixturedef: pytest.FixtureDef[object]) -> bool:
    return bool(getattr(inspect.unwrap(fixturedef.func), "starts_processes", False))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `integration` every test whose fixtures (with their own, transitively) start a process."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        # names_closure: every fixture the test needs, with theirs; the last definition is the one used.
        if any(
            _starts_processes(info.name2fixturedefs[name][-1])
            for name in info.names_closure
            if info.name2fixturedefs.get(name)
        ):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    allow_processes(item.get_closest_marker("integration") is not None)


@pytest.fixture(scope="session")
@starts_processes
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginRegistry]:
    registry = OriginRegistry(tmp_path_factory.mktemp("origin")).start()
    yield registry
    registry.stop()


@pytest.fixture
@starts_processes
def origin_factory(tmp_path: Path) -> Iterator[Callable[..., OriginRegistry]]:
    """Start extra, empty origins (stopped at the end of the test)."""
    started: list[OriginRegistry] = []

    def make(bind_host: str = "127.0.0.1") -> OriginRegistry:
        registry = OriginRegistry(tmp_path / f"origin-{len(started)}", bind_host).start()
        started.append(registry)
        return registry

    yield make
    for registry in started:
        registry.stop()


def push_standard_images(origin: OriginRegistry, workdir: Path) -> TestImages:
    files = {
        "model.bin": write_random_file(workdir / "artifact" / "model.bin", ARTIFACT_FILE_SIZE, "artifact"),
        "README.txt": write_random_file(workdir / "artifact" / "README.txt", 1000, "readme"),
    }
    return TestImages(
        app=push_multilayer_image(origin, "test/app", "v1", APP_LAYERS, seed="app", workdir=workdir),
        docker=push_schema2_image(origin, "test/docker", "v1", (512 << 10, 128 << 10), seed="docker", workdir=workdir),
        multi=push_multiarch_index(origin, "test/multi", "v1", (256 << 10,), seed="multi", workdir=workdir),
        artifact=push_artifact(origin, "test/artifact", "v1", dict(files)),
        artifact_files=files,
    )


@pytest.fixture(scope="session")
def images(origin: OriginRegistry, tmp_path_factory: pytest.TempPathFactory) -> TestImages:
    return push_standard_images(origin, tmp_path_factory.mktemp("images"))


@pytest.fixture
@starts_processes
def containerd(tmp_path: Path) -> Iterator[ContainerdDaemon]:
    daemon = ContainerdDaemon(tmp_path / "containerd").start()
    yield daemon
    daemon.stop()


MirrorFactory = Callable[..., MirrorProcess]


@pytest.fixture
@starts_processes
def mirror_process(tmp_path: Path) -> Iterator[MirrorFactory]:
    """Factory: mirror_process({name: url}, extra_args=[...], host=..., port=..., cache_dir=...,
    command=[...] to run another launcher, such as tests/support/corrupting_peer.py).

    Returns a started MirrorProcess (GET /v2/ answered 200). All are stopped at teardown;
    a test that fails shows each mirror's log tail.
    """
    started: list[MirrorProcess] = []

    def start(
        upstreams: Mapping[str, str],
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        cache_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> MirrorProcess:
        mirror = MirrorProcess(
            tmp_path / f"mirror-{len(started)}", upstreams, extra_args, host, port, cache_dir, env, command
        )
        started.append(mirror)
        return mirror.start()

    yield start
    for mirror in started:
        mirror.stop()
