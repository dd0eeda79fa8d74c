"""The replicated state machine: chat messages, nicks, client sessions, membership notices.

Every node applies the same committed log entries in the same order to a
:class:`ChatState`, so every node must reach the same state: applying is
deterministic (no clock, no randomness, no dict-order surprises) and two states
fed the same entries produce byte-identical snapshots.

Commands
    The ``data`` of a NORMAL log entry is one command, :class:`ChatMessage` or
    :class:`NickChange`, encoded by :func:`encode_command` as a msgpack array
    ``[version, tag, *fields]``. The entry also carries the client session
    (``client_id``, ``serial``); the client id is the node id of the sender.

Malformed commands
    A command that does not decode or breaks :class:`ChatLimits` is applied as a
    no-op: it yields :class:`InvalidCommand`, is counted and logged, and still
    uses up its serial, so every node does exactly the same thing.

Client sessions
    A client numbers its proposals with increasing serials (1, 2, 3, ...) and
    retries a proposal with the *same* serial after a leader change. A serial
    at or below the last applied serial of that client is a duplicate: it is
    dropped with :class:`DuplicateDropped`, pointing at the index where the
    original was applied (0 when that is no longer known). For this to never
    drop a message that was not applied, a client must let serial ``n + 1``
    commit only after serial ``n``: send proposals in serial order and, after
    a leader change, re-send every unacknowledged one in serial order before
    any new one. A restarted client must continue above every serial it may
    have proposed before (not only above :meth:`ChatState.last_serial`, since
    proposals still in flight may commit later).

    Sessions are bounded (:attr:`ChatLimits.max_sessions`): beyond the cap the
    least recently active client is forgotten. A forgotten client retrying an
    old serial would be applied twice; with the cap far above the number of
    members (at most a few dozen are active at once) a client is only
    forgotten after thousands of other clients were active since its last
    proposal, long after any retry of it. Keeping every client ever seen is
    not bounded: each new install of the app is a new node id.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgpack

from raftchat.raft.messages import Entry, EntryKind, NodeId

logger = logging.getLogger(__name__)

COMMAND_VERSION = 1
"""First element of every encoded command; a node rejects versions it does not know."""
SNAPSHOT_VERSION = 1
"""First element of every encoded snapshot."""
DEFAULT_HISTORY_LIMIT = 10_000
"""Messages kept for snapshots so a joining node sees recent history."""

_TAG_MESSAGE = 0
_TAG_NICK = 1
_TAG_LEAVE = 2
_MAX_UINT64 = 2**64 - 1
_MAX_INT64 = 2**63 - 1
_NICK_DISAMBIGUATOR = "#"
_MIN_SUFFIX_CHARS = 4
_FORBIDDEN_TEXT_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
"""Control characters (Unicode Cc) except tab and newline, and lone surrogates."""


class InvalidCommandError(ValueError):
    """A command breaks the format or :class:`ChatLimits`; the message says how."""


class ChatSnapshotError(ValueError):
    """A chat snapshot is corrupt or of an unknown version; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """Limits every member must agree on: they decide whether a command is applied.

    Changing a limit changes which log entries are applied, so these are part of
    the protocol, not user settings.
    """

    max_text_chars: int = 4_000
    """Longest message text, in characters (code points)."""
    max_nick_chars: int = 32
    """Longest nick, in characters. Nicks are printable, with no whitespace and no ``#``
    (reserved for the ``ada#3f2a`` disambiguation)."""
    max_client_id_chars: int = 64
    """Longest client (node) id."""
    max_sessions: int = 4_096
    """Client sessions kept; beyond this the least recently active client is forgotten."""
    serials_remembered: int = 32
    """Per client, how many recent (serial, index) pairs are kept so a duplicate can point
    at its original index."""

    def __post_init__(self) -> None:
        for name in (
            "max_text_chars",
            "max_nick_chars",
            "max_client_id_chars",
            "max_sessions",
            "serials_remembered",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"ChatLimits.{name} must be a positive integer, got {value!r}")

    @property
    def max_command_bytes(self) -> int:
        """Upper bound of an encoded command (UTF-8 is at most 4 bytes per character)."""
        return 4 * (self.max_text_chars + self.max_nick_chars) + 64


