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
effect when appended, learners, leadership transfer, ReadIndex, chunked
InstallSnapshot and client sessions (client id + serial).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from .config import ConfigurationHistory, RaftConfig, encode_configuration
from .log import LogError, RaftLog
from .messages import (
    NO_NODE,
    AppendEntries,
    AppendEntriesResponse,
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
from .ready import (
    ConfigurationChanged,
    Event,
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
    Status,
    TransferAborted,
)

logger = logging.getLogger(__name__)

_NEVER = 1 << 62
"""More ticks than any timer needs: nothing is due."""

MAX_REMEMBERED_CLIENTS = 4096
"""Clients whose last serial is remembered from compacted entries (least recently seen
forgotten first); a forgotten client is unknown to the ordering check, which then lets its
next proposal through whatever came before (as after a session restart)."""


class RaftError(Exception):
    """The core was used against its contract (bad persisted state, bad call order...)."""


class Reason:
    """Texts of rejections and failures: what went wrong and what to do."""

    NO_LEADER = "no leader is known right now; retry after an election"
    NOT_LEADER = "this node is not the leader; send the request to the leader"
    TRANSFERRING = "leadership transfer in progress; retry shortly (at the new leader)"
    TOO_LARGE = "proposal too large ({size} bytes, limit {limit}); send less data"
    TOO_MANY_UNCOMMITTED = "too many uncommitted entries ({count}); retry later"
    NO_OWN_TERM_COMMIT = (
        "the leader has not committed an entry of its term yet; retry the change shortly"
    )
    CHANGE_PENDING = "configuration change at index {index} is not committed yet; retry after it"
    ALREADY_MEMBER = "{node} is already a member ({kind}); nothing to add"
    NOT_A_MEMBER = "{node} is not a member; nothing to remove"
    NOT_A_LEARNER = "{node} is not a learner; only learners can be promoted"
    LAST_VOTER = "{node} is the only voter; add and promote another member first"
    BAD_NODE_ID = "node id must be a non-empty string"
    NOT_A_VOTER = "{node} is not a voter; only voters can become leader"
    ALREADY_LEADER = "{node} is already the leader"
    LEADERSHIP_LOST = "leadership lost before the request completed; retry"
    LEADER_CHANGED = "the leader changed before answering; retry (duplicates are dropped)"
    TIMED_OUT = "no answer from the leader in time; retry (duplicates are dropped)"
    OVERWRITTEN = "the entry was replaced after a leader change; retry (duplicates are dropped)"
    UNKNOWN = "the outcome is covered by a snapshot and unknown; retry (duplicates are dropped)"
    OUT_OF_ORDER = (
        "proposal {serial} of client {client} follows serial {prev}, but the client's last "
        "serial in the leader's log is {last}; send every proposal after {last} again, in order"
    )
    DUPLICATE = "already in the leader's log; it applies in its place (nothing to resend)"
    TRANSFER_TIMED_OUT = "the target did not take over within an election timeout"
    TRANSFER_SUPERSEDED = "another transfer was requested"
    TRANSFER_TARGET_REMOVED = "the target left the configuration"


@dataclass(slots=True)
class _PendingRead:
    origin: NodeId
    request_id: int
    index: int
    heartbeat_seq: int


class RaftCore:
    """One Raft node's consensus state. Not thread-safe; drive it from one place."""

    def __init__(
        self,
        config: RaftConfig,
        state: PersistentState | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.id = config.node_id
        self._rng = rng if rng is not None else random.Random(config.node_id)
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
        self._configs = ConfigurationHistory(snapshot.meta.index, snapshot.meta.configuration)
        self._configs.observe(self._all_entries())
        self._log_serials: dict[str, tuple[int, int]] = {}
        """Per client id: the highest serial in the log after the snapshot, and its index."""
        self._base_serials: dict[str, int] = {}
        """Per client id: the highest serial at or below the snapshot index, as far as known
        (told by the runtime from its state machine, or kept from compacted entries)."""
        self._rebuild_log_serials()
        self.role = Role.FOLLOWER
        self.leader: NodeId = NO_NODE

        self._persisted_hard_state = HardState(self.term, self.vote, self.log.commit)
        self._storage_last_index = self.log.last_index
        self._emitted_through = self.log.applied
        self._ready_pending = False
        self._pending_compaction: Snapshot | None = None
        self._pending_install: Snapshot | None = None

        self._ticks = 0
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._reset_election_timer()

        self._votes: dict[NodeId, bool] = {}
        self._progress: dict[NodeId, Progress] = {}
        self._transfer_target: NodeId = NO_NODE
        self._heartbeat_seq = 0
        self._heartbeat_round = 0
        """Heartbeat rounds sent as leader (reads add heartbeats, not rounds)."""
        self._needs_broadcast = False
        self._read_round_needed = False
        self._reads: deque[_PendingRead] = deque()
        self._reads_before_commit: list[tuple[NodeId, int]] = []
        self._leader_sessions: dict[tuple[str, int], tuple[int, int]] = {}

        self._awaiting_commit: dict[int, tuple[str, int, int]] = {}
        self._forwarded: dict[tuple[str, int], int] = {}
        self._forwarded_reads: dict[int, int] = {}
        self._proposal_deadlines: deque[tuple[int, tuple[str, int]]] = deque()
        self._read_deadlines: deque[tuple[int, int]] = deque()
        self._incoming_snapshot: tuple[int, int, bytearray] | None = None

        self._outbox: list[tuple[NodeId, Message]] = []
        self._read_states: list[ReadState] = []
        self._outcomes: list[ProposalOutcome] = []
        self._events: list[Event] = []

        self._sent: dict[str, int] = {}
        self._received: dict[str, int] = {}
        self._proposals_forwarded = 0
        self._proposals_appended = 0
        self._reads_forwarded = 0
        self._elections_started = 0
        self._snapshots_sent = 0
        self._snapshots_installed = 0

    def _all_entries(self) -> list[Entry]:
        first, last = self.log.first_index, self.log.last_index
        return self.log.slice(first, last + 1, 1 << 62) if last >= first else []

    # --- public: lifecycle ------------------------------------------------------

    def bootstrap(self) -> None:
        """Start a brand-new channel: a one-node cluster with this node as its voter.

        Only valid on a node with no state at all; it becomes leader at once.
        """
        if self.term != 0 or self.log.last_index != 0 or self._configs.current.members:
            raise RaftError(
                f"bootstrap needs a node without any state; {self.id} has term {self.term} "
                f"and last index {self.log.last_index}"
            )
        configuration = Configuration(voters=frozenset({self.id}))
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
        if self._proposal_deadlines or self._read_deadlines:
            self._expire_requests()
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
        due = _NEVER
        if self._proposal_deadlines:
            due = self._proposal_deadlines[0][0] - self._ticks
        if self._read_deadlines:
            due = min(due, self._read_deadlines[0][0] - self._ticks)
        if self.role is Role.LEADER:
            config = self.config
            due = min(
                due,
                config.heartbeat_ticks - self._heartbeat_elapsed,
                config.election_timeout_ticks - self._election_elapsed,
            )
        elif self._promotable():
            due = min(due, self._randomized_timeout - self._election_elapsed)
        return max(1, due)

    def step(self, message: Message) -> None:
        """Handle a message from a peer. Malformed or stale messages are ignored."""
        name = type(message).__name__
        self._received[name] = self._received.get(name, 0) + 1
        sender = getattr(message, "sender", NO_NODE)
        term = getattr(message, "term", None)
        if not sender or sender == self.id or not isinstance(term, int):
            return
        try:
            self._step(message)
        except LogError as error:
            logger.error("%s: ignoring %s from %s: %s", self.id, name, sender, error)

    def propose(
        self, data: bytes, client_id: str = "", serial: int = 0, prev_serial: int = 0
    ) -> RequestResult:
        """Propose application data. On a follower it is forwarded to the leader.

        With a client id, the leader keeps each client's proposals in order: it appends
        serial ``serial`` only right after ``prev_serial`` (the client's previous proposal
        in this run; 0 for the first of a run, which may follow anything). A proposal whose
        predecessor is missing is refused with ``resume_after`` set; one already in the log
        is not appended again (status DUPLICATE, or APPENDED at its index when known).
        """
        if len(data) > self.config.max_proposal_bytes:
            return self._rejected(
                Reason.TOO_LARGE.format(size=len(data), limit=self.config.max_proposal_bytes)
            )
        if self.role is Role.LEADER:
            result = self._propose_as_leader(data, client_id, serial, prev_serial)
            if result.status is RequestStatus.APPENDED:
                self._track_commit(result.index, result.term, client_id, serial)
            return result
        if not self.leader:
            return self._rejected(Reason.NO_LEADER)
        self._send(
            self.leader,
            ForwardProposal(self.id, self.term, client_id, serial, bytes(data), prev_serial),
        )
        self._proposals_forwarded += 1
        key = (client_id, serial)
        deadline = self._ticks + self.config.effective_request_timeout
        self._forwarded[key] = deadline
        self._proposal_deadlines.append((deadline, key))
        return RequestResult(RequestStatus.FORWARDED, leader=self.leader)

    def read_index(self, request_id: int) -> RequestResult:
        """Ask for a linearizable read; the answer comes as a ReadState in a Ready."""
        if self.role is Role.LEADER:
            self._leader_read(self.id, request_id)
            return RequestResult(RequestStatus.PENDING, leader=self.id)
        if not self.leader:
            return self._rejected(Reason.NO_LEADER)
        self._send(self.leader, ReadIndexRequest(self.id, self.term, request_id))
        self._reads_forwarded += 1
        deadline = self._ticks + self.config.effective_request_timeout
        self._forwarded_reads[request_id] = deadline
        self._read_deadlines.append((deadline, request_id))
        return RequestResult(RequestStatus.FORWARDED, leader=self.leader)

    def add_learner(self, node_id: NodeId) -> RequestResult:
        """Add a non-voting member that receives the log."""
        rejection = self._change_precheck(node_id)
        if rejection:
            return rejection
        current = self._configs.current
        if node_id in current.members:
            kind = "voter" if node_id in current.voters else "learner"
            return self._rejected(Reason.ALREADY_MEMBER.format(node=node_id, kind=kind))
        return self._append_configuration(
            Configuration(voters=current.voters, learners=current.learners | {node_id})
        )

    def promote(self, node_id: NodeId) -> RequestResult:
        """Turn a learner into a voter."""
        rejection = self._change_precheck(node_id)
        if rejection:
            return rejection
        current = self._configs.current
        if node_id not in current.learners:
            return self._rejected(Reason.NOT_A_LEARNER.format(node=node_id))
        return self._append_configuration(
            Configuration(voters=current.voters | {node_id}, learners=current.learners - {node_id})
        )

    def remove(self, node_id: NodeId) -> RequestResult:
        """Remove a voter or learner (the leader itself included)."""
        rejection = self._change_precheck(node_id)
        if rejection:
            return rejection
        current = self._configs.current
        if node_id not in current.members:
            return self._rejected(Reason.NOT_A_MEMBER.format(node=node_id))
        if current.voters == {node_id}:
            return self._rejected(Reason.LAST_VOTER.format(node=node_id))
        return self._append_configuration(
            Configuration(voters=current.voters - {node_id}, learners=current.learners - {node_id})
        )

    def transfer_leadership(self, target: NodeId) -> RequestResult:
        """Hand leadership to ``target``: catch it up, then send it TimeoutNow."""
        if self.role is not Role.LEADER:
            return self._rejected(Reason.NOT_LEADER)
        if target == self.id:
            return self._rejected(Reason.ALREADY_LEADER.format(node=target))
        if target not in self._configs.current.voters or target not in self._progress:
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
        meta = SnapshotMeta(index=index, term=term, configuration=self._configs.at(index))
        self._remember_serials(self.log.slice(self.log.first_index, index + 1, 1 << 62))
        self._pending_compaction = self.log.compact(index, data, meta)
        self._rebuild_log_serials()
        self._configs.compact_to(index)

    def restore_client_serials(self, serials: Mapping[str, int]) -> None:
        """The state machine's last applied serial per client, after it was restored from a
        snapshot (at start, or from ``Ready.snapshot``): lets the leader keep the order of
        clients whose entries were compacted away. Safe to call with any applied state."""
        base = {client: serial for client, serial in serials.items() if client}
        if len(base) > MAX_REMEMBERED_CLIENTS:
            base = dict(list(base.items())[-MAX_REMEMBERED_CLIENTS:])
        self._base_serials = base

    # --- public: output ---------------------------------------------------------

    def has_ready(self) -> bool:
        log = self.log
        return bool(
            self._needs_broadcast
            or self._read_round_needed
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
        committed = log.committed_entries(self.config.max_committed_per_ready)
        if committed:
            self._emitted_through = committed[-1].index
            if self._awaiting_commit or self._leader_sessions:
                self._resolve_committed(committed)
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
        if ready.committed_entries:
            log.applied = max(log.applied, ready.committed_entries[-1].index)

    def status(self) -> Status:
        log = self.log
        progress = tuple(
            PeerProgress(peer, p.match, p.next, p.state.value, p.recent_active)
            for peer, p in sorted(self._progress.items())
        )
        role = self.role
        if role is Role.FOLLOWER and self.id in self._configs.current.learners:
            role = Role.LEARNER
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
            configuration=self._configs.current,
            configuration_index=self._configs.current_index,
            transfer_target=self._transfer_target,
            messages_sent=dict(self._sent),
            messages_received=dict(self._received),
            proposals_forwarded=self._proposals_forwarded,
            proposals_appended=self._proposals_appended,
            reads_forwarded=self._reads_forwarded,
            elections_started=self._elections_started,
            snapshots_sent=self._snapshots_sent,
            snapshots_installed=self._snapshots_installed,
            progress=progress if self.role is Role.LEADER else (),
        )

    @property
    def configuration(self) -> Configuration:
        return self._configs.current

    # --- message dispatch -------------------------------------------------------

    def _step(self, m: Message) -> None:
        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = (
                    self.config.check_quorum
                    and self.leader != NO_NODE
                    and self._election_elapsed < self.config.election_timeout_ticks
                )
                if in_lease and not m.leadership_transfer:
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
        configs = self._configs
        if self.id in configs.current.voters:
            return True
        commit = self.log.commit
        return configs.current_index > commit and self.id in configs.at(commit).voters

    def _reset_election_timer(self) -> None:
        self._election_elapsed = 0
        timeout = self.config.election_timeout_ticks
        self._randomized_timeout = timeout + self._rng.randrange(timeout)

    def _campaign(self, transfer: bool) -> None:
        self._elections_started += 1
        if self.config.pre_vote and not transfer:
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
        for voter in sorted(self._configs.current.voters):
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
        voters = self._configs.current.voters
        if voter not in voters:
            return False
        self._votes[voter] = granted
        grants = sum(1 for v in self._votes.values() if v)
        rejects = len(self._votes) - grants
        quorum = len(voters) // 2 + 1
        if grants >= quorum:
            if self.role is Role.PRE_CANDIDATE:
                self._start_real_election()
            else:
                self._become_leader()
            return True
        if rejects > len(voters) - quorum:
            self._become_follower(self.term, NO_NODE)
            return True
        return False

    def _start_real_election(self) -> None:
        self._become_candidate()
        self._votes = {}
        if self._poll(self.id, True):
            return
        request = RequestVote(self.id, self.term, self.log.last_index, self.log.last_term)
        for voter in sorted(self._configs.current.voters):
            if voter != self.id:
                self._send(voter, request)

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
        for read in self._reads:
            self._answer_read(read.origin, read.request_id, 0, Reason.LEADERSHIP_LOST)
        for origin, request_id in self._reads_before_commit:
            self._answer_read(origin, request_id, 0, Reason.LEADERSHIP_LOST)
        self._reads.clear()
        self._reads_before_commit.clear()
        self._read_round_needed = False
        self._needs_broadcast = False
        self._progress = {}
        self._leader_sessions.clear()

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
            self._fail_forwarded(Reason.LEADER_CHANGED)

    # --- leader: ticking, replication, commitment -------------------------------

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.config.election_timeout_ticks:
            self._election_elapsed = 0
            if self.config.check_quorum and not self._quorum_active():
                logger.info(
                    "%s: no quorum heard within an election timeout; stepping down", self.id
                )
                self._become_follower(self.term, NO_NODE)
                return
            for progress in self._progress.values():
                progress.recent_active = False
            if self._transfer_target:
                self._abort_transfer(Reason.TRANSFER_TIMED_OUT)
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._heartbeat_seq += 1
            self._heartbeat_round += 1
            learners_too = self._heartbeat_round % self.config.learner_heartbeat_rounds == 0
            voters = self._configs.current.voters
            for peer in self._progress:
                if learners_too or peer in voters:
                    self._heartbeat_peer(peer)

    def _quorum_active(self) -> bool:
        voters = self._configs.current.voters
        active = sum(
            1
            for voter in voters
            if voter == self.id or (voter in self._progress and self._progress[voter].recent_active)
        )
        return active >= len(voters) // 2 + 1

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
            if progress.stalled_rounds >= self.config.stalled_heartbeat_rounds:
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
        if progress.is_paused(self.config.max_inflight):
            return False
        log = self.log
        prev = progress.next - 1
        prev_term = log.term(prev)
        if prev_term is None or prev < log.snapshot_index:
            if prev < log.snapshot_index:
                progress.become_snapshot(log.snapshot_index)
                self._snapshots_sent += 1
                self._send_snapshot_chunk(peer, progress)
                return True
            # ``next`` ran past our log (a stale hint): probe from what we have.
            progress.next = log.last_index + 1
            prev, prev_term = log.last_index, log.last_term
        entries = log.slice(progress.next, log.last_index + 1, self.config.max_append_bytes)
        if not entries and not allow_empty:
            return False
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
        offset = progress.snapshot_offset
        end = offset + self.config.snapshot_chunk_bytes
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
        if self._read_round_needed:
            self._read_round_needed = False
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
            if self._reads:
                self._release_reads()
        if m.success:
            if progress.maybe_update(m.match_index):
                if (
                    progress.state is ProgressState.SNAPSHOT
                    and progress.match >= progress.snapshot_index
                ):
                    progress.become_probe()
                if self._maybe_commit():
                    self._broadcast_commit()
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

    def _maybe_commit(self) -> bool:
        voters = self._configs.current.voters
        if not voters:
            return False
        matches = sorted(
            (
                self.log.stable_index
                if voter == self.id
                else (self._progress[voter].match if voter in self._progress else 0)
            )
            for voter in voters
        )
        candidate = matches[len(voters) - (len(voters) // 2 + 1)]
        if candidate <= self.log.commit or self.log.term(candidate) != self.term:
            return False
        self.log.commit_to(candidate)
        if self._reads_before_commit:
            waiting, self._reads_before_commit = self._reads_before_commit, []
            for origin, request_id in waiting:
                self._leader_read(origin, request_id)
        if self.id not in voters and self._configs.current_index <= self.log.commit:
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
            if peer in self._configs.current.voters and progress.match == self.log.last_index
        ]
        if successors:
            self._send(successors[0], TimeoutNow(self.id, self.term))
        self._become_follower(self.term, NO_NODE)

    # --- leader: proposals, membership, transfer ----------------------------------

    def _rejected(self, error: str) -> RequestResult:
        return RequestResult(RequestStatus.REJECTED, error=error, leader=self.leader)

    def _propose_as_leader(
        self, data: bytes, client_id: str, serial: int, prev_serial: int
    ) -> RequestResult:
        if self._transfer_target:
            return RequestResult(
                RequestStatus.REJECTED, error=Reason.TRANSFERRING, leader=self._transfer_target
            )
        if client_id:
            known = self._leader_sessions.get((client_id, serial))
            if known is not None:
                return RequestResult(
                    RequestStatus.APPENDED, index=known[0], term=known[1], leader=self.id
                )
            answer = self._check_client_order(client_id, serial, prev_serial)
            if answer is not None:
                return answer
        uncommitted = self.log.last_index - self.log.commit
        if uncommitted >= self.config.max_uncommitted_entries:
            return self._rejected(Reason.TOO_MANY_UNCOMMITTED.format(count=uncommitted))
        index = self.log.last_index + 1
        self._append([Entry(index, self.term, EntryKind.NORMAL, bytes(data), client_id, serial)])
        if client_id:
            self._leader_sessions[(client_id, serial)] = (index, self.term)
        self._proposals_appended += 1
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
        if self._configs.current_index > self.log.commit:
            return self._rejected(Reason.CHANGE_PENDING.format(index=self._configs.current_index))
        return None

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
        serials = self._log_serials
        for entry in entries:
            client_id = entry.client_id
            if client_id:
                known = serials.get(client_id)
                if known is None or entry.serial >= known[0]:
                    serials[client_id] = (entry.serial, entry.index)
        if self._configs.observe(entries):
            self._configuration_changed()

    # --- client order ----------------------------------------------------------------

    def _rebuild_log_serials(self) -> None:
        """Recompute the per-client serials from the log after the snapshot (on start, after
        a truncation or a compaction): O(log length), never on the hot path."""
        serials: dict[str, tuple[int, int]] = {}
        for entry in self._all_entries():
            client_id = entry.client_id
            if client_id:
                known = serials.get(client_id)
                if known is None or entry.serial >= known[0]:
                    serials[client_id] = (entry.serial, entry.index)
        self._log_serials = serials

    def _remember_serials(self, compacted: list[Entry]) -> None:
        """Keep the last serial of clients whose entries are about to be compacted."""
        base = self._base_serials
        for entry in compacted:
            client_id = entry.client_id
            if client_id:
                last = base.pop(client_id, 0)
                base[client_id] = max(last, entry.serial)  # re-inserted: most recently seen
        while len(base) > MAX_REMEMBERED_CLIENTS:
            del base[next(iter(base))]

    def _client_last_serial(self, client_id: str) -> int | None:
        """The client's highest serial in the log (compacted part included); None if unknown."""
        known = self._log_serials.get(client_id)
        base = self._base_serials.get(client_id)
        if known is None:
            return base
        return known[0] if base is None or known[0] >= base else base

    def _check_client_order(
        self, client_id: str, serial: int, prev_serial: int
    ) -> RequestResult | None:
        """None if the proposal may be appended; else the answer that keeps client order:
        a duplicate (already in the log) or a refusal naming where the client must resume."""
        # A client unknown here has no serial in the log: only the first proposal of a run
        # (prev_serial 0) may start it. Its runtime proposes with prev_serial 0 whenever
        # the previous proposal is known applied, so a forgotten client is not stuck.
        last = self._client_last_serial(client_id) or 0
        if serial <= last:
            located = self._log_serials.get(client_id)
            if located is not None and located[0] == serial:
                index = located[1]
                if self.log.snapshot_index < index <= self.log.last_index:
                    entry = self.log.entry(index)
                    if entry.client_id == client_id and entry.serial == serial:
                        return RequestResult(
                            RequestStatus.APPENDED, index=index, term=entry.term, leader=self.id
                        )
            return RequestResult(RequestStatus.DUPLICATE, error=Reason.DUPLICATE, leader=self.id)
        if prev_serial and prev_serial != last:
            error = Reason.OUT_OF_ORDER.format(
                serial=serial, client=client_id, prev=prev_serial, last=last
            )
            return RequestResult(
                RequestStatus.REJECTED,
                error=error,
                leader=self.id,
                out_of_order=True,
                resume_after=last,
            )
        return None

    def _configuration_changed(self) -> None:
        current = self._configs.current
        self._events.append(ConfigurationChanged(self._configs.current_index, current))
        if self.role is Role.LEADER:
            self._sync_progress()
            if self._transfer_target and self._transfer_target not in current.voters:
                self._abort_transfer(Reason.TRANSFER_TARGET_REMOVED)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE) and not self._promotable():
            self._become_follower(self.term, NO_NODE)

    def _sync_progress(self) -> None:
        members = self._configs.current.members
        for peer in sorted(members):
            if peer != self.id and peer not in self._progress:
                self._progress[peer] = Progress(next=self.log.last_index + 1)
        for peer in list(self._progress):
            if peer not in members:
                del self._progress[peer]

    def _abort_transfer(self, reason: str) -> None:
        self._events.append(TransferAborted(self._transfer_target, reason))
        self._transfer_target = NO_NODE

    def _handle_forward(self, m: ForwardProposal) -> None:
        if self.role is Role.LEADER:
            if len(m.data) > self.config.max_proposal_bytes:
                result = self._rejected(
                    Reason.TOO_LARGE.format(size=len(m.data), limit=self.config.max_proposal_bytes)
                )
            else:
                result = self._propose_as_leader(m.data, m.client_id, m.serial, m.prev_serial)
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
                out_of_order=result.out_of_order,
                resume_after=result.resume_after,
                duplicate=result.status is RequestStatus.DUPLICATE,
            ),
        )

    def _handle_proposal_result(self, m: ProposalResult) -> None:
        key = (m.client_id, m.serial)
        if self._forwarded.pop(key, None) is None:
            return
        if m.duplicate:
            self._outcomes.append(
                ProposalOutcome(
                    m.client_id, m.serial, error=Reason.DUPLICATE, leader=m.leader, duplicate=True
                )
            )
            return
        if m.error or m.index <= 0:
            error = m.error or Reason.NOT_LEADER
            self._outcomes.append(
                ProposalOutcome(
                    m.client_id,
                    m.serial,
                    error=error,
                    leader=m.leader,
                    out_of_order=m.out_of_order,
                    resume_after=m.resume_after,
                )
            )
            return
        self._track_commit(m.index, m.entry_term, m.client_id, m.serial)

    def _track_commit(self, index: int, term: int, client_id: str, serial: int) -> None:
        """Report (client_id, serial) once the entry at index/term is handed out as committed."""
        if index > self._emitted_through:
            self._awaiting_commit[index] = (client_id, serial, term)
            return
        known = self.log.term(index)
        if known is None:
            error = Reason.UNKNOWN
        elif known == term:
            error = ""
        else:
            error = Reason.OVERWRITTEN
        self._outcomes.append(ProposalOutcome(client_id, serial, index, term, error, self.leader))

    def _resolve_committed(self, committed: list[Entry]) -> None:
        awaiting = self._awaiting_commit
        sessions = self._leader_sessions
        for entry in committed:
            if sessions and entry.client_id:
                sessions.pop((entry.client_id, entry.serial), None)
            if not awaiting:
                if not sessions:
                    return
                continue
            tracked = awaiting.pop(entry.index, None)
            if tracked is None:
                continue
            client_id, serial, term = tracked
            same = entry.term == term and entry.client_id == client_id and entry.serial == serial
            self._outcomes.append(
                ProposalOutcome(
                    client_id,
                    serial,
                    entry.index,
                    term,
                    "" if same else Reason.OVERWRITTEN,
                    self.leader,
                )
            )

    def _fail_forwarded(self, reason: str) -> None:
        if self._forwarded:
            for client_id, serial in self._forwarded:
                self._outcomes.append(ProposalOutcome(client_id, serial, error=reason))
            self._forwarded.clear()
        if self._forwarded_reads:
            for request_id in self._forwarded_reads:
                self._read_states.append(ReadState(request_id, error=reason))
            self._forwarded_reads.clear()

    def _expire_requests(self) -> None:
        now = self._ticks
        proposals = self._proposal_deadlines
        while proposals and proposals[0][0] <= now:
            deadline, key = proposals.popleft()
            if self._forwarded.get(key) == deadline:
                del self._forwarded[key]
                self._outcomes.append(ProposalOutcome(key[0], key[1], error=Reason.TIMED_OUT))
        reads = self._read_deadlines
        while reads and reads[0][0] <= now:
            deadline, request_id = reads.popleft()
            if self._forwarded_reads.get(request_id) == deadline:
                del self._forwarded_reads[request_id]
                self._read_states.append(ReadState(request_id, error=Reason.TIMED_OUT))

    # --- ReadIndex --------------------------------------------------------------

    def _leader_read(self, origin: NodeId, request_id: int) -> None:
        if self.log.term(self.log.commit) != self.term:
            self._reads_before_commit.append((origin, request_id))
            return
        read = _PendingRead(origin, request_id, self.log.commit, self._heartbeat_seq + 1)
        if self._read_quorum(read.heartbeat_seq, count_peers=False):
            self._answer_read(origin, request_id, read.index, "")
            return
        self._reads.append(read)
        self._read_round_needed = True

    def _read_quorum(self, seq: int, count_peers: bool = True) -> bool:
        voters = self._configs.current.voters
        acks = 0
        for voter in voters:
            if voter == self.id:
                acks += 1
            elif count_peers:
                progress = self._progress.get(voter)
                if progress is not None and progress.heartbeat_ack >= seq:
                    acks += 1
        return acks >= len(voters) // 2 + 1

    def _release_reads(self) -> None:
        while self._reads and self._read_quorum(self._reads[0].heartbeat_seq):
            read = self._reads.popleft()
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
        if self._forwarded_reads.pop(m.request_id, None) is None:
            return
        if m.error:
            self._read_states.append(ReadState(m.request_id, error=m.error))
        else:
            self._read_states.append(ReadState(m.request_id, m.read_index))

    # --- follower: appends and snapshots ------------------------------------------

    def _handle_append(self, m: AppendEntries) -> None:
        log = self.log
        seq = m.heartbeat_seq
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
                        self._rebuild_log_serials()
                        if self._configs.truncate_from(conflict):
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
        incoming = self._incoming_snapshot
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
            snapshot = Snapshot(
                SnapshotMeta(index, m.last_included_term, m.configuration), bytes(incoming[2])
            )
            log.restore(snapshot)
            self._log_serials = {}
            self._base_serials = {}  # until the runtime tells what the snapshot holds
            self._configs.reset(index, m.configuration)
            self._configuration_changed()
            self._pending_install = snapshot
            self._pending_compaction = None
            self._snapshots_installed += 1
            self._emitted_through = index
            for tracked_index in [i for i in self._awaiting_commit if i <= index]:
                client_id, serial, term = self._awaiting_commit.pop(tracked_index)
                self._outcomes.append(
                    ProposalOutcome(client_id, serial, tracked_index, term, Reason.UNKNOWN)
                )
        self._send(m.sender, InstallSnapshotResponse(self.id, self.term, index, size, True))

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

    # --- plumbing -----------------------------------------------------------------

    def _send(self, to: NodeId, message: Message) -> None:
        name = type(message).__name__
        self._sent[name] = self._sent.get(name, 0) + 1
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
