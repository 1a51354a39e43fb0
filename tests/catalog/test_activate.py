from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from catalog.activate import check_activation
from catalog.errors import ExpiredError, RollbackError
from catalog.models import Catalog

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def cat(
    serial: int, expires_in: timedelta = timedelta(days=1), supersedes: int | None = None, name: str = "prod"
) -> Catalog:
    return Catalog(
        name=name,
        serial=serial,
        created=NOW - timedelta(hours=1),
        expires=NOW + expires_in,
        rollback=supersedes is not None,
        supersedes=supersedes,
    )


def test_first_catalog_and_growing_serial_activate() -> None:
    check_activation(None, cat(1), NOW)
    check_activation(cat(1), cat(2), NOW)
    check_activation(cat(1), cat(100), NOW)


@pytest.mark.parametrize("serial", [1, 0])
def test_same_or_lower_serial_is_a_rollback(serial: int) -> None:
    with pytest.raises(RollbackError):
        check_activation(cat(1), cat(serial), NOW)


def test_a_signed_rollback_has_a_higher_serial_and_supersedes_the_active_one() -> None:
    check_activation(cat(5), cat(6, supersedes=5), NOW)
    for stale in (cat(5, supersedes=4), cat(3, supersedes=2), cat(7, supersedes=4)):
        with pytest.raises(RollbackError):
            check_activation(cat(5), stale, NOW)


def test_no_old_envelope_can_be_replayed() -> None:
    """Issue 11 item 12: push 10, a signed rollback (11 superseding 10), then 12; replaying the
    rollback or 10 afterwards activates nothing."""
    active = cat(10)
    for new in (cat(11, supersedes=10), cat(12)):
        check_activation(active, new, NOW)
        active = new
    for replayed in (cat(11, supersedes=10), cat(10)):
        with pytest.raises(RollbackError):
            check_activation(active, replayed, NOW)


def test_expired_refused_even_when_newer() -> None:
    with pytest.raises(ExpiredError):
        check_activation(cat(1), cat(2, expires_in=timedelta(0)), NOW)
    with pytest.raises(ExpiredError):
        check_activation(None, cat(2, expires_in=-timedelta(seconds=1)), NOW)


def test_other_catalog_name_refused() -> None:
    with pytest.raises(RollbackError):
        check_activation(cat(1), cat(2, name="staging"), NOW)


def test_naive_now_refused() -> None:
    with pytest.raises(ValueError):
        check_activation(None, cat(1), NOW.replace(tzinfo=None))
