"""The commands a client proposes and their wire form.

The ``data`` of a NORMAL log entry is one command, :class:`ChatMessage`,
:class:`NickChange`, :class:`Leave`, :class:`MergedMessage` or :class:`MergeDone`,
encoded by :func:`encode_command` as a msgpack array ``[version, prev_serial, tag,
*fields, signature]``: ``prev_serial`` is the client's previous serial in this run (0 for the first
of a run, or once the previous one is known applied), which the client session checks to
keep the client's commands in the order sent. The entry carries the rest of the session
(``client_id``, ``serial``); the client id is the node id of the sender.

``signature`` (not for :class:`MergeDone`) is the author's ``[public key, signature]``
(:mod:`raftchat.chat.signing`) or nil; a :class:`MergedMessage` carries its original
author's. Version 2 (no ``signature``) and version 1 (``[1, tag, *fields]``, no
``prev_serial`` either) are what earlier releases wrote; such entries stay in users' logs
and still decode, unsigned (and version 1 with ``prev_serial`` 0), so they apply as they
always did. Likewise a :class:`Leave` without the incarnation that asks (as earlier
releases wrote it) decodes with ``incarnation`` None.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import msgpack

from raftchat.chat.rules import (
    DEFAULT_LIMITS,
    ChatLimits,
    action_problem,
    client_id_problem,
    nick_problem,
    prev_serial_problem,
    serial_problem,
    text_problem,
    timestamp_problem,
)
from raftchat.chat.signing import Signature, Signer, sign, signature_field_problem
from raftchat.limits import incarnation_problem, node_id_problem
from raftchat.raft.codec import packer

logger = logging.getLogger(__name__)

COMMAND_VERSION = 3
"""First element of every encoded command; a node rejects versions it does not know."""
_VERSION_UNSIGNED = 2
"""Commands written before commands were signed: decoded with no signature."""
_VERSION_WITHOUT_PREV_SERIAL = 1
"""Commands written before ``prev_serial`` existed: decoded with ``prev_serial`` 0."""

_TAG_MESSAGE = 0
_TAG_NICK = 1
_TAG_LEAVE = 2
_TAG_MERGED = 3
_TAG_MERGE_DONE = 4


class InvalidCommandError(ValueError):
    """A command breaks the format or :class:`ChatLimits`; the message says how."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A chat line. ``ts`` is the sender's clock (Unix milliseconds): shown, never trusted
    for ordering, which is the log's."""

    nick: str
    text: str
    ts: int
    action: bool = False
    """True for ``/me`` lines."""
    signature: Signature | None = None


@dataclass(frozen=True, slots=True)
class NickChange:
    """The sending client's nick becomes ``nick``."""

    nick: str
    signature: Signature | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    """The sending client asks to be removed from the cluster (it is quitting).

    Replicated rather than sent to the leader directly, so whichever node leads
    when it commits (or later) sees the request and removes the member.
    """

    incarnation: int | None = None
    """The run of the member that asks (:mod:`raftchat.node.incarnation`): a request of
    an earlier run never removes a later one. None: unknown, a request written by an
    earlier release (encoded without the field, as those releases wrote it)."""
    signature: Signature | None = None


@dataclass(frozen=True, slots=True)
class MergedMessage:
    """A committed message of a cluster that lost a merge (two clusters of one channel
    met), proposed into the survivor by one of that cluster's members: with its original
    author, serial, nick, text and time, so it keeps its id and shows as written.

    Applied once per message id: every member of the losing cluster may propose it, and
    a proposer that restarted proposes again what it cannot know was committed."""

    source: str
    """The id of the cluster it was committed in."""
    client_id: str
    """The author's node id (not the proposer's: that one is the entry's client id)."""
    serial: int
    nick: str
    text: str
    ts: int
    action: bool = False
    signature: Signature | None = None
    """The original author's, over the :class:`ChatMessage` it was."""

    @property
    def message_id(self) -> str:
        return f"{self.client_id}:{self.serial}"


@dataclass(frozen=True, slots=True)
class MergeDone:
    """The proposer has proposed every message it had to merge from cluster ``source``;
    applying it tells how many of them the channel took."""

    source: str
    """The id of the cluster the messages came from."""


Command = ChatMessage | NickChange | Leave | MergedMessage | MergeDone


def _check_command(command: Command, limits: ChatLimits) -> None:
    if isinstance(command, ChatMessage):
        problem = (
            nick_problem(command.nick, limits)
            or text_problem(command.text, limits)
            or timestamp_problem(command.ts)
            or action_problem(command.action)
        )
    elif isinstance(command, NickChange):
        problem = nick_problem(command.nick, limits)
    elif isinstance(command, Leave):
        problem = None if command.incarnation is None else incarnation_problem(command.incarnation)
    elif isinstance(command, MergedMessage):
        problem = (
            node_id_problem(command.source, what="cluster id")
            or client_id_problem(command.client_id)
            or serial_problem(command.serial)
            or nick_problem(command.nick, limits)
            or text_problem(command.text, limits)
            or timestamp_problem(command.ts)
            or action_problem(command.action)
        )
    elif isinstance(command, MergeDone):
        problem = node_id_problem(command.source, what="cluster id")
    else:
        problem = f"not a chat command: {type(command).__name__}"
    if problem:
        raise InvalidCommandError(problem)


