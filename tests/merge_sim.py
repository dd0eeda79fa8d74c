"""Deterministic simulator of one channel split into clusters that merge, with invariants.

A channel can have two or three Raft clusters: newcomers founded them while the members
were away. Each seeded run founds 2 or 3 clusters of 1-3 real nodes
(:class:`raftchat.node.Node`, driven step by step without an event loop), each committing
some messages on its own, then links them, staggered, while clients go on sending.
Faults: messages lost, duplicated and delayed; links reset; partitions that heal (random
sides, the original clusters apart, one node alone, random links, or one node cut off from
every other cluster); crashes and restarts from what was stored, on purpose also right
after a node stored its merge queue and dropped its Raft state, and while it proposes the
queue; on some seeds a blank newcomer joins. Then the faults stop, every link heals and
every node comes back.

What runs is the real code: the node runtime (its gate, its merge rule, its membership
automation, its proposals), the Raft core, the chat state machine, ``survivor``,
``ClusterGate``, ``merge_items`` and ``MergeProgress``. What the simulator stands in for:

- storage (:class:`SimStorage`): the raft simulator's ``MemoryStorage`` plus the cluster
  identity and the merge queue, with ``Storage``'s transactions (``begin_merge`` replaces
  the Raft state by the queue at once); what a crash keeps is what was saved;
- the mesh and the signaling server (:class:`SimNetwork`): a link per pair of nodes that
  both want one (``Mesh.set_peers``) and are up, present and not cut apart; on each link
  two lanes as in ``net/send_queue.py`` (each keeps its order; an urgent message such as
  the ``ClusterHello`` may overtake normal ones, never the other way round); a reset or a
  partition closes the link and drops what was in flight, and a new connection starts
  with the hellos (cluster, then incarnation); presence and announced roles as the
  signaling server relays them; links are taken as authenticated (each node's id is
  derived from its key, drawn from the seed, and it signs its commands with that key);
- the clock (:class:`SimClock`, in place of the ``time`` module in the runtime, its
  events and its incarnations) and the runtime's asyncio loops: the tick loop gives each
  core one tick per simulated tick, and :meth:`MergeSimulation._housekeeping` does what
  ``Node._housekeeping_loop`` does each round that matters here (membership, silent
  links, retries, the nick, the merge).

Checked after every step, that is after every message delivered and every tick or
housekeeping round of a node:

- Raft safety within each cluster (the raft simulator's checks, one set per cluster):
  election safety, log matching, leader completeness, committed entries never truncated
  and the same on every node, the same message at the same index on every node;
- the gate: no Raft message sent by a node of one cluster is ever stepped into a core
  of another (nor one sent from no cluster); a node in no cluster joins only the cluster
  that survives among those of the peers linked to it;
- a node's log, storage and gate name the same cluster; a node in no cluster holds no
  Raft state; a node that began a merge holds none of its old cluster's state (core,
  log, chat) and never again belongs to a cluster it left;
- every acknowledgement names a message applied at that index;
- no message storm (at most ``MAX_IN_FLIGHT`` messages in flight).

Once the faults have stopped, within ``heal_ticks`` (liveness): one cluster is left, the
one ``survivor`` picks among every cluster founded; every node is a member of it with no
merge or proposal pending and everything applied; then every node's history is the
same, every message ever applied in any cluster (every acknowledged one among them) is in
it exactly once by id, and the messages each cluster committed first hand are in the order
they had there. (Messages a cluster took from another by merging may reach the survivor
by more than one way, so their order among the rest is not kept.)

A violation that a known bug of the merge code explains (:data:`KNOWN_BUGS`, recognised by
its signature) is reported with the bug's name. ``python -m tests.merge_sim --seeds 500
[--seed S]`` (from the repository root) runs many schedules; the default test run tries a
few of them, the ``slow`` test ``RAFTCHAT_MERGE_SIM_SEEDS`` (``tests/test_merge_sim.py``).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import logging
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from raftchat import chat
from raftchat.net import LinkInfo, LinkState
from raftchat.net.identity import NodeIdentity
from raftchat.node import Node, RuntimeTuning
from raftchat.node import events as node_events
from raftchat.node import incarnation as node_incarnation
from raftchat.node import runtime as node_runtime
from raftchat.node.api import AckEvent, Event, MemberInfo, StatusEvent
from raftchat.node.cluster import NODE_CODEC, ClusterHello, survivor
from raftchat.node.incarnation import IncarnationHello
from raftchat.raft import (
    AppendEntries,
    ClusterIdentity,
    Entry,
    HardState,
    InstallSnapshot,
    Message,
    Ready,
    Role,
    RoleChanged,
    Snapshot,
)
from raftchat.raft.sim import MemoryStorage, Violation
from raftchat.raft.sim.invariants import SafetyChecks
from raftchat.settings import Settings
from raftchat.storage import MergeItem, PendingMerge, PersistedState

CHANNEL = "merge-sim"
TICK_MS = 100
HELLOS = (ClusterHello, IncarnationHello)
"""The frames a new connection starts with; the node reads them, its core never sees them."""
Hello = ClusterHello | IncarnationHello
MAX_IN_FLIGHT = 1000
"""Messages in flight at once beyond which a run stops (under a hundred otherwise)."""


@dataclass
class MergeSimSettings:
    """The shape of one run (most values are then varied by the seed)."""

    setup_ticks: int = 300
    """Bound for founding the clusters and committing their first messages (no faults)."""
    fault_ticks: int = 140
    heal_ticks: int = 400
    """Liveness bound: after the faults stop, one channel within this many ticks."""
    steps_per_tick: int = 8
    trace_length: int = 80


KNOWN_BUGS = {
    "committed-after-leaving": (
        "A node that must leave its cluster to merge waits up to merge_settle_s for its own "
        "messages that the cluster took to be applied; then it leaves anyway and puts those "
        "at the end of its merge queue. When the cluster commits such a message after "
        "messages the node never applied (its leader was cut off from it all that time, or "
        "it was far behind), and the node's queue reaches the survivor before the queue of "
        "a member that has those, that cluster's order is broken in the channel's history."
    ),
}
"""Bugs of the merge code this simulator found, by name: a violation they explain is
reported as such (:class:`KnownBug`), and the test suite replays one seed of each."""


class KnownBug(Violation):
    """A violation with the signature of one of :data:`KNOWN_BUGS`."""

    def __init__(self, bug: str, text: str) -> None:
        super().__init__(f"{text} [known bug: {bug}]")
        self.bug = bug


@dataclass
class MergeSimResult:
    seed: int
    shape: str
    """The clusters (members each) and the faults drawn."""
    violations: list[str]
    trace: list[str]
    ticks: int = 0
    messages: int = 0
    merged_nodes: int = 0
    """Merges begun (a node leaving its cluster for an older one)."""
    acked: int = 0
    final_history: int = 0
    heal_ticks: int = -1
    """Ticks from the end of the faults to one settled channel (-1: never)."""
    known_bug: str = ""
    """The known bug (:data:`KNOWN_BUGS`) that explains the violation, if one does."""

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def unexplained(self) -> bool:
        """A violation that no known bug explains."""
        return bool(self.violations) and not self.known_bug


# --- the clock ------------------------------------------------------------------------------


class SimClock:
    """Stands in for the ``time`` module in the node runtime: simulated time only. It moves
    on by a microsecond at each reading, as a real clock would between two: what happens
    later in a tick happens later (a node's serials start from it, and a member removed as
    unreachable comes back once heard from after its removal)."""

    EPOCH_NS = 1_750_000_000 * 10**9

    def __init__(self) -> None:
        self.ticks = 0
        self._readings = 0

    def _elapsed_ns(self) -> int:
        self._readings += 1
        return self.ticks * TICK_MS * 10**6 + self._readings * 1000

    def monotonic(self) -> float:
        return 1000.0 + self._elapsed_ns() / 10**9

    def time(self) -> float:
        return (self.EPOCH_NS + self._elapsed_ns()) / 10**9

    def time_ns(self) -> int:
        return self.EPOCH_NS + self._elapsed_ns()

    def now_ms(self) -> int:
        return self.time_ns() // 10**6


@contextmanager
def simulated_time(clock: SimClock) -> Iterator[None]:
    """The runtime, its events and its incarnations read ``clock`` instead of the real one."""
    modules = (node_runtime, node_events, node_incarnation)
    saved = [module.time for module in modules]
    for module in modules:
        module.time = clock  # type: ignore[assignment]
    try:
        yield
    finally:
        for module, real in zip(modules, saved, strict=True):
            module.time = real


# --- storage ----------------------------------------------------------------------------------


class SimStorage:
    """A node's durable state in memory, with the interface of ``raftchat.storage.Storage``
    that the runtime uses: its identity key (the node id derived from it), no id from
    before identity keys, the incarnation counter, the cluster, the merge queue and the
    Raft state. Raft writes go through the cluster's safety checks; the hash chain over
    the stored log (``chain``) is what those checks compare."""

    def __init__(self, sim: MergeSimulation, identity: NodeIdentity) -> None:
        self.sim = sim
        self.identity = identity
        self.node_id = identity.node_id
        self.legacy_node_id: str | None = None
        self.channel = CHANNEL
        self.incarnation = 0
        self.storage = MemoryStorage()
        self.chain: list[bytes] = []
        self.chain_base_index = 0
        self.core: object = None
        """The running core, for the leader checks."""
        self._cluster: ClusterIdentity | None = None
        self.merge: PendingMerge | None = None
        self.began_merge = False
        """Set by ``begin_merge``; the simulator checks the node right after."""

    @property
    def cluster(self) -> ClusterIdentity | None:
        return self._cluster

    def load(self) -> PersistedState:
        raft = self.storage
        return PersistedState(raft.hard_state, raft.snapshot, list(raft.entries))

    def save(
        self,
        hard_state: HardState | None = None,
        entries: list[Entry] | tuple[Entry, ...] = (),
        truncate_from: int | None = None,
        snapshot: Snapshot | None = None,
    ) -> None:
        ready = Ready(
            hard_state=hard_state,
            snapshot=snapshot,
            truncate_from=truncate_from or 0,
            entries=list(entries),
        )
        self.sim.stored(self, ready)

    def compact(self, snapshot: Snapshot) -> None:
        self.sim.stored(self, Ready(compacted=snapshot))

    def set_cluster(self, cluster: ClusterIdentity | None) -> None:
        self._cluster = cluster

    def begin_incarnation(self, at_least: int) -> int:
        self.incarnation = max(self.incarnation + 1, at_least)
        return self.incarnation

    def pending_merge(self) -> PendingMerge | None:
        if self.merge is None:
            return None
        return PendingMerge(self.merge.source, list(self.merge.items))

    def begin_merge(self, source: ClusterIdentity, items: list[MergeItem]) -> None:
        """One transaction: the queue, and no Raft state or cluster any more."""
        self.merge = PendingMerge(source, list(items))
        self._cluster = None
        self.storage = MemoryStorage()
        self.chain = []
        self.chain_base_index = 0
        self.began_merge = True

    def merged(self, message_ids: list[str]) -> None:
        if self.merge is not None:
            gone = set(message_ids)
            self.merge.items[:] = [i for i in self.merge.items if i.message_id not in gone]

    def finish_merge(self) -> None:
        self.merge = None

    def close(self) -> None:
        pass

    @property
    def raft_state_empty(self) -> bool:
        raft = self.storage
        return raft.hard_state == HardState() and raft.snapshot is None and not raft.entries


class ClusterChecks(SafetyChecks):
    """The raft simulator's safety checks for one cluster, plus what applying must keep."""

    def __init__(self, cluster: ClusterIdentity) -> None:
        super().__init__()
        self.cluster = cluster
        self.messages: dict[int, str] = {}
        """Index -> id of each chat message applied in this cluster (on any node)."""
        self.message_index: dict[str, int] = {}
        self.native: set[int] = set()
        """The indexes of messages committed here first hand (not merged from elsewhere)."""
        self.proposals: dict[int, tuple[str, int]] = {}
        """Index -> (client id, serial) of each client entry applied here."""

    def applied(self, storage: SimStorage, entry: Entry) -> None:
        """The node applies ``entry``: it is stored there and the same on every node."""
        position = entry.index - storage.chain_base_index
        if not 0 <= position < len(storage.chain):
            raise Violation(f"{storage.node_id}: applied entry {entry.index}, not stored")
        digest = storage.chain[position]
        if self.committed_chain.setdefault(entry.index, digest) != digest:
            raise Violation(
                f"{storage.node_id}: committed entry {entry.index} of cluster "
                f"{short(self.cluster)} differs between nodes"
            )
        self.max_committed = max(self.max_committed, entry.index)
        if entry.client_id:
            self.proposals[entry.index] = (entry.client_id, entry.serial)

    def message(self, node_id: str, index: int, message_id: str, merged: bool) -> None:
        if not merged:
            self.native.add(index)
        known = self.messages.setdefault(index, message_id)
        if known != message_id:
            raise Violation(
                f"{node_id}: cluster {short(self.cluster)} applied {message_id} at {index}, "
                f"another node {known}"
            )
        first = self.message_index.setdefault(message_id, index)
        if first != index:
            raise Violation(
                f"{node_id}: message {message_id} applied twice in cluster "
                f"{short(self.cluster)}, at {first} and {index}"
            )

    def order(self) -> list[str]:
        """Every message applied here, in log order."""
        return [self.messages[index] for index in sorted(self.messages)]

    def native_order(self) -> list[str]:
        """The messages committed here first hand, in log order."""
        return [self.messages[index] for index in sorted(self.native)]


