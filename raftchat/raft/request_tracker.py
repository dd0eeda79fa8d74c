"""The requests a node waits on, until each gets its final word.

A proposal or read forwarded to the leader waits for the leader's answer, or fails
when the leader changes or the answer takes too long. A proposal appended at an index
(here, or at the leader) waits until that index is handed out as committed, and is
reported committed only if the entry there is still the proposal.
"""

from __future__ import annotations

from collections import deque

from .messages import Entry, NodeId
from .ready import ProposalOutcome, ReadState
from .reasons import Reason


class RequestTracker:
    """Forwarded proposals and reads with their deadlines, and proposals awaiting commit."""

    def __init__(self) -> None:
        self._forwarded: dict[tuple[str, int], int] = {}
        """(client id, serial) of forwarded proposals -> their deadline."""
        self._forwarded_reads: dict[int, int] = {}
        """Request id of forwarded reads -> their deadline."""
        self._proposal_deadlines: deque[tuple[int, tuple[str, int]]] = deque()
        self._read_deadlines: deque[tuple[int, int]] = deque()
        self._awaiting_commit: dict[int, tuple[str, int, int]] = {}
        """Index -> (client id, serial, term) of the proposal appended there."""

    # --- forwarded requests --------------------------------------------------------

    def proposal_forwarded(self, client_id: str, serial: int, deadline: int) -> None:
        key = (client_id, serial)
        self._forwarded[key] = deadline
        self._proposal_deadlines.append((deadline, key))

    def read_forwarded(self, request_id: int, deadline: int) -> None:
        self._forwarded_reads[request_id] = deadline
        self._read_deadlines.append((deadline, request_id))

    def proposal_answered(self, client_id: str, serial: int) -> bool:
        """The leader answered a proposal; False if it is not (or no longer) waited on."""
        return self._forwarded.pop((client_id, serial), None) is not None

    def read_answered(self, request_id: int) -> bool:
        """The leader answered a read; False if it is not (or no longer) waited on."""
        return self._forwarded_reads.pop(request_id, None) is not None

    @property
    def has_deadlines(self) -> bool:
        return bool(self._proposal_deadlines or self._read_deadlines)

    def next_deadline(self) -> int | None:
        """The earliest tick at which a forwarded request may time out."""
        proposals, reads = self._proposal_deadlines, self._read_deadlines
        if proposals and reads:
            return min(proposals[0][0], reads[0][0])
        if proposals:
            return proposals[0][0]
        return reads[0][0] if reads else None

    def expire(
        self, now: int, outcomes: list[ProposalOutcome], read_states: list[ReadState]
    ) -> None:
        """Fail the forwarded requests whose deadline is ``now`` or earlier."""
        proposals = self._proposal_deadlines
        while proposals and proposals[0][0] <= now:
            deadline, key = proposals.popleft()
            if self._forwarded.get(key) == deadline:
                del self._forwarded[key]
                outcomes.append(ProposalOutcome(key[0], key[1], error=Reason.TIMED_OUT))
        reads = self._read_deadlines
        while reads and reads[0][0] <= now:
            deadline, request_id = reads.popleft()
            if self._forwarded_reads.get(request_id) == deadline:
                del self._forwarded_reads[request_id]
                read_states.append(ReadState(request_id, error=Reason.TIMED_OUT))

    def fail_forwarded(
        self, reason: str, outcomes: list[ProposalOutcome], read_states: list[ReadState]
    ) -> None:
        """Fail every forwarded request (the leader they went to is gone)."""
        if self._forwarded:
            for client_id, serial in self._forwarded:
                outcomes.append(ProposalOutcome(client_id, serial, error=reason))
            self._forwarded.clear()
        if self._forwarded_reads:
            for request_id in self._forwarded_reads:
                read_states.append(ReadState(request_id, error=reason))
            self._forwarded_reads.clear()

    # --- proposals awaiting commit -----------------------------------------------------

    def await_commit(self, index: int, term: int, client_id: str, serial: int) -> None:
        self._awaiting_commit[index] = (client_id, serial, term)

    @property
    def awaiting_commit(self) -> bool:
        return bool(self._awaiting_commit)

    def resolve_committed(
        self, committed: list[Entry], leader: NodeId, outcomes: list[ProposalOutcome]
    ) -> None:
        """``committed`` are handed out: report the proposals awaiting them."""
        awaiting = self._awaiting_commit
        for entry in committed:
            if not awaiting:
                return
            tracked = awaiting.pop(entry.index, None)
            if tracked is None:
                continue
            client_id, serial, term = tracked
            same = entry.term == term and entry.client_id == client_id and entry.serial == serial
            outcomes.append(
                ProposalOutcome(
                    client_id,
                    serial,
                    entry.index,
                    term,
                    "" if same else Reason.OVERWRITTEN,
                    leader,
                )
            )

    def resolve_unknown(self, through: int, outcomes: list[ProposalOutcome]) -> None:
        """A snapshot replaced the log through ``through``: those outcomes are unknown."""
        awaiting = self._awaiting_commit
        for index in [i for i in awaiting if i <= through]:
            client_id, serial, term = awaiting.pop(index)
            outcomes.append(ProposalOutcome(client_id, serial, index, term, Reason.UNKNOWN))