def signed_content(command: Command) -> tuple[int, list[object]]:
    """The tag and fields an author signs: a :class:`MergedMessage`'s are those of the
    :class:`ChatMessage` it was. Raises ValueError for a :class:`MergeDone`."""
    if isinstance(command, ChatMessage | MergedMessage):
        return _TAG_MESSAGE, [command.nick, command.text, command.ts, command.action]
    if isinstance(command, NickChange):
        return _TAG_NICK, [command.nick]
    if isinstance(command, Leave):
        return _TAG_LEAVE, [] if command.incarnation is None else [command.incarnation]
    raise ValueError(f"{type(command).__name__} is not signed")


def sign_command(command: Command, signer: Signer, channel: str, serial: int) -> Command:
    """``command`` signed by its author ``signer`` for ``serial`` in ``channel``; a merged
    message keeps its original author's signature, and MergeDone is never signed."""
    if isinstance(command, MergedMessage | MergeDone):
        return command
    tag, fields = signed_content(command)
    return dataclasses.replace(command, signature=sign(signer, channel, serial, tag, fields))


def encode_command(
    command: Command, limits: ChatLimits = DEFAULT_LIMITS, *, prev_serial: int = 0
) -> bytes:
    """The bytes to propose, following the client's serial ``prev_serial``. Raises
    :class:`InvalidCommandError` for a command that every node would reject, so bad input
    is refused before it reaches the log."""
    _check_command(command, limits)
    problem = prev_serial_problem(prev_serial)
    if problem:
        raise InvalidCommandError(problem)
    if isinstance(command, MergeDone):
        return packer().pack([COMMAND_VERSION, prev_serial, _TAG_MERGE_DONE, command.source])
    if isinstance(command, MergedMessage):
        fields: list[object] = [
            _TAG_MERGED,
            command.source,
            command.client_id,
            command.serial,
            command.nick,
            command.text,
            command.ts,
            command.action,
        ]
    else:
        tag, content = signed_content(command)
        fields = [tag, *content]
    signature = None if command.signature is None else list(command.signature)
    return packer().pack([COMMAND_VERSION, prev_serial, *fields, signature])


def decode_command(data: bytes, limits: ChatLimits = DEFAULT_LIMITS) -> tuple[Command, int]:
    """Strictly decode a command (either version) and the serial it follows in its
    client's run (``prev_serial``; 0 lets any higher serial follow). Raises
    :class:`InvalidCommandError` saying what is wrong. A plain pair: every node makes
    one for every entry it applies."""
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
        raise InvalidCommandError("command must be an array [version, prev_serial, tag, ...]")
    version = items[0]
    if type(version) is not int:
        raise InvalidCommandError(f"unknown command version {version!r}")
    signed = version == COMMAND_VERSION
    if version in (COMMAND_VERSION, _VERSION_UNSIGNED) and len(items) > 2:
        prev_serial = items[1]
        problem = prev_serial_problem(prev_serial)
        if problem:
            raise InvalidCommandError(problem)
        tag = items[2]
        fields = items[3:]
    elif version == _VERSION_WITHOUT_PREV_SERIAL:
        prev_serial = 0
        tag = items[1]
        fields = items[2:]
    elif version in (COMMAND_VERSION, _VERSION_UNSIGNED):
        raise InvalidCommandError("command must be an array [version, prev_serial, tag, ...]")
    else:
        raise InvalidCommandError(f"unknown command version {version!r}")
    signature: Signature | None = None
    if signed and tag != _TAG_MERGE_DONE:
        if not fields:
            raise InvalidCommandError("a signed command ends with its signature (or nil)")
        *fields, raw_signature = fields
        problem = signature_field_problem(raw_signature)
        if problem:
            raise InvalidCommandError(problem)
        signature = None if raw_signature is None else Signature(*raw_signature)
    command: Command
    if tag == _TAG_MESSAGE and type(tag) is int:
        if len(fields) != 4:
            raise InvalidCommandError(f"chat message needs 4 fields, got {len(fields)}")
        command = ChatMessage(*fields, signature=signature)
    elif tag == _TAG_NICK and type(tag) is int:
        if len(fields) != 1:
            raise InvalidCommandError(f"nick change needs 1 field, got {len(fields)}")
        command = NickChange(*fields, signature=signature)
    elif tag == _TAG_LEAVE and type(tag) is int:
        if len(fields) > 1:
            raise InvalidCommandError(f"leave request takes at most 1 field, got {len(fields)}")
        problem = incarnation_problem(fields[0]) if fields else None
        if problem:  # present, it must be one: no explicit nil
            raise InvalidCommandError(problem)
        command = Leave(*fields, signature=signature)
    elif tag == _TAG_MERGED and type(tag) is int:
        if len(fields) != 7:
            raise InvalidCommandError(f"merged message needs 7 fields, got {len(fields)}")
        command = MergedMessage(*fields, signature=signature)
    elif tag == _TAG_MERGE_DONE and type(tag) is int:
        if len(fields) != 1:
            raise InvalidCommandError(f"merge done needs 1 field, got {len(fields)}")
        command = MergeDone(*fields)
    else:
        raise InvalidCommandError(f"unknown command tag {tag!r}")
    _check_command(command, limits)
    return command, prev_serial
