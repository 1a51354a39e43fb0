from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from p2p.tracker_client import TrackerClient
from tests.p2p.harness import TOKEN, Running, redis_server, tracker
from tests.support.procs import starts_processes

_counter = itertools.count()


def new_digest() -> str:
    """A digest no other test uses, so tests can share one tracker process."""
    return "sha256:" + hashlib.sha256(f"p2p-test-{next(_counter)}".encode()).hexdigest()


@pytest.fixture(scope="module")
@starts_processes
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as running:
        yield running.url


@pytest.fixture(scope="module", params=["memory", "redis"])
@starts_processes
def tracker_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One tracker per store kind, shared by a module's tests (each test uses its own digests)."""
    workdir = tmp_path_factory.mktemp(f"tracker-{request.param}")
    store = request.getfixturevalue("redis_url") if request.param == "redis" else None
    extra = ["--max-lease-ttl", "60", "--exclusion-ttl", "60"]
    with tracker(workdir, store=store, extra=extra) as running:
        yield running.url


@pytest.fixture(scope="module")
@starts_processes
def memory_tracker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """For tests whose subject does not depend on the store (validation, auth)."""
    with tracker(tmp_path_factory.mktemp("tracker-memory")) as running:
        yield running.url


@pytest.fixture
async def client(tracker_url: str) -> AsyncIterator[TrackerClient]:
    async with TrackerClient(tracker_url, TOKEN) as c:
        yield c


__all__ = ["Running", "new_digest"]
