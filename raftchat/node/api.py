"""The narrow interface between a chat node and its user interface.

Events go out, requests come in. The TUI (and anything else that shows a
channel) depends only on this module, so it can be driven by a fake node in
tests. The event dataclasses mirror the JSON objects headless mode prints:
``event_to_json(event)`` gives that object.

How a front end uses a node::

    history = node.history()      # committed messages so far, in log order
    queue = node.subscribe()      # every event from now on (same call stack: no gap)
    while True:
        event = await queue.get()
        ...
    text_id = node.send_chat("hello")   # shown as pending until its AckEvent

Contract for implementers of :class:`ChatNode`:

- ``history()`` and ``subscribe()`` are synchronous, so a caller that calls
  one right after the other misses and duplicates nothing.
- Every committed chat message is published once, in log order, as a
  :class:`ChatMessageEvent` (also the caller's own). For the node's own
  messages an :class:`AckEvent` follows the ChatMessageEvent.
- Events are put on each subscriber's queue with ``put_nowait`` (unbounded
  queues), so a slow front end never blocks the node.
- A :class:`StatusEvent` is published when any of its fields change
  (throttled by the node, e.g. at most every 200 ms) and a
  :class:`MembersEvent` whenever membership, roles, links or RTTs change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from raftchat.limits import MAX_MESSAGE_CHARS, MAX_NICK_CHARS, nick_problem, text_problem

logger = logging.getLogger(__name__)

NodeState = Literal["follower", "candidate", "leader", "pre_candidate", "learner", "stopped"]
MemberRole = Literal["leader", "voter", "learner", "witness"]
LinkState = Literal["self", "connecting", "connected", "disconnected", "failed"]
SignalingState = Literal["connecting", "connected", "reconnecting", "disconnected"]
NoticeKind = Literal["join", "leave", "leader", "nick", "info"]

COUNTER_NAMES = (
    "requestvote_sent",
    "requestvote_received",
    "appendentries_sent",
    "appendentries_received",
    "proposals_forwarded",
    "snapshots_sent",
    "snapshots_received",
    "messages_dropped",
    "other_cluster_dropped",
)
"""Counters a StatusEvent normally carries; a node may add others."""


class ChatInputError(ValueError):
    """A message or nick the node refuses; the text says what to change."""


class MessageTooLongError(ChatInputError):
    """The message text is longer than :data:`~raftchat.limits.MAX_MESSAGE_CHARS`."""


class EmptyMessageError(ChatInputError):
    """The message text is empty or only whitespace."""


class InvalidNickError(ChatInputError):
    """The nick breaks the nick rule: empty, too long, or with whitespace, control
    characters or ``#``."""


FORGET_CONFIRM = "--yes"
"""Typed after the names in ``/forget``: the warning was read, do it."""


class ForgetRefusedError(ChatInputError):
    """``/forget`` cannot be done now; the text says why and what to do instead."""


def validate_chat_text(text: str) -> str:
    """Return ``text`` if a node accepts it as a message, else raise a ChatInputError.

    The rule is :func:`raftchat.limits.text_problem`, the one every member applies to
    committed messages; only the wording is meant for a person typing.
    """
    problem = text_problem(text)
    if problem is None:
        return text
    if type(text) is str and not text.strip():
        raise EmptyMessageError("Message is empty: type some text before pressing Enter.")
    if type(text) is str and len(text) > MAX_MESSAGE_CHARS:
        raise MessageTooLongError(
            f"Message is {len(text)} characters long; the limit is {MAX_MESSAGE_CHARS}. "
            "Shorten it or split it into several messages."
        )
    raise ChatInputError(f"Message refused: {problem}.")


