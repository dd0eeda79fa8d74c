"""What a node accepts from the mesh: only well-formed frames from the peer they claim."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import TEST_CLUSTER, introduce

from raftchat.node import Node
from raftchat.raft import codec
from raftchat.raft.messages import RequestVote
from raftchat.settings import Settings
from raftchat.storage import Storage


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    storage = Storage.open_channel("unit", tmp_path)
    yield Node(storage, Settings(), nick="ada")
    storage.close()


def received_votes(node: Node) -> int:
    return node.core.status().messages_received.get("RequestVote", 0)


def test_message_claiming_another_sender_is_dropped_and_counted(node: Node) -> None:
    forged = codec.encode(RequestVote("mallory-claims-bob", 7, 0, 0))
    node._on_frame("mallory", forged)
    assert received_votes(node) == 0
    assert node.core.term == 0
    assert node.status().counters["messages_dropped"] == 1


def test_message_from_the_peer_it_names_reaches_the_core(node: Node) -> None:
    node.cluster_gate.cluster = TEST_CLUSTER
    introduce(node, "bob")
    node._on_frame("bob", codec.encode(RequestVote("bob", 7, 0, 0)))
    assert received_votes(node) == 1
    assert node.status().counters["messages_dropped"] == 0


@pytest.mark.parametrize(
    "frame",
    [b"", b"\xc1", b"\x92\x01\x63", b"\x00" * 100, codec.encode(RequestVote("bob", 1, 0, 0))[:-1]],
)
def test_malformed_frame_is_dropped_and_counted(node: Node, frame: bytes) -> None:
    node._on_frame("bob", frame)
    assert received_votes(node) == 0
    assert node.status().counters["messages_dropped"] == 1
