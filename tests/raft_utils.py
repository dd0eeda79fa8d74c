"""A small deterministic Raft cluster for scenario tests: no randomness, no time.

Messages go into a queue and are delivered when the test says so; filters
drop messages to model partitions. Every node's Ready is handled right after
each input, following the documented contract (persist, send, apply).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from raftchat.raft import (
    AppendEntries,
    Entry,
    EntryKind,
    Event,
    Message,
    NodeId,
    ProposalOutcome,
    RaftCore,
    RaftSettings,
    ReadState,
    RequestVote,
    Role,
)
from raftchat.raft.sim import MemoryStorage, SessionStateMachine
from raftchat.raft.sim.witness_node import MemoryWitnessStorage
from raftchat.raft.witness import (
    LogPosition,
    WitnessCore,
    WitnessReady,
    WitnessSettings,
    WitnessState,
)

DropRule = Callable[[NodeId, NodeId, Message], bool]


def make_settings(node_id: NodeId, **overrides: int | bool) -> RaftSettings:
    settings: dict = {"election_timeout_ticks": 10, "heartbeat_ticks": 2}
    settings.update(overrides)
    return RaftSettings(node_id=node_id, **settings)


@dataclass
class NodeHarness:
    node_id: NodeId
    settings: RaftSettings
    core: RaftCore | None
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    machine: SessionStateMachine = field(default_factory=SessionStateMachine)
    applied: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    outcomes: list[ProposalOutcome] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass
class WitnessHarness:
    node_id: NodeId
    settings: WitnessSettings
    core: WitnessCore | None
    storage: MemoryWitnessStorage = field(default_factory=MemoryWitnessStorage)
    received: list[Message] = field(default_factory=list)


class Witness:
    """A WitnessCore on its own with its storage, handled as a runtime would: persist,
    then send."""

    def __init__(self, state: WitnessState | None = None, **settings: int | bool) -> None:
        self.settings = WitnessSettings("w", **settings)  # type: ignore[arg-type]
        self.storage = MemoryWitnessStorage(state)
        self.core = WitnessCore(self.settings, self.storage.state())
        self.readies: list[WitnessReady] = []

    def step(self, message: object) -> list[object]:
        """Step one message; the messages it answers with, once stored."""
        self.core.step(message)  # type: ignore[arg-type]
        return self.process()

    def process(self) -> list[object]:
        sent = []
        while self.core.has_ready():
            ready = self.core.ready()
            self.readies.append(ready)
            self.storage.persist(ready)
            sent.extend(message for _, message in ready.messages)
            self.core.advance(ready)
        return sent

    def restart(self) -> None:
        self.core = WitnessCore(self.settings, self.storage.state())


def append(
    term: int, prev: int, prev_term: int, terms: list[int], commit: int = 0, sender: str = "a"
) -> AppendEntries:
    """AppendEntries of NORMAL entries (without data) with the given terms after ``prev``."""
    entries = tuple(Entry(prev + 1 + i, t, EntryKind.NORMAL) for i, t in enumerate(terms))
    return AppendEntries(sender, term, prev, prev_term, entries, commit)


def positions(*terms: int, start: int = 1) -> list[LogPosition]:
    return [LogPosition(start + i, term) for i, term in enumerate(terms)]


def vote(sender: str, term: int, last_index: int, last_term: int, **flags: bool) -> RequestVote:
    return RequestVote(sender, term, last_index, last_term, **flags)


class Cluster:
    """Nodes plus a message queue. ``ids`` start as voters unless told otherwise."""

    def __init__(
        self,
        ids: Iterable[NodeId],
        seed: int = 0,
        bootstrap: bool = True,
        **settings_overrides: int | bool,
    ) -> None:
        self.seed = seed
        self.nodes: dict[NodeId, NodeHarness] = {}
        self.witnesses: dict[NodeId, WitnessHarness] = {}
        self.queue: list[tuple[NodeId, NodeId, Message]] = []
        self.drop_rules: list[DropRule] = []
        self.delivered: list[tuple[NodeId, NodeId, Message]] = []
        self._overrides = settings_overrides
        ids = list(ids)
        for node_id in ids:
            self.add_node(node_id)
        if bootstrap and ids:
            self.bootstrap(ids)

    # --- building -----------------------------------------------------------------

    def add_node(self, node_id: NodeId) -> NodeHarness:
        settings = make_settings(node_id, **self._overrides)
        harness = NodeHarness(node_id, settings, None)
        harness.core = RaftCore(settings, harness.storage.state(), self._rng(node_id))
        self.nodes[node_id] = harness
        return harness

    def add_witness_node(self, node_id: NodeId) -> WitnessHarness:
        """A witness process (not yet in the configuration: see ``Cluster.change``)."""
        timeout = self._overrides.get("election_timeout_ticks", 10)
        settings = WitnessSettings(node_id, election_timeout_ticks=int(timeout))
        harness = WitnessHarness(node_id, settings, WitnessCore(settings))
        self.witnesses[node_id] = harness
        return harness

    def witness(self, node_id: NodeId) -> WitnessCore:
        core = self.witnesses[node_id].core
        assert core is not None, f"witness {node_id} is down"
        return core

    def _rng(self, node_id: NodeId) -> random.Random:
        return random.Random(f"{self.seed}:{node_id}:{len(self.delivered)}")

    def bootstrap(self, ids: list[NodeId]) -> None:
        """First node bootstraps; the others are added as learners then promoted."""
        first = ids[0]
        self.core(first).bootstrap()
        self.process(first)
        for node_id in ids[1:]:
            self.change(lambda core, n=node_id: core.add_learner(n))
            self.change(lambda core, n=node_id: core.promote(n))
        self.settle()

    def change(self, action: Callable[[RaftCore], object]) -> None:
        """Run a membership change on the leader and let it commit."""
        leader = self.leader()
        assert leader is not None, "no leader to run the change"
        result = action(self.core(leader))
        assert getattr(result, "ok", True), result
        self.process(leader)
        self.settle()

    # --- access -------------------------------------------------------------------

    def core(self, node_id: NodeId) -> RaftCore:
        core = self.nodes[node_id].core
        assert core is not None, f"{node_id} is down"
        return core

    def up(self) -> list[NodeId]:
        return [n for n, h in self.nodes.items() if h.core is not None]

    def leader(self) -> NodeId | None:
        leaders = [n for n in self.up() if self.core(n).role is Role.LEADER]
        if not leaders:
            return None
        return max(leaders, key=lambda n: self.core(n).term)

    # --- running ------------------------------------------------------------------

    def process(self, node_id: NodeId) -> None:
        """Handle the node's Ready as the runtime would."""
        harness = self.nodes[node_id]
        core = harness.core
        if core is None:
            return
        while core.has_ready():
            ready = core.ready()
            for to, message in ready.early_messages:
                self.queue.append((node_id, to, message))
            harness.storage.persist(ready)
            for to, message in ready.messages:
                self.queue.append((node_id, to, message))
            if ready.snapshot is not None:
                harness.machine.restore(ready.snapshot.data)
            for entry in ready.committed_entries:
                harness.machine.apply(entry)
                harness.applied.append(entry)
            harness.read_states.extend(ready.read_states)
            harness.outcomes.extend(ready.proposal_outcomes)
            harness.events.extend(ready.events)
            core.advance(ready)

    def process_witness(self, node_id: NodeId) -> None:
        """Handle the witness's Ready: persist, then send."""
        harness = self.witnesses[node_id]
        core = harness.core
        if core is None:
            return
        while core.has_ready():
            ready = core.ready()
            harness.storage.persist(ready)
            for to, message in ready.messages:
                self.queue.append((node_id, to, message))
            core.advance(ready)

    def deliver_one(self) -> bool:
        if not self.queue:
            return False
        sender, to, message = self.queue.pop(0)
        if any(rule(sender, to, message) for rule in self.drop_rules):
            return True
        if to in self.witnesses:
            witness = self.witnesses[to]
            if witness.core is not None:
                self.delivered.append((sender, to, message))
                witness.received.append(message)
                witness.core.step(message)
                self.process_witness(to)
            return True
        harness = self.nodes.get(to)
        if harness is None or harness.core is None:
            return True
        self.delivered.append((sender, to, message))
        harness.core.step(message)
        self.process(to)
        return True

    def deliver_all(self, limit: int = 100_000) -> int:
        count = 0
        while self.queue and count < limit:
            self.deliver_one()
            count += 1
        return count

    def tick(self, times: int = 1, nodes: Iterable[NodeId] | None = None) -> None:
        for _ in range(times):
            for node_id in list(nodes) if nodes is not None else self.up():
                core = self.nodes[node_id].core
                if core is not None:
                    core.tick()
                    self.process(node_id)
            if nodes is None:
                for witness in self.witnesses.values():
                    if witness.core is not None:
                        witness.core.tick()
            self.deliver_all()

    def settle(self, max_ticks: int = 200) -> None:
        """Tick until there is a leader and every up member applied its commit index."""
        for _ in range(max_ticks):
            self.deliver_all()
            leader = self.leader()
            if leader is not None:
                commit = self.core(leader).log.commit
                members = self.core(leader).configuration.members - set(self.witnesses)
                if (
                    all(self.core(n).log.applied >= commit for n in members if n in self.up())
                    and not self.queue
                ):
                    return
            self.tick()
        raise AssertionError(f"cluster did not settle (seed {self.seed})")

    def elect(self, node_id: NodeId, max_ticks: int = 100) -> None:
        """Make ``node_id`` leader by a leadership transfer (or a campaign if none)."""
        leader = self.leader()
        if leader == node_id:
            return
        if leader is None:
            self.core(node_id).campaign()
            self.process(node_id)
        else:
            self.core(leader).transfer_leadership(node_id)
            self.process(leader)
        for _ in range(max_ticks):
            self.deliver_all()
            if self.leader() == node_id:
                return
            self.tick()
        raise AssertionError(f"{node_id} did not become leader")

    def campaign(self, node_id: NodeId, attempts: int = 3) -> None:
        """Start elections on ``node_id`` (no ticks) until it leads or attempts run out.

        A first attempt may only teach it the current term (its pre-vote is refused).
        """
        for _ in range(attempts):
            self.core(node_id).campaign()
            self.process(node_id)
            self.deliver_all()
            if self.core(node_id).role is Role.LEADER:
                return

    # --- faults -------------------------------------------------------------------

    def isolate(self, node_id: NodeId) -> DropRule:
        def rule(sender: NodeId, to: NodeId, message: Message) -> bool:
            return node_id in (sender, to)

        self.drop_rules.append(rule)
        return rule

    def partition(self, *groups: Iterable[NodeId]) -> DropRule:
        side = {n: i for i, group in enumerate(groups) for n in group}

        def rule(sender: NodeId, to: NodeId, message: Message) -> bool:
            return side.get(sender, -1) != side.get(to, -2)

        self.drop_rules.append(rule)
        return rule

    def heal(self) -> None:
        self.drop_rules.clear()

    def crash(self, node_id: NodeId) -> None:
        """Stop the node; what it had not persisted is gone."""
        harness = self.witnesses.get(node_id) or self.nodes[node_id]
        harness.core = None
        self.queue = [item for item in self.queue if node_id not in (item[0], item[1])]

    def restart(self, node_id: NodeId) -> None:
        if node_id in self.witnesses:
            witness = self.witnesses[node_id]
            witness.core = WitnessCore(witness.settings, witness.storage.state())
            return
        harness = self.nodes[node_id]
        state = harness.storage.state()
        harness.machine = SessionStateMachine()
        if state.snapshot is not None:
            harness.machine.restore(state.snapshot.data)
        harness.core = RaftCore(harness.settings, state, self._rng(node_id))
        self.process(node_id)

    def propose(self, node_id: NodeId, data: bytes, client_id: str = "", serial: int = 0):
        result = self.core(node_id).propose(data, client_id, serial)
        self.process(node_id)
        return result


def normal_entries(entries: Iterable[Entry]) -> list[bytes]:
    return [e.data for e in entries if e.kind == EntryKind.NORMAL]
