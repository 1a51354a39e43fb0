"""The CI flow end to end against a real docker-registry: keygen -> build -> sign -> verify ->
push -> pull back -> verify, plus every tampered variant refused with exit code 1."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog.delta import apply_delta
from catalog.fetch import pull_catalog, pull_delta
from catalog.models import Catalog, catalog_to_json, parse_catalog
from catalog.registry import RegistryClient
from catalog.signing import envelope_to_json, load_private_key, sign
from registry_mirror.cli._catalog import main

from .conftest import Origin, PushedImages

pytestmark = pytest.mark.integration


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["catalog", *argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


@pytest.fixture(scope="module")
def flow(origin: Origin, images: PushedImages, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run keygen, build (with a delta), sign once; tests below check each artifact."""
    work = tmp_path_factory.mktemp("flow")
    paths = {name: work / name for name in ("key.pem", "key.pub", "c.json", "signed.json", "deltas")}
    assert main(["catalog", "keygen", "--private", str(paths["key.pem"]), "--public", str(paths["key.pub"])]) == 0
    code = main(
        [
            "catalog",
            "build",
            "--image",
            f"{origin.address}/{images.repo}:v2",
            "--platform",
            "linux/amd64",
            "--delta-from",
            f"{origin.address}/{images.repo}:v1",
            "--name",
            "prod",
            "--serial",
            "3",
            "--expires-in",
            "2d",
            "--out",
            str(paths["c.json"]),
            "--insecure",
            "--delta-dir",
            str(paths["deltas"]),
        ]
    )
    assert code == 0
    assert (
        main(
            [
                "catalog",
                "sign",
                "--key",
                str(paths["key.pem"]),
                "--out",
                str(paths["signed.json"]),
                str(paths["c.json"]),
            ]
        )
        == 0
    )
    return paths


def test_build_walks_index_and_records_blobs(flow: dict[str, Path], images: PushedImages) -> None:
    cat = parse_catalog(flow["c.json"].read_bytes())
    assert (cat.name, cat.serial) == ("prod", 3)
    assert timedelta(days=2) == cat.expires - cat.created
    [image] = cat.images
    assert image.digest == images.v2_index and image.platforms == ("linux/amd64",)
    digests = {b.digest for b in cat.blobs}
    expected = {
        images.v2_index,
        images.v2_amd64["digest"],
        images.v2_amd64["config"]["digest"],
        *(layer["digest"] for layer in images.v2_amd64["layers"]),
    }
    assert digests == expected
    assert all(b.repository == images.repo for b in cat.blobs)


def test_build_delta_only_for_changed_layer_and_it_rebuilds(
    flow: dict[str, Path], images: PushedImages, origin: Origin, tmp_path: Path
) -> None:
    cat = parse_catalog(flow["c.json"].read_bytes())
    old_weights, new_weights = images.v1["layers"][1], images.v2_amd64["layers"][1]
    [delta] = cat.deltas  # the app layer is unchanged: no delta for it
    assert (delta.from_digest, delta.to_digest) == (old_weights["digest"], new_weights["digest"])
    assert delta.delta.size < new_weights["size"] // 10
    with RegistryClient(origin.address, insecure=True) as client:
        client.download_blob(images.repo, old_weights["digest"], tmp_path / "base")
    delta_file = flow["deltas"] / f"sha256-{delta.delta.digest.split(':')[1]}.delta"
    apply_delta(tmp_path / "base", delta_file, tmp_path / "rebuilt", new_weights["digest"], new_weights["size"])
    assert (tmp_path / "rebuilt").stat().st_size == new_weights["size"]


