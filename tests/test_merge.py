"""Merging the history of a younger cluster of a channel into the older one: the chat
state machine applies each merged message once, the queue survives restarts, and a node
that meets an older cluster leaves its own for it and proposes what it lacks. No
network: the survivor's leader ``old`` is played by the test."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.clusters import introduce

from raftchat import chat
from raftchat.chat import ChatState, MergeCompleted, MergedDuplicate, MessageApplied
from raftchat.net import LinkState
from raftchat.node import Node, RuntimeTuning
from raftchat.node.api import AckEvent, NoticeEvent, ResetEvent
from raftchat.node.cluster import survivor
from raftchat.node.merge import MergeProgress, merge_items
from raftchat.raft import (
    AppendEntries,
    ClusterIdentity,
    Configuration,
    Entry,
    EntryKind,
    ForwardProposal,
    InstallSnapshot,
    codec,
    encode_configuration,
)
from raftchat.settings import Settings
from raftchat.storage import MergeItem, PendingMerge, Storage

OLD = ClusterIdentity(founded_ms=1_700_000_000_000, cluster_id="0a" * 16)
YOUNG = ClusterIdentity(founded_ms=1_800_000_000_000, cluster_id="0b" * 16)
T0 = 1_750_000_000_000
"""A message time."""


def merged_entry(
    index: int, proposer: str, serial: int, author: str, text: str, author_serial: int = 0
) -> Entry:
    """A MergedMessage entry; the author's serial is ``7 + index`` unless given."""
    author_serial = author_serial or 7 + index
    command = chat.MergedMessage(YOUNG.cluster_id, author, author_serial, author, text, T0)
    return Entry(index, 1, EntryKind.NORMAL, chat.encode_command(command), proposer, serial)


# --- the chat state machine ---------------------------------------------------------------


def test_a_merged_message_keeps_its_id_and_is_applied_once() -> None:
    state = ChatState()
    first = state.apply(merged_entry(1, "p1", 1, "cyd", "hello"))
    again = state.apply(merged_entry(2, "p2", 1, "cyd", "hello", 8))  # another member's copy
    assert first == [MessageApplied(1, "cyd:8", "cyd", 8, "cyd", "hello", T0, False, merged=True)]
    assert again == [MergedDuplicate(2, "cyd:8", "p2")]
    assert [m.id for m in state.history()] == ["cyd:8"]
    assert state.has_message("cyd:8")
    assert state.nick_of("cyd") is None  # the author's session is not touched
    assert state.last_serial("p1") == 1  # the proposer's is


def test_merge_done_reports_how_many_were_new_once() -> None:
    state = ChatState()
    state.apply(merged_entry(1, "p1", 1, "cyd", "a"))
    state.apply(merged_entry(2, "p1", 2, "cyd", "b"))
    done = chat.encode_command(chat.MergeDone(YOUNG.cluster_id))
    assert state.apply(Entry(3, 1, EntryKind.NORMAL, done, "p1", 3)) == [
        MergeCompleted(3, YOUNG.cluster_id, "p1", 2)
    ]
    assert state.apply(Entry(4, 1, EntryKind.NORMAL, done, "p2", 1)) == [
        MergeCompleted(4, YOUNG.cluster_id, "p2", 0)
    ]


def test_merged_messages_and_counts_survive_a_snapshot() -> None:
    state = ChatState(history_limit=2)
    for index in (1, 2, 3):
        state.apply(merged_entry(index, "p1", index, "cyd", f"m{index}"))
    restored = ChatState.restore(state.snapshot(), history_limit=2)
    assert restored.snapshot() == state.snapshot()
    assert [m.merged for m in restored.history()] == [True, True]
    assert not restored.has_message("cyd:8")  # fell out of the window
    assert restored.has_message("cyd:10")
    done = chat.encode_command(chat.MergeDone(YOUNG.cluster_id))
    events = restored.apply(Entry(4, 1, EntryKind.NORMAL, done, "p1", 4))
    assert events == [MergeCompleted(4, YOUNG.cluster_id, "p1", 3)]


def test_a_version_1_snapshot_still_reads() -> None:
    state = ChatState()
    data = chat.encode_command(chat.ChatMessage("ada", "hi", T0))
    state.apply(Entry(1, 1, EntryKind.NORMAL, data, "ada", 1))
    items = codec_unpack(state.snapshot())
    items[0] = 1
    items[7] = [record[:7] for record in items[7]]
    del items[8]
    restored = ChatState.restore(codec.packer().pack(items))
    assert [(m.id, m.merged) for m in restored.history()] == [("ada:1", False)]


