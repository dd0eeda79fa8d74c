"""A node that becomes a member proposes its nick if the channel has none for it, so the
others name it (in its join notice too) before it says anything. No network: the leader
``v1`` is played by the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import introduce

from raftchat import chat
from raftchat.node import Node
from raftchat.raft import codec
from raftchat.raft.codec import encode_configuration
from raftchat.raft.messages import (
    AppendEntries,
    Configuration,
    Entry,
    EntryKind,
    ForwardProposal,
)
from raftchat.settings import Settings
from raftchat.storage import Storage

LEADER = "v1"


class RecordingMesh:
    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def send(self, to: str, data: bytes, urgent: bool = False) -> bool:
        self.sent.append((to, codec.decode(data)))
        return True

    def set_peers(self, peers: frozenset[str]) -> None:
        pass

    def links(self) -> dict:
        return {}

    def forwarded(self) -> list[ForwardProposal]:
        return [m for to, m in self.sent if to == LEADER and isinstance(m, ForwardProposal)]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    storage = Storage.open_channel("unit", tmp_path)
    node = Node(storage, Settings(), nick="ada")
    node._mesh = RecordingMesh()  # type: ignore[assignment]
    yield node
    storage.close()


def replicate(node: Node, entry: Entry) -> None:
    """The leader appends ``entry`` to the node's log and commits it; the node applies it."""
    previous = entry.index - 1
    message = AppendEntries(LEADER, 1, previous, 1 if previous else 0, (entry,), entry.index)
    introduce(node, LEADER)
    node._on_frame(LEADER, codec.encode(message))
    node._drain()


def added(node: Node, index: int = 1) -> None:
    configuration = Configuration(frozenset({LEADER}), frozenset({node.node_id}))
    replicate(node, Entry(index, 1, EntryKind.CONFIG, encode_configuration(configuration)))


def nick_proposals(node: Node) -> list[int]:
    return [serial for serial, p in node.proposals.pending.items() if p.kind == "nick"]


def test_a_node_added_to_the_channel_proposes_its_nick(node: Node) -> None:
    node._propose_nick_if_unknown()
    assert nick_proposals(node) == [], "not a member yet: nothing to name"
    added(node)
    assert node._nick_due, "its join applied: the next housekeeping round proposes"
    node._propose_nick_if_unknown()
    assert not node._nick_due
    assert len(nick_proposals(node)) == 1
    node._drain()
    assert [m.client_id for m in node.mesh.forwarded()] == [node.node_id]  # type: ignore[union-attr]
    node._propose_nick_if_unknown()
    assert len(nick_proposals(node)) == 1, "proposed once"


def test_a_node_whose_nick_the_channel_knows_proposes_nothing(node: Node) -> None:
    """E.g. it was a member before and was added again: its nick is in the chat state."""
    data = chat.encode_command(node._sign(chat.NickChange("ada"), 1))
    replicate(node, Entry(1, 1, EntryKind.NORMAL, data, node.node_id, 1))
    added(node, index=2)
    node._propose_nick_if_unknown()
    assert nick_proposals(node) == []


def test_a_message_on_its_way_carries_the_nick_already(node: Node) -> None:
    node.send_chat("typed before being added")
    added(node)
    node._propose_nick_if_unknown()
    assert nick_proposals(node) == []