def test_build_without_platform_takes_all(
    origin: Origin, images: PushedImages, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = cli(
        capsys,
        "build",
        "--image",
        f"{origin.address}/{images.repo}:v2",
        "--image",
        f"{origin.address}/{images.repo}:v1",
        "--name",
        "all",
        "--serial",
        "1",
        "--out",
        str(tmp_path / "c.json"),
        "--insecure",
    )
    assert code == 0 and out["images"] == 2 and out["deltas"] == 0
    cat = parse_catalog((tmp_path / "c.json").read_bytes())
    assert cat.images[0].platforms == ("linux/amd64", "linux/arm64")
    assert cat.images[1].platforms == ("linux/amd64",)


def test_build_errors(origin: Origin, images: PushedImages, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--name", "x", "--serial", "1", "--out", str(tmp_path / "c.json"), "--insecure"]
    assert cli(capsys, "build", "--image", f"{origin.address}/{images.repo}:nope", *base)[0] == 1
    assert cli(capsys, "build", "--image", "not-qualified:v1", *base)[0] == 2
    assert cli(capsys, "build", "--image", f"{origin.address}/{images.repo}:v1", "--expires-in", "soon", *base)[0] == 2
    assert (
        cli(capsys, "build", "--image", f"{origin.address}/{images.repo}:v1", "--platform", "linux/s390x", *base)[0]
        == 1
    )
    assert not (tmp_path / "c.json").exists()


def test_verify_push_pull_verify(
    flow: dict[str, Path], origin: Origin, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = cli(capsys, "verify", "--public", str(flow["key.pub"]), str(flow["signed.json"]))
    assert code == 0 and out["serial"] == 3
    code, out = cli(
        capsys,
        "push",
        str(flow["signed.json"]),
        f"{origin.address}/catalogs/prod:latest",
        "--insecure",
        "--delta-dir",
        str(flow["deltas"]),
    )
    assert code == 0
    manifest = httpx.get(
        origin.url("/v2/catalogs/prod/manifests/latest"),
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).json()
    assert manifest["artifactType"] == "application/vnd.registry-mirror.catalog.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.dsse.envelope.v1+json",
        "application/vnd.registry-mirror.delta.zstd-patch-from",
    ]
    envelope = pull_catalog(origin.address, "catalogs/prod", "latest", insecure=True)
    assert envelope == flow["signed.json"].read_bytes()
    (tmp_path / "pulled.json").write_bytes(envelope)
    assert cli(capsys, "verify", "--public", str(flow["key.pub"]), str(tmp_path / "pulled.json"))[0] == 0
    [delta] = parse_catalog(flow["c.json"].read_bytes()).deltas
    size = pull_delta(origin.address, "catalogs/prod", delta.delta.digest, tmp_path / "d", insecure=True)
    assert size == delta.delta.size


def _resign(flow: dict[str, Path], payload: bytes) -> bytes:
    return envelope_to_json(sign(payload, load_private_key(flow["key.pem"])))


def _edit(flow: dict[str, Path], **changes: Any) -> bytes:
    doc = json.loads(flow["c.json"].read_bytes())
    doc.update(changes)
    return json.dumps(doc).encode()


def _swap_payload(flow: dict[str, Path]) -> bytes:
    env = json.loads(flow["signed.json"].read_bytes())
    env["payload"] = base64.b64encode(_edit(flow, serial=4)).decode()
    return json.dumps(env).encode()


def _flip_sig(flow: dict[str, Path]) -> bytes:
    env = json.loads(flow["signed.json"].read_bytes())
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[-1] ^= 0x80
    env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return json.dumps(env).encode()


def _other_key(flow: dict[str, Path]) -> bytes:
    from catalog.signing import generate_keypair

    return envelope_to_json(sign(flow["c.json"].read_bytes(), generate_keypair()))


def _unknown_keyid(flow: dict[str, Path]) -> bytes:
    env = json.loads(flow["signed.json"].read_bytes())
    env["signatures"][0]["keyid"] = "f" * 64
    return json.dumps(env).encode()


def _unsigned(flow: dict[str, Path]) -> bytes:
    env = json.loads(flow["signed.json"].read_bytes())
    env["signatures"] = []
    return json.dumps(env).encode()


def _expired(flow: dict[str, Path]) -> bytes:
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    cat = Catalog(name="prod", serial=9, created=past, expires=past + timedelta(days=1))
    return _resign(flow, catalog_to_json(cat))


TAMPERED = {
    "payload changed": _swap_payload,
    "signature changed": _flip_sig,
    "signed by another key": _other_key,
    "unknown keyid": _unknown_keyid,
    "unsigned": _unsigned,
    "truncated envelope": lambda flow: flow["signed.json"].read_bytes()[:-20],
    "oversized": lambda flow: b" " * (23 * 1024 * 1024),
    "schema violation (signed)": lambda flow: _resign(flow, _edit(flow, serial="3")),
    "expired (signed)": _expired,
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_variants_fail_verification(
    case: str, flow: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(TAMPERED[case](flow))
    code, out = cli(capsys, "verify", "--public", str(flow["key.pub"]), str(bad))
    assert code == 1, out
    assert out["ok"] is False and out["error"]
    expected_kind = {
        "oversized": "TooLargeError",
        "expired (signed)": "ExpiredError",
        "schema violation (signed)": "CatalogError",
    }.get(case, "SignatureError")
    assert out["kind"] == expected_kind


def test_usage_errors_exit_2(flow: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "verify", "--public", str(flow["key.pub"]), str(tmp_path / "missing.json"))[0] == 2
    (tmp_path / "garbage.pub").write_text("not a key")
    assert cli(capsys, "verify", "--public", str(tmp_path / "garbage.pub"), str(flow["signed.json"]))[0] == 2
    (tmp_path / "bad.json").write_bytes(b'{"schemaVersion": 1}')
    assert (
        cli(
            capsys, "sign", "--key", str(flow["key.pem"]), "--out", str(tmp_path / "s.json"), str(tmp_path / "bad.json")
        )[0]
        == 2
    )
    assert main(["catalog", "verify"]) == 2
    assert cli(capsys, "push", str(flow["signed.json"]), "127.0.0.1:1/x/y@sha256:" + "0" * 64)[0] == 2
    capsys.readouterr()
