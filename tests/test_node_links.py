"""Which peers a node links to: a pair is linked iff one of them is a voter (newcomers
learn who the voters are from the roles peers announce to the signaling server), so a
large channel is not a full mesh; both ends of a pair agree on whether it is linked."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support.clusters import introduce
from support.nodes import Cluster, NodeProcess

from raftchat.net.signaling.server import start_server
from raftchat.node import Node
from raftchat.node.membership_plan import wanted_links
from raftchat.raft import codec
from raftchat.raft.codec import encode_configuration
from raftchat.raft.messages import AppendEntries, Configuration, Entry, EntryKind
from raftchat.settings import Settings
from raftchat.storage import Storage

VOTERS = frozenset({"v1", "v2", "v3"})
LEARNERS = frozenset({"l1", "l2", "l3"})
CONFIG = Configuration(voters=VOTERS, learners=LEARNERS)


def test_voter_links_to_every_member_and_everyone_present() -> None:
    present = frozenset({"v2", "l1", "newcomer"})
    assert wanted_links("v1", CONFIG, present) == (VOTERS | LEARNERS | {"newcomer"}) - {"v1"}


def test_learner_links_only_to_voters() -> None:
    present = VOTERS | LEARNERS | {"newcomer"}
    assert wanted_links("l1", CONFIG, present) == VOTERS


def test_learner_also_links_to_peers_announcing_a_promotion_it_has_not_seen() -> None:
    present = VOTERS | LEARNERS
    assert wanted_links("l1", CONFIG, present, hinted_voters=VOTERS | {"l2"}) == VOTERS | {"l2"}


def test_learner_keeps_links_to_voters_missing_from_presence() -> None:
    assert wanted_links("l1", CONFIG, frozenset()) == VOTERS


def test_blank_node_links_only_to_the_voters_peers_announce() -> None:
    present = VOTERS | LEARNERS | {"other-newcomer"}
    hinted = VOTERS | {"absent-voter"}
    assert wanted_links("newcomer", Configuration(), present, hinted_voters=hinted) == VOTERS


def test_blank_node_without_role_hints_links_to_everyone_present() -> None:
    present = VOTERS | LEARNERS | {"other-newcomer"}
    assert wanted_links("newcomer", Configuration(), present) == present


def test_removed_node_links_like_a_newcomer() -> None:
    present = VOTERS | LEARNERS
    assert wanted_links("gone", CONFIG, present) == present


def test_learner_that_knows_no_leader_links_to_everyone() -> None:
    present = VOTERS | LEARNERS | {"newcomer"}
    wanted = wanted_links("l1", CONFIG, present, leader_known=False)
    assert wanted == present - {"l1"}


def test_both_ends_of_every_pair_agree() -> None:
    """Else one side keeps offering a link the other keeps closing."""
    nodes = sorted(VOTERS | LEARNERS | {"n1", "n2"})
    present = frozenset(nodes)
    for x, y in itertools.combinations(nodes, 2):
        x_wants = y in wanted_links(x, CONFIG, present, hinted_voters=VOTERS)
        y_wants = x in wanted_links(y, CONFIG, present, hinted_voters=VOTERS)
        assert x_wants == y_wants, (x, y)
        assert x_wants == bool({x, y} & VOTERS), (x, y)


def test_fifty_members_need_far_fewer_links_than_a_full_mesh() -> None:
    voters = frozenset(f"v{i}" for i in range(5))
    learners = frozenset(f"l{i:02}" for i in range(45))
    configuration = Configuration(voters=voters, learners=learners)
    everyone = voters | learners
    pairs = {
        frozenset({node, peer})
        for node in everyone
        for peer in wanted_links(node, configuration, everyone)
    }
    assert len(pairs) == 5 * 45 + 10  # voter-learner pairs plus voter-voter pairs


def test_fifty_newcomers_at_once_link_only_to_the_voters() -> None:
    voters = frozenset(f"v{i}" for i in range(5))
    configuration = Configuration(voters=voters)
    newcomers = frozenset(f"n{i:02}" for i in range(45))
    everyone = voters | newcomers
    pairs = set()
    for node in everyone:
        known = configuration if node in voters else Configuration()
        for peer in wanted_links(node, known, everyone, hinted_voters=voters):
            pairs.add(frozenset({node, peer}))
    assert len(pairs) == 5 * 45 + 10


class LinkRecordingMesh:
    """Stands in for the mesh: remembers the last set of peers the node asked for."""

    def __init__(self) -> None:
        self.peers: frozenset[str] | None = None

    def set_peers(self, peers: frozenset[str]) -> None:
        self.peers = frozenset(peers)

    def send(self, to: str, data: bytes, urgent: bool = False) -> bool:
        return True

    def links(self) -> dict:
        return {}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    storage = Storage.open_channel("unit", tmp_path)
    yield Node(storage, Settings(), nick="ada")
    storage.close()


@pytest.fixture
def mesh(node: Node) -> LinkRecordingMesh:
    recording = LinkRecordingMesh()
    node._mesh = recording  # type: ignore[assignment]
    return recording


def replicate_configuration(node: Node, configuration: Configuration, index: int) -> None:
    """The leader v1 appends a configuration entry to the node's log."""
    entry = Entry(index, 1, EntryKind.CONFIG, encode_configuration(configuration))
    message = AppendEntries("v1", 1, index - 1, 1 if index > 1 else 0, (entry,), index)
    introduce(node, "v1")
    node._on_frame("v1", codec.encode(message))
    node._drain()