def codec_unpack(data: bytes) -> list:
    import msgpack

    return msgpack.unpackb(data, raw=False)


# --- the queue ------------------------------------------------------------------------------


def test_the_queue_is_the_history_then_what_an_earlier_merge_left() -> None:
    history = [
        MessageApplied(3, "ada:1", "ada", 1, "ada", "one", T0 + 10, False),
        MessageApplied(4, "cyd:9", "cyd", 9, "cyd", "two", T0 + 20, True, merged=True),
    ]
    left = [MergeItem("cyd:9", b"already in the history"), MergeItem("bob:2", b"left over")]
    items = merge_items(history, YOUNG, left)
    assert [item.message_id for item in items] == ["ada:1", "cyd:9", "bob:2"]
    command, _ = chat.decode_command(items[1].data)
    assert command == chat.MergedMessage(YOUNG.cluster_id, "cyd", 9, "cyd", "two", T0 + 20, True)
    assert items[2].data == b"left over"


def test_a_history_from_before_the_rules_is_merged_as_the_rules_of_today_accept_it() -> None:
    """A time out of range, or a nick with an invisible character, applied before the rules
    were narrowed: proposed as it is, it would be refused and the merge would never end."""
    history = [
        MessageApplied(1, "ada:1", "ada", 1, "ada\u3164", "late", 2**63 - 1, False),
        MessageApplied(2, "cyd:2", "cyd", 2, "\u3164", "early", 0, False),
    ]
    first, second = (chat.decode_command(item.data)[0] for item in merge_items(history, YOUNG))
    assert first == chat.MergedMessage(YOUNG.cluster_id, "ada", 1, "ada", "late", 7_258_118_400_000)
    assert second == chat.MergedMessage(
        YOUNG.cluster_id, "cyd", 2, "user-cyd", "early", 946_684_800_000
    )


def test_a_queue_stored_before_the_rules_is_mended() -> None:
    import msgpack

    stored = msgpack.packb([2, 0, 3, YOUNG.cluster_id, "ada", 1, "ada", "late", 2**63 - 1, False])
    progress = MergeProgress(
        PendingMerge(YOUNG, [MergeItem("ada:1", stored), MergeItem("x:1", b"junk")])
    )
    command, _ = chat.decode_command(progress.queue["ada:1"].data)
    assert command == chat.MergedMessage(
        YOUNG.cluster_id, "ada", 1, "ada", "late", 7_258_118_400_000
    )
    assert progress.queue["x:1"].data == b"junk"  # nothing to mend: left as it was


def test_progress_drops_what_the_channel_has_and_what_arrives() -> None:
    items = merge_items(
        [MessageApplied(i, f"ada:{i}", "ada", i, "ada", "x", T0 + i, False) for i in (1, 2, 3)],
        YOUNG,
    )
    progress = MergeProgress(PendingMerge(YOUNG, items))
    assert progress.sources == {YOUNG.cluster_id}
    assert progress.take_present(lambda message_id: message_id == "ada:2") == ["ada:2"]
    assert progress.committed("ada:1") and not progress.committed("ada:1")
    assert list(progress.queue) == ["ada:3"]


def test_every_node_picks_the_same_survivor_whatever_it_heard_first() -> None:
    seed = int(os.environ.get("RAFTCHAT_TEST_SEED", random.randrange(2**32)))
    print(f"survivor rule: seed {seed} (RAFTCHAT_TEST_SEED to replay)")
    rng = random.Random(seed)
    for _ in range(200):
        clusters = [
            ClusterIdentity(rng.choice([0, 5, 5, 9]), f"{rng.getrandbits(128):032x}")
            for _ in range(rng.randint(2, 6))
        ]
        expected = survivor(clusters)
        # Any node meets the others in any order, pairwise: the result never depends on it.
        rng.shuffle(clusters)
        folded = clusters[0]
        for cluster in clusters[1:]:
            folded = survivor([folded, cluster])
        assert folded == expected


# --- a node that meets an older cluster -------------------------------------------------------


class RecordingMesh:
    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def send(self, to: str, data: bytes, urgent: bool = False) -> bool:
        from raftchat.node.cluster import NODE_CODEC

        self.sent.append((to, NODE_CODEC.decode(data)))
        return True

    def set_peers(self, peers: frozenset[str]) -> None:
        pass

    def links(self) -> dict:
        return {}

    def forwarded(self) -> list[ForwardProposal]:
        return [m for _, m in self.sent if isinstance(m, ForwardProposal)]


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage.open_channel("split", tmp_path)
    yield store
    store.close()


