"""Client order: a leader appends each client's proposals in serial order, each once.

A client (one chat session) numbers its proposals 1, 2, 3... and names the previous
one it sent (``prev_serial``, 0 for the first of a run). The leader appends serial
``n`` only right after the client's last serial in its log, so a proposal lost on
the way cannot be overtaken by the next one; a serial already in the log is not
appended again. For that it keeps, per client, the highest serial in the log
(after the snapshot: with its index) and, for compacted entries, the last serial
the state machine holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .log import RaftLog
from .messages import Entry, NodeId
from .ready import RequestResult, RequestStatus
from .reasons import Reason

MAX_REMEMBERED_CLIENTS = 4096
"""Clients whose last serial is remembered from compacted entries (least recently seen
forgotten first); a forgotten client is unknown to the ordering check, which then lets its
next proposal through whatever came before (as after a session restart)."""


class ClientOrder:
    """Each client's last serial in the log, and the proposals this leader appended."""

    def __init__(self, node_id: NodeId, log: RaftLog) -> None:
        self._node_id = node_id
        self._log = log
        self._in_log: dict[str, tuple[int, int]] = {}
        """Per client id: the highest serial in the log after the snapshot, and its index."""
        self._compacted: dict[str, int] = {}
        """Per client id: the highest serial at or below the snapshot index, as far as known
        (told by the runtime from its state machine, or kept from compacted entries)."""
        self._uncommitted: dict[tuple[str, int], tuple[int, int]] = {}
        """(client id, serial) -> (index, term) of proposals appended as leader in this term
        and not yet committed: a resend is answered with where it already is."""
        self.rebuild()

    # --- following the log ---------------------------------------------------------

    def rebuild(self) -> None:
        """Recompute the per-client serials from the log after the snapshot (on start, after
        a truncation or a compaction): O(log length), never on the hot path."""
        self._in_log = {}
        self.observe(self._log.entries_after_snapshot())

    def observe(self, entries: Iterable[Entry]) -> None:
        """Entries were appended to the log."""
        serials = self._in_log
        for entry in entries:
            client_id = entry.client_id
            if client_id:
                known = serials.get(client_id)
                if known is None or entry.serial >= known[0]:
                    serials[client_id] = (entry.serial, entry.index)

    def remember_compacted(self, compacted: Iterable[Entry]) -> None:
        """Keep the last serial of clients whose entries are about to be compacted."""
        base = self._compacted
        for entry in compacted:
            client_id = entry.client_id
            if client_id:
                last = base.pop(client_id, 0)
                base[client_id] = max(last, entry.serial)  # re-inserted: most recently seen
        while len(base) > MAX_REMEMBERED_CLIENTS:
            del base[next(iter(base))]

    def restore(self, serials: Mapping[str, int]) -> None:
        """The state machine's last applied serial per client (see
        :meth:`RaftCore.restore_client_serials`)."""
        base = {client: serial for client, serial in serials.items() if client}
        if len(base) > MAX_REMEMBERED_CLIENTS:
            base = dict(list(base.items())[-MAX_REMEMBERED_CLIENTS:])
        self._compacted = base

    def forget_log(self) -> None:
        """The log was replaced by a snapshot: nothing is known until the runtime tells
        what the snapshot holds."""
        self._in_log = {}
        self._compacted = {}

    # --- the leader's check ----------------------------------------------------------

    def appended(self, client_id: str, serial: int, index: int, term: int) -> None:
        """This leader appended the proposal at ``index``."""
        self._uncommitted[(client_id, serial)] = (index, term)

    def appended_at(self, client_id: str, serial: int) -> tuple[int, int] | None:
        """(index, term) of a proposal this leader appended and has not committed yet."""
        return self._uncommitted.get((client_id, serial))

    @property
    def has_uncommitted(self) -> bool:
        return bool(self._uncommitted)

    def committed(self, entries: Iterable[Entry]) -> None:
        """``entries`` are handed out as committed: a resend of them is a plain duplicate."""
        uncommitted = self._uncommitted
        for entry in entries:
            if entry.client_id:
                uncommitted.pop((entry.client_id, entry.serial), None)

    def stop_leading(self) -> None:
        self._uncommitted.clear()

    def check(self, client_id: str, serial: int, prev_serial: int) -> RequestResult | None:
        """None if the proposal may be appended; else the answer that keeps client order:
        a duplicate (already in the log) or a refusal naming where the client must resume."""
        # A client unknown here has no serial in the log: only the first proposal of a run
        # (prev_serial 0) may start it. Its runtime proposes with prev_serial 0 whenever
        # the previous proposal is known applied, so a forgotten client is not stuck.
        last = self._last_serial(client_id) or 0
        if serial <= last:
            located = self._in_log.get(client_id)
            if located is not None and located[0] == serial:
                index = located[1]
                log = self._log
                if log.snapshot_index < index <= log.last_index:
                    entry = log.entry(index)
                    if entry.client_id == client_id and entry.serial == serial:
                        return RequestResult(
                            RequestStatus.APPENDED,
                            index=index,
                            term=entry.term,
                            leader=self._node_id,
                        )
            return RequestResult(
                RequestStatus.DUPLICATE, error=Reason.DUPLICATE, leader=self._node_id
            )
        if prev_serial and prev_serial != last:
            error = Reason.OUT_OF_ORDER.format(
                serial=serial, client=client_id, prev=prev_serial, last=last
            )
            return RequestResult(
                RequestStatus.REJECTED,
                error=error,
                leader=self._node_id,
                out_of_order=True,
                resume_after=last,
            )
        return None

    def _last_serial(self, client_id: str) -> int | None:
        """The client's highest serial in the log (compacted part included); None if unknown."""
        known = self._in_log.get(client_id)
        base = self._compacted.get(client_id)
        if known is None:
            return base
        return known[0] if base is None or known[0] >= base else base
