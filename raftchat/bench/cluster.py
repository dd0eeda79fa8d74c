"""A channel of local node processes sharing one signaling server, for the benchmark."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from raftchat.bench.procs import BenchError, NodeProcess, Waiters

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterSettings:
    """What goes into each node's config.toml (the rest are the defaults)."""

    compaction_threshold: int = 5_000
    catchup_entries: int = 10_000
    max_voters: int = 5
    history_window: int = 10_000
    debug_nodes: bool = False
    """Nodes log at debug level into their stderr.log."""
    keep_transcripts: bool = False
    """Each node's stdout is copied to stdout.jsonl in its data dir."""

    def config_text(self) -> str:
        # The timers are written out so a user config elsewhere never changes a result.
        return (
            f"max_voters = {self.max_voters}\n"
            f"compaction_threshold = {self.compaction_threshold}\n"
            f"catchup_entries = {self.catchup_entries}\n"
            f"history_window = {self.history_window}\n"
            "\n[timers]\n"
            "tick_ms = 10\n"
            "heartbeat_ms = 100\n"
            "election_timeout_min_ms = 500\n"
            "election_timeout_max_ms = 1000\n"
            "adaptive_election_timeout = true\n"
        )


class Cluster:
    """Node processes of one channel. Nodes are started in their own temp data dirs
    under ``root``; :meth:`close` ends every process this cluster started."""

    _counter = itertools.count(1)

    def __init__(
        self, root: Path, server_url: str, channel: str, settings: ClusterSettings
    ) -> None:
        self.root = root
        self.server_url = server_url
        self.channel = channel
        self.settings = settings
        self.waiters = Waiters()
        self.nodes: list[NodeProcess] = []
        """Every process started, dead or alive, in start order."""
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "config.toml"
        self.config_path.write_text(settings.config_text())

    @property
    def live(self) -> list[NodeProcess]:
        return [node for node in self.nodes if node.alive]

    async def spawn(self, data_dir: Path | None = None, name: str | None = None) -> NodeProcess:
        """Start one node (a fresh data dir unless ``data_dir`` is an old one: a restart)."""
        number = next(self._counter)
        name = name or f"b{number}"
        data_dir = data_dir or self.root / f"node-{number}"
        node = await NodeProcess.spawn(
            name,
            self.channel,
            self.server_url,
            data_dir,
            self.config_path,
            self.waiters,
            debug=self.settings.debug_nodes,
            keep_transcript=self.settings.keep_transcripts,
        )
        self.nodes.append(node)
        return node

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float,
        what: str,
        watch: Sequence[NodeProcess] = (),
    ) -> float:
        """See :meth:`Waiters.wait_until`; the message names this channel."""
        try:
            return await self.waiters.wait_until(condition, timeout, what, watch)
        except BenchError as error:
            raise BenchError(f"channel {self.channel}: {error}") from None

    async def start(self, count: int, timeout: float) -> float:
        """``count`` nodes forming one channel: the first bootstraps it alone (two blank
        nodes starting together would each found a cluster), then the rest join at once.
        The time the channel was formed."""
        first = await self.spawn()
        await self.wait_until(lambda: first.state == "leader", timeout, "leader", [first])
        for _ in range(count - 1):
            await self.spawn()
        return await self.wait_formed(timeout)

    def formed(self) -> bool:
        """Every live node reports the same leader and a configuration of exactly the live
        nodes, with as many voters as max_voters allows."""
        live = self.live
        ids = {node.node_id for node in live}
        if None in ids:
            return False
        want_voters = min(len(ids), self.settings.max_voters)
        leader = live[0].leader
        return leader is not None and all(
            node.leader == leader and node.members() == ids and len(node.voters()) == want_voters
            for node in live
        )

    async def wait_formed(self, timeout: float) -> float:
        try:
            return await self.waiters.wait_until(self.formed, timeout, "formation")
        except BenchError:
            raise BenchError(self._formation_problem()) from None

    def _formation_problem(self, shown: int = 8) -> str:
        """Who sees what, for the first ``shown`` nodes, and how many see a leader."""
        live = self.live
        views = ", ".join(
            f"{node.name}: {node.state} leader={str(node.leader)[:6]} "
            f"members={len(node.members())} voters={len(node.voters())}"
            for node in live[:shown]
        )
        more = f" and {len(live) - shown} more" if len(live) > shown else ""
        members = sorted(len(node.members()) for node in live)
        return (
            f"channel {self.channel} did not form in time: {len(live)} live nodes; "
            f"configuration sizes seen min {members[0] if members else 0} "
            f"max {members[-1] if members else 0} ({views}{more})"
        )

    def leader(self) -> NodeProcess:
        """The live node that leads (highest term wins if two claim it)."""
        leaders = [node for node in self.live if node.state == "leader"]
        if not leaders:
            raise BenchError(f"channel {self.channel} has no leader")
        return max(leaders, key=lambda node: node.term)

    def followers(self) -> list[NodeProcess]:
        leader = self.leader()
        return [node for node in self.live if node is not leader]

    async def close(self) -> None:
        """SIGKILL every process still running (the data dirs are temporary)."""
        await asyncio.gather(*(node.close() for node in self.nodes), return_exceptions=True)
