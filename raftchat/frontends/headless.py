"""Headless mode: stdin lines in, one JSON object per line out (for bots, scripts, tests).

Input: each line is a chat message; ``/nick NAME`` renames, ``/me ACTION`` sends
an action, ``/forget NICK --yes`` carries on without members whose machines are gone
(without ``--yes``: an ``error`` line with the warning, nothing done), ``/quit`` leaves
(so does end of input); :mod:`raftchat.frontends.commands` is the grammar. Output,
nothing else on stdout:

- ``{"event":"status","node_id","state","term","leader","voters","learners",
  "commit_index","last_index","snapshot_index","witness","webrtc"}`` whenever one of these
  changes (index changes are reported at most every few hundred milliseconds, not once
  per message; ``witness``: the server's witness voting in the cluster, or null;
  ``webrtc``: the WebRTC engine the links run on, ``"wrtc"`` or ``"aiortc"``), with
  ``"quorum_problem","voters_needed","voters_reachable","missing_voters"`` added while the
  channel cannot commit, and ``"forget_command"`` when ``/forget`` would fix that;
- ``{"event":"message","index","id","nick","text","ts"}`` for each committed chat
  message in log order, including the history a joining node receives (``ts`` in epoch
  seconds, clamped into the range of message times, 2000-01-01 to 2200-01-01);
- ``{"event":"ack","id","index"}`` when this node's own message is committed;
- ``{"event":"error","message"}``, with ``"line"`` (its number, from 1) when an input
  line was refused: a line with a control character, invalid UTF-8 or more than
  :data:`MAX_LINE_BYTES` bytes is never sent, and reading goes on with the next line.

At the end of input (or ``/quit``) the node first waits, at most
:data:`END_OF_INPUT_TIMEOUT_S` seconds, until every message it was given is committed,
then leaves; :func:`run_headless` returns how many were not (an ``error`` line says so).

Text is printed as JSON strings, so control characters arrive escaped and can
never drive the reader's terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

from raftchat.frontends.commands import (
    CONFIRM,
    HEADLESS_COMMANDS,
    Forget,
    InputProblem,
    RunCommand,
    SendText,
)
from raftchat.limits import MAX_MESSAGE_CHARS, clamp_message_seconds
from raftchat.node import Node, NodeError
from raftchat.node.api import (
    AckEvent,
    ChatInputError,
    ChatMessageEvent,
    ErrorEvent,
    Event,
    ResetEvent,
    StatusEvent,
)

logger = logging.getLogger(__name__)

_STATUS_FIELDS = (
    "node_id",
    "state",
    "term",
    "leader",
    "voters",
    "learners",
    "commit_index",
    "last_index",
    "snapshot_index",
    "witness",
    "webrtc",
)

_STATE_ALIASES = {"pre_candidate": "candidate"}

END_OF_INPUT_TIMEOUT_S = 30.0
"""How long, at the end of input or ``/quit``, the node waits for the messages it was
given to be committed before it leaves anyway (``raftchat join --commit-timeout``)."""

MAX_LINE_BYTES = 4 * MAX_MESSAGE_CHARS + 1024
"""Longest input line read: room for the longest message in UTF-8 and a command word. A
longer line is refused as a whole (and never held in memory)."""

_CONTROL_CHARS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
"""Control characters (Unicode Cc) except tab: never part of a message or command."""

_CONTROL_NAMES = {
    0x00: "NUL", 0x07: "BEL", 0x08: "BS", 0x0A: "LF", 0x0B: "VT", 0x0C: "FF",
    0x0D: "CR", 0x1B: "ESC", 0x7F: "DEL",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class UnreadableLine:
    """An input line that cannot be used at all; ``reason`` is a clause saying why."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReadFailure:
    """Reading the input failed; nothing more comes."""

    reason: str


InputItem = str | UnreadableLine | ReadFailure


