"""`registry-mirror catalog analyze` against a real docker-registry: shared blobs, what a node
fetches given the previous version, and computed zstd deltas (the conftest's v2 changes ~3% of
a 16 MiB uncompressed weights layer)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from registry_mirror.cli._catalog import main

from .conftest import Origin, PushedImages, push_image

pytestmark = pytest.mark.integration


def analyze(capsys: pytest.CaptureFixture[str], *argv: str, as_json: bool = True) -> tuple[int, Any, str]:
    code = main(["catalog", "analyze", *argv, "--insecure", *(["--json"] if as_json else [])])
    captured = capsys.readouterr()
    if as_json:
        return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err
    return code, captured.out, captured.err


def _sizes(image: dict[str, Any]) -> tuple[int, int, int]:
    layers = [int(layer["size"]) for layer in image["layers"]]  # type: ignore[index]
    return layers[0], layers[1], int(image["config"]["size"])  # type: ignore[index]


def test_overlap_fetch_given_old_and_computed_deltas(
    origin: Origin, images: PushedImages, capsys: pytest.CaptureFixture[str]
) -> None:
    push_image(origin, "test/other-model", "v1", 1)  # same layers as test/model:v1
    new, old = f"{origin.address}/{images.repo}:v2-amd64", f"{origin.address}/{images.repo}:v1"
    code, result, err = analyze(capsys, new, f"{origin.address}/test/other-model:v1", "--against", old)
    assert code == 0, err
    app_size, weights_v2, config_v2 = _sizes(images.v2_amd64)
    _, weights_v1, config_v1 = _sizes(images.v1)
    by_digest = {blob["digest"]: blob for blob in result["blobs"]}
    app, weights = images.v2_amd64["layers"]  # type: ignore[misc]
    # The app layer is in all three images; test/other-model:v1 is test/model:v1 re-pushed.
    assert by_digest[app["digest"]]["shared"] and len(by_digest[app["digest"]]["images"]) == 2
    assert by_digest[app["digest"]]["in_old"] and not by_digest[weights["digest"]]["in_old"]
    totals = result["totals"]
    manifests = sum(b["size"] for b in result["blobs"] if b["kind"] == "manifest")
    assert totals["unique_bytes"] == app_size + weights_v2 + weights_v1 + config_v2 + config_v1 + manifests
    assert totals["separate_bytes"] == totals["unique_bytes"] + app_size  # the app layer twice
    # Holding test/model:v1, a node needs v2's weights, config and manifest only.
    v2_manifest = by_digest[images.v2_amd64["digest"]]["size"]  # type: ignore[index]
    assert totals["fetch_given_old"] == weights_v2 + config_v2 + v2_manifest
    assert [image["marginal_bytes"] for image in result["images"]] == [weights_v2 + config_v2 + v2_manifest, 0]

    [delta] = result["deltas"]
    assert (delta["old_digest"], delta["new_digest"]) == (images.v1["layers"][1]["digest"], weights["digest"])  # type: ignore[index]
    assert 0 < delta["delta_size"] < weights_v2 * 0.1  # ~3% changed: the delta is small, not guessed
    assert totals["fetch_with_deltas"] == totals["fetch_given_old"] - (weights_v2 - delta["delta_size"])
    assert totals["delta_saving"] > totals["cache_saving"] > 0


def test_a_layer_over_the_budget_is_reported_not_computed(
    origin: Origin, images: PushedImages, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result, _ = analyze(
        capsys,
        f"{origin.address}/{images.repo}:v2-amd64",
        "--against",
        f"{origin.address}/{images.repo}:v1",
        "--delta-budget",
        "1MiB",
    )
    assert code == 0
    [delta] = result["deltas"]
    assert delta["delta_size"] is None and delta["saved"] == 0 and "over the byte budget" in delta["skipped"]
    assert result["totals"]["fetch_with_deltas"] == result["totals"]["fetch_given_old"]


def test_table_by_default_and_one_line_errors(
    origin: Origin, images: PushedImages, capsys: pytest.CaptureFixture[str]
) -> None:
    code, table, _ = analyze(
        capsys, f"{origin.address}/{images.repo}:v2", "--against", f"{origin.address}/{images.repo}:v1", as_json=False
    )
    assert code == 0
    assert f"{origin.address}/{images.repo}:v2" in table and "linux/amd64,linux/arm64" in table
    assert "CHANGED LAYER" in table and "with deltas" in table and "saved by sharing" in table
    code, _, err = analyze(capsys, "not a reference", as_json=False)
    assert code == 2 and err.count("\n") == 1 and "not a fully qualified image reference" in err
    code, _, err = analyze(capsys, f"{origin.address}/{images.repo}:nope", as_json=False)
    assert code == 1 and err.count("\n") == 1
    code, _, err = analyze(capsys, f"{origin.address}/{images.repo}:v1", "--delta-budget", "lots", as_json=False)
    assert code == 2 and "--delta-budget" in err
