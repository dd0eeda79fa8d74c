"""The node runtime without the network: applying entries, acknowledgements, re-proposals.

Entries are applied the way the Ready loop applies committed ones, so these tests pin
down what a sender is told, whatever the order the leader appended its proposals in: the
chat session applies them once each, in the order sent, and the node resends what it
dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support.clusters import introduce

from raftchat import chat
from raftchat.net import LinkInfo, LinkState
from raftchat.node import Node, RuntimeTuning
from raftchat.node.api import (
    AckEvent,
    ChatInputError,
    ChatMessageEvent,
    ErrorEvent,
    Event,
    NoticeEvent,
)
from raftchat.node.cluster import NODE_CODEC, ClusterHello
from raftchat.node.runtime import is_urgent
from raftchat.raft import codec
from raftchat.raft.codec import encode_configuration
from raftchat.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryKind,
    ForwardProposal,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    ProposalResult,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
)
from raftchat.raft.ready import Role
from raftchat.settings import Settings, adaptive_election_timeout_ms
from raftchat.storage import Storage, StorageError, StorageFullError


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    storage = Storage.open_channel("unit", tmp_path)
    yield Node(storage, Settings(), nick="ada")
    storage.close()


def committed(node: Node, index: int, serial: int) -> Entry:
    """The committed entry of the node's own pending proposal ``serial``."""
    data = node.proposals.pending[serial].data
    return Entry(index, 1, EntryKind.NORMAL, data, node.node_id, serial)


def drain(queue: asyncio.Queue[Event]) -> list[Event]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


