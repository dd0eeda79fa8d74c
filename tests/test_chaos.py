"""Chaos: real node processes under traffic, killed, paused, partitioned, joining, leaving.

Five ``raftchat join --headless`` processes (plus newcomers) on one channel, three of
them sending continuously, while a seeded schedule (tests/chaos_schedule.py) SIGKILLs
and restarts nodes with their data dirs, SIGSTOPs and SIGCONTs them, cuts the network
between groups of them (through a faults file each, read by tests/fault_node.py), adds
new nodes and makes others quit gracefully. Afterwards everything is healed; once every
sender's messages are acknowledged and an end marker reached every node, a fresh node
joins to print the whole committed history, and tests/chaos_history.py checks what
every node printed against it.

CI runs the default, bounded configuration; by hand::

    RAFTCHAT_CHAOS_SEED=1234 RAFTCHAT_CHAOS_SECONDS=600 pytest -m chaos -s tests/test_chaos.py

The seed is printed at the start and, with the schedule, on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from chaos_history import NodeHistory, check_history, message_text
from chaos_schedule import SECONDS_ENV, ChaosSettings, Step, plan
from fault_node import FAULTS_FILE_ENV, through_launcher
from support import nodes
from support.nodes import Cluster, NodeProcess

from raftchat.bench import process
from raftchat.net.signaling.server import RunningServer

BUDGET_OVERHEAD_S = 240
CHAOS_TIMEOUT_S = int(float(os.environ.get(SECONDS_ENV) or 60)) + BUDGET_OVERHEAD_S

INITIAL_NODES = 5
SENDERS = ("n0", "n1", "n2")
MIN_MEMBERS = 4
"""A node leaves only while more than this many are running."""
MAX_MEMBERS = 7
"""A node joins only while fewer than this many are running."""
CONVERGENCE_TIMEOUT = 90.0
END_MARKER = "chaos-end"
CONFIG = {
    "compaction_threshold": 200,
    "catchup_entries": 50,
    "history_window": 100_000,
    "member_timeout_s": 4,
}
"""Frequent snapshots (restarted and new nodes catch up from them); a member silent for
4 s is removed (long partitions remove and re-add members); the whole history stays in
snapshots, so the auditor at the end sees every message."""


class ChaosRun:
    """Runs one schedule against a cluster and records what it did."""

    def __init__(self, cluster: Cluster, settings: ChaosSettings) -> None:
        self.cluster = cluster
        self.settings = settings
        self.steps = plan(settings.seed, settings.seconds)
        self.actions: list[str] = []
        self.sent: dict[str, set[str]] = {name: set() for name in SENDERS}
        self.sent_per_run: dict[tuple[str, int], int] = {}
        self.next_seq = dict.fromkeys(SENDERS, 0)
        self.left: set[str] = set()
        self.paused: set[NodeProcess] = set()
        self.joined = 0
        self.problems: list[str] = []
        self._loop = asyncio.get_running_loop()
        self._started_at = self._loop.time()

    # --- nodes ----------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.actions.append(f"{self._loop.time() - self._started_at:7.2f}s {text}")

    def faults_path(self, name: str) -> Path:
        return self.cluster.root / f"{name}.faults.json"

    async def add_node(self, name: str) -> NodeProcess:
        return await self.cluster.add(
            name, extra_env={FAULTS_FILE_ENV: str(self.faults_path(name))}
        )

    def node(self, name: str) -> NodeProcess:
        return next(node for node in self.cluster.nodes if node.name == name)

    def members(self) -> list[NodeProcess]:
        """Running nodes that have not left, by name."""
        return sorted(
            (n for n in self.cluster.running() if n.name not in self.left), key=lambda n: n.name
        )

    def leader(self) -> NodeProcess | None:
        """The node most running members name as leader (None if none is named)."""
        votes: dict[str, int] = {}
        for node in self.members():
            leader = node.status["leader"] if node.status else None
            if leader:
                votes[leader] = votes.get(leader, 0) + 1
        if not votes:
            return None
        leader_id = max(votes, key=lambda k: votes[k])
        return next((n for n in self.members() if n.node_id == leader_id), None)

    def set_faults(self, node: NodeProcess, dropped: list[str]) -> None:
        path = self.faults_path(node.name)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"drop": sorted(dropped)}))
        os.replace(temporary, path)

    # --- traffic --------------------------------------------------------------------

    async def traffic(self) -> None:
        """Each sender gets ``rate`` messages a second while it runs (paced, not synced)."""
        interval = 1 / self.settings.rate
        while True:
            for name in SENDERS:
                node = self.node(name)
                if not node.running:
                    continue
                text = message_text(name, self.next_seq[name])
                try:
                    node.send(text)
                except (OSError, RuntimeError):
                    continue  # killed between the check and the write
                self.next_seq[name] += 1
                self.sent[name].add(text)
                run = (name, len(node.lifetimes))
                self.sent_per_run[run] = self.sent_per_run.get(run, 0) + 1
            await asyncio.sleep(interval)

    def all_acknowledged(self, node: NodeProcess) -> bool:
        return len(node.acks()) >= self.sent_per_run.get((node.name, len(node.lifetimes)), 0)

    # --- faults ---------------------------------------------------------------------

    def pick(self, candidates: list[NodeProcess], step: Step) -> NodeProcess:
        return candidates[step.pick % len(candidates)]

    async def run_step(self, step: Step) -> None:
        members = self.members()
        kind = step.kind
        if kind == "join" and len(members) >= MAX_MEMBERS:
            kind = "leave"
        elif kind == "leave" and len(members) <= MIN_MEMBERS:
            kind = "join"
        match kind:
            case "kill" | "kill_leader":
                leader = self.leader() if kind == "kill_leader" else None
                await self.kill_and_restart(leader or self.pick(members, step), step.hold_s)
            case "pause":
                await self.pause(self.pick(members, step), step.hold_s)
            case "partition":
                start = step.pick % len(members)
                cut = [members[(start + i) % len(members)] for i in range(step.minority)]
                await self.partition(cut, step.hold_s)
            case "isolate_leader":
                await self.partition([self.leader() or self.pick(members, step)], step.hold_s)
            case "join":
                self.joined += 1
                name = f"j{self.joined}"
                self.note(f"join {name}")
                await self.add_node(name)
            case "leave":
                candidates = [n for n in members if n.name not in SENDERS]
                if candidates:
                    await self.leave(self.pick(candidates, step))

    async def kill_and_restart(self, node: NodeProcess, down_s: float) -> None:
        self.note(f"SIGKILL {node.name} ({node.node_id}) for {down_s:.2f}s")
        node.kill()
        await node.wait_exit()
        await asyncio.sleep(down_s)  # pacing the schedule, not synchronisation
        await node.start()
        await node.wait_for(lambda n: n.status, 30, "the first status after a restart")
        self.note(f"restarted {node.name}")

    async def pause(self, node: NodeProcess, pause_s: float) -> None:
        assert node.process is not None
        self.note(f"SIGSTOP {node.name} ({node.node_id}) for {pause_s:.2f}s")
        node.process.send_signal(signal.SIGSTOP)
        self.paused.add(node)
        try:
            await asyncio.sleep(pause_s)
        finally:
            self.resume(node)

    def resume(self, node: NodeProcess) -> None:
        if node.running and node.process is not None:
            node.process.send_signal(signal.SIGCONT)
        self.paused.discard(node)

    async def partition(self, cut: list[NodeProcess], hold_s: float) -> None:
        rest = [n for n in self.members() if n not in cut]
        cut_ids = [n.node_id for n in cut if n.node_id]
        rest_ids = [n.node_id for n in rest if n.node_id]
        self.note(f"partition {[n.name for n in cut]} | {[n.name for n in rest]} for {hold_s:.2f}s")
        for node in cut:
            self.set_faults(node, rest_ids)
        for node in rest:
            self.set_faults(node, cut_ids)
        try:
            await asyncio.sleep(hold_s)
        finally:
            self.heal()

    def heal(self) -> None:
        for node in self.cluster.nodes:
            if self.faults_path(node.name).exists():
                self.set_faults(node, [])

    async def leave(self, node: NodeProcess) -> None:
        self.note(f"{node.name} ({node.node_id}) quits")
        node.quit()
        self.left.add(node.name)
        code = await node.wait_exit(60)
        if code != 0:
            self.problems.append(f"{node.name} quit with exit status {code}")
        self.note(f"{node.name} left (exit status {code})")

    # --- the run --------------------------------------------------------------------

    async def run(self) -> None:
        for i in range(INITIAL_NODES):
            node = await self.add_node(f"n{i}")
            await node.wait_for(NodeProcess.is_voter, 60, "becoming a voter")
        self.note(f"{INITIAL_NODES} voters; faults begin")
        faults_began = self._loop.time()
        traffic = asyncio.create_task(self.traffic())
        try:
            for step in self.steps:
                delay = step.at_s - (self._loop.time() - faults_began)
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the schedule
                await self.run_step(step)
        finally:
            for node in list(self.paused):
                self.resume(node)
            self.heal()
            traffic.cancel()
        self.note("healed; traffic stopped; waiting for convergence")
        await self.converge()

    async def converge(self) -> NodeProcess:
        senders = [self.node(name) for name in SENDERS]
        await self.cluster.wait_all(
            self.all_acknowledged, "every message sent acknowledged", senders, CONVERGENCE_TIMEOUT
        )
        senders[0].send(END_MARKER)
        await self.cluster.wait_all(
            lambda n: END_MARKER in n.texts(), "the end marker", self.members(), CONVERGENCE_TIMEOUT
        )
        auditor = await self.cluster.add("auditor")
        await auditor.wait_for(
            lambda n: END_MARKER in n.texts(), CONVERGENCE_TIMEOUT, "the whole history"
        )
        self.note(f"converged; auditor saw {len(auditor.messages())} messages")
        return auditor

    def check(self) -> list[str]:
        auditor = self.node("auditor")
        histories = [
            NodeHistory(node.name, node.node_id, node.lifetimes)
            for node in self.cluster.nodes
            if node.node_id
        ]
        problems = list(self.problems)
        problems += check_history(
            histories, auditor.messages(), self.sent, extra_texts=frozenset({END_MARKER})
        )
        for node in self.cluster.nodes:
            if node.bad_lines:
                problems.append(f"{node.name} printed non-JSON lines: {node.bad_lines[:3]}")
        acks = sum(e["event"] == "ack" for n in self.cluster.nodes for r in n.lifetimes for e in r)
        self.note(f"checked: {acks} acknowledgements, {len(problems)} problems")
        return problems

    def report(self, problems: list[str]) -> str:
        lines = [
            f"chaos run failed; replay with {self.settings.replay_hint()}",
            "planned schedule:",
            *(f"  {step}" for step in self.steps),
            "what happened:",
            *(f"  {action}" for action in self.actions),
            f"problems ({len(problems)}):",
            *(f"  {problem}" for problem in problems[:40]),
            self.cluster.report(),
            f"replay with {self.settings.replay_hint()}",
        ]
        return "\n".join(lines)


@pytest.fixture
def nodes_through_fault_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the cluster's node processes through tests/fault_node.py (which reads the
    faults file) instead of ``python -m raftchat``."""
    join_command = process.headless_join_command
    monkeypatch.setattr(
        process,
        "headless_join_command",
        lambda *args, **kwargs: through_launcher(join_command(*args, **kwargs)),
    )


