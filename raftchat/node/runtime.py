"""The node runtime: drives one Raft core with storage, the WebRTC mesh and timers.

The loop of work follows the core's Ready contract (:mod:`raftchat.raft.ready`):
persist (one SQLite transaction, one fsync, for everything the core produced
since the last round), then send, then apply committed entries to the chat
state machine and publish what happened to the front ends (TUI or headless).
Inputs — ticks, peer messages, local proposals — only mark work as due; one
``_drain`` per event-loop turn handles them all, so a burst of messages is
persisted with a single fsync (group commit).

The parts live next door: own proposals in :mod:`.proposals`, lazy ticking in
:mod:`.ticker`, membership automation in :mod:`.membership`, what the front ends
see in :mod:`.events`, when to compact in :mod:`.compaction`, carrying on without dead
members in :mod:`.forget`. A quitting node asks to be removed, after handing over
leadership if it leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from raftchat import chat
from raftchat.limits import MAX_SNAPSHOT_BYTES, incarnation_problem
from raftchat.net import LinkInfo, LinkState, Mesh, MeshConfig, SignalingClient
from raftchat.net.signaling.client import SignalingConnection, SignalingSession
from raftchat.net.signaling.protocol import WitnessRelay
from raftchat.node.api import (
    AckEvent,
    ChatMessageEvent,
    ErrorEvent,
    Event,
    ForgetRefusedError,
    MemberInfo,
    NoticeEvent,
    ResetEvent,
    StatusEvent,
    validate_chat_text,
    validate_nick,
)
from raftchat.node.cluster import (
    NODE_CODEC,
    ClusterGate,
    ClusterHello,
    hello,
    new_cluster_identity,
    survivor,
)
from raftchat.node.compaction import CompactionSchedule
from raftchat.node.events import NodeView, Subscribers, assess_quorum
from raftchat.node.forget import lost_text, messages_lost, plan_forget, split_history_text
from raftchat.node.incarnation import IncarnationHello, begin_incarnation
from raftchat.node.membership import Liveness, MembershipPolicy, MembershipTracker
from raftchat.node.merge import MergeProgress, OwnMessage, merge_items
from raftchat.node.proposals import ProposalKind, ProposalTracker
from raftchat.node.reidentify import settle_legacy_state
from raftchat.node.ticker import LazyTicker
from raftchat.node.witness_link import WitnessLink, witness_allowed
from raftchat.raft import (
    AppendEntries,
    ClusterIdentity,
    ConfigurationChanged,
    Entry,
    EntryKind,
    ForwardProposal,
    HistoryDiverged,
    LeaderChanged,
    Message,
    PersistentState,
    ProposalResult,
    RaftCore,
    RaftSettings,
    Ready,
    RequestResult,
    RequestVote,
    RequestVoteResponse,
    Role,
    RoleChanged,
    Snapshot,
    SnapshotRefused,
    TimeoutNow,
    TransferAborted,
    codec,
    decode_configuration,
)
from raftchat.settings import Settings, adaptive_election_timeout_ms
from raftchat.storage import Storage, StorageError, StorageFullError

logger = logging.getLogger(__name__)

_SIGNALING_STATES = {"closed": "disconnected"}
_URGENT_KINDS = (RequestVote, RequestVoteResponse, TimeoutNow, ProposalResult)


def _writes_to_disk(ready: Ready) -> bool:
    """Whether ``ready`` has anything for ``Storage.save``."""
    return bool(ready.hard_state or ready.entries or ready.snapshot or ready.truncate_from)


def is_urgent(message: Message) -> bool:
    """Whether ``message`` may overtake bulk traffic on a link: votes, leadership hand-over
    and the answers to forwarded proposals, so an election or a hand-over is never stuck
    behind a burst. AppendEntries (heartbeats included), snapshots and their responses
    stay in order: letting empty heartbeats overtake entries stalled replication under
    sustained bursts (a leader kept resending while followers appended nothing)."""
    return type(message) in _URGENT_KINDS


@dataclass(frozen=True)
class RuntimeTuning:
    """Knobs of the runtime that are not user settings (tests shorten some of them)."""

    presence_grace_s: float = 3.0
    """A member missing from presence this long counts as gone (a signaling server that
    restarts reports peers one by one as they reconnect: that is not a departure)."""
    membership_interval_s: float = 0.1
    """How often the leader reconsiders membership."""
    status_interval_s: float = 0.2
    """At most this often a StatusEvent / MembersEvent is published."""
    retry_after_s: float = 5.0
    """An unacknowledged proposal is sent again after this long without an answer (and a
    forwarded one counts as failed): long enough for a busy leader to get through a full
    window of proposals, since resending them then only adds to its load. A leader change
    resends at once, and the reliable links lose nothing while they stay up."""
    leave_timeout_s: float = 5.0
    """How long a quitting node waits for its removal (and leadership hand-over)."""
    removal_wait_s: float = 1.0
    """After its leave request commits, how long a quitting node waits to see its removal."""
    silent_link_reset_s: float = 2.0
    """A leader reconnects to a member it has not heard from this long (at most this
    often): a peer that restarted may otherwise wait for the mesh's connect timeout."""
    adapt_interval_s: float = 1.0
    """How often the election timeout is adapted to the links' round-trip times."""
    max_apply_per_turn: int = 8192
    merge_settle_s: float = 3.0
    """A node that must leave its cluster to merge waits at most this long for its own
    proposals sent there to be applied (or refused), so they keep their place in its
    history; one its cluster may still commit but cannot now goes to the end of its merge
    queue."""
    max_unacknowledged_proposals: int = 1024
    """Own proposals sent but not yet acknowledged; later ones wait in order. A follower
    that forwarded a whole burst at once had its proposals time out before the leader got
    through them, and resent all of them: more load exactly when the leader is behind."""


class NodeError(Exception):
    """The node cannot go on (its storage failed); the message says what to do."""