class RecordingMesh:
    """Stands in for the mesh: records what the node sends, decoded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def send(self, to: str, data: bytes, urgent: bool = False) -> bool:
        self.sent.append((to, codec.decode(data)))
        return True

    def forwarded(self, to: str) -> list[int]:
        return [m.serial for t, m in self.sent if t == to and isinstance(m, ForwardProposal)]


def heartbeat(leader: str, term: int) -> AppendEntries:
    return AppendEntries(leader, term, 0, 0, (), 0)


def serial_of(message_id: str) -> int:
    return int(message_id.split(":")[1])


@pytest.fixture
def recording(node: Node) -> RecordingMesh:
    mesh = RecordingMesh()
    node._mesh = mesh  # type: ignore[assignment]
    return mesh


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
    assert not node.proposals.pending


def test_proposal_overtaken_by_a_later_serial_is_proposed_again_and_acked_by_its_id(
    node: Node, recording: RecordingMesh
) -> None:
    queue = node.subscribe()
    first_id = node.send_chat("first")
    second_id = node.send_chat("second")
    first, second = (serial_of(i) for i in (first_id, second_id))
    first_data = node.proposals.pending[first].data
    # A restart whose clock stepped back: the previous run left a higher serial of ours in
    # the log. The session drops our serials below it, so they are proposed again at once.
    earlier = node._sign(chat.ChatMessage("ada", "earlier", 1_700_000_000_000), second + 1_000)
    encoded = chat.encode_command(earlier)
    node._apply(Entry(1, 1, EntryKind.NORMAL, encoded, node.node_id, second + 1_000))
    again = list(node.proposals.pending.values())
    assert [p.message_id for p in again] == [first_id, second_id]
    assert all(p.serial > second + 1_000 for p in again)
    node._apply(Entry(2, 1, EntryKind.NORMAL, first_data, node.node_id, first))  # late copy
    assert list(node.proposals.pending) == [p.serial for p in again], "not proposed yet again"
    node.core.step(heartbeat("leader", 1))  # a leader takes them (in order, re-encoded)
    node._drain()
    assert recording.forwarded("leader") == [p.serial for p in again]
    node._apply(committed(node, 3, again[0].serial))
    node._apply(committed(node, 4, again[1].serial))
    events = drain(queue)
    acks = [e for e in events if isinstance(e, AckEvent)]
    assert acks == [AckEvent(first_id, 3), AckEvent(second_id, 4)]
    texts = [e.text for e in events if isinstance(e, ChatMessageEvent)]
    assert texts == ["earlier", "first", "second"]


async def test_nick_change_is_applied_and_no_longer_pending(node: Node) -> None:
    await node.set_nick("grace")
    (serial,) = node.proposals.pending
    node._apply(committed(node, 1, serial))
    assert node.chat.nick_of(node.node_id) == "grace"
    assert not node.proposals.pending


def test_leave_request_marks_the_leave_committed(node: Node) -> None:
    node._propose_command(chat.Leave(node.incarnation), "leave")
    (serial,) = node.proposals.pending
    node._apply(committed(node, 1, serial))
    assert node._leave_committed.is_set()
    assert node.node_id in node.membership.leave_requests


def test_status_reports_the_effective_election_timeout(node: Node) -> None:
    status = node.status()
    assert status.node_id == node.node_id
    assert status.election_timeout_ms == Settings().election_timeout_min_ms
    assert status.state == "follower"


def test_proposal_made_while_an_older_one_is_held_waits_behind_it(
    node: Node, recording: RecordingMesh
) -> None:
    first = serial_of(node.send_chat("first"))  # no leader known: held
    node.core.step(heartbeat("leader", 1))  # the core knows a leader before the node acts
    second = serial_of(node.send_chat("second"))
    assert recording.forwarded("leader") == [], "nothing may overtake the held proposal"
    node._drain()
    assert recording.forwarded("leader") == [first, second]


def test_at_most_the_window_of_own_proposals_is_unacknowledged(tmp_path: Path) -> None:
    storage = Storage.open_channel("window", tmp_path)
    tuning = RuntimeTuning(max_unacknowledged_proposals=3)
    node = Node(storage, Settings(), nick="ada", tuning=tuning)
    recording = RecordingMesh()
    node._mesh = recording  # type: ignore[assignment]
    try:
        node.core.step(heartbeat("leader", 1))
        node._drain()
        serials = [serial_of(node.send_chat(f"m{i}")) for i in range(7)]
        node._drain()
        assert recording.forwarded("leader") == serials[:3]
        entries = tuple(committed(node, i + 1, s) for i, s in enumerate(serials[:2]))
        node.core.step(AppendEntries("leader", 1, 0, 0, entries, 2))
        node._drain()
        assert recording.forwarded("leader") == serials[:5]
        node.core.step(heartbeat("new", 2))  # a new leader: the window holds for it too
        node._drain()
        assert recording.forwarded("new") == serials[2:5]
    finally:
        storage.close()


def test_new_leader_gets_every_unacknowledged_proposal_once_in_serial_order(
    node: Node, recording: RecordingMesh
) -> None:
    node.core.step(heartbeat("old", 1))
    node._drain()
    serials = [serial_of(node.send_chat(f"m{i}")) for i in range(5)]
    node._drain()
    assert recording.forwarded("old") == serials
    node.core.step(heartbeat("new", 2))  # fails the forwarded ones and names a new leader
    node._drain()
    assert recording.forwarded("new") == serials


def test_failed_proposals_are_retried_in_serial_order_and_later_ones_wait_without_leader(
    node: Node, recording: RecordingMesh
) -> None:
    node.core.step(heartbeat("leader", 1))
    node._drain()
    serials = [serial_of(node.send_chat(f"m{i}")) for i in range(4)]
    node._drain()
    # The leader refuses the third and the first (answers may come in any order).
    for serial in (serials[2], serials[0]):
        node.core.step(ProposalResult("leader", 1, node.node_id, serial, error="busy"))
    node._drain()
    assert recording.forwarded("leader") == [*serials, serials[0], serials[2]]
    # The leader is lost: the forwarded ones fail and are held, and so is every newer one.
    node.core.step(RequestVote("candidate", 2, 0, 0, leadership_transfer=True))
    node._drain()
    later = serial_of(node.send_chat("later"))
    assert node.proposals.held and node.proposals.held[-1] == later
    node.core.step(heartbeat("other", 2))
    node._drain()
    assert recording.forwarded("other") == [*serials, later]


def test_snapshot_install_publishes_only_messages_not_seen_yet(node: Node) -> None:
    def message(index: int) -> Entry:
        data = chat.encode_command(chat.ChatMessage("bob", f"m{index}", 1_700_000_000_000))
        return Entry(index, 1, EntryKind.NORMAL, data, "bob-client", index)

    leader_state = chat.ChatState()
    for index in range(1, 6):
        leader_state.apply(message(index))
    snapshot = Snapshot(SnapshotMeta(5, 1, Configuration()), leader_state.snapshot())
    queue = node.subscribe()
    for index in range(1, 4):
        node._apply(message(index))
    node._install_snapshot(snapshot)  # the node fell behind after index 3
    indices = [e.index for e in drain(queue) if isinstance(e, ChatMessageEvent)]
    assert indices == [1, 2, 3, 4, 5]
    assert [m.index for m in node.history()] == [1, 2, 3, 4, 5]


def test_a_snapshot_of_a_split_history_says_which_messages_are_gone(node: Node) -> None:
    """Two members that forgot each other: a snapshot from the other side lacks messages
    this node had committed. Never so in one history; said when it happens."""

    def message(index: int, author: str) -> Entry:
        data = chat.encode_command(chat.ChatMessage(author, f"{author}{index}", 1_800_000_000_000))
        return Entry(index, 1, EntryKind.NORMAL, data, f"{author}-client", index)

    theirs = chat.ChatState()
    for index in range(1, 6):
        theirs.apply(message(index, "a" if index < 3 else "x"))
    queue = node.subscribe()
    for index in range(1, 5):
        node._apply(message(index, "a" if index < 3 else "b"))
    node._install_snapshot(Snapshot(SnapshotMeta(5, 1, Configuration()), theirs.snapshot()))
    (error,) = [e for e in drain(queue) if isinstance(e, ErrorEvent)]
    assert "2 messages committed here are not in it" in error.message


def test_a_leader_whose_log_contradicts_committed_entries_is_reported(node: Node) -> None:
    queue = node.subscribe()
    introduce(node, "other")
    config = encode_configuration(Configuration(frozenset({node.node_id, "other"})))
    first = (Entry(1, 1, EntryKind.CONFIG, config), Entry(2, 1, EntryKind.NORMAL, b"ours"))
    node._on_frame("other", codec.encode(AppendEntries("other", 1, 0, 0, first, 2)))
    node._drain()
    # Later "other" leads a term whose log has a different entry 2: a split history.
    theirs = AppendEntries("other", 9, 1, 1, (Entry(2, 8, EntryKind.NORMAL, b"theirs"),), 2)
    node._on_frame("other", codec.encode(theirs))
    node._drain()
    (error,) = [e for e in drain(queue) if isinstance(e, ErrorEvent)]
    assert error.message.startswith("Your history and user-othe's split")
    assert [e.data for e in node._storage.load().entries][-1] == b"ours"


def test_own_messages_inside_an_installed_snapshot_are_acknowledged_not_proposed_again(
    node: Node,
) -> None:
    queue = node.subscribe()
    ids = [node.send_chat(f"m{i}") for i in range(40)]
    serials = [serial_of(message_id) for message_id in ids]
    leader_state = chat.ChatState(channel=node.channel)
    for index, serial in enumerate(serials, 1):  # the leader committed them all
        leader_state.apply(committed(node, index, serial))
    snapshot = Snapshot(SnapshotMeta(40, 1, Configuration()), leader_state.snapshot())
    node._install_snapshot(snapshot)  # this node was cut off meanwhile
    acks = [e for e in drain(queue) if isinstance(e, AckEvent)]
    assert acks == [AckEvent(message_id, index) for index, message_id in enumerate(ids, 1)]
    assert not node.proposals.pending
    # A late retry of the oldest (beyond the session's remembered serials) is a duplicate,
    # not an overtaken proposal to propose again.
    node._apply(Entry(41, 2, EntryKind.NORMAL, b"", node.node_id, serials[0]))
    assert not node.proposals.pending


def forwarded_prev(mesh: RecordingMesh, to: str) -> list[tuple[int, int]]:
    """(serial, prev_serial) of each proposal forwarded to ``to``."""
    return [
        (m.serial, chat.decode_command(m.data)[1])
        for t, m in mesh.sent
        if t == to and isinstance(m, ForwardProposal)
    ]


def test_each_proposal_names_its_unacknowledged_predecessor(
    node: Node, recording: RecordingMesh
) -> None:
    node.core.step(heartbeat("leader", 1))
    node._drain()
    serials = [serial_of(node.send_chat(f"m{i}")) for i in range(3)]
    node._drain()
    assert forwarded_prev(recording, "leader") == [
        (serials[0], 0),  # the first of this run may follow anything
        (serials[1], serials[0]),
        (serials[2], serials[1]),
    ]
    for index, serial in enumerate(serials, 1):
        node._apply(committed(node, index, serial))
    later = serial_of(node.send_chat("later"))
    node._drain()
    # Its predecessor is applied: nothing can overtake it, so it names none.
    assert forwarded_prev(recording, "leader")[-1] == (later, 0)


def commit(node: Node, entries: list[Entry], term: int = 1) -> None:
    """The leader replicates ``entries`` and commits them: the node applies them."""
    previous = entries[0].index - 1
    previous_term = term if previous else 0
    node.core.step(
        AppendEntries("leader", term, previous, previous_term, tuple(entries), entries[-1].index)
    )
    node._drain()


def test_out_of_order_drop_resends_every_proposal_after_the_last_applied_once_in_order(
    node: Node, recording: RecordingMesh
) -> None:
    queue = node.subscribe()
    node.core.step(heartbeat("leader", 1))
    node._drain()
    ids = [node.send_chat(f"m{i}") for i in range(4)]
    serials = [serial_of(message_id) for message_id in ids]
    node._drain()
    # The leader lost the second: it committed the first, third and fourth.
    first = committed(node, 1, serials[0])
    third, fourth = committed(node, 2, serials[2]), committed(node, 3, serials[3])
    commit(node, [first])
    commit(node, [third])  # dropped: resend everything after the first, once, in order
    commit(node, [fourth])  # dropped too, but a copy sent before that resend
    assert recording.forwarded("leader") == [*serials, *serials[1:]]
    assert forwarded_prev(recording, "leader")[4:] == [
        (serials[1], 0),  # the first is applied: nothing to name
        (serials[2], serials[1]),
        (serials[3], serials[2]),
    ]
    commit(node, [committed(node, i, s) for i, s in enumerate(serials[1:], 4)])
    events = drain(queue)
    assert [e.text for e in events if isinstance(e, ChatMessageEvent)] == ["m0", "m1", "m2", "m3"]
    acks = [e for e in events if isinstance(e, AckEvent)]
    indices = (1, 4, 5, 6)
    assert acks == [AckEvent(i, index) for i, index in zip(ids, indices, strict=True)]
    assert not node.proposals.pending


async def test_a_nick_change_dropped_out_of_order_is_resent_not_forgotten(
    node: Node, recording: RecordingMesh
) -> None:
    node.core.step(heartbeat("leader", 1))
    node._drain()
    message = serial_of(node.send_chat("hello"))
    await node.set_nick("grace")
    (nick,) = [s for s in node.proposals.pending if s != message]
    node._drain()
    commit(node, [committed(node, 1, nick)])  # the message before it was lost
    assert nick in node.proposals.pending and node.chat.nick_of(node.node_id) is None
    assert recording.forwarded("leader") == [message, nick, message, nick]
    commit(node, [committed(node, 2, message), committed(node, 3, nick)])
    assert not node.proposals.pending and node.chat.nick_of(node.node_id) == "grace"


def test_votes_handover_and_results_are_urgent_and_replication_is_not() -> None:
    entry = Entry(5, 2, EntryKind.NORMAL, b"hi", "c", 1)
    urgent = [
        RequestVote("b", 3, 5, 2),
        RequestVoteResponse("a", 3, True),
        TimeoutNow("a", 2),
        ProposalResult("a", 2, "c", 1, index=5, entry_term=2),
    ]
    bulk = [
        AppendEntries("a", 2, 4, 2, (), 4),
        AppendEntries("a", 2, 4, 2, (entry,), 4),
        AppendEntriesResponse("b", 2, True, 5),
        ForwardProposal("b", 2, "c", 1, b"hi"),
        InstallSnapshot("a", 2, 9, 2, Configuration(frozenset({"a"})), 0, b"x", True),
        InstallSnapshotResponse("b", 2, 9, 0, True),
    ]
    assert [is_urgent(message) for message in urgent] == [True] * len(urgent)
    assert [is_urgent(message) for message in bulk] == [False] * len(bulk)


# --- writing to disk ------------------------------------------------------------------


def test_a_full_disk_holds_the_write_and_retries_it(
    node: Node, recording: RecordingMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = node.subscribe()
    save = node._storage.save
    refusals = [StorageFullError("no space left on the device")]

    def save_unless_full(*args: object) -> None:
        if refusals:
            raise refusals.pop()
        save(*args)

    monkeypatch.setattr(node._storage, "save", save_unless_full)
    entry = Entry(1, 1, EntryKind.NORMAL, b"x")
    node.core.step(AppendEntries("leader", 1, 0, 0, (entry,), 0))
    node._drain()
    assert not [m for _, m in recording.sent if isinstance(m, AppendEntriesResponse)]
    (error,) = [e for e in drain(queue) if isinstance(e, ErrorEvent)]
    assert "retrying" in error.message
    node._drain()  # the housekeeping loop's retry
    (answer,) = [m for _, m in recording.sent if isinstance(m, AppendEntriesResponse)]
    assert answer.success and answer.match_index == 1
    assert node._storage.last_index == 1


def test_a_failing_disk_stops_the_node_before_it_answers(
    node: Node, recording: RecordingMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = node.subscribe()

    def broken(*args: object) -> None:
        raise StorageError("disk I/O error")

    monkeypatch.setattr(node._storage, "save", broken)
    node.core.step(AppendEntries("leader", 1, 0, 0, (Entry(1, 1, EntryKind.NORMAL, b"x"),), 0))
    node._drain()
    assert node.stopped and not recording.sent
    assert any(isinstance(e, ErrorEvent) and "stopping" in e.message for e in drain(queue))


async def test_a_leader_puts_its_appends_on_the_wire_before_writing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Storage.open_channel("early", tmp_path)
    configuration = Configuration(frozenset({storage.node_id, "b"}))
    storage.save(
        HardState(term=1, commit=1),
        [Entry(1, 1, EntryKind.CONFIG, encode_configuration(configuration))],
    )
    node = Node(storage, Settings(), nick="ada")
    loop = asyncio.get_running_loop()
    node._loop = loop
    order: list[str] = []

    class WireMesh(RecordingMesh):
        """Puts a message on the wire two loop iterations after ``send``, as a link's
        flush and then aiortc's SCTP task do."""

        def send(self, to: str, data: bytes, urgent: bool = False) -> bool:
            name = type(codec.decode(data)).__name__
            loop.call_soon(loop.call_soon, order.append, f"wire {name}")
            return super().send(to, data, urgent)

    node._mesh = WireMesh()  # type: ignore[assignment]
    save = storage.save

    def noting_save(hard_state, entries=(), *args: object) -> None:
        order.append(f"write {len(entries)} entries")
        save(hard_state, entries, *args)

    monkeypatch.setattr(storage, "save", noting_save)
    try:
        node.core.step(AppendEntries("b", 1, 1, 1, (), 1))  # b leads term 1...
        node._drain()
        node.core.step(TimeoutNow("b", 1))  # ...and hands over
        node._drain()
        node.core.step(RequestVoteResponse("b", 2, True))
        node._drain()
        async with asyncio.timeout(5):
            while "write 1 entries" not in order:  # the deferred write of the no-op
                await asyncio.sleep(0)
        assert node.core.role is Role.LEADER
        noop_sent = order.index("wire AppendEntries")
        assert order.index("write 1 entries") > noop_sent  # the leader's no-op
    finally:
        storage.close()


