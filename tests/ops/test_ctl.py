"""`registry-mirror ctl` as a subprocess against a running mirror, with --json."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.conftest import TestImages
from tests.ops.conftest import OpsMirror, OpsMirrorFactory, pull
from tests.support.mirror import mirror_binary


def ctl(mirror: OpsMirror | None, *args: str, admin: str | None = None) -> tuple[int, Any, str]:
    url = admin or (mirror.admin_url if mirror else "")
    done = subprocess.run(
        [mirror_binary(), "ctl", "--admin", url, "--json", *args], capture_output=True, text=True, timeout=60
    )
    body = json.loads(done.stdout) if done.returncode == 0 else None
    return done.returncode, body, done.stderr


def test_ctl_commands(ops_mirror: OpsMirrorFactory, images: TestImages) -> None:
    mirror = ops_mirror()
    rc, job, err = ctl(mirror, "prefetch", images.app.ref)
    assert rc == 0, err
    assert job["state"] == "done" and job["done_bytes"] == job["total_bytes"] == sum(
        b.size for b in (images.app.config, *images.app.layers)
    )

    rc, listing, _ = ctl(mirror, "cache", "ls")
    cached = {blob["digest"] for blob in listing["blobs"]}
    assert {layer.digest for layer in images.app.layers} <= cached

    layer = images.app.layers[0].digest
    assert ctl(mirror, "cache", "pin", layer)[0] == 0
    rc, info, _ = ctl(mirror, "cache", "inspect", layer)
    assert info["pins"] == ["admin"] and info["size"] == images.app.layers[0].size
    rc, _, err = ctl(mirror, "cache", "evict", layer)
    assert rc == 1 and "pinned" in err
    assert ctl(mirror, "cache", "unpin", layer)[0] == 0
    assert ctl(mirror, "cache", "evict", layer)[0] == 0
    rc, _, err = ctl(mirror, "cache", "inspect", layer)
    assert rc == 1 and "not in the cache" in err

    with mirror.client() as client:
        pull(client, images.app)  # the evicted layer comes back from the origin; the rest from the cache
    rc, status, _ = ctl(mirror, "status")
    traffic = status["traffic"]["blob_bytes_by_source"]
    assert traffic["origin"] == images.app.layers[0].size
    assert status["traffic"]["hit_ratio"] > 0 and status["cache"]["blobs"] >= 4

    rc, rule, _ = ctl(mirror, "blocklist", "add", "--repository", "test/app", "--reason", "incident")
    assert rc == 0
    with mirror.client() as client:
        assert client.get(f"/v2/{images.app.repo}/manifests/v1", params={"ns": images.app.registry}).status_code == 403
    assert [r["id"] for r in ctl(mirror, "blocklist", "ls")[1]["rules"]] == [rule["id"]]
    assert ctl(mirror, "blocklist", "rm", rule["id"])[0] == 0
    assert ctl(mirror, "blocklist", "rm", rule["id"])[0] == 1

    rc, _, err = ctl(mirror, "catalog", "status")
    assert rc == 1 and "no catalog" in err
    rc, job, err = ctl(mirror, "prefetch", f"{images.app.registry}/test/absent:v1")
    assert rc == 1 and "failed" in err


def test_ctl_errors() -> None:
    rc, _, err = ctl(None, "status", admin="http://127.0.0.1:9")
    assert rc == 1 and "cannot reach" in err
    rc, _, err = ctl(None, "status", admin="ftp://x")
    assert rc == 2
    done = subprocess.run([mirror_binary(), "ctl", "cache", "frobnicate"], capture_output=True, text=True)
    assert done.returncode == 2
