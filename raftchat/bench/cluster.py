"""A channel of local node processes sharing one signaling server and one config file."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from raftchat.bench.errors import BenchError
from raftchat.bench.process import NodeProcess
from raftchat.bench.waiting import Waiters
from raftchat.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterSettings:
    """What goes into the nodes' config.toml (a None is left out: the default applies),
    and how their processes run."""

    compaction_threshold: int = 5_000
    catchup_entries: int = 10_000
    history_window: int = 10_000
    max_voters: int | None = 5
    heartbeat_ms: int = 100
    election_timeout_min_ms: int = 500
    election_timeout_max_ms: int = 1_000
    adaptive_election_timeout: bool | None = True
    member_timeout_s: float | None = None
    webrtc: str | None = None
    """The nodes' WebRTC engine (``auto``, ``wrtc``, ``aiortc``); None: the default."""
    debug_nodes: bool = False
    """Nodes log at debug level into their ``<name>.stderr``."""
    keep_transcripts: bool = False
    """Each node's stdout is copied to ``<name>.stdout.jsonl``."""
    own_sessions: bool = True
    """Nodes run in sessions of their own: a Ctrl-C meant for the parent does not reach
    them, the parent decides how each ends."""

    def config_text(self) -> str:
        # The timers are written out so a user config elsewhere never changes a result.
        top = {
            "webrtc": self.webrtc,
            "max_voters": self.max_voters,
            "compaction_threshold": self.compaction_threshold,
            "catchup_entries": self.catchup_entries,
            "history_window": self.history_window,
        }
        timers = {
            "tick_ms": 10,
            "heartbeat_ms": self.heartbeat_ms,
            "election_timeout_min_ms": self.election_timeout_min_ms,
            "election_timeout_max_ms": self.election_timeout_max_ms,
            "adaptive_election_timeout": self.adaptive_election_timeout,
            "member_timeout_s": self.member_timeout_s,
        }
        return f"{_toml_lines(top)}\n[timers]\n{_toml_lines(timers)}"

    def write(self, path: Path) -> Path:
        """Write :meth:`config_text` to ``path``."""
        path.write_text(self.config_text())
        return path


def _toml_lines(values: Mapping[str, object]) -> str:
    def literal(value: object) -> str:
        if isinstance(value, str):
            return f'"{value}"'
        return str(value).lower() if isinstance(value, bool) else str(value)

    return "".join(
        f"{key} = {literal(value)}\n" for key, value in values.items() if value is not None
    )


class Cluster:
    """Node processes of one channel, each with a data dir named after it under ``root``;
    :meth:`close` ends every process this cluster started."""

    node_class: ClassVar[type[NodeProcess]] = NodeProcess

    def __init__(
        self,
        root: Path,
        server_url: str,
        channel: str,
        settings: ClusterSettings,
    ) -> None:
        self.root = root
        self.server_url = server_url
        self.channel = channel
        self.settings = settings
        self.waiters = Waiters()
        self.nodes: list[NodeProcess] = []
        """Every process started, dead or alive, in start order."""
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = settings.write(root / "config.toml")

    def running(self) -> list[NodeProcess]:
        return [node for node in self.nodes if node.running]

    def engines(self) -> set[str]:
        """The WebRTC engines the nodes said they run (``webrtc`` in their status)."""
        return {
            str(node.status["webrtc"])
            for node in self.nodes
            if node.status and node.status.get("webrtc")
        }

    async def spawn(
        self,
        name: str | None = None,
        *,
        config_path: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> NodeProcess:
        """Start one node in ``root/<name>``: a fresh member, or one restarting on the data
        dir of an earlier node of that name."""
        name = name or f"n{len(self.nodes)}"
        node = self.node_class(
            name,
            self.channel,
            self.server_url,
            self.root / name,
            config_path or self.config_path,
            self.waiters,
            extra_args=["-v"] if self.settings.debug_nodes else [],
            extra_env=extra_env,
            own_session=self.settings.own_sessions,
            keep_transcript=self.settings.keep_transcripts,
        )
        self.nodes.append(node)
        await node.start()
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
        return await self.wait_formed(timeout, watch=self.nodes)

    def formed(self) -> bool:
        """Every running node reports the same leader and a configuration of exactly the
        running nodes, with as many voters as max_voters allows."""
        running = self.running()
        ids = {node.node_id for node in running}
        if None in ids:
            return False
        want_voters = min(len(ids), self.settings.max_voters or Settings().max_voters)
        leader = running[0].leader
        return leader is not None and all(
            node.leader == leader and node.members() == ids and len(node.voters()) == want_voters
            for node in running
        )

    async def wait_formed(self, timeout: float, watch: Sequence[NodeProcess] = ()) -> float:
        """Wait until :meth:`formed`; a node of ``watch`` that exits (refused by the
        server, crashed) ends the wait with its name, instead of the channel counting as
        formed of the nodes left."""
        try:
            watched = list(watch)
            return await self.waiters.wait_until(
                lambda: self.formed() and all(node.running for node in watched),
                timeout,
                "formation",
                watched,
            )
        except BenchError as error:
            raise BenchError(f"{error}; {self._formation_problem()}") from None

    def _formation_problem(self, shown: int = 8) -> str:
        """Who sees what, for the first ``shown`` nodes, and how many see a leader."""
        running = self.running()
        views = ", ".join(
            f"{node.name}: {node.state} leader={str(node.leader)[:6]} "
            f"members={len(node.members())} voters={len(node.voters())}"
            for node in running[:shown]
        )
        more = f" and {len(running) - shown} more" if len(running) > shown else ""
        members = sorted(len(node.members()) for node in running)
        return (
            f"channel {self.channel} did not form in time: {len(running)} live nodes; "
            f"configuration sizes seen min {members[0] if members else 0} "
            f"max {members[-1] if members else 0} ({views}{more})"
        )

    def current_leader(self) -> NodeProcess:
        """The running node that leads (highest term wins if two claim it)."""
        leaders = [node for node in self.running() if node.state == "leader"]
        if not leaders:
            raise BenchError(f"channel {self.channel} has no leader")
        return max(leaders, key=lambda node: node.term)

    def followers(self) -> list[NodeProcess]:
        leader = self.current_leader()
        return [node for node in self.running() if node is not leader]

    async def close(self) -> None:
        """SIGKILL every process still running."""
        await asyncio.gather(*(node.stop() for node in self.nodes), return_exceptions=True)