# --- lazy ticking -----------------------------------------------------------------------


async def test_ticks_that_fell_due_are_given_before_a_message(node: Node) -> None:
    """The core is ticked lazily; a heartbeat must not land before the ticks that came
    before it, or they would count against the election timer it resets."""
    loop = asyncio.get_running_loop()
    node._loop = loop
    node.ticker.anchor(loop)
    node.ticker.origin = loop.time() - 0.3  # 30 ticks of 10 ms, none given yet
    node.ticker.deadline = 40
    introduce(node, "leader")
    node._on_frame("leader", codec.encode(heartbeat("leader", 1)))
    assert node.ticker.given >= 30
    assert node.core._election_elapsed == 0  # the heartbeat came after the ticks


async def test_a_paused_process_does_not_replay_its_pause(node: Node) -> None:
    loop = asyncio.get_running_loop()
    node._loop = loop
    node.ticker.anchor(loop)
    node.ticker.origin = loop.time() - 5.0  # 500 ticks ago
    node.ticker.deadline = 20  # the tick loop meant to wake at tick 20
    node.ticker.catch_up()
    assert node.ticker.given == 20
    node.ticker.catch_up()
    assert node.ticker.given == 20  # re-anchored: the pause is not owed
    assert node.core.role is Role.FOLLOWER


