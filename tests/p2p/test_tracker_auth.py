"""The bearer token guards every /v1 route; /healthz stays open for probes."""

from __future__ import annotations

import httpx
import pytest

from p2p.errors import TrackerError
from p2p.tracker_client import TrackerClient
from tests.p2p.conftest import new_digest
from tests.p2p.harness import TOKEN


@pytest.fixture(scope="module")
def tracker_url(memory_tracker_url: str) -> str:
    return memory_tracker_url  # store-independent checks: one tracker is enough


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ],
)
async def test_missing_or_wrong_token_is_401(tracker_url: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=tracker_url, headers=headers) as http:
        for method, path in [("GET", "/v1/stats"), ("POST", "/v1/announce"), ("GET", f"/v1/peers/{new_digest()}")]:
            response = await http.request(method, path)
            assert response.status_code == 401
            assert response.json()["field"] == "authorization"
        assert (await http.get("/healthz")).status_code == 200


async def test_client_with_wrong_token_raises_tracker_error(tracker_url: str) -> None:
    async with TrackerClient(tracker_url, "not-the-token") as client:
        with pytest.raises(TrackerError) as refused:
            await client.stats()
    assert refused.value.status == 401


async def test_unreachable_tracker_raises_tracker_error() -> None:
    async with TrackerClient("http://127.0.0.1:1", TOKEN) as client:
        with pytest.raises(TrackerError) as unreachable:
            await client.peers(new_digest())
    assert unreachable.value.status is None


def test_cli_refuses_to_serve_without_any_authentication() -> None:
    from registry_mirror.cli._tracker import main

    with pytest.raises(SystemExit) as refused:
        main(["tracker", "--listen", "127.0.0.1:1"])
    assert "--token-file" in str(refused.value.code)