def short(cluster: ClusterIdentity | None) -> str:
    return cluster.cluster_id[:6] if cluster is not None else "none"


# --- the node's surroundings ------------------------------------------------------------------


class SimMesh:
    """What the runtime sees of the mesh: its links, as the simulator keeps them."""

    def __init__(self, sim: MergeSimulation, node_id: str) -> None:
        self.sim = sim
        self.node_id = node_id
        self.wanted: frozenset[str] = frozenset()

    def send(self, peer: str, data: bytes, urgent: bool = False) -> bool:
        return self.sim.network.send(self.node_id, peer, data, urgent)

    def set_peers(self, peers: frozenset[str]) -> None:
        wanted = frozenset(peers) - {self.node_id}
        if wanted != self.wanted:
            self.wanted = wanted
            self.sim.links_dirty = True

    def links(self) -> dict[str, LinkInfo]:
        network = self.sim.network
        return {peer: network.info(self.node_id, peer) for peer in sorted(self.wanted)}

    def reset_link(self, peer: str) -> bool:
        return self.sim.network.reset(self.node_id, peer)

    async def close(self) -> None:
        pass


class SimSignaling:
    """Presence and announced roles, as the signaling server relays them."""

    witness = None

    def __init__(self, sim: MergeSimulation, node_id: str) -> None:
        self.sim = sim
        self.node_id = node_id

    @property
    def peers(self) -> frozenset[str]:
        return self.sim.present_peers(self.node_id)

    @property
    def peer_roles(self) -> dict[str, str]:
        roles = self.sim.roles
        return {peer: roles[peer] for peer in sorted(self.peers) if peer in roles}

    def set_role(self, role: str) -> None:
        if self.sim.roles.get(self.node_id) != role:
            self.sim.roles[self.node_id] = role
            self.sim.presence_dirty = True


