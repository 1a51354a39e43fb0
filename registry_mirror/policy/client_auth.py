"""The client token: when configured, every content request must carry
`Authorization: Bearer <token>` (containerd sends it from a hosts.toml `[host."...".header]`) or
`X-Registry-Mirror-Token: <token>` (model hub clients, whose Authorization is their hub token)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from registry_mirror.errors import ErrorCode, OCIError
from registry_mirror.policy import metrics

_SCHEME = "bearer "
TOKEN_HEADER = "x-registry-mirror-token"


class ClientAuth:
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the client token must not be empty")
        self._token = token.encode()

    def allows(self, authorization: str | None) -> bool:
        if not authorization or authorization[: len(_SCHEME)].lower() != _SCHEME:
            return False
        presented = authorization[len(_SCHEME) :].strip().encode()
        return hmac.compare_digest(presented, self._token)  # constant time: no token oracle

    def allows_header(self, value: str | None) -> bool:
        return bool(value) and value is not None and hmac.compare_digest(value.strip().encode(), self._token)

    def check(self, headers: Mapping[str, str]) -> None:
        """Raise UNAUTHORIZED (401) unless the request carries the token. The token is never logged."""
        if not (self.allows(headers.get("authorization")) or self.allows_header(headers.get(TOKEN_HEADER))):
            metrics.unauthorized_requests.add(1)
            raise OCIError(ErrorCode.UNAUTHORIZED, "this mirror requires a client token (Authorization: Bearer)")
