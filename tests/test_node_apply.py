"""Applying committed entries on the hot path: a node neither decodes nor checks the
signature of the bytes it signed and proposed itself, and checks everything else."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftchat import chat
from raftchat.chat import signing
from raftchat.chat.commands import signed_content
from raftchat.net.identity import NodeIdentity, length_prefixed
from raftchat.node import Node
from raftchat.node.api import AckEvent, ChatMessageEvent, ErrorEvent, Event
from raftchat.raft.messages import Entry, EntryKind
from raftchat.settings import Settings
from raftchat.storage import Storage

MALLORY = NodeIdentity.from_seed(b"m" * 32)
BOB = NodeIdentity.from_seed(b"b" * 32)
TS = 1_800_000_000_000


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    storage = Storage.open_channel("unit", tmp_path)
    yield Node(storage, Settings(), nick="ada")
    storage.close()


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The commands the chat state decoded."""
    seen: list[bytes] = []
    decode = chat.state.decode_command

    def counting(data: bytes, *args: object) -> tuple[chat.Command, int]:
        seen.append(data)
        return decode(data, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(chat.state, "decode_command", counting)
    return seen


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The authors whose signatures the chat state checked."""
    seen: list[str] = []
    check = chat.state.signature_problem

    def counting(channel: str, author: str, *args: object) -> str | None:
        seen.append(author)
        return check(channel, author, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(chat.state, "signature_problem", counting)
    return seen


def drain(queue: asyncio.Queue[Event]) -> list[Event]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


def test_the_signed_bytes_are_the_length_prefixed_fields() -> None:
    """The signed bytes are built in parts; they must stay what every node signs."""
    command = chat.ChatMessage("bob", "héllo", TS, True)
    tag, fields = signed_content(command)
    for channel, serial in (("room", 1), ("other-room", 2**64 - 1), ("room", 7)):
        expected = length_prefixed(
            signing.COMMAND_DOMAIN,
            channel.encode(),
            BOB.node_id.encode(),
            serial.to_bytes(8, "big"),
            chat.commands.packer().pack([tag, *fields]),
        )
        assert signing.signed_bytes(channel, BOB.node_id, serial, tag, fields) == expected


def test_own_proposal_applies_without_decoding_or_checking_its_own_signature(
    node: Node, checks: list[str], decoded: list[bytes]
) -> None:
    queue = node.subscribe()
    message_id = node.send_chat("hello")
    serial = int(message_id.split(":")[1])
    data = node.proposals.pending[serial].data
    node._apply(Entry(1, 1, EntryKind.NORMAL, data, node.node_id, serial))
    events = drain(queue)
    assert [e.text for e in events if isinstance(e, ChatMessageEvent)] == ["hello"]
    assert [e.id for e in events if isinstance(e, AckEvent)] == [message_id]
    assert checks == [] and decoded == []
    # Another author's entry is decoded and checked.
    command = chat.sign_command(chat.ChatMessage("bob", "hi", TS), BOB, node.channel, 1)
    data = chat.encode_command(command)
    node._apply(Entry(2, 1, EntryKind.NORMAL, data, BOB.node_id, 1))
    assert checks == [BOB.node_id] and decoded == [data]
    assert [e.text for e in drain(queue) if isinstance(e, ChatMessageEvent)] == ["hi"]


def test_a_leader_cannot_pass_off_other_bytes_under_a_pending_serial(
    node: Node, checks: list[str]
) -> None:
    """Only the very bytes this node proposed skip the check: a forged command under its
    id and pending serial is checked, and refused."""
    queue = node.subscribe()
    serials = [int(node.send_chat(text).split(":")[1]) for text in ("hello", "again")]
    for index, (serial, signer) in enumerate(zip(serials, (None, MALLORY), strict=True), 1):
        mine = node.proposals.pending[serial]
        forged = dataclasses.replace(mine.command, text="FORGED", signature=None)
        if signer is not None:
            forged = chat.sign_command(forged, signer, node.channel, serial)
        data = chat.encode_command(forged, prev_serial=mine.prev_serial)
        node._apply(Entry(index, 1, EntryKind.NORMAL, data, node.node_id, serial))
        assert len(checks) == index
        events = drain(queue)
        assert not [e for e in events if isinstance(e, ChatMessageEvent)]
        assert any(isinstance(e, ErrorEvent) and "not its author's" in e.message for e in events)
    assert node.chat.history() == []


def test_a_merged_message_this_node_proposed_is_checked_all_the_same(
    node: Node, checks: list[str]
) -> None:
    """A merged message carries its original author's signature, not this node's: its
    own proposal of one is decoded and checked like any entry, and a forged one refused."""
    queue = node.subscribe()
    forged = chat.sign_command(chat.ChatMessage("bob", "FORGED", TS), MALLORY, node.channel, 3)
    merged = chat.MergedMessage(
        "0" * 32, BOB.node_id, 3, "bob", "FORGED", TS, False, signature=forged.signature
    )
    serial = int(node.proposals.propose(merged, "merge", 0.0).split(":")[1])
    data = node.proposals.pending[serial].data
    node._apply(Entry(1, 1, EntryKind.NORMAL, data, node.node_id, serial))
    assert checks == [BOB.node_id]
    events = drain(queue)
    assert not [e for e in events if isinstance(e, ChatMessageEvent)]
    assert node.chat.history() == []
