"""The benchmark scenarios. Each measures on the benchmark's own clock and returns a
dict of results that :mod:`~raftchat.bench.report` turns into JSON and a table.

Times are taken when the benchmark reads a node's stdout line (``perf_counter``), so
"committed" means the sender printed its ack and "delivered" means the last node
printed the message.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from raftchat.bench.cluster import Cluster, ClusterSettings
from raftchat.bench.errors import BenchError
from raftchat.bench.node_output import TOKEN_PREFIX
from raftchat.bench.options import BenchOptions
from raftchat.bench.process import NodeProcess
from raftchat.bench.profiling import Profile
from raftchat.bench.stats import rate, summarize

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
Results = dict[str, Any]

WARMUP_MESSAGES = 200
"""Sent before each throughput measurement so link setup and caches are not timed."""
LATENCY_WARMUP = 5
SNAPSHOT_PATH_FRACTION = 5
"""The snapshot join uses compaction_threshold = history / this, so the log is compacted
several times before the newcomer arrives and only a snapshot can bring it up to date."""


@dataclass
class BenchContext:
    """Shared by the scenarios of one run: the signaling server, temp root, sizes."""

    server_url: str
    root: Path
    options: BenchOptions
    progress: Progress
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    clusters: list[Cluster] = field(default_factory=list)
    main: Cluster | None = None
    _tokens: itertools.count = field(default_factory=lambda: itertools.count(1))
    _channels: itertools.count = field(default_factory=lambda: itertools.count(1))

    def message(self) -> tuple[str, str]:
        """A fresh (token, text) pair; the text is exactly ``message_bytes`` long."""
        token = f"{TOKEN_PREFIX}{self.run_id}-{next(self._tokens)}"
        size = self.options.message_bytes
        return token, (token + " " + "x" * size)[:size]

    def messages(self, count: int) -> tuple[list[str], list[str]]:
        pairs = [self.message() for _ in range(count)]
        return [token for token, _ in pairs], [text for _, text in pairs]

    async def new_cluster(self, purpose: str, settings: ClusterSettings | None = None) -> Cluster:
        number = next(self._channels)
        channel = f"bench-{self.run_id}-{number}-{purpose}"
        cluster = Cluster(
            self.root / channel,
            self.server_url,
            channel,
            replace(
                settings or ClusterSettings(),
                debug_nodes=self.options.debug_nodes,
                keep_transcripts=self.options.keep_data,
                webrtc=self.options.webrtc,
            ),
        )
        self.clusters.append(cluster)
        return cluster

    async def main_cluster(self) -> Cluster:
        """The channel of ``--nodes`` nodes the first scenarios share (started once)."""
        if self.main is None or not self.main.running():
            self.main = await self.new_cluster("main")
            self.progress(f"starting a channel of {self.options.nodes} nodes")
            started = time.perf_counter()
            formed = await self.main.start(self.options.nodes, self.options.timeout_s)
            self.progress(f"channel formed in {formed - started:.2f} s")
        return self.main


# --- throughput -----------------------------------------------------------------------


async def _burst(ctx: BenchContext, cluster: Cluster, senders: dict[NodeProcess, int]) -> Results:
    """Every sender writes its share of messages at once (pipelined); times until each
    sender has printed all its own messages (a node prints a message once it is
    committed and applied), and until every live node has printed every message.

    Acks are counted, not waited for: a missing ack is reported (``acks_missing``)."""
    live = cluster.running()
    total = sum(senders.values())
    own_before = {node: node.events.own_shown for node in senders}
    acked_before = {node: len(node.events.acked) for node in senders}
    shown_before = {node: len(node.events.shown) for node in live}
    batches = {node: ctx.messages(count)[1] for node, count in senders.items()}
    term_before = max(node.term for node in live)

    def committed() -> bool:
        return all(n.events.own_shown >= own_before[n] + c for n, c in senders.items())

    def delivered() -> bool:
        return all(len(n.events.shown) >= shown_before[n] + total for n in live)

    timeout = max(ctx.options.timeout_s / 2, total / 250)
    send_times = await asyncio.gather(*(node.send_lines(batches[node]) for node in senders))
    started = min(send_times)
    try:
        committed_at = await cluster.wait_until(committed, timeout, "commit of the burst", live)
        delivered_at = await cluster.wait_until(delivered, timeout, "delivery of the burst", live)
    except BenchError as error:
        counts = ", ".join(
            f"{node.name} ({node.state}): "
            f"{node.events.own_shown - own_before.get(node, node.events.own_shown)}"
            f"/{senders.get(node, 0)} own committed, "
            f"{len(node.events.acked) - acked_before.get(node, len(node.events.acked))} acked, "
            f"{len(node.events.shown) - shown_before[node]}/{total} shown"
            for node in live
        )
        raise BenchError(f"{error} ({counts})") from None
    commit_s, deliver_s = committed_at - started, delivered_at - started
    acked = sum(len(node.events.acked) - acked_before[node] for node in senders)
    return {
        "messages": total,
        "senders": len(senders),
        "commit_s": round(commit_s, 3),
        "msgs_per_s": round(rate(total, commit_s), 1),
        "delivered_s": round(deliver_s, 3),
        "delivered_msgs_per_s": round(rate(total, deliver_s), 1),
        "acks_missing": total - acked,
        "elections": max(node.term for node in cluster.running()) - term_before,
    }


async def run_throughput(ctx: BenchContext) -> Results:
    cluster = await ctx.main_cluster()
    count = ctx.options.messages
    leader = cluster.current_leader()
    await _burst(ctx, cluster, {leader: min(WARMUP_MESSAGES, count)})
    profiles = await _start_profiles(ctx, cluster)
    cpu_before = {node: node.cpu_seconds() for node in cluster.running()}
    window_started = time.perf_counter()
    try:
        ctx.progress(
            f"throughput: {count} messages of {ctx.options.message_bytes} B from the leader"
        )
        one = await _burst(ctx, cluster, {leader: count})
        one["sender"] = "leader"
        ctx.progress(f"  {one['msgs_per_s']:.0f} msg/s committed")
        live = cluster.running()
        share = max(1, count // len(live))
        ctx.progress(f"throughput: {share} messages from each of {len(live)} nodes at once")
        every = await _burst(ctx, cluster, dict.fromkeys(live, share))
        every["sender"] = "all"
        ctx.progress(f"  {every['msgs_per_s']:.0f} msg/s committed")
    finally:
        window = time.perf_counter() - window_started
        profiled = {profile.label: await profile.stop() for profile in profiles}
    cpu = {
        ("leader" if node is leader else node.name): round(
            100 * (node.cpu_seconds() - before) / window, 1
        )
        for node, before in cpu_before.items()
    }
    result: Results = {
        "throughput_msgs_per_s": every["msgs_per_s"],
        "throughput": {"one_sender": one, "all_senders": every, "cpu_percent": cpu},
    }
    if profiles:
        result["profile"] = profiled
        ctx.progress(f"profiles written to {ctx.options.profile_dir}")
    return result


async def _start_profiles(ctx: BenchContext, cluster: Cluster) -> list[Profile]:
    if ctx.options.profile_dir is None:
        return []
    leader = cluster.current_leader()
    targets = [("leader", leader)] + [("follower", node) for node in cluster.followers()[:1]]
    directory = ctx.options.profile_dir
    return [
        await Profile.start(label, node.pid, directory / f"throughput-{label}.txt")
        for label, node in targets
    ]


# --- latency ----------------------------------------------------------------------------


async def _send_one(
    ctx: BenchContext, cluster: Cluster, sender: NodeProcess
) -> tuple[float, float]:
    """Send one message and wait for it: (send -> ack on the sender, send -> shown on the
    last node), in seconds."""
    token, text = ctx.message()
    live = cluster.running()
    sent_at = await sender.send_lines([text])
    timeout = ctx.options.timeout_s
    acked_at = await cluster.wait_until(
        lambda: token in sender.events.acked, timeout, f"ack of {token}", live
    )
    await cluster.wait_until(
        lambda: all(token in node.events.shown for node in live), timeout, f"{token} shown", live
    )
    delivered_at = max(node.events.shown[token] for node in live)
    return acked_at - sent_at, delivered_at - sent_at


async def run_latency(ctx: BenchContext) -> Results:
    cluster = await ctx.main_cluster()
    live = cluster.running()
    for index in range(LATENCY_WARMUP):
        await _send_one(ctx, cluster, live[index % len(live)])
    count = ctx.options.latency_samples
    ctx.progress(f"latency: {count} messages one at a time, each node in turn")
    commit: dict[str, list[float]] = {"leader": [], "follower": []}
    delivery: list[float] = []
    for index in range(count):
        sender = live[index % len(live)]
        role = "leader" if sender.state == "leader" else "follower"
        commit_s, delivery_s = await _send_one(ctx, cluster, sender)
        commit[role].append(commit_s * 1000)
        delivery.append(delivery_s * 1000)
    everyone = commit["leader"] + commit["follower"]
    result = {
        "commit_latency_ms": summarize(everyone),
        "commit_latency_ms_by_sender": {role: summarize(values) for role, values in commit.items()},
        "delivery_latency_ms": summarize(delivery),
    }
    ctx.progress(
        f"  commit p50 {result['commit_latency_ms']['p50']:.2f} ms, "
        f"delivery p50 {result['delivery_latency_ms']['p50']:.2f} ms"
    )
    return result


# --- steady CPU ----------------------------------------------------------------------


async def measure_idle_cpu(nodes: list[NodeProcess], seconds: float) -> dict[str, list[float]]:
    """Per role, the CPU each node used over an idle interval, in percent of one core.

    The sleep here *is* the measurement interval (nothing is being waited for)."""
    before = {node: node.cpu_seconds() for node in nodes}
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    by_role: dict[str, list[float]] = {"leader": [], "follower": [], "learner": []}
    for node in nodes:
        role = node.state if node.state in by_role else "follower"
        used = node.cpu_seconds() - before[node]
        by_role[role].append(100 * used / elapsed)
    return by_role


def _cpu_summary(by_role: dict[str, list[float]]) -> Results:
    every = [value for values in by_role.values() for value in values]
    result: Results = {
        "per_node_percent": summarize(every, 2),
        "total_percent": round(sum(every), 2),
    }
    for role, values in by_role.items():
        if values:
            result[f"{role}_percent"] = summarize(values, 2)
    return result


async def run_cpu(ctx: BenchContext) -> Results:
    cluster = await ctx.main_cluster()
    ctx.progress(f"cpu: {len(cluster.running())} idle nodes for {ctx.options.idle_s:g} s")
    cpu = _cpu_summary(await measure_idle_cpu(cluster.running(), ctx.options.idle_s))
    ctx.progress(f"  {cpu['per_node_percent']['p50']:.1f} % of a core per node")
    return {"idle_cpu": cpu}


# --- failover ---------------------------------------------------------------------------


def _new_leader_at(survivors: list[NodeProcess], after: float, old_term: int) -> float | None:
    """When a survivor first reported itself leader of a later term."""
    times = [
        at
        for node in survivors
        for at, status in node.events.statuses
        if at >= after and status["state"] == "leader" and status["term"] > old_term
    ]
    return min(times) if times else None


async def _restore(ctx: BenchContext, cluster: Cluster, size: int) -> None:
    """Back to ``size`` live nodes with fresh members (the channel removes the departed
    one first), then wait for the channel to settle."""
    while len(cluster.running()) < size:
        await cluster.spawn()
    await cluster.wait_formed(ctx.options.timeout_s)


async def run_failover(ctx: BenchContext) -> Results:
    cluster = await ctx.main_cluster()
    size = len(cluster.running())
    trials = ctx.options.trials
    ctx.progress(f"failover: SIGKILL the leader, {trials} trials")
    commit_s: list[float] = []
    election_s: list[float] = []
    for trial in range(trials):
        await cluster.wait_formed(ctx.options.timeout_s)
        leader = cluster.current_leader()
        survivor = cluster.followers()[0]
        old_term = leader.term
        token, text = ctx.message()
        killed_at = time.perf_counter()
        leader.kill()
        await survivor.send_lines([text])
        acked_at = await cluster.wait_until(
            lambda token=token, survivor=survivor: token in survivor.events.acked,
            ctx.options.timeout_s,
            "commit after the leader was killed",
            [survivor],
        )
        commit_s.append(acked_at - killed_at)
        elected = _new_leader_at(cluster.running(), killed_at, old_term)
        if elected is not None:
            election_s.append(elected - killed_at)
        ctx.progress(f"  trial {trial + 1}: next commit after {commit_s[-1]:.3f} s")
        await _restore(ctx, cluster, size)
    return {"failover_s": summarize(commit_s), "failover_election_s": summarize(election_s)}


async def run_graceful(ctx: BenchContext) -> Results:
    """The leader quits with /quit (hands leadership over, asks to be removed) while a
    survivor keeps sending one message at a time; how long until a new leader, and the
    longest any of those messages waited."""
    cluster = await ctx.main_cluster()
    size = len(cluster.running())
    trials = ctx.options.graceful_trials
    ctx.progress(f"graceful: the leader quits, {trials} trials")
    leader_change_s: list[float] = []
    exit_s: list[float] = []
    stall_ms: list[float] = []
    for trial in range(trials):
        await cluster.wait_formed(ctx.options.timeout_s)
        leader = cluster.current_leader()
        survivor = cluster.followers()[0]
        old_term, old_id = leader.term, leader.node_id
        quit_at = await leader.send_lines(["/quit"])
        longest = 0.0
        deadline = quit_at + ctx.options.timeout_s
        while True:
            new_leader_known = survivor.leader not in (None, old_id)
            commit, _ = await _send_one_from(ctx, cluster, survivor)
            longest = max(longest, commit)
            if new_leader_known and not leader.running:
                break
            if time.perf_counter() > deadline:
                raise BenchError("the quitting leader did not hand over and exit in time")
        elected = _new_leader_at(cluster.running(), quit_at, old_term)
        if elected is not None:
            leader_change_s.append(elected - quit_at)
        assert leader.exited_at is not None
        exit_s.append(leader.exited_at - quit_at)
        stall_ms.append(longest * 1000)
        ctx.progress(
            f"  trial {trial + 1}: new leader after "
            f"{leader_change_s[-1] if leader_change_s else float('nan'):.3f} s, "
            f"longest wait {longest * 1000:.1f} ms"
        )
        await _restore(ctx, cluster, size)
    return {
        "graceful_quit": {
            "leader_change_s": summarize(leader_change_s),
            "leader_exit_s": summarize(exit_s),
            "max_commit_wait_ms": summarize(stall_ms),
        }
    }


async def _send_one_from(
    ctx: BenchContext, cluster: Cluster, sender: NodeProcess
) -> tuple[float, float]:
    """Like :func:`_send_one` but only waits for the sender's ack (others may be leaving)."""
    token, text = ctx.message()
    sent_at = await sender.send_lines([text])
    acked_at = await cluster.wait_until(
        lambda: token in sender.events.acked, ctx.options.timeout_s, f"ack of {token}", [sender]
    )
    return acked_at - sent_at, 0.0


