"""The chat state as snapshot bytes, and strict reading of them back.

Two states fed the same entries must give byte-identical snapshots: sessions are
written least recently active first, members sorted, history in log order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgpack

from raftchat.chat.events import MessageApplied
from raftchat.chat.rules import (
    MAX_UINT64,
    ChatLimits,
    action_problem,
    client_id_problem,
    serial_problem,
    stored_nick_problem,
    stored_timestamp_problem,
    text_problem,
)
from raftchat.chat.sessions import SessionTable
from raftchat.chat.signing import Signature, signature_field_problem
from raftchat.limits import node_id_problem
from raftchat.raft.codec import packer
from raftchat.raft.messages import NodeId

logger = logging.getLogger(__name__)

SNAPSHOT_VERSION = 3
"""First element of every encoded snapshot. Version 3 added each message's signature,
version 2 whether it was merged from another cluster and the merge counts; versions 1
and 2 still read."""


class ChatSnapshotError(ValueError):
    """A chat snapshot is corrupt or of an unknown version; the message says what is wrong."""


@dataclass(slots=True)
class SnapshotContents:
    """Everything a chat snapshot holds."""

    last_applied_index: int
    invalid_commands: int
    duplicates_dropped: int
    voters: frozenset[NodeId]
    learners: frozenset[NodeId]
    sessions: SessionTable
    history: Iterable[MessageApplied]
    """Messages in log order (the newest ones, as many as the state keeps)."""
    merged_counts: Mapping[str, int]
    """Per source cluster id, merged messages applied since its last MergeDone."""


def encode_snapshot(contents: SnapshotContents) -> bytes:
    """The snapshot bytes; the same contents always give the same bytes."""
    sessions = [
        [client_id, session.nick, [list(pair) for pair in session.recent]]
        for client_id, session in contents.sessions.items()
    ]
    history = [
        [
            m.index,
            m.client_id,
            m.serial,
            m.nick,
            m.text,
            m.ts,
            m.action,
            m.merged,
            None if m.signature is None else list(m.signature),
        ]
        for m in contents.history
    ]
    return packer().pack(
        [
            SNAPSHOT_VERSION,
            contents.last_applied_index,
            contents.invalid_commands,
            contents.duplicates_dropped,
            sorted(contents.voters),
            sorted(contents.learners),
            sessions,
            history,
            sorted([source, count] for source, count in contents.merged_counts.items()),
        ]
    )


def decode_snapshot(data: bytes, limits: ChatLimits) -> SnapshotContents:
    """Read :func:`encode_snapshot` bytes, checking every field against ``limits``.
    Raises :class:`ChatSnapshotError` on anything malformed. Nicks and message times are
    checked with the ``stored_*`` rules: a snapshot from before the message time range and
    the refusal of invisible nick characters still loads."""
    return _SnapshotReader(limits).read(data)


class _SnapshotReader:
    """Strict validation of snapshot bytes, field by field."""

    def __init__(self, limits: ChatLimits) -> None:
        self.limits = limits
        self.last_applied_index = 0
        self.version = SNAPSHOT_VERSION

    def read(self, data: bytes) -> SnapshotContents:
        if type(data) is not bytes:
            raise ChatSnapshotError(f"chat snapshot must be bytes, got {type(data).__name__}")
        try:
            items = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
        except Exception as exc:  # msgpack may raise outside its own hierarchy
            detail = str(exc) or type(exc).__name__
            raise ChatSnapshotError(f"chat snapshot is not valid msgpack: {detail}") from None
        if type(items) is not list or not items:
            raise ChatSnapshotError("chat snapshot must be a non-empty array")
        version = items[0]
        if version not in (1, 2, SNAPSHOT_VERSION) or type(version) is not int:
            raise ChatSnapshotError(f"unknown chat snapshot version {version!r}")
        self.version = version
        fields = 8 if version == 1 else 9
        if len(items) != fields:
            raise ChatSnapshotError(f"chat snapshot needs {fields} fields, got {len(items)}")
        _, last_applied, invalid, duplicates, voters, learners, sessions, history = items[:8]
        merged_counts = self._read_merged_counts(items[8] if version > 1 else [])
        self.last_applied_index = self._count(last_applied, "last applied index")
        invalid_commands = self._count(invalid, "invalid command count")
        duplicates_dropped = self._count(duplicates, "duplicate count")
        voter_ids = self._node_ids(voters, "voters")
        learner_ids = self._node_ids(learners, "learners")
        if voter_ids & learner_ids:
            raise ChatSnapshotError("chat snapshot: a node is both voter and learner")
        return SnapshotContents(
            self.last_applied_index,
            invalid_commands,
            duplicates_dropped,
            voter_ids,
            learner_ids,
            self._read_sessions(sessions),
            self._read_history(history),
            merged_counts,
        )

    def _read_merged_counts(self, value: object) -> dict[str, int]:
        if type(value) is not list:
            raise ChatSnapshotError("chat snapshot: merge counts must be a list")
        counts: dict[str, int] = {}
        for record in value:
            if type(record) is not list or len(record) != 2 or type(record[0]) is not str:
                raise ChatSnapshotError("chat snapshot: a merge count must be [cluster, count]")
            if node_id_problem(record[0]) or record[0] in counts:
                raise ChatSnapshotError("chat snapshot: bad cluster id in the merge counts")
            counts[record[0]] = self._count(record[1], "merge count")
        return counts

    def _count(self, value: object, what: str) -> int:
        if type(value) is not int or not 0 <= value <= MAX_UINT64:
            raise ChatSnapshotError(f"chat snapshot: {what} must be a non-negative integer")
        return value

    def _index(self, value: object, what: str) -> int:
        if type(value) is not int or not 1 <= value <= self.last_applied_index:
            raise ChatSnapshotError(
                f"chat snapshot: {what} must be an index in 1..{self.last_applied_index},"
                f" got {value!r}"
            )
        return value

    def _node_ids(self, value: object, what: str) -> frozenset[NodeId]:
        if type(value) is not list or any(type(node) is not str or not node for node in value):
            raise ChatSnapshotError(f"chat snapshot: {what} must be a list of node ids")
        if value != sorted(set(value)):
            raise ChatSnapshotError(f"chat snapshot: {what} must be sorted and unique")
        return frozenset(value)

    def _read_sessions(self, sessions: object) -> SessionTable:
        limits = self.limits
        if type(sessions) is not list or len(sessions) > limits.max_sessions:
            raise ChatSnapshotError(
                f"chat snapshot: sessions must be a list of at most {limits.max_sessions}"
            )
        table = SessionTable(limits.max_sessions, limits.serials_remembered)
        for record in sessions:
            if type(record) is not list or len(record) != 3:
                raise ChatSnapshotError("chat snapshot: a session must be [client, nick, pairs]")
            client_id, nick, pairs = record
            problem = client_id_problem(client_id)
            if problem or client_id in table:
                raise ChatSnapshotError(
                    f"chat snapshot: bad session client id: {problem or 'twice'}"
                )
            if nick != "" and stored_nick_problem(nick, limits):
                raise ChatSnapshotError(f"chat snapshot: session {client_id}: bad nick {nick!r}")
            table.restore(client_id, nick, self._read_pairs(client_id, pairs))
        return table

    def _read_pairs(self, client_id: str, pairs: object) -> deque[tuple[int, int]]:
        limit = self.limits.serials_remembered
        if type(pairs) is not list or not 1 <= len(pairs) <= limit:
            raise ChatSnapshotError(
                f"chat snapshot: session {client_id} needs 1..{limit} (serial, index) pairs"
            )
        recent: deque[tuple[int, int]] = deque(maxlen=limit)
        for pair in pairs:
            if type(pair) is not list or len(pair) != 2:
                raise ChatSnapshotError(f"chat snapshot: session {client_id}: bad pair {pair!r}")
            serial = pair[0]
            problem = serial_problem(serial)
            if problem:
                raise ChatSnapshotError(f"chat snapshot: session {client_id}: {problem}")
            index = self._index(pair[1], f"session {client_id} index")
            if recent and (serial <= recent[-1][0] or index <= recent[-1][1]):
                raise ChatSnapshotError(
                    f"chat snapshot: session {client_id}: serials and indexes must increase"
                )
            recent.append((serial, index))
        return recent

    def _read_history(self, history: object) -> list[MessageApplied]:
        if type(history) is not list:
            raise ChatSnapshotError("chat snapshot: history must be a list")
        messages: list[MessageApplied] = []
        previous_index = 0
        fields = {1: 7, 2: 8}.get(self.version, 9)
        for record in history:
            if type(record) is not list or len(record) != fields:
                raise ChatSnapshotError(f"chat snapshot: a history record needs {fields} fields")
            index, client_id, serial, nick, text, ts, action = record[:7]
            merged = record[7] if fields >= 8 else False
            raw_signature = record[8] if fields == 9 else None
            self._index(index, "history index")
            if index <= previous_index:
                raise ChatSnapshotError("chat snapshot: history indexes must increase")
            previous_index = index
            problem = (
                client_id_problem(client_id)
                or serial_problem(serial)
                or stored_nick_problem(nick, self.limits)
                or text_problem(text, self.limits)
                or stored_timestamp_problem(ts)
                or action_problem(action)
                or action_problem(merged)
                or signature_field_problem(raw_signature)
            )
            if problem:
                raise ChatSnapshotError(f"chat snapshot: history entry {index}: {problem}")
            messages.append(
                MessageApplied(
                    index,
                    f"{client_id}:{serial}",
                    client_id,
                    serial,
                    nick,
                    text,
                    ts,
                    action,
                    merged,
                    None if raw_signature is None else Signature(*raw_signature),
                )
            )
        return messages
