"""One seeded run of the simulator: a cluster, a fault schedule and a client workload."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from ..core import RaftCore
from ..messages import AppendEntries, Entry, InstallSnapshot, Message, NodeId, RequestVote
from ..ready import ProposalOutcome, RequestStatus, Role
from ..settings import RaftSettings
from .clients import SimClient, SimRead
from .forgetting import ForgetDriver, forget_mode
from .invariants import SafetyChecks, Violation
from .models import SessionStateMachine, SimNode, Verdict, client_command
from .network import Network
from .witnesses import WitnessDriver, witness_mode

SETUP_TICKS_PER_CHANGE = 250
"""Setup's bound for adding one initial voter or the witness. Generous: a learner is only
promoted once caught up, and with delays far above a short election timeout the first
leaders keep losing their quorum check."""


@dataclass
class SimSettings:
    """Shape of one simulated run (most values are then varied by the seed)."""

    fault_ticks: int = 160
    heal_ticks: int = 150
    """Liveness bound: after faults stop, everything must settle within this many ticks."""
    election_timeout_ticks: int = 10
    heartbeat_ticks: int = 2
    steps_per_tick: int = 8
    clients: int = 3
    spare_nodes: int = 2
    trace_length: int = 60


@dataclass
class SimResult:
    seed: int
    nodes: int
    violations: list[str]
    trace: list[str]
    ticks: int
    messages: int
    acked: int
    reads: int
    witness: str = ""
    """How the run used a witness: "pair", "spare" or "" (none)."""
    headline_ticks: int = -1
    """Pair runs: ticks from a member's death to its removal being committed (-1: none)."""
    forgotten: str = ""
    """Forget runs: the voter the survivor carried on without ("" in other runs)."""

    @property
    def ok(self) -> bool:
        return not self.violations


