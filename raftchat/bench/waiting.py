"""Waiting on what node processes print, without polling.

A wait is a condition over the nodes' recorded output; it is re-checked after every
chunk of output any node of the group prints, so it ends on the read that made it true
(with that read's time), and it fails as soon as a node it depends on exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from raftchat.bench.errors import BenchError


class Watched(Protocol):
    """A node process a wait depends on: the wait fails once it stops running."""

    name: str
    stderr_path: Path

    @property
    def running(self) -> bool: ...


@dataclass(frozen=True, eq=False)
class _Waiter:
    condition: Callable[[], bool]
    watch: tuple[Watched, ...]
    done: asyncio.Future[float]


class Waiters:
    """Conditions waited on across the node processes that share this object."""

    def __init__(self) -> None:
        self._waiting: list[_Waiter] = []

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float,
        what: str,
        watch: Sequence[Watched] = (),
    ) -> float:
        """Wait until ``condition()`` holds; the perf_counter time it first held.

        Raises :class:`BenchError` after ``timeout`` seconds, or as soon as one of the
        ``watch`` nodes is not running."""
        if condition():
            return time.perf_counter()
        _raise_if_ended(watch)
        waiter = _Waiter(condition, tuple(watch), asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            return await asyncio.wait_for(waiter.done, timeout)
        except TimeoutError:
            raise BenchError(f"no {what} within {timeout:g} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiting.remove(waiter)

    def wake(self, now: float) -> None:
        """Re-check every condition: new output was read (or a node ended) at ``now``."""
        for waiter in list(self._waiting):
            if waiter.done.done():
                continue
            try:
                if waiter.condition():
                    waiter.done.set_result(now)
                else:
                    _raise_if_ended(waiter.watch)
            except Exception as error:  # the waiting side sees the condition's own error
                waiter.done.set_exception(error)


def _raise_if_ended(watch: Sequence[Watched]) -> None:
    for node in watch:
        if not node.running:
            raise BenchError(f"node {node.name} exited (see {node.stderr_path})")