async def run_restart(ctx: BenchContext) -> Results:
    """A follower is SIGKILLed and started again on its own data dir (same member, same
    log) while the channel keeps going; how long until it shows a message sent after
    its restart, and until the channel has it back as a member."""
    cluster = await ctx.main_cluster()
    size = len(cluster.running())
    ctx.progress(f"restart: a follower crashes and restarts, {ctx.options.graceful_trials} trials")
    back_s: list[float] = []
    for trial in range(ctx.options.graceful_trials):
        await cluster.wait_formed(ctx.options.timeout_s)
        victim = cluster.followers()[-1]
        victim.kill()
        await victim.wait_exit(ctx.options.timeout_s)
        restarted = await cluster.spawn(victim.name)
        token, text = ctx.message()
        await cluster.current_leader().send_lines([text])
        shown = await cluster.wait_until(
            lambda token=token, node=restarted: token in node.events.shown,
            ctx.options.timeout_s,
            "the restarted member catching up",
            [restarted],
        )
        back_s.append(shown - restarted.started_at)
        ctx.progress(f"  trial {trial + 1}: up to date {back_s[-1]:.2f} s after its restart")
        while len(cluster.running()) < size:
            await cluster.spawn()
    return {"restart_s": summarize(back_s)}


# --- join and catch-up --------------------------------------------------------------------


