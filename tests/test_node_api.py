"""The node interface: input validation and the JSON form of events."""

from __future__ import annotations

import json

import pytest
from fake_node import FakeChatNode
from hypothesis import given, settings
from hypothesis import strategies as st

from raftchat.chat import ChatMessage, InvalidCommandError, NickChange, encode_command
from raftchat.limits import MAX_MESSAGE_CHARS, MAX_NICK_CHARS
from raftchat.node.api import (
    AckEvent,
    ChatInputError,
    ChatMessageEvent,
    ChatNode,
    EmptyMessageError,
    InvalidNickError,
    MemberInfo,
    MembersEvent,
    MessageTooLongError,
    StatusEvent,
    event_to_json,
    validate_chat_text,
    validate_nick,
)


def test_message_length_limit() -> None:
    assert validate_chat_text("x" * MAX_MESSAGE_CHARS) == "x" * MAX_MESSAGE_CHARS
    with pytest.raises(MessageTooLongError, match=str(MAX_MESSAGE_CHARS)):
        validate_chat_text("x" * (MAX_MESSAGE_CHARS + 1))
    with pytest.raises(EmptyMessageError):
        validate_chat_text("   ")


@pytest.mark.parametrize(
    "nick", ["", "two words", "tab\there", "esc\x1b", "x" * (MAX_NICK_CHARS + 1)]
)
def test_bad_nicks_are_refused(nick: str) -> None:
    with pytest.raises(InvalidNickError):
        validate_nick(nick)


def test_good_nick_is_accepted() -> None:
    assert validate_nick("zoë_42") == "zoë_42"


def test_nick_with_the_disambiguator_is_refused_at_input() -> None:
    with pytest.raises(InvalidNickError, match="Nick 'ada#x' refused: nick must not contain '#'"):
        validate_nick("ada#x")


def test_message_with_a_terminal_control_is_refused_at_input() -> None:
    with pytest.raises(ChatInputError, match="U\\+001B"):
        validate_chat_text("red\x1b[31m")
    assert validate_chat_text("tab\tand\nnewline") == "tab\tand\nnewline"


def applied(command: ChatMessage | NickChange) -> bool:
    try:
        encode_command(command)
    except InvalidCommandError:
        return False
    return True


def accepted(validate, value: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        validate(value)
    except ChatInputError:
        return False
    return True


tricky_text = st.text(alphabet="a #\t\n\x1b\x85\u200b\u00a0é", max_size=MAX_NICK_CHARS + 2)


@settings(max_examples=300, deadline=None, print_blob=True)
@given(tricky_text)
def test_input_checks_are_the_rules_members_apply(value: str) -> None:
    """Whatever a node accepts from its user, every member applies (and the reverse)."""
    assert accepted(validate_nick, value) == applied(NickChange(value))
    assert accepted(validate_chat_text, value) == applied(
        ChatMessage("ada", value, 1_700_000_000_000)
    )


def test_longest_input_message_is_applied() -> None:
    assert applied(
        ChatMessage("ada", validate_chat_text("x" * MAX_MESSAGE_CHARS), 1_700_000_000_000)
    )


def test_events_serialize_to_json_lines() -> None:
    status = StatusEvent(
        node_id="n1",
        state="leader",
        term=3,
        leader="n1",
        voters=("n1", "n2"),
        learners=(),
        commit_index=5,
        applied_index=5,
        last_index=6,
        snapshot_index=0,
        election_timeout_ms=300.0,
        counters={"requestvote_sent": 2},
        signaling_state="connected",
    )
    data = json.loads(json.dumps(event_to_json(status)))
    assert data["type"] == "status" and data["voters"] == ["n1", "n2"]
    assert data["counters"] == {"requestvote_sent": 2}
    message = ChatMessageEvent(7, "n2:1", "n2", "bob", "hi", 1.5)
    assert event_to_json(message) == {
        "type": "message",
        "index": 7,
        "id": "n2:1",
        "sender_id": "n2",
        "nick": "bob",
        "text": "hi",
        "ts": 1.5,
        "action": False,
        "merged": False,
    }
    assert event_to_json(AckEvent("n1:1", 8)) == {"type": "ack", "id": "n1:1", "index": 8}
    members = event_to_json(MembersEvent((MemberInfo("n1", "al", "leader", "self"),)))
    assert members["members"][0]["role"] == "leader"


def test_fake_node_implements_the_protocol() -> None:
    assert isinstance(FakeChatNode(), ChatNode)


async def test_fake_node_commits_in_order_with_ack_after_message() -> None:
    node = FakeChatNode()
    queue = node.subscribe()
    first = node.send_chat("one")
    node.receive("bob", "interleaved")
    node.send_chat("two")
    node.commit_next()
    node.commit_next()
    events = [queue.get_nowait() for _ in range(queue.qsize())]
    chat = [e for e in events if isinstance(e, ChatMessageEvent)]
    assert [e.text for e in chat] == ["interleaved", "one", "two"]
    assert [e.index for e in chat] == [1, 2, 3]
    acks = [e for e in events if isinstance(e, AckEvent)]
    assert acks[0] == AckEvent(first, 2)
    assert events.index(acks[0]) > events.index(chat[1])
    assert [e.index for e in node.history()] == [1, 2, 3]
