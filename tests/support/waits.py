"""Wait on a condition with a deadline, never a fixed sleep: a TTL that runs on another process's
clock (a mirror, a tracker, Redis) is over when its effect shows, however loaded the machine is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], done: Callable[[T], bool], what: str, timeout: float = 15.0, interval: float = 0.1
) -> T:
    """Call `probe` until `done(value)`; its last value, or an AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {value!r})")
        time.sleep(interval)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    what: str,
    timeout: float = 15.0,
    interval: float = 0.05,
) -> T:
    """`wait_until` for a coroutine probe."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)
