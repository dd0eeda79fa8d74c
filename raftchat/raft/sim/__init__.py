"""Deterministic fault simulator for the Raft core.

``python -m raftchat.raft.sim --seeds N [--seed S] [--nodes K]`` runs N
seeded schedules. Each drives a cluster of 1-7 nodes (plus spare nodes that
join later) through message loss, duplication, reordering and delay;
symmetric, asymmetric and leader-isolating partitions; crashes (dropping
whatever was not persisted) and restarts from storage; membership churn
(including removing the leader); leadership transfers; compaction and
snapshot installs; clients that pipeline proposals through their node with
``prev_serial`` (forwarded ones sometimes lost), learn from what their node
applies (applied, duplicate, out of order: the chat's session rule, in a small
copy in :class:`SessionStateMachine`), resend in order with the same (client
id, serial), and restart when their node crashes; and ReadIndex reads. After
every step it checks:

- at most one leader per term;
- log matching (a hash chain over each node's persisted log);
- leader completeness (a new leader holds every committed entry);
- state machine safety (equal state at equal applied index) and committed
  entries never change;
- each acknowledged proposal is applied exactly once (at one index; a
  duplicate is acknowledged only if its original was applied), in client order;
- per-sender FIFO: each client's applied serials follow one another without a
  hole (serial n + 1 right after n), except where the client started a new run
  (a restart, proposing with ``prev_serial`` 0);
- a read sees every write acknowledged before the read began.

Then faults stop and the cluster must elect a leader, commit every pending
proposal and bring every member up to date within a bounded number of ticks.

Some seeds run a witness too (:mod:`.witnesses`): faults, churn and checks of
its own (log matching on (index, term), it never leads, it never gets a
payload but configurations, it knows the members' configuration at its last
position), and with two members a last check: one member dies for good, and the
survivor must lead and remove it within a bound. Some seeds without a witness end
with a forced change (:mod:`.forgetting`): of two voters one dies, the survivor
carries on alone (``force_remove``) and commits, then the dead one restarts from its
storage and is added back, the checks above holding throughout.
A violation prints the seed and the last events; the last line printed is
``seeds=N violations=V``. Replay one schedule with ``--seed S --seeds 1``.
"""

from .invariants import Violation
from .models import (
    MemoryStorage,
    SessionStateMachine,
    SimNode,
    StorageError,
    client_command,
    prev_serial_of,
)
from .runner import format_failure, main, run_seeds
from .simulation import SimResult, SimSettings, Simulation

__all__ = [
    "MemoryStorage",
    "SessionStateMachine",
    "SimNode",
    "SimResult",
    "SimSettings",
    "Simulation",
    "StorageError",
    "Violation",
    "client_command",
    "format_failure",
    "main",
    "prev_serial_of",
    "run_seeds",
]