async def _join_once(ctx: BenchContext, path: str, settings: ClusterSettings) -> Results:
    options = ctx.options
    cluster = await ctx.new_cluster(f"join-{path}", settings)
    try:
        await cluster.start(options.nodes, options.timeout_s)
        leader = cluster.current_leader()
        tokens, texts = ctx.messages(options.history)
        await leader.send_lines(texts)
        last = tokens[-1]
        await cluster.wait_until(
            lambda: all(last in node.events.shown for node in cluster.running()),
            max(options.timeout_s, options.history / 500),
            "history written",
            cluster.running(),
        )
        newcomer = await cluster.spawn()
        started = newcomer.started_at
        # Headless prints a node's first status once it is a member, and statuses at most
        # every 0.2 s, so added_s is an upper bound.
        added = await cluster.wait_until(
            lambda: newcomer.node_id in newcomer.members(),
            options.timeout_s,
            "newcomer added",
            [newcomer],
        )
        caught_up = await cluster.wait_until(
            lambda: last in newcomer.events.shown,
            options.timeout_s,
            "newcomer caught up",
            [newcomer],
        )
        return {
            "history": options.history,
            "compaction_threshold": settings.compaction_threshold,
            "added_s": round(added - started, 3),
            "caught_up_s": round(caught_up - started, 3),
        }
    finally:
        await cluster.close()


