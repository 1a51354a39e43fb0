"""Whether a newly verified catalog may replace the active one: expiry and rollback protection."""

from __future__ import annotations

from datetime import datetime

from catalog.errors import ExpiredError, RollbackError
from catalog.models import Catalog


def check_activation(current: Catalog | None, new: Catalog, now: datetime) -> None:
    """Raise ExpiredError or RollbackError unless `new` may become the active catalog.

    The serial must grow, always; the same serial is refused too (a replayed catalog must not
    reset expiry). A rollback (`"rollback": true`, signed) has a higher serial of its own and names
    the serial it supersedes, which must be at least the active one: a rollback made before the
    active catalog was published does not undo it. So no old envelope can be activated again.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if new.expires <= now:
        raise ExpiredError(f"catalog {new.name!r} serial {new.serial} expired at {new.expires.isoformat()}")
    if current is None:
        return
    if current.name != new.name:
        raise RollbackError(f"catalog name changed from {current.name!r} to {new.name!r}")
    if new.serial <= current.serial:
        raise RollbackError(
            f"catalog {new.name!r} serial {new.serial} is not newer than active serial {current.serial}"
        )
    if new.rollback and (new.supersedes is None or new.supersedes < current.serial):
        raise RollbackError(
            f"rollback {new.name!r} serial {new.serial} supersedes serial {new.supersedes}, older than the"
            f" active serial {current.serial}"
        )
