"""config/registry-mirror.schema.json: generated from settings.py, and it agrees with the loader."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest

from registry_mirror.config import SETTING_KEYS
from registry_mirror.config._schema import render_schema

REPO = Path(__file__).resolve().parents[2]


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((REPO / "config" / "registry-mirror.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_is_generated() -> None:
    assert (REPO / "config" / "registry-mirror.schema.json").read_text() == render_schema()


def test_schema_names_every_key() -> None:
    properties = json.loads(render_schema())["properties"]
    for key in SETTING_KEYS:
        section, _, name = key.path.rpartition(".")
        table = properties[section]["properties"] if section else properties
        assert name in table, key.path


def test_the_uncommented_example_config_is_valid() -> None:
    text = (REPO / "config" / "registry-mirror.toml").read_text()
    document = tomllib.loads(re.sub(r"(?m)^# (?=\[|[a-z_]+ = )", "", text))
    assert list(_validator().iter_errors(document)) == []


@pytest.mark.parametrize(
    "text",
    ["listn = 1", "[cache]\nmax_sise = 1", "access_log = 1", '[[blocklist]]\ntag = "x"',
     '[upstreams."r.test"]\npassword = "inline"', "[limits]\nclient_burst = \"many\""],
)  # fmt: skip
def test_unknown_keys_and_wrong_types_are_schema_errors(text: str) -> None:
    assert list(_validator().iter_errors(tomllib.loads(text))) != []
