"""Unit tests that hand a node frames directly: say which cluster the peer is in first."""

from __future__ import annotations

from raftchat.node import Node
from raftchat.node.cluster import NODE_CODEC, hello
from raftchat.raft import ClusterIdentity

TEST_CLUSTER = ClusterIdentity(founded_ms=1_700_000_000_000, cluster_id="c1" * 16)


def introduce(node: Node, *peers: str, cluster: ClusterIdentity | None = TEST_CLUSTER) -> None:
    """Deliver each peer's hello naming ``cluster``, as the first frame of its link."""
    for peer in peers:
        node._on_frame(peer, NODE_CODEC.encode(hello(peer, cluster)))
