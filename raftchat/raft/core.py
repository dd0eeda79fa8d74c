"""RaftCore: the Raft state machine, pure and deterministic (sans-I/O).

Inputs are :meth:`RaftCore.tick`, :meth:`RaftCore.step` and the local
requests (propose, read_index, membership changes, transfer, compact); the
output is :meth:`RaftCore.ready`, handled by the runtime as described in
:mod:`raftchat.raft.ready`, then acknowledged with :meth:`RaftCore.advance`.

The design follows etcd raft and Ongaro's dissertation: PreVote and
CheckQuorum, a no-op at the start of each term, commitment by counting
replicas of current-term entries only, pipelined and size-bounded
AppendEntries with probe/replicate/snapshot follower states, fast back-off
with conflict term/index hints, single-server membership changes that take
effect when appended, learners, leadership transfer, ReadIndex and chunked
InstallSnapshot. Client sessions (exactly once, in the order sent) are the state
machine's: the core appends what a leader is given, and uses a proposal's
(client id, serial) only to tell the proposer the outcome.

The protocol itself lives here; the bookkeeping it leans on has modules of its
own: :mod:`.log` and :mod:`.progress` (the log, and the leader's view of each
follower), :mod:`.configuration` and :mod:`.quorum` (membership and majorities),
:mod:`.read_only` (ReadIndex) and :mod:`.request_tracker` (requests waiting for their
outcome). Carrying on without dead voters, outside normal Raft, is :mod:`.forced`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection

from . import quorum
from .admission import STRANDED_ELECTION_TIMEOUTS, refusal
from .codec import encode_configuration
from .configuration import (
    ConfigurationChangeError,
    ConfigurationHistory,
    with_learner,
    with_learner_promoted,
    with_witness,
    without_member,
    without_witness,
)
from .counters import Counters
from .forced import committed_conflict, forced_configuration, forced_term, snapshot_conflict
from .log import LogError, RaftLog
from .messages import (
    NO_NODE,
    AppendEntries,
    AppendEntriesResponse,
    ClusterIdentity,
    Configuration,
    Entry,
    EntryKind,
    ForwardProposal,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    NodeId,
    ProposalResult,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
)
from .progress import Progress, ProgressState
from .read_only import PendingRead, ReadOnly
from .ready import (
    ConfigurationChanged,
    Event,
    HistoryDiverged,
    LeaderChanged,
    PeerProgress,
    PersistentState,
    ProposalOutcome,
    ReadState,
    Ready,
    RequestResult,
    RequestStatus,
    Role,
    RoleChanged,
    SnapshotRefused,
    Status,
    TransferAborted,
)
from .reasons import Reason
from .request_tracker import RequestTracker
from .settings import RaftSettings
from .witness_feed import metadata_snapshot, strip_payloads, witness_send_limit

logger = logging.getLogger(__name__)

_NEVER = 1 << 62
"""More ticks than any timer needs: nothing is due."""


class RaftError(Exception):
    """The core was used against its contract (bad persisted state, bad call order...)."""


class RaftCore:
    """One Raft node's consensus state. Not thread-safe; drive it from one place."""

    __slots__ = (
        "_configurations",
        "_counters",
        "_diverged",
        "_election_elapsed",
        "_emitted_through",
        "_events",
        "_heartbeat_elapsed",
        "_heartbeat_round",
        "_heartbeat_seq",
        "_incoming_snapshot",
        "_needs_broadcast",
        "_outbox",
        "_outcomes",
        "_pending_compaction",
        "_pending_install",
        "_persisted_hard_state",
        "_progress",
        "_randomized_timeout",
        "_read_only",
        "_read_states",
        "_ready_pending",
        "_requests",
        "_rng",
        "_snapshot_check",
        "_storage_last_index",
        "_ticks",
        "_ticks_without_leader",
        "_transfer_target",
        "_votes",
        "id",
        "leader",
        "log",
        "role",
        "settings",
        "term",
        "vote",
    )

    def __init__(
        self,
        settings: RaftSettings,
        state: PersistentState | None = None,
        rng: random.Random | None = None,
        snapshot_check: Callable[[bytes], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self._ticks_without_leader = 0
        """Ticks since a leader last reached this node (a stranded one takes a leader its
        configuration does not list: :mod:`.admission`)."""
        self._snapshot_check = snapshot_check
        """The state machine's verdict on a received snapshot's data (None: fine); it runs
        before the snapshot reaches a Ready, so nothing invalid is ever stored."""
        """May be replaced between inputs (e.g. to adapt the election timeout)."""
        self.id = settings.node_id
        self._rng = rng if rng is not None else random.Random(settings.node_id)
        state = state if state is not None else PersistentState()
        snapshot = state.snapshot if state.snapshot is not None else Snapshot()
        hard_state = state.hard_state
        try:
            self.log = RaftLog(snapshot, state.entries, hard_state.commit)
        except LogError as error:
            raise RaftError(f"cannot restore node {self.id}: {error}") from error
        self.log.applied = max(snapshot.meta.index, min(state.applied, self.log.commit))
        self.term = hard_state.term
        self.vote = hard_state.vote
        self._configurations = ConfigurationHistory(
            snapshot.meta.index, snapshot.meta.configuration
        )
        self._configurations.observe(self.log.entries_after_snapshot())
        self.role = Role.FOLLOWER
        self.leader: NodeId = NO_NODE

        # What the runtime has been handed and has stored.
        self._persisted_hard_state = HardState(self.term, self.vote, self.log.commit)
        self._storage_last_index = self.log.last_index
        self._emitted_through = self.log.applied
        self._ready_pending = False
        self._pending_compaction: Snapshot | None = None
        self._pending_install: Snapshot | None = None

        # Timers, in ticks.
        self._ticks = 0
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._reset_election_timer()

        self._votes: dict[NodeId, bool] = {}
        # Leader only.
        self._progress: dict[NodeId, Progress] = {}
        self._transfer_target: NodeId = NO_NODE
        self._heartbeat_seq = 0
        self._heartbeat_round = 0
        """Heartbeat rounds sent as leader (reads add heartbeats, not rounds)."""
        self._needs_broadcast = False
        self._read_only = ReadOnly()

        self._requests = RequestTracker()
        self._incoming_snapshot: tuple[int, int, bytearray] | None = None
        self._diverged: set[NodeId] = set()
        """Leaders whose log contradicted this node's committed entries: not heard."""

        # Output, collected by ready().
        self._outbox: list[tuple[NodeId, Message]] = []
        self._read_states: list[ReadState] = []
        self._outcomes: list[ProposalOutcome] = []
        self._events: list[Event] = []

        self._counters = Counters()

    # --- public: lifecycle ------------------------------------------------------

    def bootstrap(self, cluster: ClusterIdentity | None = None) -> None:
        """Found a new cluster: a one-node cluster with this node as its voter.

        Only valid on a node with no state at all; it becomes leader at once. ``cluster``
        (chosen by the caller: the core has no clock and no randomness of its own) goes
        into the first configuration entry, so every member and every snapshot names it.
        """
        if self.term != 0 or self.log.last_index != 0 or self._configurations.current.members:
            raise RaftError(
                f"bootstrap needs a node without any state; {self.id} has term {self.term} "
                f"and last index {self.log.last_index}"
            )
        configuration = Configuration(voters=frozenset({self.id}), cluster=cluster)
        self.term = 1
        entry = Entry(
            index=1, term=1, kind=EntryKind.CONFIG, data=encode_configuration(configuration)
        )
        self.log.append([entry])
        self._observe_appended([entry])
        self.campaign()

    def campaign(self) -> None:
        """Start an election now (if this node is a voter)."""
        if self.role is not Role.LEADER and self._promotable():
            self._campaign(transfer=False)

    # --- public: inputs ---------------------------------------------------------

    def tick(self) -> None:
        """Advance the logical clock by one tick."""
        self._ticks += 1
        leading = self.role is Role.LEADER
        self._ticks_without_leader = 0 if leading else self._ticks_without_leader + 1
        if self._requests.has_deadlines:
            self._requests.expire(self._ticks, self._outcomes, self._read_states)
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self._election_elapsed >= self._randomized_timeout and self._promotable():
                self._campaign(transfer=False)

    def ticks_until_due(self) -> int:
        """How many more :meth:`tick` calls until one may change anything (at least 1).

        A runtime may sleep that long instead of ticking at every interval, provided it
        gives the core every tick that fell due before handing it any other input.
        """
        deadline = self._requests.next_deadline()
        due = _NEVER if deadline is None else deadline - self._ticks
        if self.role is Role.LEADER:
            settings = self.settings
            due = min(
                due,
                settings.heartbeat_ticks - self._heartbeat_elapsed,
                settings.election_timeout_ticks - self._election_elapsed,
            )
        elif self._promotable():
            due = min(due, self._randomized_timeout - self._election_elapsed)
        return max(1, due)

    def step(self, message: Message) -> None:
        """Handle a message from a peer. Malformed or stale messages are ignored."""
        name = type(message).__name__
        received = self._counters.messages_received
        received[name] = received.get(name, 0) + 1
        sender = getattr(message, "sender", NO_NODE)
        term = getattr(message, "term", None)
        if not sender or sender == self.id or not isinstance(term, int):
            return
        if sender in self._diverged and not (
            isinstance(message, AppendEntriesResponse | InstallSnapshotResponse)
            and term <= self.term
        ):
            return  # a split history (see _history_diverged): as if the link were down
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
            self._counters.messages_refused += 1
            logger.debug("%s: refusing %s from %s: %s", self.id, name, sender, problem)
            return
        if isinstance(message, AppendEntries | InstallSnapshot) and term >= self.term:
            self._ticks_without_leader = 0
        try:
            self._step(message)
        except LogError as error:
            logger.error("%s: ignoring %s from %s: %s", self.id, name, sender, error)

    def propose(self, data: bytes, client_id: str = "", serial: int = 0) -> RequestResult:
        """Propose application data. On a follower it is forwarded to the leader.

        The leader appends it as given, a retry or a copy as well: dropping duplicates and
        keeping a client's order is the state machine's work. ``client_id``/``serial`` go
        into the entry and name the proposal in its :class:`ProposalOutcome`.
        """
        if len(data) > self.settings.max_proposal_bytes:
            return self._rejected(
                Reason.TOO_LARGE.format(size=len(data), limit=self.settings.max_proposal_bytes)
            )
        if self.role is Role.LEADER:
            result = self._propose_as_leader(data, client_id, serial)
            if result.status is RequestStatus.APPENDED:
                self._track_commit(result.index, result.term, client_id, serial)
            return result
        if not self.leader:
            return self._rejected(Reason.NO_LEADER)
        self._send(self.leader, ForwardProposal(self.id, self.term, client_id, serial, bytes(data)))
        self._counters.proposals_forwarded += 1
        deadline = self._ticks + self.settings.effective_request_timeout
        self._requests.proposal_forwarded(client_id, serial, deadline)
        return RequestResult(RequestStatus.FORWARDED, leader=self.leader)

    def read_index(self, request_id: int) -> RequestResult:
        """Ask for a linearizable read; the answer comes as a ReadState in a Ready."""
        if self.role is Role.LEADER:
            self._leader_read(self.id, request_id)
            return RequestResult(RequestStatus.PENDING, leader=self.id)
        if not self.leader:
            return self._rejected(Reason.NO_LEADER)
        self._send(self.leader, ReadIndexRequest(self.id, self.term, request_id))
        self._counters.reads_forwarded += 1
        deadline = self._ticks + self.settings.effective_request_timeout
        self._requests.read_forwarded(request_id, deadline)
        return RequestResult(RequestStatus.FORWARDED, leader=self.leader)

    def add_learner(self, node_id: NodeId) -> RequestResult:
        """Add a non-voting member that receives the log."""
        return self._change_configuration(node_id, with_learner)

    def promote(self, node_id: NodeId) -> RequestResult:
        """Turn a learner into a voter."""
        return self._change_configuration(node_id, with_learner_promoted)

    def remove(self, node_id: NodeId) -> RequestResult:
        """Remove a voter, learner or witness (the leader itself included)."""
        return self._change_configuration(node_id, without_member)

    def add_witness(self, node_id: NodeId) -> RequestResult:
        """Add a witness: a voter that never leads and gets entries without their data."""
        return self._change_configuration(node_id, with_witness)

    def remove_witness(self, node_id: NodeId) -> RequestResult:
        """Remove a witness (refused for any other member)."""
        return self._change_configuration(node_id, without_witness)

    def force_remove(self, node_ids: Collection[NodeId]) -> RequestResult:
        """Carry on without the voters ``node_ids``, whose machines are gone for good.

        Outside normal Raft (see :mod:`.forced`): allowed only when this node is a voter
        that can lead and would be the only voter left; the caller must know the others
        are gone. This node moves to a fresh term, appends the configuration without
        them and leads it at once; the entry commits as soon as it is stored. The result
        names the entry (APPENDED), or says why not (REJECTED, nothing changed).
        """
        try:
            configuration = forced_configuration(self._configurations.current, self.id, node_ids)
        except ConfigurationChangeError as error:
            return self._rejected(str(error))
        term = forced_term(self.term, self._rng)
        logger.info("%s: carrying on without %s (forced, term %d)", self.id, sorted(node_ids), term)
        self._become_follower(term, NO_NODE)  # a leader stops leading its old term first
        self.vote = self.id
        index = self.log.last_index + 1
        entry = Entry(index, term, EntryKind.CONFIG, encode_configuration(configuration))
        self._append([entry])
        self._become_leader()
        return RequestResult(RequestStatus.APPENDED, index=index, term=term, leader=self.id)

    def transfer_leadership(self, target: NodeId) -> RequestResult:
        """Hand leadership to ``target``: catch it up, then send it TimeoutNow."""
        if self.role is not Role.LEADER:
            return self._rejected(Reason.NOT_LEADER)
        if target == self.id:
            return self._rejected(Reason.ALREADY_LEADER.format(node=target))
        if target in self._configurations.current.witnesses:
            return self._rejected(Reason.WITNESS_CANNOT_LEAD.format(node=target))
        if target not in self._configurations.current.voters or target not in self._progress:
            return self._rejected(Reason.NOT_A_VOTER.format(node=target))
        if self._transfer_target == target:
            return RequestResult(RequestStatus.PENDING, leader=self.id)
        if self._transfer_target:
            self._abort_transfer(Reason.TRANSFER_SUPERSEDED)
        self._transfer_target = target
        self._election_elapsed = 0
        progress = self._progress[target]
        if progress.state is ProgressState.PROBE:
            progress.probe_sent = False  # catch the target up now, not at the next heartbeat
        if progress.match == self.log.last_index:
            self._send(target, TimeoutNow(self.id, self.term))
        else:
            self._send_append(target)
        return RequestResult(RequestStatus.PENDING, leader=self.id)

    def compact(self, index: int, data: bytes) -> None:
        """The state machine, applied up to ``index``, is ``data``: drop the log up to it."""
        if index <= self.log.snapshot_index:
            raise RaftError(
                f"cannot compact to {index}: already compacted to {self.log.snapshot_index}"
            )
        if index > self.log.applied:
            raise RaftError(
                f"cannot compact to {index}: only {self.log.applied} is applied; "
                "compact at or below the applied index"
            )
        term = self.log.term(index)
        assert term is not None
        meta = SnapshotMeta(index=index, term=term, configuration=self._configurations.at(index))
        self._pending_compaction = self.log.compact(index, data, meta)
        self._configurations.compact_to(index)

    # --- public: output ---------------------------------------------------------

    def has_ready(self) -> bool:
        log = self.log
        return bool(
            self._needs_broadcast
            or self._read_only.round_needed
            or self._outbox
            or self._read_states
            or self._outcomes
            or self._events
            or self._pending_compaction
            or self._pending_install
            or log.stable_index < log.last_index
            or (log.commit > log.applied and not self._ready_pending)
            or self._hard_state() != self._persisted_hard_state
        )

    def ready(self) -> Ready:
        """Collect the work for the runtime; then call :meth:`advance` with it."""
        if self._ready_pending:
            raise RaftError("ready() called again before advance() of the previous Ready")
        self._flush()
        log = self.log
        hard_state = self._hard_state()
        entries = log.unstable_entries()
        truncate_from = 0
        install = self._pending_install
        if entries and install is None and entries[0].index <= self._storage_last_index:
            truncate_from = entries[0].index
        committed = log.committed_entries(self.settings.max_committed_per_ready)
        if committed:
            self._emitted_through = committed[-1].index
            if self._requests.awaiting_commit:
                self._requests.resolve_committed(committed, self.leader, self._outcomes)
        persisted = self._persisted_hard_state
        early, messages = _split_early(
            self._outbox, hard_state.term == persisted.term and hard_state.vote == persisted.vote
        )
        ready = Ready(
            hard_state=hard_state if hard_state != persisted else None,
            compacted=self._pending_compaction,
            snapshot=install,
            truncate_from=truncate_from,
            entries=entries,
            early_messages=early,
            messages=messages,
            committed_entries=committed,
            read_states=self._read_states,
            proposal_outcomes=self._outcomes,
            events=self._events,
        )
        self._outbox, self._read_states, self._outcomes, self._events = [], [], [], []
        self._pending_compaction = None
        self._pending_install = None
        self._ready_pending = True
        return ready

    def advance(self, ready: Ready) -> None:
        """The runtime has done everything ``ready`` asked for."""
        self._ready_pending = False
        log = self.log
        if ready.hard_state is not None:
            self._persisted_hard_state = ready.hard_state
        if ready.snapshot is not None:
            self._storage_last_index = ready.snapshot.meta.index
            log.applied = max(log.applied, ready.snapshot.meta.index)
        if ready.entries:
            last = ready.entries[-1]
            log.stable_to(last.index, last.term)
            self._storage_last_index = last.index
            if self.role is Role.LEADER and self._maybe_commit():
                self._broadcast_commit()
            if self._configurations.current.witnesses:
                self._feed_witnesses()  # they wait for what the leader stores
        if ready.committed_entries:
            log.applied = max(log.applied, ready.committed_entries[-1].index)

    def status(self) -> Status:
        log = self.log
        progress = tuple(
            PeerProgress(peer, p.match, p.next, p.state.value, p.recent_active)
            for peer, p in sorted(self._progress.items())
        )
        role = self.role
        if role is Role.FOLLOWER and self.id in self._configurations.current.learners:
            role = Role.LEARNER
        counters = self._counters
        return Status(
            node_id=self.id,
            term=self.term,
            role=role,
            leader=self.leader,
            vote=self.vote,
            commit_index=log.commit,
            applied_index=log.applied,
            last_index=log.last_index,
            last_term=log.last_term,
            snapshot_index=log.snapshot_index,
            snapshot_term=log.snapshot_term,
            configuration=self._configurations.current,
            configuration_index=self._configurations.current_index,
            transfer_target=self._transfer_target,
            messages_sent=dict(counters.messages_sent),
            messages_received=dict(counters.messages_received),
            proposals_forwarded=counters.proposals_forwarded,
            proposals_appended=counters.proposals_appended,
            reads_forwarded=counters.reads_forwarded,
            elections_started=counters.elections_started,
            snapshots_sent=counters.snapshots_sent,
            snapshots_installed=counters.snapshots_installed,
            snapshots_refused=counters.snapshots_refused,
            messages_refused=counters.messages_refused,
            progress=progress if self.role is Role.LEADER else (),
        )

    @property
    def configuration(self) -> Configuration:
        return self._configurations.current

    # --- message dispatch -------------------------------------------------------

    def _step(self, m: Message) -> None:
        if m.term > self.term:
            if isinstance(m, RequestVote):
                if self._in_lease() and not m.leadership_transfer:
                    return
                if not m.pre_vote:
                    self._become_follower(m.term, NO_NODE)
            elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted:
                pass
            elif isinstance(m, AppendEntries | InstallSnapshot):
                self._become_follower(m.term, m.sender)
            else:
                self._become_follower(m.term, NO_NODE)
        elif m.term < self.term:
            if isinstance(m, AppendEntries | InstallSnapshot):
                # Tell the stale leader about the newer term so it steps down.
                self._send(
                    m.sender, AppendEntriesResponse(self.id, self.term, False, self.log.commit)
                )
                return
            if isinstance(m, RequestVote) and m.pre_vote:
                self._send(m.sender, RequestVoteResponse(self.id, self.term, False, True))
                return
            if not isinstance(
                m, ForwardProposal | ReadIndexRequest | ProposalResult | ReadIndexResponse
            ):
                return

        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif isinstance(m, AppendEntries):
            if self.role is not Role.LEADER:
                self._follow(m.sender)
                self._handle_append(m)
        elif isinstance(m, AppendEntriesResponse):
            if self.role is Role.LEADER:
                self._handle_append_response(m)
        elif isinstance(m, RequestVoteResponse):
            self._handle_vote_response(m)
        elif isinstance(m, InstallSnapshot):
            if self.role is not Role.LEADER:
                self._follow(m.sender)
                self._handle_snapshot(m)
        elif isinstance(m, InstallSnapshotResponse):
            if self.role is Role.LEADER:
                self._handle_snapshot_response(m)
        elif isinstance(m, TimeoutNow):
            if self.role is not Role.LEADER and self._promotable():
                self._campaign(transfer=True)
        elif isinstance(m, ForwardProposal):
            self._handle_forward(m)
        elif isinstance(m, ProposalResult):
            self._handle_proposal_result(m)
        elif isinstance(m, ReadIndexRequest):
            if self.role is Role.LEADER:
                self._leader_read(m.sender, m.request_id)
            else:
                self._send(
                    m.sender,
                    ReadIndexResponse(
                        self.id,
                        self.term,
                        m.request_id,
                        error=Reason.NOT_LEADER,
                        leader=self.leader,
                    ),
                )
        elif isinstance(m, ReadIndexResponse):
            self._handle_read_response(m)

    def _follow(self, leader: NodeId) -> None:
        """A valid leader of our term spoke: follow it and restart the election timer."""
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, leader)
        else:
            self._set_leader(leader)
        self._election_elapsed = 0

    # --- elections --------------------------------------------------------------

    def _promotable(self) -> bool:
        """May this node campaign? Voters may; so may a voter whose removal is not committed.

        The second case matters when a leader that appended its own removal loses
        leadership before the removal commits: the others still count on its vote,
        and its log may be the only one that can win.
        """
        configs = self._configurations
        if self.id in configs.current.witnesses:
            return False  # a witness is never run as a RaftCore; if it is, it never leads
        if self.id in configs.current.voters:
            return True
        commit = self.log.commit
        return configs.current_index > commit and self.id in configs.at(commit).voters

    def _reset_election_timer(self) -> None:
        self._election_elapsed = 0
        timeout = self.settings.election_timeout_ticks
        self._randomized_timeout = timeout + self._rng.randrange(timeout)

    def _campaign(self, transfer: bool) -> None:
        self._counters.elections_started += 1
        if self.settings.pre_vote and not transfer:
            self._set_role(Role.PRE_CANDIDATE)
            self._set_leader(NO_NODE)
            self._reset_election_timer()
            vote_term = self.term + 1
        else:
            self._become_candidate()
            vote_term = self.term
        self._votes = {}
        if self._poll(self.id, True):
            return
        pre_vote = self.role is Role.PRE_CANDIDATE
        request = RequestVote(
            self.id,
            vote_term,
            self.log.last_index,
            self.log.last_term,
            pre_vote=pre_vote,
            leadership_transfer=transfer,
        )
        for voter in sorted(self._configurations.current.voters):
            if voter != self.id:
                self._send(voter, request)

    def _become_candidate(self) -> None:
        self.term += 1
        self.vote = self.id
        self._set_role(Role.CANDIDATE)
        self._set_leader(NO_NODE)
        self._reset_election_timer()

    def _poll(self, voter: NodeId, granted: bool) -> bool:
        """Record a vote; True if the election was decided (won or lost)."""
        voters = self._configurations.current.voters
        if voter not in voters:
            return False
        self._votes[voter] = granted
        result = quorum.vote_result(voters, self._votes)
        if result is quorum.VoteResult.WON:
            if self.role is Role.PRE_CANDIDATE:
                self._start_real_election()
            else:
                self._become_leader()
            return True
        if result is quorum.VoteResult.LOST:
            self._become_follower(self.term, NO_NODE)
            return True
        return False

    def _start_real_election(self) -> None:
        self._become_candidate()
        self._votes = {}
        if self._poll(self.id, True):
            return
        request = RequestVote(self.id, self.term, self.log.last_index, self.log.last_term)
        for voter in sorted(self._configurations.current.voters):
            if voter != self.id:
                self._send(voter, request)

    def _in_lease(self) -> bool:
        """Heard from the leader within an election timeout (or leading), with CheckQuorum:
        a leader that is alive keeps its followers (and itself) from being taken over."""
        return (
            self.settings.check_quorum
            and self.leader != NO_NODE
            and self._election_elapsed < self.settings.election_timeout_ticks
        )

    def _handle_vote_request(self, m: RequestVote) -> None:
        can_vote = (
            self.vote == m.sender
            or (self.vote == NO_NODE and self.leader == NO_NODE)
            or (m.pre_vote and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.last_log_index, m.last_log_term):
            if not m.pre_vote:
                self.vote = m.sender
                self._election_elapsed = 0
            response_term = m.term if m.pre_vote else self.term
            self._send(m.sender, RequestVoteResponse(self.id, response_term, True, m.pre_vote))
        else:
            self._send(m.sender, RequestVoteResponse(self.id, self.term, False, m.pre_vote))

    def _handle_vote_response(self, m: RequestVoteResponse) -> None:
        if self.role is Role.PRE_CANDIDATE and m.pre_vote:
            expected = self.term + 1 if m.granted else self.term
            if m.term == expected:
                self._poll(m.sender, m.granted)
        elif self.role is Role.CANDIDATE and not m.pre_vote and m.term == self.term:
            self._poll(m.sender, m.granted)

    def _become_follower(self, term: int, leader: NodeId) -> None:
        if term > self.term:
            self.term = term
            self.vote = NO_NODE
        was_leader = self.role is Role.LEADER
        self._set_role(Role.FOLLOWER)
        self._set_leader(leader)
        self._reset_election_timer()
        self._transfer_target = NO_NODE
        if was_leader:
            self._stop_leading()

    def _stop_leading(self) -> None:
        for origin, request_id in self._read_only.take_all():
            self._answer_read(origin, request_id, 0, Reason.LEADERSHIP_LOST)
        self._needs_broadcast = False
        self._progress = {}

    def _become_leader(self) -> None:
        self._set_role(Role.LEADER)
        self._set_leader(self.id)
        self._transfer_target = NO_NODE
        self._heartbeat_elapsed = 0
        self._election_elapsed = 0
        self._progress = {}
        self._sync_progress()
        noop = Entry(index=self.log.last_index + 1, term=self.term, kind=EntryKind.NOOP)
        self._append([noop])
        for peer in self._progress:
            self._send_append(peer)

    def _set_role(self, role: Role) -> None:
        if role is not self.role:
            self.role = role
            self._events.append(RoleChanged(self.term, role))

    def _set_leader(self, leader: NodeId) -> None:
        if leader != self.leader:
            self.leader = leader
            self._events.append(LeaderChanged(self.term, leader))
            self._requests.fail_forwarded(Reason.LEADER_CHANGED, self._outcomes, self._read_states)

    # --- leader: ticking, replication, commitment -------------------------------

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.settings.election_timeout_ticks:
            self._election_elapsed = 0
            if self.settings.check_quorum and not self._quorum_active():
                logger.info(
                    "%s: no quorum heard within an election timeout; stepping down", self.id
                )
                self._become_follower(self.term, NO_NODE)
                return
            for progress in self._progress.values():
                progress.end_round()
            if self._transfer_target:
                self._abort_transfer(Reason.TRANSFER_TIMED_OUT)
            self._feed_witnesses()  # a member presumed dead now lets them get more
        if self._heartbeat_elapsed >= self.settings.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._heartbeat_seq += 1
            self._heartbeat_round += 1
            learners_too = self._heartbeat_round % self.settings.learner_heartbeat_rounds == 0
            voters = self._configurations.current.voters
            for peer in self._progress:
                if learners_too or peer in voters:
                    self._heartbeat_peer(peer)

    def _quorum_active(self) -> bool:
        voters = self._configurations.current.voters
        active = sum(
            1
            for voter in voters
            if voter == self.id or (voter in self._progress and self._progress[voter].recent_active)
        )
        return active >= quorum.majority(voters)

    def _heartbeat_peer(self, peer: NodeId) -> None:
        progress = self._progress[peer]
        if progress.state is ProgressState.PROBE:
            progress.probe_sent = False
            self._send_append(peer)
            return
        if progress.state is ProgressState.REPLICATE:
            if progress.inflight and progress.match == progress.match_at_last_heartbeat:
                progress.stalled_rounds += 1
            else:
                progress.stalled_rounds = 0
            progress.match_at_last_heartbeat = progress.match
            if progress.stalled_rounds >= self.settings.stalled_heartbeat_rounds:
                progress.stalled_rounds = 0
                progress.become_probe()
                self._send_append(peer)
                return
        else:
            progress.snapshot_idle_rounds += 1
            if progress.snapshot_idle_rounds >= 2:
                progress.snapshot_idle_rounds = 0
                self._send_snapshot_chunk(peer, progress)
        self._send_heartbeat(peer, progress)

    def _send_heartbeat(self, peer: NodeId, progress: Progress) -> None:
        """An empty AppendEntries at a point the follower is known to hold."""
        prev = progress.match
        prev_term = self.log.term(prev)
        if prev_term is None:
            prev, prev_term = 0, 0
        self._send(
            peer,
            AppendEntries(
                self.id, self.term, prev, prev_term, (), self.log.commit, self._heartbeat_seq
            ),
        )
        progress.commit_sent = min(self.log.commit, prev)  # what the follower may apply

    def _commit_news_for(self, progress: Progress) -> bool:
        """Whether a heartbeat would move the follower's commit index (it never moves
        past the follower's match)."""
        return min(self.log.commit, progress.match) > progress.commit_sent

    def _send_append(self, peer: NodeId, allow_empty: bool = True) -> bool:
        """Send the next AppendEntries (or snapshot chunk) to ``peer``; True if sent."""
        progress = self._progress[peer]
        if progress.is_paused(self.settings.max_inflight):
            return False
        log = self.log
        prev = progress.next - 1
        prev_term = log.term(prev)
        if prev_term is None or prev < log.snapshot_index:
            if prev < log.snapshot_index:
                progress.become_snapshot(log.snapshot_index)
                self._counters.snapshots_sent += 1
                self._send_snapshot_chunk(peer, progress)
                return True
            # ``next`` ran past our log (a stale hint): probe from what we have.
            progress.next = log.last_index + 1
            prev, prev_term = log.last_index, log.last_term
        end = log.last_index + 1
        witness = peer in self._configurations.current.witnesses
        if witness:
            end = min(end, self._witness_limit() + 1)
        entries = log.slice(progress.next, end, self.settings.max_append_bytes)
        if not entries and not allow_empty:
            return False
        if witness:
            entries = strip_payloads(entries)
        self._send(
            peer,
            AppendEntries(
                self.id,
                self.term,
                prev,
                prev_term,
                tuple(entries),
                log.commit,
                self._heartbeat_seq,
            ),
        )
        progress.commit_sent = min(log.commit, entries[-1].index if entries else prev)
        progress.sent(entries[-1].index if entries else prev, bool(entries))
        return True

    def _send_snapshot_chunk(self, peer: NodeId, progress: Progress) -> None:
        snapshot = self.log.snapshot
        if progress.snapshot_index != snapshot.meta.index:
            progress.become_snapshot(snapshot.meta.index)
        if peer in self._configurations.current.witnesses:
            self._send(peer, metadata_snapshot(self.id, self.term, snapshot.meta))
            return
        offset = progress.snapshot_offset
        end = offset + self.settings.snapshot_chunk_bytes
        self._send(
            peer,
            InstallSnapshot(
                self.id,
                self.term,
                snapshot.meta.index,
                snapshot.meta.term,
                snapshot.meta.configuration,
                offset,
                snapshot.data[offset:end],
                end >= len(snapshot.data),
            ),
        )

    def _broadcast_commit(self) -> None:
        """Let idle followers learn the new commit index promptly."""
        commit = self.log.commit
        for peer, progress in self._progress.items():
            if progress.commit_sent >= commit or progress.state is not ProgressState.REPLICATE:
                continue
            if (
                not self._send_append(peer, allow_empty=False)
                and not progress.inflight
                and self._commit_news_for(progress)
            ):
                self._send_heartbeat(peer, progress)

    def _flush(self) -> None:
        """Send what batched local requests need (called when a Ready is collected)."""
        if self._needs_broadcast:
            self._needs_broadcast = False
            for peer in self._progress:
                while self._send_append(peer, allow_empty=False):
                    pass
        if self._read_only.round_needed:
            self._read_only.round_needed = False
            self._heartbeat_seq += 1
            for peer, progress in self._progress.items():
                self._send_heartbeat(peer, progress)

    def _handle_append_response(self, m: AppendEntriesResponse) -> None:
        progress = self._progress.get(m.sender)
        if progress is None:
            return
        progress.recent_active = True
        if m.heartbeat_seq > progress.heartbeat_ack:
            progress.heartbeat_ack = m.heartbeat_seq
            if self._read_only.waiting:
                self._release_reads()
        if m.success:
            if m.match_index > self.log.last_index:
                return  # no follower of this log holds more: a split history (see .forced)
            if progress.maybe_update(m.match_index):
                if (
                    progress.state is ProgressState.SNAPSHOT
                    and progress.match >= progress.snapshot_index
                ):
                    progress.become_probe()
                if self._maybe_commit():
                    self._broadcast_commit()
                if m.sender not in self._configurations.current.witnesses:
                    self._feed_witnesses()
                if (
                    self._transfer_target == m.sender
                    and progress.match == self.log.last_index
                    and self.role is Role.LEADER
                ):
                    self._send(m.sender, TimeoutNow(self.id, self.term))
            if self.role is not Role.LEADER:
                return
            if progress.state is ProgressState.PROBE:
                progress.become_replicate()
            elif progress.state is ProgressState.REPLICATE:
                progress.free_to(m.match_index)
            while self._send_append(m.sender, allow_empty=False):
                pass
            if not progress.inflight and self._commit_news_for(progress):
                self._send_heartbeat(m.sender, progress)
            return
        # Rejection: drop stale ones, else back off using the follower's hint.
        if progress.state is ProgressState.SNAPSHOT:
            return
        if progress.state is ProgressState.REPLICATE and m.reject_index <= progress.match:
            return
        if progress.state is ProgressState.PROBE and m.reject_index != progress.next - 1:
            return
        next_index = m.conflict_index
        if m.conflict_term:
            last_of_term = self.log.last_index_of_term(m.conflict_term)
            if last_of_term:
                next_index = last_of_term + 1
        next_index = max(progress.match + 1, min(next_index, m.reject_index))
        progress.become_probe()
        progress.next = next_index
        self._send_append(m.sender)

    def _witness_limit(self) -> int:
        return witness_send_limit(
            self.id, self.log.stable_index, self._configurations.current, self._progress
        )

    def _feed_witnesses(self) -> None:
        """Send witnesses the entries the send limit now allows (see :mod:`.witness_feed`)."""
        if self.role is not Role.LEADER:
            return
        for witness in self._configurations.current.witnesses:
            progress = self._progress.get(witness)
            if progress is not None and progress.state is ProgressState.REPLICATE:
                while self._send_append(witness, allow_empty=False):
                    pass

    def _maybe_commit(self) -> bool:
        voters = self._configurations.current.voters
        if not voters:
            return False
        progress = self._progress
        candidate = quorum.committed_index(
            [
                (
                    self.log.stable_index
                    if voter == self.id
                    else (progress[voter].match if voter in progress else 0)
                )
                for voter in voters
            ]
        )
        # Only entries of the current term are committed by counting replicas (Figure 8).
        if candidate <= self.log.commit or self.log.term(candidate) != self.term:
            return False
        self.log.commit_to(candidate)
        if self._read_only.waiting_for_commit:
            for origin, request_id in self._read_only.take_waiting_for_commit():
                self._leader_read(origin, request_id)
        if self.id not in voters and self._configurations.current_index <= self.log.commit:
            self._step_down_after_removal()
        return True

    def _step_down_after_removal(self) -> None:
        """Our removal committed: tell followers, hand over to an up-to-date voter, leave."""
        logger.info("%s: removed from the configuration; stepping down", self.id)
        for peer, progress in self._progress.items():
            if progress.commit_sent < self.log.commit:
                self._send_heartbeat(peer, progress)
        successors = [
            peer
            for peer, progress in sorted(self._progress.items())
            if peer in self._configurations.current.member_voters
            and progress.match == self.log.last_index
        ]
        if successors:
            self._send(successors[0], TimeoutNow(self.id, self.term))
        self._become_follower(self.term, NO_NODE)

    # --- leader: proposals, membership, transfer ----------------------------------

    def _rejected(self, error: str) -> RequestResult:
        return RequestResult(RequestStatus.REJECTED, error=error, leader=self.leader)

    def _propose_as_leader(self, data: bytes, client_id: str, serial: int) -> RequestResult:
        if self._transfer_target:
            return RequestResult(
                RequestStatus.REJECTED, error=Reason.TRANSFERRING, leader=self._transfer_target
            )
        uncommitted = self.log.last_index - self.log.commit
        if uncommitted >= self.settings.max_uncommitted_entries:
            return self._rejected(Reason.TOO_MANY_UNCOMMITTED.format(count=uncommitted))
        index = self.log.last_index + 1
        self._append([Entry(index, self.term, EntryKind.NORMAL, bytes(data), client_id, serial)])
        self._counters.proposals_appended += 1
        self._needs_broadcast = True
        return RequestResult(RequestStatus.APPENDED, index=index, term=self.term, leader=self.id)

    def _change_precheck(self, node_id: NodeId) -> RequestResult | None:
        if not isinstance(node_id, str) or not node_id:
            return self._rejected(Reason.BAD_NODE_ID)
        if self.role is not Role.LEADER:
            return self._rejected(Reason.NOT_LEADER if self.leader else Reason.NO_LEADER)
        if self._transfer_target:
            return self._rejected(Reason.TRANSFERRING)
        if self.log.term(self.log.commit) != self.term:
            return self._rejected(Reason.NO_OWN_TERM_COMMIT)
        pending_index = self._configurations.current_index
        if pending_index > self.log.commit:
            return self._rejected(Reason.CHANGE_PENDING.format(index=pending_index))
        return None

    def _change_configuration(
        self, node_id: NodeId, change: Callable[[Configuration, NodeId], Configuration]
    ) -> RequestResult:
        rejection = self._change_precheck(node_id)
        if rejection:
            return rejection
        try:
            configuration = change(self._configurations.current, node_id)
        except ConfigurationChangeError as error:
            return self._rejected(str(error))
        return self._append_configuration(configuration)

    def _append_configuration(self, configuration: Configuration) -> RequestResult:
        index = self.log.last_index + 1
        entry = Entry(index, self.term, EntryKind.CONFIG, encode_configuration(configuration))
        self._append([entry])
        self._needs_broadcast = True
        return RequestResult(RequestStatus.APPENDED, index=index, term=self.term, leader=self.id)

    def _append(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        self._observe_appended(entries)

    def _observe_appended(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        if self._configurations.observe(entries):
            self._configuration_changed()

    def _configuration_changed(self) -> None:
        current = self._configurations.current
        self._events.append(ConfigurationChanged(self._configurations.current_index, current))
        if self.role is Role.LEADER:
            self._sync_progress()
            if self._transfer_target and self._transfer_target not in current.voters:
                self._abort_transfer(Reason.TRANSFER_TARGET_REMOVED)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE) and not self._promotable():
            self._become_follower(self.term, NO_NODE)

    def _sync_progress(self) -> None:
        members = self._configurations.current.members
        for peer in sorted(members):
            if peer != self.id and peer not in self._progress:
                self._progress[peer] = Progress(next=self.log.last_index + 1)
        for peer in list(self._progress):
            if peer not in members:
                del self._progress[peer]

    def _abort_transfer(self, reason: str) -> None:
        self._events.append(TransferAborted(self._transfer_target, reason))
        self._transfer_target = NO_NODE

    # --- forwarded proposals and their outcomes -----------------------------------

    def _handle_forward(self, m: ForwardProposal) -> None:
        if self.role is Role.LEADER:
            limit = self.settings.max_proposal_bytes
            if len(m.data) > limit:
                result = self._rejected(Reason.TOO_LARGE.format(size=len(m.data), limit=limit))
            else:
                result = self._propose_as_leader(m.data, m.client_id, m.serial)
        else:
            result = self._rejected(Reason.NOT_LEADER if self.leader else Reason.NO_LEADER)
        self._send(
            m.sender,
            ProposalResult(
                self.id,
                self.term,
                m.client_id,
                m.serial,
                index=result.index,
                entry_term=result.term,
                error=result.error,
                leader=result.leader or self.leader,
            ),
        )

    def _handle_proposal_result(self, m: ProposalResult) -> None:
        if not self._requests.proposal_answered(m.client_id, m.serial):
            return
        if m.error or m.index <= 0:
            error = m.error or Reason.NOT_LEADER
            if (
                error in (Reason.NOT_LEADER, Reason.NO_LEADER)
                and m.sender == self.leader
                and m.term >= self.term
                and self.role is not Role.LEADER
            ):
                # The node taken for the leader says it is not: forget it, so proposals
                # wait for a leader instead of bouncing off it at the speed of the link.
                self._set_leader(NO_NODE)
            outcome = ProposalOutcome(m.client_id, m.serial, error=error, leader=m.leader)
            self._outcomes.append(outcome)
            return
        self._track_commit(m.index, m.entry_term, m.client_id, m.serial)

    def _track_commit(self, index: int, term: int, client_id: str, serial: int) -> None:
        """Report (client_id, serial) once the entry at index/term is handed out as committed."""
        if index > self._emitted_through:
            self._requests.await_commit(index, term, client_id, serial)
            return
        known = self.log.term(index)
        if known is None:
            error = Reason.UNKNOWN
        elif known == term:
            error = ""
        else:
            error = Reason.OVERWRITTEN
        self._outcomes.append(ProposalOutcome(client_id, serial, index, term, error, self.leader))

    # --- ReadIndex --------------------------------------------------------------

    def _leader_read(self, origin: NodeId, request_id: int) -> None:
        if self.log.term(self.log.commit) != self.term:
            self._read_only.wait_for_commit(origin, request_id)
            return
        read = PendingRead(origin, request_id, self.log.commit, self._heartbeat_seq + 1)
        if self._read_quorum(read.heartbeat_seq, count_peers=False):
            self._answer_read(origin, request_id, read.index, "")
            return
        self._read_only.wait_for_quorum(read)

    def _read_quorum(self, seq: int, count_peers: bool = True) -> bool:
        """Did a quorum echo heartbeat ``seq``? (Without ``count_peers``: this node alone.)"""
        voters = self._configurations.current.voters
        acks = 0
        for voter in voters:
            if voter == self.id:
                acks += 1
            elif count_peers:
                progress = self._progress.get(voter)
                if progress is not None and progress.heartbeat_ack >= seq:
                    acks += 1
        return acks >= quorum.majority(voters)

    def _release_reads(self) -> None:
        for read in self._read_only.release(self._read_quorum):
            self._answer_read(read.origin, read.request_id, read.index, "")

    def _answer_read(self, origin: NodeId, request_id: int, index: int, error: str) -> None:
        if origin == self.id:
            self._read_states.append(ReadState(request_id, index, error))
        else:
            self._send(
                origin,
                ReadIndexResponse(
                    self.id, self.term, request_id, index, error, self.leader if error else self.id
                ),
            )

    def _handle_read_response(self, m: ReadIndexResponse) -> None:
        if not self._requests.read_answered(m.request_id):
            return
        if m.error:
            self._read_states.append(ReadState(m.request_id, error=m.error))
        else:
            self._read_states.append(ReadState(m.request_id, m.read_index))

    # --- follower: appends and snapshots ------------------------------------------

    def _handle_append(self, m: AppendEntries) -> None:
        log = self.log
        seq = m.heartbeat_seq
        conflict = committed_conflict(log, m.prev_log_index, m.prev_log_term, m.entries)
        if conflict:
            self._history_diverged(m.sender, conflict)
            return
        if m.prev_log_index < log.commit:
            self._send(
                m.sender, AppendEntriesResponse(self.id, self.term, True, log.commit, 0, 0, seq)
            )
            return
        if log.term(m.prev_log_index) == m.prev_log_term:
            entries = m.entries
            last_new = m.prev_log_index + len(entries)
            if entries:
                first = entries[0].index
                conflict = first if first == log.last_index + 1 else log.find_conflict(entries)
                if conflict:
                    new = entries[conflict - first :]
                    if conflict <= log.last_index:
                        log.truncate_and_append(new)
                        if self._configurations.truncate_from(conflict):
                            self._configuration_changed()
                    else:
                        log.append(new)
                    self._observe_appended(new)
            log.commit_to(min(m.leader_commit, last_new))
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
        log = self.log
        index = m.last_included_index
        if index <= log.commit:
            self._incoming_snapshot = None
            self._send(m.sender, InstallSnapshotResponse(self.id, self.term, index, 0, True))
            return
        if snapshot_conflict(log, m.last_included_term):
            self._history_diverged(m.sender, log.commit)
            return
        incoming = self._incoming_snapshot
        held_bytes = m.offset if incoming is not None and m.offset else 0
        if held_bytes + len(m.data) > self.settings.max_snapshot_bytes:
            self._refuse_snapshot(
                m, f"larger than {self.settings.max_snapshot_bytes} bytes, the limit"
            )
            return
        if m.offset == 0:
            incoming = (index, m.last_included_term, bytearray(m.data))
        elif (
            incoming is not None
            and incoming[0] == index
            and incoming[1] == m.last_included_term
            and len(incoming[2]) == m.offset
        ):
            incoming[2].extend(m.data)
        else:
            held = len(incoming[2]) if incoming is not None and incoming[0] == index else 0
            self._send(m.sender, InstallSnapshotResponse(self.id, self.term, index, held, False))
            return
        self._incoming_snapshot = incoming
        if not m.done:
            self._send(
                m.sender,
                InstallSnapshotResponse(self.id, self.term, index, len(incoming[2]), False),
            )
            return
        self._incoming_snapshot = None
        size = len(incoming[2])
        if log.matches(index, m.last_included_term):
            log.commit_to(index)
        else:
            problem = self._snapshot_check(bytes(incoming[2])) if self._snapshot_check else None
            if problem is not None:
                self._refuse_snapshot(m, problem)
                return
            snapshot = Snapshot(
                SnapshotMeta(index, m.last_included_term, m.configuration), bytes(incoming[2])
            )
            log.restore(snapshot)
            self._configurations.reset(index, m.configuration)
            self._configuration_changed()
            self._pending_install = snapshot
            self._pending_compaction = None
            self._counters.snapshots_installed += 1
            self._emitted_through = index
            self._requests.resolve_unknown(index, self._outcomes)
        self._send(m.sender, InstallSnapshotResponse(self.id, self.term, index, size, True))

    def _refuse_snapshot(self, m: InstallSnapshot, reason: str) -> None:
        """Drop what was received of ``m``'s snapshot; tell the sender to start over."""
        self._incoming_snapshot = None
        self._counters.snapshots_refused += 1
        self._events.append(SnapshotRefused(m.sender, m.last_included_index, reason))
        self._send(
            m.sender,
            InstallSnapshotResponse(self.id, self.term, m.last_included_index, 0, False),
        )

    def _handle_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        progress = self._progress.get(m.sender)
        if progress is None:
            return
        progress.recent_active = True
        if m.done:
            progress.maybe_update(m.last_included_index)
            if (
                progress.state is ProgressState.SNAPSHOT
                and progress.match >= progress.snapshot_index
            ):
                progress.become_probe()
                self._send_append(m.sender)
            if self._maybe_commit():
                self._broadcast_commit()
            return
        if progress.state is not ProgressState.SNAPSHOT:
            return
        if m.last_included_index != progress.snapshot_index:
            return
        if m.next_offset == progress.snapshot_offset and progress.snapshot_idle_rounds == 0:
            return  # a duplicate answer; the chunk it asks for is already on its way
        progress.snapshot_offset = min(m.next_offset, len(self.log.snapshot.data))
        progress.snapshot_idle_rounds = 0
        self._send_snapshot_chunk(m.sender, progress)

    def _history_diverged(self, leader: NodeId, index: int) -> None:
        """``leader``'s log contradicts this node's committed entry at ``index``: the
        histories split (see :mod:`.forced`). Keep ours and stop hearing that leader, as
        if its link were down: no answer (no success to count, no hint to back off to),
        none of its snapshots (they would replace our committed entries), no votes for
        or from it, no proposals forwarded to it. Only its answers to what this node
        sends as a leader still count (not from a higher term: they would depose it), so
        that it backs off until the other side finds the split too. This node carries on
        with its own history (it campaigns once its election timer runs out, if a voter)."""
        self._diverged.add(leader)
        self._set_leader(NO_NODE)
        logger.error(
            "%s: the log of leader %s (term %d) contradicts committed entry %d: "
            "the histories split; keeping this node's",
            self.id,
            leader,
            self.term,
            index,
        )
        self._events.append(HistoryDiverged(leader, self.term, index))

    # --- plumbing -----------------------------------------------------------------

    def _send(self, to: NodeId, message: Message) -> None:
        name = type(message).__name__
        sent = self._counters.messages_sent
        sent[name] = sent.get(name, 0) + 1
        self._outbox.append((to, message))

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.commit)


def _split_early(
    outbox: list[tuple[NodeId, Message]], term_and_vote_stored: bool
) -> tuple[list[tuple[NodeId, Message]], list[tuple[NodeId, Message]]]:
    """Split the outbox into what may be sent before the Ready is persisted, and the rest.

    A leader may send AppendEntries while it writes the same entries to its own disk
    (Raft thesis, 10.2.1): it counts itself towards a commit only once they are stored.
    That holds only if its term and vote are already stored: a leader elected within
    this Ready (a one-voter channel) must not speak for a term it could forget.
    Responses and votes always wait: they promise what this Ready stores.
    """
    if not term_and_vote_stored:
        return [], outbox
    early = [item for item in outbox if type(item[1]) is AppendEntries]
    if not early:
        return [], outbox
    if len(early) == len(outbox):
        return outbox, []
    return early, [item for item in outbox if type(item[1]) is not AppendEntries]
