"""The simulated workload's actors: chat clients and linearizable reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..messages import NodeId


@dataclass
class SimClient:
    """A chat client as the runtime is one: it proposes through one node, several
    proposals in flight, each naming the previous one of its run (``prev_serial``) for the
    session rule of the state machine."""

    client_id: str
    window: int = 1
    """Most unacknowledged proposals at a time."""
    node: NodeId = ""
    serial: int = 0
    """The last serial allocated."""
    run_first: int = 1
    """The first serial of the current run: proposed with ``prev_serial`` 0."""
    pending: dict[int, bytes] = field(default_factory=dict)
    """Payloads of unacknowledged proposals, in serial order."""
    held: bool = False
    """A proposal was refused: send every pending one again (in order) at ``retry_at``."""
    retry_at: int = 0
    sent_at: int = 0
    resumed: tuple[int, int] = (-1, -1)
    """(resume_after, last serial resent) of the last out-of-order drop handled."""

    @property
    def outstanding(self) -> bool:
        return bool(self.pending)

    def prev_serial(self, serial: int) -> int:
        """The previous proposal while it is unacknowledged; 0 once it is (it is applied:
        nothing can overtake it any more) and for the first of a run."""
        return serial - 1 if serial - 1 in self.pending else 0


@dataclass
class SimRead:
    """A ReadIndex read: it must see every write acknowledged before it began."""

    request_id: int
    node: NodeId
    acked_before: dict[str, int]
    """Each client's highest acknowledged serial when the read began."""
    started: int
    index: int = -1
    """The read index once the node got it (-1 before)."""