def validate_nick(nick: str) -> str:
    """Return ``nick`` if a node accepts it, else raise an InvalidNickError.

    The rule is :func:`raftchat.limits.nick_problem`, the one every member applies to
    committed nicks; only the wording is meant for a person typing.
    """
    problem = nick_problem(nick)
    if problem is None:
        return nick
    if nick == "":
        raise InvalidNickError("Nick is empty: give a name, e.g. /nick alice.")
    if type(nick) is str and len(nick) > MAX_NICK_CHARS:
        raise InvalidNickError(
            f"Nick {nick[:MAX_NICK_CHARS]!r}… is {len(nick)} characters; "
            f"the limit is {MAX_NICK_CHARS}."
        )
    raise InvalidNickError(f"Nick {nick!r} refused: {problem}. Choose another, e.g. /nick alice.")


@dataclass(frozen=True, slots=True)
class MissingVoter:
    """A voter this node cannot reach while the channel cannot commit."""

    node_id: str
    nick: str
    """How notices name it: its nick, or ``user-<start of its id>`` while none is known."""
    silent_s: int | None
    """Whole seconds since anything last came from it to this node; None if nothing ever did."""


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """The node's Raft state: what the stats pane and ``status`` JSON events show."""

    node_id: str
    state: NodeState
    term: int
    leader: str | None
    """Node id of the current leader, or None while there is none."""
    voters: tuple[str, ...]
    learners: tuple[str, ...]
    commit_index: int
    applied_index: int
    last_index: int
    """Index of the last entry in the local log (the log length, counting compacted entries)."""
    snapshot_index: int
    election_timeout_ms: float
    """The election timeout in force now (it adapts to measured round-trip times)."""
    counters: Mapping[str, int] = field(default_factory=dict)
    """Monotonic counters, see :data:`COUNTER_NAMES`."""
    cluster_id: str | None = None
    """The cluster this node's log belongs to (its id); None before it founded or joined
    one, and while it is leaving one to merge into another."""
    signaling_state: SignalingState = "connecting"
    webrtc: str | None = None
    """The WebRTC engine the node's links run on (``"wrtc"``, ``"aiortc"``); None before
    the node started."""
    witness: str | None = None
    """The id of the witness voting in the cluster (held by the signaling server; it is
    among ``voters`` too); None while there is none."""
    quorum_problem: str | None = None
    """Why the channel cannot commit now and what would fix it, in a sentence for people
    (``"no leader: waiting for bob — the channel needs 2 of 2 voters; 1 reachable (bob
    last heard 6 s ago); if bob is gone for good, type /forget bob"``); None while
    commits are possible. Set when no leader has been known for longer than an election
    timeout, or when this node leads but hears from fewer voters than a quorum."""
    missing_voters: tuple[MissingVoter, ...] = ()
    """The voters this node cannot reach, while ``quorum_problem`` is set."""
    voters_needed: int | None = None
    """Voters a commit needs (a majority), while ``quorum_problem`` is set."""
    voters_reachable: int | None = None
    """Voters this node reaches, itself included, while ``quorum_problem`` is set."""
    forget_command: str | None = None
    """While ``quorum_problem`` is set and forgetting the missing voters would let the
    channel commit again (this node would be the only voter left): the command that does
    it (``"/forget bob"``; see :meth:`ChatNode.forget`)."""
    type: Literal["status"] = "status"


@dataclass(frozen=True, slots=True)
class ChatMessageEvent:
    """A committed chat message, published once in log order."""

    index: int
    """The message's Raft log index."""
    id: str
    """``"<client id>:<serial>"``: the id :meth:`ChatNode.send_chat` returned to its sender."""
    sender_id: str
    """Node id of the sender."""
    nick: str
    """The sender's nick when the message was committed."""
    text: str
    ts: float
    """Sender's clock when sending, epoch seconds."""
    action: bool = False
    """True for ``/me`` actions ("* alice waves")."""
    merged: bool = False
    """Written in another part of the channel that split off and merged back since."""
    type: Literal["message"] = "message"


@dataclass(frozen=True, slots=True)
class AckEvent:
    """One of this node's own messages is committed (follows its ChatMessageEvent)."""

    id: str
    index: int
    type: Literal["ack"] = "ack"


