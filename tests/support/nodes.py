"""Real node processes for end-to-end tests: ``python -m raftchat join ... --headless``.

Built on the benchmark's harness (:mod:`raftchat.bench.process`,
:mod:`raftchat.bench.cluster`), which starts, drives and reads the processes; this layer
keeps every event a node printed (one list per run of the process), turns failed waits
into test failures that show each node's last events and stderr, and uses timers short
enough for tests.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from raftchat.bench import cluster, process
from raftchat.bench.cluster import ClusterSettings
from raftchat.bench.errors import BenchError
from raftchat.bench.waiting import Waiters

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
STDERR_TAIL_LINES = 40
RECENT_EVENTS = 8

WEBRTC_ENV = "RAFTCHAT_WEBRTC"
"""Set to ``aiortc``, ``wrtc`` or ``auto`` to run the node-process tests on that engine
alone (e.g. ``RAFTCHAT_WEBRTC=wrtc python -m pytest tests/test_node_cluster.py``); unset,
they run on each of :data:`NODE_ENGINES` (the ``node_webrtc`` fixture)."""

NODE_ENGINES = ("aiortc", "wrtc")
"""The engines node-process tests run on by default."""


def engines_long_except(default: str = "wrtc") -> list:
    """``node_webrtc`` parameters for a scenario too long to run on every engine by
    default: ``default`` runs in the default run, the others under the ``long`` marker."""
    import pytest

    return [
        engine if engine == default else pytest.param(engine, marks=pytest.mark.long)
        for engine in node_engines()
    ]


def node_engines() -> tuple[str, ...]:
    """The engines the node processes of this test run use (:data:`WEBRTC_ENV`)."""
    value = os.environ.get(WEBRTC_ENV)
    if not value:
        return NODE_ENGINES
    if value not in ("auto", "wrtc", "aiortc"):
        raise ValueError(f"{WEBRTC_ENV} must be auto, wrtc or aiortc, got {value!r}")
    return (value,)


TEST_SETTINGS = ClusterSettings(
    max_voters=None,
    heartbeat_ms=50,
    election_timeout_min_ms=300,
    election_timeout_max_ms=600,
    adaptive_election_timeout=None,
    member_timeout_s=30,
    own_sessions=False,
    webrtc="aiortc",
)
"""Short timers; what is not set here is left to the defaults. The engine is the one the
running test chose (:func:`node_settings`)."""

_engine: str = "aiortc"
"""The engine of the node processes the running test starts (:func:`use_engine`)."""


def use_engine(engine: str) -> str:
    """Node processes started from now on run ``engine``; returns the one before."""
    global _engine
    previous, _engine = _engine, engine
    return previous


def node_settings(**changes: Any) -> ClusterSettings:
    """:data:`TEST_SETTINGS` on the running test's engine, with some of them changed."""
    return replace(TEST_SETTINGS, **{"webrtc": _engine, **changes})


def write_config(path: Path, **changes: Any) -> Path:
    """A config file with :func:`node_settings`, with some of them changed."""
    return node_settings(**changes).write(path)


