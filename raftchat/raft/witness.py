"""WitnessCore: a voter that never leads and keeps only the (index, term) of entries.

A channel of two members cannot survive losing one: with two voters, the survivor can
neither win an election nor remove the dead member. A witness is a third voter that
stores no chat content (the signaling server can host one): term, vote and the position
of every entry, enough to answer RequestVote by the usual up-to-date rule and to
acknowledge AppendEntries after the usual consistency check. It never campaigns, never
takes TimeoutNow and never proposes; the leader sends it entries without their data
(but for configuration entries: membership, not chat) and snapshots as metadata only,
which name their configuration (:mod:`.witness_feed`).

So the witness knows its cluster's configurations, by index, like a member
(:class:`~.configuration.ConfigurationHistory`: in force once appended, reverted when
truncated away), and checks every sender's role with the members' rule
(:func:`~.admission.refusal`) before anything else: once it knows a configuration
that lists it, only members are heard, only a voter that may lead (and within a term
only the leader it follows) sends it entries or snapshots, and only such a voter gets
its vote. Before that (a new witness) it takes a leader from anyone, as a newcomer
does; and like a member it is *stranded* after three election timeouts without a
leader, then taking a leader its configuration does not list. A refused message
changes nothing; :meth:`WitnessCore.step` says why, and :attr:`WitnessCore.refused`
counts it.

The contract is :class:`~raftchat.raft.core.RaftCore`'s, made small. Feed it
:meth:`WitnessCore.step` (and :meth:`WitnessCore.tick`: without ticks it keeps honouring
a leader it once heard, and refuses to vote), then::

    while witness.has_ready():
        ready = witness.ready()
        # 1. persist, in this order: ready.compacted (store it as the snapshot position
        #    with ready.snapshot_configuration, delete stored entries and configurations
        #    up to it), ready.snapshot (store it with ready.snapshot_configuration, delete
        #    ALL stored entries and configurations), ready.truncate_from (delete stored
        #    entries and configurations >= it, if non-zero), ready.entries and
        #    ready.configurations (append), ready.hard_state (if not None); then fsync.
        # 2. only then send ready.messages: they promise what step 1 stored.
        witness.advance(ready)

On restart, build it from exactly what was stored: :class:`WitnessState`.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .admission import STRANDED_ELECTION_TIMEOUTS, refusal
from .codec import CodecError, decode_configuration
from .configuration import ConfigurationHistory
from .messages import (
    NO_NODE,
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
)

logger = logging.getLogger(__name__)


class LogPosition(NamedTuple):
    """Where an entry sits in the log: all a witness keeps of it."""

    index: int
    term: int


class IndexedConfiguration(NamedTuple):
    """A configuration entry: where it sits and the configuration it sets."""

    index: int
    configuration: Configuration


UNKNOWN_CONFIGURATION = Configuration()
"""What a witness knows before any configuration reached it (it lists nobody, so the
witness is a newcomer to it), and what it records for a configuration entry that came
without a readable configuration."""


@dataclass(frozen=True, slots=True)
class WitnessHardState:
    """What must be on disk before a message that depends on it is sent."""

    term: int = 0
    vote: NodeId = NO_NODE


@dataclass(frozen=True, slots=True)
class WitnessState:
    """A witness's whole durable state; the core is rebuilt from exactly this."""

    hard_state: WitnessHardState = field(default_factory=WitnessHardState)
    snapshot: LogPosition = field(default_factory=lambda: LogPosition(0, 0))
    """The last entry compacted away (0, 0: none)."""
    entries: Sequence[LogPosition] = ()
    """Positions after the snapshot, contiguous (older ones are ignored)."""
    snapshot_configuration: Configuration = UNKNOWN_CONFIGURATION
    """The configuration in force at the snapshot position."""
    configurations: Sequence[IndexedConfiguration] = ()
    """The configuration entries among ``entries``, by increasing index (older ones are
    ignored)."""


