"""Lazy ticking: the core's logical clock, driven without waking every tick.

The core says how many ticks until a timer can act (``ticks_until_due``); the ticker
sleeps until then, or until an input brings a timer closer. Every tick that fell due
is given before any other input (:meth:`LazyTicker.catch_up`), so the timers behave as
if ticked at every interval. A paused process (SIGSTOP, a suspended laptop) does not
replay its pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)

MAX_IDLE_TICKS = 100
"""The tick loop wakes at least this often, whatever the core says."""
PAUSED_TICKS = 10
"""Waking this many ticks late means the process was paused, not busy."""


class Tickable(Protocol):
    def tick(self) -> None: ...

    def ticks_until_due(self) -> int: ...


class LazyTicker:
    """Gives a core its ticks; ``on_ticked`` runs after any ticks were given."""

    def __init__(
        self,
        core: Callable[[], Tickable],
        tick_ms: int,
        on_ticked: Callable[[], None],
    ) -> None:
        self._core = core
        self.interval = tick_ms / 1000
        self._on_ticked = on_ticked
        self._loop: asyncio.AbstractEventLoop | None = None
        self.origin: float | None = None
        """Loop time of tick 0; the core has been given ``given`` ticks since."""
        self.given = 0
        self.deadline = 0
        """The tick the tick loop sleeps until."""
        self._retick = asyncio.Event()

    def anchor(self, loop: asyncio.AbstractEventLoop) -> None:
        """Tick 0 is now, on ``loop``."""
        self._loop = loop
        self.origin = loop.time()

    async def run(self) -> None:
        """Tick the core lazily until cancelled."""
        loop = asyncio.get_running_loop()
        self.anchor(loop)
        assert self.origin is not None
        while True:
            self.catch_up()
            wait = min(self._core().ticks_until_due(), MAX_IDLE_TICKS)
            self.deadline = self.given + wait
            self._retick.clear()
            delay = self.origin + self.deadline * self.interval - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retick.wait(), delay)

    def catch_up(self) -> None:
        """Give the core the ticks that fell due by now; after a pause of the process only
        those due before it: it is not replayed."""
        loop, origin = self._loop, self.origin
        if loop is None or origin is None:
            return
        now = loop.time()
        target = int((now - origin) / self.interval)
        behind = target - self.given
        if behind <= 0:
            return
        if target - self.deadline > PAUSED_TICKS:
            behind = max(1, self.deadline - self.given)
            self.origin = now - (self.given + behind) * self.interval
        core = self._core()
        for _ in range(behind):
            core.tick()
        self.given += behind
        self._on_ticked()

    def retick_if_sooner(self) -> None:
        """Wake the tick loop if an input made a timer due before its planned wake."""
        if self.given + self._core().ticks_until_due() < self.deadline:
            self._retick.set()
