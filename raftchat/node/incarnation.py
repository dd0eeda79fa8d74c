"""Which run of a member something comes from: the node's incarnation.

A member that quits asks to be removed with a replicated ``Leave`` request; it may start
again on the same data dir (same node id) before the leader acts on it. The request must
then not remove the new run. So every start of a node is a new *incarnation*: the leave
request names the incarnation that made it, every link opens with the sender's current
incarnation (an :class:`IncarnationHello` right after the ``ClusterHello``), and the leader
ignores a request older than the newest incarnation it heard from that member
(:func:`raftchat.node.membership_plan.leave_is_current`).

An incarnation is a counter kept in the data dir (:meth:`Storage.begin_incarnation`),
raised on every start to at least the wall clock in microseconds:

- *ordered, not random*: the rule is "older than the newest heard", so a request or a
  frame of an earlier run that arrives late is recognised as earlier; random values could
  only be compared for equality with the last value heard;
- *durable*: the order holds across restarts of the process and of the machine;
- *at least the clock*: a data dir restored from a backup (or copied) would otherwise
  repeat incarnations its peers heard already, and its own leave requests would be
  ignored as stale. The counter still grows when the clock steps back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from raftchat.raft import NodeId
from raftchat.storage import Storage


@dataclass(frozen=True, slots=True)
class IncarnationHello:
    """The sender's current incarnation: the second frame on every new link.

    A frame of its own rather than a field of the ``ClusterHello``, so that frame stays as
    earlier releases read it: a node of an earlier release drops this one as malformed
    (counted, nothing more), and a node that hears no incarnation from a peer treats that
    peer's leave requests as it always did."""

    sender: NodeId
    incarnation: int


def begin_incarnation(storage: Storage) -> int:
    """This start's incarnation of the node on ``storage`` (stored before it is used)."""
    return storage.begin_incarnation(at_least=time.time_ns() // 1000)
