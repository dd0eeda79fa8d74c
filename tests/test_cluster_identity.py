"""Cluster identity: founded once, named by every configuration and snapshot, stored,
migrated into old data dirs, told to peers in a hello; traffic of another cluster is
dropped and counted."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import TEST_CLUSTER, introduce
from support.links import FrameRecorder, link_info

from raftchat.net import LinkState
from raftchat.node import Node
from raftchat.node.cluster import NODE_CODEC, ClusterGate, ClusterHello, hello, survivor
from raftchat.raft import (
    AppendEntries,
    ClusterIdentity,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    RaftCore,
    RaftSettings,
    RequestVote,
    codec,
    decode_configuration,
    encode_configuration,
)
from raftchat.settings import Settings
from raftchat.storage import DB_FILENAME, MergeItem, Storage, legacy_cluster_identity

OTHER = ClusterIdentity(founded_ms=1_800_000_000_000, cluster_id="d2" * 16)


# --- the identity in configurations, the codec and the core -----------------------------


def test_configuration_names_its_cluster_on_the_wire() -> None:
    configuration = Configuration(frozenset({"a"}), frozenset({"b"}), TEST_CLUSTER)
    assert decode_configuration(encode_configuration(configuration)) == configuration


def test_configuration_of_an_old_log_has_no_cluster() -> None:
    old = codec.packer().pack([["a"], ["b"]])
    assert decode_configuration(old) == Configuration(frozenset({"a"}), frozenset({"b"}))


@pytest.mark.parametrize("tail", [[1, ""], ["1", "ab"], [-1, "ab"], [1, "a b"], [1]])
def test_malformed_cluster_in_a_configuration_is_refused(tail: list) -> None:
    with pytest.raises(codec.CodecError):
        decode_configuration(codec.packer().pack([["a"], [], *tail]))


def test_bootstrap_names_the_cluster_in_the_first_entry() -> None:
    core = RaftCore(RaftSettings(node_id="a"))
    core.bootstrap(TEST_CLUSTER)
    first = core.ready().entries[0]
    assert decode_configuration(first.data).cluster == TEST_CLUSTER
    assert core.configuration.cluster == TEST_CLUSTER


def test_membership_changes_keep_the_cluster() -> None:
    core = RaftCore(RaftSettings(node_id="a"))
    core.bootstrap(TEST_CLUSTER)
    while core.has_ready():
        core.advance(core.ready())
    assert core.add_learner("b").ok
    assert core.configuration == Configuration(frozenset({"a"}), frozenset({"b"}), TEST_CLUSTER)
    while core.has_ready():
        core.advance(core.ready())
    core.compact(core.log.applied, b"state")
    assert core.ready().compacted.meta.configuration.cluster == TEST_CLUSTER


# --- the survivor rule ------------------------------------------------------------------


def test_the_older_cluster_survives_whatever_the_order() -> None:
    assert survivor([TEST_CLUSTER, OTHER]) == TEST_CLUSTER
    assert survivor([OTHER, TEST_CLUSTER]) == TEST_CLUSTER


def test_of_two_clusters_founded_at_once_the_smaller_id_survives() -> None:
    twin = ClusterIdentity(TEST_CLUSTER.founded_ms, "00" * 16)
    assert survivor([TEST_CLUSTER, twin]) == twin
    assert survivor([twin, TEST_CLUSTER]) == twin


# --- storage ----------------------------------------------------------------------------


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage.open_channel("split", tmp_path)
    yield store
    store.close()


def reopen(store: Storage) -> Storage:
    store.close()
    return Storage.open(store.directory, store.channel)


def test_cluster_identity_is_stored(storage: Storage) -> None:
    assert storage.cluster is None
    storage.set_cluster(TEST_CLUSTER)
    storage = reopen(storage)
    try:
        assert storage.cluster == TEST_CLUSTER
    finally:
        storage.close()


def downgrade_to_version_1(store: Storage) -> Path:
    """Make the database look like one written before cluster identities."""
    path = store.directory / DB_FILENAME
    store.close()
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("DROP TABLE merge_queue")
        connection.execute("DELETE FROM meta WHERE key LIKE 'cluster%'")
        connection.execute("PRAGMA user_version=1")
    connection.close()
    return path


def test_old_data_dir_with_a_log_gets_the_identity_every_member_derives(
    storage: Storage,
) -> None:
    entry = Entry(1, 1, EntryKind.CONFIG, encode_configuration(Configuration(frozenset({"a"}))))
    storage.save(HardState(1, "a", 1), [entry])
    downgrade_to_version_1(storage)
    migrated = Storage.open(storage.directory, "split")
    try:
        assert migrated.cluster == legacy_cluster_identity("split")
        assert migrated.load().entries == [entry]
        assert migrated.pending_merge() is None
    finally:
        migrated.close()
    assert legacy_cluster_identity("split") != legacy_cluster_identity("other")
    assert legacy_cluster_identity("split").founded_ms == 0  # older than any new cluster


def test_old_blank_data_dir_gets_no_identity(storage: Storage) -> None:
    downgrade_to_version_1(storage)
    migrated = Storage.open(storage.directory, "split")
    try:
        assert migrated.cluster is None
    finally:
        migrated.close()


def test_beginning_a_merge_trades_the_raft_state_for_the_queue_at_once(
    storage: Storage,
) -> None:
    storage.set_cluster(OTHER)
    entry = Entry(1, 1, EntryKind.CONFIG, encode_configuration(Configuration(frozenset({"a"}))))
    storage.save(HardState(3, "a", 1), [entry])
    items = [MergeItem("a:1", b"one"), MergeItem("a:2", b"two"), MergeItem("b:7", b"three")]
    storage.begin_merge(OTHER, items)
    storage = reopen(storage)
    try:
        persisted = storage.load()
        assert persisted.entries == [] and persisted.snapshot is None
        assert persisted.hard_state == HardState()
        assert storage.cluster is None
        pending = storage.pending_merge()
        assert pending is not None and pending.source == OTHER and pending.items == items
        storage.merged(["a:1", "b:7"])
        assert storage.pending_merge().items == [items[1]]
        storage.finish_merge()
        assert storage.pending_merge() is None
    finally:
        storage.close()


# --- the gate ---------------------------------------------------------------------------


def test_gate_admits_only_its_own_cluster_and_counts_the_rest() -> None:
    gate = ClusterGate("me")
    gate.cluster = TEST_CLUSTER
    vote = RequestVote("x", 3, 0, 0)
    assert not gate.admit("x", vote, lambda: {"x"})  # no hello yet
    gate.heard_hello(ClusterHello("x", OTHER.cluster_id, OTHER.founded_ms))
    assert not gate.admit("x", vote, lambda: {"x"})
    gate.heard_hello(ClusterHello("y", TEST_CLUSTER.cluster_id, TEST_CLUSTER.founded_ms))
    assert gate.admit("y", RequestVote("y", 3, 0, 0), lambda: {"x", "y"})
    assert gate.dropped == 2
    assert gate.joinable({"x", "y", "z"}) == {"y"}
    assert gate.foreign({"x", "y"}) == {OTHER}


def test_a_blank_node_joins_only_the_cluster_that_would_survive() -> None:
    gate = ClusterGate("me")
    gate.heard_hello(hello("old", TEST_CLUSTER))
    gate.heard_hello(hello("young", OTHER))
    append = AppendEntries("young", 2, 0, 0, (), 0)
    assert not gate.admit("young", append, lambda: {"old", "young"})
    assert gate.admit("young", append, lambda: {"young"})  # the older one is gone
    assert not gate.admit("old", RequestVote("old", 2, 0, 0), lambda: {"old"})  # only a leader adds
    assert gate.admit("old", AppendEntries("old", 2, 0, 0, (), 0), lambda: {"old", "young"})
    assert gate.adopts("old") == TEST_CLUSTER


def test_a_node_merging_never_joins_a_cluster_it_left() -> None:
    """Even when that cluster is the only one linked: the one it merges into may be
    away a moment, and the one it left may still count it as a member."""
    gate = ClusterGate("me")
    gate.left = frozenset({OTHER.cluster_id})
    gate.heard_hello(hello("young", OTHER))
    append = AppendEntries("young", 2, 0, 0, (), 0)
    assert not gate.admit("young", append, lambda: {"young"})
    assert gate.dropped == 1
    gate.left = frozenset()  # the merge is done
    assert gate.admit("young", append, lambda: {"young"})


def test_hello_round_trips_through_the_node_codec() -> None:
    message = hello("me", TEST_CLUSTER)
    assert NODE_CODEC.decode(NODE_CODEC.encode(message)) == message
    assert NODE_CODEC.decode(NODE_CODEC.encode(hello("me", None))).cluster is None


# --- the node ---------------------------------------------------------------------------


@pytest.fixture
def node(storage: Storage) -> Node:
    return Node(storage, Settings(), nick="ada")


def test_node_in_a_cluster_drops_another_clusters_traffic(node: Node) -> None:
    node._join_cluster(TEST_CLUSTER)
    introduce(node, "cyd", cluster=OTHER)
    node._on_frame("cyd", codec.encode(RequestVote("cyd", 9, 5, 5)))
    assert node.core.term == 0
    assert node.status().counters["other_cluster_dropped"] == 1
    assert node.status().cluster_id == TEST_CLUSTER.cluster_id


def test_blank_node_learns_its_cluster_from_the_leader_that_adds_it(
    node: Node, storage: Storage
) -> None:
    introduce(node, "ada")
    configuration = Configuration(frozenset({"ada"}), frozenset({node.node_id}), TEST_CLUSTER)
    entry = Entry(1, 1, EntryKind.CONFIG, encode_configuration(configuration))
    node._on_frame("ada", codec.encode(AppendEntries("ada", 1, 0, 0, (entry,), 1)))
    assert node.cluster_gate.cluster == TEST_CLUSTER
    assert storage.cluster == TEST_CLUSTER
    assert node.core.log.last_index == 1


def test_a_peer_that_comes_back_on_a_new_link_hears_the_hello_again(node: Node) -> None:
    """The mesh drops the link of a peer that left and makes a new one when it comes
    back, whose count of connections starts over: that connection needs the hello too,
    or the peer drops this node's Raft traffic for good."""
    mesh = FrameRecorder()
    node._mesh = mesh  # type: ignore[assignment]
    node._on_link_change("bob", link_info("bob", LinkState.OPEN, 1))
    node._on_link_change("bob", link_info("bob", LinkState.OPEN, 1))  # counters only
    assert mesh.kinds().count(ClusterHello) == 1
    node._on_link_change("bob", link_info("bob", LinkState.CLOSED, 1))
    node._on_link_change("bob", link_info("bob", LinkState.CONNECTING, 0))
    node._on_link_change("bob", link_info("bob", LinkState.OPEN, 1))
    assert mesh.kinds().count(ClusterHello) == 2