@pytest.mark.chaos
@pytest.mark.timeout(CHAOS_TIMEOUT_S)
@pytest.mark.usefixtures("nodes_through_fault_launcher", "node_webrtc")
@pytest.mark.parametrize("node_webrtc", nodes.engines_long_except("wrtc"), indirect=True)
async def test_history_survives_kills_pauses_partitions_joins_and_leaves(
    tmp_path: Path, server: RunningServer
) -> None:
    settings = ChaosSettings.from_env()
    print(f"chaos: {settings.replay_hint()}", flush=True)
    cluster = Cluster(tmp_path, server.url, channel="chaos")
    cluster.configure(**CONFIG)
    run = ChaosRun(cluster, settings)
    try:
        try:
            await run.run()
        except AssertionError as error:
            raise AssertionError(f"{error}\n{run.report([])}") from None
        problems = run.check()
        assert not problems, run.report(problems)
        print("\n".join(run.actions), flush=True)
    finally:
        for node in list(run.paused):
            run.resume(node)
        await cluster.close()


# --- the checker itself (fast, not chaos-marked) ----------------------------------------


def _message(index: int, text: str, node_id: str, serial: int) -> dict:
    return {"event": "message", "index": index, "id": f"{node_id}:{serial}", "text": text}


def _good_history() -> tuple[list[dict], list[NodeHistory], dict[str, set[str]]]:
    reference = [
        _message(2, "a#0", "ida", 10),
        _message(3, "b#0", "idb", 20),
        _message(5, "a#1", "ida", 11),
    ]
    ack = {"event": "ack", "id": "ida:10", "index": 2}
    nodes = [
        NodeHistory("a", "ida", [[reference[0], ack, reference[1]], [reference[2]]]),
        NodeHistory("b", "idb", [reference]),
    ]
    return reference, nodes, {"a": {"a#0", "a#1", "a#2"}, "b": {"b#0"}}