def event_line(event: Event) -> dict[str, Any] | None:
    """The JSON object headless mode prints for ``event``, or None if it prints nothing."""
    match event:
        case StatusEvent():
            if event.state == "stopped":
                return None
            line: dict[str, Any] = {"event": "status"}
            for name in _STATUS_FIELDS:
                value = getattr(event, name)
                line[name] = list(value) if isinstance(value, tuple) else value
            # PreVote is a phase of candidacy; scripts see the four Raft states.
            line["state"] = _STATE_ALIASES.get(event.state, event.state)
            line["cluster"] = event.cluster_id
            if event.quorum_problem is not None:
                line["quorum_problem"] = event.quorum_problem
                line["voters_needed"] = event.voters_needed
                line["voters_reachable"] = event.voters_reachable
                line["missing_voters"] = [
                    {"node_id": voter.node_id, "nick": voter.nick, "silent_s": voter.silent_s}
                    for voter in event.missing_voters
                ]
                if event.forget_command is not None:
                    line["forget_command"] = event.forget_command
            return line
        case ChatMessageEvent():
            return {
                "event": "message",
                "index": event.index,
                "id": event.id,
                "nick": event.nick,
                "text": event.text,
                "ts": clamp_message_seconds(event.ts),
                **({"action": True} if event.action else {}),
                **({"merged": True} if event.merged else {}),
            }
        case AckEvent():
            return {"event": "ack", "id": event.id, "index": event.index}
        case ErrorEvent():
            return {"event": "error", "message": event.message}
        case ResetEvent():
            return {"event": "reset", "reason": event.reason}
    return None


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
"""One encoder for every line (``json.dumps`` with options builds a new one per call)."""

_quote = encode_basestring_ascii
"""The string escaping ``_ENCODER`` uses (ensure_ascii), callable on its own."""


def _message_json(event: ChatMessageEvent) -> str | None:
    """The ``message`` line exactly as ``_ENCODER.encode(event_line(event))`` writes it, built
    directly (one line per committed message makes this the hot path), or None for a field
    of an unusual type, which the general path handles."""
    ts = event.ts
    if not (
        type(event.index) is int
        and type(event.id) is str
        and type(event.nick) is str
        and type(event.text) is str
        and type(ts) is float
    ):
        return None
    ts = clamp_message_seconds(ts)
    return (
        '{"event":"message","index":'
        + int.__repr__(event.index)
        + ',"id":'
        + _quote(event.id)
        + ',"nick":'
        + _quote(event.nick)
        + ',"text":'
        + _quote(event.text)
        + ',"ts":'
        + float.__repr__(ts)
        + (',"action":true' if event.action else "")
        + (',"merged":true}' if event.merged else "}")
    )


def _ack_json(event: AckEvent) -> str | None:
    """The ``ack`` line built directly, like :func:`_message_json`."""
    if type(event.id) is not str or type(event.index) is not int:
        return None
    return '{"event":"ack","id":' + _quote(event.id) + ',"index":' + int.__repr__(event.index) + "}"


