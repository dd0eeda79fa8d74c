"""What front ends are told (node/events.py): why the channel cannot commit, members named
by nick, and why a member went. Pure: status, chat state and liveness in, events out."""

from __future__ import annotations

import re

import pytest

from raftchat import chat
from raftchat.node.api import MissingVoter, NoticeEvent
from raftchat.node.events import (
    NICK_WAIT_S,
    NodeView,
    Subscribers,
    assess_quorum,
    short_name,
)
from raftchat.node.membership import Liveness
from raftchat.raft import Configuration, Role, Status
from raftchat.raft.messages import Entry, EntryKind

ALICE = "a1f3c9e07b5d2e44"
BOB = "b7e2108c3d9f6a15"
CAROL = "c04d5a6e1f2b3c47"
DAVE = "d9a7b3c2e1f00a18"
ERIN = "e52f08a7c6b5d499"
NICKS = {ALICE: "alice", BOB: "bob", CAROL: "carol", DAVE: "dave", ERIN: "erin"}
ELECTION_TIMEOUT_S = 0.5
NOW = 1000.0
"""Monotonic time of the liveness facts."""
WALL = 1_700_000_000.0
HEX_ID = re.compile(r"[0-9a-f]{16}")


def status(
    voters: set[str],
    *,
    role: Role = Role.PRE_CANDIDATE,
    leader: str = "",
    learners: frozenset[str] = frozenset(),
    node_id: str = ALICE,
) -> Status:
    return Status(
        node_id=node_id,
        term=3,
        role=role,
        leader=leader,
        vote="",
        commit_index=12,
        applied_index=12,
        last_index=13,
        last_term=3,
        snapshot_index=0,
        snapshot_term=0,
        configuration=Configuration(frozenset(voters), learners),
        configuration_index=2,
        transfer_target="",
        messages_sent={},
        messages_received={},
        proposals_forwarded=0,
        proposals_appended=0,
        reads_forwarded=0,
        elections_started=1,
        snapshots_sent=0,
        snapshots_installed=0,
    )


def liveness(
    silent: dict[str, float],
    *,
    leaderless_for: float | None = 2.0,
    links_down: frozenset[str] = frozenset(),
    present: frozenset[str] | None = None,
    member_timeout_s: float = 30.0,
) -> Liveness:
    """Each peer in ``silent`` was last heard that many seconds ago; its link is open
    unless it is in ``links_down``. Presence: everyone in ``silent`` unless given."""
    return Liveness(
        now=NOW,
        last_contact={peer: NOW - seconds for peer, seconds in silent.items()},
        open_links=frozenset(silent) - links_down,
        present=frozenset(silent) if present is None else present,
        leaderless_since=None if leaderless_for is None else NOW - leaderless_for,
        member_timeout_s=member_timeout_s,
    )


class Channel:
    """A chat state fed the entries every node applies, and one node's view of it."""

    def __init__(self, me: str = ALICE) -> None:
        self.state = chat.ChatState()
        self.view = NodeView(me, NICKS[me])
        self.index = 0
        self.serials: dict[str, int] = {}

    def apply(self, node_id: str, command: chat.Command) -> list[chat.ChatEvent]:
        self.index += 1
        serial = self.serials[node_id] = self.serials.get(node_id, 0) + 1
        data = chat.encode_command(command)
        entry = Entry(self.index, 1, EntryKind.NORMAL, data, node_id, serial)
        return self.state.apply(entry)

    def configure(self, voters: set[str], learners: set[str] = frozenset()) -> list:
        self.index += 1
        self.state.apply(Entry(self.index, 1, EntryKind.CONFIG, b""))
        return self.state.apply_membership(self.index, voters, learners)

    def nick(self, node_id: str, nick: str | None = None) -> list[chat.ChatEvent]:
        return self.apply(node_id, chat.NickChange(nick or NICKS[node_id]))

    def notices(
        self, events: list[chat.ChatEvent], facts: Liveness | None = None, now: float = WALL
    ) -> list[NoticeEvent]:
        return [
            notice
            for event in events
            for notice in self.view.notices_for(self.state, event, facts, now)
        ]

    def report(self, core_status: Status, facts: Liveness):
        return self.view.quorum_report(core_status, self.state, facts, ELECTION_TIMEOUT_S)


