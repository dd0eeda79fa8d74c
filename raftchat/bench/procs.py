"""One headless node process, seen from the benchmark: stdin lines in, timed events out.

Every stdout line is stamped with :func:`time.perf_counter` in the benchmark process
the moment it is read, so all latencies are measured on one clock. Output is read in
chunks of whatever is available (all lines of one read share its time stamp), and
waits are re-checked once per chunk rather than per line: the benchmark shares the
machine's cores with the nodes it measures, so its own work per message must stay
small. Only what the scenarios need is kept: the latest status, when each benchmark
message was first shown, and when each of this node's own messages was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from raftchat.headless_process import headless_join_command, spawn_headless_node

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "bm"
"""Benchmark message texts start with a token ``bm<run>-<n>`` followed by a space."""
_TOKEN_PREFIX_BYTES = TOKEN_PREFIX.encode()
_TOKEN_SCAN_BYTES = 64
STDOUT_LINE_LIMIT = 1 << 20
STDOUT_READ_BYTES = 1 << 18
"""Most bytes taken from a node's stdout per read."""
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A scenario could not complete (a node died, a wait timed out); the text says what."""


@dataclass
class NodeEvents:
    """What one node printed, with the benchmark's read time of each line."""

    node_id: str | None = None
    status: dict[str, Any] | None = None
    status_at: float = 0.0
    statuses: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    shown: dict[str, float] = field(default_factory=dict)
    """token -> when the message carrying it was first printed."""
    own_tokens: dict[str, str] = field(default_factory=dict)
    """message id -> token, for messages this node sent."""
    acked: dict[str, float] = field(default_factory=dict)
    """token -> when this node printed the ack of its own message."""
    own_shown: int = 0
    """This node's own benchmark messages it has printed (committed and applied)."""
    messages: int = 0
    last_message_index: int = 0
    errors: list[str] = field(default_factory=list)


def token_of(text: str) -> str | None:
    """The benchmark token a message text starts with, or None for other messages."""
    if not text.startswith(TOKEN_PREFIX):
        return None
    return text.split(" ", 1)[0]


_MESSAGE_START = b'{"event":"message","index":'
_ACK_START = b'{"event":"ack","id":"'
_TEXT_KEY = b'","text":"'


def _message_fields(line: bytes) -> tuple[int, str, str | None] | None:
    """(index, id, benchmark token) of a ``message`` line as the headless front end
    writes it, without a JSON parse (the benchmark reads every message of every node);
    None for anything unusual, which the JSON parser then handles."""
    index_end = line.find(b",", len(_MESSAGE_START))
    if index_end < 0 or not line.startswith(b'"id":"', index_end + 1):
        return None
    id_start = index_end + 7
    id_end = line.find(b'"', id_start)
    text_start = line.find(_TEXT_KEY, id_end)
    if id_end < 0 or text_start < 0:
        return None
    raw_id = line[id_start:id_end]
    index = line[len(_MESSAGE_START) : index_end]
    if b"\\" in raw_id or not index.isdigit():
        return None
    text = line[text_start + len(_TEXT_KEY) : text_start + len(_TEXT_KEY) + _TOKEN_SCAN_BYTES]
    token = None
    if text.startswith(_TOKEN_PREFIX_BYTES):
        token_end = text.find(b" ")
        if token_end < 0 or b'"' in text[:token_end] or b"\\" in text[:token_end]:
            return None  # a token longer than the scan, or escaped: the parser decides
        token = text[:token_end].decode()
    return int(index), raw_id.decode(), token


def _ack_id(line: bytes) -> str | None:
    id_end = line.find(b'"', len(_ACK_START))
    if id_end < 0 or not line.startswith(b',"index":', id_end + 1):
        return None
    raw_id = line[len(_ACK_START) : id_end]
    return None if b"\\" in raw_id else raw_id.decode()


_Waiter = tuple[Callable[[], bool], tuple["NodeProcess", ...], "asyncio.Future[float]"]


