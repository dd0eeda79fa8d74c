"""The forced change in a simulated run: a two-voter cluster loses one voter for good.

Some seeds without a witness run two voters and no membership churn (draws from their
own random stream, so the other seeds keep their schedules). Faults as usual; when the
run has settled comes the check of :mod:`raftchat.raft.forced`:

1. one voter, the leader or the follower, dies (a torn write or not) and stays down;
   clients go on proposing through the survivor, which cannot commit. Before a leader
   dies its empty AppendEntries to the follower may be lost for a moment: the follower
   then holds entries the leader committed (and acknowledged) without knowing it;
2. the survivor carries on without it (``force_remove``), leads alone and must commit
   the clients' proposals within ``FORGET_BOUND`` election timeouts;
3. the dead voter restarts from what it stored, with its old term, its configuration
   naming both and maybe an uncommitted tail; the survivor adds it back (learner, then
   voter, as the runtime's membership does), and it must hold the survivor's history.

The simulator's checks run after every step throughout: one leader per term, log
matching, leader completeness (the survivor holds every committed entry when it takes
over), committed entries never change and every acknowledged proposal is applied once
on every member, the returning voter included.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..messages import AppendEntries, Message
from ..ready import RequestStatus, Role
from .models import SimNode

if TYPE_CHECKING:
    from .simulation import Simulation

FORGET_BOUND = 12
"""Election timeouts for each stage: the survivor's commits, the return of the dead."""


def forget_mode(seed: int, nodes: int | None, witness: bool) -> bool:
    """Whether seed ``seed`` ends with a voter forgotten (never together with a witness)."""
    draw = random.Random(f"{seed}/forget-mode").random()
    return not witness and nodes in (None, 2) and draw < 0.3


class ForgetDriver:
    """Runs the forced change at the end of a :class:`Simulation` and checks its outcome."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.rng = random.Random(f"{sim.seed}/forget")
        self.forgotten = ""
        """The voter the survivor carried on without ("" before the check)."""
        self._acked_at_force = 0
        self.cut: tuple[str, str] | None = None
        """(leader, follower) whose empty AppendEntries (commit news) are lost."""

    def headline(self) -> None:
        sim = self.sim
        bound = FORGET_BOUND * sim.election_timeout
        leader = sim._leader()
        assert leader is not None and leader.core is not None
        voters = sorted(leader.core.configuration.voters)
        if len(voters) != 2:
            sim._fail(f"forget: expected two voters, the configuration has {voters}")
        kill_leader = self.rng.random() < 0.5
        follower_id = next(v for v in voters if v != leader.node_id)
        victim = sim.nodes[leader.node_id if kill_leader else follower_id]
        survivor = sim.nodes[follower_id if kill_leader else leader.node_id]
        self._run(self.rng.randint(0, 3 * sim.election_timeout), proposing=True)
        if kill_leader and self.rng.random() < 0.5:
            self.cut = (leader.node_id, follower_id)
            self._run(self.rng.randint(1, max(1, sim.election_timeout // 2)), proposing=True)
        sim._crash(victim, torn=self.rng.random() < 0.5)
        self.cut = None
        victim.down_until = 1 << 62
        sim._trace("forget: killed", victim.node_id, "leader" if kill_leader else "follower")
        self._run(self.rng.randint(0, 2 * sim.election_timeout), proposing=True)
        self._force(survivor, victim.node_id)
        self._until(bound, "commit alone", lambda: self._committed_alone(survivor))
        self._run(self.rng.randint(0, sim.election_timeout), proposing=True)
        victim.down_until = 0
        sim._start(victim)
        sim._trace("forget: restarted", victim.node_id)
        self._until(bound, "re-add the forgotten voter", lambda: self._readd(survivor, victim))
        self._until(bound, "settle", sim._settled, proposing=False)
        sim._final_checks()

    # --- stages --------------------------------------------------------------------

    def _force(self, survivor: SimNode, victim_id: str) -> None:
        core = survivor.core
        assert core is not None
        result = core.force_remove([victim_id])
        sim = self.sim
        sim._trace("forget: force_remove", survivor.node_id, victim_id, result.error or result.term)
        if result.status is not RequestStatus.APPENDED:
            sim._fail(f"forget: {survivor.node_id} could not carry on alone: {result.error}")
        self.forgotten = victim_id
        self._acked_at_force = sim.acked_count
        sim._process(survivor)

    def _committed_alone(self, survivor: SimNode) -> bool:
        """The survivor leads alone, committed its configuration and acknowledged more."""
        core = survivor.core
        assert core is not None
        return (
            core.role is Role.LEADER
            and core.configuration.voters == {survivor.node_id}
            and core.log.commit >= core.status().configuration_index
            and self.sim.acked_count > self._acked_at_force
        )

    def _readd(self, survivor: SimNode, victim: SimNode) -> bool:
        """Have the survivor add the returning voter as a learner, then promote it once it
        caught up; True once it is a voter in a committed configuration."""
        sim = self.sim
        core = survivor.core
        assert core is not None
        if core.role is not Role.LEADER:
            sim._fail(f"forget: {survivor.node_id} lost its leadership to a returning voter")
        configuration = core.configuration
        status = core.status()
        committed = core.log.commit >= status.configuration_index
        victim_id = victim.node_id
        if victim_id in configuration.voters:
            return committed
        if not committed:
            return False
        if victim_id in configuration.learners:
            progress = {p.node_id: p for p in status.progress}.get(victim_id)
            if progress is None or progress.match < core.log.commit:
                return False
            result = core.promote(victim_id)
        else:
            result = core.add_learner(victim_id)
        sim._trace("forget: re-add", victim_id, result.error or result.index)
        sim._process(survivor)
        return False

    # --- driving ---------------------------------------------------------------------

    def sent(self, sender: str, to: str, message: Message) -> bool:
        """Whether ``message`` from ``sender`` to ``to`` goes out (False: lost on the cut)."""
        return not (
            self.cut == (sender, to) and isinstance(message, AppendEntries) and not message.entries
        )

    def _run(self, ticks: int, proposing: bool) -> None:
        for _ in range(ticks):
            self.sim._clients(proposing=proposing)
            self.sim._tick()

    def _until(
        self, bound: int, stage: str, done: Callable[[], bool], proposing: bool = True
    ) -> None:
        sim = self.sim
        started = sim.now
        while sim.now - started <= bound:
            if done():
                sim._trace(f"forget: {stage}", sim.now - started)
                return
            sim._clients(proposing=proposing)
            sim._tick()
        sim._fail(
            f"forget: could not {stage} within {bound} ticks\n  " + "\n  ".join(sim._statuses())
        )