def texts(notices: list[NoticeEvent]) -> list[str]:
    return [notice.text for notice in notices]


# --- why the channel cannot commit ---------------------------------------------------


def test_a_lost_voter_of_two_is_named_with_how_long_it_has_been_silent() -> None:
    channel = Channel()
    channel.nick(BOB)
    report = channel.report(
        status({ALICE, BOB}), liveness({BOB: 6.4}, leaderless_for=3.0, links_down={BOB})
    )
    assert report is not None
    assert report.problem == (
        "no leader: waiting for bob \u2014 the channel needs 2 of 2 voters; 1 reachable "
        "(bob last heard 6 s ago); if bob is gone for good, type /forget bob"
    )
    assert report.missing == (MissingVoter(BOB, "bob", 6),)
    assert (report.needed, report.reachable, report.forget) == (2, 1, ("bob",))


def test_the_status_event_carries_the_problem_and_its_facts() -> None:
    channel = Channel()
    channel.nick(BOB)
    event = channel.view.status_event(
        status({ALICE, BOB}),
        applied_index=12,
        election_timeout_ms=500,
        messages_dropped=0,
        stopped=False,
        signaling_state="connected",
        chat_state=channel.state,
        liveness=liveness({BOB: 4.0}, links_down={BOB}),
    )
    assert event.quorum_problem is not None and "waiting for bob" in event.quorum_problem
    assert event.missing_voters == (MissingVoter(BOB, "bob", 4),)
    assert (event.voters_needed, event.voters_reachable) == (2, 1)
    stopped = channel.view.status_event(
        status({ALICE, BOB}),
        applied_index=12,
        election_timeout_ms=500,
        messages_dropped=0,
        stopped=True,
        signaling_state="connected",
        chat_state=channel.state,
        liveness=liveness({BOB: 4.0}, links_down={BOB}),
    )
    assert stopped.quorum_problem is None and stopped.missing_voters == ()


def test_a_short_election_is_no_problem_yet() -> None:
    channel = Channel()
    facts = liveness({BOB: 0.4}, leaderless_for=ELECTION_TIMEOUT_S * 0.8)
    assert channel.report(status({ALICE, BOB}), facts) is None


def test_a_follower_that_knows_a_leader_reports_nothing() -> None:
    channel = Channel()
    facts = liveness({BOB: 0.1, CAROL: 40.0}, leaderless_for=None, links_down={CAROL})
    core = status({ALICE, BOB, CAROL}, role=Role.FOLLOWER, leader=BOB)
    assert channel.report(core, facts) is None


def test_a_node_not_yet_a_member_reports_nothing() -> None:
    channel = Channel()
    assert channel.report(status({BOB, CAROL}), liveness({BOB: 9.0}, leaderless_for=9.0)) is None
    assert channel.report(status(set()), liveness({}, leaderless_for=9.0)) is None


def test_a_leader_that_hears_from_too_few_voters_says_so_at_once() -> None:
    channel = Channel()
    for node_id in (BOB, CAROL):
        channel.nick(node_id)
    core = status({ALICE, BOB, CAROL}, role=Role.LEADER, leader=ALICE)
    lonely = liveness({BOB: 3.0, CAROL: 3.2}, leaderless_for=None)
    report = channel.report(core, lonely)
    assert report is not None
    assert report.problem == (
        "cannot commit: waiting for bob or carol \u2014 the channel needs 2 of 3 voters; "
        "1 reachable (bob last heard 3 s ago, carol last heard 3 s ago); "
        "if bob and carol are gone for good, type /forget bob carol"
    )
    assert channel.report(core, liveness({BOB: 0.05, CAROL: 3.2}, leaderless_for=None)) is None


def test_the_problem_stays_while_a_leader_that_lost_its_quorum_steps_down() -> None:
    """No gap of an election timeout between "cannot commit" and "no leader"."""
    channel = Channel()
    channel.nick(BOB)
    leading = status({ALICE, BOB}, role=Role.LEADER, leader=ALICE)
    assert channel.report(leading, liveness({BOB: 3.0}, leaderless_for=None)) is not None
    stepped_down = status({ALICE, BOB}, role=Role.FOLLOWER)
    report = channel.report(stepped_down, liveness({BOB: 3.1}, leaderless_for=0.01))
    assert report is not None and report.problem.startswith("no leader: waiting for bob")


