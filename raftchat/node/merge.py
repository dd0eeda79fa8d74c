"""Merging the history of a cluster that lost to another of the same channel.

When this node's cluster meets an older one (:func:`~raftchat.node.cluster.survivor`),
the node keeps its node id but leaves its cluster: it stores its committed messages as
the merge queue, followed by its own messages not applied yet (sent again on their own,
they would land in the survivor ahead of the history they followed), and drops its Raft
state in one transaction
(:meth:`~raftchat.storage.Storage.begin_merge`), and starts over as a newcomer that the
survivor's leader adds. Once it is a member that has applied what it was sent, it
proposes every queued message the survivor lacks as a
:class:`~raftchat.chat.MergedMessage` (original author, serial, nick, text and time), in
the original order; the chat state machine applies each id once, whichever member of
the old cluster proposes it. A queued message leaves the queue only once the survivor
has it (applied there, by anyone), so a node that stops mid-merge goes on after a
restart. When the queue is empty the node proposes a :class:`~raftchat.chat.MergeDone`
per source cluster, which makes every member say how many messages were merged.

A history may hold what the chat rules no longer accept, applied before they were
narrowed: a message time out of range, a nick with an invisible character. Proposed as
it is, such a message would be refused and the merge would never end, so it goes with
its time clamped into range and the invisible characters left out of its nick
(:func:`mergeable`); a queue stored by an earlier release is mended the same way.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import msgpack

from raftchat import chat
from raftchat.limits import nick_problem, replace_invisible
from raftchat.raft import ClusterIdentity
from raftchat.storage import MergeItem, PendingMerge

logger = logging.getLogger(__name__)


def merge_items(
    history: Iterable[chat.MessageApplied],
    source: ClusterIdentity,
    unfinished: Sequence[MergeItem] = (),
    unsent: Iterable[OwnMessage] = (),
) -> list[MergeItem]:
    """The queue for leaving cluster ``source``: its committed ``history`` in log order,
    then what an ``unfinished`` earlier merge still had to propose (it is not in this
    history yet), then the node's own messages that ``source`` had not committed as far
    as the node knows (``unsent``, in the order they were sent), each message id once: a
    message already in the history stays where it was committed."""
    items: OrderedDict[str, MergeItem] = OrderedDict()
    for message in history:
        items[message.id] = _item(
            source,
            message.client_id,
            message.serial,
            chat.ChatMessage(
                message.nick, message.text, message.ts, message.action, message.signature
            ),
        )
    for item in unfinished:
        items.setdefault(item.message_id, mended(item))
    for own in unsent:
        message_id = f"{own.author}:{own.serial}"
        if message_id not in items:
            items[message_id] = _item(source, own.author, own.serial, own.message)
    return list(items.values())


@dataclass(frozen=True, slots=True)
class OwnMessage:
    """A message of this node still pending when it leaves its cluster to merge."""

    author: str
    serial: int
    """The serial it was signed and last proposed with: its id is ``author:serial``."""
    message: chat.ChatMessage


def _item(
    source: ClusterIdentity, author: str, serial: int, message: chat.ChatMessage
) -> MergeItem:
    command = mergeable(
        chat.MergedMessage(
            source.cluster_id,
            author,
            serial,
            message.nick,
            message.text,
            message.ts,
            message.action,
            signature=message.signature,
        )
    )
    return MergeItem(f"{author}:{serial}", chat.encode_command(command))


def mergeable(command: chat.MergedMessage) -> chat.MergedMessage:
    """``command`` as the chat rules of today accept it: its time clamped into range, the
    invisible characters left out of its nick (``user-`` and the start of the author's id
    if nothing is left). Only unsigned messages, written before those rules, can need it:
    a signed one is left as signed."""
    nick = command.nick
    if type(nick) is str and nick_problem(nick):
        nick = replace_invisible(nick, "")
        if nick_problem(nick):
            nick = f"user-{command.client_id[:4]}"
    ts = chat.clamp_message_ms(command.ts)
    if nick == command.nick and ts == command.ts:
        return command
    return chat.MergedMessage(
        command.source,
        command.client_id,
        command.serial,
        nick,
        command.text,
        ts,
        command.action,
    )


_MERGED_FIELDS = 10
"""An encoded merged message: version, prev_serial, tag, then its seven fields."""


def mended(item: MergeItem) -> MergeItem:
    """A queued merge item that the chat rules of today refuse, encoded again through
    :func:`mergeable` (a queue stored before the rules were narrowed); any other item as
    it is."""
    try:
        chat.decode_command(item.data)
    except chat.InvalidCommandError:
        pass
    else:
        return item
    try:
        fields = msgpack.unpackb(item.data, raw=False, use_list=True, strict_map_key=True)
    except Exception:  # msgpack may raise outside its own hierarchy
        return item
    if type(fields) is not list or len(fields) != _MERGED_FIELDS or type(fields[8]) is not int:
        return item
    try:
        command = mergeable(chat.MergedMessage(*fields[3:]))
        return MergeItem(item.message_id, chat.encode_command(command))
    except (chat.InvalidCommandError, TypeError, ValueError):
        return item


class MergeProgress:
    """A merge this node has begun and not finished: the queue and how far it got."""

    def __init__(self, pending: PendingMerge) -> None:
        self.source = pending.source
        self.queue: OrderedDict[str, MergeItem] = OrderedDict(
            (item.message_id, mended(item)) for item in pending.items
        )
        self.sources = frozenset(
            {pending.source.cluster_id} | {_source_of(item) for item in pending.items} - {""}
        )
        """Every cluster whose messages are in the queue: one MergeDone each. This node
        left them all (the one it left last is ``source``)."""
        self.total = len(self.queue)
        self.proposed = False
        """The queue was proposed (in this run: after a restart it is proposed again)."""
        self.done_proposed = False

    def __len__(self) -> int:
        return len(self.queue)

    def take_present(self, has_message: Callable[[str], bool]) -> list[str]:
        """Drop the queued messages the channel already has (``has_message(id)``); their ids."""
        present = [message_id for message_id in self.queue if has_message(message_id)]
        for message_id in present:
            del self.queue[message_id]
        return present

    def committed(self, message_id: str) -> bool:
        """The channel applied this message (proposed by anyone): True if it was queued."""
        return self.queue.pop(message_id, None) is not None


def _source_of(item: MergeItem) -> str:
    try:
        command, _ = chat.decode_command(item.data)
    except chat.InvalidCommandError:
        return ""
    return command.source if isinstance(command, chat.MergedMessage) else ""
