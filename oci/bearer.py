"""The bearer-token check every listener uses (RFC 6750 `Authorization: Bearer <token>`).

Comparisons run in constant time, so a client cannot learn a token byte by byte from response
times; tokens are compared as bytes, so a non-ASCII header is a wrong token, not a TypeError.
"""

from __future__ import annotations

import hmac

_SCHEME = "bearer"


def _as_text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def bearer_token(authorization: str | bytes | None) -> str | None:
    """The credential of an `Authorization: Bearer <token>` header (the scheme is
    case-insensitive, RFC 9110 11.1), or None when the header is absent, empty or another scheme."""
    if not authorization:
        return None
    scheme, _, credential = _as_text(authorization).strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != _SCHEME or not credential:
        return None
    return credential


def token_matches(presented: str | bytes | None, expected: str | bytes) -> bool:
    """Whether `presented` is `expected`, compared in constant time; an empty or absent token
    never matches."""
    if not presented or not expected:
        return False
    left = presented if isinstance(presented, bytes) else presented.encode()
    right = expected if isinstance(expected, bytes) else expected.encode()
    return hmac.compare_digest(left, right)


def bearer_matches(authorization: str | bytes | None, expected: str | bytes) -> bool:
    """Whether an `Authorization` header carries `expected` as its bearer token."""
    return token_matches(bearer_token(authorization), expected)
