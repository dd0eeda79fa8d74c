"""The node's own proposals, from ``send_chat`` until they are applied: a pure tracker.

Every proposal gets the next serial of this client and names the previous one
(``prev_serial``) while that is not known applied: the chat session applies a client's
commands only in that order (:mod:`raftchat.chat`). The tracker keeps them in order
through leader changes, refusals and retries: it submits new ones while fewer than
``window`` are unacknowledged, holds the rest (and everything behind a refused one) in
order, resends everything after our last applied serial when the session drops one of
ours as out of order, and proposes again under a fresh serial what a later serial of
ours overtook (the session drops it as a duplicate). When the node is about to leave its
cluster to merge into another, the tracker pauses (new proposals wait for the survivor)
and then hands its pending proposals over to the merge queue. It never touches a clock, a
loop or the core: the runtime gives it ``submit`` and the time.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from raftchat.chat import Command, encode_command
from raftchat.raft import ProposalOutcome, RequestResult, RequestStatus

logger = logging.getLogger(__name__)

ProposalKind = Literal["message", "nick", "leave", "merge"]

Submit = Callable[[bytes, int], RequestResult]
"""``submit(data, serial)``: propose to the core now."""


@dataclass(slots=True)
class Proposal:
    """An own proposal not yet known to be applied."""

    serial: int
    command: Command
    prev_serial: int
    data: bytes
    """``command`` encoded following ``prev_serial``."""
    sent_at: float
    kind: ProposalKind
    message_id: str
    """The id the sender was given; kept if the proposal is re-proposed with a new serial."""
    reached_cluster: bool = False
    """The core took it at least once (appended or forwarded): the cluster may commit it,
    even after a later copy failed."""


@dataclass(frozen=True, slots=True)
class Settled:
    """What a snapshot from the leader settled: messages to acknowledge (with their index)
    and whether a leave request of ours was among what it covers."""

    acknowledged: tuple[tuple[Proposal, int], ...] = ()
    leave_applied: bool = False


class ProposalTracker:
    """Own proposals in serial order: submitted, held, retried, acknowledged once."""

    def __init__(
        self,
        client_id: str,
        submit: Submit,
        window: int,
        first_serial: int,
        sign: Callable[[Command, int], Command] | None = None,
    ) -> None:
        self.client_id = client_id
        self._sign = sign
        """Signs a command for its serial (:mod:`raftchat.chat.signing`); None: unsigned."""
        self._submit_to_core = submit
        self.window = window
        """Own proposals sent but not yet acknowledged; later ones wait in order."""
        self.serial = first_serial
        """The last serial handed out."""
        self.pending: OrderedDict[int, Proposal] = OrderedDict()
        """Own proposals not yet applied, in serial order (the order they were made)."""
        self.held: deque[int] = deque()
        """Serials of pending proposals not submitted to the current leader (there was
        none, or it refused): always the newest ones, a suffix of ``pending``. While
        any is held, new proposals are held behind it, so serial n+1 is never proposed
        before n (it would only be dropped as out of order)."""
        self._resumed: tuple[int, int] = (-1, -1)
        """(resume_after, last serial sent again) of the last out-of-order drop acted on:
        drops of copies sent before that resend are answered by it already."""
        self.resume_due: tuple[int, int] | None = None
        """(serial, our last applied serial) of the latest out-of-order drop of ours,
        acted on at the end of the round that applied it."""
        self.paused = False
        """The node is about to leave its cluster to merge into another: new proposals
        are held, and only those sent already go again (:meth:`unsettled`)."""
        self.handed_over: dict[int, Proposal] = {}
        """Messages that were pending when the node left its cluster to merge
        (:meth:`hand_over`), by serial: never sent again from here, acknowledged when the
        channel applies them."""

    def __bool__(self) -> bool:
        return bool(self.pending)

    def unsettled(self) -> int:
        """Own proposals that reached the cluster and are not applied yet: it may still
        commit them, whatever became of the copies sent since."""
        return sum(proposal.reached_cluster for proposal in self.pending.values())

    # --- new proposals --------------------------------------------------------------

    def propose(self, command: Command, kind: ProposalKind, now: float) -> str:
        """Track and submit (or hold) a new proposal; return its message id. Raises
        :class:`~raftchat.chat.InvalidCommandError` (tracking nothing) for a command every
        node would refuse."""
        serial = self.serial + 1
        prev_serial = self._prev_serial(serial)
        if self._sign is not None:
            command = self._sign(command, serial)
        data = encode_command(command, prev_serial=prev_serial)
        self.serial = serial
        message_id = f"{self.client_id}:{serial}"
        proposal = Proposal(serial, command, prev_serial, data, now, kind, message_id)
        self.pending[serial] = proposal
        self._enqueue(proposal, now)
        return message_id

    def _enqueue(self, proposal: Proposal, now: float) -> None:
        """Submit a proposal newer than every pending one, or hold it behind held ones.
        O(1): this is the hot path of every message sent."""
        in_flight = len(self.pending) - len(self.held) - 1
        if self.paused or self.held or in_flight >= self.window:
            proposal.sent_at = now
            self.held.append(proposal.serial)
        elif not self._submit(proposal, now):
            self.held.append(proposal.serial)

    def _prev_serial(self, serial: int) -> int:
        """What the session must have applied before ``serial``: the previous proposal
        while it is unacknowledged; 0 once it is applied (nothing can overtake it any more:
        this also keeps a client the session forgot from being dropped forever) and for
        the first."""
        return serial - 1 if serial - 1 in self.pending else 0

    def _submit(self, proposal: Proposal, now: float) -> bool:
        """Propose now; False if the core refused it (no leader known, ...)."""
        proposal.sent_at = now
        serial = proposal.serial
        prev_serial = self._prev_serial(serial)
        if prev_serial != proposal.prev_serial:  # its predecessor was applied meanwhile
            proposal.prev_serial = prev_serial
            proposal.data = encode_command(proposal.command, prev_serial=prev_serial)
        result = self._submit_to_core(proposal.data, serial)
        if result.status is RequestStatus.REJECTED:
            logger.debug("proposal %d held: %s", serial, result.error)
            return False
        proposal.reached_cluster = True
        return True

    # --- retries ----------------------------------------------------------------------

    def out_of_order(self, serial: int, last_applied_serial: int) -> None:
        """The session dropped our ``serial`` as out of order: an earlier proposal of ours
        is missing before it, and ``last_applied_serial`` is the last one applied. Acted
        on once the round's entries are applied (:meth:`after_round`)."""
        self.resume_due = (serial, last_applied_serial)

    def resume(self, serial: int, resume_after: int, now: float) -> None:
        """Our ``serial`` was dropped as out of order, and our serials up to
        ``resume_after`` are applied. Send every pending proposal after that again, in
        serial order (and nothing else). Drops of the copies sent before this resend say
        the same thing and are skipped; if the resent ones are lost as well, the retry
        timer or the next leader change sends everything again."""
        if serial not in self.pending:
            return  # a later copy of it applied, or it was proposed again already
        if self._resumed[0] == resume_after and serial <= self._resumed[1]:
            return
        serials = [s for s in self.pending if s > resume_after]
        if not serials:
            return
        logger.debug("dropped out of order after %d: resending %d", resume_after, len(serials))
        self._resumed = (resume_after, serials[-1])
        self._resubmit(serials, now)

    def _resubmit(self, serials: list[int], now: float) -> None:
        """Submit pending proposals again in the given (ascending serial) order. If one is
        refused, or ``window`` have gone, it and every pending proposal after it are held
        until a leader takes them. While paused, held ones stay held."""
        if self.paused and self.held:
            serials = [serial for serial in serials if serial < self.held[0]]
        budget = self.window
        for serial in serials:
            proposal = self.pending.get(serial)
            if proposal is None:
                continue
            if budget == 0 or not self._submit(proposal, now):
                self.held = deque(s for s in self.pending if s >= serial)
                return
            budget -= 1
        if serials and self.held and serials[-1] >= self.held[-1]:
            self.held.clear()

    def _resubmit_held(self, now: float) -> None:
        """Submit held proposals, oldest first, until one is refused again or ``window``
        are unacknowledged."""
        held = self.held
        while held and not self.paused and len(self.pending) - len(held) < self.window:
            proposal = self.pending.get(held[0])
            if proposal is not None and not self._submit(proposal, now):
                return
            held.popleft()

    def resend_all(self, now: float) -> None:
        """Every unacknowledged proposal again, in serial order (after a leader change, or
        when the oldest has had no answer for the retry interval)."""
        self._resumed = (-1, -1)
        self._resubmit(list(self.pending), now)

    def retry_stale(self, now: float, retry_after: float) -> None:
        """Resend everything if the oldest proposal has had no answer for ``retry_after``.
        Pending proposals are in the order they were last sent, so looking at the oldest
        is enough and keeps this O(1) however many are in flight."""
        oldest = next(iter(self.pending.values()), None)
        if oldest is not None and now - oldest.sent_at > retry_after:
            self.resend_all(now)

    def after_round(
        self,
        outcomes: Sequence[ProposalOutcome],
        *,
        new_leader: bool,
        leader_known: bool,
        now: float,
    ) -> None:
        """Retry what a round says failed, in serial order, once the core knows the current
        leader: a new leader gets everything unacknowledged; otherwise an out-of-order drop
        applied in the round resends everything after our last applied serial (which
        covers the failed ones), else the failed ones go again, and held ones go once the
        leader takes proposals again."""
        failed = self._failed_serials(outcomes)
        resume, self.resume_due = self.resume_due, None
        if new_leader:
            self.resend_all(now)
        elif resume is not None:
            self.resume(*resume, now)
        elif failed:
            self._resubmit([s for s in failed if not self.held or s < self.held[0]], now)
        elif self.held and leader_known:
            self._resubmit_held(now)

    def _failed_serials(self, outcomes: Iterable[ProposalOutcome]) -> list[int]:
        """Own pending proposals not known to be committed, to retry in serial order. A
        committed one waits for its entry to be applied: the session says what it made
        of it."""
        failed = [
            outcome
            for outcome in outcomes
            if not outcome.committed
            and outcome.client_id == self.client_id
            and outcome.serial in self.pending
        ]
        if failed:
            logger.debug("%d proposal(s) failed (%s); retrying", len(failed), failed[0].error)
        return sorted(outcome.serial for outcome in failed)

    # --- applied ----------------------------------------------------------------------

    def acknowledge(self, serial: int) -> Proposal | None:
        """Our proposal ``serial`` was applied (or refused by the state machine), or a
        message of ours handed over to a merge queue was: forget it."""
        proposal = self.pending.pop(serial, None)
        return proposal if proposal is not None else self.handed_over.pop(serial, None)

    def hand_over(self) -> list[Proposal]:
        """The node leaves its cluster to merge into another: stop every pending proposal
        and return them in serial order. Sent again to the new cluster, they would land
        there ahead of the history they followed (the merge queue is proposed only once
        the node is a caught-up member), so the node puts its messages at the end of its
        merge queue instead (:func:`raftchat.node.merge.merge_items`); they are still
        acknowledged here once applied. A nick change is made again once the node is a
        member; merged messages of an earlier merge are in that queue already."""
        handed = list(self.pending.values())
        self.pending.clear()
        self.held.clear()
        self.paused = False
        self._resumed = (-1, -1)
        self.resume_due = None
        for proposal in handed:
            if proposal.kind == "message":
                self.handed_over[proposal.serial] = proposal
        return handed

    def applied_own_entry(self, serial: int, last_applied_serial: int, now: float) -> None:
        """An entry of ours at ``serial`` was applied, and ``last_applied_serial`` is our
        last serial the session holds now: if that is ``serial``, a nick change or leave
        request took effect (a message is acknowledged by the chat event); anything a
        later serial overtook is proposed again."""
        proposal = self.pending.get(serial)
        if proposal is not None and proposal.kind != "message" and serial == last_applied_serial:
            del self.pending[serial]
        self._repropose_overtaken(last_applied_serial, now)

    def _repropose_overtaken(self, last_applied_serial: int, now: float) -> None:
        """Pending proposals below our last applied serial can never apply (the session
        drops them): propose them again under fresh serials, oldest first. O(1) unless one
        was overtaken.

        The session applies a run's proposals only in order, so this takes a higher serial
        of ours applied before a pending proposal of another run: after a restart whose
        clock-derived serials start below serials of the previous run still in the log
        (the clock stepped back). The re-proposed message then commits after those, and
        its committed id differs from the one ``propose`` returned (the ack still carries
        the returned id)."""
        while self.pending:
            oldest = next(iter(self.pending.values()))
            if oldest.serial >= last_applied_serial:
                return
            self._repropose(oldest, last_applied_serial, now)

    def _repropose(self, proposal: Proposal, last_applied_serial: int, now: float) -> None:
        """Propose again under a fresh serial (its own one can no longer apply)."""
        del self.pending[proposal.serial]
        self.serial = max(self.serial, last_applied_serial) + 1
        proposal.serial = self.serial
        if self._sign is not None:  # a signature covers the serial
            proposal.command = self._sign(proposal.command, proposal.serial)
        proposal.prev_serial = self._prev_serial(proposal.serial)
        proposal.data = encode_command(proposal.command, prev_serial=proposal.prev_serial)
        self.pending[proposal.serial] = proposal
        self._enqueue(proposal, now)

    def settle_after_snapshot(
        self, last_applied_serial: int, own_indices: Mapping[int, int], now: float
    ) -> Settled:
        """Own proposals that a snapshot from the leader already covers never pass through
        apply: acknowledge them now (their later retries are dropped as duplicates and must
        not be mistaken for overtaken proposals, which would commit them twice), and the
        handed-over messages it holds.
        ``own_indices`` maps our serials in the restored history to their indices."""
        covered = [p for p in self.pending.values() if p.serial <= last_applied_serial]
        acknowledged: list[tuple[Proposal, int]] = []
        for serial in [s for s in self.handed_over if s in own_indices]:
            acknowledged.append((self.handed_over.pop(serial), own_indices[serial]))
        leave_applied = False
        for proposal in covered:
            index = own_indices.get(proposal.serial)
            if index is not None:
                del self.pending[proposal.serial]
                acknowledged.append((proposal, index))
            elif proposal.kind != "message":
                del self.pending[proposal.serial]  # a nick change or leave took effect
                leave_applied |= proposal.kind == "leave"
            else:
                # Not in the history: overtaken by a later serial (or older than the
                # history window, which a pending proposal never is in practice).
                self._repropose(proposal, last_applied_serial, now)
        return Settled(tuple(acknowledged), leave_applied)
