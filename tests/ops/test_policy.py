"""Blocklist, client token and rate limits against a real mirror process and origin."""

from __future__ import annotations

import time

import httpx

from tests.conftest import TestImages
from tests.ops.conftest import OpsMirrorFactory, pull

BLOCK_DOCKER = '[[blocklist]]\nrepository = "test/docker"\nreason = "CVE-2024-0001: do not run"\n'


def _wait_for(predicate, attempts: int = 100) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(attempts):
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_blocklist_file_rule_hot_reload_and_admin_api(ops_mirror: OpsMirrorFactory, images: TestImages) -> None:
    mirror = ops_mirror(BLOCK_DOCKER)
    with mirror.client() as client, httpx.Client(base_url=mirror.admin_url) as admin:
        blocked = client.get(f"/v2/{images.docker.repo}/manifests/v1", params={"ns": images.docker.registry})
        assert blocked.status_code == 403
        error = blocked.json()["errors"][0]
        assert error["code"] == "DENIED" and error["message"] == "CVE-2024-0001: do not run"
        blob = client.get(
            f"/v2/{images.docker.repo}/blobs/{images.docker.layers[0].digest}", params={"ns": images.docker.registry}
        )
        assert blob.status_code == 403
        assert pull(client, images.app) > 0  # unrelated pulls unaffected

        # Hot reload: the file now blocks test/app:v1 instead.
        mirror.config_file.write_text(
            mirror.config_file.read_text().replace(
                BLOCK_DOCKER, '[[blocklist]]\nrepository = "test/app"\ntag = "v1"\nreason = "bad tag"\n'
            )
        )

        def app_manifest() -> int:
            return client.get(f"/v2/{images.app.repo}/manifests/v1", params={"ns": images.app.registry}).status_code

        assert _wait_for(lambda: app_manifest() == 403)
        assert pull(client, images.docker) > 0
        # A broken file keeps the rules in force.
        mirror.config_file.write_text(mirror.config_file.read_text() + "\n[[blocklist]]\nnonsense = 1\n")
        assert _wait_for(lambda: "cannot reload" in mirror.log_text())
        assert app_manifest() == 403 and "cannot reload" in mirror.log_text()

        # Admin API: add blocks now, rm unblocks; a file rule cannot be removed there.
        rule = admin.post("/admin/blocklist", json={"digest": images.multi.manifest.digest, "reason": "incident 7"})
        assert rule.status_code == 201
        by_digest = client.get(
            f"/v2/{images.multi.repo}/manifests/{images.multi.manifest.digest}", params={"ns": images.multi.registry}
        )
        assert by_digest.status_code == 403 and by_digest.json()["errors"][0]["message"] == "incident 7"
        # An emergency block must survive a restart (mend the file broken above first).
        mirror.config_file.write_text(mirror.config_file.read_text().replace("\n[[blocklist]]\nnonsense = 1\n", ""))
        mirror.restart()
        assert rule.json()["id"] in {r["id"] for r in admin.get("/admin/blocklist").json()["rules"]}
        assert (
            client.get(
                f"/v2/{images.multi.repo}/manifests/{images.multi.manifest.digest}",
                params={"ns": images.multi.registry},
            ).status_code
            == 403
        )
        listed = admin.get("/admin/blocklist").json()["rules"]
        assert {r["origin"] for r in listed} == {"file", "admin"}
        file_rule = next(r for r in listed if r["origin"] == "file")
        assert admin.delete(f"/admin/blocklist/{file_rule['id']}").status_code == 409
        assert admin.delete(f"/admin/blocklist/{rule.json()['id']}").status_code == 200
        assert (
            client.get(
                f"/v2/{images.multi.repo}/manifests/{images.multi.manifest.digest}",
                params={"ns": images.multi.registry},
                headers={"Accept": images.multi.manifest.media_type},
            ).status_code
            == 200
        )
        assert admin.post("/admin/blocklist", json={"reason": "matches nothing"}).status_code == 400
        metrics = client.get("/metrics").text
        assert "registry_mirror_blocked_requests_total{" in metrics


