"""Waiting in tests for a condition to hold: never a fixed sleep, always a deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from textual.pilot import Pilot

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
POLL_INTERVAL = 0.01


async def wait_until(
    condition: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "",
    *,
    changed: asyncio.Event | None = None,
    pilot: Pilot | None = None,
    details: Callable[[], str] | None = None,
    interval: float = POLL_INTERVAL,
) -> T:
    """Wait until ``condition()`` is truthy and return its value.

    With ``changed``, the condition is re-checked each time that event is set (whoever
    changes the state sets it); otherwise it is polled every ``interval`` seconds, under
    a Textual ``pilot`` by letting the app process its messages in between. After
    ``timeout`` seconds the test fails, naming ``what`` (and ``details()`` if given).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := condition()):
        remaining = deadline - loop.time()
        if remaining <= 0:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what or condition}{extra}"
            )
        if changed is not None:
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        elif pilot is not None:
            await pilot.pause(interval)
        else:
            await asyncio.sleep(interval)
    return result