def make_node(storage: Storage, tuning: RuntimeTuning | None = None) -> Node:
    node = Node(storage, Settings(), nick="cyd", tuning=tuning)
    node._mesh = RecordingMesh()  # type: ignore[assignment]
    for peer in ("old", "young"):
        node._links[peer] = SimpleNamespace(state=LinkState.OPEN, connects=1)  # type: ignore[assignment]
    return node


def drain(node: Node) -> None:
    for _ in range(10):
        node._drain()


def founded_with_history(node: Node, texts: list[str]) -> list[str]:
    node._join_cluster(YOUNG)
    node.core.bootstrap(YOUNG)
    drain(node)
    ids = [node.send_chat(text) for text in texts]
    drain(node)
    assert [m.text for m in node.chat.history()] == texts
    return ids


class Leader:
    """The survivor's leader ``old`` (or another cluster's leader): appends and commits
    what the test gives it."""

    def __init__(self, node: Node, name: str = "old", cluster: ClusterIdentity = OLD) -> None:
        self.node = node
        self.name = name
        self.cluster = cluster
        self.index = 0

    def append(self, *entries: tuple[EntryKind, bytes, str, int]) -> None:
        made = tuple(
            Entry(self.index + 1 + k, 1, kind, data, client, serial)
            for k, (kind, data, client, serial) in enumerate(entries)
        )
        prev_term = 1 if self.index else 0
        last = self.index + len(made)
        message = AppendEntries(self.name, 1, self.index, prev_term, made, last)
        self.node._on_frame(self.name, codec.encode(message))
        self.index = last
        drain(self.node)

    def add(self, learner: str) -> None:
        configuration = Configuration(frozenset({self.name}), frozenset({learner}), self.cluster)
        self.append((EntryKind.CONFIG, encode_configuration(configuration), "", 0))

    def commit_forwarded(self) -> int:
        mesh = self.node.mesh
        forwarded = mesh.forwarded()  # type: ignore[union-attr]
        mesh.sent.clear()  # type: ignore[union-attr]
        self.append(*((EntryKind.NORMAL, m.data, m.client_id, m.serial) for m in forwarded))
        return len(forwarded)


def test_meeting_an_older_cluster_merges_the_history_into_it(storage: Storage) -> None:
    node = make_node(storage)
    events = node.subscribe()
    ids = founded_with_history(node, ["c0", "c1", "c2"])
    introduce(node, "old", cluster=OLD)
    assert node.cluster_gate.cluster is None, "left its cluster for the older one"
    assert node.core.log.last_index == 0 and node.chat.history() == []
    pending = storage.pending_merge()
    assert pending is not None and [item.message_id for item in pending.items] == ids
    assert storage.load().entries == []

    leader = Leader(node)
    ada = chat.encode_command(chat.ChatMessage("ada", "a0", T0))
    leader.add(node.node_id)
    leader.append((EntryKind.NORMAL, ada, "ada", 1))
    assert node.cluster_gate.cluster == OLD and storage.cluster == OLD
    node._advance_merge(0.0)
    drain(node)
    assert leader.commit_forwarded() == 3
    assert storage.pending_merge().items == []  # type: ignore[union-attr]
    node._advance_merge(0.0)
    drain(node)
    assert leader.commit_forwarded() == 1  # the MergeDone
    assert storage.pending_merge() is None and node._merge is None
    history = node.chat.history()
    assert [(m.id, m.text, m.merged) for m in history] == [("ada:1", "a0", False)] + [
        (message_id, f"c{k}", True) for k, message_id in enumerate(ids)
    ]
    seen = []
    while not events.empty():
        seen.append(events.get_nowait())
    assert ResetEvent("merge") in seen
    notices = [e.text for e in seen if isinstance(e, NoticeEvent)]
    assert "3 messages from an earlier split of #split were merged" in notices