def link(peer: str, state: str, connects: int) -> LinkInfo:
    return LinkInfo(
        peer, LinkState(state), None, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, connects,
        None, None,
    )  # fmt: skip


def test_a_new_link_to_a_peer_says_hello_again(node: Node) -> None:
    """A link dropped (the peer was gone and no member: nothing kept it) and made anew
    counts its connections from zero: the node must say hello on it all the same, or the
    peer drops its Raft traffic (a member forgotten with /forget, coming back)."""
    hellos: list[str] = []

    class HelloMesh:
        def send(self, to: str, data: bytes, urgent: bool = False) -> bool:
            if isinstance(NODE_CODEC.decode(data), ClusterHello):
                hellos.append(to)
            return True

    node._mesh = HelloMesh()  # type: ignore[assignment]
    node._on_link_change("p1", link("p1", "open", 1))
    node._on_link_change("p1", link("p1", "open", 1))  # the same connection: said already
    node._on_link_change("p1", link("p1", "connecting", 0))  # a new Link object
    node._on_link_change("p1", link("p1", "open", 1))
    assert hellos == ["p1", "p1"]


def test_forget_warns_then_carries_on_alone_with_its_notice(tmp_path: Path) -> None:
    storage = Storage.open_channel("pair", tmp_path)
    configuration = Configuration(frozenset({storage.node_id, "b0b"}))
    storage.save(
        HardState(term=3, commit=1),
        [Entry(1, 1, EntryKind.CONFIG, encode_configuration(configuration))],
    )
    node = Node(storage, Settings(), nick="ada")
    try:
        node._drain()  # applies the configuration
        queue = node.subscribe()
        with pytest.raises(ChatInputError, match="You cannot forget yourself"):
            node.forget(["ada"])
        warning = node.forget(["user-b0b"])
        assert warning is not None and warning.endswith("type /forget user-b0b --yes")
        assert node.core.configuration == configuration, "nothing done before --yes"
        assert node.forget(["user-b0b"], confirm=True) is None
        node._drain()
        assert node.core.role is Role.LEADER
        assert node.core.configuration.voters == {node.node_id}
        assert node.core.term > 3
        notices = [e.text for e in drain(queue) if isinstance(e, NoticeEvent)]
        assert "you carried on without user-b0b (forgotten)" in notices
        status = node.status()
        assert status.quorum_problem is None and status.voters == (node.node_id,)
    finally:
        storage.close()


