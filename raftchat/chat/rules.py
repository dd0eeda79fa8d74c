"""What a chat command and its log entry must satisfy to be applied: the protocol limits.

The naming and size rules themselves live in :mod:`raftchat.limits`; :class:`ChatLimits`
holds the values a :class:`~raftchat.chat.state.ChatState` applies them with (the defaults
are those rules' values; tests shrink them).

Two rules were narrowed after entries had been committed under the wider ones: a message
time must lie in :data:`~raftchat.limits.MIN_MESSAGE_MS`..:data:`~raftchat.limits.MAX_MESSAGE_MS`
and a nick must hold no invisible character. A new entry that breaks them is applied as a
no-op; a snapshot is read with the ``stored_*`` rules, the wider ones, so state committed
before still loads.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from raftchat.limits import (
    MAX_MESSAGE_CHARS,
    MAX_NICK_CHARS,
    message_time_problem,
    node_id_problem,
)
from raftchat.limits import nick_problem as _nick_rule
from raftchat.limits import stored_nick_problem as _stored_nick_rule
from raftchat.limits import text_problem as _text_rule

logger = logging.getLogger(__name__)

MAX_UINT64 = 2**64 - 1
"""Largest serial and count."""
MAX_INT64 = 2**63 - 1
"""Largest timestamp a snapshot may hold (what the encoding allowed before the message time
range, :func:`timestamp_problem`)."""


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """Limits every member must agree on: they decide whether a command is applied.

    Changing a limit changes which log entries are applied, so these are part of
    the protocol, not user settings.
    """

    max_text_chars: int = MAX_MESSAGE_CHARS
    """Longest message text, in characters (code points)."""
    max_nick_chars: int = MAX_NICK_CHARS
    """Longest nick, in characters (see :func:`raftchat.limits.nick_problem`)."""
    max_sessions: int = 4_096
    """Client sessions kept; beyond this the least recently active client is forgotten."""
    serials_remembered: int = 32
    """Per client, how many recent (serial, index) pairs are kept so a duplicate can point
    at its original index."""

    def __post_init__(self) -> None:
        for name in ("max_text_chars", "max_nick_chars", "max_sessions", "serials_remembered"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"ChatLimits.{name} must be a positive integer, got {value!r}")

    @property
    def max_command_bytes(self) -> int:
        """Upper bound of an encoded command (UTF-8 is at most 4 bytes per character)."""
        # ids, serial, ts, and a signature: a 32-byte key and 64-byte signature
        return 4 * (self.max_text_chars + self.max_nick_chars) + 320


DEFAULT_LIMITS = ChatLimits()


def nick_problem(nick: object, limits: ChatLimits = DEFAULT_LIMITS) -> str | None:
    """Why ``nick`` is not acceptable under ``limits``, or None if it is."""
    if type(nick) is str:
        return _known_nick_problem(nick, limits.max_nick_chars)
    return _nick_rule(nick, limits.max_nick_chars)


KNOWN_NICKS = 1024
"""Nicks whose verdict is kept: every entry names its author's nick, a channel has few."""

_known_nick_problem = functools.lru_cache(maxsize=KNOWN_NICKS)(_nick_rule)


def stored_nick_problem(nick: object, limits: ChatLimits = DEFAULT_LIMITS) -> str | None:
    """Why ``nick`` cannot be in a snapshot, or None: :func:`nick_problem` without its refusal
    of invisible characters, which earlier releases applied without."""
    return _stored_nick_rule(nick, limits.max_nick_chars)


def text_problem(text: object, limits: ChatLimits = DEFAULT_LIMITS) -> str | None:
    """Why ``text`` is not acceptable as a message under ``limits``, or None."""
    return _text_rule(text, limits.max_text_chars)


def client_id_problem(client_id: object) -> str | None:
    """Why ``client_id`` (the node id of a sender) is not acceptable, or None."""
    return node_id_problem(client_id, what="client id")


def serial_problem(serial: object) -> str | None:
    if type(serial) is not int or not 1 <= serial <= MAX_UINT64:
        return f"serial must be a positive integer, got {serial!r}"
    return None


def prev_serial_problem(prev_serial: object) -> str | None:
    """Why ``prev_serial`` (the serial a command follows; 0 for none) is not acceptable."""
    if type(prev_serial) is not int or not 0 <= prev_serial <= MAX_UINT64:
        return f"previous serial must be a non-negative integer, got {prev_serial!r}"
    return None


def timestamp_problem(ts: object) -> str | None:
    """Why ``ts`` is not acceptable as the time of a new message, or None (see
    :func:`raftchat.limits.message_time_problem`)."""
    return message_time_problem(ts)


def stored_timestamp_problem(ts: object) -> str | None:
    """Why ``ts`` cannot be the time of a message in a snapshot, or None: any non-negative
    64-bit integer, as earlier releases applied them. Front ends clamp it for display."""
    if type(ts) is not int or not 0 <= ts <= MAX_INT64:
        return f"timestamp must be a non-negative integer (Unix ms), got {ts!r}"
    return None


def action_problem(action: object) -> str | None:
    return None if type(action) is bool else "action must be true or false"
