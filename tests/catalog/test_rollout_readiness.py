"""Rollout readiness across a cluster: four mirrors on their own loopback addresses (two zones),
one tracker process, a signed catalog on a real docker-registry. `registry-mirror catalog wait`
fails by timeout while two of four hold the whole catalog and passes once three do."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from registry_mirror.cli._catalog import main as catalog_cli
from tests.catalog.test_mirror_e2e import metric, wait_until
from tests.p2p.harness import TOKEN, tracker
from tests.support.images import OCI_MANIFEST, push_blob, push_manifest, write_random_file
from tests.support.mirror import MirrorProcess, mirror_binary
from tests.support.net import free_port
from tests.support.origin import OriginRegistry

pytestmark = pytest.mark.integration

REPO, CATALOG = "team/rollout", "ci/catalogs"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def push_image(origin: OriginRegistry, work: Path) -> None:
    layers = [write_random_file(work / f"layer{i}", size, f"rollout-{i}") for i, size in enumerate((300_000, 700_000))]
    descs = [{"mediaType": LAYER_TAR, "digest": push_blob(origin, REPO, p), "size": p.stat().st_size} for p in layers]
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "layers": descs,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": push_blob(origin, REPO, config),
            "size": len(config),
        },
    }
    push_manifest(origin, REPO, "v1", json.dumps(manifest).encode(), OCI_MANIFEST)


def ci(*argv: str) -> None:
    assert catalog_cli(["catalog", *argv]) == 0, argv


def wait_gate(tracker_url: str, token_file: Path, ready: str, timeout: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            mirror_binary(),
            "catalog",
            "wait",
            "--tracker",
            tracker_url,
            "--token-file",
            str(token_file),
            "--name",
            "prod",
            "--ready",
            ready,
            "--timeout",
            timeout,
            "--interval",
            "0.3s",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_catalog_wait_passes_at_three_of_four_and_times_out_at_two(
    origin_factory: Callable[..., OriginRegistry], mirror_process: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    origin = origin_factory()
    push_image(origin, tmp_path)
    ci("keygen", "--private", str(tmp_path / "key.pem"), "--public", str(tmp_path / "key.pub"))
    ci(
        "build",
        "--image",
        f"{origin.host}/{REPO}:v1",
        "--name",
        "prod",
        "--serial",
        "1",
        "--expires-in",
        "1d",
        "--out",
        str(tmp_path / "c.json"),
        "--insecure",
    )
    ci("sign", "--key", str(tmp_path / "key.pem"), "--out", str(tmp_path / "signed.json"), str(tmp_path / "c.json"))
    ci("push", str(tmp_path / "signed.json"), f"{origin.host}/{CATALOG}:prod", "--insecure")
    blobs = len(json.loads((tmp_path / "c.json").read_text())["blobs"])
    token_file = tmp_path / "tracker-token"
    token_file.write_text(TOKEN + "\n")
    follow = [
        "--catalog",
        f"{origin.host}/{CATALOG}:prod",
        "--trusted-key",
        str(tmp_path / "key.pub"),
        "--catalog-insecure",
        "--catalog-poll-interval",
        "0.5",
    ]

    (tmp_path / "tracker").mkdir()
    with tracker(tmp_path / "tracker") as running:
        mirrors = []
        for i in range(4):
            host = f"127.0.0.{31 + i}"
            args = [
                "--peer-listen",
                f"{host}:{free_port(host)}",
                "--tracker",
                running.url,
                "--tracker-token-file",
                str(token_file),
                "--zone",
                "a" if i < 2 else "b",
                *(follow if i < 2 else []),
            ]
            mirrors.append(mirror_process({origin.host: origin.url}, extra_args=args, host=host))
        for mirror in mirrors[:2]:
            wait_until(
                lambda m=mirror: (
                    metric(m, "catalog_prefetch_blobs_total", catalog="prod", result="fetched")
                    + metric(m, "catalog_prefetch_blobs_total", catalog="prod", result="cached")
                    >= blobs
                ),
                "the prefetch of the catalog",
                mirror,
            )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        wait_until(
            lambda: httpx.get(f"{running.url}/v1/stats", headers=headers).json()["peers"] == 4,
            "four live peers on the tracker",
            mirrors[0],
        )

        # Two of four hold it: the gate fails by timeout and says where it stands.
        failed = wait_gate(running.url, token_file, "75%", "3s")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "2/4 live peers hold all" in failed.stdout and "zones: a 2/2, b 0/2" in failed.stdout
        assert failed.stderr.count("\n") == 1 and "not ready after 3s (wanted 75%)" in failed.stderr

        # A third node follows the catalog and prefetches it: the gate passes.
        mirrors[2].extra_args += follow
        mirrors[2].restart()
        passed = wait_gate(running.url, token_file, "75%", "60s")
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert passed.stdout.splitlines()[-1].startswith("ready: prod serial 1: 3/4 live peers hold all")

        # The same view in the node's `ctl catalog status` and as the tracker's metric.
        status = httpx.get(f"http://{mirrors[0].bind_host}:{mirrors[0].admin_port}/admin/catalog").json()
        cluster = status["catalogs"][0]["cluster"]
        assert (cluster["serial"], cluster["ready"], cluster["live"]) == (1, 3, 4)
        assert cluster["zones"]["b"] == {"live": 2, "ready": 1, "share": 0.5}
        tracker_metrics = httpx.get(f"{running.url}/metrics").text
        assert 'registry_mirror_tracker_catalog_ready_share{catalog="prod",serial="1"} 0.75' in tracker_metrics