class Recorder:
    """The front ends' side: acknowledgements go to the simulator, the rest nowhere."""

    def __init__(self, sim: MergeSimulation, node_id: str) -> None:
        self.sim = sim
        self.node_id = node_id

    def publish(self, event: Event) -> None:
        if isinstance(event, AckEvent):
            self.sim.acknowledged(self.node_id, event)

    def publish_status(self, status: StatusEvent) -> None:
        pass

    def publish_members(self, members: tuple[MemberInfo, ...]) -> None:
        pass


# --- the network ------------------------------------------------------------------------------


@dataclass
class Link:
    """One peer connection between two nodes (both directions)."""

    open: bool = False
    connection: int = 0
    """Id of the current connection: what was sent on an older one is dropped."""
    connects: int = 0
    down_until: int = 0
    """Reset: it may connect again from this tick on."""
    last_urgent: dict[str, int] = field(default_factory=dict)
    """Per sender, the delivery step of its last urgent message on this connection."""
    last_normal: dict[str, int] = field(default_factory=dict)


@dataclass(order=True)
class Flight:
    deliver_at: int
    sequence: int
    sender: str = field(compare=False)
    to: str = field(compare=False)
    connection: int = field(compare=False)
    data: bytes = field(compare=False)
    message: Message | Hello = field(compare=False)
    cluster: ClusterIdentity | None = field(compare=False)
    """The sender's cluster when it sent the message."""


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


class SimNetwork:
    """Links, the messages on them, and the faults: loss, duplication, delay."""

    def __init__(self, sim: MergeSimulation, rng: random.Random) -> None:
        self.sim = sim
        self.rng = rng
        self.links: dict[tuple[str, str], Link] = {}
        self.in_flight: list[Flight] = []
        self.step_time = 0
        self.sequence = 0
        self.messages = 0
        self.loss = 0.0
        self.duplication = 0.0
        self.max_delay = 1

    def link(self, a: str, b: str) -> Link:
        pair = _pair(a, b)
        link = self.links.get(pair)
        if link is None:
            link = self.links[pair] = Link()
        return link

    def info(self, node_id: str, peer: str) -> LinkInfo:
        link = self.links.get(_pair(node_id, peer))
        state = LinkState.OPEN if link is not None and link.open else LinkState.CONNECTING
        return link_info(peer, state, link.connects if link is not None else 0)

    def send(self, sender: str, to: str, data: bytes, urgent: bool) -> bool:
        link = self.links.get(_pair(sender, to))
        if link is None or not link.open:
            return False
        sim = self.sim
        node = sim.nodes[sender].node
        assert node is not None
        message = NODE_CODEC.decode(data)
        hello = type(message) in HELLOS
        self.messages += 1
        rng = self.rng
        faults = sim.faults_on
        if faults and not hello and rng.random() < self.loss:
            return True  # refused by a full send queue: Raft sends again
        copies = 2 if faults and not hello and rng.random() < self.duplication else 1
        deliver_at = self.step_time + 1 + rng.randrange(self.max_delay if faults else 2)
        # Each lane keeps its order; an urgent message may overtake normal ones, a normal
        # one never overtakes an urgent one.
        last_urgent = link.last_urgent.get(sender, 0)
        if urgent:
            deliver_at = max(deliver_at, last_urgent)
            link.last_urgent[sender] = deliver_at
        else:
            deliver_at = max(deliver_at, last_urgent, link.last_normal.get(sender, 0))
            link.last_normal[sender] = deliver_at
        cluster = node.cluster_gate.cluster
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            sim._storm()
        for _ in range(copies):
            self.sequence += 1
            flight = Flight(
                deliver_at, self.sequence, sender, to, link.connection, data, message, cluster
            )
            heapq.heappush(self.in_flight, flight)
        return True

    def due(self) -> Iterator[Flight]:
        in_flight = self.in_flight
        while in_flight and in_flight[0].deliver_at <= self.step_time:
            flight = heapq.heappop(in_flight)
            link = self.links.get(_pair(flight.sender, flight.to))
            if link is not None and link.open and link.connection == flight.connection:
                yield flight

    def reset(self, node_id: str, peer: str) -> bool:
        """``Mesh.reset_link``: a new connection, after a moment."""
        link = self.links.get(_pair(node_id, peer))
        if link is None or not link.open:
            return False
        self.sim.close_link(node_id, peer, down_for=1, why="reset by " + node_id)
        return True


def link_info(peer: str, state: LinkState, connects: int) -> LinkInfo:
    return LinkInfo(
        peer=peer,
        state=state,
        rtt_ms=None,
        messages_sent=0,
        messages_received=0,
        bytes_sent=0,
        bytes_received=0,
        frames_sent=0,
        frames_received=0,
        malformed_frames=0,
        dropped_overflow=0,
        dropped_by_fault=0,
        queued_messages=0,
        queued_bytes=0,
        buffered_amount=0,
        max_frame_bytes=None,
        connects=connects,
        local_candidate_type=None,
        remote_candidate_type=None,
        authenticated=True,
    )


# --- one node -----------------------------------------------------------------------------