class PingedMesh:
    """A mesh whose one link, to b0b, has measured ``rtt_ms`` since it opened."""

    def __init__(self, opened: LinkInfo, rtt_ms: float) -> None:
        self._link = replace(opened, rtt_ms=rtt_ms)

    def send(self, to: str, data: bytes, urgent: bool = False) -> bool:
        return True

    def links(self) -> dict[str, LinkInfo]:
        return {"b0b": self._link}


def node_with_a_pinged_link(storage: Storage, settings: Settings, rtt_ms: float) -> Node:
    """ada and b0b voters; the link to b0b reported open (no round-trip time yet), then
    pinged at ``rtt_ms``."""
    configuration = Configuration(frozenset({storage.node_id, "b0b"}))
    storage.save(
        HardState(term=3, commit=1),
        [Entry(1, 1, EntryKind.CONFIG, encode_configuration(configuration))],
    )
    node = Node(storage, settings, nick="ada")
    node._drain()
    opened = link("b0b", "open", 1)
    assert opened.rtt_ms is None
    node._mesh = PingedMesh(opened, rtt_ms)  # type: ignore[assignment]
    node._on_link_change("b0b", opened)
    return node


def test_members_show_the_round_trip_time_measured_after_the_link_opened(
    tmp_path: Path,
) -> None:
    """The mesh reports a link when it opens, before its first ping has come back; the
    member list must show the round-trip time measured since, not the one at opening."""
    storage = Storage.open_channel("pair", tmp_path)
    try:
        node = node_with_a_pinged_link(storage, Settings(), 0.42)
        node._note_links(time.monotonic())  # as every status interval does
        peer = next(member for member in node.members() if member.node_id == "b0b")
        assert peer.link_state == "connected" and peer.rtt_ms == 0.42
    finally:
        storage.close()


def test_the_election_timeout_adapts_to_round_trip_times_measured_after_links_opened(
    tmp_path: Path,
) -> None:
    """A slow link (here 400 ms round trip) must lengthen the election timeout, from the
    times the mesh measured after the link opened (the open report has none)."""
    storage = Storage.open_channel("pair", tmp_path)
    settings = Settings()
    try:
        node = node_with_a_pinged_link(storage, settings, 400.0)
        before = node.status().election_timeout_ms
        node._note_links(time.monotonic())  # as every status interval does
        node._adapt_election_timeout()  # as every adapt interval does
        expected = adaptive_election_timeout_ms(settings, [200.0])
        assert before == settings.election_timeout_min_ms < expected
        assert node.status().election_timeout_ms == expected
    finally:
        storage.close()
