"""The node's incarnation: a new one on every start, said on every new link, named by the
leave request; what a peer says of its own is checked before it is used."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from support.links import FrameRecorder, link_info

from raftchat import chat
from raftchat.net import LinkState
from raftchat.node import Node
from raftchat.node.cluster import NODE_CODEC, ClusterHello
from raftchat.node.incarnation import IncarnationHello
from raftchat.raft import MESSAGE_TYPES, Entry, EntryKind
from raftchat.raft.codec import PROTOCOL_VERSION
from raftchat.settings import Settings
from raftchat.storage import Storage

PEER = "bob"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage.open_channel("unit", tmp_path)
    yield store
    store.close()


@pytest.fixture
def node(storage: Storage) -> Node:
    return Node(storage, Settings(), nick="ada")


def dropped(node: Node) -> int:
    return node.status().counters["messages_dropped"]


def test_every_start_of_a_node_is_a_new_larger_incarnation(tmp_path: Path) -> None:
    incarnations = []
    for _ in range(3):
        with Storage.open_channel("unit", tmp_path) as storage:
            incarnations.append(Node(storage, Settings(), nick="ada").incarnation)
    assert incarnations == sorted(set(incarnations))


def test_every_new_connection_opens_with_the_cluster_then_the_incarnation(node: Node) -> None:
    mesh = FrameRecorder()
    node._mesh = mesh  # type: ignore[assignment]
    node._on_link_change(PEER, link_info(PEER, LinkState.OPEN, 1))
    node._on_link_change(PEER, link_info(PEER, LinkState.OPEN, 1))  # its counters only
    assert mesh.kinds() == [ClusterHello, IncarnationHello]
    assert mesh.sent[1] == (PEER, IncarnationHello(node.node_id, node.incarnation))
    node._on_link_change(PEER, link_info(PEER, LinkState.FAILED, 1))
    node._on_link_change(PEER, link_info(PEER, LinkState.OPEN, 2))  # reconnected
    assert mesh.kinds() == [ClusterHello, IncarnationHello] * 2


def test_a_peers_incarnation_is_kept_and_only_its_newest(node: Node) -> None:
    node._on_frame(PEER, NODE_CODEC.encode(IncarnationHello(PEER, 6)))
    node._on_frame(PEER, NODE_CODEC.encode(IncarnationHello(PEER, 5)))
    assert node.membership.incarnations == {PEER: 6}
    assert dropped(node) == 0


def test_an_incarnation_claimed_for_another_peer_is_dropped(node: Node) -> None:
    node._on_frame("mallory", NODE_CODEC.encode(IncarnationHello(PEER, 9)))
    assert node.membership.incarnations == {}
    assert dropped(node) == 1


@pytest.mark.parametrize("value", [0, -1, 2**63, True, "7", None, 1.5])
def test_a_bad_incarnation_is_dropped_and_counted(node: Node, value: object) -> None:
    wire = msgpack.unpackb(NODE_CODEC.encode(IncarnationHello(PEER, 1)))
    wire[-1] = value
    node._on_frame(PEER, msgpack.packb(wire))
    assert node.membership.incarnations == {}
    assert dropped(node) == 1


def test_a_cluster_hello_of_an_earlier_release_still_decodes() -> None:
    """Its tag and fields are what they always were: the incarnation came as a frame of
    its own, tagged after it."""
    frame = msgpack.packb([PROTOCOL_VERSION, len(MESSAGE_TYPES), PEER, "", 0])
    assert NODE_CODEC.decode(frame) == ClusterHello(PEER, "", 0)


def test_the_leave_request_names_this_run_and_only_this_runs_request_counts(node: Node) -> None:
    own = node.node_id
    earlier = chat.encode_command(chat.Leave(node.incarnation - 1))
    node._apply(Entry(1, 1, EntryKind.NORMAL, earlier, own, 1))  # an earlier run's, again
    assert not node._leave_committed.is_set()
    node._propose_command(chat.Leave(node.incarnation), "leave")
    (proposal,) = node.proposals.pending.values()
    leave = chat.decode_command(proposal.data)[0]
    assert isinstance(leave, chat.Leave) and leave.incarnation == node.incarnation
    assert leave.signature is not None  # signed: nobody else can ask for its removal
    node._apply(Entry(2, 1, EntryKind.NORMAL, proposal.data, own, proposal.serial))
    assert node._leave_committed.is_set()
    assert node.membership.leave_requests[own] == node.incarnation


def test_a_member_added_again_is_no_longer_leaving(node: Node) -> None:
    leave = chat.encode_command(chat.Leave(5))
    node._apply(Entry(1, 1, EntryKind.NORMAL, leave, PEER, 1))
    assert node.membership.leave_requests == {PEER: 5}
    node._on_chat_event(chat.MemberJoined(2, PEER, False))
    assert node.membership.leave_requests == {}


def test_a_removal_followed_by_a_return_is_not_a_removal_of_this_run(node: Node) -> None:
    """A start applies the log again: the removal of an earlier run that quit, then its
    return, leaves this run a member that a leave still has to wait for."""
    own = node.node_id
    node._on_chat_event(chat.MemberLeft(3, own))
    node._on_chat_event(chat.MemberJoined(5, own, False))
    assert not node._removed.is_set()