class HeadlessPrinter:
    """Prints events as JSON lines; a status line only when its fields change.

    Lines are buffered: :meth:`flush` writes them out, once per batch of events.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last_status: dict[str, Any] | None = None

    def print_event(self, event: Event) -> None:
        kind = type(event)
        if kind is ChatMessageEvent or kind is AckEvent:
            text = _message_json(event) if kind is ChatMessageEvent else _ack_json(event)
            if text is not None:
                self._out.write(text + "\n")
                return
        line = event_line(event)
        if line is None:
            return
        if line["event"] == "status":
            if line == self._last_status:
                return
            self._last_status = line
        self._write(line)

    def error(self, message: str) -> None:
        self._write({"event": "error", "message": message})
        self.flush()

    def line_error(self, number: int, reason: str) -> None:
        """Input line ``number`` (from 1) was refused: nothing of it was sent."""
        self._write({"event": "error", "message": f"input line {number} not sent: {reason}",
                     "line": number})  # fmt: skip
        self.flush()

    def flush(self) -> None:
        self._out.flush()

    def _write(self, line: dict[str, Any]) -> None:
        self._out.write(_ENCODER.encode(line) + "\n")


async def run_headless(
    node: Node,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    *,
    install_signals: Callable[[Callable[[], None]], None] | None = None,
    end_of_input_timeout_s: float = END_OF_INPUT_TIMEOUT_S,
) -> int:
    """Run until ``/quit``, end of input, or a stop signal; then leave the channel.

    After ``/quit`` or the end of input, wait (at most ``end_of_input_timeout_s``) until
    every message sent is committed first. Returns how many messages were not committed
    when the node left (0: all were); an ``error`` line has said so.
    """
    printer = HeadlessPrinter(stdout or sys.stdout)
    queue = node.subscribe()
    unacked: set[str] = set()
    all_acked = asyncio.Event()
    all_acked.set()
    quit_requested = asyncio.Event()
    stop_signalled = asyncio.Event()

    def on_stop_signal() -> None:
        stop_signalled.set()
        quit_requested.set()

    if install_signals is not None:
        install_signals(on_stop_signal)

    def take(event: Event) -> None:
        if type(event) is AckEvent and event.id in unacked:
            unacked.discard(event.id)
            if not unacked:
                all_acked.set()
        printer.print_event(event)

    def sent(message_id: str) -> None:
        unacked.add(message_id)
        all_acked.clear()

    async def print_events() -> None:
        while True:
            take(await queue.get())
            while not queue.empty():  # everything published meanwhile, then one flush
                take(queue.get_nowait())
            printer.flush()

    lines = _read_lines_in_background(stdin or sys.stdin)

    async def read_input() -> None:
        number = 0
        try:
            while (batch := await lines.get()) is not None:
                for item in batch:
                    if isinstance(item, ReadFailure):
                        printer.error(
                            f"stopped reading input ({item.reason}); treating it as the end"
                        )
                        return
                    number += 1
                    if isinstance(item, UnreadableLine):
                        printer.line_error(number, item.reason)
                    elif await _handle_line(node, item, printer, number=number, on_sent=sent):
                        return
        except Exception as error:  # never leave the input unread without a word
            logger.exception("reading input failed")
            printer.error(f"stopped reading input ({error!r}); treating it as the end")
        finally:
            quit_requested.set()

    printer_task = asyncio.create_task(print_events())
    reader = asyncio.create_task(read_input())
    stopped = asyncio.create_task(node.wait_stopped())
    quitting = asyncio.create_task(quit_requested.wait())
    waits: set[asyncio.Task[Any]] = set()
    why = ""
    try:
        await asyncio.wait({stopped, quitting}, return_when=asyncio.FIRST_COMPLETED)
        if unacked and not stop_signalled.is_set() and not stopped.done():
            waits = {
                asyncio.create_task(all_acked.wait()),
                asyncio.create_task(stop_signalled.wait()),
            }
            await asyncio.wait(
                waits | {stopped}, timeout=end_of_input_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
            if not stop_signalled.is_set() and not stopped.done():
                why = f"waited {end_of_input_timeout_s:g} s"
        if stop_signalled.is_set():
            why = "a stop signal came first"
        elif stopped.done():
            why = "the node stopped"
        await node.leave()
    finally:
        for task in (reader, stopped, quitting, *waits):
            task.cancel()
        while not queue.empty():
            take(queue.get_nowait())
        printer.flush()
        printer_task.cancel()
        node.unsubscribe(queue)
    if unacked:
        count = len(unacked)
        printer.error(
            f"{count} message{'s' if count != 1 else ''} not committed before leaving"
            f"{f' ({why})' if why else ''}; {'they' if count != 1 else 'it'} may be lost"
        )
    return len(unacked)


def _read_lines_in_background(source: TextIO) -> asyncio.Queue[list[InputItem] | None]:
    """Batches of lines of ``source`` on a queue, None at the end.

    A daemon thread reads, so a blocking read never keeps the process alive after the
    node has left. From a real file descriptor it reads whatever is available at once
    and hands over all complete lines together: a script piping thousands of lines
    wakes the event loop once per read, not once per line. A line that cannot be read
    comes as an :class:`UnreadableLine`; a failure to read on as a :class:`ReadFailure`.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[InputItem] | None] = asyncio.Queue()

    def post(batch: list[InputItem] | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, batch)

    def pump() -> None:
        try:
            try:
                fd = source.fileno()
            except (OSError, ValueError, AttributeError):
                for line in source:
                    post([line])
            else:
                for batch in _line_batches(fd):
                    post(batch)
        except Exception as error:  # the reader must say why it stops, never just stop
            logger.warning("stopped reading input: %s", error)
            with contextlib.suppress(RuntimeError):
                post([ReadFailure(str(error) or type(error).__name__)])
        finally:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                post(None)

    threading.Thread(target=pump, name="raftchat-stdin", daemon=True).start()
    return queue