@dataclass(frozen=True, slots=True)
class WitnessSettings:
    node_id: NodeId
    """This witness's id; must be non-empty."""
    election_timeout_ticks: int = 10
    """Leader lease, as with CheckQuorum: for this many ticks after hearing from a leader
    the witness ignores vote requests (unless they follow a leadership transfer), so a
    member that merely lost touch with a working leader cannot depose it."""
    leader_lease: bool = True
    compact_after: int = 1024
    """Positions past the snapshot beyond which the witness drops those known committed."""

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not self.node_id:
            raise ValueError(f"node_id must be a non-empty string, got {self.node_id!r}")
        for name in ("election_timeout_ticks", "compact_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(slots=True)
class WitnessReady:
    """Work for the runtime, in the order it must be done (see the module docstring)."""

    compacted: LogPosition | None = None
    snapshot: LogPosition | None = None
    snapshot_configuration: Configuration | None = None
    """The configuration in force at ``compacted`` or ``snapshot`` (None if neither)."""
    truncate_from: int = 0
    entries: list[LogPosition] = field(default_factory=list)
    configurations: list[IndexedConfiguration] = field(default_factory=list)
    """The configuration entries among ``entries``."""
    hard_state: WitnessHardState | None = None
    messages: list[tuple[NodeId, Message]] = field(default_factory=list)


class WitnessError(Exception):
    """The witness was used against its contract (bad stored state, bad call order...)."""


class _PositionLog:
    """A snapshot position followed by the terms of the entries after it."""

    def __init__(self, snapshot: LogPosition, entries: Sequence[LogPosition]) -> None:
        snapshot = LogPosition(*snapshot)
        kept = [LogPosition(*position) for position in entries if position[0] > snapshot.index]
        for offset, position in enumerate(kept):
            if position.index != snapshot.index + 1 + offset:
                raise WitnessError(
                    f"stored positions are not contiguous: expected index"
                    f" {snapshot.index + 1 + offset}, found {position.index}"
                )
        self.snapshot = snapshot
        self.terms = [position.term for position in kept]
        self.stable_index = self.last_index

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self.terms)

    @property
    def last_term(self) -> int:
        return self.terms[-1] if self.terms else self.snapshot.term

    def term(self, index: int) -> int | None:
        base = self.snapshot.index
        if index > base:
            position = index - base - 1
            return self.terms[position] if position < len(self.terms) else None
        if index == base:
            return self.snapshot.term
        return None

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        own_term = self.last_term
        return last_term > own_term or (last_term == own_term and last_index >= self.last_index)

    def first_index_of_term(self, term: int, upto: int) -> int:
        """First index whose term is >= ``term``, searching entries up to ``upto``."""
        base = self.snapshot.index
        high = max(0, min(upto, self.last_index) - base)
        return base + 1 + bisect.bisect_left(self.terms, term, 0, high)

    def positions(self, low: int) -> list[LogPosition]:
        base = self.snapshot.index
        start = max(low, base + 1)
        return [LogPosition(i, self.terms[i - base - 1]) for i in range(start, self.last_index + 1)]


