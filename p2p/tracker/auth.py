"""Who is calling the tracker's /v1 API, and as which peer.

Four ways in, strongest first:
- a **node token** derived from a cluster secret: `<peer id>/<hex HMAC-SHA256(secret, peer id)>`.
  Only the tracker (and whoever mints tokens, `registry-mirror tracker node-token`) holds the
  secret; each node holds its own token, which names and proves one peer id;
- a node token listed in a **tokens file** (`<peer id> <token>` per line), for tokens minted elsewhere;
- a **client certificate** (mutual TLS): its subject commonName is the peer id;
- the **shared token** of older configs: it proves membership of the cluster, not a peer id, so its
  holders can act as any peer (the weaker mode, kept so existing configs keep working).

The caller's peer id (None for the shared token or no auth) goes into `scope["state"]` under
`PEER_KEY`; the app lets a bound caller change only its own records.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from http_limits.errors import error_response
from oci import bearer_token, token_matches
from p2p.tracker.models import PEER_ID_RE

PEER_KEY = "tracker_peer_id"  # in scope["state"]: the peer id this caller proved, or None
CERT_NAME_KEY = "tls_peer_name"  # in scope["state"]: the client certificate's commonName (mTLS)
_CONTEXT = b"registry-mirror tracker node token v1:"


def node_token(secret: bytes, peer_id: str) -> str:
    """The token of one node, derived from the cluster secret."""
    if not PEER_ID_RE.fullmatch(peer_id):
        raise ValueError(f"peer id {peer_id!r}: must be 1-128 characters of [A-Za-z0-9._:-]")
    mac = hmac.new(secret, _CONTEXT + peer_id.encode(), hashlib.sha256).hexdigest()
    return f"{peer_id}/{mac}"


def load_node_tokens(path: Path) -> dict[str, str]:
    """A tokens file: `<peer id> <token>` per line, `#` comments; returns sha256(token) -> peer id."""
    tokens: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not PEER_ID_RE.fullmatch(parts[0]) or len(parts[1]) < 16:
            raise ValueError(f"{path}:{number}: expected '<peer id> <token of 16+ characters>'")
        digest = _token_key(parts[1])
        if digest in tokens:
            raise ValueError(f"{path}:{number}: this token is already listed for {tokens[digest]}")
        tokens[digest] = parts[0]
    return tokens


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """What the tracker accepts. Nothing set: no check (a trusted network or mTLS guards it)."""

    shared_token: str | None = None
    node_secret: bytes | None = field(default=None, repr=False)
    node_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)  # sha256(token) -> peer id
    cert_identity: bool = False  # mTLS: the client certificate's commonName is the caller's peer id

    @property
    def needs_token(self) -> bool:
        return bool(self.shared_token or self.node_secret or self.node_tokens)

    @property
    def enabled(self) -> bool:
        return self.needs_token or self.cert_identity

    def peer_of(self, token: str) -> tuple[bool, str | None]:
        """(accepted, peer id it proves; None for the shared token)."""
        if self.node_secret is not None and "/" in token:
            peer_id = token.split("/", 1)[0]
            if PEER_ID_RE.fullmatch(peer_id) and token_matches(token, node_token(self.node_secret, peer_id)):
                return True, peer_id
        listed = self.node_tokens.get(_token_key(token))
        if listed is not None:
            return True, listed
        if self.shared_token is not None and token_matches(token, self.shared_token):
            return True, None
        return False, None


class PeerAuth:
    """Refuses /v1 requests without an accepted credential (401) and records the proven peer id."""

    def __init__(self, app: ASGIApp, credentials: Credentials) -> None:
        self._app = app
        self._credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            state = scope.setdefault("state", {})
            peer_id: str | None = state.get(CERT_NAME_KEY) if self._credentials.cert_identity else None
            if self._credentials.needs_token:
                token = bearer_token(dict(scope["headers"]).get(b"authorization"))
                accepted, proven = self._credentials.peer_of(token) if token else (False, None)
                if not accepted:
                    await _refuse(scope, receive, send, 401, "missing or wrong bearer token")
                    return
                if proven is not None and peer_id is not None and proven != peer_id:
                    await _refuse(scope, receive, send, 401, "the token and the certificate name different peers")
                    return
                peer_id = proven or peer_id
            elif self._credentials.cert_identity and peer_id is None:
                await _refuse(scope, receive, send, 401, "a client certificate with a commonName is required")
                return
            state[PEER_KEY] = peer_id
        await self._app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    response = error_response(
        status, message, "authorization", {"WWW-Authenticate": 'Bearer realm="registry-mirror-tracker"'}
    )
    await response(scope, receive, send)