class Node:
    """One member of one channel: the :class:`~raftchat.node.api.ChatNode` a front end uses."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        *,
        server_url: str | None = None,
        nick: str | None = None,
        tuning: RuntimeTuning | None = None,
        rng: random.Random | None = None,
        passphrase: str | None = None,
        startup_problems: Sequence[str] = (),
        signaling: SignalingConnection | None = None,
    ) -> None:
        """``startup_problems``: what went wrong while opening (the damaged state that was
        set aside); every front end is told, even one that subscribes later.
        ``signaling``: a WebSocket to the server shared with other channels' nodes of this
        process (None: a socket of its own)."""
        self.settings = settings
        self.tuning = tuning = tuning or RuntimeTuning()
        self._passphrase = passphrase
        self._storage = storage
        self._server_url = server_url or settings.server_url
        self._rng = rng or random.Random()
        nick = validate_nick(nick or settings.nick or f"user-{storage.node_id[:4]}")
        self.view = NodeView(storage.node_id, nick, channel=storage.channel)
        self.subscribers = Subscribers()
        for problem in startup_problems:
            self.subscribers.publish_sticky(ErrorEvent(problem))
        self.membership = MembershipTracker(
            storage.node_id,
            MembershipPolicy(
                presence_grace_s=tuning.presence_grace_s,
                member_timeout_s=settings.member_timeout_s,
                max_voters=settings.max_voters,
                silent_link_reset_s=tuning.silent_link_reset_s,
            ),
        )
        self.ticker = LazyTicker(lambda: self.core, settings.tick_ms, self._schedule_drain)
        self.compaction = CompactionSchedule(
            settings.compaction_threshold, settings.catchup_entries, MAX_SNAPSHOT_BYTES
        )
        self._auth_errors: dict[str, str] = {}
        self._links: dict[str, LinkInfo] = {}
        self._link_rtts: dict[str, float | None] = {}
        """Each link's round-trip time when the status was last published."""
        self._malformed: dict[str, int] = {}
        self._spoofed: dict[str, int] = {}
        self._reads: dict[int, asyncio.Future[int]] = {}
        self._read_waiters: list[tuple[int, asyncio.Future[int]]] = []
        self._next_read_id = 1
        self._signaling_state = "connecting"
        self._drain_scheduled = False
        self._held_ready: Ready | None = None
        """Refused by a full disk: written again before anything newer."""
        self._writing: Ready | None = None
        """Its early messages are sent, its write is next: newer Readies wait for it."""
        self._stopping = False
        self._stopped = asyncio.Event()
        self._removed = asyncio.Event()
        self._leave_committed = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._election_timeout_ms = settings.election_timeout_min_ms
        self._nick_due = False
        """This node became a member: propose its nick if the channel does not know it."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mesh: Mesh | None = None
        self._shared_signaling = signaling
        self._signaling: SignalingSession | None = None
        self._witness: WitnessLink | None = None
        """The way to the signaling server's witness (no mesh link goes there)."""

        settle_legacy_state(storage, settings.history_window)  # a data dir from before keys
        persisted = storage.load()
        self.incarnation = begin_incarnation(storage)
        """This run of the node (:mod:`raftchat.node.incarnation`); its leave request
        names it, and every link opens with it."""
        snapshot = persisted.snapshot
        if persisted.entries:  # applied again below: what an earlier run stored is history
            self.view.history_through = persisted.entries[-1].index
        self.chat = self._restore_chat(snapshot)
        applied = snapshot.meta.index if snapshot else 0
        self._published_through = applied
        """The index of the last message published (or in the restored history)."""
        self.core = RaftCore(
            self._raft_settings(self._election_timeout_ms),
            PersistentState(persisted.hard_state, snapshot, persisted.entries, applied),
            self._rng,
            snapshot_check=self._chat_snapshot_problem,
        )
        if snapshot is not None:
            configuration = snapshot.meta.configuration
            self.chat.apply_membership(applied, configuration.voters, configuration.learners)
        self.cluster_gate = ClusterGate(self.node_id)
        self.cluster_gate.cluster = self.core.configuration.cluster or storage.cluster
        self._hellos_sent: dict[str, int] = {}
        """Per peer, the link connection (``LinkInfo.connects``) this node said hello on."""
        pending_merge = storage.pending_merge()
        self._merge = MergeProgress(pending_merge) if pending_merge else None
        """The history of a cluster this node left, still to merge into its new one."""
        self.cluster_gate.left = self._merge.sources if self._merge else frozenset()
        self._survivor_seen: ClusterIdentity | None = None
        """The older cluster met, which this node must leave its own for (once it can)."""
        self._merges_told: set[ClusterIdentity] = set()
        self._merge_due_since: float | None = None
        """When this node first saw that its cluster must merge into a linked one."""
        self.proposals = ProposalTracker(
            self.node_id,
            self._submit,
            tuning.max_unacknowledged_proposals,
            first_serial=max(self.chat.last_serial(self.node_id), time.time_ns() // 1000),
            sign=self._sign,
        )

    # --- ChatNode interface ---------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._storage.node_id

    @property
    def nick(self) -> str:
        return self.view.nick

    @property
    def channel(self) -> str:
        return self._storage.channel

    def history(self) -> Sequence[ChatMessageEvent]:
        return [self.view.message_event(self.chat, message) for message in self.chat.history()]

    def subscribe(self) -> asyncio.Queue[Event]:
        return self.subscribers.subscribe()

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self.subscribers.unsubscribe(queue)

    def send_chat(self, text: str, action: bool = False) -> str:
        text = validate_chat_text(text)
        now_ms = chat.clamp_message_ms(time.time_ns() // 1_000_000)  # even if the clock is off
        command = chat.ChatMessage(self.nick, text, now_ms, action)
        return self._propose_command(command, "message")

    async def set_nick(self, nick: str) -> None:
        self.view.nick = validate_nick(nick)
        self._propose_command(chat.NickChange(self.nick), "nick")

    def status(self) -> StatusEvent:
        return self._status_event()

    def members(self) -> tuple[MemberInfo, ...]:
        return self._members_info()

    async def leave(self) -> None:
        """Hand over leadership if leading, ask to be removed, wait briefly, then stop."""
        if self._stopped.is_set() or self._closing:
            return
        self._closing = True
        self._merge_not_due()  # quitting, not merging: the leave request goes out
        try:
            await asyncio.wait_for(self._depart(), self.tuning.leave_timeout_s)
        except TimeoutError:
            logger.warning("left without confirmation of removal (timed out)")
        await self.stop()

    def forget(self, names: Sequence[str], confirm: bool = False) -> str | None:
        """Carry on without dead voters (see :meth:`raftchat.node.api.ChatNode.forget`)."""
        if self._stopped.is_set() or self._closing:
            raise NodeError("the node has stopped")
        status = self.core.status()
        report = assess_quorum(
            status, self._liveness(), self._election_timeout_ms / 1000, self._name
        )
        plan = plan_forget(
            names,
            self_id=self.node_id,
            configuration=status.configuration,
            missing=report.missing,
            needed=report.needed,
            reachable=report.reachable,
            name_of=self._name,
        )
        if not confirm:
            return plan.warning
        self.ticker.catch_up()
        result = self.core.force_remove(plan.node_ids)
        if not result.ok:
            raise ForgetRefusedError(f"Cannot carry on alone: {result.error}.")
        logger.warning("carrying on without %s (forgotten)", ", ".join(plan.names))
        self.view.forgetting(plan.node_ids)
        self.membership.forgotten(plan.node_ids, time.monotonic())
        self._schedule_drain()
        return None

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the signaling server and the peers; begin ticking."""
        self._loop = asyncio.get_running_loop()
        if self._shared_signaling is not None:
            self._signaling = self._shared_signaling.session(
                self.channel, self._storage.identity, self
            )
        else:
            self._signaling = SignalingClient(
                self._server_url, self.channel, self._storage.identity, self
            )
        self._mesh = Mesh(
            self._storage.identity,
            self._signaling,
            MeshConfig(
                ice_servers=tuple(self.settings.ice_servers),
                relay_only=self.settings.relay_only,
                ice_host=self.settings.ice_host,
                webrtc=self.settings.webrtc,
                signaling_url=self._server_url,
                channel=self.channel,
                passphrase=self._passphrase,
            ),
            on_message=self._on_frame,
            on_link_change=self._on_link_change,
        )
        self.view.webrtc = self._mesh.engine.name
        signaling = self._signaling
        self._witness = WitnessLink(
            lambda: signaling.witness,
            signaling.send_witness,
            allowed=witness_allowed(self._passphrase is not None, self.settings.trust_server),
        )
        self._signaling.set_role(self._role_hint())
        await self._signaling.start()
        if self._is_blank() and not self._signaling.peers:
            logger.info("first node of channel %s: starting a one-node cluster", self.channel)
            cluster = new_cluster_identity(time.time_ns() // 1_000_000)
            self._join_cluster(cluster)
            self.core.bootstrap(cluster)
        elif self._is_blank():
            logger.info("channel %s has peers: waiting to be added", self.channel)
        self._tasks = [
            asyncio.create_task(self.ticker.run(), name="raftchat-tick"),
            asyncio.create_task(self._housekeeping_loop(), name="raftchat-housekeeping"),
        ]
        self._schedule_drain()

    async def stop(self) -> None:
        """Stop at once (no removal): close links, the signaling connection and storage."""
        if self._stopping:
            return
        self._stopping = True
        self._stopped.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._mesh is not None:
            await self._mesh.close()
        if self._witness is not None:
            self._witness.close()
        if self._signaling is not None:
            await self._signaling.close()
        self._storage.close()
        for future in list(self._reads.values()):
            if not future.done():
                future.set_exception(NodeError("node stopped"))
        self._publish_status()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def mesh(self) -> Mesh | None:
        """The mesh (tests inject faults through its engine's frame filter)."""
        return self._mesh

    async def read_index(self) -> int:
        """A linearizable read barrier: returns once this node has applied every entry
        committed before the call (the leader confirmed it still leads)."""
        request_id = self._next_read_id
        self._next_read_id += 1
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.ticker.catch_up()
        result = self.core.read_index(request_id)
        if not result.ok:
            raise NodeError(result.error)
        self._reads[request_id] = future
        self._schedule_drain()
        return await future

    # --- inputs -------------------------------------------------------------------------

    def _propose_command(self, command: chat.Command, kind: ProposalKind) -> str:
        if self._stopped.is_set():
            raise NodeError("the node has stopped")
        return self.proposals.propose(command, kind, time.monotonic())

    def _submit(self, data: bytes, serial: int) -> RequestResult:
        """The proposal tracker's way into the core."""
        self.ticker.catch_up()
        result = self.core.propose(data, self.node_id, serial)
        self._schedule_drain()
        return result

    def _on_frame(self, peer: str, data: bytes) -> None:
        try:
            message = NODE_CODEC.decode(data)
        except codec.CodecError as error:
            self._malformed[peer] = self._malformed.get(peer, 0) + 1
            logger.debug("dropped malformed frame from %s: %s", peer, error)
            return
        if message.sender != peer or (
            type(message) is ForwardProposal and message.client_id != peer
        ):
            # A proposal names its author: only the author may hand it to the leader.
            self._spoofed[peer] = self._spoofed.get(peer, 0) + 1
            logger.warning("dropped a message from %s in another node's name", peer)
            return
        self.membership.heard_from(peer, time.monotonic())
        if type(message) is ClusterHello:
            self.cluster_gate.heard_hello(message)
            self._consider_merge()
            return
        if type(message) is IncarnationHello:
            self._heard_incarnation(peer, message.incarnation)
            return
        gate = self.cluster_gate
        if not gate.admit(peer, message, self._open_peers):
            return
        joined = gate.adopts(peer)
        if joined is not None:
            logger.info("joining cluster %s (added by %s)", joined.cluster_id[:8], peer)
            self._join_cluster(joined)
        if type(message) is AppendEntries and message.entries:
            self.view.received_entries(message.entries[-1].index, message.leader_commit)
        self.ticker.catch_up()
        self.core.step(message)
        self._schedule_drain()

    def _heard_incarnation(self, peer: str, incarnation: int) -> None:
        problem = incarnation_problem(incarnation)
        if problem:
            self._malformed[peer] = self._malformed.get(peer, 0) + 1
            logger.debug("dropped incarnation hello from %s: %s", peer, problem)
            return
        self.membership.heard_incarnation(peer, incarnation)

    # --- cluster identity ---------------------------------------------------------------

    def _open_peers(self) -> frozenset[str]:
        return frozenset(peer for peer, info in self._links.items() if info.state == LinkState.OPEN)

    def _join_cluster(self, cluster: ClusterIdentity | None) -> None:
        """Belong to ``cluster`` from now on (founded or joined), durably, and tell the peers."""
        self.cluster_gate.cluster = cluster
        if self._storage.cluster != cluster:
            try:
                self._storage.set_cluster(cluster)
            except StorageError as error:
                self._storage_failed(None, error)
                return
        self._hellos_sent.clear()
        for peer, info in self._links.items():
            self._say_hello(peer, info)

    def _say_hello(self, peer: str, info: LinkInfo) -> None:
        """Tell ``peer`` this node's cluster, then its incarnation: first on every new
        connection, before any Raft message (urgent, so nothing queued overtakes them)."""
        if info.state != LinkState.OPEN:
            # The next connection needs a hello, even on a new link whose count of
            # connections starts over (the mesh drops the link of a peer that left).
            self._hellos_sent.pop(peer, None)
            return
        if self._hellos_sent.get(peer) == info.connects:
            return
        mesh = self._mesh
        if mesh is not None and mesh.send(
            peer, NODE_CODEC.encode(hello(self.node_id, self.cluster_gate.cluster)), True
        ):
            self._hellos_sent[peer] = info.connects
            mesh.send(
                peer, NODE_CODEC.encode(IncarnationHello(self.node_id, self.incarnation)), True
            )

    # SignalingListener: presence, relayed signals, connection state.

    def on_peers(self, peers: frozenset[str]) -> None:
        self._on_presence(peers)

    def on_signal(self, sender: str, payload: dict) -> None:
        if self._mesh is not None:
            self._mesh.handle_signal(sender, payload)

    def on_state(self, state: str) -> None:
        self._on_signaling_state(state)

    def on_witness(self, relay: WitnessRelay) -> None:
        """The witness's answers, through the signaling server."""
        link = self._witness
        if link is None or self._stopped.is_set():
            return
        messages = link.receive(relay, self.cluster_gate.cluster)
        if not messages or link.witness_id is None:
            return
        self.membership.heard_from(link.witness_id, time.monotonic())
        self.ticker.catch_up()
        for message in messages:
            self.core.step(message)
        self._schedule_drain()

    @property
    def witness_id(self) -> str | None:
        """The witness the signaling server offers, if this node may count on it."""
        return self._witness.witness_id if self._witness is not None else None

    def _wanted_links(self) -> frozenset[str]:
        signaling = self._signaling
        return self.membership.wanted_links(
            self.core.configuration,
            leader_known=bool(self.core.leader),
            peer_roles=signaling.peer_roles if signaling is not None else {},
        )

    def _update_links(self) -> None:
        if self._signaling is not None:
            self._signaling.set_role(self._role_hint())
        if self._mesh is not None and not self._stopped.is_set():
            self._mesh.set_peers(self._wanted_links())

    def _role_hint(self) -> str:
        """What this node tells the channel it is, so newcomers link only to voters."""
        configuration = self.core.configuration
        if self.node_id in configuration.voters:
            return "voter"
        return "learner" if self.node_id in configuration.learners else "none"

    def _on_presence(self, peers: frozenset[str]) -> None:
        returned = self.membership.presence_changed(
            peers, self.core.configuration.members, time.monotonic()
        )
        if returned and self._mesh is not None and self._signaling_state == "connected":
            links = self._mesh.links()
            for peer in returned & links.keys() & self._wanted_links():
                # Offers made while the peer was away went nowhere: start over now rather
                # than after the mesh's connect timeout. An open link stays (that peer's
                # signaling connection flapped, or a restarted peer asks for a new one).
                if links[peer].state != "open":
                    self._mesh.reset_link(peer)
        self._update_links()

    def _on_signaling_state(self, state: str) -> None:
        self._signaling_state = _SIGNALING_STATES.get(state, state)
        if state == "connected" and self._signaling is not None:
            self._on_presence(self._signaling.peers)
        self._publish_status()

    def _on_link_change(self, peer: str, info: LinkInfo) -> None:
        self._links[peer] = info
        self._say_hello(peer, info)
        if info.auth_error and self._auth_errors.get(peer) != info.auth_error:
            self._publish(ErrorEvent(info.auth_error))  # e.g. a wrong passphrase
        if info.auth_error:
            self._auth_errors[peer] = info.auth_error
        else:
            self._auth_errors.pop(peer, None)
        self._publish_members()

    async def _housekeeping_loop(self) -> None:
        last_membership = last_status = last_adapt = 0.0
        while True:
            await asyncio.sleep(self.tuning.membership_interval_s)
            now = time.monotonic()
            if now - last_membership >= self.tuning.membership_interval_s:
                last_membership = now
                self._manage_membership(now)
                self._reset_silent_links(now)
                self.proposals.retry_stale(now, self.tuning.retry_after_s)
            if now - last_adapt >= self.tuning.adapt_interval_s:
                last_adapt = now
                self._adapt_election_timeout()
            if now - last_status >= self.tuning.status_interval_s:
                last_status = now
                self._note_links(now)
                self._publish_status()
                self._publish_members()
                for notice in self.view.due_notices(self.chat):
                    self._publish(notice)
            if self._nick_due:
                self._propose_nick_if_unknown()
            if self._survivor_seen is not None:
                self._consider_merge()
            if self._merge is not None:
                self._advance_merge(now)
            if self._held_ready is not None:
                self._schedule_drain()

    # --- the Ready loop ---------------------------------------------------------------

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and not self._stopped.is_set() and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._stopped.is_set() or self._writing is not None:
            return  # the deferred write drains again when it is done
        for _ in range(64):
            ready, self._held_ready = self._held_ready, None
            if ready is None:
                if not self.core.has_ready():
                    break
                ready = self.core.ready()
                self._send(ready.early_messages)  # once, even if the write is retried
                if ready.early_messages and self._loop is not None and _writes_to_disk(ready):
                    # Write once the loop has put them on the wire, so the followers store
                    # them meanwhile: a link flushes in the next loop iteration and aiortc's
                    # SCTP sends in a task it starts then, hence two hops.
                    self._writing = ready
                    self._loop.call_soon(self._loop.call_soon, self._write_deferred, ready)
                    return
            if not self._write_and_act(ready):
                return
        else:
            self._schedule_drain()  # more work: yield to the loop first
        self._maybe_compact()
        self.ticker.retick_if_sooner()

    def _write_deferred(self, ready: Ready) -> None:
        self._writing = None
        if not self._stopped.is_set() and self._write_and_act(ready):
            self._drain()

    def _write_and_act(self, ready: Ready) -> bool:
        """Store what ``ready`` asks for, then act on it; False if the disk refused."""
        try:
            if ready.compacted is not None:
                self._storage.compact(ready.compacted)
            if _writes_to_disk(ready):
                self._storage.save(
                    ready.hard_state, ready.entries, ready.truncate_from or None, ready.snapshot
                )
        except StorageError as error:
            self._storage_failed(ready, error)
            return False
        self._act(ready)
        self.core.advance(ready)
        return True

    def _storage_failed(self, ready: Ready | None, error: StorageError) -> None:
        """A full disk holds ``ready`` for a retry; any other failure stops the node."""
        if isinstance(error, StorageFullError) and ready is not None:
            self._held_ready = ready
            self._publish(ErrorEvent(f"cannot store the log, retrying: {error}"))
            return
        self._publish(ErrorEvent(f"storage failed, stopping: {error}"))
        logger.error("storage failed: %s", error)
        self._stopped.set()  # nothing more is sent or applied
        if self._loop is not None:
            self._loop.create_task(self.stop())

    def _send(self, messages: list[tuple[str, Message]]) -> None:
        mesh = self._mesh
        if mesh is None:
            return
        witnesses = self.core.configuration.witnesses
        for to, message in messages:
            if to in witnesses:
                self._send_to_witness(to, message)
            else:
                mesh.send(to, NODE_CODEC.encode(message), is_urgent(message))

    def _send_to_witness(self, to: str, message: Message) -> None:
        """Over the signaling server; a witness it no longer offers gets nothing (the
        membership plan replaces it)."""
        link = self._witness
        if link is not None and to == link.witness_id:
            link.send(self.cluster_gate.cluster, message)

    def _act(self, ready: Ready) -> None:
        self._send(ready.messages)
        if ready.snapshot is not None:
            self._install_snapshot(ready.snapshot)
        for entry in ready.committed_entries:
            self._apply(entry)
        for read_state in ready.read_states:
            future = self._reads.pop(read_state.request_id, None)
            if future is None or future.done():
                continue
            if read_state.error:
                future.set_exception(NodeError(read_state.error))
            else:
                self._read_waiters.append((read_state.index, future))
        if self._read_waiters:
            self._serve_reads()
        new_leader = False
        for event in ready.events:
            self._on_core_event(event)
            new_leader |= isinstance(event, LeaderChanged) and bool(event.leader)
        self.proposals.after_round(
            ready.proposal_outcomes,
            new_leader=new_leader,
            leader_known=bool(self.core.leader),
            now=time.monotonic(),
        )

    def _serve_reads(self) -> None:
        applied = self.chat.last_applied_index
        waiting = []
        for index, future in self._read_waiters:
            if index <= applied:
                if not future.done():
                    future.set_result(index)
            else:
                waiting.append((index, future))
        self._read_waiters = waiting

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        before = self.chat.history()
        self.chat = self._restore_chat(snapshot)
        lost = messages_lost(before, self.chat)
        if lost:
            logger.error("a snapshot replaced %d committed messages", len(lost))
            self._publish(ErrorEvent(lost_text(lost)))
        self.compaction.clear()
        configuration = snapshot.meta.configuration
        self.chat.apply_membership(
            snapshot.meta.index, configuration.voters, configuration.learners
        )
        self._publish(NoticeEvent("info", "caught up from a snapshot", time.time()))
        self._nick_due = True
        if self._merge is not None:
            # What the snapshot covers never passes through _merge_applied (queued messages
            # the channel has now, this node's MergeDone): go over the queue again, as
            # after a restart.
            self._merge.proposed = self._merge.done_proposed = False
        # Only what front ends have not seen: a member that fell behind keeps a view
        # whose indices only grow (history() has the rest).
        for message in self.chat.history():
            if message.index > self._published_through:
                self._publish_message(message)
        own_indices = {
            message.serial: message.index
            for message in self.chat.history()
            if message.client_id == self.node_id
        }
        settled = self.proposals.settle_after_snapshot(
            self.chat.last_serial(self.node_id), own_indices, time.monotonic()
        )
        for proposal, index in settled.acknowledged:
            if proposal.kind == "message":
                self._publish(AckEvent(proposal.message_id, index))
        if settled.leave_applied:
            self._leave_committed.set()

    def _chat_snapshot_problem(self, data: bytes) -> str | None:
        """Why a received snapshot is no chat state (None: it is one); checked before the
        core hands it over, so nothing invalid is stored."""
        try:
            chat.ChatState.restore(
                data, history_limit=self.settings.history_window, channel=self.channel
            )
        except chat.ChatSnapshotError as error:
            return str(error)
        return None

    def _restore_chat(self, snapshot: Snapshot | None) -> chat.ChatState:
        window = self.settings.history_window
        if snapshot is None or not snapshot.data:
            return chat.ChatState(history_limit=window, channel=self.channel)
        return chat.ChatState.restore(snapshot.data, history_limit=window, channel=self.channel)

    def _sign(self, command: chat.Command, serial: int) -> chat.Command:
        """This node's signature on its own command, with its identity key (every node
        checks it on apply)."""
        return chat.sign_command(command, self._storage.identity, self.channel, serial)

    def _maybe_compact(self) -> None:
        applied = self.chat.last_applied_index
        log = self.core.log
        if self.compaction.wants_snapshot(applied, log.snapshot_index):
            state = self.chat.snapshot()
            if not self.compaction.add(applied, state):
                logger.error(
                    "the chat state is %d bytes, over the %d-byte snapshot limit: the log is"
                    " not compacted (lower history_window)",
                    len(state),
                    MAX_SNAPSHOT_BYTES,
                )
        target = self.compaction.due(applied, log.snapshot_index)
        if target is not None:
            self.core.compact(*target)
            self._schedule_drain()

    # --- applying -------------------------------------------------------------------

    def _apply(self, entry: Entry) -> None:
        events = self.chat.apply(entry, proposed=self._own_proposal(entry))
        if entry.kind == EntryKind.CONFIG:
            try:
                configuration = decode_configuration(entry.data)
            except ValueError as error:
                logger.error("configuration entry %d unreadable: %s", entry.index, error)
            else:
                events += self.chat.apply_membership(
                    entry.index, configuration.voters, configuration.learners
                )
        for event in events:
            self._on_chat_event(event)
        if entry.client_id == self.node_id and self.proposals:
            self.proposals.applied_own_entry(
                entry.serial, self.chat.last_serial(self.node_id), time.monotonic()
            )

    def _own_proposal(self, entry: Entry) -> tuple[chat.Command, int] | None:
        """The command and ``prev_serial`` of this node's own proposal if ``entry`` holds
        exactly the bytes it signed and proposed under that serial (the chat state then
        neither decodes nor checks them again). Only a command this node signs itself: a
        merged message carries another author's signature, which is always checked."""
        if entry.client_id != self.node_id:
            return None
        proposal = self.proposals.pending.get(entry.serial)
        if (
            proposal is None
            or isinstance(proposal.command, chat.MergedMessage | chat.MergeDone)
            or proposal.data != entry.data
        ):
            return None
        return proposal.command, proposal.prev_serial

    def _on_chat_event(self, event: chat.ChatEvent) -> None:
        if self._merge is not None:
            self._merge_applied(event)
        own = getattr(event, "client_id", None) == self.node_id
        match event:
            case chat.MessageApplied():
                self._publish_message(event)
                if own:
                    self._acknowledge(event.serial, event.index)
            case chat.DuplicateDropped() if own:
                if event.original_index and event.serial in self.proposals.pending:
                    self._acknowledge(event.serial, event.original_index)
                # Otherwise it never applied and was overtaken by a later serial of ours:
                # ``_apply`` proposes it again.
            case chat.OutOfOrderDropped() if own:
                self.proposals.out_of_order(event.serial, event.last_serial)
            case chat.InvalidCommand() if own:
                self.proposals.acknowledge(event.serial)
                self._publish(ErrorEvent(f"message refused by the channel: {event.reason}"))
            case chat.LeaveRequested():
                self.membership.leave_requested(event.client_id, event.incarnation)
                if own and event.incarnation == self.incarnation:
                    self._leave_committed.set()  # not an earlier run's, applied again
            case chat.MemberJoined():
                self.membership.member_joined(event.node_id)
                if event.node_id == self.node_id:
                    self._nick_due = True
                    self._removed.clear()  # an earlier run's removal, applied again
            case chat.MemberLeft() if event.node_id == self.node_id:
                self._removed.set()
        liveness = self._liveness() if isinstance(event, chat.MemberLeft) else None
        for notice in self.view.notices_for(self.chat, event, liveness):
            self._publish(notice)

    def _propose_nick_if_unknown(self) -> None:
        """Once a member and caught up, propose this node's nick if the channel has none
        for it, so the others name it (in its join notice too) before it says anything."""
        if self._closing or self.node_id not in self.core.configuration.members:
            return
        if self.chat.last_applied_index < self.core.status().commit_index:
            return  # the nick may be in what is still to apply
        self._nick_due = False
        carry_nick = ("message", "nick")
        if self.chat.nick_of(self.node_id) or any(
            proposal.kind in carry_nick for proposal in self.proposals.pending.values()
        ):
            return
        self._propose_command(chat.NickChange(self.nick), "nick")

    def _acknowledge(self, serial: int, index: int) -> None:
        proposal = self.proposals.acknowledge(serial)
        if proposal is not None and proposal.kind == "message":
            self._publish(AckEvent(proposal.message_id, index))

    def _on_core_event(self, event: object) -> None:
        match event:
            case LeaderChanged(leader=leader):
                if self.node_id in self.core.configuration.learners:
                    self._update_links()  # a learner that knows no leader links to everyone
                if leader:
                    for notice in self.view.leader_notices(self.chat, leader, event.term):
                        self._publish(notice)
            case ConfigurationChanged(configuration=configuration):
                cluster = configuration.cluster
                if cluster is not None and cluster != self.cluster_gate.cluster:
                    if self.cluster_gate.cluster is None:
                        self._join_cluster(cluster)
                    else:
                        logger.error(
                            "the log names cluster %s, this node belongs to %s",
                            cluster.cluster_id,
                            self.cluster_gate.cluster.cluster_id,
                        )
                self._update_links()
                self._publish_status()
            case RoleChanged(role=Role.LEADER):
                self.membership.became_leader(self.core.configuration.members, time.monotonic())
                self._publish_status()
            case RoleChanged():
                self._publish_status()
            case TransferAborted(target=target, reason=reason):
                logger.info("leadership transfer to %s aborted: %s", target, reason)
            case SnapshotRefused(sender=sender, index=index, reason=reason):
                logger.warning("refused a snapshot (to %d) from %s: %s", index, sender, reason)
                self._publish(ErrorEvent(f"refused a snapshot from {sender}: {reason}"))
            case HistoryDiverged(leader=leader):
                self._publish(ErrorEvent(split_history_text(self._name(leader))))

    # --- membership -----------------------------------------------------------------

    def _manage_membership(self, now: float) -> None:
        status = self.core.status()
        if status.role is not Role.LEADER or self._closing:
            return
        joinable = self.cluster_gate.joinable(self._links)
        decision = self.membership.next_change(
            status,
            self._signaling.peers if self._signaling else frozenset(),
            self._signaling_state == "connected",
            {peer: info for peer, info in self._links.items() if peer in joinable},
            now,
            witness_available=self.witness_id,
        )
        if decision is None:
            return
        change, unreachable = decision
        self.ticker.catch_up()
        method = getattr(self.core, change.kind)
        result = method(change.node_id)
        if result.ok:
            logger.info("membership: %s %s (%s)", change.kind, change.node_id, change.reason)
            self.membership.change_made(change, unreachable, now)
            self._schedule_drain()

    def _reset_silent_links(self, now: float) -> None:
        if self._mesh is None or self.core.role is not Role.LEADER:
            return
        configuration = self.core.configuration
        members = configuration.members - configuration.witnesses  # no mesh link to those
        for member in self.membership.silent_members(members, now):
            if self._mesh.reset_link(member):
                logger.info(
                    "no word from %s for %.1f s: reconnecting",
                    member,
                    self.tuning.silent_link_reset_s,
                )

    async def _depart(self) -> None:
        status = self.core.status()
        members = status.configuration.members
        if not members or members == {self.node_id}:
            return
        if status.role is Role.LEADER:
            await self._hand_over_leadership()
            if self.node_id not in self.core.configuration.members:
                return  # removed itself while handing over
        self._propose_command(chat.Leave(self.incarnation), "leave")
        # Once the request is committed the leader removes this node whether or not it is
        # still here (the new configuration's quorum excludes it); a removed node is not
        # told, so only wait a moment for the removal itself.
        await self._leave_committed.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._removed.wait(), self.tuning.removal_wait_s)

    async def _hand_over_leadership(self) -> None:
        status = self.core.status()
        voters = status.configuration.voters - {self.node_id}
        candidates = sorted(
            (p for p in status.progress if p.node_id in voters),
            key=lambda p: (p.recent_active, p.match),
            reverse=True,
        )
        if not candidates:
            return
        target = candidates[0].node_id
        self.ticker.catch_up()
        result = self.core.transfer_leadership(target)
        self._schedule_drain()
        if not result.ok:
            logger.info("cannot hand leadership to %s: %s", target, result.error)
        tick = self.settings.tick_ms / 1000
        while self.core.role is Role.LEADER and self.core.status().transfer_target:
            await asyncio.sleep(tick)
        if self.core.role is not Role.LEADER:
            return
        # The transfer failed (the target fell behind or went quiet): remove this node
        # instead; once that commits the core steps down and wakes an up-to-date voter.
        logger.info("leadership transfer failed; removing this node directly")
        self.ticker.catch_up()
        result = self.core.remove(self.node_id)
        self._schedule_drain()
        if not result.ok:
            logger.warning("cannot remove this node: %s", result.error)
            return
        while self.core.role is Role.LEADER:
            await asyncio.sleep(tick)

    # --- merging two clusters of the channel -----------------------------------------

    def _consider_merge(self) -> None:
        """Another cluster of this channel is linked: if it survives, leave this one for it
        (now, or as soon as everything committed here is applied and this node's own
        proposals sent here are settled)."""
        gate = self.cluster_gate
        mine = gate.cluster
        if mine is None or self._closing or self._stopped.is_set():
            return
        others = gate.foreign(self._open_peers())
        if not others:
            self._merge_not_due()
            return
        winner = survivor(others | {mine})
        if winner == mine:
            self._merge_not_due()
            for other in others - self._merges_told:
                self._merges_told.add(other)
                logger.info(
                    "met cluster %s of channel %s: it will merge into this one",
                    other.cluster_id[:8],
                    self.channel,
                )
            self._survivor_seen = None
            return
        self._survivor_seen = winner
        now = time.monotonic()
        if self._merge_due_since is None:
            self._merge_due_since = now
        # What this node sends from now on waits for the survivor. What it sent already
        # may still commit here, after messages it has not applied: it waits for those to
        # settle (a while at most), or they would reach the survivor from its merge queue
        # ahead of messages that came before them here.
        self.proposals.paused = True
        settling = now - self._merge_due_since < self.tuning.merge_settle_s
        if (
            self._writing is not None
            or self._held_ready is not None
            or self.chat.last_applied_index < self.core.status().commit_index
            or (settling and self.proposals.unsettled())
        ):
            return  # the housekeeping loop tries again
        self._begin_merge(mine, winner)

    def _merge_not_due(self) -> None:
        """No surviving cluster is linked (any more): proposals go to this cluster again."""
        self._merge_due_since = None
        self.proposals.paused = False

    def _begin_merge(self, mine: ClusterIdentity, winner: ClusterIdentity) -> None:
        """Leave cluster ``mine`` for ``winner``: keep the committed history as the merge
        queue, with this node's own messages not yet applied after it, drop the Raft state
        (one transaction), start over as a newcomer."""
        logger.warning(
            "channel %s is split: cluster %s (this node's) merges into the older cluster %s",
            self.channel,
            mine.cluster_id[:8],
            winner.cluster_id[:8],
        )
        unfinished = list(self._merge.queue.values()) if self._merge is not None else []
        unsent = [
            OwnMessage(self.node_id, proposal.serial, proposal.command)
            for proposal in self.proposals.pending.values()
            if proposal.kind == "message" and isinstance(proposal.command, chat.ChatMessage)
        ]
        items = merge_items(self.chat.history(), mine, unfinished, unsent)
        try:
            self._storage.begin_merge(mine, items)
            pending = self._storage.pending_merge()
        except StorageError as error:
            self._storage_failed(None, error)
            return
        assert pending is not None
        self.proposals.hand_over()  # in the queue now: nothing goes ahead of it
        self._survivor_seen = self._merge_due_since = None
        self._merge = MergeProgress(pending)
        self.cluster_gate.left = self._merge.sources
        self.core = RaftCore(
            self._raft_settings(self._election_timeout_ms), PersistentState(), self._rng
        )
        self.chat = self._restore_chat(None)
        self.compaction.clear()
        self._published_through = 0
        for future in list(self._reads.values()):
            if not future.done():
                future.set_exception(NodeError("the channel's history was replaced"))
        self._reads.clear()
        self._read_waiters.clear()
        self._nick_due = True
        self._publish(ResetEvent("merge"))
        self._join_cluster(None)
        self.ticker.retick_if_sooner()
        self._update_links()
        self._publish_status()
        self._schedule_drain()

    def _advance_merge(self, now: float) -> None:
        """Once a caught-up member of a cluster, propose what the merge queue holds that the
        channel lacks; once it is all in, say so."""
        merge = self._merge
        assert merge is not None
        status = self.core.status()
        if (
            self._closing
            or self.cluster_gate.cluster is None
            or self.node_id not in status.configuration.members
            or not status.leader
            or self.chat.last_applied_index < status.commit_index
        ):
            return
        if not merge.proposed:
            merge.proposed = True
            self._merged(merge.take_present(self.chat.has_message))
            logger.info(
                "merging %d messages from cluster %s", len(merge), merge.source.cluster_id[:8]
            )
            for item in merge.queue.values():
                try:
                    command, _ = chat.decode_command(item.data)
                except chat.InvalidCommandError as error:
                    logger.warning("merge item %s unreadable: %s", item.message_id, error)
                    continue
                self.proposals.propose(command, "merge", now)
        if not merge.queue and not merge.done_proposed:
            merge.done_proposed = True
            for source in sorted(merge.sources):
                self.proposals.propose(chat.MergeDone(source), "merge", now)

    def _merged(self, message_ids: list[str]) -> None:
        """These queued messages are in the channel now: off the durable queue."""
        if not message_ids:
            return
        try:
            self._storage.merged(message_ids)
        except StorageError as error:
            self._storage_failed(None, error)

    def _merge_applied(self, event: chat.ChatEvent) -> None:
        """Follow what the channel applied: queued messages that arrived, and the end."""
        merge = self._merge
        assert merge is not None
        match event:
            case chat.MessageApplied(id=message_id) | chat.MergedDuplicate(message_id=message_id):
                if merge.committed(message_id):
                    self._merged([message_id])
            case chat.MergeCompleted(proposer=proposer) if proposer == self.node_id:
                if merge.done_proposed and not merge.queue:
                    logger.info("merge from cluster %s done", merge.source.cluster_id[:8])
                    self._merge = None
                    self.cluster_gate.left = frozenset()
                    try:
                        self._storage.finish_merge()
                    except StorageError as error:
                        self._storage_failed(None, error)

    # --- timers -----------------------------------------------------------------------

    def _adapt_election_timeout(self) -> None:
        if not self.settings.adaptive_election_timeout:
            return
        links = self._links_now()  # the link reports alone never carry a round-trip time
        latencies = [info.rtt_ms / 2 for info in links.values() if info.rtt_ms is not None]
        effective = adaptive_election_timeout_ms(self.settings, latencies)
        if effective != self._election_timeout_ms:
            self._election_timeout_ms = effective
            self.core.settings = self._raft_settings(effective)
            self.ticker.retick_if_sooner()
            logger.info("election timeout adapted to %d ms", effective)

    def _raft_settings(self, election_timeout_ms: int) -> RaftSettings:
        settings = self.settings
        return RaftSettings(
            node_id=self._storage.node_id,
            max_snapshot_bytes=MAX_SNAPSHOT_BYTES,
            election_timeout_ticks=settings.ms_to_ticks(election_timeout_ms),
            heartbeat_ticks=settings.ms_to_ticks(settings.heartbeat_ms),
            request_timeout_ticks=settings.ms_to_ticks(round(self.tuning.retry_after_s * 1000)),
        )

    # --- publishing -----------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        self.subscribers.publish(event)

    def _publish_message(self, message: chat.MessageApplied) -> None:
        self._published_through = message.index
        self._publish(self.view.message_event(self.chat, message))

    def _publish_status(self) -> None:
        self.subscribers.publish_status(self._status_event())

    def _publish_members(self) -> None:
        self.subscribers.publish_members(self._members_info())

    def _status_event(self) -> StatusEvent:
        return self.view.status_event(
            self.core.status(),
            applied_index=self.chat.last_applied_index,
            election_timeout_ms=self._election_timeout_ms,
            messages_dropped=sum(self._malformed.values()) + sum(self._spoofed.values()),
            other_cluster_dropped=self.cluster_gate.dropped,
            cluster=self.cluster_gate.cluster,
            stopped=self._stopped.is_set(),
            signaling_state=self._signaling_state,
            chat_state=self.chat,
            liveness=self._liveness(),
        )

    def _name(self, node_id: str) -> str:
        return self.view.name(self.chat, node_id)

    def _liveness(self) -> Liveness:
        connected = self._signaling_state == "connected"
        return self.membership.liveness(time.monotonic(), self.core.leader, connected, self._links)

    def _members_info(self) -> tuple[MemberInfo, ...]:
        return self.view.members_info(
            self.core.status(), self.chat, self._links_now(), self._witness_reachable()
        )

    def _note_links(self, now: float) -> None:
        """What the mesh says of every link now: who was heard, and round-trip times."""
        if self._mesh is None:
            return
        links = self._mesh.links()
        self.membership.links_seen(links, now)
        self._link_rtts = {peer: info.rtt_ms for peer, info in links.items()}

    def _links_now(self) -> dict[str, LinkInfo]:
        """The links as last reported, with the round-trip times measured since (taken with
        the status): the mesh reports a link when its state changes, before its first ping
        has come back, so the report alone never has one."""
        rtts = self._link_rtts
        return {
            peer: replace(info, rtt_ms=rtts[peer])
            if info.rtt_ms is None and rtts.get(peer) is not None
            else info
            for peer, info in self._links.items()
        }

    def _witness_reachable(self) -> bool:
        """The witness answered within a few heartbeats (it only answers the leader)."""
        witness = self.witness_id
        heard = self.membership.last_heard.get(witness) if witness is not None else None
        quiet_s = max(1.0, 5 * self.settings.heartbeat_ms / 1000)
        return heard is not None and time.monotonic() - heard < quiet_s

    def _is_blank(self) -> bool:
        status = self.core.status()
        return status.term == 0 and status.last_index == 0 and not status.configuration.members