class NodeProcess(process.NodeProcess):
    """One node process that keeps every event it printed, for the test to check."""

    def __init__(
        self,
        name: str,
        channel: str,
        server_url: str,
        data_dir: Path,
        config_path: Path,
        waiters: Waiters | None = None,
        *,
        extra_env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            name,
            channel,
            server_url,
            data_dir,
            config_path,
            waiters,
            extra_env={"PYTHONUNBUFFERED": "1", **(extra_env or {})},
            **options,
        )
        self.lifetimes: list[list[dict[str, Any]]] = []
        """The events of every run so far, oldest first (the last is :attr:`output`)."""
        self.bad_lines: list[str] = []
        """Stdout lines that were not JSON objects (headless mode must print none)."""

    async def start(self) -> None:
        self.lifetimes.append([])
        await super().start()

    async def restart(self) -> None:
        """Start again with the same data dir (after it exited or was killed)."""
        await self.wait_exit()
        await self.start()

    def read_line(self, line: bytes, now: float) -> None:
        text = line.decode("utf-8", "replace")
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            self.bad_lines.append(text)
            return
        self.output.append(event)
        self.events.record(event, now)

    # --- waiting -------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[NodeProcess], T],
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "",
    ) -> T:
        """Wait until ``predicate(self)`` is truthy (checked as output arrives); return it.
        Fails the test after ``timeout`` seconds or if the process ends first."""
        result: T | None = None

        def holds() -> bool:
            nonlocal result
            result = predicate(self)
            return bool(result)

        try:
            await self.waiters.wait_until(holds, timeout, what or str(predicate), [self])
        except BenchError as error:
            raise AssertionError(f"{self.name}: {error}\n{self.report()}") from None
        return result  # type: ignore[return-value]  # truthy, so set

    async def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """The exit status, once the process and its output reader are done."""
        code = await super().wait_exit(timeout)
        if code is None:
            raise AssertionError(f"{self.name} did not exit within {timeout} s\n{self.report()}")
        return code

    # --- what it printed -----------------------------------------------------------------

    @property
    def output(self) -> list[dict[str, Any]]:
        """The events of the current run."""
        return self.lifetimes[-1] if self.lifetimes else []

    def statuses(self) -> list[dict[str, Any]]:
        return [e for e in self.output if e["event"] == "status"]

    def messages(self) -> list[dict[str, Any]]:
        return [e for e in self.output if e["event"] == "message"]

    def acks(self) -> dict[str, int]:
        return {e["id"]: e["index"] for e in self.output if e["event"] == "ack"}

    def errors(self) -> list[str]:
        return [e["message"] for e in self.output if e["event"] == "error"]

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages()]

    def is_leader(self) -> bool:
        return self.state == "leader"

    def is_voter(self) -> bool:
        return self.node_id in self.voters()

    def report(self) -> str:
        """What to show when something about this node went wrong."""
        recent = "\n".join(json.dumps(e) for e in self.output[-RECENT_EVENTS:])
        return (
            f"--- {self.name} ({self.node_id}) last events:\n{recent}\n"
            f"--- {self.name} stderr tail:\n{self.stderr_tail(STDERR_TAIL_LINES)}"
        )


class Cluster(cluster.Cluster):
    """Several node processes on one channel; ``close()`` kills whatever still runs."""

    node_class = NodeProcess

    def __init__(self, root: Path, server_url: str, channel: str = "test-channel") -> None:
        super().__init__(root, server_url, channel, node_settings())

    def configure(self, **changes: Any) -> None:
        """Rewrite the shared config file (before starting nodes)."""
        self.settings = replace(self.settings, **changes)
        self.settings.write(self.config_path)

    async def add(
        self,
        name: str | None = None,
        config_path: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> NodeProcess:
        """Start one more node and wait until it knows its node id."""
        node = await self.spawn(name, config_path=config_path, extra_env=extra_env)
        assert isinstance(node, NodeProcess)
        await node.wait_for(lambda n: n.node_id, 30, "the first status line")
        return node

    async def grow(self, count: int) -> list[NodeProcess]:
        """Start ``count`` nodes one after another, each waiting to become a voter."""
        started = []
        for _ in range(count):
            node = await self.add()
            await node.wait_for(NodeProcess.is_voter, 30, "becoming a voter")
            started.append(node)
        await self.wait_all(
            lambda n: n.status and len(n.status["voters"]) == len(started), "full configuration"
        )
        return started

    async def wait_all(
        self,
        predicate: Callable[[NodeProcess], Any],
        what: str,
        nodes: list[NodeProcess] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        targets = nodes if nodes is not None else self.running()
        await asyncio.gather(*(node.wait_for(predicate, timeout, what) for node in targets))

    async def leader(self, nodes: list[NodeProcess] | None = None) -> NodeProcess:
        """The node that all of ``nodes`` (default: the running ones) agree leads."""
        targets = nodes if nodes is not None else self.running()
        agreed: NodeProcess | None = None

        def agree() -> bool:
            nonlocal agreed
            leaders = {node.leader for node in targets}
            leader_id = leaders.pop() if len(leaders) == 1 else None
            agreed = next((n for n in targets if leader_id and n.node_id == leader_id), None)
            return agreed is not None

        try:
            await self.wait_until(agree, DEFAULT_TIMEOUT, "an agreed leader")
        except BenchError as error:
            raise AssertionError(f"{error}\n{self.report()}") from None
        assert agreed is not None
        return agreed

    def report(self) -> str:
        return "\n".join(node.report() for node in self.nodes)
