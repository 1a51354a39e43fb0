"""A Range that asks for the whole blob (`bytes=0-`, `bytes=0-<size-1>`, `bytes=-<size>`) gets the
full GET's hold-back: an origin's wrong bytes are cut off before the last chunk, never a clean 206
of the whole wrong blob. nginx serves the blob with one bit flipped."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from tests.conftest import MirrorFactory
from tests.registry_mirror.test_e2e_ranges import MiB, _mirror_for
from tests.support.images import write_random_file
from tests.support.nginx import NginxServer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("spec", ["bytes=0-", "bytes=0-{last}", "bytes=-{size}"])
def test_whole_blob_range_of_wrong_origin_bytes_is_aborted(
    mirror_process: MirrorFactory, tmp_path: Path, spec: str
) -> None:
    size = 6 * MiB
    data = write_random_file(tmp_path / "good.bin", size, seed="wrong-range").read_bytes()
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    root = tmp_path / "static"
    served = root / "v2" / "test" / "bad" / "blobs" / digest
    served.parent.mkdir(parents=True)
    bad = bytearray(data)
    bad[size - 10] ^= 0x01  # same size, one bit flipped near the end
    served.write_bytes(bytes(bad))
    front = NginxServer.static(tmp_path / "nginx", root).start()
    try:
        mirror = _mirror_for(mirror_process, front, tmp_path)
        url = f"{mirror.url}/v2/test/bad/blobs/{digest}"  # type: ignore[attr-defined]
        header = spec.format(last=size - 1, size=size)
        with pytest.raises(httpx.TransportError):
            with httpx.stream("GET", url, params={"ns": front.host}, headers={"Range": header}, timeout=30) as response:
                assert response.status_code == 206
                received = sum(len(chunk) for chunk in response.iter_bytes())
                pytest.fail(f"a wrong whole-blob 206 completed ({received} bytes)")
    finally:
        front.stop()
