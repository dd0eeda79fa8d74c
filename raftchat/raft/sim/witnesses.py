"""The witness's part in a simulated run: one witness node, its faults, churn and checks.

Some seeds run a witness next to the members (draws from their own random stream, so
the seeds without one keep their schedules):

- ``pair``: two members and the witness, the channel a witness exists for. Faults as
  usual (the witness crashes, restarts from what it stored and is partitioned like any
  node; churn removes and adds it). When the run has settled comes the headline check:
  one member, the leader or the follower, dies for good, and the survivor must be
  elected (it needs the witness's vote) and commit the removal of the dead member, then
  of the witness, within ``HEADLINE_BOUND`` election timeouts.
- ``spare``: any cluster; churn adds and removes the witness among its other changes.

Checked after every step, on top of the simulator's own checks: Log Matching on
(index, term) between the witness's stored positions and the members' logs (every
position it stores is one a member stored, following the same previous term), the
witness never leads (it sends only answers, no member ever follows it, nobody sends it
TimeoutNow), never receives a payload (no snapshot data, no entry data but a
configuration entry's configuration), and knows the configuration the members have at
its last position (appended, truncated, compacted, installed or restarted alike).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Literal

from ..codec import decode_configuration
from ..messages import Configuration, EntryKind, Message, NodeId, RequestVote, TimeoutNow
from ..ready import Ready, Role
from ..witness import LogPosition, WitnessSettings
from .invariants import Violation
from .models import MemoryStorage, SimNode
from .witness_node import WITNESS_ANSWERS, SimWitness, payload_in

if TYPE_CHECKING:
    from .simulation import Simulation

WitnessMode = Literal["pair", "spare"]

WITNESS_ID: NodeId = "w0"
HEADLINE_BOUND = 12
"""Election timeouts within which the survivor leads and has removed the dead member."""


def witness_mode(seed: int, nodes: int | None) -> WitnessMode | None:
    """Whether (and how) seed ``seed`` runs a witness."""
    draw = random.Random(f"{seed}/witness-mode").random()
    if draw < 0.3 and nodes in (None, 2):
        return "pair"
    if draw < 0.5:
        return "spare"
    return None


class WitnessDriver:
    """Runs the witness inside a :class:`Simulation` and checks what only it needs."""

    def __init__(self, sim: Simulation, mode: WitnessMode) -> None:
        self.sim = sim
        self.mode = mode
        self.rng = random.Random(f"{sim.seed}/witness")
        settings = WitnessSettings(
            WITNESS_ID,
            election_timeout_ticks=sim.election_timeout,
            compact_after=self.rng.choice([2, 16, 1024]),
        )
        self.node = SimWitness(WITNESS_ID, settings)
        self.node.start()
        self.crash_rate = self.rng.choice([0.0, 0.01, 0.03])
        self.churn_share = 1.0 if mode == "pair" else self.rng.choice([0.2, 0.5])
        self.term_before: dict[tuple[int, int], int] = {}
        """(index, term) of an entry a member stored -> the term of the entry before it."""
        self.configuration_at: dict[tuple[int, int], Configuration] = {(0, 0): Configuration()}
        """(index, term) of an entry or snapshot a member stored -> the configuration in
        force there (the same on every member that has it, by Log Matching)."""
        self.headline_ticks = -1
        """Ticks the headline check took (-1: not run)."""
        self.cut: tuple[NodeId, NodeId] | None = None
        """(sender, receiver) whose messages are dropped (the headline's lagging link)."""

    @property
    def ids(self) -> list[NodeId]:
        return [WITNESS_ID]

    # --- the runtime loop ----------------------------------------------------------

    def process(self) -> None:
        core = self.node.core
        if core is None:
            return
        while core.has_ready():
            ready = core.ready()
            self.node.storage.persist(ready)
            self._check_stored(ready.entries, ready.snapshot, ready.compacted)
            for to, message in ready.messages:
                if not isinstance(message, WITNESS_ANSWERS):
                    raise Violation(f"the witness sent {type(message).__name__} to {to}")
                self.sim._send(WITNESS_ID, to, message)
            core.advance(ready)
        self._check_configuration()

    def deliver(self, sender: NodeId, message: Message) -> None:
        core = self.node.core
        if core is None:
            return
        core.step(message)
        self.process()
        sim = self.sim
        rebooting = sim.faults_on and isinstance(message, RequestVote)
        if rebooting and self.rng.random() < sim.reboot_rate:
            self.crash(down=False)  # right after answering: only what it stored survives
            self.start()
            sim._trace("reboot", WITNESS_ID)

    def tick(self) -> None:
        if self.node.core is not None:
            self.node.core.tick()
            self.process()

    def sent(self, sender: NodeId, to: NodeId, message: Message) -> bool:
        """A node sent ``message``: nothing that leads or feeds a witness more than
        metadata. False if the message is lost on the headline's lagging link."""
        if to != WITNESS_ID:
            return self.cut != (sender, to)
        carried = payload_in(message)
        if carried:
            raise Violation(f"{sender} sent the witness {carried}")
        if isinstance(message, TimeoutNow):
            raise Violation(f"{sender} asked the witness to take over (TimeoutNow)")
        return True

    def member_processed(self, node: SimNode) -> None:
        core = node.core
        if core is not None and core.leader == WITNESS_ID:
            raise Violation(f"{node.node_id} follows the witness as its leader")

    def member_persisted(self, storage: MemoryStorage, ready: Ready) -> None:
        """Record, for each entry a member stored, the term of the entry before it and the
        configuration in force there."""
        for snapshot in (ready.compacted, ready.snapshot):
            if snapshot is not None:
                meta = snapshot.meta
                self.configuration_at.setdefault((meta.index, meta.term), meta.configuration)
        if not ready.entries:
            return
        base = storage.snapshot_index
        entries = storage.entries
        snapshot_term = storage.snapshot.meta.term if storage.snapshot is not None else 0
        first = ready.entries[0].index - base - 1
        configuration = self._configuration_before(storage, first)
        for entry in ready.entries:
            position = entry.index - base - 1
            before = entries[position - 1].term if position > 0 else snapshot_term
            self.term_before.setdefault((entry.index, entry.term), before)
            if entry.kind == EntryKind.CONFIG:
                configuration = decode_configuration(entry.data)
            self.configuration_at.setdefault((entry.index, entry.term), configuration)

    def _configuration_before(self, storage: MemoryStorage, position: int) -> Configuration:
        """The configuration in force before the stored entry at ``position``."""
        entries = storage.entries
        for earlier in range(position - 1, -1, -1):
            entry = entries[earlier]
            known = self.configuration_at.get((entry.index, entry.term))
            if known is not None:
                return known
            if entry.kind == EntryKind.CONFIG:
                return decode_configuration(entry.data)
        return (
            storage.snapshot.meta.configuration if storage.snapshot is not None else Configuration()
        )

    # --- checks --------------------------------------------------------------------

    def _check_configuration(self) -> None:
        """The witness's configuration is the members' at its last position."""
        core = self.node.core
        if core is None:
            return
        position = (core.last_index, core.last_term)
        expected = self.configuration_at.get(position)
        if expected is not None and core.configuration != expected:
            raise Violation(
                f"the witness knows configuration {core.configuration} at {position}, the"
                f" members {expected}"
            )

    def _check_stored(
        self,
        entries: list[LogPosition],
        snapshot: LogPosition | None,
        compacted: LogPosition | None,
    ) -> None:
        """Log matching on (index, term): each stored position is a member's entry, and
        follows the same term there as in the witness's log."""
        storage = self.node.storage
        for mark in (snapshot, compacted):
            if mark is not None and mark.index and (mark.index, mark.term) not in self.term_before:
                raise Violation(f"witness snapshot at {mark} names no member's entry")
        if not entries:
            return
        base = storage.snapshot.index
        stored = storage.entries
        for entry in entries:
            position = entry.index - base - 1
            before = stored[position - 1].term if position > 0 else storage.snapshot.term
            known = self.term_before.get((entry.index, entry.term))
            if known is None:
                raise Violation(f"witness stored {entry}, an entry no member ever stored")
            if known != before:
                raise Violation(
                    f"log matching (index, term) broken on the witness at {entry}: term"
                    f" {before} before it, {known} on the members"
                )

    # --- faults and churn ----------------------------------------------------------

    def start(self) -> None:
        self.node.start()
        self.process()

    def crash(self, down: bool = True) -> None:
        if self.node.core is None:
            return
        self.node.core = None  # whatever a Ready had not stored is gone
        self.node.down_until = self.sim.now + self.rng.randint(3, 40) if down else 0
        self.sim._trace("crash", WITNESS_ID)

    def faults(self) -> None:
        sim = self.sim
        if self.node.core is not None and self.rng.random() < self.crash_rate:
            self.crash()
        elif self.node.core is None and sim.now >= self.node.down_until:
            self.start()
            sim._trace("restart", WITNESS_ID)

    def churn(self, leader: SimNode) -> bool:
        """Maybe add or remove the witness; True if churn was the witness's this time."""
        if self.rng.random() >= self.churn_share:
            return False
        core = leader.core
        assert core is not None
        if WITNESS_ID in core.configuration.members:
            result = core.remove_witness(WITNESS_ID)
            action = "remove_witness"
        else:
            result = core.add_witness(WITNESS_ID)
            action = "add_witness"
        self.sim._trace(action, leader.node_id, WITNESS_ID, result.error or result.index)
        self.sim._process(leader)
        return True

    def status(self) -> str:
        core = self.node.core
        if core is None:
            return f"{WITNESS_ID}: down"
        return (
            f"{WITNESS_ID}: witness term={core.term} vote={core.vote or '-'} "
            f"last={core.last_index}/{core.last_term} snapshot={core.snapshot.index} "
            f"voters={sorted(core.configuration.voters)} refused={sum(core.refused.values())}"
        )

    # --- setup and the headline check ----------------------------------------------

    def add_to_configuration(self, max_ticks: int) -> None:
        """Have the leader add the witness and commit it (fails the run if it cannot)."""
        sim = self.sim
        for _ in range(max_ticks):
            leader = sim._leader()
            if leader is not None and leader.core is not None:
                core = leader.core
                if WITNESS_ID in core.configuration.witnesses:
                    if core.log.commit >= core.status().configuration_index:
                        return
                else:
                    core.add_witness(WITNESS_ID)
                    sim._process(leader)
            sim._tick()
        sim._fail(f"could not add the witness within {max_ticks} ticks")

    def headline(self) -> None:
        """Two members and the witness; one member dies for good: the survivor must lead
        and commit its removal, then the witness's, within the bound."""
        sim = self.sim
        bound = HEADLINE_BOUND * sim.election_timeout
        self.add_to_configuration(bound)
        leader = sim._leader()
        assert leader is not None and leader.core is not None
        members = sorted(leader.core.configuration.member_voters)
        if len(members) != 2:
            sim._fail(f"headline: expected two members, the configuration has {members}")
        kill_leader = self.rng.random() < 0.5
        follower_id = next(m for m in members if m != leader.node_id)
        victim_id = leader.node_id if kill_leader else follower_id
        survivor_id = follower_id if kill_leader else leader.node_id
        for _ in range(self.rng.randint(0, 3 * sim.election_timeout)):
            sim._clients(proposing=True)
            sim._tick()
        # The follower's link lags for less than a CheckQuorum round (the leader still
        # counts it as alive), so the witness could get ahead of it but must not.
        self.cut = (leader.node_id, follower_id)
        for _ in range(self.rng.randint(0, sim.election_timeout // 2)):
            sim._clients(proposing=True)
            sim._tick()
        self.cut = None
        victim = sim.nodes[victim_id]
        sim._crash(victim, torn=self.rng.random() < 0.5)
        victim.down_until = 1 << 62
        sim._trace("headline: killed", victim_id, "leader" if kill_leader else "follower")
        started = sim.now
        survivor = sim.nodes[survivor_id]
        while sim.now - started <= bound:
            core = survivor.core
            assert core is not None
            if core.role is Role.LEADER:
                configuration = core.configuration
                committed = core.log.commit >= core.status().configuration_index
                if committed and victim_id not in configuration.members:
                    if self.headline_ticks < 0:
                        self.headline_ticks = sim.now - started
                        sim._trace("headline: removed", victim_id, self.headline_ticks)
                    if configuration.voters == {survivor_id}:
                        return
                if committed:
                    target = victim_id if victim_id in configuration.members else WITNESS_ID
                    result = core.remove(target)
                    sim._trace("headline: remove", target, result.error or result.index)
                    sim._process(survivor)
            sim._clients(proposing=False)
            sim._tick()
        sim._fail(
            f"headline: {survivor_id} did not lead and remove {victim_id} and the witness "
            f"within {bound} ticks\n  " + "\n  ".join(sim._statuses())
        )
