"""huggingface_hub through the mirror, against olah (offline) behind an HF-like front."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.hub.conftest import (
    GOOD_TOKEN,
    WEIGHTS_SIZE,
    HubOrigin,
    cached_blob,
    committed_blob,
    hf_env,
    run_python,
    start_front,
)
from tests.support.mirror import MirrorProcess

SNAPSHOT = """
import sys
from huggingface_hub import snapshot_download
print(snapshot_download(sys.argv[1]))
"""
ONE_FILE = """
import sys
from huggingface_hub import hf_hub_download
print(hf_hub_download(sys.argv[1], sys.argv[2], revision=sys.argv[3]))
"""


def origin_gets(origin: HubOrigin, repo: str, path: str) -> int:
    return sum(
        1
        for line in origin.front_log().splitlines()
        if line.startswith(f"GET /{repo}/resolve/") and line.split(" ")[1].endswith(f"/{path}")
    )


def assert_snapshot(folder: Path, origin: HubOrigin, repo: str) -> None:
    for key, expected in origin.sources.items():
        if key.startswith(repo + "/"):
            assert (folder / key[len(repo) + 1 :]).read_bytes() == expected, key


@pytest.mark.parametrize("xet", [False, True], ids=["plain", "hf_xet"])
def test_snapshot_download_twice_fetches_weights_once(
    hub_origin: HubOrigin, hub_mirror: Callable[..., MirrorProcess], tmp_path: Path, xet: bool
) -> None:
    if xet:
        pytest.importorskip("hf_xet")  # the front advertises Xet: the mirror must hide it
    mirror = hub_mirror(hub_origin.front_url)
    repo = "org/model"
    before = origin_gets(hub_origin, repo, "model.safetensors")
    for round_ in range(2):
        result = run_python(SNAPSHOT, hf_env(mirror, tmp_path / f"home-{round_}", xet=xet), repo, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert_snapshot(Path(result.stdout.strip().splitlines()[-1]), hub_origin, repo)
    assert origin_gets(hub_origin, repo, "model.safetensors") - before == 1
    assert "xet-read-token" not in mirror.log_text()


def test_hf_hub_download_by_branch_and_range(
    hub_origin: HubOrigin, hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    mirror = hub_mirror(hub_origin.front_url)
    result = run_python(
        ONE_FILE, hf_env(mirror, tmp_path / "home", xet=True), "org/model", "model.safetensors", "main", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = hub_origin.sources["org/model/model.safetensors"]
    assert Path(result.stdout.strip().splitlines()[-1]).read_bytes() == expected
    url = f"{mirror.url}/hf/org/model/resolve/main/model.safetensors"
    head = httpx.head(url)
    assert head.headers["x-repo-commit"] == hub_origin.public.commit
    assert head.headers["x-linked-etag"].strip('"') == hashlib.sha256(expected).hexdigest()
    assert "x-xet-hash" not in head.headers
    part = httpx.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == expected[1000:2000]


def test_corrupted_lfs_body_is_never_served_or_cached(
    hub_origin: HubOrigin, hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    mirror = hub_mirror(hub_origin.front_url)
    sha256 = hub_origin.corrupt.lfs["model.safetensors"]
    url = f"{mirror.url}/hf/org/corrupt/resolve/main/model.safetensors"
    for _ in range(2):
        with pytest.raises(httpx.HTTPError):
            response = httpx.get(url, timeout=30)
            response.raise_for_status()  # a 502 is fine too; a complete 200 is not
    assert not cached_blob(mirror, sha256).exists()
    result = run_python(
        ONE_FILE, hf_env(mirror, tmp_path / "home", xet=False), "org/corrupt", "model.safetensors", "main", cwd=tmp_path
    )
    assert result.returncode != 0
    assert not list((tmp_path / "home").rglob("snapshots/*/model.safetensors"))


def test_private_files_only_for_a_token_the_origin_accepts(
    hub_origin: HubOrigin, hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    mirror = hub_mirror(hub_origin.front_url)
    result = run_python(
        SNAPSHOT, hf_env(mirror, tmp_path / "home", xet=False, token=GOOD_TOKEN), "private/model", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_snapshot(Path(result.stdout.strip().splitlines()[-1]), hub_origin, "private/model")
    commit = hub_origin.private.commit
    assert committed_blob(mirror, hub_origin.private.lfs["model.safetensors"]).stat().st_size == WEIGHTS_SIZE
    for path in ("model.safetensors", "config.json"):
        url = f"{mirror.url}/hf/private/model/resolve/{commit}/{path}"
        for headers in ({}, {"Authorization": "Bearer hf_wrong"}):
            response = httpx.get(url, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers.get("x-error-code") == "RepoNotFound"
            assert hub_origin.sources[f"private/model/{path}"] not in response.content
        good = httpx.get(url, headers={"Authorization": f"Bearer {GOOD_TOKEN}"})
        assert good.status_code == 200 and good.content == hub_origin.sources[f"private/model/{path}"]
    denied = run_python(SNAPSHOT, hf_env(mirror, tmp_path / "anon", xet=False), "private/model", cwd=tmp_path)
    assert denied.returncode != 0


def test_revision_served_stale_while_origin_fails(
    hub_origin: HubOrigin, hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    # revision_ttl=0: every request revalidates; the origin is a port nobody answers after the first.
    front, front_url = start_front(tmp_path / "front", hub_origin.olah.url, "x")
    try:
        mirror = hub_mirror(front_url, revision_ttl=0.0)
        url = f"{mirror.url}/hf/api/models/org/model/revision/main"
        fresh = httpx.get(url)
        assert fresh.status_code == 200 and fresh.json()["sha"] == hub_origin.public.commit
        assert httpx.get(f"{mirror.url}/hf/org/model/resolve/main/config.json").status_code == 200
    finally:
        front.stop()
    stale = httpx.get(url)
    assert stale.status_code == 200 and stale.json()["sha"] == hub_origin.public.commit
    cached = httpx.get(f"{mirror.url}/hf/org/model/resolve/main/config.json")
    assert cached.status_code == 200 and cached.content == hub_origin.sources["org/model/config.json"]


def test_large_plain_file_is_relayed_in_full_and_by_range(
    hub_origin: HubOrigin, hub_mirror: Callable[..., MirrorProcess]
) -> None:
    mirror = hub_mirror(hub_origin.front_url)
    expected = hub_origin.sources["org/plainbig/big.bin"]
    url = f"{mirror.url}/hf/org/plainbig/resolve/main/big.bin"
    whole = httpx.get(url, timeout=60)
    assert whole.status_code == 200 and whole.content == expected
    part = httpx.get(url, headers={"Range": "bytes=5-104"}, timeout=60)
    assert part.status_code in (200, 206)
    assert part.content == (expected[5:105] if part.status_code == 206 else expected)


def test_hf_cli_downloads_through_the_mirror(
    hub_origin: HubOrigin, hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    """The `hf` command line (huggingface_hub's own CLI) with HF_ENDPOINT pointing at us."""
    mirror = hub_mirror(hub_origin.front_url)
    out = tmp_path / "out"
    hf = Path(sys.executable).parent / "hf"
    result = subprocess.run(
        [str(hf), "download", "org/model", "--local-dir", str(out)],
        env={**os.environ, **hf_env(mirror, tmp_path / "home", xet=False)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("model.safetensors", "config.json", "tokenizer/vocab.txt"):
        assert (out / name).read_bytes() == hub_origin.sources[f"org/model/{name}"]
