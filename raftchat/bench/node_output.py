"""What one run of a headless node printed, as far as the benchmark needs it.

Only what the scenarios use is kept: the latest status (and every status with its read
time), when each benchmark message was first shown, and when each of the node's own
messages was acknowledged. ``message`` and ``ack`` lines, by far the most frequent, are
read without a JSON parse: the benchmark shares the machine's cores with the nodes it
measures, so its own work per message must stay small.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "bm"
"""Benchmark message texts start with a token ``bm<run>-<n>`` followed by a space."""
_TOKEN_PREFIX_BYTES = TOKEN_PREFIX.encode()
_TOKEN_SCAN_BYTES = 64

_MESSAGE_START = b'{"event":"message","index":'
_ACK_START = b'{"event":"ack","id":"'
_TEXT_KEY = b'","text":"'


def token_of(text: str) -> str | None:
    """The benchmark token a message text starts with, or None for other messages."""
    if not text.startswith(TOKEN_PREFIX):
        return None
    return text.split(" ", 1)[0]


@dataclass
class NodeEvents:
    """What one run of a node printed, with the reader's time of each line."""

    name: str
    """The node's name (for logs)."""
    node_id: str | None = None
    status: dict[str, Any] | None = None
    statuses: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    shown: dict[str, float] = field(default_factory=dict)
    """token -> when the message carrying it was first printed."""
    own_tokens: dict[str, str] = field(default_factory=dict)
    """message id -> token, for messages this node sent."""
    acked: dict[str, float] = field(default_factory=dict)
    """token -> when this node printed the ack of its own message."""
    own_shown: int = 0
    """This node's own benchmark messages it has printed (committed and applied)."""
    last_message_index: int = 0
    errors: list[str] = field(default_factory=list)

    def read(self, line: bytes, now: float) -> None:
        """Take in one stdout line (without its newline) read at ``now``."""
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
            self.errors.append(f"not JSON: {line[:200]!r}")
            return
        if isinstance(event, dict):
            self.record(event, now)
        else:
            self.errors.append(f"not a JSON object: {line[:200]!r}")

    def record(self, event: dict[str, Any], now: float) -> None:
        """Take in one parsed event read at ``now``."""
        kind = event.get("event")
        if kind == "message":
            self._record_message(event["index"], event["id"], token_of(event["text"]), now)
        elif kind == "ack":
            self._record_ack(event["id"], now)
        elif kind == "status":
            self.node_id = event["node_id"]
            self.status = event
            self.statuses.append((now, event))
        elif kind == "error":
            self.errors.append(event.get("message", ""))
            logger.debug("node %s error: %s", self.name, event.get("message"))

    def _record_message(self, index: int, message_id: str, token: str | None, now: float) -> None:
        self.last_message_index = max(self.last_message_index, index)
        if token is not None:
            first_time = token not in self.shown
            if first_time:
                self.shown[token] = now
            if self.node_id and message_id.startswith(self.node_id + ":"):
                self.own_shown += first_time
                self.own_tokens[message_id] = token

    def _record_ack(self, message_id: str, now: float) -> None:
        token = self.own_tokens.pop(message_id, None)
        if token is not None:
            self.acked.setdefault(token, now)


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