class Simulation:
    """One seeded run. ``run()`` returns a SimResult; it never raises on a violation."""

    def __init__(self, seed: int, nodes: int | None = None, settings: SimSettings | None = None):
        self.seed = seed
        self.settings = settings or SimSettings()
        self.rng = random.Random(seed)
        rng = self.rng
        self.node_count = nodes if nodes is not None else rng.randint(1, 7)
        mode = witness_mode(seed, nodes)
        if mode == "pair":
            self.node_count = 2
        forgetting = forget_mode(seed, nodes, witness=mode is not None)
        if forgetting:
            self.node_count = 2
        loss = rng.choice([0.0, 0.01, 0.05, 0.1])
        duplication = rng.choice([0.0, 0.01, 0.05])
        max_delay = rng.choice([1, 4, 12, 30])
        self.crash_rate = rng.choice([0.0, 0.01, 0.03, 0.06])
        self.partition_rate = rng.choice([0.0, 0.02, 0.05])
        self.churn_rate = rng.choice([0.0, 0.02, 0.05])
        self.transfer_rate = rng.choice([0.0, 0.01, 0.03])
        self.compact_rate = rng.choice([0.01, 0.05, 0.2])
        self.read_rate = rng.choice([0.0, 0.05, 0.2])
        self.reboot_rate = rng.choice([0.0, 0.3, 0.6])
        """Chance that a node restarts right after persisting its answer to a vote request."""
        self.snapshot_chunk = rng.choice([16, 64, 4096])
        self.client_rng = random.Random(f"{seed}/clients")
        """Draws of the client workload, apart from the fault schedule's."""
        forward_loss = self.client_rng.choice([0.0, 0.05, 0.2])
        self.client_window = self.client_rng.choice([1, 2, 4, 8])
        self.early_crash_rng = random.Random(f"{seed}/early")
        """Draws of crashes between a leader's early AppendEntries and its write."""
        self.early_crash_rate = self.early_crash_rng.choice([0.0, 0.002, 0.01])
        self.early_crashes_on = False
        """Off while the initial voters are added, like every other crash."""
        self.run_starts: set[tuple[str, int]] = set()
        self.processing: set[NodeId] = set()
        # Short timeouts against long delays make contested elections common.
        self.election_timeout = rng.choice([1, 1, 0.5]) * self.settings.election_timeout_ticks
        self.election_timeout = max(self.settings.heartbeat_ticks + 1, int(self.election_timeout))
        self.now = 0
        self.trace: deque[tuple] = deque(maxlen=self.settings.trace_length)
        self.network = Network(
            rng, self.client_rng, loss, duplication, max_delay, forward_loss, self._trace
        )
        self.faults_on = True
        self.checks = SafetyChecks()
        self.acked: dict[str, int] = {}
        self.acked_count = 0
        self.reads_checked = 0
        self.reads: dict[int, SimRead] = {}
        self.next_read_id = 1
        self.witness = WitnessDriver(self, mode) if mode is not None else None
        self.forget = ForgetDriver(self) if forgetting else None
        ids = [f"n{i}" for i in range(self.node_count + self.settings.spare_nodes)]
        self.nodes: dict[NodeId, SimNode] = {}
        for node_id in ids:
            node_settings = RaftSettings(
                node_id=node_id,
                election_timeout_ticks=self.election_timeout,
                heartbeat_ticks=self.settings.heartbeat_ticks,
                max_append_bytes=rng.choice([64, 512, 65536]),
                max_inflight=rng.choice([1, 2, 8]),
                snapshot_chunk_bytes=self.snapshot_chunk,
            )
            node = SimNode(node_id, node_settings, machine=SessionStateMachine(self.run_starts))
            self.nodes[node_id] = node
            self._start(node)
        self.voter_ids = ids[: self.node_count]
        self.clients = [
            SimClient(f"c{i}", window=self.client_window) for i in range(self.settings.clients)
        ]
        self.client_by_id = {client.client_id: client for client in self.clients}
        for client in self.clients:
            self.run_starts.add((client.client_id, client.run_first))

    # --- node lifecycle ----------------------------------------------------------

    def _start(self, node: SimNode) -> None:
        state = node.storage.state()
        node.machine = SessionStateMachine(self.run_starts)
        if state.snapshot is not None:
            node.machine.restore(state.snapshot.data)
        rng = random.Random(f"{self.seed}/{node.node_id}/{self.now}")
        node.core = RaftCore(node.settings, state, rng)
        self._process(node)

    def _crash(self, node: SimNode, torn: bool) -> None:
        core = node.core
        if core is None:
            return
        if torn and core.has_ready():
            ready = core.ready()  # handed out, never persisted: lost with the crash
            for to, message in ready.early_messages:  # ... but these went out first
                self._send(node.node_id, to, message)
        node.core = None
        node.writing = False
        node.down_until = self.now + self.rng.randint(3, 40)
        self._trace("crash", node.node_id, "before persisting" if torn else "")
        for read in [r for r in self.reads.values() if r.node == node.node_id]:
            del self.reads[read.request_id]
        for client in self.clients:
            if client.node == node.node_id:
                self._restart_client(client)

    def _crash_writing(self) -> None:
        """Crash the nodes stuck between their early AppendEntries and their write."""
        for node in self.nodes.values():
            if node.writing:
                self._crash(node, torn=False)
                self._trace("crash", node.node_id, "before storing what it sent")

    def _restart_client(self, client: SimClient) -> None:
        """The client's node went down: its unacknowledged proposals are gone with it, and
        it starts a new run above every serial it used (prev_serial 0 lets it jump)."""
        client.pending.clear()
        client.held = False
        client.node = ""
        client.resumed = (-1, -1)
        client.run_first = client.serial + self.client_rng.randint(1, 5)
        client.serial = client.run_first - 1
        self.run_starts.add((client.client_id, client.run_first))
        self._trace("client restart", client.client_id, client.run_first)

    def _fail(self, text: str) -> None:
        raise Violation(text)

    # --- the runtime loop ------------------------------------------------------------

    def _process(self, node: SimNode) -> None:
        core = node.core
        if core is None or node.writing or node.node_id in self.processing:
            return  # a proposal made while handling this node's Ready: its loop picks it up
        self.processing.add(node.node_id)
        try:
            self._process_ready(node, core)
        finally:
            self.processing.discard(node.node_id)

    def _process_ready(self, node: SimNode, core: RaftCore) -> None:
        while core.has_ready():
            self._check_new_leader(node, core)  # before its first entry is stored
            ready = core.ready()
            if ready.early_messages:
                for to, message in ready.early_messages:
                    self._send(node.node_id, to, message)
                if self.early_crashes_on and self.early_crash_rng.random() < self.early_crash_rate:
                    node.writing = True  # crashes at the next fault step, never stored
                    self._trace("stuck writing", node.node_id)
                    return
            self.checks.persist(node, ready)
            if self.witness is not None:
                self.witness.member_persisted(node.storage, ready)
            for to, message in ready.messages:
                self._send(node.node_id, to, message)
            if ready.snapshot is not None:
                node.machine.restore(ready.snapshot.data)
                self.checks.installed(node, ready.snapshot.meta.index)
                self._settle_after_snapshot(node)
            for entry in ready.committed_entries:
                verdict = self.checks.apply(node, entry)
                if verdict is not None:
                    self._on_applied(node, entry, verdict)
            for outcome in ready.proposal_outcomes:
                self._on_outcome(node, outcome)
            for read_state in ready.read_states:
                read = self.reads.get(read_state.request_id)
                if read is not None and read.node == node.node_id:
                    if read_state.error:
                        del self.reads[read.request_id]
                    else:
                        read.index = read_state.index
            core.advance(ready)
        self._check_new_leader(node, core)
        if self.witness is not None:
            self.witness.member_processed(node)
        if self.reads:
            self._serve_reads(node)

    def _check_new_leader(self, node: SimNode, core: RaftCore) -> None:
        if core.role is Role.LEADER and node.checked_leader_term != core.term:
            node.checked_leader_term = core.term
            self.checks.leader(node)

    def _serve_reads(self, node: SimNode) -> None:
        for read in list(self.reads.values()):
            if read.node != node.node_id or read.index < 0:
                continue
            if node.machine.index >= read.index:
                del self.reads[read.request_id]
                self.reads_checked += 1
                for client_id, serial in read.acked_before.items():
                    if node.machine.sessions.get(client_id, 0) < serial:
                        self._fail(
                            f"stale read {read.request_id} on {node.node_id} at index "
                            f"{read.index}: misses acknowledged {client_id}#{serial}"
                        )

    def _on_outcome(self, node: SimNode, outcome: ProposalOutcome) -> None:
        """A failed proposal is retried; a committed one waits for its node to apply it
        (the session rule decides whether it takes effect there)."""
        client = self.client_by_id.get(outcome.client_id)
        if client is None or client.node != node.node_id or outcome.serial not in client.pending:
            return
        if not outcome.committed:
            self._hold(client, 1)

    def _on_applied(self, node: SimNode, entry: Entry, verdict: Verdict) -> None:
        """What the client's node applied tells it what happened, as in the runtime: applied
        or a duplicate of an applied one (acknowledged), or out of order (resume)."""
        client = self.client_by_id.get(entry.client_id)
        if client is None or client.node != node.node_id or entry.serial not in client.pending:
            return
        if verdict == "out of order":
            self._resume(client, entry.serial, node.machine.sessions.get(client.client_id, 0))
        else:
            self._ack(client, entry.serial, entry.index)

    def _settle_after_snapshot(self, node: SimNode) -> None:
        """Pending proposals a snapshot covers never pass through apply here: acknowledge
        them (a client's serials at or below its last applied one are applied)."""
        for client in self.clients:
            if client.node == node.node_id:
                last = node.machine.sessions.get(client.client_id, 0)
                for serial in [s for s in client.pending if s <= last]:
                    self._ack(client, serial, node.machine.index)

    def _ack(self, client: SimClient, serial: int, index: int) -> None:
        if (client.client_id, serial) not in self.checks.applied_at:
            self._fail(f"acknowledged {client.client_id}#{serial}, which was never applied")
        del client.pending[serial]
        self.acked[client.client_id] = max(self.acked.get(client.client_id, 0), serial)
        self.acked_count += 1
        self._trace("ack", client.client_id, serial, index)

    def _hold(self, client: SimClient, delay: int) -> None:
        if not client.held:
            client.held = True
            client.retry_at = self.now + delay

    def _resume(self, client: SimClient, serial: int, resume_after: int) -> None:
        """``serial`` applied out of order (a proposal before it is missing): send every
        pending one after the client's last applied serial, ``resume_after``, again."""
        if client.resumed[0] == resume_after and serial <= client.resumed[1]:
            return  # the answer to a copy sent before that resend
        serials = [s for s in client.pending if s > resume_after]
        if serials:
            client.resumed = (resume_after, serials[-1])
            self._trace("resume", client.client_id, resume_after)
            self._submit(client, serials)

    def _send(self, sender: NodeId, to: NodeId, message: Message) -> None:
        if self.witness is not None and not self.witness.sent(sender, to, message):
            return
        if self.forget is not None and not self.forget.sent(sender, to, message):
            return
        self.network.send(sender, to, message, self.faults_on)

    def _deliver_due(self) -> None:
        for sender, to, message in self.network.due():
            if self.faults_on and (sender, to) in self.network.blocked:
                continue
            node = self.nodes.get(to)
            if node is None:
                if self.witness is not None:
                    self._trace_message(sender, to, message)
                    self.witness.deliver(sender, message)
                continue
            if node.core is None:
                continue
            self._trace_message(sender, to, message)
            node.core.step(message)
            self._process(node)
            if (
                self.faults_on
                and isinstance(message, RequestVote)
                and self.rng.random() < self.reboot_rate
            ):
                self._reboot(node)

    def _reboot(self, node: SimNode) -> None:
        """Restart at once from storage: only what was persisted survives."""
        self._crash(node, torn=False)
        self._start(node)
        self._trace("reboot", node.node_id)

    # --- faults and workload -----------------------------------------------------------

    def _leader(self) -> SimNode | None:
        best = None
        for node in self.nodes.values():
            core = node.core
            if (
                core is not None
                and core.role is Role.LEADER
                and (
                    best is None or core.term > best.core.term  # type: ignore[union-attr]
                )
            ):
                best = node
        return best

    def _faults(self) -> None:
        rng = self.rng
        self._crash_writing()
        network = self.network
        if network.partition_until and self.now >= network.partition_until:
            network.heal()
            self._trace("heal partition")
        if not network.partition_until and rng.random() < self.partition_rate:
            leader = self._leader()
            leader_id = leader.node_id if leader is not None else None
            network.partition(self._ids(), leader_id, self.now)
        if rng.random() < self.crash_rate:
            up = [n for n in self.nodes.values() if n.core is not None]
            if up:
                self._crash(rng.choice(up), torn=rng.random() < 0.5)
        for node in self.nodes.values():
            if node.core is None and self.now >= node.down_until:
                self._start(node)
                self._trace("restart", node.node_id)
        if self.witness is not None:
            self.witness.faults()
        leader = self._leader()
        if leader is not None and leader.core is not None:
            if rng.random() < self.churn_rate:
                self._churn(leader)
            if rng.random() < self.transfer_rate:
                voters = sorted(leader.core.configuration.voters - {leader.node_id})
                if voters:
                    target = rng.choice(voters)
                    result = leader.core.transfer_leadership(target)
                    self._trace("transfer", leader.node_id, target, result.status.value)
                    self._process(leader)

    def _churn(self, leader: SimNode) -> None:
        if self.forget is not None:
            return  # two voters throughout, for the forced change at the end
        if self.witness is not None and self.witness.churn(leader):
            return
        rng = self.rng
        core = leader.core
        assert core is not None
        configuration = core.configuration
        choice = rng.random()
        if choice < 0.35:
            candidates = sorted(set(self.nodes) - configuration.members)
            if not candidates:
                return
            target = rng.choice(candidates)
            result = core.add_learner(target)
            action = "add_learner"
        elif choice < 0.7:
            if not configuration.learners:
                return
            target = rng.choice(sorted(configuration.learners))
            result = core.promote(target)
            action = "promote"
        else:
            if len(configuration.voters) <= 1 and not configuration.learners:
                return
            target = rng.choice(sorted(configuration.members))
            result = core.remove(target)
            action = "remove"
        self._trace(action, leader.node_id, target, result.error or result.index)
        self._process(leader)

    def _submit(self, client: SimClient, serials: list[int]) -> None:
        """Propose ``serials`` (ascending) through the client's node; a refusal holds the
        rest (they go again, in order, with every pending one)."""
        node = self.nodes[client.node]
        core = node.core
        if core is None:
            return
        client.sent_at = self.now
        for serial in serials:
            payload = client.pending.get(serial)
            if payload is None:
                continue
            data = client_command(client.prev_serial(serial), payload)
            result = core.propose(data, client.client_id, serial)
            self._trace("propose", client.client_id, serial, node.node_id, result.status.value)
            if result.status is RequestStatus.REJECTED:
                self._hold(client, 2)
                break
        self._process(node)

    def _clients(self, proposing: bool) -> None:
        rng, client_rng = self.rng, self.client_rng
        up = [n for n in self.nodes.values() if n.core is not None]
        if not up:
            return
        give_up = self.now - 3 * self.settings.election_timeout_ticks
        for read in [r for r in self.reads.values() if r.started < give_up]:
            del self.reads[read.request_id]  # e.g. on a removed node that never catches up
        stale = 3 * self.settings.election_timeout_ticks
        for client in self.clients:
            resend = (client.held and self.now >= client.retry_at) or (
                client.pending and self.now - client.sent_at > stale
            )
            if resend or not client.node:
                # Like a runtime whose proposals stall: try again in order; a client whose
                # node cannot reach a leader may move to another node (a new link, same run).
                leader = self._leader()
                node = (
                    leader
                    if leader is not None and client_rng.random() < 0.6
                    else client_rng.choice(up)
                )
                if not client.node or (
                    resend and (client_rng.random() < 0.3 or self._removed(client.node))
                ):
                    client.node = node.node_id
                client.held = False
                client.resumed = (-1, -1)
                if client.pending:
                    self._submit(client, list(client.pending))
            if not proposing or len(client.pending) >= client.window or client_rng.random() < 0.3:
                continue
            client.serial += 1
            client.pending[client.serial] = f"{client.client_id}-{client.serial}".encode()
            if not client.held:
                self._submit(client, [client.serial])
        if proposing and rng.random() < self.read_rate:
            node = rng.choice(up)
            assert node.core is not None
            request_id = self.next_read_id
            self.next_read_id += 1
            self.reads[request_id] = SimRead(request_id, node.node_id, dict(self.acked), self.now)
            result = node.core.read_index(request_id)
            if result.status is RequestStatus.REJECTED:
                del self.reads[request_id]
            self._process(node)

    def _removed(self, node_id: NodeId) -> bool:
        """Removed by the current leader (it may never learn so: the leader stops talking
        to it), as a real front end would notice and move on."""
        leader = self._leader()
        return (
            leader is not None
            and leader.core is not None
            and node_id not in leader.core.configuration.members | {leader.node_id}
        )

    def _compactions(self) -> None:
        for node in self.nodes.values():
            core = node.core
            if core is None or self.rng.random() >= self.compact_rate:
                continue
            applied = core.log.applied
            if applied - core.log.snapshot_index >= 4 and node.machine.index == applied:
                core.compact(applied, node.machine.snapshot())
                self._process(node)

    # --- driving -----------------------------------------------------------------------

    def _tick(self) -> None:
        self.now += 1
        order = list(self.nodes.values())
        self.rng.shuffle(order)
        for node in order:
            core = node.core
            if core is not None:
                quiet = core.ticks_until_due() > 1 and not node.writing and not core.has_ready()
                before = (core.role, core.term, core.leader) if quiet else None
                core.tick()
                if quiet and (core.has_ready() or before != (core.role, core.term, core.leader)):
                    self._fail(f"{node.node_id}: a tick before ticks_until_due() acted")
                self._process(node)
        if self.witness is not None:
            self.witness.tick()
        for _ in range(self.settings.steps_per_tick):
            self.network.step_time += 1
            self._deliver_due()

    def _ids(self) -> list[NodeId]:
        """Every node's id, the witness's included."""
        return list(self.nodes) + (self.witness.ids if self.witness is not None else [])

    def _setup(self) -> None:
        """Bootstrap the first node, then add and promote the initial voters."""
        first = self.nodes[self.voter_ids[0]]
        assert first.core is not None
        first.core.bootstrap()
        self._process(first)
        pending = list(self.voter_ids[1:])
        for _ in range(SETUP_TICKS_PER_CHANGE * max(1, len(pending))):
            if not pending:
                break
            leader = self._leader()
            if leader is not None and leader.core is not None:
                target = pending[0]
                configuration = leader.core.configuration
                if target in configuration.voters:
                    pending.pop(0)
                    continue
                if target in configuration.learners:
                    if _caught_up(leader.core, target):
                        leader.core.promote(target)
                else:
                    leader.core.add_learner(target)
                self._process(leader)
            self._tick()
        if pending:
            self._fail(f"setup could not add {pending}")
        if self.witness is not None and len(self.voter_ids) % 2 == 0:
            self.witness.add_to_configuration(SETUP_TICKS_PER_CHANGE)

    def _settled(self) -> bool:
        leader = self._leader()
        if leader is None or leader.core is None:
            return False
        if any(client.outstanding for client in self.clients) or self.reads:
            return False
        core = leader.core
        commit = core.log.commit
        if core.log.term(commit) != core.term:
            return False
        for member in core.configuration.members | {leader.node_id}:
            if member not in self.nodes:
                continue  # the witness: it applies nothing
            other = self.nodes[member].core
            if other is None or other.log.applied < commit:
                return False
        return True

    def run(self) -> SimResult:
        violations: list[str] = []
        try:
            self._setup()
            self.early_crashes_on = True
            for _ in range(self.settings.fault_ticks):
                self._faults()
                self._clients(proposing=True)
                self._compactions()
                self._tick()
            self.faults_on = self.early_crashes_on = False
            self._crash_writing()
            self.network.blocked.clear()
            self._trace("faults stop")
            for node in self.nodes.values():
                if node.core is None:
                    self._start(node)
            if self.witness is not None and self.witness.node.core is None:
                self.witness.start()
            for _ in range(self.settings.heal_ticks):
                if self._settled():
                    break
                self._clients(proposing=False)
                self._tick()
            else:
                self._fail(self._liveness_report())
            self._final_checks()
            if self.witness is not None and self.witness.mode == "pair":
                self.witness.headline()
            if self.forget is not None:
                self.forget.headline()
        except Violation as violation:
            violations.append(str(violation))
        return SimResult(
            seed=self.seed,
            nodes=self.node_count,
            violations=violations,
            trace=[self._format(event) for event in self.trace],
            ticks=self.now,
            messages=self.network.messages,
            acked=self.acked_count,
            reads=self.reads_checked,
            witness=self.witness.mode if self.witness is not None else "",
            headline_ticks=self.witness.headline_ticks if self.witness is not None else -1,
            forgotten=self.forget.forgotten if self.forget is not None else "",
        )

    def _liveness_report(self) -> str:
        parts = [f"liveness: not settled {self.settings.heal_ticks} ticks after faults stopped"]
        parts.extend(self._statuses())
        pending = [(c.client_id, list(c.pending)) for c in self.clients if c.outstanding]
        parts.append(f"pending proposals: {pending}; pending reads: {len(self.reads)}")
        return "\n  ".join(parts)

    def _statuses(self) -> list[str]:
        """One line per running node: role, term, log positions and configuration."""
        parts = []
        for node in self.nodes.values():
            core = node.core
            if core is not None:
                status = core.status()
                parts.append(
                    f"{node.node_id}: {status.role.value} term={status.term} "
                    f"leader={status.leader or '-'} commit={status.commit_index} "
                    f"applied={status.applied_index} last={status.last_index} "
                    f"voters={sorted(status.configuration.voters)} "
                    f"learners={sorted(status.configuration.learners)}"
                    f" witnesses={sorted(status.configuration.witnesses)}"
                )
        if self.witness is not None:
            parts.append(self.witness.status())
        return parts

    def _final_checks(self) -> None:
        leader = self._leader()
        assert leader is not None and leader.core is not None
        for member in leader.core.configuration.members:
            if member not in self.nodes:
                continue  # the witness
            machine = self.nodes[member].machine
            for client_id, serial in self.acked.items():
                if machine.sessions.get(client_id, 0) < serial:
                    self._fail(f"acknowledged {client_id}#{serial} never applied on {member}")

    # --- trace -------------------------------------------------------------------------

    def _trace(self, *event: object) -> None:
        self.trace.append((self.now, *event))

    def _trace_message(self, sender: NodeId, to: NodeId, message: Message) -> None:
        self.trace.append((self.now, sender, to, message))

    @staticmethod
    def _format(event: tuple) -> str:
        now, *rest = event
        if len(rest) == 3 and isinstance(rest[2], Message.__args__):  # type: ignore[attr-defined]
            sender, to, message = rest
            return f"t={now} {sender}->{to} {_describe(message)}"
        return f"t={now} " + " ".join(str(part) for part in rest)


def _caught_up(core: RaftCore, learner: NodeId) -> bool:
    """Has ``learner`` every committed entry? Promoting it earlier is allowed, but a voter
    with an empty log makes each leader's term hang on its catching up; the node's own
    membership plan waits for this too."""
    status = core.status()
    return any(
        peer.node_id == learner and peer.match >= status.commit_index for peer in status.progress
    )


def _describe(message: Message) -> str:
    if isinstance(message, AppendEntries):
        span = (
            f"{message.entries[0].index}..{message.entries[-1].index}" if message.entries else "-"
        )
        return (
            f"AppendEntries(term={message.term} prev={message.prev_log_index}/"
            f"{message.prev_log_term} entries={span} commit={message.leader_commit})"
        )
    if isinstance(message, InstallSnapshot):
        return (
            f"InstallSnapshot(term={message.term} index={message.last_included_index} "
            f"offset={message.offset} bytes={len(message.data)} done={message.done})"
        )
    return repr(message)
