"""A data dir from before identity keys: its Raft state becomes history to merge.

Such a data dir's node id was 16 random hex digits that no key can prove, so
:class:`~raftchat.storage.Storage` gives the node a key and the id derived from it, and
keeps the old id as ``legacy_node_id`` while Raft state written under it remains. That
state cannot be kept as Raft state: it holds the old id as a voter (and perhaps as the
vote of the current term), and every member of the channel changes its id on the same
upgrade, since nodes of the two releases cannot link to each other. Kept, the cluster's
configuration would name only ids that never come back: nobody could be elected, nor
add the members under their new ids, so the channel could never commit again.

So the node leaves that state the way a member of a cluster that lost a merge does
(``node/merge.py``): its committed messages become the merge queue and the Raft state
goes, in one transaction (:meth:`~raftchat.storage.Storage.begin_merge`), and the node
starts as a newcomer under its new id. The first upgraded member that finds nobody
present founds a new cluster; the others join it (or a cluster founded elsewhere meets
it and the younger one merges); each proposes the messages it holds that the channel
lacks, and the chat state machine applies each message id once, whoever proposes it. The
history survives the upgrade (the window each member kept), and no vote, serial or
session of the old id is ever read under the new one.
"""

from __future__ import annotations

import logging

from raftchat import chat
from raftchat.node.merge import merge_items
from raftchat.storage import Storage, legacy_cluster_identity

logger = logging.getLogger(__name__)


def settle_legacy_state(storage: Storage, history_limit: int) -> int | None:
    """If ``storage`` still holds Raft state written under an id from before identity keys,
    queue its committed messages for merging and drop that state; return how many messages
    were queued (None: nothing to do)."""
    legacy = storage.legacy_node_id
    if legacy is None:
        return None
    persisted = storage.load()
    snapshot = persisted.snapshot
    if snapshot is not None and snapshot.data:
        state = chat.ChatState.restore(snapshot.data, history_limit=history_limit)
    else:
        state = chat.ChatState(history_limit=history_limit)
    for entry in persisted.entries:
        if entry.index > persisted.hard_state.commit:
            break
        if entry.index == state.last_applied_index + 1:
            state.apply(entry)
    source = storage.cluster or legacy_cluster_identity(storage.channel)
    pending = storage.pending_merge()
    items = merge_items(state.history(), source, pending.items if pending else ())
    storage.begin_merge(source, items)
    if not items:
        storage.finish_merge()
    logger.warning(
        "channel %s: the Raft state of old node id %s is dropped; %d committed messages are"
        " merged back into the channel by this node, now %s",
        storage.channel,
        legacy,
        len(items),
        storage.node_id,
    )
    return len(items)