def test_blank_node_asks_the_mesh_for_everyone_present(node: Node, mesh: LinkRecordingMesh) -> None:
    node._on_presence(VOTERS | LEARNERS)
    assert mesh.peers == VOTERS | LEARNERS


def test_node_added_as_learner_drops_links_to_other_learners(
    node: Node, mesh: LinkRecordingMesh
) -> None:
    me = node.node_id
    node._on_presence(VOTERS | LEARNERS | {"newcomer"})
    replicate_configuration(node, Configuration(VOTERS, LEARNERS | {me}), 1)
    assert mesh.peers == VOTERS


def test_learner_promoted_to_voter_links_to_everyone(node: Node, mesh: LinkRecordingMesh) -> None:
    me = node.node_id
    node._on_presence(VOTERS | LEARNERS)
    replicate_configuration(node, Configuration(VOTERS, LEARNERS | {me}), 1)
    replicate_configuration(node, Configuration(VOTERS | {me}, LEARNERS), 2)
    assert mesh.peers == VOTERS | LEARNERS


def test_learner_links_to_a_learner_once_it_is_promoted(
    node: Node, mesh: LinkRecordingMesh
) -> None:
    me = node.node_id
    node._on_presence(VOTERS | LEARNERS)
    replicate_configuration(node, Configuration(VOTERS, LEARNERS | {me}), 1)
    assert "l1" not in (mesh.peers or ())
    replicate_configuration(node, Configuration(VOTERS | {"l1"}, LEARNERS - {"l1"} | {me}), 2)
    assert mesh.peers == VOTERS | {"l1"}


def test_presence_change_keeps_a_learner_off_other_learners(
    node: Node, mesh: LinkRecordingMesh
) -> None:
    me = node.node_id
    node._on_presence(VOTERS | LEARNERS)
    replicate_configuration(node, Configuration(VOTERS, LEARNERS | {me}), 1)
    node._on_presence(VOTERS | LEARNERS | {"l4"})
    assert mesh.peers == VOTERS


class RoleRecordingSignaling:
    """Stands in for the signaling client: the roles peers announced, and ours."""

    def __init__(self, peer_roles: dict[str, str]) -> None:
        self.peer_roles = peer_roles
        self.roles_set: list[str] = []

    def set_role(self, role: str) -> None:
        self.roles_set.append(role)


