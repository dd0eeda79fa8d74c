"""One headless node process: lines in on stdin, timed events out on stdout.

The benchmark and the end-to-end tests start, drive and read node processes through
this class. Every stdout line is stamped with :func:`time.perf_counter` in the parent
the moment it is read, so all latencies are measured on one clock. Output is read in
chunks of whatever is available (all lines of one read share its time stamp), and
waits are re-checked once per chunk rather than per line, which keeps the parent's
work per message small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from raftchat.bench.errors import BenchError
from raftchat.bench.node_output import NodeEvents
from raftchat.bench.waiting import Waiters
from raftchat.frontends.node_process import headless_join_command, spawn_headless_node

logger = logging.getLogger(__name__)

STDOUT_LINE_LIMIT = 1 << 20
STDOUT_READ_BYTES = 1 << 18
"""Most bytes taken from a node's stdout per read."""
STOP_TIMEOUT_S = 10.0
"""How long :meth:`NodeProcess.stop` waits for a SIGKILLed process to be reaped."""
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class NodeProcess:
    """``raftchat join --headless`` on one data dir; started again on it after it ended.

    Its stderr goes to ``<name>.stderr`` next to the data dir (appended across runs).
    """

    def __init__(
        self,
        name: str,
        channel: str,
        server_url: str,
        data_dir: Path,
        config_path: Path,
        waiters: Waiters | None = None,
        *,
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        own_session: bool = False,
        keep_transcript: bool = False,
    ) -> None:
        self.name = name
        self.channel = channel
        self.server_url = server_url
        """Passed as --server; empty: leave the flag out (the config file decides)."""
        self.data_dir = data_dir
        self.config_path = config_path
        self.waiters = waiters or Waiters()
        """Waits on this node's output; shared by the nodes of one cluster."""
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(extra_env or {})
        self.own_session = own_session
        """Run in a session of its own, so a Ctrl-C meant for the parent does not reach
        it: the parent decides how every node ends."""
        self.keep_transcript = keep_transcript
        """Copy every stdout line to ``<name>.stdout.jsonl`` next to the data dir."""
        self.stderr_path = data_dir.parent / f"{name}.stderr"
        self.transcript_path = data_dir.parent / f"{name}.stdout.jsonl"
        self.events = NodeEvents(name)
        """What the current run printed (a fresh record on every start)."""
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.exited_at: float | None = None
        """When the current run's stdout ended (perf_counter)."""
        self._reader: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the process (a first run, or a restart on the same data dir)."""
        self.events = NodeEvents(self.name, node_id=self.node_id)
        self.exited_at = None
        self.started_at = time.perf_counter()
        self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.stderr_path, "ab") as stderr:
            self.process = await spawn_headless_node(
                self.command(),
                stderr=stderr,
                extra_env=self.extra_env,
                own_session=self.own_session,
                line_limit=STDOUT_LINE_LIMIT,
            )
        self._reader = asyncio.create_task(
            self._read_stdout(self.process), name=f"read-node-{self.name}"
        )

    def command(self) -> list[str]:
        """The command line the process is started with."""
        return headless_join_command(
            self.channel,
            data_dir=self.data_dir,
            config_path=self.config_path,
            nick=self.name,
            server_url=self.server_url,
            extra_args=self.extra_args,
        )

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit status once the process ended and its output is read; None if it
        still runs after ``timeout`` seconds."""
        return await self._ended(timeout)

    async def stop(self) -> None:
        """Make sure the process is gone: SIGKILL unless it ended already."""
        if self.process is None:
            return
        self.close_stdin()
        self.kill()
        if await self._ended(STOP_TIMEOUT_S) is None:
            logger.warning("node %s (pid %d) did not end after SIGKILL", self.name, self.pid)

    async def _ended(self, timeout: float) -> int | None:
        assert self.process is not None
        try:
            async with asyncio.timeout(timeout):
                code = await self.process.wait()
                if self._reader is not None:
                    await self._reader
        except TimeoutError:
            return None
        return code

    # --- state --------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        """Started, not exited, and its output still open."""
        return (
            self.process is not None and self.process.returncode is None and self.exited_at is None
        )

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    @property
    def node_id(self) -> str | None:
        return self.events.node_id

    @property
    def status(self) -> dict[str, Any] | None:
        """The latest ``status`` event of the current run."""
        return self.events.status

    @property
    def state(self) -> str | None:
        return self.events.status["state"] if self.events.status else None

    @property
    def term(self) -> int:
        return self.events.status["term"] if self.events.status else 0

    @property
    def leader(self) -> str | None:
        return self.events.status["leader"] if self.events.status else None

    def members(self) -> frozenset[str]:
        status = self.events.status
        if status is None:
            return frozenset()
        return frozenset(status["voters"]) | frozenset(status["learners"])

    def voters(self) -> frozenset[str]:
        status = self.events.status
        return frozenset(status["voters"]) if status else frozenset()

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (from /proc/<pid>/stat)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError as error:
            raise BenchError(f"cannot read CPU time of node {self.name}: {error}") from None
        fields_after_name = stat.rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat(5); fields_after_name starts at 3.
        utime, stime = int(fields_after_name[11]), int(fields_after_name[12])
        return (utime + stime) / CLOCK_TICKS_PER_S

    def stderr_tail(self, lines: int) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # --- input --------------------------------------------------------------------------

    def send(self, line: str) -> None:
        """Write one line (a chat message or a /command), without waiting for the pipe."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    async def send_lines(self, lines: list[str]) -> float:
        """Write ``lines`` in one go; the perf_counter time just before the write."""
        if not self.running or self.process is None or self.process.stdin is None:
            raise BenchError(f"node {self.name} is not running; see {self.stderr_path}")
        payload = "".join(line + "\n" for line in lines).encode()
        sent_at = time.perf_counter()
        self.process.stdin.write(payload)
        try:
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as error:
            raise BenchError(f"node {self.name} stopped reading its input: {error}") from None
        return sent_at

    def quit(self) -> None:
        """Ask the node to leave the channel (``/quit``), as a user would."""
        self.send("/quit")

    def close_stdin(self) -> None:
        """End the node's input (headless mode then leaves the channel and exits)."""
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()

    def kill(self) -> None:
        """SIGKILL, no goodbye (a crash)."""
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM (the node shuts down as on Ctrl-C)."""
        self._signal(signal.SIGTERM)

    def _signal(self, number: signal.Signals) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(number)

    # --- output -------------------------------------------------------------------------

    def read_line(self, line: bytes, now: float) -> None:
        """Take in one stdout line (without its newline) read at ``now``."""
        self.events.read(line, now)

    async def _read_stdout(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        with contextlib.ExitStack() as stack:
            transcript = (
                stack.enter_context(open(self.transcript_path, "ab"))
                if self.keep_transcript
                else None
            )
            try:
                await self._read_lines(process.stdout, transcript)
            except ValueError as error:
                self.events.errors.append(f"unreadable output: {error}")
            finally:
                self.exited_at = time.perf_counter()
                self.waiters.wake(self.exited_at)

    async def _read_lines(self, stdout: asyncio.StreamReader, transcript: BinaryIO | None) -> None:
        partial = b""
        while chunk := await stdout.read(STDOUT_READ_BYTES):
            now = time.perf_counter()
            if transcript is not None:
                transcript.write(chunk)
            *lines, partial = (partial + chunk).split(b"\n")
            if len(partial) > STDOUT_LINE_LIMIT:
                raise ValueError(f"a line longer than {STDOUT_LINE_LIMIT} bytes")
            for line in lines:
                self.read_line(line, now)
            if lines:
                self.waiters.wake(now)
        if partial:
            self.read_line(partial, time.perf_counter())
            self.waiters.wake(time.perf_counter())
