"""Signed chat: every node applies a command only if its author signed exactly it."""

from __future__ import annotations

import dataclasses

from raftchat.chat import (
    ChatMessage,
    ChatState,
    Leave,
    LeaveRequested,
    MergedMessage,
    MessageApplied,
    NickChange,
    decode_command,
    encode_command,
    sign_command,
)
from raftchat.chat.events import InvalidCommand
from raftchat.net.identity import NodeIdentity
from raftchat.node.merge import merge_items
from raftchat.raft import ClusterIdentity, Entry

CHANNEL = "room"
ALICE = NodeIdentity.from_seed(b"a" * 32)
BOB = NodeIdentity.from_seed(b"b" * 32)
CAROL = NodeIdentity.from_seed(b"c" * 32)
TS = 1_800_000_000_000


def entry(index: int, author: str, serial: int, command: object) -> Entry:
    return Entry(index, 1, data=encode_command(command), client_id=author, serial=serial)


def said(state: ChatState) -> list[tuple[str, str]]:
    return [(m.client_id, m.text) for m in state.history()]


def test_a_signed_message_applies_and_keeps_its_signature_through_a_snapshot() -> None:
    state = ChatState(channel=CHANNEL)
    command = sign_command(ChatMessage("alice", "hi", TS), ALICE, CHANNEL, 1)
    assert decode_command(encode_command(command))[0] == command
    events = state.apply(entry(1, ALICE.node_id, 1, command))
    [event] = [event for event in events if isinstance(event, MessageApplied)]
    assert event.signature == command.signature
    restored = ChatState.restore(state.snapshot(), channel=CHANNEL)
    assert restored.history()[0].signature == command.signature


def forgeries() -> list[tuple[str, Entry]]:
    genuine = sign_command(ChatMessage("bob", "hello", TS), BOB, CHANNEL, 1)
    return [
        (
            "another key",
            entry(
                1, BOB.node_id, 1, sign_command(ChatMessage("bob", "FORGED", TS), ALICE, CHANNEL, 1)
            ),
        ),
        ("unsigned", entry(1, BOB.node_id, 1, ChatMessage("bob", "FORGED", TS))),
        ("changed text", entry(1, BOB.node_id, 1, dataclasses.replace(genuine, text="FORGED"))),
        ("another serial", entry(1, BOB.node_id, 2, genuine)),
        (
            "another channel",
            entry(1, BOB.node_id, 1, sign_command(ChatMessage("bob", "x", TS), BOB, "other", 1)),
        ),
        ("a forged leave", entry(1, BOB.node_id, 1, sign_command(Leave(7), ALICE, CHANNEL, 1))),
        ("a forged nick", entry(1, BOB.node_id, 1, NickChange("mallory"))),
    ]


def test_nobody_can_put_words_in_another_members_mouth() -> None:
    for what, forged in forgeries():
        state = ChatState(channel=CHANNEL)
        events = state.apply(forged)
        assert [type(event) for event in events] == [InvalidCommand], what
        assert "not its author's" in events[0].reason, what
        assert state.history() == [] and state.invalid_commands == 1, what
        assert state.nick_of(BOB.node_id) in ("", None), what
        # The forgery used up its serial: bob's own next command is not held up.
        genuine = sign_command(ChatMessage("bob", "real", TS), BOB, CHANNEL, 5)
        state.apply(entry(2, BOB.node_id, 5, genuine))
        assert said(state) == [(BOB.node_id, "real")], what


def test_a_signed_leave_and_nick_change_apply() -> None:
    state = ChatState(channel=CHANNEL)
    state.apply(entry(1, BOB.node_id, 1, sign_command(NickChange("bobby"), BOB, CHANNEL, 1)))
    assert state.nick_of(BOB.node_id) == "bobby"
    events = state.apply(entry(2, BOB.node_id, 2, sign_command(Leave(9), BOB, CHANNEL, 2)))
    assert events == [LeaveRequested(2, BOB.node_id, 9)]


def test_an_id_from_before_keys_still_speaks_unsigned() -> None:
    state = ChatState(channel=CHANNEL)
    state.apply(entry(1, "0123456789abcdef", 1, ChatMessage("old", "from before", TS)))
    assert said(state) == [("0123456789abcdef", "from before")]


def test_a_merged_message_carries_its_authors_signature_into_the_survivor() -> None:
    source = ClusterIdentity(1, "ab" * 16)
    old_cluster = ChatState(channel=CHANNEL)
    signed = sign_command(ChatMessage("alice", "written apart", TS), ALICE, CHANNEL, 3)
    old_cluster.apply(entry(1, ALICE.node_id, 3, signed))
    [item] = merge_items(old_cluster.history(), source)
    merged, _ = decode_command(item.data)
    assert isinstance(merged, MergedMessage) and merged.signature == signed.signature

    survivor = ChatState(channel=CHANNEL)
    # Carol (not the author) proposes it: the author's signature is what counts.
    survivor.apply(Entry(1, 1, data=item.data, client_id=CAROL.node_id, serial=1))
    assert said(survivor) == [(ALICE.node_id, "written apart")]

    tampered = dataclasses.replace(merged, text="FORGED by carol")
    events = survivor.apply(entry(2, CAROL.node_id, 2, tampered))
    assert [type(event) for event in events] == [InvalidCommand]
    assert said(survivor) == [(ALICE.node_id, "written apart")]
