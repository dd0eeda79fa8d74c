"""Two clusters of one channel, with real node processes over real DataChannels.

A newcomer that finds nobody present founds a cluster of its own; when the members come
back, the channel has two. Their Raft traffic must never mix.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.nodes import Cluster, NodeProcess
from support.waiting import wait_until

from raftchat import chat
from raftchat.net.signaling.server import RunningServer, start_server
from raftchat.raft import (
    ClusterIdentity,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    encode_configuration,
)
from raftchat.storage import Storage

pytestmark = pytest.mark.timeout(120)

CHANNEL = "split"


@pytest.fixture
async def signaling() -> AsyncIterator[RunningServer]:
    server = await start_server("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def cluster(
    tmp_path: Path, signaling: RunningServer, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    failed_before = request.session.testsfailed
    nodes = Cluster(tmp_path, f"http://127.0.0.1:{signaling.port}", CHANNEL)
    try:
        yield nodes
    finally:
        if request.session.testsfailed > failed_before:
            print(nodes.report())
        await nodes.close()
        for node in nodes.nodes:
            assert not node.bad_lines, f"{node.name} printed non-JSON lines: {node.bad_lines}"


def prepare_rival_clusters(root: Path, names: list[str], messages: int) -> dict[str, str]:
    """Data dirs whose logs each list all of ``names`` as voters, each in a cluster of its
    own with ``messages`` committed messages: every node's votes go to another cluster."""
    stores = {name: Storage.open_channel(CHANNEL, root / name) for name in names}
    ids = {name: store.node_id for name, store in stores.items()}
    voters = frozenset(ids.values())
    for position, (name, store) in enumerate(stores.items()):
        cluster = ClusterIdentity(1_700_000_000_000 + position, secrets.token_hex(16))
        store.set_cluster(cluster)
        configuration = Configuration(voters, cluster=cluster)
        entries = [Entry(1, 1, EntryKind.CONFIG, encode_configuration(configuration))]
        for k in range(messages):
            command = chat.ChatMessage(name, f"{name}-{k}", 1_700_000_000_000 + k)
            data = chat.encode_command(command)
            entries.append(Entry(2 + k, 1, EntryKind.NORMAL, data, ids[name], k + 1))
        store.save(HardState(1, ids[name], len(entries)), entries)
        store.close()
    return ids


def dropped_other_cluster(node: NodeProcess) -> bool:
    return "it belongs to cluster" in node.stderr_tail(200)


async def test_two_clusters_of_one_channel_never_exchange_entries(cluster: Cluster) -> None:
    names = ["ada", "cyd"]
    prepare_rival_clusters(cluster.root, names, messages=3)
    nodes = [await cluster.add(name) for name in names]
    for node in nodes:
        await wait_until(
            lambda node=node: dropped_other_cluster(node), 30, f"{node.name} dropping traffic"
        )
    for node in nodes:
        assert node.texts() == [f"{node.name}-{k}" for k in range(3)]
        assert node.leader is None  # its votes went to another cluster: no quorum
    clusters = {node.status["cluster"] for node in nodes}
    assert len(clusters) == 2 and None not in clusters
