"""Value parsers for settings: each takes a TOML value, or text from the environment or a flag.

A parser returns the typed value or raises `InvalidValue` with a message that never echoes a
secret; config_load adds the field name and the source.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import oci
from oci import Digest, InvalidDigest
from p2p.tracker import PEER_ID_RE

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
TiB = 1024 * GiB


class InvalidValue(ValueError):
    """Raised by the value parsers; the loader adds the field name and the source."""


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
}  # fmt: skip
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_REGISTRY_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$")
_PREFIX_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._~-]+$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_size(value: object) -> int:
    """Bytes from 50GiB, 500MB, 1TB or a plain integer (binary units: KiB..TiB, decimal: kB..TB)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InvalidValue(f"must not be negative, got {value}")
        return value
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    unit = _SIZE_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise InvalidValue(f"expected a size like 50GiB, got {_show(value)}")
    return int(Decimal(match.group(1)) * unit)


def format_size(size: int) -> str:
    for name, unit in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size and size % unit == 0:
            return f"{size // unit}{name}"
    return str(size)


def sized(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    def parse(value: object) -> int:
        size = parse_size(value)
        if size < minimum or (maximum is not None and size > maximum):
            upper = f" and at most {format_size(maximum)}" if maximum is not None else ""
            raise InvalidValue(f"must be at least {format_size(minimum)}{upper}, got {_show(value)}")
        return size

    return parse


def parse_duration(value: object) -> float:
    """Seconds from a number or text like 30s, 250ms, 5m, 1h, 1d."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(value) if isinstance(value, str) else None
        if match is None:
            raise InvalidValue(f"expected seconds or a duration like 30s, 5m, 1h, got {_show(value)}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidValue(f"must be a finite number of seconds >= 0, got {_show(value)}")
    return seconds


def parse_timeout(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise InvalidValue(f"must be more than 0 seconds, got {_show(value)}")
    return seconds


def _number(value: object) -> float | None:
    """A float from a TOML number or text; None for anything else (booleans included)."""
    if not isinstance(value, (int, float, str)) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def parse_fraction(value: object) -> float:
    number = _number(value)
    if number is None or not 0 < number <= 1:
        raise InvalidValue(f"expected a fraction in (0, 1] like 0.9, got {_show(value)}")
    return number


def parse_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"expected true or false, got {_show(value)}")
    return value


def bool_from_text(text: str) -> bool | str:
    """Environment and CLI spellings of a boolean; anything else is left to parse_bool."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    return text


def parse_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"expected a non-empty string, got {_show(value)}")
    return value.strip()


def _check_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL_RE.match(label) for label in labels):
        raise InvalidValue(f"{_show(host)} is not a host name or IP address")
    return host.lower()


def parse_listen(value: object) -> tuple[str, int]:
    """(host, port) from HOST:PORT or [IPv6]:PORT; port 0 asks the kernel for a free one."""
    text = value.strip() if isinstance(value, str) else ""
    match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$", text)
    if match is None or int(match.group(3)) > 65535:
        raise InvalidValue(f"expected HOST:PORT like 127.0.0.1:5000, got {_show(value)}")
    host = match.group(1) or match.group(2)
    if match.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidValue(f"{_show(host)} is not an IPv6 address") from None
        return host, int(match.group(3))
    return _check_host(host), int(match.group(3))