@dataclass
class SimNode:
    node_id: str
    storage: SimStorage
    group: int
    """The cluster it was founded in or joined during setup (-1: a newcomer)."""
    node: Node | None = None
    """The running node; None while down."""
    scope: int = -1
    """Whom it sees present: nodes of the same scope (-1: not started yet)."""
    incarnation: int = 0
    down_until: int = 0
    left: list[ClusterIdentity] = field(default_factory=list)
    """Clusters it left to merge into another."""
    cluster: ClusterIdentity | None = None
    """Its cluster when last checked."""
    carried: set[int] = field(default_factory=set)
    """Serials of its own messages that it put in its merge queue, when it began a merge,
    though its cluster had taken them and might still commit them."""
    notified: tuple[frozenset[str], tuple[tuple[str, str], ...]] | None = None
    """The presence and roles last given to ``on_peers``."""


# --- the simulation -------------------------------------------------------------------------


class MergeSimulation:
    """One seeded run. ``run()`` returns a MergeSimResult; it never raises on a violation."""

    def __init__(self, seed: int, settings: MergeSimSettings | None = None) -> None:
        self.seed = seed
        self.settings = settings or MergeSimSettings()
        rng = self.rng = random.Random(seed)
        self.client_rng = random.Random(f"{seed}/clients")
        self.clock = SimClock()
        self.now = 0
        self.trace: deque[tuple] = deque(maxlen=self.settings.trace_length)
        self.network = SimNetwork(self, random.Random(f"{seed}/network"))
        self.faults_on = False
        self.presence_dirty = False
        self.links_dirty = False
        self.roles: dict[str, str] = {}
        self.cut: set[tuple[str, str]] = set()
        self.partition_until = 0
        self.checks: dict[ClusterIdentity, ClusterChecks] = {}
        self.founded: list[ClusterIdentity] = []
        self.acked: dict[str, tuple[str, int]] = {}
        self.sent = 0
        self.merges = 0

        # The shape of the channel: 2 or 3 clusters, founded at different moments (or at
        # the same millisecond: the ids decide), of 1-3 members each.
        count = 3 if rng.random() < 0.4 else 2
        base_ms = 1_740_000_000_000
        self.identities = []
        for _ in range(count):
            founded_ms = base_ms + rng.choice([0, 0, 1, 5_000, 86_400_000]) * rng.randint(1, 9)
            self.identities.append(ClusterIdentity(founded_ms, f"{rng.getrandbits(128):032x}"))
        sizes = [rng.randint(1, 3) for _ in range(count)]
        self.newcomer = rng.random() < 0.3
        self.nodes: dict[str, SimNode] = {}
        groups = [g for g, size in enumerate(sizes) for _ in range(size)]
        if self.newcomer:
            groups.append(-1)
        for group in groups:
            # A key from the seed, so the run (its ids among the rest) replays.
            identity = NodeIdentity.from_seed(rng.getrandbits(256).to_bytes(32, "big"))
            node_id = identity.node_id
            self.nodes[node_id] = SimNode(node_id, SimStorage(self, identity), group)
        self.group_members = [
            [n for n in self.nodes.values() if n.group == g] for g in range(count)
        ]
        # When each cluster is linked to the rest (staggered for three).
        self.link_at = sorted(rng.choice([0, 0, 10, 40]) for _ in range(count))
        self.link_at[0] = 0
        self.newcomer_at = rng.randint(0, self.settings.fault_ticks // 2)

        # Faults.
        self.network.loss = rng.choice([0.0, 0.02, 0.05, 0.1])
        self.network.duplication = rng.choice([0.0, 0.02, 0.05])
        self.max_delay = rng.choice([1, 4, 12, 30])
        self.crash_rate = rng.choice([0.0, 0.005, 0.01, 0.03])
        self.merge_crash_rate = rng.choice([0.0, 0.3, 0.7])
        """Chance that a node crashes right after storing its merge queue."""
        self.partition_rate = rng.choice([0.0, 0.02, 0.05])
        self.link_reset_rate = rng.choice([0.0, 0.01, 0.05])
        self.client_rate = self.client_rng.choice([0.05, 0.2, 0.5])

        # The nodes' settings, in ticks of TICK_MS.
        self.node_settings = Settings(
            nick="",
            tick_ms=TICK_MS,
            heartbeat_ms=2 * TICK_MS,
            election_timeout_min_ms=rng.choice([6, 10]) * TICK_MS,
            election_timeout_max_ms=20 * TICK_MS,
            adaptive_election_timeout=False,
            max_voters=rng.choice([2, 3, 5]),
            compaction_threshold=rng.choice([4, 16, 5000]),
            catchup_entries=rng.choice([2, 8, 10_000]),
            member_timeout_s=rng.choice([5.0, 30.0]),
        )
        self.tuning = RuntimeTuning(
            presence_grace_s=rng.choice([0.5, 3.0]),
            retry_after_s=rng.choice([1.0, 3.0]),
            silent_link_reset_s=2.0,
            max_unacknowledged_proposals=rng.choice([1, 4, 1024]),
        )
        self.shape = (
            f"clusters={sizes}{' +newcomer' if self.newcomer else ''} link_at={self.link_at} "
            f"loss={self.network.loss} dup={self.network.duplication} delay={self.max_delay} "
            f"crash={self.crash_rate} merge_crash={self.merge_crash_rate} "
            f"partition={self.partition_rate} reset={self.link_reset_rate}"
        )

    # --- running --------------------------------------------------------------------

    def run(self) -> MergeSimResult:
        violations: list[str] = []
        heal_ticks = -1
        known_bug = ""
        with simulated_time(self.clock):
            try:
                self._setup()
                self._trace("setup done", *(short(c) for c in self.founded))
                self._faults_phase()
                heal_ticks = self._heal()
                self._final_checks()
            except Violation as violation:
                violations.append(str(violation))
                known_bug = violation.bug if isinstance(violation, KnownBug) else ""
        return MergeSimResult(
            seed=self.seed,
            shape=self.shape,
            violations=violations,
            trace=[self._format(event) for event in self.trace],
            ticks=self.now,
            messages=self.network.messages,
            merged_nodes=self.merges,
            acked=len(self.acked),
            final_history=self._final_length(),
            heal_ticks=heal_ticks,
            known_bug=known_bug,
        )

    def _setup(self) -> None:
        """Each cluster on its own, no faults: founded, its members added, some messages
        committed."""
        for group, members in enumerate(self.group_members):
            for member in members:
                member.scope = group
            self._start(members[0], found=self.identities[group])
        for members in self.group_members:
            for member in members[1:]:
                self._start(member)
        wanted = [self.rng.randint(1, 4) for _ in self.group_members]
        sent = [0 for _ in self.group_members]
        for _ in range(self.settings.setup_ticks):
            for group, members in enumerate(self.group_members):
                if sent[group] < wanted[group] and self.client_rng.random() < 0.3:
                    self._send_chat(self.client_rng.choice(members))
                    sent[group] += 1
            self._tick()
            if all(sent[g] == wanted[g] and self._group_ready(g) for g in range(len(sent))):
                return
        raise Violation("setup: the clusters did not form\n  " + "\n  ".join(self._statuses()))

    def _group_ready(self, group: int) -> bool:
        identity = self.identities[group]
        members = self.group_members[group]
        checks = self.checks.get(identity)
        if checks is None or not checks.messages:
            return False
        leader = self._leader_of(identity)
        if leader is None:
            return False
        status = leader.core.status()
        for member in members:
            node = member.node
            if (
                node is None
                or node.cluster_gate.cluster != identity
                or member.node_id not in status.configuration.members
                or node.chat.last_applied_index < status.commit_index
                or node.proposals.pending
            ):
                return False
        return True

    def _faults_phase(self) -> None:
        self.faults_on = True
        self.network.max_delay = self.max_delay
        start = self.now
        for _ in range(self.settings.fault_ticks):
            elapsed = self.now - start
            for group, at in enumerate(self.link_at):
                if at == elapsed:
                    self._link_group(group)
            if self.newcomer and elapsed == self.newcomer_at:
                newcomer = next(n for n in self.nodes.values() if n.group == -1)
                newcomer.scope = 0
                self._start(newcomer)
            self._faults()
            self._clients()
            self._tick()

    def _link_group(self, group: int) -> None:
        """The group's nodes now see (and may link to) everyone linked so far."""
        for member in self.group_members[group]:
            member.scope = 0
        self._trace("linked", short(self.identities[group]))
        self.presence_dirty = self.links_dirty = True
        self._settle()

    def _heal(self) -> int:
        self.faults_on = False
        self.network.max_delay = 1
        for group in range(len(self.group_members)):
            self._link_group(group)
        self.cut.clear()
        self.partition_until = 0
        for link in self.network.links.values():
            link.down_until = 0
        self.links_dirty = True
        for sim_node in self.nodes.values():
            if sim_node.scope < 0:
                sim_node.scope = 0
            if sim_node.node is None:
                self._start(sim_node)
        self._trace("faults stop")
        start = self.now
        for _ in range(self.settings.heal_ticks):
            if self._settled():
                return self.now - start
            self._tick()
        raise Violation(self._liveness_report())

    # --- steps ----------------------------------------------------------------------

    def _tick(self) -> None:
        self.now += 1
        self.clock.ticks = self.now
        if any(
            not link.open and link.down_until == self.now for link in self.network.links.values()
        ):
            self.links_dirty = True  # reset a moment ago: it may connect again
            self._settle()
        order = [n for n in self.nodes.values() if n.node is not None]
        self.rng.shuffle(order)
        for sim_node in order:
            node = sim_node.node
            if node is not None:
                node.core.tick()
                self._drain(node)
                self._after_step(sim_node)
        for sim_node in order:
            if sim_node.node is not None:
                self._housekeeping(sim_node)
                self._after_step(sim_node)
        for _ in range(self.settings.steps_per_tick):
            self.network.step_time += 1
            self._deliver_due()

    def _housekeeping(self, sim_node: SimNode) -> None:
        """What ``Node._housekeeping_loop`` does each round (its membership interval is
        one tick here), leaving out status, notices and the election timeout's adapting."""
        node = sim_node.node
        assert node is not None
        now = self.clock.monotonic()
        node._manage_membership(now)
        node._reset_silent_links(now)
        node.proposals.retry_stale(now, node.tuning.retry_after_s)
        if node._nick_due:
            node._propose_nick_if_unknown()
        if node._survivor_seen is not None:
            node._consider_merge()
        if node._merge is not None:
            node._advance_merge(now)
        self._drain(node)

    def _deliver_due(self) -> None:
        for flight in self.network.due():
            sim_node = self.nodes[flight.to]
            node = sim_node.node
            if node is None:
                continue
            self.trace.append((self.now, flight.sender, flight.to, flight.message))
            gate = node.cluster_gate
            dropped = gate.dropped
            node._on_frame(flight.sender, flight.data)
            stepped = type(flight.message) not in HELLOS and gate.dropped == dropped
            # Only a message of the node's own cluster may reach its core.
            if stepped and (flight.cluster is None or flight.cluster != gate.cluster):
                raise Violation(
                    f"gate: {flight.to} (cluster {short(gate.cluster)}) stepped "
                    f"{type(flight.message).__name__} that {flight.sender} sent from "
                    f"cluster {short(flight.cluster)}"
                )
            self._drain(node)
            self._after_step(sim_node)

    def _drain(self, node: Node) -> None:
        for _ in range(100):
            node._drain()
            if not node.core.has_ready():
                return
        raise Violation(f"{node.node_id}: the Ready loop does not come to rest")

    def _after_step(self, sim_node: SimNode) -> None:
        node = sim_node.node
        if node is not None:
            self._check_node(sim_node, node)
            storage = sim_node.storage
            if storage.began_merge:
                storage.began_merge = False
                self._merge_begun(sim_node, node)
        self._settle()

    def _merge_begun(self, sim_node: SimNode, node: Node) -> None:
        storage = sim_node.storage
        assert storage.merge is not None
        source = storage.merge.source
        self.merges += 1
        sim_node.left.append(source)
        sim_node.carried.update(
            serial
            for serial, proposal in node.proposals.handed_over.items()
            if proposal.reached_cluster
        )
        self._trace("merge", sim_node.node_id, short(source), len(storage.merge.items))
        if node.core.log.last_index or node.core.term or node.chat.history():
            raise Violation(f"{sim_node.node_id} began a merge and still holds its Raft state")
        if node.cluster_gate.cluster is not None:
            raise Violation(f"{sim_node.node_id} began a merge and still names a cluster")
        if self.faults_on and self.rng.random() < self.merge_crash_rate:
            self._crash(sim_node, "right after storing its merge queue")

    def _check_node(self, sim_node: SimNode, node: Node) -> None:
        """What must hold of a node after each of its steps."""
        cluster = node.cluster_gate.cluster
        core = node.core
        storage = sim_node.storage
        storage.core = core
        named = core.configuration.cluster
        if named is not None and named != cluster:
            raise Violation(
                f"{sim_node.node_id}: its log names cluster {short(named)}, its gate "
                f"{short(cluster)}"
            )
        if storage.cluster != cluster:
            raise Violation(
                f"{sim_node.node_id}: stored cluster {short(storage.cluster)}, gate "
                f"{short(cluster)}"
            )
        joined = sim_node.cluster is None and cluster is not None
        sim_node.cluster = cluster
        if joined:
            # Added by a leader: only one of the cluster that survives among those linked.
            linked = node.cluster_gate.foreign(node._open_peers()) | {cluster}
            if survivor(linked) != cluster:
                raise Violation(
                    f"gate: {sim_node.node_id} joined cluster {short(cluster)} while linked "
                    f"to cluster {short(survivor(linked))}, which survives it"
                )
        if cluster is None:
            if not storage.raft_state_empty or core.term or core.log.last_index:
                raise Violation(f"{sim_node.node_id} holds Raft state while in no cluster")
        elif cluster in sim_node.left:
            raise Violation(
                f"{sim_node.node_id} is in cluster {short(cluster)} again after leaving it "
                f"to merge: its votes and log there were dropped, and that cluster's "
                f"configuration may still count it"
            )

    # --- hooks from the nodes --------------------------------------------------------

    def checks_for(self, cluster: ClusterIdentity) -> ClusterChecks:
        checks = self.checks.get(cluster)
        if checks is None:
            checks = self.checks[cluster] = ClusterChecks(cluster)
        return checks

    def stored(self, storage: SimStorage, ready: Ready) -> None:
        """A node's write: the cluster's log checks, and what ``Storage`` refuses."""
        sim_node = self.nodes[storage.node_id]
        node = sim_node.node
        cluster = node.cluster_gate.cluster if node is not None else storage.cluster
        if cluster is None:
            if ready.entries or ready.snapshot or ready.compacted or ready.hard_state:
                raise Violation(f"{storage.node_id} stored Raft state while in no cluster")
            return
        raft = storage.storage
        floor = max(raft.hard_state.commit, raft.snapshot_index)
        if ready.truncate_from and ready.truncate_from <= floor and ready.snapshot is None:
            raise Violation(
                f"{storage.node_id}: truncating from {ready.truncate_from} loses committed "
                f"entries (up to {floor})"
            )
        self.checks_for(cluster).persist(storage, ready)  # type: ignore[arg-type]
        if ready.snapshot is not None:
            self._trace("snapshot", storage.node_id, ready.snapshot.meta.index)

    def acknowledged(self, node_id: str, event: AckEvent) -> None:
        node = self.nodes[node_id].node
        assert node is not None
        cluster = node.cluster_gate.cluster
        checks = self.checks.get(cluster) if cluster is not None else None
        if checks is None or checks.messages.get(event.index) != event.id:
            raise Violation(
                f"{node_id} acknowledged {event.id} at {event.index}, where cluster "
                f"{short(cluster)} applied "
                f"{checks.messages.get(event.index) if checks else None}"
            )
        self.acked.setdefault(event.id, (node_id, event.index))
        self._trace("ack", node_id, event.id, event.index)

    def _wire(self, sim_node: SimNode, node: Node) -> None:
        """Watch what the node applies and when it leads, in the cluster it is in."""
        storage = sim_node.storage

        def apply(entry: Entry) -> None:
            cluster = node.cluster_gate.cluster
            if cluster is None:
                raise Violation(f"{node.node_id} applied entry {entry.index} in no cluster")
            self.checks_for(cluster).applied(storage, entry)
            Node._apply(node, entry)

        def on_chat_event(event: chat.ChatEvent) -> None:
            if isinstance(event, chat.MessageApplied):
                cluster = node.cluster_gate.cluster
                assert cluster is not None
                self.checks_for(cluster).message(node.node_id, event.index, event.id, event.merged)
            Node._on_chat_event(node, event)

        def on_core_event(event: object) -> None:
            Node._on_core_event(node, event)
            if isinstance(event, RoleChanged) and event.role is Role.LEADER:
                cluster = node.cluster_gate.cluster
                if cluster is None:
                    raise Violation(f"{node.node_id} leads in no cluster")
                storage.core = node.core
                self.checks_for(cluster).leader(storage)  # type: ignore[arg-type]

        node._apply = apply  # type: ignore[method-assign]
        node._on_chat_event = on_chat_event  # type: ignore[method-assign]
        node._on_core_event = on_core_event  # type: ignore[method-assign]

    # --- lifecycle --------------------------------------------------------------------

    def _start(self, sim_node: SimNode, found: ClusterIdentity | None = None) -> None:
        """Start the node from its storage, as ``Node.start`` does (with no event loop)."""
        sim_node.incarnation += 1
        rng = random.Random(f"{self.seed}/{sim_node.node_id}/{sim_node.incarnation}")
        node = Node(
            sim_node.storage,  # type: ignore[arg-type]
            self.node_settings,
            nick=f"nick-{sim_node.node_id[:4]}",
            tuning=self.tuning,
            rng=rng,
        )
        node._mesh = SimMesh(self, sim_node.node_id)  # type: ignore[assignment]
        node._signaling = SimSignaling(self, sim_node.node_id)  # type: ignore[assignment]
        node._signaling_state = "connected"
        node.subscribers = Recorder(self, sim_node.node_id)  # type: ignore[assignment]
        self._wire(sim_node, node)
        sim_node.node = node
        sim_node.notified = None
        sim_node.cluster = node.cluster_gate.cluster
        sim_node.storage.core = node.core
        self.presence_dirty = self.links_dirty = True
        self._trace("start", sim_node.node_id, short(node.cluster_gate.cluster))
        node._signaling.set_role(node._role_hint())
        if node._is_blank() and (found is not None or not node._signaling.peers):
            # Alone in the channel: found a cluster (the setup's clusters are given).
            if found is None:
                found = ClusterIdentity(self.clock.now_ms(), f"{self.rng.getrandbits(128):032x}")
            self.founded.append(found)
            self._trace("found", sim_node.node_id, short(found))
            node._join_cluster(found)
            node.core.bootstrap(found)
            sim_node.cluster = found
        self._drain(node)
        self._after_step(sim_node)

    def _crash(self, sim_node: SimNode, why: str = "") -> None:
        if sim_node.node is None:
            return
        sim_node.node = None
        sim_node.down_until = self.now + self.rng.randint(3, 40)
        self._trace("crash", sim_node.node_id, why)
        for pair, link in self.network.links.items():
            if link.open and sim_node.node_id in pair:
                self.close_link(*pair, down_for=0, why="crash")
        self.presence_dirty = True

    # --- presence and links ------------------------------------------------------------

    def present_peers(self, node_id: str) -> frozenset[str]:
        scope = self.nodes[node_id].scope
        return frozenset(
            n.node_id
            for n in self.nodes.values()
            if n.node is not None and n.scope == scope and n.node_id != node_id
        )

    def _settle(self) -> None:
        """Hand presence, role and link changes to the nodes until nothing changes."""
        for _ in range(50):
            if self.presence_dirty:
                self.presence_dirty = False
                self._dispatch_presence()
            elif self.links_dirty:
                self.links_dirty = False
                self._update_links()
            else:
                return
        raise Violation("presence and links keep changing")

    def _dispatch_presence(self) -> None:
        for sim_node in self.nodes.values():
            node = sim_node.node
            if node is None:
                continue
            peers = self.present_peers(sim_node.node_id)
            roles = tuple(sorted((p, self.roles[p]) for p in peers if p in self.roles))
            if sim_node.notified != (peers, roles):
                sim_node.notified = (peers, roles)
                node.on_peers(peers)
                self._drain(node)
                self._check_node(sim_node, node)

    def _update_links(self) -> None:
        """Open the links both ends want (up, present to each other, not cut), close the
        others; both ends hear of it, and a new connection starts with hellos."""
        nodes = sorted(self.nodes.values(), key=lambda n: n.node_id)
        network = self.network
        for position, a in enumerate(nodes):
            for b in nodes[position + 1 :]:
                pair = (a.node_id, b.node_id)
                link = network.links.get(pair)
                wanted = self._link_wanted(a, b, link)
                if link is not None and link.open and not wanted:
                    self.close_link(*pair, down_for=0, why="unwanted")
                elif wanted and (link is None or not link.open):
                    self._open_link(a, b)

    def _link_wanted(self, a: SimNode, b: SimNode, link: Link | None) -> bool:
        if a.node is None or b.node is None or a.scope != b.scope or a.scope < 0:
            return False
        if link is not None and link.down_until > self.now:
            return False
        if (a.node_id, b.node_id) in self.cut:
            return False
        mesh_a, mesh_b = a.node._mesh, b.node._mesh
        return b.node_id in mesh_a.wanted and a.node_id in mesh_b.wanted  # type: ignore[union-attr]

    def _open_link(self, a: SimNode, b: SimNode) -> None:
        network = self.network
        link = network.link(a.node_id, b.node_id)
        network.sequence += 1
        link.open = True
        link.connection = network.sequence
        link.connects += 1
        link.last_urgent.clear()
        link.last_normal.clear()
        self._trace("link up", a.node_id, b.node_id)
        for here, there in ((a, b), (b, a)):
            node = here.node
            assert node is not None
            info = link_info(there.node_id, LinkState.OPEN, link.connects)
            node._on_link_change(there.node_id, info)
            self._drain(node)

    def close_link(self, a: str, b: str, down_for: int, why: str) -> None:
        link = self.network.link(a, b)
        if not link.open:
            return
        link.open = False
        link.down_until = self.now + down_for
        self.links_dirty = True
        self._trace("link down", a, b, why)
        for here, there in ((a, b), (b, a)):
            node = self.nodes[here].node
            if node is not None:
                node._on_link_change(there, link_info(there, LinkState.CLOSED, link.connects))

    # --- faults and clients ----------------------------------------------------------------

    def _faults(self) -> None:
        rng = self.rng
        if self.partition_until and self.now >= self.partition_until:
            self.cut.clear()
            self.partition_until = 0
            self.links_dirty = True
            self._trace("heal partition")
        if not self.partition_until and rng.random() < self.partition_rate:
            self._partition()
        if rng.random() < self.link_reset_rate:
            open_links = sorted(pair for pair, link in self.network.links.items() if link.open)
            if open_links:
                a, b = rng.choice(open_links)
                self.close_link(a, b, down_for=rng.randint(1, 5), why="reset")
        up = [n for n in self.nodes.values() if n.node is not None]
        if up and rng.random() < self.crash_rate:
            self._crash(rng.choice(up))
        for sim_node in self.nodes.values():
            node = sim_node.node
            merging = node is not None and node._merge is not None and node._merge.proposed
            if merging and rng.random() < self.merge_crash_rate / 20:
                self._crash(sim_node, "while proposing its merge queue")
        for sim_node in self.nodes.values():
            if sim_node.node is None and sim_node.scope >= 0 and self.now >= sim_node.down_until:
                self._start(sim_node)
        self._settle()

    def _partition(self) -> None:
        rng = self.rng
        ids = sorted(self.nodes)
        kind = rng.choice(["sides", "clusters", "one", "links", "apart"])
        if kind == "links":
            # Some links only: a node may reach two others that cannot reach each other.
            self.cut = {(a, b) for a in ids for b in ids if a < b and rng.random() < 0.3}
        elif kind == "apart":
            # One node reaches only the nodes it started with: the rest of its cluster may
            # merge while it goes on, in its old cluster, talking to them.
            group = self.nodes[rng.choice(ids)].group
            apart = {n for n in ids if self.nodes[n].group == group}
            alone = rng.choice(sorted(apart))
            self.cut = {_pair(alone, n) for n in ids if n not in apart}
        else:
            if kind == "sides":
                side = {n: rng.random() < 0.5 for n in ids}
            elif kind == "clusters":
                side = {n: self.nodes[n].group % 2 == 0 for n in ids}
            else:
                alone = rng.choice(ids)
                side = {n: n == alone for n in ids}
            self.cut = {(a, b) for a in ids for b in ids if a < b and side[a] != side[b]}
        self.partition_until = self.now + rng.randint(5, 40)
        self.links_dirty = True
        self._trace("partition", kind, len(self.cut))

    def _clients(self) -> None:
        rng = self.client_rng
        up = sorted((n for n in self.nodes.values() if n.node is not None), key=lambda n: n.node_id)
        if up and rng.random() < self.client_rate:
            self._send_chat(rng.choice(up))

    def _send_chat(self, sim_node: SimNode) -> None:
        node = sim_node.node
        if node is None:
            return
        self.sent += 1
        message_id = node.send_chat(f"m{self.sent} from {sim_node.node_id[:4]}")
        self._trace("send", sim_node.node_id, message_id)
        self._drain(node)
        self._after_step(sim_node)

    # --- the end ------------------------------------------------------------------------

    def _leader_of(self, cluster: ClusterIdentity) -> Node | None:
        best = None
        for sim_node in self.nodes.values():
            node = sim_node.node
            if (
                node is not None
                and node.cluster_gate.cluster == cluster
                and node.core.role is Role.LEADER
                and (best is None or node.core.term > best.core.term)
            ):
                best = node
        return best

    def _settled(self) -> bool:
        winner = survivor(self.founded)
        leader = self._leader_of(winner)
        if leader is None:
            return False
        status = leader.core.status()
        if leader.core.log.term(status.commit_index) != status.term:
            return False
        for sim_node in self.nodes.values():
            node = sim_node.node
            if (
                node is None
                or node.cluster_gate.cluster != winner
                or sim_node.node_id not in status.configuration.members
                or node.chat.last_applied_index < status.commit_index
                or sim_node.storage.merge is not None
                or node._merge is not None
                or node.proposals.pending
            ):
                return False
        return True

    def _final_checks(self) -> None:
        """One history everywhere, holding every message ever applied, once, in order."""
        histories = {}
        for sim_node in self.nodes.values():
            node = sim_node.node
            assert node is not None
            histories[sim_node.node_id] = [
                (m.index, m.id, m.client_id, m.serial, m.nick, m.text, m.ts, m.merged)
                for m in node.chat.history()
            ]
        reference_id, reference = next(iter(histories.items()))
        for node_id, history in histories.items():
            if history != reference:
                raise Violation(f"histories differ: {node_id} and {reference_id}")
        final = [message[1] for message in reference]
        position = {message_id: k for k, message_id in enumerate(final)}
        if len(position) != len(final):
            seen: set[str] = set()
            twice = next(m for m in final if m in seen or seen.add(m))  # type: ignore[func-returns-value]
            raise Violation(f"message {twice} is in the channel's history twice")
        for cluster, checks in self.checks.items():
            order = checks.order()
            missing = [m for m in order if m not in position]
            if missing:
                raise Violation(
                    f"{len(missing)} message(s) applied in cluster {short(cluster)} are not in "
                    f"the channel's history, e.g. {missing[:3]}"
                )
            # Messages merged in from elsewhere may reach the survivor by several ways
            # (some members of a cluster merge into a second one, others straight into the
            # survivor): only a cluster's own messages have an order to keep.
            native = checks.native_order()
            inversions = [
                (before, after)
                for before, after in itertools.pairwise(native)
                if position[before] > position[after]
            ]
            if inversions:
                before, after = inversions[0]
                text = (
                    f"order of cluster {short(cluster)} broken: {before} was committed "
                    f"before {after} there, and comes after it in the channel's history"
                )
                # Committed here from a proposal whose proposer left the cluster without
                # learning its fate, and merged it from the end of its queue.
                if all(self._committed_after_leaving(a) for _, a in inversions):
                    raise KnownBug("committed-after-leaving", text)
                raise Violation(text)
        lost = sorted(set(self.acked) - set(position))
        if lost:
            raise Violation(f"acknowledged messages lost: {lost[:3]}")

    def _committed_after_leaving(self, message_id: str) -> bool:
        """Whether some cluster took the message from a proposal that its proposer carried
        into its merge queue, unsettled, when it left."""
        for checks in self.checks.values():
            index = checks.message_index.get(message_id)
            if index is not None and index in checks.proposals:
                proposer, serial = checks.proposals[index]
                if serial in self.nodes[proposer].carried:
                    return True
        return False

    def _final_length(self) -> int:
        for sim_node in self.nodes.values():
            if sim_node.node is not None:
                return len(sim_node.node.chat.history())
        return 0

    # --- reporting -----------------------------------------------------------------------

    def _storm(self) -> None:
        """Far too many messages in flight (a retry loop, such as proposals forwarded to a
        former leader and bounced back at the speed of the link): say which, and stop."""
        kinds = Counter(type(f.message).__name__ for f in self.network.in_flight)
        raise Violation(
            f"message storm: {len(self.network.in_flight)} in flight, {dict(kinds.most_common(4))}"
        )

    def _liveness_report(self) -> str:
        parts = [
            f"liveness: not one settled channel {self.settings.heal_ticks} ticks after the "
            f"faults stopped (survivor {short(survivor(self.founded))})"
        ]
        parts.extend(self._statuses())
        return "\n  ".join(parts)

    def _statuses(self) -> list[str]:
        lines = []
        for sim_node in self.nodes.values():
            node = sim_node.node
            if node is None:
                lines.append(f"{sim_node.node_id}: down")
                continue
            status = node.core.status()
            merge = node._merge
            lines.append(
                f"{sim_node.node_id}: cluster={short(node.cluster_gate.cluster)} "
                f"{status.role.value} term={status.term} leader={status.leader or '-'} "
                f"commit={status.commit_index} applied={node.chat.last_applied_index} "
                f"last={status.last_index} voters={sorted(status.configuration.voters)} "
                f"learners={sorted(status.configuration.learners)} "
                f"merge={'-' if merge is None else f'{len(merge)} left'} "
                f"pending={len(node.proposals.pending)} "
                f"links={sorted(p for p, i in node._links.items() if i.state == 'open')}"
            )
        return lines

    def _trace(self, *event: object) -> None:
        self.trace.append((self.now, *event))

    @staticmethod
    def _format(event: tuple) -> str:
        now, *rest = event
        if len(rest) == 3 and isinstance(rest[2], (*Message.__args__, *HELLOS)):  # type: ignore[attr-defined]
            sender, to, message = rest
            return f"t={now} {sender}->{to} {_describe(message)}"
        return f"t={now} " + " ".join(str(part) for part in rest)


def _describe(message: Message | Hello) -> str:
    if isinstance(message, ClusterHello):
        return f"hello(cluster={message.cluster_id[:6] or 'none'})"
    if isinstance(message, IncarnationHello):
        return f"hello(incarnation={message.incarnation})"
    if isinstance(message, AppendEntries):
        span = (
            f"{message.entries[0].index}..{message.entries[-1].index}" if message.entries else "-"
        )
        return (
            f"AppendEntries(term={message.term} prev={message.prev_log_index}/"
            f"{message.prev_log_term} entries={span} commit={message.leader_commit})"
        )
    if isinstance(message, InstallSnapshot):
        return f"InstallSnapshot(term={message.term} index={message.last_included_index})"
    return type(message).__name__ + f"(term={getattr(message, 'term', '-')})"


# --- many seeds ---------------------------------------------------------------------------------


def run_seeds(
    seeds: int,
    start: int = 0,
    report: Callable[[MergeSimResult], None] | None = None,
    settings: MergeSimSettings | None = None,
    stop_at_first: bool = False,
) -> tuple[list[MergeSimResult], list[MergeSimResult]]:
    """Run ``seeds`` schedules from ``start``: (every result, the failing ones)."""
    results, failures = [], []
    for seed in range(start, start + seeds):
        result = MergeSimulation(seed, settings).run()
        results.append(result)
        if not result.ok:
            failures.append(result)
            if report is not None:
                report(result)
            if stop_at_first:
                break
    return results, failures


def format_failure(result: MergeSimResult) -> str:
    lines = [f"VIOLATION seed={result.seed}: {result.violations[0]}", f"  run: {result.shape}"]
    if result.known_bug:
        lines.append(f"  known bug {result.known_bug}: {KNOWN_BUGS[result.known_bug]}")
    lines.append(f"  last {len(result.trace)} events:")
    lines.extend(f"    {line}" for line in result.trace)
    lines.append(f"  replay: python -m tests.merge_sim --seed {result.seed} --seeds 1")
    return "\n".join(lines)


def summary(results: list[MergeSimResult], failures: list[MergeSimResult]) -> str:
    """Totals, then (last line) how many seeds failed, and how many of them no known bug
    explains."""
    merges = sum(r.merged_nodes for r in results)
    heals = sorted(r.heal_ticks for r in results if r.heal_ticks >= 0)
    median = heals[len(heals) // 2] if heals else -1
    known = Counter(r.known_bug for r in failures if r.known_bug)
    unexplained = sum(r.unexplained for r in failures)
    return (
        f"merges={merges} acked={sum(r.acked for r in results)} "
        f"messages={sum(r.messages for r in results)} "
        f"heal_ticks median={median} max={heals[-1] if heals else -1}\n"
        f"known bugs: {dict(sorted(known.items())) or 'none'}\n"
        f"seeds={len(results)} violations={len(failures)} unexplained={unexplained}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.merge_sim",
        description="Deterministic simulator of a channel's clusters merging into one.",
    )
    parser.add_argument("--seeds", type=int, default=100, help="how many schedules to run")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--quiet", action="store_true", help="no trace for known bugs")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the nodes' own logs, thousands per run

    def report(result: MergeSimResult) -> None:
        if args.quiet and result.known_bug:
            print(f"VIOLATION seed={result.seed}: {result.violations[0]}", flush=True)
        else:
            print(format_failure(result), flush=True)

    started = time.monotonic()
    results, failures = run_seeds(args.seeds, args.seed, report=report)
    print(f"elapsed={time.monotonic() - started:.1f}s", file=sys.stderr)
    print(summary(results, failures))
    return 1 if any(r.unexplained for r in failures) else 0


if __name__ == "__main__":
    sys.exit(main())