@dataclass(frozen=True, slots=True)
class NoticeEvent:
    """Something to tell the user in the chat view: joins, leaves, leader and nick changes."""

    kind: NoticeKind
    text: str
    ts: float
    """When it happened (node clock, epoch seconds)."""
    member: str | None = None
    """Node id of the member a membership notice (join, leave, role or leader change) is
    about, so a front end can group a burst of them; None for other notices."""
    type: Literal["notice"] = "notice"


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member of the channel as this node sees it."""

    node_id: str
    nick: str
    role: MemberRole
    link_state: LinkState
    """This node's link to the member; ``"self"`` for the node itself."""
    rtt_ms: float | None = None
    """Last measured round-trip time over the link, None if unknown."""


@dataclass(frozen=True, slots=True)
class MembersEvent:
    """The full member list, sent whenever anything in it changes."""

    members: tuple[MemberInfo, ...]
    type: Literal["members"] = "members"


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """Something went wrong that the user should know about; the node keeps running."""

    message: str
    type: Literal["error"] = "error"


@dataclass(frozen=True, slots=True)
class ResetEvent:
    """Forget every message shown: the node's history was replaced. The channel's history
    in its new order follows as ChatMessageEvents (as for a node that just joined).

    ``reason`` is ``"merge"``: this node's part of the channel split off from an older
    one (a newcomer founded it while the members were away) and now merges into it."""

    reason: Literal["merge"]
    type: Literal["reset"] = "reset"


Event = (
    StatusEvent | ChatMessageEvent | AckEvent | NoticeEvent | MembersEvent | ErrorEvent | ResetEvent
)


def event_to_json(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready dict (the headless output line), ``type`` first."""
    data: dict[str, Any] = {"type": event.type}
    for spec in dataclasses.fields(event):
        value = getattr(event, spec.name)
        if isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = [_plain(item) for item in value]
        data[spec.name] = value
    return data


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {spec.name: getattr(value, spec.name) for spec in dataclasses.fields(value)}
    return value


@runtime_checkable
class ChatNode(Protocol):
    """What a front end needs from a running chat node."""

    @property
    def node_id(self) -> str:
        """This node's id (stable across restarts)."""
        ...

    @property
    def nick(self) -> str:
        """The nick in force now (the last committed one)."""
        ...

    @property
    def channel(self) -> str:
        """Name of the channel this node is in."""
        ...

    def history(self) -> Sequence[ChatMessageEvent]:
        """Committed messages the node holds, oldest first (may be many thousands)."""
        ...

    def subscribe(self) -> asyncio.Queue[Event]:
        """A new queue that receives every event published from now on."""
        ...

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        """Stop putting events on ``queue``; unknown queues are ignored."""
        ...

    def send_chat(self, text: str, action: bool = False) -> str:
        """Propose a message and return its id at once; it commits later (AckEvent).

        Raises ChatInputError (MessageTooLongError, EmptyMessageError) for text
        the node refuses; nothing is sent then. Works without a leader: the
        node keeps and retries the proposal until it commits.
        """
        ...

    async def set_nick(self, nick: str) -> None:
        """Propose a nick change; a NoticeEvent(kind="nick") follows when it commits.

        Raises InvalidNickError for a nick the node refuses.
        """
        ...

    def status(self) -> StatusEvent:
        """The current status (the same data as the last StatusEvent)."""
        ...

    def members(self) -> tuple[MemberInfo, ...]:
        """The current member list (the same data as the last MembersEvent)."""
        ...

    async def leave(self) -> None:
        """Leave the channel cleanly (hand over leadership, ask to be removed), then stop."""
        ...

    def forget(self, names: Sequence[str], confirm: bool = False) -> str | None:
        """Carry on without the voters ``names`` (as the status names them), whose machines
        are gone for good: the channel commits again with this node as its only voter.

        Without ``confirm`` nothing changes: returns the warning to show, which ends with
        the command that confirms. With it, does it (a NoticeEvent follows once done) and
        returns None. Raises ForgetRefusedError when it cannot be done now (the text says
        why: an unknown name or one's own, a member heard from lately, a channel that can
        commit, or one that would still not commit).
        """
        ...
