"""The node runtime: drives one Raft core with storage, the WebRTC mesh and timers.

The loop of work follows the core's Ready contract (:mod:`raftchat.raft.ready`):
persist (one SQLite transaction, one fsync, for everything the core produced
since the last round), then send, then apply committed entries to the chat
state machine and publish what happened to the front ends (TUI or headless).
Inputs — ticks, peer messages, local proposals — only mark work as due; one
``_drain`` per event-loop turn handles them all, so a burst of messages is
persisted with a single fsync (group commit).

Membership follows presence (see :mod:`raftchat.membership`); any member can
send (followers forward to the leader; unacknowledged proposals are re-sent
with the same client id and serial after a leader change, and the chat state
machine applies each once); a quitting node asks to be removed, after handing
over leadership if it leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

from raftchat import chat
from raftchat.config import Settings, adaptive_election_timeout_ms
from raftchat.membership import MembershipView, next_change, wanted_links
from raftchat.net.link import LinkInfo, LinkState
from raftchat.net.mesh import Mesh, MeshConfig
from raftchat.net.signaling_client import SignalingClient
from raftchat.nodeapi import (
    AckEvent,
    ChatMessageEvent,
    ErrorEvent,
    Event,
    MemberInfo,
    MembersEvent,
    NoticeEvent,
    StatusEvent,
    validate_chat_text,
    validate_nick,
)
from raftchat.raft import codec
from raftchat.raft.config import RaftConfig, decode_configuration
from raftchat.raft.core import RaftCore
from raftchat.raft.messages import (
    Entry,
    EntryKind,
    Message,
    ProposalResult,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    TimeoutNow,
)
from raftchat.raft.ready import (
    ConfigurationChanged,
    LeaderChanged,
    PersistentState,
    ProposalOutcome,
    Ready,
    RequestStatus,
    Role,
    RoleChanged,
    TransferAborted,
)
from raftchat.storage import Storage, StorageError, StorageFullError

logger = logging.getLogger(__name__)

_STATE_NAMES = {
    Role.FOLLOWER: "follower",
    Role.PRE_CANDIDATE: "pre_candidate",
    Role.CANDIDATE: "candidate",
    Role.LEADER: "leader",
    Role.LEARNER: "learner",
}
MAX_PENDING_SNAPSHOTS = 8
"""Snapshots waiting for their catch-up entries are taken at least ``catchup_entries`` / this
many entries apart, so a small ``compaction_threshold`` cannot pile up snapshots in memory."""
_LINK_STATES = {"connecting": "connecting", "open": "connected", "failed": "failed"}
_SIGNALING_STATES = {"closed": "disconnected"}


_URGENT_KINDS = (RequestVote, RequestVoteResponse, TimeoutNow, ProposalResult)


MAX_IDLE_TICKS = 100
"""The tick loop wakes at least this often, whatever the core says."""
PAUSED_TICKS = 10
"""Waking this many ticks late means the process was paused, not busy."""


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
    max_unacknowledged_proposals: int = 1024
    """Own proposals sent but not yet acknowledged; later ones wait in order. A follower
    that forwarded a whole burst at once had its proposals time out before the leader got
    through them, and resent all of them: more load exactly when the leader is behind."""


@dataclass(slots=True)
class _Pending:
    """An own proposal not yet known to be applied."""

    serial: int
    data: bytes
    sent_at: float
    kind: str
    """"message", "nick" or "leave"."""
    message_id: str
    """The id the sender was given; kept if the proposal is re-proposed with a new serial."""


class NodeError(Exception):
    """The node cannot go on (its storage failed); the message says what to do."""


class Node:
    """One member of one channel: the :class:`~raftchat.nodeapi.ChatNode` a front end uses."""

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
    ) -> None:
        self.settings = settings
        self._passphrase = passphrase
        self._auth_errors: dict[str, str] = {}
        self.tuning = tuning or RuntimeTuning()
        self._storage = storage
        self._server_url = server_url or settings.server_url
        self._rng = rng or random.Random()
        self._nick = validate_nick(nick or settings.nick or f"user-{storage.node_id[:4]}")
        self._subscribers: list[asyncio.Queue[Event]] = []
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        """Own proposals not yet applied, in serial order (the order they were made)."""
        self._held: deque[int] = deque()
        """Serials of pending proposals not submitted to the current leader (there was
        none, or it refused): always the newest ones, a suffix of ``_pending``. While
        any is held, new proposals are held behind it, so serial n+1 is never proposed
        before n (the chat session drops a serial below the client's last applied one)."""
        self._resumed: tuple[int, int] = (-1, -1)
        """(resume_after, last serial sent again) of the last out-of-order refusal acted
        on: refusals of copies sent before that resend are answered by it already."""
        self._resume_due: tuple[int, int] | None = None
        """An out-of-order refusal of a local proposal (this node leads), acted on in
        the next ``_drain`` (not from inside the submission that got it)."""
        self._departing: set[str] = set()
        """Members that asked to be removed and have not come back since."""
        self._present: frozenset[str] = frozenset()
        self._ever_present: set[str] = set()
        self._last_heard: dict[str, float] = {}
        """When a frame last came from each peer (member or not)."""
        self._removed_unreachable: dict[str, float] = {}
        """Peers removed for silence, and when: not re-added until heard from again."""
        self._link_reset_at: dict[str, float] = {}
        self._absent_since: dict[str, float] = {}
        self._links: dict[str, LinkInfo] = {}
        self._malformed: dict[str, int] = {}
        self._spoofed: dict[str, int] = {}
        self._reads: dict[int, asyncio.Future[int]] = {}
        self._read_waiters: list[tuple[int, asyncio.Future[int]]] = []
        self._next_read_id = 1
        self._signaling_state = "connecting"
        self._drain_scheduled = False
        self._held_ready: Ready | None = None
        """Refused by a full disk: written again before anything newer."""
        self._tick_origin: float | None = None
        """Loop time of tick 0; the core has been given ``_ticks_given`` ticks since."""
        self._ticks_given = 0
        self._tick_deadline = 0
        """The tick the tick loop sleeps until."""
        self._retick = asyncio.Event()
        self._writing: Ready | None = None
        """Its early messages are sent, its write is next: newer Readies wait for it."""
        self._stopping = False
        self._stopped = asyncio.Event()
        self._removed = asyncio.Event()
        self._leave_committed = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_status: StatusEvent | None = None
        self._last_members: tuple[MemberInfo, ...] | None = None
        self._election_timeout_ms = settings.election_timeout_min_ms
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mesh: Mesh | None = None
        self._signaling: SignalingClient | None = None
        self._compaction_candidates: deque[tuple[int, bytes]] = deque()
        """Snapshots (index, chat state), oldest first, waiting for ``catchup_entries``
        more entries before the log is compacted to them."""

        persisted = storage.load()
        snapshot = persisted.snapshot
        self.chat = self._restore_chat(snapshot)
        applied = snapshot.meta.index if snapshot else 0
        self._published_through = applied
        """The index of the last message published (or in the restored history)."""
        self.core = RaftCore(
            self._raft_config(self._election_timeout_ms),
            PersistentState(persisted.hard_state, snapshot, persisted.entries, applied),
            self._rng,
        )
        if snapshot is not None:
            configuration = snapshot.meta.configuration
            self.chat.apply_membership(applied, configuration.voters, configuration.learners)
        self._restore_client_serials()
        self._serial = max(self.chat.last_serial(self.node_id), time.time_ns() // 1000)

    # --- ChatNode interface ---------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._storage.node_id

    @property
    def nick(self) -> str:
        return self._nick

    @property
    def channel(self) -> str:
        return self._storage.channel

    def history(self) -> Sequence[ChatMessageEvent]:
        return [self._message_event(message) for message in self.chat.history()]

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(queue)

    def send_chat(self, text: str, action: bool = False) -> str:
        text = validate_chat_text(text)
        command = chat.ChatMessage(self._nick, text, time.time_ns() // 1_000_000, action)
        return self._propose_command(command, "message")

    async def set_nick(self, nick: str) -> None:
        self._nick = validate_nick(nick)
        self._propose_command(chat.NickChange(self._nick), "nick")

    def status(self) -> StatusEvent:
        return self._status_event()

    def members(self) -> tuple[MemberInfo, ...]:
        return self._members_info()

    async def leave(self) -> None:
        """Hand over leadership if leading, ask to be removed, wait briefly, then stop."""
        if self._stopped.is_set() or self._closing:
            return
        self._closing = True
        try:
            await asyncio.wait_for(self._depart(), self.tuning.leave_timeout_s)
        except TimeoutError:
            logger.warning("left without confirmation of removal (timed out)")
        await self.stop()

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the signaling server and the peers; begin ticking."""
        self._loop = asyncio.get_running_loop()
        self._signaling = SignalingClient(
            self._server_url,
            self.channel,
            self.node_id,
            self._storage.reconnect_token,
            self,
        )
        self._mesh = Mesh(
            self.node_id,
            self._signaling,
            MeshConfig(
                ice_servers=tuple(self.settings.ice_servers),
                relay_only=self.settings.relay_only,
                ice_host=self.settings.ice_host,
                signaling_url=self._server_url,
                channel=self.channel,
                passphrase=self._passphrase,
            ),
            on_message=self._on_frame,
            on_link_change=self._on_link_change,
        )
        self._signaling.set_role(self._role_hint())
        await self._signaling.start()
        if self._is_blank() and not self._signaling.peers:
            logger.info("first node of channel %s: starting a one-node cluster", self.channel)
            self.core.bootstrap()
        elif self._is_blank():
            logger.info("channel %s has peers: waiting to be added", self.channel)
        self._tasks = [
            asyncio.create_task(self._tick_loop(), name="raftchat-tick"),
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
        """The mesh (fault injection in tests: ``node.mesh.block(peer)``)."""
        return self._mesh

    async def read_index(self) -> int:
        """A linearizable read barrier: returns once this node has applied every entry
        committed before the call (the leader confirmed it still leads)."""
        request_id = self._next_read_id
        self._next_read_id += 1
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._catch_up_ticks()
        result = self.core.read_index(request_id)
        if not result.ok:
            raise NodeError(result.error)
        self._reads[request_id] = future
        self._schedule_drain()
        return await future

    # --- inputs -------------------------------------------------------------------------

    def _propose_command(self, command: chat.Command, kind: str) -> str:
        if self._stopped.is_set():
            raise NodeError("the node has stopped")
        data = chat.encode_command(command)
        self._serial += 1
        serial = self._serial
        message_id = f"{self.node_id}:{serial}"
        pending = _Pending(serial, data, time.monotonic(), kind, message_id)
        self._pending[serial] = pending
        self._enqueue(pending)
        return message_id

    def _enqueue(self, pending: _Pending) -> None:
        """Submit a proposal newer than every pending one, or hold it behind held ones.
        O(1): this is the hot path of every message sent."""
        in_flight = len(self._pending) - len(self._held) - 1
        if self._held or in_flight >= self.tuning.max_unacknowledged_proposals:
            pending.sent_at = time.monotonic()
            self._held.append(pending.serial)
        elif not self._submit(pending):
            self._held.append(pending.serial)

    def _prev_serial(self, serial: int) -> int:
        """What the leader must hold before ``serial``: the previous proposal while it is
        unacknowledged; 0 once it is applied (nothing can overtake it any more: this also
        keeps a client the leader forgot from being refused forever) and for the first."""
        return serial - 1 if serial - 1 in self._pending else 0

    def _submit(self, pending: _Pending) -> bool:
        """Propose ``pending`` now; False if the core refused it (no leader known, ...)."""
        pending.sent_at = time.monotonic()
        serial = pending.serial
        self._catch_up_ticks()
        result = self.core.propose(pending.data, self.node_id, serial, self._prev_serial(serial))
        self._schedule_drain()
        if result.status is RequestStatus.REJECTED:
            logger.debug("proposal %d held: %s", serial, result.error)
            if result.out_of_order and self._resume_due is None:
                self._resume_due = (serial, result.resume_after)
            return False
        return True

    def _resume(self, serial: int, resume_after: int) -> None:
        """The leader refused ``serial``: its log lacks an earlier proposal of ours, and
        holds our serials up to ``resume_after``. Send every pending proposal after that
        again, in serial order (and nothing else). Refusals of the copies sent before
        this resend say the same thing and are skipped; if the resent ones are lost as
        well, the retry timer or the next leader change sends everything again."""
        if self._resumed[0] == resume_after and serial <= self._resumed[1]:
            return
        serials = [s for s in self._pending if s > resume_after]
        if not serials:
            return
        logger.debug("leader misses proposals after %d: resending %d", resume_after, len(serials))
        self._resumed = (resume_after, serials[-1])
        self._resubmit(serials)

    def _resubmit(self, serials: list[int]) -> None:
        """Submit pending proposals again in the given (ascending serial) order. If one is
        refused, or ``max_unacknowledged_proposals`` have gone, it and every pending
        proposal after it are held until a leader takes them.
        """
        budget = self.tuning.max_unacknowledged_proposals
        for serial in serials:
            pending = self._pending.get(serial)
            if pending is None:
                continue
            if budget == 0 or not self._submit(pending):
                self._held = deque(s for s in self._pending if s >= serial)
                return
            budget -= 1
        if serials and self._held and serials[-1] >= self._held[-1]:
            self._held.clear()

    def _resubmit_held(self) -> None:
        """Submit held proposals, oldest first, until one is refused again or
        ``max_unacknowledged_proposals`` are unacknowledged."""
        held = self._held
        window = self.tuning.max_unacknowledged_proposals
        while held and len(self._pending) - len(held) < window:
            pending = self._pending.get(held[0])
            if pending is not None and not self._submit(pending):
                return
            held.popleft()

    def _on_frame(self, peer: str, data: bytes) -> None:
        try:
            message = codec.decode(data)
        except codec.CodecError as error:
            self._malformed[peer] = self._malformed.get(peer, 0) + 1
            logger.debug("dropped malformed frame from %s: %s", peer, error)
            return
        if message.sender != peer:
            self._spoofed[peer] = self._spoofed.get(peer, 0) + 1
            logger.warning("dropped message from %s claiming to be %s", peer, message.sender)
            return
        self._last_heard[peer] = time.monotonic()
        self._catch_up_ticks()
        self.core.step(message)
        self._schedule_drain()

    # SignalingListener: presence, relayed signals, connection state.

    def on_peers(self, peers: frozenset[str]) -> None:
        self._on_presence(peers)

    def on_signal(self, sender: str, payload: dict) -> None:
        if self._mesh is not None:
            self._mesh.handle_signal(sender, payload)

    def on_state(self, state: str) -> None:
        self._on_signaling_state(state)

    def _wanted_links(self) -> frozenset[str]:
        """Peers present, and members even while presence misses them (a signaling outage
        or a member leaving must not cut the links Raft still needs) — but only pairs with
        a voter in them are linked (:func:`~raftchat.membership.wanted_links`)."""
        signaling = self._signaling
        roles = signaling.peer_roles if signaling is not None else {}
        return wanted_links(
            self.node_id,
            self.core.configuration,
            self._present,
            leader_known=bool(self.core.leader),
            hinted_voters=frozenset(peer for peer, role in roles.items() if role == "voter"),
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
        now = time.monotonic()
        appeared = peers - self._present
        returned = appeared & self._ever_present
        self._ever_present |= appeared
        # A node that asked to leave and comes back later is a newcomer again.
        self._departing -= appeared
        self._present = peers
        if returned and self._mesh is not None and self._signaling_state == "connected":
            links = self._mesh.links()
            for peer in returned & links.keys() & self._wanted_links():
                # Offers made while the peer was away went nowhere: start over now rather
                # than after the mesh's connect timeout. An open link stays (that peer's
                # signaling connection flapped, or a restarted peer asks for a new one).
                if links[peer].state != "open":
                    self._mesh.reset_link(peer)
        for peer in peers:
            self._absent_since.pop(peer, None)
        for member in self.core.configuration.members - peers - {self.node_id}:
            self._absent_since.setdefault(member, now)
        self._update_links()

    def _on_signaling_state(self, state: str) -> None:
        self._signaling_state = _SIGNALING_STATES.get(state, state)
        if state == "connected" and self._signaling is not None:
            self._on_presence(self._signaling.peers)
        self._publish_status()

    def _on_link_change(self, peer: str, info: LinkInfo) -> None:
        self._links[peer] = info
        if info.auth_error and self._auth_errors.get(peer) != info.auth_error:
            self._publish(ErrorEvent(info.auth_error))  # e.g. a wrong passphrase
        if info.auth_error:
            self._auth_errors[peer] = info.auth_error
        else:
            self._auth_errors.pop(peer, None)
        self._publish_members()

    async def _tick_loop(self) -> None:
        """Tick the core lazily: sleep until the next tick at which a timer is due (the
        core says when), or until an input brings one closer (:meth:`_retick_if_sooner`).
        Every tick is given before any other input (:meth:`_catch_up_ticks`), so the
        timers behave as if ticked at every interval, without waking up that often."""
        loop = asyncio.get_running_loop()
        interval = self.settings.tick_ms / 1000
        self._tick_origin = loop.time()
        while True:
            self._catch_up_ticks()
            wait = min(self.core.ticks_until_due(), MAX_IDLE_TICKS)
            self._tick_deadline = self._ticks_given + wait
            self._retick.clear()
            delay = self._tick_origin + self._tick_deadline * interval - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retick.wait(), delay)

    def _catch_up_ticks(self) -> None:
        """Give the core the ticks that fell due by now; after a pause of the process
        (SIGSTOP, a suspended laptop) only those due before it: it is not replayed."""
        loop, origin = self._loop, self._tick_origin
        if loop is None or origin is None:
            return
        now = loop.time()
        target = int((now - origin) / (self.settings.tick_ms / 1000))
        behind = target - self._ticks_given
        if behind <= 0:
            return
        if target - self._tick_deadline > PAUSED_TICKS:
            behind = max(1, self._tick_deadline - self._ticks_given)
            self._tick_origin = now - (self._ticks_given + behind) * self.settings.tick_ms / 1000
        for _ in range(behind):
            self.core.tick()
        self._ticks_given += behind
        self._schedule_drain()

    def _retick_if_sooner(self) -> None:
        """Wake the tick loop if an input made a timer due before its planned wake."""
        if self._ticks_given + self.core.ticks_until_due() < self._tick_deadline:
            self._retick.set()

    async def _housekeeping_loop(self) -> None:
        last_membership = last_status = last_adapt = 0.0
        while True:
            await asyncio.sleep(self.tuning.membership_interval_s)
            now = time.monotonic()
            if now - last_membership >= self.tuning.membership_interval_s:
                last_membership = now
                self._manage_membership(now)
                self._reset_silent_links(now)
                self._retry_stale_proposals(now)
            if now - last_adapt >= self.tuning.adapt_interval_s:
                last_adapt = now
                self._adapt_election_timeout()
            if now - last_status >= self.tuning.status_interval_s:
                last_status = now
                self._publish_status()
                self._publish_members()
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
        if self._resume_due is not None:
            serial, resume_after = self._resume_due
            self._resume_due = None
            self._resume(serial, resume_after)
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
        self._retick_if_sooner()

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

    def _storage_failed(self, ready: Ready, error: StorageError) -> None:
        """A full disk holds ``ready`` for a retry; any other failure stops the node."""
        if isinstance(error, StorageFullError):
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
        if mesh is not None:
            for to, message in messages:
                mesh.send(to, codec.encode(message), is_urgent(message))

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
        failed, refused = self._failed_own_serials(ready.proposal_outcomes)
        new_leader = False
        for event in ready.events:
            self._on_core_event(event)
            new_leader |= isinstance(event, LeaderChanged) and bool(event.leader)
        # Retries go out in serial order, after the core knows the current leader: a new
        # leader gets everything unacknowledged; otherwise the failed ones go again, and
        # held ones go once the leader takes proposals again (e.g. after commits).
        # An out-of-order refusal names where to resume: that resend covers the failed ones.
        if new_leader:
            self._resend_pending()
        elif refused:
            for serial, resume_after in refused:
                self._resume(serial, resume_after)
        elif failed:
            self._resubmit([s for s in failed if not self._held or s < self._held[0]])
        elif self._held and self.core.leader:
            self._resubmit_held()

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
        self.chat = self._restore_chat(snapshot)
        self._compaction_candidates.clear()  # older than the leader's snapshot
        configuration = snapshot.meta.configuration
        self.chat.apply_membership(
            snapshot.meta.index, configuration.voters, configuration.learners
        )
        self._publish(NoticeEvent("info", "caught up from a snapshot", time.time()))
        self._restore_client_serials()
        # Only what front ends have not seen: a member that fell behind keeps a view
        # whose indices only grow (history() has the rest).
        for message in self.chat.history():
            if message.index > self._published_through:
                self._publish_message(message)
        self._settle_pending_after_snapshot()

    def _restore_client_serials(self) -> None:
        """Tell the core each client's last applied serial (after restoring the chat from a
        snapshot), so a leader keeps the order of clients whose entries were compacted."""
        chat_state = self.chat
        self.core.restore_client_serials(
            {client_id: chat_state.last_serial(client_id) for client_id in chat_state.nicks()}
        )

    def _restore_chat(self, snapshot: Snapshot | None) -> chat.ChatState:
        if snapshot is None or not snapshot.data:
            return chat.ChatState(history_limit=self.settings.history_window)
        return chat.ChatState.restore(snapshot.data, history_limit=self.settings.history_window)

    def _maybe_compact(self) -> None:
        """Snapshot every ``compaction_threshold`` entries, but compact the log to a
        snapshot only once ``catchup_entries`` more are applied: the log keeps that many
        entries, so a member that fell a little behind (a busy or briefly paused machine)
        catches up from entries and sees every message, instead of getting a snapshot
        that shows only the history window."""
        applied = self.chat.last_applied_index
        log = self.core.log
        candidates = self._compaction_candidates
        newest = candidates[-1][0] if candidates else log.snapshot_index
        spacing = max(
            self.settings.compaction_threshold,
            self.settings.catchup_entries // MAX_PENDING_SNAPSHOTS,
        )
        if applied - newest >= spacing:
            candidates.append((applied, self.chat.snapshot()))
        target: tuple[int, bytes] | None = None
        while candidates and applied - candidates[0][0] >= self.settings.catchup_entries:
            target = candidates.popleft()
        if target is not None and target[0] > log.snapshot_index:
            # (not when a snapshot from the leader has already replaced it)
            self.core.compact(*target)
            self._schedule_drain()

    # --- applying -------------------------------------------------------------------

    def _apply(self, entry: Entry) -> None:
        events = self.chat.apply(entry)
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
        if entry.client_id == self.node_id and self._pending:
            pending = self._pending.get(entry.serial)
            if pending is not None and pending.kind != "message":
                del self._pending[entry.serial]  # a nick change or leave request took effect
            self._repropose_overtaken()

    def _repropose_overtaken(self) -> None:
        """Pending proposals below our last applied serial can never apply (the session
        drops them): propose them again under fresh serials, oldest first. O(1) unless one
        was overtaken.

        The leader appends a client's proposals only in order, so this takes a leader
        whose log already held a higher serial of ours than a pending proposal: after a
        restart whose clock-derived serials start below serials of the previous run still
        in the log (the clock stepped back), or for a client the leader had forgotten
        (beyond the core's MAX_REMEMBERED_CLIENTS or the chat's session cap). The
        re-proposed message then commits after later ones, and its committed id differs
        from the one send_chat returned (the ack still carries the returned id)."""
        last = self.chat.last_serial(self.node_id)
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if oldest.serial >= last:
                return
            self._repropose(oldest)

    def _on_chat_event(self, event: chat.ChatEvent) -> None:
        own = getattr(event, "client_id", None) == self.node_id
        match event:
            case chat.MessageApplied():
                self._publish_message(event)
                if own:
                    self._acknowledge(event.serial, event.index)
            case chat.NickChanged(old=old, new=new) if old:
                self._publish(NoticeEvent("nick", f"{old} is now known as {new}", time.time()))
            case chat.DuplicateDropped() if own:
                pending = self._pending.get(event.serial)
                if pending is None:
                    return
                if event.original_index:
                    self._acknowledge(event.serial, event.original_index)
                # Otherwise it never applied and was overtaken by a later serial of ours:
                # ``_apply`` proposes it again (see ``_repropose_overtaken``).
            case chat.InvalidCommand() if own:
                self._pending.pop(event.serial, None)
                self._publish(ErrorEvent(f"message refused by the channel: {event.reason}"))
            case chat.LeaveRequested():
                self._departing.add(event.client_id)
                if own:
                    self._leave_committed.set()
            case chat.MemberJoined():
                role = "voter" if event.voter else "learner"
                self._publish(
                    NoticeEvent(
                        "join", f"{self._name(event.node_id)} joined as {role}", time.time()
                    )
                )
            case chat.MemberLeft():
                self._publish(
                    NoticeEvent("leave", f"{self._name(event.node_id)} left", time.time())
                )
                if event.node_id == self.node_id:
                    self._removed.set()
            case chat.MemberRoleChanged():
                role = "voter" if event.voter else "learner"
                text = f"{self._name(event.node_id)} is now a {role}"
                self._publish(NoticeEvent("info", text, time.time()))

    def _repropose(self, pending: _Pending) -> None:
        """Propose ``pending`` again under a fresh serial (its own one can no longer apply)."""
        del self._pending[pending.serial]
        self._serial = max(self._serial, self.chat.last_serial(self.node_id)) + 1
        pending.serial = self._serial
        self._pending[pending.serial] = pending
        self._enqueue(pending)

    def _settle_pending_after_snapshot(self) -> None:
        """Own proposals that a snapshot from the leader already covers never pass through
        ``_apply``: acknowledge them now (their later retries are dropped as duplicates and
        must not be mistaken for overtaken proposals, which would commit them twice)."""
        last_serial = self.chat.last_serial(self.node_id)
        covered = [p for p in self._pending.values() if p.serial <= last_serial]
        if not covered:
            return
        own_indices = {
            message.serial: message.index
            for message in self.chat.history()
            if message.client_id == self.node_id
        }
        for pending in covered:
            index = own_indices.get(pending.serial)
            if index is not None:
                self._acknowledge(pending.serial, index)
            elif pending.kind != "message":
                del self._pending[pending.serial]  # a nick change or leave took effect
                if pending.kind == "leave":
                    self._leave_committed.set()
            else:
                # Not in the history: overtaken by a later serial (or older than the
                # history window, which a pending proposal never is in practice).
                self._repropose(pending)

    def _acknowledge(self, serial: int, index: int) -> None:
        pending = self._pending.pop(serial, None)
        if pending is not None and pending.kind == "message":
            self._publish(AckEvent(pending.message_id, index))

    def _failed_own_serials(
        self, outcomes: Sequence[ProposalOutcome]
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Own pending proposals not known to be committed: those to retry, in serial order,
        and the out-of-order refusals as (serial, resume_after). A duplicate (already in
        the leader's log) is neither: it is acknowledged when applied."""
        failed = []
        refused = []
        for outcome in outcomes:
            if (
                outcome.committed
                or outcome.duplicate
                or outcome.client_id != self.node_id
                or outcome.serial not in self._pending
            ):
                continue
            if outcome.out_of_order:
                refused.append((outcome.serial, outcome.resume_after))
            else:
                failed.append(outcome)
        if failed:
            logger.debug("%d proposal(s) failed (%s); retrying", len(failed), failed[0].error)
        return sorted(outcome.serial for outcome in failed), refused

    def _on_core_event(self, event: object) -> None:
        match event:
            case LeaderChanged(leader=leader):
                if self.node_id in self.core.configuration.learners:
                    self._update_links()  # a learner that knows no leader links to everyone
                if leader:
                    name = "this node" if leader == self.node_id else self._name(leader)
                    text = f"{name} is the leader (term {event.term})"
                    self._publish(NoticeEvent("leader", text, time.time()))
            case ConfigurationChanged():
                self._update_links()
                self._publish_status()
            case RoleChanged(role=Role.LEADER):
                # Followers need not have heard from each other (learners talk only to the
                # leader): a new leader starts every member's silence clock now.
                now = time.monotonic()
                for member in self.core.configuration.members:
                    self._last_heard[member] = now
                self._publish_status()
            case RoleChanged():
                self._publish_status()
            case TransferAborted(target=target, reason=reason):
                logger.info("leadership transfer to %s aborted: %s", target, reason)

    def _resend_pending(self) -> None:
        """Every unacknowledged proposal again, in serial order (after a leader change, or
        when the oldest has had no answer for ``retry_after_s``)."""
        self._resumed = (-1, -1)
        self._resubmit(list(self._pending))

    def _retry_stale_proposals(self, now: float) -> None:
        # Pending proposals are in the order they were last sent, so looking at the oldest
        # is enough and keeps this O(1) however many are in flight.
        oldest = next(iter(self._pending.values()), None)
        if oldest is not None and now - oldest.sent_at > self.tuning.retry_after_s:
            self._resend_pending()

    # --- membership -----------------------------------------------------------------

    def _manage_membership(self, now: float) -> None:
        status = self.core.status()
        if status.role is not Role.LEADER or self._closing:
            return
        configuration = status.configuration
        for member in configuration.members:
            self._last_heard.setdefault(member, now)
        grace = self.tuning.presence_grace_s
        present = set(self._signaling.peers if self._signaling else ()) | {self.node_id}
        # Missing from presence counts only after a grace period, and not while the member
        # still talks to us over the mesh (a signaling server restart is no departure).
        present |= {
            member
            for member in configuration.members
            if now - self._absent_since.get(member, now) < grace
            or now - self._last_heard[member] < grace
        }
        timeout = self.settings.member_timeout_s
        unreachable = {
            member
            for member in configuration.members - {self.node_id}
            if now - self._last_heard[member] > timeout
        }
        # A member removed as unreachable is not added back until it is heard from again.
        for peer, removed_at in list(self._removed_unreachable.items()):
            if self._last_heard.get(peer, 0.0) > removed_at:
                del self._removed_unreachable[peer]
            elif peer not in configuration.members:
                unreachable.add(peer)
        caught_up = {
            progress.node_id
            for progress in status.progress
            if progress.recent_active and progress.match >= status.commit_index
        }
        view = MembershipView(
            self_id=self.node_id,
            configuration=configuration,
            present=frozenset(present),
            signaling_connected=self._signaling_state == "connected",
            departing=frozenset(self._departing),
            unreachable=frozenset(unreachable),
            caught_up=frozenset(caught_up),
            max_voters=self.settings.max_voters,
            connected=frozenset(
                peer for peer, info in self._links.items() if info.state == LinkState.OPEN
            ),
        )
        change = next_change(view)
        if change is None:
            return
        self._catch_up_ticks()
        method = getattr(self.core, change.kind)
        result = method(change.node_id)
        if result.ok:
            logger.info("membership: %s %s (%s)", change.kind, change.node_id, change.reason)
            if change.kind == "add_learner":
                self._last_heard[change.node_id] = now
            elif change.kind == "remove" and change.node_id in unreachable:
                self._removed_unreachable[change.node_id] = now
            self._schedule_drain()

    def _reset_silent_links(self, now: float) -> None:
        if self._mesh is None or self.core.role is not Role.LEADER:
            return
        limit = self.tuning.silent_link_reset_s
        for member in self.core.configuration.members - {self.node_id}:
            silent = now - self._last_heard.get(member, now) > limit
            if silent and now - self._link_reset_at.get(member, 0.0) > limit:
                self._link_reset_at[member] = now
                if self._mesh.reset_link(member):
                    logger.info("no word from %s for %.1f s: reconnecting", member, limit)

    async def _depart(self) -> None:
        status = self.core.status()
        members = status.configuration.members
        if not members or members == {self.node_id}:
            return
        if status.role is Role.LEADER:
            await self._hand_over_leadership()
            if self.node_id not in self.core.configuration.members:
                return  # removed itself while handing over
        self._propose_command(chat.Leave(), "leave")
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
        self._catch_up_ticks()
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
        self._catch_up_ticks()
        result = self.core.remove(self.node_id)
        self._schedule_drain()
        if not result.ok:
            logger.warning("cannot remove this node: %s", result.error)
            return
        while self.core.role is Role.LEADER:
            await asyncio.sleep(tick)

    # --- timers -----------------------------------------------------------------------

    def _adapt_election_timeout(self) -> None:
        if not self.settings.adaptive_election_timeout:
            return
        latencies = [info.rtt_ms / 2 for info in self._links.values() if info.rtt_ms is not None]
        effective = adaptive_election_timeout_ms(self.settings, latencies)
        if effective != self._election_timeout_ms:
            self._election_timeout_ms = effective
            self.core.config = self._raft_config(effective)
            self._retick_if_sooner()
            logger.info("election timeout adapted to %d ms", effective)

    def _raft_config(self, election_timeout_ms: int) -> RaftConfig:
        settings = self.settings
        return RaftConfig(
            node_id=self._storage.node_id,
            election_timeout_ticks=settings.ms_to_ticks(election_timeout_ms),
            heartbeat_ticks=settings.ms_to_ticks(settings.heartbeat_ms),
            request_timeout_ticks=settings.ms_to_ticks(round(self.tuning.retry_after_s * 1000)),
        )

    # --- publishing -----------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    def _publish_message(self, message: chat.MessageApplied) -> None:
        self._published_through = message.index
        self._publish(self._message_event(message))

    def _publish_status(self) -> None:
        status = self._status_event()
        if status != self._last_status:
            self._last_status = status
            self._publish(status)

    def _publish_members(self) -> None:
        members = self._members_info()
        if members != self._last_members:
            self._last_members = members
            self._publish(MembersEvent(members))

    def _status_event(self) -> StatusEvent:
        status = self.core.status()
        sent, received = status.messages_sent, status.messages_received
        counters = {
            "requestvote_sent": sent.get("RequestVote", 0),
            "requestvote_received": received.get("RequestVote", 0),
            "appendentries_sent": sent.get("AppendEntries", 0),
            "appendentries_received": received.get("AppendEntries", 0),
            "proposals_forwarded": status.proposals_forwarded,
            "snapshots_sent": status.snapshots_sent,
            "snapshots_received": status.snapshots_installed,
            "messages_dropped": sum(self._malformed.values()) + sum(self._spoofed.values()),
        }
        state = "stopped" if self._stopped.is_set() else _STATE_NAMES[status.role]
        return StatusEvent(
            node_id=self.node_id,
            state=state,  # type: ignore[arg-type]
            term=status.term,
            leader=status.leader or None,
            voters=tuple(sorted(status.configuration.voters)),
            learners=tuple(sorted(status.configuration.learners)),
            commit_index=status.commit_index,
            applied_index=self.chat.last_applied_index,
            last_index=status.last_index,
            snapshot_index=status.snapshot_index,
            election_timeout_ms=float(self._election_timeout_ms),
            counters=counters,
            signaling_state=self._signaling_state,  # type: ignore[arg-type]
        )

    def _members_info(self) -> tuple[MemberInfo, ...]:
        status = self.core.status()
        configuration = status.configuration
        members = []
        for node_id in sorted(configuration.members):
            if node_id == status.leader:
                role = "leader"
            elif node_id in configuration.voters:
                role = "voter"
            else:
                role = "learner"
            link = self._links.get(node_id)
            if node_id == self.node_id:
                link_state, rtt = "self", None
            elif link is None:
                link_state, rtt = "disconnected", None
            else:
                link_state, rtt = _LINK_STATES.get(link.state, "disconnected"), link.rtt_ms
            nick = self._nick if node_id == self.node_id else (self.chat.nick_of(node_id) or "")
            members.append(MemberInfo(node_id, nick, role, link_state, rtt))  # type: ignore[arg-type]
        return tuple(members)

    def _message_event(self, message: chat.MessageApplied) -> ChatMessageEvent:
        return ChatMessageEvent(
            index=message.index,
            id=message.id,
            sender_id=message.client_id,
            nick=self.chat.display_name(message.client_id, message.nick),
            text=message.text,
            ts=message.ts / 1000,
            action=message.action,
        )

    def _name(self, node_id: str) -> str:
        nick = self._nick if node_id == self.node_id else self.chat.nick_of(node_id)
        return f"{nick} ({node_id[:6]})" if nick else node_id

    def _is_blank(self) -> bool:
        status = self.core.status()
        return status.term == 0 and status.last_index == 0 and not status.configuration.members