def test_node_announces_its_role_and_links_as_a_newcomer_only_to_announced_voters(
    node: Node, mesh: LinkRecordingMesh
) -> None:
    me = node.node_id
    signaling = RoleRecordingSignaling({peer: "voter" for peer in VOTERS} | {"l1": "learner"})
    node._signaling = signaling  # type: ignore[assignment]
    node._on_presence(VOTERS | LEARNERS)
    assert mesh.peers == VOTERS
    assert signaling.roles_set[-1] == "none"
    replicate_configuration(node, Configuration(VOTERS, LEARNERS | {me}), 1)
    assert signaling.roles_set[-1] == "learner"
    replicate_configuration(node, Configuration(VOTERS | {me}, LEARNERS), 2)
    assert signaling.roles_set[-1] == "voter"
    assert mesh.peers == VOTERS | LEARNERS


def test_restarted_learner_links_to_everyone_until_a_leader_speaks(tmp_path: Path) -> None:
    """Its stored configuration may be stale: the voters it knows may all be gone."""
    storage = Storage.open_channel("unit", tmp_path)
    first = Node(storage, Settings(), nick="ada")
    first._mesh = LinkRecordingMesh()  # type: ignore[assignment]
    replicate_configuration(first, Configuration(VOTERS, LEARNERS | {first.node_id}), 1)
    storage.close()

    storage = Storage.open_channel("unit", tmp_path)
    try:
        restarted = Node(storage, Settings(), nick="ada")
        mesh = LinkRecordingMesh()
        restarted._mesh = mesh  # type: ignore[assignment]
        restarted._on_presence(VOTERS | LEARNERS)
        assert mesh.peers == VOTERS | LEARNERS
        heartbeat = AppendEntries("v1", 1, 1, 1, (), 1)
        introduce(restarted, "v1")
        restarted._on_frame("v1", codec.encode(heartbeat))
        restarted._drain()
        assert mesh.peers == VOTERS
    finally:
        storage.close()


# --- real processes: a channel with learners works over the reduced mesh -------------


@pytest.fixture
async def cluster(tmp_path: Path, node_webrtc: str) -> AsyncIterator[Cluster]:
    server = await start_server("127.0.0.1", 0)
    nodes = Cluster(tmp_path, f"http://127.0.0.1:{server.port}")
    config = nodes.config_path.read_text()
    nodes.config_path.write_text("max_voters = 3\n" + config)
    try:
        yield nodes
    finally:
        await nodes.close()
        await server.close()


def configuration_of(node: NodeProcess) -> tuple[int, int]:
    status = node.status or {}
    return len(status.get("voters", ())), len(status.get("learners", ()))


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_channel_with_learners_on_the_reduced_mesh_survives_a_leader_change(
    cluster: Cluster,
) -> None:
    """Five nodes, three voters: learners hear only voters, yet get every message, follow
    a new leader when the old one is killed, and one is promoted into its place."""
    await cluster.grow(1)
    for _ in range(4):
        await cluster.add()
    await cluster.wait_all(lambda n: configuration_of(n) == (3, 2), "3 voters, 2 learners")
    learners = [n for n in cluster.nodes if not n.is_voter()]
    learners[0].send("from a learner")
    await cluster.wait_all(lambda n: "from a learner" in n.texts(), "the learner's message")

    old_leader = await cluster.leader()
    old_leader.kill()
    survivors = [n for n in cluster.nodes if n is not old_leader]
    new_leader = await cluster.leader(survivors)
    assert new_leader is not old_leader
    await cluster.wait_all(
        lambda n: configuration_of(n) == (3, 1), "a learner promoted in place", survivors
    )
    learner = next(n for n in survivors if not n.is_voter())
    learner.send("after the leader change")
    await cluster.wait_all(
        lambda n: "after the leader change" in n.texts(), "the message", survivors
    )