def test_a_node_stopped_mid_merge_finishes_after_a_restart(storage: Storage) -> None:
    node = make_node(storage)
    ids = founded_with_history(node, ["c0", "c1", "c2"])
    introduce(node, "old", cluster=OLD)
    leader = Leader(node)
    leader.add(node.node_id)
    node._advance_merge(0.0)
    drain(node)
    forwarded = node.mesh.forwarded()  # type: ignore[union-attr]
    node.mesh.sent.clear()  # type: ignore[union-attr]
    # Only the first one commits before the node stops.
    first = forwarded[0]
    leader.append((EntryKind.NORMAL, first.data, first.client_id, first.serial))
    assert [i.message_id for i in storage.pending_merge().items] == ids[1:]  # type: ignore[union-attr]
    directory = storage.directory
    storage.close()

    restarted_storage = Storage.open(directory, "split")
    try:
        restarted = make_node(restarted_storage)
        assert restarted.cluster_gate.cluster == OLD
        assert restarted._merge is not None and list(restarted._merge.queue) == ids[1:]
        introduce(restarted, "old", cluster=OLD)
        leader.node = restarted
        leader.append()  # a heartbeat: the leader is known again
        restarted._advance_merge(0.0)
        drain(restarted)
        assert leader.commit_forwarded() == 2
        restarted._advance_merge(0.0)
        drain(restarted)
        assert leader.commit_forwarded() == 1
        assert restarted_storage.pending_merge() is None
        assert [m.id for m in restarted.chat.history()] == ids
    finally:
        restarted_storage.close()


def test_a_snapshot_of_the_queued_messages_ends_the_merge(storage: Storage) -> None:
    """Another member of the old cluster merged the queued messages, and the node learns
    so from a snapshot after its own proposals were lost: they leave its queue, and its
    merge ends (it had waited for them to be applied, which a snapshot never shows)."""
    node = make_node(storage)
    founded_with_history(node, ["c0", "c1"])
    introduce(node, "old", cluster=OLD)
    leader = Leader(node)
    leader.add(node.node_id)
    node._advance_merge(0.0)
    drain(node)
    assert len(node.mesh.forwarded()) == 2  # type: ignore[union-attr]
    node.mesh.sent.clear()  # type: ignore[union-attr]  # lost
    pending = storage.pending_merge()
    assert pending is not None
    configuration = Configuration(frozenset({"old"}), frozenset({node.node_id}), OLD)
    state = ChatState(channel=node.channel)
    state.apply(Entry(1, 1, EntryKind.CONFIG, encode_configuration(configuration)))
    for serial, item in enumerate(pending.items, 1):
        state.apply(Entry(1 + serial, 1, EntryKind.NORMAL, item.data, "other", serial))
    snapshot = InstallSnapshot("old", 1, 3, 1, configuration, 0, state.snapshot(), True)
    node._on_frame("old", codec.encode(snapshot))
    drain(node)
    assert [m.id for m in node.chat.history()] == [item.message_id for item in pending.items]
    leader.index = 3
    node._advance_merge(0.0)
    drain(node)
    assert storage.pending_merge().items == []  # type: ignore[union-attr]
    # The MergeDone, then (it follows the lost proposals) those and the MergeDone again.
    assert leader.commit_forwarded() == 1
    assert leader.commit_forwarded() == 3
    assert storage.pending_merge() is None and node._merge is None


def test_a_retry_of_a_message_merged_meanwhile_is_dropped() -> None:
    """The sender's message committed in its old cluster and was merged by another member
    before the sender's own retry (same id) arrived."""
    state = ChatState()
    state.apply(merged_entry(1, "p1", 1, "cyd", "hi", author_serial=5))
    retry = chat.encode_command(chat.ChatMessage("cyd", "hi", T0))
    assert state.apply(Entry(2, 1, EntryKind.NORMAL, retry, "cyd", 5)) == [
        chat.DuplicateDropped(2, "cyd", 5, 1)
    ]
    assert [m.id for m in state.history()] == ["cyd:5"]


def chat_entry(author: str, serial: int, text: str) -> tuple[EntryKind, bytes, str, int]:
    data = chat.encode_command(chat.ChatMessage(author, text, T0))
    return (EntryKind.NORMAL, data, author, serial)


def member_of_young(node: Node) -> Leader:
    """``node`` is a learner of the younger cluster, whose leader ``young`` committed one
    message of ``ada``'s."""
    introduce(node, "young", cluster=YOUNG)
    young = Leader(node, "young", YOUNG)
    young.add(node.node_id)
    young.append(chat_entry("ada", 1, "a0"))
    assert node.cluster_gate.cluster == YOUNG
    return young


def test_a_node_leaves_once_its_own_messages_sent_to_its_cluster_are_applied(
    storage: Storage,
) -> None:
    """Its cluster may commit them after messages the node has not applied yet: merged
    from the end of its queue, they would land ahead of those."""
    node = make_node(storage)
    young = member_of_young(node)
    mine = node.send_chat("c0")
    drain(node)
    [forwarded] = node.mesh.forwarded()  # type: ignore[union-attr]
    node.mesh.sent.clear()  # type: ignore[union-attr]
    introduce(node, "old", cluster=OLD)
    assert node.cluster_gate.cluster == YOUNG, "waits: c0 may commit here"
    later = node.send_chat("c1")  # sent while it waits: for the survivor
    drain(node)
    assert node.mesh.forwarded() == []  # type: ignore[union-attr]
    young.append(
        chat_entry("bob", 1, "b0"),
        (EntryKind.NORMAL, forwarded.data, forwarded.client_id, forwarded.serial),
    )
    node._consider_merge()  # the housekeeping loop's next round
    assert node.cluster_gate.cluster is None, "left once c0 was applied"
    pending = storage.pending_merge()
    assert pending is not None
    assert [item.message_id for item in pending.items] == ["ada:1", "bob:1", mine, later]


