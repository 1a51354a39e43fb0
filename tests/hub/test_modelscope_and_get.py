"""The real `modelscope` client and `registry-mirror get` through the mirror.

No public ModelScope-compatible server runs offline, so the ModelScope origin is tests/hub/ms_origin.py,
a small server answering the API's documented shapes (listing with Sha256, file download)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

from tests.hub.conftest import HubOrigin, committed_blob, get, run_python
from tests.support.mirror import MirrorProcess
from tests.support.procs import ManagedProcess

MS_SNAPSHOT = """
import sys
from modelscope import snapshot_download
print(snapshot_download(sys.argv[1], local_dir=sys.argv[2]))
"""


def test_modelscope_client_twice_fetches_each_file_once(
    ms_origin: tuple[str, Path, ManagedProcess], hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    url, files, origin = ms_origin
    mirror = hub_mirror(ms_url=url)
    env = {
        "MODELSCOPE_ENDPOINT": f"{mirror.url}/modelscope",
        "MODELSCOPE_CACHE": str(tmp_path / "ms-cache"),
        "MODELSCOPE_DOMAIN": f"127.0.0.1:{mirror.port}/modelscope",
    }
    for round_ in range(2):
        out = tmp_path / f"out-{round_}"
        result = run_python(MS_SNAPSHOT, env, "org/msmodel", str(out), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        for source in files.rglob("*"):
            if source.is_file():
                assert (out / source.relative_to(files)).read_bytes() == source.read_bytes()
    model_gets = [line for line in origin.log_text().splitlines() if "FilePath=model.bin" in line]
    assert len(model_gets) == 1
    sha256 = hashlib.sha256((files / "model.bin").read_bytes()).hexdigest()
    assert committed_blob(mirror, sha256).read_bytes() == (files / "model.bin").read_bytes()


def test_get_modelscope_include_and_relisting(
    ms_origin: tuple[str, Path, ManagedProcess], hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    url, files, _ = ms_origin
    mirror = hub_mirror(ms_url=url)
    out = tmp_path / "got"
    result = get(mirror, "modelscope://org/msmodel", "--out", str(out), "--include", "*.bin")
    assert result.returncode == 0, result.stderr
    assert (out / "model.bin").read_bytes() == (files / "model.bin").read_bytes()
    assert not (out / "config.json").exists()
    # The origin publishes new bytes: the next listing carries their sha256 and get follows it.
    (files / "sub" / "notes.txt").write_text("NOTES")  # same size, new sha256 in the next listing
    (files / "model.bin").write_bytes(random.Random(8).randbytes(2 * 1024 * 1024 + 3))
    assert get(mirror, "modelscope://org/msmodel", "--out", str(out)).returncode == 0  # re-listed: new sha256s


def test_get_hf_resumes_and_verifies(
    hub_origin: HubOrigin, hub_mirror: Callable[..., MirrorProcess], tmp_path: Path
) -> None:
    mirror = hub_mirror(hub_origin.front_url)
    out = tmp_path / "model"
    weights = hub_origin.sources["org/model/model.safetensors"]
    out.mkdir()
    (out / "model.safetensors.part").write_bytes(weights[:1000])  # an interrupted earlier run
    result = get(mirror, "hf://org/model@main", "--out", str(out))
    assert result.returncode == 0, result.stderr
    for key, expected in hub_origin.sources.items():
        if key.startswith("org/model/"):
            assert (out / key[len("org/model/") :]).read_bytes() == expected
    assert not list(out.rglob("*.part"))
    assert get(mirror, "hf://org/corrupt", "--out", str(tmp_path / "bad")).returncode == 1
    assert get(mirror, "ftp://org/model").returncode == 2
