"""The chat as of the last applied entry: history window, sessions, nicks, members."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable

from raftchat.chat.commands import (
    ChatMessage,
    Command,
    InvalidCommandError,
    Leave,
    MergedMessage,
    MergeDone,
    decode_command,
    signed_content,
)
from raftchat.chat.events import (
    ChatEvent,
    DuplicateDropped,
    InvalidCommand,
    LeaveRequested,
    MemberJoined,
    MemberLeft,
    MemberRoleChanged,
    MergeCompleted,
    MergedDuplicate,
    MessageApplied,
    NickChanged,
    OutOfOrderDropped,
)
from raftchat.chat.rules import DEFAULT_LIMITS, ChatLimits, client_id_problem, serial_problem
from raftchat.chat.sessions import SessionTable
from raftchat.chat.signing import signature_problem
from raftchat.chat.snapshot import SnapshotContents, decode_snapshot, encode_snapshot
from raftchat.limits import MAX_NODE_ID_CHARS
from raftchat.raft.messages import Entry, EntryKind, NodeId

logger = logging.getLogger(__name__)

DEFAULT_HISTORY_LIMIT = 10_000
"""Messages kept for snapshots so a joining node sees recent history."""


class ChatState:
    """The chat as of ``last_applied_index``: history window, sessions, nicks, members."""

    def __init__(
        self,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        limits: ChatLimits = DEFAULT_LIMITS,
        channel: str = "",
    ) -> None:
        if type(history_limit) is not int or history_limit < 1:
            raise ValueError(f"history_limit must be a positive integer, got {history_limit!r}")
        self.limits = limits
        self.channel = channel
        """The channel's name: part of what every signed command covers."""
        self.history_limit = history_limit
        self._last_applied_index = 0
        self._history: deque[MessageApplied] = deque(maxlen=history_limit)
        self._message_ids: dict[str, int] = {}
        """The ids of the messages in the history window, with their index: a message
        (merged, or a retry of one that was merged meanwhile) is applied only if its id
        is not among them."""
        self._merged_counts: dict[str, int] = {}
        """Per source cluster, merged messages applied since its last MergeDone."""
        self._sessions = SessionTable(limits.max_sessions, limits.serials_remembered)
        self._voters: frozenset[NodeId] = frozenset()
        self._learners: frozenset[NodeId] = frozenset()
        self.invalid_commands = 0
        """Malformed commands applied as no-ops (same count on every node)."""
        self.duplicates_dropped = 0
        """Duplicate serials dropped (same count on every node)."""

    # --- queries ---

    @property
    def last_applied_index(self) -> int:
        return self._last_applied_index

    @property
    def voters(self) -> frozenset[NodeId]:
        """Voters as last given to :meth:`apply_membership`."""
        return self._voters

    @property
    def learners(self) -> frozenset[NodeId]:
        return self._learners

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def history(self) -> list[MessageApplied]:
        """The latest ``history_limit`` messages, in log order."""
        return list(self._history)

    def has_message(self, message_id: str) -> bool:
        """Whether the message with this id is in the history window."""
        return message_id in self._message_ids

    def nick_of(self, client_id: str) -> str | None:
        """The client's current nick (empty if it never sent a valid one), or None if the
        client is not (or no longer) known."""
        return self._sessions.nick_of(client_id)

    def nicks(self) -> dict[str, str]:
        """Client id → current nick, for every known client."""
        return self._sessions.nicks()

    def last_serial(self, client_id: str) -> int:
        """The highest serial applied (or used up by an invalid command) for the client; 0
        if unknown."""
        return self._sessions.last_serial(client_id)

    def display_name(self, client_id: str, nick: str | None = None) -> str:
        """How to show a client: its nick, plus ``#<id prefix>`` when another known client
        uses the same nick (``ada`` vs ``ada#3f2a``). ``nick`` defaults to the current one
        (pass a message's own nick to show history as it was written)."""
        return self._sessions.display_name(client_id, nick)

    # --- applying ---

    def apply(
        self, entry: Entry, *, proposed: tuple[Command, int] | None = None
    ) -> list[ChatEvent]:
        """Apply the next committed entry. Entries must come in log order without gaps
        (after :meth:`restore`, starting right after the snapshot's index).

        ``proposed``: the command and ``prev_serial`` the caller encoded into these very
        bytes (under this state's limits) and signed with the key of the entry's client,
        for its serial: a node applying its own proposal. They are neither decoded nor
        checked again (the signature check is the most expensive step of applying an
        entry); the outcome is the same."""
        expected = self._last_applied_index + 1
        if entry.index != expected:
            raise ValueError(f"entry {entry.index} applied out of order: expected {expected}")
        self._last_applied_index = entry.index
        if entry.kind != EntryKind.NORMAL:
            return []
        return self._apply_normal(entry, proposed)

    def _apply_normal(
        self, entry: Entry, proposed: tuple[Command, int] | None = None
    ) -> list[ChatEvent]:
        """The client session rule: serial ``s`` of a client applies only above the
        client's last applied serial (else it is a duplicate) and right after the serial it
        names as its predecessor, unless it names none (else it is out of order)."""
        problem = client_id_problem(entry.client_id) or serial_problem(entry.serial)
        if problem:
            return [self._invalid(entry, problem)]
        session = self._sessions.get(entry.client_id)
        last_serial, old_nick = (session.last_serial, session.nick) if session else (0, "")
        if entry.serial <= last_serial:
            assert session is not None  # serials are positive: the client is known
            self.duplicates_dropped += 1
            original = next((i for s, i in session.recent if s == entry.serial), 0)
            return [DuplicateDropped(entry.index, entry.client_id, entry.serial, original)]
        if proposed is not None:
            command, prev_serial = proposed
        else:
            try:
                command, prev_serial = decode_command(entry.data, self.limits)
            except InvalidCommandError as exc:
                # It cannot say which serial it follows: it uses up its serial where it is.
                self._record_serial(entry, nick=old_nick)
                return [self._invalid(entry, str(exc))]
        if prev_serial and prev_serial != last_serial:
            logger.debug("entry %d: %s#%d out of order", entry.index, entry.client_id, entry.serial)
            return [OutOfOrderDropped(entry.index, entry.client_id, entry.serial, last_serial)]
        problem = None if proposed is not None else self._forgery(entry, command)
        if problem:
            self._record_serial(entry, nick=old_nick)
            return [self._invalid(entry, f"not its author's: {problem}")]
        if isinstance(command, Leave):
            self._record_serial(entry, nick=old_nick)
            return [LeaveRequested(entry.index, entry.client_id, command.incarnation)]
        if isinstance(command, MergedMessage):
            self._record_serial(entry, nick=old_nick)
            return [self._apply_merged(entry, command)]
        if isinstance(command, MergeDone):
            self._record_serial(entry, nick=old_nick)
            count = self._merged_counts.pop(command.source, 0)
            return [MergeCompleted(entry.index, command.source, entry.client_id, count)]
        message_id = f"{entry.client_id}:{entry.serial}"
        if isinstance(command, ChatMessage) and message_id in self._message_ids:
            # Merged in from the sender's earlier cluster already (the sender retried it
            # after leaving that cluster): the channel has it once.
            self._record_serial(entry, nick=old_nick)
            self.duplicates_dropped += 1
            original = self._message_ids[message_id]
            return [DuplicateDropped(entry.index, entry.client_id, entry.serial, original)]
        events: list[ChatEvent] = []
        if command.nick != old_nick:
            events.append(NickChanged(entry.index, entry.client_id, old_nick, command.nick))
        self._record_serial(entry, nick=command.nick)
        if isinstance(command, ChatMessage):
            message = MessageApplied(  # positional: index, id, client_id, serial, nick, ...
                entry.index,
                f"{entry.client_id}:{entry.serial}",
                entry.client_id,
                entry.serial,
                command.nick,
                command.text,
                command.ts,
                command.action,
                signature=command.signature,
            )
            self._remember(message)
            events.append(message)
        return events

    def _apply_merged(self, entry: Entry, command: MergedMessage) -> ChatEvent:
        """A message from another cluster's history, unless the channel already has it."""
        message_id = command.message_id
        if message_id in self._message_ids:
            self.duplicates_dropped += 1
            return MergedDuplicate(entry.index, message_id, entry.client_id)
        message = MessageApplied(
            entry.index,
            message_id,
            command.client_id,
            command.serial,
            command.nick,
            command.text,
            command.ts,
            command.action,
            merged=True,
            signature=command.signature,
        )
        self._remember(message)
        self._merged_counts[command.source] = self._merged_counts.get(command.source, 0) + 1
        return message

    def _forgery(self, entry: Entry, command: Command) -> str | None:
        """Why ``command`` is not what its author signed, or None (:mod:`.signing`). A
        merged message was signed by its original author, for its original serial."""
        if isinstance(command, MergeDone):
            return None
        author, serial = entry.client_id, entry.serial
        if isinstance(command, MergedMessage):
            author, serial = command.client_id, command.serial
        tag, fields = signed_content(command)
        return signature_problem(self.channel, author, serial, tag, fields, command.signature)

    def _remember(self, message: MessageApplied) -> None:
        history = self._history
        if len(history) == history.maxlen:
            self._message_ids.pop(history[0].id, None)
        history.append(message)
        self._message_ids[message.id] = message.index

    def _invalid(self, entry: Entry, reason: str) -> InvalidCommand:
        self.invalid_commands += 1
        client_id = entry.client_id if type(entry.client_id) is str else ""
        serial = entry.serial if type(entry.serial) is int else 0
        logger.warning("entry %d: invalid chat command applied as no-op: %s", entry.index, reason)
        return InvalidCommand(entry.index, reason, client_id[:MAX_NODE_ID_CHARS], serial)

    def _record_serial(self, entry: Entry, nick: str) -> None:
        self._sessions.record(entry.client_id, entry.serial, entry.index, nick)

    def apply_membership(
        self, index: int, voters: Iterable[NodeId], learners: Iterable[NodeId]
    ) -> list[ChatEvent]:
        """Record the configuration of the CONFIG entry at ``index`` (call it right after
        :meth:`apply` of that entry, or after a restore with the snapshot's configuration)
        and return join/leave/role notices for what changed, sorted by node id."""
        new_voters = frozenset(voters)
        new_learners = frozenset(learners) - new_voters
        old_members = self._voters | self._learners
        events: list[ChatEvent] = []
        for node_id in sorted(old_members | new_voters | new_learners):
            was_member = node_id in old_members
            was_voter = node_id in self._voters
            is_voter = node_id in new_voters
            is_member = is_voter or node_id in new_learners
            if is_member and not was_member:
                events.append(MemberJoined(index, node_id, is_voter))
            elif was_member and not is_member:
                events.append(MemberLeft(index, node_id))
            elif is_member and was_voter != is_voter:
                events.append(MemberRoleChanged(index, node_id, is_voter))
        self._voters, self._learners = new_voters, new_learners
        return events

    # --- snapshots ---

    def snapshot(self) -> bytes:
        """The whole state in msgpack; the same state always gives the same bytes."""
        return encode_snapshot(
            SnapshotContents(
                self._last_applied_index,
                self.invalid_commands,
                self.duplicates_dropped,
                self._voters,
                self._learners,
                self._sessions,
                self._history,
                self._merged_counts,
            )
        )

    @classmethod
    def restore(
        cls,
        data: bytes,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        limits: ChatLimits = DEFAULT_LIMITS,
        channel: str = "",
    ) -> ChatState:
        """Rebuild a state from :meth:`snapshot` bytes, checking every field. Raises
        :class:`~raftchat.chat.snapshot.ChatSnapshotError` on anything malformed. A history
        longer than ``history_limit`` keeps its newest messages."""
        state = cls(history_limit, limits, channel)
        contents = decode_snapshot(data, limits)
        state._last_applied_index = contents.last_applied_index
        state.invalid_commands = contents.invalid_commands
        state.duplicates_dropped = contents.duplicates_dropped
        state._voters, state._learners = contents.voters, contents.learners
        state._sessions = contents.sessions
        for message in contents.history:
            state._remember(message)
        state._merged_counts = dict(contents.merged_counts)
        return state
