"""Headless mode: stdin lines in, one JSON object per line out (for bots, scripts, tests).

Input: each line is a chat message; ``/nick NAME`` renames, ``/me ACTION`` sends
an action, ``/quit`` leaves (so does end of input); :mod:`raftchat.frontends.commands`
is the grammar. Output, nothing else on stdout:

- ``{"event":"status","node_id","state","term","leader","voters","learners",
  "commit_index","last_index","snapshot_index"}`` whenever one of these changes (index changes are
  reported at most every few hundred milliseconds, not once per message);
- ``{"event":"message","index","id","nick","text","ts"}`` for each committed chat
  message in log order, including the history a joining node receives;
- ``{"event":"ack","id","index"}`` when this node's own message is committed;
- ``{"event":"error","message"}``.

Text is printed as JSON strings, so control characters arrive escaped and can
never drive the reader's terminal.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

from raftchat.frontends.commands import HEADLESS_COMMANDS, InputProblem, RunCommand, SendText
from raftchat.node import Node, NodeError
from raftchat.node.api import (
    AckEvent,
    ChatInputError,
    ChatMessageEvent,
    ErrorEvent,
    Event,
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
)

_STATE_ALIASES = {"pre_candidate": "candidate"}


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
            return line
        case ChatMessageEvent():
            return {
                "event": "message",
                "index": event.index,
                "id": event.id,
                "nick": event.nick,
                "text": event.text,
                "ts": event.ts,
                **({"action": True} if event.action else {}),
            }
        case AckEvent():
            return {"event": "ack", "id": event.id, "index": event.index}
        case ErrorEvent():
            return {"event": "error", "message": event.message}
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
        and math.isfinite(ts)
    ):
        return None
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
        + (',"action":true}' if event.action else "}")
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
) -> None:
    """Run until ``/quit``, end of input, or a stop signal; then leave the channel."""
    printer = HeadlessPrinter(stdout or sys.stdout)
    queue = node.subscribe()
    quit_requested = asyncio.Event()
    if install_signals is not None:
        install_signals(quit_requested.set)

    async def print_events() -> None:
        while True:
            printer.print_event(await queue.get())
            while not queue.empty():  # everything published meanwhile, then one flush
                printer.print_event(queue.get_nowait())
            printer.flush()

    lines = _read_lines_in_background(stdin or sys.stdin)

    async def read_input() -> None:
        while (batch := await lines.get()) is not None:
            for line in batch:
                if await _handle_line(node, line.rstrip("\r\n"), printer):
                    quit_requested.set()
                    return
        quit_requested.set()

    printer_task = asyncio.create_task(print_events())
    reader = asyncio.create_task(read_input())
    stopped = asyncio.create_task(node.wait_stopped())
    quitting = asyncio.create_task(quit_requested.wait())
    try:
        await asyncio.wait({stopped, quitting}, return_when=asyncio.FIRST_COMPLETED)
        await node.leave()
    finally:
        for task in (reader, stopped, quitting):
            task.cancel()
        while not queue.empty():
            printer.print_event(queue.get_nowait())
        printer.flush()
        printer_task.cancel()
        node.unsubscribe(queue)


def _read_lines_in_background(source: TextIO) -> asyncio.Queue[list[str] | None]:
    """Batches of lines of ``source`` on a queue, None at the end.

    A daemon thread reads, so a blocking read never keeps the process alive after the
    node has left. From a real file descriptor it reads whatever is available at once
    and hands over all complete lines together: a script piping thousands of lines
    wakes the event loop once per read, not once per line.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[str] | None] = asyncio.Queue()

    def post(batch: list[str] | None) -> None:
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
        except (OSError, ValueError) as error:
            logger.warning("stopped reading input: %s", error)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                post(None)

    threading.Thread(target=pump, name="raftchat-stdin", daemon=True).start()
    return queue


def _line_batches(fd: int, chunk_bytes: int = 1 << 16) -> Iterator[list[str]]:
    """Complete lines read from ``fd``, as many as each read returns (UTF-8; invalid
    bytes become U+FFFD). A last line without a newline comes at the end of input."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    partial = ""
    while chunk := os.read(fd, chunk_bytes):
        text = partial + decoder.decode(chunk)
        *lines, partial = text.split("\n")
        if lines:
            yield lines
    partial += decoder.decode(b"", final=True)
    if partial:
        yield [partial]


async def _handle_line(node: Node, line: str, printer: HeadlessPrinter) -> bool:
    """Act on one input line; True when it asks to quit."""
    try:
        match HEADLESS_COMMANDS.parse(line):
            case SendText(text, action):
                node.send_chat(text, action=action)
            case RunCommand("/quit"):
                return True
            case RunCommand("/nick", nick):
                await node.set_nick(nick)
            case InputProblem(message):
                printer.error(message)
    except (ChatInputError, NodeError) as error:
        printer.error(str(error))
    return False
