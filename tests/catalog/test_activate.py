from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from catalog.activate import check_activation
from catalog.errors import ExpiredError, RollbackError
from catalog.models import Catalog

NOW = datetime(2024, 6, 1, 12, tzinfo=timezone.utc)


def cat(serial: int, expires_in: timedelta = timedelta(days=1), rollback: bool = False, name: str = "prod") -> Catalog:
    return Catalog(name=name, serial=serial, created=NOW - timedelta(hours=1), expires=NOW + expires_in,
                   rollback=rollback)


def test_first_catalog_and_growing_serial_activate() -> None:
    check_activation(None, cat(1), NOW)
    check_activation(cat(1), cat(2), NOW)
    check_activation(cat(1), cat(100), NOW)


@pytest.mark.parametrize("serial", [1, 0])
def test_same_or_lower_serial_is_a_rollback(serial: int) -> None:
    with pytest.raises(RollbackError):
        check_activation(cat(1), cat(serial), NOW)


def test_signed_rollback_flag_allows_lower_serial_only() -> None:
    check_activation(cat(5), cat(3, rollback=True), NOW)
    with pytest.raises(RollbackError):
        check_activation(cat(5), cat(5, rollback=True), NOW)


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