def test_own_messages_pending_when_leaving_follow_the_history_they_were_sent_after(
    storage: Storage,
) -> None:
    """A message its cluster cannot commit now (its leader is silent) goes to the survivor
    at the end of the merge queue, never ahead of it: sent again there as soon as a
    leader is known, it landed before the history it followed. It is merged once and
    acknowledged then."""
    node = make_node(storage, RuntimeTuning(merge_settle_s=0.0))
    events = node.subscribe()
    member_of_young(node)
    late = node.send_chat("c0")
    drain(node)
    introduce(node, "old", cluster=OLD)
    assert node.cluster_gate.cluster is None, "left its cluster for the older one"
    pending = storage.pending_merge()
    assert pending is not None and [i.message_id for i in pending.items] == ["ada:1", late]
    node.mesh.sent.clear()  # type: ignore[union-attr]

    leader = Leader(node)
    leader.add(node.node_id)  # the leader is known: before the fix, c0 went to it now
    assert node.mesh.forwarded() == []  # type: ignore[union-attr]
    node._advance_merge(0.0)
    drain(node)
    forwarded = node.mesh.forwarded()  # type: ignore[union-attr]
    proposed = [chat.decode_command(m.data)[0] for m in forwarded]
    assert [(c.text, type(c)) for c in proposed] == [
        ("a0", chat.MergedMessage),
        ("c0", chat.MergedMessage),
    ]
    while not events.empty():
        events.get_nowait()
    assert leader.commit_forwarded() == 2
    assert [(m.id, m.text) for m in node.chat.history()] == [("ada:1", "a0"), (late, "c0")]
    acks = []
    while not events.empty():
        event = events.get_nowait()
        if isinstance(event, AckEvent):
            acks.append(event.id)
    assert acks == [late], "the message sent before leaving is acknowledged once merged"
    assert not node.proposals.pending and not node.proposals.handed_over


def test_a_node_that_left_its_cluster_to_merge_is_never_taken_back_by_it(
    storage: Storage,
) -> None:
    """Its old leader, whose configuration still counts it, adds it again once the link
    to the older cluster is down: back as an empty member it could vote twice in a term
    or lose entries counted as stored on it. It waits for the older cluster (after a
    restart too), and may join any cluster again once its merge is done."""
    node = make_node(storage)
    young = member_of_young(node)
    introduce(node, "old", cluster=OLD)
    assert node.cluster_gate.cluster is None and storage.pending_merge() is not None
    node._links["old"] = SimpleNamespace(state=LinkState.CLOSED, connects=1)  # type: ignore[assignment]
    young.index = 0
    young.add(node.node_id)
    assert node.cluster_gate.cluster is None, "taken back by the cluster it left"
    assert storage.cluster is None and node.core.log.last_index == 0

    directory = storage.directory
    storage.close()
    restarted_storage = Storage.open(directory, "split")
    try:
        restarted = make_node(restarted_storage)
        restarted._links["old"] = SimpleNamespace(state=LinkState.CLOSED, connects=1)  # type: ignore[assignment]
        introduce(restarted, "young", cluster=YOUNG)
        young.node, young.index = restarted, 0
        young.add(restarted.node_id)
        assert restarted.cluster_gate.cluster is None, "taken back after a restart"

        restarted._links["old"] = SimpleNamespace(state=LinkState.OPEN, connects=2)  # type: ignore[assignment]
        introduce(restarted, "old", cluster=OLD)
        leader = Leader(restarted)
        leader.add(restarted.node_id)
        assert restarted.cluster_gate.cluster == OLD
        restarted._advance_merge(0.0)
        drain(restarted)
        assert leader.commit_forwarded() == 1  # ada's message
        restarted._advance_merge(0.0)
        drain(restarted)
        assert leader.commit_forwarded() == 1  # the MergeDone
        assert restarted._merge is None and restarted_storage.pending_merge() is None
        assert not restarted.cluster_gate.left, "nothing is refused once the merge is done"
    finally:
        restarted_storage.close()