def _line_batches(
    fd: int, chunk_bytes: int = 1 << 16, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[list[InputItem]]:
    """Complete lines read from ``fd``, as many as each read returns. A line that is not
    UTF-8 or longer than ``max_line_bytes`` comes as an :class:`UnreadableLine` (its bytes
    are dropped as they arrive). A last line without a newline comes at the end of input."""
    partial = bytearray()
    dropped = 0
    """Bytes of the current line seen so far, once it is known to be too long (else 0)."""

    def finish() -> InputItem:
        nonlocal dropped
        if dropped:
            size, dropped = dropped, 0
            return UnreadableLine(
                f"it is longer than {max_line_bytes} bytes ({size} bytes; "
                f"a message is at most {MAX_MESSAGE_CHARS} characters)"
            )
        data = bytes(partial)
        partial.clear()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            return UnreadableLine(
                f"it is not valid UTF-8 (byte 0x{data[error.start]:02X} at byte "
                f"{error.start + 1}); input must be UTF-8 text"
            )

    while chunk := os.read(fd, chunk_bytes):
        *complete, rest = chunk.split(b"\n")
        batch: list[InputItem] = []
        for position, piece in enumerate((*complete, rest)):
            if dropped:
                dropped += len(piece)
            else:
                partial += piece
                if len(partial) > max_line_bytes:
                    dropped = len(partial)
                    partial.clear()
            if position < len(complete):
                batch.append(finish())
        if batch:
            yield batch
    if partial or dropped:
        yield [finish()]


def _control_char_problem(line: str) -> str | None:
    """Why ``line`` cannot be sent because of a control character, or None."""
    bad = _CONTROL_CHARS.search(line)
    if bad is None:
        return None
    code = ord(bad.group())
    name = f" ({_CONTROL_NAMES[code]})" if code in _CONTROL_NAMES else ""
    return (
        f"it contains the control character U+{code:04X}{name} at column {bad.start() + 1}; "
        "messages and commands may not contain control characters other than tab"
    )


async def _handle_line(
    node: Node,
    line: str,
    printer: HeadlessPrinter,
    *,
    number: int | None = None,
    on_sent: Callable[[str], None] | None = None,
) -> bool:
    """Act on one input line (``number``, from 1, names it in errors); True when it asks
    to quit. ``on_sent`` gets the id of each message sent. Never raises: whatever goes
    wrong with the line is an ``error`` line, and the next line is read."""

    def refuse(reason: str) -> None:
        if number is None:
            printer.error(reason)
        else:
            printer.line_error(number, reason)

    line = line.rstrip("\r\n")
    problem = _control_char_problem(line)
    if problem is not None:
        refuse(problem)
        return False
    try:
        match HEADLESS_COMMANDS.parse(line):
            case SendText(text, action):
                message_id = node.send_chat(text, action=action)
                if on_sent is not None:
                    on_sent(message_id)
            case RunCommand("/quit"):
                return True
            case RunCommand("/nick", nick):
                await node.set_nick(nick)
            case Forget(names, confirm):
                warning = node.forget(names, confirm)
                if warning is not None:
                    refuse(f"/forget needs {CONFIRM}: {warning}")
            case InputProblem(message):
                refuse(message)
    except (ChatInputError, NodeError) as error:
        refuse(str(error))
    except Exception as error:
        logger.exception("input line %s failed", number)
        refuse(f"it could not be handled ({error!r})")
    return False
