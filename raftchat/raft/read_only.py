"""ReadIndex on the leader: reads that wait until a quorum confirms the leadership.

A read is served at the commit index the leader had when the read arrived, once a
majority of voters has echoed a heartbeat sent after it (Raft thesis, 6.4): then no
other leader can have committed anything newer. A leader that has not committed an
entry of its own term yet does not know the latest commit index: such reads wait
for that first commit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .messages import NodeId


@dataclass(slots=True)
class PendingRead:
    origin: NodeId
    """The node that asked (this one, or a follower that forwarded the read)."""
    request_id: int
    index: int
    """The commit index to serve the read at."""
    heartbeat_seq: int
    """The heartbeat a quorum must echo to confirm the leadership."""


class ReadOnly:
    """The leader's reads waiting for a quorum, and for its first commit of the term."""

    def __init__(self) -> None:
        self._waiting: deque[PendingRead] = deque()
        self._before_commit: list[tuple[NodeId, int]] = []
        self.round_needed = False
        """A heartbeat round must go out (with the next Ready) to confirm waiting reads."""

    @property
    def waiting(self) -> bool:
        """Any read waiting for heartbeat echoes?"""
        return bool(self._waiting)

    @property
    def waiting_for_commit(self) -> bool:
        return bool(self._before_commit)

    def wait_for_commit(self, origin: NodeId, request_id: int) -> None:
        """Hold the read until the leader commits an entry of its term."""
        self._before_commit.append((origin, request_id))

    def take_waiting_for_commit(self) -> list[tuple[NodeId, int]]:
        """The reads held for the first commit of the term, which just happened."""
        waiting, self._before_commit = self._before_commit, []
        return waiting

    def wait_for_quorum(self, read: PendingRead) -> None:
        self._waiting.append(read)
        self.round_needed = True

    def release(self, confirmed: Callable[[int], bool]) -> list[PendingRead]:
        """The oldest reads whose heartbeat a quorum has now echoed (``confirmed(seq)``)."""
        waiting = self._waiting
        released = []
        while waiting and confirmed(waiting[0].heartbeat_seq):
            released.append(waiting.popleft())
        return released

    def take_all(self) -> list[tuple[NodeId, int]]:
        """Leadership is lost: every read still waiting, as (origin, request id)."""
        reads = [(read.origin, read.request_id) for read in self._waiting]
        reads.extend(self._before_commit)
        self._waiting.clear()
        self._before_commit = []
        self.round_needed = False
        return reads