DEFAULT_LIMITS = ChatLimits()


# --- commands ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A chat line. ``ts`` is the sender's clock (Unix milliseconds): shown, never trusted
    for ordering, which is the log's."""

    nick: str
    text: str
    ts: int
    action: bool = False
    """True for ``/me`` lines."""


@dataclass(frozen=True, slots=True)
class NickChange:
    """The sending client's nick becomes ``nick``."""

    nick: str


@dataclass(frozen=True, slots=True)
class Leave:
    """The sending client asks to be removed from the cluster (it is quitting).

    Replicated rather than sent to the leader directly, so whichever node leads
    when it commits (or later) sees the request and removes the member.
    """


Command = ChatMessage | NickChange | Leave


def nick_problem(nick: object, limits: ChatLimits = DEFAULT_LIMITS) -> str | None:
    """Why ``nick`` is not acceptable, or None if it is. Useful to check ``/nick`` input."""
    if type(nick) is not str:
        return f"nick must be text, got {type(nick).__name__}"
    if not nick:
        return "nick must not be empty"
    if len(nick) > limits.max_nick_chars:
        return f"nick is {len(nick)} characters long; at most {limits.max_nick_chars} allowed"
    if _NICK_DISAMBIGUATOR in nick:
        return f"nick must not contain {_NICK_DISAMBIGUATOR!r}"
    if not nick.isprintable() or " " in nick:  # the only printable whitespace is " "
        return "nick must be printable, without spaces or control characters"
    return None


def text_problem(text: object, limits: ChatLimits = DEFAULT_LIMITS) -> str | None:
    """Why ``text`` is not acceptable as a message, or None. Newlines and tabs are allowed;
    other control characters (which could drive a terminal) are not."""
    if type(text) is not str:
        return f"text must be text, got {type(text).__name__}"
    if not text or text.isspace():  # what ``not text.strip()`` says, without a copy
        return "text must not be empty"
    if len(text) > limits.max_text_chars:
        return f"text is {len(text)} characters long; at most {limits.max_text_chars} allowed"
    bad = _FORBIDDEN_TEXT_CHARS.search(text)
    if bad:
        return f"text contains the control character U+{ord(bad.group()):04X}"
    return None


def _client_id_problem(client_id: object, limits: ChatLimits) -> str | None:
    if type(client_id) is not str or not client_id:
        return "missing client id"
    if len(client_id) > limits.max_client_id_chars:
        return f"client id longer than {limits.max_client_id_chars} characters"
    if not client_id.isprintable() or " " in client_id:  # see nick_problem
        return "client id must be printable, without spaces"
    return None


def _check_command(command: Command, limits: ChatLimits) -> None:
    if isinstance(command, ChatMessage):
        problem = (
            nick_problem(command.nick, limits)
            or text_problem(command.text, limits)
            or _timestamp_problem(command.ts)
            or (None if type(command.action) is bool else "action must be true or false")
        )
    elif isinstance(command, NickChange):
        problem = nick_problem(command.nick, limits)
    elif isinstance(command, Leave):
        problem = None
    else:
        problem = f"not a chat command: {type(command).__name__}"
    if problem:
        raise InvalidCommandError(problem)


def _timestamp_problem(ts: object) -> str | None:
    if type(ts) is not int or not 0 <= ts <= _MAX_INT64:
        return f"timestamp must be a non-negative integer (Unix ms), got {ts!r}"
    return None


