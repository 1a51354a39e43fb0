"""Size-capped, strict JSON reading shared by the envelope and the catalog parsers."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from catalog.errors import CatalogError, SchemaError, TooLargeError

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate keys are a classic signed-vs-parsed confusion: refuse them.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def load_object(
    data: bytes,
    error: type[CatalogError],
    what: str,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> dict[str, Any]:
    """Parse `data` as one UTF-8 JSON object; the size is checked before any parsing."""
    if len(data) > max_bytes:
        raise TooLargeError(f"{what} is {len(data)} bytes, over the {max_bytes} byte limit")
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise _make(error, what, f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _make(error, what, "not a JSON object")
    return value


def _make(error: type[CatalogError], what: str, problem: str) -> CatalogError:
    if issubclass(error, SchemaError):
        return error(what, problem)
    return error(f"{what}: {problem}")
