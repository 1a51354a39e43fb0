"""Errors raised by the p2p package; `registry_mirror` translates them at its one boundary."""

from __future__ import annotations


class P2PError(Exception):
    """Base of every error the p2p package raises."""


class TrackerError(P2PError):
    """The tracker could not be reached or refused a request.

    `status` is the HTTP status (None when no response arrived), `field` names the request field the
    tracker rejected, when it said so.
    """

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        code = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{code}{self.message}{where}"


class PieceError(P2PError):
    """A piece could not be fetched from a peer (refused, stalled, short)."""


class BadPiece(PieceError):
    """A piece's bytes did not hash to the seed's published piece hash (`expected`); `received` is
    theirs: together with the index they are the evidence a report shows the tracker."""

    def __init__(self, index: int, expected: str, received: str) -> None:
        super().__init__(f"piece {index}: hashed to {received}, published {expected}")
        self.index = index
        self.expected = expected
        self.received = received


class PeerUnreachable(PieceError):
    """Nobody answers at the peer's announced address (dead, or never there)."""