def test_the_problem_is_gone_as_soon_as_a_leader_is_known() -> None:
    channel = Channel()
    channel.nick(BOB)
    assert channel.report(status({ALICE, BOB}), liveness({BOB: 9.0}, links_down={BOB}))
    back = status({ALICE, BOB}, role=Role.FOLLOWER, leader=BOB)
    assert channel.report(back, liveness({BOB: 0.0}, leaderless_for=None)) is None
    # ...and a later short election is again no problem at first.
    facts = liveness({BOB: 0.2}, leaderless_for=0.1)
    assert channel.report(status({ALICE, BOB}), facts) is None


def test_an_election_with_enough_voters_reachable_says_so() -> None:
    channel = Channel()
    for node_id in (BOB, CAROL):
        channel.nick(node_id)
    facts = liveness({BOB: 0.3, CAROL: 12.0}, leaderless_for=2.0, links_down={CAROL})
    report = channel.report(status({ALICE, BOB, CAROL}), facts)
    assert report is not None
    assert report.problem == (
        "no leader yet: an election is under way \u2014 2 of 3 voters reachable, 2 needed; "
        "unreachable: carol (last heard 12 s ago)"
    )
    assert report.missing == (MissingVoter(CAROL, "carol", 12),)


def test_an_open_link_that_went_quiet_is_not_reachable() -> None:
    """A killed peer's link stays open until the mesh notices (seconds): its silence counts."""
    report = assess_quorum(
        status({ALICE, BOB}), liveness({BOB: 3.0}), ELECTION_TIMEOUT_S, short_name
    )
    assert report.reachable == 1


def test_how_many_of_the_missing_voters_are_needed() -> None:
    channel = Channel()
    for node_id in (BOB, CAROL, DAVE, ERIN):
        channel.nick(node_id)
    voters = {ALICE, BOB, CAROL, DAVE, ERIN}
    gone = {BOB: 70.0, CAROL: 200.0, DAVE: 7300.0, ERIN: 5.0}
    report = channel.report(status(voters), liveness(gone, links_down=frozenset(gone)))
    assert report is not None
    assert report.problem == (
        "no leader: waiting for 2 of bob, carol, dave, erin \u2014 the channel needs 3 of 5 "
        "voters; 1 reachable (bob last heard 70 s ago, carol last heard 3 min ago, dave last "
        "heard 2 h ago, erin last heard 5 s ago); if bob, carol, dave and erin are gone for "
        "good, type /forget bob carol dave erin"
    )


def test_a_voter_never_heard_from_and_without_a_nick() -> None:
    channel = Channel()
    facts = liveness({}, leaderless_for=5.0)
    report = channel.report(status({ALICE, BOB}), facts)
    assert report is not None
    assert report.missing == (MissingVoter(BOB, "user-b7e2", None),)
    assert "waiting for user-b7e2 \u2014" in report.problem
    assert "(user-b7e2 never heard from)" in report.problem
    assert not HEX_ID.search(report.problem)


# --- members named by nick -----------------------------------------------------------


def test_a_join_notice_waits_for_the_newcomers_nick() -> None:
    channel = Channel()
    channel.configure({ALICE})
    joined = channel.notices(channel.configure({ALICE}, {BOB}), now=WALL)
    assert joined == []
    named = channel.notices(channel.nick(BOB), now=WALL + 0.4)
    assert named == [NoticeEvent("join", "bob joined as learner", WALL, member=BOB)]
    promoted = channel.notices(channel.configure({ALICE, BOB}), now=WALL + 1)
    assert texts(promoted) == ["bob is now a voter"]
    assert [notice.member for notice in promoted] == [BOB], "front ends group them by member"


def test_a_nick_known_already_is_used_at_once() -> None:
    channel = Channel()
    channel.configure({ALICE})
    channel.nick(BOB)  # e.g. bob was a member before, or spoke before being added
    assert texts(channel.notices(channel.configure({ALICE}, {BOB}))) == ["bob joined as learner"]


def test_a_first_message_names_a_newcomer_too() -> None:
    channel = Channel()
    channel.configure({ALICE})
    assert channel.notices(channel.configure({ALICE}, {CAROL})) == []
    spoke = channel.apply(CAROL, chat.ChatMessage("carol", "hi all", 1_700_000_000_000, False))
    assert texts(channel.notices(spoke)) == ["carol joined as learner"]
    assert channel.view.due_notices(channel.state, WALL + 60) == []


