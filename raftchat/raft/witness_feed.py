"""What a leader sends a witness: entries without their data, and no further than a member.

A witness (see :mod:`.witness`) votes with the (index, term) of entries only, so the
leader strips every entry's data (kind, index and term stay) and sends a snapshot as its
metadata alone. A configuration entry keeps its data: the configuration is membership,
not chat, and the witness needs it to check who may lead and stand for election (as the
snapshot's metadata names the configuration at its end).

How far it sends is a liveness rule. A candidate wins a witness's vote only with a log at
least as up to date as the witness's; if the witness held entries that no living member
has, no survivor could win it, and a channel of two members plus a witness would be stuck
as soon as its leader died. So the witness gets entries only up to the highest match
index among the member voters heard from lately. Only when no member voter is heard from
at all may it get everything the leader has stored: then the leader needs the witness's
vote to commit anything, for instance the removal of the member that died. Not if the leader is
itself leaving the configuration, though: once out, it cannot lead, so the witness must
never get ahead of the members that stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .messages import Configuration, Entry, EntryKind, InstallSnapshot, NodeId, SnapshotMeta
from .progress import Progress


def strip_payloads(entries: Iterable[Entry]) -> list[Entry]:
    """``entries`` with their client id and serial left out, and their data too but for
    configuration entries'."""
    return [
        Entry(
            entry.index,
            entry.term,
            entry.kind,
            entry.data if entry.kind == EntryKind.CONFIG else b"",
        )
        for entry in entries
    ]


def witness_send_limit(
    leader: NodeId,
    stored_index: int,
    configuration: Configuration,
    progress: Mapping[NodeId, Progress],
) -> int:
    """The last index a witness may be sent (see the module docstring); ``stored_index``
    is the leader's last entry on its own disk."""
    members = [
        follower
        for peer, follower in progress.items()
        if peer != leader and peer in configuration.member_voters
    ]
    active = [follower.match for follower in members if follower.lately_active]
    if active:
        return min(max(active), stored_index)
    if leader in configuration.member_voters:
        return stored_index
    # A leader on its way out of the configuration: its own log will soon count for
    # nothing, so the witness must stay within what a remaining member holds.
    return min(max((follower.match for follower in members), default=0), stored_index)


def metadata_snapshot(sender: NodeId, term: int, meta: SnapshotMeta) -> InstallSnapshot:
    """The snapshot a witness gets: where it ends, in one message without data."""
    return InstallSnapshot(sender, term, meta.index, meta.term, meta.configuration, 0, b"", True)
