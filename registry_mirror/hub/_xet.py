"""Xet hiding: with `xetHash` in a listing or `X-Xet-*` on a HEAD, huggingface_hub (with hf_xet)
goes straight to the Xet CAS and never back to plain HTTP. Stripping them keeps every byte on the
path through this mirror."""

from __future__ import annotations

import json

XET_FIELDS = frozenset({"xetHash", "xet_hash"})


def strip_xet_fields(value: object) -> object:
    """The JSON value without Xet keys, at any depth."""
    if isinstance(value, dict):
        return {k: strip_xet_fields(v) for k, v in value.items() if k not in XET_FIELDS}
    if isinstance(value, list):
        return [strip_xet_fields(item) for item in value]
    return value


def strip_xet_json(body: bytes) -> bytes:
    """A JSON body without Xet keys; anything that is not JSON is returned as is."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    return json.dumps(strip_xet_fields(document), separators=(",", ":")).encode()


def is_xet_header(name: str, value: str) -> bool:
    lower = name.lower()
    return lower.startswith("x-xet-") or (lower == "link" and "xet-" in value.lower())