def test_a_held_notice_is_shown_with_a_short_id_if_no_nick_comes() -> None:
    channel = Channel()
    channel.configure({ALICE})
    assert channel.notices(channel.configure({ALICE}, {BOB}), now=WALL) == []
    assert channel.notices(channel.configure({ALICE, BOB}), now=WALL + 1) == []
    assert channel.view.due_notices(channel.state, WALL + NICK_WAIT_S - 0.1) == []
    late = channel.view.due_notices(channel.state, WALL + NICK_WAIT_S)
    assert texts(late) == ["user-b7e2 joined as learner", "user-b7e2 is now a voter"]
    assert [notice.ts for notice in late] == [WALL, WALL + 1]
    assert channel.view.due_notices(channel.state, WALL + 60) == []


def test_notices_never_show_a_full_node_id() -> None:
    channel = Channel()
    channel.configure({ALICE})
    shown = channel.notices(channel.configure({ALICE}, {BOB}))
    shown += channel.view.due_notices(channel.state, WALL + NICK_WAIT_S)
    shown += channel.notices(channel.configure({ALICE}), liveness({}, present=frozenset()))
    assert texts(shown) == ["user-b7e2 joined as learner", "user-b7e2 disconnected"]
    assert not any(HEX_ID.search(text) for text in texts(shown))


def test_two_members_with_one_nick_are_told_apart() -> None:
    channel = Channel()
    channel.nick(CAROL, "bob")
    channel.configure({ALICE, CAROL})
    channel.nick(BOB)
    (notice,) = channel.notices(channel.configure({ALICE, CAROL}, {BOB}))
    assert notice.text == "bob#b7e2 joined as learner"


# --- why a member went ---------------------------------------------------------------


def removed(channel: Channel, node_id: str, facts: Liveness) -> str:
    voters = channel.state.voters - {node_id}
    (notice,) = channel.notices(
        channel.configure(voters, channel.state.learners - {node_id}), facts
    )
    assert notice.kind == "leave"
    return notice.text


@pytest.fixture
def channel() -> Channel:
    channel = Channel()
    for node_id in (BOB, CAROL):
        channel.nick(node_id)
    channel.configure({ALICE, BOB, CAROL})
    return channel


def test_a_member_that_asked_to_leave_left(channel: Channel) -> None:
    channel.notices(channel.apply(BOB, chat.Leave()))
    # Whatever this node saw of it: the leave request is in the log every node applies.
    assert removed(channel, BOB, liveness({}, present=frozenset())) == "bob left"


def test_a_member_gone_from_presence_disconnected(channel: Channel) -> None:
    facts = liveness({BOB: 3.2, CAROL: 0.1}, present=frozenset({CAROL}))
    assert removed(channel, BOB, facts) == "bob disconnected"


def test_a_member_silent_for_the_member_timeout_was_removed(channel: Channel) -> None:
    facts = liveness({BOB: 31.4, CAROL: 0.1}, links_down={BOB})
    assert removed(channel, BOB, facts) == "bob was removed: not heard from for 31 s"


def test_a_member_this_node_never_heard_from_was_removed_for_the_member_timeout(
    channel: Channel,
) -> None:
    facts = liveness({CAROL: 0.1}, present=frozenset({BOB, CAROL}))
    assert removed(channel, BOB, facts) == "bob was removed: not heard from for 30 s"


def test_a_member_still_in_touch_here_was_removed_by_the_leader(channel: Channel) -> None:
    facts = liveness({BOB: 0.5, CAROL: 0.1})
    assert removed(channel, BOB, facts) == (
        "bob was removed: the leader had not heard from it for 30 s"
    )


def test_a_leave_request_followed_by_more_words_is_not_a_leave(channel: Channel) -> None:
    """It asked to leave, then came back and spoke (the leader saw it return and kept it):
    a later removal is not that leave."""
    channel.notices(channel.apply(BOB, chat.Leave()))
    channel.notices(
        channel.apply(BOB, chat.ChatMessage("bob", "back again", 1_700_000_000_000, False))
    )
    facts = liveness({CAROL: 0.1}, present=frozenset({CAROL}))
    assert removed(channel, BOB, facts) == "bob disconnected"


