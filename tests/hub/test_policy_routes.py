"""One policy gate for every content route: the distribution API, /hf, /modelscope and any
other path answer the same client token, rate limit and blocklist (issue 11, item 4)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.hub.conftest import DEAD_URL, GOOD_TOKEN, UNUSED_REGISTRY, HubOrigin
from tests.support.mirror import MirrorProcess
from tests.support.net import wait_http

MIRROR_TOKEN = "mirror-client-token-1"
# One path per route; none of them may answer anything but the gate's refusal without a token.
ROUTES = (
    "/v2/test/app/manifests/v1",
    "/hf/api/models/org/model/revision/main",
    "/hf/org/model/resolve/main/config.json",
    "/hf/api/models/org/model/tree/main",
    "/modelscope/api/v1/models/org/model/repo/files?Revision=master",
    "/some/future/route",
)


class GatedMirror(MirrorProcess):
    """Ready once /healthz answers: /v2/ itself wants a token here."""

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        wait_http(f"{self.url}/healthz", timeout=timeout, alive=self.process.alive)


@pytest.fixture
def gated_mirror(tmp_path: Path, hub_origin: HubOrigin) -> Iterator[Callable[[str], GatedMirror]]:
    started: list[GatedMirror] = []

    def start(config_text: str) -> GatedMirror:
        workdir = tmp_path / f"gated-{len(started)}"
        workdir.mkdir()
        config = workdir / "mirror.toml"
        config.write_text("builtin_upstreams = false\n" + config_text)
        mirror = GatedMirror(
            workdir,
            UNUSED_REGISTRY,
            [
                "--config",
                str(config),
                "--default-upstream",
                next(iter(UNUSED_REGISTRY)),
                "--hf-upstream",
                hub_origin.front_url,
                "--modelscope-upstream",
                DEAD_URL,
            ],
        )
        started.append(mirror)
        return mirror.start()

    yield start
    for mirror in started:
        mirror.stop()


def test_client_token_is_required_on_every_route(
    gated_mirror: Callable[[str], GatedMirror], hub_origin: HubOrigin, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(MIRROR_TOKEN + "\n")
    mirror = gated_mirror(f'client_token_file = "{token_file}"\n')
    with mirror.client() as client:
        for route in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Registry-Mirror-Token": "wrong"}):
                response = client.get(route, headers=headers)
                assert response.status_code == 401, (route, headers, response.text[:200])
            assert client.head(route).status_code == 401, route
        assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200

        # With the token the hub serves; the hub token travels in Authorization, the mirror's aside.
        config = hub_origin.sources["private/model/config.json"]
        private = client.get(
            "/hf/private/model/resolve/main/config.json",
            headers={"Authorization": f"Bearer {GOOD_TOKEN}", "X-Registry-Mirror-Token": MIRROR_TOKEN},
        )
        assert private.status_code == 200 and private.content == config
        # The mirror's own token in Authorization admits, and is never forwarded to the origin.
        marker = len(hub_origin.front_log().splitlines())
        public = client.get(
            "/hf/org/model/resolve/main/config.json", headers={"Authorization": f"Bearer {MIRROR_TOKEN}"}
        )
        assert public.status_code == 200 and public.content == hub_origin.sources["org/model/config.json"]
        new_lines = hub_origin.front_log().splitlines()[marker:]
        assert new_lines and all("auth=no" in line for line in new_lines), new_lines
        metrics = client.get("/metrics").text
    assert 'registry_mirror_policy_gate_refusals_total{code="UNAUTHORIZED",route="/hf"}' in metrics
    assert MIRROR_TOKEN not in mirror.log_text()


def test_client_rate_limit_holds_on_hub_routes(gated_mirror: Callable[[str], GatedMirror]) -> None:
    mirror = gated_mirror("[limits]\nclient_rate = 0.2\nclient_burst = 3\n")
    with mirror.client() as client:
        for route in ("/hf/org/model/resolve/main/config.json", "/modelscope/api/v1/models/org/model/repo/files"):
            statuses = [client.get(route).status_code for _ in range(10)]
            assert statuses.count(429) >= 6, (route, statuses)
            # A throttled client cannot make the mirror contact the origin; the next one can.
            other = httpx.Client(base_url=mirror.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
            with other:
                assert other.get(route).status_code != 429


def test_hf_repo_rules_hold_on_every_hub_route(gated_mirror: Callable[[str], GatedMirror]) -> None:
    mirror = gated_mirror('[[blocklist]]\nhf_repo = "private/*"\nreason = "not for this cluster"\n')
    blocked = (
        "/hf/private/model/resolve/main/config.json",
        "/hf/api/models/private/model/revision/main",
        "/hf/api/models/Private/Model/tree/main?recursive=true",
        "/hf/api/models/private/model/paths-info/main",
        "/hf/datasets/private/model/resolve/main/x.json",
        "/modelscope/api/v1/models/private/model/repo?FilePath=config.json",
    )
    with mirror.client() as client:
        for route in blocked:
            response = client.get(route)
            assert response.status_code == 403, (route, response.status_code)
            assert response.headers["x-error-message"] == "not for this cluster"
            assert response.json() == {"error": "not for this cluster"}  # the hub routes' shape, not OCI's
        assert client.post("/hf/api/models/private/model/paths-info/main", data={"paths": "x"}).status_code == 403
        assert client.get("/hf/org/model/resolve/main/config.json").status_code == 200
