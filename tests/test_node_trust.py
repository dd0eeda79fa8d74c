"""What the node lets through from a link before Raft sees it."""

from __future__ import annotations

from pathlib import Path

from raftchat.frontends.launch import open_node
from raftchat.node.cluster import NODE_CODEC
from raftchat.raft import ForwardProposal
from raftchat.settings import Settings


async def test_a_proposal_in_another_members_name_is_dropped(tmp_path: Path) -> None:
    node = open_node("trust", Settings(data_dir=tmp_path), passphrase=None)
    try:
        mallory = "mallory-0123456789"
        forged = ForwardProposal(mallory, 1, "bob-0123456789abcd", 1, b"FORGED: bob says hi")
        own = ForwardProposal(mallory, 1, mallory, 1, b"hi")
        node._on_frame(mallory, NODE_CODEC.encode(forged))
        assert node.status().counters["messages_dropped"] == 1
        received = node.core.status().messages_received
        assert "ForwardProposal" not in received
        node._on_frame(mallory, NODE_CODEC.encode(own))
        assert node.status().counters["messages_dropped"] == 1
    finally:
        await node.stop()
