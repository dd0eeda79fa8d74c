"""Notices about changes a node replays or catches up on carry the time of the chat
around them, not the time the node applies them."""

from __future__ import annotations

from pathlib import Path

from raftchat import chat
from raftchat.node import Node
from raftchat.raft import HardState
from raftchat.raft.messages import Entry, EntryKind
from raftchat.settings import Settings
from raftchat.storage import Storage
from tests.test_node_events import ALICE, BOB, CAROL, WALL, Channel, texts

SPOKE_MS = 1_600_000_000_000
"""When bob spoke (epoch milliseconds), long before ``WALL``, the time applied."""


def test_replayed_membership_notices_carry_the_time_of_the_message_before_them() -> None:
    channel = Channel(ALICE)
    channel.nick(BOB)
    channel.nick(CAROL)
    channel.configure({ALICE, BOB})
    channel.notices(channel.apply(BOB, chat.ChatMessage("bob", "hi", SPOKE_MS, False)))
    joined = channel.configure({ALICE, BOB}, {CAROL})
    promoted = channel.configure({ALICE, BOB, CAROL})
    channel.view.history_through = channel.index  # all of it committed before it came

    replayed = channel.notices(joined + promoted, now=WALL)

    assert texts(replayed) == ["carol joined as learner", "carol is now a voter"]
    assert [notice.ts for notice in replayed] == [SPOKE_MS / 1000] * 2


def test_a_change_after_the_history_is_stamped_when_it_applies() -> None:
    channel = Channel(ALICE)
    channel.nick(CAROL)
    channel.configure({ALICE})
    channel.notices(channel.apply(CAROL, chat.ChatMessage("carol", "hi", SPOKE_MS, False)))
    channel.view.history_through = channel.index
    (notice,) = channel.notices(channel.configure({ALICE}, {CAROL}), now=WALL)
    assert (notice.text, notice.ts) == ("carol joined as learner", WALL)


def test_replayed_changes_with_no_message_to_date_them_are_not_shown_as_new() -> None:
    channel = Channel(ALICE)
    channel.nick(BOB)
    events = channel.configure({ALICE}, {BOB})
    channel.view.history_through = channel.index
    assert channel.notices(events, now=WALL) == []
    assert channel.view.due_notices(channel.state, now=WALL + 60) == []


def test_a_replayed_removal_says_only_what_the_log_says() -> None:
    channel = Channel(ALICE)
    channel.nick(BOB)
    channel.configure({ALICE, BOB})
    channel.notices(channel.apply(BOB, chat.ChatMessage("bob", "bye", SPOKE_MS, False)))
    left = channel.configure({ALICE})
    channel.view.history_through = channel.index
    (notice,) = channel.notices(left, now=WALL)
    assert (notice.text, notice.ts) == ("bob was removed", SPOKE_MS / 1000)


def test_entries_the_leader_had_committed_before_sending_them_are_history() -> None:
    channel = Channel(ALICE)
    channel.view.received_entries(last_index=40, leader_commit=25)
    assert channel.view.history_through == 25
    channel.view.received_entries(last_index=41, leader_commit=40)  # live: not yet committed
    assert channel.view.history_through == 40


def test_a_restarted_node_treats_what_it_stored_before_as_history(tmp_path: Path) -> None:
    with Storage.open_channel("unit", tmp_path) as storage:
        entries = [Entry(index, 1, EntryKind.NOOP, b"") for index in (1, 2, 3)]
        storage.save(HardState(term=1, vote="", commit=3), entries)
    storage = Storage.open_channel("unit", tmp_path)
    try:
        node = Node(storage, Settings(), nick="ada")
        assert node.view.history_through == 3
    finally:
        storage.close()


def test_a_replayed_nick_releases_the_notice_that_waited_for_it() -> None:
    """A newcomer hears who leads before the log (no message yet) names the leader."""
    channel = Channel(ALICE)
    assert channel.view.leader_notices(channel.state, BOB, 2, now=WALL) == []
    nick = channel.nick(BOB)
    channel.view.history_through = channel.index
    (notice,) = channel.notices(nick, now=WALL + 1)
    assert (notice.text, notice.ts) == ("bob is the leader (term 2)", WALL)