class WitnessCore:
    """One witness's consensus state. Not thread-safe; drive it from one place."""

    def __init__(self, settings: WitnessSettings, state: WitnessState | None = None) -> None:
        self.settings = settings
        self.id = settings.node_id
        state = state if state is not None else WitnessState()
        self._log = _PositionLog(state.snapshot, state.entries)
        self._configurations = _restore_configurations(
            self._log, state.snapshot_configuration, state.configurations
        )
        self.term = state.hard_state.term
        self.vote = state.hard_state.vote
        self.leader: NodeId = NO_NODE
        self.commit = self._log.snapshot.index
        """Highest index known committed (volatile: only used to compact)."""
        self._since_leader = 0
        """Ticks since the leader last spoke."""
        self._ticks_without_leader = 0
        """Ticks since a leader last reached this witness (a stranded one takes a leader
        its configuration does not list: :mod:`.admission`)."""
        self.refused: Counter[str] = Counter()
        """Messages dropped because the sender's role does not allow them, by reason."""
        self._persisted = WitnessHardState(self.term, self.vote)
        self._storage_last_index = self._log.last_index
        self._pending_snapshot: LogPosition | None = None
        self._pending_compaction: LogPosition | None = None
        self._outbox: list[tuple[NodeId, Message]] = []
        self._ready_pending = False

    # --- what it holds ------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def last_term(self) -> int:
        return self._log.last_term

    @property
    def snapshot(self) -> LogPosition:
        return self._log.snapshot

    @property
    def configuration(self) -> Configuration:
        """The configuration in force at the end of its log (empty: none known yet)."""
        return self._configurations.current

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if compacted away or beyond the end."""
        return self._log.term(index)

    def state(self) -> WitnessState:
        """Everything held in memory, as :class:`WitnessState` (stored or not yet)."""
        log = self._log
        configurations = self._configurations
        return WitnessState(
            WitnessHardState(self.term, self.vote),
            log.snapshot,
            tuple(log.positions(log.snapshot.index + 1)),
            configurations.base,
            tuple(IndexedConfiguration(*change) for change in configurations.changes),
        )

    # --- inputs -------------------------------------------------------------------

    def tick(self) -> None:
        """Advance the logical clock by one tick (the leader lease and the time without a
        leader run on it)."""
        self._since_leader += 1
        self._ticks_without_leader += 1

    def step(self, message: Message) -> str | None:
        """Handle a message from a peer; what a witness has no part in is ignored.
        Returns why the message was refused (its sender's role does not allow it; see
        :mod:`.admission`), or None."""
        sender = getattr(message, "sender", NO_NODE)
        term = getattr(message, "term", None)
        if not sender or sender == self.id or not isinstance(term, int):
            return None
        problem = refusal(
            message,
            self_id=self.id,
            term=self.term,
            leader=self.leader,
            configuration=self._configurations.current,
            stranded=self._ticks_without_leader
            >= STRANDED_ELECTION_TIMEOUTS * self.settings.election_timeout_ticks,
            leased=self._in_lease(),
        )
        if problem is not None:
            self.refused[problem] += 1
            logger.debug(
                "%s: refusing %s from %s: %s", self.id, type(message).__name__, sender, problem
            )
            return problem
        if isinstance(message, RequestVote):
            self._handle_vote_request(message)
        elif isinstance(message, AppendEntries | InstallSnapshot):
            if message.term < self.term:
                # Tell the stale leader about the newer term so it steps down.
                self._send(sender, AppendEntriesResponse(self.id, self.term, False, self.commit))
                return
            self._follow(message.term, sender)
            if isinstance(message, AppendEntries):
                self._handle_append(message)
            else:
                self._handle_snapshot(message)
        elif message.term > self.term and not _is_granted_pre_vote(message):
            # Anything else from a newer term (a vote response, TimeoutNow...) only
            # teaches the term; a witness never campaigns nor takes over.
            self._adopt_term(message.term)
        return None

    # --- output -------------------------------------------------------------------

    def has_ready(self) -> bool:
        return bool(
            self._outbox
            or self._pending_snapshot
            or self._pending_compaction
            or self._log.stable_index < self._log.last_index
            or self._storage_last_index > self._log.last_index
            or WitnessHardState(self.term, self.vote) != self._persisted
            or self._compaction_due()
        )

    def ready(self) -> WitnessReady:
        """Collect the work for the runtime; then call :meth:`advance` with it."""
        if self._ready_pending:
            raise WitnessError("ready() called again before advance() of the previous one")
        if self._compaction_due():
            self._compact()
        log = self._log
        snapshot = self._pending_snapshot
        entries = log.positions(log.stable_index + 1)
        marked = snapshot is not None or self._pending_compaction is not None
        configurations = [
            IndexedConfiguration(*change)
            for change in self._configurations.changes
            if change[0] > log.stable_index
        ]
        truncate_from = 0
        if snapshot is None:
            if entries and entries[0].index <= self._storage_last_index:
                truncate_from = entries[0].index
            elif not entries and self._storage_last_index > log.last_index:
                truncate_from = log.last_index + 1
        hard_state = WitnessHardState(self.term, self.vote)
        ready = WitnessReady(
            compacted=self._pending_compaction,
            snapshot=snapshot,
            snapshot_configuration=self._configurations.base if marked else None,
            truncate_from=truncate_from,
            entries=entries,
            configurations=configurations,
            hard_state=hard_state if hard_state != self._persisted else None,
            messages=self._outbox,
        )
        self._outbox = []
        self._pending_snapshot = None
        self._pending_compaction = None
        self._ready_pending = True
        return ready

    def advance(self, ready: WitnessReady) -> None:
        """The runtime has done everything ``ready`` asked for."""
        self._ready_pending = False
        log = self._log
        if ready.hard_state is not None:
            self._persisted = ready.hard_state
        if ready.snapshot is not None:
            self._storage_last_index = ready.snapshot.index
        if ready.truncate_from:
            self._storage_last_index = min(self._storage_last_index, ready.truncate_from - 1)
        if ready.entries:
            last = ready.entries[-1]
            if log.term(last.index) == last.term:
                log.stable_index = max(log.stable_index, last.index)
            self._storage_last_index = last.index

    # --- voting -------------------------------------------------------------------

    def _handle_vote_request(self, m: RequestVote) -> None:
        if m.term < self.term:
            if m.pre_vote:
                self._send(m.sender, RequestVoteResponse(self.id, self.term, False, True))
            return
        if m.term > self.term:
            if self._in_lease() and not m.leadership_transfer:
                return
            if not m.pre_vote:
                self._adopt_term(m.term)
        can_vote = (
            self.vote == m.sender
            or (self.vote == NO_NODE and self.leader == NO_NODE)
            or (m.pre_vote and m.term > self.term)
        )
        if can_vote and self._log.is_up_to_date(m.last_log_index, m.last_log_term):
            if not m.pre_vote:
                self.vote = m.sender
                self._since_leader = 0
            response_term = m.term if m.pre_vote else self.term
            self._send(m.sender, RequestVoteResponse(self.id, response_term, True, m.pre_vote))
        else:
            self._send(m.sender, RequestVoteResponse(self.id, self.term, False, m.pre_vote))

    def _in_lease(self) -> bool:
        settings = self.settings
        return (
            settings.leader_lease
            and self.leader != NO_NODE
            and self._since_leader < settings.election_timeout_ticks
        )

    def _adopt_term(self, term: int) -> None:
        self.term = term
        self.vote = NO_NODE
        self.leader = NO_NODE

    def _follow(self, term: int, leader: NodeId) -> None:
        if term > self.term:
            self._adopt_term(term)
        self.leader = leader
        self._since_leader = 0
        self._ticks_without_leader = 0

    # --- the log ------------------------------------------------------------------

    def _handle_append(self, m: AppendEntries) -> None:
        log = self._log
        seq = m.heartbeat_seq
        if m.prev_log_index < self.commit:
            self._send(
                m.sender, AppendEntriesResponse(self.id, self.term, True, self.commit, 0, 0, seq)
            )
            return
        if log.term(m.prev_log_index) == m.prev_log_term:
            last_new = m.prev_log_index + len(m.entries)
            for entry in m.entries:
                own = log.term(entry.index)
                if own == entry.term:
                    continue
                if own is not None:  # a conflict (never at or below the commit: see above)
                    del log.terms[entry.index - log.snapshot.index - 1 :]
                    log.stable_index = min(log.stable_index, entry.index - 1)
                    self._configurations.truncate_from(entry.index)
                log.terms.append(entry.term)
                if entry.kind == EntryKind.CONFIG:
                    self._configurations.record(entry.index, self._read_configuration(entry))
            self.commit = max(self.commit, min(m.leader_commit, last_new))
            self._send(
                m.sender, AppendEntriesResponse(self.id, self.term, True, last_new, 0, 0, seq)
            )
            return
        if m.prev_log_index > log.last_index:
            conflict_index, conflict_term = log.last_index + 1, 0
        else:
            conflict_term = log.term(m.prev_log_index) or 0
            conflict_index = log.first_index_of_term(conflict_term, m.prev_log_index)
        self._send(
            m.sender,
            AppendEntriesResponse(
                self.id,
                self.term,
                False,
                0,
                conflict_index,
                conflict_term,
                seq,
                reject_index=m.prev_log_index,
            ),
        )

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        """Any chunk says where the snapshot ends, all a witness needs of it: it answers as
        if it held the whole snapshot (``done``), and ignores the data."""
        index, term = m.last_included_index, m.last_included_term
        log = self._log
        if index > self.commit:
            if log.term(index) == term:
                self.commit = index
            else:
                log.snapshot = LogPosition(index, term)
                log.terms = []
                log.stable_index = index
                self._configurations.reset(index, m.configuration)
                self.commit = index
                self._pending_snapshot = log.snapshot
                self._pending_compaction = None
        self._send(m.sender, InstallSnapshotResponse(self.id, self.term, index, 0, True))

    def _compaction_due(self) -> bool:
        log = self._log
        return (
            len(log.terms) > self.settings.compact_after
            and min(self.commit, log.stable_index) > log.snapshot.index
        )

    def _compact(self) -> None:
        """Drop the stored positions up to the commit index: every future leader has
        those entries, so the witness never needs to compare with them again."""
        log = self._log
        index = min(self.commit, log.stable_index)
        term = log.term(index)
        assert term is not None
        del log.terms[: index - log.snapshot.index]
        log.snapshot = LogPosition(index, term)
        self._configurations.compact_to(index)
        self._pending_compaction = log.snapshot

    def _read_configuration(self, entry: Entry) -> Configuration:
        """The configuration a CONFIG entry sets. One without a readable configuration
        (a leader that strips it) leaves the configuration unknown: the witness is then a
        newcomer again, as it was before it knew any."""
        try:
            return decode_configuration(entry.data)
        except CodecError as error:
            logger.warning(
                "%s: configuration entry %d carries no configuration (%s); until the next"
                " one, any leader is taken",
                self.id,
                entry.index,
                error,
            )
            return UNKNOWN_CONFIGURATION

    def _send(self, to: NodeId, message: Message) -> None:
        self._outbox.append((to, message))


def _restore_configurations(
    log: _PositionLog,
    snapshot_configuration: Configuration,
    configurations: Sequence[IndexedConfiguration],
) -> ConfigurationHistory:
    """The configuration history stored with ``log``'s positions."""
    history = ConfigurationHistory(log.snapshot.index, snapshot_configuration)
    for index, configuration in configurations:
        if index <= log.snapshot.index:
            continue
        if index <= history.current_index or index > log.last_index:
            raise WitnessError(
                f"stored configuration at {index} does not fit: after {history.current_index},"
                f" within the positions up to {log.last_index} expected"
            )
        history.record(index, configuration)
    return history


def _is_granted_pre_vote(message: Message) -> bool:
    return isinstance(message, RequestVoteResponse) and message.pre_vote and message.granted