def test_a_rejoined_member_starts_afresh(channel: Channel) -> None:
    channel.notices(channel.apply(BOB, chat.Leave()))
    assert removed(channel, BOB, liveness({})) == "bob left"
    channel.notices(channel.configure({ALICE, CAROL}, {BOB}))
    assert removed(channel, BOB, liveness({}, present=frozenset())) == "bob disconnected"


def test_a_held_join_is_shown_before_the_leave_of_a_member_without_a_nick() -> None:
    channel = Channel()
    channel.configure({ALICE})
    channel.notices(channel.configure({ALICE}, {DAVE}))
    shown = channel.notices(channel.configure({ALICE}), liveness({}, present=frozenset()))
    assert texts(shown) == ["user-d9a7 joined as learner", "user-d9a7 disconnected"]


def test_the_leader_notice_names_the_leader_by_nick(channel: Channel) -> None:
    assert texts(channel.view.leader_notices(channel.state, BOB, 4)) == [
        "bob is the leader (term 4)"
    ]
    assert texts(channel.view.leader_notices(channel.state, ALICE, 5)) == [
        "this node is the leader (term 5)"
    ]


def test_a_leader_whose_nick_is_not_known_yet_is_named_once_it_is() -> None:
    """A node that just started hears who leads before it has the leader's nick."""
    channel = Channel()
    assert channel.view.leader_notices(channel.state, CAROL, 2, now=WALL) == []
    (notice,) = channel.notices(channel.nick(CAROL), now=WALL + 1)
    assert (notice.text, notice.ts, notice.member) == ("carol is the leader (term 2)", WALL, CAROL)


# --- /forget in the status, and its notice ----------------------------------------------


def test_forget_is_suggested_only_when_this_node_would_be_the_last_voter() -> None:
    channel = Channel()
    for node_id in (BOB, CAROL, DAVE):
        channel.nick(node_id)
    two_left = liveness(
        {BOB: 0.2, CAROL: 40.0, DAVE: 50.0}, leaderless_for=3.0, links_down={CAROL, DAVE}
    )
    report = channel.report(status({ALICE, BOB, CAROL, DAVE}), two_left)
    assert report is not None and report.forget == ()
    assert "/forget" not in report.problem


def test_the_status_event_carries_the_forget_command() -> None:
    channel = Channel()
    channel.nick(BOB)
    event = channel.view.status_event(
        status({ALICE, BOB}),
        applied_index=12,
        election_timeout_ms=500,
        messages_dropped=0,
        stopped=False,
        signaling_state="connected",
        chat_state=channel.state,
        liveness=liveness({BOB: 4.0}, links_down={BOB}),
    )
    assert event.forget_command == "/forget bob"
    assert event.quorum_problem is not None
    assert event.quorum_problem.endswith("type /forget bob")
    assert "waiting for bob \u2014 the channel needs 2 of 2 voters" in event.quorum_problem


def test_a_forgotten_member_is_named_as_such_when_its_removal_applies() -> None:
    channel = Channel()
    channel.nick(BOB)
    channel.configure({ALICE, BOB})
    channel.view.forgetting(frozenset({BOB}))
    notices = channel.notices(channel.configure({ALICE}))
    assert texts(notices) == ["you carried on without bob (forgotten)"]
    # Only once: a later removal of bob (back, then gone again) is an ordinary one.
    channel.configure({ALICE, BOB})
    later = channel.notices(channel.configure({ALICE}), liveness({BOB: 40.0}))
    assert texts(later) == ["bob was removed: not heard from for 40 s"]


def test_a_front_end_that_subscribes_late_still_hears_who_leads() -> None:
    """A channel opened from the chat subscribes after its node started: it gets the
    latest leader notice (only that one), besides the sticky events."""
    subscribers = Subscribers()
    early = subscribers.subscribe()
    first = NoticeEvent("leader", "this node is the leader (term 2)", 1.0, "a")
    chatter = NoticeEvent("info", "something else", 2.0)
    latest = NoticeEvent("leader", "bob is the leader (term 3)", 3.0, "b")
    for event in (first, chatter, latest):
        subscribers.publish(event)
    late = subscribers.subscribe()
    assert [late.get_nowait()] == [latest] and late.empty()
    assert [early.get_nowait() for _ in range(3)] == [first, chatter, latest]
