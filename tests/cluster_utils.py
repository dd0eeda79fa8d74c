"""Real node processes for end-to-end tests: ``python -m raftchat join ... --headless``.

:class:`NodeProcess` spawns one node, reads its JSON lines into ``events`` and lets a
test wait for a condition on them (never a sleep); :class:`Cluster` owns several, a
config file with short timers, and cleans every process up. Each node's stderr goes
to a file whose tail is shown when a wait times out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from raftchat.headless_process import headless_join_command, spawn_headless_node

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
STDERR_TAIL_LINES = 40
POLL_INTERVAL = 0.05

FAST_CONFIG = """\
compaction_threshold = {compaction_threshold}
catchup_entries = {catchup_entries}
history_window = {history_window}

[timers]
tick_ms = 10
heartbeat_ms = 50
election_timeout_min_ms = 300
election_timeout_max_ms = 600
member_timeout_s = {member_timeout_s}
"""


def write_config(
    path: Path,
    *,
    compaction_threshold: int = 5000,
    catchup_entries: int = 10000,
    history_window: int = 10000,
    member_timeout_s: float = 30,
) -> Path:
    """A config file with timers short enough for tests."""
    path.write_text(
        FAST_CONFIG.format(
            compaction_threshold=compaction_threshold,
            catchup_entries=catchup_entries,
            history_window=history_window,
            member_timeout_s=member_timeout_s,
        )
    )
    return path


class NodeProcess:
    """One ``raftchat join --headless`` process; restartable with the same data dir."""

    def __init__(
        self,
        name: str,
        channel: str,
        server_url: str,
        data_dir: Path,
        config_path: Path,
        *,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.channel = channel
        self.server_url = server_url
        """Passed as --server; empty: leave the flag out (the config file decides)."""
        self.data_dir = data_dir
        self.config_path = config_path
        self.extra_args = extra_args
        self.extra_env = dict(extra_env or {})
        self.stderr_path = data_dir.parent / f"{name}.stderr"
        self.events: list[dict[str, Any]] = []
        """Events of the current run (cleared on restart)."""
        self.lifetimes: list[list[dict[str, Any]]] = []
        """The events of every run so far, oldest first (the last is ``events``)."""
        self.bad_lines: list[str] = []
        """Stdout lines that were not JSON objects (headless mode must print none)."""
        self.node_id: str | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._stderr_file: Any = None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.events = []
        self.lifetimes.append(self.events)
        self._stderr_file = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in _read
        command = headless_join_command(
            self.channel,
            data_dir=self.data_dir,
            config_path=self.config_path,
            nick=self.name,
            server_url=self.server_url,
            extra_args=self.extra_args,
        )
        self.process = await spawn_headless_node(
            command,
            stderr=self._stderr_file,
            extra_env={"PYTHONUNBUFFERED": "1", **self.extra_env},
        )
        self._reader = asyncio.create_task(self._read(self.process))

    async def restart(self) -> None:
        """Start again with the same data dir (after it exited or was killed)."""
        await self.wait_exit()
        await self.start()

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        event_times = self.event_times = {}
        try:
            async for raw in process.stdout:
                text = raw.decode("utf-8", "replace").rstrip("\n")
                try:
                    event = json.loads(text)
                except ValueError:
                    event = None
                if not isinstance(event, dict) or "event" not in event:
                    self.bad_lines.append(text)
                    continue
                if event["event"] == "status" and self.node_id is None:
                    self.node_id = event["node_id"]
                async with self._changed:
                    event_times[len(self.events)] = asyncio.get_running_loop().time()
                    self.events.append(event)
                    self._changed.notify_all()
        finally:
            async with self._changed:
                self._changed.notify_all()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def send(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    def quit(self) -> None:
        self.send("/quit")

    def close_stdin(self) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()

    def kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """The exit status, once the process and its output reader are done."""
        assert self.process is not None
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
            if self._reader is not None:
                await asyncio.wait_for(self._reader, timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s\n{self.report()}"
            ) from None
        finally:
            if self._stderr_file is not None:
                self._stderr_file.close()
                self._stderr_file = None
        return code

    async def stop(self) -> None:
        """Make sure the process is gone (SIGKILL if it does not end by itself)."""
        if self.process is None:
            return
        if self.running:
            self.kill()
        with contextlib.suppress(AssertionError, ProcessLookupError):
            await self.wait_exit(10)

    # --- observing ---------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[NodeProcess], T],
        timeout: float = DEFAULT_TIMEOUT,
        what: str = "",
    ) -> T:
        """Wait until ``predicate(self)`` is truthy (checked on every new event); return it."""

        async def check() -> T:
            async with self._changed:
                while True:
                    result = predicate(self)
                    if result:
                        return result
                    if self._reader is None or self._reader.done():
                        raise AssertionError(
                            f"{self.name} exited (code {self.returncode}) while waiting for "
                            f"{what or predicate}\n{self.report()}"
                        )
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: timed out after {timeout} s waiting for {what or predicate}\n"
                f"{self.report()}"
            ) from None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    @property
    def status(self) -> dict[str, Any] | None:
        for event in reversed(self.events):
            if event["event"] == "status":
                return event
        return None

    def statuses(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "status"]

    def messages(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "message"]

    def acks(self) -> dict[str, int]:
        return {e["id"]: e["index"] for e in self.events if e["event"] == "ack"}

    def errors(self) -> list[str]:
        return [e["message"] for e in self.events if e["event"] == "error"]

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages()]

    def is_leader(self) -> bool:
        status = self.status
        return status is not None and status["state"] == "leader"

    def is_voter(self) -> bool:
        status = self.status
        return status is not None and self.node_id in status["voters"]

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def report(self) -> str:
        """What to show when something about this node went wrong."""
        recent = "\n".join(json.dumps(e) for e in self.events[-8:])
        return (
            f"--- {self.name} ({self.node_id}) last events:\n{recent}\n"
            f"--- {self.name} stderr tail:\n{self.stderr_tail()}"
        )


class Cluster:
    """Several node processes on one channel; ``close()`` kills whatever still runs."""

    def __init__(self, root: Path, server_url: str, channel: str = "test-channel") -> None:
        self.root = root
        self.server_url = server_url
        self.channel = channel
        self.config_path = write_config(root / "config.toml")
        self.nodes: list[NodeProcess] = []

    def configure(self, **settings: Any) -> None:
        """Rewrite the shared config file (before starting nodes)."""
        write_config(self.config_path, **settings)

    async def add(
        self,
        name: str | None = None,
        config_path: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> NodeProcess:
        """Start one more node and wait until it knows its node id."""
        name = name or f"n{len(self.nodes)}"
        node = NodeProcess(
            name,
            self.channel,
            self.server_url,
            self.root / name,
            config_path or self.config_path,
            extra_env=extra_env,
        )
        self.nodes.append(node)
        await node.start()
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

    def running(self) -> list[NodeProcess]:
        return [node for node in self.nodes if node.running]

    async def wait_all(
        self,
        predicate: Callable[[NodeProcess], Any],
        what: str,
        nodes: list[NodeProcess] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        targets = nodes if nodes is not None else self.running()
        await asyncio.gather(*(node.wait_for(predicate, timeout, what) for node in targets))

    async def wait_until(
        self, condition: Callable[[], T], what: str, timeout: float = DEFAULT_TIMEOUT
    ) -> T:
        """Poll a cluster-wide ``condition`` until it is truthy (a deadline, not a sleep)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            result = condition()
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout} s: {what}\n{self.report()}")
            await asyncio.sleep(POLL_INTERVAL)

    async def leader(self, nodes: list[NodeProcess] | None = None) -> NodeProcess:
        """The node that all of ``nodes`` (default: the running ones) agree leads."""
        targets = nodes if nodes is not None else self.running()

        def agreed() -> NodeProcess | None:
            leaders = {node.status["leader"] if node.status else None for node in targets}
            if len(leaders) != 1:
                return None
            leader_id = leaders.pop()
            return next((n for n in targets if n.node_id == leader_id), None)

        return await self.wait_until(agreed, "an agreed leader")

    def report(self) -> str:
        return "\n".join(node.report() for node in self.nodes)

    async def close(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))
