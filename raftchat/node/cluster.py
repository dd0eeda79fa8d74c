"""Which cluster each peer belongs to, and which Raft traffic this node lets through.

Two clusters can serve one channel: a newcomer finds nobody present (every member
away, or a restarted signaling server that has not heard from them yet) and founds
one of its own. Raft must never mix their logs, so each node tells every peer its
cluster in a :class:`ClusterHello`, the first frame on every new link (and again
whenever its cluster changes; its incarnation follows, see
:mod:`raftchat.node.incarnation`), and :class:`ClusterGate` drops Raft messages from
a peer of another cluster, counted and logged once per peer and cluster.

When two clusters meet, :func:`survivor` says which one the channel keeps; the
members of the other merge their history into it (:mod:`raftchat.node.merge`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from raftchat.node.incarnation import IncarnationHello
from raftchat.raft import (
    MESSAGE_TYPES,
    AppendEntries,
    ClusterIdentity,
    InstallSnapshot,
    Message,
    NodeId,
)
from raftchat.raft.codec import Codec

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClusterHello:
    """The sender's cluster: ``cluster_id`` empty while it belongs to none (a newcomer,
    or a node that left its cluster to merge into another and is waiting to be added)."""

    sender: NodeId
    cluster_id: NodeId
    founded_ms: int

    @property
    def cluster(self) -> ClusterIdentity | None:
        return ClusterIdentity(self.founded_ms, self.cluster_id) if self.cluster_id else None


NODE_CODEC = Codec(message_types=(*MESSAGE_TYPES, ClusterHello, IncarnationHello))
"""The codec of the node's links: Raft's messages plus the two hellos (tagged after them,
the incarnation's last, so the ``ClusterHello`` keeps the tag it always had)."""


def hello(node_id: NodeId, cluster: ClusterIdentity | None) -> ClusterHello:
    if cluster is None:
        return ClusterHello(node_id, "", 0)
    return ClusterHello(node_id, cluster.cluster_id, cluster.founded_ms)


def new_cluster_identity(now_ms: int) -> ClusterIdentity:
    """A fresh identity for a cluster founded at ``now_ms``: 128 random bits."""
    return ClusterIdentity(founded_ms=now_ms, cluster_id=secrets.token_hex(16))


def survivor(clusters: Iterable[ClusterIdentity]) -> ClusterIdentity:
    """The cluster a channel keeps when these meet: the oldest founded, then the
    smallest id.

    Only facts fixed at founding count, so every node that hears of two clusters picks
    the same one at any moment; a rule on something that moves (such as how many entries
    each has committed) could be computed by two nodes from readings taken at different
    times and disagree, leaving both clusters alive or both giving up. The older cluster
    is normally the channel that was there first; a newcomer's cluster, founded when it
    found nobody, is the younger one and merges its few messages into it. Clocks that
    disagree only change which history is re-proposed, never the outcome of one channel.
    """
    return min(clusters, key=lambda cluster: (cluster.founded_ms, cluster.cluster_id))


class ClusterGate:
    """What this node knows of its peers' clusters, and whether a peer's message may pass."""

    def __init__(self, node_id: NodeId) -> None:
        self.node_id = node_id
        self.cluster: ClusterIdentity | None = None
        """This node's cluster; None before it founds or joins one."""
        self.peer_clusters: dict[NodeId, ClusterIdentity | None] = {}
        """The cluster each peer's latest hello named (None: it belongs to none)."""
        self.left: frozenset[str] = frozenset()
        """Ids of the clusters this node left to merge into another, while that merge is
        pending: never joined again. Their configurations may still count this node, and
        it dropped the log and votes it had there: back as an empty member, it could vote
        twice in a term or lose entries counted as stored on it."""
        self.dropped = 0
        """Raft messages dropped because they came from another cluster (or before the
        peer's hello)."""
        self._logged: set[tuple[NodeId, ClusterIdentity | None]] = set()

    def heard_hello(self, message: ClusterHello) -> None:
        cluster = message.cluster
        # This node's own identity object when it is the same cluster: ``admit`` (once per
        # frame) then mostly compares by identity.
        self.peer_clusters[message.sender] = self.cluster if cluster == self.cluster else cluster

    def joinable(self, peers: Iterable[NodeId]) -> frozenset[NodeId]:
        """The ``peers`` this node's cluster may add: they said they belong to none, or
        to this very cluster (a member that was away)."""
        return frozenset(
            peer
            for peer in peers
            if peer in self.peer_clusters and self.peer_clusters[peer] in (None, self.cluster)
        )

    def foreign(self, open_peers: Iterable[NodeId]) -> set[ClusterIdentity]:
        """The other clusters among ``open_peers`` (the peers linked now)."""
        found = set()
        for peer in open_peers:
            cluster = self.peer_clusters.get(peer)
            if cluster is not None and cluster != self.cluster:
                found.add(cluster)
        return found

    def admit(
        self, peer: NodeId, message: Message, open_peers: Callable[[], Iterable[NodeId]]
    ) -> bool:
        """Whether ``message`` from ``peer`` may reach the Raft core.

        A node in a cluster takes messages only from peers of the same cluster. A node in
        none takes the leader's AppendEntries or InstallSnapshot that adds it to a cluster
        (:meth:`adopts`), and only from the cluster that would survive among the ones it
        is linked to (``open_peers()``): it joins the one everybody ends up in; never one
        it :attr:`left`."""
        mine = self.cluster
        theirs = self.peer_clusters.get(peer)
        if theirs is mine and mine is not None:
            return True  # the hot path: a peer of this node's cluster
        if peer not in self.peer_clusters:
            admitted = False
        elif mine is not None:
            admitted = theirs == mine
        else:
            admitted = (
                theirs is not None
                and isinstance(message, AppendEntries | InstallSnapshot)
                and theirs.cluster_id not in self.left
                and theirs == survivor(self.foreign(open_peers()) | {theirs})
            )
        if not admitted:
            self._drop(peer, theirs, message)
        return admitted

    def adopts(self, peer: NodeId) -> ClusterIdentity | None:
        """The cluster this node joins by admitting ``peer``'s message, if it has none."""
        if self.cluster is not None:
            return None
        return self.peer_clusters.get(peer)

    def _drop(self, peer: NodeId, theirs: ClusterIdentity | None, message: Message) -> None:
        self.dropped += 1
        key = (peer, theirs)
        if key in self._logged:
            return
        self._logged.add(key)
        if peer not in self.peer_clusters:
            logger.info("dropping Raft traffic from %s until it says which cluster", peer)
        elif theirs is None:
            logger.info("dropping Raft traffic from %s: it belongs to no cluster yet", peer)
        elif self.cluster is None and theirs.cluster_id in self.left:
            logger.info(
                "dropping %s from %s (cluster %s): this node left that cluster to merge",
                type(message).__name__,
                peer,
                theirs.cluster_id[:8],
            )
        elif self.cluster is None:
            logger.info(
                "dropping %s from %s (cluster %s): not joining that cluster",
                type(message).__name__,
                peer,
                theirs.cluster_id[:8],
            )
        else:
            logger.warning(
                "dropping Raft traffic from %s: it belongs to cluster %s, this node to %s",
                peer,
                theirs.cluster_id[:8],
                self.cluster.cluster_id[:8],
            )