def parse_origin_url(value: object) -> str:
    """scheme://host[:port] with scheme http or https and no path, query or credentials."""
    text = parse_text(value)
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        # Never echo the value: it carries a secret.
        raise InvalidValue("credentials in the URL are not accepted; use username and password_file")
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidValue(f"expected an http(s) URL like https://registry-1.docker.io, got {_show(text)}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidValue(f"must be scheme://host[:port] with no path or query, got {_show(text)}")
    try:
        port = parts.port
    except ValueError:
        raise InvalidValue(f"bad port in {_show(text)}") from None
    host = parts.hostname
    host = f"[{host}]" if ":" in host else _check_host(host)
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def is_registry_name(text: str) -> bool:
    """A configured registry's name: a lowercase host with an optional port (`docker.io`,
    `127.0.0.1:5101`), stricter than the `?ns=` grammar (`oci.is_registry_host`) so names compare
    as written."""
    return bool(_REGISTRY_RE.match(text)) and not (":" in text and int(text.rsplit(":", 1)[1]) > 65535)


def parse_registry_name(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not is_registry_name(text):
        raise InvalidValue(f"expected a registry host like docker.io or 127.0.0.1:5101, got {_show(value)}")
    return text


def parse_path_prefix(value: object) -> str:
    """'' or '/a/b': leading slash added, trailing slash dropped."""
    if not isinstance(value, str):
        raise InvalidValue(f"expected a URL path like /mirror, got {_show(value)}")
    segments = value.strip().strip("/").split("/") if value.strip().strip("/") else []
    for segment in segments:
        if not _PREFIX_SEGMENT_RE.match(segment) or segment in (".", ".."):
            raise InvalidValue(f"expected a URL path like /mirror, got {_show(value)}")
    return "/" + "/".join(segments) if segments else ""


def parse_choice(choices: Sequence[str]) -> Callable[[object], str]:
    """One of `choices`, case-insensitive."""

    def parse(value: object) -> str:
        choice = value.strip().lower() if isinstance(value, str) else ""
        if choice not in choices:
            raise InvalidValue(f"expected one of {', '.join(choices)}, got {_show(value)}")
        return choice

    return parse


def parse_log_level(value: object) -> str:
    return parse_choice(LOG_LEVELS)(value)


def parse_path(value: object) -> Path:
    return Path(parse_text(value)).expanduser()


def parse_globs(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(g, str) and g.strip() for g in value):
        raise InvalidValue(f'expected a list of repository globs like ["library/*"], got {_show(value)}')
    return tuple(g.strip() for g in value)


def parse_env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME_RE.match(value):
        raise InvalidValue(f"expected an environment variable name, got {_show(value)}")
    return value


# ---- parsers for p2p, catalog, model hubs and operations ----

_ZONE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_INT_RE = re.compile(r"^\s*\d+\s*$")
EMBEDDED_TRACKER = "embedded"


def parse_count(minimum: int) -> Callable[[object], int]:
    """A whole number >= minimum, from an integer or its decimal text."""

    def parse(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and _INT_RE.match(value):
            number = int(value)
        else:
            raise InvalidValue(f"expected a whole number, got {_show(value)}")
        if number < minimum:
            raise InvalidValue(f"must be at least {minimum}, got {_show(value)}")
        return number

    return parse


def parse_rate(value: object) -> float:
    """Events per second, >= 0 (0 turns the limit off)."""
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0:
        raise InvalidValue(f"expected a number per second >= 0 like 50, got {_show(value)}")
    return number


def parse_optional_path(value: object) -> Path | None:
    """A path, or "" for unset."""
    if isinstance(value, str) and not value.strip():
        return None
    return parse_path(value)


def parse_optional_env_name(value: object) -> str | None:
    """An environment variable name, or "" for unset."""
    if isinstance(value, str) and not value.strip():
        return None
    return parse_env_name(value)


def parse_paths(value: object) -> tuple[Path, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise InvalidValue(f'expected a list of file paths like ["keys/a.pub"], got {_show(value)}')
    return tuple(Path(p.strip()).expanduser() for p in value)


def format_listen(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_optional_listen(value: object) -> str:
    """HOST:PORT normalised, or "" for off."""
    if isinstance(value, str) and not value.strip():
        return ""
    host, port = parse_listen(value)
    return format_listen(str(ipaddress.ip_address(host)) if ":" in host else host, port)


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_url(value: object, *, path_allowed: bool, example: str) -> str:
    text = parse_text(value)
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise InvalidValue("credentials in the URL are not accepted")  # never echo a secret
    bad_path = parts.path not in ("", "/") and not path_allowed
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or bad_path:
        raise InvalidValue(f"expected an http(s) URL like {example}, got {_show(text)}")
    if parts.query or parts.fragment:
        raise InvalidValue(f"must have no query or fragment, got {_show(text)}")
    try:
        parts.port
    except ValueError:
        raise InvalidValue(f"bad port in {_show(text)}") from None
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else _check_host(host)
    netloc += f":{parts.port}" if parts.port is not None else ""
    path = parts.path.rstrip("/") if path_allowed else ""
    return f"{parts.scheme.lower()}://{netloc}{path}"


def parse_tracker(value: object) -> str:
    """ "" (off), "embedded" (this process serves a tracker) or an http(s) URL (a path such as
    /tracker is allowed: another mirror's embedded tracker lives there)."""
    if isinstance(value, str) and value.strip().lower() in ("", EMBEDDED_TRACKER):
        return value.strip().lower()
    return _http_url(value, path_allowed=True, example='https://tracker:5050 or "embedded"')


def parse_optional_url(value: object) -> str:
    """ "" or http(s)://host[:port] with no path."""
    if isinstance(value, str) and not value.strip():
        return ""
    return _http_url(value, path_allowed=False, example="http://10.0.0.7:5002")


def parse_otlp_endpoint(value: object) -> str:
    """ "" (off) or an http(s) URL; a path is kept (OTLP/HTTP uses /v1/traces)."""
    if isinstance(value, str) and not value.strip():
        return ""
    return _http_url(value, path_allowed=True, example="http://127.0.0.1:4318")


def parse_zone(value: object) -> str:
    text = value.strip() if isinstance(value, str) else None
    if text is None or (text and not _ZONE_RE.match(text)):
        raise InvalidValue(f'expected a zone name like eu-west-1a or "", got {_show(value)}')
    return text


def parse_peer_id(value: object) -> str:
    text = value.strip() if isinstance(value, str) else None
    if text is None or (text and not PEER_ID_RE.match(text)):
        raise InvalidValue(f'expected a peer id of [A-Za-z0-9._:-] (up to 128) or "", got {_show(value)}')
    return text


def parse_digest(value: object) -> str:
    """A full OCI digest, as `oci.Digest` accepts it: sha256 with 64 or sha512 with 128 lowercase
    hex digits (the only algorithms the image spec registers)."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        return str(Digest.parse(text))
    except InvalidDigest as exc:
        raise InvalidValue(f"expected a full digest like sha256:<64 hex>, got {_show(value)} ({exc})") from None


def parse_optional_digest(value: object) -> str:
    if isinstance(value, str) and not value.strip():
        return ""
    return parse_digest(value)


def parse_image_reference(value: object) -> str:
    """REGISTRY/REPO:TAG or REGISTRY/REPO@DIGEST with a fully qualified registry host."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        reference = oci.parse_image_reference(text)
    except oci.InvalidReference as exc:
        raise InvalidValue(
            f"expected REGISTRY/REPO:TAG like ghcr.io/org/catalog:v1, got {_show(value)} ({exc})"
        ) from None
    if (reference.tag is None and reference.digest is None) or not is_registry_name(reference.registry):
        raise InvalidValue(f"expected REGISTRY/REPO:TAG like ghcr.io/org/catalog:v1, got {_show(value)}")
    return text


def parse_image_references(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidValue(f'expected a list like ["ghcr.io/org/catalog:v1"], got {_show(value)}')
    return tuple(parse_image_reference(item) for item in value)


def glob(*, empty_ok: bool) -> Callable[[object], str]:
    """A fnmatch-style glob; "" only where empty means "not a condition"."""

    def parse(value: object) -> str:
        if not isinstance(value, str) or (not value.strip() and not empty_ok):
            wanted = 'a glob like team/* or ""' if empty_ok else "a glob like team/*"
            raise InvalidValue(f"expected {wanted}, got {_show(value)}")
        return value.strip()

    return parse
