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
from unmerging_node import through_launcher

from raftchat import chat
from raftchat.bench import process
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

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("node_webrtc")]

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
            signed = chat.sign_command(command, store.identity, CHANNEL, k + 1)
            data = chat.encode_command(signed)
            entries.append(Entry(2 + k, 1, EntryKind.NORMAL, data, ids[name], k + 1))
        store.save(HardState(1, ids[name], len(entries)), entries)
        store.close()
    return ids


@pytest.fixture
def nodes_that_never_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the node processes through tests/unmerging_node.py."""
    join_command = process.headless_join_command
    monkeypatch.setattr(
        process,
        "headless_join_command",
        lambda *args, **kwargs: through_launcher(join_command(*args, **kwargs)),
    )


def dropped_other_cluster(node: NodeProcess) -> bool:
    return "it belongs to cluster" in node.stderr_tail(200)


@pytest.mark.usefixtures("nodes_that_never_merge")
async def test_two_clusters_of_one_channel_never_exchange_entries(cluster: Cluster) -> None:
    names = ["ada", "cyd"]
    prepare_rival_clusters(cluster.root, names, messages=3)
    nodes = [await cluster.add(name) for name in names]
    for node in nodes:
        await wait_until(
            lambda node=node: dropped_other_cluster(node), 30, f"{node.name} dropping traffic"
        )
    for node in nodes:
        assert "merging disabled" in node.stderr_tail(200)
        assert node.texts() == [f"{node.name}-{k}" for k in range(3)]
        assert node.leader is None  # its votes went to another cluster: no quorum
    clusters = {node.status["cluster"] for node in nodes}
    assert len(clusters) == 2 and None not in clusters


def since_reset(node: NodeProcess) -> list[dict]:
    """What the node printed after its last ``reset`` line (all of it if none)."""
    output = node.output
    resets = [i for i, event in enumerate(output) if event["event"] == "reset"]
    return output[resets[-1] + 1 :] if resets else output


def channel_log(node: NodeProcess) -> list[tuple[int, str, str, str]]:
    return [
        (event["index"], event["id"], event["nick"], event["text"])
        for event in since_reset(node)
        if event["event"] == "message"
    ]


async def send_and_wait(node: NodeProcess, texts: list[str]) -> None:
    for text in texts:
        node.send(text)
    await node.wait_for(lambda n: len(n.acks()) >= len(texts), what=f"{len(texts)} acks")


async def test_newcomer_alone_in_an_empty_channel_merges_into_the_members_history(
    cluster: Cluster,
) -> None:
    """ada is alone, sends 5 messages and quits; cyd comes while nobody is there, founds a
    cluster of its own and sends 5; ada comes back: one channel, 10 messages, each once."""
    ada = await cluster.add("ada")
    await send_and_wait(ada, [f"ada-{k}" for k in range(5)])
    ada.quit()
    assert await ada.wait_exit() == 0
    cyd = await cluster.add("cyd")
    await send_and_wait(cyd, [f"cyd-{k}" for k in range(5)])
    before = channel_log(cyd)
    await ada.restart()
    await cyd.wait_for(
        lambda n: any(e["event"] == "reset" for e in n.output), what="a reset (merge)"
    )
    assert [e["reason"] for e in cyd.output if e["event"] == "reset"] == ["merge"]
    for node in (ada, cyd):
        await node.wait_for(lambda n: len(channel_log(n)) >= 10, what="10 messages")
    log = channel_log(ada)
    assert channel_log(cyd) == log
    assert [text for _, _, _, text in log] == [f"ada-{k}" for k in range(5)] + [
        f"cyd-{k}" for k in range(5)
    ]
    assert len({message_id for _, message_id, _, _ in log}) == 10
    # The merged messages keep their ids and nicks.
    assert [(i, n, t) for _, i, n, t in log[5:]] == [(i, n, t) for _, i, n, t in before]
    merged = [e for e in since_reset(cyd) if e["event"] == "message" and e.get("merged")]
    assert [e["text"] for e in merged] == [f"cyd-{k}" for k in range(5)]
    assert {node.status["cluster"] for node in (ada, cyd)} == {ada.status["cluster"]}


async def split_history(cluster: Cluster, names: list[str], count: int = 5) -> list[NodeProcess]:
    """Each of ``names`` in turn comes to the empty channel, founds a cluster, sends
    ``count`` messages; all but the last leave again."""
    nodes = []
    for position, name in enumerate(names):
        node = await cluster.add(name)
        await send_and_wait(node, [f"{name}-{k}" for k in range(count)])
        if position < len(names) - 1:
            node.quit()
            assert await node.wait_exit() == 0
        nodes.append(node)
    return nodes


def assert_one_history(nodes: list[NodeProcess], expected_texts: set[str]) -> list:
    log = channel_log(nodes[0])
    for node in nodes[1:]:
        assert channel_log(node) == log, f"{node.name} disagrees with {nodes[0].name}"
    texts = [text for _, _, _, text in log]
    assert sorted(texts) == sorted(expected_texts), "every message exactly once"
    assert len({message_id for _, message_id, _, _ in log}) == len(log)
    return log


async def test_messages_sent_on_both_sides_during_a_merge_each_arrive_once(
    cluster: Cluster,
) -> None:
    ada, cyd = await split_history(cluster, ["ada", "cyd"])
    await ada.restart()
    for k in range(5, 10):
        ada.send(f"ada-{k}")
        cyd.send(f"cyd-{k}")
    await ada.wait_for(lambda n: len(n.acks()) >= 5, what="ada's 5 new messages committed")
    await cyd.wait_for(lambda n: len(n.acks()) >= 10, what="all of cyd's messages committed")
    for node in (ada, cyd):
        await node.wait_for(lambda n: len(channel_log(n)) >= 20, what="20 messages")
    expected = {f"{name}-{k}" for name in ("ada", "cyd") for k in range(10)}
    log = assert_one_history([ada, cyd], expected)
    ada_texts = [text for _, _, nick, text in log if nick == "ada"]
    assert ada_texts == [f"ada-{k}" for k in range(10)], "the survivor's order holds"


async def test_three_way_split_becomes_one_channel(cluster: Cluster) -> None:
    """ada, then bob, then cyd each found a cluster alone; the oldest (ada's) survives."""
    ada, bob, cyd = await split_history(cluster, ["ada", "bob", "cyd"])
    await ada.restart()
    await bob.restart()
    expected = {f"{name}-{k}" for name in ("ada", "bob", "cyd") for k in range(5)}
    for node in (ada, bob, cyd):
        await node.wait_for(lambda n: len(channel_log(n)) >= 15, what="15 messages")
    log = assert_one_history([ada, bob, cyd], expected)
    assert [text for _, _, _, text in log[:5]] == [f"ada-{k}" for k in range(5)]
    for name in ("bob", "cyd"):
        own = [text for _, _, nick, text in log if nick == name]
        assert own == [f"{name}-{k}" for k in range(5)], f"{name}'s messages in order"
    assert len({node.status["cluster"] for node in (ada, bob, cyd)}) == 1