class Waiters:
    """Conditions waited on across several node processes; re-checked after every line
    any of them prints, so a wait ends on the line that made it true."""

    def __init__(self) -> None:
        self._waiting: list[
            tuple[Callable[[], bool], tuple[NodeProcess, ...], asyncio.Future[float]]
        ] = []

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float,
        what: str,
        watch: Sequence[NodeProcess] = (),
    ) -> float:
        """Wait until ``condition()`` holds; the perf_counter time it first held.

        Raises :class:`BenchError` after ``timeout`` seconds, or as soon as one of the
        ``watch`` nodes exits."""
        if condition():
            return time.perf_counter()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        waiter = (condition, tuple(watch), future)
        self._waiting.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BenchError(f"no {what} within {timeout:g} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiting.remove(waiter)

    def wake(self, now: float) -> None:
        for condition, watch, future in list(self._waiting):
            if future.done():
                continue
            if condition():
                future.set_result(now)
                continue
            for node in watch:
                if not node.alive:
                    future.set_exception(
                        BenchError(f"node {node.name} exited (see {node.data_dir}/stderr.log)")
                    )
                    break


class NodeProcess:
    """A running ``raftchat join --headless`` process and the events it printed."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        process: asyncio.subprocess.Process,
        started_at: float,
        waiters: Waiters,
        keep_transcript: bool = False,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.process = process
        self.started_at = started_at
        self.events = NodeEvents()
        self.exited_at: float | None = None
        self._waiters = waiters
        self.keep_transcript = keep_transcript
        """Copy every stdout line to ``stdout.jsonl`` in the data dir (for post-mortems)."""
        self._reader = asyncio.create_task(self._read_stdout(), name=f"bench-read-{name}")

    @classmethod
    async def spawn(
        cls,
        name: str,
        channel: str,
        server_url: str,
        data_dir: Path,
        config_path: Path,
        waiters: Waiters,
        debug: bool = False,
        keep_transcript: bool = False,
    ) -> NodeProcess:
        """Start a node. It runs in its own session, so a Ctrl-C meant for the benchmark
        does not reach it: the benchmark decides how every node ends."""
        data_dir.mkdir(parents=True, exist_ok=True)
        started_at = time.perf_counter()
        with open(data_dir / "stderr.log", "ab") as stderr:
            command = headless_join_command(
                channel,
                data_dir=data_dir,
                config_path=config_path,
                nick=name,
                server_url=server_url,
                extra_args=["-v"] if debug else [],
            )
            process = await spawn_headless_node(
                command,
                stderr=stderr,
                own_session=True,
                line_limit=STDOUT_LINE_LIMIT,
            )
        return cls(name, data_dir, process, started_at, waiters, keep_transcript)

    # --- state ------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.exited_at is None and self.process.returncode is None

    @property
    def node_id(self) -> str | None:
        return self.events.node_id

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

    # --- input --------------------------------------------------------------------------

    async def send_lines(self, lines: list[str]) -> float:
        """Write ``lines`` in one go; the perf_counter time just before the write."""
        if not self.alive or self.process.stdin is None:
            raise BenchError(f"node {self.name} is not running; see {self.data_dir}/stderr.log")
        payload = "".join(line + "\n" for line in lines).encode()
        sent_at = time.perf_counter()
        self.process.stdin.write(payload)
        try:
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as error:
            raise BenchError(f"node {self.name} stopped reading its input: {error}") from None
        return sent_at

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        with contextlib.ExitStack() as stack:
            transcript = (
                stack.enter_context(open(self.data_dir / "stdout.jsonl", "ab"))
                if self.keep_transcript
                else None
            )
            try:
                await self._read_lines(self.process.stdout, transcript)
            except ValueError as error:
                self.events.errors.append(f"unreadable output: {error}")
            finally:
                self.exited_at = time.perf_counter()
                self._waiters.wake(self.exited_at)

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
                self._parse(line, now)
            if lines:
                self._waiters.wake(now)
        if partial:
            self._parse(partial, time.perf_counter())
            self._waiters.wake(time.perf_counter())

    def _parse(self, line: bytes, now: float) -> None:
        if line.startswith(_MESSAGE_START):
            fields = _message_fields(line)
            if fields is not None:
                self._record_message(*fields, now)
                return
        elif line.startswith(_ACK_START):
            message_id = _ack_id(line)
            if message_id is not None:
                self._record_ack(message_id, now)
                return
        try:
            event = json.loads(line)
        except ValueError:
            self.events.errors.append(f"not JSON: {line[:200]!r}")
            return
        if isinstance(event, dict):
            self._record(event, now)
        else:
            self.events.errors.append(f"not a JSON object: {line[:200]!r}")

    def _record_message(self, index: int, message_id: str, token: str | None, now: float) -> None:
        events = self.events
        events.messages += 1
        events.last_message_index = max(events.last_message_index, index)
        if token is not None:
            first_time = token not in events.shown
            if first_time:
                events.shown[token] = now
            if events.node_id and message_id.startswith(events.node_id + ":"):
                events.own_shown += first_time
                events.own_tokens[message_id] = token

    def _record_ack(self, message_id: str, now: float) -> None:
        token = self.events.own_tokens.pop(message_id, None)
        if token is not None:
            self.events.acked.setdefault(token, now)

    def _record(self, event: dict[str, Any], now: float) -> None:
        kind = event.get("event")
        events = self.events
        if kind == "message":
            self._record_message(event["index"], event["id"], token_of(event["text"]), now)
        elif kind == "ack":
            self._record_ack(event["id"], now)
        elif kind == "status":
            events.node_id = event["node_id"]
            events.status = event
            events.status_at = now
            events.statuses.append((now, event))
        elif kind == "error":
            events.errors.append(event.get("message", ""))
            logger.debug("node %s error: %s", self.name, event.get("message"))

    # --- ending -------------------------------------------------------------------------

    async def quit(self) -> None:
        """Ask the node to leave the channel (``/quit``), as a user would."""
        await self.send_lines(["/quit"])

    def kill(self) -> None:
        """SIGKILL, no goodbye (a crash)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)

    async def wait_exit(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, grace_s: float = 0.0) -> None:
        """End the process: close its input (it quits), then SIGKILL after ``grace_s``."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        if grace_s <= 0 or not await self.wait_exit(grace_s):
            self.kill()
            await self.wait_exit(5.0)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._reader, 2.0)
