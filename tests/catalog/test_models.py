from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from catalog.errors import SchemaError, TooLargeError
from catalog.models import (
    Blob,
    Catalog,
    Delta,
    DeltaBlob,
    Image,
    Referrer,
    catalog_to_dict,
    catalog_to_json,
    parse_catalog,
)

D1, D2, D3, D4 = ("sha256:" + c * 64 for c in "1234")
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def sample(**overrides: Any) -> Catalog:
    fields: dict[str, Any] = dict(
        name="prod",
        serial=7,
        created=NOW,
        expires=NOW + timedelta(days=7),
        images=(Image("127.0.0.1:5000/test/app:v2", D1, ("linux/amd64",)),),
        blobs=(Blob(D2, 10, "application/vnd.oci.image.layer.v1.tar", "test/app"),),
        referrers=(Referrer(D1, D4, "application/vnd.example.sbom", "test/app"),),
        deltas=(Delta(D3, D2, DeltaBlob(D4, 3)),),
    )
    fields.update(overrides)
    return Catalog(**fields)


def test_round_trip_is_canonical() -> None:
    data = catalog_to_json(sample())
    assert parse_catalog(data) == sample()
    assert catalog_to_json(parse_catalog(data)) == data
    assert json.loads(data)["mediaType"] == "application/vnd.registry-mirror.catalog.v1+json"


def mutate(path: str, value: Any) -> bytes:
    doc = catalog_to_dict(sample())
    target, keys = doc, path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return json.dumps(doc).encode()


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("schemaVersion", 2, "schemaVersion"),
        ("schemaVersion", True, "schemaVersion"),
        ("mediaType", "application/json", "mediaType"),
        ("name", "", "name"),
        ("serial", "7", "serial"),
        ("serial", -1, "serial"),
        ("serial", DELETE, "serial"),
        ("created", "2024-01-01 00:00:00", "created"),
        ("expires", "2024-01-01T00:00:00+01:00", "expires"),
        ("expires", "2023-12-31T00:00:00Z", "expires"),
        ("images.0.digest", "sha256:abc", "images[0].digest"),
        ("images.0.platforms", ["linux"], "images[0].platforms"),
        ("images.0.extra", 1, "images[0].extra"),
        ("blobs.0.size", 1.5, "blobs[0].size"),
        ("blobs.0.repository", DELETE, "blobs[0].repository"),
        ("blobs", {}, "blobs"),
        ("deltas.0.algorithm", "bsdiff", "deltas[0].algorithm"),
        ("deltas.0.to", D1, "deltas[0].to"),
        ("deltas.0.delta.size", None, "deltas[0].delta.size"),
        ("referrers.0.subject", "x", "referrers[0].subject"),
        ("rollback", "yes", "rollback"),
        ("rollback", True, "supersedes"),  # a rollback must name the serial it supersedes
        ("supersedes", 1, "supersedes"),  # only a rollback supersedes
        ("unexpected", 1, "unexpected"),
    ],
)
def test_schema_errors_name_the_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_catalog(mutate(path, value))
    assert caught.value.field == field


def test_not_json_and_not_object() -> None:
    with pytest.raises(SchemaError):
        parse_catalog(b"{nope")
    with pytest.raises(SchemaError):
        parse_catalog(b"[]")
    with pytest.raises(SchemaError):
        parse_catalog(b'{"serial": NaN}')


def test_duplicate_keys_refused() -> None:
    data = catalog_to_json(sample())
    with pytest.raises(SchemaError, match="duplicate"):
        parse_catalog(data[:-1] + b',"serial":999}')


def test_size_cap_applies_before_parsing() -> None:
    # Invalid JSON over the cap: a TooLargeError (not a parse error) proves no parse was tried.
    with pytest.raises(TooLargeError):
        parse_catalog(b"{" * 1001, max_bytes=1000)
    with pytest.raises(TooLargeError):
        parse_catalog(b" " * (16 * 1024 * 1024 + 1))


def test_a_rollback_supersedes_a_lower_serial_and_round_trips() -> None:
    rollback = sample(rollback=True, supersedes=6)
    assert parse_catalog(catalog_to_json(rollback)) == rollback
    with pytest.raises(SchemaError) as caught:
        parse_catalog(catalog_to_json(sample(rollback=True, supersedes=7)))
    assert caught.value.field == "supersedes"
