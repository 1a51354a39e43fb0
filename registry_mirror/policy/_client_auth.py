"""The client token: when configured, every content request must carry
`Authorization: Bearer <token>` (containerd sends it from a hosts.toml `[host."...".header]`) or
`X-Registry-Mirror-Token: <token>` (model hub clients, whose Authorization is their hub token)."""

from __future__ import annotations

from collections.abc import Mapping

from oci import bearer_matches, token_matches
from registry_mirror.api import ErrorCode, OCIError
from registry_mirror.policy import _metrics as metrics

TOKEN_HEADER = "x-registry-mirror-token"


class ClientAuth:
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the client token must not be empty")
        self._token = token.encode()

    def allows(self, authorization: str | None) -> bool:
        return bearer_matches(authorization, self._token)  # constant time: no token oracle

    def allows_header(self, value: str | None) -> bool:
        return token_matches(value.strip() if value else None, self._token)

    def check(self, headers: Mapping[str, str]) -> None:
        """Raise UNAUTHORIZED (401) unless the request carries the token. The token is never logged."""
        if not (self.allows(headers.get("authorization")) or self.allows_header(headers.get(TOKEN_HEADER))):
            metrics.unauthorized_requests.add(1)
            raise OCIError(ErrorCode.UNAUTHORIZED, "this mirror requires a client token (Authorization: Bearer)")