def test_client_token(ops_mirror: OpsMirrorFactory, images: TestImages, tmp_path) -> None:  # type: ignore[no-untyped-def]
    token_file = tmp_path / "client-token"
    token_file.write_text("s3cret-token\n")
    mirror = ops_mirror(f'client_token_file = "{token_file}"\n')
    with mirror.client() as client:
        assert client.get("/v2/").status_code == 401
        wrong = client.get("/v2/", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert client.get("/v2/", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert pull(client, images.app, Authorization="Bearer s3cret-token") > 0
    assert "s3cret-token" not in mirror.log_text()


def test_client_rate_limit_holds(ops_mirror: OpsMirrorFactory) -> None:
    rate, burst = 0.5, 3
    mirror = ops_mirror(f"[limits]\nclient_rate = {rate}\nclient_burst = {burst}\n")
    statuses, retry_after = [], []
    with mirror.client() as client:
        started = time.monotonic()
        for _ in range(20):
            response = client.get("/v2/")
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
                retry_after.append(int(response.headers["Retry-After"]))
        elapsed = time.monotonic() - started
        # Another client address has its own bucket.
        other = httpx.Client(base_url=mirror.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with other:
            assert other.get("/v2/").status_code == 200
    accepted = statuses.count(200)
    assert accepted <= burst + rate * elapsed + 1
    assert accepted >= burst and statuses.count(429) == 20 - accepted
    assert retry_after and all(seconds >= 1 for seconds in retry_after)


def test_upstream_bandwidth_and_concurrency_caps(ops_mirror: OpsMirrorFactory, images: TestImages) -> None:
    bandwidth = 1 << 20
    mirror = ops_mirror(f"[limits]\nupstream_bandwidth = {bandwidth}\nupstream_concurrency = 1\n")
    layers = images.app.layers
    total = sum(layer.size for layer in layers)
    import concurrent.futures

    def fetch(digest: str) -> int:
        with mirror.client() as client:
            response = client.get(f"/v2/{images.app.repo}/blobs/{digest}", params={"ns": images.app.registry})
            response.raise_for_status()
            return len(response.content)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(layers)) as pool:
        sizes = list(pool.map(fetch, [layer.digest for layer in layers]))
    elapsed = time.monotonic() - started
    assert sizes == [layer.size for layer in layers]
    # The bucket starts with one burst (1 MiB here); everything after it flows at the cap.
    assert elapsed >= (total - bandwidth) / bandwidth * 0.95
    status = httpx.get(f"{mirror.admin_url}/admin/status").json()
    assert status["upstream_limits"]["peak_in_flight"] == {images.app.registry: 1}


def test_blocklist_matches_normalised_names(ops_mirror: OpsMirrorFactory, origin) -> None:  # type: ignore[no-untyped-def]
    """`alpine` and `library/alpine` are one repository on an upstream with library_prefix: a rule
    written with either name holds for a request with either name (issue 11, item 5)."""
    mirror = ops_mirror(
        f'[upstreams."{origin.host}"]\nurl = "{origin.url}"\nlibrary_prefix = true\n'
        '[[blocklist]]\nrepository = "library/alpine"\nreason = "long name"\n'
        '[[blocklist]]\nrepository = "busybox"\nreason = "short name"\n'
    )
    with mirror.client() as client:
        for repo, reason in (
            ("alpine", "long name"),
            ("library/alpine", "long name"),
            ("busybox", "short name"),
            ("library/busybox", "short name"),
        ):
            for kind, ref in (("manifests", "latest"), ("blobs", "sha256:" + "a" * 64)):
                response = client.get(f"/v2/{repo}/{kind}/{ref}", params={"ns": origin.host})
                assert response.status_code == 403, (repo, kind, response.text[:200])
                assert response.json()["errors"][0]["message"] == reason
            # Without ?ns= the default upstream applies, with the same normalisation.
            assert client.get(f"/v2/{repo}/manifests/latest").status_code == 403
        # A two-component name elsewhere is not the short name.
        assert client.get("/v2/team/busybox/manifests/latest", params={"ns": origin.host}).status_code == 404