def test_checker_accepts_a_consistent_history() -> None:
    reference, nodes, sent = _good_history()
    assert check_history(nodes, reference, sent) == []


def test_checker_finds_reordered_duplicated_lost_and_diverging_messages() -> None:
    reference, _, sent = _good_history()
    swapped = [
        _message(2, "a#1", "ida", 11),
        _message(3, "b#0", "idb", 20),
        _message(5, "a#0", "ida", 12),
    ]
    assert any("out of sending order" in p for p in check_history([], swapped, sent))
    doubled = [*reference, _message(6, "b#0", "idb", 21)]
    assert any("committed twice" in p for p in check_history([], doubled, sent))
    lost_ack = {"event": "ack", "id": "ida:11", "index": 4}
    losing = [NodeHistory("a", "ida", [[lost_ack]])]
    assert any("not in the log" in p for p in check_history(losing, reference, sent))
    diverging = [NodeHistory("b", "idb", [[_message(3, "a#2", "ida", 12)]])]
    assert any("the reference has" in p for p in check_history(diverging, reference, sent))
    backwards = [NodeHistory("b", "idb", [[reference[1], reference[0]]])]
    assert any("went back" in p for p in check_history(backwards, reference, sent))
    invented = [*reference, _message(7, "c#0", "idc", 1)]
    assert any("never sent" in p for p in check_history([], invented, sent))