async def run_join(ctx: BenchContext) -> Results:
    history = ctx.options.history
    ctx.progress(f"join: a new member catches up on {history} messages (log entries)")
    entries = await _join_once(
        ctx, "entries", ClusterSettings(compaction_threshold=max(5_000, 2 * history + 100))
    )
    ctx.progress(f"  caught up {entries['caught_up_s']:.2f} s after its process started")
    threshold = max(10, history // SNAPSHOT_PATH_FRACTION)
    ctx.progress(f"join: the same from a snapshot (compaction every {threshold} entries)")
    snapshot = await _join_once(
        ctx, "snapshot", ClusterSettings(compaction_threshold=threshold, catchup_entries=0)
    )
    ctx.progress(f"  caught up {snapshot['caught_up_s']:.2f} s after its process started")
    return {"join": {"entries": entries, "snapshot": snapshot}}


# --- scale --------------------------------------------------------------------------------


async def run_scale(ctx: BenchContext) -> Results:
    members = ctx.options.members
    ctx.progress(f"scale: {members} members in one channel")
    cluster = await ctx.new_cluster("scale")
    try:
        timeout = ctx.options.timeout_s + 3 * members
        first = await cluster.spawn()
        started = first.started_at
        await cluster.wait_until(lambda: first.state == "leader", timeout, "leader", [first])
        for _ in range(members - 1):
            await cluster.spawn()
        formed = await cluster.wait_formed(timeout, watch=cluster.nodes)
        voters = len(cluster.running()[0].voters())
        ctx.progress(f"  {members} members ({voters} voters) after {formed - started:.2f} s")
        cpu = _cpu_summary(await measure_idle_cpu(cluster.running(), ctx.options.idle_s))
        ctx.progress(f"  idle: {cpu['per_node_percent']['p50']:.1f} % of a core per node")
        return {
            "scale": {
                "members": members,
                "voters": voters,
                "learners": members - voters,
                "formation_s": round(formed - started, 3),
                "idle_cpu": cpu,
            }
        }
    finally:
        await cluster.close()


Scenario = Callable[[BenchContext], Awaitable[Results]]

SCENARIO_FUNCTIONS: dict[str, Scenario] = {
    "throughput": run_throughput,
    "latency": run_latency,
    "cpu": run_cpu,
    "failover": run_failover,
    "graceful": run_graceful,
    "restart": run_restart,
    "join": run_join,
    "scale": run_scale,
}
