"""The node runtime without the network: applying entries, acknowledgements, re-proposals.

Entries are applied the way the Ready loop applies committed ones, so these tests pin
down what a sender is told, whatever the order the leader appended its proposals in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftchat import chat
from raftchat.config import Settings
from raftchat.node import Node
from raftchat.nodeapi import AckEvent, ChatMessageEvent, Event
from raftchat.raft.messages import Entry, EntryKind
from raftchat.storage import Storage


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    storage = Storage.open_channel("unit", tmp_path)
    yield Node(storage, Settings(), nick="ada")
    storage.close()


def committed(node: Node, index: int, serial: int) -> Entry:
    """The committed entry of the node's own pending proposal ``serial``."""
    data = node._pending[serial].data
    return Entry(index, 1, EntryKind.NORMAL, data, node.node_id, serial)


def drain(queue: asyncio.Queue[Event]) -> list[Event]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


def test_own_message_is_acknowledged_once_with_its_index(node: Node) -> None:
    queue = node.subscribe()
    message_id = node.send_chat("hello")
    serial = int(message_id.split(":")[1])
    entry = committed(node, 1, serial)
    node._apply(entry)
    node._apply(Entry(2, 1, EntryKind.NORMAL, entry.data, node.node_id, serial))  # a retry
    events = drain(queue)
    assert [e for e in events if isinstance(e, AckEvent)] == [AckEvent(message_id, 1)]
    assert [e.index for e in events if isinstance(e, ChatMessageEvent)] == [1]
    assert not node._pending


def test_proposal_overtaken_by_a_later_serial_is_proposed_again_and_acked_by_its_id(
    node: Node,
) -> None:
    queue = node.subscribe()
    first_id = node.send_chat("first")
    second_id = node.send_chat("second")
    first, second = (int(i.split(":")[1]) for i in (first_id, second_id))
    # The first was lost with an old leader; the second committed before its retry.
    node._apply(committed(node, 1, second))
    late_retry = committed(node, 2, first)
    node._apply(late_retry)  # dropped: its serial is below the client's last one
    (pending,) = node._pending.values()
    assert pending.serial > second and pending.message_id == first_id
    node._apply(committed(node, 3, pending.serial))
    events = drain(queue)
    acks = [e for e in events if isinstance(e, AckEvent)]
    assert acks == [AckEvent(second_id, 1), AckEvent(first_id, 3)]
    texts = [e.text for e in events if isinstance(e, ChatMessageEvent)]
    assert texts == ["second", "first"]


async def test_nick_change_is_applied_and_no_longer_pending(node: Node) -> None:
    await node.set_nick("grace")
    (serial,) = node._pending
    node._apply(committed(node, 1, serial))
    assert node.chat.nick_of(node.node_id) == "grace"
    assert not node._pending


def test_leave_request_marks_the_leave_committed(node: Node) -> None:
    node._propose_command(chat.Leave(), "leave")
    (serial,) = node._pending
    node._apply(committed(node, 1, serial))
    assert node._leave_committed.is_set()
    assert node.node_id in node._departing


def test_status_reports_the_effective_election_timeout(node: Node) -> None:
    status = node.status()
    assert status.node_id == node.node_id
    assert status.election_timeout_ms == Settings().election_timeout_min_ms
    assert status.state == "follower"