def encode_command(command: Command, limits: ChatLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes to propose. Raises :class:`InvalidCommandError` for a command that every
    node would reject, so bad input is refused before it reaches the log."""
    _check_command(command, limits)
    if isinstance(command, ChatMessage):
        fields: list[object] = [
            _TAG_MESSAGE,
            command.nick,
            command.text,
            command.ts,
            command.action,
        ]
    elif isinstance(command, NickChange):
        fields = [_TAG_NICK, command.nick]
    else:
        fields = [_TAG_LEAVE]
    return _packer().pack([COMMAND_VERSION, *fields])


_per_thread = threading.local()


def _packer() -> msgpack.Packer:
    """This thread's packer: ``packb`` would build a new Packer for every command."""
    try:
        return _per_thread.packer
    except AttributeError:
        packer = _per_thread.packer = msgpack.Packer(use_bin_type=True)
        return packer


def decode_command(data: bytes, limits: ChatLimits = DEFAULT_LIMITS) -> Command:
    """Strictly decode a command; raises :class:`InvalidCommandError` saying what is wrong."""
    if type(data) is not bytes:
        raise InvalidCommandError(f"command must be bytes, got {type(data).__name__}")
    if len(data) > limits.max_command_bytes:
        raise InvalidCommandError(
            f"command is {len(data)} bytes; at most {limits.max_command_bytes} allowed"
        )
    try:
        # msgpack documents that unpacking may raise exceptions outside its own
        # hierarchy (e.g. UnicodeDecodeError), so any failure means "malformed".
        items = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:
        raise InvalidCommandError(f"not valid msgpack: {exc or type(exc).__name__}") from None
    if type(items) is not list or len(items) < 2:
        raise InvalidCommandError("command must be an array [version, tag, ...]")
    version, tag, *fields = items
    if version != COMMAND_VERSION or type(version) is not int:
        raise InvalidCommandError(f"unknown command version {version!r}")
    command: Command
    if tag == _TAG_MESSAGE and type(tag) is int:
        if len(fields) != 4:
            raise InvalidCommandError(f"chat message needs 4 fields, got {len(fields)}")
        command = ChatMessage(*fields)
    elif tag == _TAG_NICK and type(tag) is int:
        if len(fields) != 1:
            raise InvalidCommandError(f"nick change needs 1 field, got {len(fields)}")
        command = NickChange(*fields)
    elif tag == _TAG_LEAVE and type(tag) is int:
        if fields:
            raise InvalidCommandError(f"leave request takes no fields, got {len(fields)}")
        command = Leave()
    else:
        raise InvalidCommandError(f"unknown command tag {tag!r}")
    _check_command(command, limits)
    return command


# --- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageApplied:
    """A chat message took its place in the log. ``id`` is ``"<client_id>:<serial>"``."""

    index: int
    id: str
    client_id: str
    serial: int
    nick: str
    text: str
    ts: int
    action: bool


@dataclass(frozen=True, slots=True)
class NickChanged:
    """A client's nick changed; ``old`` is empty the first time a client is seen."""

    index: int
    client_id: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class DuplicateDropped:
    """A retried (or out-of-order older) serial; ``original_index`` is where the original
    was applied, 0 if no longer known."""

    index: int
    client_id: str
    serial: int
    original_index: int


@dataclass(frozen=True, slots=True)
class InvalidCommand:
    """A malformed command was applied as a no-op. ``client_id``/``serial`` are those of
    the entry (possibly empty/0), so the proposer can learn of the rejection."""

    index: int
    reason: str
    client_id: str = ""
    serial: int = 0


@dataclass(frozen=True, slots=True)
class LeaveRequested:
    """A member asked to be removed; the leader acts on it."""

    index: int
    client_id: str


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A node entered the configuration, as a voter or a learner."""

    index: int
    node_id: NodeId
    voter: bool


@dataclass(frozen=True, slots=True)
class MemberLeft:
    index: int
    node_id: NodeId


@dataclass(frozen=True, slots=True)
class MemberRoleChanged:
    """A member was promoted to voter (``voter=True``) or demoted to learner."""

    index: int
    node_id: NodeId
    voter: bool


ChatEvent = (
    MessageApplied
    | NickChanged
    | DuplicateDropped
    | InvalidCommand
    | LeaveRequested
    | MemberJoined
    | MemberLeft
    | MemberRoleChanged
)


# --- state --------------------------------------------------------------------


@dataclass(slots=True)
class _Session:
    """What is known about one client: its nick and its latest (serial, index) pairs."""

    nick: str
    recent: deque[tuple[int, int]] = field(default_factory=deque)

    @property
    def last_serial(self) -> int:
        return self.recent[-1][0]


class ChatState:
    """The chat as of ``last_applied_index``: history window, sessions, nicks, members."""

    def __init__(
        self, history_limit: int = DEFAULT_HISTORY_LIMIT, limits: ChatLimits = DEFAULT_LIMITS
    ) -> None:
        if type(history_limit) is not int or history_limit < 1:
            raise ValueError(f"history_limit must be a positive integer, got {history_limit!r}")
        self.limits = limits
        self.history_limit = history_limit
        self._last_applied_index = 0
        self._history: deque[MessageApplied] = deque(maxlen=history_limit)
        # Least recently active first: moving a client to the end on every
        # proposal makes eviction order a function of the log alone.
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._clients_by_nick: dict[str, set[str]] = {}
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

    def nick_of(self, client_id: str) -> str | None:
        """The client's current nick (empty if it never sent a valid one), or None if the
        client is not (or no longer) known."""
        session = self._sessions.get(client_id)
        return session.nick if session else None

    def nicks(self) -> dict[str, str]:
        """Client id → current nick, for every known client."""
        return {client_id: session.nick for client_id, session in self._sessions.items()}

    def last_serial(self, client_id: str) -> int:
        """The highest serial applied for the client (0 if unknown)."""
        session = self._sessions.get(client_id)
        return session.last_serial if session else 0

    def display_name(self, client_id: str, nick: str | None = None) -> str:
        """How to show a client: its nick, plus ``#<id prefix>`` when another known client
        uses the same nick (``ada`` vs ``ada#3f2a``). ``nick`` defaults to the current one
        (pass a message's own nick to show history as it was written)."""
        if nick is None:
            nick = self.nick_of(client_id)
        if not nick:
            return client_id[:8] or "?"
        holders = self._clients_by_nick.get(nick)
        if not holders or (len(holders) == 1 and client_id in holders):
            return nick  # nobody else uses the nick (the common case: no sets built)
        others = holders - {client_id}
        length = _MIN_SUFFIX_CHARS
        while length < len(client_id) and any(
            other[:length] == client_id[:length] for other in others
        ):
            length += 1
        return f"{nick}{_NICK_DISAMBIGUATOR}{client_id[:length]}"

    # --- applying ---

    def apply(self, entry: Entry) -> list[ChatEvent]:
        """Apply the next committed entry. Entries must come in log order without gaps
        (after :meth:`restore`, starting right after the snapshot's index)."""
        expected = self._last_applied_index + 1
        if entry.index != expected:
            raise ValueError(f"entry {entry.index} applied out of order: expected {expected}")
        self._last_applied_index = entry.index
        if entry.kind != EntryKind.NORMAL:
            return []
        return self._apply_normal(entry)

    def _apply_normal(self, entry: Entry) -> list[ChatEvent]:
        client_problem = _client_id_problem(entry.client_id, self.limits)
        serial_ok = type(entry.serial) is int and 1 <= entry.serial <= _MAX_UINT64
        if client_problem or not serial_ok:
            reason = client_problem or f"serial must be a positive integer, got {entry.serial!r}"
            return [self._invalid(entry, reason)]
        session = self._sessions.get(entry.client_id)
        if session is not None and entry.serial <= session.last_serial:
            self.duplicates_dropped += 1
            original = next((i for s, i in session.recent if s == entry.serial), 0)
            return [DuplicateDropped(entry.index, entry.client_id, entry.serial, original)]
        try:
            command = decode_command(entry.data, self.limits)
        except InvalidCommandError as exc:
            self._record_serial(entry, nick=session.nick if session else "")
            return [self._invalid(entry, str(exc))]
        events: list[ChatEvent] = []
        old_nick = session.nick if session else ""
        if isinstance(command, Leave):
            self._record_serial(entry, nick=old_nick)
            return [LeaveRequested(entry.index, entry.client_id)]
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
            )
            self._history.append(message)
            events.append(message)
        return events

    def _invalid(self, entry: Entry, reason: str) -> InvalidCommand:
        self.invalid_commands += 1
        client_id = entry.client_id if type(entry.client_id) is str else ""
        serial = entry.serial if type(entry.serial) is int else 0
        logger.warning("entry %d: invalid chat command applied as no-op: %s", entry.index, reason)
        return InvalidCommand(
            entry.index, reason, client_id[: self.limits.max_client_id_chars], serial
        )

    def _record_serial(self, entry: Entry, nick: str) -> None:
        """Note (serial, index) for the client, mark it most recently active, evict beyond
        the cap."""
        session = self._sessions.pop(entry.client_id, None)
        if session is None:
            session = _Session(nick="", recent=deque(maxlen=self.limits.serials_remembered))
        self._sessions[entry.client_id] = session
        self._set_nick(entry.client_id, session, nick)
        session.recent.append((entry.serial, entry.index))
        while len(self._sessions) > self.limits.max_sessions:
            evicted_id, evicted = self._sessions.popitem(last=False)
            self._set_nick(evicted_id, evicted, "")
            logger.debug("session of client %s forgotten (cap %d)", evicted_id, len(self._sessions))

    def _set_nick(self, client_id: str, session: _Session, nick: str) -> None:
        if session.nick == nick:
            return
        if session.nick:
            holders = self._clients_by_nick[session.nick]
            holders.discard(client_id)
            if not holders:
                del self._clients_by_nick[session.nick]
        if nick:
            self._clients_by_nick.setdefault(nick, set()).add(client_id)
        session.nick = nick

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
        sessions = [
            [client_id, session.nick, [list(pair) for pair in session.recent]]
            for client_id, session in self._sessions.items()
        ]
        history = [
            [m.index, m.client_id, m.serial, m.nick, m.text, m.ts, m.action] for m in self._history
        ]
        return msgpack.packb(
            [
                SNAPSHOT_VERSION,
                self._last_applied_index,
                self.invalid_commands,
                self.duplicates_dropped,
                sorted(self._voters),
                sorted(self._learners),
                sessions,
                history,
            ],
            use_bin_type=True,
        )

    @classmethod
    def restore(
        cls,
        data: bytes,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        limits: ChatLimits = DEFAULT_LIMITS,
    ) -> ChatState:
        """Rebuild a state from :meth:`snapshot` bytes, checking every field. Raises
        :class:`ChatSnapshotError` on anything malformed. A history longer than
        ``history_limit`` keeps its newest messages."""
        return _SnapshotReader(cls(history_limit, limits)).read(data)


class _SnapshotReader:
    """Strict validation of snapshot bytes into a fresh :class:`ChatState`."""

    def __init__(self, state: ChatState) -> None:
        self.state = state

    def read(self, data: bytes) -> ChatState:
        if type(data) is not bytes:
            raise ChatSnapshotError(f"chat snapshot must be bytes, got {type(data).__name__}")
        try:
            items = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
        except Exception as exc:  # msgpack may raise outside its own hierarchy
            detail = str(exc) or type(exc).__name__
            raise ChatSnapshotError(f"chat snapshot is not valid msgpack: {detail}") from None
        if type(items) is not list or not items:
            raise ChatSnapshotError("chat snapshot must be a non-empty array")
        if items[0] != SNAPSHOT_VERSION or type(items[0]) is not int:
            raise ChatSnapshotError(f"unknown chat snapshot version {items[0]!r}")
        if len(items) != 8:
            raise ChatSnapshotError(f"chat snapshot needs 8 fields, got {len(items)}")
        _, last_applied, invalid, duplicates, voters, learners, sessions, history = items
        state = self.state
        state._last_applied_index = self._count(last_applied, "last applied index")
        state.invalid_commands = self._count(invalid, "invalid command count")
        state.duplicates_dropped = self._count(duplicates, "duplicate count")
        state._voters = self._node_ids(voters, "voters")
        state._learners = self._node_ids(learners, "learners")
        if state._voters & state._learners:
            raise ChatSnapshotError("chat snapshot: a node is both voter and learner")
        self._read_sessions(sessions)
        self._read_history(history)
        return state

    def _count(self, value: object, what: str) -> int:
        if type(value) is not int or not 0 <= value <= _MAX_UINT64:
            raise ChatSnapshotError(f"chat snapshot: {what} must be a non-negative integer")
        return value

    def _index(self, value: object, what: str) -> int:
        if type(value) is not int or not 1 <= value <= self.state.last_applied_index:
            raise ChatSnapshotError(
                f"chat snapshot: {what} must be an index in 1..{self.state.last_applied_index},"
                f" got {value!r}"
            )
        return value

    def _node_ids(self, value: object, what: str) -> frozenset[NodeId]:
        if type(value) is not list or any(type(node) is not str or not node for node in value):
            raise ChatSnapshotError(f"chat snapshot: {what} must be a list of node ids")
        if value != sorted(set(value)):
            raise ChatSnapshotError(f"chat snapshot: {what} must be sorted and unique")
        return frozenset(value)

    def _read_sessions(self, sessions: object) -> None:
        state = self.state
        if type(sessions) is not list or len(sessions) > state.limits.max_sessions:
            raise ChatSnapshotError(
                f"chat snapshot: sessions must be a list of at most {state.limits.max_sessions}"
            )
        for record in sessions:
            if type(record) is not list or len(record) != 3:
                raise ChatSnapshotError("chat snapshot: a session must be [client, nick, pairs]")
            client_id, nick, pairs = record
            problem = _client_id_problem(client_id, state.limits)
            if problem or client_id in state._sessions:
                raise ChatSnapshotError(
                    f"chat snapshot: bad session client id: {problem or 'twice'}"
                )
            if nick != "" and nick_problem(nick, state.limits):
                raise ChatSnapshotError(f"chat snapshot: session {client_id}: bad nick {nick!r}")
            recent = self._read_pairs(client_id, pairs)
            session = _Session(nick="", recent=recent)
            state._sessions[client_id] = session
            state._set_nick(client_id, session, nick)

    def _read_pairs(self, client_id: str, pairs: object) -> deque[tuple[int, int]]:
        limit = self.state.limits.serials_remembered
        if type(pairs) is not list or not 1 <= len(pairs) <= limit:
            raise ChatSnapshotError(
                f"chat snapshot: session {client_id} needs 1..{limit} (serial, index) pairs"
            )
        recent: deque[tuple[int, int]] = deque(maxlen=limit)
        for pair in pairs:
            if type(pair) is not list or len(pair) != 2:
                raise ChatSnapshotError(f"chat snapshot: session {client_id}: bad pair {pair!r}")
            serial = pair[0]
            if type(serial) is not int or not 1 <= serial <= _MAX_UINT64:
                raise ChatSnapshotError(f"chat snapshot: session {client_id}: bad serial")
            index = self._index(pair[1], f"session {client_id} index")
            if recent and (serial <= recent[-1][0] or index <= recent[-1][1]):
                raise ChatSnapshotError(
                    f"chat snapshot: session {client_id}: serials and indexes must increase"
                )
            recent.append((serial, index))
        return recent

    def _read_history(self, history: object) -> None:
        state = self.state
        if type(history) is not list:
            raise ChatSnapshotError("chat snapshot: history must be a list")
        previous_index = 0
        for record in history:
            if type(record) is not list or len(record) != 7:
                raise ChatSnapshotError("chat snapshot: a history record needs 7 fields")
            index, client_id, serial, nick, text, ts, action = record
            self._index(index, "history index")
            if index <= previous_index:
                raise ChatSnapshotError("chat snapshot: history indexes must increase")
            previous_index = index
            problem = (
                _client_id_problem(client_id, state.limits)
                or (None if type(serial) is int and 1 <= serial <= _MAX_UINT64 else "bad serial")
                or nick_problem(nick, state.limits)
                or text_problem(text, state.limits)
                or _timestamp_problem(ts)
                or (None if type(action) is bool else "action must be true or false")
            )
            if problem:
                raise ChatSnapshotError(f"chat snapshot: history entry {index}: {problem}")
            state._history.append(
                MessageApplied(
                    index, f"{client_id}:{serial}", client_id, serial, nick, text, ts, action
                )
            )
